//! Carrying out the engine's commands: every write, spawn and signal the orchestrator
//! makes goes through [`Orchestrator::execute`], in the order the engine gave them.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::{Orchestrator, Wake};
use crate::engine::{AuxRef, Command, Decision, Fact, ProcessId, TaskIx};
use crate::error::Result;
use crate::fsio;
use crate::journal::{DeathCause, Event, Tail};
use crate::plan::TaskCommand;
use crate::proto::{
    self, Assignment, AuxKind, BarrierVerdict, KillRequest, LockAbort, Outcome, RaceOutcome,
    RetryPlan, SessionState, Shutdown, ShutdownReason, SummaryRow, TaskState, WorkerInfo,
};
use crate::worker::hostname;

impl Orchestrator {
    pub(super) fn execute(&mut self, c: Command) -> Result<()> {
        match c {
            Command::Journal(ev) => {
                self.before_journal(&ev)?;
                self.journal.append(&ev)?;
                self.narrate(&ev);
                self.after_journal(&ev)?;
            }
            Command::SavePlan => self.save_plan()?,
            Command::SpawnWorker { worker } => self.spawn_worker(&worker)?,
            Command::Assign {
                worker,
                task,
                attempt,
                seq,
            } => self.assign(&worker, task, attempt, seq)?,
            Command::AssignAux {
                worker,
                job,
                attempt,
                seq,
            } => self.assign_aux(&worker, job, attempt, seq)?,
            Command::RetireAux {
                worker,
                job,
                attempt,
            } => {
                let name = self.engine.aux_name(job);
                self.retire(&worker, &name, attempt);
            }
            Command::KillAux {
                worker,
                job,
                attempt,
                reason,
            } => {
                let name = self.engine.aux_name(job);
                self.ask_to_stop(&worker, name, attempt, reason)?;
            }
            Command::KillAuxGroup {
                worker,
                job,
                attempt,
                process,
            } => {
                let name = self.engine.aux_name(job);
                self.kill_group(&worker, &name, attempt, process);
            }
            Command::Snapshot => self.snapshot()?,
            Command::Withdraw {
                worker,
                task,
                attempt,
            } => {
                let id = self.engine.plan().tasks[task].id.clone();
                let ok = self.fs.claim(
                    &self.session.assignment(&worker, &id, attempt),
                    &self.session.assignment_done(&worker, &id, attempt),
                )?;
                if !ok {
                    // The worker claimed it: its running task ended first, and that exit
                    // is in its journal now. Fed before the answer, so a request waiting
                    // on this withdrawal sees the task as it is (ended), not as running.
                    self.follow_later(&worker)?;
                }
                self.feedback.push_back(Fact::Withdrawn {
                    worker: worker.clone(),
                    task: id,
                    attempt,
                    ok,
                });
            }
            Command::Retire {
                worker,
                task,
                attempt,
            } => {
                let id = self.engine.plan().tasks[task].id.clone();
                self.retire(&worker, &id, attempt);
            }
            Command::Freeze(on) => {
                // Every worker's, live or not: one starting now finds it before its
                // first task; a worker that is gone does not mind.
                for w in self.session.worker_ids()? {
                    let path = self.session.worker_freeze(&w);
                    if on {
                        self.fs.write_json(&path, &proto::now_rfc3339())?;
                    } else {
                        fsio::remove_file(&path)?;
                    }
                }
            }
            Command::Kill {
                worker,
                task,
                attempt,
                reason,
            } => {
                let id = self.engine.plan().tasks[task].id.clone();
                self.ask_to_stop(&worker, id, attempt, reason)?;
            }
            Command::KillGroup {
                worker,
                task,
                attempt,
                process,
            } => {
                let id = self.engine.plan().tasks[task].id.clone();
                self.kill_group(&worker, &id, attempt, process);
            }
            Command::StopWorker { worker, reason } => {
                self.fs
                    .write_json(&self.session.worker_shutdown(&worker), &Shutdown { reason })?;
                if reason == ShutdownReason::Lost {
                    self.lingering.push(worker);
                }
            }
            Command::ScheduleRetry {
                task,
                failed_attempt,
                delay_ms,
                reason,
            } => self.schedule_retry(task, failed_attempt, delay_ms, reason)?,
            Command::Decide(d) => self.decide(d)?,
            Command::DecideRace {
                race,
                winner,
                score,
                result,
                losers,
            } => {
                let plan = self.engine.plan();
                let id = plan.races[race].id.clone();
                let ro = RaceOutcome {
                    race: id.clone(),
                    state: if winner.is_some() {
                        TaskState::Succeeded
                    } else {
                        TaskState::Failed
                    },
                    winner: winner.map(|w| plan.tasks[w].id.clone()),
                    score,
                    result,
                    losers: losers.iter().map(|&l| plan.tasks[l].id.clone()).collect(),
                    decided_at: proto::now_rfc3339(),
                };
                let path = self.session.race_outcome(&id);
                if let Some(dir) = path.parent() {
                    fsio::create_dir_private(dir)?;
                }
                self.fs.create_json_once(&path, &ro)?;
            }
            Command::ReleaseBarrier { name } => {
                self.fs.create_json_once(
                    &self.session.checkpoint_proceed(&name),
                    &BarrierVerdict {
                        released_at: proto::now_rfc3339(),
                        task: None,
                        reason: None,
                    },
                )?;
            }
            Command::BreakBarrier { name, task, reason } => {
                self.fs.create_json_once(
                    &self.session.checkpoint_broken(&name),
                    &BarrierVerdict {
                        released_at: proto::now_rfc3339(),
                        task: Some(task),
                        reason: Some(reason),
                    },
                )?;
            }
            Command::AbortLockWait {
                lock,
                victim,
                cycle,
            } => {
                let abort = self.session.lock_abort(&lock, &victim);
                if self.fs.create_json_once(
                    &abort,
                    &LockAbort {
                        cycle: cycle.clone(),
                    },
                )? {
                    let ev = Event::DeadlockDetected {
                        cycle,
                        victim,
                        lock,
                    };
                    self.journal.append(&ev)?;
                    self.narrate(&ev);
                }
            }
            Command::Reply { id, ok, message } => self.reply(&id, ok, message)?,
            Command::Rescan => self.prim_dirty = true,
            Command::Finish(state) => self.ended = Some(state),
        }
        Ok(())
    }

