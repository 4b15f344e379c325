//! The fold of a session's journal into what it says about each task and worker
//! ([`History`]): who holds each task's fence, how every attempt ended, what was decided.
//! Pure: `resume`, `status` and the engine's model apply the same events the same way.

use std::collections::BTreeMap;

use serde::Serialize;

use super::event::{AuxEnd, EndReason, Event};
use crate::proto::{AuxKind, SessionState, TaskState};

/// One attempt of a task as the journal tells it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AttemptHistory {
    pub attempt: u32,
    pub worker: Option<String>,
    /// Why it stopped counting (none while it runs or waits).
    pub ended: Option<EndReason>,
    pub pid: Option<u32>,
    pub proc_start: Option<u64>,
    pub boot_id: Option<String>,
    /// Its late exit was refused as stale.
    pub stale: bool,
}

/// One task as the journal tells it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskHistory {
    /// The fence: the attempt that may report now, and from which worker (none before
    /// the first assignment, after a withdrawal, or once the attempt ended).
    pub fence: Option<(u32, String)>,
    /// The highest attempt number ever assigned (withdrawn ones are given out again).
    pub last_attempt: u32,
    pub attempts: Vec<AttemptHistory>,
    /// The final state, once decided.
    pub decided: Option<TaskState>,
    /// Failed attempts so far (against `retries`).
    pub failures: u32,
    /// Attempts lost with their worker (against `max_reassign`).
    pub reassigns: u32,
    /// A retry is scheduled no earlier than this (Unix ms).
    pub retry_at_unix_ms: Option<u64>,
}

impl TaskHistory {
    pub fn attempt(&self, n: u32) -> Option<&AttemptHistory> {
        self.attempts.iter().find(|a| a.attempt == n)
    }

    /// Decided `state`: the fence and any retry are over.
    fn decide(&mut self, state: TaskState) {
        self.decided = Some(state);
        self.fence = None;
        self.retry_at_unix_ms = None;
    }

    fn attempt_mut(&mut self, n: u32) -> &mut AttemptHistory {
        if let Some(i) = self.attempts.iter().position(|a| a.attempt == n) {
            return &mut self.attempts[i];
        }
        self.attempts.push(AttemptHistory {
            attempt: n,
            ..Default::default()
        });
        self.attempts.sort_by_key(|a| a.attempt);
        let i = self
            .attempts
            .iter()
            .position(|a| a.attempt == n)
            .unwrap_or(0);
        &mut self.attempts[i]
    }
}

/// The session as the journal tells it, folded one event at a time.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Task ids in the order they were added.
    pub task_order: Vec<String>,
    /// How many tasks `tasks_added` lines named: the plan's first this many tasks are
    /// the session's (a crash between writing a grown `plan.json` and its journal line
    /// leaves more in the file, which a resume drops).
    pub tasks_added: usize,
    pub tasks: BTreeMap<String, TaskHistory>,
    /// Workers ever spawned, and whether each was seen leaving.
    pub workers: BTreeMap<String, bool>,
    /// The state the session was last put in (`running` from its start).
    pub state: Option<SessionState>,
    /// `session_finished` seen (and not followed by a retry).
    pub finished: bool,
    /// The state the last `session_finished` gave (a later resume to roll back says
    /// `running` in `state`).
    pub ended: Option<SessionState>,
    pub resumes: u32,
    /// Races decided, with their winner.
    pub races: BTreeMap<String, Option<String>>,
    /// Signals raised (true) or declared never raised (false).
    pub signals: BTreeMap<String, bool>,
    /// The highest assignment `seq` seen (a resumed orchestrator continues above it).
    pub max_seq: u64,
    /// Each gate's last journalled state: waiting, approved, or rejected with why.
    pub gates: BTreeMap<String, GateRecord>,
    /// New starts held for lack of memory: (available, needed) bytes, until resumed.
    pub held: Option<(u64, u64)>,
    /// A partial run's selection (`selection`): the tasks it leaves out, and why.
    pub selection: Vec<(String, crate::plan::Exclusion)>,
    /// Frozen (`session_frozen`, not yet thawed).
    pub frozen: bool,
    /// The worker limit set by the last `orchestrator scale`, if any.
    pub workers_limit: Option<usize>,
    /// Why the session drains, once it does (`session_draining`).
    pub draining: Option<String>,
    /// Each pool's last journalled level and use.
    pub pools: BTreeMap<String, (crate::plan::Level, u64)>,
    /// Every auxiliary command handed out, by (kind, owner, attempt).
    pub aux: BTreeMap<(AuxKind, String, u32), AuxRecord>,
    /// Tasks in the order they were journalled succeeded (a rollback runs them last
    /// first).
    pub succeeded_order: Vec<String>,
    /// The same tasks, to tell whether one is there without searching the list (a
    /// search for each success made folding a 100 000-task journal take minutes).
    /// Ordered, so that a `History` prints the same way however it was built.
    succeeded: std::collections::BTreeSet<String>,
    /// The steps of the last rollback requested, in order.
    pub rollback: Option<Vec<String>>,
    /// A failure froze the session: the tasks running then whose emergency command has
    /// not been handed out yet.
    pub emergency_owed: Vec<String>,
    /// Each agent task's last reported state: attempt, state, message, when.
    pub agents: BTreeMap<String, AgentRecord>,
    /// A failure froze the session and its snapshot is not written yet.
    pub snapshot_owed: bool,
    /// A rollback was requested and has not ended (rolled back, or stopped).
    pub rolling_back: bool,
    pub events: usize,
}

