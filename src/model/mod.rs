//! The session model: one typed view of a session directory, live or dead, that can be
//! brought up to date cheaply. `orchestrator status` (text and `--json`) is one refresh of
//! a new model ([`crate::status::snapshot`]); the live dashboard keeps one and refreshes it
//! whenever the directory changes, so both show the same truth.
//!
//! A refresh reads the journal from where the last one stopped ([`journal::Reader`]: the
//! offset it read up to, the fold so far) and reads again only the files that may have
//! changed:
//!
//! - a task's files when a new journal line names it, and on every refresh while it is
//!   *live*: running (its progress and elapsed time change), retrying (its countdown),
//!   or assigned and not decided (a worker may start it without the journal knowing, when
//!   the orchestrator is dead); a task whose files could not be read is tried again every
//!   few seconds;
//! - except, in a live model ([`SessionModel::live`]), a task the journal decided, or
//!   knows only by name while an orchestrator runs the session (not a worktree task):
//!   its state is the journal's (`task_finished` and the like are written after the
//!   outcome; a task never assigned has no files but those a line then vouches for) and
//!   its files are read only when it is shown ([`SessionModel::read_rows`], the rows a
//!   frame draws) or a snapshot is taken, or, for a pending one, once no orchestrator
//!   runs the session. The first frame of a 10 000-task session reads a screenful of
//!   tasks, not 10 000;
//! - a worker's journal when its size changed, its `worker.json` until it is read, its
//!   liveness until it is seen dead (worker ids are never reused), its `usage.json`
//!   while it runs an attempt;
//! - `summary.json` when the journal grew (it is written before `session_finished`).
//!
//! So a refresh costs what was appended plus what is running, not the size of the plan:
//! a 10 000-task session whose journal grew by ten lines re-reads a few files. Counts by
//! state and per wave are kept as views change, never recounted (a deferred task counts
//! in the state the journal decided, which is its outcome's: the outcome is written
//! first, once).

mod plan;
mod read;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use plan::PlanFacts;
use read::Errors;
#[cfg(test)]
pub(crate) use read::worker_status;

use crate::journal::{self, Event, History, Reader, history::GateRecord};
use crate::proto::{SessionInfo, SessionState, Started, TaskState};
use crate::session::Session;
use crate::status::{
    AuxStatus, AuxView, Conflict, GateState, GateView, PoolView, Snapshot, TaskView, WorkerView,
};

/// How many of the journal's last lines a live model keeps to show.
const RECENT: usize = 64;
/// How often the files of a task that could not be read are tried again.
const RETRY_UNREADABLE: Duration = Duration::from_secs(2);
/// Every [`TaskState`], in declaration order: counts are kept per state, at
/// `state as usize`.
const STATES: [TaskState; 9] = [
    TaskState::Pending,
    TaskState::Running,
    TaskState::Retrying,
    TaskState::Succeeded,
    TaskState::Failed,
    TaskState::Skipped,
    TaskState::Cancelled,
    TaskState::Lost,
    TaskState::Excluded,
];

/// One wave of the plan (tasks by dependency depth): how many tasks, how many decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WaveCount {
    pub tasks: usize,
    pub done: usize,
}

/// A session as read from its directory, kept up to date by [`SessionModel::refresh`].
pub struct SessionModel {
    session: Session,
    /// Keep waves and the journal's last lines (a live view); `status` needs neither.
    live_view: bool,
    journal: Reader,
    journal_error: Option<String>,
    info: Option<SessionInfo>,
    info_error: Option<String>,
    plan: Option<PlanFacts>,
    plan_error: Option<String>,
    summary: Option<SessionState>,
    summary_error: Option<String>,
    workers_error: Option<String>,
    alive: bool,
    state: SessionState,
    tasks: Vec<TaskView>,
    caches: Vec<read::TaskCache>,
    /// Per task: its view is only the journal's decision, its files not read yet (a live
    /// model's decided tasks, until shown).
    unread: Vec<bool>,
    index: HashMap<String, usize>,
    /// Without a plan, how much of the journal's task order has become tasks.
    order_seen: usize,
    /// Tasks to read at the next refresh whatever happens (new ones).
    to_read: Vec<usize>,
    counts: [usize; STATES.len()],
    /// Tasks read again on every refresh (see the module's documentation).
    live: BTreeSet<usize>,
    /// Tasks with a file that could not be read, and when they were last tried.
    unreadable: BTreeSet<usize>,
    unreadable_at: Option<Instant>,
    waves: Vec<WaveCount>,
    worker_ids: Vec<String>,
    workers: Vec<WorkerView>,
    worker_caches: HashMap<String, read::WorkerCache>,
    gates: Vec<GateView>,
    resources: Vec<PoolView>,
    aux: Vec<AuxView>,
    conflicts: Option<Vec<Conflict>>,
    recent: VecDeque<Vec<u8>>,
    /// When the last `session_finished` was journalled (none while it runs again).
    ended_at: Option<String>,
    /// The journal had lines about gates or auxiliary commands since they were derived.
    derive: bool,
    /// A `tasks_added` line named tasks the plan read has not: it grew (`orchestrator
    /// add`), and is read again.
    grown: bool,
    refreshed: bool,
}

