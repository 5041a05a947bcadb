//! The leader's control work at swarm scale, in process: one orchestration pass placing
//! 10,000 tasks of 100 services on 1,000 nodes (scheduler and address allocation, as the
//! leader runs it), a pass over the settled swarm, the dispatcher's index of those tasks, and
//! one node's assignments as a heartbeat answers them (built and encoded). It also prints the
//! heap the store's objects and the index take (a counting allocator).
//!
//! `cargo bench --bench control`; results go to BENCHMARKS.md.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use swarmnet::api::service::{NetworkAttachmentConfig, ServiceMode, ServiceSpec, TaskSpec};
use swarmnet::api::{Availability, Node, NodeState, NodeStatus, Role};
use swarmnet::control::dispatcher::Index;
use swarmnet::control::manager::orchestrator::{node_infos, pass};
use swarmnet::control::network::NetworkRecord;
use swarmnet::control::service::{ServiceRecord, TaskRecord, TaskState};
use time::OffsetDateTime;

struct Counting;
static HELD: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        HELD.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        HELD.fetch_sub(l.size() as isize, Ordering::Relaxed);
        System.dealloc(p, l)
    }
}

#[global_allocator]
static A: Counting = Counting;

const NODES: usize = 1_000;
const SERVICES: usize = 100;
const REPLICAS: u64 = 100;

fn nodes() -> Vec<Node> {
    (0..NODES)
        .map(|i| Node {
            id: format!("node{i:021}"),
            hostname: format!("host-{i}"),
            role: if i < 3 { Role::Manager } else { Role::Worker },
            availability: Availability::Active,
            status: NodeStatus {
                state: NodeState::Ready,
                addr: format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256),
            },
            manager_status: None,
            data_path_addr: format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256),
            cluster_addr: String::new(),
            gossip_addr: String::new(),
            created_at: String::new(),
            updated_at: String::new(),
        })
        .collect()
}

fn networks() -> Vec<NetworkRecord> {
    (0..SERVICES)
        .map(|i| {
            let mut n = NetworkRecord::default_gwbridge(format!("net{i:022}"), String::new());
            n.name = format!("net-{i}");
            n.driver = "overlay".into();
            n.subnet = format!("10.{}.{}.0/24", 1 + i / 256, i % 256)
                .parse()
                .unwrap();
            n.gateway = format!("10.{}.{}.1", 1 + i / 256, i % 256).parse().unwrap();
            n.vni = Some(4097 + i as u32);
            n
        })
        .collect()
}

fn services() -> Vec<ServiceRecord> {
    (0..SERVICES)
        .map(|i| ServiceRecord {
            id: format!("svc{i:022}"),
            spec: ServiceSpec {
                name: format!("web-{i}"),
                mode: ServiceMode::Replicated { replicas: REPLICAS },
                task_template: TaskSpec {
                    networks: vec![NetworkAttachmentConfig {
                        target: format!("net{i:022}"),
                        aliases: vec![],
                    }],
                    ..Default::default()
                },
                ..Default::default()
            },
            networks: vec![format!("net{i:022}")],
            vips: vec![],
            ports: vec![],
            version: 1,
            template_version: 1,
            previous_spec: None,
            created_at: String::new(),
            updated_at: String::new(),
        })
        .collect()
}

fn ids() -> impl FnMut() -> String {
    let mut n = 0u64;
    move || {
        n += 1;
        format!("task{n:021}")
    }
}

fn placed(services: &[ServiceRecord], nets: &[NetworkRecord], nodes: &[Node]) -> Vec<TaskRecord> {
    let infos = node_infos(nodes);
    let mut tasks = pass(
        services,
        nets,
        &infos,
        &[],
        OffsetDateTime::now_utc(),
        ids(),
    )
    .put;
    for t in &mut tasks {
        t.state = TaskState::Running;
    }
    tasks
}

fn bench(c: &mut Criterion) {
    let before = HELD.load(Ordering::Relaxed);
    let nodes = nodes();
    let nets = networks();
    let services = services();
    let tasks = placed(&services, &nets, &nodes);
    assert_eq!(tasks.len(), SERVICES * REPLICAS as usize);
    let objects = HELD.load(Ordering::Relaxed) - before;
    let index = Index::new(&nodes, services.clone(), nets.clone(), tasks.clone());
    let with_index = HELD.load(Ordering::Relaxed) - before;
    eprintln!(
        "heap: {NODES} nodes, {} tasks, {SERVICES} services and networks take {:.1} MiB; with the dispatcher's index {:.1} MiB",
        tasks.len(),
        objects as f64 / 1048576.0,
        with_index as f64 / 1048576.0
    );
    let infos = node_infos(&nodes);
    let now = OffsetDateTime::now_utc();
    c.bench_function(
        "orchestrate: place 10,000 tasks of 100 services on 1,000 nodes",
        |b| b.iter(|| pass(black_box(&services), &nets, &infos, &[], now, ids())),
    );
    c.bench_function("orchestrate: a settled swarm (nothing to do)", |b| {
        b.iter(|| pass(black_box(&services), &nets, &infos, &tasks, now, ids()))
    });
    c.bench_function("dispatcher: index 10,000 tasks", |b| {
        b.iter(|| {
            Index::new(
                &nodes,
                services.clone(),
                nets.clone(),
                black_box(tasks.clone()),
            )
        })
    });
    let mut i = 0usize;
    c.bench_function(
        "dispatcher: a heartbeat with nothing new (assignments memoised)",
        |b| {
            b.iter(|| {
                i = (i + 1) % NODES;
                index.assignments_memo(&nodes[i].id, 4789).1
            })
        },
    );
    c.bench_function("dispatcher: one heartbeat's assignments, built", |b| {
        b.iter(|| {
            i = (i + 1) % NODES;
            index.assignments(&nodes[i].id, 4789).services.len()
        })
    });
    c.bench_function(
        "dispatcher: one heartbeat's assignments, built and encoded",
        |b| {
            b.iter(|| {
                i = (i + 1) % NODES;
                let a = index.assignments(&nodes[i].id, 4789);
                serde_json::to_vec(&a).unwrap().len()
            })
        },
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
