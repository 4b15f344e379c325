//! Taking over a session whose orchestrator is gone (`resume`, `retry`, and `cancel`
//! without a live orchestrator): the journal rebuilds the engine, then one scan of the
//! directory tells it what happened meanwhile ([`Found`]).

use std::time::{Duration, Instant};

use super::{Orchestrator, exit_of, quarantine_exit, take_lock};
use crate::engine::{self, Engine, Fact, Found, FoundWorker};
use crate::error::{Error, Result};
use crate::fsio;
use crate::journal::{EndReason, Event, History, Journal, Tail, WorkerEvent};
use crate::launch::{self, LauncherKind, WorkerCommand};
use crate::plan::Plan;
use crate::proto::{self, Outcome, SessionInfo, SessionState, TaskState, WorkerInfo};
use crate::session::Session;

impl Orchestrator {
    /// Take over an existing session whose orchestrator is gone.
    pub fn resume(cfg: super::ResumeConfig) -> Result<Orchestrator> {
        let session = cfg.session;
        let info: SessionInfo = fsio::read_json(&session.session_json())?.ok_or_else(|| {
            Error::Session(format!("{}: missing", session.session_json().display()))
        })?;
        // A session run with --durable stays durable whoever takes it over.
        let durable = cfg.durable || info.durable;
        let fs = fsio::Fs::new(durable);
        let lock = take_lock(&session, fs)?;
        if info.protocol > proto::PROTOCOL_VERSION {
            return Err(Error::Usage(format!(
                "session {} was written by a newer maestro (protocol {}, this one speaks {})",
                session.id(),
                info.protocol,
                proto::PROTOCOL_VERSION
            )));
        }
        let plan = Plan::read(&session.plan_json())?
            .ok_or_else(|| Error::Session(format!("{}: missing", session.plan_json().display())))?;
        plan.check_parent_env(|n| std::env::var_os(n).is_some())
            .map_err(Error::Usage)?;
        let mut history = crate::journal::read_history(&session)?;
        let plan = vouched(&session, plan, &history, fs)?;
        let finished = finished_state(&session, &history)?;
        if let Some(state) = finished
            && cfg.retry.is_empty()
            && !cfg.rollback
            // A rollback of a finished session whose orchestrator died goes on.
            && !history.rolling_back
        {
            return Err(Error::WrongState(format!(
                "session {} already finished ({}); `orchestrator retry {} TASK` re-runs a failed task",
                session.id(),
                state.as_str(),
                session.id()
            )));
        }
        if finished.is_none() && !cfg.retry.is_empty() {
            return Err(Error::WrongState(format!(
                "session {} has not finished; retry re-runs tasks of a finished session (use `orchestrator resume`)",
                session.id()
            )));
        }
        let cmd = WorkerCommand::locate(cfg.watch, durable, &cfg.env)?;
        let kind = cfg.launcher.unwrap_or_else(|| {
            let recorded = info
                .launcher
                .parse::<LauncherKind>()
                .unwrap_or(LauncherKind::Auto)
                .resolve(&cfg.env);
            // The session's launcher may not work where it is resumed (no display, no
            // tmux): new workers then run headless, and the person is told.
            match recorded.check(&cfg.env, launch::tmux_installed) {
                Ok(()) => recorded,
                Err(e) => {
                    eprintln!("warning: {e}; new workers run in the background");
                    LauncherKind::Background
                }
            }
        });
        let launcher = launch::make(kind, cmd, &session, plan.keep_windows, &cfg.env);
        let mut journal = Journal::open(&session, fs)?;
        if !cfg.retry.is_empty() {
            let ev = prepare_retry(&session, &plan, &cfg.retry)?;
            journal.append(&ev)?;
            history.apply(&ev);
        }
        let ev = if cfg.retry.is_empty() {
            Event::SessionResumed {
                session: session.id().to_string(),
                retry: Vec::new(),
            }
        } else {
            Event::SessionRetried {
                session: session.id().to_string(),
                retry: cfg.retry.clone(),
            }
        };
        journal.append(&ev)?;
        history.apply(&ev);
        // `--workers`, else the last `orchestrator scale`, else the session's start.
        let workers = cfg
            .workers
            .or(history.workers_limit)
            .unwrap_or(info.workers);
        let ecfg = engine::Config {
            seed: super::seed(),
            session: session.id().to_string(),
            ..engine::Config::new(workers, Duration::from_millis(plan.lease_ms))
        };
        let (found, tails) = scan(&session, &plan, &history, &mut journal, fs)?;
        let engine = Engine::restore(
            plan,
            ecfg,
            &history,
            proto::now_unix_ms() * 1000,
            Instant::now(),
            proto::now_unix_ms(),
        );
        let mut o = Orchestrator::assemble(session, engine, cfg.watch, launcher, journal, lock);
        o.best_effort = cfg.best_effort;
        // Worktrees made before are reused as they were left (found when first needed).
        o.worktrees = super::worktrees::Worktrees::of(o.engine.plan(), info.worktrees.clone())?;
        let adopted: Vec<String> = found
            .workers
            .iter()
            .filter(|w| w.alive)
            .map(|w| w.id.clone())
            .collect();
        o.tails = tails;
        for (t, task) in o.engine.plan().tasks.iter().enumerate() {
            o.dir_made[t] = fsio::is_dir(&o.session.task_dir(&task.id));
            o.retry_file[t] = fsio::exists(&o.session.retry_json(&task.id));
        }
        o.feed(Fact::Recovered(found))?;
        for id in adopted {
            o.watch_death(&id);
        }
        Ok(o)
    }
}

