//! A model of the engine, property-tested: random DAGs, worker limits and retries, driven
//! through a simulated world by a random sequence of what the world does (a worker
//! registers, claims, starts, exits, dies or gets stuck; the shell reads a worker's
//! journal; time passes; a person reassigns; the orchestrator restarts from its journal
//! and what is on disk), then a calm phase in which nothing is killed any more.
//!
//! This file holds the cases (the plan, the moves), the world's state and the property
//! tests; `world.rs` plays the world and the shell; `check.rs` states what must hold.
//!
//! The world is faithful: an assignment is claimed only by the worker it was written
//! to, a worker runs one attempt at a time and claims the next only after recording the
//! last one's exit, an exit is written by the worker that ran the attempt, a dead or
//! stuck worker writes nothing, a worker told to stop still claims and runs what was
//! published to it before it leaves, the shell answers a withdrawal at once (and, when it
//! was refused, reads the worker's journal: the exit that preceded the claim), follows
//! the journals of busy workers and of those it gave up on (the others' lines wait for
//! their death or their next task), and journals what the engine leaves to it
//! (`worker_spawned`, `retry_scheduled`). A restarted orchestrator gets what the shell's
//! scan finds: the exits of undecided tasks' fence attempts and of attempts taken away,
//! the starts without an exit; a worker's exit line may come after that scan read its
//! journal, though its exit file was there: the exit is then read twice.
//!
//! Checked after every step: workers running a current attempt never exceed the limit;
//! each task decided once and never again (across restarts too); an outcome taken from
//! an exit comes from the attempt and worker of the task's latest assignment that was
//! neither withdrawn nor superseded, and that worker wrote it, and is never journalled
//! stale afterwards (read twice, it is the same exit); a task is assigned and
//! succeeds only after its dependencies succeeded, and is skipped only after one of them
//! did not; a task fails on its exits only once its retries are used up; `task_assigned`
//! is journalled before the assignment is published; a refused withdrawal is never asked
//! again; one orchestrator retires an attempt and kills its group once at most. At the
//! end of the calm phase: the session finished, every task decided, the final state is
//! the one its decisions call for, and every request was answered.

mod check;
mod world;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config as PtConfig, TestRunner};

use super::tests::task_toml;
use super::*;
use crate::journal::History;
use crate::proto::{ExitRecord, Started};

#[derive(Debug, Clone)]
struct Spec {
    workers: usize,
    deps: Vec<Vec<usize>>,
    retries: Vec<u32>,
    max_reassign: Vec<u32>,
}

impl Spec {
    fn n(&self) -> usize {
        self.deps.len()
    }

    fn toml(&self) -> String {
        let mut s = format!("name = \"m\"\nworkers = {}\n", self.workers);
        for i in 0..self.n() {
            let after: Vec<String> = self.deps[i].iter().map(|d| format!("t{d}")).collect();
            let keys = format!(
                "retries = {}\nmax_reassign = {}\n",
                self.retries[i], self.max_reassign[i]
            );
            s += &task_toml(&format!("t{i}"), &after, &keys);
        }
        s + "[defaults]\nbackoff = { initial = \"1s\", max = \"4s\", jitter = 0.5 }\n"
    }
}

fn spec() -> impl Strategy<Value = Spec> {
    (1usize..=12, 1usize..=4)
        .prop_flat_map(|(n, workers)| {
            (
                Just(workers),
                prop::collection::vec((any::<u16>(), any::<u16>()), n),
                prop::collection::vec(0u32..=2, n),
                prop::collection::vec(0u32..=3, n),
            )
        })
        .prop_map(|(workers, masks, retries, max_reassign)| {
            // Each earlier task is a dependency with probability 1/4.
            let deps = masks
                .iter()
                .enumerate()
                .map(|(i, (m1, m2))| (0..i).filter(|&j| ((m1 & m2) >> j) & 1 == 1).collect())
                .collect();
            Spec {
                workers,
                deps,
                retries,
                max_reassign,
            }
        })
}

