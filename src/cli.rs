//! Command lines of the two binaries. Each `*_main` parses the arguments once with clap,
//! turns them into a validated config, calls into the library, and maps the outcome to an
//! exit code: 0 success, 1 a task failed, 2 usage or plan error, 3 maestro itself failed.
//! The binaries in `src/bin/` are one line each.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::error::{Error, Result};
use crate::journal::ControlAction;
use crate::launch::LauncherKind;
use crate::orchestrator::{Orchestrator, ResumeConfig, RunConfig};
use crate::plan::Plan;
use crate::primitives::{self, TaskRef};
use crate::proto::{SessionState, TaskState};
use crate::session::{self, Session};
use crate::status;
use crate::watch::{Wait, WatchMode};
use crate::worker::{self, WorkerConfig};

#[derive(Parser, Debug)]
#[command(
    name = "orchestrator",
    version,
    about = "Run a plan's tasks in parallel terminals, coordinated through a session directory"
)]
struct OrchestratorArgs {
    /// Where sessions live (default: $MAESTRO_SESSIONS, else ./sessions).
    #[arg(long, global = true, value_name = "DIR")]
    sessions_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: OrchestratorCommand,
}

#[derive(Subcommand, Debug)]
enum OrchestratorCommand {
    #[command(flatten)]
    Data(crate::cli_data::OrchestratorDataCommand),
    /// Validate a plan and print its waves, every task's dependencies (tasks, races,
    /// signals), its races, checkpoints and signals, and its critical path.
    Plan {
        plan: PathBuf,
        /// Print JSON instead of text.
        #[arg(long, conflicts_with = "dot")]
        json: bool,
        /// Print a Graphviz graph: tasks, races (hexagons), signals (diamonds),
        /// checkpoints (dashed boxes) and every edge between them.
        #[arg(long)]
        dot: bool,
    },
    /// Create a session and run the plan to its end.
    Run {
        plan: PathBuf,
        /// Workers at once (overrides the plan's `workers`).
        #[arg(long)]
        workers: Option<usize>,
        /// Where workers run: auto, background, tmux, terminal (a window each, of the first
        /// installed terminal emulator) or terminal:NAME (xterm, gnome-terminal, konsole,
        /// kitty, alacritty, wezterm, x-terminal-emulator; env: $TERMINAL).
        #[arg(long, default_value = "auto")]
        launcher: String,
        /// How changes are noticed: native, poll or off (default: $MAESTRO_WATCH, else native).
        #[arg(long)]
        watch: Option<String>,
        /// fsync every file and directory written (power-loss safety; slower).
        #[arg(long)]
        durable: bool,
        /// Print only the session path and the final line.
        #[arg(long, short)]
        quiet: bool,
        /// Check the plan and the options as a run would, then print what would run
        /// (settings, waves, each task's command and dependencies, races, checkpoints,
        /// signals, critical path) and exit: nothing is created, no process is started.
        #[arg(long)]
        dry_run: bool,
        /// With --dry-run: print JSON instead of text.
        #[arg(long, requires = "dry_run")]
        json: bool,
        /// Run only these tasks and what they depend on, transitively (the others are
        /// decided `excluded`). Ids follow the flag (`--only a b`) until the next flag;
        /// the flag may be repeated.
        #[arg(long, value_name = "ID", num_args = 1..)]
        only: Vec<String>,
        /// Treat these tasks as done without running them (decided `excluded`; what
        /// depends on them may run). Ids follow the flag (`--skip a b`); repeatable.
        #[arg(long, value_name = "ID", num_args = 1..)]
        skip: Vec<String>,
    },
    /// Take over a session whose orchestrator died, and finish it.
    Resume {
        session: String,
        /// Workers at once (default: the session's).
        #[arg(long)]
        workers: Option<usize>,
        /// Where new workers run (default: the session's launcher).
        #[arg(long)]
        launcher: Option<String>,
        #[arg(long)]
        watch: Option<String>,
        #[arg(long)]
        durable: bool,
        #[arg(long, short)]
        quiet: bool,
    },
    /// Re-run a failed, skipped or cancelled task (and its skipped dependents) in a
    /// finished session.
    Retry {
        session: String,
        #[arg(required = true)]
        tasks: Vec<String>,
        #[arg(long)]
        workers: Option<usize>,
        #[arg(long)]
        launcher: Option<String>,
        #[arg(long)]
        watch: Option<String>,
        #[arg(long, short)]
        quiet: bool,
    },
    /// Stop a running task's current attempt and give it to another worker.
    Reassign { session: String, task: String },
    /// Cancel one task and its dependents, or the whole session.
    Cancel {
        session: String,
        task: Option<String>,
    },
    /// Drain a session: no new starts; running attempts finish; then what did not start
    /// is cancelled and the session ends (failed if a task failed, else cancelled).
    Stop { session: String },
    /// Freeze a session: every running task's process group is stopped where it is
    /// (SIGSTOP) and nothing starts until `thaw`.
    Freeze { session: String },
    /// Thaw a frozen session: its stopped tasks go on and new ones start.
    Thaw { session: String },
    /// Undo a frozen or finished session: stop what still runs, then run each succeeded
    /// task's `rollback` command, last completed first, one at a time. Stops at the first
    /// that fails (run it again to retry that step and go on). Exits 0 once rolled back.
    Rollback {
        session: String,
        /// A step whose runner died without recording an exit may or may not have run:
        /// run it again.
        #[arg(long, conflicts_with = "skip_unknown")]
        rerun_unknown: bool,
        /// A step whose runner died without recording an exit was checked by hand and is
        /// done: go on with the next.
        #[arg(long)]
        skip_unknown: bool,
    },
    /// Approve a gate that waits for a person: the tasks after it may start.
    Approve { session: String, gate: String },
    /// Reject a gate that waits for a person: a failure for the tasks after it.
    Reject {
        session: String,
        gate: String,
        /// Why, for the journal and the skipped tasks' outcomes.
        #[arg(long)]
        reason: String,
    },
    /// Show who holds and who waits for each named lock.
    Locks { session: String },
    /// Remove what a session that is not running left outside its files: with
    /// --worktrees, its tasks' git worktrees (`git worktree remove --force`, then `git
    /// worktree prune`); their branches are kept.
    Clean {
        session: String,
        /// Remove the session's git worktrees (required: nothing else is cleaned yet).
        #[arg(long, required = true)]
        worktrees: bool,
    },
    /// Show a session's tasks and workers (default: the newest session).
    Status {
        session: Option<String>,
        #[arg(long)]
        json: bool,
        /// Only the tasks whose agent waits for a person.
        #[arg(long)]
        waiting: bool,
    },
    /// List sessions (and entries of the sessions directory that are not, with why).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Go to the terminal of the worker running TASK: attach to (or, inside tmux, switch
    /// to) its tmux window, or raise its terminal-emulator window (with xdotool).
    Attach {
        session: String,
        task: String,
        /// Print the command instead of running it.
        #[arg(long)]
        print: bool,
    },
    /// Print (or follow) a task's log.
    Logs {
        session: String,
        task: String,
        /// Keep printing as the task writes, until it has an outcome.
        #[arg(long, short)]
        follow: bool,
        /// Show stderr instead of stdout.
        #[arg(long)]
        stderr: bool,
        /// Which attempt (default: the latest).
        #[arg(long)]
        attempt: Option<u32>,
    },
}

