//! The host side of a bridge network (docker_gwbridge): what a task sends to the bridge's
//! gateway leaves the node through the runtime's egress (`Target::Egress`, the bare IPv4
//! packet), and what comes back for the task enters here ([`Dataplane::egress_answer`]) to be
//! framed from the gateway to the task's port. The core keeps no state for it: the egress
//! (the node's own sockets) lives in io/.
//!
//! TCP super-frames pass whole both ways, so that a flow's bulk costs one trip through the core
//! and the egress per 64 KiB rather than per segment: a task's TSO super-frame to the gateway
//! goes out as one packet ([`Dataplane::super_frame_to_egress`]), and an
//! answer the egress hands back with a segment size is framed whole and marked with that size
//! for the port's virtio-net GSO header ([`Dataplane::egress_answer_gso`]).

use super::counters::DropReason;
use super::inner::{self, Inner};
use super::output::{Output, Target};
use super::switch::{mac_at, Dataplane, Forwarder};
use super::tables::{Dest, NetId, PortId};
use super::Nanos;
use crate::wire::{ipv4, ETHERNET_HEADER_LEN};

/// The smallest segment size an answer may be cut at (as `gso::MIN_MSS`).
const MIN_GSO_SIZE: u16 = 32;

impl Forwarder<'_> {
    /// An IPv4 frame from `port` to its bridge's gateway: the packet goes to the egress.
    /// `total` is its IPv4 total length, checked against the frame by `inner::check`.
    pub(crate) fn send_to_egress(
        &mut self,
        port: PortId,
        net: NetId,
        frame: &[u8],
        total: usize,
    ) -> Result<(), DropReason> {
        let info = self.t.network(net).ok_or(DropReason::UnknownPort)?;
        if total > usize::from(info.mtu) {
            return Err(DropReason::MtuExceeded);
        }
        self.emit_egress(port, frame, total)
    }

    /// The IPv4 packet of `frame` (`total` bytes after the Ethernet header) to the egress.
    fn emit_egress(&mut self, port: PortId, frame: &[u8], total: usize) -> Result<(), DropReason> {
        let packet = frame
            .get(ETHERNET_HEADER_LEN..ETHERNET_HEADER_LEN + total)
            .ok_or(DropReason::MalformedInner)?;
        self.out
            .emit(Target::Egress(port), |b| b.extend_from_slice(packet));
        self.c.events.egress_packets += 1;
        Ok(())
    }

    /// A TCP super-frame from `port`: sent whole to the egress when it is for its bridge's
    /// gateway; `Ok(false)` when it is not (the caller cuts it).
    fn super_to_egress(&mut self, port: PortId, frame: &[u8]) -> Result<bool, DropReason> {
        let p = self.t.port(port).ok_or(DropReason::UnknownPort)?;
        let Some(net) = self.t.network(p.network).filter(|n| n.bridge.is_some()) else {
            return Ok(false);
        };
        if frame.len() < ETHERNET_HEADER_LEN
            || mac_at(frame, 0) != net.gateway_mac
            || self.t.lookup_mac(p.network, net.gateway_mac).is_some()
            || super::resolver::gateway_dns(net, frame).is_some()
        {
            return Ok(false);
        }
        if mac_at(frame, 6) != p.mac {
            return Err(DropReason::SpoofedSource);
        }
        let Inner::Ipv4 { total } = inner::check(frame)? else {
            return Ok(false);
        };
        self.emit_egress(port, frame, total).map(|()| true)
    }
}

impl Dataplane {
    /// Whether `frame` from `port` is addressed to the gateway of the port's bridge network
    /// (a cheap test before a super-frame is readied for the egress).
    pub(crate) fn to_bridge_gateway(&self, port: PortId, frame: &[u8]) -> bool {
        let t = self.tables();
        t.port(port)
            .and_then(|p| t.network(p.network))
            .is_some_and(|n| {
                n.bridge.is_some()
                    && frame.len() >= ETHERNET_HEADER_LEN
                    && mac_at(frame, 0) == n.gateway_mac
            })
    }

