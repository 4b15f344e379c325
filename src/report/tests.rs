//! The report built from sessions made up in memory ([`Fake`], a [`Source`] whose
//! journal lines go through the same parser as a file's): a small session that exercises
//! every section, one that has not ended, and a 100 000-task one, timed.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Value, json};

use super::build::{Built, Ending, NoRows, RowSink, build};
use super::model::{Excerpt, TaskRow};
use super::source::Source;
use super::{markdown, time_text};
use crate::error::Result;
use crate::journal::{self, EndReason, Event};
use crate::plan::Plan;
use crate::proto::{Outcome, SessionState, TaskState, WorktreeRecord};

fn plan(text: &str) -> Plan {
    Plan::parse("p.toml", text, Path::new("/base")).unwrap()
}

/// A session in memory. Its journal lines are kept with their times and read in time
/// order (stable), so a test can write each task's story in one go.
#[derive(Default)]
struct Fake {
    lines: Vec<(u64, Vec<u8>)>,
    outcomes: HashMap<String, Outcome>,
    results: HashMap<(String, u32), std::result::Result<Value, String>>,
    logs: HashMap<(String, u32), Vec<String>>,
    worktrees: HashMap<String, WorktreeRecord>,
}

impl Source for Fake {
    fn journal(&self, f: &mut dyn FnMut(Option<u64>, Event)) -> Result<()> {
        let mut order: Vec<&(u64, Vec<u8>)> = self.lines.iter().collect();
        order.sort_by_key(|(ms, _)| *ms);
        for (_, l) in order {
            if let Some((ts, ev)) = journal::parse_stamped(l) {
                f(ts, ev);
            }
        }
        Ok(())
    }

    fn outcome(&self, task: &str) -> Result<Option<Outcome>> {
        Ok(self.outcomes.get(task).cloned())
    }

    fn result(&self, task: &str, attempt: u32) -> std::result::Result<Option<Value>, String> {
        self.results
            .get(&(task.to_string(), attempt))
            .cloned()
            .transpose()
    }

    fn result_file(&self, task: &str, attempt: u32) -> String {
        format!("tasks/{task}/attempt-{attempt}/result.json")
    }

    fn excerpt(&self, task: &str, attempt: u32) -> Result<Option<Excerpt>> {
        Ok(self
            .logs
            .get(&(task.to_string(), attempt))
            .map(|l| Excerpt {
                file: format!("tasks/{task}/attempt-{attempt}/stderr.log"),
                lines: l.clone(),
            }))
    }

    fn worktree(&self, task: &str) -> Result<Option<WorktreeRecord>> {
        Ok(self.worktrees.get(task).cloned())
    }
}

impl Fake {
    /// A journal line at `ms`, as the journal writes it (`ts` first).
    fn at(&mut self, ms: u64, ev: Event) {
        let body = serde_json::to_string(&ev).unwrap();
        let line = format!("{{\"ts\":\"{}\",{}", time_text(ms), &body[1..]);
        self.lines.push((ms, line.into_bytes()));
    }

    /// Attempt `n` of `task` on `worker`: assigned, started at `start`, ended at `end`.
    fn attempt(
        &mut self,
        task: &str,
        n: u32,
        worker: &str,
        (start, end): (u64, u64),
        how: EndReason,
    ) {
        let task = task.to_string();
        self.at(
            start.saturating_sub(1),
            Event::TaskAssigned {
                task: task.clone(),
                attempt: n,
                worker: worker.into(),
                seq: 0,
            },
        );
        self.at(
            start,
            Event::TaskStarted {
                task: task.clone(),
                attempt: n,
                worker: worker.into(),
                pid: Some(1),
                proc_start: None,
                boot_id: None,
            },
        );
        self.at(
            end,
            Event::AttemptEnded {
                task,
                attempt: n,
                worker: Some(worker.into()),
                reason: how,
            },
        );
    }

    /// Attempt `n` failed with `reason`; another follows.
    fn retried(&mut self, task: &str, n: u32, at: u64, reason: &str) {
        self.at(
            at,
            Event::RetryScheduled {
                task: task.into(),
                failed_attempt: n,
                retry: n,
                retries: 3,
                delay_ms: 0,
                not_before_unix_ms: 0,
                reason: reason.into(),
            },
        );
    }

