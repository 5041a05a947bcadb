//! Cluster-port requests on the leader: admitting nodes with a join token, heartbeats,
//! certificate renewal, leaving, and manager operations forwarded by other managers.

use super::*;

impl Manager {
    /// Cluster-port requests, with the caller's verified certificate identity if any.
    pub async fn handle_cluster(
        &self,
        caller: Option<CertIdentity>,
        req: ClusterRequest,
    ) -> ClusterResponse {
        match req {
            ClusterRequest::GetRootCa => Ok(ClusterReply::RootCa {
                cert_pem: self.swarm_required()?.root_ca.cert_pem,
            }),
            ClusterRequest::Join {
                token,
                csr_pem,
                hostname,
                advertise_addr,
                listen_addr: _,
                data_path_addr,
                availability,
            } => {
                self.admit(
                    &token,
                    &csr_pem,
                    hostname,
                    advertise_addr,
                    data_path_addr,
                    availability,
                )
                .await
            }
            ClusterRequest::Raft(_) => Err(ApiError::internal(
                "Raft messages are served by the daemon, not the manager",
            )),
            ClusterRequest::Capture { .. } | ClusterRequest::CaptureFeed { .. } => Err(
                ApiError::internal("capture requests are served by the daemon, not the manager"),
            ),
            ClusterRequest::Api(req) => {
                let caller = caller.ok_or_else(unauthenticated)?;
                // The certificate says manager; the node table must agree too, so a demoted
                // node's manager certificate (valid until it expires) grants nothing.
                if caller.role != Role::Manager
                    || self.known_node(&caller.node_id)?.role != Role::Manager
                {
                    return Err(ApiError::not_a_manager());
                }
                self.handle_api(req).await.map(ClusterReply::Api)
            }
            ClusterRequest::Heartbeat { report } => {
                let caller = caller.ok_or_else(unauthenticated)?;
                let node = self.known_node(&caller.node_id)?;
                self.touch(&node.id);
                let (running, wait) = (report.running, report.wait);
                let mut changes = self.changes.subscribe();
                let mut captures = self.captures.subscribe();
                self.take_report(&node.id, *report).await?;
                let mut built = self.assignments(&node.id)?;
                // Held until something is committed that changes them, or a capture is asked
                // of this node (or a period passes).
                let until = tokio::time::Instant::now() + super::HEARTBEAT_PERIOD;
                while wait && Some(built.1) == running && !self.captures.has_orders(&node.id) {
                    tokio::select! {
                        changed = tokio::time::timeout_at(until, changes.changed()) => match changed {
                            Ok(Ok(())) => built = self.assignments(&node.id)?,
                            _ => break,
                        },
                        Ok(()) = captures.changed() => {}
                    }
                }
                let assignments = (Some(built.1) != running).then(|| Box::new(built.0.clone()));
                Ok(ClusterReply::Heartbeat {
                    role: node.role,
                    managers: self.manager_addrs()?,
                    keys: self.store.encryption_keys()?,
                    voter: self.is_voter(&node.id),
                    assignments,
                    captures: self.captures.take_orders(&node.id),
                })
            }
            ClusterRequest::RenewCert { csr_pem } => {
                let caller = caller.ok_or_else(unauthenticated)?;
                let node = self.known_node(&caller.node_id)?;
                let swarm = self.swarm_required()?;
                let cert_pem = swarm
                    .root_ca
                    .sign_csr(&csr_pem, &node.id, node.role, &swarm.id)
                    .map_err(|e| ApiError::invalid(e.to_string()))?;
                Ok(ClusterReply::Cert { cert_pem })
            }
            ClusterRequest::RaftJoin => {
                let caller = caller.ok_or_else(unauthenticated)?;
                if caller.role != Role::Manager {
                    return Err(ApiError::not_a_manager());
                }
                self.add_voter(&caller.node_id).await?;
                Ok(ClusterReply::Done)
            }
            ClusterRequest::Withdraw => {
                let caller = caller.ok_or_else(unauthenticated)?;
                let node = self.known_node(&caller.node_id)?;
                self.remove_voter(&node.id, false).await?;
                let _guard = self.serial.lock().await;
                self.write(Command::RemoveNode(node.id.clone())).await?;
                self.forget(&node.id);
                tracing::info!("node {} ({}) withdrew its join", node.id, node.hostname);
                Ok(ClusterReply::Done)
            }
            ClusterRequest::Leave => {
                let caller = caller.ok_or_else(unauthenticated)?;
                // A manager leaves the Raft group first; refused when that loses quorum.
                self.remove_voter(&caller.node_id, false).await?;
                let _guard = self.serial.lock().await;
                let mut node = self.known_node(&caller.node_id)?;
                node.status.state = NodeState::Down;
                node.role = Role::Worker;
                node.manager_status = None;
                node.updated_at = now_rfc3339();
                self.forget(&node.id);
                self.write(Command::PutNode(Box::new(node))).await?;
                Ok(ClusterReply::Done)
            }
        }
    }

