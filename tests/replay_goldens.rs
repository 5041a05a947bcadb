//! Replay goldens: every case under fixtures/ (a topology and input captures) is replayed and
//! its outputs compared byte for byte with fixtures/CASE/expected/, which
//! scripts/regen-goldens.sh writes on purpose. Each case also asserts what a user would check
//! in the output, so a regenerated golden cannot quietly bless a wrong behaviour.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use serde_json::Value;
use swarmnet::replay::{self, InputSpec};

mod common;
use common::TempDir;

fn fixtures() -> PathBuf {
    common::fixture("")
}

struct Outcome {
    _dir: TempDir,
    /// Output file name -> its packets (for pcaps) or nothing (counters.json).
    pcaps: BTreeMap<String, Vec<Vec<u8>>>,
    counters: Value,
}

impl Outcome {
    fn frames(&self, port: &str) -> &[Vec<u8>] {
        self.pcaps
            .get(&format!("{port}.pcap"))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    fn drops(&self) -> BTreeMap<String, u64> {
        self.counters["drops"]
            .as_object()
            .expect("drops object")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().expect("count")))
            .collect()
    }
}

/// The packets of a capture, without timestamps.
fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    common::read_pcap(path)
        .into_iter()
        .map(|(_, data)| data)
        .collect()
}

/// Replays fixtures/CASE and checks the outputs equal the goldens, file set included.
fn replay_case(case: &str) -> Outcome {
    let dir = fixtures().join(case);
    let mut inputs: Vec<InputSpec> = std::fs::read_dir(dir.join("in"))
        .expect("inputs")
        .map(|e| e.expect("entry").path())
        .map(|path| InputSpec {
            port: path.file_stem().unwrap().to_string_lossy().into_owned(),
            path,
        })
        .collect();
    inputs.sort_by(|a, b| a.port.cmp(&b.port));
    let out = TempDir::new(case);
    replay::run(&dir.join("topology.toml"), &inputs, out.path()).expect("replay");

    let names = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let expected_dir = dir.join("expected");
    assert_eq!(
        names(out.path()),
        names(&expected_dir),
        "{case}: output files differ from the goldens"
    );
    let mut pcaps = BTreeMap::new();
    for name in names(out.path()) {
        let got = std::fs::read(out.path().join(&name)).expect("output");
        let want = std::fs::read(expected_dir.join(&name)).expect("golden");
        assert!(
            got == want,
            "{case}/{name} differs from its golden (scripts/regen-goldens.sh {case} regenerates it; read the diff first)"
        );
        if name.ends_with(".pcap") {
            pcaps.insert(name.clone(), read_pcap(&out.path().join(&name)));
        }
    }
    let counters =
        serde_json::from_slice(&std::fs::read(out.path().join("counters.json")).unwrap()).unwrap();
    Outcome {
        _dir: out,
        pcaps,
        counters,
    }
}

fn mac(s: &str) -> [u8; 6] {
    s.parse::<swarmnet::wire::MacAddr>().unwrap().0
}

/// The VNI, outer addresses and inner frame of an underlay datagram.
fn unwrap_vxlan(datagram: &[u8]) -> (u32, [u8; 4], [u8; 4], u16, &[u8]) {
    let p = SlicedPacket::from_ip(datagram).expect("outer IPv4");
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not IPv4")
    };
    let Some(TransportSlice::Udp(udp)) = &p.transport else {
        panic!("not UDP")
    };
    assert_eq!(udp.destination_port(), 4789);
    assert!(
        udp.source_port() >= 49152,
        "source port {} outside 49152-65535",
        udp.source_port()
    );
    let vx = udp.payload();
    assert_eq!(vx[0], 0x08, "only the I flag");
    let vni = u32::from_be_bytes([0, vx[4], vx[5], vx[6]]);
    (
        vni,
        ip.header().source(),
        ip.header().destination(),
        udp.source_port(),
        &vx[8..],
    )
}

