//! The PROXY protocol version 2 header (haproxy's proxy-protocol.txt, section 2.2) for TCP over
//! IPv4: what the routing mesh sends ahead of a connection's bytes when a port is published with
//! `proxy-protocol=v2`, and what `whoami` reads back to show the client's real address.
//!
//! Layout: the 12-byte signature, version/command (0x21: version 2, PROXY), family/transport
//! (0x11: AF_INET, STREAM), the address block's length (u16, network order, 12 here), then
//! source address, destination address, source port, destination port.

use std::net::{Ipv4Addr, SocketAddrV4};

/// "The binary header format starts with a constant 12 bytes block containing the protocol
/// signature".
pub const SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];
/// Bytes of the header for TCP over IPv4.
pub const V4_LEN: usize = 16 + 12;

/// The header telling that `client` connected to `dst`.
pub fn encode_v4(client: SocketAddrV4, dst: SocketAddrV4) -> [u8; V4_LEN] {
    let mut h = [0u8; V4_LEN];
    h[..12].copy_from_slice(&SIGNATURE);
    h[12] = 0x21;
    h[13] = 0x11;
    h[14..16].copy_from_slice(&12u16.to_be_bytes());
    h[16..20].copy_from_slice(&client.ip().octets());
    h[20..24].copy_from_slice(&dst.ip().octets());
    h[24..26].copy_from_slice(&client.port().to_be_bytes());
    h[26..28].copy_from_slice(&dst.port().to_be_bytes());
    h
}

/// What the start of a stream holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// Not a PROXY v2 header.
    Absent,
    /// It may be one: more bytes are needed.
    Incomplete,
    /// A header of `len` bytes; `addrs` for TCP over IPv4 (the source and destination), `None`
    /// for a LOCAL command or another family (the receiver uses the connection's own addresses).
    Header {
        len: usize,
        addrs: Option<(SocketAddrV4, SocketAddrV4)>,
    },
    /// The signature, then a version or command that is not v2's.
    Invalid,
}

/// Reads a PROXY v2 header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    let n = buf.len().min(SIGNATURE.len());
    if buf[..n] != SIGNATURE[..n] {
        return Parsed::Absent;
    }
    if buf.len() < 16 {
        return Parsed::Incomplete;
    }
    // "The next byte (the 13th one) is the protocol version and command": the high four bits
    // MUST be 0x2; commands are 0x0 (LOCAL) and 0x1 (PROXY).
    let (version, command) = (buf[12] >> 4, buf[12] & 0x0F);
    if version != 2 || command > 1 {
        return Parsed::Invalid;
    }
    let len = 16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if buf.len() < len {
        return Parsed::Incomplete;
    }
    let addrs = (command == 1 && buf[13] == 0x11 && len >= V4_LEN).then(|| {
        let ip = |o: usize| Ipv4Addr::new(buf[o], buf[o + 1], buf[o + 2], buf[o + 3]);
        let port = |o: usize| u16::from_be_bytes([buf[o], buf[o + 1]]);
        (
            SocketAddrV4::new(ip(16), port(24)),
            SocketAddrV4::new(ip(20), port(26)),
        )
    });
    Parsed::Header { len, addrs }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_spec_layout_and_parses_back() {
        let c: SocketAddrV4 = "127.0.0.1:40000".parse().unwrap();
        let d: SocketAddrV4 = "127.95.0.2:8080".parse().unwrap();
        let h = encode_v4(c, d);
        // Signature, 0x21, 0x11, length 12, 127.0.0.1, 127.95.0.2, 40000, 8080.
        assert_eq!(
            h[12..],
            [0x21, 0x11, 0, 12, 127, 0, 0, 1, 127, 95, 0, 2, 0x9c, 0x40, 0x1f, 0x90]
        );
        let mut stream = h.to_vec();
        stream.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(
            parse(&stream),
            Parsed::Header {
                len: V4_LEN,
                addrs: Some((c, d))
            }
        );
    }

    #[test]
    fn tells_absent_incomplete_and_invalid_apart() {
        assert_eq!(parse(b"GET / HTTP/1.1"), Parsed::Absent);
        assert_eq!(parse(b""), Parsed::Incomplete);
        let h = encode_v4("1.2.3.4:5".parse().unwrap(), "5.6.7.8:9".parse().unwrap());
        for cut in [5, 12, 15, 27] {
            assert_eq!(parse(&h[..cut]), Parsed::Incomplete, "cut at {cut}");
        }
        let mut bad = h;
        bad[12] = 0x11;
        assert_eq!(parse(&bad), Parsed::Invalid);
        // LOCAL: a header without addresses to use.
        let mut local = h;
        local[12] = 0x20;
        assert_eq!(
            parse(&local),
            Parsed::Header {
                len: V4_LEN,
                addrs: None
            }
        );
    }
}
