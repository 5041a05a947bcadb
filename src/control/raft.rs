//! Raft between managers (openraft): the type configuration, the replicated commands, and the
//! network that carries Raft messages over the mutual-TLS cluster protocol.
//!
//! Every change to the cluster tables is a [`Command`] written through the leader; the state
//! machine ([`super::raft_store`]) applies it to the redb tables on every manager. Raft node IDs
//! are derived from swarm node IDs ([`raft_id`]); the Raft node's address is its cluster address.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Config, RaftNetwork, RaftNetworkFactory};
use rustls::ClientConfig;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::rpc::{self, ClusterReply, ClusterRequest};
use super::store::{NetworkKey, SwarmRecord};
use crate::api::Node;

/// A change to the cluster tables.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    PutSwarm(Box<SwarmRecord>),
    PutNode(Box<Node>),
    RemoveNode(String),
    SetEncryptionKeys(Vec<NetworkKey>),
}

/// What applying a command returns (nothing beyond success).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Applied;

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

/// This manager's TLS client configuration, shared so that a renewed certificate is used by
/// every peer connection from then on.
pub type SharedTls = Arc<std::sync::RwLock<Arc<ClientConfig>>>;

/// Creates connections to peer managers with this manager's TLS identity.
pub struct Network {
    pub tls: SharedTls,
}

/// One peer manager.
pub struct Peer {
    target: u64,
    addr: String,
    tls: SharedTls,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Peer {
        Peer {
            target,
            addr: node.addr.clone(),
            tls: self.tls.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Transport(String);

impl Peer {
    async fn send(&self, message: RaftMessage, timeout: Duration) -> Result<RaftAnswer, Transport> {
        let request = ClusterRequest::Raft(message);
        let tls = match self.tls.read() {
            Ok(tls) => tls.clone(),
            Err(_) => return Err(Transport("TLS configuration lock poisoned".into())),
        };
        let call = rpc::call(&self.addr, tls, &request);
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(ClusterReply::Raft(answer))) => Ok(answer),
            Ok(Ok(_)) => Err(Transport(format!("{}: unexpected reply", self.addr))),
            Ok(Err(err)) => Err(Transport(err.to_string())),
            Err(_) => Err(Transport(format!("{}: timed out", self.addr))),
        }
    }
}

fn unreachable<E: std::error::Error>(err: Transport) -> RPCError<u64, BasicNode, E> {
    RPCError::Unreachable(Unreachable::new(&err))
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        match self.send(RaftMessage::Append(rpc), option.hard_ttl()).await {
            Ok(RaftAnswer::Append(Ok(resp))) => Ok(resp),
            Ok(RaftAnswer::Append(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(unreachable(Transport("mismatched Raft answer".into()))),
            Err(e) => Err(unreachable(e)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        match self
            .send(RaftMessage::Snapshot(rpc), option.hard_ttl())
            .await
        {
            Ok(RaftAnswer::Snapshot(Ok(resp))) => Ok(resp),
            Ok(RaftAnswer::Snapshot(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(unreachable(Transport("mismatched Raft answer".into()))),
            Err(e) => Err(unreachable(e)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        match self.send(RaftMessage::Vote(rpc), option.hard_ttl()).await {
            Ok(RaftAnswer::Vote(Ok(resp))) => Ok(resp),
            Ok(RaftAnswer::Vote(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(unreachable(Transport("mismatched Raft answer".into()))),
            Err(e) => Err(unreachable(e)),
        }
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
