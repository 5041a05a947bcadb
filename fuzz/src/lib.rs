//! Fuzz target bodies, kept apart from libFuzzer so that stable Rust can run them too.
//!
//! `fuzz_targets/*.rs` hand libFuzzer's input to these functions; the root crate's
//! `tests/robustness.rs` includes this file and feeds it generated and captured packets. Each
//! function panics only when the core breaks a promise its users rely on:
//! - every input is forwarded or counted as exactly one drop (a drop may come with an ICMP
//!   "fragmentation needed" answer, which is the only emission a dropped packet may cause);
//! - frames for ports are whole Ethernet frames (14 bytes or more);
//! - underlay datagrams parse as IPv4/UDP/VXLAN to the data-path port with the network's VNI;
//! - checked wire views never panic once `new_checked` succeeded, and `Repr`s round-trip.

use std::net::Ipv4Addr;
use std::sync::{Arc, OnceLock};

pub mod surfaces;

use swarmnet::dataplane::{Counters, Dataplane, DropReason, Output, PortId, Tables, Target};
use swarmnet::topology::Topology;
use swarmnet::wire::{arp, checksum, icmp, ipv4, vxlan, MacAddr};

/// One network (VNI 4097, MTU 1450), two local tasks and one remote task; service web's VIP
/// 10.0.9.100 balances over my-web.2 and the remote task.
pub const TOPOLOGY: &str = r#"
[node]
name = "node-1"
data_path_addr = "192.0.2.10"

[[network]]
name = "my-network"
vni = 4097
subnet = "10.0.9.0/24"
gateway = "10.0.9.1"
mtu = 1450

[[endpoint]]
name = "my-web.1"
network = "my-network"
ip = "10.0.9.2"

[[endpoint]]
name = "my-web.2"
network = "my-network"
ip = "10.0.9.4"

[[endpoint]]
name = "peer"
network = "my-network"
ip = "10.0.9.3"
vtep = "192.0.2.11"

[[service]]
name = "web"
network = "my-network"
vip = "10.0.9.100"
tasks = ["my-web.2", "peer"]
"#;

const VNI: u32 = 4097;
const LOCAL_VTEP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const PEER_VTEP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
/// An address that is no VTEP of any network.
const STRANGER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
const DATA_PATH_PORT: u16 = 4789;

/// The tables of `TOPOLOGY`, built once.
pub fn tables() -> Arc<Tables> {
    static TABLES: OnceLock<Arc<Tables>> = OnceLock::new();
    TABLES
        .get_or_init(|| {
            let topo = Topology::parse(TOPOLOGY, "fuzz.toml").expect("fixed topology is valid");
            Arc::new(Tables::from_topology(&topo))
        })
        .clone()
}

/// Fresh tables of `TOPOLOGY` with its network encrypted (ESP in UDP, one fixed key): fresh,
/// because the outbound sequence numbers live in them (the topology is parsed once).
pub fn encrypted_tables() -> Arc<Tables> {
    static TOPO: OnceLock<Topology> = OnceLock::new();
    let topo = TOPO.get_or_init(|| {
        let text = TOPOLOGY.replacen(
            "mtu = 1450\n",
            "mtu = 1390\nencrypted = true\n\n[encryption]\nkeys = [ { tag = 1, key = \"000102030405060708090a0b0c0d0e0f\" } ]\nprimary = 1\ntransport = \"udp\"\n",
            1,
        );
        let topo = Topology::parse(&text, "fuzz.toml").expect("fixed topology is valid");
        assert!(topo.networks.iter().all(|n| n.encrypted));
        topo
    });
    Arc::new(Tables::from_topology(topo))
}

/// Destination MACs a fuzzer would hardly guess: the tasks', broadcast.
fn known_mac(choice: u8) -> MacAddr {
    match choice % 4 {
        0 => MacAddr::from_ipv4(Ipv4Addr::new(10, 0, 9, 3)),
        1 => MacAddr::from_ipv4(Ipv4Addr::new(10, 0, 9, 4)),
        2 => MacAddr::from_ipv4(Ipv4Addr::new(10, 0, 9, 2)),
        _ => MacAddr::BROADCAST,
    }
}

/// The node's own addresses on the network: the VIP's MAC (the balancer) or the gateway's
/// (the resolver).
fn node_mac(gateway: bool) -> MacAddr {
    let last = if gateway { 1 } else { 100 };
    MacAddr::from_ipv4(Ipv4Addr::new(10, 0, 9, last))
}

