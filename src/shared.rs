//! Shared key-value data and progress reports `worker set|get|progress`.
//! This module owns `shared/<key>.json` and `tasks/<task>/attempt-<n>/progress.json`.
//!
//! Shared values are last-writer-wins: `worker set` replaces the file atomically (any task
//! may write, and a rename of a unique temp file is safe with several writers:
//! docs/PROTOCOL.md rule 1), so a reader sees the old value or the new one, never a mix. Values are
//! stored as compact JSON and capped at [`MAX_VALUE_BYTES`]: the store is for small
//! coordination data (a URL, a count, a list of ids), not for bulk transfer, and the cap
//! keeps every value readable under the session's JSON read cap.
//!
//! Progress belongs to one attempt, so it lives in that attempt's directory: a new attempt
//! starts from no progress instead of inheriting a stale percentage.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::fsio;
use crate::names;
use crate::session::Session;

/// Largest shared value, measured as compact JSON (1 MiB).
pub const MAX_VALUE_BYTES: usize = 1_048_576;

/// Serialize a value for `shared/`, refusing one over the cap.
fn encode(key: &str, value: &Value) -> Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    if bytes.len() > MAX_VALUE_BYTES {
        return Err(Error::Usage(format!(
            "value for {key:?} is {} bytes; the limit is {MAX_VALUE_BYTES} bytes (1 MiB)",
            bytes.len()
        )));
    }
    bytes.push(b'\n');
    Ok(bytes)
}

/// `worker set KEY VALUE`: store `value` under `key`, replacing any earlier value.
pub fn set(s: &Session, key: &str, value: &Value) -> Result<()> {
    names::validate("key", key).map_err(Error::Usage)?;
    let bytes = encode(key, value)?;
    // Sessions made before `shared/` existed, or a person removed it.
    fsio::create_dir_private(&s.shared_dir())?;
    fsio::write_atomic(&s.shared_value(key), &bytes)
}

/// `worker get KEY`: the value stored under `key`, if any.
pub fn get(s: &Session, key: &str) -> Result<Option<Value>> {
    names::validate("key", key).map_err(Error::Usage)?;
    fsio::read_json(&s.shared_value(key))
}

/// `worker get KEY --wait`: block until `key` has a value, or `timeout` passes (`Ok(None)`).
pub fn wait_get(s: &Session, key: &str, wait: crate::watch::Wait) -> Result<Option<Value>> {
    // Fast path: no watcher to start when the value is already there.
    if let Some(v) = get(s, key)? {
        return Ok(Some(v));
    }
    // The watcher needs the directory to exist.
    fsio::create_dir_private(&s.shared_dir())?;
    crate::watch::wait_for(&[s.shared_dir()], wait, || get(s, key))
}

/// `progress.json`: what `worker progress PCT [MESSAGE]` last reported for an attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// 0 to 100.
    pub pct: f64,
    #[serde(default)]
    pub message: Option<String>,
    /// When it was reported (RFC 3339).
    pub at: String,
}

/// Parse and check a percentage from the command line: a number from 0 to 100.
pub fn parse_pct(text: &str) -> Result<f64> {
    match text.trim().parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(Error::Usage(format!(
            "invalid progress {text:?}: must be a number from 0 to 100"
        ))),
    }
}

/// `worker progress`: record the attempt's progress. The attempt directory must exist (the
/// worker creates it before starting the task), so a typo in `--task`/`--attempt` is refused
/// instead of creating directories for attempts that never ran.
pub fn set_progress(
    s: &Session,
    task: &str,
    attempt: u32,
    pct: f64,
    message: Option<String>,
) -> Result<()> {
    names::validate("task id", task).map_err(Error::Usage)?;
    if !(0.0..=100.0).contains(&pct) {
        return Err(Error::Usage(format!(
            "invalid progress \"{pct}\": must be a number from 0 to 100"
        )));
    }
    if !s.has_task(task)? {
        return Err(Error::Usage(format!(
            "session {} has no task {task:?}",
            s.id()
        )));
    }
    if !fsio::is_dir(&s.attempt_dir(task, attempt)) {
        return Err(Error::Usage(format!(
            "task {task} has no attempt {attempt}"
        )));
    }
    fsio::write_json(
        &s.progress_json(task, attempt),
        &Progress {
            pct,
            message,
            at: crate::proto::now_rfc3339(),
        },
    )
}

/// The last progress an attempt reported, for `orchestrator status`. A missing or malformed
/// file is `None`: a display must not fail because a task wrote something odd.
pub fn read_progress(s: &Session, task: &str, attempt: u32) -> Option<Progress> {
    names::validate("task id", task).ok()?;
    fsio::read_json(&s.progress_json(task, attempt))
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pct_must_be_between_0_and_100() {
        assert_eq!(parse_pct("42").unwrap(), 42.0);
        assert_eq!(parse_pct("0").unwrap(), 0.0);
        assert_eq!(parse_pct("100").unwrap(), 100.0);
        for bad in ["-1", "100.5", "NaN", "inf", "abc", ""] {
            assert_eq!(
                parse_pct(bad).unwrap_err().to_string(),
                format!("invalid progress {bad:?}: must be a number from 0 to 100")
            );
        }
    }

    #[test]
    fn oversized_value_is_refused_with_its_size() {
        let v = Value::String("x".repeat(MAX_VALUE_BYTES - 1));
        // Two quotes make it one byte over.
        let err = encode("big", &v).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert_eq!(
            err.to_string(),
            "value for \"big\" is 1048577 bytes; the limit is 1048576 bytes (1 MiB)"
        );
        assert!(encode("ok", &Value::String("x".repeat(MAX_VALUE_BYTES - 2))).is_ok());
    }
}
