//! The keyring and the SA table built from it.
//!
//! A swarm holds up to three keys, each with a tag. A node seals with the primary key and opens
//! with any of them. Rotation (Docker's, every 12 hours): a new key is installed for receiving
//! one rotation ahead, the primary moves to the next key, the oldest is pruned. Because every
//! key of the ring is accepted, packets in flight under the previous primary still open after
//! the switch: no packet of a running transfer is lost.
//!
//! SAs are shared state (sequence counters, replay windows). [`EspTable::rotate`] keeps the
//! `Arc<Sa>` of every (peer, tag) that survives, so a rotation never restarts a sequence number
//! under a key still in use (that would reuse GCM nonces).

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::sa::{KeyBytes, Sa};

/// Most keys a ring holds.
pub const MAX_KEYS: usize = 3;

/// How ESP travels on the underlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// IP protocol 50, through raw sockets.
    Ip,
    /// ESP in UDP (RFC 3948) to `udp_port`, for hosts without CAP_NET_RAW.
    Udp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Ip => "ip",
            Transport::Udp => "udp",
        }
    }
}

/// One key and its tag.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    pub tag: u32,
    pub key: KeyBytes,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        write!(f, "Key {{ tag: {}, key: <redacted> }}", self.tag)
    }
}

/// The keys of a swarm and which one seals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyring {
    /// 1 to [`MAX_KEYS`] keys with distinct tags, oldest first.
    pub keys: Vec<Key>,
    /// Tag of the key that seals; one of `keys`.
    pub primary: u32,
}

/// Why a keyring was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    #[error("a keyring needs 1 to {MAX_KEYS} keys, not {0}")]
    Count(usize),
    #[error("key tag {0} is given twice")]
    DuplicateTag(u32),
    #[error("primary {0} is not the tag of any key")]
    NoPrimary(u32),
}

impl Keyring {
    /// Checks the invariants: 1-3 keys, distinct tags, a primary among them.
    pub fn new(keys: Vec<Key>, primary: u32) -> Result<Keyring, KeyringError> {
        if keys.is_empty() || keys.len() > MAX_KEYS {
            return Err(KeyringError::Count(keys.len()));
        }
        let mut tags = BTreeSet::new();
        for k in &keys {
            if !tags.insert(k.tag) {
                return Err(KeyringError::DuplicateTag(k.tag));
            }
        }
        if !tags.contains(&primary) {
            return Err(KeyringError::NoPrimary(primary));
        }
        Ok(Keyring { keys, primary })
    }

    pub fn primary_key(&self) -> Option<&Key> {
        self.keys.iter().find(|k| k.tag == self.primary)
    }

    /// One rotation step: `new` joins the ring, the primary moves to the key after the current
    /// one (in ring order), and the oldest key is dropped if the ring would exceed three keys.
    pub fn rotated(&self, new: Key) -> Result<Keyring, KeyringError> {
        let mut keys = self.keys.clone();
        let at = keys.iter().position(|k| k.tag == self.primary).unwrap_or(0);
        let next_primary = keys.get(at + 1).map_or(new.tag, |k| k.tag);
        keys.push(new);
        while keys.len() > MAX_KEYS {
            keys.remove(0);
        }
        Keyring::new(keys, next_primary)
    }
}

/// The SAs of one node: outbound to each peer under the primary key, inbound from each peer
/// under every key, all derived from the keyring (nothing is negotiated).
#[derive(Debug, Clone)]
pub struct EspTable {
    pub transport: Transport,
    /// UDP port of ESP in UDP (RFC 3948), also accepted when `transport` is `Ip`.
    pub udp_port: u16,
    pub keyring: Keyring,
    local: Ipv4Addr,
    /// VNIs of encrypted networks.
    encrypted: BTreeSet<u32>,
    outbound: FxHashMap<Ipv4Addr, Arc<Sa>>,
    /// By (peer address, SPI): the SPI alone could collide between peers.
    inbound: FxHashMap<(Ipv4Addr, u32), Arc<Sa>>,
    /// Every SA by (src, dst, tag), outbound and inbound, for reuse across rotations.
    all: FxHashMap<(Ipv4Addr, Ipv4Addr, u32), Arc<Sa>>,
    /// Offset of the explicit IVs of the SAs this table creates (see `Sa::with_iv_offset`).
    iv_offset: u64,
}

impl EspTable {
    /// How many SAs the table holds: (outbound, inbound).
    pub fn sa_counts(&self) -> (usize, usize) {
        (self.outbound.len(), self.inbound.len())
    }

