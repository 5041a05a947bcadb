//! Maglev consistent hashing (Eisenbud et al., NSDI 2016, section 3.4): a lookup table of a
//! prime size in which every backend owns an almost equal share of slots, and which moves few
//! slots when a backend comes or goes. A flow's hash picks a slot; the slot names its backend.
//!
//! Everything is computed with fixed hash functions (no per-process seed), so every node builds
//! the same table for the same backends and picks the same backend for the same flow.

use std::net::Ipv4Addr;

/// Slots in a table: a prime, as Maglev needs. 4093 slots give each of up to ~40 backends a
/// share within 2.5% of the others' (the table's balance is within one slot per backend); a
/// table costs 8 KiB and about 20 us to build.
pub const TABLE_SIZE: usize = 4093;

/// A Maglev lookup table over `n` backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maglev {
    /// Backend index per slot; empty when there is no backend.
    slots: Box<[u16]>,
}

impl Maglev {
    /// The table for backends known by `keys` (stable names: a backend keeps its slots while
    /// others come and go). At most 65535 backends; more are ignored.
    pub fn new<S: AsRef<str>>(keys: &[S]) -> Maglev {
        let n = keys.len().min(usize::from(u16::MAX));
        if n == 0 {
            return Maglev {
                slots: Box::new([]),
            };
        }
        let m = TABLE_SIZE as u64;
        let perm: Vec<(u64, u64)> = keys[..n]
            .iter()
            .map(|k| {
                let k = k.as_ref().as_bytes();
                let offset = fnv1a(k, 0xcbf2_9ce4_8422_2325) % m;
                let skip = fnv1a(k, 0x8422_2325_cbf2_9ce4) % (m - 1) + 1;
                (offset, skip)
            })
            .collect();
        let mut next = vec![0u64; n];
        let mut slots = vec![u16::MAX; TABLE_SIZE];
        let mut filled = 0;
        'fill: loop {
            for (i, &(offset, skip)) in perm.iter().enumerate() {
                let mut c = (offset + next[i] * skip) % m;
                while slots[c as usize] != u16::MAX {
                    next[i] += 1;
                    c = (offset + next[i] * skip) % m;
                }
                slots[c as usize] = i as u16;
                next[i] += 1;
                filled += 1;
                if filled == TABLE_SIZE {
                    break 'fill;
                }
            }
        }
        Maglev {
            slots: slots.into_boxed_slice(),
        }
    }

    /// The backend (index into the keys given to `new`) of a flow's hash; `None` without
    /// backends.
    #[inline]
    pub fn pick(&self, hash: u64) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        Some(usize::from(self.slots[(hash % TABLE_SIZE as u64) as usize]))
    }

    /// How many slots each backend owns (for tests and `inspect`).
    pub fn shares(&self, backends: usize) -> Vec<usize> {
        let mut out = vec![0; backends];
        for &s in self.slots.iter() {
            if let Some(c) = out.get_mut(usize::from(s)) {
                *c += 1;
            }
        }
        out
    }
}

/// FNV-1a, 64 bits, from `basis`, then a finaliser so that low bits depend on every byte.
fn fnv1a(data: &[u8], basis: u64) -> u64 {
    let mut h = basis;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

/// The splitmix64 finaliser.
#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The hash of a flow's 5-tuple (client side: source is the client, destination the VIP).
#[inline]
pub fn flow_hash(proto: u8, src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> u64 {
    let a = (u64::from(u32::from(src)) << 32) | u64::from(u32::from(dst));
    let b = (u64::from(sport) << 24) | (u64::from(dport) << 8) | u64::from(proto);
    mix(mix(a) ^ b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("web.{i}.task{i:04}")).collect()
    }

    #[test]
    fn every_backend_gets_an_almost_equal_share() {
        for n in [1, 2, 3, 5, 10, 40] {
            let t = Maglev::new(&names(n));
            let shares = t.shares(n);
            let (lo, hi) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
            assert_eq!(shares.iter().sum::<usize>(), TABLE_SIZE);
            assert!(hi - lo <= 1, "{n} backends: shares {shares:?}");
        }
        assert_eq!(Maglev::new::<&str>(&[]).pick(42), None);
    }

    #[test]
    fn removing_a_backend_moves_only_its_flows_mostly() {
        let all = names(5);
        let before = Maglev::new(&all);
        let fewer: Vec<String> = all.iter().filter(|n| !n.contains(".3.")).cloned().collect();
        let after = Maglev::new(&fewer);
        let mut kept = 0;
        let mut stayed_elsewhere = 0;
        for slot in 0..TABLE_SIZE as u64 {
            let b = &all[before.pick(slot).unwrap()];
            let a = &fewer[after.pick(slot).unwrap()];
            if b.contains(".3.") {
                continue;
            }
            stayed_elsewhere += 1;
            if a == b {
                kept += 1;
            }
        }
        // Maglev's paper: a few percent of the other backends' slots move.
        assert!(
            kept * 100 >= stayed_elsewhere * 90,
            "{kept}/{stayed_elsewhere}"
        );
    }

    #[test]
    fn tables_and_hashes_are_the_same_everywhere() {
        // Fixed functions: these values are what every node computes.
        let t = Maglev::new(&["a", "b", "c"]);
        let h = flow_hash(
            6,
            Ipv4Addr::new(10, 0, 0, 5),
            40000,
            Ipv4Addr::new(10, 0, 0, 2),
            80,
        );
        assert_eq!(t, Maglev::new(&["a", "b", "c"]));
        assert_eq!(
            h,
            flow_hash(
                6,
                Ipv4Addr::new(10, 0, 0, 5),
                40000,
                Ipv4Addr::new(10, 0, 0, 2),
                80
            )
        );
        assert_ne!(
            h,
            flow_hash(
                6,
                Ipv4Addr::new(10, 0, 0, 5),
                40001,
                Ipv4Addr::new(10, 0, 0, 2),
                80
            )
        );
        assert_ne!(
            h,
            flow_hash(
                17,
                Ipv4Addr::new(10, 0, 0, 5),
                40000,
                Ipv4Addr::new(10, 0, 0, 2),
                80
            )
        );
    }

    #[test]
    fn flows_spread_evenly() {
        let t = Maglev::new(&names(3));
        let mut count = [0usize; 3];
        for port in 0..30_000u16 {
            let h = flow_hash(
                6,
                Ipv4Addr::new(10, 0, 0, 5),
                32768 + port,
                Ipv4Addr::new(10, 0, 0, 2),
                80,
            );
            count[t.pick(h).unwrap()] += 1;
        }
        for c in count {
            assert!((9_000..=11_000).contains(&c), "{count:?}");
        }
    }
}
