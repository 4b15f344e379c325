//! `report.md`: the report for people, drawn from a [`Built`] report. Sections: the
//! session in a few lines, what did not succeed (with the last lines of each failed
//! task's output), every task (a table, for sessions of at most [`TABLE_MAX`] tasks),
//! waves, the critical path, pools, metrics, insights, decisions, and files that could
//! not be read. Text from tasks (reasons, logs, insights) is escaped for where it goes:
//! table cells lose their `|` and line breaks, logs go in a fence longer than any run of
//! backticks in them.

use std::fmt::Write as _;

use serde_json::Value;

use super::build::{Built, TABLE_MAX, states_line};
use super::model::{Report, TaskRow};

/// A duration as people read it: `850ms`, `12.3s`, `4m05s`, `2h03m`.
pub fn duration(ms: u64) -> String {
    match ms {
        0..1000 => format!("{ms}ms"),
        1000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

fn opt_duration(ms: Option<u64>) -> String {
    ms.map_or_else(|| "-".into(), duration)
}

/// `n` and the noun for it: `1 retry`, `2 retries`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The totals' second line: `5 (1 retry, 0 reassignments)`.
pub fn attempts_line(t: &super::model::Totals) -> String {
    format!(
        "{} ({}, {})",
        t.attempts,
        count(t.retries, "retry", "retries"),
        count(t.reassignments, "reassignment", "reassignments")
    )
}

/// Text for a table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// `lines` in a fenced block whose fence no line can close.
fn fenced(out: &mut String, lines: &[String]) {
    let longest = lines
        .iter()
        .flat_map(|l| l.split(|c| c != '`'))
        .map(str::len)
        .max()
        .unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    let _ = writeln!(out, "{fence}text");
    for l in lines {
        let _ = writeln!(out, "{l}");
    }
    let _ = writeln!(out, "{fence}\n");
}

/// How each attempt of a row ended: `1 failed (exited with code 3), 2 exited`.
pub fn tries_line(row: &TaskRow) -> String {
    let mut parts: Vec<String> = row
        .tries
        .iter()
        .map(|t| {
            let ended = t.ended.map_or("running", |e| e.as_str());
            match &t.reason {
                Some(r) => format!("{} {ended} ({r})", t.attempt),
                None => format!("{} {ended}", t.attempt),
            }
        })
        .collect();
    if row.tries_omitted > 0 {
        parts.insert(0, format!("({} earlier)", row.tries_omitted));
    }
    parts.join(", ")
}

fn head(out: &mut String, r: &Report) {
    let _ = writeln!(out, "# Report of session {}\n", r.session);
    if let Some(note) = &r.note {
        let at = r.computed_at.as_deref().unwrap_or("-");
        let _ = writeln!(out, "> **{note}** (computed at {at})\n");
    }
    let t = &r.totals;
    let _ = writeln!(out, "- state: **{}**", r.state.as_str());
    let active = match (r.duration_ms, r.active_ms) {
        (Some(d), Some(a)) if a < d => {
            format!("; {} of it with an orchestrator running", duration(a))
        }
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "- started {}, ended {} ({}{active})",
        r.started_at.as_deref().unwrap_or("-"),
        r.ended_at.as_deref().unwrap_or("-"),
        opt_duration(r.duration_ms)
    );
    let _ = writeln!(out, "- tasks: {} ({})", t.tasks, states_line(&t.by_state));
    let _ = writeln!(
        out,
        "- attempts: {}; workers: {} ({} started)\n",
        attempts_line(t),
        t.workers,
        t.workers_started
    );
}

fn not_succeeded(out: &mut String, r: &Report) {
    if r.not_succeeded.is_empty() {
        return;
    }
    let _ = writeln!(out, "## What did not succeed\n");
    for row in &r.not_succeeded {
        let mut how = row.task.state.as_str().to_string();
        if row.task.attempt > 0 {
            let _ = write!(
                how,
                ", attempt {} of {}",
                row.task.attempt, row.task.attempts
            );
        }
        if let Some(c) = row.task.exit_code {
            let _ = write!(how, ", exit code {c}");
        }
        if let Some(s) = row.task.signal {
            let _ = write!(how, ", signal {s}");
        }
        let _ = writeln!(out, "### {} ({how})\n", row.task.id);
        if let Some(reason) = &row.task.reason {
            let _ = writeln!(out, "{}\n", cell(reason));
        }
        if row.tries.len() > 1 {
            let _ = writeln!(out, "attempts: {}\n", tries_line(row));
        }
        if let Some(w) = &row.worktree {
            let _ = writeln!(
                out,
                "worktree: branch `{}`, {} files changed\n",
                w.branch,
                w.changed.len() + w.changed_omitted
            );
        }
        if let Some(e) = &row.excerpt {
            let _ = writeln!(out, "last lines of `{}`:\n", e.file);
            fenced(out, &e.lines);
        }
    }
    if r.not_succeeded_omitted > 0 {
        let _ = writeln!(
            out,
            "... and {} more that did not succeed: see `{}`.\n",
            r.not_succeeded_omitted,
            r.rows.as_deref().unwrap_or("report-tasks.jsonl")
        );
    }
}

fn tasks(out: &mut String, r: &Report, table: Option<&[TaskRow]>) {
    let _ = writeln!(out, "## Tasks\n");
    let Some(rows) = table else {
        let _ = match &r.rows {
            Some(f) => writeln!(
                out,
                "{} tasks (more than {TABLE_MAX}): a row for each is in `{f}`; those that \
                 did not succeed are above.\n",
                r.totals.tasks
            ),
            None => writeln!(
                out,
                "{} tasks (more than {TABLE_MAX}): the row of each is written to \
                 `report-tasks.jsonl` when the session ends.\n",
                r.totals.tasks
            ),
        };
        return;
    };
    let _ = writeln!(
        out,
        "| task | state | wave | attempts | worker | exit | ran | note |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for row in rows {
        let exit = match (row.task.exit_code, row.task.signal) {
            (Some(c), _) => c.to_string(),
            (None, Some(s)) => format!("signal {s}"),
            _ => "-".into(),
        };
        let mut note = row.task.reason.as_deref().map(cell).unwrap_or_default();
        if row.tries.len() > 1 {
            let sep = if note.is_empty() { "" } else { "; " };
            let _ = write!(note, "{sep}attempts: {}", cell(&tries_line(row)));
        }
        if let Some(w) = &row.worktree {
            let files = w.changed.len() + w.changed_omitted;
            let sep = if note.is_empty() { "" } else { "; " };
            let _ = write!(note, "{sep}branch `{}`, {files} files changed", w.branch);
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {exit} | {} | {note} |",
            row.task.id,
            row.task.state.as_str(),
            row.wave,
            row.task.attempts,
            row.task.worker.as_deref().unwrap_or("-"),
            opt_duration(row.task.duration_ms),
        );
    }
    out.push('\n');
}

fn waves(out: &mut String, r: &Report) {
    if r.waves.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "## Waves\n\n| wave | tasks | states | wall time |\n| --- | --- | --- | --- |"
    );
    for w in &r.waves {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            w.wave,
            w.tasks,
            states_line(&w.by_state),
            opt_duration(w.wall_ms)
        );
    }
    if r.waves_omitted > 0 {
        let _ = writeln!(out, "\n... and {} more waves.", r.waves_omitted);
    }
    out.push('\n');
}

