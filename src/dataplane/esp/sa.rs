//! One security association: AES-128-GCM ESP (RFC 4106) between two VTEPs under one key.
//!
//! Invariants:
//! - The outbound sequence number lives in the SA as an `AtomicU64` shared by every worker
//!   (`Arc<Sa>`): each packet takes a distinct number with one `fetch_add`, and that number is
//!   also the explicit IV, so no two packets sealed under this SA's key and salt share a nonce
//!   (RFC 4106 3.1: "the same IV value is used only once for a given key"). The counter never
//!   wraps: at 2^64 - 1 the SA refuses to seal.
//! - A runtime that must survive restarts also bounds the counter by a reservation
//!   (`Sa::reserve`): it writes "numbers up to R may have been used" to stable storage before
//!   raising the bound to R, and a restarted node resumes above the R it finds there
//!   (`Sa::resume_after`). Its peers' replay windows then accept it at once, instead of
//!   refusing everything up to the last number they saw. Without a reservation (replay, tests)
//!   the bound is 2^64 - 1.
//! - The inbound anti-replay window is one `Mutex<Window>` per SA, shared by every worker. A
//!   packet is checked before decryption (cheap refusal of replays) and accepted after its ICV
//!   verified with a second check-and-set under the lock, so when two workers open copies of the
//!   same packet concurrently exactly one is delivered. The lock is held for a few bit
//!   operations, never during cryptography.
//! - Opening happens in the caller's buffer; ring zeroes the plaintext when the ICV does not
//!   verify, so no unauthenticated byte survives a failed open.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, NONCE_LEN};

use super::window::Window;
use crate::wire::esp::{self as wire_esp, Trailer, ICV_LEN, PREFIX_LEN};

/// An AES-128 key as the topology gives it.
pub type KeyBytes = [u8; 16];

/// Why an ESP packet was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EspError {
    /// Too short, misaligned, or a trailer that does not parse.
    Malformed,
    /// No SA for this SPI (and source).
    UnknownSpi,
    /// The ICV did not verify.
    Auth,
    /// Already received, or older than the window.
    Replay,
    /// The outbound sequence number space is used up; the SA must be replaced.
    SeqExhausted,
    /// The next sequence number is beyond what the runtime reserved in stable storage.
    SeqUnreserved,
}

/// The IPv4 address as 16 bytes in IPv4-mapped form (::ffff:a.b.c.d), as Docker hashes it.
fn mapped(a: Ipv4Addr) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[10] = 0xff;
    b[11] = 0xff;
    b[12..].copy_from_slice(&a.octets());
    b
}

/// The SPI of the SA from `src` to `dst` under the key tagged `tag`: FNV-1a-32 over the source
/// address (16 bytes), the tag (big-endian u32) and the destination address (16 bytes), like
/// Docker's overlay driver, so both ends derive the same SPI without negotiating it.
pub fn spi(src: Ipv4Addr, dst: Ipv4Addr, tag: u32) -> u32 {
    const OFFSET: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    let mut h = OFFSET;
    for b in mapped(src)
        .iter()
        .chain(tag.to_be_bytes().iter())
        .chain(mapped(dst).iter())
    {
        h = (h ^ u32::from(*b)).wrapping_mul(PRIME);
    }
    h
}

/// Identifies a key without revealing it: the first 8 bytes of its SHA-256.
pub fn key_id(key: &KeyBytes) -> u64 {
    let digest = ring::digest::digest(&ring::digest::SHA256, key);
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest.as_ref()[..8]);
    u64::from_be_bytes(id)
}

/// A unidirectional SA: outbound on the sending node, inbound on the receiving one.
pub struct Sa {
    pub spi: u32,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// Tag of the key in the keyring.
    pub tag: u32,
    /// RFC 4106 4: the last 4 bytes of the keying material; here the SPI, big-endian.
    salt: [u8; 4],
    key: LessSafeKey,
    /// Identifies the key (a digest, never the key): an SA is the same across restarts only
    /// under the very same key.
    pub key_id: u64,
    /// The last sequence number used for sealing (0: none yet; the first packet has 1).
    last_seq: AtomicU64,
    /// The highest sequence number that may be used (see the module's invariants).
    reserved: AtomicU64,
    /// Added to the sequence number to make the explicit IV. Zero in replay (deterministic);
    /// random per run in the live runtime, so that a node restarted with the same keys, whose
    /// sequence numbers start at 1 again, still never repeats a nonce.
    iv_offset: u64,
    window: Mutex<Window>,
}

