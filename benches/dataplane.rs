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

/// The Internet checksum, which every segment cut from a super-frame and every TCP segment
/// the egress sends or coalescing joins pays once per byte.
fn internet_checksum(c: &mut Criterion) {
    let mut g = c.benchmark_group("checksum");
    for len in [1500usize, 65_535] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(format!("sum_{len}"), |b| {
            b.iter(|| black_box(swarmnet::wire::checksum::sum(black_box(&data))))
        });
    }
    g.finish();
}

criterion_group!(benches, dataplane, internet_checksum);
criterion_main!(benches);
