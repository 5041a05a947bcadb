//! Raft membership follows the node table: the leader makes the voters the managers whose Raft
//! node is up, and removes the ones that were demoted or left.

use std::collections::BTreeSet;

use openraft::BasicNode;

use super::{node_cluster_addr, Manager, WRITE_TIMEOUT};
use crate::api::{ApiError, Node, Role};
use crate::control::raft::raft_id;

impl Manager {
    /// Leader only: makes the Raft voters the managers of the node table whose Raft node is up
    /// (they have reported with a manager certificate), adding them as learners first; removes
    /// voters that are no longer managers (demoted or left), this node included.
    pub async fn reconcile_membership(&self) -> Result<(), ApiError> {
        let Some(handle) = self.raft() else {
            return Ok(());
        };
        let metrics = handle.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership().clone();
        let current: BTreeSet<u64> = membership.voter_ids().collect();
        let learners: BTreeSet<u64> = membership.learner_ids().collect();
        let ready = self
            .raft_ready
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        let managers: Vec<Node> = self
            .store
            .nodes()?
            .into_iter()
            .filter(|n| n.role == Role::Manager)
            .collect();
        let desired: BTreeSet<u64> = managers
            .iter()
            .filter(|n| {
                n.id == handle.node_id || ready.contains(&n.id) || current.contains(&raft_id(&n.id))
            })
            .map(|n| raft_id(&n.id))
            .collect();
        if desired == current || desired.is_empty() {
            return Ok(());
        }
        for node in &managers {
            let id = raft_id(&node.id);
            if desired.contains(&id) && !current.contains(&id) && !learners.contains(&id) {
                let addr = node
                    .manager_status
                    .as_ref()
                    .map(|m| m.addr.clone())
                    .unwrap_or_else(|| node_cluster_addr(node));
                tracing::info!("adding manager {} ({addr}) to the Raft group", node.id);
                let add = handle.raft.add_learner(id, BasicNode::new(addr), false);
                match tokio::time::timeout(WRITE_TIMEOUT, add).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(ApiError::unavailable(e.to_string())),
                    Err(_) => return Err(ApiError::unavailable("adding a Raft learner timed out")),
                }
            }
        }
        tracing::info!("Raft voters: {current:?} -> {desired:?}");
        let change = handle.raft.change_membership(desired, false);
        match tokio::time::timeout(WRITE_TIMEOUT, change).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(ApiError::unavailable(e.to_string())),
            Err(_) => Err(ApiError::unavailable(
                "the Raft membership change timed out",
            )),
        }
    }
}
