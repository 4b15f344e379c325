//! Partial runs (`run --only`/`--skip`): the tasks left out are decided `excluded` at the
//! start, count as satisfied for their dependents, do not make the session fail, and a
//! resumed engine keeps them decided from the journal.

use super::*;
use crate::plan::Exclusion::{NotSelected, Skipped};

/// An engine over `spec` (as for [`dag`]) with `excluded` as its selection, one worker.
fn partial(spec: &str, more: &str, excluded: Vec<Option<crate::plan::Exclusion>>) -> Sim {
    let cfg = Config {
        excluded,
        ..Config::new(1, LONG)
    };
    Sim::with(&(dag(spec) + more), cfg)
}

/// `a, b after a, c after b` with `a` skipped by request.
fn chain_skipping_a() -> Sim {
    partial(
        "a, b after a, c after b",
        "",
        vec![Some(Skipped), None, None],
    )
}

/// `(task, reason)` of every `task_excluded` line.
fn excluded(c: &[Command]) -> Vec<(String, String)> {
    events(c)
        .into_iter()
        .filter_map(|e| match e {
            Event::TaskExcluded { task, reason } => Some((task.clone(), reason.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_skipped_task_is_decided_at_the_start_and_its_dependents_run() {
    let mut s = chain_skipping_a();
    let c = s.start();
    assert_eq!(c.decides(), ["a: excluded"]);
    assert_eq!(
        excluded(&c),
        [("a".to_string(), "skipped by request (--skip)".to_string())]
    );
    let d = decisions(&c)[0];
    assert_eq!(
        (d.attempt, &d.worker, d.reason.as_deref(), d.marks),
        (0, &None, Some("skipped by request (--skip)"), false)
    );
    let c = s.register_all();
    assert_eq!(c.assigns(), [assigned("w1", "b", 1)]);
    let c = s.run("w1", "b", 1, 0);
    assert_eq!(c.assigns(), [assigned("w1", "c", 1)]);
    let c = s.run("w1", "c", 1, 0);
    assert_eq!(finish(&c), Some(SessionState::Succeeded));
    let counts: Vec<_> = s.e.counts().into_iter().collect();
    assert_eq!(
        counts,
        [(TaskState::Succeeded, 2), (TaskState::Excluded, 1)]
    );
    assert_eq!(s.history.tasks["a"].decided, Some(TaskState::Excluded));
}

#[test]
fn only_runs_the_selected_tasks_and_ends_succeeded() {
    let mut s = partial(
        "a, b after a, c, d after b",
        "",
        vec![None, None, Some(NotSelected), Some(NotSelected)],
    );
    let c = s.start();
    assert_eq!(c.decides(), ["c: excluded", "d: excluded"]);
    assert_eq!(
        excluded(&c),
        [
            ("c".to_string(), "not selected (--only)".to_string()),
            ("d".to_string(), "not selected (--only)".to_string())
        ]
    );
    s.register_all();
    let c = s.run("w1", "a", 1, 0);
    assert_eq!(c.assigns(), [assigned("w1", "b", 1)]);
    let c = s.run("w1", "b", 1, 0);
    assert!(c.assigns().is_empty());
    assert_eq!(finish(&c), Some(SessionState::Succeeded));
    let runs = count(&s.log, |c| matches!(c, Command::Assign { .. }));
    assert_eq!(runs, 2, "only a and b ran");
}

#[test]
fn a_failure_of_a_task_that_runs_still_fails_the_session() {
    let mut s = chain_skipping_a();
    s.start();
    s.register_all();
    let c = s.run("w1", "b", 1, 1);
    assert_eq!(c.decides(), ["b: failed, attempt 1 on w1", "c: skipped"]);
    assert_eq!(finish(&c), Some(SessionState::Failed));
}

#[test]
fn a_resumed_engine_keeps_the_selection_from_the_journal() {
    let mut s = chain_skipping_a();
    s.start();
    s.register_all();
    s.run("w1", "b", 1, 0);
    // The orchestrator dies while c is assigned; a new one takes over. Its config still
    // carries the selection in this harness: the journal alone must decide.
    let (mut r, c) = s.resume(Found::default());
    assert!(
        c.decides().iter().all(|d| !d.starts_with("a:")),
        "a stays decided"
    );
    assert!(excluded(&c).is_empty(), "nothing is excluded again");
    assert_eq!(r.e.decided(r.ix("a")), Some(TaskState::Excluded));
    r.start();
    let c = r.register_all();
    // w1 is gone with attempt 1: c gets attempt 2.
    assert_eq!(
        c.assigns(),
        [assigned("w2", "c", 2)],
        "c moves on, a never runs"
    );
    let c = r.run("w2", "c", 2, 0);
    assert_eq!(finish(&c), Some(SessionState::Succeeded));
    let ran_a = count(&r.log, |c| matches!(c, Command::Assign { task: 0, .. }));
    assert_eq!(ran_a, 0);
}

#[test]
fn a_race_whose_members_are_all_skipped_is_satisfied_for_what_follows() {
    let race = "[[race]]\nid = \"r\"\ntasks = [\"a\", \"b\"]\npick = \"first\"\n";
    let mut s = partial(
        "a, b, d after r",
        race,
        vec![Some(Skipped), Some(Skipped), None],
    );
    let c = s.start();
    assert_eq!(c.decides(), ["a: excluded", "b: excluded"]);
    assert!(
        !has(&c, |c| matches!(c, Command::DecideRace { .. })),
        "nothing ran: the race has no outcome"
    );
    let c = s.register_all();
    assert_eq!(c.assigns(), [assigned("w1", "d", 1)]);
    // A resume before d ends finds the race satisfied from the excluded members.
    let (mut r, _) = s.resume(Found::default());
    r.start();
    let c = r.register_all();
    assert_eq!(c.assigns(), [assigned("w2", "d", 2)]);
    let c = r.run("w2", "d", 2, 0);
    assert_eq!(finish(&c), Some(SessionState::Succeeded));
}

#[test]
fn a_race_with_one_member_skipped_is_run_among_the_others() {
    let race = "[[race]]\nid = \"r\"\ntasks = [\"a\", \"b\"]\npick = \"first\"\n";
    let mut s = partial("a, b, d after r", race, vec![Some(Skipped), None, None]);
    s.start();
    let c = s.register_all();
    assert_eq!(c.assigns(), [assigned("w1", "b", 1)]);
    let c = s.run("w1", "b", 1, 0);
    assert!(has(&c, |c| matches!(c,
        Command::DecideRace { winner: Some(1), losers, .. } if losers.is_empty())));
    assert_eq!(c.assigns(), [assigned("w1", "d", 1)]);
}

// A crash while the selection was being decided, task by task, let a resume run the
// tasks whose `task_excluded` line was not written yet: the whole selection is journalled
// first now, and a resume decides what is left of it.
#[test]
fn a_crash_between_the_selection_and_its_decisions_leaves_nothing_to_run() {
    let text = dag("a, b, c after b");
    let mut h = History::default();
    h.apply(&Event::Selection {
        excluded: vec![("a".into(), Skipped), ("b".into(), Skipped)],
    });
    h.apply(&Event::TaskExcluded {
        task: "a".into(),
        reason: "skipped by request (--skip)".into(),
    });
    let cfg = Config::new(1, LONG);
    let e = Engine::restore(plan(&text), cfg.clone(), &h, 1, Instant::now(), UNIX0);
    let mut r = Sim::over(e, cfg, h);
    let c = r.start();
    assert_eq!(c.decides(), ["b: excluded"]);
    let c = r.register_all();
    assert_eq!(c.assigns(), [assigned("w1", "c", 1)], "only c runs");
}
