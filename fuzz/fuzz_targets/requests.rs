//! `cargo fuzz run requests`: see `diego_fuzz::requests`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| diego_fuzz::requests(data));
