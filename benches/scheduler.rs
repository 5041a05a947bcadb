//! The leader's placement work alone, in process: 10,000 tasks of 100 services (100 replicas
//! each) on 1,000 nodes, each task also given an address on its service's network; and one
//! reconciliation of a settled swarm (nothing to do), the common case on every change.
//!
//! `cargo bench --bench scheduler`; results go to BENCHMARKS.md.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use swarmnet::control::allocator::ipam::AddressSpace;
use swarmnet::control::scheduler::{
    plan, Availability, LiveTask, Load, Mode, NodeInfo, ServiceInfo,
};

const NODES: usize = 1_000;
const SERVICES: usize = 100;
const REPLICAS: u64 = 100;

fn nodes() -> Vec<NodeInfo> {
    (0..NODES)
        .map(|i| NodeInfo {
            id: format!("node{i:05}"),
            hostname: format!("host-{i}"),
            role: if i < 3 { "manager" } else { "worker" }.into(),
            labels: BTreeMap::new(),
            availability: Availability::Active,
            ready: true,
        })
        .collect()
}

fn services() -> Vec<ServiceInfo> {
    (0..SERVICES)
        .map(|i| ServiceInfo {
            id: format!("svc{i:03}"),
            mode: Mode::Replicated(REPLICAS),
            constraints: vec![],
        })
        .collect()
}

/// Places every service from nothing and gives each task an address on its network (a /24
/// per service); returns the live tasks.
fn place_all(nodes: &[NodeInfo], services: &[ServiceInfo]) -> Vec<Vec<LiveTask>> {
    let mut load = Load::default();
    let mut out = Vec::with_capacity(services.len());
    for (i, s) in services.iter().enumerate() {
        let p = plan(s, nodes, &[], &mut load);
        let space = AddressSpace {
            subnet: format!("10.{}.{}.0/24", i / 256, i % 256).parse().unwrap(),
            range: None,
            gateway: Ipv4Addr::new(10, (i / 256) as u8, (i % 256) as u8, 1),
        };
        let mut used = BTreeSet::new();
        let mut last = None;
        let mut tasks = Vec::with_capacity(p.create.len());
        for (n, t) in p.create.into_iter().enumerate() {
            let ip = space.allocate(&used, last).expect("room in a /24");
            used.insert(ip);
            last = Some(ip);
            tasks.push(LiveTask {
                id: format!("{}-{n}", s.id),
                slot: t.slot,
                node_id: t.node_id,
            });
        }
        out.push(tasks);
    }
    out
}

fn bench(c: &mut Criterion) {
    let nodes = nodes();
    let services = services();
    let mut g = c.benchmark_group("scheduler");
    g.sample_size(10);
    g.bench_function("place 10k tasks of 100 services on 1k nodes", |b| {
        b.iter(|| black_box(place_all(&nodes, &services)))
    });
    let placed = place_all(&nodes, &services);
    g.bench_function("reconcile a settled swarm (10k tasks)", |b| {
        b.iter(|| {
            let mut load = Load::new(placed.iter().flatten());
            for (s, tasks) in services.iter().zip(&placed) {
                let p = plan(s, &nodes, tasks, &mut load);
                assert!(p.create.is_empty() && p.stop.is_empty());
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