fn critical_path(out: &mut String, r: &Report) {
    let cp = &r.critical_path;
    if cp.length == 0 {
        return;
    }
    let _ = writeln!(
        out,
        "## Critical path (as it ran)\n\n{} tasks, {} from the first one's start to the last \
         one's end:\n",
        cp.length,
        opt_duration(cp.duration_ms)
    );
    let chain: Vec<String> = cp
        .steps
        .iter()
        .map(|s| format!("{} ({})", s.task, duration(s.duration_ms)))
        .collect();
    let _ = writeln!(out, "{}\n", chain.join(" -> "));
    let _ = writeln!(out, "| task | ran | waited before |\n| --- | --- | --- |");
    for s in &cp.steps {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            s.task,
            duration(s.duration_ms),
            duration(s.waited_ms)
        );
    }
    if cp.omitted > 0 {
        let _ = writeln!(out, "\n({} shorter steps not listed.)", cp.omitted);
    }
    out.push('\n');
}

fn resources(out: &mut String, r: &Report) {
    if r.resources.is_empty() && r.memory.is_none() {
        return;
    }
    let _ = writeln!(
        out,
        "## Resources\n\n| pool | peak | limit | first reached |\n| --- | --- | --- | --- |"
    );
    for p in r.resources.iter().chain(&r.memory) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            p.pool,
            p.peak,
            p.max,
            p.peak_at.as_deref().unwrap_or("-")
        );
    }
    out.push('\n');
}

