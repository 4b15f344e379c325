//! The rules of `engine/grow.rs`: tasks added to a live session run after what they name,
//! are decided at once behind a dependency that failed, wait while the session is frozen,
//! are refused once it stops or ends, and a resumed engine keeps them.

use super::*;

impl Sim {
    /// Ask to add the tasks of `text` (a file of `[[task]]` tables).
    fn add(&mut self, id: &str, text: &str) -> Cmds {
        let tasks = self
            .e
            .plan()
            .parse_added("more.toml", text, Path::new("/tmp"))
            .expect("valid tasks to add");
        self.on(Fact::Add {
            id: id.into(),
            tasks,
        })
    }
}

/// `e` after `a` (running), `f` after `b` (succeeded) and `g` after `e`.
const MORE: &str = "[[task]]\nid = \"e\"\nrun = \"true\"\nafter = [\"a\"]\n\
                    [[task]]\nid = \"f\"\nrun = \"true\"\nafter = [\"b\"]\n\
                    [[task]]\nid = \"g\"\nrun = \"true\"\nafter = [\"e\"]\n";

#[test]
fn added_tasks_run_after_what_they_name_and_the_plan_is_written_before_its_line() {
    let mut s = Sim::ready(TWO, 2);
    s.begin("w1", "a", 1);
    s.run("w2", "b", 1, 0);
    let c = s.add("r1", MORE);
    let saved = position(&c, |c| matches!(c, Command::SavePlan));
    let line = position(
        &c,
        |c| matches!(c, Command::Journal(Event::TasksAdded { tasks }) if tasks == &["e", "f", "g"]),
    );
    assert!(saved < line, "{:?}", c.cmds);
    assert_eq!(
        reply(&c),
        Some((true, "added 3 tasks (e, f, g): 1 ready".into()))
    );
    // f's dependency succeeded: it goes to a worker now (w2 left once idle with
    // nothing to run, so a new one starts).
    assert_eq!(spawns(&c), ["w3"]);
    let c = s.register("w3");
    assert_eq!(c.assigns(), [assigned("w3", "f", 1)]);
    assert_eq!(s.e.plan().tasks.len(), 5);
    s.run("w3", "f", 1, 0);
    // e waits for a, g for e.
    let c = s.exit("w1", "a", 1, 0);
    assert!(c.assigns().iter().any(|a| a.1 == "e"), "{:?}", c.cmds);
    let w = s.holder("e");
    let c = s.run(&w, "e", 1, 0);
    let w = c.assigns()[0].0.clone();
    assert_eq!(c.assigns(), [assigned(&w, "g", 1)]);
    let c = s.run(&w, "g", 1, 0);
    assert_eq!(finish(&c), Some(SessionState::Succeeded));
    // The plan's own tasks are journalled by the shell at the start; these by the engine.
    assert_eq!(s.history.tasks_added, 3);
}

#[test]
fn a_task_added_after_a_failure_is_decided_at_once_with_its_dependents() {
    let mut s = Sim::ready("a, b, c", 1);
    s.run("w1", "a", 1, 3);
    s.control("x", ControlAction::Cancel, Some("b"));
    let c = s.add(
        "r1",
        "[[task]]\nid = \"e\"\nrun = \"true\"\nafter = [\"a\"]\n\
         [[task]]\nid = \"f\"\nrun = \"true\"\nafter = [\"e\"]\n\
         [[task]]\nid = \"g\"\nrun = \"true\"\nafter = [\"b\"]\n",
    );
    let decided: Vec<(String, TaskState, Option<String>)> = decisions(&c)
        .iter()
        .map(|d| (s.ids[d.task].clone(), d.state, d.reason.clone()))
        .collect();
    let skipped = |t: &str, why: &str| (t.to_string(), TaskState::Skipped, Some(why.into()));
    assert_eq!(
        decided,
        [
            skipped("e", "dependency a did not succeed"),
            skipped("f", "dependency a did not succeed"),
            (
                "g".into(),
                TaskState::Cancelled,
                Some("dependency b was cancelled".into())
            ),
        ]
    );
    assert_eq!(
        reply(&c),
        Some((
            true,
            "added 3 tasks (e, f, g): 0 ready, 3 decided at once (a dependency did not succeed)"
                .into()
        ))
    );
}

#[test]
fn a_frozen_session_takes_tasks_and_starts_them_after_thaw() {
    let mut s = Sim::ready(ONE, 1);
    s.begin("w1", "a", 1);
    s.control("fz", ControlAction::Freeze, None);
    let c = s.add("r1", "[[task]]\nid = \"e\"\nrun = \"true\"\n");
    assert!(c.assigns().is_empty(), "{:?}", c.cmds);
    assert_eq!(
        reply(&c),
        Some((
            true,
            "added 1 task (e): 1 ready; the session is frozen: they start after `thaw`".into()
        ))
    );
    s.control("th", ControlAction::Thaw, None);
    s.run("w1", "a", 1, 0);
    assert_eq!(s.runs("w1"), Some(("e", 1)));
}

#[test]
fn additions_are_refused_once_the_session_stops_or_ends_and_checked_again() {
    let mut s = Sim::ready(TWO, 1);
    s.begin("w1", "a", 1);
    // The same tasks twice: the second is refused (a concurrent `add` took the ids).
    let one = "[[task]]\nid = \"e\"\nrun = \"true\"\n";
    let tasks =
        s.e.plan()
            .parse_added("more.toml", one, Path::new("/tmp"))
            .unwrap();
    s.on(Fact::Add {
        id: "r1".into(),
        tasks: tasks.clone(),
    });
    let c = s.on(Fact::Add {
        id: "r2".into(),
        tasks,
    });
    assert_eq!(
        reply(&c),
        Some((
            false,
            "duplicate task id \"e\" (first defined in the session's plan)".into()
        ))
    );
    assert!(!has(&c, |c| matches!(c, Command::SavePlan)));
    s.control("st", ControlAction::Stop, None);
    s.withdrawn("w1", "b", 1, true);
    let c = s.add("r3", "[[task]]\nid = \"z\"\nrun = \"true\"\n");
    assert_eq!(
        reply(&c),
        Some((
            false,
            "the session is stopping: nothing new starts in it".into()
        ))
    );
    assert_eq!(s.e.plan().tasks.len(), 3);
    let c = s.exit("w1", "a", 1, 0);
    assert!(finish(&c).is_some(), "{:?}", c.cmds);
    let c = s.add("r4", "[[task]]\nid = \"z\"\nrun = \"true\"\n");
    assert_eq!(
        reply(&c),
        Some((false, "the session has already ended (cancelled)".into()))
    );
}

#[test]
fn a_resumed_engine_keeps_the_added_tasks_and_what_became_of_them() {
    let mut s = Sim::ready(ONE, 1);
    s.begin("w1", "a", 1);
    s.add("r1", MORE.replace("\"b\"", "\"a\"").as_str());
    s.run("w1", "a", 1, 0);
    let w = s.holder("e");
    s.run(&w, "e", 1, 0);
    let (mut r, _) = s.resume(Found::default());
    assert_eq!(r.e.decided(r.ix("e")), Some(TaskState::Succeeded));
    assert_eq!(r.e.decided(r.ix("f")), None);
    let c = r.register_all();
    assert_eq!(c.assigns().len(), 1, "{:?}", c.cmds);
    let (w, t, n) = c.assigns()[0].clone();
    let other = if t == "f" { "g" } else { "f" };
    let c = r.run(&w, &t, n, 0);
    assert!(c.assigns().iter().any(|a| a.1 == other), "{:?}", c.cmds);
}