fn report(e: &Error) -> i32 {
    eprintln!("error: {e}");
    e.exit_code()
}

fn parse_or_exit<P: Parser>(
    args: impl IntoIterator<Item = OsString>,
) -> std::result::Result<P, i32> {
    P::try_parse_from(args).map_err(|e| {
        let _ = e.print();
        if e.use_stderr() { 2 } else { 0 }
    })
}

/// `orchestrator` entry point; returns the process exit code.
pub fn orchestrator_main(args: impl IntoIterator<Item = OsString>) -> i32 {
    init_tracing();
    let args: OrchestratorArgs = match parse_or_exit(args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    match orchestrator(args) {
        Ok(code) => code,
        Err(e) => report(&e),
    }
}

fn cwd() -> Result<PathBuf> {
    std::env::current_dir().map_err(|e| Error::io(".", "read the current directory", e))
}

fn orchestrator(args: OrchestratorArgs) -> Result<i32> {
    let root = session::sessions_root(args.sessions_dir.as_deref());
    let mut out = std::io::stdout().lock();
    match args.command {
        OrchestratorCommand::Plan { plan, json, dot } => {
            let p = Plan::load(&plan, &cwd()?)?;
            crate::worktree::check_without_git(&p)?;
            let text = if json {
                format!("{:#}\n", p.describe_json())
            } else if dot {
                p.to_dot()
            } else {
                p.describe()
            };
            let _ = out.write_all(text.as_bytes());
            Ok(0)
        }
        OrchestratorCommand::Run {
            plan,
            workers,
            launcher,
            watch,
            durable,
            quiet,
            dry_run,
            json,
            only,
            skip,
        } => {
            // Validate everything before anything is created (exit 2, no directory). A dry
            // run goes through the same checks, only stops before the session is made.
            let launcher: LauncherKind = launcher.parse()?;
            let watch = match watch {
                Some(w) => w.parse()?,
                None => WatchMode::from_env()?,
            };
            if workers == Some(0) {
                return Err(Error::Usage("--workers must be at least 1".into()));
            }
            let p = Plan::load(&plan, &cwd()?)?;
            p.check_parent_env(|n| std::env::var_os(n).is_some())
                .map_err(Error::Usage)?;
            let excluded = if only.is_empty() && skip.is_empty() {
                Vec::new()
            } else {
                p.exclusions(&only, &skip).map_err(Error::Usage)?
            };
            let env = crate::launch::LaunchEnv::from_env();
            // A dry run starts no process, not even `tmux -V`: it looks for tmux on PATH.
            let has_tmux = if dry_run {
                crate::launch::tmux_on_path
            } else {
                crate::launch::tmux_installed
            };
            let launcher = launcher.resolve_with(&env, has_tmux);
            launcher.check(&env, has_tmux)?;
            if dry_run {
                // What `Orchestrator::create` checks before it makes the session directory
                // (worktree tasks' repositories without starting git).
                crate::launch::WorkerCommand::locate(watch, durable, &env)?;
                crate::worktree::check_without_git(&p)?;
                let p = Plan {
                    workers: workers.unwrap_or(p.workers),
                    ..p
                };
                let settings = crate::plan::RunSettings {
                    sessions_dir: &root,
                    launcher: launcher.as_str(),
                    watch: watch.as_str(),
                    durable,
                    excluded: &excluded,
                };
                let text = if json {
                    format!("{:#}\n", p.describe_dry_run_json(&settings))
                } else {
                    p.describe_dry_run(&settings)
                };
                let _ = out.write_all(text.as_bytes());
                return Ok(0);
            }
            let cfg = RunConfig {
                workers: workers.unwrap_or(p.workers),
                plan: p,
                plan_file: plan,
                sessions_root: root,
                launcher,
                watch,
                durable,
                env,
                excluded,
            };
            let orch = Orchestrator::create(cfg)?;
            // First line of stdout: the session path, for scripts.
            let _ = writeln!(out, "{}", orch.session().root().display());
            let _ = out.flush();
            drop(out);
            drive(orch, quiet)
        }
        OrchestratorCommand::Resume {
            session,
            workers,
            launcher,
            watch,
            durable,
            quiet,
        } => {
            let cfg = resume_config(
                &root,
                &session,
                workers,
                launcher,
                watch,
                durable,
                Vec::new(),
            )?;
            let orch = Orchestrator::resume(cfg)?;
            let _ = writeln!(out, "{}", orch.session().root().display());
            let _ = out.flush();
            drop(out);
            drive(orch, quiet)
        }
        OrchestratorCommand::Retry {
            session,
            tasks,
            workers,
            launcher,
            watch,
            quiet,
        } => {
            let cfg = resume_config(&root, &session, workers, launcher, watch, false, tasks)?;
            let orch = Orchestrator::resume(cfg)?;
            let _ = writeln!(out, "{}", orch.session().root().display());
            let _ = out.flush();
            drop(out);
            drive(orch, quiet)
        }
        OrchestratorCommand::Reassign { session, task } => {
            let s = Session::resolve(&root, Some(&session))?;
            check_task(&s, &task)?;
            control(&s, ControlAction::Reassign, Some(&task))
        }
        OrchestratorCommand::Stop { session } => {
            let s = Session::resolve(&root, Some(&session))?;
            if crate::orchestrator::orchestrator_alive(&s) {
                return control(&s, ControlAction::Stop, None);
            }
            // No orchestrator: take the session over, drain it, and stay until what was
            // running has ended and the session is finished.
            drop(out);
            take_over(&root, &session, ControlAction::Stop, None, false)
        }
        OrchestratorCommand::Freeze { session } => {
            let s = Session::resolve(&root, Some(&session))?;
            control(&s, ControlAction::Freeze, None)
        }
        OrchestratorCommand::Thaw { session } => {
            let s = Session::resolve(&root, Some(&session))?;
            control(&s, ControlAction::Thaw, None)
        }
        OrchestratorCommand::Rollback {
            session,
            rerun_unknown,
            skip_unknown,
        } => {
            let unknown = match (rerun_unknown, skip_unknown) {
                (true, _) => Some(crate::proto::UnknownStep::Rerun),
                (_, true) => Some(crate::proto::UnknownStep::Skip),
                _ => None,
            };
            let action = ControlAction::Rollback { unknown };
            let s = Session::resolve(&root, Some(&session))?;
            if crate::orchestrator::orchestrator_alive(&s) {
                return control(&s, action, None);
            }
            // No orchestrator (the session finished, or its orchestrator died): take it
            // over, roll it back here, and stay until the rollback ends.
            drop(out);
            take_over(&root, &session, action, None, false)
        }
        OrchestratorCommand::Approve { session, gate } => {
            let s = Session::resolve(&root, Some(&session))?;
            gate_request(&s, ControlAction::Approve, &gate)
        }
        OrchestratorCommand::Reject {
            session,
            gate,
            reason,
        } => {
            let s = Session::resolve(&root, Some(&session))?;
            gate_request(&s, ControlAction::Reject { reason }, &gate)
        }
        OrchestratorCommand::Cancel { session, task } => {
            let s = Session::resolve(&root, Some(&session))?;
            if let Some(t) = &task {
                check_task(&s, t)?;
            }
            if crate::orchestrator::orchestrator_alive(&s) {
                return control(&s, ControlAction::Cancel, task.as_deref());
            }
            // No orchestrator (it was killed, or Ctrl-C'd): take the session over, cancel,
            // and stay until the stopped tasks have ended and the session is finished,
            // carrying on past a write that fails.
            drop(out);
            take_over(
                &root,
                &session,
                ControlAction::Cancel,
                task.as_deref(),
                true,
            )
        }
        OrchestratorCommand::Status {
            session,
            json,
            waiting,
        } => {
            let s = match session {
                Some(a) => Session::resolve(&root, Some(&a))?,
                None => {
                    // The newest session; entries newer than it that are not sessions we
                    // may use are said, not silently passed over.
                    let (s, skipped) = Session::newest(&root)?;
                    for r in skipped {
                        eprintln!("warning: skipped {}", r.reason);
                    }
                    s
                }
            };
            let mut snap = status::snapshot(&s);
            if waiting {
                status::only_waiting(&mut snap);
            }
            let text = if json {
                format!("{:#}\n", status::to_json(&snap))
            } else {
                status::render(&snap)
            };
            let _ = out.write_all(text.as_bytes());
            Ok(0)
        }
        OrchestratorCommand::Data(c) => {
            drop(out);
            crate::cli_data::run_orchestrator_command(&root, c)
        }
        OrchestratorCommand::Locks { session } => {
            let s = Session::resolve(&root, Some(&session))?;
            let _ = out.write_all(crate::locks::render(&crate::locks::scan(&s)).as_bytes());
            Ok(0)
        }
        OrchestratorCommand::Clean {
            session,
            worktrees: _,
        } => {
            let s = Session::resolve(&root, Some(&session))?;
            drop(out);
            crate::worktree::clean(&s)
        }
        OrchestratorCommand::List { json } => {
            let listing = Session::list(&root)?;
            let text = if json {
                format!("{:#}\n", status::list_json(&status::list_rows(&listing)))
            } else {
                status::render_list(&listing)
            };
            let _ = out.write_all(text.as_bytes());
            Ok(0)
        }
        OrchestratorCommand::Attach {
            session,
            task,
            print,
        } => {
            let s = Session::resolve(&root, Some(&session))?;
            check_task(&s, &task)?;
            let inside = crate::launch::LaunchEnv::from_env().inside_tmux;
            let a = crate::attach::command(&s, &task, inside)?;
            if print {
                let _ = writeln!(out, "{}", a.line());
                return Ok(0);
            }
            drop(out);
            let status = std::process::Command::new(&a.argv[0])
                .args(&a.argv[1..])
                .status()
                .map_err(|e| Error::Launch(format!("{}: cannot run it: {e}", a.argv[0])))?;
            Ok(if status.success() { 0 } else { 1 })
        }
        OrchestratorCommand::Logs {
            session,
            task,
            follow,
            stderr,
            attempt,
        } => {
            let s = Session::resolve(&root, Some(&session))?;
            drop(out);
            let follow = if follow {
                Some(WatchMode::from_env()?)
            } else {
                None
            };
            status::logs(&s, &task, attempt, stderr, follow)?;
            Ok(0)
        }
    }
}

/// Run an orchestrator to the session's end and report; the exit code says how it went.
fn drive(mut orch: Orchestrator, quiet: bool) -> Result<i32> {
    if !quiet {
        if let Some(h) = orch.hint() {
            let _ = writeln!(std::io::stderr(), "{h}");
        }
        orch.set_progress(true);
    }
    let session = orch.session().clone();
    let ended = orch.run()?;
    let state = ended.state;
    if state == SessionState::Interrupted {
        let _ = writeln!(
            std::io::stderr(),
            "session {} interrupted; `orchestrator resume {}` finishes it",
            session.id(),
            session.id()
        );
        return Ok(ended.exit_code());
    }
    // Quiet, the count comes from `summary.json` (one file) rather than a status
    // snapshot, which reads every task's outcome and the journal.
    let (done, excluded, total) = if quiet {
        let summary = crate::summary::read(&session)?.ok_or_else(|| {
            Error::Session(format!("{}: missing", session.summary_json().display()))
        })?;
        (
            summary.count(TaskState::Succeeded),
            summary.count(TaskState::Excluded),
            summary.total,
        )
    } else {
        let snap = status::snapshot(&session);
        let _ = write!(std::io::stderr(), "\n{}", status::render(&snap));
        let count = |s: TaskState| snap.tasks.iter().filter(|t| t.state == s).count();
        (
            count(TaskState::Succeeded),
            count(TaskState::Excluded),
            snap.tasks.len(),
        )
    };
    // A partial run says how many tasks it left out, so "2/4" is not read as a shortfall.
    let excluded = match excluded {
        0 => String::new(),
        n => format!(", {n} excluded"),
    };
    let _ = writeln!(
        std::io::stderr(),
        "session {} {}: {}/{} tasks succeeded{excluded}",
        session.id(),
        state.as_str(),
        done,
        total
    );
    Ok(ended.exit_code())
}

#[allow(clippy::too_many_arguments)]
fn resume_config(
    root: &std::path::Path,
    session: &str,
    workers: Option<usize>,
    launcher: Option<String>,
    watch: Option<String>,
    durable: bool,
    retry: Vec<String>,
) -> Result<ResumeConfig> {
    if workers == Some(0) {
        return Err(Error::Usage("--workers must be at least 1".into()));
    }
    let env = crate::launch::LaunchEnv::from_env();
    let launcher = match launcher {
        Some(l) => {
            let kind = l.parse::<LauncherKind>()?.resolve(&env);
            kind.check(&env, crate::launch::tmux_installed)?;
            Some(kind)
        }
        None => None,
    };
    let watch = match watch {
        Some(w) => w.parse()?,
        None => WatchMode::from_env()?,
    };
    let session = Session::resolve(root, Some(session))?;
    for t in &retry {
        check_task(&session, t)?;
    }
    Ok(ResumeConfig {
        session,
        launcher,
        workers,
        watch,
        durable,
        retry,
        env,
        best_effort: false,
        rollback: false,
    })
}

/// A usage error unless the session's plan has `task`.
fn check_task(s: &Session, task: &str) -> Result<()> {
    let plan = Plan::read(&s.plan_json())?;
    if plan.is_some_and(|p| p.tasks.iter().any(|t| t.id == task)) {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "session {} has no task {task:?}",
            s.id()
        )))
    }
}

