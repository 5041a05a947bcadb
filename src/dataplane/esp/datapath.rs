//! The switch's ESP hooks: sealing a VXLAN datagram towards a VTEP, and reading ESP (as IP
//! protocol 50 or in UDP) from the underlay.

use std::net::Ipv4Addr;

use super::sa::EspError;
use super::{EspTable, Transport};
use crate::dataplane::counters::DropReason;
use crate::dataplane::encap::{self, flow_hash, SRC_PORT_BASE};
use crate::dataplane::output::{Target, UnderlayDst, UnderlayKind};
use crate::dataplane::switch::Forwarder;
use crate::wire::{esp, ipv4, vxlan, UDP_HEADER_LEN};

impl From<EspError> for DropReason {
    fn from(e: EspError) -> DropReason {
        match e {
            EspError::Malformed => DropReason::Malformed,
            EspError::UnknownSpi => DropReason::EspUnknownSpi,
            EspError::Auth => DropReason::EspAuth,
            EspError::Replay => DropReason::EspReplay,
            EspError::SeqExhausted => DropReason::EspSeqExhausted,
            EspError::SeqUnreserved => DropReason::EspSeqUnreserved,
        }
    }
}

/// RFC 3948 2.2: a one-octet 0xFF payload is a NAT-keepalive, to be ignored.
const NAT_KEEPALIVE: u8 = 0xff;
/// RFC 3948 2.2: four zero octets where an SPI would be mark a non-ESP (IKE) packet.
const NON_ESP_MARKER_LEN: usize = 4;

/// Seals `frame` in VXLAN (`vni`) and ESP towards `vtep`.
pub(crate) fn encapsulate(
    f: &mut Forwarder<'_>,
    esp_t: &EspTable,
    vtep: Ipv4Addr,
    vni: u32,
    frame: &[u8],
) -> Result<(), DropReason> {
    encapsulate_parts(f, esp_t, vtep, vni, frame, &[], None)
}

/// Seals the frame `head` followed by `body` in VXLAN (`vni`) and ESP towards `vtep`, copying
/// each piece once, straight into the datagram (`head` holds at least the frame's Ethernet,
/// IPv4 and TCP or UDP headers, which name its flow). With `rco`, the start of a TCP checksum
/// left open in `head`: the VXLAN header says so (remote checksum offload), for the receiver
/// to finish or trust, as on an unencrypted network; the ICV covers it either way.
pub(crate) fn encapsulate_parts(
    f: &mut Forwarder<'_>,
    esp_t: &EspTable,
    vtep: Ipv4Addr,
    vni: u32,
    head: &[u8],
    body: &[u8],
    rco: Option<usize>,
) -> Result<(), DropReason> {
    let frame_len = head.len() + body.len();
    let sa = esp_t.outbound(vtep).ok_or(DropReason::UnknownDestination)?;
    let (kind, outer_udp) = match esp_t.transport {
        Transport::Ip => (UnderlayKind::EspIp, 0),
        Transport::Udp => (UnderlayKind::EspUdp, UDP_HEADER_LEN),
    };
    let inner_udp_len = UDP_HEADER_LEN + vxlan::HEADER_LEN + frame_len;
    let esp_len = inner_udp_len + esp::overhead(inner_udp_len);
    let total = ipv4::HEADER_LEN + outer_udp + esp_len;
    let total_len = u16::try_from(total).map_err(|_| DropReason::MtuExceeded)?;
    let inner_udp_len = inner_udp_len as u16; // < total_len
    let seq = sa.next_seq()?;
    let dst = match kind {
        UnderlayKind::EspUdp => UnderlayDst {
            addr: vtep,
            port: esp_t.udp_port,
            src_port: esp_t.udp_port,
            kind,
        },
        _ => UnderlayDst {
            addr: vtep,
            port: 0,
            src_port: 0,
            kind,
        },
    };
    let mut ip = [0u8; ipv4::HEADER_LEN];
    ipv4::Fields {
        src: f.t.data_path_addr,
        dst: vtep,
        protocol: if outer_udp == 0 {
            esp::IP_PROTOCOL
        } else {
            ipv4::PROTO_UDP
        },
        ttl: ipv4::DEFAULT_TTL,
        identification: f.st.ip_id,
        dont_fragment: false,
        total_len,
    }
    .write(&mut ip);
    f.st.ip_id = f.st.ip_id.wrapping_add(1);
    let src_port = SRC_PORT_BASE | (flow_hash(head) as u16 & 0x3fff);
    let data_path_port = f.t.data_path_port;
    let n = f.out.try_emit(Target::Underlay(dst), |b| {
        b.reserve(total);
        b.extend_from_slice(&ip);
        if outer_udp != 0 {
            // RFC 3948 2.1: source and destination port are the ESP-in-UDP port; the checksum
            // "SHOULD be transmitted as a zero value".
            let udp_len = total_len - ipv4::HEADER_LEN as u16;
            b.extend_from_slice(&esp_t.udp_port.to_be_bytes());
            b.extend_from_slice(&esp_t.udp_port.to_be_bytes());
            b.extend_from_slice(&udp_len.to_be_bytes());
            b.extend_from_slice(&[0, 0]);
        }
        let esp_start = b.len();
        b.extend_from_slice(&[0u8; esp::PREFIX_LEN]);
        // The VXLAN UDP datagram, as it would travel in cleartext (checksum zero, RFC 7348).
        b.extend_from_slice(&src_port.to_be_bytes());
        b.extend_from_slice(&data_path_port.to_be_bytes());
        b.extend_from_slice(&inner_udp_len.to_be_bytes());
        b.extend_from_slice(&[0, 0]);
        let at = b.len();
        b.extend_from_slice(&[0u8; vxlan::HEADER_LEN]);
        let mut vx = vxlan::Packet::new_unchecked(&mut b[at..]);
        vxlan::Repr { vni }.emit(&mut vx);
        if let Some(start) = rco {
            vx.set_rco(start, false);
        }
        b.extend_from_slice(head);
        b.extend_from_slice(body);
        sa.seal(b, esp_start, seq, ipv4::PROTO_UDP)
    })?;
    f.c.underlay.tx(n);
    Ok(())
}

