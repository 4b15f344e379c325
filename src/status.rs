//! Reading a session, live or dead, into a [`Snapshot`] and rendering it: the human table of
//! `orchestrator status`, its `--json` form, the `list` of sessions and `logs`. Everything
//! here only reads; a malformed file is an error naming it (never a panic).

use std::fmt::Write as _;
use std::time::SystemTime;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::fsio;
use crate::orchestrator::{orchestrator_alive, worker_alive};
use crate::plan::Plan;
use crate::proto::{ExitRecord, Outcome, SessionInfo, SessionState, Started, Summary, WorkerInfo};
use crate::session::Session;

/// One attempt of a task, from the journal: which worker ran it and why it ended
/// (`exited`, `failed`, `timed_out`, `worker_lost`, `reassigned`, `cancelled`, `stale`;
/// null while it runs).
#[derive(Debug, Clone, Serialize)]
pub struct AttemptView {
    pub attempt: u32,
    pub worker: Option<String>,
    pub ended: Option<String>,
}

/// One task as status shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    pub id: String,
    /// `pending|running|succeeded|failed|skipped`.
    pub state: String,
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

/// One worker as status shows it.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerView {
    pub id: String,
    pub pid: Option<u32>,
    /// `starting|idle|running|exited|lost`.
    pub state: String,
    pub task: Option<String>,
    pub terminal: Option<String>,
}

/// A session as read from its directory.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub session: String,
    pub path: String,
    pub state: String,
    pub created_at: String,
    pub tasks: Vec<TaskView>,
    pub workers: Vec<WorkerView>,
}

fn required<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T> {
    fsio::read_json(path)?.ok_or_else(|| Error::Session(format!("{}: missing", path.display())))
}

/// Read the whole session.
pub fn snapshot(s: &Session) -> Result<Snapshot> {
    let info: SessionInfo = required(&s.session_json())?;
    let plan: Plan = required(&s.plan_json())?;
    let summary: Option<Summary> = fsio::read_json(&s.summary_json())?;
    let state = match &summary {
        Some(sum) => sum.state,
        None if orchestrator_alive(s) => SessionState::Running,
        None => SessionState::Interrupted,
    };
    let mut history = attempt_history(s)?;
    let worker_ids = s.worker_ids()?;
    let mut tasks = Vec::with_capacity(plan.tasks.len());
    for t in &plan.tasks {
        let mut v = task_view(s, &t.id, &worker_ids)?;
        let mut attempts = history.remove(&t.id).unwrap_or_default();
        if v.state == "running" && !attempts.iter().any(|a| a.attempt == v.attempt) {
            attempts.push(AttemptView {
                attempt: v.attempt,
                worker: v.worker.clone(),
                ended: None,
            });
        }
        attempts.sort_by_key(|a| a.attempt);
        v.attempts = attempts;
        tasks.push(v);
    }
    let mut workers = Vec::new();
    for id in s.worker_ids()? {
        let info: Option<WorkerInfo> = fsio::read_json(&s.worker_json(&id))?;
        // What it does now is the last line of its own journal.
        let last = crate::session::last_event(&s.worker_events(&id))?;
        let event = last.as_ref().and_then(|e| e["event"].as_str());
        let alive = worker_alive(s, &id);
        let state = match (&info, event, alive) {
            (None, _, _) if summary.is_none() => "starting",
            (None, _, _) => "lost",
            (_, Some("started"), true) => "running",
            (_, Some("stopped"), false) => "exited",
            (_, _, true) => "idle",
            (_, _, false) => "lost",
        }
        .to_string();
        let task = (state == "running")
            .then(|| {
                last.as_ref()
                    .and_then(|e| e["task"].as_str().map(String::from))
            })
            .flatten();
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
        state: state.as_str().into(),
        created_at: info.created_at,
        tasks,
        workers,
    })
}

