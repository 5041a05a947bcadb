//! ARP for IPv4 over Ethernet (RFC 826): the 28-byte body after the Ethernet header.

use std::net::Ipv4Addr;

use super::{Error, MacAddr, Result};

mod field {
    use core::ops::Range;
    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// Length of an Ethernet/IPv4 ARP body.
pub const PACKET_LEN: usize = 28;
/// EtherType of ARP.
pub const ETHERTYPE: u16 = 0x0806;
const HTYPE_ETHERNET: u16 = 1;
const PTYPE_IPV4: u16 = 0x0800;

/// ARP operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Request,
    Reply,
    Other(u16),
}

impl From<u16> for Operation {
    fn from(v: u16) -> Self {
        match v {
            1 => Operation::Request,
            2 => Operation::Reply,
            o => Operation::Other(o),
        }
    }
}

impl From<Operation> for u16 {
    fn from(op: Operation) -> u16 {
        match op {
            Operation::Request => 1,
            Operation::Reply => 2,
            Operation::Other(o) => o,
        }
    }
}

/// A read/write view of an ARP body.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn mac(b: &[u8]) -> MacAddr {
    let mut m = [0u8; 6];
    m.copy_from_slice(b);
    MacAddr(m)
}

fn ip(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
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

    /// Ensures no accessor panics (Ethernet/IPv4 ARP length; trailing padding is allowed).
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < PACKET_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    pub fn hardware_type(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::HTYPE])
    }
    pub fn protocol_type(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::PTYPE])
    }
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }
    pub fn operation(&self) -> Operation {
        be16(&self.buffer.as_ref()[field::OPER]).into()
    }
    pub fn source_mac(&self) -> MacAddr {
        mac(&self.buffer.as_ref()[field::SHA])
    }
    pub fn source_ip(&self) -> Ipv4Addr {
        ip(&self.buffer.as_ref()[field::SPA])
    }
    pub fn target_mac(&self) -> MacAddr {
        mac(&self.buffer.as_ref()[field::THA])
    }
    pub fn target_ip(&self) -> Ipv4Addr {
        ip(&self.buffer.as_ref()[field::TPA])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set(&mut self, range: core::ops::Range<usize>, bytes: &[u8]) {
        self.buffer.as_mut()[range].copy_from_slice(bytes);
    }
}

/// The meaning of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub operation: Operation,
    pub source_mac: MacAddr,
    pub source_ip: Ipv4Addr,
    pub target_mac: MacAddr,
    pub target_ip: Ipv4Addr,
}

impl Repr {
    /// Reads an ARP body; other hardware or protocol types are `Error::Unsupported`.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr> {
        p.check_len()?;
        if p.hardware_type() != HTYPE_ETHERNET
            || p.protocol_type() != PTYPE_IPV4
            || p.hardware_len() != 6
            || p.protocol_len() != 4
        {
            return Err(Error::Unsupported);
        }
        Ok(Repr {
            operation: p.operation(),
            source_mac: p.source_mac(),
            source_ip: p.source_ip(),
            target_mac: p.target_mac(),
            target_ip: p.target_ip(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes the 28-byte body into the start of `p` (which must pass `check_len`).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set(field::HTYPE, &HTYPE_ETHERNET.to_be_bytes());
        p.set(field::PTYPE, &PTYPE_IPV4.to_be_bytes());
        p.buffer.as_mut()[field::HLEN] = 6;
        p.buffer.as_mut()[field::PLEN] = 4;
        p.set(field::OPER, &u16::from(self.operation).to_be_bytes());
        p.set(field::SHA, &self.source_mac.0);
        p.set(field::SPA, &self.source_ip.octets());
        p.set(field::THA, &self.target_mac.0);
        p.set(field::TPA, &self.target_ip.octets());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // "who-has 10.0.9.3 tell 10.0.9.2", as a Linux host sends it (target MAC zero).
    const REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x42, 0x0a, 0x00, 0x09, 0x02, 0x0a,
        0x00, 0x09, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x09, 0x03,
    ];

    fn request_repr() -> Repr {
        Repr {
            operation: Operation::Request,
            source_mac: MacAddr([0x02, 0x42, 0x0a, 0x00, 0x09, 0x02]),
            source_ip: Ipv4Addr::new(10, 0, 9, 2),
            target_mac: MacAddr([0; 6]),
            target_ip: Ipv4Addr::new(10, 0, 9, 3),
        }
    }

    #[test]
    fn deconstruct_and_parse() {
        let p = Packet::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(p.operation(), Operation::Request);
        assert_eq!(Repr::parse(&p), Ok(request_repr()));
    }

    #[test]
    fn construct() {
        let mut buf = [0xaau8; 28];
        request_repr().emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, REQUEST);
    }

    #[test]
    fn refusals() {
        for n in 0..PACKET_LEN {
            assert_eq!(
                Packet::new_checked(&REQUEST[..n]).unwrap_err(),
                Error::Truncated
            );
        }
        let mut ipv6 = REQUEST;
        ipv6[2] = 0x86;
        ipv6[3] = 0xdd;
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&ipv6[..])),
            Err(Error::Unsupported)
        );
        let mut hlen = REQUEST;
        hlen[4] = 8;
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&hlen[..])),
            Err(Error::Unsupported)
        );
        assert_eq!(Operation::from(9), Operation::Other(9));
        assert_eq!(u16::from(Operation::Other(9)), 9);
    }
}
