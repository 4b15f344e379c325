//! What task scripts call through `worker <verb>` while they run. For now: `save`/`load`,
//! progress that survives attempts (issue 3): a task keeps small JSON values in
//! `tasks/<id>/state.json` so its next attempt resumes where the last one stopped (a
//! migration resumes from its last committed batch).
//!
//! Several attempts of one task can be alive at once (a stopped worker's attempt wakes up
//! after the task moved on), so writes are fenced: an attempt older than the newest one on
//! disk may not save. Read-modify-write is serialised with a flock on a hidden lock file.

use std::collections::BTreeMap;
use std::fs::File;

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
    if !s.task_dir(&t.task).is_dir() {
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
    let lock_path = s.task_dir(&t.task).join(".state.lock");
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err(&lock_path, "open"))?;
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
    fsio::write_json(&path, &state)
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
