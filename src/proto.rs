//! The records maestro keeps in a session directory: one serde type per file kind.
//! docs/PROTOCOL.md describes each one, who writes it and when; keep the two in step.
//! Field names are part of the protocol (people and scripts read these files).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::plan::TaskCommand;

/// Version of the on-disk protocol, written into `session.json`.
pub const PROTOCOL_VERSION: u32 = 2;

/// Wall-clock timestamp as RFC 3339 UTC with milliseconds (`2026-11-23T06:29:04.123Z`).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// Milliseconds since the Unix epoch, for arithmetic on timestamps from different processes.
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

/// `session.json`: written once by the orchestrator that creates the session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionInfo {
    pub protocol: u32,
    pub id: String,
    pub plan_file: PathBuf,
    pub created_at: String,
    pub launcher: String,
    pub workers: usize,
    #[serde(default)]
    pub durable: bool,
    /// Where the worktrees of tasks with `worktree = true` start from, recorded once when
    /// the session is created (absent when no task has one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worktrees: Option<WorktreeSetup>,
}

/// `session.json`'s `worktrees`: what every task's worktree is made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorktreeSetup {
    /// The plan file's directory (absolute, links resolved): what `owns` patterns are
    /// relative to, for telling which changed files are outside a task's scope.
    pub plan_dir: PathBuf,
    /// Each repository a worktree task runs in, with its HEAD when the session started.
    pub repos: Vec<RepoBase>,
}

/// A repository (its main checkout's top level, absolute, links resolved) and the
/// commit every worktree of it starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoBase {
    pub repo: PathBuf,
    pub base: String,
}

/// `tasks/<id>/worktree.json`: a task's git worktree, written when the worktree is made
/// and refreshed each time an attempt of the task ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorktreeRecord {
    pub task: String,
    /// The main checkout's top level.
    pub repo: PathBuf,
    pub branch: String,
    /// The commit the branch was made from.
    pub base: String,
    /// The worktree (`worktrees/<task>/` in the session).
    pub path: PathBuf,
    /// Where the task's attempts run: its `cwd` mapped into the worktree.
    pub cwd: PathBuf,
    /// Files changed since `base`, relative to the repository's top level: committed on
    /// the branch, or uncommitted (modified, staged, untracked) in the worktree. Sorted.
    pub changed: Vec<String>,
    /// Those of `changed` that no `owns` pattern of the task matches (empty for a task
    /// that declares no `owns`).
    #[serde(default)]
    pub outside_owns: Vec<String>,
    /// How many names were left out of `changed` and `outside_owns` to keep the record
    /// small (the lists are cut at [`WORKTREE_NAMES_CAP`] bytes of names each).
    #[serde(default, skip_serializing_if = "is_zero_usize")]
    pub omitted: usize,
    /// When `changed` was last looked at.
    pub updated_at: String,
}

/// The bytes of names each list of a [`WorktreeRecord`] holds at most, so that the record
/// stays far under the 16 MiB it is read with, however many files a task changed.
pub const WORKTREE_NAMES_CAP: usize = 4 * 1024 * 1024;

fn is_zero_usize(n: &usize) -> bool {
    *n == 0
}

/// `orchestrator/info.json`: the live (or last) orchestrator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrchestratorInfo {
    pub pid: u32,
    pub host: String,
    pub started_at: String,
}

/// `workers/<id>/worker.json`: written by the worker when it registers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub id: String,
    pub pid: u32,
    pub host: String,
    pub launcher: String,
    /// The terminal the worker runs in (tty name or tmux window), if any.
    pub terminal: Option<String>,
    /// The socket of the tmux server whose window the worker runs in (from `$TMUX`), for
    /// `orchestrator attach`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmux_socket: Option<String>,
    pub started_at: String,
    /// The protocol version the worker speaks: a resumed orchestrator never adopts a
    /// worker that speaks another (none: written before versions were recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u32>,
}

