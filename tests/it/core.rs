//! Plan → session → workers → status, end to end.

use std::fs;
use std::time::Duration;

use serde_json::Value;

use crate::util::*;

fn diamond(sb: &Sandbox, workers: usize) -> std::path::PathBuf {
    sb.write(
        "diamond.toml",
        &format!(
            r#"
name = "diamond"
workers = {workers}

[[task]]
id = "a"
run = '{a}'

[[task]]
id = "b"
run = '{b}'
after = ["a"]

[[task]]
id = "c"
run = '{c}'
after = ["a"]

[[task]]
id = "d"
run = '{d}'
after = ["b", "c"]
"#,
            a = recorded("0.2"),
            b = recorded("0.3"),
            c = recorded("0.1"),
            d = recorded("0.1"),
        ),
    )
}

#[test]
fn diamond_dag_runs_in_dependency_order() {
    let sb = Sandbox::new();
    let plan = diamond(&sb, 3);
    let o = sb.run(&["run", plan.to_str().unwrap(), "--launcher", "background"]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let spans = spans(&sb.out());
    let get = |id: &str| spans.iter().find(|s| s.0 == id).cloned().unwrap();
    let (a, b, c, d) = (get("a"), get("b"), get("c"), get("d"));
    assert!(a.2 <= b.1 && a.2 <= c.1, "b and c must start after a ends");
    assert!(b.2 <= d.1 && c.2 <= d.1, "d must start after b and c end");
    // b and c are independent: with 3 workers they overlap.
    assert!(b.1 < c.2 && c.1 < b.2, "b and c should run in parallel");
    assert_eq!(spans.len(), 4, "each task ran once");
}

#[test]
fn parallel_limit_is_never_exceeded() {
    let sb = Sandbox::new();
    let mut plan = String::from("name = \"limit\"\nworkers = 2\n");
    for i in 0..8 {
        plan.push_str(&format!(
            "[[task]]\nid = \"t{i}\"\nrun = '{}'\n",
            recorded("0.2")
        ));
    }
    let o = sb.run_plan("limit.toml", &plan, &[]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let spans = spans(&sb.out());
    assert_eq!(spans.len(), 8);
    // Sweep over start/end events: the number running at once.
    let mut events: Vec<(u128, i32)> = Vec::new();
    for (_, s, e) in &spans {
        events.push((*s, 1));
        events.push((*e, -1));
    }
    events.sort_by(|x, y| x.0.cmp(&y.0).then(x.1.cmp(&y.1)));
    let (mut now, mut max) = (0, 0);
    for (_, d) in events {
        now += d;
        max = max.max(now);
    }
    assert_eq!(max, 2, "two workers: exactly two tasks at once at the peak");
}

#[test]
fn failed_task_skips_dependents_but_not_independent_branch() {
    let sb = Sandbox::new();
    let o = sb.run_plan(
        "fail.toml",
        r#"
name = "fail"
workers = 2
[[task]]
id = "bad"
run = "echo boom >&2; exit 3"
[[task]]
id = "after-bad"
run = "true"
after = ["bad"]
[[task]]
id = "after-after"
run = "true"
after = ["after-bad"]
[[task]]
id = "solo"
run = "sleep 0.3"
[[task]]
id = "after-solo"
run = "true"
after = ["solo"]
"#,
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "stderr: {}", stderr(&o));
    let session = session_of(&o);
    assert_status(
        &sb,
        &session,
        "failed",
        &[
            ("bad", "failed"),
            ("after-bad", "skipped"),
            ("after-after", "skipped"),
            ("solo", "succeeded"),
            ("after-solo", "succeeded"),
        ],
    );
    let bad = outcome(&session, "bad");
    assert_eq!(bad["exit_code"], 3);
    assert_eq!(bad["reason"], "exited with code 3");
    let skipped = outcome(&session, "after-after");
    assert_eq!(skipped["state"], "skipped");
    assert_eq!(
        fs::read_to_string(session.join("tasks/bad/attempt-1/stderr.log")).unwrap(),
        "boom\n"
    );
    assert!(
        !session.join("tasks/after-bad/attempt-1").exists(),
        "a skipped task never runs"
    );
}

#[test]
fn status_json_on_finished_session() {
    let sb = Sandbox::new();
    let plan = diamond(&sb, 2);
    let o = sb.run(&[
        "run",
        plan.to_str().unwrap(),
        "--launcher",
        "background",
        "-q",
    ]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let session = session_of(&o);
    let id = session_id(&session);
    assert!(id.starts_with("diamond-"), "{id}");
    // By id under the root, and as the default (newest) session.
    for args in [vec!["status", &id, "--json"], vec!["status", "--json"]] {
        let o = sb.run(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(st["session"], id);
        assert_eq!(st["state"], "succeeded");
        let tasks = st["tasks"].as_array().unwrap();
        assert_eq!(tasks.len(), 4);
        for t in tasks {
            assert_eq!(t["state"], "succeeded");
            assert_eq!(t["attempt"], 1);
            assert_eq!(t["exit_code"], 0);
            assert!(t["worker"].as_str().unwrap().starts_with('w'));
            assert!(t["started_at"].as_str().unwrap().ends_with('Z'));
            assert!(t["ended_at"].as_str().is_some());
        }
        let workers = st["workers"].as_array().unwrap();
        assert!(!workers.is_empty() && workers.len() <= 2);
        for w in workers {
            assert_eq!(w["state"], "exited", "{w}");
            assert!(w["pid"].as_u64().is_some());
        }
    }
    // Handled assignments are moved to `done/`, not deleted (on ext4 without a
    // journal every recently deleted inode slows each later file creation): `assigned/`
    // holds only work in flight, and nothing is lost for a person reading the session.
    let mut done = Vec::new();
    for w in ["w1", "w2"] {
        let dir = session.join("workers").join(w);
        if dir.exists() {
            assert_eq!(names_in(&dir.join("assigned")), Vec::<String>::new());
            done.extend(names_in(&dir.join("done")));
        }
    }
    done.sort();
    assert_eq!(done, ["a.1", "b.1", "c.1", "d.1"]);
    let a = fs::read_dir(session.join("workers"))
        .unwrap()
        .flatten()
        .find_map(|w| read_json(&w.path().join("done/a.1")))
        .unwrap();
    assert_eq!(
        (a["task"].as_str(), a["attempt"].as_u64()),
        (Some("a"), Some(1))
    );
    // summary.json and the journal.
    let summary = read_json(&session.join("summary.json")).unwrap();
    assert_eq!(summary["state"], "succeeded");
    let journal = fs::read_to_string(session.join("events.jsonl")).unwrap();
    let kinds: Vec<String> = journal
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for k in [
        "session_started",
        "worker_spawned",
        "worker_registered",
        "task_assigned",
        "task_started",
        "task_finished",
        "session_finished",
    ] {
        assert!(kinds.iter().any(|x| x == k), "journal lacks {k}: {kinds:?}");
    }
    assert_eq!(kinds.last().map(String::as_str), Some("session_finished"));
    // The human table names every task.
    let o = sb.run(&["status", &id]);
    let text = stdout(&o);
    assert!(
        text.starts_with(&format!("session {id} (succeeded): 4/4 tasks done")),
        "{text}"
    );
    for t in ["a", "b", "c", "d"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{t} ")) && l.contains("succeeded")),
            "{text}"
        );
    }
}

/// A cut-short `exit.json` is shown as unreadable, naming the file, and the task as the
/// rest says (status degrades per file and exits 0).
#[test]
fn truncated_exit_json_is_shown_naming_the_file() {
    let sb = Sandbox::new();
    let session = sb.run_ok(
        "one.toml",
        "name = \"one\"\nworkers = 1\n[[task]]\nid = \"a\"\nrun = \"true\"\n",
    );
    // As if the orchestrator died before accepting it, and the record was cut short.
    fs::remove_file(session.join("tasks/a/outcome.json")).unwrap();
    let exit = session.join("tasks/a/attempt-1/exit.json");
    let text = fs::read_to_string(&exit).unwrap();
    fs::write(&exit, &text[..text.len() / 2]).unwrap();
    let o = sb.run(&["status", session.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let row = out.lines().find(|l| l.starts_with("a ")).unwrap();
    assert!(
        row.contains(&format!("unreadable: {}: invalid JSON: ", exit.display())),
        "{out}"
    );
    assert!(!stderr(&o).contains("panicked"));
}

#[test]
fn result_json_becomes_the_outcome_and_bad_json_fails_the_task() {
    let sb = Sandbox::new();
    let o = sb.run_plan(
        "res.toml",
        r#"
name = "res"
workers = 2
[[task]]
id = "good"
run = 'echo "{\"rows\": 42}" > "$MAESTRO_RESULT"'
[[task]]
id = "bad"
run = 'echo "{not json" > "$MAESTRO_RESULT"'
[[task]]
id = "none"
cmd = ["true"]
"#,
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let session = session_of(&o);
    let good = outcome(&session, "good");
    assert_eq!(good["state"], "succeeded");
    assert_eq!(good["result"]["rows"], 42);
    // The worker says whether a result file was left (the orchestrator reads one only
    // then), and its `exited` line carries the whole exit record.
    for (task, has) in [("good", true), ("bad", true), ("none", false)] {
        let exit = read_json(&session.join(format!("tasks/{task}/attempt-1/exit.json"))).unwrap();
        assert_eq!(exit["has_result"], has, "{task}: {exit}");
        let mut line = journal_lines(&session, "exited")
            .into_iter()
            .find(|l| l["task"] == task)
            .unwrap();
        let obj = line.as_object_mut().unwrap();
        assert_eq!(obj.remove("event").unwrap(), "exited");
        assert!(obj.remove("ts").is_some());
        assert_eq!(line, exit, "{task}");
    }
    let none = outcome(&session, "none");
    assert_eq!(none["state"], "succeeded");
    assert_eq!(none["result"], Value::Null);
    let bad = outcome(&session, "bad");
    assert_eq!(bad["state"], "failed");
    let reason = bad["reason"].as_str().unwrap();
    let path = session.join("tasks/bad/attempt-1/result.json");
    assert!(
        reason.starts_with(&format!("{}: invalid JSON: ", path.display())),
        "{reason}"
    );
}

/// With `-q` the closing line is counted from `summary.json`, not a status snapshot; its
/// text must not change.
#[test]
fn quiet_run_ends_with_the_count_of_succeeded_tasks() {
    let sb = Sandbox::new();
    let o = sb.run_plan(
        "count.toml",
        "name = \"count\"\nworkers = 2\n\
         [[task]]\nid = \"ok\"\ncmd = [\"true\"]\n\
         [[task]]\nid = \"no\"\ncmd = [\"false\"]\n",
        &["-q"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let session = session_of(&o);
    let id = session_id(&session);
    assert_eq!(
        stderr(&o).lines().last().unwrap(),
        format!("session {id} failed: 1/2 tasks succeeded")
    );
}

#[test]
fn task_environment_and_argv_commands() {
    let sb = Sandbox::new();
    let o = sb.run_plan(
        "env.toml",
        r#"
name = "env"
workers = 1
[defaults]
env = { GREETING = "hi" }
[[task]]
id = "shell"
run = 'echo "$GREETING $MAESTRO_TASK $MAESTRO_WORKER $MAESTRO_ATTEMPT $(basename "$MAESTRO_SESSION")"'
[[task]]
id = "argv"
cmd = ["printf", "%s|", "a b", "$HOME"]
after = ["shell"]
"#,
        &["-q"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let session = session_of(&o);
    let id = session_id(&session);
    let out = fs::read_to_string(session.join("tasks/shell/attempt-1/stdout.log")).unwrap();
    assert_eq!(out, format!("hi shell w1 1 {id}\n"));
    // No shell: arguments arrive verbatim.
    let out = fs::read_to_string(session.join("tasks/argv/attempt-1/stdout.log")).unwrap();
    assert_eq!(out, "a b|$HOME|");
}

/// A working directory that is gone by the time the task runs (the plan refuses one that
/// is missing when it is loaded) fails the task with a reason that names it.
#[test]
fn a_cwd_gone_before_the_task_runs_fails_it_with_a_clear_reason() {
    let sb = Sandbox::new();
    fs::create_dir_all(sb.path().join("gone/dir")).unwrap();
    let o = sb.run_plan(
        "cwd.toml",
        "name = \"cwd\"\n[[task]]\nid = \"rm\"\nrun = \"rm -r gone\"\n\
         [[task]]\nid = \"a\"\nrun = \"true\"\ncwd = \"gone/dir\"\nafter = [\"rm\"]\n",
        &["-q"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let a = outcome(&session_of(&o), "a");
    let reason = a["reason"].as_str().unwrap();
    let dir = sb.path().join("gone/dir");
    assert!(
        reason.starts_with(&format!(
            "could not start: cannot run in {}: ",
            dir.display()
        )),
        "{reason}"
    );
}

#[test]
fn leftover_background_child_does_not_hold_the_task_open() {
    let sb = Sandbox::new();
    let o = sb.run_plan(
        "bg.toml",
        "name = \"bg\"\n[[task]]\nid = \"a\"\nrun = 'sleep 1000 & echo $! > \"$OUT/pid\"'\n",
        &["-q"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // The group was killed when the task's main process exited.
    wait_gone(pid_in(&sb.out().join("pid")), "the grandchild to be killed");
}

#[test]
fn list_and_logs() {
    let sb = Sandbox::new();
    let o = sb.run_plan(
        "logs.toml",
        "name = \"logs\"\n[[task]]\nid = \"a\"\nrun = 'echo line-one; echo line-two; echo err >&2'\n",
        &["-q"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let session = session_of(&o);
    let id = session_id(&session);
    let o = sb.run(&["list"]);
    let text = stdout(&o);
    let line = text
        .lines()
        .find(|l| l.starts_with(&id))
        .expect("session listed");
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&cols[1..3], &["succeeded", "1/1"], "{line}");
    let o = sb.run(&["logs", &id, "a"]);
    assert_eq!(stdout(&o), "line-one\nline-two\n");
    let o = sb.run(&["logs", &id, "a", "--stderr"]);
    assert_eq!(stdout(&o), "err\n");
    // Following a finished task prints it and returns.
    let o = sb.run(&["logs", &id, "a", "-f"]);
    assert_eq!(stdout(&o), "line-one\nline-two\n");
    let o = sb.run(&["logs", &id, "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        format!("error: session {id} has no task \"nope\"\n")
    );
    let o = sb.run(&["status", "no-such-session"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        format!(
            "error: no session \"no-such-session\" under {} (`orchestrator list` shows them)\n",
            sb.sessions().display()
        )
    );
    let o = sb.run(&["status", "../x"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        format!(
            "error: no session \"../x\" (not a directory, and not an id under {})\n",
            sb.sessions().display()
        )
    );
}

/// A race's losers are decided: `status` and `list` count them as done.
#[test]
fn status_and_list_count_race_losers_as_done() {
    let sb = Sandbox::new();
    let session = sb.run_ok(
        "best.toml",
        r#"
name = "best"
workers = 2
[[race]]
id = "pick"
tasks = ["p1", "p2"]
pick = "best"
score = "/score"
[[task]]
id = "p1"
run = 'echo "{\"score\": 3}" > "$MAESTRO_RESULT"'
[[task]]
id = "p2"
run = 'echo "{\"score\": 9}" > "$MAESTRO_RESULT"'
[[task]]
id = "after"
cmd = ["true"]
after = ["pick"]
"#,
    );
    let id = session_id(&session);
    let st = status_json(&sb, &session);
    assert_eq!(task_state(&st, "p1"), "lost");
    let o = sb.run(&["status", &id]);
    assert!(
        stdout(&o).starts_with(&format!("session {id} (succeeded): 3/3 tasks done\n")),
        "{}",
        stdout(&o)
    );
    let o = sb.run(&["list"]);
    let text = stdout(&o);
    let line = text.lines().find(|l| l.starts_with(&id)).expect("listed");
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&cols[1..3], &["succeeded", "3/3"], "{text}");
}

/// `list` shows what it cannot use as a session, with why; `status` of the newest session
/// says what newer entry it skipped.
#[test]
fn list_and_status_name_the_entries_they_refuse() {
    let sb = Sandbox::new();
    let session = sb.run_ok(
        "one.toml",
        "name = \"one\"\n[[task]]\nid = \"a\"\ncmd = [\"true\"]\n",
    );
    let id = session_id(&session);
    let stray = sb.sessions().join("stray");
    fs::create_dir(&stray).unwrap();
    // Not writable by others whatever the umask: refused for what it lacks, not its mode.
    fs::set_permissions(&stray, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let why = format!(
        "{}: is not a maestro session (no session.json)",
        stray.display()
    );
    let o = sb.run(&["list"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    let header: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["SESSION", "STATE", "DONE", "AGE", "NOTE"],
        "{text}"
    );
    let line = text
        .lines()
        .find(|l| l.starts_with("stray "))
        .expect("stray listed");
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&cols[1..3], &["unreadable", "-"], "{text}");
    assert!(line.ends_with(&format!("  {why}")), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with(&id))
        .expect("session listed");
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols.len(), 4, "a readable session has no note: {line}");
    let o = sb.run(&["status"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stderr(&o), format!("warning: skipped {why}\n"));
    assert!(stdout(&o).starts_with(&format!("session {id} (succeeded): 1/1 tasks done\n")));
    // Named, the stray is refused outright.
    let o = sb.run(&["status", stray.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(stderr(&o), format!("error: {why}\n"));
}

#[test]
fn run_refuses_bad_flags_before_creating_anything() {
    let sb = Sandbox::new();
    let p = sb.write(
        "one.toml",
        "name = \"one\"\n[[task]]\nid = \"a\"\nrun = \"true\"\n",
    );
    let o = sb.run(&["run", p.to_str().unwrap(), "--workers", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o), "error: --workers must be at least 1\n");
    let o = sb.run(&["run", p.to_str().unwrap(), "--launcher", "xterm"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "error: invalid launcher \"xterm\": expected auto, background, tmux, terminal or terminal:NAME\n"
    );
    assert!(!sb.sessions().exists());
}

#[test]
fn status_shows_a_running_tasks_progress() {
    let mut sb = Sandbox::new();
    let session = sb.start_plan(
        "prog.toml",
        "name = \"prog\"\n[[task]]\nid = \"mig\"\nrun = 'worker progress 42 \"batch 17 of 40\"; while [ ! -e \"$OUT/go\" ]; do sleep 0.02; done'\n",
        &[],
    );
    let mut st = serde_json::Value::Null;
    wait_until(Duration::from_secs(20), "progress in status", || {
        st = status_json(&sb, &session);
        st["tasks"][0]["progress"]["pct"] == 42.0
    });
    assert_eq!(st["tasks"][0]["state"], "running");
    assert_eq!(st["tasks"][0]["progress"]["message"], "batch 17 of 40");
    // The worker's state comes from the last line of its own journal.
    assert_eq!(st["workers"][0]["state"], "running", "{st}");
    assert_eq!(st["workers"][0]["task"], "mig", "{st}");
    let journal = fs::read_to_string(session.join("workers/w1/events.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(journal.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "started");
    assert_eq!(
        (last["task"].as_str(), last["attempt"].as_u64()),
        (Some("mig"), Some(1))
    );
    assert!(last["pid"].as_u64().is_some(), "{last}");
    // The start is that line, not a file: with the group id the orchestrator
    // needs to stop the task if the worker dies, and the start time `status` shows.
    assert_eq!(last["pgid"], last["pid"], "{last}");
    assert_eq!(last["worker"], "w1", "{last}");
    assert!(last["started_unix_ms"].as_u64().is_some(), "{last}");
    assert!(!session.join("tasks/mig/attempt-1/started.json").exists());
    assert!(st["tasks"][0]["started_at"].is_string(), "{st}");
    let o = sb.run(&["status", session.to_str().unwrap()]);
    let line = stdout(&o)
        .lines()
        .find(|l| l.starts_with("mig "))
        .unwrap()
        .to_string();
    assert!(line.ends_with("42% batch 17 of 40"), "{line}");
    fs::write(sb.out().join("go"), "").unwrap();
    assert_eq!(sb.wait_last(Duration::from_secs(20)), 0);
    let journal = fs::read_to_string(session.join("workers/w1/events.jsonl")).unwrap();
    let events: Vec<String> = journal
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event"].to_string())
        .collect();
    assert_eq!(
        events,
        ["\"ready\"", "\"started\"", "\"exited\"", "\"stopped\""],
        "{journal}"
    );
}

#[test]
fn sessions_of_long_plan_names_are_found_by_id() {
    let sb = Sandbox::new();
    let name = "n".repeat(64);
    let o = sb.run_plan(
        "long.toml",
        &format!("name = \"{name}\"\n[[task]]\nid = \"a\"\nrun = \"true\"\n"),
        &["-q"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let id = session_id(&session_of(&o));
    assert!(id.len() > 64);
    let o = sb.run(&["status", &id, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn closed_stdout_and_stderr_do_not_kill_the_run() {
    // `orchestrator run plan.toml 2>&1 | head -1`: the reader goes away early.
    let sb = Sandbox::new();
    let p = sb.write(
        "pipe.toml",
        "name = \"pipe\"\nworkers = 2\n[[task]]\nid = \"a\"\nrun = \"sleep 0.2\"\n[[task]]\nid = \"b\"\nrun = \"sleep 0.2\"\nafter = [\"a\"]\n",
    );
    let mut child = sb
        .orch()
        .args(["run", p.to_str().unwrap(), "--launcher", "background"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    drop(child.stderr.take());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "orchestrator did not finish"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    let sessions: Vec<_> = fs::read_dir(sb.sessions()).unwrap().flatten().collect();
    let summary = read_json(&sessions[0].path().join("summary.json")).unwrap();
    assert_eq!(summary["state"], "succeeded");
}

/// `--durable` (fsync of every record and its directory) runs a plan like any other and
/// is recorded in session.json.
#[test]
fn durable_run_succeeds_and_is_recorded() {
    let sb = Sandbox::new();
    let o = sb.run_plan(
        "durable.toml",
        "name = \"durable\"\nworkers = 2\n[[task]]\nid = \"a\"\nrun = \"true\"\n\
         [[task]]\nid = \"b\"\nrun = \"true\"\nafter = [\"a\"]\n",
        &["--durable"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let session = session_of(&o);
    assert_eq!(
        read_json(&session.join("session.json")).unwrap()["durable"],
        true
    );
    assert_status(
        &sb,
        &session,
        "succeeded",
        &[("a", "succeeded"), ("b", "succeeded")],
    );
}

/// A session run with `--durable` stays durable when it is resumed without the flag: the
/// workers the resumed orchestrator starts get `--durable` too.
#[test]
fn resume_of_a_durable_session_is_durable() {
    let mut sb = Sandbox::new();
    let session = sb.start_plan(
        "dres.toml",
        &format!(
            "name = \"dres\"\nworkers = 1\n[[task]]\nid = \"a\"\nrun = '{}'\n",
            gated("go")
        ),
        &["--durable"],
    );
    let w1 = wait_started(&session, "a", 1);
    sb.kill_orchestrator(&session);
    signal(worker_pid(&session, &w1), "-KILL");
    let s = session.to_str().unwrap().to_string();
    assert_eq!(sb.start(&["resume", &s]), session);
    let w2 = wait_started(&session, "a", 2);
    assert_ne!(w2, w1);
    let cmdline =
        fs::read(format!("/proc/{}/cmdline", worker_pid(&session, &w2))).unwrap_or_default();
    assert!(
        cmdline.split(|&b| b == 0).any(|arg| arg == b"--durable"),
        "{}",
        String::from_utf8_lossy(&cmdline)
    );
    fs::write(sb.out().join("go"), "").unwrap();
    assert_eq!(sb.wait_last(Duration::from_secs(30)), 0);
}

/// A session written by a newer maestro (a higher protocol version) is refused by
/// `resume` with a message that says so, and nothing is taken over.
#[test]
fn resume_refuses_a_session_of_a_newer_protocol() {
    let sb = Sandbox::new();
    let session = sb.run_ok(
        "newer.toml",
        "name = \"newer\"\n[[task]]\nid = \"a\"\nrun = \"true\"\n",
    );
    let info = session.join("session.json");
    let mut v = read_json(&info).unwrap();
    v["protocol"] = serde_json::json!(99);
    fs::write(&info, v.to_string()).unwrap();
    let id = session_id(&session);
    let o = sb.run(&["resume", &id]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        format!(
            "error: session {id} was written by a newer maestro (protocol 99, this one speaks {})\n",
            maestro::proto::PROTOCOL_VERSION
        )
    );
}