    pub(crate) fn known_node(&self, id: &str) -> Result<Node, ApiError> {
        self.store.node(id)?.ok_or_else(|| {
            ApiError::new(
                ErrorKind::NotFound,
                format!("node {id} is not a member of this swarm (it was removed)"),
            )
        })
    }

    pub(super) async fn admit(
        &self,
        token: &str,
        csr_pem: &str,
        hostname: String,
        advertise_addr: String,
        data_path_addr: String,
        availability: Availability,
    ) -> ClusterResponse {
        let _guard = self.serial.lock().await;
        let swarm = self.swarm_required()?;
        let presented = JoinToken::parse(token).map_err(|e| ApiError::invalid(e.to_string()))?;
        let parse = |t: &str| JoinToken::parse(t).map_err(|e| ApiError::internal(e.to_string()));
        let worker = parse(&swarm.worker_token)?;
        let manager = parse(&swarm.manager_token)?;
        // Both comparisons always run, each in constant time.
        let is_worker = presented.ct_eq(&worker);
        let is_manager = presented.ct_eq(&manager);
        let role = match (is_worker, is_manager) {
            (true, _) => Role::Worker,
            (_, true) => Role::Manager,
            _ => {
                return Err(ApiError::invalid(
                    "rpc error: code = InvalidArgument desc = A valid join token is necessary to join this cluster",
                ))
            }
        };
        let advertise: std::net::SocketAddr = advertise_addr.parse().map_err(|_| {
            ApiError::invalid(format!("invalid advertise address {advertise_addr:?}"))
        })?;
        let node_id = new_id();
        let cert_pem = swarm
            .root_ca
            .sign_csr(csr_pem, &node_id, role, &swarm.id)
            .map_err(|e| ApiError::invalid(e.to_string()))?;
        let now = now_rfc3339();
        let node = Node {
            id: node_id.clone(),
            hostname,
            role,
            availability,
            status: NodeStatus {
                state: NodeState::Ready,
                addr: advertise.ip().to_string(),
            },
            manager_status: (role == Role::Manager).then(|| ManagerStatus {
                leader: false,
                reachability: Reachability::Reachable,
                addr: advertise.to_string(),
            }),
            data_path_addr,
            cluster_addr: advertise.to_string(),
            gossip_addr: String::new(),
            created_at: now.clone(),
            updated_at: now,
        };
        self.write(Command::PutNode(Box::new(node.clone()))).await?;
        self.touch(&node_id);
        tracing::info!("node {node_id} ({}) joined as a {role}", node.hostname);
        Ok(ClusterReply::Joined {
            node_id,
            swarm_id: swarm.id.clone(),
            cert_pem,
            managers: self.manager_addrs()?,
        })
    }
}

fn unauthenticated() -> ApiError {
    ApiError::new(
        ErrorKind::PermissionDenied,
        "this operation needs a node certificate of this swarm",
    )
}
