//! Fuzz target `plan_toml_large`: see `maestro_fuzz::plan_toml_large` for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| maestro_fuzz::plan_toml_large(data));
