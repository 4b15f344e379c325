//! [`PlanError`]: why a plan was refused, as data (which file, where in it, what is wrong)
//! rather than as a preformatted string, so that callers and tests can match on the
//! problem. Its `Display` is the message users see, `file:line:col: reason`, and that text
//! is part of the interface: scripts and tests compare it byte for byte.

use std::fmt;
use std::io;

use crate::names;

/// A position in the plan's text, line and column from 1. A TOML plan's column counts
/// characters; a JSON plan's is serde_json's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub col: usize,
}

/// A refused plan: the file as it was named, where the problem is when that is known, and
/// what it is.
#[derive(Debug, thiserror::Error)]
#[error("{file}{}{kind}", Where { location: *location, kind })]
pub struct PlanError {
    file: String,
    location: Option<Location>,
    /// Boxed because the crate's `Error` carries a `PlanError`: unboxed, the largest kind
    /// would make every `Result` in maestro that large.
    kind: Box<PlanErrorKind>,
}

impl PlanError {
    pub fn new(file: impl Into<String>, location: Option<Location>, kind: PlanErrorKind) -> Self {
        PlanError {
            file: file.into(),
            location,
            kind: Box::new(kind),
        }
    }

    /// The plan file, as it was named to `Plan::load` or `Plan::parse`.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Known for syntax errors, and for semantic ones in TOML plans when the offending
    /// value can be found again in the text.
    pub fn location(&self) -> Option<Location> {
        self.location
    }

    pub fn kind(&self) -> &PlanErrorKind {
        &self.kind
    }
}

/// The `:line:col: ` after the file name; without a location, `: ` and then whatever says
/// where the value is, since the message alone may not (a JSON plan's `task "a": `).
struct Where<'a> {
    location: Option<Location>,
    kind: &'a PlanErrorKind,
}

impl fmt::Display for Where<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some(Location { line, col }) => write!(f, ":{line}:{col}: "),
            None => {
                f.write_str(": ")?;
                self.kind.write_context(f)
            }
        }
    }
}

