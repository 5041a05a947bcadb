//! The virtio-net header a TAP device with `IFF_VNET_HDR` puts in front of every frame
//! (`struct virtio_net_hdr`, 10 bytes, little-endian on the hosts swarmnet runs on).
//!
//! With offloads enabled the kernel hands over TCP "super-frames" of up to 64 KiB that the
//! receiver must segment (`gso_type`, `gso_size`) and frames whose transport checksum is left
//! to finish (`NEEDS_CSUM` with `csum_start`/`csum_offset`).

use super::{Error, Result};

/// Length of `struct virtio_net_hdr`.
pub const HEADER_LEN: usize = 10;
/// The checksum from `csum_start` to the end must be computed and stored at
/// `csum_start + csum_offset`; the field holds the pseudo-header sum meanwhile.
pub const FLAG_NEEDS_CSUM: u8 = 1;
pub const GSO_NONE: u8 = 0;
pub const GSO_TCPV4: u8 = 1;
/// ECN bit of `gso_type` (the flow uses ECN; CWR must stay on the first segment only).
pub const GSO_ECN: u8 = 0x80;

mod field {
    use core::ops::Range;
    pub const FLAGS: usize = 0;
    pub const GSO_TYPE: usize = 1;
    pub const HDR_LEN: Range<usize> = 2..4;
    pub const GSO_SIZE: Range<usize> = 4..6;
    pub const CSUM_START: Range<usize> = 6..8;
    pub const CSUM_OFFSET: Range<usize> = 8..10;
}

/// The meaning of a virtio-net header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Repr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

fn le16(b: &[u8], r: core::ops::Range<usize>) -> u16 {
    u16::from_le_bytes([b[r.start], b[r.start + 1]])
}

impl Repr {
    /// The header of a TCP/IPv4 super-frame as Linux hands one over: its TCP header at
    /// `tcp_at` (its checksum, at `tcp_at + 16`, left to finish), `hdr_len` bytes of headers,
    /// cut into segments of `gso_size` payload bytes.
    pub fn tcp4_super_frame(tcp_at: u16, hdr_len: u16, gso_size: u16) -> Repr {
        Repr {
            flags: FLAG_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len,
            gso_size,
            csum_start: tcp_at,
            csum_offset: 16,
        }
    }

    /// Reads the header at the start of `buf`.
    pub fn parse(buf: &[u8]) -> Result<Repr> {
        let b = buf.get(..HEADER_LEN).ok_or(Error::Truncated)?;
        Ok(Repr {
            flags: b[field::FLAGS],
            gso_type: b[field::GSO_TYPE],
            hdr_len: le16(b, field::HDR_LEN),
            gso_size: le16(b, field::GSO_SIZE),
            csum_start: le16(b, field::CSUM_START),
            csum_offset: le16(b, field::CSUM_OFFSET),
        })
    }

    /// Writes the header into `buf[..HEADER_LEN]`.
    pub fn emit(&self, buf: &mut [u8; HEADER_LEN]) {
        buf[field::FLAGS] = self.flags;
        buf[field::GSO_TYPE] = self.gso_type;
        buf[field::HDR_LEN].copy_from_slice(&self.hdr_len.to_le_bytes());
        buf[field::GSO_SIZE].copy_from_slice(&self.gso_size.to_le_bytes());
        buf[field::CSUM_START].copy_from_slice(&self.csum_start.to_le_bytes());
        buf[field::CSUM_OFFSET].copy_from_slice(&self.csum_offset.to_le_bytes());
    }

    /// The header's bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        self.emit(&mut b);
        b
    }

    pub fn needs_csum(&self) -> bool {
        self.flags & FLAG_NEEDS_CSUM != 0
    }

    /// The GSO type without the ECN bit.
    pub fn gso(&self) -> u8 {
        self.gso_type & !GSO_ECN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        // A TCPv4 super-frame as Linux hands it over: NEEDS_CSUM, gso 1398, csum at 34 + 16.
        let bytes = [1u8, 1, 66, 0, 0x76, 0x05, 34, 0, 16, 0];
        let r = Repr::parse(&bytes).unwrap();
        assert_eq!(
            r,
            Repr {
                flags: 1,
                gso_type: GSO_TCPV4,
                hdr_len: 66,
                gso_size: 1398,
                csum_start: 34,
                csum_offset: 16
            }
        );
        assert_eq!(Repr::tcp4_super_frame(34, 66, 1398), r);
        assert!(r.needs_csum());
        assert_eq!(r.to_bytes(), bytes);
        assert_eq!(Repr::parse(&bytes[..9]), Err(Error::Truncated));
        assert_eq!(
            Repr {
                gso_type: GSO_TCPV4 | GSO_ECN,
                ..r
            }
            .gso(),
            GSO_TCPV4
        );
    }
}
