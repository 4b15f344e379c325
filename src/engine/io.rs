//! The engine's vocabulary with the world: [`Fact`]s the shell observed (files, pids,
//! timers, people) and [`Command`]s the shell must carry out, in order. Both are plain
//! data: the engine never touches a file, a process or a clock.

use std::collections::BTreeMap;

use super::deadlock::LockView;
use crate::journal::event::{ControlAction, DeathCause, EndReason, Event};
use crate::proto::{Arrival, ExitRecord, SessionState, ShutdownReason, Started, TaskState};

/// A task's index in the plan.
pub type TaskIx = usize;

/// How an attempt's exit reached the shell.
#[derive(Debug, Clone, PartialEq)]
pub enum Exit {
    /// The worker's record (its `exited` line), with the task's result
    /// when the record says it left one and the attempt succeeded.
    Record {
        record: Box<ExitRecord>,
        result: Option<serde_json::Value>,
    },
}

/// Which signal asked the orchestrator to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// SIGINT (Ctrl-C): exit 130.
    Int,
    /// SIGTERM: exit 143.
    Term,
}

impl Interrupt {
    pub fn exit_code(self) -> i32 {
        match self {
            Interrupt::Int => 130,
            Interrupt::Term => 143,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Interrupt::Int => "SIGINT",
            Interrupt::Term => "SIGTERM",
        }
    }
}

/// One barrier as the shell found it under `checkpoints/`.
#[derive(Debug, Clone)]
pub struct BarrierScan {
    pub name: String,
    pub arrived: Vec<Arrival>,
    /// `proceed` or `broken` is already there.
    pub decided: bool,
}

/// What one look at `signals/`, `checkpoints/` and `locks/` found.
#[derive(Debug, Clone, Default)]
pub struct PrimScan {
    /// Open signals (see [`crate::engine::Engine::open_signals`]) whose file exists.
    pub raised: Vec<String>,
    pub barriers: Vec<BarrierScan>,
    /// Holders and waiters of the named locks.
    pub locks: BTreeMap<String, LockView>,
}

/// A worker directory as a resumed orchestrator found it.
#[derive(Debug, Clone, Default)]
pub struct FoundWorker {
    pub id: String,
    /// Its `alive` lock is held.
    pub alive: bool,
    /// It wrote `worker.json`, speaking our protocol version.
    pub registered: bool,
    /// It registered speaking another protocol version: never adopted.
    pub foreign: bool,
    /// It was told to stop (`shutdown` exists).
    pub stopped: bool,
    /// Assignments it claimed (`claimed/`), in flight or ended.
    pub claimed: Vec<(String, u32)>,
    /// Assignments it had not claimed, taken back by the shell before the facts.
    pub withdrawn: Vec<(String, u32)>,
    /// The attempt starts in its journal that have no exit there.
    pub started: Vec<Started>,
    /// Every attempt (and auxiliary run) its journal shows started, with an exit or
    /// not: an attempt that ran is owed its cleanup, though the journal may not say it
    /// ran (`task_started` is journalled for the fence holder only) and the cleanup
    /// owed may not have been handed out before the orchestrator died.
    pub ran: Vec<(String, u32)>,
    /// Every attempt (and auxiliary run) its journal shows ended (an `exited` line): a
    /// claimed attempt with neither line is yet to run, or runs without a start line
    /// yet.
    pub exited: Vec<(String, u32)>,
}

/// What a resumed orchestrator found on disk beside the journal.
#[derive(Debug, Clone, Default)]
pub struct Found {
    pub workers: Vec<FoundWorker>,
    /// Exits on disk: the current attempt's of every undecided task, and those of the
    /// attempts in `started` lists.
    pub exits: Vec<(String, u32, Exit)>,
    /// `outcome.json` files of tasks the journal does not show decided (a crash between
    /// the file and its journal line).
    pub outcomes: Vec<(String, TaskState)>,
}

/// Something the shell observed. Facts are hints about files: each carries what was read.
#[derive(Debug, Clone)]
pub enum Fact {
    /// The session starts (or resumes): fill the worker pool and hand out work.
    Start,
    /// After a resume: what the shell found on disk (see [`Found`]).
    Recovered(Found),
    /// A started worker wrote its `worker.json`.
    WorkerRegistered {
        worker: String,
        pid: u32,
        host: String,
        terminal: Option<String>,
    },
    /// A worker journalled the start of an attempt.
    AttemptStarted(Started),
    /// An attempt ended (its worker's `exited` line, or `exit.json`).
    AttemptExited {
        worker: String,
        task: String,
        attempt: u32,
        exit: Exit,
    },
    /// A worker is gone (its `alive` lock was released, its process exited, or it never
    /// registered), with the exits it recorded that were not fed yet (its journal's last
    /// lines, or `exit.json` of what it had in flight), handled first.
    WorkerDied {
        worker: String,
        how: DeathCause,
        exits: Vec<(String, u32, Exit)>,
    },
    /// A worker's heartbeat counter as just read.
    Heartbeat { worker: String, counter: u64 },
    /// The result of a [`Command::Withdraw`]: `ok` when the assignment was taken back
    /// before the worker claimed it.
    Withdrawn {
        worker: String,
        task: String,
        attempt: u32,
        ok: bool,
    },
    /// A look at signals, barriers and locks.
    Primitives(PrimScan),
    /// `orchestrator add`: tasks to take into the plan, checked against the plan by the
    /// CLI (and again here: another addition may have come first).
    Add {
        id: String,
        tasks: Vec<crate::plan::Task>,
    },
    /// A person's request (from `control/` or the CLI directly).
    Control {
        id: String,
        action: ControlAction,
        task: Option<String>,
    },
    /// SIGINT or SIGTERM reached the orchestrator (`again`: not the first one).
    Interrupt { signal: Interrupt, again: bool },
    /// Time passed (a deadline from [`crate::engine::Engine::next_deadline`]).
    Tick,
    /// The machine's available memory (`MemAvailable`), in bytes, as just read; fed
    /// only for plans with `[limits] min_free_memory`.
    Memory { available: u64 },
}

