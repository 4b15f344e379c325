//! Validation's tests: what each plan gives, and the exact message of each refusal.

use std::path::{Path, PathBuf};

use super::super::test_util::{SUFFIX, err, json_err, parse, tasks};
use super::super::{Plan, TaskCommand};

mod added;
mod auxiliary;

/// `worktree` comes from `[defaults]` unless a task says otherwise; it is a boolean.
#[test]
fn worktree_defaults_and_its_type() {
    let p = parse(
        "name = \"p\"\n[defaults]\nworktree = true\n[[task]]\nid = \"a\"\nrun = \"t\"\n\
         [[task]]\nid = \"b\"\nrun = \"t\"\nworktree = false\n",
    )
    .unwrap();
    assert_eq!((p.tasks[0].worktree, p.tasks[1].worktree), (true, false));
    assert!(!parse(&tasks(&[("a", &[])])).unwrap().tasks[0].worktree);
    assert_eq!(
        err("name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\nworktree = \"yes\"\n"),
        "p.toml:5:12: invalid type: string \"yes\", expected a boolean"
    );
}

#[test]
fn defaults_merge_into_tasks() {
    let p = parse(
        r#"
name = "x"
workers = 2
[defaults]
timeout = "30m"
retries = 2
cwd = "work"
env = { A = "1", B = "2" }
backoff = { initial = "2s" }
[[task]]
id = "a"
run = "true"
env = { B = "3" }
[[task]]
id = "b"
cmd = ["echo", "hi"]
after = ["a"]
cwd = "/abs"
timeout = "5s"
retries = 0
backoff = { factor = 3, jitter = 0 }
[[task]]
id = "c"
run = "true"
cwd = "sub/dir"
"#,
    )
    .unwrap();
    let a = &p.tasks[0];
    assert_eq!(a.command, TaskCommand::Shell("true".into()));
    assert_eq!(a.timeout_ms, Some(30 * 60 * 1000));
    assert_eq!(a.retries, 2);
    assert_eq!(a.cwd, PathBuf::from("/base/work"));
    assert_eq!(a.env["A"], "1");
    assert_eq!(a.env["B"], "3");
    assert_eq!(a.backoff.initial_ms, 2000);
    assert_eq!(a.max_reassign, 3);
    assert_eq!(a.kill_grace_ms, 5000);
    assert!(a.after.is_empty());
    let b = &p.tasks[1];
    assert_eq!(
        b.command,
        TaskCommand::Argv(vec!["echo".into(), "hi".into()])
    );
    assert_eq!(b.after, vec!["a".to_string()]);
    assert_eq!(b.cwd, PathBuf::from("/abs"));
    assert_eq!(b.timeout_ms, Some(5000));
    assert_eq!(b.retries, 0);
    assert_eq!(b.env.len(), 2);
    assert_eq!(b.backoff.initial_ms, 2000);
    assert_eq!(b.backoff.factor, 3.0);
    assert_eq!(b.backoff.jitter, 0.0);
    // A relative task cwd resolves against the base, not against defaults.cwd.
    assert_eq!(p.tasks[2].cwd, PathBuf::from("/base/sub/dir"));
    assert_eq!(p.workers, 2);
    assert!(!p.keep_windows);
    assert_eq!(p.lease_ms, 10_000);
}

#[test]
fn a_zero_kill_grace_or_backoff_means_none() {
    let p = parse(
        "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\nkill_grace = \"0s\"\n\
         backoff = { initial = \"0s\", max = \"0ms\" }\n",
    )
    .unwrap();
    let a = &p.tasks[0];
    assert_eq!(
        (a.kill_grace_ms, a.backoff.initial_ms, a.backoff.max_ms),
        (0, 0, 0)
    );
}

#[test]
fn bare_plan_gets_defaults() {
    let p =
        parse("name = \"p\"\nkeep_windows = true\n[[task]]\nid = \"a\"\nrun = \"true\"\n").unwrap();
    assert_eq!(p.workers, 4);
    assert!(p.keep_windows);
    let a = &p.tasks[0];
    assert_eq!(a.cwd, PathBuf::from("/base"));
    assert_eq!(a.timeout_ms, None);
    assert_eq!(a.retries, 0);
    assert!(a.env.is_empty());
}