    /// SAs between `local` and each of `peers` for every key of `keyring`.
    pub fn new(
        transport: Transport,
        udp_port: u16,
        keyring: Keyring,
        local: Ipv4Addr,
        peers: impl IntoIterator<Item = Ipv4Addr>,
        encrypted_vnis: impl IntoIterator<Item = u32>,
    ) -> EspTable {
        let mut t = EspTable {
            transport,
            udp_port,
            keyring,
            local,
            encrypted: encrypted_vnis.into_iter().collect(),
            outbound: FxHashMap::default(),
            inbound: FxHashMap::default(),
            all: FxHashMap::default(),
            iv_offset: 0,
        };
        let peers: BTreeSet<Ipv4Addr> = peers.into_iter().filter(|p| *p != local).collect();
        t.build(&peers, None);
        for (tag, spi) in t.salt_collisions() {
            tracing::warn!(
                tag,
                spi = format_args!("{spi:#010x}"),
                "two SAs share an SPI and salt under one key: rotate the key to avoid GCM nonce reuse"
            );
        }
        t
    }

    fn build(&mut self, peers: &BTreeSet<Ipv4Addr>, previous: Option<&EspTable>) {
        let mut sa = |src: Ipv4Addr, dst: Ipv4Addr, k: &Key| -> Arc<Sa> {
            let id = (src, dst, k.tag);
            // Reuse only an SA under the very same key: a tag given a new key is a new SA.
            let old = previous.and_then(|p| {
                let same_key = p.keyring.keys.iter().any(|o| o == k);
                p.all.get(&id).filter(|_| same_key)
            });
            let sa = match old {
                Some(old) => Arc::clone(old),
                None => Arc::new(Sa::new(src, dst, k.tag, &k.key).with_iv_offset(self.iv_offset)),
            };
            self.all.insert(id, Arc::clone(&sa));
            sa
        };
        for &peer in peers {
            for k in &self.keyring.keys {
                let out = sa(self.local, peer, k);
                if k.tag == self.keyring.primary {
                    self.outbound.insert(peer, out);
                }
                let inb = sa(peer, self.local, k);
                self.inbound.insert((peer, inb.spi), inb);
            }
        }
    }

    /// SAs under one key whose SPIs (and so salts) collide: FNV-1a-32 of Docker's scheme can
    /// give two address pairs the same SPI, and two senders starting at sequence number 1
    /// under the same key and salt would reuse GCM nonces. Rare (2^-32 per pair), so reported
    /// rather than designed around; the remedy is a new key (rotation).
    pub fn salt_collisions(&self) -> Vec<(u32, u32)> {
        let mut seen: BTreeSet<(u32, u32)> = BTreeSet::new();
        let mut out = Vec::new();
        for sa in self.all.values() {
            if !seen.insert((sa.tag, sa.spi)) {
                out.push((sa.tag, sa.spi));
            }
        }
        out.sort_unstable();
        out
    }

    fn peers(&self) -> BTreeSet<Ipv4Addr> {
        self.outbound.keys().copied().collect()
    }

    /// The table after a key change: SAs of keys still in the ring are kept (their sequence
    /// numbers and replay windows carry on); SAs of new keys start at sequence number 1.
    pub fn rotate(&self, keyring: Keyring) -> EspTable {
        let mut t = EspTable {
            keyring,
            ..self.empty_like()
        };
        t.build(&self.peers(), Some(self));
        t
    }

    /// `new` (a table built afresh, e.g. from an edited topology) with the SAs of this table
    /// wherever peer, tag and key are unchanged.
    pub fn rotate_to(&self, new: &EspTable) -> EspTable {
        let mut t = EspTable {
            iv_offset: self.iv_offset,
            ..new.empty_like()
        };
        t.build(&new.peers(), Some(self));
        t
    }

    fn empty_like(&self) -> EspTable {
        EspTable {
            transport: self.transport,
            udp_port: self.udp_port,
            keyring: self.keyring.clone(),
            local: self.local,
            encrypted: self.encrypted.clone(),
            outbound: FxHashMap::default(),
            inbound: FxHashMap::default(),
            all: FxHashMap::default(),
            iv_offset: self.iv_offset,
        }
    }

    /// The same table whose SAs take explicit IVs `sequence number + offset`. A runtime gives
    /// a random offset per start: sequence numbers restart at 1 with the process, the IVs (and
    /// so the GCM nonces under a key that did not change) do not.
    pub fn with_iv_offset(&self, offset: u64) -> EspTable {
        let mut t = EspTable {
            iv_offset: offset,
            ..self.empty_like()
        };
        t.build(&self.peers(), None);
        t
    }

    /// True if the network with this VNI is encrypted.
    pub fn encrypts(&self, vni: u32) -> bool {
        self.encrypted.contains(&vni)
    }

