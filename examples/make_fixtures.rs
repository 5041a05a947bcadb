//! Writes the input captures of the replay goldens under `fixtures/` (not the expected outputs:
//! `scripts/regen-goldens.sh` makes those with `swarmnet replay`).
//!
//! Frames are built with etherparse, so headers and checksums come from code we did not write.
//! Run from the repository root: `cargo run --example make_fixtures`.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::Path;
use std::time::Duration;

use etherparse::{IpHeaders, IpNumber, Ipv4Header, PacketBuilder};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, TsResolution};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};

const WEB1_MAC: [u8; 6] = [0x02, 0x42, 0x0a, 0x00, 0x09, 0x02];
const WEB2_MAC: [u8; 6] = [0x02, 0x42, 0x0a, 0x00, 0x09, 0x04];
const WEB3_MAC: [u8; 6] = [0x02, 0x42, 0x0a, 0x00, 0x09, 0x03];
const WEB1: [u8; 4] = [10, 0, 9, 2];
const WEB2: [u8; 4] = [10, 0, 9, 4];
const WEB3: [u8; 4] = [10, 0, 9, 3];
const GATEWAY: [u8; 4] = [10, 0, 9, 1];
const NODE1: [u8; 4] = [192, 0, 2, 10];
const NODE2: [u8; 4] = [192, 0, 2, 11];
const VNI: u32 = 4097;

/// The topology every golden case shares: node-1 with two local tasks and one remote task.
const TOPOLOGY: &str = r#"# node-1's view: my-web.1 and my-web.2 run here, my-web.3 on node-2 (192.0.2.11).
[node]
name = "node-1"
data_path_addr = "192.0.2.10"

[[network]]
name = "my-network"
vni = 4097
subnet = "10.0.9.0/24"
gateway = "10.0.9.1"

[[endpoint]]
name = "my-web.1"
network = "my-network"
ip = "10.0.9.2"

[[endpoint]]
name = "my-web.2"
network = "my-network"
ip = "10.0.9.4"

[[endpoint]]
name = "my-web.3"
network = "my-network"
ip = "10.0.9.3"
vtep = "192.0.2.11"
"#;

/// The encrypted variant: the same node and tasks, my-network encrypted with three fixed keys
/// (tags 1, 2, 3; primary 2). `{transport}` is "ip" or "udp".
const TOPOLOGY_ESP: &str = r#"# node-1's view of an encrypted network: my-web.1 here, my-web.3 on node-2 (192.0.2.11).
# Fixed test keys, never to be used elsewhere.
[node]
name = "node-1"
data_path_addr = "192.0.2.10"

[[network]]
name = "my-network"
vni = 4097
subnet = "10.0.9.0/24"
gateway = "10.0.9.1"
encrypted = true

[encryption]
keys = [ { tag = 1, key = "000102030405060708090a0b0c0d0e0f" }, { tag = 2, key = "101112131415161718191a1b1c1d1e1f" }, { tag = 3, key = "202122232425262728292a2b2c2d2e2f" } ]
primary = 2
transport = "{transport}"
udp_port = 4500

[[endpoint]]
name = "my-web.1"
network = "my-network"
ip = "10.0.9.2"

[[endpoint]]
name = "my-web.3"
network = "my-network"
ip = "10.0.9.3"
vtep = "192.0.2.11"
"#;

/// `TOPOLOGY` with a client task and service my-web (VIP 10.0.9.100) run by my-web.2 (here)
/// and my-web.3 (on node-2).
const TOPOLOGY_VIP: &str = r#"# node-1's view: a client and my-web.2 run here, my-web.3 on node-2 (192.0.2.11);
# service my-web has VIP 10.0.9.100 and its tasks my-web.2 and my-web.3.
[node]
name = "node-1"
data_path_addr = "192.0.2.10"

[[network]]
name = "my-network"
vni = 4097
subnet = "10.0.9.0/24"
gateway = "10.0.9.1"

[[endpoint]]
name = "client"
network = "my-network"
ip = "10.0.9.5"

