//! Per-attempt cgroups with real processes, where this host lets the test's workers make
//! them (`$MAESTRO_CGROUP` when the run names a directory, else the test's own cgroup, as
//! on a hybrid host's /sys/fs/cgroup/unified when root): a timeout stops what left the
//! attempt's process group (`setsid`), and nothing of the cgroups is left. Where they
//! cannot be used, each test says so on stderr and checks the fallback instead: the
//! attempt is measured by PSS (or RSS) and reported so.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use maestro::cgroup::{self, Setting, Tree};

use crate::util::*;

/// What the test's workers will be given as `MAESTRO_CGROUP`, and the base directory
/// their cgroups go in with whether it offers memory, or why there is none (tried with
/// the worker's own code, making and removing a directory there).
fn host(probe: &str) -> (String, Result<(PathBuf, bool), String>) {
    let outer = std::env::var(cgroup::ENV).unwrap_or_default();
    let setting = match Setting::parse(Some(&outer)) {
        Ok(s) => s,
        Err(e) => return (outer, Err(e)),
    };
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
    let base = cgroup::base_dir(
        &setting,
        &read("/proc/self/mountinfo"),
        &read("/proc/self/cgroup"),
    );
    let usable = base.and_then(|base| {
        let tree = Tree::create(&base, &cgroup::tree_name(probe, "it", std::process::id()))?;
        let memory = tree.memory();
        tree.remove()?;
        Ok((base, memory))
    });
    match usable {
        // Named explicitly: the workers must use the directory probed here.
        Ok((base, memory)) => (base.display().to_string(), Ok((base, memory))),
        Err(why) if outer.is_empty() => ("auto".into(), Err(why)),
        Err(why) => (outer, Err(why)),
    }
}

/// Cleans up after a failed assertion too: the escaped process, and the session's cgroup
/// directories (dropped after the sandbox, which kills the workers first).
#[derive(Default)]
struct Leftovers {
    pid: Option<u64>,
    /// `(base, "maestro-<session>-")`.
    cgroups: Option<(PathBuf, String)>,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.filter(|p| !process_gone(&p.to_string())) {
            signal(pid, "-KILL");
        }
        if let Some((base, prefix)) = &self.cgroups {
            for dir in ours(base, prefix) {
                let _ = fs::write(dir.join("cgroup.kill"), "1");
                std::thread::sleep(Duration::from_millis(100));
                for leaf in fs::read_dir(&dir).into_iter().flatten().flatten() {
                    let _ = fs::remove_dir(leaf.path());
                }
                let _ = fs::remove_dir(&dir);
            }
        }
    }
}

/// The cgroup directories in `base` whose names start with `prefix`.
fn ours(base: &Path, prefix: &str) -> Vec<PathBuf> {
    fs::read_dir(base)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .collect()
}

/// The process group of process `pid`, from `/proc/PID/stat`.
fn pgrp_of(pid: u64) -> Option<i64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

