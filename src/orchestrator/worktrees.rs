//! The shell's side of `worktree = true`: before a session is made, which repositories
//! its worktree tasks run in and their HEADs (`session.json` records them: every worktree
//! of a repository starts from the same commit); a warning when a main checkout has
//! uncommitted changes; each task's worktree made just before the journal line that first
//! gives the task (or one of its auxiliary commands) to a worker, one at a time; the
//! assignment's `cwd` mapped into it; and `tasks/<id>/worktree.json` refreshed each time
//! an attempt ends. The git commands are in [`crate::worktree`].
//!
//! The engine knows nothing of this: a worktree is, like a task's directory, something the
//! shell makes before it publishes what the engine decided. A worktree is reused as it
//! was left, by a retry, a new attempt, or a resumed orchestrator; one removed by
//! `orchestrator clean --worktrees` is made again from its branch.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::Orchestrator;
use crate::engine::TaskIx;
use crate::error::{Error, Result, io_err};
use crate::fsio;
use crate::journal::Event;
use crate::plan::Plan;
use crate::proto::{self, AuxKind, WorktreeRecord, WorktreeSetup};
use crate::worktree;

/// The worktrees of a session's tasks, as far as this orchestrator knows them.
pub(super) struct Worktrees {
    setup: WorktreeSetup,
    /// The index of each task with `worktree = true`, by id.
    index: HashMap<String, TaskIx>,
    /// Each task's worktree, once it is known to exist.
    ready: Vec<Option<Ready>>,
}

/// Where a task's worktree is and what it is made of.
#[derive(Debug, Clone)]
struct Ready {
    repo: PathBuf,
    base: String,
    branch: String,
    path: PathBuf,
    /// The task's `cwd`, mapped into the worktree.
    cwd: PathBuf,
}

impl Worktrees {
    /// The worktrees of `plan`'s tasks, made from `setup` (`session.json`'s); `None` when
    /// no task has one. A plan with worktree tasks and no setup is a damaged session.
    pub(super) fn of(plan: &Plan, setup: Option<WorktreeSetup>) -> Result<Option<Worktrees>> {
        let index: HashMap<String, TaskIx> = plan
            .tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.worktree)
            .map(|(i, t)| (t.id.clone(), i))
            .collect();
        if index.is_empty() {
            return Ok(None);
        }
        let setup = setup.ok_or_else(|| {
            Error::Session(
                "session.json records no repository for the tasks with worktree = true".into(),
            )
        })?;
        Ok(Some(Worktrees {
            setup,
            index,
            ready: vec![None; plan.tasks.len()],
        }))
    }
}

impl Worktrees {
    /// `plan` grew (tasks added after the session started): its new worktree tasks
    /// start from the session's recorded bases too (`orchestrator add` refuses one in
    /// another repository).
    pub(super) fn grow(&mut self, plan: &Plan) {
        let from = self.ready.len();
        for (i, t) in plan.tasks.iter().enumerate().skip(from) {
            if t.worktree {
                self.index.insert(t.id.clone(), i);
            }
        }
        self.ready.resize(plan.tasks.len(), None);
    }
}

/// What `session.json` records for `plan`'s worktrees, found before the session is made
/// (a task outside a repository refuses the run, exit 2, with nothing made); `None` when
/// no task has `worktree = true`.
pub(super) fn discover(plan: &Plan, plan_file: &Path) -> Result<Option<WorktreeSetup>> {
    if !plan.tasks.iter().any(|t| t.worktree) {
        return Ok(None);
    }
    let repos = worktree::discover(plan)?;
    let file = std::fs::canonicalize(plan_file).map_err(io_err(plan_file, "resolve"))?;
    let plan_dir = file
        .parent()
        .map_or_else(|| file.clone(), Path::to_path_buf);
    Ok(Some(WorktreeSetup { plan_dir, repos }))
}

fn warn(msg: std::fmt::Arguments) {
    // Never panic on a closed stderr: the session matters more than the warning.
    let _ = writeln!(std::io::stderr(), "warning: {msg}");
}

