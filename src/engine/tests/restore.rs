//! The rules of `engine/restore.rs`: a resumed engine, rebuilt from the journal and told
//! what is on disk, adopts live workers running the fence attempt (and workers still
//! starting), accepts exits only from the fence holder, reassigns what was lost, stops
//! every other attempt once, keeps a pending retry's backoff and the worker limit.

use super::*;

/// Attempt 1 of `a` was superseded and attempt 2 assigned to w2, which had not claimed
/// it when the orchestrator died (the shell takes it back); w1, found as `w1`, had
/// written a success for attempt 1. The new orchestrator refuses that exit, and attempt
/// 2 runs and decides. The commands of the resume.
fn resume_refuses_the_superseded_exit(s: &Sim, w1: FoundWorker) -> Cmds {
    let (mut r, c) = s.resume(Found {
        workers: vec![
            w1,
            FoundWorker {
                withdrawn: vec![("a".into(), 2)],
                ..found_worker("w2", true)
            },
        ],
        exits: vec![found_exit("a", 1, "w1", 0)],
        outcomes: Vec::new(),
    });
    assert_eq!(stale_results(&c), [("a".into(), 1, Some("w1".into()))]);
    assert!(decisions(&c).is_empty());
    let asg = c.assigns();
    assert_eq!(asg.len(), 1);
    let (w, task, n) = &asg[0];
    assert_eq!((task.as_str(), *n), ("a", 2));
    let done = r.run(w, "a", 2, 0);
    assert_eq!(done.decides(), [format!("a: succeeded, attempt 2 on {w}")]);
    assert_eq!(finish(&done), Some(SessionState::Succeeded));
    c
}

#[test]
fn on_resume_an_attempt_lost_with_its_worker_is_refused_and_a_later_attempt_decides() {
    let mut s = Sim::running_a(LEASE);
    s.advance(10_001);
    assert_eq!(s.register("w2").assigns(), [assigned("w2", "a", 2)]);
    let w1 = FoundWorker {
        stopped: true,
        ..found_running_a("w1", 1, false)
    };
    let c = resume_refuses_the_superseded_exit(&s, w1);
    assert!(has(&c, |c| matches!(c,
        Command::Journal(Event::TaskWithdrawn { task, attempt: 2, worker })
            if task == "a" && worker == "w2")));
    assert!(!has(&c, |c| matches!(
        c,
        Command::KillGroup { attempt: 1, .. }
    )));
    assert_eq!(c.assigns(), [assigned("w2", "a", 2)]);
}

#[test]
fn on_resume_a_reassigned_attempt_s_exit_is_refused_and_a_later_attempt_decides() {
    let mut s = Sim::running_a(LONG);
    s.control("r1", ControlAction::Reassign, Some("a"));
    assert_eq!(s.register("w2").assigns(), [assigned("w2", "a", 2)]);
    let c = resume_refuses_the_superseded_exit(&s, found_running_a("w1", 1, true));
    assert!(!has(&c, |c| matches!(c, Command::KillGroup { .. })));
}

#[test]
fn on_resume_a_fence_holder_whose_worker_died_is_killed_by_its_process_and_reassigned() {
    let s = Sim::running_a(LONG);
    let st = started("a", 1, "w1", 4242);
    let found = Found {
        workers: vec![FoundWorker {
            started: vec![st.clone()],
            ..found_running_a("w1", 1, false)
        }],
        ..Default::default()
    };
    let (mut r, c) = s.resume(found);
    let process = Some(ProcessId {
        pgid: 4242,
        proc_start: st.proc_start,
        boot_id: st.boot_id.clone(),
    });
    assert!(has(&c, |c| matches!(c,
        Command::KillGroup { worker, task: 0, attempt: 1, process: p }
            if worker == "w1" && *p == process)));
    assert_eq!(ended(&c, "a", 1), [EndReason::WorkerLost]);
    assert!(decisions(&c).is_empty());
    assert_eq!(spawns(&c), ["w2"], "a fresh worker id");
    assert_eq!(r.register("w2").assigns(), [assigned("w2", "a", 2)]);
    let c = r.run("w2", "a", 2, 0);
    assert_eq!(c.decides(), ["a: succeeded, attempt 2 on w2"]);
}

