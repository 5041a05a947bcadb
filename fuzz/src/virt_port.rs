//! Fuzz body of a virtual task's port input (kept out of `lib.rs`, included by the target and
//! by the root crate's `tests/robustness_virt.rs`).
//!
//! A `fetch` client task talks to a `whoami` or `echo` server task over a simulated wire on
//! virtual time. The input picks the server app and then, frame by frame, what the wire does
//! to the client's frames before the server takes them: pass, flip a byte, cut, repeat, or
//! replace with raw bytes from the input. So the fuzzer reaches deep into genuine TCP and HTTP
//! exchanges, not only header parsing.
//!
//! Promises checked (a panic means one broke): the server never panics; every frame it sends
//! is a whole Ethernet frame from its own MAC, no larger than its MTU allows, carrying ARP or
//! IPv4; its receive queue stays bounded.

use std::net::Ipv4Addr;

use swarmnet::topology::{App, FetchTarget};
use swarmnet::virt::{VirtSpec, VirtualTask, RX_QUEUE};
use swarmnet::wire::MacAddr;

const MTU: u16 = 1450;

fn spec(name: &str, last: u8, app: App) -> VirtSpec {
    let ip = Ipv4Addr::new(10, 0, 9, last);
    VirtSpec {
        name: name.into(),
        hostname: name.into(),
        node: "node-1".into(),
        app,
        mac: MacAddr::from_ipv4(ip),
        ip,
        prefix: 24,
        gateway: Ipv4Addr::new(10, 0, 9, 1),
        mtu: MTU,
        seed: u64::from(last),
        reach: Default::default(),
    }
}

/// What one run did, for tests that check the harness reaches where it should.
#[derive(Debug, Default)]
pub struct Report {
    /// Frames the server sent.
    pub server_frames: usize,
    /// The client's reports (e.g. "GET ...: 200, N bytes, sha256 ...").
    pub client_events: Vec<String>,
}

/// Runs one input. Byte 0: bit 0 picks whoami (0) or echo (1). The rest: one op per frame the
/// client sends, each an op byte and an argument byte (input exhausted: pass).
pub fn virt_port(data: &[u8]) -> Report {
    let (app, port) = match data.first().map_or(0, |b| b & 1) {
        0 => (App::Whoami, 80),
        _ => (App::Echo, 7),
    };
    let target = FetchTarget {
        host: swarmnet::topology::FetchHost::Ip(Ipv4Addr::new(10, 0, 9, 2)),
        port,
        path: "/data?size=20000".into(),
    };
    let server_spec = spec("who", 2, app);
    let mut server = VirtualTask::new(&server_spec, 0);
    let mut client = VirtualTask::new(&spec("get", 3, App::Fetch(target)), 0);
    let mut ops = data.get(1..).unwrap_or(&[]).chunks(2);
    let mut report = Report::default();
    let mut now = 0u64;
    // 3 s of virtual time in steps of 1 ms, or fewer when idle.
    for _ in 0..3_000 {
        let mut to_server: Vec<Vec<u8>> = Vec::new();
        client.handle_timeout(now, &mut |f| to_server.push(f.to_vec()));
        for frame in to_server {
            let op = ops.next().unwrap_or(&[0, 0]);
            let (code, arg) = (op[0], op.get(1).copied().unwrap_or(0));
            match code % 8 {
                // Flip a byte of the frame.
                1 => {
                    let mut f = frame;
                    let at = usize::from(arg) * f.len() / 256;
                    if let Some(b) = f.get_mut(at) {
                        *b ^= 1 << (code >> 5);
                    }
                    server.input(&f);
                }
                // Cut it.
                2 => {
                    server.input(&frame[..usize::from(arg).min(frame.len())]);
                }
                // Repeat it.
                3 => {
                    server.input(&frame);
                    server.input(&frame);
                }
                // Lose it.
                4 => {}
                // Replace it with the rest of the input, as raw bytes.
                5 => {
                    let rest: Vec<u8> = ops.by_ref().flatten().copied().collect();
                    server.input(&rest);
                }
                _ => {
                    server.input(&frame);
                }
            }
        }
        let mut to_client: Vec<Vec<u8>> = Vec::new();
        server.handle_timeout(now, &mut |f| {
            check_frame(&server_spec, f);
            to_client.push(f.to_vec());
        });
        assert!(
            !server.has_input(),
            "handle_timeout takes every queued frame"
        );
        report.server_frames += to_client.len();
        for f in &to_client {
            client.input(f);
        }
        report.client_events.extend(client.take_events());
        now += 1_000_000;
    }
    assert!(server.dropped <= (report.server_frames + RX_QUEUE) as u64 * 1000);
    report
}

fn check_frame(spec: &VirtSpec, f: &[u8]) {
    assert!(f.len() >= 14, "a whole Ethernet frame: {f:02x?}");
    assert!(
        f.len() <= usize::from(spec.mtu) + 14,
        "{} bytes exceed MTU {}",
        f.len(),
        spec.mtu
    );
    assert_eq!(&f[6..12], &spec.mac.0, "sent from its own MAC");
    let ethertype = u16::from_be_bytes([f[12], f[13]]);
    assert!(
        ethertype == 0x0806 || ethertype == 0x0800,
        "ARP or IPv4, not {ethertype:04x}"
    );
    if ethertype == 0x0800 {
        assert!(f.len() >= 34, "an IPv4 header");
        assert_eq!(&f[26..30], &spec.ip.octets(), "from its own address");
    }
}