/// `workers/<id>/assigned/<task>.<attempt>`: the orchestrator's assignment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Assignment {
    pub task: String,
    pub attempt: u32,
    pub command: TaskCommand,
    pub cwd: PathBuf,
    pub env: BTreeMap<String, String>,
    /// Names the worker passes on from its own environment (secrets: no value here).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from_parent: Vec<String>,
    /// A file of `KEY=VALUE` lines the worker reads as the attempt starts (secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_file: Option<PathBuf>,
    pub timeout_ms: Option<u64>,
    /// Time between SIGTERM and SIGKILL when the attempt is stopped.
    pub kill_grace_ms: u64,
    /// The task's `memory`: the attempt is stopped (`memory limit`) when its process
    /// group's memory goes over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<u64>,
    /// An auxiliary command (its `task` is the job's name, [`AuxKind::job`]): never
    /// frozen with the session's tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aux: Option<AuxKind>,
    /// The task is an AI agent (its state comes from its own reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<crate::plan::AgentKind>,
    /// The worker ends the attempt, as a success, when this happens (`end_on`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_on: Option<crate::plan::EndOn>,
    /// Under a terminal launcher the task runs on a pty (false: `interactive = false`).
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub interactive: bool,
    /// A file the task reads as its stdin when it is not on a pty (none: /dev/null).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<PathBuf>,
    pub assigned_at: String,
    /// Hand-over order: a worker with two unclaimed assignments (one queued behind the
    /// other) claims the lower first. Increasing across resumes (it starts from
    /// the orchestrator's start time in microseconds).
    #[serde(default)]
    pub seq: u64,
}

fn is_yes(b: &bool) -> bool {
    *b
}

/// `workers/<id>/kill`: the orchestrator asks the worker to stop one attempt (the worker
/// owns the process, so it signals the group it started; no PID is read from a file).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KillRequest {
    pub task: String,
    pub attempt: u32,
    /// `reassigned`, `cancelled` or `lost`.
    pub reason: String,
}

/// `workers/<id>/heartbeat`: a counter the worker bumps every second while alive.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Heartbeat {
    pub counter: u64,
}

/// Why the orchestrator tells a worker to stop.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ShutdownReason {
    /// No work is left that this worker could take.
    Idle,
    /// The session is over.
    SessionEnd,
    /// The orchestrator declared this worker lost (stuck past its lease); its task moved on.
    Lost,
}

/// `workers/<id>/shutdown`: written by the orchestrator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shutdown {
    pub reason: ShutdownReason,
}

/// The `started` line of a worker's `workers/<id>/events.jsonl`: written by the worker when
/// the attempt's process started (`journal::started_record` finds it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Started {
    pub task: String,
    pub attempt: u32,
    pub worker: String,
    pub pid: u32,
    /// The task's process group (== pid: each task leads its own process group).
    pub pgid: u32,
    pub started_at: String,
    pub started_unix_ms: u64,
    /// The process's start time in clock ticks since boot (`/proc/PID/stat` field 22):
    /// with the pid and `boot_id`, its identity (a reused pid has another start time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proc_start: Option<u64>,
    /// `/proc/sys/kernel/random/boot_id` of the host that started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
}

/// `tasks/<id>/attempt-<n>/exit.json`: written by the worker when the attempt ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExitRecord {
    pub task: String,
    pub attempt: u32,
    pub worker: String,
    /// Exit code when the process exited normally.
    pub exit_code: Option<i32>,
    /// Signal number when it was killed by a signal.
    pub signal: Option<i32>,
    pub started_at: String,
    pub ended_at: String,
    pub duration_ms: u64,
    /// The attempt ran past the task's `timeout` and its process group was killed.
    #[serde(default)]
    pub timed_out: bool,
    /// The orchestrator asked for this attempt to be stopped (`reassigned`, `cancelled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub killed_by: Option<String>,
    /// The worker ended the attempt, a success, on what its task's `end_on` names
    /// (`"idle"`: its agent went idle after working); its exit code is then 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_on: Option<String>,
    /// The process could not be started at all (bad cwd, missing program, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spawn_error: Option<String>,
    /// The task wrote a `result.json` that is not a JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_error: Option<String>,
    /// Whether the attempt left a `result.json` when it ended: the orchestrator reads one
    /// only then (no probe for a file that is not there). A record without the
    /// field says yes, so the file is looked for.
    #[serde(default = "yes")]
    pub has_result: bool,
}

