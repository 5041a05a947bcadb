//! swarmnet against implementations it did not write: the Linux kernel's vxlan device (the
//! capture in `fixtures/kernel-vxlan/`, see its README.md) and Wireshark's VXLAN dissector.
//!
//! Decapsulating what the kernel sent must give exactly the frames the kernel's vx0 carried;
//! encapsulating those frames must give datagrams that match the kernel's in every field RFC 7348
//! fixes, with the inner frames byte for byte. Fields the RFC leaves to the VTEP (outer IP ID,
//! which source port a flow gets, the UDP checksum) are checked against their own rules instead.

mod common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use common::{fixture, on_path, pcap_link_type, read_pcap, replay, TempDir};
use etherparse::{IpNumber, NetSlice, SlicedPacket, TransportSlice};
use pcap_file::DataLink;

const NODE_VTEP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const KERNEL_VTEP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
const MY_WEB: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 2);
const VNI: u32 = 4097;
const VXLAN_PORT: u16 = 4789;
/// The inner protocols of the capture, in order: 3 pings, a TCP SYN, a UDP datagram, a large ping.
const INNER_PROTOCOLS: [&str; 6] = ["icmp", "icmp", "icmp", "tcp", "udp", "icmp"];

/// One VXLAN datagram taken apart.
struct Vxlan<'a> {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    /// The header checksum field and the checksum computed over the header.
    ip_checksum: (u16, u16),
    src_port: u16,
    dst_port: u16,
    vxlan_flags: u8,
    vni: u32,
    inner: &'a [u8],
}

/// Takes apart an outer IPv4/UDP/VXLAN packet sliced by etherparse (from Ethernet or raw IP).
fn vxlan(packet: SlicedPacket<'_>) -> Vxlan<'_> {
    let Some(NetSlice::Ipv4(ip)) = packet.net else {
        panic!("outer packet is not IPv4");
    };
    let Some(TransportSlice::Udp(udp)) = packet.transport else {
        panic!("outer packet is not UDP");
    };
    let h = ip.header();
    let payload = udp.payload();
    assert!(
        payload.len() >= 8,
        "UDP payload shorter than a VXLAN header"
    );
    Vxlan {
        src: h.source_addr(),
        dst: h.destination_addr(),
        ttl: h.ttl(),
        ip_checksum: (h.header_checksum(), h.to_header().calc_header_checksum()),
        src_port: udp.source_port(),
        dst_port: udp.destination_port(),
        vxlan_flags: payload[0],
        vni: u32::from_be_bytes([0, payload[4], payload[5], payload[6]]),
        inner: &payload[8..],
    }
}

/// What names an inner flow: addresses, protocol and, for TCP and UDP, the ports.
type FlowKey = (Ipv4Addr, Ipv4Addr, u8, Option<(u16, u16)>);

fn inner_flow(frame: &[u8]) -> FlowKey {
    let p = SlicedPacket::from_ethernet(frame).expect("inner frame parses");
    let Some(NetSlice::Ipv4(ip)) = p.net else {
        panic!("inner frame is not IPv4");
    };
    let h = ip.header();
    let ports = match p.transport {
        Some(TransportSlice::Tcp(t)) => Some((t.source_port(), t.destination_port())),
        Some(TransportSlice::Udp(u)) => Some((u.source_port(), u.destination_port())),
        _ => None,
    };
    (h.source_addr(), h.destination_addr(), h.protocol().0, ports)
}

fn inner_dst(frame: &[u8]) -> Ipv4Addr {
    inner_flow(frame).1
}

/// Replays the kernel's underlay capture through node-1 (decapsulation).
fn replay_decap(out: &Path) {
    replay(
        &fixture("kernel-vxlan/topology.toml"),
        &[("underlay", &fixture("kernel-vxlan/in/underlay.pcap"))],
        out,
    );
}

/// Replays the kernel's inner frames through the kernel side's view (encapsulation).
fn replay_encap(out: &Path) {
    replay(
        &fixture("kernel-vxlan/reverse-topology.toml"),
        &[("kernel-peer", &fixture("kernel-vxlan/kernel-inner.pcap"))],
        out,
    );
}

fn counters(dir: &Path) -> serde_json::Value {
    let path = dir.join("counters.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn decapsulation_gives_the_frames_the_kernel_delivered() {
    let dir = TempDir::new("kernel-decap");
    replay_decap(dir.path());

    let expected: Vec<Vec<u8>> = read_pcap(&fixture("kernel-vxlan/kernel-inner.pcap"))
        .into_iter()
        .map(|(_, frame)| frame)
        .filter(|frame| inner_dst(frame) == MY_WEB)
        .collect();
    assert_eq!(expected.len(), 6, "the fixture has 6 frames to 10.0.9.2");

    let out = dir.path().join("my-web.1.pcap");
    assert_eq!(pcap_link_type(&out), DataLink::ETHERNET);
    let got: Vec<Vec<u8>> = read_pcap(&out).into_iter().map(|(_, f)| f).collect();
    assert_eq!(got.len(), expected.len(), "frame count on my-web.1");
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "frame {i} on my-web.1 differs from the kernel's vx0");
    }

    let c = counters(dir.path());
    assert_eq!(c["drops"], serde_json::json!({}), "no drops expected: {c}");
    assert_eq!(c["ports"]["my-web.1"]["tx_packets"], 6, "{c}");
    assert_eq!(c["ports"]["underlay"]["rx_packets"], 6, "{c}");
}

