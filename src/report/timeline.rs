//! The session as its journal tells it, with times: the journal's fold ([`History`]:
//! attempts, their workers and how each ended, what was decided), and beside it when each
//! attempt started and ended and each task was decided (the `ts` of the lines), and the
//! tokens each pool had out at every moment.
//!
//! Why the journal's times and not the attempts' `exit.json`: every line of the journal
//! is stamped by one clock, the orchestrator's, in the order things happened to it, so a
//! dependency's end always precedes its dependent's start, which the critical path relies
//! on; and a 100 000-task session's times come from one file read as a stream instead of
//! a file per attempt. The deciding attempt's own run time is the outcome's.

use std::collections::{HashMap, HashSet};

use crate::journal::{Event, History};
use crate::plan::Plan;

/// When an attempt started and ended, as the journal saw it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttemptTimes {
    pub attempt: u32,
    /// Its process started (`task_started`).
    pub started: bool,
    pub start_ms: Option<u64>,
    pub end_ms: Option<u64>,
    /// Why it failed, when it was retried (`retry_scheduled`).
    pub reason: Option<String>,
}

/// A task's times.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskTimes {
    pub attempts: Vec<AttemptTimes>,
    /// Its first attempt's start (since a `retry` of the session last reset it).
    pub start_ms: Option<u64>,
    /// When it was decided.
    pub end_ms: Option<u64>,
}

impl TaskTimes {
    pub fn attempt(&self, n: u32) -> Option<&AttemptTimes> {
        self.attempts.iter().find(|a| a.attempt == n)
    }

    fn attempt_mut(&mut self, n: u32) -> &mut AttemptTimes {
        match self.attempts.iter().position(|a| a.attempt == n) {
            Some(i) => &mut self.attempts[i],
            None => {
                self.attempts.push(AttemptTimes {
                    attempt: n,
                    ..Default::default()
                });
                let last = self.attempts.len() - 1;
                &mut self.attempts[last]
            }
        }
    }

    /// From its first start to its decision, for a task that ran and was decided.
    pub fn span(&self) -> Option<(u64, u64)> {
        let (s, e) = (self.start_ms?, self.end_ms?);
        Some((s, e.max(s)))
    }
}

/// A pool's use over the session: tokens out from an attempt's assignment until it ends
/// (or is taken back), as the engine counts them.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolUse {
    pub name: String,
    pub max: u64,
    /// Each task's claim, by plan index (0: none).
    claims: Vec<u64>,
    used: u64,
    pub peak: u64,
    pub peak_ms: Option<u64>,
}

/// The fold; see the module's documentation.
#[derive(Debug, Default)]
pub struct Timeline {
    pub history: History,
    /// By plan index.
    pub tasks: Vec<TaskTimes>,
    /// The first line's time (`session_started`).
    pub started_ms: Option<u64>,
    /// The last `session_finished`'s.
    pub finished_ms: Option<u64>,
    /// The time no orchestrator ran the session: from the line before each resume (or
    /// retry) to that resume's line.
    pub paused_ms: u64,
    /// The latest line's time.
    last_ms: Option<u64>,
    /// The plan's pools, by name.
    pub pools: Vec<PoolUse>,
    /// The `[limits] memory` budget, when the plan has one.
    pub memory: Option<PoolUse>,
    /// Attempts holding tokens now: (task index, attempt).
    held: HashSet<(usize, u32)>,
}

impl Timeline {
    pub fn new(plan: &Plan) -> Timeline {
        let n = plan.tasks.len();
        let pools = plan
            .resources
            .iter()
            .map(|(name, pool)| PoolUse {
                name: name.clone(),
                max: pool.max,
                claims: plan
                    .tasks
                    .iter()
                    .map(|t| t.resources.get(name).copied().unwrap_or(0))
                    .collect(),
                used: 0,
                peak: 0,
                peak_ms: None,
            })
            .collect();
        let memory = plan.limits.memory.map(|max| PoolUse {
            name: "memory".into(),
            max,
            claims: plan.tasks.iter().map(|t| t.memory.unwrap_or(0)).collect(),
            used: 0,
            peak: 0,
            peak_ms: None,
        });
        Timeline {
            tasks: vec![TaskTimes::default(); n],
            pools,
            memory,
            ..Default::default()
        }
    }

