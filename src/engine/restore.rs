//! Rebuilding the engine after its orchestrator died: first from the journal (fences,
//! decisions, failures, retries, races, signals), then from what the shell found on disk
//! ([`Found`]): live workers are adopted, exits that happened meanwhile are accepted only
//! from the fence holder, attempts lost with their worker are reassigned, and every
//! attempt that is not the current one and may still run is stopped.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::aux::AuxRef;
use super::{Command, Config, Engine, Exit, Found, ProcessId, TaskIx, Worker, WorkerState};
use crate::journal::event::{EndReason, Event};
use crate::journal::history::{GateRecord, History};
use crate::plan::Plan;
use crate::proto::AuxKind;
use crate::proto::{ShutdownReason, Started, TaskState};

impl Engine {
    /// The engine of a session that ran before, as its journal tells it. `now_unix_ms`
    /// turns journalled retry times into deadlines on `now`'s clock.
    pub fn restore(
        plan: Plan,
        cfg: Config,
        history: &History,
        seq0: u64,
        now: Instant,
        now_unix_ms: u64,
    ) -> Engine {
        // A partial run's selection is in the journal (its tasks decided `excluded`),
        // never taken anew from the configuration.
        let cfg = Config {
            excluded: Vec::new(),
            ..cfg
        };
        let mut e = Engine::new(plan, cfg, seq0.max(history.max_seq.saturating_add(1)), now);
        for (id, _) in history.workers.iter() {
            e.next_worker = e.next_worker.max(number_after(id));
        }
        // Held for lack of memory until the shell's next look says otherwise.
        e.held = history.held.is_some();
        if history.frozen {
            e.phase = super::Phase::Frozen;
        }
        if history.draining.is_some() {
            e.phase = super::Phase::Draining;
        }
        // A finished session is taken over only to be rolled back: it stays finished
        // until the request.
        if history.finished
            && let Some(s) = history.ended
        {
            e.phase = super::Phase::Finished(s);
        }
        e.completed = history
            .succeeded_order
            .iter()
            .filter_map(|id| e.index.get(id).copied())
            .collect();
        if history.rolling_back {
            e.phase = super::Phase::RollingBack;
            e.rollback = Some(super::policy::Rollback {
                steps: history
                    .rollback
                    .iter()
                    .flatten()
                    .filter_map(|id| e.index.get(id).copied())
                    .collect(),
                unknown: None,
            });
        }
        e.restore_aux(history, now);
        // A pool's level is journalled on each change: a resume that finds it where the
        // journal left it says nothing again.
        e.levels = history
            .pools
            .iter()
            .map(|(pool, &(level, _))| (pool.clone(), level))
            .collect();
        let mut skipped = Vec::new();
        for t in 0..e.tasks.len() {
            let id = e.id(t);
            let Some(h) = history.tasks.get(&id) else {
                continue;
            };
            let task = &mut e.tasks[t];
            task.attempt = h.last_attempt;
            task.fence = h.fence.clone();
            task.failures = h.failures;
            task.reassigns = h.reassigns;
            task.taken = h
                .attempts
                .iter()
                .filter(|a| {
                    a.stale
                        || matches!(
                            a.ended,
                            Some(EndReason::Exited | EndReason::Failed | EndReason::TimedOut)
                        )
                })
                .filter_map(|a| a.worker.clone().map(|w| (a.attempt, w)))
                .collect();
            if let Some(s) = h.decided {
                skipped.extend(e.restore_decided(t, s));
                continue;
            }
            if task.fence.is_some() {
                e.sched.adopt_running(t);
            } else if let Some(at) = h.retry_at_unix_ms {
                e.sched.adopt_running(t);
                let left = Duration::from_millis(at.saturating_sub(now_unix_ms));
                e.set_retry(t, Some(now + left));
            }
        }
        for (k, race) in e.plan.races.clone().iter().enumerate() {
            if e.race_excluded(k) {
                e.races_done[k] = true;
                e.sched.succeed(e.graph.race_nodes()[k].index());
            } else if let Some(winner) = history.races.get(&race.id) {
                e.races_done[k] = true;
                let node = e.graph.race_nodes()[k].index();
                match winner {
                    Some(_) => {
                        e.sched.succeed(node);
                    }
                    None => skipped.extend(e.sched.fail(node)),
                }
            }
        }
        for (name, node) in e.graph.signals().to_vec() {
            let node = node.index();
            match history.signals.get(&name) {
                Some(true) => {
                    e.sched.succeed(node);
                }
                Some(false) => skipped.extend(e.sched.fail(node)),
                None => {}
            }
        }
        for g in 0..e.plan.gates.len() {
            let node = e.graph.gate_node_ix(g);
            let record = history.gates.get(&e.plan.gates[g].id).cloned();
            match &record {
                Some(r) if r.open() => {
                    e.sched.succeed(node);
                }
                Some(r) if r.refusal().is_some() => skipped.extend(e.sched.fail(node)),
                _ => {}
            }
            e.gate_states[g] = record;
        }
        e.restore_checks();
        // A selection journalled whole but not decided whole (a crash in between): what
        // is left is decided at the start, as it would have been.
        if !history.selection.is_empty() {
            let mut excluded = vec![None; e.tasks.len()];
            for (id, why) in &history.selection {
                if let Some(&t) = e.index.get(id)
                    && e.tasks[t].decided.is_none()
                {
                    excluded[t] = Some(*why);
                }
            }
            e.cfg.excluded = excluded;
        }
        e.cancelled_any = history
            .tasks
            .values()
            .any(|h| h.decided == Some(TaskState::Cancelled));
        // Dependents a crash may have left undecided.
        e.propagate(skipped, TaskState::Skipped, "a dependency did not succeed");
        e
    }

