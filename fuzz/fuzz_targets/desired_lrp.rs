//! `cargo fuzz run desired_lrp`: see `diego_fuzz::desired_lrp`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| diego_fuzz::desired_lrp(data));
