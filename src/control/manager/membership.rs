//! Raft membership on the leader. A manager becomes a voter only through [`Manager::add_voter`]
//! (asked by the manager itself once its Raft node and listener are up: after `swarm join` with a
//! manager token, or after a promotion), which returns once the configuration change is
//! committed. A voter leaves through [`Manager::remove_voter`], which refuses when the remaining
//! voters that answer would not be a majority. [`Manager::reconcile_membership`] only cleans up:
//! it removes voters and learners that are no longer managers and completes a change that a
//! previous leader left half done.

use std::collections::BTreeSet;

use openraft::{BasicNode, ChangeMembers};

use super::{node_cluster_addr, Manager};
use crate::api::{ApiError, Node, Role};
use crate::control::raft::raft_id;
use crate::control::rpc::RAFT_JOIN_TIMEOUT;

/// Swarmkit's refusal when removing a voter would lose quorum.
pub const LOSES_QUORUM: &str =
    "rpc error: code = FailedPrecondition desc = can't remove member from the raft: this would result in a loss of quorum";

/// Number of voters that make a majority of `voters`.
pub fn majority(voters: usize) -> usize {
    voters / 2 + 1
}

/// Whether removing one voter from `voters` keeps a majority of the rest reachable.
/// `reachable` counts the voters that answer, the one to remove included or not (`removed_up`).
pub fn can_remove(voters: usize, reachable: usize, removed_up: bool) -> bool {
    let after = voters.saturating_sub(1);
    let reachable_after = reachable - usize::from(removed_up && reachable > 0);
    after > 0 && reachable_after >= majority(after)
}

fn timed_out(what: &str) -> ApiError {
    ApiError::unavailable(format!(
        "{what} was not committed within {RAFT_JOIN_TIMEOUT:?}: fewer than a majority of the managers may be reachable"
    ))
}

impl Manager {
    /// Voters of the latest configuration this node's Raft knows (during a joint change, both
    /// halves), and its learners.
    fn raft_config(&self) -> Option<(BTreeSet<u64>, BTreeSet<u64>)> {
        let handle = self.raft()?;
        let metrics = handle.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership().clone();
        Some((
            membership.voter_ids().collect(),
            membership.learner_ids().collect(),
        ))
    }

    /// Cluster addresses of the members (voters and learners) of this node's latest Raft
    /// configuration.
    pub fn raft_member_addrs(&self) -> Vec<String> {
        let Some(handle) = self.raft() else {
            return Vec::new();
        };
        let metrics = handle.raft.metrics().borrow().clone();
        metrics
            .membership_config
            .membership()
            .nodes()
            .map(|(_, n)| n.addr.clone())
            .collect()
    }

    /// Raft IDs of the voters of the last committed configuration (the old one during a change).
    pub fn committed_voters(&self) -> BTreeSet<u64> {
        if self.raft().is_none() {
            return BTreeSet::new();
        }
        crate::control::raft_store::applied_voters(&self.store)
    }

    /// Whether the node `node_id` is a voter of the committed configuration.
    pub fn is_voter(&self, node_id: &str) -> bool {
        self.committed_voters().contains(&raft_id(node_id))
    }

    /// Whether `raft` is a node of this manager's latest Raft configuration (voter or learner),
    /// or this manager has no configuration yet (it is being added). Raft messages from others
    /// (a manager removed from the group, or one from before `--force-new-cluster`) are refused.
    pub fn raft_member_or_new(&self, raft: u64) -> bool {
        match self.raft_config() {
            Some((voters, learners)) => {
                (voters.is_empty() && learners.is_empty())
                    || voters.contains(&raft)
                    || learners.contains(&raft)
            }
            None => false,
        }
    }

