//! What an exit means, and what a decision does to the rest of the plan.
//!
//! An exit counts only from the fence holder (the attempt and worker the journal last
//! assigned the task to); any other is journalled as stale and changes nothing. A
//! failed attempt is retried after an exponential backoff while `retries` allow; a
//! decided task is never decided again; a decision propagates through the DAG (a failed
//! task's dependents are skipped, a cancelled task's are cancelled) and through races.

use std::time::{Duration, Instant};

use super::{Command, Decision, Engine, Exit, Phase, TaskIx, WorkerState};
use crate::journal::event::{EndReason, Event};
use crate::plan::Pick;
use crate::proto::TaskState;

impl Engine {
    /// Attempt `attempt` of task `t` ended on worker `wid`. `live`: the worker is alive
    /// and may get its next task before this outcome is written.
    pub(super) fn exited(
        &mut self,
        wid: &str,
        t: TaskIx,
        attempt: u32,
        exit: Exit,
        live: bool,
        now: Instant,
    ) {
        let current = self.tasks[t]
            .fence
            .as_ref()
            .is_some_and(|(a, w)| *a == attempt && w == wid)
            && self.tasks[t].decided.is_none();
        let mut next = None;
        if let Some(w) = self.workers.get_mut(wid) {
            w.ran.retain(|r| *r != (t, attempt));
        }
        let was_running = if let Some(w) = self.workers.get_mut(wid)
            && w.state == (WorkerState::Busy { task: t, attempt })
        {
            w.state = match w.queued.take() {
                Some((task, attempt)) => {
                    w.withdrawing = false;
                    w.claimed = false;
                    next = Some((task, attempt));
                    WorkerState::Busy { task, attempt }
                }
                None => WorkerState::Idle,
            };
            w.busy_since = now;
            true
        } else {
            false
        };
        if let Some((nt, na)) = next {
            self.stop_if_unwanted(wid, nt, na);
        }
        // It ran (an attempt that could not start has nothing to clean up): its cleanup
        // is owed, whether its exit counts or not.
        let Exit::Record { record, .. } = &exit;
        if record.spawn_error.is_none() {
            self.owe_cleanup(t, attempt, now);
        }
        if was_running || current {
            self.out.push(Command::Retire {
                worker: wid.to_string(),
                task: t,
                attempt,
            });
        }
        if !current {
            if !self.taken(t, attempt, wid) {
                self.stale(t, attempt, wid, &exit);
            }
            return;
        }
        // The round trip "exit -> next assignment" is on every worker's critical path,
        // so the next task goes out before this one's outcome is written. Not for a race
        // member: its end may make ready members lose.
        let id = self.id(t);
        if live && self.plan.race_of(&id).is_none() {
            self.hand_next(wid, now);
        }
        self.accept(t, attempt, wid, exit, now);
    }

    /// A queued attempt the worker claimed starts now that its running one ended: stop
    /// it at once if it may no longer run (its task was decided, or the session is being
    /// interrupted). Asked only now, because a worker's `kill` file names one attempt and
    /// the one that just ended may have needed it until now.
    fn stop_if_unwanted(&mut self, wid: &str, t: TaskIx, attempt: u32) {
        let current = self.tasks[t]
            .fence
            .as_ref()
            .is_some_and(|(a, w)| *a == attempt && w == wid)
            && self.tasks[t].decided.is_none();
        let reason = if matches!(self.phase, Phase::Interrupting(_)) {
            super::KillReason::Interrupted
        } else if !current {
            super::KillReason::Cancelled
        } else {
            return;
        };
        self.out.push(Command::Kill {
            worker: wid.to_string(),
            task: t,
            attempt,
            reason,
        });
    }

    /// Whether the exit of attempt `attempt` of task `t` on `wid` was already taken.
    pub(super) fn taken(&self, t: TaskIx, attempt: u32, wid: &str) -> bool {
        self.tasks[t]
            .taken
            .iter()
            .any(|(a, w)| *a == attempt && w == wid)
    }

