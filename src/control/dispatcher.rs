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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignments {
    pub tasks: Vec<AssignedTask>,
    /// The networks of those tasks.
    pub networks: Vec<NetworkRecord>,
    pub peers: Vec<Peer>,
    /// The swarm's VXLAN port.
    pub data_path_port: u16,
}

/// What a node reports with a heartbeat.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub statuses: Vec<TaskStatus>,
    pub logs: Vec<LogLine>,
}

/// Docker's task name: `service.slot`, or `service.node` in global mode.
pub fn task_name(service: &str, task: &TaskRecord) -> String {
    if task.slot == 0 {
        format!("{service}.{}", task.node_id)
    } else {
        format!("{service}.{}", task.slot)
    }
}

/// The assignments of node `node_id`.
pub fn assignments(
    node_id: &str,
    nodes: &[Node],
    services: &[ServiceRecord],
    networks: &[NetworkRecord],
    tasks: &[TaskRecord],
    data_path_port: u16,
) -> Assignments {
    let services: HashMap<&str, &ServiceRecord> =
        services.iter().map(|s| (s.id.as_str(), s)).collect();
    let vteps: HashMap<&str, (Ipv4Addr, &str)> = nodes
        .iter()
        .filter(|n| n.status.state == NodeState::Ready)
        .filter_map(|n| {
            Some((
                n.id.as_str(),
                (n.data_path_addr.parse().ok()?, n.hostname.as_str()),
            ))
        })
        .collect();
    let mut out = Assignments {
        data_path_port,
        ..Assignments::default()
    };
    let mut wanted: BTreeSet<&str> = BTreeSet::new();
    for t in tasks.iter().filter(|t| {
        t.node_id == node_id && t.desired <= TaskState::Running && !t.state.is_terminal()
    }) {
        let Some(s) = services.get(t.service_id.as_str()) else {
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
    out.networks = networks
        .iter()
        .filter(|n| wanted.contains(n.id.as_str()))
        .cloned()
        .collect();
    let mut peers: BTreeMap<(String, Ipv4Addr), Peer> = BTreeMap::new();
    for t in tasks
        .iter()
        .filter(|t| t.node_id != node_id && !t.state.is_terminal())
    {
        let Some(&(vtep, hostname)) = vteps.get(t.node_id.as_str()) else {
            continue;
        };
        for a in t
            .addresses
            .iter()
            .filter(|a| wanted.contains(a.network_id.as_str()))
        {
            // One address, one owner: a newer task wins over a stopping one that held it.
            let key = (a.network_id.clone(), a.addr.addr());
            let replace = peers
                .get(&key)
                .is_none_or(|_| t.desired <= TaskState::Running);
            if replace {
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
    }
    out.peers = peers.into_values().collect();
    out
}
