//! `cargo fuzz run http_post`: see the harness, `steward_meter::fuzzing::http_post`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| steward_meter::fuzzing::http_post(data));