fn yes() -> bool {
    true
}

/// The largest result a task may leave, as a file and as compact JSON (4 MiB). A result
/// is embedded compact in `outcome.json` (and a race's), so every record that holds one
/// stays under the 16 MiB every session JSON file is read with; the compact form is
/// checked too, because re-encoding can lengthen a value (`1e15` is written
/// `1000000000000000.0`).
pub const RESULT_CAP: u64 = 4 * 1024 * 1024;

/// An attempt's `result.json`: `Ok(None)` when there is none, else the JSON object it
/// holds, or why it is not an acceptable result (the message names the file).
pub fn read_result(path: &std::path::Path) -> Result<Option<serde_json::Value>, String> {
    let bytes = match crate::fsio::read_capped(path, RESULT_CAP) {
        Ok(None) => return Ok(None),
        Ok(Some(b)) => b,
        Err(e) => return Err(e.to_string()),
    };
    parse_result(path, &bytes).map(Some)
}

/// The checks of [`read_result`] on the bytes of `path` (named in the message): a JSON
/// object, at most [`RESULT_CAP`] bytes as compact JSON.
pub fn parse_result(path: &std::path::Path, bytes: &[u8]) -> Result<serde_json::Value, String> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| format!("{}: invalid JSON: {e}", path.display()))?;
    if !value.is_object() {
        return Err(format!("{}: result is not a JSON object", path.display()));
    }
    let compact = serde_json::to_vec(&value).map_or(u64::MAX, |v| v.len() as u64);
    if compact > RESULT_CAP {
        return Err(format!(
            "{}: result is {compact} bytes as compact JSON; the limit is {RESULT_CAP}",
            path.display()
        ));
    }
    Ok(value)
}

/// Serialize a result compact, even inside a record written pretty: its size in the record
/// is then the compact size [`read_result`] checked (pretty-printing a deeply nested value
/// can multiply its size by its depth).
fn compact_result<S: serde::Serializer>(
    value: &Option<serde_json::Value>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::Error as _;
    match value {
        None => s.serialize_none(),
        Some(v) => {
            let text = serde_json::to_string(v).map_err(S::Error::custom)?;
            let raw = serde_json::value::RawValue::from_string(text).map_err(S::Error::custom)?;
            s.serialize_some(&raw)
        }
    }
}

/// What is wrong with the bytes of a task's `result.json` (read from `path`, named in the
/// message), if anything (the fuzz targets feed it).
pub fn result_error(path: &std::path::Path, bytes: &[u8]) -> Option<String> {
    parse_result(path, bytes).err()
}

impl ExitRecord {
    /// Whether this attempt counts as a success.
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0)
            && !self.timed_out
            && self.killed_by.is_none()
            && self.spawn_error.is_none()
            && self.result_error.is_none()
    }

    /// A one-line reason for a failed attempt.
    pub fn failure_reason(&self) -> Option<String> {
        if let Some(e) = &self.spawn_error {
            return Some(format!("could not start: {e}"));
        }
        if let Some(e) = &self.result_error {
            return Some(e.clone());
        }
        if self.timed_out {
            return Some(format!(
                "timed out after {:.1}s",
                self.duration_ms as f64 / 1000.0
            ));
        }
        if let Some(k) = &self.killed_by {
            return Some(format!("stopped: {k}"));
        }
        match (self.exit_code, self.signal) {
            (Some(0), _) => None,
            (Some(c), _) => Some(format!("exited with code {c}")),
            (None, Some(s)) => Some(format!("killed by signal {s}")),
            (None, None) => Some("ended without an exit status".into()),
        }
    }
}

