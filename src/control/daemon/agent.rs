//! The node agent: every heartbeat period it keeps this node in step with the swarm. On the
//! leader it reconciles the Raft voters, rotates the network encryption keys and refreshes the
//! manager list; elsewhere it sends a heartbeat and takes the role, managers and keys from the
//! answer. It renews this node's certificate on a role change and when half its lifetime is
//! gone (the leader signs its own with the replicated CA).

use std::sync::Arc;

use time::OffsetDateTime;

use super::{internal, rpc_error, Daemon};
use crate::api::{ApiError, ErrorKind, Role};
use crate::control::ca::{identity_from_pem, new_key_and_csr, NodeCredentials, NODE_CERT_VALIDITY};
use crate::control::manager::HEARTBEAT_PERIOD;
use crate::control::rpc::{self, ClusterReply, ClusterRequest, RpcError};
use crate::control::store::LocalIdentity;
use crate::control::tls;

/// Pause before a manager that could not become a Raft voter asks again.
const RAFT_JOIN_RETRY: std::time::Duration = std::time::Duration::from_secs(10);

/// True when a certificate valid until `not_after` (Unix seconds) has less than half of a node
/// certificate's lifetime left at `now`.
pub fn needs_renewal(not_after: i64, now: i64) -> bool {
    not_after - now < NODE_CERT_VALIDITY.whole_seconds() / 2
}

fn cert_needs_renewal(identity: &LocalIdentity) -> bool {
    match identity_from_pem(&identity.credentials.cert_pem) {
        Ok(cert) => needs_renewal(cert.not_after, OffsetDateTime::now_utc().unix_timestamp()),
        Err(_) => true,
    }
}

/// How often a failure that goes on is logged again.
const REPEAT_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// The agent's failure in progress, for its log lines.
#[derive(Default)]
struct Failing {
    message: Option<String>,
    since_log: u64,
    logged_at: Option<tokio::time::Instant>,
}

impl Failing {
    /// A failure at `now`: the line to log, if one is due.
    fn failed(&mut self, message: String, now: tokio::time::Instant) -> Option<String> {
        let same = self.message.as_deref() == Some(message.as_str());
        let due = self
            .logged_at
            .is_none_or(|t| now.duration_since(t) >= REPEAT_LOG_INTERVAL);
        if same && !due {
            self.since_log += 1;
            return None;
        }
        let line = if same {
            format!(
                "{message} (again, {} times since the last report)",
                self.since_log + 1
            )
        } else {
            message.clone()
        };
        self.message = Some(message);
        self.since_log = 0;
        self.logged_at = Some(now);
        Some(line)
    }

    /// A success: the line to log if a failure just ended.
    fn recovered(&mut self) -> Option<String> {
        let ended = self.message.take()?;
        self.logged_at = None;
        self.since_log = 0;
        Some(format!("working again after: {ended}"))
    }
}

impl Daemon {
    /// The agent as a boxed future: the agent can restart itself (role change), and the box
    /// breaks that cycle for the compiler's `Send` check.
    pub(super) fn agent_task(
        self: Arc<Self>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(self.agent())
    }

    /// Every heartbeat period: keep the node's view (role, managers, keys) in step with the swarm.
    /// A failure is logged when it starts and when it changes; while it lasts, once per
    /// [`REPEAT_LOG_INTERVAL`] with a count, and its end is logged too (a manager down for an
    /// hour is not 3,600 identical lines).
    async fn agent(self: Arc<Self>) {
        let mut tick = tokio::time::interval(HEARTBEAT_PERIOD);
        let mut failing = Failing::default();
        let mut changes = self.manager.changes.subscribe();
        loop {
            // On the leader, a committed change (new tasks for this node) is a reason to go
            // at once too.
            tokio::select! {
                _ = tick.tick() => {}
                Ok(()) = changes.changed(), if self.holds_state() => {}
            }
            let now = tokio::time::Instant::now();
            match self.agent_step().await {
                Err(err) => {
                    if let Some(line) = failing.failed(err.to_string(), now) {
                        tracing::warn!("node agent: {line}");
                    }
                }
                Ok(()) => {
                    if let Some(line) = failing.recovered() {
                        tracing::warn!("node agent: {line}");
                    }
                    // Tasks just started or stopped: report them now, not a period later.
                    if self.has_pending() {
                        tick.reset_immediately();
                    }
                }
            }
        }
    }

