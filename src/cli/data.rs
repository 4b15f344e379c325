//! Command-line verbs for messages, shared data and progress: `worker send|recv|set|get|
//! progress` for task scripts and `orchestrator send|inbox` for people. Kept apart
//! from the other verbs so each verb family stays small; the parsing is flattened into the main
//! command enums there, and the work is done by [`crate::message`] and [`crate::shared`].
//!
//! Exit codes follow the rest of the CLI: 0 done, 1 "nothing there" or a timeout (a script
//! can loop on it), 2 misuse, 3 maestro itself failed.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Subcommand;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::message::{self, Envelope};
use crate::names;
use crate::session::Session;
use crate::shared;
use crate::watch::{Wait, WatchMode};

/// `--timeout 30s` and friends (the `worker` and `orchestrator` verbs share it; it lives
/// here so that `cli` depends on this module and not the other way round).
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// Which task (and attempt) a verb acts for; the environment a worker gives every task.
#[derive(clap::Args, Debug)]
pub struct TaskArgs {
    /// The task (default: $MAESTRO_TASK).
    #[arg(long, env = "MAESTRO_TASK")]
    pub task: Option<String>,
    /// This task's attempt (default: $MAESTRO_ATTEMPT).
    #[arg(long, env = "MAESTRO_ATTEMPT")]
    pub attempt: Option<u32>,
}

impl TaskArgs {
    fn task(&self) -> Result<&str> {
        let t = self.task.as_deref().ok_or_else(|| {
            Error::Usage("no task: run this inside a maestro task or pass --task".into())
        })?;
        names::validate("task id", t).map_err(Error::Usage)?;
        Ok(t)
    }
}

/// Verbs a task script calls (`worker <verb>`).
#[derive(Subcommand, Debug)]
pub enum DataVerb {
    /// Send a message to a task, to every other task (`all`) or to the orchestrator.
    #[command(after_help = "Examples:
  worker send --to load-orders \"users done\"
  worker send --to orchestrator --json report.json")]
    Send {
        /// Who gets it: a task, `all` other tasks, or `orchestrator`.
        #[arg(long, value_name = "TASK|all|orchestrator")]
        to: String,
        /// The message, sent as a string (or use --json).
        #[arg(required_unless_present = "json")]
        text: Option<String>,
        /// Send a JSON value read from FILE (`-` for stdin) instead.
        #[arg(long, value_name = "FILE", conflicts_with = "text")]
        json: Option<PathBuf>,
        #[command(flatten)]
        task: TaskArgs,
    },
    /// Take this task's oldest unread message and print its body (exit 1 when there is none).
    #[command(after_help = "Examples:
  worker recv --wait --timeout 10m
  worker recv --from orchestrator --json")]
    Recv {
        /// Block until a message arrives.
        #[arg(long)]
        wait: bool,
        /// Only messages from this task (or `orchestrator`).
        #[arg(long, value_name = "TASK")]
        from: Option<String>,
        /// Print the whole envelope (from, to, seq, sent_at, body) as JSON.
        #[arg(long)]
        json: bool,
        /// With --wait: give up after this long (e.g. 30s).
        #[arg(long, value_parser = parse_duration, requires = "wait")]
        timeout: Option<Duration>,
        #[command(flatten)]
        task: TaskArgs,
    },
    /// Store a value every task can read (shared/KEY.json).
    #[command(after_help = "Examples:
  worker set schema-version 42
  worker set config --json config.json")]
    Set {
        /// The value's name.
        key: String,
        /// The value, stored as a string (or use --json).
        #[arg(required_unless_present = "json")]
        value: Option<String>,
        /// Read a JSON value from FILE (`-` for stdin) instead.
        #[arg(long, value_name = "FILE", conflicts_with = "value")]
        json: Option<PathBuf>,
    },
    /// Print a shared value (exit 1 when there is none).
    #[command(after_help = "Examples:
  worker get schema-version --wait --timeout 1m")]
    Get {
        /// The value's name.
        key: String,
        /// Block until the key has a value.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this long (e.g. 30s).
        #[arg(long, value_parser = parse_duration, requires = "wait")]
        timeout: Option<Duration>,
    },
    /// Report progress: `worker progress PCT [MESSAGE]` (PCT from 0 to 100).
    #[command(after_help = "Examples:
  worker progress 40 \"users: 400k of 1M rows\"")]
    Progress {
        // A string, so that "-5" and "abc" get our message rather than clap's.
        /// Percent done, 0 to 100.
        #[arg(allow_negative_numbers = true)]
        pct: String,
        /// What it is doing (shown by `orchestrator status`).
        message: Option<String>,
        #[command(flatten)]
        task: TaskArgs,
    },
}

