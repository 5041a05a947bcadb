//! Receive coalescing for TAPs with offloads: consecutive in-order segments of one TCP flow
//! going to one port are joined into a single super-frame with a virtio-net GSO header, as the
//! kernel's GRO does behind a NIC. The task's kernel then takes one large segment per burst.
//!
//! Only plain data segments join (IPv4 without options or fragments; TCP flags ACK, and PSH on
//! the last), with identical TCP options, acknowledgement and window, equal sizes but for a
//! shorter last one, and a TCP checksum that verifies: a merged frame is handed over with its
//! checksum marked as computed, so nothing unverified may enter it. A segment whose checksum
//! its sender left open (VXLAN remote checksum offload, its integrity the outer UDP checksum's)
//! has none to verify: it joins on its IPv4 header checksum, and alone it is written with its
//! checksum still open (NEEDS_CSUM) for the task's kernel, which trusts it as a local sender's.

use super::tables::PortId;
use crate::wire::{checksum, ipv4, vnet, ETHERNET_HEADER_LEN};

const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;

/// Where a frame ends up: written as it is, or joined to the pending super-frame.
#[derive(Debug, Default)]
pub struct Coalescer {
    pending: Option<Pending>,
    buf: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    port: PortId,
    /// Offset of the TCP header in `buf`, and its length.
    tcp_at: usize,
    tcp_len: usize,
    seg_len: usize,
    count: usize,
    next_seq: u32,
    closed: bool,
    /// The first segment's open checksum (start, offset), for when it is written alone.
    open: Option<(u16, u16)>,
}

/// The parts of a segment that decide whether it joins.
struct Segment<'a> {
    ihl: usize,
    tcp: &'a [u8],
    payload_len: usize,
    seq: u32,
}

/// The virtio-net header of a frame written as it came: none, or NEEDS_CSUM for an open
/// checksum.
fn single_header(open: Option<(u16, u16)>) -> vnet::Repr {
    match open {
        Some((start, offset)) => vnet::Repr {
            flags: vnet::FLAG_NEEDS_CSUM,
            csum_start: start,
            csum_offset: offset,
            ..vnet::Repr::default()
        },
        None => vnet::Repr::default(),
    }
}

fn parse(frame: &[u8]) -> Option<Segment<'_>> {
    if frame.get(12..14)? != ipv4::ETHERTYPE.to_be_bytes() {
        return None;
    }
    let ip = frame.get(ETHERNET_HEADER_LEN..)?;
    let ihl = usize::from(*ip.first()? & 0x0f) * 4;
    if ip[0] >> 4 != 4 || ihl != ipv4::HEADER_LEN || ip.len() < ihl + 20 || ip[9] != ipv4::PROTO_TCP
    {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let frag = u16::from_be_bytes([ip[6], ip[7]]) & (ipv4::FLAG_MF | ipv4::OFFSET_MASK);
    if frag != 0 || total != ip.len() {
        return None;
    }
    let tcp = &ip[ihl..];
    let doff = usize::from(tcp[12] >> 4) * 4;
    if doff < 20 || doff > tcp.len() || tcp[13] & !TCP_PSH != TCP_ACK {
        return None;
    }
    let payload_len = tcp.len() - doff;
    if payload_len == 0 {
        return None;
    }
    Some(Segment {
        ihl,
        tcp: &tcp[..doff],
        payload_len,
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
    })
}

/// Both checksums hold: a corrupted segment is passed on as it came (for the task's stack to
/// drop), never merged into a frame whose checksums are recomputed.
fn checksums_ok(ip: &[u8], ihl: usize) -> bool {
    checksum::verify(&ip[..ihl])
        && checksum::verify_transport_ipv4(&ip[12..16], &ip[16..20], ipv4::PROTO_TCP, &ip[ihl..])
}

impl Coalescer {
    pub fn new() -> Coalescer {
        Coalescer {
            pending: None,
            buf: Vec::with_capacity(ipv4::MAX_LEN + 64),
        }
    }