/// What one refresh found new.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refreshed {
    /// Journal events read.
    pub events: usize,
    /// Task views read again from their files (not those a live model defers: see
    /// [`SessionModel::read_rows`]).
    pub tasks: usize,
}

fn slot(s: TaskState) -> usize {
    s as usize
}

impl SessionModel {
    /// A model of `session` that has read nothing yet: [`SessionModel::refresh`] reads it.
    pub fn new(session: Session) -> SessionModel {
        SessionModel {
            journal: Reader::new(&session),
            session,
            live_view: false,
            journal_error: None,
            info: None,
            info_error: None,
            plan: None,
            plan_error: None,
            summary: None,
            summary_error: None,
            workers_error: None,
            alive: false,
            state: SessionState::Interrupted,
            tasks: Vec::new(),
            caches: Vec::new(),
            unread: Vec::new(),
            index: HashMap::new(),
            order_seen: 0,
            to_read: Vec::new(),
            counts: [0; STATES.len()],
            live: BTreeSet::new(),
            unreadable: BTreeSet::new(),
            unreadable_at: None,
            waves: Vec::new(),
            worker_ids: Vec::new(),
            workers: Vec::new(),
            worker_caches: HashMap::new(),
            gates: Vec::new(),
            resources: Vec::new(),
            aux: Vec::new(),
            conflicts: None,
            recent: VecDeque::new(),
            ended_at: None,
            derive: true,
            grown: false,
            refreshed: false,
        }
    }

    /// A model for a live view: it also keeps each wave's counts and the journal's last
    /// lines.
    pub fn live(session: Session) -> SessionModel {
        SessionModel {
            live_view: true,
            ..SessionModel::new(session)
        }
    }

    /// Read what changed since the last refresh (everything, the first time).
    pub fn refresh(&mut self) -> Refreshed {
        let first = !self.refreshed;
        self.refreshed = true;
        if self.info.is_none() {
            let mut e = Errors::default();
            self.info = e
                .keep(crate::fsio::read_json(&self.session.session_json()))
                .flatten();
            self.info_error = e.joined();
        }
        let mut touched: Vec<usize> = Vec::new();
        // While the plan is not read, it is read on a thread of its own as the journal is
        // folded: on a large session each takes tens of milliseconds (a 10 000-task
        // `plan.json` is ~5 MB, its journal ~6 MB), and neither needs the other.
        let plan = self
            .plan
            .is_none()
            .then(|| plan::Reading::start(&self.session, self.live_view));
        let events = self.read_journal(&mut touched);
        // A grown plan (tasks added): read again, whole; every task is then read anew.
        let plan = match plan {
            None if std::mem::take(&mut self.grown) => {
                touched.clear();
                Some(plan::Reading::start(&self.session, self.live_view))
            }
            plan => {
                self.grown = false;
                plan
            }
        };
        if let Some(plan) = plan {
            self.read_plan(plan.finish());
        }
        if self.plan.is_none() {
            self.tasks_from_journal();
        }
        let history = self.journal.history();
        if first || events > 0 || (history.finished && self.summary.is_none()) {
            let mut e = Errors::default();
            self.summary = e
                .keep(crate::summary::read(&self.session))
                .flatten()
                .map(|s| s.state);
            self.summary_error = e.joined();
        }
        self.alive = crate::orchestrator::orchestrator_alive(&self.session);
        // A summary that cannot be read: the journal's `session_finished` has the state.
        self.state = crate::status::session_state(self.summary, self.alive, history.state);
        self.read_workers();
        let n = self.read_tasks(touched);
        if std::mem::take(&mut self.derive) {
            self.derive_from_journal();
        }
        self.derive_resources();
        Refreshed { events, tasks: n }
    }

