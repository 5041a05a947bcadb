//! Parsing a large topology: 100k endpoints (and 25k for the slope). Parsing must stay linear
//! in the file's size: the two figures should differ by about 4x. And building a node's tables
//! from one (every change a node applies does): 5k and 20k endpoints, half of them local ports,
//! which must stay linear too.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use swarmnet::dataplane::Tables;
use swarmnet::topology::Topology;

/// A node with one /8 network and `n` endpoints, every other one remote.
fn topology(n: usize) -> String {
    let mut t = String::from(
        "[node]\nname = \"node-1\"\ndata_path_addr = \"192.0.2.10\"\n\n\
         [[network]]\nname = \"big\"\nvni = 4097\nsubnet = \"10.0.0.0/8\"\ngateway = \"10.0.0.1\"\n",
    );
    for i in 0..n {
        let ip = 0x0a00_0002u32 + i as u32;
        let [a, b, c, d] = ip.to_be_bytes();
        t += &format!(
            "\n[[endpoint]]\nname = \"task-{i}\"\nnetwork = \"big\"\nip = \"{a}.{b}.{c}.{d}\"\n"
        );
        if i % 2 == 1 {
            t += "vtep = \"192.0.2.11\"\n";
        }
    }
    t
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("topology_parse");
    g.sample_size(10);
    // `cargo test --all-targets` runs each bench once, unoptimised: keep that quick.
    let sizes: &[usize] = if std::env::args().any(|a| a == "--bench") {
        &[25_000, 100_000]
    } else {
        &[1_000]
    };
    for &n in sizes {
        let text = topology(n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &text, |b, text| {
            b.iter(|| Topology::parse(text, "big.toml").expect("valid"))
        });
    }
    g.finish();
}

fn tables(c: &mut Criterion) {
    let mut g = c.benchmark_group("tables_build");
    g.sample_size(10);
    let sizes: &[usize] = if std::env::args().any(|a| a == "--bench") {
        &[5_000, 20_000]
    } else {
        &[1_000]
    };
    for &n in sizes {
        let topo = Topology::parse(&topology(n), "big.toml").expect("valid");
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &topo, |b, topo| {
            b.iter(|| Tables::from_topology(topo))
        });
    }
    g.finish();
}

criterion_group!(benches, parse, tables);
criterion_main!(benches);
