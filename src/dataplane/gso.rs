//! Frames from a TAP with offloads on: finish checksums the task's kernel left open and cut TCP
//! super-frames (up to 64 KiB) into segments of `gso_size`, as a NIC would, before switching.
//!
//! One read from the TAP then carries a whole burst of a TCP flow instead of one segment, which
//! is where the per-packet system-call cost of a userspace data path goes away.

use super::counters::DropReason;
use super::output::Output;
use super::switch::Dataplane;
use super::tables::{Dest, PortId};
use super::Nanos;
use crate::wire::{checksum, ipv4, vnet, ETHERNET_HEADER_LEN};

const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;
/// The smallest segment size accepted. Linux sends no smaller segments than its
/// tcp_min_snd_mss (48) less TCP options (up to 40 bytes, 12 with timestamps alone); below 32
/// a frame is hostile rather than a burst, and would fan out into thousands of packets (at
/// most 65535 / 32 = 2048 here).
const MIN_MSS: usize = 32;

impl Dataplane {
    /// A frame from `port` with the virtio-net header `vnet` the TAP put in front of it.
    pub fn from_port_vnet(
        &mut self,
        now: Nanos,
        port: PortId,
        vnet_hdr: &[u8],
        frame: &[u8],
        out: &mut Output,
    ) {
        let Ok(hdr) = vnet::Repr::parse(vnet_hdr) else {
            return self.refuse_from_port(now, port, frame.len(), DropReason::Malformed);
        };
        if hdr.gso() == vnet::GSO_NONE && !hdr.needs_csum() {
            return self.from_port(now, port, frame, out);
        }
        let mut buf = std::mem::take(self.gso_buffer());
        let result = match hdr.gso() {
            vnet::GSO_NONE => {
                buf.clear();
                buf.extend_from_slice(frame);
                match finish_checksum(&mut buf, hdr.csum_start.into(), hdr.csum_offset.into()) {
                    Ok(()) => {
                        self.from_port(now, port, &buf, out);
                        Ok(())
                    }
                    Err(r) => Err(r),
                }
            }
            vnet::GSO_TCPV4 => {
                // To the host's side it goes whole: the egress's stack takes 64 KiB at once,
                // and trusts its local link's TCP checksums (it reads none).
                let whole = (self.to_bridge_gateway(port, frame)
                    && self.super_frame_to_egress(now, port, frame, out))
                    || (self.tunnel_gso()
                        && self.super_frame_to_vtep(now, port, frame, hdr.gso_size.into(), out));
                if whole {
                    Ok(())
                } else {
                    segment_tcp4(frame, hdr.gso_size.into(), &mut buf, |seg| {
                        self.from_port(now, port, seg, out)
                    })
                }
            }
            _ => Err(DropReason::Malformed),
        };
        *self.gso_buffer() = buf;
        if let Err(reason) = result {
            self.refuse_from_port(now, port, frame.len(), reason);
        }
    }
}

/// Stores the Internet checksum of `buf[start..]` at `start + offset`; the field holds the
/// pseudo-header sum on entry, as virtio's NEEDS_CSUM (and VXLAN RCO, `Meta::partial`)
/// promises.
pub fn finish_checksum(buf: &mut [u8], start: usize, offset: usize) -> Result<(), DropReason> {
    let at = start.checked_add(offset).ok_or(DropReason::Malformed)?;
    if start > buf.len() || at + 2 > buf.len() {
        return Err(DropReason::Malformed);
    }
    let mut sum = !checksum::sum(&buf[start..]);
    if sum == 0 && offset == 6 {
        sum = 0xffff; // UDP: zero means "no checksum"
    }
    buf[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    Ok(())
}

/// Cuts a TCP super-frame that the core emitted with a segment size (`Output::iter_gso`) into
/// frames for a port that cannot take it whole (no virtio-net header, or a virtual task); false
/// when it cannot be cut.
pub fn segment_super_frame(
    frame: &[u8],
    gso_size: u16,
    buf: &mut Vec<u8>,
    emit: impl FnMut(&[u8]),
) -> bool {
    segment_tcp4(frame, gso_size.into(), buf, emit).is_ok()
}

/// Longest header run of one segment: Ethernet, IPv4 with options, TCP with options.
const MAX_SEGMENT_HEADERS: usize = ETHERNET_HEADER_LEN + 60 + 60;

/// A checked Ethernet/IPv4/TCP super-frame and how it cuts into segments of `mss` payload
/// bytes (the last may be shorter).
struct Segments<'a> {
    headers: &'a [u8],
    payload: &'a [u8],
    ihl: usize,
    doff: usize,
    mss: usize,
    count: usize,
    seq0: u32,
    id0: u16,
    flags: u8,
}

