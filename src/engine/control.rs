//! People's requests (reassign, cancel) and interrupts (SIGINT, SIGTERM).
//!
//! A request acts on running and ready tasks; a queued assignment is neither until it is
//! withdrawn, so requests wait until every queued assignment has been answered for. A
//! decided outcome is never changed by a request. Moving to stopping (cancel of the
//! session, an interrupt) first withdraws what is queued, so no queued task starts
//! against the rule.

use std::time::Instant;

use super::{Command, Engine, Interrupt, KillReason, Phase, TaskIx, WorkerState};
use crate::journal::event::{ControlAction, EndReason, Event};
use crate::proto::{SessionState, ShutdownReason, TaskState};

impl Engine {
    /// Handle the requests that are waiting, once no withdrawal is outstanding.
    pub(super) fn run_pending(&mut self, now: Instant) {
        if self.pending.is_empty() {
            return;
        }
        self.withdraw_all();
        if self.withdrawals_pending() {
            return;
        }
        while let Some((id, action, task)) = self.pending.pop_front() {
            let r = self.control(&action, task.as_deref(), now);
            let (ok, message) = match r {
                Ok(m) => (true, m),
                Err(m) => (false, m),
            };
            self.out.push(Command::Reply { id, ok, message });
        }
    }

    fn control(
        &mut self,
        action: &ControlAction,
        task: Option<&str>,
        now: Instant,
    ) -> Result<String, String> {
        if let Phase::Finished(s) = self.phase
            && !matches!(action, ControlAction::Rollback { .. })
        {
            return Err(format!("the session has already ended ({})", s.as_str()));
        }
        // Gates are named by `task`, in their own namespace.
        match action {
            ControlAction::Approve => return self.approve(task.unwrap_or_default()),
            ControlAction::Reject { reason } => {
                return self.reject(task.unwrap_or_default(), reason.clone());
            }
            _ => {}
        }
        let t = match task {
            Some(name) => Some(
                self.index
                    .get(name)
                    .copied()
                    .ok_or_else(|| format!("the session has no task {name:?}"))?,
            ),
            None => None,
        };
        match (action, t) {
            (ControlAction::Reassign, Some(t)) => self.reassign(t, now),
            (ControlAction::Reassign, None) => Err("reassign needs a task".into()),
            (ControlAction::Cancel, Some(t)) => self.cancel_task(t, now),
            (ControlAction::Cancel, None) => Ok(self.cancel_session(now)),
            (ControlAction::Stop, Some(_)) => {
                Err("stop drains the whole session; to stop one task, cancel it".into())
            }
            (ControlAction::Stop, None) => self.stop_requested(),
            (ControlAction::Freeze | ControlAction::Thaw, Some(_)) => {
                Err("freeze and thaw act on the whole session".into())
            }
            (ControlAction::Freeze, None) => self.freeze(),
            (ControlAction::Thaw, None) => self.thaw(),
            (ControlAction::Rollback { .. }, Some(_)) => {
                Err("rollback acts on the whole session".into())
            }
            (ControlAction::Rollback { unknown }, None) => self.rollback_requested(*unknown, now),
            (ControlAction::Scale { .. }, Some(_)) => Err("scale acts on the whole session".into()),
            (ControlAction::Scale { workers }, None) => self.scale(*workers),
            // The tasks travel with the request (`Fact::Add`), never in an action alone.
            (ControlAction::Add { .. }, _) => {
                Err("tasks are added with `orchestrator add SESSION FILE`".into())
            }
            (ControlAction::Approve | ControlAction::Reject { .. }, _) => {
                unreachable!("handled above")
            }
        }
    }

    /// `orchestrator freeze`: workers stop their attempts' groups; nothing starts.
    fn freeze(&mut self) -> Result<String, String> {
        if self.phase != Phase::Running {
            return Err("only a running session can be frozen".into());
        }
        self.phase = Phase::Frozen;
        self.journal(Event::SessionFrozen {
            why: "freeze requested".into(),
            emergency: false,
        });
        self.withdraw_all();
        self.out.push(Command::Freeze(true));
        let n = self.running_attempts().len();
        Ok(format!(
            "session frozen: {n} running attempt{} stopped where {}; `thaw` goes on, `cancel` ends it",
            if n == 1 { "" } else { "s" },
            if n == 1 { "it is" } else { "they are" }
        ))
    }

