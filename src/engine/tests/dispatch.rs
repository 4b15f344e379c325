//! The rules of `engine/dispatch.rs`: a task goes to an idle worker once its
//! dependencies succeeded; the pool stays within the worker limit; one task is queued
//! behind each started busy worker and withdrawn for an idle one; a worker is lost when
//! it dies or its heartbeat stops moving for the lease, and its task gets a new attempt.

use super::*;

#[test]
fn a_task_waits_for_its_dependency_then_goes_to_an_idle_worker() {
    let mut s = Sim::new(CHAIN, 2);
    let c = s.start();
    assert_eq!(spawns(&c), ["w1", "w2"]);
    assert!(
        c.assigns().is_empty(),
        "nothing is assigned before a worker registers"
    );
    assert_eq!(s.register("w1").assigns(), [assigned("w1", "a", 1)]);
    assert!(s.register("w2").assigns().is_empty(), "b waits for a");
    assert_eq!(s.e.worker_state("w2"), Some(WorkerState::Idle));
    assert!(
        s.begin("w1", "a", 1).assigns().is_empty(),
        "b is not ready, so nothing is queued"
    );
    let c = s.exit("w1", "a", 1, 0);
    assert_eq!(c.decides(), ["a: succeeded, attempt 1 on w1"]);
    assert_eq!(c.assigns().len(), 1);
    assert_eq!(c.assigns()[0].1, "b");
    let d = position(&c, |c| matches!(c, Command::Decide(_)));
    let asg = position(&c, |c| matches!(c, Command::Assign { .. }));
    assert!(d < asg, "b is assigned only once a has succeeded");
}

#[test]
fn task_assigned_is_journalled_before_the_assign_of_the_same_attempt() {
    let mut s = Sim::new(ONE, 1);
    s.start();
    let c = s.register("w1");
    let journalled = position(&c, |c| {
        matches!(c, Command::Journal(Event::TaskAssigned { task, attempt: 1, worker, .. })
            if task == "a" && worker == "w1")
    });
    let published = position(
        &c,
        |c| matches!(c, Command::Assign { worker, task: 0, attempt: 1, .. } if worker == "w1"),
    );
    assert!(journalled < published);
    assert_eq!(s.e.fence(0), Some((1, "w1")));
    // The seq of the journal line is the assignment's.
    let seqs: Vec<u64> = c
        .iter()
        .filter_map(|c| match c {
            Command::Journal(Event::TaskAssigned { seq, .. }) | Command::Assign { seq, .. } => {
                Some(*seq)
            }
            _ => None,
        })
        .collect();
    assert_eq!(seqs.len(), 2);
    assert_eq!(seqs[0], seqs[1]);
}

#[test]
fn the_pool_never_exceeds_the_worker_limit() {
    let mut s = Sim::new("t0, t1, t2, t3, t4, t5", 2);
    let c = s.start();
    assert_eq!(spawns(&c).len(), 2);
    s.register_all();
    let mut rounds = 0;
    while !s.e.finished() {
        rounds += 1;
        assert!(rounds < 20, "the session does not end");
        let busy: Vec<(String, TaskIx, u32)> =
            s.e.live_workers()
                .filter_map(|(w, st)| match st {
                    WorkerState::Busy { task, attempt } => Some((w.to_string(), task, attempt)),
                    _ => None,
                })
                .collect();
        assert!(!busy.is_empty());
        for (w, t, n) in busy {
            let id = s.ids[t].clone();
            s.begin(&w, &id, n);
            assert!(s.busy() <= 2 && s.e.live_workers().count() <= 2);
            s.exit(&w, &id, n, 0);
            assert!(s.busy() <= 2 && s.e.live_workers().count() <= 2);
        }
    }
    assert_eq!(
        s.spawned.len(),
        2,
        "no worker beyond the limit was ever started"
    );
    assert_eq!(finish(&s.log), Some(SessionState::Succeeded));
    assert_eq!(s.e.counts()[&TaskState::Succeeded], 6);
}

// ---- queue-ahead ----

#[test]
fn a_started_busy_worker_gets_exactly_one_task_queued_behind_it() {
    let mut s = Sim::new(THREE, 1);
    s.start();
    assert_eq!(
        s.register("w1").assigns(),
        [assigned("w1", "a", 1)],
        "nothing is queued before the running task started"
    );
    assert_eq!(
        s.begin("w1", "a", 1).assigns(),
        [assigned("w1", "b", 1)],
        "one task, not two"
    );
    assert_eq!(s.runs("w1"), Some(("a", 1)));
    assert_eq!(
        s.e.in_flight("w1"),
        [("a".to_string(), 1), ("b".to_string(), 1)]
    );
    // The exit makes the queued task the running one, without a new assignment.
    assert!(s.exit("w1", "a", 1, 0).assigns().is_empty());
    assert_eq!(s.runs("w1"), Some(("b", 1)));
    assert_eq!(s.begin("w1", "b", 1).assigns(), [assigned("w1", "c", 1)]);
}