    async fn agent_step(self: &Arc<Self>) -> Result<(), ApiError> {
        let Some(identity) = self.identity() else {
            return Ok(());
        };
        let leading = self.holds_state();
        self.manager.note_leadership(leading);
        if leading {
            if let Err(err) = self.manager.reconcile_membership().await {
                tracing::warn!("Raft membership: {err}");
            }
            let keys = self.manager.rotate_keys_if_due().await?;
            if self.store.local_keys()? != keys {
                self.store.set_local_keys(&keys)?;
            }
            let managers = self.manager.manager_addrs()?;
            if managers != identity.managers {
                self.update_identity(|i| i.managers = managers.clone())?;
            }
            if cert_needs_renewal(&identity) {
                self.renew_own_certificate(&identity)?;
            }
            let report = self.take_report().await;
            let statuses = report.statuses.clone();
            if let Err(err) = self.manager.take_report(&identity.node_id, report).await {
                self.restore_statuses(statuses);
                return Err(err);
            }
            let assignments = self.manager.assignments(&identity.node_id)?.0.clone();
            self.gossip.set_nodes(&assignments.nodes);
            self.run_assignments(&identity, Some(assignments), keys.clone())
                .await;
            self.sync_gossip(&identity, &keys).await;
            return Ok(());
        }
        let config = tls::client_config(&identity.ca_cert_pem, Some(&identity.credentials))
            .map_err(internal)?;
        let targets = if identity.role == Role::Manager {
            self.leader_first(&identity)
        } else {
            identity.managers.clone()
        };
        let mut report = self.take_report().await;
        // Nothing to tell: the manager holds the answer until there is something new.
        report.wait = report.statuses.is_empty() && report.logs.is_empty();
        let statuses = report.statuses.clone();
        let reply = rpc::call_managers(
            &targets,
            config.clone(),
            &ClusterRequest::Heartbeat {
                report: Box::new(report),
            },
        )
        .await;
        if reply.is_err() {
            self.restore_statuses(statuses);
        }
        let (role, managers, keys, voter, assignments) = match reply {
            Ok(ClusterReply::Heartbeat {
                role,
                managers,
                keys,
                voter,
                assignments,
                captures,
            }) => {
                for order in captures {
                    tokio::spawn(self.clone().serve_order(order, config.clone()));
                }
                (role, managers, keys, voter, assignments)
            }
            Ok(_) => return Err(internal("unexpected heartbeat reply")),
            Err(RpcError::Remote(err)) if err.kind == ErrorKind::NotFound => {
                tracing::warn!("this node was removed from the swarm: {}", err.message);
                let mut tasks = self.tasks.lock().await;
                self.store.clear()?;
                self.set_identity(None);
                tasks.agent.take();
                tasks.stop().await;
                drop(tasks);
                self.stop_raft().await;
                self.stop_runtime().await;
                return Ok(());
            }
            Err(err) => return Err(rpc_error(err)),
        };
        let keys_changed = self.store.local_keys()? != keys;
        if keys_changed {
            tracing::info!(
                "received network encryption keys, tags {:?}",
                keys.iter().map(|k| k.tag).collect::<Vec<_>>()
            );
            self.store.set_local_keys(&keys)?;
        }
        if !managers.is_empty() && managers != identity.managers {
            self.update_identity(|i| i.managers = managers.clone())?;
        }
        if let Some(a) = &assignments {
            self.gossip.set_nodes(&a.nodes);
        }
        // Tasks withdrawn a while ago stop at a later turn, with or without news.
        if assignments.is_some() || keys_changed || self.has_leaving() {
            self.run_assignments(&identity, assignments.map(|a| *a), keys.clone())
                .await;
        }
        self.sync_gossip(&identity, &keys).await;
        if role != identity.role || cert_needs_renewal(&identity) {
            self.renew_certificate(&identity, config).await?;
        } else if role == Role::Manager && !voter && self.manager.raft().is_some() {
            // Promoted (or a join whose last step was cut short): ask to become a voter, and
            // after a failure wait a while, since each attempt holds the leader's membership
            // changes until it ends.
            let now = std::time::Instant::now();
            let due = self
                .next_raft_join
                .lock()
                .map(|next| next.is_none_or(|t| now >= t))
                .unwrap_or(true);
            if due {
                let joined = self.raft_join(&identity).await;
                if let Ok(mut next) = self.next_raft_join.lock() {
                    *next = joined.is_err().then(|| now + RAFT_JOIN_RETRY);
                }
                joined?;
            }
        }
        Ok(())
    }

