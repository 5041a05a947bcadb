//! The leader's orchestration pass: every service's tasks brought in line with its spec and the
//! nodes (the scheduler and the allocator in [`crate::control::service::orchestrate`]), tasks
//! of an older template replaced, ended tasks restarted after their service's restart delay
//! (swarmkit's restart supervisor: a new task in the same slot, never the same task again),
//! task history bounded, and the tasks of removed services forgotten once they have stopped.
//! Runs after every service change and once per heartbeat period.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::Manager;
use crate::api::service::{RestartPolicy, ServiceMode};
use crate::api::{ApiError, Availability, NodeState, Role};
use crate::control::raft::Command;
use crate::control::scheduler::{self, LiveTask, Load, NodeInfo};
use crate::control::service::{orchestrate, Addresses, ServiceRecord, TaskRecord, TaskState};
use crate::control::token::new_id;

/// Swarmkit's default restart delay.
pub const DEFAULT_RESTART_DELAY: Duration = Duration::from_secs(5);
/// Tasks kept per slot (the live one and its history), Docker's `--task-history-limit` default.
pub const TASK_HISTORY: usize = 5;

/// What one pass writes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PassChanges {
    pub put: Vec<TaskRecord>,
    pub stop: Vec<String>,
    pub remove: Vec<String>,
    /// Load-balancer endpoints given or taken back: (network, node, address).
    pub lb: Vec<(String, String, Option<std::net::Ipv4Addr>)>,
    /// Services that could not be orchestrated, with why.
    pub errors: Vec<(String, String)>,
}

fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// Whether an ended task still holds its slot at `now`: its restart policy does not restart it
/// (yet).
fn holds_slot(task: &TaskRecord, policy: Option<&RestartPolicy>, now: OffsetDateTime) -> bool {
    let condition = policy.map_or("any", |p| p.condition.as_str());
    let restart = match condition {
        "none" => false,
        "on-failure" => task.state != TaskState::Complete,
        _ => true,
    };
    if !restart {
        return true;
    }
    let delay = policy
        .map(|p| Duration::from_nanos(p.delay))
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_RESTART_DELAY);
    match parse_time(&task.state_at) {
        Some(ended) => now < ended + delay,
        None => false,
    }
}

/// Why a replica found no node, in Docker's words.
fn no_suitable_node(nodes: &[NodeInfo]) -> String {
    let open = nodes
        .iter()
        .filter(|n| n.ready && n.availability == scheduler::Availability::Active)
        .count();
    let closed = nodes.len() - open;
    let s = |n: usize| if n == 1 { "" } else { "s" };
    if open == 0 {
        format!(
            "no suitable node ({closed} node{} not available for new tasks)",
            s(closed)
        )
    } else {
        format!(
            "no suitable node (scheduling constraints not satisfied on {open} node{})",
            s(open)
        )
    }
}

/// The scheduler's view of the nodes.
pub fn node_infos(nodes: &[crate::api::Node]) -> Vec<NodeInfo> {
    nodes
        .iter()
        .map(|n| NodeInfo {
            id: n.id.clone(),
            hostname: n.hostname.clone(),
            role: match n.role {
                Role::Manager => "manager".into(),
                Role::Worker => "worker".into(),
            },
            labels: BTreeMap::new(),
            availability: match n.availability {
                Availability::Active => scheduler::Availability::Active,
                Availability::Pause => scheduler::Availability::Pause,
                Availability::Drain => scheduler::Availability::Drain,
            },
            ready: n.status.state == NodeState::Ready,
        })
        .collect()
}

