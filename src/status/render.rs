//! Drawing a [`Snapshot`]: the tables of `orchestrator status` and `list`, and their
//! `--json` forms. A file that could not be read is shown where it belongs (a line under
//! the session's heading, a task's or a worker's NOTE, an `error` in JSON), never dropped.

use std::fmt::Write as _;
use std::time::SystemTime;

use super::{Snapshot, TaskView, snapshot};
use crate::proto::{SessionState, TaskState};
use crate::session::Listing;
use crate::usage::MemoryMode;

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
    let (done, total) = snap.counted.unwrap_or((snap.done(), snap.tasks.len()));
    let _ = writeln!(
        out,
        "session {} ({}): {}/{} tasks done\n  {}\n",
        snap.session,
        snap.state.as_str(),
        done,
        total,
        snap.path
    );
    if snap.counted.is_some() {
        let n = snap.tasks.len();
        let _ = writeln!(
            out,
            "  {n} task{} waiting for a person (--waiting shows only these)\n",
            if n == 1 { "" } else { "s" }
        );
    }
    for e in &snap.errors {
        let _ = writeln!(out, "  unreadable: {e}");
    }
    if !snap.errors.is_empty() {
        out.push('\n');
    }
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
    if snap.state == SessionState::Frozen {
        let _ = writeln!(
            out,
            "  frozen: its running tasks are stopped where they are; `orchestrator thaw {s}` goes on, `orchestrator rollback {s}` undoes what succeeded, `orchestrator cancel {s}` ends it\n",
            s = snap.session
        );
    }
    if snap.state == SessionState::RollbackFailed {
        let _ = writeln!(
            out,
            "  the rollback stopped at a step that failed or is unknown (below); once it is fixed, `orchestrator rollback {s}` runs that step again and goes on (for an unknown step: --rerun-unknown or --skip-unknown)\n",
            s = snap.session
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
    // Tasks whose agent waits for a person first: they are what needs doing.
    let mut order: Vec<&TaskView> = snap.tasks.iter().collect();
    order.sort_by_key(|t| !t.waiting());
    for t in order {
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
            match (&t.error, &t.reason, t.attempts.len()) {
                (Some(e), _, _) => format!("unreadable: {e}"),
                (None, None, _) if t.agent.is_some() && t.state == TaskState::Running => {
                    agent_note(t)
                }
                (None, Some(r), _) => r.clone(),
                (None, None, n) if n > 1 => attempts_note(t),
                _ => String::new(),
            },
        ]);
    }
    out.push_str(&table(&rows));
    for t in &snap.tasks {
        if let Some(line) = &t.secrets {
            let _ = writeln!(out, "secrets of {}: {line}", t.id);
        }
    }
    super::worktrees::lines(snap, &mut out);
    for g in snap
        .gates
        .iter()
        .filter(|g| g.state == super::GateState::Waiting)
    {
        let _ = writeln!(
            out,
            "\ngate {gate} WAITS FOR APPROVAL: `orchestrator approve {s} {gate}` or \
             `orchestrator reject {s} {gate} --reason ...`",
            gate = g.gate,
            s = snap.session
        );
    }
    aux_lines(snap, &mut out);
    if let Some((available, needed)) = snap.held {
        let _ = writeln!(
            out,
            "\nnew starts held: available memory {} is below min_free_memory {}",
            crate::plan::show_size(available),
            crate::plan::show_size(needed)
        );
    }
    if !snap.resources.is_empty() {
        out.push('\n');
        for p in &snap.resources {
            let mut marks = Vec::new();
            if let Some(w) = p.warn {
                marks.push(format!("warn {w}"));
            }
            if let Some(c) = p.critical {
                marks.push(format!("critical {c}"));
            }
            let marks = if marks.is_empty() {
                String::new()
            } else {
                format!(" ({})", marks.join(", "))
            };
            let level = match p.level {
                crate::plan::Level::Normal => "",
                crate::plan::Level::Warn => ": WARN",
                crate::plan::Level::Critical => ": CRITICAL, only tasks that claim none start",
            };
            let _ = writeln!(
                out,
                "pool {}: {}/{} in use{marks}{level}",
                p.pool, p.used, p.max
            );
        }
    }
    if !snap.workers.is_empty() {
        out.push('\n');
        let mut header = vec![
            "WORKER".to_string(),
            "PID".into(),
            "STATE".into(),
            "TASK".into(),
            "TERMINAL".into(),
        ];
        // CPU and MEMORY only while some worker runs an attempt it measured.
        let usage = snap.workers.iter().any(|w| w.usage.is_some());
        if usage {
            header.extend(["CPU".into(), "MEMORY".into()]);
        }
        // The NOTE column is there only when a worker has one.
        let notes = snap.workers.iter().any(|w| w.error.is_some());
        if notes {
            header.push("NOTE".into());
        }
        let mut rows = vec![header];
        for w in &snap.workers {
            let mut row = vec![
                w.id.clone(),
                w.pid.map_or("-".into(), |p| p.to_string()),
                w.state.as_str().into(),
                w.task.clone().unwrap_or_else(|| "-".into()),
                w.terminal.clone().unwrap_or_else(|| "-".into()),
            ];
            if usage {
                row.push(
                    w.usage
                        .as_ref()
                        .map_or("-".into(), |u| format!("{:.0}%", u.cpu_percent)),
                );
                row.push(w.usage.as_ref().map_or("-".into(), |u| {
                    // `(cgroup)`: measured and limited by its cgroup; `(pss, cgroup)`: in a
                    // cgroup (stopped with cgroup.kill) without its memory controller.
                    let in_cgroup = u.cgroup.is_some() && u.mode != MemoryMode::Cgroup;
                    format!(
                        "{} ({}{})",
                        crate::plan::show_size_rounded(u.memory_bytes),
                        u.mode.as_str(),
                        if in_cgroup { ", cgroup" } else { "" }
                    )
                }));
            }
            if let Some(e) = &w.error {
                row.push(format!("unreadable: {e}"));
            }
            rows.push(row);
        }
        out.push_str(&table(&rows));
    }
    out
}