#[test]
fn arp_is_answered_locally() {
    let o = replay_case("arp");
    let replies = o.frames("my-web.1");
    assert_eq!(replies.len(), 3);
    for (frame, (ip, m)) in replies.iter().zip([
        ([10, 0, 9, 3], "02:42:0a:00:09:03"),
        ([10, 0, 9, 1], "02:42:0a:00:09:01"),
        ([10, 0, 9, 4], "02:42:0a:00:09:04"),
    ]) {
        assert_eq!(&frame[0..6], &mac("02:42:0a:00:09:02"), "to the asker");
        assert_eq!(&frame[12..14], &[0x08, 0x06]);
        assert_eq!(&frame[20..22], &[0, 2], "an ARP reply");
        assert_eq!(&frame[22..28], &mac(m), "sender MAC");
        assert_eq!(&frame[28..32], &ip, "sender IP");
    }
    assert!(
        o.frames("underlay").is_empty(),
        "ARP never crosses the underlay"
    );
    assert_eq!(
        o.drops(),
        BTreeMap::from([("arp_unknown_target".into(), 1)])
    );
    assert_eq!(o.counters["events"]["arp_replies"], 3);
}

#[test]
fn ping_crosses_vxlan_both_ways() {
    let o = replay_case("ping-vxlan");
    let under = o.frames("underlay");
    let inputs = read_pcap(&fixtures().join("ping-vxlan/in/my-web.1.pcap"));
    assert_eq!(under.len(), 2);
    let mut ports = Vec::new();
    for (datagram, sent) in under.iter().zip(&inputs) {
        let (vni, src, dst, sport, inner) = unwrap_vxlan(datagram);
        assert_eq!((vni, src, dst), (4097, [192, 0, 2, 10], [192, 0, 2, 11]));
        assert_eq!(
            inner,
            &sent[..],
            "the inner frame is the task's frame, untouched"
        );
        ports.push(sport);
    }
    assert_eq!(
        ports[0], ports[1],
        "one ICMP flow keeps one UDP source port"
    );
    let delivered = o.frames("my-web.1");
    let arrived = read_pcap(&fixtures().join("ping-vxlan/in/underlay.pcap"));
    assert_eq!(delivered.len(), 2);
    for (frame, datagram) in delivered.iter().zip(&arrived) {
        assert_eq!(
            &frame[..],
            &datagram[36..],
            "decapsulated frame = what node-2 sent"
        );
    }
    assert!(o.drops().is_empty());
}

#[test]
fn tcp_handshake_crosses_vxlan() {
    let o = replay_case("tcp-handshake");
    let under = o.frames("underlay");
    assert_eq!(under.len(), 2, "SYN and ACK out");
    let (_, _, _, syn_port, syn) = unwrap_vxlan(&under[0]);
    let (_, _, _, ack_port, _) = unwrap_vxlan(&under[1]);
    assert_eq!(syn_port, ack_port, "one TCP flow keeps one UDP source port");
    let tcp = SlicedPacket::from_ethernet(syn).unwrap();
    let Some(TransportSlice::Tcp(t)) = tcp.transport else {
        panic!("not TCP")
    };
    assert!(t.syn() && !t.ack());
    assert_eq!(o.frames("my-web.1").len(), 1, "SYN-ACK in");
    assert!(o.drops().is_empty());
}

#[test]
fn local_delivery_stays_off_the_underlay() {
    let o = replay_case("local");
    assert_eq!(o.frames("my-web.2").len(), 1);
    assert_eq!(o.frames("my-web.1").len(), 1);
    assert_eq!(
        o.frames("my-web.2")[0],
        read_pcap(&fixtures().join("local/in/my-web.1.pcap"))[0]
    );
    assert!(o.frames("underlay").is_empty());
    assert_eq!(o.counters["ports"]["underlay"]["tx_packets"], 0);
}

#[test]
fn unknown_vni_is_dropped() {
    let o = replay_case("unknown-vni");
    assert!(o.pcaps.is_empty());
    assert_eq!(o.drops(), BTreeMap::from([("unknown_vni".into(), 1)]));
}

