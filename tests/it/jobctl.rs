//! Job control of tasks on a terminal, with real tmux workers on a private server: Ctrl-Z
//! in a worker's window stops its task (and its timeout), Enter there continues it; a
//! task's exit code and death by a signal are recorded as they were; stopping a task
//! (cancel, a lost worker) ends the task and its job-control parent, leaving nothing.

use std::process::Command;
use std::time::Duration;

use crate::tmux::capture_joined as capture;
use crate::util::*;

/// Start `plan` under tmux on a private server; the session and the socket.
fn start(sb: &mut Sandbox, plan: &str) -> (std::path::PathBuf, String) {
    let sock = sb.tmux_socket();
    let p = sb.write("p.toml", plan);
    let session = sb.start_with(
        &["run", p.to_str().unwrap(), "--launcher", "tmux", "-q"],
        &[("MAESTRO_TMUX_SOCKET", &sock)],
    );
    (session, sock)
}

/// The tmux target of worker `w`'s window.
fn window(session: &std::path::Path, w: &str) -> String {
    format!("{}:{w}", session_id(session).replace('.', "_"))
}

/// Type `keys` (tmux key names) into `target`.
fn keys(sock: &str, target: &str, keys: &[&str]) {
    let mut args = vec!["-L", sock, "send-keys", "-t", target];
    args.extend_from_slice(keys);
    let st = Command::new("tmux").args(&args).status().expect("tmux");
    assert!(st.success(), "tmux send-keys {keys:?}");
}

/// The parent of process `pid`, from `/proc/PID/stat`.
fn parent_of(pid: i64) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    rest.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Wait for `text` in attempt 1's log of `task`.
fn wait_log(session: &std::path::Path, task: &str, text: &str) {
    let log = session.join(format!("tasks/{task}/attempt-1/stdout.log"));
    wait_until(
        Duration::from_secs(20),
        &format!("{text:?} in the log"),
        || std::fs::read_to_string(&log).is_ok_and(|t| t.contains(text)),
    );
}

/// `exit.json` of attempt `n` of `task`.
fn exit_of(session: &std::path::Path, task: &str, n: u32) -> serde_json::Value {
    read_json(&session.join(format!("tasks/{task}/attempt-{n}/exit.json")))
        .unwrap_or_else(|| panic!("no exit.json for {task} attempt {n}"))
}

#[test]
fn ctrl_z_stops_a_task_on_a_terminal_and_enter_in_its_window_continues_it() {
    let mut sb = Sandbox::new();
    let (session, sock) = start(
        &mut sb,
        &format!(
            "name = \"p\"\n[[task]]\nid = \"a\"\ntimeout = \"3s\"\n\
             run = 'echo ready; {}; echo done; exit 7'\n",
            wait_for_file("go")
        ),
    );
    let w = wait_started(&session, "a", 1);
    let target = window(&session, &w);
    let task = pgid_of(&session, "a", 1);
    let parent = parent_of(task);
    assert_ne!(
        parent,
        worker_pid(&session, &w),
        "the task runs under its own parent"
    );
    wait_log(&session, "a", "ready");
    keys(&sock, &target, &["C-z"]);
    wait_until(Duration::from_secs(20), "the worker to say so", || {
        capture(&sock, &target)
            .contains("task a: stopped (Ctrl-Z or a stop signal); press Enter here to continue it")
    });
    assert_eq!(proc_state(task), Some('T'), "the task is stopped");
    assert_eq!(proc_state(parent as i64), Some('T'), "so is its parent");
    // Stopped longer than its timeout: not killed, the clock waited. (The log's last
    // write is the terminal's echo of the Ctrl-Z.)
    let log = session.join("tasks/a/attempt-1/stdout.log");
    wait_until(Duration::from_secs(20), "time past the timeout", || {
        std::fs::metadata(&log)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(4))
    });
    assert_eq!(proc_state(task), Some('T'), "still there, still stopped");
    assert!(!session.join("tasks/a/attempt-1/exit.json").exists());
    // What is typed while it is stopped is the worker's; Enter continues it.
    keys(&sock, &target, &["x", "Enter"]);
    wait_until(
        Duration::from_secs(20),
        "the worker to see it go on",
        || capture(&sock, &target).contains("task a: continued"),
    );
    assert_ne!(proc_state(task), Some('T'));
    touch(&sb, "go");
    assert_eq!(sb.wait_last(Duration::from_secs(60)), 1, "the task failed");
    let exit = exit_of(&session, "a", 1);
    assert_eq!(exit["exit_code"], 7, "{exit}");
    assert_eq!(exit["timed_out"], false, "{exit}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("done"), "{text:?}");
    wait_gone(parent, "the task's parent");
    assert_eq!(
        group_members(task),
        Vec::<u64>::new(),
        "nothing left in its group"
    );
}