    /// Fold the journal's new lines; the tasks they name go into `touched`.
    fn read_journal(&mut self, touched: &mut Vec<usize>) -> usize {
        let index = &self.index;
        let recent = &mut self.recent;
        let keep = self.live_view;
        let (derive, ended_at) = (&mut self.derive, &mut self.ended_at);
        let grown = &mut self.grown;
        let r = self.journal.refresh_with(|ev, line| {
            ev.for_each_task(|t| touched.extend(index.get(t)));
            match ev {
                // Lines naming the new tasks may come before the plan is read again: the
                // new read reads every task.
                Event::TasksAdded { tasks } if !index.is_empty() => {
                    *grown |= tasks.iter().any(|t| !index.contains_key(t));
                }
                Event::SessionFinished { .. } => {
                    *ended_at = journal::line_ts(line).map(str::to_string);
                }
                Event::SessionResumed { .. } | Event::SessionRetried { .. } => *ended_at = None,
                Event::GateWaiting { .. }
                | Event::GateApproved { .. }
                | Event::GateRejected { .. }
                | Event::GatePassed { .. }
                | Event::GateFailed { .. }
                | Event::AuxWithdrawn { .. } => *derive = true,
                ev if ev.as_aux_start().is_some() || ev.as_aux_end().is_some() => *derive = true,
                _ => {}
            }
            if keep {
                // The oldest line's buffer holds the newest: no allocation per line once
                // full (a first read goes through the whole journal).
                let mut kept = if recent.len() == RECENT {
                    recent.pop_front().unwrap_or_default()
                } else {
                    Vec::new()
                };
                kept.clear();
                kept.extend_from_slice(line);
                recent.push_back(kept);
            }
        });
        match r {
            Ok(n) => {
                self.journal_error = None;
                n
            }
            Err(e) => {
                self.journal_error = Some(e.to_string());
                0
            }
        }
    }

    /// Take what was read of `plan.json` (again, while it could not be read): on success
    /// the tasks are the plan's, in plan order, and are all read (or deferred).
    fn read_plan(&mut self, facts: crate::error::Result<PlanFacts>) {
        let mut e = Errors::default();
        let Some(facts) = e.keep(facts) else {
            self.plan_error = e.joined();
            return;
        };
        self.plan_error = None;
        self.waves = vec![WaveCount::default(); facts.waves];
        for &w in &facts.wave_of {
            self.waves[w].tasks += 1;
        }
        self.tasks.clear();
        self.caches.clear();
        self.unread.clear();
        self.index.clear();
        self.counts = [0; STATES.len()];
        self.live.clear();
        self.unreadable.clear();
        self.to_read.clear();
        // Every task is read: a plan that became readable replaces the journal's list.
        // (Room made first: 10 000 views grown by doubling were copied about twice.)
        let n = facts.ids.len();
        self.tasks.reserve(n);
        self.caches.reserve(n);
        self.unread.reserve(n);
        self.index.reserve(n);
        self.to_read.reserve(n);
        for id in &facts.ids {
            self.push_task(id);
        }
        self.plan = Some(facts);
        self.derive = true;
    }

    /// Without the plan, the journal still has the tasks, in plan order.
    fn tasks_from_journal(&mut self) {
        let order = &self.journal.history().task_order;
        let new: Vec<String> = order[self.order_seen.min(order.len())..]
            .iter()
            .filter(|id| crate::names::is_valid(id))
            .cloned()
            .collect();
        self.order_seen = order.len();
        for id in new {
            self.push_task(&id);
        }
    }

    /// A new task, pending until it is read at this refresh.
    fn push_task(&mut self, id: &str) {
        let i = self.tasks.len();
        self.tasks.push(read::undecided(id));
        self.caches.push(read::TaskCache::default());
        self.unread.push(false);
        self.index.insert(id.to_string(), i);
        self.counts[slot(TaskState::Pending)] += 1;
        self.to_read.push(i);
    }

    fn read_workers(&mut self) {
        let finished = matches!(
            self.state,
            SessionState::Succeeded
                | SessionState::Failed
                | SessionState::Cancelled
                | SessionState::RolledBack
                | SessionState::RollbackFailed
        );
        let mut e = Errors::default();
        self.worker_ids = e.keep(self.session.worker_ids()).unwrap_or_default();
        self.workers_error = e.joined();
        let caches = &mut self.worker_caches;
        self.workers = self
            .worker_ids
            .iter()
            .map(|id| {
                let cache = caches.entry(id.clone()).or_default();
                read::worker_view(&self.session, id.clone(), finished, cache)
            })
            .collect();
    }

