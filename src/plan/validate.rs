//! Semantic checks and normalisation: a [`RawPlan`] becomes a [`Plan`], with defaults
//! applied, relative paths resolved and durations in milliseconds, or is refused with a
//! [`PlanError`].
//!
//! Errors come in a fixed order (plan-level values and defaults, then task ids, duplicates,
//! commands, races, gates, checkpoints, locks, unknown dependencies, cycles, then each
//! task's own values, its auxiliary commands last, then overlapping `owns` of tasks that
//! may run at the same time) so that the first one reported never depends on hash order.
//! Each step is one function below (or in [`auxiliary`], for what runs beside the tasks),
//! called in that order by [`validate`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::{DurationKey, FirstDefined, PlanError, PlanErrorKind as K, Scope};
use super::graph::{Graph, task_deps};
use super::locate::{Source, Table};
use super::raw::{RawBackoff, RawDefaults, RawPlan, RawRace, RawTask};
use super::scopes::{Pattern, first_conflict};
use super::{Checkpoint, PLAN_CAP, Pick, Plan, Race, TASK_CAP, Task, TaskCommand};
use crate::names;
use crate::scheduler::Backoff;
use sizes::size_of;
pub use sizes::{show_size, show_size_rounded};

const DEFAULT_WORKERS: i64 = 4;
const DEFAULT_LEASE: Duration = Duration::from_secs(10);
const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(5);
const DEFAULT_MAX_REASSIGN: u32 = 3;

/// Check `raw` (parsed from `src`) and normalise it. Relative `cwd`s resolve against
/// `base_cwd`.
pub(super) fn validate(src: &Source, raw: RawPlan, base_cwd: &Path) -> Result<Plan, PlanError> {
    let RawPlan {
        name,
        workers,
        keep_windows,
        lease,
        defaults,
        task: mut raw_tasks,
        checkpoint: checkpoints,
        locks,
        race,
        resources,
        on_failure,
        gate: raw_gates,
        limits: raw_limits,
        cleanup_workers,
    } = raw;
    let Some(name) = name else {
        return Err(src.error(None, K::NoName));
    };
    if !names::is_valid(&name) {
        return Err(src.error(src.name_pos(), bad_name("plan name", &name, Scope::Plan)));
    }
    let workers = worker_count(src, workers)?;
    let cleanup_workers = auxiliary::cleanup_workers(src, cleanup_workers)?;
    let lease_ms = match &lease {
        Some(v) => duration(src, Whose::ROOT, DurationKey::Lease, v)?,
        None => millis(DEFAULT_LEASE),
    };
    if raw_tasks.is_empty() {
        return Err(src.error(None, K::NoTasks));
    }
    let defaults = Defaults::resolve(src, defaults.unwrap_or_default(), base_cwd)?;
    let resources = pools(src, resources.unwrap_or_default())?;
    let on_failure =
        policy(src, Table::Root, Scope::Plan, on_failure.as_deref())?.unwrap_or_default();
    let limits = match raw_limits {
        None => super::Limits::default(),
        Some(l) => super::Limits {
            memory: size_of(src, Table::Root, Scope::Plan, "memory", l.memory.as_deref())?,
            min_free_memory: size_of(
                src,
                Table::Root,
                Scope::Plan,
                "min_free_memory",
                l.min_free_memory.as_deref(),
            )?,
        },
    };

    let commands = take_commands(&mut raw_tasks);
    let gates;
    let gate_names: Vec<(String, Vec<String>)> = raw_gates
        .iter()
        .map(|g| (format!("gate:{}", g.id), g.after.clone()))
        .collect();
    let (commands, races, lock_order) = {
        let ids = task_ids(src, &raw_tasks)?;
        let commands = check_commands(src, &raw_tasks, commands)?;
        let races = check_races(src, &race, &ids)?;
        gates = auxiliary::check_gates(src, raw_gates, &ids, &defaults.cwd)?;
        check_checkpoints(src, &checkpoints, &ids)?;
        let lock_order = check_lock_order(src, locks.map(|l| l.order).unwrap_or_default())?;
        let known = Known::new(ids, &races, &gate_names);
        check_dependencies(src, &raw_tasks, &known)?;
        check_cycles(src, &raw_tasks, &known)?;
        (commands, races, lock_order)
    };

    let tasks = raw_tasks.into_iter().zip(commands).enumerate();
    let session = Session {
        pools: &resources,
        limits,
        base_cwd,
    };
    let tasks = tasks.map(|(i, (t, command))| full_task(src, i, t, command, &defaults, &session));
    let plan = Plan {
        name,
        workers,
        keep_windows: keep_windows.unwrap_or(false),
        lease_ms,
        tasks: tasks.collect::<Result<_, _>>()?,
        checkpoints,
        lock_order,
        races,
        resources,
        on_failure,
        gates,
        limits,
        cleanup_workers,
    };
    check_owns(src, &plan, 0)?;
    check_sizes(src, &plan, 0)?;
    Ok(plan)
}

