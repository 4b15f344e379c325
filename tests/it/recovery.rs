//! Dead and stuck workers, epochs, retries, timeouts, resume, manual control.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

#[test]
fn sigkilled_worker_task_completes_on_another_worker() {
    let mut sb = Sandbox::new();
    let session = sb.start_plan(
        "kill.toml",
        &format!(
            "name = \"kill\"\nworkers = 1\n[[task]]\nid = \"long\"\nrun = '{}'\n",
            gated("go")
        ),
        &[],
    );
    let w1 = wait_started(&session, "long", 1);
    signal(worker_pid(&session, &w1), "-KILL");
    let w2 = wait_started(&session, "long", 2);
    assert_ne!(w1, w2);
    fs::write(sb.out().join("go"), "").unwrap();
    assert_eq!(sb.wait_last(Duration::from_secs(30)), 0);
    let o = outcome(&session, "long");
    assert_eq!(o["state"], "succeeded");
    assert_eq!(o["attempt"], 2, "the outcome is the new epoch's");
    assert_eq!(o["worker"], w2.as_str());
    assert!(!session.join("tasks/long/attempt-1/exit.json").exists());
    assert!(has_event(&session, "attempt_ended", "long", 1));
    let st = status_json(&sb, &session);
    let attempts = &st["tasks"][0]["attempts"];
    assert_eq!(attempts[0]["ended"], "worker_lost");
    assert_eq!(attempts[1]["ended"], "exited");
}

#[test]
fn stopped_worker_past_its_lease_loses_its_task_and_its_late_result_is_refused() {
    let mut sb = Sandbox::new();
    let session = sb.start_plan(
        "stop.toml",
        &format!(
            "name = \"stop\"\nworkers = 2\nlease = \"1s\"\n\
             [[task]]\nid = \"long\"\nrun = '{}'\n\
             [[task]]\nid = \"gate\"\nrun = '{}'\n",
            gated("go"),
            gated("end")
        ),
        &[],
    );
    let w1 = wait_started(&session, "long", 1);
    let pid = worker_pid(&session, &w1);
    signal(pid, "-STOP");
    let w2 = wait_started(&session, "long", 2);
    assert_ne!(w1, w2);
    signal(pid, "-CONT");
    // The stopped worker wakes, records its (killed) attempt late; it is journalled stale.
    wait_until(
        Duration::from_secs(20),
        "the late exit of attempt 1",
        || session.join("tasks/long/attempt-1/exit.json").exists(),
    );
    wait_until(
        Duration::from_secs(20),
        "the stale result to be journalled",
        || has_event(&session, "stale_result", "long", 1),
    );
    fs::write(sb.out().join("go"), "").unwrap();
    fs::write(sb.out().join("end"), "").unwrap();
    assert_eq!(sb.wait_last(Duration::from_secs(30)), 0);
    let o = outcome(&session, "long");
    assert_eq!(o["attempt"], 2);
    assert_eq!(o["worker"], w2.as_str());
    let finished: Vec<Value> = events(&session)
        .into_iter()
        .filter(|e| e["event"] == "task_finished" && e["task"] == "long")
        .collect();
    assert_eq!(finished.len(), 1, "accepted once");
}

