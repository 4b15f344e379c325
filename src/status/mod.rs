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
pub use logs_all::{colour_wanted, logs_all};
pub use render::{
    ListRow, list_json, list_rows, list_table, only_waiting, render, render_list, to_json,
};
pub use worktrees::{Conflict, WorktreeView};

use crate::error::{Error, Result};
use crate::fsio;
use crate::journal::{self, EndReason, History, TaskHistory, WorkerEvent};
use crate::orchestrator::{orchestrator_alive, worker_alive};
use crate::plan::Plan;
use crate::proto::{
    ExitRecord, Outcome, SessionInfo, SessionState, Started, TaskState, WorkerInfo,
};
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
fn required_plan(s: &Session) -> Result<Plan> {
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

/// Where the errors of one item (the session, a task, a worker) are gathered: a read
/// that fails leaves its message here and gives nothing.
#[derive(Default)]
struct Errors(Vec<String>);

impl Errors {
    fn keep<T>(&mut self, r: Result<T>) -> Option<T> {
        r.map_err(|e| self.0.push(e.to_string())).ok()
    }

    fn joined(self) -> Option<String> {
        (!self.0.is_empty()).then(|| self.0.join("; "))
    }
}

/// Read the whole session, every file on its own: one that cannot be read is reported
/// and the rest is shown.
pub fn snapshot(s: &Session) -> Snapshot {
    let mut errors = Errors::default();
    let info: Option<SessionInfo> = errors.keep(fsio::read_json(&s.session_json())).flatten();
    let mut history = errors.keep(journal::read_history(s)).unwrap_or_default();
    // Without the plan, the journal still has the tasks, in plan order.
    let mut secrets = std::collections::HashMap::new();
    let mut pools = std::collections::BTreeMap::new();
    let mut gate_ids = Vec::new();
    let mut claims = std::collections::HashMap::new();
    let mut worktree_tasks = std::collections::HashSet::new();
    let ids: Vec<String> = match errors.keep(required_plan(s)) {
        Some(plan) => {
            pools = plan.resources;
            gate_ids = plan.gates.into_iter().map(|g| g.id).collect();
            plan.tasks
                .into_iter()
                .map(|t| {
                    if t.worktree {
                        worktree_tasks.insert(t.id.clone());
                    }
                    if !t.resources.is_empty() {
                        claims.insert(t.id.clone(), t.resources.clone());
                    }
                    if let Some(line) = t.secrets() {
                        secrets.insert(t.id.clone(), line);
                    }
                    t.id
                })
                .collect()
        }
        None => history
            .task_order
            .iter()
            .filter(|id| crate::names::is_valid(id))
            .cloned()
            .collect(),
    };
    let summary = errors.keep(crate::summary::read(s)).flatten();
    let alive = orchestrator_alive(s);
    // A summary that cannot be read: the journal's `session_finished` has the state.
    let state = session_state(summary.map(|x| x.state), alive, history.state);
    let finished = matches!(
        state,
        SessionState::Succeeded
            | SessionState::Failed
            | SessionState::Cancelled
            | SessionState::RolledBack
            | SessionState::RollbackFailed
    );
    let worker_ids = errors.keep(s.worker_ids()).unwrap_or_default();
    let mut tasks = Vec::with_capacity(ids.len());
    for id in &ids {
        let mut v = task_view(s, id, history.tasks.get(id), &worker_ids);
        v.attempts = attempts_of(&mut history, &v);
        v.secrets = secrets.remove(id);
        v.agent = history.agents.get(id).map(|a| {
            // Its process is gone (liveness, not its last word): exited.
            let running = v.state == TaskState::Running && v.attempt == a.attempt;
            AgentView {
                state: if running {
                    a.state
                } else {
                    crate::agent::AgentState::Exited
                },
                message: a.message.clone().filter(|_| running),
                since: a.since.clone(),
            }
        });
        if worktree_tasks.contains(id) {
            match worktrees::read(s, id) {
                Ok(w) => v.worktree = w,
                Err(e) => {
                    let e = e.to_string();
                    v.error = Some(v.error.map_or(e.clone(), |old| format!("{old}; {e}")));
                }
            }
        }
        tasks.push(v);
    }
    let conflicts = (!worktree_tasks.is_empty()).then(|| worktrees::conflicts(&tasks));
    let workers = worker_ids
        .into_iter()
        .map(|id| worker_view(s, id, finished))
        .collect();
    let mut gates: Vec<GateView> = gate_ids
        .into_iter()
        .map(|gate| {
            use crate::journal::history::GateRecord;
            let (state, reason) = match history.gates.get(&gate) {
                None => (GateState::Pending, None),
                Some(GateRecord::Waiting) => (GateState::Waiting, None),
                Some(GateRecord::Approved) => (GateState::Approved, None),
                Some(GateRecord::Rejected(r)) => (GateState::Rejected, Some(r.clone())),
                Some(GateRecord::Checking) => (GateState::Checking, None),
                Some(GateRecord::Passed) => (GateState::Passed, None),
                Some(GateRecord::Failed(r)) => (GateState::Failed, Some(r.clone())),
            };
            GateView {
                gate,
                state,
                reason,
            }
        })
        .collect();
    gates.sort_by_key(|g| g.state != GateState::Waiting);
    let resources = pools
        .into_iter()
        .map(|(pool, p)| {
            let used = tasks
                .iter()
                .filter(|t| t.state == TaskState::Running)
                .filter_map(|t| claims.get(&t.id)?.get(&pool))
                .fold(0u64, |a, n| a.saturating_add(*n));
            PoolView {
                level: p.level(used),
                pool,
                used,
                max: p.max,
                warn: p.warn,
                critical: p.critical,
            }
        })
        .collect();
    Snapshot {
        session: s.id().to_string(),
        path: s.root().display().to_string(),
        state,
        orchestrator_alive: alive,
        created_at: info.map(|i| i.created_at),
        tasks,
        workers,
        resources,
        gates,
        held: history.held,
        aux: history
            .aux
            .iter()
            .map(|((kind, of, attempt), r)| AuxView {
                kind: *kind,
                of: of.clone(),
                attempt: *attempt,
                worker: r.worker.clone(),
                state: r
                    .end
                    .as_ref()
                    .map_or(AuxStatus::Running, |e| e.state.into()),
                reason: r.end.as_ref().and_then(|e| e.reason.clone()),
            })
            .collect(),
        rollback: history.rollback.clone(),
        conflicts,
        errors: errors.0,
    }
}

fn worker_view(s: &Session, id: String, finished: bool) -> WorkerView {
    let mut errors = Errors::default();
    let info: Option<WorkerInfo> = errors.keep(fsio::read_json(&s.worker_json(&id))).flatten();
    // What it does now is the last line of its own journal.
    let last = errors
        .keep(journal::last_worker_event(&s.worker_events(&id)))
        .flatten();
    let registered = info.is_some() || fsio::exists(&s.worker_json(&id));
    let (state, task) = worker_status(registered, last, worker_alive(s, &id), finished);
    // Only the running attempt's: the file stays after it ends.
    let usage = match (&state, &task) {
        (WorkerStatus::Running, Some(t)) => {
            fsio::read_json::<crate::usage::Usage>(&s.worker_usage(&id))
                .ok()
                .flatten()
                .filter(|u| &u.task == t)
        }
        _ => None,
    };
    WorkerView {
        usage,
        pid: info.as_ref().map(|i| i.pid),
        terminal: info.and_then(|i| i.terminal),
        id,
        state,
        task,
        error: errors.joined(),
    }
}

/// A worker's state (and its task, when running) from whether it registered, the last
/// line of its journal and whether it lives.
fn worker_status(
    registered: bool,
    last: Option<WorkerEvent>,
    alive: bool,
    finished: bool,
) -> (WorkerStatus, Option<String>) {
    match (registered, last, alive) {
        (false, _, _) if !finished => (WorkerStatus::Starting, None),
        (false, _, _) => (WorkerStatus::Lost, None),
        (true, Some(WorkerEvent::Started(st)), true) => (WorkerStatus::Running, Some(st.task)),
        (true, Some(WorkerEvent::Stopped {}), false) => (WorkerStatus::Exited, None),
        (true, _, true) => (WorkerStatus::Idle, None),
        (true, _, false) => (WorkerStatus::Lost, None),
    }
}

/// Task `v`'s attempts as the journal tells them (taken out of `history`), plus its
/// running attempt if the journal does not know it yet.
fn attempts_of(history: &mut History, v: &TaskView) -> Vec<AttemptView> {
    let mut attempts: Vec<AttemptView> = history
        .tasks
        .remove(&v.id)
        .map(|h| h.attempts)
        .unwrap_or_default()
        .into_iter()
        .map(|a| AttemptView {
            attempt: a.attempt,
            worker: a.worker,
            ended: a.ended,
        })
        .collect();
    if v.state == TaskState::Running && !attempts.iter().any(|a| a.attempt == v.attempt) {
        attempts.push(AttemptView {
            attempt: v.attempt,
            worker: v.worker.clone(),
            ended: None,
        });
        attempts.sort_by_key(|a| a.attempt);
    }
    attempts
}

/// A task not decided yet (or whose outcome cannot be read).
fn undecided(id: &str) -> TaskView {
    TaskView {
        id: id.into(),
        state: TaskState::Pending,
        attempt: 0,
        worker: None,
        exit_code: None,
        started_at: None,
        ended_at: None,
        duration_ms: None,
        reason: None,
        attempts: Vec::new(),
        progress: None,
        secrets: None,
        agent: None,
        worktree: None,
        error: None,
    }
}

/// Task `id` from its files; `journal` is what the journal says of it (its decision, when
/// the outcome file cannot be read).
fn task_view(
    s: &Session,
    id: &str,
    journal: Option<&TaskHistory>,
    worker_ids: &[String],
) -> TaskView {
    let mut errors = Errors::default();
    match fsio::read_json::<Outcome>(&s.outcome_json(id)) {
        Ok(Some(o)) => {
            return TaskView {
                state: o.state,
                attempt: o.attempt,
                worker: o.worker,
                exit_code: o.exit_code,
                started_at: o.started_at,
                ended_at: o.ended_at,
                duration_ms: o.duration_ms,
                reason: o.reason,
                ..undecided(id)
            };
        }
        Ok(None) => {}
        Err(e) => {
            let error = Some(e.to_string());
            if let Some(state) = journal.and_then(|h| h.decided) {
                let attempt = journal.map_or(0, |h| h.last_attempt);
                return TaskView {
                    state,
                    attempt,
                    error,
                    ..undecided(id)
                };
            }
            errors.0.push(e.to_string());
        }
    }
    let mut v = undecided(id);
    if let Some(r) = errors
        .keep(fsio::read_json::<crate::proto::RetryPlan>(
            &s.retry_json(id),
        ))
        .flatten()
    {
        let left = r
            .not_before_unix_ms
            .saturating_sub(crate::proto::now_unix_ms());
        v.state = TaskState::Retrying;
        v.attempt = r.failed_attempt;
        v.reason = Some(format!(
            "retrying (next in {}s): {}",
            left.div_ceil(1000),
            r.reason
        ));
        v.error = errors.joined();
        return v;
    }
    if let Some(&n) = errors.keep(s.attempts(id)).unwrap_or_default().last() {
        v.attempt = n;
        if let Some(e) = errors
            .keep(fsio::read_json::<ExitRecord>(&s.exit_json(id, n)))
            .flatten()
        {
            v.state = TaskState::Running; // ended, not yet accepted by the orchestrator
            v.worker = Some(e.worker);
            v.exit_code = e.exit_code;
            v.started_at = Some(e.started_at);
            v.ended_at = Some(e.ended_at);
            v.duration_ms = Some(e.duration_ms);
        } else if let Some(st) = errors.keep(started(s, id, n, worker_ids)).flatten() {
            v.state = TaskState::Running;
            v.worker = Some(st.worker);
            v.started_at = Some(st.started_at);
            v.duration_ms = Some(crate::proto::now_unix_ms().saturating_sub(st.started_unix_ms));
            v.progress = errors
                .keep(fsio::read_json::<crate::shared::Progress>(
                    &s.progress_json(id, n),
                ))
                .flatten();
            if let Some(p) = &v.progress {
                v.reason = Some(match &p.message {
                    Some(m) => format!("{:.0}% {m}", p.pct),
                    None => format!("{:.0}%", p.pct),
                });
            }
        }
    }
    v.error = errors.joined();
    v
}

/// The start of attempt `n` of task `id` if it is running: the worker holding its claimed
/// assignment journalled it.
fn started(s: &Session, id: &str, n: u32, worker_ids: &[String]) -> Result<Option<Started>> {
    match worker_ids
        .iter()
        .find(|w| fsio::exists(&s.assignment_claimed(w, id, n)))
    {
        Some(w) => journal::started_record(s, w, id, n),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests;
