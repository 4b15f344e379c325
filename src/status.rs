//! Reading a session, live or dead, into a [`Snapshot`] and rendering it: the human table of
//! `orchestrator status`, its `--json` form, the `list` of sessions and `logs`. Everything
//! here only reads; a malformed file is an error naming it (never a panic).

use std::fmt::Write as _;
use std::time::SystemTime;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::fsio;
use crate::journal::{self, EndReason, History, WorkerEvent};
use crate::orchestrator::{orchestrator_alive, worker_alive};
use crate::plan::Plan;
use crate::proto::{
    ExitRecord, Outcome, SessionInfo, SessionState, Started, Summary, TaskState, WorkerInfo,
};
use crate::session::{Listing, Session};

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
    pub created_at: String,
    pub tasks: Vec<TaskView>,
    pub workers: Vec<WorkerView>,
}

impl Snapshot {
    /// Tasks decided (succeeded, failed, skipped, cancelled or lost): what `status` and
    /// `list` show as done.
    pub fn done(&self) -> usize {
        self.tasks.iter().filter(|t| t.state.is_terminal()).count()
    }
}

fn required<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T> {
    fsio::read_json(path)?.ok_or_else(|| Error::Session(format!("{}: missing", path.display())))
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
        (Some(s), _, _) => s,
        (None, true, Some(SessionState::Stopping)) => SessionState::Stopping,
        (None, true, _) => SessionState::Running,
        (None, false, None | Some(SessionState::Running)) => SessionState::Interrupted,
        (None, false, Some(s)) => s,
    }
}

