//! The session directory: where it lives, how it is named, and the path of every file in it.
//!
//! DESIGN.md: "the directory is the database". This module is the only one that knows the
//! layout (docs/PROTOCOL.md documents it); everyone else asks it for paths. Reading and
//! writing go through [`crate::fsio`].

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::{Map, Value};

use crate::error::{Error, Result, io_err};
use crate::fsio;
use crate::proto;

/// Default root for sessions, relative to the current directory.
pub const DEFAULT_ROOT: &str = "sessions";

/// A session directory.
#[derive(Debug, Clone)]
pub struct Session {
    root: PathBuf,
    id: String,
}

/// Where sessions live: `--sessions-dir`, else `$MAESTRO_SESSIONS`, else `./sessions`.
pub fn sessions_root(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    match std::env::var_os("MAESTRO_SESSIONS") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(DEFAULT_ROOT),
    }
}

/// `YYYYMMDD-HHMMSS` in UTC.
fn stamp(now: SystemTime) -> String {
    // humantime gives `2026-11-23T06:29:04Z`; keep the digits.
    let s = humantime::format_rfc3339_seconds(now).to_string();
    let digits: String = s.chars().filter(|c| c.is_ascii_digit()).collect();
    format!("{}-{}", &digits[..8], &digits[8..14])
}

impl Session {
    /// Create a new session directory `<root>/<name>-<YYYYMMDD-HHMMSS>-<seq>` (mode 0700)
    /// with its fixed subdirectories. The sequence number makes concurrent runs of the same
    /// plan in the same second get distinct directories (mkdir is the create-exclusive step).
    pub fn create(root: &Path, name: &str) -> Result<Session> {
        fsio::create_dir_private(root)?;
        let stamp = stamp(SystemTime::now());
        for seq in 1.. {
            let id = format!("{name}-{stamp}-{seq}");
            let dir = root.join(&id);
            if fsio::create_dir_new(&dir)? {
                let root = fs::canonicalize(&dir).map_err(io_err(&dir, "resolve"))?;
                let s = Session { root, id };
                for d in [
                    s.orchestrator_dir(),
                    s.control_replies(),
                    s.checkpoints_dir(),
                    s.signals_dir(),
                    s.locks_dir(),
                    s.messages_dir().join(".seq"),
                    s.shared_dir(),
                    s.races_dir(),
                    s.markers_dir(),
                    s.workers_dir(),
                    s.tasks_dir(),
                ] {
                    fsio::create_dir_private(&d)?;
                }
                return Ok(s);
            }
        }
        unreachable!("the sequence is unbounded")
    }

