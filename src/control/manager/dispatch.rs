//! The leader's dispatcher: task reports in, assignments out (see
//! [`crate::control::dispatcher`]).

use super::Manager;
use crate::api::ApiError;
use std::sync::Arc;

use crate::control::dispatcher::{Assignments, Index, Report};
use crate::control::raft::Command;

impl Manager {
    /// Takes a node's report: its task states through Raft (only when there are some), its
    /// tasks' output into the log book, its gossip address into its node record (when it
    /// changed: the other nodes join the gossip through it).
    pub async fn take_report(&self, node_id: &str, report: Report) -> Result<(), ApiError> {
        if let Some(addr) = report.gossip_addr {
            self.note_gossip_addr(node_id, addr).await?;
        }
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

    async fn note_gossip_addr(
        &self,
        node_id: &str,
        addr: std::net::SocketAddr,
    ) -> Result<(), ApiError> {
        let addr = addr.to_string();
        let unchanged = |n: &crate::api::Node| n.gossip_addr == addr;
        if self.store.node(node_id)?.is_none_or(|n| unchanged(&n)) {
            return Ok(());
        }
        let _guard = self.serial.lock().await;
        let Some(mut node) = self.store.node(node_id)? else {
            return Ok(());
        };
        if unchanged(&node) {
            return Ok(());
        }
        tracing::info!("node {} ({}) gossips on {addr}", node.id, node.hostname);
        node.gossip_addr = addr;
        node.updated_at = super::now_rfc3339();
        self.write(Command::PutNode(Box::new(node))).await
    }

    /// What node `node_id` is to run (leader only), and its digest.
    pub fn assignments(&self, node_id: &str) -> Result<Arc<(Assignments, u64)>, ApiError> {
        let (index, data_path_port) = self.dispatch_index()?;
        Ok(index.assignments_memo(node_id, data_path_port))
    }

    /// The dispatcher's index of the store, rebuilt when Raft has applied something since.
    fn dispatch_index(&self) -> Result<(Arc<Index>, u16), ApiError> {
        let applied = self
            .raft()
            .and_then(|h| h.raft.metrics().borrow().last_applied)
            .map(|id| id.index);
        if let Ok(cache) = self.dispatch_cache.lock() {
            if let Some((at, index, port)) = cache.as_ref() {
                if applied.is_some() && *at == applied {
                    return Ok((index.clone(), *port));
                }
            }
        }
        let data_path_port = self
            .store
            .swarm()?
            .map_or(crate::topology::DEFAULT_DATA_PATH_PORT, |s| {
                s.data_path_port
            });
        let index = Arc::new(Index::new(
            &self.store.nodes()?,
            self.store.services()?,
            self.store.networks()?,
            self.store.tasks()?,
        ));
        if let Ok(mut cache) = self.dispatch_cache.lock() {
            *cache = Some((applied, index.clone(), data_path_port));
        }
        Ok((index, data_path_port))
    }
}