/// `approve` and `reject`: answered by the orchestrator, or, when none runs the session,
/// left for the next `resume` to carry out.
fn gate_request(s: &Session, action: ControlAction, gate: &str) -> Result<i32> {
    if crate::orchestrator::orchestrator_alive(s) {
        return control(s, action, Some(gate));
    }
    let verb = action.as_str();
    crate::orchestrator::leave_control(s, action, Some(gate))?;
    println!(
        "no orchestrator runs session {id}: the {verb} of gate {gate} is kept and carried out \
         by `orchestrator resume {id}`",
        id = s.id()
    );
    Ok(0)
}

/// A request to a session whose orchestrator is gone: resume it here (background
/// workers), carry the request out, and drive the session to its end.
fn take_over(
    root: &std::path::Path,
    session: &str,
    action: ControlAction,
    task: Option<&str>,
    best_effort: bool,
) -> Result<i32> {
    let cfg = resume_config(
        root,
        session,
        None,
        Some("background".into()),
        None,
        false,
        Vec::new(),
    )?;
    let rollback = matches!(action, ControlAction::Rollback { .. });
    let mut orch = Orchestrator::resume(ResumeConfig {
        best_effort,
        rollback,
        ..cfg
    })?;
    match orch.control_now(action, task) {
        // A rollback's outcome is the verb's: 1 when it stopped at a step.
        // A rollback runs in the foreground: a person watches its steps.
        Ok(msg) if rollback => {
            println!("{msg}");
            drive(orch, false)
        }
        Ok(msg) => {
            println!("{msg}");
            drive(orch, true).map(|_| 0)
        }
        // Refused by a finished session (taken over to be rolled back): nothing to run.
        Err(msg) if orch.finished_before() => {
            eprintln!("error: {msg}");
            Ok(1)
        }
        Err(msg) => {
            eprintln!("error: {msg}");
            drive(orch, true).map(|_| 1)
        }
    }
}

