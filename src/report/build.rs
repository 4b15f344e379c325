//! Building a report from a [`Source`]: one pass over the journal (the [`Timeline`]),
//! then one over the plan's tasks in order, each task's row written as soon as it is
//! made and dropped, then what needs every task (waves, the critical path, the pools).
//! What it keeps of each task is a few numbers, so a 100 000-task session's report holds
//! no row of text per task in memory.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::aggregate::Aggregate;
use super::model::{Peak, Report, TaskRow, Totals, Try, WorktreeBrief};
use super::path;
use super::source::Source;
use super::time_text;
use super::timeline::{PoolUse, Timeline};
use crate::error::Result;
use crate::journal::{EndReason, TaskHistory};
use crate::plan::Plan;
use crate::proto::{
    NOT_SUCCEEDED_MAX, Outcome, REASON_MAX, SessionState, Summary, SummaryRow, TaskState,
};
use crate::summary::cut_text;

/// Sessions with at most this many tasks get a table of every task in `report.md`.
pub const TABLE_MAX: usize = 200;
/// The most waves and critical-path steps listed.
pub const WAVES_MAX: usize = 1000;
pub const PATH_MAX: usize = 1000;
/// The most attempts a row lists (the latest), and the longest retry reason kept.
pub const TRIES_MAX: usize = 20;
pub const TRY_REASON_MAX: usize = 256;
/// The most changed files a row lists, and the most bytes of their names.
pub const CHANGED_MAX: usize = 50;
pub const CHANGED_BYTES_MAX: usize = 4096;
/// The most unreadable files listed, and the longest message kept.
pub const PROBLEMS_MAX: usize = 100;
pub const PROBLEM_MAX: usize = 1024;

/// How the session stands for this report.
#[derive(Debug, Clone)]
pub enum Ending {
    /// The orchestrator is ending the session now, in this state.
    Final { state: SessionState, ended_ms: u64 },
    /// Read from the files as they are (`orchestrator report`): whether an orchestrator
    /// holds the session, its summary if it ended, and the time now.
    Observed {
        orchestrator_alive: bool,
        summary: Option<Summary>,
        now_ms: u64,
    },
}

/// Where the rows go as they are made.
pub trait RowSink {
    fn row(&mut self, row: &TaskRow) -> Result<()>;
}

impl RowSink for crate::fsio::AtomicWriter {
    fn row(&mut self, row: &TaskRow) -> Result<()> {
        self.write_json_line(row)
    }
}

/// Rows of a report whose rows file is not written (a session that has not ended).
pub struct NoRows;

impl RowSink for NoRows {
    fn row(&mut self, _: &TaskRow) -> Result<()> {
        Ok(())
    }
}

/// A built report, with every task's row when there are at most [`TABLE_MAX`] (for the
/// table of `report.md`).
#[derive(Debug)]
pub struct Built {
    pub report: Report,
    pub table: Option<Vec<TaskRow>>,
}

/// A bounded list of messages about files that could not be read.
#[derive(Default)]
struct Problems {
    list: Vec<String>,
    omitted: usize,
}

impl Problems {
    fn push(&mut self, msg: String) {
        if self.list.len() < PROBLEMS_MAX {
            self.list.push(cut_text(msg, PROBLEM_MAX));
        } else {
            self.omitted += 1;
        }
    }

    fn keep<T>(&mut self, r: Result<Option<T>>) -> Option<T> {
        r.unwrap_or_else(|e| {
            self.push(e.to_string());
            None
        })
    }
}

/// What the pass over the tasks keeps of each (by plan index) and of all.
#[derive(Default)]
struct Pass {
    states: Vec<TaskState>,
    totals: Totals,
    workers: HashSet<String>,
    not_succeeded: Vec<TaskRow>,
    not_succeeded_omitted: usize,
    table: Option<Vec<TaskRow>>,
    problems: Problems,
    aggregate: Aggregate,
}