/// A task's state: the one vocabulary of the engine, status, list, the summary and the
/// journal.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Pending,
    Running,
    /// An attempt failed and another is scheduled (`retry.json`): not decided yet. Only
    /// `status` shows it; the engine never decides a task `retrying`.
    Retrying,
    Succeeded,
    Failed,
    Skipped,
    /// Cancelled by a person (`orchestrator cancel`), or a dependent of a cancelled task.
    Cancelled,
    /// Lost a race: stopped when another member won, or outscored.
    Lost,
    /// Left out of a partial run (`run --only`/`--skip`): never run, satisfied for what
    /// depends on it, and not a failure of the session.
    Excluded,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Running => "running",
            TaskState::Retrying => "retrying",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Skipped => "skipped",
            TaskState::Cancelled => "cancelled",
            TaskState::Lost => "lost",
            TaskState::Excluded => "excluded",
        }
    }

    /// Whether the task is decided (it has an outcome): what `status` and `list` count
    /// as done.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded
                | TaskState::Failed
                | TaskState::Skipped
                | TaskState::Cancelled
                | TaskState::Lost
                | TaskState::Excluded
        )
    }
}

/// `tasks/<id>/outcome.json`: the accepted final outcome, created once by the orchestrator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    pub task: String,
    pub state: TaskState,
    /// The attempt whose exit was accepted (0 for a skipped task that never ran).
    pub attempt: u32,
    pub worker: Option<String>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub duration_ms: Option<u64>,
    /// Why the task failed or was skipped.
    pub reason: Option<String>,
    /// The task's `result.json`, when it wrote one (compact).
    #[serde(serialize_with = "compact_result")]
    pub result: Option<serde_json::Value>,
    pub decided_at: String,
}

/// Overall state of a session.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    Running,
    /// No new starts: running attempts are being stopped (cancel, Ctrl-C).
    Stopping,
    Succeeded,
    Failed,
    /// The orchestrator is gone and the session did not finish (resume it).
    Interrupted,
    /// `orchestrator cancel SESSION` stopped it.
    Cancelled,
    /// `orchestrator freeze`: every running attempt's process group is stopped
    /// (SIGSTOP) and nothing starts until `orchestrator thaw`.
    Frozen,
    /// `orchestrator rollback`: succeeded tasks' `rollback` commands run, one at a time,
    /// in reverse order of completion.
    RollingBack,
    /// Every rollback step succeeded.
    RolledBack,
    /// A rollback step failed, or its runner died without an exit record (unknown): the
    /// rollback stopped there, for a person.
    RollbackFailed,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Running => "running",
            SessionState::Stopping => "stopping",
            SessionState::Succeeded => "succeeded",
            SessionState::Failed => "failed",
            SessionState::Interrupted => "interrupted",
            SessionState::Cancelled => "cancelled",
            SessionState::Frozen => "frozen",
            SessionState::RollingBack => "rolling_back",
            SessionState::RolledBack => "rolled_back",
            SessionState::RollbackFailed => "rollback_failed",
        }
    }
}

/// An auxiliary command: not a task, but run like one (a worker, an assignment, the
/// fence, logs, a timeout), on the cleanup pool.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum AuxKind {
    /// A gate's `run`: a validation that must exit 0.
    Check,
    /// A task's `cleanup`, after each attempt that ran.
    Cleanup,
    /// A task's `emergency`, when a failure froze the session while it ran.
    Emergency,
    /// A task's `rollback`, undoing its success.
    Rollback,
}

impl AuxKind {
    pub const ALL: [AuxKind; 4] = [
        AuxKind::Check,
        AuxKind::Cleanup,
        AuxKind::Emergency,
        AuxKind::Rollback,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuxKind::Check => "check",
            AuxKind::Cleanup => "cleanup",
            AuxKind::Emergency => "emergency",
            AuxKind::Rollback => "rollback",
        }
    }

    /// The job's name where a task id goes (its assignment's name, `tasks/<name>/`):
    /// the owner's id (a task's, or a gate's for a check), `+`, the kind. No task id has
    /// a `+`, so no job's name is a task's.
    pub fn job(self, owner: &str) -> String {
        format!("{owner}+{}", self.as_str())
    }

    /// The owner and kind of a job's name (see [`AuxKind::job`]).
    pub fn parse_job(name: &str) -> Option<(&str, AuxKind)> {
        let (owner, kind) = name.rsplit_once('+')?;
        let kind = AuxKind::ALL.into_iter().find(|k| k.as_str() == kind)?;
        crate::names::is_valid(owner).then_some((owner, kind))
    }
}

