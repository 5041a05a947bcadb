//! Tunables of the gossip core, with the reasons for their defaults.

use std::time::Duration;

/// How the gossip core paces itself.
#[derive(Debug, Clone)]
pub struct GossipConfig {
    /// SWIM probe period. 500 ms, half of memberlist's LAN 1 s: failure detection time is a few
    /// probe periods plus the suspicion timeout, and the aim (a failure seen within 10 s
    /// among 1,000 nodes) does not fit memberlist's 4 x log10(1000) x 1 s = 12 s suspicion alone.
    pub probe_period: Duration,
    /// How long a direct probe waits for its ack before asking others to probe indirectly.
    pub probe_rtt: Duration,
    /// Suspicion timeout = `suspicion_mult` x log10(N + 1) x `probe_period` (memberlist's formula
    /// with its multiplier 4; N is the number of live members, recomputed as it changes).
    pub suspicion_mult: f64,
    /// Transmits of each table change by each node = `retransmit_mult` x ceil(log10(n + 1)), n
    /// the nodes on the network (memberlist's RetransmitMult 4).
    pub retransmit_mult: u32,
    /// Period of table gossip (memberlist's GossipInterval, 200 ms).
    pub gossip_interval: Duration,
    /// Peers of a network picked per gossip round (memberlist's GossipNodes, 3).
    pub gossip_fanout: usize,
    /// Period of anti-entropy: each round one of our networks (in turn) exchanges its full state
    /// with a random peer on it over TCP. 30 s as memberlist's push/pull: at 10 s the full-table
    /// exchanges alone took about 4.6 KB/s per node in the 1,000-node simulation.
    pub sync_interval: Duration,
    /// A network joined is pulled from a peer at once and again this much later (rows of nodes
    /// that joined at the same moment).
    pub repull_after: Duration,
    /// Period of the member-list exchange with a random member over TCP (memberlist's push/pull,
    /// 30 s), stretched for large clusters as memberlist does (x6 at 1,000 nodes): it repairs
    /// what lost membership updates left behind.
    pub member_sync: Duration,
    /// How long a tombstone is kept. Must be well above `sync_interval` times the number of
    /// networks, or a peer that missed a deletion could revive it by anti-entropy.
    pub tombstone_ttl: Duration,
    /// Largest datagram we send (sealed). Fits a 1500-byte MTU with IP and UDP headers.
    pub max_datagram: usize,
    /// First message sequence number; the replay windows of peers refuse what is not above what
    /// they saw, so a restarted node must start above its previous life (the runner passes the
    /// wall clock in microseconds).
    pub seq_base: u64,
}

impl Default for GossipConfig {
    fn default() -> Self {
        Self {
            probe_period: Duration::from_millis(500),
            probe_rtt: Duration::from_millis(250),
            suspicion_mult: 4.0,
            retransmit_mult: 4,
            gossip_interval: Duration::from_millis(200),
            gossip_fanout: 3,
            sync_interval: Duration::from_secs(30),
            member_sync: Duration::from_secs(30),
            repull_after: Duration::from_secs(3),
            tombstone_ttl: Duration::from_secs(600),
            max_datagram: 1400,
            seq_base: 0,
        }
    }
}

impl GossipConfig {
    /// The suspicion timeout for `live` members.
    pub fn suspicion(&self, live: usize) -> Duration {
        let n = (live as f64 + 1.0).log10().max(1.0);
        Duration::from_secs_f64(self.suspicion_mult * n * self.probe_period.as_secs_f64())
    }

    /// The member-list exchange period for `live` members: memberlist's pushPullScale (one more
    /// multiple of the period per doubling above 32 nodes).
    pub fn member_sync_period(&self, live: usize) -> Duration {
        if live <= 32 {
            return self.member_sync;
        }
        let mult = ((live as f64).log2() - 32f64.log2()).ceil() as u32 + 1;
        self.member_sync * mult
    }

    /// How many times each node sends one change, for `n` nodes.
    pub fn retransmits(&self, n: usize) -> u32 {
        let l = ((n as f64) + 1.0).log10().ceil().max(1.0);
        self.retransmit_mult * l as u32
    }
}