    /// Open an existing session directory, checking that it is one of ours: a real directory
    /// (not a symlink), owned by us, not writable by others, with a `session.json`.
    pub fn open(dir: &Path) -> Result<Session> {
        let meta = fs::symlink_metadata(dir).map_err(io_err(dir, "open session"))?;
        if meta.file_type().is_symlink() {
            return Err(Error::Session(format!(
                "{}: is a symlink; refusing to use it as a session",
                dir.display()
            )));
        }
        if !meta.is_dir() {
            return Err(Error::Session(format!(
                "{}: is not a session directory",
                dir.display()
            )));
        }
        if meta.uid() != nix::unistd::geteuid().as_raw() {
            return Err(Error::Session(format!(
                "{}: is owned by another user",
                dir.display()
            )));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(Error::Session(format!(
                "{}: is writable by other users (mode {:o})",
                dir.display(),
                meta.mode() & 0o777
            )));
        }
        let root = fs::canonicalize(dir).map_err(io_err(dir, "resolve"))?;
        if !root.join("session.json").is_file() {
            return Err(Error::Session(format!(
                "{}: is not a maestro session (no session.json)",
                dir.display()
            )));
        }
        let id = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Session { root, id })
    }

    /// Find a session by path or by id under `root`; `None` means the newest one.
    pub fn resolve(root: &Path, arg: Option<&str>) -> Result<Session> {
        match arg {
            Some(a) => {
                let as_path = Path::new(a);
                if as_path.is_dir() {
                    return Session::open(as_path);
                }
                // An id is a plan name (≤ 64) plus `-YYYYMMDD-HHMMSS-N`: same characters,
                // longer than a name may be.
                let id_like = !a.is_empty()
                    && a.len() <= 128
                    && !a.starts_with('.')
                    && a.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
                if id_like {
                    let under = root.join(a);
                    if under.is_dir() {
                        return Session::open(&under);
                    }
                }
                Err(Error::Session(format!(
                    "no session {a:?} (not a directory, and not an id under {})",
                    root.display()
                )))
            }
            None => Session::list(root)?
                .pop()
                .ok_or_else(|| Error::Session(format!("no sessions under {}", root.display()))),
        }
    }

    /// Every session under `root`, oldest first (by creation time in `session.json`, then id).
    pub fn list(root: &Path) -> Result<Vec<Session>> {
        let entries = match fs::read_dir(root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(root, "list", e)),
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err(root, "list"))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if fsio::is_hidden(&name) {
                continue;
            }
            if let Ok(s) = Session::open(&entry.path()) {
                let created = fs::metadata(s.session_json())
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                found.push((created, s));
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
        Ok(found.into_iter().map(|(_, s)| s).collect())
    }

    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn root(&self) -> &Path {
        &self.root
    }

    // ---- top level ----
    pub fn session_json(&self) -> PathBuf {
        self.root.join("session.json")
    }
    pub fn plan_json(&self) -> PathBuf {
        self.root.join("plan.json")
    }
    pub fn events(&self) -> PathBuf {
        self.root.join("events.jsonl")
    }
    pub fn summary_json(&self) -> PathBuf {
        self.root.join("summary.json")
    }
    pub fn orchestrator_dir(&self) -> PathBuf {
        self.root.join("orchestrator")
    }
    pub fn orchestrator_lock(&self) -> PathBuf {
        self.orchestrator_dir().join("lock")
    }
    pub fn orchestrator_info(&self) -> PathBuf {
        self.orchestrator_dir().join("info.json")
    }
    pub fn control_dir(&self) -> PathBuf {
        self.root.join("control")
    }
    pub fn control_request(&self, id: &str) -> PathBuf {
        self.control_dir().join(format!("{id}.json"))
    }
    pub fn control_replies(&self) -> PathBuf {
        self.control_dir().join("replies")
    }
    pub fn control_reply(&self, id: &str) -> PathBuf {
        self.control_replies().join(format!("{id}.json"))
    }

    /// Pending control requests (ids), oldest first (ids start with a timestamp).
    pub fn control_requests(&self) -> Result<Vec<String>> {
        Ok(list_names(&self.control_dir())?
            .into_iter()
            .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
            .collect())
    }

    // ---- workers ----
    pub fn workers_dir(&self) -> PathBuf {
        self.root.join("workers")
    }
    pub fn worker_dir(&self, worker: &str) -> PathBuf {
        self.workers_dir().join(worker)
    }
    pub fn worker_json(&self, worker: &str) -> PathBuf {
        self.worker_dir(worker).join("worker.json")
    }
    pub fn worker_alive(&self, worker: &str) -> PathBuf {
        self.worker_dir(worker).join("alive")
    }
    pub fn worker_heartbeat(&self, worker: &str) -> PathBuf {
        self.worker_dir(worker).join("heartbeat")
    }
    pub fn worker_kill(&self, worker: &str) -> PathBuf {
        self.worker_dir(worker).join("kill")
    }
    /// The worker's own append-only journal: what it started and how each attempt ended.
    /// It is the orchestrator's doorbell (issue 5: an append creates and deletes no inode,
    /// where replacing a `status.json` twice per task did both).
    pub fn worker_events(&self, worker: &str) -> PathBuf {
        self.worker_dir(worker).join("events.jsonl")
    }
    pub fn worker_console(&self, worker: &str) -> PathBuf {
        self.worker_dir(worker).join("console.log")
    }
    pub fn worker_shutdown(&self, worker: &str) -> PathBuf {
        self.worker_dir(worker).join("shutdown")
    }
    pub fn assigned_dir(&self, worker: &str) -> PathBuf {
        self.worker_dir(worker).join("assigned")
    }
    pub fn assignment(&self, worker: &str, task: &str, attempt: u32) -> PathBuf {
        self.assigned_dir(worker).join(format!("{task}.{attempt}"))
    }
    /// Where the worker moves an assignment to claim it (issue 5: an assignment queued
    /// behind a running task can be withdrawn; of the worker's rename and the
    /// orchestrator's, exactly one succeeds).
    pub fn claimed_dir(&self, worker: &str) -> PathBuf {
        self.worker_dir(worker).join("claimed")
    }
    pub fn assignment_claimed(&self, worker: &str, task: &str, attempt: u32) -> PathBuf {
        self.claimed_dir(worker).join(format!("{task}.{attempt}"))
    }
    /// Where handled assignments go (renamed, not deleted: see [`Session::worker_events`]).
    pub fn done_dir(&self, worker: &str) -> PathBuf {
        self.worker_dir(worker).join("done")
    }
    pub fn assignment_done(&self, worker: &str, task: &str, attempt: u32) -> PathBuf {
        self.done_dir(worker).join(format!("{task}.{attempt}"))
    }

    /// Ids of every worker directory in the session.
    pub fn worker_ids(&self) -> Result<Vec<String>> {
        list_names(&self.workers_dir())
    }

    /// The assignments in a worker's `assigned/` directory (not claimed yet), as (task,
    /// attempt), sorted by attempt then task.
    pub fn assignments(&self, worker: &str) -> Result<Vec<(String, u32)>> {
        assignment_names(&self.assigned_dir(worker))
    }

    /// The assignments a worker claimed (`claimed/`) and whose exit was not handled yet.
    pub fn claimed_assignments(&self, worker: &str) -> Result<Vec<(String, u32)>> {
        assignment_names(&self.claimed_dir(worker))
    }

    // ---- tasks ----
    pub fn tasks_dir(&self) -> PathBuf {
        self.root.join("tasks")
    }
    pub fn task_dir(&self, task: &str) -> PathBuf {
        self.tasks_dir().join(task)
    }
    /// The task ids of the session's plan, in plan order (only the ids are parsed).
    pub fn plan_task_ids(&self) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Ids {
            tasks: Vec<Id>,
        }
        #[derive(serde::Deserialize)]
        struct Id {
            id: String,
        }
        let path = self.plan_json();
        let ids: Ids = fsio::read_json(&path)?
            .ok_or_else(|| Error::Session(format!("{}: missing", path.display())))?;
        Ok(ids.tasks.into_iter().map(|t| t.id).collect())
    }

    /// Whether `task` is a task of the plan. Its directory is made when it is first
    /// assigned (or decided), so a missing one means "not run yet" or "no such task".
    pub fn has_task(&self, task: &str) -> Result<bool> {
        Ok(self.task_dir(task).is_dir() || self.plan_task_ids()?.iter().any(|t| t == task))
    }
    pub fn outcome_json(&self, task: &str) -> PathBuf {
        self.task_dir(task).join("outcome.json")
    }
    pub fn retry_json(&self, task: &str) -> PathBuf {
        self.task_dir(task).join("retry.json")
    }
    /// Serialises `worker save` read-modify-writes of `state.json`.
    pub fn state_lock(&self, task: &str) -> PathBuf {
        self.task_dir(task).join(".state.lock")
    }
    /// Where `retry` moves a task's earlier outcome.
    pub fn superseded_outcome(&self, task: &str, stamp: u64) -> PathBuf {
        self.task_dir(task)
            .join(format!("outcome.superseded-{stamp}.json"))
    }
    /// Where `retry` moves the earlier summary.
    pub fn superseded_summary(&self, stamp: u64) -> PathBuf {
        self.root.join(format!("summary.superseded-{stamp}.json"))
    }
    pub fn state_json(&self, task: &str) -> PathBuf {
        self.task_dir(task).join("state.json")
    }
    pub fn attempt_dir(&self, task: &str, attempt: u32) -> PathBuf {
        self.task_dir(task).join(format!("attempt-{attempt}"))
    }
    pub fn exit_json(&self, task: &str, attempt: u32) -> PathBuf {
        self.attempt_dir(task, attempt).join("exit.json")
    }
    pub fn result_json(&self, task: &str, attempt: u32) -> PathBuf {
        self.attempt_dir(task, attempt).join("result.json")
    }
    pub fn stdout_log(&self, task: &str, attempt: u32) -> PathBuf {
        self.attempt_dir(task, attempt).join("stdout.log")
    }
    pub fn stderr_log(&self, task: &str, attempt: u32) -> PathBuf {
        self.attempt_dir(task, attempt).join("stderr.log")
    }

    /// The attempt numbers present on disk for a task, ascending.
    pub fn attempts(&self, task: &str) -> Result<Vec<u32>> {
        let mut v: Vec<u32> = list_names(&self.task_dir(task))?
            .iter()
            .filter_map(|n| n.strip_prefix("attempt-")?.parse().ok())
            .collect();
        v.sort_unstable();
        Ok(v)
    }

    pub fn progress_json(&self, task: &str, attempt: u32) -> PathBuf {
        self.attempt_dir(task, attempt).join("progress.json")
    }

    // ---- coordination primitives (issue 4) ----
    pub fn checkpoints_dir(&self) -> PathBuf {
        self.root.join("checkpoints")
    }
    pub fn checkpoint_dir(&self, name: &str) -> PathBuf {
        self.checkpoints_dir().join(name)
    }
    /// Created (once) by each participant when it arrives.
    pub fn checkpoint_ready(&self, name: &str, task: &str) -> PathBuf {
        self.checkpoint_dir(name).join(format!("{task}.ready"))
    }
    /// Written by the orchestrator when every participant arrived.
    pub fn checkpoint_proceed(&self, name: &str) -> PathBuf {
        self.checkpoint_dir(name).join("proceed")
    }
    /// Written by the orchestrator when a participant failed for good.
    pub fn checkpoint_broken(&self, name: &str) -> PathBuf {
        self.checkpoint_dir(name).join("broken")
    }
    pub fn signals_dir(&self) -> PathBuf {
        self.root.join("signals")
    }
    pub fn signal(&self, name: &str) -> PathBuf {
        self.signals_dir().join(name)
    }
    pub fn locks_dir(&self) -> PathBuf {
        self.root.join("locks")
    }
    /// The file whose flock is the lock.
    pub fn lock_file(&self, name: &str) -> PathBuf {
        self.locks_dir().join(format!("{name}.lock"))
    }
    pub fn lock_holders(&self, name: &str) -> PathBuf {
        self.locks_dir().join(format!("{name}.holders"))
    }
    pub fn lock_holder(&self, name: &str, task: &str) -> PathBuf {
        self.lock_holders(name).join(format!("{task}.json"))
    }
    pub fn lock_waiters(&self, name: &str) -> PathBuf {
        self.locks_dir().join(format!("{name}.wait"))
    }
    pub fn lock_waiter(&self, name: &str, task: &str) -> PathBuf {
        self.lock_waiters(name).join(format!("{task}.json"))
    }
    /// Written by the orchestrator to break a deadlock: this waiter must give up.
    pub fn lock_abort(&self, name: &str, task: &str) -> PathBuf {
        self.lock_waiters(name).join(format!("{task}.abort"))
    }
    pub fn messages_dir(&self) -> PathBuf {
        self.root.join("messages")
    }
    /// A recipient's inbox: a task id, or `orchestrator`.
    pub fn inbox(&self, recipient: &str) -> PathBuf {
        self.messages_dir().join(recipient)
    }
    /// Where consumed messages are moved (claimed by rename, so each is read once).
    pub fn inbox_read(&self, recipient: &str) -> PathBuf {
        self.inbox(recipient).join("read")
    }
    /// One message file in a recipient's inbox.
    pub fn message(&self, recipient: &str, name: &str) -> PathBuf {
        self.inbox(recipient).join(name)
    }
    /// Where a consumed message is kept.
    pub fn message_read(&self, recipient: &str, name: &str) -> PathBuf {
        self.inbox_read(recipient).join(name)
    }
    /// Per-sender sequence counters (flocked read-increment-write).
    pub fn message_seq(&self, sender: &str) -> PathBuf {
        self.messages_dir().join(".seq").join(sender)
    }
    /// The flock guarding a sender's counter (never renamed, so the lock stays valid).
    pub fn message_seq_lock(&self, sender: &str) -> PathBuf {
        self.messages_dir()
            .join(".seq")
            .join(format!(".{sender}.lock"))
    }
    pub fn shared_dir(&self) -> PathBuf {
        self.root.join("shared")
    }
    pub fn shared_value(&self, key: &str) -> PathBuf {
        self.shared_dir().join(format!("{key}.json"))
    }
    pub fn races_dir(&self) -> PathBuf {
        self.root.join("races")
    }
    pub fn race_outcome(&self, race: &str) -> PathBuf {
        self.races_dir().join(race).join("outcome.json")
    }
    pub fn markers_dir(&self) -> PathBuf {
        self.root.join("markers")
    }
    pub fn marker(&self, name: &str) -> PathBuf {
        self.markers_dir().join(name)
    }

    /// Classify a path inside this session, for filtering watcher events.
    pub fn relative<'a>(&self, path: &'a Path) -> Option<&'a Path> {
        path.strip_prefix(&self.root).ok()
    }
}

