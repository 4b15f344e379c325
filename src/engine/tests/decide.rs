//! The rules of `engine/decide.rs`: a failed attempt is retried after its backoff until
//! its retries are used; a failure skips its dependents only; only the fence holder's
//! exit decides (a superseded attempt's is journalled stale); races are won by the first
//! success or the best score; the session's final state follows from its tasks.

use serde_json::json;

use super::*;

#[test]
fn a_failed_attempt_is_retried_at_its_backoff_deadline_not_before() {
    let backoff =
        "[defaults]\nretries = 2\nbackoff = { initial = \"1s\", factor = 2, jitter = 0 }\n";
    let mut s = Sim::with_more(ONE, backoff, 1);
    s.start();
    s.register("w1");
    let c = s.run("w1", "a", 1, 1);
    assert!(has(&c, |c| matches!(c,
        Command::ScheduleRetry { task: 0, failed_attempt: 1, delay_ms: 1000, reason }
            if reason == "exited with code 1")));
    assert!(decisions(&c).is_empty());
    assert_eq!(ended(&c, "a", 1), [EndReason::Failed]);
    assert!(!has(&c, |c| matches!(c, Command::StopWorker { .. })));
    assert_eq!(
        s.e.next_deadline(),
        Some(s.now() + Duration::from_millis(1000))
    );
    assert!(
        s.advance(999).assigns().is_empty(),
        "not before the deadline"
    );
    assert_eq!(s.advance(1).assigns(), [assigned("w1", "a", 2)], "at it");
    let c = s.run("w1", "a", 2, 1);
    assert!(has(&c, |c| matches!(
        c,
        Command::ScheduleRetry {
            failed_attempt: 2,
            delay_ms: 2000,
            ..
        }
    )));
    assert!(s.advance(1999).assigns().is_empty());
    assert_eq!(s.advance(1).assigns(), [assigned("w1", "a", 3)]);
    let c = s.run("w1", "a", 3, 1);
    assert!(!has(&c, |c| matches!(c, Command::ScheduleRetry { .. })));
    assert_eq!(c.decides(), ["a: failed, attempt 3 on w1"]);
    assert_eq!(finish(&c), Some(SessionState::Failed));
}

#[test]
fn a_failure_skips_its_dependents_but_not_an_independent_branch() {
    let mut s = Sim::new("a, b after a, c after b, x, y after x", 2);
    s.start();
    assert_eq!(
        s.register_all().assigns(),
        [assigned("w1", "a", 1), assigned("w2", "x", 1)]
    );
    let c = s.run("w1", "a", 1, 1);
    assert_eq!(
        c.decides(),
        ["a: failed, attempt 1 on w1", "b: skipped", "c: skipped",]
    );
    assert!(has(&c, |c| matches!(c,
        Command::Journal(Event::TaskSkipped { task, reason })
            if task == "c" && reason == "dependency a did not succeed")));
    assert!(finish(&c).is_none(), "x and y still run");
    let c = s.run("w2", "x", 1, 0);
    assert_eq!(c.assigns().len(), 1);
    assert_eq!(c.assigns()[0].1, "y");
    let w = c.assigns()[0].0.clone();
    let c = s.run(&w, "y", 1, 0);
    assert_eq!(c.decides(), [format!("y: succeeded, attempt 1 on {w}")]);
    assert_eq!(finish(&c), Some(SessionState::Failed));
}

#[test]
fn an_exit_from_a_superseded_attempt_is_journalled_stale_and_never_decides() {
    let mut s = Sim::running_a(LEASE);
    // w1 is stuck past its lease: attempt 1 is superseded, attempt 2 goes to w2.
    s.advance(10_001);
    assert_eq!(s.e.worker_state("w1"), Some(WorkerState::Gone));
    assert_eq!(s.register("w2").assigns(), [assigned("w2", "a", 2)]);
    // w1 comes back and reports attempt 1 as a success: refused.
    let c = s.exit("w1", "a", 1, 0);
    assert_eq!(stale_results(&c), [("a".into(), 1, Some("w1".into()))]);
    assert!(has(&c, |c| matches!(
        c,
        Command::Journal(Event::StaleResult {
            exit_code: Some(0),
            current_attempt: 2,
            ..
        })
    )));
    assert_eq!(ended(&c, "a", 1), [EndReason::Stale]);
    assert!(decisions(&c).is_empty());
    assert_eq!(s.e.decided(0), None);
    assert_eq!(s.e.fence(0), Some((2, "w2")));
    // The fence holder decides, even with a worse result.
    let c = s.run("w2", "a", 2, 1);
    assert_eq!(c.decides(), ["a: failed, attempt 2 on w2"]);
}

