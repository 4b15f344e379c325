//! `orchestrator run --dry-run`: the checks of a run, then a description of what would
//! run, and nothing made or started; and `orchestrator plan` showing every kind of edge.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::util::*;

/// A task after a signal, a race with a task after it, a checkpoint.
const PLAN: &str = include_str!("../../examples/edges.toml");

/// What `plan` and a dry run both print of [`PLAN`] after its first line.
const BODY: &str = "wave 1: a, c\n  a: run \"worker checkpoint cp\"\n  c: run \"worker checkpoint cp && worker signal go\"\n\
    wave 2: b\n  b: cmd [\"echo\", \"b\"]; after a, signal:go\n\
    wave 3: d\n  d: run \"true\"; after race r\n\
    race r (pick first): b, c; then d\n\
    checkpoint cp: a, c\n\
    signal go: awaited by b (raised at run time by `worker signal go`; adds no wave)\n\
    critical path: a -> b -> d (3 tasks)\n";

#[test]
fn a_dry_run_prints_what_would_run_and_creates_nothing() {
    let sb = Sandbox::new();
    sb.write("p.toml", PLAN);
    let missing = sb.path().join("missing");
    let o = sb.run(&[
        "run",
        "p.toml",
        "--dry-run",
        "--workers",
        "2",
        "--launcher",
        "background",
        "--watch",
        "poll",
        "--sessions-dir",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stderr(&o), "");
    assert_eq!(
        stdout(&o),
        format!(
            "dry run: nothing created, nothing started\nsessions dir: {}\n\
             launcher: background, watch: poll, durable: no\n\
             plan edges: 4 tasks, 2 workers, 3 waves\n{BODY}",
            missing.display()
        )
    );
    assert!(!missing.exists(), "the sessions directory was created");
    assert!(!sb.sessions().exists(), "$MAESTRO_SESSIONS was created");
    // A sessions directory that exists stays as it was: empty.
    let empty = sb.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let o = sb.run(&[
        "--sessions-dir",
        empty.to_str().unwrap(),
        "run",
        "p.toml",
        "--dry-run",
        "--durable",
        // Explicit: the suite also runs with MAESTRO_WATCH=poll and =off.
        "--watch",
        "native",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("\nlauncher: background, watch: native, durable: yes\nplan edges: 4 tasks, 3 workers, 3 waves\n"),
        "{}",
        stdout(&o)
    );
    assert_eq!(names_in(&empty), Vec::<String>::new());
    // Nothing else appeared beside the plan (`out` is the sandbox's own).
    assert_eq!(names_in(sb.path()), ["empty", "out", "p.toml"]);
    assert_eq!(names_in(&sb.out()), Vec::<String>::new());
}

/// With `--launcher tmux` a run checks that tmux is there; a dry run checks it without
/// starting it (a `tmux` that would leave a trace if run is on PATH).
#[test]
fn a_dry_run_starts_no_process() {
    let sb = Sandbox::new();
    sb.write("p.toml", PLAN);
    let bin = sb.path().join("bin");
    fs::create_dir(&bin).unwrap();
    let tmux = sb.write("bin/tmux", "#!/bin/sh\ntouch \"$OUT/tmux-ran\"\n");
    fs::set_permissions(&tmux, fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let mut c = sb.orch();
    c.args(["run", "p.toml", "--dry-run", "--launcher", "tmux"])
        .env("PATH", path);
    let o = run_with_deadline(c, std::time::Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("\nlauncher: tmux, watch: "),
        "{}",
        stdout(&o)
    );
    assert_eq!(names_in(&sb.out()), Vec::<String>::new());
    assert!(!sb.sessions().exists());
}

#[test]
fn a_dry_run_as_json() {
    let sb = Sandbox::new();
    sb.write("p.toml", PLAN);
    let o = sb.run(&[
        "run",
        "p.toml",
        "--dry-run",
        "--json",
        "--launcher",
        "background",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["workers"], 3);
    assert_eq!(v["launcher"], "background");
    assert_eq!(
        v["sessions_dir"],
        sb.sessions().display().to_string().as_str()
    );
    assert_eq!(
        v["commands"][1],
        serde_json::json!({"id": "b", "command": {"argv": ["echo", "b"]}})
    );
    assert_eq!(v["waves"], serde_json::json!([["a", "c"], ["b"], ["d"]]));
    assert!(!sb.sessions().exists());
    // `--json` is the dry run's only.
    let o = sb.run(&["run", "p.toml", "--json"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with(
            "error: the following required arguments were not provided:\n  --dry-run\n"
        ),
        "{}",
        stderr(&o)
    );
    assert!(!sb.sessions().exists());
}

/// A bad plan, or bad options, fail a dry run as they fail a run: exit 2, the same
/// message, nothing made.
#[test]
fn a_dry_run_refuses_what_run_refuses() {
    let sb = Sandbox::new();
    sb.write(
        "bad.toml",
        "name = \"p\"\n[[task]]\nid = \"b\"\nrun = \"true\"\nafter = [\"zz\"]\n",
    );
    let expected = "error: bad.toml:5:10: task \"b\" depends on unknown task \"zz\"\n";
    for args in [
        &["run", "bad.toml", "--dry-run"][..],
        &["run", "bad.toml", "--dry-run", "--json"],
        &["plan", "bad.toml"],
    ] {
        let o = sb.run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert_eq!(stderr(&o), expected, "{args:?}");
        assert_eq!(stdout(&o), "", "{args:?}");
    }
    sb.write("p.toml", PLAN);
    let o = sb.run(&["run", "p.toml", "--dry-run", "--workers", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o), "error: --workers must be at least 1\n");
    // `env_from_parent` is checked against the environment the run would start in.
    sb.write(
        "env.toml",
        "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"true\"\n\
         env_from_parent = [\"MAESTRO_DRY_RUN_UNSET\"]\n",
    );
    let mut c = sb.orch();
    c.args(["run", "env.toml", "--dry-run"])
        .env_remove("MAESTRO_DRY_RUN_UNSET");
    let o = run_with_deadline(c, std::time::Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "error: task \"a\": env_from_parent: MAESTRO_DRY_RUN_UNSET is not set in this \
         environment (export it, then run again)\n"
    );
    assert!(!sb.sessions().exists());
}

#[test]
fn plan_shows_signals_races_and_checkpoints() {
    let sb = Sandbox::new();
    sb.write("p.toml", PLAN);
    let o = sb.run(&["plan", "p.toml"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // The same as the dry run's, without the commands.
    let body: String = BODY
        .replace("  a: run \"worker checkpoint cp\"\n", "")
        .replace(
            "  c: run \"worker checkpoint cp && worker signal go\"\n",
            "",
        )
        .replace("cmd [\"echo\", \"b\"]; ", "")
        .replace("run \"true\"; ", "");
    assert_eq!(
        stdout(&o),
        format!("plan edges: 4 tasks, 3 workers, 3 waves\n{body}")
    );
    let o = sb.run(&["plan", "p.toml", "--dot"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let dot = stdout(&o);
    for line in [
        "  \"r\" [shape=hexagon, label=\"race r (first)\"];",
        "  \"signal:go\" [shape=diamond];",
        "  \"checkpoint:cp\" [shape=box, style=dashed];",
        "  \"a\" -> \"b\";",
        "  \"signal:go\" -> \"b\";",
        "  \"r\" -> \"d\";",
        "  \"b\" -> \"r\" [style=dashed];",
        "  \"c\" -> \"r\" [style=dashed];",
        "  \"a\" -> \"checkpoint:cp\" [dir=none, style=dotted];",
        "  \"c\" -> \"checkpoint:cp\" [dir=none, style=dotted];",
    ] {
        assert!(dot.lines().any(|l| l == line), "{line} not in\n{dot}");
    }
    let o = sb.run(&["plan", "p.toml", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["edges"],
        serde_json::json!([
            {"from": "a", "to": "b", "kind": "task"},
            {"from": "signal:go", "to": "b", "kind": "signal"},
            {"from": "r", "to": "d", "kind": "race"},
        ])
    );
    assert_eq!(
        v["races"],
        serde_json::json!([{"id": "r", "tasks": ["b", "c"], "pick": "first", "score": null,
                            "awaited_by": ["d"]}])
    );
    assert_eq!(
        v["checkpoints"],
        serde_json::json!([{"name": "cp", "tasks": ["a", "c"]}])
    );
    assert_eq!(
        v["signals"],
        serde_json::json!([{"name": "go", "awaited_by": ["b"]}])
    );
    // The fields from before are still there, as they were.
    assert_eq!(v["tasks"], 4);
    assert_eq!(v["critical_path"], serde_json::json!(["a", "b", "d"]));
    assert!(!sb.sessions().exists());
}

/// Auxiliary commands, `cleanup_workers` and the freeze policy: `plan` and a dry run say
/// them (and start none of them).
#[test]
fn plan_and_a_dry_run_show_auxiliary_commands_and_freeze() {
    let sb = Sandbox::new();
    sb.write(
        "aux.toml",
        "name = \"aux\"\non_failure = \"freeze\"\ncleanup_workers = 2\n\
         [defaults]\ncleanup_delay = \"5s\"\n\
         [[task]]\nid = \"a\"\nrun = 'touch \"$OUT/a\"'\ncleanup = 'touch \"$OUT/cleanup\"'\n\
         rollback = 'touch \"$OUT/rollback\"'\nemergency = 'touch \"$OUT/emergency\"'\n",
    );
    let tail = "on_failure: freeze\n\
        cleanup_workers: 2 (auxiliary commands at once, besides the workers)\n\
        critical path: a (1 tasks)\n\
        cleanup of a: \"touch \\\"$OUT/cleanup\\\"\" (after 5s, at most 30s)\n\
        rollback of a: \"touch \\\"$OUT/rollback\\\"\"\n\
        emergency of a: \"touch \\\"$OUT/emergency\\\"\"\n";
    let o = sb.run(&["plan", "aux.toml"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!("plan aux: 1 tasks, 4 workers, 1 waves\nwave 1: a\n{tail}")
    );
    let o = sb.run(&["run", "aux.toml", "--dry-run", "--launcher", "background"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).ends_with(&format!(
            "wave 1: a\n  a: run \"touch \\\"$OUT/a\\\"\"\n{tail}"
        )),
        "{}",
        stdout(&o)
    );
    let o = sb.run(&["plan", "aux.toml", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["on_failure"], "freeze");
    assert_eq!(v["cleanup_workers"], 2);
    assert_eq!(
        v["auxiliary"],
        serde_json::json!([{"id": "a",
            "cleanup": {"command": "touch \"$OUT/cleanup\"", "delay_ms": 5000, "timeout_ms": 30000},
            "rollback": "touch \"$OUT/rollback\"", "emergency": "touch \"$OUT/emergency\""}])
    );
    assert_eq!(names_in(&sb.out()), Vec::<String>::new());
    assert!(!sb.sessions().exists());
}
