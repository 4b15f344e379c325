//! The session's history: one typed [`Event`] per line of `events.jsonl`, the one writer
//! ([`Journal`]) and the one reader ([`History`], folded incrementally by [`Reader`]).
//!
//! The journal is the record the orchestrator rebuilds itself from on `resume`, so every
//! fact that decides who may report (the fence: an assignment, its withdrawal, the end
//! of an attempt) is a line here before the file that acts on it is published. Status,
//! logs and the tests read the same events through the same fold, so no reader parses
//! lines its own way. A worker's own journal (`workers/<id>/events.jsonl`) has its own,
//! smaller vocabulary: [`WorkerEvent`].

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, io_err};
use crate::fsio;
use crate::proto::{self, ExitRecord, SessionState, Started, TaskState};
use crate::session::Session;

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

/// What a person (or the CLI on their behalf) asks of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlAction {
    /// Stop the task's running attempt; a new attempt runs on another worker.
    Reassign,
    /// Cancel one task (with `task`) and its dependents, or the whole session.
    Cancel,
}

impl ControlAction {
    pub fn as_str(&self) -> &'static str {
        match self {
            ControlAction::Reassign => "reassign",
            ControlAction::Cancel => "cancel",
        }
    }
}

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
}

/// One line of `events.jsonl` (each also carries `ts`, written by [`Journal`]).
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
    Stopped {},
    #[serde(other)]
    Unknown,
}

/// Serialize one journal line: `{"ts":..., "event":..., fields...}` and a newline.
fn line<T: Serialize>(ev: &T) -> Result<String> {
    let body = serde_json::to_string(ev)
        .map_err(|e| Error::Session(format!("cannot encode a journal line: {e}")))?;
    // `ts` first, so a person reading the file sees when before what.
    let rest = body.strip_prefix('{').unwrap_or(&body);
    let sep = if rest == "}" { "" } else { "," };
    Ok(format!("{{\"ts\":\"{}\"{sep}{rest}", proto::now_rfc3339()))
}

/// An append-only journal: the session's `events.jsonl` (only the orchestrator writes
/// it) or a worker's `workers/<id>/events.jsonl` (only that worker writes it). One
/// `write(2)` per line, so a reader never sees a torn line except a crash's last one.
pub struct Journal {
    path: PathBuf,
    file: File,
}

impl Journal {
    pub fn open(session: &Session) -> Result<Journal> {
        Journal::open_at(session.events())
    }

    pub fn open_worker(session: &Session, worker: &str) -> Result<Journal> {
        Journal::open_at(session.worker_events(worker))
    }

    fn open_at(path: PathBuf) -> Result<Journal> {
        let file = fsio::open_append(&path)?;
        Ok(Journal { path, file })
    }

    /// Append one session event (fsync'd under `--durable`).
    pub fn append(&mut self, ev: &Event) -> Result<()> {
        let l = line(ev)?;
        fsio::append_line(&mut self.file, &self.path, &l)
    }

    /// Append one worker event.
    pub fn append_worker(&mut self, ev: &WorkerEvent) -> Result<()> {
        let l = line(ev)?;
        fsio::append_line(&mut self.file, &self.path, &l)
    }
}

/// Follows a journal as it grows: each call returns the complete lines appended since the
/// last one, one `read(2)` per call. The file stays open: a journal is only ever appended
/// to, never replaced.
pub struct Tail {
    path: PathBuf,
    file: Option<File>,
    /// The start of a line whose newline has not been written yet.
    partial: Vec<u8>,
}

impl Tail {
    pub fn new(path: PathBuf) -> Tail {
        Tail {
            path,
            file: None,
            partial: Vec::new(),
        }
    }