#[test]
fn the_session_fails_when_a_task_failed_even_if_another_was_cancelled() {
    let mut s = Sim::ready("a, c", 2);
    s.begin("w2", "c", 1);
    s.control("k1", ControlAction::Cancel, Some("c"));
    assert_eq!(s.e.decided(1), Some(TaskState::Cancelled));
    let c = s.run("w1", "a", 1, 1);
    assert_eq!(finish(&c), Some(SessionState::Failed));
}

// ---- races ----

#[test]
fn a_first_race_is_won_by_the_first_success_and_its_losers_are_stopped() {
    let race = "[[race]]\nid = \"r\"\ntasks = [\"a\", \"b\"]\npick = \"first\"\n";
    let mut s = Sim::with_more("a, b, d after r", race, 2);
    s.start();
    s.register_all();
    let (wa, wb) = (s.holder("a"), s.holder("b"));
    s.begin(&wa, "a", 1);
    assert!(
        s.begin(&wb, "b", 1).assigns().is_empty(),
        "nothing is queued in a plan with races"
    );
    let c = s.exit(&wa, "a", 1, 0);
    let b = s.ix("b");
    assert!(has(&c, |c| matches!(c,
        Command::Kill { worker, task, attempt: 1, reason: KillReason::Lost }
            if *worker == wb && *task == b)));
    let won = format!("a: succeeded, attempt 1 on {wa}");
    assert_eq!(c.decides(), [won.as_str(), "b: lost, attempt 1"]);
    assert!(has(&c, |c| matches!(c,
        Command::DecideRace { race: 0, winner: Some(0), losers, .. } if *losers == [b])));
    assert_eq!(s.e.decided(b), Some(TaskState::Lost));
    assert_eq!(c.assigns().len(), 1);
    assert_eq!(c.assigns()[0].1, "d");
    let c = s.exit_rec(killed("b", 1, &wb, KillReason::Lost), None);
    assert!(decisions(&c).is_empty());
    assert_eq!(stale_results(&c).len(), 1);
    let wd = s.holder("d");
    let c = s.run(&wd, "d", 1, 0);
    assert_eq!(
        finish(&c),
        Some(SessionState::Succeeded),
        "a race loser is not a failure"
    );
}

#[test]
fn a_best_race_waits_for_every_member_and_the_highest_score_wins() {
    let race = "[[race]]\nid = \"r\"\ntasks = [\"a\", \"b\", \"c\"]\npick = \"best\"\nscore = \"/score\"\n";
    let mut s = Sim::with_more(THREE, race, 3);
    s.start();
    s.register_all();
    let mut last = Vec::new();
    for (t, score) in [("a", 1.0), ("b", 3.0), ("c", 2.0)] {
        let w = s.holder(t);
        s.begin(&w, t, 1);
        last = s
            .exit_rec(record(t, 1, &w, Some(0)), Some(json!({ "score": score })))
            .cmds;
        if t != "c" {
            assert!(
                decisions(&last).is_empty(),
                "held until the race is decided"
            );
        }
    }
    let d = decisions(&last);
    let state = |t: TaskIx| d.iter().find(|d| d.task == t).map(|d| (d.state, d.marks));
    assert_eq!(state(1), Some((TaskState::Succeeded, true)));
    assert_eq!(state(0), Some((TaskState::Lost, false)));
    assert_eq!(state(2), Some((TaskState::Lost, false)));
    assert!(has(&last, |c| matches!(c,
        Command::DecideRace { winner: Some(1), score: Some(sc), losers, .. }
            if *sc == 3.0 && *losers == [0, 2])));
    assert_eq!(finish(&last), Some(SessionState::Succeeded));
    assert_eq!(s.e.counts()[&TaskState::Lost], 2);
}
