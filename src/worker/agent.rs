//! A worker's side of agent tasks: the attempt's agent state starts as `starting`, Claude
//! Code is given the settings that make it report (`worker hook`), and what the agent
//! reports in the attempt's `agent.jsonl` is relayed into the worker's journal, where the
//! orchestrator sees it. Whether the agent worked and then went idle is what ends a task
//! with `end_on = "idle"` (`wait.rs`).

use std::path::PathBuf;

use super::Worker;
use crate::agent::{AgentLine, AgentState};
use crate::error::Result;
use crate::fsio;
use crate::journal::WorkerEvent;
use crate::plan::TaskCommand;
use crate::proto::{self, Assignment};

/// How far the worker relayed an attempt's `agent.jsonl`.
#[derive(Debug, Default)]
pub(super) struct AgentRelay {
    /// Bytes of the file already relayed (whole lines only).
    read: u64,
    /// The last state relayed, with its message: only changes are relayed.
    last: Option<(AgentState, Option<String>)>,
    /// The agent reported `working` at least once in this attempt: an `idle` after that
    /// ends a turn, where an `idle` before it (Claude Code's SessionStart) ends nothing.
    pub(super) worked: bool,
}

impl Worker {
    /// For an agent task: its state starts as `starting` (a folder-trust prompt fires no
    /// hook), and Claude Code is given the settings that make it report to `worker hook`
    /// (`--settings FILE` after `claude` at the start of the command; the file's path is
    /// also in `$MAESTRO_CLAUDE_SETTINGS` for commands that start it otherwise). The
    /// command to run.
    pub(super) fn prepare_agent(&mut self, a: &Assignment) -> Result<TaskCommand> {
        let Some(kind) = a.agent else {
            return Ok(a.command.clone());
        };
        let target = crate::agent::Target {
            session: self.session.clone(),
            task: a.task.clone(),
            attempt: a.attempt,
            worker: None,
        };
        target.record(&AgentLine {
            at: proto::now_rfc3339(),
            event: "start".into(),
            state: Some(AgentState::Starting),
            message: None,
        })?;
        if kind != crate::plan::AgentKind::ClaudeCode {
            return Ok(a.command.clone());
        }
        let settings = self.session.claude_settings(&a.task, a.attempt);
        let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("worker"));
        self.fs.write_json(
            &settings,
            &crate::agent::claude_settings(&exe.to_string_lossy()),
        )?;
        let path = settings.to_string_lossy().into_owned();
        Ok(match &a.command {
            TaskCommand::Argv(argv)
                if argv.first().is_some_and(|p| {
                    std::path::Path::new(p).file_name() == Some("claude".as_ref())
                }) =>
            {
                let mut v = vec![argv[0].clone(), "--settings".into(), path];
                v.extend(argv[1..].iter().cloned());
                TaskCommand::Argv(v)
            }
            TaskCommand::Shell(s) if s == "claude" || s.starts_with("claude ") => {
                TaskCommand::Shell(format!(
                    "claude --settings {}{}",
                    crate::launch::shell_quote(&path),
                    &s["claude".len()..]
                ))
            }
            c => c.clone(),
        })
    }

    /// Relay what the attempt's agent reported since the last look into our journal,
    /// where the orchestrator sees it; the last state reported, if any. Only whole lines
    /// are taken (a hook may be writing one).
    pub(super) fn relay_agent(
        &mut self,
        task: &str,
        attempt: u32,
        relay: &mut AgentRelay,
    ) -> Option<AgentState> {
        use std::io::{Read as _, Seek as _, SeekFrom};
        let path = self.session.agent_log(task, attempt);
        let mut f = fsio::open_read(&path).ok().flatten()?;
        let len = f.metadata().ok()?.len();
        if len <= relay.read {
            return None;
        }
        f.seek(SeekFrom::Start(relay.read)).ok()?;
        let mut buf = Vec::new();
        // A runaway writer is read a megabyte at a time.
        f.take(1 << 20).read_to_end(&mut buf).ok()?;
        let whole = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        relay.read += whole as u64;
        let mut last = None;
        for line in buf[..whole].split(|&b| b == b'\n') {
            let Ok(l) = serde_json::from_slice::<AgentLine>(line) else {
                continue;
            };
            // Only changes are relayed (an agent at work fires a hook per tool call);
            // agent.jsonl keeps every report.
            let Some(state) = l.state else {
                continue;
            };
            last = Some(state);
            relay.worked |= state == AgentState::Working;
            let now = Some((state, l.message.clone()));
            if relay.last == now {
                continue;
            }
            relay.last = now;
            let _ = self.journal.append_worker(&WorkerEvent::Agent {
                task: task.to_string(),
                attempt,
                line: l,
            });
        }
        last
    }
}
