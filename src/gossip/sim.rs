//! A deterministic in-process network for gossip cores: virtual time, a seeded RNG, datagram
//! loss, uniform latency, dead nodes and partitions. Used by the unit tests and by
//! `examples/gossip_sim.rs`; nothing here touches a socket or the clock (one `Instant` is taken
//! as the origin of virtual time, only to have `Instant` values to hand to the cores).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Event, Gossip, GossipConfig, Keyring, NodeIdentity, Transmit, Transport};

/// The simulated network's behaviour.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Probability that a datagram is lost (TCP messages are not lost, only cut by partitions).
    pub loss: f64,
    pub latency_min: Duration,
    pub latency_max: Duration,
    pub seed: u64,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            loss: 0.0,
            latency_min: Duration::from_micros(200),
            latency_max: Duration::from_millis(2),
            seed: 1,
        }
    }
}

/// One simulated node.
pub struct SimNode {
    pub gossip: Gossip,
    pub alive: bool,
    /// Nodes in different groups cannot reach each other.
    pub group: u32,
}

struct InFlight {
    to: usize,
    from: SocketAddr,
    transport: Transport,
    payload: Vec<u8>,
}

/// The address of simulated node `i` (loopback 127.78.0.0/16, port 7946).
pub fn sim_addr(i: usize) -> SocketAddr {
    let ip = Ipv4Addr::new(127, 78, (i / 250) as u8, (i % 250 + 1) as u8);
    SocketAddr::new(ip.into(), 7946)
}

/// Node ID of simulated node `i`.
pub fn sim_node_id(i: usize) -> String {
    format!("node{i:04}")
}

/// A simulated cluster.
pub struct Sim {
    pub origin: Instant,
    pub now: Instant,
    pub nodes: Vec<SimNode>,
    pub net: NetConfig,
    by_addr: HashMap<SocketAddr, usize>,
    rng: ChaCha8Rng,
    flights: BinaryHeap<Reverse<(Instant, u64)>>,
    in_flight: HashMap<u64, InFlight>,
    next_id: u64,
    wakeups: BinaryHeap<Reverse<(Instant, usize)>>,
    scheduled: Vec<Option<Instant>>,
    /// Events as (node, time, event), when `record_events` is set.
    pub events: Vec<(usize, Instant, Event)>,
    pub record_events: bool,
    /// Copies of every transmit as (sender, transmit), when `capture` is set.
    pub captured: Vec<(usize, Transmit)>,
    pub capture: bool,
    /// Nodes that lose every datagram sent to them (TCP still arrives): a node that misses
    /// broadcasts and table gossip for a while.
    pub deaf: std::collections::BTreeSet<usize>,
    pub dropped_by_net: u64,
}

impl Sim {
    pub fn new(net: NetConfig) -> Self {
        let origin = Instant::now();
        Self {
            origin,
            now: origin,
            nodes: Vec::new(),
            by_addr: HashMap::new(),
            rng: ChaCha8Rng::seed_from_u64(net.seed),
            net,
            flights: BinaryHeap::new(),
            in_flight: HashMap::new(),
            next_id: 0,
            wakeups: BinaryHeap::new(),
            scheduled: Vec::new(),
            events: Vec::new(),
            record_events: true,
            captured: Vec::new(),
            capture: false,
            deaf: Default::default(),
            dropped_by_net: 0,
        }
    }

    /// Seconds of virtual time since the origin.
    pub fn secs(&self) -> f64 {
        (self.now - self.origin).as_secs_f64()
    }

    /// Add a node with keys `keys`; returns its index.
    pub fn add_node(&mut self, keys: &[(u32, Vec<u8>)], cfg: GossipConfig, bump: u32) -> usize {
        let i = self.nodes.len();
        let me = NodeIdentity::new(sim_node_id(i), sim_addr(i), bump);
        let seed = self.rng.next_u64();
        let ring = Keyring::new(keys).expect("simulation keys are 16 or 32 bytes");
        self.nodes.push(SimNode {
            gossip: Gossip::new(me, ring, cfg, seed),
            alive: true,
            group: 0,
        });
        self.by_addr.insert(sim_addr(i), i);
        self.scheduled.push(None);
        i
    }