/// Parse `<task>.<attempt>` (the task id may itself contain dots).
pub fn parse_assignment_name(name: &str) -> Option<(String, u32)> {
    if fsio::is_hidden(name) {
        return None;
    }
    let (task, attempt) = name.rsplit_once('.')?;
    let attempt: u32 = attempt.parse().ok()?;
    crate::names::validate("task id", task).ok()?;
    Some((task.to_string(), attempt))
}

/// The assignment files of a directory as (task, attempt), sorted by attempt then task.
fn assignment_names(dir: &Path) -> Result<Vec<(String, u32)>> {
    let mut v: Vec<(String, u32)> = list_names(dir)?
        .into_iter()
        .filter_map(|n| parse_assignment_name(&n))
        .collect();
    v.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    Ok(v)
}

/// Names of the entries of a directory, skipping hidden and temp files; empty if missing.
fn list_names(dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, "list", e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(dir, "list"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !fsio::is_hidden(&name) {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// An append-only journal: the session's `events.jsonl` (only the orchestrator writes it)
/// or a worker's `workers/<id>/events.jsonl` (only that worker writes it).
pub struct Journal {
    path: PathBuf,
    file: File,
}

impl Journal {
    pub fn open(session: &Session) -> Result<Journal> {
        Journal::open_at(session.events())
    }

    pub fn open_worker(session: &Session, worker: &str) -> Result<Journal> {
        Journal::open_at(session.worker_events(worker))
    }

    fn open_at(path: PathBuf) -> Result<Journal> {
        let file = fsio::open_append(&path)?;
        Ok(Journal { path, file })
    }

    /// Append one event: `{"ts": ..., "event": kind, ...fields}`.
    pub fn log(&mut self, kind: &str, fields: Value) -> Result<()> {
        let mut obj = Map::new();
        obj.insert("ts".into(), Value::String(proto::now_rfc3339()));
        obj.insert("event".into(), Value::String(kind.into()));
        if let Value::Object(f) = fields {
            obj.extend(f);
        }
        let line = Value::Object(obj).to_string();
        fsio::append_line(&mut self.file, &self.path, &line)
    }
}

/// Follows a journal as it grows: each call returns the complete lines appended since the
/// last one. The orchestrator follows each worker's `events.jsonl` this way, one read(2) per
/// wake-up, instead of probing each running attempt's files (issue 5). The file stays open:
/// a journal is only ever appended to, never replaced.
pub struct JournalTail {
    path: PathBuf,
    file: Option<File>,
    /// The start of a line whose newline has not been written yet.
    partial: Vec<u8>,
}

impl JournalTail {
    pub fn new(path: PathBuf) -> JournalTail {
        JournalTail {
            path,
            file: None,
            partial: Vec::new(),
        }
    }

    /// The events appended since the last call (none while the file does not exist). A
    /// malformed line is skipped, as every journal reader does.
    pub fn read_new(&mut self) -> Result<Vec<Value>> {
        use std::io::Read;
        if self.file.is_none() {
            self.file = fsio::open_read(&self.path)?;
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(Vec::new());
        };
        // Plain reads, not `read_to_end`, which costs an fstat and an lseek per call (issue
        // 5: this runs for every busy worker on every wake-up). A short read of a regular
        // file means we are at its end for now.
        let before = self.partial.len();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let n = match file.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(&self.path, "read")(e)),
            };
            self.partial.extend_from_slice(&chunk[..n]);
            if n < chunk.len() {
                break;
            }
        }
        if self.partial.len() == before {
            return Ok(Vec::new());
        }
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Ok(Vec::new());
        };
        let out = self.partial[..end]
            .split(|&b| b == b'\n')
            .filter_map(|l| serde_json::from_slice(l).ok())
            .collect();
        self.partial.drain(..=end);
        Ok(out)
    }
}

