//! The virtual-port fuzz body (`fuzz/src/virt_port.rs`) on stable Rust: the undisturbed
//! exchange completes (so the harness reaches HTTP), then generated disturbances and raw
//! garbage never break the task's promises.

#[path = "../fuzz/src/virt_port.rs"]
mod virt_port;

/// xorshift64*: deterministic, so a failure here reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn an_undisturbed_wire_carries_the_fetch() {
    let r = virt_port::virt_port(&[0]);
    assert!(
        r.client_events
            .iter()
            .any(|e| e.starts_with("GET http://10.0.9.2:80/data?size=20000: 200, 20000 bytes")),
        "{:?}",
        r.client_events
    );
    // Echo answers the request with itself: an ARP reply, the SYN-ACK and the echoed request
    // at least.
    let r = virt_port::virt_port(&[1]);
    assert!(r.server_frames >= 3, "{r:?}");
}

#[test]
fn disturbed_wires_and_garbage_break_no_promise() {
    let mut rng = Rng(0x7e57_0001);
    for round in 0..300u32 {
        let len = 1 + (rng.next() % 64) as usize;
        let mut input: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        input[0] = round as u8;
        virt_port::virt_port(&input);
    }
    // Every op on every early frame, alone.
    for frame in 0..6usize {
        for code in 0..8u8 {
            for arg in [0u8, 13, 40, 128, 255] {
                let mut input = vec![0u8; 1 + 2 * (frame + 1)];
                input[1 + 2 * frame] = code | 0x20;
                input[2 + 2 * frame] = arg;
                virt_port::virt_port(&input);
            }
        }
    }
}
