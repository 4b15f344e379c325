//! `worktree = true`: each task in a git worktree of its own, on branch
//! `maestro/SESSION/TASK` from the repository's HEAD at the session's start, the main
//! checkout untouched; `worktree.json` and `status` say what each task changed (files
//! changed by two tasks, files outside a task's `owns`); retries and resumed sessions
//! reuse a worktree as it was left; `clean --worktrees` removes them, keeping the
//! branches; a worktree task outside a repository is refused with nothing made.
//!
//! Every git command here runs to its end (`output`), and with no global or system
//! configuration, a fixed identity and no automatic gc (which could detach a process
//! that outlives the test): the tests work on a fresh machine and leave nothing running.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};

use crate::util::*;

/// The environment of the test's git commands, and of the sessions' (their tasks commit).
pub const GIT_ENV: &[(&str, &str)] = &[
    ("GIT_CONFIG_GLOBAL", "/dev/null"),
    ("GIT_CONFIG_NOSYSTEM", "1"),
    ("GIT_AUTHOR_NAME", "maestro test"),
    ("GIT_AUTHOR_EMAIL", "test@example.invalid"),
    ("GIT_COMMITTER_NAME", "maestro test"),
    ("GIT_COMMITTER_EMAIL", "test@example.invalid"),
    ("GIT_CONFIG_COUNT", "2"),
    ("GIT_CONFIG_KEY_0", "gc.auto"),
    ("GIT_CONFIG_VALUE_0", "0"),
    ("GIT_CONFIG_KEY_1", "maintenance.auto"),
    ("GIT_CONFIG_VALUE_1", "false"),
];

/// `git -C DIR ARGS`, which must succeed; its stdout, trimmed.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .envs(GIT_ENV.iter().copied())
        .output()
        .expect("run git");
    assert!(o.status.success(), "git {args:?}: {}", stderr(&o));
    stdout(&o).trim_end().to_string()
}

/// A repository at `repo/` in the sandbox with one commit (`README`, `common.txt`,
/// `sub/keep`); its path (links resolved) and that commit.
pub fn repo(sb: &Sandbox) -> (PathBuf, String) {
    let r = sb.path().join("repo");
    fs::create_dir_all(r.join("sub")).unwrap();
    git(&r, &["init", "-q", "-b", "main"]);
    fs::write(r.join("README"), "hello\n").unwrap();
    fs::write(r.join("common.txt"), "base\n").unwrap();
    fs::write(r.join("sub/keep"), "").unwrap();
    git(&r, &["add", "-A"]);
    git(&r, &["commit", "-qm", "base"]);
    let base = git(&r, &["rev-parse", "HEAD"]);
    (fs::canonicalize(&r).unwrap(), base)
}

/// `orchestrator ARGS` in the sandbox, with [`GIT_ENV`], to its end.
fn orch(sb: &Sandbox, args: &[&str]) -> Output {
    let mut c = sb.orch();
    c.args(args).envs(GIT_ENV.iter().copied());
    run_with_deadline(c, Duration::from_secs(120))
}

fn task<'a>(status: &'a Value, id: &str) -> &'a Value {
    let tasks = status["tasks"].as_array().unwrap();
    tasks.iter().find(|t| t["id"] == id).unwrap()
}

/// Two worktree tasks that each commit a file of their own and change `common.txt` (one
/// commits it, the other leaves it uncommitted, outside its `owns`), one of them in a
/// subdirectory, and a task that opts out.
const PLAN: &str = r#"name = "wt"
workers = 2
[defaults]
worktree = true
cwd = "repo"
[[task]]
id = "a"
owns = ["repo/a/**", "repo/common.txt"]
run = "mkdir a && echo a > a/x && echo a >> common.txt && git add -A && git commit -qm a"
[[task]]
id = "b..v1"
cwd = "repo/sub"
owns = ["repo/b/**"]
run = """pwd > "$OUT/b-pwd" && mkdir ../b && echo b > ../b/y && git add ../b && git commit -qm b && echo b >> ../common.txt"""
[[task]]
id = "c"
worktree = false
run = 'pwd > "$OUT/c-pwd"'
"#;

