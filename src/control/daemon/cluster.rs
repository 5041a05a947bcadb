//! The node's services in a swarm: the agent, and on managers the Raft node and the
//! mutual-TLS cluster listener on 2377 with its per-connection handling.

use super::*;

impl Daemon {
    /// Starts the agent, and the cluster listener when the node is a manager.
    pub(super) async fn start(
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

    pub(super) async fn serve_cluster(
        self: Arc<Self>,
        listener: TcpListener,
        acceptor: TlsAcceptor,
    ) {
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

    pub(super) async fn handle_cluster(
        &self,
        caller: Option<crate::control::ca::CertIdentity>,
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
}