    /// Follow a worker's journal after the current fact (its lines become facts).
    fn follow_later(&mut self, worker: &str) -> Result<()> {
        let (starts, ended) = self.new_lines(worker)?;
        self.feedback
            .extend(starts.into_iter().map(Fact::AttemptStarted));
        for rec in ended {
            let fact = super::exited(&self.session, worker, rec);
            self.feedback.push_back(fact);
        }
        Ok(())
    }

    /// The plan grew (tasks added): `plan.json` before the journal line naming the new
    /// tasks, and room for them in what the shell keeps per task.
    fn save_plan(&mut self) -> Result<()> {
        let plan = self.engine.plan();
        self.fs.write_json(&self.session.plan_json(), plan)?;
        let n = plan.tasks.len();
        self.dir_made.resize(n, false);
        self.retry_file.resize(n, false);
        self.rows.resize(n, None);
        if let Some(w) = &mut self.worktrees {
            w.grow(plan);
        }
        Ok(())
    }

    fn spawn_worker(&mut self, id: &str) -> Result<()> {
        for dir in [
            self.session.assigned_dir(id),
            self.session.claimed_dir(id),
            self.session.done_dir(id),
        ] {
            fsio::create_dir_private(&dir)?;
        }
        // The worker's journal exists (empty) and is watched before the worker starts,
        // so none of its lines goes unseen.
        let journal = self.session.worker_events(id);
        fsio::open_append(&journal)?;
        if let Some(w) = self.watcher.as_mut() {
            w.add(&journal);
            self.watch = w.mode();
        }
        self.tails.insert(id.to_string(), Tail::new(journal));
        let spawned = self.launcher.spawn(&self.session, id)?;
        let ev = Event::WorkerSpawned {
            worker: id.to_string(),
            launcher: self.launcher.kind().as_str().into(),
            terminal: spawned.terminal,
        };
        self.journal.append(&ev)?;
        if let Some(mut child) = spawned.child {
            // Reap our own children so they never linger as zombies, and learn of a death
            // even before the worker managed to take its lock.
            let tx = self.tx.clone();
            let wid = id.to_string();
            std::thread::spawn(move || {
                let _ = child.wait();
                let _ = tx.send(Wake::Died(wid, DeathCause::Exited));
            });
        }
        Ok(())
    }

    /// Ask worker `worker` to stop run `attempt` of `name` (a task's id, or an auxiliary
    /// command's): its `kill` file (the worker owns the process and signals its group).
    fn ask_to_stop(
        &self,
        worker: &str,
        name: String,
        attempt: u32,
        reason: crate::engine::KillReason,
    ) -> Result<()> {
        self.fs.write_json(
            &self.session.worker_kill(worker),
            &KillRequest {
                task: name,
                attempt,
                reason: reason.as_str().into(),
            },
        )
    }