/// A frame from a port. The first byte steers: bits 0-1 the port id (2 and 3 are unknown
/// ports); bit 2 writes the port's own source MAC, to get past the spoofing check; bit 3 with
/// bit 2 also writes a known destination MAC, chosen by bits 4-5, or with bit 6 the VIP's
/// (bit 7 clear) or the gateway's (bit 7 set).
pub fn from_port(data: &[u8]) {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let t = tables();
    let port = PortId(u32::from(ctl & 0x3));
    let mut frame = Vec::with_capacity(rest.len() + 12);
    match t.port(port) {
        Some(p) if ctl & 0x4 != 0 => {
            let (dst, body) = if ctl & 0x48 == 0x48 {
                (node_mac(ctl & 0x80 != 0).0.to_vec(), rest)
            } else if ctl & 0x8 != 0 {
                (known_mac(ctl >> 4).0.to_vec(), rest)
            } else {
                let n = rest.len().min(6);
                (rest[..n].to_vec(), &rest[n..])
            };
            frame.extend_from_slice(&dst);
            frame.resize(6, 0);
            frame.extend_from_slice(&p.mac.0);
            frame.extend_from_slice(body);
        }
        _ => frame.extend_from_slice(rest),
    }
    let mut dp = Dataplane::new(t.clone());
    let mut out = Output::new();
    dp.from_port(0, port, &frame, &mut out);
    check_outcome(dp.counters(), &out, "from_port");
    check_from_port_emitted(&t, &out);
    // Only answers (ARP replies, ICMP, the embedded DNS's, a VIP's ping answer or refusal) go
    // back to the port a frame came from.
    let c = dp.counters();
    let answered = c.events.arp_replies
        + c.events.icmp_frag_needed
        + c.events.dns_answered
        + c.events.vip_echo_replies
        + c.events.vip_resets;
    let first = out.iter().next().map(|(target, _)| target);
    if let (Some(Target::Port(q)), 0) = (first, answered) {
        assert_ne!(q, port, "a forwarded frame went back to its own port");
    };
}