/// a (with d after it), b and c on two workers: w1 runs a with c queued behind it, w2
/// runs b. Returns the sim once b has ended (w2 idle), and the commands of b's end.
fn queued_behind_w1() -> (Sim, Cmds) {
    let mut s = Sim::new("a, b, c, d after a", 2);
    s.start();
    assert_eq!(s.register("w1").assigns(), [assigned("w1", "a", 1)]);
    assert_eq!(s.register("w2").assigns(), [assigned("w2", "b", 1)]);
    assert_eq!(s.begin("w1", "a", 1).assigns(), [assigned("w1", "c", 1)]);
    let c = s.run("w2", "b", 1, 0);
    assert_eq!(s.e.worker_state("w2"), Some(WorkerState::Idle));
    (s, c)
}

#[test]
fn an_idle_worker_makes_the_engine_withdraw_a_queued_task_and_take_it() {
    let (mut s, c) = queued_behind_w1();
    let c_ix = s.ix("c");
    assert!(has(&c, |c| matches!(c,
        Command::Withdraw { worker, task, attempt: 1 } if worker == "w1" && *task == c_ix)));
    let c = s.withdrawn("w1", "c", 1, true);
    let withdrawn = position(&c, |c| {
        matches!(c, Command::Journal(Event::TaskWithdrawn { task, attempt: 1, worker })
            if task == "c" && worker == "w1")
    });
    let reassigned = position(&c, |c| matches!(c, Command::Assign { .. }));
    assert!(withdrawn < reassigned);
    assert_eq!(
        c.assigns(),
        [assigned("w2", "c", 1)],
        "the same attempt number: it never ran"
    );
    assert_eq!(s.e.attempts(c_ix), 1);
    assert_eq!(s.e.fence(c_ix), Some((1, "w2")));
    assert_eq!(s.e.in_flight("w1"), [("a".to_string(), 1)]);
    assert_eq!(s.history.tasks["c"].fence, Some((1, "w2".to_string())));
}

#[test]
fn a_claimed_queued_task_is_not_withdrawn_and_runs_after_the_exit() {
    let (mut s, _) = queued_behind_w1();
    let c = s.withdrawn("w1", "c", 1, false);
    assert!(!has(&c, |c| matches!(
        c,
        Command::Journal(Event::TaskWithdrawn { .. })
    )));
    assert!(c.assigns().is_empty());
    assert_eq!(s.e.fence(s.ix("c")), Some((1, "w1")));
    // w1 claimed c, so a has ended: its exit follows.
    let c = s.exit("w1", "a", 1, 0);
    assert_eq!(c.decides(), ["a: succeeded, attempt 1 on w1"]);
    assert_eq!(s.runs("w1"), Some(("c", 1)));
    assert_eq!(c.assigns(), [assigned("w2", "d", 1)]);
    let c = s.run("w1", "c", 1, 0);
    assert_eq!(c.decides(), ["c: succeeded, attempt 1 on w1"]);
    let c = s.run("w2", "d", 1, 0);
    assert_eq!(finish(&c), Some(SessionState::Succeeded));
}

#[test]
fn a_refused_withdrawal_is_not_asked_again() {
    let (mut s, _) = queued_behind_w1();
    let c = s.withdrawn("w1", "c", 1, false);
    assert!(!has(&c, |c| matches!(c, Command::Withdraw { .. })));
    // Nor later, while w2 stays idle and c waits behind a.
    let c = s.advance(1000);
    assert!(!has(&c, |c| matches!(c, Command::Withdraw { .. })));
    assert_eq!(s.e.worker_state("w2"), Some(WorkerState::Idle));
}

#[test]
fn the_idle_worker_a_withdrawal_is_for_is_not_stopped_as_excess_and_gets_the_task() {
    let mut s = Sim::ready(THREE, 2);
    assert_eq!(s.begin("w1", "a", 1).assigns(), [assigned("w1", "c", 1)]);
    let c = s.run("w2", "b", 1, 0);
    assert!(has(&c, |c| matches!(c, Command::Withdraw { task: 2, .. })));
    assert!(!has(
        &c,
        |c| matches!(c, Command::StopWorker { worker, .. } if worker == "w2")
    ));
    let c = s.withdrawn("w1", "c", 1, true);
    assert!(spawns(&c).is_empty());
    assert_eq!(c.assigns(), [assigned("w2", "c", 1)]);
}

// ---- worker loss ----

