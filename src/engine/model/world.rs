//! The world around the engine in the model, and the shell between them: facts fed in
//! order until the engine and the shell settle, commands carried out as the real shell
//! does (`orchestrator/effects.rs`), and the world's moves (a worker registers, claims,
//! starts, exits, dies or stalls; time passes; a person reassigns; the orchestrator
//! restarts from its journal and what is on disk; the calm phase). A person's additions
//! and stops are in `grow.rs`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use super::{Act, SimWorker, Spec, Stats, World};
use crate::engine::tests::{UNIX0, exit_of, killed, record, shell_events, started};
use crate::engine::*;
use crate::journal::{DeathCause, EndReason, History};
use crate::proto::{AuxKind, ExitRecord};

const LEASE_MS: u64 = 10_000;
/// One "time passes" step: two in a row without a heartbeat are past the lease.
const STEP_MS: u64 = 6_000;

impl World {
    pub(super) fn new(spec: &Spec, trace: bool) -> World {
        let plan = spec.plan();
        let cfg = Config {
            max_spawn_failures: 1000,
            ..Config::new(spec.workers, Duration::from_millis(LEASE_MS))
        };
        let mut w = World {
            spec: spec.clone(),
            e: Engine::new(plan.clone(), cfg.clone(), 1, Instant::now()),
            plan,
            cfg,
            t0: Instant::now(),
            at: 0,
            history: History::default(),
            workers: BTreeMap::new(),
            kills: BTreeMap::new(),
            exits: BTreeMap::new(),
            facts: VecDeque::new(),
            decided: BTreeMap::new(),
            current: BTreeMap::new(),
            accepted: BTreeMap::new(),
            accepted_ever: BTreeSet::new(),
            retries_used: BTreeMap::new(),
            refused: BTreeSet::new(),
            given: BTreeSet::new(),
            began: BTreeSet::new(),
            unseen_at_finish: BTreeSet::new(),
            cleanup_started: BTreeMap::new(),
            cleanup_ended: BTreeMap::new(),
            aux_assigned: BTreeSet::new(),
            finished: None,
            controls: 0,
            unanswered: 0,
            adding: None,
            batches: 0,
            stats: Stats::default(),
            trace,
        };
        // The shell journals the plan's tasks before the engine starts.
        let ids = w.plan.tasks.iter().map(|t| t.id.clone()).collect();
        w.history.apply(&Event::TasksAdded { tasks: ids });
        w.feed(Fact::Start);
        w
    }

    fn now(&self) -> Instant {
        self.t0 + Duration::from_millis(self.at)
    }

    pub(super) fn id(&self, t: TaskIx) -> String {
        self.plan.tasks[t].id.clone()
    }

    pub(super) fn feed(&mut self, f: Fact) {
        self.facts.push_back(f);
        let mut n = 0;
        loop {
            while let Some(f) = self.facts.pop_front() {
                n += 1;
                assert!(n < 10_000, "the engine and the shell never settle");
                if self.trace {
                    eprintln!("  @{} {}", self.at, fact_line(&f));
                }
                self.count_ignored(&f);
                self.batches += 1;
                let cmds = self.e.on(f, self.now());
                for c in cmds {
                    if self.trace {
                        match &c {
                            Command::Decide(d) => eprintln!(
                                "      Decide {} {:?} attempt {} worker {:?}",
                                self.id(d.task),
                                d.state,
                                d.attempt,
                                d.worker
                            ),
                            c => eprintln!("      {c:?}"),
                        }
                    }
                    self.carry(c);
                }
            }
            if !self.leave_stopped() {
                break;
            }
        }
        self.check_step();
    }

    /// A cleanup's exit read once its run was judged (read twice, or after its worker
    /// was declared lost).
    fn count_ignored(&mut self, f: &Fact) {
        let exits: Vec<(&String, u32)> = match f {
            Fact::AttemptExited { task, attempt, .. } => vec![(task, *attempt)],
            Fact::WorkerDied { exits, .. } => exits.iter().map(|(t, a, _)| (t, *a)).collect(),
            _ => Vec::new(),
        };
        for (name, attempt) in exits {
            if let Some((owner, AuxKind::Cleanup)) = AuxKind::parse_job(name)
                && self
                    .cleanup_ended
                    .contains_key(&(owner.to_string(), attempt))
            {
                self.stats.cleanup_exits_ignored += 1;
            }
        }
    }

