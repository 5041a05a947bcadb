//! What the managers hand each node (swarmkit's dispatcher): the tasks it is to run, the
//! networks they need, and where every other task on those networks lives (its address, MAC
//! and node). Nodes fetch it with each heartbeat and report their tasks' states in the same
//! call; the leader computes it from the store ([`assignments`], pure).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::logs::LogLine;
use super::network::NetworkRecord;
use super::service::{ServiceRecord, TaskAddress, TaskRecord, TaskState, TaskStatus};
use crate::api::{Node, NodeState};

/// A task as its node needs it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AssignedTask {
    pub id: String,
    /// `my-web.1` (replicated) or `my-web.<node id>` (global), as Docker names tasks.
    pub name: String,
    pub service_id: String,
    pub service_name: String,
    pub slot: u64,
    pub image: String,
    pub args: Vec<String>,
    /// `K=V`.
    pub env: Vec<String>,
    pub hostname: String,
    /// Nanoseconds; `None`: Docker's 10 s.
    pub stop_grace: Option<u64>,
    /// In the order of the service's networks: eth0, eth1, ...
    pub addresses: Vec<TaskAddress>,
}

impl AssignedTask {
    /// Docker's full task name, `my-web.1.<task id>`.
    pub fn full_name(&self) -> String {
        format!("{}.{}", self.name, self.id)
    }
}

/// Another node's task on one of the node's networks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Peer {
    pub task_id: String,
    pub network_id: String,
    pub addr: Ipv4Addr,
    /// The node's VXLAN endpoint (its data-path address).
    pub vtep: Ipv4Addr,
    /// The node's hostname.
    #[serde(default)]
    pub node: String,
}

/// Everything a node is to run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Assignments {
    /// The node they are for.
    #[serde(default)]
    pub node_id: String,
    pub tasks: Vec<AssignedTask>,
    /// The networks of those tasks.
    pub networks: Vec<NetworkRecord>,
    pub peers: Vec<Peer>,
    /// The services on those networks: their names, VIPs and running tasks (discovery, VIPs,
    /// the routing mesh).
    #[serde(default)]
    pub services: Vec<AssignedService>,
    /// The swarm's VXLAN port.
    pub data_path_port: u16,
}

/// A service with a VIP or tasks on one of the node's networks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AssignedService {
    pub id: String,
    pub name: String,
    /// Endpoint mode dnsrr: names resolve to the tasks, there is no VIP.
    pub dnsrr: bool,
    /// The service on each of the node's networks it is on.
    pub networks: Vec<ServiceNetwork>,
    /// Published ports, as allocated.
    pub ports: Vec<crate::api::service::PortConfig>,
}

/// A service on one network.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServiceNetwork {
    pub network_id: String,
    /// `None` in dnsrr mode.
    pub vip: Option<Ipv4Addr>,
    pub aliases: Vec<String>,
    /// The tasks running now (reported running, to keep running, on a node that is up), by
    /// task name.
    pub backends: Vec<ServiceBackend>,
}

/// A running task of a service on one network.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServiceBackend {
    pub task_id: String,
    /// Docker's full task name, `my-web.1.<task id>`.
    pub name: String,
    pub addr: Ipv4Addr,
}

impl Assignments {
    /// A digest of the assignments: a node sends the one it runs, and the manager leaves the
    /// assignments out of its answer while they are the same.
    pub fn digest(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.hash(&mut h);
        h.finish()
    }
}

/// What a node reports with a heartbeat.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub statuses: Vec<TaskStatus>,
    pub logs: Vec<LogLine>,
    /// The digest of the assignments the node runs (`None`: it has none yet).
    #[serde(default)]
    pub running: Option<u64>,
    /// Hold the answer (up to a heartbeat period) until the assignments differ from
    /// `running`, so changes reach the node at once instead of at its next heartbeat.
    #[serde(default)]
    pub wait: bool,
}

/// Docker's task name: `service.slot`, or `service.node` in global mode.
pub fn task_name(service: &str, task: &TaskRecord) -> String {
    if task.slot == 0 {
        format!("{service}.{}", task.node_id)
    } else {
        format!("{service}.{}", task.slot)
    }
}

/// The store's services, networks and tasks indexed for the dispatcher: each node's tasks and
/// each network's task addresses, so one node's assignments cost its own tasks and their
/// networks' peers, not the whole store. Built once per change of the store.
#[derive(Debug, Default)]
pub struct Index {
    services: HashMap<String, ServiceRecord>,
    networks: HashMap<String, NetworkRecord>,
    tasks: Vec<TaskRecord>,
    /// Task positions by node.
    by_node: HashMap<String, Vec<usize>>,
    /// (task position, address position) of live tasks by network.
    by_network: HashMap<String, Vec<(usize, usize)>>,
    /// Each node's VXLAN endpoint and hostname.
    nodes: HashMap<String, (Ipv4Addr, String)>,
    /// Assignments already built, by node: (the set of nodes up they were built for, them).
    #[allow(clippy::type_complexity)]
    memo: std::sync::Mutex<HashMap<String, (u64, std::sync::Arc<(Assignments, u64)>)>>,
}

