//! A validator pick (byte 0), then a config value: validation agrees with the typed reads,
//! which round-trip.
#![no_main]

#[allow(dead_code)]
#[path = "../oracles.rs"]
mod oracles;

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracles::target_config_value(data));
