//! Auxiliary commands: cleanups after every attempt that ran (on workers of their own,
//! after their delay, after a cancel too, never fatal, never run twice), gate checks,
//! the emergency commands and snapshot of a failure that freezes, and rollbacks (last
//! completed first, one at a time, stopped by a failure or an unknown step, resumed
//! without running a step twice).

use super::*;
use crate::proto::{AuxKind, AuxState, UnknownStep};

/// A started session of `spec` whose plan `edit` changed, `workers` at once.
fn sim_with(spec: &str, workers: usize, edit: impl FnOnce(&mut Plan)) -> Sim {
    let mut p = plan(&dag(spec));
    edit(&mut p);
    let cfg = Config {
        session: "s".into(),
        ..Config::new(workers, LONG)
    };
    let e = Engine::new(p, cfg.clone(), 1, Instant::now());
    let mut s = Sim::over(e, cfg, History::default());
    s.start();
    s.register_all();
    s
}

/// Give every task of the plan a cleanup.
fn cleanups(p: &mut Plan) {
    for t in &mut p.tasks {
        t.cleanup = Some("rm -f lock".into());
    }
}

/// `(worker, job name, attempt)` of every `AssignAux`.
fn aux_assigns(s: &Sim, c: &[Command]) -> Vec<(String, String, u32)> {
    c.iter()
        .filter_map(|c| match c {
            Command::AssignAux {
                worker,
                job,
                attempt,
                ..
            } => Some((worker.clone(), s.e.aux_name(*job), *attempt)),
            _ => None,
        })
        .collect()
}

/// `(kind, owner, attempt, state)` of every auxiliary command's end.
fn aux_ends(c: &[Command]) -> Vec<(AuxKind, String, u32, AuxState)> {
    events(c)
        .into_iter()
        .filter_map(|e| e.as_aux_end())
        .map(|(k, e)| (k, e.of.clone(), e.attempt, e.state))
        .collect()
}

fn job(w: &str, name: &str, n: u32) -> (String, String, u32) {
    (w.to_string(), name.to_string(), n)
}

#[test]
fn a_cleanup_runs_after_each_attempt_that_ran_whatever_its_outcome() {
    let mut s = sim_with("a", 1, |p| {
        cleanups(p);
        p.tasks[0].retries = 1;
    });
    let c = s.run("w1", "a", 1, 3);
    assert_eq!(aux_assigns(&s, &c), [job("w1", "a+cleanup", 1)]);
    let start = events(&c)
        .into_iter()
        .find_map(|e| e.as_aux_start())
        .map(|(k, st)| (k, st.of.clone(), st.attempt, st.worker.clone()));
    assert_eq!(
        start,
        Some((AuxKind::Cleanup, "a".into(), 1, "w1".into())),
        "its fence is journalled"
    );
    assert_eq!(
        position(
            &c,
            |c| matches!(c, Command::Journal(e) if e.as_aux_start().is_some())
        ),
        position(&c, |c| matches!(c, Command::AssignAux { .. })) - 1,
        "the fence line comes right before the assignment"
    );
    let c = s.run("w1", "a+cleanup", 1, 0);
    assert_eq!(
        aux_ends(&c),
        [(AuxKind::Cleanup, "a".into(), 1, AuxState::Succeeded)]
    );
    assert!(has(&c, |c| matches!(c, Command::RetireAux { .. })));
    // The retry, then its own cleanup; the session ends once that cleanup has ended.
    let c = s.advance(60_000);
    assert_eq!(c.assigns(), [assigned("w1", "a", 2)]);
    let c = s.run("w1", "a", 2, 0);
    assert_eq!(aux_assigns(&s, &c), [job("w1", "a+cleanup", 2)]);
    assert_eq!(finish(&c), None, "the cleanup runs before the session ends");
    let c = s.run("w1", "a+cleanup", 2, 1);
    assert_eq!(
        aux_ends(&c),
        [(AuxKind::Cleanup, "a".into(), 2, AuxState::Failed)]
    );
    assert_eq!(
        finish(&c),
        Some(SessionState::Succeeded),
        "a failed cleanup is reported, not fatal"
    );
}

