//! The checks of what runs beside the tasks: a task's auxiliary commands (`cleanup`,
//! `rollback`, `emergency`) and the cleanup's timing (`cleanup_delay`, `cleanup_timeout`,
//! also in `[defaults]`), the pool they run on (`cleanup_workers`), and `[[gate]]`s,
//! whose `run` is a command of the same kind.
//!
//! Kept apart from `validate` proper, which walks the task graph, because none of this
//! changes the graph: these values only say what else runs, when, and for how long.
//! (Not `aux.rs`: that name cannot be a file on Windows.)

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::super::error::{DurationKey, PlanError, PlanErrorKind as K, Scope};
use super::super::locate::{Source, Table};
use super::super::raw::{RawGate, RawTask};
use super::super::{CLEANUP_TIMEOUT_MS, Gate, Task};
use super::{Whose, bad_name, duration, parse_ms};
use crate::names;

/// `cleanup_workers`: at least 1 (1 when absent), so that a cleanup, a gate's check, an
/// emergency or a rollback always has somewhere to run.
pub(super) fn cleanup_workers(src: &Source, value: Option<i64>) -> Result<usize, PlanError> {
    let n = value.unwrap_or(1);
    if n < 1 {
        let kind = K::TooFewCleanupWorkers { cleanup_workers: n };
        return Err(src.error(src.cleanup_workers_pos(), kind));
    }
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// `cleanup_delay` and `cleanup_timeout` of `[defaults]`, checked, with the built-in ones
/// (none, and [`CLEANUP_TIMEOUT_MS`]) filled in.
#[derive(Debug, Clone, Copy)]
pub(super) struct CleanupDefaults {
    delay_ms: u64,
    timeout_ms: u64,
}

impl CleanupDefaults {
    pub(super) fn resolve(
        src: &Source,
        delay: Option<&str>,
        timeout: Option<&str>,
    ) -> Result<Self, PlanError> {
        let whose = Whose::DEFAULTS;
        Ok(CleanupDefaults {
            delay_ms: match delay {
                Some(v) => duration(src, whose, DurationKey::CleanupDelay, v)?,
                None => 0,
            },
            timeout_ms: match timeout {
                Some(v) => duration(src, whose, DurationKey::CleanupTimeout, v)?,
                None => CLEANUP_TIMEOUT_MS,
            },
        })
    }
}

/// A task's auxiliary keys as written, taken out of its [`RawTask`] before the task's
/// other values are checked (which consumes it), and checked after them.
pub(super) struct TaskAux {
    cleanup: Option<String>,
    cleanup_delay: Option<String>,
    cleanup_timeout: Option<String>,
    rollback: Option<String>,
    emergency: Option<String>,
    agent: Option<String>,
    notify: Option<String>,
    end_on: Option<String>,
}

impl TaskAux {
    pub(super) fn take(t: &mut RawTask) -> Self {
        TaskAux {
            cleanup: t.cleanup.take(),
            cleanup_delay: t.cleanup_delay.take(),
            cleanup_timeout: t.cleanup_timeout.take(),
            rollback: t.rollback.take(),
            emergency: t.emergency.take(),
            agent: t.agent.take(),
            notify: t.notify.take(),
            end_on: t.end_on.take(),
        }
    }

    /// Check the keys of the task at index `i` and set them on `task`. Commands are not
    /// empty; the durations parse (`cleanup_timeout` at least 1ms); a task's own
    /// `cleanup_delay` or `cleanup_timeout` comes with a `cleanup`, since without one it
    /// would time nothing (likely a mistake). A task without a cleanup keeps the built-in
    /// timing whatever `[defaults]` says, so that `plan.json` carries no value nothing
    /// uses. `agent` is a kind of agent, `notify` a command, and `end_on` is `"idle"` on
    /// an agent task.
    pub(super) fn check_into(
        self,
        src: &Source,
        i: usize,
        d: &CleanupDefaults,
        task: &mut Task,
    ) -> Result<(), PlanError> {
        let whose = Whose::task(i, &task.id);
        let command = |key: &'static str, value: Option<String>| match value {
            Some(c) if c.trim().is_empty() => {
                let kind = K::EmptyCommand {
                    scope: whose.scope(),
                    key,
                };
                Err(src.error(src.command_pos(i, key), kind))
            }
            v => Ok(v),
        };
        let cleanup = command("cleanup", self.cleanup)?;
        let rollback = command("rollback", self.rollback)?;
        let emergency = command("emergency", self.emergency)?;
        let own = |key: DurationKey, value: Option<String>| -> Result<_, PlanError> {
            let Some(v) = value else {
                return Ok(None);
            };
            let ms = duration(src, whose, key, &v)?;
            if cleanup.is_none() {
                let kind = K::NoCleanup {
                    scope: whose.scope(),
                    key,
                };
                return Err(src.error(src.duration_pos(Table::Task(i), key), kind));
            }
            Ok(Some(ms))
        };
        let delay = own(DurationKey::CleanupDelay, self.cleanup_delay)?;
        let timeout = own(DurationKey::CleanupTimeout, self.cleanup_timeout)?;
        if cleanup.is_some() {
            task.cleanup_delay_ms = delay.unwrap_or(d.delay_ms);
            task.cleanup_timeout_ms = timeout.unwrap_or(d.timeout_ms);
        }
        task.cleanup = cleanup;
        task.rollback = rollback;
        task.emergency = emergency;
        task.agent = match self.agent.as_deref() {
            None => None,
            Some("claude-code") => Some(crate::plan::AgentKind::ClaudeCode),
            Some("generic") => Some(crate::plan::AgentKind::Generic),
            Some(other) => {
                let kind = K::BadAgent {
                    scope: whose.scope(),
                    value: other.to_string(),
                };
                return Err(src.error(src.id_pos(i), kind));
            }
        };
        task.notify = match self.notify {
            Some(c) if c.trim().is_empty() => {
                let kind = K::EmptyCommand {
                    scope: whose.scope(),
                    key: "notify",
                };
                return Err(src.error(src.id_pos(i), kind));
            }
            v => v,
        };
        // Only an agent reports idle: on any other task the key would never act.
        if let Some(value) = self.end_on {
            let kind = match crate::plan::EndOn::parse(&value) {
                Some(end) if task.agent.is_some() => {
                    task.end_on = Some(end);
                    return Ok(());
                }
                Some(_) => K::EndOnWithoutAgent {
                    task: task.id.clone(),
                    value,
                },
                None => K::BadEndOn {
                    task: task.id.clone(),
                    value,
                },
            };
            return Err(src.error(src.id_pos(i), kind));
        }
        Ok(())
    }
}

