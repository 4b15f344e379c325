//! `orchestrator attach SESSION TASK`: the command that puts a person in the terminal of
//! the worker running a task, worked out from the session's files (who runs the task,
//! which launcher started that worker, where its window is), then run or printed. A
//! terminal-emulator window is raised and focused with xdotool (`windowactivate` needs a
//! window manager that supports it; raise and focus work without one).

use crate::error::{Error, Result};
use crate::fsio;
use crate::launch::{LauncherKind, Terminal, shell_quote, tmux_session_name};
use crate::proto::{TaskState, WorkerInfo};
use crate::session::Session;

/// How to reach a task's terminal: the argv to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attach {
    pub argv: Vec<String>,
}

impl Attach {
    /// The command as one shell line (for `--print`).
    pub fn line(&self) -> String {
        let words: Vec<String> = self.argv.iter().map(|a| shell_quote(a)).collect();
        words.join(" ")
    }
}

/// The command that reaches the terminal where `task` runs now. `inside_tmux`: the
/// caller runs inside tmux (switch the client rather than attach a new one).
pub fn command(s: &Session, task: &str, inside_tmux: bool) -> Result<Attach> {
    let snap = crate::status::snapshot(s);
    let view = snap
        .tasks
        .iter()
        .find(|t| t.id == task)
        .ok_or_else(|| Error::Usage(format!("session {} has no task {task:?}", s.id())))?;
    let worker = match (&view.worker, view.state) {
        (Some(w), TaskState::Running) => w.clone(),
        _ => {
            return Err(Error::Usage(format!(
                "task {task} is not running (state: {}); `orchestrator logs {} {task}` shows \
                 its output",
                view.state.as_str(),
                s.id()
            )));
        }
    };
    let info: WorkerInfo = fsio::read_json(&s.worker_json(&worker))?
        .ok_or_else(|| Error::Session(format!("{}: missing", s.worker_json(&worker).display())))?;
    for_worker(s.id(), task, &worker, &info, inside_tmux)
}

/// The command for worker `wid` as its `worker.json` describes it.
fn for_worker(
    session: &str,
    task: &str,
    wid: &str,
    info: &WorkerInfo,
    inside_tmux: bool,
) -> Result<Attach> {
    let launcher = info.launcher.parse::<LauncherKind>().ok();
    match launcher {
        Some(LauncherKind::Tmux) => {
            let socket = info.tmux_socket.clone().ok_or_else(|| {
                Error::Session(format!(
                    "worker {wid} runs in tmux but did not record its server's socket"
                ))
            })?;
            let target = format!("{}:{wid}", tmux_session_name(session));
            let verb = if inside_tmux {
                "switch-client"
            } else {
                "attach"
            };
            Ok(Attach {
                argv: ["tmux", "-S", &socket, verb, "-t", &target]
                    .map(str::to_string)
                    .to_vec(),
            })
        }
        Some(LauncherKind::Terminal(_)) => {
            if !crate::launch::on_path("xdotool") {
                return Err(Error::Usage(format!(
                    "task {task} runs in the window titled \"{}\"; raise it by hand (with \
                     xdotool installed, attach raises it)",
                    Terminal::title(session, wid)
                )));
            }
            Ok(Attach {
                argv: [
                    "xdotool",
                    "search",
                    "--name",
                    &Terminal::title(session, wid),
                    "windowraise",
                    "windowfocus",
                ]
                .map(str::to_string)
                .to_vec(),
            })
        }
        _ => Err(Error::Usage(format!(
            "task {task} runs headless (worker {wid}, launcher {}): there is no terminal to \
             attach to; `orchestrator logs {session} {task} -f` follows its output",
            info.launcher
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(launcher: &str, socket: Option<&str>) -> WorkerInfo {
        WorkerInfo {
            id: "w2".into(),
            pid: 1,
            host: "h".into(),
            launcher: launcher.into(),
            terminal: Some("%3".into()),
            tmux_socket: socket.map(str::to_string),
            started_at: "x".into(),
            protocol: Some(2),
        }
    }

    #[test]
    fn tmux_attaches_or_switches_to_the_workers_window_on_its_server() {
        let i = info("tmux", Some("/tmp/tmux-0/my sock"));
        let a = for_worker("p-1.x", "a", "w2", &i, false).unwrap();
        assert_eq!(a.line(), "tmux -S '/tmp/tmux-0/my sock' attach -t p-1_x:w2");
        let a = for_worker("p-1.x", "a", "w2", &i, true).unwrap();
        assert_eq!(a.argv[3], "switch-client");
    }

    #[test]
    fn a_headless_task_has_no_terminal_and_says_where_its_output_is() {
        let e = for_worker("p-1", "a", "w2", &info("background", None), false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "task a runs headless (worker w2, launcher background): there is no terminal to \
             attach to; `orchestrator logs p-1 a -f` follows its output"
        );
    }
}
