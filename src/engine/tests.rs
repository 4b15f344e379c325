//! Unit tests of the engine rules: one test per rule, small plans parsed from TOML, a
//! fake clock (a base `Instant` plus an offset) and a tiny shell (`Sim`) that keeps the
//! engine, records every command and folds the journal into a `History`.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;
use crate::journal::{DeathCause, EndReason, History};
use crate::proto::{ExitRecord, ShutdownReason, Started};

// ---- helpers shared with `model.rs` ----

pub(super) fn plan(text: &str) -> Plan {
    Plan::parse("t.toml", text, Path::new("/tmp")).expect("a valid test plan")
}

/// An exit record: `code` is the exit code, `None` for "killed by SIGTERM".
pub(super) fn record(task: &str, attempt: u32, worker: &str, code: Option<i32>) -> ExitRecord {
    ExitRecord {
        task: task.into(),
        attempt,
        worker: worker.into(),
        exit_code: code,
        signal: if code.is_none() { Some(15) } else { None },
        started_at: "2025-01-01T00:00:00Z".into(),
        ended_at: "2025-01-01T00:00:01Z".into(),
        duration_ms: 1000,
        timed_out: false,
        killed_by: None,
        spawn_error: None,
        result_error: None,
        has_result: false,
    }
}

/// The record of an attempt the orchestrator asked to stop.
pub(super) fn killed(task: &str, attempt: u32, worker: &str, by: KillReason) -> ExitRecord {
    ExitRecord {
        killed_by: Some(by.as_str().into()),
        ..record(task, attempt, worker, None)
    }
}

pub(super) fn exit_of(rec: ExitRecord, result: Option<serde_json::Value>) -> Exit {
    Exit::Record {
        record: Box::new(rec),
        result,
    }
}

pub(super) fn started(task: &str, attempt: u32, worker: &str, pgid: u32) -> Started {
    Started {
        task: task.into(),
        attempt,
        worker: worker.into(),
        pid: pgid,
        pgid,
        started_at: "2025-01-01T00:00:00Z".into(),
        started_unix_ms: 1,
        proc_start: Some(u64::from(pgid) * 10),
        boot_id: Some("boot-1".into()),
    }
}

/// The journal lines the shell writes itself when it carries out `c` (the engine leaves
/// them to it): `worker_spawned`, and `retry_scheduled` with the retry's number and its
/// wall-clock deadline.
pub(super) fn shell_events(plan: &Plan, c: &Command, h: &History, unix_ms: u64) -> Vec<Event> {
    match c {
        Command::SpawnWorker { worker } => vec![Event::WorkerSpawned {
            worker: worker.clone(),
            launcher: "test".into(),
            terminal: None,
        }],
        Command::ScheduleRetry {
            task,
            failed_attempt,
            delay_ms,
            reason,
        } => {
            let id = plan.tasks[*task].id.clone();
            let retry = h.tasks.get(&id).map_or(0, |t| t.failures) + 1;
            vec![Event::RetryScheduled {
                task: id,
                failed_attempt: *failed_attempt,
                retry,
                retries: plan.tasks[*task].retries,
                delay_ms: *delay_ms,
                not_before_unix_ms: unix_ms + delay_ms,
                reason: reason.clone(),
            }]
        }
        _ => Vec::new(),
    }
}

/// The wall clock at the fake clock's base.
const UNIX0: u64 = 1_700_000_000_000;

/// A lease long enough never to matter, for tests about something else.
const LONG: Duration = Duration::from_secs(3600);

/// The engine with a fake clock and the shell's bookkeeping.
struct Sim {
    e: Engine,
    cfg: Config,
    t0: Instant,
    /// Time since `t0`.
    at: Duration,
    /// Every command so far, in order.
    log: Vec<Command>,
    history: History,
    spawned: Vec<String>,
    registered: BTreeSet<String>,
}

impl Sim {
    fn new(text: &str, workers: usize) -> Sim {
        Sim::with(text, Config::new(workers, LONG))
    }

    fn with(text: &str, cfg: Config) -> Sim {
        Sim {
            e: Engine::new(plan(text), cfg.clone(), 1),
            cfg,
            t0: Instant::now(),
            at: Duration::ZERO,
            log: Vec::new(),
            history: History::default(),
            spawned: Vec::new(),
            registered: BTreeSet::new(),
        }
    }

    /// A new orchestrator over this one's journal (the old one crashed), told what is on
    /// disk.
    fn resume(&self, found: Found) -> (Sim, Vec<Command>) {
        let e = Engine::restore(
            self.e.plan().clone(),
            self.cfg.clone(),
            &self.history,
            1,
            self.now(),
            self.unix_ms(),
        );
        let mut s = Sim {
            e,
            cfg: self.cfg.clone(),
            t0: self.t0,
            at: self.at,
            log: Vec::new(),
            history: self.history.clone(),
            spawned: Vec::new(),
            registered: BTreeSet::new(),
        };
        let c = s.on(Fact::Recovered(found));
        (s, c)
    }

    fn now(&self) -> Instant {
        self.t0 + self.at
    }

    fn unix_ms(&self) -> u64 {
        UNIX0 + self.at.as_millis() as u64
    }

    fn on(&mut self, fact: Fact) -> Vec<Command> {
        let cmds = self.e.on(fact, self.now());
        for c in &cmds {
            if let Command::Journal(ev) = c {
                self.history.apply(ev);
            }
            for ev in shell_events(self.e.plan(), c, &self.history, self.unix_ms()) {
                self.history.apply(&ev);
            }
            if let Command::SpawnWorker { worker } = c {
                self.spawned.push(worker.clone());
            }
        }
        self.log.extend(cmds.iter().cloned());
        cmds
    }

    fn start(&mut self) -> Vec<Command> {
        self.on(Fact::Start)
    }

    fn register(&mut self, w: &str) -> Vec<Command> {
        self.registered.insert(w.to_string());
        self.on(Fact::WorkerRegistered {
            worker: w.into(),
            pid: 1000,
            host: "h".into(),
            terminal: None,
        })
    }

    /// Register every spawned worker that has not registered yet.
    fn register_all(&mut self) -> Vec<Command> {
        let todo: Vec<String> = self
            .spawned
            .iter()
            .filter(|w| !self.registered.contains(*w))
            .cloned()
            .collect();
        todo.iter().flat_map(|w| self.register(w)).collect()
    }

    fn advance(&mut self, ms: u64) -> Vec<Command> {
        self.at += Duration::from_millis(ms);
        self.on(Fact::Tick)
    }

    fn begin(&mut self, w: &str, task: &str, attempt: u32) -> Vec<Command> {
        self.on(Fact::AttemptStarted(started(
            task,
            attempt,
            w,
            4000 + attempt,
        )))
    }

    fn exit_rec(&mut self, rec: ExitRecord, result: Option<serde_json::Value>) -> Vec<Command> {
        self.on(Fact::AttemptExited {
            worker: rec.worker.clone(),
            task: rec.task.clone(),
            attempt: rec.attempt,
            exit: exit_of(rec, result),
        })
    }

    fn exit(&mut self, w: &str, task: &str, attempt: u32, code: i32) -> Vec<Command> {
        self.exit_rec(record(task, attempt, w, Some(code)), None)
    }

    /// Start and end an attempt; the commands of both.
    fn run(&mut self, w: &str, task: &str, attempt: u32, code: i32) -> Vec<Command> {
        let mut c = self.begin(w, task, attempt);
        c.extend(self.exit(w, task, attempt, code));
        c
    }

    fn control(&mut self, id: &str, action: ControlAction, task: Option<&str>) -> Vec<Command> {
        self.on(Fact::Control {
            id: id.into(),
            action,
            task: task.map(str::to_string),
        })
    }

