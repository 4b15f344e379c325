//! The vocabulary of the journals: [`Event`], one line of a session's `events.jsonl`,
//! and [`WorkerEvent`], one line of a worker's own `workers/<id>/events.jsonl`, with the
//! enums they carry. Plain serde types: the engine speaks them without touching a file.

use serde::{Deserialize, Serialize};

use crate::proto::{AuxKind, AuxState, ExitRecord, SessionState, Started, TaskState};

/// Why an attempt stopped counting. Serialized in `attempt_ended` as `reason`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// It exited 0.
    Exited,
    /// It exited non-zero, could not start, or wrote a bad result.
    Failed,
    TimedOut,
    /// Its worker died or stopped answering: the task gets a new attempt.
    WorkerLost,
    /// `orchestrator reassign`: the task gets a new attempt elsewhere.
    Reassigned,
    Cancelled,
    /// A race member stopped because another member won.
    Lost,
    /// A late exit of an attempt that had already been superseded.
    Stale,
    /// Stopped by Ctrl-C / SIGTERM on the orchestrator; the task runs again on resume.
    Interrupted,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Exited => "exited",
            EndReason::Failed => "failed",
            EndReason::TimedOut => "timed_out",
            EndReason::WorkerLost => "worker_lost",
            EndReason::Reassigned => "reassigned",
            EndReason::Cancelled => "cancelled",
            EndReason::Lost => "lost",
            EndReason::Stale => "stale",
            EndReason::Interrupted => "interrupted",
        }
    }

    /// Whether an attempt that ended this way leaves its task to a new attempt (the
    /// fence moves on): it was taken away, not decided.
    pub fn supersedes(self) -> bool {
        matches!(
            self,
            EndReason::WorkerLost | EndReason::Reassigned | EndReason::Interrupted
        )
    }
}

pub use crate::proto::ControlAction;

/// How a worker left the session.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DeathCause {
    /// Its `alive` lock was released (it died, however).
    Died,
    /// Our child process exited (background launcher).
    Exited,
    /// It did not register in time after being started.
    NeverRegistered,
    /// Its heartbeat stopped for the lease time.
    Unresponsive,
    /// Found dead when a session was resumed.
    FoundDead,
    /// It took an attempt and never started it within the lease (the watchdog).
    Stalled,
}

/// An auxiliary command handed to a worker: run `attempt` of the `KIND` command of `of`
/// (a task, or a gate for a check). Its assignment is named `OF+KIND.ATTEMPT`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuxStart {
    pub of: String,
    pub attempt: u32,
    pub worker: String,
    #[serde(default)]
    pub seq: u64,
}

