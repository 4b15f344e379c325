//! Auxiliary commands: what runs beside the tasks without being one. A gate's check
//! (`run`), a task's `cleanup` after each attempt that ran, its `emergency` command when
//! a failure freezes the session while it runs, and its `rollback`.
//!
//! Each is run like an attempt: handed to a worker through an assignment (named
//! `OWNER+KIND.N`, see [`AuxKind::job`]), fenced by the journal line that precedes it
//! (`check_started`, `cleanup_started`, ...), logged under `tasks/OWNER+KIND/attempt-N/`,
//! bounded by a timeout, and ended by one journal line (`..._ended`). They run on at most
//! `cleanup_workers` workers at once, in addition to the `workers` that run tasks, so a
//! cleanup never delays a task's start. One whose runner died without an exit record is
//! `unknown` and is not run again by itself: a cleanup or a rollback may not be safe to
//! repeat (a check is, and runs again).

use std::time::{Duration, Instant};

use super::{Command, Engine, Exit, Phase, TaskIx, WorkerState};
use crate::journal::event::{AuxEnd, AuxStart, Event};
use crate::proto::{AuxKind, AuxState};

/// An auxiliary job's index in the engine's list.
pub type AuxIx = usize;

/// Which command: its kind and owner (a task's index; a gate's for a check).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AuxRef {
    pub kind: AuxKind,
    pub owner: usize,
}

/// One run of an auxiliary command.
#[derive(Debug, Clone)]
pub(super) struct AuxJob {
    pub(super) job: AuxRef,
    pub(super) attempt: u32,
    /// Not before this (a cleanup's `cleanup_delay`).
    pub(super) due: Instant,
    /// The fence: the worker it was handed to.
    pub(super) worker: Option<String>,
    pub(super) started: bool,
    pub(super) ended: Option<AuxState>,
}

/// How often a check whose runner was lost runs again before its gate fails.
const CHECK_RUNS: u32 = 3;

impl Engine {
    /// The id of a job's owner (a task's, or a gate's).
    pub(super) fn aux_owner_id(&self, job: AuxRef) -> String {
        match job.kind {
            AuxKind::Check => self.plan.gates[job.owner].id.clone(),
            _ => self.plan.tasks[job.owner].id.clone(),
        }
    }

    /// The job run `attempt` of `job` is, by its assignment's name.
    pub(super) fn aux_by_name(&self, name: &str, attempt: u32) -> Option<AuxIx> {
        let (owner, kind) = AuxKind::parse_job(name)?;
        let owner = match kind {
            AuxKind::Check => self.plan.gates.iter().position(|g| g.id == owner)?,
            _ => *self.index.get(owner)?,
        };
        self.aux_index
            .get(&(AuxRef { kind, owner }, attempt))
            .copied()
    }

    /// Schedule run `attempt` of `job`, not before `due`; a run already known is never
    /// scheduled again.
    pub(super) fn schedule_aux(&mut self, job: AuxRef, attempt: u32, due: Instant) -> AuxIx {
        if let Some(&ix) = self.aux_index.get(&(job, attempt)) {
            return ix;
        }
        let ix = self.aux.len();
        self.aux.push(AuxJob {
            job,
            attempt,
            due,
            worker: None,
            started: false,
            ended: None,
        });
        self.aux_index.insert((job, attempt), ix);
        self.aux_active.insert(ix);
        ix
    }

    /// The number of `job`'s next run.
    pub(super) fn next_aux_attempt(&self, job: AuxRef) -> u32 {
        self.aux_index
            .range((job, 0)..=(job, u32::MAX))
            .next_back()
            .map_or(1, |((_, a), _)| a + 1)
    }

    /// The last run of `job`, if any.
    pub(super) fn last_aux(&self, job: AuxRef) -> Option<&AuxJob> {
        self.aux_index
            .range((job, 0)..=(job, u32::MAX))
            .next_back()
            .map(|(_, &ix)| &self.aux[ix])
    }

    /// Attempt `attempt` of task `t` ran and is over: its cleanup is owed (once).
    pub(super) fn owe_cleanup(&mut self, t: TaskIx, attempt: u32, now: Instant) {
        let spec = &self.plan.tasks[t];
        if spec.cleanup.is_none() || attempt == 0 {
            return;
        }
        let due = now + Duration::from_millis(spec.cleanup_delay_ms);
        let job = AuxRef {
            kind: AuxKind::Cleanup,
            owner: t,
        };
        self.schedule_aux(job, attempt, due);
    }