    fn ix(&self, id: &str) -> TaskIx {
        self.e.task_index(id).expect("a task of the plan")
    }

    fn id(&self, t: TaskIx) -> String {
        self.e.plan().tasks[t].id.clone()
    }

    /// `(worker, task id, attempt)` of every `Assign` in `cmds`.
    fn assigns(&self, cmds: &[Command]) -> Vec<(String, String, u32)> {
        cmds.iter()
            .filter_map(|c| match c {
                Command::Assign {
                    worker,
                    task,
                    attempt,
                    ..
                } => Some((worker.clone(), self.id(*task), *attempt)),
                _ => None,
            })
            .collect()
    }

    /// `(task id, state, attempt, worker)` of every `Decide` in `cmds`.
    fn decides(&self, cmds: &[Command]) -> Vec<(String, TaskState, u32, Option<String>)> {
        decisions(cmds)
            .into_iter()
            .map(|d| (self.id(d.task), d.state, d.attempt, d.worker.clone()))
            .collect()
    }

    /// The worker running (or holding the fence of) task `id`.
    fn holder(&self, id: &str) -> String {
        self.e
            .fence(self.ix(id))
            .map(|(_, w)| w.to_string())
            .expect("the task holds a fence")
    }

    fn busy(&self) -> usize {
        self.e
            .live_workers()
            .filter(|(_, s)| matches!(s, WorkerState::Busy { .. }))
            .count()
    }
}

/// An expected `Assign`: (worker, task id, attempt).
fn assigned(w: &str, t: &str, n: u32) -> (String, String, u32) {
    (w.to_string(), t.to_string(), n)
}

fn decided(
    t: &str,
    s: TaskState,
    n: u32,
    w: Option<&str>,
) -> (String, TaskState, u32, Option<String>) {
    (t.to_string(), s, n, w.map(str::to_string))
}

fn decisions(cmds: &[Command]) -> Vec<&Decision> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Decide(d) => Some(d),
            _ => None,
        })
        .collect()
}

fn events(cmds: &[Command]) -> Vec<&Event> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Journal(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn spawns(cmds: &[Command]) -> Vec<String> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::SpawnWorker { worker } => Some(worker.clone()),
            _ => None,
        })
        .collect()
}

fn finish(cmds: &[Command]) -> Option<SessionState> {
    cmds.iter().find_map(|c| match c {
        Command::Finish(s) => Some(*s),
        _ => None,
    })
}

fn position(cmds: &[Command], f: impl Fn(&Command) -> bool) -> usize {
    cmds.iter().position(f).expect("the command is there")
}

fn has(cmds: &[Command], f: impl Fn(&Command) -> bool) -> bool {
    cmds.iter().any(f)
}

fn ended(cmds: &[Command], task: &str, attempt: u32) -> Vec<EndReason> {
    events(cmds)
        .into_iter()
        .filter_map(|e| match e {
            Event::AttemptEnded {
                task: t,
                attempt: n,
                reason,
                ..
            } if t == task && *n == attempt => Some(*reason),
            _ => None,
        })
        .collect()
}

fn stale_results(cmds: &[Command]) -> Vec<(String, u32, Option<String>)> {
    events(cmds)
        .into_iter()
        .filter_map(|e| match e {
            Event::StaleResult {
                task,
                attempt,
                worker,
                ..
            } => Some((task.clone(), *attempt, worker.clone())),
            _ => None,
        })
        .collect()
}

const CHAIN: &str = r#"
name = "p"
[[task]]
id = "a"
run = "true"
[[task]]
id = "b"
run = "true"
after = ["a"]
"#;

const ONE: &str = r#"
name = "p"
[[task]]
id = "a"
run = "true"
"#;

// ---- dependencies and the dispatch path ----

#[test]
fn a_task_waits_for_its_dependency_then_goes_to_an_idle_worker() {
    let mut s = Sim::new(CHAIN, 2);
    let c = s.start();
    assert_eq!(spawns(&c), ["w1", "w2"]);
    assert!(
        s.assigns(&c).is_empty(),
        "nothing is assigned before a worker registers"
    );
    let c = s.register("w1");
    assert_eq!(s.assigns(&c), [assigned("w1", "a", 1)]);
    let c = s.register("w2");
    assert!(s.assigns(&c).is_empty(), "b waits for a");
    assert_eq!(s.e.worker_state("w2"), Some(WorkerState::Idle));
    let c = s.begin("w1", "a", 1);
    assert!(
        s.assigns(&c).is_empty(),
        "b is not ready, so nothing is queued"
    );
    let c = s.exit("w1", "a", 1, 0);
    assert_eq!(
        s.decides(&c),
        [decided("a", TaskState::Succeeded, 1, Some("w1"))]
    );
    assert_eq!(s.assigns(&c).len(), 1);
    assert_eq!(s.assigns(&c)[0].1, "b");
    let d = position(&c, |c| matches!(c, Command::Decide(_)));
    let asg = position(&c, |c| matches!(c, Command::Assign { .. }));
    assert!(d < asg, "b is assigned only once a has succeeded");
}

#[test]
fn task_assigned_is_journalled_before_the_assign_of_the_same_attempt() {
    let mut s = Sim::new(ONE, 1);
    s.start();
    let c = s.register("w1");
    let journalled = position(&c, |c| {
        matches!(c, Command::Journal(Event::TaskAssigned { task, attempt: 1, worker, .. })
            if task == "a" && worker == "w1")
    });
    let published = position(
        &c,
        |c| matches!(c, Command::Assign { worker, task: 0, attempt: 1, .. } if worker == "w1"),
    );
    assert!(journalled < published);
    assert_eq!(s.e.fence(0), Some((1, "w1")));
    // The seq of the journal line is the assignment's.
    let seqs: Vec<u64> = c
        .iter()
        .filter_map(|c| match c {
            Command::Journal(Event::TaskAssigned { seq, .. }) | Command::Assign { seq, .. } => {
                Some(*seq)
            }
            _ => None,
        })
        .collect();
    assert_eq!(seqs.len(), 2);
    assert_eq!(seqs[0], seqs[1]);
}

#[test]
fn the_pool_never_exceeds_the_worker_limit() {
    let text = (0..6)
        .map(|i| format!("[[task]]\nid = \"t{i}\"\nrun = \"true\"\n"))
        .collect::<String>();
    let mut s = Sim::new(&format!("name = \"p\"\n{text}"), 2);
    let c = s.start();
    assert_eq!(spawns(&c).len(), 2);
    s.register_all();
    let mut rounds = 0;
    while !s.e.finished() {
        rounds += 1;
        assert!(rounds < 20, "the session does not end");
        let busy: Vec<(String, TaskIx, u32)> =
            s.e.live_workers()
                .filter_map(|(w, st)| match st {
                    WorkerState::Busy { task, attempt } => Some((w.to_string(), task, attempt)),
                    _ => None,
                })
                .collect();
        assert!(!busy.is_empty());
        for (w, t, n) in busy {
            let id = s.id(t);
            s.begin(&w, &id, n);
            assert!(s.busy() <= 2 && s.e.live_workers().count() <= 2);
            s.exit(&w, &id, n, 0);
            assert!(s.busy() <= 2 && s.e.live_workers().count() <= 2);
        }
    }
    assert_eq!(
        s.spawned.len(),
        2,
        "no worker beyond the limit was ever started"
    );
    assert_eq!(finish(&s.log), Some(SessionState::Succeeded));
    assert_eq!(s.e.counts()[&TaskState::Succeeded], 6);
}

// ---- queue-ahead ----

const THREE: &str = r#"
name = "p"
[[task]]
id = "a"
run = "true"
[[task]]
id = "b"
run = "true"
[[task]]
id = "c"
run = "true"
"#;