/// What is wrong with a plan, roughly in the order validation checks for it.
#[derive(Debug, thiserror::Error)]
pub enum PlanErrorKind {
    /// The plan file could not be read.
    #[error("cannot read plan: {0}")]
    Read(io::Error),
    /// Not TOML or JSON, or not a plan's schema (unknown key, wrong type, missing field):
    /// the parser's own message.
    #[error("{0}")]
    Syntax(String),
    /// A name that would become part of a path (plan, task, race, signal ...) is not one
    /// of [`names::RULE`]. `field` says which ("task id", "lock name", ...).
    #[error("invalid {field} {name:?}: {}", names::RULE)]
    BadName {
        field: &'static str,
        name: String,
        scope: Scope,
    },
    #[error("workers must be at least 1")]
    TooFewWorkers { workers: i64 },
    #[error("cleanup_workers must be at least 1")]
    TooFewCleanupWorkers { cleanup_workers: i64 },
    #[error("{}invalid duration {value:?}: {reason}", key.own_label())]
    BadDuration {
        scope: Scope,
        key: DurationKey,
        value: String,
        reason: humantime::DurationError,
    },
    /// A duration that must be more than zero (`timeout`, `lease`: zero would end every
    /// attempt, or lose every worker, at once), or that is negative.
    #[error("{key} must {} (got {value:?})", if *.zero_ok { "not be negative" } else { "be at least 1ms" })]
    DurationOutOfRange {
        scope: Scope,
        key: DurationKey,
        value: String,
        zero_ok: bool,
    },
    #[error("backoff.factor must be at least 1 (got {factor})")]
    BadBackoffFactor { scope: Scope, factor: f64 },
    #[error("backoff.jitter must be between 0 and 1 (got {jitter})")]
    BadBackoffJitter { scope: Scope, jitter: f64 },
    #[error("plan has no tasks")]
    NoTasks,
    #[error("plan has no `name`")]
    NoName,
    /// A file of tasks added to a live session sets what only the session's plan may.
    #[error("`{key}` cannot be added to a running session: {why}")]
    NotAddable {
        key: &'static str,
        why: &'static str,
    },
    /// A task's `matrix` has the wrong shape, or makes too many tasks; `key` is the
    /// parameter when the problem is one parameter's.
    #[error(
        "task {task:?}: matrix{}: {msg}",
        key.as_ref().map(|k| format!(".{k}")).unwrap_or_default()
    )]
    BadMatrix {
        task: String,
        key: Option<String>,
        msg: String,
    },
    /// A placeholder `{name}` in a string of a task template whose matrix has no parameter
    /// `name` (`params`, in the matrix's order).
    #[error(
        "task {task:?}: {{{name}}} is not a parameter of its matrix ({}); \
         write {{{{{name}}}}} to keep the braces",
        params.join(", ")
    )]
    UnknownPlaceholder {
        task: String,
        name: String,
        params: Vec<String>,
    },
    /// Two combinations of a template's matrix give the same task id (each combination
    /// as `name=value ...`).
    #[error(
        "task {task:?}: its matrix gives the id {id:?} to two tasks ({first}; {second}); \
         the id must tell them apart"
    )]
    MatrixIdTwice {
        task: String,
        id: String,
        first: String,
        second: String,
    },
    /// `all` and `orchestrator` address messages, so no task may take them.
    #[error("task id {id:?} is reserved (a message recipient)")]
    ReservedId { id: String },
    #[error("duplicate task id {id:?} (first defined {first})")]
    DuplicateId { id: String, first: FirstDefined },
    #[error("task {task:?} has neither `run` nor `cmd`")]
    NoCommand { task: String },
    #[error("task {task:?} has both `run` and `cmd`")]
    TwoCommands { task: String },
    #[error("task {task:?} has an empty `cmd`")]
    EmptyCmd { task: String },
    /// Races and tasks share one namespace: `after` names either.
    #[error("race id {race:?} is already used by a task or race")]
    RaceIdTaken { race: String },
    #[error("race {race:?} needs at least two tasks")]
    RaceTooSmall { race: String },
    #[error("race {race:?} names unknown task {task:?}")]
    UnknownRaceMember { race: String, task: String },
    #[error("task {task:?} is in two races ({first:?} and {second:?})")]
    TaskInTwoRaces {
        task: String,
        first: String,
        second: String,
    },
    #[error("race {race:?}: pick must be \"first\" or \"best\", not {pick:?}")]
    BadPick { race: String, pick: String },
    #[error("race {race:?}: pick = \"best\" needs score = \"/json/pointer\" into each result")]
    ScoreNeeded { race: String },
    #[error("checkpoint {name:?} is defined twice")]
    DuplicateCheckpoint { name: String },
    #[error("checkpoint {checkpoint:?} names unknown task {task:?}")]
    UnknownCheckpointTask { checkpoint: String, task: String },
    #[error("task {task:?} depends on unknown task {dep:?}")]
    UnknownDependency { task: String, dep: String },
    /// A working directory that is missing or not a directory when the plan is loaded
    /// (`path` as resolved: relative ones against the current directory).
    #[error("cwd {:?} {problem}", path.display().to_string())]
    BadCwd {
        scope: Scope,
        path: std::path::PathBuf,
        problem: String,
    },
    /// The plan file is larger than maestro reads.
    #[error("plan file is too large ({size} bytes; the limit is {limit})")]
    FileTooLarge { size: u64, limit: u64 },
    /// A task's record (what its assignment carries: command, cwd, env) is larger than a
    /// worker reads.
    #[error("task {task:?} is too large ({size} bytes as JSON; the limit is {limit})")]
    TaskTooLarge { task: String, size: u64, limit: u64 },
    /// The normalised plan (`plan.json`) would be larger than maestro reads.
    #[error("plan is too large ({size} bytes as plan.json; the limit is {limit})")]
    PlanTooLarge { size: u64, limit: u64 },
    /// `path` runs from a task through its dependencies back to itself, so the first id is
    /// also the last (`a -> b -> a`).
    #[error("dependency cycle: {}", path.join(" -> "))]
    Cycle { path: Vec<String> },
    /// An `owns` entry outside the pattern language (see `plan::scopes`).
    #[error("invalid owns pattern {pattern:?}: {reason}")]
    BadOwns {
        scope: Scope,
        pattern: String,
        reason: super::scopes::PatternError,
    },
    /// Two tasks that no `after` chain orders (so they may run at the same time) own
    /// patterns that match a common path (`path`, an example).
    #[error(
        "tasks {first:?} and {second:?} may run at the same time and both write {path:?} \
         ({first_pattern:?} in {first:?}, {second_pattern:?} in {second:?}); \
         order them with after, or narrow owns"
    )]
    OwnsOverlap {
        first: String,
        first_pattern: String,
        second: String,
        second_pattern: String,
        path: String,
    },
    /// `env_from_parent` or `env_file` is wrong; the message never quotes a value.
    #[error("{msg}")]
    BadSecret { scope: Scope, msg: String },
    /// A size (`memory = "2GiB"`) is wrong, or a claim does not fit the budget.
    #[error("{key}: {msg}")]
    BadSize {
        scope: Scope,
        key: &'static str,
        msg: String,
    },
    /// A `[[gate]]` is wrong.
    #[error("gate {gate:?}: {msg}")]
    BadGate { gate: String, msg: String },
    /// `on_failure` is not one of the policies.
    #[error(
        "on_failure: {value:?} is not a failure policy (use \"continue\", \"stop\" or \"freeze\")"
    )]
    BadOnFailure { scope: Scope, value: String },
    /// An auxiliary command (`cleanup`, `rollback`, `emergency`) that is empty or only
    /// white space: `sh -c ""` would succeed having done nothing, which hides a mistake.
    #[error("{key}: the command is empty")]
    EmptyCommand { scope: Scope, key: &'static str },
    /// `agent` names no kind of agent maestro knows.
    #[error("agent: {value:?} is not a kind of agent (use \"claude-code\" or \"generic\")")]
    BadAgent { scope: Scope, value: String },
    /// `end_on` names nothing a task can end on. The message names the task itself: the
    /// key belongs to it alone.
    #[error("task {task:?}: end_on: {value:?} is not something a task ends on (use \"idle\")")]
    BadEndOn { task: String, value: String },
    /// `end_on` on a task that is not an agent, which never reports idle.
    #[error(
        "task {task:?}: end_on = {value:?} needs agent = \"claude-code\" or \"generic\" (only an \
         agent reports idle)"
    )]
    EndOnWithoutAgent { task: String, value: String },
    /// A task's own `cleanup_delay` or `cleanup_timeout` without a `cleanup` to time.
    #[error("{key}: the task has no cleanup")]
    NoCleanup { scope: Scope, key: DurationKey },
    /// A pool of `[resources]` is wrong.
    #[error("resources.{pool}: {msg}")]
    BadPool { pool: String, msg: String },
    /// A task's `resources` claim is wrong.
    #[error("task {task:?}: resources.{pool}: {msg}")]
    BadClaim {
        task: String,
        pool: String,
        msg: String,
    },
}