    /// Journal the exit of an attempt that no longer holds the fence: kept on disk, never
    /// the outcome.
    pub(super) fn stale(&mut self, t: TaskIx, attempt: u32, wid: &str, exit: &Exit) {
        self.tasks[t].taken.push((attempt, wid.to_string()));
        let Exit::Record { record, .. } = exit;
        let exit_code = record.exit_code;
        self.journal(Event::StaleResult {
            task: self.id(t),
            attempt,
            worker: Some(wid.to_string()),
            exit_code,
            current_attempt: self.tasks[t].attempt,
        });
        self.journal(Event::AttemptEnded {
            task: self.id(t),
            attempt,
            worker: Some(wid.to_string()),
            reason: EndReason::Stale,
        });
    }

    /// Decide what the current attempt's exit means: success, a retry after a backoff,
    /// or the task's final failure.
    fn accept(&mut self, t: TaskIx, attempt: u32, wid: &str, exit: Exit, now: Instant) {
        if !self.taken(t, attempt, wid) {
            self.tasks[t].taken.push((attempt, wid.to_string()));
        }
        let (state, reason, record, result) = match exit {
            Exit::Record { record, result } if record.succeeded() => {
                (TaskState::Succeeded, None, Some(record), result)
            }
            Exit::Record { record, .. } => (
                TaskState::Failed,
                record.failure_reason(),
                Some(record),
                None,
            ),
        };
        self.tasks[t].fence = None;
        // Stopped by an interrupt: not the task's failure; it runs again on resume.
        if matches!(self.phase, Phase::Interrupting(_))
            && record
                .as_ref()
                .and_then(|r| r.killed_by.as_deref())
                .and_then(super::KillReason::parse)
                == Some(super::KillReason::Interrupted)
        {
            self.journal(Event::AttemptEnded {
                task: self.id(t),
                attempt,
                worker: Some(wid.to_string()),
                reason: EndReason::Interrupted,
            });
            self.sched.requeue(t);
            return;
        }
        let how = match (&state, &record) {
            (TaskState::Succeeded, _) => EndReason::Exited,
            (_, Some(r)) if r.timed_out => EndReason::TimedOut,
            _ => EndReason::Failed,
        };
        self.journal(Event::AttemptEnded {
            task: self.id(t),
            attempt,
            worker: Some(wid.to_string()),
            reason: how,
        });
        let spec = &self.plan.tasks[t];
        if state == TaskState::Failed && self.tasks[t].failures < spec.retries {
            self.tasks[t].failures += 1;
            let n = self.tasks[t].failures;
            let unit = self.jitter_unit();
            let delay = self.plan.tasks[t].backoff.delay_ms(n, unit);
            self.out.push(Command::ScheduleRetry {
                task: t,
                failed_attempt: attempt,
                delay_ms: delay,
                reason: reason.unwrap_or_default(),
            });
            self.set_retry(t, Some(now + Duration::from_millis(delay)));
            return;
        }
        self.finish_task(Decision {
            task: t,
            state,
            attempt,
            worker: Some(wid.to_string()),
            exit: record,
            reason,
            marks: state == TaskState::Succeeded,
            result,
        });
    }

    pub(super) fn set_retry(&mut self, t: TaskIx, at: Option<Instant>) {
        self.tasks[t].retry_at = at;
        if at.is_some() {
            self.retrying.insert(t);
        } else {
            self.retrying.remove(&t);
        }
    }

    /// Retries whose backoff is over go back in the queue.
    pub(super) fn retries_due(&mut self, now: Instant) {
        let due: Vec<TaskIx> = self
            .retrying
            .iter()
            .copied()
            .filter(|&t| self.tasks[t].retry_at.is_some_and(|at| at <= now))
            .collect();
        for t in due {
            self.set_retry(t, None);
            self.sched.requeue(t);
        }
    }

    /// Decide task `t` without an exit to accept (cancelled, lost too often, ...).
    pub(super) fn decide_without_exit(
        &mut self,
        t: TaskIx,
        state: TaskState,
        why: String,
        worker: Option<String>,
        _now: Instant,
    ) {
        self.finish_task(Decision {
            task: t,
            state,
            attempt: self.tasks[t].attempt,
            worker,
            exit: None,
            reason: Some(why),
            result: None,
            marks: false,
        });
    }