#[test]
fn a_started_busy_worker_gets_exactly_one_task_queued_behind_it() {
    let mut s = Sim::new(THREE, 1);
    s.start();
    let c = s.register("w1");
    assert_eq!(
        s.assigns(&c),
        [assigned("w1", "a", 1)],
        "nothing is queued before the running task started"
    );
    let c = s.begin("w1", "a", 1);
    assert_eq!(s.assigns(&c), [assigned("w1", "b", 1)], "one task, not two");
    assert_eq!(
        s.e.worker_state("w1"),
        Some(WorkerState::Busy {
            task: 0,
            attempt: 1
        })
    );
    assert_eq!(s.e.in_flight("w1"), [(0, 1), (1, 1)]);
    // The exit makes the queued task the running one, without a new assignment.
    let c = s.exit("w1", "a", 1, 0);
    assert!(s.assigns(&c).is_empty());
    assert_eq!(
        s.e.worker_state("w1"),
        Some(WorkerState::Busy {
            task: 1,
            attempt: 1
        })
    );
    let c = s.begin("w1", "b", 1);
    assert_eq!(s.assigns(&c), [assigned("w1", "c", 1)]);
}

/// a (with d after it), b and c on two workers: w1 runs a with c queued behind it, w2
/// runs b. Returns the sim once b has ended (w2 idle).
fn queued_behind_w1() -> (Sim, Vec<Command>) {
    let text = r#"
name = "p"
[[task]]
id = "a"
run = "true"
[[task]]
id = "b"
run = "true"
[[task]]
id = "c"
run = "true"
[[task]]
id = "d"
run = "true"
after = ["a"]
"#;
    let mut s = Sim::new(text, 2);
    s.start();
    assert_eq!(
        {
            let c = s.register("w1");
            s.assigns(&c)
        },
        [assigned("w1", "a", 1)]
    );
    assert_eq!(
        {
            let c = s.register("w2");
            s.assigns(&c)
        },
        [assigned("w2", "b", 1)]
    );
    assert_eq!(
        {
            let c = s.begin("w1", "a", 1);
            s.assigns(&c)
        },
        [assigned("w1", "c", 1)]
    );
    let c = s.run("w2", "b", 1, 0);
    assert_eq!(s.e.worker_state("w2"), Some(WorkerState::Idle));
    (s, c)
}

#[test]
fn an_idle_worker_makes_the_engine_withdraw_a_queued_task_and_take_it() {
    let (mut s, c) = queued_behind_w1();
    let c_ix = s.ix("c");
    assert!(has(&c, |c| matches!(c,
        Command::Withdraw { worker, task, attempt: 1 } if worker == "w1" && *task == c_ix)));
    let c = s.on(Fact::Withdrawn {
        worker: "w1".into(),
        task: "c".into(),
        attempt: 1,
        ok: true,
    });
    let withdrawn = position(&c, |c| {
        matches!(c, Command::Journal(Event::TaskWithdrawn { task, attempt: 1, worker })
            if task == "c" && worker == "w1")
    });
    let reassigned = position(&c, |c| matches!(c, Command::Assign { .. }));
    assert!(withdrawn < reassigned);
    assert_eq!(
        s.assigns(&c),
        [assigned("w2", "c", 1)],
        "the same attempt number: it never ran"
    );
    assert_eq!(s.e.attempts(c_ix), 1);
    assert_eq!(s.e.fence(c_ix), Some((1, "w2")));
    assert_eq!(s.e.in_flight("w1"), [(s.ix("a"), 1)]);
    assert_eq!(s.history.tasks["c"].fence, Some((1, "w2".to_string())));
}

#[test]
fn a_claimed_queued_task_is_not_withdrawn_and_runs_after_the_exit() {
    let (mut s, _) = queued_behind_w1();
    let c = s.on(Fact::Withdrawn {
        worker: "w1".into(),
        task: "c".into(),
        attempt: 1,
        ok: false,
    });
    assert!(!has(&c, |c| matches!(
        c,
        Command::Journal(Event::TaskWithdrawn { .. })
    )));
    assert!(s.assigns(&c).is_empty());
    assert_eq!(s.e.fence(s.ix("c")), Some((1, "w1")));
    // w1 claimed c, so a has ended: its exit follows.
    let c = s.exit("w1", "a", 1, 0);
    assert_eq!(
        s.decides(&c),
        [decided("a", TaskState::Succeeded, 1, Some("w1"))]
    );
    assert_eq!(
        s.e.worker_state("w1"),
        Some(WorkerState::Busy {
            task: s.ix("c"),
            attempt: 1
        })
    );
    assert_eq!(s.assigns(&c), [assigned("w2", "d", 1)]);
    let c = s.run("w1", "c", 1, 0);
    assert_eq!(
        s.decides(&c),
        [decided("c", TaskState::Succeeded, 1, Some("w1"))]
    );
    let c = s.run("w2", "d", 1, 0);
    assert_eq!(finish(&c), Some(SessionState::Succeeded));
}

// ---- retries ----

#[test]
fn a_failed_attempt_is_retried_at_its_backoff_deadline_not_before() {
    let text = r#"
name = "p"
[[task]]
id = "a"
run = "false"
retries = 2
backoff = { initial = "1s", factor = 2, jitter = 0 }
"#;
    let mut s = Sim::new(text, 1);
    s.start();
    s.register("w1");
    let c = s.run("w1", "a", 1, 1);
    assert!(has(&c, |c| matches!(c,
        Command::ScheduleRetry { task: 0, failed_attempt: 1, delay_ms: 1000, reason }
            if reason == "exited with code 1")));
    assert!(decisions(&c).is_empty());
    assert_eq!(ended(&c, "a", 1), [EndReason::Failed]);
    assert!(!has(&c, |c| matches!(c, Command::StopWorker { .. })));
    assert_eq!(
        s.e.next_deadline(),
        Some(s.now() + Duration::from_millis(1000))
    );
    assert!(
        {
            let c = s.advance(999);
            s.assigns(&c)
        }
        .is_empty(),
        "not before the deadline"
    );
    assert_eq!(
        {
            let c = s.advance(1);
            s.assigns(&c)
        },
        [assigned("w1", "a", 2)],
        "at it"
    );
    let c = s.run("w1", "a", 2, 1);
    assert!(has(&c, |c| matches!(
        c,
        Command::ScheduleRetry {
            failed_attempt: 2,
            delay_ms: 2000,
            ..
        }
    )));
    assert!(
        {
            let c = s.advance(1999);
            s.assigns(&c)
        }
        .is_empty()
    );
    assert_eq!(
        {
            let c = s.advance(1);
            s.assigns(&c)
        },
        [assigned("w1", "a", 3)]
    );
    let c = s.run("w1", "a", 3, 1);
    assert!(!has(&c, |c| matches!(c, Command::ScheduleRetry { .. })));
    assert_eq!(
        s.decides(&c),
        [decided("a", TaskState::Failed, 3, Some("w1"))]
    );
    assert_eq!(finish(&c), Some(SessionState::Failed));
}

// ---- failure and propagation ----