#[test]
fn a_task_on_a_terminal_keeps_its_exit_code_and_its_death_by_a_signal() {
    let mut sb = Sandbox::new();
    let (session, _sock) = start(
        &mut sb,
        "name = \"p\"\nworkers = 2\n\
         [[task]]\nid = \"code\"\nrun = '[ -t 0 ] && exit 4'\n\
         [[task]]\nid = \"sig\"\nrun = '[ -t 0 ] && kill -USR1 $$'\n",
    );
    assert_eq!(sb.wait_last(Duration::from_secs(60)), 1);
    let code = exit_of(&session, "code", 1);
    assert_eq!(code["exit_code"], 4, "{code}");
    assert!(code["signal"].is_null(), "{code}");
    let sig = exit_of(&session, "sig", 1);
    assert!(sig["exit_code"].is_null(), "{sig}");
    assert_eq!(sig["signal"], 10, "SIGUSR1, as the task died: {sig}");
    let st = status_json(&sb, &session);
    assert_states(&st, &[("code", "failed"), ("sig", "failed")]);
}

/// Cancelled while stopped by Ctrl-Z, a task that ignores SIGTERM is killed after its
/// grace, and its parent with it.
#[test]
fn cancelling_a_stopped_task_on_a_terminal_ends_it_and_its_parent() {
    let mut sb = Sandbox::new();
    let (session, sock) = start(
        &mut sb,
        "name = \"p\"\n[[task]]\nid = \"a\"\nkill_grace = \"1s\"\n\
         run = 'trap \"\" TERM HUP; echo ready; while :; do sleep 0.05; done'\n",
    );
    let w = wait_started(&session, "a", 1);
    let target = window(&session, &w);
    let task = pgid_of(&session, "a", 1);
    let parent = parent_of(task);
    wait_log(&session, "a", "ready");
    keys(&sock, &target, &["C-z"]);
    wait_until(Duration::from_secs(20), "the worker to say so", || {
        capture(&sock, &target).contains("task a: stopped")
    });
    let o = sb.run(&["cancel", session.to_str().unwrap(), "a"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(sb.wait_last(Duration::from_secs(60)), 1);
    let exit = exit_of(&session, "a", 1);
    assert_eq!(exit["killed_by"], "cancelled", "{exit}");
    assert_eq!(exit["signal"], 9, "{exit}");
    wait_all_gone(
        Duration::from_secs(20),
        "after the cancel",
        &[("the task's parent".into(), parent)],
        &[("task a".into(), task)],
    );
}

/// A worker killed outright: the orchestrator stops the task it recorded (the task, not
/// its parent), and the parent goes with it; the next attempt runs on a new worker. (Task
/// `b` keeps a window, and so the tmux server, open meanwhile.)
#[test]
fn a_lost_workers_task_on_a_terminal_is_stopped_with_its_parent() {
    let mut sb = Sandbox::new();
    let (session, _sock) = start(
        &mut sb,
        &format!(
            "name = \"p\"\nworkers = 2\n[[task]]\nid = \"a\"\n\
             run = 'if [ \"$MAESTRO_ATTEMPT\" = 1 ]; then trap \"\" TERM HUP; echo ready; \
             while :; do sleep 0.05; done; fi'\n\
             [[task]]\nid = \"b\"\nrun = '{}'\n",
            wait_for_file("end")
        ),
    );
    wait_started(&session, "b", 1);
    let w = wait_started(&session, "a", 1);
    let task = pgid_of(&session, "a", 1);
    let parent = parent_of(task);
    wait_log(&session, "a", "ready");
    let worker = worker_pid(&session, &w);
    signal(worker, "-KILL");
    wait_all_gone(
        Duration::from_secs(30),
        "after the worker's death",
        &[(w.clone(), worker), ("the task's parent".into(), parent)],
        &[("task a".into(), task)],
    );
    wait_until(Duration::from_secs(30), "the second attempt", || {
        session.join("tasks/a/outcome.json").exists()
    });
    touch(&sb, "end");
    assert_eq!(sb.wait_last(Duration::from_secs(60)), 0);
    assert_eq!(outcome(&session, "a")["attempt"], 2);
}