/// A frame from a TAP with offloads: a virtio-net header, then the frame, as `from_port_vnet`
/// takes them. The first byte steers as in `from_port` (bits 0-3); bit 6 wraps the rest in a
/// valid Ethernet/IPv4/TCP super-frame to the remote task (its first two bytes are the
/// segment size, the next one the IPv4 header's options length in words) with a TCPv4 GSO
/// header; bit 7 sets NEEDS_CSUM with checksum start and offset from the next four bytes.
/// Without bit 6 the virtio-net header is the next ten bytes as they come. Promises: no
/// panic; what comes out is what `from_port` may emit; one super-frame becomes at most as
/// many packets as 32-byte segments fit into an IPv4 datagram (2048), each with at most one
/// ICMP answer or its fragments. Returns how many packets came out.
pub fn from_port_vnet(data: &[u8]) -> usize {
    let Some((&ctl, rest)) = data.split_first() else {
        return 0;
    };
    let t = tables();
    let port = PortId(u32::from(ctl & 0x3));
    let own = t.port(port).map(|p| p.mac);
    let src = match own {
        Some(mac) if ctl & 0x4 != 0 => mac,
        _ => MacAddr([2, 0, 0, 0, 0, 1]),
    };
    let dst = if ctl & 0x8 != 0 {
        known_mac(ctl >> 4)
    } else {
        MacAddr::from_ipv4(Ipv4Addr::new(10, 0, 9, 3))
    };
    let take = |rest: &[u8], n: usize| -> (Vec<u8>, Vec<u8>) {
        let n = n.min(rest.len());
        (rest[..n].to_vec(), rest[n..].to_vec())
    };
    let (mut hdr, frame) = if ctl & 0x40 != 0 {
        let (params, payload) = take(rest, 3);
        let mss = match params.get(..2) {
            Some(b) => u16::from_be_bytes([b[0], b[1]]),
            None => 1398,
        };
        let opt_words = params.get(2).map_or(0, |w| usize::from(w % 11));
        let ihl = 20 + 4 * opt_words;
        let mut f = Vec::with_capacity(14 + ihl + 20 + payload.len());
        f.extend_from_slice(&dst.0);
        f.extend_from_slice(&src.0);
        f.extend_from_slice(&ipv4::ETHERTYPE.to_be_bytes());
        let total = (ihl + 20 + payload.len()).min(usize::from(u16::MAX)) as u16;
        let mut ip = vec![0u8; ihl];
        ip[0] = 0x40 | (ihl / 4) as u8;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[6] = 0x40; // DF, as TCP sends
        ip[8] = 64;
        ip[9] = ipv4::PROTO_TCP;
        ip[12..16].copy_from_slice(&[10, 0, 9, 2]);
        ip[16..20].copy_from_slice(&[10, 0, 9, 3]);
        ipv4::fill_checksum(&mut ip);
        f.extend_from_slice(&ip);
        let mut tcp = [0u8; 20];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = 0x18; // ACK, PSH
        f.extend_from_slice(&tcp);
        f.extend_from_slice(&payload);
        let hdr = swarmnet::wire::vnet::Repr {
            gso_type: swarmnet::wire::vnet::GSO_TCPV4,
            gso_size: mss,
            hdr_len: (14 + ihl + 20) as u16,
            ..Default::default()
        };
        (hdr, f)
    } else {
        let (raw, f) = take(rest, swarmnet::wire::vnet::HEADER_LEN);
        let mut buf = [0u8; swarmnet::wire::vnet::HEADER_LEN];
        buf[..raw.len()].copy_from_slice(&raw);
        match swarmnet::wire::vnet::Repr::parse(&buf) {
            Ok(h) => (h, f),
            Err(_) => (Default::default(), f),
        }
    };
    let mut frame = frame;
    if ctl & 0x80 != 0 {
        let (c, f) = take(&frame, 4);
        if let [a, b, c0, d] = c[..] {
            hdr.flags |= swarmnet::wire::vnet::FLAG_NEEDS_CSUM;
            hdr.csum_start = u16::from_be_bytes([a, b]) % 128;
            hdr.csum_offset = u16::from_be_bytes([c0, d]) % 32;
        }
        frame = f;
    }
    let mut raw = [0u8; swarmnet::wire::vnet::HEADER_LEN];
    hdr.emit(&mut raw);

    let mut dp = Dataplane::new(t.clone());
    let mut out = Output::new();
    dp.from_port_vnet(0, port, &raw, &frame, &mut out);
    let c = dp.counters();
    assert!(
        out.len() + c.total_drops() as usize >= 1,
        "from_port_vnet: input neither emitted nor dropped"
    );
    assert!(
        out.len() <= 2 * 2048,
        "from_port_vnet: one frame fanned out into {} packets",
        out.len()
    );
    check_from_port_emitted(&t, &out);
    // With tunnel GSO on, what leaves is the same, datagram for datagram, and so are the counts.
    let mut whole = Dataplane::new(t.clone());
    whole.set_tunnel_gso(true);
    let mut out_whole = Output::new();
    whole.from_port_vnet(0, port, &raw, &frame, &mut out_whole);
    assert!(
        sent(&out_whole, &frame) == sent(&out, &[]),
        "from_port_vnet: tunnel GSO changed what leaves"
    );
    assert!(
        whole.counters() == dp.counters(),
        "from_port_vnet: tunnel GSO changed the counters"
    );
    // On an encrypted network each segment is sealed straight from the burst: the same
    // datagrams, under the same sequence numbers, and the same counts as switching each.
    let mut sealed = [Output::new(), Output::new()];
    let mut counts = Vec::new();
    for (on, o) in sealed.iter_mut().enumerate() {
        let mut dp = Dataplane::new(encrypted_tables());
        dp.set_tunnel_gso(on == 1);
        dp.from_port_vnet(0, port, &raw, &frame, o);
        assert!(
            o.iter_meta().all(|(_, m, _)| m.gso.is_none()),
            "from_port_vnet: a sealed burst left whole"
        );
        counts.push(dp.counters().clone());
    }
    // Whole items, outer IPv4 headers (identification, length) included.
    let whole_items = |o: &Output| o.iter().map(|(t, b)| (t, b.to_vec())).collect::<Vec<_>>();
    assert!(
        whole_items(&sealed[1]) == whole_items(&sealed[0]),
        "from_port_vnet: sealing from the burst changed what leaves"
    );
    assert!(
        counts[0] == counts[1],
        "from_port_vnet: sealing from the burst changed the counters"
    );
    out.len()
}

