#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| swarmnet_fuzz::surfaces::cli(data));