fn number(v: Option<&Value>) -> String {
    v.map_or_else(|| "-".into(), Value::to_string)
}

fn results(out: &mut String, r: &Report) {
    if !r.metrics_spent.is_empty() || !r.metrics.is_empty() {
        let _ = writeln!(
            out,
            "## Metrics\n\nSummed over the results of the tasks that succeeded (accepted), and \
             over every attempt's (spent).\n\n| metric | accepted | spent |\n| --- | --- | --- |"
        );
        for k in r.metrics_spent.keys() {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                cell(k),
                number(r.metrics.get(k)),
                number(r.metrics_spent.get(k))
            );
        }
        out.push('\n');
    }
    if !r.ignored.is_empty() {
        let _ = writeln!(out, "Ignored entries of results:\n");
        for i in &r.ignored {
            let _ = writeln!(
                out,
                "- {} (attempt {}): `{}` = `{}`: {}",
                i.task,
                i.attempt,
                cell(&i.what),
                cell(&i.value),
                i.why
            );
        }
        if r.ignored_omitted > 0 {
            let _ = writeln!(out, "- ... and {} more", r.ignored_omitted);
        }
        out.push('\n');
    }
    if !r.insights.is_empty() {
        let _ = writeln!(out, "## Insights\n");
        for i in &r.insights {
            let more = i.reported_by - i.tasks.len();
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            let _ = writeln!(out, "- {} ({}{more})", cell(&i.insight), i.tasks.join(", "));
        }
        if r.insights_omitted > 0 {
            let _ = writeln!(out, "- ... and {} more not listed", r.insights_omitted);
        }
        out.push('\n');
    }
    if !r.decisions.is_empty() || !r.decision_conflicts.is_empty() {
        let _ = writeln!(out, "## Decisions\n");
        if !r.decisions.is_empty() {
            let _ = writeln!(out, "| decision | value |\n| --- | --- |");
            for (k, v) in &r.decisions {
                let _ = writeln!(out, "| {} | `{}` |", cell(k), cell(&v.to_string()));
            }
            out.push('\n');
        }
        for c in &r.decision_conflicts {
            let values: Vec<String> = c
                .values
                .iter()
                .map(|v| format!("{} = `{}`", v.task, cell(&v.value.to_string())))
                .collect();
            let more = if c.omitted > 0 {
                format!(" (and {} more)", c.omitted)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "- **conflict** on `{}`: {}{more}",
                cell(&c.key),
                values.join(", ")
            );
        }
        out.push('\n');
    }
}

fn problems(out: &mut String, r: &Report) {
    if r.problems.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Files that could not be read\n");
    for p in &r.problems {
        let _ = writeln!(out, "- {}", cell(p));
    }
    if r.problems_omitted > 0 {
        let _ = writeln!(out, "- ... and {} more", r.problems_omitted);
    }
    out.push('\n');
}

/// The whole of `report.md`.
pub fn render(b: &Built) -> String {
    let r = &b.report;
    let mut out = String::new();
    head(&mut out, r);
    not_succeeded(&mut out, r);
    tasks(&mut out, r, b.table.as_deref());
    waves(&mut out, r);
    critical_path(&mut out, r);
    resources(&mut out, r);
    results(&mut out, r);
    problems(&mut out, r);
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(12_345), "12.3s");
        assert_eq!(duration(245_000), "4m05s");
        assert_eq!(duration(7_380_000), "2h03m");
    }

    #[test]
    fn a_fence_is_longer_than_any_backtick_run_in_what_it_holds() {
        let mut out = String::new();
        fenced(&mut out, &["a ```` b".to_string(), "c".into()]);
        assert!(out.starts_with("`````text\n"), "{out}");
        assert!(out.ends_with("\n`````\n\n"), "{out}");
        assert_eq!(cell("a|b\nc"), "a\\|b c");
    }
}