/// The `started` line of `task`'s attempt `attempt` in worker `worker`'s journal: the
/// attempt's process and group id and start time (issue 5 moved these here from a
/// per-attempt `started.json`). The line is near the end while the attempt runs, so the
/// journal's tail is searched first, then the whole file.
pub fn started_record(
    session: &Session,
    worker: &str,
    task: &str,
    attempt: u32,
) -> Result<Option<proto::Started>> {
    use std::io::{Read, Seek, SeekFrom};
    const TAIL: u64 = 64 * 1024;
    let path = session.worker_events(worker);
    let Some(mut file) = fsio::open_read(&path)? else {
        return Ok(None);
    };
    let len = file.metadata().map_err(io_err(&path, "read"))?.len();
    let find = |buf: &[u8]| {
        buf.split(|&b| b == b'\n').rev().find_map(|l| {
            let v: Value = serde_json::from_slice(l).ok()?;
            (v["event"] == "started" && v["task"] == task && v["attempt"] == attempt)
                .then(|| serde_json::from_value::<proto::Started>(v).ok())
                .flatten()
        })
    };
    let mut from = len.saturating_sub(TAIL);
    loop {
        file.seek(SeekFrom::Start(from))
            .map_err(io_err(&path, "read"))?;
        let mut buf = Vec::new();
        (&mut file)
            .take(len - from)
            .read_to_end(&mut buf)
            .map_err(io_err(&path, "read"))?;
        if let Some(st) = find(&buf) {
            return Ok(Some(st));
        }
        if from == 0 {
            return Ok(None);
        }
        from = 0;
    }
}