/// Read the whole session.
pub fn snapshot(s: &Session) -> Result<Snapshot> {
    let info: SessionInfo = required(&s.session_json())?;
    let plan: Plan = required(&s.plan_json())?;
    let summary: Option<Summary> = fsio::read_json(&s.summary_json())?;
    let mut history = journal::read_history(s)?;
    let alive = orchestrator_alive(s);
    let state = session_state(summary.as_ref().map(|x| x.state), alive, history.state);
    let worker_ids = s.worker_ids()?;
    let mut tasks = Vec::with_capacity(plan.tasks.len());
    for t in &plan.tasks {
        let mut v = task_view(s, &t.id, &worker_ids)?;
        v.attempts = attempts_of(&mut history, &v);
        tasks.push(v);
    }
    let mut workers = Vec::new();
    for id in worker_ids {
        let info: Option<WorkerInfo> = fsio::read_json(&s.worker_json(&id))?;
        // What it does now is the last line of its own journal.
        let last = journal::last_worker_event(&s.worker_events(&id))?;
        let (state, task) = worker_status(
            info.is_some(),
            last,
            worker_alive(s, &id),
            summary.is_some(),
        );
        workers.push(WorkerView {
            id,
            pid: info.as_ref().map(|i| i.pid),
            state,
            task,
            terminal: info.and_then(|i| i.terminal),
        });
    }
    Ok(Snapshot {
        session: s.id().to_string(),
        path: s.root().display().to_string(),
        state,
        orchestrator_alive: alive,
        created_at: info.created_at,
        tasks,
        workers,
    })
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

fn task_view(s: &Session, id: &str, worker_ids: &[String]) -> Result<TaskView> {
    if let Some(o) = fsio::read_json::<Outcome>(&s.outcome_json(id))? {
        return Ok(TaskView {
            id: id.into(),
            state: o.state,
            attempt: o.attempt,
            worker: o.worker,
            exit_code: o.exit_code,
            started_at: o.started_at,
            ended_at: o.ended_at,
            duration_ms: o.duration_ms,
            reason: o.reason,
            attempts: Vec::new(),
            progress: None,
        });
    }
    let mut v = TaskView {
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
    };
    if let Some(r) = fsio::read_json::<crate::proto::RetryPlan>(&s.retry_json(id))? {
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
        return Ok(v);
    }
    if let Some(&n) = s.attempts(id)?.last() {
        v.attempt = n;
        if let Some(e) = fsio::read_json::<ExitRecord>(&s.exit_json(id, n))? {
            v.state = TaskState::Running; // ended, not yet accepted by the orchestrator
            v.worker = Some(e.worker);
            v.exit_code = e.exit_code;
            v.started_at = Some(e.started_at);
            v.ended_at = Some(e.ended_at);
            v.duration_ms = Some(e.duration_ms);
        } else if let Some(st) = started(s, id, n, worker_ids)? {
            v.state = TaskState::Running;
            v.worker = Some(st.worker);
            v.started_at = Some(st.started_at);
            v.duration_ms = Some(crate::proto::now_unix_ms().saturating_sub(st.started_unix_ms));
            v.progress = crate::shared::read_progress(s, id, n);
            if let Some(p) = &v.progress {
                v.reason = Some(match &p.message {
                    Some(m) => format!("{:.0}% {m}", p.pct),
                    None => format!("{:.0}%", p.pct),
                });
            }
        }
    }
    Ok(v)
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

fn secs(ms: Option<u64>) -> String {
    match ms {
        Some(ms) => format!("{:.1}s", ms as f64 / 1000.0),
        None => "-".into(),
    }
}

fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |x| x.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{:<w$}  ", cell, w = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The human form of `orchestrator status`.
pub fn render(snap: &Snapshot) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "session {} ({}): {}/{} tasks done\n  {}\n",
        snap.session,
        snap.state.as_str(),
        snap.done(),
        snap.tasks.len(),
        snap.path
    );
    if !snap.orchestrator_alive
        && matches!(
            snap.state,
            SessionState::Interrupted | SessionState::Stopping
        )
    {
        let _ = writeln!(
            out,
            "  its orchestrator is gone: `orchestrator resume {}` carries on, `orchestrator cancel {}` stops it\n",
            snap.session, snap.session
        );
    }
    let mut rows = vec![vec![
        "TASK".to_string(),
        "STATE".into(),
        "WORKER".into(),
        "ATTEMPT".into(),
        "DURATION".into(),
        "NOTE".into(),
    ]];
    for t in &snap.tasks {
        rows.push(vec![
            t.id.clone(),
            t.state.as_str().into(),
            t.worker.clone().unwrap_or_else(|| "-".into()),
            if t.attempt == 0 {
                "-".into()
            } else {
                t.attempt.to_string()
            },
            secs(t.duration_ms),
            match (&t.reason, t.attempts.len()) {
                (Some(r), _) => r.clone(),
                (None, n) if n > 1 => attempts_note(t),
                _ => String::new(),
            },
        ]);
    }
    out.push_str(&table(&rows));
    if !snap.workers.is_empty() {
        out.push('\n');
        let mut rows = vec![vec![
            "WORKER".to_string(),
            "PID".into(),
            "STATE".into(),
            "TASK".into(),
            "TERMINAL".into(),
        ]];
        for w in &snap.workers {
            rows.push(vec![
                w.id.clone(),
                w.pid.map_or("-".into(), |p| p.to_string()),
                w.state.as_str().into(),
                w.task.clone().unwrap_or_else(|| "-".into()),
                w.terminal.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        out.push_str(&table(&rows));
    }
    out
}

/// `attempts: 1 worker_lost (w1), 2 running (w2)`: how each attempt ended; one that has
/// not is `running` if it is the task's running attempt, else `queued` (assigned, not
/// started).
fn attempts_note(t: &TaskView) -> String {
    let parts: Vec<String> = t
        .attempts
        .iter()
        .map(|a| {
            let how = match a.ended {
                Some(r) => r.as_str(),
                None if t.state == TaskState::Running && a.attempt == t.attempt => "running",
                None => "queued",
            };
            format!(
                "{} {how} ({})",
                a.attempt,
                a.worker.as_deref().unwrap_or("-")
            )
        })
        .collect();
    format!("attempts: {}", parts.join(", "))
}

/// `status --json`.
pub fn to_json(snap: &Snapshot) -> serde_json::Value {
    serde_json::json!({
        "session": snap.session,
        "path": snap.path,
        "state": snap.state,
        "created_at": snap.created_at,
        "tasks": snap.tasks,
        "workers": snap.workers,
    })
}

/// One row of `orchestrator list`.
#[derive(Debug, Clone)]
pub enum ListRow {
    /// A session read whole.
    Session(Snapshot),
    /// An entry that is not a session we may use, or a session that cannot be read:
    /// shown, never skipped, with why.
    Unreadable {
        name: String,
        reason: String,
        modified: Option<SystemTime>,
    },
}

/// Read every entry of a listing into the rows `list` shows: sessions oldest first, then
/// the entries [`Session::open`] refused.
pub fn list_rows(listing: &Listing) -> Vec<ListRow> {
    let mut rows = Vec::with_capacity(listing.sessions.len() + listing.refused.len());
    for s in &listing.sessions {
        rows.push(match snapshot(s) {
            Ok(snap) => ListRow::Session(snap),
            Err(e) => ListRow::Unreadable {
                name: s.id().to_string(),
                reason: e.to_string(),
                modified: fsio::modified(s.root()),
            },
        });
    }
    for r in &listing.refused {
        rows.push(ListRow::Unreadable {
            name: r.name.clone(),
            reason: r.reason.clone(),
            modified: r.modified,
        });
    }
    rows
}

/// `orchestrator list`: one line per session (id, state, decided/total tasks, age), and
/// one per entry that could not be read, with why.
pub fn render_list(listing: &Listing) -> String {
    list_table(&list_rows(listing), SystemTime::now())
}

/// The table of `list`, ages taken at `now`. The NOTE column is there only when a row
/// has one.
pub fn list_table(rows: &[ListRow], now: SystemTime) -> String {
    let notes = rows.iter().any(|r| matches!(r, ListRow::Unreadable { .. }));
    let mut header = vec![
        "SESSION".to_string(),
        "STATE".into(),
        "DONE".into(),
        "AGE".into(),
    ];
    if notes {
        header.push("NOTE".into());
    }
    let mut table_rows = vec![header];
    for r in rows {
        table_rows.push(match r {
            ListRow::Session(snap) => vec![
                snap.session.clone(),
                snap.state.as_str().into(),
                format!("{}/{}", snap.done(), snap.tasks.len()),
                humantime::parse_rfc3339(&snap.created_at)
                    .map_or_else(|_| "-".into(), |t| age(t, now)),
            ],
            ListRow::Unreadable {
                name,
                reason,
                modified,
            } => vec![
                name.clone(),
                "unreadable".into(),
                "-".into(),
                modified.map_or_else(|| "-".into(), |t| age(t, now)),
                reason.clone(),
            ],
        });
    }
    table(&table_rows)
}

fn age(then: SystemTime, now: SystemTime) -> String {
    let secs = now.duration_since(then).map(|d| d.as_secs()).unwrap_or(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// Print a task's log (stdout, or stderr), of the given attempt or the latest; with
/// `follow`, keep printing new output (moving on to newer attempts) until the task has an
/// outcome, like `tail -f`.
pub fn logs(
    s: &Session,
    task: &str,
    attempt: Option<u32>,
    stderr: bool,
    follow: Option<crate::watch::WatchMode>,
) -> Result<()> {
    // `follow`: keep printing, noticing changes in this mode.
    let watch_mode = follow;
    let follow = follow.is_some();
    use std::io::{Read, Seek, SeekFrom, Write};
    crate::names::validate("task id", task).map_err(Error::Usage)?;
    let plan: Plan = required(&s.plan_json())?;
    if !plan.tasks.iter().any(|t| t.id == task) {
        return Err(Error::Usage(format!(
            "session {} has no task {task:?}",
            s.id()
        )));
    }
    let path_of = |n: u32| {
        if stderr {
            s.stderr_log(task, n)
        } else {
            s.stdout_log(task, n)
        }
    };
    let latest = || -> Result<Option<u32>> { Ok(attempt.or(s.attempts(task)?.last().copied())) };
    let mut out = std::io::stdout().lock();
    let mut current = latest()?;
    let mut offset = 0u64;
    let (tx, rx) = std::sync::mpsc::channel();
    let watch = if follow {
        Some(crate::watch::start(
            &[s.task_dir(task)],
            watch_mode.unwrap_or(crate::watch::WatchMode::Poll),
            tx,
            |_| Some(()),
        )?)
    } else {
        None
    };
    let rescan = watch
        .as_ref()
        .map_or(std::time::Duration::from_millis(500), |w| {
            w.mode().rescan_interval()
        });
    loop {
        if let Some(n) = current {
            let path = path_of(n);
            if let Ok(Some(mut f)) = fsio::open_read(&path) {
                f.seek(SeekFrom::Start(offset))
                    .map_err(|e| Error::io(&path, "seek", e))?;
                let mut buf = Vec::new();
                f.read_to_end(&mut buf)
                    .map_err(|e| Error::io(&path, "read", e))?;
                offset += buf.len() as u64;
                let _ = out.write_all(&buf);
                let _ = out.flush();
            }
        }
        if !follow {
            return Ok(());
        }
        let finished = fsio::exists(&s.outcome_json(task));
        let newest = latest()?;
        if newest != current {
            current = newest;
            offset = 0;
            if let Some(n) = current {
                let _ = writeln!(out, "--- attempt {n} ---");
            }
            continue;
        }
        if finished {
            return Ok(());
        }
        let _ = rx.recv_timeout(rescan);
        while rx.try_recv().is_ok() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn task(id: &str, state: TaskState) -> TaskView {
        let ran = !matches!(state, TaskState::Pending | TaskState::Skipped);
        TaskView {
            id: id.into(),
            state,
            attempt: u32::from(ran),
            worker: ran.then(|| "w1".to_string()),
            exit_code: None,
            started_at: None,
            ended_at: None,
            duration_ms: ran.then_some(1500),
            reason: None,
            attempts: Vec::new(),
            progress: None,
        }
    }

    fn snap(state: SessionState, tasks: Vec<TaskView>) -> Snapshot {
        Snapshot {
            session: "s-20260101-000000-1".into(),
            path: "/r/s-20260101-000000-1".into(),
            state,
            orchestrator_alive: false,
            created_at: "2026-01-01T00:00:00.000Z".into(),
            tasks,
            workers: Vec::new(),
        }
    }

    fn created() -> SystemTime {
        humantime::parse_rfc3339("2026-01-01T00:00:00.000Z").unwrap()
    }

    #[test]
    fn status_counts_every_decided_task_as_done_race_losers_too() {
        let s = snap(
            SessionState::Succeeded,
            vec![
                task("winner", TaskState::Succeeded),
                task("loser", TaskState::Lost),
                task("after", TaskState::Succeeded),
            ],
        );
        assert_eq!(s.done(), 3);
        assert_eq!(
            render(&s),
            "session s-20260101-000000-1 (succeeded): 3/3 tasks done\n\
             \x20 /r/s-20260101-000000-1\n\
             \n\
             TASK    STATE      WORKER  ATTEMPT  DURATION  NOTE\n\
             winner  succeeded  w1      1        1.5s\n\
             loser   lost       w1      1        1.5s\n\
             after   succeeded  w1      1        1.5s\n"
        );
    }

    #[test]
    fn status_counts_decided_states_only() {
        let s = snap(
            SessionState::Failed,
            [
                TaskState::Succeeded,
                TaskState::Failed,
                TaskState::Skipped,
                TaskState::Cancelled,
                TaskState::Lost,
                TaskState::Pending,
                TaskState::Running,
                TaskState::Retrying,
            ]
            .into_iter()
            .map(|st| task(st.as_str(), st))
            .collect(),
        );
        let text = render(&s);
        assert_eq!(
            text.lines().next().unwrap(),
            "session s-20260101-000000-1 (failed): 5/8 tasks done"
        );
    }

    #[test]
    fn list_shows_a_failed_session_with_its_decided_tasks_and_unreadable_entries() {
        let failed = snap(
            SessionState::Failed,
            vec![
                task("a", TaskState::Failed),
                task("b", TaskState::Lost),
                task("c", TaskState::Skipped),
                task("d", TaskState::Pending),
            ],
        );
        let now = created() + Duration::from_secs(300);
        assert_eq!(
            list_table(&[ListRow::Session(failed.clone())], now),
            "SESSION              STATE   DONE  AGE\n\
             s-20260101-000000-1  failed  3/4   5m\n"
        );
        let rows = [
            ListRow::Session(failed),
            ListRow::Unreadable {
                name: "junk".into(),
                reason: "/r/junk: is writable by other users (mode 777)".into(),
                modified: Some(now - Duration::from_secs(7200)),
            },
            ListRow::Unreadable {
                name: "x".into(),
                reason: "/r/x: is not a session directory".into(),
                modified: None,
            },
        ];
        assert_eq!(
            list_table(&rows, now),
            "SESSION              STATE       DONE  AGE  NOTE\n\
             s-20260101-000000-1  failed      3/4   5m\n\
             junk                 unreadable  -     2h   /r/junk: is writable by other users (mode 777)\n\
             x                    unreadable  -     -    /r/x: is not a session directory\n"
        );
    }

    #[test]
    fn list_reads_a_refused_entry_into_an_unreadable_row() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("stray")).unwrap();
        // Private whatever the umask: refused for what it lacks, not for its mode.
        std::fs::set_permissions(
            d.path().join("stray"),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let listing = Session::list(d.path()).unwrap();
        let rows = list_rows(&listing);
        let [ListRow::Unreadable { name, reason, .. }] = &rows[..] else {
            panic!("{rows:?}");
        };
        assert_eq!(name, "stray");
        assert_eq!(
            reason,
            &format!(
                "{}: is not a maestro session (no session.json)",
                d.path().join("stray").display()
            )
        );
    }

    #[test]
    fn session_state_comes_from_the_summary_then_the_journal() {
        use SessionState::*;
        assert_eq!(session_state(Some(Failed), false, Some(Running)), Failed);
        assert_eq!(session_state(Some(Succeeded), true, None), Succeeded);
        assert_eq!(session_state(None, true, Some(Running)), Running);
        assert_eq!(session_state(None, true, Some(Stopping)), Stopping);
        assert_eq!(session_state(None, true, Some(Interrupted)), Running);
        // No orchestrator: the journal's word, where `running` means it died.
        assert_eq!(session_state(None, false, Some(Running)), Interrupted);
        assert_eq!(session_state(None, false, None), Interrupted);
        assert_eq!(session_state(None, false, Some(Stopping)), Stopping);
        assert_eq!(session_state(None, false, Some(Interrupted)), Interrupted);
    }

    #[test]
    fn a_dead_orchestrators_session_says_how_to_go_on() {
        for state in [SessionState::Interrupted, SessionState::Stopping] {
            let s = snap(state, vec![task("a", TaskState::Running)]);
            assert_eq!(
                render(&s),
                format!(
                    "session s-20260101-000000-1 ({}): 0/1 tasks done\n\
                     \x20 /r/s-20260101-000000-1\n\
                     \n\
                     \x20 its orchestrator is gone: `orchestrator resume s-20260101-000000-1` carries on, `orchestrator cancel s-20260101-000000-1` stops it\n\
                     \n\
                     TASK  STATE    WORKER  ATTEMPT  DURATION  NOTE\n\
                     a     running  w1      1        1.5s\n",
                    state.as_str()
                )
            );
        }
        let mut live = snap(SessionState::Stopping, vec![]);
        live.orchestrator_alive = true;
        assert!(!render(&live).contains("orchestrator is gone"));
    }

    #[test]
    fn attempts_note_tells_running_from_queued() {
        let mut t = task("a", TaskState::Running);
        t.attempt = 2;
        t.attempts = vec![
            AttemptView {
                attempt: 1,
                worker: Some("w1".into()),
                ended: Some(EndReason::WorkerLost),
            },
            AttemptView {
                attempt: 2,
                worker: Some("w2".into()),
                ended: None,
            },
        ];
        assert_eq!(
            attempts_note(&t),
            "attempts: 1 worker_lost (w1), 2 running (w2)"
        );
        t.state = TaskState::Pending;
        t.attempt = 1;
        assert_eq!(
            attempts_note(&t),
            "attempts: 1 worker_lost (w1), 2 queued (w2)"
        );
    }

    #[test]
    fn workers_state_comes_from_their_journals_last_line() {
        let started = WorkerEvent::Started(Started {
            task: "t".into(),
            attempt: 1,
            worker: "w1".into(),
            pid: 1,
            pgid: 1,
            started_at: "x".into(),
            started_unix_ms: 0,
            proc_start: None,
            boot_id: None,
        });
        assert_eq!(
            worker_status(true, Some(started.clone()), true, false),
            (WorkerStatus::Running, Some("t".into()))
        );
        assert_eq!(
            worker_status(true, Some(started), false, false),
            (WorkerStatus::Lost, None)
        );
        assert_eq!(
            worker_status(true, Some(WorkerEvent::Stopped {}), false, true),
            (WorkerStatus::Exited, None)
        );
        let ready = WorkerEvent::Ready {
            pid: 1,
            protocol: None,
        };
        assert_eq!(
            worker_status(true, Some(ready), true, false),
            (WorkerStatus::Idle, None)
        );
        assert_eq!(
            worker_status(false, None, false, false),
            (WorkerStatus::Starting, None)
        );
        assert_eq!(
            worker_status(false, None, false, true),
            (WorkerStatus::Lost, None)
        );
    }

    #[test]
    fn json_keeps_the_state_strings() {
        let mut s = snap(
            SessionState::Interrupted,
            vec![task("a", TaskState::Retrying)],
        );
        s.tasks[0].attempts = vec![AttemptView {
            attempt: 1,
            worker: None,
            ended: Some(EndReason::TimedOut),
        }];
        s.workers = vec![WorkerView {
            id: "w1".into(),
            pid: Some(7),
            state: WorkerStatus::Idle,
            task: None,
            terminal: None,
        }];
        let v = to_json(&s);
        assert_eq!(v["state"], "interrupted");
        assert_eq!(v["tasks"][0]["state"], "retrying");
        assert_eq!(v["tasks"][0]["attempts"][0]["ended"], "timed_out");
        assert_eq!(v["workers"][0]["state"], "idle");
        assert!(v.get("orchestrator_alive").is_none(), "{v}");
    }
}
