#![no_main]

#[path = "../src/dns.rs"]
mod dns;

libfuzzer_sys::fuzz_target!(|data: &[u8]| dns::query(data));
