//! Draining (`orchestrator stop`, and a failure under `on_failure = "stop"`): no new
//! starts, running attempts finish, then what is left is decided and the session ends;
//! a resumed engine goes on draining.

use super::*;

fn finish_of(c: &[Command]) -> Option<SessionState> {
    c.iter().find_map(|c| match c {
        Command::Finish(s) => Some(*s),
        _ => None,
    })
}

fn drains(c: &[Command]) -> Vec<String> {
    c.iter()
        .filter_map(|c| match c {
            Command::Journal(Event::SessionDraining { why }) => Some(why.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_failure_under_on_failure_stop_lets_running_attempts_finish_and_starts_nothing() {
    // `on_failure` is a root key: it must come before the tables.
    let text = format!("on_failure = \"stop\"\n{}", dag("a, b, c, d"));
    let mut s = Sim::with(&text, Config::new(2, LONG));
    s.start();
    s.register_all();
    s.begin("w1", "a", 1);
    s.begin("w2", "b", 1);
    let c = s.exit("w1", "a", 1, 1);
    assert_eq!(drains(&c), ["task a failed (on_failure = stop)"]);
    assert!(c.assigns().is_empty(), "nothing starts after the failure");
    assert_eq!(finish_of(&c), None, "b still runs");
    let c = s.exit("w2", "b", 1, 0);
    assert_eq!(
        c.decides(),
        [
            "b: succeeded, attempt 1 on w2",
            "c: cancelled",
            "d: cancelled"
        ]
    );
    assert_eq!(finish_of(&c), Some(SessionState::Failed));
}

#[test]
fn a_task_may_keep_continue_under_a_stopping_plan() {
    let text = format!(
        "on_failure = \"stop\"\n{}on_failure = \"continue\"\n{}",
        task_toml("a", &[], ""),
        task_toml("b", &[], "")
    );
    let mut s = Sim::with(&format!("name = \"p\"\n{text}"), Config::new(1, LONG));
    s.start();
    s.register_all();
    s.begin("w1", "a", 1);
    let c = s.exit("w1", "a", 1, 1);
    assert!(drains(&c).is_empty());
    assert_eq!(c.assigns(), [assigned("w1", "b", 1)]);
}

#[test]
fn stop_drains_and_a_task_waiting_for_its_retry_ends_failed() {
    let text = dag("a, b, c after b") + "[defaults]\nretries = 1\n";
    let mut s = Sim::with(&text, Config::new(2, LONG));
    s.start();
    s.register_all();
    let (wa, wb) = (s.holder("a"), s.holder("b"));
    s.begin(&wa, "a", 1);
    s.begin(&wb, "b", 1);
    s.exit(&wa, "a", 1, 1); // a waits for its retry
    let c = s.control("s1", ControlAction::Stop, None);
    assert!(has(&c, |c| matches!(c,
        Command::Reply { id, ok: true, message } if id == "s1"
            && message == "session stopping: no new starts; 1 running attempt will finish")));
    assert_eq!(drains(&c), ["stop requested"]);
    let c = s.advance(60_000);
    assert!(c.assigns().is_empty(), "no retry starts while draining");
    let c = s.exit(&wb, "b", 1, 0);
    assert_eq!(
        c.decides(),
        [
            format!("b: succeeded, attempt 1 on {wb}"),
            "a: failed, attempt 1".to_string(),
            "c: cancelled".to_string()
        ]
    );
    assert_eq!(finish_of(&c), Some(SessionState::Failed));
}

#[test]
fn stop_of_a_task_or_of_a_stopping_session_is_refused() {
    let mut s = Sim::ready("a, b", 1);
    s.begin("w1", "a", 1);
    s.control("s1", ControlAction::Stop, Some("a"));
    let c = s.withdrawn("w1", "b", 1, true);
    assert!(has(
        &c,
        |c| matches!(c, Command::Reply { ok: false, message, .. }
        if message == "stop drains the whole session; to stop one task, cancel it")
    ));
    // Refused, the request let the queue fill again: b is queued behind a once more.
    s.control("s2", ControlAction::Stop, None);
    s.withdrawn("w1", "b", 1, true);
    let c = s.control("s3", ControlAction::Stop, None);
    assert!(has(
        &c,
        |c| matches!(c, Command::Reply { ok: false, message, .. }
        if message == "the session is already stopping")
    ));
    let c = s.exit("w1", "a", 1, 0);
    assert_eq!(
        finish_of(&c),
        Some(SessionState::Cancelled),
        "b was cancelled"
    );
}

#[test]
fn a_resumed_engine_goes_on_draining() {
    let mut s = Sim::ready("a, b", 1);
    s.begin("w1", "a", 1);
    s.control("s1", ControlAction::Stop, None);
    s.withdrawn("w1", "b", 1, true);
    let (mut r, c) = s.resume(Found {
        workers: vec![found_running_a("w1", 1, true)],
        exits: Vec::new(),
        outcomes: Vec::new(),
    });
    assert!(c.assigns().is_empty());
    assert_eq!(finish_of(&c), None);
    let c = r.exit("w1", "a", 1, 0);
    assert!(c.assigns().is_empty(), "b never starts");
    assert_eq!(
        c.decides(),
        ["a: succeeded, attempt 1 on w1", "b: cancelled"]
    );
    assert_eq!(finish_of(&c), Some(SessionState::Cancelled));
}
