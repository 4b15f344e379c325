//! The imperative shell around the [`Engine`]: it turns file-system changes, worker
//! deaths, signals and timers into [`Fact`]s, and carries the engine's [`Command`](crate::engine::Command)s out
//! (`effects.rs`). It decides nothing itself.
//!
//! What wakes the loop (all funnel into one channel): notify events under `workers/` (a
//! worker's journal grew) and `control/` (a person's request), changes under the
//! primitives' directories, a worker's death (a thread blocks on the worker's `alive`
//! flock and gets it when the kernel releases it; the background launcher's child
//! exits), SIGINT/SIGTERM, and timers (rescan, the engine's next deadline). Events are
//! hints: every pass reads the files it acts on.
//!
//! `recover.rs` rebuilds a session whose orchestrator died: the journal gives the engine
//! its history, the directory what happened meanwhile.

mod agents;
mod control;
mod effects;
mod recover;
mod worktrees;

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use crate::engine::{self, Engine, Exit, Fact, Interrupt, WorkerState};
use crate::error::{Error, Result};
use crate::fsio;
use crate::journal::{ControlAction, DeathCause, Event, Journal, Tail, WorkerEvent};
use crate::launch::{self, LauncherKind, WorkerCommand};
use crate::liveness::{Flock, Liveness};
use crate::plan::Plan;
use crate::proto::{
    self, ControlReply, ControlRequest, Heartbeat, OrchestratorInfo, SessionInfo, SessionState,
    SummaryRow, WorkerInfo,
};
use crate::session::Session;
use crate::watch::{self, WatchMode};
use crate::worker::hostname;

pub use control::{add_tasks, leave_control, send_control};

/// How often a starting worker's registration is looked for without a native watcher.
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
    pub env: launch::LaunchEnv,
    /// A partial run's selection (`--only`, `--skip`), by task index; empty: every task.
    pub excluded: Vec<Option<crate::plan::Exclusion>>,
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
    pub env: launch::LaunchEnv,
    /// Carry on past a command that fails (reported as a warning): for `cancel` taking
    /// over a session whose orchestrator failed, where stopping everything matters more
    /// than the write that failed before.
    pub best_effort: bool,
    /// Taken over to be rolled back: a finished session may be resumed.
    pub rollback: bool,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    pub state: SessionState,
    /// The signal that interrupted it, if one did.
    pub interrupt: Option<Interrupt>,
}

impl Ended {
    /// The process exit code: 0 succeeded, 1 failed or cancelled, 130/143 interrupted.
    pub fn exit_code(&self) -> i32 {
        match (self.state, self.interrupt) {
            // What a person asked (`orchestrator rollback`) was done.
            (SessionState::Succeeded | SessionState::RolledBack, _) => 0,
            (SessionState::Interrupted, Some(i)) => i.exit_code(),
            (SessionState::Interrupted, None) => 130,
            _ => 1,
        }
    }
}

enum Wake {
    Files,
    Control,
    /// Something changed under checkpoints/, signals/ or locks/.
    Prim,
    Died(String, DeathCause),
    Signal(Interrupt),
}

/// A running session's orchestrator.
pub struct Orchestrator {
    session: Session,
    engine: Engine,
    watch: WatchMode,
    watcher: Option<watch::Watch>,
    launcher: Box<dyn launch::Launcher>,
    journal: Journal,
    /// Each worker's journal, followed.
    tails: BTreeMap<String, Tail>,
    /// Workers the engine gave up on whose process may still report (their late exits
    /// are journalled as stale).
    lingering: Vec<String>,
    /// Each agent task's last journalled state (a repeated report is not journalled).
    agents: std::collections::HashMap<String, (u32, crate::agent::AgentState)>,
    /// `tasks/<id>/` exists (made lazily: 10 000 mkdirs before the first start cost).
    dir_made: Vec<bool>,
    /// `tasks/<id>/retry.json` may exist: only then is it removed on the next assignment.
    retry_file: Vec<bool>,
    /// Each decided task's summary row.
    rows: Vec<Option<SummaryRow>>,
    /// Facts produced by carrying out commands, fed before anything else.
    feedback: VecDeque<Fact>,
    prim_dirty: bool,
    /// Replies to requests made directly (not through `control/`).
    direct_replies: BTreeMap<String, (bool, String)>,
    ended: Option<SessionState>,
    /// Whether writes are fsync'd (`--durable`).
    fs: fsio::Fs,
    /// See [`ResumeConfig::best_effort`].
    best_effort: bool,
    tx: Sender<Wake>,
    rx: Receiver<Wake>,
    started: Instant,
    started_at: String,
    /// Whether progress lines are printed: shared, so a live view that takes the
    /// terminal can turn them off while it is up and on again when it leaves.
    progress: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The git worktrees of tasks with `worktree = true` (none: no task has one).
    worktrees: Option<worktrees::Worktrees>,
    _lock: File,
}

