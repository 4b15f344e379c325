//! The `orchestrator` verbs: each arm turns its parsed arguments into a call into the
//! library. Running and driving a session to its end lives in [`super::drive`].

use std::io::Write;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::journal::ControlAction;
use crate::launch::LauncherKind;
use crate::orchestrator::{Orchestrator, RunConfig};
use crate::plan::Plan;
use crate::session::{self, Session};
use crate::status;
use crate::watch::WatchMode;

use super::args::{OrchestratorArgs, OrchestratorCommand};
use super::drive::{check_task, control, drive, gate_request, resume_config, take_over};

/// Whether `run`, `resume` and `retry` show the live view: on a terminal, unless told not to.
fn tui(no_tui: bool) -> bool {
    !no_tui && crate::dashboard::usable()
}

fn cwd() -> Result<PathBuf> {
    std::env::current_dir().map_err(|e| Error::io(".", "read the current directory", e))
}

/// The session named, or the newest one; entries newer than it that are not sessions we
/// may use are said, not silently passed over.
fn session_or_newest(root: &std::path::Path, arg: Option<String>) -> Result<Session> {
    match arg {
        Some(a) => Session::resolve(root, Some(&a)),
        None => {
            let (s, skipped) = Session::newest(root)?;
            for r in skipped {
                eprintln!("warning: skipped {}", r.reason);
            }
            Ok(s)
        }
    }
}

/// The first line of stdout is the session's path, for scripts; then the session runs
/// in the foreground to its end.
fn announce_and_drive(
    mut out: std::io::StdoutLock<'_>,
    orch: Orchestrator,
    quiet: bool,
    tui: bool,
) -> Result<i32> {
    let _ = writeln!(out, "{}", orch.session().root().display());
    let _ = out.flush();
    drop(out);
    drive(orch, quiet, tui)
}

pub(super) fn orchestrator(args: OrchestratorArgs) -> Result<i32> {
    let root = session::sessions_root(args.sessions_dir.as_deref(), &cwd()?);
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
            no_tui,
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
            announce_and_drive(out, Orchestrator::create(cfg)?, quiet, tui(no_tui))
        }
        OrchestratorCommand::Resume {
            session,
            workers,
            launcher,
            watch,
            durable,
            quiet,
            no_tui,
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
            announce_and_drive(out, Orchestrator::resume(cfg)?, quiet, tui(no_tui))
        }
        OrchestratorCommand::Retry {
            session,
            tasks,
            workers,
            launcher,
            watch,
            quiet,
            no_tui,
        } => {
            let cfg = resume_config(&root, &session, workers, launcher, watch, false, tasks)?;
            announce_and_drive(out, Orchestrator::resume(cfg)?, quiet, tui(no_tui))
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
            watch,
            bench_frames,
        } => {
            let s = session_or_newest(&root, session)?;
            if let Some(frames) = bench_frames {
                let _ = writeln!(out, "{}", crate::dashboard::bench(s, frames)?);
                return Ok(0);
            }
            if watch {
                if !crate::dashboard::usable() {
                    return Err(Error::Usage(
                        "status --watch needs a terminal (stdin and stdout, in the foreground); `orchestrator status` prints once".into(),
                    ));
                }
                drop(out);
                return crate::dashboard::watch(s, WatchMode::from_env()?);
            }
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
        OrchestratorCommand::Report { session, format } => {
            // A session that is not there is a mistake in the command line.
            let s = session_or_newest(&root, session).map_err(|e| match e {
                Error::Session(m) => Error::Usage(m),
                e => e,
            })?;
            let format = match format.as_str() {
                "json" => crate::report::Format::Json,
                _ => crate::report::Format::Md,
            };
            crate::report::print(&s, format, &mut out)?;
            Ok(0)
        }
        OrchestratorCommand::Data(c) => {
            drop(out);
            super::data::run_orchestrator_command(&root, c)
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
        OrchestratorCommand::Wait { session } => {
            let s = Session::resolve(&root, Some(&session))?;
            drop(out);
            crate::prune::wait(&s, WatchMode::from_env()?)
        }
        OrchestratorCommand::Add {
            session,
            file,
            dry_run,
        } => {
            let s = Session::resolve(&root, Some(&session))?;
            let reply = crate::orchestrator::add_tasks(&s, &file, &cwd()?, dry_run)?;
            if !reply.ok {
                return Err(Error::WrongState(format!(
                    "session {}: tasks of {} not added: {}",
                    s.id(),
                    file.display(),
                    reply.message
                )));
            }
            println!("{}", reply.message);
            Ok(0)
        }
        OrchestratorCommand::Scale { session, workers } => {
            if workers == 0 {
                return Err(Error::Usage("the worker limit must be at least 1".into()));
            }
            let s = Session::resolve(&root, Some(&session))?;
            control(&s, ControlAction::Scale { workers }, None)
        }
        OrchestratorCommand::Prune {
            older_than,
            keep,
            dry_run,
        } => {
            drop(out);
            let keep = crate::prune::Keep {
                older_than,
                newest: keep,
            };
            crate::prune::prune(&root, keep, dry_run)
        }
        OrchestratorCommand::Completions { shell } => {
            let mut cmd = <super::args::OrchestratorArgs as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "orchestrator", &mut out);
            Ok(0)
        }
        OrchestratorCommand::Man => {
            let cmd = <super::args::OrchestratorArgs as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .map_err(|e| Error::io("<stdout>", "write", e))?;
            Ok(0)
        }
        OrchestratorCommand::Logs {
            session,
            task,
            all,
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
            match task {
                Some(task) if !all => status::logs(&s, &task, attempt, stderr, follow)?,
                _ => {
                    use std::io::IsTerminal;
                    let colour = status::colour_wanted(std::io::stdout().is_terminal());
                    status::logs_all(&s, follow, colour)?
                }
            }
            Ok(0)
        }
    }
}