/// How an auxiliary command ended.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AuxState {
    Succeeded,
    /// It exited non-zero, was killed (timeout, interrupt), or could not start.
    Failed,
    /// Its runner died without an exit record: it may or may not have run. Never run
    /// again by itself (a cleanup or a rollback may not be safe to repeat).
    Unknown,
    /// A rollback step a person said is done (`orchestrator rollback --skip-unknown`).
    Skipped,
}

impl AuxState {
    pub fn as_str(self) -> &'static str {
        match self {
            AuxState::Succeeded => "succeeded",
            AuxState::Failed => "failed",
            AuxState::Unknown => "unknown",
            AuxState::Skipped => "skipped",
        }
    }
}

/// One task's row of `summary-tasks.jsonl` (one compact line per task, in plan order),
/// and of the `not_succeeded` list in `summary.json`. Every field is bounded (ids and
/// worker ids by the name rule, `reason` by [`REASON_MAX`], paths by the ids), so a row
/// always fits under the rows reader's line cap; a result is named, never embedded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    pub id: String,
    pub state: TaskState,
    /// The attempt whose exit decided the task (0: it never ran).
    pub attempt: u32,
    /// How many attempts it was given.
    pub attempts: u32,
    pub worker: Option<String>,
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    pub duration_ms: Option<u64>,
    /// Why it did not succeed, cut to [`REASON_MAX`] bytes.
    pub reason: Option<String>,
    /// The result file of the deciding attempt, relative to the session directory.
    pub result: Option<String>,
}

/// The longest `reason` a summary row keeps, in bytes (a longer one is cut, marked `…`).
pub const REASON_MAX: usize = 1024;

/// A task that did not succeed, as `summary.json` lists it: its row and, when it ran, where
/// its logs are (relative to the session directory).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotSucceeded {
    #[serde(flatten)]
    pub row: SummaryRow,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
}

/// `summary.json`: written by the orchestrator when the session ends. It stays small
/// whatever the number of tasks or the size of their results: counts, and the first
/// [`NOT_SUCCEEDED_MAX`] tasks that did not succeed; every task's row is in the file
/// `rows` names. A summary written before the rows file existed has an embedded
/// `tasks` list instead of the fields marked `default`: it is read for its `state` alone.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub session: String,
    pub state: SessionState,
    pub started_at: String,
    pub ended_at: String,
    pub duration_ms: u64,
    /// The number of tasks in the plan.
    #[serde(default)]
    pub total: usize,
    /// Tasks by final state (states no task ended in are left out).
    #[serde(default)]
    pub counts: BTreeMap<TaskState, usize>,
    /// The tasks that did not succeed, in plan order, at most [`NOT_SUCCEEDED_MAX`].
    #[serde(default)]
    pub not_succeeded: Vec<NotSucceeded>,
    /// How many more did not succeed than `not_succeeded` lists (their rows are in `rows`).
    #[serde(default)]
    pub not_succeeded_omitted: usize,
    /// The file of every task's row, relative to the session directory.
    #[serde(default)]
    pub rows: Option<String>,
}

/// The most tasks `summary.json` lists under `not_succeeded`.
pub const NOT_SUCCEEDED_MAX: usize = 100;

impl Summary {
    /// How many tasks ended in `state`.
    pub fn count(&self, state: TaskState) -> usize {
        self.counts.get(&state).copied().unwrap_or(0)
    }
}

/// `tasks/<id>/retry.json`: a failed attempt will be retried after a backoff; written by the
/// orchestrator, removed when the retry is assigned.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RetryPlan {
    pub failed_attempt: u32,
    pub next_attempt: u32,
    pub not_before_unix_ms: u64,
    pub reason: String,
}

