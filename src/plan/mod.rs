//! Plans: what a session is asked to run. A plan file (TOML, or JSON when its name ends in
//! `.json`) is parsed and validated into a normalised [`Plan`] before anything else sees
//! it, so that every other module handles only valid plans, and a bad plan is refused, with
//! file, line, column and reason, before any directory is made. A `Plan` serialised is
//! `plan.json` in the session directory: its JSON shape is part of the on-disk protocol.
//!
//! The way through this module: `raw` parses the text into structs that mirror the file,
//! `matrix` expands task templates (a task with a `matrix`) into the tasks they stand
//! for, `validate` checks them and fills in defaults, `locate` finds the line and column of
//! a refused value, and `error` says what was wrong. `graph` holds the dependency
//! graph and what is drawn from it; `describe` prints a plan for `orchestrator plan` and
//! `orchestrator run --dry-run`;
//! `scopes` is the language of `owns` patterns and the exact test of their overlap;
//! `select` is which tasks a partial run (`--only`, `--skip`) leaves out.

mod describe;
pub mod env_file;
mod error;
mod graph;
mod locate;
mod locate_json;
mod matrix;
mod raw;
pub mod scopes;
mod select;
#[cfg(test)]
mod test_util;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::scheduler::Backoff;

pub use describe::RunSettings;
pub use error::{DurationKey, FirstDefined, Location, PlanError, PlanErrorKind, Scope};
pub use graph::{Graph, NodeId, NodeKind, waves_of};
pub use matrix::MAX_MATRIX_TASKS;
pub use select::Exclusion;
pub use validate::{show_size, show_size_rounded};

/// How a task is started: a shell string run by `sh -c`, or an argv without a shell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskCommand {
    Shell(String),
    Argv(Vec<String>),
}

/// One validated task. Defaults from `[defaults]` are already applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub command: TaskCommand,
    /// Ids of the tasks (or races) this one runs after (all must succeed).
    pub after: Vec<String>,
    /// Signals (`after = ["signal:NAME"]`) that must be raised before it starts.
    #[serde(default)]
    pub after_signals: Vec<String>,
    /// Deadlock victims are chosen lowest priority first.
    #[serde(default)]
    pub priority: i64,
    /// Completion markers written into `markers/` when the task succeeds.
    #[serde(default)]
    pub marks: Vec<String>,
    /// Paths the task will write (`owns`), relative to the plan's directory, as written:
    /// patterns of [`scopes::Pattern`]. No two tasks that may run at the same time own
    /// overlapping ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owns: Vec<String>,
    /// Absolute working directory.
    pub cwd: PathBuf,
    pub env: BTreeMap<String, String>,
    /// Variables the task takes from the caller's environment: secrets, so only their
    /// names are ever written (the worker passes the values on from its own environment).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from_parent: Vec<String>,
    /// A file of `KEY=VALUE` lines the worker reads at each attempt's start (absolute):
    /// secrets, so only the path is ever written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_file: Option<PathBuf>,
    pub timeout_ms: Option<u64>,
    pub retries: u32,
    /// Wait between retries.
    pub backoff: Backoff,
    /// How many lost workers this task may outlive before it fails.
    pub max_reassign: u32,
    /// SIGTERM → SIGKILL delay when the task is stopped (timeout, cancel, reassign).
    pub kill_grace_ms: u64,
    /// Tokens the task holds from each pool of [`Plan::resources`] while an attempt of
    /// it is assigned or running (every count at least 1, at most the pool's `max`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resources: BTreeMap<String, u64>,
    /// What the task's final failure does to the session (the plan's when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<OnFailure>,
    /// Bytes of memory the task claims from `[limits] memory` while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// Run (by `sh -c`, in the task's `cwd` and environment) after each attempt that
    /// ran, whatever its outcome: an auxiliary attempt on the cleanup pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup: Option<String>,
    /// How long after the attempt's end its cleanup starts.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cleanup_delay_ms: u64,
    /// A cleanup running longer is stopped (and reported failed).
    #[serde(
        default = "default_cleanup_timeout",
        skip_serializing_if = "is_default_cleanup_timeout"
    )]
    pub cleanup_timeout_ms: u64,
    /// Undoes a succeeded task (`orchestrator rollback`), in reverse order of completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<String>,
    /// Run when a failure freezes the session (`on_failure = "freeze"`) while this task
    /// was running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency: Option<String>,
    /// An AI agent: its state (working, waiting for a person, idle) comes from its own
    /// reports (`worker hook`, `worker state`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentKind>,
    /// Run (by `sh -c`) when the task's agent starts waiting for a person, with
    /// `MAESTRO_TASK` and `MAESTRO_AGENT_MESSAGE` set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<String>,
    /// When the worker ends an agent task's attempt by itself, as a success (`end_on =
    /// "idle"`: once its agent went idle after working).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_on: Option<EndOn>,
    /// Run in a git worktree of its own (`worktrees/<id>/` in the session), on the branch
    /// `maestro/<session>/<id>` made from the repository's HEAD when the session started;
    /// the main checkout is never touched (see `crate::worktree`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub worktree: bool,
    /// Under a terminal launcher, run on a pty a person can type into (`interactive =
    /// false` opts out).
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub interactive: bool,
    /// The file a task that is not on a pty reads as its stdin (absolute; none:
    /// /dev/null).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<PathBuf>,
}

