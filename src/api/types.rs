//! Objects of the local API (and of the cluster store): nodes, the swarm, this node's view.
//! Field names follow Docker's JSON (PascalCase) so `inspect` output reads the same.

use serde::{Deserialize, Serialize};

/// A node's role in the swarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Worker,
    Manager,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Worker => "worker",
            Role::Manager => "manager",
        })
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "worker" => Ok(Role::Worker),
            "manager" => Ok(Role::Manager),
            _ => Err(format!("invalid role {s:?}: expected worker or manager")),
        }
    }
}

/// Whether the scheduler may place tasks on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Availability {
    #[default]
    Active,
    Pause,
    Drain,
}

impl std::fmt::Display for Availability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Availability::Active => "active",
            Availability::Pause => "pause",
            Availability::Drain => "drain",
        })
    }
}

impl std::str::FromStr for Availability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "active" => Ok(Availability::Active),
            "pause" => Ok(Availability::Pause),
            "drain" => Ok(Availability::Drain),
            _ => Err(format!(
                "invalid availability {s:?}: expected active, pause or drain"
            )),
        }
    }
}

/// Liveness of a node as its managers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    Unknown,
    Ready,
    Down,
}

/// Whether a manager is reachable from the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reachability {
    Reachable,
    Unreachable,
}

/// Manager-only part of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ManagerStatus {
    pub leader: bool,
    pub reachability: Reachability,
    /// Cluster management address, `IP:PORT`.
    pub addr: String,
}

/// Node status as `node inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeStatus {
    pub state: NodeState,
    /// The node's advertise IP.
    pub addr: String,
}

/// One node of the swarm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Node {
    #[serde(rename = "ID")]
    pub id: String,
    pub hostname: String,
    /// Desired role; the node's certificate follows it.
    pub role: Role,
    pub availability: Availability,
    pub status: NodeStatus,
    pub manager_status: Option<ManagerStatus>,
    /// VXLAN VTEP address.
    pub data_path_addr: String,
    /// Cluster management address (`IP:PORT`) the node listens on when it is a manager.
    #[serde(default)]
    pub cluster_addr: String,
    /// Where the node gossips (`IP:PORT`, UDP and TCP), as it last reported; empty: not yet.
    #[serde(default)]
    pub gossip_addr: String,
    pub created_at: String,
    pub updated_at: String,
}

/// Join tokens of the swarm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct JoinTokens {
    pub worker: String,
    pub manager: String,
}

/// The swarm as `swarm inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Swarm {
    #[serde(rename = "ID")]
    pub id: String,
    pub created_at: String,
    pub updated_at: String,
    pub data_path_port: u16,
    pub default_addr_pool: Vec<String>,
    pub subnet_size: u8,
    /// Rotation interval of the network encryption keys, seconds.
    pub key_rotation_interval_secs: u64,
    /// SHA-256 of the root CA certificate, base 36 (the token's digest part).
    #[serde(rename = "RootCADigest")]
    pub root_ca_digest: String,
    pub join_tokens: JoinTokens,
}

/// This node's own view, answered by any node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LocalInfo {
    /// `inactive` or `active`.
    pub local_node_state: String,
    #[serde(rename = "NodeID")]
    pub node_id: Option<String>,
    pub role: Option<Role>,
    #[serde(rename = "NodeAddr")]
    pub node_addr: Option<String>,
    /// Cluster addresses of the managers this node knows.
    pub remote_managers: Vec<String>,
    /// Tags of the network encryption keys this node holds (the keys stay in the daemon).
    pub encryption_key_tags: Vec<u32>,
    /// Managers only: cluster address of the Raft leader as this node knows it.
    #[serde(default)]
    pub raft_leader: Option<String>,
    /// Managers only: number of Raft voters in the last membership this node applied.
    #[serde(default)]
    pub raft_voters: usize,
    /// Managers only: index of the last Raft entry applied to this node's cluster tables.
    #[serde(default)]
    pub raft_applied: Option<u64>,
    /// Managers only: index of the last entry covered by this node's Raft snapshot.
    #[serde(default)]
    pub raft_snapshot: Option<u64>,
}