/// What a task is checked against besides its own values: the plan's pools and limits,
/// and the directory relative paths start from.
struct Session<'p> {
    pools: &'p BTreeMap<String, super::Pool>,
    limits: super::Limits,
    base_cwd: &'p Path,
}

/// Task `i` as written, every value of its own checked (claims, policy, memory,
/// durations, auxiliary commands) and the defaults filled in.
fn full_task(
    src: &Source,
    i: usize,
    mut t: RawTask,
    command: TaskCommand,
    defaults: &Defaults,
    session: &Session,
) -> Result<Task, PlanError> {
    let aux = auxiliary::TaskAux::take(&mut t);
    let claims = claims(src, i, &t, session.pools)?;
    let scope = Scope::Task(t.id.clone());
    let policy = policy(src, Table::Task(i), scope.clone(), t.on_failure.as_deref())?;
    let memory = size_of(src, Table::Task(i), scope, "memory", t.memory.as_deref())?;
    if let (Some(m), Some(budget)) = (memory, session.limits.memory)
        && m > budget
    {
        let kind = K::BadSize {
            scope: Scope::Task(t.id.clone()),
            key: "memory",
            msg: format!(
                "{} is more than the [limits] memory budget of {}: it could never start",
                show_size(m),
                show_size(budget)
            ),
        };
        return Err(src.error(src.size_pos(Table::Task(i), "memory"), kind));
    }
    let mut task = task(src, i, t, command, defaults, session.base_cwd)?;
    task.resources = claims;
    task.on_failure = policy;
    task.memory = memory;
    aux.check_into(src, i, &defaults.cleanup, &mut task)?;
    Ok(task)
}

/// The size of `value` as fsio writes it (pretty, with a newline), without writing it.
fn json_size<T: serde::Serialize>(value: &T) -> u64 {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len() as u64;
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(1);
    let _ = serde_json::to_writer_pretty(&mut c, value);
    c.0
}

/// What maestro writes from the plan fits under what it reads back: each task's
/// assignment (a task's record, and a few fields more) under [`TASK_CAP`], far below
/// the 16 MiB a worker reads an assignment with; `plan.json` under [`PLAN_CAP`].
///
/// The tasks from index `from` on are the text's (a file of tasks added to a session),
/// numbered from 0 there; those before were checked when they came.
fn check_sizes(src: &Source, plan: &Plan, from: usize) -> Result<(), PlanError> {
    for (i, t) in plan.tasks.iter().enumerate().skip(from) {
        let size = json_size(t);
        if size > TASK_CAP {
            let kind = K::TaskTooLarge {
                task: t.id.clone(),
                size,
                limit: TASK_CAP,
            };
            return Err(src.error(src.id_pos(i - from), kind));
        }
    }
    let size = json_size(plan);
    if size > PLAN_CAP {
        let kind = K::PlanTooLarge {
            size,
            limit: PLAN_CAP,
        };
        return Err(src.error(None, kind));
    }
    Ok(())
}

