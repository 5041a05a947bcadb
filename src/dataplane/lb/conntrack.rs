//! Connection tracking for VIP flows: which backend each client flow was given, so that every
//! packet of the flow goes there and every answer goes back from the VIP.
//!
//! **Shared state.** One `Conntrack` serves every worker of a node: a flow's packets and its
//! answers arrive on whichever worker the kernel hands them to. It is sharded by the client's
//! (protocol, address, port), which both directions of a flow carry, so one flow lives in one
//! shard under one short lock. Table snapshots carry the same `Arc<Conntrack>` from one to the
//! next (`Tables::keeping_state_of`); it is not part of the immutable snapshot.
//!
//! Flows end by their own RST, by FIN from both sides, by idling past `idle`, or, when their
//! backend leaves the service, `drain` after that was noticed; idle and drained TCP flows get a
//! RST to both ends (`expire` returns them) instead of hanging until the next packet.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use rustc_hash::FxHashMap;

use super::super::Nanos;

const SECOND: Nanos = 1_000_000_000;
/// Default idle timeout of an established TCP flow: Docker's IPVS (and Linux's) 900 s.
pub const DEFAULT_IDLE: Nanos = 900 * SECOND;
/// Default idle timeout of a UDP flow: IPVS's 300 s.
pub const DEFAULT_UDP_IDLE: Nanos = 300 * SECOND;
/// Default time a flow keeps its departed backend: Docker's default stop grace period.
pub const DEFAULT_DRAIN: Nanos = 10 * SECOND;
/// A TCP flow that never saw its handshake finish, or that closed, is forgotten this soon.
const EMBRYONIC: Nanos = 60 * SECOND;
const CLOSED: Nanos = 10 * SECOND;
/// Default bound on tracked flows (memory: see `benches/lb.rs`).
pub const DEFAULT_MAX_FLOWS: usize = 1 << 20;
/// A SYN sent again this long after the last one, unanswered, makes its backend suspect
/// (Linux retransmits a SYN after 1 s).
const SYN_RETRY: Nanos = SECOND / 2;
/// How long a backend that left a SYN unanswered gets no new connection (unless no other
/// backend is left), if it does not answer meanwhile: longer than managers take to declare its
/// node down and withdraw it.
pub const SUSPECT_FOR: Nanos = 30 * SECOND;
/// How often `expire` looks at every flow.
pub const SCAN_INTERVAL: Nanos = SECOND;

const SHARDS: usize = 64;

pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// Timeouts and bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtConfig {
    pub idle: Nanos,
    pub udp_idle: Nanos,
    pub drain: Nanos,
    pub max_flows: usize,
}

impl Default for CtConfig {
    fn default() -> CtConfig {
        CtConfig {
            idle: DEFAULT_IDLE,
            udp_idle: DEFAULT_UDP_IDLE,
            drain: DEFAULT_DRAIN,
            max_flows: DEFAULT_MAX_FLOWS,
        }
    }
}

/// What a TCP segment says, for flow state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tcp {
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
}

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const ACK: u8 = 0x10;

/// Why a new flow was not tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The service has no running task.
    NoBackend,
    /// `max_flows` flows are tracked already.
    Full,
}

/// A RST to send to each end of a flow that `expire` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reset {
    pub net: u32,
    pub client: SocketAddrV4,
    pub vip: SocketAddrV4,
    pub backend: SocketAddrV4,
    /// Sequence number of the RST to the client (the next it expects from the VIP), if known.
    pub client_seq: Option<u32>,
    /// Sequence number of the RST to the backend (the next it expects from the client).
    pub backend_seq: Option<u32>,
    pub why: EndReason,
}

/// Why `expire` ended a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Idle,
    Drained,
}

/// Connections and bytes through one backend of one VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendStats {
    pub net: u32,
    pub vip: Ipv4Addr,
    pub backend: Ipv4Addr,
    /// Flows tracked now.
    pub active: u64,
    /// Flows given to this backend since the node started.
    pub connections: u64,
    /// Bytes both ways (IPv4 packets).
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    a: u32,
    b: u32,
    ap: u16,
    bp: u16,
    proto: u8,
    /// false: client -> VIP (a = client); true: backend -> client (a = backend, b = client).
    reply: bool,
}