/// One orchestration pass over the store's objects (pure; `new_id` names new tasks).
pub fn pass(
    services: &[ServiceRecord],
    networks: &[crate::control::network::NetworkRecord],
    nodes: &[NodeInfo],
    tasks: &[TaskRecord],
    now: OffsetDateTime,
    mut new_id: impl FnMut() -> String,
) -> PassChanges {
    let stamp = now.format(&Rfc3339).unwrap_or_default();
    let mut out = PassChanges::default();
    let mut by_service: HashMap<&str, Vec<&TaskRecord>> = HashMap::new();
    for t in tasks {
        by_service.entry(t.service_id.as_str()).or_default().push(t);
    }
    let live: Vec<LiveTask> = tasks
        .iter()
        .filter(|t| t.desired <= TaskState::Running && !t.state.is_terminal())
        .map(|t| LiveTask {
            id: t.id.clone(),
            slot: t.slot,
            node_id: t.node_id.clone(),
        })
        .collect();
    let mut load = Load::new(&live);
    let mut addresses = Addresses::new(networks, services, tasks);
    for service in services {
        let mine = by_service.remove(service.id.as_str()).unwrap_or_default();
        let policy = service.spec.task_template.restart_policy.as_ref();
        // What the plan sees: tasks that run (or are to) from the current template, and ended
        // ones that still hold their slot (shown to it as running).
        let mut planned: Vec<TaskRecord> = Vec::new();
        let mut retire: Vec<String> = Vec::new();
        // Replicas no node could take wait as pending tasks without a node (as Docker shows
        // them), one per slot; the plan does not see them, and a slot placed later reuses its
        // pending task.
        let mut pending: BTreeMap<u64, &TaskRecord> = BTreeMap::new();
        for t in mine.iter().filter(|t| t.desired <= TaskState::Running) {
            if t.node_id.is_empty() {
                if !t.state.is_terminal() && !pending.contains_key(&t.slot) {
                    pending.insert(t.slot, t);
                } else {
                    retire.push(t.id.clone());
                }
                continue;
            }
            if t.state.is_terminal() {
                if holds_slot(t, policy, now) {
                    let mut held = (*t).clone();
                    held.state = TaskState::Running;
                    planned.push(held);
                } else {
                    retire.push(t.id.clone());
                }
            } else if t.template_version < service.template_version {
                out.stop.push(t.id.clone());
            } else {
                planned.push((*t).clone());
            }
        }
        match orchestrate(
            service,
            networks,
            nodes,
            &planned,
            &mut load,
            &mut addresses,
            &mut new_id,
        ) {
            Ok(changes) => {
                let mut taken: std::collections::BTreeSet<u64> = planned
                    .iter()
                    .filter(|t| !changes.stop.contains(&t.id))
                    .map(|t| t.slot)
                    .collect();
                for mut t in changes.create {
                    taken.insert(t.slot);
                    match pending.remove(&t.slot).filter(|_| t.slot != 0) {
                        Some(p) => {
                            t.id = p.id.clone();
                            t.created_at = p.created_at.clone();
                        }
                        None => t.created_at = stamp.clone(),
                    }
                    t.state_at = stamp.clone();
                    out.put.push(t);
                }
                if let ServiceMode::Replicated { replicas } = service.spec.mode {
                    let why = no_suitable_node(nodes);
                    for slot in (1..=replicas).filter(|s| !taken.contains(s)) {
                        if pending.remove(&slot).is_some() {
                            continue;
                        }
                        out.put.push(TaskRecord {
                            id: new_id(),
                            service_id: service.id.clone(),
                            slot,
                            node_id: String::new(),
                            desired: TaskState::Running,
                            state: TaskState::Pending,
                            message: "pending task scheduling".into(),
                            error: why.clone(),
                            addresses: Vec::new(),
                            template_version: service.template_version,
                            created_at: stamp.clone(),
                            state_at: stamp.clone(),
                            exit_code: None,
                        });
                    }
                }
                // Pending tasks of slots that went away (scaled down).
                out.stop.extend(pending.values().map(|t| t.id.clone()));
                out.stop.extend(changes.stop);
                out.stop.extend(retire);
            }
            Err(e) => {
                // Addresses and load may hold part of the failed plan: rebuild them.
                addresses = Addresses::new(networks, services, tasks);
                load = Load::new(&live);
                out.errors.push((service.spec.name.clone(), e.to_string()));
            }
        }
        // History: per slot (per node in global mode) the newest TASK_HISTORY tasks stay.
        let mut slots: BTreeMap<(u64, &str), Vec<&TaskRecord>> = BTreeMap::new();
        for t in &mine {
            let key = if t.slot == 0 {
                (0, t.node_id.as_str())
            } else {
                (t.slot, "")
            };
            slots.entry(key).or_default().push(t);
        }
        for (_, mut history) in slots {
            history.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
            for t in history.into_iter().skip(TASK_HISTORY) {
                if t.state.is_terminal() && t.desired > TaskState::Running {
                    out.remove.push(t.id.clone());
                }
            }
        }
    }
    // Each node with a task on an overlay network gets a load-balancer endpoint there; a node
    // without one gives it back. On the ingress network every node of the swarm has one (its
    // ingress sandbox) while a service publishes a port in ingress mode: the routing mesh.
    let stopping: std::collections::HashSet<&str> = out.stop.iter().map(String::as_str).collect();
    let mut present: std::collections::BTreeSet<(&str, &str)> = Default::default();
    for t in tasks.iter().chain(&out.put) {
        if t.state.is_terminal()
            || t.desired > TaskState::Running
            || stopping.contains(t.id.as_str())
        {
            continue;
        }
        for a in &t.addresses {
            present.insert((a.network_id.as_str(), t.node_id.as_str()));
        }
    }
    let meshed = services
        .iter()
        .any(|s| s.ports.iter().any(|p| p.publish_mode == "ingress"));
    for net in networks.iter().filter(|n| n.ingress && n.vni.is_some()) {
        for n in nodes.iter().filter(|_| meshed) {
            present.insert((net.id.as_str(), n.id.as_str()));
        }
    }
    let mut lb = Vec::new();
    for net in networks.iter().filter(|n| n.vni.is_some()) {
        for node in net.lb.keys() {
            if !present.contains(&(net.id.as_str(), node.as_str())) {
                lb.push((net.id.clone(), node.clone(), None));
            }
        }
        for (_, node) in present.iter().filter(|(n, _)| *n == net.id) {
            if !net.lb.contains_key(*node) {
                if let Ok(a) = addresses.allocate(net) {
                    lb.push((net.id.clone(), node.to_string(), Some(a.addr.addr())));
                }
            }
        }
    }
    out.lb = lb;
    // Tasks of removed services: forgotten once they have stopped (or their node is gone).
    let ready: HashMap<&str, bool> = nodes.iter().map(|n| (n.id.as_str(), n.ready)).collect();
    for tasks in by_service.values() {
        for t in tasks {
            if t.state.is_terminal() || !ready.get(t.node_id.as_str()).copied().unwrap_or(false) {
                out.remove.push(t.id.clone());
            } else if t.desired != TaskState::Shutdown {
                out.stop.push(t.id.clone());
            }
        }
    }
    out.stop.sort();
    out.stop.dedup();
    out
}

