//! Scenario tests of the core on hand-built frames: the paths the replay goldens do not reach.

use std::net::Ipv4Addr;
use std::sync::Arc;

use super::*;
use crate::topology::Topology;
use crate::wire::{checksum, MacAddr};

const TOPO: &str = r#"
[node]
name = "node-1"
data_path_addr = "192.0.2.10"

[[network]]
name = "my-network"
vni = 4097
subnet = "10.0.9.0/24"
gateway = "10.0.9.1"

[[endpoint]]
name = "web1"
network = "my-network"
ip = "10.0.9.2"

[[endpoint]]
name = "web3"
network = "my-network"
ip = "10.0.9.3"
vtep = "192.0.2.11"
"#;

const WEB1: [u8; 6] = [2, 0x42, 10, 0, 9, 2];
const WEB3: [u8; 6] = [2, 0x42, 10, 0, 9, 3];

fn dataplane(text: &str) -> Dataplane {
    let topo = Topology::parse(text, "test.toml").expect("topology");
    Dataplane::new(Arc::new(Tables::from_topology(&topo)))
}

/// An Ethernet/IPv4 frame web1 -> web3 with `payload` bytes after a header of `ihl` words.
fn ipv4_frame(proto: u8, flags: u16, ihl: usize, options: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&WEB3);
    f.extend_from_slice(&WEB1);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (ihl * 4 + payload.len()) as u16;
    let mut h = vec![0x40 | ihl as u8, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0x12, 0x34]);
    h.extend_from_slice(&flags.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0, 10, 0, 9, 2, 10, 0, 9, 3]);
    h.extend_from_slice(options);
    h.resize(ihl * 4, 0);
    let sum = checksum::checksum(&h);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&h);
    f.extend_from_slice(payload);
    f
}

fn emitted(out: &Output) -> Vec<(Target, Vec<u8>)> {
    out.iter().map(|(t, b)| (t, b.to_vec())).collect()
}

#[test]
fn udp_socket_entry_equals_ip_entry() {
    let mut dp = dataplane(TOPO);
    let mut out = Output::new();
    let frame = ipv4_frame(17, 0, 5, &[], &[7; 100]);
    dp.from_port(0, PortId(0), &frame, &mut out);
    let (_, datagram) = emitted(&out).remove(0);
    out.clear();

    // What web3's node would receive: the same datagram, addressed to us.
    let mut dp = dataplane(TOPO);
    let mut incoming = datagram.clone();
    incoming[12..16].copy_from_slice(&[192, 0, 2, 11]);
    incoming[16..20].copy_from_slice(&[192, 0, 2, 10]);
    crate::wire::ipv4::fill_checksum(&mut incoming[..20]);
    // Turn the frame around so it is addressed to web1.
    let inner = &mut incoming[36..];
    inner[..6].copy_from_slice(&WEB1);
    inner[6..12].copy_from_slice(&WEB3);
    dp.from_underlay_ipv4(1, &incoming, &mut out);
    let via_ip = emitted(&out);
    out.clear();
    dp.from_underlay_udp(2, Ipv4Addr::new(192, 0, 2, 11), &incoming[28..], &mut out);
    let via_udp = emitted(&out);
    assert_eq!(via_ip.len(), 1);
    assert_eq!(via_ip, via_udp);
    assert_eq!(via_ip[0].0, Target::Port(PortId(0)));
    assert_eq!(&via_ip[0].1[..], &incoming[36..]);
}

#[test]
fn encapsulated_headers_are_valid_and_ids_advance() {
    let mut dp = dataplane(TOPO);
    let mut out = Output::with_capacity(4, 8192);
    let frame = ipv4_frame(6, 0x4000, 5, &[], &[1; 64]);
    dp.process_batch(
        0,
        [
            Input::Port(PortId(0), &frame),
            Input::Port(PortId(0), &frame),
        ],
        &mut out,
    );
    let e = emitted(&out);
    assert_eq!(e.len(), 2);
    for (i, (target, bytes)) in e.iter().enumerate() {
        let Target::Underlay(dst) = target else {
            panic!("not to the underlay")
        };
        assert_eq!(dst.addr, Ipv4Addr::new(192, 0, 2, 11));
        assert_eq!(dst.port, 4789);
        assert!(checksum::verify(&bytes[..20]), "outer IPv4 checksum");
        assert_eq!(
            u16::from_be_bytes([bytes[4], bytes[5]]),
            i as u16,
            "IP identification"
        );
        assert_eq!(u16::from_be_bytes([bytes[20], bytes[21]]), dst.src_port);
        assert_eq!(
            usize::from(u16::from_be_bytes([bytes[24], bytes[25]])),
            bytes.len() - 20
        );
        assert_eq!(
            &bytes[UNDERLAY_UDP_PAYLOAD..UNDERLAY_UDP_PAYLOAD + 8],
            &[8, 0, 0, 0, 0, 0x10, 0x01, 0]
        );
        assert_eq!(&bytes[36..], &frame[..]);
    }
    assert_eq!(dp.counters().underlay.tx_packets, 2);
    assert_eq!(dp.counters().ports[0].rx_packets, 2);
}