impl Orchestrator {
    /// Create the session directory and everything written once. Nothing is created when
    /// this fails before `Session::create` (the worker binary is located first).
    pub fn create(cfg: RunConfig) -> Result<Orchestrator> {
        let fs = fsio::Fs::new(cfg.durable);
        WorkerCommand::locate(cfg.watch, cfg.durable, &cfg.env)?;
        // Git is asked before anything is made: a worktree task outside a repository
        // refuses the run with nothing created.
        let worktrees = worktrees::discover(&cfg.plan, &cfg.plan_file)?;
        let session = Session::create(&cfg.sessions_root, &cfg.plan.name)?;
        // A session that could not be set up whole (a full disk) is removed: nobody was
        // told its path, and half of one could only be refused later.
        Orchestrator::set_up(cfg, session.clone(), fs, worktrees).inspect_err(|_| {
            let _ = fsio::remove_tree(session.root());
        })
    }

    fn set_up(
        cfg: RunConfig,
        session: Session,
        fs: fsio::Fs,
        worktrees: Option<proto::WorktreeSetup>,
    ) -> Result<Orchestrator> {
        let cmd = WorkerCommand::locate(cfg.watch, cfg.durable, &cfg.env)?;
        let lock = take_lock(&session, fs)?;
        let started_at = proto::now_rfc3339();
        fs.write_json(
            &session.session_json(),
            &SessionInfo {
                protocol: proto::PROTOCOL_VERSION,
                id: session.id().to_string(),
                // Absolute: tasks added later are checked against its directory.
                plan_file: std::fs::canonicalize(&cfg.plan_file).unwrap_or(cfg.plan_file.clone()),
                created_at: started_at,
                launcher: cfg.launcher.as_str().into(),
                workers: cfg.workers,
                durable: cfg.durable,
                worktrees: worktrees.clone(),
            },
        )?;
        fs.write_json(&session.plan_json(), &cfg.plan)?;
        let launcher = launch::make(cfg.launcher, cmd, &session, cfg.plan.keep_windows, &cfg.env);
        let mut journal = Journal::open(&session, fs)?;
        journal.append(&Event::SessionStarted {
            session: session.id().to_string(),
            tasks: cfg.plan.tasks.len(),
            workers: cfg.workers,
            launcher: cfg.launcher.as_str().into(),
            protocol: proto::PROTOCOL_VERSION,
        })?;
        journal.append(&Event::TasksAdded {
            tasks: cfg.plan.tasks.iter().map(|t| t.id.clone()).collect(),
        })?;
        let ecfg = engine::Config {
            seed: seed(),
            session: session.id().to_string(),
            excluded: cfg.excluded,
            ..engine::Config::new(cfg.workers, Duration::from_millis(cfg.plan.lease_ms))
        };
        let worktrees = worktrees::Worktrees::of(&cfg.plan, worktrees)?;
        let engine = Engine::new(cfg.plan, ecfg, proto::now_unix_ms() * 1000, Instant::now());
        let mut o = Orchestrator::assemble(session, engine, cfg.watch, launcher, journal, lock);
        o.worktrees = worktrees;
        o.warn_dirty_checkouts()?;
        Ok(o)
    }