/// An agent task's last reported state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    pub attempt: u32,
    pub state: crate::agent::AgentState,
    pub message: Option<String>,
    pub since: String,
}

/// An auxiliary command's run as the journal tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuxRecord {
    pub worker: String,
    pub seq: u64,
    /// How it ended (none while it runs).
    pub end: Option<AuxEnd>,
}

/// Where a gate stands, as the journal says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateRecord {
    /// Its check (`run`) is running.
    Checking,
    Waiting,
    Approved,
    Rejected(String),
    /// Its check passed and it needs no approval.
    Passed,
    /// Its check failed, with why.
    Failed(String),
}

impl GateRecord {
    /// Whether the gate let the tasks after it go.
    pub fn open(&self) -> bool {
        matches!(self, GateRecord::Approved | GateRecord::Passed)
    }

    /// Why the gate stopped the tasks after it, if it did.
    pub fn refusal(&self) -> Option<&str> {
        match self {
            GateRecord::Rejected(r) | GateRecord::Failed(r) => Some(r),
            _ => None,
        }
    }
}

impl History {
    /// Apply `f` to task `id`'s history, made (and put in `task_order`) if it is new.
    /// Nearly every line names a task already known: it is found with one search by
    /// `&str` (a search of 10 000 string keys misses the cache at each step; `entry`
    /// would also allocate the key), and a closure rather than a returned reference lets
    /// that search's borrow end before a new task is inserted.
    fn task<R>(&mut self, id: &str, f: impl FnOnce(&mut TaskHistory) -> R) -> R {
        if let Some(h) = self.tasks.get_mut(id) {
            return f(h);
        }
        self.task_order.push(id.to_string());
        f(self.tasks.entry(id.to_string()).or_default())
    }

