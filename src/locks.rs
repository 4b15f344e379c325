//! Named locks for task scripts: `worker lock NAME [--shared] -- CMD` runs CMD
//! holding a lock, a lock hierarchy (`[locks] order`), and the wait-for graph the
//! orchestrator uses to break deadlocks.
//!
//! The lock itself is an flock on `locks/<name>.lock`, so the kernel releases it when the
//! holder dies, however it dies. Who holds and who waits is visible as files
//! (`<name>.holders/<task>.json`, `<name>.wait/<task>.json`); each such record is itself
//! flocked by the process it describes, so a record whose flock is free is stale (its
//! writer died) and is ignored. The deadlock decision (`engine::deadlock`) is pure.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;

use fs2::FileExt;

use crate::error::{Error, Result, io_err};
use crate::fsio;
use crate::names;
use crate::plan::Plan;
use crate::primitives::TaskRef;
use crate::proto::{self, LockAbort, LockRecord};
use crate::session::Session;

pub use crate::engine::deadlock::{Deadlock, LockView, Party, find_deadlock};

fn live_records(dir: &Path) -> Vec<LockRecord> {
    let Ok(Some(names)) = fsio::read_names(dir) else {
        return Vec::new();
    };
    let mut v = Vec::new();
    for name in names {
        if !name.ends_with(".json") {
            continue;
        }
        let p = dir.join(&name);
        if fsio::lock_held(&p)
            && let Ok(Some(r)) = fsio::read_json::<LockRecord>(&p)
        {
            v.push(r);
        }
    }
    v
}

/// Every lock of the session with its live holders and waiters.
pub fn scan(s: &Session) -> BTreeMap<String, LockView> {
    let mut out: BTreeMap<String, LockView> = BTreeMap::new();
    let Ok(Some(names)) = fsio::read_names(&s.locks_dir()) else {
        return out;
    };
    for fname in names {
        let Some(name) = fname.strip_suffix(".lock") else {
            continue;
        };
        if names::validate("lock name", name).is_err() {
            continue;
        }
        let party = |r: LockRecord| Party {
            task: r.task,
            shared: r.shared,
            since_unix_ms: r.since_unix_ms,
        };
        let view = LockView {
            holders: live_records(&s.lock_holders(name))
                .into_iter()
                .map(party)
                .collect(),
            waiters: live_records(&s.lock_waiters(name))
                .into_iter()
                .map(party)
                .collect(),
        };
        out.insert(name.to_string(), view);
    }
    out
}

/// The plan's lock order as "a > b > c", for messages.
fn order_text(order: &[String]) -> String {
    order.join(" > ")
}

/// Refuse taking `name` when this task already holds a lock ranked at or below it... that
/// is, when `name` ranks at or above a lock already held (the hierarchy).
pub fn check_order(order: &[String], held: &[String], task: &str, name: &str) -> Result<()> {
    let rank = |l: &str| order.iter().position(|o| o == l);
    let Some(r) = rank(name) else {
        return Ok(());
    };
    for h in held {
        if let Some(rh) = rank(h)
            && r <= rh
        {
            return Err(Error::Verb(format!(
                "order violation: task {task} holds lock {h} and may not take {name} (order: {})",
                order_text(order)
            )));
        }
    }
    Ok(())
}

/// Write a record and keep it flocked for as long as the returned file lives.
fn publish_record(path: &Path, rec: &LockRecord) -> Result<File> {
    if let Some(dir) = path.parent() {
        fsio::create_dir_private(dir)?;
    }
    fsio::write_json(path, rec)?;
    let f = fsio::open_read(path)?
        .ok_or_else(|| Error::io(path, "open", std::io::ErrorKind::NotFound.into()))?;
    f.lock_exclusive().map_err(io_err(path, "lock"))?;
    Ok(f)
}

fn remove_record(path: &Path, f: File) {
    let _ = fsio::remove_file(path);
    drop(f);
}