const HAVE_CLIENT_ACK: u8 = 1;
const HAVE_BACKEND_ACK: u8 = 2;
const ESTABLISHED: u8 = 4;
const FIN_CLIENT: u8 = 8;
const FIN_BACKEND: u8 = 16;
const CLOSED_BY_RST: u8 = 32;

#[derive(Debug, Clone)]
struct Entry {
    client: Ipv4Addr,
    vip: Ipv4Addr,
    backend: Ipv4Addr,
    cport: u16,
    vport: u16,
    proto: u8,
    state: u8,
    net: u32,
    client_ack: u32,
    backend_ack: u32,
    last: Nanos,
    /// 0: the backend serves the VIP; else when the drained flow is ended.
    drain_at: Nanos,
    bytes: u64,
}

impl Entry {
    fn fwd_key(&self) -> Key {
        Key {
            a: self.client.into(),
            b: self.vip.into(),
            ap: self.cport,
            bp: self.vport,
            proto: self.proto,
            reply: false,
        }
    }

    fn rev_key(&self) -> Key {
        Key {
            a: self.backend.into(),
            b: self.client.into(),
            ap: self.vport,
            bp: self.cport,
            proto: self.proto,
            reply: true,
        }
    }

    fn closed(&self) -> bool {
        self.state & CLOSED_BY_RST != 0
            || self.state & (FIN_CLIENT | FIN_BACKEND) == FIN_CLIENT | FIN_BACKEND
    }

    /// When the flow ends if nothing more happens.
    fn deadline(&self, cfg: &CtConfig) -> Nanos {
        let idle = if self.proto != PROTO_TCP {
            cfg.udp_idle
        } else if self.closed() {
            CLOSED
        } else if self.state & ESTABLISHED == 0 {
            EMBRYONIC
        } else {
            cfg.idle
        };
        let at = self.last.saturating_add(idle);
        if self.drain_at != 0 {
            at.min(self.drain_at)
        } else {
            at
        }
    }
}

#[derive(Debug, Default)]
struct Totals {
    active: u64,
    connections: u64,
    bytes: u64,
}

#[derive(Debug, Default)]
struct Shard {
    index: FxHashMap<Key, u32>,
    slab: Vec<Entry>,
    free: Vec<u32>,
    /// (net, vip, backend) -> totals of ended flows and counts of live ones.
    totals: FxHashMap<(u32, u32, u32), Totals>,
}

impl Shard {
    fn remove(&mut self, slot: u32) -> Option<Entry> {
        let e = self.slab.get(slot as usize)?.clone();
        if e.proto == 0 {
            return None;
        }
        if let Some(free) = self.slab.get_mut(slot as usize) {
            free.proto = 0; // a free slot
        }
        self.index.remove(&e.fwd_key());
        self.index.remove(&e.rev_key());
        self.free.push(slot);
        let t = self
            .totals
            .entry((e.net, e.vip.into(), e.backend.into()))
            .or_default();
        t.active = t.active.saturating_sub(1);
        t.bytes += e.bytes;
        Some(e)
    }
}

/// The flows through a node's VIPs (see the module doc).
#[derive(Debug)]
pub struct Conntrack {
    shards: Box<[Mutex<Shard>]>,
    flows: AtomicUsize,
    /// Backends that left a SYN unanswered: (net, address) -> until when.
    suspect_until: Mutex<FxHashMap<(u32, u32), Nanos>>,
    suspects: AtomicUsize,
    next_scan: AtomicU64,
    cfg: CtConfig,
}

impl Default for Conntrack {
    fn default() -> Conntrack {
        Conntrack::new(CtConfig::default())
    }
}

fn shard_of(proto: u8, client: Ipv4Addr, cport: u16) -> usize {
    let h = super::maglev::flow_hash(proto, client, cport, Ipv4Addr::UNSPECIFIED, 0);
    (h % SHARDS as u64) as usize
}

