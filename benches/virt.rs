//! Virtual tasks: heap bytes per task (printed, counted by a wrapping allocator), the time to
//! make one, and the CPU cost of moving data between two of them on virtual time (a fetch of
//! 1 MiB from whoami over a simulated wire: both stacks, no switch, no I/O).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicIsize, Ordering};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use swarmnet::topology::{App, FetchTarget};
use swarmnet::virt::{VirtSpec, VirtualTask};
use swarmnet::wire::MacAddr;

/// Bytes allocated and not yet freed.
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn spec(i: u32, app: App) -> VirtSpec {
    let ip = Ipv4Addr::from(0x0a00_0000 + 2 + i);
    VirtSpec {
        name: format!("task-{i}"),
        hostname: format!("task-{i}"),
        node: "node-1".into(),
        app,
        mac: MacAddr::from_ipv4(ip),
        ip,
        prefix: 8,
        gateway: Ipv4Addr::new(10, 0, 0, 1),
        mtu: 1450,
        seed: u64::from(i),
        reach: Default::default(),
    }
}

/// Heap bytes each of `n` tasks of `app` holds, averaged.
fn bytes_per_task(app: &App, n: u32) -> isize {
    let before = LIVE.load(Ordering::Relaxed);
    let tasks: Vec<VirtualTask> = (0..n)
        .map(|i| VirtualTask::new(&spec(i, app.clone()), 0))
        .collect();
    let after = LIVE.load(Ordering::Relaxed);
    drop(black_box(tasks));
    (after - before) / n as isize
}

fn virt(c: &mut Criterion) {
    let fetch = App::Fetch(FetchTarget {
        host: swarmnet::topology::FetchHost::Ip(Ipv4Addr::new(10, 0, 0, 2)),
        port: 80,
        path: "/".into(),
    });
    for (name, app) in [
        ("whoami", App::Whoami),
        ("echo", App::Echo),
        ("fetch", fetch),
    ] {
        println!(
            "virtual task {name}: {} KiB of heap each (500 tasks)",
            bytes_per_task(&app, 500) / 1024
        );
    }

    let mut g = c.benchmark_group("virt");
    g.bench_function("new_whoami", |b| {
        b.iter(|| black_box(VirtualTask::new(&spec(1, App::Whoami), 0)))
    });

    const SIZE: u64 = 1 << 20;
    g.throughput(Throughput::Bytes(SIZE));
    g.sample_size(10);
    g.bench_function("fetch_1MiB_from_whoami", |b| {
        b.iter(|| {
            let target = FetchTarget {
                host: swarmnet::topology::FetchHost::Ip(Ipv4Addr::new(10, 0, 0, 2)),
                port: 80,
                path: format!("/data?size={SIZE}"),
            };
            let mut server = VirtualTask::new(&spec(0, App::Whoami), 0);
            let mut client = VirtualTask::new(&spec(1, App::Fetch(target)), 0);
            let mut now = 0u64;
            let mut wire: Vec<Vec<u8>> = Vec::new();
            let mut back: Vec<Vec<u8>> = Vec::new();
            loop {
                client.handle_timeout(now, &mut |f| wire.push(f.to_vec()));
                for f in wire.drain(..) {
                    server.input(&f);
                }
                server.handle_timeout(now, &mut |f| back.push(f.to_vec()));
                for f in back.drain(..) {
                    client.input(&f);
                }
                let events = client.take_events();
                if let Some(e) = events.first() {
                    assert!(e.contains(": 200, 1048576 bytes"), "{e}");
                    break;
                }
                now += 100_000;
                assert!(now < 60_000_000_000, "the fetch never finished");
            }
        })
    });
    g.finish();
}

criterion_group!(benches, virt);
criterion_main!(benches);
