//! Validation's tests of what runs beside the tasks: auxiliary commands and their timing,
//! `cleanup_workers`, gates that run a check, the freeze policy; what each plan gives, and
//! the exact message of each refusal.

use std::path::{Path, PathBuf};

use super::super::super::Plan;
use super::super::super::test_util::{err, json_err, parse};

/// A plan of `head` (root keys and tables) and one task `a`, whose `extra` lines start at
/// line 5 when `head` is empty.
fn one_task(head: &str, extra: &str) -> String {
    format!("name = \"p\"\n{head}[[task]]\nid = \"a\"\nrun = \"t\"\n{extra}")
}

#[test]
fn auxiliary_commands_and_cleanup_timing_land_in_the_plan() {
    use super::super::super::CLEANUP_TIMEOUT_MS;
    let p = parse(
        r#"name = "p"
cleanup_workers = 3
[defaults]
cleanup_delay = "5s"
cleanup_timeout = "1m"
[[task]]
id = "a"
run = "t"
cleanup = "rm -rf tmp"
rollback = "git revert --no-edit HEAD"
emergency = "pg_ctl stop -m fast"
[[task]]
id = "b"
run = "t"
cleanup = "true"
cleanup_delay = "0s"
cleanup_timeout = "90s"
[[task]]
id = "c"
run = "t"
rollback = "true"
"#,
    )
    .unwrap();
    assert_eq!(p.cleanup_workers, 3);
    let a = &p.tasks[0];
    assert_eq!(a.cleanup.as_deref(), Some("rm -rf tmp"));
    assert_eq!((a.cleanup_delay_ms, a.cleanup_timeout_ms), (5_000, 60_000));
    assert_eq!(a.rollback.as_deref(), Some("git revert --no-edit HEAD"));
    assert_eq!(a.emergency.as_deref(), Some("pg_ctl stop -m fast"));
    // A task's own timing overrides the defaults', a zero delay meaning at once.
    let b = &p.tasks[1];
    assert_eq!(b.cleanup.as_deref(), Some("true"));
    assert_eq!((b.cleanup_delay_ms, b.cleanup_timeout_ms), (0, 90_000));
    assert_eq!(
        (b.rollback.as_deref(), b.emergency.as_deref()),
        (None, None)
    );
    // Without a cleanup, the defaults' timing is not carried: nothing would use it.
    let c = &p.tasks[2];
    assert_eq!(c.cleanup, None);
    assert_eq!(
        (c.cleanup_delay_ms, c.cleanup_timeout_ms),
        (0, CLEANUP_TIMEOUT_MS)
    );
    assert_eq!(c.rollback.as_deref(), Some("true"));
    // plan.json carries what differs from the defaults, and reads back the same.
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["cleanup_workers"], 3);
    assert_eq!(json["tasks"][0]["cleanup_delay_ms"], 5_000);
    assert_eq!(json["tasks"][1]["cleanup_timeout_ms"], 90_000);
    for key in [
        "cleanup",
        "cleanup_delay_ms",
        "cleanup_timeout_ms",
        "emergency",
    ] {
        assert!(json["tasks"][2].get(key).is_none(), "{key}");
    }
    let back: Plan = serde_json::from_value(json).unwrap();
    assert_eq!(back, p);
    // Built in: one cleanup worker, a cleanup at once and for at most 30 s.
    let p = parse(&one_task("", "cleanup = \"true\"\n")).unwrap();
    assert_eq!(p.cleanup_workers, 1);
    let a = &p.tasks[0];
    assert_eq!((a.cleanup_delay_ms, a.cleanup_timeout_ms), (0, 30_000));
    assert!(
        serde_json::to_value(&p)
            .unwrap()
            .get("cleanup_workers")
            .is_none()
    );
}

#[test]
fn gates_run_a_check_wait_for_approval_or_both() {
    use super::super::super::Gate;
    let p = parse(
        r#"name = "p"
[defaults]
cwd = "work"
[[task]]
id = "a"
run = "t"
cwd = "elsewhere"
[[gate]]
id = "check"
after = ["a"]
run = "make check"
timeout = "30s"
[[gate]]
id = "both"
after = ["a"]
run = "make check"
approve = true
[[gate]]
id = "person"
after = ["a"]
approve = true
"#,
    )
    .unwrap();
    let gate = |id: &str, approve, run: Option<&str>, timeout_ms, cwd: Option<&str>| Gate {
        id: id.into(),
        after: vec!["a".into()],
        approve,
        run: run.map(String::from),
        timeout_ms,
        cwd: cwd.map(PathBuf::from),
    };
    // `run` runs where tasks run by default: `[defaults] cwd`, resolved as for a task.
    assert_eq!(
        p.gates,
        [
            gate(
                "check",
                false,
                Some("make check"),
                Some(30_000),
                Some("/base/work")
            ),
            gate("both", true, Some("make check"), None, Some("/base/work")),
            gate("person", true, None, None, None),
        ]
    );
    // Without `[defaults] cwd`, where the orchestrator runs (the base).
    let p = parse(&one_task(
        "",
        "[[gate]]\nid = \"g\"\nafter = [\"a\"]\nrun = \"true\"\n",
    ))
    .unwrap();
    assert_eq!(p.gates[0].cwd, Some(PathBuf::from("/base")));
    let back: Plan = serde_json::from_value(serde_json::to_value(&p).unwrap()).unwrap();
    assert_eq!(back, p);
}