    /// Decide the tasks a partial run leaves out (`Config::excluded`), once, at the
    /// start: each is `excluded` with its reason, and satisfied for its dependents (the
    /// scheduler succeeds it), so what depends on a skipped task may run.
    pub(super) fn exclude_unselected(&mut self) {
        let excluded = std::mem::take(&mut self.cfg.excluded);
        let pending: Vec<(String, crate::plan::Exclusion)> = excluded
            .iter()
            .enumerate()
            .filter(|&(t, _)| t < self.tasks.len() && self.tasks[t].decided.is_none())
            .filter_map(|(t, why)| Some((self.id(t), (*why)?)))
            .collect();
        if pending.is_empty() {
            return;
        }
        // The whole selection first, in one line: decided one by one below, a crash in
        // between would otherwise let a resume run what was left out.
        self.journal(Event::Selection { excluded: pending });
        let mut races = Vec::new();
        for (t, why) in excluded.into_iter().enumerate() {
            let Some(why) = why else { continue };
            if t >= self.tasks.len() || self.tasks[t].decided.is_some() {
                continue;
            }
            let reason = why.reason().to_string();
            self.tasks[t].decided = Some(TaskState::Excluded);
            self.tasks[t].reason = Some(reason.clone());
            self.out.push(Command::Decide(Decision {
                task: t,
                state: TaskState::Excluded,
                attempt: 0,
                worker: None,
                exit: None,
                reason: Some(reason.clone()),
                result: None,
                marks: false,
            }));
            self.journal(Event::TaskExcluded {
                task: self.id(t),
                reason,
            });
            self.sched.succeed(t);
            if let Some(k) = self.plan.race_of(&self.id(t)) {
                races.push(k);
            }
        }
        for k in races {
            self.race_progress(k);
        }
    }

    fn finished_event(&self, d: &Decision) -> Event {
        Event::TaskFinished {
            task: self.id(d.task),
            attempt: d.attempt,
            worker: d.worker.clone(),
            state: d.state,
            exit_code: d.exit.as_ref().and_then(|e| e.exit_code),
            reason: d.reason.clone(),
        }
    }

    /// Record a task's final outcome and propagate it through the DAG.
    pub(super) fn finish_task(&mut self, d: Decision) {
        let t = d.task;
        if self.tasks[t].decided.is_some() {
            return; // decided once, never again
        }
        let id = self.id(t);
        let state = d.state;
        let race = self.plan.race_of(&id);
        self.set_retry(t, None);
        self.tasks[t].fence = None;
        // A `best` race member's success is held (not written) until the race is
        // decided: it may still end as `lost`.
        if let Some(k) = race
            && state == TaskState::Succeeded
            && self.plan.races[k].pick == Pick::Best
            && !self.races_done[k]
        {
            let ev = self.finished_event(&d);
            self.journal(ev);
            self.tasks[t].decided = Some(state);
            self.tasks[t].result.clone_from(&d.result);
            self.tasks[t].held = Some(d);
            self.sched.succeed(t);
            self.race_progress(k);
            return;
        }
        self.tasks[t].decided = Some(state);
        self.tasks[t].reason.clone_from(&d.reason);
        self.tasks[t].result.clone_from(&d.result);
        let ev = self.finished_event(&d);
        // The file first: a crash between the two leaves an outcome a resume reads,
        // never a journal line whose outcome is missing.
        self.out.push(Command::Decide(d));
        self.journal(ev);
        let skipped = match state {
            TaskState::Succeeded => {
                self.sched.succeed(t);
                Vec::new()
            }
            TaskState::Lost => self.sched.lose(t),
            _ => self.sched.fail(t),
        };
        if state == TaskState::Succeeded {
            self.completed.push(t);
        }
        if state == TaskState::Failed {
            let policy = self.plan.on_failure_of(t);
            self.apply_failure_policy(policy, format!("task {id} failed"));
        }
        if state == TaskState::Cancelled {
            self.cancelled_any = true;
            self.propagate(
                skipped,
                TaskState::Cancelled,
                &format!("dependency {id} was cancelled"),
            );
        } else {
            self.propagate(
                skipped,
                TaskState::Skipped,
                &format!("dependency {id} did not succeed"),
            );
        }
        if let Some(k) = race {
            self.race_progress(k);
        }
    }