/// The state of a task with no outcome, from the journal: running while the attempt
/// holding its fence has started, retrying while a retry is scheduled.
fn undecided(h: Option<&TaskHistory>, times: &super::timeline::TaskTimes) -> TaskState {
    let Some(h) = h else {
        return TaskState::Pending;
    };
    if let Some(s) = h.decided {
        return s;
    }
    let started = |n: u32| times.attempt(n).is_some_and(|a| a.started);
    match (&h.fence, h.retry_at_unix_ms) {
        (Some((n, _)), _) if started(*n) => TaskState::Running,
        (None, Some(_)) => TaskState::Retrying,
        _ => TaskState::Pending,
    }
}

fn peak(p: &PoolUse) -> Peak {
    Peak {
        pool: p.name.clone(),
        peak: p.peak,
        max: p.max,
        peak_at: p.peak_ms.map(time_text),
    }
}

/// Build the report of the session `session` (its id), whose plan is `plan`, from `src`;
/// every row goes to `rows` in plan order, and `rows_name` is what the report calls the
/// rows file (none: not written).
pub fn build(
    plan: &Plan,
    session: &str,
    src: &dyn Source,
    ending: Ending,
    rows: &mut dyn RowSink,
    rows_name: Option<String>,
) -> Result<Built> {
    let index: HashMap<&str, usize> = plan
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    let mut tl = Timeline::new(plan);
    src.journal(&mut |ts, ev| tl.apply(&index, ts, ev))?;
    let plan_waves = plan.waves();
    let mut wave_of = vec![0usize; plan.tasks.len()];
    for (k, w) in plan_waves.iter().enumerate() {
        for &t in w {
            wave_of[t] = k + 1;
        }
    }
    let mut pass = Pass {
        table: (plan.tasks.len() <= TABLE_MAX).then(Vec::new),
        ..Default::default()
    };
    for (t, &wave) in wave_of.iter().enumerate() {
        let row = task_row(plan, t, wave, src, &tl, &mut pass)?;
        rows.row(&row)?;
        let state = row.task.state;
        pass.states.push(state);
        pass.totals.tasks += 1;
        *pass.totals.by_state.entry(state).or_insert(0) += 1;
        if let Some(table) = pass.table.as_mut() {
            table.push(row.clone());
        }
        if state != TaskState::Succeeded && state.is_terminal() {
            if pass.not_succeeded.len() < NOT_SUCCEEDED_MAX {
                pass.not_succeeded.push(row);
            } else {
                pass.not_succeeded_omitted += 1;
            }
        }
    }
    let (state, finished, ended_ms, note, computed_at) = standing(session, &ending, &tl);
    let spans: Vec<Option<(u64, u64)>> = tl.tasks.iter().map(|t| t.span()).collect();
    let times: Vec<(Option<u64>, Option<u64>)> = tl
        .tasks
        .iter()
        .map(|t| (t.start_ms, t.start_ms.and(t.end_ms)))
        .collect();
    let mut waves = path::waves(&plan_waves, &pass.states, &times);
    let waves_omitted = waves.len().saturating_sub(WAVES_MAX);
    waves.truncate(WAVES_MAX);
    let ids: Vec<&str> = plan.tasks.iter().map(|t| t.id.as_str()).collect();
    let cp = path::critical_path(&spans, &plan.dep_indices());
    let critical_path = path::path_steps(&cp, &spans, &ids, tl.started_ms, PATH_MAX);
    let mut totals = pass.totals;
    totals.workers = pass.workers.len();
    totals.workers_started = tl.history.workers.len();
    let agg = pass.aggregate.finish();
    let end_or_now = ended_ms.or(match ending {
        Ending::Observed { now_ms, .. } => Some(now_ms),
        Ending::Final { .. } => None,
    });
    let report = Report {
        session: session.to_string(),
        finished,
        state,
        note,
        computed_at,
        started_at: tl.started_ms.map(time_text),
        ended_at: ended_ms.map(time_text),
        duration_ms: tl
            .started_ms
            .zip(end_or_now)
            .map(|(s, e)| e.saturating_sub(s)),
        active_ms: tl
            .started_ms
            .zip(end_or_now)
            .map(|(s, e)| e.saturating_sub(s).saturating_sub(tl.paused_ms)),
        totals,
        waves,
        waves_omitted,
        critical_path,
        resources: tl.pools.iter().map(peak).collect(),
        memory: tl.memory.as_ref().map(peak),
        metrics: agg.metrics,
        metrics_spent: agg.metrics_spent,
        ignored: agg.ignored,
        ignored_omitted: agg.ignored_omitted,
        insights: agg.insights,
        insights_omitted: agg.insights_omitted,
        decisions: agg.decisions,
        decision_conflicts: agg.decision_conflicts,
        decisions_omitted: agg.decisions_omitted,
        problems: pass.problems.list,
        problems_omitted: pass.problems.omitted,
        not_succeeded: pass.not_succeeded,
        not_succeeded_omitted: pass.not_succeeded_omitted,
        rows: rows_name,
    };
    Ok(Built {
        report,
        table: pass.table,
    })
}