/// Every working directory a task will run in exists and is a directory: `defaults.cwd`
/// when it is given, then each task's, in plan order (each distinct path looked at once).
/// Not part of [`validate`], which touches no file: a plan is checked against the machine
/// only where it is loaded to run.
pub(super) fn check_dirs(
    src: &Source,
    tasks: &[Task],
    defaults_cwd: Option<&Path>,
) -> Result<(), PlanError> {
    let mut seen: HashSet<&Path> = HashSet::new();
    let check = |path: &'_ Path, whose: Whose, pos: Option<usize>| -> Result<(), PlanError> {
        let problem = match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => return Ok(()),
            Ok(_) => "is not a directory".to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "does not exist".to_string(),
            Err(e) => format!("cannot be read: {e}"),
        };
        let kind = K::BadCwd {
            scope: whose.scope(),
            path: path.to_path_buf(),
            problem,
        };
        Err(src.error(pos, kind))
    };
    if let Some(d) = defaults_cwd {
        check(d, Whose::DEFAULTS, src.cwd_pos(Table::Defaults))?;
        seen.insert(d);
    }
    for (i, t) in tasks.iter().enumerate() {
        if !seen.insert(&t.cwd) {
            continue;
        }
        let whose = Whose::task(i, &t.id);
        // A task without a `cwd` of its own is in the default one: point at that.
        let pos = src
            .cwd_pos(Table::Task(i))
            .or_else(|| src.cwd_pos(Table::Defaults));
        check(&t.cwd, whose, pos)?;
    }
    Ok(())
}

/// Whose values are being checked: where the text has them, and the task id that names
/// them in messages without a location.
#[derive(Debug, Clone, Copy)]
struct Whose<'a> {
    table: Table,
    task: &'a str,
}

impl<'a> Whose<'a> {
    const ROOT: Whose<'static> = Whose {
        table: Table::Root,
        task: "",
    };
    const DEFAULTS: Whose<'static> = Whose {
        table: Table::Defaults,
        task: "",
    };

    fn task(i: usize, id: &'a str) -> Self {
        Whose {
            table: Table::Task(i),
            task: id,
        }
    }

    fn scope(self) -> Scope {
        match self.table {
            Table::Root => Scope::Plan,
            Table::Defaults => Scope::Defaults,
            Table::Task(_) => Scope::Task(self.task.to_string()),
        }
    }
}

