//! `swarmnet daemon`: one node. Serves the local API, and when the node is in a swarm runs its
//! agent (heartbeats, certificate renewal on role change, key delivery) and, on managers, the
//! mutual-TLS cluster listener on 2377 and a Raft node. The agent lives in [`agent`], the
//! cluster listener in [`cluster`], init/join/leave in [`membership`].

mod agent;
mod capture;
mod cluster;
mod events;
mod gossip;
mod local_api;
mod membership;
pub mod mesh;
pub mod metrics;
mod networks;
pub mod remote;
pub mod runtime;
mod stats;
mod work;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::addr::{self, NodeAddrs};
use super::ca::{identity_from_pem, new_key_and_csr, NodeCredentials};
use super::manager::{Manager, RaftHandle};
use super::raft::{self as raft_mod, raft_id};
use super::raft_net::Network;
use super::raft_store::{LogStore, StateMachine};
use super::rpc::{self, ClusterReply, ClusterRequest, ClusterResponse, RpcError};
use super::store::{LocalIdentity, Store, StoreError};
use super::tls;
use super::token::JoinToken;
use crate::api::frame::write_frame;
use crate::api::server::ServerError;
use crate::api::{
    ApiError, ErrorKind, InitRequest, JoinRequest, LocalInfo, NodeState, Reachability, Reply,
    Request, Response, Role,
};

/// Longest wait for a Raft election before a forwarded operation gives up.
const ELECTION_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Daemon start-up errors.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Api(#[from] ServerError),
    #[error("cannot start the cluster listener: {0}")]
    Listener(ApiError),
    #[error("waiting for a shutdown signal failed: {0}")]
    Signal(std::io::Error),
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
}

/// Where the daemon keeps its state and its socket.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    /// The node's name; `None`: the OS hostname.
    pub hostname: Option<String>,
    /// Upstream nameservers for names outside the swarm; `None`: /etc/resolv.conf.
    pub resolv_conf: Option<PathBuf>,
    /// Where published ports bind; `None`: all addresses.
    pub publish_addr: Option<std::net::Ipv4Addr>,
    /// Where `GET /metrics` is served; `None`: nowhere.
    pub metrics_addr: Option<SocketAddr>,
    /// The group whose members may use the API socket too (`daemon --group`); `None`: owner only.
    pub socket_group: Option<u32>,
    /// The port the node gossips on, on its data-path address (`daemon --gossip-port`).
    pub gossip_port: u16,
}

/// Background tasks of a node in a swarm.
#[derive(Default)]
struct Tasks {
    listener: Option<JoinHandle<()>>,
    agent: Option<JoinHandle<()>>,
    orchestrator: Option<JoinHandle<()>>,
}

impl Tasks {
    /// Stops the tasks and waits until the cluster listener's socket is closed, so the port
    /// can be bound again at once (never called from the listener task itself).
    async fn stop(&mut self) {
        if let Some(t) = self.agent.take() {
            t.abort();
        }
        if let Some(t) = self.orchestrator.take() {
            t.abort();
        }
        if let Some(t) = self.listener.take() {
            t.abort();
            let _ = t.await;
        }
    }
}

