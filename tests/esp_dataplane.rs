//! Encrypted networks through the sans-IO core of two nodes: node-1 (192.0.2.10, my-web.1) and
//! node-2 (192.0.2.11, my-web.3) on one encrypted network. Every refusal of issue 5 is checked
//! by its counter, and nothing refused reaches a port.

use std::net::Ipv4Addr;
use std::sync::Arc;

use etherparse::PacketBuilder;
use swarmnet::dataplane::{
    esp, Dataplane, DropReason, Output, PortId, Tables, Target, UnderlayKind,
};
use swarmnet::topology::Topology;

const NODE1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const NODE2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
const WEB1_MAC: [u8; 6] = [0x02, 0x42, 0x0a, 0x00, 0x09, 0x02];
const WEB3_MAC: [u8; 6] = [0x02, 0x42, 0x0a, 0x00, 0x09, 0x03];
const K1: &str = "000102030405060708090a0b0c0d0e0f";
const K2: &str = "101112131415161718191a1b1c1d1e1f";
const K3: &str = "202122232425262728292a2b2c2d2e2f";
const K4: &str = "303132333435363738393a3b3c3d3e3f";

fn topology(
    me: &str,
    local: &str,
    remote: &str,
    keys: &[(u32, &str)],
    primary: u32,
    transport: &str,
) -> Topology {
    let (addr, peer) = if me == "node-1" {
        ("192.0.2.10", "192.0.2.11")
    } else {
        ("192.0.2.11", "192.0.2.10")
    };
    let ip = |name: &str| {
        if name == "my-web.1" {
            "10.0.9.2"
        } else {
            "10.0.9.3"
        }
    };
    let keys: Vec<String> = keys
        .iter()
        .map(|(t, k)| format!("{{ tag = {t}, key = \"{k}\" }}"))
        .collect();
    let text = format!(
        r#"[node]
name = "{me}"
data_path_addr = "{addr}"

[[network]]
name = "secure"
vni = 4097
subnet = "10.0.9.0/24"
gateway = "10.0.9.1"
encrypted = true

[[network]]
name = "plain"
vni = 4098
subnet = "10.0.10.0/24"
gateway = "10.0.10.1"

[encryption]
keys = [ {keys} ]
primary = {primary}
transport = "{transport}"
udp_port = 4500

[[endpoint]]
name = "{local}"
network = "secure"
ip = "{lip}"

[[endpoint]]
name = "{remote}"
network = "secure"
ip = "{rip}"
vtep = "{peer}"

[[endpoint]]
name = "db.1"
network = "plain"
ip = "10.0.10.2"
vtep = "{peer}"
"#,
        keys = keys.join(", "),
        lip = ip(local),
        rip = ip(remote),
    );
    Topology::parse(&text, "t.toml").expect("topology")
}

fn three_keys() -> Vec<(u32, &'static str)> {
    vec![(1, K1), (2, K2), (3, K3)]
}

struct Node {
    dp: Dataplane,
    port: PortId,
}

fn node(topo: &Topology) -> Node {
    let tables = Arc::new(Tables::from_topology(topo));
    let local = topo.local_endpoints().next().unwrap().name.clone();
    let port = tables.port_id(&local).unwrap();
    Node {
        dp: Dataplane::new(tables),
        port,
    }
}

fn pair(transport: &str) -> (Node, Node) {
    let a = topology(
        "node-1",
        "my-web.1",
        "my-web.3",
        &three_keys(),
        2,
        transport,
    );
    let b = topology(
        "node-2",
        "my-web.3",
        "my-web.1",
        &three_keys(),
        2,
        transport,
    );
    (node(&a), node(&b))
}

/// An ICMP echo from my-web.1 to my-web.3 with `size` bytes of data.
fn ping(seq: u16, size: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..size).map(|i| (i * 7 + 3) as u8).collect();
    let mut v = Vec::new();
    PacketBuilder::ethernet2(WEB1_MAC, WEB3_MAC)
        .ipv4([10, 0, 9, 2], [10, 0, 9, 3], 64)
        .icmpv4_echo_request(0x77, seq)
        .write(&mut v, &payload)
        .unwrap();
    v
}

/// What node `n` emits for a frame from its local port: the underlay datagrams.
fn send(n: &mut Node, frame: &[u8]) -> Vec<(Target, Vec<u8>)> {
    let mut out = Output::new();
    n.dp.from_port(0, n.port, frame, &mut out);
    out.iter().map(|(t, b)| (t, b.to_vec())).collect()
}

