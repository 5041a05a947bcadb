//! The fuzz targets' bodies on stable Rust: generated inputs and every captured fixture packet,
//! whole, truncated and bit-flipped. `fuzz/src/lib.rs` holds the invariants; this runs them in CI.

use std::fs;
use std::path::{Path, PathBuf};

use pcap_file::pcap::PcapReader;

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)] // the surface bodies run in tests/robustness_surfaces.rs
mod targets;

#[path = "support/packets.rs"]
mod packets;

/// xorshift64: deterministic, so a failure here reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// Flips a few random bits, overwrites a byte, or cuts the tail.
    fn mutate(&mut self, input: &[u8]) -> Vec<u8> {
        let mut v = input.to_vec();
        if v.is_empty() {
            return v;
        }
        for _ in 0..1 + self.below(4) {
            match self.below(3) {
                0 => {
                    let i = self.below(v.len());
                    v[i] ^= 1 << self.below(8);
                }
                1 => {
                    let i = self.below(v.len());
                    v[i] = self.next() as u8;
                }
                _ => v.truncate(self.below(v.len() + 1)),
            }
            if v.is_empty() {
                break;
            }
        }
        v
    }
}

fn pcaps(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("fixtures readable").flatten() {
        let path = entry.path();
        if path.is_dir() {
            pcaps(&path, found);
        } else if path.extension().is_some_and(|e| e == "pcap") {
            found.push(path);
        }
    }
}

/// Every packet of every fixture capture (all Ethernet).
fn fixture_frames() -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    pcaps(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures"),
        &mut files,
    );
    files.sort();
    let mut frames = Vec::new();
    for file in files {
        let mut r = PcapReader::new(fs::File::open(&file).expect("pcap opens")).expect("pcap");
        while let Some(p) = r.next_packet() {
            frames.push(p.expect("pcap packet").data.into_owned());
        }
    }
    assert!(frames.len() >= 12, "fixture captures went missing");
    frames
}

/// Large frames with and without DF, with options: the MTU, ICMP and fragmentation paths.
fn synthetic_frames() -> Vec<Vec<u8>> {
    use packets::{frame, PEER, WEB1, WEB2};
    let mut frames = Vec::new();
    for len in [60, 1400, 1464, 1465, 1500, 3000, 9000] {
        for dst in [PEER, WEB2] {
            let df = frame(WEB1, dst, len);
            let mut no_df = df.clone();
            no_df[20] &= !0x40;
            // The same with 8 bytes of options: a copied one (Loose Source Route) and NOPs.
            let mut opts = no_df.clone();
            opts.splice(34..34, [0x83, 7, 4, 10, 0, 9, 9, 1]);
            opts[14] = 0x47;
            let total = u16::from_be_bytes([opts[16], opts[17]]) + 8;
            opts[16..18].copy_from_slice(&total.to_be_bytes());
            frames.extend([df, no_df, opts]);
        }
    }
    frames
}

/// Runs `target` on `control byte ++ body` for every steering value the targets use.
fn steer<R>(target: fn(&[u8]) -> R, body: &[u8]) {
    let mut input = Vec::with_capacity(body.len() + 1);
    for ctl in 0..=255u8 {
        input.clear();
        input.push(ctl);
        input.extend_from_slice(body);
        target(&input);
    }
}

#[test]
fn from_port_keeps_its_promises() {
    let mut rng = Rng(0x5eed_0001);
    let mut frames = fixture_frames();
    frames.extend(synthetic_frames());
    for f in &frames {
        steer(targets::from_port, f);
        // Without its source MAC, so that steering bit 2 writes the port's own.
        let mut no_src = f[..6.min(f.len())].to_vec();
        no_src.extend_from_slice(f.get(12..).unwrap_or(&[]));
        steer(targets::from_port, &no_src);
        for _ in 0..50 {
            let mut m = vec![rng.next() as u8];
            m.extend(rng.mutate(&no_src));
            targets::from_port(&m);
        }
    }
    // Found by libFuzzer: an ARP request whose sender hardware address is not the port's MAC
    // is answered to that address, back on the port it came from.
    targets::from_port(&[
        0x0d, 0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x00, 0x00, 0x00, 0x42,
        0x0a, 0x00, 0x00, 0x00, 0x0c, 0x2b, 0xa1, 0xa1, 0xa1, 0x04, 0x02, 0x42, 0x0a, 0x00, 0x09,
        0x04, 0xa1, 0xa1, 0xa1, 0xff, 0xa1, 0x14, 0xa1, 0xa1, 0xa1, 0xa1, 0xa1,
    ]);
    for _ in 0..5000 {
        let len = rng.below(1600);
        targets::from_port(&rng.bytes(len));
    }
}

