//! Command-line verbs for messages, shared data and progress (issue 4): `worker send|recv|
//! set|get|progress` for task scripts and `orchestrator send|inbox` for people. Kept apart
//! from `cli.rs` so each verb family stays small; the parsing is flattened into the main
//! command enums there.

use std::path::Path;

use clap::Subcommand;

use crate::error::Result;
use crate::session::Session;

/// Verbs a task script calls (`worker <verb>`).
#[derive(Subcommand, Debug)]
pub enum DataVerb {
    /// Report progress: `worker progress PCT [MESSAGE]`.
    Progress { pct: f64, message: Option<String> },
}

/// Run a data verb; returns the exit code.
pub fn run_worker_verb(session: &Session, verb: DataVerb) -> Result<i32> {
    let _ = (session, verb);
    Err(crate::error::Error::Usage("not implemented yet".into()))
}

/// `orchestrator` commands for people: send to a task, read the orchestrator's inbox.
#[derive(Subcommand, Debug)]
pub enum OrchestratorDataCommand {
    /// Send a message to a task (or `all`).
    Send {
        session: String,
        #[arg(long)]
        to: String,
        text: String,
    },
}

/// Run an orchestrator data command; `root` is the sessions root.
pub fn run_orchestrator_command(root: &Path, cmd: OrchestratorDataCommand) -> Result<i32> {
    let _ = (root, cmd);
    Err(crate::error::Error::Usage("not implemented yet".into()))
}
