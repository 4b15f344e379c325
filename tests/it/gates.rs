//! Gates with real processes: a gate waits for a person after its tasks; `approve` and
//! `reject` come from another process; status shows the gate waiting; an approval given
//! while no orchestrator runs the session is carried out by `resume`.

use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::util::*;

const PLAN: &str = "name = \"g\"\nworkers = 1\n\
    [[task]]\nid = \"migrate\"\nrun = 'echo m > \"$OUT/migrate\"'\n\
    [[task]]\nid = \"switch\"\nrun = 'echo s > \"$OUT/switch\"'\nafter = [\"gate:schema-ok\"]\n\
    [[gate]]\nid = \"schema-ok\"\nafter = [\"migrate\"]\napprove = true\n";

fn wait_gate(sb: &Sandbox, session: &Path) {
    wait_until(Duration::from_secs(30), "the gate to wait", || {
        status_json(sb, session)["gates"][0]["state"] == "waiting"
    });
}

#[test]
fn a_gate_waits_for_approval_from_another_process() {
    let mut sb = Sandbox::new();
    let session = sb.start_plan("g.toml", PLAN, &["-q"]);
    wait_gate(&sb, &session);
    assert!(
        !sb.out().join("switch").exists(),
        "switch ran before the approval"
    );
    let o = sb.run(&["status", session.to_str().unwrap()]);
    let id = session_id(&session);
    assert!(
        stdout(&o).contains(&format!(
            "\ngate schema-ok WAITS FOR APPROVAL: `orchestrator approve {id} schema-ok` or \
             `orchestrator reject {id} schema-ok --reason ...`\n"
        )),
        "{}",
        stdout(&o)
    );
    let o = sb.run(&["approve", session.to_str().unwrap(), "schema-ok"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "gate schema-ok approved; 1 task may start\n");
    assert_eq!(sb.wait_last(Duration::from_secs(60)), 0);
    assert_eq!(fs::read_to_string(sb.out().join("switch")).unwrap(), "s\n");
    assert_eq!(status_json(&sb, &session)["gates"][0]["state"], "approved");
}

#[test]
fn a_rejected_gate_skips_what_follows_and_the_session_fails() {
    let mut sb = Sandbox::new();
    let session = sb.start_plan("g.toml", PLAN, &["-q"]);
    wait_gate(&sb, &session);
    let o = sb.run(&[
        "reject",
        session.to_str().unwrap(),
        "schema-ok",
        "--reason",
        "two tables lost rows",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "gate schema-ok rejected; 1 task after it will not run\n"
    );
    assert_eq!(sb.wait_last(Duration::from_secs(60)), 1);
    assert!(!sb.out().join("switch").exists());
    assert_eq!(outcome(&session, "switch")["state"], "skipped");
    assert_eq!(
        outcome(&session, "switch")["reason"],
        "gate schema-ok was rejected: two tables lost rows"
    );
    let st = status_json(&sb, &session);
    assert_eq!(
        st["gates"],
        serde_json::json!([{"gate": "schema-ok", "state": "rejected", "reason": "two tables lost rows"}])
    );
}

#[test]
fn an_approval_given_while_no_orchestrator_runs_is_carried_out_by_resume() {
    let mut sb = Sandbox::new();
    let session = sb.start_plan("g.toml", PLAN, &["-q"]);
    wait_gate(&sb, &session);
    sb.kill_orchestrator(&session);
    let o = sb.run(&["approve", session.to_str().unwrap(), "schema-ok"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let id = session_id(&session);
    assert_eq!(
        stdout(&o),
        format!(
            "no orchestrator runs session {id}: the approve of gate schema-ok is kept and \
             carried out by `orchestrator resume {id}`\n"
        )
    );
    assert!(!sb.out().join("switch").exists());
    let o = sb.resume(&session);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(fs::read_to_string(sb.out().join("switch")).unwrap(), "s\n");
    assert_eq!(status_json(&sb, &session)["gates"][0]["state"], "approved");
}

/// A gate that runs a check: `plan` accepts it and says what it runs, for how long, and
/// where (the directory tasks run in by default). (Running one is the engine's.)
#[test]
fn plan_shows_a_gate_that_runs_a_check() {
    let sb = Sandbox::new();
    let p = sb.write(
        "g.toml",
        "name = \"g\"\n[[task]]\nid = \"a\"\nrun = \"true\"\n\
         [[task]]\nid = \"b\"\nrun = \"true\"\nafter = [\"gate:ok\"]\n\
         [[gate]]\nid = \"ok\"\nafter = [\"a\"]\nrun = \"test -f built\"\ntimeout = \"30s\"\n",
    );
    let o = sb.run(&["plan", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("\ngate ok (runs \"test -f built\", at most 30s): after a; then b\n"),
        "{}",
        stdout(&o)
    );
    let o = sb.run(&["plan", p.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["gates"],
        serde_json::json!([{"id": "ok", "after": ["a"], "approve": false,
            "run": "test -f built", "timeout_ms": 30000,
            "cwd": sb.path().display().to_string()}])
    );
    assert!(!sb.sessions().exists());
}

/// The README's migration example, as a person would run it: its gate's check passes,
/// it waits at its gate, is approved from another terminal, and ends with every table
/// copied, the connection pool never over its 4; then it is rolled back, last table
/// copied first, the schema last.
#[test]
fn the_migration_example_runs_to_its_gate_and_through_it() {
    let mut sb = Sandbox::new();
    let session = sb.start_plan(
        "migration.toml",
        include_str!("../../examples/migration.toml"),
        &["-q"],
    );
    wait_gate(&sb, &session);
    for t in ["orders", "customers", "invoices", "verify"] {
        assert_eq!(task_state(&status_json(&sb, &session), t), "pending");
    }
    let o = sb.run(&["approve", session.to_str().unwrap(), "schema-ok"]);
    assert_eq!(stdout(&o), "gate schema-ok approved; 3 tasks may start\n");
    assert_eq!(sb.wait_last(Duration::from_secs(60)), 0);
    for t in ["schema", "orders", "customers", "invoices", "verify"] {
        assert_eq!(outcome(&session, t)["state"], "succeeded", "{t}");
    }
    let most = events(&session)
        .iter()
        .filter(|e| e["event"] == "resource_level")
        .filter_map(|e| e["used"].as_u64())
        .max();
    assert_eq!(
        most,
        Some(4),
        "orders and customers held all 4 connections at once"
    );
    let ran = |kind: &str, of: &str| {
        events(&session)
            .iter()
            .any(|e| e["event"] == kind && e["of"] == of && e["state"] == "succeeded")
    };
    assert!(ran("check_ended", "schema-ok"), "the gate's check ran");
    assert!(ran("cleanup_ended", "orders"), "orders' cleanup ran");
    let finished: Vec<String> = events(&session)
        .iter()
        .filter(|e| e["event"] == "task_finished" && e["task"] != "verify")
        .map(|e| e["task"].as_str().unwrap().to_string())
        .collect();
    let o = sb.run(&["rollback", session.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let undone: Vec<String> = events(&session)
        .iter()
        .filter(|e| e["event"] == "rollback_ended" && e["state"] == "succeeded")
        .map(|e| e["of"].as_str().unwrap().to_string())
        .collect();
    let mut want = finished;
    want.reverse();
    assert_eq!(undone, want);
    assert_eq!(status_json(&sb, &session)["state"], "rolled_back");
}