#[test]
fn a_cleanup_takes_no_slot_from_the_tasks() {
    let mut s = sim_with("a, b after a", 1, cleanups);
    let c = s.run("w1", "a", 1, 0);
    // b goes to w1 at once; the cleanup gets a worker of its own.
    assert_eq!(c.assigns(), [assigned("w1", "b", 1)]);
    assert_eq!(spawns(&c), ["w2"]);
    let c = s.register("w2");
    assert_eq!(aux_assigns(&s, &c), [job("w2", "a+cleanup", 1)]);
    assert_eq!(s.e.live_workers().count(), 2, "workers + cleanup_workers");
}

#[test]
fn a_cleanup_waits_out_its_delay() {
    let mut s = sim_with("a", 1, |p| {
        cleanups(p);
        p.tasks[0].cleanup_delay_ms = 5_000;
    });
    let c = s.run("w1", "a", 1, 0);
    assert!(aux_assigns(&s, &c).is_empty());
    assert_eq!(
        s.e.next_deadline(),
        Some(s.now() + Duration::from_millis(5_000))
    );
    let c = s.advance(4_000);
    assert!(aux_assigns(&s, &c).is_empty());
    let c = s.advance(1_000);
    assert_eq!(aux_assigns(&s, &c), [job("w1", "a+cleanup", 1)]);
}

#[test]
fn cleanups_run_after_a_cancel_and_the_session_ends_after_them() {
    let mut s = sim_with("a, b after a", 1, cleanups);
    s.begin("w1", "a", 1);
    let c = s.control("c1", ControlAction::Cancel, None);
    assert!(has(&c, |c| matches!(c, Command::Kill { .. })));
    let c = s.exit_rec(killed("a", 1, "w1", KillReason::Cancelled), None);
    assert_eq!(aux_assigns(&s, &c), [job("w1", "a+cleanup", 1)]);
    assert_eq!(finish(&c), None);
    let c = s.run("w1", "a+cleanup", 1, 0);
    assert_eq!(finish(&c), Some(SessionState::Cancelled));
}

#[test]
fn an_attempt_that_never_started_needs_no_cleanup() {
    let mut s = sim_with("a", 1, cleanups);
    let rec = ExitRecord {
        spawn_error: Some("no such file".into()),
        ..record("a", 1, "w1", None)
    };
    let c = s.exit_rec(rec, None);
    assert!(aux_assigns(&s, &c).is_empty());
    assert_eq!(finish(&c), Some(SessionState::Failed));
}

#[test]
fn a_cleanup_whose_worker_died_is_unknown_and_not_run_again() {
    let mut s = sim_with("a", 1, cleanups);
    s.run("w1", "a", 1, 0);
    s.begin("w1", "a+cleanup", 1);
    let c = s.died("w1");
    assert!(has(&c, |c| matches!(c, Command::KillAuxGroup { .. })));
    assert_eq!(
        aux_ends(&c),
        [(AuxKind::Cleanup, "a".into(), 1, AuxState::Unknown)]
    );
    assert!(aux_assigns(&s, &c).is_empty());
    assert_eq!(finish(&c), Some(SessionState::Succeeded));
}

/// Every `AssignAux` of a cleanup so far: `(worker, job name, attempt)`.
fn cleanup_assigns(s: &Sim) -> Vec<(String, String, u32)> {
    aux_assigns(s, &s.log)
}