#[test]
fn on_resume_an_adopted_worker_running_the_fence_attempt_is_busy_and_its_exit_accepted() {
    let s = Sim::running_a(LONG);
    let (mut r, c) = s.resume(Found {
        workers: vec![found_running_a("w1", 1, true)],
        ..Default::default()
    });
    assert!(has(&c, |c| matches!(c,
        Command::Journal(Event::TaskAdopted { task, attempt: 1, worker })
            if task == "a" && worker == "w1")));
    assert_eq!(r.runs("w1"), Some(("a", 1)));
    assert!(!has(&c, |c| matches!(
        c,
        Command::Kill { .. } | Command::KillGroup { .. } | Command::Assign { .. }
    )));
    assert!(spawns(&c).is_empty());
    let c = r.exit("w1", "a", 1, 0);
    assert_eq!(c.decides(), ["a: succeeded, attempt 1 on w1"]);
    assert_eq!(finish(&c), Some(SessionState::Succeeded));
}

/// A new orchestrator over `s`, where attempt 1 of `a` was assigned to w1: w1 (`alive`
/// or not) claimed and started it, and its exit (`code`) is on disk.
fn resume_after_a_ended(s: &Sim, alive: bool, code: i32) -> (Sim, Cmds) {
    s.resume(Found {
        workers: vec![found_running_a("w1", 1, alive)],
        exits: vec![found_exit("a", 1, "w1", code)],
        ..Default::default()
    })
}

#[test]
fn on_resume_the_fence_holder_s_exit_found_on_disk_decides_the_task() {
    let (_, c) = resume_after_a_ended(&Sim::running_a(LONG), false, 3);
    assert_eq!(c.decides(), ["a: failed, attempt 1 on w1"]);
    assert!(stale_results(&c).is_empty());
    assert_eq!(finish(&c), Some(SessionState::Failed));
}

#[test]
fn on_resume_a_pending_retry_waits_out_the_rest_of_its_backoff() {
    let backoff = "[defaults]\nretries = 1\nbackoff = { initial = \"10s\", jitter = 0 }\n";
    let mut s = Sim::with_more(ONE, backoff, 1);
    s.start();
    s.register("w1");
    s.run("w1", "a", 1, 1);
    s.at += Duration::from_secs(3);
    let (mut r, c) = s.resume(Found {
        workers: vec![found_worker("w1", true)],
        ..Default::default()
    });
    assert!(c.assigns().is_empty(), "7s of the backoff are left");
    assert!(r.advance(6999).assigns().is_empty());
    assert_eq!(r.advance(1).assigns(), [assigned("w1", "a", 2)]);
    let c = r.run("w1", "a", 2, 1);
    assert!(
        !has(&c, |c| matches!(c, Command::ScheduleRetry { .. })),
        "the retry used before the crash counts"
    );
    assert_eq!(c.decides(), ["a: failed, attempt 2 on w1"]);
}

#[test]
fn on_resume_a_worker_whose_exit_was_accepted_from_disk_takes_the_next_task() {
    let (r, c) = resume_after_a_ended(&Sim::ready(TWO, 1), true, 0);
    assert_eq!(c.decides(), ["a: succeeded, attempt 1 on w1"]);
    assert_eq!(
        c.assigns(),
        [assigned("w1", "b", 1)],
        "w1 is free: b goes to it"
    );
    assert_eq!(r.runs("w1"), Some(("b", 1)));
    assert!(!has(&c, |c| matches!(
        c,
        Command::Kill { .. } | Command::KillGroup { .. }
    )));
}

#[test]
fn on_resume_a_worker_still_starting_registers_and_is_given_work() {
    let mut s = Sim::new(ONE, 1);
    s.start();
    let (mut r, c) = s.resume(Found {
        workers: vec![FoundWorker {
            id: "w1".into(),
            alive: true,
            ..Default::default()
        }],
        ..Default::default()
    });
    assert!(!has(&c, |c| matches!(c, Command::StopWorker { .. })));
    assert!(spawns(&c).is_empty(), "w1 is the pool");
    assert_eq!(r.e.worker_state("w1"), Some(WorkerState::Starting));
    assert_eq!(r.register("w1").assigns(), [assigned("w1", "a", 1)]);
}

#[test]
fn on_resume_adopted_workers_run_no_more_attempts_than_the_limit() {
    let mut s = Sim::new(THREE, 1);
    s.start();
    let (r, c) = s.resume(Found {
        workers: ["w1", "w2", "w3"]
            .iter()
            .map(|w| found_worker(w, true))
            .collect(),
        ..Default::default()
    });
    assert_eq!(c.assigns().len(), 1);
    assert_eq!(r.busy(), 1, "{:?}", r.e.live_workers().collect::<Vec<_>>());
}

