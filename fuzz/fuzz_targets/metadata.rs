//! The API version range (bytes 0-1), then request header lines: every CallerMetadata
//! reading and the api_version check.
#![no_main]

#[allow(dead_code)]
#[path = "../oracles.rs"]
mod oracles;

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracles::target_metadata(data));
