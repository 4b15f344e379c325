//! The session report: `report.md`, `report.json` and `report-tasks.jsonl` written when a
//! session ends, `orchestrator report` for finished and unfinished sessions, and the end
//! of `run`.

use std::fs;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::util::*;

/// `orchestrator report SESSION ARGS...`, which must answer (exit 0); its stdout.
fn report(sb: &Sandbox, session: &Path, args: &[&str]) -> String {
    let mut all = vec!["report", session.to_str().unwrap()];
    all.extend_from_slice(args);
    let o = sb.run(&all);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    stdout(&o)
}

fn report_json(sb: &Sandbox, session: &Path) -> Value {
    serde_json::from_str(&report(sb, session, &["--format", "json"])).unwrap()
}

/// The rows of `report-tasks.jsonl`, by task id.
fn rows(session: &Path) -> Vec<Value> {
    fs::read_to_string(session.join("report-tasks.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn row<'a>(rows: &'a [Value], id: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["id"] == id)
        .expect("a row for the task")
}

const RESULT: &str = r#"{"metrics": {"rows": 10, "cost_usd": 0.25}"#;

#[test]
fn results_are_aggregated_metrics_once_per_accepted_result_and_every_attempt_as_spent() {
    let sb = Sandbox::new();
    let task = |id: &str, extra: &str| {
        format!(
            "[[task]]\nid = \"{id}\"\nrun = '''echo '{RESULT}{extra}}}' > \"$MAESTRO_RESULT\"'''\n"
        )
    };
    let plan = format!(
        "name = \"agg\"\nworkers = 2\n{}{}{}\
         [[task]]\nid = \"flaky\"\nretries = 1\nbackoff = {{ initial = \"10ms\" }}\n\
         run = '''echo '{{\"metrics\": {{\"tries\": 1}}}}' > \"$MAESTRO_RESULT\"; \
         [ \"$MAESTRO_ATTEMPT\" != 1 ]'''\n",
        task(
            "a",
            r#", "insights": ["cache cold", "disk slow", "cache cold"], "decisions": {"db": "pg", "pool": 4}"#
        ),
        task(
            "b",
            r#", "insights": ["cache cold"], "decisions": {"db": "pg"}"#
        ),
        task(
            "c",
            r#", "insights": ["disk slow", "more workers help"], "decisions": {"db": "mysql"}"#
        ),
    );
    let session = sb.run_ok("agg.toml", &plan);
    let text = fs::read_to_string(session.join("report.json")).unwrap();
    // Exact decimals: 0.25 three times is 0.75.
    assert!(text.contains("\"cost_usd\": 0.75,"), "{text}");
    let r: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(r["finished"], true);
    assert_eq!(r["state"], "succeeded");
    assert_eq!(
        r["metrics"],
        serde_json::json!({"rows": 30, "cost_usd": 0.75, "tries": 1})
    );
    assert_eq!(
        r["metrics_spent"],
        serde_json::json!({"rows": 30, "cost_usd": 0.75, "tries": 2}),
        "flaky's failed attempt reported too"
    );
    assert_eq!(r["totals"]["retries"], 1);
    assert_eq!(r["totals"]["attempts"], 5);
    let insights: Vec<(String, Vec<Value>)> = r["insights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["insight"].as_str().unwrap().to_string(),
                i["tasks"].as_array().unwrap().clone(),
            )
        })
        .collect();
    assert_eq!(
        insights,
        vec![
            ("cache cold".into(), vec!["a".into(), "b".into()]),
            ("disk slow".into(), vec!["a".into(), "c".into()]),
            ("more workers help".into(), vec!["c".into()]),
        ]
    );
    assert_eq!(r["decisions"], serde_json::json!({"pool": 4}));
    assert_eq!(
        r["decision_conflicts"],
        serde_json::json!([{"key": "db", "values": [
            {"task": "a", "value": "pg"},
            {"task": "b", "value": "pg"},
            {"task": "c", "value": "mysql"},
        ]}])
    );
    // The verb prints the files as they are.
    assert_eq!(report(&sb, &session, &["--format", "json"]), text);
    let md = fs::read_to_string(session.join("report.md")).unwrap();
    assert_eq!(report(&sb, &session, &[]), md);
    assert!(md.contains("| cost_usd | 0.75 | 0.75 |"), "{md}");
    assert!(md.contains("**conflict** on `db`"), "{md}");
    let rows = rows(&session);
    assert_eq!(rows.len(), 4);
    let flaky = row(&rows, "flaky");
    assert_eq!(flaky["attempts"], 2);
    assert_eq!(flaky["tries"][0]["ended"], "failed");
    assert_eq!(flaky["tries"][0]["reason"], "exited with code 1");
    assert_eq!(flaky["result"], "tasks/flaky/attempt-2/result.json");
}

