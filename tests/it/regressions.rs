//! Regressions: each test reproduces one known bug, and is named after what should happen
//! instead. They failed on the code they were written against (see each test's comment for
//! how the bug showed); the fixes land against them.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

// ---- helpers ------------------------------------------------------------------------

/// Send `sig` (`-KILL`, `-STOP`, ...) to process `pid`.
fn signal(pid: u64, sig: &str) {
    let st = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill {sig} {pid}");
}

fn worker_pid(session: &Path, wid: &str) -> u64 {
    read_json(&session.join("workers").join(wid).join("worker.json")).unwrap()["pid"]
        .as_u64()
        .unwrap()
}

/// Every worker pid a session recorded.
fn worker_pids(session: &Path) -> Vec<(String, u64)> {
    let mut v = Vec::new();
    for w in fs::read_dir(session.join("workers")).unwrap().flatten() {
        let id = w.file_name().to_string_lossy().into_owned();
        if let Some(pid) = read_json(&w.path().join("worker.json")).and_then(|j| j["pid"].as_u64())
        {
            v.push((id, pid));
        }
    }
    v.sort();
    v
}

fn orchestrator_pid(session: &Path) -> u64 {
    read_json(&session.join("orchestrator/info.json")).unwrap()["pid"]
        .as_u64()
        .unwrap()
}

/// SIGKILL the session's running orchestrator (the last one the sandbox started) and reap it.
fn kill_orchestrator(sb: &mut Sandbox, session: &Path) {
    signal(orchestrator_pid(session), "-KILL");
    let _ = sb.wait_last(Duration::from_secs(30));
}

fn session_id(session: &Path) -> String {
    session.file_name().unwrap().to_str().unwrap().to_string()
}

fn wait_started(session: &Path, task: &str, attempt: u32) -> String {
    let mut w = None;
    wait_until(
        Duration::from_secs(30),
        &format!("{task} attempt {attempt} to start"),
        || {
            w = started_by(session, task, attempt);
            w.is_some()
        },
    );
    w.unwrap()
}

fn pgid_of(session: &Path, task: &str, attempt: u32) -> i64 {
    started_line(session, task, attempt).unwrap()["pgid"]
        .as_i64()
        .unwrap()
}