/// How an auxiliary command ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuxEnd {
    pub of: String,
    pub attempt: u32,
    pub worker: Option<String>,
    pub state: AuxState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Event {
    /// The fence line of an auxiliary command of `kind`.
    pub fn aux_started(kind: AuxKind, s: AuxStart) -> Event {
        match kind {
            AuxKind::Check => Event::CheckStarted(s),
            AuxKind::Cleanup => Event::CleanupStarted(s),
            AuxKind::Emergency => Event::EmergencyStarted(s),
            AuxKind::Rollback => Event::RollbackStarted(s),
        }
    }

    /// The end line of an auxiliary command of `kind`.
    pub fn aux_ended(kind: AuxKind, e: AuxEnd) -> Event {
        match kind {
            AuxKind::Check => Event::CheckEnded(e),
            AuxKind::Cleanup => Event::CleanupEnded(e),
            AuxKind::Emergency => Event::EmergencyEnded(e),
            AuxKind::Rollback => Event::RollbackEnded(e),
        }
    }

    /// The line a person watching the session reads for this event (the plain progress
    /// lines of `run`, the dashboard's last events), or none for events that are only
    /// bookkeeping. `session` is the session's id, for the commands a line suggests.
    pub fn describe(&self, session: &str) -> Option<String> {
        Some(match self {
            Event::TaskStarted {
                task,
                attempt,
                worker,
                ..
            } => format!("{task}: started on {worker} (attempt {attempt})"),
            Event::TaskFinished {
                task,
                state,
                reason,
                ..
            } => match reason {
                None => format!("{task}: {}", state.as_str()),
                Some(r) => format!("{task}: {}: {r}", state.as_str()),
            },
            Event::TaskSkipped { task, reason } => format!("{task}: skipped ({reason})"),
            Event::TaskCancelled { task, reason } => format!("{task}: cancelled ({reason})"),
            Event::TaskExcluded { task, reason } => format!("{task}: excluded ({reason})"),
            Event::RetryScheduled {
                task,
                failed_attempt,
                retry,
                delay_ms,
                reason,
                ..
            } => format!(
                "{task}: attempt {failed_attempt} failed ({reason}); retry {retry} in {:.1}s",
                *delay_ms as f64 / 1000.0
            ),
            Event::GateWaiting { gate } => format!(
                "gate {gate} waits for approval: `orchestrator approve {session} {gate}` or \
                 `orchestrator reject {session} {gate} --reason ...`"
            ),
            Event::AgentState {
                task,
                state,
                message,
                ..
            } => match message {
                Some(m) => format!("{task}: agent {}: {m}", state.as_str()),
                None => format!("{task}: agent {}", state.as_str()),
            },
            Event::GateApproved { gate } => format!("gate {gate}: approved"),
            Event::GatePassed { gate } => format!("gate {gate}: check passed"),
            Event::GateFailed { gate, reason } => format!("gate {gate}: failed ({reason})"),
            Event::WorktreeCreated {
                task, branch, path, ..
            } => format!("{task}: worktree {path} on branch {branch}"),
            Event::SnapshotWritten { path } => format!("snapshot of the session's state: {path}"),
            Event::RollbackRequested { tasks } if tasks.is_empty() => {
                "rollback: no succeeded task has a rollback command".into()
            }
            Event::RollbackRequested { tasks } => format!(
                "rollback: {} (in this order, one at a time)",
                tasks.join(", ")
            ),
            Event::GateRejected { gate, reason } => format!("gate {gate}: rejected ({reason})"),
            Event::WorkerLost { worker, how } => format!("worker {worker} lost ({how:?})"),
            Event::AttemptStalled {
                task,
                attempt,
                worker,
                waited_ms,
            } => format!(
                "{task}: attempt {attempt} not started by {worker} within {:.1}s; worker lost",
                *waited_ms as f64 / 1000.0
            ),
            Event::Quarantined {
                task,
                attempt,
                path,
                reason,
                ..
            } => format!("{task}: attempt {attempt}: {path} moved aside ({reason})"),
            Event::RaceDecided { race, winner, .. } => match winner {
                Some(w) => format!("race {race}: won by {w}"),
                None => format!("race {race}: no member succeeded"),
            },
            Event::SignalRaised { signal } => format!("signal {signal} raised"),
            Event::WorkersScaled { workers } => format!("worker limit now {workers}"),
            Event::DeadlockDetected {
                cycle,
                victim,
                lock,
            } => format!("deadlock: {cycle}; {victim} gives up {lock}"),
            Event::SessionState { state, why } => format!("session {}: {why}", state.as_str()),
            ev => {
                if let Some((kind, s)) = ev.as_aux_start() {
                    format!(
                        "{}: {} started on {} (run {})",
                        s.of,
                        kind.as_str(),
                        s.worker,
                        s.attempt
                    )
                } else if let Some((kind, e)) = ev.as_aux_end() {
                    match &e.reason {
                        None => format!("{}: {} {}", e.of, kind.as_str(), e.state.as_str()),
                        Some(r) => format!("{}: {} {}: {r}", e.of, kind.as_str(), e.state.as_str()),
                    }
                } else {
                    return None;
                }
            }
        })
    }

    /// Call `f` with each task this event says something of (what a view of the tasks
    /// reads again after it; a session-wide event names none).
    pub fn for_each_task<'a>(&'a self, mut f: impl FnMut(&'a str)) {
        match self {
            Event::TasksAdded { tasks } | Event::RetryRequested { tasks } => {
                tasks.iter().for_each(|t| f(t));
            }
            Event::Selection { excluded } => excluded.iter().for_each(|(t, _)| f(t)),
            Event::AgentState { task, .. }
            | Event::AttemptStalled { task, .. }
            | Event::Quarantined { task, .. }
            | Event::TaskAssigned { task, .. }
            | Event::TaskWithdrawn { task, .. }
            | Event::TaskAdopted { task, .. }
            | Event::TaskStarted { task, .. }
            | Event::AttemptEnded { task, .. }
            | Event::StaleResult { task, .. }
            | Event::RetryScheduled { task, .. }
            | Event::TaskFinished { task, .. }
            | Event::TaskSkipped { task, .. }
            | Event::TaskCancelled { task, .. }
            | Event::TaskExcluded { task, .. }
            | Event::WorktreeCreated { task, .. }
            | Event::CheckpointBroken { task, .. } => f(task),
            Event::ControlRequest { task, .. } => task.iter().for_each(|t| f(t)),
            Event::RaceDecided { winner, losers, .. } => {
                winner.iter().chain(losers).for_each(|t| f(t));
            }
            Event::DeadlockDetected { victim, .. } => f(victim),
            Event::AuxWithdrawn { of, .. } => f(of),
            Event::CheckStarted(s)
            | Event::CleanupStarted(s)
            | Event::EmergencyStarted(s)
            | Event::RollbackStarted(s) => f(&s.of),
            Event::CheckEnded(e)
            | Event::CleanupEnded(e)
            | Event::EmergencyEnded(e)
            | Event::RollbackEnded(e) => f(&e.of),
            // Listed, not matched by `_`: a new event must be placed here on purpose.
            Event::SessionStarted { .. }
            | Event::SessionResumed { .. }
            | Event::SessionRetried { .. }
            | Event::WorkerSpawned { .. }
            | Event::WorkerRegistered { .. }
            | Event::WorkerAdopted { .. }
            | Event::WorkerUnresponsive { .. }
            | Event::StartsHeld { .. }
            | Event::StartsResumed { .. }
            | Event::GateWaiting { .. }
            | Event::GateApproved { .. }
            | Event::GatePassed { .. }
            | Event::GateFailed { .. }
            | Event::GateRejected { .. }
            | Event::SessionFrozen { .. }
            | Event::SessionThawed
            | Event::WorkersScaled { .. }
            | Event::SnapshotWritten { .. }
            | Event::RollbackRequested { .. }
            | Event::SessionDraining { .. }
            | Event::ResourceLevel { .. }
            | Event::WorkerExited { .. }
            | Event::WorkerLost { .. }
            | Event::SignalRaised { .. }
            | Event::SignalNeverRaised { .. }
            | Event::CheckpointReleased { .. }
            | Event::SessionState { .. }
            | Event::SessionFinished { .. }
            | Event::Refused { .. }
            | Event::CheckoutDirty { .. }
            | Event::Unknown => {}
        }
    }

    /// The start line of an auxiliary command, with its kind.
    pub fn as_aux_start(&self) -> Option<(AuxKind, &AuxStart)> {
        Some(match self {
            Event::CheckStarted(s) => (AuxKind::Check, s),
            Event::CleanupStarted(s) => (AuxKind::Cleanup, s),
            Event::EmergencyStarted(s) => (AuxKind::Emergency, s),
            Event::RollbackStarted(s) => (AuxKind::Rollback, s),
            _ => return None,
        })
    }

    /// The end line of an auxiliary command, with its kind.
    pub fn as_aux_end(&self) -> Option<(AuxKind, &AuxEnd)> {
        Some(match self {
            Event::CheckEnded(e) => (AuxKind::Check, e),
            Event::CleanupEnded(e) => (AuxKind::Cleanup, e),
            Event::EmergencyEnded(e) => (AuxKind::Emergency, e),
            Event::RollbackEnded(e) => (AuxKind::Rollback, e),
            _ => return None,
        })
    }
}

