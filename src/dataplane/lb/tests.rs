//! The balancer in the core on hand-built frames: a handshake through a VIP and its answers,
//! spreading, a backend removed mid-flow, idle flows reset, no backend, ping.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

use super::super::*;
use crate::topology::Topology;
use crate::wire::MacAddr;

/// client (local port 0), web.1 local (port 1), web.2 and web.3 remote; my-web's VIP .100.
fn topo(tasks: &str) -> String {
    format!(
        r#"
[node]
name = "node-1"
data_path_addr = "192.0.2.10"

[[network]]
name = "net"
vni = 4097
subnet = "10.0.9.0/24"
gateway = "10.0.9.1"

[[endpoint]]
name = "client"
network = "net"
ip = "10.0.9.2"

[[endpoint]]
name = "web.1"
network = "net"
ip = "10.0.9.11"

[[endpoint]]
name = "web.2"
network = "net"
ip = "10.0.9.12"
vtep = "192.0.2.11"

[[endpoint]]
name = "web.3"
network = "net"
ip = "10.0.9.13"
vtep = "192.0.2.12"

[[service]]
name = "my-web"
network = "net"
vip = "10.0.9.100"
tasks = [{tasks}]
"#
    )
}

const ALL: &str = r#""web.1", "web.2", "web.3""#;
const S: u64 = 1_000_000_000;
const CLIENT: [u8; 4] = [10, 0, 9, 2];
const VIP: [u8; 4] = [10, 0, 9, 100];

fn tables(tasks: &str) -> Tables {
    Tables::from_topology(&Topology::parse(&topo(tasks), "t.toml").expect("topology"))
}

fn mac(ip: [u8; 4]) -> [u8; 6] {
    MacAddr::from_ipv4(ip.into()).0
}

/// A TCP segment from the client (port `sport`) to the VIP:80.
fn to_vip(sport: u16, seq: u32, ack: Option<u32>, syn: bool, payload: &[u8]) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(mac(CLIENT), mac(VIP))
        .ipv4(CLIENT, VIP, 64)
        .tcp(sport, 80, seq, 64240);
    if syn {
        b = b.syn();
    }
    if let Some(a) = ack {
        b = b.ack(a);
    }
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

/// A TCP segment from `backend`:80 to the client.
fn from_backend(backend: [u8; 4], dport: u16, seq: u32, ack: u32, syn: bool) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(mac(backend), mac(CLIENT))
        .ipv4(backend, CLIENT, 64)
        .tcp(80, dport, seq, 64240)
        .ack(ack);
    if syn {
        b = b.syn();
    }
    let mut v = Vec::new();
    b.write(&mut v, &[]).unwrap();
    v
}

/// The inner IPv4 destination of what was emitted (a local frame, or the frame inside VXLAN).
fn inner(target: Target, bytes: &[u8]) -> Vec<u8> {
    match target {
        Target::Port(_) => bytes.to_vec(),
        Target::Underlay(_) => bytes[28 + 8..].to_vec(),
        Target::Resolver(_) => panic!("a DNS query to forward"),
        Target::Egress(_) => panic!("a packet for the egress"),
    }
}

fn ip_dst(frame: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(frame[30], frame[31], frame[32], frame[33])
}

fn ip_src(frame: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(frame[26], frame[27], frame[28], frame[29])
}

/// Sends `frame` from the client's port; the one packet emitted, with its inner frame.
fn send(dp: &mut Dataplane, now: u64, frame: &[u8]) -> Option<(Target, Vec<u8>)> {
    let mut out = Output::new();
    dp.from_port(now, PortId(0), frame, &mut out);
    assert!(out.len() <= 1, "{} packets", out.len());
    let first = out.iter().next().map(|(t, b)| (t, inner(t, b)));
    first
}

fn tcp_ok(frame: &[u8]) -> bool {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else {
        return false;
    };
    let Some(TransportSlice::Tcp(t)) = p.transport else {
        return false;
    };
    let (src, dst) = (ip.header().source(), ip.header().destination());
    crate::wire::checksum::verify(ip.header().slice())
        && crate::wire::checksum::verify_transport_ipv4(&src, &dst, 6, t.slice())
}