#[test]
fn every_toml_error_has_its_exact_message() {
    let cases: &[(&str, String)] = &[
        (
            "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"true\"\n[[task]]\nid = \"a\"\nrun = \"x\"\n",
            "p.toml:6:6: duplicate task id \"a\" (first defined at line 3)".into(),
        ),
        (
            "name = \"p\"\n[[task]]\nid = \"b\"\nrun = \"true\"\nafter = [\"zz\"]\n",
            "p.toml:5:10: task \"b\" depends on unknown task \"zz\"".into(),
        ),
        (
            "name = \"p\"\n[[task]]\nid = \"b\"\nrun = \"true\"\nafter = [ \"x\",\n  \"zz\" ]\n[[task]]\nid = \"x\"\nrun = \"t\"\n",
            "p.toml:6:3: task \"b\" depends on unknown task \"zz\"".into(),
        ),
        (
            "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\nafter = [\"a\"]\n",
            "p.toml:3:6: dependency cycle: a -> a".into(),
        ),
        (
            "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\nafter = [\"b\"]\n[[task]]\nid = \"b\"\nrun = \"t\"\nafter = [\"a\"]\n",
            "p.toml:3:6: dependency cycle: a -> b -> a".into(),
        ),
        (
            "name = \"p\"\n[[task]]\nid = \"../x\"\nrun = \"t\"\n",
            format!("p.toml:3:6: invalid task id \"../x\": {SUFFIX}"),
        ),
        (
            "name = \"p\"\n[[task]]\nid = \".x\"\nrun = \"t\"\n",
            format!("p.toml:3:6: invalid task id \".x\": {SUFFIX}"),
        ),
        (
            "name = \"p\"\n[[task]]\nid = \"a\\u0000b\"\nrun = \"t\"\n",
            format!("p.toml:3:6: invalid task id \"a\\0b\": {SUFFIX}"),
        ),
        (
            "name = \"../evil\"\n[[task]]\nid = \"a\"\nrun = \"t\"\n",
            format!("p.toml:1:8: invalid plan name \"../evil\": {SUFFIX}"),
        ),
        (
            "name = \"p\"\n[[task]]\nid = \"a\"\n",
            "p.toml:3:6: task \"a\" has neither `run` nor `cmd`".into(),
        ),
        (
            "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\ncmd = [\"t\"]\n",
            "p.toml:3:6: task \"a\" has both `run` and `cmd`".into(),
        ),
        (
            "name = \"p\"\n[[task]]\nid = \"a\"\ncmd = []\n",
            "p.toml:3:6: task \"a\" has an empty `cmd`".into(),
        ),
        (
            "name = \"p\"\nworkers = 0\n[[task]]\nid = \"a\"\nrun = \"t\"\n",
            "p.toml:2:11: workers must be at least 1".into(),
        ),
        (
            "name = \"p\"\nworkers = -3\n[[task]]\nid = \"a\"\nrun = \"t\"\n",
            "p.toml:2:11: workers must be at least 1".into(),
        ),
        ("name = \"p\"\n", "p.toml: plan has no tasks".into()),
        (
            "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\ntimeout = \"soon\"\n",
            "p.toml:5:11: invalid duration \"soon\": expected number at 0".into(),
        ),
        (
            "name = \"p\"\n[defaults]\ntimeout = \"xyz\"\n[[task]]\nid = \"a\"\nrun = \"t\"\n",
            "p.toml:3:11: invalid duration \"xyz\": expected number at 0".into(),
        ),
        (
            "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\nbackoff = { factor = 0.5 }\n",
            "p.toml:5:22: backoff.factor must be at least 1 (got 0.5)".into(),
        ),
        (
            "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\nrn = 1\n",
            "p.toml:5:1: unknown field `rn`, expected one of `id`, `run`, `cmd`, `after`, `cwd`, `env`, `env_from_parent`, `env_file`, `timeout`, `retries`, `backoff`, `max_reassign`, `kill_grace`, `priority`, `marks`, `resources`, `on_failure`, `owns`, `memory`, `cleanup`, `cleanup_delay`, `cleanup_timeout`, `rollback`, `emergency`, `agent`, `notify`, `end_on`, `worktree`, `interactive`, `stdin`, `matrix`".into(),
        ),
        (
            "name = \"p\"\nworkers = \"many\"\n[[task]]\nid = \"a\"\nrun = \"t\"\n",
            "p.toml:2:11: invalid type: string \"many\", expected i64".into(),
        ),
        // Plan-level and per-task values point at the value; races, checkpoints and locks
        // have no position.
        (
            "name = \"p\"\nlease = \"x\"\n[[task]]\nid = \"a\"\nrun = \"t\"\n",
            "p.toml:2:9: invalid duration \"x\": expected number at 0".into(),
        ),
        (
            "name = \"p\"\n[defaults]\nkill_grace = \"x\"\n[[task]]\nid = \"a\"\nrun = \"t\"\n",
            "p.toml:3:14: invalid duration \"x\": expected number at 0".into(),
        ),
        (
            "name = \"p\"\n[defaults]\nbackoff = { initial = \"x\" }\n[[task]]\nid = \"a\"\nrun = \"t\"\n",
            "p.toml:3:23: invalid duration \"x\": expected number at 0".into(),
        ),
        (
            "name = \"p\"\n[defaults]\nbackoff = { max = \"x\" }\n[[task]]\nid = \"a\"\nrun = \"t\"\n",
            "p.toml:3:19: invalid duration \"x\": expected number at 0".into(),
        ),
        (
            "name = \"p\"\n[defaults]\nbackoff = { factor = 0.5 }\n[[task]]\nid = \"a\"\nrun = \"t\"\n",
            "p.toml:3:22: backoff.factor must be at least 1 (got 0.5)".into(),
        ),
        (
            "name = \"p\"\n[defaults]\nbackoff = { jitter = 2.0 }\n[[task]]\nid = \"a\"\nrun = \"t\"\n",
            "p.toml:3:22: backoff.jitter must be between 0 and 1 (got 2)".into(),
        ),
        (
            "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\nbackoff = { jitter = -1.0 }\n",
            "p.toml:5:22: backoff.jitter must be between 0 and 1 (got -1)".into(),
        ),
        (
            "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\nbackoff = { initial = \"q\" }\n",
            "p.toml:5:23: invalid duration \"q\": expected number at 0".into(),
        ),
        (
            "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\nbackoff = { max = \"q\" }\n",
            "p.toml:5:19: invalid duration \"q\": expected number at 0".into(),
        ),
        (
            "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\nkill_grace = \"q\"\n",
            "p.toml:5:14: invalid duration \"q\": expected number at 0".into(),
        ),
        (
            "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\nmarks = [\"../m\"]\n",
            "p.toml:3:6: invalid marker name \"../m\": must be 1-64 characters of [A-Za-z0-9._-] not starting with a dot".into(),
        ),
        (
            "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\nafter = [\"signal:../s\"]\n",
            "p.toml:5:10: invalid signal name \"../s\": must be 1-64 characters of [A-Za-z0-9._-] not starting with a dot".into(),
        ),
        (
            "name = \"p\"\n[[task]]\nid = \"orchestrator\"\nrun = \"t\"\n",
            "p.toml:3:6: task id \"orchestrator\" is reserved (a message recipient)".into(),
        ),
        (
            "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\n[[task]]\nid = \"b\"\nrun = \"t\"\n[[race]]\nid = \"../r\"\ntasks = [\"a\", \"b\"]\n",
            "p.toml: invalid race id \"../r\": must be 1-64 characters of [A-Za-z0-9._-] not starting with a dot".into(),
        ),
        (
            "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\n[[task]]\nid = \"b\"\nrun = \"t\"\n[[race]]\nid = \"a\"\ntasks = [\"a\", \"b\"]\n",
            "p.toml: race id \"a\" is already used by a task or race".into(),
        ),
        (
            "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\n[[task]]\nid = \"b\"\nrun = \"t\"\n[[race]]\nid = \"r\"\ntasks = [\"a\", \"b\"]\n[[race]]\nid = \"r\"\ntasks = [\"a\", \"b\"]\n",
            "p.toml: race id \"r\" is already used by a task or race".into(),
        ),
        (
            "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\n[[task]]\nid = \"b\"\nrun = \"t\"\n[[race]]\nid = \"r\"\ntasks = [\"a\"]\n",
            "p.toml: race \"r\" needs at least two tasks".into(),
        ),
        (
            "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\n[[task]]\nid = \"b\"\nrun = \"t\"\n[[race]]\nid = \"r\"\ntasks = [\"a\", \"z\"]\n",
            "p.toml: race \"r\" names unknown task \"z\"".into(),
        ),
        (
            "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\n[[task]]\nid = \"b\"\nrun = \"t\"\n[[race]]\nid = \"r\"\ntasks = [\"a\", \"b\"]\n[[race]]\nid = \"s\"\ntasks = [\"b\", \"a\"]\n",
            "p.toml: task \"b\" is in two races (\"r\" and \"s\")".into(),
        ),
        (
            "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\n[[task]]\nid = \"b\"\nrun = \"t\"\n[[race]]\nid = \"r\"\ntasks = [\"a\", \"b\"]\npick = \"last\"\n",
            "p.toml: race \"r\": pick must be \"first\" or \"best\", not \"last\"".into(),
        ),
        (
            "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\n[[task]]\nid = \"b\"\nrun = \"t\"\n[[race]]\nid = \"r\"\ntasks = [\"a\", \"b\"]\npick = \"best\"\n",
            "p.toml: race \"r\": pick = \"best\" needs score = \"/json/pointer\" into each result".into(),
        ),
        (
            "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\n[[task]]\nid = \"b\"\nrun = \"t\"\n[[race]]\nid = \"r\"\ntasks = [\"a\", \"b\"]\npick = \"best\"\nscore = \"x\"\n",
            "p.toml: race \"r\": pick = \"best\" needs score = \"/json/pointer\" into each result".into(),
        ),
        (
            "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\n[[task]]\nid = \"b\"\nrun = \"t\"\n[[checkpoint]]\nname = \"../c\"\ntasks = [\"a\"]\n",
            "p.toml: invalid checkpoint name \"../c\": must be 1-64 characters of [A-Za-z0-9._-] not starting with a dot".into(),
        ),
        (
            "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\n[[task]]\nid = \"b\"\nrun = \"t\"\n[[checkpoint]]\nname = \"c\"\ntasks = [\"a\"]\n[[checkpoint]]\nname = \"c\"\ntasks = [\"a\"]\n",
            "p.toml: checkpoint \"c\" is defined twice".into(),
        ),
        (
            "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\n[[task]]\nid = \"b\"\nrun = \"t\"\n[[checkpoint]]\nname = \"c\"\ntasks = [\"z\"]\n",
            "p.toml: checkpoint \"c\" names unknown task \"z\"".into(),
        ),
        (
            "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\n[[task]]\nid = \"b\"\nrun = \"t\"\n[locks]\norder = [\"ok\", \"../l\"]\n",
            "p.toml: invalid lock name \"../l\": must be 1-64 characters of [A-Za-z0-9._-] not starting with a dot".into(),
        ),
        (
            "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\nafter = [\"r\"]\n[[task]]\nid = \"b\"\nrun = \"t\"\n[[race]]\nid = \"r\"\ntasks = [\"a\", \"b\"]\n",
            "p.toml:3:6: dependency cycle: a -> a".into(),
        ),
        (
            "name = \"p\"\n[[task]]\nrun = \"t\"\n",
            "p.toml:2:1: missing field `id`".into(),
        ),
        // No duration is negative; a timeout or lease of zero would end every attempt, or
        // lose every worker, at once.
        (
            "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\ntimeout = \"0s\"\n",
            "p.toml:5:11: timeout must be at least 1ms (got \"0s\")".into(),
        ),
        (
            "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\ntimeout = \"500us\"\n",
            "p.toml:5:11: timeout must be at least 1ms (got \"500us\")".into(),
        ),
        (
            "name = \"p\"\nlease = \"0ms\"\n[[task]]\nid = \"a\"\nrun = \"t\"\n",
            "p.toml:2:9: lease must be at least 1ms (got \"0ms\")".into(),
        ),
        (
            "name = \"p\"\n[defaults]\ntimeout = \"-5m\"\n[[task]]\nid = \"a\"\nrun = \"t\"\n",
            "p.toml:3:11: timeout must be at least 1ms (got \"-5m\")".into(),
        ),
        (
            "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\nkill_grace = \" -1s\"\n",
            "p.toml:5:14: kill_grace must not be negative (got \" -1s\")".into(),
        ),
        (
            "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\nbackoff = { max = \"-1s\" }\n",
            "p.toml:5:19: backoff.max must not be negative (got \"-1s\")".into(),
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(&err(text), expected, "plan:\n{text}");
    }
    // Syntax errors: position and toml's one-line message.
    let e = err("name = \"p\n");
    assert!(e.starts_with("p.toml:1:") && !e.contains('\n'), "{e}");
}

#[test]
fn first_error_follows_the_documented_order() {
    // A bad id (task 3) beats a duplicate (task 2).
    let e = err(&tasks(&[("a", &[]), ("a", &[]), ("../x", &[])]));
    assert!(e.starts_with("p.toml:9:6: invalid task id \"../x\""), "{e}");
    // A duplicate beats a missing command.
    let e = err("name = \"p\"\n[[task]]\nid = \"a\"\n[[task]]\nid = \"a\"\nrun = \"t\"\n");
    assert!(e.contains("duplicate task id"), "{e}");
    // A missing command beats an unknown dependency.
    let e = err(
        "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\nafter = [\"q\"]\n[[task]]\nid = \"b\"\n",
    );
    assert!(e.contains("has neither"), "{e}");
    // An unknown dependency beats a cycle.
    let e = err(&tasks(&[("a", &["b"]), ("b", &["a", "q"])]));
    assert!(e.contains("unknown task \"q\""), "{e}");
}

#[test]
fn cycle_reported_from_earliest_member() {
    // x depends on the cycle b -> c -> b, but is not part of it.
    let e = err(&tasks(&[("x", &["c"]), ("b", &["c"]), ("c", &["b"])]));
    assert_eq!(e, "p.toml:7:6: dependency cycle: b -> c -> b");
    // x leads into the later cycle d <-> e; a <-> b appears earlier in the plan.
    let e = err(&tasks(&[
        ("x", &["d"]),
        ("a", &["b"]),
        ("b", &["a"]),
        ("d", &["e"]),
        ("e", &["d"]),
    ]));
    assert_eq!(e, "p.toml:7:6: dependency cycle: a -> b -> a");
    // The shortest cycle through the earliest member, edges in `after` order.
    let e = err(&tasks(&[("a", &["b", "c"]), ("b", &["c"]), ("c", &["a"])]));
    assert_eq!(e, "p.toml:3:6: dependency cycle: a -> c -> a");
    let e = err(&tasks(&[("a", &["c"]), ("b", &["a"]), ("c", &["b"])]));
    assert_eq!(e, "p.toml:3:6: dependency cycle: a -> c -> b -> a");
}

#[test]
fn json_plans_work_and_errors_have_positions_like_toml() {
    let p = Plan::parse(
        "p.json",
        r#"{"name": "j", "task": [{"id": "a", "run": "true"}, {"id": "b", "cmd": ["x"], "after": ["a"]}]}"#,
        Path::new("/b"),
    )
    .unwrap();
    assert_eq!(p.tasks.len(), 2);
    assert_eq!(p.workers, 4);
    assert_eq!(p.dep_indices(), vec![vec![], vec![0]]);
    let cases: &[(&str, String)] = &[
        (
            r#"{"name": "j", "task": [{"id": "a", "run": "t", "after": ["q"]}]}"#,
            "p.json:1:58: task \"a\" depends on unknown task \"q\"".into(),
        ),
        (
            r#"{"name": "j", "task": [{"id": "a", "run": "t"}, {"id": "a", "run": "t"}]}"#,
            "p.json:1:56: duplicate task id \"a\" (first defined at line 1)".into(),
        ),
        (
            r#"{"name": "j", "task": [{"id": "a", "run": "t", "after": ["b"]}, {"id": "b", "run": "t", "after": ["a"]}]}"#,
            "p.json:1:31: dependency cycle: a -> b -> a".into(),
        ),
        (
            r#"{"name": "j", "task": [{"id": "a/b", "run": "t"}]}"#,
            format!("p.json:1:31: invalid task id \"a/b\": {SUFFIX}"),
        ),
        (
            r#"{"name": "j", "task": [{"id": "a"}]}"#,
            "p.json:1:31: task \"a\" has neither `run` nor `cmd`".into(),
        ),
        (
            r#"{"name": "j", "task": [{"id": "a", "cmd": []}]}"#,
            "p.json:1:31: task \"a\" has an empty `cmd`".into(),
        ),
        (
            r#"{"name": "j", "workers": 0, "task": [{"id": "a", "run": "t"}]}"#,
            "p.json:1:26: workers must be at least 1".into(),
        ),
        (r#"{"name": "j"}"#, "p.json: plan has no tasks".into()),
        (
            r#"{"name": "j", "task": [{"id": "a", "run": "t", "timeout": "soon"}]}"#,
            "p.json:1:59: invalid duration \"soon\": expected number at 0".into(),
        ),
        (
            "{\"name\": \"j\",\n \"task\": [{\"id\": \"a\", \"rn\": \"t\"}]}",
            "p.json:2:26: unknown field `rn`, expected one of `id`, `run`, `cmd`, `after`, `cwd`, `env`, `env_from_parent`, `env_file`, `timeout`, `retries`, `backoff`, `max_reassign`, `kill_grace`, `priority`, `marks`, `resources`, `on_failure`, `owns`, `memory`, `cleanup`, `cleanup_delay`, `cleanup_timeout`, `rollback`, `emergency`, `agent`, `notify`, `end_on`, `worktree`, `interactive`, `stdin`, `matrix`".into(),
        ),
        (
            "{\"name\": \"j\",\n \"workers\": \"x\", \"task\": []}",
            "p.json:2:15: invalid type: string \"x\", expected i64".into(),
        ),
        (
            "{\"name\": \"j\", \"lease\": \"x\", \"task\": [{\"id\": \"a\", \"run\": \"t\"}]}",
            "p.json:1:24: invalid duration \"x\": expected number at 0".into(),
        ),
        (
            "{\"name\": \"../j\", \"task\": [{\"id\": \"a\", \"run\": \"t\"}]}",
            format!("p.json:1:10: invalid plan name \"../j\": {SUFFIX}"),
        ),
        (
            "{\"name\": \"j\", \"defaults\": {\"timeout\": \"x\"}, \"task\": [{\"id\": \"a\", \"run\": \"t\"}]}",
            "p.json:1:39: invalid duration \"x\": expected number at 0".into(),
        ),
        (
            "{\"name\": \"j\", \"defaults\": {\"kill_grace\": \"x\"}, \"task\": [{\"id\": \"a\", \"run\": \"t\"}]}",
            "p.json:1:42: invalid duration \"x\": expected number at 0".into(),
        ),
        (
            "{\"name\": \"j\", \"defaults\": {\"backoff\": {\"initial\": \"x\"}}, \"task\": [{\"id\": \"a\", \"run\": \"t\"}]}",
            "p.json:1:51: invalid duration \"x\": expected number at 0".into(),
        ),
        (
            "{\"name\": \"j\", \"defaults\": {\"backoff\": {\"max\": \"x\"}}, \"task\": [{\"id\": \"a\", \"run\": \"t\"}]}",
            "p.json:1:47: invalid duration \"x\": expected number at 0".into(),
        ),
        (
            "{\"name\": \"j\", \"defaults\": {\"backoff\": {\"factor\": 0.5}}, \"task\": [{\"id\": \"a\", \"run\": \"t\"}]}",
            "p.json:1:50: backoff.factor must be at least 1 (got 0.5)".into(),
        ),
        (
            "{\"name\": \"j\", \"defaults\": {\"backoff\": {\"jitter\": 1.5}}, \"task\": [{\"id\": \"a\", \"run\": \"t\"}]}",
            "p.json:1:50: backoff.jitter must be between 0 and 1 (got 1.5)".into(),
        ),
        (
            "{\"name\": \"j\", \"task\": [{\"id\": \"a\", \"run\": \"t\", \"backoff\": {\"initial\": \"x\"}}]}",
            "p.json:1:71: invalid duration \"x\": expected number at 0".into(),
        ),
        (
            "{\"name\": \"j\", \"task\": [{\"id\": \"a\", \"run\": \"t\", \"backoff\": {\"factor\": 0.1}}]}",
            "p.json:1:70: backoff.factor must be at least 1 (got 0.1)".into(),
        ),
        (
            "{\"name\": \"j\", \"task\": [{\"id\": \"a\", \"run\": \"t\", \"backoff\": {\"jitter\": 9}}]}",
            "p.json:1:70: backoff.jitter must be between 0 and 1 (got 9)".into(),
        ),
        (
            "{\"name\": \"j\", \"task\": [{\"id\": \"a\", \"run\": \"t\", \"kill_grace\": \"x\"}]}",
            "p.json:1:62: invalid duration \"x\": expected number at 0".into(),
        ),
        (
            "{\"name\": \"j\", \"task\": [{\"id\": \"a\", \"run\": \"t\", \"marks\": [\"a/b\"]}]}",
            format!("p.json:1:31: invalid marker name \"a/b\": {SUFFIX}"),
        ),
        (
            "{\"name\": \"j\", \"task\": [{\"id\": \"a\", \"run\": \"t\", \"after\": [\"signal:\"]}]}",
            format!("p.json:1:58: invalid signal name \"\": {SUFFIX}"),
        ),
        (
            "{\"name\": \"j\", \"task\": [{\"id\": \"all\", \"run\": \"t\"}]}",
            "p.json:1:31: task id \"all\" is reserved (a message recipient)".into(),
        ),
        (
            "{\"name\": \"j\", \"task\": [{\"id\": \"a\", \"run\": \"t\", \"cmd\": [\"x\"]}]}",
            "p.json:1:31: task \"a\" has both `run` and `cmd`".into(),
        ),
        (
            "{\"name\": \"j\", \"task\": [{\"id\": \"a\", \"run\": \"t\"}, {\"id\": \"b\", \"run\": \"t\", \"after\": [\"b\"]}]}",
            "p.json:1:56: dependency cycle: b -> b".into(),
        ),
        (
            "{\"name\": \"j\", \"task\": [{\"id\": \"a\", \"run\": \"t\"}], \"race\": [{\"id\": \"r\", \"tasks\": [\"a\"]}]}",
            "p.json: race \"r\" needs at least two tasks".into(),
        ),
        ("{", "p.json:1:1: EOF while parsing an object".into()),
        (
            "{\"name\": \"j\",\n \"task\": [\n  {\"id\": \"a\", \"run\": \"t\",\n   \"timeout\": \"0s\"}]}",
            "p.json:4:15: timeout must be at least 1ms (got \"0s\")".into(),
        ),
        (
            "{\"name\": \"j\",\n \"task\": [{\"id\": \"a\", \"run\": \"t\"},\n  {\"id\": \"b\", \"run\": \"t\", \"after\": [\"a\",\n    \"zz\"]}]}",
            "p.json:4:5: task \"b\" depends on unknown task \"zz\"".into(),
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(&json_err(text), expected, "plan:\n{text}");
    }
}

#[test]
fn long_chain_validates_without_recursion() {
    let mut text = String::from("name = \"chain\"\n");
    let n = 100_000;
    for i in 0..n {
        text.push_str(&format!("[[task]]\nid = \"t{i}\"\nrun = \"true\"\n"));
        if i > 0 {
            text.push_str(&format!("after = [\"t{}\"]\n", i - 1));
        }
    }
    let p = parse(&text).unwrap();
    assert_eq!(p.waves().len(), n);
    assert_eq!(p.critical_path().len(), n);
    // Closing the chain into one 100 000-task cycle is found without recursion too.
    text.push_str("[[task]]\nid = \"z\"\nrun = \"true\"\n");
    let text = text.replacen(
        "id = \"t0\"\nrun = \"true\"\n",
        "id = \"t0\"\nrun = \"true\"\nafter = [\"t99999\"]\n",
        1,
    );
    let e = err(&text);
    assert!(
        e.starts_with("p.toml:3:6: dependency cycle: t0 -> t99999 -> t99998 -> "),
        "{}",
        &e[..e.len().min(200)]
    );
    assert!(e.ends_with(" -> t1 -> t0"));
}

#[test]
fn message_recipients_are_reserved_ids() {
    assert_eq!(
        err("name = \"p\"\n[[task]]\nid = \"all\"\nrun = \"t\"\n"),
        "p.toml:3:6: task id \"all\" is reserved (a message recipient)"
    );
}

#[test]
fn errors_are_typed_with_their_location() {
    use super::super::{Location, PlanErrorKind as K};
    let e = parse(&tasks(&[("a", &["c"]), ("b", &["a"]), ("c", &["b"])])).unwrap_err();
    assert_eq!(e.file(), "p.toml");
    assert_eq!(e.location(), Some(Location { line: 3, col: 6 }));
    assert!(matches!(e.kind(), K::Cycle { path } if path == &["a", "c", "b", "a"]));
    let e = parse(&tasks(&[("b", &["zz"])])).unwrap_err();
    assert!(matches!(e.kind(), K::UnknownDependency { task, dep } if task == "b" && dep == "zz"));
    let e = Plan::parse(
        "p.json",
        r#"{"name": "j", "task": [{"id": "a", "run": "t"}, {"id": "a", "run": "t"}]}"#,
        Path::new("/"),
    )
    .unwrap_err();
    assert_eq!(e.location(), Some(Location { line: 1, col: 56 }));
    assert!(matches!(
        e.kind(),
        K::DuplicateId {
            first: super::super::FirstDefined::AtLine(1),
            ..
        }
    ));
    let e = Plan::load(Path::new("/nonexistent/plan.toml"), Path::new("/")).unwrap_err();
    assert!(matches!(e.kind(), K::Read(_)));
}

#[test]
fn races_signals_and_repeats_that_are_fine() {
    // A task after a race, and the race's members before it in the plan.
    let p = parse(
        "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\n[[task]]\nid = \"b\"\nrun = \"t\"\n\
         [[race]]\nid = \"r\"\ntasks = [\"a\", \"b\"]\n[[task]]\nid = \"c\"\nrun = \"t\"\nafter = [\"r\"]\n",
    )
    .unwrap();
    assert_eq!(p.races[0].pick, super::super::Pick::First);
    assert_eq!(p.dep_indices()[2], [0, 1]);
    // A signal named twice is one wait; it is not a task dependency.
    let p = parse(&tasks(&[
        ("a", &[]),
        ("b", &["signal:go", "a", "signal:go"]),
    ]))
    .unwrap();
    assert_eq!(p.tasks[1].after, ["a"]);
    assert_eq!(p.tasks[1].after_signals, ["go", "go"]);
    assert_eq!(p.graph().signals().len(), 1);
}

/// A plan of `[[task]]` blocks: (id, extra lines).
fn owning(list: &[(&str, &str)]) -> String {
    let mut s = String::from("name = \"p\"\n");
    for (id, extra) in list {
        s.push_str(&format!("[[task]]\nid = \"{id}\"\nrun = \"t\"\n{extra}"));
    }
    s
}

#[test]
fn owns_of_tasks_that_may_run_together_must_not_overlap() {
    let both = |a: &str, b: &str| owning(&[("a", a), ("b", b)]);
    // No order between them: refused at the later task's pattern, with a shared path.
    assert_eq!(
        err(&both(
            "owns = [\"app/models/**\"]\n",
            "owns = [\"db/x\",\n  \"app/*/user.rb\"]\n"
        )),
        "p.toml:10:3: tasks \"a\" and \"b\" may run at the same time and both write \
         \"app/models/user.rb\" (\"app/models/**\" in \"a\", \"app/*/user.rb\" in \"b\"); \
         order them with after, or narrow owns"
    );
    // A signal does not order them: any task may raise it.
    assert_eq!(
        err(&both(
            "owns = [\"db/schema.rb\"]\n",
            "owns = [\"db/**\"]\nafter = [\"signal:go\"]\n"
        )),
        "p.toml:9:9: tasks \"a\" and \"b\" may run at the same time and both write \
         \"db/schema.rb\" (\"db/schema.rb\" in \"a\", \"db/**\" in \"b\"); \
         order them with after, or narrow owns"
    );
    // Ordered, they may own the same paths; `owns` is kept as written.
    let p = parse(&both(
        "owns = [\"app/models/**\"]\n",
        "owns = [\"app/*/user.rb\"]\nafter = [\"a\"]\n",
    ))
    .unwrap();
    assert_eq!(p.tasks[0].owns, ["app/models/**"]);
    assert_eq!(p.tasks[1].owns, ["app/*/user.rb"]);
    // Ordered through a task that owns nothing.
    let plan = owning(&[
        ("a", "owns = [\"**\"]\n"),
        ("m", "after = [\"a\"]\n"),
        ("b", "owns = [\"x\"]\nafter = [\"m\"]\n"),
    ]);
    assert!(parse(&plan).is_ok());
    // A literal directory is that path only; disjoint patterns never conflict.
    assert!(
        parse(&both(
            "owns = [\"app\"]\n",
            "owns = [\"app/x\", \"*.rb\"]\n"
        ))
        .is_ok()
    );
}

#[test]
fn owns_of_race_members_overlap_but_not_with_what_runs_after_the_race() {
    let plan = |c_after: &str| {
        format!(
            "{}[[race]]\nid = \"r\"\ntasks = [\"a\", \"b\"]\n",
            owning(&[
                ("a", "owns = [\"out/a\"]\n"),
                ("b", "owns = [\"out/b\"]\n"),
                ("c", &format!("owns = [\"out/*\"]\n{c_after}")),
            ])
        )
    };
    assert!(parse(&plan("after = [\"r\"]\n")).is_ok());
    assert_eq!(
        err(&plan("")),
        "p.toml:13:9: tasks \"a\" and \"c\" may run at the same time and both write \
         \"out/a\" (\"out/a\" in \"a\", \"out/*\" in \"c\"); order them with after, or narrow owns"
    );
    // Members of one race run at the same time.
    let text = owning(&[("a", "owns = [\"out/**\"]\n"), ("b", "owns = [\"out\"]\n")])
        + "[[race]]\nid = \"r\"\ntasks = [\"a\", \"b\"]\n";
    assert_eq!(
        err(&text),
        "p.toml:9:9: tasks \"a\" and \"b\" may run at the same time and both write \
         \"out\" (\"out/**\" in \"a\", \"out\" in \"b\"); order them with after, or narrow owns"
    );
}

#[test]
fn bad_owns_patterns_are_refused_where_they_are() {
    assert_eq!(
        err(&owning(&[("a", "owns = [\"ok\",\n  \"/etc/x\"]\n")])),
        "p.toml:6:3: invalid owns pattern \"/etc/x\": absolute (owns are relative to the plan's directory)"
    );
    assert_eq!(
        err(&owning(&[("a", "owns = [\"a/**/b\"]\n")])),
        "p.toml:5:9: invalid owns pattern \"a/**/b\": \"**\" only as the whole last component"
    );
    // A pattern error is the task's own value: it comes before any overlap.
    let text = owning(&[("a", "owns = [\"x\"]\n"), ("b", "owns = [\"x\", \"y/\"]\n")]);
    assert_eq!(
        err(&text),
        "p.toml:9:14: invalid owns pattern \"y/\": ends with \"/\" \
         (name the path, or add \"**\" for everything below it)"
    );
    assert!(
        err("name = \"p\"\n[defaults]\nowns = [\"x\"]\n[[task]]\nid = \"a\"\nrun = \"t\"\n")
            .starts_with("p.toml:3:1: unknown field `owns`")
    );
    // JSON: the same messages at the same kind of position.
    assert_eq!(
        json_err(
            "{\"name\": \"j\", \"task\": [\n {\"id\": \"a\", \"run\": \"t\", \"owns\": [\"a\", \"..\"]}]}"
        ),
        "p.json:2:40: invalid owns pattern \"..\": a \".\" or \"..\" component"
    );
    assert_eq!(
        json_err(
            "{\"name\": \"j\", \"task\": [\n {\"id\": \"a\", \"run\": \"t\", \"owns\": [\"db/**\"]},\n \
             {\"id\": \"b\", \"run\": \"t\", \"owns\": [\"db/schema.rb\"]}]}"
        ),
        "p.json:3:35: tasks \"a\" and \"b\" may run at the same time and both write \
         \"db/schema.rb\" (\"db/**\" in \"a\", \"db/schema.rb\" in \"b\"); order them with after, \
         or narrow owns"
    );
}
