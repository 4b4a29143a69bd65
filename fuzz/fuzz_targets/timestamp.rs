//! `cargo fuzz run timestamp`: see the harness, `steward_meter::fuzzing::timestamp`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| steward_meter::fuzzing::timestamp(data));
