//! The orchestrator's decisions as a pure state machine: [`Engine::on`] takes a [`Fact`]
//! and the current time and returns the [`Command`]s to carry out. Nothing in here reads
//! a file, starts a process, looks at a clock or spawns a thread, so every rule is tested
//! with plain values (see `tests/`, one file per rule module, and the model in `model/`).
//!
//! Where the rules live:
//! - `dispatch.rs`: the one path from "ready" to "assigned" (idle workers first, then one
//!   task queued behind each running one), withdrawals, the worker pool, leases.
//! - `decide.rs`: what an exit means (success, retry after backoff, failure), the fence
//!   check, worker loss and reassignment, propagation through the DAG, races.
//! - `control.rs`: people's requests (reassign, cancel) and interrupts.
//! - `prims.rs`: signals, barriers and lock deadlocks (the pure rules it shares with the
//!   worker and the CLI: `barrier.rs`, `deadlock.rs`).
//! - `restore.rs`: rebuilding the engine from the journal and what is on disk.
//!
//! The fence: an attempt may report only while the task's `fence` names exactly that
//! attempt and worker (journalled as `task_assigned` before the assignment is written);
//! every other exit is refused as stale.

mod aux;
pub mod barrier;
mod control;
pub mod deadlock;
mod decide;
mod dispatch;
mod gates;
mod grow;
mod io;
mod policy;
mod prims;
mod restore;
mod tokens;

#[cfg(test)]
mod model;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

pub use aux::{AuxIx, AuxRef};
pub use io::{
    BarrierScan, Command, Decision, Exit, Fact, Found, FoundWorker, Interrupt, KillReason,
    PrimScan, ProcessId, TaskIx,
};

use crate::journal::event::{ControlAction, Event};
use crate::plan::{Graph, Plan};
use crate::proto::{SessionState, TaskState};
use crate::scheduler::Scheduler;

/// Tunables the shell passes in once (never read from the environment in here).
#[derive(Debug, Clone)]
pub struct Config {
    /// Workers at once.
    pub workers: usize,
    /// A registered worker whose heartbeat does not move for this long is lost.
    pub lease: Duration,
    /// How long a started worker may take to register.
    pub register_timeout: Duration,
    /// How long a worker may hold an attempt without starting it (the watchdog: no
    /// file, planted or torn, may keep an attempt waiting forever).
    pub start_timeout: Duration,
    /// A wait-for cycle must still be there this much later to count as a deadlock.
    pub deadlock_confirm: Duration,
    /// Workers that die before registering, in a row, before the launcher is given up on.
    pub max_spawn_failures: u32,
    /// Seed of the backoff jitter (the shell passes something random).
    pub seed: u64,
    /// The session's id, for replies to people.
    pub session: String,
    /// A partial run's selection (`run --only`/`--skip`): for each task by index, whether
    /// it is left out, decided `excluded` at the start. Empty: every task runs. Only a new
    /// session's engine is given one; a resumed session finds it decided in the journal.
    pub excluded: Vec<Option<crate::plan::Exclusion>>,
}

impl Config {
    pub fn new(workers: usize, lease: Duration) -> Config {
        Config {
            workers,
            lease,
            register_timeout: Duration::from_secs(30),
            start_timeout: lease,
            deadlock_confirm: Duration::from_millis(150),
            max_spawn_failures: 5,
            seed: 0x9e37_79b9_7f4a_7c15,
            session: String::new(),
            excluded: Vec::new(),
        }
    }
}

/// What a worker is doing, as far as the engine knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// Started, not registered yet.
    Starting,
    Idle,
    /// Running (or about to claim) attempt `attempt` of `task`.
    Busy {
        task: TaskIx,
        attempt: u32,
    },
    /// Running (or about to claim) an auxiliary command (see `aux.rs`).
    Aux {
        job: AuxIx,
    },
    /// Told to stop.
    Stopping,
    Gone,
}

