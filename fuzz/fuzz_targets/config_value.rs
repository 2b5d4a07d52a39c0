//! A validator pick (byte 0), then a config value: validation agrees with the typed reads,
//! which round-trip.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| grpc_helper::__fuzz::target_config_value(data));
