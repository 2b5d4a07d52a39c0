//! A `proxy.json`: accepted registrations are of known services, with a usable port, and read
//! back the same once written.
#![no_main]

#[allow(dead_code)]
#[path = "../oracles.rs"]
mod oracles;

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracles::target_proxy_state(data));
