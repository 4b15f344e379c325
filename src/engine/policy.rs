//! What a failure does to the session (`on_failure`), and undoing (`orchestrator
//! rollback`).
//!
//! `continue` leaves the rest running; `stop` drains (`control.rs`); `freeze` stops every
//! running attempt where it is (the workers' act), writes a snapshot of the session's
//! state files, runs the `emergency` command of each task that was running, and waits
//! for a person: thaw, rollback or cancel. Frozen attempts are not lost: their workers
//! are alive and keep their leases.
//!
//! A rollback first stops whatever still runs (as a cancel does), lets the cleanups
//! finish, then runs the `rollback` command of every succeeded task that has one, last
//! completed first, one at a time. Each step is journalled before it is handed out
//! (`rollback_started`), so a step whose runner died without an exit record is known to
//! be `unknown`: the rollback stops there and a person says whether it runs again or is
//! done. A failed step stops it too; asking again runs that step again. A rollback
//! never changes a task's outcome: it has its own records.

use std::time::Instant;

use super::aux::AuxRef;
use super::{Command, Engine, Phase, TaskIx};
use crate::journal::event::Event;
use crate::plan::OnFailure;
use crate::proto::{AuxKind, AuxState, SessionState, UnknownStep};

/// The rollback the session is in (or stopped in).
#[derive(Debug, Clone, Default)]
pub(super) struct Rollback {
    /// Tasks whose `rollback` runs, in order.
    pub(super) steps: Vec<TaskIx>,
    /// A person's word on an unknown step, for this request.
    pub(super) unknown: Option<UnknownStep>,
}

impl Engine {
    /// A task's final failure, or a failed or rejected gate: what the policy says.
    pub(super) fn apply_failure_policy(&mut self, policy: OnFailure, what: String) {
        match policy {
            OnFailure::Continue => {}
            OnFailure::Stop => self.drain(format!("{what} (on_failure = stop)")),
            OnFailure::Freeze => self.freeze_for_failure(format!("{what} (on_failure = freeze)")),
        }
    }

    /// Freeze because of a failure: stop every running attempt where it is, snapshot
    /// the session, run the emergency commands of the tasks that were running.
    fn freeze_for_failure(&mut self, why: String) {
        if self.phase != Phase::Running {
            return;
        }
        self.phase = Phase::Frozen;
        self.journal(Event::SessionFrozen {
            why,
            emergency: true,
        });
        self.withdraw_all();
        self.out.push(Command::Freeze(true));
        self.out.push(Command::Snapshot);
        let running: Vec<TaskIx> = self
            .running_attempts()
            .into_iter()
            .filter(|(w, t, a)| {
                self.tasks[*t]
                    .fence
                    .as_ref()
                    .is_some_and(|(fa, fw)| fa == a && fw == w)
                    && self.tasks[*t].decided.is_none()
            })
            .map(|(_, t, _)| t)
            .collect();
        for t in running {
            self.owe_emergency(t, self.now);
        }
    }

    /// Task `t` was running when a failure froze the session: its emergency command
    /// runs (if it has one).
    pub(super) fn owe_emergency(&mut self, t: TaskIx, now: Instant) {
        if self.plan.tasks[t].emergency.is_none() {
            return;
        }
        let job = AuxRef {
            kind: AuxKind::Emergency,
            owner: t,
        };
        let attempt = self.next_aux_attempt(job);
        self.schedule_aux(job, attempt, now);
    }

    /// The rollback's steps as the plan and the completion order give them.
    fn rollback_steps(&self) -> Vec<TaskIx> {
        self.completed
            .iter()
            .rev()
            .copied()
            .filter(|&t| self.plan.tasks[t].rollback.is_some())
            .collect()
    }

