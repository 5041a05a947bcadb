//! What travels inside a sealed gossip message (postcard-encoded).

use serde::{Deserialize, Serialize};

use super::identity::NodeIdentity;
use super::table::{AttachRecord, Record};

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
        /// What the sender holds of the attachment table, in a periodic exchange.
        digest: Option<Digest>,
    },
}

/// A node's attachment table in brief, for the periodic member exchange (A asks B):
/// 1. A sends `Hash` with the member list; B answers with its members, and with `Buckets` if
///    its hash differs;
/// 2. A sends its records of the buckets whose hashes differ, with `Last` (its bucket hashes);
/// 3. B takes what is newer, and sends its records of the buckets that still differ from A's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Digest {
    /// A hash of the whole table: equal tables, equal hashes, nothing more to send.
    Hash(u64),
    /// A hash per bucket of node IDs: answered with the records of the buckets that differ,
    /// and with `Last`.
    Buckets(Vec<u32>),
    /// As `Buckets`, answered with records only.
    Last(Vec<u32>),
}