/// Frames node `n` delivers to its ports for an underlay datagram.
fn receive(n: &mut Node, datagram: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Output::new();
    n.dp.from_underlay_ipv4(0, datagram, &mut out);
    out.iter()
        .map(|(t, b)| {
            assert!(matches!(t, Target::Port(_)), "{t:?}");
            b.to_vec()
        })
        .collect()
}

fn one_underlay(n: &mut Node, frame: &[u8]) -> Vec<u8> {
    let out = send(n, frame);
    assert_eq!(out.len(), 1);
    out.into_iter().next().unwrap().1
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn drops(n: &Node) -> Vec<(&'static str, u64)> {
    n.dp.counters().drops_by_name().into_iter().collect()
}

#[test]
fn ip_transport_round_trip_without_cleartext() {
    let (mut a, mut b) = pair("ip");
    for seq in 1..=3 {
        let frame = ping(seq, 100);
        let out = send(&mut a, &frame);
        assert_eq!(out.len(), 1);
        let (target, datagram) = &out[0];
        let Target::Underlay(dst) = target else {
            panic!("{target:?}")
        };
        assert_eq!(dst.kind, UnderlayKind::EspIp);
        assert_eq!(dst.payload_offset(), 20);
        assert_eq!(dst.addr, NODE2);
        assert_eq!(datagram[9], 50, "IP protocol ESP");
        assert_eq!(&datagram[12..16], &NODE1.octets());
        let spi = u32::from_be_bytes(datagram[20..24].try_into().unwrap());
        assert_eq!(
            spi,
            esp::spi(NODE1, NODE2, 2),
            "sealed with the primary key"
        );
        let seq_low = u32::from_be_bytes(datagram[24..28].try_into().unwrap());
        assert_eq!(seq_low, u32::from(seq), "sequence numbers start at 1");
        assert!(
            !contains(datagram, &frame[14..]),
            "no cleartext on the wire"
        );
        assert_eq!(receive(&mut b, datagram), vec![frame]);
    }
    assert!(drops(&b).is_empty(), "{:?}", drops(&b));
}

#[test]
fn udp_transport_round_trip_through_both_entry_points() {
    let (mut a, mut b) = pair("udp");
    let frame = ping(1, 64);
    let out = send(&mut a, &frame);
    let (Target::Underlay(dst), datagram) = &out[0] else {
        panic!()
    };
    assert_eq!(dst.kind, UnderlayKind::EspUdp);
    assert_eq!((dst.port, dst.src_port), (4500, 4500));
    assert_eq!(dst.payload_offset(), 28);
    assert_eq!(datagram[9], 17);
    assert_eq!(&datagram[20..24], &[0x11, 0x94, 0x11, 0x94], "4500 -> 4500");
    assert_eq!(&datagram[26..28], &[0, 0], "RFC 3948: checksum zero");
    assert!(!contains(datagram, &frame[14..]));
    assert_eq!(receive(&mut b, datagram), vec![frame.clone()]);
    // What a UDP socket bound to 4500 yields.
    let frame2 = ping(2, 64);
    let out = send(&mut a, &frame2);
    let mut delivered = Output::new();
    b.dp.from_underlay_esp_udp(0, NODE1, &out[0].1[28..], &mut delivered);
    assert_eq!(delivered.iter().next().unwrap().1, &frame2[..]);
    // A NAT-keepalive and an IKE packet are not data.
    b.dp.from_underlay_esp_udp(0, NODE1, &[0xff], &mut Output::new());
    b.dp.from_underlay_esp_udp(0, NODE1, &[0, 0, 0, 0, 1, 2, 3], &mut Output::new());
    assert_eq!(drops(&b), vec![("not_vxlan", 2)]);
}

#[test]
fn unencrypted_network_of_the_same_node_stays_vxlan() {
    let (mut a, _) = pair("ip");
    // db.1 is remote on the plain network; no local port there, so go through the tables.
    let t = a.dp.tables();
    assert!(t.esp.as_ref().unwrap().encrypts(4097));
    assert!(!t.esp.as_ref().unwrap().encrypts(4098));
    let frame = ping(1, 10);
    let out = send(&mut a, &frame);
    assert_ne!(
        out[0].1[9], 17,
        "the encrypted network is not cleartext VXLAN"
    );
}

#[test]
fn full_size_packet_fits_1500() {
    for (transport, mtu) in [("ip", 1416), ("udp", 1408)] {
        let (mut a, mut b) = pair(transport);
        let net = &a.dp.tables().networks[0];
        assert_eq!(net.mtu, mtu, "{transport}");
        let frame = ping(1, usize::from(mtu) - 28);
        assert_eq!(frame.len(), 14 + usize::from(mtu));
        let datagram = one_underlay(&mut a, &frame);
        assert_eq!(datagram.len(), 1500, "{transport}");
        assert_eq!(receive(&mut b, &datagram), vec![frame]);
        // One byte more: ICMP "fragmentation needed" back to the task, nothing on the wire.
        let too_big = ping(2, usize::from(mtu) - 27);
        let out = send(&mut a, &too_big);
        assert!(out.iter().all(|(t, _)| matches!(t, Target::Port(_))));
    }
}

#[test]
fn tampered_packets_fail_authentication_and_deliver_nothing() {
    let (mut a, mut b) = pair("ip");
    let datagram = one_underlay(&mut a, &ping(1, 200));
    // Every byte after the SPI and sequence number: IV, ciphertext, ICV.
    for i in 28..datagram.len() {
        let mut bad = datagram.clone();
        bad[i] ^= 0x40;
        assert!(receive(&mut b, &bad).is_empty(), "byte {i}");
    }
    assert_eq!(drops(&b), vec![("esp_auth", (datagram.len() - 28) as u64)]);
    // The genuine packet still opens: failed forgeries did not move the window.
    assert_eq!(receive(&mut b, &datagram).len(), 1);
}

#[test]
fn replays_are_refused() {
    let (mut a, mut b) = pair("ip");
    let first = one_underlay(&mut a, &ping(1, 10));
    let second = one_underlay(&mut a, &ping(2, 10));
    assert_eq!(receive(&mut b, &second).len(), 1);
    assert_eq!(
        receive(&mut b, &first).len(),
        1,
        "reordered, inside the window"
    );
    assert!(receive(&mut b, &first).is_empty());
    assert!(receive(&mut b, &second).is_empty());
    // Far behind the window.
    let old = one_underlay(&mut a, &ping(3, 10));
    for s in 4..1100 {
        let d = one_underlay(&mut a, &ping(s, 10));
        if s == 1099 {
            assert_eq!(receive(&mut b, &d).len(), 1);
        }
    }
    assert!(receive(&mut b, &old).is_empty(), "older than 1024 packets");
    assert_eq!(drops(&b), vec![("esp_replay", 3)]);
}

#[test]
fn wrong_key_and_unknown_spi() {
    let a_topo = topology("node-1", "my-web.1", "my-web.3", &three_keys(), 2, "ip");
    let mut a = node(&a_topo);
    // node-2 has another key under tag 2: same SPI, the ICV cannot verify.
    let b_topo = topology(
        "node-2",
        "my-web.3",
        "my-web.1",
        &[(1, K1), (2, K4), (3, K3)],
        2,
        "ip",
    );
    let mut b = node(&b_topo);
    let d = one_underlay(&mut a, &ping(1, 10));
    assert!(receive(&mut b, &d).is_empty());
    assert_eq!(drops(&b), vec![("esp_auth", 1)]);
    // node-2 without tag 2 at all: the SPI names no SA.
    let c_topo = topology("node-2", "my-web.3", "my-web.1", &[(3, K3)], 3, "ip");
    let mut c = node(&c_topo);
    assert!(receive(&mut c, &d).is_empty());
    assert_eq!(drops(&c), vec![("esp_unknown_spi", 1)]);
    // ESP from an address that is no VTEP at all: refused as such, before any SA lookup.
    let mut from_stranger = d.clone();
    from_stranger[12..16].copy_from_slice(&[192, 0, 2, 99]);
    fix_ip_checksum(&mut from_stranger);
    assert!(receive(&mut c, &from_stranger).is_empty());
    assert_eq!(drops(&c), vec![("esp_unknown_spi", 1), ("unknown_vtep", 1)]);
}

fn fix_ip_checksum(d: &mut [u8]) {
    swarmnet::wire::ipv4::fill_checksum(&mut d[..20]);
}

#[test]
fn cleartext_vxlan_for_an_encrypted_vni_is_refused() {
    let (_, mut b) = pair("ip");
    let frame = ping(1, 10);
    let mut vx = vec![0x08, 0, 0, 0, 0x00, 0x10, 0x01, 0]; // VNI 4097
    vx.extend_from_slice(&frame);
    let mut datagram = Vec::new();
    PacketBuilder::ipv4(NODE1.octets(), NODE2.octets(), 64)
        .udp(51000, 4789)
        .write(&mut datagram, &vx)
        .unwrap();
    assert!(receive(&mut b, &datagram).is_empty());
    let mut out = Output::new();
    b.dp.from_underlay_udp(0, NODE1, &vx, &mut out);
    assert!(out.is_empty());
    assert_eq!(drops(&b), vec![("cleartext_on_encrypted", 2)]);
}

#[test]
fn rotation_during_a_transfer_loses_nothing() {
    // Docker's order: every node installs the new key for receiving first, then the primary
    // moves, then the oldest key is pruned. Packets in flight under the old primary, and
    // packets sealed by a node that switched earlier than its peer, all open.
    let ring = |keys: &[(u32, &'static str)], p| {
        (
            topology("node-1", "my-web.1", "my-web.3", keys, p, "ip"),
            topology("node-2", "my-web.3", "my-web.1", keys, p, "ip"),
        )
    };
    let (ta, tb) = ring(&three_keys(), 2);
    let mut a = node(&ta);
    let mut b = node(&tb);
    let mut in_flight = Vec::new();
    let mut sent = 0u16;
    let mut delivered = 0usize;
    let mut step = |a: &mut Node, b: &mut Node, in_flight: &mut Vec<Vec<u8>>, n: usize| {
        for _ in 0..n {
            sent += 1;
            in_flight.push(one_underlay(a, &ping(sent, 32)));
        }
        // Deliver all but the last two: they stay in flight across the next change.
        let keep = in_flight.split_off(in_flight.len().saturating_sub(2));
        for d in in_flight.drain(..) {
            delivered += receive(b, &d).len();
        }
        *in_flight = keep;
    };
    let swap = |n: &mut Node, t: &Topology| {
        let next = Tables::from_topology_after(t, n.dp.tables());
        n.dp.set_tables(Arc::new(next));
    };
    step(&mut a, &mut b, &mut in_flight, 10);
    // 1. Receivers install key 4 (ring 2,3,4 with primary still 2 on node-2 first).
    let (_, tb2) = ring(&[(2, K2), (3, K3), (4, K4)], 2);
    swap(&mut b, &tb2);
    step(&mut a, &mut b, &mut in_flight, 10);
    // 2. node-1 moves its primary to 3 and prunes 1 while node-2 still seals with 2.
    let (ta3, _) = ring(&[(2, K2), (3, K3), (4, K4)], 3);
    swap(&mut a, &ta3);
    step(&mut a, &mut b, &mut in_flight, 10);
    // 3. node-2 follows.
    let (_, tb3) = ring(&[(2, K2), (3, K3), (4, K4)], 3);
    swap(&mut b, &tb3);
    step(&mut a, &mut b, &mut in_flight, 10);
    for d in in_flight.drain(..) {
        delivered += receive(&mut b, &d).len();
    }
    assert_eq!(delivered, 40, "zero loss across the rotation");
    assert!(drops(&b).is_empty(), "{:?}", drops(&b));
    // The primary changed on the wire.
    let d = one_underlay(&mut a, &ping(99, 8));
    assert_eq!(
        u32::from_be_bytes(d[20..24].try_into().unwrap()),
        esp::spi(NODE1, NODE2, 3)
    );
}

#[test]
fn swapping_tables_keeps_sequence_numbers() {
    let (ta, _) = (
        topology("node-1", "my-web.1", "my-web.3", &three_keys(), 2, "ip"),
        (),
    );
    let mut a = node(&ta);
    for s in 1..=5 {
        one_underlay(&mut a, &ping(s, 8));
    }
    let next = Tables::from_topology_after(&ta, a.dp.tables());
    a.dp.set_tables(Arc::new(next));
    let d = one_underlay(&mut a, &ping(6, 8));
    assert_eq!(
        u32::from_be_bytes(d[24..28].try_into().unwrap()),
        6,
        "no IV reuse after a table swap"
    );
}

#[test]
fn workers_share_sequence_numbers_and_the_replay_window() {
    // Two sending workers on node-1 share its SAs; three receiving workers on node-2 open the
    // packets (and a duplicate of each) out of order: each is delivered exactly once.
    let (a, b) = pair("ip");
    let ta = Arc::clone(a.dp.tables());
    let tb = Arc::clone(b.dp.tables());
    let port = a.port;
    let senders: Vec<_> = (0..2)
        .map(|w| {
            let t = Arc::clone(&ta);
            std::thread::spawn(move || {
                let mut dp = Dataplane::new(t);
                let mut v = Vec::new();
                for s in 0..500u16 {
                    let mut out = Output::new();
                    dp.from_port(0, port, &ping(w * 1000 + s, 16), &mut out);
                    v.push(out.iter().next().unwrap().1.to_vec());
                }
                v
            })
        })
        .collect();
    let mut packets: Vec<Vec<u8>> = senders
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let mut seqs: Vec<u32> = packets
        .iter()
        .map(|d| u32::from_be_bytes(d[24..28].try_into().unwrap()))
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=1000).collect::<Vec<_>>(), "one IV per packet");
    let dupes = packets.clone();
    packets.extend(dupes);
    packets.reverse();
    let packets = Arc::new(packets);
    let receivers: Vec<_> = (0..3)
        .map(|w| {
            let t = Arc::clone(&tb);
            let packets = Arc::clone(&packets);
            std::thread::spawn(move || {
                let mut dp = Dataplane::new(t);
                let mut out = Output::new();
                for d in packets.iter().skip(w).step_by(3) {
                    dp.from_underlay_ipv4(0, d, &mut out);
                }
                (out.len(), dp.counters().dropped(DropReason::EspReplay))
            })
        })
        .collect();
    let (delivered, replays) = receivers
        .into_iter()
        .map(|h| h.join().unwrap())
        .fold((0, 0), |acc, r| (acc.0 + r.0, acc.1 + r.1));
    assert_eq!(delivered, 1000);
    assert_eq!(replays, 1000);
}