#[test]
fn new_tables_take_effect_without_a_restart() {
    let mut dp = dataplane(TOPO);
    let moved = TOPO.replace("192.0.2.11", "192.0.2.12");
    let topo = Topology::parse(&moved, "moved.toml").unwrap();
    dp.set_tables(Arc::new(Tables::from_topology(&topo)));
    let mut out = Output::new();
    dp.from_port(0, PortId(0), &ipv4_frame(17, 0, 5, &[], &[0; 8]), &mut out);
    let targets: Vec<Target> = out.iter().map(|(t, _)| t).collect();
    match targets.as_slice() {
        [Target::Underlay(d)] => assert_eq!(d.addr, Ipv4Addr::new(192, 0, 2, 12)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn icmp_errors_are_never_answered_with_icmp() {
    let mut dp = dataplane(TOPO);
    let mut out = Output::new();
    // An ICMP "destination unreachable" of 1500 bytes with DF: dropped without a reply.
    let mut icmp = vec![3u8, 1, 0, 0, 0, 0, 0, 0];
    icmp.resize(1480, 0);
    dp.from_port(
        0,
        PortId(0),
        &ipv4_frame(1, 0x4000, 5, &[], &icmp),
        &mut out,
    );
    assert!(out.is_empty());
    assert_eq!(dp.counters().dropped(DropReason::MtuExceeded), 1);
    assert_eq!(dp.counters().events.icmp_frag_needed, 0);
    // An echo request of the same size is answered.
    let mut echo = vec![8u8, 0, 0, 0, 0, 1, 0, 1];
    echo.resize(1480, 0);
    dp.from_port(
        0,
        PortId(0),
        &ipv4_frame(1, 0x4000, 5, &[], &echo),
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(dp.counters().events.icmp_frag_needed, 1);
}

#[test]
fn later_fragments_carry_only_copied_options() {
    let mut dp = dataplane(TOPO);
    let mut out = Output::new();
    // Record Route (not copied, 7 bytes) then Loose Source Route (copied, 7 bytes), padded.
    let options = [7, 7, 4, 0, 0, 0, 0, 0x83, 7, 4, 10, 0, 9, 3, 0, 0];
    let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    dp.from_port(
        0,
        PortId(0),
        &ipv4_frame(17, 0, 9, &options, &payload),
        &mut out,
    );
    let e = emitted(&out);
    assert_eq!(e.len(), 3);
    let mut data = Vec::new();
    for (i, (_, d)) in e.iter().enumerate() {
        let ip = &d[36 + 14..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        assert!(checksum::verify(&ip[..ihl]), "fragment {i} header checksum");
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        assert!(total <= 1450);
        if i == 0 {
            assert_eq!(&ip[20..36], &options[..]);
        } else {
            assert_eq!(ihl, 28);
            assert_eq!(&ip[20..28], &[0x83, 7, 4, 10, 0, 9, 3, 0]);
        }
        let word = u16::from_be_bytes([ip[6], ip[7]]);
        assert_eq!(usize::from(word & 0x1fff) * 8, data.len());
        assert_eq!(word & 0x2000 != 0, i < 2, "MF on all but the last");
        data.extend_from_slice(&ip[ihl..total]);
    }
    assert_eq!(data, payload);
}

#[test]
fn other_refusals() {
    let mut dp = dataplane(TOPO);
    let mut out = Output::new();
    // Too big and not IPv4: nothing to fragment, nobody to tell.
    let mut v6 = ipv4_frame(17, 0, 5, &[], &[0; 1500]);
    v6[12..14].copy_from_slice(&[0x86, 0xdd]);
    dp.from_port(0, PortId(0), &v6, &mut out);
    // A port that does not exist.
    dp.from_port(0, PortId(9), &ipv4_frame(17, 0, 5, &[], &[0; 8]), &mut out);
    // ARP replies and gratuitous ARP have nobody to answer.
    let mut arp = Vec::new();
    arp.extend_from_slice(&MacAddr::BROADCAST.0);
    arp.extend_from_slice(&WEB1);
    arp.extend_from_slice(&[8, 6, 0, 1, 8, 0, 6, 4, 0, 2]);
    arp.extend_from_slice(&WEB1);
    arp.extend_from_slice(&[10, 0, 9, 2]);
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&[10, 0, 9, 3]);
    dp.from_port(0, PortId(0), &arp, &mut out);
    arp[21] = 1; // a request...
    arp[38..42].copy_from_slice(&[10, 0, 9, 2]); // ...for its own address
    dp.from_port(0, PortId(0), &arp, &mut out);
    // An IPv4 header claiming more bytes than the frame has.
    let mut lying = ipv4_frame(17, 0, 5, &[], &[0; 8]);
    lying[16..18].copy_from_slice(&900u16.to_be_bytes());
    dp.from_port(0, PortId(0), &lying, &mut out);
    assert!(out.is_empty());
    let c = dp.counters();
    assert_eq!(c.dropped(DropReason::MtuExceeded), 1);
    assert_eq!(c.dropped(DropReason::UnknownPort), 1);
    assert_eq!(c.dropped(DropReason::ArpUnsupported), 2);
    assert_eq!(c.dropped(DropReason::MalformedInner), 1);
    assert_eq!(c.total_drops(), 5);
}

#[test]
fn bytes_after_the_ipv4_packet_do_not_travel() {
    let mut dp = dataplane(TOPO);
    let mut out = Output::new();
    // A 186-byte IPv4 packet in an 8000-byte frame: the MTU check reads the packet's length,
    // so only the packet may be forwarded.
    let mut frame = ipv4_frame(17, 0, 5, &[], &[5; 166]);
    let packet_end = frame.len();
    frame.resize(8000, 0xee);
    dp.from_port(0, PortId(0), &frame, &mut out);
    let e = emitted(&out);
    assert_eq!(e.len(), 1);
    assert_eq!(&e[0].1[36..], &frame[..packet_end]);
}

#[test]
fn arp_for_another_hardware_address_is_not_answered() {
    let mut dp = dataplane(TOPO);
    let mut out = Output::new();
    let mut arp = Vec::new();
    arp.extend_from_slice(&MacAddr::BROADCAST.0);
    arp.extend_from_slice(&WEB1);
    arp.extend_from_slice(&[8, 6, 0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&[2, 0x42, 10, 0, 9, 0x77]); // not web1's MAC
    arp.extend_from_slice(&[10, 0, 9, 2]);
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&[10, 0, 9, 3]);
    dp.from_port(0, PortId(0), &arp, &mut out);
    assert!(out.is_empty());
    assert_eq!(dp.counters().dropped(DropReason::SpoofedSource), 1);
    arp[22..28].copy_from_slice(&WEB1);
    dp.from_port(0, PortId(0), &arp, &mut out);
    assert_eq!(
        out.len(),
        1,
        "the same request from the port's own MAC is answered"
    );
}

/// Two networks: web3 (VTEP .11) on the first, db2 (VTEP .12) on the second.
const TWO_NETWORKS: &str = r#"
[node]
name = "node-1"
data_path_addr = "192.0.2.10"

[[network]]
name = "my-network"
vni = 4097
subnet = "10.0.9.0/24"
gateway = "10.0.9.1"

[[network]]
name = "other"
vni = 4098
subnet = "10.0.10.0/24"
gateway = "10.0.10.1"

[[endpoint]]
name = "web1"
network = "my-network"
ip = "10.0.9.2"

[[endpoint]]
name = "web3"
network = "my-network"
ip = "10.0.9.3"
vtep = "192.0.2.11"

[[endpoint]]
name = "db2"
network = "other"
ip = "10.0.10.2"
vtep = "192.0.2.12"
"#;

/// A VXLAN payload for `vni` carrying `inner`.
fn vxlan_payload(vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut p = vec![0x08, 0, 0, 0];
    p.extend_from_slice(&(vni << 8).to_be_bytes());
    p.extend_from_slice(inner);
    p
}

/// A ping web3 -> web1 as the peer sends it.
fn frame_to_web1() -> Vec<u8> {
    let mut f = ipv4_frame(1, 0, 5, &[], &[8, 0, 0, 0, 0, 1, 0, 1]);
    f[..6].copy_from_slice(&WEB1);
    f[6..12].copy_from_slice(&WEB3);
    f
}

#[test]
fn vxlan_only_from_the_networks_own_vteps() {
    let mut dp = dataplane(TWO_NETWORKS);
    let mut out = Output::new();
    let payload = vxlan_payload(4097, &frame_to_web1());
    // No VTEP at all, and the VTEP of another network: both refused.
    dp.from_underlay_udp(0, Ipv4Addr::new(203, 0, 113, 7), &payload, &mut out);
    dp.from_underlay_udp(0, Ipv4Addr::new(192, 0, 2, 12), &payload, &mut out);
    // Our own address is no peer either.
    dp.from_underlay_udp(0, Ipv4Addr::new(192, 0, 2, 10), &payload, &mut out);
    assert!(
        out.is_empty(),
        "a frame from no VTEP of the network was delivered"
    );
    assert_eq!(dp.counters().dropped(DropReason::UnknownVtep), 3);
    assert_eq!(dp.counters().total_drops(), 3);
    assert_eq!(dp.counters().ports[0].tx_packets, 0);
    // The network's own peer gets through.
    dp.from_underlay_udp(0, Ipv4Addr::new(192, 0, 2, 11), &payload, &mut out);
    assert_eq!(emitted(&out).len(), 1);
    assert_eq!(dp.counters().ports[0].tx_packets, 1);
}

#[test]
fn malformed_inner_frames_are_never_delivered() {
    let mut dp = dataplane(TOPO);
    let mut out = Output::new();
    let peer = Ipv4Addr::new(192, 0, 2, 11);
    let good = frame_to_web1();
    // Found by fuzzing: an Ethernet header with EtherType ARP and no ARP body.
    let mut arp_header_only = good[..12].to_vec();
    arp_header_only.extend_from_slice(&[0x08, 0x06]);
    let mut arp_half = arp_header_only.clone();
    arp_half.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2, 1, 2, 3]);
    let mut ipv4_long = good.clone();
    ipv4_long[16..18].copy_from_slice(&900u16.to_be_bytes());
    let mut ipv4_ihl = good.clone();
    ipv4_ihl[14] = 0x44;
    let mut ipv4_cut = good[..14].to_vec();
    ipv4_cut.extend_from_slice(&[0x45, 0]);
    let bad = [
        good[..13].to_vec(),
        arp_header_only,
        arp_half,
        ipv4_long,
        ipv4_ihl,
        ipv4_cut,
    ];
    for (i, inner) in bad.iter().enumerate() {
        dp.from_underlay_udp(0, peer, &vxlan_payload(4097, inner), &mut out);
        assert!(out.is_empty(), "malformed inner frame {i} delivered");
        assert_eq!(
            dp.counters().dropped(DropReason::MalformedInner),
            i as u64 + 1
        );
    }
    // The same from a port: refused before anything is forwarded or answered.
    for (i, f) in bad.iter().enumerate() {
        let mut f = f.clone();
        if f.len() >= 12 {
            f[..6].copy_from_slice(&WEB3);
            f[6..12].copy_from_slice(&WEB1);
        }
        dp.from_port(0, PortId(0), &f, &mut out);
        assert!(out.is_empty(), "malformed frame {i} from a port forwarded");
    }
    assert_eq!(
        dp.counters().dropped(DropReason::MalformedInner),
        2 * bad.len() as u64
    );
    assert_eq!(dp.counters().total_drops(), 2 * bad.len() as u64);
    dp.from_underlay_udp(0, peer, &vxlan_payload(4097, &good), &mut out);
    assert_eq!(emitted(&out).len(), 1, "the whole frame is delivered");
}

/// `text` with its network encrypted (ESP in UDP, one key).
fn encrypted(text: &str) -> String {
    text.replace(
        "gateway = \"10.0.9.1\"\n",
        "gateway = \"10.0.9.1\"\nencrypted = true\n\n[encryption]\nkeys = [ { tag = 1, key = \"000102030405060708090a0b0c0d0e0f\" } ]\nprimary = 1\ntransport = \"udp\"\n",
    )
}

#[test]
fn esp_only_from_known_vteps() {
    let mut dp = dataplane(&encrypted(TOPO));
    let mut out = Output::new();
    // SPI, sequence number, IV and enough ciphertext and ICV to be taken for ESP.
    let mut esp = vec![0x12, 0x34, 0x56, 0x78, 0, 0, 0, 1];
    esp.extend_from_slice(&[0xab; 64]);
    dp.from_underlay_esp_udp(0, Ipv4Addr::new(203, 0, 113, 7), &esp, &mut out);
    assert_eq!(dp.counters().dropped(DropReason::UnknownVtep), 1);
    // From the peer, an SPI of no SA stays what it is.
    dp.from_underlay_esp_udp(0, Ipv4Addr::new(192, 0, 2, 11), &esp, &mut out);
    assert_eq!(dp.counters().dropped(DropReason::EspUnknownSpi), 1);
    assert_eq!(dp.counters().total_drops(), 2);
    assert!(out.is_empty());
}

/// A node with two tasks on an overlay and on docker_gwbridge (no ICC unless `icc`).
fn gwbridge_topology(icc: bool) -> String {
    format!(
        r#"
[node]
name = "node-1"
data_path_addr = "192.0.2.10"

[[network]]
name = "my-network"
vni = 4097
subnet = "10.0.9.0/24"
gateway = "10.0.9.1"

[[network]]
name = "docker_gwbridge"
driver = "bridge"
icc = {icc}
subnet = "172.18.0.0/16"
gateway = "172.18.0.1"

[[endpoint]]
name = "a"
network = "my-network"
ip = "10.0.9.2"

[[endpoint]]
name = "a.gw"
network = "docker_gwbridge"
ip = "172.18.0.2"
netns = "a"
iface = "eth1"

[[endpoint]]
name = "b.gw"
network = "docker_gwbridge"
ip = "172.18.0.3"
"#
    )
}

/// An Ethernet/IPv4/UDP frame between the given MACs and addresses.
fn udp_frame(dst_mac: [u8; 6], src_mac: [u8; 6], src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut h = vec![0x45, 0, 0, 32, 0, 1, 0x40, 0, 64, 17, 0, 0];
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    let sum = checksum::checksum(&h);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&h);
    f.extend_from_slice(&[0x30, 0x39, 0, 53, 0, 12, 0, 0, 1, 2, 3, 4]);
    f
}

const A_GW: [u8; 6] = [2, 0x42, 172, 18, 0, 2];
const B_GW: [u8; 6] = [2, 0x42, 172, 18, 0, 3];
const GW_MAC: [u8; 6] = [2, 0x42, 172, 18, 0, 1];

#[test]
fn a_bridge_hands_what_goes_to_its_gateway_to_the_egress_and_frames_the_answers() {
    let mut dp = dataplane(&gwbridge_topology(false));
    let t = dp.tables().clone();
    let a_gw = t.port_id("a.gw").unwrap();
    let mut out = Output::new();
    // To anywhere through the gateway: the bare IPv4 packet goes to the egress.
    let frame = udp_frame(GW_MAC, A_GW, [172, 18, 0, 2], [198, 51, 100, 7]);
    dp.from_port(0, a_gw, &frame, &mut out);
    assert_eq!(
        emitted(&out),
        vec![(Target::Egress(a_gw), frame[14..].to_vec())]
    );
    assert_eq!(dp.counters().events.egress_packets, 1);
    out.clear();
    // The answer comes back framed from the gateway to the task.
    let answer = &udp_frame(A_GW, GW_MAC, [198, 51, 100, 7], [172, 18, 0, 2])[14..];
    dp.egress_answer(1, answer, &mut out);
    let got = emitted(&out);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, Target::Port(a_gw));
    assert_eq!(&got[0].1[..6], &A_GW);
    assert_eq!(&got[0].1[6..12], &GW_MAC);
    assert_eq!(&got[0].1[14..], answer);
    out.clear();
    // An answer for an address no task has on the bridge, for the gateway itself, for an
    // overlay task, or bytes that are no packet: dropped and counted, nothing sent.
    for dst in [[172, 18, 0, 9], [172, 18, 0, 1], [10, 0, 9, 2]] {
        let stray = &udp_frame(B_GW, GW_MAC, [198, 51, 100, 7], dst)[14..];
        dp.egress_answer(2, stray, &mut out);
    }
    dp.egress_answer(2, &answer[..10], &mut out);
    assert!(emitted(&out).is_empty());
    let c = dp.counters();
    assert_eq!(c.dropped(DropReason::UnknownDestination), 3);
    assert_eq!(c.dropped(DropReason::MalformedInner), 1);
    // The other task on the bridge gets its own answers.
    let for_b = &udp_frame(B_GW, GW_MAC, [198, 51, 100, 7], [172, 18, 0, 3])[14..];
    dp.egress_answer(2, for_b, &mut out);
    assert_eq!(emitted(&out)[0].0, Target::Port(t.port_id("b.gw").unwrap()));
    out.clear();
    // The overlay's gateway is no way out: only its DNS answers there.
    let to_overlay_gw = udp_frame(
        [2, 0x42, 10, 0, 9, 1],
        [2, 0x42, 10, 0, 9, 2],
        [10, 0, 9, 2],
        [198, 51, 100, 7],
    );
    dp.from_port(3, t.port_id("a").unwrap(), &to_overlay_gw, &mut out);
    assert!(emitted(&out).is_empty());
}

