//! VXLAN header (RFC 7348 section 5): 8 bytes in front of the inner Ethernet frame.
//!
//! ```text
//!  0               1               2               3
//! |R|R|R|R|I|R|R|R|            Reserved                           |
//! |                VXLAN Network Identifier (VNI) |   Reserved    |
//! ```

use super::{Error, Result};

mod field {
    pub const FLAGS: usize = 0;
    pub const RESERVED1: core::ops::Range<usize> = 1..4;
    pub const VNI: core::ops::Range<usize> = 4..7;
    pub const RESERVED2: usize = 7;
    pub const PAYLOAD: usize = 8;
}

/// Length of the VXLAN header.
pub const HEADER_LEN: usize = field::PAYLOAD;
/// The I flag: "MUST be set to 1 for a valid VXLAN Network ID (VNI)".
pub const FLAG_I: u8 = 0x08;
/// Remote checksum offload (RCO; draft-herbert-vxlan-rco, Linux's vxlan `remcsumtx` and
/// `remcsumrx`): bit 21 of the first word, in its second byte. The inner frame's TCP or UDP
/// checksum field then holds the pseudo-header's sum only, and the reserved byte after the VNI
/// says where the checksum starts (in 2-byte units from the inner Ethernet header, low 7 bits)
/// and which field it is (top bit: UDP's; else TCP's). The outer UDP checksum covers the rest.
pub const FLAG_RCO: u8 = 0x20;
/// In the byte after the VNI: the checksum field is UDP's (offset 6), not TCP's (16).
const RCO_UDP: u8 = 0x80;

/// Largest VNI (24 bits).
pub const MAX_VNI: u32 = 0x00ff_ffff;
/// IANA-assigned UDP destination port.
pub const UDP_PORT: u16 = 4789;
/// Bytes VXLAN over IPv4 adds in front of an inner frame's payload on an Ethernet underlay:
/// outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8 (the inner Ethernet header is counted by the
/// inner MTU's 14 spare bytes, which is why overlay MTUs are 1500 - 50).
pub const OVERHEAD: usize = 50;

/// A read/write view of a VXLAN header and the frame behind it.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking its length; accessors may panic until `check_len` passes.
    pub fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after checking it holds a whole header.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Ensures no accessor panics.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// True when the I flag says the VNI field is valid.
    pub fn has_vni(&self) -> bool {
        self.flags() & FLAG_I != 0
    }

    pub fn vni(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VNI];
        u32::from_be_bytes([0, b[0], b[1], b[2]])
    }

    /// With the RCO flag set: where the inner frame's checksum starts, counted from the inner
    /// Ethernet header, and the offset of its field from there (16: TCP, 6: UDP).
    pub fn rco(&self) -> Option<(usize, usize)> {
        let b = self.buffer.as_ref();
        if b[field::RESERVED1.start] & FLAG_RCO == 0 {
            return None;
        }
        let r = b[field::RESERVED2];
        let offset = if r & RCO_UDP != 0 { 6 } else { 16 };
        Some((usize::from(r & !RCO_UDP) << 1, offset))
    }

    /// The inner Ethernet frame.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::FLAGS] = flags;
    }

    /// Sets the 24-bit VNI; higher bits of `vni` are ignored.
    pub fn set_vni(&mut self, vni: u32) {
        let b = vni.to_be_bytes();
        self.buffer.as_mut()[field::VNI].copy_from_slice(&b[1..4]);
    }

    /// Zeroes both reserved fields ("MUST be set to zero on transmission").
    pub fn clear_reserved(&mut self) {
        let buf = self.buffer.as_mut();
        buf[field::RESERVED1].fill(0);
        buf[field::RESERVED2] = 0;
    }

    /// Sets the RCO flag for a checksum from `start` (even, at most 254) of the inner frame in
    /// TCP's field (or UDP's, `udp`); false, with nothing changed, for a start it cannot say.
    pub fn set_rco(&mut self, start: usize, udp: bool) -> bool {
        if start % 2 != 0 || start > 254 {
            return false;
        }
        let buf = self.buffer.as_mut();
        buf[field::RESERVED1.start] |= FLAG_RCO;
        buf[field::RESERVED2] = (start >> 1) as u8 | if udp { RCO_UDP } else { 0 };
        true
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

/// The meaning of a VXLAN header: only the VNI carries information.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub vni: u32,
}

