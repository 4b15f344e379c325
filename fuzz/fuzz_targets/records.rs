//! Fuzz target `records`: see `maestro_fuzz::records` for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| maestro_fuzz::records(data));
