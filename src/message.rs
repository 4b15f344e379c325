//! Messages between tasks and the orchestrator: `worker send|recv`,
//! `orchestrator send|inbox`. This module owns `messages/`: the inbox files, the per-sender
//! sequence counters and the rules for claiming a message exactly once.
//!
//! Why it is built this way:
//! - **Many writers, one name each.** Every message is its own file,
//!   `messages/<recipient>/<sent_unix_ns:020>-<sender>-<seq:010>.json`, published with a
//!   create-exclusive link (docs/PROTOCOL.md rule 1), so concurrent senders never collide and a
//!   reader never sees half a message.
//! - **Per-sender order survives clock jumps.** `seq` comes from a counter per sender that is
//!   read, incremented and written back under an exclusive flock, and the message is
//!   published before that lock is released: a sender's message `n+1` cannot exist before its
//!   message `n` does, even when one task runs several `worker send` at once. Receivers take,
//!   for each sender, its lowest `seq` first; the wall-clock time in the name only orders
//!   different senders.
//! - **Nothing is delivered twice.** A receiver claims a message by renaming it into
//!   `read/`; rename is atomic, so when two receivers race for one file exactly one rename
//!   succeeds and the other sees `NotFound` and rescans. Delivery is at most once: a receiver
//!   killed between its rename and its print loses that message (it stays in `read/`).
//! - **Bodies are capped** at [`MAX_BODY_BYTES`] and stored as compact JSON, so a message can
//!   always be read back under the session's JSON read cap (pretty-printing a deeply nested
//!   body could multiply its size).

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use fs2::FileExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result, io_err};
use crate::fsio;
use crate::names;
use crate::session::Session;

/// The orchestrator's name as a sender and a recipient.
pub const ORCHESTRATOR: &str = "orchestrator";
/// The recipient that means "every task of the plan except the sender".
pub const ALL: &str = "all";
/// Largest body accepted, measured as compact JSON (1 MiB, like shared values).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// One message file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub from: String,
    pub to: String,
    /// Per-sender sequence number, strictly increasing across processes.
    pub seq: u64,
    pub sent_at: String,
    /// A string (`worker send TEXT`) or any JSON value (`--json`).
    pub body: Value,
}

/// How a body is printed: strings raw (for shell use), everything else as compact JSON.
pub fn display_body(body: &Value) -> String {
    match body {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The task ids of the session's plan, in plan order.
pub fn plan_tasks(s: &Session) -> Result<Vec<String>> {
    s.plan_task_ids()
}

/// A usage error unless `task` is a task of the plan.
fn check_member(s: &Session, tasks: &[String], task: &str) -> Result<()> {
    if tasks.iter().any(|t| t == task) {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "session {} has no task {task:?}",
            s.id()
        )))
    }
}

/// Who a message to `to` from `from` goes to. Tasks may write to a task, `all` or the
/// orchestrator; the orchestrator to a task or `all`. `all` and `orchestrator` are keywords:
/// they are checked before task ids.
fn recipients(tasks: &[String], from: &str, to: &str) -> Result<Vec<String>> {
    let from_orchestrator = from == ORCHESTRATOR;
    if to == ALL {
        return Ok(tasks.iter().filter(|t| *t != from).cloned().collect());
    }
    if to == ORCHESTRATOR && !from_orchestrator {
        return Ok(vec![ORCHESTRATOR.to_string()]);
    }
    if to != ORCHESTRATOR && tasks.iter().any(|t| t == to) {
        return Ok(vec![to.to_string()]);
    }
    Err(Error::Usage(if from_orchestrator {
        format!("unknown recipient {to:?}: not a task of this session or \"all\"")
    } else {
        format!("unknown recipient {to:?}: not a task of this session, \"all\" or \"orchestrator\"")
    }))
}

/// Send `body` from `from` (a task of the plan, or [`ORCHESTRATOR`]) to `to` (a task, `all`,
/// or [`ORCHESTRATOR`] when the sender is a task). Returns the files published, one per
/// recipient (`all` may mean none, in a one-task plan).
pub fn send(s: &Session, from: &str, to: &str, body: Value) -> Result<Vec<PathBuf>> {
    let tasks = plan_tasks(s)?;
    if from != ORCHESTRATOR {
        names::validate("task id", from).map_err(Error::Usage)?;
        check_member(s, &tasks, from)?;
    }
    let to_list = recipients(&tasks, from, to)?;
    let compact = serde_json::to_vec(&body).unwrap_or_default();
    if compact.len() > MAX_BODY_BYTES {
        return Err(Error::Usage(format!(
            "message is {} bytes; the limit is {MAX_BODY_BYTES} bytes (1 MiB)",
            compact.len()
        )));
    }
    for r in &to_list {
        fsio::create_dir_private(&s.inbox(r))?;
    }
    with_next_seq(s, from, |seq| {
        // Taken under the lock, after the seq: one sender's names are then also in time order
        // unless the clock jumps back, and the seq rule covers that case.
        let ns = unix_ns();
        let sent_at = crate::proto::now_rfc3339();
        let mut published = Vec::with_capacity(to_list.len());
        for r in &to_list {
            let env = Envelope {
                from: from.to_string(),
                to: r.clone(),
                seq,
                sent_at: sent_at.clone(),
                body: body.clone(),
            };
            let path = s.message(r, &file_name(ns, from, seq));
            let mut bytes = serde_json::to_vec(&env).unwrap_or_default();
            bytes.push(b'\n');
            if !fsio::create_once(&path, &bytes)? {
                // Only possible if someone reset the counter file by hand.
                return Err(Error::Session(format!(
                    "{}: already exists (was {} edited?)",
                    path.display(),
                    s.message_seq(from).display()
                )));
            }
            published.push(path);
        }
        Ok(published)
    })
}