#[test]
fn a_failure_skips_its_dependents_but_not_an_independent_branch() {
    let text = r#"
name = "p"
[[task]]
id = "a"
run = "false"
[[task]]
id = "b"
run = "true"
after = ["a"]
[[task]]
id = "c"
run = "true"
after = ["b"]
[[task]]
id = "x"
run = "true"
[[task]]
id = "y"
run = "true"
after = ["x"]
"#;
    let mut s = Sim::new(text, 2);
    s.start();
    let c = s.register_all();
    assert_eq!(
        s.assigns(&c),
        [assigned("w1", "a", 1), assigned("w2", "x", 1)]
    );
    let c = s.run("w1", "a", 1, 1);
    assert_eq!(
        s.decides(&c),
        [
            decided("a", TaskState::Failed, 1, Some("w1")),
            decided("b", TaskState::Skipped, 0, None),
            decided("c", TaskState::Skipped, 0, None),
        ]
    );
    assert!(has(&c, |c| matches!(c,
        Command::Journal(Event::TaskSkipped { task, reason })
            if task == "c" && reason == "dependency a did not succeed")));
    assert!(finish(&c).is_none(), "x and y still run");
    let c = s.run("w2", "x", 1, 0);
    assert_eq!(s.assigns(&c).len(), 1);
    assert_eq!(s.assigns(&c)[0].1, "y");
    let w = s.assigns(&c)[0].0.clone();
    let c = s.run(&w, "y", 1, 0);
    assert_eq!(
        s.decides(&c),
        [decided("y", TaskState::Succeeded, 1, Some(&w))]
    );
    assert_eq!(finish(&c), Some(SessionState::Failed));
}

// ---- the fence ----

#[test]
fn an_exit_from_a_superseded_attempt_is_journalled_stale_and_never_decides() {
    let mut s = Sim::with(ONE, Config::new(1, Duration::from_secs(10)));
    s.start();
    s.register("w1");
    s.begin("w1", "a", 1);
    // w1 is stuck past its lease: attempt 1 is superseded, attempt 2 goes to w2.
    s.advance(10_001);
    assert_eq!(s.e.worker_state("w1"), Some(WorkerState::Gone));
    assert_eq!(
        {
            let c = s.register("w2");
            s.assigns(&c)
        },
        [assigned("w2", "a", 2)]
    );
    // w1 comes back and reports attempt 1 as a success: refused.
    let c = s.exit("w1", "a", 1, 0);
    assert_eq!(stale_results(&c), [("a".into(), 1, Some("w1".into()))]);
    assert!(has(&c, |c| matches!(
        c,
        Command::Journal(Event::StaleResult {
            exit_code: Some(0),
            current_attempt: 2,
            ..
        })
    )));
    assert_eq!(ended(&c, "a", 1), [EndReason::Stale]);
    assert!(decisions(&c).is_empty());
    assert_eq!(s.e.decided(0), None);
    assert_eq!(s.e.fence(0), Some((2, "w2")));
    // The fence holder decides, even with a worse result.
    let c = s.run("w2", "a", 2, 1);
    assert_eq!(
        s.decides(&c),
        [decided("a", TaskState::Failed, 2, Some("w2"))]
    );
}

// ---- worker loss ----

#[test]
fn a_dead_worker_s_task_gets_a_new_attempt_until_max_reassign_fails_it() {
    let text = r#"
name = "p"
[[task]]
id = "a"
run = "true"
max_reassign = 1
"#;
    let mut s = Sim::new(text, 1);
    s.start();
    s.register("w1");
    s.begin("w1", "a", 1);
    let c = s.on(Fact::WorkerDied {
        worker: "w1".into(),
        how: DeathCause::Died,
        exits: Vec::new(),
    });
    assert!(has(&c, |c| matches!(c,
        Command::KillGroup { worker, task: 0, attempt: 1, .. } if worker == "w1")));
    assert_eq!(ended(&c, "a", 1), [EndReason::WorkerLost]);
    assert!(has(&c, |c| matches!(c,
        Command::Journal(Event::WorkerLost { worker, how: DeathCause::Died }) if worker == "w1")));
    assert!(decisions(&c).is_empty());
    assert_eq!(spawns(&c), ["w2"]);
    assert_eq!(
        {
            let c = s.register("w2");
            s.assigns(&c)
        },
        [assigned("w2", "a", 2)]
    );
    s.begin("w2", "a", 2);
    let c = s.on(Fact::WorkerDied {
        worker: "w2".into(),
        how: DeathCause::Died,
        exits: Vec::new(),
    });
    let d = decisions(&c);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].state, TaskState::Failed);
    assert!(d[0].exit.is_none());
    assert!(
        d[0].reason
            .as_deref()
            .unwrap()
            .contains("max_reassign is 1")
    );
    assert_eq!(s.history.tasks["a"].reassigns, 2);
    assert_eq!(finish(&c), Some(SessionState::Failed));
}

#[test]
fn a_worker_whose_heartbeat_stops_moving_for_the_lease_is_lost() {
    let mut s = Sim::with(ONE, Config::new(1, Duration::from_secs(10)));
    s.start();
    s.register("w1");
    s.begin("w1", "a", 1);
    s.at = Duration::from_secs(5);
    s.on(Fact::Heartbeat {
        worker: "w1".into(),
        counter: 1,
    });
    s.at = Duration::from_secs(14);
    // The same counter again: the worker is not moving.
    let c = s.on(Fact::Heartbeat {
        worker: "w1".into(),
        counter: 1,
    });
    assert!(c.is_empty());
    assert_eq!(s.e.next_deadline(), Some(s.t0 + Duration::from_secs(15)));
    let c = s.advance(1000);
    assert!(c.is_empty(), "exactly the lease is not past it");
    let c = s.advance(1);
    assert!(has(&c, |c| matches!(c,
        Command::Journal(Event::WorkerUnresponsive { worker, lease_ms: 10_000 }) if worker == "w1")));
    assert!(has(&c, |c| matches!(c,
        Command::StopWorker { worker, reason: ShutdownReason::Lost } if worker == "w1")));
    assert!(has(&c, |c| matches!(c,
        Command::KillGroup { worker, task: 0, attempt: 1, .. } if worker == "w1")));
    assert_eq!(ended(&c, "a", 1), [EndReason::WorkerLost]);
    assert_eq!(spawns(&c), ["w2"]);
    assert_eq!(s.e.worker_state("w1"), Some(WorkerState::Gone));
    assert_eq!(s.e.fence(0), None);
}

// ---- requests ----

#[test]
fn reassign_stops_the_attempt_and_runs_a_new_one_on_another_worker() {
    let mut s = Sim::new(ONE, 1);
    s.start();
    s.register("w1");
    s.begin("w1", "a", 1);
    let c = s.control("r1", ControlAction::Reassign, Some("a"));
    assert!(has(&c, |c| matches!(c,
        Command::Kill { worker, task: 0, attempt: 1, reason: KillReason::Reassigned }
            if worker == "w1")));
    assert_eq!(ended(&c, "a", 1), [EndReason::Reassigned]);
    assert!(has(
        &c,
        |c| matches!(c, Command::Reply { id, ok: true, .. } if id == "r1")
    ));
    assert_eq!(
        spawns(&c),
        ["w2"],
        "the old worker stays busy until its attempt ends"
    );
    assert_eq!(s.e.fence(0), None);
    assert_eq!(
        {
            let c = s.register("w2");
            s.assigns(&c)
        },
        [assigned("w2", "a", 2)]
    );
    let c = s.exit_rec(killed("a", 1, "w1", KillReason::Reassigned), None);
    assert_eq!(stale_results(&c), [("a".into(), 1, Some("w1".into()))]);
    assert!(decisions(&c).is_empty());
    let c = s.run("w2", "a", 2, 0);
    assert_eq!(
        s.decides(&c),
        [decided("a", TaskState::Succeeded, 2, Some("w2"))]
    );
    assert_eq!(finish(&c), Some(SessionState::Succeeded));
}