fn control(s: &Session, action: ControlAction, task: Option<&str>) -> Result<i32> {
    let reply = crate::orchestrator::send_control(s, action, task)?;
    if reply.ok {
        println!("{}", reply.message);
        Ok(0)
    } else {
        eprintln!("error: {}", reply.message);
        Ok(1)
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "worker",
    version,
    about = "A maestro worker: runs the tasks the orchestrator assigns to it; inside a task, the verbs below"
)]
struct WorkerArgs {
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
    Data(crate::cli_data::DataVerb),
    /// Save a value for this task's next attempts (tasks/<id>/state.json).
    Save {
        key: String,
        /// The value, stored as a string (or use --json).
        #[arg(required_unless_present = "json")]
        value: Option<String>,
        /// Read a JSON value from FILE (`-` for stdin) instead.
        #[arg(long, value_name = "FILE", conflicts_with = "value")]
        json: Option<PathBuf>,
        #[command(flatten)]
        task: TaskFlags,
    },
    /// Arrive at a barrier and wait until every participant has.
    Checkpoint {
        name: String,
        /// Participants, for a barrier not declared in the plan.
        #[arg(long)]
        parties: Option<usize>,
        /// Give up after this long (e.g. 30s).
        #[arg(long, value_parser = crate::cli_data::parse_duration)]
        timeout: Option<std::time::Duration>,
        #[command(flatten)]
        task: TaskFlags,
    },
    /// Raise a named signal (tasks `after = ["signal:NAME"]` start).
    Signal {
        name: String,
        #[command(flatten)]
        task: TaskFlags,
    },
    /// Block until a signal is raised.
    WaitSignal {
        name: String,
        #[arg(long, value_parser = crate::cli_data::parse_duration)]
        timeout: Option<std::time::Duration>,
    },
    /// Run CMD holding a named lock: worker lock NAME [--shared] -- CMD ARGS...
    Lock {
        name: String,
        /// Take the lock shared (readers) instead of exclusive.
        #[arg(long)]
        shared: bool,
        #[arg(long, value_parser = crate::cli_data::parse_duration)]
        timeout: Option<std::time::Duration>,
        #[command(flatten)]
        task: TaskFlags,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Print the result (JSON) of a finished task or race.
    Result { id: String },
    /// Record one Claude Code hook event (JSON on stdin) as this agent task's state.
    /// Prints nothing and always exits 0: a hook must never block or steer the agent.
    Hook,
    /// Record this agent task's state: working, waiting (for a person) or idle, with an
    /// optional message (for agents other than Claude Code, and scripts).
    State {
        state: String,
        message: Option<String>,
    },
    /// Print a value saved by an earlier attempt (exit 1 when there is none).
    Load {
        key: String,
        #[command(flatten)]
        task: TaskFlags,
    },
}

#[derive(clap::Args, Debug)]
struct TaskFlags {
    /// The task (default: $MAESTRO_TASK).
    #[arg(long, env = "MAESTRO_TASK")]
    task: Option<String>,
    /// This task's attempt (default: $MAESTRO_ATTEMPT).
    #[arg(long, env = "MAESTRO_ATTEMPT")]
    attempt: Option<u32>,
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
                (_, Some(file)) => crate::cli_data::read_json_input(&file)?,
                (None, None) => unreachable!("clap requires one"),
            };
            primitives::save(&session, &t, &key, v)?;
            Ok(0)
        }
        WorkerVerb::Data(v) => crate::cli_data::run_worker_verb(&session, v, watch),
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

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MAESTRO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
