//! Through `swarmnet replay`: the underlay accepts VXLAN for a network only from that network's
//! VTEPs, and no malformed inner frame reaches a port. Each refusal is a counted drop.

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::DataLink;
use serde_json::Value;

mod common;
use common::{fixture, read_pcap, replay, TempDir};

const NODE1: [u8; 4] = [192, 0, 2, 10];
const NODE2: [u8; 4] = [192, 0, 2, 11];
/// No VTEP of any network (TEST-NET-3, as in the report that found the hole).
const STRANGER: [u8; 4] = [203, 0, 113, 7];
const WEB1_MAC: [u8; 6] = [0x02, 0x42, 0x0a, 0x00, 0x09, 0x02];
const WEB3_MAC: [u8; 6] = [0x02, 0x42, 0x0a, 0x00, 0x09, 0x03];

/// An IPv4/UDP/VXLAN datagram (VNI 4097) from `src` to node-1 carrying `inner`.
fn vxlan(src: [u8; 4], inner: &[u8]) -> Vec<u8> {
    let mut payload = vec![0x08, 0, 0, 0, 0x00, 0x10, 0x01, 0];
    payload.extend_from_slice(inner);
    let mut out = Vec::new();
    PacketBuilder::ipv4(src, NODE1, 64)
        .udp(51000, 4789)
        .write(&mut out, &payload)
        .expect("vxlan");
    out
}

/// An Ethernet frame my-web.3 -> my-web.1 with an ICMP echo request.
fn ping_to_web1() -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(WEB3_MAC, WEB1_MAC)
        .ipv4([10, 0, 9, 3], [10, 0, 9, 2], 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut out, &[0x42; 8])
        .expect("ping");
    out
}

fn write_raw_pcap(path: &Path, packets: &[Vec<u8>]) {
    let header = PcapHeader {
        datalink: DataLink::IPV4,
        ..Default::default()
    };
    let mut w = PcapWriter::with_header(File::create(path).expect("create pcap"), header)
        .expect("pcap header");
    for (i, p) in packets.iter().enumerate() {
        let ts = Duration::from_secs(1_700_000_000) + Duration::from_millis(i as u64);
        w.write_packet(&PcapPacket::new(ts, p.len() as u32, p))
            .expect("write packet");
    }
}

fn run(packets: &[Vec<u8>]) -> (TempDir, Value) {
    let dir = TempDir::new("replay-vtep");
    let input = dir.path().join("underlay-in.pcap");
    write_raw_pcap(&input, packets);
    let out = dir.path().join("out");
    replay(
        &fixture("refusals/topology.toml"),
        &[("underlay", &input)],
        &out,
    );
    let text = std::fs::read_to_string(out.join("counters.json")).expect("counters.json");
    let counters = serde_json::from_str(&text).expect("counters are JSON");
    (dir, counters)
}

fn delivered(dir: &TempDir, port: &str) -> Vec<Vec<u8>> {
    let path = dir.path().join("out").join(format!("{port}.pcap"));
    if !path.exists() {
        return Vec::new();
    }
    read_pcap(&path).into_iter().map(|(_, f)| f).collect()
}

#[test]
fn a_datagram_from_no_vtep_never_reaches_a_port() {
    let inner = ping_to_web1();
    let (dir, c) = run(&[vxlan(STRANGER, &inner)]);
    assert!(delivered(&dir, "my-web.1").is_empty(), "{c}");
    assert_eq!(c["drops"], serde_json::json!({ "unknown_vtep": 1 }), "{c}");
    assert_eq!(c["ports"]["my-web.1"]["tx_packets"], 0, "{c}");
    assert_eq!(c["ports"]["underlay"]["rx_packets"], 1, "{c}");

    // The same datagram from the network's own VTEP is delivered: the source decides.
    let (dir, c) = run(&[vxlan(STRANGER, &inner), vxlan(NODE2, &inner)]);
    assert_eq!(delivered(&dir, "my-web.1"), vec![inner], "{c}");
    assert_eq!(c["drops"], serde_json::json!({ "unknown_vtep": 1 }), "{c}");
}

#[test]
fn a_malformed_inner_frame_never_reaches_a_port() {
    // An Ethernet header with EtherType ARP and no ARP body (what the fuzzer found), and an
    // IPv4 packet whose total length runs past the frame, both from the genuine peer.
    let mut arp_header_only = WEB1_MAC.to_vec();
    arp_header_only.extend_from_slice(&WEB3_MAC);
    arp_header_only.extend_from_slice(&[0x08, 0x06]);
    let mut cut = ping_to_web1();
    cut.truncate(cut.len() - 4);
    let (dir, c) = run(&[vxlan(NODE2, &arp_header_only), vxlan(NODE2, &cut)]);
    assert!(delivered(&dir, "my-web.1").is_empty(), "{c}");
    assert_eq!(
        c["drops"],
        serde_json::json!({ "malformed_inner": 2 }),
        "{c}"
    );
}
