//! The manager's side of the swarm: creating it, admitting nodes, and answering manager
//! operations from the cluster tables in the store.
//!
//! Every manager holds the cluster tables (the Raft state machine); the Raft leader serves the
//! manager operations and writes every change through Raft. Other managers redirect nodes to it
//! and forward their CLI's operations to it. Liveness is kept in the leader's memory: a node is
//! `ready` while its heartbeats arrive. The leader also keeps the Raft voters in step with the
//! nodes whose role is manager ([`Manager::reconcile_membership`]).

mod api;
pub mod captures;
mod cluster;
mod dispatch;
mod membership;
pub mod networks;
pub mod orchestrator;
pub mod services;

pub use membership::{majority, LOSES_QUORUM};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rand::RngCore;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::addr::{NodeAddrs, DATA_PATH_PORTS};
use super::allocator::{self, network::NetworkRequest};
use super::ca::{identity_from_pem, new_key_and_csr, CertIdentity, NodeCredentials, RootCa};
use super::keys;
use super::network::{NetworkRecord, INGRESS};
use super::raft::{raft_id, Applied, Command, Raft};
use super::rpc::{ClusterReply, ClusterRequest, ClusterResponse};
use super::store::{LocalIdentity, NetworkKey, Store, StoreError, SwarmRecord};
use super::token::{ca_digest_text, new_id, JoinToken};
use crate::api::{
    ApiError, Availability, ErrorKind, InitRequest, JoinTokens, ManagerStatus, Node, NodeState,
    NodeStatus, Reachability, Reply, Request, Response, Role, Swarm,
};

/// How often nodes send heartbeats.
pub const HEARTBEAT_PERIOD: Duration = Duration::from_millis(1000);
/// A node silent for this long is `down`.
pub const DOWN_AFTER: Duration = Duration::from_millis(4000);
/// Longest wait for a Raft write to commit before reporting the swarm unavailable.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        ApiError::internal(err.to_string())
    }
}

fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| "unknown".into())
}

fn random_key() -> [u8; 16] {
    let mut key = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut key);
    key
}

/// The running Raft node of this manager.
#[derive(Clone)]
pub struct RaftHandle {
    pub raft: Raft,
    pub node_id: String,
    /// TLS client configuration of the Raft network, replaced when the certificate is renewed.
    pub tls: Arc<RwLock<Arc<rustls::ClientConfig>>>,
    /// When each peer manager last answered a Raft message of this node.
    pub acks: crate::control::raft_net::Acks,
}

/// A manager's Raft state at one moment (see [`Manager::raft_sample`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftSample {
    pub term: u64,
    pub leader: bool,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub committed_index: Option<u64>,
    pub voters: usize,
    /// On the leader: the nodes whose heartbeats arrive (itself included).
    pub sessions: Option<usize>,
}

/// What `swarm init` creates: this node's identity and the first writes to the cluster tables.
pub struct Bootstrap {
    pub identity: LocalIdentity,
    pub commands: Vec<Command>,
    pub keys: Vec<NetworkKey>,
}

/// Manager state that is not in the store.
pub struct Manager {
    store: Arc<Store>,
    last_seen: Mutex<HashMap<String, Instant>>,
    /// Serialises Raft configuration changes (adding, removing, reconciling voters).
    membership: tokio::sync::Mutex<()>,
    /// Serialises read-modify-write sequences on the cluster tables.
    serial: tokio::sync::Mutex<()>,
    raft: RwLock<Option<RaftHandle>>,
    /// When this manager was first seen leading in its current term of leadership.
    leader_since: Mutex<Option<Instant>>,
    /// The tasks' output shipped by the nodes (leader only; see `logs`).
    pub logs: Mutex<crate::control::logs::LogBook>,
    /// Wakes the orchestrator (a service changed, a task ended).
    pub wake: tokio::sync::Notify,
    /// Counts the writes committed through this manager (leader): held heartbeats and the
    /// leader's own agent wait on it.
    pub changes: tokio::sync::watch::Sender<u64>,
    /// The dispatcher's index of the store and the Raft index it was built at.
    #[allow(clippy::type_complexity)]
    dispatch_cache: Mutex<Option<(Option<u64>, Arc<crate::control::dispatcher::Index>, u16)>>,
    /// Captures asked of other nodes, waiting for their streams (leader only).
    pub captures: captures::CaptureBook,
}

