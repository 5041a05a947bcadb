//! Who a gossip member is: the swarm node ID, the gossip address it listens on, and a bump that
//! tells a restarted (or renewed) instance of the same node apart from the one before it.
//!
//! foca keys members by address; two identities on one address conflict and the higher bump wins,
//! so a node that restarts on the same address with a larger bump replaces its old self at once.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// One member of the gossip cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// The swarm node ID (the manager's name for this node).
    pub node_id: String,
    /// Where the node receives gossip (UDP datagrams and TCP streams, port 7946 by default).
    pub addr: SocketAddr,
    /// Raised on each restart or renewal so the new instance wins over the old one.
    pub bump: u32,
}

impl NodeIdentity {
    pub fn new(node_id: impl Into<String>, addr: SocketAddr, bump: u32) -> Self {
        Self {
            node_id: node_id.into(),
            addr,
            bump,
        }
    }
}

impl foca::Identity for NodeIdentity {
    type Addr = SocketAddr;

    /// foca renews an identity when it learns that the cluster declared it down: the node rejoins
    /// at once as a newer instance instead of staying out until an operator acts.
    fn renew(&self) -> Option<Self> {
        Some(Self {
            bump: self.bump.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        // Serial-number comparison so that a wrapped bump still wins.
        (self.bump.wrapping_sub(adversary.bump) as i32) > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity;

    #[test]
    fn renewed_identity_wins_the_address() {
        let a = NodeIdentity::new("n1", "127.78.0.1:7946".parse().unwrap(), u32::MAX);
        let b = a.renew().unwrap();
        assert_eq!(b.bump, 0);
        assert!(b.win_addr_conflict(&a));
        assert!(!a.win_addr_conflict(&b));
    }
}
