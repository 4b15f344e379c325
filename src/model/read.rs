//! Reading one task's or one worker's files into the view `status` shows of it. Each
//! read stands alone: a file that cannot be read leaves its message in the view's
//! `error` and the rest comes from the other files and the journal. The model
//! ([`super::SessionModel`]) decides *when* each is read again; this decides *how*.

use crate::error::Result;
use crate::fsio;
use crate::journal::{self, AttemptHistory, TaskHistory, WorkerEvent, history::AgentRecord};
use crate::proto::{ExitRecord, Outcome, Started, TaskState, WorkerInfo};
use crate::session::Session;
use crate::status::{AgentView, AttemptView, TaskView, WorkerStatus, WorkerView};

/// Where the errors of one item (the session, a task, a worker) are gathered: a read
/// that fails leaves its message here and gives nothing.
#[derive(Default)]
pub(crate) struct Errors(pub(crate) Vec<String>);

impl Errors {
    pub(crate) fn keep<T>(&mut self, r: Result<T>) -> Option<T> {
        r.map_err(|e| self.0.push(e.to_string())).ok()
    }

    pub(crate) fn joined(self) -> Option<String> {
        (!self.0.is_empty()).then(|| self.0.join("; "))
    }
}

/// What a task's last read found besides its view: the start of its running attempt
/// (found once through its worker's claimed assignment and journal, then kept while
/// that attempt is the task's latest, rather than searched for on every refresh).
#[derive(Debug, Clone, Default)]
pub(crate) struct TaskCache {
    pub(crate) started: Option<Started>,
}

/// A task not decided yet (or whose outcome cannot be read).
pub(crate) fn undecided(id: &str) -> TaskView {
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
/// the outcome file cannot be read). `worker_ids` are where its running attempt's claimed
/// assignment is looked for.
pub(crate) fn task_view(
    s: &Session,
    id: &str,
    journal: Option<&TaskHistory>,
    worker_ids: &[String],
    cache: &mut TaskCache,
) -> TaskView {
    let mut errors = Errors::default();
    match fsio::read_json::<Outcome>(&s.outcome_json(id)) {
        Ok(Some(o)) => {
            cache.started = None;
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
        let known = cache.started.clone().filter(|st| st.attempt == n);
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
        } else if let Some(st) =
            known.or_else(|| errors.keep(started(s, id, n, worker_ids)).flatten())
        {
            v.state = TaskState::Running;
            v.worker = Some(st.worker.clone());
            v.started_at = Some(st.started_at.clone());
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
            cache.started = Some(st);
        }
    }
    if v.state != TaskState::Running {
        cache.started = None;
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

/// Task `v`'s attempts as the journal tells them, plus its running attempt if the journal
/// does not know it yet.
pub(crate) fn attempts_of(journal: Option<&TaskHistory>, v: &TaskView) -> Vec<AttemptView> {
    let view = |a: &AttemptHistory| AttemptView {
        attempt: a.attempt,
        worker: a.worker.clone(),
        ended: a.ended,
    };
    let mut attempts: Vec<AttemptView> =
        journal.map_or_else(Vec::new, |h| h.attempts.iter().map(view).collect());
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

/// An agent task's state as status shows it: what it last reported while its attempt
/// runs, `exited` once the attempt is not running (liveness, not its last word).
pub(crate) fn agent_view(record: Option<&AgentRecord>, v: &TaskView) -> Option<AgentView> {
    record.map(|a| {
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
    })
}

/// What a worker's last read found besides its view.
#[derive(Debug, Clone, Default)]
pub(crate) struct WorkerCache {
    /// `worker.json`, once read (it is written once, at registration).
    pub(crate) info: Option<WorkerInfo>,
    /// The size of its journal when its last line was read: read again only when it grew.
    pub(crate) journal_len: Option<u64>,
    /// Its journal's last line other than an agent's report.
    pub(crate) last: Option<WorkerEvent>,
    pub(crate) last_error: Option<String>,
    /// Seen dead after it registered: a worker never comes back, so it is not probed again.
    pub(crate) dead: bool,
}

/// Worker `id` from its files, reading again only what may have changed since `cache`
/// was filled (an empty cache reads everything). `finished`: the session ended (a worker
/// that never registered is then lost, not starting).
pub(crate) fn worker_view(
    s: &Session,
    id: String,
    finished: bool,
    cache: &mut WorkerCache,
) -> WorkerView {
    let mut errors = Errors::default();
    if cache.info.is_none() {
        cache.info = errors.keep(fsio::read_json(&s.worker_json(&id))).flatten();
    }
    // What it does now is the last line of its own journal, read again when it grew.
    let events = s.worker_events(&id);
    let len = std::fs::symlink_metadata(&events).ok().map(|m| m.len());
    if len.is_none() || len != cache.journal_len || cache.last_error.is_some() {
        match journal::last_worker_event(&events) {
            Ok(last) => {
                cache.last = last;
                cache.last_error = None;
                cache.journal_len = len;
            }
            Err(e) => {
                cache.last = None;
                cache.last_error = Some(e.to_string());
                cache.journal_len = None;
            }
        }
    }
    errors.0.extend(cache.last_error.clone());
    let registered = cache.info.is_some() || fsio::exists(&s.worker_json(&id));
    let alive = !cache.dead && crate::orchestrator::worker_alive(s, &id);
    cache.dead = registered && !alive;
    let (state, task) = worker_status(registered, cache.last.clone(), alive, finished);
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
        pid: cache.info.as_ref().map(|i| i.pid),
        terminal: cache.info.as_ref().and_then(|i| i.terminal.clone()),
        id,
        state,
        task,
        error: errors.joined(),
    }
}

/// A worker's state (and its task, when running) from whether it registered, the last
/// line of its journal and whether it lives.
pub(crate) fn worker_status(
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