    /// Gets a new certificate (for the role the swarm wants) and restarts the node's services
    /// with it: the cluster listener and Raft on managers, neither on workers.
    async fn renew_certificate(
        self: &Arc<Self>,
        identity: &LocalIdentity,
        config: Arc<rustls::ClientConfig>,
    ) -> Result<(), ApiError> {
        let (key_pem, csr_pem) = new_key_and_csr().map_err(internal)?;
        let reply = rpc::call_managers(
            &identity.managers,
            config,
            &ClusterRequest::RenewCert { csr_pem },
        )
        .await
        .map_err(rpc_error)?;
        let ClusterReply::Cert { cert_pem } = reply else {
            return Err(internal("unexpected reply to a certificate renewal"));
        };
        self.install_certificate(identity, NodeCredentials { cert_pem, key_pem })
    }

    /// The leader renews its own certificate with the swarm's CA.
    fn renew_own_certificate(self: &Arc<Self>, identity: &LocalIdentity) -> Result<(), ApiError> {
        let swarm = self
            .manager
            .swarm()?
            .ok_or_else(|| internal("the leader has no swarm record"))?;
        let (key_pem, csr_pem) = new_key_and_csr().map_err(internal)?;
        let cert_pem = swarm
            .root_ca
            .sign_csr(&csr_pem, &identity.node_id, identity.role, &swarm.id)
            .map_err(internal)?;
        self.install_certificate(identity, NodeCredentials { cert_pem, key_pem })
    }

    fn install_certificate(
        self: &Arc<Self>,
        identity: &LocalIdentity,
        credentials: NodeCredentials,
    ) -> Result<(), ApiError> {
        let cert = identity_from_pem(&credentials.cert_pem).map_err(internal)?;
        if cert.node_id != identity.node_id {
            return Err(internal(
                "the manager issued a certificate for another node ID",
            ));
        }
        let updated = self.update_identity(|i| {
            i.role = cert.role;
            i.credentials = credentials.clone();
        })?;
        if cert.role != identity.role {
            tracing::info!("this node is now a {}", cert.role);
        } else {
            tracing::info!("renewed this node's certificate");
        }
        let daemon = self.clone();
        // Restarting aborts the task running this step; do it from a fresh task.
        tokio::spawn(async move {
            let mut tasks = daemon.tasks.lock().await;
            if let Err(err) = daemon.start(&mut tasks, &updated, None).await {
                tracing::error!("could not switch to the {} role: {err}", updated.role);
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lasting_failure_is_logged_at_its_start_every_interval_and_at_its_end() {
        let t0 = tokio::time::Instant::now();
        let at = |s: u64| t0 + std::time::Duration::from_secs(s);
        let down = "could not connect to the manager at 127.0.0.1:2377".to_string();
        let mut f = Failing::default();
        assert_eq!(
            f.failed(down.clone(), at(0)).as_deref(),
            Some(down.as_str())
        );
        // One heartbeat a second for 29 s: nothing more.
        for s in 1..30 {
            assert_eq!(f.failed(down.clone(), at(s)), None, "{s}");
        }
        assert_eq!(
            f.failed(down.clone(), at(30)).unwrap(),
            format!("{down} (again, 30 times since the last report)")
        );
        // Another failure is news at once.
        let other = "the swarm has lost quorum".to_string();
        assert_eq!(
            f.failed(other.clone(), at(31)).as_deref(),
            Some(other.as_str())
        );
        assert_eq!(
            f.recovered().unwrap(),
            "working again after: the swarm has lost quorum"
        );
        assert_eq!(f.recovered(), None);
        assert_eq!(
            f.failed(down.clone(), at(32)).as_deref(),
            Some(down.as_str())
        );
    }

    #[test]
    fn renewal_starts_at_half_life() {
        let life = NODE_CERT_VALIDITY.whole_seconds();
        assert!(!needs_renewal(1_000 + life, 1_000));
        assert!(!needs_renewal(1_000 + life / 2, 1_000));
        assert!(needs_renewal(1_000 + life / 2 - 1, 1_000));
        assert!(needs_renewal(0, 1_000));
    }
}