/// An Ethernet/IPv4/TCP frame of `len` payload bytes between the given MACs and addresses.
fn tcp_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    len: usize,
) -> Vec<u8> {
    let mut f = Vec::new();
    etherparse::PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src, dst, 64)
        .tcp(40000, 80, 1_000, 64240)
        .ack(1)
        .write(&mut f, &vec![0x5a; len])
        .unwrap();
    f
}

#[test]
fn tcp_super_frames_pass_whole_between_a_task_and_the_egress() {
    let mut dp = dataplane(&gwbridge_topology(true));
    let t = dp.tables().clone();
    let (a_gw, b_gw) = (t.port_id("a.gw").unwrap(), t.port_id("b.gw").unwrap());
    let mut out = Output::new();
    let vnet_hdr = tso_header(1398);
    // A task's TSO super-frame to the outside: one packet to the egress, not 15 segments.
    let up = tcp_frame(GW_MAC, A_GW, [172, 18, 0, 2], [198, 51, 100, 7], 20_000);
    dp.from_port_vnet(0, a_gw, &vnet_hdr, &up, &mut out);
    assert_eq!(
        emitted(&out),
        vec![(Target::Egress(a_gw), up[14..].to_vec())]
    );
    out.clear();
    // To another task on the bridge (icc on), it is cut into segments as before.
    let across = tcp_frame(B_GW, A_GW, [172, 18, 0, 2], [172, 18, 0, 3], 20_000);
    dp.from_port_vnet(0, a_gw, &vnet_hdr, &across, &mut out);
    let got = emitted(&out);
    assert_eq!(got.len(), 15);
    assert!(got
        .iter()
        .all(|(t, f)| *t == Target::Port(b_gw) && f.len() <= 14 + 1450));
    out.clear();
    // An answer with a segment size comes back whole, marked with it for the port's link.
    let down = &tcp_frame(A_GW, GW_MAC, [198, 51, 100, 7], [172, 18, 0, 2], 20_000)[14..];
    dp.egress_answer_gso(1, down, Some(1398), &mut out);
    let got: Vec<_> = out.iter_gso().map(|(t, g, f)| (t, g, f.len())).collect();
    assert_eq!(got, vec![(Target::Port(a_gw), Some(1398), 14 + down.len())]);
    out.clear();
    // Without one, or with segments the bridge's MTU cannot carry: refused and counted.
    dp.egress_answer_gso(2, down, None, &mut out);
    dp.egress_answer_gso(2, down, Some(1411), &mut out);
    dp.egress_answer_gso(2, down, Some(8), &mut out);
    assert!(out.is_empty());
    assert_eq!(dp.counters().dropped(DropReason::MtuExceeded), 3);
}

