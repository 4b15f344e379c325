//! A person's `orchestrator add` and `orchestrator stop` in the model: tasks added to the
//! live session, each after a random subset of the tasks there are (the plan's and those
//! added before, in the same request too), with random retries, `max_reassign` and
//! cleanup; and a stop, maybe with an addition read in the same look after it.
//!
//! The world's plan and spec grow when the shell writes `plan.json` (`SavePlan`), so
//! every check on dependencies, retries and cleanups covers the new tasks, and a
//! restarted orchestrator is restored from the grown plan. What an addition must do:
//! `SavePlan` before its `tasks_added` line, both before its reply; a new task behind a
//! dependency that did not succeed is decided (skipped) before the reply, the others
//! are not; refused, with the plan as it was, once the session ended or while it stops;
//! accepted otherwise (the tasks are valid); answered in the batch it came in.

use std::path::Path;

use super::World;
use crate::engine::tests::task_toml;
use crate::engine::*;

/// An `add` request being fed: the tasks asked for and what the world expects.
#[derive(Debug)]
pub(super) struct Adding {
    id: String,
    /// The new tasks: `t{n}`, `t{n+1}`, ... after the `n` there are.
    ids: Vec<String>,
    deps: Vec<Vec<usize>>,
    retries: Vec<u32>,
    max_reassign: Vec<u32>,
    cleanup: Vec<Option<u64>>,
    /// Behind a dependency that can no longer succeed: decided at once.
    doomed: Vec<bool>,
    /// How the reply must begin when the engine must refuse (the session ended, or is
    /// stopping).
    refused: Option<&'static str>,
    /// The batch of the `Fact::Add`: the plan, its line and the reply come in it.
    batch: u64,
    saved: bool,
    journalled: bool,
}

/// A small deterministic generator (splitmix64) seeded by a move's number and the
/// world's state.
struct Mix(u64);

impl Mix {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

impl World {
    /// A person adds one to three tasks; `k` seeds which (with the number of tasks and
    /// requests so far).
    pub(super) fn add(&mut self, k: u8) {
        let n = self.spec.n();
        let mut r = Mix(u64::from(k) << 32 | (n as u64) << 16 | u64::from(self.controls));
        let count = match r.below(8) {
            0..=4 => 1,
            5 | 6 => 2,
            _ => 3,
        };
        let mut a = Adding {
            id: String::new(),
            ids: Vec::new(),
            deps: Vec::new(),
            retries: Vec::new(),
            max_reassign: Vec::new(),
            cleanup: Vec::new(),
            doomed: Vec::new(),
            refused: None,
            batch: 0,
            saved: false,
            journalled: false,
        };
        let mut text = String::new();
        for i in n..n + count {
            // A quarter after nothing; the others after each task there is with
            // probability 1/4.
            let none = r.below(4) == 0;
            let deps: Vec<usize> = (0..i).filter(|_| !none && r.below(4) == 0).collect();
            let retries = r.below(3) as u32;
            let max_reassign = r.below(4) as u32;
            let cleanup = match r.below(8) {
                0..=3 => None,
                4 | 5 => Some(0),
                6 => Some(2_000),
                _ => Some(9_000),
            };
            let doomed = deps.iter().any(|&d| {
                if d < n {
                    self.decided
                        .get(&self.id(d))
                        .is_some_and(|s| *s != TaskState::Succeeded)
                } else {
                    a.doomed[d - n]
                }
            });
            let mut keys = format!("retries = {retries}\nmax_reassign = {max_reassign}\n");
            if let Some(delay) = cleanup {
                keys += "cleanup = \"rm -f lock\"\n";
                if delay > 0 {
                    keys += &format!("cleanup_delay = \"{}s\"\n", delay / 1000);
                }
            }
            let after: Vec<String> = deps.iter().map(|d| format!("t{d}")).collect();
            text += &task_toml(&format!("t{i}"), &after, &keys);
            a.ids.push(format!("t{i}"));
            a.deps.push(deps);
            a.retries.push(retries);
            a.max_reassign.push(max_reassign);
            a.cleanup.push(cleanup);
            a.doomed.push(doomed);
        }
        // The session's `[defaults]` do not apply to added tasks: the file has its own.
        text += "[defaults]\nbackoff = { initial = \"1s\", max = \"4s\", jitter = 0.5 }\n";
        // The CLI checks the file against `plan.json`.
        let tasks = self
            .plan
            .parse_added("more.toml", &text, Path::new("/tmp"))
            .expect("valid tasks to add");
        for (t, c) in tasks.iter().zip(&a.cleanup) {
            assert_eq!(
                t.cleanup_delay_ms,
                c.unwrap_or(0),
                "{}'s cleanup_delay",
                t.id
            );
        }
        a.refused = if self.finished.is_some() {
            Some("the session has already ended")
        } else if self.history.draining.is_some() {
            Some("the session is stopping")
        } else {
            None
        };
        self.controls += 1;
        self.unanswered += 1;
        a.id = format!("c{}", self.controls);
        // The first fact fed.
        assert!(self.facts.is_empty());
        a.batch = self.batches + 1;
        let id = a.id.clone();
        self.adding = Some(a);
        self.feed(Fact::Add {
            id: id.clone(),
            tasks,
        });
        assert!(
            self.adding.is_none(),
            "the add request {id} was not answered in its batch"
        );
    }

