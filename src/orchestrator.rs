//! The orchestrator's event loop: create (or resume) a session, spawn workers through a
//! launcher, then repeat "wait for a hint, reconcile with the files, decide, act" until
//! every task has an outcome. Decisions come from the pure [`Scheduler`]; everything the
//! loop knows it can rebuild from the session directory, which is what `resume` does
//! (issue 3).
//!
//! What wakes the loop (all funnel into one channel): notify events under `workers/` (a
//! worker's `worker.json` appeared or its `events.jsonl` grew) and `control/` (a person's request), a
//! worker's death (a thread blocks on the worker's `alive` flock and gets it when the
//! kernel releases it; the background launcher's child exits), and timers (rescan, retry
//! backoff, heartbeat leases).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use fs2::FileExt;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::json;

use crate::error::{Error, Result, io_err};
use crate::fsio;
use crate::launch::{self, LauncherKind, WorkerCommand};
use crate::plan::Plan;
use crate::proto::{
    self, Assignment, ControlReply, ControlRequest, ExitRecord, Heartbeat, KillRequest,
    OrchestratorInfo, Outcome, RetryPlan, SessionInfo, SessionState, Shutdown, ShutdownReason,
    Summary, SummaryTask, TaskState, WorkerInfo,
};
use crate::scheduler::{self, Scheduler, State};
use crate::session::{Journal, Session};
use crate::watch::{self, WatchMode};
use crate::worker::hostname;

/// Workers that die before registering, in a row, before we give up on the launcher.
const MAX_SPAWN_FAILURES: u32 = 5;
/// How long a launched worker may take to register.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(30);
/// A wait-for cycle must still be there this much later to count as a deadlock.
const DEADLOCK_CONFIRM: Duration = Duration::from_millis(150);
/// How often a starting worker's registration is looked for (see the main loop).
const STARTING_POLL: Duration = Duration::from_millis(5);
/// How often heartbeats are read (leases are judged on our monotonic clock).
const LEASE_CHECK: Duration = Duration::from_millis(500);

/// A validated `orchestrator run` configuration.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub plan: Plan,
    pub plan_file: PathBuf,
    pub sessions_root: PathBuf,
    /// Workers at once (the plan's `workers`, or `--workers`).
    pub workers: usize,
    /// Already resolved (never `Auto`).
    pub launcher: LauncherKind,
    pub watch: WatchMode,
    pub durable: bool,
}

/// A validated `orchestrator resume` / `retry` configuration.
#[derive(Debug, Clone)]
pub struct ResumeConfig {
    pub session: Session,
    /// `None`: the launcher recorded in `session.json` (resolved anew if it was `auto`).
    pub launcher: Option<LauncherKind>,
    pub workers: Option<usize>,
    pub watch: WatchMode,
    pub durable: bool,
    /// Tasks to re-run (with their skipped dependents) in a finished session.
    pub retry: Vec<String>,
}

enum Wake {
    Files,
    Control,
    /// Something changed under checkpoints/, signals/ or locks/.
    Prim,
    Died(String, &'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WState {
    Starting,
    Idle,
    Busy { task: usize, attempt: u32 },
    Stopping,
    Gone,
}

struct WorkerRt {
    state: WState,
    /// A second assignment written behind the running one (issue 5), not claimed yet:
    /// the worker starts it the moment its current task ends, without waiting for us.
    queued: Option<(usize, u32)>,
    /// When its current task was handed over (to pick which queue to withdraw).
    busy_since: Instant,
    spawned_at: Instant,
    heartbeat: Option<u64>,
    heartbeat_changed: Instant,
    /// Its `events.jsonl`, followed: how we learn that an attempt started.
    journal: crate::session::JournalTail,
}

impl WorkerRt {
    fn new(state: WState, journal: crate::session::JournalTail) -> WorkerRt {
        WorkerRt {
            state,
            journal,
            queued: None,
            busy_since: Instant::now(),
            spawned_at: Instant::now(),
            heartbeat: None,
            heartbeat_changed: Instant::now(),
        }
    }
}

#[derive(Default)]
struct TaskRt {
    attempt: u32,
    started_seen: bool,
    /// The current attempt's `exited` line, read from its worker's journal and not acted
    /// on yet: `Some(None)` if the line did not parse (then `exit.json` is read). Boxed:
    /// every task has this field, a record is there only between two wake-ups.
    exited: Option<(u32, Option<Box<ExitRecord>>)>,
    /// `tasks/<id>/retry.json` may exist (we wrote one, or found one on resume): only then
    /// is it looked for, to be removed (issue 5: no probe per task for a file that is not
    /// there).
    retry_file: bool,
    /// Attempts lost with their worker (bounded by `max_reassign`).
    reassigns: u32,
    /// Failed attempts (bounded by `retries`).
    failures: u32,
    retry_at: Option<Instant>,
    /// A worker this task should not go back to (after `reassign`).
    avoid: Option<String>,
    outcome: Option<Outcome>,
    /// `tasks/<id>/` exists (made lazily: see `Orchestrator::create`).
    dir_made: bool,
}

/// A running session's orchestrator.
pub struct Orchestrator {
    session: Session,
    plan: Plan,
    target_workers: usize,
    watch: WatchMode,
    /// The running watcher (set by `run`), to which each new worker directory is added.
    watcher: Option<watch::Watch>,
    sched: Scheduler,
    graph: crate::plan::Graph,
    /// Races already decided (issue 4).
    race_done: Vec<bool>,
    /// Checkpoints, signals or locks may have changed: look at them in the next pass.
    prim_dirty: bool,
    /// A wait-for cycle seen once; acted on only if still there at the next look (a scan
    /// of holders and waiters is not atomic, so a single sighting may be a phantom).
    suspect: Option<(crate::locks::Deadlock, Instant)>,
    tasks: Vec<TaskRt>,
    /// Task id → index in the plan.
    index: std::collections::HashMap<String, usize>,
    /// Tasks waiting out a retry backoff (kept apart so the loop never scans all tasks).
    retrying: std::collections::BTreeSet<usize>,
    workers: BTreeMap<String, WorkerRt>,
    next_worker: u32,
    /// `seq` of the next assignment (see [`Assignment::seq`]).
    next_seq: u64,
    spawn_failures: u32,
    /// Attempts that are no longer current but may still report (journalled as stale).
    stale: Vec<(usize, u32)>,
    cancelled: bool,
    lease: Duration,
    last_lease_check: Instant,
    launcher: Box<dyn launch::Launcher>,
    journal: Journal,
    tx: Sender<Wake>,
    rx: Receiver<Wake>,
    started: Instant,
    started_at: String,
    progress: bool,
    _lock: File,
}

impl Orchestrator {
    /// Create the session directory and everything written once. Nothing is created when
    /// this fails before `Session::create` (the worker binary is located first).
    pub fn create(cfg: RunConfig) -> Result<Orchestrator> {
        fsio::set_durable(cfg.durable);
        let cmd = WorkerCommand::locate(cfg.watch, cfg.durable)?;
        let session = Session::create(&cfg.sessions_root, &cfg.plan.name)?;
        let lock = take_lock(&session)?;
        let started_at = proto::now_rfc3339();
        fsio::write_json(
            &session.session_json(),
            &SessionInfo {
                protocol: proto::PROTOCOL_VERSION,
                id: session.id().to_string(),
                plan_file: cfg.plan_file.clone(),
                created_at: started_at.clone(),
                launcher: cfg.launcher.as_str().into(),
                workers: cfg.workers,
                durable: cfg.durable,
            },
        )?;
        fsio::write_json(&session.plan_json(), &cfg.plan)?;
        // Task directories are made when a task is first assigned or decided, not here:
        // for 10 000 tasks that was 10 000 mkdirs before the first task could start.
        let launcher = launch::make(cfg.launcher, cmd, &session, cfg.plan.keep_windows);
        let mut journal = Journal::open(&session)?;
        journal.log(
            "session_started",
            json!({"session": session.id(), "tasks": cfg.plan.tasks.len(),
                   "workers": cfg.workers, "launcher": cfg.launcher.as_str()}),
        )?;
        Ok(Orchestrator::assemble(
            session,
            cfg.plan,
            cfg.workers,
            cfg.watch,
            launcher,
            journal,
            lock,
        ))
    }

