//! Failure policies and draining with real processes: `on_failure = "stop"` lets running
//! attempts finish and starts nothing more; `orchestrator stop` from another process
//! drains a session, and a drain survives its orchestrator being killed and resumed.

use std::fs;
use std::time::Duration;

use crate::util::*;

#[test]
fn a_failure_under_on_failure_stop_lets_the_running_task_finish_and_starts_nothing() {
    let mut sb = Sandbox::new();
    // b runs until a has failed (a touches `failing` first), so the two overlap.
    let plan = format!(
        "name = \"p\"\nworkers = 2\non_failure = \"stop\"\n\
         [[task]]\nid = \"b\"\nrun = '{}; echo b-done > \"$OUT/b\"'\n\
         [[task]]\nid = \"a\"\nrun = 'touch \"$OUT/failing\"; exit 1'\n\
         [[task]]\nid = \"c\"\nrun = 'echo c > \"$OUT/c\"'\n",
        wait_for_file("stopping")
    );
    let session = sb.start_plan("p.toml", &plan, &["-q"]);
    wait_until(Duration::from_secs(30), "the session to drain", || {
        events(&session)
            .iter()
            .any(|e| e["event"] == "session_draining")
    });
    touch(&sb, "stopping");
    assert_eq!(sb.wait_last(Duration::from_secs(60)), 1);
    let why: Vec<_> = events(&session)
        .into_iter()
        .filter(|e| e["event"] == "session_draining")
        .map(|e| e["why"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(why, ["task a failed (on_failure = stop)"]);
    assert_eq!(fs::read_to_string(sb.out().join("b")).unwrap(), "b-done\n");
    assert!(!sb.out().join("c").exists(), "c started after the failure");
    assert_eq!(outcome(&session, "b")["state"], "succeeded");
    assert_eq!(outcome(&session, "a")["state"], "failed");
    assert_eq!(outcome(&session, "c")["state"], "cancelled");
    assert_eq!(
        outcome(&session, "c")["reason"],
        "not started: the session was stopped"
    );
    assert_eq!(status_json(&sb, &session)["state"], "failed");
}

#[test]
fn stop_from_another_process_drains_and_survives_a_resume() {
    let mut sb = Sandbox::new();
    let plan = format!(
        "name = \"p\"\nworkers = 1\n\
         [[task]]\nid = \"a\"\nrun = '{}; echo a > \"$OUT/a\"'\n\
         [[task]]\nid = \"b\"\nrun = 'echo b > \"$OUT/b\"'\n",
        wait_for_file("go")
    );
    let session = sb.start_plan("p.toml", &plan, &["-q"]);
    wait_started(&session, "a", 1);
    let o = sb.run(&["stop", session.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!(
            "session {} stopping: no new starts; 1 running attempt will finish\n",
            session_id(&session)
        )
    );
    // The orchestrator dies, and a ends meanwhile; the `stop` below takes the session
    // over: the journal says it drains, so it starts nothing and ends at once.
    sb.kill_orchestrator(&session);
    touch(&sb, "go");
    wait_until(Duration::from_secs(30), "a to end", || {
        sb.out().join("a").exists()
    });
    let o = sb.run(&["stop", session.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert_eq!(
        stderr(&o),
        format!(
            "error: the session has already ended (cancelled)\nsession {} cancelled: 1/2 tasks succeeded\n",
            session_id(&session)
        )
    );
    assert_eq!(fs::read_to_string(sb.out().join("a")).unwrap(), "a\n");
    assert!(!sb.out().join("b").exists(), "b started after the stop");
    assert_eq!(outcome(&session, "b")["state"], "cancelled");
    assert_eq!(status_json(&sb, &session)["state"], "cancelled");
}

#[test]
fn a_frozen_session_stops_its_tasks_where_they_are_and_thaw_lets_them_finish() {
    let mut sb = Sandbox::new();
    let plan = format!(
        "name = \"f\"\nworkers = 1\n\
         [[task]]\nid = \"a\"\nrun = '{}; echo a > \"$OUT/a\"'\n\
         [[task]]\nid = \"b\"\nafter = [\"a\"]\nrun = 'echo b > \"$OUT/b\"'\n",
        wait_for_file("go")
    );
    let session = sb.start_plan("f.toml", &plan, &["-q"]);
    wait_started(&session, "a", 1);
    let group = pgid_of(&session, "a", 1);
    let o = sb.run(&["freeze", session.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "session frozen: 1 running attempt stopped where it is; `thaw` goes on, `cancel` ends it\n"
    );
    wait_until(Duration::from_secs(30), "the task's group to stop", || {
        group_stopped(group)
    });
    assert_eq!(status_json(&sb, &session)["state"], "frozen");
    // Released while frozen, the task cannot see it: it is stopped.
    fs::write(sb.out().join("go"), "").unwrap();
    let o = sb.run(&["thaw", session.to_str().unwrap()]);
    assert_eq!(stdout(&o), "session thawed: frozen attempts go on\n");
    assert_eq!(sb.wait_last(Duration::from_secs(60)), 0);
    assert_eq!(fs::read_to_string(sb.out().join("b")).unwrap(), "b\n");
    let kinds: Vec<_> = events(&session)
        .into_iter()
        .filter(|e| e["event"] == "session_frozen" || e["event"] == "session_thawed")
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["session_frozen", "session_thawed"]);
}
