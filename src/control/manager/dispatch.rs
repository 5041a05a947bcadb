//! The leader's dispatcher: task reports in, assignments out (see
//! [`crate::control::dispatcher`]).

use super::Manager;
use crate::api::ApiError;
use crate::control::dispatcher::{self, Assignments, Report};
use crate::control::raft::Command;

impl Manager {
    /// Takes a node's report: its task states through Raft (only when there are some), its
    /// tasks' output into the log book.
    pub async fn take_report(&self, node_id: &str, report: Report) -> Result<(), ApiError> {
        if !report.logs.is_empty() {
            if let Ok(mut logs) = self.logs.lock() {
                logs.add(report.logs);
            }
        }
        if report.statuses.is_empty() {
            return Ok(());
        }
        let ended = report.statuses.iter().any(|s| s.state.is_terminal());
        self.write(Command::TaskStatuses {
            node_id: node_id.to_string(),
            statuses: report.statuses,
        })
        .await?;
        if ended {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// What node `node_id` is to run (leader only).
    pub fn assignments(&self, node_id: &str) -> Result<Assignments, ApiError> {
        let data_path_port = self
            .store
            .swarm()?
            .map_or(crate::topology::DEFAULT_DATA_PATH_PORT, |s| {
                s.data_path_port
            });
        Ok(dispatcher::assignments(
            node_id,
            &self.nodes()?,
            &self.store.services()?,
            &self.store.networks()?,
            &self.store.tasks()?,
            data_path_port,
        ))
    }
}
