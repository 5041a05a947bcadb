//! Services and tasks as the store will keep them, and the leader's orchestration of one service:
//! which tasks it should have (the [`scheduler`](super::scheduler)), and each new task's address
//! and MAC on each of its networks and each network's VIP (the [`ipam`](super::allocator::ipam)).
//! Pure: the caller passes the store's objects and writes what comes back through Raft.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::allocator::ipam::{AddressSpace, IpamError};
use super::network::NetworkRecord;
use super::scheduler::{self, Constraint, ConstraintError, LiveTask, Load, Mode, NodeInfo};
use crate::api::service::{ServiceMode, ServiceSpec};

/// A task's desired or observed state, with swarmkit's names and order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    New,
    Pending,
    Assigned,
    Accepted,
    Preparing,
    Ready,
    Starting,
    Running,
    Complete,
    Shutdown,
    Failed,
    Rejected,
    Orphaned,
}

impl TaskState {
    /// Past running: the task holds no address any more.
    pub fn is_terminal(self) -> bool {
        self > TaskState::Running
    }
}

/// A task's address on one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskAddress {
    pub network_id: String,
    /// Address and the network's prefix (`10.0.1.3/24`).
    pub addr: Ipv4Net,
}

impl TaskAddress {
    /// Docker's MAC for a task address: 02:42 then the four bytes of the IPv4 address.
    pub fn mac(&self) -> [u8; 6] {
        let o = self.addr.addr().octets();
        [0x02, 0x42, o[0], o[1], o[2], o[3]]
    }
}

/// One task, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub id: String,
    pub service_id: String,
    /// Replica slot (1..N), 0 in global mode.
    pub slot: u64,
    pub node_id: String,
    pub desired: TaskState,
    pub state: TaskState,
    #[serde(default)]
    pub message: String,
    pub addresses: Vec<TaskAddress>,
}

/// One service, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub id: String,
    pub spec: ServiceSpec,
    /// The network IDs of its spec, resolved at create or update.
    pub networks: Vec<String>,
    /// Its VIP on each network (vip mode).
    #[serde(default)]
    pub vips: Vec<TaskAddress>,
}

/// Why a service cannot be orchestrated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrchestrateError {
    #[error(transparent)]
    Constraint(#[from] ConstraintError),
    #[error("network {0} not found")]
    NoNetwork(String),
    #[error("network {network}: {err}")]
    Address { network: String, err: IpamError },
}

/// What the leader writes for one service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub create: Vec<TaskRecord>,
    /// Task IDs whose desired state becomes shutdown.
    pub stop: Vec<String>,
    /// Replicas that found no node ("no suitable node").
    pub unplaced: u64,
}

/// Addresses in use on each network: gateways, VIPs and the addresses of tasks that are not
/// terminal. Built once per pass and updated as addresses are handed out.
#[derive(Debug, Clone, Default)]
pub struct Addresses {
    used: HashMap<String, BTreeSet<Ipv4Addr>>,
    last: HashMap<String, Ipv4Addr>,
}

impl Addresses {
    pub fn new<'a>(
        networks: &[NetworkRecord],
        services: impl IntoIterator<Item = &'a ServiceRecord>,
        tasks: impl IntoIterator<Item = &'a TaskRecord>,
    ) -> Self {
        let mut a = Addresses::default();
        for n in networks {
            a.used.entry(n.id.clone()).or_default().insert(n.gateway);
        }
        for s in services {
            for v in &s.vips {
                a.take(v);
            }
        }
        for t in tasks.into_iter().filter(|t| !t.state.is_terminal()) {
            for addr in &t.addresses {
                a.take(addr);
            }
        }
        a
    }

    fn take(&mut self, addr: &TaskAddress) {
        self.used
            .entry(addr.network_id.clone())
            .or_default()
            .insert(addr.addr.addr());
    }

    /// The next free address on `net`.
    pub fn allocate(&mut self, net: &NetworkRecord) -> Result<TaskAddress, OrchestrateError> {
        let space = AddressSpace {
            subnet: net.subnet,
            range: net.ip_range,
            gateway: net.gateway,
        };
        let used = self.used.entry(net.id.clone()).or_default();
        let ip = space
            .allocate(used, self.last.get(&net.id).copied())
            .map_err(|err| OrchestrateError::Address {
                network: net.name.clone(),
                err,
            })?;
        used.insert(ip);
        self.last.insert(net.id.clone(), ip);
        Ok(TaskAddress {
            network_id: net.id.clone(),
            addr: Ipv4Net::new(ip, net.subnet.prefix_len()).expect("the subnet's prefix"),
        })
    }
}

