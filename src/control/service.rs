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
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// The state's message, as `service ps` shows it in CURRENT STATE's tooltip (swarmkit's
    /// `Status.Message`, e.g. "started").
    #[serde(default)]
    pub message: String,
    /// Why the task failed or was rejected (`service ps`'s ERROR column).
    #[serde(default)]
    pub error: String,
    pub addresses: Vec<TaskAddress>,
    /// The service's template version the task was made from (a newer one replaces it).
    #[serde(default)]
    pub template_version: u64,
    /// RFC 3339.
    #[serde(default)]
    pub created_at: String,
    /// When `state` was last set, RFC 3339.
    #[serde(default)]
    pub state_at: String,
    /// Exit code of a program task that ended.
    #[serde(default)]
    pub exit_code: Option<i32>,
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
    /// Published ports as allocated (a `PublishedPort` of 0 in the spec gets one of
    /// 30000-32767).
    #[serde(default)]
    pub ports: Vec<crate::api::service::PortConfig>,
    /// The object version (`Version.Index`); every update bumps it.
    #[serde(default)]
    pub version: u64,
    /// Bumped when the task template changes (image, args, env, networks, force): tasks made
    /// from an older one are replaced.
    #[serde(default)]
    pub template_version: u64,
    #[serde(default)]
    pub previous_spec: Option<ServiceSpec>,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
}

/// A task's state as its node reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub task_id: String,
    pub state: TaskState,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// RFC 3339, the node's clock.
    pub at: String,
}