    /// `task` decided at `at` by attempt `n`, with `exit` and `result`.
    fn decide(&mut self, task: &str, n: u32, at: u64, exit: i32, result: Option<Value>) {
        let state = if exit == 0 {
            TaskState::Succeeded
        } else {
            TaskState::Failed
        };
        let reason = (exit != 0).then(|| format!("exited with code {exit}"));
        self.at(
            at,
            Event::TaskFinished {
                task: task.into(),
                attempt: n,
                worker: Some("w1".into()),
                state,
                exit_code: Some(exit),
                reason: reason.clone(),
            },
        );
        self.outcomes.insert(
            task.into(),
            Outcome {
                task: task.into(),
                state,
                attempt: n,
                worker: Some("w1".into()),
                exit_code: Some(exit),
                signal: None,
                started_at: None,
                ended_at: None,
                duration_ms: Some(5),
                reason,
                result,
                decided_at: time_text(at),
            },
        );
    }
}

/// The rows as they are written.
#[derive(Default)]
struct Collect(Vec<TaskRow>);

impl RowSink for Collect {
    fn row(&mut self, row: &TaskRow) -> Result<()> {
        self.0.push(row.clone());
        Ok(())
    }
}

const PLAN: &str = "name = \"p\"\n[resources]\ndb = { max = 4 }\n\
    [[task]]\nid = \"a\"\ncmd = [\"true\"]\nresources = { db = 1 }\n\
    [[task]]\nid = \"b\"\ncmd = [\"true\"]\nresources = { db = 2 }\n\
    [[task]]\nid = \"c\"\ncmd = [\"true\"]\nafter = [\"a\", \"b\"]\n\
    [[task]]\nid = \"d\"\ncmd = [\"true\"]\nafter = [\"c\"]\n\
    [[task]]\nid = \"e\"\ncmd = [\"true\"]\nafter = [\"d\"]\n";