#[test]
fn on_resume_each_command_is_given_once() {
    let s = Sim::ready(ONE, 1);
    // The fence holder's exit found on disk: its assignment is retired once.
    let (_, c) = resume_after_a_ended(&s, false, 0);
    assert_eq!(count(&c, |c| matches!(c, Command::Retire { .. })), 1);
    assert_eq!(count(&c, |c| matches!(c, Command::KillGroup { .. })), 0);
    // A dead fence holder without an exit: its group is killed once.
    let (_, c) = s.resume(Found {
        workers: vec![found_running_a("w1", 1, false)],
        ..Default::default()
    });
    assert_eq!(count(&c, |c| matches!(c, Command::KillGroup { .. })), 1);
}

/// A live worker that speaks another protocol version is never adopted: it is told to
/// stop, and the attempt it ran is lost with it (its group killed) and runs again on a
/// worker of ours.
#[test]
fn on_resume_a_worker_of_another_protocol_is_stopped_not_adopted() {
    let s = Sim::running_a(LONG);
    let (mut r, c) = s.resume(Found {
        workers: vec![FoundWorker {
            foreign: true,
            ..found_running_a("w1", 1, true)
        }],
        ..Default::default()
    });
    assert!(!has(&c, |c| matches!(
        c,
        Command::Journal(Event::WorkerAdopted { .. })
    )));
    assert!(has(&c, |c| matches!(c,
        Command::StopWorker { worker, .. } if worker == "w1")));
    assert!(has(&c, |c| matches!(c,
        Command::KillGroup { worker, task: 0, attempt: 1, .. } if worker == "w1")));
    assert_eq!(ended(&c, "a", 1), [EndReason::WorkerLost]);
    assert_eq!(spawns(&c), ["w2"]);
    assert_eq!(r.register("w2").assigns(), [assigned("w2", "a", 2)]);
}

/// A resume takes w1's exit of attempt 1 from `exit.json`; the worker's `exited` line,
/// appended after the resume read its journal, comes in next. It is the same exit:
/// nothing more is journalled. (It was journalled `stale_result`, so the journal called
/// the attempt whose exit decided the task superseded.)
#[test]
fn an_exit_taken_on_resume_then_read_from_the_worker_s_journal_is_one_exit() {
    let (mut r, c) = resume_after_a_ended(&Sim::running_a(LONG), true, 0);
    assert_eq!(c.decides(), ["a: succeeded, attempt 1 on w1"]);
    let again = r.exit("w1", "a", 1, 0);
    assert!(events(&again).is_empty(), "{:?}", again.cmds);
    assert_eq!(
        r.history.tasks["a"].attempt(1).map(|a| a.stale),
        Some(false)
    );
}

/// The same across orchestrators, with the task still open: one resume took the exit
/// (a failure, retried after a backoff); its line comes in under the next orchestrator,
/// rebuilt from the journal, which knows that exit was taken.
#[test]
fn an_exit_taken_by_an_earlier_resume_is_one_exit_under_the_next() {
    let backoff = "[defaults]\nretries = 1\nbackoff = { initial = \"10s\", jitter = 0 }\n";
    let mut s = Sim::with_more(ONE, backoff, 1);
    s.start();
    s.register("w1");
    s.begin("w1", "a", 1);
    let (r, c) = s.resume(Found {
        workers: vec![found_running_a("w1", 1, true)],
        exits: vec![found_exit("a", 1, "w1", 1)],
        ..Default::default()
    });
    assert!(has(&c, |c| matches!(
        c,
        Command::ScheduleRetry {
            failed_attempt: 1,
            ..
        }
    )));
    let (mut r2, _) = r.resume(Found {
        workers: vec![found_worker("w1", true)],
        ..Default::default()
    });
    let again = r2.exit("w1", "a", 1, 1);
    assert!(events(&again).is_empty(), "{:?}", again.cmds);
    assert_eq!(r2.advance(10_000).assigns(), [assigned("w1", "a", 2)]);
    assert_eq!(
        r2.run("w1", "a", 2, 0).decides(),
        ["a: succeeded, attempt 2 on w1"]
    );
}