    /// An assignment is handled: renamed to `done/`, not unlinked (on ext4 without a
    /// journal every recently deleted inode makes later file creations slower).
    fn retire(&self, worker: &str, name: &str, attempt: u32) {
        let done = self.session.assignment_done(worker, name, attempt);
        let claimed = self.session.assignment_claimed(worker, name, attempt);
        if !matches!(self.fs.claim(&claimed, &done), Ok(true)) {
            let _ = self
                .fs
                .claim(&self.session.assignment(worker, name, attempt), &done);
        }
    }

    /// Publish an auxiliary command's run: its owner's working directory and
    /// environment, its own timeout, never a memory limit.
    fn assign_aux(&mut self, wid: &str, job: AuxRef, attempt: u32, seq: u64) -> Result<()> {
        let plan = self.engine.plan();
        let name = self.engine.aux_name(job);
        let a = match job.kind {
            AuxKind::Check => {
                let g = &plan.gates[job.owner];
                let cwd = g
                    .cwd
                    .clone()
                    .or_else(|| plan.tasks.first().map(|t| t.cwd.clone()));
                Assignment {
                    task: name.clone(),
                    attempt,
                    command: TaskCommand::Shell(g.run.clone().unwrap_or_default()),
                    cwd: cwd.unwrap_or_else(|| self.session.root().to_path_buf()),
                    env: Default::default(),
                    env_from_parent: Vec::new(),
                    env_file: None,
                    timeout_ms: g.timeout_ms,
                    kill_grace_ms: crate::plan::KILL_GRACE_MS,
                    memory_limit: None,
                    aux: Some(job.kind),
                    agent: None,
                    end_on: None,
                    interactive: false,
                    stdin: None,
                    assigned_at: proto::now_rfc3339(),
                    seq,
                }
            }
            kind => {
                let t = &plan.tasks[job.owner];
                let (command, timeout_ms) = match kind {
                    AuxKind::Cleanup => (&t.cleanup, Some(t.cleanup_timeout_ms)),
                    AuxKind::Emergency => (&t.emergency, t.timeout_ms),
                    _ => (&t.rollback, t.timeout_ms),
                };
                Assignment {
                    task: name.clone(),
                    attempt,
                    command: TaskCommand::Shell(command.clone().unwrap_or_default()),
                    // In the task's worktree, when it has one: a cleanup or rollback
                    // works on what the task left there.
                    cwd: self.task_cwd(job.owner),
                    env: t.env.clone(),
                    env_from_parent: t.env_from_parent.clone(),
                    env_file: t.env_file.clone(),
                    timeout_ms,
                    kill_grace_ms: t.kill_grace_ms,
                    memory_limit: None,
                    aux: Some(kind),
                    agent: None,
                    end_on: None,
                    interactive: false,
                    stdin: None,
                    assigned_at: proto::now_rfc3339(),
                    seq,
                }
            }
        };
        fsio::create_dir_private(&self.session.task_dir(&name))?;
        self.fs.write_json_new_via(
            &self.session.orchestrator_dir(),
            &self.session.assignment(wid, &name, attempt),
            &a,
        )
    }

    /// Copy the session's state files into `snapshot/<time>/` (a freeze's record of
    /// where everything stood), and journal where.
    fn snapshot(&mut self) -> Result<()> {
        let name = format!("{}", proto::now_unix_ms());
        let dir = self.session.snapshot_dir(&name);
        for rel in self.session.state_files()? {
            let from = self.session.root().join(&rel);
            let Some(bytes) = fsio::read_capped(&from, crate::plan::PLAN_CAP)? else {
                continue;
            };
            let to = dir.join(&rel);
            if let Some(parent) = to.parent() {
                fsio::create_dir_private(parent)?;
            }
            self.fs.write_atomic(&to, &bytes)?;
        }
        let ev = Event::SnapshotWritten {
            path: format!("snapshot/{name}"),
        };
        self.journal.append(&ev)?;
        self.narrate(&ev);
        Ok(())
    }

    pub(super) fn ensure_task_dir(&mut self, t: TaskIx) -> Result<()> {
        if !self.dir_made[t] {
            let id = &self.engine.plan().tasks[t].id;
            fsio::create_dir_private(&self.session.task_dir(id))?;
            self.dir_made[t] = true;
        }
        Ok(())
    }

