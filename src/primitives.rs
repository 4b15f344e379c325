//! What task scripts call through `worker <verb>` while they run. For now: `save`/`load`,
//! progress that survives attempts: a task keeps small JSON values in
//! `tasks/<id>/state.json` so its next attempt resumes where the last one stopped (a
//! migration resumes from its last committed batch).
//!
//! Several attempts of one task can be alive at once (a stopped worker's attempt wakes up
//! after the task moved on), so writes are fenced: an attempt older than the newest one on
//! disk may not save. Read-modify-write is serialised with a flock on a hidden lock file.

use std::collections::BTreeMap;

use fs2::FileExt;
use serde_json::Value;

use crate::error::{Error, Result, io_err};
use crate::fsio;
use crate::names;
use crate::session::Session;

/// Which task (and attempt) a verb acts for: from `MAESTRO_TASK`/`MAESTRO_ATTEMPT` or flags.
#[derive(Debug, Clone)]
pub struct TaskRef {
    pub task: String,
    pub attempt: Option<u32>,
}

impl TaskRef {
    pub fn new(task: Option<String>, attempt: Option<u32>) -> Result<TaskRef> {
        let task = task.ok_or_else(|| {
            Error::Usage("no task: run this inside a maestro task or pass --task".into())
        })?;
        names::validate("task id", &task).map_err(Error::Usage)?;
        Ok(TaskRef { task, attempt })
    }
}

fn check_task(s: &Session, t: &TaskRef) -> Result<()> {
    if !s.has_task(&t.task)? {
        return Err(Error::Usage(format!(
            "session {} has no task {:?}",
            s.id(),
            t.task
        )));
    }
    Ok(())
}

/// Store `value` under `key` in the task's `state.json`.
pub fn save(s: &Session, t: &TaskRef, key: &str, value: Value) -> Result<()> {
    names::validate("key", key).map_err(Error::Usage)?;
    check_task(s, t)?;
    let lock_path = s.state_lock(&t.task);
    let lock = fsio::open_lock_file(&lock_path)?;
    lock.lock_exclusive().map_err(io_err(&lock_path, "lock"))?;
    if let Some(mine) = t.attempt
        && let Some(&newest) = s.attempts(&t.task)?.last()
        && newest > mine
    {
        return Err(Error::Session(format!(
            "attempt {mine} of task {} is stale (attempt {newest} has started); not saving {key}",
            t.task
        )));
    }
    let path = s.state_json(&t.task);
    let mut state: BTreeMap<String, Value> = fsio::read_json(&path)?.unwrap_or_default();
    state.insert(key.to_string(), value);
    // Written as `fsio::write_json` would, after checking that it can be read back.
    let mut bytes = serde_json::to_vec_pretty(&state).unwrap_or_default();
    bytes.push(b'\n');
    if bytes.len() as u64 > fsio::JSON_CAP {
        return Err(Error::Usage(format!(
            "not saving {key}: {} would be {} bytes; the limit is {}",
            path.display(),
            bytes.len(),
            fsio::JSON_CAP
        )));
    }
    fsio::write_atomic(&path, &bytes)
}

/// The value saved under `key`, if any.
pub fn load(s: &Session, t: &TaskRef, key: &str) -> Result<Option<Value>> {
    names::validate("key", key).map_err(Error::Usage)?;
    check_task(s, t)?;
    let state: BTreeMap<String, Value> =
        fsio::read_json(&s.state_json(&t.task))?.unwrap_or_default();
    Ok(state.get(key).cloned())
}

