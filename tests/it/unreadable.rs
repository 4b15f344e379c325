//! A file that cannot be read is shown as such, by path, and the rest of the session is
//! shown: `status` (text and `--json`) degrades per file and exits 0 while the session is
//! readable; `list` shows sessions with unreadable files, and entries that are not
//! sessions, with why.

use std::fs;
use std::time::Duration;

use crate::util::*;

/// An interrupted session whose `a` ended after its orchestrator died (an `exit.json`
/// and no outcome), with that `exit.json` and a worker's `worker.json` corrupt.
#[test]
fn status_shows_a_corrupt_exit_json_as_bad_and_the_rest_as_usual() {
    let mut sb = Sandbox::new();
    let session = sb.start_plan(
        "bad.toml",
        &format!(
            "name = \"bad\"\nworkers = 2\n[[task]]\nid = \"a\"\nrun = '{}'\n\
             [[task]]\nid = \"ok\"\nrun = \"true\"\n",
            gated("go")
        ),
        &[],
    );
    wait_started(&session, "a", 1);
    wait_until(Duration::from_secs(30), "ok's outcome", || {
        session.join("tasks/ok/outcome.json").exists()
    });
    sb.kill_orchestrator(&session);
    fs::write(sb.out().join("go"), "").unwrap();
    let exit = session.join("tasks/a/attempt-1/exit.json");
    wait_until(Duration::from_secs(30), "a's exit.json", || exit.exists());
    fs::write(&exit, "{\"task\": ").unwrap();
    let worker = started_by(&session, "a", 1).unwrap();
    let worker_json = session.join(format!("workers/{worker}/worker.json"));
    // Stopped first: the sandbox finds the workers it must stop by their worker.json.
    let pid = worker_pid(&session, &worker);
    signal(pid, "-KILL");
    wait_gone(pid, "the worker");
    fs::write(&worker_json, "not json").unwrap();

    let o = sb.run(&["status", session.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(st["state"], "interrupted");
    let tasks = st["tasks"].as_array().unwrap();
    let a = &tasks[0];
    assert_eq!(a["id"], "a");
    assert_eq!(
        a["error"],
        format!(
            "{}: invalid JSON: EOF while parsing a value at line 1 column 9",
            exit.display()
        )
    );
    assert_eq!(tasks[1]["state"], "succeeded");
    assert!(tasks[1].get("error").is_none(), "{}", tasks[1]);
    let w = st["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == worker.as_str())
        .unwrap();
    assert_eq!(
        w["error"],
        format!(
            "{}: invalid JSON: expected ident at line 1 column 2",
            worker_json.display()
        )
    );
    assert!(st.get("errors").is_none(), "{st}");

    let o = sb.run(&["status", session.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    let row = text.lines().find(|l| l.starts_with("a ")).unwrap();
    assert!(
        row.ends_with(&format!(
            "unreadable: {}: invalid JSON: EOF while parsing a value at line 1 column 9",
            exit.display()
        )),
        "{text}"
    );
    assert!(text.contains("ok    succeeded"), "{text}");

    let id = session_id(&session);
    let o = sb.run(&["list"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!(
            "2 unreadable files: `orchestrator status {id}` shows which"
        )),
        "{}",
        stdout(&o)
    );
}

/// A finished session whose summary and one outcome are corrupt: the state comes from the
/// journal, the task's too, each bad file is named; `list` shows it and an entry of the
/// sessions directory that is not a session, in text and JSON.
#[test]
fn a_finished_session_with_corrupt_files_and_a_stray_entry_are_listed_with_why() {
    let sb = Sandbox::new();
    let session = sb.run_ok(
        "fin.toml",
        "name = \"fin\"\n[[task]]\nid = \"a\"\nrun = \"true\"\n[[task]]\nid = \"b\"\nrun = \"true\"\n",
    );
    let summary = session.join("summary.json");
    let outcome = session.join("tasks/b/outcome.json");
    fs::write(&summary, "{").unwrap();
    fs::write(&outcome, "").unwrap();
    let stray = sb.sessions().join("stray");
    fs::create_dir(&stray).unwrap();
    fs::set_permissions(&stray, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();

    let st = status_json(&sb, &session);
    assert_eq!(
        st["state"], "succeeded",
        "from the journal's session_finished"
    );
    assert_eq!(
        st["errors"],
        serde_json::json!([format!(
            "{}: invalid JSON: EOF while parsing an object at line 1 column 1",
            summary.display()
        )])
    );
    assert_eq!(st["tasks"][1]["state"], "succeeded", "from the journal");
    assert_eq!(
        st["tasks"][1]["error"],
        format!(
            "{}: invalid JSON: EOF while parsing a value at line 1 column 0",
            outcome.display()
        )
    );
    assert_eq!(st["tasks"][0]["state"], "succeeded");

    let id = session_id(&session);
    let o = sb.run(&["list", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rows[0]["session"], id.as_str());
    assert_eq!(rows[0]["state"], "succeeded");
    assert_eq!(
        (rows[0]["done"].as_u64(), rows[0]["total"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(rows[0]["unreadable"], 2);
    assert_eq!(rows[1]["session"], "stray");
    assert_eq!(rows[1]["state"], "unreadable");
    assert_eq!(
        rows[1]["reason"],
        format!(
            "{}: is not a maestro session (no session.json)",
            stray.display()
        )
    );
    let o = sb.run(&["list"]);
    let text = stdout(&o);
    let stray_row = text.lines().find(|l| l.starts_with("stray ")).unwrap();
    assert!(
        stray_row.contains(" unreadable ")
            && stray_row.ends_with(&format!(
                "{}: is not a maestro session (no session.json)",
                stray.display()
            )),
        "{text}"
    );
    // A session whose summary cannot be read finished all the same, as the journal says.
    let o = sb.run(&["resume", &id]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        format!(
            "error: session {id} already finished (succeeded); `orchestrator retry {id} TASK` re-runs a failed task\n"
        )
    );
}