fn bad_name(field: &'static str, name: &str, scope: Scope) -> K {
    K::BadName {
        field,
        name: name.to_string(),
        scope,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn worker_count(src: &Source, workers: Option<i64>) -> Result<usize, PlanError> {
    let workers = workers.unwrap_or(DEFAULT_WORKERS);
    if workers < 1 {
        return Err(src.error(src.workers_pos(), K::TooFewWorkers { workers }));
    }
    Ok(usize::try_from(workers).unwrap_or(usize::MAX))
}

/// A humantime duration (`"30s"`, `"1h 5m"`) in milliseconds, saturating. Never negative;
/// a `timeout`, `lease` or `cleanup_timeout` is at least 1ms (zero would end every
/// attempt, lose every worker, or stop every cleanup, at once), where a zero `kill_grace`,
/// backoff or `cleanup_delay` means none.
fn duration(src: &Source, whose: Whose, key: DurationKey, value: &str) -> Result<u64, PlanError> {
    let zero_ok = !matches!(
        key,
        DurationKey::Timeout | DurationKey::Lease | DurationKey::CleanupTimeout
    );
    parse_ms(value, zero_ok).map_err(|e| {
        let (scope, value) = (whose.scope(), value.to_string());
        let kind = match e {
            Some(reason) => K::BadDuration {
                scope,
                key,
                value,
                reason,
            },
            None => K::DurationOutOfRange {
                scope,
                key,
                value,
                zero_ok,
            },
        };
        src.error(src.duration_pos(whose.table, key), kind)
    })
}

/// A duration in milliseconds, or why not: `Some` reason when it is not a duration, `None`
/// when it is negative, or zero where `zero_ok` is false.
fn parse_ms(value: &str, zero_ok: bool) -> Result<u64, Option<humantime::DurationError>> {
    if value.trim_start().starts_with('-') {
        return Err(None);
    }
    let ms = humantime::parse_duration(value).map(millis).map_err(Some)?;
    if ms == 0 && !zero_ok {
        return Err(None);
    }
    Ok(ms)
}

/// `base` with the keys of a `backoff` table that are given replaced.
fn merge_backoff(
    src: &Source,
    whose: Whose,
    base: Backoff,
    raw: Option<&RawBackoff>,
) -> Result<Backoff, PlanError> {
    let Some(r) = raw else {
        return Ok(base);
    };
    let mut b = base;
    if let Some(v) = &r.initial {
        b.initial_ms = duration(src, whose, DurationKey::BackoffInitial, v)?;
    }
    if let Some(v) = &r.max {
        b.max_ms = duration(src, whose, DurationKey::BackoffMax, v)?;
    }
    if let Some(factor) = r.factor {
        if !(factor.is_finite() && factor >= 1.0) {
            let kind = K::BadBackoffFactor {
                scope: whose.scope(),
                factor,
            };
            return Err(src.error(src.factor_pos(whose.table), kind));
        }
        b.factor = factor;
    }
    if let Some(jitter) = r.jitter {
        if !(0.0..=1.0).contains(&jitter) {
            let kind = K::BadBackoffJitter {
                scope: whose.scope(),
                jitter,
            };
            return Err(src.error(src.jitter_pos(whose.table), kind));
        }
        b.jitter = jitter;
    }
    Ok(b)
}

/// `[defaults]`, checked, with the built-in defaults filled in: what a task gets for each
/// key it does not set.
struct Defaults {
    cwd: PathBuf,
    env: BTreeMap<String, String>,
    env_from_parent: Vec<String>,
    env_file: Option<PathBuf>,
    timeout_ms: Option<u64>,
    kill_grace_ms: u64,
    retries: u32,
    backoff: Backoff,
    max_reassign: u32,
    cleanup: auxiliary::CleanupDefaults,
    worktree: bool,
}

impl Defaults {
    fn resolve(src: &Source, d: RawDefaults, base_cwd: &Path) -> Result<Defaults, PlanError> {
        let whose = Whose::DEFAULTS;
        let timeout_ms = match &d.timeout {
            Some(v) => Some(duration(src, whose, DurationKey::Timeout, v)?),
            None => None,
        };
        let kill_grace_ms = match &d.kill_grace {
            Some(v) => duration(src, whose, DurationKey::KillGrace, v)?,
            None => millis(DEFAULT_KILL_GRACE),
        };
        let backoff = merge_backoff(src, whose, Backoff::default(), d.backoff.as_ref())?;
        let cleanup = auxiliary::CleanupDefaults::resolve(
            src,
            d.cleanup_delay.as_deref(),
            d.cleanup_timeout.as_deref(),
        )?;
        let env = d.env.unwrap_or_default();
        let env_from_parent = d.env_from_parent.unwrap_or_default();
        let env_file = d.env_file.map(|p| base_cwd.join(p));
        let at = src.name_pos();
        secrets(
            src,
            at,
            Scope::Defaults,
            &env,
            &env_from_parent,
            env_file.as_deref(),
        )?;
        Ok(Defaults {
            env_from_parent,
            env_file,
            // Joining an absolute path replaces the base.
            cwd: d
                .cwd
                .map_or_else(|| base_cwd.to_path_buf(), |p| base_cwd.join(p)),
            env,
            timeout_ms,
            kill_grace_ms,
            retries: d.retries.unwrap_or(0),
            backoff,
            max_reassign: d.max_reassign.unwrap_or(DEFAULT_MAX_REASSIGN),
            cleanup,
            worktree: d.worktree.unwrap_or(false),
        })
    }
}

/// Task ids, all valid first (a path-like id is the worse problem), then unique: the
/// index of each task by id.
fn task_ids<'r>(src: &Source, tasks: &'r [RawTask]) -> Result<HashMap<&'r str, usize>, PlanError> {
    for (i, t) in tasks.iter().enumerate() {
        if !names::is_valid(&t.id) {
            return Err(src.error(src.id_pos(i), bad_name("task id", &t.id, Scope::Plan)));
        }
        if matches!(t.id.as_str(), "all" | "orchestrator") {
            let id = t.id.clone();
            return Err(src.error(src.id_pos(i), K::ReservedId { id }));
        }
    }
    let mut first: HashMap<&str, usize> = HashMap::with_capacity(tasks.len());
    for (i, t) in tasks.iter().enumerate() {
        if let Some(&j) = first.get(t.id.as_str()) {
            let first = match src.id_pos(j) {
                Some(p) => FirstDefined::AtLine(src.location(p).line),
                None => FirstDefined::AsTask(src.written(j).unwrap_or(j) + 1),
            };
            let id = t.id.clone();
            return Err(src.error(src.id_pos(i), K::DuplicateId { id, first }));
        }
        first.insert(&t.id, i);
    }
    Ok(first)
}

