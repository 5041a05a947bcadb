//! The daemon's side of services: the orchestrator loop (on the leader), and the agent's
//! report and assignments, run by the node's [`TaskRuntime`].

use std::sync::Arc;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::runtime::TaskRuntime;
use super::Daemon;
use crate::control::dispatcher::{Assignments, Report};
use crate::control::logs::LogLine;
use crate::control::manager::HEARTBEAT_PERIOD;
use crate::control::service::TaskStatus;
use crate::control::store::{LocalIdentity, NetworkKey};

/// Most log lines shipped with one heartbeat (the rest wait for the next).
const MAX_LINES_PER_REPORT: usize = 2000;

impl Daemon {
    /// On the leader: an orchestration pass when woken (a service changed, a task ended) and
    /// once per heartbeat period. A failure is logged when it changes.
    pub(super) async fn orchestrator(self: Arc<Self>) {
        let mut last: Option<String> = None;
        loop {
            tokio::select! {
                _ = self.manager.wake.notified() => {}
                _ = tokio::time::sleep(HEARTBEAT_PERIOD) => {}
            }
            match self.manager.orchestrate().await {
                Ok(()) => last = None,
                Err(err) => {
                    let msg = err.to_string();
                    if last.as_deref() != Some(msg.as_str()) {
                        tracing::warn!("orchestrator: {msg}");
                    }
                    last = Some(msg);
                }
            }
        }
    }

    /// What to report with the next heartbeat: task states and new output.
    pub(super) async fn take_report(&self) -> Report {
        let runtime = self.runtime.clone();
        let report = tokio::task::spawn_blocking(move || {
            let mut guard = runtime.lock().unwrap_or_else(|e| e.into_inner());
            let Some(rt) = guard.as_mut() else {
                return Report::default();
            };
            rt.poll();
            let statuses = rt.take_statuses();
            let mut logs = rt.take_logs();
            logs.truncate(MAX_LINES_PER_REPORT);
            Report {
                statuses,
                logs,
                running: Some(rt.digest()),
                wait: false,
                gossip_addr: None,
            }
        })
        .await
        .unwrap_or_default();
        Report {
            gossip_addr: self.gossip.addr(),
            ..report
        }
    }

    /// Whether task states wait to be reported.
    pub(super) fn has_pending(&self) -> bool {
        let guard = self.runtime.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().is_some_and(|rt| rt.has_pending())
    }

    /// This node's balancer: backends of every VIP and their connections.
    pub(super) fn balancer(&self) -> Vec<crate::api::BalancerRow> {
        let guard = self.runtime.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().map(|rt| rt.balancer()).unwrap_or_default()
    }