/// xorshift64*: deterministic noise for the robustness test (the core draws no randomness).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn hostile_bytes_never_panic_and_never_deliver() {
    let (mut a, mut b) = pair("udp");
    let genuine = one_underlay(&mut a, &ping(1, 64));
    // Delivered first, so that a mutation the ICV does not cover (the outer UDP checksum,
    // bytes past the IP total length) is a replay rather than a second delivery.
    assert_eq!(receive(&mut b, &genuine).len(), 1);
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let mut out = Output::new();
    for round in 0..20_000 {
        out.clear();
        let len = (noise.next() % 200) as usize;
        let junk = noise.bytes(len);
        // Random bytes on each entry point.
        b.dp.from_underlay_esp_udp(0, NODE1, &junk, &mut out);
        b.dp.from_underlay_udp(0, NODE1, &junk, &mut out);
        // Random ESP behind a valid outer header, as protocol 50 and in UDP.
        let mut d = genuine[..20].to_vec();
        d[9] = if round % 2 == 0 { 50 } else { 17 };
        if round % 2 == 1 {
            d.extend_from_slice(&[0x11, 0x94, 0x11, 0x94]);
            d.extend_from_slice(&((8 + len) as u16).to_be_bytes());
            d.extend_from_slice(&[0, 0]);
        }
        d.extend_from_slice(&junk);
        let total = d.len() as u16;
        d[2..4].copy_from_slice(&total.to_be_bytes());
        fix_ip_checksum(&mut d);
        b.dp.from_underlay_ipv4(0, &d, &mut out);
        // The genuine packet with a few bytes changed, truncated or extended.
        let mut m = genuine.clone();
        for _ in 0..1 + noise.next() % 4 {
            let i = (noise.next() as usize) % m.len();
            m[i] ^= 1 << (noise.next() % 8);
        }
        match noise.next() % 3 {
            0 => m.truncate((noise.next() as usize) % m.len()),
            1 => {
                let n = (noise.next() % 8) as usize;
                m.extend(noise.bytes(n));
            }
            _ => {}
        }
        b.dp.from_underlay_ipv4(0, &m, &mut out);
        let _ = esp::Sa::new(NODE1, NODE2, 2, &[0; 16]).check_and_open(&mut m[..]);
        let _ = swarmnet::wire::esp::Trailer::parse(&junk);
        assert!(out.is_empty(), "round {round}: hostile input delivered");
    }
    // And the SA still works.
    let next = one_underlay(&mut a, &ping(2, 64));
    assert_eq!(receive(&mut b, &next).len(), 1);
}