#[test]
fn tasks_on_a_bridge_reach_each_other_only_with_icc() {
    let frame = udp_frame(B_GW, A_GW, [172, 18, 0, 2], [172, 18, 0, 3]);
    let mut dp = dataplane(&gwbridge_topology(false));
    let (a_gw, b_gw) = (
        dp.tables().port_id("a.gw").unwrap(),
        dp.tables().port_id("b.gw").unwrap(),
    );
    let mut out = Output::new();
    dp.from_port(0, a_gw, &frame, &mut out);
    assert!(emitted(&out).is_empty());
    assert_eq!(dp.counters().dropped(DropReason::IccDisabled), 1);
    let mut dp = dataplane(&gwbridge_topology(true));
    dp.from_port(0, a_gw, &frame, &mut out);
    assert_eq!(emitted(&out), vec![(Target::Port(b_gw), frame.clone())]);
}

/// A virtio-net header for a TCPv4 super-frame of `gso_size` segments behind 54 header bytes.
fn tso_header(gso_size: u16) -> [u8; crate::wire::vnet::HEADER_LEN] {
    crate::wire::vnet::Repr::tcp4_super_frame(34, 54, gso_size).to_bytes()
}

/// What a runtime sends for what the core emitted from `input`: each underlay item's socket
/// payload, tunnelled super-frames cut from `input` as the runtime cuts them, and frames for
/// ports as they are.
fn datagrams(out: &Output, input: &[u8]) -> Vec<(Target, Vec<u8>)> {
    let mut v = Vec::new();
    for (t, meta, bytes) in out.iter_meta() {
        match (t, meta.gso) {
            (Target::Underlay(dst), Some(mss)) => {
                assert!(meta.input_follows);
                let vxlan = &bytes[dst.payload_offset()..];
                let cut =
                    gso::cut_tunnelled(vxlan, input, mss, |h, c| v.push((t, [h, c].concat())));
                assert!(cut.is_some());
            }
            (Target::Underlay(dst), None) => v.push((t, bytes[dst.payload_offset()..].to_vec())),
            _ => v.push((t, bytes.to_vec())),
        }
    }
    v
}

