//! Hostile session folders: links and special files planted where maestro's own
//! directories and files belong. Nothing outside the session is ever read or written;
//! each refusal names the path.

use std::fs;
use std::path::Path;

use crate::util::*;

/// An empty directory outside the session that planted links point at.
fn outside(sb: &Sandbox) -> std::path::PathBuf {
    let d = sb.path().join("outside");
    fs::create_dir_all(&d).unwrap();
    d
}

/// Run `plan` with `$OUT` naming a directory outside the session (returned, empty).
fn run_planting(sb: &Sandbox, plan: &str) -> (std::process::Output, std::path::PathBuf) {
    let out = outside(sb);
    let o = sb
        .orch()
        .args(["run", "-q", "--launcher", "background"])
        .arg(sb.write("p.toml", plan))
        .env("OUT", &out)
        .output()
        .unwrap();
    (o, out)
}

fn assert_untouched(dir: &Path) {
    assert_eq!(
        names_in(dir),
        Vec::<String>::new(),
        "written outside the session"
    );
}

fn refusal(path: &Path) -> String {
    format!(
        "{}: is a symbolic link; maestro never follows links or opens special files inside \
         a session (move it away, then try again)",
        path.display()
    )
}

#[test]
fn a_link_planted_as_a_later_attempts_directory_fails_that_attempt_only() {
    let sb = Sandbox::new();
    let (o, out) = run_planting(
        &sb,
        "name = \"p\"\n[[task]]\nid = \"plant\"\n\
         run = 'mkdir -p \"$MAESTRO_SESSION/tasks/victim\" && ln -s \"$OUT\" \"$MAESTRO_SESSION/tasks/victim/attempt-1\"'\n\
         [[task]]\nid = \"victim\"\nafter = [\"plant\"]\nretries = 1\nrun = 'echo hi > out.txt'\n",
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let session = session_of(&o);
    assert_untouched(&out);
    let first: Vec<_> = events(&session)
        .into_iter()
        .filter(|e| e["event"] == "retry_scheduled")
        .collect();
    let reason = first[0]["reason"].as_str().unwrap();
    assert_eq!(
        reason,
        format!(
            "could not start: {}",
            refusal(&session.join("tasks/victim/attempt-1"))
        )
    );
    assert_eq!(outcome(&session, "victim")["attempt"], 2);
}

#[test]
fn a_link_planted_as_a_task_directory_stops_the_run_naming_it_and_resume_goes_on() {
    let sb = Sandbox::new();
    let (o, out) = run_planting(
        &sb,
        "name = \"p\"\n[[task]]\nid = \"plant\"\n\
         run = 'ln -s \"$OUT\" \"$MAESTRO_SESSION/tasks/victim\"'\n\
         [[task]]\nid = \"victim\"\nafter = [\"plant\"]\nrun = 'true'\n",
    );
    let session = session_of(&o);
    let link = session.join("tasks/victim");
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert_eq!(stderr(&o), format!("error: {}\n", refusal(&link)));
    assert_untouched(&out);
    let refused: Vec<_> = events(&session)
        .into_iter()
        .filter(|e| e["event"] == "refused")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["path"], link.display().to_string());
    assert_eq!(refused[0]["what"], "is a symbolic link");
    // Once the link is moved away, the session goes on from where it stopped.
    fs::remove_file(&link).unwrap();
    let o = sb.resume(&session);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_status(
        &sb,
        &session,
        "succeeded",
        &[("plant", "succeeded"), ("victim", "succeeded")],
    );
    assert_untouched(&out);
}