#[derive(Debug, Clone)]
struct Worker {
    state: WorkerState,
    /// An assignment written behind the running one, not known to be claimed: the
    /// worker starts it the moment its current task ends.
    queued: Option<(TaskIx, u32)>,
    /// A [`Command::Withdraw`] of `queued` is out, its answer not in yet.
    withdrawing: bool,
    /// The worker claimed `queued` (a withdrawal was refused): it runs next.
    claimed: bool,
    busy_since: Instant,
    /// Its attempts (the running one, the one queued behind) whose start was read and
    /// whose exit was not: lost with the worker, they ran, so a cleanup is owed. The
    /// queued one's start may be read before the running one's exit (the shell feeds
    /// the starts of one look first).
    ran: Vec<(TaskIx, u32)>,
    spawned_at: Instant,
    heartbeat: Option<u64>,
    heartbeat_at: Instant,
}

impl Worker {
    fn new(state: WorkerState, now: Instant) -> Worker {
        Worker {
            state,
            queued: None,
            withdrawing: false,
            claimed: false,
            busy_since: now,
            ran: Vec::new(),
            spawned_at: now,
            heartbeat: None,
            heartbeat_at: now,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Task {
    /// The highest attempt number given out (a withdrawn one is given again).
    attempt: u32,
    /// The fence: the attempt that may report, and its worker.
    fence: Option<(u32, String)>,
    started: bool,
    failures: u32,
    reassigns: u32,
    retry_at: Option<Instant>,
    /// A worker this task should not go back to (after `reassign`).
    avoid: Option<String>,
    /// The decided state, and why (for a barrier a participant can no longer reach).
    decided: Option<TaskState>,
    reason: Option<String>,
    /// A `best` race member's success, held until the race is decided.
    held: Option<Decision>,
    /// The accepted result, kept for races (a winner's result is the race's).
    result: Option<serde_json::Value>,
    /// Attempts whose exit was taken, accepted or refused as stale, with their worker.
    /// An exit can be read twice: a resume takes it from `exit.json` while the worker's
    /// `exited` line, appended after the resume read that worker's journal, comes in
    /// later. The second reading is the same exit, not a late one of a superseded
    /// attempt.
    taken: Vec<(u32, String)>,
}

/// Signals no one can raise any more, as far as one look at the files can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stall {
    No,
    /// Seen stalled; a fresh look at the files was asked for.
    Suspected,
    /// Still stalled after a fresh look.
    Confirmed,
}

/// Where the session is: running, or on its way to an end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Cancelled as a whole: no new starts; ends `cancelled` once nothing runs.
    Cancelling,
    /// Interrupted: no new starts; ends `interrupted` once nothing runs.
    Interrupting(Interrupt),
    /// Stopped (`orchestrator stop`, or a failure under `on_failure = "stop"`): no new
    /// starts; running attempts finish; then what is left is decided and it ends.
    Draining,
    /// `orchestrator freeze`: running attempts are stopped where they are, nothing
    /// starts, and nothing ends by itself: a person thaws, rolls back or cancels.
    Frozen,
    /// `orchestrator rollback`: what ran is stopped, then the rollback steps run one at
    /// a time (`policy.rs`).
    RollingBack,
    Finished(SessionState),
}

/// The orchestrator's state machine for one session.
pub struct Engine {
    cfg: Config,
    plan: Plan,
    graph: Graph,
    sched: Scheduler,
    tasks: Vec<Task>,
    index: HashMap<String, TaskIx>,
    workers: BTreeMap<String, Worker>,
    races_done: Vec<bool>,
    phase: Phase,
    /// A task was cancelled on purpose (the session then ends `cancelled` unless a task
    /// failed).
    cancelled_any: bool,
    next_worker: u64,
    next_seq: u64,
    spawn_failures: u32,
    /// A wait-for cycle seen once, acted on only if still there at the next look (a
    /// scan of holders and waiters is not atomic, so one sighting may be a phantom).
    suspect: Option<(deadlock::Deadlock, Instant)>,
    /// Requests that wait for queued assignments to be withdrawn.
    pending: VecDeque<(String, ControlAction, Option<String>)>,
    /// Tasks waiting out a retry backoff (kept apart so no pass scans every task).
    retrying: std::collections::BTreeSet<TaskIx>,
    interrupt_signal: Option<Interrupt>,
    /// No task can move (see `prims.rs`): confirmed after the next look at the files.
    stall: Stall,
    rng: u64,
    out: Vec<Command>,
    /// An internal error the shell must report (a launcher that cannot start workers).
    fatal: Option<String>,
    /// Each pool's level as last journalled (absent: normal).
    levels: BTreeMap<String, crate::plan::Level>,
    /// Each gate's state, by index in `plan.gates` (`None`: its tasks have not all
    /// succeeded yet).
    gate_states: Vec<Option<crate::journal::history::GateRecord>>,
    /// The machine's available memory as last read (see [`Fact::Memory`]).
    mem_available: Option<u64>,
    /// New starts are held for lack of free memory (journalled when it changes).
    held: bool,
    /// Auxiliary commands (`aux.rs`): every run, by index; by (command, attempt); and
    /// those not ended.
    aux: Vec<aux::AuxJob>,
    aux_index: BTreeMap<(AuxRef, u32), AuxIx>,
    aux_active: BTreeSet<AuxIx>,
    /// Tasks in the order they succeeded (a rollback undoes them last first).
    completed: Vec<TaskIx>,
    /// The rollback under way or stopped (`policy.rs`).
    rollback: Option<policy::Rollback>,
    /// The time of the fact being handled (for rules reached without it).
    now: Instant,
}

impl Engine {
    /// A new session's engine; `seq0` is where assignment sequence numbers start.
    pub fn new(plan: Plan, cfg: Config, seq0: u64, now: Instant) -> Engine {
        let graph = plan.graph();
        let gates = plan.gates.len();
        let sched = Scheduler::with_external(graph.dep_lists(), graph.external_flags());
        let index = plan
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.clone(), i))
            .collect();
        Engine {
            rng: cfg.seed | 1,
            interrupt_signal: None,
            stall: Stall::No,
            cfg,
            tasks: vec![Task::default(); plan.tasks.len()],
            races_done: vec![false; plan.races.len()],
            plan,
            graph,
            sched,
            index,
            workers: BTreeMap::new(),
            phase: Phase::Running,
            cancelled_any: false,
            next_worker: 1,
            next_seq: seq0,
            spawn_failures: 0,
            suspect: None,
            pending: VecDeque::new(),
            retrying: Default::default(),
            out: Vec::new(),
            fatal: None,
            levels: BTreeMap::new(),
            gate_states: vec![None; gates],
            mem_available: None,
            held: false,
            aux: Vec::new(),
            aux_index: BTreeMap::new(),
            aux_active: BTreeSet::new(),
            completed: Vec::new(),
            rollback: None,
            now,
        }
    }

    /// Handle one fact at time `now`; returns what to do, in order.
    pub fn on(&mut self, fact: Fact, now: Instant) -> Vec<Command> {
        self.now = now;
        match fact {
            Fact::Start => self.exclude_unselected(),
            Fact::Recovered(found) => self.recovered(found, now),
            Fact::WorkerRegistered {
                worker,
                pid,
                host,
                terminal,
            } => self.registered(worker, pid, host, terminal, now),
            Fact::AttemptStarted(st) => self.started(st),
            Fact::AttemptExited {
                worker,
                task,
                attempt,
                exit,
            } => self.exit_of(&worker, &task, attempt, exit, true, now),
            Fact::WorkerDied { worker, how, exits } => {
                for (task, attempt, exit) in exits {
                    self.exit_of(&worker, &task, attempt, exit, false, now);
                }
                self.worker_gone(&worker, how, now);
            }
            Fact::Heartbeat { worker, counter } => self.heartbeat(&worker, counter, now),
            Fact::Withdrawn {
                worker,
                task,
                attempt,
                ok,
            } => {
                if let Some(&t) = self.index.get(&task) {
                    self.withdrawn(&worker, t, attempt, ok, now);
                }
            }
            Fact::Primitives(scan) => self.primitives(scan, now),
            Fact::Add { id, tasks } => self.add(id, tasks),
            Fact::Control { id, action, task } => {
                self.journal(Event::ControlRequest {
                    id: id.clone(),
                    action: action.clone(),
                    task: task.clone(),
                });
                self.pending.push_back((id, action, task));
            }
            Fact::Interrupt { signal, again } => self.interrupt(signal, again),
            Fact::Tick => {}
            Fact::Memory { available } => self.mem_available = Some(available),
        }
        self.settle(now);
        std::mem::take(&mut self.out)
    }

    /// An exit, of a task's attempt or of an auxiliary command's.
    fn exit_of(
        &mut self,
        wid: &str,
        name: &str,
        attempt: u32,
        exit: Exit,
        live: bool,
        now: Instant,
    ) {
        if let Some(&t) = self.index.get(name) {
            self.exited(wid, t, attempt, exit, live, now);
        } else if let Some(ix) = self.aux_by_name(name, attempt) {
            self.aux_exited(wid, ix, exit, now);
        }
    }

    /// After every fact: what time and the new state allow.
    fn settle(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Finished(_)) {
            // A rollback reopens a finished session; every other request is refused.
            self.run_pending(now);
            if matches!(self.phase, Phase::Finished(_)) {
                return;
            }
        }
        self.run_pending(now);
        self.retries_due(now);
        self.check_leases(now);
        self.check_starts(now);
        self.check_registrations(now);
        // The pool first: a worker starting takes ready work at once, so nothing is
        // queued behind a busy one meanwhile.
        self.fill_pool(now);
        self.check_memory();
        self.dispatch(now);
        self.check_gates(now);
        self.rollback_progress(now);
        self.dispatch_aux(now);
        self.check_stall();
        self.deadlock_due(now);
        self.fill_pool(now);
        self.check_levels();
        self.maybe_finish(now);
    }

    // ---- getters (status, the shell's bookkeeping) ----

    /// The session's state now.
    pub fn state(&self) -> SessionState {
        match self.phase {
            Phase::Running
            | Phase::Cancelling
            | Phase::Interrupting(_)
            | Phase::Draining
            | Phase::Frozen => SessionState::Running,
            Phase::RollingBack => SessionState::RollingBack,
            Phase::Finished(s) => s,
        }
    }

    /// Whether the session has ended.
    pub fn finished(&self) -> bool {
        matches!(self.phase, Phase::Finished(_))
    }

    /// The interrupt that stopped the session, if one did.
    pub fn interrupted_by(&self) -> Option<Interrupt> {
        self.interrupt_signal
    }

    /// An internal error that ended the session (the shell reports it, exit 3).
    pub fn fatal(&self) -> Option<&str> {
        self.fatal.as_deref()
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn task_index(&self, id: &str) -> Option<TaskIx> {
        self.index.get(id).copied()
    }

    /// The task's decided state, if decided.
    pub fn decided(&self, t: TaskIx) -> Option<TaskState> {
        self.tasks[t].decided
    }

    /// The highest attempt number given to task `t`.
    pub fn attempts(&self, t: TaskIx) -> u32 {
        self.tasks[t].attempt
    }

    /// Failed attempts of task `t` so far (against its `retries`).
    pub fn failures(&self, t: TaskIx) -> u32 {
        self.tasks[t].failures
    }

    /// The attempt of task `t` that may report now, and its worker.
    pub fn fence(&self, t: TaskIx) -> Option<(u32, &str)> {
        self.tasks[t].fence.as_ref().map(|(a, w)| (*a, w.as_str()))
    }

    /// Workers that are neither gone nor stopping.
    pub fn live_workers(&self) -> impl Iterator<Item = (&str, WorkerState)> {
        self.workers
            .iter()
            .filter(|(_, w)| !matches!(w.state, WorkerState::Gone))
            .map(|(id, w)| (id.as_str(), w.state))
    }

    pub fn worker_state(&self, id: &str) -> Option<WorkerState> {
        self.workers.get(id).map(|w| w.state)
    }

    /// Attempts in flight on worker `id` (running, and queued behind), by assignment
    /// name (a task's id, or an auxiliary command's), to look for their exits before the
    /// worker's death is handled.
    pub fn in_flight(&self, id: &str) -> Vec<(String, u32)> {
        let Some(w) = self.workers.get(id) else {
            return Vec::new();
        };
        let mut v = Vec::new();
        match w.state {
            WorkerState::Busy { task, attempt } => v.push((self.id(task), attempt)),
            WorkerState::Aux { job } => {
                let j = &self.aux[job];
                v.push((j.job.kind.job(&self.aux_owner_id(j.job)), j.attempt));
            }
            _ => {}
        }
        v.extend(w.queued.map(|(t, a)| (self.id(t), a)));
        v
    }

    /// The name of an auxiliary command's assignment (`OWNER+KIND`).
    pub fn aux_name(&self, job: AuxRef) -> String {
        job.kind.job(&self.aux_owner_id(job))
    }

    /// Whether any worker is starting (not registered yet).
    pub fn any_starting(&self) -> bool {
        self.workers
            .values()
            .any(|w| w.state == WorkerState::Starting)
    }

    /// Signals some task still waits for.
    pub fn open_signals(&self) -> Vec<String> {
        self.graph
            .signals()
            .iter()
            .filter(|(_, node)| self.sched.is_open(node.index()))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Whether barriers or locks matter to this plan right now.
    pub fn watches_primitives(&self) -> bool {
        !self.finished()
    }

    /// The earliest time at which [`Fact::Tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut at = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        for &t in &self.retrying {
            if let Some(r) = self.tasks[t].retry_at {
                at(r);
            }
        }
        if let Some((_, seen)) = &self.suspect {
            at(*seen + self.cfg.deadlock_confirm);
        }
        if let Some(due) = self.aux_deadline(self.now) {
            at(due);
        }
        for w in self.workers.values() {
            match w.state {
                WorkerState::Idle => at(w.heartbeat_at + self.cfg.lease),
                WorkerState::Busy { task, .. } => {
                    at(w.heartbeat_at + self.cfg.lease);
                    if !self.tasks[task].started {
                        at(w.busy_since + self.cfg.start_timeout);
                    }
                }
                WorkerState::Aux { job } => {
                    at(w.heartbeat_at + self.cfg.lease);
                    if !self.aux[job].started {
                        at(w.busy_since + self.cfg.start_timeout);
                    }
                }
                WorkerState::Starting => at(w.spawned_at + self.cfg.register_timeout),
                _ => {}
            }
        }
        next
    }

    /// Counts of decided tasks by state, for the closing line.
    pub fn counts(&self) -> BTreeMap<TaskState, usize> {
        let mut m = BTreeMap::new();
        for t in &self.tasks {
            if let Some(s) = t.decided {
                *m.entry(s).or_insert(0) += 1;
            }
        }
        m
    }

    // ---- helpers shared by the rule modules ----

    fn journal(&mut self, ev: Event) {
        self.out.push(Command::Journal(ev));
    }

    fn id(&self, t: TaskIx) -> String {
        self.plan.tasks[t].id.clone()
    }

    /// A number in [-1, 1] for backoff jitter (xorshift: deterministic from the seed).
    fn jitter_unit(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        (x % 2001) as f64 / 1000.0 - 1.0
    }

    fn running(&self) -> bool {
        self.phase == Phase::Running
    }
}
