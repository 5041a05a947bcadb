//! Fuzz body for an encrypted node's underlay input: ESP as IP protocol 50, ESP in UDP
//! (RFC 3948), cleartext VXLAN. Kept apart from libFuzzer so that stable Rust runs it too
//! (`tests/robustness_esp.rs`). It panics only when the core breaks a promise:
//! - every input is forwarded or counted as exactly one drop, and nothing goes back out to the
//!   underlay;
//! - a frame reaches a port only if it is, byte for byte, a frame the peer sealed: nothing
//!   forged, garbled or replayed is ever delivered, and nothing at all from arbitrary bytes
//!   (they would have to forge an AES-GCM ICV).

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, OnceLock};

use swarmnet::dataplane::{Dataplane, Output, Tables, Target};
use swarmnet::topology::Topology;
use swarmnet::wire::ipv4;

/// node-1's view: one encrypted network, my-web.1 local, my-web.3 on node-2. The keys are not
/// those of the fixtures, so captured packets can only be refused here.
const NODE1: &str = r#"
[node]
name = "node-1"
data_path_addr = "192.0.2.10"

[[network]]
name = "secure"
vni = 4097
subnet = "10.0.9.0/24"
gateway = "10.0.9.1"
encrypted = true

[encryption]
keys = [ { tag = 1, key = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff" }, { tag = 2, key = "e0e1e2e3e4e5e6e7e8e9eaebecedeeef" } ]
primary = 2
transport = "udp"

[[endpoint]]
name = "my-web.1"
network = "secure"
ip = "10.0.9.2"

[[endpoint]]
name = "my-web.3"
network = "secure"
ip = "10.0.9.3"
vtep = "192.0.2.11"
"#;

const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const PEER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);

/// node-2's view of the same network: it seals what node-1 must accept.
fn node2_text() -> String {
    NODE1
        .replace("name = \"node-1\"", "name = \"node-2\"")
        .replace(
            "data_path_addr = \"192.0.2.10\"",
            "data_path_addr = \"192.0.2.11\"",
        )
        .replace(
            "ip = \"10.0.9.2\"\n",
            "ip = \"10.0.9.2\"\nvtep = \"192.0.2.10\"\n",
        )
        .replace(
            "ip = \"10.0.9.3\"\nvtep = \"192.0.2.11\"\n",
            "ip = \"10.0.9.3\"\n",
        )
}

struct Env {
    /// node-1's tables: their SAs (and replay windows) live as long as the process, like a
    /// node's, so every genuine packet is accepted once and never again.
    rx: Arc<Tables>,
    /// node-2's switch, sealing genuine packets.
    tx: Mutex<Dataplane>,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let t1 = Topology::parse(NODE1, "node1.toml").expect("fixed topology is valid");
        let t2 = Topology::parse(&node2_text(), "node2.toml").expect("fixed topology is valid");
        Env {
            rx: Arc::new(Tables::from_topology(&t1)),
            tx: Mutex::new(Dataplane::new(Arc::new(Tables::from_topology(&t2)))),
        }
    })
}

/// An IPv4 header from the peer to this node carrying `proto` and `payload`.
fn outer(proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut d = vec![0u8; ipv4::HEADER_LEN];
    let total = (ipv4::HEADER_LEN + payload.len()).min(usize::from(u16::MAX)) as u16;
    let h: &mut [u8; ipv4::HEADER_LEN] = (&mut d[..]).try_into().expect("20 bytes");
    ipv4::Fields {
        src: PEER,
        dst: LOCAL,
        protocol: proto,
        ttl: 64,
        identification: 1,
        dont_fragment: false,
        total_len: total,
    }
    .write(h);
    d.extend_from_slice(payload);
    d
}

