//! The worker pool and the one path from "ready" to "assigned".
//!
//! A ready task goes to an idle worker (avoiding the worker a reassigned task left). A
//! worker left idle while another has a task queued gets that task instead: the queue
//! must never delay work. Then each worker whose task has started gets one more ready
//! task queued behind it, so the round trip "exit -> next assignment" is off its
//! critical path. Queueing obeys every start rule: nothing is queued while the session
//! is not running, in plans with races (a member's end can make queued members lose),
//! token pools (a queued task would hold its tokens before it runs) or a task whose
//! failure stops the session, or while a worker is starting (it will take ready tasks at once). A task whose claims do not fit waits
//! in the ready queue while lower ones that fit start.

use std::time::Instant;

use super::{Command, Decision, Engine, Phase, TaskIx, Worker, WorkerState};
use crate::journal::event::{DeathCause, EndReason, Event};
use crate::proto::{ShutdownReason, Started, TaskState};
use crate::scheduler;

impl Engine {
    pub(super) fn registered(
        &mut self,
        worker: String,
        pid: u32,
        host: String,
        terminal: Option<String>,
        now: Instant,
    ) {
        let Some(w) = self.workers.get_mut(&worker) else {
            return;
        };
        if w.state != WorkerState::Starting {
            return;
        }
        w.state = WorkerState::Idle;
        w.heartbeat_at = now;
        self.spawn_failures = 0;
        self.journal(Event::WorkerRegistered {
            worker,
            pid,
            host,
            terminal,
        });
    }

    pub(super) fn started(&mut self, st: Started) {
        let Some(&t) = self.index.get(&st.task) else {
            if let Some(ix) = self.aux_by_name(&st.task, st.attempt) {
                self.aux_started(ix, &st.worker);
            }
            return;
        };
        let a = st.attempt;
        let current = self.tasks[t]
            .fence
            .as_ref()
            .is_some_and(|(n, w)| *n == a && *w == st.worker);
        // Its worker's running attempt, or the one queued behind it (one look may read
        // that start before the running one's exit): it ran, and is owed its cleanup
        // should the worker be lost before its exit.
        let mine = match self.workers.get_mut(&st.worker) {
            Some(w)
                if w.state
                    == (WorkerState::Busy {
                        task: t,
                        attempt: a,
                    })
                    || w.queued == Some((t, a)) =>
            {
                if !w.ran.contains(&(t, a)) {
                    w.ran.push((t, a));
                }
                true
            }
            Some(_) => false,
            None => true,
        };
        if !mine && !current {
            // Started where the engine lets it run no more: on a worker given up on or
            // told to stop (it claimed the attempt before, and its start was read late
            // or happened after the kill that went out then). Stop it now; it ran, so
            // its cleanup is owed.
            self.out.push(Command::KillGroup {
                worker: st.worker.clone(),
                task: t,
                attempt: st.attempt,
                process: Some(super::ProcessId {
                    pgid: st.pgid,
                    proc_start: st.proc_start,
                    boot_id: st.boot_id.clone(),
                }),
            });
            self.owe_cleanup(t, st.attempt, self.now);
            return;
        }
        let task = &mut self.tasks[t];
        if !current || task.started || task.decided.is_some() {
            return;
        }
        task.started = true;
        self.journal(Event::TaskStarted {
            task: st.task,
            attempt: st.attempt,
            worker: st.worker,
            pid: Some(st.pgid),
            proc_start: st.proc_start,
            boot_id: st.boot_id,
        });
    }

    pub(super) fn heartbeat(&mut self, worker: &str, counter: u64, now: Instant) {
        if let Some(w) = self.workers.get_mut(worker)
            && w.heartbeat != Some(counter)
        {
            w.heartbeat = Some(counter);
            w.heartbeat_at = now;
        }
    }