#[test]
fn reassign_of_a_task_that_is_not_running_is_refused() {
    let mut s = Sim::new(CHAIN, 1);
    s.start();
    s.register("w1");
    let c = s.control("r1", ControlAction::Reassign, Some("b"));
    assert!(has(&c, |c| matches!(c,
        Command::Reply { id, ok: false, message } if id == "r1" && message.contains("not running"))));
    assert!(!has(&c, |c| matches!(c, Command::Kill { .. })));
    assert_eq!(s.e.fence(s.ix("a")), Some((1, "w1")));
}

#[test]
fn cancelling_a_task_cancels_its_dependents_and_ends_the_session_cancelled() {
    let text = r#"
name = "p"
[[task]]
id = "a"
run = "true"
[[task]]
id = "b"
run = "true"
after = ["a"]
[[task]]
id = "c"
run = "true"
"#;
    let mut s = Sim::new(text, 2);
    s.start();
    assert_eq!(
        {
            let c = s.register_all();
            s.assigns(&c)
        },
        [assigned("w1", "a", 1), assigned("w2", "c", 1)]
    );
    s.begin("w1", "a", 1);
    let c = s.control("k1", ControlAction::Cancel, Some("a"));
    assert!(has(&c, |c| matches!(c,
        Command::Kill { worker, task: 0, attempt: 1, reason: KillReason::Cancelled }
            if worker == "w1")));
    assert_eq!(
        s.decides(&c),
        [
            decided("a", TaskState::Cancelled, 1, None),
            decided("b", TaskState::Cancelled, 0, None),
        ]
    );
    assert!(has(&c, |c| matches!(c,
        Command::Journal(Event::TaskCancelled { task, .. }) if task == "b")));
    assert!(has(&c, |c| matches!(c,
        Command::Reply { id, ok: true, message } if id == "k1" && message.contains("1 dependents"))));
    let c = s.run("w2", "c", 1, 0);
    assert_eq!(
        finish(&c),
        Some(SessionState::Cancelled),
        "nothing failed, a task was cancelled on purpose"
    );
    // The cancelled attempt's late exit changes nothing.
    let c = s.exit_rec(killed("a", 1, "w1", KillReason::Cancelled), None);
    assert!(decisions(&c).is_empty());
    assert_eq!(s.e.decided(0), Some(TaskState::Cancelled));
}

#[test]
fn cancelling_the_session_never_changes_an_already_decided_task() {
    let mut s = Sim::new(THREE, 1);
    s.start();
    s.register("w1");
    let c = s.run("w1", "a", 1, 0);
    assert_eq!(s.assigns(&c), [assigned("w1", "b", 1)]);
    assert_eq!(
        {
            let c = s.begin("w1", "b", 1);
            s.assigns(&c)
        },
        [assigned("w1", "c", 1)]
    );
    let c = s.control("k1", ControlAction::Cancel, None);
    assert!(
        has(&c, |c| matches!(
            c,
            Command::Withdraw {
                task: 2,
                attempt: 1,
                ..
            }
        )),
        "a queued assignment is withdrawn before the request acts"
    );
    assert!(!has(&c, |c| matches!(c, Command::Reply { .. })));
    let c = s.on(Fact::Withdrawn {
        worker: "w1".into(),
        task: "c".into(),
        attempt: 1,
        ok: true,
    });
    assert!(has(&c, |c| matches!(c, Command::Reply { ok: true, .. })));
    assert!(has(&c, |c| matches!(
        c,
        Command::Kill {
            task: 1,
            attempt: 1,
            reason: KillReason::Cancelled,
            ..
        }
    )));
    assert_eq!(
        s.decides(&c),
        [
            decided("b", TaskState::Cancelled, 1, None),
            decided("c", TaskState::Cancelled, 0, None),
        ]
    );
    assert!(s.assigns(&c).is_empty());
    assert_eq!(s.e.decided(0), Some(TaskState::Succeeded));
    assert!(finish(&c).is_none(), "b still runs");
    let c = s.exit_rec(killed("b", 1, "w1", KillReason::Cancelled), None);
    assert!(decisions(&c).is_empty());
    assert_eq!(finish(&c), Some(SessionState::Cancelled));
    assert_eq!(s.e.decided(0), Some(TaskState::Succeeded));
    assert_eq!(decisions(&s.log).iter().filter(|d| d.task == 0).count(), 1);
}

#[test]
fn the_session_fails_when_a_task_failed_even_if_another_was_cancelled() {
    let text = r#"
name = "p"
[[task]]
id = "a"
run = "false"
[[task]]
id = "c"
run = "true"
"#;
    let mut s = Sim::new(text, 2);
    s.start();
    s.register_all();
    s.begin("w2", "c", 1);
    s.control("k1", ControlAction::Cancel, Some("c"));
    assert_eq!(s.e.decided(1), Some(TaskState::Cancelled));
    let c = s.run("w1", "a", 1, 1);
    assert_eq!(finish(&c), Some(SessionState::Failed));
}

// ---- interrupts ----

#[test]
fn a_first_interrupt_stops_attempts_without_a_retry_and_ends_interrupted() {
    let text = r#"
name = "p"
[defaults]
retries = 3
[[task]]
id = "a"
run = "true"
[[task]]
id = "b"
run = "true"
[[task]]
id = "c"
run = "true"
"#;
    let mut s = Sim::new(text, 2);
    s.start();
    s.register_all();
    assert_eq!(
        {
            let c = s.begin("w1", "a", 1);
            s.assigns(&c)
        },
        [assigned("w1", "c", 1)]
    );
    s.begin("w2", "b", 1);
    let c = s.on(Fact::Interrupt {
        signal: Interrupt::Int,
        again: false,
    });
    for (w, t) in [("w1", 0), ("w2", 1)] {
        assert!(has(&c, |c| matches!(c,
            Command::Kill { worker, task, attempt: 1, reason: KillReason::Interrupted }
                if worker == w && *task == t)));
    }
    assert!(has(&c, |c| matches!(c, Command::Withdraw { task: 2, .. })));
    assert!(has(&c, |c| matches!(
        c,
        Command::Journal(Event::SessionState {
            state: SessionState::Stopping,
            ..
        })
    )));
    assert!(finish(&c).is_none());
    let c = s.on(Fact::Withdrawn {
        worker: "w1".into(),
        task: "c".into(),
        attempt: 1,
        ok: true,
    });
    assert!(s.assigns(&c).is_empty(), "no new assignment while stopping");
    let c = s.exit_rec(killed("a", 1, "w1", KillReason::Interrupted), None);
    assert_eq!(ended(&c, "a", 1), [EndReason::Interrupted]);
    assert!(!has(&c, |c| matches!(c, Command::ScheduleRetry { .. })));
    assert!(decisions(&c).is_empty());
    assert!(s.assigns(&c).is_empty());
    assert!(finish(&c).is_none(), "b still runs");
    let c = s.exit_rec(killed("b", 1, "w2", KillReason::Interrupted), None);
    assert!(decisions(&c).is_empty());
    assert_eq!(finish(&c), Some(SessionState::Interrupted));
    assert_eq!(s.e.state(), SessionState::Interrupted);
    assert_eq!(s.e.interrupted_by(), Some(Interrupt::Int));
    assert_eq!(s.history.tasks["a"].failures, 0);
    assert!((0..3).all(|t| s.e.decided(t).is_none()));
}