    /// Every SA this node seals with (towards each peer, under each key of the ring).
    pub fn local_sas(&self) -> impl Iterator<Item = &Arc<Sa>> + '_ {
        self.all.values().filter(move |sa| sa.src == self.local)
    }

    /// Every SA this node opens with (from each peer, under each key of the ring).
    pub fn peer_sas(&self) -> impl Iterator<Item = &Arc<Sa>> + '_ {
        self.all.values().filter(move |sa| sa.dst == self.local)
    }

    /// The SA sealing towards `peer`.
    pub fn outbound(&self, peer: Ipv4Addr) -> Option<&Arc<Sa>> {
        self.outbound.get(&peer)
    }

    /// The SA opening packets from `src` with `spi`.
    pub fn inbound(&self, src: Ipv4Addr, spi: u32) -> Option<&Arc<Sa>> {
        self.inbound.get(&(src, spi))
    }

    /// Every SA, outbound and inbound, in a stable order (src, dst, tag): what a decoder such as
    /// Wireshark needs to read this node's traffic.
    pub fn sas(&self) -> Vec<(Arc<Sa>, KeyBytes)> {
        let mut v: Vec<_> = self
            .all
            .iter()
            .filter_map(|(id, sa)| {
                let key = self.keyring.keys.iter().find(|k| k.tag == id.2)?;
                Some((*id, Arc::clone(sa), key.key))
            })
            .collect();
        v.sort_by_key(|(id, _, _)| *id);
        v.into_iter().map(|(_, sa, key)| (sa, key)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
    const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
    const C: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 12);

    fn key(tag: u32) -> Key {
        Key {
            tag,
            key: [tag as u8; 16],
        }
    }

    fn ring(tags: &[u32], primary: u32) -> Keyring {
        Keyring::new(tags.iter().map(|t| key(*t)).collect(), primary).unwrap()
    }

    #[test]
    fn keyring_refusals() {
        assert_eq!(Keyring::new(vec![], 1), Err(KeyringError::Count(0)));
        let four = (1..=4).map(key).collect();
        assert_eq!(Keyring::new(four, 1), Err(KeyringError::Count(4)));
        assert_eq!(
            Keyring::new(vec![key(1), key(1)], 1),
            Err(KeyringError::DuplicateTag(1))
        );
        assert_eq!(
            Keyring::new(vec![key(1), key(2)], 3),
            Err(KeyringError::NoPrimary(3))
        );
        assert!(
            !format!("{:?}", key(7)).contains("7, 7"),
            "keys are redacted"
        );
    }

    #[test]
    fn rotation_moves_primary_and_prunes_oldest() {
        let r = ring(&[1, 2, 3], 2);
        let r = r.rotated(key(4)).unwrap();
        assert_eq!(r.primary, 3);
        assert_eq!(r.keys.iter().map(|k| k.tag).collect::<Vec<_>>(), [2, 3, 4]);
        let r = r.rotated(key(5)).unwrap();
        assert_eq!(r.primary, 4);
        assert_eq!(r.keys.iter().map(|k| k.tag).collect::<Vec<_>>(), [3, 4, 5]);
    }

    #[test]
    fn sas_per_peer_and_key() {
        let t = EspTable::new(
            Transport::Ip,
            4500,
            ring(&[1, 2, 3], 2),
            A,
            [B, C, A],
            [4097],
        );
        assert_eq!(t.outbound(B).unwrap().tag, 2);
        assert_eq!(t.outbound(B).unwrap().dst, B);
        assert!(t.outbound(A).is_none(), "no SA to ourselves");
        for tag in [1, 2, 3] {
            let spi = super::super::sa::spi(C, A, tag);
            assert_eq!(t.inbound(C, spi).unwrap().tag, tag);
            assert!(t.inbound(B, spi).is_none(), "the SPI belongs to C");
        }
        assert_eq!(t.sas().len(), 2 * 3 * 2);
        assert!(t.salt_collisions().is_empty());
        assert!(t.encrypts(4097) && !t.encrypts(4098));
    }

    #[test]
    fn rotation_keeps_counters_of_surviving_keys() {
        let t = EspTable::new(Transport::Ip, 4500, ring(&[1, 2, 3], 2), A, [B], [4097]);
        let before = Arc::clone(t.outbound(B).unwrap());
        for _ in 0..10 {
            before.next_seq().unwrap();
        }
        // Same ring: the very same SAs.
        let same = t.rotate(t.keyring.clone());
        assert!(Arc::ptr_eq(same.outbound(B).unwrap(), &before));
        // Rotate: primary 3 is a fresh SA; tag 2 survives with its counter for receiving.
        let next = t.rotate(t.keyring.rotated(key(4)).unwrap());
        assert_eq!(next.outbound(B).unwrap().tag, 3);
        assert_eq!(next.outbound(B).unwrap().last_seq(), 0);
        let back = next.rotate(ring(&[2, 3, 4], 2));
        assert!(Arc::ptr_eq(back.outbound(B).unwrap(), &before));
        assert_eq!(back.outbound(B).unwrap().last_seq(), 10);
        let inbound_1 = super::super::sa::spi(B, A, 1);
        assert!(next.inbound(B, inbound_1).is_none(), "tag 1 was pruned");
        // A tag that comes back with another key is another SA.
        let mut rekeyed = ring(&[1, 2, 3], 2);
        rekeyed.keys[1].key = [0xee; 16];
        let fresh = t.rotate(rekeyed);
        assert_eq!(fresh.outbound(B).unwrap().last_seq(), 0);
    }
}
