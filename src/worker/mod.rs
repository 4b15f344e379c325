//! The worker: the loop that runs in each terminal. It registers (flock on `alive` for its
//! whole life, then `worker.json`), waits for assignments in `workers/<id>/assigned/`
//! (notify wake-ups plus a slow rescan), runs each task in its own process group with its
//! output logged (and shown when a terminal is attached), records `exit.json`, and exits
//! when the orchestrator writes `shutdown`. Where cgroup v2 allows, each attempt also runs
//! in a cgroup of its own (src/cgroup.rs), which its stops reach too. `wait.rs` is the
//! wait for a running attempt (its timeout, stops, Ctrl-Z on a pty), `agent.rs` what an
//! agent task's worker does for its agent.

mod agent;
mod wait;

use std::io::{IsTerminal, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use fs2::FileExt;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::bell::Bell;
use crate::cgroup::Leaf;
use crate::error::{Error, Result};
use crate::fsio;
use crate::journal::{Journal, WorkerEvent};
use crate::names;
use crate::plan::TaskCommand;
use crate::proto::{
    self, Assignment, ExitRecord, Heartbeat, Shutdown, ShutdownReason, Started, WorkerInfo,
};
use crate::session::Session;
use crate::watch::{self, WatchMode};
use wait::Stopped;

/// How often a task's exit is looked for where the kernel has no pidfd (Linux < 5.3).
const NO_PIDFD_POLL: Duration = Duration::from_millis(5);

/// A validated worker configuration (from `worker --session DIR --id ID`).
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub session_dir: PathBuf,
    pub id: String,
    pub watch: WatchMode,
    /// Launcher name recorded in `worker.json`.
    pub launcher: String,
    /// Keep running (so a tmux window stays open) after a task failed, until the session
    /// ends.
    pub hold_failed: bool,
    pub durable: bool,
}

/// Host name for records, or "unknown".
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

struct Worker {
    cfg: WorkerConfig,
    session: Session,
    tee: bool,
    failed: Vec<String>,
    /// Rung by the watcher when something arrived in our directory (assignment, shutdown,
    /// kill request); waited on together with the running task's pidfd.
    bell: Arc<Bell>,
    /// Running a task: an assignment queued behind it need not wake us (we look in
    /// `assigned/` when the task ends); a kill request still does.
    busy: Arc<AtomicBool>,
    /// `workers/<id>/events.jsonl`: started / exited lines, the orchestrator's doorbell.
    journal: Journal,
    /// Tasks' PATH: our own directory first (so `worker <verb>` works), then ours.
    path: std::ffi::OsString,
    /// Program name → path found on `path`; searching PATH per task costs a failed
    /// execve per directory before the right one.
    resolved: std::collections::HashMap<String, PathBuf>,
    /// This host's boot id, recorded with each attempt's process identity.
    boot_id: Option<String>,
    /// Whether our records are fsync'd (`--durable`).
    fs: fsio::Fs,
    /// Our directory of per-attempt cgroups, where they can be used.
    cgroup: Option<crate::cgroup::Tree>,
}