/// A task's `run` and `cmd` as written.
type RawCommand = (Option<String>, Option<Vec<String>>);

/// Every task's `run` and `cmd`, moved out: the checks that follow borrow the tasks, and
/// the commands must move into the plan without a copy.
fn take_commands(tasks: &mut [RawTask]) -> Vec<RawCommand> {
    tasks
        .iter_mut()
        .map(|t| (t.run.take(), t.cmd.take()))
        .collect()
}

/// Each task has exactly one of `run` and `cmd`, and a `cmd` is not empty.
fn check_commands(
    src: &Source,
    tasks: &[RawTask],
    commands: Vec<RawCommand>,
) -> Result<Vec<TaskCommand>, PlanError> {
    let each = tasks.iter().zip(commands).enumerate();
    each.map(|(i, (t, command))| {
        let kind: fn(String) -> K = match command {
            (Some(run), None) => return Ok(TaskCommand::Shell(run)),
            (None, Some(cmd)) if !cmd.is_empty() => return Ok(TaskCommand::Argv(cmd)),
            (None, None) => |task| K::NoCommand { task },
            (Some(_), Some(_)) => |task| K::TwoCommands { task },
            (None, Some(_)) => |task| K::EmptyCmd { task },
        };
        Err(src.error(src.id_pos(i), kind(t.id.clone())))
    })
    .collect()
}

/// Races: ids unique among tasks and races, at least two members, members are tasks, each
/// task in one race at most, and a winner that can be picked. Races have no positions.
fn check_races(
    src: &Source,
    raw: &[RawRace],
    tasks: &HashMap<&str, usize>,
) -> Result<Vec<Race>, PlanError> {
    let mut seen: HashSet<&str> = HashSet::new();
    let mut race_of_task: HashMap<&str, &str> = HashMap::new();
    let mut races = Vec::with_capacity(raw.len());
    for r in raw {
        let race = || r.id.clone();
        if !names::is_valid(&r.id) {
            return Err(src.error(None, bad_name("race id", &r.id, Scope::Plan)));
        }
        if tasks.contains_key(r.id.as_str()) || !seen.insert(&r.id) {
            return Err(src.error(None, K::RaceIdTaken { race: race() }));
        }
        if r.tasks.len() < 2 {
            return Err(src.error(None, K::RaceTooSmall { race: race() }));
        }
        for m in &r.tasks {
            let task = m.clone();
            if !tasks.contains_key(m.as_str()) {
                return Err(src.error(None, K::UnknownRaceMember { race: race(), task }));
            }
            if let Some(first) = race_of_task.insert(m, &r.id) {
                let first = first.to_string();
                let kind = K::TaskInTwoRaces {
                    task,
                    first,
                    second: race(),
                };
                return Err(src.error(None, kind));
            }
        }
        races.push(Race {
            id: race(),
            tasks: r.tasks.clone(),
            pick: pick(r).map_err(|kind| src.error(None, kind))?,
            score: r.score.clone(),
        });
    }
    Ok(races)
}

/// How a race picks its winner: `"first"` unless said, and `"best"` only with a score
/// that points into each member's result.
fn pick(r: &RawRace) -> Result<Pick, K> {
    let race = r.id.clone();
    let pick = match r.pick.as_deref().unwrap_or("first") {
        "first" => Pick::First,
        "best" => Pick::Best,
        other => {
            let pick = other.to_string();
            return Err(K::BadPick { race, pick });
        }
    };
    if pick == Pick::Best && !r.score.as_deref().is_some_and(|s| s.starts_with('/')) {
        return Err(K::ScoreNeeded { race });
    }
    Ok(pick)
}

/// Checkpoints: valid names, each defined once, participants that are tasks.
fn check_checkpoints(
    src: &Source,
    checkpoints: &[Checkpoint],
    tasks: &HashMap<&str, usize>,
) -> Result<(), PlanError> {
    let mut seen = HashSet::new();
    for c in checkpoints {
        let name = c.name.clone();
        if !names::is_valid(&c.name) {
            return Err(src.error(None, bad_name("checkpoint name", &name, Scope::Plan)));
        }
        if !seen.insert(c.name.as_str()) {
            return Err(src.error(None, K::DuplicateCheckpoint { name }));
        }
        if let Some(t) = c.tasks.iter().find(|t| !tasks.contains_key(t.as_str())) {
            let kind = K::UnknownCheckpointTask {
                checkpoint: name,
                task: t.clone(),
            };
            return Err(src.error(None, kind));
        }
    }
    Ok(())
}