    /// A TCP super-frame from `port` (TSO; its TCP checksum as the task's kernel left it, the
    /// pseudo-header's sum, which the egress does not read): sent whole to the egress when it
    /// is for the port's bridge gateway, or refused and counted, and true; false, counting
    /// nothing, when it is for elsewhere, for the caller to cut it into segments.
    pub(crate) fn super_frame_to_egress(
        &mut self,
        now: Nanos,
        port: PortId,
        frame: &[u8],
        out: &mut Output,
    ) -> bool {
        let mut taken = true;
        self.handle(now, "port", out, |f| {
            let sent = f.super_to_egress(port, frame);
            taken = !matches!(sent, Ok(false));
            if taken {
                if let Some(c) = f.c.ports.get_mut(port.0 as usize) {
                    c.rx(frame.len());
                }
            }
            sent.map(|_| ())
        });
        taken
    }

    /// An IPv4 packet from the host's side for a task on the node's bridge network (the one
    /// its destination address is on): sent to the task's port from the bridge's gateway. A
    /// packet that is no whole IPv4 packet, or for no task on a bridge, is dropped and counted.
    pub fn egress_answer(&mut self, now: Nanos, packet: &[u8], out: &mut Output) {
        self.egress_answer_gso(now, packet, None, out)
    }

    /// `egress_answer` for a packet that may be a TCP super-packet to be cut at `gso` bytes of
    /// payload per segment (its TCP checksum the pseudo-header sum): framed whole, and marked
    /// in `out` with that size for the port's link to segment (see `Output::iter_gso`). Each
    /// segment must fit the bridge's MTU.
    pub fn egress_answer_gso(
        &mut self,
        now: Nanos,
        packet: &[u8],
        gso: Option<u16>,
        out: &mut Output,
    ) {
        self.handle(now, "egress", out, |f| {
            let ip = etherparse::Ipv4Slice::from_slice(packet)
                .map_err(|_| DropReason::MalformedInner)?;
            let dst = ip.header().destination_addr();
            let (net_id, net) =
                f.t.networks
                    .iter()
                    .enumerate()
                    .find(|(_, n)| n.bridge.is_some() && n.subnet.contains(&dst))
                    .ok_or(DropReason::UnknownDestination)?;
            let net_id = NetId(net_id as u32);
            let to =
                f.t.resolve_ip(net_id, dst)
                    .filter(|m| *m != net.gateway_mac)
                    .ok_or(DropReason::UnknownDestination)?;
            let Some(Dest::Local(port)) = f.t.lookup_mac(net_id, to) else {
                return Err(DropReason::UnknownDestination);
            };
            let fits = match gso {
                None => packet.len() <= usize::from(net.mtu),
                Some(size) => {
                    let hdr = ip.header().slice().len() + tcp_header_len(ip.payload().payload);
                    ip.header().protocol() == etherparse::IpNumber::TCP
                        && size >= MIN_GSO_SIZE
                        && hdr + usize::from(size) <= usize::from(net.mtu)
                        && packet.len() <= ipv4::MAX_LEN
                }
            };
            if !fits {
                return Err(DropReason::MtuExceeded);
            }
            let from = net.gateway_mac;
            let n = f.out.emit(Target::Port(port), |b| {
                b.extend_from_slice(&to.0);
                b.extend_from_slice(&from.0);
                b.extend_from_slice(&[0x08, 0x00]);
                b.extend_from_slice(packet);
            });
            if let Some(size) = gso {
                f.out.set_last_gso(size);
            }
            if let Some(c) = f.c.ports.get_mut(port.0 as usize) {
                c.tx(n);
            }
            Ok(())
        });
    }
}

/// The length of the TCP header at the start of `tcp` (its data offset), 0 when unreadable.
fn tcp_header_len(tcp: &[u8]) -> usize {
    tcp.get(12).map_or(0, |b| usize::from(b >> 4) * 4)
}