/// Run a worker until the orchestrator tells it to stop. Returns the exit code.
pub fn run(cfg: WorkerConfig) -> Result<i32> {
    names::validate("worker id", &cfg.id).map_err(Error::Usage)?;
    let fs = fsio::Fs::new(cfg.durable);
    let session = Session::open(&cfg.session_dir)?;
    fsio::create_dir_private(&session.assigned_dir(&cfg.id))?;
    fsio::create_dir_private(&session.claimed_dir(&cfg.id))?;

    // Liveness (invariant 4): the kernel drops this lock when we die, however we die. Rust
    // opens files close-on-exec, so no task inherits it.
    let alive_path = session.worker_alive(&cfg.id);
    let alive = fsio::open_lock_file(&alive_path)?;
    if alive.try_lock_exclusive().is_err() {
        return Err(Error::Session(format!(
            "worker {} is already running in {} (its alive lock is held)",
            cfg.id,
            session.root().display()
        )));
    }
    // Released before our watcher's inotify instance when we die, so the orchestrator
    // learns of the death at once (see fsio::raise_fd).
    let alive = fsio::raise_fd(alive);

    let terminal = std::env::var("TMUX_PANE")
        .ok()
        .or_else(|| std::io::stdout().is_terminal().then(|| "tty".to_string()));
    let info = WorkerInfo {
        id: cfg.id.clone(),
        pid: std::process::id(),
        host: hostname(),
        launcher: cfg.launcher.clone(),
        terminal,
        // `$TMUX` is `SOCKET,PID,SESSION`.
        tmux_socket: std::env::var("TMUX")
            .ok()
            .and_then(|t| t.split(',').next().map(str::to_string))
            .filter(|s| !s.is_empty()),
        started_at: proto::now_rfc3339(),
        protocol: Some(proto::PROTOCOL_VERSION),
    };
    let journal = Journal::open_worker(&session, &cfg.id, fs)?;
    let mut w = Worker {
        tee: std::io::stdout().is_terminal(),
        session,
        cfg,
        failed: Vec::new(),
        bell: Arc::new(Bell::new()?),
        busy: Arc::new(AtomicBool::new(false)),
        journal,
        path: path_with_our_dir(),
        resolved: Default::default(),
        boot_id: crate::process::boot_id(),
        fs,
        cgroup: None,
    };
    // worker.json first: the `ready` line is what wakes the orchestrator, which watches
    // our journal, not our directory, and reads worker.json when it wakes.
    w.fs.write_json(&w.session.worker_json(&w.cfg.id), &info)?;
    w.journal.append_worker(&WorkerEvent::Ready {
        pid: std::process::id(),
        protocol: Some(proto::PROTOCOL_VERSION),
    })?;

    // After `ready`: the orchestrator's first assignment and this overlap.
    match crate::cgroup::for_worker(w.session.id(), &w.cfg.id) {
        Ok(tree) => {
            w.say(&tree.describe());
            w.cgroup = Some(tree);
        }
        Err(why) => w.say(&format!(
            "cgroups not used ({why}): attempts are stopped by process group and measured \
             by PSS"
        )),
    }

    let (stop, hb) = heartbeat(w.session.worker_heartbeat(&w.cfg.id));
    let result = w.main_loop();
    drop(stop);
    let _ = hb.join();
    if let Some(tree) = w.cgroup.take()
        && let Err(e) = tree.remove()
    {
        w.say(&e);
    }
    let _ = w.journal.append_worker(&WorkerEvent::Stopped {});
    drop(alive);
    result
}

