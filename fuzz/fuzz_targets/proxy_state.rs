//! A `proxy.json`: accepted registrations are of known services, with a usable port, and read
//! back the same once written.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| grpc_helper::__fuzz::target_proxy_state(data));