/// What a runtime sends for `out`, emitted from `input`: frames for ports as they are, each
/// underlay item's socket payload, tunnelled super-frames cut from `input` as the worker cuts
/// them.
fn sent(out: &Output, input: &[u8]) -> Vec<(Target, Vec<u8>)> {
    let mut v = Vec::new();
    for (t, meta, bytes) in out.iter_meta() {
        match (t, meta.gso) {
            (Target::Underlay(dst), Some(mss)) => {
                assert!(
                    meta.input_follows,
                    "a tunnelled super-frame without its input"
                );
                let vxlan = bytes.get(dst.payload_offset()..).unwrap_or_default();
                let cut = swarmnet::dataplane::gso::cut_tunnelled(vxlan, input, mss, |h, c| {
                    v.push((t, [h, c].concat()))
                });
                assert!(cut.is_some(), "a tunnelled super-frame that does not cut");
            }
            (Target::Underlay(dst), None) => v.push((
                t,
                bytes
                    .get(dst.payload_offset()..)
                    .unwrap_or_default()
                    .to_vec(),
            )),
            _ => v.push((t, bytes.to_vec())),
        }
    }
    v
}

/// What a frame from a port may become: frames for ports, or VXLAN to the peer's VTEP whose
/// inner frame is whole and within the network MTU.
fn check_from_port_emitted(t: &Tables, out: &Output) {
    for (target, bytes) in out.iter() {
        match target {
            Target::Port(q) => check_port_frame(t, q, bytes, true),
            Target::Underlay(dst) => {
                assert_eq!(dst.addr, PEER_VTEP, "encapsulated to an unknown VTEP");
                let inner = check_underlay_datagram(bytes, dst.src_port);
                check_whole_frame(inner);
                assert!(
                    inner.len() <= 14 + 1450,
                    "a {}-byte inner frame over the network MTU",
                    inner.len()
                );
            }
            // A DNS query to the resolver address for a name outside the swarm.
            Target::Resolver(c) => {
                assert!(t.port(c.port).is_some(), "a query from no port");
                assert!(bytes.len() <= 1500, "a {}-byte DNS query", bytes.len());
            }
            // A packet for the host's side from a port on a bridge network: a whole IPv4
            // packet within the bridge's MTU.
            Target::Egress(p) => {
                let port = t.port(p).expect("egress from no port");
                let net = t.network(port.network).expect("its network");
                assert!(net.bridge.is_some(), "egress from a port on no bridge");
                assert!(bytes.len() <= usize::from(net.mtu));
                let ip = etherparse::Ipv4Slice::from_slice(bytes).expect("a whole IPv4 packet");
                assert_eq!(usize::from(ip.header().total_len()), bytes.len());
            }
        }
    }
}

/// The fixed topology on a node whose peers take VXLAN remote checksum offload.
pub fn tables_rco() -> Arc<Tables> {
    static TABLES: OnceLock<Arc<Tables>> = OnceLock::new();
    TABLES
        .get_or_init(|| {
            let text = TOPOLOGY.replacen(
                "\n\n[[network]]",
                "\nremote_checksum_offload = true\n\n[[network]]",
                1,
            );
            let topo = Topology::parse(&text, "fuzz.toml").expect("fixed topology is valid");
            assert!(topo.node.remote_checksum_offload);
            Arc::new(Tables::from_topology(&topo))
        })
        .clone()
}