/// Bump the heartbeat counter every second until `stop` is dropped (the orchestrator uses
/// it to find workers that are alive but stuck). A channel, not a flag polled between
/// sleeps, so a worker told to stop exits at once (a 100 ms poll added up to 100 ms to
/// every session's end).
fn heartbeat(path: PathBuf) -> (mpsc::Sender<()>, thread::JoinHandle<()>) {
    let (stop, stopped) = mpsc::channel::<()>();
    let handle = thread::spawn(move || {
        let mut counter = 0u64;
        loop {
            counter += 1;
            // A failed heartbeat write is not fatal: the orchestrator will judge us by it.
            // Never fsync'd: a counter judged by how it moves, rewritten every second.
            let _ = fsio::write_json(&path, &Heartbeat { counter });
            match stopped.recv_timeout(Duration::from_secs(1)) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    });
    (stop, handle)
}

impl Worker {
    /// Where `prog` is on the tasks' PATH (cached); names with a slash, or not found,
    /// are left to the OS (which then reports the error).
    fn resolve(&mut self, prog: &str) -> PathBuf {
        if prog.contains('/') {
            return PathBuf::from(prog);
        }
        if let Some(p) = self.resolved.get(prog)
            && p.is_file()
        {
            return p.clone();
        }
        use std::os::unix::fs::PermissionsExt;
        let found = std::env::split_paths(&self.path)
            .map(|d| d.join(prog))
            .find(|c| {
                std::fs::metadata(c)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            });
        match found {
            Some(p) => {
                self.resolved.insert(prog.to_string(), p.clone());
                p
            }
            None => PathBuf::from(prog),
        }
    }

    fn say(&self, msg: &str) {
        if self.tee {
            // A closed terminal must not panic the worker mid-task. The carriage return
            // ends the line as it should while a task's relay has our terminal in raw mode.
            let _ = write!(
                std::io::stdout(),
                "\x1b[1m[maestro {}] {msg}\x1b[0m\r\n",
                self.cfg.id
            );
        } else {
            let _ = writeln!(std::io::stdout(), "[maestro {}] {msg}", self.cfg.id);
        }
    }

    fn main_loop(&mut self) -> Result<i32> {
        // Arrivals only, in our directory and `assigned/`: our own journal
        // appends, console lines and claim renames are then no events at all.
        let spec = watch::Spec::new(watch::Kinds::Arrivals)
            .flat(self.session.worker_dir(&self.cfg.id))
            .flat(self.session.assigned_dir(&self.cfg.id));
        let bell = self.bell.clone();
        let busy = self.busy.clone();
        let _watch = watch::start_hook(&spec, self.cfg.watch, move |ev| {
            let news = watch::event_touches(&ev, |p| wakes_worker(p, busy.load(Ordering::SeqCst)));
            if news {
                bell.ring();
            }
        })?;
        self.cfg.watch = _watch.mode();
        let mut held_said = false;
        self.say(&format!("ready (pid {})", std::process::id()));
        loop {
            let mut ran = false;
            for (task, attempt) in self.in_handover_order()? {
                // Claim it first: the orchestrator may withdraw an assignment
                // queued behind our running task, and of its rename and ours exactly one
                // succeeds.
                let id = &self.cfg.id;
                if !self.fs.claim(
                    &self.session.assignment(id, &task, attempt),
                    &self.session.assignment_claimed(id, &task, attempt),
                )? {
                    continue;
                }
                self.run_assignment(&task, attempt)?;
                ran = true;
                break;
            }
            if ran {
                continue;
            }
            if let Some(sd) =
                fsio::read_json::<Shutdown>(&self.session.worker_shutdown(&self.cfg.id))?
            {
                let hold = self.cfg.hold_failed
                    && !self.failed.is_empty()
                    && sd.reason == ShutdownReason::Idle;
                if sd.reason == ShutdownReason::Lost {
                    self.say(
                        "the orchestrator gave up on this worker (it was unresponsive); exiting",
                    );
                    return Ok(0);
                }
                if !hold {
                    self.say("session over; exiting");
                    return Ok(0);
                }
                if !held_said {
                    self.say(&format!(
                        "task {} failed: this window stays open until the session ends",
                        self.failed.join(", ")
                    ));
                    held_said = true;
                }
            }
            self.bell.wait(None, self.cfg.watch.rescan_interval())?;
            self.check_dir()?;
        }
    }

    /// Our directory (or the whole session) was removed under us: nothing we do can be
    /// seen any more, so stop rather than run on unseen (the orchestrator sees our death
    /// and gives the task to another worker). The session's root is looked up by its path
    /// first: below it we see through the descriptor we anchored it with, which still
    /// reaches a session moved away or on a file system unmounted under us (a worker left
    /// by a failed full-disk test ran on for good after the test's cleanup did that).
    fn check_dir(&self) -> Result<()> {
        let root = self.session.root();
        let dir = self.session.worker_dir(&self.cfg.id);
        let gone = if !fsio::root_still_there(root) {
            root
        } else if !fsio::is_dir(&dir) {
            &dir
        } else {
            return Ok(());
        };
        Err(Error::Session(format!(
            "{}: removed while worker {} was running; stopping",
            gone.display(),
            self.cfg.id
        )))
    }

    /// Unclaimed assignments in the order the orchestrator handed them over (`seq`): with
    /// one queued behind another, the first must run first. Usually there is one,
    /// which needs no reading; an unreadable one sorts last (running it reports why).
    fn in_handover_order(&self) -> Result<Vec<(String, u32)>> {
        let mut v = self.session.assignments(&self.cfg.id)?;
        if v.len() > 1 {
            v.sort_by_cached_key(|(task, attempt)| {
                let path = self.session.assignment(&self.cfg.id, task, *attempt);
                fsio::read_json::<Assignment>(&path)
                    .ok()
                    .flatten()
                    .map_or(u64::MAX, |a| a.seq)
            });
        }
        Ok(v)
    }

    fn run_assignment(&mut self, task: &str, attempt: u32) -> Result<()> {
        self.busy.store(true, Ordering::SeqCst);
        // Cleared before the loop looks in `assigned/` again, so an assignment arriving
        // after that look rings the bell.
        let r = self.run_assignment_inner(task, attempt);
        self.busy.store(false, Ordering::SeqCst);
        r
    }

    fn run_assignment_inner(&mut self, task: &str, attempt: u32) -> Result<()> {
        let path = self.session.assignment_claimed(&self.cfg.id, task, attempt);
        let started_at = proto::now_rfc3339();
        let t0 = Instant::now();
        // Something planted where the attempt's files belong fails the attempt, not the
        // worker: the exit still reaches the orchestrator through our journal.
        let made = match fsio::create_dir_private(&self.session.attempt_dir(task, attempt)) {
            Err(e) if !matches!(e, Error::Refused { .. }) => return Err(e),
            made => made,
        };
        if made.is_ok() {
            self.quarantine_exit(task, attempt)?;
        }
        let record = match made.and_then(|()| fsio::read_json::<Assignment>(&path)) {
            Ok(Some(a)) if a.task == task && a.attempt == attempt => match self.execute(&a) {
                Err(e @ Error::Refused { .. }) => {
                    self.failed_record(task, attempt, &started_at, t0, e.to_string())
                }
                r => r?,
            },
            Ok(Some(_)) => self.failed_record(
                task,
                attempt,
                &started_at,
                t0,
                format!(
                    "{}: assignment does not match its file name",
                    path.display()
                ),
            ),
            Ok(None) => return Ok(()), // withdrawn before we saw it
            Err(e) => self.failed_record(task, attempt, &started_at, t0, e.to_string()),
        };
        if !record.succeeded() {
            self.failed.push(task.to_string());
        }
        // The file first, then the journal line that vouches for it: the exit counts only
        // once both are written (an `exit.json` no line vouches for is quarantined, and
        // the attempt runs again), so a full disk or a death in between loses no outcome
        // and never records half of one.
        match self
            .fs
            .write_json_new(&self.session.exit_json(task, attempt), &record)
        {
            Err(e @ Error::Refused { .. }) => self.say(&format!("error: {e}")),
            r => r?,
        }
        let how = match record.failure_reason() {
            None if record.ended_on.is_some() => "succeeded (its agent went idle)".to_string(),
            None => "succeeded".to_string(),
            Some(r) => format!("failed: {r}"),
        };
        let secs = record.duration_ms as f64 / 1000.0;
        // The whole record, not just the exit code: the orchestrator takes the exit from
        // this line and reads no `exit.json` at all.
        self.journal.append_worker(&WorkerEvent::Exited(record))?;
        self.say(&format!(
            "task {task} (attempt {attempt}) {how} after {secs:.1}s"
        ));
        Ok(())
    }

    /// An `exit.json` of an attempt that has not run yet is nobody's: move it aside (and
    /// say so in our journal) so that only the record we write counts.
    fn quarantine_exit(&mut self, task: &str, attempt: u32) -> Result<()> {
        let from = self.session.exit_json(task, attempt);
        if !fsio::exists(&from) {
            return Ok(());
        }
        let to = self
            .session
            .quarantined_exit(task, attempt, proto::now_unix_ms());
        fsio::move_aside(&from, &to)?;
        self.say(&format!(
            "{}: was there before the attempt ran; moved aside to {}",
            from.display(),
            to.display()
        ));
        self.journal.append_worker(&WorkerEvent::Quarantined {
            task: task.into(),
            attempt,
            path: from.display().to_string(),
            to: to.display().to_string(),
        })
    }

    fn failed_record(
        &self,
        task: &str,
        attempt: u32,
        started_at: &str,
        t0: Instant,
        error: String,
    ) -> ExitRecord {
        ExitRecord {
            task: task.into(),
            attempt,
            worker: self.cfg.id.clone(),
            exit_code: None,
            signal: None,
            started_at: started_at.into(),
            ended_at: proto::now_rfc3339(),
            duration_ms: t0.elapsed().as_millis() as u64,
            timed_out: false,
            killed_by: None,
            spawn_error: Some(error),
            result_error: None,
            has_result: false,
            ended_on: None,
        }
    }

    /// Run one attempt to its end and describe how it ended.
    fn execute(&mut self, a: &Assignment) -> Result<ExitRecord> {
        let s = &self.session.clone();
        let (task, attempt) = (a.task.as_str(), a.attempt);
        let started_at = proto::now_rfc3339();
        let t0 = Instant::now();
        self.say(&format!("task {task} (attempt {attempt}) starting"));

        let command = match self.prepare_agent(a) {
            Ok(c) => c,
            Err(e) => {
                let msg = format!("cannot prepare the agent's settings: {e}");
                return Ok(self.failed_record(task, attempt, &started_at, t0, msg));
            }
        };
        let mut cmd = match &command {
            TaskCommand::Shell(script) => {
                let mut c = Command::new(self.resolve("sh"));
                c.arg0("sh").arg("-c").arg(script);
                c
            }
            TaskCommand::Argv(argv) if !argv.is_empty() => {
                let mut c = Command::new(self.resolve(&argv[0]));
                c.arg0(&argv[0]).args(&argv[1..]);
                c
            }
            TaskCommand::Argv(_) => {
                return Ok(self.failed_record(task, attempt, &started_at, t0, "empty cmd".into()));
            }
        };
        // Secrets: values from our own environment (the caller's, passed down to every
        // worker) and from the env file, read now; the session never holds them.
        let mut secrets = Vec::new();
        for name in &a.env_from_parent {
            match std::env::var_os(name) {
                Some(v) => secrets.push((std::ffi::OsString::from(name), v)),
                None => {
                    let msg = format!(
                        "env_from_parent: {name} is not set in worker {}'s environment",
                        self.cfg.id
                    );
                    return Ok(self.failed_record(task, attempt, &started_at, t0, msg));
                }
            }
        }
        if let Some(f) = &a.env_file {
            match crate::plan::env_file::read(f) {
                Ok(kv) => secrets.extend(kv.into_iter().map(|(k, v)| (k.into(), v.into()))),
                Err(e) => {
                    let msg = format!("env_file: {e}");
                    return Ok(self.failed_record(task, attempt, &started_at, t0, msg));
                }
            }
        }
        // An auxiliary command speaks for its owner (a cleanup reads and writes its task's
        // state); MAESTRO_AUX says which command it is.
        let owner = match a.aux.and_then(|_| proto::AuxKind::parse_job(task)) {
            Some((owner, kind)) => {
                cmd.env("MAESTRO_AUX", kind.as_str());
                owner
            }
            None => task,
        };
        cmd.current_dir(&a.cwd)
            .envs(&a.env)
            .envs(secrets)
            .env("MAESTRO_SESSION", s.root())
            .env("MAESTRO_TASK", owner)
            .env("MAESTRO_WORKER", &self.cfg.id)
            .env("MAESTRO_ATTEMPT", attempt.to_string())
            .env("MAESTRO_RESULT", s.result_json(task, attempt))
            .env("PATH", &self.path);
        if a.agent == Some(crate::plan::AgentKind::ClaudeCode) {
            cmd.env("MAESTRO_CLAUDE_SETTINGS", s.claude_settings(task, attempt));
        }
        let mut io = match crate::pty::TaskIo::set_up(&mut cmd, s, a, self.tee, &self.bell) {
            Ok(io) => io,
            Err(e) => return Ok(self.failed_record(task, attempt, &started_at, t0, e.to_string())),
        };
        let tree = self.cgroup.as_ref().filter(|t| t.wanted(a.memory_limit));
        let mut leaf = tree.and_then(|tree| {
            tree.attempt(task, attempt, a.memory_limit)
                .inspect_err(|why| self.no_cgroup(task, why))
                .ok()
        });
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let msg = format!("cannot run in {}: {e}", a.cwd.display());
                return Ok(self.failed_record(task, attempt, &started_at, t0, msg));
            }
        };
        // On a pty our child is the task's job-control parent, and the task (its pid, its
        // process group) is the one it reports: what is recorded, signalled and measured.
        let job = io.job(child.id());
        let pid = job.as_ref().map_or(child.id(), |j| j.task);
        // At once, so that little can fork before it (what does stays in the process
        // group, which is signalled too).
        if let Some(l) = &leaf {
            let adopted = match &job {
                Some(j) => l.adopt(j.parent).and_then(|()| l.adopt(j.task)),
                None => l.adopt(pid),
            };
            if let Err(why) = adopted {
                self.no_cgroup(task, &why);
                leaf = None;
            }
        }
        // The start is a journal line, not a file of its own: one file creation less per
        // task on the path between two tasks.
        let started = Started {
            task: task.into(),
            attempt,
            worker: self.cfg.id.clone(),
            pid,
            pgid: pid,
            started_at: started_at.clone(),
            started_unix_ms: proto::now_unix_ms(),
            proc_start: crate::process::start_time(pid),
            boot_id: self.boot_id.clone(),
        };
        self.journal.append_worker(&WorkerEvent::Started(started))?;

        let (done_tx, done_rx) = mpsc::channel();
        let tees = io.relay(&mut child, done_tx);

        let (status, ended_by) = self.wait_task(a, &mut child, leaf.as_ref(), job.as_ref())?;
        let timed_out = ended_by == Some(Stopped::TimedOut);
        // Whatever the task left behind in its group (`sleep 1000 &`) goes with it, so no
        // orphan holds our pipes or outlives the attempt; in its cgroup, also what left
        // the group (`setsid`).
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
        if let Some(l) = &leaf {
            let _ = l.kill();
        }
        // A grandchild that escaped the group (its own setsid) may still hold the pipes;
        // do not wait for it forever.
        let deadline = Instant::now() + Duration::from_secs(2);
        for _ in 0..tees {
            let left = deadline.saturating_duration_since(Instant::now());
            if done_rx.recv_timeout(left).is_err() {
                break;
            }
        }

        if let Some(l) = leaf
            && let Err(e) = l.remove()
        {
            self.say(&format!("task {task}: {e}"));
        }
        let (has_result, result_error) = check_result(&s.result_json(task, attempt));
        // Ended on its agent's idle (`end_on`): a success, however the agent took the
        // SIGTERM.
        let idle = ended_by == Some(Stopped::Idle);
        Ok(ExitRecord {
            task: task.into(),
            attempt,
            worker: self.cfg.id.clone(),
            exit_code: if idle { Some(0) } else { status.code() },
            signal: if idle { None } else { status.signal() },
            started_at,
            ended_at: proto::now_rfc3339(),
            duration_ms: t0.elapsed().as_millis() as u64,
            timed_out,
            killed_by: match ended_by {
                Some(Stopped::Asked(why)) => Some(why),
                Some(Stopped::MemoryLimit) => Some("memory limit".into()),
                Some(Stopped::TimedOut | Stopped::Idle) | None => None,
            },
            ended_on: idle.then(|| "idle".into()),
            spawn_error: None,
            result_error,
            has_result,
        })
    }

    /// Replace `usage.json` with what the attempt uses now. Not fatal if it fails: it is
    /// for people, and the next sample tries again.
    fn record_usage(
        &self,
        (task, attempt): (&str, u32),
        s: &crate::usage::Sample,
        cpu: f64,
        leaf: Option<&Leaf>,
    ) {
        let u = crate::usage::Usage {
            task: task.into(),
            attempt,
            processes: s.processes,
            cpu_percent: (cpu * 10.0).round() / 10.0,
            memory_bytes: s.memory_bytes,
            mode: s.mode,
            cgroup: leaf.map(|l| l.dir().display().to_string()),
            sampled_at: proto::now_rfc3339(),
        };
        let _ = self
            .fs
            .write_json(&self.session.worker_usage(&self.cfg.id), &u);
    }

    /// This attempt runs without a cgroup, as every attempt did before them.
    fn no_cgroup(&self, task: &str, why: &str) {
        self.say(&format!(
            "task {task}: no cgroup for this attempt ({why}); its process group alone is \
             signalled"
        ));
    }
}

