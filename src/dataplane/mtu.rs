//! IPv4 packets larger than the network MTU: "fragmentation needed" back to the sender when DF
//! is set (RFC 1191), fragmentation to fit when it is not (RFC 791).

use super::counters::DropReason;
use super::output::Target;
use super::switch::Forwarder;
use super::tables::{Dest, PortId};
use crate::wire::{icmp, ipv4, ETHERNET_HEADER_LEN};

/// Handles an IPv4 `frame` from `port` whose packet (`total` bytes) exceeds `mtu`.
pub(crate) fn too_big(
    f: &mut Forwarder<'_>,
    port: PortId,
    dest: Dest,
    vni: u32,
    frame: &[u8],
    total: usize,
    mtu: usize,
) -> Result<(), DropReason> {
    let packet = &frame[ETHERNET_HEADER_LEN..ETHERNET_HEADER_LEN + total];
    let flags = u16::from_be_bytes([packet[6], packet[7]]);
    if flags & ipv4::FLAG_DF != 0 {
        if may_answer_with_icmp(packet) {
            send_frag_needed(f, port, packet, mtu)?;
        }
        return Err(DropReason::MtuExceeded);
    }
    fragment(f, dest, vni, frame, total, mtu)
}

/// RFC 1122 3.2.2: no ICMP error about an ICMP error, nor about a non-initial fragment.
fn may_answer_with_icmp(packet: &[u8]) -> bool {
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    let offset = u16::from_be_bytes([packet[6], packet[7]]) & ipv4::OFFSET_MASK;
    if offset != 0 {
        return false;
    }
    if packet[9] == ipv4::PROTO_ICMP {
        // Only queries (echo, timestamp, ...) may be answered; types 3, 4, 5, 11, 12 are errors.
        return match packet.get(ihl) {
            Some(t) => !matches!(t, 3 | 4 | 5 | 11 | 12),
            None => false,
        };
    }
    true
}

/// Sends "fragmentation needed, next-hop MTU = `mtu`" from the network's gateway to the task.
fn send_frag_needed(
    f: &mut Forwarder<'_>,
    port: PortId,
    packet: &[u8],
    mtu: usize,
) -> Result<(), DropReason> {
    let p = f.t.port(port).ok_or(DropReason::UnknownPort)?;
    let net = f.t.network(p.network).ok_or(DropReason::UnknownPort)?;
    let quoted = &packet[..packet
        .len()
        .min(icmp::MAX_ERROR_DATAGRAM - ipv4::HEADER_LEN - icmp::HEADER_LEN)];
    let src = [packet[12], packet[13], packet[14], packet[15]];
    let icmp_len = icmp::HEADER_LEN + quoted.len();
    let ip = ipv4::Fields {
        src: net.gateway,
        dst: src.into(),
        protocol: ipv4::PROTO_ICMP,
        ttl: ipv4::DEFAULT_TTL,
        identification: 0,
        dont_fragment: false,
        total_len: (ipv4::HEADER_LEN + icmp_len) as u16,
    };
    let next_hop_mtu = mtu as u16;
    let gateway_mac = net.gateway_mac;
    let mut result = Ok(());
    let n = f.out.emit(Target::Port(port), |b| {
        b.extend_from_slice(&p.mac.0);
        b.extend_from_slice(&gateway_mac.0);
        b.extend_from_slice(&ipv4::ETHERTYPE.to_be_bytes());
        let mut hdr = [0u8; ipv4::HEADER_LEN];
        ip.write(&mut hdr);
        b.extend_from_slice(&hdr);
        let start = b.len();
        b.resize(start + icmp_len, 0);
        if icmp::emit_frag_needed(&mut b[start..], next_hop_mtu, quoted).is_err() {
            result = Err(DropReason::Malformed);
        }
    });
    f.c.events.icmp_frag_needed += 1;
    if let Some(c) = f.c.ports.get_mut(port.0 as usize) {
        c.tx(n);
    }
    result
}

/// Splits the IPv4 packet in `frame` into fragments of at most `mtu` bytes and forwards each.
/// The first fragment keeps every option; later ones only those with the "copied" flag.
fn fragment(
    f: &mut Forwarder<'_>,
    dest: Dest,
    vni: u32,
    frame: &[u8],
    total: usize,
    mtu: usize,
) -> Result<(), DropReason> {
    let eth = &frame[..ETHERNET_HEADER_LEN];
    let packet = &frame[ETHERNET_HEADER_LEN..ETHERNET_HEADER_LEN + total];
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    let (header, data) = packet.split_at(ihl);
    let word = u16::from_be_bytes([header[6], header[7]]);
    let base_offset = usize::from(word & ipv4::OFFSET_MASK) * 8;
    let more_after = word & ipv4::FLAG_MF != 0;
    let mut copied = [0u8; 40];
    let copied_len = ipv4::copied_options(&header[ipv4::HEADER_LEN..], &mut copied)
        .map_err(|_| DropReason::Malformed)?;
    if mtu < ihl + 8 {
        return Err(DropReason::MtuExceeded);
    }
    let mut scratch = std::mem::take(&mut f.st.scratch);
    let mut pos = 0;
    let mut fragments = 0u64;
    let mut result = Ok(());
    while pos < data.len() {
        let first = pos == 0;
        let hl = if first {
            ihl
        } else {
            ipv4::HEADER_LEN + copied_len
        };
        let room = (mtu - hl) / 8 * 8;
        let take = room.min(data.len() - pos);
        let last = pos + take == data.len();
        scratch.clear();
        scratch.extend_from_slice(eth);
        let h = scratch.len();
        if first {
            scratch.extend_from_slice(header);
        } else {
            scratch.extend_from_slice(&header[..ipv4::HEADER_LEN]);
            scratch.extend_from_slice(&copied[..copied_len]);
        }
        let ip = &mut scratch[h..];
        ip[0] = 0x40 | (hl / 4) as u8;
        ip[2..4].copy_from_slice(&((hl + take) as u16).to_be_bytes());
        let mut w = ((base_offset + pos) / 8) as u16 & ipv4::OFFSET_MASK;
        if !last || more_after {
            w |= ipv4::FLAG_MF;
        }
        ip[6..8].copy_from_slice(&w.to_be_bytes());
        ipv4::fill_checksum(&mut ip[..hl]);
        scratch.extend_from_slice(&data[pos..pos + take]);
        if let Err(e) = f.forward(dest, &scratch, vni) {
            result = Err(e);
            break;
        }
        fragments += 1;
        pos += take;
    }
    f.st.scratch = scratch;
    f.c.events.packets_fragmented += 1;
    f.c.events.fragments_created += fragments;
    result
}