impl PlanErrorKind {
    /// What a message without a line and column puts first to say which value it is about.
    fn write_context(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanErrorKind::BadDuration { scope, key, .. } => {
                write!(f, "{scope}")?;
                // A task's own timeout and kill_grace are not named: the task is, and the
                // message quotes the value. Keys whose message names them need no more.
                let named = !key.named_in_message()
                    && !matches!(
                        (scope, key),
                        (
                            Scope::Task(_),
                            DurationKey::Timeout | DurationKey::KillGrace
                        )
                    );
                if named { write!(f, "{key}: ") } else { Ok(()) }
            }
            PlanErrorKind::BadName { scope, .. }
            | PlanErrorKind::BadSecret { scope, .. }
            | PlanErrorKind::BadOnFailure { scope, .. }
            | PlanErrorKind::EmptyCommand { scope, .. }
            | PlanErrorKind::NoCleanup { scope, .. }
            | PlanErrorKind::BadAgent { scope, .. }
            | PlanErrorKind::BadSize { scope, .. }
            | PlanErrorKind::BadOwns { scope, .. }
            | PlanErrorKind::DurationOutOfRange { scope, .. }
            | PlanErrorKind::BadCwd { scope, .. }
            | PlanErrorKind::BadBackoffFactor { scope, .. }
            | PlanErrorKind::BadBackoffJitter { scope, .. } => write!(f, "{scope}"),
            _ => Ok(()),
        }
    }
}

/// Whose value an error is about, as messages without a location name it: nothing for the
/// plan's own keys, `defaults.` for `[defaults]`, `task "a": ` for a task's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Plan,
    Defaults,
    Task(String),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Plan => Ok(()),
            Scope::Defaults => f.write_str("defaults."),
            Scope::Task(id) => write!(f, "task {id:?}: "),
        }
    }
}

/// A key whose value is a duration (`"30s"`, `"5m"`), as it is spelled in a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationKey {
    Lease,
    Timeout,
    KillGrace,
    BackoffInitial,
    BackoffMax,
    CleanupDelay,
    CleanupTimeout,
}