fn udp(payload: &[u8]) -> Vec<u8> {
    let len = (8 + payload.len()).min(usize::from(u16::MAX)) as u16;
    let mut u = vec![0x11, 0x94, 0x11, 0x94];
    u.extend_from_slice(&len.to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// A frame from my-web.3 to my-web.1 carrying `data` as IPv4 payload (protocol 253, for
/// experimentation), short enough for the network MTU.
fn frame(data: &[u8]) -> Vec<u8> {
    let data = &data[..data.len().min(1000)];
    let mut f = vec![0x02, 0x42, 10, 0, 9, 2, 0x02, 0x42, 10, 0, 9, 3, 0x08, 0x00];
    let mut ip = [0u8; ipv4::HEADER_LEN];
    ipv4::Fields {
        src: Ipv4Addr::new(10, 0, 9, 3),
        dst: Ipv4Addr::new(10, 0, 9, 2),
        protocol: 253,
        ttl: 64,
        identification: 7,
        dont_fragment: true,
        total_len: (ipv4::HEADER_LEN + data.len()) as u16,
    }
    .write(&mut ip);
    f.extend_from_slice(&ip);
    f.extend_from_slice(data);
    f
}

/// Runs one input through a fresh switch (sharing node-1's SAs) and checks the promises;
/// `genuine` is the frame the input may deliver, if any. True if it was delivered.
fn run(feed: impl FnOnce(&mut Dataplane, &mut Output), genuine: Option<&[u8]>, what: &str) -> bool {
    let e = env();
    let mut dp = Dataplane::new(Arc::clone(&e.rx));
    let mut out = Output::new();
    feed(&mut dp, &mut out);
    let drops = dp.counters().total_drops();
    assert!(
        drops + out.len() as u64 == 1,
        "{what}: {drops} drops and {} packets out for one input",
        out.len()
    );
    for (target, bytes) in out.iter() {
        assert!(
            matches!(target, Target::Port(_)),
            "{what}: sent {target:?} for an underlay input"
        );
        assert_eq!(
            Some(bytes),
            genuine,
            "{what}: delivered a frame the peer never sealed"
        );
    }
    !out.is_empty()
}

/// The first byte steers: bits 0-1 choose the input (0: the bytes as an IPv4 datagram; 1: as
/// ESP behind a valid outer header, protocol 50; 2: as ESP in UDP to 4500, through the whole
/// datagram and through the UDP-socket entry point; 3: a packet node-2 seals now, whose bytes
/// the rest of the input XORs (from byte 20 on when bit 2 is set, keeping the outer header)).
/// Returns true if a frame was delivered (only ever the sealed one, once).
pub fn from_underlay_encrypted(data: &[u8]) -> bool {
    let Some((&ctl, rest)) = data.split_first() else {
        return false;
    };
    match ctl & 0x3 {
        0 => run(|dp, out| dp.from_underlay_ipv4(0, rest, out), None, "ipv4"),
        1 => {
            let d = outer(50, rest);
            run(|dp, out| dp.from_underlay_ipv4(0, &d, out), None, "esp ip")
        }
        2 => {
            let d = outer(ipv4::PROTO_UDP, &udp(rest));
            run(|dp, out| dp.from_underlay_ipv4(0, &d, out), None, "esp udp");
            run(
                |dp, out| dp.from_underlay_esp_udp(0, PEER, rest, out),
                None,
                "esp udp socket",
            )
        }
        _ => {
            let f = frame(rest);
            let mut sealed = Output::new();
            {
                let e = env();
                let mut tx = e.tx.lock().unwrap_or_else(|p| p.into_inner());
                let port = tx.tables().port_id("my-web.3").expect("local port");
                tx.from_port(0, port, &f, &mut sealed);
            }
            let Some((_, datagram)) = sealed.iter().next() else {
                panic!("node-2 did not seal a frame of {} bytes", f.len());
            };
            let mut d = datagram.to_vec();
            let start = if ctl & 0x4 != 0 { ipv4::HEADER_LEN } else { 0 };
            for (b, x) in d.iter_mut().skip(start).zip(rest.iter()) {
                *b ^= x;
            }
            let delivered = run(
                |dp, out| dp.from_underlay_ipv4(0, &d, out),
                Some(&f),
                "sealed",
            );
            // The same bytes again: never a second delivery.
            run(
                |dp, out| dp.from_underlay_ipv4(0, &d, out),
                None,
                "replayed",
            );
            delivered
        }
    }
}