[[endpoint]]
name = "my-web.2"
network = "my-network"
ip = "10.0.9.4"
task = "my-web.2.x2y2z2"

[[endpoint]]
name = "my-web.3"
network = "my-network"
ip = "10.0.9.3"
vtep = "192.0.2.11"
task = "my-web.3.x3y3z3"

[[endpoint]]
name = "db.1"
network = "my-network"
ip = "10.0.9.6"
task = "db.1.d1d1d1"

[[endpoint]]
name = "db.2"
network = "my-network"
ip = "10.0.9.7"
vtep = "192.0.2.11"
task = "db.2.d2d2d2"

[[service]]
name = "my-web"
network = "my-network"
vip = "10.0.9.100"
aliases = ["web"]
tasks = ["my-web.2", "my-web.3"]

# endpoint mode dnsrr: no VIP
[[service]]
name = "db"
network = "my-network"
tasks = ["db.1", "db.2"]
"#;

const CLIENT: [u8; 4] = [10, 0, 9, 5];

/// A DNS query from the client (source port `sport`) to its resolver, the gateway's port 53.
fn dns_query(sport: u16, id: u16, name: &str, rtype: hickory_proto::rr::RecordType) -> Vec<u8> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::Name;
    let mut m = Message::new();
    m.set_id(id).set_recursion_desired(true);
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), rtype));
    let payload = m.to_vec().expect("query");
    let mut v = Vec::new();
    PacketBuilder::ethernet2(mac_of(CLIENT), mac_of(GATEWAY))
        .ip(ip4(CLIENT, GATEWAY, IpNumber::UDP, id, false))
        .udp(sport, 53)
        .write(&mut v, &payload)
        .expect("dns query");
    v
}
const VIP: [u8; 4] = [10, 0, 9, 100];

fn mac_of(ip: [u8; 4]) -> [u8; 6] {
    [0x02, 0x42, ip[0], ip[1], ip[2], ip[3]]
}

/// A TCP segment between the client (port `cport`) and `peer`:80 (`outbound`: from the
/// client, to the VIP; else from backend `peer`).
fn vip_tcp(outbound: bool, peer: [u8; 4], cport: u16, seq: u32, flags: &str, ack: u32) -> Vec<u8> {
    let (smac, dmac, src, dst, sp, dp) = if outbound {
        (mac_of(CLIENT), mac_of(VIP), CLIENT, VIP, cport, 80)
    } else {
        (mac_of(peer), mac_of(CLIENT), peer, CLIENT, 80, cport)
    };
    let mut b = PacketBuilder::ethernet2(smac, dmac)
        .ip(ip4(src, dst, IpNumber::TCP, seq as u16, true))
        .tcp(sp, dp, seq, 64240);
    if flags.contains('S') {
        b = b.syn();
    }
    if flags.contains('A') {
        b = b.ack(ack);
    }
    let mut v = Vec::new();
    b.write(&mut v, &[]).expect("tcp");
    v
}

/// The first client port from `from` whose flow to the VIP the balancer gives `backend`
/// (computed with swarmnet's own Maglev table, so the fixture stays true to the tables).
fn port_to(backend: [u8; 4], from: u16) -> u16 {
    use swarmnet::dataplane::lb::maglev::{flow_hash, Maglev};
    let table = Maglev::new(&["my-web.2.x2y2z2", "my-web.3.x3y3z3"]);
    let backends = [WEB2, WEB3];
    (from..u16::MAX)
        .find(|p| {
            let h = flow_hash(6, CLIENT.into(), *p, VIP.into(), 80);
            table.pick(h).map(|i| backends[i]) == Some(backend)
        })
        .expect("a port for each backend")
}

/// The keys of `TOPOLOGY_ESP`, by tag.
fn esp_key(tag: u32) -> [u8; 16] {
    let base = 0x10 * (tag as u8 - 1);
    std::array::from_fn(|i| base + i as u8)
}

