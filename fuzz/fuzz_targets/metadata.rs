//! The API version range (bytes 0-1), then request header lines: every CallerMetadata
//! reading and the api_version check.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| grpc_helper::__fuzz::target_metadata(data));
