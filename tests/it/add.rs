//! `orchestrator add`: tasks added to a running session run after what they name, show in
//! `status`, the report and `plan.json`; a refused file or session exits 2 with what to
//! do; a resume drops tasks no journal line vouches for.

use std::time::Duration;

use crate::util::*;

/// `hold` waits for `$OUT/go`; `done` succeeds at once.
fn base() -> String {
    format!(
        "name = \"grow\"\nworkers = 2\n\
         [[task]]\nid = \"hold\"\nrun = '{}'\n\
         [[task]]\nid = \"done\"\nrun = \"true\"\n",
        wait_for_file("go")
    )
}

fn add(sb: &Sandbox, session: &std::path::Path, file: &str, text: &str) -> std::process::Output {
    let f = sb.write(file, text);
    sb.run(&["add", session.to_str().unwrap(), f.to_str().unwrap()])
}

#[test]
fn added_tasks_run_after_what_they_name_and_are_reported() {
    let mut sb = Sandbox::new();
    let s = sb.start_plan("plan.toml", &base(), &["-q"]);
    wait_started(&s, "hold", 1);
    wait_until(Duration::from_secs(20), "done decided", || {
        outcome_exists(&s, "done")
    });
    let f = sb.write("one.toml", "[[task]]\nid = \"x\"\nrun = \"true\"\n");
    let o = sb.run(&["add", s.to_str().unwrap(), f.to_str().unwrap(), "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "would add 1 task: x\n");
    let o = add(
        &sb,
        &s,
        "more.toml",
        "[[task]]\nid = \"after-hold\"\nrun = 'echo \"{\\\"metrics\\\": {\\\"rows\\\": 2}}\" > \"$MAESTRO_RESULT\"'\nafter = [\"hold\"]\n\
         [[task]]\nid = \"now-{n}\"\nrun = \"echo $MAESTRO_TASK >> \\\"$OUT/ran\\\"\"\nafter = [\"done\"]\nmatrix = { n = [\"1\", \"2\"] }\n",
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "added 3 tasks (after-hold, now-1, now-2): 2 ready\n"
    );
    // The two after `done` run while `hold` still holds; `after-hold` waits.
    wait_until(Duration::from_secs(20), "now-1 and now-2 decided", || {
        outcome_exists(&s, "now-1") && outcome_exists(&s, "now-2")
    });
    let ran = std::fs::read_to_string(sb.out().join("ran")).unwrap();
    assert_eq!(ran.lines().count(), 2, "{ran}");
    let st = status_json(&sb, &s);
    assert_states(
        &st,
        &[
            ("now-1", "succeeded"),
            ("now-2", "succeeded"),
            ("after-hold", "pending"),
        ],
    );
    std::fs::write(sb.out().join("go"), "").unwrap();
    assert_eq!(sb.wait_last(Duration::from_secs(30)), 0);
    assert_status(&sb, &s, "succeeded", &[("after-hold", "succeeded")]);
    let plan = read_json(&s.join("plan.json")).unwrap();
    let ids: Vec<&str> = plan["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["hold", "done", "after-hold", "now-1", "now-2"]);
    let added = added_lines(&s);
    assert_eq!(added.len(), 2);
    assert_eq!(
        added[1]["tasks"],
        serde_json::json!(["after-hold", "now-1", "now-2"])
    );
    let report = read_json(&s.join("report.json")).unwrap();
    assert_eq!(report["totals"]["tasks"], 5, "{report:#}");
    assert_eq!(report["metrics"]["rows"], 2);
}

/// The message of a refused `add`, which must exit 2.
fn refused(o: &std::process::Output) -> String {
    assert_eq!(o.status.code(), Some(2), "{}", stderr(o));
    stderr(o)
}

fn outcome_exists(s: &std::path::Path, task: &str) -> bool {
    s.join("tasks").join(task).join("outcome.json").exists()
}

#[test]
fn a_refused_addition_exits_2_and_says_why() {
    let mut sb = Sandbox::new();
    let s = sb.start_plan("plan.toml", &base(), &["-q"]);
    wait_started(&s, "hold", 1);
    // A check of the merged plan: the line in the added file.
    let o = add(
        &sb,
        &s,
        "dup.toml",
        "[[task]]\nid = \"x\"\nrun = \"true\"\n\n[[task]]\nid = \"done\"\nrun = \"true\"\n",
    );
    let dup = sb.path().join("dup.toml");
    assert_eq!(
        refused(&o),
        format!(
            "error: {}:6:6: duplicate task id \"done\" (first defined in the session's plan)\n",
            dup.display()
        )
    );
    let o = add(
        &sb,
        &s,
        "race.toml",
        "[[race]]\nid = \"r\"\ntasks = [\"hold\", \"done\"]\n",
    );
    let msg = refused(&o);
    assert!(
        msg.ends_with(
            ":1:1: `race` cannot be added to a running session: a race's members are fixed\n"
        ),
        "{msg}"
    );
    // Nothing was added.
    assert_eq!(added_lines(&s).len(), 1);
    // A stopping session takes nothing new.
    let o = sb.run(&["stop", s.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = add(
        &sb,
        &s,
        "late.toml",
        "[[task]]\nid = \"late\"\nrun = \"true\"\n",
    );
    assert_eq!(
        refused(&o),
        format!(
            "error: session {}: tasks of {} not added: the session is stopping: nothing new starts in it\n",
            session_id(&s),
            sb.path().join("late.toml").display()
        )
    );
    std::fs::write(sb.out().join("go"), "").unwrap();
    sb.wait_last(Duration::from_secs(30));
    // An ended session: what to do instead.
    let o = add(
        &sb,
        &s,
        "late.toml",
        "[[task]]\nid = \"late\"\nrun = \"true\"\n",
    );
    let msg = refused(&o);
    assert!(
        msg.contains("has finished") && msg.contains("nothing runs there to add tasks to"),
        "{msg}"
    );
    let o = sb.run(&["add", "no-such-session", "late.toml"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// The orchestrator died after writing a grown `plan.json` and before journalling its
/// tasks: the resume drops them (no one was told they were added) and says so.
#[test]
fn a_resume_drops_tasks_no_journal_line_vouches_for() {
    let mut sb = Sandbox::new();
    let s = sb.start_plan("plan.toml", &base(), &["-q"]);
    wait_started(&s, "hold", 1);
    sb.kill_orchestrator(&s);
    let plan_path = s.join("plan.json");
    let mut plan = read_json(&plan_path).unwrap();
    let mut ghost = plan["tasks"][1].clone();
    ghost["id"] = "ghost".into();
    plan["tasks"].as_array_mut().unwrap().push(ghost);
    std::fs::write(&plan_path, serde_json::to_vec_pretty(&plan).unwrap()).unwrap();
    std::fs::write(sb.out().join("go"), "").unwrap();
    let o = sb.resume(&s);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "warning: 1 task added as the orchestrator died was not taken (ghost): add it again"
        ),
        "{}",
        stderr(&o)
    );
    let plan = read_json(&plan_path).unwrap();
    assert_eq!(plan["tasks"].as_array().unwrap().len(), 2);
    assert!(!s.join("tasks").join("ghost").exists());
}

/// The session journal's `tasks_added` lines.
fn added_lines(s: &std::path::Path) -> Vec<serde_json::Value> {
    events(s)
        .into_iter()
        .filter(|e| e["event"] == "tasks_added")
        .collect()
}

/// A worktree task added to a session with worktrees starts from the session's base in
/// its own worktree; one in another repository, or with `owns` from a file elsewhere, is
/// refused.
#[test]
fn added_worktree_tasks_start_from_the_sessions_base() {
    use crate::worktree::{GIT_ENV, git, repo};
    let mut sb = Sandbox::new();
    let (repo, base) = repo(&sb);
    let plan = sb.write(
        "p.toml",
        &format!(
            "name = \"wt\"\n[defaults]\nworktree = true\ncwd = \"repo\"\n\
             [[task]]\nid = \"hold\"\nrun = '{}'\n",
            wait_for_file("go")
        ),
    );
    let s = sb.start_with(
        &[
            "run",
            plan.to_str().unwrap(),
            "--launcher",
            "background",
            "-q",
        ],
        GIT_ENV,
    );
    wait_started(&s, "hold", 1);
    // The checkout moves on: an added task still starts from the session's base.
    std::fs::write(repo.join("later.txt"), "x\n").unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "later"]);
    let more = sb.write(
        "more.toml",
        "[defaults]\nworktree = true\ncwd = \"repo\"\n\
         [[task]]\nid = \"late\"\nowns = [\"repo/l/**\"]\n\
         run = 'mkdir l && echo l > l/x && git add -A && git commit -qm l'\n",
    );
    let add = |file: &std::path::Path| {
        let mut c = sb.orch();
        c.args(["add", s.to_str().unwrap(), file.to_str().unwrap()])
            .envs(GIT_ENV.iter().copied());
        run_with_deadline(c, Duration::from_secs(60))
    };
    let o = add(&more);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Another repository: refused, with the one the session knows.
    let other = sb.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    git(&other, &["init", "-q", "-b", "main"]);
    let elsewhere = sb.write(
        "elsewhere.toml",
        "[[task]]\nid = \"x\"\nworktree = true\ncwd = \"other\"\nrun = \"true\"\n",
    );
    let o = add(&elsewhere);
    assert_eq!(
        refused(&o),
        format!(
            "error: {}: task \"x\" has worktree = true in {}, which is not a repository the session's worktrees start from ({}): run it in a session of its own\n",
            elsewhere.display(),
            other.display(),
            repo.display()
        )
    );
    // `owns` from a file in another directory than the plan's.
    std::fs::create_dir_all(sb.path().join("sub")).unwrap();
    let owns = sb.write(
        "sub/owns.toml",
        "[[task]]\nid = \"y\"\ncwd = \"repo\"\nowns = [\"y/**\"]\nrun = \"true\"\n",
    );
    let o = add(&owns);
    let msg = refused(&o);
    assert!(
        msg.contains("has `owns`, whose patterns are relative to the plan's directory"),
        "{msg}"
    );
    std::fs::write(sb.out().join("go"), "").unwrap();
    assert_eq!(sb.wait_last(Duration::from_secs(60)), 0);
    let sid = session_id(&s);
    let branch = format!("maestro/{sid}/late");
    assert_eq!(git(&repo, &["rev-parse", &format!("{branch}~1")]), base);
    let rec = read_json(&s.join("tasks/late/worktree.json")).unwrap();
    assert_eq!(rec["changed"], serde_json::json!(["l/x"]));
    assert_eq!(rec["outside_owns"], serde_json::json!([]));
}

/// `orchestrator add SESSION -`: tasks from a script's pipe, JSON or TOML, with errors
/// located in `<stdin>`.
#[test]
fn tasks_can_be_added_from_stdin() {
    use std::io::Write as _;
    let mut sb = Sandbox::new();
    let s = sb.start_plan("plan.toml", &base(), &["-q"]);
    wait_started(&s, "hold", 1);
    let piped = |text: &str| {
        let mut c = sb.orch();
        c.args(["add", s.to_str().unwrap(), "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let o = piped(r#"{"task": [{"id": "piped", "run": "true", "after": ["hold"]}]}"#);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "added 1 task (piped): 0 ready\n");
    let o = piped("[[task]]\nid = \"bad\"\nrun = \"true\"\nafter = [\"nope\"]\n");
    assert_eq!(
        refused(&o),
        "error: <stdin>:4:10: task \"bad\" depends on unknown task \"nope\"\n"
    );
    std::fs::write(sb.out().join("go"), "").unwrap();
    assert_eq!(sb.wait_last(Duration::from_secs(30)), 0);
    assert_status(&sb, &s, "succeeded", &[("piped", "succeeded")]);
}