// Regression (found by the model): a cleanup owed and not handed out yet lived only in
// the engine's memory. A resume re-derived it from `task_started` lines alone, which
// are journalled for the fence holder's start as it is read, never for an exit found on
// disk at a resume (nor for a superseded attempt): a second crash before the cleanup
// was handed out lost it. The workers' journals say what ran (`FoundWorker::ran`).
#[test]
fn a_cleanup_owed_when_the_orchestrator_died_is_owed_again_on_resume() {
    let s = sim_with("a", 1, |p| {
        cleanups(p);
        p.tasks[0].cleanup_delay_ms = 5_000;
    });
    // w1 ran attempt 1 to its end while no orchestrator looked: the resume finds its
    // exit on disk; no `task_started` line is ever journalled for it.
    let w1 = || FoundWorker {
        ran: vec![("a".into(), 1)],
        ..found_worker("w1", true)
    };
    let (s, c) = s.resume(Found {
        workers: vec![w1()],
        exits: vec![found_exit("a", 1, "w1", 0)],
        ..Found::default()
    });
    assert_eq!(c.decides(), ["a: succeeded, attempt 1 on w1"]);
    assert!(
        aux_assigns(&s, &c).is_empty(),
        "the cleanup waits out its delay"
    );
    // The orchestrator dies again before the delay is over.
    let (mut s, c) = s.resume(Found {
        workers: vec![w1()],
        ..Found::default()
    });
    assert_eq!(finish(&c), None, "a cleanup is still owed");
    let c = s.advance(5_000);
    assert_eq!(aux_assigns(&s, &c), [job("w1", "a+cleanup", 1)]);
    let c = s.run("w1", "a+cleanup", 1, 0);
    assert_eq!(finish(&c), Some(SessionState::Succeeded));
}

// Regression (found by the model): an attempt whose start was read only after its
// worker was given up on (the start watchdog or the lease fired first; or the worker,
// told to stop, started what it had claimed) got no cleanup, and ran on: the kill sent
// when the worker was given up on may have come before the process existed.
#[test]
fn an_attempt_started_on_a_worker_given_up_on_is_stopped_and_owed_its_cleanup() {
    let mut p = plan(&dag("a"));
    cleanups(&mut p);
    let cfg = Config::new(1, LEASE);
    let e = Engine::new(p, cfg.clone(), 1, Instant::now());
    let mut s = Sim::over(e, cfg, History::default());
    s.start();
    s.register("w1");
    let c = s.advance(10_001);
    assert_eq!(ended(&c, "a", 1), [EndReason::WorkerLost]);
    // Its start line, read late (the shell follows a worker it gave up on).
    let c = s.begin("w1", "a", 1);
    assert!(
        has(
            &c,
            |c| matches!(c, Command::KillGroup { worker, attempt: 1, process: Some(p), .. }
            if worker == "w1" && p.pgid == 4001)
        ),
        "stopped, by the process its start line names"
    );
    s.register_all();
    s.register_all();
    let runs = cleanup_assigns(&s);
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].1.as_str(), runs[0].2), ("a+cleanup", 1));
}

// Regression: the start of an attempt queued behind another is read before that other's
// exit when one look reads both (the shell feeds the starts first). The worker did not
// count the queued attempt as started, so its death owed no cleanup for it.
#[test]
fn a_queued_attempt_started_before_the_last_exit_was_read_is_owed_its_cleanup() {
    let mut s = sim_with("a, b", 1, cleanups);
    let c = s.begin("w1", "a", 1);
    assert_eq!(
        c.assigns(),
        [assigned("w1", "b", 1)],
        "b is queued behind a"
    );
    s.begin("w1", "b", 1);
    s.exit("w1", "a", 1, 0);
    assert_eq!(s.runs("w1"), Some(("b", 1)));
    s.died("w1");
    s.register_all();
    s.register_all();
    // One cleanup at a time (`cleanup_workers = 1`): a's, then b's.
    assert_eq!(cleanup_assigns(&s), [job("w3", "a+cleanup", 1)]);
    let c = s.run("w3", "a+cleanup", 1, 0);
    assert_eq!(
        aux_assigns(&s, &c),
        [job("w3", "b+cleanup", 1)],
        "b's attempt 1 ran and was lost with w1"
    );
}