/// Before resuming a finished session for `retry`: move aside the outcomes of the tasks
/// to re-run and of their dependents that never ran, and the summary. Returns the event
/// that records it.
fn prepare_retry(session: &Session, plan: &Plan, names: &[String]) -> Result<Event> {
    let deps = plan.dep_indices();
    let mut dependents = vec![Vec::new(); deps.len()];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(i);
        }
    }
    let index_of = |name: &str| plan.tasks.iter().position(|t| t.id == name);
    let mut reset = Vec::new();
    for name in names {
        let t = index_of(name).ok_or_else(|| {
            Error::Usage(format!("session {} has no task {name:?}", session.id()))
        })?;
        let o: Option<Outcome> = fsio::read_json(&session.outcome_json(name))?;
        match o.map(|o| o.state) {
            Some(TaskState::Failed | TaskState::Skipped | TaskState::Cancelled) => {}
            Some(s) => {
                return Err(Error::Usage(format!(
                    "task {name} {}; only failed, skipped or cancelled tasks can be retried",
                    s.as_str()
                )));
            }
            None => {
                return Err(Error::Usage(format!("task {name} has no outcome to retry")));
            }
        }
        let mut stack = vec![t];
        while let Some(u) = stack.pop() {
            if reset.contains(&u) {
                continue;
            }
            reset.push(u);
            for &d in dependents.get(u).map(Vec::as_slice).unwrap_or(&[]) {
                let o: Option<Outcome> = fsio::read_json(&session.outcome_json(&plan.tasks[d].id))?;
                if o.is_some_and(|o| matches!(o.state, TaskState::Skipped | TaskState::Cancelled)) {
                    stack.push(d);
                }
            }
        }
    }
    let stamp = proto::now_unix_ms();
    for &t in &reset {
        let id = &plan.tasks[t].id;
        let from = session.outcome_json(id);
        let to = session.superseded_outcome(id, stamp);
        fsio::move_aside(&from, &to)?;
    }
    let from = session.summary_json();
    let to = session.superseded_summary(stamp);
    fsio::move_aside(&from, &to)?;
    // Sessions finished before the rows file existed have none.
    let from = session.summary_rows();
    if fsio::exists(&from) {
        let to = session.superseded_summary_rows(stamp);
        fsio::move_aside(&from, &to)?;
    }
    // The report describes the run that ended; the retry's end writes a new one.
    for (from, to) in session.superseded_report(stamp) {
        if fsio::exists(&from) {
            fsio::move_aside(&from, &to)?;
        }
    }
    Ok(Event::RetryRequested {
        tasks: reset.iter().map(|&t| plan.tasks[t].id.clone()).collect(),
    })
}

/// How the session ended, if it did: its summary's state. A summary that is there but
/// cannot be read (one from before the rows file, too large to read) still means the
/// session finished, as the journal's `session_finished` says.
fn finished_state(session: &Session, history: &History) -> Result<Option<SessionState>> {
    match crate::summary::read(session) {
        Ok(summary) => Ok(summary.map(|s| s.state)),
        Err(_) if fsio::exists(&session.summary_json()) => Ok(Some(match history.state {
            Some(s @ (SessionState::Succeeded | SessionState::Cancelled)) => s,
            _ => SessionState::Failed,
        })),
        Err(e) => Err(e),
    }
}

type Tails = std::collections::BTreeMap<String, Tail>;