    /// `orchestrator scale`: a new worker limit. More workers start at the next
    /// dispatch; with fewer, running attempts finish and the surplus workers leave as
    /// they become idle (nothing is stopped midway).
    fn scale(&mut self, workers: usize) -> Result<String, String> {
        if workers == 0 {
            return Err("the worker limit must be at least 1".into());
        }
        let before = self.cfg.workers;
        self.cfg.workers = workers;
        self.journal(Event::WorkersScaled { workers });
        Ok(match workers.cmp(&before) {
            std::cmp::Ordering::Equal => format!("the worker limit is already {workers}"),
            std::cmp::Ordering::Greater => {
                format!("worker limit {before} -> {workers}: more workers start now")
            }
            std::cmp::Ordering::Less => format!(
                "worker limit {before} -> {workers}: running tasks finish; surplus workers leave as they become idle"
            ),
        })
    }

    /// `orchestrator thaw`: frozen attempts go on, new ones start.
    fn thaw(&mut self) -> Result<String, String> {
        if self.phase != Phase::Frozen {
            return Err("the session is not frozen".into());
        }
        self.phase = Phase::Running;
        self.journal(Event::SessionThawed);
        self.out.push(Command::Freeze(false));
        Ok("session thawed: frozen attempts go on".into())
    }

    /// `orchestrator stop`: drain.
    fn stop_requested(&mut self) -> Result<String, String> {
        if self.phase != Phase::Running {
            return Err("the session is already stopping".into());
        }
        self.drain("stop requested".into());
        // Attempts whose exit is not in yet (a worker stays busy a moment after one).
        let running = self
            .running_attempts()
            .iter()
            .filter(|(w, t, a)| {
                self.tasks[*t]
                    .fence
                    .as_ref()
                    .is_some_and(|(fa, fw)| fa == a && fw == w)
            })
            .count();
        Ok(format!(
            "session {}stopping: no new starts; {running} running attempt{} will finish",
            if self.cfg.session.is_empty() {
                String::new()
            } else {
                format!("{} ", self.cfg.session)
            },
            if running == 1 { "" } else { "s" }
        ))
    }

    /// No new starts from now on (queued assignments are taken back); what runs
    /// finishes. Journalled, so a resumed engine goes on draining.
    pub(super) fn drain(&mut self, why: String) {
        if self.phase != Phase::Running {
            return;
        }
        self.phase = Phase::Draining;
        self.journal(Event::SessionDraining { why });
        self.withdraw_all();
    }

    /// The end of a drain: each task not decided is failed if an attempt of it failed
    /// (it was waiting to be retried), else cancelled; neither starts again.
    fn end_drain(&mut self, now: Instant) {
        for t in 0..self.tasks.len() {
            if self.tasks[t].decided.is_some() {
                continue;
            }
            if self.tasks[t].failures > 0 {
                let why = "not retried: the session was stopped".to_string();
                self.decide_without_exit(t, TaskState::Failed, why, None, now);
            } else {
                let why = "not started: the session was stopped".to_string();
                self.decide_without_exit(t, TaskState::Cancelled, why, None, now);
            }
        }
        let s = self.final_state();
        self.phase = Phase::Finished(s);
        self.out.push(Command::Finish(s));
    }

    /// The worker running task `t`'s current attempt (not one queued behind).
    fn runner_of(&self, t: TaskIx) -> Option<(String, u32)> {
        let (a, w) = self.tasks[t].fence.clone()?;
        (self.worker_state(&w)
            == Some(WorkerState::Busy {
                task: t,
                attempt: a,
            }))
        .then_some((w, a))
    }

