//! The node side of the routing mesh: from the node's assignments, its ingress sandbox endpoint
//! (its load-balancer address on the ingress network) and the ports published in ingress mode,
//! each with its service's VIP and running tasks on ingress.

use std::net::Ipv4Addr;

use crate::control::dispatcher::Assignments;
use crate::io::mesh::{MeshConfig, PublishedPort};
use crate::topology::{App, Endpoint};
use crate::wire::MacAddr;

/// The endpoint name of a node's ingress sandbox (Docker's `ingress-sbox`).
pub const SANDBOX: &str = "ingress-sbox";

/// The node's ingress sandbox, when it has an address on the ingress network.
pub fn sandbox_endpoint(a: &Assignments) -> Option<Endpoint> {
    let net = a.networks.iter().find(|n| n.ingress && n.vni.is_some())?;
    let ip = *net.lb.get(&a.node_id)?;
    Some(Endpoint {
        name: SANDBOX.into(),
        network: net.name.clone(),
        ip,
        mac: MacAddr::from_ipv4(ip),
        vtep: None,
        netns: None,
        iface: None,
        app: Some(App::IngressSandbox),
        task: None,
    })
}

/// The ports this node publishes through its sandbox: every port in ingress mode of the
/// services on its ingress network.
pub fn config(a: &Assignments, publish_addr: Option<Ipv4Addr>) -> MeshConfig {
    let mut ports = Vec::new();
    if let Some(ingress) = a.networks.iter().find(|n| n.ingress) {
        for s in &a.services {
            let Some(sn) = s.networks.iter().find(|n| n.network_id == ingress.id) else {
                continue;
            };
            // Host mode: only where a task runs, straight to it (the first if several).
            let local: Vec<Ipv4Addr> = sn
                .backends
                .iter()
                .filter(|b| a.tasks.iter().any(|t| t.id == b.task_id))
                .map(|b| b.addr)
                .take(1)
                .collect();
            for p in s.ports.iter().filter(|p| p.publish_mode == "host") {
                if local.is_empty() {
                    continue;
                }
                ports.push(PublishedPort {
                    service: s.name.clone(),
                    udp: p.protocol == "udp",
                    port: p.published_port,
                    target_port: p.target_port,
                    vip: None,
                    backends: local.clone(),
                    proxy_v2: false,
                });
            }
            for p in s.ports.iter().filter(|p| p.publish_mode == "ingress") {
                ports.push(PublishedPort {
                    service: s.name.clone(),
                    udp: p.protocol == "udp",
                    port: p.published_port,
                    target_port: p.target_port,
                    vip: sn.vip,
                    backends: sn.backends.iter().map(|b| b.addr).collect(),
                    proxy_v2: p.proxy_protocol == "v2",
                });
            }
        }
    }
    MeshConfig {
        publish_addr,
        via_vip: true,
        ports,
    }
}