/// A failure of the store itself while applying a service or task command (not a refusal).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("service or task table: {0}")]
    Table(#[from] redb::TableError),
    #[error("service or task table: {0}")]
    Storage(#[from] redb::StorageError),
    #[error("service or task record does not decode: {0}")]
    Decode(#[from] serde_json::Error),
}

type Table<'t> = redb::Table<'t, &'static str, &'static [u8]>;

fn rows<T: serde::de::DeserializeOwned>(table: &Table<'_>) -> Result<Vec<T>, ApplyError> {
    use redb::ReadableTable;
    let mut out = Vec::new();
    for item in table.iter()? {
        let (_, v) = item?;
        out.push(serde_json::from_slice(v.value())?);
    }
    Ok(out)
}

fn row<T: serde::de::DeserializeOwned>(
    table: &Table<'_>,
    key: &str,
) -> Result<Option<T>, ApplyError> {
    use redb::ReadableTable;
    match table.get(key)? {
        Some(v) => Ok(Some(serde_json::from_slice(v.value())?)),
        None => Ok(None),
    }
}

fn put<T: Serialize>(table: &mut Table<'_>, key: &str, value: &T) -> Result<(), ApplyError> {
    let bytes = serde_json::to_vec(value)?;
    table.insert(key, bytes.as_slice())?;
    Ok(())
}

/// The Raft state machine's side of the service and task commands: what every manager applies
/// alike. `Ok(Some(why))` is a refusal.
pub(crate) mod apply {
    use super::*;
    use crate::control::store::{SERVICES, TASKS};
    use redb::WriteTransaction;

    /// A new service; refused when its name or ID is taken (two leaders in a row).
    pub fn create_service(
        tx: &WriteTransaction,
        new: &ServiceRecord,
    ) -> Result<Option<String>, ApplyError> {
        let mut table = tx.open_table(SERVICES)?;
        let existing: Vec<ServiceRecord> = rows(&table)?;
        if existing
            .iter()
            .any(|s| s.spec.name == new.spec.name || s.id == new.id)
        {
            return Ok(Some(format!(
                "rpc error: code = AlreadyExists desc = name conflicts with an existing object: service {} already exists",
                new.spec.name
            )));
        }
        put(&mut table, &new.id, new)?;
        Ok(None)
    }

    /// A new version of a service: refused unless it follows the stored version (an update
    /// made from a stale read), or when it takes another service's name.
    pub fn update_service(
        tx: &WriteTransaction,
        new: &ServiceRecord,
    ) -> Result<Option<String>, ApplyError> {
        let mut table = tx.open_table(SERVICES)?;
        let Some(old) = row::<ServiceRecord>(&table, &new.id)? else {
            return Ok(Some(format!("service {} not found", new.id)));
        };
        if new.version != old.version + 1 {
            return Ok(Some(
                "rpc error: code = Unknown desc = update out of sequence".to_string(),
            ));
        }
        let existing: Vec<ServiceRecord> = rows(&table)?;
        if existing
            .iter()
            .any(|s| s.spec.name == new.spec.name && s.id != new.id)
        {
            return Ok(Some(format!(
                "rpc error: code = AlreadyExists desc = name conflicts with an existing object: service {} already exists",
                new.spec.name
            )));
        }
        put(&mut table, &new.id, new)?;
        Ok(None)
    }

    /// Removes a service; its tasks are told to shut down (and removed once they have).
    pub fn remove_service(tx: &WriteTransaction, id: &str) -> Result<Option<String>, ApplyError> {
        if tx.open_table(SERVICES)?.remove(id)?.is_none() {
            return Ok(Some(format!("service {id} not found")));
        }
        let mut tasks = tx.open_table(TASKS)?;
        let all: Vec<TaskRecord> = rows(&tasks)?;
        for mut t in all.into_iter().filter(|t| t.service_id == id) {
            if t.desired != TaskState::Shutdown {
                t.desired = TaskState::Shutdown;
                put(&mut tasks, &t.id.clone(), &t)?;
            }
        }
        Ok(None)
    }

    /// Creates or replaces tasks (the leader's orchestration). A new task of a service that is
    /// gone by now is skipped.
    pub fn put_tasks(
        tx: &WriteTransaction,
        tasks: &[TaskRecord],
    ) -> Result<Option<String>, ApplyError> {
        let services = tx.open_table(SERVICES)?;
        let mut table = tx.open_table(TASKS)?;
        for t in tasks {
            let known = row::<TaskRecord>(&table, &t.id)?.is_some();
            if !known && row::<ServiceRecord>(&services, &t.service_id)?.is_none() {
                continue;
            }
            put(&mut table, &t.id, t)?;
        }
        Ok(None)
    }

    /// Sets the desired state of tasks (shut down by the orchestrator).
    pub fn set_desired(
        tx: &WriteTransaction,
        ids: &[String],
        desired: TaskState,
    ) -> Result<Option<String>, ApplyError> {
        let mut table = tx.open_table(TASKS)?;
        for id in ids {
            if let Some(mut t) = row::<TaskRecord>(&table, id)? {
                t.desired = desired;
                put(&mut table, id, &t)?;
            }
        }
        Ok(None)
    }

    /// States reported by the nodes. A report only moves a task forward (a late report of an
    /// earlier state is ignored), and only its own node's reports count.
    pub fn task_statuses(
        tx: &WriteTransaction,
        node_id: &str,
        statuses: &[TaskStatus],
    ) -> Result<Option<String>, ApplyError> {
        let mut table = tx.open_table(TASKS)?;
        for st in statuses {
            let Some(mut t) = row::<TaskRecord>(&table, &st.task_id)? else {
                continue;
            };
            if t.node_id != node_id || st.state <= t.state {
                continue;
            }
            t.state = st.state;
            t.message = st.message.clone();
            t.error = st.error.clone();
            t.exit_code = st.exit_code;
            t.state_at = st.at.clone();
            put(&mut table, &st.task_id.clone(), &t)?;
        }
        Ok(None)
    }

    /// Forgets tasks (history past its limit, tasks of removed services that have stopped).
    pub fn remove_tasks(
        tx: &WriteTransaction,
        ids: &[String],
    ) -> Result<Option<String>, ApplyError> {
        let mut table = tx.open_table(TASKS)?;
        for id in ids {
            table.remove(id.as_str())?;
        }
        Ok(None)
    }
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
            let used = a.used.entry(n.id.clone()).or_default();
            used.insert(n.gateway);
            used.extend(n.lb.values().copied());
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
            error: String::new(),
            addresses,
            template_version: service.template_version,
            created_at: String::new(),
            state_at: String::new(),
            exit_code: None,
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
            ports: vec![],
            version: 1,
            template_version: 1,
            previous_spec: None,
            created_at: String::new(),
            updated_at: String::new(),
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
            error: String::new(),
            addresses: vec![],
            template_version: 0,
            created_at: String::new(),
            state_at: String::new(),
            exit_code: None,
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
