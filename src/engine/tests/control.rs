//! The rules of `engine/control.rs`: reassign stops an attempt and runs a new one
//! elsewhere, within the worker limit; cancel decides a task and its dependents (or the
//! whole session) without changing what was decided; a request first waits for what is
//! queued to be withdrawn; a first interrupt stops attempts without using retries, a
//! second kills every group at once.

use super::*;

// ---- reassign ----

#[test]
fn reassign_stops_the_attempt_and_runs_a_new_one_on_another_worker() {
    let mut s = Sim::running_a(LONG);
    let c = s.control("r1", ControlAction::Reassign, Some("a"));
    assert!(has(&c, |c| matches!(c,
        Command::Kill { worker, task: 0, attempt: 1, reason: KillReason::Reassigned }
            if worker == "w1")));
    assert_eq!(ended(&c, "a", 1), [EndReason::Reassigned]);
    assert!(has(
        &c,
        |c| matches!(c, Command::Reply { id, ok: true, .. } if id == "r1")
    ));
    assert_eq!(
        spawns(&c),
        ["w2"],
        "the old worker stays busy until its attempt ends"
    );
    assert_eq!(s.e.fence(0), None);
    assert_eq!(s.register("w2").assigns(), [assigned("w2", "a", 2)]);
    let c = s.exit_rec(killed("a", 1, "w1", KillReason::Reassigned), None);
    assert_eq!(stale_results(&c), [("a".into(), 1, Some("w1".into()))]);
    assert!(decisions(&c).is_empty());
    let c = s.run("w2", "a", 2, 0);
    assert_eq!(c.decides(), ["a: succeeded, attempt 2 on w2"]);
    assert_eq!(finish(&c), Some(SessionState::Succeeded));
}

#[test]
fn reassign_of_a_task_that_is_not_running_is_refused() {
    let mut s = Sim::ready(CHAIN, 1);
    let c = s.control("r1", ControlAction::Reassign, Some("b"));
    assert!(has(&c, |c| matches!(c,
        Command::Reply { id, ok: false, message } if id == "r1" && message.contains("not running"))));
    assert!(!has(&c, |c| matches!(c, Command::Kill { .. })));
    assert_eq!(s.e.fence(s.ix("a")), Some((1, "w1")));
}

#[test]
fn after_a_reassign_no_more_attempts_run_than_the_limit() {
    let mut s = Sim::ready(THREE, 1);
    s.control("r1", ControlAction::Reassign, Some("a"));
    assert_eq!(s.register("w2").assigns(), [assigned("w2", "a", 2)]);
    // The old worker is free once its attempt ended, but the limit is taken by a.
    let c = s.exit_rec(killed("a", 1, "w1", KillReason::Reassigned), None);
    assert!(c.assigns().is_empty());
    assert_eq!(s.busy(), 1, "{:?}", s.e.live_workers().collect::<Vec<_>>());
    assert_eq!(s.running_current(), 1);
}

/// The task queued behind the attempt was claimed (its withdrawal refused) when a person
/// reassigned that attempt: the new attempt takes the place at once.
#[test]
fn a_task_claimed_behind_a_reassigned_attempt_counts_against_the_limit() {
    let mut s = Sim::ready(TWO, 1);
    assert_eq!(s.begin("w1", "a", 1).assigns(), [assigned("w1", "b", 1)]);
    // a ended and w1 claimed b (neither read yet) when a person reassigns a.
    let c = s.control("r1", ControlAction::Reassign, Some("a"));
    assert!(has(&c, |c| matches!(c, Command::Withdraw { task: 1, .. })));
    s.withdrawn("w1", "b", 1, false);
    s.register_all();
    s.exit("w1", "a", 1, 0);
    assert_eq!(s.runs("w1"), Some(("b", 1)));
    assert!(
        s.running_current() <= 1,
        "{:?}",
        s.e.live_workers().collect::<Vec<_>>()
    );
}

/// A task is queued behind an attempt already reassigned: it runs next to the new
/// attempt.
#[test]
fn no_task_is_queued_behind_a_reassigned_attempt_on_top_of_the_limit() {
    // q and s (each with a dependent) outrank p once the signal is raised.
    let mut s = Sim::ready(
        "p, q after signal:go, r after q, s after signal:go, t after s",
        1,
    );
    s.begin("w1", "p", 1);
    s.on(Fact::Primitives(PrimScan {
        raised: vec!["go".into()],
        ..Default::default()
    }));
    s.control("r1", ControlAction::Reassign, Some("p"));
    s.withdrawn("w1", "q", 1, true);
    // w2 takes q, the limit; p waits (not on w1), yet s is queued behind p's attempt.
    assert_eq!(s.register_all().assigns()[0], assigned("w2", "q", 1));
    s.exit_rec(killed("p", 1, "w1", KillReason::Reassigned), None);
    assert!(
        s.running_current() <= 1,
        "{:?}",
        s.e.live_workers().collect::<Vec<_>>()
    );
}

