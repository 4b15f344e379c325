//! Command lines of the two binaries. Each `*_main` parses the arguments once with clap,
//! turns them into a validated config, calls into the library, and maps the outcome to an
//! exit code: 0 success, 1 a task failed, 2 usage or plan error, 3 maestro itself failed.
//! The binaries in `src/bin/` are one line each.
//!
//! `args` is the orchestrator's clap definition, `orchestrator` dispatches its verbs,
//! `drive` runs a session in the foreground, `worker` is the worker's command line and
//! `data` the message and shared-data verbs of both.

mod args;
pub mod data;
mod drive;
mod orchestrator;
mod worker;

use std::ffi::OsString;

use clap::Parser;

use crate::error::Error;

pub use data::parse_duration;
pub use worker::worker_main;

pub(super) fn report(e: &Error) -> i32 {
    eprintln!("error: {e}");
    e.exit_code()
}

pub(super) fn parse_or_exit<P: Parser>(
    args: impl IntoIterator<Item = OsString>,
) -> std::result::Result<P, i32> {
    P::try_parse_from(args).map_err(|e| {
        let _ = e.print();
        if e.use_stderr() { 2 } else { 0 }
    })
}

/// `orchestrator` entry point; returns the process exit code.
pub fn orchestrator_main(args: impl IntoIterator<Item = OsString>) -> i32 {
    init_tracing();
    let args: args::OrchestratorArgs = match parse_or_exit(args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    match orchestrator::orchestrator(args) {
        Ok(code) => code,
        Err(e) => report(&e),
    }
}

pub(super) fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MAESTRO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