#[test]
fn freeze_is_a_failure_policy_of_the_plan_and_of_a_task() {
    use super::super::super::OnFailure;
    let p = parse(&one_task("on_failure = \"freeze\"\n", "")).unwrap();
    assert_eq!(p.on_failure, OnFailure::Freeze);
    assert!(p.may_stop());
    let p = parse(&one_task("", "on_failure = \"freeze\"\n")).unwrap();
    assert_eq!(p.on_failure, OnFailure::Continue);
    assert_eq!(p.on_failure_of(0), OnFailure::Freeze);
    assert!(p.may_stop());
}

#[test]
fn every_auxiliary_error_has_its_exact_message() {
    let gate = |lines: &str| one_task("", &format!("[[gate]]\nid = \"g\"\n{lines}"));
    let cases: &[(String, &str)] = &[
        (
            one_task("", "cleanup = \"\"\n"),
            "p.toml:5:11: cleanup: the command is empty",
        ),
        (
            one_task("", "rollback = \" \\t \"\n"),
            "p.toml:5:12: rollback: the command is empty",
        ),
        (
            one_task("", "emergency = \"\"\n"),
            "p.toml:5:13: emergency: the command is empty",
        ),
        (
            one_task("", "cleanup = \"true\"\ncleanup_delay = \"soon\"\n"),
            "p.toml:6:17: cleanup_delay: invalid duration \"soon\": expected number at 0",
        ),
        (
            one_task("[defaults]\ncleanup_delay = \"5 parsecs\"\n", ""),
            "p.toml:3:17: cleanup_delay: invalid duration \"5 parsecs\": unknown time unit \"parsecs\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations)",
        ),
        (
            one_task("", "cleanup = \"true\"\ncleanup_delay = \"-1s\"\n"),
            "p.toml:6:17: cleanup_delay must not be negative (got \"-1s\")",
        ),
        (
            one_task("", "cleanup = \"true\"\ncleanup_timeout = \"0s\"\n"),
            "p.toml:6:19: cleanup_timeout must be at least 1ms (got \"0s\")",
        ),
        (
            one_task("[defaults]\ncleanup_timeout = \"0s\"\n", ""),
            "p.toml:3:19: cleanup_timeout must be at least 1ms (got \"0s\")",
        ),
        (
            one_task("", "cleanup = \"true\"\ncleanup_timeout = \"x\"\n"),
            "p.toml:6:19: cleanup_timeout: invalid duration \"x\": expected number at 0",
        ),
        // Timing a cleanup the task does not have is a mistake; the defaults' is not.
        (
            one_task("", "cleanup_delay = \"5s\"\n"),
            "p.toml:5:17: cleanup_delay: the task has no cleanup",
        ),
        (
            one_task("", "cleanup_timeout = \"5s\"\n"),
            "p.toml:5:19: cleanup_timeout: the task has no cleanup",
        ),
        (
            one_task("cleanup_workers = 0\n", ""),
            "p.toml:2:19: cleanup_workers must be at least 1",
        ),
        (
            one_task("cleanup_workers = -2\n", ""),
            "p.toml:2:19: cleanup_workers must be at least 1",
        ),
        (
            one_task("cleanup_workers = \"2\"\n", ""),
            "p.toml:2:19: invalid type: string \"2\", expected i64",
        ),
        (
            gate("after = [\"a\"]\n"),
            "p.toml:6:6: gate \"g\": a gate needs run = \"...\" or approve = true",
        ),
        (
            gate("after = [\"a\"]\napprove = false\n"),
            "p.toml:6:6: gate \"g\": a gate needs run = \"...\" or approve = true",
        ),
        (
            gate("after = [\"a\"]\nrun = \"  \"\n"),
            "p.toml:8:7: gate \"g\": run: the command is empty",
        ),
        (
            gate("after = [\"a\"]\nrun = \"true\"\ntimeout = \"soon\"\n"),
            "p.toml:9:11: gate \"g\": timeout: invalid duration \"soon\": expected number at 0",
        ),
        (
            gate("after = [\"a\"]\nrun = \"true\"\ntimeout = \"0s\"\n"),
            "p.toml:9:11: gate \"g\": timeout must be at least 1ms (got \"0s\")",
        ),
        (
            gate("after = [\"a\"]\napprove = true\ntimeout = \"1m\"\n"),
            "p.toml:9:11: gate \"g\": timeout bounds run, and this gate has none",
        ),
        // Gates' older errors have positions too now.
        (
            gate("after = [\"a\", \"zz\"]\napprove = true\n"),
            "p.toml:7:15: gate \"g\": after names unknown task \"zz\"",
        ),
        (
            gate("approve = true\n"),
            "p.toml:6:6: gate \"g\": after must name at least one task",
        ),
        (
            gate(
                "after = [\"a\"]\napprove = true\n[[gate]]\nid = \"g\"\nafter = [\"a\"]\napprove = true\n",
            ),
            "p.toml:10:6: gate \"g\": declared twice",
        ),
        (
            one_task(
                "",
                "[[gate]]\nid = \"../g\"\nafter = [\"a\"]\napprove = true\n",
            ),
            "p.toml:6:6: invalid gate id \"../g\": must be 1-64 characters of [A-Za-z0-9._-] not starting with a dot",
        ),
        (
            one_task("", "on_failure = \"halt\"\n"),
            "p.toml:5:14: on_failure: \"halt\" is not a failure policy (use \"continue\", \"stop\" or \"freeze\")",
        ),
        // Unknown keys are refused with the full list, the new keys in it.
        (
            gate("after = [\"a\"]\napproved = true\n"),
            "p.toml:8:1: unknown field `approved`, expected one of `id`, `after`, `run`, `approve`, `timeout`",
        ),
        (
            one_task("[defaults]\ncleanup = \"true\"\n", ""),
            "p.toml:3:1: unknown field `cleanup`, expected one of `timeout`, `retries`, `cwd`, `env`, `env_from_parent`, `env_file`, `backoff`, `max_reassign`, `kill_grace`, `cleanup_delay`, `cleanup_timeout`, `worktree`",
        ),
        (
            one_task("cleanup_worker = 2\n", ""),
            "p.toml:2:1: unknown field `cleanup_worker`, expected one of `name`, `workers`, `keep_windows`, `lease`, `defaults`, `task`, `checkpoint`, `locks`, `race`, `resources`, `on_failure`, `gate`, `limits`, `cleanup_workers`",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(&err(text), expected, "plan:\n{text}");
    }
}

#[test]
fn json_plans_take_the_auxiliary_keys_with_positions_for_their_errors() {
    use super::super::super::OnFailure;
    let p = Plan::parse(
        "p.json",
        r#"{"name": "j", "cleanup_workers": 2, "on_failure": "freeze",
            "defaults": {"cleanup_delay": "1s", "cleanup_timeout": "2m", "cwd": "w"},
            "task": [{"id": "a", "run": "t", "cleanup": "rm -f lock", "rollback": "undo",
                      "emergency": "page me"},
                     {"id": "b", "run": "t", "cleanup": "true", "cleanup_timeout": "5s"}],
            "gate": [{"id": "g", "after": ["a"], "run": "check", "timeout": "10s"}]}"#,
        Path::new("/b"),
    )
    .unwrap();
    assert_eq!((p.cleanup_workers, p.on_failure), (2, OnFailure::Freeze));
    let a = &p.tasks[0];
    assert_eq!(a.cleanup.as_deref(), Some("rm -f lock"));
    assert_eq!((a.cleanup_delay_ms, a.cleanup_timeout_ms), (1_000, 120_000));
    assert_eq!(
        (a.rollback.as_deref(), a.emergency.as_deref()),
        (Some("undo"), Some("page me"))
    );
    let b = &p.tasks[1];
    assert_eq!((b.cleanup_delay_ms, b.cleanup_timeout_ms), (1_000, 5_000));
    let g = &p.gates[0];
    assert_eq!(
        (g.run.as_deref(), g.timeout_ms),
        (Some("check"), Some(10_000))
    );
    assert!(!g.approve);
    assert_eq!(g.cwd, Some(PathBuf::from("/b/w")));

    let task = |extra: &str| {
        format!("{{\"name\": \"j\",\n \"task\": [{{\"id\": \"a\", \"run\": \"t\",\n  {extra}}}]}}")
    };
    let gate = |g: &str| {
        format!(
            "{{\"name\": \"j\", \"task\": [{{\"id\": \"a\", \"run\": \"t\"}}],\n \"gate\": [{{\"id\": \"g\", \"after\": [\"a\"],\n  {g}}}]}}"
        )
    };
    let cases: &[(String, &str)] = &[
        (
            task("\"cleanup\": \"\""),
            "p.json:3:14: cleanup: the command is empty",
        ),
        (
            task("\"cleanup\": \"x\", \"cleanup_delay\": \"later\""),
            "p.json:3:36: cleanup_delay: invalid duration \"later\": expected number at 0",
        ),
        (
            task("\"cleanup\": \"x\", \"cleanup_timeout\": \"0s\""),
            "p.json:3:38: cleanup_timeout must be at least 1ms (got \"0s\")",
        ),
        (
            "{\"name\": \"j\",\n \"defaults\": {\"cleanup_delay\": \"x\"}, \"task\": [{\"id\": \"a\", \"run\": \"t\"}]}".into(),
            "p.json:2:32: cleanup_delay: invalid duration \"x\": expected number at 0",
        ),
        (
            "{\"name\": \"j\",\n \"cleanup_workers\": 0, \"task\": [{\"id\": \"a\", \"run\": \"t\"}]}".into(),
            "p.json:2:21: cleanup_workers must be at least 1",
        ),
        (
            gate("\"approve\": false"),
            "p.json:2:18: gate \"g\": a gate needs run = \"...\" or approve = true",
        ),
        (
            gate("\"run\": \"\""),
            "p.json:3:10: gate \"g\": run: the command is empty",
        ),
        (
            gate("\"run\": \"t\", \"timeout\": \"soon\""),
            "p.json:3:26: gate \"g\": timeout: invalid duration \"soon\": expected number at 0",
        ),
        (
            task("\"emergency\": 3"),
            "p.json:3:16: invalid type: integer `3`, expected a string",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(&json_err(text), expected, "plan:\n{text}");
    }
}

#[test]
fn agent_kinds_and_notify_land_in_the_plan_and_bad_ones_are_refused() {
    use super::super::super::AgentKind;
    let p = parse(&one_task(
        "",
        "agent = \"claude-code\"\nnotify = \"notify-send hi\"\n",
    ))
    .unwrap();
    assert_eq!(p.tasks[0].agent, Some(AgentKind::ClaudeCode));
    assert_eq!(p.tasks[0].notify.as_deref(), Some("notify-send hi"));
    let p = parse(&one_task("", "agent = \"generic\"\n")).unwrap();
    assert_eq!(p.tasks[0].agent, Some(AgentKind::Generic));
    assert_eq!(
        err(&one_task("", "agent = \"copilot\"\n")),
        "p.toml:3:6: agent: \"copilot\" is not a kind of agent (use \"claude-code\" or \"generic\")"
    );
    assert_eq!(
        err(&one_task("", "notify = \" \"\n")),
        "p.toml:3:6: notify: the command is empty"
    );
}

#[test]
fn end_on_idle_lands_on_an_agent_task_and_is_refused_elsewhere() {
    use super::super::super::EndOn;
    let p = parse(&one_task("", "agent = \"generic\"\nend_on = \"idle\"\n")).unwrap();
    assert_eq!(p.tasks[0].end_on, Some(EndOn::Idle));
    assert_eq!(
        parse(&one_task("", "agent = \"generic\"\n")).unwrap().tasks[0].end_on,
        None
    );
    assert_eq!(
        err(&one_task("", "end_on = \"idle\"\n")),
        "p.toml:3:6: task \"a\": end_on = \"idle\" needs agent = \"claude-code\" or \"generic\" \
         (only an agent reports idle)"
    );
    assert_eq!(
        err(&one_task(
            "",
            "agent = \"claude-code\"\nend_on = \"exit\"\n"
        )),
        "p.toml:3:6: task \"a\": end_on: \"exit\" is not something a task ends on (use \"idle\")"
    );
    assert_eq!(
        json_err(r#"{"name": "p", "task": [{"id": "a", "run": "t", "end_on": "idle"}]}"#),
        "p.json:1:31: task \"a\": end_on = \"idle\" needs agent = \"claude-code\" or \"generic\" \
         (only an agent reports idle)"
    );
    assert_eq!(
        json_err(r#"{"name": "p", "task": [{"id": "a", "run": "t", "end_on": 1}]}"#),
        "p.json:1:58: invalid type: integer `1`, expected a string"
    );
}