/// One node.
pub struct Daemon {
    store: Arc<Store>,
    manager: Manager,
    hostname: String,
    publish_addr: Option<std::net::Ipv4Addr>,
    identity: RwLock<Option<LocalIdentity>>,
    /// Serialises membership changes (init, join, leave, role change) and owns the tasks.
    tasks: Mutex<Tasks>,
    /// The agent's next attempt to become a Raft voter, after one failed.
    next_raft_join: std::sync::Mutex<Option<std::time::Instant>>,
    state_dir: PathBuf,
    /// The node's tasks and data plane (created by the agent once in a swarm).
    runtime: Arc<std::sync::Mutex<Option<runtime::TaskRuntime>>>,
    resolv_conf: Option<PathBuf>,
    /// The swarm's events as this manager sees them (`GET /events`).
    events: events::EventHub,
    /// The node's gossip (started once in a swarm with keys) and what it learnt.
    gossip: gossip::GossipState,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn internal(err: impl std::fmt::Display) -> ApiError {
    ApiError::internal(err.to_string())
}

fn rpc_error(err: RpcError) -> ApiError {
    match err {
        RpcError::Remote(api) => api,
        other => ApiError::unavailable(other.to_string()),
    }
}

/// Runs the daemon until SIGINT or SIGTERM.
pub async fn run(config: DaemonConfig) -> Result<(), DaemonError> {
    // A bad metrics address stops the daemon before anything else starts.
    let metrics_listener = match config.metrics_addr {
        Some(addr) => Some(metrics::bind(addr).await?),
        None => None,
    };
    let store = Arc::new(Store::open(&config.state_dir)?);
    let identity = store.local_identity()?;
    let daemon = Arc::new(Daemon {
        manager: Manager::new(store.clone()),
        store,
        hostname: config.hostname.clone().unwrap_or_else(hostname),
        publish_addr: config.publish_addr,
        identity: RwLock::new(identity.clone()),
        tasks: Mutex::new(Tasks::default()),
        next_raft_join: std::sync::Mutex::new(None),
        state_dir: config.state_dir.clone(),
        runtime: Arc::new(std::sync::Mutex::new(None)),
        resolv_conf: config.resolv_conf.clone(),
        events: events::EventHub::default(),
        gossip: gossip::GossipState::new(config.gossip_port),
    });
    if let Some(identity) = identity {
        tracing::info!(
            "recovered swarm membership from disk: node {} ({})",
            identity.node_id,
            identity.role
        );
        let mut tasks = daemon.tasks.lock().await;
        daemon
            .start(&mut tasks, &identity, None)
            .await
            .map_err(DaemonError::Listener)?;
    }
    let metrics_server = metrics_listener.map(|l| {
        if let Ok(addr) = l.local_addr() {
            tracing::info!("metrics on http://{addr}/metrics");
        }
        metrics::serve(daemon.clone(), l)
    });
    let watcher = tokio::spawn(daemon.clone().watch_events());
    let server = local_api::serve(daemon.clone(), &config.socket, config.socket_group).await?;
    let result = wait_for_shutdown().await;
    server.abort();
    watcher.abort();
    if let Some(m) = metrics_server {
        m.abort();
    }
    daemon.tasks.lock().await.stop().await;
    daemon.stop_runtime().await;
    let _ = std::fs::remove_file(&config.socket);
    result
}

async fn wait_for_shutdown() -> Result<(), DaemonError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.map_err(DaemonError::Signal),
        _ = term.recv() => Ok(()),
    }
}

impl Daemon {
    fn identity(&self) -> Option<LocalIdentity> {
        self.identity.read().ok().and_then(|g| g.clone())
    }

    fn set_identity(&self, identity: Option<LocalIdentity>) {
        if let Ok(mut g) = self.identity.write() {
            *g = identity;
        }
    }

    /// True when this node is the Raft leader, which serves manager operations.
    fn holds_state(&self) -> bool {
        self.manager.is_leader()
    }

    /// Where manager operations go when this node is not the leader: the leader first.
    /// The managers this node knows of are its list and, on a manager, the members of its
    /// latest Raft configuration (the list may lag behind a change of leader).
    fn leader_first(&self, identity: &LocalIdentity) -> Vec<String> {
        let mut targets = manager_peers(identity);
        let own = advertise_of(identity);
        for addr in self.manager.raft_member_addrs() {
            if addr != own && addr != identity.listen_addr && !targets.contains(&addr) {
                targets.push(addr);
            }
        }
        if let Some(leader) = self.manager.leader_addr() {
            targets.retain(|t| *t != leader);
            if leader != advertise_of(identity) {
                targets.insert(0, leader);
            }
        }
        targets
    }

    /// Starts this manager's Raft node (if not running) on the store's log and state machine.
    async fn start_raft(&self, identity: &LocalIdentity) -> Result<RaftHandle, ApiError> {
        if let Some(handle) = self.manager.raft() {
            return Ok(handle);
        }
        self.events.raft_starts();
        let config = raft_mod::config(&identity.swarm_id).map_err(internal)?;
        let tls = tls::client_config(&identity.ca_cert_pem, Some(&identity.credentials))
            .map_err(internal)?;
        let tls = Arc::new(RwLock::new(tls));
        let acks = crate::control::raft_net::Acks::default();
        let raft = raft_mod::Raft::new(
            raft_id(&identity.node_id),
            config,
            Network {
                tls: tls.clone(),
                acks: acks.clone(),
            },
            LogStore::new(self.store.clone()),
            StateMachine::new(self.store.clone()),
        )
        .await
        .map_err(internal)?;
        let handle = RaftHandle {
            raft,
            node_id: identity.node_id.clone(),
            tls,
            acks,
        };
        self.manager.set_raft(Some(handle.clone()));
        Ok(handle)
    }

    async fn stop_raft(&self) {
        if let Some(handle) = self.manager.set_raft(None) {
            if let Err(err) = handle.raft.shutdown().await {
                tracing::warn!("Raft shutdown: {err}");
            }
        }
    }

