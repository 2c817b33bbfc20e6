//! `cargo fuzz run task_definition`: see `diego_fuzz::task_definition`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| diego_fuzz::task_definition(data));
