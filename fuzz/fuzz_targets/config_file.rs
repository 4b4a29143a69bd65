//! `cargo fuzz run config_file`: see the harness, `steward::fuzzing::config_file`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| steward::fuzzing::config_file(data));