// Regression (found by the model): a resumed orchestrator that adopted a running
// attempt did not count it as started on its worker, so losing that worker owed no
// cleanup for it.
#[test]
fn an_adopted_attempt_lost_with_its_worker_is_owed_its_cleanup() {
    let s = sim_with("a", 1, cleanups);
    let (mut s, c) = s.resume(Found {
        workers: vec![FoundWorker {
            ran: vec![("a".into(), 1)],
            ..found_running_a("w1", 1, true)
        }],
        ..Found::default()
    });
    assert!(events(&c).contains(&&Event::TaskAdopted {
        task: "a".into(),
        attempt: 1,
        worker: "w1".into()
    }));
    s.died("w1");
    s.register_all();
    s.register_all();
    assert!(
        cleanup_assigns(&s)
            .iter()
            .any(|(_, name, n)| name == "a+cleanup" && *n == 1),
        "attempt 1 ran and was lost with w1"
    );
}

// Regression (found by the model): the session finished while an attempt superseded by
// a reassign was still being stopped; its cleanup, owed once it ends, never ran.
#[test]
fn the_session_waits_for_an_attempt_being_stopped_to_run_its_cleanup() {
    let mut s = sim_with("a", 1, cleanups);
    s.begin("w1", "a", 1);
    let c = s.control("c1", ControlAction::Reassign, Some("a"));
    assert!(has(&c, |c| matches!(c, Command::Kill { .. })));
    s.register_all();
    s.run("w2", "a", 2, 0);
    let c = s.run("w2", "a+cleanup", 2, 0);
    assert_eq!(finish(&c), None, "attempt 1 is still being stopped");
    let c = s.exit_rec(killed("a", 1, "w1", KillReason::Reassigned), None);
    let w = aux_assigns(&s, &c)
        .first()
        .map(|(w, _, _)| w.clone())
        .expect("attempt 1's cleanup is handed out");
    let c = s.run(&w, "a+cleanup", 1, 0);
    assert_eq!(finish(&c), Some(SessionState::Succeeded));
}

// Regression (found by the model, with a stop): a resumed orchestrator took a worker
// that had claimed an attempt superseded by a reassign, and not started it yet, for
// idle. Its journal was then not followed, so the session could end (a stop gives an
// idle worker no new work) before the start was read, and that attempt's cleanup never
// ran.
#[test]
fn a_resume_waits_for_a_claimed_superseded_attempt_to_start_and_runs_its_cleanup() {
    let mut s = sim_with("a", 1, cleanups);
    s.control("c1", ControlAction::Reassign, Some("a"));
    s.register_all();
    s.begin("w2", "a", 2);
    // w1 claimed attempt 1 (its kill file is there) and has not started it.
    let (mut r, c) = s.resume(Found {
        workers: vec![
            FoundWorker {
                claimed: vec![("a".into(), 1)],
                ..found_worker("w1", true)
            },
            found_running_a("w2", 2, true),
        ],
        ..Found::default()
    });
    assert_eq!(r.runs("w1"), Some(("a", 1)), "{:?}", c.cmds);
    assert!(has(&c, |c| matches!(
        c,
        Command::Kill { worker, attempt: 1, .. } if worker == "w1"
    )));
    let mut c = r.exit("w2", "a", 2, 0);
    c.cmds.extend(r.register_all().cmds);
    let w = aux_assigns(&r, &c)
        .first()
        .map(|(w, _, _)| w.clone())
        .expect("attempt 2's cleanup is handed out");
    let c = r.run(&w, "a+cleanup", 2, 0);
    assert_eq!(finish(&c), None, "attempt 1 is still to start and end");
    r.begin("w1", "a", 1);
    let c = r.exit_rec(killed("a", 1, "w1", KillReason::Reassigned), None);
    let w = aux_assigns(&r, &c)
        .first()
        .map(|(w, _, _)| w.clone())
        .expect("attempt 1's cleanup is handed out");
    let c = r.run(&w, "a+cleanup", 1, 0);
    assert_eq!(finish(&c), Some(SessionState::Succeeded));
}