#[test]
fn chaos_random_worker_kills_never_double_accept() {
    let mut sb = Sandbox::new();
    let mut plan = String::from("name = \"chaos\"\nworkers = 3\n[defaults]\nmax_reassign = 1000\n");
    for i in 0..200 {
        plan.push_str(&format!(
            "[[task]]\nid = \"t{i}\"\nrun = 'sleep 0.0{}; echo $MAESTRO_ATTEMPT >> \"$OUT/runs-$MAESTRO_TASK\"'\n",
            i % 5
        ));
    }
    let session = sb.start_plan("chaos.toml", &plan, &["-q"]);
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut kills = 0;
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    while !session.join("summary.json").exists() {
        assert!(Instant::now() < deadline, "chaos run did not finish");
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(150 + seed % 250));
        // Kill a random live worker.
        let mut live: Vec<u64> = Vec::new();
        for w in fs::read_dir(session.join("workers")).unwrap().flatten() {
            if let Some(v) = read_json(&w.path().join("worker.json")) {
                let pid = v["pid"].as_u64().unwrap();
                if Path::new(&format!("/proc/{pid}")).exists()
                    && !w.path().join("shutdown").exists()
                {
                    live.push(pid);
                }
            }
        }
        if !live.is_empty() {
            let pid = live[(seed % live.len() as u64) as usize];
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            kills += 1;
        }
    }
    assert_eq!(sb.wait_last(Duration::from_secs(30)), 0);
    assert!(kills >= 5, "only {kills} kills happened");
    let evs = events(&session);
    for i in 0..200 {
        let id = format!("t{i}");
        let o = outcome(&session, &id);
        assert_eq!(o["state"], "succeeded", "{id}");
        let last_assigned = evs
            .iter()
            .filter(|e| e["event"] == "task_assigned" && e["task"] == id.as_str())
            .map(|e| e["attempt"].as_u64().unwrap())
            .max()
            .unwrap();
        assert_eq!(
            o["attempt"].as_u64().unwrap(),
            last_assigned,
            "{id}: outcome from a stale epoch"
        );
        let accepted = evs
            .iter()
            .filter(|e| e["event"] == "task_finished" && e["task"] == id.as_str())
            .count();
        assert_eq!(accepted, 1, "{id} accepted {accepted} times");
        let exit =
            read_json(&session.join(format!("tasks/{id}/attempt-{last_assigned}/exit.json")))
                .unwrap();
        assert_eq!(exit["exit_code"], 0);
    }
}

#[test]
fn killed_orchestrator_is_resumed_without_rerunning_tasks() {
    let mut sb = Sandbox::new();
    let mut plan = String::from("name = \"resume\"\nworkers = 3\n");
    for i in 0..24 {
        let after = if i >= 3 {
            format!("after = [\"t{}\"]\n", i - 3)
        } else {
            String::new()
        };
        plan.push_str(&format!(
            "[[task]]\nid = \"t{i}\"\nrun = 'echo $MAESTRO_ATTEMPT >> \"$OUT/runs-$MAESTRO_TASK\"; sleep 0.15'\n{after}"
        ));
    }
    let session = sb.start_plan("resume.toml", &plan, &["-q"]);
    let s = session.to_str().unwrap().to_string();
    let mut seed: u64 = 7;
    for round in 0..4 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(250 + (seed >> 33) % 400));
        if session.join("summary.json").exists() {
            break;
        }
        sb.kill_orchestrator(&session);
        let again = sb.start(&["resume", &s, "-q"]);
        assert_eq!(again, session, "round {round}");
    }
    assert_eq!(sb.wait_last(Duration::from_secs(120)), 0);
    for i in 0..24 {
        let runs = fs::read_to_string(sb.out().join(format!("runs-t{i}"))).unwrap();
        assert_eq!(
            runs.lines().count(),
            1,
            "t{i} ran {} times",
            runs.lines().count()
        );
    }
    let st = status_json(&sb, &session);
    assert_eq!(st["state"], "succeeded");
    assert!(
        events(&session)
            .iter()
            .any(|e| e["event"] == "session_resumed")
    );
}

#[test]
fn grandchild_does_not_keep_a_dead_worker_alive_and_dies_with_its_group() {
    let mut sb = Sandbox::new();
    let session = sb.start_plan(
        "gc.toml",
        "name = \"gc\"\nworkers = 1\n[[task]]\nid = \"a\"\n\
         run = 'if [ \"$MAESTRO_ATTEMPT\" = 1 ]; then sleep 1000 & echo $! > \"$OUT/gc\"; wait; fi'\n",
        &[],
    );
    let w1 = wait_started(&session, "a", 1);
    wait_until(Duration::from_secs(30), "grandchild pid", || {
        sb.out().join("gc").exists()
    });
    let gc = pid_in(&sb.out().join("gc"));
    signal(worker_pid(&session, &w1), "-KILL");
    // Death is seen (the grandchild does not hold the worker's lock) and the task moves on.
    wait_started(&session, "a", 2);
    assert_eq!(sb.wait_last(Duration::from_secs(30)), 0);
    wait_gone(gc, "the grandchild to be killed");
}

