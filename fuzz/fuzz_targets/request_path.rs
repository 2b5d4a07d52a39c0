//! The whole request path, not only its parsers: arbitrary headers (`grpc-timeout`,
//! `api_version`, the caller metadata, anything) and a body, on a path the fuzzer picks (every
//! built-in method, a proxied one forwarded to a backend, health, reflection, or its own
//! bytes), sent over HTTP/2 to a main server and its backend running in this process.
//!
//! Oracles: no panic anywhere in either server (the hook aborts the process, so a panic in a
//! connection or forwarding task is a crash too, not a quiet reset), and every request gets a
//! gRPC answer or a stream refusal, on a connection that stays usable.
#![no_main]

#[path = "../request_path.rs"]
mod request_path;

fn abort(info: &std::panic::PanicHookInfo<'_>) {
    eprintln!("panic: {info}");
    std::process::abort();
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| request_path::drive(request_path::rig(abort), data));