fn unix_ns() -> u64 {
    let d = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn file_name(ns: u64, sender: &str, seq: u64) -> String {
    format!("{ns:020}-{sender}-{seq:010}.json")
}

/// Run `publish` with the sender's next sequence number, holding the sender's counter lock
/// throughout. The lock file (`messages/.seq/.<sender>.lock`) is separate from the counter
/// (`messages/.seq/<sender>`) because the counter is replaced by rename, and a lock on a
/// file that was renamed over guards nothing. A hidden name cannot clash with any sender's
/// counter, since names never start with a dot.
fn with_next_seq<T>(
    s: &Session,
    sender: &str,
    publish: impl FnOnce(u64) -> Result<T>,
) -> Result<T> {
    let counter = s.message_seq(sender);
    let lock_path = s.message_seq_lock(sender);
    if let Some(dir) = counter.parent() {
        // Sessions made before `.seq/` existed, or a person removed it.
        fsio::create_dir_private(dir)?;
    }
    let lock = fsio::open_lock_file(&lock_path)?;
    lock.lock_exclusive().map_err(io_err(&lock_path, "lock"))?;
    let last = match fsio::read_capped(&counter, 64)? {
        None => 0,
        Some(bytes) => String::from_utf8_lossy(&bytes)
            .trim()
            .parse::<u64>()
            .map_err(|e| {
                Error::Session(format!(
                    "{}: invalid sequence counter: {e}",
                    counter.display()
                ))
            })?,
    };
    let seq = last + 1;
    // Bump the counter before publishing: a crash in between leaves a gap, never a reuse.
    fsio::write_atomic(&counter, format!("{seq}\n").as_bytes())?;
    let out = publish(seq);
    // Dropping `lock` closes the fd, which releases the flock.
    drop(lock);
    out
}

/// An unread message, known from its file name alone (reading 800 files to pick one would
/// make a busy inbox quadratic).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    ns: u64,
    sender: String,
    seq: u64,
    name: String,
}

/// `<ns>-<sender>-<seq>.json`. The sender may contain dashes, the numbers cannot: split at
/// the first and the last dash. Anything else (a person's notes, temp files) is ignored.
fn parse_name(name: &str) -> Option<Pending> {
    if fsio::is_hidden(name) {
        return None;
    }
    let stem = name.strip_suffix(".json")?;
    let (ns, rest) = stem.split_once('-')?;
    let (sender, seq) = rest.rsplit_once('-')?;
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(ns) || !digits(seq) || sender.is_empty() {
        return None;
    }
    Some(Pending {
        ns: ns.parse().ok()?,
        sender: sender.to_string(),
        seq: seq.parse().ok()?,
        name: name.to_string(),
    })
}

/// Unread messages in `dir`, optionally only those from `from`. A missing inbox is empty.
fn scan(dir: &Path, from: Option<&str>) -> Result<Vec<Pending>> {
    let mut v = Vec::new();
    for name in fsio::read_names(dir)?.unwrap_or_default() {
        let Some(p) = parse_name(&name) else {
            continue;
        };
        if from.is_none_or(|f| f == p.sender) {
            v.push(p);
        }
    }
    Ok(v)
}

/// Delivery order: each sender's messages by `seq`; between senders, the head with the
/// smallest send time first (ties by sender name).
fn delivery_order(pending: Vec<Pending>) -> Vec<Pending> {
    let total = pending.len();
    let mut by_sender: BTreeMap<String, Vec<Pending>> = BTreeMap::new();
    for p in pending {
        by_sender.entry(p.sender.clone()).or_default().push(p);
    }
    let mut queues: Vec<VecDeque<Pending>> = by_sender
        .into_values()
        .map(|mut v| {
            v.sort_by_key(|p| p.seq);
            v.into()
        })
        .collect();
    let mut out = Vec::with_capacity(total);
    // `queues` is in sender order, so `min_by_key` on the time alone breaks ties by sender.
    while let Some(q) = queues
        .iter_mut()
        .filter(|q| !q.is_empty())
        .min_by_key(|q| q.front().map(|p| p.ns))
    {
        out.extend(q.pop_front());
    }
    out
}