    /// The complete lines appended since the last call (none while the file is missing).
    pub fn read_lines(&mut self) -> Result<Vec<Vec<u8>>> {
        use std::io::Read;
        if self.file.is_none() {
            self.file = fsio::open_read(&self.path)?;
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(Vec::new());
        };
        // Plain reads, not `read_to_end`, which costs an fstat and an lseek per call
        // (this runs for every busy worker on every wake-up). A short read of a regular
        // file means we are at its end for now.
        let before = self.partial.len();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let n = match file.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(&self.path, "read")(e)),
            };
            self.partial.extend_from_slice(&chunk[..n]);
            if n < chunk.len() {
                break;
            }
        }
        if self.partial.len() == before {
            return Ok(Vec::new());
        }
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Ok(Vec::new());
        };
        let out = self.partial[..end]
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        self.partial.drain(..=end);
        Ok(out)
    }

    /// The session events appended since the last call; a malformed line is skipped.
    pub fn read_events(&mut self) -> Result<Vec<Event>> {
        Ok(self
            .read_lines()?
            .iter()
            .filter_map(|l| serde_json::from_slice(l).ok())
            .collect())
    }

    /// The worker events appended since the last call; a malformed line is skipped.
    pub fn read_worker_events(&mut self) -> Result<Vec<WorkerEvent>> {
        Ok(self
            .read_lines()?
            .iter()
            .filter_map(|l| serde_json::from_slice(l).ok())
            .collect())
    }
}

/// One attempt of a task as the journal tells it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AttemptHistory {
    pub attempt: u32,
    pub worker: Option<String>,
    /// Why it stopped counting (none while it runs or waits).
    pub ended: Option<EndReason>,
    pub pid: Option<u32>,
    pub proc_start: Option<u64>,
    pub boot_id: Option<String>,
    /// Its late exit was refused as stale.
    pub stale: bool,
}

/// One task as the journal tells it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskHistory {
    /// The fence: the attempt that may report now, and from which worker (none before
    /// the first assignment, after a withdrawal, or once the attempt ended).
    pub fence: Option<(u32, String)>,
    /// The highest attempt number ever assigned (withdrawn ones are given out again).
    pub last_attempt: u32,
    pub attempts: Vec<AttemptHistory>,
    /// The final state, once decided.
    pub decided: Option<TaskState>,
    /// Failed attempts so far (against `retries`).
    pub failures: u32,
    /// Attempts lost with their worker (against `max_reassign`).
    pub reassigns: u32,
    /// A retry is scheduled no earlier than this (Unix ms).
    pub retry_at_unix_ms: Option<u64>,
}

impl TaskHistory {
    pub fn attempt(&self, n: u32) -> Option<&AttemptHistory> {
        self.attempts.iter().find(|a| a.attempt == n)
    }

    fn attempt_mut(&mut self, n: u32) -> &mut AttemptHistory {
        if let Some(i) = self.attempts.iter().position(|a| a.attempt == n) {
            return &mut self.attempts[i];
        }
        self.attempts.push(AttemptHistory {
            attempt: n,
            ..Default::default()
        });
        self.attempts.sort_by_key(|a| a.attempt);
        let i = self
            .attempts
            .iter()
            .position(|a| a.attempt == n)
            .unwrap_or(0);
        &mut self.attempts[i]
    }
}

/// The session as the journal tells it, folded one event at a time.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Task ids in the order they were added.
    pub task_order: Vec<String>,
    pub tasks: BTreeMap<String, TaskHistory>,
    /// Workers ever spawned, and whether each was seen leaving.
    pub workers: BTreeMap<String, bool>,
    /// The state the session was last put in (`running` from its start).
    pub state: Option<SessionState>,
    /// `session_finished` seen (and not followed by a retry).
    pub finished: bool,
    pub resumes: u32,
    /// Races decided, with their winner.
    pub races: BTreeMap<String, Option<String>>,
    /// Signals raised (true) or declared never raised (false).
    pub signals: BTreeMap<String, bool>,
    /// The highest assignment `seq` seen (a resumed orchestrator continues above it).
    pub max_seq: u64,
    pub events: usize,
}

impl History {
    fn task(&mut self, id: &str) -> &mut TaskHistory {
        if !self.tasks.contains_key(id) {
            self.task_order.push(id.to_string());
        }
        self.tasks.entry(id.to_string()).or_default()
    }

