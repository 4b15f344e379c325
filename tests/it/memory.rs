//! Memory with real processes: tasks' `memory` claims never exceed the `[limits] memory`
//! budget while they really overlap (counted by the tasks themselves), and new starts
//! wait while the machine's available memory is below `min_free_memory` (read from a
//! meminfo file the test controls through `MAESTRO_MEMINFO`).

use std::fs;
use std::time::Duration;

use crate::util::*;

fn counted(id: &str) -> String {
    format!(
        r#"[[task]]
id = "{id}"
memory = "1GiB"
run = '''
flock "$OUT/lock" sh -c 'n=$(( $(cat "$OUT/count") + 1 )); echo $n > "$OUT/count"; echo $n >> "$OUT/seen"'
sleep 0.4
flock "$OUT/lock" sh -c 'echo $(( $(cat "$OUT/count") - 1 )) > "$OUT/count"'
'''
"#
    )
}

#[test]
fn memory_claims_never_exceed_the_budget_while_tasks_really_overlap() {
    let sb = Sandbox::new();
    fs::write(sb.out().join("count"), "0\n").unwrap();
    let mut plan = String::from("name = \"mem\"\nworkers = 4\n[limits]\nmemory = \"2GiB\"\n");
    for i in 0..6 {
        plan += &counted(&format!("t{i}"));
    }
    sb.run_ok("mem.toml", &plan);
    let seen: Vec<u64> = fs::read_to_string(sb.out().join("seen"))
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(seen.len(), 6, "{seen:?}");
    assert_eq!(
        *seen.iter().max().unwrap(),
        2,
        "two 1GiB tasks at once, never three: {seen:?}"
    );
}

#[test]
fn new_starts_wait_while_free_memory_is_low() {
    let mut sb = Sandbox::new();
    let meminfo = sb.write("meminfo", "MemTotal: 8388608 kB\nMemAvailable: 1024 kB\n");
    let plan = "name = \"low\"\nworkers = 1\n[limits]\nmin_free_memory = \"1GiB\"\n\
                [[task]]\nid = \"a\"\nrun = 'echo a > \"$OUT/a\"'\n";
    let p = sb.write("low.toml", plan);
    let session = sb.start_with(
        &["run", p.to_str().unwrap(), "--launcher", "background", "-q"],
        &[("MAESTRO_MEMINFO", meminfo.to_str().unwrap())],
    );
    wait_until(Duration::from_secs(30), "starts to be held", || {
        status_json(&sb, &session)["held"]["needed"] == 1u64 << 30
    });
    let o = sb.run(&["status", session.to_str().unwrap()]);
    assert!(
        stdout(&o)
            .contains("\nnew starts held: available memory 1MiB is below min_free_memory 1GiB\n"),
        "{}",
        stdout(&o)
    );
    assert!(
        !sb.out().join("a").exists(),
        "a started with too little memory"
    );
    fs::write(&meminfo, "MemTotal: 8388608 kB\nMemAvailable: 4194304 kB\n").unwrap();
    assert_eq!(sb.wait_last(Duration::from_secs(60)), 0);
    assert_eq!(fs::read_to_string(sb.out().join("a")).unwrap(), "a\n");
    assert!(status_json(&sb, &session).get("held").is_none());
}

/// A task whose process group goes over its `memory` is stopped by its worker, and the
/// attempt fails with the reason; what a running attempt uses is in `usage.json`. Without
/// cgroups, whatever the run sets: this is the PSS path (tests/it/cgroup.rs has the
/// others).
#[test]
fn an_attempt_over_its_memory_is_stopped_and_usage_is_recorded() {
    let sb = Sandbox::new();
    let plan = "name = \"hog\"\nworkers = 1\n\
        [[task]]\nid = \"hog\"\nmemory = \"64MiB\"\n\
        cmd = [\"python3\", \"-c\", \"import time; a = bytearray(256 << 20); time.sleep(30)\"]\n";
    let p = sb.write("hog.toml", plan);
    let mut c = sb.orch();
    c.args(["run", p.to_str().unwrap(), "--launcher", "background", "-q"])
        .env("MAESTRO_CGROUP", "off");
    let o = run_with_deadline(c, Duration::from_secs(120));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let session = session_of(&o);
    let out = outcome(&session, "hog");
    assert_eq!(out["state"], "failed");
    assert_eq!(out["reason"], "stopped: memory limit");
    let usage = read_json(&session.join("workers/w1/usage.json")).unwrap();
    assert_eq!(usage["task"], "hog");
    assert_eq!(usage["mode"], "pss");
    assert!(usage.get("cgroup").is_none(), "{usage}");
    assert!(
        usage["memory_bytes"].as_u64().unwrap() > 64 << 20,
        "{usage}"
    );
}