fn yes() -> bool {
    true
}

fn is_yes(b: &bool) -> bool {
    *b
}

/// What kind of agent a task runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgentKind {
    /// Claude Code: maestro passes it the hook settings (`claude --settings FILE`).
    ClaudeCode,
    /// Any other agent or script: it reports with `worker state`.
    Generic,
}

/// What ends an agent task's attempt, as a success, while its process still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndOn {
    /// Its agent reports `idle` after having reported `working` (done with its turn).
    Idle,
}

impl EndOn {
    /// As a plan writes it.
    pub fn parse(s: &str) -> Option<EndOn> {
        match s {
            "idle" => Some(EndOn::Idle),
            _ => None,
        }
    }
}

/// The default `kill_grace`.
pub const KILL_GRACE_MS: u64 = 5_000;

/// The default `cleanup_timeout`.
pub const CLEANUP_TIMEOUT_MS: u64 = 30_000;

fn default_cleanup_timeout() -> u64 {
    CLEANUP_TIMEOUT_MS
}

fn is_default_cleanup_timeout(ms: &u64) -> bool {
    *ms == CLEANUP_TIMEOUT_MS
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

/// What a task's final failure (after its retries) does to the session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Its dependents are skipped; everything else runs.
    #[default]
    Continue,
    /// No new starts; running attempts finish; the session ends failed.
    Stop,
    /// Every running attempt is stopped where it is (SIGSTOP), the `emergency` commands
    /// of the tasks that were running run, `snapshot/` is written, and the session waits
    /// for a person: thaw, rollback or cancel.
    Freeze,
}

impl OnFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::Continue => "continue",
            OnFailure::Stop => "stop",
            OnFailure::Freeze => "freeze",
        }
    }
}

impl Task {
    /// The names of the task's secret variables and where each comes from, values
    /// redacted (`PGPASSWORD=<from the caller>, TOKEN=<from /p/secret.env>`); none when
    /// it has none.
    pub fn secrets(&self) -> Option<String> {
        secrets_of(&self.env_from_parent, self.env_file.as_deref())
    }
}

