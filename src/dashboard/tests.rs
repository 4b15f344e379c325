//! The dashboard's tests: what a frame shows of a session (drawn to ratatui's
//! `TestBackend`), without colour under `NO_COLOR`, and what the keys ask for.

use std::io::Write as _;
use std::time::SystemTime;

use fs2::FileExt;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::Color;

use super::app::{Action, App, Screen};
use super::draw::{self, Theme, View, clean, clean_log};
use super::procs::Sampler;
use crate::fsio;
use crate::journal::{ControlAction, Event, WorkerEvent};
use crate::model::SessionModel;
use crate::proto::Started;
use crate::session::Session;

const PLAN: &str = r#"
name = "dash"
workers = 2
[resources.db]
max = 4
[[task]]
id = "fetch"
run = "true"
resources = { db = 1 }
[[task]]
id = "review"
run = "true"
[[task]]
id = "build"
run = "true"
after = ["fetch"]
[[gate]]
id = "ship"
after = ["build"]
approve = true
[[task]]
id = "deploy"
run = "true"
after = ["gate:ship"]
"#;

fn line(ev: &Event) -> String {
    let l = crate::journal::line_at(ev, "2026-01-01T10:20:30.000Z").unwrap();
    format!("{l}\n")
}

/// A live-looking session: `fetch` runs on w1 at 40 %, `review` on w2 whose agent waits,
/// gate `ship` waits for approval; the workers' `alive` locks are held (returned: keep
/// them while drawing).
fn session(root: &std::path::Path) -> (Session, Vec<std::fs::File>) {
    let s = Session::create(root, "dash").unwrap();
    let plan = crate::plan::Plan::parse("dash.toml", PLAN, root).unwrap();
    fsio::write_json(&s.plan_json(), &plan).unwrap();
    let mut journal = String::new();
    journal.push_str(&line(&Event::TasksAdded {
        tasks: ["fetch", "review", "build", "deploy"]
            .map(String::from)
            .to_vec(),
    }));
    let mut locks = Vec::new();
    for (w, task) in [("w1", "fetch"), ("w2", "review")] {
        fsio::create_dir_private(&s.claimed_dir(w)).unwrap();
        std::fs::write(
            s.worker_json(w),
            format!(r#"{{"id":"{w}","pid":1,"host":"h","launcher":"background","terminal":null,"started_at":"x"}}"#),
        )
        .unwrap();
        let alive = fsio::open_lock_file(&s.worker_alive(w)).unwrap();
        alive.lock_exclusive().unwrap();
        locks.push(alive);
        std::fs::write(s.assignment_claimed(w, task, 1), "{}").unwrap();
        fsio::create_dir_private(&s.attempt_dir(task, 1)).unwrap();
        let started = WorkerEvent::Started(Started {
            task: task.into(),
            attempt: 1,
            worker: w.into(),
            pid: std::process::id(),
            pgid: std::process::id(),
            started_at: "2026-01-01T10:20:00.000Z".into(),
            started_unix_ms: crate::proto::now_unix_ms() - 65_000,
            proc_start: None,
            boot_id: None,
        });
        let started = crate::journal::line_at(&started, "x").unwrap();
        std::fs::write(s.worker_events(w), format!("{started}\n")).unwrap();
        journal.push_str(&line(&Event::TaskAssigned {
            task: task.into(),
            attempt: 1,
            worker: w.into(),
            seq: 1,
        }));
        journal.push_str(&line(&Event::TaskStarted {
            task: task.into(),
            attempt: 1,
            worker: w.into(),
            pid: Some(std::process::id()),
            proc_start: None,
            boot_id: None,
        }));
    }
    crate::shared::set_progress(&s, "fetch", 1, 40.0, Some("copying\x1b[31m rows".into())).unwrap();
    journal.push_str(&line(&Event::AgentState {
        task: "review".into(),
        attempt: 1,
        state: crate::agent::AgentState::Waiting,
        message: Some("may I push?".into()),
        at: "2026-01-01T10:20:30.000Z".into(),
    }));
    journal.push_str(&line(&Event::GateWaiting {
        gate: "ship".into(),
    }));
    journal.push_str("{\"ts\":\"x\",\"event\":\"task_fin\n");
    std::fs::write(s.events(), journal).unwrap();
    (s, locks)
}

fn frame(model: &SessionModel, app: &mut App, color: bool) -> Terminal<TestBackend> {
    frame_with(model, app, color, &draw::Stderr::default())
}

/// [`frame`], with these lines on the process's stderr.
fn frame_with(
    model: &SessionModel,
    app: &mut App,
    color: bool,
    stderr: &draw::Stderr,
) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(120, 40)).unwrap();
    let mut procs = Sampler::default();
    let pids: Vec<(u32, Option<u64>)> = vec![(std::process::id(), None)];
    procs.sample(&pids, std::time::Instant::now());
    let view = View {
        model,
        procs: &procs,
        theme: Theme { color },
        now: SystemTime::now(),
        stderr,
    };
    t.draw(|f| draw::draw(f, app, &view)).unwrap();
    t
}

