//! What the model checks: the journal and the commands as they go by (who holds each
//! task, whose exit was accepted, each decision), the worker limit after every step, and
//! liveness at the end of the calm phase.

use super::World;
use crate::engine::*;
use crate::journal::EndReason;
use crate::proto::{AuxKind, AuxState};

impl World {
    /// Follow the journal: who holds each task now, and whose exit was accepted.
    pub(super) fn observe(&mut self, ev: &Event) {
        self.history.apply(ev);
        match ev {
            Event::TaskAssigned {
                task,
                attempt,
                worker,
                ..
            } => {
                self.current
                    .insert(task.clone(), (*attempt, worker.clone()));
            }
            Event::TaskAdopted {
                task,
                attempt,
                worker,
            } => {
                self.stats.adopted += 1;
                self.current
                    .insert(task.clone(), (*attempt, worker.clone()));
            }
            Event::TaskWithdrawn {
                task,
                attempt,
                worker,
            } if self.current.get(task) == Some(&(*attempt, worker.clone())) => {
                self.current.remove(task);
            }
            Event::AuxWithdrawn {
                kind: AuxKind::Cleanup,
                of,
                attempt,
                ..
            } => {
                let key = (of.clone(), *attempt);
                assert!(
                    !self.cleanup_ended.contains_key(&key),
                    "the cleanup of {of} attempt {attempt} was taken back once it had ended"
                );
                self.cleanup_started.remove(&key);
            }
            Event::CleanupStarted(st) => {
                let key = (st.of.clone(), st.attempt);
                let t = self.ix(&st.of);
                assert!(
                    self.spec.cleanup[t].is_some(),
                    "{}: a cleanup started, but the task has none",
                    st.of
                );
                assert!(
                    self.began.contains(&key),
                    "the cleanup of {} attempt {} started, but that attempt never started",
                    st.of,
                    st.attempt
                );
                let old = self
                    .cleanup_started
                    .insert(key, (st.worker.clone(), st.seq));
                assert!(
                    old.is_none(),
                    "the cleanup of {} attempt {} started twice: on {:?}, then on {}",
                    st.of,
                    st.attempt,
                    old,
                    st.worker
                );
                self.stats.cleanups_started += 1;
            }
            Event::CleanupEnded(end) => {
                let key = (end.of.clone(), end.attempt);
                let start = self.cleanup_started.get(&key);
                assert!(
                    start.is_some(),
                    "the cleanup of {} attempt {} ended, never started",
                    end.of,
                    end.attempt
                );
                assert_eq!(
                    end.worker.as_ref(),
                    start.map(|s| &s.0),
                    "the cleanup of {} attempt {} ended on another worker than its own",
                    end.of,
                    end.attempt
                );
                let old = self.cleanup_ended.insert(key, end.state);
                assert!(
                    old.is_none(),
                    "the cleanup of {} attempt {} ended twice: {old:?}, then {:?}",
                    end.of,
                    end.attempt,
                    end.state
                );
                match end.state {
                    AuxState::Succeeded => self.stats.cleanups_succeeded += 1,
                    AuxState::Failed => self.stats.cleanups_failed += 1,
                    AuxState::Unknown => self.stats.cleanups_unknown += 1,
                    AuxState::Skipped => panic!("a cleanup skipped: {ev:?}"),
                }
            }
            Event::TasksAdded { tasks } => self.tasks_journalled(tasks),
            Event::SessionDraining { .. } => self.stats.stops += 1,
            ev if ev.as_aux_start().is_some() || ev.as_aux_end().is_some() => {
                panic!("no gate checks, emergency or rollback commands here: {ev:?}")
            }
            Event::AttemptEnded { worker: None, .. } => {
                panic!("an ended attempt names its worker: {ev:?}")
            }
            Event::AttemptEnded {
                task,
                attempt,
                worker: Some(worker),
                reason,
            } => {
                let held = self.current.get(task) == Some(&(*attempt, worker.clone()));
                if held {
                    self.current.remove(task);
                }
                match reason {
                    EndReason::Exited | EndReason::Failed | EndReason::TimedOut => {
                        // An exit accepted: only the latest assignment's, and only once.
                        assert!(
                            held,
                            "{task}: the exit of attempt {attempt} on {worker} accepted, \
                             but the latest assignment is {:?}",
                            self.current.get(task)
                        );
                        self.accepted
                            .insert(task.clone(), (*attempt, worker.clone()));
                        self.accepted_ever
                            .insert((task.clone(), *attempt, worker.clone()));
                    }
                    EndReason::WorkerLost => self.stats.workers_lost += 1,
                    EndReason::Reassigned => self.stats.reassigned += 1,
                    EndReason::Stale => {
                        // Read twice, an accepted exit is still the accepted one.
                        assert!(
                            !self
                                .accepted_ever
                                .contains(&(task.clone(), *attempt, worker.clone())),
                            "{task}: the accepted exit of attempt {attempt} on {worker} \
                             journalled stale"
                        );
                        self.stats.stale += 1;
                    }
                    EndReason::Cancelled | EndReason::Lost | EndReason::Interrupted => {
                        panic!(
                            "{task} attempt {attempt} ended {reason:?}: no one cancels or \
                             interrupts, and there are no races"
                        )
                    }
                }
            }
            _ => {}
        }
    }

