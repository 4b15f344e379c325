//! Tasks added to a live session (`orchestrator add SESSION FILE`): the file's tasks
//! checked as a plan's would be, against the session's plan. Every check of
//! [`validate`](super::validate) runs on the merged plan, and only the new tasks can
//! fail one (the session's were accepted when it started), so errors point into the
//! added file.
//!
//! The file holds `[[task]]` tables (templates too) and may have `[defaults]` of its own;
//! the session's `[defaults]` are not kept once its plan is validated, so they do not
//! apply. Everything else belongs to the session's plan and is refused by name: pools,
//! races, gates, checkpoints and limits cannot change under running tasks.

use std::collections::HashMap;
use std::path::Path;

use super::super::error::{FirstDefined, PlanError, PlanErrorKind as K};
use super::super::locate::Source;
use super::super::raw::RawPlan;
use super::super::{Plan, Task};
use super::{
    Defaults, Known, Session, check_commands, check_cycles, check_dependencies, check_owns,
    check_sizes, full_task, take_commands, task_ids,
};

/// Check the tasks of `raw` (parsed from `src`) as additions to `session`; relative
/// paths resolve against `base_cwd`. Returns them, in file order.
pub(in crate::plan) fn validate_added(
    src: &Source,
    raw: RawPlan,
    base_cwd: &Path,
    session: &Plan,
) -> Result<Vec<Task>, PlanError> {
    refuse_session_keys(src, &raw)?;
    let RawPlan {
        defaults,
        task: mut raw_tasks,
        ..
    } = raw;
    if raw_tasks.is_empty() {
        return Err(src.error(None, K::NoTasks));
    }
    let defaults = Defaults::resolve(src, defaults.unwrap_or_default(), base_cwd)?;
    let commands = take_commands(&mut raw_tasks);
    let ids = task_ids(src, &raw_tasks)?;
    let existing = session.task_index();
    for (i, t) in raw_tasks.iter().enumerate() {
        if existing.contains_key(t.id.as_str()) {
            let kind = K::DuplicateId {
                id: t.id.clone(),
                first: FirstDefined::InSession,
            };
            return Err(src.error(src.id_pos(i), kind));
        }
    }
    let commands = check_commands(src, &raw_tasks, commands)?;
    {
        // What `after` may name: the session's tasks, races and gates, and the new tasks
        // (numbered after the session's).
        let offset = session.tasks.len();
        let mut all: HashMap<&str, usize> = existing.clone();
        all.extend(ids.iter().map(|(id, i)| (*id, offset + i)));
        let gate_names: Vec<(String, Vec<String>)> = session
            .gates
            .iter()
            .map(|g| (g.dep_name(), g.after.clone()))
            .collect();
        check_dependencies(
            src,
            &raw_tasks,
            &Known::new(all, &session.races, &gate_names),
        )?;
        // A session's task never runs after a new one, so a cycle is among new tasks.
        check_cycles(src, &raw_tasks, &Known::new(ids, &[], &[]))?;
    }
    let scope = Session {
        pools: &session.resources,
        limits: session.limits,
        base_cwd,
    };
    let tasks = raw_tasks.into_iter().zip(commands).enumerate();
    let tasks: Vec<Task> = tasks
        .map(|(i, (t, command))| full_task(src, i, t, command, &defaults, &scope))
        .collect::<Result<_, _>>()?;
    check_merged(src, session, &tasks)?;
    Ok(tasks)
}

/// The checks on the whole merged plan that new tasks can fail: overlapping `owns` with
/// a task that may run at the same time, and the size of what maestro writes.
fn check_merged(src: &Source, session: &Plan, tasks: &[Task]) -> Result<(), PlanError> {
    let mut merged = session.clone();
    merged.tasks.extend_from_slice(tasks);
    check_owns(src, &merged, session.tasks.len())?;
    check_sizes(src, &merged, session.tasks.len())
}

/// What a file of added tasks may not set, each with the reason given.
fn refuse_session_keys(src: &Source, raw: &RawPlan) -> Result<(), PlanError> {
    const FIXED: &str = "it is the session's, fixed when it started";
    let set: [(&'static str, bool, &'static str); 11] = [
        ("workers", raw.workers.is_some(), "use `orchestrator scale`"),
        ("keep_windows", raw.keep_windows.is_some(), FIXED),
        ("lease", raw.lease.is_some(), FIXED),
        (
            "checkpoint",
            !raw.checkpoint.is_empty(),
            "its participants are fixed",
        ),
        (
            "locks",
            raw.locks.is_some(),
            "the lock order is the session's",
        ),
        ("race", !raw.race.is_empty(), "a race's members are fixed"),
        (
            "resources",
            raw.resources.is_some(),
            "pools cannot change under running tasks",
        ),
        ("on_failure", raw.on_failure.is_some(), FIXED),
        (
            "gate",
            !raw.gate.is_empty(),
            "gates are the session's plan's",
        ),
        ("limits", raw.limits.is_some(), FIXED),
        ("cleanup_workers", raw.cleanup_workers.is_some(), FIXED),
    ];
    match set.into_iter().find(|(_, given, _)| *given) {
        None => Ok(()),
        Some((key, _, why)) => Err(src.error(src.root_value_pos(key), K::NotAddable { key, why })),
    }
}

/// The same checks without a text to point into, for tasks already checked against an
/// older version of the session's plan (the orchestrator's look before it takes them: a
/// concurrent addition may have taken an id or a path since). Returns the merged plan.
pub(in crate::plan) fn merge_checked(session: &Plan, tasks: Vec<Task>) -> Result<Plan, PlanError> {
    let src = Source::new("added tasks", "{}");
    let existing = session.task_index();
    let mut first: HashMap<&str, usize> = HashMap::new();
    for (i, t) in tasks.iter().enumerate() {
        let dup = |first| {
            let kind = K::DuplicateId {
                id: t.id.clone(),
                first,
            };
            Err(src.error(None, kind))
        };
        if !crate::names::is_valid(&t.id) {
            return Err(src.error(None, super::bad_name("task id", &t.id, super::Scope::Plan)));
        }
        if existing.contains_key(t.id.as_str()) {
            return dup(FirstDefined::InSession);
        }
        if let Some(j) = first.insert(t.id.as_str(), i) {
            return dup(FirstDefined::AsTask(j + 1));
        }
    }
    let mut merged = session.clone();
    merged.tasks.extend(tasks);
    let known = merged.task_index();
    let named = |d: &String| {
        d.strip_prefix("signal:").is_some()
            || known.contains_key(d.as_str())
            || merged.races.iter().any(|r| &r.id == d)
            || merged.gates.iter().any(|g| &g.dep_name() == d)
    };
    for t in &merged.tasks[session.tasks.len()..] {
        if let Some(dep) = t.after.iter().find(|d| !named(d)) {
            let kind = K::UnknownDependency {
                task: t.id.clone(),
                dep: dep.clone(),
            };
            return Err(src.error(None, kind));
        }
    }
    let graph = super::super::graph::Graph::of_tasks(merged.dep_indices());
    if graph.topo_order().is_none() {
        let cycle = graph
            .find_cycle()
            .into_iter()
            .filter_map(|n| graph.task_of(n));
        let mut path: Vec<String> = cycle.map(|i| merged.tasks[i].id.clone()).collect();
        if let Some(first) = path.first().cloned() {
            path.push(first);
        }
        return Err(src.error(None, K::Cycle { path }));
    }
    check_owns(&src, &merged, session.tasks.len())?;
    check_sizes(&src, &merged, session.tasks.len())?;
    Ok(merged)
}