/// Why an attempt is being stopped; the worker records it as `killed_by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    Reassigned,
    Cancelled,
    Lost,
    Interrupted,
}

impl KillReason {
    pub fn as_str(self) -> &'static str {
        match self {
            KillReason::Reassigned => "reassigned",
            KillReason::Cancelled => "cancelled",
            KillReason::Lost => "lost",
            KillReason::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<KillReason> {
        Some(match s {
            "reassigned" => KillReason::Reassigned,
            "cancelled" => KillReason::Cancelled,
            "lost" => KillReason::Lost,
            "interrupted" => KillReason::Interrupted,
            _ => return None,
        })
    }

    /// How the attempt's end is journalled.
    pub fn end_reason(self) -> EndReason {
        match self {
            KillReason::Reassigned => EndReason::Reassigned,
            KillReason::Cancelled => EndReason::Cancelled,
            KillReason::Lost => EndReason::Lost,
            KillReason::Interrupted => EndReason::Interrupted,
        }
    }
}

/// What an accepted attempt (or a decision without one) makes of a task.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub task: TaskIx,
    pub state: TaskState,
    /// The attempt whose exit was accepted (the last one given for a task decided
    /// without one).
    pub attempt: u32,
    pub worker: Option<String>,
    pub exit: Option<Box<ExitRecord>>,
    pub reason: Option<String>,
    pub result: Option<serde_json::Value>,
    /// Write the task's completion markers (`marks`).
    pub marks: bool,
}

/// An attempt's process identity, for signalling its group from outside its worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessId {
    pub pgid: u32,
    pub proc_start: Option<u64>,
    pub boot_id: Option<String>,
}

/// Something the shell must do. Carried out in order: a [`Command::Journal`] line that
/// precedes an [`Command::Assign`] is durable before the assignment is published.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Journal(Event),
    /// Start a worker with this id (its directories first).
    SpawnWorker {
        worker: String,
    },
    /// Publish attempt `attempt` of `task` in `worker`'s `assigned/`.
    Assign {
        worker: String,
        task: TaskIx,
        attempt: u32,
        seq: u64,
    },
    /// Take back a queued assignment (rename it out of `assigned/`); answer with
    /// [`Fact::Withdrawn`].
    Withdraw {
        worker: String,
        task: TaskIx,
        attempt: u32,
    },
    /// The assignment is handled: move it to `done/`.
    Retire {
        worker: String,
        task: TaskIx,
        attempt: u32,
    },
    /// Publish run `attempt` of auxiliary command `job` in `worker`'s `assigned/`.
    AssignAux {
        worker: String,
        job: super::AuxRef,
        attempt: u32,
        seq: u64,
    },
    /// An auxiliary command's assignment is handled: move it to `done/`.
    RetireAux {
        worker: String,
        job: super::AuxRef,
        attempt: u32,
    },
    /// Ask the worker to stop an auxiliary command (its `kill` file).
    KillAux {
        worker: String,
        job: super::AuxRef,
        attempt: u32,
        reason: KillReason,
    },
    /// SIGKILL an auxiliary command's process group ourselves (see [`Command::KillGroup`]).
    KillAuxGroup {
        worker: String,
        job: super::AuxRef,
        attempt: u32,
        process: Option<ProcessId>,
    },
    /// Copy the session's state files into `snapshot/` and journal `snapshot_written`.
    Snapshot,
    /// Freeze (`true`) or thaw every worker: each stops or continues its running
    /// attempt's process group (the `freeze` file in its directory).
    Freeze(bool),
    /// Ask the worker to stop an attempt (its `kill` file).
    Kill {
        worker: String,
        task: TaskIx,
        attempt: u32,
        reason: KillReason,
    },
    /// SIGKILL an attempt's process group ourselves (its worker is gone or stuck), if it
    /// has not recorded its exit and the process is the one that started.
    KillGroup {
        worker: String,
        task: TaskIx,
        attempt: u32,
        process: Option<ProcessId>,
    },
    StopWorker {
        worker: String,
        reason: ShutdownReason,
    },
    /// Write `tasks/<id>/retry.json`.
    ScheduleRetry {
        task: TaskIx,
        failed_attempt: u32,
        delay_ms: u64,
        reason: String,
    },
    /// Create `outcome.json` once (and the markers of a success).
    Decide(Decision),
    /// Create `races/<id>/outcome.json`.
    DecideRace {
        race: usize,
        winner: Option<TaskIx>,
        score: Option<f64>,
        result: Option<serde_json::Value>,
        losers: Vec<TaskIx>,
    },
    ReleaseBarrier {
        name: String,
    },
    BreakBarrier {
        name: String,
        task: String,
        reason: String,
    },
    AbortLockWait {
        lock: String,
        victim: String,
        cycle: String,
    },
    /// Write the engine's plan ([`crate::engine::Engine::plan`]) to `plan.json`: it grew
    /// (tasks added), and the journal line that vouches for the new tasks comes next.
    SavePlan,
    /// Answer a control request.
    Reply {
        id: String,
        ok: bool,
        message: String,
    },
    /// Look at checkpoints, signals and locks again soon.
    Rescan,
    /// The session is over (or interrupted): write what ends it and leave.
    Finish(SessionState),
}