/// Whether a change at `path` (in our directory or `assigned/`) is news for the loop:
/// `shutdown` and `kill` always; a new assignment only when we are not `busy` running a
/// task, since a task queued behind a running one would otherwise wake the loop
/// for nothing once per task (it looks in `assigned/` when the task ends).
fn wakes_worker(path: &Path, busy: bool) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let assignment = path
        .parent()
        .and_then(|d| d.file_name())
        .is_some_and(|d| d == "assigned");
    !fsio::is_hidden(name)
        && (name == "shutdown"
            || name == "kill"
            || name == "freeze"
            || name == "agent"
            || (assignment && !busy))
}

/// Our own directory first on PATH, so tasks can call `worker checkpoint ...`.
fn path_with_our_dir() -> std::ffi::OsString {
    let mut parts: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        parts.push(dir);
    }
    if let Some(p) = std::env::var_os("PATH") {
        parts.extend(std::env::split_paths(&p));
    }
    std::env::join_paths(parts).unwrap_or_default()
}

/// Whether the attempt left a result file, and what is wrong with it, if anything
/// ([`proto::read_result`]: a JSON object within the result cap).
fn check_result(path: &Path) -> (bool, Option<String>) {
    match proto::read_result(path) {
        Ok(found) => (found.is_some(), None),
        Err(e) => (true, Some(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queued_assignment_wakes_only_an_idle_worker_and_kill_always() {
        let w = Path::new("/s/workers/w1");
        assert!(wakes_worker(&w.join("assigned/t1.1"), false));
        assert!(!wakes_worker(&w.join("assigned/t1.1"), true));
        assert!(wakes_worker(&w.join("kill"), true));
        assert!(wakes_worker(&w.join("shutdown"), true));
        assert!(!wakes_worker(&w.join("assigned/.tmp-x"), false));
        assert!(!wakes_worker(&w.join("console.log"), false));
    }
}
