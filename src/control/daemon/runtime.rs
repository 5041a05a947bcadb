//! The node side of services: the daemon's live runtime ([`io::Node`]) driven by the node's
//! assignments and by gossip. The assignments and the remote endpoints gossip holds (see
//! [`super::remote`]) become a node view (networks of the local tasks, the local tasks'
//! endpoints, every remote task on those networks, the swarm's keys) that the runtime applies
//! while traffic flows, again whenever either changes; the tasks' states go back with the
//! next heartbeat.
//!
//! A task whose image is a built-in app (`swarmnet/whoami`, `swarmnet/echo`, `swarmnet/fetch
//! URL`) is a virtual task: served inside the data path on smoltcp, no privilege needed. Any
//! other image is a program run in the task's own network namespace (CAP_NET_ADMIN).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::mesh;
use super::remote::{self, RemoteEndpoint};
use crate::control::dispatcher::{AssignedTask, Assignments, Peer};
use crate::control::keys;
use crate::control::logs::LogLine;
use crate::control::network::{NetworkRecord, GWBRIDGE};
use crate::control::service::{TaskState, TaskStatus};
use crate::control::store::NetworkKey;
use crate::io::node::{Node, NodeConfig};
use crate::io::process::{self, ProcessSpec, Supervisor};
use crate::topology::{self, App, Endpoint, EspTransport, Topology};
use crate::wire::MacAddr;

/// UDP port of ESP in UDP between swarmnet daemons.
pub const ESP_UDP_PORT: u16 = topology::DEFAULT_ESP_UDP_PORT;

/// What a task runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskKind {
    /// A built-in app on smoltcp.
    Virtual(App),
    /// A program in the task's network namespace.
    Program,
}

/// The built-in app an image names, if it names one: `swarmnet/whoami`, `swarmnet/echo`
/// (any tag), or `swarmnet/fetch` with the URL as its argument.
pub fn builtin_app(image: &str, args: &[String]) -> Option<Result<App, String>> {
    let name = image.split('@').next().unwrap_or(image);
    let name = match name.rsplit_once(':') {
        Some((n, tag)) if !tag.contains('/') => n,
        _ => name,
    };
    let app = name.strip_prefix("swarmnet/")?;
    Some(match app {
        "whoami" | "echo" => App::parse(app),
        "fetch" => match args {
            [url] => App::parse(&format!("fetch {url}")),
            _ => Err("swarmnet/fetch takes one argument, the URL to fetch (http://HOST[:PORT]/PATH, HOST an address or a name)".into()),
        },
        "lookup" if args.is_empty() => {
            Err("swarmnet/lookup takes the names to look up (a service, tasks.SERVICE, a task name)".into())
        }
        "lookup" => App::parse(&format!("lookup {}", args.join(" "))),
        other => Err(format!(
            "swarmnet/{other} is not a built-in app: swarmnet/whoami, swarmnet/echo, swarmnet/fetch and swarmnet/lookup are"
        )),
    })
}

/// A task this node runs.
#[derive(Debug, Clone)]
struct LocalTask {
    task: AssignedTask,
    kind: TaskKind,
    /// When this node started it.
    started: std::time::SystemTime,
}

/// How long a task no longer assigned keeps running before it is stopped: time for every
/// node to take it out of its load balancers (they get the same assignments within a
/// heartbeat, and apply them), so that no new connection is sent to a task already gone.
/// Measured with 150 back-to-back requests to a VIP during a scale from 3 to 1: with 2 s one
/// request in a run failed, with 5 s none.
pub const WITHDRAW: Duration = Duration::from_secs(5);

/// What a port belongs to, for its metrics' labels.
#[derive(Debug, Clone, Default)]
struct PortOwner {
    network: String,
    service: String,
    task: String,
}

/// The node's runtime state.
pub struct TaskRuntime {
    hostname: String,
    data_path_addr: Ipv4Addr,
    state_dir: PathBuf,
    node: Option<Node>,
    /// The tasks running here, by task ID.
    tasks: BTreeMap<String, LocalTask>,
    /// Tasks that ended or could not start: never started again (the managers replace them).
    ended: BTreeSet<String>,
    /// States not yet reported.
    pending: Vec<TaskStatus>,
    /// The last view applied.
    applied: Option<Topology>,
    /// The last failure to apply, logged once per change.
    last_error: Option<String>,
    /// The last assignments taken, and their digest.
    last: Assignments,
    last_digest: u64,
    /// The swarm's keys last given.
    keys: Vec<NetworkKey>,
    /// Runs the program tasks.
    supervisor: Arc<Supervisor>,
    /// Program tasks asked to stop, until their process has ended.
    stopping: BTreeSet<String>,
    /// Tasks no longer assigned, since when: they stop `withdraw` later.
    leaving: BTreeMap<String, std::time::Instant>,
    /// `WITHDRAW`, or less in tests.
    withdraw: Duration,
    /// Where the data path's DNS forwarder finds upstream nameservers (`None`: the host's).
    resolv_conf: Option<PathBuf>,
    /// Output of program tasks read but not yet shipped.
    logs: Vec<LogLine>,
    /// Where the routing mesh's published ports bind (`None`: all addresses).
    publish_addr: Option<Ipv4Addr>,
    /// The timestamp of the last line shipped of each program task.
    log_cursor: BTreeMap<String, String>,
    /// The network, service and task of every port a metrics scrape has seen, by port ID: a
    /// removed port's counters stay in its network's sums (IDs are never reused in a run),
    /// which so never go down.
    port_owners: BTreeMap<u32, PortOwner>,
    /// The node's docker_gwbridge (its local store's), when it has one.
    gwbridge: Option<NetworkRecord>,
    /// Each local task's address on docker_gwbridge, by task ID, for as long as it runs.
    gw_addrs: BTreeMap<String, Ipv4Addr>,
    /// The other nodes' endpoints on this node's networks, as gossip holds them.
    remote: Vec<RemoteEndpoint>,
    /// The peer table of the last view (remote endpoints), for `network inspect`.
    peers: Vec<Peer>,
}

fn now() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

fn status(task_id: &str, state: TaskState, message: &str, error: &str) -> TaskStatus {
    TaskStatus {
        task_id: task_id.to_string(),
        state,
        message: message.to_string(),
        error: error.to_string(),
        exit_code: None,
        at: now(),
    }
}

