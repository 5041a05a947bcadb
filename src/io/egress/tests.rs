//! Unprivileged tests: packets made by hand, the host side on 127.79.0.0/16.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use mio::{Events, Poll, Token};

use super::*;

const GW: Ipv4Addr = Ipv4Addr::new(10, 199, 0, 1);
const TASK: Ipv4Addr = Ipv4Addr::new(10, 199, 0, 2);
const HOST: Ipv4Addr = Ipv4Addr::new(127, 79, 0, 1);

fn engine(poll: &Poll) -> Egress {
    let mut e = Egress::new(
        EgressConfig {
            gateway: GW,
            prefix: 24,
            host_loopback: HOST,
            mtu: 1500,
            seed: 7,
            limits: Limits::default(),
        },
        0,
    );
    e.attach(poll.registry(), Token(1)).unwrap();
    e
}

fn now(start: Instant) -> Nanos {
    start.elapsed().as_nanos() as Nanos
}

/// Runs the engine until `done` holds for a packet it emitted, or 5 s pass.
fn run_until(
    e: &mut Egress,
    poll: &mut Poll,
    start: Instant,
    mut done: impl FnMut(&[u8]) -> bool,
) -> Option<Vec<u8>> {
    run_until_gso(e, poll, start, |p, _| done(p))
}

/// `run_until` that also sees each packet's segment size (an engine made `with_gso`).
fn run_until_gso(
    e: &mut Egress,
    poll: &mut Poll,
    start: Instant,
    mut done: impl FnMut(&[u8], Option<u16>) -> bool,
) -> Option<Vec<u8>> {
    let mut events = Events::with_capacity(8);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let mut found = None;
        e.handle_timeout_gso(now(start), &mut |p, gso| {
            if found.is_none() && done(p, gso) {
                found = Some(p.to_vec());
            }
        });
        if found.is_some() {
            return found;
        }
        let t = now(start);
        let wait = e
            .poll_timeout(t)
            .map(|at| Duration::from_nanos(at.saturating_sub(t)))
            .unwrap_or(Duration::from_millis(100))
            .min(Duration::from_millis(100));
        poll.poll(&mut events, Some(wait)).unwrap();
        if !events.is_empty() {
            e.host_ready();
        }
    }
    None
}

fn udp(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv4(src.ip().octets(), dst.ip().octets(), 64)
        .udp(src.port(), dst.port())
        .write(&mut v, payload)
        .unwrap();
    v
}

#[test]
fn udp_to_the_gateway_reaches_host_loopback_and_the_answer_comes_back() {
    let server = UdpSocket::bind((HOST, 0)).unwrap();
    let port = server.local_addr().unwrap().port();
    let mut poll = Poll::new().unwrap();
    let mut e = engine(&poll);
    let start = Instant::now();
    let task = SocketAddrV4::new(TASK, 40000);
    e.input(
        now(start),
        &udp(task, SocketAddrV4::new(GW, port), b"ping?"),
    );
    let mut buf = [0u8; 64];
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let (n, from) = server.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"ping?");
    server.send_to(b"pong!", from).unwrap();
    let reply = run_until(&mut e, &mut poll, start, |_| true).expect("an answer to the task");
    let p = SlicedPacket::from_ip(&reply).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not IPv4")
    };
    assert_eq!(
        ip.header().source_addr(),
        GW,
        "the host shows as the gateway"
    );
    assert_eq!(ip.header().destination_addr(), TASK);
    let Some(TransportSlice::Udp(u)) = &p.transport else {
        panic!("not UDP")
    };
    assert_eq!((u.source_port(), u.destination_port()), (port, 40000));
    assert_eq!(u.payload(), b"pong!");
    assert_eq!(e.flow_counts(), (0, 1, 0));
    let f = &e.flows()[0];
    assert_eq!((f.packets_out, f.packets_in, f.bytes_in), (1, 1, 5));
}