impl Orchestrator {
    /// Say (on stderr, whatever `-q` says, and in the journal) which main checkouts have
    /// uncommitted changes: the worktrees start from their last commit, without them.
    pub(super) fn warn_dirty_checkouts(&mut self) -> Result<()> {
        let Some(w) = &self.worktrees else {
            return Ok(());
        };
        let sessions = self.session.root().parent().unwrap_or(self.session.root());
        let mut dirty = Vec::new();
        for r in &w.setup.repos {
            match worktree::uncommitted(&r.repo, sessions) {
                Ok(0) => {}
                Ok(n) => dirty.push((r.clone(), n)),
                Err(e) => warn(format_args!(
                    "cannot tell whether {} has uncommitted changes: {e}",
                    r.repo.display()
                )),
            }
        }
        for (r, changed) in dirty {
            warn(format_args!(
                "{} has {changed} uncommitted change{}: the worktrees start from its last \
                 commit ({}) and do not have {}",
                r.repo.display(),
                if changed == 1 { "" } else { "s" },
                &r.base[..r.base.len().min(12)],
                if changed == 1 { "it" } else { "them" },
            ));
            self.journal.append(&Event::CheckoutDirty {
                repo: r.repo.display().to_string(),
                base: r.base,
                changed,
            })?;
        }
        Ok(())
    }

    /// What to do before journalling `ev`: the worktree of the task a `task_assigned` or
    /// an auxiliary command's fence line hands out exists before that line does, so no
    /// worker is ever given a task whose worktree is not there.
    pub(super) fn before_journal(&mut self, ev: &Event) -> Result<()> {
        if self.worktrees.is_none() {
            return Ok(());
        }
        let task = match ev {
            Event::TaskAssigned { task, .. } => task,
            ev => match ev.as_aux_start() {
                Some((kind, s)) if kind != AuxKind::Check => &s.of,
                _ => return Ok(()),
            },
        };
        match self.worktree_index(task) {
            Some(t) => self.ensure_worktree(t),
            None => Ok(()),
        }
    }

    /// What to do after journalling `ev`: an attempt ended (or a late one came in), so
    /// the task's `worktree.json` says again what it changed.
    pub(super) fn after_journal(&mut self, ev: &Event) -> Result<()> {
        let task = match ev {
            Event::AttemptEnded { task, .. } | Event::StaleResult { task, .. } => task,
            _ => return Ok(()),
        };
        match self.worktree_index(task) {
            Some(t) => self.refresh_worktree(t),
            None => Ok(()),
        }
    }

    fn worktree_index(&self, task: &str) -> Option<TaskIx> {
        self.worktrees.as_ref()?.index.get(task).copied()
    }

    /// Where task `t`'s attempts and auxiliary commands run: its `cwd`, mapped into its
    /// worktree when it has one.
    pub(super) fn task_cwd(&self, t: TaskIx) -> PathBuf {
        let ready = self.worktrees.as_ref().and_then(|w| w.ready[t].as_ref());
        ready.map_or_else(
            || self.engine.plan().tasks[t].cwd.clone(),
            |r| r.cwd.clone(),
        )
    }

    /// Task `t`'s worktree, where it is (made or not): its repository is the recorded
    /// one whose top level is the longest prefix of the task's `cwd` (links resolved), so
    /// a task in a nested repository gets that one.
    fn locate_worktree(&self, t: TaskIx) -> Result<Ready> {
        let w = self.worktrees.as_ref().expect("only for worktree tasks");
        let task = &self.engine.plan().tasks[t];
        let cwd = std::fs::canonicalize(&task.cwd).map_err(io_err(&task.cwd, "resolve"))?;
        let repo = w
            .setup
            .repos
            .iter()
            .filter(|r| cwd.starts_with(&r.repo))
            .max_by_key(|r| r.repo.components().count())
            .ok_or_else(|| {
                Error::Session(format!(
                    "task {:?}: its cwd {} is in none of the repositories recorded when the \
                     session started",
                    task.id,
                    cwd.display()
                ))
            })?;
        let path = self.session.worktree_dir(&task.id);
        let inside = cwd.strip_prefix(&repo.repo).unwrap_or(Path::new(""));
        Ok(Ready {
            repo: repo.repo.clone(),
            base: repo.base.clone(),
            branch: worktree::branch(self.session.id(), &task.id),
            cwd: path.join(inside),
            path,
        })
    }

