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
use super::tables::{NetId, NetInfo, PortId};
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

/// The flow of `frame` (IPv4, checked by `inner::check`) when it is DNS to `info`'s gateway.
/// The destination address is looked at first: most frames to a bridge's gateway are not for
/// it, and need not be read further.
pub(crate) fn gateway_dns(info: &NetInfo, frame: &[u8]) -> Option<nat::Flow> {
    let at = ETHERNET_HEADER_LEN + 16;
    if frame.get(at..at + 4)? != info.gateway.octets() {
        return None;
    }
    match nat::classify(frame) {
        nat::Kind::Flow(f) if f.dst.port() == DNS_PORT => Some(f),
        _ => None,
    }
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
        let flow = gateway_dns(info, frame).ok_or(DropReason::UnknownDestination)?;
        if flow.proto == 6 {
            return self.dns_tcp(port, net, frame, &flow);
        }
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

/// TCP flags.
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

impl Forwarder<'_> {
    /// DNS over TCP at the resolver address (what a client does after a truncated UDP answer),
    /// served without connection state: the initial sequence number is a hash of the
    /// connection's addresses, a SYN gets its SYN-ACK, a segment holding a whole query gets the
    /// whole answer and a FIN, a FIN gets its ACK. A name outside the swarm is answered SERVFAIL
    /// over TCP (it would fit UDP: the forwarder's answer cut to TC is rare).
    fn dns_tcp(
        &mut self,
        port: PortId,
        net: NetId,
        frame: &[u8],
        flow: &nat::Flow,
    ) -> Result<(), DropReason> {
        let info = self.t.network(net).ok_or(DropReason::UnknownPort)?;
        let Some(t) = flow.tcp else {
            return Err(DropReason::DnsMalformed);
        };
        let ihl = usize::from(frame[ETHERNET_HEADER_LEN] & 0x0f) * 4;
        let l4 = ETHERNET_HEADER_LEN + ihl;
        let end = ETHERNET_HEADER_LEN + flow.len;
        let doff = usize::from(frame[l4 + 12] >> 4) * 4;
        if doff < 20 || l4 + doff > end {
            return Err(DropReason::DnsMalformed);
        }
        let payload = &frame[l4 + doff..end];
        let to = DnsClient {
            port,
            client: flow.src,
            server: flow.dst,
            client_mac: super::switch::mac_at(frame, 6),
            server_mac: info.gateway_mac,
        };
        let isn =
            (super::lb::maglev::flow_hash(6, *flow.src.ip(), flow.src.port(), *flow.dst.ip(), 53)
                >> 16) as u32;
        let mss = usize::from(info.mtu).saturating_sub(40).max(536);
        if t.flags & RST != 0 {
            return Ok(());
        }
        if t.flags & SYN != 0 {
            let opts = [2, 4, (mss >> 8) as u8, mss as u8];
            self.tcp_segment(&to, isn, t.seq.wrapping_add(1), SYN | ACK, &opts, &[]);
            return Ok(());
        }
        let client_next = t.seq.wrapping_add(payload.len() as u32);
        if !payload.is_empty() {
            // One whole query: its two-byte length, then the message.
            let len = payload
                .get(..2)
                .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])));
            if len != Some(payload.len() - 2) {
                return Err(DropReason::DnsMalformed);
            }
            let query = &payload[2..];
            let nets = self.t.task_networks(port);
            let mut answer = Vec::new();
            match self
                .t
                .dns
                .respond(nets, query, Transport::Tcp, self.now, &mut answer)
            {
                Outcome::Answered => self.c.events.dns_answered += 1,
                Outcome::Forward => {
                    if !super::dns::servfail(query, &mut answer) {
                        return Err(DropReason::DnsMalformed);
                    }
                }
                Outcome::Drop(_) => return Err(DropReason::DnsMalformed),
            }
            let mut stream = Vec::with_capacity(answer.len() + 2);
            stream.extend_from_slice(&(answer.len() as u16).to_be_bytes());
            stream.extend_from_slice(&answer);
            let mut seq = isn.wrapping_add(1);
            for chunk in stream.chunks(mss) {
                self.tcp_segment(&to, seq, client_next, ACK | PSH, &[], chunk);
                seq = seq.wrapping_add(chunk.len() as u32);
            }
            self.tcp_segment(&to, seq, client_next, FIN | ACK, &[], &[]);
            return Ok(());
        }
        if t.flags & FIN != 0 {
            // The client's FIN after ours: acknowledged; our sequence is what it acknowledges.
            self.tcp_segment(&to, t.ack, client_next.wrapping_add(1), ACK, &[], &[]);
        }
        Ok(())
    }

    /// Sends a TCP segment from the resolver address to the client of `to`.
    fn tcp_segment(
        &mut self,
        to: &DnsClient,
        seq: u32,
        ack: u32,
        flags: u8,
        opts: &[u8],
        data: &[u8],
    ) {
        let n = self.out.emit(Target::Port(to.port), |b| {
            nat::write_tcp(
                b,
                (to.client_mac, to.server_mac),
                to.server,
                to.client,
                (seq, ack, flags),
                u16::MAX,
                opts,
                data,
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

    use super::super::{Dataplane, Output, PortId, Tables, Target};
    use crate::topology::Topology;

    const TOPO: &str = r#"
[node]
name = "n"
data_path_addr = "192.0.2.10"
[[network]]
name = "net"
vni = 4097
subnet = "10.0.9.0/24"
gateway = "10.0.9.1"
[[endpoint]]
name = "client"
network = "net"
ip = "10.0.9.5"
[[endpoint]]
name = "web.1"
network = "net"
ip = "10.0.9.6"
task = "web.1.abc"
[[service]]
name = "web"
network = "net"
vip = "10.0.9.100"
tasks = ["web.1"]
"#;

    fn segment(seq: u32, ack: Option<u32>, syn: bool, fin: bool, data: &[u8]) -> Vec<u8> {
        let mut b = PacketBuilder::ethernet2([2, 0x42, 10, 0, 9, 5], [2, 0x42, 10, 0, 9, 1])
            .ipv4([10, 0, 9, 5], [10, 0, 9, 1], 64)
            .tcp(40000, 53, seq, 64240);
        if syn {
            b = b.syn();
        }
        if fin {
            b = b.fin();
        }
        if let Some(a) = ack {
            b = b.ack(a);
        }
        let mut v = Vec::new();
        b.write(&mut v, data).unwrap();
        v
    }

    /// (flags as SYN/ACK/FIN/PSH bits, seq, ack, payload) of every segment emitted.
    fn segments(out: &Output) -> Vec<(u8, u32, u32, Vec<u8>)> {
        out.iter()
            .map(|(t, f)| {
                assert_eq!(t, Target::Port(PortId(0)));
                let p = SlicedPacket::from_ethernet(f).unwrap();
                let Some(TransportSlice::Tcp(t)) = p.transport else {
                    panic!("not TCP")
                };
                let flags = u8::from(t.fin())
                    | u8::from(t.syn()) << 1
                    | u8::from(t.rst()) << 2
                    | u8::from(t.psh()) << 3
                    | u8::from(t.ack()) << 4;
                (
                    flags,
                    t.sequence_number(),
                    t.acknowledgment_number(),
                    t.payload().to_vec(),
                )
            })
            .collect()
    }

    #[test]
    fn dns_over_tcp_answers_a_whole_query_and_closes() {
        let tables = Tables::from_topology(&Topology::parse(TOPO, "t.toml").unwrap());
        let mut dp = Dataplane::new(Arc::new(tables));
        let mut out = Output::new();
        dp.from_port(
            1,
            PortId(0),
            &segment(1000, None, true, false, &[]),
            &mut out,
        );
        let synack = segments(&out);
        assert_eq!(synack.len(), 1);
        let (flags, isn, ack, _) = synack[0].clone();
        assert_eq!((flags, ack), (0x12, 1001), "SYN-ACK of the SYN");

        let query = simple_dns::Packet::new_query(7);
        let mut q = query.clone();
        q.questions.push(simple_dns::Question::new(
            simple_dns::Name::new_unchecked("web"),
            simple_dns::TYPE::A.into(),
            simple_dns::CLASS::IN.into(),
            false,
        ));
        let msg = q.build_bytes_vec().unwrap();
        let mut data = (msg.len() as u16).to_be_bytes().to_vec();
        data.extend_from_slice(&msg);
        out.clear();
        dp.from_port(
            2,
            PortId(0),
            &segment(1001, Some(isn + 1), false, false, &data),
            &mut out,
        );
        let segs = segments(&out);
        assert_eq!(segs.len(), 2, "the answer, then FIN");
        let (flags, seq, ack, stream) = segs[0].clone();
        assert_eq!(
            (flags & 0x18, seq, ack),
            (0x18, isn + 1, 1001 + data.len() as u32)
        );
        let len = usize::from(u16::from_be_bytes([stream[0], stream[1]]));
        assert_eq!(len, stream.len() - 2);
        let answer = simple_dns::Packet::parse(&stream[2..]).unwrap();
        assert_eq!(answer.id(), 7);
        let simple_dns::rdata::RData::A(a) = &answer.answers[0].rdata else {
            panic!("{answer:?}")
        };
        assert_eq!(
            std::net::Ipv4Addr::from(a.address),
            std::net::Ipv4Addr::new(10, 0, 9, 100)
        );
        assert_eq!(segs[1].0 & 0x01, 0x01, "FIN");
        assert_eq!(segs[1].1, isn + 1 + stream.len() as u32);

        // The client's FIN is acknowledged.
        out.clear();
        let fin_seq = 1001 + data.len() as u32;
        dp.from_port(
            3,
            PortId(0),
            &segment(
                fin_seq,
                Some(isn + 2 + stream.len() as u32),
                false,
                true,
                &[],
            ),
            &mut out,
        );
        let segs = segments(&out);
        assert_eq!((segs[0].0, segs[0].2), (0x10, fin_seq + 1));
        assert_eq!(dp.counters().total_drops(), 0);
    }
}
