#![no_main]

#[path = "../src/virt_port.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    body::virt_port(data);
});