// ---- cancel ----

#[test]
fn cancelling_a_task_cancels_its_dependents_and_ends_the_session_cancelled() {
    let mut s = Sim::new("a, b after a, c", 2);
    s.start();
    assert_eq!(
        s.register_all().assigns(),
        [assigned("w1", "a", 1), assigned("w2", "c", 1)]
    );
    s.begin("w1", "a", 1);
    let c = s.control("k1", ControlAction::Cancel, Some("a"));
    assert!(has(&c, |c| matches!(c,
        Command::Kill { worker, task: 0, attempt: 1, reason: KillReason::Cancelled }
            if worker == "w1")));
    assert_eq!(c.decides(), ["a: cancelled, attempt 1", "b: cancelled",]);
    assert!(has(&c, |c| matches!(c,
        Command::Journal(Event::TaskCancelled { task, .. }) if task == "b")));
    assert!(has(&c, |c| matches!(c,
        Command::Reply { id, ok: true, message } if id == "k1" && message.contains("1 dependents"))));
    let c = s.run("w2", "c", 1, 0);
    assert_eq!(
        finish(&c),
        Some(SessionState::Cancelled),
        "nothing failed, a task was cancelled on purpose"
    );
    // The cancelled attempt's late exit changes nothing.
    let c = s.exit_rec(killed("a", 1, "w1", KillReason::Cancelled), None);
    assert!(decisions(&c).is_empty());
    assert_eq!(s.e.decided(0), Some(TaskState::Cancelled));
}

#[test]
fn cancelling_the_session_never_changes_an_already_decided_task() {
    let mut s = Sim::ready(THREE, 1);
    assert_eq!(s.run("w1", "a", 1, 0).assigns(), [assigned("w1", "b", 1)]);
    assert_eq!(s.begin("w1", "b", 1).assigns(), [assigned("w1", "c", 1)]);
    let c = s.control("k1", ControlAction::Cancel, None);
    assert!(
        has(&c, |c| matches!(
            c,
            Command::Withdraw {
                task: 2,
                attempt: 1,
                ..
            }
        )),
        "a queued assignment is withdrawn before the request acts"
    );
    assert!(!has(&c, |c| matches!(c, Command::Reply { .. })));
    let c = s.withdrawn("w1", "c", 1, true);
    assert!(has(&c, |c| matches!(c, Command::Reply { ok: true, .. })));
    assert!(has(&c, |c| matches!(
        c,
        Command::Kill {
            task: 1,
            attempt: 1,
            reason: KillReason::Cancelled,
            ..
        }
    )));
    assert_eq!(c.decides(), ["b: cancelled, attempt 1", "c: cancelled",]);
    assert!(c.assigns().is_empty());
    assert_eq!(s.e.decided(0), Some(TaskState::Succeeded));
    assert!(finish(&c).is_none(), "b still runs");
    let c = s.exit_rec(killed("b", 1, "w1", KillReason::Cancelled), None);
    assert!(decisions(&c).is_empty());
    assert_eq!(finish(&c), Some(SessionState::Cancelled));
    assert_eq!(s.e.decided(0), Some(TaskState::Succeeded));
    assert_eq!(decisions(&s.log).iter().filter(|d| d.task == 0).count(), 1);
}

#[test]
fn nothing_is_queued_while_a_request_waits_for_withdrawals_so_it_is_answered() {
    let mut s = Sim::ready("a, b, c, d", 2);
    assert_eq!(s.begin("w1", "a", 1).assigns(), [assigned("w1", "c", 1)]);
    assert_eq!(s.begin("w2", "b", 1).assigns(), [assigned("w2", "d", 1)]);
    let c = s.control("r1", ControlAction::Reassign, Some("a"));
    assert_eq!(count(&c, |c| matches!(c, Command::Withdraw { .. })), 2);
    let c = s.withdrawn("w1", "c", 1, true);
    assert!(
        c.assigns().is_empty(),
        "nothing is queued while the request waits"
    );
    let c = s.withdrawn("w2", "d", 1, true);
    assert!(has(
        &c,
        |c| matches!(c, Command::Reply { id, ok: true, .. } if id == "r1")
    ));
}

// ---- interrupts ----

