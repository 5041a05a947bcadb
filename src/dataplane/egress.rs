//! The host side of a bridge network (docker_gwbridge): what a task sends to the bridge's
//! gateway leaves the node through the runtime's egress (`Target::Egress`, the bare IPv4
//! packet), and what comes back for the task enters here ([`Dataplane::egress_answer`]) to be
//! framed from the gateway to the task's port. The core keeps no state for it: the egress
//! (the node's own sockets) lives in io/.

use super::counters::DropReason;
use super::output::{Output, Target};
use super::switch::{Dataplane, Forwarder};
use super::tables::{Dest, NetId, PortId};
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
    /// An IPv4 packet from the host's side for a task on the node's bridge network (the one
    /// its destination address is on): sent to the task's port from the bridge's gateway. A
    /// packet that is no whole IPv4 packet, or for no task on a bridge, is dropped and counted.
    pub fn egress_answer(&mut self, now: Nanos, packet: &[u8], out: &mut Output) {
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
            if packet.len() > usize::from(net.mtu) {
                return Err(DropReason::MtuExceeded);
            }
            let from = net.gateway_mac;
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
