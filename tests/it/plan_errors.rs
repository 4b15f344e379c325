//! Every plan error gives its exact message, exit code 2, and creates nothing.

use crate::util::*;

/// Run `orchestrator run` on `text` and check the exact error and that nothing was made.
fn refused(text: &str, expected: &str) {
    let sb = Sandbox::new();
    let p = sb.write("plan.toml", text);
    let o = sb.run(&["run", "plan.toml", "--launcher", "background"]);
    assert_eq!(o.status.code(), Some(2), "stderr: {}", stderr(&o));
    assert_eq!(stderr(&o), format!("error: {expected}\n"));
    assert_eq!(stdout(&o), "");
    assert!(
        !sb.sessions().exists(),
        "no session directory may be created"
    );
    // `plan` reports the same error.
    let o = sb.run(&["plan", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn unknown_key() {
    let sb_text = "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"true\"\nrn = \"x\"\n";
    let sb = Sandbox::new();
    sb.write("plan.toml", sb_text);
    let o = sb.run(&["run", "plan.toml"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.starts_with("error: plan.toml:5:1: unknown field `rn`"),
        "{err}"
    );
    assert!(!sb.sessions().exists());
}

#[test]
fn duplicate_id() {
    refused(
        "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"true\"\n[[task]]\nid = \"a\"\nrun = \"true\"\n",
        "plan.toml:6:6: duplicate task id \"a\" (first defined at line 3)",
    );
}

#[test]
fn unknown_dependency() {
    refused(
        "name = \"p\"\n[[task]]\nid = \"b\"\nrun = \"true\"\nafter = [\"zz\"]\n",
        "plan.toml:5:10: task \"b\" depends on unknown task \"zz\"",
    );
}

#[test]
fn dependency_cycle() {
    refused(
        "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"true\"\nafter = [\"c\"]\n\
         [[task]]\nid = \"b\"\nrun = \"true\"\nafter = [\"a\"]\n\
         [[task]]\nid = \"c\"\nrun = \"true\"\nafter = [\"b\"]\n",
        "plan.toml:3:6: dependency cycle: a -> c -> b -> a",
    );
}

#[test]
fn bad_id() {
    refused(
        "name = \"p\"\n[[task]]\nid = \"../x\"\nrun = \"true\"\n",
        "plan.toml:3:6: invalid task id \"../x\": must be 1-64 characters of [A-Za-z0-9._-] not starting with a dot",
    );
}

#[test]
fn missing_run_and_cmd() {
    refused(
        "name = \"p\"\n[[task]]\nid = \"a\"\n",
        "plan.toml:3:6: task \"a\" has neither `run` nor `cmd`",
    );
}

#[test]
fn zero_workers() {
    refused(
        "name = \"p\"\nworkers = 0\n[[task]]\nid = \"a\"\nrun = \"true\"\n",
        "plan.toml:2:11: workers must be at least 1",
    );
}

#[test]
fn missing_plan_file() {
    let sb = Sandbox::new();
    let o = sb.run(&["run", "nope.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "error: nope.toml: cannot read plan: No such file or directory (os error 2)\n"
    );
    assert!(!sb.sessions().exists());
}

#[test]
fn plan_prints_waves_and_critical_path() {
    let sb = Sandbox::new();
    sb.write(
        "d.toml",
        "name = \"d\"\nworkers = 2\n[[task]]\nid = \"a\"\nrun = \"true\"\n\
         [[task]]\nid = \"b\"\nrun = \"true\"\nafter = [\"a\"]\n\
         [[task]]\nid = \"c\"\nrun = \"true\"\nafter = [\"a\"]\n\
         [[task]]\nid = \"d\"\nrun = \"true\"\nafter = [\"b\", \"c\"]\n",
    );
    let o = sb.run(&["plan", "d.toml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "plan d: 4 tasks, 2 workers, 3 waves\nwave 1: a\nwave 2: b, c\nwave 3: d\ncritical path: a -> b -> d (3 tasks)\n"
    );
    let o = sb.run(&["plan", "d.toml", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["waves"], serde_json::json!([["a"], ["b", "c"], ["d"]]));
    assert_eq!(v["critical_path"], serde_json::json!(["a", "b", "d"]));
    let o = sb.run(&["plan", "d.toml", "--dot"]);
    let dot = stdout(&o);
    assert!(dot.starts_with("digraph"), "{dot}");
    assert!(dot.contains("\"a\" -> \"b\""), "{dot}");
    assert!(!sb.sessions().exists());
}