#[test]
fn a_handshake_through_the_vip_and_its_answers() {
    let t = Arc::new(tables(ALL));
    let mut dp = Dataplane::new(Arc::clone(&t));
    // ARP for the VIP is answered with its MAC.
    assert_eq!(t.resolve_ip(NetId(0), VIP.into()), Some(MacAddr(mac(VIP))));
    let (target, syn) = send(&mut dp, S, &to_vip(40000, 1, None, true, b"")).unwrap();
    let backend = ip_dst(&syn);
    assert_ne!(backend, Ipv4Addr::from(VIP));
    assert!(tcp_ok(&syn), "DNATed SYN checksums");
    assert_eq!(&syn[..6], &mac(backend.octets()), "to the backend's MAC");
    match target {
        Target::Port(p) => assert_eq!((p, backend), (PortId(1), Ipv4Addr::new(10, 0, 9, 11))),
        Target::Underlay(u) => assert_eq!(
            u.addr,
            if backend.octets()[3] == 12 {
                Ipv4Addr::new(192, 0, 2, 11)
            } else {
                Ipv4Addr::new(192, 0, 2, 12)
            }
        ),
        Target::Resolver(_) => panic!("a DNS query to forward"),
        Target::Egress(_) => panic!("a packet for the egress"),
    }
    // Every later segment of the flow goes to the same backend.
    for i in 0..5 {
        let (_, f) = send(
            &mut dp,
            S + i,
            &to_vip(40000, 2, Some(501), false, b"GET /"),
        )
        .unwrap();
        assert_eq!(ip_dst(&f), backend);
    }
    // The answer comes back from the VIP, wherever the backend is.
    let mut out = Output::new();
    let answer = from_backend(backend.octets(), 40000, 500, 2, true);
    if backend.octets()[3] == 11 {
        dp.from_port(2 * S, PortId(1), &answer, &mut out);
    } else {
        let mut vx = vec![0x08, 0, 0, 0, 0, 0x10, 0x01, 0];
        vx.extend_from_slice(&answer);
        let vtep = if backend.octets()[3] == 12 {
            [192, 0, 2, 11]
        } else {
            [192, 0, 2, 12]
        };
        dp.from_underlay_udp(2 * S, vtep.into(), &vx, &mut out);
    }
    let (target, f) = out.iter().next().map(|(t, b)| (t, b.to_vec())).unwrap();
    assert_eq!(target, Target::Port(PortId(0)));
    assert_eq!(ip_src(&f), Ipv4Addr::from(VIP), "reverse NAT");
    assert_eq!(&f[6..12], &mac(VIP));
    assert!(tcp_ok(&f));
    let stats = t.conntrack.stats();
    assert_eq!(stats.len(), 1);
    assert_eq!(
        (stats[0].backend, stats[0].active, stats[0].connections),
        (backend, 1, 1)
    );
}