impl DurationKey {
    /// Whether an invalid value's message names the key even where a line and column say
    /// which value it is. The keys of auxiliary commands do; the older keys' messages stay
    /// as they were (their text is part of the interface), naming the key only without a
    /// location.
    fn named_in_message(self) -> bool {
        matches!(
            self,
            DurationKey::CleanupDelay | DurationKey::CleanupTimeout
        )
    }

    /// `"cleanup_delay: "` for a key [`named_in_message`](Self::named_in_message), else
    /// nothing.
    fn own_label(self) -> String {
        if self.named_in_message() {
            format!("{self}: ")
        } else {
            String::new()
        }
    }
}

impl fmt::Display for DurationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DurationKey::Lease => "lease",
            DurationKey::Timeout => "timeout",
            DurationKey::KillGrace => "kill_grace",
            DurationKey::BackoffInitial => "backoff.initial",
            DurationKey::BackoffMax => "backoff.max",
            DurationKey::CleanupDelay => "cleanup_delay",
            DurationKey::CleanupTimeout => "cleanup_timeout",
        })
    }
}

/// Where a duplicated task id was first seen: a line of a TOML plan, or else the task's
/// position in the list (from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstDefined {
    AtLine(usize),
    AsTask(usize),
    /// By the plan of the session tasks are added to.
    InSession,
}