/// How `worker load` prints a value: strings raw (for shell use), everything else as JSON.
pub fn display_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The arrivals recorded at checkpoint `name` (unreadable files are skipped: a participant
/// whose record is being written is simply not there yet).
pub fn arrivals(s: &Session, name: &str) -> Vec<crate::proto::Arrival> {
    let dir = s.checkpoint_dir(name);
    let Ok(Some(names)) = fsio::read_names(&dir) else {
        return Vec::new();
    };
    names
        .iter()
        .filter(|n| n.ends_with(".ready"))
        .filter_map(|n| fsio::read_json(&dir.join(n)).ok().flatten())
        .collect()
}

pub use crate::engine::barrier::all_arrived;

fn read_plan(s: &Session) -> Result<crate::plan::Plan> {
    crate::plan::Plan::read(&s.plan_json())?
        .ok_or_else(|| Error::Session(format!("{}: missing", s.plan_json().display())))
}

fn dur_text(d: Option<std::time::Duration>) -> String {
    humantime::format_duration(d.unwrap_or_default()).to_string()
}

/// `worker checkpoint NAME [--parties N]`: arrive, then block until every participant has
/// (the orchestrator writes `proceed`), or until the barrier breaks or time runs out. An
/// earlier attempt's arrival counts: a reassigned participant does not arrive twice.
pub fn checkpoint(
    s: &Session,
    t: &TaskRef,
    name: &str,
    parties: Option<usize>,
    wait: crate::watch::Wait,
) -> Result<()> {
    let timeout = wait.timeout;
    names::validate("checkpoint name", name).map_err(Error::Usage)?;
    check_task(s, t)?;
    let plan = read_plan(s)?;
    let def = plan.checkpoints.iter().find(|c| c.name == name);
    match (def, parties) {
        (Some(c), _) if !c.tasks.contains(&t.task) => {
            return Err(Error::Usage(format!(
                "task {} is not a participant of checkpoint {name} ({})",
                t.task,
                c.tasks.join(", ")
            )));
        }
        (None, None) => {
            return Err(Error::Usage(format!(
                "checkpoint {name} is not in the plan; pass --parties N"
            )));
        }
        (None, Some(0)) => return Err(Error::Usage("--parties must be at least 1".into())),
        _ => {}
    }
    fsio::create_dir_private(&s.checkpoint_dir(name))?;
    fsio::create_json_once(
        &s.checkpoint_ready(name, &t.task),
        &crate::proto::Arrival {
            task: t.task.clone(),
            attempt: t.attempt,
            parties: if def.is_some() { None } else { parties },
            arrived_at: crate::proto::now_rfc3339(),
        },
    )?;
    let proceed = s.checkpoint_proceed(name);
    let broken = s.checkpoint_broken(name);
    let participants = def.map(|c| c.tasks.clone());
    let verdict = crate::watch::wait_for(&[s.checkpoint_dir(name)], wait, || {
        if fsio::exists(&proceed) {
            return Ok(Some(Ok(())));
        }
        if let Some(b) = fsio::read_json::<crate::proto::BarrierVerdict>(&broken)? {
            return Ok(Some(Err(b)));
        }
        // Everyone is here: go without waiting for the orchestrator to say so (a
        // hop less for the barrier's latency). It decides by the same rule and records
        // `proceed`; a checkpoint whose participants all arrived is never broken.
        Ok(all_arrived(participants.as_deref(), &arrivals(s, name)).then_some(Ok(())))
    })?;
    match verdict {
        Some(Ok(())) => Ok(()),
        Some(Err(b)) => Err(Error::Verb(format!(
            "checkpoint {name} is broken: participant {} {}",
            b.task.unwrap_or_default(),
            b.reason.unwrap_or_else(|| "failed".into())
        ))),
        None => {
            let missing = match def {
                Some(c) => c
                    .tasks
                    .iter()
                    .filter(|p| !fsio::exists(&s.checkpoint_ready(name, p)))
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
                None => {
                    let arrived = fsio::read_names(&s.checkpoint_dir(name))
                        .ok()
                        .flatten()
                        .map_or(0, |n| n.iter().filter(|n| n.ends_with(".ready")).count());
                    format!(
                        "{} more of {}",
                        parties.unwrap_or(0).saturating_sub(arrived),
                        parties.unwrap_or(0)
                    )
                }
            };
            Err(Error::Verb(format!(
                "checkpoint {name}: timed out after {} waiting for {missing}",
                dur_text(timeout)
            )))
        }
    }
}

/// `worker signal NAME`: raise a named marker (once; raising again is a no-op).
pub fn signal(s: &Session, t: Option<&TaskRef>, name: &str) -> Result<bool> {
    names::validate("signal name", name).map_err(Error::Usage)?;
    fsio::create_json_once(
        &s.signal(name),
        &crate::proto::SignalRecord {
            task: t.map(|t| t.task.clone()),
            attempt: t.and_then(|t| t.attempt),
            raised_at: crate::proto::now_rfc3339(),
        },
    )
}

/// `worker wait-signal NAME`: block until the signal is raised.
pub fn wait_signal(s: &Session, name: &str, wait: crate::watch::Wait) -> Result<()> {
    let timeout = wait.timeout;
    names::validate("signal name", name).map_err(Error::Usage)?;
    let path = s.signal(name);
    match crate::watch::wait_for(&[s.signals_dir()], wait, || {
        Ok(fsio::exists(&path).then_some(()))
    })? {
        Some(()) => Ok(()),
        None => Err(Error::Verb(format!(
            "wait-signal {name}: timed out after {}",
            dur_text(timeout)
        ))),
    }
}

/// `worker result ID`: the result of a finished task, or of a race (its winner's).
pub fn result(s: &Session, id: &str) -> Result<Value> {
    names::validate("task id", id).map_err(Error::Usage)?;
    // A race's outcome holds the winner's result and names every loser, who are part of
    // the plan: it fits under the plan's cap and a result's.
    let cap = crate::plan::PLAN_CAP + crate::proto::RESULT_CAP;
    let race = fsio::read_json_capped::<crate::proto::RaceOutcome>(&s.race_outcome(id), cap)?;
    if let Some(r) = race {
        return r
            .result
            .ok_or_else(|| Error::Verb(format!("race {id} has no result ({})", r.state.as_str())));
    }
    if !s.has_task(id)? {
        return Err(Error::Usage(format!(
            "session {} has no task or race {id:?}",
            s.id()
        )));
    }
    match fsio::read_json::<crate::proto::Outcome>(&s.outcome_json(id))? {
        Some(o) => o
            .result
            .ok_or_else(|| Error::Verb(format!("task {id} has no result ({})", o.state.as_str()))),
        None => Err(Error::Verb(format!("task {id} has not finished"))),
    }
}