/// The journal's events of one kind, parsed; lines of other kinds are skipped unparsed (a
/// 10 000-task journal holds tens of thousands of lines), so is a partial last line.
pub fn events_of_kind(session: &Session, kind: &str) -> Result<Vec<Value>> {
    use std::io::BufRead;
    let path = session.events();
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&path, "read", e)),
    };
    let needle = format!("\"event\":\"{kind}\"");
    let mut out = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line.map_err(io_err(&path, "read"))?;
        if line.contains(&needle)
            && let Ok(v) = serde_json::from_str::<Value>(&line)
            && v["event"] == kind
        {
            out.push(v);
        }
    }
    Ok(out)
}

/// The last complete event of a journal (a worker's: what it does now), reading only the
/// file's tail. `Ok(None)` when the file is missing or holds no complete line.
pub fn last_event(path: &Path) -> Result<Option<Value>> {
    use std::io::{Read, Seek, SeekFrom};
    const TAIL: u64 = 8192;
    let mut file = match fsio::open_read(path)? {
        Some(f) => f,
        None => return Ok(None),
    };
    let len = file.metadata().map_err(io_err(path, "read"))?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(TAIL)))
        .map_err(io_err(path, "read"))?;
    let mut buf = Vec::with_capacity(TAIL as usize);
    file.take(TAIL)
        .read_to_end(&mut buf)
        .map_err(io_err(path, "read"))?;
    // Only lines ended by a newline are complete (a crash may leave a partial last one).
    let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
        return Ok(None);
    };
    Ok(buf[..end]
        .split(|&b| b == b'\n')
        .rev()
        .find_map(|l| serde_json::from_slice(l).ok()))
}

