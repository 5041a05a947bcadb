//! ESP packet (RFC 4303 section 2) with an AES-GCM transform (RFC 4106 section 3): a checked
//! view over the bytes from the SPI to the end of the ICV.
//!
//! ```text
//!  0               1               2               3
//! |               Security Parameters Index (SPI)                 |
//! |                      Sequence Number (low 32 bits)            |
//! |                    Initialization Vector (8 bytes)            |
//! ~            Ciphertext: payload, padding, pad length, next header ~
//! |                 Integrity Check Value (16 bytes)              |
//! ```
//!
//! The trailer (padding, pad length, next header) is encrypted: [`Trailer::parse`] reads it from
//! the plaintext once the ICV has verified. With extended sequence numbers the high 32 bits are
//! never sent: they take part in the ICV only (RFC 4303 2.2.1).

use super::{Error, Result};

mod field {
    use core::ops::Range;
    pub const SPI: Range<usize> = 0..4;
    pub const SEQ: Range<usize> = 4..8;
    pub const IV: Range<usize> = 8..16;
    pub const CIPHERTEXT: usize = 16;
}

/// SPI and sequence number.
pub const HEADER_LEN: usize = 8;
/// The explicit IV of AES-GCM-ESP (RFC 4106 3.1): 8 octets.
pub const IV_LEN: usize = 8;
/// The ICV this stack uses: 16 octets (RFC 4106 allows 8, 12 or 16).
pub const ICV_LEN: usize = 16;
/// Pad length and next header.
pub const TRAILER_LEN: usize = 2;
/// Bytes in front of the ciphertext: SPI, sequence number, IV.
pub const PREFIX_LEN: usize = field::CIPHERTEXT;
/// Smallest ESP packet: prefix, an empty payload's trailer, ICV.
pub const MIN_LEN: usize = PREFIX_LEN + TRAILER_LEN + ICV_LEN;
/// IP protocol number of ESP.
pub const IP_PROTOCOL: u8 = 50;
/// RFC 4303 2.4: "the Padding field ... to ensure that the resulting ciphertext terminates on a
/// 4-byte boundary".
pub const ALIGN: usize = 4;

/// Padding bytes needed after a payload of `len` bytes.
pub const fn pad_len(len: usize) -> usize {
    (ALIGN - (len + TRAILER_LEN) % ALIGN) % ALIGN
}

/// Bytes ESP adds around a payload of `len` bytes.
pub const fn overhead(len: usize) -> usize {
    PREFIX_LEN + pad_len(len) + TRAILER_LEN + ICV_LEN
}

/// A read/write view of an ESP packet.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it; accessors may panic until `check_len` passes.
    pub fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after checking it can hold an ESP packet.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Ensures no accessor panics: the buffer holds the header, IV, a trailer and the ICV, and
    /// the ciphertext ends on a 4-byte boundary (anything else cannot have come from a sender
    /// following RFC 4303 2.4, and is refused before any cryptography).
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < MIN_LEN {
            return Err(Error::Truncated);
        }
        if (len - PREFIX_LEN - ICV_LEN) % ALIGN != 0 {
            return Err(Error::Malformed);
        }
        Ok(())
    }

    pub fn spi(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::SPI];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The low 32 bits of the sequence number.
    pub fn seq_low(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::SEQ];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    pub fn iv(&self) -> [u8; IV_LEN] {
        let mut iv = [0u8; IV_LEN];
        iv.copy_from_slice(&self.buffer.as_ref()[field::IV]);
        iv
    }

    /// The encrypted payload and trailer.
    pub fn ciphertext(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[field::CIPHERTEXT..b.len() - ICV_LEN]
    }

    /// Ciphertext followed by the ICV: what AES-GCM opens.
    pub fn ciphertext_and_icv(&self) -> &[u8] {
        &self.buffer.as_ref()[field::CIPHERTEXT..]
    }

    pub fn icv(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[b.len() - ICV_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_spi(&mut self, spi: u32) {
        self.buffer.as_mut()[field::SPI].copy_from_slice(&spi.to_be_bytes());
    }

    pub fn set_seq_low(&mut self, seq: u32) {
        self.buffer.as_mut()[field::SEQ].copy_from_slice(&seq.to_be_bytes());
    }

    pub fn set_iv(&mut self, iv: [u8; IV_LEN]) {
        self.buffer.as_mut()[field::IV].copy_from_slice(&iv);
    }
}

/// The decrypted trailer: how much padding to strip and what the payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    pub pad_len: u8,
    pub next_header: u8,
}