impl<'a> Segments<'a> {
    fn parse(frame: &'a [u8], mss: usize) -> Result<Segments<'a>, DropReason> {
        let ip = frame
            .get(ETHERNET_HEADER_LEN..)
            .ok_or(DropReason::Malformed)?;
        if frame[12..14] != ipv4::ETHERTYPE.to_be_bytes()
            || ip.len() < ipv4::HEADER_LEN
            || ip[0] >> 4 != 4
        {
            return Err(DropReason::Malformed);
        }
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        // A TCP burst is never a fragment.
        let fragment =
            u16::from_be_bytes([ip[6], ip[7]]) & (ipv4::FLAG_MF | ipv4::OFFSET_MASK) != 0;
        if ihl < ipv4::HEADER_LEN
            || ip[9] != ipv4::PROTO_TCP
            || fragment
            || mss < MIN_MSS
            || ip.len() > ipv4::MAX_LEN
            || !checksum::verify(ip.get(..ihl).ok_or(DropReason::Malformed)?)
        {
            return Err(DropReason::Malformed);
        }
        let tcp = ip.get(ihl..).ok_or(DropReason::Malformed)?;
        let doff = usize::from(tcp.get(12).ok_or(DropReason::Malformed)? >> 4) * 4;
        let hl = ETHERNET_HEADER_LEN + ihl + doff;
        if doff < 20 || hl > frame.len() {
            return Err(DropReason::Malformed);
        }
        // Every segment is no longer than the super-frame, which fits an IPv4 datagram (above).
        let (headers, payload) = frame.split_at(hl);
        Ok(Segments {
            headers,
            payload,
            ihl,
            doff,
            mss,
            count: payload.len().div_ceil(mss).max(1),
            seq0: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
            id0: u16::from_be_bytes([ip[4], ip[5]]),
            flags: tcp[13],
        })
    }

    /// Writes segment `i`'s headers (lengths, identification, sequence number, flags and both
    /// checksums its own) into `hdr` (`headers.len()` bytes) and returns its payload. With
    /// `open`, the TCP checksum field gets the pseudo-header's sum only (VXLAN RCO: the
    /// receiver finishes it, or its link does).
    fn segment(&self, i: usize, hdr: &mut [u8], open: bool) -> &'a [u8] {
        let mss = self.mss;
        let chunk = self
            .payload
            .get(i * mss..((i + 1) * mss).min(self.payload.len()))
            .unwrap_or(&[]);
        hdr.copy_from_slice(self.headers);
        let (ip, tcp) = hdr[ETHERNET_HEADER_LEN..].split_at_mut(self.ihl);
        let total = (self.ihl + self.doff + chunk.len()) as u16;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[4..6].copy_from_slice(&self.id0.wrapping_add(i as u16).to_be_bytes());
        ipv4::fill_checksum(ip);
        let seq = self.seq0.wrapping_add((i * mss) as u32);
        tcp[4..8].copy_from_slice(&seq.to_be_bytes());
        let mut f = self.flags;
        if i + 1 < self.count {
            f &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            f &= !TCP_CWR;
        }
        tcp[13] = f;
        tcp[16..18].fill(0);
        let pseudo = checksum::pseudo_header_ipv4(
            &ip[12..16],
            &ip[16..20],
            ipv4::PROTO_TCP,
            (self.doff + chunk.len()) as u16,
        );
        // The TCP header is a whole number of 32-bit words, so the payload's sum starts on an
        // even offset of the segment and adds on.
        let sum = if open {
            pseudo
        } else {
            !checksum::fold(
                u64::from(pseudo) + u64::from(checksum::sum(tcp)) + u64::from(checksum::sum(chunk)),
            )
        };
        tcp[16..18].copy_from_slice(&sum.to_be_bytes());
        chunk
    }
}

