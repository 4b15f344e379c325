//! What maestro writes fits under what it reads: large results and many tasks end a
//! session well and leave it readable; a result over its cap fails its attempt, by name.

use std::fs;

use crate::util::*;

/// A task that writes a result of `n` bytes of JSON (a string of `x`s in an object).
fn result_of(n: usize) -> String {
    format!(
        "{{ printf '{{\"blob\":\"'; head -c {} /dev/zero | tr '\\0' x; printf '\"}}'; }} > \"$MAESTRO_RESULT\"",
        n - 11
    )
}

/// Twenty results of 1 MiB each made a summary larger than the 16 MiB read cap: the run
/// exited 3 and `status` could not read the session. Results are named by path now.
#[test]
fn twenty_results_of_a_mebibyte_each_end_well_and_stay_readable() {
    let sb = Sandbox::new();
    let mut plan = String::from("name = \"big\"\nworkers = 2\n");
    for i in 0..20 {
        plan.push_str(&format!(
            "[[task]]\nid = \"t{i}\"\nrun = '''{}'''\n",
            result_of(1024 * 1024)
        ));
    }
    // Not quiet: the run ends by reading the whole session for its table.
    let o = sb.run_plan("big.toml", &plan, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let session = session_of(&o);
    let summary_bytes = fs::metadata(session.join("summary.json")).unwrap().len();
    assert!(
        summary_bytes < 4096,
        "summary.json is {summary_bytes} bytes"
    );
    let summary = read_json(&session.join("summary.json")).unwrap();
    assert_eq!(summary["state"], "succeeded");
    assert_eq!(summary["total"], 20);
    assert_eq!(summary["counts"], serde_json::json!({"succeeded": 20}));
    assert_eq!(summary["not_succeeded"], serde_json::json!([]));
    assert_eq!(summary["rows"], "summary-tasks.jsonl");
    let rows = fs::read_to_string(session.join("summary-tasks.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = rows
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 20);
    assert_eq!(rows[3]["id"], "t3");
    assert_eq!(rows[3]["result"], "tasks/t3/attempt-1/result.json");
    // The file a row names holds the result; the outcome holds it too, under the cap.
    let result = fs::metadata(session.join("tasks/t3/attempt-1/result.json")).unwrap();
    assert_eq!(result.len(), 1024 * 1024);
    let outcome = fs::metadata(session.join("tasks/t3/outcome.json")).unwrap();
    assert!(outcome.len() < 1024 * 1024 + 1024, "{}", outcome.len());
    let st = status_json(&sb, &session);
    assert_eq!(st["state"], "succeeded");
    let o = sb.run(&["status", session.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("20/20 tasks done"), "{}", stdout(&o));
    let o = sb.run(&["list"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains(" succeeded  20/20 "), "{}", stdout(&o));
}

/// Rows go to a file read as a stream; `summary.json` lists at most 100 tasks that did
/// not succeed, and says how many more there are. Its size does not grow with the plan.
#[test]
fn a_large_run_keeps_its_summary_small() {
    let sb = Sandbox::new();
    let n = 1000;
    let mut plan = String::from("name = \"many\"\nworkers = 4\n");
    for i in 0..n {
        let cmd = if i % 5 == 2 { "false" } else { "true" };
        plan.push_str(&format!("[[task]]\nid = \"t{i}\"\ncmd = [\"{cmd}\"]\n"));
    }
    // What is tested is the summary, not the watcher: with the poll watcher (the suite's
    // second run) each dispatch waits for a rescan, and a thousand tasks take minutes.
    let o = sb.run_plan("many.toml", &plan, &["-q", "--watch", "native"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let session = session_of(&o);
    let id = session_id(&session);
    assert_eq!(
        stderr(&o).lines().last().unwrap(),
        format!("session {id} failed: 800/1000 tasks succeeded")
    );
    let summary_bytes = fs::metadata(session.join("summary.json")).unwrap().len();
    // 100 listed failures of at most 2 KiB each (the unit test `row_size_is_bounded`).
    assert!(
        summary_bytes < 100 * 2048,
        "summary.json is {summary_bytes} bytes"
    );
    let summary = read_json(&session.join("summary.json")).unwrap();
    assert_eq!(summary["total"], n);
    assert_eq!(
        summary["counts"],
        serde_json::json!({"succeeded": 800, "failed": 200})
    );
    let listed = summary["not_succeeded"].as_array().unwrap();
    assert_eq!(listed.len(), 100);
    assert_eq!(summary["not_succeeded_omitted"], 100);
    assert_eq!(listed[0]["id"], "t2");
    assert_eq!(listed[0]["reason"], "exited with code 1");
    assert_eq!(listed[0]["exit_code"], 1);
    assert_eq!(listed[0]["stderr"], "tasks/t2/attempt-1/stderr.log");
    assert!(session.join("tasks/t2/attempt-1/stderr.log").is_file());
    // Every row, in plan order, read as a stream.
    let s = maestro::session::Session::open(&session).unwrap();
    let mut count = 0;
    for (i, row) in maestro::summary::rows(&s).unwrap().unwrap().enumerate() {
        let row = row.unwrap();
        assert_eq!(row.id, format!("t{i}"));
        assert_eq!(row.result, None);
        count += 1;
    }
    assert_eq!(count, n);
    let st = status_json(&sb, &session);
    assert_eq!(st["tasks"].as_array().unwrap().len(), n);
}

/// A result over the cap fails its attempt with a reason that names the file and the
/// limit; the session stays readable.
#[test]
fn a_result_over_the_cap_fails_its_attempt_by_name() {
    let sb = Sandbox::new();
    let cap = maestro::proto::RESULT_CAP as usize;
    let plan = format!(
        "name = \"over\"\nworkers = 1\n[[task]]\nid = \"a\"\nrun = '''{}'''\n",
        result_of(cap + 1)
    );
    let o = sb.run_plan("over.toml", &plan, &["-q"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let session = session_of(&o);
    let path = session.join("tasks/a/attempt-1/result.json");
    let outcome = outcome(&session, "a");
    assert_eq!(outcome["state"], "failed");
    assert_eq!(
        outcome["reason"],
        format!(
            "{}: file is too large ({} bytes; the limit is {cap})",
            path.display(),
            cap + 1
        )
    );
    let summary = read_json(&session.join("summary.json")).unwrap();
    assert_eq!(summary["not_succeeded"][0]["reason"], outcome["reason"]);
    assert_eq!(
        summary["not_succeeded"][0]["result"],
        serde_json::Value::Null
    );
}
