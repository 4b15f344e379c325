//! Freezing: `freeze` tells every worker to stop its attempt's group and starts nothing,
//! and the session does not end by itself while frozen; `thaw` lets it go on; `cancel`
//! of a frozen session thaws it first (stopped groups must run to die); a resumed engine
//! stays frozen.

use super::*;

fn freezes(c: &[Command]) -> Vec<bool> {
    c.iter()
        .filter_map(|c| match c {
            Command::Freeze(on) => Some(*on),
            _ => None,
        })
        .collect()
}

#[test]
fn a_frozen_session_starts_nothing_until_it_is_thawed() {
    let mut s = Sim::ready("a, b after a", 1);
    s.begin("w1", "a", 1);
    let c = s.control("f1", ControlAction::Freeze, None);
    assert_eq!(freezes(&c), [true]);
    assert_eq!(
        reply(&c),
        Some((
            true,
            "session frozen: 1 running attempt stopped where it is; `thaw` goes on, `cancel` ends it"
                .into()
        ))
    );
    // An exit that was on its way is accepted; nothing new starts.
    let c = s.exit("w1", "a", 1, 0);
    assert!(c.assigns().is_empty());
    let c = s.control("f2", ControlAction::Freeze, None);
    assert_eq!(
        reply(&c),
        Some((false, "only a running session can be frozen".into()))
    );
    let c = s.control("t1", ControlAction::Thaw, None);
    assert_eq!(freezes(&c), [false]);
    assert_eq!(c.assigns(), [assigned("w1", "b", 1)]);
    let c = s.control("t2", ControlAction::Thaw, None);
    assert_eq!(reply(&c), Some((false, "the session is not frozen".into())));
}

#[test]
fn cancelling_a_frozen_session_thaws_it_so_its_groups_can_die() {
    let mut s = Sim::ready("a", 1);
    s.begin("w1", "a", 1);
    s.control("f1", ControlAction::Freeze, None);
    let c = s.control("c1", ControlAction::Cancel, None);
    assert_eq!(freezes(&c), [false]);
    assert!(has(&c, |c| matches!(c, Command::Kill { .. })));
}

#[test]
fn a_resumed_engine_stays_frozen() {
    let mut s = Sim::ready("a, b", 1);
    s.begin("w1", "a", 1);
    // b is queued behind a: the freeze waits until it is taken back.
    s.control("f1", ControlAction::Freeze, None);
    let c = s.withdrawn("w1", "b", 1, true);
    assert_eq!(freezes(&c), [true]);
    let (mut r, c) = s.resume(Found {
        workers: vec![found_running_a("w1", 1, true)],
        exits: Vec::new(),
        outcomes: Vec::new(),
    });
    assert!(c.assigns().is_empty());
    let c = r.exit("w1", "a", 1, 0);
    assert!(c.assigns().is_empty(), "b waits for the thaw");
    assert!(!has(&c, |c| matches!(c, Command::Finish(_))));
    let c = r.control("t1", ControlAction::Thaw, None);
    assert_eq!(c.assigns(), [assigned("w1", "b", 1)]);
}