/// What a person (or the CLI on their behalf) asks of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlAction {
    /// Stop the task's running attempt; a new attempt runs on another worker.
    Reassign,
    /// Cancel one task (with `task`) and its dependents, or the whole session.
    Cancel,
    /// Drain the session: no new starts; running attempts finish.
    Stop,
    /// Open the gate named by `task` (a gate id).
    Approve,
    /// Refuse the gate named by `task`: a failure for the tasks after it.
    Reject { reason: String },
    /// Stop every running attempt's process group where it is; start nothing.
    Freeze,
    /// Let frozen attempts go on and new ones start.
    Thaw,
    /// Undo: stop what runs, then run every succeeded task's `rollback`, last completed
    /// first. `unknown`: what to do with a step whose runner died without an exit record
    /// (without it, such a step stops the rollback again).
    Rollback {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unknown: Option<UnknownStep>,
    },
    /// Run at most `workers` tasks at once from now on.
    Scale { workers: usize },
    /// Take `tasks` more tasks (the request's `tasks`, checked as a plan's would be).
    Add { tasks: usize },
}

/// A person's word on a rollback step whose outcome is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownStep {
    /// Run it again.
    Rerun,
    /// It is done (checked by hand): go on with the next.
    Skip,
}

impl ControlAction {
    pub fn as_str(&self) -> &'static str {
        match self {
            ControlAction::Reassign => "reassign",
            ControlAction::Cancel => "cancel",
            ControlAction::Stop => "stop",
            ControlAction::Approve => "approve",
            ControlAction::Reject { .. } => "reject",
            ControlAction::Freeze => "freeze",
            ControlAction::Thaw => "thaw",
            ControlAction::Rollback { .. } => "rollback",
            ControlAction::Scale { .. } => "scale",
            ControlAction::Add { .. } => "add",
        }
    }
}

/// What a person asks of a live orchestrator through `control/<id>.json` (written by the
/// CLI, consumed and removed by the orchestrator).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlRequest {
    pub id: String,
    pub action: ControlAction,
    pub task: Option<String>,
    pub requested_at: String,
    /// For `add`: the tasks, as `orchestrator add` checked them against the plan.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<crate::plan::Task>,
}

/// `control/replies/<id>.json`: the orchestrator's answer to a request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlReply {
    pub ok: bool,
    pub message: String,
}

/// `checkpoints/<name>/<task>.ready`: created once by a participant when it arrives.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Arrival {
    pub task: String,
    pub attempt: Option<u32>,
    /// `--parties N` for barriers not declared in the plan.
    pub parties: Option<usize>,
    pub arrived_at: String,
}

/// `checkpoints/<name>/proceed` or `broken`: written once by the orchestrator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BarrierVerdict {
    pub released_at: String,
    /// For `broken`: the participant that failed for good, and why.
    pub task: Option<String>,
    pub reason: Option<String>,
}

/// `signals/<name>`: created once by the task that raises it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignalRecord {
    pub task: Option<String>,
    pub attempt: Option<u32>,
    pub raised_at: String,
}

/// `locks/<name>.holders/<task>.json` and `locks/<name>.wait/<task>.json`: written by the
/// `worker lock` process, which keeps an flock on the file while the record is true.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockRecord {
    pub task: String,
    pub attempt: Option<u32>,
    pub shared: bool,
    pub pid: u32,
    pub since_unix_ms: u64,
}

/// `locks/<name>.wait/<task>.abort`: the orchestrator breaks a deadlock.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockAbort {
    pub cycle: String,
}

