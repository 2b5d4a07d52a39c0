//! A `config.json`: accepted only as an object of strings, whose map reads back the same once
//! written.
#![no_main]

#[allow(dead_code)]
#[path = "../oracles.rs"]
mod oracles;

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracles::target_config_file(data));