impl Trailer {
    /// Reads the trailer at the end of `plaintext` (payload, padding, pad length, next header)
    /// and returns it with the payload. RFC 4303 2.4: padding bytes are 1, 2, 3, ... by default;
    /// a receiver "MUST inspect the Pad Length field and use this value to determine the
    /// quantity of padding"; their content is checked here too, which costs nothing and
    /// refuses a decryption that went wrong.
    pub fn parse(plaintext: &[u8]) -> Result<(Trailer, &[u8])> {
        let n = plaintext.len();
        if n < TRAILER_LEN {
            return Err(Error::Truncated);
        }
        let t = Trailer {
            pad_len: plaintext[n - 2],
            next_header: plaintext[n - 1],
        };
        let pad = usize::from(t.pad_len);
        let end = n.checked_sub(TRAILER_LEN + pad).ok_or(Error::Malformed)?;
        let padding = &plaintext[end..n - TRAILER_LEN];
        if padding.iter().zip(1u8..).any(|(b, want)| *b != want) {
            return Err(Error::Malformed);
        }
        Ok((t, &plaintext[..end]))
    }

    /// Appends padding (1, 2, 3, ...) and the trailer for a payload of `payload_len` bytes.
    pub fn emit(next_header: u8, payload_len: usize, out: &mut Vec<u8>) {
        let pad = pad_len(payload_len);
        out.extend((1..=pad as u8).take(pad));
        out.push(pad as u8);
        out.push(next_header);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // SPI 0x4a2cbfe3, sequence 1, IV 00..01, a 4-byte ciphertext, a 16-byte ICV.
    fn sample() -> Vec<u8> {
        let mut v = vec![0x4a, 0x2c, 0xbf, 0xe3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        v.extend_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        v.extend_from_slice(&[0xee; ICV_LEN]);
        v
    }

    #[test]
    fn deconstruct() {
        let v = sample();
        let p = Packet::new_checked(&v[..]).unwrap();
        assert_eq!(p.spi(), 0x4a2c_bfe3);
        assert_eq!(p.seq_low(), 1);
        assert_eq!(p.iv(), [0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(p.ciphertext(), &[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(p.icv(), &[0xee; ICV_LEN]);
        assert_eq!(p.ciphertext_and_icv().len(), 4 + ICV_LEN);
    }

    #[test]
    fn construct() {
        let mut v = vec![0u8; sample().len()];
        v[16..].copy_from_slice(&sample()[16..]);
        let mut p = Packet::new_unchecked(&mut v[..]);
        p.set_spi(0x4a2c_bfe3);
        p.set_seq_low(1);
        p.set_iv([0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(v, sample());
    }

    #[test]
    fn check_len() {
        let v = sample();
        for n in 0..MIN_LEN {
            assert_eq!(
                Packet::new_checked(&v[..n]).unwrap_err(),
                Error::Truncated,
                "{n}"
            );
        }
        let mut odd = v.clone();
        odd.push(0);
        assert_eq!(Packet::new_checked(&odd[..]).unwrap_err(), Error::Malformed);
    }

    #[test]
    fn trailer_round_trip_and_refusals() {
        for len in 0..12 {
            let mut pt: Vec<u8> = (0..len as u8).map(|b| b ^ 0x5a).collect();
            Trailer::emit(17, len, &mut pt);
            assert_eq!(pt.len() % ALIGN, 0, "{len}");
            assert_eq!(pt.len(), len + pad_len(len) + TRAILER_LEN);
            let (t, payload) = Trailer::parse(&pt).unwrap();
            assert_eq!(t.next_header, 17);
            assert_eq!(usize::from(t.pad_len), pad_len(len));
            assert_eq!(payload.len(), len);
        }
        assert_eq!(Trailer::parse(&[1]).unwrap_err(), Error::Truncated);
        // Pad length larger than what precedes it.
        assert_eq!(Trailer::parse(&[0, 5, 17]).unwrap_err(), Error::Malformed);
        // Padding not 1, 2, ...
        assert_eq!(
            Trailer::parse(&[9, 1, 3, 2, 17]).unwrap_err(),
            Error::Malformed
        );
        assert_eq!(overhead(1416 + 30), 16 + 2 + 16);
        assert_eq!(overhead(1450 + 30), 16 + 2 + 2 + 16);
    }
}
