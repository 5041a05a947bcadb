//! `swarmnet daemon`: one node. Serves the local API, and when the node is in a swarm runs its
//! agent (heartbeats, certificate renewal on role change, key delivery) and, on managers, the
//! mutual-TLS cluster listener on 2377 and a Raft node. The agent lives in [`agent`].

mod agent;

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
use super::raft::{self as raft_mod, raft_id, Network};
use super::raft_store::{LogStore, StateMachine};
use super::rpc::{self, ClusterReply, ClusterRequest, ClusterResponse, RpcError};
use super::store::{LocalIdentity, Store, StoreError};
use super::tls;
use super::token::JoinToken;
use crate::api::frame::{read_frame, write_frame};
use crate::api::server::{ApiListener, ServerError};
use crate::api::{
    ApiError, ErrorKind, InitRequest, JoinRequest, LocalInfo, NodeState, Reply, Request, Response,
    Role,
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
}

/// Where the daemon keeps its state and its socket.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub state_dir: PathBuf,
    pub socket: PathBuf,
}

/// Background tasks of a node in a swarm.
#[derive(Default)]
struct Tasks {
    listener: Option<JoinHandle<()>>,
    agent: Option<JoinHandle<()>>,
}

impl Tasks {
    /// Stops the tasks and waits until the cluster listener's socket is closed, so the port
    /// can be bound again at once (never called from the listener task itself).
    async fn stop(&mut self) {
        if let Some(t) = self.agent.take() {
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
    identity: RwLock<Option<LocalIdentity>>,
    /// Serialises membership changes (init, join, leave, role change) and owns the tasks.
    tasks: Mutex<Tasks>,
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
    let store = Arc::new(Store::open(&config.state_dir)?);
    let identity = store.local_identity()?;
    let daemon = Arc::new(Daemon {
        manager: Manager::new(store.clone()),
        store,
        hostname: hostname(),
        identity: RwLock::new(identity.clone()),
        tasks: Mutex::new(Tasks::default()),
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
    let api = ApiListener::bind(&config.socket).await?;
    tracing::info!("API listening on unix://{}", api.path().display());
    let handler_daemon = daemon.clone();
    let server = tokio::spawn(api.serve(move |req| {
        let d = handler_daemon.clone();
        async move { d.handle(req).await }
    }));
    let result = wait_for_shutdown().await;
    server.abort();
    daemon.tasks.lock().await.stop().await;
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
    fn leader_first(&self, identity: &LocalIdentity) -> Vec<String> {
        let mut targets = manager_peers(identity);
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
        let config = raft_mod::config(&identity.swarm_id).map_err(internal)?;
        let tls = tls::client_config(&identity.ca_cert_pem, Some(&identity.credentials))
            .map_err(internal)?;
        let tls = Arc::new(RwLock::new(tls));
        let raft = raft_mod::Raft::new(
            raft_id(&identity.node_id),
            config,
            Network { tls: tls.clone() },
            LogStore::new(self.store.clone()),
            StateMachine::new(self.store.clone()),
        )
        .await
        .map_err(internal)?;
        let handle = RaftHandle {
            raft,
            node_id: identity.node_id.clone(),
            tls,
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
                    let voters = self.manager.voter_count();
                    return Err(ApiError::unavailable(format!(
                        "no Raft leader could be elected within {ELECTION_WAIT:?}: fewer than a majority ({} of {voters}) of the managers are reachable, so the swarm has lost quorum. Restart the missing managers (swarmnet has no --force-new-cluster yet).",
                        voters / 2 + 1
                    )));
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

    async fn init(self: &Arc<Self>, req: InitRequest) -> Response {
        let mut tasks = self.tasks.lock().await;
        if self.identity().is_some() {
            return Err(ApiError::already_in_swarm());
        }
        let addrs = resolve_addrs(
            req.advertise_addr.as_deref(),
            req.listen_addr.as_deref(),
            req.data_path_addr.as_deref(),
        )?;
        let listener = bind_cluster(addrs.listen).await?;
        let boot = self.manager.bootstrap(&self.hostname, &addrs, &req)?;
        let identity = boot.identity;
        let worker_token = boot
            .commands
            .iter()
            .find_map(|c| match c {
                raft_mod::Command::PutSwarm(s) => Some(s.worker_token.clone()),
                _ => None,
            })
            .ok_or_else(|| internal("bootstrap made no swarm record"))?;
        let handle = self.start_raft(&identity).await?;
        let own = raft_id(&identity.node_id);
        let ready = async {
            handle
                .raft
                .initialize(raft_mod::single_member(
                    &identity.node_id,
                    &addrs.advertise(),
                ))
                .await
                .map_err(internal)?;
            handle
                .raft
                .wait(Some(std::time::Duration::from_secs(10)))
                .current_leader(own, "swarm init")
                .await
                .map_err(internal)?;
            for command in boot.commands {
                self.manager.write(command).await?;
            }
            Ok::<(), ApiError>(())
        };
        if let Err(err) = ready.await {
            self.stop_raft().await;
            let _ = self.store.clear();
            return Err(err);
        }
        self.store.set_local_keys(&boot.keys)?;
        self.store.set_local_identity(&identity)?;
        self.set_identity(Some(identity.clone()));
        self.start(&mut tasks, &identity, Some(listener)).await?;
        tracing::info!(
            "swarm initialised; node {} is its manager",
            identity.node_id
        );
        Ok(Reply::Init {
            node_id: identity.node_id,
            worker_token,
            advertise: addrs.advertise(),
        })
    }

    async fn join(self: &Arc<Self>, req: JoinRequest) -> Response {
        let mut tasks = self.tasks.lock().await;
        if self.identity().is_some() {
            return Err(ApiError::already_in_swarm());
        }
        let token = JoinToken::parse(&req.token).map_err(|e| ApiError::invalid(e.to_string()))?;
        let remote = req.remote_addr.clone();
        let remote = if remote.parse::<SocketAddr>().is_ok() || remote.contains(':') {
            remote
        } else {
            format!("{remote}:{}", addr::DEFAULT_PORT)
        };
        let advertise = match (&req.advertise_addr, &req.listen_addr) {
            (None, None) => Some(local_ip_towards(&remote)?),
            (a, _) => a.clone(),
        };
        let addrs = resolve_addrs(
            advertise.as_deref(),
            req.listen_addr.as_deref(),
            req.data_path_addr.as_deref(),
        )?;
        let ca_pem = rpc::fetch_root_ca(&remote, &token)
            .await
            .map_err(rpc_error)?;
        let (key_pem, csr_pem) = new_key_and_csr().map_err(internal)?;
        let config = tls::client_config(&ca_pem, None).map_err(internal)?;
        let request = ClusterRequest::Join {
            token: req.token.trim().to_string(),
            csr_pem,
            hostname: self.hostname.clone(),
            advertise_addr: addrs.advertise(),
            listen_addr: addrs.listen.to_string(),
            data_path_addr: addrs.data_path_ip.to_string(),
            availability: req.availability,
        };
        let reply = rpc::call_managers(std::slice::from_ref(&remote), config, &request)
            .await
            .map_err(rpc_error)?;
        let ClusterReply::Joined {
            node_id,
            swarm_id,
            cert_pem,
            managers,
        } = reply
        else {
            return Err(internal("unexpected reply to join"));
        };
        // The role is whatever the certificate says, not what the reply claims.
        let cert = identity_from_pem(&cert_pem).map_err(internal)?;
        if cert.node_id != node_id {
            return Err(internal(
                "the manager issued a certificate for another node ID",
            ));
        }
        let identity = LocalIdentity {
            node_id,
            swarm_id,
            hostname: self.hostname.clone(),
            role: cert.role,
            credentials: NodeCredentials { cert_pem, key_pem },
            ca_cert_pem: ca_pem,
            advertise_addr: addrs.advertise_ip.to_string(),
            listen_addr: addrs.listen.to_string(),
            data_path_addr: addrs.data_path_ip.to_string(),
            managers: if managers.is_empty() {
                vec![remote]
            } else {
                managers
            },
        };
        // A manager must be able to serve on its listen address. If it cannot, the join is
        // undone, so the swarm does not count a manager that will never answer.
        let bound = if cert.role == Role::Manager {
            match bind_cluster(addrs.listen).await {
                Ok(listener) => Some(listener),
                Err(err) => {
                    let config =
                        tls::client_config(&identity.ca_cert_pem, Some(&identity.credentials))
                            .map_err(internal)?;
                    let targets = self.leader_first(&identity);
                    let mut undone = Err(RpcError::Remote(internal("not tried")));
                    for wait in [0, 500, 2000] {
                        tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                        undone =
                            rpc::call_managers(&targets, config.clone(), &ClusterRequest::Leave)
                                .await;
                        if undone.is_ok() {
                            break;
                        }
                    }
                    return Err(match undone {
                        Ok(_) => err,
                        Err(e) => ApiError::new(
                            err.kind,
                            format!(
                                "{}; the swarm already lists this node ({}) as a manager and it could not withdraw ({e}): on a manager, run `swarmnet node demote {id}` and `swarmnet node rm --force {id}`",
                                err.message, identity.node_id, id = identity.node_id
                            ),
                        ),
                    });
                }
            }
        } else {
            None
        };
        self.store.set_local_identity(&identity)?;
        self.set_identity(Some(identity.clone()));
        self.start(&mut tasks, &identity, bound).await?;
        Ok(Reply::Joined { role: cert.role })
    }

    async fn leave(self: &Arc<Self>, force: bool) -> Response {
        let mut tasks = self.tasks.lock().await;
        let identity = self.identity().ok_or_else(ApiError::not_in_swarm)?;
        if identity.role == Role::Manager && !force {
            self.check_quorum_for_leave().await?;
        }
        if self.holds_state() {
            self.leave_as_leader(&identity).await;
        } else {
            let config = tls::client_config(&identity.ca_cert_pem, Some(&identity.credentials))
                .map_err(internal)?;
            let targets = self.leader_first(&identity);
            if let Err(err) = rpc::call_managers(&targets, config, &ClusterRequest::Leave).await {
                tracing::warn!("could not tell the managers that this node leaves: {err}");
            }
        }
        tasks.stop().await;
        self.stop_raft().await;
        self.store.clear()?;
        self.set_identity(None);
        Ok(Reply::Done)
    }

    async fn check_quorum_for_leave(&self) -> Result<(), ApiError> {
        let prefix =
            "You are attempting to leave the swarm on a node that is participating as a manager. ";
        let nodes = match self.manager_op(Request::NodeList).await {
            Ok(Reply::Nodes(nodes)) => nodes,
            _ => {
                return Err(ApiError::unavailable(format!(
                    "{prefix}Doing so may lose the consensus of your cluster. The only way to restore a swarm that has lost consensus is to reinitialize it with `--force-new-cluster`. Use `--force` to suppress this message."
                )))
            }
        };
        let managers: Vec<_> = nodes.iter().filter(|n| n.role == Role::Manager).collect();
        let reachable = managers
            .iter()
            .filter(|n| n.status.state == NodeState::Ready)
            .count();
        let unreachable = managers.len() - reachable;
        if reachable == 1 && unreachable == 0 {
            return Err(ApiError::unavailable(format!(
                "{prefix}Removing the last manager erases all current state of the swarm. Use `--force` to ignore this message."
            )));
        }
        if reachable.saturating_sub(2) <= unreachable {
            return Err(ApiError::unavailable(format!(
                "{prefix}Removing this node leaves {} managers out of {}. Without a Raft quorum your swarm will be inaccessible. The only way to restore a swarm that has lost consensus is to reinitialize it with `--force-new-cluster`. Use `--force` to suppress this message.",
                reachable - 1,
                reachable + unreachable
            )));
        }
        Ok(())
    }

    /// The leader leaving: marks itself gone and hands the Raft group to the other managers.
    async fn leave_as_leader(&self, identity: &LocalIdentity) {
        let result = async {
            let nodes = self.manager.nodes()?;
            let others = nodes
                .iter()
                .filter(|n| n.role == Role::Manager && n.id != identity.node_id)
                .count();
            if others == 0 {
                return Ok(());
            }
            let mut me = nodes
                .into_iter()
                .find(|n| n.id == identity.node_id)
                .ok_or_else(|| internal("own node record missing"))?;
            me.role = Role::Worker;
            me.manager_status = None;
            me.status.state = NodeState::Down;
            self.manager
                .write(raft_mod::Command::PutNode(Box::new(me)))
                .await?;
            self.manager.reconcile_membership().await
        }
        .await;
        if let Err(err) = result {
            tracing::warn!("could not hand over the Raft group before leaving: {err}");
        }
    }

    /// Starts the agent, and the cluster listener when the node is a manager.
    async fn start(
        self: &Arc<Self>,
        tasks: &mut Tasks,
        identity: &LocalIdentity,
        bound: Option<TcpListener>,
    ) -> Result<(), ApiError> {
        tasks.stop().await;
        if identity.role == Role::Manager {
            let handle = self.start_raft(identity).await?;
            // Raft connections use the current certificate (it changes on renewal).
            let tls = tls::client_config(&identity.ca_cert_pem, Some(&identity.credentials))
                .map_err(internal)?;
            let mut current = handle.tls.write().unwrap_or_else(|e| e.into_inner());
            *current = tls;
        } else {
            self.stop_raft().await;
        }
        if identity.role == Role::Manager {
            let listener = match bound {
                Some(l) => l,
                None => bind_cluster(parse_listen(identity)?).await?,
            };
            let config = tls::server_config(&identity.credentials, &identity.ca_cert_pem)
                .map_err(internal)?;
            let daemon = self.clone();
            tasks.listener = Some(tokio::spawn(
                daemon.serve_cluster(listener, TlsAcceptor::from(config)),
            ));
        }
        tasks.agent = Some(tokio::spawn(self.clone().agent_task()));
        Ok(())
    }

    async fn serve_cluster(self: Arc<Self>, listener: TcpListener, acceptor: TlsAcceptor) {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(conn) => conn,
                Err(err) => {
                    tracing::warn!("cluster listener accept failed: {err}");
                    continue;
                }
            };
            let daemon = self.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Err(err) = daemon.serve_cluster_conn(tcp, acceptor).await {
                    tracing::debug!("cluster connection from {peer}: {err}");
                }
            });
        }
    }

    async fn serve_cluster_conn(
        self: Arc<Self>,
        tcp: TcpStream,
        acceptor: TlsAcceptor,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let exchange = async {
            let mut stream = acceptor.accept(tcp).await?;
            let caller = tls::peer_identity(stream.get_ref().1.peer_certificates());
            let request: ClusterRequest = read_frame(&mut stream).await?;
            let response = self.handle_cluster(caller, request).await;
            write_frame(&mut stream, &response).await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        };
        tokio::time::timeout(rpc::CALL_TIMEOUT, exchange).await?
    }

    async fn handle_cluster(
        &self,
        caller: Option<super::ca::CertIdentity>,
        request: ClusterRequest,
    ) -> ClusterResponse {
        let identity = self
            .identity()
            .ok_or_else(|| ApiError::unavailable("this node has left the swarm"))?;
        if let ClusterRequest::Raft(message) = request {
            if caller.map(|c| c.role) != Some(Role::Manager) {
                return Err(ApiError::not_a_manager());
            }
            let handle = self
                .manager
                .raft()
                .ok_or_else(|| ApiError::unavailable("this node runs no Raft node"))?;
            return Ok(ClusterReply::Raft(
                raft_mod::serve(&handle.raft, message).await,
            ));
        }
        if self.holds_state() {
            return self.manager.handle_cluster(caller, request).await;
        }
        match request {
            ClusterRequest::GetRootCa => Ok(ClusterReply::RootCa {
                cert_pem: identity.ca_cert_pem,
            }),
            _ => match self.manager.leader_addr() {
                Some(leader) if leader != advertise_of(&identity) => {
                    Ok(ClusterReply::Redirect { leader })
                }
                _ => Err(ApiError::unavailable(
                    "no Raft leader is known to this manager yet; try again shortly",
                )),
            },
        }
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