fn text(t: &Terminal<TestBackend>) -> String {
    let buf = t.backend().buffer();
    let mut out = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            out.push_str(buf[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

fn key(c: KeyCode) -> KeyEvent {
    KeyEvent::from(c)
}

#[test]
fn a_frame_shows_workers_progress_waiting_things_waves_and_events() {
    let d = tempfile::tempdir().unwrap();
    let (s, _locks) = session(d.path());
    let mut m = SessionModel::live(s);
    m.refresh();
    let mut app = App::default();
    let t = frame(&m, &mut app, true);
    let screen = text(&t);
    for want in [
        "maestro dash-",
        "tasks 0/4",
        "2 running",
        "needs you",
        "gate ship WAITS FOR APPROVAL",
        "review agent WAITING: may I push?",
        "w1       fetch",
        "w2       review",
        "40% copying rows",
        "1m05s",
        "wave 1",
        "pool db",
        "1/4",
        "deploy",
        "events",
        "review: agent waiting: may I push?",
        "events.jsonl: 1 malformed line(s) skipped",
        "q quit",
    ] {
        assert!(
            screen.contains(want),
            "{want:?} not on the screen:\n{screen}"
        );
    }
    assert!(
        !screen.contains('\x1b'),
        "no escape sequence from a file is drawn"
    );
    // What waits for a person is drawn in its own colour, the first row selected.
    let buf = t.backend().buffer();
    let row = (0..40)
        .find(|&y| text(&t).lines().nth(y).unwrap().starts_with("gate ship"))
        .unwrap() as u16;
    assert_eq!(buf[(0, row)].fg, Color::Magenta);
    assert!(
        buf[(0, row)]
            .modifier
            .contains(ratatui::style::Modifier::REVERSED)
    );
}

/// Lines on the (diverted) stderr get a panel of their own above the events, the newest
/// few, cleaned, with how many came and that they are printed when the view closes; none,
/// no panel.
#[test]
fn lines_on_stderr_are_shown_in_a_panel_of_their_own() {
    let d = tempfile::tempdir().unwrap();
    let (s, _locks) = session(d.path());
    let mut m = SessionModel::live(s);
    m.refresh();
    let screen = text(&frame(&m, &mut App::default(), true));
    assert!(!screen.contains("stderr:"), "{screen}");
    let stderr = draw::Stderr {
        count: 7,
        newest: vec![
            "warning: two".into(),
            "warning: three".into(),
            "\x1b[33mwarning:\x1b[0m four".into(),
            "notify says: five".into(),
        ],
    };
    let t = frame_with(&m, &mut App::default(), true, &stderr);
    let screen = text(&t);
    let lines: Vec<&str> = screen.lines().collect();
    let title = lines
        .iter()
        .position(|l| l.contains(" stderr: 7 lines, printed when the view closes "))
        .unwrap_or_else(|| panic!("no stderr panel:\n{screen}"));
    for (i, want) in [
        "warning: two",
        "warning: three",
        "warning: four",
        "notify says: five",
    ]
    .iter()
    .enumerate()
    {
        assert!(
            lines[title + 1 + i].starts_with(want),
            "{want:?} not in its place:\n{screen}"
        );
    }
    assert!(lines[title + 5].contains(" events "), "{screen}");
    assert!(!screen.contains('\x1b'), "no escape sequence is drawn");
    assert_eq!(
        t.backend().buffer()[(0, title as u16 + 1)].fg,
        Color::Yellow
    );
}

#[test]
fn no_color_draws_without_a_colour() {
    let d = tempfile::tempdir().unwrap();
    let (s, _locks) = session(d.path());
    let mut m = SessionModel::live(s);
    m.refresh();
    let t = frame(&m, &mut App::default(), false);
    let buf = t.backend().buffer();
    assert!(
        buf.content()
            .iter()
            .all(|c| c.fg == Color::Reset && c.bg == Color::Reset),
        "a colour under NO_COLOR"
    );
}

#[test]
fn a_dead_orchestrator_is_said_and_an_unreadable_task_shows_in_its_row() {
    let d = tempfile::tempdir().unwrap();
    let (s, locks) = session(d.path());
    drop(locks);
    fsio::create_dir_private(&s.task_dir("deploy")).unwrap();
    std::fs::write(s.outcome_json("deploy"), "{ torn").unwrap();
    let mut m = SessionModel::live(s.clone());
    m.refresh();
    let screen = text(&frame(&m, &mut App::default(), true));
    assert!(
        screen.contains(&format!(
            "its orchestrator is gone: `orchestrator resume {}` carries on",
            s.id()
        )),
        "{screen}"
    );
    assert!(
        screen.contains("deploy") && screen.contains("unreadable:"),
        "{screen}"
    );
    assert!(screen.contains("no live workers"), "{screen}");
}

#[test]
fn keys_select_ask_before_cancelling_and_approve_the_waiting_gate() {
    let d = tempfile::tempdir().unwrap();
    let (s, _locks) = session(d.path());
    let mut m = SessionModel::live(s);
    m.refresh();
    let mut app = App::default();
    // Rows: gate ship, agent review, w1, w2, then the four tasks.
    assert_eq!(app.key(key(KeyCode::Char('r')), &m), Action::None);
    assert_eq!(app.message.as_deref(), Some("no task selected to reassign"));
    app.key(key(KeyCode::Down), &m);
    assert_eq!(
        app.key(key(KeyCode::Char('r')), &m),
        Action::Control {
            action: ControlAction::Reassign,
            task: "review".into()
        }
    );
    app.key(key(KeyCode::Down), &m);
    assert_eq!(app.key(key(KeyCode::Char('c')), &m), Action::None);
    assert!(matches!(&app.screen, Screen::Confirm { question, .. } if question.contains("fetch")));
    assert_eq!(
        app.key(key(KeyCode::Char('y')), &m),
        Action::Control {
            action: ControlAction::Cancel,
            task: "fetch".into()
        }
    );
    assert!(matches!(app.screen, Screen::Main));
    app.key(key(KeyCode::Char('c')), &m);
    assert_eq!(app.key(key(KeyCode::Char('n')), &m), Action::None);
    assert_eq!(app.message.as_deref(), Some("not done"));
    // `a` approves the first waiting gate, whatever is selected, after a y.
    app.key(key(KeyCode::Char('a')), &m);
    assert_eq!(
        app.key(key(KeyCode::Char('y')), &m),
        Action::Approve("ship".into())
    );
    app.key(key(KeyCode::End), &m);
    assert_eq!(
        app.key(key(KeyCode::Enter), &m),
        Action::OpenLog("deploy".into())
    );
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(app.key(ctrl_c, &m), Action::Interrupt);
    let ctrl_l = KeyEvent::new(KeyCode::Char('l'), KeyModifiers::CONTROL);
    assert_eq!(app.key(ctrl_l, &m), Action::Repaint);
    assert_eq!(app.key(key(KeyCode::Char('q')), &m), Action::Quit);
}

#[test]
fn the_log_view_shows_the_end_of_the_log_scrolls_and_goes_back() {
    let d = tempfile::tempdir().unwrap();
    let (s, _locks) = session(d.path());
    let mut log = std::fs::File::create(s.stdout_log("fetch", 1)).unwrap();
    for i in 0..100 {
        writeln!(log, "line {i}\t\x1b[1mbold\x1b[0m").unwrap();
    }
    let mut m = SessionModel::live(s.clone());
    m.refresh();
    let mut app = App {
        screen: Screen::Log(Box::new(super::logview::LogView::open(&s, "fetch"))),
        ..App::default()
    };
    let screen = text(&frame(&m, &mut app, true));
    assert!(
        screen.contains("log of fetch, attempt 1 (stdout)"),
        "{screen}"
    );
    assert!(screen.contains("line 99 bold"), "{screen}");
    assert!(!screen.contains("line 50 "), "only the end fits:\n{screen}");
    app.key(key(KeyCode::PageUp), &m);
    app.key(key(KeyCode::PageUp), &m);
    let screen = text(&frame(&m, &mut app, true));
    assert!(
        screen.contains("line 50 ") && !screen.contains("line 99"),
        "{screen}"
    );
    assert_eq!(app.key(key(KeyCode::Esc), &m), Action::None);
    assert!(matches!(app.screen, Screen::Main), "Esc goes back");
}

#[test]
fn text_from_files_is_cleaned_before_it_is_drawn() {
    assert_eq!(clean("a\x1b[2Jb\tc"), "ab c");
    assert_eq!(clean("plain"), "plain");
    assert_eq!(clean_log("\x1b[31mred\x1b[0m\r"), "red");
    assert_eq!(clean_log("\x1b]0;title\x07after"), "after");
    assert_eq!(clean_log("a\tb\x01"), "a       b?");
    assert_eq!(draw::bar(0.5, 4), "██░░");
    assert_eq!(draw::dur(65_000), "1m05s");
    assert_eq!(draw::dur(4_200), "4.2s");
}

/// A 10 000-task session redraws from its model without going through every task: the
/// frame after a refresh with nothing new reads no task again.
#[test]
fn a_large_session_refreshes_only_what_changed() {
    let d = tempfile::tempdir().unwrap();
    let s = Session::create(d.path(), "big").unwrap();
    let mut toml = String::from("name = \"big\"\n");
    for i in 0..10_000 {
        toml.push_str(&format!("[[task]]\nid = \"t{i}\"\nrun = \"true\"\n"));
    }
    let plan = crate::plan::Plan::parse("big.toml", &toml, d.path()).unwrap();
    fsio::write_json(&s.plan_json(), &plan).unwrap();
    let mut m = SessionModel::live(s.clone());
    assert_eq!(m.refresh().tasks, 10_000);
    assert_eq!(m.refresh().tasks, 0);
    let mut app = App::default();
    app.key(key(KeyCode::End), &m);
    let screen = text(&frame(&m, &mut app, true));
    assert!(screen.contains("t9999"), "{screen}");
    assert!(screen.contains("of 10000"), "{screen}");
}

/// A finished session's frames read the files of the decided tasks they draw, and only
/// those: each row drawn shows its outcome's time and reason, the others stay the
/// journal's decision until they are scrolled to.
#[test]
fn a_frame_reads_the_decided_tasks_it_draws_and_only_those() {
    let d = tempfile::tempdir().unwrap();
    let s = Session::create(d.path(), "done").unwrap();
    let n = 200;
    let mut toml = String::from("name = \"done\"\n");
    for i in 0..n {
        toml.push_str(&format!("[[task]]\nid = \"t{i}\"\nrun = \"true\"\n"));
    }
    let plan = crate::plan::Plan::parse("done.toml", &toml, d.path()).unwrap();
    fsio::write_json(&s.plan_json(), &plan).unwrap();
    let ids: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
    let mut journal = line(&Event::TasksAdded { tasks: ids.clone() });
    for (i, id) in ids.iter().enumerate() {
        let state = if i == 1 {
            crate::proto::TaskState::Failed
        } else {
            crate::proto::TaskState::Succeeded
        };
        let reason = (i == 1).then(|| "exit 3: boom".to_string());
        let outcome = crate::proto::Outcome {
            task: id.clone(),
            state,
            attempt: 1,
            worker: Some("w1".into()),
            exit_code: Some(if i == 1 { 3 } else { 0 }),
            signal: None,
            started_at: Some("2026-01-01T10:00:00.000Z".into()),
            ended_at: Some("2026-01-01T10:01:05.000Z".into()),
            duration_ms: Some(65_000),
            reason: reason.clone(),
            result: None,
            decided_at: "2026-01-01T10:01:05.000Z".into(),
        };
        fsio::create_dir_private(&s.task_dir(id)).unwrap();
        fsio::write_json(&s.outcome_json(id), &outcome).unwrap();
        journal.push_str(&line(&Event::TaskFinished {
            task: id.clone(),
            attempt: 1,
            worker: Some("w1".into()),
            state,
            exit_code: Some(0),
            reason,
        }));
    }
    std::fs::write(s.events(), journal).unwrap();
    let mut v = super::OffScreen::new(s.clone()).unwrap();
    let screen = text(&v.terminal);
    assert!(screen.contains("tasks 200/200"), "{screen}");
    assert!(screen.contains("1 failed"), "{screen}");
    assert!(screen.contains("199 succeeded"), "{screen}");
    let row = |screen: &str, id: &str| {
        let row = screen.lines().find(|l| l.starts_with(&format!("{id} ")));
        row.unwrap_or_else(|| panic!("no row of {id}:\n{screen}"))
            .to_string()
    };
    assert!(row(&screen, "t0").contains("1m05s"), "{screen}");
    assert!(row(&screen, "t1").contains("exit 3: boom"), "{screen}");
    let read = |v: &super::OffScreen| {
        let tasks = v.d.model.tasks();
        tasks.iter().filter(|t| t.duration_ms.is_some()).count()
    };
    let first = read(&v);
    assert!(
        (2..40).contains(&first),
        "only the rows drawn were read: {first}"
    );
    // The last rows, once scrolled to, are read and drawn from their outcomes too.
    v.d.app.key(key(KeyCode::End), &v.d.model);
    v.d.draw(&mut v.terminal).unwrap();
    let screen = text(&v.terminal);
    assert!(row(&screen, "t199").contains("1m05s"), "{screen}");
    let both = read(&v);
    assert!(both > first && both <= 2 * first, "the two windows: {both}");
}
