//! Nanoseconds per packet through the core: encapsulation, decapsulation, port to port.
//!
//! Every iteration clears one reused `Output`, so the numbers include no allocation (see
//! `tests/no_alloc.rs`) and no I/O: they are the core's own cost per 1400-byte frame.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use swarmnet::dataplane::{Dataplane, Output};

#[path = "../tests/support/packets.rs"]
mod packets;

use packets::*;

const LEN: usize = 1400;

fn dataplane(c: &mut Criterion) {
    let mut g = c.benchmark_group("dataplane");
    g.throughput(Throughput::Elements(1));
    let mut dp = Dataplane::new(tables());
    let mut out = Output::with_capacity(4, 4 * 2048);

    let to_peer = frame(WEB1, PEER, LEN);
    g.bench_function("encap_1400", |b| {
        b.iter(|| {
            out.clear();
            dp.from_port(0, PORT_WEB1, black_box(&to_peer), &mut out);
            black_box(out.len())
        })
    });

    let datagram = underlay(&frame(PEER, WEB1, LEN));
    g.bench_function("decap_1400_ipv4", |b| {
        b.iter(|| {
            out.clear();
            dp.from_underlay_ipv4(0, black_box(&datagram), &mut out);
            black_box(out.len())
        })
    });
    g.bench_function("decap_1400_udp", |b| {
        b.iter(|| {
            out.clear();
            dp.from_underlay_udp(0, PEER_VTEP, black_box(&datagram[28..]), &mut out);
            black_box(out.len())
        })
    });

    let to_web2 = frame(WEB1, WEB2, LEN);
    g.bench_function("local_1400", |b| {
        b.iter(|| {
            out.clear();
            dp.from_port(0, PORT_WEB1, black_box(&to_web2), &mut out);
            black_box(out.len())
        })
    });
    g.finish();
    assert_eq!(
        dp.counters().total_drops(),
        0,
        "a benchmark packet was dropped"
    );
}

/// A TCP super-frame of 64,000 bytes from web1 to the peer's task, as a TAP with TSO hands it
/// over, into 46 segments of 1,398 bytes for the underlay: cut and encapsulated segment by
/// segment by the core (`per_segment`: one copy of each segment into a buffer and one into the
/// output), or encapsulated whole and cut by the sender into headers and slices of the frame
/// (`tunnelled`: no copy of the payload). Both compute every segment's TCP checksum, but for
/// `tunnelled_rco`, whose segments leave them to the receiver (VXLAN remote checksum offload)
/// and which so never reads the payload. The kernel's copy of the datagrams (sendmmsg) is not
/// part of any.
fn super_frame(c: &mut Criterion) {
    use swarmnet::dataplane::gso::cut_tunnelled;
    use swarmnet::dataplane::Target;
    use swarmnet::wire::{ipv4, vnet};
    const SUPER: usize = 64_000;
    const MSS: u16 = 1398;
    let mut f = frame(WEB1, PEER, SUPER);
    f[23] = ipv4::PROTO_TCP;
    f[24..26].fill(0);
    ipv4::fill_checksum(&mut f[14..34]);
    f[34..54].fill(0);
    f[34..36].copy_from_slice(&40000u16.to_be_bytes());
    f[36..38].copy_from_slice(&80u16.to_be_bytes());
    f[46] = 5 << 4; // data offset: 20 bytes
    f[47] = 0x18; // ACK, PSH
    let hdr = vnet::Repr::tcp4_super_frame(34, 54, MSS).to_bytes();

    let mut g = c.benchmark_group("super_frame");
    g.throughput(Throughput::Bytes(SUPER as u64));
    let mut out = Output::with_capacity(64, 128 * 1024);
    let cases = [
        ("per_segment_64000", false, false),
        ("tunnelled_64000", true, false),
        ("tunnelled_rco_64000", true, true),
    ];
    for (name, tunnel, rco) in cases {
        let mut t = (*tables()).clone();
        t.remote_checksum_offload = rco;
        let mut dp = Dataplane::new(std::sync::Arc::new(t));
        dp.set_tunnel_gso(tunnel);
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                dp.from_port_vnet(0, PORT_WEB1, &hdr, black_box(&f), &mut out);
                // What a sender hands the kernel: datagrams, or headers and slices.
                let mut datagrams = 0usize;
                for (t, meta, bytes) in out.iter_meta() {
                    let Target::Underlay(dst) = t else { continue };
                    let payload = &bytes[dst.payload_offset()..];
                    match meta.gso {
                        Some(mss) => {
                            cut_tunnelled(payload, &f, mss, |h, c| {
                                black_box((h, c));
                                datagrams += 1;
                            });
                        }
                        None => {
                            black_box(payload);
                            datagrams += 1;
                        }
                    }
                }
                assert_eq!(datagrams, 46);
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

/// The Internet checksum, which every segment cut from a super-frame and every TCP segment
/// the egress sends or coalescing joins pays once per byte, and every IPv4 header (20 bytes)
/// once per datagram.
fn internet_checksum(c: &mut Criterion) {
    let mut g = c.benchmark_group("checksum");
    for len in [20usize, 1500, 65_535] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(format!("sum_{len}"), |b| {
            b.iter(|| black_box(swarmnet::wire::checksum::sum(black_box(&data))))
        });
    }
    g.finish();
}

criterion_group!(benches, dataplane, super_frame, internet_checksum);
criterion_main!(benches);
