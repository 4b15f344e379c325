//! The end of `run` and `resume`: the report in a few lines on stderr. What failed and
//! why (the reason: exit code, signal, timeout; and the last lines of its output), what
//! else did not succeed, the totals, the metrics, and where the whole report is.

use std::fmt::Write as _;
use std::path::Path;

use super::build::states_line;
use super::markdown::{attempts_line, duration, tries_line};
use super::model::Report;
use crate::proto::TaskState;

/// Failed tasks shown with their output, and lines of it each.
const FAILED_SHOWN: usize = 5;
const LINES_SHOWN: usize = 5;
/// Tasks named for each other state that is not a success.
const NAMED: usize = 5;

/// The short version of `report`, whose markdown is at `md`.
pub fn brief(r: &Report, md: &Path) -> String {
    let mut out = String::new();
    let failed: Vec<_> = r
        .not_succeeded
        .iter()
        .filter(|row| row.task.state == TaskState::Failed)
        .collect();
    for row in failed.iter().take(FAILED_SHOWN) {
        let why = row.task.reason.as_deref().unwrap_or("failed");
        let _ = writeln!(
            out,
            "FAILED {} (attempt {} of {}): {why}",
            row.task.id, row.task.attempt, row.task.attempts
        );
        if row.tries.len() > 1 {
            let _ = writeln!(out, "  attempts: {}", tries_line(row));
        }
        if let Some(e) = &row.excerpt {
            let skip = e.lines.len().saturating_sub(LINES_SHOWN);
            let _ = writeln!(out, "  last lines of {}:", e.file);
            for l in &e.lines[skip..] {
                let _ = writeln!(out, "  | {l}");
            }
        }
    }
    let all_failed = r
        .totals
        .by_state
        .get(&TaskState::Failed)
        .copied()
        .unwrap_or(0);
    if all_failed > FAILED_SHOWN.min(failed.len()) {
        let _ = writeln!(out, "... {} failed tasks in all", all_failed);
    }
    for state in [TaskState::Skipped, TaskState::Cancelled, TaskState::Lost] {
        let n = r.totals.by_state.get(&state).copied().unwrap_or(0);
        if n == 0 {
            continue;
        }
        let named: Vec<&str> = r
            .not_succeeded
            .iter()
            .filter(|row| row.task.state == state)
            .take(NAMED)
            .map(|row| row.task.id.as_str())
            .collect();
        let more = if n > named.len() { ", ..." } else { "" };
        let _ = writeln!(out, "{} {n}: {}{more}", state.as_str(), named.join(", "));
    }
    let t = &r.totals;
    let _ = writeln!(
        out,
        "tasks: {} ({}); attempts: {}; workers: {}; {}",
        t.tasks,
        states_line(&t.by_state),
        attempts_line(t),
        t.workers,
        r.duration_ms.map_or_else(|| "-".into(), duration)
    );
    let sums = |m: &std::collections::BTreeMap<String, serde_json::Value>| {
        m.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !r.metrics.is_empty() {
        let _ = writeln!(out, "metrics: {}", sums(&r.metrics));
    }
    if r.metrics_spent != r.metrics && !r.metrics_spent.is_empty() {
        let _ = writeln!(
            out,
            "metrics spent (every attempt): {}",
            sums(&r.metrics_spent)
        );
    }
    if !r.decision_conflicts.is_empty() {
        let keys: Vec<&str> = r
            .decision_conflicts
            .iter()
            .map(|c| c.key.as_str())
            .collect();
        let _ = writeln!(out, "decisions in conflict: {}", keys.join(", "));
    }
    let _ = writeln!(out, "report: {}", md.display());
    out
}