    /// Workers told to stop leave once they run nothing (the shell then reads the rest of
    /// their journal and sees the process go).
    fn leave_stopped(&mut self) -> bool {
        let leaving: Vec<String> = self
            .workers
            .iter()
            .filter(|(_, w)| {
                w.alive && w.stopped && !w.stuck && w.running.is_none() && w.assigned.is_empty()
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &leaving {
            let w = self.workers.get_mut(id).expect("a world worker");
            w.alive = false;
            self.facts.extend(w.unread.drain(..));
            self.facts.push_back(Fact::WorkerDied {
                worker: id.clone(),
                how: DeathCause::Exited,
                exits: Vec::new(),
            });
        }
        !leaving.is_empty()
    }

    /// Carry out one command, checking what it says.
    fn carry(&mut self, c: Command) {
        let unix = UNIX0 + self.at;
        for ev in shell_events(&self.plan, &c, &self.history, unix) {
            self.history.apply(&ev);
        }
        self.given_once(&c);
        match c {
            Command::Journal(ev) => self.observe(&ev),
            Command::SpawnWorker { worker } => {
                assert!(
                    !self.workers.contains_key(&worker),
                    "{worker} spawned twice"
                );
                self.workers.insert(
                    worker,
                    SimWorker {
                        alive: true,
                        ..Default::default()
                    },
                );
            }
            Command::Assign {
                worker,
                task,
                attempt,
                ..
            } => {
                let id = self.id(task);
                assert_eq!(
                    self.current.get(&id),
                    Some(&(attempt, worker.clone())),
                    "{id} attempt {attempt} published to {worker} without its task_assigned"
                );
                for &d in &self.spec.deps[task] {
                    assert_eq!(
                        self.decided.get(&self.id(d)),
                        Some(&TaskState::Succeeded),
                        "{id} assigned before its dependency t{d} succeeded"
                    );
                }
                assert!(
                    !self.decided.contains_key(&id),
                    "{id} assigned once decided"
                );
                assert!(
                    self.history.draining.is_none(),
                    "{id} assigned while the session stops"
                );
                let w = self
                    .workers
                    .get_mut(&worker)
                    .expect("assigned to a known worker");
                w.assigned.push((id, attempt));
            }
            Command::Withdraw {
                worker,
                task,
                attempt,
            } => self.withdraw(worker, self.id(task), attempt),
            Command::Retire {
                worker,
                task,
                attempt,
            } => {
                let id = self.id(task);
                if let Some(w) = self.workers.get_mut(&worker) {
                    w.claimed.retain(|a| *a != (id.clone(), attempt));
                }
            }
            Command::Kill {
                reason,
                worker,
                task,
                attempt,
            } => {
                let key = (worker, self.id(task), attempt);
                self.kills.insert(key, reason);
            }
            Command::KillGroup {
                worker,
                task,
                attempt,
                ..
            } => {
                let id = self.id(task);
                if let Some(w) = self.workers.get_mut(&worker)
                    && w.alive
                    && w.running == Some((id, attempt, true))
                {
                    w.group_killed = true;
                }
            }
            Command::StopWorker { worker, .. } => {
                if let Some(w) = self.workers.get_mut(&worker) {
                    w.stopped = true;
                }
            }
            Command::ScheduleRetry {
                task,
                failed_attempt,
                ..
            } => {
                let id = self.id(task);
                assert_eq!(
                    self.accepted.get(&id).map(|a| a.0),
                    Some(failed_attempt),
                    "{id}: a retry for an attempt whose exit was not just accepted"
                );
                *self.retries_used.entry(id).or_insert(0) += 1;
                self.stats.retries += 1;
            }
            Command::AssignAux {
                worker,
                job,
                attempt,
                seq,
            } => {
                let name = self.e.aux_name(job);
                let owner = self.id(job.owner);
                assert_eq!(job.kind, AuxKind::Cleanup, "{name}: only cleanups here");
                assert_eq!(
                    self.cleanup_started.get(&(owner.clone(), attempt)),
                    Some(&(worker.clone(), seq)),
                    "{name} run {attempt} published to {worker} (seq {seq}) without its \
                     cleanup_started"
                );
                assert!(
                    !self.cleanup_ended.contains_key(&(owner.clone(), attempt)),
                    "{name} run {attempt} published once ended"
                );
                assert!(
                    self.aux_assigned.insert((owner, attempt)),
                    "{name} run {attempt} published twice"
                );
                let w = self
                    .workers
                    .get_mut(&worker)
                    .expect("assigned to a known worker");
                w.assigned.push((name, attempt));
            }
            Command::RetireAux {
                worker,
                job,
                attempt,
            } => {
                let name = self.e.aux_name(job);
                if let Some(w) = self.workers.get_mut(&worker) {
                    w.claimed.retain(|a| *a != (name.clone(), attempt));
                }
            }
            Command::KillAux {
                reason,
                worker,
                job,
                attempt,
            } => {
                let key = (worker, self.e.aux_name(job), attempt);
                self.kills.insert(key, reason);
            }
            Command::KillAuxGroup {
                worker,
                job,
                attempt,
                ..
            } => {
                let name = self.e.aux_name(job);
                if let Some(w) = self.workers.get_mut(&worker)
                    && w.alive
                    && w.running == Some((name, attempt, true))
                {
                    w.group_killed = true;
                }
            }
            Command::Decide(d) => self.decision(&d),
            Command::Reply { id, ok, message } => {
                self.unanswered -= 1;
                self.answered(&id, ok, &message);
            }
            Command::SavePlan => self.plan_saved(),
            Command::Finish(s) => {
                assert!(self.finished.is_none(), "the session finished twice");
                let open: Vec<&(String, u32)> = self
                    .cleanup_started
                    .keys()
                    .filter(|k| !self.cleanup_ended.contains_key(*k))
                    .collect();
                assert!(
                    open.is_empty(),
                    "the session finished {s:?} while cleanups ran: {open:?}"
                );
                self.finished = Some(s);
                self.note_unseen_starts();
            }
            _ => {}
        }
    }

    /// The shell takes an assignment back unless the worker claimed it; then it reads
    /// the worker's journal, where the exit of the attempt before the claim is.
    fn withdraw(&mut self, worker: String, task: String, attempt: u32) {
        let key = (worker.clone(), task.clone(), attempt);
        assert!(
            !self.refused.contains(&key),
            "{key:?}: a refused withdrawal asked again"
        );
        let w = self.workers.get_mut(&worker).expect("a known worker");
        let before = w.assigned.len();
        w.assigned.retain(|a| (&a.0, a.1) != (&task, attempt));
        let ok = w.assigned.len() < before;
        let unread: Vec<Fact> = if ok {
            Vec::new()
        } else {
            w.unread.drain(..).collect()
        };
        self.facts.push_back(Fact::Withdrawn {
            worker,
            task,
            attempt,
            ok,
        });
        self.facts.extend(unread);
        if ok {
            self.stats.withdrawn += 1;
        } else {
            self.stats.withdraw_refused += 1;
            self.refused.insert(key);
        }
    }

    /// At the session's end: the starts still unread of attempts owed a cleanup, which
    /// only a worker the engine gave up on or told to stop (and no longer waits for)
    /// may hold: one that claimed an attempt before it was given up on and started it
    /// after.
    fn note_unseen_starts(&mut self) {
        for (id, w) in &self.workers {
            for f in &w.unread {
                if let Fact::AttemptStarted(st) = f
                    && let Some(t) = self.e.task_index(&st.task)
                    && self.spec.cleanup[t].is_some()
                {
                    assert!(
                        matches!(
                            self.e.worker_state(id),
                            Some(WorkerState::Gone | WorkerState::Stopping) | None
                        ),
                        "the session finished before reading the start of {} attempt {} on \
                         {id}, which it had not given up on",
                        st.task,
                        st.attempt
                    );
                    self.unseen_at_finish.insert((st.task.clone(), st.attempt));
                    self.stats.unseen_starts += 1;
                }
            }
        }
    }

    /// One orchestrator retires an attempt (or an auxiliary run) and kills its group
    /// once at most, and once more with the process its late start line names (the
    /// first kill, sent when its worker was given up on, may have come before the start).
    fn given_once(&mut self, c: &Command) {
        let (what, worker, name, attempt) = match c {
            Command::Retire {
                worker,
                task,
                attempt,
            } => ("retired", worker, self.id(*task), attempt),
            Command::KillGroup {
                worker,
                task,
                attempt,
                process: None,
            } => ("group-killed", worker, self.id(*task), attempt),
            Command::KillGroup {
                worker,
                task,
                attempt,
                process: Some(_),
            } => (
                "group-killed (process known)",
                worker,
                self.id(*task),
                attempt,
            ),
            Command::RetireAux {
                worker,
                job,
                attempt,
            } => ("retired", worker, self.e.aux_name(*job), attempt),
            Command::KillAuxGroup {
                worker,
                job,
                attempt,
                ..
            } => ("group-killed", worker, self.e.aux_name(*job), attempt),
            _ => return,
        };
        assert!(
            self.given
                .insert((what, worker.clone(), name.clone(), *attempt)),
            "{name} attempt {attempt} on {worker} {what} twice by one orchestrator"
        );
    }

    // ---- the world's moves ----

    /// Whether the shell follows this worker's journal now: busy (with a task or an
    /// auxiliary command), or given up on alive.
    fn followed(&self, id: &str) -> bool {
        matches!(
            self.e.worker_state(id),
            Some(WorkerState::Busy { .. } | WorkerState::Aux { .. } | WorkerState::Gone)
        )
    }

    fn pick(&self, i: u8, f: impl Fn(&SimWorker) -> bool) -> Option<String> {
        let c: Vec<&String> = self
            .workers
            .iter()
            .filter(|(_, w)| f(w))
            .map(|(id, _)| id)
            .collect();
        (!c.is_empty()).then(|| c[i as usize % c.len()].clone())
    }

    fn register(&mut self, id: &str) {
        self.workers.get_mut(id).expect("a world worker").registered = true;
        self.feed(Fact::WorkerRegistered {
            worker: id.into(),
            pid: 100,
            host: "h".into(),
            terminal: None,
        });
    }

    fn claim(&mut self, id: &str) {
        let w = self.workers.get_mut(id).expect("a world worker");
        let (task, attempt) = w.assigned.remove(0);
        if self.trace {
            eprintln!("    {id} claims {task}#{attempt}");
        }
        w.claimed.push((task.clone(), attempt));
        w.running = Some((task, attempt, false));
        w.group_killed = false;
    }

    fn begin(&mut self, id: &str) {
        let w = self.workers.get_mut(id).expect("a world worker");
        let Some((task, attempt, _)) = w.running.clone() else {
            return;
        };
        if self.trace {
            eprintln!("    {id} starts {task}#{attempt}");
        }
        w.running = Some((task.clone(), attempt, true));
        let st = started(&task, attempt, id, 5000 + w.started.len() as u32);
        w.started.push(st.clone());
        w.unread.push_back(Fact::AttemptStarted(st));
        if let Some(t) = self.e.task_index(&task) {
            if self.finished.is_none() {
                self.began.insert((task, attempt));
            } else if self.spec.cleanup[t].is_some() {
                // A worker given up on starts what it had claimed after the end: no
                // one is there to know.
                self.stats.unseen_starts += 1;
            }
        }
    }

    fn exit(&mut self, id: &str, ok: bool) {
        let w = self.workers.get_mut(id).expect("a world worker");
        let Some((task, attempt, true)) = w.running.take() else {
            return;
        };
        let rec = if w.group_killed {
            ExitRecord {
                signal: Some(9),
                ..record(&task, attempt, id, None)
            }
        } else if let Some(r) = self.kills.get(&(id.to_string(), task.clone(), attempt)) {
            killed(&task, attempt, id, *r)
        } else {
            record(&task, attempt, id, Some(if ok { 0 } else { 1 }))
        };
        w.group_killed = false;
        if self.trace {
            eprintln!(
                "    {id} ends {task}#{attempt}: code {:?} signal {:?}",
                rec.exit_code, rec.signal
            );
        }
        w.unread.push_back(Fact::AttemptExited {
            worker: id.into(),
            task: task.clone(),
            attempt,
            exit: exit_of(rec.clone(), None),
        });
        let old = self.exits.insert((task.clone(), attempt), rec);
        assert!(old.is_none(), "two exits of {task} attempt {attempt}");
    }

    /// The shell reads the next `n` lines of a worker's journal (fewer if there are
    /// fewer): the starts first, then the exits, as it feeds one look's lines.
    fn read(&mut self, id: &str, n: usize) {
        let w = self.workers.get_mut(id).expect("a world worker");
        let n = n.min(w.unread.len());
        let lines: Vec<Fact> = w.unread.drain(..n).collect();
        let (starts, rest): (Vec<Fact>, Vec<Fact>) = lines
            .into_iter()
            .partition(|f| matches!(f, Fact::AttemptStarted(_)));
        for f in starts.into_iter().chain(rest) {
            self.feed(f);
        }
    }

    fn kill(&mut self, id: &str, exits_with_death: bool) {
        if self.trace {
            eprintln!("    {id} dies");
        }
        let w = self.workers.get_mut(id).expect("a world worker");
        w.alive = false;
        w.running = None;
        let unread: Vec<Fact> = w.unread.drain(..).collect();
        let mut exits = Vec::new();
        for f in unread {
            match f {
                Fact::AttemptExited {
                    task,
                    attempt,
                    exit,
                    ..
                } if exits_with_death => exits.push((task, attempt, exit)),
                f => self.facts.push_back(f),
            }
        }
        self.feed(Fact::WorkerDied {
            worker: id.into(),
            how: DeathCause::Died,
            exits,
        });
    }

    fn time_passes(&mut self) {
        self.at += STEP_MS;
        let healthy: Vec<String> = self
            .workers
            .iter()
            .filter(|(_, w)| w.alive && w.registered && !w.stuck)
            .map(|(id, _)| id.clone())
            .collect();
        for id in healthy {
            let w = self.workers.get_mut(&id).expect("a world worker");
            w.heartbeat += 1;
            let counter = w.heartbeat;
            self.feed(Fact::Heartbeat {
                worker: id,
                counter,
            });
        }
        self.feed(Fact::Tick);
    }

    /// The orchestrator dies and a new one resumes from the journal and the disk; `late`:
    /// see [`Act::Restart`].
    fn restart(&mut self, late: bool) {
        self.stats.restarts += 1;
        // `plan.json` holds only tasks a `tasks_added` line vouches for (a resume would
        // drop the others): an addition saves its plan and journals it in one batch.
        assert_eq!(
            self.history.tasks_added,
            self.plan.tasks.len(),
            "plan.json and the tasks_added lines disagree"
        );
        self.given.clear();
        let mut found = Found::default();
        let exits_on_disk = self.exits.clone();
        let mut withdrawn_cleanups = 0;
        for (id, w) in self.workers.iter_mut() {
            // The new orchestrator reads the worker journals from disk, not the old tail:
            // what was there when it looked is gone, what came after it reads later.
            let after: VecDeque<Fact> = w
                .unread
                .drain(..)
                .filter(|f| late && w.alive && matches!(f, Fact::AttemptExited { .. }))
                .collect();
            w.unread = after;
            // A cleanup published and not claimed yet: taken back, it never ran, and the
            // engine publishes it again (after `aux_withdrawn`).
            for (name, attempt) in &w.assigned {
                if let Some((owner, _)) = AuxKind::parse_job(name) {
                    withdrawn_cleanups += 1;
                    self.aux_assigned.remove(&(owner.to_string(), *attempt));
                }
            }
            found.workers.push(FoundWorker {
                id: id.clone(),
                alive: w.alive,
                registered: w.registered,
                foreign: false,
                stopped: w.stopped,
                claimed: w.claimed.clone(),
                // The shell takes back every assignment not claimed, before the facts.
                withdrawn: std::mem::take(&mut w.assigned),
                ran: w
                    .started
                    .iter()
                    .map(|st| (st.task.clone(), st.attempt))
                    .collect(),
                started: w
                    .started
                    .iter()
                    .filter(|st| !exits_on_disk.contains_key(&(st.task.clone(), st.attempt)))
                    .cloned()
                    .collect(),
                // Its `exited` lines, but those appended after the scan.
                exited: exits_on_disk
                    .iter()
                    .filter(|(k, r)| {
                        r.worker == *id
                            && !w.unread.iter().any(|f| {
                                matches!(f, Fact::AttemptExited { task, attempt, .. }
                                    if (task, attempt) == (&k.0, &k.1))
                            })
                    })
                    .map(|(k, _)| k.clone())
                    .collect(),
            });
        }
        self.stats.cleanups_withdrawn += withdrawn_cleanups;
        // As the shell's scan: the fence attempt's exit and those of attempts taken away
        // and not refused yet, of undecided tasks.
        found.exits = self
            .exits
            .iter()
            .filter(|((t, a), _)| {
                self.history.tasks.get(t).is_some_and(|h| {
                    h.decided.is_none()
                        && h.attempt(*a).is_some_and(|ah| {
                            h.fence.as_ref().is_some_and(|f| f.0 == *a)
                                || (!ah.stale
                                    && matches!(
                                        ah.ended,
                                        None | Some(EndReason::WorkerLost | EndReason::Reassigned)
                                    ))
                        })
                })
            })
            .map(|((t, a), r)| (t.clone(), *a, exit_of(r.clone(), None)))
            .collect();
        // And the exits of auxiliary runs the journal shows handed out and not ended,
        // written by the worker that held them.
        for ((kind, owner, attempt), rec) in &self.history.aux {
            let name = kind.job(owner);
            if rec.end.is_none()
                && let Some(r) = self.exits.get(&(name.clone(), *attempt))
                && r.worker == rec.worker
            {
                found.exits.push((name, *attempt, exit_of(r.clone(), None)));
            }
        }
        found.outcomes = self.decided.iter().map(|(t, s)| (t.clone(), *s)).collect();
        // Withdrawn assignments are no one's any more (the engine journals it).
        self.e = Engine::restore(
            self.plan.clone(),
            self.cfg.clone(),
            &self.history,
            1,
            self.now(),
            UNIX0 + self.at,
        );
        self.feed(Fact::Recovered(found));
    }

    pub(super) fn step(&mut self, a: Act) {
        let healthy = |w: &SimWorker| w.alive && !w.stuck;
        match a {
            Act::Register(i) => {
                if let Some(id) = self.pick(i, |w| healthy(w) && !w.registered) {
                    self.register(&id);
                }
            }
            Act::Claim(i) => {
                if let Some(id) = self.pick(i, |w| healthy(w) && can_claim(w)) {
                    self.claim(&id);
                }
            }
            Act::Begin(i) => {
                let can = |w: &SimWorker| healthy(w) && matches!(w.running, Some((_, _, false)));
                if let Some(id) = self.pick(i, can) {
                    self.begin(&id);
                }
            }
            Act::Exit(i, ok, claim) => {
                let can = |w: &SimWorker| healthy(w) && matches!(w.running, Some((_, _, true)));
                if let Some(id) = self.pick(i, can) {
                    self.exit(&id, ok);
                    if claim && can_claim(&self.workers[&id]) {
                        self.claim(&id);
                    }
                    // A stopped worker leaves once its attempt ended.
                    self.feed(Fact::Tick);
                }
            }
            Act::Read(i, k) => {
                let ids: Vec<String> = self
                    .workers
                    .iter()
                    .filter(|(id, w)| !w.unread.is_empty() && self.followed(id))
                    .map(|(id, _)| id.clone())
                    .collect();
                if !ids.is_empty() {
                    let id = ids[i as usize % ids.len()].clone();
                    // Mostly one line; sometimes two or three at once.
                    let n = match k {
                        4 => 2,
                        5 => 3,
                        _ => 1,
                    };
                    self.read(&id, n);
                }
            }
            Act::Kill(i) => {
                if let Some(id) = self.pick(i, |w| w.alive) {
                    self.kill(&id, i % 2 == 1);
                }
            }
            Act::Stall(i) => {
                if let Some(id) = self.pick(i, |w| healthy(w) && w.registered) {
                    if self.trace {
                        eprintln!("    {id} is stuck");
                    }
                    self.workers.get_mut(&id).expect("a world worker").stuck = true;
                }
            }
            Act::Unstick(i) => {
                if let Some(id) = self.pick(i, |w| w.alive && w.stuck) {
                    if self.trace {
                        eprintln!("    {id} is unstuck");
                    }
                    self.workers.get_mut(&id).expect("a world worker").stuck = false;
                    self.feed(Fact::Tick);
                }
            }
            Act::Time => self.time_passes(),
            Act::Reassign(i) => {
                self.controls += 1;
                self.unanswered += 1;
                // Mostly a task that holds an assignment (others are refused).
                let held: Vec<&String> = self.current.keys().collect();
                let task = match i % 4 {
                    0 if !held.is_empty() => held[i as usize / 4 % held.len()].clone(),
                    _ => self.id(i as usize % self.spec.n()),
                };
                self.feed(Fact::Control {
                    id: format!("c{}", self.controls),
                    action: ControlAction::Reassign,
                    task: Some(task),
                });
            }
            Act::Restart(late) => self.restart(late),
            Act::Add(k) => self.add(k),
            Act::Stop(then_add) => self.stop(then_add),
        }
    }

    /// Nothing is killed, stalled or reassigned any more: every worker does its work and
    /// the shell reads everything; time passes only when nothing else moves.
    pub(super) fn calm(&mut self) {
        for _ in 0..2000 {
            if self.finished.is_some() {
                return;
            }
            let mut moved = false;
            let ids: Vec<String> = self.workers.keys().cloned().collect();
            for id in &ids {
                while !self.workers[id].unread.is_empty() && self.followed(id) {
                    self.read(id, 1);
                    moved = true;
                }
            }
            for id in &ids {
                let w = &self.workers[id];
                if !w.alive || w.stuck {
                    continue;
                }
                if !w.registered {
                    self.register(id);
                    moved = true;
                    continue;
                }
                match self.workers[id].running.clone() {
                    None if !w.assigned.is_empty() => self.claim(id),
                    Some((_, _, false)) => self.begin(id),
                    Some((task, attempt, true)) => {
                        // Some attempts fail, so retries and skips happen here too (and
                        // some cleanups fail).
                        let ok = match self.e.task_index(&task) {
                            Some(t) => !(t + attempt as usize).is_multiple_of(3),
                            None => !attempt.is_multiple_of(4),
                        };
                        self.exit(id, ok);
                    }
                    None => continue,
                }
                moved = true;
            }
            if !moved {
                self.time_passes();
            }
        }
    }
}

/// A compact line for a fact (exit records are long).
fn fact_line(f: &Fact) -> String {
    match f {
        Fact::AttemptExited {
            worker,
            task,
            attempt,
            exit: Exit::Record { record, .. },
        } => format!(
            "AttemptExited {{ {worker} {task}#{attempt} code {:?} killed_by {:?} }}",
            record.exit_code, record.killed_by
        ),
        Fact::AttemptStarted(st) => {
            format!(
                "AttemptStarted {{ {} {}#{} }}",
                st.worker, st.task, st.attempt
            )
        }
        Fact::Recovered(found) => format!(
            "Recovered {{ workers {:?}, exits {:?} }}",
            found
                .workers
                .iter()
                .map(|w| (&w.id, w.alive, w.stopped, &w.claimed, &w.withdrawn))
                .collect::<Vec<_>>(),
            found
                .exits
                .iter()
                .map(|(t, a, _)| (t, a))
                .collect::<Vec<_>>()
        ),
        Fact::Add { id, tasks } => format!(
            "Add {{ {id} {:?} }}",
            tasks
                .iter()
                .map(|t| (&t.id, &t.after, t.retries, t.cleanup.is_some()))
                .collect::<Vec<_>>()
        ),
        f => format!("{f:?}"),
    }
}

/// A registered worker not told to stop claims what was published to it once it runs
/// nothing.
fn can_claim(w: &SimWorker) -> bool {
    w.registered && w.running.is_none() && !w.assigned.is_empty()
}
