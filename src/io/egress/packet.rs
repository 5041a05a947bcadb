//! The IPv4 packets of the egress engine: what a task sent, read through checked views, and the
//! UDP and ICMP echo replies written back to it.
//!
//! Reading never panics: every length is checked by etherparse's slices before a field is read.
//! Fragments are refused (the task's kernel sends whole datagrams up to its MTU; a fragment has
//! no transport header to key a flow on). Checksums of UDP and ICMP are not verified: a bad
//! one only spoils the task's own datagram, which the host socket re-checksums anyway.

use std::net::{Ipv4Addr, SocketAddrV4};

use etherparse::{
    Icmpv4Slice, Icmpv4Type, IpNumber, Ipv4Slice, PacketBuilder, TcpHeaderSlice, UdpSlice,
};

use super::DropReason;
use crate::wire::{checksum, ipv4};

/// TTL of the replies the engine writes (the host's hop is not counted, as with NAT).
const TTL: u8 = 64;

/// What a task's packet asks the engine to carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Parsed<'a> {
    Tcp {
        src: SocketAddrV4,
        dst: SocketAddrV4,
        syn: bool,
        ack: bool,
        rst: bool,
    },
    Udp {
        src: SocketAddrV4,
        dst: SocketAddrV4,
        payload: &'a [u8],
    },
    Echo {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        id: u16,
        seq: u16,
        payload: &'a [u8],
    },
}

impl Parsed<'_> {
    pub(crate) fn addrs(&self) -> (Ipv4Addr, Ipv4Addr) {
        match self {
            Parsed::Tcp { src, dst, .. } | Parsed::Udp { src, dst, .. } => (*src.ip(), *dst.ip()),
            Parsed::Echo { src, dst, .. } => (*src, *dst),
        }
    }
}

/// Reads one IPv4 packet (no link header) a task sent.
pub(crate) fn parse(packet: &[u8]) -> Result<Parsed<'_>, DropReason> {
    if packet.first().is_some_and(|b| b >> 4 != 4) {
        return Err(DropReason::NotIpv4);
    }
    let ip = Ipv4Slice::from_slice(packet).map_err(|_| DropReason::Malformed)?;
    let h = ip.header();
    if ip.is_payload_fragmented() {
        return Err(DropReason::Fragment);
    }
    let (src, dst) = (h.source_addr(), h.destination_addr());
    let payload = ip.payload().payload;
    match ip.payload_ip_number() {
        IpNumber::TCP => {
            let t = TcpHeaderSlice::from_slice(payload).map_err(|_| DropReason::Malformed)?;
            Ok(Parsed::Tcp {
                src: SocketAddrV4::new(src, t.source_port()),
                dst: SocketAddrV4::new(dst, t.destination_port()),
                syn: t.syn(),
                ack: t.ack(),
                rst: t.rst(),
            })
        }
        IpNumber::UDP => {
            let u = UdpSlice::from_slice(payload).map_err(|_| DropReason::Malformed)?;
            Ok(Parsed::Udp {
                src: SocketAddrV4::new(src, u.source_port()),
                dst: SocketAddrV4::new(dst, u.destination_port()),
                payload: u.payload(),
            })
        }
        IpNumber::ICMP => {
            let i = Icmpv4Slice::from_slice(payload).map_err(|_| DropReason::Malformed)?;
            match i.icmp_type() {
                Icmpv4Type::EchoRequest(e) => Ok(Parsed::Echo {
                    src,
                    dst,
                    id: e.id,
                    seq: e.seq,
                    payload: i.payload(),
                }),
                _ => Err(DropReason::IcmpNotEcho),
            }
        }
        _ => Err(DropReason::Protocol),
    }
}

/// An echo reply the host received: its sequence number and data (the identifier is the
/// host socket's, not the task's).
pub(crate) struct EchoReply<'a> {
    pub id: u16,
    pub seq: u16,
    pub payload: &'a [u8],
}

/// Reads an ICMP message (no IP header, as a ping socket returns it); None unless an echo
/// reply.
pub(crate) fn echo_reply(icmp: &[u8]) -> Option<EchoReply<'_>> {
    let i = Icmpv4Slice::from_slice(icmp).ok()?;
    match i.icmp_type() {
        Icmpv4Type::EchoReply(e) => Some(EchoReply {
            id: e.id,
            seq: e.seq,
            payload: i.payload(),
        }),
        _ => None,
    }
}

/// Reads an IPv4 packet carrying ICMP (as a raw socket returns it); None unless an unfragmented
/// echo reply.
pub(crate) fn echo_reply_in_ip(packet: &[u8]) -> Option<EchoReply<'_>> {
    let ip = Ipv4Slice::from_slice(packet).ok()?;
    if ip.is_payload_fragmented() || ip.payload_ip_number() != IpNumber::ICMP {
        return None;
    }
    echo_reply(ip.payload().payload)
}

