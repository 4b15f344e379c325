//! The status module's tests: how a snapshot is drawn, and the rules that read a state.

use std::time::{Duration, SystemTime};

use super::render::attempts_note;
use super::*;
use crate::journal::WorkerEvent;
use crate::proto::Started;
use crate::session::Session;

fn task(id: &str, state: TaskState) -> TaskView {
    let ran = !matches!(state, TaskState::Pending | TaskState::Skipped);
    TaskView {
        id: id.into(),
        state,
        attempt: u32::from(ran),
        worker: ran.then(|| "w1".to_string()),
        exit_code: None,
        started_at: None,
        ended_at: None,
        duration_ms: ran.then_some(1500),
        reason: None,
        attempts: Vec::new(),
        progress: None,
        secrets: None,
        agent: None,
        worktree: None,
        error: None,
    }
}

fn snap(state: SessionState, tasks: Vec<TaskView>) -> Snapshot {
    Snapshot {
        session: "s-20260101-000000-1".into(),
        path: "/r/s-20260101-000000-1".into(),
        state,
        orchestrator_alive: false,
        created_at: Some("2026-01-01T00:00:00.000Z".into()),
        tasks,
        workers: Vec::new(),
        resources: Vec::new(),
        gates: Vec::new(),
        held: None,
        aux: Vec::new(),
        rollback: None,
        conflicts: None,
        errors: Vec::new(),
        counted: None,
    }
}

fn created() -> SystemTime {
    humantime::parse_rfc3339("2026-01-01T00:00:00.000Z").unwrap()
}

#[test]
fn status_counts_every_decided_task_as_done_race_losers_too() {
    let s = snap(
        SessionState::Succeeded,
        vec![
            task("winner", TaskState::Succeeded),
            task("loser", TaskState::Lost),
            task("after", TaskState::Succeeded),
        ],
    );
    assert_eq!(s.done(), 3);
    assert_eq!(
        render(&s),
        "session s-20260101-000000-1 (succeeded): 3/3 tasks done\n\
         \x20 /r/s-20260101-000000-1\n\
         \n\
         TASK    STATE      WORKER  ATTEMPT  DURATION  NOTE\n\
         winner  succeeded  w1      1        1.5s\n\
         loser   lost       w1      1        1.5s\n\
         after   succeeded  w1      1        1.5s\n"
    );
}

#[test]
fn status_counts_decided_states_only() {
    let s = snap(
        SessionState::Failed,
        [
            TaskState::Succeeded,
            TaskState::Failed,
            TaskState::Skipped,
            TaskState::Cancelled,
            TaskState::Lost,
            TaskState::Pending,
            TaskState::Running,
            TaskState::Retrying,
        ]
        .into_iter()
        .map(|st| task(st.as_str(), st))
        .collect(),
    );
    let text = render(&s);
    assert_eq!(
        text.lines().next().unwrap(),
        "session s-20260101-000000-1 (failed): 5/8 tasks done"
    );
}

#[test]
fn list_shows_a_failed_session_with_its_decided_tasks_and_unreadable_entries() {
    let failed = snap(
        SessionState::Failed,
        vec![
            task("a", TaskState::Failed),
            task("b", TaskState::Lost),
            task("c", TaskState::Skipped),
            task("d", TaskState::Pending),
        ],
    );
    let now = created() + Duration::from_secs(300);
    assert_eq!(
        list_table(&[ListRow::Session(Box::new(failed.clone()))], now),
        "SESSION              STATE   DONE  AGE\n\
         s-20260101-000000-1  failed  3/4   5m\n"
    );
    let rows = [
        ListRow::Session(Box::new(failed)),
        ListRow::Unreadable {
            name: "junk".into(),
            reason: "/r/junk: is writable by other users (mode 777)".into(),
            modified: Some(now - Duration::from_secs(7200)),
        },
        ListRow::Unreadable {
            name: "x".into(),
            reason: "/r/x: is not a session directory".into(),
            modified: None,
        },
    ];
    assert_eq!(
        list_table(&rows, now),
        "SESSION              STATE       DONE  AGE  NOTE\n\
         s-20260101-000000-1  failed      3/4   5m\n\
         junk                 unreadable  -     2h   /r/junk: is writable by other users (mode 777)\n\
         x                    unreadable  -     -    /r/x: is not a session directory\n"
    );
}

