//! Token pools (`[resources]`): how many tokens each pool has out, whether a task's
//! claims may start now, and the journal lines when a pool crosses `warn` or
//! `critical`.
//!
//! Tokens are not counted up and down as attempts come and go: they are summed, when
//! asked, over what the workers hold (the attempt each runs, including one being
//! stopped, whose process may still hold a connection, and the one queued behind it).
//! A worker that dies holds nothing, so its claims are released with it, and a resumed
//! engine, whose workers are rebuilt from the journal, counts the same tokens without
//! anything of its own to restore.

use std::collections::BTreeMap;

use super::{Engine, TaskIx, WorkerState};
use crate::journal::event::Event;
use crate::plan::{Level, Pool, Task};

impl Engine {
    /// Tokens out per pool (every pool of the plan, zero included).
    pub(super) fn tokens_out(&self) -> BTreeMap<String, u64> {
        let mut out: BTreeMap<String, u64> =
            self.plan.resources.keys().map(|p| (p.clone(), 0)).collect();
        let held = self.workers.values().flat_map(|w| {
            let running = match w.state {
                WorkerState::Busy { task, .. } => Some(task),
                _ => None,
            };
            running.into_iter().chain(w.queued.map(|(t, _)| t))
        });
        for t in held {
            for (pool, n) in &self.plan.tasks[t].resources {
                if let Some(u) = out.get_mut(pool) {
                    *u = u.saturating_add(*n);
                }
            }
        }
        out
    }

    /// The next ready task that may start now: the highest one, or, when pools are
    /// declared, the highest whose claims fit.
    pub(super) fn pop_startable(&mut self) -> Option<TaskIx> {
        if self.plan.resources.is_empty() {
            return self.sched.pop_ready();
        }
        let out = self.tokens_out();
        let (tasks, pools) = (&self.plan.tasks, &self.plan.resources);
        self.sched.pop_ready_where(|t| fits(&tasks[t], pools, &out))
    }

    /// Journal each pool whose level changed since it was last journalled.
    pub(super) fn check_levels(&mut self) {
        if self.plan.resources.is_empty() {
            return;
        }
        for (pool, used) in self.tokens_out() {
            let p = self.plan.resources[&pool];
            let level = p.level(used);
            let last = self.levels.get(&pool).copied().unwrap_or(Level::Normal);
            if level != last {
                self.levels.insert(pool.clone(), level);
                self.journal(Event::ResourceLevel {
                    pool,
                    level,
                    used,
                    max: p.max,
                });
            }
        }
    }
}

/// Whether every claim of `task` is admitted by its pool with `out` tokens already out.
pub(super) fn fits(
    task: &Task,
    pools: &BTreeMap<String, Pool>,
    out: &BTreeMap<String, u64>,
) -> bool {
    task.resources.iter().all(|(pool, &want)| {
        pools
            .get(pool)
            .is_none_or(|p| p.admits(out.get(pool).copied().unwrap_or(0), want))
    })
}