/// What the world does next; the number picks among the workers (or tasks) it applies to.
#[derive(Debug, Clone, Copy)]
enum Act {
    Register(u8),
    Claim(u8),
    Begin(u8),
    /// The attempt ends; `true`: exit code 0. Then `true`: the worker claims what waits
    /// for it at once, before the shell reads the exit (as a real worker does).
    Exit(u8, bool, bool),
    /// The shell reads the next line of a worker's journal.
    Read(u8),
    /// The worker dies; odd: the shell passes its unread exits with the death.
    Kill(u8),
    Stall(u8),
    Unstick(u8),
    Time,
    Reassign(u8),
    /// The orchestrator dies and another resumes. `true`: the workers' unread `exited`
    /// lines were appended after the new one read their journals, though their exit
    /// files were there when it looked: it reads those exits twice.
    Restart(bool),
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        3 => any::<u8>().prop_map(Act::Register),
        4 => any::<u8>().prop_map(Act::Claim),
        4 => any::<u8>().prop_map(Act::Begin),
        5 => (any::<u8>(), prop::bool::weighted(0.7), any::<bool>())
            .prop_map(|(i, ok, claim)| Act::Exit(i, ok, claim)),
        5 => any::<u8>().prop_map(Act::Read),
        1 => any::<u8>().prop_map(Act::Kill),
        1 => any::<u8>().prop_map(Act::Stall),
        1 => any::<u8>().prop_map(Act::Unstick),
        2 => Just(Act::Time),
        1 => any::<u8>().prop_map(Act::Reassign),
        1 => any::<bool>().prop_map(Act::Restart),
    ]
}

/// Up to 80 moves of the world before the calm phase (`MODEL_MOVES` for more).
fn cases() -> impl Strategy<Value = (Spec, Vec<Act>)> {
    let moves = std::env::var("MODEL_MOVES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(80);
    (spec(), prop::collection::vec(act(), 0..moves))
}

/// A simulated worker process and its directory.
#[derive(Debug, Default)]
struct SimWorker {
    alive: bool,
    registered: bool,
    /// Its `shutdown` file exists.
    stopped: bool,
    /// Alive but doing nothing, not even its heartbeat.
    stuck: bool,
    /// Published to it, not claimed yet, oldest first.
    assigned: Vec<(String, u32)>,
    /// Claimed and not retired.
    claimed: Vec<(String, u32)>,
    /// The attempt it runs, and whether its process started.
    running: Option<(String, u32, bool)>,
    /// The running attempt's process group was SIGKILLed from outside.
    group_killed: bool,
    /// Its journal's `started` lines.
    started: Vec<Started>,
    /// Lines of its journal the shell has not read yet.
    unread: VecDeque<Fact>,
    heartbeat: u64,
}

/// How often the interesting paths were taken (to check the model reaches them).
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    steps: usize,
    restarts: usize,
    stale: usize,
    withdrawn: usize,
    withdraw_refused: usize,
    adopted: usize,
    workers_lost: usize,
    reassigned: usize,
    retries: usize,
    lost_too_often: usize,
    decided_by_exit: usize,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, o: Stats) {
        self.steps += o.steps;
        self.restarts += o.restarts;
        self.stale += o.stale;
        self.withdrawn += o.withdrawn;
        self.withdraw_refused += o.withdraw_refused;
        self.adopted += o.adopted;
        self.workers_lost += o.workers_lost;
        self.reassigned += o.reassigned;
        self.retries += o.retries;
        self.lost_too_often += o.lost_too_often;
        self.decided_by_exit += o.decided_by_exit;
    }
}