#[test]
fn a_second_interrupt_kills_every_group_at_once_and_ends_interrupted() {
    let text = r#"
name = "p"
[[task]]
id = "a"
run = "true"
[[task]]
id = "b"
run = "true"
"#;
    let mut s = Sim::new(text, 2);
    s.start();
    s.register_all();
    s.begin("w1", "a", 1);
    s.begin("w2", "b", 1);
    let c = s.on(Fact::Interrupt {
        signal: Interrupt::Term,
        again: false,
    });
    assert!(finish(&c).is_none());
    let c = s.on(Fact::Interrupt {
        signal: Interrupt::Term,
        again: true,
    });
    for (w, t) in [("w1", 0), ("w2", 1)] {
        assert!(has(&c, |c| matches!(c,
            Command::KillGroup { worker, task, attempt: 1, .. } if worker == w && *task == t)));
        assert!(has(&c, |c| matches!(c,
            Command::StopWorker { worker, reason: ShutdownReason::SessionEnd } if worker == w)));
    }
    assert_eq!(ended(&c, "a", 1), [EndReason::Interrupted]);
    assert_eq!(finish(&c), Some(SessionState::Interrupted));
    assert_eq!(s.e.interrupted_by(), Some(Interrupt::Term));
    assert!(decisions(&c).is_empty());
}

// ---- races ----

#[test]
fn a_first_race_is_won_by_the_first_success_and_its_losers_are_stopped() {
    let text = r#"
name = "p"
[[task]]
id = "a"
run = "true"
[[task]]
id = "b"
run = "true"
[[task]]
id = "d"
run = "true"
after = ["r"]
[[race]]
id = "r"
tasks = ["a", "b"]
pick = "first"
"#;
    let mut s = Sim::new(text, 2);
    s.start();
    s.register_all();
    let (wa, wb) = (s.holder("a"), s.holder("b"));
    s.begin(&wa, "a", 1);
    let c = s.begin(&wb, "b", 1);
    assert!(
        s.assigns(&c).is_empty(),
        "nothing is queued in a plan with races"
    );
    let c = s.exit(&wa, "a", 1, 0);
    let b = s.ix("b");
    assert!(has(&c, |c| matches!(c,
        Command::Kill { worker, task, attempt: 1, reason: KillReason::Lost }
            if *worker == wb && *task == b)));
    assert_eq!(
        s.decides(&c),
        [
            decided("a", TaskState::Succeeded, 1, Some(&wa)),
            decided("b", TaskState::Lost, 1, None),
        ]
    );
    assert!(has(&c, |c| matches!(c,
        Command::DecideRace { race: 0, winner: Some(0), losers, .. } if *losers == [b])));
    assert_eq!(s.e.decided(b), Some(TaskState::Lost));
    assert_eq!(s.assigns(&c).len(), 1);
    assert_eq!(s.assigns(&c)[0].1, "d");
    let c = s.exit_rec(killed("b", 1, &wb, KillReason::Lost), None);
    assert!(decisions(&c).is_empty());
    assert_eq!(stale_results(&c).len(), 1);
    let wd = s.holder("d");
    let c = s.run(&wd, "d", 1, 0);
    assert_eq!(
        finish(&c),
        Some(SessionState::Succeeded),
        "a race loser is not a failure"
    );
}

#[test]
fn a_best_race_waits_for_every_member_and_the_highest_score_wins() {
    let text = r#"
name = "p"
[[task]]
id = "a"
run = "true"
[[task]]
id = "b"
run = "true"
[[task]]
id = "c"
run = "true"
[[race]]
id = "r"
tasks = ["a", "b", "c"]
pick = "best"
score = "/score"
"#;
    let mut s = Sim::new(text, 3);
    s.start();
    s.register_all();
    let mut last = Vec::new();
    for (t, score) in [("a", 1.0), ("b", 3.0), ("c", 2.0)] {
        let w = s.holder(t);
        s.begin(&w, t, 1);
        last = s.exit_rec(record(t, 1, &w, Some(0)), Some(json!({ "score": score })));
        if t != "c" {
            assert!(
                decisions(&last).is_empty(),
                "held until the race is decided"
            );
        }
    }
    let d = decisions(&last);
    let state = |t: TaskIx| d.iter().find(|d| d.task == t).map(|d| (d.state, d.marks));
    assert_eq!(state(1), Some((TaskState::Succeeded, true)));
    assert_eq!(state(0), Some((TaskState::Lost, false)));
    assert_eq!(state(2), Some((TaskState::Lost, false)));
    assert!(has(&last, |c| matches!(c,
        Command::DecideRace { winner: Some(1), score: Some(sc), losers, .. }
            if *sc == 3.0 && *losers == [0, 2])));
    assert_eq!(finish(&last), Some(SessionState::Succeeded));
    assert_eq!(s.e.counts()[&TaskState::Lost], 2);
}

// ---- signals ----

const SIGNALLED: &str = r#"
name = "p"
[[task]]
id = "a"
run = "true"
[[task]]
id = "b"
run = "true"
after = ["signal:go"]
"#;

#[test]
fn a_task_after_a_signal_starts_once_the_signal_is_raised() {
    let mut s = Sim::new(SIGNALLED, 2);
    s.start();
    let c = s.register_all();
    assert_eq!(s.assigns(&c), [assigned("w1", "a", 1)]);
    assert_eq!(s.e.open_signals(), ["go"]);
    assert!(
        {
            let c = s.on(Fact::Tick);
            s.assigns(&c)
        }
        .is_empty()
    );
    let c = s.on(Fact::Primitives(PrimScan {
        raised: vec!["go".into()],
        ..Default::default()
    }));
    assert!(has(&c, |c| matches!(c,
        Command::Journal(Event::SignalRaised { signal }) if signal == "go")));
    assert_eq!(s.assigns(&c), [assigned("w2", "b", 1)]);
    assert!(s.e.open_signals().is_empty());
}

#[test]
fn a_stall_skips_its_waiters_only_after_a_rescan_and_a_fresh_look() {
    let mut s = Sim::new(SIGNALLED, 1);
    s.start();
    s.register("w1");
    let c = s.run("w1", "a", 1, 0);
    assert!(has(&c, |c| matches!(c, Command::Rescan)));
    assert_eq!(s.e.decided(1), None, "one look is not enough");
    let c = s.advance(1000);
    assert!(decisions(&c).is_empty());
    assert!(!has(&c, |c| matches!(c, Command::Rescan)));
    let c = s.on(Fact::Primitives(PrimScan::default()));
    assert!(has(&c, |c| matches!(c,
        Command::Journal(Event::SignalNeverRaised { signal }) if signal == "go")));
    assert_eq!(s.decides(&c), [decided("b", TaskState::Skipped, 0, None)]);
    assert_eq!(
        decisions(&c)[0].reason.as_deref(),
        Some("signal go was never raised")
    );
    assert_eq!(finish(&c), Some(SessionState::Failed));
}

#[test]
fn a_signal_raised_before_the_fresh_look_saves_its_waiters() {
    let mut s = Sim::new(SIGNALLED, 1);
    s.start();
    s.register("w1");
    let c = s.run("w1", "a", 1, 0);
    assert!(has(&c, |c| matches!(c, Command::Rescan)));
    let c = s.on(Fact::Primitives(PrimScan {
        raised: vec!["go".into()],
        ..Default::default()
    }));
    assert!(decisions(&c).is_empty());
    assert_eq!(s.assigns(&c), [assigned("w1", "b", 1)]);
    let c = s.run("w1", "b", 1, 0);
    assert_eq!(finish(&c), Some(SessionState::Succeeded));
}

// ---- restore ----

fn found_worker(id: &str, alive: bool) -> FoundWorker {
    FoundWorker {
        id: id.into(),
        alive,
        registered: true,
        ..Default::default()
    }
}

