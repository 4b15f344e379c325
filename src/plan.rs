//! Plans: parse and validate TOML/JSON plans into a normalised [`Plan`], the task DAG,
//! waves (dependency depth) and the critical path. Owned here so that every other module
//! sees only validated plans (issue 2: bad plans are refused before any directory is made).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
    /// Ids of the tasks this one runs after (all must succeed).
    pub after: Vec<String>,
    /// Absolute working directory.
    pub cwd: PathBuf,
    pub env: BTreeMap<String, String>,
    pub timeout_ms: Option<u64>,
    pub retries: u32,
    /// Wait between retries (issue 3).
    pub backoff: crate::scheduler::Backoff,
    /// How many lost workers this task may outlive before it fails (issue 3).
    pub max_reassign: u32,
    /// SIGTERM → SIGKILL delay when the task is stopped (timeout, cancel, reassign).
    pub kill_grace_ms: u64,
}

/// A validated, normalised plan: what `plan.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub name: String,
    pub workers: usize,
    /// Keep every tmux window open after its worker exits (plan key `keep_windows`).
    pub keep_windows: bool,
    /// A worker whose heartbeat has not moved for this long is lost (issue 3).
    pub lease_ms: u64,
    pub tasks: Vec<Task>,
}

/// A plan error, already formatted with file, line and column where known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(pub String);

impl Plan {
    /// Read and validate a plan file (TOML, or JSON when the name ends in `.json`).
    /// Relative `cwd`s resolve against `base_cwd`.
    pub fn load(path: &Path, base_cwd: &Path) -> Result<Plan, PlanError> {
        let _ = (path, base_cwd);
        Err(PlanError("not implemented".into()))
    }

    /// For each task (by index), the indices of the tasks it depends on.
    pub fn dep_indices(&self) -> Vec<Vec<usize>> {
        let idx: BTreeMap<&str, usize> = self
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.as_str(), i))
            .collect();
        self.tasks
            .iter()
            .map(|t| t.after.iter().map(|d| idx[d.as_str()]).collect())
            .collect()
    }
}
impl Plan {
    pub fn describe(&self) -> String {
        String::new()
    }
    pub fn describe_json(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    pub fn to_dot(&self) -> String {
        String::new()
    }
}
