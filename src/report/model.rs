//! The report's records: `report.json` ([`Report`]), a row of `report-tasks.jsonl`
//! ([`TaskRow`]) and their parts. Plain serde types, read back by the end of `run` and by
//! tests; docs/PROTOCOL.md describes each field.
//!
//! Every list that grows with the session (tasks that did not succeed, waves, the
//! critical path, insights, decisions, what was ignored) is cut at a fixed length and
//! says how much it left out, so `report.json` stays far under the 16 MiB a session's
//! JSON files are read with however many tasks ran: every task's row is in the rows
//! file, which is written and read a line at a time.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::journal::EndReason;
use crate::proto::{SessionState, SummaryRow, TaskState};

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub session: String,
    /// The session ended (false: it runs, or its orchestrator is gone before the end, and
    /// this report was computed from its files as they are).
    pub finished: bool,
    pub state: SessionState,
    /// Said when the session has not ended: why this report is incomplete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// When a report of a session that has not ended was computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computed_at: Option<String>,
    /// The session's first journal line.
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    /// From start to end (or to `computed_at`), pauses between a crash and its resume
    /// included.
    pub duration_ms: Option<u64>,
    /// Of that, the time an orchestrator ran the session: without the pauses from the
    /// last line before a `resume` (or a `retry` of the ended session) to that resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_ms: Option<u64>,
    pub totals: Totals,
    pub waves: Vec<Wave>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub waves_omitted: usize,
    pub critical_path: CriticalPath,
    /// Each token pool of the plan: the most tokens out at once.
    pub resources: Vec<Peak>,
    /// The `[limits] memory` budget, when the plan has one: the most bytes claimed at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Peak>,
    /// The sums of the `metrics` of the accepted results of the tasks that succeeded.
    pub metrics: BTreeMap<String, Value>,
    /// The sums of the `metrics` of every attempt that left a result: retries, attempts
    /// taken away and race losers included (what was really spent).
    pub metrics_spent: BTreeMap<String, Value>,
    /// Entries of results that are not what the conventions say (a metric that is not a
    /// number, an insight that is not a string, ...), skipped.
    pub ignored: Vec<Ignored>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ignored_omitted: usize,
    /// The `insights` of the accepted results of the tasks that succeeded, each once, in
    /// the order first reported.
    pub insights: Vec<Insight>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub insights_omitted: usize,
    /// The `decisions` of those results whose key every task that reported it agrees on.
    pub decisions: BTreeMap<String, Value>,
    /// Keys reported with different values by different tasks.
    pub decision_conflicts: Vec<DecisionConflict>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub decisions_omitted: usize,
    /// Files that could not be read (an outcome, a result, a log, a worktree record),
    /// each message naming its file: the rest of the report stands.
    pub problems: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub problems_omitted: usize,
    /// The first tasks (plan order) that did not succeed, with their rows.
    pub not_succeeded: Vec<TaskRow>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub not_succeeded_omitted: usize,
    /// The rows file, relative to the session directory (none for a report computed
    /// before the session ended: it is written at the end).
    pub rows: Option<String>,
}

/// What the session did, counted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub tasks: usize,
    /// Tasks by state (final, or where they stand when the session has not ended).
    pub by_state: BTreeMap<TaskState, usize>,
    /// Attempts handed out (an attempt taken back before it ran is not one).
    pub attempts: u64,
    /// Attempts beyond each task's first.
    pub retries: u64,
    /// Attempts that ended because their worker was lost or a person reassigned them.
    pub reassignments: u64,
    /// Workers that ran at least one attempt of a task.
    pub workers: usize,
    /// Workers the session started (auxiliary commands' included).
    pub workers_started: usize,
}

/// One wave of the plan (its tasks' dependency depth) as it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Wave {
    /// From 1.
    pub wave: usize,
    pub tasks: usize,
    pub by_state: BTreeMap<TaskState, usize>,
    /// The first start of one of its tasks.
    pub started_at: Option<String>,
    /// The last end of one of its tasks that ran.
    pub ended_at: Option<String>,
    pub wall_ms: Option<u64>,
}

/// The chain of dependencies whose actual durations decided when the session ended:
/// from the task that ended last, back through the dependency that ended last before it
/// started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CriticalPath {
    /// Tasks on the path.
    pub length: usize,
    /// From the first step's start to the last step's end.
    pub duration_ms: Option<u64>,
    pub steps: Vec<Step>,
    /// Steps not listed (the shortest, when the path is longer than the list).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted: usize,
}

/// A task on the critical path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub task: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    /// From its first attempt's start to its end (retries included).
    pub duration_ms: u64,
    /// Between the previous step's end (the session's start, for the first) and its
    /// start: waiting for a worker, a token, a gate, a resume.
    pub waited_ms: u64,
}

/// The highest use of a pool (or of the memory budget) seen, against its limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Peak {
    pub pool: String,
    pub peak: u64,
    pub max: u64,
    /// When the peak was first reached.
    pub peak_at: Option<String>,
}

/// An entry of a result that the conventions do not take, and was skipped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ignored {
    pub task: String,
    pub attempt: u32,
    /// Where in the result: `metrics.rows`, `insights[2]`, `decisions`.
    pub what: String,
    /// The value, as compact JSON (cut).
    pub value: String,
    /// Why it was skipped: `not a number`, `not a string`, ...
    pub why: String,
}

/// An insight and the tasks that reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Insight {
    pub insight: String,
    /// In the order they were read (plan order), at most a few.
    pub tasks: Vec<String>,
    /// How many tasks reported it.
    pub reported_by: usize,
}

/// A decision key that tasks reported with different values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionConflict {
    pub key: String,
    pub values: Vec<TaskValue>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted: usize,
}

/// What one task decided for a key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskValue {
    pub task: String,
    pub value: Value,
}

/// One task: a line of `report-tasks.jsonl` (and of `not_succeeded`): its summary row
/// (state, deciding attempt, worker, exit code, how long that attempt ran, why it did
/// not succeed, its result file) and what the report adds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRow {
    #[serde(flatten)]
    pub task: SummaryRow,
    /// Its wave, from 1.
    pub wave: usize,
    /// Its first attempt's start, and when it was decided.
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    /// Every attempt and how it ended.
    pub tries: Vec<Try>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tries_omitted: usize,
    /// The last lines of a failed task's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excerpt: Option<Excerpt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worktree: Option<WorktreeBrief>,
}

/// An attempt of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Try {
    pub attempt: u32,
    pub worker: Option<String>,
    /// Why it stopped counting (none: it runs, or waits to start).
    pub ended: Option<EndReason>,
    /// Why a failed attempt was retried (`exited with code 3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// From its start to its end, as the journal saw them.
    pub duration_ms: Option<u64>,
    /// Its exit came after it was superseded, and was refused.
    #[serde(default, skip_serializing_if = "is_false")]
    pub stale: bool,
}

/// The last lines of an attempt's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Excerpt {
    /// The log, relative to the session directory.
    pub file: String,
    pub lines: Vec<String>,
}

/// A task's git worktree: its branch and what it changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorktreeBrief {
    pub branch: String,
    pub changed: Vec<String>,
    /// Changed files not listed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub changed_omitted: usize,
    /// Changed files that no `owns` pattern of the task matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outside_owns: Vec<String>,
}