#[test]
fn a_dead_worker_s_task_gets_a_new_attempt_until_max_reassign_fails_it() {
    let mut s = Sim::with_more(ONE, "[defaults]\nmax_reassign = 1\n", 1);
    s.start();
    s.register("w1");
    s.begin("w1", "a", 1);
    let c = s.died("w1");
    assert!(has(&c, |c| matches!(c,
        Command::KillGroup { worker, task: 0, attempt: 1, .. } if worker == "w1")));
    assert_eq!(ended(&c, "a", 1), [EndReason::WorkerLost]);
    assert!(has(&c, |c| matches!(c,
        Command::Journal(Event::WorkerLost { worker, how: DeathCause::Died }) if worker == "w1")));
    assert!(decisions(&c).is_empty());
    assert_eq!(spawns(&c), ["w2"]);
    assert_eq!(s.register("w2").assigns(), [assigned("w2", "a", 2)]);
    s.begin("w2", "a", 2);
    let c = s.died("w2");
    let d = decisions(&c);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].state, TaskState::Failed);
    assert!(d[0].exit.is_none());
    assert!(
        d[0].reason
            .as_deref()
            .unwrap()
            .contains("max_reassign is 1")
    );
    assert_eq!(s.history.tasks["a"].reassigns, 2);
    assert_eq!(finish(&c), Some(SessionState::Failed));
}

#[test]
fn a_worker_whose_heartbeat_stops_moving_for_the_lease_is_lost() {
    let mut s = Sim::running_a(LEASE);
    let beat = |s: &mut Sim| {
        s.on(Fact::Heartbeat {
            worker: "w1".into(),
            counter: 1,
        })
    };
    s.at = Duration::from_secs(5);
    beat(&mut s);
    s.at = Duration::from_secs(14);
    // The same counter again: the worker is not moving.
    assert!(beat(&mut s).is_empty());
    assert_eq!(s.e.next_deadline(), Some(s.t0 + Duration::from_secs(15)));
    let c = s.advance(1000);
    assert!(c.is_empty(), "exactly the lease is not past it");
    let c = s.advance(1);
    assert!(has(&c, |c| matches!(c,
        Command::Journal(Event::WorkerUnresponsive { worker, lease_ms: 10_000 }) if worker == "w1")));
    assert!(has(&c, |c| matches!(c,
        Command::StopWorker { worker, reason: ShutdownReason::Lost } if worker == "w1")));
    assert!(has(&c, |c| matches!(c,
        Command::KillGroup { worker, task: 0, attempt: 1, .. } if worker == "w1")));
    assert_eq!(ended(&c, "a", 1), [EndReason::WorkerLost]);
    assert_eq!(spawns(&c), ["w2"]);
    assert_eq!(s.e.worker_state("w1"), Some(WorkerState::Gone));
    assert_eq!(s.e.fence(0), None);
}

// The watchdog: a worker that took an attempt and never started it (alive, heartbeating,
// but stuck on a file that says the attempt already ran) held the session forever.
#[test]
fn a_worker_that_never_starts_its_attempt_within_the_lease_is_lost() {
    let mut s = Sim::with(&dag(ONE), Config::new(1, LEASE));
    s.start();
    assert_eq!(s.register("w1").assigns(), [assigned("w1", "a", 1)]);
    assert_eq!(s.e.next_deadline(), Some(s.t0 + LEASE));
    // Heartbeats keep moving: the lease alone would never fire.
    for n in 1..=9 {
        s.at = Duration::from_secs(n);
        s.on(Fact::Heartbeat {
            worker: "w1".into(),
            counter: n,
        });
    }
    assert!(
        s.advance(1000).is_empty(),
        "exactly the limit is not past it"
    );
    let c = s.advance(1);
    assert!(has(&c, |c| matches!(c,
        Command::Journal(Event::AttemptStalled { task, attempt: 1, worker, waited_ms: 10_000 })
            if task == "a" && worker == "w1")));
    assert!(has(&c, |c| matches!(c,
        Command::StopWorker { worker, reason: ShutdownReason::Lost } if worker == "w1")));
    assert_eq!(ended(&c, "a", 1), [EndReason::WorkerLost]);
    assert_eq!(spawns(&c), ["w2"]);
    assert_eq!(s.e.fence(0), None);
    // The new worker gets the task as attempt 2; once it starts, the watchdog is quiet.
    assert_eq!(s.register("w2").assigns(), [assigned("w2", "a", 2)]);
    s.begin("w2", "a", 2);
    s.at += Duration::from_secs(60);
    s.on(Fact::Heartbeat {
        worker: "w2".into(),
        counter: 99,
    });
    assert!(s.advance(1).is_empty());
}
