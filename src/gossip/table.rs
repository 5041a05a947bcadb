//! Network-scoped tables: the endpoints of each overlay network, replicated only among the nodes
//! attached to that network, and the cluster-wide attachment table that says which node is on
//! which network.
//!
//! Every record has one writer, its origin node, so a (version, origin) pair orders updates
//! totally: a record replaces another only if its version is higher. A version is the origin's
//! bump (raised on restart) then its Lamport counter. Deletions are tombstones kept for
//! `tombstone_ttl` so that anti-entropy with a peer that missed the deletion cannot revive them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::identity::NodeIdentity;

/// Order of updates from one origin: restarts first, then the origin's counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    pub bump: u32,
    pub clock: u64,
}

/// Lifecycle of a task's endpoint as the data plane needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndpointState {
    Running,
    /// Still reachable, but the load balancer should stop picking it.
    Draining,
}

/// One task endpoint on one overlay network: what DNS, the load balancer and the overlay's peer
/// table need to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointEntry {
    pub task_id: String,
    /// Docker's full task name, `my-web.1.<task id>` (what DNS answers for the task).
    pub task_name: String,
    pub service_id: String,
    pub service_name: String,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    /// Underlay address of the node that hosts the task (the VXLAN tunnel end point).
    pub vtep: Ipv4Addr,
    pub aliases: Vec<String>,
    pub state: EndpointState,
}

/// A replicated row of a network table, as it travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub network: String,
    pub endpoint_id: String,
    pub origin: String,
    pub version: Version,
    /// `None` is a tombstone.
    pub value: Option<EndpointEntry>,
}

#[derive(Debug, Clone)]
struct Stored {
    origin: String,
    version: Version,
    value: Option<EndpointEntry>,
    /// When the tombstone was written or learnt, for garbage collection.
    deleted_at: Option<Instant>,
}

/// What applying a record changed, for the caller's events.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// Older or equal to what we hold: nothing changed, do not rebroadcast.
    Stale,
    /// Newer, but neither side was a live endpoint (a tombstone over a tombstone).
    Quiet,
    Upserted(EndpointEntry),
    Removed(EndpointEntry),
}

/// The endpoints of one network.
#[derive(Debug, Default)]
pub struct NetworkTable {
    rows: BTreeMap<String, Stored>,
}

impl NetworkTable {
    /// Live endpoints, by endpoint ID.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &EndpointEntry)> {
        self.rows
            .iter()
            .filter_map(|(k, s)| s.value.as_ref().map(|v| (k.as_str(), v)))
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn version_of(&self, endpoint_id: &str) -> Option<Version> {
        self.rows.get(endpoint_id).map(|s| s.version)
    }

    /// Apply a record if it is newer than the row it would replace.
    pub fn apply(&mut self, rec: &Record, now: Instant) -> Applied {
        if let Some(old) = self.rows.get(&rec.endpoint_id) {
            if (rec.version, &rec.origin) <= (old.version, &old.origin) {
                return Applied::Stale;
            }
        }
        let stored = Stored {
            origin: rec.origin.clone(),
            version: rec.version,
            value: rec.value.clone(),
            deleted_at: rec.value.is_none().then_some(now),
        };
        let old = self.rows.insert(rec.endpoint_id.clone(), stored);
        match (old.and_then(|o| o.value), &rec.value) {
            (_, Some(v)) => Applied::Upserted(v.clone()),
            (Some(prev), None) => Applied::Removed(prev),
            (None, None) => Applied::Quiet,
        }
    }

    /// Every row (tombstones too) as records, for a full-state exchange.
    pub fn records(&self, network: &str) -> Vec<Record> {
        self.rows
            .iter()
            .map(|(k, s)| Record {
                network: network.to_string(),
                endpoint_id: k.clone(),
                origin: s.origin.clone(),
                version: s.version,
                value: s.value.clone(),
            })
            .collect()
    }

    /// IDs of the live endpoints `origin` wrote.
    pub fn live_of<'a>(&'a self, origin: &'a str) -> impl Iterator<Item = &'a str> {
        self.rows
            .iter()
            .filter(move |(_, s)| s.origin == origin && s.value.is_some())
            .map(|(k, _)| k.as_str())
    }

    pub fn record(&self, network: &str, endpoint_id: &str) -> Option<Record> {
        self.rows.get(endpoint_id).map(|s| Record {
            network: network.to_string(),
            endpoint_id: endpoint_id.to_string(),
            origin: s.origin.clone(),
            version: s.version,
            value: s.value.clone(),
        })
    }

    /// Drop every row written by `origin` (it was declared down): no tombstones, since every peer
    /// does the same on its own. Returns the live endpoints that went.
    pub fn withdraw_origin(&mut self, origin: &str) -> Vec<(String, EndpointEntry)> {
        let mut gone = Vec::new();
        self.rows.retain(|k, s| {
            if s.origin != origin {
                return true;
            }
            if let Some(v) = s.value.take() {
                gone.push((k.clone(), v));
            }
            false
        });
        gone
    }

    /// Forget tombstones older than `ttl`.
    pub fn collect_garbage(&mut self, now: Instant, ttl: std::time::Duration) -> usize {
        let before = self.rows.len();
        self.rows.retain(|_, s| match s.deleted_at {
            Some(t) => now.saturating_duration_since(t) < ttl,
            None => true,
        });
        before - self.rows.len()
    }
}