/// The lock hierarchy: valid lock names.
fn check_lock_order(src: &Source, order: Vec<String>) -> Result<Vec<String>, PlanError> {
    match order.iter().find(|l| !names::is_valid(l)) {
        Some(l) => Err(src.error(None, bad_name("lock name", l, Scope::Plan))),
        None => Ok(order),
    }
}

/// What an `after` entry may name once tasks and races are checked: the index of each
/// task by id, and the members of each race.
struct Known<'r> {
    tasks: HashMap<&'r str, usize>,
    /// Races and gates (`gate:ID`): a dependency on one is one on each of its tasks.
    races: HashMap<&'r str, &'r [String]>,
}

impl<'r> Known<'r> {
    fn new(
        tasks: HashMap<&'r str, usize>,
        races: &'r [Race],
        gates: &'r [(String, Vec<String>)],
    ) -> Self {
        let races = races.iter().map(|r| (r.id.as_str(), r.tasks.as_slice()));
        let gates = gates
            .iter()
            .map(|(n, after)| (n.as_str(), after.as_slice()));
        Known {
            tasks,
            races: races.chain(gates).collect(),
        }
    }

    fn has(&self, name: &str) -> bool {
        self.tasks.contains_key(name) || self.races.contains_key(name)
    }
}

/// Every `after` entry names a task, a race, or a validly named signal.
fn check_dependencies(src: &Source, tasks: &[RawTask], known: &Known) -> Result<(), PlanError> {
    for (i, t) in tasks.iter().enumerate() {
        for (j, dep) in t.after.iter().flatten().enumerate() {
            let kind = match dep.strip_prefix("signal:") {
                Some(sig) if names::is_valid(sig) => continue,
                Some(sig) => bad_name("signal name", sig, Scope::Task(t.id.clone())),
                None if known.has(dep) => continue,
                None => K::UnknownDependency {
                    task: t.id.clone(),
                    dep: dep.clone(),
                },
            };
            return Err(src.error(src.after_pos(i, j), kind));
        }
    }
    Ok(())
}

/// No task depends on itself, however indirectly (a dependency on a race being one on
/// each of its members). The cycle reported is found by [`Graph::find_cycle`].
fn check_cycles(src: &Source, tasks: &[RawTask], known: &Known) -> Result<(), PlanError> {
    let afters = tasks.iter().map(|t| t.after.iter().flatten());
    let graph = Graph::of_tasks(task_deps(afters, &known.tasks, &known.races));
    if graph.topo_order().is_some() {
        return Ok(());
    }
    let cycle: Vec<usize> = graph
        .find_cycle()
        .into_iter()
        .filter_map(|n| graph.task_of(n))
        .collect();
    let mut path: Vec<String> = cycle.iter().map(|&i| tasks[i].id.clone()).collect();
    if let Some(first) = path.first().cloned() {
        path.push(first);
    }
    let pos = cycle.first().and_then(|&i| src.id_pos(i));
    Err(src.error(pos, K::Cycle { path }))
}

/// An `on_failure` value (of the plan, or a task's).
fn policy(
    src: &Source,
    table: Table,
    scope: Scope,
    value: Option<&str>,
) -> Result<Option<super::OnFailure>, PlanError> {
    match value {
        None => Ok(None),
        Some("continue") => Ok(Some(super::OnFailure::Continue)),
        Some("stop") => Ok(Some(super::OnFailure::Stop)),
        Some("freeze") => Ok(Some(super::OnFailure::Freeze)),
        Some(v) => Err(src.error(
            src.on_failure_pos(table),
            K::BadOnFailure {
                scope,
                value: v.to_string(),
            },
        )),
    }
}

