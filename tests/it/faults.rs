//! Fault tests: a full disk, hostile files. Nothing may be half-published, nothing may
//! panic, and what failed stays retryable.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::util::*;

/// Every JSON file under `dir` parses; no temp file is left behind.
fn all_json_whole(dir: &Path) {
    for e in walk(dir) {
        let name = e.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            !name.starts_with(".tmp-"),
            "temp file left behind: {}",
            e.display()
        );
        if name.ends_with(".json") {
            let text = fs::read(&e).unwrap();
            assert!(
                serde_json::from_slice::<serde_json::Value>(&text).is_ok(),
                "half-written JSON: {}",
                e.display()
            );
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

struct Mount(std::path::PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn full_disk_publishes_nothing_half_and_the_session_resumes_after_space_is_freed() {
    let sb = Sandbox::new();
    let mnt = sb.path().join("tiny");
    fs::create_dir_all(&mnt).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=200k", "tmpfs"])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: cannot mount a tmpfs here (needs root); CI runs as root");
        return;
    }
    let _m = Mount(mnt.clone());
    let sessions = mnt.join("s");
    let o = sb.run_plan(
        "full.toml",
        r#"
name = "full"
workers = 2
[[task]]
id = "filler"
run = "if [ $MAESTRO_ATTEMPT = 1 ]; then head -c 400000 /dev/zero | tr '\\0' x; fi"
[[task]]
id = "after"
run = "echo hi"
after = ["filler"]
[[task]]
id = "other"
run = "echo other"
"#,
        &["-q", "--sessions-dir", sessions.to_str().unwrap()],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    // Which write hits the full disk first depends on timing: one of the orchestrator's
    // (named, with ENOSPC), or the new workers' registrations (they die; it gives up).
    assert!(
        err.contains("No space left on device") || err.contains("died before registering"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let session = session_of(&o);
    kill_workers(&session);
    all_json_whole(&session);
    // Free the space the runaway task took, and carry on.
    fs::remove_file(session.join("tasks/filler/attempt-1/stdout.log")).unwrap();
    let o = sb.run(&[
        "resume",
        session.to_str().unwrap(),
        "-q",
        "--launcher",
        "background",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_status(&sb, &session, "succeeded", &[("after", "succeeded")]);
    all_json_whole(&session);
}

#[test]
fn planted_symlink_in_a_session_does_not_redirect_writes() {
    let sb = Sandbox::new();
    let canary = sb.path().join("canary");
    fs::write(&canary, "keep").unwrap();
    let p = sb.write(
        "sym.toml",
        "name = \"sym\"\n[[task]]\nid = \"a\"\nrun = 'ln -s \"$CANARY\" \"$MAESTRO_SESSION/tasks/a/outcome.json\"; ln -s \"$CANARY\" \"$MAESTRO_SESSION/summary.json\"'\n",
    );
    let o = sb
        .orch()
        .args(["run", p.to_str().unwrap(), "--launcher", "background", "-q"])
        .env("CANARY", &canary)
        .output()
        .unwrap();
    // The outcome cannot be created over the planted link, and the link is never followed
    // (files are opened O_NOFOLLOW): maestro stops with an error naming the file, and the
    // canary is untouched.
    assert_eq!(fs::read_to_string(&canary).unwrap(), "keep");
    let session = session_of(&o);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(3), "{err}");
    let outcome = session.join("tasks/a/outcome.json");
    assert!(
        err.contains(&format!("error: {}: cannot open: ", outcome.display())),
        "{err}"
    );
}

#[test]
fn status_of_a_session_with_hand_truncated_files_names_them() {
    let sb = Sandbox::new();
    let o = sb.run_plan(
        "t.toml",
        "name = \"t\"\n[[task]]\nid = \"a\"\nrun = \"true\"\n",
        &["-q"],
    );
    assert_eq!(o.status.code(), Some(0));
    let session = session_of(&o);
    let outcome = session.join("tasks/a/outcome.json");
    fs::write(&outcome, "{\"task\": \"a\", \"sta").unwrap();
    // Shown as unreadable, by path; the task's state comes from the journal.
    let st = status_json(&sb, &session);
    assert_eq!(st["state"], "succeeded");
    assert_eq!(st["tasks"][0]["state"], "succeeded");
    let error = st["tasks"][0]["error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!("{}: invalid JSON: ", outcome.display())),
        "{error}"
    );
    let _ = Duration::ZERO;
}
