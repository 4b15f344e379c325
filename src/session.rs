//! The session directory: where it lives, how it is named, and the path of every file in it.
//!
//! The directory is the database. This module is the only one that knows the
//! layout (docs/PROTOCOL.md documents it); everyone else asks it for paths. Reading and
//! writing go through [`crate::fsio`].

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::{Error, Result, io_err};
use crate::fsio;

/// Default root for sessions, relative to the current directory.
pub const DEFAULT_ROOT: &str = "sessions";

/// A session directory.
#[derive(Debug, Clone)]
pub struct Session {
    root: PathBuf,
    id: String,
}

/// What [`Session::list`] found under a sessions root.
#[derive(Debug, Default)]
pub struct Listing {
    /// The sessions, oldest first.
    pub sessions: Vec<Session>,
    /// Entries that are not sessions we may use, by name.
    pub refused: Vec<Refused>,
}

/// An entry of a sessions root that [`Session::open`] refused.
#[derive(Debug, Clone)]
pub struct Refused {
    /// Its name under the root.
    pub name: String,
    /// Why it was refused ([`Session::open`]'s error, which names the path).
    pub reason: String,
    /// When it last changed (the entry itself, not a symlink's target).
    pub modified: Option<SystemTime>,
}

/// Where sessions live, found as git finds `.git`: `--sessions-dir`, else
/// `$MAESTRO_SESSIONS`, else the nearest `sessions/` directory from `cwd` upward that
/// holds a maestro session (the current directory's own `sessions/` counts even when
/// empty), else `./sessions`. `run` creates its sessions where lookups find them, so a
/// `cd` into a subdirectory of a project does not lose its sessions.
pub fn sessions_root(flag: Option<&Path>, cwd: &Path) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(v) = std::env::var_os("MAESTRO_SESSIONS")
        && !v.is_empty()
    {
        return PathBuf::from(v);
    }
    let own = cwd.join(DEFAULT_ROOT);
    if fsio::is_dir(&own) {
        return PathBuf::from(DEFAULT_ROOT);
    }
    cwd.ancestors()
        .skip(1)
        .map(|d| d.join(DEFAULT_ROOT))
        .find(|d| holds_sessions(d))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT))
}

