//! The terminal-emulator launcher against real xterm windows on a private Xvfb display:
//! a plan runs to its end in xterm windows, and a window a person closes is a dead worker
//! whose task is reassigned.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::util::*;

/// A private X display (Xvfb), stopped when dropped.
struct Display {
    child: Child,
    name: String,
}

impl Display {
    fn start() -> Display {
        assert!(
            Command::new("Xvfb").arg("-help").output().is_ok(),
            "these tests need Xvfb and xterm (apt-get install xvfb xterm xdotool)"
        );
        // `-displayfd 1`: Xvfb picks a free display itself and says which on stdout once
        // it accepts connections (tests running at once never pick the same one).
        let mut child = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-nolisten",
                "tcp",
                "-screen",
                "0",
                "800x600x16",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start Xvfb");
        let mut line = String::new();
        let out = child.stdout.take().expect("Xvfb's stdout");
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line);
        let n = line.trim();
        assert!(!n.is_empty(), "Xvfb did not start");
        Display {
            name: format!(":{n}"),
            child,
        }
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        // SIGTERM: Xvfb removes its lock file and socket on the way out.
        signal(u64::from(self.child.id()), "-TERM");
        let _ = self.child.wait();
    }
}

/// Start `plan` (its task `a` in a window of `x`) in the background; returns the session
/// once `a` has started.
fn start_in_xterm(sb: &mut Sandbox, x: &Display, plan: &str) -> std::path::PathBuf {
    let p = sb.write("p.toml", plan);
    let session = sb.start_with(
        &[
            "run",
            p.to_str().unwrap(),
            "--launcher",
            "terminal:xterm",
            "-q",
        ],
        &[("DISPLAY", &x.name)],
    );
    wait_started(&session, "a", 1);
    session
}

#[test]
fn a_plan_runs_to_its_end_in_xterm_windows() {
    let x = Display::start();
    let sb = Sandbox::new();
    let p = sb.write(
        "p.toml",
        "name = \"p\"\nworkers = 2\n\
         [[task]]\nid = \"a\"\nrun = 'echo a > \"$OUT/a\"'\n\
         [[task]]\nid = \"b\"\nrun = 'echo b > \"$OUT/b\"'\n\
         [[task]]\nid = \"c\"\nrun = 'echo c'\nafter = [\"a\", \"b\"]\n",
    );
    let mut c = sb.orch();
    c.args([
        "run",
        p.to_str().unwrap(),
        "--launcher",
        "terminal:xterm",
        "-q",
    ])
    .env("DISPLAY", &x.name);
    let o = run_with_deadline(c, Duration::from_secs(120));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let session = session_of(&o);
    let info = read_json(&session.join("workers/w1/worker.json")).unwrap();
    assert_eq!(info["launcher"], "terminal:xterm");
    assert_eq!(
        info["terminal"], "tty",
        "the worker runs on the window's terminal"
    );
    assert_eq!(
        read_json(&session.join("session.json")).unwrap()["launcher"],
        "terminal:xterm"
    );
    for t in ["a", "b", "c"] {
        assert_eq!(outcome(&session, t)["state"], "succeeded");
    }
}

#[test]
fn a_closed_window_is_a_dead_worker_and_its_task_is_reassigned() {
    let x = Display::start();
    let mut sb = Sandbox::new();
    let plan = format!(
        "name = \"p\"\nworkers = 1\n\
         [[task]]\nid = \"a\"\nrun = '{}'\n",
        first_attempt_waits_for("never", "")
    );
    let session = start_in_xterm(&mut sb, &x, &plan);
    let title = format!("maestro {} w1", session_id(&session));
    let found = Command::new("xdotool")
        .args(["search", "--sync", "--name", &title])
        .env("DISPLAY", &x.name)
        .output()
        .expect("xdotool");
    let window = String::from_utf8_lossy(&found.stdout).trim().to_string();
    assert!(!window.is_empty(), "no window titled {title:?}");
    let closed = Command::new("xdotool")
        .args(["windowkill", &window])
        .env("DISPLAY", &x.name)
        .status()
        .expect("xdotool");
    assert!(closed.success());
    assert_eq!(sb.wait_last(Duration::from_secs(60)), 0);
    assert_eq!(outcome(&session, "a")["attempt"], 2);
    assert!(
        events(&session)
            .iter()
            .any(|e| e["event"] == "worker_lost" && e["worker"] == "w1"),
        "w1's window was closed: it is lost"
    );
}

#[test]
fn attach_raises_a_tasks_window_and_a_headless_task_has_none() {
    let x = Display::start();
    let mut sb = Sandbox::new();
    let plan = format!(
        "name = \"p\"\n[[task]]\nid = \"a\"\nrun = '{}'\n",
        wait_for_file("go")
    );
    let session = start_in_xterm(&mut sb, &x, &plan);
    let s = session.to_str().unwrap();
    let title = format!("maestro {} w1", session_id(&session));
    let o = sb.run(&["attach", s, "a", "--print"]);
    assert_eq!(
        stdout(&o),
        format!("xdotool search --name '{title}' windowraise windowfocus\n")
    );
    let mut c = sb.orch();
    c.args(["attach", s, "a"]).env("DISPLAY", &x.name);
    let o = run_with_deadline(c, Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    touch(&sb, "go");
    assert_eq!(sb.wait_last(Duration::from_secs(60)), 0);

    let plan = format!(
        "name = \"h\"\n[[task]]\nid = \"a\"\nrun = '{}'\n",
        wait_for_file("go2")
    );
    let session = sb.start_plan("h.toml", &plan, &["-q"]);
    wait_started(&session, "a", 1);
    let o = sb.run(&["attach", session.to_str().unwrap(), "a"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        format!(
            "error: task a runs headless (worker w1, launcher background): there is no terminal \
             to attach to; `orchestrator logs {id} a -f` follows its output\n",
            id = session_id(&session)
        )
    );
    touch(&sb, "go2");
    assert_eq!(sb.wait_last(Duration::from_secs(60)), 0);
}
