//! What the data path knows of the swarm's services: per network, each service's name, aliases,
//! virtual IP (or none: DNS round robin) and the tasks that run it. Service discovery (the
//! embedded DNS) and the VIP load balancer read it from the table snapshot; the control plane
//! (or a topology file's `[[service]]` tables) writes it.
//!
//! Only running tasks are backends: a task that stops leaves every answer and every new
//! connection the moment the snapshot without it is swapped in.

use std::net::Ipv4Addr;

/// The services of every network, indexed like `Tables::networks` (by `NetId`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceView {
    pub networks: Vec<NetServices>,
}

/// The services on one network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetServices {
    /// The network's name (PTR answers are `<task>.<network>.`).
    pub network: String,
    /// The routing mesh's network: it has no names.
    pub ingress: bool,
    pub services: Vec<Service>,
}

/// One service on one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// As created: `my-web`. Names are matched without regard to ASCII case.
    pub name: String,
    /// `--network name=N,alias=A`: further names of the service on this network.
    pub aliases: Vec<String>,
    /// The service's virtual IP on this network (endpoint mode vip); `None`: dnsrr.
    pub vip: Option<Ipv4Addr>,
    /// The running tasks, in a stable order (by task name).
    pub backends: Vec<Backend>,
}

/// A running task of a service, on one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Docker's full task name, `my-web.1.<task id>`: it resolves to `ip`, and `ip`'s PTR
    /// answers it. Also the backend's stable key for consistent hashing.
    pub task: String,
    pub ip: Ipv4Addr,
}

impl ServiceView {
    /// The services of network `index` (none if out of range).
    pub fn network(&self, index: usize) -> Option<&NetServices> {
        self.networks.get(index)
    }
}