impl Repr {
    /// Reads a header. RFC 7348: reserved fields "MUST be ignored on receipt"; a clear I flag
    /// means there is no valid VNI, which is `Error::Malformed`.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        if !packet.has_vni() {
            return Err(Error::Malformed);
        }
        Ok(Repr { vni: packet.vni() })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header: I flag only, reserved fields zero.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_flags(FLAG_I);
        packet.clear_reserved();
        packet.set_vni(self.vni);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A VXLAN header and the first bytes of its inner frame, from a capture of the Linux
    // kernel's vxlan device (VNI 4097 = 0x001001; inner frame 02:42:0a:00:09:03 -> 02:42:0a:00:09:02).
    const CAPTURED: [u8; 22] = [
        0x08, 0x00, 0x00, 0x00, 0x00, 0x10, 0x01, 0x00, // VXLAN
        0x02, 0x42, 0x0a, 0x00, 0x09, 0x02, 0x02, 0x42, 0x0a, 0x00, 0x09, 0x03, 0x08, 0x00,
    ];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&CAPTURED[..]).unwrap();
        assert_eq!(p.flags(), 0x08);
        assert!(p.has_vni());
        assert_eq!(p.vni(), 4097);
        assert_eq!(&p.payload()[..6], &[0x02, 0x42, 0x0a, 0x00, 0x09, 0x02]);
        assert_eq!(Repr::parse(&p), Ok(Repr { vni: 4097 }));
    }

    #[test]
    fn construct_matches_capture() {
        let mut buf = [0xffu8; 22];
        buf[8..].copy_from_slice(&CAPTURED[8..]);
        let mut p = Packet::new_unchecked(&mut buf[..]);
        Repr { vni: 4097 }.emit(&mut p);
        assert_eq!(buf, CAPTURED);
    }

    #[test]
    fn check_len_and_flags() {
        for n in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&CAPTURED[..n]).unwrap_err(),
                Error::Truncated
            );
        }
        assert!(Packet::new_checked(&CAPTURED[..HEADER_LEN]).is_ok());
        let mut no_i = CAPTURED;
        no_i[0] = 0x00;
        let p = Packet::new_checked(&no_i[..]).unwrap();
        assert_eq!(Repr::parse(&p), Err(Error::Malformed));
        // Reserved bits are ignored on receipt.
        let mut reserved = CAPTURED;
        reserved[0] = 0xff;
        reserved[1] = 0xab;
        reserved[7] = 0xcd;
        let p = Packet::new_checked(&reserved[..]).unwrap();
        assert_eq!(Repr::parse(&p), Ok(Repr { vni: 4097 }));
    }

    #[test]
    fn remote_checksum_offload_as_linux_writes_it() {
        // Linux's vxlan_compute_rco for a TCP checksum from byte 34 of the inner frame: the
        // word after the VNI 0x11 (34 >> 1), the flags word 0x08200000.
        let mut buf = CAPTURED;
        let mut p = Packet::new_unchecked(&mut buf[..]);
        assert_eq!(p.rco(), None);
        assert!(p.set_rco(34, false));
        assert_eq!(&buf[..8], &[0x08, 0x20, 0, 0, 0x00, 0x10, 0x01, 0x11]);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!((p.rco(), p.vni()), (Some((34, 16)), 4097));
        let mut p = Packet::new_unchecked(&mut buf[..]);
        assert!(p.set_rco(254, true));
        assert_eq!(p.rco(), Some((254, 6)));
        assert!(!p.set_rco(35, false) && !p.set_rco(256, false));
        assert_eq!(p.rco(), Some((254, 6)), "refused starts change nothing");
    }

    #[test]
    fn vni_is_24_bits() {
        let mut buf = [0u8; 8];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        Repr { vni: MAX_VNI }.emit(&mut p);
        assert_eq!(p.vni(), MAX_VNI);
        p.set_vni(0x0100_0001);
        assert_eq!(p.vni(), 1);
    }
}