    /// Fold one event in.
    pub fn apply(&mut self, ev: &Event) {
        self.events += 1;
        match ev {
            Event::SessionStarted { .. } => self.state = Some(SessionState::Running),
            Event::TasksAdded { tasks } => {
                for t in tasks {
                    self.task(t);
                }
            }
            Event::SessionResumed { .. } => {
                self.resumes += 1;
                self.state = Some(SessionState::Running);
            }
            Event::SessionRetried { .. } => {
                self.resumes += 1;
                self.finished = false;
                self.state = Some(SessionState::Running);
            }
            Event::RetryRequested { tasks } => {
                for t in tasks {
                    let h = self.task(t);
                    h.decided = None;
                    h.failures = 0;
                    h.reassigns = 0;
                    h.retry_at_unix_ms = None;
                }
            }
            Event::WorkerSpawned { worker, .. } | Event::WorkerAdopted { worker } => {
                self.workers.entry(worker.clone()).or_insert(false);
            }
            Event::WorkerRegistered { worker, .. } => {
                self.workers.entry(worker.clone()).or_insert(false);
            }
            Event::WorkerExited { worker, .. } | Event::WorkerLost { worker, .. } => {
                self.workers.insert(worker.clone(), true);
            }
            Event::TaskAssigned {
                task,
                attempt,
                worker,
                seq,
            } => {
                self.max_seq = self.max_seq.max(*seq);
                let h = self.task(task);
                h.fence = Some((*attempt, worker.clone()));
                h.last_attempt = h.last_attempt.max(*attempt);
                h.retry_at_unix_ms = None;
                let a = h.attempt_mut(*attempt);
                a.worker = Some(worker.clone());
                a.ended = None;
            }
            Event::TaskWithdrawn { task, attempt, .. } => {
                let h = self.task(task);
                if h.fence.as_ref().is_some_and(|f| f.0 == *attempt) {
                    h.fence = None;
                }
                h.attempts.retain(|a| a.attempt != *attempt);
                h.last_attempt = h.attempts.iter().map(|a| a.attempt).max().unwrap_or(0);
            }
            Event::TaskAdopted {
                task,
                attempt,
                worker,
            } => {
                let h = self.task(task);
                h.fence = Some((*attempt, worker.clone()));
                h.last_attempt = h.last_attempt.max(*attempt);
                h.attempt_mut(*attempt).worker = Some(worker.clone());
            }
            Event::TaskStarted {
                task,
                attempt,
                worker,
                pid,
                proc_start,
                boot_id,
            } => {
                let h = self.task(task);
                let a = h.attempt_mut(*attempt);
                a.worker = Some(worker.clone());
                a.pid = *pid;
                a.proc_start = *proc_start;
                a.boot_id.clone_from(boot_id);
            }
            Event::AttemptEnded {
                task,
                attempt,
                worker,
                reason,
            } => {
                let h = self.task(task);
                // An accepted exit keeps the fence until what it decided is journalled
                // (`task_finished` or `retry_scheduled`): a crash in between must leave
                // that exit to be accepted again on resume, not orphan the task.
                let accepted = matches!(
                    reason,
                    EndReason::Exited | EndReason::Failed | EndReason::TimedOut
                );
                if !accepted && h.fence.as_ref().is_some_and(|f| f.0 == *attempt) {
                    h.fence = None;
                }
                if *reason == EndReason::WorkerLost {
                    h.reassigns += 1;
                }
                let a = h.attempt_mut(*attempt);
                if a.worker.is_none() {
                    a.worker.clone_from(worker);
                }
                // A late `stale` follows `worker_lost`/`reassigned`: keep the first
                // reason, why the attempt stopped counting.
                if *reason == EndReason::Stale {
                    a.stale = true;
                }
                if a.ended.is_none() {
                    a.ended = Some(*reason);
                }
            }
            Event::StaleResult { task, attempt, .. } => {
                self.task(task).attempt_mut(*attempt).stale = true;
            }
            Event::RetryScheduled {
                task,
                not_before_unix_ms,
                retry,
                ..
            } => {
                let h = self.task(task);
                h.failures = (*retry).max(h.failures);
                h.retry_at_unix_ms = Some(*not_before_unix_ms);
                h.fence = None;
            }
            Event::TaskFinished { task, state, .. } => {
                let h = self.task(task);
                h.decided = Some(*state);
                h.fence = None;
                h.retry_at_unix_ms = None;
            }
            Event::TaskSkipped { task, .. } => {
                let h = self.task(task);
                h.decided = Some(TaskState::Skipped);
                h.fence = None;
                h.retry_at_unix_ms = None;
            }
            Event::TaskCancelled { task, .. } => {
                let h = self.task(task);
                h.decided = Some(TaskState::Cancelled);
                h.fence = None;
                h.retry_at_unix_ms = None;
            }
            Event::SessionState { state, .. } => self.state = Some(*state),
            Event::SessionFinished { state, .. } => {
                self.state = Some(*state);
                self.finished = true;
            }
            Event::SignalRaised { signal } => {
                self.signals.insert(signal.clone(), true);
            }
            Event::SignalNeverRaised { signal } => {
                self.signals.insert(signal.clone(), false);
            }
            Event::RaceDecided { race, winner, .. } => {
                self.races.insert(race.clone(), winner.clone());
            }
            Event::WorkerUnresponsive { .. }
            | Event::ControlRequest { .. }
            | Event::CheckpointReleased { .. }
            | Event::CheckpointBroken { .. }
            | Event::DeadlockDetected { .. }
            | Event::Unknown => {}
        }
    }
}

