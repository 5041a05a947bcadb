//! IPv4 header writing and the option rules of fragmentation (RFC 791).
//!
//! Reading IPv4 headers is etherparse's job (`Ipv4HeaderSlice`); this module writes the
//! option-less headers swarmnet originates and rewrites headers when fragmenting.

use std::net::Ipv4Addr;

use super::{checksum, Error, Result};

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;
/// The largest IPv4 datagram (the total length field is 16 bits).
pub const MAX_LEN: usize = 65_535;
/// EtherType of IPv4.
pub const ETHERTYPE: u16 = 0x0800;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
/// Don't Fragment, in the flags/fragment-offset word.
pub const FLAG_DF: u16 = 0x4000;
/// More Fragments, in the flags/fragment-offset word.
pub const FLAG_MF: u16 = 0x2000;
/// Fragment offset mask (units of 8 bytes).
pub const OFFSET_MASK: u16 = 0x1fff;
/// Default TTL of packets swarmnet originates.
pub const DEFAULT_TTL: u8 = 64;

/// The fields of an option-less IPv4 header that swarmnet writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub ttl: u8,
    pub identification: u16,
    pub dont_fragment: bool,
    /// Header plus payload, in bytes.
    pub total_len: u16,
}

impl Fields {
    /// Writes a 20-byte header with its checksum into `buf[..20]`.
    pub fn write(&self, buf: &mut [u8; HEADER_LEN]) {
        buf[0] = 0x45;
        buf[1] = 0;
        buf[2..4].copy_from_slice(&self.total_len.to_be_bytes());
        buf[4..6].copy_from_slice(&self.identification.to_be_bytes());
        let flags = if self.dont_fragment { FLAG_DF } else { 0 };
        buf[6..8].copy_from_slice(&flags.to_be_bytes());
        buf[8] = self.ttl;
        buf[9] = self.protocol;
        buf[10..12].fill(0);
        buf[12..16].copy_from_slice(&self.src.octets());
        buf[16..20].copy_from_slice(&self.dst.octets());
        let sum = checksum::checksum(&buf[..]);
        buf[10..12].copy_from_slice(&sum.to_be_bytes());
    }
}

/// Recomputes the header checksum of `header` (the whole header, options included).
pub fn fill_checksum(header: &mut [u8]) {
    if header.len() < HEADER_LEN {
        return;
    }
    header[10..12].fill(0);
    let sum = checksum::checksum(header);
    header[10..12].copy_from_slice(&sum.to_be_bytes());
}

/// Copies into `out` the options that RFC 791 says every fragment carries (those with the
/// "copied" flag), padded with End-of-Option-List to a multiple of 4, and returns their length.
/// Options that run past their buffer are `Error::Malformed`.
pub fn copied_options(options: &[u8], out: &mut [u8; 40]) -> Result<usize> {
    let mut i = 0;
    let mut n = 0;
    while i < options.len() {
        let kind = options[i];
        match kind {
            0 => break,  // End of Option List
            1 => i += 1, // No Operation: not copied
            _ => {
                let len = *options.get(i + 1).ok_or(Error::Malformed)? as usize;
                if len < 2 || i + len > options.len() {
                    return Err(Error::Malformed);
                }
                if kind & 0x80 != 0 {
                    out.get_mut(n..n + len)
                        .ok_or(Error::Malformed)?
                        .copy_from_slice(&options[i..i + len]);
                    n += len;
                }
                i += len;
            }
        }
    }
    let padded = n.div_ceil(4) * 4;
    out[n..padded].fill(0);
    Ok(padded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_matches_a_known_header() {
        // ICMP echo 10.0.9.3 -> 10.0.9.2, id 0x3c6b, DF, TTL 64: checksum 0xd839.
        let f = Fields {
            src: Ipv4Addr::new(10, 0, 9, 3),
            dst: Ipv4Addr::new(10, 0, 9, 2),
            protocol: PROTO_ICMP,
            ttl: 64,
            identification: 0x3c6b,
            dont_fragment: true,
            total_len: 84,
        };
        let mut buf = [0u8; 20];
        f.write(&mut buf);
        let parsed = etherparse::Ipv4HeaderSlice::from_slice(&buf).unwrap();
        assert_eq!(parsed.header_checksum(), 0xd839);
        assert!(parsed.dont_fragment());
        assert_eq!(parsed.source_addr(), f.src);
        assert_eq!(parsed.total_len(), 84);
        assert!(checksum::verify(&buf));
    }

    #[test]
    fn only_copied_options_survive() {
        // NOP, Record Route (7, not copied, len 7), Loose Source Route (0x83, copied, len 7), EOL.
        let opts = [
            1, 7, 7, 4, 0, 0, 0, 0, 0x83, 7, 4, 10, 0, 0, 1, 0, 0, 0, 0, 0,
        ];
        let mut out = [0xeeu8; 40];
        let n = copied_options(&opts, &mut out).unwrap();
        assert_eq!(n, 8);
        assert_eq!(&out[..8], &[0x83, 7, 4, 10, 0, 0, 1, 0]);
        // A length running past the end is refused, not read.
        assert_eq!(
            copied_options(&[0x83, 9, 4], &mut out),
            Err(Error::Malformed)
        );
        assert_eq!(copied_options(&[0x83], &mut out), Err(Error::Malformed));
        assert_eq!(copied_options(&[0x83, 1], &mut out), Err(Error::Malformed));
    }
}