    fn assemble(
        session: Session,
        plan: Plan,
        workers: usize,
        watch: WatchMode,
        launcher: Box<dyn launch::Launcher>,
        journal: Journal,
        lock: File,
    ) -> Orchestrator {
        let graph = plan.graph();
        let plan_index = plan
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.clone(), i))
            .collect();
        let race_done = vec![false; plan.races.len()];
        let sched = Scheduler::with_external(graph.dep_lists(), graph.external_flags());
        let (tx, rx) = mpsc::channel();
        let tasks = plan.tasks.iter().map(|_| TaskRt::default()).collect();
        Orchestrator {
            target_workers: workers,
            lease: Duration::from_millis(plan.lease_ms),
            session,
            plan,
            watch,
            watcher: None,
            sched,
            race_done,
            graph,
            prim_dirty: true,
            suspect: None,
            tasks,
            retrying: Default::default(),
            index: plan_index,
            workers: BTreeMap::new(),
            next_worker: 1,
            next_seq: proto::now_unix_ms() * 1000,
            spawn_failures: 0,
            stale: Vec::new(),
            cancelled: false,
            last_lease_check: Instant::now(),
            launcher,
            journal,
            tx,
            rx,
            started: Instant::now(),
            started_at: proto::now_rfc3339(),
            progress: false,
            _lock: lock,
        }
    }

    /// Take over an existing session whose orchestrator is gone: rebuild the state from the
    /// directory, adopt live workers and their running tasks, accept exits that happened
    /// meanwhile, and queue again what was orphaned (issue 3).
    pub fn resume(cfg: ResumeConfig) -> Result<Orchestrator> {
        fsio::set_durable(cfg.durable);
        let session = cfg.session;
        let lock = take_lock(&session)?;
        let info: SessionInfo = fsio::read_json(&session.session_json())?.ok_or_else(|| {
            Error::Session(format!("{}: missing", session.session_json().display()))
        })?;
        let plan: Plan = fsio::read_json(&session.plan_json())?
            .ok_or_else(|| Error::Session(format!("{}: missing", session.plan_json().display())))?;
        let summary: Option<Summary> = fsio::read_json(&session.summary_json())?;
        if let Some(sum) = &summary
            && cfg.retry.is_empty()
        {
            return Err(Error::Session(format!(
                "session {} already finished ({}); `orchestrator retry {} TASK` re-runs a failed task",
                session.id(),
                sum.state.as_str(),
                session.id()
            )));
        }
        if summary.is_none() && !cfg.retry.is_empty() {
            return Err(Error::Session(format!(
                "session {} has not finished; retry re-runs tasks of a finished session (use `orchestrator resume`)",
                session.id()
            )));
        }
        let cmd = WorkerCommand::locate(cfg.watch, cfg.durable)?;
        let kind = cfg.launcher.unwrap_or_else(|| {
            info.launcher
                .parse::<LauncherKind>()
                .unwrap_or(LauncherKind::Auto)
                .resolve()
        });
        let launcher = launch::make(kind, cmd, &session, plan.keep_windows);
        let journal = Journal::open(&session)?;
        let workers = cfg.workers.unwrap_or(info.workers);
        let mut o =
            Orchestrator::assemble(session, plan, workers, cfg.watch, launcher, journal, lock);
        let reset = if cfg.retry.is_empty() {
            Vec::new()
        } else {
            o.prepare_retry(&cfg.retry)?
        };
        o.journal.log(
            if cfg.retry.is_empty() {
                "session_resumed"
            } else {
                "session_retried"
            },
            json!({"session": o.session.id(), "retry": cfg.retry}),
        )?;
        o.rebuild(&reset)?;
        Ok(o)
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Print a line to stderr as tasks start and end.
    pub fn set_progress(&mut self, on: bool) {
        self.progress = on;
    }

    fn say(&self, msg: std::fmt::Arguments) {
        if self.progress {
            // Never panic on a closed stderr (`orchestrator run ... 2>&1 | head`): the
            // session matters more than its commentary.
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "[{:>7.1}s] {msg}",
                self.started.elapsed().as_secs_f64()
            );
        }
    }

    /// Where a person can watch the workers (tmux), if anywhere.
    pub fn hint(&self) -> Option<String> {
        self.launcher.hint()
    }

    fn set_retry(&mut self, t: usize, at: Option<Instant>) {
        self.tasks[t].retry_at = at;
        if at.is_some() {
            self.retrying.insert(t);
        } else {
            self.retrying.remove(&t);
        }
    }

    fn index_of(&self, task: &str) -> Option<usize> {
        self.index.get(task).copied()
    }

    /// Run the session to its end; returns its final state.
    pub fn run(mut self) -> Result<SessionState> {
        let tx = self.tx.clone();
        let control = self.session.control_dir();
        let prim_dirs = [
            self.session.checkpoints_dir(),
            self.session.signals_dir(),
            self.session.locks_dir(),
        ];
        let prim = prim_dirs.clone();
        // Only what the loop acts on (issue 5): the control directory, the primitives'
        // trees, and each worker's journal (its registration, starts and exits), added as
        // workers appear. Not the rest of a worker's directory: its console lines, claim
        // and `done/` renames and heartbeats would otherwise wake this process (and cost
        // the kernel an event) several times per task.
        let mut spec = watch::Spec::new(watch::Kinds::Changes).flat(control.clone());
        for d in prim_dirs {
            spec = spec.tree(d);
        }
        let ids: Vec<String> = self.workers.keys().cloned().collect();
        for id in ids {
            spec = spec.flat(self.worker_journal(&id)?);
        }
        let watcher = watch::start_spec(&spec, self.watch, tx, move |ev| {
            if let Ok(e) = &ev
                && e.paths
                    .iter()
                    .any(|p| prim.iter().any(|d| p.starts_with(d)))
            {
                return Some(Wake::Prim);
            }
            if let Ok(e) = &ev
                && e.paths.iter().any(|p| {
                    p.parent() == Some(control.as_path())
                        && !p
                            .file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(fsio::is_hidden)
                })
            {
                return Some(Wake::Control);
            }
            watch::event_touches(&ev, |p| p.file_name().is_some_and(|n| n == "events.jsonl"))
                .then_some(Wake::Files)
        })?;
        self.watch = watcher.mode();
        self.watcher = Some(watcher);
        self.fill_pool()?;
        let mut died: Vec<(String, &'static str)> = Vec::new();
        let mut control = true;
        let mut last_control = Instant::now();
        loop {
            for (id, how) in died.drain(..) {
                self.worker_gone(&id, how)?;
            }
            if control || last_control.elapsed() >= self.watch.rescan_interval() {
                self.handle_control()?;
                control = false;
                last_control = Instant::now();
                self.prim_dirty = true;
            }
            if self.prim_dirty {
                self.prim_dirty = false;
                self.check_signals()?;
                self.check_checkpoints()?;
                self.check_deadlocks()?;
            }
            if self.last_lease_check.elapsed() >= LEASE_CHECK {
                self.check_leases()?;
                self.last_lease_check = Instant::now();
            }
            self.reconcile()?;
            self.check_stall()?;
            if self.sched.finished() {
                break;
            }
            let mut wait = self.watch.rescan_interval().min(LEASE_CHECK);
            // A starting worker's registration, by the poll watcher or none, would be seen
            // only at the next rescan: look every few ms until it registers, as recovery
            // waits on it (issue 5). The native watcher watches its directory from before
            // it starts, so it needs no polling.
            if self.watch != WatchMode::Native
                && self.workers.values().any(|w| w.state == WState::Starting)
            {
                wait = wait.min(STARTING_POLL);
            }
            let now = Instant::now();
            if let Some((_, at)) = &self.suspect {
                let due = *at + DEADLOCK_CONFIRM;
                if due <= now {
                    self.prim_dirty = true;
                    continue;
                }
                wait = wait.min(due - now);
            }
            for &t in &self.retrying {
                if let Some(at) = self.tasks[t].retry_at {
                    wait = wait.min(at.saturating_duration_since(now));
                }
            }
            let first = self.rx.recv_timeout(wait);
            let mut prim = false;
            let mut note = |w: Wake| match w {
                Wake::Died(id, how) => died.push((id, how)),
                Wake::Control => control = true,
                Wake::Prim => prim = true,
                Wake::Files => {}
            };
            match first {
                Ok(w) => note(w),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => unreachable!("we hold a sender"),
            }
            while let Ok(w) = self.rx.try_recv() {
                note(w);
            }
            self.prim_dirty |= prim;
        }
        self.finish()
    }

    /// Start workers until the pool has the size the remaining work can use.
    fn fill_pool(&mut self) -> Result<()> {
        let busy = self
            .workers
            .values()
            .filter(|w| matches!(w.state, WState::Busy { .. }))
            .count();
        let wanted = self.target_workers.min(self.sched.not_started() + busy);
        while !self.sched.finished() && self.live_workers() < wanted {
            self.spawn_worker()?;
        }
        Ok(())
    }

    fn spawn_worker(&mut self) -> Result<()> {
        let id = format!("w{}", self.next_worker);
        self.next_worker += 1;
        for dir in [
            self.session.assigned_dir(&id),
            self.session.claimed_dir(&id),
            self.session.done_dir(&id),
        ] {
            fsio::create_dir_private(&dir)?;
        }
        // Watched before the worker starts, so none of its lines goes unseen.
        let journal = self.worker_journal(&id)?;
        if let Some(w) = self.watcher.as_mut() {
            w.add(&journal);
            self.watch = w.mode();
        }
        let spawned = self.launcher.spawn(&self.session, &id)?;
        self.journal.log(
            "worker_spawned",
            json!({"worker": id, "launcher": self.launcher.kind().as_str(),
                   "terminal": spawned.terminal}),
        )?;
        if let Some(mut child) = spawned.child {
            // Reap our own children so they never linger as zombies, and learn of a death
            // even before the worker managed to take its lock.
            let tx = self.tx.clone();
            let wid = id.clone();
            thread::spawn(move || {
                let _ = child.wait();
                let _ = tx.send(Wake::Died(wid, "exited"));
            });
        }
        let tail = crate::session::JournalTail::new(self.session.worker_events(&id));
        self.workers
            .insert(id, WorkerRt::new(WState::Starting, tail));
        Ok(())
    }

    /// Worker `id`'s journal, created empty if it is not there yet: we watch that file
    /// alone, and can only watch what exists. The worker appends to it.
    fn worker_journal(&self, id: &str) -> Result<std::path::PathBuf> {
        let path = self.session.worker_events(id);
        fsio::open_append(&path)?;
        Ok(path)
    }

    fn live_workers(&self) -> usize {
        self.workers
            .values()
            .filter(|w| !matches!(w.state, WState::Gone | WState::Stopping))
            .count()
    }

    fn ids_in(&self, pred: impl Fn(WState) -> bool) -> Vec<String> {
        self.workers
            .iter()
            .filter(|(_, w)| pred(w.state))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Read what changed on disk and act on it.
    fn reconcile(&mut self) -> Result<()> {
        // 1. Registrations.
        for id in self.ids_in(|s| s == WState::Starting) {
            match fsio::read_json::<WorkerInfo>(&self.session.worker_json(&id)) {
                Ok(Some(info)) => {
                    self.spawn_failures = 0;
                    self.journal.log(
                        "worker_registered",
                        json!({"worker": id, "pid": info.pid, "host": info.host,
                               "terminal": info.terminal}),
                    )?;
                    self.watch_death(&id);
                    if let Some(w) = self.workers.get_mut(&id) {
                        w.state = WState::Idle;
                        w.heartbeat_changed = Instant::now();
                    }
                }
                Ok(None) | Err(_) => {
                    if self.workers[&id].spawned_at.elapsed() > REGISTER_TIMEOUT {
                        self.worker_gone(&id, "never_registered")?;
                    }
                }
            }
        }

        // 2. Running attempts: started? ended?
        let busy: Vec<(String, usize, u32)> = self
            .workers
            .iter()
            .filter_map(|(id, w)| match w.state {
                WState::Busy { task, attempt } => Some((id.clone(), task, attempt)),
                _ => None,
            })
            .collect();
        for (wid, mut t, mut attempt) in busy {
            // An ended attempt may hand the worker its queued task, which a fast worker
            // may have finished too: look at that one at once.
            while self.check_attempt(&wid, t, attempt, true)? {
                match self.workers.get(&wid).map(|w| w.state) {
                    Some(WState::Busy { task, attempt: a }) if (task, a) != (t, attempt) => {
                        (t, attempt) = (task, a);
                    }
                    _ => break,
                }
            }
        }
        self.check_stale()?;

        // 3. Retries whose backoff is over go back in the queue.
        let now = Instant::now();
        let due: Vec<usize> = self
            .retrying
            .iter()
            .copied()
            .filter(|&t| self.tasks[t].retry_at.is_some_and(|at| at <= now))
            .collect();
        for t in due {
            self.set_retry(t, None);
            self.sched.requeue(t);
        }

        // 4. Hand ready tasks to idle workers; a worker left idle while another has a task
        // queued gets that task instead (the queue must never delay work); then queue one
        // task behind each started one.
        self.assign_ready()?;
        let idle = self.ids_in(|s| s == WState::Idle).len();
        if idle > 0 && self.queued_count() > 0 {
            // The queues behind the longest-running tasks first: they would wait longest.
            let mut behind: Vec<(Instant, String)> = self
                .workers
                .iter()
                .filter(|(_, w)| w.queued.is_some())
                .map(|(id, w)| (w.busy_since, id.clone()))
                .collect();
            behind.sort();
            for (_, wid) in behind.into_iter().take(idle) {
                self.withdraw_queued(Some(&wid))?;
            }
            self.assign_ready()?;
        }
        self.queue_ready()?;

        // 5. Release idle workers the plan can no longer use (their windows close).
        let idle = self.ids_in(|s| s == WState::Idle);
        let waiting_retry = self.retrying.len();
        let excess = scheduler::excess_idle(idle.len(), self.sched.not_started() + waiting_retry);
        for wid in idle.into_iter().take(excess) {
            self.stop_worker(&wid, ShutdownReason::Idle)?;
        }
        Ok(())
    }

    fn watch_death(&self, id: &str) {
        let path = self.session.worker_alive(id);
        let tx = self.tx.clone();
        let id = id.to_string();
        // Blocks until the kernel releases the worker's flock, i.e. until it dies
        // (invariant 4: no PID is trusted).
        thread::spawn(move || {
            if let Ok(f) = File::open(&path) {
                let _ = f.lock_exclusive();
            }
            let _ = tx.send(Wake::Died(id, "died"));
        });
    }

    /// Give ready tasks to idle workers (avoiding the worker a reassigned task left).
    fn assign_ready(&mut self) -> Result<()> {
        loop {
            let idle = self.ids_in(|s| s == WState::Idle);
            if idle.is_empty() {
                return Ok(());
            }
            let Some(t) = self.sched.pop_ready() else {
                return Ok(());
            };
            let avoid = self.tasks[t].avoid.clone();
            let wid = idle
                .iter()
                .find(|w| Some(*w) != avoid.as_ref())
                .unwrap_or(&idle[0])
                .clone();
            self.assign(t, &wid, false)?;
        }
    }

    /// Issue 5: the round trip "exit -> next assignment" is on every worker's critical path,
    /// so each worker whose task has started gets one more ready task queued behind it.
    /// Not in plans with races (a member's end can make queued members lose). A queued task
    /// is withdrawn (and its attempt number reused: it never ran) whenever a worker is idle,
    /// a control request comes, or its worker is lost; the worker claims an assignment by
    /// renaming it, so a withdrawal and a start can never both happen.
    fn queue_ready(&mut self) -> Result<()> {
        // Not while a worker is starting: it will take ready tasks at once, where a queued
        // one would wait for a running task to end (a lost task requeued behind a long one
        // took 0.5 s to start again in the recovery benchmark).
        if !self.plan.races.is_empty()
            || !self.sched.has_ready()
            || self.workers.values().any(|w| w.state == WState::Starting)
        {
            return Ok(());
        }
        let ready_for_more: Vec<String> = self
            .workers
            .iter()
            .filter(|(_, w)| {
                w.queued.is_none()
                    && matches!(w.state, WState::Busy { task, attempt }
                        if self.tasks[task].attempt == attempt)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for wid in ready_for_more {
            let Some(t) = self.sched.pop_ready() else {
                break;
            };
            if self.tasks[t].avoid.as_deref() == Some(wid.as_str()) {
                self.sched.requeue(t);
                break;
            }
            self.assign(t, &wid, true)?;
        }
        Ok(())
    }

    fn queued_count(&self) -> usize {
        self.workers.values().filter(|w| w.queued.is_some()).count()
    }

    /// Take back the queued assignments of one worker (or all): rename them out of
    /// `assigned/` before the worker claims them. Withdrawn tasks are ready again, with
    /// the attempt number they had (it never ran). If the worker claimed one first, its
    /// running task has ended (a worker claims the next only after writing the exit):
    /// that exit is handled now, which makes the claimed task the running one.
    fn withdraw_queued(&mut self, only: Option<&str>) -> Result<()> {
        let ids: Vec<String> = self
            .workers
            .iter()
            .filter(|(id, w)| w.queued.is_some() && only.is_none_or(|o| o == id.as_str()))
            .map(|(id, _)| id.clone())
            .collect();
        for wid in ids {
            let Some((t, n)) = self.workers[&wid].queued else {
                continue;
            };
            let task = self.plan.tasks[t].id.clone();
            if fsio::claim(
                &self.session.assignment(&wid, &task, n),
                &self.session.assignment_done(&wid, &task, n),
            )? {
                if let Some(w) = self.workers.get_mut(&wid) {
                    w.queued = None;
                }
                self.tasks[t].attempt = n - 1;
                self.sched.requeue(t);
                self.journal.log(
                    "task_withdrawn",
                    json!({"task": task, "attempt": n, "worker": wid}),
                )?;
            } else if let WState::Busy { task, attempt } = self.workers[&wid].state {
                self.check_attempt(&wid, task, attempt, false)?;
            }
        }
        Ok(())
    }

    /// Write the next attempt of task `t` into `wid`'s `assigned/`: as its current task, or
    /// (`queue`) behind the one it runs.
    /// Make `tasks/<id>/` unless it was made already.
    fn ensure_task_dir(&mut self, t: usize) -> Result<()> {
        if !self.tasks[t].dir_made {
            fsio::create_dir_private(&self.session.task_dir(&self.plan.tasks[t].id))?;
            self.tasks[t].dir_made = true;
        }
        Ok(())
    }

    fn assign(&mut self, t: usize, wid: &str, queue: bool) -> Result<()> {
        self.ensure_task_dir(t)?;
        let task = &self.plan.tasks[t];
        let rt = &mut self.tasks[t];
        rt.attempt += 1;
        rt.started_seen = false;
        rt.exited = None;
        let a = Assignment {
            task: task.id.clone(),
            attempt: rt.attempt,
            command: task.command.clone(),
            cwd: task.cwd.clone(),
            env: task.env.clone(),
            timeout_ms: task.timeout_ms,
            kill_grace_ms: task.kill_grace_ms,
            assigned_at: proto::now_rfc3339(),
            seq: self.next_seq,
        };
        self.next_seq += 1;
        let attempt = a.attempt;
        tracing::debug!(task = %task.id, attempt, worker = wid, "assign");
        fsio::write_json_new_via(
            &self.session.orchestrator_dir(),
            &self.session.assignment(wid, &task.id, attempt),
            &a,
        )?;
        if std::mem::take(&mut self.tasks[t].retry_file) {
            let retry = self.session.retry_json(&task.id);
            if retry.exists() {
                std::fs::remove_file(&retry).map_err(io_err(&retry, "remove"))?;
            }
        }
        self.journal.log(
            "task_assigned",
            json!({"task": task.id, "attempt": attempt, "worker": wid}),
        )?;
        if let Some(w) = self.workers.get_mut(wid) {
            if queue {
                w.queued = Some((t, attempt));
            } else {
                w.state = WState::Busy { task: t, attempt };
                w.busy_since = Instant::now();
            }
        }
        Ok(())
    }

    /// Look at attempt `attempt` of task `t` that worker `wid` runs. Returns whether it
    /// ended (the worker is then free). With `hand_next` (the worker is alive), a task that
    /// is ready already goes to the worker before this attempt's outcome is recorded.
    fn check_attempt(
        &mut self,
        wid: &str,
        t: usize,
        attempt: u32,
        hand_next: bool,
    ) -> Result<bool> {
        let id = self.plan.tasks[t].id.clone();
        let current = attempt == self.tasks[t].attempt
            && self.tasks[t].outcome.is_none()
            && !self.stale.contains(&(t, attempt));
        if current {
            self.follow_journal(wid, true)?;
        }
        // The worker journals `exited`, with the whole record, right after writing
        // `exit.json`: while it lives, its journal says whether the attempt ended, and no
        // file is probed per wake-up (issue 5). A worker that died between the two (the
        // death path, `hand_next` false), a stale attempt, or a line that did not parse:
        // read the file.
        let journalled = match self.tasks[t].exited.take() {
            Some((a, rec)) if a == attempt => Some(rec),
            other => {
                self.tasks[t].exited = other;
                None
            }
        };
        let exit_path = self.session.exit_json(&id, attempt);
        let read = match journalled {
            Some(Some(e)) => Ok(Some(*e)),
            None if current && hand_next => return Ok(false),
            _ => fsio::read_json::<ExitRecord>(&exit_path),
        };
        let exit = match read {
            Ok(None) => return Ok(false),
            Ok(Some(e)) if e.task == id && e.attempt == attempt => Ok(e),
            Ok(Some(_)) => Err(format!(
                "{}: record does not match task {id} attempt {attempt}",
                exit_path.display()
            )),
            Err(e) => Err(e.to_string()),
        };
        if let Some(w) = self.workers.get_mut(wid)
            && w.state == (WState::Busy { task: t, attempt })
        {
            w.state = match w.queued.take() {
                Some((task, attempt)) => WState::Busy { task, attempt },
                None => WState::Idle,
            };
            w.busy_since = Instant::now();
        }
        // The assignment is done with: move it to `done/`, so a worker's `assigned/` holds
        // only work in flight (the worker rescans that directory on every wake-up). A rename,
        // not an unlink: on ext4 without a journal every recently deleted inode makes each
        // later file creation slower (issue 5; docs/PERFORMANCE.md).
        let done = self.session.assignment_done(wid, &id, attempt);
        let claimed = self.session.assignment_claimed(wid, &id, attempt);
        let unclaimed = self.session.assignment(wid, &id, attempt);
        if !matches!(fsio::claim(&claimed, &done), Ok(true)) {
            let _ = fsio::claim(&unclaimed, &done);
        }
        if current {
            // Issue 5: the round trip "exit -> next assignment" is on every worker's
            // critical path, so the outcome write and the journal lines come after it. Not
            // for a race member: its end may make ready members lose. A crash in between
            // is safe: resume accepts an exit that has no outcome yet.
            if hand_next && self.plan.race_of(&id).is_none() {
                self.hand_next(wid)?;
            }
            self.accept(t, attempt, wid, exit)?;
        } else {
            self.stale_result(t, attempt, exit.ok())?;
        }
        Ok(true)
    }

    /// Give the idle worker `wid` the next ready task, if any (unless the task should avoid
    /// that worker: the general assignment step then places it).
    fn hand_next(&mut self, wid: &str) -> Result<()> {
        if self.workers.get(wid).map(|w| w.state) != Some(WState::Idle) {
            return Ok(());
        }
        let Some(t) = self.sched.pop_ready() else {
            return Ok(());
        };
        if self.tasks[t].avoid.as_deref() == Some(wid) {
            self.sched.requeue(t);
            return Ok(());
        }
        self.assign(t, wid, false)
    }

    /// Journal late results of attempts that are no longer current (invariant 3: kept on
    /// disk, journalled, never the outcome).
    fn check_stale(&mut self) -> Result<()> {
        let mut i = 0;
        while i < self.stale.len() {
            let (t, attempt) = self.stale[i];
            let id = &self.plan.tasks[t].id;
            match fsio::read_json::<ExitRecord>(&self.session.exit_json(id, attempt)) {
                Ok(None) => i += 1,
                Ok(Some(e)) => {
                    self.stale.swap_remove(i);
                    self.stale_result(t, attempt, Some(e))?;
                }
                Err(_) => {
                    self.stale.swap_remove(i);
                    self.stale_result(t, attempt, None)?;
                }
            }
        }
        Ok(())
    }

    fn stale_result(&mut self, t: usize, attempt: u32, e: Option<ExitRecord>) -> Result<()> {
        self.stale.retain(|&(x, a)| (x, a) != (t, attempt));
        let id = self.plan.tasks[t].id.clone();
        self.journal.log(
            "stale_result",
            json!({"task": id, "attempt": attempt, "worker": e.as_ref().map(|e| e.worker.clone()),
                   "exit_code": e.as_ref().and_then(|e| e.exit_code),
                   "current_attempt": self.tasks[t].attempt}),
        )?;
        self.journal.log(
            "attempt_ended",
            json!({"task": id, "attempt": attempt, "reason": "stale",
                   "worker": e.as_ref().map(|e| e.worker.clone())}),
        )?;
        Ok(())
    }

    fn attempt_ended(&mut self, t: usize, attempt: u32, wid: &str, reason: &str) -> Result<()> {
        let id = &self.plan.tasks[t].id;
        self.journal.log(
            "attempt_ended",
            json!({"task": id, "attempt": attempt, "worker": wid, "reason": reason}),
        )
    }

    /// Decide what the current attempt's exit means: success, a retry after a backoff, or
    /// the task's final failure.
    fn accept(
        &mut self,
        t: usize,
        attempt: u32,
        wid: &str,
        exit: std::result::Result<ExitRecord, String>,
    ) -> Result<()> {
        let id = self.plan.tasks[t].id.clone();
        let (state, reason, e) = match &exit {
            Ok(e) if e.succeeded() => (TaskState::Succeeded, None, Some(e)),
            Ok(e) => (TaskState::Failed, e.failure_reason(), Some(e)),
            Err(msg) => (TaskState::Failed, Some(msg.clone()), None),
        };
        tracing::debug!(task = %id, attempt, worker = wid, state = state.as_str(), "attempt ended");
        let how = match (state, e) {
            (TaskState::Succeeded, _) => "exited",
            (_, Some(e)) if e.timed_out => "timed_out",
            _ => "failed",
        };
        self.attempt_ended(t, attempt, wid, how)?;
        if state == TaskState::Failed && self.tasks[t].failures < self.plan.tasks[t].retries {
            self.tasks[t].failures += 1;
            let n = self.tasks[t].failures;
            let delay = self.plan.tasks[t].backoff.delay_ms(n, jitter_unit());
            let reason = reason.unwrap_or_default();
            fsio::write_json(
                &self.session.retry_json(&id),
                &RetryPlan {
                    failed_attempt: attempt,
                    next_attempt: attempt + 1,
                    not_before_unix_ms: proto::now_unix_ms() + delay,
                    reason: reason.clone(),
                },
            )?;
            self.tasks[t].retry_file = true;
            self.journal.log(
                "retry_scheduled",
                json!({"task": id, "failed_attempt": attempt, "retry": n,
                       "retries": self.plan.tasks[t].retries, "delay_ms": delay,
                       "reason": reason}),
            )?;
            self.say(format_args!(
                "{id}: attempt {attempt} failed ({reason}); retry {n} in {:.1}s",
                delay as f64 / 1000.0
            ));
            self.set_retry(t, Some(Instant::now() + Duration::from_millis(delay)));
            return Ok(());
        }
        let result = if state == TaskState::Succeeded && e.is_none_or(|e| e.has_result) {
            fsio::read_json::<serde_json::Value>(&self.session.result_json(&id, attempt))
                .ok()
                .flatten()
        } else {
            None
        };
        let outcome = Outcome {
            task: id.clone(),
            state,
            attempt,
            worker: Some(wid.to_string()),
            exit_code: e.and_then(|e| e.exit_code),
            signal: e.and_then(|e| e.signal),
            started_at: e.map(|e| e.started_at.clone()),
            ended_at: e.map(|e| e.ended_at.clone()),
            duration_ms: e.map(|e| e.duration_ms),
            reason: reason.clone(),
            result,
            decided_at: proto::now_rfc3339(),
        };
        self.finish_task(t, outcome)
    }

    /// Record a task's final outcome and propagate it through the DAG.
    fn finish_task(&mut self, t: usize, outcome: Outcome) -> Result<()> {
        let id = outcome.task.clone();
        let state = outcome.state;
        let race = self.plan.race_of(&id);
        self.journal.log(
            "task_finished",
            json!({"task": id, "attempt": outcome.attempt, "worker": outcome.worker,
                   "state": state.as_str(), "exit_code": outcome.exit_code,
                   "reason": outcome.reason}),
        )?;
        match &outcome.reason {
            None => self.say(format_args!("{id}: {}", state.as_str())),
            Some(r) => self.say(format_args!("{id}: {}: {r}", state.as_str())),
        }
        if !self.plan.checkpoints.is_empty() {
            self.prim_dirty = true; // a participant may have failed: barrier broken?
        }
        // A `best` race member's success is held (not written) until the race is decided:
        // it may still end as `lost`.
        if let Some(k) = race
            && state == TaskState::Succeeded
            && self.plan.races[k].pick == crate::plan::Pick::Best
            && !self.race_done[k]
        {
            self.tasks[t].outcome = Some(outcome);
            self.sched.succeed(t);
            return self.race_progress(k);
        }
        if state == TaskState::Succeeded {
            self.write_markers(t, &outcome)?;
        }
        self.record_outcome(t, outcome)?;
        let skipped = match state {
            TaskState::Succeeded => {
                self.sched.succeed(t);
                Vec::new()
            }
            TaskState::Lost => self.sched.lose(t),
            _ => self.sched.fail(t),
        };
        let (dep_state, why) = if state == TaskState::Cancelled {
            (
                TaskState::Cancelled,
                format!("dependency {id} was cancelled"),
            )
        } else {
            (
                TaskState::Skipped,
                format!("dependency {id} did not succeed"),
            )
        };
        self.propagate(skipped, dep_state, &why)?;
        if let Some(k) = race {
            self.race_progress(k)?;
        }
        Ok(())
    }

    /// Write the outcome of every task skipped (or cancelled) because of another.
    fn propagate(&mut self, skipped: Vec<usize>, dep_state: TaskState, why: &str) -> Result<()> {
        let mut races = Vec::new();
        for s in skipped {
            if s >= self.plan.tasks.len() {
                continue; // race and signal nodes have no outcome file
            }
            let sid = self.plan.tasks[s].id.clone();
            self.journal.log(
                if dep_state == TaskState::Cancelled {
                    "task_cancelled"
                } else {
                    "task_skipped"
                },
                json!({"task": sid, "reason": why}),
            )?;
            self.say(format_args!("{sid}: {} ({why})", dep_state.as_str()));
            self.set_retry(s, None);
            let o = bare_outcome(&sid, dep_state, self.tasks[s].attempt, why.to_string());
            self.record_outcome(s, o)?;
            if let Some(k) = self.plan.race_of(&sid) {
                races.push(k);
            }
        }
        for k in races {
            self.race_progress(k)?;
        }
        Ok(())
    }

    /// Completion markers (`marks = [...]`): written when the task succeeds (issue 4).
    fn write_markers(&self, t: usize, o: &Outcome) -> Result<()> {
        for m in &self.plan.tasks[t].marks {
            let text = format!(
                "# {m}\n\ntask: {}\nsession: {}\nattempt: {}\nfinished: {}\nresult: {}\n",
                o.task,
                self.session.id(),
                o.attempt,
                o.ended_at.as_deref().unwrap_or("-"),
                o.result
                    .as_ref()
                    .map_or_else(|| "none".to_string(), |r| r.to_string())
            );
            fsio::write_atomic(&self.session.marker(m), text.as_bytes())?;
        }
        Ok(())
    }

    /// Decide race `k` if its members allow it (issue 4).
    fn race_progress(&mut self, k: usize) -> Result<()> {
        if self.race_done[k] {
            return Ok(());
        }
        let race = self.plan.races[k].clone();
        let members: Vec<usize> = race.tasks.iter().filter_map(|m| self.index_of(m)).collect();
        let succeeded =
            |o: &Option<Outcome>| o.as_ref().is_some_and(|o| o.state == TaskState::Succeeded);
        match race.pick {
            crate::plan::Pick::First => {
                let winner = members
                    .iter()
                    .copied()
                    .find(|&m| succeeded(&self.tasks[m].outcome));
                if let Some(w) = winner {
                    self.race_done[k] = true;
                    // A member whose attempt already ended keeps how it ended (failed, or
                    // succeeded too): only those still running or waiting lose.
                    for &m in &members {
                        if m != w
                            && self.tasks[m].outcome.is_none()
                            && let Some((wid, a)) = self.runner_of(m)
                        {
                            self.check_attempt(&wid, m, a, false)?;
                        }
                    }
                    let losers: Vec<usize> = members
                        .iter()
                        .copied()
                        .filter(|&m| m != w && self.tasks[m].outcome.is_none())
                        .collect();
                    for &m in &losers {
                        self.lose_member(m, &race.id, &self.plan.tasks[w].id.clone())?;
                    }
                    self.decide_race(k, Some(w), None, &losers)?;
                } else if members.iter().all(|&m| self.tasks[m].outcome.is_some()) {
                    self.race_done[k] = true;
                    self.decide_race(k, None, None, &[])?;
                }
            }
            crate::plan::Pick::Best => {
                if !members.iter().all(|&m| self.tasks[m].outcome.is_some()) {
                    return Ok(());
                }
                self.race_done[k] = true;
                let pointer = race.score.clone().unwrap_or_default();
                let score = |o: &Option<Outcome>| {
                    o.as_ref()
                        .filter(|o| o.state == TaskState::Succeeded)
                        .and_then(|o| o.result.as_ref())
                        .and_then(|r| r.pointer(&pointer))
                        .and_then(|v| v.as_f64())
                };
                let mut best: Option<(usize, f64)> = None;
                for &m in &members {
                    if let Some(sc) = score(&self.tasks[m].outcome)
                        && best.is_none_or(|(_, b)| sc > b)
                    {
                        best = Some((m, sc));
                    }
                }
                let mut losers = Vec::new();
                for &m in &members {
                    // Held successes get their file now: the winner's as succeeded, the
                    // others as lost.
                    if !succeeded(&self.tasks[m].outcome) {
                        continue;
                    }
                    let mut o = self.tasks[m].outcome.clone().unwrap_or_else(|| {
                        bare_outcome(
                            &self.plan.tasks[m].id,
                            TaskState::Succeeded,
                            0,
                            String::new(),
                        )
                    });
                    if Some(m) == best.map(|b| b.0) {
                        self.write_markers(m, &o)?;
                    } else {
                        o.state = TaskState::Lost;
                        o.reason = Some(format!("race {} was won by another task", race.id));
                        self.journal.log(
                            "task_finished",
                            json!({"task": o.task, "attempt": o.attempt, "state": "lost",
                                   "reason": o.reason}),
                        )?;
                        losers.push(m);
                    }
                    self.tasks[m].outcome = None;
                    self.record_outcome(m, o)?;
                }
                self.decide_race(k, best.map(|b| b.0), best.map(|b| b.1), &losers)?;
            }
        }
        Ok(())
    }

    /// Stop a race member that lost: its attempt is killed, it ends as `lost`.
    fn lose_member(&mut self, m: usize, race: &str, winner: &str) -> Result<()> {
        if let Some((wid, a)) = self.runner_of(m) {
            self.request_kill(&wid, m, a, "lost")?;
            self.attempt_ended(m, a, &wid, "lost")?;
        }
        self.set_retry(m, None);
        let id = self.plan.tasks[m].id.clone();
        let why = format!("race {race} was won by {winner}");
        self.journal.log(
            "task_finished",
            json!({"task": id, "attempt": self.tasks[m].attempt, "state": "lost", "reason": why}),
        )?;
        self.say(format_args!("{id}: lost ({why})"));
        let o = bare_outcome(&id, TaskState::Lost, self.tasks[m].attempt, why);
        self.record_outcome(m, o)?;
        let skipped = self.sched.lose(m);
        self.propagate(
            skipped,
            TaskState::Skipped,
            &format!("dependency {id} lost its race"),
        )
    }

    fn decide_race(
        &mut self,
        k: usize,
        winner: Option<usize>,
        score: Option<f64>,
        losers: &[usize],
    ) -> Result<()> {
        let race = self.plan.races[k].id.clone();
        let node = self.graph.race_nodes()[k].index();
        let w = winner.map(|w| self.plan.tasks[w].id.clone());
        let result = winner.and_then(|w| {
            self.tasks[w]
                .outcome
                .as_ref()
                .and_then(|o| o.result.clone())
        });
        let ro = crate::proto::RaceOutcome {
            race: race.clone(),
            state: if winner.is_some() {
                TaskState::Succeeded
            } else {
                TaskState::Failed
            },
            winner: w.clone(),
            score,
            result,
            losers: losers
                .iter()
                .map(|&l| self.plan.tasks[l].id.clone())
                .collect(),
            decided_at: proto::now_rfc3339(),
        };
        let path = self.session.race_outcome(&race);
        if let Some(dir) = path.parent() {
            fsio::create_dir_private(dir)?;
        }
        fsio::create_json_once(&path, &ro)?;
        self.journal.log(
            "race_decided",
            json!({"race": race, "winner": w, "score": score, "losers": ro.losers}),
        )?;
        match &w {
            Some(w) => {
                self.say(format_args!("race {race}: won by {w}"));
                self.sched.succeed(node);
            }
            None => {
                self.say(format_args!("race {race}: no member succeeded"));
                let skipped = self.sched.fail(node);
                self.propagate(
                    skipped,
                    TaskState::Skipped,
                    &format!("race {race} had no winner"),
                )?;
            }
        }
        Ok(())
    }

    /// Signals raised since the last look release the tasks waiting for them.
    fn check_signals(&mut self) -> Result<()> {
        for (name, node) in self.graph.signals().to_vec() {
            if self.sched.is_open(node.index()) && self.session.signal(&name).exists() {
                self.journal.log("signal_raised", json!({"signal": name}))?;
                self.say(format_args!("signal {name} raised"));
                self.sched.succeed(node.index());
            }
        }
        Ok(())
    }

    /// Nothing runs, nothing is ready, no retry is pending: signals not raised by now never
    /// will be; their waiters are skipped instead of hanging the session.
    fn check_stall(&mut self) -> Result<()> {
        if self.graph.signals().is_empty() || self.sched.finished() {
            return Ok(());
        }
        let busy = self
            .workers
            .values()
            .any(|w| matches!(w.state, WState::Busy { .. }));
        if busy || !self.retrying.is_empty() || self.sched.has_ready() {
            return Ok(());
        }
        self.check_signals()?;
        for (name, node) in self.graph.signals().to_vec() {
            if self.sched.is_open(node.index()) {
                self.journal
                    .log("signal_never_raised", json!({"signal": name}))?;
                let skipped = self.sched.fail(node.index());
                self.propagate(
                    skipped,
                    TaskState::Skipped,
                    &format!("signal {name} was never raised"),
                )?;
            }
        }
        Ok(())
    }

    /// Release barriers whose participants all arrived; break those a participant can no
    /// longer reach (issue 4).
    fn check_checkpoints(&mut self) -> Result<()> {
        let Ok(entries) = std::fs::read_dir(self.session.checkpoints_dir()) else {
            return Ok(());
        };
        let names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| crate::names::validate("checkpoint name", n).is_ok())
            .collect();
        for name in names {
            let proceed = self.session.checkpoint_proceed(&name);
            let broken = self.session.checkpoint_broken(&name);
            if proceed.exists() || broken.exists() {
                continue;
            }
            let arrived = crate::primitives::arrivals(&self.session, &name);
            let has = |t: &str| arrived.iter().any(|a| a.task == t);
            let def = self
                .plan
                .checkpoints
                .iter()
                .find(|c| c.name == name)
                .cloned();
            let tasks = def.as_ref().map(|c| c.tasks.as_slice());
            let verdict = match &def {
                _ if crate::primitives::all_arrived(tasks, &arrived) => Some(Ok(())),
                // Broken: a participant that ended for good without arriving.
                Some(c) => c
                    .tasks
                    .iter()
                    .filter(|t| !has(t))
                    .filter_map(|t| {
                        let i = self.index_of(t)?;
                        let o = self.tasks[i].outcome.as_ref()?;
                        let why = match (&o.state, &o.reason) {
                            (TaskState::Succeeded, _) => "finished without arriving".to_string(),
                            (st, Some(r)) => format!("{} ({r})", st.as_str()),
                            (st, None) => st.as_str().to_string(),
                        };
                        Some(Err((t.clone(), why)))
                    })
                    .next(),
                None => None,
            };
            match verdict {
                Some(Ok(())) => {
                    fsio::create_json_once(
                        &proceed,
                        &crate::proto::BarrierVerdict {
                            released_at: proto::now_rfc3339(),
                            task: None,
                            reason: None,
                        },
                    )?;
                    self.journal.log(
                        "checkpoint_released",
                        json!({"checkpoint": name, "arrived": arrived.len()}),
                    )?;
                }
                Some(Err((task, why))) => {
                    fsio::create_json_once(
                        &broken,
                        &crate::proto::BarrierVerdict {
                            released_at: proto::now_rfc3339(),
                            task: Some(task.clone()),
                            reason: Some(why.clone()),
                        },
                    )?;
                    self.journal.log(
                        "checkpoint_broken",
                        json!({"checkpoint": name, "task": task, "reason": why}),
                    )?;
                }
                None => {}
            }
        }
        Ok(())
    }

    /// Break lock deadlocks: fail the wait of the lowest-priority task in a cycle.
    fn check_deadlocks(&mut self) -> Result<()> {
        let locks = crate::locks::scan(&self.session);
        if locks.values().all(|v| v.waiters.is_empty()) {
            return Ok(());
        }
        let plan = &self.plan;
        let priority = |t: &str| {
            plan.tasks
                .iter()
                .find(|x| x.id == t)
                .map_or(0, |x| x.priority)
        };
        let found = crate::locks::find_deadlock(&locks, &priority);
        let confirmed = match (&found, &self.suspect) {
            (Some(d), Some((seen, at))) => d == seen && at.elapsed() >= DEADLOCK_CONFIRM,
            _ => false,
        };
        if !confirmed {
            if found.as_ref() != self.suspect.as_ref().map(|s| &s.0) {
                self.suspect = found.map(|d| (d, Instant::now()));
            }
            return Ok(());
        }
        self.suspect = None;
        if let Some(d) = found {
            let abort = self.session.lock_abort(&d.lock, &d.victim);
            if fsio::create_json_once(
                &abort,
                &crate::proto::LockAbort {
                    cycle: d.cycle.clone(),
                },
            )? {
                self.journal.log(
                    "deadlock_detected",
                    json!({"cycle": d.cycle, "victim": d.victim, "lock": d.lock}),
                )?;
                self.say(format_args!(
                    "deadlock: {}; {} gives up {}",
                    d.cycle, d.victim, d.lock
                ));
            }
        }
        Ok(())
    }

    fn record_outcome(&mut self, t: usize, o: Outcome) -> Result<()> {
        self.ensure_task_dir(t)?;
        let path = self.session.outcome_json(&o.task);
        // Invariant 3: created once; if one exists it is the accepted outcome.
        if !fsio::create_json_once(&path, &o)? {
            let existing: Option<Outcome> = fsio::read_json(&path)?;
            self.tasks[t].outcome = existing;
            return Ok(());
        }
        if std::mem::take(&mut self.tasks[t].retry_file) {
            let _ = std::fs::remove_file(self.session.retry_json(&o.task));
        }
        self.tasks[t].outcome = Some(o);
        Ok(())
    }

    fn stop_worker(&mut self, wid: &str, reason: ShutdownReason) -> Result<()> {
        fsio::write_json(&self.session.worker_shutdown(wid), &Shutdown { reason })?;
        if let Some(w) = self.workers.get_mut(wid)
            && w.state != WState::Gone
        {
            w.state = WState::Stopping;
        }
        Ok(())
    }

    /// A worker died or exited. Its task, if it had one and did not finish, gets a new
    /// attempt on another worker (issue 3: a crash does not use up `retries`).
    fn worker_gone(&mut self, wid: &str, how: &'static str) -> Result<()> {
        let Some(w) = self.workers.get(wid) else {
            return Ok(());
        };
        let prev = w.state;
        if prev == WState::Gone {
            return Ok(());
        }
        tracing::debug!(worker = wid, how, "worker gone");
        // A queued task it never claimed goes back to the queue as it was.
        self.withdraw_queued(Some(wid))?;
        let prev = self.workers.get(wid).map_or(prev, |w| w.state);
        // Its running task, and a queued one it claimed that could not be withdrawn (it
        // may have started it; only a hand-edited session gets here).
        let queued = self.workers.get_mut(wid).and_then(|w| w.queued.take());
        let running = match prev {
            WState::Busy { task, attempt } => Some((task, attempt)),
            _ => None,
        };
        for (task, attempt) in running.into_iter().chain(queued) {
            // It may have recorded the exit just before dying.
            if !self.check_attempt(wid, task, attempt, false)? {
                // Its task runs in a session of its own and would outlive the worker: stop
                // it (with anything it left behind in its group) before the task moves on.
                self.kill_group_directly(wid, task, attempt);
                self.attempt_lost(task, attempt, wid)?;
            }
        }
        if let Some(w) = self.workers.get_mut(wid) {
            w.state = WState::Gone;
        }
        let expected = prev == WState::Stopping;
        self.journal.log(
            if expected {
                "worker_exited"
            } else {
                "worker_lost"
            },
            json!({"worker": wid, "how": how}),
        )?;
        if expected {
            return Ok(());
        }
        self.say(format_args!("worker {wid} lost ({how})"));
        if prev == WState::Starting {
            self.spawn_failures += 1;
            if self.spawn_failures >= MAX_SPAWN_FAILURES {
                return Err(Error::Launch(format!(
                    "{MAX_SPAWN_FAILURES} workers in a row died before registering; see {}",
                    self.session.worker_console(wid).display()
                )));
            }
        }
        // Keep the pool at the size the remaining work can use.
        self.fill_pool()
    }

    fn attempt_lost(&mut self, t: usize, attempt: u32, wid: &str) -> Result<()> {
        if attempt != self.tasks[t].attempt
            || self.tasks[t].outcome.is_some()
            || self.stale.contains(&(t, attempt))
        {
            return Ok(()); // already superseded (reassigned or cancelled)
        }
        self.tasks[t].reassigns += 1;
        self.stale.push((t, attempt));
        self.attempt_ended(t, attempt, wid, "worker_lost")?;
        let n = self.tasks[t].reassigns;
        let max = self.plan.tasks[t].max_reassign;
        if n > max {
            let msg = format!("worker lost {n} times (max_reassign is {max})");
            let mut o = bare_outcome(&self.plan.tasks[t].id, TaskState::Failed, attempt, msg);
            o.worker = Some(wid.to_string());
            return self.finish_task(t, o);
        }
        self.sched.requeue(t);
        Ok(())
    }

    /// Heartbeat leases: a registered worker whose counter has not moved for the lease
    /// time (on our monotonic clock, never file mtimes) is alive but stuck: treat it as
    /// lost and kill its task's process group, which it can no longer do itself.
    fn check_leases(&mut self) -> Result<()> {
        let mut stuck = Vec::new();
        for (id, w) in self.workers.iter_mut() {
            if !matches!(w.state, WState::Idle | WState::Busy { .. }) {
                continue;
            }
            let hb = fsio::read_json::<Heartbeat>(&self.session.worker_heartbeat(id))
                .ok()
                .flatten()
                .map(|h| h.counter);
            if hb.is_some() && hb != w.heartbeat {
                w.heartbeat = hb;
                w.heartbeat_changed = Instant::now();
            } else if w.heartbeat_changed.elapsed() > self.lease {
                stuck.push(id.clone());
            }
        }
        for id in stuck {
            self.journal.log(
                "worker_unresponsive",
                json!({"worker": id, "lease_ms": self.lease.as_millis() as u64}),
            )?;
            if let Some(WState::Busy { task, attempt }) = self.workers.get(&id).map(|w| w.state) {
                self.kill_group_directly(&id, task, attempt);
            }
            fsio::write_json(
                &self.session.worker_shutdown(&id),
                &Shutdown {
                    reason: ShutdownReason::Lost,
                },
            )?;
            self.worker_gone(&id, "unresponsive")?;
        }
        Ok(())
    }

    /// Kill the process group of an attempt whose worker cannot (it is stuck or gone). The
    /// group id comes from the worker's `started` line; we only signal it when that attempt
    /// ran on this host and has not recorded its exit, and we signal the group, never a bare
    /// PID (invariant 5).
    fn kill_group_directly(&mut self, wid: &str, t: usize, attempt: u32) {
        let id = &self.plan.tasks[t].id;
        if self.session.exit_json(id, attempt).exists() {
            return;
        }
        if let Ok(Some(st)) = crate::session::started_record(&self.session, wid, id, attempt)
            && st.pgid > 1
            && self.worker_host(wid).as_deref() == Some(&hostname())
        {
            let _ = killpg(Pid::from_raw(st.pgid as i32), Signal::SIGKILL);
        }
    }

    /// Read what worker `wid` journalled since we last looked, and journal `task_started`
    /// for each current attempt that started (once: `started_seen`). With `say` false (on
    /// resume, adopting a worker) the starts are only noted: the previous orchestrator
    /// journalled them.
    fn follow_journal(&mut self, wid: &str, say: bool) -> Result<()> {
        let Some(w) = self.workers.get_mut(wid) else {
            return Ok(());
        };
        for ev in w.journal.read_new()? {
            let exited = ev["event"] == "exited";
            if ev["event"] != "started" && !exited {
                continue;
            }
            let (Some(task), Some(attempt)) = (ev["task"].as_str(), ev["attempt"].as_u64()) else {
                continue;
            };
            let Some(t) = self.index_of(task) else {
                continue;
            };
            let attempt = attempt as u32;
            let rt = &mut self.tasks[t];
            if rt.attempt != attempt || rt.outcome.is_some() {
                continue;
            }
            if exited {
                rt.exited = Some((attempt, serde_json::from_value(ev.clone()).ok()));
                continue;
            }
            if rt.started_seen {
                continue;
            }
            rt.started_seen = true;
            if say {
                self.journal.log(
                    "task_started",
                    json!({"task": task, "attempt": attempt, "worker": wid}),
                )?;
                self.say(format_args!("{task}: started on {wid} (attempt {attempt})"));
            }
        }
        Ok(())
    }

    fn worker_host(&self, wid: &str) -> Option<String> {
        fsio::read_json::<WorkerInfo>(&self.session.worker_json(wid))
            .ok()
            .flatten()
            .map(|i| i.host)
    }

    /// Consume `control/` requests (written by `orchestrator reassign|cancel`).
    fn handle_control(&mut self) -> Result<()> {
        for rid in self.session.control_requests()? {
            let path = self.session.control_request(&rid);
            let reply = match fsio::read_json::<ControlRequest>(&path) {
                Ok(Some(req)) => {
                    self.journal.log(
                        "control_request",
                        json!({"id": rid, "action": req.action, "task": req.task}),
                    )?;
                    self.control(&req)
                }
                Ok(None) => continue,
                Err(e) => Err(e.to_string()),
            };
            let reply = match reply {
                Ok(message) => ControlReply { ok: true, message },
                Err(message) => ControlReply { ok: false, message },
            };
            fsio::write_json(&self.session.control_reply(&rid), &reply)?;
            let _ = std::fs::remove_file(&path);
        }
        Ok(())
    }

    /// Carry out a request directly, without `control/` (used when the CLI itself took the
    /// session over because no orchestrator was running).
    pub fn control_now(
        &mut self,
        action: &str,
        task: Option<&str>,
    ) -> std::result::Result<String, String> {
        let req = ControlRequest {
            id: format!("direct-{}", proto::now_unix_ms()),
            action: action.into(),
            task: task.map(str::to_string),
            requested_at: proto::now_rfc3339(),
        };
        if let Err(e) = self.journal.log(
            "control_request",
            json!({"id": req.id, "action": action, "task": task}),
        ) {
            return Err(e.to_string());
        }
        self.control(&req)
    }

    fn control(&mut self, req: &ControlRequest) -> std::result::Result<String, String> {
        // Requests act on running and ready tasks; a queued one is neither until withdrawn.
        self.withdraw_queued(None).map_err(|e| e.to_string())?;
        let task = match &req.task {
            Some(name) => Some(
                self.index_of(name)
                    .ok_or_else(|| format!("session {} has no task {name:?}", self.session.id()))?,
            ),
            None => None,
        };
        let r = match (req.action.as_str(), task) {
            ("reassign", Some(t)) => self.reassign(t),
            ("cancel", Some(t)) => self.cancel_task(t),
            ("cancel", None) => self.cancel_session(),
            (other, _) => return Err(format!("unknown request {other:?}")),
        };
        r.map_err(|e| e.to_string())?
    }

    /// The running worker of task `t`'s current attempt, if any.
    fn runner_of(&self, t: usize) -> Option<(String, u32)> {
        let attempt = self.tasks[t].attempt;
        self.workers.iter().find_map(|(id, w)| match w.state {
            WState::Busy { task, attempt: a } if task == t && a == attempt => Some((id.clone(), a)),
            _ => None,
        })
    }

    fn request_kill(&mut self, wid: &str, t: usize, attempt: u32, reason: &str) -> Result<()> {
        fsio::write_json(
            &self.session.worker_kill(wid),
            &KillRequest {
                task: self.plan.tasks[t].id.clone(),
                attempt,
                reason: reason.into(),
            },
        )
    }

    fn reassign(&mut self, t: usize) -> Result<std::result::Result<String, String>> {
        let id = self.plan.tasks[t].id.clone();
        let Some((wid, attempt)) = self.runner_of(t) else {
            return Ok(Err(format!(
                "task {id} is not running (state: {})",
                self.state_name(t)
            )));
        };
        self.request_kill(&wid, t, attempt, "reassigned")?;
        self.attempt_ended(t, attempt, &wid, "reassigned")?;
        self.stale.push((t, attempt));
        // Bump the epoch now: the old attempt's exit can no longer be accepted.
        self.tasks[t].avoid = Some(wid.clone());
        self.sched.requeue(t);
        // The old worker stays busy until its attempt has ended; make sure another one can
        // take the new attempt.
        if !self.workers.values().any(|w| w.state == WState::Idle)
            && self.live_workers() <= self.target_workers
        {
            self.spawn_worker()?;
        }
        let next = self.tasks[t].attempt + 1;
        Ok(Ok(format!(
            "task {id}: stopping attempt {attempt} on {wid}; attempt {next} goes to another worker"
        )))
    }

    fn cancel_task(&mut self, t: usize) -> Result<std::result::Result<String, String>> {
        let id = self.plan.tasks[t].id.clone();
        if self.tasks[t].outcome.is_some() {
            return Ok(Err(format!(
                "task {id} already finished ({})",
                self.state_name(t)
            )));
        }
        let n = self.cancel_one(t, "cancelled by request".into())?;
        Ok(Ok(format!(
            "task {id} cancelled ({n} dependents cancelled too)"
        )))
    }

    fn cancel_one(&mut self, t: usize, why: String) -> Result<usize> {
        let attempt = self.tasks[t].attempt;
        if let Some((wid, a)) = self.runner_of(t) {
            self.request_kill(&wid, t, a, "cancelled")?;
            self.attempt_ended(t, a, &wid, "cancelled")?;
        }
        self.set_retry(t, None);
        let before = self.terminal_count();
        let o = bare_outcome(&self.plan.tasks[t].id, TaskState::Cancelled, attempt, why);
        self.finish_task(t, o)?;
        Ok(self.terminal_count() - before - 1)
    }

    fn terminal_count(&self) -> usize {
        self.tasks.iter().filter(|t| t.outcome.is_some()).count()
    }

    fn cancel_session(&mut self) -> Result<std::result::Result<String, String>> {
        self.cancelled = true;
        let before = self.terminal_count();
        for t in 0..self.tasks.len() {
            if self.tasks[t].outcome.is_none() {
                self.cancel_one(t, "session cancelled".into())?;
            }
        }
        let n = self.terminal_count() - before;
        Ok(Ok(format!(
            "session {} cancelled ({n} tasks stopped or dropped)",
            self.session.id()
        )))
    }

    fn state_name(&self, t: usize) -> &'static str {
        if let Some(o) = &self.tasks[t].outcome {
            return o.state.as_str();
        }
        match self.sched.state(t) {
            State::Running if self.tasks[t].retry_at.is_some() => "retrying",
            State::Running => "running",
            _ => "pending",
        }
    }

    /// Before resuming a finished session for `retry`: move aside the outcomes of the tasks
    /// to re-run and of their dependents that never ran, and the summary.
    fn prepare_retry(&mut self, names: &[String]) -> Result<Vec<usize>> {
        let deps = self.plan.dep_indices();
        let mut dependents = vec![Vec::new(); deps.len()];
        for (i, ds) in deps.iter().enumerate() {
            for &d in ds {
                dependents[d].push(i);
            }
        }
        let mut reset = Vec::new();
        for name in names {
            let t = self.index_of(name).ok_or_else(|| {
                Error::Usage(format!(
                    "session {} has no task {name:?}",
                    self.session.id()
                ))
            })?;
            let o: Option<Outcome> = fsio::read_json(&self.session.outcome_json(name))?;
            match o.map(|o| o.state) {
                Some(TaskState::Failed | TaskState::Skipped | TaskState::Cancelled) => {}
                Some(s) => {
                    return Err(Error::Usage(format!(
                        "task {name} {}; only failed, skipped or cancelled tasks can be retried",
                        s.as_str()
                    )));
                }
                None => {
                    return Err(Error::Usage(format!("task {name} has no outcome to retry")));
                }
            }
            let mut stack = vec![t];
            while let Some(u) = stack.pop() {
                if reset.contains(&u) {
                    continue;
                }
                reset.push(u);
                for &d in &dependents[u] {
                    let o: Option<Outcome> =
                        fsio::read_json(&self.session.outcome_json(&self.plan.tasks[d].id))?;
                    if o.is_some_and(|o| {
                        matches!(o.state, TaskState::Skipped | TaskState::Cancelled)
                    }) {
                        stack.push(d);
                    }
                }
            }
        }
        let stamp = proto::now_unix_ms();
        for &t in &reset {
            let id = &self.plan.tasks[t].id;
            let from = self.session.outcome_json(id);
            let to = self.session.superseded_outcome(id, stamp);
            std::fs::rename(&from, &to).map_err(io_err(&from, "move aside"))?;
        }
        let from = self.session.summary_json();
        let to = self.session.superseded_summary(stamp);
        std::fs::rename(&from, &to).map_err(io_err(&from, "move aside"))?;
        let ids: Vec<&str> = reset
            .iter()
            .map(|&t| self.plan.tasks[t].id.as_str())
            .collect();
        self.journal.log("retry_requested", json!({"tasks": ids}))?;
        Ok(reset)
    }

    /// Rebuild the in-memory state from the directory (resume). Tasks in `fresh` are being
    /// retried: their earlier attempts are history, not work in flight.
    fn rebuild(&mut self, fresh: &[usize]) -> Result<()> {
        let s = self.session.clone();
        // Outcomes first: they are final.
        for t in 0..self.plan.tasks.len() {
            let id = self.plan.tasks[t].id.clone();
            self.tasks[t].attempt = s.attempts(&id)?.last().copied().unwrap_or(0);
            self.tasks[t].retry_file = s.retry_json(&id).exists();
            if let Some(o) = fsio::read_json::<Outcome>(&s.outcome_json(&id))? {
                if o.state == TaskState::Succeeded {
                    self.sched.succeed(t);
                } else {
                    self.sched.fail(t);
                }
                self.tasks[t].outcome = Some(o);
            }
        }
        // Workers: adopt the live ones.
        let mut holders: BTreeMap<(usize, u32), String> = BTreeMap::new();
        for wid in s.worker_ids()? {
            if let Some(n) = wid.strip_prefix('w').and_then(|n| n.parse::<u32>().ok()) {
                self.next_worker = self.next_worker.max(n + 1);
            }
            // Assignments not claimed yet never ran: take them back (issue 5); the tasks go
            // out again with the same attempt numbers. What a worker claimed is in flight.
            fsio::create_dir_private(&s.done_dir(&wid))?;
            for (task, attempt) in s.assignments(&wid)? {
                fsio::claim(
                    &s.assignment(&wid, &task, attempt),
                    &s.assignment_done(&wid, &task, attempt),
                )?;
            }
            for (task, attempt) in s.claimed_assignments(&wid)? {
                if let Some(t) = self.index_of(&task) {
                    holders.insert((t, attempt), wid.clone());
                    self.tasks[t].attempt = self.tasks[t].attempt.max(attempt);
                }
            }
            let alive = worker_alive(&s, &wid);
            let registered = s.worker_json(&wid).exists();
            let stopped = s.worker_shutdown(&wid).exists();
            if alive && registered && !stopped {
                let tail = crate::session::JournalTail::new(s.worker_events(&wid));
                self.workers
                    .insert(wid.clone(), WorkerRt::new(WState::Idle, tail));
                self.watch_death(&wid);
                self.journal.log("worker_adopted", json!({"worker": wid}))?;
            } else if alive && stopped {
                // Told to stop (e.g. holding a failed window); let it hear the end.
                let tail = crate::session::JournalTail::new(s.worker_events(&wid));
                self.workers
                    .insert(wid.clone(), WorkerRt::new(WState::Stopping, tail));
                self.watch_death(&wid);
            }
        }
        // Tasks in flight when the last orchestrator died.
        for t in 0..self.plan.tasks.len() {
            if self.tasks[t].outcome.is_some() || fresh.contains(&t) {
                continue;
            }
            let id = self.plan.tasks[t].id.clone();
            // Failed attempts so far count against `retries`.
            for a in s.attempts(&id)? {
                if let Ok(Some(e)) = fsio::read_json::<ExitRecord>(&s.exit_json(&id, a))
                    && !e.succeeded()
                    && a < self.tasks[t].attempt
                {
                    self.tasks[t].failures += 1;
                }
            }
            let n = self.tasks[t].attempt;
            if n == 0 {
                continue;
            }
            let holder = holders.get(&(t, n)).cloned();
            let exit = s.exit_json(&id, n);
            let holder_live = holder
                .as_ref()
                .is_some_and(|w| self.workers.get(w).is_some_and(|w| w.state == WState::Idle));
            if exit.exists() || holder_live {
                self.sched.adopt_running(t);
                match holder {
                    Some(w) if holder_live => {
                        if let Some(r) = self.workers.get_mut(&w) {
                            r.state = WState::Busy {
                                task: t,
                                attempt: n,
                            };
                        }
                        // Its start, if journalled, was journalled by our predecessor.
                        self.follow_journal(&w, false)?;
                        self.journal.log(
                            "task_adopted",
                            json!({"task": id, "attempt": n, "worker": w}),
                        )?;
                        // check_attempt in the first reconcile accepts an exit already there.
                    }
                    _ => {
                        let wid = fsio::read_json::<ExitRecord>(&exit)
                            .ok()
                            .flatten()
                            .map(|e| e.worker)
                            .unwrap_or_default();
                        let r = match fsio::read_json::<ExitRecord>(&exit) {
                            Ok(Some(e)) => Ok(e),
                            Ok(None) => Err(format!("{}: missing", exit.display())),
                            Err(e) => Err(e.to_string()),
                        };
                        self.accept(t, n, &wid, r)?;
                    }
                }
            } else if self.sched.state(t) == State::Ready || self.sched.state(t) == State::Waiting {
                // Orphaned: its worker is gone. The next assignment gets attempt n + 1.
                let wid = holder.unwrap_or_default();
                self.tasks[t].reassigns += 1;
                self.stale.push((t, n));
                self.attempt_ended(t, n, &wid, "worker_lost")?;
            }
        }
        // Skipped outcomes a crash may have left unwritten.
        for t in 0..self.plan.tasks.len() {
            if self.tasks[t].outcome.is_none() && self.sched.state(t) == State::Skipped {
                let id = self.plan.tasks[t].id.clone();
                let o = bare_outcome(
                    &id,
                    TaskState::Skipped,
                    0,
                    "a dependency did not succeed".into(),
                );
                self.record_outcome(t, o)?;
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<SessionState> {
        let state = if self.cancelled {
            SessionState::Cancelled
        } else if self.sched.any_failed() {
            SessionState::Failed
        } else {
            SessionState::Succeeded
        };
        let tasks: Vec<SummaryTask> = self
            .plan
            .tasks
            .iter()
            .zip(&self.tasks)
            .map(|(t, rt)| {
                let o = rt.outcome.as_ref();
                SummaryTask {
                    id: t.id.clone(),
                    state: o.map(|o| o.state).unwrap_or(TaskState::Failed),
                    attempts: rt.attempt,
                    worker: o.and_then(|o| o.worker.clone()),
                    exit_code: o.and_then(|o| o.exit_code),
                    duration_ms: o.and_then(|o| o.duration_ms),
                    reason: o.and_then(|o| o.reason.clone()),
                    result: o.and_then(|o| o.result.clone()),
                }
            })
            .collect();
        let summary = Summary {
            session: self.session.id().to_string(),
            state,
            started_at: self.started_at.clone(),
            ended_at: proto::now_rfc3339(),
            duration_ms: self.started.elapsed().as_millis() as u64,
            tasks,
        };
        fsio::write_json(&self.session.summary_json(), &summary)?;
        self.journal.log(
            "session_finished",
            json!({"session": self.session.id(), "state": state.as_str(),
                   "duration_ms": summary.duration_ms}),
        )?;
        // Tell every worker, including idle-stopped ones holding a failed window open and
        // ones a previous orchestrator started.
        for id in self.session.worker_ids()? {
            if worker_alive(&self.session, &id)
                || self
                    .workers
                    .get(&id)
                    .is_some_and(|w| w.state != WState::Gone)
            {
                self.stop_worker(&id, ShutdownReason::SessionEnd)?;
            }
        }
        // Give them a moment to exit so the caller sees a quiet session.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let live: Vec<String> = self
                .workers
                .iter()
                .filter(|(id, w)| w.state != WState::Gone && worker_alive(&self.session, id))
                .map(|(id, _)| id.clone())
                .collect();
            let left = deadline.saturating_duration_since(Instant::now());
            if live.is_empty() || left.is_zero() {
                break;
            }
            if let Ok(Wake::Died(id, _)) =
                self.rx.recv_timeout(left.min(Duration::from_millis(100)))
                && let Some(w) = self.workers.get_mut(&id)
            {
                w.state = WState::Gone;
            }
        }
        Ok(state)
    }
}

fn bare_outcome(task: &str, state: TaskState, attempt: u32, why: String) -> Outcome {
    Outcome {
        task: task.to_string(),
        state,
        attempt,
        worker: None,
        exit_code: None,
        signal: None,
        started_at: None,
        ended_at: None,
        duration_ms: None,
        reason: Some(why),
        result: None,
        decided_at: proto::now_rfc3339(),
    }
}

/// A number in [-1, 1] for backoff jitter; the low bits of the clock are random enough to
/// keep retries of many tasks from firing in lockstep.
fn jitter_unit() -> f64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos % 2001) as f64 / 1000.0 - 1.0
}

/// Take `orchestrator/lock` (held for the orchestrator's life) and write `info.json`.
fn take_lock(session: &Session) -> Result<File> {
    let path = session.orchestrator_lock();
    let f = fsio::open_lock_file(&path)?;
    if f.try_lock_exclusive().is_err() {
        let pid = fsio::read_json::<OrchestratorInfo>(&session.orchestrator_info())
            .ok()
            .flatten()
            .map(|i| format!(" (pid {} on {})", i.pid, i.host))
            .unwrap_or_default();
        return Err(Error::Session(format!(
            "session {} already has a live orchestrator{pid}",
            session.id()
        )));
    }
    fsio::write_json(
        &session.orchestrator_info(),
        &OrchestratorInfo {
            pid: std::process::id(),
            host: hostname(),
            started_at: proto::now_rfc3339(),
        },
    )?;
    Ok(f)
}

/// Whether a worker holds its `alive` lock (a non-blocking probe; used by status too).
pub fn worker_alive(session: &Session, id: &str) -> bool {
    fsio::lock_held(&session.worker_alive(id))
}

/// Whether the session has a live orchestrator.
pub fn orchestrator_alive(session: &Session) -> bool {
    fsio::lock_held(&session.orchestrator_lock())
}

/// Send a control request to a session's live orchestrator and wait for its answer.
pub fn send_control(session: &Session, action: &str, task: Option<&str>) -> Result<ControlReply> {
    if !orchestrator_alive(session) {
        return Err(Error::Session(format!(
            "session {} has no live orchestrator (`orchestrator resume {}` first)",
            session.id(),
            session.id()
        )));
    }
    let id = format!("{}-{}-{}", proto::now_unix_ms(), std::process::id(), action);
    let req = ControlRequest {
        id: id.clone(),
        action: action.into(),
        task: task.map(str::to_string),
        requested_at: proto::now_rfc3339(),
    };
    if !fsio::create_json_once(&session.control_request(&id), &req)? {
        return Err(Error::Session(format!(
            "control request {id} already exists"
        )));
    }
    let reply_path = session.control_reply(&id);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(r) = fsio::read_json::<ControlReply>(&reply_path)? {
            let _ = std::fs::remove_file(&reply_path);
            return Ok(r);
        }
        if Instant::now() > deadline || !orchestrator_alive(session) {
            let _ = std::fs::remove_file(session.control_request(&id));
            return Err(Error::Session(format!(
                "session {}: the orchestrator did not answer request {id}",
                session.id()
            )));
        }
        thread::sleep(Duration::from_millis(20));
    }
}