#[test]
fn tunnelled_super_frames_cut_into_what_the_core_sends_for_each_segment() {
    let web1 = PortId(0);
    let mut cases = Vec::new();
    for len in [1, 1398, 1399, 2796, 20_000, 65_000] {
        for mss in [1398u16, 1000, 536, 32] {
            let mut f = tcp_frame(WEB3, WEB1, [10, 0, 9, 2], [10, 0, 9, 3], len);
            // As the task's kernel hands it over: PSH (and here FIN) on the burst, the TCP
            // checksum field holding the pseudo-header sum only.
            f[47] |= 0x09;
            f[50..52].copy_from_slice(&[0x12, 0x34]);
            cases.push((f, mss, true));
        }
    }
    // Segments over the overlay's MTU (1450), a forged source, a runt: left to the switch.
    let big = tcp_frame(WEB3, WEB1, [10, 0, 9, 2], [10, 0, 9, 3], 20_000);
    cases.push((big.clone(), 1420, false));
    let mut forged = big.clone();
    forged[6..12].copy_from_slice(&[2, 0x42, 10, 0, 9, 9]);
    cases.push((forged, 1398, false));
    cases.push((big[..40].to_vec(), 1398, false));
    // An encrypted network seals each segment straight from the burst, in a datagram of its
    // own: the same datagrams, under the same sequence numbers, as switching each segment.
    for (text, sealed) in [(TOPO.to_string(), false), (encrypted(TOPO), true)] {
        for (frame, mss, whole) in &cases {
            let (mss, whole) = (*mss, *whole);
            let hdr = tso_header(mss);
            let mut slow = dataplane(&text);
            let mut fast = dataplane(&text);
            fast.set_tunnel_gso(true);
            let (mut out_slow, mut out_fast) = (Output::new(), Output::new());
            slow.from_port_vnet(0, web1, &hdr, frame, &mut out_slow);
            fast.from_port_vnet(0, web1, &hdr, frame, &mut out_fast);
            let what = format!("{} bytes, mss {mss}, encrypted {sealed}", frame.len());
            let several = frame.len() > 54 + usize::from(mss);
            assert_eq!(
                out_fast.iter_gso().filter(|(_, g, _)| g.is_some()).count(),
                usize::from(whole && several && !sealed),
                "{what}: one item for the whole burst"
            );
            assert_eq!(
                datagrams(&out_fast, frame),
                datagrams(&out_slow, &[]),
                "{what}"
            );
            assert_eq!(fast.counters(), slow.counters(), "{what}: counters");
            let t = fast.tables();
            let mtu = t.port(web1).and_then(|p| t.network(p.network)).unwrap().mtu;
            let fits =
                40 + usize::from(mss).min(frame.len().saturating_sub(54)) <= usize::from(mtu);
            if sealed {
                // Whole datagrams: outer IPv4 headers (identification, length) included.
                assert_eq!(emitted(&out_fast), emitted(&out_slow), "{what}");
            }
            if sealed && whole && fits {
                let esp = out_fast.iter().filter(
                    |(t, _)| matches!(t, Target::Underlay(d) if d.kind == UnderlayKind::EspUdp),
                );
                assert_eq!(
                    esp.count(),
                    frame.len().saturating_sub(54).div_ceil(mss.into()).max(1),
                    "{what}"
                );
            }
            if sealed && whole && fits && several {
                // The burst took the sealing path (the per-segment one never leaves a checksum
                // open): with RCO, every segment reaches the peer open.
                let mut rco = dataplane(&with_rco(&text));
                rco.set_tunnel_gso(true);
                let mut out = Output::new();
                rco.from_port_vnet(0, web1, &hdr, frame, &mut out);
                let mut peer = dataplane(&with_rco(&encrypted(&topo_peer())));
                peer.set_partial_checksums(true);
                let got = received(&mut peer, &datagrams(&out, frame));
                assert!(
                    !got.is_empty() && got.iter().all(|(_, open)| *open),
                    "{what}"
                );
            }
        }
    }
}

