//! Token pools (`[resources]`) and memory (`[limits]`): how many tokens each pool has
//! out and how much of the memory budget is claimed, whether a task's claims may start
//! now, the journal lines when a pool crosses `warn` or `critical`, and holding new
//! starts while the machine's available memory is below `min_free_memory`.
//!
//! The memory budget is a pool like the others, counted in bytes: a task's `memory`
//! claims it while an attempt of it is held by a worker.
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

    /// Bytes of the `[limits] memory` budget claimed by what the workers hold.
    fn memory_out(&self) -> u64 {
        self.workers
            .values()
            .flat_map(|w| {
                let running = match w.state {
                    WorkerState::Busy { task, .. } => Some(task),
                    _ => None,
                };
                running.into_iter().chain(w.queued.map(|(t, _)| t))
            })
            .filter_map(|t| self.plan.tasks[t].memory)
            .fold(0u64, u64::saturating_add)
    }

    /// The next ready task that may start now: the highest one, or, when pools or a
    /// memory budget are declared, the highest whose claims fit. None while new starts
    /// are held for lack of memory.
    pub(super) fn pop_startable(&mut self) -> Option<TaskIx> {
        if self.held {
            return None;
        }
        let budget = self.plan.limits.memory;
        if self.plan.resources.is_empty() && budget.is_none() {
            return self.sched.pop_ready();
        }
        let out = self.tokens_out();
        let mem_out = self.memory_out();
        let (tasks, pools) = (&self.plan.tasks, &self.plan.resources);
        self.sched.pop_ready_where(|t| {
            let mem_fits = match (budget, tasks[t].memory) {
                (Some(b), Some(m)) => mem_out.saturating_add(m) <= b,
                _ => true,
            };
            mem_fits && fits(&tasks[t], pools, &out)
        })
    }

    /// Hold new starts while available memory is below `min_free_memory`, and let them
    /// go once it is not; each change is journalled.
    pub(super) fn check_memory(&mut self) {
        let (Some(needed), Some(available)) =
            (self.plan.limits.min_free_memory, self.mem_available)
        else {
            return;
        };
        let low = available < needed;
        if low && !self.held {
            self.held = true;
            self.journal(Event::StartsHeld { available, needed });
        } else if !low && self.held {
            self.held = false;
            self.journal(Event::StartsResumed { available });
        }
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
