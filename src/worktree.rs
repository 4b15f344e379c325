//! Git worktrees for tasks with `worktree = true`: which repository a task's `cwd` is in
//! and where its HEAD is when a session starts, the branch each task works on, making and
//! removing worktrees, which files a task changed (and which of them are outside its
//! `owns`), and `orchestrator clean --worktrees`.
//!
//! Every git command runs to its end here (`Command::output`), one at a time: git locks
//! the repository while it changes it, and a command left behind would outlive what
//! started it. Commands that only look (`status`, `diff`) pass `--no-optional-locks`, so
//! that looking never takes the index lock from a person (or a task) working there.
//! Each runs with `LC_ALL=C`, since one of git's messages is read ("not a git
//! repository"), and without `GIT_DIR`, `GIT_WORK_TREE`, `GIT_INDEX_FILE` and
//! `GIT_COMMON_DIR`, which would point it at another repository than `-C` names.
//!
//! The orchestrator's shell calls this (`orchestrator/worktrees.rs`), never the engine:
//! making a worktree is, like making a task's directory, something the shell does before
//! it hands a task out.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::fsio;
use crate::plan::Plan;
use crate::plan::scopes::Pattern;
use crate::proto::{RepoBase, SessionInfo, WORKTREE_NAMES_CAP, WorktreeRecord};
use crate::session::Session;

/// What a git command did: its exit code (`None`: killed by a signal), its output, and
/// what it said on stderr.
struct Ran {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

/// Run `git -C DIR ARGS...` to its end; `Err` only when git could not be started.
fn run(dir: &Path, args: &[&OsStr]) -> std::result::Result<Ran, String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("LC_ALL", "C")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_COMMON_DIR")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    Ok(Ran {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

/// [`run`], and its output only if it exited 0; else the command and why, for a message.
fn ok(dir: &Path, args: &[&OsStr]) -> std::result::Result<Vec<u8>, String> {
    let r = run(dir, args)?;
    if r.code == Some(0) {
        return Ok(r.stdout);
    }
    Err(failure(dir, args, r))
}

/// What a command that failed said: the command, and git's words (or its exit code).
fn failure(dir: &Path, args: &[&OsStr], r: Ran) -> String {
    let line: Vec<String> = args.iter().map(|a| a.to_string_lossy().into()).collect();
    let why = match (r.stderr.is_empty(), r.code) {
        (false, _) => r.stderr,
        (true, Some(c)) => format!("exit code {c}"),
        (true, None) => "killed by a signal".into(),
    };
    format!(
        "`git -C {} {}` failed: {why}",
        dir.display(),
        line.join(" ")
    )
}

/// [`ok`], tried again (three times at most, a little later each time) when git failed
/// on a lock another git holds: a task committing in another worktree of the same
/// repository takes some of the locks `worktree add` and `prune` need, and git gives up
/// at once where waiting a moment would do.
fn ok_retrying(dir: &Path, args: &[&OsStr]) -> std::result::Result<Vec<u8>, String> {
    let mut tries = 0;
    loop {
        match ok(dir, args) {
            Err(e) if tries < 3 && e.contains(".lock") => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(100 * tries));
            }
            r => return r,
        }
    }
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// The first line of a command's output, as a path (git prints paths as bytes).
fn first_line(bytes: &[u8]) -> OsString {
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    OsString::from_vec(line.to_vec())
}

/// The top level of the repository whose work tree holds `dir` (links resolved), `None`
/// when `dir` is in no repository; `Err` when git could not tell (not installed, a
/// repository it refuses to use, ...).
pub fn toplevel(dir: &Path) -> std::result::Result<Option<PathBuf>, String> {
    let args = [os("rev-parse"), os("--show-toplevel")];
    let r = run(dir, &args)?;
    let top = match r.code {
        Some(0) => PathBuf::from(first_line(&r.stdout)),
        _ if r.stderr.contains("not a git repository") => return Ok(None),
        _ => return Err(failure(dir, &args, r)),
    };
    // Git resolves links already; canonical here too, so that prefixes compare.
    Ok(Some(std::fs::canonicalize(&top).unwrap_or(top)))
}

/// The commit the HEAD of repository `top` is at, `None` before its first commit.
pub fn head(top: &Path) -> std::result::Result<Option<String>, String> {
    let args = [
        os("rev-parse"),
        os("--verify"),
        os("--quiet"),
        os("HEAD^{commit}"),
    ];
    let r = run(top, &args)?;
    match r.code {
        Some(0) => Ok(Some(
            first_line(&r.stdout).to_string_lossy().trim().to_string(),
        )),
        Some(1) => Ok(None),
        _ => Err(failure(top, &args, r)),
    }
}