    /// A person stops the session; `then_add`: another's addition, read in the same look.
    pub(super) fn stop(&mut self, then_add: Option<u8>) {
        self.controls += 1;
        self.unanswered += 1;
        self.feed(Fact::Control {
            id: format!("c{}", self.controls),
            action: crate::journal::event::ControlAction::Stop,
            task: None,
        });
        if let Some(k) = then_add {
            self.add(k);
        }
    }

    /// `SavePlan`: the shell writes the engine's plan to `plan.json`; from now on it is
    /// the world's (and a restarted orchestrator's), and the spec grows with it.
    pub(super) fn plan_saved(&mut self) {
        let a = self
            .adding
            .as_mut()
            .expect("SavePlan with no add request being fed");
        assert!(
            a.refused.is_none(),
            "the plan grew though {}",
            a.refused.unwrap_or_default()
        );
        assert!(!a.saved && !a.journalled, "SavePlan twice for one addition");
        assert_eq!(
            a.batch, self.batches,
            "SavePlan in another batch than its Add"
        );
        let grown = self.e.plan();
        let before = self.plan.tasks.len();
        let ids = |p: &Plan| -> Vec<String> { p.tasks.iter().map(|t| t.id.clone()).collect() };
        assert_eq!(
            ids(grown)[..before.min(grown.tasks.len())],
            ids(&self.plan)[..],
            "the grown plan changed the session's tasks"
        );
        assert_eq!(
            ids(grown)[before..],
            a.ids[..],
            "the grown plan's new tasks"
        );
        self.plan = grown.clone();
        self.spec.deps.extend(a.deps.iter().cloned());
        self.spec.retries.extend(&a.retries);
        self.spec.max_reassign.extend(&a.max_reassign);
        self.spec.cleanup.extend(&a.cleanup);
        a.saved = true;
    }

    /// The `tasks_added` line: after `SavePlan`, naming the new tasks.
    pub(super) fn tasks_journalled(&mut self, tasks: &[String]) {
        let a = self
            .adding
            .as_mut()
            .expect("tasks_added with no add request being fed");
        assert!(
            a.saved,
            "tasks_added journalled before the plan was saved: {tasks:?}"
        );
        assert!(!a.journalled, "tasks_added twice for one addition");
        assert_eq!(
            a.batch, self.batches,
            "tasks_added in another batch than its Add"
        );
        assert_eq!(tasks, &a.ids[..], "tasks_added names other tasks");
        a.journalled = true;
    }

    /// The reply to request `id`, if it is the addition being fed: refused, or accepted
    /// with the new tasks behind a failure decided at once and the others not.
    pub(super) fn answered(&mut self, id: &str, ok: bool, message: &str) {
        if self.adding.as_ref().is_none_or(|a| a.id != id) {
            return;
        }
        let a = self.adding.take().expect("an addition");
        assert_eq!(
            a.batch, self.batches,
            "an addition answered in another batch"
        );
        if let Some(why) = a.refused {
            assert!(
                !ok && message.starts_with(why),
                "an addition when {why}: answered {ok} {message:?}"
            );
            assert!(!a.saved && !a.journalled);
            assert_eq!(self.e.plan().tasks.len(), self.spec.n());
            if why.contains("ended") {
                self.stats.adds_refused_ended += 1;
            } else {
                self.stats.adds_refused_stopping += 1;
            }
            return;
        }
        assert!(ok, "a valid addition refused: {message}");
        assert!(
            a.saved && a.journalled,
            "an addition answered before its plan and its line"
        );
        for (id, doomed) in a.ids.iter().zip(&a.doomed) {
            let s = self.decided.get(id);
            if *doomed {
                assert_eq!(
                    s,
                    Some(&TaskState::Skipped),
                    "{id} is behind a dependency that did not succeed: decided at once"
                );
                self.stats.added_decided_at_once += 1;
            } else {
                assert_eq!(s, None, "{id} decided as it was added");
            }
        }
        let at_once = a.doomed.iter().filter(|d| **d).count();
        assert_eq!(
            message.contains(&format!(", {at_once} decided at once")),
            at_once > 0,
            "{message}"
        );
        self.stats.tasks_added += a.ids.len();
    }
}