    /// Answers one local API request.
    pub async fn handle(self: Arc<Self>, req: Request) -> Response {
        match req {
            Request::Info => Ok(Reply::Info(self.info()?)),
            Request::SwarmInit(r) => self.init(r).await,
            Request::SwarmJoin(r) => self.join(r).await,
            Request::SwarmLeave { force } => self.leave(force).await,
            Request::LocalNetworkList => self.local_networks(),
            Request::LocalEndpoints { network_id } => Ok(Reply::LocalEndpoints(
                self.local_endpoints(&network_id).await,
            )),
            Request::LocalTaskSandbox { key } => self.task_sandbox(&key).map(Reply::Text),
            Request::LocalBalancer => Ok(Reply::Balancer(self.balancer())),
            Request::LocalStats => Ok(Reply::Stats(Box::new(self.stats().await))),
            Request::LocalContainers => Ok(Reply::Containers(self.containers())),
            Request::LocalNetworkCreate(body) => self.create_local_network(&body).await,
            Request::LocalNetworkRemove { key } => self.remove_local_network(&key).await,
            Request::NetworkCreate(_) if self.identity().is_none() => {
                Err(ApiError::unavailable(networks::OVERLAY_OUTSIDE_SWARM))
            }
            other => self.manager_op(other).await,
        }
    }

    fn info(&self) -> Result<LocalInfo, ApiError> {
        let identity = self.identity();
        let keys = self.store.local_keys()?;
        Ok(LocalInfo {
            local_node_state: if identity.is_some() {
                "active"
            } else {
                "inactive"
            }
            .into(),
            node_id: identity.as_ref().map(|i| i.node_id.clone()),
            role: identity.as_ref().map(|i| i.role),
            node_addr: identity.as_ref().map(|i| i.advertise_addr.clone()),
            remote_managers: identity.map(|i| i.managers).unwrap_or_default(),
            encryption_key_tags: keys.iter().map(|k| k.tag).collect(),
            raft_leader: self.manager.leader_addr(),
            raft_voters: self.manager.voter_count(),
            raft_applied: self.manager.raft_progress().0,
            raft_snapshot: self.manager.raft_progress().1,
        })
    }

    /// A manager operation: served here when this node holds the state, else forwarded.
    async fn manager_op(&self, req: Request) -> Response {
        let identity = self.identity().ok_or_else(ApiError::not_in_swarm)?;
        if identity.role != Role::Manager {
            return Err(ApiError::not_a_manager());
        }
        let reply = if self.holds_state() {
            self.manager.handle_api(req).await?
        } else {
            self.forward(&identity, req).await?
        };
        Ok(match reply {
            Reply::Token { token, .. } => Reply::Token {
                token,
                advertise: advertise_of(&identity),
            },
            other => other,
        })
    }

