//! A model of the engine, property-tested: random DAGs, worker limits and retries, tasks
//! with a `cleanup` (some after a delay) run on 1 or 2 `cleanup_workers`, driven
//! through a simulated world by a random sequence of what the world does (a worker
//! registers, claims, starts, exits, dies or gets stuck; the shell reads a worker's
//! journal; time passes; a person reassigns, adds tasks or stops the session; the
//! orchestrator restarts from its journal and what is on disk), then a calm phase in
//! which nothing is killed any more.
//!
//! This file holds the cases (the plan, the moves), the world's state and the property
//! tests; `world.rs` plays the world and the shell; `grow.rs` a person's additions and
//! stops; `check.rs` states what must hold.
//!
//! Additions (`Act::Add`, `orchestrator add`): one to three tasks, each after a random
//! subset of the tasks there are (the plan's, those added before, and earlier ones of
//! the same request), with random `retries` and `max_reassign` and maybe a cleanup, parsed
//! from a file of `[[task]]` tables against the plan as `plan.json` holds it. The world's
//! plan and spec grow on `SavePlan` (the shell writes `plan.json` then), so every check
//! below covers the added tasks, and a restarted orchestrator is restored from the grown
//! plan. A stop (`Act::Stop`) drains the session, sometimes with an addition read in the
//! same look after it; and the case's last addition is fed once more after the session
//! ended (a request read in the look that saw the end), so additions reach a stopping
//! and an ended session too.
//!
//! The world is faithful: an assignment is claimed only by the worker it was written
//! to, a worker runs one attempt at a time and claims the next only after recording the
//! last one's exit, an exit is written by the worker that ran the attempt, a dead or
//! stuck worker writes nothing, a worker told to stop still claims and runs what was
//! published to it before it leaves, the shell answers a withdrawal at once (and, when it
//! was refused, reads the worker's journal: the exit that preceded the claim), follows
//! the journals of busy workers (with a task or a cleanup) and of those it gave up on (the
//! others' lines wait for their death or their next task), feeds the starts of one look
//! before its exits, and journals what the engine leaves to it (`worker_spawned`,
//! `retry_scheduled`). A cleanup is an assignment like an attempt (`TASK+cleanup`): it is
//! claimed, started, exits, or dies or is stuck with its worker. A restarted orchestrator
//! gets what the shell's scan finds: the exits of undecided tasks' fence attempts, of
//! attempts taken away and of cleanups the journal shows handed out and not ended; the
//! starts without an exit, every start (`FoundWorker::ran`) and every exit line
//! (`FoundWorker::exited`); the claimed assignments (cleanups too); a worker's exit line
//! may come after that scan read its journal, though its exit file was there: the exit
//! is then read twice.
//!
//! Checked after every step: workers running a current attempt never exceed the limit;
//! each task decided once and never again (across restarts too); an outcome taken from
//! an exit comes from the attempt and worker of the task's latest assignment that was
//! neither withdrawn nor superseded, and that worker wrote it, and is never journalled
//! stale afterwards (read twice, it is the same exit); a task is assigned and
//! succeeds only after its dependencies succeeded, and is skipped only after one of them
//! did not; a task fails on its exits only once its retries are used up; `task_assigned`
//! is journalled before the assignment is published; a refused withdrawal is never asked
//! again; one orchestrator retires an attempt and kills its group once at most.
//! Additions: `SavePlan`, then `tasks_added` naming the new tasks, then the reply, all
//! in the batch of the request; a new task behind a dependency that did not succeed is
//! decided (skipped) before that reply, the others are not; an addition is refused, and
//! the plan left as it was, once the session ended or while it stops (`session_draining`
//! journalled), and accepted otherwise; `plan.json` never holds a task no `tasks_added`
//! line vouches for when the orchestrator dies. Stops: nothing is assigned once the
//! session stops; at the drain's end what did not start is cancelled, and a task waiting
//! for a retry fails (only after a retry was scheduled).
//! Cleanups: at most `cleanup_workers` workers run them at once (as the engine counts,
//! and in the world: cleanups running whose run is not ended), beside the `workers`;
//! `cleanup_started` at most once per (task, attempt) over the whole run, every
//! orchestrator, only for an attempt that started, only for a task with a cleanup, and
//! before its `AssignAux` (which comes once); `cleanup_ended` once, for a cleanup that
//! started, from its worker; the session never finishes while a cleanup runs. At the
//! end of the calm phase: the session finished, every task decided, the final state is
//! the one its decisions call for, every request was answered, every attempt that
//! started had its cleanup started exactly once (save one that started on a worker
//! given up on whose start line no orchestrator read before the end: no one can know
//! it ran), and every cleanup started ended. The end counts the added tasks: the
//! engine's plan, the world's and the spec hold the same tasks, `tasks_added` lines name
//! them all, and every one was decided; the final state is failed with a failed or
//! skipped task, else cancelled with a cancelled one, else succeeded.