/// The one reader of a session's journal: folds what was appended since the last
/// [`Reader::refresh`] into its [`History`], so a live view re-reads nothing.
pub struct Reader {
    tail: Tail,
    history: History,
}

impl Reader {
    pub fn new(session: &Session) -> Reader {
        Reader::at(session.events())
    }

    pub fn at(path: PathBuf) -> Reader {
        Reader {
            tail: Tail::new(path),
            history: History::default(),
        }
    }

    /// Read what was appended and fold it in; returns the new events.
    pub fn refresh(&mut self) -> Result<Vec<Event>> {
        let evs = self.tail.read_events()?;
        for e in &evs {
            self.history.apply(e);
        }
        Ok(evs)
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    pub fn into_history(self) -> History {
        self.history
    }
}

/// The whole journal of a session, folded (what `status` and `resume` start from).
pub fn read_history(session: &Session) -> Result<History> {
    let mut r = Reader::new(session);
    r.refresh()?;
    Ok(r.into_history())
}

/// Every event of a session's journal, in order (tests and tools).
pub fn read_all(session: &Session) -> Result<Vec<Event>> {
    Tail::new(session.events()).read_events()
}

/// The last complete line of a worker's journal (what it does now), reading only the
/// file's tail. `Ok(None)` when the file is missing or holds no complete line.
pub fn last_worker_event(path: &Path) -> Result<Option<WorkerEvent>> {
    use std::io::{Read, Seek, SeekFrom};
    const TAIL: u64 = 8192;
    let mut file = match fsio::open_read(path)? {
        Some(f) => f,
        None => return Ok(None),
    };
    let len = file.metadata().map_err(io_err(path, "read"))?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(TAIL)))
        .map_err(io_err(path, "read"))?;
    let mut buf = Vec::with_capacity(TAIL as usize);
    file.take(TAIL)
        .read_to_end(&mut buf)
        .map_err(io_err(path, "read"))?;
    // Only lines ended by a newline are complete (a crash may leave a partial last one).
    let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
        return Ok(None);
    };
    Ok(buf[..end]
        .split(|&b| b == b'\n')
        .rev()
        .find_map(|l| serde_json::from_slice(l).ok()))
}