/// Writes into `out` (cleared first) a UDP datagram `from` -> `to` carrying `payload`. False
/// when it would be larger than `mtu` (nothing written then).
pub(crate) fn write_udp(
    out: &mut Vec<u8>,
    from: SocketAddrV4,
    to: SocketAddrV4,
    payload: &[u8],
    mtu: usize,
) -> bool {
    out.clear();
    let b =
        PacketBuilder::ipv4(from.ip().octets(), to.ip().octets(), TTL).udp(from.port(), to.port());
    if b.size(payload.len()) > mtu {
        return false;
    }
    b.write(out, payload).is_ok()
}

/// Writes into `out` (cleared first) an ICMP echo reply `from` -> `to`. False when it would be
/// larger than `mtu`.
pub(crate) fn write_echo_reply(
    out: &mut Vec<u8>,
    from: Ipv4Addr,
    to: Ipv4Addr,
    id: u16,
    seq: u16,
    payload: &[u8],
    mtu: usize,
) -> bool {
    out.clear();
    let b = PacketBuilder::ipv4(from.octets(), to.octets(), TTL).icmpv4_echo_reply(id, seq);
    if b.size(payload.len()) > mtu {
        return false;
    }
    b.write(out, payload).is_ok()
}

/// The IPv4 header length and TCP header range of a TCP packet, checked.
fn tcp_offsets(packet: &[u8]) -> Option<(usize, usize)> {
    let ip = Ipv4Slice::from_slice(packet).ok()?;
    if ip.payload_ip_number() != IpNumber::TCP || ip.is_payload_fragmented() {
        return None;
    }
    let ihl = usize::from(ip.header().ihl()) * 4;
    let t = TcpHeaderSlice::from_slice(packet.get(ihl..)?).ok()?;
    Some((ihl, t.slice().len()))
}

/// Folded 16-bit one's complement sum (not inverted) of the TCP pseudo-header.
fn pseudo_header_sum(packet: &[u8], tcp_len: usize) -> Option<u16> {
    let src: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
    let dst: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
    let sum = etherparse::checksum::Sum16BitWords::new()
        .add_4bytes(src)
        .add_4bytes(dst)
        .add_2bytes([0, 6])
        .add_2bytes((tcp_len as u16).to_be_bytes());
    Some(!sum.ones_complement())
}

/// Sets the MSS option of a TCP SYN to `mss` (the checksum made anew); returns the MSS the
/// sender offered, None (nothing changed) without the option.
pub(crate) fn rewrite_mss(packet: &mut [u8], mss: u16) -> Option<u16> {
    let (ihl, hdr) = tcp_offsets(packet)?;
    let ip_len = usize::from(u16::from_be_bytes(packet.get(2..4)?.try_into().ok()?));
    let opts = ihl + 20..ihl + hdr;
    let mut i = opts.start;
    let mut offered = None;
    while i < opts.end {
        match packet[i] {
            0 => break,
            1 => i += 1,
            kind => {
                let len = usize::from(*packet.get(i + 1)?);
                if len < 2 || i + len > opts.end {
                    return None;
                }
                if kind == 2 && len == 4 {
                    offered = Some(u16::from_be_bytes([packet[i + 2], packet[i + 3]]));
                    packet[i + 2..i + 4].copy_from_slice(&mss.to_be_bytes());
                    break;
                }
                i += len;
            }
        }
    }
    let offered = offered?;
    let seg = packet.get_mut(ihl..ip_len)?;
    seg[16] = 0;
    seg[17] = 0;
    let tcp_len = seg.len();
    let pseudo = pseudo_header_sum(packet, tcp_len)?;
    let seg = packet.get_mut(ihl..ip_len)?;
    let sum = etherparse::checksum::Sum16BitWords::new()
        .add_2bytes(pseudo.to_ne_bytes())
        .add_slice(seg)
        .ones_complement();
    seg[16..18].copy_from_slice(&sum.to_ne_bytes());
    Some(offered)
}

/// The task's end, the far end and the payload length of a TCP packet to a task.
pub(crate) fn tcp_endpoints(packet: &[u8]) -> Option<(SocketAddrV4, SocketAddrV4, usize)> {
    let (ihl, hdr) = tcp_offsets(packet)?;
    let ip_len = usize::from(u16::from_be_bytes(packet.get(2..4)?.try_into().ok()?));
    let t = TcpHeaderSlice::from_slice(packet.get(ihl..)?).ok()?;
    let src = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
    Some((
        SocketAddrV4::new(dst, t.destination_port()),
        SocketAddrV4::new(src, t.source_port()),
        ip_len.checked_sub(ihl + hdr)?,
    ))
}

