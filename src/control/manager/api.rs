//! Manager operations of the local API, served on the leader: swarm inspect, join tokens,
//! node list/inspect/update/remove, promotion and demotion.

use super::*;

impl Manager {
    pub(crate) fn find_node(&self, query: &str) -> Result<Node, ApiError> {
        let nodes = self.nodes()?;
        if let Some(n) = nodes.iter().find(|n| n.id == query) {
            return Ok(n.clone());
        }
        let by_name: Vec<&Node> = nodes.iter().filter(|n| n.hostname == query).collect();
        if by_name.len() == 1 {
            return Ok(by_name[0].clone());
        }
        let by_prefix: Vec<&Node> = nodes.iter().filter(|n| n.id.starts_with(query)).collect();
        match (by_name.len(), by_prefix.as_slice()) {
            (0, [one]) => Ok((*one).clone()),
            (0, []) => Err(ApiError::not_found(format!("node {query} not found"))),
            (n, many) => Err(ApiError::invalid(format!(
                "node {query} is ambiguous ({} matches found)",
                n.max(many.len())
            ))),
        }
    }

    pub(super) fn swarm_view(&self, swarm: &SwarmRecord) -> Result<Swarm, ApiError> {
        let ca_der = swarm
            .root_ca
            .cert_der()
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(Swarm {
            id: swarm.id.clone(),
            created_at: swarm.created_at.clone(),
            updated_at: swarm.updated_at.clone(),
            data_path_port: swarm.data_path_port,
            default_addr_pool: swarm.default_addr_pool.clone(),
            subnet_size: swarm.subnet_size,
            key_rotation_interval_secs: swarm.key_rotation_interval_secs,
            root_ca_digest: ca_digest_text(&ca_der),
            join_tokens: JoinTokens {
                worker: swarm.worker_token.clone(),
                manager: swarm.manager_token.clone(),
            },
        })
    }

    /// Manager operations of the local API (on the manager that holds the state).
    pub async fn handle_api(&self, req: Request) -> Response {
        if let Request::NodeSetRole {
            id,
            role,
            availability,
            version,
        } = req
        {
            return self.set_role(&id, role, availability, version).await;
        }
        if let Request::TaskLogs { task_ids } = &req {
            let book = self.logs.lock().unwrap_or_else(|e| e.into_inner());
            return Ok(Reply::Logs(book.lines(task_ids).cloned().collect()));
        }
        let _guard = self.serial.lock().await;
        let mut swarm = self.swarm_required()?;
        match req {
            Request::SwarmInspect => Ok(Reply::Swarm(self.swarm_view(&swarm)?)),
            Request::SwarmCa => Ok(Reply::Text(swarm.root_ca.cert_pem.clone())),
            Request::JoinToken { role, rotate } => {
                if rotate {
                    let ca_der = swarm
                        .root_ca
                        .cert_der()
                        .map_err(|e| ApiError::internal(e.to_string()))?;
                    let fresh = JoinToken::generate(&ca_der).to_string();
                    match role {
                        Role::Worker => swarm.worker_token = fresh,
                        Role::Manager => swarm.manager_token = fresh,
                    }
                    swarm.updated_at = now_rfc3339();
                    self.write(Command::PutSwarm(Box::new(swarm.clone())))
                        .await?;
                }
                let token = match role {
                    Role::Worker => swarm.worker_token,
                    Role::Manager => swarm.manager_token,
                };
                Ok(Reply::Token {
                    token,
                    advertise: String::new(),
                })
            }
            Request::NodeList => Ok(Reply::Nodes(self.nodes()?)),
            Request::NodeInspect { id } => Ok(Reply::Node(self.find_node(&id)?)),
            Request::NodeUpdate {
                id,
                availability,
                version,
            } => {
                let mut node = self.find_node(&id)?;
                check_version(&node, version)?;
                node.availability = availability;
                node.updated_at = now_rfc3339();
                self.write(Command::PutNode(Box::new(node))).await?;
                Ok(Reply::Done)
            }
            Request::NodeRemove { id, force } => {
                let node = self.find_node(&id)?;
                if node.role == Role::Manager {
                    return Err(ApiError::precondition(format!(
                        "rpc error: code = FailedPrecondition desc = node {} is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal",
                        node.id
                    )));
                }
                if node.status.state != NodeState::Down && !force {
                    return Err(ApiError::precondition(format!(
                        "rpc error: code = FailedPrecondition desc = node {} is not down and can't be removed",
                        node.id
                    )));
                }
                self.write(Command::RemoveNode(node.id.clone())).await?;
                self.forget(&node.id);
                Ok(Reply::Done)
            }
            Request::NetworkCreate(body) => Ok(Reply::NetworkCreated(
                self.create_network(&swarm, &body).await?,
            )),
            Request::NetworkList => Ok(Reply::Networks(self.networks()?)),
            Request::NetworkRemove { key } => Ok(Reply::Network(self.remove_network(&key).await?)),
            Request::ServiceCreate(spec) => {
                Ok(Reply::ServiceCreated(self.create_service(*spec).await?))
            }
            Request::ServiceList => Ok(Reply::Services(self.services()?)),
            Request::ServiceInspect { key } => Ok(Reply::Service(Box::new(
                services::find(&self.services()?, &key)?.clone(),
            ))),
            Request::ServiceUpdate {
                key,
                version,
                spec,
                rollback,
            } => {
                self.update_service(&key, version, *spec, rollback).await?;
                Ok(Reply::Done)
            }
            Request::ServiceRemove { key } => {
                Ok(Reply::Service(Box::new(self.remove_service(&key).await?)))
            }
            Request::TaskList => Ok(Reply::Tasks(self.store.tasks()?)),
            Request::Info
            | Request::TaskLogs { .. }
            | Request::NodeSetRole { .. }
            | Request::SwarmInit(_)
            | Request::SwarmJoin(_)
            | Request::SwarmLeave { .. }
            | Request::LocalNetworkList
            | Request::LocalEndpoints { .. }
            | Request::LocalTaskSandbox { .. }
            | Request::LocalBalancer
            | Request::LocalStats
            | Request::LocalContainers
            | Request::LocalNetworkCreate(_)
            | Request::LocalNetworkRemove { .. } => {
                Err(ApiError::internal("not a manager operation"))
            }
        }
    }