impl fmt::Display for FirstDefined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FirstDefined::AtLine(line) => write!(f, "at line {line}"),
            FirstDefined::AsTask(n) => write!(f, "as task #{n}"),
            FirstDefined::InSession => write!(f, "in the session's plan"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn located(kind: PlanErrorKind) -> String {
        PlanError::new("p.toml", Some(Location { line: 7, col: 9 }), kind).to_string()
    }

    fn unlocated(kind: PlanErrorKind) -> String {
        PlanError::new("p.json", None, kind).to_string()
    }

    fn duration(scope: Scope, key: DurationKey) -> PlanErrorKind {
        PlanErrorKind::BadDuration {
            scope,
            key,
            value: "soon".into(),
            reason: humantime::parse_duration("soon").unwrap_err(),
        }
    }

    #[test]
    fn a_location_replaces_the_context() {
        let cycle = || PlanErrorKind::Cycle {
            path: vec!["a".into(), "b".into(), "c".into(), "a".into()],
        };
        assert_eq!(
            located(cycle()),
            "p.toml:7:9: dependency cycle: a -> b -> c -> a"
        );
        assert_eq!(
            unlocated(cycle()),
            "p.json: dependency cycle: a -> b -> c -> a"
        );
        let task = || duration(Scope::Task("a".into()), DurationKey::BackoffMax);
        assert_eq!(
            located(task()),
            "p.toml:7:9: invalid duration \"soon\": expected number at 0"
        );
        assert_eq!(
            unlocated(task()),
            "p.json: task \"a\": backoff.max: invalid duration \"soon\": expected number at 0"
        );
    }

    #[test]
    fn durations_name_their_key_except_a_tasks_own() {
        let cases = [
            (Scope::Plan, DurationKey::Lease, "lease: "),
            (Scope::Defaults, DurationKey::Timeout, "defaults.timeout: "),
            (
                Scope::Defaults,
                DurationKey::KillGrace,
                "defaults.kill_grace: ",
            ),
            (
                Scope::Defaults,
                DurationKey::BackoffInitial,
                "defaults.backoff.initial: ",
            ),
            (
                Scope::Task("t".into()),
                DurationKey::Timeout,
                "task \"t\": ",
            ),
            (
                Scope::Task("t".into()),
                DurationKey::KillGrace,
                "task \"t\": ",
            ),
            (
                Scope::Task("t".into()),
                DurationKey::BackoffInitial,
                "task \"t\": backoff.initial: ",
            ),
            (
                Scope::Task("t".into()),
                DurationKey::CleanupDelay,
                "task \"t\": cleanup_delay: ",
            ),
            (
                Scope::Defaults,
                DurationKey::CleanupTimeout,
                "defaults.cleanup_timeout: ",
            ),
        ];
        for (scope, key, context) in cases {
            assert_eq!(
                unlocated(duration(scope, key)),
                format!("p.json: {context}invalid duration \"soon\": expected number at 0")
            );
        }
    }

    /// The keys of auxiliary commands name themselves where a location is given too.
    #[test]
    fn auxiliary_keys_are_named_with_or_without_a_location() {
        let delay = || duration(Scope::Task("a".into()), DurationKey::CleanupDelay);
        assert_eq!(
            located(delay()),
            "p.toml:7:9: cleanup_delay: invalid duration \"soon\": expected number at 0"
        );
        let empty = || PlanErrorKind::EmptyCommand {
            scope: Scope::Task("a".into()),
            key: "rollback",
        };
        assert_eq!(
            located(empty()),
            "p.toml:7:9: rollback: the command is empty"
        );
        assert_eq!(
            unlocated(empty()),
            "p.json: task \"a\": rollback: the command is empty"
        );
        let orphan = PlanErrorKind::NoCleanup {
            scope: Scope::Task("a".into()),
            key: DurationKey::CleanupTimeout,
        };
        assert_eq!(
            unlocated(orphan),
            "p.json: task \"a\": cleanup_timeout: the task has no cleanup"
        );
        let workers = PlanErrorKind::TooFewCleanupWorkers { cleanup_workers: 0 };
        assert_eq!(
            unlocated(workers),
            "p.json: cleanup_workers must be at least 1"
        );
    }

    #[test]
    fn names_backoff_and_duplicates() {
        let name = PlanErrorKind::BadName {
            field: "marker name",
            name: "a/b".into(),
            scope: Scope::Task("a".into()),
        };
        assert_eq!(
            unlocated(name),
            format!(
                "p.json: task \"a\": invalid marker name \"a/b\": {}",
                names::RULE
            )
        );
        let factor = PlanErrorKind::BadBackoffFactor {
            scope: Scope::Defaults,
            factor: 0.5,
        };
        assert_eq!(
            unlocated(factor),
            "p.json: defaults.backoff.factor must be at least 1 (got 0.5)"
        );
        let jitter = PlanErrorKind::BadBackoffJitter {
            scope: Scope::Defaults,
            jitter: 2.0,
        };
        assert_eq!(
            located(jitter),
            "p.toml:7:9: backoff.jitter must be between 0 and 1 (got 2)"
        );
        let dup = |first| PlanErrorKind::DuplicateId {
            id: "a".into(),
            first,
        };
        assert_eq!(
            located(dup(FirstDefined::AtLine(3))),
            "p.toml:7:9: duplicate task id \"a\" (first defined at line 3)"
        );
        assert_eq!(
            unlocated(dup(FirstDefined::AsTask(1))),
            "p.json: duplicate task id \"a\" (first defined as task #1)"
        );
    }

    #[test]
    fn ranges_and_directories_name_their_key_and_whose() {
        let range = |scope, key, zero_ok| PlanErrorKind::DurationOutOfRange {
            scope,
            key,
            value: "0s".into(),
            zero_ok,
        };
        assert_eq!(
            located(range(Scope::Task("a".into()), DurationKey::Timeout, false)),
            "p.toml:7:9: timeout must be at least 1ms (got \"0s\")"
        );
        assert_eq!(
            unlocated(range(Scope::Task("a".into()), DurationKey::Timeout, false)),
            "p.json: task \"a\": timeout must be at least 1ms (got \"0s\")"
        );
        assert_eq!(
            unlocated(range(Scope::Defaults, DurationKey::KillGrace, true)),
            "p.json: defaults.kill_grace must not be negative (got \"0s\")"
        );
        let cwd = |scope| PlanErrorKind::BadCwd {
            scope,
            path: "/x/y".into(),
            problem: "does not exist".into(),
        };
        assert_eq!(
            unlocated(cwd(Scope::Defaults)),
            "p.json: defaults.cwd \"/x/y\" does not exist"
        );
        assert_eq!(
            unlocated(cwd(Scope::Task("a".into()))),
            "p.json: task \"a\": cwd \"/x/y\" does not exist"
        );
        assert_eq!(
            located(cwd(Scope::Task("a".into()))),
            "p.toml:7:9: cwd \"/x/y\" does not exist"
        );
    }

    #[test]
    fn read_errors_quote_the_os() {
        let e = PlanError::new(
            "nope.toml",
            None,
            PlanErrorKind::Read(io::Error::from(io::ErrorKind::NotFound)),
        );
        assert_eq!(
            e.to_string(),
            "nope.toml: cannot read plan: entity not found"
        );
    }
}
