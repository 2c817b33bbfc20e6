//! `cargo fuzz run cli_files`: see `diego_fuzz::cli_files`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| diego_fuzz::cli_files(data));