/// Which networks a node is attached to, as the node last said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachRecord {
    pub node: NodeIdentity,
    pub version: Version,
    pub networks: BTreeSet<String>,
}

/// The cluster-wide attachment table, shared between the core and foca's broadcast handler
/// (foca owns the handler and offers no way back to it, hence the shared cell).
#[derive(Debug, Default)]
pub struct AttachTable {
    pub by_node: BTreeMap<String, AttachRecord>,
    /// network -> node IDs attached to it.
    index: BTreeMap<String, BTreeSet<String>>,
    /// Records newer than ours that came in through foca, with the networks their node was on
    /// before, for the core to act on.
    pub fresh: Vec<(AttachRecord, BTreeSet<String>)>,
}

impl AttachTable {
    /// Keep `rec` if it is newer than what we hold for its node; then the node's networks before.
    pub fn apply(&mut self, rec: &AttachRecord) -> Option<BTreeSet<String>> {
        let old = match self.by_node.get(&rec.node.node_id) {
            Some(old) if old.version >= rec.version => return None,
            Some(old) => old.networks.clone(),
            None => BTreeSet::new(),
        };
        for n in old.difference(&rec.networks) {
            if let Some(set) = self.index.get_mut(n) {
                set.remove(&rec.node.node_id);
                if set.is_empty() {
                    self.index.remove(n);
                }
            }
        }
        for n in &rec.networks {
            self.index
                .entry(n.clone())
                .or_default()
                .insert(rec.node.node_id.clone());
        }
        self.by_node.insert(rec.node.node_id.clone(), rec.clone());
        Some(old)
    }

    /// Node IDs attached to `network`, in order.
    pub fn nodes_on(&self, network: &str) -> impl Iterator<Item = &String> {
        self.index.get(network).into_iter().flatten()
    }
}

/// foca disseminates attachment records cluster-wide as its custom broadcasts.
pub struct AttachHandler(pub Arc<Mutex<AttachTable>>);

/// A broadcast invalidates an older one for the same node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachKey(String);

impl foca::Invalidates for AttachKey {
    fn invalidates(&self, other: &Self) -> bool {
        self == other
    }
}

#[derive(Debug, thiserror::Error)]
#[error("malformed attachment record")]
pub struct BadAttach;

impl foca::BroadcastHandler<NodeIdentity> for AttachHandler {
    type Key = AttachKey;
    type Error = BadAttach;

    fn receive_item(
        &mut self,
        data: &[u8],
        _sender: Option<&NodeIdentity>,
    ) -> Result<Option<AttachKey>, BadAttach> {
        let rec: AttachRecord = postcard::from_bytes(data).map_err(|_| BadAttach)?;
        // A poisoned lock means a panic elsewhere already; refuse rather than panic again.
        let mut t = self.0.lock().map_err(|_| BadAttach)?;
        if let Some(old) = t.apply(&rec) {
            let key = AttachKey(rec.node.node_id.clone());
            t.fresh.push((rec, old));
            Ok(Some(key))
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ip: u8) -> EndpointEntry {
        EndpointEntry {
            task_id: "t".into(),
            task_name: "web.1.t".into(),
            service_id: "s".into(),
            service_name: "web".into(),
            ip: Ipv4Addr::new(10, 0, 0, ip),
            mac: [2, 0, 0, 0, 0, ip],
            vtep: Ipv4Addr::new(192, 168, 0, 1),
            aliases: vec![],
            state: EndpointState::Running,
        }
    }

    fn rec(clock: u64, value: Option<EndpointEntry>) -> Record {
        Record {
            network: "n".into(),
            endpoint_id: "e".into(),
            origin: "a".into(),
            version: Version { bump: 0, clock },
            value,
        }
    }

    #[test]
    fn newer_wins_older_is_stale_tombstone_removes_then_gc() {
        let now = Instant::now();
        let mut t = NetworkTable::default();
        assert_eq!(
            t.apply(&rec(2, Some(entry(2))), now),
            Applied::Upserted(entry(2))
        );
        assert_eq!(t.apply(&rec(1, Some(entry(1))), now), Applied::Stale);
        assert_eq!(t.apply(&rec(2, Some(entry(1))), now), Applied::Stale);
        assert_eq!(t.apply(&rec(3, None), now), Applied::Removed(entry(2)));
        assert!(t.is_empty());
        // The tombstone still blocks an older live record.
        assert_eq!(t.apply(&rec(2, Some(entry(2))), now), Applied::Stale);
        let later = now + std::time::Duration::from_secs(10);
        assert_eq!(
            t.collect_garbage(later, std::time::Duration::from_secs(60)),
            0
        );
        assert_eq!(
            t.collect_garbage(later, std::time::Duration::from_secs(5)),
            1
        );
    }

    #[test]
    fn restart_bump_beats_a_larger_counter() {
        let now = Instant::now();
        let mut t = NetworkTable::default();
        t.apply(&rec(100, Some(entry(1))), now);
        let mut r = rec(1, Some(entry(9)));
        r.version.bump = 1;
        assert_eq!(t.apply(&r, now), Applied::Upserted(entry(9)));
    }
}