    fn pools_mut(&mut self) -> impl Iterator<Item = &mut PoolUse> {
        self.pools.iter_mut().chain(self.memory.as_mut())
    }

    fn hold(&mut self, t: usize, attempt: u32, ts: Option<u64>) {
        if !self.held.insert((t, attempt)) {
            return;
        }
        for p in self.pools_mut() {
            p.used = p.used.saturating_add(p.claims[t]);
            if p.used > p.peak {
                p.peak = p.used;
                p.peak_ms = ts;
            }
        }
    }

    fn release(&mut self, t: usize, attempt: u32) {
        if !self.held.remove(&(t, attempt)) {
            return;
        }
        for p in self.pools_mut() {
            p.used = p.used.saturating_sub(p.claims[t]);
        }
    }

    /// Fold one line in; `index` maps the plan's task ids to their indices (lines about
    /// anything else, auxiliary commands' runs, only reach the [`History`]).
    pub fn apply(&mut self, index: &HashMap<&str, usize>, ts: Option<u64>, ev: Event) {
        if self.started_ms.is_none() {
            self.started_ms = ts;
        }
        if let (Event::SessionResumed { .. } | Event::SessionRetried { .. }, Some(at), Some(last)) =
            (&ev, ts, self.last_ms)
        {
            self.paused_ms += at.saturating_sub(last);
        }
        self.last_ms = ts.or(self.last_ms);
        let ix = |task: &str| index.get(task).copied();
        match &ev {
            Event::SessionFinished { .. } => self.finished_ms = ts.or(self.finished_ms),
            Event::TaskAssigned { task, attempt, .. } => {
                if let Some(t) = ix(task) {
                    self.hold(t, *attempt, ts);
                }
            }
            Event::TaskWithdrawn { task, attempt, .. } => {
                if let Some(t) = ix(task) {
                    self.release(t, *attempt);
                }
            }
            Event::TaskStarted { task, attempt, .. } => {
                if let Some(t) = ix(task) {
                    let times = &mut self.tasks[t];
                    if times.start_ms.is_none() {
                        times.start_ms = ts;
                    }
                    let a = times.attempt_mut(*attempt);
                    a.started = true;
                    if a.start_ms.is_none() {
                        a.start_ms = ts;
                    }
                }
            }
            Event::AttemptEnded { task, attempt, .. } => {
                if let Some(t) = ix(task) {
                    self.release(t, *attempt);
                    let a = self.tasks[t].attempt_mut(*attempt);
                    // A late `stale` line follows the end that counted: keep the first.
                    if a.end_ms.is_none() {
                        a.end_ms = ts;
                    }
                }
            }
            Event::RetryScheduled {
                task,
                failed_attempt,
                reason,
                ..
            } => {
                if let Some(t) = ix(task) {
                    self.tasks[t].attempt_mut(*failed_attempt).reason = Some(reason.clone());
                }
            }
            Event::TaskFinished { task, .. }
            | Event::TaskSkipped { task, .. }
            | Event::TaskCancelled { task, .. }
            | Event::TaskExcluded { task, .. } => {
                if let Some(t) = ix(task) {
                    self.tasks[t].end_ms = ts;
                }
            }
            Event::RetryRequested { tasks } => {
                // The retried run is what the report times: the first run's start and
                // end no longer say when the task ran.
                for t in tasks.iter().filter_map(|t| ix(t)) {
                    self.tasks[t].start_ms = None;
                    self.tasks[t].end_ms = None;
                }
            }
            _ => {}
        }
        self.history.apply(&ev);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::EndReason;

    fn parse(text: &str) -> Plan {
        Plan::parse("p.toml", text, std::path::Path::new("/base")).unwrap()
    }

    #[test]
    fn times_come_from_the_lines_and_pools_count_from_assignment_to_end() {
        let plan = parse(
            "name = \"p\"\n[resources]\ndb = { max = 5 }\n\
             [[task]]\nid = \"a\"\ncmd = [\"true\"]\nresources = { db = 2 }\n\
             [[task]]\nid = \"b\"\ncmd = [\"true\"]\nresources = { db = 3 }\n",
        );
        let index: HashMap<&str, usize> = [("a", 0), ("b", 1)].into();
        let mut tl = Timeline::new(&plan);
        let assign = |task: &str, attempt| Event::TaskAssigned {
            task: task.into(),
            attempt,
            worker: "w1".into(),
            seq: 0,
        };
        let start = |task: &str, attempt| Event::TaskStarted {
            task: task.into(),
            attempt,
            worker: "w1".into(),
            pid: None,
            proc_start: None,
            boot_id: None,
        };
        let ended = |task: &str, attempt, reason| Event::AttemptEnded {
            task: task.into(),
            attempt,
            worker: None,
            reason,
        };
        let lines = [
            (10, assign("a", 1)),
            (11, start("a", 1)),
            (12, assign("b", 1)),
            (
                13,
                Event::TaskWithdrawn {
                    task: "b".into(),
                    attempt: 1,
                    worker: "w1".into(),
                },
            ),
            (20, ended("a", 1, EndReason::Failed)),
            (
                21,
                Event::RetryScheduled {
                    task: "a".into(),
                    failed_attempt: 1,
                    retry: 1,
                    retries: 1,
                    delay_ms: 0,
                    not_before_unix_ms: 0,
                    reason: "exited with code 3".into(),
                },
            ),
            (30, assign("a", 2)),
            (31, assign("b", 1)),
            (32, start("a", 2)),
            (40, ended("a", 2, EndReason::Exited)),
            (41, ended("a", 2, EndReason::Stale)),
            (
                42,
                Event::TaskFinished {
                    task: "a".into(),
                    attempt: 2,
                    worker: None,
                    state: crate::proto::TaskState::Succeeded,
                    exit_code: Some(0),
                    reason: None,
                },
            ),
        ];
        for (ts, ev) in lines {
            tl.apply(&index, Some(ts), ev);
        }
        let a = &tl.tasks[0];
        assert_eq!(a.span(), Some((11, 42)));
        assert_eq!(
            a.attempt(1).unwrap().reason.as_deref(),
            Some("exited with code 3")
        );
        assert_eq!(
            (a.attempt(2).unwrap().start_ms, a.attempt(2).unwrap().end_ms),
            (Some(32), Some(40))
        );
        assert_eq!(tl.tasks[1].span(), None, "b never started");
        assert_eq!(tl.started_ms, Some(10));
        let db = &tl.pools[0];
        assert_eq!(
            (db.peak, db.peak_ms, db.max),
            (5, Some(12), 5),
            "first reached at 12"
        );
        assert_eq!(db.used, 3, "b still holds its claim");
        assert_eq!(tl.history.tasks["a"].attempts.len(), 2);
        assert_eq!(tl.paused_ms, 0);
    }

    /// The time between an orchestrator's last line and the resume that took over is a
    /// pause (and so is the time between a session's end and its `retry`).
    #[test]
    fn pauses_run_from_the_last_line_to_each_resume() {
        let plan = parse("name = \"p\"\n[[task]]\nid = \"a\"\ncmd = [\"true\"]\n");
        let index: HashMap<&str, usize> = [("a", 0)].into();
        let mut tl = Timeline::new(&plan);
        let resumed = || Event::SessionResumed {
            session: "s".into(),
            retry: Vec::new(),
        };
        let retried = || Event::SessionRetried {
            session: "s".into(),
            retry: vec!["a".into()],
        };
        let assigned = || Event::TaskAssigned {
            task: "a".into(),
            attempt: 1,
            worker: "w1".into(),
            seq: 0,
        };
        for (ts, ev) in [
            (100, assigned()),
            (150, assigned()),
            (1_150, resumed()),
            (1_200, assigned()),
            (5_200, retried()),
            (5_300, assigned()),
        ] {
            tl.apply(&index, Some(ts), ev);
        }
        assert_eq!(tl.paused_ms, 1_000 + 4_000);
        assert_eq!(tl.started_ms, Some(100));
    }
}