/// Read the journal: each complete line as JSON; a malformed or partial line is skipped
/// (a crash may leave a partial last line).
pub fn read_events(session: &Session) -> Result<Vec<Value>> {
    let path = session.events();
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&path, "read", e)),
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_tail_returns_each_complete_line_once() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("events.jsonl");
        let mut tail = JournalTail::new(p.clone());
        let mut ns = || -> Vec<Value> {
            let lines = tail.read_new().unwrap();
            lines.iter().map(|v| v["n"].clone()).collect()
        };
        assert!(ns().is_empty(), "no file yet");
        let mut f = fsio::open_append(&p).unwrap();
        use std::io::Write;
        f.write_all(b"{\"n\":1}\n{\"n\":2}\n{\"n\":").unwrap();
        assert_eq!(ns(), vec![1, 2]);
        assert!(ns().is_empty(), "the partial line waits");
        f.write_all(b"3}\nnot json\n{\"n\":4}\n").unwrap();
        assert_eq!(ns(), vec![3, 4]);
        // More than one read's worth at once (the reader reads 16 KiB at a time), and
        // exactly one read's worth.
        let many: String = (5..3005).map(|n| format!("{{\"n\":{n}}}\n")).collect();
        f.write_all(many.as_bytes()).unwrap();
        assert_eq!(ns(), (5..3005).collect::<Vec<_>>());
        let pad = 16 * 1024 - "{\"n\":9,\"p\":\"\"}\n".len();
        let exact = format!("{{\"n\":9,\"p\":\"{}\"}}\n", "x".repeat(pad));
        assert_eq!(exact.len(), 16 * 1024);
        f.write_all(exact.as_bytes()).unwrap();
        assert_eq!(ns(), vec![9]);
        assert!(ns().is_empty());
    }

    #[test]
    fn started_record_finds_the_line_of_that_attempt_beyond_the_tail() {
        let d = tempfile::tempdir().unwrap();
        let s = Session::create(d.path(), "t").unwrap();
        fsio::create_dir_private(&s.worker_dir("w1")).unwrap();
        let mut j = Journal::open_worker(&s, "w1").unwrap();
        let started = |task: &str, attempt: u32, pid: u32| {
            serde_json::to_value(proto::Started {
                task: task.into(),
                attempt,
                worker: "w1".into(),
                pid,
                pgid: pid,
                started_at: "x".into(),
                started_unix_ms: 1,
                proc_start: None,
                boot_id: None,
            })
            .unwrap()
        };
        j.log("started", started("a", 1, 100)).unwrap();
        // Push a's line out of the 64 KiB tail that is searched first.
        for i in 0..2000 {
            j.log("started", started(&format!("filler{i}"), 1, 7))
                .unwrap();
        }
        j.log("started", started("a", 2, 200)).unwrap();
        let pid = |n| started_record(&s, "w1", "a", n).unwrap().map(|st| st.pgid);
        assert_eq!(pid(1), Some(100));
        assert_eq!(pid(2), Some(200));
        assert_eq!(pid(3), None);
        assert!(started_record(&s, "w9", "a", 1).unwrap().is_none());
    }

    #[test]
    fn assignment_names_round_trip_with_dotted_ids() {
        assert_eq!(parse_assignment_name("a.b.3"), Some(("a.b".into(), 3)));
        assert_eq!(parse_assignment_name("x.1"), Some(("x".into(), 1)));
        assert_eq!(parse_assignment_name(".tmp-abc"), None);
        assert_eq!(parse_assignment_name("x"), None);
        assert_eq!(parse_assignment_name("x.y"), None);
    }

    #[test]
    fn create_makes_private_unique_directories() {
        let d = tempfile::tempdir().unwrap();
        let a = Session::create(d.path(), "p").unwrap();
        let b = Session::create(d.path(), "p").unwrap();
        assert_ne!(a.id(), b.id());
        assert!(a.id().starts_with("p-"));
        let mode = fs::metadata(a.root()).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert!(a.tasks_dir().is_dir() && a.workers_dir().is_dir());
    }

    #[test]
    fn open_refuses_symlinked_session() {
        let d = tempfile::tempdir().unwrap();
        let s = Session::create(d.path(), "p").unwrap();
        fs::write(s.session_json(), b"{}").unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(s.root(), &link).unwrap();
        let err = Session::open(&link).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}: is a symlink; refusing to use it as a session",
                link.display()
            )
        );
        assert!(Session::open(s.root()).is_ok());
    }

    #[test]
    fn last_event_skips_a_partial_last_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("events.jsonl");
        assert_eq!(last_event(&p).unwrap(), None);
        fs::write(
            &p,
            b"{\"event\":\"ready\"}\n{\"event\":\"started\"}\n{\"event\":\"exi",
        )
        .unwrap();
        assert_eq!(last_event(&p).unwrap().unwrap()["event"], "started");
        fs::write(&p, b"{\"event\":\"rea").unwrap();
        assert_eq!(last_event(&p).unwrap(), None);
        // Only the tail is read: a long journal still gives its last line.
        let mut long = Vec::new();
        for i in 0..5000 {
            long.extend_from_slice(format!("{{\"event\":\"exited\",\"n\":{i}}}\n").as_bytes());
        }
        fs::write(&p, &long).unwrap();
        assert_eq!(last_event(&p).unwrap().unwrap()["n"], 4999);
    }

    #[test]
    fn stamp_has_date_and_time_digits() {
        let s = stamp(SystemTime::UNIX_EPOCH);
        assert_eq!(s, "19700101-000000");
    }
}
