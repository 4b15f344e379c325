//! Signals, barriers and lock deadlocks, as far as the orchestrator decides them.
//!
//! Workers release a barrier themselves when they see everyone arrived and take named
//! locks with kernel flocks: those rules stay in the worker (as pure functions shared
//! with this module), so no barrier or lock waits for the orchestrator. What is decided
//! here: recording a barrier's release, breaking a barrier a participant can no longer
//! reach, failing the wait of a deadlock's victim, and skipping the waiters of a signal
//! no one can raise any more.

use std::time::Instant;

use super::{BarrierScan, Command, Engine, PrimScan, Stall, WorkerState};
use crate::journal::event::Event;
use crate::proto::TaskState;

impl Engine {
    pub(super) fn primitives(&mut self, scan: PrimScan, now: Instant) {
        for name in &scan.raised {
            self.signal_raised(name);
        }
        self.barriers(scan.barriers);
        self.locks(&scan.locks, now);
        if self.stall == Stall::Suspected {
            self.stall = Stall::Confirmed;
        }
    }

    /// A suspected deadlock is due for its second look.
    pub(super) fn deadlock_due(&mut self, now: Instant) {
        if let Some((_, at)) = &self.suspect
            && now >= *at + self.cfg.deadlock_confirm
        {
            self.out.push(Command::Rescan);
        }
    }

    fn signal_raised(&mut self, name: &str) {
        let Some(node) = self.graph.signal(name).map(|n| n.index()) else {
            return;
        };
        if self.sched.is_open(node) {
            self.journal(Event::SignalRaised {
                signal: name.to_string(),
            });
            self.sched.succeed(node);
            self.stall = Stall::No;
        }
    }

    /// Nothing runs, nothing is ready, no retry is pending: signals not raised by now
    /// never will be, and their waiters are skipped instead of hanging the session. One
    /// more look at the files first (a signal may have been raised since the last one).
    pub(super) fn check_stall(&mut self) {
        if self.graph.signals().is_empty() || self.sched.finished() || !self.running() {
            self.stall = Stall::No;
            return;
        }
        let busy = self
            .workers
            .values()
            .any(|w| matches!(w.state, WorkerState::Busy { .. }) || w.queued.is_some());
        if busy || !self.retrying.is_empty() || self.sched.has_ready() || self.any_gate_waiting() {
            self.stall = Stall::No;
            return;
        }
        match self.stall {
            Stall::No => {
                self.stall = Stall::Suspected;
                self.out.push(Command::Rescan);
            }
            Stall::Suspected => {}
            Stall::Confirmed => {
                self.stall = Stall::No;
                for (name, node) in self.graph.signals().to_vec() {
                    let node = node.index();
                    if self.sched.is_open(node) {
                        self.journal(Event::SignalNeverRaised {
                            signal: name.clone(),
                        });
                        let skipped = self.sched.fail(node);
                        self.propagate(
                            skipped,
                            TaskState::Skipped,
                            &format!("signal {name} was never raised"),
                        );
                    }
                }
            }
        }
    }

    /// Record barriers whose participants all arrived; break those a participant can no
    /// longer reach.
    fn barriers(&mut self, scans: Vec<BarrierScan>) {
        for scan in scans {
            if scan.decided {
                continue;
            }
            let def = self
                .plan
                .checkpoints
                .iter()
                .find(|c| c.name == scan.name)
                .cloned();
            let tasks = def.as_ref().map(|c| c.tasks.as_slice());
            if super::barrier::all_arrived(tasks, &scan.arrived) {
                self.out.push(Command::ReleaseBarrier {
                    name: scan.name.clone(),
                });
                self.journal(Event::CheckpointReleased {
                    checkpoint: scan.name,
                    arrived: scan.arrived.len(),
                });
                continue;
            }
            let Some(c) = def else {
                continue;
            };
            let has = |t: &str| scan.arrived.iter().any(|a| a.task == t);
            // Broken: a participant that ended for good without arriving.
            let broken = c.tasks.iter().filter(|t| !has(t)).find_map(|t| {
                let i = self.index.get(t.as_str()).copied()?;
                let st = self.tasks[i].decided?;
                let why = match (st, &self.tasks[i].reason) {
                    (TaskState::Succeeded, _) => "finished without arriving".to_string(),
                    (st, Some(r)) => format!("{} ({r})", st.as_str()),
                    (st, None) => st.as_str().to_string(),
                };
                Some((t.clone(), why))
            });
            if let Some((task, reason)) = broken {
                self.out.push(Command::BreakBarrier {
                    name: scan.name.clone(),
                    task: task.clone(),
                    reason: reason.clone(),
                });
                self.journal(Event::CheckpointBroken {
                    checkpoint: scan.name,
                    task,
                    reason,
                });
            }
        }
    }

    /// Break lock deadlocks: fail the wait of the lowest-priority task in a cycle, once
    /// the same cycle was seen twice `deadlock_confirm` apart.
    fn locks(
        &mut self,
        locks: &std::collections::BTreeMap<String, super::deadlock::LockView>,
        now: Instant,
    ) {
        if locks.values().all(|v| v.waiters.is_empty()) {
            self.suspect = None;
            return;
        }
        let plan = &self.plan;
        let priority = |t: &str| {
            plan.tasks
                .iter()
                .find(|x| x.id == t)
                .map_or(0, |x| x.priority)
        };
        let found = super::deadlock::find_deadlock(locks, &priority);
        let confirmed = match (&found, &self.suspect) {
            (Some(d), Some((seen, at))) => {
                d == seen && now.saturating_duration_since(*at) >= self.cfg.deadlock_confirm
            }
            _ => false,
        };
        if !confirmed {
            if found.as_ref() != self.suspect.as_ref().map(|s| &s.0) {
                self.suspect = found.map(|d| (d, now));
            }
            return;
        }
        self.suspect = None;
        if let Some(d) = found {
            self.out.push(Command::AbortLockWait {
                lock: d.lock.clone(),
                victim: d.victim.clone(),
                cycle: d.cycle.clone(),
            });
        }
    }
}
