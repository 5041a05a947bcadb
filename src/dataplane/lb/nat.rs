//! Address translation for VIP flows on whole Ethernet frames: read a flow's ports, rewrite an
//! IPv4 address with the checksums updated incrementally (RFC 1624), and build the packets the
//! balancer itself sends (TCP RST, ICMP echo reply).
//!
//! Frames reach this code checked by `inner::check` (an IPv4 header and its total length lie
//! within the frame); every other length is checked here.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::conntrack::{Tcp, PROTO_TCP, PROTO_UDP};
use crate::wire::{checksum, MacAddr, ETHERNET_HEADER_LEN};

const IP: usize = ETHERNET_HEADER_LEN;
const PROTO_ICMP: u8 = 1;

/// The transport of an IPv4 frame, as the balancer needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub proto: u8,
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub tcp: Option<Tcp>,
    /// The IPv4 packet's length.
    pub len: usize,
}

/// What an IPv4 frame to a VIP is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// TCP or UDP with its ports (a first or only fragment).
    Flow(Flow),
    /// An ICMP echo request.
    EchoRequest,
    /// Anything else: other protocols, later fragments, short transport headers.
    Other,
}

fn ihl(frame: &[u8]) -> usize {
    usize::from(frame[IP] & 0x0f) * 4
}

fn total(frame: &[u8]) -> usize {
    usize::from(u16::from_be_bytes([frame[IP + 2], frame[IP + 3]]))
}

fn addr(frame: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(frame[at], frame[at + 1], frame[at + 2], frame[at + 3])
}

/// Reads the transport of a checked IPv4 frame.
pub fn classify(frame: &[u8]) -> Kind {
    let h = ihl(frame);
    let end = IP + total(frame);
    let l4 = IP + h;
    let frag = u16::from_be_bytes([frame[IP + 6], frame[IP + 7]]) & 0x1fff;
    if frag != 0 || end > frame.len() {
        return Kind::Other;
    }
    let proto = frame[IP + 9];
    let src = addr(frame, IP + 12);
    let dst = addr(frame, IP + 16);
    let port = |at: usize| u16::from_be_bytes([frame[at], frame[at + 1]]);
    match proto {
        PROTO_TCP if end >= l4 + 20 => Kind::Flow(Flow {
            proto,
            src: SocketAddrV4::new(src, port(l4)),
            dst: SocketAddrV4::new(dst, port(l4 + 2)),
            tcp: Some(Tcp {
                flags: frame[l4 + 13],
                seq: u32::from_be_bytes([
                    frame[l4 + 4],
                    frame[l4 + 5],
                    frame[l4 + 6],
                    frame[l4 + 7],
                ]),
                ack: u32::from_be_bytes([
                    frame[l4 + 8],
                    frame[l4 + 9],
                    frame[l4 + 10],
                    frame[l4 + 11],
                ]),
            }),
            len: end - IP,
        }),
        PROTO_UDP if end >= l4 + 8 => Kind::Flow(Flow {
            proto,
            src: SocketAddrV4::new(src, port(l4)),
            dst: SocketAddrV4::new(dst, port(l4 + 2)),
            tcp: None,
            len: end - IP,
        }),
        PROTO_ICMP if end >= l4 + 8 && frame[l4] == 8 && frame[l4 + 1] == 0 => Kind::EchoRequest,
        _ => Kind::Other,
    }
}

/// Adds `new - old` (as 16-bit words) to a checksum field (RFC 1624, eqn. 3).
fn adjust(field: [u8; 2], old: [u8; 4], new: [u8; 4]) -> [u8; 2] {
    let hc = u16::from_be_bytes(field);
    let mut acc = u64::from(!hc);
    for i in [0, 2] {
        acc += u64::from(!u16::from_be_bytes([old[i], old[i + 1]]));
        acc += u64::from(u16::from_be_bytes([new[i], new[i + 1]]));
    }
    (!checksum::fold(acc)).to_be_bytes()
}

/// Rewrites the IPv4 source (`dst: false`) or destination of a frame of a TCP or UDP flow
/// (as `classify` found it) and its checksums.
pub fn rewrite(frame: &mut [u8], dst: bool, new: Ipv4Addr) {
    let at = IP + if dst { 16 } else { 12 };
    let old: [u8; 4] = [frame[at], frame[at + 1], frame[at + 2], frame[at + 3]];
    let new = new.octets();
    frame[at..at + 4].copy_from_slice(&new);
    let c = adjust([frame[IP + 10], frame[IP + 11]], old, new);
    frame[IP + 10..IP + 12].copy_from_slice(&c);
    let l4 = IP + ihl(frame);
    let field = match frame[IP + 9] {
        PROTO_TCP => l4 + 16,
        PROTO_UDP => l4 + 6,
        _ => return,
    };
    if field + 2 > frame.len() {
        return;
    }
    let cur = [frame[field], frame[field + 1]];
    if frame[IP + 9] == PROTO_UDP && cur == [0, 0] {
        return; // no UDP checksum
    }
    let mut c = adjust(cur, old, new);
    if frame[IP + 9] == PROTO_UDP && c == [0, 0] {
        c = [0xff, 0xff]; // RFC 768: a computed zero is sent as all ones
    }
    frame[field..field + 2].copy_from_slice(&c);
}

