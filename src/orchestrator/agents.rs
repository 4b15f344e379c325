//! Agent tasks' states as their workers relay them: journalled when one changes, and a
//! person told when an agent starts waiting for them (the terminal bell, once per wait;
//! the task's `notify` command).

use std::process::{Command, Stdio};

use super::Orchestrator;
use crate::agent::{AgentLine, AgentState};
use crate::error::Result;
use crate::journal::Event;

impl Orchestrator {
    /// One line an agent reported, relayed by its worker.
    pub(super) fn agent_said(&mut self, task: String, attempt: u32, line: AgentLine) -> Result<()> {
        let Some(state) = line.state else {
            // Recorded in the attempt's agent.jsonl; changes nothing.
            return Ok(());
        };
        if self.agents.get(&task) == Some(&(attempt, state)) {
            return Ok(());
        }
        self.agents.insert(task.clone(), (attempt, state));
        let ev = Event::AgentState {
            task: task.clone(),
            attempt,
            state,
            message: line.message.clone(),
            at: line.at,
        };
        self.journal.append(&ev)?;
        self.narrate(&ev);
        if state == AgentState::Waiting {
            self.notify(&task, line.message.as_deref().unwrap_or(""));
        }
        Ok(())
    }

    /// Run the task's `notify` command, if it has one, in the background: a notification
    /// must never hold the session up, and its failure is the command's business.
    fn notify(&self, task: &str, message: &str) {
        let Some(t) = self.engine.task_index(task) else {
            return;
        };
        let spec = &self.engine.plan().tasks[t];
        let Some(cmd) = &spec.notify else {
            return;
        };
        let spawned = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(&spec.cwd)
            .env("MAESTRO_SESSION", self.session.root())
            .env("MAESTRO_TASK", task)
            .env("MAESTRO_AGENT_MESSAGE", message)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // What it says goes where the orchestrator's own messages go.
            .stderr(Stdio::inherit())
            .spawn();
        if let Ok(mut child) = spawned {
            std::thread::spawn(move || {
                let _ = child.wait();
            });
        }
    }
}