fn events(session: &Path) -> Vec<Value> {
    fs::read_to_string(session.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn has_event(session: &Path, kind: &str, task: &str, attempt: u64) -> bool {
    events(session)
        .iter()
        .any(|e| e["event"] == kind && e["task"] == task && e["attempt"] == attempt)
}

fn outcome(session: &Path, task: &str) -> Value {
    read_json(&session.join(format!("tasks/{task}/outcome.json")))
        .unwrap_or_else(|| panic!("no readable tasks/{task}/outcome.json"))
}

/// A task body that records each run in `$OUT/runs-<task>` and blocks until `$OUT/<file>`
/// exists.
fn gated(file: &str) -> String {
    format!(
        "echo \"$MAESTRO_ATTEMPT\" >> \"$OUT/runs-$MAESTRO_TASK\"; while [ ! -e \"$OUT/{file}\" ]; do sleep 0.05; done"
    )
}

/// The live (not zombie) processes of process group `pgid`.
fn group_members(pgid: i64) -> Vec<u64> {
    let mut v = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u64>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its ')'.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() > 2 && f[0] != "Z" && f[2].parse::<i64>() == Ok(pgid) {
            v.push(pid);
        }
    }
    v
}

/// What is still alive among `workers` (pids) and `groups` (process group ids), as text.
fn survivors(workers: &[(String, u64)], groups: &[(String, i64)]) -> Vec<String> {
    let mut left = Vec::new();
    for (id, pid) in workers {
        if !process_gone(&pid.to_string()) {
            left.push(format!("worker {id} (pid {pid})"));
        }
    }
    for (what, pgid) in groups {
        let m = group_members(*pgid);
        if !m.is_empty() {
            left.push(format!("{what} (group {pgid}: pids {m:?})"));
        }
    }
    left
}

/// Wait until every worker and group in the lists is gone; panic naming what is left.
fn wait_all_gone(limit: Duration, when: &str, workers: &[(String, u64)], groups: &[(String, i64)]) {
    let deadline = Instant::now() + limit;
    loop {
        let left = survivors(workers, groups);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{when}, still running after {limit:?}: {}",
            left.join(", ")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The row of session `id` in `orchestrator list`, split into its cells.
fn list_row(sb: &Sandbox, id: &str) -> Vec<String> {
    let o = sb.run(&["list"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(header, ["SESSION", "STATE", "DONE", "AGE"], "{text}");
    lines
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|cells| cells.first().map(String::as_str) == Some(id))
        .unwrap_or_else(|| panic!("no row for {id} in:\n{text}"))
}

fn assert_age_cell(cell: &str) {
    let digits = cell.strip_suffix('s').unwrap_or("");
    assert!(
        !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()),
        "AGE cell {cell:?}"
    );
}

// ---- bug 1: resume accepts the late exit of a superseded attempt ----------------------

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
fn two_busy_workers_one_slot(sb: &mut Sandbox, plan: &str) -> std::path::PathBuf {
    let p = sb.write("plan.toml", plan);
    let session = sb.start(&[
        "run",
        p.to_str().unwrap(),
        "--launcher",
        "background",
        "--workers",
        "1",
    ]);
    assert_eq!(wait_started(&session, "gate", 1), "w1");
    kill_orchestrator(sb, &session);
    let s = session.to_str().unwrap().to_string();
    let o = Command::new(WORKER)
        .args(["--session", &s, "signal", "start-long"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(sb.start(&["resume", &s, "--workers", "2"]), session);
    assert_eq!(wait_started(&session, "long", 1), "w2");
    kill_orchestrator(sb, &session);
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
    let queued = session.join(format!("workers/{wg}/assigned/long.2"));
    assert!(
        queued.exists(),
        "attempt 2 is queued unclaimed behind gate on {wg}: {:?}",
        names_in(&session.join(format!("workers/{wg}/assigned")))
    );
    kill_orchestrator(sb, session);
    assert!(
        queued.exists(),
        "nobody claimed attempt 2 before the orchestrator died"
    );
}

/// Resume after attempt 1's late exit, let `gate` end, and check that attempt 1 never
/// became the outcome.
fn resume_and_check_attempt_1_is_stale(sb: &mut Sandbox, session: &Path) {
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

/// Bug 1, lease route. Attempt 1 of `long` loses its lease (its worker `w2` is SIGSTOPped;
/// the orchestrator SIGKILLs the attempt's group), so attempt 2 is assigned (queued behind
/// `gate` on `w1`: see [`two_busy_workers_one_slot`]); the orchestrator is
/// SIGKILLed before anyone claims attempt 2; the stopped worker is continued and records
/// attempt 1's (killed) exit; then `resume`. Before the fix, resume took attempt 1's late
/// exit as the outcome (`failed`, attempt 1).
#[test]
fn resume_refuses_the_late_exit_of_an_attempt_superseded_by_a_lease() {
    let mut sb = Sandbox::new();
    let plan = format!(
        "name = \"lease\"\nworkers = 2\nlease = \"3s\"\n\
         [[task]]\nid = \"gate\"\nrun = '{}'\n\
         [[task]]\nid = \"long\"\nafter = [\"signal:start-long\"]\nrun = '{}'\n",
        gated("end"),
        "if [ \"$MAESTRO_ATTEMPT\" = 1 ]; then while [ ! -e \"$OUT/go\" ]; do sleep 0.05; done; fi"
    );
    let session = two_busy_workers_one_slot(&mut sb, &plan);
    let pid = worker_pid(&session, "w2");
    signal(pid, "-STOP");
    kill_once_attempt_2_is_queued(&mut sb, &session, "w1");
    assert!(has_event(&session, "attempt_ended", "long", 1));
    signal(pid, "-CONT");
    wait_until(
        Duration::from_secs(30),
        "the late exit of attempt 1",
        || session.join("tasks/long/attempt-1/exit.json").exists(),
    );
    resume_and_check_attempt_1_is_stale(&mut sb, &session);
}

/// Bug 1, reassign route. `orchestrator reassign` stops attempt 1 of `long` (which ignores
/// SIGTERM and has a long kill_grace, so it keeps running) and attempt 2 is queued behind
/// `gate` on `w1`; the orchestrator is SIGKILLed before anyone claims attempt
/// 2; attempt 1 then exits 0; then `resume`. Before the fix, resume took attempt 1's late
/// exit as the outcome (attempt 1).
#[test]
fn resume_refuses_the_late_exit_of_an_attempt_superseded_by_a_reassign() {
    let mut sb = Sandbox::new();
    let plan = format!(
        "name = \"reassign\"\nworkers = 2\n\
         [[task]]\nid = \"gate\"\nrun = '{}'\n\
         [[task]]\nid = \"long\"\nafter = [\"signal:start-long\"]\nkill_grace = \"1h\"\n\
         run = '{}'\n",
        gated("end"),
        "if [ \"$MAESTRO_ATTEMPT\" = 1 ]; then trap \"\" TERM; echo > \"$OUT/trapped\"; \
         while [ ! -e \"$OUT/go\" ]; do sleep 0.05; done; fi"
    );
    let session = two_busy_workers_one_slot(&mut sb, &plan);
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
    wait_until(
        Duration::from_secs(30),
        "the late exit of attempt 1",
        || session.join("tasks/long/attempt-1/exit.json").exists(),
    );
    resume_and_check_attempt_1_is_stale(&mut sb, &session);
}

// ---- bug 2: a worker killed while the orchestrator is down leaves its task running ---

/// Bug 2. The orchestrator is SIGKILLed, then the worker running attempt 1 of `long` is
/// SIGKILLed too; its task keeps running in its own process group. `resume` gives the task
/// a new attempt, which succeeds, but before the fix nobody stopped attempt 1's group.
#[test]
fn resume_stops_the_attempt_of_a_worker_killed_while_the_orchestrator_was_down() {
    let mut sb = Sandbox::new();
    let p = sb.write(
        "orphan.toml",
        &format!(
            "name = \"orphan\"\nworkers = 1\n[[task]]\nid = \"long\"\nrun = '{}'\n",
            "if [ \"$MAESTRO_ATTEMPT\" = 1 ]; then while [ ! -e \"$OUT/never\" ]; do sleep 0.05; done; fi"
        ),
    );
    let session = sb.start(&["run", p.to_str().unwrap(), "--launcher", "background"]);
    let w1 = wait_started(&session, "long", 1);
    let pgid = pgid_of(&session, "long", 1);
    kill_orchestrator(&mut sb, &session);
    let wpid = worker_pid(&session, &w1);
    signal(wpid, "-KILL");
    wait_until(Duration::from_secs(20), "the worker to die", || {
        process_gone(&wpid.to_string())
    });
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

// ---- bug 3: cancel of a dead session cancels tasks that had succeeded -----------------

/// Bug 3. `a` succeeded (outcome written) before the orchestrator was SIGKILLed; `b` exited
/// 0 while it was down (its worker lives on); `long` still runs. `orchestrator cancel`
/// takes the session over. Before the fix, `b` ended `cancelled` (and `retry` ran it again):
/// the cancel came before the exit already on disk was accepted.
#[test]
fn cancel_of_a_dead_session_keeps_succeeded_outcomes() {
    let mut sb = Sandbox::new();
    let p = sb.write(
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
    );
    let session = sb.start(&["run", p.to_str().unwrap(), "--launcher", "background"]);
    let id = session_id(&session);
    wait_started(&session, "b", 1);
    wait_started(&session, "long", 1);
    let a_path = session.join("tasks/a/outcome.json");
    wait_until(Duration::from_secs(30), "a's outcome", || a_path.exists());
    assert_eq!(outcome(&session, "a")["state"], "succeeded");
    kill_orchestrator(&mut sb, &session);
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
    let st = status_json(&sb, &session);
    assert_eq!(st["state"], "cancelled");
    assert_eq!(task_state(&st, "a"), "succeeded");
    assert_eq!(task_state(&st, "b"), "succeeded");
    assert_eq!(task_state(&st, "long"), "cancelled");
    assert_eq!(task_state(&st, "later"), "cancelled");
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

// ---- bug 4: cancel fails after maestro failed internally -----------------------------

/// Bug 4. `tasks/b/retry.json` is made a directory, so when `b` fails (it has a retry left)
/// the orchestrator cannot write its retry plan and exits 3, leaving its workers and
/// `long` running. Before the fix, `orchestrator cancel` failed the same way (exit 3, the
/// same message) and stopped nothing.
#[test]
fn cancel_works_after_an_internal_failure() {
    let mut sb = Sandbox::new();
    let p = sb.write(
        "broken.toml",
        &format!(
            "name = \"broken\"\nworkers = 2\n\
             [[task]]\nid = \"b\"\nretries = 1\nbackoff = {{ initial = \"50ms\" }}\nrun = '{}; exit 1'\n\
             [[task]]\nid = \"long\"\nrun = 'sleep 1000 & echo $! > \"$OUT/bg\"; wait'\n\
             [[task]]\nid = \"later\"\nrun = \"true\"\nafter = [\"long\"]\n",
            gated("go-b")
        ),
    );
    let session = sb.start(&["run", p.to_str().unwrap(), "--launcher", "background", "-q"]);
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
    let bg: u64 = fs::read_to_string(sb.out().join("bg"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
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

// ---- bug 5: counts that lie -----------------------------------------------------------

/// Bug 5a. A race with pick = "first": `x` wins, `y` and `z` lose. Every task is decided,
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
    assert_eq!(task_state(&st, "y"), "lost");
    assert_eq!(task_state(&st, "z"), "lost");
    let id = session_id(&session);
    let row = list_row(&sb, &id);
    assert_eq!(
        row[..3],
        [id.as_str(), "succeeded", "4/4"],
        "a finished session has every task done"
    );
    assert_age_cell(&row[3]);
}

/// Bug 5b. A failed session (`bad` fails, `dep` is skipped) with a race loser (`z`): every
/// task is decided. Before the fix `list` said `failed 5/6`.
#[test]
fn list_shows_a_failed_session_as_failed() {
    let sb = Sandbox::new();
    let p = sb.write(
        "fail.toml",
        "name = \"fail\"\nworkers = 3\n\
         [[race]]\nid = \"design\"\ntasks = [\"y\", \"z\"]\npick = \"first\"\n\
         [[task]]\nid = \"y\"\nrun = \"true\"\n\
         [[task]]\nid = \"z\"\nrun = \"sleep 1000\"\n\
         [[task]]\nid = \"after\"\nrun = \"true\"\nafter = [\"design\"]\n\
         [[task]]\nid = \"bad\"\nrun = \"exit 2\"\n\
         [[task]]\nid = \"dep\"\nrun = \"true\"\nafter = [\"bad\"]\n\
         [[task]]\nid = \"ok\"\nrun = \"true\"\n",
    );
    let o = sb.run(&["run", p.to_str().unwrap(), "--launcher", "background", "-q"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let session = session_of(&o);
    let st = status_json(&sb, &session);
    assert_eq!(st["state"], "failed");
    assert_eq!(task_state(&st, "z"), "lost");
    assert_eq!(task_state(&st, "dep"), "skipped");
    let id = session_id(&session);
    let row = list_row(&sb, &id);
    assert_eq!(
        row[..3],
        [id.as_str(), "failed", "6/6"],
        "a failed session whose tasks are all decided"
    );
    assert_age_cell(&row[3]);
}

/// Bug 5c. One task of a live session is cancelled (`orchestrator cancel SESSION long`, with
/// its dependent); every other task succeeds. Before the fix the session ended `failed`.
#[test]
fn cancelling_one_task_ends_the_session_cancelled_not_failed() {
    let mut sb = Sandbox::new();
    let p = sb.write(
        "one.toml",
        &format!(
            "name = \"one\"\nworkers = 2\n\
             [[task]]\nid = \"long\"\nrun = '{}'\n\
             [[task]]\nid = \"child\"\nrun = \"true\"\nafter = [\"long\"]\n\
             [[task]]\nid = \"quick\"\nrun = \"true\"\n",
            gated("never")
        ),
    );
    let session = sb.start(&["run", p.to_str().unwrap(), "--launcher", "background"]);
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
    let st = status_json(&sb, &session);
    assert_eq!(st["state"], "cancelled");
    assert_eq!(task_state(&st, "quick"), "succeeded");
    assert_eq!(task_state(&st, "long"), "cancelled");
    assert_eq!(task_state(&st, "child"), "cancelled");
    assert_eq!(code, 1);
}

// ---- bug 6: Ctrl-C (or SIGTERM) on `orchestrator run` ---------------------------------

/// Start a session with a finished task (`done`), a task that dies on SIGTERM (`plain`) and
/// one that ignores it and leaves a grandchild (`stubborn`, kill_grace 500ms); send `sig`
/// to `orchestrator run`. It must exit with `code`, every worker and task process must be
/// gone, the session must read `interrupted`, and `resume` must finish it without running
/// `done` again.
fn interrupt_run(sig: &str, code: i32) {
    let mut sb = Sandbox::new();
    let p = sb.write(
        "int.toml",
        &format!(
            "name = \"int\"\nworkers = 3\n\
             [[task]]\nid = \"done\"\nrun = 'echo x >> \"$OUT/runs-done\"'\n\
             [[task]]\nid = \"plain\"\nrun = '{}'\n\
             [[task]]\nid = \"stubborn\"\nkill_grace = \"500ms\"\nrun = '{}'\n",
            gated("go"),
            "trap \"\" TERM; sleep 1000 & echo > \"$OUT/armed\"; \
             while [ ! -e \"$OUT/go\" ]; do sleep 0.05; done"
        ),
    );
    let session = sb.start(&["run", p.to_str().unwrap(), "--launcher", "background"]);
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
    let st = status_json(&sb, &session);
    assert_eq!(st["state"], "succeeded");
    for t in ["done", "plain", "stubborn"] {
        assert_eq!(task_state(&st, t), "succeeded", "{t}");
    }
    assert_eq!(
        fs::read_to_string(sb.out().join("runs-done")).unwrap(),
        "x\n",
        "done is not run again"
    );
}

/// Bug 6. Before the fix SIGINT killed the orchestrator alone (no handler: it died of the
/// signal); its background workers and their tasks kept running.
#[test]
fn ctrl_c_on_run_stops_every_worker_and_task_and_leaves_the_session_interrupted() {
    interrupt_run("-INT", 130);
}

/// Bug 6, SIGTERM.
#[test]
fn sigterm_on_run_exits_143_and_stops_everything() {
    interrupt_run("-TERM", 143);
}