/// Updates a flow's state with a segment from the client (`from_client`) or the backend.
fn track(e: &mut Entry, tcp: Option<Tcp>, from_client: bool, now: Nanos, len: usize) {
    e.last = now;
    e.bytes += len as u64;
    let Some(t) = tcp else { return };
    if t.flags & RST != 0 {
        e.state |= CLOSED_BY_RST;
    }
    if t.flags & ACK != 0 {
        if from_client {
            e.client_ack = t.ack;
            e.state |= HAVE_CLIENT_ACK;
            if t.flags & SYN == 0 && e.state & HAVE_BACKEND_ACK != 0 {
                e.state |= ESTABLISHED;
            }
        } else {
            e.backend_ack = t.ack;
            e.state |= HAVE_BACKEND_ACK;
        }
    }
    if t.flags & FIN != 0 {
        e.state |= if from_client { FIN_CLIENT } else { FIN_BACKEND };
    }
}

impl Conntrack {
    pub fn new(cfg: CtConfig) -> Conntrack {
        Conntrack {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            flows: AtomicUsize::new(0),
            suspect_until: Mutex::default(),
            suspects: AtomicUsize::new(0),
            next_scan: AtomicU64::new(0),
            cfg,
        }
    }

    pub fn config(&self) -> &CtConfig {
        &self.cfg
    }