    fn assign(&mut self, wid: &str, t: TaskIx, attempt: u32, seq: u64) -> Result<()> {
        self.ensure_task_dir(t)?;
        let task = &self.engine.plan().tasks[t];
        let a = Assignment {
            task: task.id.clone(),
            attempt,
            command: task.command.clone(),
            cwd: self.task_cwd(t),
            env: task.env.clone(),
            env_from_parent: task.env_from_parent.clone(),
            env_file: task.env_file.clone(),
            timeout_ms: task.timeout_ms,
            kill_grace_ms: task.kill_grace_ms,
            memory_limit: task.memory,
            aux: None,
            agent: task.agent,
            end_on: task.end_on,
            interactive: task.interactive,
            stdin: task.stdin.clone(),
            assigned_at: proto::now_rfc3339(),
            seq,
        };
        self.fs.write_json_new_via(
            &self.session.orchestrator_dir(),
            &self.session.assignment(wid, &a.task, attempt),
            &a,
        )?;
        if std::mem::take(&mut self.retry_file[t]) {
            let retry = self.session.retry_json(&a.task);
            fsio::remove_file(&retry)?;
        }
        Ok(())
    }

    fn schedule_retry(
        &mut self,
        t: TaskIx,
        failed_attempt: u32,
        delay_ms: u64,
        reason: String,
    ) -> Result<()> {
        let spec = &self.engine.plan().tasks[t];
        let id = spec.id.clone();
        let retries = spec.retries;
        let not_before = proto::now_unix_ms() + delay_ms;
        self.fs.write_json(
            &self.session.retry_json(&id),
            &RetryPlan {
                failed_attempt,
                next_attempt: failed_attempt + 1,
                not_before_unix_ms: not_before,
                reason: reason.clone(),
            },
        )?;
        self.retry_file[t] = true;
        let retry = self.engine.failures(t);
        let ev = Event::RetryScheduled {
            task: id,
            failed_attempt,
            retry,
            retries,
            delay_ms,
            not_before_unix_ms: not_before,
            reason,
        };
        self.journal.append(&ev)?;
        self.narrate(&ev);
        Ok(())
    }

    fn decide(&mut self, d: Decision) -> Result<()> {
        self.ensure_task_dir(d.task)?;
        let id = self.engine.plan().tasks[d.task].id.clone();
        let e = d.exit.as_deref();
        let o = Outcome {
            task: id.clone(),
            state: d.state,
            attempt: d.attempt,
            worker: d.worker.clone(),
            exit_code: e.and_then(|e| e.exit_code),
            signal: e.and_then(|e| e.signal),
            started_at: e.map(|e| e.started_at.clone()),
            ended_at: e.map(|e| e.ended_at.clone()),
            duration_ms: e.map(|e| e.duration_ms),
            reason: d.reason.clone(),
            result: d.result.clone(),
            decided_at: proto::now_rfc3339(),
        };
        if d.marks {
            self.write_markers(d.task, &o)?;
        }
        let path = self.session.outcome_json(&id);
        // Created once: if one exists, it is the accepted outcome.
        let o = if self.fs.create_json_once(&path, &o)? {
            o
        } else {
            fsio::read_json::<Outcome>(&path)?.unwrap_or(o)
        };
        if std::mem::take(&mut self.retry_file[d.task]) {
            let _ = fsio::remove_file(&self.session.retry_json(&id));
        }
        let attempts = d.attempt.max(self.engine.attempts(d.task));
        self.rows[d.task] = Some(crate::summary::row_of(&self.session, &o, attempts));
        Ok(())
    }

    /// Completion markers (`marks = [...]`): written when the task succeeds.
    fn write_markers(&self, t: TaskIx, o: &Outcome) -> Result<()> {
        for m in &self.engine.plan().tasks[t].marks {
            let text = format!(
                "# {m}\n\ntask: {}\nsession: {}\nattempt: {}\nfinished: {}\nresult: {}\n",
                o.task,
                self.session.id(),
                o.attempt,
                o.ended_at.as_deref().unwrap_or("-"),
                o.result
                    .as_ref()
                    .map_or_else(|| "none".to_string(), |r| r.to_string())
            );
            self.fs
                .write_atomic(&self.session.marker(m), text.as_bytes())?;
        }
        Ok(())
    }