/// Replaces a TCP packet's checksum with the pseudo-header's sum: a partial checksum, for a
/// link that finishes it per segment (CHECKSUM_PARTIAL, csum_start at the TCP header).
pub(crate) fn make_tcp_checksum_partial(packet: &mut [u8]) -> Option<()> {
    let (ihl, _) = tcp_offsets(packet)?;
    let ip_len = usize::from(u16::from_be_bytes(packet.get(2..4)?.try_into().ok()?));
    let pseudo = pseudo_header_sum(packet, ip_len.checked_sub(ihl)?)?;
    packet
        .get_mut(ihl + 16..ihl + 18)?
        .copy_from_slice(&pseudo.to_ne_bytes());
    Some(())
}

/// Writes the TCP checksum of an IPv4/TCP packet (the stack left it out); anything else is
/// left as it is.
pub(crate) fn fill_tcp_checksum(packet: &mut [u8]) -> Option<()> {
    let (ihl, _) = tcp_offsets(packet)?;
    let ip_len = usize::from(u16::from_be_bytes(packet.get(2..4)?.try_into().ok()?));
    let (ip, tcp) = packet.get_mut(..ip_len)?.split_at_mut(ihl);
    tcp.get_mut(16..18)?.fill(0);
    let sum = checksum::transport_ipv4(&ip[12..16], &ip[16..20], ipv4::PROTO_TCP, tcp);
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
    Some(())
}

