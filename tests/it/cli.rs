//! The command line's conventions: where sessions are found (upward from the current
//! directory, as git finds `.git`; by path, id or unique id prefix) and the exit-code
//! table every verb follows, each code with its exact message.

use std::fs;
use std::process::Command;

use crate::util::*;

const ONE: &str = "name = \"cli\"\n[[task]]\nid = \"a\"\nrun = \"true\"\n";

/// `orchestrator ARGS` in `dir`, with no `$MAESTRO_SESSIONS`: lookups walk upward.
fn orch_in(sb: &Sandbox, dir: &std::path::Path) -> Command {
    let mut c = sb.orch();
    c.current_dir(dir).env_remove("MAESTRO_SESSIONS");
    c
}

fn run_in(sb: &Sandbox, dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut c = orch_in(sb, dir);
    c.args(args);
    run_with_deadline(c, std::time::Duration::from_secs(60))
}

#[test]
fn sessions_are_found_from_a_subdirectory_and_run_creates_them_there() {
    let sb = Sandbox::new();
    let project = sb.path().join("project");
    let deep = project.join("src").join("deeper");
    fs::create_dir_all(&deep).unwrap();
    let plan = sb.write("one.toml", ONE);
    let plan = plan.to_str().unwrap();

    // The first run, at the project's top, makes ./sessions.
    let o = run_in(
        &sb,
        &project,
        &["run", plan, "-q", "--launcher", "background"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let first = session_of(&o);
    assert_eq!(
        first.parent().unwrap(),
        project.join("sessions").canonicalize().unwrap()
    );

    // From two levels down, status finds it with no flag and no $MAESTRO_SESSIONS.
    let o = run_in(&sb, &deep, &["status", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["session"], session_id(&first).as_str());

    // A run from down there goes where lookups look, not into src/deeper/sessions.
    let o = run_in(&sb, &deep, &["run", plan, "-q", "--launcher", "background"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(session_of(&o).parent(), first.parent());
    assert!(!deep.join("sessions").exists());
}

#[test]
fn a_sessions_directory_without_sessions_is_not_ours() {
    let sb = Sandbox::new();
    // Some other tool's `sessions/` above us holds no maestro session: passed over.
    fs::create_dir_all(sb.path().join("sessions").join("not-ours")).unwrap();
    let here = sb.path().join("work");
    fs::create_dir_all(&here).unwrap();
    let o = run_in(&sb, &here, &["list"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "SESSION  STATE  DONE  AGE\n",
        "not-ours is not listed"
    );
}

#[test]
fn a_unique_id_prefix_names_a_session_and_an_ambiguous_one_is_refused() {
    let sb = Sandbox::new();
    let a = sb.run_ok("one.toml", ONE);
    let b = sb.run_ok("one.toml", ONE);
    let (ia, ib) = (session_id(&a), session_id(&b));
    // The shortest prefix of a that b does not share.
    let n = ia
        .bytes()
        .zip(ib.bytes())
        .take_while(|(x, y)| x == y)
        .count()
        + 1;
    let o = sb.run(&["status", &ia[..n], "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["session"], ia.as_str());

    let o = sb.run(&["status", "cli-"]);
    assert_eq!(o.status.code(), Some(2));
    let (first, second) = if ia < ib { (&ia, &ib) } else { (&ib, &ia) };
    assert_eq!(
        stderr(&o),
        format!(
            "error: \"cli-\" matches 2 sessions under {}: {first}, {second}; give more of the id\n",
            sb.sessions().display()
        )
    );
}

/// One row of the exit-code table per assertion: 2 for what makes no sense in the
/// session's state, with a message saying what to do instead.
#[test]
fn verbs_refused_by_a_finished_session_exit_2_and_say_what_to_do() {
    let sb = Sandbox::new();
    let s = sb.run_ok("one.toml", ONE);
    let id = session_id(&s);
    let o = sb.run(&["send", &id, "--to", "a", "hello"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        format!(
            "error: session {id} has finished (succeeded): nothing runs there to send to \
             (`orchestrator retry {id} TASK` re-runs a task)\n"
        )
    );
    let o = sb.run(&["reassign", &id, "a"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        format!(
            "error: session {id} has finished (succeeded): nothing runs there to reassign \
             (`orchestrator retry {id} TASK` re-runs a task)\n"
        )
    );
    let o = sb.run(&["resume", &id, "-q"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        format!(
            "error: session {id} already finished (succeeded); `orchestrator retry {id} TASK` \
             re-runs a failed task\n"
        )
    );
    // Unknown session and unknown task: 2 as well.
    let o = sb.run(&["reassign", &id, "zz"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        format!("error: session {id} has no task \"zz\"\n")
    );
}

#[test]
fn a_session_with_a_failed_task_exits_1_and_a_bad_plan_2() {
    let sb = Sandbox::new();
    let o = sb.run_plan(
        "fail.toml",
        "name = \"f\"\n[[task]]\nid = \"a\"\nrun = \"exit 4\"\n",
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let o = sb.run_plan("bad.toml", "name = \"f\"\n[[task]]\n", &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// A child process killed (and reaped) when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Child {
    /// Wait for it to exit (within `limit`); its exit code and stdout.
    fn finish(mut self, limit: std::time::Duration) -> (Option<i32>, String) {
        use std::io::Read;
        let deadline = std::time::Instant::now() + limit;
        let status = loop {
            if let Some(st) = self.0.try_wait().unwrap() {
                break st;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still running after {limit:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let mut out = String::new();
        if let Some(mut o) = self.0.stdout.take() {
            o.read_to_string(&mut out).unwrap();
        }
        (status.code(), out)
    }

    /// CPU time (user + system) it used so far, in clock ticks.
    fn cpu_ticks(&self) -> u64 {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.0.id())).unwrap();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        // Fields 14 and 15 of stat(5); the slice starts at field 3.
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }
}

fn spawn(sb: &Sandbox, args: &[&str]) -> Child {
    let mut c = sb.orch();
    c.args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    Child(c.spawn().unwrap())
}

const TWO_GATED: &str = r#"name = "logs"
workers = 2
[[task]]
id = "a"
run = "echo a-one; while [ ! -e \"$OUT/go\" ]; do sleep 0.05; done; echo a-two; printf a-last"
[[task]]
id = "b"
after = ["a"]
run = "echo b-one"
"#;

#[test]
fn logs_follow_of_a_task_not_started_waits_idle_and_prints_to_its_last_line() {
    let mut sb = Sandbox::new();
    let s = sb.start_plan("logs.toml", TWO_GATED, &["-q"]);
    let id = session_id(&s);
    let follow_b = spawn(&sb, &["logs", &id, "b", "-f"]);
    let follow_all = spawn(&sb, &["logs", &id, "--all", "-f"]);
    // Measured over a second and a half while b cannot start: a spinning loop uses all
    // of it, a watcher-driven wait almost none.
    let before = follow_b.cpu_ticks();
    let t0 = std::time::Instant::now();
    wait_until(
        std::time::Duration::from_secs(5),
        "a second and a half",
        || t0.elapsed() >= std::time::Duration::from_millis(1500),
    );
    let used = follow_b.cpu_ticks() - before;
    // Clock ticks are 1/100 s: 5 % of 1.5 s is 7.5 ticks.
    assert!(
        used <= 7,
        "logs -f used {used} ticks in 1.5 s while waiting"
    );
    touch(&sb, "go");
    assert_eq!(sb.wait_last(std::time::Duration::from_secs(60)), 0);
    let (code, out) = follow_b.finish(std::time::Duration::from_secs(30));
    assert_eq!((code, out.as_str()), (Some(0), "b-one\n"));
    let (code, out) = follow_all.finish(std::time::Duration::from_secs(30));
    assert_eq!(code, Some(0));
    assert_eq!(out, "a | a-one\na | a-two\na | a-last\nb | b-one\n");

    // Without -f, the same lines, merged by time.
    let o = sb.run(&["logs", &id, "--all"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "a | a-one\na | a-two\na | a-last\nb | b-one\n");
}

#[test]
fn wait_exits_with_the_sessions_code_and_scale_changes_the_worker_limit() {
    let mut sb = Sandbox::new();
    let plan = format!(
        "name = \"scale\"\nworkers = 1\n{}",
        (1..=3)
            .map(|i| format!("[[task]]\nid = \"t{i}\"\nrun = '{}'\n", gated("go")))
            .collect::<String>()
    );
    let s = sb.start_plan("scale.toml", &plan, &["-q"]);
    let id = session_id(&s);
    let waiter = spawn(&sb, &["wait", &id]);
    wait_started(&s, "t1", 1);
    let o = sb.run(&["scale", &id, "3"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "worker limit 1 -> 3: more workers start now\n");
    // With room for three, the two others start while t1 still runs.
    wait_started(&s, "t2", 1);
    wait_started(&s, "t3", 1);
    let scaled: Vec<_> = events(&s)
        .into_iter()
        .filter(|e| e["event"] == "workers_scaled")
        .collect();
    assert_eq!(scaled.len(), 1);
    assert_eq!(scaled[0]["workers"], 3);
    let o = sb.run(&["scale", &id, "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o), "error: the worker limit must be at least 1\n");
    touch(&sb, "go");
    let (code, _) = waiter.finish(std::time::Duration::from_secs(60));
    assert_eq!(code, Some(0));

    let o = sb.run_plan(
        "f.toml",
        "name = \"f\"\n[[task]]\nid = \"a\"\nrun = \"exit 3\"\n",
        &["-q"],
    );
    let failed = session_id(&session_of(&o));
    let o = sb.run(&["wait", &failed]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn prune_removes_ended_sessions_only_and_keeps_the_newest() {
    let mut sb = Sandbox::new();
    let old = session_id(&sb.run_ok("one.toml", ONE));
    let newer = session_id(&sb.run_ok("one.toml", ONE));
    let live = sb.start_plan(
        "live.toml",
        &format!(
            "name = \"live\"\n[[task]]\nid = \"a\"\nrun = '{}'\n",
            gated("go")
        ),
        &["-q"],
    );
    wait_started(&live, "a", 1);
    let o = sb.run(&["prune", "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!("would remove {old}\nwould remove {newer}\nwould remove 2 of 2 ended sessions\n")
    );
    let o = sb.run(&["prune", "--keep", "1"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!("removed {old}\nremoved 1 of 2 ended sessions\n")
    );
    assert!(!sb.sessions().join(&old).exists());
    assert!(sb.sessions().join(&newer).exists());
    // Young sessions stay under --older-than.
    let o = sb.run(&["prune", "--older-than", "1h"]);
    assert_eq!(stdout(&o), "removed 0 of 1 ended sessions\n");
    assert!(live.exists());
    touch(&sb, "go");
    assert_eq!(sb.wait_last(std::time::Duration::from_secs(60)), 0);
}

#[test]
fn completions_and_the_man_page_are_generated() {
    let sb = Sandbox::new();
    let o = sb.run(&["completions", "bash"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o).contains("complete -F _orchestrator"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("prune"));
    for shell in ["zsh", "fish"] {
        let o = sb.run(&["completions", shell]);
        assert_eq!(o.status.code(), Some(0));
        assert!(stdout(&o).contains("rollback"), "{shell}");
    }
    let o = sb.run(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2));
    let o = sb.run(&["man"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains(".TH orchestrator 1"), "{}", stdout(&o));
    assert!(stdout(&o).contains("prune"));
}
