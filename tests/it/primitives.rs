//! Checkpoints, signals, locks, races and completion markers, with real binaries
//! and several concurrent tasks.

use std::fs;
use std::process::Command;
use std::time::Duration;

use crate::util::*;

fn ns_lines(path: &std::path::Path) -> Vec<u128> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

#[test]
fn barrier_releases_nobody_before_the_last_arrives() {
    let sb = Sandbox::new();
    let mut plan = String::from(
        "name = \"barrier\"\nworkers = 4\n[[checkpoint]]\nname = \"api\"\ntasks = [\"a\", \"b\", \"c\", \"d\"]\n",
    );
    for (i, t) in ["a", "b", "c", "d"].iter().enumerate() {
        plan.push_str(&format!(
            "[[task]]\nid = \"{t}\"\nrun = 'sleep 0.{i}; date +%s%N >> \"$OUT/arrive\"; worker checkpoint api --timeout 30s; date +%s%N >> \"$OUT/leave\"'\n"
        ));
    }
    let o = sb.run_plan("barrier.toml", &plan, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let arrive = ns_lines(&sb.out().join("arrive"));
    let leave = ns_lines(&sb.out().join("leave"));
    assert_eq!((arrive.len(), leave.len()), (4, 4));
    let last_arrival = *arrive.iter().max().unwrap();
    assert!(
        leave.iter().all(|&l| l >= last_arrival),
        "someone left before the last arrival"
    );
    let session = session_of(&o);
    assert!(session.join("checkpoints/api/proceed").exists());
    assert!(session.join("checkpoints/api/c.ready").exists());
}

#[test]
fn barrier_breaks_when_a_participant_fails_and_names_it() {
    let sb = Sandbox::new();
    let o = sb.run_plan(
        "broken.toml",
        "name = \"broken\"\nworkers = 2\n[[checkpoint]]\nname = \"sync\"\ntasks = [\"ok\", \"bad\"]\n\
         [[task]]\nid = \"ok\"\nrun = 'worker checkpoint sync --timeout 30s 2> \"$OUT/err\"; echo $? > \"$OUT/code\"'\n\
         [[task]]\nid = \"bad\"\nrun = 'sleep 0.2; exit 4'\n",
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(fs::read_to_string(sb.out().join("code")).unwrap(), "1\n");
    assert_eq!(
        fs::read_to_string(sb.out().join("err")).unwrap(),
        "error: checkpoint sync is broken: participant bad failed (exited with code 4)\n"
    );
}

#[test]
fn reassigned_participant_passes_through_with_its_earlier_arrival() {
    let mut sb = Sandbox::new();
    let session = sb.start_plan(
        "pass.toml",
        "name = \"pass\"\nworkers = 2\n[[checkpoint]]\nname = \"cp\"\ntasks = [\"a\", \"b\"]\n\
         [[task]]\nid = \"a\"\nrun = 'worker checkpoint cp --timeout 30s; echo \"a$MAESTRO_ATTEMPT\" >> \"$OUT/passed\"; if [ \"$MAESTRO_ATTEMPT\" = 1 ]; then sleep 1000; fi'\n\
         [[task]]\nid = \"b\"\nrun = 'while [ ! -e \"$OUT/go\" ]; do sleep 0.02; done; worker checkpoint cp --timeout 30s'\n",
        &[],
    );
    wait_until(Duration::from_secs(20), "a to arrive", || {
        session.join("checkpoints/cp/a.ready").exists()
    });
    // The task can arrive before its worker journals the start: wait for that line too.
    let w = wait_started(&session, "a", 1);
    signal(worker_pid(&session, &w), "-KILL");
    wait_until(Duration::from_secs(20), "a's second attempt", || {
        started_line(&session, "a", 2).is_some()
    });
    fs::write(sb.out().join("go"), "").unwrap();
    assert_eq!(sb.wait_last(Duration::from_secs(30)), 0);
    assert_eq!(fs::read_to_string(sb.out().join("passed")).unwrap(), "a2\n");
}

#[test]
fn signal_starts_the_downstream_task_before_the_upstream_exits() {
    let sb = Sandbox::new();
    let o = sb.run_plan(
        "signal.toml",
        "name = \"pipe\"\nworkers = 2\n\
         [[task]]\nid = \"extract\"\nrun = 'worker signal first-batch; while [ ! -e \"$OUT/consumer-started\" ]; do sleep 0.02; done; date +%s%N > \"$OUT/extract-end\"'\n\
         [[task]]\nid = \"load\"\nrun = 'date +%s%N > \"$OUT/load-start\"; touch \"$OUT/consumer-started\"'\nafter = [\"signal:first-batch\"]\n",
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let start = ns_lines(&sb.out().join("load-start"))[0];
    let end = ns_lines(&sb.out().join("extract-end"))[0];
    assert!(start < end, "load must start while extract still runs");
}

#[test]
fn never_raised_signal_skips_its_waiters_and_wait_signal_times_out() {
    let sb = Sandbox::new();
    let o = sb.run_plan(
        "nosignal.toml",
        "name = \"nosig\"\n\
         [[task]]\nid = \"up\"\nrun = 'worker wait-signal never --timeout 300ms 2> \"$OUT/err\"; echo $? > \"$OUT/code\"'\n\
         [[task]]\nid = \"down\"\nrun = 'true'\nafter = [\"signal:never\"]\n",
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let session = session_of(&o);
    let down = outcome(&session, "down");
    assert_eq!(down["state"], "skipped");
    assert_eq!(down["reason"], "signal never was never raised");
    assert_eq!(fs::read_to_string(sb.out().join("code")).unwrap(), "1\n");
    assert_eq!(
        fs::read_to_string(sb.out().join("err")).unwrap(),
        "error: wait-signal never: timed out after 300ms\n"
    );
}

#[test]
fn lock_serialises_read_modify_write_of_eight_tasks() {
    let sb = Sandbox::new();
    fs::write(sb.out().join("counter"), "0").unwrap();
    let mut plan = String::from("name = \"counter\"\nworkers = 8\n");
    for i in 0..8 {
        plan.push_str(&format!(
            "[[task]]\nid = \"t{i}\"\nrun = '''\nfor n in $(seq 100); do\n  worker lock counter --timeout 60s -- sh -c 'v=$(cat \"$OUT/counter\"); sleep 0.001; echo $((v+1)) > \"$OUT/counter\"'\ndone\n'''\n"
        ));
    }
    let o = sb.run_plan("counter.toml", &plan, &["-q"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        fs::read_to_string(sb.out().join("counter")).unwrap().trim(),
        "800"
    );
}

#[test]
fn lock_order_violation_is_refused_at_once() {
    let sb = Sandbox::new();
    let o = sb.run_plan(
        "order.toml",
        "name = \"order\"\n[locks]\norder = [\"schema\", \"table\", \"row\"]\n\
         [[task]]\nid = \"good\"\nrun = 'worker lock schema -- worker lock table -- true'\n\
         [[task]]\nid = \"bad\"\nrun = 'worker lock table -- worker lock schema -- true 2> \"$OUT/err\"'\n",
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let session = session_of(&o);
    assert_eq!(outcome(&session, "good")["state"], "succeeded");
    assert_eq!(outcome(&session, "bad")["state"], "failed");
    assert_eq!(
        fs::read_to_string(sb.out().join("err")).unwrap(),
        "error: order violation: task bad holds lock table and may not take schema (order: schema > table > row)\n"
    );
}

#[test]
fn two_task_deadlock_is_broken_by_failing_the_lowest_priority_wait() {
    let sb = Sandbox::new();
    let take = |first: &str, second: &str, gate: &str| {
        format!(
            "worker lock {first} -- sh -c 'touch \"$OUT/{gate}\"; while [ ! -e \"$OUT/a-has\" ] || [ ! -e \"$OUT/b-has\" ]; do sleep 0.02; done; worker lock {second} -- true' 2> \"$OUT/err-$MAESTRO_TASK\""
        )
    };
    let o = sb.run_plan(
        "deadlock.toml",
        &format!(
            "name = \"deadlock\"\nworkers = 2\n\
             [[task]]\nid = \"a\"\npriority = 5\nrun = '''{}'''\n\
             [[task]]\nid = \"b\"\npriority = 1\nrun = '''{}'''\n",
            take("x", "y", "a-has"),
            take("y", "x", "b-has")
        ),
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let session = session_of(&o);
    assert_eq!(outcome(&session, "a")["state"], "succeeded");
    assert_eq!(outcome(&session, "b")["state"], "failed");
    let err = fs::read_to_string(sb.out().join("err-b")).unwrap();
    assert!(
        err.starts_with("error: lock x: deadlock: ")
            && err.ends_with("; task b gives up its wait\n"),
        "{err}"
    );
    assert!(
        err.contains("b waits for x") && err.contains("a waits for y"),
        "{err}"
    );
    let o = sb.run(&["locks", session.to_str().unwrap()]);
    assert!(o.status.success());
}

#[test]
fn race_first_success_wins_and_losers_are_lost() {
    let sb = Sandbox::new();
    let o = sb.run_plan(
        "race.toml",
        r#"
name = "race"
workers = 3
[[race]]
id = "design"
tasks = ["fast", "slow", "broken"]
pick = "first"
[[task]]
id = "fast"
run = 'sleep 0.3; echo "{\"by\": \"fast\"}" > "$MAESTRO_RESULT"'
[[task]]
id = "slow"
run = 'sleep 1000'
[[task]]
id = "broken"
run = 'exit 1'
[[task]]
id = "use"
run = 'worker result design > "$OUT/result"'
after = ["design"]
marks = ["DESIGN_DONE.md"]
"#,
        &[],
    );
    let session = session_of(&o);
    let st = status_json(&sb, &session);
    assert_states(
        &st,
        &[
            ("fast", "succeeded"),
            ("slow", "lost"),
            ("broken", "failed"),
            ("use", "succeeded"),
        ],
    );
    assert_eq!(
        fs::read_to_string(sb.out().join("result")).unwrap(),
        "{\"by\":\"fast\"}\n"
    );
    let race = read_json(&session.join("races/design/outcome.json")).unwrap();
    assert_eq!(race["winner"], "fast");
    let marker = fs::read_to_string(session.join("markers/DESIGN_DONE.md")).unwrap();
    assert!(
        marker.starts_with("# DESIGN_DONE.md\n\ntask: use\n"),
        "{marker}"
    );
    // `broken` failed, so the session reports failure; the loser does not count.
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

#[test]
fn race_best_picks_the_highest_score_once_all_finished() {
    let sb = Sandbox::new();
    let o = sb.run_plan(
        "best.toml",
        r#"
name = "best"
workers = 3
[[race]]
id = "plan"
tasks = ["p1", "p2", "p3"]
pick = "best"
score = "/score"
[[task]]
id = "p1"
run = 'echo "{\"score\": 3}" > "$MAESTRO_RESULT"'
[[task]]
id = "p2"
run = 'sleep 0.3; echo "{\"score\": 9, \"name\": \"p2\"}" > "$MAESTRO_RESULT"'
[[task]]
id = "p3"
run = 'echo "{\"score\": 5}" > "$MAESTRO_RESULT"'
[[task]]
id = "after"
run = 'worker result plan > "$OUT/result"'
after = ["plan"]
"#,
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let session = session_of(&o);
    let st = status_json(&sb, &session);
    assert_states(&st, &[("p2", "succeeded"), ("p1", "lost"), ("p3", "lost")]);
    assert_eq!(
        fs::read_to_string(sb.out().join("result")).unwrap(),
        "{\"name\":\"p2\",\"score\":9}\n"
    );
    assert_eq!(
        read_json(&session.join("races/plan/outcome.json")).unwrap()["score"],
        9.0
    );
}

#[test]
fn verb_timeouts_and_misuse_have_clear_errors() {
    let sb = Sandbox::new();
    let o = sb.run_plan(
        "verbs.toml",
        "name = \"verbs\"\n[[checkpoint]]\nname = \"cp\"\ntasks = [\"a\", \"b\"]\n\
         [[task]]\nid = \"a\"\nrun = 'true'\n[[task]]\nid = \"b\"\nrun = 'true'\nafter = [\"a\"]\n",
        &["-q"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let session = session_of(&o);
    let verb = |task: &str, args: &[&str]| {
        let out = Command::new(WORKER)
            .args(args)
            .env("MAESTRO_SESSION", &session)
            .env("MAESTRO_TASK", task)
            .env_remove("MAESTRO_ATTEMPT")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(
        verb("a", &["checkpoint", "cp", "--timeout", "200ms"]),
        (
            Some(1),
            "error: checkpoint cp: timed out after 200ms waiting for b\n".into()
        )
    );
    assert_eq!(
        verb(
            "a",
            &["checkpoint", "free", "--parties", "3", "--timeout", "100ms"]
        ),
        (
            Some(1),
            "error: checkpoint free: timed out after 100ms waiting for 2 more of 3\n".into()
        )
    );
    assert_eq!(
        verb("a", &["checkpoint", "other"]),
        (
            Some(2),
            "error: checkpoint other is not in the plan; pass --parties N\n".into()
        )
    );
    assert_eq!(
        verb("zz", &["checkpoint", "cp"]),
        (
            Some(2),
            format!(
                "error: session {} has no task \"zz\"\n",
                session_id(&session)
            )
        )
    );
    assert_eq!(
        verb("a", &["wait-signal", "nope", "--timeout", "100ms"]),
        (
            Some(1),
            "error: wait-signal nope: timed out after 100ms\n".into()
        )
    );
    assert_eq!(
        verb("a", &["signal", "../x"]),
        (Some(2), "error: invalid signal name \"../x\": must be 1-64 characters of [A-Za-z0-9._-] not starting with a dot\n".into())
    );
    // A lock held elsewhere: the wait times out naming the holder.
    let mut holder = Command::new(WORKER)
        .args(["lock", "db", "--", "sleep", "30"])
        .env("MAESTRO_SESSION", &session)
        .env("MAESTRO_TASK", "b")
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(30), "b to hold db", || {
        session.join("locks/db.holders/b.json").exists()
    });
    let r = verb("a", &["lock", "db", "--timeout", "200ms", "--", "true"]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(
        r,
        (
            Some(1),
            "error: lock db: timed out after 200ms (held by b)\n".into()
        )
    );
    assert_eq!(
        verb("a", &["result", "b"]),
        (Some(1), "error: task b has no result (succeeded)\n".into())
    );
}

/// A task's directory is made when it is first assigned, not at session start
/// (10 000 mkdirs before the first task could start); a task that has not run yet is still
/// a task of the session for every verb.
#[test]
fn pending_task_without_a_directory_is_still_a_task() {
    let mut sb = Sandbox::new();
    let session = sb.start_plan(
        "pending.toml",
        "name = \"pending\"\n[[task]]\nid = \"a\"\n\
         run = 'while [ ! -e \"$OUT/go\" ]; do sleep 0.02; done'\n\
         [[task]]\nid = \"b\"\nrun = 'true'\nafter = [\"a\"]\n",
        &[],
    );
    wait_started(&session, "a", 1);
    assert!(
        !session.join("tasks/b").exists(),
        "b's directory waits for b"
    );
    let id = session_id(&session);
    let verb = |args: &[&str]| {
        let out = Command::new(WORKER)
            .args(args)
            .env("MAESTRO_SESSION", &session)
            .env("MAESTRO_TASK", "a")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(
        verb(&["result", "b"]),
        (Some(1), "error: task b has not finished\n".into())
    );
    assert_eq!(
        verb(&["result", "zz"]),
        (
            Some(2),
            format!("error: session {id} has no task or race \"zz\"\n")
        )
    );
    fs::write(sb.out().join("go"), "").unwrap();
    assert_eq!(sb.wait_last(Duration::from_secs(30)), 0);
    assert!(session.join("tasks/b/outcome.json").exists());
}

/// Parties that see everyone arrived go on by themselves (the orchestrator's
/// `proceed` is its record, not their wake-up), so a barrier releases even while no
/// orchestrator runs (it died, or is being resumed).
#[test]
fn barrier_releases_without_an_orchestrator_once_everyone_arrived() {
    let sb = Sandbox::new();
    let session = sb.run_ok(
        "two.toml",
        "name = \"two\"\n[[task]]\nid = \"a\"\nrun = 'true'\n[[task]]\nid = \"b\"\nrun = 'true'\n",
    );
    let party = |task: &str| {
        Command::new(WORKER)
            .args(["checkpoint", "late", "--parties", "2", "--timeout", "20s"])
            .env("MAESTRO_SESSION", &session)
            .env("MAESTRO_TASK", task)
            .env("MAESTRO_ATTEMPT", "1")
            .spawn()
            .unwrap()
    };
    let mut first = party("a");
    wait_until(Duration::from_secs(20), "a to arrive", || {
        session.join("checkpoints/late/a.ready").exists()
    });
    let second = party("b").wait().unwrap();
    assert!(second.success(), "the last party goes on at once");
    assert!(first.wait().unwrap().success(), "the first is released too");
    assert!(!session.join("checkpoints/late/proceed").exists());
}