/// Gates: ids are names, unique among gates; `after` names tasks; a gate has `run` (a
/// check, not empty), `approve = true`, or both; `timeout` bounds `run`, so it needs one.
/// A gate's `run` runs in `tasks_cwd`, where tasks run unless they say otherwise.
pub(super) fn check_gates(
    src: &Source,
    raw: Vec<RawGate>,
    tasks: &HashMap<&str, usize>,
    tasks_cwd: &Path,
) -> Result<Vec<Gate>, PlanError> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut gates = Vec::with_capacity(raw.len());
    for (k, g) in raw.into_iter().enumerate() {
        let at = src.gate_pos(k);
        let id_at = at.and_then(|p| p.id);
        let refuse = |pos: Option<usize>, msg: String| {
            let kind = K::BadGate {
                gate: g.id.clone(),
                msg,
            };
            src.error(pos, kind)
        };
        if !names::is_valid(&g.id) {
            return Err(src.error(id_at, bad_name("gate id", &g.id, Scope::Plan)));
        }
        if !seen.insert(g.id.clone()) {
            return Err(refuse(id_at, "declared twice".into()));
        }
        if g.after.is_empty() {
            return Err(refuse(id_at, "after must name at least one task".into()));
        }
        let unknown = g.after.iter().position(|t| !tasks.contains_key(t.as_str()));
        if let Some(j) = unknown {
            let pos = src.gate_after_pos(k, j);
            return Err(refuse(
                pos,
                format!("after names unknown task {:?}", g.after[j]),
            ));
        }
        let run_at = at.and_then(|p| p.run);
        if g.run.as_deref().is_some_and(|r| r.trim().is_empty()) {
            return Err(refuse(run_at, "run: the command is empty".into()));
        }
        let approve = g.approve.unwrap_or(false);
        if g.run.is_none() && !approve {
            let msg = "a gate needs run = \"...\" or approve = true".into();
            return Err(refuse(id_at, msg));
        }
        let timeout_at = at.and_then(|p| p.timeout);
        let timeout_ms = match &g.timeout {
            None => None,
            Some(_) if g.run.is_none() => {
                let msg = "timeout bounds run, and this gate has none".into();
                return Err(refuse(timeout_at, msg));
            }
            Some(v) => Some(parse_ms(v, false).map_err(|e| {
                let msg = match e {
                    Some(reason) => format!("timeout: invalid duration {v:?}: {reason}"),
                    None => format!("timeout must be at least 1ms (got {v:?})"),
                };
                refuse(timeout_at, msg)
            })?),
        };
        let cwd = g.run.is_some().then(|| tasks_cwd.to_path_buf());
        gates.push(Gate {
            id: g.id,
            after: g.after,
            approve,
            run: g.run,
            timeout_ms,
            cwd,
        });
    }
    Ok(gates)
}
