//! Named locks for task scripts: `worker lock NAME [--shared] -- CMD` runs CMD
//! holding a lock, a lock hierarchy (`[locks] order`), and the wait-for graph the
//! orchestrator uses to break deadlocks.
//!
//! The lock itself is an flock on `locks/<name>.lock`, so the kernel releases it when the
//! holder dies, however it dies. Who holds and who waits is visible as files
//! (`<name>.holders/<task>.json`, `<name>.wait/<task>.json`); each such record is itself
//! flocked by the process it describes, so a record whose flock is free is stale (its
//! writer died) and is ignored. The deadlock decision ([`find_deadlock`]) is pure.

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

/// A live holder or waiter of a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    pub task: String,
    pub shared: bool,
    pub since_unix_ms: u64,
}

/// Holders and waiters of one lock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockView {
    pub holders: Vec<Party>,
    pub waiters: Vec<Party>,
}

fn live_records(dir: &Path) -> Vec<LockRecord> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if fsio::is_hidden(&name) || !name.ends_with(".json") {
            continue;
        }
        let p = e.path();
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
    let Ok(entries) = std::fs::read_dir(s.locks_dir()) else {
        return out;
    };
    for e in entries.flatten() {
        let fname = e.file_name().to_string_lossy().into_owned();
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

/// A deadlock to break: who gives up which wait, and the cycle in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadlock {
    pub victim: String,
    pub lock: String,
    pub cycle: String,
    /// The exact records (start times) behind the cycle: two sightings are the same
    /// deadlock only if the same waits and holds are involved.
    pub key: Vec<u64>,
}

/// Find a cycle in the wait-for graph (task A waits for a lock task B holds, in a mode that
/// conflicts) and choose whose wait fails: the lowest `priority`, ties going to the task
/// that started waiting last. Pure: the orchestrator feeds it [`scan`]'s view.
pub fn find_deadlock(
    locks: &BTreeMap<String, LockView>,
    priority: &dyn Fn(&str) -> i64,
) -> Option<Deadlock> {
    // Edges: waiter -> (holder, lock waited for).
    let mut edges: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for (name, v) in locks {
        for w in &v.waiters {
            for h in &v.holders {
                if !(w.shared && h.shared) {
                    edges.entry(&w.task).or_default().push((&h.task, name));
                }
            }
        }
    }
    // Iterative DFS from each node in order; the first back edge closes a cycle. `done`
    // holds nodes fully explored without finding one, so each is explored once.
    let mut done: std::collections::BTreeSet<&str> = Default::default();
    for &start in edges.keys() {
        if done.contains(start) {
            continue;
        }
        let mut stack: Vec<(&str, usize)> = vec![(start, 0)];
        let mut via: Vec<&str> = vec![""];
        while let Some(&(node, idx)) = stack.last() {
            let out = edges.get(node).map(Vec::as_slice).unwrap_or(&[]);
            if idx >= out.len() {
                done.insert(node);
                stack.pop();
                via.pop();
                continue;
            }
            let depth = stack.len() - 1;
            stack[depth].1 += 1;
            let (to, lock) = out[idx];
            via[depth] = lock;
            if let Some(pos) = stack.iter().position(|(n, _)| *n == to) {
                let cycle: Vec<(&str, &str)> =
                    (pos..stack.len()).map(|i| (stack[i].0, via[i])).collect();
                return Some(describe(locks, &cycle, priority));
            }
            if !done.contains(to) {
                stack.push((to, 0));
                via.push("");
            }
        }
    }
    None
}