/// `[resources]`: each pool's name is a name, `max` at least 1, and `warn <= critical <=
/// max` where given (a threshold above `max` could never be crossed).
fn pools(
    src: &Source,
    raw: BTreeMap<String, super::raw::RawPool>,
) -> Result<BTreeMap<String, super::Pool>, PlanError> {
    let mut out = BTreeMap::new();
    for (name, p) in raw {
        let at = src.pool_pos(&name);
        let refuse = |msg: String| {
            let kind = K::BadPool {
                pool: name.clone(),
                msg,
            };
            src.error(at, kind)
        };
        if !names::is_valid(&name) {
            return Err(src.error(at, bad_name("pool name", &name, Scope::Plan)));
        }
        let count = |key: &str, v: i64| {
            u64::try_from(v)
                .ok()
                .filter(|&v| v >= 1)
                .ok_or_else(|| refuse(format!("{key} must be at least 1 (got {v})")))
        };
        let max = count("max", p.max)?;
        let warn = p.warn.map(|v| count("warn", v)).transpose()?;
        let critical = p.critical.map(|v| count("critical", v)).transpose()?;
        for (key, v) in [("warn", warn), ("critical", critical)] {
            if let Some(v) = v.filter(|&v| v > max) {
                return Err(refuse(format!("{key} ({v}) is above max ({max})")));
            }
        }
        if let (Some(w), Some(c)) = (warn, critical)
            && w > c
        {
            return Err(refuse(format!("warn ({w}) is above critical ({c})")));
        }
        out.insert(
            name,
            super::Pool {
                max,
                warn,
                critical,
            },
        );
    }
    Ok(out)
}

/// A task's `resources`: each names a pool of `[resources]` and claims at least 1 token
/// and at most the pool's `max` (a larger claim could never start).
fn claims(
    src: &Source,
    i: usize,
    t: &RawTask,
    pools: &BTreeMap<String, super::Pool>,
) -> Result<BTreeMap<String, u64>, PlanError> {
    let mut out = BTreeMap::new();
    for (pool, &want) in t.resources.iter().flatten() {
        let refuse = |msg: String| {
            let kind = K::BadClaim {
                task: t.id.clone(),
                pool: pool.clone(),
                msg,
            };
            src.error(src.claims_pos(i), kind)
        };
        let Some(p) = pools.get(pool) else {
            return Err(refuse("no such pool in [resources]".to_string()));
        };
        let want = u64::try_from(want)
            .ok()
            .filter(|&w| w >= 1)
            .ok_or_else(|| refuse(format!("a claim must be at least 1 (got {want})")))?;
        if want > p.max {
            return Err(refuse(format!(
                "claims {want}, more than the pool's max of {}: it could never start",
                p.max
            )));
        }
        out.insert(pool.clone(), want);
    }
    Ok(out)
}

/// One task, its own values checked and the defaults filled in.
fn task(
    src: &Source,
    i: usize,
    t: RawTask,
    command: TaskCommand,
    d: &Defaults,
    base_cwd: &Path,
) -> Result<Task, PlanError> {
    let whose = Whose::task(i, &t.id);
    let timeout_ms = match &t.timeout {
        Some(v) => Some(duration(src, whose, DurationKey::Timeout, v)?),
        None => d.timeout_ms,
    };
    let kill_grace_ms = match &t.kill_grace {
        Some(v) => duration(src, whose, DurationKey::KillGrace, v)?,
        None => d.kill_grace_ms,
    };
    let backoff = merge_backoff(src, whose, d.backoff, t.backoff.as_ref())?;
    let marks = t.marks.unwrap_or_default();
    if let Some(m) = marks.iter().find(|m| !names::is_valid(m)) {
        // Marks have no position of their own: the task's id stands for them.
        let kind = bad_name("marker name", m, whose.scope());
        return Err(src.error(src.id_pos(i), kind));
    }
    let owns = t.owns.unwrap_or_default();
    for (j, p) in owns.iter().enumerate() {
        if let Err(reason) = Pattern::parse(p) {
            let kind = K::BadOwns {
                scope: whose.scope(),
                pattern: p.clone(),
                reason,
            };
            return Err(src.error(src.owns_pos(i, j), kind));
        }
    }
    let mut env = d.env.clone();
    env.extend(t.env.unwrap_or_default());
    let mut env_from_parent = d.env_from_parent.clone();
    for n in t.env_from_parent.unwrap_or_default() {
        if !env_from_parent.contains(&n) {
            env_from_parent.push(n);
        }
    }
    // The task's own file replaces the defaults' (names from the caller add up).
    let env_file = t.env_file.map(|p| base_cwd.join(p)).or(d.env_file.clone());
    let scope = Scope::Task(t.id.clone());
    secrets(
        src,
        src.id_pos(i),
        scope,
        &env,
        &env_from_parent,
        env_file.as_deref(),
    )?;
    let (signals, after): (Vec<String>, Vec<String>) = t
        .after
        .unwrap_or_default()
        .into_iter()
        .partition(|d| d.starts_with("signal:"));
    let after_signals = signals.iter();
    let after_signals = after_signals.map(|s| s.trim_start_matches("signal:").to_string());
    Ok(Task {
        id: t.id,
        command,
        after,
        after_signals: after_signals.collect(),
        priority: t.priority.unwrap_or(0),
        marks,
        owns,
        // Relative to the base, not to `defaults.cwd`.
        cwd: t.cwd.map_or_else(|| d.cwd.clone(), |p| base_cwd.join(p)),
        env,
        env_from_parent,
        env_file,
        timeout_ms,
        retries: t.retries.unwrap_or(d.retries),
        backoff,
        max_reassign: t.max_reassign.unwrap_or(d.max_reassign),
        kill_grace_ms,
        resources: BTreeMap::new(),
        on_failure: None,
        memory: None,
        // Set by `auxiliary::TaskAux::check_into`.
        cleanup: None,
        cleanup_delay_ms: 0,
        cleanup_timeout_ms: super::CLEANUP_TIMEOUT_MS,
        rollback: None,
        emergency: None,
        agent: None,
        notify: None,
        end_on: None,
        worktree: t.worktree.unwrap_or(d.worktree),
        interactive: t.interactive.unwrap_or(true),
        stdin: t.stdin.map(|p| base_cwd.join(p)),
    })
}

