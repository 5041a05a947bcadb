//! VXLAN encapsulation towards a VTEP, and the checks on a datagram arriving from the underlay.

use std::net::Ipv4Addr;

use etherparse::Ipv4HeaderSlice;

use super::counters::DropReason;
use super::output::{Target, UnderlayDst, UnderlayKind};
use super::switch::Forwarder;
use super::tables::Tables;
use crate::wire::{checksum, ipv4, vxlan, UDP_HEADER_LEN};

/// Outer IPv4 + UDP + VXLAN header bytes in front of the inner frame.
pub(crate) const ENCAP_HEADER_LEN: usize = ipv4::HEADER_LEN + UDP_HEADER_LEN + vxlan::HEADER_LEN;

/// First port of the dynamic range; the UDP source port is chosen from 49152-65535.
pub const SRC_PORT_BASE: u16 = 49152;

/// Wraps `frame` in IPv4/UDP/VXLAN to `vtep`.
///
/// RFC 7348 section 5: the UDP source port should be "calculated using a hash of fields from
/// the inner packet", in the dynamic range, so that the underlay spreads flows and keeps each
/// flow in order. The UDP checksum "SHOULD be transmitted as zero".
pub(crate) fn encapsulate(
    f: &mut Forwarder<'_>,
    vtep: Ipv4Addr,
    vni: u32,
    frame: &[u8],
) -> Result<(), DropReason> {
    let total = ENCAP_HEADER_LEN + frame.len();
    let total_len = u16::try_from(total).map_err(|_| DropReason::MtuExceeded)?;
    let dst = vxlan_dst(f, vtep, frame);
    let hdr = outer_header(f, dst, vni, total_len)?;
    f.st.ip_id = f.st.ip_id.wrapping_add(1);
    let n = f.out.emit(Target::Underlay(dst), |b| {
        b.reserve(total);
        b.extend_from_slice(&hdr);
        b.extend_from_slice(frame);
    });
    f.c.underlay.tx(n);
    Ok(())
}

/// Wraps a TCP super-frame, whose segments of `mss` payload bytes are `sizes` long, in one
/// outer header to `vtep`, as one output item with segment size `mss`: `gso::cut_tunnelled`
/// turns its socket payload into what `encapsulate` gives for each segment (with `rco`, the
/// inner TCP checksum's start: the same but for TCP checksums left open, VXLAN RCO). The item
/// holds the headers only: the frame follows from the caller's input (`Meta::input_follows`),
/// so the burst is never copied here. The outer IPv4 and
/// UDP headers are those of the first segment's datagram (a socket sends from the VXLAN
/// header on; the kernel writes its own), and the counters count each datagram.
pub(crate) fn encapsulate_super(
    f: &mut Forwarder<'_>,
    vtep: Ipv4Addr,
    vni: u32,
    frame: &[u8],
    mss: u16,
    sizes: impl Iterator<Item = usize> + Clone,
    rco: Option<usize>,
) -> Result<(), DropReason> {
    let first = sizes.clone().next().ok_or(DropReason::Malformed)?;
    let total_len = u16::try_from(ENCAP_HEADER_LEN + first).map_err(|_| DropReason::MtuExceeded)?;
    let dst = vxlan_dst(f, vtep, frame);
    let mut hdr = outer_header(f, dst, vni, total_len)?;
    if let Some(start) = rco {
        vxlan::Packet::new_unchecked(&mut hdr[28..]).set_rco(start, false);
    }
    f.out
        .emit(Target::Underlay(dst), |b| b.extend_from_slice(&hdr));
    f.out.set_last_gso(mss);
    f.out.set_last_input_follows();
    for n in sizes {
        f.st.ip_id = f.st.ip_id.wrapping_add(1);
        f.c.underlay.tx(ENCAP_HEADER_LEN + n);
    }
    Ok(())
}

/// Where VXLAN carrying `frame` goes: `vtep`'s data-path port, from the source port of the
/// frame's flow.
fn vxlan_dst(f: &Forwarder<'_>, vtep: Ipv4Addr, frame: &[u8]) -> UnderlayDst {
    UnderlayDst {
        addr: vtep,
        port: f.t.data_path_port,
        src_port: SRC_PORT_BASE | (flow_hash(frame) as u16 & 0x3fff),
        kind: UnderlayKind::Vxlan,
    }
}

/// The outer IPv4, UDP and VXLAN headers of a datagram of `total_len` bytes to `dst`, with the
/// worker's next IPv4 identification.
fn outer_header(
    f: &Forwarder<'_>,
    dst: UnderlayDst,
    vni: u32,
    total_len: u16,
) -> Result<[u8; ENCAP_HEADER_LEN], DropReason> {
    let mut hdr = [0u8; ENCAP_HEADER_LEN];
    let ip: &mut [u8; ipv4::HEADER_LEN] = (&mut hdr[..ipv4::HEADER_LEN])
        .try_into()
        .map_err(|_| DropReason::Malformed)?;
    ipv4::Fields {
        src: f.t.data_path_addr,
        dst: dst.addr,
        protocol: ipv4::PROTO_UDP,
        ttl: ipv4::DEFAULT_TTL,
        identification: f.st.ip_id,
        dont_fragment: false,
        total_len,
    }
    .write(ip);
    let udp_len = total_len - ipv4::HEADER_LEN as u16;
    hdr[20..22].copy_from_slice(&dst.src_port.to_be_bytes());
    hdr[22..24].copy_from_slice(&dst.port.to_be_bytes());
    hdr[24..26].copy_from_slice(&udp_len.to_be_bytes());
    // hdr[26..28]: UDP checksum zero.
    vxlan::Repr { vni }.emit(&mut vxlan::Packet::new_unchecked(&mut hdr[28..]));
    Ok(hdr)
}

