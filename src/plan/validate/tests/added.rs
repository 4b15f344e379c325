//! Tasks added to a session: what is taken, and the exact message of each refusal,
//! pointing into the added file.

use std::path::Path;

use super::super::super::test_util::parse;
use super::super::super::{Plan, Task};

/// The session's plan: `a`, `b` after `a`, a race `r` of `c` and `d`, a gate `g` after
/// `a`, a pool `db` of 4, a memory budget, and `a` owning `src/**`.
fn session() -> Plan {
    parse(
        r#"
name = "s"
[resources]
db = { max = 4 }
[limits]
memory = "1GiB"
[[task]]
id = "a"
run = "true"
owns = ["src/**"]
[[task]]
id = "b"
run = "true"
after = ["a"]
[[task]]
id = "c"
run = "true"
[[task]]
id = "d"
run = "true"
[[race]]
id = "r"
tasks = ["c", "d"]
[[gate]]
id = "g"
after = ["a"]
approve = true
"#,
    )
    .unwrap()
}

fn add(text: &str) -> Result<Vec<Task>, String> {
    session()
        .added("more.toml", text, Path::new("/base"), false)
        .map_err(|e| e.to_string())
}

fn refused(text: &str) -> String {
    match add(text) {
        Ok(t) => panic!("accepted: {t:?}"),
        Err(e) => e,
    }
}

#[test]
fn added_tasks_may_follow_the_sessions_tasks_races_gates_and_each_other() {
    let tasks = add(r#"
[defaults]
retries = 2
[[task]]
id = "e"
run = "true"
after = ["b", "r", "gate:g", "signal:go"]
resources = { db = 2 }
memory = "100MiB"
[[task]]
id = "f-{n}"
run = "echo {n}"
after = ["e"]
matrix = { n = ["1", "2"] }
"#)
    .unwrap();
    let ids: Vec<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["e", "f-1", "f-2"]);
    assert_eq!(tasks[0].after, ["b", "r", "gate:g"]);
    assert_eq!(tasks[0].after_signals, ["go"]);
    assert_eq!(tasks[0].resources["db"], 2);
    assert_eq!(tasks[0].retries, 2, "the file's [defaults] apply");
    assert_eq!(tasks[2].after, ["e"]);
    // A file without a `name` is fine; a plan's is required.
    assert!(add("[[task]]\nid = \"x\"\nrun = \"true\"\n").is_ok());
    let no_name = Plan::parse(
        "p.toml",
        "[[task]]\nid = \"x\"\nrun = \"t\"\n",
        Path::new("/"),
    );
    assert_eq!(
        no_name.unwrap_err().to_string(),
        "p.toml: plan has no `name`"
    );
}

#[test]
fn added_tasks_are_refused_with_the_line_in_the_added_file() {
    assert_eq!(
        refused("[[task]]\nid = \"x\"\nrun = \"t\"\n\n[[task]]\nid = \"a\"\nrun = \"t\"\n"),
        "more.toml:6:6: duplicate task id \"a\" (first defined in the session's plan)"
    );
    assert_eq!(
        refused("[[task]]\nid = \"x\"\nrun = \"t\"\nafter = [\"a\", \"nope\"]\n"),
        "more.toml:4:15: task \"x\" depends on unknown task \"nope\""
    );
    assert_eq!(
        refused(
            "[[task]]\nid = \"x\"\nrun = \"t\"\nafter = [\"y\"]\n\
             [[task]]\nid = \"y\"\nrun = \"t\"\nafter = [\"x\", \"a\"]\n"
        ),
        "more.toml:2:6: dependency cycle: x -> y -> x"
    );
    assert_eq!(
        refused("[[task]]\nid = \"x\"\nrun = \"t\"\nresources = { pg = 1 }\n"),
        "more.toml:4:13: task \"x\": resources.pg: no such pool in [resources]"
    );
    assert_eq!(
        refused("[[task]]\nid = \"x\"\nrun = \"t\"\nmemory = \"2GiB\"\n"),
        "more.toml:4:10: memory: 2GiB is more than the [limits] memory budget of 1GiB: it could never start"
    );
    // `a` owns src/**, and a task not ordered after it may run beside it.
    assert_eq!(
        refused("[[task]]\nid = \"x\"\nrun = \"t\"\nowns = [\"src/lib.rs\"]\n"),
        "more.toml:4:9: tasks \"a\" and \"x\" may run at the same time and both write \"src/lib.rs\" (\"src/**\" in \"a\", \"src/lib.rs\" in \"x\"); order them with after, or narrow owns"
    );
    // After `a`, it cannot.
    assert!(
        add("[[task]]\nid = \"x\"\nrun = \"t\"\nowns = [\"src/lib.rs\"]\nafter = [\"a\"]\n")
            .is_ok()
    );
}

#[test]
fn what_only_the_sessions_plan_may_set_is_refused_by_name() {
    assert_eq!(
        refused("workers = 3\n[[task]]\nid = \"x\"\nrun = \"t\"\n"),
        "more.toml:1:11: `workers` cannot be added to a running session: use `orchestrator scale`"
    );
    assert_eq!(
        refused(
            "[[task]]\nid = \"x\"\nrun = \"t\"\n[[race]]\nid = \"q\"\ntasks = [\"x\", \"a\"]\n"
        ),
        "more.toml:4:1: `race` cannot be added to a running session: a race's members are fixed"
    );
    assert_eq!(
        refused("[resources]\npg = { max = 1 }\n[[task]]\nid = \"x\"\nrun = \"t\"\n"),
        "more.toml:1:1: `resources` cannot be added to a running session: pools cannot change under running tasks"
    );
    assert_eq!(refused("name = \"s\"\n"), "more.toml: plan has no tasks");
}

#[test]
fn merging_again_catches_what_a_concurrent_addition_took() {
    let s = session();
    let first = add("[[task]]\nid = \"x\"\nrun = \"t\"\nowns = [\"docs/**\"]\n").unwrap();
    let merged = s.with_added(first.clone()).unwrap();
    assert_eq!(merged.tasks.len(), 5);
    assert_eq!(
        merged.with_added(first).unwrap_err().to_string(),
        "added tasks: duplicate task id \"x\" (first defined in the session's plan)"
    );
    let other = add("[[task]]\nid = \"y\"\nrun = \"t\"\nowns = [\"docs/a.md\"]\n").unwrap();
    assert_eq!(
        merged.with_added(other).unwrap_err().to_string(),
        "added tasks: tasks \"x\" and \"y\" may run at the same time and both write \"docs/a.md\" (\"docs/**\" in \"x\", \"docs/a.md\" in \"y\"); order them with after, or narrow owns"
    );
    let twice = add("[[task]]\nid = \"z\"\nrun = \"t\"\n").unwrap();
    let twice = [twice.clone(), twice].concat();
    assert_eq!(
        s.with_added(twice).unwrap_err().to_string(),
        "added tasks: duplicate task id \"z\" (first defined as task #1)"
    );
}