/// [`Task::secrets`] from the two fields it reads (the session model reads only these of
/// a task's in `plan.json`).
pub fn secrets_of(env_from_parent: &[String], env_file: Option<&Path>) -> Option<String> {
    let mut parts: Vec<String> = env_from_parent
        .iter()
        .map(|n| format!("{n}=<from the caller>"))
        .collect();
    if let Some(f) = env_file {
        match env_file::read(f) {
            Ok(kv) => parts.extend(
                kv.iter()
                    .map(|(k, _)| format!("{k}=<from {}>", f.display())),
            ),
            Err(e) => parts.push(format!("<{e}>")),
        }
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

impl Plan {
    /// Every `env_from_parent` name must be set where the session starts (the workers
    /// take the values from there): the first that is not, as a message for people.
    pub fn check_parent_env(&self, is_set: impl Fn(&str) -> bool) -> Result<(), String> {
        for t in &self.tasks {
            if let Some(n) = t.env_from_parent.iter().find(|n| !is_set(n)) {
                return Err(format!(
                    "task {:?}: env_from_parent: {n} is not set in this environment \
                     (export it, then run again)",
                    t.id
                ));
            }
        }
        Ok(())
    }
}

/// A validated, normalised plan: what `plan.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub name: String,
    pub workers: usize,
    /// Keep every tmux window open after its worker exits (plan key `keep_windows`).
    pub keep_windows: bool,
    /// A worker whose heartbeat has not moved for this long is lost.
    pub lease_ms: u64,
    pub tasks: Vec<Task>,
    /// Barriers with a fixed set of participants (`[[checkpoint]]`).
    #[serde(default)]
    pub checkpoints: Vec<Checkpoint>,
    /// Lock hierarchy, highest first (`[locks] order = [...]`).
    #[serde(default)]
    pub lock_order: Vec<String>,
    /// Competitive groups (`[[race]]`).
    #[serde(default)]
    pub races: Vec<Race>,
    /// Token pools (`[resources]`), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resources: BTreeMap<String, Pool>,
    /// What a task's final failure does, unless the task says otherwise.
    #[serde(default, skip_serializing_if = "is_continue")]
    pub on_failure: OnFailure,
    /// Approval points (`[[gate]]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<Gate>,
    /// `[limits]`: the memory budget and the free memory new starts need.
    #[serde(default, skip_serializing_if = "Limits::is_none")]
    pub limits: Limits,
    /// Workers that may run auxiliary commands (cleanups, gate checks, emergency and
    /// rollback commands) at once, in addition to `workers` (at least 1).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub cleanup_workers: usize,
}

/// `[limits]`, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// A budget tasks' `memory` claims count against, like a pool's tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// New attempts start only while the machine's available memory is at least this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_free_memory: Option<u64>,
}

impl Limits {
    fn is_none(&self) -> bool {
        *self == Limits::default()
    }
}

/// `[[gate]]`: tasks that name it in `after` (`"gate:ID"`) start once every task of its
/// `after` succeeded, its `run` (if any) exited 0, and a person approved it (`orchestrator
/// approve SESSION ID`) if it asks for approval; a failed check or a rejection is a failure
/// for them. It has `run`, `approve`, or both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gate {
    pub id: String,
    /// Task ids.
    pub after: Vec<String>,
    /// Wait for a person (`orchestrator approve`).
    pub approve: bool,
    /// A validation that must exit 0 (by `sh -c`, in `cwd`), run once the gate's tasks
    /// succeeded, before it asks for approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// The validation is stopped (and fails) after this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Where `run` runs (absolute; only with `run`): where tasks run unless they say
    /// otherwise, `[defaults] cwd` resolved as for a task, else the directory `orchestrator
    /// run` was started in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
}

/// How tasks name gate `id` in `after`.
pub(crate) fn gate_dep_name(id: &str) -> String {
    format!("gate:{id}")
}

impl Gate {
    /// How tasks name it in `after`.
    pub fn dep_name(&self) -> String {
        gate_dep_name(&self.id)
    }
}

fn is_continue(p: &OnFailure) -> bool {
    *p == OnFailure::Continue
}