impl std::fmt::Debug for Sa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sa")
            .field("spi", &format_args!("{:#010x}", self.spi))
            .field("src", &self.src)
            .field("dst", &self.dst)
            .field("tag", &self.tag)
            .field("last_seq", &self.last_seq.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Sa {
    /// The SA from `src` to `dst` under `key` (tagged `tag`).
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, tag: u32, key: &KeyBytes) -> Sa {
        let spi = spi(src, dst, tag);
        // AES_128_GCM takes exactly 16-byte keys and `key` is a [u8; 16]: this cannot fail.
        let unbound = UnboundKey::new(&AES_128_GCM, key).expect("16-byte AES-128 key");
        Sa {
            spi,
            src,
            dst,
            tag,
            salt: spi.to_be_bytes(),
            key: LessSafeKey::new(unbound),
            key_id: key_id(key),
            last_seq: AtomicU64::new(0),
            reserved: AtomicU64::new(u64::MAX),
            iv_offset: 0,
            window: Mutex::new(Window::default()),
        }
    }

    /// This SA with explicit IVs `seq + offset` (see `iv_offset`).
    pub fn with_iv_offset(mut self, offset: u64) -> Sa {
        self.iv_offset = offset;
        self
    }

    /// An SA with a given SPI and salt, for published test vectors whose salt is not derived.
    #[cfg(test)]
    pub(crate) fn from_parts(spi: u32, salt: [u8; 4], key: &KeyBytes) -> Sa {
        let unbound = UnboundKey::new(&AES_128_GCM, key).expect("16-byte AES-128 key");
        Sa {
            spi,
            src: Ipv4Addr::UNSPECIFIED,
            dst: Ipv4Addr::UNSPECIFIED,
            tag: 0,
            salt,
            key: LessSafeKey::new(unbound),
            key_id: 0,
            last_seq: AtomicU64::new(0),
            reserved: AtomicU64::new(u64::MAX),
            iv_offset: 0,
            window: Mutex::new(Window::default()),
        }
    }

    /// The 4-byte salt (RFC 4106 4).
    pub fn salt(&self) -> [u8; 4] {
        self.salt
    }

    /// The last sequence number sealed (0 if none).
    pub fn last_seq(&self) -> u64 {
        self.last_seq.load(Ordering::Relaxed)
    }

    /// Takes the next outbound sequence number: unique across every thread sharing this SA.
    pub fn next_seq(&self) -> Result<u64, EspError> {
        // fetch_update rather than fetch_add so the counter stops at its bound instead of
        // wrapping to a used value. RFC 4303 3.3.3: "the counter MUST NOT be allowed to cycle".
        let limit = self.reserved.load(Ordering::Acquire);
        self.last_seq
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                s.checked_add(1).filter(|n| *n <= limit)
            })
            .map(|prev| prev + 1)
            .map_err(|last| {
                if last == u64::MAX {
                    EspError::SeqExhausted
                } else {
                    EspError::SeqUnreserved
                }
            })
    }

    /// The highest sequence number this SA may use.
    pub fn reserved(&self) -> u64 {
        self.reserved.load(Ordering::Acquire)
    }

    /// Lets this SA use sequence numbers up to `until`. A runtime calls this only after
    /// `until` is in stable storage.
    pub fn reserve(&self, until: u64) {
        self.reserved.store(until, Ordering::Release);
    }

    /// The highest sequence number received on this (inbound) SA, 0 if none.
    pub fn received_top(&self) -> u64 {
        self.window.lock().unwrap_or_else(|e| e.into_inner()).top()
    }

    /// Restores the receive window of a restarted node from a stored top (see
    /// `Window::restored`), unless this SA already received beyond it.
    pub fn restore_received(&self, top: u64) {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if w.top() < top {
            *w = Window::restored(top);
        }
    }

    /// Continues after `seq`: the next packet has `seq + 1` (or more, if this SA already went
    /// past it). For a node restarting with the reservation its previous run stored.
    pub fn resume_after(&self, seq: u64) {
        self.last_seq.fetch_max(seq, Ordering::Relaxed);
    }

    /// RFC 4106 4: the nonce is the salt followed by the explicit IV.
    fn nonce(&self, iv: [u8; 8]) -> Nonce {
        let mut n = [0u8; NONCE_LEN];
        n[..4].copy_from_slice(&self.salt);
        n[4..].copy_from_slice(&iv);
        Nonce::assume_unique_for_key(n)
    }

    /// RFC 4106 5: with ESN the AAD is SPI, high 32 bits, low 32 bits (12 bytes).
    fn aad(&self, seq: u64) -> [u8; 12] {
        let mut a = [0u8; 12];
        a[..4].copy_from_slice(&self.spi.to_be_bytes());
        a[4..].copy_from_slice(&seq.to_be_bytes());
        a
    }

    /// Seals in place. `buf[esp_start..esp_start + PREFIX_LEN]` is reserved for the ESP header
    /// and IV and `buf[esp_start + PREFIX_LEN..]` holds the payload; this writes the header,
    /// appends padding and trailer, encrypts, and appends the ICV. `seq` comes from
    /// [`Sa::next_seq`]; it is also the explicit IV.
    pub fn seal(
        &self,
        buf: &mut Vec<u8>,
        esp_start: usize,
        seq: u64,
        next_header: u8,
    ) -> Result<(), EspError> {
        let payload_start = esp_start + PREFIX_LEN;
        let payload_len = buf
            .len()
            .checked_sub(payload_start)
            .ok_or(EspError::Malformed)?;
        Trailer::emit(next_header, payload_len, buf);
        let iv = seq.wrapping_add(self.iv_offset).to_be_bytes();
        {
            let mut p = wire_esp::Packet::new_unchecked(&mut buf[esp_start..payload_start]);
            p.set_spi(self.spi);
            p.set_seq_low(seq as u32);
            p.set_iv(iv);
        }
        let tag = self
            .key
            .seal_in_place_separate_tag(
                self.nonce(iv),
                Aad::from(self.aad(seq)),
                &mut buf[payload_start..],
            )
            .map_err(|_| EspError::Malformed)?;
        buf.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// The full sequence number of an arriving packet if the window may accept it (RFC 4303
    /// 3.4.3, with the high bits inferred as in Appendix A2.2).
    pub fn check(&self, seq_low: u32) -> Result<u64, EspError> {
        let w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        w.infer(seq_low)
            .filter(|&s| w.check(s))
            .ok_or(EspError::Replay)
    }

    /// Opens `esp` (SPI to ICV, already checked by [`Sa::check`] for `seq`) in place and
    /// returns the range of the payload in `esp` and its next-header value. On `Err`, no
    /// plaintext is left in `esp`.
    pub fn open(&self, esp: &mut [u8], seq: u64) -> Result<(std::ops::Range<usize>, u8), EspError> {
        let p = wire_esp::Packet::new_checked(&*esp).map_err(|_| EspError::Malformed)?;
        let nonce = self.nonce(p.iv());
        let body = &mut esp[PREFIX_LEN..];
        let plain_len = match self
            .key
            .open_in_place(nonce, Aad::from(self.aad(seq)), body)
        {
            Ok(plain) => plain.len(),
            Err(_) => {
                body.fill(0);
                return Err(EspError::Auth);
            }
        };
        let plain = &esp[PREFIX_LEN..PREFIX_LEN + plain_len];
        let (trailer, payload) = match Trailer::parse(plain) {
            Ok(t) => t,
            Err(_) => {
                esp[PREFIX_LEN..].fill(0);
                return Err(EspError::Malformed);
            }
        };
        let end = PREFIX_LEN + payload.len();
        // RFC 4303 3.4.3: the window is updated only once the ICV has verified.
        let fresh = {
            let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
            w.accept(seq)
        };
        if !fresh {
            esp[PREFIX_LEN..].fill(0);
            return Err(EspError::Replay);
        }
        debug_assert!(end + ICV_LEN <= esp.len());
        Ok((PREFIX_LEN..end, trailer.next_header))
    }

    /// Check, open and accept in one call, for callers that own a mutable copy of the packet.
    pub fn check_and_open(&self, esp: &mut [u8]) -> Result<(std::ops::Range<usize>, u8), EspError> {
        let p = wire_esp::Packet::new_checked(&*esp).map_err(|_| EspError::Malformed)?;
        if p.spi() != self.spi {
            return Err(EspError::UnknownSpi);
        }
        let seq = self.check(p.seq_low())?;
        self.open(esp, seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
    const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
    const KEY: KeyBytes = [
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e,
        0x0f,
    ];

    fn seal(sa: &Sa, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; PREFIX_LEN];
        b.extend_from_slice(payload);
        let seq = sa.next_seq().unwrap();
        sa.seal(&mut b, 0, seq, 17).unwrap();
        b
    }

    #[test]
    fn spi_is_fnv1a_over_mapped_addresses_and_tag() {
        // Computed independently: FNV-1a-32 of 00*10 ff ff c0 00 02 0a | 00 00 00 01 |
        // 00*10 ff ff c0 00 02 0b.
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&[0; 10]);
        bytes.extend_from_slice(&[0xff, 0xff, 192, 0, 2, 10]);
        bytes.extend_from_slice(&1u32.to_be_bytes());
        bytes.extend_from_slice(&[0; 10]);
        bytes.extend_from_slice(&[0xff, 0xff, 192, 0, 2, 11]);
        let mut h: u32 = 2166136261;
        for b in bytes {
            h ^= u32::from(b);
            h = h.wrapping_mul(16777619);
        }
        assert_eq!(spi(A, B, 1), h);
        assert_ne!(spi(A, B, 1), spi(B, A, 1), "each direction has its own SPI");
        assert_ne!(spi(A, B, 1), spi(A, B, 2), "each key has its own SPI");
        let sa = Sa::new(A, B, 1, &KEY);
        assert_eq!(sa.salt(), h.to_be_bytes());
    }

    #[test]
    fn seal_then_open_round_trips_and_sequence_starts_at_one() {
        let tx = Sa::new(A, B, 1, &KEY);
        let rx = Sa::new(A, B, 1, &KEY);
        for n in 1..=5u64 {
            let payload: Vec<u8> = (0..n as u8 * 7).collect();
            let mut pkt = seal(&tx, &payload);
            let p = wire_esp::Packet::new_checked(&pkt[..]).unwrap();
            assert_eq!(p.seq_low(), n as u32);
            assert_eq!(p.iv(), n.to_be_bytes(), "the IV is the sequence number");
            let (range, nh) = rx.check_and_open(&mut pkt).unwrap();
            assert_eq!(nh, 17);
            assert_eq!(&pkt[range], &payload[..]);
        }
    }

    #[test]
    fn tampering_anywhere_fails_and_leaves_no_plaintext() {
        let tx = Sa::new(A, B, 1, &KEY);
        let payload = [0x42u8; 64];
        let pkt = seal(&tx, &payload);
        // Bytes 0..4 (SPI) select the SA; flipping them is an unknown SPI, tested elsewhere.
        for i in 4..pkt.len() {
            let rx = Sa::new(A, B, 1, &KEY);
            let mut bad = pkt.clone();
            bad[i] ^= 0x02; // not 0x01: sequence number 1 would become 0, a replay
            let r = rx.check_and_open(&mut bad);
            assert_eq!(r, Err(EspError::Auth), "byte {i}");
            assert!(
                bad[PREFIX_LEN..].iter().all(|b| *b == 0),
                "byte {i}: plaintext left behind"
            );
        }
    }

    #[test]
    fn wrong_key_fails() {
        let tx = Sa::new(A, B, 1, &KEY);
        let mut other = KEY;
        other[0] ^= 0x80;
        let rx = Sa::new(A, B, 1, &other);
        let mut pkt = seal(&tx, b"hello");
        assert_eq!(rx.check_and_open(&mut pkt), Err(EspError::Auth));
    }

    #[test]
    fn replay_is_refused_and_window_survives_failed_forgeries() {
        let tx = Sa::new(A, B, 1, &KEY);
        let rx = Sa::new(A, B, 1, &KEY);
        let pkt = seal(&tx, b"once");
        let mut first = pkt.clone();
        assert!(rx.check_and_open(&mut first).is_ok());
        let mut again = pkt.clone();
        assert_eq!(rx.check_and_open(&mut again), Err(EspError::Replay));
        // A forged packet far ahead must not move the window.
        let mut forged = seal(&tx, b"two");
        forged[4..8].copy_from_slice(&5000u32.to_be_bytes());
        assert_eq!(rx.check_and_open(&mut forged), Err(EspError::Auth));
        let mut second = seal(&tx, b"three");
        assert!(rx.check_and_open(&mut second).is_ok());
    }

    #[test]
    fn sequence_numbers_are_unique_across_threads() {
        let sa = Arc::new(Sa::new(A, B, 1, &KEY));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let sa = Arc::clone(&sa);
                std::thread::spawn(move || {
                    (0..10_000)
                        .map(|_| sa.next_seq().unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<u64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        all.sort_unstable();
        assert_eq!(all, (1..=40_000).collect::<Vec<_>>());
    }

    #[test]
    fn exhausted_counter_refuses_instead_of_wrapping() {
        let sa = Sa::new(A, B, 1, &KEY);
        sa.last_seq.store(u64::MAX - 1, Ordering::Relaxed);
        assert_eq!(sa.next_seq(), Ok(u64::MAX));
        assert_eq!(sa.next_seq(), Err(EspError::SeqExhausted));
        assert_eq!(sa.next_seq(), Err(EspError::SeqExhausted));
    }

    #[test]
    fn a_reservation_bounds_the_sequence_and_a_restart_resumes_above_it() {
        let key = [7u8; 16];
        let (a, b) = (Ipv4Addr::new(192, 0, 2, 10), Ipv4Addr::new(192, 0, 2, 11));
        let first = Sa::new(a, b, 1, &key);
        first.reserve(3);
        assert_eq!(
            (1..=3)
                .map(|_| first.next_seq().unwrap())
                .collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(first.next_seq(), Err(EspError::SeqUnreserved));
        first.reserve(100);
        assert_eq!(first.next_seq(), Ok(4));

        // The receiver saw up to 4; a restart resuming after the stored reservation (100) is
        // accepted, where one starting at 1 again is refused as a replay.
        let rx = Sa::new(a, b, 1, &key);
        let mut wire = Vec::new();
        for seq in 1..=4 {
            let mut p = vec![0u8; 64];
            first.seal(&mut p, 0, seq, 17).unwrap();
            wire = p.clone();
            rx.check_and_open(&mut p).unwrap();
        }
        let again = Sa::new(a, b, 1, &key);
        let mut p = vec![0u8; 64];
        again
            .seal(&mut p, 0, again.next_seq().unwrap(), 17)
            .unwrap();
        assert_eq!(rx.check_and_open(&mut p), Err(EspError::Replay));
        again.resume_after(100);
        let mut p = vec![0u8; 64];
        let seq = again.next_seq().unwrap();
        assert_eq!(seq, 101);
        again.seal(&mut p, 0, seq, 17).unwrap();
        assert!(rx.check_and_open(&mut p).is_ok());
        assert_eq!(rx.check_and_open(&mut wire), Err(EspError::Replay));
        assert_eq!(again.key_id, first.key_id, "same key, same SA identity");
        assert_ne!(Sa::new(a, b, 1, &[8u8; 16]).key_id, first.key_id);
    }

    #[test]
    fn high_sequence_bits_are_authenticated_not_sent() {
        // Two packets whose sequence numbers differ only in the high 32 bits are identical on
        // the wire in SPI and sequence fields, and each opens only under its own high bits.
        let tx = Sa::new(A, B, 1, &KEY);
        tx.last_seq.store((1 << 32) + 6, Ordering::Relaxed);
        let pkt = seal(&tx, b"esn");
        let p = wire_esp::Packet::new_checked(&pkt[..]).unwrap();
        assert_eq!(p.seq_low(), 7);
        let rx = Sa::new(A, B, 1, &KEY);
        let mut wrong_high = pkt.clone();
        assert_eq!(rx.open(&mut wrong_high, 7), Err(EspError::Auth));
        let mut right = pkt.clone();
        assert!(rx.open(&mut right, (1 << 32) + 7).is_ok());
    }

    #[test]
    fn an_iv_offset_changes_the_nonce_not_the_sequence() {
        let key = [7u8; 16];
        let a = Sa::new(
            "192.0.2.10".parse().unwrap(),
            "192.0.2.11".parse().unwrap(),
            2,
            &key,
        );
        let restarted = Sa::new(a.src, a.dst, 2, &key).with_iv_offset(0x1234_5678_9abc_def0);
        let (p1, p2) = (seal(&a, b"same payload"), seal(&restarted, b"same payload"));
        let (v1, v2) = (
            wire_esp::Packet::new_checked(&p1[..]).unwrap(),
            wire_esp::Packet::new_checked(&p2[..]).unwrap(),
        );
        assert_eq!(
            v1.seq_low(),
            v2.seq_low(),
            "both start at sequence number 1"
        );
        assert_ne!(v1.iv(), v2.iv(), "but never share a nonce");
        assert_ne!(p1, p2);
        // A receiver reads the IV from the packet: it opens either.
        for p in [p1, p2] {
            let rx = Sa::new(a.src, a.dst, 2, &key);
            let mut esp = p.clone();
            assert!(rx.open(&mut esp, 1).is_ok());
        }
    }
}