#[test]
fn a_failed_task_shows_its_exit_code_and_last_stderr_lines_in_the_report_and_at_the_end_of_run() {
    let sb = Sandbox::new();
    let o = sb.run_plan(
        "fail.toml",
        "name = \"fail\"\nworkers = 2\n\
         [[task]]\nid = \"ok\"\ncmd = [\"true\"]\n\
         [[task]]\nid = \"bad\"\n\
         run = 'for i in $(seq 1 20); do echo \"err line $i\" >&2; done; echo out; exit 3'\n\
         [[task]]\nid = \"after\"\ncmd = [\"true\"]\nafter = [\"bad\"]\n",
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let session = session_of(&o);
    let id = session_id(&session);
    let err = stderr(&o);
    for want in [
        "FAILED bad (attempt 1 of 1): exited with code 3",
        "  | err line 16",
        "  | err line 20",
        "skipped 1: after",
        "tasks: 3 (1 succeeded, 1 failed, 1 skipped)",
        &format!("report: {}", session.join("report.md").display()),
    ] {
        assert!(err.contains(want), "{want:?} missing from:\n{err}");
    }
    assert!(
        !err.contains("err line 15"),
        "five lines at the end of run:\n{err}"
    );
    assert_eq!(
        err.lines().last().unwrap(),
        format!("session {id} failed: 1/3 tasks succeeded")
    );
    let rows = rows(&session);
    let bad = row(&rows, "bad");
    assert_eq!(bad["exit_code"], 3);
    assert_eq!(bad["excerpt"]["file"], "tasks/bad/attempt-1/stderr.log");
    let lines: Vec<String> = (11..=20).map(|i| format!("err line {i}")).collect();
    assert_eq!(bad["excerpt"]["lines"], serde_json::json!(lines));
    let r: Value =
        serde_json::from_str(&fs::read_to_string(session.join("report.json")).unwrap()).unwrap();
    assert_eq!(r["not_succeeded"][0]["id"], "bad");
    assert_eq!(r["not_succeeded"][0]["excerpt"]["lines"][9], "err line 20");
    let md = fs::read_to_string(session.join("report.md")).unwrap();
    for want in [
        "### bad (failed, attempt 1 of 1, exit code 3)",
        "last lines of `tasks/bad/attempt-1/stderr.log`:",
        "err line 11\n",
        "| bad | failed | 1 | 1 |",
    ] {
        assert!(md.contains(want), "{want:?} missing from:\n{md}");
    }
    // Quiet stays quiet: the path, then the last line.
    let o = sb.run_plan(
        "fail.toml",
        &fs::read_to_string(sb.path().join("fail.toml")).unwrap(),
        &["-q"],
    );
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
}

#[test]
fn an_unfinished_or_dead_session_is_reported_from_its_files_and_says_so() {
    let mut sb = Sandbox::new();
    let session = sb.start_plan(
        "live.toml",
        &format!(
            "name = \"live\"\nworkers = 2\n\
             [[task]]\nid = \"quick\"\ncmd = [\"true\"]\n\
             [[task]]\nid = \"long\"\nrun = '{}'\n",
            gated("go")
        ),
        &[],
    );
    let id = session_id(&session);
    let w1 = wait_started(&session, "long", 1);
    wait_until(Duration::from_secs(30), "quick's outcome", || {
        session.join("tasks/quick/outcome.json").exists()
    });
    // A lost worker: the task moves on, a reassignment.
    signal(worker_pid(&session, &w1), "-KILL");
    wait_started(&session, "long", 2);
    // The worker journals the start first; the report reads the session's journal,
    // where the orchestrator writes it when it has read the worker's (under the poll
    // watcher, up to a rescan later).
    let mut r = Value::Null;
    wait_until(
        Duration::from_secs(30),
        "the report to see attempt 2 run",
        || {
            r = report_json(&sb, &session);
            r["totals"]["by_state"]["running"] == 1
        },
    );
    assert_eq!(r["finished"], false);
    assert_eq!(r["state"], "running");
    assert!(
        r["note"].as_str().unwrap().starts_with("NOT FINISHED"),
        "{r}"
    );
    assert_eq!(
        r["totals"]["by_state"],
        serde_json::json!({"running": 1, "succeeded": 1})
    );
    assert_eq!(r["totals"]["reassignments"], 1);
    assert_eq!(r["rows"], Value::Null);
    for f in ["report.json", "report.md", "report-tasks.jsonl"] {
        assert!(!session.join(f).exists(), "the verb wrote {f}");
    }
    // Its orchestrator dies: the report says how to finish it.
    sb.kill_orchestrator(&session);
    let md = report(&sb, &session, &[]);
    assert!(
        md.contains("> **NOT FINISHED: the session is interrupted"),
        "{md}"
    );
    assert!(md.contains(&format!("`orchestrator resume {id}`")), "{md}");
    assert!(md.contains("| long | running |"), "{md}");
    // Resumed to its end, it has its report.
    touch(&sb, "go");
    let o = sb.resume(&session);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r = report_json(&sb, &session);
    assert_eq!(r["finished"], true);
    assert_eq!(r["state"], "succeeded");
    assert_eq!(r["totals"]["reassignments"], 1);
    assert_eq!(r["totals"]["attempts"], 3);
    assert!(r.get("note").is_none());
}

#[test]
fn the_report_of_no_such_session_is_a_usage_error() {
    let sb = Sandbox::new();
    let o = sb.run(&["report", "no-such-session"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).starts_with("error: no session \"no-such-session\""));
    let o = sb.run(&["report", "x", "--format", "yaml"]);
    assert_eq!(o.status.code(), Some(2));
}

/// Regression: `summary.json` of a resumed session gave the resume's start and length (the
/// orchestrator that wrote it), while the report gave the session's. Both now give the
/// session's, and the report also says how much of it an orchestrator ran.
#[test]
fn summary_of_a_resumed_session_starts_when_the_session_did() {
    let mut sb = Sandbox::new();
    let plan = format!(
        "name = \"r\"\n[[task]]\nid = \"hold\"\nrun = '{}'\n",
        wait_for_file("go")
    );
    let s = sb.start_plan("plan.toml", &plan, &["-q"]);
    wait_started(&s, "hold", 1);
    sb.kill_orchestrator(&s);
    // The pause: long enough to tell apart from the time the session ran.
    let paused_from = std::time::Instant::now();
    wait_until(Duration::from_secs(5), "a pause of 300 ms", || {
        paused_from.elapsed() >= Duration::from_millis(300)
    });
    fs::write(sb.out().join("go"), "").unwrap();
    let o = sb.resume(&s);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let summary = read_json(&s.join("summary.json")).unwrap();
    let report = read_json(&s.join("report.json")).unwrap();
    let first = events(&s)[0]["ts"].as_str().unwrap().to_string();
    assert_eq!(summary["started_at"], first.as_str());
    assert_eq!(report["started_at"], first.as_str());
    assert_eq!(summary["duration_ms"], report["duration_ms"]);
    let (duration, active) = (
        report["duration_ms"].as_u64().unwrap(),
        report["active_ms"].as_u64().unwrap(),
    );
    assert!(duration >= active + 300, "{duration} {active}");
    let md = fs::read_to_string(s.join("report.md")).unwrap();
    assert!(md.contains("of it with an orchestrator running)"), "{md}");
}