/// The scheduler's view of a service's spec.
pub fn scheduler_view(service: &ServiceRecord) -> Result<scheduler::ServiceInfo, OrchestrateError> {
    let constraints = service
        .spec
        .task_template
        .placement
        .constraints
        .iter()
        .map(|c| Constraint::parse(c))
        .collect::<Result<_, _>>()?;
    Ok(scheduler::ServiceInfo {
        id: service.id.clone(),
        mode: match service.spec.mode {
            ServiceMode::Replicated { replicas } => Mode::Replicated(replicas),
            ServiceMode::Global {} => Mode::Global,
        },
        constraints,
    })
}

/// Decides one service's task changes. `tasks` are the service's tasks; `new_id` names new
/// tasks (the caller's ID source, so this stays deterministic under test). On an error nothing
/// is to be written, and `load` and `addresses` may hold part of the failed plan: build them
/// again before the next service.
pub fn orchestrate(
    service: &ServiceRecord,
    networks: &[NetworkRecord],
    nodes: &[NodeInfo],
    tasks: &[TaskRecord],
    load: &mut Load,
    addresses: &mut Addresses,
    mut new_id: impl FnMut() -> String,
) -> Result<Changes, OrchestrateError> {
    let by_id: BTreeMap<&str, &NetworkRecord> =
        networks.iter().map(|n| (n.id.as_str(), n)).collect();
    let nets: Vec<&NetworkRecord> = service
        .networks
        .iter()
        .map(|id| {
            by_id
                .get(id.as_str())
                .copied()
                .ok_or_else(|| OrchestrateError::NoNetwork(id.clone()))
        })
        .collect::<Result<_, _>>()?;
    let live: Vec<LiveTask> = tasks
        .iter()
        .filter(|t| t.desired <= TaskState::Running && !t.state.is_terminal())
        .map(|t| LiveTask {
            id: t.id.clone(),
            slot: t.slot,
            node_id: t.node_id.clone(),
        })
        .collect();
    let plan = scheduler::plan(&scheduler_view(service)?, nodes, &live, load);
    let mut out = Changes {
        stop: plan.stop,
        unplaced: plan.unplaced,
        ..Changes::default()
    };
    for new in plan.create {
        let addresses = nets
            .iter()
            .map(|n| addresses.allocate(n))
            .collect::<Result<_, _>>()?;
        out.create.push(TaskRecord {
            id: new_id(),
            service_id: service.id.clone(),
            slot: new.slot,
            node_id: new.node_id,
            desired: TaskState::Running,
            state: TaskState::Assigned,
            message: "scheduler assigned task to node".into(),
            addresses,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::service::{NetworkAttachmentConfig, TaskSpec};
    use crate::control::scheduler::Availability;

    fn net(id: &str, subnet: &str) -> NetworkRecord {
        let mut n = NetworkRecord::default_gwbridge(id.into(), "t".into());
        n.name = format!("net-{id}");
        n.subnet = subnet.parse().unwrap();
        n.gateway = Ipv4Addr::from(u32::from(n.subnet.network()) + 1);
        n
    }

    fn node(id: &str) -> NodeInfo {
        NodeInfo {
            id: id.into(),
            hostname: id.into(),
            role: "worker".into(),
            labels: BTreeMap::new(),
            availability: Availability::Active,
            ready: true,
        }
    }

    fn service(replicas: u64, networks: &[&str]) -> ServiceRecord {
        ServiceRecord {
            id: "svc".into(),
            spec: ServiceSpec {
                name: "my-web".into(),
                mode: ServiceMode::Replicated { replicas },
                task_template: TaskSpec {
                    networks: networks
                        .iter()
                        .map(|n| NetworkAttachmentConfig {
                            target: n.to_string(),
                            aliases: vec![],
                        })
                        .collect(),
                    ..Default::default()
                },
                ..Default::default()
            },
            networks: networks.iter().map(|n| n.to_string()).collect(),
            vips: vec![],
        }
    }

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("task{n}")
        }
    }

    #[test]
    fn three_replicas_get_a_node_an_address_and_dockers_mac_each() {
        let nets = [net("n1", "10.0.1.0/24")];
        let nodes = [node("a"), node("b"), node("c")];
        let s = service(3, &["n1"]);
        let mut addrs = Addresses::new(&nets, [&s], []);
        let ch = orchestrate(
            &s,
            &nets,
            &nodes,
            &[],
            &mut Load::default(),
            &mut addrs,
            ids(),
        )
        .unwrap();
        let got: Vec<(String, String)> = ch
            .create
            .iter()
            .map(|t| (t.node_id.clone(), t.addresses[0].addr.to_string()))
            .collect();
        assert_eq!(
            got,
            [
                ("a".into(), "10.0.1.2/24".into()),
                ("b".into(), "10.0.1.3/24".into()),
                ("c".into(), "10.0.1.4/24".into())
            ]
        );
        assert_eq!(ch.create[0].addresses[0].mac(), [2, 0x42, 10, 0, 1, 2]);
        assert!(ch.create.iter().all(|t| t.state == TaskState::Assigned));
    }

    #[test]
    fn a_task_on_a_lost_node_is_replaced_while_the_old_one_still_holds_its_address() {
        let nets = [net("n1", "10.0.1.0/24")];
        let s = service(2, &["n1"]);
        let mut tasks = vec![];
        let mut addrs = Addresses::new(&nets, [&s], []);
        let nodes = [node("a"), node("b")];
        let first = orchestrate(
            &s,
            &nets,
            &nodes,
            &[],
            &mut Load::default(),
            &mut addrs,
            ids(),
        )
        .unwrap();
        tasks.extend(first.create);
        // b goes down: its task stops, a new one lands on a with a fresh address.
        let nodes = [
            node("a"),
            NodeInfo {
                ready: false,
                ..node("b")
            },
        ];
        let mut addrs = Addresses::new(&nets, [&s], &tasks);
        let mut next = ids();
        let ch = orchestrate(
            &s,
            &nets,
            &nodes,
            &tasks,
            &mut Load::default(),
            &mut addrs,
            move || format!("re-{}", next()),
        )
        .unwrap();
        assert_eq!(ch.stop, ["task2"]);
        assert_eq!(ch.create.len(), 1);
        assert_eq!(ch.create[0].node_id, "a");
        assert_eq!(ch.create[0].slot, 2);
        assert_eq!(ch.create[0].addresses[0].addr.to_string(), "10.0.1.4/24");
    }

    #[test]
    fn stopped_and_failed_tasks_free_their_slot() {
        let nets = [net("n1", "10.0.1.0/24")];
        let s = service(1, &["n1"]);
        let failed = TaskRecord {
            id: "old".into(),
            service_id: "svc".into(),
            slot: 1,
            node_id: "a".into(),
            desired: TaskState::Running,
            state: TaskState::Failed,
            message: String::new(),
            addresses: vec![],
        };
        let mut addrs = Addresses::new(&nets, [&s], [&failed]);
        let ch = orchestrate(
            &s,
            &nets,
            &[node("a")],
            std::slice::from_ref(&failed),
            &mut Load::default(),
            &mut addrs,
            ids(),
        )
        .unwrap();
        assert!(ch.stop.is_empty());
        assert_eq!(ch.create.len(), 1);
    }

    #[test]
    fn every_network_gives_an_address_and_a_full_one_says_so() {
        let nets = [net("n1", "10.0.1.0/24"), net("n2", "10.0.2.0/30")];
        let s = service(2, &["n1", "n2"]);
        let mut addrs = Addresses::new(&nets, [&s], []);
        let e = orchestrate(
            &s,
            &nets,
            &[node("a"), node("b")],
            &[],
            &mut Load::default(),
            &mut addrs,
            ids(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "network net-n2: no free address left in 10.0.2.0/30"
        );
        let s = service(1, &["n1", "n2"]);
        let mut addrs = Addresses::new(&nets, [&s], []);
        let ch = orchestrate(
            &s,
            &nets,
            &[node("a")],
            &[],
            &mut Load::default(),
            &mut addrs,
            ids(),
        )
        .unwrap();
        let got: Vec<String> = ch.create[0]
            .addresses
            .iter()
            .map(|a| a.addr.to_string())
            .collect();
        assert_eq!(got, ["10.0.1.2/24", "10.0.2.2/30"]);
        let missing = service(1, &["gone"]);
        assert_eq!(
            orchestrate(
                &missing,
                &nets,
                &[node("a")],
                &[],
                &mut Load::default(),
                &mut addrs,
                ids()
            )
            .unwrap_err(),
            OrchestrateError::NoNetwork("gone".into())
        );
    }
}