/// A datagram from the underlay, through both entry points. The first byte steers: bit 0 wraps
/// the rest in a valid outer IPv4/UDP header to the data-path port (bit 1 also fills in the UDP
/// checksum); bit 2 puts a VXLAN header for VNI 4097 in front (bit 7 with the RCO flag, its
/// start and field from the next byte); bit 3 with bit 2 also a known inner destination MAC
/// (bits 4-5), so the inner frame may be delivered; bit 6 sends from an address that is no
/// VTEP, whose datagrams must never reach a port. The UDP entry point also runs on a node that
/// takes remote checksum offload, with and without open checksums for its ports: a frame
/// marked open has its field inside the frame. Returns how many frames left open.
pub fn from_underlay(data: &[u8]) -> usize {
    let Some((&ctl, rest)) = data.split_first() else {
        return 0;
    };
    let t = tables();
    let mut payload = Vec::with_capacity(rest.len() + 8 + 6);
    let mut rest = rest;
    if ctl & 0x4 != 0 {
        let mut rco = [0u8, 0];
        if ctl & 0x80 != 0 {
            if let Some((&b, r)) = rest.split_first() {
                rco = [0x20, b];
                rest = r;
            }
        }
        payload.extend_from_slice(&[0x08, rco[0], 0, 0, 0x00, 0x10, 0x01, rco[1]]);
        if ctl & 0x8 != 0 {
            payload.extend_from_slice(&known_mac(ctl >> 4).0);
        }
    }
    payload.extend_from_slice(rest);
    let src = if ctl & 0x40 != 0 { STRANGER } else { PEER_VTEP };
    let datagram = if ctl & 0x1 != 0 {
        wrap_udp(&payload, ctl & 0x2 != 0, src)
    } else {
        payload.clone()
    };

    let mut out = Output::new();
    let mut dp = Dataplane::new(t.clone());
    dp.from_underlay_ipv4(0, &datagram, &mut out);
    check_outcome(dp.counters(), &out, "from_underlay_ipv4");
    check_decapsulated(&t, &out);
    // A raw datagram (bit 0 clear) names its own source: only the fixed VTEP gets through.
    let outer_src = if ctl & 0x1 != 0 {
        Some(src)
    } else {
        datagram
            .get(12..16)
            .map(|a| Ipv4Addr::new(a[0], a[1], a[2], a[3]))
    };
    if outer_src.is_some_and(|a| a != PEER_VTEP) {
        assert!(out.is_empty(), "a datagram from no VTEP reached a port");
    }

    out.clear();
    let mut dp = Dataplane::new(t.clone());
    dp.from_underlay_udp(0, src, &payload, &mut out);
    check_outcome(dp.counters(), &out, "from_underlay_udp");
    check_decapsulated(&t, &out);
    if src == STRANGER {
        assert!(out.is_empty(), "a datagram from no VTEP reached a port");
        assert!(
            dp.counters().total_drops() == 1,
            "a datagram from no VTEP was not counted as a drop"
        );
    }

    let t = tables_rco();
    let mut left_open = 0;
    for open in [false, true] {
        out.clear();
        let mut dp = Dataplane::new(t.clone());
        dp.set_partial_checksums(open);
        dp.from_underlay_udp(0, src, &payload, &mut out);
        check_outcome(dp.counters(), &out, "from_underlay_udp (RCO)");
        check_decapsulated(&t, &out);
        for (_, meta, frame) in out.iter_meta() {
            if let Some((start, offset)) = meta.partial {
                assert!(open, "an open checksum for a runtime that does not take it");
                let mut f = frame.to_vec();
                let finished =
                    swarmnet::dataplane::gso::finish_checksum(&mut f, start.into(), offset.into());
                assert!(finished.is_ok(), "an open checksum outside its frame");
                left_open += 1;
            }
        }
    }
    left_open
}

