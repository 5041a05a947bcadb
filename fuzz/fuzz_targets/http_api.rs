#![no_main]

#[path = "../src/http_api.rs"]
mod http_api;

libfuzzer_sys::fuzz_target!(|data: &[u8]| http_api::http_api(data));