/// FNV-1a-32 over (src as ::ffff:a.b.c.d, tag big-endian, dst as ::ffff:a.b.c.d): the SPI.
fn esp_spi(src: [u8; 4], dst: [u8; 4], tag: u32) -> u32 {
    let mapped = |a: [u8; 4]| {
        let mut m = [0u8; 16];
        m[10] = 0xff;
        m[11] = 0xff;
        m[12..].copy_from_slice(&a);
        m
    };
    let mut h: u32 = 0x811c_9dc5;
    for b in mapped(src)
        .iter()
        .chain(&tag.to_be_bytes())
        .chain(&mapped(dst))
    {
        h = (h ^ u32::from(*b)).wrapping_mul(0x0100_0193);
    }
    h
}

/// An ESP packet (RFC 4303/4106, ESN, 16-byte ICV) from `src` to `dst` under key `tag` and
/// `key`, sequence number `seq`, carrying the VXLAN UDP datagram of `inner` (VNI 4097).
/// Written here with ring directly, apart from swarmnet's own sealing code.
fn esp_packet(
    src: [u8; 4],
    dst: [u8; 4],
    tag: u32,
    key: [u8; 16],
    seq: u64,
    inner: &[u8],
) -> Vec<u8> {
    let spi = esp_spi(src, dst, tag);
    let mut plain = Vec::new();
    let udp_len = (16 + inner.len()) as u16;
    plain.extend_from_slice(&51000u16.to_be_bytes());
    plain.extend_from_slice(&4789u16.to_be_bytes());
    plain.extend_from_slice(&udp_len.to_be_bytes());
    plain.extend_from_slice(&[0, 0]);
    plain.extend_from_slice(&[0x08, 0, 0, 0, 0x00, 0x10, 0x01, 0]);
    plain.extend_from_slice(inner);
    let pad = (4 - (plain.len() + 2) % 4) % 4;
    plain.extend((1..=pad as u8).take(pad));
    plain.push(pad as u8);
    plain.push(17);
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(&spi.to_be_bytes());
    nonce[4..].copy_from_slice(&seq.to_be_bytes());
    let mut aad = [0u8; 12];
    aad[..4].copy_from_slice(&spi.to_be_bytes());
    aad[4..].copy_from_slice(&seq.to_be_bytes());
    let k = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &key).expect("key"));
    let tag = k
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut plain,
        )
        .expect("seal");
    let mut out = Vec::new();
    out.extend_from_slice(&spi.to_be_bytes());
    out.extend_from_slice(&(seq as u32).to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&plain);
    out.extend_from_slice(tag.as_ref());
    out
}

/// ESP as IP protocol 50 from node-2 to node-1.
fn esp_ip(esp: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv4(NODE2, NODE1, 64)
        .write(&mut out, IpNumber(50), esp)
        .expect("esp ip");
    out
}

/// ESP in UDP (RFC 3948) from node-2 to node-1, port 4500 both ways.
fn esp_udp(esp: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv4(NODE2, NODE1, 64)
        .udp(4500, 4500)
        .write(&mut out, esp)
        .expect("esp udp");
    out
}

/// A reply from my-web.3, sealed by node-2 under `tag` with sequence number `seq`.
fn sealed_reply(tag: u32, seq: u64, icmp_seq: u16) -> Vec<u8> {
    let inner = echo(WEB3_MAC, WEB1_MAC, WEB3, WEB1, true, icmp_seq, 56);
    esp_packet(NODE2, NODE1, tag, esp_key(tag), seq, &inner)
}

struct Capture {
    link: DataLink,
    packets: Vec<(Duration, Vec<u8>)>,
}

impl Capture {
    fn new(link: DataLink) -> Capture {
        Capture {
            link,
            packets: Vec::new(),
        }
    }

    /// Adds a packet at `ms` milliseconds after the fixtures' epoch.
    fn at(&mut self, ms: u64, bytes: Vec<u8>) -> &mut Capture {
        self.packets.push((
            Duration::from_secs(1_700_000_000) + Duration::from_millis(ms),
            bytes,
        ));
        self
    }

