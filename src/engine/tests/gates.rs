//! Gates that wait for a person: a gate waits (journalled once) when every task of its
//! `after` succeeded; approval starts the tasks after it; rejection skips them and
//! applies the failure policy; a gate whose tasks failed never waits; nothing is called
//! stalled while a gate waits; a resumed engine keeps what the journal says.

use super::*;

/// `a`, then gate `g` (after `a`), then `b` after the gate; `c` independent.
fn gated(extra_root: &str) -> String {
    format!(
        "name = \"p\"\n{extra_root}{}{}{}[[gate]]\nid = \"g\"\nafter = [\"a\"]\napprove = true\n",
        task_toml("a", &[], ""),
        task_toml("b", &["gate:g".into()], ""),
        task_toml("c", &["signal:never".into()], ""),
    )
}

fn sim(text: &str) -> Sim {
    let mut s = Sim::with(text, Config::new(1, LONG));
    s.start();
    s.register_all();
    s
}

fn waiting(c: &[Command]) -> Vec<String> {
    c.iter()
        .filter_map(|c| match c {
            Command::Journal(Event::GateWaiting { gate }) => Some(gate.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_gate_waits_once_its_tasks_succeeded_and_approval_starts_what_follows() {
    let mut s = sim(&gated(""));
    let c = s.control("r0", ControlAction::Approve, Some("g"));
    assert_eq!(
        reply(&c),
        Some((
            false,
            "gate g is not waiting yet: the tasks before it have not all succeeded".into()
        ))
    );
    s.begin("w1", "a", 1);
    let c = s.exit("w1", "a", 1, 0);
    assert_eq!(waiting(&c), ["g"]);
    assert!(c.assigns().is_empty(), "b waits for the approval");
    let c = s.advance(10_000);
    assert!(waiting(&c).is_empty(), "journalled once");
    assert!(
        !has(&c, |c| matches!(
            c,
            Command::Journal(Event::SignalNeverRaised { .. })
        )),
        "nothing is stalled while a person is asked"
    );
    let c = s.control("r1", ControlAction::Approve, Some("g"));
    assert_eq!(
        reply(&c),
        Some((true, "gate g approved; 1 task may start".into()))
    );
    assert_eq!(c.assigns(), [assigned("w1", "b", 1)]);
    let c = s.control("r2", ControlAction::Approve, Some("g"));
    assert_eq!(
        reply(&c),
        Some((false, "gate g was already approved".into()))
    );
}

#[test]
fn a_rejection_skips_what_follows_and_stops_a_stopping_plan() {
    let mut s = sim(&gated("on_failure = \"stop\"\n"));
    s.begin("w1", "a", 1);
    s.exit("w1", "a", 1, 0);
    let reason = ControlAction::Reject {
        reason: "row counts differ".into(),
    };
    let c = s.control("r1", reason, Some("g"));
    assert_eq!(
        reply(&c),
        Some((true, "gate g rejected; 1 task after it will not run".into()))
    );
    assert!(has(&c, |c| matches!(c,
        Command::Journal(Event::TaskSkipped { task, reason })
            if task == "b" && reason == "gate g was rejected: row counts differ")));
    assert!(has(&c, |c| matches!(c,
        Command::Journal(Event::SessionDraining { why })
            if why == "gate g was rejected (on_failure = stop)")));
}

#[test]
fn a_gate_whose_task_failed_never_waits() {
    let mut s = sim(&gated(""));
    s.begin("w1", "a", 1);
    let c = s.exit("w1", "a", 1, 1);
    assert!(waiting(&c).is_empty());
    assert!(
        c.decides().contains(&"b: skipped".to_string()),
        "{:?}",
        c.decides()
    );
    let c = s.control("r1", ControlAction::Approve, Some("g"));
    assert_eq!(
        reply(&c),
        Some((
            false,
            "gate g will never wait: a task before it did not succeed".into()
        ))
    );
    let c = s.control("r2", ControlAction::Approve, Some("nope"));
    assert_eq!(
        reply(&c),
        Some((false, "the session has no gate \"nope\"".into()))
    );
}

#[test]
fn a_resumed_engine_keeps_a_waiting_gate_and_an_approval_it_journalled() {
    let mut s = sim(&gated(""));
    s.begin("w1", "a", 1);
    s.exit("w1", "a", 1, 0);
    let found = || Found {
        workers: vec![found_worker("w1", true)],
        exits: Vec::new(),
        outcomes: vec![("a".into(), TaskState::Succeeded)],
    };
    let (mut r, c) = s.resume(found());
    assert!(
        waiting(&c).is_empty(),
        "still waiting: not journalled again"
    );
    assert!(c.assigns().is_empty());
    let c = r.control("r1", ControlAction::Approve, Some("g"));
    assert_eq!(c.assigns(), [assigned("w1", "b", 1)]);
    let (_r2, c) = r.resume(Found {
        workers: vec![found_worker("w1", true)],
        exits: Vec::new(),
        outcomes: vec![("a".into(), TaskState::Succeeded)],
    });
    assert!(waiting(&c).is_empty(), "approved before the crash");
}