mod check;
mod grow;
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
    /// Each task's `cleanup`, if it has one: its `cleanup_delay` in milliseconds.
    cleanup: Vec<Option<u64>>,
    cleanup_workers: usize,
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

    /// The plan: the TOML, then what the parser does not take (yet): cleanups.
    fn plan(&self) -> Plan {
        let mut p = super::tests::plan(&self.toml());
        p.cleanup_workers = self.cleanup_workers;
        for (t, c) in p.tasks.iter_mut().zip(&self.cleanup) {
            if let Some(delay) = c {
                t.cleanup = Some("rm -f lock".into());
                t.cleanup_delay_ms = *delay;
            }
        }
        p
    }

    /// What the TOML does not say, for a trace.
    fn extra(&self) -> String {
        let c: Vec<String> = (0..self.n())
            .filter_map(|i| self.cleanup[i].map(|d| format!("t{i} (delay {d} ms)")))
            .collect();
        format!(
            "# cleanup_workers = {}; cleanups: {}\n",
            self.cleanup_workers,
            c.join(", ")
        )
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
                // Half the tasks have a cleanup, mostly without a delay.
                prop::collection::vec(
                    prop_oneof![
                        4 => Just(None),
                        2 => Just(Some(0u64)),
                        1 => Just(Some(2_000u64)),
                        1 => Just(Some(9_000u64)),
                    ],
                    n,
                ),
                1usize..=2,
            )
        })
        .prop_map(
            |(workers, masks, retries, max_reassign, cleanup, cleanup_workers)| {
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
                    cleanup,
                    cleanup_workers,
                }
            },
        )
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
    /// The shell reads the next lines of a worker's journal: one, or (the second number
    /// picks) two or three at once, fed as the shell feeds what one look read: the starts
    /// first, then the exits.
    Read(u8, u8),
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
    /// A person adds one to three tasks to the live session (`orchestrator add`); the
    /// number seeds what they are (see `grow.rs`).
    Add(u8),
    /// A person stops the session (`orchestrator stop`); `Some`: another adds tasks,
    /// read in the same look, after the stop.
    Stop(Option<u8>),
}

