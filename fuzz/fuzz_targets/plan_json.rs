//! Fuzz target `plan_json`: see `maestro_fuzz::plan_json` for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| maestro_fuzz::plan_json(data));