/// SHA-256 of `s`, hex: the stable 64-character IDs Docker shows for containers and endpoints.
fn sha256_hex(s: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The MTU of a swarm network on this node's data path.
fn network_mtu(net: &NetworkRecord) -> u16 {
    let underlay = net
        .options
        .get("com.docker.network.driver.mtu")
        .and_then(|m| m.parse::<u16>().ok())
        .map_or(1500, |m| m.saturating_add(50));
    if net.encrypted() {
        topology::encrypted_mtu(underlay, EspTransport::Udp)
    } else {
        underlay.saturating_sub(50)
    }
}

impl TaskRuntime {
    pub fn new(hostname: String, data_path_addr: Ipv4Addr, state_dir: PathBuf) -> Self {
        TaskRuntime {
            hostname,
            data_path_addr,
            state_dir,
            node: None,
            tasks: BTreeMap::new(),
            ended: BTreeSet::new(),
            pending: Vec::new(),
            applied: None,
            last_error: None,
            last: Assignments::default(),
            last_digest: Assignments::default().digest(),
            keys: Vec::new(),
            supervisor: Arc::new(Supervisor::new()),
            stopping: BTreeSet::new(),
            leaving: BTreeMap::new(),
            withdraw: WITHDRAW,
            resolv_conf: None,
            logs: Vec::new(),
            log_cursor: BTreeMap::new(),
            publish_addr: None,
            port_owners: BTreeMap::new(),
            gwbridge: None,
            gw_addrs: BTreeMap::new(),
            remote: Vec::new(),
            peers: Vec::new(),
        }
    }

    /// The other nodes' endpoints, as gossip holds them now; true when they changed (the
    /// caller then [`refresh`](Self::refresh)es, or applies new assignments).
    pub fn set_remote(&mut self, remote: Vec<RemoteEndpoint>) -> bool {
        if self.remote == remote {
            return false;
        }
        self.remote = remote;
        true
    }

    /// Applies the view again (remote endpoints changed).
    pub fn refresh(&mut self) {
        self.reconcile();
    }

    /// What this node gossips: its overlay networks, and its endpoints on them by (network ID,
    /// endpoint ID).
    #[allow(clippy::type_complexity)]
    pub fn gossip_entries(
        &self,
    ) -> (
        BTreeSet<String>,
        BTreeMap<(String, String), crate::gossip::EndpointEntry>,
    ) {
        let tasks = self
            .tasks
            .values()
            .map(|t| (&t.task, self.leaving.contains_key(&t.task.id)));
        remote::local_entries(&self.last, tasks, self.data_path_addr)
    }

    /// The node's docker_gwbridge: tasks get their way out through it.
    pub fn set_gwbridge(&mut self, gwbridge: Option<NetworkRecord>) {
        self.gwbridge = gwbridge;
    }

    /// Whether `t` gets an interface on docker_gwbridge: a task on at least one network that
    /// is not `--internal`, as Docker gives one to every such container; of the virtual
    /// tasks, those whose app goes out (`fetch`): the others only serve, and an interface
    /// that would carry nothing costs a stack's buffers per task.
    fn wants_gwbridge(&self, t: &LocalTask, nets: &BTreeMap<&str, &NetworkRecord>) -> bool {
        let goes_out = match &t.kind {
            TaskKind::Program => true,
            TaskKind::Virtual(app) => matches!(app, App::Fetch(_)),
        };
        self.gwbridge.is_some()
            && goes_out
            && t.task
                .addresses
                .iter()
                .any(|a| nets.get(a.network_id.as_str()).is_some_and(|n| !n.internal))
    }

    /// Gives every task that wants one an address on docker_gwbridge (kept while it runs: the
    /// lowest free one after the gateway), and frees those of tasks gone.
    fn assign_gw_addrs(&mut self, a: &Assignments, tasks: &BTreeMap<String, LocalTask>) {
        let nets: BTreeMap<&str, &NetworkRecord> =
            a.networks.iter().map(|n| (n.id.as_str(), n)).collect();
        let wanting: BTreeSet<&str> = tasks
            .values()
            .filter(|t| self.wants_gwbridge(t, &nets))
            .map(|t| t.task.id.as_str())
            .collect();
        self.gw_addrs.retain(|id, _| wanting.contains(id.as_str()));
        let Some(gw) = self.gwbridge.as_ref() else {
            return;
        };
        let (subnet, gateway) = (gw.subnet, gw.gateway);
        let mut used: BTreeSet<Ipv4Addr> = self.gw_addrs.values().copied().collect();
        for id in wanting {
            if self.gw_addrs.contains_key(id) {
                continue;
            }
            let free = subnet.hosts().find(|h| *h != gateway && !used.contains(h));
            match free {
                Some(addr) => {
                    used.insert(addr);
                    self.gw_addrs.insert(id.to_string(), addr);
                }
                None => tracing::warn!(
                    "docker_gwbridge ({subnet}) has no free address for task {id}: it runs without a way out"
                ),
            }
        }
    }

    /// Binds the routing mesh's published ports on `addr` (`None`: all addresses).
    pub fn set_publish_addr(&mut self, addr: Option<Ipv4Addr>) {
        self.publish_addr = addr;
    }

    /// The routing mesh's counters, once the data plane runs.
    pub fn mesh_stats(&self) -> Option<crate::io::mesh::MeshStats> {
        self.node.as_ref().map(Node::mesh_stats)
    }

    /// The assignments last taken.
    pub fn assignments(&self) -> &Assignments {
        &self.last
    }

    /// The digest of the assignments last taken.
    pub fn digest(&self) -> u64 {
        self.last_digest
    }

    /// Whether states wait to be reported.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The states to report, taken.
    pub fn take_statuses(&mut self) -> Vec<TaskStatus> {
        std::mem::take(&mut self.pending)
    }

    /// Puts back states whose report did not reach a manager.
    pub fn restore_statuses(&mut self, mut statuses: Vec<TaskStatus>) {
        statuses.append(&mut self.pending);
        self.pending = statuses;
    }

    /// The data path's VIPs, each backend with its connections (none before a first task).
    /// Opens a live capture of `ask.target` on this node: a network (its local ports, or its
    /// underlay), a task or a service (their ports here). The decrypted frames of an encrypted
    /// network are shown on managers only (`manager`).
    pub fn capture(
        &self,
        ask: &crate::api::capture::CaptureAsk,
        manager: bool,
        hostname: &str,
    ) -> Result<crate::api::capture::CaptureOpen, crate::api::ApiError> {
        use crate::api::capture::{CaptureOpen, LINKTYPE_ETHERNET, LINKTYPE_RAW};
        use crate::api::ApiError;
        use crate::io::capture::Layer;
        let Some(node) = self.node.as_ref() else {
            return Err(ApiError::precondition(format!(
                "this node ({hostname}) runs no data path yet: it captures once it runs tasks"
            )));
        };
        let t = node.tables();
        let key = ask.target.as_str();
        let ports: Vec<crate::dataplane::PortId> = match t.network_id(key) {
            Some(net) => t
                .port_names()
                .iter()
                .filter_map(|n| t.port_id(n))
                .filter(|id| t.port(*id).is_some_and(|p| p.network == net))
                .collect(),
            None => t
                .port_names()
                .iter()
                .filter(|n| {
                    n.as_str() == key
                        || n.strip_prefix(key)
                            .is_some_and(|rest| rest.starts_with('.'))
                })
                .filter_map(|n| t.port_id(n))
                .collect(),
        };
        if ports.is_empty() && t.network_id(key).is_none() {
            return Err(ApiError::not_found(format!(
                "no network, task or service {key} on this node ({hostname}): a task is captured on the node that runs it (--node NODE, through a manager)"
            )));
        }
        let nets: BTreeSet<crate::dataplane::NetId> = match t.network_id(key) {
            Some(net) => [net].into_iter().collect(),
            None => ports
                .iter()
                .filter_map(|p| t.port(*p).map(|p| p.network))
                .collect(),
        };
        let filter = ask.filter.clone();
        let hub = node.capture();
        if ask.underlay {
            let network = match nets.iter().next().and_then(|n| t.network(*n)) {
                Some(n) if nets.len() == 1 => Some((n.vni, n.encrypted)),
                _ => None,
            };
            let session = hub.start(Layer::Underlay { network }, filter, ask.snaplen);
            return Ok(CaptureOpen {
                hub,
                session,
                linktype: LINKTYPE_RAW,
            });
        }
        if let Some(enc) = nets
            .iter()
            .filter_map(|n| t.network(*n))
            .find(|n| n.encrypted)
        {
            if !manager {
                return Err(ApiError::precondition(format!(
                    "network {} is encrypted: its decrypted frames are shown on managers only (this node, {hostname}, is a worker); capture --underlay shows its ESP here",
                    enc.name
                )));
            }
        }
        let session = hub.start(
            Layer::Inner(ports.into_iter().collect()),
            filter,
            ask.snaplen,
        );
        Ok(CaptureOpen {
            hub,
            session,
            linktype: LINKTYPE_ETHERNET,
        })
    }

    /// The tasks running here as Docker's `GET /containers/json` lists containers: the ID is
    /// the one `network inspect` shows under `Containers`, the name the task's full name.
    pub fn containers(&self) -> Vec<serde_json::Value> {
        let nets: BTreeMap<&str, &NetworkRecord> = self
            .last
            .networks
            .iter()
            .map(|n| (n.id.as_str(), n))
            .collect();
        let mut list = Vec::new();
        // Newest first, as Docker lists containers.
        let mut tasks: Vec<&LocalTask> = self.tasks.values().collect();
        tasks.sort_by(|a, b| b.started.cmp(&a.started).then(a.task.id.cmp(&b.task.id)));
        for t in tasks {
            if self.leaving.contains_key(&t.task.id) {
                continue;
            }
            let created = t
                .started
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default();
            let up = t.started.elapsed().map(|d| d.as_secs()).unwrap_or_default();
            let mut networks = serde_json::Map::new();
            for a in &t.task.addresses {
                let Some(net) = nets.get(a.network_id.as_str()) else {
                    continue;
                };
                let mac = a.mac();
                networks.insert(
                    net.name.clone(),
                    serde_json::json!({
                        "IPAMConfig": {"IPv4Address": a.addr.addr().to_string()},
                        "Links": null,
                        "Aliases": null,
                        "NetworkID": net.id,
                        "EndpointID": sha256_hex(&format!("{}/{}", t.task.id, net.id)),
                        "Gateway": "",
                        "IPAddress": a.addr.addr().to_string(),
                        "IPPrefixLen": a.addr.prefix_len(),
                        "IPv6Gateway": "",
                        "GlobalIPv6Address": "",
                        "GlobalIPv6PrefixLen": 0,
                        "MacAddress": mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"),
                        "DriverOpts": null,
                    }),
                );
            }
            let full = t.task.full_name();
            list.push(serde_json::json!({
                "Id": sha256_hex(&t.task.id),
                "Names": [format!("/{full}")],
                "Image": t.task.image,
                "ImageID": "",
                "Command": match &t.kind {
                    TaskKind::Virtual(app) => format!("(built-in) {}", app.to_value()),
                    TaskKind::Program => t.task.args.join(" "),
                },
                "Created": created,
                "Ports": [],
                "Labels": {
                    "com.docker.swarm.service.id": t.task.service_id,
                    "com.docker.swarm.service.name": t.task.service_name,
                    "com.docker.swarm.task": "",
                    "com.docker.swarm.task.id": t.task.id,
                    "com.docker.swarm.task.name": full,
                },
                "State": "running",
                "Status": format!("Up {}", crate::cli::service_args::human_duration(up)),
                "HostConfig": {"NetworkMode": "default"},
                "NetworkSettings": {"Networks": networks},
                "Mounts": [],
            }));
        }
        list
    }

    pub fn balancer(&self) -> Vec<crate::api::BalancerRow> {
        let Some(node) = self.node.as_ref() else {
            return Vec::new();
        };
        let t = node.tables();
        let stats = t.conntrack.stats();
        let mut rows = Vec::new();
        for v in &t.lb.vips {
            let net = t.network(v.net).map(|n| n.name.clone()).unwrap_or_default();
            let names: std::collections::HashMap<Ipv4Addr, &str> = t
                .services
                .network(v.net.0 as usize)
                .into_iter()
                .flat_map(|n| n.services.iter().filter(|s| s.name == v.service))
                .flat_map(|s| s.backends.iter().map(|b| (b.ip, b.task.as_str())))
                .collect();
            let mut seen: Vec<Ipv4Addr> = v.backends.clone();
            for s in stats.iter().filter(|s| s.net == v.net.0 && s.vip == v.ip) {
                if !seen.contains(&s.backend) {
                    seen.push(s.backend);
                }
            }
            for b in seen {
                let st = stats
                    .iter()
                    .find(|s| s.net == v.net.0 && s.vip == v.ip && s.backend == b);
                rows.push(crate::api::BalancerRow {
                    service: v.service.clone(),
                    network: net.clone(),
                    vip: v.ip.to_string(),
                    task: names.get(&b).map(|n| n.to_string()).unwrap_or_default(),
                    address: b.to_string(),
                    active: st.map_or(0, |s| s.active),
                    connections: st.map_or(0, |s| s.connections),
                    bytes: st.map_or(0, |s| s.bytes),
                });
            }
        }
        rows
    }

    /// The data path's counters with each local port's network, service and task, for a
    /// metrics scrape (`None` before the data plane runs).
    pub fn metrics_sample(&mut self) -> Option<super::metrics::DataplaneSample> {
        let node = self.node.as_ref()?;
        let counters = node.counters();
        let tables = node.tables();
        // Endpoint names (as `view` makes them) to (service, task).
        let mut owners: BTreeMap<String, (&str, String)> = BTreeMap::new();
        for t in self.tasks.values() {
            let full = t.task.full_name();
            // Its interfaces on its networks, and its way out (docker_gwbridge) after them.
            for i in 0..=t.task.addresses.len() {
                let name = if i == 0 {
                    full.clone()
                } else {
                    format!("{full}.eth{i}")
                };
                owners.insert(name, (t.task.service_name.as_str(), full.clone()));
            }
        }
        // A port keeps the owner it was first seen with: a task leaving (its port lives on
        // for the withdrawal) does not turn its series into another.
        for p in &tables.ports {
            let Some(net) = tables.network(p.network) else {
                continue;
            };
            let seen = self.port_owners.entry(p.id.0).or_default();
            seen.network.clone_from(&net.name);
            if let Some((service, task)) = owners.get(&p.name) {
                seen.service = service.to_string();
                seen.task.clone_from(task);
            }
        }
        let mut networks: BTreeMap<String, crate::dataplane::PortCounters> = BTreeMap::new();
        for (id, owner) in &self.port_owners {
            if let Some(c) = counters.ports.get(*id as usize) {
                let sum = networks.entry(owner.network.clone()).or_default();
                sum.rx_packets += c.rx_packets;
                sum.rx_bytes += c.rx_bytes;
                sum.tx_packets += c.tx_packets;
                sum.tx_bytes += c.tx_bytes;
            }
        }
        let ports = tables
            .ports
            .iter()
            .filter_map(|p| {
                let owner = self.port_owners.get(&p.id.0)?;
                Some(super::metrics::PortSample {
                    port: p.name.clone(),
                    network: owner.network.clone(),
                    service: owner.service.clone(),
                    task: owner.task.clone(),
                    counters: counters
                        .ports
                        .get(p.id.0 as usize)
                        .copied()
                        .unwrap_or_default(),
                })
            })
            .collect();
        Some(super::metrics::DataplaneSample {
            ports,
            networks,
            underlay: counters.underlay,
            drops: crate::dataplane::DropReason::ALL
                .iter()
                .map(|r| (r.as_str(), counters.dropped(*r)))
                .collect(),
            events: counters.events,
            balancer: self.balancer(),
            mesh: node.mesh_stats(),
            esp_sas: tables.esp.as_ref().map(|e| e.sa_counts()),
        })
    }

    /// Whether tasks no longer assigned are still running (they stop `WITHDRAW` after).
    pub fn has_leaving(&self) -> bool {
        !self.leaving.is_empty()
    }

    /// Sets the resolv.conf whose nameservers answer names outside the swarm (read when the
    /// data path starts).
    pub fn set_resolv_conf(&mut self, path: Option<PathBuf>) {
        self.resolv_conf = path;
    }

    /// Sets how long a task no longer assigned keeps running (`WITHDRAW` by default).
    pub fn set_withdraw(&mut self, withdraw: Duration) {
        self.withdraw = withdraw;
    }

    /// The tasks running here (for `network inspect` and `exec`).
    pub fn local_tasks(&self) -> impl Iterator<Item = (&AssignedTask, &TaskKind)> {
        self.tasks.values().map(|t| (&t.task, &t.kind))
    }

    /// The node view of these tasks.
    fn view(
        &self,
        a: &Assignments,
        peers: &[Peer],
        tasks: &BTreeMap<String, LocalTask>,
        keys: &[NetworkKey],
    ) -> Topology {
        let nets: BTreeMap<&str, &NetworkRecord> =
            a.networks.iter().map(|n| (n.id.as_str(), n)).collect();
        let mut endpoints = Vec::new();
        for t in tasks.values() {
            for (i, addr) in t.task.addresses.iter().enumerate() {
                let Some(net) = nets.get(addr.network_id.as_str()) else {
                    continue;
                };
                let name = if i == 0 {
                    t.task.full_name()
                } else {
                    format!("{}.eth{i}", t.task.full_name())
                };
                endpoints.push(Endpoint {
                    name,
                    network: net.name.clone(),
                    ip: addr.addr.addr(),
                    mac: MacAddr(addr.mac()),
                    vtep: None,
                    netns: match t.kind {
                        TaskKind::Virtual(_) => None,
                        TaskKind::Program => Some(t.task.full_name()),
                    },
                    // A program task's further networks: eth1, ... in its one namespace.
                    iface: match t.kind {
                        TaskKind::Program if i > 0 => Some(format!("eth{i}")),
                        _ => None,
                    },
                    app: match &t.kind {
                        TaskKind::Virtual(app) => Some(app.clone()),
                        TaskKind::Program => None,
                    },
                    task: Some(t.task.full_name()),
                });
            }
            // Its way out, the last interface: docker_gwbridge.
            if let Some(ip) = self.gw_addrs.get(&t.task.id) {
                let n = t.task.addresses.len();
                let (netns, iface, app) = match &t.kind {
                    TaskKind::Program => (Some(t.task.full_name()), Some(format!("eth{n}")), None),
                    TaskKind::Virtual(app) => (None, None, Some(app.clone())),
                };
                endpoints.push(Endpoint {
                    name: format!("{}.eth{n}", t.task.full_name()),
                    network: GWBRIDGE.into(),
                    ip: *ip,
                    mac: MacAddr::from_ipv4(*ip),
                    vtep: None,
                    netns,
                    iface,
                    app,
                    task: Some(t.task.full_name()),
                });
            }
        }
        for p in peers {
            let Some(net) = nets.get(p.network_id.as_str()) else {
                continue;
            };
            let o = p.addr.octets();
            endpoints.push(Endpoint {
                name: format!("{}@{}", p.task_id, net.name),
                network: net.name.clone(),
                ip: p.addr,
                mac: MacAddr([0x02, 0x42, o[0], o[1], o[2], o[3]]),
                vtep: Some(p.vtep),
                netns: None,
                iface: None,
                app: None,
                task: None,
            });
        }
        endpoints.extend(mesh::sandbox_endpoint(a));
        let services = view_services(a, &nets, tasks, &mut endpoints);
        let mut networks: Vec<topology::Network> = a
            .networks
            .iter()
            .filter_map(|n| {
                Some(topology::Network {
                    name: n.name.clone(),
                    vni: n.vni?,
                    subnet: n.subnet,
                    gateway: n.gateway,
                    mtu: network_mtu(n),
                    encrypted: n.encrypted(),
                    ingress: n.ingress,
                    bridge: None,
                })
            })
            .collect();
        if let Some(gw) = self.gwbridge.as_ref().filter(|_| !self.gw_addrs.is_empty()) {
            networks.push(topology::Network {
                name: GWBRIDGE.into(),
                vni: 0,
                subnet: gw.subnet,
                gateway: gw.gateway,
                mtu: gw
                    .options
                    .get("com.docker.network.driver.mtu")
                    .and_then(|m| m.parse().ok())
                    .unwrap_or(1500),
                encrypted: false,
                ingress: false,
                bridge: Some(topology::Bridge {
                    icc: gw
                        .options
                        .get("com.docker.network.bridge.enable_icc")
                        .is_some_and(|v| v == "true"),
                }),
            });
        }
        let encryption = keys::primary(keys).map(|primary| topology::Encryption {
            keys: keys
                .iter()
                .filter_map(|k| {
                    Some(topology::EncryptionKey {
                        tag: k.tag,
                        key: k.key.as_slice().try_into().ok()?,
                    })
                })
                .collect(),
            primary: primary.tag,
            transport: EspTransport::Udp,
            udp_port: ESP_UDP_PORT,
        });
        Topology {
            node: topology::Node {
                name: self.hostname.clone(),
                data_path_addr: self.data_path_addr,
                data_path_port: a.data_path_port,
                // Every peer of a swarm is a swarmnet node.
                remote_checksum_offload: true,
            },
            networks,
            endpoints,
            services,
            encryption,
        }
    }

    /// Brings the runtime in line with `a` (blocking: namespaces, devices, threads).
    pub fn apply(&mut self, a: &Assignments, keys: &[NetworkKey]) {
        if self.last != *a {
            self.last = a.clone();
            self.last_digest = a.digest();
        }
        self.keys = keys.to_vec();
        self.reconcile();
    }

    /// Takes the program tasks that ended (by themselves or when asked to) and brings the
    /// runtime in line again if any did. Called with every heartbeat.
    pub fn poll(&mut self) {
        let exits = self.supervisor.take_exits();
        if exits.is_empty() {
            return;
        }
        for exit in exits {
            let id = exit.task_id.clone();
            self.supervisor.forget(&id);
            self.read_program_log(&id, true);
            let asked = self.stopping.remove(&id) || exit.stopped;
            self.tasks.remove(&id);
            if asked {
                self.pending
                    .push(status(&id, TaskState::Shutdown, "shutdown", ""));
                continue;
            }
            self.ended.insert(id.clone());
            let st = process::ExitStatus {
                code: exit.code,
                signal: exit.signal,
            };
            let mut s = match st.task_error() {
                None => status(&id, TaskState::Complete, "finished", ""),
                Some(err) => status(&id, TaskState::Failed, "started", &err),
            };
            s.exit_code = Some(st.exit_code());
            tracing::info!(task = %exit.name, "task ended: {st}");
            self.pending.push(s);
        }
        self.reconcile();
    }

    fn log_path(&self, task_id: &str) -> PathBuf {
        self.state_dir.join("tasks").join(format!("{task_id}.log"))
    }

    /// Reads a program task's new output into `logs`; `last`: its process has ended (the
    /// file goes).
    fn read_program_log(&mut self, task_id: &str, last: bool) {
        let path = self.log_path(task_id);
        let lines = process::read_log_file(&path, None, Some(crate::control::logs::LINES_PER_TASK))
            .unwrap_or_default();
        let cursor = self.log_cursor.get(task_id).cloned().unwrap_or_default();
        let mut newest = cursor.clone();
        for l in lines.into_iter().filter(|l| l.t > cursor) {
            newest = l.t.clone();
            self.logs.push(LogLine {
                task_id: task_id.to_string(),
                stream: match l.stream {
                    process::Stream::Stdout => "stdout".into(),
                    process::Stream::Stderr => "stderr".into(),
                },
                at: l.t,
                line: l.line,
            });
        }
        if last {
            self.log_cursor.remove(task_id);
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(path.with_extension("log.1"));
        } else {
            self.log_cursor.insert(task_id.to_string(), newest);
        }
    }

    fn reconcile(&mut self) {
        let assigned = self.last.clone();
        let keys = self.keys.clone();
        let wanted: BTreeMap<&str, &AssignedTask> =
            assigned.tasks.iter().map(|t| (t.id.as_str(), t)).collect();
        // Tasks no longer assigned stop: virtual ones at once, programs once their process
        // has ended (asked on a thread of its own: the grace may take seconds).
        let gone: Vec<String> = self
            .tasks
            .keys()
            .filter(|id| !wanted.contains_key(id.as_str()))
            .cloned()
            .collect();
        let now = std::time::Instant::now();
        self.leaving
            .retain(|id, _| !wanted.contains_key(id.as_str()));
        for id in gone {
            // Every node's balancer withdraws the task with the same assignments that stop it
            // here: it keeps serving what was already sent its way until they all have.
            let since = *self.leaving.entry(id.clone()).or_insert(now);
            if now.duration_since(since) < self.withdraw {
                continue;
            }
            self.leaving.remove(&id);
            if self.tasks[&id].kind == TaskKind::Program {
                if self.stopping.insert(id.clone()) {
                    let grace = self.tasks[&id]
                        .task
                        .stop_grace
                        .map_or(process::DEFAULT_STOP_GRACE, Duration::from_nanos);
                    let sup = self.supervisor.clone();
                    let tid = id.clone();
                    std::thread::spawn(move || {
                        if let Err(e) = sup.stop(&tid, grace) {
                            tracing::warn!("stopping task {tid}: {e}");
                        }
                    });
                }
                continue;
            }
            self.tasks.remove(&id);
            self.pending
                .push(status(&id, TaskState::Shutdown, "shutdown", ""));
        }
        // New tasks.
        let mut next = self.tasks.clone();
        for t in wanted.values() {
            if next.contains_key(&t.id) || self.ended.contains(&t.id) {
                continue;
            }
            let kind = match builtin_app(&t.image, &t.args) {
                Some(Ok(app)) => TaskKind::Virtual(app),
                Some(Err(e)) => {
                    self.reject(&t.id, &e);
                    continue;
                }
                None => {
                    if !crate::io::netns::have_net_admin() {
                        self.reject(
                            &t.id,
                            &format!(
                                "task {}: image {} is a program, which runs in a network namespace of its own: this node's daemon has no CAP_NET_ADMIN (run it as root), so it runs only built-in apps (swarmnet/whoami, swarmnet/echo, swarmnet/fetch, swarmnet/lookup)",
                                t.name, t.image
                            ),
                        );
                        continue;
                    }
                    if t.addresses.is_empty() {
                        self.reject(
                            &t.id,
                            &format!(
                                "task {}: a program task runs in a network namespace on its networks, and this one has none: give its service a --network",
                                t.name
                            ),
                        );
                        continue;
                    }
                    TaskKind::Program
                }
            };
            next.insert(
                t.id.clone(),
                LocalTask {
                    task: (*t).clone(),
                    kind,
                    started: std::time::SystemTime::now(),
                },
            );
        }
        // The services' backends: this node's tasks as it runs them (those leaving excluded)
        // and the other nodes' as gossip has them.
        let (_, local) = remote::local_entries(
            &assigned,
            next.values()
                .map(|t| (&t.task, self.leaving.contains_key(&t.task.id))),
            self.data_path_addr,
        );
        let (a, peers) = remote::merge(&assigned, &self.remote, &local);
        self.assign_gw_addrs(&a, &next);
        let view = self.view(&a, &peers, &next, &keys);
        self.peers = peers;
        let mesh_config = mesh::config(&a, self.publish_addr);
        if let Some(node) = self.node.as_ref() {
            // Ports published or withdrawn while the view stays the same.
            node.set_mesh(mesh_config.clone());
        }
        // A view that does not change (no task added or removed has an endpoint: a task on no
        // network) still starts and reports its new tasks.
        let unchanged = self.applied.as_ref() == Some(&view);
        if unchanged && next.len() == self.tasks.len() {
            return;
        }
        let result = match self.node.as_mut() {
            _ if unchanged => Ok(()),
            Some(node) => node.apply(&view).map(|_| ()).map_err(|e| e.to_string()),
            None if view.endpoints.iter().any(|e| e.is_local()) => {
                match Node::start(NodeConfig {
                    topology: view.clone(),
                    workers: 1,
                    offload: false,
                    esp_sequence_file: self.state_dir.join("esp-sequence"),
                    resolv_conf: self.resolv_conf.clone(),
                }) {
                    Ok(node) => {
                        node.set_mesh(mesh_config.clone());
                        tracing::info!(
                            "data plane started on {}:{}",
                            self.data_path_addr,
                            a.data_path_port
                        );
                        self.node = Some(node);
                        Ok(())
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
            None => Ok(()),
        };
        match result {
            Ok(()) => {
                self.applied = Some(view);
                self.last_error = None;
                let mut failed = false;
                for (id, t) in &next {
                    if self.tasks.contains_key(id) {
                        continue;
                    }
                    if t.kind == TaskKind::Program {
                        if let Err(e) = self.start_program(&t.task) {
                            self.ended.insert(id.clone());
                            self.pending
                                .push(status(id, TaskState::Failed, "starting", &e));
                            failed = true;
                            continue;
                        }
                    }
                    self.pending
                        .push(status(id, TaskState::Running, "started", ""));
                }
                next.retain(|id, _| !self.ended.contains(id));
                self.tasks = next;
                if failed {
                    // Take the namespaces of the tasks that could not start away again.
                    self.reconcile();
                }
            }
            Err(e) => {
                // The new tasks are what could not be added: they fail, the managers
                // place them again.
                if self.last_error.as_deref() != Some(e.as_str()) {
                    tracing::warn!("tasks could not start: {e}");
                }
                let new: Vec<String> = next
                    .keys()
                    .filter(|id| !self.tasks.contains_key(*id))
                    .cloned()
                    .collect();
                for id in &new {
                    self.ended.insert(id.clone());
                    self.pending
                        .push(status(id, TaskState::Failed, "starting", &e));
                }
                self.last_error = Some(e);
                self.applied = None;
            }
        }
    }

    /// `network inspect`'s `Containers` and `Peers` of a network on this node: its tasks'
    /// endpoints there, and every node with tasks on it (this one included).
    pub fn local_endpoints(&self, network_id: &str) -> crate::api::network::LocalEndpoints {
        use crate::api::network::{EndpointResource, LocalEndpoints, PeerInfo};
        let mut out = LocalEndpoints::default();
        if let Some(gw) = self.gwbridge.as_ref().filter(|g| g.id == network_id) {
            // Docker names a container's endpoint here `gateway_` and 12 digits of its ID.
            for (id, ip) in &self.gw_addrs {
                let container = sha256_hex(id);
                let m = MacAddr::from_ipv4(*ip);
                out.containers.insert(
                    container.clone(),
                    EndpointResource {
                        name: format!("gateway_{}", &container[..12]),
                        endpoint_id: sha256_hex(&format!("{id}/{network_id}")),
                        mac_address: m.to_string(),
                        ipv4_address: format!("{ip}/{}", gw.subnet.prefix_len()),
                        ipv6_address: String::new(),
                    },
                );
            }
            return out;
        }
        for t in self.tasks.values() {
            for a in t
                .task
                .addresses
                .iter()
                .filter(|a| a.network_id == network_id)
            {
                let m = a.mac();
                out.containers.insert(
                    sha256_hex(&t.task.id),
                    EndpointResource {
                        name: t.task.full_name(),
                        endpoint_id: sha256_hex(&format!("{}/{network_id}", t.task.id)),
                        mac_address: format!(
                            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                            m[0], m[1], m[2], m[3], m[4], m[5]
                        ),
                        ipv4_address: a.addr.to_string(),
                        ipv6_address: String::new(),
                    },
                );
            }
        }
        let net = self.last.networks.iter().find(|n| n.id == network_id);
        // The ingress sandbox is there with or without tasks (Docker's `ingress-sbox`).
        if out.containers.is_empty() && !net.is_some_and(|n| n.ingress) {
            return out;
        }
        if let Some(net) = net {
            if let Some(ip) = net.lb.get(&self.last.node_id) {
                let o = ip.octets();
                out.containers.insert(
                    if net.ingress {
                        mesh::SANDBOX.to_string()
                    } else {
                        format!("lb-{}", net.name)
                    },
                    EndpointResource {
                        name: format!("{}-endpoint", net.name),
                        endpoint_id: sha256_hex(&format!("lb/{}/{network_id}", self.last.node_id)),
                        mac_address: format!(
                            "02:42:{:02x}:{:02x}:{:02x}:{:02x}",
                            o[0], o[1], o[2], o[3]
                        ),
                        ipv4_address: format!("{ip}/{}", net.subnet.prefix_len()),
                        ipv6_address: String::new(),
                    },
                );
            }
        }
        let mut peers: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
        peers.insert(self.data_path_addr, self.hostname.clone());
        for p in self.peers.iter().filter(|p| p.network_id == network_id) {
            peers.entry(p.vtep).or_insert_with(|| p.node.clone());
        }
        out.peers = peers
            .into_iter()
            .map(|(ip, name)| PeerInfo {
                name,
                ip: ip.to_string(),
            })
            .collect();
        out
    }

    /// Starts a program task in its namespace (made by the view just applied).
    fn start_program(&self, t: &AssignedTask) -> Result<(), String> {
        let mut argv = vec![t.image.clone()];
        argv.extend(t.args.iter().cloned());
        let env = t
            .env
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.clone(), String::new()),
            })
            .collect();
        let log_path = self.log_path(&t.id);
        if let Some(dir) = log_path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        self.supervisor
            .start(ProcessSpec {
                task_id: t.id.clone(),
                name: t.name.clone(),
                netns: t.full_name(),
                argv,
                env,
                hostname: (!t.hostname.is_empty()).then(|| t.hostname.clone()),
                log_path,
            })
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn reject(&mut self, id: &str, why: &str) {
        self.ended.insert(id.to_string());
        self.pending
            .push(status(id, TaskState::Rejected, "preparing", why));
    }

    /// New output of the tasks: program tasks' stdout and stderr, and what virtual tasks'
    /// apps reported (fetch results).
    pub fn take_logs(&mut self) -> Vec<LogLine> {
        let programs: Vec<String> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.kind == TaskKind::Program)
            .map(|(id, _)| id.clone())
            .collect();
        for id in programs {
            self.read_program_log(&id, false);
        }
        let mut out = std::mem::take(&mut self.logs);
        let Some(node) = self.node.as_ref() else {
            return out;
        };
        let names: Vec<(String, String)> = self
            .tasks
            .values()
            .map(|t| (t.task.id.clone(), t.task.full_name()))
            .collect();
        out.extend(
            node.take_app_events()
                .iter()
                .filter_map(|e| super::work::event_line(e, &names)),
        );
        out
    }

    /// Stops everything (leaving the swarm, shutting down).
    pub fn stop(&mut self) {
        self.supervisor.shutdown(process::DEFAULT_STOP_GRACE);
        self.tasks.clear();
        self.applied = None;
        if let Some(node) = self.node.take() {
            node.stop();
        }
    }
}

/// The `[[service]]` tables of a node view: each assigned service on each network the view
/// has, its backends named by their endpoints (a backend without one here is left out: the
/// data path could not reach it). Remote endpoints learn their task's name for DNS.
fn view_services(
    a: &Assignments,
    nets: &BTreeMap<&str, &NetworkRecord>,
    tasks: &BTreeMap<String, LocalTask>,
    endpoints: &mut [Endpoint],
) -> Vec<topology::Service> {
    // (task id, network name) -> endpoint index
    let mut by_task: std::collections::HashMap<(&str, &str), usize> = Default::default();
    let local: std::collections::HashMap<String, &str> = tasks
        .values()
        .flat_map(|t| {
            t.task.addresses.iter().enumerate().map(move |(i, _)| {
                let name = if i == 0 {
                    t.task.full_name()
                } else {
                    format!("{}.eth{i}", t.task.full_name())
                };
                (name, t.task.id.as_str())
            })
        })
        .collect();
    for (i, e) in endpoints.iter().enumerate() {
        let task_id = match e.vtep {
            Some(_) => e.name.split_once('@').map(|(id, _)| id),
            None => local.get(&e.name).copied(),
        };
        if let Some(id) = task_id {
            by_task.insert((id, e.network.as_str()), i);
        }
    }
    let mut out = Vec::new();
    let mut names: Vec<Option<String>> = vec![None; endpoints.len()];
    for s in &a.services {
        for sn in &s.networks {
            let Some(net) = nets.get(sn.network_id.as_str()) else {
                continue;
            };
            let mut backends = Vec::new();
            for b in &sn.backends {
                if let Some(&i) = by_task.get(&(b.task_id.as_str(), net.name.as_str())) {
                    if endpoints[i].ip == b.addr {
                        backends.push(endpoints[i].name.clone());
                        names[i] = Some(b.name.clone());
                    }
                }
            }
            out.push(topology::Service {
                name: s.name.clone(),
                network: net.name.clone(),
                vip: if s.dnsrr { None } else { sn.vip },
                // A name DNS could not carry would refuse the whole view: left out.
                aliases: sn
                    .aliases
                    .iter()
                    .filter(|a| topology::dns_name_problem(a).is_none())
                    .fold(Vec::<String>::new(), |mut v, a| {
                        let taken = |x: &str| x.eq_ignore_ascii_case(a);
                        if !taken(&s.name) && !v.iter().any(|x| taken(x)) {
                            v.push(a.clone());
                        }
                        v
                    }),
                tasks: backends,
            });
        }
    }
    for (e, name) in endpoints.iter_mut().zip(names) {
        if e.vtep.is_some() {
            e.task = name;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::dispatcher::SwarmNode;
    use crate::control::service::TaskAddress;

    fn node(id: &str, hostname: &str, addr: Ipv4Addr) -> SwarmNode {
        SwarmNode {
            id: id.into(),
            hostname: hostname.into(),
            data_path_addr: addr,
            gossip_addr: None,
        }
    }

    /// Task `t`'s first endpoint as another node's gossip would hold it.
    fn remote_ep(t: &AssignedTask, vtep: Ipv4Addr) -> RemoteEndpoint {
        let a = &t.addresses[0];
        RemoteEndpoint {
            network_id: a.network_id.clone(),
            endpoint_id: t.id.clone(),
            entry: crate::gossip::EndpointEntry {
                task_id: t.id.clone(),
                task_name: t.full_name(),
                service_id: t.service_id.clone(),
                service_name: t.service_name.clone(),
                ip: a.addr.addr(),
                mac: a.mac(),
                vtep,
                aliases: vec![],
                state: crate::gossip::EndpointState::Running,
            },
        }
    }

    fn network() -> NetworkRecord {
        let mut n = NetworkRecord::default_gwbridge("net1".into(), String::new());
        n.name = "my-network".into();
        n.driver = "overlay".into();
        n.subnet = "10.0.9.0/24".parse().unwrap();
        n.gateway = "10.0.9.1".parse().unwrap();
        n.vni = Some(4200);
        n.options.clear();
        n
    }

    fn task(id: &str, slot: u64, image: &str, args: &[&str], ip: &str) -> AssignedTask {
        AssignedTask {
            id: id.into(),
            name: format!("web.{slot}"),
            service_id: "svc".into(),
            service_name: "web".into(),
            slot,
            image: image.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: vec![],
            hostname: String::new(),
            stop_grace: None,
            addresses: vec![TaskAddress {
                network_id: "net1".into(),
                addr: format!("{ip}/24").parse().unwrap(),
            }],
        }
    }

    /// Two nodes' runtimes in one process on loopback (no privilege): a fetch task on one
    /// reaches a whoami task on the other over the userspace VXLAN, its result comes out as the
    /// task's log, and a task taken out of the assignments is reported shut down.
    #[test]
    fn assignments_run_virtual_tasks_that_reach_each_other_across_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let keys = [];
        let (a_addr, b_addr): (Ipv4Addr, Ipv4Addr) =
            ("127.93.0.1".parse().unwrap(), "127.93.0.2".parse().unwrap());
        let mut a = TaskRuntime::new("node-a".into(), a_addr, dir.path().join("a"));
        let mut b = TaskRuntime::new("node-b".into(), b_addr, dir.path().join("b"));
        a.set_withdraw(Duration::ZERO);
        let whoami = task("t1", 1, "swarmnet/whoami:latest", &[], "10.0.9.2");
        let fetch = task("t2", 2, "swarmnet/fetch", &["http://10.0.9.2/"], "10.0.9.3");
        let mut net_a = network();
        net_a
            .lb
            .insert("node-a-id".into(), "10.0.9.4".parse().unwrap());
        let on_a = Assignments {
            node_id: "node-a-id".into(),
            tasks: vec![whoami.clone()],
            networks: vec![net_a],
            services: Vec::new(),
            nodes: vec![node("node-b-id", "node-b", b_addr)],
            data_path_port: 47891,
        };
        let on_b = Assignments {
            node_id: "node-b-id".into(),
            tasks: vec![fetch.clone()],
            networks: vec![network()],
            services: Vec::new(),
            nodes: vec![node("node-a-id", "node-a", a_addr)],
            data_path_port: 47891,
        };
        // What gossip brings each of them: the other's task.
        a.set_remote(vec![remote_ep(&fetch, b_addr)]);
        b.set_remote(vec![remote_ep(&whoami, a_addr)]);
        a.apply(&on_a, &keys);
        b.apply(&on_b, &keys);
        let running: Vec<(String, TaskState)> = a
            .take_statuses()
            .into_iter()
            .chain(b.take_statuses())
            .map(|s| (s.task_id, s.state))
            .collect();
        assert_eq!(
            running,
            [
                ("t1".to_string(), TaskState::Running),
                ("t2".to_string(), TaskState::Running)
            ]
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        let mut seen = Vec::new();
        while std::time::Instant::now() < deadline {
            seen.extend(b.take_logs());
            if seen.iter().any(|l| l.line.contains(": 200,")) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let ok = seen.iter().find(|l| l.line.contains(": 200,"));
        assert!(ok.is_some(), "no answer from the whoami task: {seen:?}");
        assert_eq!(ok.unwrap().task_id, "t2");
        // `network inspect` on node a: its task, and both nodes as peers.
        let local = a.local_endpoints("net1");
        let lb = &local.containers["lb-my-network"];
        assert_eq!(
            (
                lb.name.as_str(),
                lb.ipv4_address.as_str(),
                lb.mac_address.as_str()
            ),
            ("my-network-endpoint", "10.0.9.4/24", "02:42:0a:00:09:04")
        );
        let ep: Vec<_> = local
            .containers
            .iter()
            .filter(|(k, _)| !k.starts_with("lb-"))
            .map(|(_, v)| v)
            .collect();
        assert_eq!(ep.len(), 1);
        assert_eq!(ep[0].name, "web.1.t1");
        assert_eq!(ep[0].mac_address, "02:42:0a:00:09:02");
        assert_eq!(ep[0].ipv4_address, "10.0.9.2/24");
        let peers: Vec<(&str, &str)> = local
            .peers
            .iter()
            .map(|p| (p.name.as_str(), p.ip.as_str()))
            .collect();
        assert_eq!(peers, [("node-a", "127.93.0.1"), ("node-b", "127.93.0.2")]);
        assert!(a.local_endpoints("other").containers.is_empty());
        // The whoami task goes: reported shut down; applying again changes nothing.
        let none = Assignments {
            tasks: vec![],
            ..on_a.clone()
        };
        a.apply(&none, &keys);
        let st = a.take_statuses();
        assert_eq!(st.len(), 1);
        assert_eq!(
            (st[0].task_id.as_str(), st[0].state),
            ("t1", TaskState::Shutdown)
        );
        a.apply(&none, &keys);
        assert!(a.take_statuses().is_empty());
        a.stop();
        b.stop();
    }

    /// A task on no network adds no endpoint, so the view does not change: it is still started
    /// and reported, and so is a second one after it.
    #[test]
    fn tasks_on_no_network_run_and_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut rt = TaskRuntime::new("n".into(), "127.93.0.4".parse().unwrap(), dir.path().into());
        rt.set_withdraw(Duration::from_millis(300));
        let mut t = task("g1", 0, "swarmnet/whoami", &[], "10.0.9.9");
        t.addresses.clear();
        let mut a = Assignments {
            node_id: "n".into(),
            tasks: vec![t.clone()],
            networks: vec![],
            services: Vec::new(),
            nodes: Vec::new(),
            data_path_port: 47893,
        };
        rt.apply(&a, &[]);
        let st = rt.take_statuses();
        assert_eq!(
            (st[0].task_id.as_str(), st[0].state),
            ("g1", TaskState::Running)
        );
        t.id = "g2".into();
        a.tasks = vec![t];
        // g1 keeps running a while after it is no longer assigned (others withdraw it).
        rt.apply(&a, &[]);
        let st: Vec<(String, TaskState)> = rt
            .take_statuses()
            .into_iter()
            .map(|s| (s.task_id, s.state))
            .collect();
        assert_eq!(st, [("g2".to_string(), TaskState::Running)]);
        std::thread::sleep(Duration::from_millis(300));
        rt.apply(&a, &[]);
        let mut st: Vec<(String, TaskState)> = rt
            .take_statuses()
            .into_iter()
            .map(|s| (s.task_id, s.state))
            .collect();
        st.sort();
        assert_eq!(st, [("g1".to_string(), TaskState::Shutdown)]);
    }

    #[test]
    fn a_program_task_without_cap_net_admin_or_a_bad_app_is_rejected_with_why() {
        let dir = tempfile::tempdir().unwrap();
        let mut rt = TaskRuntime::new("n".into(), "127.93.0.3".parse().unwrap(), dir.path().into());
        let a = Assignments {
            node_id: "n".into(),
            tasks: vec![task("t9", 1, "swarmnet/nginx", &[], "10.0.9.9")],
            networks: vec![network()],
            services: Vec::new(),
            nodes: Vec::new(),
            data_path_port: 47892,
        };
        rt.apply(&a, &[]);
        let st = rt.take_statuses();
        assert_eq!(st[0].state, TaskState::Rejected);
        assert!(
            st[0].error.contains("not a built-in app"),
            "{}",
            st[0].error
        );
        // Rejected once: not tried again.
        rt.apply(&a, &[]);
        assert!(rt.take_statuses().is_empty());
    }

    #[test]
    fn built_in_apps_are_named_by_image_with_any_tag() {
        assert_eq!(builtin_app("swarmnet/whoami", &[]), Some(Ok(App::Whoami)));
        assert_eq!(
            builtin_app("swarmnet/echo:latest", &[]),
            Some(Ok(App::Echo))
        );
        assert!(matches!(
            builtin_app("swarmnet/fetch", &["http://10.0.1.3/".into()]),
            Some(Ok(App::Fetch(_)))
        ));
        assert!(builtin_app("swarmnet/fetch", &[])
            .unwrap()
            .unwrap_err()
            .contains("one argument"));
        assert!(builtin_app("swarmnet/nginx", &[])
            .unwrap()
            .unwrap_err()
            .contains("not a built-in app"));
        assert_eq!(builtin_app("nginx:alpine", &[]), None);
        assert_eq!(builtin_app("/bin/sleep", &[]), None);
    }
}
