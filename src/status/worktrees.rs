//! What `status` shows of the git worktrees of tasks with `worktree = true`, from each
//! task's `tasks/<id>/worktree.json`: its branch and how many files it changed, the files
//! it changed outside its `owns`, and the files more than one task changed (they will
//! conflict when the branches are merged, whatever order the tasks ran in).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use super::{Snapshot, TaskView};
use crate::fsio;
use crate::proto::WorktreeRecord;
use crate::session::Session;

/// A task's worktree in `status --json` (`"worktree"`).
#[derive(Debug, Clone, Serialize)]
pub struct WorktreeView {
    pub branch: String,
    pub base: String,
    pub path: PathBuf,
    /// Files changed since `base`, relative to the repository's top level.
    pub changed: Vec<String>,
    /// Those of `changed` no `owns` pattern of the task matches.
    pub outside_owns: Vec<String>,
    /// Names the record left out of its lists (it keeps them small).
    #[serde(skip_serializing_if = "is_zero")]
    pub omitted: usize,
    /// The main checkout it belongs to: files of different repositories never conflict.
    #[serde(skip)]
    pub repo: PathBuf,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A file that more than one task's worktree changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    pub file: String,
    /// In plan order.
    pub tasks: Vec<String>,
}

/// Task `id`'s worktree as its record has it: `Ok(None)` before it is made.
pub(crate) fn read(s: &Session, id: &str) -> crate::Result<Option<WorktreeView>> {
    let record: Option<WorktreeRecord> = fsio::read_json(&s.worktree_json(id))?;
    Ok(record.map(|r| WorktreeView {
        branch: r.branch,
        base: r.base,
        path: r.path,
        changed: r.changed,
        outside_owns: r.outside_owns,
        omitted: r.omitted,
        repo: r.repo,
    }))
}

/// The files that the worktrees of more than one of `tasks` changed, sorted by file.
pub(crate) fn conflicts(tasks: &[TaskView]) -> Vec<Conflict> {
    let mut by_file: BTreeMap<(&str, &PathBuf), Vec<String>> = BTreeMap::new();
    for t in tasks {
        let Some(w) = &t.worktree else { continue };
        for f in &w.changed {
            by_file.entry((f, &w.repo)).or_default().push(t.id.clone());
        }
    }
    by_file
        .into_iter()
        .filter(|(_, tasks)| tasks.len() > 1)
        .map(|((file, _), tasks)| Conflict {
            file: file.to_string(),
            tasks,
        })
        .collect()
}

/// The text of `status`: a line per task that has a worktree, then the files changed
/// by more than one task.
pub(super) fn lines(snap: &Snapshot, out: &mut String) {
    let mut first = true;
    for t in &snap.tasks {
        let Some(w) = &t.worktree else { continue };
        if std::mem::take(&mut first) {
            out.push('\n');
        }
        let n = w.changed.len() + w.omitted;
        let _ = write!(
            out,
            "worktree of {}: branch {}, {n} file{} changed",
            t.id,
            w.branch,
            if n == 1 { "" } else { "s" }
        );
        if !w.outside_owns.is_empty() {
            let _ = write!(out, "; OUTSIDE its owns: {}", w.outside_owns.join(", "));
        }
        if !fsio::exists(&w.path) {
            out.push_str(" (worktree removed; the branch is kept)");
        }
        out.push('\n');
    }
    for c in snap.conflicts.iter().flatten() {
        let _ = writeln!(
            out,
            "CHANGED BY MORE THAN ONE TASK: {} ({})",
            c.file,
            c.tasks.join(", ")
        );
    }
}