    /// Decide every task skipped (or cancelled) because of another.
    pub(super) fn propagate(&mut self, skipped: Vec<usize>, dep_state: TaskState, why: &str) {
        let mut races = Vec::new();
        for s in skipped {
            if s >= self.plan.tasks.len() || self.tasks[s].decided.is_some() {
                continue; // race and signal nodes have no outcome file
            }
            let sid = self.id(s);
            self.set_retry(s, None);
            self.tasks[s].decided = Some(dep_state);
            self.tasks[s].reason = Some(why.to_string());
            self.out.push(Command::Decide(Decision {
                task: s,
                state: dep_state,
                attempt: self.tasks[s].attempt,
                worker: None,
                exit: None,
                reason: Some(why.to_string()),
                result: None,
                marks: false,
            }));
            let ev = if dep_state == TaskState::Cancelled {
                Event::TaskCancelled {
                    task: sid.clone(),
                    reason: why.to_string(),
                }
            } else {
                Event::TaskSkipped {
                    task: sid.clone(),
                    reason: why.to_string(),
                }
            };
            self.journal(ev);
            if let Some(k) = self.plan.race_of(&sid) {
                races.push(k);
            }
        }
        for k in races {
            self.race_progress(k);
        }
    }

    /// Decide race `k` if its members allow it.
    pub(super) fn race_progress(&mut self, k: usize) {
        if self.races_done[k] {
            return;
        }
        let race = self.plan.races[k].clone();
        let members: Vec<TaskIx> = race
            .tasks
            .iter()
            .filter_map(|m| self.index.get(m).copied())
            .collect();
        if self.race_excluded(k) {
            self.races_done[k] = true;
            self.sched.succeed(self.graph.race_nodes()[k].index());
            return;
        }
        let decided = |e: &Engine, m: TaskIx| e.tasks[m].decided.is_some();
        let succeeded = |e: &Engine, m: TaskIx| e.tasks[m].decided == Some(TaskState::Succeeded);
        match race.pick {
            Pick::First => {
                if let Some(w) = members.iter().copied().find(|&m| succeeded(self, m)) {
                    self.races_done[k] = true;
                    // A member whose attempt already ended keeps how it ended: only those
                    // still running or waiting lose.
                    let losers: Vec<TaskIx> = members
                        .iter()
                        .copied()
                        .filter(|&m| m != w && !decided(self, m))
                        .collect();
                    let winner = self.id(w);
                    for &m in &losers {
                        self.lose_member(m, &race.id, &winner);
                    }
                    let result = self.tasks[w].result.clone();
                    self.decide_race(k, Some(w), None, result, losers);
                } else if members.iter().all(|&m| decided(self, m)) {
                    self.races_done[k] = true;
                    self.decide_race(k, None, None, None, Vec::new());
                }
            }
            Pick::Best => {
                if !members.iter().all(|&m| decided(self, m)) {
                    return;
                }
                self.races_done[k] = true;
                let pointer = race.score.clone().unwrap_or_default();
                let mut best: Option<(TaskIx, f64)> = None;
                for &m in &members {
                    let score = self.tasks[m]
                        .held
                        .as_ref()
                        .and_then(|d| d.result.as_ref())
                        .and_then(|r| r.pointer(&pointer))
                        .and_then(|v| v.as_f64());
                    if let Some(sc) = score
                        && best.is_none_or(|(_, b)| sc > b)
                    {
                        best = Some((m, sc));
                    }
                }
                let mut losers = Vec::new();
                for &m in &members {
                    // Held successes get their file now: the winner's as succeeded, the
                    // others as lost.
                    let Some(mut d) = self.tasks[m].held.take() else {
                        continue;
                    };
                    if Some(m) == best.map(|b| b.0) {
                        d.marks = true;
                    } else {
                        d.state = TaskState::Lost;
                        d.marks = false;
                        d.reason = Some(format!("race {} was won by another task", race.id));
                        self.tasks[m].decided = Some(TaskState::Lost);
                        let ev = self.finished_event(&d);
                        self.journal(ev);
                        losers.push(m);
                    }
                    self.tasks[m].reason.clone_from(&d.reason);
                    self.out.push(Command::Decide(d));
                }
                let result = best.and_then(|(w, _)| self.tasks[w].result.clone());
                self.decide_race(k, best.map(|b| b.0), best.map(|b| b.1), result, losers);
            }
        }
    }