#[test]
fn a_gate_check_opens_the_gate_or_fails_what_follows() {
    let more = "[[gate]]\nid = \"g\"\nafter = [\"a\"]\napprove = true\n";
    for (code, want) in [(0, true), (2, false)] {
        let mut p = plan(&(dag("a, b after gate:g") + more));
        p.gates[0].run = Some("test -f ok".into());
        p.gates[0].approve = false;
        let cfg = Config::new(1, LONG);
        let e = Engine::new(p, cfg.clone(), 1, Instant::now());
        let mut s = Sim::over(e, cfg, History::default());
        s.start();
        s.register_all();
        let c = s.run("w1", "a", 1, 0);
        assert_eq!(aux_assigns(&s, &c), [job("w1", "g+check", 1)]);
        assert!(c.assigns().is_empty(), "b waits for the check");
        let c = s.run("w1", "g+check", 1, code);
        if want {
            assert!(events(&c).contains(&&Event::GatePassed { gate: "g".into() }));
            assert_eq!(c.assigns(), [assigned("w1", "b", 1)]);
        } else {
            assert!(c.decides().contains(&"b: skipped".to_string()));
            assert!(
                events(&c)
                    .iter()
                    .any(|e| matches!(e, Event::GateFailed { gate, reason }
                if gate == "g" && reason == "its check failed: exited with code 2"))
            );
            assert_eq!(finish(&c), Some(SessionState::Failed));
        }
    }
}

#[test]
fn a_failure_under_freeze_stops_everything_snapshots_and_runs_emergencies() {
    let mut s = sim_with("a, b, c after a", 2, |p| {
        p.on_failure = crate::plan::OnFailure::Freeze;
        p.tasks[1].emergency = Some("pg_cancel_backend".into());
    });
    s.begin("w1", "a", 1);
    s.begin("w2", "b", 1);
    let c = s.exit("w1", "a", 1, 1);
    assert!(events(&c).iter().any(|e| matches!(e,
        Event::SessionFrozen { emergency: true, why } if why == "task a failed (on_failure = freeze)")));
    assert!(has(&c, |c| *c == Command::Freeze(true)));
    assert!(has(&c, |c| *c == Command::Snapshot));
    // b was running: its emergency command runs, on the worker a left idle.
    assert_eq!(aux_assigns(&s, &c), [job("w1", "b+emergency", 1)]);
    let c = s.run("w1", "b+emergency", 1, 0);
    assert_eq!(
        aux_ends(&c),
        [(AuxKind::Emergency, "b".into(), 1, AuxState::Succeeded)]
    );
    assert_eq!(finish(&c), None, "a frozen session waits for a person");
    // A resumed engine owes nothing more: the emergency ran, the snapshot is written.
    s.history.apply(&Event::SnapshotWritten {
        path: "snapshot/1".into(),
    });
    let (_, c) = s.resume(Found {
        workers: vec![FoundWorker {
            claimed: vec![("b".into(), 1)],
            started: vec![started("b", 1, "w2", 4001)],
            ..found_worker("w2", true)
        }],
        ..Found::default()
    });
    assert!(aux_assigns(&s, &c).is_empty());
    assert!(!has(&c, |c| *c == Command::Snapshot));
}

/// A session of `a, b, c` (each with a rollback) where they succeeded in the order c,
/// a, b, then finished.
fn finished_with_rollbacks() -> Sim {
    let mut s = sim_with("a, b, c", 3, |p| {
        for t in &mut p.tasks {
            t.rollback = Some(format!("undo {}", t.id));
        }
        p.tasks[1].rollback = None;
    });
    for t in ["c", "a", "b"] {
        let n = s.e.attempts(s.ix(t));
        let w = s.holder(t);
        s.run(&w, t, n, 0);
    }
    assert!(s.e.finished());
    s.history.apply(&Event::SessionFinished {
        session: "s".into(),
        state: SessionState::Succeeded,
        duration_ms: 1,
    });
    s
}

