//! What travels inside a sealed gossip message (postcard-encoded).

use serde::{Deserialize, Serialize};

use super::identity::NodeIdentity;
use super::table::{AttachRecord, Record, Version};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub sender: NodeIdentity,
    pub body: Body,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Body {
    /// foca's SWIM message (probes, acks, membership updates, attachment broadcasts).
    Swim(Vec<u8>),
    /// Changed rows of network tables, spread epidemically among the network's nodes (UDP).
    Table(Vec<Record>),
    /// Full state of one network (rows, tombstones, and the attachments of its nodes); the
    /// receiver answers a non-reply with its own (TCP).
    PushPull {
        network: String,
        records: Vec<Record>,
        attachments: Vec<AttachRecord>,
        reply: bool,
    },
    /// Asks a node that came back (after being declared down) for its own rows on these
    /// networks: the asker withdrew them; everything else it still holds (TCP).
    RowsRequest { networks: Vec<String> },
    /// The member list and attachments (TCP). With a join peer, the whole attachment table, so
    /// that a new node learns which nodes are on which network; periodically, a digest of it,
    /// so that a node that missed an attachment's broadcast (a node leaving a network) gets it.
    ClusterSync {
        attachments: Vec<AttachRecord>,
        /// The sender's live members (itself included), so the joiner knows everyone at once
        /// instead of meeting them one probe at a time (memberlist's join push/pull).
        members: Vec<NodeIdentity>,
        reply: bool,
        /// Node ID and attachment version of every record the sender holds: the receiver
        /// answers with its newer records, and with its own digest if the sender's is ahead.
        digest: Option<Vec<(String, Version)>>,
    },
}