#[test]
fn list_reads_a_refused_entry_into_an_unreadable_row() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("stray")).unwrap();
    // Private whatever the umask: refused for what it lacks, not for its mode.
    std::fs::set_permissions(
        d.path().join("stray"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let listing = Session::list(d.path()).unwrap();
    let rows = list_rows(&listing);
    let [ListRow::Unreadable { name, reason, .. }] = &rows[..] else {
        panic!("{rows:?}");
    };
    assert_eq!(name, "stray");
    assert_eq!(
        reason,
        &format!(
            "{}: is not a maestro session (no session.json)",
            d.path().join("stray").display()
        )
    );
}

#[test]
fn session_state_comes_from_the_summary_then_the_journal() {
    use SessionState::*;
    assert_eq!(session_state(Some(Failed), false, Some(Running)), Failed);
    assert_eq!(session_state(Some(Succeeded), true, None), Succeeded);
    assert_eq!(session_state(None, true, Some(Running)), Running);
    assert_eq!(session_state(None, true, Some(Stopping)), Stopping);
    assert_eq!(session_state(None, true, Some(Interrupted)), Running);
    // No orchestrator: the journal's word, where `running` means it died.
    assert_eq!(session_state(None, false, Some(Running)), Interrupted);
    assert_eq!(session_state(None, false, None), Interrupted);
    assert_eq!(session_state(None, false, Some(Stopping)), Stopping);
    assert_eq!(session_state(None, false, Some(Interrupted)), Interrupted);
}

#[test]
fn a_dead_orchestrators_session_says_how_to_go_on() {
    for state in [SessionState::Interrupted, SessionState::Stopping] {
        let s = snap(state, vec![task("a", TaskState::Running)]);
        assert_eq!(
            render(&s),
            format!(
                "session s-20260101-000000-1 ({}): 0/1 tasks done\n\
                 \x20 /r/s-20260101-000000-1\n\
                 \n\
                 \x20 its orchestrator is gone: `orchestrator resume s-20260101-000000-1` carries on, `orchestrator cancel s-20260101-000000-1` stops it\n\
                 \n\
                 TASK  STATE    WORKER  ATTEMPT  DURATION  NOTE\n\
                 a     running  w1      1        1.5s\n",
                state.as_str()
            )
        );
    }
    let mut live = snap(SessionState::Stopping, vec![]);
    live.orchestrator_alive = true;
    assert!(!render(&live).contains("orchestrator is gone"));
}

#[test]
fn attempts_note_tells_running_from_queued() {
    let mut t = task("a", TaskState::Running);
    t.attempt = 2;
    t.attempts = vec![
        AttemptView {
            attempt: 1,
            worker: Some("w1".into()),
            ended: Some(EndReason::WorkerLost),
        },
        AttemptView {
            attempt: 2,
            worker: Some("w2".into()),
            ended: None,
        },
    ];
    assert_eq!(
        attempts_note(&t),
        "attempts: 1 worker_lost (w1), 2 running (w2)"
    );
    t.state = TaskState::Pending;
    t.attempt = 1;
    assert_eq!(
        attempts_note(&t),
        "attempts: 1 worker_lost (w1), 2 queued (w2)"
    );
}

#[test]
fn workers_state_comes_from_their_journals_last_line() {
    let started = WorkerEvent::Started(Started {
        task: "t".into(),
        attempt: 1,
        worker: "w1".into(),
        pid: 1,
        pgid: 1,
        started_at: "x".into(),
        started_unix_ms: 0,
        proc_start: None,
        boot_id: None,
    });
    assert_eq!(
        worker_status(true, Some(started.clone()), true, false),
        (WorkerStatus::Running, Some("t".into()))
    );
    assert_eq!(
        worker_status(true, Some(started), false, false),
        (WorkerStatus::Lost, None)
    );
    assert_eq!(
        worker_status(true, Some(WorkerEvent::Stopped {}), false, true),
        (WorkerStatus::Exited, None)
    );
    let ready = WorkerEvent::Ready {
        pid: 1,
        protocol: None,
    };
    assert_eq!(
        worker_status(true, Some(ready), true, false),
        (WorkerStatus::Idle, None)
    );
    assert_eq!(
        worker_status(false, None, false, false),
        (WorkerStatus::Starting, None)
    );
    assert_eq!(
        worker_status(false, None, false, true),
        (WorkerStatus::Lost, None)
    );
}

#[test]
fn json_keeps_the_state_strings() {
    let mut s = snap(
        SessionState::Interrupted,
        vec![task("a", TaskState::Retrying)],
    );
    s.tasks[0].attempts = vec![AttemptView {
        attempt: 1,
        worker: None,
        ended: Some(EndReason::TimedOut),
    }];
    s.workers = vec![WorkerView {
        id: "w1".into(),
        pid: Some(7),
        state: WorkerStatus::Idle,
        task: None,
        terminal: None,
        usage: None,
        error: None,
    }];
    let v = to_json(&s);
    assert_eq!(v["state"], "interrupted");
    assert_eq!(v["tasks"][0]["state"], "retrying");
    assert_eq!(v["tasks"][0]["attempts"][0]["ended"], "timed_out");
    assert_eq!(v["workers"][0]["state"], "idle");
    assert!(v.get("orchestrator_alive").is_none(), "{v}");
}

/// Files that could not be read are shown where they belong: the session's under its
/// heading, a task's and a worker's in their NOTE; everything else as usual.
#[test]
fn unreadable_files_are_shown_where_they_belong() {
    let mut bad = task("b", TaskState::Failed);
    bad.error = Some("/r/tasks/b/outcome.json: invalid JSON: EOF".into());
    let mut s = snap(
        SessionState::Failed,
        vec![task("a", TaskState::Succeeded), bad],
    );
    s.errors = vec!["/r/summary.json: invalid JSON: EOF".into()];
    let worker = |id: &str, error: Option<&str>| WorkerView {
        id: id.into(),
        pid: Some(7),
        state: WorkerStatus::Exited,
        task: None,
        terminal: None,
        usage: None,
        error: error.map(str::to_string),
    };
    s.workers = vec![
        worker("w1", None),
        worker("w2", Some("/r/workers/w2/worker.json: invalid JSON: EOF")),
    ];
    assert_eq!(
        render(&s),
        "session s-20260101-000000-1 (failed): 2/2 tasks done\n\
         \x20 /r/s-20260101-000000-1\n\
         \n\
         \x20 unreadable: /r/summary.json: invalid JSON: EOF\n\
         \n\
         TASK  STATE      WORKER  ATTEMPT  DURATION  NOTE\n\
         a     succeeded  w1      1        1.5s\n\
         b     failed     w1      1        1.5s      unreadable: /r/tasks/b/outcome.json: invalid JSON: EOF\n\
         \n\
         WORKER  PID  STATE   TASK  TERMINAL  NOTE\n\
         w1      7    exited  -     -\n\
         w2      7    exited  -     -         unreadable: /r/workers/w2/worker.json: invalid JSON: EOF\n"
    );
    assert_eq!(s.unreadable(), 3);
    let v = to_json(&s);
    assert_eq!(v["errors"][0], "/r/summary.json: invalid JSON: EOF");
    assert_eq!(
        v["tasks"][1]["error"],
        "/r/tasks/b/outcome.json: invalid JSON: EOF"
    );
    assert!(v["tasks"][0].get("error").is_none(), "no error, no key");
    assert_eq!(
        v["workers"][1]["error"],
        "/r/workers/w2/worker.json: invalid JSON: EOF"
    );
    let now = created() + Duration::from_secs(60);
    let rows = [ListRow::Session(Box::new(s.clone()))];
    assert_eq!(
        list_table(&rows, now),
        "SESSION              STATE   DONE  AGE  NOTE\n\
         s-20260101-000000-1  failed  2/2   60s  3 unreadable files: `orchestrator status s-20260101-000000-1` shows which\n"
    );
    let clean = snap(SessionState::Succeeded, vec![]);
    assert!(to_json(&clean).get("errors").is_none());
}

#[test]
fn list_json_has_a_row_for_every_entry_with_why() {
    let mut s = snap(SessionState::Failed, vec![task("a", TaskState::Failed)]);
    s.created_at = None;
    let modified = created();
    let rows = [
        ListRow::Session(Box::new(s)),
        ListRow::Unreadable {
            name: "junk".into(),
            reason: "/r/junk: is not a session directory".into(),
            modified: Some(modified),
        },
    ];
    assert_eq!(
        list_json(&rows),
        serde_json::json!([
            {"session": "s-20260101-000000-1", "path": "/r/s-20260101-000000-1",
             "state": "failed", "done": 1, "total": 1, "created_at": null, "unreadable": 0},
            {"session": "junk", "state": "unreadable",
             "reason": "/r/junk: is not a session directory",
             "modified": "2026-01-01T00:00:00.000Z"},
        ])
    );
    assert_eq!(
        list_table(&rows, modified + Duration::from_secs(5))
            .lines()
            .nth(1),
        Some("s-20260101-000000-1  failed      1/1   -")
    );
}

#[test]
fn pools_are_shown_with_their_use_and_level() {
    let mut s = snap(SessionState::Running, Vec::new());
    let pool = |pool: &str, used, warn, critical, level| PoolView {
        pool: pool.into(),
        used,
        max: 50,
        warn,
        critical,
        level,
    };
    s.resources = vec![
        pool("cache", 3, None, None, crate::plan::Level::Normal),
        pool("db", 46, Some(35), Some(45), crate::plan::Level::Critical),
    ];
    let text = render(&s);
    assert!(text.contains("\npool cache: 3/50 in use\n"), "{text}");
    assert!(
        text.contains(
            "\npool db: 46/50 in use (warn 35, critical 45): CRITICAL, only tasks that claim none start\n"
        ),
        "{text}"
    );
    let json = to_json(&s);
    assert_eq!(json["resources"][1]["level"], "critical");
    assert_eq!(json["resources"][1]["used"], 46);
}

#[test]
fn a_running_attempts_usage_is_shown_in_its_workers_row() {
    let mut s = snap(SessionState::Running, vec![task("a", TaskState::Running)]);
    s.workers = vec![WorkerView {
        id: "w1".into(),
        pid: Some(7),
        state: WorkerStatus::Running,
        task: Some("a".into()),
        terminal: None,
        usage: Some(crate::usage::Usage {
            task: "a".into(),
            attempt: 1,
            processes: 2,
            cpu_percent: 12.4,
            memory_bytes: 34 << 20,
            mode: crate::usage::MemoryMode::Pss,
            cgroup: None,
            sampled_at: "2026-01-01T00:00:01.000Z".into(),
        }),
        error: None,
    }];
    let text = render(&s);
    assert!(
        text.contains(
            "WORKER  PID  STATE    TASK  TERMINAL  CPU  MEMORY\nw1      7    running  a     -         12%  34.0MiB (pss)\n"
        ),
        "{text}"
    );
    assert_eq!(to_json(&s)["workers"][0]["usage"]["mode"], "pss");
    assert!(to_json(&s)["workers"][0]["usage"].get("cgroup").is_none());

    // In a cgroup without its memory controller: PSS, and the cgroup said.
    let u = s.workers[0].usage.as_mut().unwrap();
    u.cgroup = Some("/sys/fs/cgroup/maestro-x-w1-9/attempt-1-a".into());
    assert!(
        render(&s).contains("  12%  34.0MiB (pss, cgroup)\n"),
        "{}",
        render(&s)
    );
    // Measured (and limited) by the cgroup.
    let u = s.workers[0].usage.as_mut().unwrap();
    u.mode = crate::usage::MemoryMode::Cgroup;
    assert!(
        render(&s).contains("  12%  34.0MiB (cgroup)\n"),
        "{}",
        render(&s)
    );
    assert_eq!(to_json(&s)["workers"][0]["usage"]["mode"], "cgroup");
}

#[test]
fn a_stopped_rollback_shows_each_step_and_the_failed_cleanups() {
    use super::{AuxStatus, AuxView};
    use crate::proto::AuxKind;
    let aux = |kind, of: &str, attempt, state, reason: Option<&str>| AuxView {
        kind,
        of: of.into(),
        attempt,
        worker: "w2".into(),
        state,
        reason: reason.map(str::to_string),
    };
    let mut s = snap(SessionState::RollbackFailed, Vec::new());
    s.rollback = Some(vec!["c".into(), "a".into(), "b".into()]);
    s.aux = vec![
        aux(
            AuxKind::Cleanup,
            "a",
            1,
            AuxStatus::Failed,
            Some("exited with code 1"),
        ),
        aux(AuxKind::Cleanup, "b", 1, AuxStatus::Succeeded, None),
        aux(AuxKind::Rollback, "c", 1, AuxStatus::Succeeded, None),
        aux(
            AuxKind::Rollback,
            "a",
            1,
            AuxStatus::Failed,
            Some("exited with code 4"),
        ),
    ];
    let text = render(&s);
    assert!(
        text.contains("\nrollback (last completed first): c succeeded, a failed (exited with code 4), b pending\n"),
        "{text}"
    );
    assert!(
        text.contains("\ncleanup of a (attempt 1): failed: exited with code 1\n"),
        "{text}"
    );
    assert!(
        !text.contains("cleanup of b"),
        "a succeeded cleanup is no news: {text}"
    );
    assert!(text.contains("`orchestrator rollback s-20260101-000000-1` runs that step again"));
    let json = to_json(&s);
    assert_eq!(json["rollback"], serde_json::json!(["c", "a", "b"]));
    assert_eq!(json["aux"][3]["state"], "failed");
    assert_eq!(json["aux"][3]["kind"], "rollback");
}

/// A task's worktree line says its branch and count and what it changed outside its
/// owns; a file two tasks changed is flagged once, with both (in the same repository
/// only), in text and JSON.
#[test]
fn worktrees_show_branches_counts_outside_owns_and_conflicts() {
    let wt = |branch: &str, repo: &str, changed: &[&str], outside: &[&str]| WorktreeView {
        branch: branch.into(),
        base: "b45e".into(),
        path: "/nowhere/wt".into(),
        changed: changed.iter().map(|s| s.to_string()).collect(),
        outside_owns: outside.iter().map(|s| s.to_string()).collect(),
        omitted: 0,
        repo: repo.into(),
    };
    let mut a = task("a", TaskState::Succeeded);
    a.worktree = Some(wt("maestro/s/a", "/r", &["a/x", "shared"], &[]));
    let mut b = task("b", TaskState::Succeeded);
    b.worktree = Some(wt("maestro/s/b", "/r", &["b/y", "shared"], &["shared"]));
    let mut c = task("c", TaskState::Succeeded);
    c.worktree = Some(wt("maestro/s/c", "/other", &["shared"], &[]));
    let tasks = vec![a, b, c, task("d", TaskState::Succeeded)];
    let conflicts = super::worktrees::conflicts(&tasks);
    assert_eq!(
        conflicts,
        [Conflict {
            file: "shared".into(),
            tasks: vec!["a".into(), "b".into()]
        }]
    );
    let mut s = snap(SessionState::Succeeded, tasks);
    s.conflicts = Some(conflicts);
    let text = render(&s);
    for line in [
        "worktree of a: branch maestro/s/a, 2 files changed (worktree removed; the branch is kept)",
        "worktree of b: branch maestro/s/b, 2 files changed; OUTSIDE its owns: shared (worktree removed; the branch is kept)",
        "CHANGED BY MORE THAN ONE TASK: shared (a, b)",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
    }
    assert!(!text.contains("worktree of d"));
    let j = to_json(&s);
    assert_eq!(
        j["tasks"][1]["worktree"],
        serde_json::json!({"branch": "maestro/s/b", "base": "b45e", "path": "/nowhere/wt",
            "changed": ["b/y", "shared"], "outside_owns": ["shared"]})
    );
    assert!(j["tasks"][3].get("worktree").is_none());
    assert_eq!(
        j["conflicts"],
        serde_json::json!([{"file": "shared", "tasks": ["a", "b"]}])
    );
    // A plan without worktree tasks has no `conflicts` at all.
    assert!(
        to_json(&snap(SessionState::Succeeded, Vec::new()))
            .get("conflicts")
            .is_none()
    );
}

/// `status --waiting` counted only the tasks it listed: "0/1 tasks done" for a session
/// of three tasks with two done. The header counts the session; a line says why the
/// list is short.
#[test]
fn status_waiting_header_counts_the_whole_session() {
    let mut waiting = task("ask", TaskState::Running);
    waiting.agent = Some(AgentView {
        state: crate::agent::AgentState::Waiting,
        message: Some("may I?".into()),
        since: "2026-01-01T00:00:01.000Z".into(),
    });
    let mut s = snap(
        SessionState::Running,
        vec![
            task("a", TaskState::Succeeded),
            task("b", TaskState::Succeeded),
            waiting,
        ],
    );
    only_waiting(&mut s);
    let text = render(&s);
    assert!(
        text.starts_with(
            "session s-20260101-000000-1 (running): 2/3 tasks done\n  /r/s-20260101-000000-1\n\n  \
             1 task waiting for a person (--waiting shows only these)\n"
        ),
        "{text}"
    );
    assert_eq!(s.tasks.len(), 1);
}
