//! The rules of `engine/prims.rs` about signals: a task after a signal starts once it is
//! raised; a signal no one can raise any more (the stall) skips its waiters only after a
//! rescan and a fresh look, and a signal raised before that look saves them.

use super::*;

const SIGNALLED: &str = "a, b after signal:go";

#[test]
fn a_task_after_a_signal_starts_once_the_signal_is_raised() {
    let mut s = Sim::new(SIGNALLED, 2);
    s.start();
    assert_eq!(s.register_all().assigns(), [assigned("w1", "a", 1)]);
    assert_eq!(s.e.open_signals(), ["go"]);
    assert!(s.on(Fact::Tick).assigns().is_empty());
    let c = s.on(Fact::Primitives(PrimScan {
        raised: vec!["go".into()],
        ..Default::default()
    }));
    assert!(has(&c, |c| matches!(c,
        Command::Journal(Event::SignalRaised { signal }) if signal == "go")));
    assert_eq!(c.assigns(), [assigned("w2", "b", 1)]);
    assert!(s.e.open_signals().is_empty());
}

#[test]
fn a_stall_skips_its_waiters_only_after_a_rescan_and_a_fresh_look() {
    let mut s = Sim::ready(SIGNALLED, 1);
    let c = s.run("w1", "a", 1, 0);
    assert!(has(&c, |c| matches!(c, Command::Rescan)));
    assert_eq!(s.e.decided(1), None, "one look is not enough");
    let c = s.advance(1000);
    assert!(decisions(&c).is_empty());
    assert!(!has(&c, |c| matches!(c, Command::Rescan)));
    let c = s.on(Fact::Primitives(PrimScan::default()));
    assert!(has(&c, |c| matches!(c,
        Command::Journal(Event::SignalNeverRaised { signal }) if signal == "go")));
    assert_eq!(c.decides(), ["b: skipped"]);
    assert_eq!(
        decisions(&c)[0].reason.as_deref(),
        Some("signal go was never raised")
    );
    assert_eq!(finish(&c), Some(SessionState::Failed));
}

#[test]
fn a_signal_raised_before_the_fresh_look_saves_its_waiters() {
    let mut s = Sim::ready(SIGNALLED, 1);
    let c = s.run("w1", "a", 1, 0);
    assert!(has(&c, |c| matches!(c, Command::Rescan)));
    let c = s.on(Fact::Primitives(PrimScan {
        raised: vec!["go".into()],
        ..Default::default()
    }));
    assert!(decisions(&c).is_empty());
    assert_eq!(c.assigns(), [assigned("w1", "b", 1)]);
    let c = s.run("w1", "b", 1, 0);
    assert_eq!(finish(&c), Some(SessionState::Succeeded));
}