    /// A registered worker whose counter has not moved for the lease time (judged on
    /// the time the shell passes in, never file mtimes) is alive but stuck: lost, and
    /// its task's process group is killed, which it can no longer do itself.
    pub(super) fn check_leases(&mut self, now: Instant) {
        let lease = self.cfg.lease;
        let stuck: Vec<String> = self
            .workers
            .iter()
            .filter(|(_, w)| {
                matches!(
                    w.state,
                    WorkerState::Idle | WorkerState::Busy { .. } | WorkerState::Aux { .. }
                )
            })
            .filter(|(_, w)| now.saturating_duration_since(w.heartbeat_at) > lease)
            .map(|(id, _)| id.clone())
            .collect();
        for id in stuck {
            self.journal(Event::WorkerUnresponsive {
                worker: id.clone(),
                lease_ms: lease.as_millis() as u64,
            });
            self.out.push(Command::StopWorker {
                worker: id.clone(),
                reason: ShutdownReason::Lost,
            });
            self.worker_gone(&id, DeathCause::Unresponsive, now);
        }
    }

    /// The watchdog: a worker busy with an attempt it has not started within
    /// `start_timeout` is lost (an alive, heartbeating worker that never starts its task
    /// would otherwise hold the session forever); the attempt goes to another worker.
    pub(super) fn check_starts(&mut self, now: Instant) {
        let limit = self.cfg.start_timeout;
        let stalled: Vec<(String, TaskIx, u32)> = self
            .workers
            .iter()
            .filter_map(|(id, w)| match w.state {
                WorkerState::Busy { task, attempt }
                    if !self.tasks[task].started
                        && now.saturating_duration_since(w.busy_since) > limit =>
                {
                    Some((id.clone(), task, attempt))
                }
                _ => None,
            })
            .collect();
        let aux_stalled: Vec<(String, String, u32)> = self
            .workers
            .iter()
            .filter_map(|(id, w)| match w.state {
                WorkerState::Aux { job }
                    if !self.aux[job].started
                        && now.saturating_duration_since(w.busy_since) > limit =>
                {
                    let j = &self.aux[job];
                    Some((id.clone(), self.aux_name(j.job), j.attempt))
                }
                _ => None,
            })
            .collect();
        let stalled = stalled
            .into_iter()
            .map(|(id, t, a)| (id, self.id(t), a))
            .chain(aux_stalled);
        for (id, name, attempt) in stalled.collect::<Vec<_>>() {
            self.journal(Event::AttemptStalled {
                task: name,
                attempt,
                worker: id.clone(),
                waited_ms: limit.as_millis() as u64,
            });
            self.out.push(Command::StopWorker {
                worker: id.clone(),
                reason: ShutdownReason::Lost,
            });
            self.worker_gone(&id, DeathCause::Stalled, now);
        }
    }

    pub(super) fn check_registrations(&mut self, now: Instant) {
        let limit = self.cfg.register_timeout;
        let late: Vec<String> = self
            .workers
            .iter()
            .filter(|(_, w)| w.state == WorkerState::Starting)
            .filter(|(_, w)| now.saturating_duration_since(w.spawned_at) > limit)
            .map(|(id, _)| id.clone())
            .collect();
        for id in late {
            self.worker_gone(&id, DeathCause::NeverRegistered, now);
            self.out.push(Command::StopWorker {
                worker: id,
                reason: ShutdownReason::Lost,
            });
        }
    }