/// How a refusal names the task: `task "a": worktree = true, but ...`.
fn refuse(task: &str, why: String) -> Error {
    Error::Usage(format!("task {task:?}: worktree = true, but {why}"))
}

fn not_in_repo(task: &str, cwd: &Path) -> Error {
    let cwd = cwd.display().to_string();
    refuse(task, format!("its cwd {cwd:?} is not in a git repository"))
}

/// The repository of each task with `worktree = true` and the commit its HEAD is at now,
/// each repository once, in the order of its first task: what the session records as
/// the base of its worktrees. A task outside any repository, a repository with no commit
/// yet, or no git at all refuses the run (exit 2), before anything is made.
pub fn discover(plan: &Plan) -> Result<Vec<RepoBase>> {
    let mut repos: Vec<RepoBase> = Vec::new();
    let mut seen: BTreeSet<&Path> = BTreeSet::new();
    for t in plan.tasks.iter().filter(|t| t.worktree) {
        if !seen.insert(&t.cwd) {
            continue;
        }
        let top = match toplevel(&t.cwd) {
            Ok(Some(top)) => top,
            Ok(None) => return Err(not_in_repo(&t.id, &t.cwd)),
            Err(e) => {
                let cwd = t.cwd.display().to_string();
                let why = format!("git cannot tell which repository its cwd {cwd:?} is in: {e}");
                return Err(refuse(&t.id, why));
            }
        };
        if repos.iter().any(|r| r.repo == top) {
            continue;
        }
        let top_text = top.display().to_string();
        let base = match head(&top) {
            Ok(Some(base)) => base,
            Ok(None) => {
                let why = format!("its repository {top_text:?} has no commit yet");
                return Err(refuse(&t.id, why));
            }
            Err(e) => return Err(refuse(&t.id, e)),
        };
        repos.push(RepoBase { repo: top, base });
    }
    Ok(repos)
}

/// [`discover`]'s refusal of a task outside any repository, without starting git: a
/// `.git` in the task's `cwd` or above it. For `plan` and `run --dry-run`, which start no
/// process; `run` asks git itself.
pub fn check_without_git(plan: &Plan) -> Result<()> {
    let mut seen: BTreeSet<&Path> = BTreeSet::new();
    for t in plan.tasks.iter().filter(|t| t.worktree) {
        if !seen.insert(&t.cwd) {
            continue;
        }
        let dir = std::fs::canonicalize(&t.cwd).unwrap_or_else(|_| t.cwd.clone());
        if !dir.ancestors().any(|d| d.join(".git").exists()) {
            return Err(not_in_repo(&t.id, &t.cwd));
        }
    }
    Ok(())
}

/// A session or task id as one component of a ref name (`git check-ref-format`): ids
/// are `[A-Za-z0-9._-]` already, so only dots can make one invalid, at the start, after
/// another dot (`..`), at the end, or before a final `lock` (`.lock`). Each such dot
/// becomes `+`, which no id has, so two ids never give the same name.
pub fn ref_component(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    let mut last = None;
    for c in id.chars() {
        let bad_dot = c == '.' && (last.is_none() || last == Some('.'));
        out.push(if bad_dot { '+' } else { c });
        last = Some(c);
    }
    if out.ends_with('.') {
        out.pop();
        out.push('+');
    }
    if out.ends_with(".lock") {
        out.truncate(out.len() - ".lock".len());
        out.push_str("+lock");
    }
    out
}

/// The branch task `task` of session `session` works on: `maestro/SESSION/TASK`.
pub fn branch(session: &str, task: &str) -> String {
    format!("maestro/{}/{}", ref_component(session), ref_component(task))
}

/// The path of each entry of `git status --porcelain -z` (with `--no-renames`, one path
/// per entry: `XY PATH`), with whether it is untracked.
fn status_entries(out: &[u8]) -> impl Iterator<Item = (bool, String)> + '_ {
    out.split(|&b| b == 0).filter(|e| e.len() > 3).map(|e| {
        (
            e.starts_with(b"??"),
            String::from_utf8_lossy(&e[3..]).into(),
        )
    })
}

/// How many uncommitted changes `git status` lists in the main checkout `top`, leaving
/// out the sessions directory `sessions` (and an untracked directory holding it): the
/// sessions maestro writes there are no one's uncommitted work.
pub fn uncommitted(top: &Path, sessions: &Path) -> std::result::Result<usize, String> {
    let args = [
        os("--no-optional-locks"),
        os("status"),
        os("--porcelain"),
        os("-z"),
        os("--no-renames"),
    ];
    let out = ok(top, &args)?;
    let ours = |untracked: bool, p: &str| {
        let abs = top.join(p);
        abs.starts_with(sessions) || (untracked && sessions.starts_with(&abs))
    };
    Ok(status_entries(&out).filter(|(u, p)| !ours(*u, p)).count())
}