/// Choose the victim of a cycle of (task, lock it waits for) and say it in words.
fn describe(
    locks: &BTreeMap<String, LockView>,
    cycle: &[(&str, &str)],
    priority: &dyn Fn(&str) -> i64,
) -> Deadlock {
    let waited = |t: &str, l: &str| {
        locks
            .get(l)
            .and_then(|v| v.waiters.iter().find(|w| w.task == t))
            .map_or(0, |w| w.since_unix_ms)
    };
    let (victim, lock) = cycle
        .iter()
        .copied()
        .min_by(|a, b| {
            priority(a.0)
                .cmp(&priority(b.0))
                .then_with(|| waited(b.0, b.1).cmp(&waited(a.0, a.1)))
        })
        .unwrap_or(cycle[0]);
    let words: Vec<String> = cycle
        .iter()
        .map(|(t, l)| format!("{t} waits for {l}"))
        .collect();
    let held_by: Vec<String> = cycle
        .iter()
        .enumerate()
        .map(|(i, (_, l))| format!("{l} held by {}", cycle[(i + 1) % cycle.len()].0))
        .collect();
    let held = |t: &str, l: &str| {
        locks
            .get(l)
            .and_then(|v| v.holders.iter().find(|h| h.task == t))
            .map_or(0, |h| h.since_unix_ms)
    };
    let key = cycle
        .iter()
        .enumerate()
        .flat_map(|(i, (t, l))| [waited(t, l), held(cycle[(i + 1) % cycle.len()].0, l)])
        .collect();
    Deadlock {
        victim: victim.to_string(),
        lock: lock.to_string(),
        cycle: format!("{} ({})", words.join(", "), held_by.join(", ")),
        key,
    }
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
    let f = File::open(path).map_err(io_err(path, "open"))?;
    f.lock_exclusive().map_err(io_err(path, "lock"))?;
    Ok(f)
}

fn remove_record(path: &Path, f: File) {
    let _ = std::fs::remove_file(path);
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
    let plan: Option<Plan> = fsio::read_json(&s.plan_json())?;
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
    let _ = std::fs::remove_file(&abort_path);
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
            let _ = std::fs::remove_file(&abort_path);
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

    fn party(task: &str, since: u64) -> Party {
        Party {
            task: task.into(),
            shared: false,
            since_unix_ms: since,
        }
    }

    #[test]
    fn two_task_deadlock_picks_lowest_priority_then_latest_waiter() {
        let mut locks = BTreeMap::new();
        locks.insert(
            "x".to_string(),
            LockView {
                holders: vec![party("a", 1)],
                waiters: vec![party("b", 20)],
            },
        );
        locks.insert(
            "y".to_string(),
            LockView {
                holders: vec![party("b", 2)],
                waiters: vec![party("a", 10)],
            },
        );
        let d = find_deadlock(&locks, &|_| 0).unwrap();
        assert_eq!(d.victim, "b", "equal priority: the latest to wait gives up");
        assert_eq!(d.lock, "x");
        assert_eq!(
            d.cycle,
            "a waits for y, b waits for x (y held by b, x held by a)"
        );
        let d = find_deadlock(&locks, &|t| if t == "a" { -1 } else { 0 }).unwrap();
        assert_eq!(d.victim, "a", "lowest priority gives up");
    }

    #[test]
    fn shared_holders_do_not_block_shared_waiters() {
        let mut locks = BTreeMap::new();
        let sh = |t: &str| Party {
            shared: true,
            ..party(t, 1)
        };
        locks.insert(
            "x".to_string(),
            LockView {
                holders: vec![sh("a")],
                waiters: vec![sh("b")],
            },
        );
        locks.insert(
            "y".to_string(),
            LockView {
                holders: vec![sh("b")],
                waiters: vec![sh("a")],
            },
        );
        assert_eq!(find_deadlock(&locks, &|_| 0), None);
    }

    #[test]
    fn no_cycle_no_deadlock() {
        let mut locks = BTreeMap::new();
        locks.insert(
            "x".to_string(),
            LockView {
                holders: vec![party("a", 1)],
                waiters: vec![party("b", 2)],
            },
        );
        assert_eq!(find_deadlock(&locks, &|_| 0), None);
    }

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