    /// Read again the new tasks, those the journal named, the live ones, worktree tasks
    /// (the orchestrator rewrites `worktree.json` after the journal lines of an attempt's
    /// end, so it is tied to none) and, every few seconds, the unreadable ones; in a live
    /// model, those of them the journal alone tells enough of (`deferrable`) wait
    /// until shown. Returns how many were read.
    fn read_tasks(&mut self, touched: Vec<usize>) -> usize {
        // A sorted list, not a set: on a first read it holds every task.
        let mut todo = std::mem::take(&mut self.to_read);
        todo.extend(touched);
        todo.extend(self.live.iter().copied());
        if let Some(p) = &self.plan {
            todo.extend(p.worktree.iter().filter_map(|id| self.index.get(id)));
        }
        let now = Instant::now();
        // Pending tasks left unread while an orchestrator ran: with none now, a crash may
        // have left files that no journal line will vouch for, so they are read.
        if self.live_view && !self.alive {
            let unread = |&i: &usize| self.unread[i] && self.tasks[i].state == TaskState::Pending;
            todo.extend((0..self.tasks.len()).filter(unread));
        }
        if self
            .unreadable_at
            .is_none_or(|t| now.duration_since(t) >= RETRY_UNREADABLE)
        {
            todo.extend(self.unreadable.iter().copied());
            self.unreadable_at = Some(now);
        }
        todo.sort_unstable();
        todo.dedup();
        let mut read = 0;
        for &i in &todo {
            match self.deferrable(i) {
                Some((state, attempt)) => self.defer(i, state, attempt),
                None => {
                    self.read_task(i);
                    read += 1;
                }
            }
        }
        if self.plan.as_ref().is_some_and(|p| !p.worktree.is_empty()) {
            self.conflicts = Some(crate::status::conflicts(&self.tasks));
        }
        read
    }

    /// In a live model, task `i`'s state and attempt as the journal alone tells them,
    /// when that is enough until it is shown: what it decided, or pending for a task it
    /// knows only by name (never assigned) while an orchestrator runs the session (which
    /// writes nothing of such a task but what a journal line then vouches for: a skip's
    /// outcome, say). Not for a worktree task, whose `worktree.json` goes into the
    /// session's conflicts.
    fn deferrable(&self, i: usize) -> Option<(TaskState, u32)> {
        if !self.live_view {
            return None;
        }
        let id = &self.tasks[i].id;
        if self.plan.as_ref().is_some_and(|p| p.worktree.contains(id)) {
            return None;
        }
        let h = self.journal.history().tasks.get(id)?;
        match h.decided {
            Some(state) => Some((state, h.last_attempt)),
            None if self.alive
                && self.journal_error.is_none()
                && *h == journal::TaskHistory::default() =>
            {
                Some((TaskState::Pending, 0))
            }
            None => None,
        }
    }

    /// Task `i` as the journal tells it (`state`, `attempt`), its files left unread until
    /// it is shown.
    fn defer(&mut self, i: usize, state: TaskState, attempt: u32) {
        let id = std::mem::take(&mut self.tasks[i].id);
        self.caches[i] = read::TaskCache::default();
        self.live.remove(&i);
        self.unreadable.remove(&i);
        self.unread[i] = true;
        let v = TaskView {
            id,
            state,
            attempt,
            ..read::undecided("")
        };
        self.set(i, v);
    }

    /// Read the files of the tasks in `rows` (by index) that a live model deferred, so
    /// that they can be shown as a full read shows them; returns how many were read.
    pub fn read_rows(&mut self, rows: std::ops::Range<usize>) -> usize {
        let rows = rows.start.min(self.tasks.len())..rows.end.min(self.tasks.len());
        let mut read = 0;
        for i in rows {
            if self.unread[i] {
                self.read_task(i);
                read += 1;
            }
        }
        read
    }