/// a and b, then c, then d (lost once, then fails), then e (skipped). b fails its
/// first attempt after reporting metrics.
fn small() -> Fake {
    let mut f = Fake::default();
    let r = |extra: Value| {
        let mut v = json!({"metrics": {"rows": 10, "cost_usd": 0.25}});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    f.at(
        0,
        Event::SessionStarted {
            session: "s".into(),
            tasks: 5,
            workers: 2,
            launcher: "background".into(),
            protocol: 2,
        },
    );
    f.at(
        1,
        Event::WorkerSpawned {
            worker: "w1".into(),
            launcher: "background".into(),
            terminal: None,
        },
    );
    f.attempt("a", 1, "w1", (1000, 2000), EndReason::Exited);
    f.attempt("b", 1, "w2", (1000, 1500), EndReason::Failed);
    f.results.insert(("b".into(), 1), Ok(r(json!({}))));
    f.retried("b", 1, 1501, "exited with code 3");
    f.decide(
        "a",
        1,
        2001,
        0,
        Some(r(json!({"insights": ["x"], "decisions": {"db": "pg"}}))),
    );
    f.attempt("b", 2, "w2", (1600, 3000), EndReason::Exited);
    f.decide(
        "b",
        2,
        3001,
        0,
        Some(r(
            json!({"insights": ["x", "y"], "decisions": {"db": "mysql"}}),
        )),
    );
    f.attempt("c", 1, "w1", (3100, 4000), EndReason::Exited);
    f.decide("c", 1, 4001, 0, Some(r(json!({"decisions": {"db": "pg"}}))));
    f.attempt("d", 1, "w1", (4100, 4500), EndReason::WorkerLost);
    f.attempt("d", 2, "w2", (4600, 5000), EndReason::Failed);
    f.results.insert(
        ("d".into(), 1),
        Err("tasks/d/attempt-1/result.json: invalid JSON".into()),
    );
    f.logs.insert(
        ("d".into(), 2),
        vec!["Traceback".into(), "ValueError: bad".into()],
    );
    f.decide("d", 2, 5001, 2, None);
    f.at(
        5002,
        Event::TaskSkipped {
            task: "e".into(),
            reason: "d failed".into(),
        },
    );
    f.outcomes.insert(
        "e".into(),
        Outcome {
            task: "e".into(),
            state: TaskState::Skipped,
            attempt: 0,
            worker: None,
            exit_code: None,
            signal: None,
            started_at: None,
            ended_at: None,
            duration_ms: None,
            reason: Some("d failed".into()),
            result: None,
            decided_at: time_text(5002),
        },
    );
    f
}

fn final_report(f: &Fake, p: &Plan, rows: &mut dyn RowSink) -> Built {
    let ending = Ending::Final {
        state: SessionState::Failed,
        ended_ms: 6000,
    };
    build(p, "s", f, ending, rows, Some("report-tasks.jsonl".into())).unwrap()
}

#[test]
fn a_small_session_reports_every_section() {
    let p = plan(PLAN);
    let f = small();
    let mut rows = Collect::default();
    let b = final_report(&f, &p, &mut rows);
    let r = &b.report;
    assert!(r.finished && r.note.is_none());
    assert_eq!(r.state, SessionState::Failed);
    assert_eq!(r.duration_ms, Some(6000));
    // Totals.
    let t = &r.totals;
    assert_eq!(
        (t.tasks, t.attempts, t.retries, t.reassignments),
        (5, 6, 2, 1)
    );
    assert_eq!((t.workers, t.workers_started), (2, 1));
    assert_eq!(
        crate::report::states_line(&t.by_state),
        "3 succeeded, 1 failed, 1 skipped"
    );
    // Metrics: b's failed attempt counts only as spent.
    assert_eq!(
        serde_json::to_string(&r.metrics).unwrap(),
        r#"{"cost_usd":0.75,"rows":30}"#
    );
    assert_eq!(
        serde_json::to_string(&r.metrics_spent).unwrap(),
        r#"{"cost_usd":1,"rows":40}"#
    );
    let insights: Vec<(&str, &[String])> = r
        .insights
        .iter()
        .map(|i| (i.insight.as_str(), i.tasks.as_slice()))
        .collect();
    assert_eq!(
        insights,
        vec![
            ("x", &["a".to_string(), "b".to_string()][..]),
            ("y", &["b".to_string()][..])
        ]
    );
    assert_eq!(r.decision_conflicts.len(), 1);
    assert_eq!(r.decision_conflicts[0].key, "db");
    assert_eq!(
        r.problems,
        vec!["tasks/d/attempt-1/result.json: invalid JSON".to_string()],
        "a malformed result is reported, never fatal"
    );
    // Waves: a, b | c | d | e.
    let waves: Vec<(usize, Option<u64>)> = r.waves.iter().map(|w| (w.tasks, w.wall_ms)).collect();
    assert_eq!(
        waves,
        vec![(2, Some(2001)), (1, Some(901)), (1, Some(901)), (1, None)]
    );
    // The path: b held c back (it ended after a), c held d back.
    let steps: Vec<(&str, u64, u64)> = r
        .critical_path
        .steps
        .iter()
        .map(|s| (s.task.as_str(), s.duration_ms, s.waited_ms))
        .collect();
    assert_eq!(
        steps,
        vec![("b", 2001, 1000), ("c", 901, 99), ("d", 901, 99)]
    );
    assert_eq!(r.critical_path.duration_ms, Some(4001));
    // The pool: a and b held 3 of 4 at once.
    assert_eq!((r.resources[0].peak, r.resources[0].max), (3, 4));
    assert_eq!(r.resources[0].peak_at.as_deref(), Some(&*time_text(999)));
    // Rows: every task, in plan order; the failed one has its output and its tries.
    let ids: Vec<&str> = rows.0.iter().map(|r| r.task.id.as_str()).collect();
    assert_eq!(ids, vec!["a", "b", "c", "d", "e"]);
    let d = &rows.0[3];
    assert_eq!(
        (d.task.exit_code, d.task.attempt, d.task.attempts, d.wave),
        (Some(2), 2, 2, 3)
    );
    assert_eq!(
        d.excerpt.as_ref().unwrap().lines,
        vec!["Traceback", "ValueError: bad"]
    );
    let how: Vec<Option<EndReason>> = d.tries.iter().map(|t| t.ended).collect();
    assert_eq!(
        how,
        vec![Some(EndReason::WorkerLost), Some(EndReason::Failed)]
    );
    let b_row = &rows.0[1];
    assert_eq!(b_row.tries[0].reason.as_deref(), Some("exited with code 3"));
    assert_eq!(b_row.tries[0].duration_ms, Some(500));
    assert_eq!(
        b_row.task.result.as_deref(),
        Some("tasks/b/attempt-2/result.json")
    );
    let listed: Vec<&str> = r.not_succeeded.iter().map(|r| r.task.id.as_str()).collect();
    assert_eq!(listed, vec!["d", "e"]);
    assert_eq!(b.table.as_ref().unwrap(), &rows.0);
    // The markdown has each section.
    let md = markdown::render(&b);
    for want in [
        "# Report of session s",
        "- state: **failed**",
        "### d (failed, attempt 2 of 2, exit code 2)",
        "exited with code 2",
        "last lines of `tasks/d/attempt-2/stderr.log`:",
        "ValueError: bad",
        "| d | failed | 3 | 2 | w1 | 2 | 5ms | exited with code 2; attempts: 1 worker_lost, 2 failed |",
        "b (2.0s) -> c (901ms) -> d (901ms)",
        "| db | 3 | 4 |",
        "| cost_usd | 0.75 | 1 |",
        "- x (a, b)",
        "- **conflict** on `db`: a = `\"pg\"`, c = `\"pg\"`, b = `\"mysql\"`",
        "tasks/d/attempt-1/result.json: invalid JSON",
    ] {
        assert!(md.contains(want), "{want:?} missing from:\n{md}");
    }
    // And the end of `run` says what failed, with its output, and the sums.
    let brief = crate::report::brief(r, Path::new("/s/report.md"));
    for want in [
        "FAILED d (attempt 2 of 2): exited with code 2",
        "  | ValueError: bad",
        "skipped 1: e",
        "metrics: cost_usd 0.75, rows 30",
        "report: /s/report.md",
    ] {
        assert!(brief.contains(want), "{want:?} missing from:\n{brief}");
    }
}

#[test]
fn a_session_that_has_not_ended_is_reported_as_it_stands_and_says_so() {
    let p = plan(PLAN);
    let mut f = small();
    // d is running again instead of failed; e pending.
    f.lines.truncate(f.lines.len() - 5);
    f.outcomes.remove("d");
    f.outcomes.remove("e");
    f.at(
        4599,
        Event::TaskAssigned {
            task: "d".into(),
            attempt: 2,
            worker: "w2".into(),
            seq: 0,
        },
    );
    f.at(
        4600,
        Event::TaskStarted {
            task: "d".into(),
            attempt: 2,
            worker: "w2".into(),
            pid: None,
            proc_start: None,
            boot_id: None,
        },
    );
    let ending = Ending::Observed {
        orchestrator_alive: false,
        summary: None,
        now_ms: 7000,
    };
    let b = build(&p, "s", &f, ending, &mut NoRows, None).unwrap();
    let r = &b.report;
    assert!(!r.finished);
    assert_eq!(r.state, SessionState::Interrupted);
    assert!(
        r.note.as_ref().unwrap().starts_with("NOT FINISHED"),
        "{:?}",
        r.note
    );
    assert!(r.note.as_ref().unwrap().contains("`orchestrator resume s`"));
    assert_eq!((r.ended_at.clone(), r.duration_ms), (None, Some(7000)));
    assert_eq!(r.computed_at.as_deref(), Some(&*time_text(7000)));
    let states = crate::report::states_line(&r.totals.by_state);
    assert_eq!(states, "1 pending, 1 running, 3 succeeded");
    assert_eq!(r.rows, None);
    let md = markdown::render(&b);
    assert!(
        md.contains("> **NOT FINISHED: the session is interrupted"),
        "{md}"
    );
    assert!(md.contains("| d | running |"), "{md}");
    // A live orchestrator: the session runs.
    let live = Ending::Observed {
        orchestrator_alive: true,
        summary: None,
        now_ms: 7000,
    };
    let r = build(&p, "s", &f, live, &mut NoRows, None).unwrap().report;
    assert_eq!(r.state, SessionState::Running);
    assert!(r.note.unwrap().contains("still runs it"));
}

#[test]
fn without_a_readable_summary_the_journal_says_the_session_ended() {
    let p = plan(PLAN);
    let mut f = small();
    f.at(
        5500,
        Event::SessionFinished {
            session: "s".into(),
            state: SessionState::Failed,
            duration_ms: 5500,
        },
    );
    let dead = Ending::Observed {
        orchestrator_alive: false,
        summary: None,
        now_ms: 9000,
    };
    let r = build(&p, "s", &f, dead, &mut NoRows, None).unwrap().report;
    assert!(r.finished && r.note.is_none(), "{:?}", r.note);
    assert_eq!((r.state, r.duration_ms), (SessionState::Failed, Some(5500)));
}

/// Builds the report of a made-up 100 000-task session (100 waves of 1 000 tasks, each
/// after one of the wave before; one task in a hundred failing its first attempt, one
/// in a thousand failing for good) through the same parser, fold and row writer as a
/// real one (the rows go to a file). Nothing is asserted of the time; it is printed:
/// `cargo test --release --lib report::tests::a_100000 -- --nocapture`.
#[test]
fn a_100000_task_session_is_reported_in_one_pass() {
    const N: usize = 100_000;
    const WIDTH: usize = 1000;
    let mut p = plan("name = \"big\"\n[[task]]\nid = \"t\"\ncmd = [\"true\"]\n");
    let template = p.tasks.pop().unwrap();
    for i in 0..N {
        let mut t = template.clone();
        t.id = format!("t{i}");
        if i >= WIDTH {
            t.after = vec![format!("t{}", i - WIDTH)];
        }
        p.tasks.push(t);
    }
    let mut f = Fake::default();
    f.lines.reserve(4 * N + 10);
    let result = json!({"metrics": {"rows": 1, "cost_usd": 0.01}});
    for i in 0..N {
        let id = format!("t{i}");
        let wave = (i / WIDTH) as u64;
        let start = 1000 + wave * 100 + (i % 7) as u64;
        let mut n = 1;
        if i % 100 == 7 {
            f.attempt(&id, 1, "w1", (start, start + 10), EndReason::Failed);
            f.results.insert((id.clone(), 1), Ok(result.clone()));
            f.retried(&id, 1, start + 11, "exited with code 1");
            n = 2;
        }
        let exit = if i % 1000 == 999 { 1 } else { 0 };
        let end = start + 50;
        f.attempt(&id, n, "w2", (start + 20, end), EndReason::Exited);
        f.decide(&id, n, end + 1, exit, Some(result.clone()));
        if exit != 0 {
            f.logs.insert((id, n), vec!["boom".into()]);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let session = crate::session::Session::create(dir.path(), "big").unwrap();
    let mut rows = crate::fsio::Fs::FAST
        .atomic_writer(&session.report_rows())
        .unwrap();
    let started = std::time::Instant::now();
    let b = final_report(&f, &p, &mut rows);
    rows.commit().unwrap();
    let md = markdown::render(&b);
    let json = serde_json::to_vec_pretty(&b.report).unwrap();
    let took = started.elapsed();
    eprintln!(
        "report of a {N}-task session ({} journal lines): {took:?}; report.json {} bytes, \
         report.md {} bytes",
        f.lines.len(),
        json.len(),
        md.len()
    );
    let r = &b.report;
    assert_eq!(r.totals.tasks, N);
    assert_eq!(r.totals.retries, (N / 100) as u64);
    assert_eq!(r.totals.by_state[&TaskState::Failed], N / 1000);
    assert_eq!(r.metrics["rows"], json!(N - N / 1000));
    assert_eq!(r.metrics_spent["cost_usd"], json!(1010));
    assert_eq!(r.waves.len(), 100);
    assert_eq!(r.critical_path.length, 100);
    assert_eq!(r.not_succeeded.len(), 100);
    assert!(b.table.is_none());
    assert!(json.len() < 1024 * 1024, "bounded: {} bytes", json.len());
    assert!(md.contains("a row for each is in `report-tasks.jsonl`"));
    let written = std::fs::read_to_string(session.report_rows()).unwrap();
    assert_eq!(written.lines().count(), N);
}

/// The largest report the caps allow: every list at its cap, every text at its longest
/// (ids and worker ids of 64 bytes, long reasons, logs, insights, decision values and
/// file names, results with as many metric keys as are summed). `report.json` must still
/// be readable (under the 16 MiB every session JSON file is read with), and a row far
/// under it.
#[test]
fn the_largest_report_fits_under_the_read_cap() {
    use super::aggregate::*;
    use super::build::{PATH_MAX, WAVES_MAX};
    let id = |kind: char, i: usize| format!("{kind}{i:0>63}");
    let mut p = plan("name = \"big\"\n[[task]]\nid = \"t\"\ncmd = [\"true\"]\n");
    let template = p.tasks.pop().unwrap();
    let mut add = |tid: String, after: Vec<String>, worktree: bool| {
        let mut t = template.clone();
        t.id = tid;
        t.after = after;
        t.worktree = worktree;
        p.tasks.push(t);
    };
    let chain = WAVES_MAX.max(PATH_MAX) + 10;
    for i in 0..chain {
        add(
            id('c', i),
            (i > 0).then(|| id('c', i - 1)).into_iter().collect(),
            false,
        );
    }
    for i in 0..150 {
        add(id('f', i), vec![], true);
    }
    for i in 0..25 {
        add(id('r', i), vec![], false);
    }
    let mut f = Fake::default();
    let worker = "w".repeat(64);
    let mut now = 1000;
    let long = |c: char, n: usize| c.to_string().repeat(n);
    for i in 0..150 {
        let t = id('f', i);
        for n in 1..=TRIES_MAX_TEST {
            f.attempt(&t, n, &worker, (now, now + 1), EndReason::Failed);
            f.retried(&t, n, now + 2, &long('r', 4000));
            f.results.insert((t.clone(), n), Err(long('e', 4000)));
            now += 3;
        }
        let last = TRIES_MAX_TEST + 1;
        f.attempt(&t, last, &worker, (now, now + 1), EndReason::Failed);
        f.decide(&t, last, now + 2, 1, None);
        f.outcomes.get_mut(&t).unwrap().reason = Some(long('x', 5000));
        f.outcomes.get_mut(&t).unwrap().worker = Some(worker.clone());
        f.logs.insert((t.clone(), last), vec![long('l', 2000); 10]);
        f.worktrees.insert(
            t.clone(),
            WorktreeRecord {
                task: t.clone(),
                repo: "/r".into(),
                branch: long('b', 200),
                base: "0".repeat(40),
                path: "/w".into(),
                cwd: "/w".into(),
                changed: vec![long('p', 4000); 200],
                outside_owns: vec![long('o', 4000); 200],
                omitted: 7,
                updated_at: "t".into(),
            },
        );
        now += 3;
    }
    for i in 0..25 {
        let mut metrics = serde_json::Map::new();
        for k in 0..METRIC_KEYS_MAX + 10 {
            metrics.insert(format!("{k:0>256}"), json!(0.1));
        }
        for k in 0..IGNORED_MAX {
            metrics.insert(format!("bad{k}"), json!(long('v', 1000)));
        }
        let insights: Vec<String> = (0..INSIGHTS_MAX + 10)
            .map(|k| format!("{k}-{}", long('i', 1100)))
            .collect();
        let decisions: serde_json::Map<String, Value> = (0..DECISION_KEYS_MAX + 10)
            .map(|k| (format!("{k:0>256}"), json!(format!("{i:0>2000}"))))
            .collect();
        let result = json!({"metrics": metrics, "insights": insights, "decisions": decisions});
        let t = id('r', i);
        f.attempt(&t, 1, &worker, (now, now + 1), EndReason::Exited);
        f.decide(&t, 1, now + 2, 0, Some(result));
        now += 3;
    }
    // The chain ends last: it is the critical path.
    for i in 0..chain {
        f.attempt(&id('c', i), 1, &worker, (now, now + 5), EndReason::Exited);
        f.decide(&id('c', i), 1, now + 6, 0, None);
        now += 10;
    }
    let mut rows = Collect::default();
    let b = final_report(&f, &p, &mut rows);
    let r = &b.report;
    assert_eq!(r.not_succeeded.len(), crate::proto::NOT_SUCCEEDED_MAX);
    assert_eq!(
        (r.waves.len(), r.critical_path.steps.len()),
        (WAVES_MAX, PATH_MAX)
    );
    assert_eq!(r.insights.len(), INSIGHTS_MAX);
    assert_eq!(r.decision_conflicts.len(), DECISION_KEYS_MAX);
    assert_eq!(r.decision_conflicts[0].values.len(), CONFLICT_LISTED);
    assert_eq!(r.metrics.len(), METRIC_KEYS_MAX);
    assert_eq!(r.ignored.len(), IGNORED_MAX);
    assert_eq!(r.problems.len(), super::build::PROBLEMS_MAX);
    let row = &r.not_succeeded[0];
    assert_eq!(row.tries.len(), super::build::TRIES_MAX);
    assert!(row.worktree.as_ref().unwrap().changed.len() <= 1);
    let json = serde_json::to_vec_pretty(r).unwrap();
    eprintln!("the largest report.json: {} bytes", json.len());
    assert!(
        (json.len() as u64) < crate::fsio::JSON_CAP,
        "{} bytes",
        json.len()
    );
    let widest = rows
        .0
        .iter()
        .map(|r| serde_json::to_vec(r).unwrap().len())
        .max()
        .unwrap();
    eprintln!("the widest row: {widest} bytes");
    assert!(widest < 64 * 1024, "{widest} bytes");
    assert!(markdown::render(&b).len() < 32 * 1024 * 1024);
}

/// More failed attempts than a row lists.
const TRIES_MAX_TEST: u32 = super::build::TRIES_MAX as u32 + 5;