    /// Offers `frame` for `port`, its transport checksum `open` (start, offset) when its sender
    /// left it so (`Meta::partial`). Whatever must be written first (the pending super-frame,
    /// or this frame when it cannot join) goes to `write(port, vnet_header, frame)`.
    pub fn push(
        &mut self,
        port: PortId,
        frame: &[u8],
        open: Option<(u16, u16)>,
        write: &mut impl FnMut(PortId, &vnet::Repr, &[u8]),
    ) {
        let seg = parse(frame).filter(|s| {
            let ip = &frame[ETHERNET_HEADER_LEN..];
            match open {
                Some((start, 16)) => {
                    usize::from(start) == ETHERNET_HEADER_LEN + s.ihl
                        && checksum::verify(&ip[..s.ihl])
                }
                Some(_) => false,
                None => checksums_ok(ip, s.ihl),
            }
        });
        let Some(seg) = seg else {
            self.flush(write);
            return write(port, &single_header(open), frame);
        };
        if let Some(p) = self.pending {
            let head_tcp = &self.buf[p.tcp_at..p.tcp_at + p.tcp_len];
            let joins = p.port == port
                && !p.closed
                && seg.seq == p.next_seq
                && seg.payload_len <= p.seg_len
                && seg.tcp.len() == p.tcp_len
                && self.buf[..ETHERNET_HEADER_LEN] == frame[..ETHERNET_HEADER_LEN]
                // addresses, TTL, TOS and flags of IPv4; ports, ack, window and options of TCP
                && self.buf[26..34] == frame[26..34]
                && self.buf[15] == frame[15]
                && self.buf[22..24] == frame[22..24]
                && head_tcp[..4] == seg.tcp[..4]
                && head_tcp[8..13] == seg.tcp[8..13]
                && head_tcp[14..16] == seg.tcp[14..16]
                && head_tcp[20..] == seg.tcp[20..]
                && self.buf.len() + seg.payload_len - ETHERNET_HEADER_LEN <= ipv4::MAX_LEN;
            if joins {
                self.buf
                    .extend_from_slice(&frame[frame.len() - seg.payload_len..]);
                let p = self.pending.as_mut().expect("checked above");
                p.count += 1;
                p.next_seq = seg.seq.wrapping_add(seg.payload_len as u32);
                let tcp_flags = frame[ETHERNET_HEADER_LEN + seg.ihl + 13];
                p.closed = seg.payload_len < p.seg_len || tcp_flags & TCP_PSH != 0;
                if tcp_flags & TCP_PSH != 0 {
                    self.buf[p.tcp_at + 13] |= TCP_PSH;
                }
                return;
            }
            self.flush(write);
        }
        self.buf.clear();
        self.buf.extend_from_slice(frame);
        let tcp_flags = seg.tcp[13];
        self.pending = Some(Pending {
            port,
            tcp_at: ETHERNET_HEADER_LEN + seg.ihl,
            tcp_len: seg.tcp.len(),
            seg_len: seg.payload_len,
            count: 1,
            next_seq: seg.seq.wrapping_add(seg.payload_len as u32),
            closed: tcp_flags & TCP_PSH != 0,
            open,
        });
    }

