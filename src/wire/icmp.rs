//! ICMPv4 "destination unreachable, fragmentation needed and DF set" (RFC 792, RFC 1191).

use super::{checksum, Error, Result};

pub const TYPE_DEST_UNREACHABLE: u8 = 3;
pub const CODE_FRAG_NEEDED: u8 = 4;
/// ICMP header: type, code, checksum, and 4 bytes (unused + next-hop MTU here).
pub const HEADER_LEN: usize = 8;
/// RFC 1812 4.3.2.3: an ICMP error "SHOULD contain as much of the original datagram as possible
/// without the length of the ICMP datagram exceeding 576 bytes".
pub const MAX_ERROR_DATAGRAM: usize = 576;

mod field {
    use core::ops::Range;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const UNUSED: Range<usize> = 4..6;
    pub const NEXT_HOP_MTU: Range<usize> = 6..8;
    pub const DATA: usize = 8;
}

/// A read/write view of an ICMPv4 message.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }
    pub fn checksum(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::CHECKSUM];
        u16::from_be_bytes([b[0], b[1]])
    }
    /// RFC 1191: the MTU of the next-hop network, in the low 16 bits of the second word.
    pub fn next_hop_mtu(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::NEXT_HOP_MTU];
        u16::from_be_bytes([b[0], b[1]])
    }
    /// The original datagram's header and leading data.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA..]
    }
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(self.buffer.as_ref())
    }
}

/// Writes a whole "fragmentation needed" message (header, `original`, checksum) into
/// `buf[..HEADER_LEN + original.len()]`; `buf` must be that long.
pub fn emit_frag_needed(buf: &mut [u8], next_hop_mtu: u16, original: &[u8]) -> Result<usize> {
    let len = HEADER_LEN + original.len();
    let buf = buf.get_mut(..len).ok_or(Error::Truncated)?;
    buf[field::TYPE] = TYPE_DEST_UNREACHABLE;
    buf[field::CODE] = CODE_FRAG_NEEDED;
    buf[field::CHECKSUM].fill(0);
    buf[field::UNUSED].fill(0);
    buf[field::NEXT_HOP_MTU].copy_from_slice(&next_hop_mtu.to_be_bytes());
    buf[field::DATA..].copy_from_slice(original);
    let sum = checksum::checksum(buf);
    buf[field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frag_needed_round_trip() {
        let original = [
            0x45u8, 0, 5, 0xdc, 0, 0, 0x40, 0, 64, 1, 0, 0, 10, 0, 9, 2, 10, 0, 9, 3, 8, 0, 0, 0,
            0, 1, 0, 1,
        ];
        let mut buf = [0u8; 64];
        let n = emit_frag_needed(&mut buf, 1450, &original).unwrap();
        assert_eq!(n, 8 + original.len());
        let p = Packet::new_checked(&buf[..n]).unwrap();
        assert_eq!((p.msg_type(), p.code()), (3, 4));
        assert_eq!(p.next_hop_mtu(), 1450);
        assert_eq!(p.data(), &original[..]);
        assert!(p.verify_checksum());
        // etherparse, written by others, agrees on the meaning.
        let icmp = etherparse::Icmpv4Slice::from_slice(&buf[..n]).unwrap();
        match icmp.icmp_type() {
            etherparse::Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu },
            ) => assert_eq!(next_hop_mtu, 1450),
            other => panic!("decoded as {other:?}"),
        }
        assert_eq!(
            emit_frag_needed(&mut buf[..10], 1450, &original),
            Err(Error::Truncated)
        );
        assert!(Packet::new_checked(&buf[..7]).is_err());
    }
}
