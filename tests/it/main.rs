//! Integration tests: they spawn the real `orchestrator` and `worker` binaries in a
//! temporary directory. Set `MAESTRO_WATCH=off` (or `poll`) to run them all without the
//! native watcher; CI does both.

mod util;

mod add;
mod agents;
mod aux;
mod cgroup;
mod cli;
mod core;
mod dashboard;
mod data;
mod dry_run;
mod faults;
mod fuzz_corpus;
mod gates;
mod hostile;
mod jobctl;
mod limits;
mod memory;
mod partial;
mod plan_errors;
mod policy;
mod primitives;
mod readme;
mod recovery;
mod regressions;
mod report;
mod resources;
mod secrets;
mod templates;
mod terminal;
mod tmux;
mod unreadable;
mod worktree;
