//! The `worker` command line: running a worker, and the verbs a task's script calls.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::error::{Error, Result};
use crate::primitives::{self, TaskRef};

use super::data::TaskArgs;
use crate::session::Session;
use crate::watch::{Wait, WatchMode};
use crate::worker::{self, WorkerConfig};

use super::{init_tracing, parse_or_exit, report};

#[derive(Parser, Debug)]
#[command(
    name = "worker",
    version,
    about = "A maestro worker: runs the tasks the orchestrator assigns to it; inside a task, the verbs below"
)]
pub(super) struct WorkerArgs {
    /// The session directory (default: $MAESTRO_SESSION).
    #[arg(long, global = true, env = "MAESTRO_SESSION")]
    session: Option<PathBuf>,
    /// This worker's id (required to run a worker).
    #[arg(long)]
    id: Option<String>,
    /// native, poll or off (default: $MAESTRO_WATCH, else native).
    #[arg(long)]
    watch: Option<String>,
    /// The launcher that started us (recorded in worker.json).
    #[arg(long, default_value = "manual")]
    launcher: String,
    /// After a task fails, stay until the session ends (keeps a tmux window open).
    #[arg(long)]
    hold_failed: bool,
    /// fsync every file written.
    #[arg(long)]
    durable: bool,
    #[command(subcommand)]
    verb: Option<WorkerVerb>,
}