    /// Writes the pending super-frame, if any.
    pub fn flush(&mut self, write: &mut impl FnMut(PortId, &vnet::Repr, &[u8])) {
        let Some(p) = self.pending.take() else { return };
        if p.count == 1 {
            return write(p.port, &single_header(p.open), &self.buf);
        }
        let ip_len = self.buf.len() - ETHERNET_HEADER_LEN;
        let ip = &mut self.buf[ETHERNET_HEADER_LEN..];
        ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
        ipv4::fill_checksum(&mut ip[..ipv4::HEADER_LEN]);
        // NEEDS_CSUM: the checksum field holds the pseudo-header sum of the merged segment.
        let tcp_len = (ip_len - ipv4::HEADER_LEN) as u16;
        let partial =
            checksum::pseudo_header_ipv4(&ip[12..16], &ip[16..20], ipv4::PROTO_TCP, tcp_len);
        let at = p.tcp_at + 16;
        self.buf[at..at + 2].copy_from_slice(&partial.to_be_bytes());
        let hdr = vnet::Repr::tcp4_super_frame(
            p.tcp_at as u16,
            (p.tcp_at + p.tcp_len) as u16,
            p.seg_len as u16,
        );
        write(p.port, &hdr, &self.buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn seg(seq: u32, len: usize, psh: bool) -> Vec<u8> {
        let mut b = PacketBuilder::ethernet2([2, 0x42, 10, 0, 9, 3], [2, 0x42, 10, 0, 9, 2])
            .ipv4([10, 0, 9, 3], [10, 0, 9, 2], 64)
            .tcp(80, 40000, seq, 500)
            .ack(9);
        if psh {
            b = b.psh();
        }
        let payload: Vec<u8> = (0..len).map(|i| (seq as usize + i) as u8).collect();
        let mut v = Vec::new();
        b.write(&mut v, &payload).unwrap();
        v
    }

    fn run(frames: &[Vec<u8>]) -> Vec<(vnet::Repr, Vec<u8>)> {
        let mut c = Coalescer::new();
        let mut out = Vec::new();
        let mut w = |_p: PortId, h: &vnet::Repr, f: &[u8]| out.push((*h, f.to_vec()));
        for f in frames {
            c.push(PortId(0), f, None, &mut w);
        }
        c.flush(&mut w);
        out
    }

    #[test]
    fn in_order_segments_join_into_one_gso_frame() {
        let frames = vec![
            seg(1000, 1398, false),
            seg(2398, 1398, false),
            seg(3796, 500, true),
        ];
        let out = run(&frames);
        assert_eq!(out.len(), 1);
        let (h, f) = &out[0];
        assert_eq!(
            (h.gso_type, h.gso_size, h.csum_start, h.csum_offset),
            (vnet::GSO_TCPV4, 1398, 34, 16)
        );
        assert!(h.needs_csum());
        assert_eq!(f.len(), 54 + 1398 * 2 + 500);
        let payload: Vec<u8> = frames.iter().flat_map(|s| s[54..].to_vec()).collect();
        assert_eq!(&f[54..], &payload[..]);
        assert_eq!(u16::from_be_bytes([f[16], f[17]]) as usize, f.len() - 14);
        assert!(checksum::verify(&f[14..34]));
        assert_eq!(f[47] & TCP_PSH, TCP_PSH, "PSH of the last segment kept");
    }

    #[test]
    fn open_checksums_join_unverified_and_stay_open_alone() {
        // What a VXLAN RCO sender leaves: the TCP checksum field holds a pseudo-header sum.
        let open = |seq, len, psh| {
            let mut s = seg(seq, len, psh);
            s[50..52].copy_from_slice(&[0xab, 0xcd]);
            s
        };
        let frames = [
            open(1000, 1398, false),
            open(2398, 1398, false),
            open(3796, 10, true),
        ];
        let mut c = Coalescer::new();
        let mut out = Vec::new();
        let mut w = |_p: PortId, h: &vnet::Repr, f: &[u8]| out.push((*h, f.to_vec()));
        for f in &frames {
            c.push(PortId(0), f, Some((34, 16)), &mut w);
        }
        // Alone: written with the checksum still open for the task's kernel.
        c.push(PortId(0), &open(9000, 100, false), Some((34, 16)), &mut w);
        c.flush(&mut w);
        // A broken IPv4 header is never merged, open checksum or not; nor an open UDP one.
        let mut bad = open(9100, 100, false);
        bad[18] ^= 1;
        c.push(PortId(0), &bad, Some((34, 16)), &mut w);
        c.push(PortId(0), &open(9200, 100, false), Some((34, 6)), &mut w);
        c.flush(&mut w);
        assert_eq!(out.len(), 4);
        assert_eq!(
            (out[0].0.gso_type, out[0].1.len()),
            (vnet::GSO_TCPV4, 54 + 2806)
        );
        for (h, _) in &out[1..] {
            assert_eq!(h.gso_type, vnet::GSO_NONE);
            assert!(h.needs_csum());
        }
        assert_eq!((out[1].0.csum_start, out[1].0.csum_offset), (34, 16));
        assert_eq!((out[3].0.csum_start, out[3].0.csum_offset), (34, 6));
        assert_eq!(out[2].1, bad);
    }

    #[test]
    fn anything_else_passes_through_unchanged_and_in_order() {
        let mut corrupt = seg(2398, 1398, false);
        corrupt[100] ^= 1;
        // The identification is covered by the IPv4 header checksum only.
        let mut bad_header = seg(2398, 1398, false);
        bad_header[18] ^= 0x10;
        let gap = seg(9000, 1398, false);
        let frames = vec![
            seg(1000, 1398, false),
            bad_header.clone(),
            corrupt.clone(),
            gap.clone(),
            seg(1, 0, false),
        ];
        let out = run(&frames);
        let plain: Vec<_> = out.iter().map(|(h, f)| (h.gso_type, f.clone())).collect();
        assert_eq!(
            plain,
            frames
                .iter()
                .map(|f| (vnet::GSO_NONE, f.clone()))
                .collect::<Vec<_>>()
        );
    }

    /// One segment a write stands for.
    #[derive(Debug)]
    enum Written {
        /// Part of a merged frame: TCP sequence number, flags, payload.
        Merged(u32, u8, Vec<u8>),
        /// A frame that went out as it came.
        AsIs(Vec<u8>),
    }

    /// Cuts a write back into the segments it stands for.
    fn expand(h: &vnet::Repr, f: &[u8]) -> Vec<Written> {
        if h.gso_type != vnet::GSO_TCPV4 {
            return vec![Written::AsIs(f.to_vec())];
        }
        let hl = usize::from(h.hdr_len);
        let ip = &f[14..];
        assert!(checksum::verify(&ip[..20]), "merged IPv4 header checksum");
        assert_eq!(
            usize::from(u16::from_be_bytes([ip[2], ip[3]])),
            f.len() - 14
        );
        let seq0 = u32::from_be_bytes([f[38], f[39], f[40], f[41]]);
        let chunks: Vec<&[u8]> = f[hl..].chunks(usize::from(h.gso_size)).collect();
        let last = chunks.len() - 1;
        chunks
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut flags = f[47];
                if i < last {
                    flags &= !TCP_PSH;
                }
                let seq = seq0.wrapping_add((i * usize::from(h.gso_size)) as u32);
                Written::Merged(seq, flags, c.to_vec())
            })
            .collect()
    }