    /// SIGKILL the process group of an attempt whose worker cannot stop it (gone or
    /// stuck): only when the attempt ran on this host, has not recorded its exit, and
    /// its group leader is the process that started (or is gone, leaving members).
    fn kill_group(&mut self, wid: &str, id: &str, attempt: u32, process: Option<ProcessId>) {
        if fsio::exists(&self.session.exit_json(id, attempt)) {
            return;
        }
        let process = process.or_else(|| {
            crate::journal::started_record(&self.session, wid, id, attempt)
                .ok()
                .flatten()
                .map(|st| ProcessId {
                    pgid: st.pgid,
                    proc_start: st.proc_start,
                    boot_id: st.boot_id,
                })
        });
        let host = fsio::read_json::<WorkerInfo>(&self.session.worker_json(wid))
            .ok()
            .flatten()
            .map(|i| i.host);
        if let Some(p) = process
            && host.as_deref() == Some(&hostname())
        {
            crate::process::signal_group(
                p.pgid,
                p.proc_start,
                p.boot_id.as_deref(),
                Signal::SIGKILL,
            );
        }
    }

    /// A progress line for the events a person running the session wants to see.
    pub(super) fn narrate(&self, ev: &Event) {
        // A person is being asked for something: the bell, once per wait (the event is
        // journalled once), even with -q.
        let asks = match ev {
            Event::GateWaiting { .. } => true,
            Event::AgentState { state, .. } => *state == crate::agent::AgentState::Waiting,
            _ => false,
        };
        if asks {
            // On the terminal even while the live view has stderr diverted.
            crate::stderr::ring_bell();
        }
        if self.progress()
            && let Some(line) = ev.describe(self.session.id())
        {
            self.say(format_args!("{line}"));
        }
    }

    /// Write what ends the session and tell every worker.
    pub(super) fn finish(mut self) -> Result<super::Ended> {
        let state = self.ended.unwrap_or(SessionState::Failed);
        if state != SessionState::Interrupted {
            let now = std::time::SystemTime::now();
            let ended_ms = now
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            // Before the summary: a session with a summary is finished for `resume`, so
            // a report that could not be written must leave it unfinished.
            let report =
                crate::report::write(self.fs, &self.session, self.engine.plan(), state, ended_ms)?;
            let mut rows = crate::summary::Writer::new(self.fs, &self.session)?;
            for t in 0..self.engine.plan().tasks.len() {
                let row = match self.rows[t].take() {
                    Some(r) => r,
                    None => self.row_from_disk(t)?,
                };
                rows.add(&self.session, row)?;
            }
            // The session's start and length, as the report has them (this orchestrator
            // may be a resume's, started long after).
            let head = crate::summary::Head {
                state,
                started_at: report.started_at.unwrap_or_else(|| self.started_at.clone()),
                ended_at: humantime::format_rfc3339_millis(now).to_string(),
                duration_ms: report
                    .duration_ms
                    .unwrap_or_else(|| self.started.elapsed().as_millis() as u64),
            };
            let summary = rows.finish(self.fs, &self.session, head)?;
            self.journal.append(&Event::SessionFinished {
                session: self.session.id().to_string(),
                state,
                duration_ms: summary.duration_ms,
            })?;
        }
        // Tell every worker, including ones a previous orchestrator started and ones still
        // starting (not alive yet: they read the file when they come up).
        for id in self.session.worker_ids()? {
            let known = self
                .engine
                .worker_state(&id)
                .is_some_and(|s| s != crate::engine::WorkerState::Gone);
            if known || super::worker_alive(&self.session, &id) {
                self.fs.write_json(
                    &self.session.worker_shutdown(&id),
                    &Shutdown {
                        reason: ShutdownReason::SessionEnd,
                    },
                )?;
            }
        }
        // Give them a moment to exit so the caller sees a quiet session.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let live = self
                .session
                .worker_ids()?
                .iter()
                .any(|id| super::worker_alive(&self.session, id));
            let left = deadline.saturating_duration_since(Instant::now());
            if !live || left.is_zero() {
                break;
            }
            let _ = self.rx.recv_timeout(left.min(Duration::from_millis(50)));
        }
        Ok(super::Ended {
            state,
            interrupt: self.engine.interrupted_by(),
        })
    }

    /// A decided task's summary row from its `outcome.json` (decided by an earlier
    /// orchestrator of this session).
    fn row_from_disk(&self, t: TaskIx) -> Result<SummaryRow> {
        let id = &self.engine.plan().tasks[t].id;
        let attempts = self.engine.attempts(t);
        let o: Option<Outcome> = fsio::read_json(&self.session.outcome_json(id))?;
        Ok(match o {
            Some(o) => crate::summary::row_of(&self.session, &o, attempts),
            None => {
                let state = self.engine.decided(t).unwrap_or(TaskState::Cancelled);
                crate::summary::bare_row(id, state, attempts)
            }
        })
    }
}