    /// Opens a live capture of this node's data path (`swarmnet capture`); `manager`: asked
    /// through a manager, which may see an encrypted network's frames decrypted.
    pub(super) fn capture_open(
        &self,
        ask: &crate::api::capture::CaptureAsk,
        manager: bool,
    ) -> Result<crate::api::capture::CaptureOpen, crate::api::ApiError> {
        let guard = self.runtime.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            Some(rt) => rt.capture(ask, manager, &self.hostname),
            None => Err(crate::api::ApiError::precondition(format!(
                "this node ({}) runs no data path yet: it captures once it is in a swarm with tasks",
                self.hostname
            ))),
        }
    }

    pub(super) fn containers(&self) -> Vec<serde_json::Value> {
        let guard = self.runtime.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().map(|rt| rt.containers()).unwrap_or_default()
    }

    /// Whether tasks no longer assigned wait to be stopped (see `runtime::WITHDRAW`).
    pub(super) fn has_leaving(&self) -> bool {
        let guard = self.runtime.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().is_some_and(|rt| rt.has_leaving())
    }

    /// States whose report failed go again with the next heartbeat.
    pub(super) fn restore_statuses(&self, statuses: Vec<TaskStatus>) {
        if statuses.is_empty() {
            return;
        }
        let mut guard = self.runtime.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rt) = guard.as_mut() {
            rt.restore_statuses(statuses);
        }
    }

    /// Applies the node's assignments to its runtime (created on first use); `None`: the
    /// ones it runs, with new keys.
    pub(super) async fn run_assignments(
        &self,
        identity: &LocalIdentity,
        assignments: Option<Assignments>,
        keys: Vec<NetworkKey>,
    ) {
        let runtime = self.runtime.clone();
        let hostname = self.hostname.clone();
        let state_dir = self.state_dir.clone();
        let publish_addr = self.publish_addr;
        let data_path = identity.data_path_addr.parse();
        let resolv_conf = self.resolv_conf.clone();
        let remote = self.gossip.remote();
        let gwbridge = match self.store.local_networks() {
            Ok(nets) => nets
                .into_iter()
                .find(|n| n.name == crate::control::network::GWBRIDGE),
            Err(err) => {
                tracing::warn!("cannot read this node's docker_gwbridge: {err}");
                None
            }
        };
        let _ = tokio::task::spawn_blocking(move || {
            let mut guard = runtime.lock().unwrap_or_else(|e| e.into_inner());
            if guard.is_none() {
                // A node without tasks still runs the routing mesh when it has ingress.
                if assignments
                    .as_ref()
                    .is_none_or(|a| a.tasks.is_empty() && a.networks.is_empty())
                {
                    return;
                }
                let Ok(addr) = data_path else {
                    tracing::warn!("this node's data-path address does not parse");
                    return;
                };
                let mut rt = TaskRuntime::new(hostname, addr, state_dir);
                rt.set_resolv_conf(resolv_conf);
                rt.set_publish_addr(publish_addr);
                rt.set_gwbridge(gwbridge);
                *guard = Some(rt);
            }
            if let Some(rt) = guard.as_mut() {
                let assignments = assignments.unwrap_or_else(|| rt.assignments().clone());
                rt.set_remote(remote);
                rt.apply(&assignments, &keys);
            }
        })
        .await;
    }

    /// This node's endpoints on a network, for `network inspect`.
    pub(super) async fn local_endpoints(
        &self,
        network_id: &str,
    ) -> crate::api::network::LocalEndpoints {
        let runtime = self.runtime.clone();
        let id = network_id.to_string();
        tokio::task::spawn_blocking(move || {
            let guard = runtime.lock().unwrap_or_else(|e| e.into_inner());
            guard
                .as_ref()
                .map(|rt| rt.local_endpoints(&id))
                .unwrap_or_default()
        })
        .await
        .unwrap_or_default()
    }

    /// The network namespace of a task on this node, for `exec`.
    pub(super) fn task_sandbox(&self, key: &str) -> Result<String, crate::api::ApiError> {
        use super::runtime::TaskKind;
        use crate::api::ApiError;
        let guard = self.runtime.lock().unwrap_or_else(|e| e.into_inner());
        let tasks: Vec<_> = guard
            .as_ref()
            .map(|rt| {
                rt.local_tasks()
                    .map(|(t, k)| (t.clone(), k.clone()))
                    .collect()
            })
            .unwrap_or_default();
        drop(guard);
        let exact: Vec<_> = tasks
            .iter()
            .filter(|(t, _)| {
                t.id == key || t.full_name() == key || t.name == key || t.service_name == key
            })
            .collect();
        let found: Vec<_> = if exact.is_empty() && !key.is_empty() {
            tasks
                .iter()
                .filter(|(t, _)| t.id.starts_with(key))
                .collect()
        } else {
            exact
        };
        match found.as_slice() {
            [] => Err(ApiError::not_found(format!(
                "no task {key} runs on this node ({}); exec runs on the node that runs the task: use that node's daemon (-H)",
                self.hostname
            ))),
            [(t, TaskKind::Virtual(_))] => Err(ApiError::precondition(format!(
                "task {} runs {}, a built-in app served inside the data path: it has no network namespace to run a command in",
                t.full_name(),
                t.image
            ))),
            [(t, TaskKind::Program)] => Ok(t.full_name()),
            many => Err(ApiError::invalid(format!(
                "task {key} is ambiguous ({} tasks on this node match)",
                many.len()
            ))),
        }
    }

    /// Stops the gossip, every task and the data plane.
    pub(super) async fn stop_runtime(&self) {
        self.stop_gossip().await;
        let runtime = self.runtime.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let taken = runtime.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(mut rt) = taken {
                rt.stop();
            }
        })
        .await;
    }
}

/// RFC 3339 now.
pub fn now() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// A log line of a virtual task's app event `"<endpoint>: <text>"`, if the endpoint is one of
/// `tasks` (`(task id, full name)`).
pub fn event_line(event: &str, tasks: &[(String, String)]) -> Option<LogLine> {
    let (endpoint, text) = event.split_once(": ")?;
    let (id, _) = tasks.iter().find(|(_, full)| {
        endpoint == full
            || endpoint
                .strip_prefix(full.as_str())
                .is_some_and(|r| r.starts_with(".eth"))
    })?;
    Some(LogLine {
        task_id: id.clone(),
        stream: "stdout".into(),
        at: now(),
        line: text.to_string(),
    })
}
