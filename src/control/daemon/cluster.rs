//! The node's services in a swarm: the agent, and on managers the Raft node and the
//! mutual-TLS cluster listener on 2377 with its per-connection handling.

use super::*;

/// Connections to 2377 not (yet) authenticated by a certificate of this swarm, at most: the
/// rest wait in the kernel's accept queue.
pub const PREAUTH_SLOTS: usize = 64;
/// Pause after a failed accept (descriptor exhaustion) before trying again.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(200);

impl Daemon {
    /// Starts the agent, and the cluster listener and Raft node when the node is a manager.
    /// The agent runs whatever else fails, so the node keeps following the swarm (a manager
    /// that cannot listen runs no Raft node and is not made a voter; a demotion still reaches
    /// it).
    pub(super) async fn start(
        self: &Arc<Self>,
        tasks: &mut Tasks,
        identity: &LocalIdentity,
        bound: Option<TcpListener>,
    ) -> Result<(), ApiError> {
        tasks.stop().await;
        let services = self.start_manager_services(tasks, identity, bound).await;
        if services.is_err() {
            self.stop_raft().await;
        }
        tasks.agent = Some(tokio::spawn(self.clone().agent_task()));
        tasks.orchestrator = Some(tokio::spawn(self.clone().orchestrator()));
        services
    }

    async fn start_manager_services(
        self: &Arc<Self>,
        tasks: &mut Tasks,
        identity: &LocalIdentity,
        bound: Option<TcpListener>,
    ) -> Result<(), ApiError> {
        if identity.role != Role::Manager {
            self.stop_raft().await;
            return Ok(());
        }
        let listener = match bound {
            Some(l) => l,
            None => bind_cluster(parse_listen(identity)?).await?,
        };
        let handle = self.start_raft(identity).await?;
        // Raft connections use the current certificate (it changes on renewal).
        let tls = tls::client_config(&identity.ca_cert_pem, Some(&identity.credentials))
            .map_err(internal)?;
        *handle.tls.write().unwrap_or_else(|e| e.into_inner()) = tls;
        let config =
            tls::server_config(&identity.credentials, &identity.ca_cert_pem).map_err(internal)?;
        let daemon = self.clone();
        tasks.listener = Some(tokio::spawn(
            daemon.serve_cluster(listener, TlsAcceptor::from(config)),
        ));
        Ok(())
    }

    /// Accepts cluster connections. A slot of [`PREAUTH_SLOTS`] is taken before each accept
    /// and held until the peer has shown a certificate of this swarm, or the connection ends:
    /// callers without one (joining nodes, or anyone) are bounded in number, in frame size and
    /// in time, so they cannot exhaust the manager's memory.
    pub(super) async fn serve_cluster(
        self: Arc<Self>,
        listener: TcpListener,
        acceptor: TlsAcceptor,
    ) {
        let slots = Arc::new(tokio::sync::Semaphore::new(PREAUTH_SLOTS));
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let (tcp, peer) = match listener.accept().await {
                Ok(conn) => conn,
                Err(err) => {
                    // Out of descriptors, typically: wait instead of spinning on the error.
                    tracing::warn!("cluster listener accept failed: {err}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let daemon = self.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Err(err) = daemon.serve_cluster_conn(tcp, acceptor, slot).await {
                    tracing::debug!("cluster connection from {peer}: {err}");
                }
            });
        }
    }

    async fn serve_cluster_conn(
        self: Arc<Self>,
        tcp: TcpStream,
        acceptor: TlsAcceptor,
        slot: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let mut slot = Some(slot);
        // Handshake and request within one bound: a peer that stalls is dropped.
        let received = async {
            let mut stream = acceptor.accept(tcp).await?;
            let caller = tls::peer_identity(stream.get_ref().1.peer_certificates());
            let limit = if caller.is_some() {
                // A member of this swarm: its connections are not counted any longer.
                slot.take();
                rpc::MAX_FRAME
            } else {
                rpc::PREAUTH_MAX_FRAME
            };
            let request: ClusterRequest = rpc::read_frame_bounded(&mut stream, limit).await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((stream, caller, request))
        };
        let (mut stream, caller, request) =
            tokio::time::timeout(rpc::CALL_TIMEOUT, received).await??;
        if matches!(
            request,
            ClusterRequest::Capture { .. } | ClusterRequest::CaptureFeed { .. }
        ) {
            // The connection carries a capture's stream after the answer.
            drop(slot);
            return self.serve_capture_conn(caller, request, stream).await;
        }
        let timeout = request.timeout();
        let response =
            match tokio::time::timeout(timeout, self.handle_cluster(caller, request)).await {
                Ok(response) => response,
                Err(_) => Err(ApiError::unavailable(format!(
                    "the request was not done within {timeout:?}"
                ))),
            };
        tokio::time::timeout(rpc::CALL_TIMEOUT, write_frame(&mut stream, &response)).await??;
        drop(slot);
        Ok(())
    }

    pub(super) async fn handle_cluster(
        &self,
        caller: Option<crate::control::ca::CertIdentity>,
        request: ClusterRequest,
    ) -> ClusterResponse {
        let identity = self
            .identity()
            .ok_or_else(|| ApiError::unavailable("this node has left the swarm"))?;
        if let ClusterRequest::Raft(message) = request {
            let Some(caller) = caller.filter(|c| c.role == Role::Manager) else {
                return Err(ApiError::not_a_manager());
            };
            // A manager removed from the group (or from before --force-new-cluster) must not
            // disturb it by campaigning. Entries from a leader are judged by Raft (its term).
            if matches!(message, raft_mod::RaftMessage::Vote(_))
                && !self.manager.raft_member_or_new(raft_id(&caller.node_id))
            {
                return Err(ApiError::precondition(format!(
                    "node {} is not a member of this manager's Raft group",
                    caller.node_id
                )));
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
}