/// Every attempt's end, per task, from `attempt_ended` events in the journal.
fn attempt_history(s: &Session) -> Result<std::collections::HashMap<String, Vec<AttemptView>>> {
    let mut map: std::collections::HashMap<String, Vec<AttemptView>> = Default::default();
    for ev in crate::session::events_of_kind(s, "attempt_ended")? {
        let (Some(task), Some(attempt)) = (ev["task"].as_str(), ev["attempt"].as_u64()) else {
            continue;
        };
        let v = map.entry(task.to_string()).or_default();
        let view = AttemptView {
            attempt: attempt as u32,
            worker: ev["worker"]
                .as_str()
                .filter(|w| !w.is_empty())
                .map(str::to_string),
            ended: ev["reason"].as_str().map(str::to_string),
        };
        // A late `stale` result follows `worker_lost`/`reassigned` for the same attempt:
        // keep the first reason (why it stopped counting), note the worker if it was unknown.
        match v.iter_mut().find(|a| a.attempt == view.attempt) {
            Some(a) => {
                if a.worker.is_none() {
                    a.worker = view.worker;
                }
            }
            None => v.push(view),
        }
    }
    Ok(map)
}

fn task_view(s: &Session, id: &str, worker_ids: &[String]) -> Result<TaskView> {
    if let Some(o) = fsio::read_json::<Outcome>(&s.outcome_json(id))? {
        return Ok(TaskView {
            id: id.into(),
            state: o.state.as_str().into(),
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
        state: "pending".into(),
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
        v.state = "retrying".into();
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
            v.state = "running".into(); // ended, not yet accepted by the orchestrator
            v.worker = Some(e.worker);
            v.exit_code = e.exit_code;
            v.started_at = Some(e.started_at);
            v.ended_at = Some(e.ended_at);
            v.duration_ms = Some(e.duration_ms);
        } else if let Some(st) = started(s, id, n, worker_ids)? {
            v.state = "running".into();
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
        .find(|w| s.assignment_claimed(w, id, n).exists())
    {
        Some(w) => crate::session::started_record(s, w, id, n),
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
    let done = snap
        .tasks
        .iter()
        .filter(|t| {
            matches!(
                t.state.as_str(),
                "succeeded" | "failed" | "skipped" | "cancelled"
            )
        })
        .count();
    let _ = writeln!(
        out,
        "session {} ({}): {}/{} tasks done\n  {}\n",
        snap.session,
        snap.state,
        done,
        snap.tasks.len(),
        snap.path
    );
    if snap.state == "interrupted" {
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
            t.state.clone(),
            t.worker.clone().unwrap_or_else(|| "-".into()),
            if t.attempt == 0 {
                "-".into()
            } else {
                t.attempt.to_string()
            },
            secs(t.duration_ms),
            match (&t.reason, t.attempts.len()) {
                (Some(r), _) => r.clone(),
                (None, n) if n > 1 => attempts_note(&t.attempts),
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
                w.state.clone(),
                w.task.clone().unwrap_or_else(|| "-".into()),
                w.terminal.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        out.push_str(&table(&rows));
    }
    out
}

fn attempts_note(a: &[AttemptView]) -> String {
    let parts: Vec<String> = a
        .iter()
        .map(|a| {
            format!(
                "{} {} ({})",
                a.attempt,
                a.ended.as_deref().unwrap_or("running"),
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

/// One line per session for `orchestrator list`: id, state, done/total, age.
pub fn render_list(sessions: &[Session]) -> Result<String> {
    let mut rows = vec![vec![
        "SESSION".to_string(),
        "STATE".into(),
        "DONE".into(),
        "AGE".into(),
    ]];
    for s in sessions {
        let row = match snapshot(s) {
            Ok(snap) => {
                let done = snap
                    .tasks
                    .iter()
                    .filter(|t| {
                        matches!(
                            t.state.as_str(),
                            "succeeded" | "failed" | "skipped" | "cancelled"
                        )
                    })
                    .count();
                vec![
                    snap.session,
                    snap.state,
                    format!("{}/{}", done, snap.tasks.len()),
                    age(&snap.created_at),
                ]
            }
            Err(e) => vec![
                s.id().to_string(),
                "unreadable".into(),
                "-".into(),
                e.to_string(),
            ],
        };
        rows.push(row);
    }
    Ok(table(&rows))
}

fn age(rfc3339: &str) -> String {
    let Ok(t) = humantime::parse_rfc3339(rfc3339) else {
        return "-".into();
    };
    let secs = SystemTime::now()
        .duration_since(t)
        .map(|d| d.as_secs())
        .unwrap_or(0);
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
    follow: bool,
) -> Result<()> {
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
            crate::watch::WatchMode::from_env()?,
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
            if let Ok(mut f) = std::fs::File::open(&path) {
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
        let finished = s.outcome_json(task).exists();
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