#[test]
fn a_refused_port_answers_the_syn_with_a_reset() {
    // A port nothing listens on: bind, learn the port, close.
    let port = TcpListener::bind((HOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut poll = Poll::new().unwrap();
    let mut e = engine(&poll);
    let start = Instant::now();
    let mut syn = Vec::new();
    PacketBuilder::ipv4(TASK.octets(), GW.octets(), 64)
        .tcp(40001, port, 1000, 64240)
        .syn()
        .write(&mut syn, b"")
        .unwrap();
    e.input(now(start), &syn);
    let rst = run_until(&mut e, &mut poll, start, |_| true).expect("an answer to the SYN");
    let p = SlicedPacket::from_ip(&rst).unwrap();
    let Some(TransportSlice::Tcp(t)) = &p.transport else {
        panic!("not TCP")
    };
    assert!(t.rst() && t.ack(), "RST+ACK");
    assert_eq!(t.acknowledgment_number(), 1001);
    assert_eq!((t.source_port(), t.destination_port()), (port, 40001));
    assert_eq!(e.stats().tcp_refused, 1);
    assert_eq!(e.flow_counts(), (0, 0, 0));
}

#[test]
fn packets_the_engine_does_not_carry_are_counted_by_reason() {
    let poll = Poll::new().unwrap();
    let mut e = engine(&poll);
    let other_task = SocketAddrV4::new(Ipv4Addr::new(10, 199, 0, 3), 53);
    let task = SocketAddrV4::new(TASK, 1);
    e.input(0, &udp(task, other_task, b"x"));
    e.input(
        0,
        &udp(task, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 53), b"x"),
    );
    e.input(
        0,
        &udp(
            task,
            SocketAddrV4::new(Ipv4Addr::new(10, 199, 0, 255), 53),
            b"x",
        ),
    );
    e.input(
        0,
        &udp(
            task,
            SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 1), 53),
            b"x",
        ),
    );
    e.input(
        0,
        &udp(
            SocketAddrV4::new(Ipv4Addr::new(10, 200, 0, 2), 1),
            SocketAddrV4::new(HOST, 53),
            b"x",
        ),
    );
    e.input(0, &[0x45, 0, 0]);
    e.input(0, &[0x60, 0, 0, 0]);
    assert_eq!(e.stats().drops(DropReason::Destination), 4);
    assert_eq!(e.stats().drops(DropReason::NotFromTask), 1);
    assert_eq!(e.stats().drops(DropReason::Malformed), 1);
    assert_eq!(e.stats().drops(DropReason::NotIpv4), 1);
    assert_eq!(e.flow_counts(), (0, 0, 0));
}

#[test]
fn udp_flows_are_bounded_and_expire() {
    let poll = Poll::new().unwrap();
    let mut cfg = engine(&poll).cfg;
    cfg.limits.udp_flows = 2;
    let mut e = Egress::new(cfg, 0);
    e.attach(poll.registry(), Token(1)).unwrap();
    let dst = SocketAddrV4::new(GW, 9);
    for port in 1..=3 {
        e.input(0, &udp(SocketAddrV4::new(TASK, port), dst, b"x"));
    }
    assert_eq!(e.flow_counts().1, 2);
    assert_eq!(e.stats().drops(DropReason::UdpFlowLimit), 1);
    let idle = e.config().limits.udp_idle;
    assert_eq!(e.poll_timeout(1), Some(idle));
    e.handle_timeout(idle, &mut |_| {});
    assert_eq!(e.flow_counts().1, 0);
}

/// Random and mangled bytes through the whole engine never panic.
#[test]
fn hostile_packets_never_panic() {
    let poll = Poll::new().unwrap();
    let mut e = engine(&poll);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut seeds = vec![udp(
        SocketAddrV4::new(TASK, 5),
        SocketAddrV4::new(GW, 9),
        b"abc",
    )];
    let mut syn = Vec::new();
    PacketBuilder::ipv4(TASK.octets(), GW.octets(), 64)
        .tcp(5, 9, 1, 100)
        .syn()
        .write(&mut syn, b"")
        .unwrap();
    seeds.push(syn);
    for seed in &seeds {
        for i in 0..seed.len() * 8 {
            let mut m = seed.clone();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            m[i % seed.len()] = x as u8;
            m.truncate(seed.len() - (x as usize >> 8) % 4);
            e.input(i as Nanos, &m);
        }
    }
    e.handle_timeout(1, &mut |_| {});
}

