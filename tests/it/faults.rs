//! Fault tests: a full disk, hostile files. Nothing may be half-published, nothing may
//! panic, and what failed stays retryable.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::util::*;

/// Every JSON file under `dir` parses; no temp file is left behind.
fn all_json_whole(dir: &Path) {
    for e in files_under(dir) {
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
    // (named, with ENOSPC), or the new workers' registrations (they die; it gives up, and
    // says why: their logs are empty because the disk is full).
    assert!(
        err.to_lowercase().contains("no space left on device"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let session = session_of(&o);
    kill_workers(&session);
    all_json_whole(&session);
    // Free the space the runaway task took, and carry on.
    fs::remove_file(session.join("tasks/filler/attempt-1/stdout.log")).unwrap();
    let o = sb.resume(&session);
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
        err.contains(&format!(
            "error: {}: is a symbolic link; maestro never follows links",
            outcome.display()
        )),
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

/// Every write of a small run, failed in turn: each run that a fault stopped is resumed
/// (without faults) to the end, and the end is always the same: every task succeeded
/// once, every journal line is whole, nothing is half-published, nothing is left running.
/// Needs the `fault-injection` feature (scripts/test.sh runs it).
#[cfg(feature = "fault-injection")]
#[test]
fn every_failed_write_of_a_run_is_survived_by_resume() {
    const PLAN: &str = "name = \"f\"\nworkers = 2\n\
        [[task]]\nid = \"a\"\nrun = 'echo a > \"$MAESTRO_RESULT\".tmp; echo \"{\\\"n\\\": 1}\" > \"$MAESTRO_RESULT\"'\n\
        [[task]]\nid = \"b\"\nafter = [\"a\"]\nrun = 'echo b'\n\
        [[task]]\nid = \"c\"\nrun = 'echo c >&2'\n";
    let mut fired = 0;
    for role in ["orchestrator", "worker"] {
        for n in 1.. {
            let errno = if n % 2 == 0 { "EIO" } else { "ENOSPC" };
            let sb = Sandbox::new();
            let log = sb.path().join("fault.log");
            let p = sb.write("f.toml", PLAN);
            let fault = format!("{role}:{n}:{errno}");
            let mut c = sb.orch();
            c.args(["run", p.to_str().unwrap(), "-q", "--launcher", "background"])
                .env("MAESTRO_FAULT", &fault)
                .env("MAESTRO_FAULT_LOG", &log);
            let o = run_with_deadline(c, Duration::from_secs(60));
            let mut code = o.status.code().unwrap_or(-1);
            if !log.exists() {
                assert_eq!(code, 0, "{fault}: no fault, yet: {}", stderr(&o));
                break;
            }
            assert!(!stderr(&o).contains("panicked"), "{fault}: {}", stderr(&o));
            let Some(line) = stdout(&o).lines().next().map(str::to_string) else {
                // The fault struck before the session was whole: it must say where, and
                // leave no half session behind.
                assert_eq!(code, 3, "{fault}");
                assert!(stderr(&o).starts_with("error: "), "{fault}: {}", stderr(&o));
                let left = fs::read_dir(sb.sessions()).map_or(0, |d| d.count());
                assert_eq!(left, 0, "{fault}: half a session left behind");
                fired += 1;
                continue;
            };
            let session = std::path::PathBuf::from(line);
            fired += 1;
            let s = session.to_str().unwrap().to_string();
            // A summary means the session ended and the fault struck its last words
            // (its closing journal line): `resume` rightly refuses an ended session.
            let ended = |code: i32| code == 0 || session.join("summary.json").exists();
            for _ in 0..3 {
                if ended(code) {
                    break;
                }
                if !session.join("session.json").exists() {
                    // The fault struck before the session existed: nothing to resume.
                    break;
                }
                let mut c = sb.orch();
                c.args(["resume", &s, "-q", "--launcher", "background"]);
                let o = run_with_deadline(c, Duration::from_secs(60));
                code = o.status.code().unwrap_or(-1);
                assert!(
                    matches!(code, 0 | 3),
                    "{fault}: resume exit {code}: {}",
                    stderr(&o)
                );
            }
            if !session.join("session.json").exists() {
                continue;
            }
            assert!(ended(code), "{fault}: resume did not finish the session");
            assert_status(
                &sb,
                &session,
                "succeeded",
                &[("a", "succeeded"), ("b", "succeeded"), ("c", "succeeded")],
            );
            all_json_whole(&session);
            for journal in std::iter::once(session.join("events.jsonl")).chain(
                names_in(&session.join("workers"))
                    .iter()
                    .map(|w| session.join("workers").join(w).join("events.jsonl")),
            ) {
                let text = fs::read_to_string(&journal).unwrap_or_default();
                for line in text.lines() {
                    assert!(
                        serde_json::from_str::<serde_json::Value>(line).is_ok(),
                        "{fault}: torn line in {}: {line}",
                        journal.display()
                    );
                }
            }
            let finished = events(&session)
                .iter()
                .filter(|e| e["event"] == "task_finished")
                .count();
            assert_eq!(finished, 3, "{fault}: a task decided twice, or never");
        }
    }
    assert!(fired > 20, "only {fired} faults struck");
}

// Workers that died before registering were reported with "see workers/wN/console.log",
// which a full disk had left empty: the message said nothing.
#[test]
fn workers_that_die_before_registering_are_reported_with_what_they_said() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    let bin = sb.write(
        "worker",
        "#!/bin/sh\necho 'cannot start: the sky fell' >&2\nexit 1\n",
    );
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    let p = sb.write(
        "p.toml",
        "name = \"p\"\n[[task]]\nid = \"a\"\nrun = 'true'\n",
    );
    let o = sb
        .orch()
        .args(["run", "-q", "--launcher", "background"])
        .arg(&p)
        .env("MAESTRO_WORKER_BIN", &bin)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        "error: 5 workers in a row died before registering; see workers/w5/console.log \
         (worker w5 said: cannot start: the sky fell)\n"
    );
}