impl Plan {
    /// Whether some task's failure stops or freezes the session.
    pub fn may_stop(&self) -> bool {
        (0..self.tasks.len()).any(|t| self.on_failure_of(t) != OnFailure::Continue)
    }

    /// What the final failure of task `t` does to the session.
    pub fn on_failure_of(&self, t: usize) -> OnFailure {
        self.tasks[t].on_failure.unwrap_or(self.on_failure)
    }
}

/// A pool of tokens (a database's connections): tasks start only while their claims fit
/// under `max`; crossing `warn` and `critical` is journalled, and at `critical` only tasks
/// that claim nothing from the pool start. `warn <= critical <= max` when given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub max: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical: Option<u64>,
}

/// Where a pool's use stands against its thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Normal,
    Warn,
    Critical,
}

impl Pool {
    /// The level `used` tokens put the pool at.
    pub fn level(&self, used: u64) -> Level {
        if self.critical.is_some_and(|c| used >= c) {
            Level::Critical
        } else if self.warn.is_some_and(|w| used >= w) {
            Level::Warn
        } else {
            Level::Normal
        }
    }

    /// Whether a claim of `want` tokens may start with `used` already held: it fits under
    /// `max`, and the pool is not at `critical`.
    pub fn admits(&self, used: u64, want: u64) -> bool {
        used.saturating_add(want) <= self.max && self.level(used) != Level::Critical
    }
}

/// A barrier: `worker checkpoint NAME` in each of `tasks` blocks until all arrived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub name: String,
    pub tasks: Vec<String>,
}

/// How a race picks its winner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pick {
    /// The first member to succeed wins; the others are stopped.
    First,
    /// Once all finished, the highest `score` (a JSON pointer into the result) wins.
    Best,
}

/// A race: several tasks attempt the same goal; one wins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Race {
    pub id: String,
    pub tasks: Vec<String>,
    pub pick: Pick,
    pub score: Option<String>,
}

/// The largest plan file read, and the largest `plan.json` written (and read back): a
/// plan whose normalised form would not fit is refused when it is loaded.
pub const PLAN_CAP: u64 = 256 * 1024 * 1024;

/// The largest task record (command, cwd, env, ... as pretty JSON): its assignment, a
/// few fields more, stays far under the 16 MiB a worker reads one with. (A command or
/// environment that large could not be started anyway: the kernel refuses arguments of
/// more than 128 KiB each.)
pub const TASK_CAP: u64 = 1024 * 1024;

impl Plan {
    /// Read and validate a plan file (TOML, or JSON when the name ends in `.json`), and
    /// check that every working directory it names exists. Relative `cwd`s resolve
    /// against `base_cwd` (the current directory of `orchestrator run`).
    pub fn load(path: &Path, base_cwd: &Path) -> Result<Plan, PlanError> {
        let file = path.display().to_string();
        let text = read_capped(path).map_err(|kind| PlanError::new(&file, None, kind))?;
        let mut src = locate::Source::new(&file, &text);
        let raw = raw::parse(&src)?;
        let raw = matrix::expand(&mut src, raw)?;
        let defaults_cwd = raw
            .defaults
            .as_ref()
            .and_then(|d| d.cwd.as_ref())
            .map(|c| base_cwd.join(c));
        let plan = validate::validate(&src, raw, base_cwd)?;
        validate::check_dirs(&src, &plan.tasks, defaults_cwd.as_deref())?;
        Ok(plan)
    }

    /// Read and check a file of tasks to add to a live session whose plan is `self`
    /// (`orchestrator add`): every check of [`Plan::load`] runs on the merged plan, with
    /// errors pointing into the file. Returns the new tasks, in file order.
    pub fn load_added(&self, path: &Path, base_cwd: &Path) -> Result<Vec<Task>, PlanError> {
        let file = path.display().to_string();
        let text = read_capped(path).map_err(|kind| PlanError::new(&file, None, kind))?;
        self.added(&file, &text, base_cwd, true)
    }

