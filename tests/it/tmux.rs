//! The tmux launcher against a real (private) tmux server.

use std::process::Command;

use std::time::Duration;

use crate::util::*;

fn tmux_windows(sock: &str, target: &str) -> Vec<String> {
    let o = Command::new("tmux")
        .args([
            "-L",
            sock,
            "list-windows",
            "-t",
            target,
            "-F",
            "#{window_name}",
        ])
        .output()
        .expect("tmux");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// What a tmux pane shows now, wrapped lines joined (a worker's long messages wrap).
pub(crate) fn capture_joined(sock: &str, pane: &str) -> String {
    let o = Command::new("tmux")
        .args(["-L", sock, "capture-pane", "-p", "-J", "-t", pane])
        .output()
        .expect("tmux");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn tmux_launcher_shows_one_window_per_worker_and_completes() {
    if Command::new("tmux").arg("-V").output().is_err() {
        panic!("tmux is required for this test (CI installs it)");
    }
    let mut sb = Sandbox::new();
    let sock = sb.tmux_socket();
    let p = sb.write(
        "tmux.toml",
        r#"
name = "tmux.demo"
workers = 2
[[task]]
id = "a"
run = "echo in-a; while [ ! -e \"$OUT/go\" ]; do sleep 0.05; done"
[[task]]
id = "b"
run = "echo in-b; while [ ! -e \"$OUT/go\" ]; do sleep 0.05; done"
[[task]]
id = "c"
run = "echo in-c"
after = ["a", "b"]
"#,
    );
    let out = sb.out();
    let session = sb.start_with(
        &["run", p.to_str().unwrap(), "--launcher", "tmux"],
        &[("MAESTRO_TMUX_SOCKET", &sock)],
    );
    let target = session_id(&session).replace('.', "_");
    // While a and b block, both workers' windows exist.
    wait_until(Duration::from_secs(20), "two worker windows", || {
        let w = tmux_windows(&sock, &target);
        w.contains(&"w1".to_string()) && w.contains(&"w2".to_string())
    });
    // The task's output shows in its window (and in the log file).
    wait_until(Duration::from_secs(20), "task output in a pane", || {
        let text = capture_joined(&sock, &format!("{target}:w1"));
        text.contains("in-a") || text.contains("in-b")
    });
    std::fs::write(out.join("go"), "").unwrap();
    let code = sb.wait_last(Duration::from_secs(60));
    assert_eq!(code, 0);
    let st = status_json(&sb, &session);
    assert_eq!(st["state"], "succeeded");
    for w in st["workers"].as_array().unwrap() {
        assert!(w["terminal"].as_str().unwrap().starts_with('%'), "{w}");
    }
    assert_eq!(
        std::fs::read_to_string(session.join("tasks/c/attempt-1/stdout.log")).unwrap(),
        "in-c\n"
    );
    // Windows of finished workers close.
    wait_until(Duration::from_secs(30), "windows to close", || {
        tmux_windows(&sock, &target).is_empty()
    });
}

#[test]
fn failed_task_window_stays_open_until_the_session_ends() {
    let mut sb = Sandbox::new();
    let sock = sb.tmux_socket();
    let p = sb.write(
        "hold.toml",
        r#"
name = "hold"
workers = 2
[[task]]
id = "bad"
run = "while [ ! -e \"$OUT/long-started\" ]; do sleep 0.02; done; echo broken; exit 3"
[[task]]
id = "long"
run = "touch \"$OUT/long-started\"; while [ ! -e \"$OUT/go\" ]; do sleep 0.05; done"
"#,
    );
    let session = sb.start_with(
        &["run", p.to_str().unwrap(), "--launcher", "tmux"],
        &[("MAESTRO_TMUX_SOCKET", &sock)],
    );
    let target = session_id(&session);
    wait_until(Duration::from_secs(20), "bad to fail", || {
        session.join("tasks/bad/outcome.json").exists()
    });
    let bad_worker = outcome(&session, "bad")["worker"]
        .as_str()
        .unwrap()
        .to_string();
    // The failed task's worker was told to stop (nothing left for it), yet its window stays.
    wait_until(Duration::from_secs(30), "the idle shutdown", || {
        session
            .join(format!("workers/{bad_worker}/shutdown"))
            .exists()
    });
    let text = capture_joined(&sock, &format!("{target}:{bad_worker}"));
    assert!(text.contains("broken"), "{text}");
    wait_until(Duration::from_secs(30), "the hold message", || {
        capture_joined(&sock, &format!("{target}:{bad_worker}"))
            .contains("this window stays open until the session ends")
    });
    assert!(tmux_windows(&sock, &target).contains(&bad_worker));
    std::fs::write(sb.out().join("go"), "").unwrap();
    assert_eq!(sb.wait_last(Duration::from_secs(30)), 1);
    wait_until(
        Duration::from_secs(30),
        "windows to close at the end",
        || tmux_windows(&sock, &target).is_empty(),
    );
}

#[test]
fn keep_windows_leaves_every_window_open_after_the_session() {
    let mut sb = Sandbox::new();
    let sock = sb.tmux_socket();
    let p = sb.write(
        "keep.toml",
        "name = \"keep\"\nworkers = 2\nkeep_windows = true\n[[task]]\nid = \"a\"\nrun = \"echo kept-a\"\n[[task]]\nid = \"b\"\nrun = \"echo kept-b\"\n",
    );
    let session = sb.start_with(
        &["run", p.to_str().unwrap(), "--launcher", "tmux"],
        &[("MAESTRO_TMUX_SOCKET", &sock)],
    );
    assert_eq!(sb.wait_last(Duration::from_secs(30)), 0);
    let target = session_id(&session);
    let windows = tmux_windows(&sock, &target);
    assert!(windows.contains(&"w1".to_string()), "{windows:?}");
    // The dead panes still show what ran there.
    let shown: String = windows
        .iter()
        .map(|w| capture_joined(&sock, &format!("{target}:{w}")))
        .collect();
    assert!(
        shown.contains("kept-a") || shown.contains("kept-b"),
        "{shown}"
    );
}

#[test]
fn resume_adds_windows_to_the_existing_tmux_session() {
    let mut sb = Sandbox::new();
    let sock = sb.tmux_socket();
    let p = sb.write(
        "tres.toml",
        "name = \"tres\"\nworkers = 2\n[[task]]\nid = \"a\"\nrun = 'while [ ! -e \"$OUT/go\" ]; do sleep 0.05; done'\n[[task]]\nid = \"b\"\nrun = \"echo b\"\nafter = [\"a\"]\n",
    );
    let session = sb.start_with(
        &["run", p.to_str().unwrap(), "--launcher", "tmux"],
        &[("MAESTRO_TMUX_SOCKET", &sock)],
    );
    let target = session_id(&session);
    wait_until(Duration::from_secs(30), "two workers registered", || {
        session.join("workers/w1/worker.json").exists()
            && session.join("workers/w2/worker.json").exists()
    });
    let busy = wait_started(&session, "a", 1);
    // The orchestrator and the idle worker die; the busy one keeps its window.
    let idle = if busy == "w1" { "w2" } else { "w1" };
    for pid in [orchestrator_pid(&session), worker_pid(&session, idle)] {
        Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
    }
    let _ = sb.wait_last(Duration::from_secs(30));
    let again = sb.start_with(
        &["resume", session.to_str().unwrap()],
        &[("MAESTRO_TMUX_SOCKET", &sock)],
    );
    assert_eq!(again, session);
    wait_until(Duration::from_secs(30), "a new worker window", || {
        tmux_windows(&sock, &target).contains(&"w3".to_string())
    });
    std::fs::write(sb.out().join("go"), "").unwrap();
    assert_eq!(sb.wait_last(Duration::from_secs(30)), 0);
    assert_eq!(status_json(&sb, &session)["state"], "succeeded");
}

/// Ctrl-C on `run` with tmux workers: the tasks are stopped, the workers exit (their
/// windows close) and the session is left interrupted, as with headless workers.
#[test]
fn ctrl_c_on_run_stops_tmux_workers_too() {
    let mut sb = Sandbox::new();
    let sock = sb.tmux_socket();
    let p = sb.write(
        "tint.toml",
        &format!(
            "name = \"tint\"\nworkers = 2\n[[task]]\nid = \"a\"\nrun = '{}'\n[[task]]\nid = \"b\"\nrun = '{}'\n",
            wait_for_file("go"),
            wait_for_file("go")
        ),
    );
    let session = sb.start_with(
        &["run", p.to_str().unwrap(), "--launcher", "tmux"],
        &[("MAESTRO_TMUX_SOCKET", &sock)],
    );
    wait_started(&session, "a", 1);
    wait_started(&session, "b", 1);
    let workers = worker_pids(&session);
    let groups: Vec<(String, i64)> = ["a", "b"]
        .iter()
        .map(|t| (format!("task {t}"), pgid_of(&session, t, 1)))
        .collect();
    signal(orchestrator_pid(&session), "-INT");
    assert_eq!(sb.wait_last(Duration::from_secs(30)), 130);
    wait_all_gone(
        Duration::from_secs(15),
        "after SIGINT with tmux workers",
        &workers,
        &groups,
    );
    assert_eq!(status_json(&sb, &session)["state"], "interrupted");
    let target = session.file_name().unwrap().to_str().unwrap().to_string();
    wait_until(
        Duration::from_secs(15),
        "the worker windows to close",
        || tmux_windows(&sock, &target).is_empty(),
    );
}

#[test]
fn attach_prints_the_tmux_command_that_reaches_a_tasks_window() {
    let mut sb = Sandbox::new();
    let sock = sb.tmux_socket();
    let p = sb.write(
        "p.toml",
        "name = \"p\"\n[[task]]\nid = \"a\"\nrun = 'while [ ! -e \"$OUT/go\" ]; do sleep 0.05; done'\n",
    );
    let session = sb.start_with(
        &["run", p.to_str().unwrap(), "--launcher", "tmux", "-q"],
        &[("MAESTRO_TMUX_SOCKET", &sock)],
    );
    let w = wait_started(&session, "a", 1);
    let s = session.to_str().unwrap();
    let o = sb.run(&["attach", s, "a", "--print"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let line = stdout(&o);
    let words: Vec<&str> = line.split_whitespace().collect();
    let target = format!("{}:{w}", session_id(&session));
    assert_eq!(words.len(), 6, "{line}");
    assert_eq!(
        (words[0], words[1], words[3], words[4], words[5]),
        ("tmux", "-S", "attach", "-t", target.as_str())
    );
    // The socket and target it names are the worker's: tmux finds the window there.
    let found = Command::new("tmux")
        .args([
            "-S",
            words[2],
            "display-message",
            "-p",
            "-t",
            &target,
            "#{window_name}",
        ])
        .output()
        .expect("tmux");
    assert_eq!(String::from_utf8_lossy(&found.stdout).trim(), w);
    touch(&sb, "go");
    assert_eq!(sb.wait_last(Duration::from_secs(60)), 0);
    let o = sb.run(&["attach", s, "a", "--print"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        format!(
            "error: task a is not running (state: succeeded); `orchestrator logs {id} a` shows its output\n",
            id = session_id(&session)
        )
    );
}

#[test]
fn a_task_under_tmux_runs_on_a_terminal_and_reads_what_is_typed_in_its_window() {
    let mut sb = Sandbox::new();
    let sock = sb.tmux_socket();
    let p = sb.write(
        "p.toml",
        "name = \"p\"\n\
         [[task]]\nid = \"a\"\n\
         run = '[ -t 0 ] && echo stdin-tty; [ -t 1 ] && echo stdout-tty; printf \"name? \"; read line; echo \"got: $line\"'\n\
         [[task]]\nid = \"b\"\ninteractive = false\nafter = [\"a\"]\n\
         run = '[ -t 0 ] || echo stdin-not-tty'\n",
    );
    let session = sb.start_with(
        &["run", p.to_str().unwrap(), "--launcher", "tmux", "-q"],
        &[("MAESTRO_TMUX_SOCKET", &sock)],
    );
    let w = wait_started(&session, "a", 1);
    let log = session.join("tasks/a/attempt-1/stdout.log");
    wait_until(Duration::from_secs(20), "the prompt", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("name? "))
    });
    let target = format!("{}:{w}", session_id(&session).replace('.', "_"));
    let typed = Command::new("tmux")
        .args([
            "-L",
            &sock,
            "send-keys",
            "-t",
            &target,
            "hello there",
            "Enter",
        ])
        .status()
        .expect("tmux");
    assert!(typed.success());
    assert_eq!(sb.wait_last(Duration::from_secs(60)), 0);
    let text = std::fs::read_to_string(&log).unwrap();
    for want in ["stdin-tty", "stdout-tty", "got: hello there"] {
        assert!(text.contains(want), "{want:?} not in {text:?}");
    }
    assert!(
        !session.join("tasks/a/attempt-1/stderr.log").exists(),
        "on a pty stdout and stderr are one stream"
    );
    let o = sb.run(&["logs", session.to_str().unwrap(), "a", "--stderr"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        format!(
            "error: attempt 1 of a ran on a terminal, where stderr and stdout are one stream: \
             `orchestrator logs {} a` shows both\n",
            session_id(&session)
        )
    );
    let index = std::fs::read_to_string(session.join("tasks/a/attempt-1/stdout.log.idx")).unwrap();
    let first: Vec<&str> = index.lines().next().unwrap().split(' ').collect();
    assert_eq!(first[0], "0", "{index}");
    assert_eq!(
        std::fs::read_to_string(session.join("tasks/b/attempt-1/stdout.log")).unwrap(),
        "stdin-not-tty\n",
        "interactive = false keeps pipes"
    );
}

#[test]
fn a_task_on_a_terminal_stopped_by_someone_is_noticed_not_taken_for_a_hang() {
    let mut sb = Sandbox::new();
    let sock = sb.tmux_socket();
    let p = sb.write(
        "p.toml",
        "name = \"p\"\n[[task]]\nid = \"a\"\ntimeout = \"3s\"\n\
         run = 'echo ready; read line; echo \"got: $line\"'\n",
    );
    let session = sb.start_with(
        &["run", p.to_str().unwrap(), "--launcher", "tmux", "-q"],
        &[("MAESTRO_TMUX_SOCKET", &sock)],
    );
    let w = wait_started(&session, "a", 1);
    let pgid = pgid_of(&session, "a", 1);
    let log = session.join("tasks/a/attempt-1/stdout.log");
    wait_until(Duration::from_secs(20), "the task to be ready", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("ready"))
    });
    let target = format!("{}:{w}", session_id(&session).replace('.', "_"));
    let keys = |k: &[&str]| {
        let mut args = vec!["-L", sock.as_str(), "send-keys", "-t", target.as_str()];
        args.extend_from_slice(k);
        assert!(
            Command::new("tmux")
                .args(&args)
                .status()
                .expect("tmux")
                .success()
        );
    };
    // The task itself (its pid is the recorded one), not its job-control parent.
    signal(pgid as u64, "-STOP");
    wait_until(Duration::from_secs(20), "the worker to say so", || {
        capture_joined(&sock, &target).contains(&format!(
            "task a: stopped (Ctrl-Z or a stop signal); press Enter here to continue it, or \
             `kill -CONT {pgid}`"
        ))
    });
    assert_eq!(proc_state(pgid), Some('T'));
    // Stopped longer than its timeout: not killed, the clock waited.
    wait_until(Duration::from_secs(20), "time past the timeout", || {
        std::fs::metadata(&log)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(4))
    });
    assert_eq!(proc_state(pgid), Some('T'), "still there, still stopped");
    // Continued from outside: what is typed next is the task's, noticed or not yet.
    signal(pgid as u64, "-CONT");
    keys(&["go on", "Enter"]);
    assert_eq!(sb.wait_last(Duration::from_secs(60)), 0);
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("got: go on")
    );
}