#[test]
fn a_first_interrupt_stops_attempts_without_a_retry_and_ends_interrupted() {
    let mut s = Sim::with_more(THREE, "[defaults]\nretries = 3\n", 2);
    s.start();
    s.register_all();
    assert_eq!(s.begin("w1", "a", 1).assigns(), [assigned("w1", "c", 1)]);
    s.begin("w2", "b", 1);
    let c = s.interrupt(Interrupt::Int, false);
    for (w, t) in [("w1", 0), ("w2", 1)] {
        assert!(has(&c, |c| matches!(c,
            Command::Kill { worker, task, attempt: 1, reason: KillReason::Interrupted }
                if worker == w && *task == t)));
    }
    assert!(has(&c, |c| matches!(c, Command::Withdraw { task: 2, .. })));
    assert!(has(&c, |c| matches!(
        c,
        Command::Journal(Event::SessionState {
            state: SessionState::Stopping,
            ..
        })
    )));
    assert!(finish(&c).is_none());
    let c = s.withdrawn("w1", "c", 1, true);
    assert!(c.assigns().is_empty(), "no new assignment while stopping");
    let c = s.exit_rec(killed("a", 1, "w1", KillReason::Interrupted), None);
    assert_eq!(ended(&c, "a", 1), [EndReason::Interrupted]);
    assert!(!has(&c, |c| matches!(c, Command::ScheduleRetry { .. })));
    assert!(decisions(&c).is_empty());
    assert!(c.assigns().is_empty());
    assert!(finish(&c).is_none(), "b still runs");
    let c = s.exit_rec(killed("b", 1, "w2", KillReason::Interrupted), None);
    assert!(decisions(&c).is_empty());
    assert_eq!(finish(&c), Some(SessionState::Interrupted));
    assert_eq!(s.e.state(), SessionState::Interrupted);
    assert_eq!(s.e.interrupted_by(), Some(Interrupt::Int));
    assert_eq!(s.history.tasks["a"].failures, 0);
    assert!((0..3).all(|t| s.e.decided(t).is_none()));
}

#[test]
fn a_second_interrupt_kills_every_group_at_once_and_ends_interrupted() {
    let mut s = Sim::ready(TWO, 2);
    s.begin("w1", "a", 1);
    s.begin("w2", "b", 1);
    assert!(finish(&s.interrupt(Interrupt::Term, false)).is_none());
    let c = s.interrupt(Interrupt::Term, true);
    for (w, t) in [("w1", 0), ("w2", 1)] {
        assert!(has(&c, |c| matches!(c,
            Command::KillGroup { worker, task, attempt: 1, .. } if worker == w && *task == t)));
        assert!(has(&c, |c| matches!(c,
            Command::StopWorker { worker, reason: ShutdownReason::SessionEnd } if worker == w)));
    }
    assert_eq!(ended(&c, "a", 1), [EndReason::Interrupted]);
    assert_eq!(finish(&c), Some(SessionState::Interrupted));
    assert_eq!(s.e.interrupted_by(), Some(Interrupt::Term));
    assert!(decisions(&c).is_empty());
}

/// `scale` raises the worker limit at once; lowered, it lets running attempts finish
/// and retires the surplus workers as they become idle.
#[test]
fn scale_starts_workers_and_retires_the_surplus_as_it_becomes_idle() {
    let mut s = Sim::ready("a, b, c, d, e", 1);
    s.begin("w1", "a", 1);
    // b was queued behind a; a request waits until it is taken back.
    s.control("s1", ControlAction::Scale { workers: 3 }, None);
    let c = s.withdrawn("w1", "b", 1, true);
    assert_eq!(
        reply(&c),
        Some((true, "worker limit 1 -> 3: more workers start now".into()))
    );
    assert_eq!(spawns(&c).len(), 2, "{:?}", c.cmds);
    let c = s.register_all();
    // The new workers take b and c; d queues behind a on w1.
    let busy: Vec<(String, String)> = c
        .assigns()
        .iter()
        .filter(|a| a.0 != "w1")
        .map(|a| (a.0.clone(), a.1.clone()))
        .collect();
    assert_eq!(busy.len(), 2, "{:?}", c.cmds);
    for (w, t) in &busy {
        s.begin(w, t, 1);
    }
    // d and e were queued behind a and b: taken back first, and not queued again.
    s.control("s2", ControlAction::Scale { workers: 1 }, None);
    s.withdrawn("w1", "d", 1, true);
    let c = s.withdrawn("w2", "e", 1, true);
    assert!(c.assigns().is_empty(), "{:?}", c.cmds);
    assert_eq!(
        reply(&c),
        Some((
            true,
            "worker limit 3 -> 1: running tasks finish; surplus workers leave as they become idle"
                .into()
        ))
    );
    // Each surplus worker, once its attempt ends, leaves instead of taking more.
    let (w, t) = &busy[0];
    let c = s.exit(w, t, 1, 0);
    assert!(c.assigns().is_empty(), "{:?}", c.cmds);
    assert!(has(
        &c,
        |c| matches!(c, Command::StopWorker { worker, .. } if worker == w)
    ));
    let c = s.control("s3", ControlAction::Scale { workers: 0 }, None);
    assert_eq!(
        reply(&c),
        Some((false, "the worker limit must be at least 1".into()))
    );
}