/// Make the worktree `path` of repository `top` on `branch`: a new branch from `base`,
/// or the branch as it is when it exists already (its worktree was removed by `clean`,
/// or a crash came between git making the branch and the worktree).
pub fn add(top: &Path, path: &Path, branch: &str, base: &str) -> std::result::Result<(), String> {
    let head = format!("refs/heads/{branch}");
    let exists = run(
        top,
        &[os("rev-parse"), os("--verify"), os("--quiet"), os(&head)],
    )?;
    if exists.code == Some(0) {
        // A worktree whose directory went away without git knowing still holds its
        // branch (git refuses to check a branch out twice) until it is pruned.
        ok_retrying(top, &[os("worktree"), os("prune")])?;
        ok_retrying(
            top,
            &[os("worktree"), os("add"), path.as_os_str(), os(branch)],
        )?;
    } else {
        let args = [
            os("worktree"),
            os("add"),
            os("-b"),
            os(branch),
            path.as_os_str(),
            os(base),
        ];
        ok_retrying(top, &args)?;
    }
    Ok(())
}

/// The files changed in the worktree `path` since `base`, relative to the repository's
/// top level, sorted, each once: what `git diff BASE` lists (committed on the branch,
/// or changed in the work tree or the index since), and what `git status` lists
/// (untracked files too, each one, not their directory). Renames count as a deletion
/// and an addition, so both names are there.
pub fn changed(path: &Path, base: &str) -> std::result::Result<Vec<String>, String> {
    let diff = [
        os("--no-optional-locks"),
        os("diff"),
        os("--name-only"),
        os("-z"),
        os("--no-renames"),
        os("--no-relative"),
        os(base),
        os("--"),
    ];
    let mut files: BTreeSet<String> = ok(path, &diff)?
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into())
        .collect();
    let status = [
        os("--no-optional-locks"),
        os("status"),
        os("--porcelain"),
        os("-z"),
        os("--no-renames"),
        os("--untracked-files=all"),
    ];
    files.extend(status_entries(&ok(path, &status)?).map(|(_, p)| p));
    Ok(files.into_iter().collect())
}

/// Those of `changed` (relative to repository `repo`) that none of `owns` (relative to
/// the plan's directory `plan_dir`) matches; a file outside `plan_dir` is outside every
/// pattern. Empty when the task declares no `owns`: it claimed no scope to stay in.
pub fn outside_owns(
    changed: &[String],
    owns: &[String],
    repo: &Path,
    plan_dir: &Path,
) -> Vec<String> {
    if owns.is_empty() {
        return Vec::new();
    }
    let patterns: Vec<Pattern> = owns.iter().filter_map(|p| Pattern::parse(p).ok()).collect();
    let inside = |file: &String| {
        let abs = repo.join(file);
        abs.strip_prefix(plan_dir).is_ok_and(|rel| {
            let rel = rel.to_string_lossy();
            patterns.iter().any(|p| p.matches(&rel))
        })
    };
    changed.iter().filter(|f| !inside(f)).cloned().collect()
}

/// The first names of `names` that take at most [`WORKTREE_NAMES_CAP`] bytes in the
/// record, and how many did not fit. Counted as written (a name escaped as JSON, its
/// indent, comma and newline): two lists that full stay far under the 16 MiB cap.
pub fn cut(mut names: Vec<String>) -> (Vec<String>, usize) {
    let mut bytes = 0;
    let keep = names
        .iter()
        .position(|n| {
            let quoted = serde_json::to_string(n).map_or(6 * n.len() + 2, |q| q.len());
            bytes += quoted + 6;
            bytes > WORKTREE_NAMES_CAP
        })
        .unwrap_or(names.len());
    let omitted = names.len() - keep;
    names.truncate(keep);
    (names, omitted)
}