#[test]
fn vxlan_without_i_flag_is_dropped() {
    let o = replay_case("i-flag-clear");
    assert!(o.pcaps.is_empty());
    assert_eq!(o.drops(), BTreeMap::from([("vxlan_no_i_flag".into(), 1)]));
}

#[test]
fn truncated_vxlan_is_dropped() {
    let o = replay_case("truncated-vxlan");
    assert!(o.pcaps.is_empty());
    // A VXLAN header cut short, and a whole VXLAN header around a 10-byte inner frame.
    assert_eq!(
        o.drops(),
        BTreeMap::from([("malformed".into(), 1), ("malformed_inner".into(), 1)])
    );
}

#[test]
fn oversize_with_df_gets_fragmentation_needed() {
    let o = replay_case("oversize-df");
    assert!(o.frames("underlay").is_empty());
    let back = o.frames("my-web.1");
    assert_eq!(back.len(), 1);
    let p = SlicedPacket::from_ethernet(&back[0]).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not IPv4")
    };
    assert_eq!(ip.header().source(), [10, 0, 9, 1], "from the gateway");
    assert_eq!(ip.header().destination(), [10, 0, 9, 2], "to the sender");
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
        panic!("not ICMP")
    };
    match icmp.icmp_type() {
        etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu },
        ) => assert_eq!(next_hop_mtu, 1450),
        other => panic!("not fragmentation needed: {other:?}"),
    }
    assert!(
        back[0].len() <= 14 + 576,
        "ICMP errors stay within 576 bytes"
    );
    assert_eq!(o.drops(), BTreeMap::from([("mtu_exceeded".into(), 1)]));
}

#[test]
fn oversize_without_df_is_fragmented_to_fit() {
    let o = replay_case("oversize-no-df");
    let under = o.frames("underlay");
    assert_eq!(under.len(), 2);
    let original = &read_pcap(&fixtures().join("oversize-no-df/in/my-web.1.pcap"))[0];
    let mut payload = Vec::new();
    for (i, datagram) in under.iter().enumerate() {
        let (_, _, _, _, inner) = unwrap_vxlan(datagram);
        let ip = etherparse::Ipv4Slice::from_slice(&inner[14..]).expect("fragment");
        assert!(ip.header().total_len() <= 1450, "fragment {i} fits the MTU");
        assert!(ip.is_payload_fragmented());
        assert_eq!(ip.header().more_fragments(), i == 0);
        assert_eq!(
            usize::from(ip.header().fragments_offset().value()) * 8,
            payload.len()
        );
        payload.extend_from_slice(ip.payload().payload);
    }
    assert_eq!(
        payload,
        &original[34..],
        "the fragments carry the whole packet"
    );
    assert_eq!(o.counters["events"]["fragments_created"], 2);
    assert!(o.drops().is_empty());
}