    /// Whether a job of `kind` may start in the session's phase. A freeze starts only
    /// emergency commands (a cleanup waits for the thaw); a rollback runs alone.
    pub(super) fn aux_may_start(&self, kind: AuxKind) -> bool {
        match kind {
            AuxKind::Emergency => matches!(
                self.phase,
                Phase::Frozen | Phase::Cancelling | Phase::RollingBack
            ),
            AuxKind::Rollback => self.phase == Phase::RollingBack,
            AuxKind::Check => self.phase == Phase::Running,
            AuxKind::Cleanup => matches!(
                self.phase,
                Phase::Running | Phase::Cancelling | Phase::Draining | Phase::RollingBack
            ),
        }
    }

    /// Workers running an auxiliary command.
    pub(super) fn aux_busy(&self) -> usize {
        self.workers
            .values()
            .filter(|w| matches!(w.state, WorkerState::Aux { .. }))
            .count()
    }

    /// Jobs not handed out yet that may start in this phase (now or after their delay).
    pub(super) fn aux_wanted(&self) -> usize {
        self.aux_active
            .iter()
            .filter(|&&ix| {
                self.aux[ix].worker.is_none() && self.aux_may_start(self.aux[ix].job.kind)
            })
            .count()
    }

    /// Jobs that keep the session from ending: handed out, or waiting to start in this
    /// phase.
    pub(super) fn aux_outstanding(&self) -> bool {
        self.aux_active
            .iter()
            .any(|&ix| self.aux[ix].worker.is_some() || self.aux_may_start(self.aux[ix].job.kind))
    }

    /// Whether a cleanup or an emergency command is running or due (a rollback step
    /// waits for them).
    pub(super) fn others_outstanding(&self) -> bool {
        self.aux_active
            .iter()
            .any(|&ix| self.aux[ix].job.kind != AuxKind::Rollback)
    }

    /// The earliest due time of a job that waits out a delay.
    pub(super) fn aux_deadline(&self, now: Instant) -> Option<Instant> {
        self.aux_active
            .iter()
            .map(|&ix| &self.aux[ix])
            .filter(|j| j.worker.is_none() && j.due > now && self.aux_may_start(j.job.kind))
            .map(|j| j.due)
            .min()
    }

    /// Hand out the jobs that are due, to idle workers, up to `cleanup_workers` at once;
    /// start a worker for them when none is idle and the pool allows one more.
    pub(super) fn dispatch_aux(&mut self, now: Instant) {
        if self.aux_active.is_empty() || self.finished() || self.fatal.is_some() {
            return;
        }
        let limit = self.plan.cleanup_workers.max(1);
        let due: Vec<AuxIx> = self
            .aux_active
            .iter()
            .copied()
            .filter(|&ix| {
                let j = &self.aux[ix];
                j.worker.is_none() && j.due <= now && self.aux_may_start(j.job.kind)
            })
            .collect();
        let mut left = limit.saturating_sub(self.aux_busy());
        let mut idle = self.idle();
        idle.reverse();
        let mut waiting = 0;
        for ix in due {
            if left == 0 {
                break;
            }
            match idle.pop() {
                Some(wid) => {
                    self.assign_aux(ix, &wid, now);
                    left -= 1;
                }
                None => waiting += 1,
            }
        }
        // Workers for the rest: those starting count, less the ones the tasks will take
        // (tasks take a registered worker first).
        let starting = self
            .workers
            .values()
            .filter(|w| w.state == WorkerState::Starting)
            .count();
        let for_tasks = if self.running() {
            self.sched
                .not_started()
                .min(self.cfg.workers.saturating_sub(self.running_count()))
        } else {
            0
        };
        let spare = starting.saturating_sub(for_tasks);
        for _ in 0..waiting.min(left).saturating_sub(spare) {
            if self.live_count() >= self.cfg.workers + limit {
                break;
            }
            self.spawn_worker(now);
        }
    }

    /// Job `ix` goes to worker `wid`: the fence first, in the journal.
    fn assign_aux(&mut self, ix: AuxIx, wid: &str, now: Instant) {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.saturating_add(1);
        let (job, attempt) = (self.aux[ix].job, self.aux[ix].attempt);
        self.aux[ix].worker = Some(wid.to_string());
        self.aux[ix].started = false;
        self.journal(Event::aux_started(
            job.kind,
            AuxStart {
                of: self.aux_owner_id(job),
                attempt,
                worker: wid.to_string(),
                seq,
            },
        ));
        self.out.push(Command::AssignAux {
            worker: wid.to_string(),
            job,
            attempt,
            seq,
        });
        if let Some(w) = self.workers.get_mut(wid) {
            w.state = WorkerState::Aux { job: ix };
            w.busy_since = now;
        }
    }

