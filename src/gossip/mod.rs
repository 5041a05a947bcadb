//! Gossip: node membership, failure detection, and network-scoped endpoint tables spread between
//! nodes, every message sealed under the swarm's keys (Docker's NetworkDB over memberlist, here
//! foca's SWIM plus our own tables).
//!
//! Sans-IO like `wire/` and `dataplane/`: time, the seed and received bytes come in as arguments,
//! what to send comes out of [`Gossip::poll_transmit`], what changed out of [`Gossip::poll_event`].
//! Invariants:
//! - a table row is written only by its origin node; others apply it if its version is newer;
//! - rows of a node declared down are withdrawn locally by every peer, and ignored until the node
//!   is up again (then it is asked for its state);
//! - nothing that arrives is acted on before it is opened (key tag, GCM tag), decoded, checked
//!   against the membership and against the sender's replay window; every refusal is counted.

mod config;
mod identity;
mod message;
mod seal;
pub mod sim;
mod table;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use foca::{Foca, Notification, OwnedNotification, PostcardCodec, Runtime, Timer};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use config::GossipConfig;
pub use identity::NodeIdentity;
pub use message::{Body, Digest, Envelope};
pub use seal::{DropReason, KeyError, Keyring, ReplayWindow};
pub use table::{AttachRecord, EndpointEntry, EndpointState, NetworkTable, Record, Version};

use seal::ReplayGuard;
use table::{Applied, AttachHandler, AttachTable};

/// Bytes a sealed datagram spends besides the body: seal header and tag, the envelope's sender
/// and the body's framing. Generous, so that the sealed result stays under `max_datagram`.
const OVERHEAD: usize = 17 + 16 + 128;

/// Room for a SWIM message's own header (two node identities, an incarnation, the message)
/// beside a broadcast: a broadcast larger than a datagram less this never leaves (found
/// between daemons: 45 networks' attachment record did not spread, 40 did).
const SWIM_HEADER: usize = 128;

/// How a transmit must travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// One datagram.
    Udp,
    /// One length-delimited message on a TCP stream (large full-state exchanges).
    Tcp,
}

/// Something to send.
#[derive(Debug, Clone)]
pub struct Transmit {
    pub to: SocketAddr,
    pub transport: Transport,
    pub payload: Vec<u8>,
}

/// What the gossip learnt, for the data plane and the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    MemberUp(NodeIdentity),
    MemberDown(NodeIdentity),
    /// A remote endpoint appeared or changed.
    EndpointAdded {
        network: String,
        endpoint_id: String,
        entry: EndpointEntry,
    },
    /// A remote endpoint went (deleted by its node, its node down, or it left the network).
    EndpointRemoved {
        network: String,
        endpoint_id: String,
        entry: EndpointEntry,
    },
}

/// A local change the core refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GossipError {
    #[error("this node is not attached to network {0}; set_local_networks first")]
    NotAttached(String),
    #[error("the attachment record ({0} bytes) does not fit a gossip datagram; too many networks on one node")]
    TooManyNetworks(usize),
}

/// Counters of traffic and refusals.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub sent_msgs: u64,
    pub sent_bytes: u64,
    pub recv_msgs: u64,
    pub recv_bytes: u64,
    dropped: [u64; 5],
}

impl Stats {
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize]
    }
}

/// foca's outputs, collected during one call.
#[derive(Default)]
struct Out {
    sends: Vec<(NodeIdentity, Vec<u8>)>,
    timers: Vec<(Duration, Timer<NodeIdentity>)>,
    notes: Vec<OwnedNotification<NodeIdentity>>,
}

impl Runtime<NodeIdentity> for Out {
    fn notify(&mut self, n: Notification<'_, NodeIdentity>) {
        self.notes.push(n.to_owned());
    }
    fn send_to(&mut self, to: NodeIdentity, data: &[u8]) {
        self.sends.push((to, data.to_vec()));
    }
    fn submit_after(&mut self, t: Timer<NodeIdentity>, after: Duration) {
        self.timers.push((after, t));
    }
}

type Swim = Foca<NodeIdentity, PostcardCodec, ChaCha8Rng, AttachHandler>;