    fn write(&self, path: &Path) {
        let header = PcapHeader {
            datalink: self.link,
            ts_resolution: TsResolution::NanoSecond,
            ..PcapHeader::default()
        };
        let file = BufWriter::new(File::create(path).expect("create capture"));
        let mut w = PcapWriter::with_header(file, header).expect("pcap header");
        for (ts, data) in &self.packets {
            w.write_packet(&PcapPacket::new(*ts, data.len() as u32, data))
                .expect("write packet");
        }
    }
}

fn ip4(src: [u8; 4], dst: [u8; 4], proto: IpNumber, id: u16, df: bool) -> IpHeaders {
    let mut h = Ipv4Header::new(0, 64, proto, src, dst).expect("header");
    h.identification = id;
    h.dont_fragment = df;
    IpHeaders::Ipv4(h, Default::default())
}

fn echo(
    smac: [u8; 6],
    dmac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    reply: bool,
    seq: u16,
    size: usize,
) -> Vec<u8> {
    let b =
        PacketBuilder::ethernet2(smac, dmac).ip(ip4(src, dst, IpNumber::ICMP, 0x1000 + seq, true));
    let b = if reply {
        b.icmpv4_echo_reply(0x77, seq)
    } else {
        b.icmpv4_echo_request(0x77, seq)
    };
    let payload: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let mut v = Vec::new();
    b.write(&mut v, &payload).expect("echo");
    v
}

fn big(df: bool) -> Vec<u8> {
    // 1500-byte IPv4 packet (UDP, 1472 bytes of data): 50 bytes over the network MTU of 1450.
    let b = PacketBuilder::ethernet2(WEB1_MAC, WEB3_MAC)
        .ip(ip4(WEB1, WEB3, IpNumber::UDP, 0x2222, df))
        .udp(40000, 9000);
    let payload: Vec<u8> = (0..1472).map(|i| (i % 251) as u8).collect();
    let mut v = Vec::new();
    b.write(&mut v, &payload).expect("big");
    v
}

fn arp_request(target: [u8; 4]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&[0xff; 6]);
    v.extend_from_slice(&WEB1_MAC);
    v.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    v.extend_from_slice(&WEB1_MAC);
    v.extend_from_slice(&WEB1);
    v.extend_from_slice(&[0; 6]);
    v.extend_from_slice(&target);
    v
}

/// A TCP segment between my-web.1:40000 and my-web.3:80 (`outbound`: from my-web.1).
fn tcp(outbound: bool, seq: u32, flags: &str, ack: u32) -> Vec<u8> {
    let (smac, dmac, src, dst, sp, dp) = if outbound {
        (WEB1_MAC, WEB3_MAC, WEB1, WEB3, 40000, 80)
    } else {
        (WEB3_MAC, WEB1_MAC, WEB3, WEB1, 80, 40000)
    };
    let mut b = PacketBuilder::ethernet2(smac, dmac)
        .ip(ip4(src, dst, IpNumber::TCP, seq as u16, true))
        .tcp(sp, dp, seq, 64240);
    if flags.contains('S') {
        b = b.syn();
    }
    if flags.contains('A') {
        b = b.ack(ack);
    }
    let mut v = Vec::new();
    b.write(&mut v, &[]).expect("tcp");
    v
}

/// An outer IPv4/UDP datagram carrying a VXLAN header (`flags`, `vni`) and `inner`.
fn vxlan(src: [u8; 4], dst: [u8; 4], dport: u16, flags: u8, vni: u32, inner: &[u8]) -> Vec<u8> {
    let v = vni.to_be_bytes();
    let mut payload = vec![flags, 0, 0, 0, v[1], v[2], v[3], 0];
    payload.extend_from_slice(inner);
    let mut out = Vec::new();
    PacketBuilder::ipv4(src, dst, 64)
        .udp(51000, dport)
        .write(&mut out, &payload)
        .expect("vxlan");
    out
}

fn from_web3(inner: &[u8]) -> Vec<u8> {
    vxlan(NODE2, NODE1, 4789, 0x08, VNI, inner)
}

fn case(name: &str, captures: &[(&str, &Capture)]) {
    case_with(name, TOPOLOGY, captures);
}

