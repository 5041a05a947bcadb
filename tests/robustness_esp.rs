//! The ESP fuzz body (`fuzz/src/esp.rs`) on stable Rust: generated inputs for each entry point,
//! genuine packets sealed by the peer and then corrupted, and every captured fixture packet
//! (sealed under other keys: they must all be refused).

use std::fs::File;
use std::path::Path;

use pcap_file::pcap::PcapReader;

#[path = "../fuzz/src/esp.rs"]
mod esp;

/// xorshift64*: deterministic, so a failure here reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn encrypted_underlay_keeps_its_promises() {
    let mut rng = Rng(0x5eed_e5e5);
    for round in 0..20_000u32 {
        let len = (rng.next() % 300) as usize;
        let mut input = vec![round as u8];
        input.extend(rng.bytes(len));
        assert!(
            !esp::from_underlay_encrypted(&input) || round % 4 == 3,
            "round {round}: arbitrary bytes delivered"
        );
    }
    // Genuine packets with no corruption at all (an all-zero XOR mask): delivered once.
    for n in 0..200usize {
        let mut input = vec![0x03 | 0x04];
        input.extend(std::iter::repeat_n(0u8, n));
        assert!(
            esp::from_underlay_encrypted(&input),
            "genuine packet {n} delivered"
        );
    }
    // Genuine packets with one flipped bit anywhere, outer header included.
    for bit in 0..8 * 120usize {
        let mut input = vec![0x03];
        let mut mask = vec![0u8; 120];
        mask[bit / 8] = 1 << (bit % 8);
        input.extend(mask);
        let delivered = esp::from_underlay_encrypted(&input);
        // Outer IPv4 20, UDP 8. The ESP ICV covers the ESP packet; the IPv4 checksum the outer
        // header. Left: the UDP source port, which a NAT may rewrite (RFC 3948 accepts any),
        // and the UDP checksum, zero on the wire and not verified (RFC 3948 2.1).
        let byte = bit / 8;
        let uncovered = matches!(byte, 20 | 21 | 26 | 27);
        assert_eq!(delivered, uncovered, "bit {bit} (byte {byte}) flipped");
    }
}

#[test]
fn captured_esp_under_other_keys_is_refused() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut seen = 0;
    for case in ["esp-ping", "esp-udp", "esp-refusals"] {
        for file in ["in/underlay.pcap", "expected/underlay.pcap"] {
            let path = fixtures.join(case).join(file);
            let Ok(f) = File::open(&path) else { continue };
            let mut r = PcapReader::new(f).expect("pcap");
            while let Some(p) = r.next_packet() {
                let p = p.expect("packet");
                for ctl in [0u8, 1, 2] {
                    // 0: the datagram as is; 1 and 2: its ESP (or UDP payload) re-wrapped.
                    let body = if ctl == 0 {
                        &p.data[..]
                    } else {
                        p.data.get(20..).unwrap_or(&[])
                    };
                    let mut input = vec![ctl];
                    input.extend_from_slice(body);
                    assert!(!esp::from_underlay_encrypted(&input), "{path:?}: delivered");
                }
                seen += 1;
            }
        }
    }
    assert!(seen >= 10, "the ESP fixtures are there ({seen} packets)");
}

#[path = "support/corpus.rs"]
mod corpus;

#[test]
fn esp_seeds_and_regressions_keep_their_promises() {
    corpus::run_corpus(
        "esp",
        |d| {
            esp::from_underlay_encrypted(d);
        },
        0x5eed_e5e6,
        50,
    );
}
