//! Requests to a session's orchestrator through `control/` (`reassign`, `cancel`, `stop`,
//! `approve`, `scale`, `add`, ... and the dashboard's keys): written by the CLI as one
//! file each, consumed by the orchestrator, answered in `control/replies/`. `add` checks
//! its file against the session's plan here, before anything is sent.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use super::{orchestrator_alive, refuse_if_finished};
use crate::error::{Error, Result};
use crate::fsio;
use crate::journal::ControlAction;
use crate::plan::Task;
use crate::proto::{self, ControlReply, ControlRequest, SessionInfo};
use crate::session::Session;

/// How long a request waits for its answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// Leave a request for a session whose orchestrator is gone: the next `resume` carries
/// it out (an approval given while nobody runs the session is not lost).
pub fn leave_control(session: &Session, action: ControlAction, task: Option<&str>) -> Result<()> {
    write_request(session, action, task, Vec::new()).map(|_| ())
}

/// Write a control request under a new id (returned).
fn write_request(
    session: &Session,
    action: ControlAction,
    task: Option<&str>,
    tasks: Vec<Task>,
) -> Result<String> {
    let id = format!(
        "{}-{}-{}",
        proto::now_unix_ms(),
        std::process::id(),
        action.as_str()
    );
    let req = ControlRequest {
        id: id.clone(),
        action,
        task: task.map(str::to_string),
        requested_at: proto::now_rfc3339(),
        tasks,
    };
    if !fsio::create_json_once(&session.control_request(&id), &req)? {
        return Err(Error::Session(format!(
            "control request {id} already exists"
        )));
    }
    Ok(id)
}

/// Send a control request to a session's live orchestrator and wait for its answer.
pub fn send_control(
    session: &Session,
    action: ControlAction,
    task: Option<&str>,
) -> Result<ControlReply> {
    send(session, action, task, Vec::new())
}

fn send(
    session: &Session,
    action: ControlAction,
    task: Option<&str>,
    tasks: Vec<Task>,
) -> Result<ControlReply> {
    let verb = action.as_str();
    refuse_without_orchestrator(session, verb)?;
    let id = write_request(session, action, task, tasks)?;
    let reply_path = session.control_reply(&id);
    let deadline = Instant::now() + ANSWER_WITHIN;
    loop {
        if let Some(r) = fsio::read_json::<ControlReply>(&reply_path)? {
            let _ = fsio::remove_file(&reply_path);
            return Ok(r);
        }
        if Instant::now() > deadline || !orchestrator_alive(session) {
            let _ = fsio::remove_file(&session.control_request(&id));
            // It may have ended meanwhile: say so, as for a request to an ended session.
            refuse_if_finished(session, verb)?;
            return Err(Error::Session(format!(
                "session {}: the orchestrator did not answer request {id}",
                session.id()
            )));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn refuse_without_orchestrator(session: &Session, verb: &str) -> Result<()> {
    if orchestrator_alive(session) {
        return Ok(());
    }
    refuse_if_finished(session, verb)?;
    Err(Error::WrongState(format!(
        "session {} has no live orchestrator (`orchestrator resume {}` first)",
        session.id(),
        session.id()
    )))
}

/// `orchestrator add SESSION FILE`: the file's tasks (`-`: stdin's, whose directory is
/// `cwd`), checked against the session's plan (relative paths from `cwd`), handed to its
/// live orchestrator; its answer. With
/// `dry_run`, only checked: the answer says what would be added.
pub fn add_tasks(
    session: &Session,
    file: &Path,
    cwd: &Path,
    dry_run: bool,
) -> Result<ControlReply> {
    refuse_without_orchestrator(session, "add tasks to")?;
    let plan = crate::status::required_plan(session)?;
    let (tasks, dir) = if file == Path::new("-") {
        // From a script's pipe: TOML, or JSON when it starts as an object does.
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut std::io::Read::take(std::io::stdin(), crate::plan::PLAN_CAP),
            &mut text,
        )
        .map_err(|e| Error::io("-", "read the tasks from stdin", e))?;
        let name = if text.trim_start().starts_with('{') {
            "<stdin>.json"
        } else {
            "<stdin>"
        };
        (
            plan.load_added_text(name, &text, cwd)?,
            Some(cwd.to_path_buf()),
        )
    } else {
        let dir = std::fs::canonicalize(file)
            .ok()
            .and_then(|f| f.parent().map(Path::to_path_buf));
        (plan.load_added(file, cwd)?, dir)
    };
    let info: Option<SessionInfo> = fsio::read_json(&session.session_json())?;
    check_paths(session, info.as_ref(), &tasks, file, dir.as_deref())?;
    let n = tasks.len();
    if dry_run {
        let ids: Vec<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
        return Ok(ControlReply {
            ok: true,
            message: format!(
                "would add {n} task{}: {}",
                if n == 1 { "" } else { "s" },
                ids.join(", ")
            ),
        });
    }
    send(session, ControlAction::Add { tasks: n }, None, tasks)
}

/// What the session fixed when it started that added tasks must fit: `owns` patterns
/// are relative to the plan's directory, and a worktree starts from the HEAD its
/// repository had then.
fn check_paths(
    session: &Session,
    info: Option<&SessionInfo>,
    tasks: &[Task],
    file: &Path,
    dir: Option<&Path>,
) -> Result<()> {
    let refuse = |msg: String| Err(Error::Usage(format!("{}: {msg}", file.display())));
    if let Some(t) = tasks.iter().find(|t| !t.owns.is_empty())
        && let Some(plan_file) = info.map(|i| &i.plan_file).filter(|p| p.is_absolute())
        && let Some(plan_dir) = plan_file.parent()
        && dir.and_then(|d| std::fs::canonicalize(d).ok()).as_deref() != Some(plan_dir)
    {
        return refuse(format!(
            "task {:?} has `owns`, whose patterns are relative to the plan's directory: \
             a file adding such tasks must be in {}",
            t.id,
            plan_dir.display()
        ));
    }
    let Some(t) = tasks.iter().find(|t| t.worktree) else {
        return Ok(());
    };
    let Some(setup) = info.and_then(|i| i.worktrees.as_ref()) else {
        return refuse(format!(
            "task {:?} has worktree = true, but session {} has no worktrees (the commit \
             they start from is fixed when a session starts): run it in a session of its own",
            t.id,
            session.id()
        ));
    };
    for t in tasks.iter().filter(|t| t.worktree) {
        let top = crate::worktree::toplevel(&t.cwd)
            .map_err(|e| Error::Usage(format!("{}: {e}", file.display())))?;
        if !top
            .as_ref()
            .is_some_and(|top| setup.repos.iter().any(|r| &r.repo == top))
        {
            return refuse(format!(
                "task {:?} has worktree = true in {}, which is not a repository the \
                 session's worktrees start from ({}): run it in a session of its own",
                t.id,
                t.cwd.display(),
                setup
                    .repos
                    .iter()
                    .map(|r| r.repo.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    Ok(())
}