/// An engine made `with_gso` sends 64 KiB super-packets only on connections from a link that
/// takes them; a virtual task's connection (`input_from(.., false)`) gets segments of its MSS,
/// every TCP checksum whole.
#[test]
fn super_packets_go_only_to_links_that_take_them() {
    for gso_link in [true, false] {
        let listener = TcpListener::bind((HOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            std::io::Write::write_all(&mut c, &[7u8; 40_000]).unwrap();
            // Held open until the test has looked.
            let mut b = [0u8; 1];
            let _ = std::io::Read::read(&mut c, &mut b);
        });
        let mut poll = Poll::new().unwrap();
        let mut e = Egress::with_gso(engine(&poll).cfg, 0);
        e.attach(poll.registry(), Token(1)).unwrap();
        let start = Instant::now();
        let tcp = |seq: u32, ack: Option<u32>| {
            let b =
                PacketBuilder::ipv4(TASK.octets(), GW.octets(), 64).tcp(40002, port, seq, 64240);
            let b = match ack {
                Some(a) => b.ack(a),
                None => b
                    .syn()
                    .options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1400)])
                    .unwrap(),
            };
            let mut v = Vec::new();
            b.write(&mut v, b"").unwrap();
            v
        };
        e.input_from(now(start), &tcp(1000, None), gso_link);
        let syn_ack = run_until(&mut e, &mut poll, start, |p| {
            let p = SlicedPacket::from_ip(p).unwrap();
            matches!(&p.transport, Some(TransportSlice::Tcp(t)) if t.syn() && t.ack())
        })
        .expect("a SYN-ACK");
        let their_seq = match SlicedPacket::from_ip(&syn_ack).unwrap().transport {
            Some(TransportSlice::Tcp(t)) => t.sequence_number(),
            _ => unreachable!(),
        };
        e.input_from(now(start), &tcp(1001, Some(their_seq + 1)), gso_link);
        let mut largest = (0usize, None);
        run_until_gso(&mut e, &mut poll, start, |p, gso| {
            let sliced = SlicedPacket::from_ip(p).unwrap();
            let Some(TransportSlice::Tcp(t)) = &sliced.transport else {
                return false;
            };
            let Some(etherparse::NetSlice::Ipv4(ip)) = &sliced.net else {
                return false;
            };
            let n = t.payload().len();
            if n > largest.0 {
                largest = (n, gso);
            }
            if gso.is_none() && n > 0 {
                let (src, dst) = (ip.header().source(), ip.header().destination());
                let whole = t.calc_checksum_ipv4(src, dst).unwrap();
                assert_eq!(whole, t.checksum(), "a plain segment's checksum is whole");
            }
            largest.0 > 1400 || (!gso_link && n > 0)
        })
        .expect("data from the host");
        if gso_link {
            assert!(
                largest.0 > 1400,
                "one super-packet, not {} bytes",
                largest.0
            );
            assert_eq!(largest.1, Some(1400), "cut at the task's MSS by its link");
        } else {
            assert_eq!(largest, (1400, None), "segments of the task's MSS");
        }
        drop(e);
        server.join().unwrap();
    }
}

/// Connections one after another reuse the stack's closed sockets (no buffers allocated and
/// zeroed again), and each carries its own bytes from a clean state.
#[test]
fn closed_sockets_carry_the_next_connections() {
    let listener = TcpListener::bind((HOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        for i in 0..3u8 {
            let (mut c, _) = listener.accept().unwrap();
            std::io::Write::write_all(&mut c, &[b'a' + i; 3]).unwrap();
            let mut b = [0u8; 1];
            let _ = std::io::Read::read(&mut c, &mut b);
        }
    });
    let mut poll = Poll::new().unwrap();
    let mut e = engine(&poll);
    let start = Instant::now();
    let tcp = |sport: u16, seq: u32, ack: Option<u32>, rst: bool| {
        let b = PacketBuilder::ipv4(TASK.octets(), GW.octets(), 64).tcp(sport, port, seq, 64240);
        let b = match (ack, rst) {
            (_, true) => b.rst(),
            (Some(a), false) => b.ack(a),
            (None, false) => b.syn(),
        };
        let mut v = Vec::new();
        b.write(&mut v, b"").unwrap();
        v
    };
    let tcp_of = |p: &[u8]| match SlicedPacket::from_ip(p).ok()?.transport {
        Some(TransportSlice::Tcp(t)) => Some((t.syn(), t.sequence_number(), t.payload().to_vec())),
        _ => None,
    };
    for i in 0..3u16 {
        let sport = 41000 + i;
        e.input(now(start), &tcp(sport, 1000, None, false));
        let syn_ack = run_until(&mut e, &mut poll, start, |p| tcp_of(p).is_some_and(|t| t.0))
            .expect("a SYN-ACK");
        let their = tcp_of(&syn_ack).unwrap().1.wrapping_add(1);
        e.input(now(start), &tcp(sport, 1001, Some(their), false));
        let data = run_until(&mut e, &mut poll, start, |p| {
            tcp_of(p).is_some_and(|t| !t.2.is_empty())
        })
        .expect("the server's bytes");
        assert_eq!(
            tcp_of(&data).unwrap().2,
            vec![b'a' + i as u8; 3],
            "connection {i}"
        );
        e.input(now(start), &tcp(sport, 1001, None, true));
        e.handle_timeout(now(start), &mut |_| {});
        assert_eq!(
            e.flow_counts().0,
            0,
            "connection {i} ended with the task's RST"
        );
        assert_eq!(e.tcp.spare(), 1, "its socket kept for the next");
    }
    drop(e);
    server.join().unwrap();
}