    /// The auxiliary commands the journal knows (ended, or handed out and not ended:
    /// [`Engine::recovered`] judges those), and the ones owed and not handed out: the
    /// cleanups of attempts that ran and ended, the emergency commands of a freeze.
    fn restore_aux(&mut self, history: &History, now: Instant) {
        for ((kind, owner, attempt), rec) in &history.aux {
            let owner = match kind {
                AuxKind::Check => self.plan.gates.iter().position(|g| g.id == *owner),
                _ => self.index.get(owner).copied(),
            };
            let Some(owner) = owner else {
                continue;
            };
            let job = AuxRef { kind: *kind, owner };
            let ix = self.schedule_aux(job, *attempt, now);
            self.aux[ix].worker = Some(rec.worker.clone());
            if let Some(end) = &rec.end {
                self.aux[ix].ended = Some(end.state);
                self.aux_active.remove(&ix);
            }
        }
        for t in 0..self.tasks.len() {
            if self.plan.tasks[t].cleanup.is_none() {
                continue;
            }
            let Some(h) = history.tasks.get(&self.plan.tasks[t].id) else {
                continue;
            };
            for a in &h.attempts {
                let current = h.fence.as_ref().is_some_and(|(n, _)| *n == a.attempt);
                let over = a.ended.is_some() || h.decided.is_some() || h.fence.is_some();
                if a.pid.is_some() && !current && over {
                    self.owe_cleanup(t, a.attempt, now);
                }
            }
        }
        if self.phase == super::Phase::Frozen {
            for id in &history.emergency_owed {
                if let Some(&t) = self.index.get(id) {
                    self.owe_emergency(t, now);
                }
            }
            if history.snapshot_owed {
                self.out.push(Command::Snapshot);
            }
        }
    }

    /// A gate whose check ended while its verdict was not journalled yet (a crash in
    /// between): the verdict now.
    fn restore_checks(&mut self) {
        for g in 0..self.plan.gates.len() {
            if self.gate_states[g] != Some(GateRecord::Checking) {
                continue;
            }
            let job = AuxRef {
                kind: AuxKind::Check,
                owner: g,
            };
            let Some(last) = self.last_aux(job) else {
                // Its run was taken back unclaimed (`aux_withdrawn`): it goes out again.
                let now = self.now;
                self.schedule_aux(job, 1, now);
                continue;
            };
            match last.ended {
                Some(crate::proto::AuxState::Succeeded) => self.gate_checked(g),
                Some(_) if last.attempt >= 3 => {
                    self.gate_failed(g, "its check failed".into());
                }
                Some(_) => {
                    let next = last.attempt + 1;
                    let now = self.now;
                    self.schedule_aux(job, next, now);
                }
                None => {}
            }
        }
    }