    pub(super) fn idle(&self) -> Vec<String> {
        self.workers
            .iter()
            .filter(|(_, w)| w.state == WorkerState::Idle)
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn busy_count(&self) -> usize {
        self.workers
            .values()
            .filter(|w| matches!(w.state, WorkerState::Busy { .. }))
            .count()
    }

    pub(super) fn live_count(&self) -> usize {
        self.workers
            .values()
            .filter(|w| !matches!(w.state, WorkerState::Gone | WorkerState::Stopping))
            .count()
    }

    /// Hand out what is ready, as the session's phase allows.
    pub(super) fn dispatch(&mut self, now: Instant) {
        if !self.running() {
            return;
        }
        self.assign_ready(now);
        // Only as many as may start: an idle worker beyond the limit (after a reassign, or
        // adopted on resume) would take nothing and the task would be queued again.
        let room = self.cfg.workers.saturating_sub(self.running_count());
        let idle = self.idle().len().min(room);
        if idle > 0 {
            // The queues behind the longest-running tasks first: they would wait longest.
            let mut behind: Vec<(Instant, String)> = self
                .workers
                .iter()
                .filter(|(_, w)| w.queued.is_some() && !w.withdrawing && !w.claimed)
                .map(|(id, w)| (w.busy_since, id.clone()))
                .collect();
            behind.sort();
            for (_, wid) in behind.into_iter().take(idle) {
                self.withdraw(&wid);
            }
        }
        self.queue_ready(now);
        // Release idle workers the plan can no longer use (their windows close).
        let idle = self.idle();
        let coming_back = self.workers.values().filter(|w| w.withdrawing).count();
        let excess = scheduler::excess_idle(
            idle.len(),
            self.sched.not_started() + self.retrying.len() + coming_back + self.aux_wanted(),
        );
        // Idle workers the limit leaves no room for (after `scale` lowered it) leave
        // too; those about to run auxiliary commands are a pool of their own. An attempt
        // being stopped after a reassign holds no room, so its replacement stays.
        let room = self.cfg.workers.saturating_sub(self.running_count());
        let surplus = idle.len().saturating_sub(room + self.aux_wanted());
        for wid in idle.into_iter().take(excess.max(surplus)) {
            self.stop_worker(&wid, ShutdownReason::Idle);
        }
    }

    /// Workers running a current attempt, or about to (one queued behind an attempt
    /// being stopped starts as soon as it ends), against the worker limit. An attempt
    /// being stopped after a reassign no longer counts by itself: its task moves on at
    /// once, as a person asked.
    pub(super) fn running_count(&self) -> usize {
        let holds = |id: &str, (task, attempt): (TaskIx, u32)| {
            self.tasks[task]
                .fence
                .as_ref()
                .is_some_and(|(a, f)| *a == attempt && f == id)
        };
        self.workers
            .iter()
            .filter(|(id, w)| match w.state {
                WorkerState::Busy { task, attempt } => {
                    holds(id, (task, attempt)) || w.queued.is_some_and(|q| holds(id, q))
                }
                _ => false,
            })
            .count()
    }

    fn assign_ready(&mut self, now: Instant) {
        loop {
            let idle = self.idle();
            if idle.is_empty() || self.running_count() >= self.cfg.workers {
                return;
            }
            let Some(t) = self.pop_startable() else {
                return;
            };
            let avoid = self.tasks[t].avoid.clone();
            let wid = idle
                .iter()
                .find(|w| Some(*w) != avoid.as_ref())
                .unwrap_or(&idle[0])
                .clone();
            self.assign(t, &wid, false, now);
        }
    }

    fn queue_ready(&mut self, now: Instant) {
        // Not while requests wait for queued assignments to be withdrawn (they would be
        // queued again as soon as they are taken back).
        // Nor with token pools (a queued assignment holds its tokens while it waits),
        // nor where a failure stops the session (a task queued behind the one that
        // fails would start at once).
        if !self.plan.races.is_empty()
            || !self.plan.resources.is_empty()
            || self.plan.limits != crate::plan::Limits::default()
            || self.plan.may_stop()
            || !self.sched.has_ready()
            || self.any_starting()
            || !self.pending.is_empty()
            // More workers than the limit (it was lowered): let them run out of work.
            || self.running_count() > self.cfg.workers
        {
            return;
        }
        let ready_for_more: Vec<String> = self
            .workers
            .iter()
            .filter(|(id, w)| {
                w.queued.is_none()
                    && matches!(w.state, WorkerState::Busy { task, attempt }
                        if self.tasks[task].started
                            && self.tasks[task].fence.as_ref().is_some_and(|(a, f)| *a == attempt && f == *id))
            })
            .map(|(id, _)| id.clone())
            .collect();
        for wid in ready_for_more {
            let Some(t) = self.pop_startable() else {
                break;
            };
            if self.tasks[t].avoid.as_deref() == Some(wid.as_str()) {
                // Another busy worker may take it.
                self.sched.requeue(t);
                continue;
            }
            self.assign(t, &wid, true, now);
        }
    }

    /// Give the worker that just finished its task the next ready one at once, before
    /// that task's outcome is written (the round trip is on every worker's critical
    /// path).
    pub(super) fn hand_next(&mut self, wid: &str, now: Instant) {
        // Not where a failure stops the session: the exit just in may be one.
        if !self.running()
            || self.plan.may_stop()
            || self.worker_state(wid) != Some(WorkerState::Idle)
            || self.running_count() >= self.cfg.workers
        {
            return;
        }
        let Some(t) = self.pop_startable() else {
            return;
        };
        if self.tasks[t].avoid.as_deref() == Some(wid) {
            self.sched.requeue(t);
            return;
        }
        self.assign(t, wid, false, now);
    }

    /// The next attempt of task `t` goes to `wid`: as its current task, or (`queue`)
    /// behind the one it runs. The fence moves first, in the journal.
    fn assign(&mut self, t: TaskIx, wid: &str, queue: bool, now: Instant) {
        // Only a damaged journal gets a task to its last attempt number (counting there
        // takes four billion attempts): it fails rather than reuse a number.
        let Some(attempt) = self.tasks[t].attempt.checked_add(1) else {
            let last = self.tasks[t].attempt;
            self.finish_task(Decision {
                task: t,
                state: TaskState::Failed,
                attempt: last,
                worker: None,
                exit: None,
                reason: Some(format!("no attempt number is left after attempt {last}")),
                result: None,
                marks: false,
            });
            return;
        };
        let seq = self.next_seq;
        // Saturates on a journal with the largest seq: order between a worker's two
        // queued assignments is then lost, nothing else.
        self.next_seq = self.next_seq.saturating_add(1);
        let task = &mut self.tasks[t];
        task.attempt = attempt;
        task.started = false;
        task.fence = Some((attempt, wid.to_string()));
        self.journal(Event::TaskAssigned {
            task: self.id(t),
            attempt,
            worker: wid.to_string(),
            seq,
        });
        self.out.push(Command::Assign {
            worker: wid.to_string(),
            task: t,
            attempt,
            seq,
        });
        if let Some(w) = self.workers.get_mut(wid) {
            if queue {
                w.queued = Some((t, attempt));
            } else {
                w.state = WorkerState::Busy { task: t, attempt };
                w.busy_since = now;
            }
        }
    }

    /// Ask for worker `wid`'s queued assignment back.
    pub(super) fn withdraw(&mut self, wid: &str) {
        let Some(w) = self.workers.get_mut(wid) else {
            return;
        };
        let Some((task, attempt)) = w.queued else {
            return;
        };
        if w.withdrawing || w.claimed {
            return;
        }
        w.withdrawing = true;
        self.out.push(Command::Withdraw {
            worker: wid.to_string(),
            task,
            attempt,
        });
    }

    pub(super) fn withdraw_all(&mut self) {
        let ids: Vec<String> = self
            .workers
            .iter()
            .filter(|(_, w)| w.queued.is_some())
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.withdraw(&id);
        }
    }

