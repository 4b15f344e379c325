//! Fuzz target `journal`: see `maestro_fuzz::journal` for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| maestro_fuzz::journal(data));