/// Cuts an Ethernet/IPv4/TCP super-frame into segments of at most `mss` payload bytes, each with
/// its own IPv4 identification, sequence number and checksums, and hands each to `emit`.
fn segment_tcp4(
    frame: &[u8],
    mss: usize,
    buf: &mut Vec<u8>,
    mut emit: impl FnMut(&[u8]),
) -> Result<(), DropReason> {
    let s = Segments::parse(frame, mss)?;
    let mut hdr = [0u8; MAX_SEGMENT_HEADERS];
    let hdr = &mut hdr[..s.headers.len()];
    for i in 0..s.count {
        let chunk = s.segment(i, hdr, false);
        buf.clear();
        buf.extend_from_slice(hdr);
        buf.extend_from_slice(chunk);
        emit(buf);
    }
    Ok(())
}

/// Cuts a tunnelled TCP super-frame (a `Target::Underlay` VXLAN item with a segment size and
/// `Meta::input_follows`: `vxlan`, its bytes from `payload_offset()` on, is the VXLAN header;
/// `frame` is the inner super-frame, the input of the call that emitted it) into the VXLAN
/// payloads of its segments, byte for byte
/// what the core would have emitted for each segment on its own. `each(headers, chunk)` gets a
/// segment's VXLAN, Ethernet, IPv4 and TCP headers and its TCP payload, to send as one datagram
/// in two pieces, so the payload is never copied here. With the VXLAN header's RCO flag set
/// (for the TCP checksum), each segment's TCP checksum is left open for the receiver, and its
/// payload is not even read. Returns how many segments it cut; `None`, with nothing passed,
/// when the payload is not such a super-frame.
pub fn cut_tunnelled(
    vxlan: &[u8],
    frame: &[u8],
    mss: u16,
    mut each: impl FnMut(&[u8], &[u8]),
) -> Option<usize> {
    if vxlan.len() != crate::wire::vxlan::HEADER_LEN {
        return None;
    }
    let s = Segments::parse(frame, mss.into()).ok()?;
    let rco = crate::wire::vxlan::Packet::new_unchecked(vxlan).rco();
    let open = match rco {
        None => false,
        Some((start, 16)) if start == ETHERNET_HEADER_LEN + s.ihl => true,
        Some(_) => return None,
    };
    let mut hdr = [0u8; crate::wire::vxlan::HEADER_LEN + MAX_SEGMENT_HEADERS];
    hdr[..vxlan.len()].copy_from_slice(vxlan);
    let hdr = &mut hdr[..vxlan.len() + s.headers.len()];
    for i in 0..s.count {
        let chunk = s.segment(i, &mut hdr[vxlan.len()..], open);
        each(hdr, chunk);
    }
    Some(s.count)
}