/// One line of `events.jsonl` (each also carries `ts`, written by [`crate::journal::Journal`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    SessionStarted {
        session: String,
        tasks: usize,
        workers: usize,
        launcher: String,
        #[serde(default)]
        protocol: u32,
    },
    /// The plan's tasks, in plan order: the session's work is a journalled fact, so a
    /// later version can add tasks to a live session with the same event.
    TasksAdded {
        tasks: Vec<String>,
    },
    SessionResumed {
        session: String,
        #[serde(default)]
        retry: Vec<String>,
    },
    SessionRetried {
        session: String,
        #[serde(default)]
        retry: Vec<String>,
    },
    RetryRequested {
        tasks: Vec<String>,
    },
    WorkerSpawned {
        worker: String,
        launcher: String,
        terminal: Option<String>,
    },
    WorkerRegistered {
        worker: String,
        pid: u32,
        host: String,
        terminal: Option<String>,
    },
    WorkerAdopted {
        worker: String,
    },
    WorkerUnresponsive {
        worker: String,
        lease_ms: u64,
    },
    /// New attempts are held: the machine's available memory is below the plan's
    /// `min_free_memory` (`available` and `needed` in bytes).
    StartsHeld {
        available: u64,
        needed: u64,
    },
    /// Enough memory is available again: attempts start.
    StartsResumed {
        available: u64,
    },
    /// Every task of gate `gate`'s `after` succeeded: it waits for a person.
    GateWaiting {
        gate: String,
    },
    /// A person approved the gate: the tasks after it may start.
    GateApproved {
        gate: String,
    },
    /// The gate's check exited 0 and it needs no approval: the tasks after it may start.
    GatePassed {
        gate: String,
    },
    /// The gate's check failed (or could not be judged): a failure for the tasks after it.
    GateFailed {
        gate: String,
        reason: String,
    },
    /// A person rejected the gate: a failure for the tasks after it.
    GateRejected {
        gate: String,
        reason: String,
    },
    /// `orchestrator freeze`: workers stop their attempts' process groups; nothing starts.
    SessionFrozen {
        why: String,
        /// A failure froze it (`on_failure = "freeze"`): the running tasks' emergency
        /// commands run and a snapshot is written. A freeze by hand does neither.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        emergency: bool,
    },
    /// `orchestrator thaw`: frozen attempts go on; the session runs again.
    SessionThawed,
    /// `orchestrator scale`: the worker limit from now on (a resume keeps it).
    WorkersScaled {
        workers: usize,
    },
    /// The session's state files were copied into `snapshot/<name>` (on a freeze).
    SnapshotWritten {
        path: String,
    },
    /// `orchestrator rollback`: the steps, in the order they run (succeeded tasks with a
    /// `rollback`, last completed first). Journalled once per request.
    RollbackRequested {
        tasks: Vec<String>,
    },
    /// An agent task reported a new state (`worker hook`, `worker state`): `at` when it
    /// reported it, `message` what it waits for or says.
    AgentState {
        task: String,
        attempt: u32,
        state: crate::agent::AgentState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        at: String,
    },
    /// A resumed orchestrator took back an auxiliary command's assignment that no worker
    /// had claimed: it never ran, and goes out again under a new fence line.
    AuxWithdrawn {
        kind: AuxKind,
        of: String,
        attempt: u32,
        worker: String,
    },
    /// The fence of an auxiliary command (journalled before its assignment), and its
    /// end, one pair per kind.
    CheckStarted(AuxStart),
    CheckEnded(AuxEnd),
    CleanupStarted(AuxStart),
    CleanupEnded(AuxEnd),
    EmergencyStarted(AuxStart),
    EmergencyEnded(AuxEnd),
    /// Before each rollback step: a step started and never ended is `unknown` on resume,
    /// never run twice.
    RollbackStarted(AuxStart),
    RollbackEnded(AuxEnd),
    /// The session drains: no new attempts start, running ones finish, then every task
    /// not decided is cancelled (or failed, if an attempt of it failed) and the session
    /// ends. `why`: `stop requested`, or the task whose failure stopped it.
    SessionDraining {
        why: String,
    },
    /// A pool of `[resources]` went to another level: `used` tokens held (by attempts
    /// assigned, running or being stopped) of its `max`. Journalled on each change, up
    /// or down.
    ResourceLevel {
        pool: String,
        level: crate::plan::Level,
        used: u64,
        max: u64,
    },
    /// The watchdog: `worker` took attempt `attempt` of `task` and did not start it
    /// within `waited_ms` (the lease); the worker is declared lost and the task moves on.
    AttemptStalled {
        task: String,
        attempt: u32,
        worker: String,
        waited_ms: u64,
    },
    /// An attempt's file that the protocol does not vouch for (an `exit.json` that no
    /// journal line of the fence holder records, planted or torn), moved aside to `to`.
    Quarantined {
        task: String,
        attempt: u32,
        path: String,
        to: String,
        reason: String,
    },
    /// A worker left after being told to.
    WorkerExited {
        worker: String,
        how: DeathCause,
    },
    /// A worker left unexpectedly.
    WorkerLost {
        worker: String,
        how: DeathCause,
    },
    /// The fence: attempt `attempt` of `task` is the only one that may report, from
    /// `worker`. Journalled before the assignment file is published.
    TaskAssigned {
        task: String,
        attempt: u32,
        worker: String,
        #[serde(default)]
        seq: u64,
    },
    /// A queued assignment taken back before it ran: the fence returns to no attempt,
    /// and the same attempt number is used again.
    TaskWithdrawn {
        task: String,
        attempt: u32,
        worker: String,
    },
    TaskAdopted {
        task: String,
        attempt: u32,
        worker: String,
    },
    TaskStarted {
        task: String,
        attempt: u32,
        worker: String,
        #[serde(default)]
        pid: Option<u32>,
        /// The process's start time in clock ticks since boot (`/proc/PID/stat` field
        /// 22), with `boot_id`: together with the pid, the process's identity.
        #[serde(default)]
        proc_start: Option<u64>,
        #[serde(default)]
        boot_id: Option<String>,
    },
    AttemptEnded {
        task: String,
        attempt: u32,
        worker: Option<String>,
        reason: EndReason,
    },
    /// A late exit of an attempt that no longer holds the fence: kept on disk, never the
    /// outcome.
    StaleResult {
        task: String,
        attempt: u32,
        worker: Option<String>,
        exit_code: Option<i32>,
        current_attempt: u32,
    },
    RetryScheduled {
        task: String,
        failed_attempt: u32,
        retry: u32,
        retries: u32,
        delay_ms: u64,
        #[serde(default)]
        not_before_unix_ms: u64,
        reason: String,
    },
    TaskFinished {
        task: String,
        attempt: u32,
        worker: Option<String>,
        state: TaskState,
        exit_code: Option<i32>,
        reason: Option<String>,
    },
    TaskSkipped {
        task: String,
        reason: String,
    },
    TaskCancelled {
        task: String,
        reason: String,
    },
    /// Left out of a partial run (`run --only`/`--skip`), at the session's start.
    /// A partial run's selection, every task it leaves out in one line, journalled
    /// before any of them is decided: a resume that finds it with some `task_excluded`
    /// lines missing (a crash in between) decides the rest.
    Selection {
        excluded: Vec<(String, crate::plan::Exclusion)>,
    },
    TaskExcluded {
        task: String,
        reason: String,
    },
    ControlRequest {
        id: String,
        action: ControlAction,
        task: Option<String>,
    },
    SignalRaised {
        signal: String,
    },
    SignalNeverRaised {
        signal: String,
    },
    CheckpointReleased {
        checkpoint: String,
        arrived: usize,
    },
    CheckpointBroken {
        checkpoint: String,
        task: String,
        reason: String,
    },
    DeadlockDetected {
        cycle: String,
        victim: String,
        lock: String,
    },
    RaceDecided {
        race: String,
        winner: Option<String>,
        score: Option<f64>,
        losers: Vec<String>,
    },
    /// The session moved to `stopping` (no new starts), `interrupted` or `cancelled`
    /// before its end; `why` says what asked for it.
    SessionState {
        state: SessionState,
        why: String,
    },
    SessionFinished {
        session: String,
        state: SessionState,
        duration_ms: u64,
    },
    /// Something planted in the session where one of maestro's files or directories
    /// belongs (a link, a file where a directory belongs, a FIFO): refused, never used.
    Refused {
        path: String,
        what: String,
    },
    /// When the session started, the main checkout of `repo` (where tasks with
    /// `worktree = true` run) had `changed` uncommitted changes: the worktrees are made
    /// from its HEAD, `base`, so they do not have them.
    CheckoutDirty {
        repo: String,
        base: String,
        changed: usize,
    },
    /// Task `task`'s git worktree was made at `path`, on `branch` (new from `base`, or
    /// the branch again, after `orchestrator clean --worktrees`), before the journal line
    /// that first gives it to a worker.
    WorktreeCreated {
        task: String,
        branch: String,
        path: String,
        base: String,
    },
    /// A line of a kind this version does not know (written by a newer one).
    #[serde(other)]
    Unknown,
}

/// A worker's own journal line (`workers/<id>/events.jsonl`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WorkerEvent {
    Ready {
        pid: u32,
        #[serde(default)]
        protocol: Option<u32>,
    },
    Started(Started),
    Exited(ExitRecord),
    /// An `exit.json` found where an attempt the worker was about to run had not ended
    /// (planted, or left by hand): moved aside to `to`, never taken for the exit.
    Quarantined {
        task: String,
        attempt: u32,
        path: String,
        to: String,
    },
    Stopped {},
    /// A line of the running attempt's `agent.jsonl` (an agent's state), relayed.
    Agent {
        task: String,
        attempt: u32,
        line: crate::agent::AgentLine,
    },
    #[serde(other)]
    Unknown,
}