    /// Leader only: makes the manager `node_id` a voter. It is added as a learner first, and the
    /// call waits until it has caught up and the change is committed.
    pub async fn add_voter(&self, node_id: &str) -> Result<(), ApiError> {
        let _m = self.membership.lock().await;
        let node = self.known_node(node_id)?;
        if node.role != Role::Manager {
            return Err(ApiError::precondition(format!(
                "node {node_id} is not a manager of this swarm"
            )));
        }
        let handle = self
            .raft()
            .ok_or_else(|| ApiError::unavailable("this node is not a manager"))?;
        let id = raft_id(node_id);
        let (voters, _) = self.raft_config().unwrap_or_default();
        if voters.contains(&id) && self.committed_voters().contains(&id) {
            return Ok(());
        }
        self.touch(node_id);
        let addr = node
            .manager_status
            .as_ref()
            .map(|m| m.addr.clone())
            .unwrap_or_else(|| node_cluster_addr(&node));
        tracing::info!("adding manager {node_id} ({addr}) to the Raft group");
        let add = handle.raft.add_learner(id, BasicNode::new(addr), true);
        match tokio::time::timeout(RAFT_JOIN_TIMEOUT, add).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(ApiError::unavailable(e.to_string())),
            Err(_) => return Err(timed_out("adding the manager as a Raft learner")),
        }
        self.touch(node_id);
        let change = handle
            .raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false);
        match tokio::time::timeout(RAFT_JOIN_TIMEOUT, change).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(ApiError::unavailable(e.to_string())),
            Err(_) => return Err(timed_out("the Raft configuration change")),
        }
        self.touch(node_id);
        tracing::info!("manager {node_id} is a Raft voter");
        Ok(())
    }

    /// Voters of the committed configuration, and those that answer: this leader, and the
    /// voters that answered its Raft heartbeats lately.
    pub(super) fn reachable_voters(&self) -> Result<(BTreeSet<u64>, BTreeSet<u64>), ApiError> {
        let voters = self.committed_voters();
        let own = self.raft().map(|h| raft_id(&h.node_id));
        let up: BTreeSet<u64> = voters
            .iter()
            .copied()
            .filter(|id| Some(*id) == own || self.raft_peer_up(*id))
            .collect();
        Ok((voters, up))
    }

    /// Refuses (swarmkit's text) when removing the voter `node_id` would leave fewer reachable
    /// voters than a majority of the rest. A node that is no voter can always go.
    pub fn check_removal(&self, node_id: &str) -> Result<(), ApiError> {
        let id = raft_id(node_id);
        let (voters, up) = self.reachable_voters()?;
        if !voters.contains(&id) {
            return Ok(());
        }
        if voters.len() == 1 {
            return Err(ApiError::precondition(
                "rpc error: code = FailedPrecondition desc = attempting to demote the last manager of the swarm",
            ));
        }
        if can_remove(voters.len(), up.len(), up.contains(&id)) {
            Ok(())
        } else {
            Err(ApiError::precondition(LOSES_QUORUM))
        }
    }

    /// Leader only: removes `node_id` from the Raft group (voter or learner) and waits for the
    /// change to commit. Checks quorum first unless `force`.
    pub async fn remove_voter(&self, node_id: &str, force: bool) -> Result<(), ApiError> {
        let _m = self.membership.lock().await;
        if !force {
            self.check_removal(node_id)?;
        }
        let Some(handle) = self.raft() else {
            return Ok(());
        };
        let id = raft_id(node_id);
        let (voters, learners) = self.raft_config().unwrap_or_default();
        let change = if voters.contains(&id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else if learners.contains(&id) {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        } else {
            return Ok(());
        };
        tracing::info!("removing node {node_id} from the Raft group");
        let change = handle.raft.change_membership(change, false);
        match tokio::time::timeout(RAFT_JOIN_TIMEOUT, change).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(ApiError::unavailable(e.to_string())),
            Err(_) => Err(timed_out("removing the manager from the Raft group")),
        }
    }

    /// Leader only: removes from the Raft group the voters and learners that are no longer
    /// managers of the node table (demoted, left, removed), and finishes a joint configuration
    /// left behind by a previous leader.
    pub async fn reconcile_membership(&self) -> Result<(), ApiError> {
        let Ok(_m) = self.membership.try_lock() else {
            return Ok(());
        };
        let Some(handle) = self.raft() else {
            return Ok(());
        };
        let metrics = handle.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership().clone();
        let joint = membership.get_joint_config().len() > 1;
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let learners: BTreeSet<u64> = membership.learner_ids().collect();
        let managers: BTreeSet<u64> = self
            .store
            .nodes()?
            .iter()
            .filter(|n: &&Node| n.role == Role::Manager)
            .map(|n| raft_id(&n.id))
            .collect();
        let desired: BTreeSet<u64> = voters.intersection(&managers).copied().collect();
        let stale_learners: BTreeSet<u64> = learners.difference(&managers).copied().collect();
        if desired.is_empty() {
            return Ok(());
        }
        let change = if desired != voters || joint {
            tracing::info!("Raft voters: {voters:?} -> {desired:?}");
            ChangeMembers::ReplaceAllVoters(desired)
        } else if !stale_learners.is_empty() {
            ChangeMembers::RemoveNodes(stale_learners)
        } else {
            return Ok(());
        };
        let change = handle.raft.change_membership(change, false);
        match tokio::time::timeout(RAFT_JOIN_TIMEOUT, change).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(ApiError::unavailable(e.to_string())),
            Err(_) => Err(timed_out("the Raft membership change")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_arithmetic() {
        assert_eq!(majority(1), 1);
        assert_eq!(majority(2), 2);
        assert_eq!(majority(3), 2);
        assert_eq!(majority(5), 3);
        // 3 voters all up: one may go (2 of 2 remain).
        assert!(can_remove(3, 3, true));
        // 3 voters, one down, removing an up one: 1 of 2 remains, not a majority.
        assert!(!can_remove(3, 2, true));
        // 3 voters, one down, removing the down one: 2 of 2 remain.
        assert!(can_remove(3, 2, false));
        // 2 voters both up: one may go (1 of 1).
        assert!(can_remove(2, 2, true));
        // 5 voters, 3 up: removing an up one leaves 2 of 4.
        assert!(!can_remove(5, 3, true));
        assert!(can_remove(5, 4, true));
        assert!(!can_remove(1, 1, true));
    }
}
