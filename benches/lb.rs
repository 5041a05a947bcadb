//! The VIP balancer's cost: nanoseconds per packet through a VIP against the same packet sent
//! to the task's own address (the direct path, in the same run), both ways; the cost of a new
//! connection; and conntrack's memory per flow and time to track a million flows.
//!
//! Every per-packet figure is one 1400-byte UDP frame through `Dataplane` with a reused
//! `Output`: no I/O, no allocation.

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use swarmnet::dataplane::lb::{Conntrack, CtConfig};
use swarmnet::dataplane::{Dataplane, Output, PortId, Tables};
use swarmnet::topology::Topology;
use swarmnet::wire::MacAddr;

#[path = "../tests/support/packets.rs"]
mod packets;

use packets::*;

const LEN: usize = 1400;
const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 100);

/// The benches' topology with service my-web (VIP .100) run by the remote peer only, so the
/// VIP path and the direct path end in the same encapsulation.
fn tables_with_vip() -> Arc<Tables> {
    let text = format!(
        "{TOPOLOGY}\n[[service]]\nname = \"my-web\"\nnetwork = \"my-network\"\nvip = \"{VIP}\"\ntasks = [\"peer\"]\n"
    );
    Arc::new(Tables::from_topology(
        &Topology::parse(&text, "bench.toml").expect("valid"),
    ))
}

/// `frame(src, dst)` addressed to `mac` instead of `dst`'s own MAC.
fn to_mac(mut f: Vec<u8>, mac: MacAddr) -> Vec<u8> {
    f[..6].copy_from_slice(&mac.0);
    f
}

fn vip(c: &mut Criterion) {
    let mut g = c.benchmark_group("lb");
    g.throughput(Throughput::Elements(1));
    let tables = tables_with_vip();
    let mut dp = Dataplane::new(Arc::clone(&tables));
    let mut out = Output::with_capacity(4, 4 * 2048);

    let direct = frame(WEB1, PEER, LEN);
    g.bench_function("direct_1400", |b| {
        b.iter(|| {
            out.clear();
            dp.from_port(0, PORT_WEB1, black_box(&direct), &mut out);
            black_box(out.len())
        })
    });
    let through_vip = to_mac(frame(WEB1, VIP, LEN), MacAddr::from_ipv4(VIP));
    g.bench_function("vip_1400", |b| {
        b.iter(|| {
            out.clear();
            dp.from_port(0, PORT_WEB1, black_box(&through_vip), &mut out);
            black_box(out.len())
        })
    });
    // The answers: plain decapsulation, and the same datagram from a VIP flow's backend.
    let answer = underlay(&frame(PEER, WEB1, LEN));
    g.bench_function("answer_direct_1400", |b| {
        // Before any VIP flow exists: the reverse lookup is skipped.
        let mut fresh = Dataplane::new(tables_with_vip());
        b.iter(|| {
            out.clear();
            fresh.from_underlay_udp(0, PEER_VTEP, black_box(&answer[28..]), &mut out);
            black_box(out.len())
        })
    });
    g.bench_function("answer_vip_1400", |b| {
        b.iter(|| {
            out.clear();
            dp.from_underlay_udp(0, PEER_VTEP, black_box(&answer[28..]), &mut out);
            black_box(out.len())
        })
    });
    // A new flow each time (source port and address vary), on a table that grows.
    let mut n: u32 = 0;
    let mut fresh = Dataplane::new(tables_with_vip());
    let mut syn = through_vip.clone();
    g.bench_function("new_flow_1400", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            syn[34..36].copy_from_slice(&(n as u16).to_be_bytes());
            syn[29] = (n >> 16) as u8; // client address varies too (checksum aside: UDP 0 ok)
            out.clear();
            fresh.from_port(0, PORT_WEB1, black_box(&syn), &mut out);
            black_box(out.len())
        })
    });
    g.finish();
    assert_eq!(
        dp.counters().total_drops(),
        0,
        "{:?}",
        dp.counters().drops_by_name()
    );
    let _ = PortId(0);
}

/// Tracks a million flows: time per flow and memory per flow, printed (criterion measures
/// per-operation times; this is one sized run).
fn million_flows(c: &mut Criterion) {
    let mut g = c.benchmark_group("conntrack");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("track_1m_flows", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let ct = Conntrack::new(CtConfig {
                    max_flows: 1 << 21,
                    ..CtConfig::default()
                });
                let vip = SocketAddrV4::new(VIP, 80);
                let start = Instant::now();
                for i in 0..1_000_000u32 {
                    let client = SocketAddrV4::new(
                        Ipv4Addr::from(0x0a00_0000 | (i >> 16)),
                        (i & 0xffff) as u16,
                    );
                    let _ = ct.forward(1, 0, 6, client, vip, None, 60, |_| Some(PEER));
                }
                total += start.elapsed();
                let bytes = ct.memory_bytes();
                eprintln!(
                    "conntrack: {} flows, {} bytes, {} bytes per flow",
                    ct.len(),
                    bytes,
                    bytes / ct.len().max(1)
                );
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, vip, million_flows);
criterion_main!(benches);
