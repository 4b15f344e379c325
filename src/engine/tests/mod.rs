//! Unit tests of the engine rules, one file per engine module (`dispatch.rs`,
//! `decide.rs`, `control.rs`, `prims.rs`, `restore.rs`), one test per rule. This file is
//! their harness: plans written as a short DAG (`dag`), a fake clock (a base `Instant`
//! plus an offset) and a tiny shell (`Sim`) that keeps the engine, records every command
//! and folds the journal into a `History` as the real shell does. The record builders and
//! `shell_events` are shared with the model (`model/`).

mod aux;
mod control;
mod decide;
mod dispatch;
mod drain;
mod freeze;
mod gates;
mod grow;
mod memory;
mod partial;
mod prims;
mod restore;
mod tokens;

use std::collections::BTreeSet;
use std::ops::Deref;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::*;
use crate::journal::{DeathCause, EndReason, History};
use crate::proto::{ExitRecord, ShutdownReason, Started};

// ---- plans and records, shared with the model ----

pub(super) fn plan(text: &str) -> Plan {
    Plan::parse("t.toml", text, Path::new("/tmp")).expect("a valid test plan")
}

/// One `[[task]]` table that runs `true`, after `after`, then `keys` (TOML lines).
pub(super) fn task_toml(id: &str, after: &[String], keys: &str) -> String {
    let after: Vec<String> = after.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        "[[task]]\nid = \"{id}\"\nrun = \"true\"\nafter = [{}]\n{keys}",
        after.join(", ")
    )
}

/// A plan named `p` whose tasks run `true`: `spec` lists them, comma-separated, each
/// `id` or `id after dep...` (`"a, b after a, c after signal:go"`). Anything else a
/// test needs (`[defaults]`, `[[race]]`) is appended to the text.
pub(super) fn dag(spec: &str) -> String {
    let mut s = String::from("name = \"p\"\n");
    for task in spec.split(',') {
        let mut words = task.split_whitespace();
        let id = words.next().expect("a task id");
        let after: Vec<String> = match words.next() {
            Some("after") => words.map(str::to_string).collect(),
            None => Vec::new(),
            Some(w) => panic!("`{w}` in `{task}`: expected `after`"),
        };
        s += &task_toml(id, &after, "");
    }
    s
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
        ended_on: None,
        spawn_error: None,
        result_error: None,
        has_result: false,
    }
}