#[test]
fn a_tunnelled_payload_that_is_no_super_frame_is_not_cut() {
    let f = tcp_frame(WEB3, WEB1, [10, 0, 9, 2], [10, 0, 9, 3], 3000);
    let vxlan = [0x08, 0, 0, 0, 0, 0x10, 0x01, 0];
    let mut n = 0;
    assert_eq!(gso::cut_tunnelled(&vxlan, &f, 1398, |_, _| n += 1), Some(3));
    assert_eq!(n, 3);
    let never = |_: &[u8], _: &[u8]| panic!("cut");
    assert_eq!(gso::cut_tunnelled(&vxlan[..7], &f, 1398, never), None);
    for frame in [&f[..40], &f[..]] {
        for mss in [0, 31] {
            assert_eq!(gso::cut_tunnelled(&vxlan, frame, mss, never), None);
        }
    }
    // RCO for another start than the TCP header's is no burst of ours.
    let rco = [0x08, 0x20, 0, 0, 0, 0x10, 0x01, 18];
    assert_eq!(gso::cut_tunnelled(&rco, &f, 1398, never), None);
    for k in 0..f.len().min(200) {
        let _ = gso::cut_tunnelled(&vxlan, &f[..k], 1398, |_, _| {});
    }
}

/// Node 2 of `TOPO`: web3 here, web1 behind node 1's VTEP.
fn topo_peer() -> String {
    let swap = [
        (
            "name = \"node-1\"\ndata_path_addr = \"192.0.2.10\"",
            "name = \"node-2\"\ndata_path_addr = \"192.0.2.11\"",
        ),
        (
            "ip = \"10.0.9.2\"\n",
            "ip = \"10.0.9.2\"\nvtep = \"192.0.2.10\"\n",
        ),
        (
            "ip = \"10.0.9.3\"\nvtep = \"192.0.2.11\"\n",
            "ip = \"10.0.9.3\"\n",
        ),
    ];
    swap.iter().fold(TOPO.to_string(), |t, (from, to)| {
        assert_eq!(t.matches(from).count(), 1, "{from}");
        t.replace(from, to)
    })
}

