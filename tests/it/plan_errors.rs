//! Every plan error gives its exact message, exit code 2, and creates nothing.

use std::fs;

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
        "plan d: 4 tasks, 2 workers, 3 waves\nwave 1: a\nwave 2: b, c\n  b: after a\n  c: after a\n\
         wave 3: d\n  d: after b, c\ncritical path: a -> b -> d (3 tasks)\n"
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

#[test]
fn zero_timeout() {
    refused(
        "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"true\"\ntimeout = \"0s\"\n",
        "plan.toml:5:11: timeout must be at least 1ms (got \"0s\")",
    );
}

#[test]
fn negative_kill_grace() {
    refused(
        "name = \"p\"\n[defaults]\nkill_grace = \"-2s\"\n[[task]]\nid = \"a\"\nrun = \"true\"\n",
        "plan.toml:3:14: kill_grace must not be negative (got \"-2s\")",
    );
}

/// A `cwd` is checked when the plan is loaded (relative to the directory `run` is started
/// in), not when the task first runs.
#[test]
fn missing_cwd() {
    let sb = Sandbox::new();
    let p = sb.write(
        "plan.toml",
        "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"true\"\n\
         [[task]]\nid = \"b\"\nrun = \"true\"\ncwd = \"no/such/dir\"\n",
    );
    let expected = format!(
        "error: plan.toml:8:7: cwd {:?} does not exist\n",
        sb.path().join("no/such/dir").display().to_string()
    );
    for verb in ["run", "plan"] {
        let o = sb.run(&[verb, "plan.toml"]);
        assert_eq!(o.status.code(), Some(2), "{verb}: {}", stderr(&o));
        assert_eq!(stderr(&o), expected, "{verb}");
    }
    assert!(!sb.sessions().exists());
    fs::create_dir_all(sb.path().join("no/such/dir")).unwrap();
    let o = sb.run(&["plan", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// JSON plans' semantic errors carry a line and column, as TOML plans' do.
#[test]
fn json_plan_error_has_line_and_column() {
    let sb = Sandbox::new();
    sb.write(
        "plan.json",
        "{\"name\": \"p\",\n \"task\": [\n  {\"id\": \"a\", \"run\": \"true\", \"after\": [\"zz\"]}\n]}\n",
    );
    let o = sb.run(&["run", "plan.json", "--launcher", "background"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        "error: plan.json:3:40: task \"a\" depends on unknown task \"zz\"\n"
    );
    assert!(!sb.sessions().exists());
}