    pub(super) fn withdrawals_pending(&self) -> bool {
        self.workers.values().any(|w| w.withdrawing)
    }

    /// The answer to a withdrawal. Taken back: the task is ready again with the same
    /// attempt number (it never ran). Claimed: the worker's running task has ended (a
    /// worker claims the next only after recording the exit), and the exit follows.
    pub(super) fn withdrawn(&mut self, wid: &str, t: TaskIx, attempt: u32, ok: bool, now: Instant) {
        let Some(w) = self.workers.get_mut(wid) else {
            return;
        };
        if w.queued != Some((t, attempt)) {
            return;
        }
        w.withdrawing = false;
        w.claimed = !ok;
        if ok {
            w.queued = None;
            let task = &mut self.tasks[t];
            task.attempt = attempt - 1;
            task.fence = None;
            self.journal(Event::TaskWithdrawn {
                task: self.id(t),
                attempt,
                worker: wid.to_string(),
            });
            if self.tasks[t].decided.is_none() {
                self.sched.requeue(t);
            }
            return;
        }
        if w.state == WorkerState::Gone {
            // A dead worker claimed it: it may have started it.
            w.queued = None;
            self.out.push(Command::KillGroup {
                worker: wid.to_string(),
                task: t,
                attempt,
                process: None,
            });
            self.attempt_lost(t, attempt, wid, now);
        }
    }

    /// Start workers until the pool has the size the remaining work can use.
    pub(super) fn fill_pool(&mut self, now: Instant) {
        if !self.running() || self.fatal.is_some() {
            return;
        }
        let wanted = self
            .cfg
            .workers
            .min(self.sched.not_started() + self.busy_count());
        // Workers running auxiliary commands are a pool of their own.
        while !self.sched.finished() && self.live_count() - self.aux_busy() < wanted {
            self.spawn_worker(now);
        }
    }

