//! Gates (`[[gate]]` with `approve = true`): a point between tasks that waits for a
//! person. A gate is an external node of the scheduler's graph, like a race or a signal:
//! once every task of its `after` succeeded it waits (journalled once, so the shell rings
//! the bell once), and `orchestrator approve` succeeds it (the tasks after it become
//! ready) or `orchestrator reject` fails it (they are skipped, and the failure policy
//! applies). A gate whose tasks did not all succeed is skipped with them by the
//! scheduler and never waits.

use super::{Engine, Phase};
use crate::journal::event::Event;
use crate::journal::history::GateRecord;
use crate::plan::OnFailure;
use crate::proto::TaskState;

impl Engine {
    /// The index of gate `id`, or the error a request naming it gets.
    fn gate_ix(&self, id: &str) -> Result<usize, String> {
        self.plan
            .gates
            .iter()
            .position(|g| g.id == id)
            .ok_or_else(|| format!("the session has no gate {id:?}"))
    }

    /// Whether a request for gate `g` can be answered now.
    fn gate_open_for_request(&self, g: usize) -> Result<(), String> {
        let id = &self.plan.gates[g].id;
        match self.gate_states[g] {
            Some(GateRecord::Waiting) => Ok(()),
            Some(GateRecord::Approved) => Err(format!("gate {id} was already approved")),
            Some(GateRecord::Rejected(_)) => Err(format!("gate {id} was already rejected")),
            None if !self.sched.is_open(self.graph.gate_node_ix(g)) => Err(format!(
                "gate {id} will never wait: a task before it did not succeed"
            )),
            None => Err(format!(
                "gate {id} is not waiting yet: the tasks before it have not all succeeded"
            )),
        }
    }

    pub(super) fn approve(&mut self, id: &str) -> Result<String, String> {
        let g = self.gate_ix(id)?;
        self.gate_open_for_request(g)?;
        self.gate_states[g] = Some(GateRecord::Approved);
        self.journal(Event::GateApproved { gate: id.into() });
        let node = self.graph.gate_node_ix(g);
        let ready = self.sched.succeed(node).len();
        Ok(format!(
            "gate {id} approved; {ready} task{} may start",
            if ready == 1 { "" } else { "s" }
        ))
    }

    pub(super) fn reject(&mut self, id: &str, reason: String) -> Result<String, String> {
        let g = self.gate_ix(id)?;
        self.gate_open_for_request(g)?;
        self.gate_states[g] = Some(GateRecord::Rejected(reason.clone()));
        self.journal(Event::GateRejected {
            gate: id.into(),
            reason: reason.clone(),
        });
        let node = self.graph.gate_node_ix(g);
        let skipped = self.sched.fail(node);
        let n = skipped.len();
        self.propagate(
            skipped,
            TaskState::Skipped,
            &format!("gate {id} was rejected: {reason}"),
        );
        if self.plan.on_failure == OnFailure::Stop {
            self.drain(format!("gate {id} was rejected (on_failure = stop)"));
        }
        Ok(format!(
            "gate {id} rejected; {n} task{} after it will not run",
            if n == 1 { "" } else { "s" }
        ))
    }

    /// Journal each gate whose tasks have all succeeded as waiting, once.
    pub(super) fn check_gates(&mut self) {
        if self.phase != Phase::Running {
            return;
        }
        for g in 0..self.plan.gates.len() {
            if self.gate_states[g].is_none() && self.sched.deps_met(self.graph.gate_node_ix(g)) {
                self.gate_states[g] = Some(GateRecord::Waiting);
                let gate = self.plan.gates[g].id.clone();
                self.journal(Event::GateWaiting { gate });
            }
        }
    }

    /// Whether a gate waits for a person (nothing is stalled while one does).
    pub(super) fn any_gate_waiting(&self) -> bool {
        self.gate_states
            .iter()
            .any(|s| matches!(s, Some(GateRecord::Waiting)))
    }
}
