//! The hot path allocates nothing per packet once the caller's `Output` has grown to its batch.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use swarmnet::dataplane::{Dataplane, Output, Target};

#[path = "support/packets.rs"]
mod packets;

use packets::*;

/// Counts allocations and reallocations made by this thread's test while `ARMED`.
struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY (for the reviewer; this file is a test, outside the `deny(unsafe_code)` crate):
// every call is forwarded unchanged to `System`, which upholds the `GlobalAlloc` contract.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const N: usize = 10_000;

/// One test only: the counter is process-wide, and other tests' threads would allocate.
#[test]
fn encap_and_decap_allocate_nothing_per_packet() {
    let mut dp = Dataplane::new(tables());
    let mut out = Output::new();
    let to_peer = frame(WEB1, PEER, 1400);
    let datagram = underlay(&frame(PEER, WEB1, 1400));

    // Warm up: the first packets grow `out` and any per-worker state.
    for _ in 0..16 {
        out.clear();
        dp.from_port(0, PORT_WEB1, &to_peer, &mut out);
        out.clear();
        dp.from_underlay_ipv4(0, &datagram, &mut out);
        out.clear();
        dp.from_underlay_udp(0, PEER_VTEP, &datagram[28..], &mut out);
    }

    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..N {
        out.clear();
        dp.from_port(0, PORT_WEB1, &to_peer, &mut out);
    }
    let encap = ALLOCS.load(Ordering::Relaxed) - before;
    assert!(matches!(out.iter().next(), Some((Target::Underlay(_), _))));

    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..N {
        out.clear();
        dp.from_underlay_ipv4(0, &datagram, &mut out);
        out.clear();
        dp.from_underlay_udp(0, PEER_VTEP, &datagram[28..], &mut out);
    }
    let decap = ALLOCS.load(Ordering::Relaxed) - before;
    assert!(matches!(
        out.iter().next(),
        Some((Target::Port(PORT_WEB1), _))
    ));

    assert_eq!(dp.counters().total_drops(), 0, "{:?}", dp.counters());
    assert_eq!(
        (encap, decap),
        (0, 0),
        "allocations over {N} encaps, {N} decaps"
    );
}