    /// Fold one event in.
    pub fn apply(&mut self, ev: &Event) {
        self.events += 1;
        match ev {
            Event::SessionStarted { .. } => self.state = Some(SessionState::Running),
            Event::TasksAdded { tasks } => {
                self.tasks_added += tasks.len();
                for t in tasks {
                    self.task(t, |_| ());
                }
            }
            Event::SessionResumed { .. } => {
                self.resumes += 1;
                // A resume goes on where the session was: frozen, draining, rolling back.
                self.state = Some(if self.rolling_back {
                    SessionState::RollingBack
                } else if self.frozen {
                    SessionState::Frozen
                } else if self.draining.is_some() {
                    SessionState::Stopping
                } else {
                    SessionState::Running
                });
            }
            Event::SessionRetried { .. } => {
                self.resumes += 1;
                self.finished = false;
                self.state = Some(SessionState::Running);
            }
            Event::RetryRequested { tasks } => {
                for t in tasks {
                    self.succeeded.remove(t);
                }
                let kept = &self.succeeded;
                self.succeeded_order.retain(|s| kept.contains(s));
                for t in tasks {
                    self.task(t, |h| {
                        h.decided = None;
                        h.failures = 0;
                        h.reassigns = 0;
                        h.retry_at_unix_ms = None;
                    });
                }
            }
            Event::WorkerSpawned { worker, .. } | Event::WorkerAdopted { worker } => {
                self.workers.entry(worker.clone()).or_insert(false);
            }
            Event::WorkerRegistered { worker, .. } => {
                self.workers.entry(worker.clone()).or_insert(false);
            }
            Event::WorkerExited { worker, .. } | Event::WorkerLost { worker, .. } => {
                self.workers.insert(worker.clone(), true);
            }
            Event::TaskAssigned {
                task,
                attempt,
                worker,
                seq,
            } => {
                self.max_seq = self.max_seq.max(*seq);
                self.task(task, |h| {
                    h.fence = Some((*attempt, worker.clone()));
                    h.last_attempt = h.last_attempt.max(*attempt);
                    h.retry_at_unix_ms = None;
                    let a = h.attempt_mut(*attempt);
                    a.worker = Some(worker.clone());
                    a.ended = None;
                });
            }
            Event::TaskWithdrawn { task, attempt, .. } => {
                self.task(task, |h| {
                    if h.fence.as_ref().is_some_and(|f| f.0 == *attempt) {
                        h.fence = None;
                    }
                    h.attempts.retain(|a| a.attempt != *attempt);
                    h.last_attempt = h.attempts.iter().map(|a| a.attempt).max().unwrap_or(0);
                });
            }
            Event::TaskAdopted {
                task,
                attempt,
                worker,
            } => {
                self.task(task, |h| {
                    h.fence = Some((*attempt, worker.clone()));
                    h.last_attempt = h.last_attempt.max(*attempt);
                    h.attempt_mut(*attempt).worker = Some(worker.clone());
                });
            }
            Event::TaskStarted {
                task,
                attempt,
                worker,
                pid,
                proc_start,
                boot_id,
            } => {
                self.task(task, |h| {
                    let a = h.attempt_mut(*attempt);
                    a.worker = Some(worker.clone());
                    a.pid = *pid;
                    a.proc_start = *proc_start;
                    a.boot_id.clone_from(boot_id);
                });
            }
            Event::AttemptEnded {
                task,
                attempt,
                worker,
                reason,
            } => {
                self.task(task, |h| {
                    // An accepted exit keeps the fence until what it decided is journalled
                    // (`task_finished` or `retry_scheduled`): a crash in between must leave
                    // that exit to be accepted again on resume, not orphan the task.
                    let accepted = matches!(
                        reason,
                        EndReason::Exited | EndReason::Failed | EndReason::TimedOut
                    );
                    if !accepted && h.fence.as_ref().is_some_and(|f| f.0 == *attempt) {
                        h.fence = None;
                    }
                    if *reason == EndReason::WorkerLost {
                        h.reassigns += 1;
                    }
                    let a = h.attempt_mut(*attempt);
                    if a.worker.is_none() {
                        a.worker.clone_from(worker);
                    }
                    // A late `stale` follows `worker_lost`/`reassigned`: keep the first
                    // reason, why the attempt stopped counting.
                    if *reason == EndReason::Stale {
                        a.stale = true;
                    }
                    if a.ended.is_none() {
                        a.ended = Some(*reason);
                    }
                });
            }
            Event::StaleResult { task, attempt, .. } => {
                self.task(task, |h| h.attempt_mut(*attempt).stale = true);
            }
            Event::RetryScheduled {
                task,
                not_before_unix_ms,
                retry,
                ..
            } => {
                self.task(task, |h| {
                    h.failures = (*retry).max(h.failures);
                    h.retry_at_unix_ms = Some(*not_before_unix_ms);
                    h.fence = None;
                });
            }
            Event::TaskFinished { task, state, .. } => {
                self.task(task, |h| h.decide(*state));
                if *state == TaskState::Succeeded && self.succeeded.insert(task.clone()) {
                    self.succeeded_order.push(task.clone());
                }
            }
            Event::TaskSkipped { task, .. } => {
                self.task(task, |h| h.decide(TaskState::Skipped));
            }
            Event::TaskCancelled { task, .. } => {
                self.task(task, |h| h.decide(TaskState::Cancelled));
            }
            Event::Selection { excluded } => self.selection.clone_from(excluded),
            Event::TaskExcluded { task, .. } => {
                self.task(task, |h| h.decide(TaskState::Excluded));
            }
            Event::SessionState { state, .. } => {
                self.state = Some(*state);
                if matches!(
                    state,
                    SessionState::RolledBack | SessionState::RollbackFailed
                ) {
                    self.rolling_back = false;
                }
            }
            Event::SessionFinished { state, .. } => {
                self.state = Some(*state);
                self.finished = true;
                self.ended = Some(*state);
            }
            Event::SignalRaised { signal } => {
                self.signals.insert(signal.clone(), true);
            }
            Event::SignalNeverRaised { signal } => {
                self.signals.insert(signal.clone(), false);
            }
            Event::RaceDecided { race, winner, .. } => {
                self.races.insert(race.clone(), winner.clone());
            }
            Event::StartsHeld { available, needed } => {
                self.held = Some((*available, *needed));
            }
            Event::StartsResumed { .. } => self.held = None,
            Event::GateWaiting { gate } => {
                self.gates.insert(gate.clone(), GateRecord::Waiting);
            }
            Event::GateApproved { gate } => {
                self.gates.insert(gate.clone(), GateRecord::Approved);
            }
            Event::GateRejected { gate, reason } => {
                self.gates
                    .insert(gate.clone(), GateRecord::Rejected(reason.clone()));
            }
            Event::GatePassed { gate } => {
                self.gates.insert(gate.clone(), GateRecord::Passed);
            }
            Event::GateFailed { gate, reason } => {
                self.gates
                    .insert(gate.clone(), GateRecord::Failed(reason.clone()));
            }
            Event::SessionFrozen { emergency, .. } => {
                self.frozen = true;
                self.state = Some(SessionState::Frozen);
                if *emergency {
                    self.snapshot_owed = true;
                    // The tasks running at the freeze: their fence holder started.
                    for (id, h) in &self.tasks {
                        let running = h.decided.is_none()
                            && h.fence
                                .as_ref()
                                .and_then(|(n, _)| h.attempt(*n))
                                .is_some_and(|a| a.pid.is_some());
                        if running && !self.emergency_owed.contains(id) {
                            self.emergency_owed.push(id.clone());
                        }
                    }
                }
            }
            Event::SnapshotWritten { .. } => self.snapshot_owed = false,
            Event::AgentState {
                task,
                attempt,
                state,
                message,
                at,
            } => {
                self.agents.insert(
                    task.clone(),
                    AgentRecord {
                        attempt: *attempt,
                        state: *state,
                        message: message.clone(),
                        since: at.clone(),
                    },
                );
            }
            Event::AuxWithdrawn {
                kind, of, attempt, ..
            } => {
                let key = (*kind, of.clone(), *attempt);
                if self.aux.get(&key).is_some_and(|r| r.end.is_none()) {
                    self.aux.remove(&key);
                    if *kind == AuxKind::Emergency && !self.emergency_owed.contains(of) {
                        self.emergency_owed.push(of.clone());
                    }
                }
            }
            Event::RollbackRequested { tasks } => {
                self.rollback = Some(tasks.clone());
                self.rolling_back = true;
            }
            Event::CheckStarted(s)
            | Event::CleanupStarted(s)
            | Event::EmergencyStarted(s)
            | Event::RollbackStarted(s) => {
                self.max_seq = self.max_seq.max(s.seq);
                let kind = ev.as_aux_start().map_or(AuxKind::Cleanup, |(k, _)| k);
                if kind == AuxKind::Emergency {
                    self.emergency_owed.retain(|t| *t != s.of);
                }
                if kind == AuxKind::Check {
                    self.gates.insert(s.of.clone(), GateRecord::Checking);
                }
                self.aux.insert(
                    (kind, s.of.clone(), s.attempt),
                    AuxRecord {
                        worker: s.worker.clone(),
                        seq: s.seq,
                        end: None,
                    },
                );
            }
            Event::CheckEnded(e)
            | Event::CleanupEnded(e)
            | Event::EmergencyEnded(e)
            | Event::RollbackEnded(e) => {
                let kind = ev.as_aux_end().map_or(AuxKind::Cleanup, |(k, _)| k);
                let r = self
                    .aux
                    .entry((kind, e.of.clone(), e.attempt))
                    .or_insert_with(|| AuxRecord {
                        worker: e.worker.clone().unwrap_or_default(),
                        seq: 0,
                        end: None,
                    });
                r.end = Some(e.clone());
            }
            Event::SessionThawed => {
                self.frozen = false;
                self.state = Some(SessionState::Running);
            }
            Event::WorkersScaled { workers } => self.workers_limit = Some(*workers),
            Event::SessionDraining { why } => {
                self.draining = Some(why.clone());
                self.state = Some(SessionState::Stopping);
            }
            Event::ResourceLevel {
                pool, level, used, ..
            } => {
                self.pools.insert(pool.clone(), (*level, *used));
            }
            Event::WorkerUnresponsive { .. }
            | Event::ControlRequest { .. }
            | Event::CheckpointReleased { .. }
            | Event::CheckpointBroken { .. }
            | Event::DeadlockDetected { .. }
            | Event::Refused { .. }
            | Event::AttemptStalled { .. }
            | Event::Quarantined { .. }
            | Event::CheckoutDirty { .. }
            | Event::WorktreeCreated { .. }
            | Event::Unknown => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: `status` of a frozen session said `running` once it was resumed
    /// (`session_resumed` set the state), while the resumed engine stayed frozen.
    #[test]
    fn a_resumed_session_keeps_its_frozen_draining_or_rolling_back_state() {
        let resumed = Event::SessionResumed {
            session: "s".into(),
            retry: Vec::new(),
        };
        let cases = [
            (
                Event::SessionFrozen {
                    why: "x".into(),
                    emergency: true,
                },
                SessionState::Frozen,
            ),
            (
                Event::SessionDraining { why: "x".into() },
                SessionState::Stopping,
            ),
            (
                Event::RollbackRequested { tasks: Vec::new() },
                SessionState::RollingBack,
            ),
        ];
        for (ev, want) in cases {
            let mut h = History::default();
            h.apply(&ev);
            h.apply(&resumed);
            assert_eq!(h.state, Some(want), "{ev:?}");
        }
        let mut h = History::default();
        h.apply(&resumed);
        assert_eq!(h.state, Some(SessionState::Running));
    }

    #[test]
    fn the_fence_follows_assignments_withdrawals_and_ends() {
        let mut h = History::default();
        let assign = |a, w: &str| Event::TaskAssigned {
            task: "t".into(),
            attempt: a,
            worker: w.into(),
            seq: a as u64,
        };
        h.apply(&assign(1, "w1"));
        assert_eq!(h.tasks["t"].fence, Some((1, "w1".into())));
        h.apply(&Event::AttemptEnded {
            task: "t".into(),
            attempt: 1,
            worker: Some("w1".into()),
            reason: EndReason::WorkerLost,
        });
        assert_eq!(h.tasks["t"].fence, None);
        assert_eq!(h.tasks["t"].reassigns, 1);
        h.apply(&assign(2, "w2"));
        h.apply(&Event::TaskWithdrawn {
            task: "t".into(),
            attempt: 2,
            worker: "w2".into(),
        });
        assert_eq!(h.tasks["t"].fence, None);
        assert_eq!(
            h.tasks["t"].last_attempt, 1,
            "a withdrawn attempt never ran"
        );
        h.apply(&assign(2, "w3"));
        assert_eq!(h.tasks["t"].fence, Some((2, "w3".into())));
        h.apply(&Event::AttemptEnded {
            task: "t".into(),
            attempt: 1,
            worker: Some("w1".into()),
            reason: EndReason::Stale,
        });
        let a1 = h.tasks["t"].attempt(1).unwrap();
        assert_eq!(
            a1.ended,
            Some(EndReason::WorkerLost),
            "the first reason stays"
        );
        assert!(a1.stale);
        assert_eq!(
            h.tasks["t"].fence,
            Some((2, "w3".into())),
            "a stale end moves nothing"
        );
        h.apply(&Event::TaskFinished {
            task: "t".into(),
            attempt: 2,
            worker: Some("w3".into()),
            state: TaskState::Succeeded,
            exit_code: Some(0),
            reason: None,
        });
        assert_eq!(h.tasks["t"].decided, Some(TaskState::Succeeded));
        assert_eq!(h.task_order, vec!["t".to_string()]);
    }
}