#[test]
fn encapsulation_matches_the_kernel() {
    let dir = TempDir::new("kernel-encap");
    replay_encap(dir.path());

    let c = counters(dir.path());
    assert_eq!(c["drops"], serde_json::json!({}), "no drops expected: {c}");
    assert_eq!(c["ports"]["underlay"]["tx_packets"], 6, "{c}");

    let ours_path = dir.path().join("underlay.pcap");
    assert_eq!(pcap_link_type(&ours_path), DataLink::RAW);
    let ours_raw = read_pcap(&ours_path);
    let kernel_raw = read_pcap(&fixture("kernel-vxlan/in/underlay.pcap"));
    assert_eq!(ours_raw.len(), kernel_raw.len(), "datagram count");

    let ours: Vec<Vxlan> = ours_raw
        .iter()
        .map(|(_, d)| vxlan(SlicedPacket::from_ip(d).expect("our datagram parses")))
        .collect();
    let kernel: Vec<Vxlan> = kernel_raw
        .iter()
        .map(|(_, f)| vxlan(SlicedPacket::from_ethernet(f).expect("kernel frame parses")))
        .collect();

    for (i, (o, k)) in ours.iter().zip(&kernel).enumerate() {
        assert_eq!(
            (k.src, k.dst),
            (KERNEL_VTEP, NODE_VTEP),
            "kernel packet {i}"
        );
        assert_eq!(
            (o.src, o.dst),
            (k.src, k.dst),
            "packet {i}: outer addresses"
        );
        assert_eq!(o.dst_port, VXLAN_PORT, "packet {i}: UDP destination port");
        assert_eq!(o.dst_port, k.dst_port, "packet {i}: UDP destination port");
        assert!(
            o.src_port >= 49152,
            "packet {i}: UDP source port {} outside 49152-65535",
            o.src_port
        );
        assert_eq!(o.vxlan_flags, 0x08, "packet {i}: VXLAN flags");
        assert_eq!(o.vxlan_flags, k.vxlan_flags, "packet {i}: VXLAN flags");
        assert_eq!(o.vni, VNI, "packet {i}: VNI");
        assert_eq!(o.vni, k.vni, "packet {i}: VNI");
        assert_eq!(o.inner, k.inner, "packet {i}: inner frame differs");
        assert_eq!(
            o.ip_checksum.0, o.ip_checksum.1,
            "packet {i}: IPv4 checksum"
        );
        assert_eq!(
            k.ip_checksum.0, k.ip_checksum.1,
            "kernel packet {i}: checksum"
        );
        assert_eq!(o.ttl, 64, "packet {i}: TTL");
        assert_eq!(o.ttl, k.ttl, "packet {i}: TTL");
    }

    // One flow, one source port (RFC 7348 section 5, so the underlay keeps the flow in
    // order), and the same grouping of packets into ports as the kernel's.
    let mut port_of_flow: BTreeMap<FlowKey, u16> = BTreeMap::new();
    for (i, o) in ours.iter().enumerate() {
        let port = *port_of_flow
            .entry(inner_flow(o.inner))
            .or_insert(o.src_port);
        assert_eq!(
            o.src_port, port,
            "packet {i}: source port differs within its flow"
        );
    }
    assert_eq!(
        ours[0].src_port, ours[1].src_port,
        "pings 1 and 2 share a port"
    );
    assert_eq!(
        ours[1].src_port, ours[2].src_port,
        "pings 2 and 3 share a port"
    );
    for i in 0..ours.len() {
        for j in 0..ours.len() {
            assert_eq!(
                ours[i].src_port == ours[j].src_port,
                kernel[i].src_port == kernel[j].src_port,
                "packets {i} and {j}: ours {} and {}, the kernel's {} and {}",
                ours[i].src_port,
                ours[j].src_port,
                kernel[i].src_port,
                kernel[j].src_port
            );
        }
    }
    // The protocol numbers match the list the tshark test expects.
    for (i, (o, name)) in ours.iter().zip(INNER_PROTOCOLS).enumerate() {
        let proto = IpNumber(inner_flow(o.inner).2);
        let want = match name {
            "icmp" => IpNumber::ICMP,
            "tcp" => IpNumber::TCP,
            _ => IpNumber::UDP,
        };
        assert_eq!(proto, want, "packet {i}: inner protocol");
    }
}