#[test]
fn retries_with_exponential_backoff() {
    let sb = Sandbox::new();
    let o = sb.run_plan(
        "retry.toml",
        r#"
name = "retry"
[[task]]
id = "flaky"
run = 'date +%s%N >> "$OUT/times"; [ "$MAESTRO_ATTEMPT" -ge 3 ]'
retries = 2
backoff = { initial = "300ms", max = "5s", factor = 2, jitter = 0 }
[[task]]
id = "hopeless"
run = 'exit 7'
retries = 1
backoff = { initial = "50ms" }
"#,
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let session = session_of(&o);
    let flaky = outcome(&session, "flaky");
    assert_eq!(flaky["state"], "succeeded");
    assert_eq!(flaky["attempt"], 3);
    let times: Vec<u128> = fs::read_to_string(sb.out().join("times"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(times.len(), 3);
    let gap1 = (times[1] - times[0]) / 1_000_000;
    let gap2 = (times[2] - times[1]) / 1_000_000;
    assert!(gap1 >= 300, "first retry after {gap1} ms");
    assert!(gap2 >= 600, "second retry after {gap2} ms (exponential)");
    let hopeless = outcome(&session, "hopeless");
    assert_eq!(hopeless["state"], "failed");
    assert_eq!(hopeless["attempt"], 2);
    assert_eq!(hopeless["reason"], "exited with code 7");
    // A scheduled retry's record goes once the task is decided, either way (the
    // orchestrator only looks for it in tasks that had one).
    for t in ["flaky", "hopeless"] {
        assert!(
            !session.join(format!("tasks/{t}/retry.json")).exists(),
            "{t}"
        );
    }
    assert!(
        events(&session)
            .iter()
            .any(|e| e["event"] == "retry_scheduled" && e["task"] == "flaky")
    );
}

#[test]
fn status_shows_retrying_with_time_to_next_attempt() {
    let mut sb = Sandbox::new();
    let session = sb.start_plan(
        "wait.toml",
        "name = \"wait\"\n[[task]]\nid = \"a\"\nrun = 'exit 1'\nretries = 1\nbackoff = { initial = \"60s\", jitter = 0 }\n",
        &[],
    );
    let s = session.to_str().unwrap().to_string();
    let mut reason = String::new();
    wait_until(Duration::from_secs(20), "state retrying", || {
        let st = status_json(&sb, &session);
        reason = st["tasks"][0]["reason"].as_str().unwrap_or("").to_string();
        st["tasks"][0]["state"] == "retrying"
    });
    assert!(reason.starts_with("retrying (next in "), "{reason}");
    let o = sb.run(&["status", &s]);
    assert!(stdout(&o).contains("retrying (next in "), "{}", stdout(&o));
    let o = sb.run(&["cancel", &s]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(sb.wait_last(Duration::from_secs(30)), 1);
    assert_eq!(status_json(&sb, &session)["state"], "cancelled");
}

#[test]
fn timeout_kills_the_whole_process_group() {
    let sb = Sandbox::new();
    let o = sb.run_plan(
        "timeout.toml",
        "name = \"timeout\"\n[[task]]\nid = \"slow\"\n\
         run = 'sleep 1000 & echo $! > \"$OUT/bg\"; sleep 1000'\ntimeout = \"500ms\"\nkill_grace = \"200ms\"\n",
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let session = session_of(&o);
    let out = outcome(&session, "slow");
    assert_eq!(out["state"], "failed");
    assert!(
        out["reason"]
            .as_str()
            .unwrap()
            .starts_with("timed out after "),
        "{out}"
    );
    let exit = read_json(&session.join("tasks/slow/attempt-1/exit.json")).unwrap();
    assert_eq!(exit["timed_out"], true);
    wait_gone(pid_in(&sb.out().join("bg")), "the background sleep to die");
    let st = status_json(&sb, &session);
    assert_eq!(st["tasks"][0]["attempts"][0]["ended"], "timed_out");
}

#[test]
fn saved_progress_survives_into_the_next_attempt() {
    let sb = Sandbox::new();
    let o = sb.run_plan(
        "save.toml",
        r#"
name = "save"
[[task]]
id = "migrate"
retries = 1
backoff = { initial = "10ms" }
run = '''
start=$(worker load batch || echo 0)
echo "attempt $MAESTRO_ATTEMPT starts at $start" >> "$OUT/log"
if [ "$MAESTRO_ATTEMPT" = 1 ]; then worker save batch 40; exit 1; fi
echo '{"done": true}' | worker save --json - summary
'''
"#,
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        fs::read_to_string(sb.out().join("log")).unwrap(),
        "attempt 1 starts at 0\nattempt 2 starts at 40\n"
    );
    let session = session_of(&o);
    let state = read_json(&session.join("tasks/migrate/state.json")).unwrap();
    assert_eq!(state["batch"], "40");
    assert_eq!(state["summary"]["done"], true);
    // The first attempt's partial logs stay readable.
    assert!(session.join("tasks/migrate/attempt-1/stdout.log").exists());
}

#[test]
fn reassign_moves_a_running_task_and_errors_are_clear() {
    let mut sb = Sandbox::new();
    let session = sb.start_plan(
        "re.toml",
        &format!(
            "name = \"re\"\nworkers = 2\n[[task]]\nid = \"long\"\nrun = '{}'\n[[task]]\nid = \"later\"\nrun = \"true\"\nafter = [\"long\"]\n",
            "if [ \"$MAESTRO_ATTEMPT\" = 1 ]; then sleep 1000; fi"
        ),
        &[],
    );
    let id = session_id(&session);
    let w1 = wait_started(&session, "long", 1);
    let o = sb.run(&["reassign", &id, "later"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "error: task later is not running (state: pending)\n"
    );
    let o = sb.run(&["reassign", &id, "zz"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        format!("error: session {id} has no task \"zz\"\n")
    );
    let o = sb.run(&["reassign", &id, "long"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!("task long: stopping attempt 1 on {w1}; attempt 2 goes to another worker\n")
    );
    let w2 = wait_started(&session, "long", 2);
    assert_ne!(w1, w2);
    assert_eq!(sb.wait_last(Duration::from_secs(30)), 0);
    let st = status_json(&sb, &session);
    assert_eq!(task_state(&st, "later"), "succeeded");
    assert_eq!(st["tasks"][0]["attempts"][0]["ended"], "reassigned");
    assert_eq!(outcome(&session, "long")["attempt"], 2);
    // Control of a finished session: nothing to reassign or cancel.
    let o = sb.run(&["reassign", &id, "long"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        format!(
            "error: session {id} has finished (succeeded): nothing runs there to reassign \
             (`orchestrator retry {id} TASK` re-runs a task)\n"
        )
    );
    let o = sb.run(&["cancel", &id]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        format!(
            "error: session {id} already finished (succeeded); `orchestrator retry {id} TASK` re-runs a failed task\n"
        )
    );
    let o = sb.run(&["reassign", "nope", "long"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn cancel_one_task_cancels_its_dependents_only() {
    let mut sb = Sandbox::new();
    let session = sb.start_plan(
        "cancel.toml",
        &format!(
            "name = \"cancel\"\nworkers = 2\n\
             [[task]]\nid = \"long\"\nrun = \"sleep 1000\"\n\
             [[task]]\nid = \"child\"\nrun = \"true\"\nafter = [\"long\"]\n\
             [[task]]\nid = \"other\"\nrun = '{}'\n",
            gated("go")
        ),
        &[],
    );
    let id = session_id(&session);
    wait_started(&session, "long", 1);
    let o = sb.run(&["cancel", &id, "long"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "task long cancelled (1 dependents cancelled too)\n"
    );
    let o = sb.run(&["cancel", &id, "long"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "error: task long already finished (cancelled)\n"
    );
    fs::write(sb.out().join("go"), "").unwrap();
    assert_eq!(sb.wait_last(Duration::from_secs(30)), 1);
    let st = status_json(&sb, &session);
    assert_states(
        &st,
        &[
            ("long", "cancelled"),
            ("child", "cancelled"),
            ("other", "succeeded"),
        ],
    );
    let exit = read_json(&session.join("tasks/long/attempt-1/exit.json")).unwrap();
    assert_eq!(exit["killed_by"], "cancelled");
}

#[test]
fn retry_reruns_a_failed_task_and_its_skipped_dependents() {
    let sb = Sandbox::new();
    let o = sb.run_plan(
        "rr.toml",
        "name = \"rr\"\nworkers = 2\n\
         [[task]]\nid = \"ok\"\nrun = 'echo x >> \"$OUT/runs-ok\"'\n\
         [[task]]\nid = \"bad\"\nrun = '[ -e \"$OUT/fixed\" ]'\n\
         [[task]]\nid = \"after\"\nrun = 'echo x >> \"$OUT/runs-after\"'\nafter = [\"bad\", \"ok\"]\n",
        &["-q"],
    );
    assert_eq!(o.status.code(), Some(1));
    let session = session_of(&o);
    let id = session_id(&session);
    let o = sb.run(&["retry", &id, "ok"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "error: task ok succeeded; only failed, skipped or cancelled tasks can be retried\n"
    );
    fs::write(sb.out().join("fixed"), "").unwrap();
    let o = sb.run(&["retry", &id, "bad", "-q"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let st = status_json(&sb, &session);
    assert_eq!(st["state"], "succeeded");
    assert_eq!(outcome(&session, "bad")["attempt"], 2);
    assert_eq!(
        fs::read_to_string(sb.out().join("runs-ok")).unwrap(),
        "x\n",
        "ok is not re-run"
    );
    assert_eq!(
        fs::read_to_string(sb.out().join("runs-after")).unwrap(),
        "x\n"
    );
    // The first summary and its rows were moved aside, whole; new ones were written.
    let names = names_in(&session);
    let aside = |prefix: &str, suffix: &str| {
        let n = names
            .iter()
            .find(|n| n.starts_with(prefix) && n.ends_with(suffix))
            .unwrap_or_else(|| panic!("no {prefix}*{suffix} in {names:?}"));
        session.join(n)
    };
    let old = read_json(&aside("summary.superseded-", ".json")).unwrap();
    assert_eq!(
        old["counts"],
        serde_json::json!({"succeeded": 1, "failed": 1, "skipped": 1})
    );
    let old_rows = fs::read_to_string(aside("summary-tasks.superseded-", ".jsonl")).unwrap();
    assert_eq!(old_rows.lines().count(), 3);
    let new = read_json(&session.join("summary.json")).unwrap();
    assert_eq!(new["counts"], serde_json::json!({"succeeded": 3}));
    let rows = fs::read_to_string(session.join("summary-tasks.jsonl")).unwrap();
    let bad: serde_json::Value = serde_json::from_str(rows.lines().nth(1).unwrap()).unwrap();
    assert_eq!(
        (bad["id"].as_str(), bad["attempt"].as_u64()),
        (Some("bad"), Some(2))
    );
    let o = sb.run(&["resume", &id]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        format!(
            "error: session {id} already finished (succeeded); `orchestrator retry {id} TASK` re-runs a failed task\n"
        )
    );
}

#[test]
fn second_orchestrator_on_a_live_session_is_refused() {
    let mut sb = Sandbox::new();
    let session = sb.start_plan(
        "live.toml",
        &format!(
            "name = \"live\"\n[[task]]\nid = \"a\"\nrun = '{}'\n",
            gated("go")
        ),
        &[],
    );
    wait_started(&session, "a", 1);
    let info = read_json(&session.join("orchestrator/info.json")).unwrap();
    let pid = info["pid"].as_u64().unwrap();
    let host = info["host"].as_str().unwrap().to_string();
    let o = sb.run(&["resume", session.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let id = session_id(&session);
    assert_eq!(
        stderr(&o),
        format!("error: session {id} already has a live orchestrator (pid {pid} on {host})\n")
    );
    fs::write(sb.out().join("go"), "").unwrap();
    assert_eq!(sb.wait_last(Duration::from_secs(30)), 0);
}

#[test]
fn cancel_without_a_live_orchestrator_takes_over_and_stops_everything() {
    let mut sb = Sandbox::new();
    let session = sb.start_plan(
        "orphan.toml",
        "name = \"orphan\"\nworkers = 2\n\
         [[task]]\nid = \"long\"\nrun = 'sleep 1000 & echo $! > \"$OUT/bg\"; wait'\n\
         [[task]]\nid = \"later\"\nrun = \"true\"\nafter = [\"long\"]\n",
        &[],
    );
    wait_started(&session, "long", 1);
    wait_until(Duration::from_secs(30), "the background sleep", || {
        sb.out().join("bg").exists()
    });
    // The orchestrator dies (a Ctrl-C, a kill): its workers and the task keep running.
    sb.kill_orchestrator(&session);
    let id = session_id(&session);
    let o = sb.run(&["status", &id]);
    assert!(
        stdout(&o).starts_with(&format!("session {id} (interrupted): 0/2 tasks done\n")),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains(&format!("`orchestrator resume {id}` carries on")));
    let o = sb.run(&["cancel", &id]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!("session {id} cancelled (2 tasks stopped or dropped)\n")
    );
    assert_status(
        &sb,
        &session,
        "cancelled",
        &[("long", "cancelled"), ("later", "cancelled")],
    );
    wait_gone(
        pid_in(&sb.out().join("bg")),
        "the task's process group to be stopped",
    );
}

/// A task queued behind a long one goes to a worker that is idle instead of
/// waiting, and keeps its attempt number (it never ran).
#[test]
fn queued_task_moves_to_an_idle_worker_instead_of_waiting_behind_a_long_one() {
    let mut sb = Sandbox::new();
    let session = sb.start_plan(
        "queue.toml",
        &format!(
            "name = \"queue\"\nworkers = 2\n\
             [[task]]\nid = \"long\"\nrun = '{}'\n\
             [[task]]\nid = \"a\"\ncmd = [\"true\"]\n\
             [[task]]\nid = \"b\"\ncmd = [\"true\"]\n",
            gated("go")
        ),
        &[],
    );
    wait_until(Duration::from_secs(30), "a and b to finish", || {
        session.join("tasks/a/outcome.json").exists()
            && session.join("tasks/b/outcome.json").exists()
    });
    assert!(!session.join("tasks/long/outcome.json").exists());
    // Depending on which worker registered first, one of them was queued behind `long`
    // and then withdrawn for the idle worker, or queued behind the other quick task. If
    // withdrawn, it kept its attempt number (it never ran) and ran elsewhere.
    let withdrawn: Vec<Value> = events(&session)
        .into_iter()
        .filter(|e| e["event"] == "task_withdrawn")
        .collect();
    assert!(withdrawn.len() <= 1, "{withdrawn:?}");
    for w in &withdrawn {
        let task = w["task"].as_str().unwrap();
        assert_eq!(w["attempt"], 1);
        let o = outcome(&session, task);
        assert_eq!(o["state"], "succeeded");
        assert_eq!(
            o["attempt"], 1,
            "a withdrawn assignment's attempt never ran"
        );
        assert_ne!(o["worker"], w["worker"]);
        assert!(!session.join(format!("tasks/{task}/attempt-2")).exists());
    }
    fs::write(sb.out().join("go"), "").unwrap();
    assert_eq!(sb.wait_last(Duration::from_secs(30)), 0);
}

/// A worker killed while a task is queued behind its running one: the running
/// task is lost (a new attempt), the queued one is given back untouched (same attempt, no
/// lost attempt counted against `max_reassign`).
#[test]
fn killed_worker_gives_back_its_queued_task_without_losing_an_attempt() {
    let mut sb = Sandbox::new();
    let session = sb.start_plan(
        "queue-kill.toml",
        &format!(
            "name = \"queue-kill\"\nworkers = 1\n\
             [[task]]\nid = \"long\"\nrun = '{}'\n\
             [[task]]\nid = \"next\"\ncmd = [\"true\"]\n",
            gated("go")
        ),
        &[],
    );
    let w1 = wait_started(&session, "long", 1);
    let queued = session.join(format!("workers/{w1}/assigned/next.1"));
    wait_until(
        Duration::from_secs(30),
        "next to be queued behind long",
        || queued.exists(),
    );
    signal(worker_pid(&session, &w1), "-KILL");
    // One worker: the new one runs both (`long` first, by plan order).
    fs::write(sb.out().join("go"), "").unwrap();
    assert_eq!(sb.wait_last(Duration::from_secs(30)), 0);
    let next = outcome(&session, "next");
    assert_eq!(
        (next["state"].as_str(), next["attempt"].as_u64()),
        (Some("succeeded"), Some(1))
    );
    assert_ne!(next["worker"], w1.as_str());
    assert!(has_event(&session, "task_withdrawn", "next", 1));
    // Its one attempt ended normally, never as lost.
    assert!(
        events(&session)
            .iter()
            .all(|e| !(e["event"] == "attempt_ended"
                && e["task"] == "next"
                && e["reason"] == "worker_lost"))
    );
    let long = outcome(&session, "long");
    assert_eq!(
        long["attempt"], 2,
        "the running task was lost with its worker"
    );
    assert!(session.join(format!("workers/{w1}/done/next.1")).exists());
}

/// A task lost with its worker starts again on the replacement worker, never
/// stuck in the queue behind another worker's long task (the orchestrator queues nothing
/// while a worker is starting, and withdraws a queued task when a worker is idle).
#[test]
fn lost_task_starts_again_on_the_new_worker_not_behind_a_busy_one() {
    let mut sb = Sandbox::new();
    let session = sb.start_plan(
        "requeue.toml",
        &format!(
            "name = \"requeue\"\nworkers = 2\n\
             [[task]]\nid = \"a\"\nrun = '{}'\n\
             [[task]]\nid = \"b\"\nrun = '{}'\n\
             [[task]]\nid = \"c\"\ncmd = [\"true\"]\n",
            gated("go"),
            gated("go-b")
        ),
        &[],
    );
    let wa = wait_started(&session, "a", 1);
    wait_started(&session, "b", 1);
    signal(worker_pid(&session, &wa), "-KILL");
    // `b` runs until go-b, which is only written at the end: `a` must start again on the
    // replacement worker, not behind `b`.
    let again = wait_started(&session, "a", 2);
    assert_ne!(again, wa);
    fs::write(sb.out().join("go"), "").unwrap();
    fs::write(sb.out().join("go-b"), "").unwrap();
    assert_eq!(sb.wait_last(Duration::from_secs(30)), 0);
    assert_eq!(outcome(&session, "c")["state"], "succeeded");
}

/// The exit counts from the worker's `exited` line (its `exit.json` is the copy for
/// people): a worker that dies right after journalling it loses nothing, even with no
/// file. Here the task appends that line itself and SIGKILLs its worker.
#[test]
fn a_journalled_exit_without_its_exit_json_is_accepted_when_the_worker_dies() {
    let sb = Sandbox::new();
    let o = sb.run_plan(
        "journalled.toml",
        r#"
name = "journalled"
workers = 1
[[task]]
id = "a"
run = """
printf '{"ts":"2026-01-01T00:00:01.000Z","event":"exited","task":"%s","attempt":%s,"worker":"%s","exit_code":0,"signal":null,"started_at":"2026-01-01T00:00:00.000Z","ended_at":"2026-01-01T00:00:01.000Z","duration_ms":1000,"timed_out":false,"has_result":false}\n' "$MAESTRO_TASK" "$MAESTRO_ATTEMPT" "$MAESTRO_WORKER" >> "$MAESTRO_SESSION/workers/$MAESTRO_WORKER/events.jsonl"
kill -9 "$PPID"
"""
"#,
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let session = session_of(&o);
    let a = outcome(&session, "a");
    assert_eq!(a["state"], "succeeded", "{a}");
    assert_eq!(a["attempt"], 1);
    assert_eq!(
        a["duration_ms"], 1000,
        "the outcome is the journalled record's"
    );
    assert!(!session.join("tasks/a/attempt-1/exit.json").exists());
    assert!(!session.join("tasks/a/attempt-2").exists());
    let ev = events(&session);
    let ended: Vec<&Value> = ev
        .iter()
        .filter(|e| e["event"] == "attempt_ended")
        .collect();
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0]["reason"], "exited");
}