    /// Task `i`'s view from its files and the journal; `cache` is its cache.
    fn view(&self, i: usize, cache: &mut read::TaskCache) -> TaskView {
        let history = self.journal.history();
        let id = &self.tasks[i].id;
        let h = history.tasks.get(id);
        let mut v = read::task_view(&self.session, id, h, &self.worker_ids, cache);
        v.attempts = read::attempts_of(h, &v);
        v.agent = read::agent_view(history.agents.get(id), &v);
        if let Some(p) = &self.plan {
            v.secrets = p.secrets.get(id).cloned();
            if p.worktree.contains(id) {
                match crate::status::read_worktree(&self.session, id) {
                    Ok(w) => v.worktree = w,
                    Err(e) => {
                        let e = e.to_string();
                        v.error = Some(v.error.map_or(e.clone(), |old| format!("{old}; {e}")));
                    }
                }
            }
        }
        v
    }

    fn read_task(&mut self, i: usize) {
        let mut cache = std::mem::take(&mut self.caches[i]);
        let v = self.view(i, &mut cache);
        self.caches[i] = cache;
        let h = self.journal.history().tasks.get(&v.id);
        let fenced = h.is_some_and(|h| h.decided.is_none() && h.fence.is_some());
        let live = fenced || matches!(v.state, TaskState::Running | TaskState::Retrying);
        if live {
            self.live.insert(i);
        } else {
            self.live.remove(&i);
        }
        if v.error.is_some() {
            self.unreadable.insert(i);
        } else {
            self.unreadable.remove(&i);
        }
        self.unread[i] = false;
        self.set(i, v);
    }

    /// Put task `i`'s new view in place, keeping the counts.
    fn set(&mut self, i: usize, v: TaskView) {
        let old = self.tasks[i].state;
        self.counts[slot(old)] -= 1;
        self.counts[slot(v.state)] += 1;
        if let Some(&w) = self.plan.as_ref().and_then(|p| p.wave_of.get(i)) {
            match (old.is_terminal(), v.state.is_terminal()) {
                (false, true) => self.waves[w].done += 1,
                (true, false) => self.waves[w].done -= 1,
                _ => {}
            }
        }
        self.tasks[i] = v;
    }

    /// What comes from the journal alone: gates, auxiliary commands (derived again only
    /// after lines about them: a session with a cleanup per attempt has many).
    fn derive_from_journal(&mut self) {
        let history = self.journal.history();
        let gate_ids = self.plan.as_ref().map_or(&[][..], |p| &p.gate_ids[..]);
        self.gates = gate_ids
            .iter()
            .map(|gate| {
                let (state, reason) = match history.gates.get(gate) {
                    None => (GateState::Pending, None),
                    Some(GateRecord::Waiting) => (GateState::Waiting, None),
                    Some(GateRecord::Approved) => (GateState::Approved, None),
                    Some(GateRecord::Rejected(r)) => (GateState::Rejected, Some(r.clone())),
                    Some(GateRecord::Checking) => (GateState::Checking, None),
                    Some(GateRecord::Passed) => (GateState::Passed, None),
                    Some(GateRecord::Failed(r)) => (GateState::Failed, Some(r.clone())),
                };
                GateView {
                    gate: gate.clone(),
                    state,
                    reason,
                }
            })
            .collect();
        self.gates.sort_by_key(|g| g.state != GateState::Waiting);
        self.aux = history
            .aux
            .iter()
            .map(|((kind, of, attempt), r)| AuxView {
                kind: *kind,
                of: of.clone(),
                attempt: *attempt,
                worker: r.worker.clone(),
                state: r
                    .end
                    .as_ref()
                    .map_or(AuxStatus::Running, |e| e.state.into()),
                reason: r.end.as_ref().and_then(|e| e.reason.clone()),
            })
            .collect();
    }

    /// Each pool's use: the claims of the tasks running now (all of them live).
    fn derive_resources(&mut self) {
        let Some(p) = &self.plan else {
            self.resources.clear();
            return;
        };
        let running: Vec<&str> = self
            .live
            .iter()
            .map(|&i| &self.tasks[i])
            .filter(|t| t.state == TaskState::Running)
            .map(|t| t.id.as_str())
            .collect();
        self.resources = p
            .pools
            .iter()
            .map(|(pool, def)| {
                let used = running
                    .iter()
                    .filter_map(|t| p.claims.get(*t)?.get(pool))
                    .fold(0u64, |a, n| a.saturating_add(*n));
                PoolView {
                    level: def.level(used),
                    pool: pool.clone(),
                    used,
                    max: def.max,
                    warn: def.warn,
                    critical: def.critical,
                }
            })
            .collect();
    }

