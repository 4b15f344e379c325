//! Secrets: values a task takes from the caller's environment (`env_from_parent`) or from
//! an `env_file` reach the task and are never written to any file of the session.

use std::fs;
use std::path::Path;

use crate::util::*;

const PARENT: &str = "s3cr3t-from-the-caller";
const FILED: &str = "hunter2-from-the-file";

/// No file under `dir` holds `needle`.
fn assert_nowhere(dir: &Path, needle: &str) {
    for p in files_under(dir) {
        if let Ok(bytes) = fs::read(&p) {
            let hit = bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
            assert!(!hit, "{} holds a secret", p.display());
        }
    }
}

/// `orchestrator run PLAN` with `MAESTRO_TEST_SECRET` set to `secret` (unset: `None`).
fn run(sb: &Sandbox, plan: &Path, secret: Option<&str>) -> std::process::Output {
    let mut c = sb.orch();
    c.args(["run", "-q", "--launcher", "background"])
        .arg(plan)
        .env("OUT", sb.out());
    match secret {
        Some(v) => c.env("MAESTRO_TEST_SECRET", v),
        None => c.env_remove("MAESTRO_TEST_SECRET"),
    };
    c.output().unwrap()
}

fn plan(sb: &Sandbox) -> std::path::PathBuf {
    sb.write("secret.env", &format!("# test\nexport TOKEN='{FILED}'\n"));
    sb.write(
        "s.toml",
        "name = \"s\"\n[defaults]\nenv_from_parent = [\"MAESTRO_TEST_SECRET\"]\n\
         [[task]]\nid = \"a\"\nenv_file = \"secret.env\"\nenv = { PLAIN = \"shown\" }\n\
         run = 'echo \"$MAESTRO_TEST_SECRET $TOKEN $PLAIN\" > \"$OUT/seen\"'\n",
    )
}

#[test]
fn secrets_reach_the_task_and_no_file_of_the_session_holds_them() {
    let sb = Sandbox::new();
    let p = plan(&sb);
    let o = run(&sb, &p, Some(PARENT));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let seen = fs::read_to_string(sb.out().join("seen")).unwrap();
    assert_eq!(seen, format!("{PARENT} {FILED} shown\n"));
    let session = session_of(&o);
    assert_nowhere(&session, PARENT);
    assert_nowhere(&session, FILED);
    // The names and the file's path are there, for people and for resume.
    let plan_json = fs::read_to_string(session.join("plan.json")).unwrap();
    assert!(plan_json.contains("MAESTRO_TEST_SECRET"), "{plan_json}");
    assert!(plan_json.contains("secret.env"), "{plan_json}");
    // `orchestrator plan` names them with their values redacted.
    let o = sb.run(&["plan", p.to_str().unwrap()]);
    let text = stdout(&o);
    assert!(
        text.contains(&format!(
            "secrets of a: MAESTRO_TEST_SECRET=<from the caller>, TOKEN=<from {}>\n",
            sb.path().join("secret.env").display()
        )),
        "{text}"
    );
    assert!(!text.contains(PARENT) && !text.contains(FILED));
    // So does `status`, in text and JSON.
    let redacted = format!(
        "MAESTRO_TEST_SECRET=<from the caller>, TOKEN=<from {}>",
        sb.path().join("secret.env").display()
    );
    let o = sb.run(&["status", session.to_str().unwrap()]);
    assert!(
        stdout(&o).contains(&format!("secrets of a: {redacted}\n")),
        "{}",
        stdout(&o)
    );
    assert_eq!(status_json(&sb, &session)["tasks"][0]["secrets"], redacted);
}

#[test]
fn a_secret_missing_from_the_callers_environment_is_refused_before_anything_runs() {
    let sb = Sandbox::new();
    let p = plan(&sb);
    let o = run(&sb, &p, None);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "error: task \"a\": env_from_parent: MAESTRO_TEST_SECRET is not set in this \
         environment (export it, then run again)\n"
    );
    assert!(!sb.sessions().exists(), "nothing was created");
}

#[test]
fn a_bad_env_file_or_name_is_a_plan_error_that_never_quotes_a_value() {
    let sb = Sandbox::new();
    sb.write("bad.env", &format!("A=1\n{FILED}\n"));
    let p = sb.write(
        "b.toml",
        "name = \"b\"\n[[task]]\nid = \"a\"\nenv_file = \"bad.env\"\nrun = 'true'\n",
    );
    let o = sb.run(&["plan", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        format!(
            "error: {}:3:6: env_file: {}:2: expected KEY=VALUE\n",
            p.display(),
            sb.path().join("bad.env").display()
        )
    );
    let p = sb.write(
        "c.toml",
        "name = \"c\"\n[[task]]\nid = \"a\"\nenv = { K = \"v\" }\nenv_from_parent = [\"K\"]\nrun = 'true'\n",
    );
    let o = sb.run(&["plan", p.to_str().unwrap()]);
    assert_eq!(
        stderr(&o),
        format!(
            "error: {}:3:6: env_from_parent: K is also set in env; keep one\n",
            p.display()
        )
    );
}