    /// A job's worker journalled its start.
    pub(super) fn aux_started(&mut self, ix: AuxIx, wid: &str) {
        let j = &mut self.aux[ix];
        if j.worker.as_deref() == Some(wid) && j.ended.is_none() {
            j.started = true;
        }
    }

    /// Job `ix` ended on `wid` with this exit.
    pub(super) fn aux_exited(&mut self, wid: &str, ix: AuxIx, exit: Exit, now: Instant) {
        let (job, attempt) = (self.aux[ix].job, self.aux[ix].attempt);
        let mut retire = false;
        if let Some(w) = self.workers.get_mut(wid)
            && w.state == (WorkerState::Aux { job: ix })
        {
            w.state = WorkerState::Idle;
            w.busy_since = now;
            retire = true;
        }
        let current = self.aux[ix].worker.as_deref() == Some(wid) && self.aux[ix].ended.is_none();
        if retire || current {
            self.out.push(Command::RetireAux {
                worker: wid.to_string(),
                job,
                attempt,
            });
        }
        if !current {
            // Judged already (its runner was declared lost): the late record stays on
            // disk and changes nothing.
            return;
        }
        let Exit::Record { record, .. } = exit;
        let (state, reason) = if record.succeeded() {
            (AuxState::Succeeded, None)
        } else {
            (AuxState::Failed, record.failure_reason())
        };
        self.end_aux(ix, state, record.exit_code, reason, now);
    }

    /// Job `ix`'s runner `wid` is gone without an exit record: `unknown`, and its group
    /// is stopped (it would outlive its worker).
    pub(super) fn aux_lost(&mut self, wid: &str, ix: AuxIx, now: Instant) {
        let (job, attempt) = (self.aux[ix].job, self.aux[ix].attempt);
        self.out.push(Command::KillAuxGroup {
            worker: wid.to_string(),
            job,
            attempt,
            process: None,
        });
        if self.aux[ix].worker.as_deref() == Some(wid) && self.aux[ix].ended.is_none() {
            let why = format!("worker {wid} was lost without recording an exit");
            self.end_aux(ix, AuxState::Unknown, None, Some(why), now);
        }
    }

    /// Record how job `ix` ended, and what that means for its owner.
    pub(super) fn end_aux(
        &mut self,
        ix: AuxIx,
        state: AuxState,
        exit_code: Option<i32>,
        reason: Option<String>,
        now: Instant,
    ) {
        let (job, attempt) = (self.aux[ix].job, self.aux[ix].attempt);
        self.aux[ix].ended = Some(state);
        self.aux_active.remove(&ix);
        self.journal(Event::aux_ended(
            job.kind,
            AuxEnd {
                of: self.aux_owner_id(job),
                attempt,
                worker: self.aux[ix].worker.clone(),
                state,
                exit_code,
                reason: reason.clone(),
            },
        ));
        match job.kind {
            AuxKind::Check => self.check_ended(job.owner, attempt, state, reason, now),
            AuxKind::Rollback => self.rollback_step_ended(job.owner, state, reason),
            // Reported, never fatal: the task's outcome stands.
            AuxKind::Cleanup | AuxKind::Emergency => {}
        }
    }

    /// A check of gate `g` ended: passed, failed, or lost with its runner (run again, a
    /// few times).
    fn check_ended(
        &mut self,
        g: usize,
        attempt: u32,
        state: AuxState,
        reason: Option<String>,
        now: Instant,
    ) {
        match state {
            AuxState::Succeeded => self.gate_checked(g),
            AuxState::Unknown if attempt < CHECK_RUNS => {
                let job = AuxRef {
                    kind: AuxKind::Check,
                    owner: g,
                };
                self.schedule_aux(job, attempt + 1, now);
            }
            _ => {
                let why = reason.unwrap_or_else(|| state.as_str().to_string());
                self.gate_failed(g, format!("its check failed: {why}"));
            }
        }
    }

    /// Jobs not handed out that can no longer start (a check once the session stops
    /// running): dropped, never journalled, since they never began.
    pub(super) fn drop_unstartable_checks(&mut self) {
        if self.phase == Phase::Running {
            return;
        }
        let dead: Vec<AuxIx> = self
            .aux_active
            .iter()
            .copied()
            .filter(|&ix| self.aux[ix].worker.is_none() && self.aux[ix].job.kind == AuxKind::Check)
            .collect();
        for ix in dead {
            self.aux_active.remove(&ix);
        }
    }

    /// Workers running auxiliary commands, with what they run.
    pub(super) fn aux_running(&self) -> Vec<(String, AuxIx)> {
        self.workers
            .iter()
            .filter_map(|(id, w)| match w.state {
                WorkerState::Aux { job } => Some((id.clone(), job)),
                _ => None,
            })
            .collect()
    }
}
