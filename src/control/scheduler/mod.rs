//! The leader's scheduler: which tasks a service should have and on which nodes, as swarmkit's
//! orchestrators and spread strategy decide it. Pure: it takes the nodes, the service and its
//! tasks and returns a [`Plan`]; the caller writes the plan through Raft.
//!
//! - Replicated: one live task per slot 1..=N. A task on a node that is down, drained, gone or no
//!   longer allowed by the constraints is stopped and its slot filled elsewhere; slots above N
//!   are stopped, highest first.
//! - Global: one live task per eligible node.
//! - Placement: among ready, active nodes that satisfy the constraints, the one with the fewest
//!   tasks of this service, then the fewest tasks in all, then the lowest ID (so every leader
//!   decides alike). `pause` keeps a node's tasks but takes no new ones; `drain` moves them off.

pub mod constraint;

use std::collections::{BTreeMap, HashMap, HashSet};

pub use constraint::{Constraint, ConstraintError, NodeFacts};

/// Whether the scheduler may place tasks on a node (Docker's `--availability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    Active,
    Pause,
    Drain,
}

/// A node as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub id: String,
    pub hostname: String,
    /// `manager` or `worker`.
    pub role: String,
    pub labels: BTreeMap<String, String>,
    pub availability: Availability,
    /// Ready (heartbeating); a node that is down keeps no tasks.
    pub ready: bool,
}

impl NodeInfo {
    fn facts(&self) -> NodeFacts<'_> {
        NodeFacts {
            id: &self.id,
            hostname: &self.hostname,
            role: &self.role,
            labels: &self.labels,
        }
    }

    /// May keep the tasks it has (`pause` included).
    fn can_keep(&self, constraints: &[Constraint]) -> bool {
        self.ready
            && self.availability != Availability::Drain
            && constraints.iter().all(|c| c.matches(&self.facts()))
    }

    /// May take new tasks.
    fn can_take(&self, constraints: &[Constraint]) -> bool {
        self.availability == Availability::Active && self.can_keep(constraints)
    }
}

/// How many tasks a service wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Replicated(u64),
    Global,
}

/// A service as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct ServiceInfo {
    pub id: String,
    pub mode: Mode,
    pub constraints: Vec<Constraint>,
}

/// A task of the service whose desired state is still running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveTask {
    pub id: String,
    /// Replica slot (replicated mode); 0 in global mode.
    pub slot: u64,
    pub node_id: String,
}

/// A task to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    pub slot: u64,
    pub node_id: String,
}

/// What to change for one service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub create: Vec<NewTask>,
    /// Tasks whose desired state becomes shutdown.
    pub stop: Vec<String>,
    /// Slots (or nodes, in global mode none) that found no suitable node.
    pub unplaced: u64,
}

/// Live tasks per node, of every service: kept across the services placed in one pass so they
/// spread over each other. Nodes are numbered once, so placement compares plain counters.
#[derive(Debug, Clone, Default)]
pub struct Load {
    index: HashMap<String, usize>,
    counts: Vec<u64>,
}

impl Load {
    /// Counts every live task of every service.
    pub fn new<'a>(tasks: impl IntoIterator<Item = &'a LiveTask>) -> Self {
        let mut load = Load::default();
        for t in tasks {
            let i = load.slot(&t.node_id);
            load.counts[i] += 1;
        }
        load
    }

    /// The node's number, given on first sight.
    fn slot(&mut self, node: &str) -> usize {
        if let Some(&i) = self.index.get(node) {
            return i;
        }
        let i = self.counts.len();
        self.index.insert(node.to_string(), i);
        self.counts.push(0);
        i
    }

    fn remove(&mut self, node: &str) {
        if let Some(&i) = self.index.get(node) {
            self.counts[i] = self.counts[i].saturating_sub(1);
        }
    }
}

