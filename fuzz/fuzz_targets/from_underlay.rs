#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    swarmnet_fuzz::from_underlay(data);
});