#[test]
fn a_rollback_runs_last_completed_first_one_at_a_time() {
    let s = finished_with_rollbacks();
    let (mut r, _) = s.resume(Found::default());
    let c = r.control("r1", ControlAction::Rollback { unknown: None }, None);
    assert_eq!(
        reply(&c),
        Some((
            true,
            "rolling back: 2 steps (a, c); succeeded without a rollback command (not undone): b"
                .into()
        ))
    );
    assert!(events(&c).contains(&&Event::RollbackRequested {
        tasks: vec!["a".into(), "c".into()]
    }));
    let c = r.register_all();
    let w = r.spawned[0].clone();
    assert_eq!(aux_assigns(&r, &c), [job(&w, "a+rollback", 1)]);
    let c = r.run(&w, "a+rollback", 1, 0);
    assert_eq!(aux_assigns(&r, &c), [job(&w, "c+rollback", 1)]);
    let c = r.run(&w, "c+rollback", 1, 0);
    assert_eq!(finish(&c), Some(SessionState::RolledBack));
    assert_eq!(
        r.e.decided(r.ix("a")),
        Some(TaskState::Succeeded),
        "outcomes stand"
    );
}

#[test]
fn a_failed_rollback_step_stops_it_and_asking_again_retries_that_step() {
    let s = finished_with_rollbacks();
    let (mut r, _) = s.resume(Found::default());
    r.control("r1", ControlAction::Rollback { unknown: None }, None);
    r.register_all();
    let w = r.spawned[0].clone();
    let c = r.run(&w, "a+rollback", 1, 4);
    assert_eq!(finish(&c), Some(SessionState::RollbackFailed));
    assert!(events(&c).iter().any(
        |e| matches!(e, Event::SessionState { state: SessionState::RollbackFailed, why }
        if why.starts_with("the rollback of a failed (exited with code 4)"))
    ));
    let c = r.control("r2", ControlAction::Rollback { unknown: None }, None);
    assert_eq!(reply(&c).map(|r| r.0), Some(true));
    // The worker of the first request is still there (a live orchestrator's).
    assert_eq!(aux_assigns(&r, &c), [job(&w, "a+rollback", 2)]);
    let c = r.run(&w, "a+rollback", 2, 0);
    assert_eq!(aux_assigns(&r, &c), [job(&w, "c+rollback", 1)]);
}

#[test]
fn a_rollback_half_done_resumes_without_running_a_step_twice() {
    let s = finished_with_rollbacks();
    let (mut r, _) = s.resume(Found::default());
    r.control("r1", ControlAction::Rollback { unknown: None }, None);
    r.register_all();
    let w = r.spawned[0].clone();
    r.run(&w, "a+rollback", 1, 0);
    r.begin(&w, "c+rollback", 1);
    // The orchestrator dies; the step's exit is on disk when it comes back.
    let (mut r2, c) = r.resume(Found {
        exits: vec![found_exit("c+rollback", 1, &w, 0)],
        ..Found::default()
    });
    assert!(aux_assigns(&r2, &c).is_empty(), "no step runs twice");
    assert_eq!(finish(&c), Some(SessionState::RolledBack));
    let c = r2.control("r2", ControlAction::Rollback { unknown: None }, None);
    assert_eq!(
        reply(&c),
        Some((false, "the session is already rolled back".into()))
    );
}