    /// Forwards a manager operation to the leader. A manager waits out an election first, and
    /// once more if the leader it knew turns out to be gone.
    async fn forward(&self, identity: &LocalIdentity, req: Request) -> Response {
        let config = tls::client_config(&identity.ca_cert_pem, Some(&identity.credentials))
            .map_err(internal)?;
        let mut unreachable_leader: Option<u64> = None;
        for attempt in 0..2 {
            if let Some(handle) = self.manager.raft() {
                let stale = unreachable_leader;
                let elected = handle
                    .raft
                    .wait(Some(ELECTION_WAIT))
                    .metrics(
                        move |m| m.current_leader.is_some() && m.current_leader != stale,
                        "a reachable Raft leader",
                    )
                    .await;
                if elected.is_err() {
                    return Err(self.lost_quorum(identity).await);
                }
                if self.holds_state() {
                    return self.manager.handle_api(req).await;
                }
            }
            let targets = self.leader_first(identity);
            match rpc::call_managers(&targets, config.clone(), &ClusterRequest::Api(req.clone()))
                .await
            {
                Ok(ClusterReply::Api(reply)) => return Ok(reply),
                Ok(_) => return Err(internal("unexpected reply from the leader")),
                Err(RpcError::Remote(err)) => return Err(err),
                Err(err) if attempt == 0 && self.manager.raft().is_some() => {
                    tracing::info!("leader unreachable ({err}); waiting for a new one");
                    unreachable_leader = self.manager.leader_raft_id();
                }
                Err(err) => return Err(rpc_error(err)),
            }
        }
        Err(ApiError::unavailable("no manager could serve the request"))
    }
    /// The error for a manager that sees no leader: how many of the voters it knows answer
    /// (itself included), how many are needed, and the two ways out.
    async fn lost_quorum(&self, identity: &LocalIdentity) -> ApiError {
        let Some(handle) = self.manager.raft() else {
            return ApiError::unavailable("this node runs no Raft node");
        };
        let own = raft_id(&identity.node_id);
        let membership = handle.raft.metrics().borrow().membership_config.clone();
        let voters: Vec<(u64, String)> = membership
            .membership()
            .voter_ids()
            .map(|id| {
                let addr = membership
                    .membership()
                    .get_node(&id)
                    .map(|n| n.addr.clone())
                    .unwrap_or_default();
                (id, addr)
            })
            .collect();
        let config = tls::client_config(&identity.ca_cert_pem, Some(&identity.credentials)).ok();
        let mut probes = tokio::task::JoinSet::new();
        for (id, addr) in voters.iter().filter(|(id, _)| *id != own) {
            let (addr, config, _id) = (addr.clone(), config.clone(), *id);
            probes.spawn(async move {
                let Some(config) = config else { return false };
                let req = ClusterRequest::Heartbeat {
                    report: Box::default(),
                };
                let call = rpc::call(&addr, config, &req);
                // Any answer, even a refusal, means the manager is up.
                matches!(
                    tokio::time::timeout(std::time::Duration::from_secs(2), call).await,
                    Ok(Ok(_)) | Ok(Err(RpcError::Remote(_)))
                )
            });
        }
        let mut reachable = usize::from(voters.iter().any(|(id, _)| *id == own));
        while let Some(up) = probes.join_next().await {
            reachable += usize::from(up.unwrap_or(false));
        }
        let total = voters.len();
        ApiError::unavailable(format!(
            "no Raft leader could be elected within {ELECTION_WAIT:?}: {reachable} of {total} managers reachable, {} needed (a majority), so the swarm has lost quorum. Restart the missing managers, or run `swarmnet swarm init --force-new-cluster` on this manager to rebuild a one-manager swarm from its state.",
            crate::control::manager::majority(total)
        ))
    }

    fn update_identity(
        &self,
        f: impl FnOnce(&mut LocalIdentity),
    ) -> Result<LocalIdentity, ApiError> {
        let mut guard = self
            .identity
            .write()
            .map_err(|_| internal("identity lock poisoned"))?;
        let identity = guard.as_mut().ok_or_else(ApiError::not_in_swarm)?;
        f(identity);
        self.store.set_local_identity(identity)?;
        Ok(identity.clone())
    }
}

/// The managers other than this node.
fn manager_peers(identity: &LocalIdentity) -> Vec<String> {
    let own = advertise_of(identity);
    identity
        .managers
        .iter()
        .filter(|m| **m != own && **m != identity.listen_addr)
        .cloned()
        .collect()
}

/// `IP:PORT` other nodes reach this one at.
fn advertise_of(identity: &LocalIdentity) -> String {
    let port = identity
        .listen_addr
        .parse::<SocketAddr>()
        .map(|s| s.port())
        .unwrap_or(addr::DEFAULT_PORT);
    format!("{}:{port}", identity.advertise_addr)
}

fn parse_listen(identity: &LocalIdentity) -> Result<SocketAddr, ApiError> {
    identity.listen_addr.parse().map_err(|_| {
        internal(format!(
            "stored listen address {:?} is invalid",
            identity.listen_addr
        ))
    })
}

fn resolve_addrs(
    advertise: Option<&str>,
    listen: Option<&str>,
    data_path: Option<&str>,
) -> Result<NodeAddrs, ApiError> {
    let ifaces = addr::host_addresses().map_err(|e| ApiError::invalid(e.to_string()))?;
    addr::resolve(advertise, listen, data_path, &ifaces)
        .map_err(|e| ApiError::invalid(e.to_string()))
}

async fn bind_cluster(addr: SocketAddr) -> Result<TcpListener, ApiError> {
    TcpListener::bind(addr).await.map_err(|e| {
        ApiError::new(
            ErrorKind::FailedPrecondition,
            format!("failed to listen on remote API address {addr}: {e}"),
        )
    })
}

/// The local IP this host uses to reach `remote` (no packet is sent: UDP connect only routes).
fn local_ip_towards(remote: &str) -> Result<String, ApiError> {
    use std::net::{ToSocketAddrs, UdpSocket};
    let target = remote
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| ApiError::invalid(format!("invalid manager address {remote:?}")))?;
    let bind: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .map_err(internal)?;
    let socket = UdpSocket::bind(bind).map_err(internal)?;
    socket
        .connect(target)
        .map_err(|e| ApiError::invalid(format!("cannot route to the manager at {remote}: {e}")))?;
    Ok(socket.local_addr().map_err(internal)?.ip().to_string())
}