/// No two tasks that may run at the same time own a common path (see `plan::scopes`).
/// Tasks are ordered by `after` alone, a race standing for its members: the edge lists
/// are where another kind of ordering would join. The error points at the later task's
/// pattern.
///
/// With `from` above 0, the tasks from there on are the text's (added to a session) and
/// only a conflict that involves one of them can be new: it is reported at that task.
fn check_owns(src: &Source, plan: &Plan, from: usize) -> Result<(), PlanError> {
    if plan.tasks.iter().filter(|t| !t.owns.is_empty()).count() < 2 {
        return Ok(());
    }
    // Parsed again rather than carried out of `task`: each was accepted there, and few
    // tasks have any.
    let owns: Vec<Vec<Pattern>> = plan
        .tasks
        .iter()
        .map(|t| {
            t.owns
                .iter()
                .filter_map(|p| Pattern::parse(p).ok())
                .collect()
        })
        .collect();
    let Some(c) = first_conflict(&owns, &plan.dep_indices()) else {
        return Ok(());
    };
    let (a, b) = (&plan.tasks[c.first], &plan.tasks[c.second]);
    let kind = K::OwnsOverlap {
        first: a.id.clone(),
        first_pattern: a.owns[c.first_pattern].clone(),
        second: b.id.clone(),
        second_pattern: b.owns[c.second_pattern].clone(),
        path: c.path,
    };
    let pos = c
        .second
        .checked_sub(from)
        .and_then(|i| src.owns_pos(i, c.second_pattern));
    Err(src.error(pos, kind))
}

/// `env_from_parent` names must be variable names not also set in `env` (which value
/// would win is a trap); an `env_file` must be readable and well-formed now, not at the
/// first attempt. No message quotes a value.
fn secrets(
    src: &Source,
    at: Option<usize>,
    scope: Scope,
    env: &BTreeMap<String, String>,
    from_parent: &[String],
    file: Option<&Path>,
) -> Result<(), PlanError> {
    let bad = |msg: String| {
        src.error(
            at,
            K::BadSecret {
                scope: scope.clone(),
                msg,
            },
        )
    };
    for n in from_parent {
        if !super::env_file::valid_name(n) {
            return Err(bad(format!(
                "env_from_parent: {n:?} is not a variable name"
            )));
        }
        if env.contains_key(n) {
            return Err(bad(format!(
                "env_from_parent: {n} is also set in env; keep one"
            )));
        }
    }
    if let Some(f) = file {
        super::env_file::read(f).map_err(|e| bad(format!("env_file: {e}")))?;
    }
    Ok(())
}

pub(super) mod added;
mod auxiliary;
mod sizes;
#[cfg(test)]
mod tests;