    /// Replace node `i` with a fresh instance (a restart): higher bump, sequence numbers above
    /// anything its previous life sent.
    pub fn restart(&mut self, i: usize, keys: &[(u32, Vec<u8>)], mut cfg: GossipConfig) {
        let old = &self.nodes[i].gossip;
        let bump = old.identity().bump + 1;
        cfg.seq_base = old.stats().sent_msgs + cfg.seq_base + (1 << 32);
        let me = NodeIdentity::new(sim_node_id(i), sim_addr(i), bump);
        let seed = self.rng.next_u64();
        let ring = Keyring::new(keys).expect("simulation keys are 16 or 32 bytes");
        self.nodes[i].gossip = Gossip::new(me, ring, cfg, seed);
        self.nodes[i].alive = true;
        self.scheduled[i] = None;
    }

    /// Run `f` on node `i` now, then route what it sent.
    pub fn with_node<R>(&mut self, i: usize, f: impl FnOnce(&mut Gossip, Instant) -> R) -> R {
        let now = self.now;
        let r = f(&mut self.nodes[i].gossip, now);
        self.after(i);
        r
    }

    /// Deliver bytes to node `i` as if `from` had sent them, now.
    pub fn inject(&mut self, i: usize, from: SocketAddr, bytes: &[u8], transport: Transport) {
        let now = self.now;
        let g = &mut self.nodes[i].gossip;
        let _ = match transport {
            Transport::Udp => g.handle_datagram(from, bytes, now),
            Transport::Tcp => g.handle_stream_message(from, bytes, now),
        };
        self.after(i);
    }

    fn after(&mut self, i: usize) {
        while let Some(t) = self.nodes[i].gossip.poll_transmit() {
            self.route(i, t);
        }
        while let Some(e) = self.nodes[i].gossip.poll_event() {
            if self.record_events {
                self.events.push((i, self.now, e));
            }
        }
        let next = self.nodes[i].gossip.poll_timeout();
        if next != self.scheduled[i] {
            self.scheduled[i] = next;
            if let Some(t) = next {
                self.wakeups.push(Reverse((t.max(self.now), i)));
            }
        }
    }

    fn route(&mut self, from: usize, t: Transmit) {
        if self.capture {
            self.captured.push((from, t.clone()));
        }
        let Some(&to) = self.by_addr.get(&t.to) else {
            self.dropped_by_net += 1;
            return;
        };
        let lost = t.transport == Transport::Udp
            && ((self.rng.next_u64() as f64 / u64::MAX as f64) < self.net.loss
                || self.deaf.contains(&to));
        if !self.nodes[from].alive || self.nodes[from].group != self.nodes[to].group || lost {
            self.dropped_by_net += 1;
            return;
        }
        let span = self.net.latency_max.saturating_sub(self.net.latency_min);
        let jitter = if span.is_zero() {
            Duration::ZERO
        } else {
            Duration::from_nanos(self.rng.next_u64() % span.as_nanos() as u64)
        };
        let at = self.now + self.net.latency_min + jitter;
        self.next_id += 1;
        self.in_flight.insert(
            self.next_id,
            InFlight {
                to,
                from: sim_addr(from),
                transport: t.transport,
                payload: t.payload,
            },
        );
        self.flights.push(Reverse((at, self.next_id)));
    }

    /// Advance virtual time to `end`, delivering and firing everything due on the way.
    pub fn run_until(&mut self, end: Instant) {
        loop {
            let f = self.flights.peek().map(|Reverse((t, _))| *t);
            let w = self.wakeups.peek().map(|Reverse((t, _))| *t);
            let next = match (f, w) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => break,
            };
            if next > end {
                break;
            }
            self.now = next;
            if f == Some(next) {
                let Some(Reverse((_, id))) = self.flights.pop() else {
                    break;
                };
                if let Some(m) = self.in_flight.remove(&id) {
                    if self.nodes[m.to].alive {
                        let now = self.now;
                        let g = &mut self.nodes[m.to].gossip;
                        let _ = match m.transport {
                            Transport::Udp => g.handle_datagram(m.from, &m.payload, now),
                            Transport::Tcp => g.handle_stream_message(m.from, &m.payload, now),
                        };
                        self.after(m.to);
                    }
                }
            } else {
                let Some(Reverse((t, i))) = self.wakeups.pop() else {
                    break;
                };
                if self.scheduled[i] != Some(t) || !self.nodes[i].alive {
                    continue;
                }
                self.scheduled[i] = None;
                let now = self.now;
                self.nodes[i].gossip.handle_timeout(now);
                self.after(i);
            }
        }
        self.now = end.max(self.now);
    }

    /// Advance virtual time by `d`.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.run_until(end);
    }
}