/// The ICMP echo request (header and data, checksummed) a raw socket sends for a task.
pub(crate) fn write_echo_request(out: &mut Vec<u8>, id: u16, seq: u16, payload: &[u8]) {
    out.clear();
    out.extend_from_slice(&[8, 0, 0, 0]);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(payload);
    let sum = etherparse::checksum::Sum16BitWords::new()
        .add_slice(out)
        .ones_complement();
    // The sum is of native-endian words: its native bytes are the wire's.
    let sum = sum.to_ne_bytes();
    out[2] = sum[0];
    out[3] = sum[1];
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp_packet(payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        assert!(write_udp(
            &mut v,
            "172.18.0.2:5000".parse().unwrap(),
            "10.199.1.2:53".parse().unwrap(),
            payload,
            1500
        ));
        v
    }

    #[test]
    fn reads_udp_it_wrote() {
        let p = udp_packet(b"hello");
        match parse(&p).unwrap() {
            Parsed::Udp { src, dst, payload } => {
                assert_eq!(src, "172.18.0.2:5000".parse().unwrap());
                assert_eq!(dst, "10.199.1.2:53".parse().unwrap());
                assert_eq!(payload, b"hello");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reads_echo_requests_and_refuses_other_icmp() {
        let mut v = Vec::new();
        let b = PacketBuilder::ipv4([172, 18, 0, 2], [10, 199, 1, 2], 64).icmpv4_echo_request(7, 9);
        b.write(&mut v, b"ping").unwrap();
        assert_eq!(
            parse(&v).unwrap(),
            Parsed::Echo {
                src: Ipv4Addr::new(172, 18, 0, 2),
                dst: Ipv4Addr::new(10, 199, 1, 2),
                id: 7,
                seq: 9,
                payload: b"ping"
            }
        );
        let mut r = Vec::new();
        assert!(write_echo_reply(
            &mut r,
            Ipv4Addr::new(10, 199, 1, 2),
            Ipv4Addr::new(172, 18, 0, 2),
            7,
            9,
            b"ping",
            1500
        ));
        assert_eq!(parse(&r), Err(DropReason::IcmpNotEcho));
        let e = echo_reply_in_ip(&r).unwrap();
        assert_eq!((e.id, e.seq, e.payload), (7, 9, &b"ping"[..]));
    }

    #[test]
    fn echo_request_checksum_is_valid() {
        let mut v = Vec::new();
        write_echo_request(&mut v, 0x1234, 1, b"abc");
        let sum = etherparse::checksum::Sum16BitWords::new()
            .add_slice(&v)
            .ones_complement();
        assert_eq!(sum, 0);
    }

    #[test]
    fn refuses_fragments_and_other_protocols() {
        let mut p = udp_packet(b"x");
        // More-fragments flag set.
        p[6] |= 0x20;
        assert_eq!(parse(&p), Err(DropReason::Fragment));
        let mut p = udp_packet(b"x");
        p[9] = 47; // GRE
        assert_eq!(parse(&p), Err(DropReason::Protocol));
    }

    #[test]
    fn replies_larger_than_the_mtu_are_not_written() {
        let mut v = Vec::new();
        let from = "10.199.1.2:53".parse().unwrap();
        let to = "172.18.0.2:5000".parse().unwrap();
        assert!(!write_udp(&mut v, from, to, &[0; 1473], 1500));
        assert!(write_udp(&mut v, from, to, &[0; 1472], 1500));
        assert_eq!(v.len(), 1500);
    }

    fn syn_with_mss(mss: u16) -> Vec<u8> {
        use etherparse::TcpOptionElement::*;
        let mut v = Vec::new();
        PacketBuilder::ipv4([10, 199, 0, 2], [10, 199, 1, 2], 64)
            .tcp(40000, 80, 1, 64240)
            .syn()
            .options(&[Noop, MaximumSegmentSize(mss), WindowScale(7)])
            .unwrap()
            .write(&mut v, b"")
            .unwrap();
        v
    }

    fn tcp_checksum_ok(p: &[u8]) -> bool {
        let ip = Ipv4Slice::from_slice(p).unwrap();
        let t = etherparse::TcpSlice::from_slice(ip.payload().payload).unwrap();
        t.calc_checksum_ipv4(
            ip.header().source_addr().octets(),
            ip.header().destination_addr().octets(),
        )
        .unwrap()
            == t.checksum()
    }

    #[test]
    fn the_mss_is_rewritten_with_a_valid_checksum() {
        let mut p = syn_with_mss(1460);
        assert!(tcp_checksum_ok(&p));
        assert_eq!(rewrite_mss(&mut p, 65495), Some(1460));
        assert!(tcp_checksum_ok(&p), "checksum after the rewrite");
        let ip = Ipv4Slice::from_slice(&p).unwrap();
        let t = etherparse::TcpSlice::from_slice(ip.payload().payload).unwrap();
        assert!(t
            .options_iterator()
            .any(|o| o == Ok(etherparse::TcpOptionElement::MaximumSegmentSize(65495))));
        let mut plain = Vec::new();
        PacketBuilder::ipv4([10, 199, 0, 2], [10, 199, 1, 2], 64)
            .tcp(40000, 80, 1, 64240)
            .syn()
            .write(&mut plain, b"")
            .unwrap();
        let before = plain.clone();
        assert_eq!(rewrite_mss(&mut plain, 65495), None);
        assert_eq!(plain, before, "no MSS option: untouched");
    }

    #[test]
    fn a_partial_checksum_is_the_pseudo_header_sum() {
        let mut p = syn_with_mss(1460);
        make_tcp_checksum_partial(&mut p).unwrap();
        // Finishing it as a NIC does (the sum over the TCP segment, from the partial value)
        // gives the full checksum.
        let ihl = 20;
        let sum = etherparse::checksum::Sum16BitWords::new()
            .add_slice(&p[ihl..])
            .ones_complement();
        p[ihl + 16..ihl + 18].copy_from_slice(&sum.to_ne_bytes());
        assert!(tcp_checksum_ok(&p));
        let (task, dest, payload) = tcp_endpoints(&p).unwrap();
        assert_eq!(task, "10.199.1.2:80".parse().unwrap());
        assert_eq!(dest, "10.199.0.2:40000".parse().unwrap());
        assert_eq!(payload, 0);
    }

    /// Every truncation and every single-byte corruption of valid packets is read without a
    /// panic (the fuzz body, run on stable).
    #[test]
    fn hostile_bytes_never_panic() {
        let mut seeds = vec![
            udp_packet(b"payload"),
            Vec::new(),
            vec![0x45],
            vec![0xff; 64],
        ];
        let mut v = Vec::new();
        PacketBuilder::ipv4([1, 2, 3, 4], [5, 6, 7, 8], 1)
            .tcp(1, 2, 3, 4)
            .syn()
            .write(&mut v, b"")
            .unwrap();
        seeds.push(v);
        seeds.push(syn_with_mss(1460));
        for seed in &seeds {
            for cut in 0..=seed.len() {
                let mut c = seed[..cut].to_vec();
                let _ = rewrite_mss(&mut c, 1000);
                let _ = tcp_endpoints(&c);
                let _ = make_tcp_checksum_partial(&mut c);
                let _ = parse(&seed[..cut]);
                let _ = echo_reply_in_ip(&seed[..cut]);
                let _ = echo_reply(&seed[..cut]);
            }
            for i in 0..seed.len() {
                for b in [0u8, 0x0f, 0x45, 0x80, 0xff] {
                    let mut m = seed.clone();
                    m[i] = b;
                    let _ = parse(&m);
                    let _ = echo_reply_in_ip(&m);
                    let _ = rewrite_mss(&mut m.clone(), 1000);
                    let _ = make_tcp_checksum_partial(&mut m.clone());
                }
            }
        }
    }
}
