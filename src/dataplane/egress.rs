//! The host side of a bridge network (docker_gwbridge): what a task sends to the bridge's
//! gateway leaves the node through the runtime's egress (`Target::Egress`, the bare IPv4
//! packet), and what comes back for the task enters here ([`Dataplane::egress_answer`]) to be
//! framed from the gateway to the task's port. The core keeps no state for it: the egress
//! (the node's own sockets) lives in io/.

use super::counters::DropReason;
use super::output::{Output, Target};
use super::switch::{Dataplane, Forwarder};
use super::tables::{NetId, PortId};
use super::Nanos;
use crate::wire::ETHERNET_HEADER_LEN;

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
        let packet = frame
            .get(ETHERNET_HEADER_LEN..ETHERNET_HEADER_LEN + total)
            .ok_or(DropReason::MalformedInner)?;
        self.out
            .emit(Target::Egress(port), |b| b.extend_from_slice(packet));
        self.c.events.egress_packets += 1;
        Ok(())
    }
}

impl Dataplane {
    /// An IPv4 packet from the host's side for the task at `port` (on a bridge network): sent
    /// to the port from the bridge's gateway. A port that is gone, or not on a bridge, or a
    /// packet that is no whole IPv4 packet for the port's address, is dropped and counted.
    pub fn egress_answer(&mut self, now: Nanos, port: PortId, packet: &[u8], out: &mut Output) {
        self.handle(now, "egress", out, |f| {
            let p = f.t.port(port).ok_or(DropReason::UnknownPort)?;
            let net = f.t.network(p.network).ok_or(DropReason::UnknownPort)?;
            if net.bridge.is_none() {
                return Err(DropReason::UnknownPort);
            }
            let ip = etherparse::Ipv4Slice::from_slice(packet)
                .map_err(|_| DropReason::MalformedInner)?;
            if ip.header().destination_addr() != p.ip {
                return Err(DropReason::UnknownDestination);
            }
            if packet.len() > usize::from(net.mtu) {
                return Err(DropReason::MtuExceeded);
            }
            let (to, from) = (p.mac, net.gateway_mac);
            let n = f.out.emit(Target::Port(port), |b| {
                b.extend_from_slice(&to.0);
                b.extend_from_slice(&from.0);
                b.extend_from_slice(&[0x08, 0x00]);
                b.extend_from_slice(packet);
            });
            if let Some(c) = f.c.ports.get_mut(port.0 as usize) {
                c.tx(n);
            }
            Ok(())
        });
    }
}
