//! Tasks added to a live session (`orchestrator add`): the plan, its graph and the
//! scheduler grow while every state already decided is kept. New tasks may run after
//! any task, race, gate or signal of the session and after each other; no task of the
//! session can come to depend on a new one, so nothing decided is reopened. A new task
//! whose dependency can no longer succeed is decided at once, as it would have been had
//! it been in the plan from the start.
//!
//! The plan file is written before the journal line that names the new tasks (the
//! `SavePlan` command, then `tasks_added`): a resume keeps only the tasks the journal
//! vouches for, so an addition cut short by a crash never half-happened.

use super::{Command, Engine, Phase, Task};
use crate::journal::event::{ControlAction, Event};
use crate::plan::NodeKind;
use crate::proto::TaskState;
use crate::scheduler::State;

/// How many added ids a reply lists before it counts the rest.
const LISTED: usize = 8;

impl Engine {
    /// A request to add `tasks`, answered with what became of them.
    pub(super) fn add(&mut self, id: String, tasks: Vec<crate::plan::Task>) {
        self.journal(Event::ControlRequest {
            id: id.clone(),
            action: ControlAction::Add { tasks: tasks.len() },
            task: None,
        });
        let (ok, message) = match self.grow(tasks) {
            Ok(m) => (true, m),
            Err(m) => (false, m),
        };
        self.out.push(Command::Reply { id, ok, message });
    }

    fn grow(&mut self, tasks: Vec<crate::plan::Task>) -> Result<String, String> {
        match self.phase {
            Phase::Running | Phase::Frozen => {}
            Phase::Finished(s) => {
                return Err(format!("the session has already ended ({})", s.as_str()));
            }
            Phase::Cancelling => return Err("the session is being cancelled".into()),
            Phase::Interrupting(_) => return Err("the session is being interrupted".into()),
            Phase::Draining => {
                return Err("the session is stopping: nothing new starts in it".into());
            }
            Phase::RollingBack => return Err("the session is rolling back".into()),
        }
        if tasks.is_empty() {
            return Err("no tasks to add".into());
        }
        let merged = self
            .plan
            .with_added(tasks)
            .map_err(|e| e.kind().to_string())?;
        let before = self.plan.tasks.len();
        let old = std::mem::replace(&mut self.graph, merged.graph());
        self.plan = merged;
        let map: Vec<usize> = old
            .nodes()
            .map(|node| match old.kind(node) {
                NodeKind::Task(i) => *i,
                NodeKind::Race(k) => self.graph.race_nodes()[*k].index(),
                NodeKind::Gate(g) => self.graph.gate_node_ix(*g),
                // Every signal some task waited for still has one waiting.
                NodeKind::Signal(name) => self.graph.signal(name).map_or(0, |n| n.index()),
            })
            .collect();
        let (sched, doomed) =
            self.sched
                .grown(self.graph.dep_lists(), self.graph.external_flags(), &map);
        self.sched = sched;
        let new: Vec<String> = self.plan.tasks[before..]
            .iter()
            .map(|t| t.id.clone())
            .collect();
        for (i, id) in new.iter().enumerate() {
            self.index.insert(id.clone(), before + i);
        }
        self.tasks.resize(self.plan.tasks.len(), Task::default());
        self.out.push(Command::SavePlan);
        self.journal(Event::TasksAdded { tasks: new.clone() });
        for (t, dep) in doomed {
            let (state, why) = self.doomed_by(dep);
            let mut skipped = vec![t];
            skipped.extend(self.sched.skip(t));
            self.propagate(skipped, state, &why);
        }
        Ok(self.added_message(before, &new))
    }

    /// What a task after node `dep` (which can no longer succeed) becomes, and why.
    fn doomed_by(&self, dep: usize) -> (TaskState, String) {
        let node = self.graph.nodes().nth(dep).expect("a node of the graph");
        let name = match self.graph.kind(node) {
            NodeKind::Task(i) if self.tasks[*i].decided == Some(TaskState::Cancelled) => {
                let why = format!("dependency {} was cancelled", self.plan.tasks[*i].id);
                return (TaskState::Cancelled, why);
            }
            NodeKind::Task(i) => self.plan.tasks[*i].id.clone(),
            NodeKind::Race(k) => self.plan.races[*k].id.clone(),
            NodeKind::Gate(g) => self.plan.gates[*g].dep_name(),
            NodeKind::Signal(s) => format!("signal:{s}"),
        };
        (
            TaskState::Skipped,
            format!("dependency {name} did not succeed"),
        )
    }

    fn added_message(&self, before: usize, new: &[String]) -> String {
        let n = new.len();
        let mut ids = new[..n.min(LISTED)].join(", ");
        if n > LISTED {
            ids.push_str(&format!(" and {} more", n - LISTED));
        }
        let range = before..self.plan.tasks.len();
        let ready = range
            .clone()
            .filter(|&t| self.sched.state(t) == State::Ready)
            .count();
        let decided = range.filter(|&t| self.tasks[t].decided.is_some()).count();
        let mut m = format!(
            "added {n} task{} ({ids}): {ready} ready",
            if n == 1 { "" } else { "s" }
        );
        if decided > 0 {
            m.push_str(&format!(
                ", {decided} decided at once (a dependency did not succeed)"
            ));
        }
        if self.phase == Phase::Frozen {
            m.push_str("; the session is frozen: they start after `thaw`");
        }
        m
    }
}