/// True if an underlay IPv4 datagram is ESP (protocol 50, or UDP to the ESP-in-UDP port): a
/// cheap look at fixed offsets; `input_ipv4` validates the headers.
pub(crate) fn is_esp_datagram(esp_t: &EspTable, datagram: &[u8]) -> bool {
    let Some(&vihl) = datagram.first() else {
        return false;
    };
    match datagram.get(9) {
        Some(&esp::IP_PROTOCOL) => true,
        Some(&ipv4::PROTO_UDP) => {
            let ihl = usize::from(vihl & 0x0f) * 4;
            datagram
                .get(ihl + 2..ihl + 4)
                .is_some_and(|p| u16::from_be_bytes([p[0], p[1]]) == esp_t.udp_port)
        }
        _ => false,
    }
}

/// An underlay IPv4 datagram that `is_esp_datagram` picked: checks the outer headers like the
/// VXLAN path does, then opens the ESP inside.
pub(crate) fn input_ipv4(
    f: &mut Forwarder<'_>,
    esp_t: &EspTable,
    datagram: &[u8],
) -> Result<(), DropReason> {
    let (hdr, body) = encap::outer_ipv4(f.t, datagram)?;
    let src = hdr.source_addr();
    if hdr.protocol().0 == esp::IP_PROTOCOL {
        return open(f, esp_t, src, body);
    }
    // UDP to the ESP-in-UDP port (the only other case `is_esp_datagram` lets through). The ESP
    // ICV protects everything that matters; the UDP checksum is zero per RFC 3948 and not
    // verified.
    if body.len() < UDP_HEADER_LEN {
        return Err(DropReason::Malformed);
    }
    let udp_len = usize::from(u16::from_be_bytes([body[4], body[5]]));
    if udp_len < UDP_HEADER_LEN || udp_len > body.len() {
        return Err(DropReason::Malformed);
    }
    input_udp(f, esp_t, src, &body[UDP_HEADER_LEN..udp_len])
}

/// The payload of a UDP datagram to the ESP-in-UDP port (RFC 3948 2.2).
pub(crate) fn input_udp(
    f: &mut Forwarder<'_>,
    esp_t: &EspTable,
    src: Ipv4Addr,
    payload: &[u8],
) -> Result<(), DropReason> {
    if payload == [NAT_KEEPALIVE] {
        return Err(DropReason::NotVxlan);
    }
    if payload.len() >= NON_ESP_MARKER_LEN && payload[..NON_ESP_MARKER_LEN] == [0; 4] {
        // IKE: this node negotiates nothing, keys come from the topology.
        return Err(DropReason::NotVxlan);
    }
    open(f, esp_t, src, payload)
}

/// Opens an ESP packet from `src` and hands the VXLAN datagram inside to the switch.
fn open(
    f: &mut Forwarder<'_>,
    esp_t: &EspTable,
    src: Ipv4Addr,
    packet: &[u8],
) -> Result<(), DropReason> {
    let p = esp::Packet::new_checked(packet).map_err(|_| DropReason::Malformed)?;
    let Some(sa) = esp_t.inbound(src, p.spi()) else {
        // Told apart only once refused, so that the common case costs one lookup.
        if f.t.is_any_vtep(src) {
            return Err(DropReason::EspUnknownSpi);
        }
        f.st.unknown_vtep = Some(src);
        return Err(DropReason::UnknownVtep);
    };
    // Refuse replays before spending a decryption on them (RFC 4303 3.4.3).
    let seq = sa.check(p.seq_low())?;
    let mut buf = std::mem::take(&mut f.st.scratch);
    buf.clear();
    buf.extend_from_slice(packet);
    let result = match sa.open(&mut buf, seq) {
        Ok((payload, next_header)) => deliver(f, src, &buf[payload], next_header),
        Err(e) => Err(e.into()),
    };
    // A refused packet leaves no plaintext in the reused buffer (`Sa::open` already wiped what
    // failed authentication; this also covers what the switch refused after opening).
    if result.is_err() {
        buf.fill(0);
    }
    buf.clear();
    f.st.scratch = buf;
    result
}

/// The authenticated payload of an ESP packet: the VXLAN UDP datagram.
fn deliver(
    f: &mut Forwarder<'_>,
    src: Ipv4Addr,
    udp: &[u8],
    next_header: u8,
) -> Result<(), DropReason> {
    if next_header != ipv4::PROTO_UDP || udp.len() < UDP_HEADER_LEN {
        // Includes next header 59, RFC 4303 2.6 dummy packets: "MUST be discarded".
        return Err(DropReason::NotVxlan);
    }
    let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    if udp_len != udp.len() {
        return Err(DropReason::Malformed);
    }
    if u16::from_be_bytes([udp[2], udp[3]]) != f.t.data_path_port {
        return Err(DropReason::NotVxlan);
    }
    f.decapsulate_protected(src, &udp[UDP_HEADER_LEN..])
}