    #[test]
    fn whatever_arrives_leaves_in_order_each_segment_once() {
        // A deterministic generator (xorshift) of segment streams: in order, gaps, repeats,
        // short segments, PSH, another flow, corruption, non-TCP frames.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut merged = 0;
        for round in 0..300 {
            let mut frames = Vec::new();
            let mut seq = 1000u32.wrapping_add(round * 7919);
            for _ in 0..(next() % 40) {
                let r = next();
                let len = match r % 8 {
                    0 => (r >> 8) as usize % 1398,
                    _ => 1398,
                };
                let mut f = seg(seq, len, r % 13 == 0);
                match (r >> 16) % 23 {
                    0 => f[60] ^= 0x20,  // corrupted payload or header
                    1 => f[18] ^= 1,     // IPv4 identification: header checksum
                    2 => f[36] ^= 1,     // a port changed, checksum not
                    3 => f.truncate(30), // runt
                    4 => f[12] = 0x86,   // not IPv4
                    _ => {}
                }
                frames.push(f);
                seq = match (r >> 24) % 17 {
                    0 => seq.wrapping_add(5000), // a gap
                    1 => seq,                    // a repeat
                    _ => seq.wrapping_add(len as u32),
                };
            }
            let out = run(&frames);
            merged += out
                .iter()
                .filter(|(h, _)| h.gso_type == vnet::GSO_TCPV4)
                .count();
            let expanded: Vec<_> = out.iter().flat_map(|(h, f)| expand(h, f)).collect();
            assert_eq!(
                expanded.len(),
                frames.len(),
                "round {round}: one segment per frame"
            );
            for (k, (e, f)) in expanded.iter().zip(&frames).enumerate() {
                match e {
                    Written::AsIs(whole) => {
                        assert_eq!(whole, f, "round {round}, frame {k}: unchanged")
                    }
                    Written::Merged(seq, flags, payload) => {
                        // Only verified segments may lose their own headers in a merge.
                        let ip = &f[14..];
                        let tcp_ok = checksum::verify_transport_ipv4(
                            &ip[12..16],
                            &ip[16..20],
                            ipv4::PROTO_TCP,
                            &ip[20..],
                        );
                        assert!(
                            checksum::verify(&ip[..20]) && tcp_ok,
                            "round {round}, frame {k}: a corrupted segment was merged"
                        );
                        let want = u32::from_be_bytes([f[38], f[39], f[40], f[41]]);
                        assert_eq!(*seq, want, "round {round}, frame {k}: sequence");
                        assert_eq!(*flags, f[47], "round {round}, frame {k}: flags");
                        assert_eq!(&payload[..], &f[54..], "round {round}, frame {k}: payload");
                    }
                }
            }
        }
        assert!(
            merged > 100,
            "the streams exercised merging ({merged} merged writes)"
        );
    }
}