/// Decides the tasks of `service` given every node and the service's live tasks; updates `load`
/// with the plan.
pub fn plan(
    service: &ServiceInfo,
    nodes: &[NodeInfo],
    tasks: &[LiveTask],
    load: &mut Load,
) -> Plan {
    let by_id: HashMap<&str, &NodeInfo> = nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    let mut out = Plan::default();
    // Tasks that may stay where they are; the rest stop.
    let mut kept: Vec<&LiveTask> = Vec::new();
    for t in tasks {
        let keep = by_id
            .get(t.node_id.as_str())
            .is_some_and(|n| n.can_keep(&service.constraints));
        if keep {
            kept.push(t);
        } else {
            out.stop.push(t.id.clone());
            load.remove(&t.node_id);
        }
    }
    // Candidates in ID order (ties go to the lowest ID), each with its load slot and its count
    // of this service's tasks.
    let mut eligible: Vec<&NodeInfo> = nodes
        .iter()
        .filter(|n| n.can_take(&service.constraints))
        .collect();
    eligible.sort_by(|a, b| a.id.cmp(&b.id));
    let slots: Vec<usize> = eligible.iter().map(|n| load.slot(&n.id)).collect();
    let position: HashMap<&str, usize> = eligible
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let mut mine = vec![0u64; eligible.len()];

    match service.mode {
        Mode::Replicated(replicas) => {
            // One task per slot: a duplicate in a slot (left by a failed update) stops too.
            let mut by_slot: BTreeMap<u64, &LiveTask> = BTreeMap::new();
            for t in kept {
                if t.slot == 0 || t.slot > replicas || by_slot.contains_key(&t.slot) {
                    out.stop.push(t.id.clone());
                    load.remove(&t.node_id);
                } else {
                    if let Some(&i) = position.get(t.node_id.as_str()) {
                        mine[i] += 1;
                    }
                    by_slot.insert(t.slot, t);
                }
            }
            for slot in 1..=replicas {
                if by_slot.contains_key(&slot) {
                    continue;
                }
                let best = (0..eligible.len()).min_by_key(|&i| (mine[i], load.counts[slots[i]]));
                match best {
                    Some(i) => {
                        mine[i] += 1;
                        load.counts[slots[i]] += 1;
                        out.create.push(NewTask {
                            slot,
                            node_id: eligible[i].id.clone(),
                        });
                    }
                    None => out.unplaced += 1,
                }
            }
        }
        Mode::Global => {
            // One per node: extra ones on a node stop.
            let mut seen: HashSet<&str> = HashSet::new();
            for t in kept {
                if !seen.insert(t.node_id.as_str()) {
                    out.stop.push(t.id.clone());
                    load.remove(&t.node_id);
                }
            }
            for (i, n) in eligible.iter().enumerate() {
                if !seen.contains(n.id.as_str()) {
                    load.counts[slots[i]] += 1;
                    out.create.push(NewTask {
                        slot: 0,
                        node_id: n.id.clone(),
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str) -> NodeInfo {
        NodeInfo {
            id: id.into(),
            hostname: format!("host-{id}"),
            role: "worker".into(),
            labels: BTreeMap::new(),
            availability: Availability::Active,
            ready: true,
        }
    }

    fn svc(mode: Mode) -> ServiceInfo {
        ServiceInfo {
            id: "s".into(),
            mode,
            constraints: vec![],
        }
    }

    fn live(id: &str, slot: u64, node: &str) -> LiveTask {
        LiveTask {
            id: id.into(),
            slot,
            node_id: node.into(),
        }
    }

    fn nodes_of(plan: &Plan) -> Vec<&str> {
        plan.create.iter().map(|t| t.node_id.as_str()).collect()
    }

    #[test]
    fn three_replicas_spread_over_three_nodes() {
        let nodes = [node("a"), node("b"), node("c")];
        let p = plan(&svc(Mode::Replicated(3)), &nodes, &[], &mut Load::default());
        assert_eq!(nodes_of(&p), ["a", "b", "c"]);
        assert_eq!(
            p.create.iter().map(|t| t.slot).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        // Five on three: 2, 2, 1.
        let p = plan(&svc(Mode::Replicated(5)), &nodes, &[], &mut Load::default());
        assert_eq!(nodes_of(&p), ["a", "b", "c", "a", "b"]);
    }

    #[test]
    fn fewest_tasks_in_all_breaks_ties() {
        let nodes = [node("a"), node("b"), node("c")];
        let other = [live("o1", 1, "a"), live("o2", 2, "b")];
        let mut load = Load::new(&other);
        let p = plan(&svc(Mode::Replicated(1)), &nodes, &[], &mut load);
        assert_eq!(nodes_of(&p), ["c"]);
    }

    #[test]
    fn scale_down_stops_the_highest_slots_and_up_fills_gaps() {
        let nodes = [node("a"), node("b")];
        let tasks = [live("t1", 1, "a"), live("t2", 2, "b"), live("t3", 3, "a")];
        let mut load = Load::new(&tasks);
        let p = plan(&svc(Mode::Replicated(1)), &nodes, &tasks, &mut load);
        assert_eq!(p.stop, ["t2", "t3"]);
        assert!(p.create.is_empty());
        let tasks = [live("t1", 1, "a"), live("t3", 3, "a")];
        let p = plan(
            &svc(Mode::Replicated(3)),
            &nodes,
            &tasks,
            &mut Load::new(&tasks),
        );
        assert_eq!(
            p.create,
            [NewTask {
                slot: 2,
                node_id: "b".into()
            }]
        );
    }

    #[test]
    fn drained_and_down_nodes_lose_their_tasks_paused_keep_them() {
        let mut nodes = [node("a"), node("b"), node("c")];
        let tasks = [live("t1", 1, "a"), live("t2", 2, "b"), live("t3", 3, "c")];
        nodes[0].availability = Availability::Drain;
        nodes[1].ready = false;
        nodes[2].availability = Availability::Pause;
        let p = plan(
            &svc(Mode::Replicated(3)),
            &nodes,
            &tasks,
            &mut Load::new(&tasks),
        );
        assert_eq!(p.stop, ["t1", "t2"]);
        assert!(p.create.is_empty());
        assert_eq!(p.unplaced, 2, "no active node is left for slots 1 and 2");
        // b is back: its task stays, slot 1 (on the drained a) moves to it.
        nodes[1].ready = true;
        let p = plan(
            &svc(Mode::Replicated(3)),
            &nodes,
            &tasks,
            &mut Load::new(&tasks),
        );
        assert_eq!(p.stop, ["t1"]);
        assert_eq!(nodes_of(&p), ["b"]);
    }

    #[test]
    fn a_task_on_a_removed_node_is_replaced() {
        let nodes = [node("b")];
        let tasks = [live("t1", 1, "gone")];
        let p = plan(
            &svc(Mode::Replicated(1)),
            &nodes,
            &tasks,
            &mut Load::new(&tasks),
        );
        assert_eq!(p.stop, ["t1"]);
        assert_eq!(nodes_of(&p), ["b"]);
    }

    #[test]
    fn constraints_choose_the_nodes() {
        let mut nodes = [node("a"), node("b"), node("c")];
        nodes[1].role = "manager".into();
        nodes[2].labels.insert("zone".into(), "east".into());
        let mut s = svc(Mode::Replicated(2));
        s.constraints = vec![Constraint::parse("node.role==manager").unwrap()];
        let p = plan(&s, &nodes, &[], &mut Load::default());
        assert_eq!(nodes_of(&p), ["b", "b"]);
        s.constraints = vec![
            Constraint::parse("node.labels.zone==east").unwrap(),
            Constraint::parse("node.hostname!=host-a").unwrap(),
        ];
        let p = plan(&s, &nodes, &[], &mut Load::default());
        assert_eq!(nodes_of(&p), ["c", "c"]);
        s.constraints = vec![Constraint::parse("node.hostname==nowhere").unwrap()];
        let p = plan(&s, &nodes, &[], &mut Load::default());
        assert_eq!(p.unplaced, 2);
    }

    #[test]
    fn global_mode_one_per_eligible_node() {
        let mut nodes = [node("a"), node("b"), node("c")];
        nodes[2].availability = Availability::Pause;
        let tasks = [live("t1", 0, "a"), live("t2", 0, "a")];
        let p = plan(&svc(Mode::Global), &nodes, &tasks, &mut Load::new(&tasks));
        assert_eq!(p.stop, ["t2"]);
        assert_eq!(nodes_of(&p), ["b"]);
    }

    #[test]
    fn duplicate_slots_are_stopped() {
        let nodes = [node("a"), node("b")];
        let tasks = [live("t1", 1, "a"), live("t1b", 1, "b")];
        let p = plan(
            &svc(Mode::Replicated(2)),
            &nodes,
            &tasks,
            &mut Load::new(&tasks),
        );
        assert_eq!(p.stop, ["t1b"]);
        assert_eq!(
            p.create,
            [NewTask {
                slot: 2,
                node_id: "b".into()
            }]
        );
    }
}