fn with_rco(text: &str) -> String {
    text.replacen(
        "\n\n[[network]]",
        "\nremote_checksum_offload = true\n\n[[network]]",
        1,
    )
}

/// What node 2 writes to web3's port for the datagrams node 1 sent: each frame, with its open
/// checksum finished, and whether it came open.
fn received(peer: &mut Dataplane, sent: &[(Target, Vec<u8>)]) -> Vec<(Vec<u8>, bool)> {
    let mut out = Output::new();
    let src = Ipv4Addr::new(192, 0, 2, 10);
    for (t, d) in sent {
        match t {
            Target::Underlay(u) if u.kind == UnderlayKind::EspUdp => {
                peer.from_underlay_esp_udp(0, src, d, &mut out)
            }
            _ => peer.from_underlay_udp(0, src, d, &mut out),
        }
    }
    out.iter_meta()
        .map(|(t, m, f)| {
            assert_eq!(t, Target::Port(PortId(0)), "web3's port");
            let mut f = f.to_vec();
            if let Some((start, offset)) = m.partial {
                gso::finish_checksum(&mut f, start.into(), offset.into()).unwrap();
            }
            (f, m.partial.is_some())
        })
        .collect()
}

/// The datagrams a node of topology `text` with tunnel GSO sends for the TSO burst `f` (behind
/// virtio-net header `hdr`) from its first port, which it must not refuse.
fn send_burst(
    text: &str,
    hdr: &[u8; crate::wire::vnet::HEADER_LEN],
    f: &[u8],
) -> Vec<(Target, Vec<u8>)> {
    let mut dp = dataplane(text);
    dp.set_tunnel_gso(true);
    let mut out = Output::new();
    dp.from_port_vnet(0, PortId(0), hdr, f, &mut out);
    assert_eq!(
        dp.counters().total_drops(),
        0,
        "{:?}",
        dp.counters().drops_by_name()
    );
    datagrams(&out, f)
}

#[test]
fn remote_checksum_offload_leaves_tcp_checksums_to_the_receiver() {
    let mut f = tcp_frame(WEB3, WEB1, [10, 0, 9, 2], [10, 0, 9, 3], 20_000);
    f[47] |= 0x08;
    let hdr = tso_header(1398);
    let plain = send_burst(TOPO, &hdr, &f);
    let rco = send_burst(&with_rco(TOPO), &hdr, &f);
    assert_eq!(rco.len(), 15);
    // On the wire: the RCO flag, the TCP checksum's start (34 >> 1), the field open.
    for ((_, p), (_, r)) in plain.iter().zip(&rco) {
        assert_eq!(&r[..8], &[0x08, 0x20, 0, 0, 0x00, 0x10, 0x01, 17]);
        assert_eq!(&r[8..58], &p[8..58], "headers but the TCP checksum");
        assert_eq!(&r[60..], &p[60..], "payload");
        assert_ne!(&r[58..60], &p[58..60]);
    }
    let want: Vec<(Vec<u8>, bool)> = received(&mut dataplane(&topo_peer()), &plain);
    assert_eq!(want.len(), 15);
    // A receiver whose runtime takes open checksums hands them on open; finished, they are
    // the segments' own checksums. A receiver whose runtime does not finishes them itself.
    let mut peer = dataplane(&with_rco(&topo_peer()));
    peer.set_partial_checksums(true);
    let got = received(&mut peer, &rco);
    assert!(got.iter().all(|(_, open)| *open));
    assert_eq!(peer.counters().events.rco_received, 15, "counted as taken");
    let frames = |v: &[(Vec<u8>, bool)]| v.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>();
    assert_eq!(frames(&got), frames(&want));
    let got = received(&mut dataplane(&with_rco(&topo_peer())), &rco);
    assert_eq!(got, want);
    // Checksums of datagrams without the flag stay as they came.
    let mut peer = dataplane(&with_rco(&topo_peer()));
    peer.set_partial_checksums(true);
    assert_eq!(received(&mut peer, &plain), want);
    assert_eq!(peer.counters().events.rco_received, 0);
}