/// FNV-1a over the fields that name the inner flow: addresses, protocol and, for unfragmented
/// TCP and UDP, the ports; for non-IPv4 frames, the MACs and EtherType.
pub(crate) fn flow_hash(frame: &[u8]) -> u32 {
    const OFFSET: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    let mut h = OFFSET;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h = (h ^ u32::from(*b)).wrapping_mul(PRIME);
        }
    };
    let ip = frame.get(14..).unwrap_or(&[]);
    let is_ipv4 = frame.get(12..14) == Some(&[0x08, 0x00]) && ip.len() >= 20 && ip[0] >> 4 == 4;
    if !is_ipv4 {
        eat(frame.get(..14).unwrap_or(frame));
        return h;
    }
    eat(&ip[12..20]);
    eat(&ip[9..10]);
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let frag = u16::from_be_bytes([ip[6], ip[7]]) & (ipv4::FLAG_MF | ipv4::OFFSET_MASK);
    if frag == 0 && matches!(ip[9], ipv4::PROTO_TCP | ipv4::PROTO_UDP) {
        if let Some(ports) = ip.get(ihl..ihl + 4) {
            eat(ports);
        }
    }
    h
}

/// The UDP payload of an underlay datagram addressed to this node's data path.
pub(crate) struct UdpPayload<'a> {
    pub src: Ipv4Addr,
    pub payload: &'a [u8],
}

/// Checks an outer IPv4 datagram and returns its UDP payload if it is for our VXLAN port.
/// An underlay IPv4 datagram addressed to this node, checked: version, header and total
/// lengths, header checksum, no fragmentation. Returns its header and its payload.
pub(crate) fn outer_ipv4<'a>(
    t: &Tables,
    datagram: &'a [u8],
) -> Result<(Ipv4HeaderSlice<'a>, &'a [u8]), DropReason> {
    match datagram.first() {
        None => return Err(DropReason::Malformed),
        Some(v) if v >> 4 != 4 => return Err(DropReason::NotIpv4),
        Some(_) => {}
    }
    let hdr = Ipv4HeaderSlice::from_slice(datagram).map_err(|_| DropReason::Malformed)?;
    let ihl = hdr.slice().len();
    let total = usize::from(hdr.total_len());
    if total < ihl || total > datagram.len() {
        return Err(DropReason::Malformed);
    }
    if !checksum::verify(hdr.slice()) {
        return Err(DropReason::BadChecksum);
    }
    if hdr.more_fragments() || hdr.fragments_offset().value() != 0 {
        return Err(DropReason::OuterFragment);
    }
    if hdr.destination_addr() != t.data_path_addr {
        return Err(DropReason::NotForUs);
    }
    Ok((hdr, &datagram[ihl..total]))
}

pub(crate) fn outer_udp_payload<'a>(
    t: &Tables,
    datagram: &'a [u8],
) -> Result<UdpPayload<'a>, DropReason> {
    let (hdr, udp) = outer_ipv4(t, datagram)?;
    if hdr.protocol() != etherparse::IpNumber::UDP {
        return Err(DropReason::NotVxlan);
    }
    if udp.len() < UDP_HEADER_LEN {
        return Err(DropReason::Malformed);
    }
    let dst_port = u16::from_be_bytes([udp[2], udp[3]]);
    if dst_port != t.data_path_port {
        return Err(DropReason::NotVxlan);
    }
    let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    if udp_len < UDP_HEADER_LEN || udp_len > udp.len() {
        return Err(DropReason::Malformed);
    }
    let udp = &udp[..udp_len];
    let sum = u16::from_be_bytes([udp[6], udp[7]]);
    if sum != 0 && !udp_checksum_ok(hdr.source(), hdr.destination(), udp) {
        return Err(DropReason::BadChecksum);
    }
    Ok(UdpPayload {
        src: hdr.source_addr(),
        payload: &udp[UDP_HEADER_LEN..],
    })
}

/// Verifies a UDP checksum over the IPv4 pseudo-header (RFC 768).
fn udp_checksum_ok(src: [u8; 4], dst: [u8; 4], udp: &[u8]) -> bool {
    checksum::verify_transport_ipv4(&src, &dst, ipv4::PROTO_UDP, udp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_hash_keeps_a_flow_and_separates_flows() {
        // 10.0.9.2:40000 -> 10.0.9.3:80 TCP, and the same with another source port.
        let mut a = [0u8; 54];
        a[12] = 0x08;
        a[14] = 0x45;
        a[23] = ipv4::PROTO_TCP;
        a[26..30].copy_from_slice(&[10, 0, 9, 2]);
        a[30..34].copy_from_slice(&[10, 0, 9, 3]);
        a[34..36].copy_from_slice(&40000u16.to_be_bytes());
        a[36..38].copy_from_slice(&80u16.to_be_bytes());
        let mut b = a;
        b[34..36].copy_from_slice(&40001u16.to_be_bytes());
        let mut a_payload_changed = a;
        a_payload_changed[50] = 0xff;
        assert_eq!(flow_hash(&a), flow_hash(&a_payload_changed));
        assert_ne!(flow_hash(&a), flow_hash(&b));
        // Garbage and short frames hash without panicking.
        for n in 0..a.len() {
            let _ = flow_hash(&a[..n]);
        }
    }
}