#[test]
fn a_timeout_stops_what_left_the_process_group_and_no_cgroup_is_left() {
    let mut left = Leftovers::default();
    let mut sb = Sandbox::new();
    let (env, host) = host("timeout");
    // The worker moves the task in just after it starts: here it waits to be moved, so
    // that what it starts is inside for sure.
    let wait_moved = match host {
        Ok(_) => "while ! grep -q /attempt-1-escape /proc/$$/cgroup; do sleep 0.01; done\n",
        Err(_) => "",
    };
    let plan = format!(
        "name = \"cg\"\nworkers = 1\n\
         [[task]]\nid = \"escape\"\ntimeout = \"3s\"\nkill_grace = \"500ms\"\n\
         run = '''\n{wait_moved}setsid sleep 1000 &\necho $! > \"$OUT/escaped\"\nexec sleep 1000\n'''\n"
    );
    let p = sb.write("cg.toml", &plan);
    let session = sb.start_with(
        &["run", p.to_str().unwrap(), "--launcher", "background", "-q"],
        &[("MAESTRO_CGROUP", &env)],
    );
    let prefix = format!("maestro-{}-", session_id(&session));
    if let Ok((base, _)) = &host {
        left.cgroups = Some((base.clone(), prefix.clone()));
    }
    let escaped = pid_in(&sb.out().join("escaped"));
    left.pid = Some(escaped);
    // It did leave the attempt's process group (and session): once `setsid` has run (its
    // pid is known as soon as the shell forked it, before it calls setsid(2)).
    let pgid = pgid_of(&session, "escape", 1);
    wait_until(
        Duration::from_secs(10),
        "the escape to leave the group",
        || pgrp_of(escaped).is_some_and(|g| g != pgid),
    );
    assert!(!group_members(pgid).contains(&escaped));

    let usage = session.join("workers/w1/usage.json");
    wait_until(Duration::from_secs(30), "a usage sample", || {
        read_json(&usage).is_some_and(|u| u["task"] == "escape")
    });
    let u = read_json(&usage).unwrap();
    match &host {
        Ok((base, _)) => {
            let cg = fs::read_to_string(format!("/proc/{escaped}/cgroup")).unwrap();
            assert!(cg.contains(&format!("/{prefix}w1-")), "{cg}");
            assert!(cg.contains("/attempt-1-escape"), "{cg}");
            let dir = u["cgroup"].as_str().expect("usage names the cgroup");
            assert!(Path::new(dir).starts_with(base), "{u}");
            // The process that left its group is counted with the task's.
            assert!(u["processes"].as_u64().unwrap() >= 2, "{u}");
        }
        Err(why) => {
            eprintln!(
                "per-attempt cgroups cannot be used here ({why}): checking the fallback \
                 (process group only; the escaped process outlives the attempt)"
            );
            assert!(u.get("cgroup").is_none(), "{u}");
        }
    }
    assert!(
        ["pss", "rss", "cgroup"].contains(&u["mode"].as_str().unwrap()),
        "{u}"
    );

    assert_eq!(sb.wait_last(Duration::from_secs(60)), 1);
    let out = outcome(&session, "escape");
    assert!(
        out["reason"]
            .as_str()
            .unwrap()
            .starts_with("timed out after 3."),
        "{out}"
    );
    match &host {
        Ok((base, _)) => {
            // The exit is recorded once the attempt's cgroup is removed, which it can be
            // only when empty: gone already, not soon.
            assert!(
                process_gone(&escaped.to_string()),
                "cgroup.kill missed {escaped}"
            );
            wait_until(Duration::from_secs(20), "the worker's cgroup to go", || {
                ours(base, &prefix).is_empty()
            });
            let console = fs::read_to_string(session.join("workers/w1/console.log")).unwrap();
            assert!(
                console.contains("attempts run in cgroups under"),
                "{console}"
            );
        }
        Err(_) => {
            assert!(!process_gone(&escaped.to_string()));
            signal(escaped, "-KILL");
            wait_gone(escaped, "the escaped process");
            let console = fs::read_to_string(session.join("workers/w1/console.log")).unwrap();
            assert!(console.contains("cgroups not used ("), "{console}");
        }
    }
}

/// Over its `memory`, an attempt is stopped with the reason "memory limit" in every mode:
/// by the kernel at `memory.max` where the memory controller is delegated, else by its
/// worker measuring PSS (in a cgroup or not).
#[test]
fn an_attempt_over_its_memory_is_stopped_in_the_mode_the_host_allows() {
    let mut left = Leftovers::default();
    let mut sb = Sandbox::new();
    let (env, host) = host("memory");
    // The first sample (0.2 s) comes before the allocation, so usage.json is there
    // whichever way the attempt ends.
    let plan = "name = \"hog\"\nworkers = 1\n\
        [[task]]\nid = \"hog\"\nmemory = \"64MiB\"\n\
        cmd = [\"python3\", \"-c\", \"import time; time.sleep(0.6); a = bytearray(256 << 20); time.sleep(30)\"]\n";
    let p = sb.write("hog.toml", plan);
    let session = sb.start_with(
        &["run", p.to_str().unwrap(), "--launcher", "background", "-q"],
        &[("MAESTRO_CGROUP", &env)],
    );
    let prefix = format!("maestro-{}-", session_id(&session));
    if let Ok((base, _)) = &host {
        left.cgroups = Some((base.clone(), prefix.clone()));
    }
    assert_eq!(sb.wait_last(Duration::from_secs(60)), 1);
    let out = outcome(&session, "hog");
    assert_eq!(out["state"], "failed");
    assert_eq!(out["reason"], "stopped: memory limit");
    let usage = read_json(&session.join("workers/w1/usage.json")).unwrap();
    let console = fs::read_to_string(session.join("workers/w1/console.log")).unwrap();
    match &host {
        Ok((_, true)) => {
            assert_eq!(usage["mode"], "cgroup", "{usage}");
            assert!(console.contains("memory.max enforces"), "{console}");
            assert!(console.contains("killed by the kernel"), "{console}");
        }
        Ok((base, false)) => {
            eprintln!(
                "{}: offers no memory controller, so memory.max is not checked here; \
                 checking PSS in a cgroup",
                base.display()
            );
            assert_eq!(usage["mode"], "pss", "{usage}");
            assert!(usage["cgroup"].is_string(), "{usage}");
            assert!(
                usage["memory_bytes"].as_u64().unwrap() > 64 << 20,
                "{usage}"
            );
            assert!(console.contains("measured by PSS"), "{console}");
        }
        Err(why) => {
            eprintln!("per-attempt cgroups cannot be used here ({why}): checking the fallback");
            assert!(
                ["pss", "rss"].contains(&usage["mode"].as_str().unwrap()),
                "{usage}"
            );
            assert!(usage.get("cgroup").is_none(), "{usage}");
        }
    }
    if let Ok((base, _)) = &host {
        wait_until(Duration::from_secs(20), "the worker's cgroup to go", || {
            ours(base, &prefix).is_empty()
        });
    }
}