/// The engine, the simulated world around it, and what the checks remember.
struct World {
    spec: Spec,
    plan: Plan,
    cfg: Config,
    e: Engine,
    t0: Instant,
    /// Milliseconds since `t0`.
    at: u64,
    history: History,
    workers: BTreeMap<String, SimWorker>,
    /// Kill files: (worker, task, attempt) and why.
    kills: BTreeMap<(String, String, u32), KillReason>,
    /// `exit.json` files: (task, attempt).
    exits: BTreeMap<(String, u32), ExitRecord>,
    /// Facts the shell is about to feed (answers to commands, deaths).
    facts: VecDeque<Fact>,
    /// Outcomes written, by task.
    decided: BTreeMap<String, TaskState>,
    /// Per task, the latest assignment that was neither withdrawn nor superseded nor
    /// ended by its exit.
    current: BTreeMap<String, (u32, String)>,
    /// Per task, the last attempt whose exit was accepted (`attempt_ended` exited or
    /// failed), and its worker.
    accepted: BTreeMap<String, (u32, String)>,
    /// Every (task, attempt, worker) whose exit was ever accepted.
    accepted_ever: BTreeSet<(String, u32, String)>,
    /// `ScheduleRetry`s per task, over every orchestrator.
    retries_used: BTreeMap<String, u32>,
    /// Withdrawals refused (the worker had claimed): (worker, task, attempt).
    refused: BTreeSet<(String, String, u32)>,
    /// `Retire` and `KillGroup` given by this orchestrator: (command, worker, task,
    /// attempt).
    given: BTreeSet<(&'static str, String, TaskIx, u32)>,
    finished: Option<SessionState>,
    controls: u32,
    /// Requests without a reply yet.
    unanswered: usize,
    stats: Stats,
    /// Print every fact and command (to read a failing case).
    trace: bool,
}

fn run(spec: &Spec, acts: &[Act], trace: bool) -> Stats {
    let mut w = World::new(spec, trace);
    for &a in acts {
        if w.finished.is_some() {
            break;
        }
        if trace {
            eprintln!("{a:?}");
        }
        w.step(a);
    }
    if trace {
        eprintln!("calm");
    }
    w.calm();
    w.check_end();
    w.stats
}

/// `MODEL_CASES` runs more cases (a soak), `MODEL_SEED` fixes the random seed.
fn pt_config(cases: u32) -> PtConfig {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    PtConfig {
        cases: env("MODEL_CASES").map_or(cases, |n| n as u32),
        rng_seed: env("MODEL_SEED").map_or(proptest::test_runner::RngSeed::Random, |s| {
            proptest::test_runner::RngSeed::Fixed(s)
        }),
        failure_persistence: None,
        ..PtConfig::default()
    }
}

#[test]
fn the_engine_keeps_its_invariants_in_a_faithful_world() {
    let mut runner = TestRunner::new(pt_config(256));
    let total = std::cell::Cell::new(Stats::default());
    let result = runner.run(&cases(), |(spec, acts)| {
        let mut t = total.get();
        t += run(&spec, &acts, false);
        total.set(t);
        Ok(())
    });
    if let Err(e) = result {
        // Replay the smallest failing case with a trace of every fact and command.
        if let proptest::test_runner::TestError::Fail(_, (spec, acts)) = &e {
            eprintln!(
                "---- trace of the smallest failing case ----\n{}",
                spec.toml()
            );
            let replay = std::panic::catch_unwind(|| run(spec, acts, true));
            eprintln!(
                "---- end of trace ({}) ----",
                if replay.is_err() {
                    "failed again"
                } else {
                    "passed?"
                }
            );
        }
        panic!("{e}");
    }
    eprintln!("model totals: {:?}", total.get());
}

/// The model reaches the paths it is there for (a model that never restarts or never
/// sees a stale exit proves little). Refused withdrawals are the rarest: a few per 100
/// cases.
#[test]
fn the_model_reaches_restarts_stale_exits_withdrawals_and_losses() {
    const CASES: usize = 600;
    let mut runner = TestRunner::new(pt_config(CASES as u32));
    let strategy = cases();
    let mut total = Stats::default();
    for _ in 0..CASES {
        let (spec, acts) = strategy.new_tree(&mut runner).expect("a case").current();
        total += run(&spec, &acts, false);
    }
    eprintln!("model coverage over {CASES} cases: {total:?}");
    assert!(total.restarts > 0);
    assert!(total.stale > 0);
    assert!(total.withdrawn > 0);
    assert!(total.withdraw_refused > 0);
    assert!(total.adopted > 0);
    assert!(total.workers_lost > 0);
    assert!(total.reassigned > 0);
    assert!(total.retries > 0);
    assert!(total.lost_too_often > 0);
    assert!(total.decided_by_exit > 0);
}