    /// `orchestrator rollback`.
    pub(super) fn rollback_requested(
        &mut self,
        unknown: Option<UnknownStep>,
        now: Instant,
    ) -> Result<String, String> {
        match self.phase {
            Phase::Frozen => {}
            Phase::Finished(SessionState::Interrupted) => {
                return Err("the session was interrupted; resume or cancel it first".into());
            }
            Phase::Finished(SessionState::RolledBack) => {
                return Err("the session is already rolled back".into());
            }
            Phase::Finished(_) => {}
            Phase::RollingBack => {
                // Taken over after its orchestrator died: it goes on from its journal.
                let left = self.rollback.as_ref().map_or(0, |r| {
                    r.steps.iter().filter(|&&t| !self.step_done(t)).count()
                });
                return Ok(format!(
                    "the rollback under way goes on ({left} step{} left)",
                    if left == 1 { "" } else { "s" }
                ));
            }
            _ => {
                return Err(
                    "the session is still running: freeze it (`orchestrator freeze`) or let it \
                     end, then roll back"
                        .into(),
                );
            }
        }
        let steps = self.rollback_steps();
        // A step that stopped the last rollback: a failed one runs again; an unknown one
        // only on a person's word.
        let mut note = String::new();
        if let Some(&t) = steps.iter().find(|&&t| !self.step_done(t)) {
            let job = AuxRef {
                kind: AuxKind::Rollback,
                owner: t,
            };
            if let Some(last) = self.last_aux(job)
                && last.ended == Some(AuxState::Unknown)
            {
                let id = self.id(t);
                match unknown {
                    None => {
                        return Err(format!(
                            "the rollback of {id} may or may not have run (its runner died \
                             without recording an exit); check by hand, then `orchestrator \
                             rollback {s} --rerun-unknown` to run it again or `--skip-unknown` \
                             if it is done",
                            s = self.cfg.session
                        ));
                    }
                    Some(UnknownStep::Skip) => {
                        let attempt = last.attempt;
                        self.journal(Event::RollbackEnded(crate::journal::event::AuxEnd {
                            of: id.clone(),
                            attempt,
                            worker: None,
                            state: AuxState::Skipped,
                            exit_code: None,
                            reason: Some("done, by a person's word (--skip-unknown)".into()),
                        }));
                        if let Some(&ix) = self.aux_index.get(&(job, attempt)) {
                            self.aux[ix].ended = Some(AuxState::Skipped);
                        }
                        note = format!("; the rollback of {id} counted as done");
                    }
                    Some(UnknownStep::Rerun) => {
                        note = format!("; the rollback of {id} runs again");
                    }
                }
            }
        }
        let from = self.phase;
        self.phase = Phase::RollingBack;
        self.rollback = Some(super::policy::Rollback {
            steps: steps.clone(),
            unknown,
        });
        let names: Vec<String> = steps.iter().map(|&t| self.id(t)).collect();
        self.journal(Event::SessionState {
            state: SessionState::RollingBack,
            why: "rollback requested".into(),
        });
        self.journal(Event::RollbackRequested {
            tasks: names.clone(),
        });
        if from == Phase::Frozen {
            // What still runs is stopped first, as a cancel stops it (thawed so it
            // can die of the signals it is sent).
            self.journal(Event::SessionThawed);
            self.out.push(Command::Freeze(false));
            self.cancel_all("session rolled back", now);
        }
        let left = steps.iter().filter(|&&t| !self.step_done(t)).count();
        let without: Vec<String> = self
            .completed
            .iter()
            .filter(|&&t| self.plan.tasks[t].rollback.is_none())
            .map(|&t| self.id(t))
            .collect();
        let mut msg = format!(
            "rolling back: {left} step{} ({})",
            if left == 1 { "" } else { "s" },
            names.join(", ")
        );
        if !without.is_empty() {
            msg.push_str(&format!(
                "; succeeded without a rollback command (not undone): {}",
                without.join(", ")
            ));
        }
        msg.push_str(&note);
        Ok(msg)
    }

    /// Whether task `t`'s rollback step is done (succeeded, or counted done).
    fn step_done(&self, t: TaskIx) -> bool {
        let job = AuxRef {
            kind: AuxKind::Rollback,
            owner: t,
        };
        self.last_aux(job)
            .is_some_and(|j| matches!(j.ended, Some(AuxState::Succeeded | AuxState::Skipped)))
    }

    /// Run the next rollback step once nothing else runs; end when none is left.
    pub(super) fn rollback_progress(&mut self, now: Instant) {
        if self.phase != Phase::RollingBack {
            return;
        }
        let Some(rb) = self.rollback.clone() else {
            return;
        };
        let tasks_busy = self
            .workers
            .values()
            .any(|w| matches!(w.state, super::WorkerState::Busy { .. }));
        if tasks_busy || self.withdrawals_pending() || self.others_outstanding() {
            return;
        }
        let Some(&t) = rb.steps.iter().find(|&&t| !self.step_done(t)) else {
            self.journal(Event::SessionState {
                state: SessionState::RolledBack,
                why: format!(
                    "{} rollback step{} succeeded",
                    rb.steps.len(),
                    if rb.steps.len() == 1 { "" } else { "s" }
                ),
            });
            self.phase = Phase::Finished(SessionState::RolledBack);
            self.out.push(Command::Finish(SessionState::RolledBack));
            return;
        };
        let job = AuxRef {
            kind: AuxKind::Rollback,
            owner: t,
        };
        match self.last_aux(job).map(|j| (j.ended, j.attempt)) {
            // Running, or handed out.
            Some((None, _)) => {}
            Some((Some(AuxState::Unknown), _)) if rb.unknown != Some(UnknownStep::Rerun) => {}
            Some((Some(AuxState::Failed), _)) | Some((Some(AuxState::Unknown), _)) | None => {
                let attempt = self.next_aux_attempt(job);
                // A request runs a stopped step once: a second failure stops again.
                if let Some(r) = self.rollback.as_mut() {
                    r.unknown = None;
                }
                self.schedule_aux(job, attempt, now);
            }
            Some((Some(_), _)) => {}
        }
    }

    /// A rollback step ended: on to the next, or stop for a person.
    pub(super) fn rollback_step_ended(
        &mut self,
        t: TaskIx,
        state: AuxState,
        reason: Option<String>,
    ) {
        if self.phase != Phase::RollingBack || state == AuxState::Succeeded {
            return;
        }
        let id = self.id(t);
        let why = match state {
            AuxState::Unknown => format!(
                "the rollback of {id} is unknown: its runner died without recording an exit; \
                 check by hand, then `orchestrator rollback {s} --rerun-unknown` or \
                 `--skip-unknown`",
                s = self.cfg.session
            ),
            _ => format!(
                "the rollback of {id} failed ({}); fix it, then `orchestrator rollback {s}` \
                 runs it again and goes on",
                reason.unwrap_or_else(|| state.as_str().into()),
                s = self.cfg.session
            ),
        };
        self.journal(Event::SessionState {
            state: SessionState::RollbackFailed,
            why,
        });
        // Cleanups still running finish first (the session's end waits for them).
        self.phase = Phase::Finished(SessionState::RollbackFailed);
        self.out.push(Command::Finish(SessionState::RollbackFailed));
    }
}
