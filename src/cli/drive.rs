//! Running a session in the foreground to its end (`run`, `resume`, `retry`, and the
//! verbs that take over a session whose orchestrator is gone), and sending control
//! requests to a live orchestrator.

use std::io::Write;

use crate::error::{Error, Result};
use crate::journal::ControlAction;
use crate::launch::LauncherKind;
use crate::orchestrator::{Orchestrator, ResumeConfig};
use crate::plan::Plan;
use crate::proto::{SessionState, TaskState};
use crate::session::Session;
use crate::watch::WatchMode;

/// Run an orchestrator to the session's end and report; the exit code says how it went.
/// `tui`: show the live view while it runs (not with `quiet`).
pub(super) fn drive(mut orch: Orchestrator, quiet: bool, tui: bool) -> Result<i32> {
    if !quiet {
        if let Some(h) = orch.hint() {
            let _ = writeln!(std::io::stderr(), "{h}");
        }
        orch.set_progress(true);
    }
    let session = orch.session().clone();
    // The view runs on its own thread while the orchestrator runs here; dropped, it gives
    // the terminal back before anything below is printed.
    let view = (tui && !quiet).then(|| {
        crate::dashboard::Live::start(session.clone(), orch.watch_mode(), orch.progress_switch())
    });
    let ended = orch.run();
    drop(view);
    let ended = ended?;
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
    // Not quiet, the report's short version: what failed and why, the totals, where the
    // report is. The count comes from `summary.json` (one file).
    if !quiet {
        match crate::report::read(&session) {
            Ok(Some(r)) => {
                let brief = crate::report::brief(&r, &session.report_md());
                let _ = write!(std::io::stderr(), "\n{brief}");
            }
            Ok(None) => {}
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "warning: {e}");
            }
        }
    }
    let summary = crate::summary::read(&session)?
        .ok_or_else(|| Error::Session(format!("{}: missing", session.summary_json().display())))?;
    let (done, excluded, total) = (
        summary.count(TaskState::Succeeded),
        summary.count(TaskState::Excluded),
        summary.total,
    );
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
pub(super) fn resume_config(
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
pub(super) fn check_task(s: &Session, task: &str) -> Result<()> {
    let plan = Plan::read(&s.plan_json())?;
    if plan.is_some_and(|p| p.tasks.iter().any(|t| t.id == task)) {
        Ok(())
    } else {
        Err(Error::NotFound(format!(
            "session {} has no task {task:?}",
            s.id()
        )))
    }
}

/// `approve` and `reject`: answered by the orchestrator, or, when none runs the session,
/// left for the next `resume` to carry out.
pub(super) fn gate_request(s: &Session, action: ControlAction, gate: &str) -> Result<i32> {
    if crate::orchestrator::orchestrator_alive(s) {
        return control(s, action, Some(gate));
    }
    let verb = action.as_str();
    crate::orchestrator::refuse_if_finished(s, verb)?;
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
pub(super) fn take_over(
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
            drive(orch, false, false)
        }
        Ok(msg) => {
            println!("{msg}");
            drive(orch, true, false).map(|_| 0)
        }
        // Refused by a finished session (taken over to be rolled back): nothing to run.
        Err(msg) if orch.finished_before() => {
            eprintln!("error: {msg}");
            Ok(1)
        }
        Err(msg) => {
            eprintln!("error: {msg}");
            drive(orch, true, false).map(|_| 1)
        }
    }
}

pub(super) fn control(s: &Session, action: ControlAction, task: Option<&str>) -> Result<i32> {
    let reply = crate::orchestrator::send_control(s, action, task)?;
    if reply.ok {
        println!("{}", reply.message);
        Ok(0)
    } else {
        eprintln!("error: {}", reply.message);
        Ok(1)
    }
}