    /// Put a decided task's node where its state says; returns the nodes this skips.
    fn restore_decided(&mut self, t: TaskIx, s: TaskState) -> Vec<usize> {
        self.tasks[t].decided = Some(s);
        self.tasks[t].fence = None;
        match s {
            // Left out of a partial run: satisfied for its dependents, like a success.
            TaskState::Succeeded | TaskState::Excluded => {
                self.sched.succeed(t);
                Vec::new()
            }
            TaskState::Lost => self.sched.lose(t),
            _ => self.sched.fail(t),
        }
    }

    /// What the shell found on disk after [`Engine::restore`].
    pub(super) fn recovered(&mut self, found: Found, now: Instant) {
        // Outcomes written just before the crash, whose journal line is missing.
        let mut skipped = Vec::new();
        for (id, s) in &found.outcomes {
            if let Some(&t) = self.index.get(id)
                && self.tasks[t].decided.is_none()
            {
                self.journal(Event::TaskFinished {
                    task: id.clone(),
                    attempt: self.tasks[t].attempt,
                    worker: None,
                    state: *s,
                    exit_code: None,
                    reason: Some("outcome found on resume".into()),
                });
                skipped.extend(self.restore_decided(t, *s));
            }
        }
        self.propagate(skipped, TaskState::Skipped, "a dependency did not succeed");

        let mut exits: BTreeMap<(String, u32), Exit> = found
            .exits
            .into_iter()
            .map(|(t, a, e)| ((t, a), e))
            .collect();
        let mut started: BTreeMap<(String, u32), (String, Started)> = BTreeMap::new();
        let ran: Vec<(String, String, u32)> = found
            .workers
            .iter()
            .flat_map(|fw| fw.ran.iter().map(|(t, n)| (fw.id.clone(), t.clone(), *n)))
            .collect();
        let mut adopted = BTreeSet::new();
        let mut claimed: BTreeSet<(String, String, u32)> = BTreeSet::new();
        let mut taken_back: BTreeSet<(String, String, u32)> = BTreeSet::new();
        // Claimed attempts whose worker's journal shows neither a start nor an exit.
        let mut unstarted: BTreeSet<(String, String, u32)> = BTreeSet::new();
        for fw in &found.workers {
            self.next_worker = self.next_worker.max(number_after(&fw.id));
            taken_back.extend(
                fw.withdrawn
                    .iter()
                    .map(|(name, n)| (fw.id.clone(), name.clone(), *n)),
            );
            for (task, n) in &fw.withdrawn {
                if let Some(&t) = self.index.get(task)
                    && self.tasks[t].fence == Some((*n, fw.id.clone()))
                {
                    self.tasks[t].fence = None;
                    if self.tasks[t].attempt == *n {
                        // Attempt 0 is never given out; only a damaged journal fences it.
                        self.tasks[t].attempt = n.saturating_sub(1);
                    }
                    self.journal(Event::TaskWithdrawn {
                        task: task.clone(),
                        attempt: *n,
                        worker: fw.id.clone(),
                    });
                    self.sched.requeue(t);
                }
            }
            for st in &fw.started {
                started.insert((st.task.clone(), st.attempt), (fw.id.clone(), st.clone()));
            }
            for (task, n) in &fw.claimed {
                claimed.insert((fw.id.clone(), task.clone(), *n));
                let key = (task.clone(), *n);
                let began = fw.ran.contains(&key)
                    || fw
                        .started
                        .iter()
                        .any(|st| st.task == *task && st.attempt == *n);
                let ended = fw.exited.contains(&key) || exits.contains_key(&key);
                if !began && !ended {
                    unstarted.insert((fw.id.clone(), task.clone(), *n));
                }
            }
            if fw.alive && fw.registered && !fw.stopped && !fw.foreign {
                self.workers
                    .insert(fw.id.clone(), Worker::new(WorkerState::Idle, now));
                adopted.insert(fw.id.clone());
                self.journal(Event::WorkerAdopted {
                    worker: fw.id.clone(),
                });
            } else if fw.alive && !fw.registered && !fw.stopped {
                // Started by the last orchestrator and not registered yet: it registers
                // with us (or is given up on after the registration timeout).
                self.workers
                    .insert(fw.id.clone(), Worker::new(WorkerState::Starting, now));
            } else if fw.alive {
                // Told to stop, or speaking another protocol version: never adopted.
                self.workers
                    .insert(fw.id.clone(), Worker::new(WorkerState::Stopping, now));
                if fw.foreign && !fw.stopped {
                    self.out.push(Command::StopWorker {
                        worker: fw.id.clone(),
                        reason: ShutdownReason::SessionEnd,
                    });
                }
            }
        }

        // The fence holders: adopt, accept, or reassign.
        for t in 0..self.tasks.len() {
            if self.tasks[t].decided.is_some() {
                continue;
            }
            let Some((n, w)) = self.tasks[t].fence.clone() else {
                continue;
            };
            let id = self.id(t);
            if let Some(exit) = exits.remove(&(id.clone(), n)) {
                // Accepted now: nothing of it may run any more.
                started.remove(&(id.clone(), n));
                self.exited(&w, t, n, exit, false, now);
            } else if adopted.contains(&w) && claimed.contains(&(w.clone(), id.clone(), n)) {
                let ran = started.contains_key(&(id.clone(), n));
                if let Some(wk) = self.workers.get_mut(&w) {
                    wk.state = WorkerState::Busy {
                        task: t,
                        attempt: n,
                    };
                    // Lost with its worker, it is owed its cleanup.
                    if ran {
                        wk.ran.push((t, n));
                    }
                }
                self.tasks[t].started = ran;
                self.journal(Event::TaskAdopted {
                    task: id,
                    attempt: n,
                    worker: w,
                });
            } else {
                let process = started.remove(&(id, n)).map(|(_, st)| process_of(&st));
                if process.is_some() {
                    self.owe_cleanup(t, n, now);
                }
                self.out.push(Command::KillGroup {
                    worker: w.clone(),
                    task: t,
                    attempt: n,
                    process,
                });
                self.attempt_lost(t, n, &w, now);
            }
        }

        self.recover_aux(&mut exits, &started, &adopted, &claimed, &taken_back, now);

        // Every other attempt that ended meanwhile was superseded: refused, journalled.
        for ((task, n), exit) in exits {
            let Some(&t) = self.index.get(&task) else {
                continue;
            };
            // The record names who ran it (its `started` line is not collected once
            // its exit is on disk).
            let Exit::Record { record, .. } = &exit;
            let worker = record.worker.clone();
            if !self.taken(t, n, &worker) {
                self.stale(t, n, &worker, &exit);
            }
            started.remove(&(task, n));
        }

        // Attempts that started, have no exit, and are not the attempt an adopted worker
        // runs for its task now: stop them (the shell checks the process is the one that
        // started, and that no exit was recorded).
        for ((task, n), (w, st)) in started {
            let Some(&t) = self.index.get(&task) else {
                continue;
            };
            let runs_now = self.workers.get(&w).is_some_and(|wk| {
                wk.state
                    == WorkerState::Busy {
                        task: t,
                        attempt: n,
                    }
            });
            if runs_now {
                continue;
            }
            // An adopted worker still running a superseded attempt stays busy until it
            // reports: it is stopped through its kill file, like a reassign.
            if adopted.contains(&w)
                && claimed.contains(&(w.clone(), task.clone(), n))
                && let Some(wk) = self.workers.get_mut(&w)
                && wk.state == WorkerState::Idle
            {
                wk.state = WorkerState::Busy {
                    task: t,
                    attempt: n,
                };
                wk.ran.push((t, n));
                self.out.push(Command::Kill {
                    worker: w.clone(),
                    task: t,
                    attempt: n,
                    reason: super::KillReason::Reassigned,
                });
                continue;
            }
            self.owe_cleanup(t, n, now);
            self.out.push(Command::KillGroup {
                worker: w,
                task: t,
                attempt: n,
                process: Some(process_of(&st)),
            });
        }

        // An adopted worker that claimed a superseded attempt and had not started it yet
        // starts it (its kill file then stops it): it is busy with it until it reports,
        // as it was before the crash. Taken for idle, its journal would not be followed
        // until it is given work, which may never come (a stopping session gives none):
        // the start would be read too late, or never, and the cleanup it owes not run.
        for (w, task, n) in unstarted {
            let Some(&t) = self.index.get(&task) else {
                continue;
            };
            if adopted.contains(&w)
                && let Some(wk) = self.workers.get_mut(&w)
                && wk.state == WorkerState::Idle
            {
                wk.state = WorkerState::Busy {
                    task: t,
                    attempt: n,
                };
                self.out.push(Command::Kill {
                    worker: w,
                    task: t,
                    attempt: n,
                    reason: super::KillReason::Reassigned,
                });
            }
        }

        // Every other attempt that ran is over: its cleanup is owed (a cleanup owed
        // before the crash and not handed out is in no journal line; one handed out is
        // known and never runs twice).
        for (w, task, n) in ran {
            let Some(&t) = self.index.get(&task) else {
                continue;
            };
            let runs_now = self.workers.get(&w).is_some_and(|wk| {
                wk.state
                    == WorkerState::Busy {
                        task: t,
                        attempt: n,
                    }
            });
            if !runs_now {
                self.owe_cleanup(t, n, now);
            }
        }
    }

