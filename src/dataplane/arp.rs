//! The ARP responder: every request from a task is answered locally from the endpoint table,
//! so ARP never crosses the underlay (Docker's overlay programs neighbours statically too).

use super::counters::DropReason;
use super::output::Target;
use super::switch::Forwarder;
use super::tables::PortId;
use crate::wire::{arp, ETHERNET_HEADER_LEN};

/// Answers an ARP request from `port` for any endpoint of its network or the gateway.
pub(crate) fn respond(f: &mut Forwarder<'_>, port: PortId, frame: &[u8]) -> Result<(), DropReason> {
    let p = f.t.port(port).ok_or(DropReason::UnknownPort)?;
    let packet = arp::Packet::new_checked(&frame[ETHERNET_HEADER_LEN..])
        .map_err(|_| DropReason::Malformed)?;
    let req = arp::Repr::parse(&packet).map_err(|_| DropReason::ArpUnsupported)?;
    if req.source_mac != p.mac {
        // The reply would go to whatever address the body names: only the port's own.
        return Err(DropReason::SpoofedSource);
    }
    if req.operation != arp::Operation::Request || req.target_ip == req.source_ip {
        // Replies, gratuitous announcements and probes have nobody to answer.
        return Err(DropReason::ArpUnsupported);
    }
    let answer =
        f.t.resolve_ip(p.network, req.target_ip)
            .ok_or(DropReason::ArpUnknownTarget)?;
    let reply = arp::Repr {
        operation: arp::Operation::Reply,
        source_mac: answer,
        source_ip: req.target_ip,
        target_mac: req.source_mac,
        target_ip: req.source_ip,
    };
    let n = f.out.emit(Target::Port(port), |b| {
        b.extend_from_slice(&req.source_mac.0);
        b.extend_from_slice(&answer.0);
        b.extend_from_slice(&arp::ETHERTYPE.to_be_bytes());
        let start = b.len();
        b.resize(start + arp::PACKET_LEN, 0);
        reply.emit(&mut arp::Packet::new_unchecked(&mut b[start..]));
    });
    f.c.events.arp_replies += 1;
    if let Some(c) = f.c.ports.get_mut(port.0 as usize) {
        c.tx(n);
    }
    Ok(())
}
