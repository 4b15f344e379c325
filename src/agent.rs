//! AI coding agents' state, from what the agent itself reports, never from its screen.
//!
//! `worker hook` reads one Claude Code hook payload (JSON on stdin, with
//! `hook_event_name`) and maps it to a state; `worker state STATE [MESSAGE]` does the same
//! for any other agent or script. Either appends one line to the attempt's `agent.jsonl`
//! and rings its worker (an empty `agent` file in the worker's directory), which relays the
//! line to its own journal, where the orchestrator sees it. A hook must never hurt the
//! agent: it prints nothing, always exits 0 (any output or failure can block or steer
//! Claude Code) and returns in milliseconds.

use std::io::Read as _;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::fsio;
use crate::session::Session;

/// Where an agent stands, for a person.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// Started, nothing reported yet (a folder-trust prompt fires no hook).
    Starting,
    Working,
    /// Waits for a person (a permission prompt, a question).
    Waiting,
    /// Done with its turn; waits for a new prompt.
    Idle,
    /// Its process ended (said by the agent, or seen by liveness).
    Exited,
}

impl AgentState {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Starting => "starting",
            AgentState::Working => "working",
            AgentState::Waiting => "waiting",
            AgentState::Idle => "idle",
            AgentState::Exited => "exited",
        }
    }

    /// What `worker state` accepts.
    pub fn parse(s: &str) -> Option<AgentState> {
        Some(match s {
            "working" => AgentState::Working,
            "waiting" => AgentState::Waiting,
            "idle" => AgentState::Idle,
            "exited" => AgentState::Exited,
            _ => return None,
        })
    }
}

/// One line of an attempt's `agent.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AgentLine {
    pub at: String,
    /// What the agent reported (a hook event's name, or `state`).
    pub event: String,
    /// The state it means; none for an event that changes nothing (recorded anyway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<AgentState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The longest message kept (a prompt's text can be long; status shows a line).
const MESSAGE_MAX: usize = 500;

/// The state a Claude Code hook payload means, with its message.
pub fn from_claude(payload: &serde_json::Value) -> (String, Option<AgentState>, Option<String>) {
    let event = payload["hook_event_name"]
        .as_str()
        .unwrap_or("unknown")
        .to_string();
    let message = payload["message"].as_str().map(str::to_string);
    let state = match event.as_str() {
        "UserPromptSubmit" | "PreToolUse" | "PostToolUse" => Some(AgentState::Working),
        "PermissionRequest" => Some(AgentState::Waiting),
        "Notification" => match payload["notification_type"].as_str() {
            Some("permission_prompt" | "elicitation_dialog") => Some(AgentState::Waiting),
            Some("idle_prompt") => Some(AgentState::Idle),
            _ => None,
        },
        "Stop" | "SessionStart" => Some(AgentState::Idle),
        "SessionEnd" => Some(AgentState::Exited),
        _ => None,
    };
    // A permission request names its tool when it has no message.
    let message = message.or_else(|| {
        (state == Some(AgentState::Waiting))
            .then(|| {
                payload["tool_name"]
                    .as_str()
                    .map(|t| format!("permission for {t}"))
            })
            .flatten()
    });
    (event, state, message.map(|m| clip(&m)))
}