/// The session's state, whether it ended, when, and what to say when it has not.
fn standing(
    session: &str,
    ending: &Ending,
    tl: &Timeline,
) -> (
    SessionState,
    bool,
    Option<u64>,
    Option<String>,
    Option<String>,
) {
    match ending {
        Ending::Final { state, ended_ms } => (*state, true, Some(*ended_ms), None, None),
        Ending::Observed {
            orchestrator_alive,
            summary,
            now_ms,
        } => {
            let summary_state = summary.as_ref().map(|s| s.state);
            let state =
                crate::status::session_state(summary_state, *orchestrator_alive, tl.history.state);
            // A summary is written only at the end, in the state the session ended in;
            // status says otherwise while the session is rolled back after it. Without
            // one that can be read, the journal's `session_finished` says it ended.
            let ended = match summary_state {
                Some(s) => s == state,
                None => {
                    !orchestrator_alive && tl.history.finished && tl.history.ended == Some(state)
                }
            };
            if ended {
                let ended_ms = summary
                    .as_ref()
                    .and_then(|s| super::parse_time(&s.ended_at))
                    .or(tl.finished_ms);
                return (state, true, ended_ms, None, None);
            }
            let why = if *orchestrator_alive {
                format!(
                    "the session is {}: its orchestrator still runs it",
                    state.as_str()
                )
            } else {
                format!(
                    "the session is {}: its orchestrator is gone before the end \
                     (`orchestrator resume {session}` finishes it)",
                    state.as_str()
                )
            };
            let note = format!(
                "NOT FINISHED: {why}; this report was computed from its files as they \
                 were, and its rows file is written when the session ends"
            );
            (state, false, None, Some(note), Some(time_text(*now_ms)))
        }
    }
}