#[test]
fn on_resume_an_attempt_lost_with_its_worker_is_refused_and_a_later_attempt_decides() {
    let mut s = Sim::with(ONE, Config::new(1, Duration::from_secs(10)));
    s.start();
    s.register("w1");
    s.begin("w1", "a", 1);
    s.advance(10_001);
    assert_eq!(
        {
            let c = s.register("w2");
            s.assigns(&c)
        },
        [assigned("w2", "a", 2)]
    );
    // The orchestrator dies. w1 had written a success for attempt 1 before it died; w2
    // never claimed attempt 2 (the shell took it back).
    let found = Found {
        workers: vec![
            FoundWorker {
                claimed: vec![("a".into(), 1)],
                started: vec![started("a", 1, "w1", 4001)],
                stopped: true,
                ..found_worker("w1", false)
            },
            FoundWorker {
                withdrawn: vec![("a".into(), 2)],
                ..found_worker("w2", true)
            },
        ],
        exits: vec![("a".into(), 1, exit_of(record("a", 1, "w1", Some(0)), None))],
        outcomes: Vec::new(),
    };
    let (mut r, c) = s.resume(found);
    assert_eq!(stale_results(&c), [("a".into(), 1, Some("w1".into()))]);
    assert!(decisions(&c).is_empty());
    assert!(has(&c, |c| matches!(c,
        Command::Journal(Event::TaskWithdrawn { task, attempt: 2, worker })
            if task == "a" && worker == "w2")));
    assert!(!has(&c, |c| matches!(
        c,
        Command::KillGroup { attempt: 1, .. }
    )));
    assert_eq!(r.assigns(&c), [assigned("w2", "a", 2)]);
    let c = r.run("w2", "a", 2, 0);
    assert_eq!(
        r.decides(&c),
        [decided("a", TaskState::Succeeded, 2, Some("w2"))]
    );
    assert_eq!(finish(&c), Some(SessionState::Succeeded));
}

#[test]
fn on_resume_a_reassigned_attempt_s_exit_is_refused_and_a_later_attempt_decides() {
    let mut s = Sim::new(ONE, 1);
    s.start();
    s.register("w1");
    s.begin("w1", "a", 1);
    s.control("r1", ControlAction::Reassign, Some("a"));
    assert_eq!(
        {
            let c = s.register("w2");
            s.assigns(&c)
        },
        [assigned("w2", "a", 2)]
    );
    let found = Found {
        workers: vec![
            FoundWorker {
                claimed: vec![("a".into(), 1)],
                started: vec![started("a", 1, "w1", 4001)],
                ..found_worker("w1", true)
            },
            FoundWorker {
                withdrawn: vec![("a".into(), 2)],
                ..found_worker("w2", true)
            },
        ],
        exits: vec![("a".into(), 1, exit_of(record("a", 1, "w1", Some(0)), None))],
        outcomes: Vec::new(),
    };
    let (mut r, c) = s.resume(found);
    assert_eq!(stale_results(&c), [("a".into(), 1, Some("w1".into()))]);
    assert!(decisions(&c).is_empty());
    let asg = r.assigns(&c);
    assert_eq!(asg.len(), 1);
    assert_eq!((asg[0].1.as_str(), asg[0].2), ("a", 2));
    let w = asg[0].0.clone();
    let c = r.run(&w, "a", 2, 0);
    assert_eq!(
        r.decides(&c),
        [decided("a", TaskState::Succeeded, 2, Some(&w))]
    );
}

#[test]
fn on_resume_a_fence_holder_whose_worker_died_is_killed_by_its_process_and_reassigned() {
    let mut s = Sim::new(ONE, 1);
    s.start();
    s.register("w1");
    s.begin("w1", "a", 1);
    let st = started("a", 1, "w1", 4242);
    let found = Found {
        workers: vec![FoundWorker {
            claimed: vec![("a".into(), 1)],
            started: vec![st.clone()],
            ..found_worker("w1", false)
        }],
        ..Default::default()
    };
    let (mut r, c) = s.resume(found);
    let process = Some(ProcessId {
        pgid: 4242,
        proc_start: st.proc_start,
        boot_id: st.boot_id.clone(),
    });
    assert!(has(&c, |c| matches!(c,
        Command::KillGroup { worker, task: 0, attempt: 1, process: p }
            if worker == "w1" && *p == process)));
    assert_eq!(ended(&c, "a", 1), [EndReason::WorkerLost]);
    assert!(decisions(&c).is_empty());
    assert_eq!(spawns(&c), ["w2"], "a fresh worker id");
    assert_eq!(
        {
            let c = r.register("w2");
            r.assigns(&c)
        },
        [assigned("w2", "a", 2)]
    );
    let c = r.run("w2", "a", 2, 0);
    assert_eq!(
        r.decides(&c),
        [decided("a", TaskState::Succeeded, 2, Some("w2"))]
    );
}

#[test]
fn on_resume_an_adopted_worker_running_the_fence_attempt_is_busy_and_its_exit_accepted() {
    let mut s = Sim::new(ONE, 1);
    s.start();
    s.register("w1");
    s.begin("w1", "a", 1);
    let found = Found {
        workers: vec![FoundWorker {
            claimed: vec![("a".into(), 1)],
            started: vec![started("a", 1, "w1", 4001)],
            ..found_worker("w1", true)
        }],
        ..Default::default()
    };
    let (mut r, c) = s.resume(found);
    assert!(has(&c, |c| matches!(c,
        Command::Journal(Event::TaskAdopted { task, attempt: 1, worker })
            if task == "a" && worker == "w1")));
    assert_eq!(
        r.e.worker_state("w1"),
        Some(WorkerState::Busy {
            task: 0,
            attempt: 1
        })
    );
    assert!(!has(&c, |c| matches!(
        c,
        Command::Kill { .. } | Command::KillGroup { .. } | Command::Assign { .. }
    )));
    assert!(spawns(&c).is_empty());
    let c = r.exit("w1", "a", 1, 0);
    assert_eq!(
        r.decides(&c),
        [decided("a", TaskState::Succeeded, 1, Some("w1"))]
    );
    assert_eq!(finish(&c), Some(SessionState::Succeeded));
}

#[test]
fn on_resume_the_fence_holder_s_exit_found_on_disk_decides_the_task() {
    let mut s = Sim::new(ONE, 1);
    s.start();
    s.register("w1");
    s.begin("w1", "a", 1);
    let found = Found {
        workers: vec![FoundWorker {
            claimed: vec![("a".into(), 1)],
            started: vec![started("a", 1, "w1", 4001)],
            ..found_worker("w1", false)
        }],
        exits: vec![("a".into(), 1, exit_of(record("a", 1, "w1", Some(3)), None))],
        ..Default::default()
    };
    let (r, c) = s.resume(found);
    assert_eq!(
        r.decides(&c),
        [decided("a", TaskState::Failed, 1, Some("w1"))]
    );
    assert!(stale_results(&c).is_empty());
    assert_eq!(finish(&c), Some(SessionState::Failed));
}

#[test]
fn on_resume_a_pending_retry_waits_out_the_rest_of_its_backoff() {
    let text = r#"
name = "p"
[[task]]
id = "a"
run = "false"
retries = 1
backoff = { initial = "10s", jitter = 0 }
"#;
    let mut s = Sim::new(text, 1);
    s.start();
    s.register("w1");
    s.run("w1", "a", 1, 1);
    s.at += Duration::from_secs(3);
    let (mut r, c) = s.resume(Found {
        workers: vec![found_worker("w1", true)],
        ..Default::default()
    });
    assert!(r.assigns(&c).is_empty(), "7s of the backoff are left");
    assert!(
        {
            let c = r.advance(6999);
            r.assigns(&c)
        }
        .is_empty()
    );
    assert_eq!(
        {
            let c = r.advance(1);
            r.assigns(&c)
        },
        [assigned("w1", "a", 2)]
    );
    let c = r.run("w1", "a", 2, 1);
    assert!(
        !has(&c, |c| matches!(c, Command::ScheduleRetry { .. })),
        "the retry used before the crash counts"
    );
    assert_eq!(
        r.decides(&c),
        [decided("a", TaskState::Failed, 2, Some("w1"))]
    );
}