impl Dataplane {
    /// A TCP super-frame from `port` for a task on another node. On an unencrypted overlay:
    /// encapsulated once, whole, as one output item marked with its segment size, for the
    /// runtime to cut into datagrams with [`cut_tunnelled`] as it sends them (tunnel GSO, as a
    /// NIC does); on an encrypted one, each segment sealed straight from the burst
    /// (`seal_segments`). False when it is not such a frame, or when the switch would treat
    /// any of its segments differently from the plain forwarding of the others (ARP, the
    /// gateway, a VIP, a local port, a bridge, a segment over the MTU, a forged source): the
    /// caller then cuts it here and switches each segment, which counts what is refused.
    fn super_frame_to_vtep(
        &mut self,
        now: Nanos,
        port: PortId,
        frame: &[u8],
        mss: usize,
        out: &mut Output,
    ) -> bool {
        let Ok(s) = Segments::parse(frame, mss) else {
            return false;
        };
        let t = self.tables();
        let Some(p) = t.port(port) else { return false };
        let dst = super::switch::mac_at(frame, 0);
        if super::switch::mac_at(frame, 6) != p.mac || dst.is_multicast() {
            return false;
        }
        let Some(Dest::Remote(vtep)) = t.lookup_mac(p.network, dst) else {
            return false;
        };
        let Some(net) = t.network(p.network) else {
            return false;
        };
        let vni = net.vni;
        // Peers that take remote checksum offload finish (or trust) the TCP checksums.
        let rco = t
            .remote_checksum_offload
            .then_some(ETHERNET_HEADER_LEN + s.ihl);
        // Every segment fits the overlay's MTU (the last is no longer than the others).
        let longest = s.ihl + s.doff + s.mss.min(s.payload.len());
        if s.count < 2 || net.bridge.is_some() || longest > usize::from(net.mtu) {
            return false;
        }
        if t.esp.as_ref().is_some_and(|e| e.encrypts(vni)) {
            self.seal_segments(now, port, vtep, vni, &s, rco, out);
            return true;
        }
        let hl = s.headers.len();
        let sizes = (0..s.count).map(|i| hl + s.payload.len().saturating_sub(i * mss).min(mss));
        if let Some(c) = self.port_counters(port) {
            for n in sizes.clone() {
                c.rx(n);
            }
        }
        self.handle(now, "port", out, |f| {
            super::encap::encapsulate_super(f, vtep, vni, frame, mss as u16, sizes, rco)
        });
        true
    }
}