#[test]
fn refusals_are_counted_by_reason() {
    let o = replay_case("refusals");
    assert!(o.pcaps.is_empty(), "nothing refused is forwarded");
    let want: BTreeMap<String, u64> = [
        ("spoofed_source", 1),
        ("broadcast", 1),
        ("unknown_destination", 2),
        ("hairpin", 1),
        ("malformed_inner", 1), // 6 bytes from a port: not even an Ethernet header
        ("not_vxlan", 1),
        ("not_for_us", 1),
        ("bad_checksum", 1),
        ("not_ipv4", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(o.drops(), want);
}

#[test]
fn kernel_capture_decapsulates() {
    let o = replay_case("kernel-vxlan");
    assert_eq!(o.frames("my-web.1").len(), 6);
    assert!(o.drops().is_empty());
}

// Encrypted networks. The ESP of these cases is opened here with ring directly and our own
// reading of RFC 4303/4106, apart from swarmnet's code.

const ESP_KEYS: [[u8; 16]; 3] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
    [
        0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e,
        0x1f,
    ],
    [
        0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e,
        0x2f,
    ],
];

fn fnv_spi(src: [u8; 4], dst: [u8; 4], tag: u32) -> u32 {
    let mut bytes = Vec::new();
    for (i, part) in [&src[..], &tag.to_be_bytes()[..], &dst[..]]
        .iter()
        .enumerate()
    {
        if i != 1 {
            bytes.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
        }
        bytes.extend_from_slice(part);
    }
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// Opens an ESP packet (SPI to ICV) under key `tag`; `seq` is the full sequence number.
/// Returns the plaintext payload (padding and trailer removed) and the next header.
fn open_esp(esp: &[u8], tag: u32, seq: u64) -> (Vec<u8>, u8) {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
    let spi = &esp[0..4];
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(spi);
    nonce[4..].copy_from_slice(&esp[8..16]);
    let mut aad = [0u8; 12];
    aad[..4].copy_from_slice(spi);
    aad[4..].copy_from_slice(&seq.to_be_bytes());
    let key =
        LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &ESP_KEYS[tag as usize - 1]).expect("key"));
    let mut body = esp[16..].to_vec();
    let plain = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut body,
        )
        .expect("ICV verifies");
    let n = plain.len();
    let (pad, next) = (usize::from(plain[n - 2]), plain[n - 1]);
    assert!(
        plain[n - 2 - pad..n - 2]
            .iter()
            .zip(1u8..)
            .all(|(b, w)| *b == w),
        "padding 1, 2, 3, ..."
    );
    assert_eq!(
        (n - 16 + 16 + 16) % 4,
        0,
        "ciphertext ends on a 4-byte boundary"
    );
    (plain[..n - 2 - pad].to_vec(), next)
}

/// Checks an underlay datagram is ESP from node-1 to node-2 sealed with the primary key (tag
/// 2) and sequence number `seq`; returns the VNI and inner frame of the VXLAN inside.
fn unwrap_esp(datagram: &[u8], udp: bool, seq: u64) -> (u32, Vec<u8>) {
    let ip = etherparse::Ipv4Slice::from_slice(datagram).expect("outer IPv4");
    assert_eq!(ip.header().source(), [192, 0, 2, 10]);
    assert_eq!(ip.header().destination(), [192, 0, 2, 11]);
    let esp = if udp {
        assert_eq!(ip.header().protocol(), etherparse::IpNumber::UDP);
        let u = ip.payload().payload;
        assert_eq!(&u[0..4], &[0x11, 0x94, 0x11, 0x94], "UDP 4500 -> 4500");
        assert_eq!(&u[6..8], &[0, 0], "RFC 3948: UDP checksum zero");
        &u[8..]
    } else {
        assert_eq!(ip.header().protocol(), etherparse::IpNumber(50));
        ip.payload().payload
    };
    let spi = u32::from_be_bytes(esp[0..4].try_into().unwrap());
    assert_eq!(spi, fnv_spi([192, 0, 2, 10], [192, 0, 2, 11], 2));
    assert_eq!(&esp[4..8], &(seq as u32).to_be_bytes(), "sequence number");
    assert_eq!(
        &esp[8..16],
        &seq.to_be_bytes(),
        "the IV is the sequence number"
    );
    let (plain, next) = open_esp(esp, 2, seq);
    assert_eq!(next, 17, "the payload is the VXLAN UDP datagram");
    assert_eq!(&plain[2..4], &4789u16.to_be_bytes());
    assert_eq!(
        usize::from(u16::from_be_bytes([plain[4], plain[5]])),
        plain.len()
    );
    let vx = &plain[8..];
    assert_eq!(vx[0], 0x08);
    (
        u32::from_be_bytes([0, vx[4], vx[5], vx[6]]),
        vx[8..].to_vec(),
    )
}