#[test]
fn an_unknown_rollback_step_waits_for_a_persons_word() {
    let s = finished_with_rollbacks();
    let (mut r, _) = s.resume(Found::default());
    r.control("r1", ControlAction::Rollback { unknown: None }, None);
    r.register_all();
    let w = r.spawned[0].clone();
    r.begin(&w, "a+rollback", 1);
    // The orchestrator and the step's worker die: nobody knows whether it ran.
    let (mut r2, c) = r.resume(Found {
        workers: vec![found_worker(&w, false)],
        ..Found::default()
    });
    assert_eq!(
        aux_ends(&c),
        [(AuxKind::Rollback, "a".into(), 1, AuxState::Unknown)]
    );
    assert_eq!(finish(&c), Some(SessionState::RollbackFailed));
    let c = r2.control("r2", ControlAction::Rollback { unknown: None }, None);
    let (ok, msg) = reply(&c).unwrap_or_default();
    assert!(!ok);
    assert!(
        msg.starts_with("the rollback of a may or may not have run"),
        "{msg}"
    );
    // Counted done by a person: the next step runs, a's never again.
    let c = r2.control(
        "r3",
        ControlAction::Rollback {
            unknown: Some(UnknownStep::Skip),
        },
        None,
    );
    assert_eq!(reply(&c).map(|r| r.0), Some(true));
    let c = r2.register_all();
    let w2 = r2.spawned.last().cloned().unwrap_or_default();
    assert_eq!(aux_assigns(&r2, &c), [job(&w2, "c+rollback", 1)]);
}

#[test]
fn a_rollback_is_refused_while_the_session_runs() {
    let mut s = sim_with("a", 1, |_| {});
    s.begin("w1", "a", 1);
    let c = s.control("r1", ControlAction::Rollback { unknown: None }, None);
    assert_eq!(
        reply(&c),
        Some((
            false,
            "the session is still running: freeze it (`orchestrator freeze`) or let it end, then roll back"
                .into()
        ))
    );
}

#[test]
fn a_cleanup_owed_when_the_session_was_interrupted_runs_after_the_resume() {
    let mut s = sim_with("a", 1, cleanups);
    s.begin("w1", "a", 1);
    s.interrupt(Interrupt::Int, false);
    let c = s.exit_rec(killed("a", 1, "w1", KillReason::Interrupted), None);
    assert!(
        aux_assigns(&s, &c).is_empty(),
        "an interrupt starts nothing"
    );
    assert_eq!(finish(&c), Some(SessionState::Interrupted));
    let (mut r, _) = s.resume(Found {
        workers: vec![found_worker("w1", false)],
        ..Found::default()
    });
    let c = r.register_all();
    let cleanup: Vec<String> = aux_assigns(&r, &c).into_iter().map(|j| j.1).collect();
    assert_eq!(cleanup, ["a+cleanup"], "once, for attempt 1");
    assert_eq!(c.assigns().len(), 1, "and a runs again beside it");
}

/// Regression (found by the model): a cleanup published but not claimed when the
/// orchestrator died was taken back by the resume's scan and then judged `unknown`,
/// though it provably never ran.
#[test]
fn a_cleanup_taken_back_unclaimed_on_resume_goes_out_again() {
    let mut s = sim_with("a", 1, cleanups);
    let c = s.run("w1", "a", 1, 0);
    assert_eq!(aux_assigns(&s, &c), [job("w1", "a+cleanup", 1)]);
    let (mut r, c) = s.resume(Found {
        workers: vec![FoundWorker {
            withdrawn: vec![("a+cleanup".into(), 1)],
            ..found_worker("w1", true)
        }],
        ..Found::default()
    });
    assert!(events(&c).iter().any(|e| matches!(e,
        Event::AuxWithdrawn { kind: AuxKind::Cleanup, of, attempt: 1, worker } if of == "a" && worker == "w1")));
    assert!(aux_ends(&c).is_empty(), "not unknown: it never ran");
    assert_eq!(aux_assigns(&r, &c), [job("w1", "a+cleanup", 1)]);
    let c = r.run("w1", "a+cleanup", 1, 0);
    assert_eq!(
        aux_ends(&c),
        [(AuxKind::Cleanup, "a".into(), 1, AuxState::Succeeded)]
    );
    assert_eq!(finish(&c), Some(SessionState::Succeeded));
}
