//! Partial runs with the real binaries: `run --only` runs exactly the named tasks and
//! what they depend on, `run --skip` treats tasks as done so their dependents run, an
//! unknown id is refused before anything is made, a dry run names what would be left
//! out, and a resumed session keeps its selection from the journal.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use crate::util::*;

/// a; b after a; c; d after b; e after c. Every task writes `$OUT/<id>`.
const PLAN: &str = "name = \"part\"\nworkers = 2\n\
    [[task]]\nid = \"a\"\nrun = 'echo a > \"$OUT/a\"'\n\
    [[task]]\nid = \"b\"\nrun = 'echo b > \"$OUT/b\"'\nafter = [\"a\"]\n\
    [[task]]\nid = \"c\"\nrun = 'echo c > \"$OUT/c\"'\n\
    [[task]]\nid = \"d\"\nrun = 'echo d > \"$OUT/d\"'\nafter = [\"b\"]\n\
    [[task]]\nid = \"e\"\nrun = 'echo e > \"$OUT/e\"'\nafter = [\"c\"]\n";

/// The markers tasks wrote, sorted.
fn ran(sb: &Sandbox) -> Vec<String> {
    let mut v = names_in(&sb.out());
    v.sort();
    v
}

/// The `(task, reason)` of every `task_excluded` line of the journal.
fn excluded_lines(session: &Path) -> Vec<(String, String)> {
    events(session)
        .iter()
        .filter(|e| e["event"] == "task_excluded")
        .map(|e| {
            (
                e["task"].as_str().unwrap().to_string(),
                e["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Run [`PLAN`] with `flags`, check it succeeded; its output and session.
fn run_ok(sb: &Sandbox, flags: &[&str]) -> (Output, PathBuf) {
    let o = sb.run_plan("p.toml", PLAN, flags);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let session = session_of(&o);
    (o, session)
}

#[test]
fn only_runs_exactly_the_named_tasks_and_what_they_depend_on() {
    let sb = Sandbox::new();
    let (o, session) = run_ok(&sb, &["-q", "--only", "b"]);
    let id = session_id(&session);
    assert_eq!(ran(&sb), ["a", "b"]);
    assert_eq!(
        stderr(&o).lines().last().unwrap(),
        format!("session {id} succeeded: 2/5 tasks succeeded, 3 excluded")
    );
    for t in ["c", "d", "e"] {
        let out = outcome(&session, t);
        assert_eq!(
            (&out["state"], &out["reason"], &out["attempt"]),
            (
                &"excluded".into(),
                &"not selected (--only)".into(),
                &0.into()
            ),
            "outcome of {t}"
        );
    }
    let st = status_json(&sb, &session);
    assert_eq!(st["state"], "succeeded");
    assert_states(
        &st,
        &[
            ("a", "succeeded"),
            ("b", "succeeded"),
            ("c", "excluded"),
            ("d", "excluded"),
            ("e", "excluded"),
        ],
    );
    let summary = read_json(&session.join("summary.json")).unwrap();
    assert_eq!(summary["state"], "succeeded");
    assert_eq!(
        summary["counts"],
        serde_json::json!({"succeeded": 2, "excluded": 3})
    );
    let why = "not selected (--only)".to_string();
    assert_eq!(
        excluded_lines(&session),
        [
            ("c".to_string(), why.clone()),
            ("d".to_string(), why.clone()),
            ("e".to_string(), why)
        ]
    );
    let list = sb.run(&["list"]);
    let row = stdout(&list).lines().nth(1).unwrap().to_string();
    assert!(
        row.starts_with(&format!("{id}  succeeded  5/5")),
        "excluded tasks count as done: {row}"
    );
}

#[test]
fn skip_lets_dependents_run_and_the_session_succeeds() {
    let sb = Sandbox::new();
    // Both styles: several ids after one flag, and the flag repeated.
    let (_, session) = run_ok(&sb, &["-q", "--skip", "a", "c", "--skip", "e"]);
    assert_eq!(ran(&sb), ["b", "d"]);
    assert_states(
        &status_json(&sb, &session),
        &[
            ("a", "excluded"),
            ("b", "succeeded"),
            ("c", "excluded"),
            ("d", "succeeded"),
            ("e", "excluded"),
        ],
    );
    assert_eq!(
        outcome(&session, "a")["reason"],
        "skipped by request (--skip)"
    );
    let o = sb.run(&["status", &session_id(&session)]);
    let line = stdout(&o)
        .lines()
        .find(|l| l.starts_with("a "))
        .unwrap()
        .to_string();
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        words,
        [
            "a", "excluded", "-", "-", "-", "skipped", "by", "request", "(--skip)"
        ]
    );
}

#[test]
fn a_task_both_selected_and_skipped_is_skipped() {
    let sb = Sandbox::new();
    let (_, session) = run_ok(&sb, &["-q", "--only", "d", "--skip", "b"]);
    assert_eq!(ran(&sb), ["a", "d"]);
    assert_eq!(
        outcome(&session, "b")["reason"],
        "skipped by request (--skip)"
    );
    assert_eq!(outcome(&session, "c")["reason"], "not selected (--only)");
}

#[test]
fn an_unknown_id_is_refused_and_nothing_is_created() {
    let sb = Sandbox::new();
    for (flag, id) in [("--only", "nope"), ("--skip", "zz")] {
        let o = sb.run_plan("p.toml", PLAN, &["-q", flag, "a", id]);
        assert_eq!(o.status.code(), Some(2), "{flag}");
        assert_eq!(stdout(&o), "");
        assert_eq!(
            stderr(&o),
            format!("error: {flag}: the plan has no task \"{id}\"\n")
        );
    }
    assert!(!sb.sessions().exists(), "no session directory");
    assert!(ran(&sb).is_empty());
}

#[test]
fn a_dry_run_names_the_tasks_left_out() {
    let sb = Sandbox::new();
    let o = sb.run_plan("p.toml", PLAN, &["--dry-run", "--only", "d", "--skip", "a"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert_eq!(
        text.lines().nth(3),
        Some("excluded: a (skipped by request), c (not selected), e (not selected)"),
        "{text}"
    );
    assert!(!sb.sessions().exists());
    let o = sb.run_plan("p.toml", PLAN, &["--dry-run", "--json", "--skip", "e"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["excluded"],
        serde_json::json!([{"id": "e", "reason": "skipped by request (--skip)"}])
    );
    // Without the flags, no line and an empty list.
    let o = sb.run_plan("p.toml", PLAN, &["--dry-run"]);
    assert!(!stdout(&o).contains("excluded"), "{}", stdout(&o));
}

#[test]
fn a_resumed_session_keeps_its_selection() {
    let mut sb = Sandbox::new();
    let plan = format!(
        "name = \"res\"\nworkers = 1\n\
         [[task]]\nid = \"x\"\nrun = 'echo x > \"$OUT/x\"'\n\
         [[task]]\nid = \"a\"\nrun = '{}'\n\
         [[task]]\nid = \"c\"\nrun = 'echo c > \"$OUT/c\"'\nafter = [\"a\"]\n",
        gated("go")
    );
    let session = sb.start_plan("r.toml", &plan, &["-q", "--only", "c"]);
    wait_started(&session, "a", 1);
    sb.kill_orchestrator(&session);
    let id = session_id(&session);
    let again = sb.start(&["resume", &id, "--launcher", "background", "-q"]);
    assert_eq!(again, session);
    fs::write(sb.out().join("go"), "").unwrap();
    assert_eq!(sb.wait_last(Duration::from_secs(60)), 0);
    assert!(!sb.out().join("x").exists(), "x was not selected");
    assert_eq!(fs::read_to_string(sb.out().join("c")).unwrap(), "c\n");
    assert_eq!(
        excluded_lines(&session),
        [("x".to_string(), "not selected (--only)".to_string())],
        "decided once, at the start"
    );
    assert_states(
        &status_json(&sb, &session),
        &[("x", "excluded"), ("a", "succeeded"), ("c", "succeeded")],
    );
    assert_eq!(
        read_json(&session.join("summary.json")).unwrap()["state"],
        "succeeded"
    );
}
