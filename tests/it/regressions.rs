//! Regressions: each test reproduces one known bug, and is named after what should happen
//! instead. They failed on the code they were written against (see each test's comment for
//! how the bug showed); the fixes land against them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::util::*;

// ---- helpers ---------------------------------------------------------------------------

/// Check the row of `session` in `orchestrator list`: its STATE and DONE cells (`why` says
/// what they must show), and an AGE cell in whole seconds.
fn assert_listed(sb: &Sandbox, session: &Path, state: &str, done: &str, why: &str) {
    let id = session_id(session);
    let o = sb.run(&["list"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(header, ["SESSION", "STATE", "DONE", "AGE"], "{text}");
    let row: Vec<&str> = lines
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&id.as_str()))
        .unwrap_or_else(|| panic!("no row for {id} in:\n{text}"));
    assert_eq!(row[..3], [id.as_str(), state, done], "{why}");
    let digits = row[3].strip_suffix('s').unwrap_or("");
    assert!(
        !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()),
        "AGE cell {:?}",
        row[3]
    );
}

// ---- resume accepted the late exit of a superseded attempt -----------------------------

/// Get `gate` running on `w1` and `long` on `w2`, each attempt 1, under an orchestrator
/// resumed with `--workers 1`: both workers are busy and the pool is already over its size,
/// so a new attempt of `long` is queued behind `gate` on `w1` and stays unclaimed.
///
/// How: `long` waits for a signal. `run --workers 1` gives `gate` to `w1`; the orchestrator
/// is killed, the signal raised, and the session resumed with `--workers 2`, which starts
/// `w2` for `long`; that orchestrator is killed too and the session resumed with
/// `--workers 1`. (`long` must run on the higher-numbered worker: today's `queue_ready`
/// gives up at the first busy worker, in id order, that a reassigned task avoids, so with
/// `long` on `w1` its new attempt would never be queued behind `w2`.)
///
/// The plan is `settings` (the session's keys), two workers, `gate` (blocked until
/// `$OUT/end`) and `long`, which waits for the signal and then has `long` (its keys).
fn two_busy_workers_one_slot(sb: &mut Sandbox, settings: &str, long: &str) -> PathBuf {
    let plan = format!(
        "{settings}workers = 2\n\
         [[task]]\nid = \"gate\"\nrun = '{}'\n\
         [[task]]\nid = \"long\"\nafter = [\"signal:start-long\"]\n{long}",
        gated("end")
    );
    let session = sb.start_plan("plan.toml", &plan, &["--workers", "1"]);
    assert_eq!(wait_started(&session, "gate", 1), "w1");
    sb.kill_orchestrator(&session);
    let s = session.to_str().unwrap().to_string();
    let o = Command::new(WORKER)
        .args(["--session", &s, "signal", "start-long"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(sb.start(&["resume", &s, "--workers", "2"]), session);
    assert_eq!(wait_started(&session, "long", 1), "w2");
    sb.kill_orchestrator(&session);
    assert_eq!(sb.start(&["resume", &s, "--workers", "1"]), session);
    session
}

/// Wait until attempt 2 of `long` is assigned (queued, unclaimed) behind `gate` on `wg`,
/// then SIGKILL the orchestrator: `gate` still runs, so nobody can claim attempt 2.
fn kill_once_attempt_2_is_queued(sb: &mut Sandbox, session: &Path, wg: &str) {
    wait_until(
        Duration::from_secs(30),
        "attempt 2 of long to be assigned",
        || has_event(session, "task_assigned", "long", 2),
    );
    // The journal line comes first (the fence), the assignment file right after it.
    let queued = session.join(format!("workers/{wg}/assigned/long.2"));
    wait_until(
        Duration::from_secs(10),
        "attempt 2 queued unclaimed behind gate",
        || queued.exists(),
    );
    sb.kill_orchestrator(session);
    assert!(
        queued.exists(),
        "nobody claimed attempt 2 before the orchestrator died"
    );
}

/// Wait for attempt 1's late exit, resume, let `gate` end, and check that attempt 1 never
/// became the outcome.
fn resume_after_the_late_exit_and_check_attempt_1_is_stale(sb: &mut Sandbox, session: &Path) {
    wait_until(
        Duration::from_secs(30),
        "the late exit of attempt 1",
        || session.join("tasks/long/attempt-1/exit.json").exists(),
    );
    let s = session.to_str().unwrap().to_string();
    let again = sb.start(&["resume", &s]);
    assert_eq!(again, session);
    fs::write(sb.out().join("end"), "").unwrap();
    let code = sb.wait_last(Duration::from_secs(60));
    let o = outcome(session, "long");
    assert_ne!(
        o["attempt"], 1,
        "resume accepted the late exit of attempt 1 although attempt 2 had been assigned: {o}"
    );
    assert!(o["attempt"].as_u64().unwrap() >= 2, "{o}");
    assert_eq!(o["state"], "succeeded", "{o}");
    assert!(
        has_event(session, "stale_result", "long", 1),
        "attempt 1's late exit is journalled as stale"
    );
    let accepted = events(session)
        .iter()
        .filter(|e| e["event"] == "task_finished" && e["task"] == "long")
        .count();
    assert_eq!(accepted, 1, "long decided once");
    assert_eq!(code, 0);
}

/// Superseded by a lease: attempt 1 of `long` loses its lease (its worker `w2` is SIGSTOPped;
/// the orchestrator SIGKILLs the attempt's group), so attempt 2 is assigned (queued behind
/// `gate` on `w1`: see [`two_busy_workers_one_slot`]); the orchestrator is
/// SIGKILLed before anyone claims attempt 2; the stopped worker is continued and records
/// attempt 1's (killed) exit; then `resume`. Before the fix, resume took attempt 1's late
/// exit as the outcome (`failed`, attempt 1).
#[test]
fn resume_refuses_the_late_exit_of_an_attempt_superseded_by_a_lease() {
    let mut sb = Sandbox::new();
    let session = two_busy_workers_one_slot(
        &mut sb,
        "name = \"lease\"\nlease = \"3s\"\n",
        &format!("run = '{}'\n", first_attempt_waits_for("go", "")),
    );
    let pid = worker_pid(&session, "w2");
    signal(pid, "-STOP");
    kill_once_attempt_2_is_queued(&mut sb, &session, "w1");
    assert!(has_event(&session, "attempt_ended", "long", 1));
    signal(pid, "-CONT");
    resume_after_the_late_exit_and_check_attempt_1_is_stale(&mut sb, &session);
}

/// Superseded by a reassign: `orchestrator reassign` stops attempt 1 of `long` (which ignores
/// SIGTERM and has a long kill_grace, so it keeps running) and attempt 2 is queued behind
/// `gate` on `w1`; the orchestrator is SIGKILLed before anyone claims attempt
/// 2; attempt 1 then exits 0; then `resume`. Before the fix, resume took attempt 1's late
/// exit as the outcome (attempt 1).
#[test]
fn resume_refuses_the_late_exit_of_an_attempt_superseded_by_a_reassign() {
    let mut sb = Sandbox::new();
    let session = two_busy_workers_one_slot(
        &mut sb,
        "name = \"reassign\"\n",
        &format!(
            "kill_grace = \"1h\"\nrun = '{}'\n",
            first_attempt_waits_for("go", "trap \"\" TERM; echo > \"$OUT/trapped\"; ")
        ),
    );
    wait_until(Duration::from_secs(30), "long to ignore SIGTERM", || {
        sb.out().join("trapped").exists()
    });
    let id = session_id(&session);
    let o = sb.run(&["reassign", &id, "long"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "task long: stopping attempt 1 on w2; attempt 2 goes to another worker\n"
    );
    kill_once_attempt_2_is_queued(&mut sb, &session, "w1");
    assert!(
        !session.join("tasks/long/attempt-1/exit.json").exists(),
        "attempt 1 still runs (it ignores SIGTERM)"
    );
    fs::write(sb.out().join("go"), "").unwrap();
    resume_after_the_late_exit_and_check_attempt_1_is_stale(&mut sb, &session);
}

// ---- resume journalled the exit it had just accepted as stale --------------------------

/// A worker writes an attempt's `exit.json`, then its journal line `exited`. A resume that
/// looks between the two takes the exit from `exit.json` (the worker's journal had no
/// such line when it was read); the line comes in afterwards. Before the fix the line
/// was fed as a second exit and journalled `stale_result` / `attempt_ended: stale`: the
/// journal called the attempt whose exit decided the task superseded (the soak's "a
/// result from an older attempt was accepted", under SIGSTOP pauses and resumes).
///
/// The two writes are microseconds apart; the test holds the worker between them: with
/// the orchestrator killed, it stops `a`'s worker before it records anything, lets the
/// task end, writes the `exit.json` the worker writes first, resumes, and continues the
/// worker, which writes its own `exit.json` and journals `exited`. Idle, it is told to
/// stop and leaves. Exits now come from journal lines only: the resume leaves the file of
/// a live worker alone, and takes the exit once, from the line.
#[test]
fn resume_takes_an_exit_once_when_the_worker_journals_it_after_the_look() {
    let mut sb = Sandbox::new();
    let session = sb.start_plan(
        "twice.toml",
        &format!(
            "name = \"twice\"\nworkers = 2\n\
             [[task]]\nid = \"a\"\nrun = '{}'\n\
             [[task]]\nid = \"b\"\nrun = '{}'\n",
            gated("go"),
            gated("end")
        ),
        &[],
    );
    let wa = wait_started(&session, "a", 1);
    wait_started(&session, "b", 1);
    // The orchestrator first: a worker stopped when its parent dies would be sent SIGHUP
    // by the kernel (its process group becomes orphaned with a stopped member).
    sb.kill_orchestrator(&session);
    let pid = worker_pid(&session, &wa);
    signal(pid, "-STOP");
    let pgid = pgid_of(&session, "a", 1);
    fs::write(sb.out().join("go"), "").unwrap();
    wait_until(Duration::from_secs(30), "a's task to end", || {
        group_members(pgid).is_empty()
    });
    let started = started_line(&session, "a", 1).unwrap();
    let record = serde_json::json!({
        "task": "a", "attempt": 1, "worker": wa, "exit_code": 0, "signal": null,
        "started_at": started["started_at"], "ended_at": started["started_at"],
        "duration_ms": 1, "timed_out": false, "has_result": false,
    });
    fs::write(
        session.join("tasks/a/attempt-1/exit.json"),
        serde_json::to_vec(&record).unwrap(),
    )
    .unwrap();

    let s = session.to_str().unwrap().to_string();
    assert_eq!(sb.start(&["resume", &s]), session);
    wait_until(Duration::from_secs(30), "the resume", || {
        events(&session)
            .iter()
            .any(|e| e["event"] == "session_resumed")
    });
    signal(pid, "-CONT");
    wait_until(Duration::from_secs(30), "a decided from its line", || {
        has_event(&session, "task_finished", "a", 1)
    });
    wait_until(Duration::from_secs(30), "a's worker seen leaving", || {
        events(&session)
            .iter()
            .any(|e| e["event"] == "worker_exited" && e["worker"] == wa.as_str())
    });
    assert!(
        journal_lines(&session, "exited")
            .iter()
            .any(|e| e["task"] == "a" && e["attempt"] == 1),
        "the worker journalled a's exit after the resume"
    );
    fs::write(sb.out().join("end"), "").unwrap();
    assert_eq!(sb.wait_last(Duration::from_secs(60)), 0);
    assert!(
        !has_event(&session, "stale_result", "a", 1),
        "attempt 1's exit, accepted on resume, was journalled stale when its line came in"
    );
    let decided: Vec<Value> = events(&session)
        .into_iter()
        .filter(|e| e["event"] == "task_finished" && e["task"] == "a")
        .collect();
    assert_eq!(decided.len(), 1, "{decided:?}");
    assert!(
        !events(&session).iter().any(|e| e["event"] == "quarantined"),
        "a live worker's file was quarantined"
    );
    let o = outcome(&session, "a");
    assert_eq!(
        (
            o["state"].as_str(),
            o["attempt"].as_u64(),
            o["worker"].as_str()
        ),
        (Some("succeeded"), Some(1), Some(wa.as_str())),
        "{o}"
    );
}

// ---- a worker killed while the orchestrator was down left its task running -------------

/// The orchestrator is SIGKILLed, then the worker running attempt 1 of `long` is
/// SIGKILLed too; its task keeps running in its own process group. `resume` gives the task
/// a new attempt, which succeeds, but before the fix nobody stopped attempt 1's group.
#[test]
fn resume_stops_the_attempt_of_a_worker_killed_while_the_orchestrator_was_down() {
    let mut sb = Sandbox::new();
    let session = sb.start_plan(
        "orphan.toml",
        &format!(
            "name = \"orphan\"\nworkers = 1\n[[task]]\nid = \"long\"\nrun = '{}'\n",
            first_attempt_waits_for("never", "")
        ),
        &[],
    );
    let w1 = wait_started(&session, "long", 1);
    let pgid = pgid_of(&session, "long", 1);
    sb.kill_orchestrator(&session);
    let wpid = worker_pid(&session, &w1);
    signal(wpid, "-KILL");
    wait_gone(wpid, "the worker to die");
    assert!(
        !group_members(pgid).is_empty(),
        "attempt 1 outlives its worker"
    );
    let s = session.to_str().unwrap().to_string();
    sb.start(&["resume", &s]);
    let code = sb.wait_last(Duration::from_secs(60));
    wait_all_gone(
        Duration::from_secs(10),
        "after resume, attempt 1 of long (its worker was killed while the orchestrator was down)",
        &[],
        &[("attempt 1 of long".to_string(), pgid)],
    );
    assert_eq!(code, 0);
    let o = outcome(&session, "long");
    assert_eq!(o["state"], "succeeded", "{o}");
    assert!(o["attempt"].as_u64().unwrap() >= 2, "{o}");
}

// ---- cancel of a dead session cancelled tasks that had succeeded -----------------------

/// `a` succeeded (outcome written) before the orchestrator was SIGKILLed; `b` exited
/// 0 while it was down (its worker lives on); `long` still runs. `orchestrator cancel`
/// takes the session over. Before the fix, `b` ended `cancelled` (and `retry` ran it again):
/// the cancel came before the exit already on disk was accepted.
#[test]
fn cancel_of_a_dead_session_keeps_succeeded_outcomes() {
    let mut sb = Sandbox::new();
    let session = sb.start_plan(
        "keep.toml",
        &format!(
            "name = \"keep\"\nworkers = 3\n\
             [[task]]\nid = \"a\"\nrun = 'echo x >> \"$OUT/runs-a\"'\n\
             [[task]]\nid = \"b\"\nrun = '{}'\n\
             [[task]]\nid = \"long\"\nrun = '{}'\n\
             [[task]]\nid = \"later\"\nrun = \"true\"\nafter = [\"long\"]\n",
            gated("go-b"),
            gated("never")
        ),
        &[],
    );
    let id = session_id(&session);
    wait_started(&session, "b", 1);
    wait_started(&session, "long", 1);
    let a_path = session.join("tasks/a/outcome.json");
    wait_until(Duration::from_secs(30), "a's outcome", || a_path.exists());
    assert_eq!(outcome(&session, "a")["state"], "succeeded");
    sb.kill_orchestrator(&session);
    let a_before = fs::read(&a_path).unwrap();
    fs::write(sb.out().join("go-b"), "").unwrap();
    let b_exit = session.join("tasks/b/attempt-1/exit.json");
    wait_until(Duration::from_secs(30), "b's exit", || b_exit.exists());
    assert_eq!(read_json(&b_exit).unwrap()["exit_code"], 0);

    let o = sb.run(&["cancel", &id]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        fs::read(&a_path).unwrap(),
        a_before,
        "a's outcome.json changed"
    );
    let b = outcome(&session, "b");
    assert_eq!(
        b["state"], "succeeded",
        "b had exited 0 before the cancel, yet its outcome is: {b}"
    );
    assert_eq!(b["attempt"], 1, "{b}");
    assert_status(
        &sb,
        &session,
        "cancelled",
        &[
            ("a", "succeeded"),
            ("b", "succeeded"),
            ("long", "cancelled"),
            ("later", "cancelled"),
        ],
    );
    for t in ["a", "b"] {
        let o = sb.run(&["retry", &id, t]);
        assert_eq!(o.status.code(), Some(2), "retry {t}: {}", stderr(&o));
        assert_eq!(
            stderr(&o),
            format!(
                "error: task {t} succeeded; only failed, skipped or cancelled tasks can be retried\n"
            )
        );
    }
    for t in ["a", "b"] {
        assert_eq!(
            fs::read_to_string(sb.out().join(format!("runs-{t}"))).unwrap(),
            if t == "a" { "x\n" } else { "1\n" },
            "{t} ran once"
        );
    }
}

// ---- cancel failed after maestro failed internally -------------------------------------

/// `tasks/b/retry.json` is made a directory, so when `b` fails (it has a retry left)
/// the orchestrator cannot write its retry plan and exits 3, leaving its workers and
/// `long` running. Before the fix, `orchestrator cancel` failed the same way (exit 3, the
/// same message) and stopped nothing.
#[test]
fn cancel_works_after_an_internal_failure() {
    let mut sb = Sandbox::new();
    let session = sb.start_plan(
        "broken.toml",
        &format!(
            "name = \"broken\"\nworkers = 2\n\
             [[task]]\nid = \"b\"\nretries = 1\nbackoff = {{ initial = \"50ms\" }}\nrun = '{}; exit 1'\n\
             [[task]]\nid = \"long\"\nrun = 'sleep 1000 & echo $! > \"$OUT/bg\"; wait'\n\
             [[task]]\nid = \"later\"\nrun = \"true\"\nafter = [\"long\"]\n",
            gated("go-b")
        ),
        &["-q"],
    );
    let id = session_id(&session);
    wait_started(&session, "b", 1);
    wait_started(&session, "long", 1);
    wait_until(Duration::from_secs(30), "long's background sleep", || {
        sb.out().join("bg").exists()
    });
    fs::create_dir(session.join("tasks/b/retry.json")).unwrap();
    fs::write(sb.out().join("go-b"), "").unwrap();
    assert_eq!(
        sb.wait_last(Duration::from_secs(30)),
        3,
        "the orchestrator fails internally"
    );
    let err = fs::read_to_string(sb.path().join("orchestrator.stderr")).unwrap();
    assert!(err.contains("tasks/b/retry.json"), "{err}");
    let workers = worker_pids(&session);
    let bg = pid_in(&sb.out().join("bg"));
    let groups = vec![
        (
            "attempt 1 of long".to_string(),
            pgid_of(&session, "long", 1),
        ),
        ("long's background sleep".to_string(), bg as i64),
    ];
    assert!(
        !survivors(&workers, &groups).is_empty(),
        "workers and long outlive the failed orchestrator"
    );

    let o = sb.run(&["cancel", &id]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "cancel after the orchestrator failed internally: {}",
        stderr(&o)
    );
    wait_all_gone(Duration::from_secs(20), "after cancel", &workers, &groups);
    for t in ["b", "long", "later"] {
        assert_eq!(outcome(&session, t)["state"], "cancelled", "{t}");
    }
    let st = status_json(&sb, &session);
    assert_eq!(st["state"], "cancelled");
}

// ---- counts that lied ------------------------------------------------------------------

/// A race with pick = "first": `x` wins, `y` and `z` lose. Every task is decided,
/// but before the fix `list` said DONE 2/4 (losers were not counted).
#[test]
fn list_counts_race_losers_as_done() {
    let sb = Sandbox::new();
    let session = sb.run_ok(
        "race.toml",
        "name = \"race\"\nworkers = 3\n\
         [[race]]\nid = \"design\"\ntasks = [\"x\", \"y\", \"z\"]\npick = \"first\"\n\
         [[task]]\nid = \"x\"\nrun = \"true\"\n\
         [[task]]\nid = \"y\"\nrun = \"sleep 1000\"\n\
         [[task]]\nid = \"z\"\nrun = \"sleep 1000\"\n\
         [[task]]\nid = \"after\"\nrun = \"true\"\nafter = [\"design\"]\n",
    );
    let st = status_json(&sb, &session);
    assert_states(&st, &[("y", "lost"), ("z", "lost")]);
    assert_listed(
        &sb,
        &session,
        "succeeded",
        "4/4",
        "a finished session has every task done",
    );
}

/// A failed session (`bad` fails, `dep` is skipped) with a race loser (`z`): every
/// task is decided. Before the fix `list` said `failed 5/6`.
#[test]
fn list_shows_a_failed_session_as_failed() {
    let sb = Sandbox::new();
    let o = sb.run_plan(
        "fail.toml",
        "name = \"fail\"\nworkers = 3\n\
         [[race]]\nid = \"design\"\ntasks = [\"y\", \"z\"]\npick = \"first\"\n\
         [[task]]\nid = \"y\"\nrun = \"true\"\n\
         [[task]]\nid = \"z\"\nrun = \"sleep 1000\"\n\
         [[task]]\nid = \"after\"\nrun = \"true\"\nafter = [\"design\"]\n\
         [[task]]\nid = \"bad\"\nrun = \"exit 2\"\n\
         [[task]]\nid = \"dep\"\nrun = \"true\"\nafter = [\"bad\"]\n\
         [[task]]\nid = \"ok\"\nrun = \"true\"\n",
        &["-q"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let session = session_of(&o);
    assert_status(
        &sb,
        &session,
        "failed",
        &[("z", "lost"), ("dep", "skipped")],
    );
    assert_listed(
        &sb,
        &session,
        "failed",
        "6/6",
        "a failed session whose tasks are all decided",
    );
}

/// One task of a live session is cancelled (`orchestrator cancel SESSION long`, with
/// its dependent); every other task succeeds. Before the fix the session ended `failed`.
#[test]
fn cancelling_one_task_ends_the_session_cancelled_not_failed() {
    let mut sb = Sandbox::new();
    let session = sb.start_plan(
        "one.toml",
        &format!(
            "name = \"one\"\nworkers = 2\n\
             [[task]]\nid = \"long\"\nrun = '{}'\n\
             [[task]]\nid = \"child\"\nrun = \"true\"\nafter = [\"long\"]\n\
             [[task]]\nid = \"quick\"\nrun = \"true\"\n",
            gated("never")
        ),
        &[],
    );
    let id = session_id(&session);
    wait_started(&session, "long", 1);
    wait_until(Duration::from_secs(30), "quick's outcome", || {
        session.join("tasks/quick/outcome.json").exists()
    });
    let o = sb.run(&["cancel", &id, "long"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "task long cancelled (1 dependents cancelled too)\n"
    );
    let code = sb.wait_last(Duration::from_secs(30));
    let summary = read_json(&session.join("summary.json")).unwrap();
    assert_eq!(
        summary["state"], "cancelled",
        "a session whose only undone tasks were cancelled"
    );
    assert_status(
        &sb,
        &session,
        "cancelled",
        &[
            ("quick", "succeeded"),
            ("long", "cancelled"),
            ("child", "cancelled"),
        ],
    );
    assert_eq!(code, 1);
}

// ---- Ctrl-C (or SIGTERM) on `orchestrator run` -----------------------------------------

/// Start a session with a finished task (`done`), a task that dies on SIGTERM (`plain`) and
/// one that ignores it and leaves a grandchild (`stubborn`, kill_grace 500ms); send `sig`
/// to `orchestrator run`. It must exit with `code`, every worker and task process must be
/// gone, the session must read `interrupted`, and `resume` must finish it without running
/// `done` again.
fn interrupt_run(sig: &str, code: i32) {
    let mut sb = Sandbox::new();
    let session = sb.start_plan(
        "int.toml",
        &format!(
            "name = \"int\"\nworkers = 3\n\
             [[task]]\nid = \"done\"\nrun = 'echo x >> \"$OUT/runs-done\"'\n\
             [[task]]\nid = \"plain\"\nrun = '{}'\n\
             [[task]]\nid = \"stubborn\"\nkill_grace = \"500ms\"\n\
             run = 'trap \"\" TERM; sleep 1000 & echo > \"$OUT/armed\"; {}'\n",
            gated("go"),
            wait_for_file("go")
        ),
        &[],
    );
    wait_until(Duration::from_secs(30), "done's outcome", || {
        session.join("tasks/done/outcome.json").exists()
    });
    wait_started(&session, "plain", 1);
    wait_started(&session, "stubborn", 1);
    wait_until(
        Duration::from_secs(30),
        "stubborn to ignore SIGTERM",
        || sb.out().join("armed").exists(),
    );
    let workers = worker_pids(&session);
    let groups: Vec<(String, i64)> = ["plain", "stubborn"]
        .iter()
        .map(|t| (format!("task {t}"), pgid_of(&session, t, 1)))
        .collect();
    assert!(survivors(&workers, &groups).len() >= 4, "all running");

    signal(orchestrator_pid(&session), sig);
    let got = sb.wait_last(Duration::from_secs(30));
    wait_all_gone(
        Duration::from_secs(15),
        &format!(
            "after {sig} on `orchestrator run` (which ended with code {got}; -1: killed by the signal)"
        ),
        &workers,
        &groups,
    );
    assert_eq!(got, code, "exit code of `orchestrator run` after {sig}");
    let st = status_json(&sb, &session);
    assert_eq!(st["state"], "interrupted");

    fs::write(sb.out().join("go"), "").unwrap();
    let o = sb.run(&["resume", session.to_str().unwrap(), "-q"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_status(
        &sb,
        &session,
        "succeeded",
        &[
            ("done", "succeeded"),
            ("plain", "succeeded"),
            ("stubborn", "succeeded"),
        ],
    );
    assert_eq!(
        fs::read_to_string(sb.out().join("runs-done")).unwrap(),
        "x\n",
        "done is not run again"
    );
}

/// Before the fix SIGINT killed the orchestrator alone (no handler: it died of the
/// signal); its background workers and their tasks kept running.
#[test]
fn ctrl_c_on_run_stops_every_worker_and_task_and_leaves_the_session_interrupted() {
    interrupt_run("-INT", 130);
}

/// The same with SIGTERM.
#[test]
fn sigterm_on_run_exits_143_and_stops_everything() {
    interrupt_run("-TERM", 143);
}

/// A second Ctrl-C does not wait for the grace: every attempt's group is killed at once
/// and the session stays interrupted (stubborn ignores SIGTERM and has an hour's grace).
#[test]
fn a_second_ctrl_c_kills_every_task_at_once() {
    let mut sb = Sandbox::new();
    let session = sb.start_plan(
        "int2.toml",
        &format!(
            "name = \"int2\"\nworkers = 1\n\
             [[task]]\nid = \"stubborn\"\nkill_grace = \"1h\"\n\
             run = 'trap \"\" TERM; echo > \"$OUT/armed\"; {}'\n",
            wait_for_file("go")
        ),
        &[],
    );
    wait_started(&session, "stubborn", 1);
    wait_until(
        Duration::from_secs(30),
        "stubborn to ignore SIGTERM",
        || sb.out().join("armed").exists(),
    );
    let workers = worker_pids(&session);
    let groups = vec![(
        "task stubborn".to_string(),
        pgid_of(&session, "stubborn", 1),
    )];
    let orch = orchestrator_pid(&session);
    signal(orch, "-INT");
    wait_until(
        Duration::from_secs(30),
        "the session to be stopping",
        || {
            journal_lines_of(&session, "session_state")
                .iter()
                .any(|e| e["state"] == "stopping")
        },
    );
    signal(orch, "-INT");
    let got = sb.wait_last(Duration::from_secs(30));
    wait_all_gone(
        Duration::from_secs(15),
        "after a second SIGINT",
        &workers,
        &groups,
    );
    assert_eq!(got, 130);
    assert_eq!(status_json(&sb, &session)["state"], "interrupted");
}

/// A closed terminal (SIGHUP) stops nothing: the orchestrator carries on and the session
/// succeeds.
#[test]
fn sighup_on_run_stops_nothing() {
    let mut sb = Sandbox::new();
    let session = sb.start_plan(
        "hup.toml",
        &format!(
            "name = \"hup\"\nworkers = 1\n[[task]]\nid = \"a\"\nrun = '{}'\n",
            wait_for_file("go")
        ),
        &[],
    );
    wait_started(&session, "a", 1);
    signal(orchestrator_pid(&session), "-HUP");
    fs::write(sb.out().join("go"), "").unwrap();
    assert_eq!(sb.wait_last(Duration::from_secs(30)), 0);
    assert_status(&sb, &session, "succeeded", &[("a", "succeeded")]);
}

fn journal_lines_of(session: &std::path::Path, kind: &str) -> Vec<serde_json::Value> {
    events(session)
        .into_iter()
        .filter(|e| e["event"] == kind)
        .collect()
}