fn act() -> impl Strategy<Value = Act> {
    // A stop is rare (a case stopped early runs little): about a third of the cases
    // have one.
    prop_oneof![
        12 => any::<u8>().prop_map(Act::Register),
        16 => any::<u8>().prop_map(Act::Claim),
        16 => any::<u8>().prop_map(Act::Begin),
        20 => (any::<u8>(), prop::bool::weighted(0.7), any::<bool>())
            .prop_map(|(i, ok, claim)| Act::Exit(i, ok, claim)),
        20 => (any::<u8>(), 0u8..6).prop_map(|(i, k)| Act::Read(i, k)),
        4 => any::<u8>().prop_map(Act::Kill),
        4 => any::<u8>().prop_map(Act::Stall),
        4 => any::<u8>().prop_map(Act::Unstick),
        8 => Just(Act::Time),
        4 => any::<u8>().prop_map(Act::Reassign),
        4 => any::<bool>().prop_map(Act::Restart),
        6 => any::<u8>().prop_map(Act::Add),
        1 => prop::option::of(any::<u8>()).prop_map(Act::Stop),
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
    cleanups_started: usize,
    cleanups_succeeded: usize,
    cleanups_failed: usize,
    cleanups_unknown: usize,
    /// Cleanup exits read after their run was judged (twice, or after its worker was
    /// declared lost).
    cleanup_exits_ignored: usize,
    /// Attempts that started on a worker given up on, whose start no orchestrator read
    /// before the session finished.
    unseen_starts: usize,
    /// Cleanups published and not claimed when the orchestrator died: the resume's scan
    /// takes them back.
    cleanups_withdrawn: usize,
    /// Tasks added to the live session, and of those, the ones behind a dependency that
    /// had not succeeded, decided at once.
    tasks_added: usize,
    added_decided_at_once: usize,
    /// Additions refused: the session had ended (a request read in the look that saw
    /// its end), or was stopping.
    adds_refused_ended: usize,
    adds_refused_stopping: usize,
    /// Sessions stopped (`session_draining`), and tasks a stop left undecided, decided
    /// at the drain's end.
    stops: usize,
    decided_by_stop: usize,
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
        self.cleanups_started += o.cleanups_started;
        self.cleanups_succeeded += o.cleanups_succeeded;
        self.cleanups_failed += o.cleanups_failed;
        self.cleanups_unknown += o.cleanups_unknown;
        self.cleanup_exits_ignored += o.cleanup_exits_ignored;
        self.unseen_starts += o.unseen_starts;
        self.cleanups_withdrawn += o.cleanups_withdrawn;
        self.tasks_added += o.tasks_added;
        self.added_decided_at_once += o.added_decided_at_once;
        self.adds_refused_ended += o.adds_refused_ended;
        self.adds_refused_stopping += o.adds_refused_stopping;
        self.stops += o.stops;
        self.decided_by_stop += o.decided_by_stop;
    }
}

/// The engine, the simulated world around it, and what the checks remember.
struct World {
    /// The plan's shape; it grows with the plan (tasks added).
    spec: Spec,
    /// The plan as `plan.json` holds it: the engine's since its last `SavePlan`.
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
    /// `Retire` and `KillGroup` (and their auxiliary twins) given by this orchestrator:
    /// (command, worker, assignment name, attempt).
    given: BTreeSet<(&'static str, String, String, u32)>,
    /// Task attempts whose process started in the world (their cleanup is owed).
    began: BTreeSet<(String, u32)>,
    /// Of those, the ones whose start line never reached an orchestrator because the
    /// session finished first, on a worker it had given up on: no one can know they
    /// ran (they started after the kill sent when the worker was declared lost).
    unseen_at_finish: BTreeSet<(String, u32)>,
    /// `cleanup_started` lines over the whole run, every orchestrator: (task, attempt)
    /// and (worker, seq).
    cleanup_started: BTreeMap<(String, u32), (String, u64)>,
    /// `cleanup_ended` lines: (task, attempt) and how.
    cleanup_ended: BTreeMap<(String, u32), crate::proto::AuxState>,
    /// Cleanups published (`AssignAux`), over every orchestrator.
    aux_assigned: BTreeSet<(String, u32)>,
    finished: Option<SessionState>,
    controls: u32,
    /// Requests without a reply yet.
    unanswered: usize,
    /// The `add` request being fed, and what the world expects of it.
    adding: Option<grow::Adding>,
    /// Facts fed to the engine so far (each one's commands are a batch).
    batches: u64,
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
    // A request read in the look that saw the session end is fed after its end: the
    // case's last addition comes once more, and is refused.
    if let Some(k) = acts.iter().rev().find_map(|a| match a {
        Act::Add(k) | Act::Stop(Some(k)) => Some(*k),
        _ => None,
    }) {
        if trace {
            eprintln!("Add({k}) after the end");
        }
        w.add(k);
    }
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
                "---- trace of the smallest failing case ----\n{}{}",
                spec.toml(),
                spec.extra()
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
    assert!(total.cleanups_started > 0);
    assert!(total.cleanups_succeeded > 0);
    assert!(total.cleanups_failed > 0);
    assert!(total.cleanups_unknown > 0);
    assert!(total.cleanup_exits_ignored > 0);
    assert!(total.tasks_added > 0);
    assert!(total.added_decided_at_once > 0);
    assert!(total.adds_refused_ended > 0);
    assert!(total.adds_refused_stopping > 0);
    assert!(total.stops > 0);
    assert!(total.decided_by_stop > 0);
}