#[test]
fn remote_checksum_offload_travels_inside_esp() {
    let mut f = tcp_frame(WEB3, WEB1, [10, 0, 9, 2], [10, 0, 9, 3], 20_000);
    f[47] |= 0x08;
    // Within the encrypted network's MTU.
    let hdr = tso_header(1300);
    let plain = send_burst(&encrypted(TOPO), &hdr, &f);
    let rco = send_burst(&with_rco(&encrypted(TOPO)), &hdr, &f);
    assert_eq!((plain.len(), rco.len()), (16, 16));
    for ((t, p), (_, r)) in plain.iter().zip(&rco) {
        assert!(matches!(t, Target::Underlay(d) if d.kind == UnderlayKind::EspUdp));
        assert_eq!(p.len(), r.len());
        assert_eq!(&p[..8], &r[..8], "SPI and sequence number");
    }
    let peer_text = encrypted(&topo_peer());
    let want = received(&mut dataplane(&peer_text), &plain);
    assert_eq!(want.len(), 16);
    assert!(want.iter().all(|(_, open)| !open));
    // Opened, the segments' checksums are open for a runtime that takes them, and finish to
    // the segments' own; a runtime that does not gets them finished.
    let mut peer = dataplane(&with_rco(&peer_text));
    peer.set_partial_checksums(true);
    let got = received(&mut peer, &rco);
    assert!(got.iter().all(|(_, open)| *open), "the checksums came open");
    assert_eq!(
        peer.counters().events.rco_received,
        16,
        "counted inside ESP too"
    );
    let frames = |v: &[(Vec<u8>, bool)]| v.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>();
    assert_eq!(frames(&got), frames(&want));
    assert_eq!(received(&mut dataplane(&peer_text), &rco), want);
}

#[test]
fn remote_checksum_offload_that_does_not_fit_its_frame_is_dropped() {
    let mut f = tcp_frame(WEB3, WEB1, [10, 0, 9, 2], [10, 0, 9, 3], 100);
    let mut d = vec![0x08, 0x20, 0, 0, 0x00, 0x10, 0x01, 17];
    d.extend_from_slice(&f);
    let mut peer = dataplane(&with_rco(&topo_peer()));
    let mut out = Output::new();
    let src = Ipv4Addr::new(192, 0, 2, 10);
    peer.from_underlay_udp(0, src, &d, &mut out);
    assert_eq!(out.len(), 1, "a fitting one is taken");
    // Another start, UDP's field on TCP, a start past the frame, a frame that is not IPv4.
    for last in [18u8, 17 | 0x80, 0x7f] {
        d[7] = last;
        peer.from_underlay_udp(0, src, &d, &mut out);
    }
    // A fragment (MF), then a frame that is not IPv4.
    d[7] = 17;
    let mut frag = d.clone();
    frag[8 + 20] |= 0x20;
    crate::wire::ipv4::fill_checksum(&mut frag[8 + 14..8 + 34]);
    peer.from_underlay_udp(0, src, &frag, &mut out);
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    d[8..].copy_from_slice(&f);
    peer.from_underlay_udp(0, src, &d, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(peer.counters().dropped(DropReason::MalformedInner), 5);
    assert_eq!(
        peer.counters().events.rco_received,
        1,
        "refused ones are not counted"
    );
}

#[test]
fn any_node_finishes_an_open_checksum_over_the_packet_not_its_padding() {
    let f = tcp_frame(WEB3, WEB1, [10, 0, 9, 2], [10, 0, 9, 3], 100);
    let mut open = f.clone();
    open[50..52].copy_from_slice(
        &checksum::pseudo_header_ipv4(&f[26..30], &f[30..34], 6, 120).to_be_bytes(),
    );
    let mut d = vec![0x08, 0x20, 0, 0, 0x00, 0x10, 0x01, 17];
    d.extend_from_slice(&open);
    d.extend_from_slice(&[0xee; 6]);
    // Peers that do not send it open may still receive it (as Linux's remcsumrx does).
    for text in [topo_peer(), with_rco(&topo_peer())] {
        let mut peer = dataplane(&text);
        let mut out = Output::new();
        peer.from_underlay_udp(0, Ipv4Addr::new(192, 0, 2, 10), &d, &mut out);
        assert_eq!(emitted(&out), vec![(Target::Port(PortId(0)), f.clone())]);
    }
}
