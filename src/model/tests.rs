//! The model's tests: a model refreshed as the session grows, at any points (even in the
//! middle of a journal line), ends where one full read of the same directory does.

use std::io::Write as _;
use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::fsio;
use crate::journal::{EndReason, Event};
use crate::proto::{Outcome, RetryPlan};

const PLAN: &str = r#"
name = "m"
workers = 2
[resources.db]
max = 4
warn = 2
[[task]]
id = "a"
run = "true"
resources = { db = 2 }
[[task]]
id = "b"
run = "true"
[[task]]
id = "c"
run = "true"
after = ["a"]
[[task]]
id = "d"
run = "true"
after = ["b", "c"]
[[gate]]
id = "g"
after = ["a"]
approve = true
"#;

const TASKS: [&str; 4] = ["a", "b", "c", "d"];

/// What happens next in the simulated session (a task by index into [`TASKS`]).
#[derive(Debug, Clone)]
enum Op {
    Assign(usize),
    Start(usize),
    End(usize, u8),
    Finish(usize, u8),
    Retry(usize),
    Cancel(usize),
    Agent(usize, u8),
    Gate(u8),
    Held(bool),
    Freeze,
    Cleanup(usize, bool),
    /// A complete line that is not an event (torn, then written after).
    Garbage,
}

fn op() -> impl Strategy<Value = Op> {
    let t = 0..TASKS.len();
    prop_oneof![
        4 => t.clone().prop_map(Op::Assign),
        3 => t.clone().prop_map(Op::Start),
        2 => (t.clone(), 0u8..4).prop_map(|(t, r)| Op::End(t, r)),
        3 => (t.clone(), 0u8..3).prop_map(|(t, s)| Op::Finish(t, s)),
        1 => t.clone().prop_map(Op::Retry),
        1 => t.clone().prop_map(Op::Cancel),
        1 => (t.clone(), 0u8..3).prop_map(|(t, s)| Op::Agent(t, s)),
        1 => (0u8..3).prop_map(Op::Gate),
        1 => any::<bool>().prop_map(Op::Held),
        1 => Just(Op::Freeze),
        1 => (t, any::<bool>()).prop_map(|(t, e)| Op::Cleanup(t, e)),
        1 => Just(Op::Garbage),
    ]
}

/// A step of the session: files written (before its line, as the protocol orders them),
/// then its journal line.
struct Step {
    files: Vec<(std::path::PathBuf, Option<Vec<u8>>)>,
    line: Vec<u8>,
}

fn line(ev: &Event) -> Vec<u8> {
    let l = crate::journal::line_at(ev, "2026-01-01T00:00:00.000Z").unwrap();
    format!("{l}\n").into_bytes()
}

fn outcome(task: &str, state: TaskState, attempt: u32) -> Vec<u8> {
    serde_json::to_vec(&Outcome {
        task: task.into(),
        state,
        attempt,
        worker: Some("w1".into()),
        exit_code: Some(i32::from(state != TaskState::Succeeded)),
        signal: None,
        started_at: Some("2026-01-01T00:00:00.000Z".into()),
        ended_at: Some("2026-01-01T00:00:01.000Z".into()),
        duration_ms: Some(1000),
        reason: None,
        result: None,
        decided_at: "2026-01-01T00:00:01.000Z".into(),
    })
    .unwrap()
}