#[test]
fn from_port_vnet_keeps_its_promises() {
    let mut rng = Rng(0x5eed_0004);
    // The harness reaches segmentation: 4000 bytes at 1398 become three VXLAN datagrams, and
    // the smallest accepted segment size the most packets.
    let super_frame = |mss: u16, len: usize| {
        let mut input = vec![0x4c, (mss >> 8) as u8, mss as u8, 0];
        input.extend(vec![7u8; len]);
        input
    };
    assert_eq!(targets::from_port_vnet(&super_frame(1398, 4000)), 3);
    assert_eq!(targets::from_port_vnet(&super_frame(32, 64_000)), 2000);
    assert_eq!(
        targets::from_port_vnet(&super_frame(31, 64_000)),
        0,
        "refused"
    );
    // Super-frames (bit 6) of every size class with segment sizes around the limits, plain
    // frames with arbitrary virtio-net headers, and open checksums (bit 7).
    for len in [0usize, 1, 31, 32, 33, 100, 1398, 1399, 4000, 20_000, 65_000] {
        for mss in [
            0u16,
            1,
            31,
            32,
            33,
            88,
            536,
            1398,
            1410,
            1448,
            9000,
            u16::MAX,
        ] {
            for opts in [0u8, 1, 10] {
                let mut input = vec![0x40 | 0x4 | 0x8, (mss >> 8) as u8, mss as u8, opts];
                input.extend(rng.bytes(len));
                for ctl in [0x40u8, 0x44, 0x4c, 0x5c, 0xc4, 0xcc] {
                    input[0] = ctl;
                    let _ = targets::from_port_vnet(&input);
                }
            }
        }
    }
    for f in fixture_frames().iter().chain(synthetic_frames().iter()) {
        for _ in 0..20 {
            let mut m = vec![rng.next() as u8 & 0xbf];
            m.extend(rng.bytes(10));
            m.extend(rng.mutate(f));
            let _ = targets::from_port_vnet(&m);
        }
    }
    for _ in 0..3000 {
        let len = rng.below(3000);
        let _ = targets::from_port_vnet(&rng.bytes(len));
    }
}

#[test]
fn from_underlay_keeps_its_promises() {
    let mut rng = Rng(0x5eed_0002);
    // Found by libFuzzer: VXLAN whose inner frame is an Ethernet header with EtherType ARP
    // and no ARP body was delivered to my-web.1.
    targets::from_underlay(&[0x6d, 0x01, 0x00, 0x06, 0x00, 0x00, 0x08, 0x08, 0x06]);
    // Remote checksum offload: a UDP frame for my-web.1 (known MAC 2) whose checksum starts
    // at byte 34 (0x91: 34 >> 1, UDP's field) is handed on open, once (the run that takes it).
    let to_web1 = packets::frame(packets::PEER, packets::WEB1, 1400);
    let rco = [&[0x8c | (2 << 4), 0x91][..], &to_web1[6..]].concat();
    assert_eq!(targets::from_underlay(&rco), 1);
    let wrong_start = [&[0x8c | (2 << 4), 0x92][..], &to_web1[6..]].concat();
    assert_eq!(targets::from_underlay(&wrong_start), 0);
    for f in &fixture_frames() {
        let datagram = f.get(14..).unwrap_or(&[]);
        steer(targets::from_underlay, datagram);
        steer(targets::from_underlay, datagram.get(28..).unwrap_or(&[]));
        steer(targets::from_underlay, datagram.get(36..).unwrap_or(&[]));
        for cut in 0..datagram.len().min(80) {
            targets::from_underlay(&[&[0][..], &datagram[..cut]].concat());
        }
        for _ in 0..100 {
            let mut m = vec![rng.next() as u8];
            m.extend(rng.mutate(datagram));
            targets::from_underlay(&m);
        }
    }
    for f in &synthetic_frames() {
        steer(targets::from_underlay, f);
    }
    for _ in 0..5000 {
        let len = rng.below(1600);
        targets::from_underlay(&rng.bytes(len));
    }
}

#[test]
fn wire_views_keep_their_promises() {
    let mut rng = Rng(0x5eed_0003);
    for f in &fixture_frames() {
        for start in 0..f.len().min(64) {
            targets::wire(&f[start..]);
        }
        for _ in 0..50 {
            targets::wire(&rng.mutate(f));
        }
    }
    for text in [
        "02:42:0a:00:09:02",
        "ff:ff:ff:ff:ff:ff",
        "2:42:a:0:9:2",
        "02-42-0a-00-09-02",
    ] {
        targets::wire(text.as_bytes());
    }
    for _ in 0..5000 {
        let len = rng.below(100);
        targets::wire(&rng.bytes(len));
    }
}

#[path = "support/corpus.rs"]
mod corpus;

/// The checked-in seeds and regression inputs of the libFuzzer targets (fuzz/seeds/TARGET/).
#[test]
fn packet_seeds_and_regressions_keep_their_promises() {
    corpus::run_corpus("from_port", targets::from_port, 0x5eed_0011, 200);
    corpus::run_corpus(
        "from_port_vnet",
        |d| {
            targets::from_port_vnet(d);
        },
        0x5eed_0012,
        100,
    );
    corpus::run_corpus(
        "from_underlay",
        |d| {
            targets::from_underlay(d);
        },
        0x5eed_0013,
        200,
    );
    corpus::run_corpus("wire", targets::wire, 0x5eed_0014, 200);
}