#[test]
fn tshark_decodes_our_vxlan() {
    if !on_path("tshark") {
        eprintln!("SKIPPED: tshark not installed (scripts/test.sh installs it as root)");
        return;
    }
    let dir = TempDir::new("kernel-tshark");
    replay_encap(dir.path());
    let out = Command::new("tshark")
        .arg("-r")
        .arg(dir.path().join("underlay.pcap"))
        .args(["-T", "fields", "-E", "separator=/t"])
        .args([
            "-e",
            "vxlan.vni",
            "-e",
            "vxlan.flags",
            "-e",
            "ip.src",
            "-e",
            "ip.dst",
        ])
        .args(["-e", "frame.protocols", "-e", "icmp.type"])
        .output()
        .expect("tshark runs");
    // stderr only carries tshark's warnings (such as running as root).
    assert!(out.status.success(), "tshark failed: {}", out.status);
    let text = String::from_utf8(out.stdout).expect("tshark prints UTF-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), INNER_PROTOCOLS.len(), "tshark output:\n{text}");
    for (i, (line, proto)) in lines.iter().zip(INNER_PROTOCOLS).enumerate() {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 6, "line {i}: {line:?}");
        assert_eq!(f[0], VNI.to_string(), "line {i}: VNI: {line:?}");
        // The 16-bit flags field: the I flag (0x08 in the first byte) and nothing else.
        let flags = u16::from_str_radix(f[1].trim_start_matches("0x"), 16)
            .unwrap_or_else(|e| panic!("line {i}: flags {:?}: {e}", f[1]));
        assert_eq!(flags, 0x0800, "line {i}: VXLAN flags: {line:?}");
        // Outer then inner address.
        assert_eq!(f[2], "192.0.2.11,10.0.9.3", "line {i}: ip.src: {line:?}");
        assert_eq!(f[3], "192.0.2.10,10.0.9.2", "line {i}: ip.dst: {line:?}");
        let chain = format!("vxlan:eth:ethertype:ip:{proto}");
        assert!(
            f[4].starts_with("raw:ip:udp:") && f[4].contains(&chain),
            "line {i}: protocols {:?}, want {chain}",
            f[4]
        );
        let icmp_type = if proto == "icmp" { "8" } else { "" };
        assert_eq!(f[5], icmp_type, "line {i}: icmp.type: {line:?}");
    }
}

#[test]
fn replay_is_byte_identical_across_runs() {
    let replays = [
        ("decap", replay_decap as fn(&Path)),
        ("encap", replay_encap),
    ];
    for (name, run) in replays {
        let a = TempDir::new(&format!("kernel-det-{name}-a"));
        let b = TempDir::new(&format!("kernel-det-{name}-b"));
        run(a.path());
        run(b.path());
        let files = |d: &Path| {
            let mut names: Vec<String> = std::fs::read_dir(d)
                .expect("output dir lists")
                .map(|e| {
                    e.expect("dir entry")
                        .file_name()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            names.sort();
            names
        };
        let names = files(a.path());
        assert_eq!(
            names,
            files(b.path()),
            "{name}: the runs wrote different files"
        );
        assert!(
            names.len() >= 2,
            "{name}: expected a pcap and counters.json: {names:?}"
        );
        for n in &names {
            let x = std::fs::read(a.path().join(n)).expect("read first run");
            let y = std::fs::read(b.path().join(n)).expect("read second run");
            assert!(x == y, "{name}: {n} differs between two runs");
        }
    }
}