    /// Promotion returns once the node is a Raft voter (it asks to be added when it has
    /// restarted as a manager), or fails and leaves it a worker. Demotion removes the voter
    /// first, refusing when that would lose quorum. With `version`, the node's version is
    /// checked after those refusals, as dockerd does: a demotion that would lose quorum says
    /// so even when it was asked from a stale read. With `availability`, that changes in the
    /// same write as the role, so a refused change changes nothing.
    pub(super) async fn set_role(
        &self,
        query: &str,
        role: Role,
        availability: Option<Availability>,
        version: Option<u64>,
    ) -> Response {
        let guard = self.serial.lock().await;
        let mut node = self.find_node(query)?;
        if node.role == role {
            check_version(&node, version)?;
            if let Some(a) = availability.filter(|a| *a != node.availability) {
                node.availability = a;
                node.updated_at = now_rfc3339();
                self.write(Command::PutNode(Box::new(node))).await?;
                return Ok(Reply::Done);
            }
            return Ok(Reply::Text(match role {
                Role::Manager => format!("Node {query} is already a manager."),
                Role::Worker => format!("Node {query} is already a worker."),
            }));
        }
        let before = node.clone();
        node.role = role;
        if let Some(a) = availability {
            node.availability = a;
        }
        node.updated_at = now_rfc3339();
        match role {
            Role::Manager => {
                if node.status.state != NodeState::Ready {
                    return Err(ApiError::precondition(format!(
                        "node {} is {}: it can become a manager only while it is up",
                        node.id,
                        match node.status.state {
                            NodeState::Down => "down",
                            _ => "not reporting yet",
                        }
                    )));
                }
                check_version(&before, version)?;
                node.manager_status = Some(ManagerStatus {
                    leader: false,
                    reachability: Reachability::Unreachable,
                    addr: node_cluster_addr(&node),
                });
                self.write(Command::PutNode(Box::new(node.clone()))).await?;
                drop(guard);
                self.await_voter(&before).await?;
            }
            Role::Worker => {
                let managers = self
                    .nodes()?
                    .iter()
                    .filter(|n| n.role == Role::Manager)
                    .count();
                if managers <= 1 {
                    return Err(ApiError::precondition(
                        "rpc error: code = FailedPrecondition desc = attempting to demote the last manager of the swarm",
                    ));
                }
                self.check_removal(&node.id)?;
                check_version(&before, version)?;
                node.manager_status = None;
                let own = self.raft().map(|h| h.node_id);
                if own.as_deref() == Some(node.id.as_str()) {
                    // The leader demoting itself: it cannot write once it has left the voters.
                    self.write(Command::PutNode(Box::new(node.clone()))).await?;
                    self.remove_voter(&node.id, true).await?;
                } else {
                    self.remove_voter(&node.id, false).await?;
                    self.write(Command::PutNode(Box::new(node))).await?;
                }
            }
        }
        Ok(Reply::Done)
    }

    /// Waits for a promoted node to become a voter; if it does not in time, it is made a worker
    /// again (and its learner slot, if any, removed), so nothing is left half promoted.
    async fn await_voter(&self, before: &Node) -> Result<(), ApiError> {
        let deadline = tokio::time::Instant::now() + PROMOTE_WAIT;
        while tokio::time::Instant::now() < deadline {
            if self.is_voter(&before.id) {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let _guard = self.serial.lock().await;
        if self.is_voter(&before.id) {
            return Ok(());
        }
        // As it was, under a new version: a client's read from before the promotion is stale.
        let mut restored = before.clone();
        restored.updated_at = now_rfc3339();
        self.write(Command::PutNode(Box::new(restored))).await?;
        self.remove_voter(&before.id, true).await?;
        Err(ApiError::unavailable(format!(
            "node {} did not join the Raft group within {PROMOTE_WAIT:?} (is its daemon running, and can the managers reach it at {}?); it stays a worker",
            before.id,
            node_cluster_addr(before)
        )))
    }
}

/// Refuses an update made from a read of `node` at another version (swarmkit's optimistic
/// concurrency: the version a client read must still be the node's).
fn check_version(node: &Node, version: Option<u64>) -> Result<(), ApiError> {
    match version {
        Some(v)
            if v != crate::api::docker::ObjectVersion::from_updated_at(&node.updated_at).index =>
        {
            Err(super::services::out_of_sequence())
        }
        _ => Ok(()),
    }
}

/// How long a promotion waits for the node to become a Raft voter: a heartbeat or two for it to
/// learn its new role, a certificate renewal, and the configuration change.
pub const PROMOTE_WAIT: std::time::Duration = std::time::Duration::from_secs(40);