/// Sets the destination and source MAC of a frame.
pub fn set_macs(frame: &mut [u8], dst: Option<MacAddr>, src: Option<MacAddr>) {
    if let Some(m) = dst {
        frame[..6].copy_from_slice(&m.0);
    }
    if let Some(m) = src {
        frame[6..12].copy_from_slice(&m.0);
    }
}

/// Appends a TCP RST from `src` to `dst` with sequence number `seq`, in an Ethernet frame
/// (`macs`: destination, source).
pub fn write_rst(
    buf: &mut Vec<u8>,
    macs: (MacAddr, MacAddr),
    src: SocketAddrV4,
    dst: SocketAddrV4,
    seq: u32,
) {
    write_tcp_reset(buf, macs, src, dst, seq, None);
}

/// Appends the RST+ACK that refuses a connection attempt (RFC 793: sequence 0, acknowledging
/// the SYN with `ack`).
pub fn write_rst_ack(
    buf: &mut Vec<u8>,
    macs: (MacAddr, MacAddr),
    src: SocketAddrV4,
    dst: SocketAddrV4,
    ack: u32,
) {
    write_tcp_reset(buf, macs, src, dst, 0, Some(ack));
}

fn write_tcp_reset(
    buf: &mut Vec<u8>,
    macs: (MacAddr, MacAddr),
    src: SocketAddrV4,
    dst: SocketAddrV4,
    seq: u32,
    ack: Option<u32>,
) {
    let flags = match ack {
        Some(_) => super::conntrack::RST | super::conntrack::ACK,
        None => super::conntrack::RST,
    };
    write_tcp(
        buf,
        macs,
        src,
        dst,
        (seq, ack.unwrap_or(0), flags),
        0,
        &[],
        &[],
    );
}