/// Run a data verb; returns the exit code.
pub fn run_worker_verb(session: &Session, verb: DataVerb, watch: WatchMode) -> Result<i32> {
    match verb {
        DataVerb::Send {
            to,
            text,
            json,
            task,
        } => {
            let from = task.task()?;
            let body = body_of(text, json.as_deref())?;
            message::send(session, from, &to, body)?;
            Ok(0)
        }
        DataVerb::Recv {
            wait,
            from,
            json,
            timeout,
            task,
        } => {
            let me = task.task()?;
            if let Some(f) = &from {
                names::validate("task id", f).map_err(Error::Usage)?;
            }
            message::check_receiver(session, me, from.as_deref())?;
            let got = if wait {
                message::wait_take(
                    session,
                    me,
                    from.as_deref(),
                    Wait {
                        mode: watch,
                        timeout,
                    },
                )?
            } else {
                message::take(session, me, from.as_deref())?
            };
            match got {
                Some(env) => {
                    print_line(&if json {
                        envelope_json(&env)
                    } else {
                        message::display_body(&env.body)
                    })?;
                    Ok(0)
                }
                None if wait => Err(Error::Verb(format!(
                    "recv: timed out after {} waiting for a message{}",
                    dur_text(timeout),
                    from.map(|f| format!(" from {f}")).unwrap_or_default()
                ))),
                None => {
                    match from {
                        Some(f) => eprintln!("no messages for {me} from {f}"),
                        None => eprintln!("no messages for {me}"),
                    }
                    Ok(1)
                }
            }
        }
        DataVerb::Set { key, value, json } => {
            let v = body_of(value, json.as_deref())?;
            shared::set(session, &key, &v)?;
            Ok(0)
        }
        DataVerb::Get { key, wait, timeout } => {
            let got = if wait {
                shared::wait_get(
                    session,
                    &key,
                    Wait {
                        mode: watch,
                        timeout,
                    },
                )?
            } else {
                shared::get(session, &key)?
            };
            match got {
                Some(v) => {
                    print_line(&message::display_body(&v))?;
                    Ok(0)
                }
                None if wait => Err(Error::Verb(format!(
                    "get {key}: timed out after {} waiting for a value",
                    dur_text(timeout)
                ))),
                None => {
                    eprintln!("no value for {key}");
                    Ok(1)
                }
            }
        }
        DataVerb::Progress { pct, message, task } => {
            let pct = shared::parse_pct(&pct)?;
            let t = task.task()?;
            let attempt = task.attempt.ok_or_else(|| {
                Error::Usage("no attempt: run this inside a maestro task or pass --attempt".into())
            })?;
            shared::set_progress(session, t, attempt, pct, message)?;
            Ok(0)
        }
    }
}

