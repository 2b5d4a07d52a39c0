//! A `config.json`: accepted only as an object of strings, whose map reads back the same once
//! written.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| grpc_helper::__fuzz::target_config_file(data));