    /// [`Plan::load_added`] of a text already read (`file` names it in errors and tells
    /// JSON from TOML), working directories checked.
    pub fn load_added_text(
        &self,
        file: &str,
        text: &str,
        base_cwd: &Path,
    ) -> Result<Vec<Task>, PlanError> {
        self.added(file, text, base_cwd, true)
    }

    /// [`Plan::load_added`] of a text, as [`Plan::parse`] is of [`Plan::load`] (no look
    /// at the machine's directories).
    pub fn parse_added(
        &self,
        file: &str,
        text: &str,
        base_cwd: &Path,
    ) -> Result<Vec<Task>, PlanError> {
        self.added(file, text, base_cwd, false)
    }

    /// [`Plan::load_added`] of a text; `dirs`: check that working directories exist.
    fn added(
        &self,
        file: &str,
        text: &str,
        base_cwd: &Path,
        dirs: bool,
    ) -> Result<Vec<Task>, PlanError> {
        let mut src = locate::Source::new(file, text);
        let raw = raw::parse(&src)?;
        let raw = matrix::expand(&mut src, raw)?;
        let defaults_cwd = raw
            .defaults
            .as_ref()
            .and_then(|d| d.cwd.as_ref())
            .map(|c| base_cwd.join(c));
        let tasks = validate::added::validate_added(&src, raw, base_cwd, self)?;
        if dirs {
            validate::check_dirs(&src, &tasks, defaults_cwd.as_deref())?;
        }
        Ok(tasks)
    }

    /// `self` with `tasks` added, checked again without their text: ids, dependencies,
    /// cycles, `owns` and sizes (the orchestrator's look at tasks checked against an older
    /// version of its plan).
    pub fn with_added(&self, tasks: Vec<Task>) -> Result<Plan, PlanError> {
        validate::added::merge_checked(self, tasks)
    }

    /// A session's `plan.json` (`None`: missing), read with the plan cap.
    pub fn read(path: &Path) -> crate::Result<Option<Plan>> {
        crate::fsio::read_json_capped(path, PLAN_CAP)
    }

    /// Validate a plan given as text; `file` names it in errors and tells JSON (a name
    /// ending in `.json`) from TOML.
    pub fn parse(file: &str, text: &str, base_cwd: &Path) -> Result<Plan, PlanError> {
        let mut src = locate::Source::new(file, text);
        let raw = raw::parse(&src)?;
        let raw = matrix::expand(&mut src, raw)?;
        validate::validate(&src, raw, base_cwd)
    }
}