    /// Flows tracked now.
    pub fn len(&self) -> usize {
        self.flows.load(Ordering::Relaxed)
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A packet from `client` to `vip` on network `net`: the backend of its flow. A packet
    /// that opens a flow (or a SYN on a closed or drained one, or a SYN sent again to a backend
    /// that never answered) gets the backend `pick` gives; `pick` is told which backends are
    /// suspect, to avoid them while others are not.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        now: Nanos,
        net: u32,
        proto: u8,
        client: SocketAddrV4,
        vip: SocketAddrV4,
        tcp: Option<Tcp>,
        len: usize,
        pick: impl FnOnce(&dyn Fn(Ipv4Addr) -> bool) -> Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, Refused> {
        let key = Key {
            a: (*client.ip()).into(),
            b: (*vip.ip()).into(),
            ap: client.port(),
            bp: vip.port(),
            proto,
            reply: false,
        };
        let Ok(mut shard) = self.shards[shard_of(proto, *client.ip(), client.port())].lock() else {
            return Err(Refused::Full);
        };
        let mut unanswered = None;
        if let Some(&slot) = shard.index.get(&key) {
            let fresh_syn = tcp.is_some_and(|t| t.flags & (SYN | ACK) == SYN);
            let (stale, silent) = shard.slab.get(slot as usize).map_or((false, None), |e| {
                let silent = e.proto == PROTO_TCP
                    && e.state & HAVE_BACKEND_ACK == 0
                    && now.saturating_sub(e.last) >= SYN_RETRY;
                (e.closed() || e.drain_at != 0, silent.then_some(e.backend))
            });
            // The client sends its SYN again and the backend never answered the first: the
            // backend is suspect (its node may be dead before any manager knows), and the
            // connection is given another.
            if fresh_syn && silent.is_some() {
                unanswered = silent;
                if let Some(b) = silent {
                    self.suspect(net, b, now);
                }
            }
            if !(fresh_syn && (stale || unanswered.is_some())) {
                if let Some(e) = shard.slab.get_mut(slot as usize) {
                    track(e, tcp, true, now, len);
                    return Ok(e.backend);
                }
            }
            // A new connection on the 5-tuple of an ended one: forget the old.
            if shard.remove(slot).is_some() {
                self.flows.fetch_sub(1, Ordering::Relaxed);
            }
        }
        if self.len() >= self.cfg.max_flows {
            return Err(Refused::Full);
        }
        let backend =
            pick(&|b: Ipv4Addr| self.is_suspect(net, b, now)).ok_or(Refused::NoBackend)?;
        let mut e = Entry {
            client: *client.ip(),
            vip: *vip.ip(),
            backend,
            cport: client.port(),
            vport: vip.port(),
            proto,
            state: 0,
            net,
            client_ack: 0,
            backend_ack: 0,
            last: now,
            drain_at: 0,
            bytes: 0,
        };
        track(&mut e, tcp, true, now, len);
        let (fwd, rev) = (e.fwd_key(), e.rev_key());
        if shard.index.contains_key(&rev) {
            // Another VIP's flow already answers from this backend to this client port:
            // the answers could not be told apart.
            return Err(Refused::Full);
        }
        let slot = match shard.free.pop() {
            Some(s) => {
                shard.slab[s as usize] = e;
                s
            }
            None => {
                shard.slab.push(e);
                (shard.slab.len() - 1) as u32
            }
        };
        shard.index.insert(fwd, slot);
        shard.index.insert(rev, slot);
        let t = shard
            .totals
            .entry((net, (*vip.ip()).into(), backend.into()))
            .or_default();
        t.active += 1;
        t.connections += 1;
        self.flows.fetch_add(1, Ordering::Relaxed);
        Ok(backend)
    }

    /// A packet from `backend` to `client`: the VIP it must come from, if it answers a
    /// tracked flow.
    pub fn reply(
        &self,
        now: Nanos,
        proto: u8,
        backend: SocketAddrV4,
        client: SocketAddrV4,
        tcp: Option<Tcp>,
        len: usize,
    ) -> Option<Ipv4Addr> {
        let key = Key {
            a: (*backend.ip()).into(),
            b: (*client.ip()).into(),
            ap: backend.port(),
            bp: client.port(),
            proto,
            reply: true,
        };
        let mut shard = self.shards[shard_of(proto, *client.ip(), client.port())]
            .lock()
            .ok()?;
        let slot = *shard.index.get(&key)?;
        // The same addresses and ports may carry a connection straight to the backend once
        // the VIP flow has ended (the client reuses its port): a SYN-ACK on a flow that is
        // closed or past its handshake is that other connection's, and the VIP flow is
        // forgotten so that none of its packets are taken for the VIP's. (The last ACKs of
        // a closed flow still come from the VIP.)
        let syn = tcp.is_some_and(|t| t.flags & SYN != 0);
        let superseded = shard
            .slab
            .get(slot as usize)
            .is_some_and(|e| syn && (e.closed() || e.state & ESTABLISHED != 0));
        if superseded {
            if shard.remove(slot).is_some() {
                self.flows.fetch_sub(1, Ordering::Relaxed);
            }
            return None;
        }
        let e = shard.slab.get_mut(slot as usize)?;
        track(e, tcp, false, now, len);
        let (vip, net) = (e.vip, e.net);
        drop(shard);
        if self.suspects.load(Ordering::Relaxed) > 0 {
            self.clear_suspect(net, *backend.ip());
        }
        Some(vip)
    }

    /// Marks `backend` suspect on `net` for `SUSPECT_FOR`.
    fn suspect(&self, net: u32, backend: Ipv4Addr, now: Nanos) {
        if let Ok(mut s) = self.suspect_until.lock() {
            s.insert((net, backend.into()), now.saturating_add(SUSPECT_FOR));
            self.suspects.store(s.len(), Ordering::Relaxed);
        }
    }

    fn clear_suspect(&self, net: u32, backend: Ipv4Addr) {
        if let Ok(mut s) = self.suspect_until.lock() {
            s.remove(&(net, backend.into()));
            self.suspects.store(s.len(), Ordering::Relaxed);
        }
    }

    /// True while `backend` left a SYN unanswered (and has not answered since), for at most
    /// `SUSPECT_FOR`.
    pub fn is_suspect(&self, net: u32, backend: Ipv4Addr, now: Nanos) -> bool {
        if self.suspects.load(Ordering::Relaxed) == 0 {
            return false;
        }
        self.suspect_until
            .lock()
            .ok()
            .and_then(|s| s.get(&(net, backend.into())).copied())
            .is_some_and(|until| now < until)
    }

    /// When `expire` next has work: the next scan, while any flow is tracked.
    pub fn poll_timeout(&self) -> Option<Nanos> {
        (!self.is_empty()).then(|| self.next_scan.load(Ordering::Relaxed))
    }

    /// Ends flows whose time is up, at most once per `SCAN_INTERVAL` whoever calls: flows
    /// idle past their timeout, and flows whose backend no longer serves their VIP
    /// (`serves(net, vip, backend)` false) `drain` after that is first seen. The TCP ones
    /// among them are appended to `out`, for a RST to each end.
    pub fn expire(
        &self,
        now: Nanos,
        serves: impl Fn(u32, Ipv4Addr, Ipv4Addr) -> bool,
        out: &mut Vec<Reset>,
    ) {
        let due = self.next_scan.load(Ordering::Relaxed);
        if now < due
            || self
                .next_scan
                .compare_exchange(
                    due,
                    now + SCAN_INTERVAL,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return;
        }
        for shard in self.shards.iter() {
            let Ok(mut shard) = shard.lock() else {
                continue;
            };
            let mut ended = Vec::new();
            for (slot, e) in shard.slab.iter_mut().enumerate() {
                if e.proto == 0 {
                    continue; // a free slot
                }
                let gone = !serves(e.net, e.vip, e.backend);
                if gone && e.drain_at == 0 {
                    e.drain_at = now.saturating_add(self.cfg.drain);
                } else if !gone && e.drain_at != 0 {
                    e.drain_at = 0; // the backend is back
                }
                if now >= e.deadline(&self.cfg) {
                    ended.push(slot as u32);
                }
            }
            for slot in ended {
                let Some(e) = shard.slab.get(slot as usize) else {
                    continue;
                };
                let why = if e.drain_at != 0 && now >= e.drain_at {
                    EndReason::Drained
                } else {
                    EndReason::Idle
                };
                let Some(e) = shard.remove(slot) else {
                    continue;
                };
                self.flows.fetch_sub(1, Ordering::Relaxed);
                if e.proto == PROTO_TCP && !e.closed() {
                    out.push(Reset {
                        net: e.net,
                        client: SocketAddrV4::new(e.client, e.cport),
                        vip: SocketAddrV4::new(e.vip, e.vport),
                        backend: SocketAddrV4::new(e.backend, e.vport),
                        client_seq: (e.state & HAVE_CLIENT_ACK != 0).then_some(e.client_ack),
                        backend_seq: (e.state & HAVE_BACKEND_ACK != 0).then_some(e.backend_ack),
                        why,
                    });
                }
            }
        }
    }

    /// Connections and bytes per (network, VIP, backend), ended flows and live ones.
    pub fn stats(&self) -> Vec<BackendStats> {
        let mut all: FxHashMap<(u32, u32, u32), BackendStats> = FxHashMap::default();
        for shard in self.shards.iter() {
            let Ok(shard) = shard.lock() else { continue };
            for (&(net, vip, backend), t) in &shard.totals {
                let s = all.entry((net, vip, backend)).or_insert(BackendStats {
                    net,
                    vip: vip.into(),
                    backend: backend.into(),
                    active: 0,
                    connections: 0,
                    bytes: 0,
                });
                s.active += t.active;
                s.connections += t.connections;
                s.bytes += t.bytes;
            }
            for (key, &slot) in &shard.index {
                if key.reply {
                    continue;
                }
                if let Some(e) = shard.slab.get(slot as usize) {
                    if let Some(s) = all.get_mut(&(e.net, e.vip.into(), e.backend.into())) {
                        s.bytes += e.bytes;
                    }
                }
            }
        }
        let mut v: Vec<BackendStats> = all.into_values().collect();
        v.sort_by_key(|s| (s.net, s.vip, s.backend));
        v
    }

    /// Bytes the table holds in memory now (its hash indexes and flow slots, by capacity):
    /// what `flows` tracked flows cost.
    pub fn memory_bytes(&self) -> usize {
        let index_entry = std::mem::size_of::<(Key, u32)>() + 1; // + hashbrown's control byte
        self.shards
            .iter()
            .filter_map(|s| s.lock().ok())
            .map(|s| {
                s.index.capacity() * index_entry
                    + s.slab.capacity() * std::mem::size_of::<Entry>()
                    + s.free.capacity() * 4
            })
            .sum()
    }

    /// Tracked flows per backend address (for the addresses answers are expected from).
    pub fn backends_with_flows(&self) -> Vec<(u32, Ipv4Addr)> {
        let mut v = Vec::new();
        for shard in self.shards.iter() {
            let Ok(shard) = shard.lock() else { continue };
            for (&(net, _, backend), t) in &shard.totals {
                if t.active > 0 {
                    v.push((net, Ipv4Addr::from(backend)));
                }
            }
        }
        v.sort();
        v.dedup();
        v
    }
}