#[test]
fn new_flows_spread_over_every_backend() {
    let mut dp = Dataplane::new(Arc::new(tables(ALL)));
    let mut seen = std::collections::BTreeMap::new();
    for port in 0..300u16 {
        let (_, f) = send(&mut dp, S, &to_vip(30000 + port, 1, None, true, b"")).unwrap();
        *seen.entry(ip_dst(&f)).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    for n in seen.values() {
        assert!((80..=120).contains(n), "{seen:?}");
    }
}

#[test]
fn a_removed_backend_keeps_its_flow_until_drained_then_both_ends_get_a_rst() {
    let t = tables(ALL);
    let mut dp = Dataplane::new(Arc::new(t));
    // Find a client port whose flow lands on the local web.1.
    let port = (30000..31000u16)
        .find(|p| {
            let f = send(&mut dp, S, &to_vip(*p, 1, None, true, b"")).unwrap().1;
            ip_dst(&f) == Ipv4Addr::new(10, 0, 9, 11)
        })
        .unwrap();
    // Handshake answered, then acknowledged: both sides' next sequence numbers are known.
    let mut out = Output::new();
    dp.from_port(
        S,
        PortId(1),
        &from_backend([10, 0, 9, 11], port, 700, 2, true),
        &mut out,
    );
    send(&mut dp, S, &to_vip(port, 2, Some(701), false, b"")).unwrap();

    // web.1 leaves the service.
    let next = Tables::from_topology_after(
        &Topology::parse(&topo(r#""web.2", "web.3""#), "t.toml").unwrap(),
        dp.tables(),
    );
    dp.set_tables(Arc::new(next));
    // The established flow still reaches web.1, new flows do not.
    let (_, f) = send(&mut dp, 2 * S, &to_vip(port, 2, Some(701), false, b"x")).unwrap();
    assert_eq!(ip_dst(&f), Ipv4Addr::new(10, 0, 9, 11));
    for p in 40000..40050u16 {
        let (_, f) = send(&mut dp, 2 * S, &to_vip(p, 1, None, true, b"")).unwrap();
        assert_ne!(
            ip_dst(&f),
            Ipv4Addr::new(10, 0, 9, 11),
            "new flow to a removed backend"
        );
    }
    // Its answers still come from the VIP.
    out.clear();
    dp.from_port(
        2 * S,
        PortId(1),
        &from_backend([10, 0, 9, 11], port, 701, 3, false),
        &mut out,
    );
    assert_eq!(ip_src(out.iter().next().unwrap().1), Ipv4Addr::from(VIP));

    // The drain is noticed at the next scan and ends 10 s later with a RST to each end.
    out.clear();
    dp.handle_timeout(3 * S, &mut out);
    assert!(out.is_empty());
    out.clear();
    dp.handle_timeout(14 * S, &mut out);
    let rsts: Vec<(Target, Vec<u8>)> = out.iter().map(|(t, b)| (t, b.to_vec())).collect();
    let to_client = rsts
        .iter()
        .find(|(t, _)| *t == Target::Port(PortId(0)))
        .unwrap();
    let to_backend = rsts
        .iter()
        .find(|(t, _)| *t == Target::Port(PortId(1)))
        .unwrap();
    for (f, src, dst, seq) in [
        (&to_client.1, VIP, CLIENT, 701u32),
        (&to_backend.1, CLIENT, [10, 0, 9, 11], 3),
    ] {
        assert!(tcp_ok(f));
        assert_eq!((ip_src(f), ip_dst(f)), (src.into(), dst.into()));
        let p = SlicedPacket::from_ethernet(f).unwrap();
        let Some(TransportSlice::Tcp(t)) = p.transport else {
            panic!()
        };
        assert!(t.rst());
        assert_eq!(t.sequence_number(), seq);
    }
    assert_eq!(dp.counters().events.vip_resets, 2);
    let web1 = dp.tables().conntrack.stats();
    let web1 = web1
        .iter()
        .find(|s| s.backend == Ipv4Addr::new(10, 0, 9, 11))
        .unwrap();
    assert_eq!((web1.active, web1.connections), (0, 1));
}

#[test]
fn an_idle_flow_is_reset_after_900_seconds_not_before() {
    let mut dp = Dataplane::new(Arc::new(tables(r#""web.1""#)));
    send(&mut dp, S, &to_vip(40000, 1, None, true, b"")).unwrap();
    let mut out = Output::new();
    dp.from_port(
        S,
        PortId(1),
        &from_backend([10, 0, 9, 11], 40000, 700, 2, true),
        &mut out,
    );
    send(&mut dp, S, &to_vip(40000, 2, Some(701), false, b"")).unwrap();
    out.clear();
    dp.handle_timeout(899 * S, &mut out);
    assert!(out.is_empty());
    assert_eq!(dp.tables().conntrack.len(), 1);
    dp.handle_timeout(902 * S, &mut out);
    assert_eq!(out.len(), 2, "a RST to each end");
    assert_eq!(dp.tables().conntrack.len(), 0);
}

#[test]
fn no_backend_refuses_at_once_and_ping_is_answered() {
    let mut dp = Dataplane::new(Arc::new(tables("")));
    let (target, f) = send(&mut dp, S, &to_vip(40000, 9, None, true, b"")).unwrap();
    assert_eq!(target, Target::Port(PortId(0)));
    let p = SlicedPacket::from_ethernet(&f).unwrap();
    let Some(TransportSlice::Tcp(t)) = p.transport else {
        panic!()
    };
    assert!(t.rst() && t.ack() && t.acknowledgment_number() == 10);
    assert!(tcp_ok(&f));
    assert_eq!(dp.counters().dropped(DropReason::VipNoBackend), 1);

    let mut req = Vec::new();
    PacketBuilder::ethernet2(mac(CLIENT), mac(VIP))
        .ipv4(CLIENT, VIP, 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut req, b"hello")
        .unwrap();
    let (target, rep) = send(&mut dp, S, &req).unwrap();
    assert_eq!(target, Target::Port(PortId(0)));
    assert_eq!((ip_src(&rep), ip_dst(&rep)), (VIP.into(), CLIENT.into()));
    assert_eq!(dp.counters().events.vip_echo_replies, 1);
}

#[test]
fn garbage_to_a_vip_is_counted_never_a_panic() {
    let mut dp = Dataplane::new(Arc::new(tables(ALL)));
    let good = to_vip(40000, 1, None, true, b"abc");
    let mut out = Output::new();
    for cut in 0..good.len() {
        for flip in [None, Some(12), Some(23), Some(14 + 6), Some(34 + 12)] {
            let mut f = good[..cut].to_vec();
            if let Some(i) = flip.filter(|i| *i < f.len()) {
                f[i] ^= 0xff;
            }
            dp.from_port(S, PortId(0), &f, &mut out);
            out.clear();
        }
    }
    let _ = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
}

#[test]
fn a_backend_that_leaves_a_syn_unanswered_is_passed_over_at_the_retry() {
    let mut dp = Dataplane::new(Arc::new(tables(ALL)));
    // A flow that lands on web.2 (remote; its node is dead: nothing answers).
    let dead = Ipv4Addr::new(10, 0, 9, 12);
    let port = (30000..31000u16)
        .find(|p| {
            let mut probe = Dataplane::new(Arc::new(tables(ALL)));
            ip_dst(
                &send(&mut probe, S, &to_vip(*p, 1, None, true, b""))
                    .unwrap()
                    .1,
            ) == dead
        })
        .unwrap();
    let (_, f) = send(&mut dp, S, &to_vip(port, 1, None, true, b"")).unwrap();
    assert_eq!(ip_dst(&f), dead);
    // Linux sends the SYN again after 1 s: it goes to a live backend.
    let (_, f) = send(&mut dp, 2 * S, &to_vip(port, 1, None, true, b"")).unwrap();
    assert_ne!(ip_dst(&f), dead);
    // New flows that Maglev would give the dead backend go elsewhere while it is suspect.
    let mut fresh = Dataplane::new(Arc::new(tables(ALL)));
    let mut moved = 0;
    for p in 40000..40300u16 {
        let first = ip_dst(
            &send(&mut fresh, S, &to_vip(p, 1, None, true, b""))
                .unwrap()
                .1,
        );
        let now = ip_dst(
            &send(&mut dp, 3 * S, &to_vip(p, 1, None, true, b""))
                .unwrap()
                .1,
        );
        assert_ne!(now, dead, "port {p}");
        if first == dead {
            moved += 1;
        } else {
            assert_eq!(now, first, "flows of live backends keep their backend");
        }
    }
    assert!(moved > 50, "{moved}");
}

#[test]
fn a_direct_connection_on_the_ports_of_an_ended_vip_flow_is_left_alone() {
    let mut dp = Dataplane::new(Arc::new(tables(r#""web.1""#)));
    // A whole VIP flow to web.1 from port 40000: handshake, then FIN both ways.
    send(&mut dp, S, &to_vip(40000, 1, None, true, b"")).unwrap();
    let mut out = Output::new();
    dp.from_port(
        S,
        PortId(1),
        &from_backend([10, 0, 9, 11], 40000, 700, 2, true),
        &mut out,
    );
    send(&mut dp, S, &to_vip(40000, 2, Some(701), false, b"")).unwrap();
    let mut fin = from_backend([10, 0, 9, 11], 40000, 701, 2, false);
    fin[47] |= 0x01; // FIN
    crate::wire::ipv4::fill_checksum(&mut fin[14..34]);
    out.clear();
    dp.from_port(S, PortId(1), &fin, &mut out);
    let mut cfin = to_vip(40000, 2, Some(702), false, b"");
    cfin[47] |= 0x01;
    send(&mut dp, S, &cfin).unwrap();
    // Now the client connects to web.1 directly from the same port: the SYN-ACK is web.1's.
    out.clear();
    dp.from_port(
        2 * S,
        PortId(1),
        &from_backend([10, 0, 9, 11], 40000, 9000, 5001, true),
        &mut out,
    );
    let (_, f) = out.iter().next().unwrap();
    assert_eq!(
        ip_src(f),
        Ipv4Addr::new(10, 0, 9, 11),
        "not rewritten to the VIP"
    );
    // ... nor the rest of that connection.
    out.clear();
    dp.from_port(
        2 * S,
        PortId(1),
        &from_backend([10, 0, 9, 11], 40000, 9001, 5002, false),
        &mut out,
    );
    let (_, f) = out.iter().next().unwrap();
    assert_eq!(ip_src(f), Ipv4Addr::new(10, 0, 9, 11));
}

#[test]
fn the_last_ack_of_a_closed_vip_flow_still_comes_from_the_vip() {
    let mut dp = Dataplane::new(Arc::new(tables(r#""web.1""#)));
    send(&mut dp, S, &to_vip(40000, 1, None, true, b"")).unwrap();
    let mut out = Output::new();
    dp.from_port(
        S,
        PortId(1),
        &from_backend([10, 0, 9, 11], 40000, 700, 2, true),
        &mut out,
    );
    send(&mut dp, S, &to_vip(40000, 2, Some(701), false, b"")).unwrap();
    // The server closes first, then the client.
    let mut fin = from_backend([10, 0, 9, 11], 40000, 701, 2, false);
    fin[47] |= 0x01;
    out.clear();
    dp.from_port(S, PortId(1), &fin, &mut out);
    let mut cfin = to_vip(40000, 2, Some(702), false, b"");
    cfin[47] |= 0x01;
    send(&mut dp, S, &cfin).unwrap();
    // The server's ACK of the client's FIN.
    out.clear();
    dp.from_port(
        S,
        PortId(1),
        &from_backend([10, 0, 9, 11], 40000, 702, 3, false),
        &mut out,
    );
    let (_, f) = out.iter().next().unwrap();
    assert_eq!(ip_src(f), Ipv4Addr::from(VIP));
}

#[test]
fn pings_to_a_vip_in_one_batch_are_each_answered_whole() {
    let mut dp = Dataplane::new(Arc::new(tables(ALL)));
    let mut out = Output::new();
    for seq in 1..=3u16 {
        let mut req = Vec::new();
        PacketBuilder::ethernet2(mac(CLIENT), mac(VIP))
            .ipv4(CLIENT, VIP, 64)
            .icmpv4_echo_request(1, seq)
            .write(&mut req, &[seq as u8; 40])
            .unwrap();
        // Not cleared between packets: later answers land after earlier ones in the arena.
        dp.from_port(S, PortId(0), &req, &mut out);
    }
    assert_eq!(out.len(), 3);
    for (_, f) in out.iter() {
        assert_eq!((ip_src(f), ip_dst(f)), (VIP.into(), CLIENT.into()));
        assert!(crate::wire::checksum::verify(&f[14..34]));
        assert!(crate::wire::checksum::verify(&f[34..]), "ICMP checksum");
    }
}