/// A plan file's text, at most [`PLAN_CAP`] bytes.
fn read_capped(path: &Path) -> Result<String, PlanErrorKind> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(PlanErrorKind::Read)?;
    let mut bytes = Vec::new();
    file.take(PLAN_CAP + 1)
        .read_to_end(&mut bytes)
        .map_err(PlanErrorKind::Read)?;
    if bytes.len() as u64 > PLAN_CAP {
        let size = std::fs::metadata(path).map_or(PLAN_CAP + 1, |m| m.len());
        return Err(PlanErrorKind::FileTooLarge {
            size,
            limit: PLAN_CAP,
        });
    }
    String::from_utf8(bytes).map_err(|_| {
        PlanErrorKind::Read(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// Fuzzing light: any text, TOML or JSON, gives a plan or an error, never a panic.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
            let _ = Plan::parse("f.toml", &text, Path::new("/b"));
            let _ = Plan::parse("f.json", &text, Path::new("/b"));
        }

        /// Mutations of a valid plan (a byte replaced, the text cut) never panic either.
        #[test]
        fn mutated_plans_never_panic(pos in 0usize..400, byte in proptest::prelude::any::<u8>(), cut in 0usize..400) {
            let good = "name = \"p\"\nworkers = 2\n[defaults]\ntimeout = \"1s\"\n[[task]]\nid = \"a\"\nrun = \"true\"\n[[task]]\nid = \"b\"\ncmd = [\"x\"]\nafter = [\"a\", \"signal:s\"]\n[[race]]\nid = \"r\"\ntasks = [\"a\", \"b\"]\n";
            let mut bytes = good.as_bytes().to_vec();
            let i = pos % bytes.len();
            bytes[i] = byte;
            bytes.truncate(cut.max(1).min(bytes.len()));
            let text = String::from_utf8_lossy(&bytes);
            let _ = Plan::parse("f.toml", &text, Path::new("/b"));
        }
    }

    /// A plan that gives every field of `plan.json` a value other than its default
    /// somewhere, with a race of each kind: the plan whose `plan.json` the test below pins.
    const FULL_PLAN: &str = r#"name = "shape"
workers = 3
keep_windows = true
lease = "20s"
on_failure = "freeze"
cleanup_workers = 2
[defaults]
retries = 1
env = { A = "1" }
backoff = { initial = "2s", max = "30s", factor = 3, jitter = 0.5 }
[[task]]
id = "a"
run = "echo a"
priority = 5
timeout = "1m"
marks = ["built"]
owns = ["out/**", "db/schema.rb"]
env = { B = "2" }
cleanup = "rm -rf tmp"
cleanup_delay = "2s"
cleanup_timeout = "1m"
rollback = "git revert --no-edit HEAD"
emergency = "pg_ctl stop"
worktree = true
[[task]]
id = "b"
cmd = ["echo", "b"]
after = ["a", "signal:go"]
cwd = "sub"
kill_grace = "1s"
max_reassign = 1
[[task]]
id = "c"
after = ["a"]
run = "true"
[[task]]
after = ["r"]
id = "d"
run = "true"
[[checkpoint]]
name = "cp"
tasks = ["b", "c"]
[locks]
order = ["db", "cache"]
[[race]]
id = "r"
tasks = ["b", "c"]
[[race]]
id = "s"
tasks = ["a", "d"]
pick = "best"
score = "/score"
[[gate]]
id = "g"
after = ["a"]
run = "make check"
timeout = "30s"
"#;

    /// `plan.json` is read back by running sessions (and by `worker`, `status` and the
    /// verbs), so its shape is a protocol: field names, their order, defaults and `null`s
    /// are pinned here byte for byte (compact; the file is the same pretty-printed), a
    /// line per task.
    const FULL_PLAN_JSON: &str = concat!(
        r#"{"name":"shape","workers":3,"keep_windows":true,"lease_ms":20000,"tasks":["#,
        r#"{"id":"a","command":{"shell":"echo a"},"after":[],"after_signals":[],"priority":5,"marks":["built"],"owns":["out/**","db/schema.rb"],"cwd":"/base","env":{"A":"1","B":"2"},"timeout_ms":60000,"retries":1,"backoff":{"initial_ms":2000,"max_ms":30000,"factor":3.0,"jitter":0.5},"max_reassign":3,"kill_grace_ms":5000,"cleanup":"rm -rf tmp","cleanup_delay_ms":2000,"cleanup_timeout_ms":60000,"rollback":"git revert --no-edit HEAD","emergency":"pg_ctl stop","worktree":true},"#,
        r#"{"id":"b","command":{"argv":["echo","b"]},"after":["a"],"after_signals":["go"],"priority":0,"marks":[],"cwd":"/base/sub","env":{"A":"1"},"timeout_ms":null,"retries":1,"backoff":{"initial_ms":2000,"max_ms":30000,"factor":3.0,"jitter":0.5},"max_reassign":1,"kill_grace_ms":1000},"#,
        r#"{"id":"c","command":{"shell":"true"},"after":["a"],"after_signals":[],"priority":0,"marks":[],"cwd":"/base","env":{"A":"1"},"timeout_ms":null,"retries":1,"backoff":{"initial_ms":2000,"max_ms":30000,"factor":3.0,"jitter":0.5},"max_reassign":3,"kill_grace_ms":5000},"#,
        r#"{"id":"d","command":{"shell":"true"},"after":["r"],"after_signals":[],"priority":0,"marks":[],"cwd":"/base","env":{"A":"1"},"timeout_ms":null,"retries":1,"backoff":{"initial_ms":2000,"max_ms":30000,"factor":3.0,"jitter":0.5},"max_reassign":3,"kill_grace_ms":5000}"#,
        r#"],"checkpoints":[{"name":"cp","tasks":["b","c"]}],"lock_order":["db","cache"],"races":[{"id":"r","tasks":["b","c"],"pick":"first","score":null},{"id":"s","tasks":["a","d"],"pick":"best","score":"/score"}],"#,
        r#""on_failure":"freeze","gates":[{"id":"g","after":["a"],"approve":false,"run":"make check","timeout_ms":30000,"cwd":"/base"}],"cleanup_workers":2}"#,
    );

    #[test]
    fn plan_json_keeps_its_shape() {
        let plan = Plan::parse("shape.toml", FULL_PLAN, Path::new("/base")).unwrap();
        assert_eq!(serde_json::to_string(&plan).unwrap(), FULL_PLAN_JSON);
        let back: Plan = serde_json::from_str(FULL_PLAN_JSON).unwrap();
        assert_eq!(back, plan);
    }

    #[test]
    fn plan_json_from_before_signals_marks_and_races_still_loads() {
        // Keys added to plan.json later have serde defaults, so older sessions' files load.
        let old = r#"{"name": "o", "workers": 1, "keep_windows": false, "lease_ms": 10000,
            "tasks": [{"id": "a", "command": {"argv": ["x"]}, "after": [], "cwd": "/",
            "env": {}, "timeout_ms": null, "retries": 0,
            "backoff": {"initial_ms": 1000, "max_ms": 60000, "factor": 2.0, "jitter": 0.1},
            "max_reassign": 3, "kill_grace_ms": 5000}]}"#;
        let p: Plan = serde_json::from_str(old).unwrap();
        let a = &p.tasks[0];
        assert!(a.after_signals.is_empty() && a.marks.is_empty() && a.priority == 0);
        assert!(a.owns.is_empty() && !a.worktree);
        assert!(p.checkpoints.is_empty() && p.lock_order.is_empty() && p.races.is_empty());
    }

    #[test]
    fn load_reads_toml_and_json_files() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base");
        std::fs::create_dir_all(base.join("w")).unwrap();
        let abs = dir.path().join("abs");
        std::fs::create_dir(&abs).unwrap();
        let toml_file = dir.path().join("plan.toml");
        std::fs::write(
            &toml_file,
            "name = \"t\"\n[defaults]\ncwd = \"w\"\n[[task]]\nid = \"a\"\nrun = \"true\"\n",
        )
        .unwrap();
        let p = Plan::load(&toml_file, &base).unwrap();
        assert_eq!(p.name, "t");
        assert_eq!(p.tasks[0].cwd, base.join("w"));

        let json_file = dir.path().join("plan.json");
        std::fs::write(
            &json_file,
            format!(
                r#"{{"name": "j", "workers": 2, "defaults": {{"timeout": "2s", "env": {{"K": "v"}}}},
                "task": [{{"id": "a", "run": "true"}},
                         {{"id": "b", "cmd": ["x", "y"], "after": ["a"], "cwd": "{}"}}]}}"#,
                abs.display()
            ),
        )
        .unwrap();
        let p = Plan::load(&json_file, &base).unwrap();
        assert_eq!((p.name.as_str(), p.workers, p.tasks.len()), ("j", 2, 2));
        assert_eq!(p.tasks[0].timeout_ms, Some(2000));
        assert_eq!(p.tasks[1].env["K"], "v");
        assert_eq!(p.tasks[1].cwd, abs);
        assert_eq!(p.tasks[0].cwd, base);

        // Errors name the file as given.
        std::fs::write(&toml_file, "name = \"t\"\n").unwrap();
        let e = Plan::load(&toml_file, &base).unwrap_err().to_string();
        assert_eq!(e, format!("{}: plan has no tasks", toml_file.display()));
        let missing = dir.path().join("nope.toml");
        assert_eq!(
            Plan::load(&missing, &base).unwrap_err().to_string(),
            format!(
                "{}: cannot read plan: No such file or directory (os error 2)",
                missing.display()
            )
        );
    }

    /// Every working directory is checked where a plan is loaded to run: `defaults.cwd`,
    /// then each task's, relative ones against the base, with the path as resolved.
    #[test]
    fn load_refuses_a_cwd_that_is_missing_or_not_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        std::fs::create_dir(base.join("ok")).unwrap();
        std::fs::write(base.join("file"), "").unwrap();
        let load = |name: &str, text: &str| {
            let f = base.join(name);
            std::fs::write(&f, text).unwrap();
            Plan::load(&f, base).map_err(|e| e.to_string())
        };
        let task = |cwd: &str| format!("[[task]]\nid = \"a\"\nrun = \"t\"\ncwd = \"{cwd}\"\n");
        let f = base.join("p.toml");
        assert!(load("p.toml", &format!("name = \"p\"\n{}", task("ok"))).is_ok());
        assert_eq!(
            load("p.toml", &format!("name = \"p\"\n{}", task("no/such"))),
            Err(format!(
                "{}:5:7: cwd {:?} does not exist",
                f.display(),
                base.join("no/such").display().to_string()
            ))
        );
        assert_eq!(
            load("p.toml", &format!("name = \"p\"\n{}", task("file"))),
            Err(format!(
                "{}:5:7: cwd {:?} is not a directory",
                f.display(),
                base.join("file").display().to_string()
            ))
        );
        // A bad default is reported at `defaults.cwd`, even for tasks that use it.
        let text = "name = \"p\"\n[defaults]\ncwd = \"gone\"\n[[task]]\nid = \"a\"\nrun = \"t\"\n";
        assert_eq!(
            load("p.toml", text),
            Err(format!(
                "{}:3:7: cwd {:?} does not exist",
                f.display(),
                base.join("gone").display().to_string()
            ))
        );
        let j = base.join("p.json");
        let text = "{\"name\": \"p\", \"task\": [{\"id\": \"a\", \"run\": \"t\"},\n {\"id\": \"b\", \"run\": \"t\", \"cwd\": \"/no/such\"}]}";
        assert_eq!(
            load("p.json", text),
            Err(format!(
                "{}:2:33: cwd \"/no/such\" does not exist",
                j.display()
            ))
        );
    }

    /// What maestro writes from a plan fits under what it reads back: a task whose
    /// assignment would be over the cap is refused when the plan is validated.
    #[test]
    fn a_task_too_large_to_assign_is_refused() {
        let big = "x".repeat(TASK_CAP as usize);
        let text = format!("name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"{big}\"\n");
        let e = Plan::parse("p.toml", &text, Path::new("/b"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("p.toml:3:6: task \"a\" is too large (")
                && e.ends_with(&format!(" bytes as JSON; the limit is {TASK_CAP})")),
            "{e}"
        );
    }

    #[test]
    fn shipped_examples_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let demo = Plan::load(&dir.join("demo.toml"), Path::new("/")).unwrap();
        assert_eq!((demo.name.as_str(), demo.workers), ("demo", 3));
        assert_eq!(demo.waves().len(), 4);
        let diamond = Plan::load(&dir.join("diamond.toml"), Path::new("/")).unwrap();
        assert_eq!(diamond.waves(), vec![vec![0], vec![1, 2], vec![3]]);
        let edges = Plan::load(&dir.join("edges.toml"), Path::new("/")).unwrap();
        assert_eq!((edges.races.len(), edges.checkpoints.len()), (1, 1));
    }
}