impl Manager {
    pub fn new(store: Arc<Store>) -> Self {
        Manager {
            store,
            last_seen: Mutex::new(HashMap::new()),
            membership: tokio::sync::Mutex::new(()),
            serial: tokio::sync::Mutex::new(()),
            raft: RwLock::new(None),
            leader_since: Mutex::new(None),
            logs: Mutex::new(Default::default()),
            wake: tokio::sync::Notify::new(),
            changes: tokio::sync::watch::Sender::new(0),
            dispatch_cache: Mutex::new(None),
            captures: captures::CaptureBook::default(),
        }
    }

    /// Installs (or removes) this manager's Raft node; returns the previous one.
    pub fn set_raft(&self, handle: Option<RaftHandle>) -> Option<RaftHandle> {
        let mut guard = self.raft.write().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *guard, handle)
    }

    pub fn raft(&self) -> Option<RaftHandle> {
        self.raft.read().ok().and_then(|g| g.clone())
    }

    /// Raft ID of the current leader, if one is known.
    pub fn leader_raft_id(&self) -> Option<u64> {
        self.raft()
            .and_then(|h| h.raft.metrics().borrow().current_leader)
    }

    /// True when this node is the Raft leader. A leader that committed its own removal from the
    /// voters may still call itself leader for a while; it is not one for the swarm.
    pub fn is_leader(&self) -> bool {
        let Some(h) = self.raft() else {
            return false;
        };
        let own = raft_id(&h.node_id);
        let metrics = h.raft.metrics();
        let m = metrics.borrow();
        m.current_leader == Some(own)
            && m.membership_config
                .membership()
                .voter_ids()
                .any(|v| v == own)
    }

    /// Cluster address of the current leader, if known.
    pub fn leader_addr(&self) -> Option<String> {
        let handle = self.raft()?;
        let metrics = handle.raft.metrics().borrow().clone();
        let leader = metrics.current_leader?;
        metrics
            .membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.addr.clone())
    }

    /// Number of Raft voters in the last membership this manager applied (0 without Raft): a
    /// membership change in flight (joint, or not yet committed) is not counted until it is.
    pub fn voter_count(&self) -> usize {
        if self.raft().is_none() {
            return 0;
        }
        crate::control::raft_store::applied_voter_count(&self.store)
    }

    /// Last applied and last snapshotted log indexes of this manager's Raft node.
    pub fn raft_progress(&self) -> (Option<u64>, Option<u64>) {
        match self.raft() {
            Some(h) => {
                let metrics = h.raft.metrics();
                let m = metrics.borrow();
                (m.last_applied.map(|l| l.index), m.snapshot.map(|l| l.index))
            }
            None => (None, None),
        }
    }

    /// This manager's Raft numbers and live node sessions, for a metrics scrape (`None`
    /// without a Raft node).
    pub fn raft_sample(&self) -> Option<RaftSample> {
        let handle = self.raft()?;
        let own = raft_id(&handle.node_id);
        let m = handle.raft.metrics().borrow().clone();
        let leader = m.current_leader == Some(own);
        let sessions = if leader {
            let seen = self.last_seen.lock().unwrap_or_else(|e| e.into_inner());
            // The leader's own agent reports in-process and is live with it.
            Some(
                seen.iter()
                    .filter(|(id, t)| **id != handle.node_id && t.elapsed() < DOWN_AFTER)
                    .count()
                    + 1,
            )
        } else {
            None
        };
        Some(RaftSample {
            term: m.current_term,
            leader,
            last_log_index: m.last_log_index,
            applied_index: m.last_applied.map(|l| l.index),
            committed_index: crate::control::raft_store::committed_index(&self.store),
            voters: self.voter_count(),
            sessions,
        })
    }

    /// Writes one command through Raft (leader only).
    pub async fn write(&self, command: Command) -> Result<(), ApiError> {
        self.write_applied(command).await.map(|_| ())
    }

    /// Writes one command through Raft (leader only) and returns what applying it answered
    /// (a refusal by the state machine is not an error here).
    pub async fn write_applied(&self, command: Command) -> Result<Applied, ApiError> {
        let handle = self
            .raft()
            .ok_or_else(|| ApiError::unavailable("this node is not a manager"))?;
        match tokio::time::timeout(WRITE_TIMEOUT, handle.raft.client_write(command)).await {
            Ok(Ok(resp)) => {
                self.changes.send_modify(|n| *n = n.wrapping_add(1));
                Ok(resp.data)
            }
            Ok(Err(err)) => Err(ApiError::unavailable(format!(
                "the change could not be committed: {err}"
            ))),
            Err(_) => {
                let (voters, up) = self.reachable_voters().unwrap_or_default();
                Err(ApiError::unavailable(format!(
                    "the change was not committed within {WRITE_TIMEOUT:?}: {} of {} managers reachable, {} needed (a majority), so the swarm has lost quorum. Restart the missing managers, or run `swarmnet swarm init --force-new-cluster` on a surviving one to rebuild a one-manager swarm from its state.",
                    up.len(),
                    voters.len(),
                    majority(voters.len())
                )))
            }
        }
    }

    /// Validates `swarm init` and creates the CA, tokens, this node's certificate and keys.
    pub fn bootstrap(
        &self,
        hostname: &str,
        addrs: &NodeAddrs,
        req: &InitRequest,
    ) -> Result<Bootstrap, ApiError> {
        let data_path_port = match req.data_path_port {
            None => 4789,
            Some(p) if DATA_PATH_PORTS.contains(&p) => p as u16,
            Some(p) => {
                return Err(ApiError::invalid(format!(
                    "--data-path-port {p} is out of range: it must be between 1024 and 49151"
                )))
            }
        };
        let pools: Vec<ipnet::Ipv4Net> = if req.default_addr_pool.is_empty() {
            vec!["10.0.0.0/8".parse().expect("literal pool")]
        } else {
            req.default_addr_pool
                .iter()
                .map(|p| {
                    p.parse::<ipnet::Ipv4Net>().map_err(|e| {
                        ApiError::invalid(format!("invalid --default-addr-pool {p}: {e}"))
                    })
                })
                .collect::<Result<_, _>>()?
        };
        let subnet_size = req.default_addr_pool_mask_length.unwrap_or(24);
        if !(1..=29).contains(&subnet_size) {
            return Err(ApiError::invalid(format!(
                "--default-addr-pool-mask-length {subnet_size} is out of range: it must be between 1 and 29"
            )));
        }
        if let Some(pool) = pools
            .iter()
            .find(|p| u32::from(p.prefix_len()) > subnet_size)
        {
            return Err(ApiError::invalid(format!(
                "--default-addr-pool-mask-length {subnet_size} is shorter than the prefix of the pool {pool}"
            )));
        }
        let interval = req
            .key_rotation_interval_secs
            .unwrap_or(keys::DEFAULT_ROTATION_SECS);
        if interval == 0 {
            return Err(ApiError::invalid(
                "the key rotation interval must be positive",
            ));
        }

        let ca = RootCa::generate().map_err(|e| ApiError::internal(e.to_string()))?;
        let ca_der = ca
            .cert_der()
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let swarm_id = new_id();
        let node_id = new_id();
        let (key_pem, csr_pem) =
            new_key_and_csr().map_err(|e| ApiError::internal(e.to_string()))?;
        let cert_pem = ca
            .sign_csr(&csr_pem, &node_id, Role::Manager, &swarm_id)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let now = now_rfc3339();
        let swarm = SwarmRecord {
            id: swarm_id.clone(),
            created_at: now.clone(),
            updated_at: now.clone(),
            worker_token: JoinToken::generate(&ca_der).to_string(),
            manager_token: JoinToken::generate(&ca_der).to_string(),
            root_ca: ca.clone(),
            data_path_port,
            default_addr_pool: pools.iter().map(|p| p.to_string()).collect(),
            subnet_size: subnet_size as u8,
            key_rotation_interval_secs: interval,
        };
        let node = Node {
            id: node_id.clone(),
            hostname: hostname.to_string(),
            role: Role::Manager,
            availability: Availability::Active,
            status: NodeStatus {
                state: NodeState::Ready,
                addr: addrs.advertise_ip.to_string(),
            },
            manager_status: Some(ManagerStatus {
                leader: true,
                reachability: Reachability::Reachable,
                addr: addrs.advertise(),
            }),
            data_path_addr: addrs.data_path_ip.to_string(),
            cluster_addr: addrs.advertise(),
            gossip_addr: String::new(),
            created_at: now.clone(),
            updated_at: now.clone(),
        };
        // The routing mesh's network: the first subnet of the pools, VNI 4096.
        let ingress_req = NetworkRequest {
            name: INGRESS.into(),
            ingress: true,
            ..Default::default()
        };
        let ingress_alloc =
            allocator::network::create(&ingress_req, &[], &networks::pools_of(&swarm))
                .map_err(|e| ApiError::invalid(e.to_string()))?;
        let ingress =
            NetworkRecord::swarm(new_id(), now.clone(), &ingress_req, None, ingress_alloc);
        let unix_now = OffsetDateTime::now_utc().unix_timestamp();
        let initial = keys::initial_keys([random_key(), random_key(), random_key()], unix_now);
        let identity = LocalIdentity {
            node_id,
            swarm_id,
            hostname: hostname.to_string(),
            role: Role::Manager,
            credentials: NodeCredentials { cert_pem, key_pem },
            ca_cert_pem: ca.cert_pem,
            advertise_addr: addrs.advertise_ip.to_string(),
            listen_addr: addrs.listen.to_string(),
            data_path_addr: addrs.data_path_ip.to_string(),
            managers: vec![addrs.advertise()],
        };
        Ok(Bootstrap {
            identity,
            commands: vec![
                Command::PutSwarm(Box::new(swarm)),
                Command::PutNode(Box::new(node)),
                Command::SetEncryptionKeys(initial.clone()),
                Command::CreateNetwork(Box::new(ingress)),
            ],
            keys: initial,
        })
    }

    /// The swarm record as this manager's state machine has it.
    pub fn swarm(&self) -> Result<Option<SwarmRecord>, ApiError> {
        Ok(self.store.swarm()?)
    }

    fn swarm_required(&self) -> Result<SwarmRecord, ApiError> {
        self.swarm()?.ok_or_else(|| {
            ApiError::unavailable("this manager has not received the cluster state yet")
        })
    }

    fn touch(&self, node_id: &str) {
        if let Ok(mut seen) = self.last_seen.lock() {
            seen.insert(node_id.to_string(), Instant::now());
        }
    }

    fn forget(&self, node_id: &str) {
        if let Ok(mut seen) = self.last_seen.lock() {
            seen.remove(node_id);
        }
    }

    /// Liveness of `node_id` as this leader knows it: `Ready` while its heartbeats arrive,
    /// `Down` once they stop, and `Unknown` for a node not heard from since this manager became
    /// leader less than [`DOWN_AFTER`] ago (its heartbeats went to the previous leader).
    pub(crate) fn liveness(&self, node_id: &str, self_id: Option<&str>) -> NodeState {
        if Some(node_id) == self_id {
            return NodeState::Ready;
        }
        let seen = self
            .last_seen
            .lock()
            .ok()
            .and_then(|seen| seen.get(node_id).copied());
        match seen {
            Some(t) if t.elapsed() < DOWN_AFTER => NodeState::Ready,
            Some(_) => NodeState::Down,
            None if self.leader_for() < DOWN_AFTER => NodeState::Unknown,
            None => NodeState::Down,
        }
    }

    /// How long this manager has been the leader, as observed by [`Manager::note_leadership`].
    fn leader_for(&self) -> Duration {
        self.leader_since
            .lock()
            .ok()
            .and_then(|since| since.map(|t| t.elapsed()))
            .unwrap_or_default()
    }

    /// Records whether this manager leads now; the start of a term opens the `Unknown` window.
    pub fn note_leadership(&self, leading: bool) {
        if let Ok(mut since) = self.leader_since.lock() {
            match (leading, since.is_some()) {
                (true, false) => *since = Some(Instant::now()),
                (false, true) => *since = None,
                _ => {}
            }
        }
    }

    /// Nodes with their live status filled in, sorted by hostname then ID. A manager is
    /// `Reachable` only while its heartbeats arrive and it is a voter of the committed Raft
    /// configuration.
    pub fn nodes(&self) -> Result<Vec<Node>, ApiError> {
        let own = self.raft().map(|h| h.node_id);
        let leader = self.leader_raft_id();
        let voters = self.committed_voters();
        let mut nodes = self.store.nodes()?;
        for node in nodes.iter_mut() {
            let state = self.liveness(&node.id, own.as_deref());
            // A node recorded as gone (it left) stays down until it speaks again.
            if node.status.state != NodeState::Down || state == NodeState::Ready {
                node.status.state = state;
            }
            if let Some(ms) = node.manager_status.as_mut() {
                ms.leader = Some(raft_id(&node.id)) == leader;
                let raft = raft_id(&node.id);
                ms.reachability = if voters.contains(&raft)
                    && (Some(&node.id) == own.as_ref() || self.raft_peer_up(raft))
                {
                    Reachability::Reachable
                } else {
                    Reachability::Unreachable
                };
            }
        }
        nodes.sort_by(|a, b| (&a.hostname, &a.id).cmp(&(&b.hostname, &b.id)));
        Ok(nodes)
    }

    /// Whether the peer manager `raft` answered one of this node's Raft messages within
    /// [`DOWN_AFTER`] (on the leader: its heartbeats; a follower sends none).
    pub fn raft_peer_up(&self, raft: u64) -> bool {
        let Some(handle) = self.raft() else {
            return false;
        };
        let acks = handle.acks.lock();
        acks.ok()
            .and_then(|a| a.get(&raft).copied())
            .is_some_and(|t| t.elapsed() < DOWN_AFTER)
    }

    /// Cluster addresses of the managers, the leader first.
    pub fn manager_addrs(&self) -> Result<Vec<String>, ApiError> {
        let mut managers: Vec<(bool, String)> = self
            .nodes()?
            .into_iter()
            .filter_map(|n| n.manager_status.map(|m| (!m.leader, m.addr)))
            .collect();
        managers.sort();
        Ok(managers.into_iter().map(|(_, addr)| addr).collect())
    }

    /// Rotates the network encryption keys when the newest is older than the interval;
    /// returns the current set.
    pub async fn rotate_keys_if_due(&self) -> Result<Vec<NetworkKey>, ApiError> {
        let _guard = self.serial.lock().await;
        let swarm = self.swarm_required()?;
        let current = self.store.encryption_keys()?;
        let now = OffsetDateTime::now_utc().unix_timestamp();
        if !keys::rotation_due(&current, now, swarm.key_rotation_interval_secs) {
            return Ok(current);
        }
        let next = if current.is_empty() {
            keys::initial_keys([random_key(), random_key(), random_key()], now)
        } else {
            keys::rotate(&current, random_key(), now)
        };
        self.write(Command::SetEncryptionKeys(next.clone())).await?;
        tracing::info!(
            "rotated the network encryption keys; newest tag {}",
            next.last().map_or(0, |k| k.tag)
        );
        Ok(next)
    }
}

/// The cluster address a promoted node will listen on: the one it advertised when joining.
fn node_cluster_addr(node: &Node) -> String {
    if node.cluster_addr.is_empty() {
        format!("{}:{}", node.status.addr, super::addr::DEFAULT_PORT)
    } else {
        node.cluster_addr.clone()
    }
}

/// Reads the identity from a certificate PEM, as an API error on failure.
pub fn cert_identity(pem: &str) -> Result<CertIdentity, ApiError> {
    identity_from_pem(pem).map_err(|e| ApiError::internal(e.to_string()))
}
