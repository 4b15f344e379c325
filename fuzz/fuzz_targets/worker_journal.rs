//! Fuzz target `worker_journal`: see `maestro_fuzz::worker_journal` for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| maestro_fuzz::worker_journal(data));
