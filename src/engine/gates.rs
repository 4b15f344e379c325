//! Gates (`[[gate]]`): a point between tasks that checks (`run`, a command that must exit
//! 0) and/or waits for a person (`approve = true`). A gate is an external node of the
//! scheduler's graph, like a race or a signal: once every task of its `after` succeeded
//! its check runs (an auxiliary command, `aux.rs`); once that passed (or at once, without
//! one) it waits for approval (journalled once, so the shell rings the bell once), and
//! `orchestrator approve` succeeds it (the tasks after it become ready) or `orchestrator
//! reject` fails it. A failed check or a rejection skips the tasks after it, and the
//! failure policy applies. A gate whose tasks did not all succeed is skipped with them by
//! the scheduler and never waits.

use super::{Engine, Phase};
use crate::journal::event::Event;
use crate::journal::history::GateRecord;
use crate::proto::{AuxKind, TaskState};

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
            Some(GateRecord::Failed(_)) => Err(format!("gate {id} failed its check")),
            Some(GateRecord::Checking) => Err(format!(
                "gate {id} is not waiting yet: its check is running"
            )),
            Some(GateRecord::Passed) => {
                Err(format!("gate {id} passed its check (it needs no approval)"))
            }
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
        let n = self.fail_gate_node(g, &format!("gate {id} was rejected: {reason}"));
        let policy = self.plan.on_failure;
        self.apply_failure_policy(policy, format!("gate {id} was rejected"));
        Ok(format!(
            "gate {id} rejected; {n} task{} after it will not run",
            if n == 1 { "" } else { "s" }
        ))
    }

    /// Fail gate `g`'s node: the tasks after it are skipped. How many.
    fn fail_gate_node(&mut self, g: usize, why: &str) -> usize {
        let node = self.graph.gate_node_ix(g);
        let skipped = self.sched.fail(node);
        let n = skipped.len();
        self.propagate(skipped, TaskState::Skipped, why);
        n
    }

    /// Each gate whose tasks have all succeeded: its check starts, or (without one) it
    /// waits for a person, journalled once.
    pub(super) fn check_gates(&mut self, now: std::time::Instant) {
        if self.phase != Phase::Running {
            return;
        }
        for g in 0..self.plan.gates.len() {
            if self.gate_states[g].is_none() && self.sched.deps_met(self.graph.gate_node_ix(g)) {
                if self.plan.gates[g].run.is_some() {
                    self.gate_states[g] = Some(GateRecord::Checking);
                    let job = super::AuxRef {
                        kind: AuxKind::Check,
                        owner: g,
                    };
                    let attempt = self.next_aux_attempt(job);
                    self.schedule_aux(job, attempt, now);
                } else {
                    self.gate_checked(g);
                }
            }
        }
    }

    /// Gate `g`'s check passed (or it has none): it waits for a person, or opens.
    pub(super) fn gate_checked(&mut self, g: usize) {
        let gate = self.plan.gates[g].id.clone();
        if self.plan.gates[g].approve {
            self.gate_states[g] = Some(GateRecord::Waiting);
            self.journal(Event::GateWaiting { gate });
        } else {
            self.gate_states[g] = Some(GateRecord::Passed);
            self.journal(Event::GatePassed { gate });
            self.sched.succeed(self.graph.gate_node_ix(g));
        }
    }

    /// Gate `g`'s check failed: a failure for what depends on it.
    pub(super) fn gate_failed(&mut self, g: usize, reason: String) {
        let gate = self.plan.gates[g].id.clone();
        self.gate_states[g] = Some(GateRecord::Failed(reason.clone()));
        self.journal(Event::GateFailed {
            gate: gate.clone(),
            reason: reason.clone(),
        });
        self.fail_gate_node(g, &format!("gate {gate} failed: {reason}"));
        let policy = self.plan.on_failure;
        self.apply_failure_policy(policy, format!("gate {gate} failed"));
    }

    /// Whether a gate waits for a person (nothing is stalled while one does).
    pub(super) fn any_gate_waiting(&self) -> bool {
        self.gate_states
            .iter()
            .any(|s| matches!(s, Some(GateRecord::Waiting)))
    }
}