/// Task `t`'s row; what the totals and the aggregation need of it goes into `pass`.
fn task_row(
    plan: &Plan,
    t: usize,
    wave: usize,
    src: &dyn Source,
    tl: &Timeline,
    pass: &mut Pass,
) -> Result<TaskRow> {
    let spec = &plan.tasks[t];
    let id = spec.id.as_str();
    let h = tl.history.tasks.get(id);
    let times = &tl.tasks[t];
    let outcome: Option<Outcome> = pass.problems.keep(src.outcome(id));
    let state = outcome
        .as_ref()
        .map_or_else(|| undecided(h, times), |o| o.state);
    let history_attempts: &[crate::journal::AttemptHistory] =
        h.map_or(&[], |h| h.attempts.as_slice());
    // The attempt that decided it: the outcome's, or, when the outcome cannot be read,
    // the last one the journal knows of a decided task.
    let deciding = match (&outcome, h) {
        (Some(o), _) => o.attempt,
        (None, Some(h)) if h.decided.is_some() => h.last_attempt,
        _ => 0,
    };
    let attempts = (history_attempts.len() as u32).max(deciding);
    pass.totals.attempts += u64::from(attempts);
    pass.totals.retries += u64::from(attempts.saturating_sub(1));
    let mut tries = Vec::with_capacity(history_attempts.len());
    for a in history_attempts {
        let at = times.attempt(a.attempt);
        if matches!(a.ended, Some(EndReason::WorkerLost | EndReason::Reassigned)) {
            pass.totals.reassignments += 1;
        }
        if let Some(w) = &a.worker
            && at.is_some_and(|x| x.started)
            && !pass.workers.contains(w)
        {
            pass.workers.insert(w.clone());
        }
        tries.push(Try {
            attempt: a.attempt,
            worker: a.worker.clone(),
            ended: a.ended,
            reason: at
                .and_then(|x| x.reason.clone())
                .map(|r| cut_text(r, TRY_REASON_MAX)),
            duration_ms: at
                .and_then(|x| x.start_ms.zip(x.end_ms))
                .map(|(s, e)| e.saturating_sub(s)),
            stale: a.stale,
        });
    }
    aggregate_results(id, &outcome, deciding, history_attempts, times, src, pass);
    let tries_omitted = tries.len().saturating_sub(TRIES_MAX);
    tries.drain(..tries_omitted);
    let excerpt = if state == TaskState::Failed && deciding > 0 {
        pass.problems.keep(src.excerpt(id, deciding))
    } else {
        None
    };
    let worktree = if spec.worktree {
        pass.problems.keep(src.worktree(id)).map(|w| {
            let (changed, left) = some_names(w.changed);
            WorktreeBrief {
                branch: w.branch,
                changed,
                changed_omitted: left + w.omitted,
                outside_owns: some_names(w.outside_owns).0,
            }
        })
    } else {
        None
    };
    let o = outcome.as_ref();
    let task = SummaryRow {
        id: id.to_string(),
        state,
        attempt: deciding,
        attempts,
        worker: o.and_then(|o| o.worker.clone()),
        exit_code: o.and_then(|o| o.exit_code),
        signal: o.and_then(|o| o.signal),
        duration_ms: o.and_then(|o| o.duration_ms),
        reason: o
            .and_then(|o| o.reason.clone())
            .map(|r| cut_text(r, REASON_MAX)),
        result: o
            .filter(|o| o.result.is_some())
            .map(|o| src.result_file(id, o.attempt)),
    };
    Ok(TaskRow {
        task,
        wave,
        started_at: times.start_ms.map(time_text),
        ended_at: times.end_ms.filter(|_| state.is_terminal()).map(time_text),
        tries,
        tries_omitted,
        excerpt,
        worktree,
    })
}

/// The first of `names` that fit in [`CHANGED_MAX`] names and [`CHANGED_BYTES_MAX`]
/// bytes, and how many were left out.
fn some_names(names: Vec<String>) -> (Vec<String>, usize) {
    let total = names.len();
    let mut bytes = 0;
    let kept: Vec<String> = names
        .into_iter()
        .take(CHANGED_MAX)
        .take_while(|n| {
            bytes += n.len();
            bytes <= CHANGED_BYTES_MAX
        })
        .collect();
    let left = total - kept.len();
    (kept, left)
}

/// Feed every result the task's attempts left to the aggregation: the accepted one from
/// its outcome, the others from their files (only attempts that started can have one).
fn aggregate_results(
    id: &str,
    outcome: &Option<Outcome>,
    deciding: u32,
    attempts: &[crate::journal::AttemptHistory],
    times: &super::timeline::TaskTimes,
    src: &dyn Source,
    pass: &mut Pass,
) {
    let mut numbers: Vec<u32> = attempts
        .iter()
        .map(|a| a.attempt)
        .filter(|&n| times.attempt(n).is_some_and(|a| a.started))
        .collect();
    if deciding > 0 && !numbers.contains(&deciding) {
        numbers.push(deciding);
    }
    for n in numbers {
        if let Some(o) = outcome.as_ref().filter(|o| o.attempt == n) {
            if let Some(r) = &o.result {
                pass.aggregate
                    .add(id, n, r, o.state == TaskState::Succeeded);
            }
            continue;
        }
        match src.result(id, n) {
            Ok(Some(r)) => pass.aggregate.add(id, n, &r, false),
            Ok(None) => {}
            Err(e) => pass.problems.push(e),
        }
    }
}

/// Tasks by state, as a line: `2 succeeded, 1 failed`.
pub fn states_line(by_state: &BTreeMap<TaskState, usize>) -> String {
    let parts: Vec<String> = by_state
        .iter()
        .map(|(s, n)| format!("{n} {}", s.as_str()))
        .collect();
    parts.join(", ")
}
