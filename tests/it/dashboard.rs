//! The live dashboard in a real terminal: a shell in a tmux pane of a private server
//! (120x40), `orchestrator status --watch` typed into it as a person would, the screen read with `capture-pane`, keys sent with `send-keys`.

use std::time::Duration;

use crate::util::*;

const LONG: Duration = Duration::from_secs(30);

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
    let screen = pane.wait_for("finished", LONG);
    for want in ["succeeded", "tasks 1/1", "one", "events"] {
        assert!(screen.contains(want), "{want:?} not shown:\n{screen}");
    }
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
