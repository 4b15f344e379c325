//! Reading a session, live or dead, into a [`Snapshot`]: what `orchestrator status`,
//! `list` and the end of `run` show. Everything here only reads. A file that cannot be
//! read does not hide the rest: it is reported where it belongs (the session's
//! [`Snapshot::errors`], a task's or a worker's `error`), each message naming the file,
//! and what the other files (the journal first) say is shown. `render` draws a snapshot;
//! `logs` prints a task's output.

mod logs;
mod logs_all;
mod render;
mod worktrees;

use serde::Serialize;

pub use logs::logs;
pub(crate) use logs::{latest_attempt, log_path, on_a_terminal, read_tail};
pub use logs_all::{colour_wanted, logs_all};
pub use render::{
    ListRow, list_json, list_rows, list_table, only_waiting, render, render_list, to_json,
};
pub use worktrees::{Conflict, WorktreeView};
pub(crate) use worktrees::{conflicts, read as read_worktree};

use crate::error::{Error, Result};
use crate::journal::EndReason;
use crate::model::SessionModel;
#[cfg(test)]
use crate::model::worker_status;
use crate::plan::Plan;
use crate::proto::{SessionState, TaskState};
use crate::session::Session;

/// One attempt of a task, from the journal: which worker ran it and why it ended (null
/// while it runs, or waits in its worker's queue).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptView {
    pub attempt: u32,
    pub worker: Option<String>,
    pub ended: Option<EndReason>,
}

/// One task as status shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    pub id: String,
    /// From its outcome once decided; else `retrying`, `running` or `pending`.
    pub state: TaskState,
    pub attempt: u32,
    pub worker: Option<String>,
    pub exit_code: Option<i32>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub duration_ms: Option<u64>,
    pub reason: Option<String>,
    pub attempts: Vec<AttemptView>,
    /// The running attempt's last `worker progress` report.
    pub progress: Option<crate::shared::Progress>,
    /// The task's secret variables, values redacted (`PGPASSWORD=<from the caller>`):
    /// which ones it takes and from where, never what they hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secrets: Option<String>,
    /// Its git worktree (`worktree = true`), once made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worktree: Option<WorktreeView>,
    /// The task's files that could not be read, each message naming its file (the rest
    /// of the view comes from the other files and the journal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// An agent task's state, as it last reported it (`exited` once its attempt is not
    /// running, whatever it said last).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentView>,
}

/// Where an agent task stands.
#[derive(Debug, Clone, Serialize)]
pub struct AgentView {
    pub state: crate::agent::AgentState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub since: String,
}

impl TaskView {
    /// Whether the task's agent waits for a person.
    pub fn waiting(&self) -> bool {
        self.agent
            .as_ref()
            .is_some_and(|a| a.state == crate::agent::AgentState::Waiting)
    }
}

/// What a worker is doing, as status shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerStatus {
    /// Launched, not registered yet (no `worker.json`).
    Starting,
    /// Alive, and the last line of its journal is not a start.
    Idle,
    /// Alive, and the last line of its journal is a start.
    Running,
    /// Gone after journalling `stopped`.
    Exited,
    /// Gone without a word (or never registered in a finished session).
    Lost,
}

impl WorkerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerStatus::Starting => "starting",
            WorkerStatus::Idle => "idle",
            WorkerStatus::Running => "running",
            WorkerStatus::Exited => "exited",
            WorkerStatus::Lost => "lost",
        }
    }
}

/// One worker as status shows it.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerView {
    pub id: String,
    pub pid: Option<u32>,
    pub state: WorkerStatus,
    pub task: Option<String>,
    pub terminal: Option<String>,
    /// What its running attempt uses (`usage.json`), while it runs one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<crate::usage::Usage>,
    /// The worker's files that could not be read (`worker.json`, its journal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A pool of `[resources]` as it stands: `used` is the sum of the claims of the tasks
/// running now.
#[derive(Debug, Clone, Serialize)]
pub struct PoolView {
    pub pool: String,
    pub used: u64,
    pub max: u64,
    pub warn: Option<u64>,
    pub critical: Option<u64>,
    pub level: crate::plan::Level,
}

/// A gate as the journal has it: `pending` (its tasks have not all succeeded),
/// `waiting` (for a person), `approved`, or `rejected` with why.
#[derive(Debug, Clone, Serialize)]
pub struct GateView {
    pub gate: String,
    pub state: GateState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An auxiliary command's run (a cleanup, a gate's check, an emergency command, a
/// rollback step) as the journal tells it.
#[derive(Debug, Clone, Serialize)]
pub struct AuxView {
    pub kind: crate::proto::AuxKind,
    /// Its task (or gate, for a check).
    pub of: String,
    pub attempt: u32,
    pub worker: String,
    pub state: AuxStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Where an auxiliary command's run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuxStatus {
    Running,
    Succeeded,
    Failed,
    Unknown,
    Skipped,
}

impl AuxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AuxStatus::Running => "running",
            AuxStatus::Succeeded => "succeeded",
            AuxStatus::Failed => "failed",
            AuxStatus::Unknown => "unknown",
            AuxStatus::Skipped => "skipped",
        }
    }
}