// ---- regressions: engine bugs the model found ----

const TWO: &str = r#"
name = "p"
[[task]]
id = "a"
run = "true"
[[task]]
id = "b"
run = "true"
"#;

/// The fence holder's exit found on disk at resume is accepted and its adopted worker is
/// free for the next task (it used to be made busy with the ended attempt again, for
/// ever).
#[test]
fn on_resume_a_worker_whose_exit_was_accepted_from_disk_takes_the_next_task() {
    let mut s = Sim::new(TWO, 1);
    s.start();
    s.register("w1");
    let found = Found {
        workers: vec![FoundWorker {
            claimed: vec![("a".into(), 1)],
            started: vec![started("a", 1, "w1", 4001)],
            ..found_worker("w1", true)
        }],
        exits: vec![("a".into(), 1, exit_of(record("a", 1, "w1", Some(0)), None))],
        ..Default::default()
    };
    let (r, c) = s.resume(found);
    assert_eq!(
        r.decides(&c),
        [decided("a", TaskState::Succeeded, 1, Some("w1"))]
    );
    assert_eq!(
        r.assigns(&c),
        [assigned("w1", "b", 1)],
        "w1 is free: b goes to it"
    );
    assert!(!has(&c, |c| matches!(
        c,
        Command::Kill { .. } | Command::KillGroup { .. }
    )));
}

/// A request waiting for queued assignments to be withdrawn is answered: nothing is
/// queued again meanwhile (two queued assignments used to be withdrawn and queued again
/// for ever).
#[test]
fn a_request_waiting_for_withdrawals_is_answered() {
    let text = r#"
name = "p"
[[task]]
id = "a"
run = "true"
[[task]]
id = "b"
run = "true"
[[task]]
id = "c"
run = "true"
[[task]]
id = "d"
run = "true"
"#;
    let mut s = Sim::new(text, 2);
    s.start();
    s.register_all();
    assert_eq!(
        {
            let c = s.begin("w1", "a", 1);
            s.assigns(&c)
        },
        [assigned("w1", "c", 1)]
    );
    assert_eq!(
        {
            let c = s.begin("w2", "b", 1);
            s.assigns(&c)
        },
        [assigned("w2", "d", 1)]
    );
    let c = s.control("r1", ControlAction::Reassign, Some("a"));
    assert_eq!(
        c.iter()
            .filter(|c| matches!(c, Command::Withdraw { .. }))
            .count(),
        2
    );
    let c = s.on(Fact::Withdrawn {
        worker: "w1".into(),
        task: "c".into(),
        attempt: 1,
        ok: true,
    });
    assert!(
        s.assigns(&c).is_empty(),
        "nothing is queued while the request waits"
    );
    let c = s.on(Fact::Withdrawn {
        worker: "w2".into(),
        task: "d".into(),
        attempt: 1,
        ok: true,
    });
    assert!(has(
        &c,
        |c| matches!(c, Command::Reply { id, ok: true, .. } if id == "r1")
    ));
}

/// The idle worker a withdrawal is for takes the task (it used to be stopped as excess
/// in the same pass, and a new worker spawned for the task).
#[test]
fn the_idle_worker_a_withdrawal_is_for_gets_the_task() {
    let mut s = Sim::new(THREE, 2);
    s.start();
    s.register_all();
    assert_eq!(
        {
            let c = s.begin("w1", "a", 1);
            s.assigns(&c)
        },
        [assigned("w1", "c", 1)]
    );
    let c = s.run("w2", "b", 1, 0);
    assert!(has(&c, |c| matches!(c, Command::Withdraw { task: 2, .. })));
    assert!(!has(
        &c,
        |c| matches!(c, Command::StopWorker { worker, .. } if worker == "w2")
    ));
    let c = s.on(Fact::Withdrawn {
        worker: "w1".into(),
        task: "c".into(),
        attempt: 1,
        ok: true,
    });
    assert!(spawns(&c).is_empty());
    assert_eq!(s.assigns(&c), [assigned("w2", "c", 1)]);
}

/// After a reassign, no more attempts run at once than the worker limit (the worker a
/// reassign adds used to keep its task while the old worker took new work).
#[test]
fn after_a_reassign_no_more_attempts_run_than_the_limit() {
    let mut s = Sim::new(THREE, 1);
    s.start();
    s.register("w1");
    s.control("r1", ControlAction::Reassign, Some("a"));
    assert_eq!(
        {
            let c = s.register("w2");
            s.assigns(&c)
        },
        [assigned("w2", "a", 2)]
    );
    s.exit_rec(killed("a", 1, "w1", KillReason::Reassigned), None);
    assert!(
        s.busy() <= 1,
        "{:?}",
        s.e.live_workers().collect::<Vec<_>>()
    );
}

/// A worker still starting when the orchestrator died registers with the new one and
/// gets work.
#[test]
fn on_resume_a_worker_still_starting_is_adopted_when_it_registers() {
    let mut s = Sim::new(ONE, 1);
    s.start();
    let (mut r, c) = s.resume(Found {
        workers: vec![FoundWorker {
            id: "w1".into(),
            alive: true,
            ..Default::default()
        }],
        ..Default::default()
    });
    let told = has(
        &c,
        |c| matches!(c, Command::StopWorker { worker, .. } if worker == "w1"),
    );
    let c = r.register("w1");
    let adopted = r.assigns(&c) == [assigned("w1", "a", 1)];
    assert!(told || adopted, "w1 is left alone");
}

/// Adopting every live worker at resume never runs more attempts than the limit.
#[test]
fn on_resume_no_more_workers_run_than_the_limit() {
    let mut s = Sim::new(THREE, 1);
    s.start();
    let (r, _) = s.resume(Found {
        workers: ["w1", "w2", "w3"]
            .iter()
            .map(|w| found_worker(w, true))
            .collect(),
        ..Default::default()
    });
    assert!(
        r.busy() <= 1,
        "{:?}",
        r.e.live_workers().collect::<Vec<_>>()
    );
}

/// A refused withdrawal (the worker claimed the task) is not asked again.
#[test]
fn a_refused_withdrawal_is_not_asked_again() {
    let (mut s, _) = queued_behind_w1();
    let c = s.on(Fact::Withdrawn {
        worker: "w1".into(),
        task: "c".into(),
        attempt: 1,
        ok: false,
    });
    assert!(!has(&c, |c| matches!(c, Command::Withdraw { .. })));
}

/// On resume each command is given once: the fence holder's exit found on disk is
/// retired once, a dead fence holder's group killed once.
#[test]
fn on_resume_each_command_is_given_once() {
    let st = started("a", 1, "w1", 4001);
    let mut s = Sim::new(ONE, 1);
    s.start();
    s.register("w1");
    let worker = FoundWorker {
        claimed: vec![("a".into(), 1)],
        started: vec![st],
        ..found_worker("w1", false)
    };
    let (_, c) = s.resume(Found {
        workers: vec![worker.clone()],
        exits: vec![("a".into(), 1, exit_of(record("a", 1, "w1", Some(0)), None))],
        ..Default::default()
    });
    assert_eq!(
        c.iter()
            .filter(|c| matches!(c, Command::Retire { .. }))
            .count(),
        1
    );
    assert_eq!(
        c.iter()
            .filter(|c| matches!(c, Command::KillGroup { .. }))
            .count(),
        0
    );
    let (_, c) = s.resume(Found {
        workers: vec![worker],
        ..Default::default()
    });
    assert_eq!(
        c.iter()
            .filter(|c| matches!(c, Command::KillGroup { .. }))
            .count(),
        1
    );
}
