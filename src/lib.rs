//! maestro: a file-based multi-process session coordinator.
//!
//! An orchestrator reads a plan, creates a session directory and spawns workers (tmux
//! windows or headless processes) that coordinate with it only through files in that
//! directory. See docs/PROTOCOL.md for the on-disk protocol and docs/ARCHITECTURE.md for the
//! map of the modules below: a pure decision engine (`engine`) inside a thin shell
//! (`orchestrator`).

pub mod agent;
pub mod attach;
pub mod bell;
pub mod cgroup;
pub mod cli;
pub mod dashboard;

pub mod engine;
pub mod error;
pub mod fsio;
pub mod jobctl;
pub mod journal;
pub mod launch;
pub mod liveness;
pub mod locks;
pub mod message;
pub mod model;
pub mod names;
pub mod orchestrator;
pub mod plan;
pub mod primitives;
pub mod process;
pub mod proto;
pub mod prune;
pub mod pty;
pub mod report;
pub mod scheduler;
pub mod session;
pub mod shared;
pub mod status;
pub mod stderr;
pub mod summary;
pub mod text;
pub mod usage;
pub mod watch;
pub mod worker;
pub mod worktree;

pub use error::{Error, Result};