    fn assemble(
        session: Session,
        engine: Engine,
        watch: WatchMode,
        launcher: Box<dyn launch::Launcher>,
        journal: Journal,
        lock: File,
    ) -> Orchestrator {
        let (tx, rx) = mpsc::channel();
        let n = engine.plan().tasks.len();
        let journal_fs = journal.fs();
        Orchestrator {
            session,
            engine,
            watch,
            watcher: None,
            launcher,
            journal,
            tails: BTreeMap::new(),
            lingering: Vec::new(),
            agents: Default::default(),
            dir_made: vec![false; n],
            retry_file: vec![false; n],
            rows: vec![None; n],
            feedback: VecDeque::new(),
            prim_dirty: true,
            direct_replies: BTreeMap::new(),
            ended: None,
            fs: journal_fs,
            best_effort: false,
            tx,
            rx,
            started: Instant::now(),
            started_at: proto::now_rfc3339(),
            progress: Default::default(),
            worktrees: None,
            _lock: lock,
        }
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Print a line to stderr as tasks start and end.
    pub fn set_progress(&mut self, on: bool) {
        self.progress
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// The switch of the progress lines ([`Orchestrator::set_progress`]), for a view on
    /// another thread that takes the terminal while it is up.
    pub fn progress_switch(&self) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
        self.progress.clone()
    }

    fn progress(&self) -> bool {
        self.progress.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How changes are noticed (a live view watches the session the same way).
    pub fn watch_mode(&self) -> WatchMode {
        self.watch
    }

    /// Where a person can watch the workers (tmux), if anywhere.
    pub fn hint(&self) -> Option<String> {
        self.launcher.hint()
    }

    /// Whether the session was finished when it was taken over (to be rolled back) and
    /// still is: nothing runs, and there is no end to write.
    pub fn finished_before(&self) -> bool {
        self.engine.finished() && self.ended.is_none()
    }

    /// Carry out a request directly, without `control/` (used when the CLI itself took
    /// the session over because no orchestrator was running).
    pub fn control_now(
        &mut self,
        action: ControlAction,
        task: Option<&str>,
    ) -> std::result::Result<String, String> {
        // A resumed session may end as it is taken over (a drain with nothing left to
        // run): no request reaches a finished engine.
        if self.engine.finished() && !matches!(action, ControlAction::Rollback { .. }) {
            return Err(format!(
                "the session has already ended ({})",
                self.engine.state().as_str()
            ));
        }
        let id = format!("direct-{}", proto::now_unix_ms());
        self.feed(Fact::Control {
            id: id.clone(),
            action,
            task: task.map(str::to_string),
        })
        .map_err(|e| e.to_string())?;
        match self.direct_replies.remove(&id) {
            Some((true, m)) => Ok(m),
            Some((false, m)) => Err(m),
            None => Ok("request accepted".into()),
        }
    }

    /// Feed one fact, carry out the commands, and feed back what they produced.
    fn feed(&mut self, fact: Fact) -> Result<()> {
        self.feedback.push_back(fact);
        while let Some(f) = self.feedback.pop_front() {
            let cmds = self.engine.on(f, Instant::now());
            for c in cmds {
                match self.execute(c) {
                    Ok(()) => {}
                    Err(e) if self.best_effort => {
                        use std::io::Write as _;
                        let _ = writeln!(std::io::stderr(), "warning: {e}");
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        if let Some(msg) = self.engine.fatal() {
            return Err(Error::Launch(format!(
                "{msg}{}",
                spawn_failure_detail(&self.session)
            )));
        }
        Ok(())
    }

    /// Run the session to its end (or its interruption).
    pub fn run(mut self) -> Result<Ended> {
        match self.run_loop() {
            Ok(()) => self.finish(),
            // Whatever failed, a session removed under us is the news.
            Err(e) => {
                self.check_root()?;
                // A planted file stops the session where it was found: said in the journal
                // too, so whoever reads the session later knows why it stopped.
                if let Error::Refused { path, what } = &e {
                    let _ = self.journal.append(&Event::Refused {
                        path: path.display().to_string(),
                        what: what.clone(),
                    });
                }
                Err(e)
            }
        }
    }

    /// A session removed under us: whatever we wrote now would be unseen (and the
    /// journal's writes would go to an unlinked file), so the run stops.
    fn check_root(&self) -> Result<()> {
        if fsio::is_dir(self.session.root()) {
            return Ok(());
        }
        Err(Error::Session(format!(
            "{}: removed while the session was running; stopping",
            self.session.root().display()
        )))
    }

    fn run_loop(&mut self) -> Result<()> {
        let tx = self.tx.clone();
        spawn_signal_thread(tx.clone())?;
        let control = self.session.control_dir();
        let prim_dirs = [
            self.session.checkpoints_dir(),
            self.session.signals_dir(),
            self.session.locks_dir(),
        ];
        let prim = prim_dirs.clone();
        // Only what the loop acts on: the control directory, the primitives' trees, and
        // each worker's journal, added as workers appear (not the rest of a worker's
        // directory, whose console lines, claims and heartbeats would wake us per task).
        let mut spec = watch::Spec::new(watch::Kinds::Changes).flat(control.clone());
        for d in prim_dirs {
            spec = spec.tree(d);
        }
        // (A worker that never got to write its journal has none to watch.)
        for id in self.tails.keys() {
            let events = self.session.worker_events(id);
            if fsio::exists(&events) {
                spec = spec.flat(events);
            }
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
        // The first look at free memory comes before anything can start.
        self.look_at_memory()?;
        self.feed(Fact::Start)?;
        let mut died: Vec<(String, DeathCause)> = Vec::new();
        let mut signals: Vec<Interrupt> = Vec::new();
        let mut control = true;
        let mut last_control = Instant::now();
        let mut last_lease = Instant::now();
        while self.ended.is_none() {
            for sig in signals.drain(..) {
                let again = self.engine.interrupted_by().is_some();
                self.feed(Fact::Interrupt { signal: sig, again })?;
            }
            for (id, how) in died.drain(..) {
                self.worker_died(&id, how)?;
            }
            // What the workers recorded first: a request is judged on the tasks as they
            // are (a reassign of a task whose exit is already journalled must not throw
            // that exit away as stale).
            self.reconcile()?;
            if control || last_control.elapsed() >= self.watch.rescan_interval() {
                self.check_root()?;
                self.handle_control()?;
                control = false;
                last_control = Instant::now();
                self.prim_dirty = true;
            }
            if self.prim_dirty {
                self.prim_dirty = false;
                let scan = self.scan_primitives();
                self.feed(Fact::Primitives(scan))?;
            }
            if last_lease.elapsed() >= LEASE_CHECK {
                self.read_heartbeats()?;
                self.look_at_memory()?;
                last_lease = Instant::now();
            }
            self.feed(Fact::Tick)?;
            if self.ended.is_some() {
                break;
            }
            let mut wait = self.watch.rescan_interval().min(LEASE_CHECK);
            // A starting worker's registration, with the poll watcher or none, would be
            // seen only at the next rescan: look every few ms (recovery waits on it).
            if self.watch != WatchMode::Native && self.engine.any_starting() {
                wait = wait.min(STARTING_POLL);
            }
            if self.prim_dirty {
                wait = Duration::ZERO;
            }
            if let Some(at) = self.engine.next_deadline() {
                wait = wait.min(at.saturating_duration_since(Instant::now()));
            }
            let first = self.rx.recv_timeout(wait);
            let mut prim = false;
            let mut note = |w: Wake| match w {
                Wake::Died(id, how) => died.push((id, how)),
                Wake::Control => control = true,
                Wake::Prim => prim = true,
                Wake::Signal(s) => signals.push(s),
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
        Ok(())
    }

    /// Registrations of starting workers, and what busy workers (with a task or an
    /// auxiliary command) journalled.
    fn reconcile(&mut self) -> Result<()> {
        let mut busy = Vec::new();
        let ids: Vec<(String, WorkerState)> = self
            .engine
            .live_workers()
            .map(|(id, s)| (id.to_string(), s))
            .collect();
        for (id, state) in ids {
            match state {
                WorkerState::Starting => {
                    if let Ok(Some(info)) =
                        fsio::read_json::<WorkerInfo>(&self.session.worker_json(&id))
                    {
                        self.feed(Fact::WorkerRegistered {
                            worker: id.clone(),
                            pid: info.pid,
                            host: info.host,
                            terminal: info.terminal,
                        })?;
                        self.watch_death(&id);
                    }
                }
                // A worker running an auxiliary command journals its start and exit
                // like an attempt's.
                WorkerState::Busy { .. } | WorkerState::Aux { .. } => busy.push(id),
                _ => {}
            }
        }
        busy.extend(self.lingering.iter().cloned());
        self.follow_all(&busy)
    }

    /// Feed what workers `ids` journalled since we last looked: starts first, then exits
    /// in the order they happened (across workers), so a decision that depends on which
    /// ended first (a race) sees them as they were, not in worker order.
    fn follow_all(&mut self, ids: &[String]) -> Result<()> {
        let mut exits = Vec::new();
        for id in ids {
            let (starts, ended) = self.new_lines(id)?;
            for st in starts {
                self.feed(Fact::AttemptStarted(st))?;
            }
            exits.extend(ended.into_iter().map(|rec| (id.clone(), rec)));
        }
        exits.sort_by_key(|(_, rec)| {
            humantime::parse_rfc3339(&rec.ended_at).unwrap_or(std::time::SystemTime::UNIX_EPOCH)
        });
        for (id, rec) in exits {
            let fact = exited(&self.session, &id, rec);
            self.feed(fact)?;
        }
        Ok(())
    }

    /// What worker `id` journalled since we last looked: the attempts it started, then
    /// the exit records it wrote, in its order.
    fn new_lines(&mut self, id: &str) -> Result<(Vec<proto::Started>, Vec<proto::ExitRecord>)> {
        let (mut starts, mut exits) = (Vec::new(), Vec::new());
        if let Some(tail) = self.tails.get_mut(id) {
            for ev in tail.read_worker_events()? {
                match ev {
                    WorkerEvent::Started(st) => starts.push(st),
                    WorkerEvent::Exited(rec) => exits.push(rec),
                    WorkerEvent::Quarantined {
                        task,
                        attempt,
                        path,
                        to,
                    } => {
                        let ev = Event::Quarantined {
                            task,
                            attempt,
                            path,
                            to,
                            reason: format!("found by worker {id} before the attempt ran"),
                        };
                        self.journal.append(&ev)?;
                        self.narrate(&ev);
                    }
                    WorkerEvent::Agent {
                        task,
                        attempt,
                        line,
                    } => self.agent_said(task, attempt, line)?,
                    WorkerEvent::Ready { .. } | WorkerEvent::Stopped {} | WorkerEvent::Unknown => {}
                }
            }
        }
        Ok((starts, exits))
    }

    /// Worker `id` is gone: its death, with every exit it recorded that was not fed yet
    /// (its journal's last lines, then the `exit.json` of what it had in flight).
    fn worker_died(&mut self, id: &str, how: DeathCause) -> Result<()> {
        self.lingering.retain(|w| w != id);
        let gone = matches!(self.engine.worker_state(id), None | Some(WorkerState::Gone));
        let (starts, ended) = self.new_lines(id)?;
        for st in starts {
            self.feed(Fact::AttemptStarted(st))?;
        }
        if gone {
            // Declared lost before it died: what it recorded late is stale.
            for rec in ended {
                let fact = exited(&self.session, id, rec);
                self.feed(fact)?;
            }
            return Ok(());
        }
        let exits: Vec<(String, u32, Exit)> = ended
            .into_iter()
            .map(|rec| (rec.task.clone(), rec.attempt, exit_of(&self.session, rec)))
            .collect();
        // An exit counts only as its worker journalled it: an `exit.json` of an attempt
        // in flight without that line was planted, or torn by the death; it is moved
        // aside and the attempt is lost (it runs again), never decided by the file.
        for (task, a) in self.engine.in_flight(id) {
            if exits.iter().any(|(x, n, _)| *x == task && *n == a) {
                continue;
            }
            let why = format!("worker {id} died without journalling this exit");
            if let Some(ev) = quarantine_exit(&self.session, &mut self.journal, &task, a, why)? {
                self.narrate(&ev);
            }
        }
        self.feed(Fact::WorkerDied {
            worker: id.to_string(),
            how,
            exits,
        })
    }

    fn read_heartbeats(&mut self) -> Result<()> {
        let ids: Vec<String> = self
            .engine
            .live_workers()
            .filter(|(_, s)| {
                matches!(
                    s,
                    WorkerState::Idle | WorkerState::Busy { .. } | WorkerState::Aux { .. }
                )
            })
            .map(|(id, _)| id.to_string())
            .collect();
        for id in ids {
            if let Ok(Some(h)) = fsio::read_json::<Heartbeat>(&self.session.worker_heartbeat(&id)) {
                self.feed(Fact::Heartbeat {
                    worker: id,
                    counter: h.counter,
                })?;
            }
        }
        Ok(())
    }

    fn watch_death(&self, id: &str) {
        let session = self.session.clone();
        let tx = self.tx.clone();
        let id = id.to_string();
        thread::spawn(move || {
            Flock.wait_dead(&session, &id);
            let _ = tx.send(Wake::Died(id, DeathCause::Died));
        });
    }

    /// Consume `control/` requests (written by `orchestrator reassign|cancel`).
    fn handle_control(&mut self) -> Result<()> {
        for rid in self.session.control_requests()? {
            let path = self.session.control_request(&rid);
            // An `add` carries its tasks: at most a plan's worth.
            match fsio::read_json_capped::<ControlRequest>(&path, crate::plan::PLAN_CAP) {
                Ok(Some(req)) if matches!(req.action, ControlAction::Add { .. }) => {
                    self.feed(Fact::Add {
                        id: rid,
                        tasks: req.tasks,
                    })?;
                }
                Ok(Some(req)) => {
                    self.feed(Fact::Control {
                        id: rid,
                        action: req.action,
                        task: req.task,
                    })?;
                }
                Ok(None) => {}
                Err(e) => {
                    self.reply(&rid, false, e.to_string())?;
                }
            }
        }
        Ok(())
    }

    fn reply(&mut self, id: &str, ok: bool, message: String) -> Result<()> {
        if id.starts_with("direct-") {
            self.direct_replies.insert(id.to_string(), (ok, message));
            return Ok(());
        }
        self.fs.write_json(
            &self.session.control_reply(id),
            &ControlReply { ok, message },
        )?;
        let _ = fsio::remove_file(&self.session.control_request(id));
        Ok(())
    }

    fn scan_primitives(&self) -> engine::PrimScan {
        let raised = self
            .engine
            .open_signals()
            .into_iter()
            .filter(|n| fsio::exists(&self.session.signal(n)))
            .collect();
        let mut barriers = Vec::new();
        if let Ok(Some(names)) = fsio::read_names(&self.session.checkpoints_dir()) {
            for name in names {
                if crate::names::validate("checkpoint name", &name).is_err() {
                    continue;
                }
                let decided = fsio::exists(&self.session.checkpoint_proceed(&name))
                    || fsio::exists(&self.session.checkpoint_broken(&name));
                let arrived = if decided {
                    Vec::new()
                } else {
                    crate::primitives::arrivals(&self.session, &name)
                };
                barriers.push(engine::BarrierScan {
                    name,
                    arrived,
                    decided,
                });
            }
        }
        engine::PrimScan {
            raised,
            barriers,
            locks: crate::locks::scan(&self.session),
        }
    }

    /// Tell the engine the machine's available memory, for plans that hold new starts
    /// when it is low.
    fn look_at_memory(&mut self) -> Result<()> {
        if self.engine.plan().limits.min_free_memory.is_some()
            && let Some(available) = mem_available()
        {
            self.feed(Fact::Memory { available })?;
        }
        Ok(())
    }

    fn say(&self, msg: std::fmt::Arguments) {
        if self.progress() {
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
}

/// SIGINT and SIGTERM become wake-ups; SIGHUP is taken and dropped: a closed terminal or
/// ssh session never stops the tasks (the orchestrator carries on without it). Handlers,
/// not a blocked mask and not SIG_IGN: both would be inherited by every worker and task
/// we start, where a caught signal reverts to its default at exec.
fn spawn_signal_thread(tx: Sender<Wake>) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| Error::Session(format!("cannot handle signals: {e}")))?;
    thread::spawn(move || {
        for sig in signals.forever() {
            let i = match sig {
                SIGTERM => Interrupt::Term,
                SIGINT => Interrupt::Int,
                _ => continue,
            };
            if tx.send(Wake::Signal(i)).is_err() {
                return;
            }
        }
    });
    Ok(())
}

/// A seed for the backoff jitter (the low bits of the clock are random enough to keep
/// retries of many tasks from firing in lockstep).
fn seed() -> u64 {
    proto::now_unix_ms() ^ (u64::from(std::process::id()) << 32)
}

/// An exit record with the task's result, read only when the record says there is one
/// and the attempt succeeded.
fn exit_of(session: &Session, rec: proto::ExitRecord) -> Exit {
    let result = if rec.succeeded() && rec.has_result {
        proto::read_result(&session.result_json(&rec.task, rec.attempt))
            .ok()
            .flatten()
    } else {
        None
    };
    Exit::Record {
        record: Box::new(rec),
        result,
    }
}

/// The fact of worker `worker`'s exit record.
fn exited(session: &Session, worker: &str, rec: proto::ExitRecord) -> Fact {
    Fact::AttemptExited {
        worker: worker.to_string(),
        task: rec.task.clone(),
        attempt: rec.attempt,
        exit: exit_of(session, rec),
    }
}

/// What the workers that never registered said before they died (the last line of their
/// `console.log`), or, when none could say anything, why: a full disk leaves their logs
/// empty, and an empty log explains nothing.
fn spawn_failure_detail(session: &Session) -> String {
    let ids = session.worker_ids().unwrap_or_default();
    for id in ids.iter().rev() {
        if fsio::exists(&session.worker_json(id)) {
            continue;
        }
        let said = fsio::read_capped(&session.worker_console(id), 64 * 1024)
            .ok()
            .flatten()
            .and_then(|b| {
                String::from_utf8_lossy(&b)
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .map(str::to_string)
            });
        if let Some(line) = said {
            return format!(" (worker {id} said: {line})");
        }
    }
    match nix::sys::statvfs::statvfs(session.root()) {
        Ok(st) if st.blocks_available() == 0 || st.files_available() == 0 => format!(
            " (their console.log is empty: no space left on device on the file system of {})",
            session.root().display()
        ),
        _ => " (their console.log is empty)".to_string(),
    }
}

/// Move aside the `exit.json` of attempt `attempt` of `task`, if there is one, because no
/// journal line of its worker records it (`reason` says which); journalled.
fn quarantine_exit(
    session: &Session,
    journal: &mut Journal,
    task: &str,
    attempt: u32,
    reason: String,
) -> Result<Option<Event>> {
    let from = session.exit_json(task, attempt);
    if !fsio::exists(&from) {
        return Ok(None);
    }
    let to = session.quarantined_exit(task, attempt, proto::now_unix_ms());
    fsio::move_aside(&from, &to)?;
    let ev = Event::Quarantined {
        task: task.to_string(),
        attempt,
        path: from.display().to_string(),
        to: to.display().to_string(),
        reason,
    };
    journal.append(&ev)?;
    Ok(Some(ev))
}

/// Take `orchestrator/lock` (held for the orchestrator's life) and write `info.json`.
fn take_lock(session: &Session, fs: fsio::Fs) -> Result<File> {
    let path = session.orchestrator_lock();
    let f = fsio::open_lock_file(&path)?;
    if !fsio::lock_exclusive_patiently(&f) {
        let pid = fsio::read_json::<OrchestratorInfo>(&session.orchestrator_info())
            .ok()
            .flatten()
            .map(|i| format!(" (pid {} on {})", i.pid, i.host))
            .unwrap_or_default();
        return Err(Error::WrongState(format!(
            "session {} already has a live orchestrator{pid}",
            session.id()
        )));
    }
    fs.write_json(
        &session.orchestrator_info(),
        &OrchestratorInfo {
            pid: std::process::id(),
            host: hostname(),
            started_at: proto::now_rfc3339(),
        },
    )?;
    Ok(f)
}

/// Whether a worker is alive (a non-blocking probe; used by status too).
pub fn worker_alive(session: &Session, id: &str) -> bool {
    Flock.alive(session, id)
}

/// A usage error when the session has finished (and no orchestrator rolls it back): a
/// request to it would be written and never read. `verb` names what was asked.
pub fn refuse_if_finished(session: &Session, verb: &str) -> Result<()> {
    if orchestrator_alive(session) {
        return Ok(());
    }
    let Ok(Some(summary)) = crate::summary::read(session) else {
        return Ok(());
    };
    Err(Error::WrongState(format!(
        "session {id} has finished ({state}): nothing runs there to {verb} \
         (`orchestrator retry {id} TASK` re-runs a task)",
        id = session.id(),
        state = summary.state.as_str()
    )))
}

/// Whether the session has a live orchestrator.
pub fn orchestrator_alive(session: &Session) -> bool {
    fsio::lock_held(&session.orchestrator_lock())
}

/// The machine's available memory (`MemAvailable` of `/proc/meminfo`, or of the file
/// `$MAESTRO_MEMINFO` names: tests, and containers whose `/proc` lies), in bytes.
fn mem_available() -> Option<u64> {
    let path = std::env::var_os("MAESTRO_MEMINFO").unwrap_or_else(|| "/proc/meminfo".into());
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}