    /// A task's state in words, for replies.
    pub(super) fn state_name(&self, t: TaskIx) -> &'static str {
        if let Some(s) = self.tasks[t].decided {
            return s.as_str();
        }
        if self.tasks[t].retry_at.is_some() {
            return "retrying";
        }
        match self.tasks[t].fence {
            Some(_) => "running",
            None => "pending",
        }
    }

    fn reassign(&mut self, t: TaskIx, now: Instant) -> Result<String, String> {
        let id = self.id(t);
        let Some((wid, attempt)) = self.runner_of(t) else {
            return Err(format!(
                "task {id} is not running (state: {})",
                self.state_name(t)
            ));
        };
        self.out.push(Command::Kill {
            worker: wid.clone(),
            task: t,
            attempt,
            reason: KillReason::Reassigned,
        });
        // The fence moves now: the old attempt's exit can no longer be accepted.
        self.journal(Event::AttemptEnded {
            task: id.clone(),
            attempt,
            worker: Some(wid.clone()),
            reason: EndReason::Reassigned,
        });
        self.tasks[t].fence = None;
        self.tasks[t].avoid = Some(wid.clone());
        self.sched.requeue(t);
        // The old worker stays busy until its attempt has ended; make sure another one
        // can take the new attempt.
        let idle = self.workers.values().any(|w| w.state == WorkerState::Idle);
        let live = self
            .workers
            .values()
            .filter(|w| !matches!(w.state, WorkerState::Gone | WorkerState::Stopping))
            .count();
        if !idle && live <= self.cfg.workers {
            self.spawn_worker(now);
        }
        Ok(format!(
            "task {id}: stopping attempt {attempt} on {wid}; attempt {} goes to another worker",
            attempt + 1
        ))
    }

    fn cancel_task(&mut self, t: TaskIx, now: Instant) -> Result<String, String> {
        let id = self.id(t);
        if self.tasks[t].decided.is_some() {
            return Err(format!(
                "task {id} already finished ({})",
                self.state_name(t)
            ));
        }
        let n = self.cancel_one(t, "cancelled by request".into(), now);
        Ok(format!(
            "task {id} cancelled ({n} dependents cancelled too)"
        ))
    }

    /// Cancel task `t` (stopping its attempt) and its dependents; how many dependents.
    fn cancel_one(&mut self, t: TaskIx, why: String, now: Instant) -> usize {
        let before = self.decided_count();
        if let Some((a, w)) = self.tasks[t].fence.clone() {
            // Only a running attempt is asked to stop now; one queued (and claimed) behind
            // another is stopped when it starts (see `stop_if_unwanted`).
            if self.worker_state(&w)
                == Some(WorkerState::Busy {
                    task: t,
                    attempt: a,
                })
            {
                self.out.push(Command::Kill {
                    worker: w.clone(),
                    task: t,
                    attempt: a,
                    reason: KillReason::Cancelled,
                });
            }
            self.journal(Event::AttemptEnded {
                task: self.id(t),
                attempt: a,
                worker: Some(w),
                reason: EndReason::Cancelled,
            });
        }
        self.decide_without_exit(t, TaskState::Cancelled, why, None, now);
        self.decided_count().saturating_sub(before + 1)
    }

    /// Cancel every task not decided (stopping what runs); how many.
    pub(super) fn cancel_all(&mut self, why: &str, now: Instant) -> usize {
        let before = self.decided_count();
        for t in 0..self.tasks.len() {
            if self.tasks[t].decided.is_none() {
                self.cancel_one(t, why.into(), now);
            }
        }
        self.decided_count() - before
    }

    fn decided_count(&self) -> usize {
        self.tasks.iter().filter(|t| t.decided.is_some()).count()
    }

    fn cancel_session(&mut self, now: Instant) -> String {
        if self.phase == Phase::Frozen {
            // Stopped groups must run to die of the signals they are sent.
            self.journal(Event::SessionThawed);
            self.out.push(Command::Freeze(false));
        }
        self.phase = Phase::Cancelling;
        self.journal(Event::SessionState {
            state: SessionState::Stopping,
            why: "cancel requested".into(),
        });
        let n = self.cancel_all("session cancelled", now);
        if self.cfg.session.is_empty() {
            format!("session cancelled ({n} tasks stopped or dropped)")
        } else {
            format!(
                "session {} cancelled ({n} tasks stopped or dropped)",
                self.cfg.session
            )
        }
    }

    /// SIGINT or SIGTERM: stop cleanly (no new attempts, running attempts stopped with
    /// their grace), leave the session `interrupted`. Again: kill every attempt's group
    /// at once and leave.
    pub(super) fn interrupt(&mut self, signal: Interrupt, again: bool) {
        if matches!(self.phase, Phase::Finished(_)) {
            return;
        }
        let first = !matches!(self.phase, Phase::Interrupting(_));
        self.interrupt_signal.get_or_insert(signal);
        if first && !again {
            self.phase = Phase::Interrupting(signal);
            self.journal(Event::SessionState {
                state: SessionState::Stopping,
                why: format!("{} received", signal.name()),
            });
            self.withdraw_all();
            let running: Vec<(String, TaskIx, u32)> = self.running_attempts();
            for (w, t, a) in running {
                self.out.push(Command::Kill {
                    worker: w,
                    task: t,
                    attempt: a,
                    reason: KillReason::Interrupted,
                });
            }
            for (w, ix) in self.aux_running() {
                self.out.push(Command::KillAux {
                    worker: w,
                    job: self.aux[ix].job,
                    attempt: self.aux[ix].attempt,
                    reason: KillReason::Interrupted,
                });
            }
            return;
        }
        for (w, ix) in self.aux_running() {
            self.out.push(Command::KillAuxGroup {
                worker: w,
                job: self.aux[ix].job,
                attempt: self.aux[ix].attempt,
                process: None,
            });
            let why = Some(format!("stopped: {} received twice", signal.name()));
            self.end_aux(ix, crate::proto::AuxState::Failed, None, why, self.now);
        }
        self.phase = Phase::Interrupting(signal);
        for (w, t, a) in self.running_attempts() {
            self.out.push(Command::KillGroup {
                worker: w.clone(),
                task: t,
                attempt: a,
                process: None,
            });
            if self.tasks[t].fence.as_ref().is_some_and(|(x, _)| *x == a) {
                self.tasks[t].fence = None;
                self.journal(Event::AttemptEnded {
                    task: self.id(t),
                    attempt: a,
                    worker: Some(w.clone()),
                    reason: EndReason::Interrupted,
                });
            }
        }
        let ids: Vec<String> = self
            .workers
            .iter()
            .filter(|(_, w)| w.state != WorkerState::Gone)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.stop_worker(&id, ShutdownReason::SessionEnd);
        }
        self.end_interrupted();
    }

    pub(super) fn running_attempts(&self) -> Vec<(String, TaskIx, u32)> {
        self.workers
            .iter()
            .filter_map(|(id, w)| match w.state {
                WorkerState::Busy { task, attempt } => Some((id.clone(), task, attempt)),
                _ => None,
            })
            .collect()
    }

    fn end_interrupted(&mut self) {
        self.journal(Event::SessionState {
            state: SessionState::Interrupted,
            why: "interrupted; `orchestrator resume` finishes it".into(),
        });
        self.out.push(Command::Finish(SessionState::Interrupted));
        self.phase = Phase::Finished(SessionState::Interrupted);
    }

    /// End the session when its phase allows. Cleanups finish first.
    pub(super) fn maybe_finish(&mut self, now: Instant) {
        self.drop_unstartable_checks();
        // An attempt still being stopped (superseded by a reassign, its task decided)
        // owes its cleanup once it ends: the session waits for that end too.
        let aux = self.workers.values().any(|w| match w.state {
            WorkerState::Aux { .. } => true,
            WorkerState::Busy { task, .. } => self.plan.tasks[task].cleanup.is_some(),
            _ => false,
        }) || self.aux_outstanding();
        let busy = aux
            || self
                .workers
                .values()
                .any(|w| matches!(w.state, WorkerState::Busy { .. }));
        match self.phase {
            Phase::Running => {
                if self.sched.finished() && !self.withdrawals_pending() && !aux {
                    let s = self.final_state();
                    self.phase = Phase::Finished(s);
                    self.out.push(Command::Finish(s));
                }
            }
            Phase::Cancelling => {
                if !busy && !self.withdrawals_pending() {
                    self.phase = Phase::Finished(SessionState::Cancelled);
                    self.out.push(Command::Finish(SessionState::Cancelled));
                }
            }
            Phase::Interrupting(_) => {
                if !busy && !self.withdrawals_pending() {
                    self.end_interrupted();
                }
            }
            Phase::Draining => {
                if !busy && !self.withdrawals_pending() {
                    self.end_drain(now);
                }
            }
            // Only a person ends a freeze.
            Phase::Frozen => {}
            Phase::RollingBack => self.rollback_progress(now),
            Phase::Finished(_) => {}
        }
    }
}
