//! What a live capture costs the data path per frame: the workers' hook with no capture open
//! (one atomic load), with a capture of another port open (the frame is looked at, not taken),
//! and with a capture taking the frame (filtered, copied into the ring). Each is one 1400-byte
//! frame; the ring is drained between batches so it never fills.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use swarmnet::dataplane::PortId;
use swarmnet::io::capture::{CaptureHub, Filter, Layer};

fn frame() -> Vec<u8> {
    let mut f = vec![0u8; 1400];
    f[12] = 0x08; // IPv4
    f[14] = 0x45;
    f[16..18].copy_from_slice(&(1400u16 - 14).to_be_bytes());
    f[22] = 64;
    f[23] = 6; // TCP
    f[26..30].copy_from_slice(&[10, 0, 1, 3]);
    f[30..34].copy_from_slice(&[10, 0, 1, 4]);
    f[34..36].copy_from_slice(&40000u16.to_be_bytes());
    f[36..38].copy_from_slice(&80u16.to_be_bytes());
    f
}

fn capture(c: &mut Criterion) {
    let f = frame();
    let port = PortId(1);
    let mut g = c.benchmark_group("capture");
    g.throughput(Throughput::Elements(1));

    let hub = CaptureHub::default();
    g.bench_function("off", |b| {
        b.iter(|| hub.port_frame(black_box(port), black_box(&f)))
    });

    let other = hub.start(
        Layer::Inner([PortId(7)].into_iter().collect()),
        Filter::All,
        65_535,
    );
    g.bench_function("on, another port", |b| {
        b.iter(|| hub.port_frame(black_box(port), black_box(&f)))
    });
    hub.stop(&other);

    g.finish();

    // 1024 frames a batch, the ring drained between batches.
    let mut g = c.benchmark_group("capture, 1024 frames");
    g.throughput(Throughput::Elements(1024));
    let filter = Filter::parse(&["tcp port 80".to_string()]).expect("filter");
    let taking = hub.start(Layer::Inner([port].into_iter().collect()), filter, 65_535);
    g.bench_function("on, taken (tcp port 80, whole frame)", |b| {
        b.iter_batched(
            || {
                taking.drain();
            },
            |_| {
                for _ in 0..1024 {
                    hub.port_frame(black_box(port), black_box(&f));
                }
            },
            criterion::BatchSize::SmallInput,
        )
    });
    hub.stop(&taking);
    g.finish();
}

criterion_group!(benches, capture);
criterion_main!(benches);