/// Claim one message by renaming it into `read/`. `Ok(None)` when another receiver got it.
fn claim(s: &Session, recipient: &str, p: &Pending) -> Result<Option<Envelope>> {
    let src = s.message(recipient, &p.name);
    fsio::create_dir_private(&s.inbox_read(recipient))?;
    let dst = s.message_read(recipient, &p.name);
    if !fsio::claim(&src, &dst)? {
        return Ok(None);
    }
    // A person may have dropped a malformed file with a message-like name: it is now out of
    // the inbox (so it cannot block the queue) and the error names where it went.
    let env: Envelope = fsio::read_json(&dst)?
        .ok_or_else(|| Error::Session(format!("{}: vanished after claiming", dst.display())))?;
    Ok(Some(env))
}

/// Take the next unread message for `recipient` (optionally only from `from`), or `None`
/// when there is none right now.
pub fn take(s: &Session, recipient: &str, from: Option<&str>) -> Result<Option<Envelope>> {
    loop {
        let order = delivery_order(scan(&s.inbox(recipient), from)?);
        let Some(first) = order.first() else {
            return Ok(None);
        };
        if let Some(env) = claim(s, recipient, first)? {
            return Ok(Some(env));
        }
        // Lost the race for it: rescan, since that sender's next message is now its head.
    }
}

/// Take every unread message for `recipient`, in delivery order.
pub fn take_all(s: &Session, recipient: &str) -> Result<Vec<Envelope>> {
    let mut out = Vec::new();
    loop {
        let order = delivery_order(scan(&s.inbox(recipient), None)?);
        if order.is_empty() {
            return Ok(out);
        }
        for p in &order {
            // A message another receiver claimed is skipped; what we take stays in order.
            out.extend(claim(s, recipient, p)?);
        }
    }
}

/// Like [`take`], but block until a message arrives or `wait`'s timeout passes (`Ok(None)`).
pub fn wait_take(
    s: &Session,
    recipient: &str,
    from: Option<&str>,
    wait: crate::watch::Wait,
) -> Result<Option<Envelope>> {
    // Fast path: a busy inbox needs no watcher (starting one costs several milliseconds,
    // which a receiver draining hundreds of messages would pay for each).
    if let Some(env) = take(s, recipient, from)? {
        return Ok(Some(env));
    }
    let inbox = s.inbox(recipient);
    // The watcher needs the directory; creating it early is harmless (mkdir -p).
    fsio::create_dir_private(&inbox)?;
    crate::watch::wait_for(&[inbox], wait, || take(s, recipient, from))
}

/// Check a receiver and a `--from` filter: the receiver must be a task of the plan, the
/// sender a task or the orchestrator.
pub fn check_receiver(s: &Session, recipient: &str, from: Option<&str>) -> Result<()> {
    let tasks = plan_tasks(s)?;
    check_member(s, &tasks, recipient)?;
    if let Some(f) = from
        && f != ORCHESTRATOR
        && !tasks.iter().any(|t| t == f)
    {
        return Err(Error::Usage(format!(
            "unknown sender {f:?}: not a task of this session or \"orchestrator\""
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(ns: u64, sender: &str, seq: u64) -> Pending {
        Pending {
            ns,
            sender: sender.into(),
            seq,
            name: file_name(ns, sender, seq),
        }
    }

    #[test]
    fn names_round_trip_with_dashes_in_the_sender() {
        let n = file_name(42, "load-orders-2", 7);
        assert_eq!(n, "00000000000000000042-load-orders-2-0000000007.json");
        assert_eq!(parse_name(&n), Some(p(42, "load-orders-2", 7)));
        for junk in [
            "notes.txt",
            ".tmp-abc123",
            "read",
            "12-a.json",
            "x-a-1.json",
            "1--1.json",
        ] {
            assert_eq!(parse_name(junk), None, "{junk}");
        }
    }

    #[test]
    fn per_sender_order_holds_when_the_clock_jumps_back() {
        // b's clock jumped back between its messages 1 and 2.
        let order = delivery_order(vec![p(50, "b", 2), p(10, "a", 1), p(100, "b", 1)]);
        let got: Vec<_> = order.iter().map(|p| (p.sender.as_str(), p.seq)).collect();
        assert_eq!(got, [("a", 1), ("b", 1), ("b", 2)]);
    }

    #[test]
    fn equal_times_break_ties_by_sender() {
        let order = delivery_order(vec![p(5, "z", 1), p(5, "a", 1)]);
        assert_eq!(order[0].sender, "a");
    }

    #[test]
    fn recipients_resolve_keywords_and_refuse_strangers() {
        let tasks: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(recipients(&tasks, "a", "all").unwrap(), ["b", "c"]);
        assert_eq!(
            recipients(&tasks, ORCHESTRATOR, "all").unwrap(),
            ["a", "b", "c"]
        );
        assert_eq!(
            recipients(&tasks, "a", "orchestrator").unwrap(),
            ["orchestrator"]
        );
        assert_eq!(
            recipients(&tasks, "a", "zz").unwrap_err().to_string(),
            "unknown recipient \"zz\": not a task of this session, \"all\" or \"orchestrator\""
        );
        assert_eq!(
            recipients(&tasks, ORCHESTRATOR, "orchestrator")
                .unwrap_err()
                .to_string(),
            "unknown recipient \"orchestrator\": not a task of this session or \"all\""
        );
    }
}