/// scripts/tmux-run.sh used to keep its log in /tmp and, with windows kept open, never
/// return. Not on a terminal it attaches to nothing: it waits for the run, keeps the
/// orchestrator's output in the session and prints the status and the last line.
#[test]
fn tmux_run_script_keeps_its_log_in_the_session_and_returns_with_kept_windows() {
    let mut sb = Sandbox::new();
    let sock = sb.tmux_socket();
    let plan = sb.write(
        "kept.toml",
        "name = \"kept\"\nkeep_windows = true\n[[task]]\nid = \"a\"\nrun = \"echo hi\"\n",
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/tmux-run.sh");
    let bin_dir = std::path::Path::new(ORCH).parent().unwrap();
    let mut c = Command::new("bash");
    c.arg(script)
        .arg(&plan)
        .current_dir(sb.path())
        .env("MAESTRO_SESSIONS", sb.sessions())
        .env("MAESTRO_TMUX_SOCKET", &sock)
        .env("MAESTRO_BIN_DIR", bin_dir)
        .env("MAESTRO_CGROUP", "off")
        .env_remove("TMUX")
        .stdin(std::process::Stdio::null());
    let o = run_with_deadline(c, Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s = sb.only_session();
    let id = session_id(&s);
    let log = std::fs::read_to_string(s.join("tmux-run.log")).unwrap();
    assert!(
        log.ends_with(&format!("session {id} succeeded: 1/1 tasks succeeded\n")),
        "{log}"
    );
    let out = stdout(&o);
    assert!(
        out.starts_with(&format!("session: {}\n", s.display())),
        "{out}"
    );
    assert!(
        out.contains(&format!("session {id} succeeded: 1/1 tasks succeeded\n")),
        "{out}"
    );
    assert!(
        out.contains(&format!("windows kept open: tmux -L {sock} attach -t {id}")),
        "{out}"
    );
}