/// `worker lock NAME [--shared] [--timeout D] -- CMD...`: returns CMD's exit code.
pub fn run_locked(
    s: &Session,
    t: &TaskRef,
    name: &str,
    shared: bool,
    wait: crate::watch::Wait,
    cmd: &[String],
) -> Result<i32> {
    let timeout = wait.timeout;
    names::validate("lock name", name).map_err(Error::Usage)?;
    if cmd.is_empty() {
        return Err(Error::Usage(
            "lock: no command given (worker lock NAME -- CMD ARGS...)".into(),
        ));
    }
    let plan = Plan::read(&s.plan_json())?;
    let order = plan.map(|p| p.lock_order).unwrap_or_default();
    let held: Vec<String> = scan(s)
        .into_iter()
        .filter(|(_, v)| v.holders.iter().any(|h| h.task == t.task))
        .map(|(n, _)| n)
        .collect();
    check_order(&order, &held, &t.task, name)?;

    let rec = LockRecord {
        task: t.task.clone(),
        attempt: t.attempt,
        shared,
        pid: std::process::id(),
        since_unix_ms: proto::now_unix_ms(),
    };
    let abort_path = s.lock_abort(name, &t.task);
    let _ = fsio::remove_file(&abort_path);
    let waiter_path = s.lock_waiter(name, &t.task);
    let waiter = publish_record(&waiter_path, &rec)?;

    let lock_path = s.lock_file(name);
    let lock = fsio::open_lock_file(&lock_path)?;
    // One channel for both wake-ups: the flock thread reporting the lock is ours, and the
    // watcher reporting that an `.abort` may have appeared (the flock result must wake us
    // at once, not at the next rescan).
    enum LockWake {
        Files,
        Acquired(std::io::Result<File>),
    }
    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        let r = if shared {
            FileExt::lock_shared(&lock)
        } else {
            FileExt::lock_exclusive(&lock)
        };
        let _ = tx2.send(LockWake::Acquired(r.map(|()| lock)));
    });
    let watch = crate::watch::start(&[s.lock_waiters(name)], wait.mode, tx, |_| {
        Some(LockWake::Files)
    })?;
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    let outcome: Result<std::result::Result<File, String>> = loop {
        let mut wait = watch.mode().rescan_interval();
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                let holders: Vec<String> = scan(s)
                    .get(name)
                    .map(|v| v.holders.iter().map(|h| h.task.clone()).collect())
                    .unwrap_or_default();
                break Err(Error::Verb(format!(
                    "lock {name}: timed out after {} (held by {})",
                    humantime::format_duration(timeout.unwrap_or_default()),
                    if holders.is_empty() {
                        "nobody now".to_string()
                    } else {
                        holders.join(", ")
                    }
                )));
            }
            wait = wait.min(left);
        }
        match rx.recv_timeout(wait) {
            Ok(LockWake::Acquired(Ok(f))) => break Ok(Ok(f)),
            Ok(LockWake::Acquired(Err(e))) => break Err(Error::io(&lock_path, "lock", e)),
            _ => {}
        }
        match fsio::read_json::<LockAbort>(&abort_path) {
            Ok(Some(abort)) => break Ok(Err(abort.cycle)),
            Ok(None) => {}
            Err(e) => break Err(e),
        }
    };
    drop(watch);
    remove_record(&waiter_path, waiter);
    let lock_file = match outcome? {
        Ok(f) => f,
        Err(cycle) => {
            let _ = fsio::remove_file(&abort_path);
            return Err(Error::Verb(format!(
                "lock {name}: deadlock: {cycle}; task {} gives up its wait",
                t.task
            )));
        }
    };
    let holder_path = s.lock_holder(name, &t.task);
    let holder = publish_record(
        &holder_path,
        &LockRecord {
            since_unix_ms: proto::now_unix_ms(),
            ..rec
        },
    )?;
    let status = Command::new(&cmd[0]).args(&cmd[1..]).status();
    remove_record(&holder_path, holder);
    drop(lock_file);
    match status {
        Ok(st) => Ok(st
            .code()
            .unwrap_or(128 + std::os::unix::process::ExitStatusExt::signal(&st).unwrap_or(0))),
        Err(e) => Err(Error::Verb(format!(
            "lock {name}: cannot run {}: {e}",
            cmd[0]
        ))),
    }
}

/// Human listing for `orchestrator locks SESSION`.
pub fn render(locks: &BTreeMap<String, LockView>) -> String {
    if locks.is_empty() {
        return "no locks\n".into();
    }
    let now = proto::now_unix_ms();
    let mut out = String::new();
    for (name, v) in locks {
        let who = |p: &Party| {
            format!(
                "{}{} ({:.1}s)",
                p.task,
                if p.shared { " shared" } else { "" },
                now.saturating_sub(p.since_unix_ms) as f64 / 1000.0
            )
        };
        let holders: Vec<String> = v.holders.iter().map(who).collect();
        let waiters: Vec<String> = v.waiters.iter().map(who).collect();
        out.push_str(&format!(
            "{name}: held by {}; waiting: {}\n",
            if holders.is_empty() {
                "-".into()
            } else {
                holders.join(", ")
            },
            if waiters.is_empty() {
                "-".into()
            } else {
                waiters.join(", ")
            },
        ));
    }
    out
}

/// Paths the orchestrator watches for lock changes.
pub fn watch_dirs(s: &Session) -> Vec<PathBuf> {
    vec![s.locks_dir()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_violation_message() {
        let order: Vec<String> = ["schema", "table", "row"].map(String::from).to_vec();
        assert!(check_order(&order, &["schema".into()], "t", "table").is_ok());
        assert!(check_order(&order, &["table".into()], "t", "unranked").is_ok());
        let e = check_order(&order, &["table".into()], "t", "schema").unwrap_err();
        assert_eq!(
            e.to_string(),
            "order violation: task t holds lock table and may not take schema (order: schema > table > row)"
        );
        assert!(check_order(&order, &["row".into()], "t", "row").is_err());
    }
}