/// The gossip state machine of one node.
pub struct Gossip {
    me: NodeIdentity,
    cfg: GossipConfig,
    foca: Swim,
    timers: BTreeMap<(Instant, u64), Timer<NodeIdentity>>,
    timer_seq: u64,
    rng: ChaCha8Rng,
    keyring: Keyring,
    salt: u32,
    seq: u64,
    replay: ReplayGuard,
    attach: Arc<Mutex<AttachTable>>,
    /// Our Lamport counter for our rows and attachment records.
    clock: u64,
    tables: BTreeMap<String, NetworkTable>,
    /// network -> (endpoint ID -> transmits left), rows we still have to spread.
    queue: BTreeMap<String, BTreeMap<String, u32>>,
    /// Live members by node ID.
    active: BTreeMap<String, NodeIdentity>,
    /// Node IDs declared down, with the bump that was declared down.
    down: BTreeMap<String, u32>,
    /// Join peers we still owe a full attachment exchange.
    join_pending: BTreeSet<SocketAddr>,
    /// Networks we joined but have not pulled yet.
    needs_pull: BTreeSet<String>,
    /// The tombstones of our rows on networks we left, kept for the tombstone TTL: if we join
    /// one again they go back into its table, so that a peer that missed the leave (and so
    /// still holds the rows, with an attachment that lists the network again) is corrected.
    farewells: BTreeMap<String, (Instant, Vec<Record>)>,
    /// Networks pulled once at join, and when to pull them again.
    repull: BTreeMap<String, Instant>,
    swarm_nodes: Option<BTreeSet<String>>,
    next_gossip: Option<Instant>,
    next_sync: Option<Instant>,
    next_gc: Option<Instant>,
    next_member_sync: Option<Instant>,
    sync_turn: usize,
    applied_suspicion: Duration,
    applied_max_tx: std::num::NonZeroU8,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
}

