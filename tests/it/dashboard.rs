//! The live dashboard in a real terminal: a shell in a tmux pane of a private server
//! (120x40), `orchestrator run` and `orchestrator status --watch` typed into it as a
//! person would, the screen read with `capture-pane`, keys sent with `send-keys`.

use std::time::Duration;

use crate::util::*;

const LONG: Duration = Duration::from_secs(30);

/// A plan of slow tasks that wait for `$OUT/<file>`; `a` reports its progress.
fn slow_plan(sb: &Sandbox) -> std::path::PathBuf {
    sb.write(
        "slow.toml",
        &format!(
            "name = \"slow\"\nworkers = 2\n\
             [[task]]\nid = \"a\"\nrun = 'worker progress 50 halfway; {}'\n\
             [[task]]\nid = \"b\"\nrun = '{}'\n\
             [[task]]\nid = \"c\"\nrun = 'echo c'\nafter = [\"a\"]\n",
            wait_for_file("go-a"),
            wait_for_file("go-b"),
        ),
    )
}

/// The command line that runs `plan` with background workers, then says it ended.
fn run_line(plan: &std::path::Path) -> String {
    format!(
        "{ORCH} run {} --launcher background; echo DONE-MARKER $?",
        plan.display()
    )
}

/// The slow plan run in a new pane, once its view shows both tasks running and `a`'s
/// progress: the sandbox, the pane, the session and what the pane shows.
fn running_in_a_pane() -> (Sandbox, Pane, std::path::PathBuf, String) {
    let mut sb = Sandbox::new();
    let plan = slow_plan(&sb);
    let pane = sb.pane(120, 40);
    pane.line(&run_line(&plan));
    let screen = pane.wait_until(LONG, "both workers running, a at 50%", |s| {
        s.contains("workers: 2 running") && s.contains("50% halfway")
    });
    let session = sb.only_session();
    (sb, pane, session, screen)
}

/// The live view of `run`: worker rows with their tasks and progress while it runs; at
/// the end the view is gone, the summary is printed on the normal screen and the shell
/// is back, in its normal mode.
#[test]
fn run_on_a_terminal_shows_the_live_view_then_the_summary_and_the_prompt() {
    let (sb, pane, _, screen) = running_in_a_pane();
    for want in [
        "w1 ",
        "w2 ",
        "tasks 0/3",
        "tasks 1-3 of 3",
        "wave 2",
        "q quit",
    ] {
        assert!(screen.contains(want), "{want:?} not shown:\n{screen}");
    }
    let rows = |task: &str| screen.lines().filter(|l| l.starts_with(task)).count();
    assert_eq!((rows("a "), rows("b "), rows("c ")), (1, 1, 1), "{screen}");
    touch(&sb, "go-a");
    touch(&sb, "go-b");
    let screen = pane.wait_for("DONE-MARKER 0", LONG);
    assert!(
        screen.contains("succeeded: 3/3 tasks succeeded"),
        "the summary, on the normal screen:\n{screen}"
    );
    assert!(!screen.contains("q quit"), "the view is gone:\n{screen}");
    // The shell reads a line again: the terminal is back in its normal mode.
    pane.line("echo typed-$((6*7))");
    pane.wait_for("typed-42", LONG);
}

