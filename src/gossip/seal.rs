//! Sealing of every gossip message under the swarm's keyring: AES-GCM (128 or 256 by key
//! length), sent under the newest key, opened under whichever key the tag names.
//!
//! Wire layout (all of it authenticated, none of the payload readable):
//! `[format 1][key tag u32 BE][nonce: salt u32 | seq u64 BE][ciphertext][GCM tag 16]`.
//! The nonce is the sender instance's random 32-bit salt then its message counter: a sender never
//! repeats one (the counter only grows, and starts at a caller-chosen base that a restart raises),
//! and the counter doubles as the replay sequence, checked per sender against a sliding window.
//! The first five bytes are the additional authenticated data; the nonce is bound by GCM itself.

use std::collections::HashMap;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM};

const FORMAT: u8 = 1;
const HEADER_LEN: usize = 1 + 4 + 12;
const TAG_LEN: usize = 16;

/// Why a received message was dropped. Each reason has its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Too short, unknown format, or a payload that does not decode.
    Malformed,
    /// Sealed under a key tag that is not in our keyring (a foreign swarm or a retired key).
    UnknownKey,
    /// The GCM tag does not verify: forged, tampered, or sealed under another key with our tag.
    AuthFailed,
    /// A sequence number this sender already used, or one too old for the window.
    Replay,
    /// The sender is not in the swarm's node list, or the cluster declared it down.
    NotMember,
}

impl DropReason {
    pub const ALL: [DropReason; 5] = [
        DropReason::Malformed,
        DropReason::UnknownKey,
        DropReason::AuthFailed,
        DropReason::Replay,
        DropReason::NotMember,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnknownKey => "unknown_key",
            DropReason::AuthFailed => "auth_failed",
            DropReason::Replay => "replay",
            DropReason::NotMember => "not_member",
        }
    }
}

/// A keyring entry was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("gossip key {tag} is {len} bytes; AES-GCM needs 16 (AES-128) or 32 (AES-256)")]
    BadLength { tag: u32, len: usize },
    #[error("the gossip keyring is empty; the swarm's network keys are needed to gossip")]
    Empty,
}

/// The swarm's keys, by tag. The highest tag is the one we send with.
pub struct Keyring {
    keys: Vec<(u32, LessSafeKey)>,
}

impl Keyring {
    pub fn new(keys: &[(u32, Vec<u8>)]) -> Result<Self, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        let mut out = Vec::with_capacity(keys.len());
        for (tag, bytes) in keys {
            let alg = match bytes.len() {
                16 => &AES_128_GCM,
                32 => &AES_256_GCM,
                len => return Err(KeyError::BadLength { tag: *tag, len }),
            };
            let unbound = UnboundKey::new(alg, bytes).map_err(|_| KeyError::BadLength {
                tag: *tag,
                len: bytes.len(),
            })?;
            out.push((*tag, LessSafeKey::new(unbound)));
        }
        out.sort_by_key(|(tag, _)| std::cmp::Reverse(*tag));
        Ok(Self { keys: out })
    }

    /// Send under `tag` instead of the newest key, if the ring holds it: the swarm installs a
    /// new key on every node one rotation before anyone sends with it (as ESP does), so a node
    /// that has the new set already does not send what the others cannot open yet.
    pub fn sending_with(mut self, tag: u32) -> Self {
        if let Some(i) = self.keys.iter().position(|(t, _)| *t == tag) {
            let k = self.keys.remove(i);
            self.keys.insert(0, k);
        }
        self
    }

    /// The tag messages are sealed under.
    pub fn sending_tag(&self) -> u32 {
        self.primary().0
    }

    fn primary(&self) -> &(u32, LessSafeKey) {
        // Invariant: `new` refuses an empty list.
        &self.keys[0]
    }

    fn by_tag(&self, tag: u32) -> Option<&LessSafeKey> {
        self.keys.iter().find(|(t, _)| *t == tag).map(|(_, k)| k)
    }

    /// Seal `plaintext` with nonce (salt, seq) under the newest key.
    pub fn seal(&self, salt: u32, seq: u64, plaintext: &[u8]) -> Vec<u8> {
        let (tag, key) = self.primary();
        let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
        out.push(FORMAT);
        out.extend_from_slice(&tag.to_be_bytes());
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&salt.to_be_bytes());
        nonce[4..].copy_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&nonce);
        let aad: [u8; 5] = [out[0], out[1], out[2], out[3], out[4]];
        let mut body = plaintext.to_vec();
        // Sealing only fails for inputs over GCM's 64 GiB limit, which no message reaches.
        if key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut body,
            )
            .is_err()
        {
            return Vec::new();
        }
        out.extend_from_slice(&body);
        out
    }

    /// Open a sealed message: its sequence number and plaintext.
    pub fn open(&self, bytes: &[u8]) -> Result<(u64, Vec<u8>), DropReason> {
        if bytes.len() < HEADER_LEN + TAG_LEN || bytes[0] != FORMAT {
            return Err(DropReason::Malformed);
        }
        let tag = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        let key = self.by_tag(tag).ok_or(DropReason::UnknownKey)?;
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&bytes[5..HEADER_LEN]);
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&nonce[4..]);
        let aad: [u8; 5] = [bytes[0], bytes[1], bytes[2], bytes[3], bytes[4]];
        let mut body = bytes[HEADER_LEN..].to_vec();
        let plain_len = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut body,
            )
            .map_err(|_| DropReason::AuthFailed)?
            .len();
        body.truncate(plain_len);
        Ok((u64::from_be_bytes(seq), body))
    }
}