    pub(super) fn spawn_worker(&mut self, now: Instant) {
        let id = format!("w{}", self.next_worker);
        self.next_worker += 1;
        self.workers
            .insert(id.clone(), Worker::new(WorkerState::Starting, now));
        self.out.push(Command::SpawnWorker { worker: id });
    }

    pub(super) fn stop_worker(&mut self, wid: &str, reason: ShutdownReason) {
        self.out.push(Command::StopWorker {
            worker: wid.to_string(),
            reason,
        });
        if let Some(w) = self.workers.get_mut(wid)
            && w.state != WorkerState::Gone
        {
            w.state = WorkerState::Stopping;
        }
    }

    /// A worker died or exited. Its task, if it had one and did not finish, gets a new
    /// attempt on another worker (a crash does not use up `retries`). The shell has fed
    /// every exit the worker recorded before this.
    pub(super) fn worker_gone(&mut self, wid: &str, how: DeathCause, now: Instant) {
        let Some(w) = self.workers.get_mut(wid) else {
            return;
        };
        let prev = w.state;
        if prev == WorkerState::Gone {
            return;
        }
        w.state = WorkerState::Gone;
        let ran =
            matches!(prev, WorkerState::Busy { task, attempt } if w.ran.contains(&(task, attempt)));
        // A queued task it never claimed goes back to the queue as it was; the answer
        // decides (a claimed one is lost with the worker).
        if w.queued.is_some() && !w.withdrawing {
            self.withdraw(wid);
        }
        if let WorkerState::Busy { task, attempt } = prev {
            // Its task runs in a process group of its own and would outlive the
            // worker: stop it before the task moves on.
            self.out.push(Command::KillGroup {
                worker: wid.to_string(),
                task,
                attempt,
                process: None,
            });
            if ran {
                self.owe_cleanup(task, attempt, now);
            }
            self.attempt_lost(task, attempt, wid, now);
        }
        if let WorkerState::Aux { job } = prev {
            self.aux_lost(wid, job, now);
        }
        let expected = prev == WorkerState::Stopping;
        let ev = if expected {
            Event::WorkerExited {
                worker: wid.to_string(),
                how,
            }
        } else {
            Event::WorkerLost {
                worker: wid.to_string(),
                how,
            }
        };
        self.journal(ev);
        if expected {
            return;
        }
        if prev == WorkerState::Starting {
            self.spawn_failures += 1;
            if self.spawn_failures >= self.cfg.max_spawn_failures {
                self.fatal = Some(format!(
                    "{} workers in a row died before registering; see workers/{wid}/console.log",
                    self.cfg.max_spawn_failures
                ));
                self.phase = Phase::Finished(crate::proto::SessionState::Failed);
                self.out
                    .push(Command::Finish(crate::proto::SessionState::Failed));
            }
        }
    }

    /// The current attempt `attempt` of task `t` was lost with worker `wid`: it stops
    /// counting (journalled before any new attempt), and the task goes back to the queue
    /// unless it was lost too often.
    pub(super) fn attempt_lost(&mut self, t: TaskIx, attempt: u32, wid: &str, now: Instant) {
        let task = &mut self.tasks[t];
        let current = task
            .fence
            .as_ref()
            .is_some_and(|(a, w)| *a == attempt && w == wid);
        if !current || task.decided.is_some() {
            return; // already superseded (reassigned or cancelled)
        }
        task.fence = None;
        task.reassigns += 1;
        let n = task.reassigns;
        self.journal(Event::AttemptEnded {
            task: self.id(t),
            attempt,
            worker: Some(wid.to_string()),
            reason: EndReason::WorkerLost,
        });
        let max = self.plan.tasks[t].max_reassign;
        if n > max {
            let msg = format!("worker lost {n} times (max_reassign is {max})");
            self.decide_without_exit(
                t,
                crate::proto::TaskState::Failed,
                msg,
                Some(wid.to_string()),
                now,
            );
            return;
        }
        self.sched.requeue(t);
    }
}