/// The session's steps for `ops`, skipping what makes no sense (acting on a decided task).
fn steps(s: &Session, ops: &[Op]) -> Vec<Step> {
    let mut out = vec![Step {
        files: Vec::new(),
        line: line(&Event::TasksAdded {
            tasks: TASKS.iter().map(|t| t.to_string()).collect(),
        }),
    }];
    let mut attempt = [0u32; TASKS.len()];
    let mut decided = [false; TASKS.len()];
    for op in ops {
        let mut files = Vec::new();
        let ev = match *op {
            Op::Assign(t)
            | Op::Start(t)
            | Op::End(t, _)
            | Op::Finish(t, _)
            | Op::Retry(t)
            | Op::Cancel(t)
                if decided[t] =>
            {
                continue;
            }
            Op::Assign(t) => {
                attempt[t] += 1;
                let id = TASKS[t];
                files.push((s.retry_json(id), None));
                files.push((
                    s.attempt_dir(id, attempt[t]).join(".keep"),
                    Some(Vec::new()),
                ));
                Event::TaskAssigned {
                    task: id.into(),
                    attempt: attempt[t],
                    worker: "w1".into(),
                    seq: 1,
                }
            }
            Op::Start(t) => Event::TaskStarted {
                task: TASKS[t].into(),
                attempt: attempt[t],
                worker: "w1".into(),
                pid: Some(1),
                proc_start: None,
                boot_id: None,
            },
            Op::End(t, r) => Event::AttemptEnded {
                task: TASKS[t].into(),
                attempt: attempt[t],
                worker: Some("w1".into()),
                reason: [
                    EndReason::WorkerLost,
                    EndReason::Reassigned,
                    EndReason::Failed,
                    EndReason::Stale,
                ][r as usize],
            },
            Op::Finish(t, st) => {
                let state = [TaskState::Succeeded, TaskState::Failed, TaskState::Lost][st as usize];
                decided[t] = true;
                files.push((
                    s.outcome_json(TASKS[t]),
                    Some(outcome(TASKS[t], state, attempt[t])),
                ));
                Event::TaskFinished {
                    task: TASKS[t].into(),
                    attempt: attempt[t],
                    worker: Some("w1".into()),
                    state,
                    exit_code: Some(0),
                    reason: None,
                }
            }
            Op::Retry(t) => {
                let plan = RetryPlan {
                    failed_attempt: attempt[t],
                    next_attempt: attempt[t] + 1,
                    not_before_unix_ms: 0,
                    reason: "exit 1".into(),
                };
                files.push((
                    s.retry_json(TASKS[t]),
                    Some(serde_json::to_vec(&plan).unwrap()),
                ));
                Event::RetryScheduled {
                    task: TASKS[t].into(),
                    failed_attempt: attempt[t],
                    retry: 1,
                    retries: 3,
                    delay_ms: 0,
                    not_before_unix_ms: 0,
                    reason: "exit 1".into(),
                }
            }
            Op::Cancel(t) => {
                decided[t] = true;
                let o = outcome(TASKS[t], TaskState::Cancelled, attempt[t]);
                files.push((s.outcome_json(TASKS[t]), Some(o)));
                Event::TaskCancelled {
                    task: TASKS[t].into(),
                    reason: "cancelled".into(),
                }
            }
            Op::Agent(t, st) => Event::AgentState {
                task: TASKS[t].into(),
                attempt: attempt[t],
                state: [
                    crate::agent::AgentState::Working,
                    crate::agent::AgentState::Waiting,
                    crate::agent::AgentState::Idle,
                ][st as usize],
                message: Some("question?".into()),
                at: "2026-01-01T00:00:00.000Z".into(),
            },
            Op::Gate(0) => Event::GateWaiting { gate: "g".into() },
            Op::Gate(1) => Event::GateApproved { gate: "g".into() },
            Op::Gate(_) => Event::GateRejected {
                gate: "g".into(),
                reason: "no".into(),
            },
            Op::Held(true) => Event::StartsHeld {
                available: 1,
                needed: 2,
            },
            Op::Held(false) => Event::StartsResumed { available: 3 },
            Op::Freeze => Event::SessionFrozen {
                why: "x".into(),
                emergency: false,
            },
            Op::Cleanup(t, false) => Event::CleanupStarted(crate::journal::event::AuxStart {
                of: TASKS[t].into(),
                attempt: attempt[t],
                worker: "w9".into(),
                seq: 2,
            }),
            Op::Cleanup(t, true) => Event::CleanupEnded(crate::journal::event::AuxEnd {
                of: TASKS[t].into(),
                attempt: attempt[t],
                worker: Some("w9".into()),
                state: crate::proto::AuxState::Failed,
                exit_code: Some(1),
                reason: Some("exit 1".into()),
            }),
            Op::Garbage => {
                out.push(Step {
                    files,
                    line: b"{\"ts\":\"x\",\"event\":\"task_fin\n".to_vec(),
                });
                continue;
            }
        };
        out.push(Step {
            files,
            line: line(&ev),
        });
    }
    out
}