fn case_with(name: &str, topology: &str, captures: &[(&str, &Capture)]) {
    let dir = Path::new("fixtures").join(name);
    let input = dir.join("in");
    fs::create_dir_all(&input).expect("fixture dir");
    fs::write(dir.join("topology.toml"), topology).expect("topology");
    for (port, cap) in captures {
        cap.write(&input.join(format!("{port}.pcap")));
    }
    println!("fixtures/{name}: {} input(s)", captures.len());
}

fn main() {
    let eth = DataLink::ETHERNET;
    let raw = DataLink::RAW;

    // ARP: answered locally for a remote task, the gateway and a local task; an unknown target
    // is dropped. Nothing reaches the underlay.
    let mut web1 = Capture::new(eth);
    web1.at(0, arp_request(WEB3))
        .at(1, arp_request(GATEWAY))
        .at(2, arp_request(WEB2))
        .at(3, arp_request([10, 0, 9, 99]));
    case("arp", &[("my-web.1", &web1)]);

    // Ping across VXLAN both ways: my-web.1 pings my-web.3 and my-web.3 pings my-web.1.
    let mut web1 = Capture::new(eth);
    let mut under = Capture::new(raw);
    web1.at(0, echo(WEB1_MAC, WEB3_MAC, WEB1, WEB3, false, 1, 56));
    under.at(
        1,
        from_web3(&echo(WEB3_MAC, WEB1_MAC, WEB3, WEB1, true, 1, 56)),
    );
    under.at(
        2,
        from_web3(&echo(WEB3_MAC, WEB1_MAC, WEB3, WEB1, false, 2, 56)),
    );
    web1.at(3, echo(WEB1_MAC, WEB3_MAC, WEB1, WEB3, true, 2, 56));
    case("ping-vxlan", &[("my-web.1", &web1), ("underlay", &under)]);

    // A TCP handshake from my-web.1 to my-web.3:80.
    let mut web1 = Capture::new(eth);
    let mut under = Capture::new(raw);
    web1.at(0, tcp(true, 1000, "S", 0));
    under.at(1, from_web3(&tcp(false, 5000, "SA", 1001)));
    web1.at(2, tcp(true, 1001, "A", 5001));
    case(
        "tcp-handshake",
        &[("my-web.1", &web1), ("underlay", &under)],
    );

    // Local delivery: my-web.1 and my-web.2 on the same node never touch the underlay.
    let mut web1 = Capture::new(eth);
    let mut web2 = Capture::new(eth);
    web1.at(0, echo(WEB1_MAC, WEB2_MAC, WEB1, WEB2, false, 1, 56));
    web2.at(1, echo(WEB2_MAC, WEB1_MAC, WEB2, WEB1, true, 1, 56));
    case("local", &[("my-web.1", &web1), ("my-web.2", &web2)]);

    // Underlay refusals: an unknown VNI, the I flag clear, truncated VXLAN headers and frames.
    let inner = echo(WEB3_MAC, WEB1_MAC, WEB3, WEB1, true, 1, 56);
    let mut under = Capture::new(raw);
    under.at(0, vxlan(NODE2, NODE1, 4789, 0x08, 4098, &inner));
    case("unknown-vni", &[("underlay", &under)]);
    let mut under = Capture::new(raw);
    under.at(0, vxlan(NODE2, NODE1, 4789, 0x00, VNI, &inner));
    case("i-flag-clear", &[("underlay", &under)]);
    let mut under = Capture::new(raw);
    let mut short = Vec::new();
    PacketBuilder::ipv4(NODE2, NODE1, 64)
        .udp(51000, 4789)
        .write(&mut short, &[0x08, 0, 0, 0, 0])
        .expect("short");
    under.at(0, short);
    under.at(1, from_web3(&inner[..10]));
    case("truncated-vxlan", &[("underlay", &under)]);

    // Larger than the MTU: with DF, "fragmentation needed" comes back; without, fragments go out.
    let mut web1 = Capture::new(eth);
    web1.at(0, big(true));
    case("oversize-df", &[("my-web.1", &web1)]);
    let mut web1 = Capture::new(eth);
    web1.at(0, big(false));
    case("oversize-no-df", &[("my-web.1", &web1)]);

    // Everything else a node refuses, one each.
    let mut web1 = Capture::new(eth);
    web1.at(0, echo(WEB2_MAC, WEB3_MAC, WEB1, WEB3, false, 1, 8)); // spoofed source MAC
    web1.at(
        1,
        echo(WEB1_MAC, [0xff; 6], WEB1, [10, 0, 9, 255], false, 2, 8),
    ); // broadcast
    web1.at(
        2,
        echo(
            WEB1_MAC,
            [0x02, 0x42, 0x0a, 0, 9, 0x63],
            WEB1,
            [10, 0, 9, 99],
            false,
            3,
            8,
        ),
    ); // unknown
    web1.at(3, echo(WEB1_MAC, WEB1_MAC, WEB1, WEB1, false, 4, 8)); // to itself
    web1.at(4, WEB1_MAC[..].to_vec()); // 6 bytes: not even an Ethernet header
    let mut under = Capture::new(raw);
    under.at(5, vxlan(NODE2, NODE1, 53, 0x08, VNI, &inner)); // UDP, not our port
    under.at(6, vxlan(NODE2, [192, 0, 2, 99], 4789, 0x08, VNI, &inner)); // another host's
    under.at(
        7,
        from_web3(&echo(WEB3_MAC, WEB3_MAC, WEB3, WEB3, false, 5, 8)),
    ); // a remote MAC
    let mut corrupt = from_web3(&inner);
    corrupt[40] ^= 0xff; // inside the UDP payload: the UDP checksum no longer verifies
    under.at(8, corrupt);
    under.at(9, vec![0x60, 0, 0, 0]); // IPv6
    case("refusals", &[("my-web.1", &web1), ("underlay", &under)]);

    // Encrypted network, ESP as IP protocol 50: my-web.1 pings my-web.3 twice (sealed with the
    // primary key, tag 2); replies arrive under tag 2 (sequence 1, 2) and under tag 3 from a
    // node that already moved its primary (every key of the ring is accepted).
    let esp_ip_topology = TOPOLOGY_ESP.replace("{transport}", "ip");
    let esp_udp_topology = TOPOLOGY_ESP.replace("{transport}", "udp");
    let mut web1 = Capture::new(eth);
    let mut under = Capture::new(raw);
    web1.at(0, echo(WEB1_MAC, WEB3_MAC, WEB1, WEB3, false, 1, 56));
    under.at(1, esp_ip(&sealed_reply(2, 1, 1)));
    web1.at(2, echo(WEB1_MAC, WEB3_MAC, WEB1, WEB3, false, 2, 56));
    under.at(3, esp_ip(&sealed_reply(2, 2, 2)));
    under.at(4, esp_ip(&sealed_reply(3, 1, 3)));
    case_with(
        "esp-ping",
        &esp_ip_topology,
        &[("my-web.1", &web1), ("underlay", &under)],
    );

    // The same with transport = "udp": ESP in UDP out; in, both forms are accepted.
    let mut web1 = Capture::new(eth);
    let mut under = Capture::new(raw);
    web1.at(0, echo(WEB1_MAC, WEB3_MAC, WEB1, WEB3, false, 1, 56));
    under.at(1, esp_udp(&sealed_reply(2, 1, 1)));
    web1.at(2, echo(WEB1_MAC, WEB3_MAC, WEB1, WEB3, false, 2, 56));
    under.at(3, esp_ip(&sealed_reply(2, 2, 2)));
    case_with(
        "esp-udp",
        &esp_udp_topology,
        &[("my-web.1", &web1), ("underlay", &under)],
    );

    // Every ESP refusal, one each, and one genuine packet.
    let genuine = sealed_reply(2, 1, 1);
    let mut under = Capture::new(raw);
    under.at(0, esp_ip(&genuine)); // delivered
    under.at(1, esp_ip(&genuine)); // esp_replay
    let mut tampered = sealed_reply(2, 2, 2);
    tampered[40] ^= 0x01;
    under.at(2, esp_ip(&tampered)); // esp_auth
    let inner = echo(WEB3_MAC, WEB1_MAC, WEB3, WEB1, true, 3, 56);
    under.at(
        3,
        esp_ip(&esp_packet(NODE2, NODE1, 2, [0xee; 16], 3, &inner)),
    ); // esp_auth: wrong key
    under.at(
        4,
        esp_ip(&esp_packet(NODE2, NODE1, 9, esp_key(1), 1, &inner)),
    ); // esp_unknown_spi
    under.at(5, from_web3(&inner)); // cleartext_on_encrypted
    under.at(6, esp_ip(&genuine[..20])); // malformed: shorter than an ESP packet
    under.at(7, esp_udp(&[0xff])); // not_vxlan: a NAT-keepalive
    case_with("esp-refusals", &esp_ip_topology, &[("underlay", &under)]);

    // Two TCP handshakes to service my-web's VIP: one lands on my-web.2 (here), one on my-web.3
    // (across VXLAN); the answers come back from the VIP. Then a ping to the VIP.
    let (local, remote) = (port_to(WEB2, 40000), port_to(WEB3, 40000));
    let mut client = Capture::new(eth);
    let mut web2 = Capture::new(eth);
    let mut under = Capture::new(raw);
    client.at(0, vip_tcp(true, WEB2, local, 1000, "S", 0));
    web2.at(1, vip_tcp(false, WEB2, local, 5000, "SA", 1001));
    client.at(2, vip_tcp(true, WEB2, local, 1001, "A", 5001));
    client.at(3, vip_tcp(true, WEB3, remote, 2000, "S", 0));
    under.at(
        4,
        from_web3(&vip_tcp(false, WEB3, remote, 7000, "SA", 2001)),
    );
    client.at(5, vip_tcp(true, WEB3, remote, 2001, "A", 7001));
    client.at(
        6,
        echo(mac_of(CLIENT), mac_of(VIP), CLIENT, VIP, false, 1, 56),
    );
    case_with(
        "vip-handshake",
        TOPOLOGY_VIP,
        &[
            ("client", &client),
            ("my-web.2", &web2),
            ("underlay", &under),
        ],
    );

    // An established flow through the VIP left idle: at 900 s the node resets both ends. (The
    // ARP at 1000 s only moves the replay's clock past the timeout.)
    let mut client = Capture::new(eth);
    let mut web2 = Capture::new(eth);
    client.at(0, vip_tcp(true, WEB2, local, 1000, "S", 0));
    web2.at(1, vip_tcp(false, WEB2, local, 5000, "SA", 1001));
    client.at(2, vip_tcp(true, WEB2, local, 1001, "A", 5001));
    let mut arp = arp_request(GATEWAY);
    arp[6..12].copy_from_slice(&mac_of(CLIENT));
    arp[22..28].copy_from_slice(&mac_of(CLIENT));
    arp[28..32].copy_from_slice(&CLIENT);
    client.at(1_000_000, arp);
    case_with(
        "vip-idle",
        TOPOLOGY_VIP,
        &[("client", &client), ("my-web.2", &web2)],
    );

    // The embedded DNS, asked by the client: a service (its VIP), its alias, its tasks, a task
    // by name, a dnsrr service (its tasks), AAAA of a known name (no records), PTR of a task
    // and a name outside the swarm (forwarded; a replay has no upstream: SERVFAIL).
    use hickory_proto::rr::RecordType as T;
    let mut client = Capture::new(eth);
    for (i, (name, rtype)) in [
        ("my-web", T::A),
        ("web.", T::A),
        ("tasks.my-web", T::A),
        ("my-web.3.x3y3z3", T::A),
        ("db", T::A),
        ("tasks.db", T::A),
        ("my-web", T::AAAA),
        ("4.9.0.10.in-addr.arpa.", T::PTR),
        ("example.org.", T::A),
    ]
    .into_iter()
    .enumerate()
    {
        client.at(
            i as u64,
            dns_query(5300 + i as u16, 0x100 + i as u16, name, rtype),
        );
    }
    case_with("dns", TOPOLOGY_VIP, &[("client", &client)]);
}
