//! The worker while an attempt runs: waiting for its end, and stopping it past its
//! `timeout`, when the orchestrator asks, over its `memory`, or when its agent went idle
//! after working (`end_on = "idle"`). Its timeout clock waits while the session is frozen,
//! while its agent waits for a person, and while it is stopped on its terminal (Ctrl-Z:
//! said in the window, where Enter continues it).

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::agent::AgentRelay;
use super::{NO_PIDFD_POLL, Worker};
use crate::agent::AgentState;
use crate::cgroup::Leaf;
use crate::error::{Error, Result};
use crate::fsio;
use crate::jobctl::{Job, JobState};
use crate::proto::{Assignment, KillRequest};

/// Why the worker stopped a task itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Stopped {
    /// It ran past its `timeout`.
    TimedOut,
    /// The orchestrator asked (`kill`), with its reason (recorded as `killed_by`).
    Asked(String),
    /// Its process group used more memory than the task's `memory`.
    MemoryLimit,
    /// Its agent worked, then went idle, and the task ends there (`end_on = "idle"`): the
    /// attempt succeeded, whatever the agent does with the SIGTERM.
    Idle,
}

/// How soon a job caught between two states (its task stopped, its job-control parent not
/// yet, or told to go on) is looked at again.
const JOB_SETTLE: Duration = Duration::from_millis(20);