    fn ix(&self, id: &str) -> TaskIx {
        self.e.task_index(id).expect("a task of the plan")
    }

    pub(super) fn decision(&mut self, d: &Decision) {
        let id = self.id(d.task);
        assert!(
            !self.decided.contains_key(&id),
            "{id} decided twice: {:?} then {:?}",
            self.decided.get(&id),
            d.state
        );
        let dep_states: Vec<Option<TaskState>> = self.spec.deps[d.task]
            .iter()
            .map(|&p| self.decided.get(&self.id(p)).copied())
            .collect();
        match d.state {
            TaskState::Succeeded => assert!(
                dep_states.iter().all(|s| *s == Some(TaskState::Succeeded)),
                "{id} succeeded before its dependencies"
            ),
            TaskState::Skipped => assert!(
                dep_states
                    .iter()
                    .any(|s| s.is_some_and(|s| s != TaskState::Succeeded)),
                "{id} skipped while no dependency failed"
            ),
            TaskState::Failed => {}
            // A stop's end: what did not start is cancelled, with what comes after it.
            TaskState::Cancelled if self.history.draining.is_some() => {
                self.stats.decided_by_stop += 1;
            }
            s => panic!("{id} decided {s:?}: no one cancels and there are no races"),
        }
        if let Some(rec) = &d.exit {
            self.stats.decided_by_exit += 1;
            let worker = d.worker.clone().expect("an accepted exit has its worker");
            assert_eq!(
                self.accepted.get(&id),
                Some(&(d.attempt, worker.clone())),
                "{id} decided by attempt {} on {worker}, not the exit just accepted",
                d.attempt
            );
            assert_eq!(
                (rec.worker.as_str(), rec.attempt),
                (worker.as_str(), d.attempt)
            );
            let on_disk = self.exits.get(&(id.clone(), d.attempt));
            assert_eq!(
                on_disk.map(|r| r.worker.as_str()),
                Some(worker.as_str()),
                "{id}: no exit of attempt {} written by {worker}",
                d.attempt
            );
            assert_eq!(d.state == TaskState::Succeeded, rec.succeeded());
            if d.state == TaskState::Failed {
                assert_eq!(
                    self.retries_used.get(&id).copied().unwrap_or(0),
                    self.spec.retries[d.task],
                    "{id} failed before its retries were used"
                );
            }
        } else if d.state == TaskState::Failed
            && self.history.draining.is_some()
            && d.reason.as_deref() == Some("not retried: the session was stopped")
        {
            // A stop's end: a task waiting to be retried fails.
            assert!(
                self.retries_used.get(&id).is_some_and(|&n| n > 0),
                "{id} failed as not retried, but no retry was scheduled"
            );
            self.stats.decided_by_stop += 1;
        } else if d.state == TaskState::Failed {
            self.stats.lost_too_often += 1;
        }
        self.decided.insert(id, d.state);
    }