/// Every checked view over arbitrary bytes: accessors after `new_checked`, `Repr` round trips.
pub fn wire(data: &[u8]) {
    if let Ok(p) = vxlan::Packet::new_checked(data) {
        let _ = (p.flags(), p.has_vni(), p.vni(), p.payload().len());
        if let Ok(r) = vxlan::Repr::parse(&p) {
            let mut buf = vec![0u8; r.buffer_len()];
            r.emit(&mut vxlan::Packet::new_unchecked(&mut buf[..]));
            let q = vxlan::Packet::new_checked(&buf[..]).expect("emitted VXLAN header checks");
            assert_eq!(vxlan::Repr::parse(&q), Ok(r), "VXLAN repr round trip");
        }
    }
    if let Ok(p) = arp::Packet::new_checked(data) {
        let _ = (p.hardware_type(), p.protocol_type());
        let _ = (p.hardware_len(), p.protocol_len(), p.operation());
        let _ = (p.source_mac(), p.source_ip(), p.target_mac(), p.target_ip());
        if let Ok(r) = arp::Repr::parse(&p) {
            let mut buf = vec![0u8; r.buffer_len()];
            r.emit(&mut arp::Packet::new_unchecked(&mut buf[..]));
            let q = arp::Packet::new_checked(&buf[..]).expect("emitted ARP packet checks");
            assert_eq!(arp::Repr::parse(&q), Ok(r), "ARP repr round trip");
        }
    }
    if let Ok(p) = icmp::Packet::new_checked(data) {
        let _ = (p.msg_type(), p.code(), p.checksum(), p.next_hop_mtu());
        let _ = (p.data().len(), p.verify_checksum());
    }
    let mut buf = vec![0u8; icmp::HEADER_LEN + data.len()];
    let n = icmp::emit_frag_needed(&mut buf, 1450, data).expect("buffer is large enough");
    let p = icmp::Packet::new_checked(&buf[..n]).expect("emitted ICMP checks");
    assert!(p.verify_checksum(), "emitted ICMP checksum verifies");
    assert_eq!((p.next_hop_mtu(), p.data()), (1450, data));

    let _ = checksum::verify(data);
    let mut with_sum = data.to_vec();
    if with_sum.len() >= ipv4::HEADER_LEN {
        ipv4::fill_checksum(&mut with_sum);
        assert!(
            checksum::verify(&with_sum),
            "fill_checksum makes a verifying header"
        );
    }
    let mut copied = [0u8; 40];
    if let Ok(n) = ipv4::copied_options(data, &mut copied) {
        assert!(
            n <= 40 && n % 4 == 0,
            "copied options are padded to 32 bits"
        );
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(mac) = s.parse::<MacAddr>() {
            assert_eq!(
                mac.to_string().parse::<MacAddr>(),
                Ok(mac),
                "MAC text round trip"
            );
        }
    }
}

/// Wraps a UDP payload in an IPv4/UDP header from the peer's VTEP to ours.
fn wrap_udp(payload: &[u8], udp_checksum: bool, src: Ipv4Addr) -> Vec<u8> {
    let total = (ipv4::HEADER_LEN + 8 + payload.len()).min(usize::from(u16::MAX));
    let payload = &payload[..total - ipv4::HEADER_LEN - 8];
    let mut d = vec![0u8; ipv4::HEADER_LEN];
    let hdr: &mut [u8; ipv4::HEADER_LEN] = (&mut d[..]).try_into().expect("20 bytes");
    ipv4::Fields {
        src,
        dst: LOCAL_VTEP,
        protocol: ipv4::PROTO_UDP,
        ttl: ipv4::DEFAULT_TTL,
        identification: 1,
        dont_fragment: false,
        total_len: total as u16,
    }
    .write(hdr);
    d.extend_from_slice(&50000u16.to_be_bytes());
    d.extend_from_slice(&DATA_PATH_PORT.to_be_bytes());
    d.extend_from_slice(&((total - ipv4::HEADER_LEN) as u16).to_be_bytes());
    d.extend_from_slice(&[0, 0]);
    d.extend_from_slice(payload);
    if udp_checksum {
        let mut pseudo = [0u8; 12];
        pseudo[..4].copy_from_slice(&src.octets());
        pseudo[4..8].copy_from_slice(&LOCAL_VTEP.octets());
        pseudo[9] = ipv4::PROTO_UDP;
        pseudo[10..12].copy_from_slice(&((total - ipv4::HEADER_LEN) as u16).to_be_bytes());
        let acc = u64::from(checksum::sum(&pseudo)) + u64::from(checksum::sum(&d[20..]));
        let sum = match !checksum::fold(acc) {
            0 => 0xffff, // RFC 768: a computed zero is sent as all ones
            s => s,
        };
        d[26..28].copy_from_slice(&sum.to_be_bytes());
    }
    d
}

/// One input, one outcome: emitted, or exactly one drop (with at most an ICMP answer).
fn check_outcome(c: &Counters, out: &Output, entry: &str) {
    let drops = c.total_drops();
    assert!(
        drops <= 1,
        "{entry}: one input counted {drops} drops: {c:?}"
    );
    if drops == 0 {
        assert!(
            !out.is_empty(),
            "{entry}: input neither emitted nor dropped"
        );
    } else if !out.is_empty() {
        assert_eq!(
            c.dropped(DropReason::MtuExceeded),
            1,
            "{entry}: a dropped input emitted packets: {c:?}"
        );
        assert!(
            c.events.icmp_frag_needed == 1 || c.events.packets_fragmented == 1,
            "{entry}: emitted with an MTU drop but no ICMP answer or fragments: {c:?}"
        );
    }
}