    /// Whether `path` holds a worktree (git's `.git` file in it); something else where
    /// the directory belongs is refused, as anything planted in a session is.
    fn worktree_made(path: &Path) -> Result<bool> {
        if !fsio::exists(path) {
            return Ok(false);
        }
        if !fsio::is_dir(path) {
            return Err(Error::Refused {
                path: path.to_path_buf(),
                what: "is not a directory (a task's worktree belongs there)".into(),
            });
        }
        Ok(fsio::exists(&path.join(".git")))
    }

    /// Make task `t`'s worktree unless it exists (as it was left: reused).
    fn ensure_worktree(&mut self, t: TaskIx) -> Result<()> {
        if self
            .worktrees
            .as_ref()
            .is_some_and(|w| w.ready[t].is_some())
        {
            return Ok(());
        }
        let ready = self.locate_worktree(t)?;
        let made = !Self::worktree_made(&ready.path)?;
        if made {
            fsio::create_dir_private(&self.session.worktrees_dir())?;
            let id = self.engine.plan().tasks[t].id.clone();
            worktree::add(&ready.repo, &ready.path, &ready.branch, &ready.base).map_err(|e| {
                Error::Session(format!("task {id:?}: cannot make its worktree: {e}"))
            })?;
            let ev = Event::WorktreeCreated {
                task: id,
                branch: ready.branch.clone(),
                path: ready.path.display().to_string(),
                base: ready.base.clone(),
            };
            self.journal.append(&ev)?;
            self.narrate(&ev);
        }
        if let Some(w) = self.worktrees.as_mut() {
            w.ready[t] = Some(ready);
        }
        // A worktree made now (new, or again from its branch after `clean`, which took
        // its uncommitted files) has its record at once, and so has one whose record a
        // crash kept from being written.
        if made || !fsio::exists(&self.session.worktree_json(&self.engine.plan().tasks[t].id)) {
            self.refresh_worktree(t)?;
        }
        Ok(())
    }

    /// Write task `t`'s `worktree.json` anew: what it changed since the base, and which of
    /// that is outside its `owns`. A git that cannot say is a warning, not the session's
    /// end: the record is for people, and the task's outcome does not depend on it.
    fn refresh_worktree(&mut self, t: TaskIx) -> Result<()> {
        let Some(w) = &self.worktrees else {
            return Ok(());
        };
        let ready = match &w.ready[t] {
            Some(r) => r.clone(),
            None => {
                // Ended before this orchestrator made or met it (a resume): if it is there.
                let r = self.locate_worktree(t)?;
                if !Self::worktree_made(&r.path)? {
                    return Ok(());
                }
                r
            }
        };
        let task = &self.engine.plan().tasks[t];
        let changed = match worktree::changed(&ready.path, &ready.base) {
            Ok(c) => c,
            Err(e) => {
                let id = &task.id;
                warn(format_args!(
                    "task {id}: cannot list what its worktree changed: {e}"
                ));
                return Ok(());
            }
        };
        let plan_dir = &self.worktrees.as_ref().expect("checked").setup.plan_dir;
        let outside = worktree::outside_owns(&changed, &task.owns, &ready.repo, plan_dir);
        let (changed, cut_changed) = worktree::cut(changed);
        let (outside_owns, cut_outside) = worktree::cut(outside);
        let record = WorktreeRecord {
            task: task.id.clone(),
            repo: ready.repo.clone(),
            branch: ready.branch.clone(),
            base: ready.base.clone(),
            path: ready.path.clone(),
            cwd: ready.cwd.clone(),
            changed,
            outside_owns,
            omitted: cut_changed + cut_outside,
            updated_at: proto::now_rfc3339(),
        };
        let path = self.session.worktree_json(&record.task);
        if let Some(w) = self.worktrees.as_mut() {
            w.ready[t] = Some(ready);
        }
        self.ensure_task_dir(t)?;
        self.fs.write_json(&path, &record)
    }
}
