//! Raft between managers (openraft): the type configuration, the replicated commands, and the
//! messages Raft exchanges between managers (carried by [`super::raft_net`]).
//!
//! Every change to the cluster tables is a [`Command`] written through the leader; the state
//! machine ([`super::raft_store`]) applies it to the redb tables on every manager. Raft node IDs
//! are derived from swarm node IDs ([`raft_id`]); the Raft node's address is its cluster address.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Config};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::network::NetworkRecord;
use super::service::{ServiceRecord, TaskRecord, TaskState, TaskStatus};
use super::store::{NetworkKey, SwarmRecord};
use crate::api::Node;

/// A change to the cluster tables.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    PutSwarm(Box<SwarmRecord>),
    PutNode(Box<Node>),
    RemoveNode(String),
    SetEncryptionKeys(Vec<NetworkKey>),
    /// A new swarm network; refused at apply time if it clashes with one already applied
    /// (name, subnet, VNI, a second ingress), so two leaders in a row cannot both create one.
    CreateNetwork(Box<NetworkRecord>),
    /// Removes a network by ID.
    RemoveNetwork(String),
    /// A new service; refused if its name is taken.
    CreateService(Box<ServiceRecord>),
    /// The next version of a service; refused unless it follows the stored one.
    UpdateService(Box<ServiceRecord>),
    /// Removes a service by ID and tells its tasks to shut down.
    RemoveService(String),
    /// Creates or replaces tasks (orchestration on the leader).
    PutTasks(Vec<TaskRecord>),
    /// Sets tasks' desired state.
    SetTaskDesired {
        ids: Vec<String>,
        desired: TaskState,
    },
    /// Task states reported by node `node_id`.
    TaskStatuses {
        node_id: String,
        statuses: Vec<TaskStatus>,
    },
    /// Forgets tasks.
    RemoveTasks(Vec<String>),
    /// Gives (`Some`) or takes back (`None`) nodes' load-balancer endpoint addresses:
    /// (network ID, node ID, address).
    SetLbAddresses(Vec<(String, String, Option<std::net::Ipv4Addr>)>),
}

/// What applying a command returns.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Applied {
    /// Why the state machine refused the command (the same on every manager), if it did.
    #[serde(default)]
    pub refused: Option<String>,
}

openraft::declare_raft_types!(
    /// Type configuration of the swarm's Raft group.
    pub TypeConfig:
        D = Command,
        R = Applied,
        NodeId = u64,
        Node = BasicNode,
);

/// The running Raft node.
pub type Raft = openraft::Raft<TypeConfig>;

/// Raft node ID of a swarm node: the first 8 bytes of SHA-256 of its ID.
pub fn raft_id(node_id: &str) -> u64 {
    let digest = Sha256::digest(node_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Environment variable: build a Raft snapshot (and purge the log before it) every N log
/// entries instead of openraft's default. For operators with tight disks, and for tests that
/// exercise snapshot transfer.
pub const SNAPSHOT_LOGS_ENV: &str = "SWARMNET_RAFT_SNAPSHOT_LOGS";

/// Raft timing: heartbeats well inside the election timeout, elections within seconds.
pub fn config(swarm_id: &str) -> Result<Arc<Config>, Box<openraft::ConfigError>> {
    let mut config = Config {
        cluster_name: swarm_id.to_string(),
        heartbeat_interval: 500,
        election_timeout_min: 1500,
        election_timeout_max: 3000,
        ..Default::default()
    };
    if let Some(every) = std::env::var(SNAPSHOT_LOGS_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|n| *n > 0)
    {
        config.snapshot_policy = openraft::SnapshotPolicy::LogsSinceLast(every);
        config.max_in_snapshot_log_to_keep = 0;
    }
    Ok(Arc::new(config.validate().map_err(Box::new)?))
}

/// Membership map for `initialize`.
pub fn single_member(node_id: &str, addr: &str) -> BTreeMap<u64, BasicNode> {
    BTreeMap::from([(raft_id(node_id), BasicNode::new(addr))])
}

/// Raft messages on the cluster port.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftMessage {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<u64>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
}

/// Replies to [`RaftMessage`]s.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftAnswer {
    Append(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    Vote(Result<VoteResponse<u64>, RaftError<u64>>),
    Snapshot(Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
}

/// Answers a Raft message from a peer manager.
pub async fn serve(raft: &Raft, message: RaftMessage) -> RaftAnswer {
    match message {
        RaftMessage::Append(req) => RaftAnswer::Append(raft.append_entries(req).await),
        RaftMessage::Vote(req) => RaftAnswer::Vote(raft.vote(req).await),
        RaftMessage::Snapshot(req) => RaftAnswer::Snapshot(raft.install_snapshot(req).await),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_ids_are_stable_and_distinct() {
        assert_eq!(raft_id("abc"), raft_id("abc"));
        assert_ne!(raft_id("abc"), raft_id("abd"));
        assert!(config("swarm").is_ok());
    }
}