/// Sliding replay window of one sender (RFC 4303's anti-replay window, 128 wide).
#[derive(Debug, Default, Clone)]
pub struct ReplayWindow {
    top: u64,
    /// Bit i set: `top - i` was seen.
    seen: u128,
    started: bool,
}

impl ReplayWindow {
    const WIDTH: u64 = 128;

    /// Accept `seq` once; refuse repeats and anything older than the window.
    pub fn check_and_set(&mut self, seq: u64) -> bool {
        if !self.started {
            self.started = true;
            self.top = seq;
            self.seen = 1;
            return true;
        }
        if seq > self.top {
            let shift = seq - self.top;
            self.seen = if shift >= Self::WIDTH {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.top = seq;
            return true;
        }
        let back = self.top - seq;
        if back >= Self::WIDTH {
            return false;
        }
        let bit = 1u128 << back;
        if self.seen & bit != 0 {
            return false;
        }
        self.seen |= bit;
        true
    }
}

/// Per-sender replay windows, keyed by swarm node ID.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    windows: HashMap<String, ReplayWindow>,
}

impl ReplayGuard {
    pub fn check_and_set(&mut self, sender: &str, seq: u64) -> bool {
        if let Some(w) = self.windows.get_mut(sender) {
            return w.check_and_set(seq);
        }
        let mut w = ReplayWindow::default();
        w.check_and_set(seq);
        self.windows.insert(sender.to_string(), w);
        true
    }

    pub fn forget(&mut self, sender: &str) {
        self.windows.remove(sender);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(tag: u32, b: u8, len: usize) -> Keyring {
        Keyring::new(&[(tag, vec![b; len])]).unwrap()
    }

    #[test]
    fn round_trip_under_128_and_256() {
        for len in [16, 32] {
            let k = ring(7, 1, len);
            let sealed = k.seal(9, 42, b"hello web 10.0.0.5");
            assert_eq!(k.open(&sealed), Ok((42, b"hello web 10.0.0.5".to_vec())));
            assert!(!sealed.windows(5).any(|w| w == b"hello"));
        }
    }

    #[test]
    fn newest_key_sends_older_still_opens() {
        let old = Keyring::new(&[(1, vec![1; 16])]).unwrap();
        let both = Keyring::new(&[(1, vec![1; 16]), (2, vec![2; 16])]).unwrap();
        let from_new = both.seal(0, 1, b"x");
        assert_eq!(&from_new[1..5], &2u32.to_be_bytes());
        assert_eq!(old.open(&from_new), Err(DropReason::UnknownKey));
        assert_eq!(both.open(&old.seal(0, 1, b"y")), Ok((1, b"y".to_vec())));
    }

    #[test]
    fn the_primary_key_sends_when_asked_and_the_newest_still_opens() {
        let keys = [(1, vec![1; 16]), (2, vec![2; 16]), (3, vec![3; 16])];
        let ring = Keyring::new(&keys).unwrap().sending_with(2);
        assert_eq!(ring.sending_tag(), 2);
        let sealed = ring.seal(0, 1, b"x");
        assert_eq!(&sealed[1..5], &2u32.to_be_bytes());
        let newest = Keyring::new(&[(3, vec![3; 16])]).unwrap();
        assert_eq!(ring.open(&newest.seal(0, 1, b"y")), Ok((1, b"y".to_vec())));
        // A tag it does not hold changes nothing.
        assert_eq!(
            Keyring::new(&keys).unwrap().sending_with(9).sending_tag(),
            3
        );
    }

    #[test]
    fn tamper_foreign_key_and_bad_lengths_refused() {
        let k = ring(7, 1, 16);
        let mut sealed = k.seal(0, 1, b"payload");
        for i in 0..sealed.len() {
            sealed[i] ^= 0x40;
            let r = k.open(&sealed);
            assert!(r.is_err(), "byte {i} flipped yet accepted");
            sealed[i] ^= 0x40;
        }
        // Same tag, different key bytes: the tag cannot verify.
        assert_eq!(ring(7, 2, 16).open(&sealed), Err(DropReason::AuthFailed));
        assert_eq!(
            Keyring::new(&[(3, vec![0; 24])]).err(),
            Some(KeyError::BadLength { tag: 3, len: 24 })
        );
        assert_eq!(Keyring::new(&[]).err(), Some(KeyError::Empty));
    }

    #[test]
    fn replay_window_accepts_once_and_in_reorder() {
        let mut w = ReplayWindow::default();
        assert!(w.check_and_set(100));
        assert!(!w.check_and_set(100));
        assert!(w.check_and_set(98));
        assert!(!w.check_and_set(98));
        assert!(w.check_and_set(300));
        assert!(!w.check_and_set(100), "older than the window");
        assert!(w.check_and_set(299));
        assert!(w.check_and_set(173));
        assert!(!w.check_and_set(172));
    }
}