/// A superseded attempt's late exit found on disk is refused once, under the name of the
/// worker its record names (its `started` line is not collected once the exit is on
/// disk); read again when that worker's journal comes in, it is not refused twice.
#[test]
fn a_late_exit_found_on_resume_is_refused_once_and_names_its_worker() {
    let mut s = Sim::running_a(LEASE);
    s.advance(10_001);
    assert_eq!(s.register("w2").assigns(), [assigned("w2", "a", 2)]);
    s.begin("w2", "a", 2);
    let (mut r, c) = s.resume(Found {
        workers: vec![
            FoundWorker {
                stopped: true,
                claimed: vec![("a".into(), 1)],
                ..found_worker("w1", true)
            },
            found_running_a("w2", 2, true),
        ],
        exits: vec![found_exit("a", 1, "w1", 0)],
        ..Default::default()
    });
    assert_eq!(stale_results(&c), [("a".into(), 1, Some("w1".into()))]);
    let again = r.on(Fact::WorkerDied {
        worker: "w1".into(),
        how: DeathCause::Died,
        exits: vec![found_exit("a", 1, "w1", 0)],
    });
    assert!(stale_results(&again).is_empty(), "{:?}", again.cmds);
    assert_eq!(
        r.exit("w2", "a", 2, 0).decides(),
        ["a: succeeded, attempt 2 on w2"]
    );
}

// ---- journals with numbers at the end of their range ----
//
// A journal is read back as it is; one damaged (or edited) to carry the largest number a
// field holds must resume without an arithmetic overflow (a panic in a debug build, a
// number wrapped to 0 in a release build). Found by the `journal` fuzz target's checks.

/// The session of one task `a` whose journal holds `events`, resumed with nothing on
/// disk, started, and every worker it spawns registered.
fn resumed_with(events: &[Event]) -> (Sim, Cmds) {
    let mut s = Sim::new(ONE, 1);
    for ev in events {
        s.history.apply(ev);
    }
    let (mut r, _) = s.resume(Found::default());
    r.start();
    let c = r.register_all();
    (r, c)
}

/// Attempt `attempt` of `a` assigned (with `seq`) and lost with its worker `w1`.
fn lost_attempt(attempt: u32, seq: u64) -> [Event; 2] {
    [
        Event::TaskAssigned {
            task: "a".into(),
            attempt,
            worker: "w1".into(),
            seq,
        },
        Event::AttemptEnded {
            task: "a".into(),
            attempt,
            worker: Some("w1".into()),
            reason: EndReason::WorkerLost,
        },
    ]
}

#[test]
fn a_journal_with_the_largest_assignment_seq_resumes_and_assigns() {
    let (_, c) = resumed_with(&lost_attempt(1, u64::MAX));
    assert_eq!(c.assigns(), [assigned("w1", "a", 2)]);
    assert!(has(&c, |c| matches!(
        c,
        Command::Assign { seq: u64::MAX, .. }
    )));
}

#[test]
fn a_journal_naming_the_largest_worker_number_resumes_with_new_worker_ids() {
    let spawned = |w: &str| Event::WorkerSpawned {
        worker: w.into(),
        launcher: "background".into(),
        terminal: None,
    };
    let (_, c) = resumed_with(&[spawned("w4294967295"), spawned("w7")]);
    assert_eq!(c.assigns(), [assigned("w4294967296", "a", 1)]);
    let (_, c) = resumed_with(&[spawned("w4294967294")]);
    assert_eq!(c.assigns(), [assigned("w4294967295", "a", 1)]);
}

#[test]
fn a_task_whose_journal_used_the_last_attempt_number_fails_instead_of_running_again() {
    let (r, c) = resumed_with(&lost_attempt(u32::MAX, 1));
    assert!(c.assigns().is_empty());
    let d = decisions(&c);
    assert_eq!(d.len(), 1, "{:?}", c.cmds);
    assert_eq!((d[0].state, d[0].attempt), (TaskState::Failed, u32::MAX));
    assert_eq!(
        d[0].reason.as_deref(),
        Some("no attempt number is left after attempt 4294967295")
    );
    assert_eq!(r.e.decided(r.ix("a")), Some(TaskState::Failed));
}

#[test]
fn a_withdrawn_attempt_0_of_a_damaged_journal_resumes_without_underflow() {
    // The journal fenced attempt 0 (the engine numbers attempts from 1), and the
    // directory held its unclaimed assignment `a.0`.
    let mut s = Sim::new(ONE, 1);
    s.history.apply(&Event::TaskAssigned {
        task: "a".into(),
        attempt: 0,
        worker: "w1".into(),
        seq: 1,
    });
    let (mut r, c) = s.resume(Found {
        workers: vec![FoundWorker {
            withdrawn: vec![("a".into(), 0)],
            ..found_worker("w1", false)
        }],
        ..Default::default()
    });
    assert!(has(&c, |c| matches!(
        c,
        Command::Journal(Event::TaskWithdrawn { attempt: 0, .. })
    )));
    r.start();
    assert_eq!(r.register_all().assigns(), [assigned("w2", "a", 1)]);
}