/// Appends an Ethernet/IPv4/TCP segment (`macs`: destination, source; `opts` a multiple of 4
/// bytes) advertising `window`, with both checksums.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_tcp(
    buf: &mut Vec<u8>,
    macs: (MacAddr, MacAddr),
    src: SocketAddrV4,
    dst: SocketAddrV4,
    (seq, ack, flags): (u32, u32, u8),
    window: u16,
    opts: &[u8],
    data: &[u8],
) {
    let hlen = 20 + opts.len();
    let total = (20 + hlen + data.len()) as u16;
    buf.extend_from_slice(&macs.0 .0);
    buf.extend_from_slice(&macs.1 .0);
    buf.extend_from_slice(&[0x08, 0x00]);
    let ip = buf.len();
    buf.extend_from_slice(&[0x45, 0]);
    buf.extend_from_slice(&total.to_be_bytes());
    buf.extend_from_slice(&[0, 0, 0x40, 0, 64, PROTO_TCP, 0, 0]);
    buf.extend_from_slice(&src.ip().octets());
    buf.extend_from_slice(&dst.ip().octets());
    let c = checksum::checksum(&buf[ip..ip + 20]);
    buf[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
    let tcp = buf.len();
    buf.extend_from_slice(&src.port().to_be_bytes());
    buf.extend_from_slice(&dst.port().to_be_bytes());
    buf.extend_from_slice(&seq.to_be_bytes());
    buf.extend_from_slice(&ack.to_be_bytes());
    buf.extend_from_slice(&[((hlen / 4) as u8) << 4, flags]);
    buf.extend_from_slice(&window.to_be_bytes());
    buf.extend_from_slice(&[0, 0, 0, 0]);
    buf.extend_from_slice(opts);
    buf.extend_from_slice(data);
    let c = checksum::transport_ipv4(
        &src.ip().octets(),
        &dst.ip().octets(),
        PROTO_TCP,
        &buf[tcp..],
    );
    buf[tcp + 16..tcp + 18].copy_from_slice(&c.to_be_bytes());
}

/// Appends the echo reply to a checked ICMP echo request frame (as `classify` found it):
/// addresses and MACs swapped, type 0, the rest as it came.
pub fn write_echo_reply(buf: &mut Vec<u8>, request: &[u8]) {
    let end = IP + total(request);
    let start = buf.len();
    buf.extend_from_slice(&request[..end]);
    let f = &mut buf[start..];
    let (dst_mac, src_mac) = (
        MacAddr(f[6..12].try_into().unwrap_or_default()),
        MacAddr(f[..6].try_into().unwrap_or_default()),
    );
    set_macs(f, Some(dst_mac), Some(src_mac));
    let (src, dst) = (addr(f, IP + 12), addr(f, IP + 16));
    f[IP + 12..IP + 16].copy_from_slice(&dst.octets());
    f[IP + 16..IP + 20].copy_from_slice(&src.octets());
    f[IP + 8] = 64;
    f[IP + 10..IP + 12].copy_from_slice(&[0, 0]);
    let h = ihl(f);
    let c = checksum::checksum(&f[IP..IP + h]);
    f[IP + 10..IP + 12].copy_from_slice(&c.to_be_bytes());
    let l4 = IP + h;
    f[l4] = 0;
    f[l4 + 2..l4 + 4].copy_from_slice(&[0, 0]);
    let c = checksum::checksum(&f[l4..end]);
    f[l4 + 2..l4 + 4].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

    const A: [u8; 4] = [10, 0, 1, 5];
    const VIP: [u8; 4] = [10, 0, 1, 2];
    const B: [u8; 4] = [10, 0, 1, 9];

    fn tcp_frame(payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(A, VIP, 64)
            .tcp(40000, 80, 1000, 64240)
            .syn()
            .write(&mut v, payload)
            .unwrap();
        v
    }

    fn udp_frame(payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(A, VIP, 64)
            .udp(5353, 53)
            .write(&mut v, payload)
            .unwrap();
        v
    }

    /// True when the IPv4 header and transport checksums of `frame` verify.
    fn checksums_ok(frame: &[u8]) -> bool {
        let h = ihl(frame);
        let end = IP + total(frame);
        let src = &frame[IP + 12..IP + 16];
        let dst = &frame[IP + 16..IP + 20];
        checksum::verify(&frame[IP..IP + h])
            && checksum::verify_transport_ipv4(src, dst, frame[IP + 9], &frame[IP + h..end])
    }

    #[test]
    fn rewritten_frames_keep_valid_checksums() {
        for payload in [&b""[..], b"x", b"hello world, odd length!"] {
            for mut f in [tcp_frame(payload), udp_frame(payload)] {
                assert!(checksums_ok(&f));
                rewrite(&mut f, true, B.into());
                assert!(checksums_ok(&f), "after DNAT");
                assert_eq!(&f[IP + 16..IP + 20], &B);
                rewrite(&mut f, false, VIP.into());
                assert!(checksums_ok(&f), "after SNAT");
                let p = SlicedPacket::from_ethernet(&f).unwrap();
                assert!(matches!(
                    p.transport,
                    Some(TransportSlice::Tcp(_)) | Some(TransportSlice::Udp(_))
                ));
            }
        }
    }

    #[test]
    fn classify_reads_ports_and_tcp_state() {
        let f = tcp_frame(b"");
        let Kind::Flow(flow) = classify(&f) else {
            panic!()
        };
        assert_eq!(flow.src, SocketAddrV4::new(A.into(), 40000));
        assert_eq!(flow.dst, SocketAddrV4::new(VIP.into(), 80));
        assert_eq!(
            flow.tcp.map(|t| (t.flags, t.seq)),
            Some((super::super::conntrack::SYN, 1000))
        );
        // A later fragment has no ports.
        let mut frag = f.clone();
        frag[IP + 7] = 1;
        assert_eq!(classify(&frag), Kind::Other);
        // A TCP header cut short.
        let mut short = f[..IP + 20 + 10].to_vec();
        short[IP + 2..IP + 4].copy_from_slice(&30u16.to_be_bytes());
        assert_eq!(classify(&short), Kind::Other);
    }

    #[test]
    fn built_rst_and_echo_reply_parse_and_verify() {
        let mut buf = Vec::new();
        let macs = (MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]));
        write_rst(
            &mut buf,
            macs,
            SocketAddrV4::new(VIP.into(), 80),
            SocketAddrV4::new(A.into(), 40000),
            77,
        );
        assert!(checksums_ok(&buf));
        let p = SlicedPacket::from_ethernet(&buf).unwrap();
        let Some(TransportSlice::Tcp(t)) = p.transport else {
            panic!()
        };
        assert!(t.rst() && !t.ack() && t.sequence_number() == 77);

        let mut req = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(A, VIP, 64)
            .icmpv4_echo_request(7, 1)
            .write(&mut req, b"ping")
            .unwrap();
        assert_eq!(classify(&req), Kind::EchoRequest);
        let mut rep = Vec::new();
        write_echo_reply(&mut rep, &req);
        assert!(checksum::verify(&rep[IP..IP + 20]));
        assert!(checksum::verify(&rep[IP + 20..]));
        assert_eq!(
            (&rep[IP + 12..IP + 16], &rep[IP + 16..IP + 20]),
            (&VIP[..], &A[..])
        );
        assert_eq!(rep[IP + 20], 0);
        assert_eq!((&rep[..6], &rep[6..12]), (&req[6..12], &req[..6]));
    }
}