/// `orchestrator clean SESSION --worktrees`: remove each worktree of the session's tasks
/// (`git worktree remove --force`), then `git worktree prune` in each repository; the
/// branches stay. Refused while the session is live (exit 2). Returns the exit code: 1
/// when some worktree could not be removed (each failure said on stderr).
pub fn clean(s: &Session) -> Result<i32> {
    let id = s.id();
    let live = crate::orchestrator::orchestrator_alive(s)
        || s.worker_ids()?
            .iter()
            .any(|w| crate::orchestrator::worker_alive(s, w));
    if live {
        return Err(Error::Usage(format!(
            "session {id} is live (its orchestrator or a worker runs): stop it first \
             (`orchestrator stop {id}` or `orchestrator cancel {id}`), then clean"
        )));
    }
    let plan = Plan::read(&s.plan_json())?
        .ok_or_else(|| Error::Session(format!("{}: missing", s.plan_json().display())))?;
    let info: Option<SessionInfo> = fsio::read_json(&s.session_json())?;
    let recorded: Vec<PathBuf> = info
        .and_then(|i| i.worktrees)
        .map(|w| w.repos.into_iter().map(|r| r.repo).collect())
        .unwrap_or_default();
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    let mut code = 0;
    let mut removed = 0;
    for t in plan.tasks.iter().filter(|t| t.worktree) {
        let path = s.worktree_dir(&t.id);
        if !fsio::exists(&path) {
            continue;
        }
        let record: Option<WorktreeRecord> =
            fsio::read_json(&s.worktree_json(&t.id)).ok().flatten();
        let branch = record
            .as_ref()
            .map_or_else(|| branch(id, &t.id), |r| r.branch.clone());
        // The repository its record names; without a record, each the session knows,
        // until one has it.
        let repos = record.map_or_else(|| recorded.clone(), |r| vec![r.repo]);
        let mut done = Err("no repository is recorded for it".to_string());
        for top in &repos {
            done = ok_retrying(
                top,
                &[
                    os("worktree"),
                    os("remove"),
                    os("--force"),
                    path.as_os_str(),
                ],
            );
            if done.is_ok() {
                break;
            }
        }
        match done {
            Ok(_) => {
                removed += 1;
                let _ = writeln!(
                    out,
                    "removed the worktree of {} ({}); branch {branch} is kept",
                    t.id,
                    path.display()
                );
            }
            Err(e) => {
                code = 1;
                let _ = writeln!(err, "error: the worktree of {}: {e}", t.id);
            }
        }
    }
    for top in &recorded {
        if let Err(e) = ok_retrying(top, &[os("worktree"), os("prune")]) {
            code = 1;
            let _ = writeln!(err, "error: {e}");
        }
    }
    if removed == 0 && code == 0 {
        let _ = writeln!(out, "session {id} has no worktrees to remove");
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every mapped id is a valid ref component by git's own rules (when git is here).
    #[test]
    fn branch_names_are_valid_refs() {
        let ids = [
            "a",
            "a.b",
            "a..b",
            "a...b",
            "a.",
            "a..",
            "x.lock",
            "x..lock",
            "x.lock.",
            "lock",
            ".lock",
            "-x",
            "a-b_c.D9",
            "s-20260101-000000-1",
        ];
        let mapped: Vec<String> = ids.iter().map(|i| ref_component(i)).collect();
        assert_eq!(
            mapped,
            [
                "a",
                "a.b",
                "a.+b",
                "a.++b",
                "a+",
                "a.+",
                "x+lock",
                "x.+lock",
                "x.lock+",
                "lock",
                "+lock",
                "-x",
                "a-b_c.D9",
                "s-20260101-000000-1"
            ]
        );
        // `+` is no id's: two ids never share a branch.
        let unique: BTreeSet<&String> = mapped.iter().collect();
        assert_eq!(unique.len(), ids.len());
        for id in ids {
            let b = branch("plan-20260101-000000-1", id);
            let r = Command::new("git")
                .args(["check-ref-format", "--branch", &b])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if let Ok(st) = r {
                assert!(st.success(), "{b} is refused by git check-ref-format");
            }
        }
    }

    #[test]
    fn outside_owns_maps_repository_paths_to_the_plans_directory() {
        let changed: Vec<String> = ["a/x", "shared.txt", "README"].map(String::from).into();
        let owns = ["repo/a/**".to_string(), "repo/shared.txt".to_string()];
        let (repo, plan) = (Path::new("/s/repo"), Path::new("/s"));
        assert_eq!(outside_owns(&changed, &owns, repo, plan), ["README"]);
        assert!(outside_owns(&changed, &[], repo, plan).is_empty());
        // A plan beside the repository: nothing in the repository is under its owns.
        let elsewhere = Path::new("/elsewhere");
        assert_eq!(outside_owns(&changed, &owns, repo, elsewhere).len(), 3);
    }

    #[test]
    fn long_lists_are_cut_and_counted() {
        let names: Vec<String> = (0..3).map(|i| format!("f{i}")).collect();
        assert_eq!(cut(names.clone()), (names, 0));
        let big = "x".repeat(1024 * 1024);
        let (kept, omitted) = cut(vec![big.clone(); 6]);
        assert_eq!((kept.len(), omitted), (3, 3));
    }

    #[test]
    fn status_entries_keep_paths_and_untracked() {
        let out = b" M a b\0?? new/f\0A  c\0";
        let v: Vec<(bool, String)> = status_entries(out).collect();
        assert_eq!(
            v,
            [
                (false, "a b".to_string()),
                (true, "new/f".to_string()),
                (false, "c".to_string())
            ]
        );
    }
}
