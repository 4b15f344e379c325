//! Agent tasks with real processes: a fake agent reports Claude Code hook payloads through
//! `worker hook` and its state moves through working, waiting and idle in `status --json`;
//! time spent waiting does not count toward its timeout; `notify` runs once per wait;
//! `end_on = "idle"` ends a task whose agent worked and went idle.

use std::time::Duration;

use crate::util::*;

fn agent_state(sb: &Sandbox, session: &std::path::Path, task: &str) -> String {
    let st = status_json(sb, session);
    st["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["id"] == task)
        .and_then(|t| t["agent"]["state"].as_str())
        .unwrap_or("none")
        .to_string()
}

#[test]
fn a_fake_agent_moves_through_its_states_from_its_own_hooks() {
    let mut sb = Sandbox::new();
    let hook = |json: &str| format!("printf '%s' '{json}' | worker hook");
    let run = [
        hook(r#"{"hook_event_name":"SessionStart","source":"startup"}"#),
        hook(r#"{"hook_event_name":"UserPromptSubmit","prompt":"fix the bug"}"#),
        wait_for_file("s1"),
        hook(
            r#"{"hook_event_name":"Notification","notification_type":"permission_prompt","message":"Claude needs your permission to use Bash"}"#,
        ),
        // Longer than the timeout, but waiting for a person does not count.
        "sleep 2.5".into(),
        wait_for_file("s2"),
        hook(r#"{"hook_event_name":"PostToolUse","tool_name":"Bash"}"#),
        wait_for_file("s3"),
        hook(r#"{"hook_event_name":"Stop"}"#),
        wait_for_file("s4"),
    ]
    .join("\n");
    let plan = format!(
        "name = \"p\"\n[[task]]\nid = \"agent\"\nagent = \"claude-code\"\ntimeout = \"2s\"\n\
         notify = 'echo \"$MAESTRO_TASK: $MAESTRO_AGENT_MESSAGE\" >> \"$OUT/notified\"'\n\
         run = '''\n{run}\n'''\n"
    );
    let session = sb.start_plan("p.toml", &plan, &["-q"]);
    let reach = |sb: &Sandbox, want: &str| {
        wait_until(
            Duration::from_secs(30),
            &format!("the agent {want}"),
            || agent_state(sb, &session, "agent") == want,
        )
    };
    reach(&sb, "working");
    touch(&sb, "s1");
    reach(&sb, "waiting");
    let st = status_json(&sb, &session);
    assert_eq!(
        st["tasks"][0]["agent"]["message"],
        "Claude needs your permission to use Bash"
    );
    let o = sb.run(&["status", session.to_str().unwrap(), "--waiting"]);
    assert!(stdout(&o).contains("agent WAITING: Claude needs your permission to use Bash"));
    wait_until(Duration::from_secs(30), "the notification", || {
        std::fs::read_to_string(sb.out().join("notified")).unwrap_or_default()
            == "agent: Claude needs your permission to use Bash\n"
    });
    touch(&sb, "s2");
    reach(&sb, "working");
    touch(&sb, "s3");
    reach(&sb, "idle");
    touch(&sb, "s4");
    assert_eq!(sb.wait_last(Duration::from_secs(60)), 0, "not timed out");
    assert_eq!(agent_state(&sb, &session, "agent"), "exited");
    let states: Vec<String> = events(&session)
        .iter()
        .filter(|e| e["event"] == "agent_state")
        .map(|e| e["state"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        states,
        ["starting", "idle", "working", "waiting", "working", "idle"]
    );
    assert!(
        session
            .join("tasks/agent/attempt-1/claude-settings.json")
            .is_file()
    );
    let o = sb.run(&["status", session.to_str().unwrap(), "--waiting", "--json"]);
    let st: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(st["tasks"], serde_json::json!([]), "nobody waits any more");
}

#[test]
fn worker_state_reports_for_any_agent_and_a_bad_state_is_refused() {
    let sb = Sandbox::new();
    let plan = "name = \"p\"\n[[task]]\nid = \"g\"\nagent = \"generic\"\n\
         run = 'worker state waiting \"which table?\"; worker state working; worker state bogus 2> \"$OUT/err\"; echo $? > \"$OUT/code\"'\n";
    let session = sb.run_ok("p.toml", plan);
    let states: Vec<(String, Option<String>)> = events(&session)
        .iter()
        .filter(|e| e["event"] == "agent_state")
        .map(|e| {
            (
                e["state"].as_str().unwrap_or_default().to_string(),
                e["message"].as_str().map(str::to_string),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("starting".to_string(), None),
            ("waiting".to_string(), Some("which table?".to_string())),
            ("working".to_string(), None)
        ]
    );
    assert_eq!(
        std::fs::read_to_string(sb.out().join("err")).unwrap(),
        "error: invalid state \"bogus\": expected working, waiting, idle or exited\n"
    );
    assert_eq!(
        std::fs::read_to_string(sb.out().join("code")).unwrap(),
        "2\n"
    );
}

/// examples/agents.toml as a person runs it (with the fake agent, no Claude Code here),
/// in a repository of its own: three agents side by side, each in its worktree; the one
/// that asks for permission waits, is found by `status --waiting`, and goes on once
/// answered with a message; the file all three changed is flagged, and the main
/// checkout is untouched.
#[test]
fn the_agents_example_runs_three_agents_and_waits_for_an_answer() {
    use crate::worktree::{GIT_ENV, git};
    let mut sb = Sandbox::new();
    let dir = sb.path().join("examples");
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("fake-agent.sh");
    std::fs::write(&script, include_str!("../../examples/fake-agent.sh")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let plan = sb.write("agents.toml", include_str!("../../examples/agents.toml"));
    git(sb.path(), &["init", "-q", "-b", "main"]);
    git(sb.path(), &["add", "examples", "agents.toml"]);
    git(sb.path(), &["commit", "-qm", "the example"]);
    let session = sb.start_with(
        &[
            "run",
            plan.to_str().unwrap(),
            "--launcher",
            "background",
            "-q",
        ],
        GIT_ENV,
    );
    wait_until(Duration::from_secs(30), "the tests agent to wait", || {
        agent_state(&sb, &session, "tests") == "waiting"
    });
    let s = session.to_str().unwrap();
    let o = sb.run(&["status", s, "--waiting", "--json"]);
    let st: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let waiting: Vec<&str> = st["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(waiting, ["tests"]);
    let o = sb.run(&["send", s, "--to", "tests", "yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(sb.wait_last(Duration::from_secs(60)), 0);
    for t in ["docs", "refactor", "tests"] {
        assert_eq!(outcome(&session, t)["state"], "succeeded", "{t}");
        assert_eq!(agent_state(&sb, &session, t), "exited", "{t}");
    }
    let log = std::fs::read_to_string(session.join("tasks/tests/attempt-1/stdout.log")).unwrap();
    assert!(log.contains("the answer was: yes"), "{log}");
    let st = status_json(&sb, &session);
    let id = session_id(&session);
    for t in ["docs", "refactor", "tests"] {
        let task = st["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == t)
            .unwrap();
        assert_eq!(
            task["worktree"]["branch"],
            format!("maestro/{id}/{t}"),
            "{t}"
        );
        assert_eq!(
            task["worktree"]["changed"],
            serde_json::json!(["examples/AGENT-NOTES.md"]),
            "{t}"
        );
    }
    assert_eq!(
        st["conflicts"],
        serde_json::json!([{"file": "examples/AGENT-NOTES.md", "tasks": ["docs", "refactor", "tests"]}])
    );
    assert!(
        !dir.join("AGENT-NOTES.md").exists(),
        "the main checkout is untouched"
    );
}

/// `end_on = "idle"`: an agent that worked and then went idle ends its task, which
/// succeeds (the agent itself would wait for a new prompt for ever); an idle before any
/// work ends nothing; without `end_on` an idle agent's task keeps running.
#[test]
fn end_on_idle_ends_an_agent_task_once_it_worked_and_went_idle() {
    let mut sb = Sandbox::new();
    let plan = format!(
        "name = \"p\"\nworkers = 2\n\
         [[task]]\nid = \"ends\"\nagent = \"generic\"\nend_on = \"idle\"\n\
         run = 'worker state idle; {s1}; worker state working; worker state idle; exec sleep 1000'\n\
         [[task]]\nid = \"keeps\"\nagent = \"generic\"\n\
         run = 'worker state working; worker state idle; {s2}; echo kept > \"$OUT/kept\"'\n",
        s1 = wait_for_file("s1"),
        s2 = wait_for_file("s2"),
    );
    let session = sb.start_plan("p.toml", &plan, &["-q"]);
    wait_until(Duration::from_secs(30), "the first idle", || {
        agent_state(&sb, &session, "ends") == "idle"
    });
    touch(&sb, "s1");
    wait_until(Duration::from_secs(30), "ends to be decided", || {
        session.join("tasks/ends/outcome.json").exists()
    });
    assert_eq!(outcome(&session, "ends")["state"], "succeeded");
    let exit = read_json(&session.join("tasks/ends/attempt-1/exit.json")).unwrap();
    assert_eq!(exit["exit_code"], 0, "{exit}");
    assert_eq!(exit["ended_on"], "idle", "{exit}");
    assert!(
        exit["signal"].is_null() && exit["killed_by"].is_null(),
        "{exit}"
    );
    let states: Vec<String> = events(&session)
        .iter()
        .filter(|e| e["event"] == "agent_state" && e["task"] == "ends")
        .map(|e| e["state"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        states[..4],
        ["starting", "idle", "working", "idle"],
        "the first idle ended nothing"
    );
    // Idle after working, but no end_on: still running until it ends by itself.
    wait_until(Duration::from_secs(30), "keeps idle", || {
        agent_state(&sb, &session, "keeps") == "idle"
    });
    assert!(!session.join("tasks/keeps/outcome.json").exists());
    touch(&sb, "s2");
    assert_eq!(sb.wait_last(Duration::from_secs(60)), 0);
    assert!(sb.out().join("kept").exists());
    let exit = read_json(&session.join("tasks/keeps/attempt-1/exit.json")).unwrap();
    assert!(exit["ended_on"].is_null(), "{exit}");
}