impl Dataplane {
    /// The segments of a TCP super-frame for `vtep` on an encrypted overlay, each sealed in its
    /// own ESP datagram straight from the burst: what switching each segment would emit and
    /// count, without cutting it into a frame of its own first. With `rco` (the TCP header's
    /// start), each segment's TCP checksum is left open for the receiver (remote checksum
    /// offload inside ESP, whose ICV protects the segment instead), and no checksum pass
    /// reads its payload: only the copy into the datagram and the cipher do.
    #[allow(clippy::too_many_arguments)]
    fn seal_segments(
        &mut self,
        now: Nanos,
        port: PortId,
        vtep: std::net::Ipv4Addr,
        vni: u32,
        s: &Segments<'_>,
        rco: Option<usize>,
        out: &mut Output,
    ) {
        let mut hdr = [0u8; MAX_SEGMENT_HEADERS];
        let hdr = &mut hdr[..s.headers.len()];
        for i in 0..s.count {
            let chunk = s.segment(i, hdr, rco.is_some());
            if let Some(c) = self.port_counters(port) {
                c.rx(hdr.len() + chunk.len());
            }
            let hdr = &*hdr;
            self.handle(now, "port", out, |f| {
                let t = f.t;
                match &t.esp {
                    Some(e) => super::esp::encapsulate_parts(f, e, vtep, vni, hdr, chunk, rco),
                    None => Err(DropReason::UnknownDestination),
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

    fn super_frame(payload_len: usize, fin: bool) -> Vec<u8> {
        let mut b = PacketBuilder::ethernet2([2, 0x42, 10, 0, 9, 2], [2, 0x42, 10, 0, 9, 3])
            .ipv4([10, 0, 9, 2], [10, 0, 9, 3], 64)
            .tcp(40000, 80, 1_000_000, 502)
            .ack(77)
            .psh();
        if fin {
            b = b.fin();
        }
        let payload: Vec<u8> = (0..payload_len).map(|i| (i * 7) as u8).collect();
        let mut v = Vec::new();
        b.write(&mut v, &payload).unwrap();
        v
    }

    #[test]
    fn segments_carry_the_whole_stream_with_valid_checksums() {
        let frame = super_frame(4000, true);
        let mut buf = Vec::new();
        let mut segs = Vec::new();
        segment_tcp4(&frame, 1398, &mut buf, |s| segs.push(s.to_vec())).unwrap();
        assert_eq!(segs.len(), 3);
        let mut stream = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            let p = SlicedPacket::from_ethernet(s).unwrap();
            let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
                panic!()
            };
            assert!(checksum::verify(ip.header().slice()));
            let Some(TransportSlice::Tcp(t)) = &p.transport else {
                panic!()
            };
            assert_eq!(t.sequence_number(), 1_000_000 + (i * 1398) as u32);
            assert_eq!(t.fin(), i == 2, "FIN on the last segment only");
            assert_eq!(t.psh(), i == 2);
            let calc = t
                .calc_checksum_ipv4(ip.header().source(), ip.header().destination())
                .unwrap();
            assert_eq!(calc, t.checksum(), "TCP checksum of segment {i}");
            assert_eq!(
                ip.header().identification(),
                frame_id(&frame).wrapping_add(i as u16)
            );
            stream.extend_from_slice(t.payload());
        }
        assert_eq!(stream, &frame[54..]);
    }

    fn frame_id(f: &[u8]) -> u16 {
        u16::from_be_bytes([f[18], f[19]])
    }

    #[test]
    fn finishes_an_open_checksum() {
        let mut frame = super_frame(100, false);
        let want = u16::from_be_bytes([frame[50], frame[51]]);
        // What the kernel hands over: the pseudo-header sum in the field, not the checksum.
        let pseudo = checksum::pseudo_header_ipv4(
            &frame[26..30],
            &frame[30..34],
            6,
            (frame.len() - 34) as u16,
        );
        frame[50..52].copy_from_slice(&pseudo.to_be_bytes());
        finish_checksum(&mut frame, 34, 16).unwrap();
        assert_eq!(u16::from_be_bytes([frame[50], frame[51]]), want);
        assert_eq!(
            finish_checksum(&mut frame, 34, 60_000),
            Err(DropReason::Malformed)
        );
    }

    #[test]
    fn hostile_headers_are_refused() {
        let frame = super_frame(3000, false);
        let mut buf = Vec::new();
        for mss in [0, 1, MIN_MSS - 1] {
            let mut segments = 0;
            assert_eq!(
                segment_tcp4(&frame, mss, &mut buf, |_| segments += 1),
                Err(DropReason::Malformed),
                "gso_size {mss}"
            );
            assert_eq!(segments, 0);
        }
        assert!(segment_tcp4(&frame, MIN_MSS, &mut buf, |_| {}).is_ok());
        // More bytes than an IPv4 datagram can hold.
        let mut huge = super_frame(3000, false);
        huge.resize(ETHERNET_HEADER_LEN + ipv4::MAX_LEN + 1, 0);
        assert_eq!(
            segment_tcp4(&huge, 1398, &mut buf, |_| {}),
            Err(DropReason::Malformed)
        );
        // A corrupted IPv4 header is not copied into every segment with a fresh checksum.
        let mut bad = frame.clone();
        bad[ETHERNET_HEADER_LEN + 8] ^= 0x40;
        assert_eq!(
            segment_tcp4(&bad, 1398, &mut buf, |_| {}),
            Err(DropReason::Malformed)
        );
        assert_eq!(
            segment_tcp4(&frame[..40], 1398, &mut buf, |_| {}),
            Err(DropReason::Malformed)
        );
        for n in 0..60 {
            let _ = segment_tcp4(&frame[..n], 1398, &mut buf, |_| {});
        }
        let mut udp = frame.clone();
        udp[23] = 17;
        assert_eq!(
            segment_tcp4(&udp, 1398, &mut buf, |_| {}),
            Err(DropReason::Malformed)
        );
    }
}