/// Whether `dir` is a directory with at least one entry that has a `session.json`: a
/// `sessions/` of some other tool is not ours. Stops at the first one found, so a root
/// with 100,000 sessions costs one stat or few.
fn holds_sessions(dir: &Path) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        !fsio::is_hidden(&e.file_name().to_string_lossy())
            && e.path().join("session.json").is_file()
    })
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
                fsio::anchor(&root)?;
                let s = Session { root, id };
                let made = [
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
                ]
                .iter()
                .try_for_each(|d| fsio::create_dir_private(d));
                // Half a session is no session: a directory that could not be made whole
                // (a full disk) is removed, never left to be refused later.
                if let Err(e) = made {
                    let _ = fsio::remove_tree(s.root());
                    return Err(e);
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
        fsio::anchor(&root)?;
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

    /// Find a session by path, by id under `root`, or by a prefix of exactly one id
    /// under `root`; `None` means the newest one.
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
                    return Session::by_prefix(root, a);
                }
                Err(Error::NotFound(format!(
                    "no session {a:?} (not a directory, and not an id under {})",
                    root.display()
                )))
            }
            None => Session::newest(root).map(|(s, _)| s),
        }
    }

    /// The one session under `root` whose id starts with `prefix`.
    fn by_prefix(root: &Path, prefix: &str) -> Result<Session> {
        let mut names: Vec<String> = match fs::read_dir(root) {
            Ok(entries) => entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix) && !fsio::is_hidden(n))
                .collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        match names.as_slice() {
            [one] => Session::open(&root.join(one)),
            [] => Err(Error::NotFound(format!(
                "no session {prefix:?} under {} (`orchestrator list` shows them)",
                root.display()
            ))),
            many => {
                let shown: Vec<&str> = many.iter().take(5).map(String::as_str).collect();
                let more = match many.len() - shown.len() {
                    0 => String::new(),
                    n => format!(" and {n} more"),
                };
                Err(Error::NotFound(format!(
                    "{prefix:?} matches {} sessions under {}: {}{more}; give more of the id",
                    many.len(),
                    root.display(),
                    shown.join(", ")
                )))
            }
        }
    }

    /// The newest session under `root`, with the refused entries that changed after it
    /// was created: a person asking for the newest session may mean one of those, so the
    /// caller says it skipped them. With no session at all, the error names every refusal.
    pub fn newest(root: &Path) -> Result<(Session, Vec<Refused>)> {
        let Listing {
            mut sessions,
            refused,
        } = Session::list(root)?;
        let Some(s) = sessions.pop() else {
            let mut msg = format!("no sessions under {}", root.display());
            for r in &refused {
                msg.push_str(&format!("; skipped {}", r.reason));
            }
            return Err(Error::NotFound(msg));
        };
        let created = fsio::modified(&s.session_json());
        let newer = refused
            .into_iter()
            .filter(|r| match (r.modified, created) {
                (Some(m), Some(c)) => m > c,
                _ => true,
            })
            .collect();
        Ok((s, newer))
    }

    /// Every session under `root`, oldest first (by creation time in `session.json`, then
    /// id), and every entry [`Session::open`] refused, with why (hidden names are not
    /// entries: they are temp files or a person's notes).
    pub fn list(root: &Path) -> Result<Listing> {
        let entries = match fs::read_dir(root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Listing::default());
            }
            Err(e) => return Err(Error::io(root, "list", e)),
        };
        let mut found = Vec::new();
        let mut refused = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err(root, "list"))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if fsio::is_hidden(&name) {
                continue;
            }
            match Session::open(&entry.path()) {
                Ok(s) => {
                    let created =
                        fsio::modified(&s.session_json()).unwrap_or(SystemTime::UNIX_EPOCH);
                    found.push((created, s));
                }
                Err(e) => refused.push(Refused {
                    modified: fs::symlink_metadata(entry.path())
                        .and_then(|m| m.modified())
                        .ok(),
                    name,
                    reason: e.to_string(),
                }),
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
        refused.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Listing {
            sessions: found.into_iter().map(|(_, s)| s).collect(),
            refused,
        })
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
    /// One line per task, beside the summary (which stays small however many tasks).
    pub fn summary_rows(&self) -> PathBuf {
        self.root.join("summary-tasks.jsonl")
    }
    /// The session's report for people, written when the session ends (`crate::report`).
    pub fn report_md(&self) -> PathBuf {
        self.root.join("report.md")
    }
    /// The same report as JSON (bounded: what did not succeed, never every task).
    pub fn report_json(&self) -> PathBuf {
        self.root.join("report.json")
    }
    /// The report's row per task, beside it.
    pub fn report_rows(&self) -> PathBuf {
        self.root.join("report-tasks.jsonl")
    }
    /// Where `retry` moves each file of the earlier report: (from, to) pairs.
    pub fn superseded_report(&self, stamp: u64) -> [(PathBuf, PathBuf); 3] {
        let to = |stem: &str, ext: &str| self.root.join(format!("{stem}.superseded-{stamp}.{ext}"));
        [
            (self.report_md(), to("report", "md")),
            (self.report_json(), to("report", "json")),
            (self.report_rows(), to("report-tasks", "jsonl")),
        ]
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
    /// Present while the session is frozen: the worker keeps its attempt's group stopped.
    pub fn worker_freeze(&self, worker: &str) -> PathBuf {
        self.worker_dir(worker).join("freeze")
    }
    /// What the worker's running attempt uses (`usage.json`, replaced every few seconds).
    pub fn worker_usage(&self, worker: &str) -> PathBuf {
        self.worker_dir(worker).join("usage.json")
    }
    pub fn worker_kill(&self, worker: &str) -> PathBuf {
        self.worker_dir(worker).join("kill")
    }
    /// The worker's own append-only journal: what it started and how each attempt ended.
    /// It is the orchestrator's doorbell (an append creates and deletes no inode,
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
    /// Where the worker moves an assignment to claim it (an assignment queued
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
        let ids: Ids = fsio::read_json_capped(&path, crate::plan::PLAN_CAP)?
            .ok_or_else(|| Error::Session(format!("{}: missing", path.display())))?;
        Ok(ids.tasks.into_iter().map(|t| t.id).collect())
    }

    /// Whether `task` is a task of the plan. Its directory is made when it is first
    /// assigned (or decided), so a missing one means "not run yet" or "no such task".
    pub fn has_task(&self, task: &str) -> Result<bool> {
        Ok(fsio::is_dir(&self.task_dir(task)) || self.plan_task_ids()?.iter().any(|t| t == task))
    }
    pub fn outcome_json(&self, task: &str) -> PathBuf {
        self.task_dir(task).join("outcome.json")
    }
    /// The record of the task's git worktree (`worktree = true`).
    pub fn worktree_json(&self, task: &str) -> PathBuf {
        self.task_dir(task).join("worktree.json")
    }
    /// Where the git worktrees of tasks with `worktree = true` are made.
    pub fn worktrees_dir(&self) -> PathBuf {
        self.root.join("worktrees")
    }
    /// The git worktree of `task` (made by `git worktree add`, not by maestro's writes).
    pub fn worktree_dir(&self, task: &str) -> PathBuf {
        self.worktrees_dir().join(task)
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
    /// Where `retry` moves the earlier summary's rows.
    pub fn superseded_summary_rows(&self, stamp: u64) -> PathBuf {
        self.root
            .join(format!("summary-tasks.superseded-{stamp}.jsonl"))
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
    /// Where an `exit.json` the protocol does not vouch for is moved aside.
    pub fn quarantined_exit(&self, task: &str, attempt: u32, stamp: u64) -> PathBuf {
        self.attempt_dir(task, attempt)
            .join(format!("exit.json.quarantined-{stamp}"))
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

    /// Beside stdout.log: `OFFSET UNIX_MS` per piece of output as it arrived (pty and pipe
    /// logs), so logs of several tasks can be interleaved by time.
    pub fn log_index(&self, task: &str, attempt: u32) -> PathBuf {
        self.attempt_dir(task, attempt).join("stdout.log.idx")
    }

    /// What an agent task reported about itself (`worker hook`, `worker state`).
    pub fn agent_log(&self, task: &str, attempt: u32) -> PathBuf {
        self.attempt_dir(task, attempt).join("agent.jsonl")
    }

    /// The settings that make Claude Code report its state (`agent = "claude-code"`).
    pub fn claude_settings(&self, task: &str, attempt: u32) -> PathBuf {
        self.attempt_dir(task, attempt).join("claude-settings.json")
    }

    /// Rung (replaced) after each agent report, so its worker relays it at once.
    pub fn worker_agent_bell(&self, worker: &str) -> PathBuf {
        self.worker_dir(worker).join("agent")
    }

    pub fn progress_json(&self, task: &str, attempt: u32) -> PathBuf {
        self.attempt_dir(task, attempt).join("progress.json")
    }

    // ---- coordination primitives ----
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
    /// Where a freeze copies the session's state files (`snapshot/<name>/`).
    pub fn snapshot_dir(&self, name: &str) -> PathBuf {
        self.root.join("snapshot").join(name)
    }

    /// The session's state files as they are now, relative to its root: what a snapshot
    /// keeps (the journal, the plan, each task's outcome, state, retry plan, worktree
    /// record and its last attempt's exit, result and progress, and the shared values).
    /// Logs are not state.
    pub fn state_files(&self) -> Result<Vec<PathBuf>> {
        let mut v: Vec<PathBuf> = ["session.json", "plan.json", "events.jsonl"]
            .into_iter()
            .map(PathBuf::from)
            .collect();
        for id in list_names(&self.tasks_dir())? {
            let dir = PathBuf::from("tasks").join(&id);
            for f in ["outcome.json", "state.json", "retry.json", "worktree.json"] {
                v.push(dir.join(f));
            }
            if let Some(&n) = self.attempts(&id)?.last() {
                let a = dir.join(format!("attempt-{n}"));
                for f in ["exit.json", "result.json", "progress.json"] {
                    v.push(a.join(f));
                }
            }
        }
        for name in list_names(&self.shared_dir())? {
            v.push(PathBuf::from("shared").join(name));
        }
        v.retain(|rel| fsio::exists(&self.root.join(rel)));
        Ok(v)
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
    // A task's id, or an auxiliary command's name (`OWNER+KIND`, see `AuxKind::job`).
    if !crate::names::is_valid(task) && crate::proto::AuxKind::parse_job(task).is_none() {
        return None;
    }
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
    Ok(fsio::read_names(dir)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn assignment_names_round_trip_with_dotted_ids() {
        assert_eq!(parse_assignment_name("a.b.3"), Some(("a.b".into(), 3)));
        assert_eq!(parse_assignment_name("x.1"), Some(("x".into(), 1)));
        assert_eq!(parse_assignment_name(".tmp-abc"), None);
        assert_eq!(parse_assignment_name("x"), None);
        assert_eq!(parse_assignment_name("x.y"), None);
        assert_eq!(
            parse_assignment_name("a.b+cleanup.2"),
            Some(("a.b+cleanup".into(), 2)),
            "an auxiliary command's"
        );
        assert_eq!(parse_assignment_name("a+nothing.2"), None);
        assert_eq!(parse_assignment_name("../a+cleanup.2"), None);
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

    /// Set a file's or directory's modification time (and make a directory private,
    /// whatever the umask, so it is refused for what it lacks, not for its mode).
    fn touch(path: &Path, secs: u64) {
        if path.is_dir() {
            fs::set_permissions(path, fs::Permissions::from_mode(0o700)).unwrap();
        }
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        fs::File::open(path).unwrap().set_modified(t).unwrap();
    }

    #[test]
    fn list_names_what_it_refuses_and_newest_says_what_it_skipped() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let s = Session::create(root, "p").unwrap();
        fs::write(s.session_json(), b"{}").unwrap();
        touch(&s.session_json(), 2_000);
        fs::create_dir(root.join("old-stray")).unwrap();
        touch(&root.join("old-stray"), 1_000);
        fs::create_dir(root.join("new-stray")).unwrap();
        touch(&root.join("new-stray"), 3_000);
        fs::create_dir(root.join(".notes")).unwrap();
        let l = Session::list(root).unwrap();
        assert_eq!(
            l.sessions.iter().map(Session::id).collect::<Vec<_>>(),
            [s.id()]
        );
        let refused: Vec<(&str, &str)> = l
            .refused
            .iter()
            .map(|r| (r.name.as_str(), r.reason.as_str()))
            .collect();
        let why = |n: &str| {
            format!(
                "{}: is not a maestro session (no session.json)",
                root.join(n).display()
            )
        };
        assert_eq!(
            refused,
            [
                ("new-stray", why("new-stray").as_str()),
                ("old-stray", why("old-stray").as_str())
            ],
            "hidden names are not entries"
        );
        let (newest, skipped) = Session::newest(root).unwrap();
        assert_eq!(newest.id(), s.id());
        assert_eq!(
            skipped.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["new-stray"],
            "only what changed after the newest session was created"
        );
        fs::remove_dir_all(s.root()).unwrap();
        assert_eq!(
            Session::newest(root).unwrap_err().to_string(),
            format!(
                "no sessions under {}; skipped {}; skipped {}",
                root.display(),
                why("new-stray"),
                why("old-stray")
            )
        );
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            Session::resolve(empty.path(), None)
                .unwrap_err()
                .to_string(),
            format!("no sessions under {}", empty.path().display())
        );
    }

    #[test]
    fn stamp_has_date_and_time_digits() {
        let s = stamp(SystemTime::UNIX_EPOCH);
        assert_eq!(s, "19700101-000000");
    }
}