/// `attempts: 1 worker_lost (w1), 2 running (w2)`: how each attempt ended; one that has
/// not is `running` if it is the task's running attempt, else `queued` (assigned, not
/// started).
pub(super) fn attempts_note(t: &TaskView) -> String {
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

/// `status --json`: `errors` (the session's files that could not be read) only when there
/// are some, as a task's or worker's `error`; `resources` only for a plan with pools;
/// `conflicts` only for a plan with worktree tasks (a task's `worktree` once made).
pub fn to_json(snap: &Snapshot) -> serde_json::Value {
    let mut v = serde_json::json!({
        "session": snap.session,
        "path": snap.path,
        "state": snap.state,
        "created_at": snap.created_at,
        "tasks": snap.tasks,
        "workers": snap.workers,
    });
    if !snap.errors.is_empty() {
        v["errors"] = serde_json::json!(snap.errors);
    }
    if !snap.resources.is_empty() {
        v["resources"] = serde_json::json!(snap.resources);
    }
    if !snap.gates.is_empty() {
        v["gates"] = serde_json::json!(snap.gates);
    }
    if let Some((available, needed)) = snap.held {
        v["held"] = serde_json::json!({"available": available, "needed": needed});
    }
    if !snap.aux.is_empty() {
        v["aux"] = serde_json::json!(snap.aux);
    }
    if let Some(steps) = &snap.rollback {
        v["rollback"] = serde_json::json!(steps);
    }
    if let Some(c) = &snap.conflicts {
        v["conflicts"] = serde_json::json!(c);
    }
    v
}

/// The rollback's steps as they stand, and every other auxiliary command that is running
/// or did not succeed (a succeeded cleanup is no news).
fn aux_lines(snap: &Snapshot, out: &mut String) {
    use super::AuxStatus;
    use crate::proto::AuxKind;
    let last = |kind: AuxKind, of: &str| snap.aux.iter().rfind(|a| a.kind == kind && a.of == of);
    if let Some(steps) = &snap.rollback {
        let parts: Vec<String> = steps
            .iter()
            .map(|t| match last(AuxKind::Rollback, t) {
                None => format!("{t} pending"),
                Some(a) => match &a.reason {
                    Some(r) if a.state != AuxStatus::Succeeded => {
                        format!("{t} {} ({r})", a.state.as_str())
                    }
                    _ => format!("{t} {}", a.state.as_str()),
                },
            })
            .collect();
        let _ = writeln!(
            out,
            "\nrollback (last completed first): {}",
            if parts.is_empty() {
                "nothing to undo".to_string()
            } else {
                parts.join(", ")
            }
        );
    }
    for a in snap
        .aux
        .iter()
        .filter(|a| a.kind != AuxKind::Rollback && a.state != AuxStatus::Succeeded)
    {
        let what = match a.kind {
            AuxKind::Check => format!("check of gate {}", a.of),
            AuxKind::Cleanup => format!("cleanup of {} (attempt {})", a.of, a.attempt),
            _ => format!("{} of {}", a.kind.as_str(), a.of),
        };
        match &a.reason {
            Some(r) => {
                let _ = writeln!(out, "{what}: {}: {r}", a.state.as_str());
            }
            None => {
                let _ = writeln!(out, "{what}: {} on {}", a.state.as_str(), a.worker);
            }
        }
    }
}

/// What a running agent task's NOTE says: its state, and what it waits for.
fn agent_note(t: &TaskView) -> String {
    let Some(a) = &t.agent else {
        return String::new();
    };
    match (&a.message, a.state) {
        (Some(m), crate::agent::AgentState::Waiting) => format!("agent WAITING: {m}"),
        (_, crate::agent::AgentState::Waiting) => "agent WAITING".into(),
        (Some(m), s) => format!("agent {}: {m}", s.as_str()),
        (None, s) => format!("agent {}", s.as_str()),
    }
}

/// Only the tasks whose agent waits for a person (`status --waiting`).
pub fn only_waiting(snap: &mut Snapshot) {
    snap.counted = Some((snap.done(), snap.tasks.len()));
    snap.tasks.retain(TaskView::waiting);
}

/// One row of `orchestrator list`.
#[derive(Debug, Clone)]
pub enum ListRow {
    /// A session, as read (files it could not read are counted in its note).
    Session(Box<Snapshot>),
    /// An entry that is not a session we may use: shown, never skipped, with why.
    Unreadable {
        name: String,
        reason: String,
        modified: Option<SystemTime>,
    },
}

/// Read every entry of a listing into the rows `list` shows: sessions oldest first, then
/// the entries [`crate::session::Session::open`] refused.
pub fn list_rows(listing: &Listing) -> Vec<ListRow> {
    let mut rows = Vec::with_capacity(listing.sessions.len() + listing.refused.len());
    rows.extend(
        listing
            .sessions
            .iter()
            .map(|s| ListRow::Session(Box::new(snapshot(s)))),
    );
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

/// What the NOTE column of `list` says of a session with files it could not read.
fn unreadable_note(snap: &Snapshot) -> Option<String> {
    match snap.unreadable() {
        0 => None,
        n => Some(format!(
            "{n} unreadable file{}: `orchestrator status {}` shows which",
            if n == 1 { "" } else { "s" },
            snap.session
        )),
    }
}

/// The table of `list`, ages taken at `now`. The NOTE column is there only when a row
/// has one.
pub fn list_table(rows: &[ListRow], now: SystemTime) -> String {
    let notes = rows.iter().any(|r| match r {
        ListRow::Session(snap) => snap.unreadable() > 0,
        ListRow::Unreadable { .. } => true,
    });
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
            ListRow::Session(snap) => {
                let mut row = vec![
                    snap.session.clone(),
                    snap.state.as_str().into(),
                    format!("{}/{}", snap.done(), snap.tasks.len()),
                    created(snap).map_or_else(|| "-".into(), |t| age(t, now)),
                ];
                row.extend(unreadable_note(snap));
                row
            }
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

fn created(snap: &Snapshot) -> Option<SystemTime> {
    humantime::parse_rfc3339(snap.created_at.as_deref()?).ok()
}

/// `list --json`: one object per row, in the table's order. A session: `session`, `path`,
/// `state`, `done`, `total`, `created_at` and `unreadable` (how many of its files could
/// not be read); an entry that is not a session we may use: `session` (its name),
/// `state: "unreadable"`, `reason` and `modified`.
pub fn list_json(rows: &[ListRow]) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| match r {
            ListRow::Session(snap) => serde_json::json!({
                "session": snap.session,
                "path": snap.path,
                "state": snap.state,
                "done": snap.done(),
                "total": snap.tasks.len(),
                "created_at": snap.created_at,
                "unreadable": snap.unreadable(),
            }),
            ListRow::Unreadable {
                name,
                reason,
                modified,
            } => serde_json::json!({
                "session": name,
                "state": "unreadable",
                "reason": reason,
                "modified": modified.map(|t| humantime::format_rfc3339_millis(t).to_string()),
            }),
        })
        .collect();
    serde_json::Value::Array(rows)
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
