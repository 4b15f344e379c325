//! Auxiliary commands with real processes: cleanups after a success, a failure and a
//! cancel; a gate's check; a failure that freezes the session (emergency commands, a
//! snapshot, stopped tasks) and a rollback from another process; a rollback of a finished
//! session, its orchestrator killed in the middle of a step and the rollback resumed
//! without running any step twice.

use std::fs;
use std::time::Duration;

use crate::util::*;

fn read(sb: &Sandbox, name: &str) -> String {
    fs::read_to_string(sb.out().join(name)).unwrap_or_default()
}

/// The session journal's lines of one kind.
fn lines(session: &std::path::Path, kind: &str) -> Vec<serde_json::Value> {
    events(session)
        .into_iter()
        .filter(|e| e["event"] == kind)
        .collect()
}

/// `(of, attempt, state)` of each `KIND_ended` line.
fn ends(session: &std::path::Path, kind: &str) -> Vec<(String, u64, String)> {
    lines(session, &format!("{kind}_ended"))
        .into_iter()
        .map(|e| {
            (
                e["of"].as_str().unwrap_or_default().to_string(),
                e["attempt"].as_u64().unwrap_or_default(),
                e["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn cleanups_run_after_a_success_a_failure_and_a_cancel() {
    let mut sb = Sandbox::new();
    // Each cleanup records who it speaks for and which attempt it follows.
    let cleanup =
        r#"cleanup = 'echo "$MAESTRO_TASK $MAESTRO_AUX $MAESTRO_ATTEMPT" >> "$OUT/cleaned"'"#;
    let plan = format!(
        "name = \"p\"\nworkers = 3\n\
         [[task]]\nid = \"ok\"\nrun = 'true'\n{cleanup}\n\
         [[task]]\nid = \"bad\"\nrun = 'exit 3'\n{cleanup}\n\
         [[task]]\nid = \"long\"\nrun = '{}'\n{cleanup}\n",
        wait_for_file("never")
    );
    let session = sb.start_plan("p.toml", &plan, &["-q"]);
    wait_started(&session, "long", 1);
    wait_until(Duration::from_secs(30), "two cleanups", || {
        ends(&session, "cleanup").len() == 2
    });
    let o = sb.run(&["cancel", session.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(sb.wait_last(Duration::from_secs(60)), 1);
    let mut lines: Vec<String> = read(&sb, "cleaned").lines().map(str::to_string).collect();
    lines.sort();
    assert_eq!(
        lines,
        ["bad cleanup 1", "long cleanup 1", "ok cleanup 1"],
        "one cleanup per attempt that ran, the cancelled one's too"
    );
    let mut e = ends(&session, "cleanup");
    e.sort();
    assert_eq!(
        e,
        [
            ("bad".into(), 1, "succeeded".into()),
            ("long".into(), 1, "succeeded".into()),
            ("ok".into(), 1, "succeeded".into())
        ]
    );
    // Its logs are where an attempt's are.
    assert!(
        session
            .join("tasks/ok+cleanup/attempt-1/exit.json")
            .is_file()
    );
    assert_eq!(status_json(&sb, &session)["state"], "cancelled");
}

#[test]
fn a_failed_cleanup_is_reported_and_the_session_still_succeeds() {
    let sb = Sandbox::new();
    let plan = "name = \"p\"\n\
         [[task]]\nid = \"a\"\nrun = 'true'\ncleanup = 'echo cleaning; exit 7'\n";
    let session = sb.run_ok("p.toml", plan);
    assert_eq!(
        ends(&session, "cleanup"),
        [("a".into(), 1, "failed".into())]
    );
    let line = &lines(&session, "cleanup_ended")[0];
    assert_eq!(line["reason"], "exited with code 7");
    let o = sb.run(&["status", session.to_str().unwrap()]);
    assert!(
        stdout(&o).contains("cleanup of a (attempt 1): failed: exited with code 7"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn a_gate_check_lets_the_next_wave_go_or_fails_it() {
    let sb = Sandbox::new();
    for (ok, code) in [(true, 0), (false, 1)] {
        let check = if ok {
            "test -f ok-marker"
        } else {
            "test -f no-such-marker"
        };
        sb.write("ok-marker", "");
        let plan = format!(
            "name = \"p\"\n\
             [[task]]\nid = \"a\"\nrun = 'true'\n\
             [[gate]]\nid = \"g\"\nafter = [\"a\"]\nrun = '{check}'\n\
             [[task]]\nid = \"b\"\nrun = 'echo b > \"$OUT/b-{ok}\"'\nafter = [\"gate:g\"]\n"
        );
        let o = sb.run_plan("p.toml", &plan, &["-q"]);
        assert_eq!(o.status.code(), Some(code), "{}", stderr(&o));
        let session = session_of(&o);
        assert_eq!(
            ends(&session, "check"),
            [(
                "g".into(),
                1,
                if ok { "succeeded" } else { "failed" }.into()
            )]
        );
        assert_eq!(sb.out().join(format!("b-{ok}")).exists(), ok);
        if !ok {
            assert_eq!(outcome(&session, "b")["state"], "skipped");
            assert_eq!(
                lines(&session, "gate_failed")[0]["reason"],
                "its check failed: exited with code 1"
            );
        }
    }
}

#[test]
fn a_failure_freezes_the_session_and_a_rollback_from_another_process_undoes_it() {
    let mut sb = Sandbox::new();
    // c then d succeed; b runs; a fails once b has started: the session freezes with b
    // stopped where it is, b's emergency runs, then a person rolls back.
    let undo = |t: &str| format!("rollback = 'echo {t} >> \"$OUT/undone\"'");
    let plan = format!(
        "name = \"p\"\nworkers = 2\non_failure = \"freeze\"\n\
         [[task]]\nid = \"c\"\nrun = 'true'\n{}\n\
         [[task]]\nid = \"d\"\nrun = 'true'\nafter = [\"c\"]\n{}\n\
         [[task]]\nid = \"b\"\nrun = 'touch \"$OUT/b-up\"; {}'\nafter = [\"d\"]\n\
         emergency = 'echo \"$MAESTRO_TASK\" >> \"$OUT/emergency\"'\n{}\n\
         [[task]]\nid = \"a\"\nrun = '{}; exit 1'\nafter = [\"d\"]\n",
        undo("c"),
        undo("d"),
        wait_for_file("never"),
        undo("b"),
        wait_for_file("b-up"),
    );
    let session = sb.start_plan("p.toml", &plan, &["-q"]);
    wait_until(Duration::from_secs(30), "the freeze", || {
        status_json(&sb, &session)["state"] == "frozen"
    });
    let pgid = pgid_of(&session, "b", 1);
    wait_until(Duration::from_secs(30), "b to be stopped", || {
        group_stopped(pgid)
    });
    wait_until(Duration::from_secs(30), "b's emergency command", || {
        read(&sb, "emergency") == "b\n"
    });
    let frozen = lines(&session, "session_frozen");
    assert_eq!(frozen[0]["why"], "task a failed (on_failure = freeze)");
    assert_eq!(frozen[0]["emergency"], true);
    wait_until(Duration::from_secs(30), "the snapshot", || {
        !lines(&session, "snapshot_written").is_empty()
    });
    let snap = lines(&session, "snapshot_written")[0]["path"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(session.join(&snap).join("events.jsonl").is_file());
    assert!(session.join(&snap).join("tasks/c/outcome.json").is_file());

    let o = sb.run(&["rollback", session.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "rolling back: 2 steps (d, c)\n",
        "b never succeeded: it is stopped, not undone"
    );
    assert_eq!(sb.wait_last(Duration::from_secs(60)), 0, "rolled back");
    assert_eq!(read(&sb, "undone"), "d\nc\n", "last completed first");
    assert_eq!(outcome(&session, "b")["state"], "cancelled");
    assert_eq!(
        outcome(&session, "d")["state"],
        "succeeded",
        "outcomes stand"
    );
    assert_eq!(status_json(&sb, &session)["state"], "rolled_back");
}

#[test]
fn a_rollback_of_a_finished_session_survives_its_orchestrator_dying_mid_step() {
    let mut sb = Sandbox::new();
    // b's rollback waits for `go`: the orchestrator running the rollback is killed while
    // it runs; its worker finishes it; the rollback asked again takes that exit and goes
    // on with a, never running b's twice.
    let plan = format!(
        "name = \"p\"\nworkers = 1\n\
         [[task]]\nid = \"a\"\nrun = 'true'\nrollback = 'echo a >> \"$OUT/undone\"'\n\
         [[task]]\nid = \"b\"\nrun = 'true'\nafter = [\"a\"]\n\
         rollback = 'echo b-start >> \"$OUT/undone\"; {}; echo b >> \"$OUT/undone\"'\n\
         [[task]]\nid = \"c\"\nrun = 'true'\nafter = [\"b\"]\nrollback = 'echo c >> \"$OUT/undone\"'\n",
        wait_for_file("go")
    );
    let session = sb.run_ok("p.toml", &plan);
    let s = session.to_str().unwrap().to_string();
    sb.start(&["rollback", &s]);
    wait_until(Duration::from_secs(30), "b's rollback to start", || {
        read(&sb, "undone") == "c\nb-start\n"
    });
    sb.kill_orchestrator(&session);
    touch(&sb, "go");
    wait_until(Duration::from_secs(30), "b's rollback to end", || {
        read(&sb, "undone").ends_with("b\n")
    });
    assert_eq!(status_json(&sb, &session)["state"], "interrupted");
    let o = sb.run(&["rollback", &s]);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    assert_eq!(
        read(&sb, "undone"),
        "c\nb-start\nb\na\n",
        "no step ran twice"
    );
    assert_eq!(status_json(&sb, &session)["state"], "rolled_back");
    let o = sb.run(&["rollback", &s]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o), "error: the session is already rolled back\n");
}

#[test]
fn a_failed_rollback_step_stops_the_rollback_and_asking_again_retries_it() {
    let sb = Sandbox::new();
    let plan = "name = \"p\"\nworkers = 1\n\
         [[task]]\nid = \"a\"\nrun = 'true'\nrollback = 'echo a >> \"$OUT/undone\"'\n\
         [[task]]\nid = \"b\"\nrun = 'true'\nafter = [\"a\"]\n\
         rollback = 'test -f \"$OUT/fixed\" && echo b >> \"$OUT/undone\"'\n";
    let session = sb.run_ok("p.toml", plan);
    let s = session.to_str().unwrap();
    let o = sb.run(&["rollback", s]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(status_json(&sb, &session)["state"], "rollback_failed");
    assert_eq!(read(&sb, "undone"), "", "a waits for b");
    let st = sb.run(&["status", s]);
    assert!(
        stdout(&st)
            .contains("rollback (last completed first): b failed (exited with code 1), a pending"),
        "{}",
        stdout(&st)
    );
    touch(&sb, "fixed");
    let o = sb.run(&["rollback", s]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(read(&sb, "undone"), "b\na\n");
    assert_eq!(
        ends(&session, "rollback"),
        [
            ("b".into(), 1, "failed".into()),
            ("b".into(), 2, "succeeded".into()),
            ("a".into(), 1, "succeeded".into())
        ]
    );
}

#[test]
fn a_cleanup_past_its_timeout_is_stopped_and_reported() {
    let sb = Sandbox::new();
    let plan = "name = \"p\"\n\
         [[task]]\nid = \"a\"\nrun = 'true'\ncleanup = 'exec sleep 30'\ncleanup_timeout = \"300ms\"\n";
    let session = sb.run_ok("p.toml", plan);
    let line = &lines(&session, "cleanup_ended")[0];
    assert_eq!(line["state"], "failed");
    assert!(
        line["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("timed out after 0."),
        "{line}"
    );
}

#[test]
fn a_session_frozen_by_a_failure_stays_frozen_across_a_resume() {
    let mut sb = Sandbox::new();
    let plan = format!(
        "name = \"p\"\nworkers = 2\non_failure = \"freeze\"\n\
         [[task]]\nid = \"b\"\nrun = 'touch \"$OUT/b-up\"; {}; echo b > \"$OUT/b\"'\n\
         emergency = 'echo \"$MAESTRO_AUX\" >> \"$OUT/emergency\"'\n\
         [[task]]\nid = \"a\"\nrun = '{}; exit 1'\n",
        wait_for_file("go"),
        wait_for_file("b-up"),
    );
    let session = sb.start_plan("p.toml", &plan, &["-q"]);
    wait_until(Duration::from_secs(30), "b's emergency command", || {
        read(&sb, "emergency") == "emergency\n"
    });
    let pgid = pgid_of(&session, "b", 1);
    wait_until(Duration::from_secs(30), "b to be stopped", || {
        group_stopped(pgid)
    });
    sb.kill_orchestrator(&session);
    sb.start(&[
        "resume",
        session.to_str().unwrap(),
        "-q",
        "--launcher",
        "background",
    ]);
    wait_until(Duration::from_secs(30), "the resume", || {
        !lines(&session, "session_resumed").is_empty()
    });
    assert_eq!(status_json(&sb, &session)["state"], "frozen");
    assert!(group_stopped(pgid), "b is still stopped");
    // `go` is there, but b is stopped: it cannot see it until the thaw.
    touch(&sb, "go");
    let o = sb.run(&["thaw", session.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(sb.wait_last(Duration::from_secs(60)), 1, "a failed");
    assert_eq!(read(&sb, "b"), "b\n");
    assert_eq!(
        read(&sb, "emergency"),
        "emergency\n",
        "run once, not again on resume"
    );
    assert_eq!(lines(&session, "snapshot_written").len(), 1);
}

// The flaky freeze: both tests above timed out about 1 run in 6 under load, waiting for
// b's process group to stop, though the worker had stopped it. dash starts each command
// with vfork; a group SIGSTOP that lands between the vfork and the exec stops the child
// first, and the shell, waiting in `D` for that child's exec, cannot stop: it keeps the
// SIGSTOP pending for as long as the group stays stopped (seen: leader `D` with SIGSTOP
// in ShdPnd, its child `T`). The group was frozen; the tests looked for `T` on the leader
// alone. A shell starting commands in a loop is stopped and continued until it was caught
// so a few times: each time its group counts as stopped, and it goes on after SIGCONT.
#[test]
fn a_group_stopped_while_its_shell_waits_on_a_vforked_child_counts_as_stopped() {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    use std::os::unix::process::CommandExt;

    /// Kills the loop however the test ends.
    struct Group(std::process::Child);
    impl Drop for Group {
        fn drop(&mut self) {
            let _ = killpg(Pid::from_raw(self.0.id() as i32), Signal::SIGKILL);
            let _ = self.0.wait();
        }
    }
    let g = Group(
        std::process::Command::new("sh")
            .args(["-c", "while :; do /bin/true; done"])
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    let pgid = g.0.id() as i64;
    let group = Pid::from_raw(pgid as i32);
    let mut caught = 0;
    for _ in 0..2000 {
        killpg(group, Signal::SIGSTOP).unwrap();
        wait_until(Duration::from_secs(10), "the group to stop", || {
            group_stopped(pgid)
        });
        if proc_state(pgid) == Some('D') {
            caught += 1;
        }
        killpg(group, Signal::SIGCONT).unwrap();
        wait_until(Duration::from_secs(10), "the group to go on", || {
            !group_stopped(pgid)
        });
        if caught == 3 {
            return;
        }
    }
    // bash forks rather than vforks: there the leader always stops.
    eprintln!("note: sh was never caught waiting on a vforked child ({caught} times)");
}