    pub(super) fn check_step(&mut self) {
        self.stats.steps += 1;
        // Workers running their task's current attempt: never more than the limit (an
        // attempt being stopped after a reassign no longer counts).
        let current = self
            .e
            .live_workers()
            .filter(|(w, s)| {
                matches!(s, WorkerState::Busy { task, attempt }
                    if self.e.fence(*task) == Some((*attempt, w)))
            })
            .count();
        let limit = self.spec.workers;
        assert!(
            current <= limit,
            "{current} workers run current attempts, limit {limit}"
        );
        // Processes of current attempts in the world.
        let running = self
            .workers
            .iter()
            .filter(|(id, w)| {
                w.alive
                    && w.running.as_ref().is_some_and(|(t, a, started)| {
                        *started && self.current.get(t) == Some(&(*a, id.to_string()))
                    })
            })
            .count();
        assert!(
            running <= limit,
            "{running} current attempts run, limit {limit}"
        );
        // Workers running cleanups: never more than `cleanup_workers`, in the engine and
        // in the world (a cleanup whose run was judged no longer counts).
        let aux = self.spec.cleanup_workers;
        let busy = self
            .e
            .live_workers()
            .filter(|(_, s)| matches!(s, WorkerState::Aux { .. }))
            .count();
        assert!(busy <= aux, "{busy} workers run cleanups, limit {aux}");
        let running = self
            .workers
            .iter()
            .filter(|(id, w)| {
                w.alive
                    && w.running.as_ref().is_some_and(|(name, a, started)| {
                        *started
                            && AuxKind::parse_job(name).is_some_and(|(owner, _)| {
                                let key = (owner.to_string(), *a);
                                !self.cleanup_ended.contains_key(&key)
                                    && self.cleanup_started.get(&key).map(|s| s.0.as_str())
                                        == Some(id.as_str())
                            })
                    })
            })
            .count();
        assert!(running <= aux, "{running} cleanups run, limit {aux}");
    }

    pub(super) fn check_end(&self) {
        assert!(
            self.finished.is_some(),
            "the session did not finish; undecided: {:?}",
            (0..self.spec.n())
                .filter(|&t| self.e.decided(t).is_none())
                .map(|t| (self.id(t), self.e.fence(t), self.e.attempts(t)))
                .collect::<Vec<_>>()
        );
        // Every task counts, the added ones too: the engine's plan, the world's and its
        // spec agree, and each task was decided.
        assert_eq!(self.e.plan().tasks.len(), self.spec.n());
        assert_eq!(self.plan.tasks.len(), self.spec.n());
        assert_eq!(self.history.tasks_added, self.spec.n());
        assert_eq!(self.decided.len(), self.spec.n());
        for t in 0..self.spec.n() {
            let id = self.id(t);
            let s = self.decided.get(&id).copied();
            assert!(s.is_some(), "{id} never decided");
            assert_eq!(
                self.e.decided(t),
                s,
                "{id}: the engine and its outcome disagree"
            );
        }
        let failed = self
            .decided
            .values()
            .any(|s| matches!(s, TaskState::Failed | TaskState::Skipped));
        let cancelled = self.decided.values().any(|s| *s == TaskState::Cancelled);
        let want = if failed {
            SessionState::Failed
        } else if cancelled {
            SessionState::Cancelled
        } else {
            SessionState::Succeeded
        };
        assert_eq!(self.finished, Some(want));
        assert_eq!(self.unanswered, 0, "a request was never answered");
        // Every attempt that started had its cleanup run once (when its task has one,
        // and some orchestrator could know it started), and every cleanup that started
        // ended.
        for (task, attempt) in self.began.difference(&self.unseen_at_finish) {
            if self.spec.cleanup[self.ix(task)].is_some() {
                assert!(
                    self.cleanup_started.contains_key(&(task.clone(), *attempt)),
                    "{task} attempt {attempt} started, its cleanup never did"
                );
            }
        }
        for key in self.cleanup_started.keys() {
            assert!(
                self.cleanup_ended.contains_key(key),
                "the cleanup of {key:?} started and never ended"
            );
        }
    }
}