/// `r` reassigns the selected task and `c` cancels it after a `y` (journalled as if
/// `orchestrator reassign|cancel` asked), and `q` leaves the view while the run goes on,
/// saying what happens in plain lines.
#[test]
fn keys_reassign_and_cancel_and_q_leaves_the_view_for_plain_lines() {
    let (sb, pane, session, _) = running_in_a_pane();
    // The tasks' list ends with a, b, c: End selects c, Up b, Up a.
    pane.keys(&["End", "Up", "Up", "r"]);
    wait_until(LONG, "a's attempt 1 reassigned", || {
        events(&session).iter().any(|e| {
            e["event"] == "attempt_ended" && e["task"] == "a" && e["reason"] == "reassigned"
        })
    });
    wait_started(&session, "a", 2);
    pane.keys(&["Down", "c"]);
    pane.wait_for("cancel task b and what depends on it? y/n", LONG);
    pane.keys(&["y"]);
    wait_until(LONG, "b cancelled", || {
        read_json(&session.join("tasks/b/outcome.json")).is_some_and(|o| o["state"] == "cancelled")
    });
    let journalled = events(&session);
    let requests: Vec<(&str, &str)> = journalled
        .iter()
        .filter(|e| e["event"] == "control_request")
        .map(|e| {
            (
                e["action"].as_str().unwrap_or(""),
                e["task"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(requests, [("reassign", "a"), ("cancel", "b")]);
    pane.keys(&["q"]);
    pane.wait_until(LONG, "the view gone", |s| !s.contains("q quit"));
    touch(&sb, "go-a");
    let screen = pane.wait_for("DONE-MARKER 1", LONG);
    assert!(screen.contains("] a: succeeded"), "a plain line:\n{screen}");
    assert!(screen.contains("] c: succeeded"), "a plain line:\n{screen}");
}

/// Ctrl-C in the view is the terminal's Ctrl-C: the run is interrupted (exit 130, the
/// session left `interrupted`, its tasks stopped), the view gone.
#[test]
fn ctrl_c_in_the_view_interrupts_the_run() {
    let (sb, pane, session, _) = running_in_a_pane();
    let groups: Vec<(String, i64)> = ["a", "b"]
        .iter()
        .map(|t| (format!("task {t}"), pgid_of(&session, t, 1)))
        .collect();
    pane.keys(&["C-c"]);
    let screen = pane.wait_for("DONE-MARKER 130", LONG);
    assert!(screen.contains("interrupted;"), "{screen}");
    wait_all_gone(
        LONG,
        "after Ctrl-C in the view",
        &worker_pids(&session),
        &groups,
    );
    assert_eq!(status_json(&sb, &session)["state"], "interrupted");
}

/// `status --watch` of a finished session draws it and exits 0 on `q`; of a session
/// whose orchestrator died it says so, and Ctrl-C exits as SIGINT would (130). Without a
/// terminal it refuses.
#[test]
fn status_watch_shows_a_finished_session_until_q_and_says_when_its_orchestrator_is_dead() {
    let mut sb = Sandbox::new();
    let done = sb.run_ok(
        "quick.toml",
        "name = \"quick\"\n[[task]]\nid = \"one\"\nrun = \"echo one\"\n",
    );
    let o = sb.run(&["status", done.to_str().unwrap(), "--watch"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("needs a terminal"), "{}", stderr(&o));
    let dead = sb.start_plan(
        "held.toml",
        &format!(
            "name = \"held\"\n[[task]]\nid = \"hold\"\nrun = '{}'\n",
            wait_for_file("never")
        ),
        &["-q"],
    );
    wait_started(&dead, "hold", 1);
    sb.kill_orchestrator(&dead);
    let pane = sb.pane(120, 40);
    pane.line(&format!(
        "{ORCH} status {} --watch; echo EXIT=$?",
        done.display()
    ));
    // The whole frame: tmux may show it half written.
    let wants = ["finished", "succeeded", "tasks 1/1", "one", "events"];
    pane.wait_until(LONG, "the finished session's frame", |screen| {
        wants.iter().all(|w| screen.contains(w))
    });
    pane.keys(&["q"]);
    pane.wait_for("EXIT=0", LONG);
    pane.line(&format!(
        "{ORCH} status {} --watch; echo EXIT=$?",
        dead.display()
    ));
    let screen = pane.wait_for("ORCHESTRATOR IS DEAD", LONG);
    assert!(
        screen.contains(&format!(
            "its orchestrator is gone: `orchestrator resume {}` carries on",
            session_id(&dead)
        )),
        "{screen}"
    );
    pane.keys(&["C-c"]);
    pane.wait_for("EXIT=130", LONG);
}

/// What the orchestrator's process writes on stderr while the view is up does not land on
/// the view's screen: a warning of its own (git cannot list what a worktree task changed,
/// its `.git` overwritten by the task) and what a `notify` command it starts says (the
/// child inherits its stderr) are shown inside the view, in a panel of their own, the
/// screen otherwise intact; when the session ends and the view closes, both are printed
/// on the normal screen, in the shell's scrollback, before the summary.
#[test]
fn stderr_while_the_view_is_up_is_shown_inside_it_and_printed_when_it_closes() {
    use crate::worktree::{GIT_ENV, repo};
    let mut sb = Sandbox::new();
    repo(&sb);
    let plan = sb.write(
        "noisy.toml",
        &format!(
            "name = \"noisy\"\nworkers = 3\n\
             [[task]]\nid = \"wt\"\nworktree = true\ncwd = \"repo\"\nrun = 'echo junk > .git'\n\
             [[task]]\nid = \"ask\"\nagent = \"generic\"\n\
             notify = 'echo \"notify says: $MAESTRO_AGENT_MESSAGE\" >&2'\n\
             run = 'worker state waiting \"pick one\"; {}'\n\
             [[task]]\nid = \"hold\"\nrun = '{}'\n",
            wait_for_file("go"),
            wait_for_file("go"),
        ),
    );
    let pane = sb.pane(120, 40);
    // The sessions' git commands see no configuration of this machine's (as in worktree.rs).
    let env: Vec<String> = GIT_ENV.iter().map(|(k, v)| format!("{k}='{v}'")).collect();
    pane.line(&format!("{} {}", env.join(" "), run_line(&plan)));
    let warning = "warning: task wt: cannot list what its worktree changed";
    let notified = "notify says: pick one";
    let screen = pane.wait_until(LONG, "both lines in the view", |s| {
        s.contains(warning) && s.contains(notified)
    });
    let lines: Vec<&str> = screen.lines().collect();
    assert!(
        lines[0].starts_with("maestro noisy-"),
        "the header:\n{screen}"
    );
    assert!(
        lines.last().is_some_and(|l| l.contains("q quit")),
        "the footer:\n{screen}"
    );
    let title = lines
        .iter()
        .position(|l| l.contains(" stderr: 2 lines, printed when the view closes "))
        .unwrap_or_else(|| panic!("no stderr panel:\n{screen}"));
    // Each line once, in the panel (drawn over the screen, it would be elsewhere too).
    for want in [warning, notified] {
        let at: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].contains(want))
            .collect();
        assert_eq!(at.len(), 1, "{want:?} shown once:\n{screen}");
        assert!(
            lines[at[0]].starts_with(want) && [title + 1, title + 2].contains(&at[0]),
            "{want:?} in the panel:\n{screen}"
        );
    }
    assert!(screen.contains("ask agent WAITING: pick one"), "{screen}");
    touch(&sb, "go");
    pane.wait_for("DONE-MARKER 0", LONG);
    let scrollback = pane.history();
    let at = |what: &str| {
        scrollback
            .find(what)
            .unwrap_or_else(|| panic!("{what:?} not in the scrollback:\n{scrollback}"))
    };
    let summary = at("succeeded: 3/3 tasks succeeded");
    assert!(
        at(warning) < summary && at(notified) < summary,
        "{scrollback}"
    );
    assert!(
        !scrollback.contains("q quit"),
        "the view is gone:\n{scrollback}"
    );
}