impl Gossip {
    /// A node that knows nobody yet. `seed` feeds every random choice (probe order, peers,
    /// nonce salt), so a run is reproducible.
    pub fn new(me: NodeIdentity, keyring: Keyring, cfg: GossipConfig, seed: u64) -> Self {
        let attach = Arc::new(Mutex::new(AttachTable::default()));
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let foca_rng = ChaCha8Rng::seed_from_u64(rng.next_u64());
        let salt = rng.next_u32();
        let suspicion = cfg.suspicion(1);
        let fc = foca_config(&cfg, 1, suspicion);
        let applied_max_tx = fc.max_transmissions;
        let foca = Foca::with_custom_broadcast(
            me.clone(),
            fc,
            foca_rng,
            PostcardCodec,
            AttachHandler(attach.clone()),
        );
        let seq = cfg.seq_base;
        Self {
            me,
            cfg,
            foca,
            timers: BTreeMap::new(),
            timer_seq: 0,
            rng,
            keyring,
            salt,
            seq,
            replay: ReplayGuard::default(),
            attach,
            clock: 0,
            tables: BTreeMap::new(),
            queue: BTreeMap::new(),
            active: BTreeMap::new(),
            down: BTreeMap::new(),
            join_pending: BTreeSet::new(),
            needs_pull: BTreeSet::new(),
            farewells: BTreeMap::new(),
            repull: BTreeMap::new(),
            swarm_nodes: None,
            next_gossip: None,
            next_sync: None,
            next_gc: None,
            next_member_sync: None,
            sync_turn: 0,
            applied_suspicion: suspicion,
            applied_max_tx,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    pub fn identity(&self) -> &NodeIdentity {
        &self.me
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Live members other than us.
    pub fn members(&self) -> impl Iterator<Item = &NodeIdentity> {
        self.active.values()
    }

    pub fn is_member_up(&self, node_id: &str) -> bool {
        self.active.contains_key(node_id)
    }

    /// The suspicion timeout in force (it follows the cluster's size).
    pub fn suspicion_timeout(&self) -> Duration {
        self.applied_suspicion
    }

    /// The endpoints of `network` (ours and remote), if we are on it.
    pub fn table(&self, network: &str) -> Option<&NetworkTable> {
        self.tables.get(network)
    }

    /// The manager-provided list of the swarm's node IDs: messages from any other node are
    /// dropped as `NotMember`. `None` accepts any holder of the keys.
    pub fn set_swarm_nodes(&mut self, nodes: Option<BTreeSet<String>>) {
        self.swarm_nodes = nodes;
    }

    /// Replace the keyring (after a rotation by the managers).
    pub fn set_keyring(&mut self, keyring: Keyring) {
        self.keyring = keyring;
    }

    /// Join the cluster through these peers (node ID, gossip address).
    pub fn join(&mut self, peers: &[(String, SocketAddr)], now: Instant) {
        self.start_clocks(now);
        let mut out = Out::default();
        for (id, addr) in peers {
            if *addr == self.me.addr {
                continue;
            }
            self.join_pending.insert(*addr);
            // The bump is unknown until the peer answers; foca matches members by address.
            let _ = self
                .foca
                .announce(NodeIdentity::new(id.clone(), *addr, 0), &mut out);
        }
        self.absorb(out, now);
    }

    /// Leave the cluster: a few members are told that this node is down, so every peer
    /// withdraws its rows at once instead of after the suspicion timeout. The core answers
    /// nothing afterwards; a node that comes back is a new instance (a higher bump).
    pub fn leave(&mut self, now: Instant) {
        let mut out = Out::default();
        let _ = self.foca.leave_cluster(&mut out);
        self.absorb(out, now);
    }

    /// The networks this node has tasks on. Joining a network pulls its table from a peer;
    /// leaving one drops its table and tells the cluster.
    pub fn set_local_networks(
        &mut self,
        networks: BTreeSet<String>,
        now: Instant,
    ) -> Result<(), GossipError> {
        self.start_clocks(now);
        let leaving: Vec<String> = self
            .tables
            .keys()
            .filter(|n| !networks.contains(*n))
            .cloned()
            .collect();
        // Our live rows on the networks we leave each get a tombstone, written before the
        // attachment record so that its version is above theirs.
        let ours: Vec<(String, String)> = leaving
            .iter()
            .filter_map(|net| self.tables.get(net).map(|t| (net, t)))
            .flat_map(|(net, t)| {
                t.live_of(&self.me.node_id)
                    .map(move |id| (net.clone(), id.to_string()))
            })
            .collect();
        let rec = AttachRecord {
            node: self.me.clone(),
            version: Version {
                bump: self.me.bump,
                clock: self.clock + ours.len() as u64 + 1,
            },
            networks: networks.clone(),
        };
        let bytes = postcard::to_allocvec(&rec).unwrap_or_default();
        // It rides as a custom broadcast in a SWIM message, behind the message's header.
        if bytes.len() + OVERHEAD + SWIM_HEADER > self.cfg.max_datagram {
            return Err(GossipError::TooManyNetworks(bytes.len()));
        }
        // The tombstones go at once to every live node on their network, besides the record's
        // broadcast: either tells a peer that the rows went, and a peer that misses both
        // learns it from the member exchange's attachments.
        let mut farewell: BTreeMap<String, Vec<Record>> = BTreeMap::new();
        for (net, id) in ours {
            self.clock += 1;
            farewell.entry(net.clone()).or_default().push(Record {
                network: net,
                endpoint_id: id,
                origin: self.me.node_id.clone(),
                version: Version {
                    bump: self.me.bump,
                    clock: self.clock,
                },
                value: None,
            });
        }
        for (net, records) in farewell {
            let peers = self.peers_on(&net);
            self.send_rows(&peers, records.clone());
            let kept = self
                .farewells
                .entry(net)
                .or_insert_with(|| (now, Vec::new()));
            kept.0 = now;
            kept.1
                .retain(|old| !records.iter().any(|r| r.endpoint_id == old.endpoint_id));
            kept.1.extend(records);
        }
        self.clock = rec.version.clock;
        // add_broadcast hands the record to our own handler, which stores it, then queues it for
        // dissemination; what it leaves in `fresh` is ours and needs no action.
        let _ = self.foca.add_broadcast(&bytes);
        self.lock_attach().fresh.clear();
        for net in leaving {
            if let Some(t) = self.tables.remove(&net) {
                for (id, entry) in t.iter() {
                    self.events.push_back(Event::EndpointRemoved {
                        network: net.clone(),
                        endpoint_id: id.to_string(),
                        entry: entry.clone(),
                    });
                }
            }
            self.queue.remove(&net);
            self.needs_pull.remove(&net);
            self.repull.remove(&net);
        }
        for net in networks {
            if !self.tables.contains_key(&net) {
                let mut table = NetworkTable::default();
                let farewell = self.farewells.remove(&net).map(|(_, r)| r);
                for rec in farewell.iter().flatten() {
                    table.apply(rec, now);
                }
                self.tables.insert(net.clone(), table);
                for rec in farewell.iter().flatten() {
                    self.enqueue(&net, &rec.endpoint_id);
                }
                self.needs_pull.insert(net);
            }
        }
        self.pull_new_networks(now);
        Ok(())
    }

    /// Add or change one of our endpoints; it spreads to the network's nodes.
    pub fn upsert_local_endpoint(
        &mut self,
        network: &str,
        endpoint_id: &str,
        entry: EndpointEntry,
        now: Instant,
    ) -> Result<(), GossipError> {
        self.write_local(network, endpoint_id, Some(entry), now)
    }

    /// Delete one of our endpoints (a tombstone spreads).
    pub fn remove_local_endpoint(
        &mut self,
        network: &str,
        endpoint_id: &str,
        now: Instant,
    ) -> Result<(), GossipError> {
        self.write_local(network, endpoint_id, None, now)
    }

    fn write_local(
        &mut self,
        network: &str,
        endpoint_id: &str,
        value: Option<EndpointEntry>,
        now: Instant,
    ) -> Result<(), GossipError> {
        self.start_clocks(now);
        let Some(table) = self.tables.get_mut(network) else {
            return Err(GossipError::NotAttached(network.to_string()));
        };
        self.clock += 1;
        let rec = Record {
            network: network.to_string(),
            endpoint_id: endpoint_id.to_string(),
            origin: self.me.node_id.clone(),
            version: Version {
                bump: self.me.bump,
                clock: self.clock,
            },
            value,
        };
        if table.apply(&rec, now) != Applied::Stale {
            self.enqueue(network, endpoint_id);
        }
        Ok(())
    }

    /// A datagram arrived from `from`.
    pub fn handle_datagram(
        &mut self,
        from: SocketAddr,
        bytes: &[u8],
        now: Instant,
    ) -> Result<(), DropReason> {
        self.receive(from, bytes, now, Transport::Udp)
    }

    /// A whole message arrived on a TCP stream from `from`.
    pub fn handle_stream_message(
        &mut self,
        from: SocketAddr,
        bytes: &[u8],
        now: Instant,
    ) -> Result<(), DropReason> {
        self.receive(from, bytes, now, Transport::Tcp)
    }

    /// When [`Gossip::handle_timeout`] wants to be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let foca = self.timers.keys().next().map(|(t, _)| *t);
        [
            foca,
            self.next_gossip,
            self.next_sync,
            self.next_gc,
            self.next_member_sync,
            self.repull.values().min().copied(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Run whatever is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let timer = entry.remove();
            let mut out = Out::default();
            let _ = self.foca.handle_timer(timer, &mut out);
            self.absorb(out, now);
        }
        if self.next_gossip.is_some_and(|t| t <= now) {
            self.next_gossip = Some(now + self.cfg.gossip_interval);
            self.gossip_tables();
        }
        if self.next_sync.is_some_and(|t| t <= now) {
            self.next_sync = Some(now + self.cfg.sync_interval);
            self.anti_entropy(now);
        }
        let due: Vec<String> = self
            .repull
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(n, _)| n.clone())
            .collect();
        for net in due {
            self.repull.remove(&net);
            let peers = self.peers_on(&net);
            if let Some(p) = self.pick(peers, 1).pop() {
                self.send_push_pull(&net, p.addr, false);
            }
        }
        if self.next_member_sync.is_some_and(|t| t <= now) {
            let live = self.active.len() + 1;
            self.next_member_sync = Some(now + self.cfg.member_sync_period(live));
            let peers: Vec<NodeIdentity> = self.active.values().cloned().collect();
            if let Some(p) = self.pick(peers, 1).pop() {
                let digest = Digest::Hash(self.attach_hash());
                self.send_cluster_sync(p.addr, false, Vec::new(), Some(digest));
            }
        }
        if self.next_gc.is_some_and(|t| t <= now) {
            self.next_gc = Some(now + self.cfg.tombstone_ttl / 4);
            for t in self.tables.values_mut() {
                t.collect_garbage(now, self.cfg.tombstone_ttl);
            }
            let ttl = self.cfg.tombstone_ttl;
            self.farewells
                .retain(|_, (at, _)| now.saturating_duration_since(*at) < ttl);
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ---- receiving ----

    fn receive(
        &mut self,
        from: SocketAddr,
        bytes: &[u8],
        now: Instant,
        transport: Transport,
    ) -> Result<(), DropReason> {
        self.stats.recv_msgs += 1;
        self.stats.recv_bytes += bytes.len() as u64;
        let r = self.receive_inner(from, bytes, now, transport);
        if let Err(reason) = r {
            self.stats.dropped[reason as usize] += 1;
            tracing::trace!(node = %self.me.node_id, %from, reason = reason.as_str(), "gossip message dropped");
        }
        r
    }

    fn receive_inner(
        &mut self,
        _from: SocketAddr,
        bytes: &[u8],
        now: Instant,
        transport: Transport,
    ) -> Result<(), DropReason> {
        self.start_clocks(now);
        let (seq, plain) = self.keyring.open(bytes)?;
        let env: Envelope = postcard::from_bytes(&plain).map_err(|_| DropReason::Malformed)?;
        let sender = env.sender;
        if sender.node_id == self.me.node_id {
            return Err(DropReason::Malformed);
        }
        if let Some(list) = &self.swarm_nodes {
            if !list.contains(&sender.node_id) {
                return Err(DropReason::NotMember);
            }
        }
        // A node the cluster declared down may still talk SWIM (foca tells it to renew), but its
        // table traffic would bring back what was withdrawn.
        let declared_down = self
            .down
            .get(&sender.node_id)
            .is_some_and(|b| (sender.bump.wrapping_sub(*b) as i32) <= 0);
        if declared_down && !matches!(env.body, Body::Swim(_)) {
            return Err(DropReason::NotMember);
        }
        if !self.replay.check_and_set(&sender.node_id, seq) {
            return Err(DropReason::Replay);
        }
        match env.body {
            Body::Swim(data) => {
                let mut out = Out::default();
                let r = self.foca.handle_data(&data, &mut out);
                self.absorb(out, now);
                r.map_err(|_| DropReason::Malformed)?;
            }
            Body::Table(records) => {
                if transport != Transport::Udp {
                    return Err(DropReason::Malformed);
                }
                for rec in &records {
                    self.apply_remote(rec, now, true);
                }
            }
            Body::PushPull {
                network,
                records,
                attachments,
                reply,
            } => {
                self.apply_attachments(&attachments, now);
                if self.tables.contains_key(&network) {
                    for rec in records.iter().filter(|r| r.network == network) {
                        self.apply_remote(rec, now, false);
                    }
                    // A peer's push does not count as our pull: it may have joined as early as us.
                    if !reply {
                        self.send_push_pull(&network, sender.addr, true);
                    }
                }
            }
            Body::RowsRequest { networks } => {
                let own = self.lock_attach().by_node.get(&self.me.node_id).cloned();
                for net in networks {
                    let Some(t) = self.tables.get(&net) else {
                        continue;
                    };
                    let records: Vec<Record> = t
                        .records(&net)
                        .into_iter()
                        .filter(|r| r.origin == self.me.node_id)
                        .collect();
                    self.send(
                        sender.addr,
                        Transport::Tcp,
                        Body::PushPull {
                            network: net,
                            records,
                            attachments: own.iter().cloned().collect(),
                            reply: true,
                        },
                    );
                }
            }
            Body::ClusterSync {
                attachments,
                members,
                reply,
                digest,
            } => {
                self.apply_attachments(&attachments, now);
                let mut out = Out::default();
                let _ = self.foca.apply_many(
                    members
                        .into_iter()
                        .filter(|m| m.node_id != self.me.node_id)
                        .map(foca::Member::alive),
                    false,
                    &mut out,
                );
                self.absorb(out, now);
                // A join's exchange carries the whole attachment table. A periodic one carries
                // a hash of it; where the tables differ, each side sends its records of the
                // buckets that differ (see `Digest`).
                match (reply, digest) {
                    (false, None) => {
                        let all = if attachments.is_empty() {
                            Vec::new()
                        } else {
                            self.lock_attach().by_node.values().cloned().collect()
                        };
                        self.send_cluster_sync(sender.addr, true, all, None);
                    }
                    (false, Some(Digest::Hash(h))) => {
                        let ours = (h != self.attach_hash())
                            .then(|| Digest::Buckets(self.attach_buckets()));
                        self.send_cluster_sync(sender.addr, true, Vec::new(), ours);
                    }
                    (true, Some(Digest::Buckets(theirs))) => {
                        // Answered even with no records of ours in the buckets that differ: the
                        // other side may hold records we lack there.
                        let ours = self.attach_buckets();
                        if ours != theirs {
                            let differing = self.attachments_differing(&ours, &theirs);
                            self.send_attachments(sender.addr, differing, Some(Digest::Last(ours)));
                        }
                    }
                    (true, Some(Digest::Last(theirs))) => {
                        let ours = self.attach_buckets();
                        let differing = self.attachments_differing(&ours, &theirs);
                        if !differing.is_empty() {
                            self.send_attachments(sender.addr, differing, None);
                        }
                    }
                    (false, Some(_)) => self.send_cluster_sync(sender.addr, true, Vec::new(), None),
                    (true, _) => {}
                }
                self.pull_new_networks(now);
            }
        }
        Ok(())
    }

    fn apply_remote(&mut self, rec: &Record, now: Instant, spread: bool) {
        if rec.origin == self.me.node_id || self.down.contains_key(&rec.origin) {
            return;
        }
        if self.left_before(rec) {
            return;
        }
        let Some(table) = self.tables.get_mut(&rec.network) else {
            return;
        };
        let applied = table.apply(rec, now);
        match applied {
            Applied::Stale => return,
            Applied::Quiet => {}
            Applied::Upserted(entry) => self.events.push_back(Event::EndpointAdded {
                network: rec.network.clone(),
                endpoint_id: rec.endpoint_id.clone(),
                entry,
            }),
            Applied::Removed(entry) => self.events.push_back(Event::EndpointRemoved {
                network: rec.network.clone(),
                endpoint_id: rec.endpoint_id.clone(),
                entry,
            }),
        }
        if spread {
            self.enqueue(&rec.network, &rec.endpoint_id);
        }
    }

    /// Whether `rec` was written before its origin's latest attachment we hold, which leaves
    /// its network out: the origin's rows there were withdrawn, and a peer that missed the
    /// leave must not bring them back. Rows and attachments share the origin's clock, so a row
    /// written after the origin joined the network again is newer and stays.
    fn left_before(&self, rec: &Record) -> bool {
        self.lock_attach()
            .by_node
            .get(&rec.origin)
            .is_some_and(|a| a.version >= rec.version && !a.networks.contains(&rec.network))
    }

    fn apply_attachments(&mut self, recs: &[AttachRecord], now: Instant) {
        let mut fresh = Vec::new();
        {
            let mut t = self.lock_attach();
            for r in recs {
                if r.node.node_id == self.me.node_id {
                    continue;
                }
                if let Some(old) = t.apply(r) {
                    fresh.push((r.clone(), old));
                }
            }
        }
        self.on_fresh_attachments(fresh, now);
    }

    /// A node left networks: its rows there go.
    fn on_fresh_attachments(
        &mut self,
        fresh: Vec<(AttachRecord, BTreeSet<String>)>,
        _now: Instant,
    ) {
        for (rec, old) in fresh {
            for net in old.difference(&rec.networks) {
                if let Some(t) = self.tables.get_mut(net) {
                    for (id, entry) in t.withdraw_origin(&rec.node.node_id) {
                        self.events.push_back(Event::EndpointRemoved {
                            network: net.clone(),
                            endpoint_id: id,
                            entry,
                        });
                    }
                }
            }
        }
    }

    // ---- foca's outputs ----

    fn absorb(&mut self, out: Out, now: Instant) {
        for (to, data) in out.sends {
            self.send(to.addr, Transport::Udp, Body::Swim(data));
        }
        for (after, timer) in out.timers {
            self.timer_seq += 1;
            self.timers.insert((now + after, self.timer_seq), timer);
        }
        for note in out.notes {
            self.on_notification(note, now);
        }
        let fresh = std::mem::take(&mut self.lock_attach().fresh);
        if !fresh.is_empty() {
            self.on_fresh_attachments(fresh, now);
            self.pull_new_networks(now);
        }
    }

    fn on_notification(&mut self, note: OwnedNotification<NodeIdentity>, now: Instant) {
        match note {
            OwnedNotification::MemberUp(id) => self.member_up(id, now),
            OwnedNotification::Rename(_, new) => self.member_up(new, now),
            OwnedNotification::MemberDown(id) => {
                if self.active.get(&id.node_id) != Some(&id) {
                    return; // an older instance of a node that is back already
                }
                self.active.remove(&id.node_id);
                self.down.insert(id.node_id.clone(), id.bump);
                self.replay.forget(&id.node_id);
                for (net, t) in self.tables.iter_mut() {
                    for (eid, entry) in t.withdraw_origin(&id.node_id) {
                        self.events.push_back(Event::EndpointRemoved {
                            network: net.clone(),
                            endpoint_id: eid,
                            entry,
                        });
                    }
                }
                tracing::debug!(node = %self.me.node_id, down = %id.node_id, "gossip member down, its endpoints withdrawn");
                self.events.push_back(Event::MemberDown(id));
                self.resize();
            }
            OwnedNotification::Rejoin(new_me) => {
                // The cluster declared us down and foca renewed us: peers withdrew our rows and
                // will pull them again when they see us up.
                self.me = new_me;
            }
            _ => {}
        }
    }

    fn member_up(&mut self, id: NodeIdentity, _now: Instant) {
        let was_down = self.down.remove(&id.node_id).is_some();
        let known = self.active.insert(id.node_id.clone(), id.clone());
        if known.as_ref() == Some(&id) {
            return;
        }
        if self.join_pending.remove(&id.addr) {
            let all = self.lock_attach().by_node.values().cloned().collect();
            self.send_cluster_sync(id.addr, false, all, None);
        }
        if was_down {
            // Its rows were withdrawn here: ask it for them (only its own, not its whole tables:
            // every peer asks at once).
            let shared: Vec<String> = {
                let t = self.lock_attach();
                t.by_node
                    .get(&id.node_id)
                    .map(|r| {
                        r.networks
                            .iter()
                            .filter(|n| self.tables.contains_key(*n))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default()
            };
            if !shared.is_empty() {
                self.send(
                    id.addr,
                    Transport::Tcp,
                    Body::RowsRequest { networks: shared },
                );
            }
        }
        self.events.push_back(Event::MemberUp(id));
        self.resize();
    }

    /// Follow the cluster's size: suspicion timeout and foca's retransmits.
    fn resize(&mut self) {
        let live = self.active.len() + 1;
        let suspicion = self.cfg.suspicion(live);
        let c = foca_config(&self.cfg, live, suspicion);
        if (suspicion, c.max_transmissions) != (self.applied_suspicion, self.applied_max_tx)
            && self.foca.set_config(c.clone()).is_ok()
        {
            self.applied_suspicion = suspicion;
            self.applied_max_tx = c.max_transmissions;
        }
    }

    // ---- sending ----

    fn send(&mut self, to: SocketAddr, transport: Transport, body: Body) {
        let env = Envelope {
            sender: self.me.clone(),
            body,
        };
        let Ok(plain) = postcard::to_allocvec(&env) else {
            return;
        };
        let seq = self.seq;
        self.seq += 1;
        let payload = self.keyring.seal(self.salt, seq, &plain);
        self.stats.sent_msgs += 1;
        self.stats.sent_bytes += payload.len() as u64;
        self.transmits.push_back(Transmit {
            to,
            transport,
            payload,
        });
    }

    /// The attachment table in [`DIGEST_BUCKETS`] buckets by node ID, a hash of each: two
    /// nodes that hold the same versions of a bucket's records have the same hash for it.
    fn attach_buckets(&self) -> Vec<u32> {
        let mut ctx: Vec<ring::digest::Context> = (0..DIGEST_BUCKETS)
            .map(|_| ring::digest::Context::new(&ring::digest::SHA256))
            .collect();
        for (id, r) in &self.lock_attach().by_node {
            let h = &mut ctx[bucket_of(id)];
            h.update(&(id.len() as u32).to_le_bytes());
            h.update(id.as_bytes());
            h.update(&r.version.bump.to_le_bytes());
            h.update(&r.version.clock.to_le_bytes());
        }
        ctx.into_iter()
            .map(|c| first_u64(c.finish().as_ref()) as u32)
            .collect()
    }

    /// One hash of the whole table (of its buckets' hashes).
    fn attach_hash(&self) -> u64 {
        let mut h = ring::digest::Context::new(&ring::digest::SHA256);
        for b in self.attach_buckets() {
            h.update(&b.to_le_bytes());
        }
        first_u64(h.finish().as_ref())
    }

    /// Our attachment records in the buckets whose hash (`ours`, from
    /// [`Gossip::attach_buckets`]) differs from `theirs`.
    fn attachments_differing(&self, ours: &[u32], theirs: &[u32]) -> Vec<AttachRecord> {
        let differ: Vec<bool> = (0..DIGEST_BUCKETS)
            .map(|i| theirs.get(i) != ours.get(i))
            .collect();
        self.lock_attach()
            .by_node
            .iter()
            .filter(|(id, _)| differ[bucket_of(id)])
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Attachment records alone, in answer to a digest.
    fn send_attachments(
        &mut self,
        to: SocketAddr,
        attachments: Vec<AttachRecord>,
        digest: Option<Digest>,
    ) {
        self.send(
            to,
            Transport::Tcp,
            Body::ClusterSync {
                attachments,
                members: Vec::new(),
                reply: true,
                digest,
            },
        );
    }

    /// Our members, and the attachments given, with a digest of ours if given.
    fn send_cluster_sync(
        &mut self,
        to: SocketAddr,
        reply: bool,
        attachments: Vec<AttachRecord>,
        digest: Option<Digest>,
    ) {
        let mut members: Vec<NodeIdentity> = self.active.values().cloned().collect();
        members.push(self.me.clone());
        self.send(
            to,
            Transport::Tcp,
            Body::ClusterSync {
                attachments,
                members,
                reply,
                digest,
            },
        );
    }

    fn send_push_pull(&mut self, network: &str, to: SocketAddr, reply: bool) {
        let Some(table) = self.tables.get(network) else {
            return;
        };
        let records = table.records(network);
        let attachments: Vec<AttachRecord> = {
            let t = self.lock_attach();
            t.nodes_on(network)
                .filter_map(|n| t.by_node.get(n).cloned())
                .collect()
        };
        self.send(
            to,
            Transport::Tcp,
            Body::PushPull {
                network: network.to_string(),
                records,
                attachments,
                reply,
            },
        );
    }

    /// Live peers on `network`, in node ID order.
    fn peers_on(&self, network: &str) -> Vec<NodeIdentity> {
        let t = self.lock_attach();
        t.nodes_on(network)
            .filter_map(|n| self.active.get(n).cloned())
            .collect()
    }

    fn pick<T>(&mut self, mut v: Vec<T>, k: usize) -> Vec<T> {
        // Partial Fisher-Yates from our seeded RNG.
        let k = k.min(v.len());
        for i in 0..k {
            let j = i + (self.rng.next_u64() % (v.len() - i) as u64) as usize;
            v.swap(i, j);
        }
        v.truncate(k);
        v
    }

    fn enqueue(&mut self, network: &str, endpoint_id: &str) {
        let n = self.lock_attach().nodes_on(network).count();
        let tx = self.cfg.retransmits(n.max(1));
        self.queue
            .entry(network.to_string())
            .or_default()
            .insert(endpoint_id.to_string(), tx);
    }

    /// Rows to each of `peers`, in as many datagrams as they need.
    fn send_rows(&mut self, peers: &[NodeIdentity], records: Vec<Record>) {
        let budget = self.cfg.max_datagram.saturating_sub(OVERHEAD);
        let mut batches: Vec<Vec<Record>> = vec![Vec::new()];
        let mut size = 0;
        for rec in records {
            let len = postcard::to_allocvec(&rec).map(|v| v.len()).unwrap_or(0);
            if size + len > budget && batches.last().is_some_and(|b| !b.is_empty()) {
                batches.push(Vec::new());
                size = 0;
            }
            size += len;
            if let Some(b) = batches.last_mut() {
                b.push(rec);
            }
        }
        for batch in batches.into_iter().filter(|b| !b.is_empty()) {
            for p in peers {
                self.send(p.addr, Transport::Udp, Body::Table(batch.clone()));
            }
        }
    }

    /// One round of table gossip: each network with pending rows sends them to a few peers.
    fn gossip_tables(&mut self) {
        let nets: Vec<String> = self.queue.keys().cloned().collect();
        let budget = self.cfg.max_datagram.saturating_sub(OVERHEAD);
        for net in nets {
            let peers = self.peers_on(&net);
            if peers.is_empty() {
                // Nobody to tell yet: the rows wait for the first peer on the network.
                continue;
            }
            let peers = self.pick(peers, self.cfg.gossip_fanout);
            let Some(q) = self.queue.get(&net) else {
                continue;
            };
            let Some(table) = self.tables.get(&net) else {
                self.queue.remove(&net);
                continue;
            };
            // Fullest-first would starve nothing here: rows wait at most a few rounds.
            let mut batch = Vec::new();
            let mut size = 0;
            for id in q.keys() {
                let Some(rec) = table.record(&net, id) else {
                    continue;
                };
                let len = postcard::to_allocvec(&rec).map(|v| v.len()).unwrap_or(0);
                if size + len > budget && !batch.is_empty() {
                    break;
                }
                size += len;
                batch.push(rec);
            }
            let ids: Vec<String> = batch.iter().map(|r| r.endpoint_id.clone()).collect();
            for p in &peers {
                self.send(p.addr, Transport::Udp, Body::Table(batch.clone()));
            }
            if let Some(q) = self.queue.get_mut(&net) {
                for id in ids {
                    let left = q.get(&id).copied().unwrap_or(0);
                    let left = left.saturating_sub(peers.len() as u32);
                    if left == 0 {
                        q.remove(&id);
                    } else {
                        q.insert(id, left);
                    }
                }
                if q.is_empty() {
                    self.queue.remove(&net);
                }
            }
        }
    }

    /// One anti-entropy round: the next of our networks exchanges its full state with a random
    /// peer on it; networks never pulled go first.
    fn anti_entropy(&mut self, now: Instant) {
        self.pull_new_networks(now);
        let nets: Vec<String> = self.tables.keys().cloned().collect();
        if nets.is_empty() {
            return;
        }
        self.sync_turn = (self.sync_turn + 1) % nets.len();
        let net = nets[self.sync_turn].clone();
        let peers = self.peers_on(&net);
        if let Some(p) = self.pick(peers, 1).pop() {
            self.send_push_pull(&net, p.addr, false);
        }
    }

    /// Networks we have not pulled yet: ask a live peer on each, if we know one.
    /// Each is pulled a second time `repull_after` later, from another random peer: nodes that
    /// joined at the same moment spread their rows before they knew of each other.
    fn pull_new_networks(&mut self, now: Instant) {
        let nets: Vec<String> = self.needs_pull.iter().cloned().collect();
        for net in nets {
            let peers = self.peers_on(&net);
            if let Some(p) = self.pick(peers, 1).pop() {
                self.send_push_pull(&net, p.addr, false);
                self.needs_pull.remove(&net);
                self.repull.insert(net, now + self.cfg.repull_after);
            }
        }
    }

    fn start_clocks(&mut self, now: Instant) {
        if self.next_gossip.is_none() {
            self.next_gossip = Some(now + self.cfg.gossip_interval);
            // Spread first anti-entropy rounds over the interval so nodes do not sync in step.
            let jitter = self.rng.next_u64() % (self.cfg.sync_interval.as_millis() as u64 + 1);
            self.next_sync = Some(now + Duration::from_millis(jitter));
            self.next_gc = Some(now + self.cfg.tombstone_ttl / 4);
            let jitter = self.rng.next_u64() % (self.cfg.member_sync.as_millis() as u64 + 1);
            self.next_member_sync = Some(now + Duration::from_millis(jitter));
        }
    }

    fn lock_attach(&self) -> MutexGuard<'_, AttachTable> {
        // Only this core and its foca handler touch the table, on one thread, and neither
        // panics while holding it; a poisoned lock still holds a consistent table.
        self.attach.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Buckets of the attachment digest (a 4-byte hash each, about 1.3 KB encoded): at 1,000 nodes
/// about 4 records (700 bytes) each, so each record that differs costs about a bucket's
/// records. In the 1,000-node simulation, where nodes that joined within 5 s still miss 1-100
/// of each other's records long after, 64 buckets sent most of the table in each exchange.
const DIGEST_BUCKETS: usize = 256;

fn bucket_of(node_id: &str) -> usize {
    let d = ring::digest::digest(&ring::digest::SHA256, node_id.as_bytes());
    first_u64(d.as_ref()) as usize % DIGEST_BUCKETS
}

fn first_u64(bytes: &[u8]) -> u64 {
    let mut first = [0u8; 8];
    let n = bytes.len().min(8);
    first[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(first)
}

fn foca_config(cfg: &GossipConfig, live: usize, suspicion: Duration) -> foca::Config {
    let size = std::num::NonZeroU32::new(live.max(1) as u32).unwrap_or(std::num::NonZeroU32::MIN);
    let mut c = foca::Config::new_lan(size);
    c.probe_period = cfg.probe_period;
    c.probe_rtt = cfg.probe_rtt;
    c.suspect_to_down_after = suspicion;
    c.max_packet_size =
        std::num::NonZeroUsize::new(cfg.max_datagram.saturating_sub(OVERHEAD).max(256))
            .unwrap_or(std::num::NonZeroUsize::MIN);
    // Members declared down are forgotten after a while so a long-lived cluster does not keep
    // every departed node; far above any suspicion timeout.
    c.remove_down_after = Duration::from_secs(3600);
    // A partition heals when one side announces itself to the other, which it only knows as
    // down members: memberlist leaves that to the application (NetworkDB retries every 60 s);
    // every 10 s to two down members costs two small datagrams.
    c.periodic_announce_to_down_members = Some(foca::PeriodicParams {
        frequency: Duration::from_secs(10),
        num_members: std::num::NonZeroUsize::MIN.saturating_add(1),
    });
    c
}