/// `orchestrator` commands for people: send to a task, read the orchestrator's inbox.
#[derive(Subcommand, Debug)]
pub enum OrchestratorDataCommand {
    /// Send a message to a task of a session (or `all` of them).
    #[command(after_help = "Examples:
  orchestrator send demo-2026 --to agent-1 \"yes, go on\"
  orchestrator send demo-2026 --to all --json answer.json

The task reads it with `worker recv`. Refused (exit 2) when the session has finished.")]
    Send {
        /// The running session (directory, id or unique id prefix).
        session: String,
        /// The task that gets it, or `all`.
        #[arg(long, value_name = "TASK|all")]
        to: String,
        /// The message, sent as a string (or use --json).
        #[arg(required_unless_present = "json")]
        text: Option<String>,
        /// Send a JSON value read from FILE (`-` for stdin) instead.
        #[arg(long, value_name = "FILE", conflicts_with = "text")]
        json: Option<PathBuf>,
    },
    /// Print and consume every unread message tasks sent to the orchestrator.
    #[command(after_help = "Examples:
  orchestrator inbox demo-2026
  orchestrator inbox demo-2026 --json | jq .body")]
    Inbox {
        /// The session (directory, id or unique id prefix).
        session: String,
        /// Print each whole envelope as a JSON line instead of `FROM: BODY`.
        #[arg(long)]
        json: bool,
    },
}

/// Run an orchestrator data command; `root` is the sessions root.
pub fn run_orchestrator_command(root: &Path, cmd: OrchestratorDataCommand) -> Result<i32> {
    match cmd {
        OrchestratorDataCommand::Send {
            session,
            to,
            text,
            json,
        } => {
            let s = Session::resolve(root, Some(&session))?;
            crate::orchestrator::refuse_if_finished(&s, "send to")?;
            let body = body_of(text, json.as_deref())?;
            message::send(&s, message::ORCHESTRATOR, &to, body)?;
            Ok(0)
        }
        OrchestratorDataCommand::Inbox { session, json } => {
            let s = Session::resolve(root, Some(&session))?;
            for env in message::take_all(&s, message::ORCHESTRATOR)? {
                print_line(&if json {
                    envelope_json(&env)
                } else {
                    format!("{}: {}", env.from, message::display_body(&env.body))
                })?;
            }
            Ok(0)
        }
    }
}

fn dur_text(d: Option<Duration>) -> String {
    humantime::format_duration(d.unwrap_or_default()).to_string()
}

fn envelope_json(env: &Envelope) -> String {
    serde_json::to_string(env).unwrap_or_default()
}

/// Print one line to stdout. A closed stdout is an error, not a panic (`println!` would
/// panic): the message was already consumed, so the failure must at least be reported.
fn print_line(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .map_err(|e| Error::io("<stdout>", "write", e))
}

/// A message body or shared value: the text argument as a JSON string, or JSON from
/// `--json FILE|-`. clap guarantees exactly one is given.
fn body_of(text: Option<String>, json: Option<&Path>) -> Result<Value> {
    match (text, json) {
        (_, Some(file)) => read_json_input(file),
        (Some(t), None) => Ok(Value::String(t)),
        (None, None) => Err(Error::Usage("give a value or --json FILE".into())),
    }
}

/// Read a JSON value from a file the user named, or stdin for `-`. This is the user's own
/// input, not a session file, so symlinks are followed; the read is capped all the same,
/// stdin like a file.
pub fn read_json_input(file: &Path) -> Result<Value> {
    let cap = crate::fsio::JSON_CAP;
    let (name, reader): (String, Box<dyn Read>) = if file == Path::new("-") {
        ("<stdin>".into(), Box::new(std::io::stdin()))
    } else {
        let f = std::fs::File::open(file).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Usage(format!("{}: no such file", file.display()))
            } else {
                Error::io(file, "open", e)
            }
        })?;
        (file.display().to_string(), Box::new(f))
    };
    let mut buf = Vec::new();
    reader
        .take(cap + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io(&name, "read", e))?;
    if buf.len() as u64 > cap {
        return Err(Error::Usage(format!(
            "{name}: too large (over {cap} bytes)"
        )));
    }
    serde_json::from_slice(&buf).map_err(|e| Error::Usage(format!("{name}: invalid JSON: {e}")))
}