#[derive(Subcommand, Debug)]
enum WorkerVerb {
    #[command(flatten)]
    Data(super::data::DataVerb),
    /// Save a value for this task's next attempts (tasks/<id>/state.json).
    #[command(after_help = "Examples:
  worker save offset 120000
  worker save cursor --json cursor.json")]
    Save {
        /// The name it is saved under.
        key: String,
        /// The value, stored as a string (or use --json).
        #[arg(required_unless_present = "json")]
        value: Option<String>,
        /// Read a JSON value from FILE (`-` for stdin) instead.
        #[arg(long, value_name = "FILE", conflicts_with = "value")]
        json: Option<PathBuf>,
        #[command(flatten)]
        task: TaskArgs,
    },
    /// Arrive at a barrier and wait until every participant has.
    #[command(after_help = "Examples:
  worker checkpoint schema-ready
  worker checkpoint loaded --parties 4 --timeout 10m")]
    Checkpoint {
        /// The barrier's name (a plan `[[checkpoint]]`, or any name with --parties).
        name: String,
        /// Participants, for a barrier not declared in the plan.
        #[arg(long)]
        parties: Option<usize>,
        /// Give up after this long (e.g. 30s).
        #[arg(long, value_parser = super::data::parse_duration)]
        timeout: Option<std::time::Duration>,
        #[command(flatten)]
        task: TaskArgs,
    },
    /// Raise a named signal (tasks `after = ["signal:NAME"]` start).
    #[command(after_help = "Examples:
  worker signal replica-caught-up")]
    Signal {
        /// The signal's name.
        name: String,
        #[command(flatten)]
        task: TaskArgs,
    },
    /// Block until a signal is raised.
    #[command(after_help = "Examples:
  worker wait-signal replica-caught-up --timeout 5m")]
    WaitSignal {
        /// The signal's name.
        name: String,
        /// Give up after this long (e.g. 30s; exit 1).
        #[arg(long, value_parser = super::data::parse_duration)]
        timeout: Option<std::time::Duration>,
    },
    /// Run CMD holding a named lock: worker lock NAME [--shared] -- CMD ARGS...
    #[command(after_help = "Examples:
  worker lock schema -- psql -f alter.sql
  worker lock cache --shared --timeout 1m -- ./read-cache.sh")]
    Lock {
        /// The lock's name.
        name: String,
        /// Take the lock shared (readers) instead of exclusive.
        #[arg(long)]
        shared: bool,
        /// Give up waiting for the lock after this long (e.g. 30s; exit 1).
        #[arg(long, value_parser = super::data::parse_duration)]
        timeout: Option<std::time::Duration>,
        #[command(flatten)]
        task: TaskArgs,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Print the result (JSON) of a finished task or race.
    #[command(after_help = "Examples:
  worker result extract | jq .metrics.rows")]
    Result {
        /// The task's or race's id.
        id: String,
    },
    /// Record one Claude Code hook event (JSON on stdin) as this agent task's state.
    /// Prints nothing and always exits 0: a hook must never block or steer the agent.
    #[command(after_help = "Examples:
  maestro passes it to Claude Code itself (--settings); by hand:
  echo '{\"hook_event_name\":\"Stop\"}' | worker hook")]
    Hook,
    /// Record this agent task's state: working, waiting (for a person) or idle, with an
    /// optional message (for agents other than Claude Code, and scripts).
    #[command(after_help = "Examples:
  worker state working
  worker state waiting \"approve the schema change?\"
  worker state idle")]
    State {
        /// working, waiting or idle.
        state: String,
        /// What it is doing or waiting for (shown by `orchestrator status`).
        message: Option<String>,
    },
    /// Print a value saved by an earlier attempt (exit 1 when there is none).
    #[command(after_help = "Examples:
  offset=$(worker load offset || echo 0)")]
    Load {
        /// The name it was saved under.
        key: String,
        #[command(flatten)]
        task: TaskArgs,
    },
}

/// `worker` entry point; returns the process exit code.
pub fn worker_main(args: impl IntoIterator<Item = OsString>) -> i32 {
    let args: Vec<OsString> = args.into_iter().collect();
    // A hook runs before anything that could print or fail (see `agent`).
    if args.get(1).is_some_and(|a| a == "hook") && args.len() == 2 {
        crate::agent::hook();
        return 0;
    }
    init_tracing();
    let args: WorkerArgs = match parse_or_exit(args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    match worker_cmd(args) {
        Ok(code) => code,
        Err(e) => report(&e),
    }
}

fn worker_cmd(args: WorkerArgs) -> Result<i32> {
    let session_dir = args.session.ok_or_else(|| {
        Error::Usage("no session: run this inside a maestro task or pass --session DIR".into())
    })?;
    // How this process notices changes: decided here, once, for everything below.
    let watch = match args.watch {
        Some(w) => w.parse()?,
        None => WatchMode::from_env()?,
    };
    let Some(verb) = args.verb else {
        let id = args
            .id
            .ok_or_else(|| Error::Usage("--id is required to run a worker".into()))?;
        return worker::run(WorkerConfig {
            session_dir,
            id,
            watch,
            launcher: args.launcher,
            hold_failed: args.hold_failed,
            durable: args.durable,
        });
    };
    if let WorkerVerb::Hook = verb {
        crate::agent::hook();
        return Ok(0);
    }
    if let WorkerVerb::State { state, message } = &verb {
        let s = crate::agent::AgentState::parse(state).ok_or_else(|| {
            Error::Usage(format!(
                "invalid state {state:?}: expected working, waiting, idle or exited"
            ))
        })?;
        let target = crate::agent::Target::from_env().ok_or_else(|| {
            Error::Usage(
                "worker state runs inside a maestro task (MAESTRO_SESSION, MAESTRO_TASK and \
                 MAESTRO_ATTEMPT are not set)"
                    .into(),
            )
        })?;
        target.record(&crate::agent::AgentLine {
            at: crate::proto::now_rfc3339(),
            event: "state".into(),
            state: Some(s),
            message: message.clone(),
        })?;
        return Ok(0);
    }
    let session = Session::open(&session_dir)?;
    match verb {
        WorkerVerb::Hook | WorkerVerb::State { .. } => Ok(0),
        WorkerVerb::Save {
            key,
            value,
            json,
            task,
        } => {
            let t = TaskRef::new(task.task, task.attempt)?;
            let v = match (value, json) {
                (Some(v), None) => serde_json::Value::String(v),
                (_, Some(file)) => super::data::read_json_input(&file)?,
                (None, None) => unreachable!("clap requires one"),
            };
            primitives::save(&session, &t, &key, v)?;
            Ok(0)
        }
        WorkerVerb::Data(v) => super::data::run_worker_verb(&session, v, watch),
        WorkerVerb::Checkpoint {
            name,
            parties,
            timeout,
            task,
        } => {
            let t = TaskRef::new(task.task, task.attempt)?;
            primitives::checkpoint(
                &session,
                &t,
                &name,
                parties,
                Wait {
                    mode: watch,
                    timeout,
                },
            )?;
            Ok(0)
        }
        WorkerVerb::Signal { name, task } => {
            let t = task
                .task
                .map(|tk| TaskRef::new(Some(tk), task.attempt))
                .transpose()?;
            primitives::signal(&session, t.as_ref(), &name)?;
            Ok(0)
        }
        WorkerVerb::WaitSignal { name, timeout } => {
            primitives::wait_signal(
                &session,
                &name,
                Wait {
                    mode: watch,
                    timeout,
                },
            )?;
            Ok(0)
        }
        WorkerVerb::Lock {
            name,
            shared,
            timeout,
            task,
            cmd,
        } => {
            let t = TaskRef::new(task.task, task.attempt)?;
            let wait = Wait {
                mode: watch,
                timeout,
            };
            crate::locks::run_locked(&session, &t, &name, shared, wait, &cmd)
        }
        WorkerVerb::Result { id } => {
            println!("{}", primitives::result(&session, &id)?);
            Ok(0)
        }
        WorkerVerb::Load { key, task } => {
            let t = TaskRef::new(task.task, task.attempt)?;
            match primitives::load(&session, &t, &key)? {
                Some(v) => {
                    println!("{}", primitives::display_value(&v));
                    Ok(0)
                }
                None => {
                    eprintln!("no saved value for {key:?} in task {}", t.task);
                    Ok(1)
                }
            }
        }
    }
}