    /// Whether a partial run left out every member of race `k`: the race is then
    /// satisfied for what follows it, as its members are, with no winner and no outcome
    /// (nothing ran). A race some of whose members run is decided among those.
    pub(super) fn race_excluded(&self, k: usize) -> bool {
        self.plan.races[k].tasks.iter().all(|m| {
            self.index
                .get(m)
                .is_some_and(|&m| self.tasks[m].decided == Some(TaskState::Excluded))
        })
    }

    /// Stop a race member that lost: its attempt is killed, it ends as `lost`.
    fn lose_member(&mut self, m: TaskIx, race: &str, winner: &str) {
        if let Some((a, w)) = self.tasks[m].fence.clone() {
            self.out.push(Command::Kill {
                worker: w.clone(),
                task: m,
                attempt: a,
                reason: super::KillReason::Lost,
            });
            self.journal(Event::AttemptEnded {
                task: self.id(m),
                attempt: a,
                worker: Some(w),
                reason: EndReason::Lost,
            });
        }
        let why = format!("race {race} was won by {winner}");
        let worker = None;
        let d = Decision {
            task: m,
            state: TaskState::Lost,
            attempt: self.tasks[m].attempt,
            worker,
            exit: None,
            reason: Some(why),
            result: None,
            marks: false,
        };
        let id = self.id(m);
        self.set_retry(m, None);
        self.tasks[m].fence = None;
        self.tasks[m].decided = Some(TaskState::Lost);
        self.tasks[m].reason.clone_from(&d.reason);
        let ev = self.finished_event(&d);
        self.out.push(Command::Decide(d));
        self.journal(ev);
        let skipped = self.sched.lose(m);
        self.propagate(
            skipped,
            TaskState::Skipped,
            &format!("dependency {id} lost its race"),
        );
    }

    fn decide_race(
        &mut self,
        k: usize,
        winner: Option<TaskIx>,
        score: Option<f64>,
        result: Option<serde_json::Value>,
        losers: Vec<TaskIx>,
    ) {
        let race = self.plan.races[k].id.clone();
        let node = self.graph.race_nodes()[k].index();
        self.journal(Event::RaceDecided {
            race: race.clone(),
            winner: winner.map(|w| self.id(w)),
            score,
            losers: losers.iter().map(|&l| self.id(l)).collect(),
        });
        self.out.push(Command::DecideRace {
            race: k,
            winner,
            score,
            result,
            losers,
        });
        match winner {
            Some(_) => {
                self.sched.succeed(node);
            }
            None => {
                let skipped = self.sched.fail(node);
                self.propagate(
                    skipped,
                    TaskState::Skipped,
                    &format!("race {race} had no winner"),
                );
            }
        }
    }

    /// The final state of a session whose tasks are all decided.
    pub(super) fn final_state(&self) -> crate::proto::SessionState {
        use crate::proto::SessionState;
        let failed = self
            .tasks
            .iter()
            .any(|t| matches!(t.decided, Some(TaskState::Failed | TaskState::Skipped)));
        if failed {
            SessionState::Failed
        } else if self.cancelled_any {
            SessionState::Cancelled
        } else {
            SessionState::Succeeded
        }
    }
}
