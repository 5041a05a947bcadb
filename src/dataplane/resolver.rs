//! The core's side of the embedded DNS: a UDP datagram from a task to port 53 of its network's
//! gateway address (the resolver every task is given in its resolv.conf) is answered here from
//! the service view (`dns::DnsTable`), or handed to the runtime for the host's resolvers
//! (`Target::Resolver`), whose answer comes back through `Dataplane::resolver_answer`.
//!
//! The gateway address is one every task's own kernel routes to its interface on the network
//! (it is on the subnet), so no route, iptables rule or mount is needed for queries to reach
//! the node; Docker's 127.0.0.11 needs iptables inside each container.

use std::net::SocketAddrV4;

use super::counters::DropReason;
use super::dns::{Outcome, Transport};
use super::lb::nat;
use super::output::Output;
use super::output::Target;
use super::switch::{Dataplane, Forwarder};
use super::tables::{NetId, PortId};
use super::Nanos;
use crate::wire::{checksum, MacAddr, ETHERNET_HEADER_LEN};

/// The DNS port.
pub const DNS_PORT: u16 = 53;

/// A query handed to the runtime: who asked, and which resolver address it asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DnsClient {
    pub port: PortId,
    /// The task's address and port.
    pub client: SocketAddrV4,
    /// The resolver address it sent to (its network's gateway, port 53).
    pub server: SocketAddrV4,
    /// The task's MAC and the gateway's, for the answer's frame.
    pub client_mac: MacAddr,
    pub server_mac: MacAddr,
}

impl Forwarder<'_> {
    /// A frame from `port` to its network's gateway MAC: a DNS query is answered, anything
    /// else has no destination.
    pub(crate) fn at_gateway(
        &mut self,
        port: PortId,
        net: NetId,
        frame: &[u8],
    ) -> Result<(), DropReason> {
        let info = self.t.network(net).ok_or(DropReason::UnknownPort)?;
        let flow = match nat::classify(frame) {
            nat::Kind::Flow(f)
                if f.proto == 17 && *f.dst.ip() == info.gateway && f.dst.port() == DNS_PORT =>
            {
                f
            }
            _ => return Err(DropReason::UnknownDestination),
        };
        let ihl = usize::from(frame[ETHERNET_HEADER_LEN] & 0x0f) * 4;
        let udp = ETHERNET_HEADER_LEN + ihl;
        let query = &frame[udp + 8..ETHERNET_HEADER_LEN + flow.len];
        let client = DnsClient {
            port,
            client: flow.src,
            server: flow.dst,
            client_mac: super::switch::mac_at(frame, 6),
            server_mac: info.gateway_mac,
        };
        let nets = self.t.task_networks(port);
        let max = usize::from(info.mtu).saturating_sub(28);
        // Only the order of several addresses depends on it: the query id and the time.
        let entropy = self.now
            ^ (u64::from(u16::from_be_bytes([
                query.first().copied().unwrap_or(0),
                query.get(1).copied().unwrap_or(0),
            ])) << 48)
            ^ u64::from(flow.src.port());
        let mut answer = std::mem::take(&mut self.st.scratch);
        let outcome = self
            .t
            .dns
            .respond(nets, query, Transport::Udp { max }, entropy, &mut answer);
        let r = match outcome {
            Outcome::Answered => {
                self.c.events.dns_answered += 1;
                self.send_answer(&client, &answer);
                Ok(())
            }
            Outcome::Forward => {
                self.c.events.dns_forwarded += 1;
                self.out
                    .emit(Target::Resolver(client), |b| b.extend_from_slice(query));
                Ok(())
            }
            Outcome::Drop(_) => Err(DropReason::DnsMalformed),
        };
        self.st.scratch = answer;
        r
    }

    /// Sends a DNS answer to the task that asked, from the resolver address it asked.
    pub(crate) fn send_answer(&mut self, to: &DnsClient, answer: &[u8]) {
        let n = self.out.emit(Target::Port(to.port), |b| {
            write_udp(
                b,
                (to.client_mac, to.server_mac),
                to.server,
                to.client,
                answer,
            )
        });
        if let Some(c) = self.c.ports.get_mut(to.port.0 as usize) {
            c.tx(n);
        }
    }
}

impl Dataplane {
    /// The answer to a query the runtime forwarded (`Target::Resolver`): an upstream's, or
    /// SERVFAIL (`dns::servfail`) when none answered. Sent to the task that asked, if its
    /// port still exists.
    pub fn resolver_answer(&mut self, now: Nanos, to: &DnsClient, answer: &[u8], out: &mut Output) {
        if self.tables().port(to.port).is_none() {
            return self.count_drop(now, DropReason::UnknownPort);
        }
        let len = answer.len();
        self.handle(now, "resolver", out, |f| {
            if len + 28 > usize::from(u16::MAX) {
                return Err(DropReason::Malformed);
            }
            f.send_answer(to, answer);
            Ok(())
        });
    }
}

/// Appends an Ethernet/IPv4/UDP frame from `src` to `dst` carrying `payload` (`macs`:
/// destination, source), with both checksums.
pub(crate) fn write_udp(
    buf: &mut Vec<u8>,
    macs: (MacAddr, MacAddr),
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload: &[u8],
) {
    let udp_len = (8 + payload.len()) as u16;
    let total = 20 + udp_len;
    buf.extend_from_slice(&macs.0 .0);
    buf.extend_from_slice(&macs.1 .0);
    buf.extend_from_slice(&[0x08, 0x00]);
    let ip = buf.len();
    buf.extend_from_slice(&[0x45, 0]);
    buf.extend_from_slice(&total.to_be_bytes());
    buf.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    buf.extend_from_slice(&src.ip().octets());
    buf.extend_from_slice(&dst.ip().octets());
    let c = checksum::checksum(&buf[ip..ip + 20]);
    buf[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
    let udp = buf.len();
    buf.extend_from_slice(&src.port().to_be_bytes());
    buf.extend_from_slice(&dst.port().to_be_bytes());
    buf.extend_from_slice(&udp_len.to_be_bytes());
    buf.extend_from_slice(&[0, 0]);
    buf.extend_from_slice(payload);
    let mut c = checksum::transport_ipv4(&src.ip().octets(), &dst.ip().octets(), 17, &buf[udp..]);
    if c == 0 {
        c = 0xffff;
    }
    buf[udp + 6..udp + 8].copy_from_slice(&c.to_be_bytes());
}