/// A frame for a port: whole (see `check_whole_frame`), the port's own MAC as destination,
/// except for ARP replies the node answers itself (`answer`), which go to the requester.
fn check_port_frame(t: &Tables, port: PortId, frame: &[u8], answer: bool) {
    let p = t.port(port).expect("emitted to a port the tables know");
    check_whole_frame(frame);
    if answer && frame[12..14] == arp::ETHERTYPE.to_be_bytes() {
        // An ARP reply goes where the request's sender hardware address said (RFC 826).
        let reply = arp::Packet::new_checked(&frame[14..]).expect("a whole ARP reply");
        assert_eq!(reply.operation(), arp::Operation::Reply);
        assert_eq!(
            &frame[..6],
            &reply.target_mac().0,
            "ARP reply not to its target"
        );
        return;
    }
    assert_eq!(
        &frame[..6],
        &p.mac.0,
        "a frame for {} not addressed to it",
        p.name
    );
}

/// What a task may receive, read here apart from the core's own checks: a whole Ethernet
/// header; for ARP the whole body its length fields describe; for IPv4 version 4, a header
/// length of 20 bytes or more and a total length within the frame and not below the header.
pub fn check_whole_frame(frame: &[u8]) {
    assert!(frame.len() >= 14, "a {}-byte frame for a port", frame.len());
    let body = &frame[14..];
    match [frame[12], frame[13]] {
        [0x08, 0x06] => {
            assert!(body.len() >= 8, "ARP without its fixed part for a port");
            let need = 8 + 2 * (usize::from(body[4]) + usize::from(body[5]));
            assert!(
                body.len() >= need,
                "a {}-byte ARP body for a port, its lengths say {need}",
                body.len()
            );
        }
        [0x08, 0x00] => {
            assert!(
                body.len() >= 20,
                "a {}-byte IPv4 packet for a port",
                body.len()
            );
            assert_eq!(body[0] >> 4, 4, "IPv4 of another version for a port");
            let ihl = usize::from(body[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([body[2], body[3]]));
            assert!(ihl >= 20, "IPv4 header length {ihl} for a port");
            assert!(
                total >= ihl && total <= body.len(),
                "IPv4 total length {total} (header {ihl}) in a {}-byte body for a port",
                body.len()
            );
        }
        _ => {}
    }
}

/// Decapsulation delivers at most one frame, and only to a port.
fn check_decapsulated(t: &Tables, out: &Output) {
    assert!(out.len() <= 1, "one datagram became {} packets", out.len());
    for (target, bytes) in out.iter() {
        match target {
            Target::Port(q) => check_port_frame(t, q, bytes, false),
            Target::Underlay(_) => panic!("a datagram from the underlay went back to it"),
            Target::Resolver(_) => panic!("a datagram from the underlay became a DNS query"),
            Target::Egress(_) => panic!("a datagram from the underlay went to the egress"),
        }
    }
}

/// Parses an emitted underlay datagram as IPv4/UDP/VXLAN and returns the inner frame.
fn check_underlay_datagram(d: &[u8], src_port: u16) -> &[u8] {
    assert!(d.len() >= 36, "a {}-byte underlay datagram", d.len());
    assert_eq!(d[0], 0x45, "outer IPv4 version and header length");
    assert!(checksum::verify(&d[..20]), "outer IPv4 checksum");
    assert_eq!(usize::from(u16::from_be_bytes([d[2], d[3]])), d.len());
    assert_eq!(d[9], ipv4::PROTO_UDP);
    assert_eq!(&d[12..16], &LOCAL_VTEP.octets());
    assert_eq!(&d[16..20], &PEER_VTEP.octets());
    let udp = &d[20..];
    assert_eq!(u16::from_be_bytes([udp[0], udp[1]]), src_port);
    assert!(
        src_port >= 49152,
        "UDP source port {src_port} outside 49152-65535"
    );
    assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), DATA_PATH_PORT);
    assert_eq!(usize::from(u16::from_be_bytes([udp[4], udp[5]])), udp.len());
    let vx = vxlan::Packet::new_checked(&udp[8..]).expect("VXLAN header");
    assert_eq!(vxlan::Repr::parse(&vx), Ok(vxlan::Repr { vni: VNI }));
    &udp[8 + vxlan::HEADER_LEN..]
}