/// The record of an attempt the orchestrator asked to stop.
pub(super) fn killed(task: &str, attempt: u32, worker: &str, by: KillReason) -> ExitRecord {
    ExitRecord {
        killed_by: Some(by.as_str().into()),
        ended_on: None,
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

// ---- the plans most tests use ----

const ONE: &str = "a";
const TWO: &str = "a, b";
const THREE: &str = "a, b, c";
const CHAIN: &str = "a, b after a";

/// The wall clock at the fake clock's base.
pub(super) const UNIX0: u64 = 1_700_000_000_000;

/// A lease long enough never to matter, for tests about something else.
const LONG: Duration = Duration::from_secs(3600);

/// A lease the tests run past.
const LEASE: Duration = Duration::from_secs(10);

// ---- the fake shell ----

/// The engine with a fake clock and the shell's bookkeeping.
struct Sim {
    e: Engine,
    cfg: Config,
    /// Task ids by index, for reading commands.
    ids: Rc<[String]>,
    t0: Instant,
    /// Time since `t0`.
    at: Duration,
    /// Every command so far, in order.
    log: Vec<Command>,
    history: History,
    spawned: Vec<String>,
    registered: BTreeSet<String>,
}

/// The commands of one fact, readable by task id.
struct Cmds {
    cmds: Vec<Command>,
    ids: Rc<[String]>,
}

impl Deref for Cmds {
    type Target = [Command];

    fn deref(&self) -> &[Command] {
        &self.cmds
    }
}

impl Cmds {
    /// `(worker, task id, attempt)` of every `Assign`.
    fn assigns(&self) -> Vec<(String, String, u32)> {
        self.iter()
            .filter_map(|c| match c {
                Command::Assign {
                    worker,
                    task,
                    attempt,
                    ..
                } => Some((worker.clone(), self.ids[*task].clone(), *attempt)),
                _ => None,
            })
            .collect()
    }

    /// Every `Decide`, as `task: state[, attempt n][ on worker]`.
    fn decides(&self) -> Vec<String> {
        decisions(self)
            .into_iter()
            .map(|d| {
                let mut s = format!("{}: {}", self.ids[d.task], d.state.as_str());
                if d.attempt > 0 {
                    s += &format!(", attempt {}", d.attempt);
                }
                if let Some(w) = &d.worker {
                    s += &format!(" on {w}");
                }
                s
            })
            .collect()
    }
}

impl Sim {
    /// `spec` as for [`dag`], `workers` at once, a lease that never matters.
    fn new(spec: &str, workers: usize) -> Sim {
        Sim::with(&dag(spec), Config::new(workers, LONG))
    }

    /// As [`Sim::new`], with `more` TOML after the tasks (`[defaults]`, `[[race]]`).
    fn with_more(spec: &str, more: &str, workers: usize) -> Sim {
        Sim::with(&(dag(spec) + more), Config::new(workers, LONG))
    }

    /// A plan's full text and a config.
    fn with(text: &str, cfg: Config) -> Sim {
        Sim::over(
            Engine::new(plan(text), cfg.clone(), 1, Instant::now()),
            cfg,
            History::default(),
        )
    }

    fn over(e: Engine, cfg: Config, history: History) -> Sim {
        let ids = e.plan().tasks.iter().map(|t| t.id.clone()).collect();
        Sim {
            e,
            cfg,
            ids,
            t0: Instant::now(),
            at: Duration::ZERO,
            log: Vec::new(),
            history,
            spawned: Vec::new(),
            registered: BTreeSet::new(),
        }
    }

    /// Started, with every worker it spawned registered.
    fn ready(spec: &str, workers: usize) -> Sim {
        let mut s = Sim::new(spec, workers);
        s.start();
        s.register_all();
        s
    }

    /// One task `a`, one worker: `w1` runs attempt 1 (started), under `lease`.
    fn running_a(lease: Duration) -> Sim {
        let mut s = Sim::with(&dag(ONE), Config::new(1, lease));
        s.start();
        s.register("w1");
        s.begin("w1", "a", 1);
        s
    }

    /// A new orchestrator over this one's journal (the old one crashed), told what is on
    /// disk.
    fn resume(&self, found: Found) -> (Sim, Cmds) {
        let e = Engine::restore(
            self.e.plan().clone(),
            self.cfg.clone(),
            &self.history,
            1,
            self.now(),
            self.unix_ms(),
        );
        let mut s = Sim::over(e, self.cfg.clone(), self.history.clone());
        (s.t0, s.at) = (self.t0, self.at);
        let c = s.on(Fact::Recovered(found));
        (s, c)
    }

    fn now(&self) -> Instant {
        self.t0 + self.at
    }

    fn unix_ms(&self) -> u64 {
        UNIX0 + self.at.as_millis() as u64
    }

    fn on(&mut self, fact: Fact) -> Cmds {
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
            if let Command::SavePlan = c {
                self.ids = self.e.plan().tasks.iter().map(|t| t.id.clone()).collect();
            }
        }
        self.log.extend(cmds.iter().cloned());
        Cmds {
            cmds,
            ids: self.ids.clone(),
        }
    }

    fn start(&mut self) -> Cmds {
        self.on(Fact::Start)
    }

    fn register(&mut self, w: &str) -> Cmds {
        self.registered.insert(w.to_string());
        self.on(Fact::WorkerRegistered {
            worker: w.into(),
            pid: 1000,
            host: "h".into(),
            terminal: None,
        })
    }

    /// Register every spawned worker that has not registered yet.
    fn register_all(&mut self) -> Cmds {
        let todo: Vec<String> = self
            .spawned
            .iter()
            .filter(|w| !self.registered.contains(*w))
            .cloned()
            .collect();
        let cmds = todo.iter().flat_map(|w| self.register(w).cmds).collect();
        Cmds {
            cmds,
            ids: self.ids.clone(),
        }
    }

    fn advance(&mut self, ms: u64) -> Cmds {
        self.at += Duration::from_millis(ms);
        self.on(Fact::Tick)
    }

    fn begin(&mut self, w: &str, task: &str, attempt: u32) -> Cmds {
        self.on(Fact::AttemptStarted(started(
            task,
            attempt,
            w,
            4000 + attempt,
        )))
    }

    fn exit_rec(&mut self, rec: ExitRecord, result: Option<serde_json::Value>) -> Cmds {
        self.on(Fact::AttemptExited {
            worker: rec.worker.clone(),
            task: rec.task.clone(),
            attempt: rec.attempt,
            exit: exit_of(rec, result),
        })
    }

    fn exit(&mut self, w: &str, task: &str, attempt: u32, code: i32) -> Cmds {
        self.exit_rec(record(task, attempt, w, Some(code)), None)
    }

    /// Start and end an attempt; the commands of both.
    fn run(&mut self, w: &str, task: &str, attempt: u32, code: i32) -> Cmds {
        let mut c = self.begin(w, task, attempt);
        c.cmds.extend(self.exit(w, task, attempt, code).cmds);
        c
    }

    fn control(&mut self, id: &str, action: ControlAction, task: Option<&str>) -> Cmds {
        self.on(Fact::Control {
            id: id.into(),
            action,
            task: task.map(str::to_string),
        })
    }

    /// The shell's answer to a `Withdraw`: `ok` when the assignment was taken back.
    fn withdrawn(&mut self, w: &str, task: &str, attempt: u32, ok: bool) -> Cmds {
        self.on(Fact::Withdrawn {
            worker: w.into(),
            task: task.into(),
            attempt,
            ok,
        })
    }

    fn died(&mut self, w: &str) -> Cmds {
        self.on(Fact::WorkerDied {
            worker: w.into(),
            how: DeathCause::Died,
            exits: Vec::new(),
        })
    }

    fn interrupt(&mut self, signal: Interrupt, again: bool) -> Cmds {
        self.on(Fact::Interrupt { signal, again })
    }

    fn ix(&self, id: &str) -> TaskIx {
        self.e.task_index(id).expect("a task of the plan")
    }

    /// The worker running (or holding the fence of) task `id`.
    fn holder(&self, id: &str) -> String {
        self.e
            .fence(self.ix(id))
            .map(|(_, w)| w.to_string())
            .expect("the task holds a fence")
    }

    /// The task id and attempt worker `w` is busy with.
    fn runs(&self, w: &str) -> Option<(&str, u32)> {
        match self.e.worker_state(w)? {
            WorkerState::Busy { task, attempt } => Some((self.ids[task].as_str(), attempt)),
            _ => None,
        }
    }

    fn busy(&self) -> usize {
        self.e
            .live_workers()
            .filter(|(_, s)| matches!(s, WorkerState::Busy { .. }))
            .count()
    }

    /// Workers running their task's current attempt (the fence holders).
    fn running_current(&self) -> usize {
        self.e
            .live_workers()
            .filter(|(w, s)| match s {
                WorkerState::Busy { task, attempt } => self.e.fence(*task) == Some((*attempt, w)),
                _ => false,
            })
            .count()
    }
}

// ---- reading commands ----

/// An expected `Assign`: (worker, task id, attempt).
fn assigned(w: &str, t: &str, n: u32) -> (String, String, u32) {
    (w.to_string(), t.to_string(), n)
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

/// The first reply to a request: whether it was granted, and what it said.
fn reply(c: &[Command]) -> Option<(bool, String)> {
    c.iter().find_map(|c| match c {
        Command::Reply { ok, message, .. } => Some((*ok, message.clone())),
        _ => None,
    })
}

fn has(cmds: &[Command], f: impl Fn(&Command) -> bool) -> bool {
    cmds.iter().any(f)
}

fn count(cmds: &[Command], f: impl Fn(&Command) -> bool) -> usize {
    cmds.iter().filter(|c| f(c)).count()
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

// ---- what the shell finds on disk at resume ----

fn found_worker(id: &str, alive: bool) -> FoundWorker {
    FoundWorker {
        id: id.into(),
        alive,
        registered: true,
        ..Default::default()
    }
}

/// A registered worker that claimed and started attempt `n` of `a`.
fn found_running_a(id: &str, n: u32, alive: bool) -> FoundWorker {
    FoundWorker {
        claimed: vec![("a".into(), n)],
        started: vec![started("a", n, id, 4000 + n)],
        ..found_worker(id, alive)
    }
}

/// The exit of attempt `n` of `task` on disk.
fn found_exit(task: &str, n: u32, w: &str, code: i32) -> (String, u32, Exit) {
    (
        task.into(),
        n,
        exit_of(record(task, n, w, Some(code)), None),
    )
}