/// The `started` line of `task`'s attempt `attempt` in worker `worker`'s journal: the
/// attempt's process and group id and start time. The line is near the end while the
/// attempt runs, so the journal's tail is searched first, then the whole file.
pub fn started_record(
    session: &Session,
    worker: &str,
    task: &str,
    attempt: u32,
) -> Result<Option<Started>> {
    use std::io::{Read, Seek, SeekFrom};
    const TAIL: u64 = 64 * 1024;
    let path = session.worker_events(worker);
    let Some(mut file) = fsio::open_read(&path)? else {
        return Ok(None);
    };
    let len = file.metadata().map_err(io_err(&path, "read"))?.len();
    let find = |buf: &[u8]| {
        buf.split(|&b| b == b'\n').rev().find_map(
            |l| match serde_json::from_slice::<WorkerEvent>(l).ok()? {
                WorkerEvent::Started(st) if st.task == task && st.attempt == attempt => Some(st),
                _ => None,
            },
        )
    };
    let mut from = len.saturating_sub(TAIL);
    loop {
        file.seek(SeekFrom::Start(from))
            .map_err(io_err(&path, "read"))?;
        let mut buf = Vec::new();
        (&mut file)
            .take(len - from)
            .read_to_end(&mut buf)
            .map_err(io_err(&path, "read"))?;
        if let Some(st) = find(&buf) {
            return Ok(Some(st));
        }
        if from == 0 {
            return Ok(None);
        }
        from = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(ev: Event) -> Event {
        let l = line(&ev).unwrap();
        assert!(l.starts_with("{\"ts\":\""), "{l}");
        serde_json::from_str(&l).unwrap()
    }

    #[test]
    fn events_round_trip_with_the_tag_and_a_timestamp_first() {
        let ev = Event::TaskAssigned {
            task: "a".into(),
            attempt: 2,
            worker: "w1".into(),
            seq: 7,
        };
        assert_eq!(roundtrip(ev.clone()), ev);
        let l = line(&ev).unwrap();
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["event"], "task_assigned");
        assert_eq!(v["attempt"], 2);
        let ended = Event::AttemptEnded {
            task: "a".into(),
            attempt: 1,
            worker: None,
            reason: EndReason::WorkerLost,
        };
        let v: serde_json::Value = serde_json::from_str(&line(&ended).unwrap()).unwrap();
        assert_eq!(v["reason"], "worker_lost");
        assert_eq!(roundtrip(ended.clone()), ended);
    }

    #[test]
    fn an_unknown_event_kind_is_read_as_unknown_not_an_error() {
        let e: Event =
            serde_json::from_str(r#"{"ts":"x","event":"from_the_future","n":1}"#).unwrap();
        assert_eq!(e, Event::Unknown);
        let w: WorkerEvent = serde_json::from_str(r#"{"ts":"x","event":"stopped"}"#).unwrap();
        assert!(matches!(w, WorkerEvent::Stopped {}));
    }

    #[test]
    fn the_fence_follows_assignments_withdrawals_and_ends() {
        let mut h = History::default();
        let assign = |a, w: &str| Event::TaskAssigned {
            task: "t".into(),
            attempt: a,
            worker: w.into(),
            seq: a as u64,
        };
        h.apply(&assign(1, "w1"));
        assert_eq!(h.tasks["t"].fence, Some((1, "w1".into())));
        h.apply(&Event::AttemptEnded {
            task: "t".into(),
            attempt: 1,
            worker: Some("w1".into()),
            reason: EndReason::WorkerLost,
        });
        assert_eq!(h.tasks["t"].fence, None);
        assert_eq!(h.tasks["t"].reassigns, 1);
        h.apply(&assign(2, "w2"));
        h.apply(&Event::TaskWithdrawn {
            task: "t".into(),
            attempt: 2,
            worker: "w2".into(),
        });
        assert_eq!(h.tasks["t"].fence, None);
        assert_eq!(
            h.tasks["t"].last_attempt, 1,
            "a withdrawn attempt never ran"
        );
        h.apply(&assign(2, "w3"));
        assert_eq!(h.tasks["t"].fence, Some((2, "w3".into())));
        h.apply(&Event::AttemptEnded {
            task: "t".into(),
            attempt: 1,
            worker: Some("w1".into()),
            reason: EndReason::Stale,
        });
        let a1 = h.tasks["t"].attempt(1).unwrap();
        assert_eq!(
            a1.ended,
            Some(EndReason::WorkerLost),
            "the first reason stays"
        );
        assert!(a1.stale);
        assert_eq!(
            h.tasks["t"].fence,
            Some((2, "w3".into())),
            "a stale end moves nothing"
        );
        h.apply(&Event::TaskFinished {
            task: "t".into(),
            attempt: 2,
            worker: Some("w3".into()),
            state: TaskState::Succeeded,
            exit_code: Some(0),
            reason: None,
        });
        assert_eq!(h.tasks["t"].decided, Some(TaskState::Succeeded));
        assert_eq!(h.task_order, vec!["t".to_string()]);
    }

    #[test]
    fn the_reader_folds_only_what_was_appended() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("events.jsonl");
        let mut r = Reader::at(p.clone());
        assert!(r.refresh().unwrap().is_empty(), "no file yet");
        let mut j = Journal::open_at(p).unwrap();
        j.append(&Event::TasksAdded {
            tasks: vec!["a".into(), "b".into()],
        })
        .unwrap();
        assert_eq!(r.refresh().unwrap().len(), 1);
        assert!(r.refresh().unwrap().is_empty());
        j.append(&Event::TaskSkipped {
            task: "b".into(),
            reason: "x".into(),
        })
        .unwrap();
        assert_eq!(r.refresh().unwrap().len(), 1);
        assert_eq!(r.history().tasks["b"].decided, Some(TaskState::Skipped));
        assert_eq!(r.history().events, 2);
    }

    #[test]
    fn started_record_finds_the_line_of_that_attempt_beyond_the_tail() {
        let d = tempfile::tempdir().unwrap();
        let s = Session::create(d.path(), "t").unwrap();
        fsio::create_dir_private(&s.worker_dir("w1")).unwrap();
        let mut j = Journal::open_worker(&s, "w1").unwrap();
        let started = |task: &str, attempt: u32, pid: u32| {
            WorkerEvent::Started(Started {
                task: task.into(),
                attempt,
                worker: "w1".into(),
                pid,
                pgid: pid,
                started_at: "x".into(),
                started_unix_ms: 1,
                proc_start: None,
                boot_id: None,
            })
        };
        j.append_worker(&started("a", 1, 100)).unwrap();
        // Push a's line out of the 64 KiB tail that is searched first.
        for i in 0..2000 {
            j.append_worker(&started(&format!("filler{i}"), 1, 7))
                .unwrap();
        }
        j.append_worker(&started("a", 2, 200)).unwrap();
        let pid = |n| started_record(&s, "w1", "a", n).unwrap().map(|st| st.pgid);
        assert_eq!(pid(1), Some(100));
        assert_eq!(pid(2), Some(200));
        assert_eq!(pid(3), None);
        assert!(started_record(&s, "w9", "a", 1).unwrap().is_none());
    }

    #[test]
    fn worker_lines_keep_their_json_shape() {
        // docs/PROTOCOL.md and the tests read these lines: `ready` has `pid`, `started`
        // and `exited` carry their records' fields at the top level, `stopped` nothing.
        let v = |ev: &WorkerEvent| -> serde_json::Value {
            serde_json::from_str(&line(ev).unwrap()).unwrap()
        };
        let ready = v(&WorkerEvent::Ready {
            pid: 42,
            protocol: Some(proto::PROTOCOL_VERSION),
        });
        assert_eq!(
            (&ready["event"], &ready["pid"]),
            (&"ready".into(), &42.into())
        );
        let st = v(&WorkerEvent::Started(Started {
            task: "a".into(),
            attempt: 2,
            worker: "w1".into(),
            pid: 9,
            pgid: 9,
            started_at: "x".into(),
            started_unix_ms: 5,
            proc_start: None,
            boot_id: None,
        }));
        assert_eq!(st["event"], "started");
        assert_eq!((&st["task"], &st["attempt"]), (&"a".into(), &2.into()));
        assert_eq!(
            (&st["pgid"], &st["started_unix_ms"]),
            (&9.into(), &5.into())
        );
        let rec = ExitRecord {
            task: "a".into(),
            attempt: 2,
            worker: "w1".into(),
            exit_code: Some(3),
            signal: None,
            started_at: "x".into(),
            ended_at: "y".into(),
            duration_ms: 7,
            timed_out: false,
            killed_by: None,
            spawn_error: None,
            result_error: None,
            has_result: false,
        };
        let ex = v(&WorkerEvent::Exited(rec.clone()));
        assert_eq!(ex["event"], "exited");
        let mut fields = ex.as_object().unwrap().clone();
        fields.remove("ts");
        fields.remove("event");
        assert_eq!(
            serde_json::Value::Object(fields),
            serde_json::to_value(&rec).unwrap(),
            "every field of exit.json, and nothing else"
        );
        let stopped = v(&WorkerEvent::Stopped {});
        assert_eq!(stopped.as_object().unwrap().len(), 2, "{stopped}");
        assert_eq!(stopped["event"], "stopped");
    }

    #[test]
    fn last_worker_event_skips_a_partial_last_line_and_reads_only_the_tail() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("events.jsonl");
        assert!(last_worker_event(&p).unwrap().is_none(), "no file");
        let started = r#"{"ts":"x","event":"started","task":"a","attempt":1,"worker":"w1","pid":5,"pgid":5,"started_at":"x","started_unix_ms":1}"#;
        std::fs::write(
            &p,
            format!("{{\"ts\":\"x\",\"event\":\"ready\",\"pid\":5}}\n{started}\n{{\"ts\":\"x\",\"event\":\"exi"),
        )
        .unwrap();
        assert!(matches!(
            last_worker_event(&p).unwrap(),
            Some(WorkerEvent::Started(st)) if st.task == "a"
        ));
        std::fs::write(&p, b"{\"ts\":\"x\",\"event\":\"rea").unwrap();
        assert!(last_worker_event(&p).unwrap().is_none(), "no complete line");
        // Only the tail is read: a long journal still gives its last line.
        let mut long = String::new();
        for i in 0..5000 {
            long.push_str(&format!(
                "{{\"ts\":\"x\",\"event\":\"ready\",\"pid\":{i}}}\n"
            ));
        }
        std::fs::write(&p, &long).unwrap();
        assert!(matches!(
            last_worker_event(&p).unwrap(),
            Some(WorkerEvent::Ready { pid: 4999, .. })
        ));
    }

    #[test]
    fn tail_returns_each_complete_line_once() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("events.jsonl");
        let mut tail = Tail::new(p.clone());
        let mut ns = || -> Vec<serde_json::Value> {
            let lines = tail.read_lines().unwrap();
            lines
                .iter()
                .filter_map(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
                .map(|v| v["n"].clone())
                .collect()
        };
        assert!(ns().is_empty(), "no file yet");
        let mut f = fsio::open_append(&p).unwrap();
        use std::io::Write;
        f.write_all(b"{\"n\":1}\n{\"n\":2}\n{\"n\":").unwrap();
        assert_eq!(ns(), vec![1, 2]);
        assert!(ns().is_empty(), "the partial line waits");
        f.write_all(b"3}\nnot json\n{\"n\":4}\n").unwrap();
        assert_eq!(ns(), vec![3, 4]);
        // More than one read's worth at once (the reader reads 16 KiB at a time), and
        // exactly one read's worth.
        let many: String = (5..3005).map(|n| format!("{{\"n\":{n}}}\n")).collect();
        f.write_all(many.as_bytes()).unwrap();
        assert_eq!(ns(), (5..3005).collect::<Vec<_>>());
        let pad = 16 * 1024 - "{\"n\":9,\"p\":\"\"}\n".len();
        let exact = format!("{{\"n\":9,\"p\":\"{}\"}}\n", "x".repeat(pad));
        assert_eq!(exact.len(), 16 * 1024);
        f.write_all(exact.as_bytes()).unwrap();
        assert_eq!(ns(), vec![9]);
        assert!(ns().is_empty());
    }
}