/// Each shared directory a task verb writes into, replaced by a link: the verb fails
/// naming the link, and nothing lands outside.
#[test]
fn task_verbs_refuse_links_planted_as_the_sessions_directories() {
    let cases = [
        ("shared", "worker set k v"),
        ("messages", "worker send --to all hello"),
        (
            "checkpoints",
            "worker checkpoint gate --parties 2 --timeout 1s",
        ),
        ("signals", "worker signal go"),
        ("locks", "worker lock db -- true"),
    ];
    for (dir, verb) in cases {
        let sb = Sandbox::new();
        let out = outside(&sb);
        let plan = format!(
            "name = \"p\"\n[[task]]\nid = \"plant\"\n\
             run = 'rm -rf \"$MAESTRO_SESSION/{dir}\" && ln -s \"$OUT\" \"$MAESTRO_SESSION/{dir}\"'\n\
             [[task]]\nid = \"victim\"\nafter = [\"plant\"]\nrun = '{verb} 2> \"$ERR\"'\n"
        );
        let err = sb.path().join("err.txt");
        let o = sb
            .orch()
            .args(["run", "-q", "--launcher", "background"])
            .arg(sb.write("p.toml", &plan))
            .env("OUT", &out)
            .env("ERR", &err)
            .output()
            .unwrap();
        let session = session_of(&o);
        assert_untouched(&out);
        assert_eq!(
            outcome(&session, "victim")["state"],
            "failed",
            "{dir}: {}",
            stderr(&o)
        );
        let said = fs::read_to_string(&err).unwrap();
        assert!(said.contains(&refusal(&session.join(dir))), "{dir}: {said}");
    }
}

#[test]
fn a_fifo_planted_as_a_result_is_refused_and_never_blocks() {
    let sb = Sandbox::new();
    let o = sb.run_plan(
        "p.toml",
        "name = \"p\"\n[[task]]\nid = \"a\"\nrun = 'mkfifo \"$MAESTRO_RESULT\"'\n",
        &["-q"],
    );
    let session = session_of(&o);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = outcome(&session, "a");
    assert_eq!(out["state"], "failed");
    assert_eq!(
        out["reason"],
        format!(
            "{}: is a FIFO where a regular file belongs; maestro never follows links or opens \
             special files inside a session (move it away, then try again)",
            session.join("tasks/a/attempt-1/result.json").display()
        )
    );
}

/// What a hand-made `exit.json` of a successful attempt looks like.
const FAKE_EXIT: &str = r#"{"task":"victim","attempt":1,"worker":"w1","exit_code":0,"signal":null,"started_at":"2026-01-01T00:00:00Z","ended_at":"2026-01-01T00:00:01Z","duration_ms":1000}"#;

/// The orchestrator's `quarantined` journal lines.
fn quarantined(session: &Path) -> Vec<serde_json::Value> {
    events(session)
        .into_iter()
        .filter(|e| e["event"] == "quarantined")
        .collect()
}

