//! Frames from a TAP with offloads on: finish checksums the task's kernel left open and cut TCP
//! super-frames (up to 64 KiB) into segments of `gso_size`, as a NIC would, before switching.
//!
//! One read from the TAP then carries a whole burst of a TCP flow instead of one segment, which
//! is where the per-packet system-call cost of a userspace data path goes away.

use super::counters::DropReason;
use super::output::Output;
use super::switch::Dataplane;
use super::tables::PortId;
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
                let whole = self.to_bridge_gateway(port, frame)
                    && self.super_frame_to_egress(now, port, frame, out);
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
/// pseudo-header sum on entry, as virtio's NEEDS_CSUM promises.
fn finish_checksum(buf: &mut [u8], start: usize, offset: usize) -> Result<(), DropReason> {
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

/// Cuts an Ethernet/IPv4/TCP super-frame into segments of at most `mss` payload bytes, each with
/// its own IPv4 identification, sequence number and checksums, and hands each to `emit`.
fn segment_tcp4(
    frame: &[u8],
    mss: usize,
    buf: &mut Vec<u8>,
    mut emit: impl FnMut(&[u8]),
) -> Result<(), DropReason> {
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
    if ihl < ipv4::HEADER_LEN
        || ip[9] != ipv4::PROTO_TCP
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
    let seq0 = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    let id0 = u16::from_be_bytes([ip[4], ip[5]]);
    let flags = tcp[13];
    let count = payload.len().div_ceil(mss).max(1);
    for i in 0..count {
        let chunk = payload
            .get(i * mss..((i + 1) * mss).min(payload.len()))
            .unwrap_or(&[]);
        buf.clear();
        buf.extend_from_slice(headers);
        buf.extend_from_slice(chunk);
        let (ip, tcp) = buf[ETHERNET_HEADER_LEN..].split_at_mut(ihl);
        let total = (ihl + doff + chunk.len()) as u16;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[4..6].copy_from_slice(&id0.wrapping_add(i as u16).to_be_bytes());
        ipv4::fill_checksum(ip);
        let seq = seq0.wrapping_add((i * mss) as u32);
        tcp[4..8].copy_from_slice(&seq.to_be_bytes());
        let mut f = flags;
        if i + 1 < count {
            f &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            f &= !TCP_CWR;
        }
        tcp[13] = f;
        tcp[16..18].fill(0);
        let mut pseudo = [0u8; 12];
        pseudo[..4].copy_from_slice(&ip[12..16]);
        pseudo[4..8].copy_from_slice(&ip[16..20]);
        pseudo[9] = ipv4::PROTO_TCP;
        pseudo[10..12].copy_from_slice(&((doff + chunk.len()) as u16).to_be_bytes());
        let sum =
            !checksum::fold(u64::from(checksum::sum(&pseudo)) + u64::from(checksum::sum(tcp)));
        tcp[16..18].copy_from_slice(&sum.to_be_bytes());
        emit(buf);
    }
    Ok(())
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