fn check_encrypted_ping(case: &str, udp: bool, replies: usize) {
    let o = replay_case(case);
    let sent = read_pcap(&fixtures().join(case).join("in/my-web.1.pcap"));
    let under = o.frames("underlay");
    assert_eq!(under.len(), 2);
    for (i, (datagram, frame)) in under.iter().zip(&sent).enumerate() {
        let (vni, inner) = unwrap_esp(datagram, udp, i as u64 + 1);
        assert_eq!(vni, 4097);
        assert_eq!(&inner, frame, "the task's frame, untouched, inside ESP");
        assert!(
            !datagram.windows(16).any(|w| w == &frame[14..30]),
            "no cleartext on the wire"
        );
        // Outer IPv4, [UDP], SPI + sequence + IV, UDP + VXLAN, frame, no padding, trailer, ICV.
        assert_eq!(
            datagram.len(),
            20 + usize::from(udp) * 8 + 16 + 16 + inner.len() + 2 + 16
        );
    }
    let delivered = o.frames("my-web.1");
    assert_eq!(delivered.len(), replies);
    for (k, frame) in delivered.iter().enumerate() {
        assert_eq!(&frame[0..6], &mac("02:42:0a:00:09:02"));
        assert_eq!(&frame[6..12], &mac("02:42:0a:00:09:03"));
        assert_eq!(frame[34], 0, "an echo reply");
        assert_eq!(
            u16::from_be_bytes([frame[40], frame[41]]),
            k as u16 + 1,
            "ICMP sequence"
        );
    }
    assert!(o.drops().is_empty(), "{:?}", o.drops());
}

#[test]
fn encrypted_ping_over_esp() {
    check_encrypted_ping("esp-ping", false, 3);
}

#[test]
fn encrypted_ping_over_esp_in_udp() {
    check_encrypted_ping("esp-udp", true, 2);
}

