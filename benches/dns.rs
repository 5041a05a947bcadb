//! The embedded DNS responder, sans-IO: answers per second on one core (query bytes in, answer
//! bytes out, hickory-proto parsing and encoding included) and the cost of building the
//! lookup from a service view.

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use swarmnet::dataplane::dns::{DnsTable, Outcome, Transport};
use swarmnet::dataplane::services::{Backend, NetServices, Service, ServiceView};

/// One network with `services` services of `tasks` tasks each: vip for even ones, dnsrr for
/// odd ones, every service with an alias.
fn view(services: usize, tasks: usize) -> ServiceView {
    let mut n = 0u32;
    let mut next_ip = || {
        n += 1;
        Ipv4Addr::from(0x0a00_0001u32 + n)
    };
    let services = (0..services)
        .map(|s| Service {
            name: format!("svc-{s}"),
            aliases: vec![format!("alias-{s}")],
            vip: (s % 2 == 0).then(&mut next_ip),
            backends: (0..tasks)
                .map(|t| Backend {
                    task: format!("svc-{s}.{}.{:025x}", t + 1, s * 100_000 + t),
                    ip: next_ip(),
                })
                .collect(),
        })
        .collect();
    ServiceView {
        networks: vec![NetServices {
            network: "my-net".into(),
            ingress: false,
            services,
        }],
    }
}

fn query(name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(0x1234).set_recursion_desired(true);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m.to_vec().unwrap()
}

fn answers(c: &mut Criterion) {
    let mut g = c.benchmark_group("dns_answer");
    let udp = Transport::Udp { max: 1422 };
    let small = DnsTable::new(&view(4, 3));
    let big = DnsTable::new(&view(4, 100));
    let cases: [(&str, &DnsTable, Vec<u8>, Outcome); 6] = [
        (
            "a_vip",
            &small,
            query("svc-0", RecordType::A),
            Outcome::Answered,
        ),
        (
            "a_tasks_3",
            &small,
            query("tasks.svc-0", RecordType::A),
            Outcome::Answered,
        ),
        // 100 A records do not fit in 512 bytes: the truncation path, TC set.
        (
            "a_tasks_100_udp",
            &big,
            query("tasks.svc-0", RecordType::A),
            Outcome::Answered,
        ),
        (
            "a_tasks_100_tcp",
            &big,
            query("tasks.svc-0", RecordType::A),
            Outcome::Answered,
        ),
        (
            "ptr",
            &small,
            query("4.0.0.10.in-addr.arpa", RecordType::PTR),
            Outcome::Answered,
        ),
        (
            "forward",
            &small,
            query("example.com", RecordType::A),
            Outcome::Forward,
        ),
    ];
    let mut out = Vec::with_capacity(65_536);
    for (name, table, q, expect) in &cases {
        let transport = if name.ends_with("_tcp") {
            Transport::Tcp
        } else {
            udp
        };
        assert_eq!(
            table.respond(&[0], q, transport, 1, &mut out),
            *expect,
            "{name}"
        );
        g.throughput(Throughput::Elements(1));
        let mut entropy = 0u64;
        g.bench_function(*name, |b| {
            b.iter(|| {
                entropy = entropy.wrapping_add(1);
                black_box(table.respond(&[0], black_box(q), transport, entropy, &mut out))
            })
        });
    }
    g.finish();
}

fn build(c: &mut Criterion) {
    let mut g = c.benchmark_group("dns_table_build");
    g.sample_size(10);
    // `cargo test --all-targets` runs each bench once, unoptimised: keep that quick.
    let sizes: &[(usize, usize)] = if std::env::args().any(|a| a == "--bench") {
        &[(100, 10), (1_000, 10)]
    } else {
        &[(10, 10)]
    };
    for &(services, tasks) in sizes {
        let v = view(services, tasks);
        g.throughput(Throughput::Elements((services * tasks) as u64));
        g.bench_with_input(
            BenchmarkId::from_parameter(format!("{services}x{tasks}")),
            &v,
            |b, v| b.iter(|| DnsTable::new(black_box(v))),
        );
    }
    g.finish();
}

criterion_group!(benches, answers, build);
criterion_main!(benches);
