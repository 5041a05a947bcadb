//! What the managers hand each node (swarmkit's dispatcher): the tasks it is to run, the
//! networks they need, the services on those networks (names, VIPs, aliases, ports) and the
//! swarm's nodes with their gossip addresses. Where the other nodes' tasks live (peer tables,
//! DNS and load-balancer backends) is not in it: the nodes gossip that among themselves
//! (`control::daemon::gossip`), so a dead node's tasks go without waiting for the managers.
//! Nodes fetch it with each heartbeat and report their tasks' states in the same call; the
//! leader computes it from the store ([`assignments`], pure).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::logs::LogLine;
use super::network::NetworkRecord;
use super::service::{ServiceRecord, TaskAddress, TaskRecord, TaskState, TaskStatus};
use crate::api::Node;

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

/// Another node's task on one of the node's networks, as the node's gossip learnt it.
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
    /// The services on those networks: their names, VIPs, aliases and ports (discovery, VIPs,
    /// the routing mesh); their backends come from the node's own tasks and from gossip.
    #[serde(default)]
    pub services: Vec<AssignedService>,
    /// Every node of the swarm, by ID: whom the node gossips with (and no one else).
    #[serde(default)]
    pub nodes: Vec<SwarmNode>,
    /// The swarm's VXLAN port.
    pub data_path_port: u16,
}

/// A node of the swarm as the others need it for gossip.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SwarmNode {
    pub id: String,
    pub hostname: String,
    /// Its VXLAN endpoint.
    pub data_path_addr: Ipv4Addr,
    /// Where it gossips; `None` until it has reported it.
    pub gossip_addr: Option<std::net::SocketAddr>,
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
    /// The running tasks, by task name: empty from the managers; the node fills it with its
    /// own tasks as it runs them and the other nodes' as gossip has them.
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
    /// Where the node gossips (`IP:PORT`), once its gossip runs.
    #[serde(default)]
    pub gossip_addr: Option<std::net::SocketAddr>,
}

/// Docker's task name: `service.slot`, or `service.node` in global mode.
pub fn task_name(service: &str, task: &TaskRecord) -> String {
    if task.slot == 0 {
        format!("{service}.{}", task.node_id)
    } else {
        format!("{service}.{}", task.slot)
    }
}

/// The store's services, networks and tasks indexed for the dispatcher: each node's tasks, so
/// one node's assignments cost its own tasks and their networks' services, not the whole
/// store. Built once per change of the store.
#[derive(Debug, Default)]
pub struct Index {
    services: HashMap<String, ServiceRecord>,
    networks: HashMap<String, NetworkRecord>,
    tasks: Vec<TaskRecord>,
    /// Task positions by node.
    by_node: HashMap<String, Vec<usize>>,
    /// Every node with a valid data-path address, in ID order.
    swarm: Vec<SwarmNode>,
    /// Assignments already built, by node.
    #[allow(clippy::type_complexity)]
    memo: std::sync::Mutex<HashMap<String, std::sync::Arc<(Assignments, u64)>>>,
}

impl Index {
    pub fn new(
        nodes: &[Node],
        services: Vec<ServiceRecord>,
        networks: Vec<NetworkRecord>,
        tasks: Vec<TaskRecord>,
    ) -> Index {
        let mut by_node: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, t) in tasks.iter().enumerate() {
            if t.state.is_terminal() {
                continue;
            }
            by_node.entry(t.node_id.clone()).or_default().push(i);
        }
        Index {
            services: services.into_iter().map(|s| (s.id.clone(), s)).collect(),
            networks: networks.into_iter().map(|n| (n.id.clone(), n)).collect(),
            tasks,
            by_node,
            swarm: {
                let mut v: Vec<SwarmNode> = nodes
                    .iter()
                    .filter_map(|n| {
                        Some(SwarmNode {
                            id: n.id.clone(),
                            hostname: n.hostname.clone(),
                            data_path_addr: n.data_path_addr.parse().ok()?,
                            gossip_addr: n.gossip_addr.parse().ok(),
                        })
                    })
                    .collect();
                v.sort_by(|a, b| a.id.cmp(&b.id));
                v
            },
            memo: Default::default(),
        }
    }

    /// The nodes of the index.
    pub fn node_ids(&self) -> impl Iterator<Item = &str> {
        self.swarm.iter().map(|n| n.id.as_str())
    }

    /// The assignments of `node_id` and their digest, built once per index (which nodes are
    /// up does not change them: the nodes learn that by gossip).
    pub fn assignments_memo(
        &self,
        node_id: &str,
        data_path_port: u16,
    ) -> std::sync::Arc<(Assignments, u64)> {
        if let Ok(memo) = self.memo.lock() {
            if let Some(a) = memo.get(node_id) {
                return a.clone();
            }
        }
        let a = self.assignments(node_id, data_path_port);
        let digest = a.digest();
        let a = std::sync::Arc::new((a, digest));
        if let Ok(mut memo) = self.memo.lock() {
            memo.insert(node_id.to_string(), a.clone());
        }
        a
    }

    /// The assignments of node `node_id`.
    pub fn assignments(&self, node_id: &str, data_path_port: u16) -> Assignments {
        let mut out = Assignments {
            node_id: node_id.to_string(),
            data_path_port,
            nodes: self.swarm.clone(),
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
        out.services = self.services_on(&wanted);
        out
    }

    /// The services on the networks `wanted` (with a VIP there, or attached to it). Their
    /// backends are left to the node: its own tasks as it runs them, the others' by gossip.
    fn services_on(&self, wanted: &BTreeSet<&str>) -> Vec<AssignedService> {
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
            // A service without a VIP there (dnsrr) is known as soon as one of its tasks is
            // placed: its names answer once gossip brings the task, not once the managers hear
            // it runs.
            for net in &s.networks {
                if wanted.contains(net.as_str()) {
                    nets.entry((s.id.as_str(), net.as_str()))
                        .or_insert_with(|| network_of(s, net));
                }
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
    Index::new(nodes, services.to_vec(), networks.to_vec(), tasks.to_vec())
        .assignments(node_id, data_path_port)
}
