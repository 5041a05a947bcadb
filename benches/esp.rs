//! ESP cost per packet: seal and open of a 1400-byte payload through `Sa` (sequence number,
//! header, trailer, ESN AAD, anti-replay window) against raw ring AES-128-GCM on the same
//! buffer, and the switch's whole encrypted path against its cleartext VXLAN path.
//!
//! `cargo bench --bench esp`; results go to BENCHMARKS.md.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
use swarmnet::dataplane::esp::{Sa, Window};
use swarmnet::dataplane::{Dataplane, Output, Tables};
use swarmnet::topology::Topology;

const PAYLOAD: usize = 1400;
const PREFIX: usize = 16;
const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
const KEY: [u8; 16] = [7; 16];

fn raw_key() -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &KEY).unwrap())
}

fn nonce(seq: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&seq.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

fn aad(seq: u64) -> [u8; 12] {
    let mut a = [0u8; 12];
    a[4..].copy_from_slice(&seq.to_be_bytes());
    a
}

fn seal(c: &mut Criterion) {
    let mut g = c.benchmark_group("seal_1400");
    g.throughput(Throughput::Bytes(PAYLOAD as u64));
    let key = raw_key();
    let mut buf = vec![0x5au8; PAYLOAD + 16];
    let mut seq = 0u64;
    g.bench_function("ring_aes128gcm", |b| {
        b.iter(|| {
            seq += 1;
            buf.truncate(PAYLOAD);
            let tag = key
                .seal_in_place_separate_tag(nonce(seq), Aad::from(aad(seq)), &mut buf)
                .unwrap();
            buf.extend_from_slice(tag.as_ref());
            black_box(&buf);
        })
    });
    let sa = Sa::new(A, B, 1, &KEY);
    let mut buf = vec![0x5au8; PREFIX + PAYLOAD + 32];
    g.bench_function("esp_sa", |b| {
        b.iter(|| {
            buf.truncate(PREFIX + PAYLOAD);
            let seq = sa.next_seq().unwrap();
            sa.seal(&mut buf, 0, seq, 17).unwrap();
            black_box(&buf);
        })
    });
    g.finish();
}

fn open(c: &mut Criterion) {
    let mut g = c.benchmark_group("open_1400");
    g.throughput(Throughput::Bytes(PAYLOAD as u64));
    // Each iteration opens a freshly sealed packet (sealing is set-up, not measured): the
    // anti-replay window must see a new sequence number every time.
    let key = raw_key();
    let mut seq = 0u64;
    g.bench_function("ring_aes128gcm", |b| {
        b.iter_batched_ref(
            || {
                seq += 1;
                let mut buf = vec![0x5au8; PAYLOAD];
                let tag = key
                    .seal_in_place_separate_tag(nonce(seq), Aad::from(aad(seq)), &mut buf)
                    .unwrap();
                buf.extend_from_slice(tag.as_ref());
                (seq, buf)
            },
            |(seq, buf)| {
                let plain = key
                    .open_in_place(nonce(*seq), Aad::from(aad(*seq)), buf)
                    .unwrap();
                black_box(plain.len());
            },
            BatchSize::SmallInput,
        )
    });
    let tx = Sa::new(A, B, 1, &KEY);
    let rx = Sa::new(A, B, 1, &KEY);
    g.bench_function("esp_sa", |b| {
        b.iter_batched_ref(
            || {
                let mut buf = vec![0x5au8; PREFIX + PAYLOAD];
                let seq = tx.next_seq().unwrap();
                tx.seal(&mut buf, 0, seq, 17).unwrap();
                buf
            },
            |buf| {
                let (range, _) = rx.check_and_open(buf).unwrap();
                black_box(range);
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn window(c: &mut Criterion) {
    let mut g = c.benchmark_group("replay_window");
    // What `Sa` pays per inbound packet for the window: a check and an accept, each under the
    // mutex, uncontended and with two threads hammering one window.
    let w = Mutex::new(Window::default());
    let mut s = 0u64;
    g.bench_function("mutex_check_accept_1_thread", |b| {
        b.iter(|| {
            s += 1;
            let low = s as u32;
            let seq = w.lock().unwrap().infer(low).unwrap();
            black_box(w.lock().unwrap().accept(seq));
        })
    });
    g.bench_function("mutex_check_accept_2_threads", |b| {
        b.iter_custom(|iters| {
            let w = Arc::new(Mutex::new(Window::default()));
            let start = Instant::now();
            let handles: Vec<_> = (0..2u64)
                .map(|t| {
                    let w = Arc::clone(&w);
                    std::thread::spawn(move || {
                        for i in 0..iters {
                            let seq = 1 + 2 * i + t;
                            let ok = w.lock().unwrap().check(seq);
                            black_box(ok && w.lock().unwrap().accept(seq));
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
            // Per packet, with both threads' packets counted.
            start.elapsed() / 2
        })
    });
    g.finish();
}

const TOPOLOGY: &str = r#"[node]
name = "node-1"
data_path_addr = "192.0.2.10"

[[network]]
name = "secure"
vni = 4097
subnet = "10.0.9.0/24"
gateway = "10.0.9.1"
encrypted = true
mtu = 1450

[[network]]
name = "plain"
vni = 4098
subnet = "10.0.10.0/24"
gateway = "10.0.10.1"

[encryption]
keys = [ { tag = 1, key = "07070707070707070707070707070707" } ]
primary = 1

[[endpoint]]
name = "s1"
network = "secure"
ip = "10.0.9.2"

[[endpoint]]
name = "s3"
network = "secure"
ip = "10.0.9.3"
vtep = "192.0.2.11"

[[endpoint]]
name = "p1"
network = "plain"
ip = "10.0.10.2"

[[endpoint]]
name = "p3"
network = "plain"
ip = "10.0.10.3"
vtep = "192.0.2.11"
"#;

/// A 1400-byte IPv4/UDP packet in an Ethernet frame from `src` (.2) to .3 of `net`.
fn frame(net: u8) -> Vec<u8> {
    let mut v = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0x42, 10, 0, net, 2], [2, 0x42, 10, 0, net, 3])
        .ipv4([10, 0, net, 2], [10, 0, net, 3], 64)
        .udp(40000, 9000)
        .write(&mut v, &[0x33; PAYLOAD - 28])
        .unwrap();
    v
}

fn switch(c: &mut Criterion) {
    let mut g = c.benchmark_group("switch_1400");
    g.throughput(Throughput::Bytes(PAYLOAD as u64));
    let topo = Topology::parse(TOPOLOGY, "bench.toml").unwrap();
    let tables = Arc::new(Tables::from_topology(&topo));
    let mut dp = Dataplane::new(Arc::clone(&tables));
    let mut out = Output::with_capacity(1, 4096);
    for (name, port, net) in [("vxlan_encap", "p1", 10u8), ("esp_encap", "s1", 9)] {
        let port = tables.port_id(port).unwrap();
        let f = frame(net);
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                dp.from_port(0, port, &f, &mut out);
                black_box(out.len());
            })
        });
    }

    // Decapsulation on node-1 of what node-2 sends: set-up (not measured) has node-2's switch
    // seal a fresh packet, so the anti-replay window sees a new sequence number each time.
    let topo2 = Topology::parse(&node2_topology(), "bench2.toml").unwrap();
    let tables2 = Arc::new(Tables::from_topology(&topo2));
    let mut dp2 = Dataplane::new(Arc::clone(&tables2));
    for (name, port, net) in [("vxlan_decap", "p3", 10u8), ("esp_decap", "s3", 9)] {
        let port = tables2.port_id(port).unwrap();
        let mut f = frame(net);
        // From .3 to .2.
        f[..6].copy_from_slice(&[2, 0x42, 10, 0, net, 2]);
        f[6..12].copy_from_slice(&[2, 0x42, 10, 0, net, 3]);
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || {
                    let mut o = Output::new();
                    dp2.from_port(0, port, &f, &mut o);
                    let datagram = o.iter().next().unwrap().1.to_vec();
                    datagram
                },
                |datagram| {
                    out.clear();
                    dp.from_underlay_ipv4(0, datagram, &mut out);
                    assert_eq!(out.len(), 1);
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

/// node-2's view of `TOPOLOGY`: s3 and p3 local, s1 and p1 on node-1.
fn node2_topology() -> String {
    TOPOLOGY
        .replace(
            "\"192.0.2.10\"\n\n[[network]]",
            "\"192.0.2.11\"\n\n[[network]]",
        )
        .replace(
            "name = \"s1\"\nnetwork = \"secure\"\nip = \"10.0.9.2\"\n",
            "name = \"s1\"\nnetwork = \"secure\"\nip = \"10.0.9.2\"\nvtep = \"192.0.2.10\"\n",
        )
        .replace(
            "name = \"p1\"\nnetwork = \"plain\"\nip = \"10.0.10.2\"\n",
            "name = \"p1\"\nnetwork = \"plain\"\nip = \"10.0.10.2\"\nvtep = \"192.0.2.10\"\n",
        )
        .replace(
            "ip = \"10.0.9.3\"\nvtep = \"192.0.2.11\"\n",
            "ip = \"10.0.9.3\"\n",
        )
        .replace(
            "ip = \"10.0.10.3\"\nvtep = \"192.0.2.11\"\n",
            "ip = \"10.0.10.3\"\n",
        )
}

/// Seal and open timed in alternating blocks, raw ring and `Sa` in turn, so that the noise of
/// a shared machine hits both alike; prints the median ns per packet of each and their ratio.
fn paired(_c: &mut Criterion) {
    // `cargo test --all-targets` runs benches once each without `--bench`: skip the timing.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    const N: usize = 2000;
    const ROUNDS: usize = 31;
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let key = raw_key();
    let tx = Sa::new(A, B, 1, &KEY);
    let rx = Sa::new(A, B, 1, &KEY);
    let (mut seal_raw, mut seal_esp, mut open_raw, mut open_esp) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut seq = 0u64;
    let mut raw_buf = vec![0x5au8; PAYLOAD + 16];
    let mut esp_buf = vec![0x5au8; PREFIX + PAYLOAD + 32];
    for round in 0..ROUNDS {
        let time_raw_seal = |seq: &mut u64, buf: &mut Vec<u8>| {
            let t = Instant::now();
            for _ in 0..N {
                *seq += 1;
                buf.truncate(PAYLOAD);
                let tag = key
                    .seal_in_place_separate_tag(nonce(*seq), Aad::from(aad(*seq)), buf)
                    .unwrap();
                buf.extend_from_slice(tag.as_ref());
                black_box(&buf);
            }
            t.elapsed().as_nanos() as f64 / N as f64
        };
        let time_esp_seal = |buf: &mut Vec<u8>| {
            let t = Instant::now();
            for _ in 0..N {
                buf.truncate(PREFIX + PAYLOAD);
                let s = tx.next_seq().unwrap();
                tx.seal(buf, 0, s, 17).unwrap();
                black_box(&buf);
            }
            t.elapsed().as_nanos() as f64 / N as f64
        };
        // Alternate which goes first.
        if round % 2 == 0 {
            seal_raw.push(time_raw_seal(&mut seq, &mut raw_buf));
            seal_esp.push(time_esp_seal(&mut esp_buf));
        } else {
            seal_esp.push(time_esp_seal(&mut esp_buf));
            seal_raw.push(time_raw_seal(&mut seq, &mut raw_buf));
        }
        // Open: seal N packets of each kind untimed, then time opening them.
        let mut raws: Vec<(u64, Vec<u8>)> = (0..N)
            .map(|_| {
                seq += 1;
                let mut b = vec![0x5au8; PAYLOAD];
                let tag = key
                    .seal_in_place_separate_tag(nonce(seq), Aad::from(aad(seq)), &mut b)
                    .unwrap();
                b.extend_from_slice(tag.as_ref());
                (seq, b)
            })
            .collect();
        let mut esps: Vec<Vec<u8>> = (0..N)
            .map(|_| {
                let mut b = vec![0x5au8; PREFIX + PAYLOAD];
                let s = tx.next_seq().unwrap();
                tx.seal(&mut b, 0, s, 17).unwrap();
                b
            })
            .collect();
        let mut time_raw_open = || {
            let t = Instant::now();
            for (s, b) in raws.iter_mut() {
                black_box(
                    key.open_in_place(nonce(*s), Aad::from(aad(*s)), b)
                        .unwrap()
                        .len(),
                );
            }
            t.elapsed().as_nanos() as f64 / N as f64
        };
        let mut time_esp_open = || {
            let t = Instant::now();
            for b in esps.iter_mut() {
                black_box(rx.check_and_open(b).unwrap());
            }
            t.elapsed().as_nanos() as f64 / N as f64
        };
        if round % 2 == 0 {
            open_raw.push(time_raw_open());
            open_esp.push(time_esp_open());
        } else {
            open_esp.push(time_esp_open());
            open_raw.push(time_raw_open());
        }
    }
    let (sr, se, or, oe) = (
        median(seal_raw),
        median(seal_esp),
        median(open_raw),
        median(open_esp),
    );
    println!(
        "paired (median of {ROUNDS} alternating rounds of {N}): seal_1400 ring {sr:.0} ns, \
         esp {se:.0} ns, ratio {:.2}; open_1400 ring {or:.0} ns, esp {oe:.0} ns, ratio {:.2}",
        se / sr,
        oe / or
    );
}

/// A TCP super-frame of 64,000 bytes from s1 to the peer's s3 on the encrypted network, as a
/// TAP with TSO hands it over, into 46 ESP datagrams of 1,398-byte segments: each segment cut
/// into a frame of its own and switched (`per_segment`: the payload copied twice, its TCP
/// checksum computed), sealed straight from the burst (`sealed`: copied once), and so with
/// the TCP checksums left open inside ESP (`sealed_rco`: no checksum pass over the payload,
/// only the copy and the cipher). AES-GCM is in all three; the kernel's copy (sendmmsg) in
/// none.
fn super_frame(c: &mut Criterion) {
    use swarmnet::wire::vnet;
    const SUPER: usize = 64_000;
    const MSS: u16 = 1398;
    let mut f = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0x42, 10, 0, 9, 2], [2, 0x42, 10, 0, 9, 3])
        .ipv4([10, 0, 9, 2], [10, 0, 9, 3], 64)
        .tcp(40000, 80, 1, 65535)
        .write(&mut f, &vec![0x33; SUPER - 54])
        .unwrap();
    f[47] |= 0x08; // PSH
    let hdr = vnet::Repr::tcp4_super_frame(34, 54, MSS).to_bytes();
    let mut g = c.benchmark_group("super_frame_esp");
    g.throughput(Throughput::Bytes(SUPER as u64));
    let mut out = Output::with_capacity(64, 128 * 1024);
    for (name, sealed, rco) in [
        ("per_segment_64000", false, false),
        ("sealed_64000", true, false),
        ("sealed_rco_64000", true, true),
    ] {
        let topo = Topology::parse(TOPOLOGY, "bench.toml").unwrap();
        let mut t = Tables::from_topology(&topo);
        t.remote_checksum_offload = rco;
        let port = t.port_id("s1").unwrap();
        let mut dp = Dataplane::new(Arc::new(t));
        dp.set_tunnel_gso(sealed);
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                dp.from_port_vnet(0, port, &hdr, black_box(&f), &mut out);
                assert_eq!(out.len(), 46);
            })
        });
        assert_eq!(
            dp.counters().total_drops(),
            0,
            "{name}: a packet was dropped"
        );
    }
    g.finish();
}

criterion_group!(benches, paired, seal, open, window, switch, super_frame);
criterion_main!(benches);