/// `races/<id>/outcome.json`: how a race ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RaceOutcome {
    pub race: String,
    pub state: TaskState,
    pub winner: Option<String>,
    pub score: Option<f64>,
    /// The winner's result (compact).
    #[serde(serialize_with = "compact_result")]
    pub result: Option<serde_json::Value>,
    pub losers: Vec<String>,
    pub decided_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_states_serialize_as_their_names_and_retrying_is_not_decided() {
        use TaskState::*;
        for st in [
            Pending, Running, Retrying, Succeeded, Failed, Skipped, Cancelled, Lost, Excluded,
        ] {
            assert_eq!(serde_json::to_value(st).unwrap(), st.as_str());
            let back: TaskState = serde_json::from_value(st.as_str().into()).unwrap();
            assert_eq!(back, st);
        }
        assert_eq!(Retrying.as_str(), "retrying");
        assert!(!Retrying.is_terminal() && !Running.is_terminal() && !Pending.is_terminal());
        assert!(Lost.is_terminal() && Cancelled.is_terminal() && Excluded.is_terminal());
    }

    /// A result is held compact in a pretty record, so the record's size is the result's
    /// compact size plus its own fields, whatever the result's depth.
    #[test]
    fn an_outcome_holds_its_result_compact() {
        let mut deep = serde_json::json!(1);
        for _ in 0..100 {
            deep = serde_json::json!([deep, deep]);
            deep = serde_json::json!([deep.as_array().unwrap()[0].clone()]);
        }
        let result = serde_json::json!({"deep": deep, "s": "x"});
        let o = Outcome {
            task: "a".into(),
            state: TaskState::Succeeded,
            attempt: 1,
            worker: Some("w1".into()),
            exit_code: Some(0),
            signal: None,
            started_at: None,
            ended_at: None,
            duration_ms: Some(1),
            reason: None,
            result: Some(result.clone()),
            decided_at: "t".into(),
        };
        let bytes = serde_json::to_vec_pretty(&o).unwrap();
        let compact = serde_json::to_string(&result).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.contains(&format!("\"result\": {compact},\n")),
            "{text}"
        );
        assert!(bytes.len() < compact.len() + 400, "{}", bytes.len());
        let back: Outcome = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back.result, Some(result));
        let none = Outcome { result: None, ..o };
        let v: serde_json::Value =
            serde_json::from_slice(&serde_json::to_vec_pretty(&none).unwrap()).unwrap();
        assert_eq!(v["result"], serde_json::Value::Null);
    }

    #[test]
    fn a_result_must_be_an_object_within_the_cap_as_a_file_and_compact() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("result.json");
        assert_eq!(read_result(&p), Ok(None));
        std::fs::write(&p, b"{\"a\": [1, 2]}").unwrap();
        assert_eq!(read_result(&p), Ok(Some(serde_json::json!({"a": [1, 2]}))));
        std::fs::write(&p, b"[1]").unwrap();
        assert_eq!(
            read_result(&p),
            Err(format!("{}: result is not a JSON object", p.display()))
        );
        let cap = RESULT_CAP as usize;
        let mut big = b"{\"a\":\"".to_vec();
        big.resize(cap, b'x');
        big.extend_from_slice(b"\"}");
        std::fs::write(&p, &big).unwrap();
        assert_eq!(
            read_result(&p),
            Err(format!(
                "{}: file is too large ({} bytes; the limit is {RESULT_CAP})",
                p.display(),
                cap + 2
            ))
        );
        // Under the cap as written, over it once re-encoded: 5 bytes become 19.
        let n = cap / 5 - 10;
        let mut grows = String::from("{\"a\":[");
        grows.push_str(&vec!["1e15"; n].join(","));
        grows.push_str("]}");
        assert!(grows.len() <= cap);
        std::fs::write(&p, &grows).unwrap();
        let e = read_result(&p).unwrap_err();
        assert!(
            e.starts_with(&format!("{}: result is ", p.display()))
                && e.ends_with(&format!(
                    " bytes as compact JSON; the limit is {RESULT_CAP}"
                )),
            "{e}"
        );
    }

    /// An `exit.json` from before `has_result` existed: the orchestrator must still look
    /// for the result file.
    #[test]
    fn exit_record_without_has_result_says_there_may_be_one() {
        let old = r#"{"task":"a","attempt":1,"worker":"w1","exit_code":0,"signal":null,
            "started_at":"x","ended_at":"y","duration_ms":3,"timed_out":false}"#;
        let e: ExitRecord = serde_json::from_str(old).unwrap();
        assert!(e.has_result);
        assert!(e.succeeded());
        let mut none = e.clone();
        none.has_result = false;
        let back: ExitRecord =
            serde_json::from_value(serde_json::to_value(&none).unwrap()).unwrap();
        assert_eq!(back, none);
    }
}