    /// The session's own files that could not be read, each message naming its file.
    pub fn errors(&self) -> Vec<String> {
        [
            &self.info_error,
            &self.journal_error,
            &self.plan_error,
            &self.summary_error,
            &self.workers_error,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
    }

    /// The snapshot `status` draws, as the model stands (a deferred task's files read
    /// for it).
    pub fn snapshot(&self) -> Snapshot {
        let tasks = self
            .tasks
            .iter()
            .zip(&self.unread)
            .enumerate()
            .map(|(i, (t, &unread))| match unread {
                true => self.view(i, &mut read::TaskCache::default()),
                false => t.clone(),
            })
            .collect();
        Snapshot {
            session: self.session.id().to_string(),
            path: self.session.root().display().to_string(),
            state: self.state,
            orchestrator_alive: self.alive,
            created_at: self.info.as_ref().map(|i| i.created_at.clone()),
            tasks,
            workers: self.workers.clone(),
            resources: self.resources.clone(),
            gates: self.gates.clone(),
            held: self.journal.history().held,
            aux: self.aux.clone(),
            rollback: self.journal.history().rollback.clone(),
            conflicts: self.conflicts.clone(),
            errors: self.errors(),
            counted: None,
        }
    }

    /// [`SessionModel::snapshot`], moving the views out rather than copying them.
    pub fn into_snapshot(mut self) -> Snapshot {
        self.read_rows(0..self.tasks.len());
        let errors = self.errors();
        let history = self.journal.into_history();
        Snapshot {
            session: self.session.id().to_string(),
            path: self.session.root().display().to_string(),
            state: self.state,
            orchestrator_alive: self.alive,
            created_at: self.info.map(|i| i.created_at),
            tasks: self.tasks,
            workers: self.workers,
            resources: self.resources,
            gates: self.gates,
            held: history.held,
            aux: self.aux,
            rollback: history.rollback,
            conflicts: self.conflicts,
            errors,
            counted: None,
        }
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    pub fn state(&self) -> SessionState {
        self.state
    }

    /// Whether an orchestrator holds the session (at the last refresh).
    pub fn orchestrator_alive(&self) -> bool {
        self.alive
    }

    /// When the session last finished (its `session_finished` line), as written.
    pub fn ended_at(&self) -> Option<&str> {
        self.ended_at.as_deref()
    }

    /// When the session was created (`session.json`), as written.
    pub fn created_at(&self) -> Option<&str> {
        self.info.as_ref().map(|i| i.created_at.as_str())
    }

    /// The tasks, in plan order.
    pub fn tasks(&self) -> &[TaskView] {
        &self.tasks
    }

    pub fn task_index(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// How many tasks are in state `s`.
    pub fn count(&self, s: TaskState) -> usize {
        self.counts[slot(s)]
    }

    /// How many tasks are decided.
    pub fn done(&self) -> usize {
        STATES
            .iter()
            .filter(|s| s.is_terminal())
            .map(|s| self.count(*s))
            .sum()
    }

    /// The tasks read again on every refresh (running, retrying, assigned), by index.
    pub fn live_tasks(&self) -> impl Iterator<Item = usize> + '_ {
        self.live.iter().copied()
    }

    /// The start of task `i`'s running attempt (its process), once seen.
    pub fn started(&self, i: usize) -> Option<&Started> {
        self.caches.get(i)?.started.as_ref()
    }

    pub fn workers(&self) -> &[WorkerView] {
        &self.workers
    }

    /// Each wave's counts (a live model; empty without the plan).
    pub fn waves(&self) -> &[WaveCount] {
        &self.waves
    }

    pub fn gates(&self) -> &[GateView] {
        &self.gates
    }

    pub fn resources(&self) -> &[PoolView] {
        &self.resources
    }

    pub fn aux(&self) -> &[AuxView] {
        &self.aux
    }

    pub fn history(&self) -> &History {
        self.journal.history()
    }

    /// The journal's last lines (a live model), oldest first, as written.
    pub fn recent(&self) -> impl DoubleEndedIterator<Item = (Option<&str>, Option<Event>)> + '_ {
        self.recent
            .iter()
            .map(|l| (journal::line_ts(l), serde_json::from_slice(l).ok()))
    }

    /// Where in the journal the model has read up to.
    pub fn journal_offset(&self) -> u64 {
        self.journal.offset()
    }

    /// Complete journal lines that were not events (skipped).
    pub fn malformed(&self) -> usize {
        self.journal.malformed()
    }
}