impl Manager {
    /// One orchestration pass on the leader, written through Raft. Skipped while the leader
    /// does not yet know which nodes are up (just elected), so a change of leader moves no
    /// task.
    pub async fn orchestrate(&self) -> Result<(), ApiError> {
        if !self.is_leader() {
            return Ok(());
        }
        let _serial = self.serial.lock().await;
        let nodes = self.nodes()?;
        if nodes.iter().any(|n| n.status.state == NodeState::Unknown) {
            return Ok(());
        }
        let services = self.store.services()?;
        let tasks = self.store.tasks()?;
        let networks = self.store.networks()?;
        if services.is_empty() && tasks.is_empty() && networks.iter().all(|n| n.lb.is_empty()) {
            return Ok(());
        }
        let changes = pass(
            &services,
            &networks,
            &node_infos(&nodes),
            &tasks,
            OffsetDateTime::now_utc(),
            new_id,
        );
        for (service, err) in &changes.errors {
            tracing::warn!("service {service}: {err}");
        }
        if !changes.put.is_empty() {
            self.write(Command::PutTasks(changes.put)).await?;
        }
        if !changes.stop.is_empty() {
            self.write(Command::SetTaskDesired {
                ids: changes.stop,
                desired: TaskState::Shutdown,
            })
            .await?;
        }
        if !changes.lb.is_empty() {
            self.write(Command::SetLbAddresses(changes.lb)).await?;
        }
        if !changes.remove.is_empty() {
            if let Ok(mut logs) = self.logs.lock() {
                for id in &changes.remove {
                    logs.forget(id);
                }
            }
            self.write(Command::RemoveTasks(changes.remove)).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::service::{NetworkAttachmentConfig, ServiceMode, ServiceSpec, TaskSpec};
    use crate::control::network::NetworkRecord;

    fn net() -> NetworkRecord {
        let mut n = NetworkRecord::default_gwbridge("n1".into(), "t".into());
        n.subnet = "10.0.1.0/24".parse().unwrap();
        n.gateway = "10.0.1.1".parse().unwrap();
        n.vni = Some(4097);
        n
    }

    fn node(id: &str, ready: bool) -> NodeInfo {
        NodeInfo {
            id: id.into(),
            hostname: id.into(),
            role: "worker".into(),
            labels: BTreeMap::new(),
            availability: scheduler::Availability::Active,
            ready,
        }
    }

    fn service(replicas: u64, policy: Option<RestartPolicy>) -> ServiceRecord {
        ServiceRecord {
            id: "svc".into(),
            spec: ServiceSpec {
                name: "web".into(),
                mode: ServiceMode::Replicated { replicas },
                task_template: TaskSpec {
                    networks: vec![NetworkAttachmentConfig {
                        target: "n1".into(),
                        aliases: vec![],
                    }],
                    restart_policy: policy,
                    ..Default::default()
                },
                ..Default::default()
            },
            networks: vec!["n1".into()],
            vips: vec![],
            ports: vec![],
            version: 1,
            template_version: 1,
            previous_spec: None,
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    fn at(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &Rfc3339).unwrap()
    }

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("t{n}")
        }
    }

    fn run(s: &ServiceRecord, nodes: &[NodeInfo], tasks: &[TaskRecord], now: &str) -> PassChanges {
        pass(
            std::slice::from_ref(s),
            &[net()],
            nodes,
            tasks,
            at(now),
            ids(),
        )
    }

    #[test]
    fn a_failed_task_is_replaced_in_its_slot_after_the_restart_delay() {
        let s = service(1, None);
        let nodes = [node("a", true)];
        let first = run(&s, &nodes, &[], "2026-01-01T00:00:00Z");
        assert_eq!(first.put.len(), 1);
        let mut t = first.put[0].clone();
        t.id = "first".into();
        t.state = TaskState::Failed;
        t.state_at = "2026-01-01T00:00:10Z".into();
        // Within the 5 s delay: nothing.
        let soon = run(&s, &nodes, std::slice::from_ref(&t), "2026-01-01T00:00:14Z");
        assert!(soon.put.is_empty() && soon.stop.is_empty(), "{soon:?}");
        // After it: a new task in slot 1, the failed one retired (kept as history).
        let later = run(&s, &nodes, std::slice::from_ref(&t), "2026-01-01T00:00:15Z");
        assert_eq!(later.put.len(), 1);
        assert_eq!(later.put[0].slot, 1);
        assert_ne!(later.put[0].id, t.id);
        assert_eq!(later.stop, [t.id.clone()]);
        assert!(later.remove.is_empty());
    }

    #[test]
    fn restart_conditions_none_and_on_failure_keep_the_slot() {
        let nodes = [node("a", true)];
        let policy = |c: &str| {
            Some(RestartPolicy {
                condition: c.into(),
                delay: 0,
                max_attempts: 0,
            })
        };
        let s = service(1, policy("none"));
        let mut t = run(&s, &nodes, &[], "2026-01-01T00:00:00Z").put[0].clone();
        t.state = TaskState::Failed;
        t.state_at = "2026-01-01T00:00:00Z".into();
        assert!(
            run(&s, &nodes, std::slice::from_ref(&t), "2026-01-02T00:00:00Z")
                .put
                .is_empty()
        );
        let s = service(1, policy("on-failure"));
        t.state = TaskState::Complete;
        assert!(
            run(&s, &nodes, std::slice::from_ref(&t), "2026-01-02T00:00:00Z")
                .put
                .is_empty()
        );
        t.state = TaskState::Failed;
        assert_eq!(
            run(&s, &nodes, std::slice::from_ref(&t), "2026-01-02T00:00:00Z")
                .put
                .len(),
            1
        );
    }

    #[test]
    fn a_new_template_replaces_running_tasks_and_a_down_node_loses_its_tasks() {
        let mut s = service(2, None);
        let nodes = [node("a", true), node("b", true)];
        let mut tasks = run(&s, &nodes, &[], "2026-01-01T00:00:00Z").put;
        for t in &mut tasks {
            t.state = TaskState::Running;
        }
        s.template_version = 2;
        let ch = run(&s, &nodes, &tasks, "2026-01-01T00:01:00Z");
        assert_eq!(ch.stop.len(), 2);
        assert_eq!(ch.put.len(), 2);
        assert!(ch.put.iter().all(|t| t.template_version == 2));
        s.template_version = 1;
        let ch = run(
            &s,
            &[node("a", true), node("b", false)],
            &tasks,
            "2026-01-01T00:01:00Z",
        );
        let on_b: Vec<&str> = tasks
            .iter()
            .filter(|t| t.node_id == "b")
            .map(|t| t.id.as_str())
            .collect();
        assert_eq!(ch.stop, on_b);
        assert_eq!(ch.put.len(), 1);
        assert_eq!(ch.put[0].node_id, "a");
    }

    #[test]
    fn every_node_gets_an_ingress_sandbox_address_while_a_service_publishes_in_ingress_mode() {
        let mut ingress = net();
        ingress.id = "ing".into();
        ingress.ingress = true;
        ingress.subnet = "10.0.0.0/24".parse().unwrap();
        ingress.gateway = "10.0.0.1".parse().unwrap();
        ingress.vni = Some(4096);
        let nodes = [node("a", true), node("b", true), node("c", false)];
        // One replica: only node a has a task, yet every node gets a sandbox on ingress.
        let mut s = service(1, None);
        s.ports = vec![crate::api::service::PortConfig {
            protocol: "tcp".into(),
            target_port: 80,
            published_port: 8080,
            publish_mode: "ingress".into(),
            ..Default::default()
        }];
        let networks = [net(), ingress.clone()];
        let ch = pass(
            std::slice::from_ref(&s),
            &networks,
            &nodes,
            &[],
            at("2026-01-01T00:00:00Z"),
            ids(),
        );
        let on_ingress: Vec<&str> = ch
            .lb
            .iter()
            .filter(|(n, _, a)| n == "ing" && a.is_some())
            .map(|(_, node, _)| node.as_str())
            .collect();
        assert_eq!(on_ingress.len(), 3, "{:?}", ch.lb);
        // Without a published port they are given back.
        for n in ["a", "b", "c"] {
            ingress.lb.insert(n.into(), "10.0.0.9".parse().unwrap());
        }
        s.ports.clear();
        let ch = pass(
            &[s],
            &[net(), ingress],
            &nodes,
            &[],
            at("2026-01-01T00:00:00Z"),
            ids(),
        );
        let back = ch
            .lb
            .iter()
            .filter(|(n, _, a)| n == "ing" && a.is_none())
            .count();
        assert_eq!(back, 3, "{:?}", ch.lb);
    }

    #[test]
    fn each_node_with_tasks_on_a_network_gets_a_load_balancer_address_and_gives_it_back() {
        let s = service(2, None);
        let nodes = [node("a", true), node("b", true)];
        let ch = run(&s, &nodes, &[], "2026-01-01T00:00:00Z");
        let mut lb = ch.lb.clone();
        lb.sort();
        let got: Vec<(String, String)> = lb
            .iter()
            .map(|(n, node, a)| (format!("{n}/{node}"), a.unwrap().to_string()))
            .collect();
        // Tasks take .2 and .3; the endpoints come after them.
        assert_eq!(
            got,
            [
                ("n1/a".to_string(), "10.0.1.4".to_string()),
                ("n1/b".to_string(), "10.0.1.5".to_string())
            ]
        );
        // With them recorded, tasks and endpoints do not share addresses; without tasks on
        // b, b's goes back.
        let mut n = net();
        n.lb.insert("a".into(), "10.0.1.4".parse().unwrap());
        n.lb.insert("b".into(), "10.0.1.5".parse().unwrap());
        let mut tasks = ch.put.clone();
        tasks.retain(|t| t.node_id == "a");
        for t in &mut tasks {
            t.state = TaskState::Running;
        }
        let one = service(1, None);
        let ch = pass(
            std::slice::from_ref(&one),
            &[n],
            &nodes,
            &tasks,
            at("2026-01-01T00:00:01Z"),
            ids(),
        );
        assert!(ch.put.is_empty());
        assert_eq!(ch.lb, [("n1".to_string(), "b".to_string(), None)]);
    }

    #[test]
    fn a_replica_no_node_takes_waits_as_a_pending_task_and_keeps_its_id_when_placed() {
        let mut s = service(2, None);
        s.spec.task_template.placement.constraints = vec!["node.hostname==c".into()];
        let nodes = [node("a", true), node("b", true)];
        let ch = run(&s, &nodes, &[], "2026-01-01T00:00:00Z");
        assert_eq!(ch.put.len(), 2);
        for t in &ch.put {
            assert_eq!((t.node_id.as_str(), t.state), ("", TaskState::Pending));
            assert_eq!(
                t.error,
                "no suitable node (scheduling constraints not satisfied on 2 nodes)"
            );
            assert!(t.addresses.is_empty());
        }
        // Nothing changes while no node fits: no new task every pass.
        let again = pass(
            std::slice::from_ref(&s),
            &[net()],
            &nodes,
            &ch.put,
            at("2026-01-01T00:00:01Z"),
            || "fresh".to_string(),
        );
        assert!(again.put.is_empty() && again.stop.is_empty(), "{again:?}");
        // Node c comes: the pending tasks get it, under their own IDs, with addresses.
        let nodes = [node("a", true), node("b", true), node("c", true)];
        let placed = pass(
            std::slice::from_ref(&s),
            &[net()],
            &nodes,
            &ch.put,
            at("2026-01-01T00:00:02Z"),
            || "fresh".to_string(),
        );
        let mut ids: Vec<&str> = placed.put.iter().map(|t| t.id.as_str()).collect();
        ids.sort();
        let mut before: Vec<&str> = ch.put.iter().map(|t| t.id.as_str()).collect();
        before.sort();
        assert_eq!(ids, before);
        assert!(placed
            .put
            .iter()
            .all(|t| t.node_id == "c" && t.state == TaskState::Assigned && t.addresses.len() == 1));
        // Scaled down while pending: the extra pending task stops.
        let one = service(1, None);
        let mut one = one;
        one.spec.task_template.placement.constraints = vec!["node.hostname==c".into()];
        let down = pass(
            std::slice::from_ref(&one),
            &[net()],
            &[node("a", true)],
            &ch.put,
            at("2026-01-01T00:00:03Z"),
            || "fresh".to_string(),
        );
        assert!(down.put.is_empty());
        assert_eq!(down.stop.len(), 1);
        // No node at all: Docker's other words.
        let none = run(
            &service(1, None),
            &[node("a", false)],
            &[],
            "2026-01-01T00:00:00Z",
        );
        assert_eq!(
            none.put[0].error,
            "no suitable node (1 node not available for new tasks)"
        );
    }

    #[test]
    fn history_is_bounded_and_a_removed_services_tasks_go_once_stopped() {
        let s = service(1, None);
        let nodes = [node("a", true)];
        let mut tasks = Vec::new();
        for i in 0..7 {
            let mut t = run(&s, &nodes, &[], "2026-01-01T00:00:00Z").put[0].clone();
            t.id = format!("old{i}");
            t.created_at = format!("2026-01-01T00:00:0{i}Z");
            t.state = TaskState::Failed;
            t.desired = TaskState::Shutdown;
            tasks.push(t);
        }
        let ch = run(&s, &nodes, &tasks, "2026-01-01T01:00:00Z");
        let mut removed = ch.remove.clone();
        removed.sort();
        assert_eq!(removed, ["old0", "old1"]);
        // The service is gone: a running task is stopped, a stopped one forgotten.
        tasks.truncate(2);
        tasks[0].state = TaskState::Running;
        tasks[0].desired = TaskState::Running;
        let ch = pass(
            &[],
            &[net()],
            &nodes,
            &tasks,
            at("2026-01-01T01:00:00Z"),
            ids(),
        );
        assert_eq!(ch.stop, ["old0"]);
        assert_eq!(ch.remove, ["old1"]);
    }
}