// A worker skipped an assignment whose exit.json already existed, without a word, and
// the session waited for it forever.
#[test]
fn an_exit_planted_before_the_attempt_ran_is_quarantined_and_the_attempt_runs() {
    let sb = Sandbox::new();
    let plan = "name = \"p\"\n[[task]]\nid = \"plant\"\n\
         run = 'd=\"$MAESTRO_SESSION/tasks/victim/attempt-1\"; mkdir -p \"$d\" && cp \"$FAKE\" \"$d/exit.json\"'\n\
         [[task]]\nid = \"victim\"\nafter = [\"plant\"]\nrun = 'echo ran > \"$OUT/ran\"'\n";
    let mut c = sb.orch();
    c.args(["run", "-q", "--launcher", "background"])
        .arg(sb.write("p.toml", plan))
        .env("FAKE", sb.write("fake.json", FAKE_EXIT))
        .env("OUT", sb.out());
    let o = run_with_deadline(c, std::time::Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let session = session_of(&o);
    assert!(sb.out().join("ran").exists(), "the attempt never ran");
    let q = quarantined(&session);
    assert_eq!(q.len(), 1, "{q:?}");
    let planted = session.join("tasks/victim/attempt-1/exit.json");
    assert_eq!(q[0]["path"], planted.display().to_string());
    let aside = Path::new(q[0]["to"].as_str().unwrap());
    assert_eq!(fs::read_to_string(aside).unwrap(), FAKE_EXIT);
    // The exit that counts is the worker's own, written after the attempt ran.
    let exit = read_json(&planted).unwrap();
    assert_ne!(exit["started_at"], "2026-01-01T00:00:00Z");
}

// A torn exit.json left by a worker that died decided the task as failed ("invalid
// JSON"), though no worker ever recorded that exit.
#[test]
fn a_torn_exit_of_a_dead_worker_is_quarantined_and_the_task_runs_again() {
    let sb = Sandbox::new();
    let o = sb.run_plan(
        "p.toml",
        "name = \"p\"\n[[task]]\nid = \"a\"\n\
         run = 'if [ \"$MAESTRO_ATTEMPT\" = 1 ]; then printf \"{\\\"task\\\":\" > \"$(dirname \"$MAESTRO_RESULT\")/exit.json\"; kill -9 $PPID; fi'\n",
        &["-q"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let session = session_of(&o);
    assert_eq!(outcome(&session, "a")["attempt"], 2);
    let q = quarantined(&session);
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0]["task"], "a");
    assert_eq!(q[0]["attempt"], 1);
    assert_eq!(
        q[0]["reason"],
        "worker w1 died without journalling this exit"
    );
}

// On resume, an exit.json of the running attempt that its worker never journalled (the
// orchestrator and the worker were killed; someone wrote the file meanwhile) decided the
// task by the file.
#[test]
fn on_resume_an_exit_no_worker_journalled_is_quarantined_and_the_attempt_runs_again() {
    let mut sb = Sandbox::new();
    let session = sb.start_plan(
        "p.toml",
        &format!(
            "name = \"p\"\nworkers = 1\n[[task]]\nid = \"victim\"\nrun = '{}'\n",
            first_attempt_waits_for("never", "")
        ),
        &["-q"],
    );
    wait_started(&session, "victim", 1);
    sb.kill_orchestrator(&session);
    kill_workers(&session);
    let planted = session.join("tasks/victim/attempt-1/exit.json");
    fs::write(&planted, FAKE_EXIT).unwrap();
    let s = session.to_str().unwrap().to_string();
    sb.start(&["resume", &s, "-q"]);
    assert_eq!(sb.wait_last(std::time::Duration::from_secs(60)), 0);
    assert_eq!(outcome(&session, "victim")["attempt"], 2);
    let q = quarantined(&session);
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0]["path"], planted.display().to_string());
    assert_eq!(q[0]["reason"], "worker w1 did not journal this exit");
}

// A worker whose directory was deleted went on running unseen, and the session waited.
#[test]
fn a_worker_whose_directory_is_removed_exits_and_its_task_runs_on_another() {
    let mut sb = Sandbox::new();
    let session = sb.start_plan(
        "p.toml",
        &format!(
            "name = \"p\"\nworkers = 1\n[[task]]\nid = \"a\"\nrun = '{}'\n",
            first_attempt_waits_for("never", "")
        ),
        &["-q"],
    );
    wait_started(&session, "a", 1);
    let pid = worker_pid(&session, "w1");
    let group = pgid_of(&session, "a", 1);
    fs::remove_dir_all(session.join("workers/w1")).unwrap();
    wait_gone(pid, "the worker whose directory was removed");
    assert!(group_members(group).is_empty(), "its task outlived it");
    assert_eq!(sb.wait_last(std::time::Duration::from_secs(60)), 0);
    assert_eq!(outcome(&session, "a")["attempt"], 2);
    assert_ne!(outcome(&session, "a")["worker"], "w1");
}

#[test]
fn removing_a_running_session_stops_its_orchestrator_workers_and_tasks() {
    let mut sb = Sandbox::new();
    let session = sb.start_plan(
        "p.toml",
        "name = \"p\"\nworkers = 1\n[[task]]\nid = \"a\"\nrun = 'sleep 1000'\n",
        &["-q"],
    );
    wait_started(&session, "a", 1);
    let pid = worker_pid(&session, "w1");
    let group = pgid_of(&session, "a", 1);
    fs::remove_dir_all(&session).unwrap();
    assert_eq!(sb.wait_last(std::time::Duration::from_secs(30)), 3);
    let err = fs::read_to_string(sb.path().join("orchestrator.stderr")).unwrap();
    // Its last line (notify's poll watcher warns first about the directories it lost).
    assert!(
        err.ends_with(&format!(
            "\nerror: {}: removed while the session was running; stopping\n",
            session.display()
        )) || err
            == format!(
                "error: {}: removed while the session was running; stopping\n",
                session.display()
            ),
        "{err}"
    );
    wait_gone(pid, "the worker of the removed session");
    assert!(group_members(group).is_empty(), "its task outlived it");
}
