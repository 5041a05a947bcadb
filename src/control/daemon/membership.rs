//! This node entering and leaving the swarm: `swarm init`, `swarm join`, `swarm leave`.

use super::*;
use crate::control::network::ensure_gwbridge;

impl Daemon {
    pub(super) async fn init(self: &Arc<Self>, req: InitRequest) -> Response {
        let mut tasks = self.tasks.lock().await;
        if let Some(identity) = self.identity() {
            if req.force_new_cluster {
                return self.force_new_cluster(&mut tasks, identity).await;
            }
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
        ensure_gwbridge(&self.store)?;
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

    pub(super) async fn join(self: &Arc<Self>, req: JoinRequest) -> Response {
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
        // A manager must be able to serve on its listen address, and the join is complete
        // only once it is a Raft voter. If either fails, the join is undone, so the swarm does
        // not count a manager that will never answer.
        let bound = if cert.role == Role::Manager {
            match bind_cluster(addrs.listen).await {
                Ok(listener) => Some(listener),
                Err(err) => return Err(self.undo_join(&identity, err).await),
            }
        } else {
            None
        };
        ensure_gwbridge(&self.store)?;
        self.store.set_local_identity(&identity)?;
        self.set_identity(Some(identity.clone()));
        let started = self.start(&mut tasks, &identity, bound).await;
        let voter = match started {
            Ok(()) if cert.role == Role::Manager => self.raft_join(&identity).await,
            other => other,
        };
        if let Err(err) = voter {
            tasks.stop().await;
            self.stop_raft().await;
            self.set_identity(None);
            let _ = self.store.clear();
            let err = ApiError::new(
                err.kind,
                format!("this node could not become a Raft voter: {}", err.message),
            );
            return Err(self.undo_join(&identity, err).await);
        }
        Ok(Reply::Joined { role: cert.role })
    }

    /// `swarm init --force-new-cluster` on a manager: its Raft node restarts as the only voter
    /// of the swarm, on the state it holds (nodes, CA, keys, tokens). The other managers stay
    /// in the node table, down and unreachable, to be demoted and removed; new managers join
    /// as usual. The old managers must not come back with their old state (they would find
    /// each other): wipe their state dirs and join them again.
    async fn force_new_cluster(
        self: &Arc<Self>,
        tasks: &mut Tasks,
        identity: LocalIdentity,
    ) -> Response {
        if identity.role != Role::Manager {
            return Err(ApiError::precondition(
                "--force-new-cluster rebuilds a swarm from a manager's state, and this node is a worker",
            ));
        }
        let own = raft_id(&identity.node_id);
        let addr = advertise_of(&identity);
        tasks.stop().await;
        self.stop_raft().await;
        crate::control::raft_store::force_single_member(&self.store, own, &addr)
            .map_err(internal)?;
        let identity = self.update_identity(|i| i.managers = vec![addr.clone()])?;
        self.start(tasks, &identity, None).await?;
        let handle = self
            .manager
            .raft()
            .ok_or_else(|| internal("the Raft node did not start"))?;
        handle
            .raft
            .wait(Some(ELECTION_WAIT))
            .metrics(
                |m| {
                    m.current_leader == Some(own)
                        && m.last_applied.map(|l| l.index) == m.last_log_index
                },
                "this manager leading its new cluster",
            )
            .await
            .map_err(internal)?;
        let swarm = self
            .manager
            .swarm()?
            .ok_or_else(|| internal("no swarm record"))?;
        tracing::warn!(
            "forced a new cluster: node {} is the only manager of swarm {}",
            identity.node_id,
            swarm.id
        );
        Ok(Reply::Init {
            node_id: identity.node_id,
            worker_token: swarm.worker_token,
            advertise: addr,
        })
    }

    /// Asks the leader to make this manager a Raft voter; returns once the change is committed.
    pub(super) async fn raft_join(&self, identity: &LocalIdentity) -> Result<(), ApiError> {
        let config = tls::client_config(&identity.ca_cert_pem, Some(&identity.credentials))
            .map_err(internal)?;
        let targets = self.leader_first(identity);
        match rpc::call_managers(&targets, config, &ClusterRequest::RaftJoin).await {
            Ok(ClusterReply::Done) => Ok(()),
            Ok(_) => Err(internal("unexpected reply to a Raft join")),
            Err(err) => Err(rpc_error(err)),
        }
    }

    /// Withdraws a join the swarm already recorded (retrying a little), and returns `err`,
    /// extended with the remedy if the withdrawal did not get through.
    async fn undo_join(&self, identity: &LocalIdentity, err: ApiError) -> ApiError {
        let config = match tls::client_config(&identity.ca_cert_pem, Some(&identity.credentials)) {
            Ok(config) => config,
            Err(e) => return internal(e),
        };
        let targets = manager_peers(identity);
        let mut undone = Err(RpcError::Remote(internal("not tried")));
        for wait in [0, 500, 2000] {
            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
            undone = rpc::call_managers(&targets, config.clone(), &ClusterRequest::Withdraw).await;
            if undone.is_ok() {
                break;
            }
        }
        match undone {
            Ok(_) => ApiError::new(
                err.kind,
                format!("{}; the join was undone", err.message),
            ),
            Err(e) => ApiError::new(
                err.kind,
                format!(
                    "{}; the swarm already lists this node ({}) as a {} and it could not withdraw ({e}): on a manager, run `swarmnet node demote {id}` and `swarmnet node rm --force {id}`",
                    err.message, identity.node_id, identity.role, id = identity.node_id
                ),
            ),
        }
    }

    pub(super) async fn leave(self: &Arc<Self>, force: bool) -> Response {
        let mut tasks = self.tasks.lock().await;
        let identity = self.identity().ok_or_else(ApiError::not_in_swarm)?;
        if identity.role == Role::Manager && !force {
            self.check_quorum_for_leave().await?;
        }
        // A manager leaves the Raft voters first; unless forced, it stays when that fails.
        let told = if self.holds_state() {
            self.leave_as_leader(&identity, force).await
        } else {
            let config = tls::client_config(&identity.ca_cert_pem, Some(&identity.credentials))
                .map_err(internal)?;
            let targets = self.leader_first(&identity);
            rpc::call_managers(&targets, config, &ClusterRequest::Leave)
                .await
                .map(|_| ())
                .map_err(rpc_error)
        };
        if let Err(err) = told {
            if identity.role == Role::Manager && !force {
                return Err(ApiError::new(
                    err.kind,
                    format!(
                        "this manager could not leave the Raft group, so it stays in the swarm: {}. Use `--force` to leave anyway.",
                        err.message
                    ),
                ));
            }
            tracing::warn!("could not tell the managers that this node leaves: {err}");
        }
        tasks.stop().await;
        self.stop_raft().await;
        self.stop_runtime().await;
        self.store.clear()?;
        self.set_identity(None);
        Ok(Reply::Done)
    }

    pub(super) async fn check_quorum_for_leave(&self) -> Result<(), ApiError> {
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
            .filter(|n| {
                n.manager_status
                    .as_ref()
                    .is_some_and(|m| m.reachability == Reachability::Reachable)
            })
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

    /// The leader leaving: marks itself gone and leaves the Raft voters, which hands the
    /// group to the other managers (refused, unless forced, when that would lose quorum).
    pub(super) async fn leave_as_leader(
        &self,
        identity: &LocalIdentity,
        force: bool,
    ) -> Result<(), ApiError> {
        let nodes = self.manager.nodes()?;
        let others = nodes
            .iter()
            .filter(|n| n.role == Role::Manager && n.id != identity.node_id)
            .count();
        if others == 0 {
            return Ok(());
        }
        if !force {
            self.manager.check_removal(&identity.node_id)?;
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
        // Once it has left the voters this node can no longer write: the record goes first.
        self.manager.remove_voter(&identity.node_id, true).await
    }
}