/// One look at the directory: workers (alive, registered, their claimed assignments;
/// unclaimed ones are taken back now), exits that happened meanwhile, outcomes whose
/// journal line is missing, and the starts of attempts that have no exit.
fn scan(
    session: &Session,
    plan: &Plan,
    history: &History,
    journal: &mut Journal,
    fs: fsio::Fs,
) -> Result<(Found, Tails)> {
    let mut found = Found::default();
    let mut tails = Tails::new();
    // Every exit the workers journalled, by (task, attempt): the only exits that count.
    let mut journalled = std::collections::HashMap::new();
    for wid in session.worker_ids()? {
        let mut fw = FoundWorker {
            id: wid.clone(),
            alive: super::worker_alive(session, &wid),
            stopped: fsio::exists(&session.worker_shutdown(&wid)),
            ..Default::default()
        };
        if let Ok(Some(info)) = fsio::read_json::<WorkerInfo>(&session.worker_json(&wid)) {
            fw.registered = true;
            fw.foreign = info.protocol.is_some_and(|p| p != proto::PROTOCOL_VERSION);
        }
        // Assignments not claimed yet never ran: take them back; the tasks go out again
        // with the same attempt numbers.
        fsio::create_dir_private(&session.done_dir(&wid))?;
        for (task, attempt) in session.assignments(&wid)? {
            if fs.claim(
                &session.assignment(&wid, &task, attempt),
                &session.assignment_done(&wid, &task, attempt),
            )? {
                fw.withdrawn.push((task, attempt));
            }
        }
        fw.claimed = session.claimed_assignments(&wid)?;
        let mut tail = Tail::new(session.worker_events(&wid));
        for ev in tail.read_worker_events()? {
            match ev {
                WorkerEvent::Started(st) => fw.started.push(st),
                WorkerEvent::Exited(rec) => {
                    fw.exited.push((rec.task.clone(), rec.attempt));
                    journalled.insert((rec.task.clone(), rec.attempt), (wid.clone(), rec));
                }
                _ => {}
            }
        }
        fw.ran = fw
            .started
            .iter()
            .map(|st| (st.task.clone(), st.attempt))
            .collect();
        fw.started
            .retain(|st| !journalled.contains_key(&(st.task.clone(), st.attempt)));
        tails.insert(wid, tail);
        found.workers.push(fw);
    }
    // Auxiliary commands handed out and not ended: their exits, journalled by the worker
    // that held them.
    for ((kind, owner, attempt), rec) in &history.aux {
        if rec.end.is_some() {
            continue;
        }
        let name = kind.job(owner);
        if let Some((w, r)) = journalled.remove(&(name.clone(), *attempt))
            && w == rec.worker
        {
            found.exits.push((name, *attempt, exit_of(session, r)));
        }
    }
    for task in &plan.tasks {
        let id = &task.id;
        let h = history.tasks.get(id);
        if h.is_some_and(|h| h.decided.is_some()) {
            continue;
        }
        if let Some(o) = fsio::read_json::<Outcome>(&session.outcome_json(id))? {
            found.outcomes.push((id.clone(), o.state));
            continue;
        }
        let Some(h) = h else {
            continue;
        };
        // The fence attempt's exit, and late exits of attempts that were taken away
        // and not yet refused.
        for a in &h.attempts {
            let fence = h.fence.as_ref().is_some_and(|(n, _)| *n == a.attempt);
            let open = !a.stale
                && matches!(
                    a.ended,
                    None | Some(EndReason::WorkerLost | EndReason::Reassigned)
                );
            if !(fence || open) {
                continue;
            }
            match journalled.remove(&(id.clone(), a.attempt)) {
                Some((w, rec)) if a.worker.as_deref() == Some(w.as_str()) => {
                    found
                        .exits
                        .push((id.clone(), a.attempt, exit_of(session, rec)));
                }
                // A live worker may be between writing the file and journalling it: its
                // line will come (or its death will judge the file).
                _ if a
                    .worker
                    .as_ref()
                    .is_some_and(|w| found.workers.iter().any(|f| f.alive && f.id == *w)) => {}
                _ => {
                    let why = match &a.worker {
                        Some(w) => format!("worker {w} did not journal this exit"),
                        None => "no worker held this attempt".to_string(),
                    };
                    quarantine_exit(session, journal, id, a.attempt, why)?;
                }
            }
        }
    }
    Ok((found, tails))
}

/// The plan without tasks no `tasks_added` line vouches for: an `orchestrator add` whose
/// orchestrator died between writing the grown `plan.json` and journalling it (its
/// requester was told there was no answer). `plan.json` is written back without them,
/// so the same tasks can be added again. A journal with no such line at all comes from
/// before tasks were journalled: its plan is taken whole.
fn vouched(session: &Session, mut plan: Plan, history: &History, fs: fsio::Fs) -> Result<Plan> {
    let n = history.tasks_added;
    if n == 0 || plan.tasks.len() <= n {
        return Ok(plan);
    }
    let dropped: Vec<String> = plan.tasks.drain(n..).map(|t| t.id).collect();
    eprintln!(
        "warning: {} task{} added as the orchestrator died {} not taken ({}): add {} again",
        dropped.len(),
        if dropped.len() == 1 { "" } else { "s" },
        if dropped.len() == 1 { "was" } else { "were" },
        dropped.join(", "),
        if dropped.len() == 1 { "it" } else { "them" },
    );
    fs.write_json(&session.plan_json(), &plan)?;
    Ok(plan)
}