impl From<crate::proto::AuxState> for AuxStatus {
    fn from(s: crate::proto::AuxState) -> AuxStatus {
        use crate::proto::AuxState as S;
        match s {
            S::Succeeded => AuxStatus::Succeeded,
            S::Failed => AuxStatus::Failed,
            S::Unknown => AuxStatus::Unknown,
            S::Skipped => AuxStatus::Skipped,
        }
    }
}

/// Where a gate stands, for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GateState {
    Pending,
    /// Its check (`run`) is running.
    Checking,
    Waiting,
    Approved,
    Rejected,
    /// Its check passed; it needs no approval.
    Passed,
    /// Its check failed.
    Failed,
}

/// A session as read from its directory.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub session: String,
    pub path: String,
    pub state: SessionState,
    /// Whether an orchestrator holds the session now (not part of `status --json`).
    #[serde(skip)]
    pub orchestrator_alive: bool,
    /// From `session.json` (none when it cannot be read).
    pub created_at: Option<String>,
    pub tasks: Vec<TaskView>,
    pub workers: Vec<WorkerView>,
    /// The plan's token pools with the tokens its running tasks claim now.
    pub resources: Vec<PoolView>,
    /// The plan's gates, waiting ones first.
    pub gates: Vec<GateView>,
    /// New starts held for lack of memory: (available, needed) bytes.
    pub held: Option<(u64, u64)>,
    /// Every auxiliary command run, in journal order of kind, owner and attempt.
    pub aux: Vec<AuxView>,
    /// The last rollback's steps, in order, once one was requested.
    pub rollback: Option<Vec<String>>,
    /// Files changed by the worktrees of more than one task (none: no task has a
    /// worktree).
    pub conflicts: Option<Vec<Conflict>>,
    /// The session's own files that could not be read (`session.json`, `plan.json`,
    /// `summary.json`, the journal, the workers' directory), each message naming its file.
    pub errors: Vec<String>,
    /// Set by [`only_waiting`]: the session's tasks done and in all, before the tasks
    /// not waiting for a person were left out, so the header still counts the session.
    #[serde(skip)]
    pub counted: Option<(usize, usize)>,
}

impl Snapshot {
    /// Tasks decided (succeeded, failed, skipped, cancelled, lost or excluded): what `status` and
    /// `list` show as done.
    pub fn done(&self) -> usize {
        self.tasks.iter().filter(|t| t.state.is_terminal()).count()
    }

    /// How many files could not be read, the session's, its tasks' and its workers'.
    pub fn unreadable(&self) -> usize {
        self.errors.len()
            + self.tasks.iter().filter(|t| t.error.is_some()).count()
            + self.workers.iter().filter(|w| w.error.is_some()).count()
    }
}

/// The session's `plan.json`, read with the plan cap.
pub(crate) fn required_plan(s: &Session) -> Result<Plan> {
    let path = s.plan_json();
    Plan::read(&path)?.ok_or_else(|| Error::Session(format!("{}: missing", path.display())))
}

/// A session's state: its summary's once it finished; while an orchestrator holds it,
/// `running` (or `stopping`, when the journal says it is stopping); with none, what the
/// journal last said, where `running` means the orchestrator died: `interrupted`.
pub fn session_state(
    summary: Option<SessionState>,
    orchestrator_alive: bool,
    journal: Option<SessionState>,
) -> SessionState {
    match (summary, orchestrator_alive, journal) {
        // A finished session being rolled back has its old summary until the end.
        (_, true, Some(SessionState::RollingBack)) => SessionState::RollingBack,
        (_, false, Some(SessionState::RollingBack)) => SessionState::Interrupted,
        (Some(s), _, _) => s,
        (None, true, Some(SessionState::Stopping)) => SessionState::Stopping,
        (None, true, Some(SessionState::Frozen)) => SessionState::Frozen,
        (None, true, _) => SessionState::Running,
        (None, false, None | Some(SessionState::Running)) => SessionState::Interrupted,
        (None, false, Some(s)) => s,
    }
}

/// Read the whole session, every file on its own: one that cannot be read is reported
/// and the rest is shown. One refresh of a new [`SessionModel`], the model the live
/// dashboard keeps up to date: both show the same truth.
pub fn snapshot(s: &Session) -> Snapshot {
    let mut model = SessionModel::new(s.clone());
    model.refresh();
    model.into_snapshot()
}

#[cfg(test)]
mod tests;