fn apply_files(files: &[(std::path::PathBuf, Option<Vec<u8>>)]) {
    for (path, content) in files {
        match content {
            Some(bytes) => {
                fsio::create_dir_private(path.parent().unwrap()).unwrap();
                std::fs::write(path, bytes).unwrap();
            }
            None => {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// A session of [`PLAN`] with a registered, gone worker and no journal yet.
fn session(root: &Path) -> Session {
    let s = Session::create(root, "m").unwrap();
    let plan = crate::plan::Plan::parse("m.toml", PLAN, root).unwrap();
    fsio::write_json(&s.plan_json(), &plan).unwrap();
    fsio::create_dir_private(&s.worker_dir("w1")).unwrap();
    std::fs::write(
        s.worker_json("w1"),
        r#"{"id":"w1","pid":7,"host":"h","launcher":"background","terminal":null,"started_at":"x"}"#,
    )
    .unwrap();
    std::fs::write(
        s.worker_events("w1"),
        "{\"ts\":\"x\",\"event\":\"ready\",\"pid\":7}\n",
    )
    .unwrap();
    s
}

fn json(snap: &Snapshot) -> serde_json::Value {
    crate::status::to_json(snap)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// For any session and any points at which a live model refreshes (even mid-line),
    /// the model ends as one full read of the finished directory, and its counts match
    /// its views.
    #[test]
    fn an_incremental_refresh_ends_where_a_full_read_does(
        ops in prop::collection::vec(op(), 0..40),
        cuts in prop::collection::vec(0.0f64..1.0, 0..8),
        alive in any::<bool>(),
    ) {
        let d = tempfile::tempdir().unwrap();
        let s = session(d.path());
        // An orchestrator's lock held: the live model then defers tasks never assigned.
        let _orchestrator = alive.then(|| {
            fsio::create_dir_private(s.orchestrator_lock().parent().unwrap()).unwrap();
            let f = fsio::open_lock_file(&s.orchestrator_lock()).unwrap();
            fs2::FileExt::lock_exclusive(&f).unwrap();
            f
        });
        let steps = steps(&s, &ops);
        let total: usize = steps.iter().map(|st| st.line.len()).sum();
        let mut cuts: Vec<usize> = cuts.iter().map(|f| (f * total as f64) as usize).collect();
        cuts.push(total);
        cuts.sort_unstable();
        let mut live = SessionModel::live(s.clone());
        let mut journal = fsio::open_append(&s.events()).unwrap();
        // Bytes of the journal written so far, and the step whose line comes next.
        let (mut written, mut next, mut start) = (0usize, 0usize, 0usize);
        for cut in cuts {
            // Every step whose line begins before the cut: its files first.
            while next < steps.len() && start < cut.max(1) {
                apply_files(&steps[next].files);
                start += steps[next].line.len();
                next += 1;
            }
            let all: Vec<u8> = steps.iter().flat_map(|st| st.line.clone()).collect();
            journal.write_all(&all[written..cut]).unwrap();
            written = cut;
            live.refresh();
        }
        prop_assert_eq!(live.journal_offset(), total as u64);
        let full = crate::status::snapshot(&s);
        prop_assert_eq!(json(&live.snapshot()), json(&full));
        prop_assert_eq!(live.malformed(), ops.iter().filter(|o| matches!(o, Op::Garbage)).count());
        for st in STATES {
            let n = full.tasks.iter().filter(|t| t.state == st).count();
            prop_assert_eq!(live.count(st), n, "{:?}", st);
        }
        prop_assert_eq!(live.done(), full.done());
        let waves: usize = live.waves().iter().map(|w| w.done).sum();
        prop_assert_eq!(waves, full.done());
        // The tasks it deferred, read as a frame reads the rows it shows: its own views
        // are then the full read's, and its counts still match them.
        live.read_rows(0..TASKS.len());
        prop_assert_eq!(json(&Snapshot { tasks: live.tasks().to_vec(), ..live.snapshot() }), json(&full));
        for st in STATES {
            let n = full.tasks.iter().filter(|t| t.state == st).count();
            prop_assert_eq!(live.count(st), n, "{:?}", st);
        }
    }
}

#[test]
fn states_are_in_declaration_order() {
    for (i, s) in STATES.iter().enumerate() {
        assert_eq!(slot(*s), i, "{s:?}");
    }
}

/// Only what changed is read again: a decided task is not, a live one is, and the journal
/// is read from where it stopped. A live model reads a decided task's files only when it
/// is shown (`read_rows`), once.
#[test]
fn a_refresh_reads_only_what_the_new_lines_name_and_live_tasks() {
    let d = tempfile::tempdir().unwrap();
    let s = session(d.path());
    let ops = [Op::Assign(0), Op::Finish(0, 0), Op::Assign(1)];
    let mut j = fsio::open_append(&s.events()).unwrap();
    for st in steps(&s, &ops) {
        apply_files(&st.files);
        j.write_all(&st.line).unwrap();
    }
    let mut m = SessionModel::live(s.clone());
    let r = m.refresh();
    assert_eq!(r.tasks, 3, "every task the first time, but a: decided");
    assert_eq!(m.count(TaskState::Succeeded), 1);
    assert_eq!(
        m.tasks()[0].duration_ms,
        None,
        "a's outcome is not read yet"
    );
    assert_eq!(m.read_rows(0..2), 1, "a, shown: its outcome read");
    assert_eq!(m.tasks()[0].duration_ms, Some(1000));
    assert_eq!(m.count(TaskState::Succeeded), 1);
    assert_eq!(m.read_rows(0..4), 0, "read once");
    // A model for `status` reads every task at once.
    let mut whole = SessionModel::new(s.clone());
    assert_eq!(whole.refresh().tasks, 4);
    assert_eq!(whole.tasks()[0].duration_ms, Some(1000));
    let r = m.refresh();
    assert_eq!(
        (r.events, r.tasks),
        (0, 1),
        "only b, assigned and undecided"
    );
    assert_eq!(m.live_tasks().collect::<Vec<_>>(), [1]);
    // Its outcome, then its line: read once more, then no longer live.
    apply_files(&[(
        s.outcome_json("b"),
        Some(outcome("b", TaskState::Failed, 1)),
    )]);
    j.write_all(&line(&Event::TaskFinished {
        task: "b".into(),
        attempt: 1,
        worker: Some("w1".into()),
        state: TaskState::Failed,
        exit_code: Some(1),
        reason: None,
    }))
    .unwrap();
    let r = m.refresh();
    assert_eq!(
        (r.events, r.tasks),
        (1, 0),
        "b decided: not read until shown"
    );
    assert_eq!(m.count(TaskState::Failed), 1);
    assert!(m.live_tasks().next().is_none());
    assert_eq!(m.refresh().tasks, 0);
    assert_eq!(m.read_rows(1..2), 1);
    assert_eq!(m.tasks()[1].exit_code, Some(1));
    let recent: Vec<_> = m.recent().filter_map(|(_, e)| e).collect();
    assert!(
        matches!(recent.last(), Some(Event::TaskFinished { .. })),
        "{recent:?}"
    );
    assert_eq!(m.waves().iter().map(|w| w.tasks).sum::<usize>(), 4);
}

/// Tasks added to the live session (`orchestrator add`): `plan.json` grows, then a
/// `tasks_added` line names them; a live model shows them, in plan order, with their
/// wave, and what it knew of the others is kept.
#[test]
fn a_grown_plan_is_read_again_when_a_line_names_its_new_tasks() {
    let d = tempfile::tempdir().unwrap();
    let s = session(d.path());
    let mut j = fsio::open_append(&s.events()).unwrap();
    for st in steps(&s, &[Op::Assign(0), Op::Finish(0, 0)]) {
        apply_files(&st.files);
        j.write_all(&st.line).unwrap();
    }
    let mut m = SessionModel::live(s.clone());
    m.refresh();
    assert_eq!(m.tasks().len(), 4);
    let plan = crate::plan::Plan::read(&s.plan_json()).unwrap().unwrap();
    let more = plan
        .parse_added(
            "more.toml",
            "[[task]]\nid = \"e\"\nrun = \"true\"\nafter = [\"d\"]\n",
            d.path(),
        )
        .unwrap();
    let grown = plan.with_added(more).unwrap();
    fsio::write_json(&s.plan_json(), &grown).unwrap();
    // The plan alone changes nothing: no line vouches for `e` yet.
    m.refresh();
    assert_eq!(m.tasks().len(), 4);
    j.write_all(&line(&Event::TasksAdded {
        tasks: vec!["e".into()],
    }))
    .unwrap();
    m.refresh();
    let ids: Vec<&str> = m.tasks().iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c", "d", "e"]);
    assert_eq!(m.count(TaskState::Succeeded), 1);
    assert_eq!(m.count(TaskState::Pending), 4);
    assert_eq!(m.waves().len(), 4, "e is a wave after d");
    let mut whole = SessionModel::new(s.clone());
    whole.refresh();
    assert_eq!(json(&whole.snapshot()), json(&m.snapshot()));
}

/// A journal cut in the middle of a line (a crash, or a read racing a write): the line
/// is not taken until it is whole, and a malformed one is counted, never fatal.
#[test]
fn a_torn_line_waits_and_a_malformed_one_is_counted() {
    let d = tempfile::tempdir().unwrap();
    let s = session(d.path());
    let mut j = fsio::open_append(&s.events()).unwrap();
    let added = line(&Event::TasksAdded {
        tasks: vec!["a".into()],
    });
    j.write_all(&added[..10]).unwrap();
    let mut m = SessionModel::live(s.clone());
    assert_eq!(m.refresh().events, 0);
    assert_eq!(m.journal_offset(), 0);
    j.write_all(&added[10..]).unwrap();
    j.write_all(b"not json\n").unwrap();
    assert_eq!(m.refresh().events, 1);
    assert_eq!(m.malformed(), 1);
    assert_eq!(m.journal_offset(), (added.len() + 9) as u64);
}
