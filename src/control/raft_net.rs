//! The Raft network: carries openraft's messages to peer managers over the mutual-TLS cluster
//! protocol ([`super::rpc`]), one request per connection, with this manager's certificate.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftNetwork, RaftNetworkFactory};
use rustls::ClientConfig;

use super::raft::{RaftAnswer, RaftMessage, TypeConfig};
use super::rpc::{self, ClusterReply, ClusterRequest};

/// This manager's TLS client configuration, shared so that a renewed certificate is used by
/// every peer connection from then on.
pub type SharedTls = Arc<std::sync::RwLock<Arc<ClientConfig>>>;

/// Creates connections to peer managers with this manager's TLS identity.
pub struct Network {
    pub tls: SharedTls,
    pub acks: Acks,
}

/// One peer manager.
/// When each peer last answered a Raft message of this node (the leader sends heartbeats every
/// half second): what "reachable" means for a manager.
pub type Acks = Arc<std::sync::Mutex<std::collections::HashMap<u64, std::time::Instant>>>;

pub struct Peer {
    target: u64,
    addr: String,
    tls: SharedTls,
    acks: Acks,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Peer {
        Peer {
            target,
            addr: node.addr.clone(),
            tls: self.tls.clone(),
            acks: self.acks.clone(),
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
            Ok(Ok(ClusterReply::Raft(answer))) => {
                if let Ok(mut acks) = self.acks.lock() {
                    acks.insert(self.target, std::time::Instant::now());
                }
                Ok(answer)
            }
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