impl Index {
    pub fn new(
        nodes: &[Node],
        services: Vec<ServiceRecord>,
        networks: Vec<NetworkRecord>,
        tasks: Vec<TaskRecord>,
    ) -> Index {
        let mut by_node: HashMap<String, Vec<usize>> = HashMap::new();
        let mut by_network: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
        for (i, t) in tasks.iter().enumerate() {
            if t.state.is_terminal() {
                continue;
            }
            by_node.entry(t.node_id.clone()).or_default().push(i);
            for (j, a) in t.addresses.iter().enumerate() {
                by_network
                    .entry(a.network_id.clone())
                    .or_default()
                    .push((i, j));
            }
        }
        Index {
            services: services.into_iter().map(|s| (s.id.clone(), s)).collect(),
            networks: networks.into_iter().map(|n| (n.id.clone(), n)).collect(),
            tasks,
            by_node,
            by_network,
            nodes: nodes
                .iter()
                .filter_map(|n| {
                    Some((
                        n.id.clone(),
                        (n.data_path_addr.parse().ok()?, n.hostname.clone()),
                    ))
                })
                .collect(),
            memo: Default::default(),
        }
    }

    /// The nodes of the index, for a fingerprint of which are up.
    pub fn node_ids(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    /// The assignments of `node_id` and their digest, built once per `up_set` (a fingerprint
    /// of which nodes are up, which `up` answers).
    pub fn assignments_memo(
        &self,
        node_id: &str,
        up_set: u64,
        up: impl Fn(&str) -> bool,
        data_path_port: u16,
    ) -> std::sync::Arc<(Assignments, u64)> {
        if let Ok(memo) = self.memo.lock() {
            if let Some((set, a)) = memo.get(node_id) {
                if *set == up_set {
                    return a.clone();
                }
            }
        }
        let a = self.assignments(node_id, up, data_path_port);
        let digest = a.digest();
        let a = std::sync::Arc::new((a, digest));
        if let Ok(mut memo) = self.memo.lock() {
            memo.insert(node_id.to_string(), (up_set, a.clone()));
        }
        a
    }

    /// The assignments of node `node_id`; only tasks on nodes that are `up` are its peers.
    pub fn assignments(
        &self,
        node_id: &str,
        up: impl Fn(&str) -> bool,
        data_path_port: u16,
    ) -> Assignments {
        let mut out = Assignments {
            node_id: node_id.to_string(),
            data_path_port,
            ..Assignments::default()
        };
        let mut wanted: BTreeSet<&str> = BTreeSet::new();
        let own = self
            .by_node
            .get(node_id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for t in own.iter().map(|&i| &self.tasks[i]) {
            if t.desired > TaskState::Running {
                continue;
            }
            let Some(s) = self.services.get(&t.service_id) else {
                continue;
            };
            let c = &s.spec.task_template.container_spec;
            for a in &t.addresses {
                wanted.insert(a.network_id.as_str());
            }
            out.tasks.push(AssignedTask {
                id: t.id.clone(),
                name: task_name(&s.spec.name, t),
                service_id: s.id.clone(),
                service_name: s.spec.name.clone(),
                slot: t.slot,
                image: c.image.clone(),
                args: c.args.clone(),
                env: c.env.clone(),
                hostname: c.hostname.clone(),
                stop_grace: c.stop_grace_period,
                addresses: t.addresses.clone(),
            });
        }
        out.tasks.sort_by(|a, b| a.id.cmp(&b.id));
        // The routing mesh: while a service publishes a port in ingress mode, every node has the
        // ingress network (its sandbox, the services' tasks there) even without a task on it.
        let meshed = self
            .services
            .values()
            .any(|s| s.ports.iter().any(|p| p.publish_mode == "ingress"));
        if meshed {
            if let Some(n) = self.networks.values().find(|n| n.ingress) {
                wanted.insert(n.id.as_str());
            }
        }
        out.networks = wanted
            .iter()
            .filter_map(|id| self.networks.get(*id).cloned())
            .collect();
        if wanted.is_empty() {
            return out;
        }
        let mut seen: HashMap<&str, Option<(Ipv4Addr, &str)>> = HashMap::new();
        let mut peers: BTreeMap<(&str, Ipv4Addr), Peer> = BTreeMap::new();
        for net in &wanted {
            let live = self
                .by_network
                .get(*net)
                .map(Vec::as_slice)
                .unwrap_or_default();
            for &(i, j) in live {
                let t = &self.tasks[i];
                if t.node_id == node_id {
                    continue;
                }
                let vtep = *seen.entry(t.node_id.as_str()).or_insert_with(|| {
                    let (ip, host) = self.nodes.get(&t.node_id)?;
                    up(&t.node_id).then_some((*ip, host.as_str()))
                });
                let Some((vtep, hostname)) = vtep else {
                    continue;
                };
                let a = &t.addresses[j];
                // One address, one owner: a running task wins over a stopping one that
                // held it.
                let key = (a.network_id.as_str(), a.addr.addr());
                if peers.contains_key(&key) && t.desired > TaskState::Running {
                    continue;
                }
                peers.insert(
                    key,
                    Peer {
                        task_id: t.id.clone(),
                        network_id: a.network_id.clone(),
                        addr: a.addr.addr(),
                        vtep,
                        node: hostname.to_string(),
                    },
                );
            }
        }
        // The other nodes' load-balancer endpoints (ingress sandboxes): the tasks answer them.
        for net in &wanted {
            let Some(n) = self.networks.get(*net) else {
                continue;
            };
            for (node, addr) in &n.lb {
                if node == node_id || !up(node) {
                    continue;
                }
                let Some((vtep, hostname)) = self.nodes.get(node) else {
                    continue;
                };
                peers.entry((n.id.as_str(), *addr)).or_insert_with(|| Peer {
                    task_id: format!("lb-{node}"),
                    network_id: n.id.clone(),
                    addr: *addr,
                    vtep: *vtep,
                    node: hostname.clone(),
                });
            }
        }
        out.peers = peers.into_values().collect();
        out.services = self.services_on(&wanted, node_id, &up);
        out
    }

    /// The services with a VIP or a running task on the networks `wanted`.
    fn services_on(
        &self,
        wanted: &BTreeSet<&str>,
        node_id: &str,
        up: &impl Fn(&str) -> bool,
    ) -> Vec<AssignedService> {
        let mut out: BTreeMap<&str, AssignedService> = BTreeMap::new();
        let mut nets: BTreeMap<(&str, &str), ServiceNetwork> = BTreeMap::new();
        let network_of = |s: &ServiceRecord, net: &str| -> ServiceNetwork {
            let aliases = s
                .spec
                .task_template
                .networks
                .iter()
                .zip(&s.networks)
                .find(|(_, id)| id.as_str() == net)
                .map(|(a, _)| a.aliases.clone())
                .unwrap_or_default();
            ServiceNetwork {
                network_id: net.to_string(),
                vip: s
                    .vips
                    .iter()
                    .find(|v| v.network_id == net)
                    .map(|v| v.addr.addr()),
                aliases,
                backends: Vec::new(),
            }
        };
        for s in self.services.values() {
            for v in &s.vips {
                if wanted.contains(v.network_id.as_str()) {
                    nets.entry((s.id.as_str(), v.network_id.as_str()))
                        .or_insert_with(|| network_of(s, &v.network_id));
                }
            }
        }
        for net in wanted {
            let live = self
                .by_network
                .get(*net)
                .map(Vec::as_slice)
                .unwrap_or_default();
            for &(i, j) in live {
                let t = &self.tasks[i];
                if t.state != TaskState::Running || t.desired > TaskState::Running {
                    continue;
                }
                if t.node_id != node_id && !up(&t.node_id) {
                    continue;
                }
                let Some(s) = self.services.get(&t.service_id) else {
                    continue;
                };
                let sn = nets
                    .entry((s.id.as_str(), net))
                    .or_insert_with(|| network_of(s, net));
                sn.backends.push(ServiceBackend {
                    task_id: t.id.clone(),
                    name: format!("{}.{}", task_name(&s.spec.name, t), t.id),
                    addr: t.addresses[j].addr.addr(),
                });
            }
        }
        for ((sid, _), mut sn) in nets {
            let Some(s) = self.services.get(sid) else {
                continue;
            };
            sn.backends.sort_by(|a, b| a.name.cmp(&b.name));
            out.entry(sid)
                .or_insert_with(|| AssignedService {
                    id: s.id.clone(),
                    name: s.spec.name.clone(),
                    dnsrr: s
                        .spec
                        .endpoint_spec
                        .as_ref()
                        .is_some_and(|e| e.mode == "dnsrr"),
                    networks: Vec::new(),
                    ports: s.ports.clone(),
                })
                .networks
                .push(sn);
        }
        out.into_values().collect()
    }
}

/// The assignments of node `node_id` (building an [`Index`] for one call).
pub fn assignments(
    node_id: &str,
    nodes: &[Node],
    services: &[ServiceRecord],
    networks: &[NetworkRecord],
    tasks: &[TaskRecord],
    data_path_port: u16,
) -> Assignments {
    Index::new(nodes, services.to_vec(), networks.to_vec(), tasks.to_vec()).assignments(
        node_id,
        |id| {
            nodes
                .iter()
                .any(|n| n.id == id && n.status.state == NodeState::Ready)
        },
        data_path_port,
    )
}