#[test]
fn tasks_work_in_their_own_worktrees_and_status_says_what_they_changed() {
    let sb = Sandbox::new();
    let (repo, base) = repo(&sb);
    let plan = sb.write("p.toml", PLAN);
    let o = orch(
        &sb,
        &[
            "run",
            plan.to_str().unwrap(),
            "--launcher",
            "background",
            "-q",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // A clean checkout: no warning.
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    let session = session_of(&o);
    let sid = session_id(&session);
    let (wa, wb) = (session.join("worktrees/a"), session.join("worktrees/b..v1"));
    let (ba, bb) = (format!("maestro/{sid}/a"), format!("maestro/{sid}/b.+v1"));

    // The main checkout is as it was.
    assert_eq!(git(&repo, &["status", "--porcelain"]), "");
    assert_eq!(git(&repo, &["rev-parse", "HEAD"]), base);
    assert_eq!(git(&repo, &["branch", "--show-current"]), "main");
    // Each task's branch is one commit on the base, checked out in its worktree.
    for (branch, wt) in [(&ba, &wa), (&bb, &wb)] {
        assert_eq!(git(&repo, &["rev-parse", &format!("{branch}~1")]), base);
        assert_eq!(git(wt, &["branch", "--show-current"]), *branch);
    }
    let listed = git(&repo, &["worktree", "list", "--porcelain"]);
    for (branch, wt) in [(&ba, &wa), (&bb, &wb)] {
        let entry = format!("worktree {}\nHEAD ", wt.display());
        assert!(listed.contains(&entry), "{listed}");
        assert!(
            listed.contains(&format!("branch refs/heads/{branch}")),
            "{listed}"
        );
    }
    // The cwd is mapped into the worktree; a task without a worktree runs in the checkout.
    let out = sb.out();
    assert_eq!(
        fs::read_to_string(out.join("b-pwd")).unwrap().trim(),
        wb.join("sub").display().to_string()
    );
    assert_eq!(
        fs::canonicalize(fs::read_to_string(out.join("c-pwd")).unwrap().trim()).unwrap(),
        repo
    );
    assert!(!session.join("worktrees/c").exists());
    assert!(!session.join("tasks/c/worktree.json").exists());

    // worktree.json: committed and uncommitted changes, and what is outside owns.
    let rec = read_json(&session.join("tasks/a/worktree.json")).unwrap();
    assert_eq!(rec["branch"], ba.as_str());
    assert_eq!(rec["base"], base.as_str());
    assert_eq!(rec["repo"], repo.display().to_string());
    assert_eq!(rec["path"], wa.display().to_string());
    assert_eq!(rec["changed"], json!(["a/x", "common.txt"]));
    assert_eq!(rec["outside_owns"], json!([]));
    let rec = read_json(&session.join("tasks/b..v1/worktree.json")).unwrap();
    assert_eq!(rec["cwd"], wb.join("sub").display().to_string());
    assert_eq!(rec["changed"], json!(["b/y", "common.txt"]));
    assert_eq!(rec["outside_owns"], json!(["common.txt"]));
    assert_eq!(git(&wb, &["status", "--porcelain"]), " M common.txt");

    // status flags the file both changed and the one outside owns.
    let st = status_json(&sb, &session);
    assert_eq!(
        task(&st, "b..v1")["worktree"],
        json!({"branch": bb, "base": base, "path": wb, "changed": ["b/y", "common.txt"],
               "outside_owns": ["common.txt"]})
    );
    assert_eq!(task(&st, "a")["worktree"]["outside_owns"], json!([]));
    assert!(task(&st, "c").get("worktree").is_none());
    assert_eq!(
        st["conflicts"],
        json!([{"file": "common.txt", "tasks": ["a", "b..v1"]}])
    );
    let text = stdout(&sb.run(&["status", &sid]));
    for line in [
        format!("worktree of a: branch {ba}, 2 files changed"),
        format!("worktree of b..v1: branch {bb}, 2 files changed; OUTSIDE its owns: common.txt"),
        "CHANGED BY MORE THAN ONE TASK: common.txt (a, b..v1)".to_string(),
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
    }
    let made: Vec<Value> = events(&session)
        .into_iter()
        .filter(|e| e["event"] == "worktree_created")
        .collect();
    assert_eq!(made.len(), 2, "{made:?}");

    // clean: the worktrees go, the branches stay, the checkout is as it was.
    let o = orch(&sb, &["clean", &sid, "--worktrees"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!(
            "removed the worktree of a ({}); branch {ba} is kept\n\
             removed the worktree of b..v1 ({}); branch {bb} is kept\n",
            wa.display(),
            wb.display()
        )
    );
    assert!(!wa.exists() && !wb.exists());
    assert_eq!(
        git(&repo, &["worktree", "list", "--porcelain"])
            .matches("worktree ")
            .count(),
        1
    );
    for branch in [&ba, &bb] {
        git(&repo, &["rev-parse", "--verify", "-q", branch]);
    }
    assert_eq!(git(&repo, &["status", "--porcelain"]), "");
    let text = stdout(&sb.run(&["status", &sid]));
    assert!(
        text.contains(&format!(
            "worktree of a: branch {ba}, 2 files changed (worktree removed; the branch is kept)"
        )),
        "{text}"
    );
    // Nothing left to clean.
    let o = orch(&sb, &["clean", &sid, "--worktrees"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!("session {sid} has no worktrees to remove\n")
    );
}

/// A task counting its attempts in a committed file: its first attempt waits for
/// `$OUT/go`; it succeeds at the third line, so only if every attempt found the
/// worktree as the one before left it. It also fails if the checkout's uncommitted file
/// reached its worktree.
const COUNTING: &str = r#"name = "count"
[[task]]
id = "a"
cwd = "repo"
worktree = true
run = """
test ! -e wip.txt || exit 9
echo "$MAESTRO_ATTEMPT" >> attempts.txt && git add attempts.txt && git commit -qm "attempt $MAESTRO_ATTEMPT" || exit 8
if [ "$MAESTRO_ATTEMPT" = 1 ]; then while [ ! -e "$OUT/go" ]; do sleep 0.05; done; fi
[ "$(wc -l < attempts.txt)" -ge 3 ]
"""
"#;

#[test]
fn worktrees_are_reused_by_resumes_remade_after_clean_and_never_cleaned_live() {
    let mut sb = Sandbox::new();
    let (repo, base) = repo(&sb);
    // Uncommitted work in the main checkout: warned about, and not in the worktree.
    fs::write(repo.join("wip.txt"), "mine\n").unwrap();
    let plan = sb.write("p.toml", COUNTING);
    let session = sb.start_with(
        &["run", plan.to_str().unwrap(), "--launcher", "background"],
        GIT_ENV,
    );
    let sid = session_id(&session);
    wait_started(&session, "a", 1);
    // A live session's worktrees are not removed.
    let o = orch(&sb, &["clean", &sid, "--worktrees"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        format!(
            "error: session {sid} is live (its orchestrator or a worker runs): stop it first \
             (`orchestrator stop {sid}` or `orchestrator cancel {sid}`), then clean\n"
        )
    );
    touch(&sb, "go");
    assert_eq!(sb.wait_last(Duration::from_secs(60)), 1, "attempt 1 fails");
    let warned = fs::read_to_string(sb.path().join("orchestrator.stderr")).unwrap();
    let line = format!(
        "warning: {} has 1 uncommitted change: the worktrees start from its last commit ({}) \
         and do not have it",
        repo.display(),
        &base[..12]
    );
    assert!(
        warned.lines().any(|l| l == line),
        "{line:?} not in\n{warned}"
    );
    let dirty: Vec<Value> = events(&session)
        .into_iter()
        .filter(|e| e["event"] == "checkout_dirty")
        .collect();
    assert_eq!(dirty.len(), 1);
    assert_eq!(
        (&dirty[0]["repo"], &dirty[0]["base"], &dirty[0]["changed"]),
        (&json!(repo), &json!(base), &json!(1))
    );

    // A resumed orchestrator (retry) finds the worktree as attempt 1 left it.
    let retry = ["retry", sid.as_str(), "a", "--launcher", "background", "-q"];
    let o = orch(&sb, &retry);
    assert_eq!(o.status.code(), Some(1), "attempt 2 fails: {}", stderr(&o));
    let wt = session.join("worktrees/a");
    assert_eq!(
        fs::read_to_string(wt.join("attempts.txt")).unwrap(),
        "1\n2\n"
    );

    // Removed, then made again from its branch: attempt 3 has what 1 and 2 committed.
    let o = orch(&sb, &["clean", &sid, "--worktrees"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!wt.exists());
    let o = orch(&sb, &retry);
    assert_eq!(
        o.status.code(),
        Some(0),
        "attempt 3 succeeds: {}",
        stderr(&o)
    );
    assert_eq!(
        fs::read_to_string(wt.join("attempts.txt")).unwrap(),
        "1\n2\n3\n"
    );
    let made = events(&session)
        .into_iter()
        .filter(|e| e["event"] == "worktree_created")
        .count();
    assert_eq!(made, 2, "made once, then again after the clean");
    let log = git(&repo, &["log", "--format=%s", &format!("maestro/{sid}/a")]);
    assert_eq!(log, "attempt 3\nattempt 2\nattempt 1\nbase");
    // The checkout still has its own uncommitted file and nothing else.
    assert_eq!(git(&repo, &["status", "--porcelain"]), "?? wip.txt");
    assert_eq!(git(&repo, &["rev-parse", "HEAD"]), base);
    let o = orch(&sb, &["clean", &sid, "--worktrees"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// A worktree task outside any repository (or in one without a commit) is refused by
/// `run` with nothing made, and by `plan` and the dry run the same way.
#[test]
fn a_worktree_task_outside_a_repository_is_refused() {
    let sb = Sandbox::new();
    let plain = sb.path().join("plain");
    fs::create_dir(&plain).unwrap();
    let plan = sb.write(
        "p.toml",
        "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"true\"\n[[task]]\nid = \"x.y\"\n\
         run = \"true\"\ncwd = \"plain\"\nworktree = true\n",
    );
    let p = plan.to_str().unwrap();
    // Git looks no higher than the sandbox, wherever the temporary directory is.
    let ceiling = sb.path().to_str().unwrap();
    let expected = format!(
        "error: task \"x.y\": worktree = true, but its cwd \"{}\" is not in a git repository\n",
        plain.display()
    );
    for args in [
        &["run", p, "--launcher", "background"][..],
        &["run", p, "--launcher", "background", "--dry-run"],
        &["plan", p],
    ] {
        let mut c = sb.orch();
        c.args(args)
            .envs(GIT_ENV.iter().copied())
            .env("GIT_CEILING_DIRECTORIES", ceiling);
        let o = run_with_deadline(c, Duration::from_secs(60));
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o), expected, "{args:?}");
        assert_eq!(stdout(&o), "", "{args:?}");
    }
    assert!(!sb.sessions().exists(), "nothing is made");
    // A repository without a commit has no HEAD to start from.
    git(&plain, &["init", "-q"]);
    let o = orch(&sb, &["run", p, "--launcher", "background"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        format!(
            "error: task \"x.y\": worktree = true, but its repository \"{}\" has no commit yet\n",
            fs::canonicalize(&plain).unwrap().display()
        )
    );
    assert!(!sb.sessions().exists(), "nothing is made");
}