impl Worker {
    /// Wait for the running task's main process (`child`; on a pty, `job`'s parent, which
    /// ends as the task does). Past its timeout, when the orchestrator asks (`kill` file
    /// naming this attempt), or when its agent is done (`end_on`), SIGTERM its group, then
    /// SIGKILL after the grace. Returns the exit status and why we stopped it, if we did.
    /// Every signal also reaches the attempt's cgroup (`leaf`), and its SIGKILL is
    /// `cgroup.kill`.
    pub(super) fn wait_task(
        &mut self,
        a: &Assignment,
        child: &mut std::process::Child,
        leaf: Option<&Leaf>,
        job: Option<&Job>,
    ) -> Result<(std::process::ExitStatus, Option<Stopped>)> {
        let (task, attempt) = (a.task.as_str(), a.attempt);
        let timeout = a.timeout_ms.map(Duration::from_millis);
        let grace = Duration::from_millis(a.kill_grace_ms);
        let memory_limit = a.memory_limit;
        // An auxiliary command (a cleanup, an emergency command) is never frozen: the
        // freeze is of the session's tasks, and an emergency command runs because of it.
        let freezable = a.aux.is_none();
        let pid = child.id();
        // The task's own process group: our child's, or on a pty the task's under its
        // job-control parent.
        let pgid = Pid::from_raw(job.map_or(pid, |j| j.task) as i32);
        // Readable when our child has exited: one poll waits for it and for our bell,
        // with no thread in between.
        let pidfd = crate::bell::pidfd(pid);
        let reap = |child: &mut std::process::Child| {
            child.try_wait().map_err(|e| {
                Error::Session(format!("cannot wait for task {task} (pid {pid}): {e}"))
            })
        };
        let signal_all = |sig: Signal| {
            let _ = killpg(pgid, sig);
            if let Some(j) = job {
                j.signal_parent(sig);
            }
            if let Some(l) = leaf {
                if sig == Signal::SIGKILL {
                    let _ = l.kill();
                } else {
                    l.signal_others(sig, pgid);
                }
            }
        };
        // With `memory.max` the kernel holds the attempt to its memory; the worker
        // compares what it measured only where it does not (memory.current counts page
        // cache, which the kernel reclaims before it would OOM-kill).
        let kernel_limits = leaf.is_some_and(Leaf::enforces_memory);
        let oom_killed = || leaf.is_some_and(|l| l.oom_kills() > 0);
        let start = Instant::now();
        let mut sampler = crate::usage::Sampler::new(
            pgid.as_raw() as u32,
            leaf.map(|l| l.dir().to_path_buf()),
            start,
        );
        let mut ended_by: Option<Stopped> = None;
        // While the session is frozen the group is stopped and its timeout clock too: a
        // freeze longer than the timeout must not kill the task. Time an agent spends
        // waiting for a person is not the task's either, nor time stopped on its
        // terminal. One clock for the three, which may overlap.
        let mut frozen = false;
        let mut agent_waiting = false;
        let mut held = false;
        let mut paused_since: Option<Instant> = None;
        let mut paused_for = Duration::ZERO;
        let mut relay = AgentRelay::default();
        // Only an agent task's reports are relayed (a look per wake-up costs every task).
        let is_agent = a.agent.is_some();
        let end_on_idle = is_agent && a.end_on == Some(crate::plan::EndOn::Idle);
        let mut look_soon = false;
        let freeze_file = self.session.worker_freeze(&self.cfg.id);
        let mut hard_kill_at: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let mut wait = self.cfg.watch.rescan_interval();
            if ended_by.is_none()
                && paused_since.is_none()
                && let Some(t) = timeout
            {
                wait = wait.min((start + paused_for + t).saturating_duration_since(now));
            }
            if let Some(k) = hard_kill_at {
                wait = wait.min(k.saturating_duration_since(now));
            }
            if pidfd.is_none() {
                // No pidfd (Linux < 5.3): look for the exit every few ms.
                wait = wait.min(NO_PIDFD_POLL);
            }
            if std::mem::take(&mut look_soon) {
                wait = wait.min(JOB_SETTLE);
            }
            wait = wait.min(sampler.next().saturating_duration_since(now));
            self.bell.wait(pidfd.as_ref().map(|f| f.as_fd()), wait)?;
            if let Some(st) = reap(child)? {
                // What the agent reported last, before it ended (a quick task ends before
                // the loop looked again).
                if is_agent {
                    self.relay_agent(task, attempt, &mut relay);
                }
                // The kernel's OOM killer ended it (memory.max): the same failure as the
                // worker's own stop over `memory`.
                if ended_by.is_none() && oom_killed() {
                    self.say(&format!(
                        "task {task}: memory limit (killed by the kernel at its cgroup's \
                         memory.max)"
                    ));
                    ended_by = Some(Stopped::MemoryLimit);
                }
                return Ok((st, ended_by));
            }
            if let Err(e) = self.check_dir() {
                // The task must not outlive us unseen: its group goes now.
                signal_all(Signal::SIGKILL);
                let _ = child.wait();
                return Err(e);
            }
            // A task on a terminal that was stopped (Ctrl-Z, or a stop signal from anyone)
            // is not hung: said once, its timeout clock waits, and Enter in this window
            // continues it (so does a SIGCONT).
            if let Some(j) = job
                && !frozen
            {
                match j.look() {
                    JobState::Stopped if !held => {
                        held = true;
                        j.hold_keys(true);
                        self.say(&format!(
                            "task {task}: stopped (Ctrl-Z or a stop signal); press Enter here \
                             to continue it, or `kill -CONT {}`",
                            j.task
                        ));
                    }
                    JobState::Running if held => {
                        held = false;
                        j.hold_keys(false);
                        self.say(&format!("task {task}: continued"));
                    }
                    JobState::Stopping | JobState::Resuming => look_soon = true,
                    _ => {}
                }
            }
            let freeze = freezable && fsio::exists(&freeze_file);
            if freeze && !frozen && ended_by.is_none() {
                self.say(&format!(
                    "task {task}: session frozen; stopping its process group"
                ));
                signal_all(Signal::SIGSTOP);
                frozen = true;
            } else if !freeze && frozen {
                self.say(&format!(
                    "task {task}: session thawed; its process group goes on"
                ));
                signal_all(Signal::SIGCONT);
                frozen = false;
            }
            let mut idle = false;
            if is_agent && let Some(state) = self.relay_agent(task, attempt, &mut relay) {
                agent_waiting = state == AgentState::Waiting;
                // Idle before any work is an agent just started (Claude Code's
                // SessionStart), not one done.
                idle = end_on_idle && state == AgentState::Idle && relay.worked;
            }
            let paused = frozen || agent_waiting || held;
            if paused && paused_since.is_none() {
                paused_since = Some(Instant::now());
            } else if !paused && let Some(since) = paused_since.take() {
                paused_for += since.elapsed();
            }
            // Why we stop it now, if we do, and how that is said.
            let mut stop: Option<(Stopped, String)> = None;
            if let Some((s, cpu)) = sampler.tick(Instant::now()) {
                self.record_usage((task, attempt), &s, cpu, leaf);
                let over = if kernel_limits {
                    oom_killed().then(|| "the kernel killed in its cgroup at memory.max".into())
                } else {
                    memory_limit.filter(|&l| s.memory_bytes > l).map(|l| {
                        format!(
                            "{} used, {} allowed",
                            crate::plan::show_size(s.memory_bytes),
                            crate::plan::show_size(l)
                        )
                    })
                };
                stop = over.map(|over| (Stopped::MemoryLimit, format!("memory limit ({over})")));
            }
            if ended_by.is_none() && stop.is_none() {
                let ran = start.elapsed().saturating_sub(paused_for);
                stop = if paused_since.is_none() && timeout.is_some_and(|t| ran >= t) {
                    Some((Stopped::TimedOut, "timed out".into()))
                } else if let Some(k) =
                    fsio::read_json::<KillRequest>(&self.session.worker_kill(&self.cfg.id))
                        .ok()
                        .flatten()
                        .filter(|k| k.task == task && k.attempt == attempt)
                {
                    let said = k.reason.clone();
                    Some((Stopped::Asked(k.reason), said))
                } else {
                    idle.then(|| {
                        let said = "its agent is idle after working (end_on = \"idle\")";
                        (Stopped::Idle, said.into())
                    })
                };
            }
            if ended_by.is_none()
                && let Some((why, said)) = stop
            {
                self.say(&format!("task {task}: {said}; stopping its process group"));
                signal_all(Signal::SIGTERM);
                if frozen || held {
                    // A stopped group gets the signal only once it runs again.
                    signal_all(Signal::SIGCONT);
                    frozen = false;
                }
                hard_kill_at = Some(Instant::now() + grace);
                ended_by = Some(why);
            }
            if hard_kill_at.is_some_and(|k| Instant::now() >= k) {
                signal_all(Signal::SIGKILL);
                hard_kill_at = None;
            }
        }
    }
}