    /// Auxiliary commands handed out before the crash and not ended: their exit is
    /// taken, an adopted worker that claimed one runs it on, one taken back unclaimed
    /// (it never ran) goes out again under a new fence line (`aux_withdrawn` first), and
    /// one whose worker is gone is `unknown` (its group is stopped; it is never run again
    /// by itself).
    fn recover_aux(
        &mut self,
        exits: &mut BTreeMap<(String, u32), Exit>,
        started: &BTreeMap<(String, u32), (String, Started)>,
        adopted: &BTreeSet<String>,
        claimed: &BTreeSet<(String, String, u32)>,
        taken_back: &BTreeSet<(String, String, u32)>,
        now: Instant,
    ) {
        let open: Vec<super::AuxIx> = self
            .aux_active
            .iter()
            .copied()
            .filter(|&ix| self.aux[ix].worker.is_some())
            .collect();
        for ix in open {
            let (job, attempt) = (self.aux[ix].job, self.aux[ix].attempt);
            let Some(w) = self.aux[ix].worker.clone() else {
                continue;
            };
            let name = self.aux_name(job);
            let key = (name.clone(), attempt);
            if let Some(exit) = exits.remove(&key) {
                self.aux_exited(&w, ix, exit, now);
            } else if taken_back.contains(&(w.clone(), name.clone(), attempt)) {
                self.journal(Event::AuxWithdrawn {
                    kind: job.kind,
                    of: self.aux_owner_id(job),
                    attempt,
                    worker: w,
                });
                self.aux[ix].worker = None;
            } else if adopted.contains(&w) && claimed.contains(&(w.clone(), name, attempt)) {
                if let Some(wk) = self.workers.get_mut(&w) {
                    wk.state = WorkerState::Aux { job: ix };
                }
                self.aux[ix].started = started.contains_key(&key);
            } else {
                self.out.push(Command::KillAuxGroup {
                    worker: w.clone(),
                    job,
                    attempt,
                    process: started.get(&key).map(|(_, st)| process_of(st)),
                });
                let why = format!("worker {w} was gone when the session was resumed");
                self.end_aux(ix, crate::proto::AuxState::Unknown, None, Some(why), now);
            }
        }
    }
}

/// The number a new worker must have at least so as not to reuse the id `id` (`w<n>`).
/// Ids are counted in a u64 but only numbers that fit a u32 are taken from the files:
/// one past any of them still fits, and a larger number in a damaged journal is not
/// reached by counting.
fn number_after(id: &str) -> u64 {
    id.strip_prefix('w')
        .and_then(|n| n.parse::<u32>().ok())
        .map_or(0, |n| u64::from(n) + 1)
}

fn process_of(st: &Started) -> ProcessId {
    ProcessId {
        pgid: st.pgid,
        proc_start: st.proc_start,
        boot_id: st.boot_id.clone(),
    }
}