#[test]
fn esp_refusals_are_counted_by_reason() {
    let o = replay_case("esp-refusals");
    assert!(o.frames("underlay").is_empty());
    assert_eq!(
        o.frames("my-web.1").len(),
        1,
        "only the genuine packet, once"
    );
    let want: BTreeMap<String, u64> = [
        ("esp_replay", 1),
        ("esp_auth", 2),
        ("esp_unknown_spi", 1),
        ("cleartext_on_encrypted", 1),
        ("malformed", 1),
        ("not_vxlan", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(o.drops(), want);
}

/// (source, destination, TCP flags as "S", "SA", "A", "R"...) of an Ethernet/IPv4/TCP frame.
fn tcp_summary(frame: &[u8]) -> ([u8; 4], [u8; 4], String) {
    let p = SlicedPacket::from_ethernet(frame).expect("Ethernet");
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not IPv4")
    };
    let Some(TransportSlice::Tcp(t)) = &p.transport else {
        panic!("not TCP")
    };
    let mut flags = String::new();
    for (on, c) in [
        (t.syn(), 'S'),
        (t.ack(), 'A'),
        (t.rst(), 'R'),
        (t.fin(), 'F'),
    ] {
        if on {
            flags.push(c);
        }
    }
    (ip.header().source(), ip.header().destination(), flags)
}

#[test]
fn handshakes_through_a_vip_reach_a_backend_and_answer_from_the_vip() {
    let o = replay_case("vip-handshake");
    const VIP: [u8; 4] = [10, 0, 9, 100];
    const CLIENT: [u8; 4] = [10, 0, 9, 5];
    // The local backend gets SYN and ACK with its own address as destination.
    let web2: Vec<_> = o
        .frames("my-web.2")
        .iter()
        .map(|f| tcp_summary(f))
        .collect();
    assert_eq!(
        web2,
        [
            (CLIENT, [10, 0, 9, 4], "S".to_string()),
            (CLIENT, [10, 0, 9, 4], "A".to_string())
        ]
    );
    // The remote one, across VXLAN.
    let under: Vec<_> = o
        .frames("underlay")
        .iter()
        .map(|d| tcp_summary(unwrap_vxlan(d).4))
        .collect();
    assert_eq!(
        under.iter().map(|u| u.1).collect::<Vec<_>>(),
        [[10, 0, 9, 3]; 2]
    );
    // Both SYN-ACKs and the ping's answer come from the VIP.
    let client = o.frames("client");
    assert_eq!(client.len(), 3);
    for f in &client[..2] {
        assert_eq!(tcp_summary(f), (VIP, CLIENT, "SA".to_string()));
        assert_eq!(
            &f[6..12],
            &[0x02, 0x42, 10, 0, 9, 100],
            "from the VIP's MAC"
        );
    }
    let ping = SlicedPacket::from_ethernet(&client[2]).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &ping.net else {
        panic!()
    };
    assert_eq!(ip.header().source(), VIP);
    assert!(o.drops().is_empty());
    assert_eq!(o.counters["events"]["vip_echo_replies"], 1);
}

#[test]
fn an_idle_vip_flow_is_reset_at_both_ends_after_900_seconds() {
    let o = replay_case("vip-idle");
    let path = fixtures().join("vip-idle/expected");
    let start = common::read_pcap(&fixtures().join("vip-idle/in/client.pcap"))[0].0;
    for (file, flags_at) in [("client.pcap", 1), ("my-web.2.pcap", 2)] {
        let packets = common::read_pcap(&path.join(file));
        let (at, rst) = &packets[flags_at];
        assert_eq!(tcp_summary(rst).2, "R", "{file}");
        let idle = at.saturating_sub(start);
        assert!(
            (900..=902).contains(&idle.as_secs()),
            "{file}: RST after {idle:?}"
        );
    }
    assert_eq!(o.counters["events"]["vip_resets"], 2);
}

/// The DNS answer inside a frame to the client, parsed by simple-dns (not the library that
/// wrote it): (id, response code, TC, the A addresses or PTR names of the answer section).
fn dns_answer(frame: &[u8]) -> (u16, String, bool, Vec<String>) {
    let p = SlicedPacket::from_ethernet(frame).expect("Ethernet");
    let Some(TransportSlice::Udp(udp)) = &p.transport else {
        panic!("not UDP")
    };
    assert_eq!(udp.source_port(), 53);
    let m = simple_dns::Packet::parse(udp.payload()).expect("a DNS message");
    let answers = m
        .answers
        .iter()
        .map(|r| {
            assert_eq!(r.ttl, 600, "Docker's TTL");
            match &r.rdata {
                simple_dns::rdata::RData::A(a) => std::net::Ipv4Addr::from(a.address).to_string(),
                simple_dns::rdata::RData::PTR(n) => n.to_string(),
                other => format!("{other:?}"),
            }
        })
        .collect();
    (
        m.id(),
        format!("{:?}", m.rcode()),
        m.has_flags(simple_dns::PacketFlag::TRUNCATION),
        answers,
    )
}

#[test]
fn the_embedded_dns_answers_services_tasks_and_ptr_and_fails_unknown_names() {
    let o = replay_case("dns");
    let answers: Vec<_> = o.frames("client").iter().map(|f| dns_answer(f)).collect();
    assert_eq!(answers.len(), 9, "one answer per query");
    let ids: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert_eq!(ids, (0x100..0x109).collect::<Vec<u16>>());
    let sorted = |v: &[String]| {
        let mut v = v.to_vec();
        v.sort();
        v
    };
    let ok = |i: usize| {
        assert_eq!(answers[i].1, "NoError", "{:?}", answers[i]);
        assert!(!answers[i].2);
        answers[i].3.clone()
    };
    assert_eq!(ok(0), ["10.0.9.100"], "service -> VIP");
    assert_eq!(ok(1), ["10.0.9.100"], "alias -> VIP");
    assert_eq!(sorted(&ok(2)), ["10.0.9.3", "10.0.9.4"], "tasks.service");
    assert_eq!(ok(3), ["10.0.9.3"], "task name");
    assert_eq!(sorted(&ok(4)), ["10.0.9.6", "10.0.9.7"], "dnsrr -> tasks");
    assert_eq!(sorted(&ok(5)), ["10.0.9.6", "10.0.9.7"]);
    assert!(ok(6).is_empty(), "AAAA of a known name: no records");
    assert_eq!(ok(7), ["my-web.2.x2y2z2.my-network"], "PTR");
    assert_eq!(
        answers[8].1, "ServerFailure",
        "unknown name with no upstream"
    );
    assert_eq!(o.counters["events"]["dns_answered"], 8);
    assert_eq!(o.counters["events"]["dns_forwarded"], 1);
    assert!(o.drops().is_empty());
}
