#![no_main]

#[path = "../src/esp.rs"]
mod esp;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    esp::from_underlay_encrypted(data);
});