fn clip(s: &str) -> String {
    match s.char_indices().nth(MESSAGE_MAX) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// Where a hook or `worker state` writes: the attempt running now, from the environment
/// its worker gave the task.
pub struct Target {
    pub session: Session,
    pub task: String,
    pub attempt: u32,
    pub worker: Option<String>,
}

impl Target {
    /// From `MAESTRO_SESSION`, `MAESTRO_TASK`, `MAESTRO_ATTEMPT`, `MAESTRO_WORKER`.
    pub fn from_env() -> Option<Target> {
        let session =
            Session::open(std::path::Path::new(&std::env::var_os("MAESTRO_SESSION")?)).ok()?;
        let task = std::env::var("MAESTRO_TASK").ok()?;
        crate::names::validate("task id", &task).ok()?;
        let attempt = std::env::var("MAESTRO_ATTEMPT").ok()?.parse().ok()?;
        let worker = std::env::var("MAESTRO_WORKER")
            .ok()
            .filter(|w| crate::names::is_valid(w));
        Some(Target {
            session,
            task,
            attempt,
            worker,
        })
    }

    /// Append `line` to the attempt's `agent.jsonl` and ring its worker.
    pub fn record(&self, line: &AgentLine) -> Result<()> {
        let path = self.session.agent_log(&self.task, self.attempt);
        let text = serde_json::to_string(line)
            .map_err(|e| crate::error::Error::Session(format!("{}: {e}", path.display())))?;
        let mut f = fsio::open_append(&path)?;
        fsio::append_line(&mut f, &path, &text)?;
        if let Some(w) = &self.worker {
            fsio::write_atomic(&self.session.worker_agent_bell(w), b"")?;
        }
        Ok(())
    }
}

/// `worker hook`: read one Claude Code hook payload from stdin and record it. Never fails
/// and never prints (see the module doc).
pub fn hook() {
    let mut text = String::new();
    // A payload is small; a runaway stdin is not read past this.
    let _ = std::io::stdin().take(1 << 20).read_to_string(&mut text);
    let Ok(payload) = serde_json::from_str::<serde_json::Value>(&text) else {
        return;
    };
    let Some(target) = Target::from_env() else {
        return;
    };
    let (event, state, message) = from_claude(&payload);
    let _ = target.record(&AgentLine {
        at: crate::proto::now_rfc3339(),
        event,
        state,
        message,
    });
}

/// The settings file that makes Claude Code report every state change to `worker hook`
/// (`claude --settings FILE`), for `agent = "claude-code"` tasks.
pub fn claude_settings(worker_bin: &str) -> serde_json::Value {
    let command = format!("{} hook", crate::launch::shell_quote(worker_bin));
    let hook = serde_json::json!([{"hooks": [{"type": "command", "command": command}]}]);
    let tool =
        serde_json::json!([{"matcher": "*", "hooks": [{"type": "command", "command": command}]}]);
    let mut hooks = serde_json::Map::new();
    for e in [
        "SessionStart",
        "UserPromptSubmit",
        "Notification",
        "PermissionRequest",
        "Stop",
        "SessionEnd",
    ] {
        hooks.insert(e.into(), hook.clone());
    }
    for e in ["PreToolUse", "PostToolUse"] {
        hooks.insert(e.into(), tool.clone());
    }
    serde_json::json!({ "hooks": hooks })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claude_code_events_map_to_states() {
        let cases = [
            (
                json!({"hook_event_name": "UserPromptSubmit", "prompt": "fix it"}),
                Some(AgentState::Working),
                None,
            ),
            (
                json!({"hook_event_name": "PreToolUse", "tool_name": "Bash"}),
                Some(AgentState::Working),
                None,
            ),
            (
                json!({"hook_event_name": "PostToolUse", "tool_name": "Bash"}),
                Some(AgentState::Working),
                None,
            ),
            (
                json!({"hook_event_name": "PermissionRequest", "tool_name": "Bash"}),
                Some(AgentState::Waiting),
                Some("permission for Bash"),
            ),
            (
                json!({"hook_event_name": "Notification", "notification_type": "permission_prompt",
                       "message": "Claude needs your permission to use Bash"}),
                Some(AgentState::Waiting),
                Some("Claude needs your permission to use Bash"),
            ),
            (
                json!({"hook_event_name": "Notification", "notification_type": "elicitation_dialog",
                       "message": "Which database?"}),
                Some(AgentState::Waiting),
                Some("Which database?"),
            ),
            (
                json!({"hook_event_name": "Notification", "notification_type": "idle_prompt",
                       "message": "Claude is waiting for your input"}),
                Some(AgentState::Idle),
                Some("Claude is waiting for your input"),
            ),
            (
                json!({"hook_event_name": "Stop"}),
                Some(AgentState::Idle),
                None,
            ),
            (
                json!({"hook_event_name": "SessionStart", "source": "startup"}),
                Some(AgentState::Idle),
                None,
            ),
            (
                json!({"hook_event_name": "SessionEnd", "reason": "exit"}),
                Some(AgentState::Exited),
                None,
            ),
            (json!({"hook_event_name": "PreCompact"}), None, None),
            (
                json!({"hook_event_name": "Notification", "notification_type": "auth_success"}),
                None,
                None,
            ),
        ];
        for (payload, state, message) in cases {
            let (_, s, m) = from_claude(&payload);
            assert_eq!((s, m.as_deref()), (state, message), "{payload}");
        }
        let (event, ..) = from_claude(&json!({"no": "name"}));
        assert_eq!(event, "unknown");
    }

    #[test]
    fn a_long_message_is_clipped() {
        let long = "x".repeat(2000);
        let (_, _, m) =
            from_claude(&json!({"hook_event_name": "PermissionRequest", "message": long}));
        assert_eq!(m.unwrap().len(), MESSAGE_MAX + 3);
    }

    #[test]
    fn the_claude_settings_hook_every_state_event_to_worker_hook() {
        let s = claude_settings("/opt/my bin/worker");
        let cmd = &s["hooks"]["PreToolUse"][0]["hooks"][0]["command"];
        assert_eq!(cmd, "'/opt/my bin/worker' hook");
        assert_eq!(s["hooks"]["PreToolUse"][0]["matcher"], "*");
        for e in [
            "SessionStart",
            "UserPromptSubmit",
            "Notification",
            "PermissionRequest",
            "Stop",
            "SessionEnd",
            "PostToolUse",
        ] {
            assert!(s["hooks"][e].is_array(), "{e}");
        }
    }
}
