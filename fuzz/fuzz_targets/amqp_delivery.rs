//! `cargo fuzz run amqp_delivery`: see the harness, `steward_meter::fuzzing::amqp_delivery`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| steward_meter::fuzzing::amqp_delivery(data));
