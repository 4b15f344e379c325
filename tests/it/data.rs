//! Messages, shared data and progress, with the real binaries: many concurrent
//! senders into one inbox, the orchestrator's own inbox, values shared between tasks,
//! progress reports, and the exact text and exit code of every refusal and timeout.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::util::*;

/// Run a finished two-task session (`a`, `b`) to call verbs against directly.
fn finished_session(sb: &Sandbox) -> PathBuf {
    let o = sb.run_plan(
        "two.toml",
        "name = \"two\"\n[[task]]\nid = \"a\"\nrun = 'true'\n[[task]]\nid = \"b\"\nrun = 'true'\n",
        &["-q"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    session_of(&o)
}

/// `worker ARGS` as task `task` of `session`, with `stdin` fed to it.
fn worker_in(session: &Path, task: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut c = Command::new(WORKER);
    c.args(args)
        .env("MAESTRO_SESSION", session)
        .env("MAESTRO_TASK", task)
        .env_remove("MAESTRO_ATTEMPT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn worker");
    // A verb that does not read stdin may exit first: a broken pipe here is fine.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

fn worker(session: &Path, task: &str, args: &[&str]) -> Output {
    worker_in(session, task, args, b"")
}

/// (exit code, stdout, stderr)
fn res(o: &Output) -> (Option<i32>, String, String) {
    (o.status.code(), stdout(o), stderr(o))
}

fn ok(out: &str) -> (Option<i32>, String, String) {
    (Some(0), out.to_string(), String::new())
}

fn fail(code: i32, err: &str) -> (Option<i32>, String, String) {
    (Some(code), String::new(), err.to_string())
}

#[test]
fn four_senders_800_messages_each_received_once_in_sender_order() {
    let sb = Sandbox::new();
    let mut plan = String::from(
        "name = \"fanin\"\nworkers = 5\n\
         [[task]]\nid = \"sink\"\nrun = 'i=0; while [ $i -lt 800 ]; do worker recv --wait --timeout 30s >> \"$OUT/got\" || exit 1; i=$((i+1)); done'\n",
    );
    for s in ["s1", "s2", "s3", "s4"] {
        plan.push_str(&format!(
            "[[task]]\nid = \"{s}\"\nrun = 'i=1; while [ $i -le 200 ]; do worker send --to sink \"$MAESTRO_TASK:$i\" || exit 1; i=$((i+1)); done'\n"
        ));
    }
    let o = sb.run_plan("fanin.toml", &plan, &["-q"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let got = fs::read_to_string(sb.out().join("got")).unwrap();
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines.len(), 800);
    let mut by_sender: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for l in &lines {
        let (s, i) = l
            .split_once(':')
            .unwrap_or_else(|| panic!("bad line {l:?}"));
        by_sender.entry(s).or_default().push(i.parse().unwrap());
    }
    let expected: Vec<u32> = (1..=200).collect();
    assert_eq!(by_sender.len(), 4);
    for (s, seen) in &by_sender {
        // Exactly once each, and in the order sent.
        assert_eq!(seen, &expected, "messages from {s}");
    }
    let session = session_of(&o);
    let inbox = session.join("messages/sink");
    let unread = fs::read_dir(&inbox)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name() != "read")
        .count();
    assert_eq!(unread, 0, "every message was consumed");
    assert_eq!(fs::read_dir(inbox.join("read")).unwrap().count(), 800);
    assert_eq!(
        fs::read_to_string(session.join("messages/.seq/s3")).unwrap(),
        "200\n"
    );
    let first = read_json(
        &fs::read_dir(inbox.join("read"))
            .unwrap()
            .flatten()
            .find(|e| {
                e.file_name()
                    .to_string_lossy()
                    .ends_with("-s2-0000000001.json")
            })
            .unwrap()
            .path(),
    )
    .unwrap();
    assert_eq!(
        (&first["from"], &first["to"], &first["seq"], &first["body"]),
        (&"s2".into(), &"sink".into(), &1.into(), &"s2:1".into())
    );
    assert!(first["sent_at"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn concurrent_receivers_of_one_inbox_never_get_a_message_twice() {
    let sb = Sandbox::new();
    let session = sb.run_ok(
        "three.toml",
        "name = \"three\"\n[[task]]\nid = \"a\"\nrun = 'true'\n[[task]]\nid = \"b\"\nrun = 'true'\n[[task]]\nid = \"c\"\nrun = 'true'\n",
    );
    let out = sb.out();
    let shell = |task: &str, script: &str| {
        Command::new("sh")
            .args(["-c", script])
            .env("W", WORKER)
            .env("OUT", &out)
            .env("MAESTRO_SESSION", &session)
            .env("MAESTRO_TASK", task)
            .env_remove("MAESTRO_ATTEMPT")
            .spawn()
            .unwrap()
    };
    // Two senders at once, 150 messages each.
    let senders: Vec<_> = ["a", "c"]
        .iter()
        .map(|t| {
            shell(
                t,
                "i=1; while [ $i -le 150 ]; do \"$W\" send --to b \"$MAESTRO_TASK:$i\" || exit 1; i=$((i+1)); done",
            )
        })
        .collect();
    for mut c in senders {
        assert!(c.wait().unwrap().success());
    }
    // Four receivers drain the inbox at once, each until it finds it empty.
    let receivers: Vec<_> = (0..4)
        .map(|r| {
            shell(
                "b",
                &format!("while \"$W\" recv >> \"$OUT/r{r}\" 2>/dev/null; do :; done"),
            )
        })
        .collect();
    for mut c in receivers {
        c.wait().unwrap();
    }
    let mut all: Vec<String> = Vec::new();
    for r in 0..4 {
        let text = fs::read_to_string(out.join(format!("r{r}"))).unwrap_or_default();
        let mut last: BTreeMap<String, u32> = BTreeMap::new();
        for l in text.lines() {
            let (s, i) = l.split_once(':').unwrap();
            let i: u32 = i.parse().unwrap();
            // What one receiver takes from one sender is in the order sent.
            assert!(
                last.insert(s.to_string(), i).is_none_or(|prev| prev < i),
                "{l} after {s}:{:?}",
                last.get(s)
            );
            all.push(l.to_string());
        }
    }
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!((total, all.len()), (300, 300), "each message exactly once");
}

#[test]
fn orchestrator_send_and_inbox_round_trip() {
    let mut sb = Sandbox::new();
    let session = sb.start_plan(
        "chat.toml",
        "name = \"chat\"\nworkers = 2\n\
         [[task]]\nid = \"a\"\nrun = 'worker send --to orchestrator \"ready a\" && worker recv --wait --timeout 30s > \"$OUT/a\"'\n\
         [[task]]\nid = \"b\"\nrun = 'echo \"{\\\"n\\\": 2}\" | worker send --to orchestrator --json - && worker recv --wait --timeout 30s --json > \"$OUT/b\"'\n",
        &["-q"],
    );
    let s = session.to_str().unwrap();
    let mut lines: Vec<String> = Vec::new();
    wait_until(Duration::from_secs(20), "both tasks to write in", || {
        let o = sb.run(&["inbox", s]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        lines.extend(stdout(&o).lines().map(str::to_string));
        lines.len() >= 2
    });
    lines.sort();
    assert_eq!(lines, ["a: ready a", "b: {\"n\":2}"]);
    // Consumed: a second look finds nothing.
    assert_eq!(res(&sb.run(&["inbox", s])), ok(""));
    assert_eq!(
        res(&sb.run(&["send", s, "--to", "orchestrator", "x"])),
        fail(
            2,
            "error: unknown recipient \"orchestrator\": not a task of this session or \"all\"\n"
        )
    );
    let o = sb.run(&["send", s, "--to", "all", "go"]);
    assert_eq!(res(&o), ok(""));
    assert_eq!(sb.wait_last(Duration::from_secs(30)), 0);
    assert_eq!(fs::read_to_string(sb.out().join("a")).unwrap(), "go\n");
    let env: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(sb.out().join("b")).unwrap()).unwrap();
    assert_eq!(
        (&env["from"], &env["to"], &env["seq"], &env["body"]),
        (&"orchestrator".into(), &"b".into(), &1.into(), &"go".into())
    );

    // --json prints envelopes; a message from the orchestrator to one task by name.
    assert_eq!(
        res(&worker(
            &session,
            "a",
            &["send", "--to", "orchestrator", "late"]
        )),
        ok("")
    );
    let o = sb.run(&["inbox", s, "--json"]);
    let env: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (&env["from"], &env["to"], &env["seq"], &env["body"]),
        (
            &"a".into(),
            &"orchestrator".into(),
            &2.into(),
            &"late".into()
        )
    );
    // The session has ended: nobody would read it.
    let id = session_id(&session);
    assert_eq!(
        res(&sb.run(&["send", s, "--to", "b", "psst"])),
        fail(
            2,
            &format!(
                "error: session {id} has finished (succeeded): nothing runs there to send to \
                 (`orchestrator retry {id} TASK` re-runs a task)\n"
            )
        )
    );
}

#[test]
fn message_refusals_and_timeouts_have_exact_errors() {
    let sb = Sandbox::new();
    let session = finished_session(&sb);
    let id = session_id(&session);
    assert_eq!(
        res(&worker(&session, "a", &["send", "--to", "zz", "hi"])),
        fail(
            2,
            "error: unknown recipient \"zz\": not a task of this session, \"all\" or \"orchestrator\"\n"
        )
    );
    assert_eq!(
        res(&worker(&session, "a", &["send", "--to", "../b", "hi"])),
        fail(
            2,
            "error: unknown recipient \"../b\": not a task of this session, \"all\" or \"orchestrator\"\n"
        )
    );
    assert_eq!(
        res(&worker(&session, "zz", &["send", "--to", "a", "hi"])),
        fail(2, &format!("error: session {id} has no task \"zz\"\n"))
    );
    assert_eq!(
        res(&worker(&session, "b", &["recv"])),
        fail(1, "no messages for b\n")
    );
    assert_eq!(
        res(&worker(
            &session,
            "b",
            &["recv", "--wait", "--timeout", "300ms"]
        )),
        fail(
            1,
            "error: recv: timed out after 300ms waiting for a message\n"
        )
    );
    // A message from a is there, but not from the orchestrator.
    assert_eq!(
        res(&worker(&session, "a", &["send", "--to", "b", "from a"])),
        ok("")
    );
    assert_eq!(
        res(&worker(
            &session,
            "b",
            &[
                "recv",
                "--wait",
                "--from",
                "orchestrator",
                "--timeout",
                "200ms"
            ]
        )),
        fail(
            1,
            "error: recv: timed out after 200ms waiting for a message from orchestrator\n"
        )
    );
    assert_eq!(
        res(&worker(&session, "b", &["recv", "--from", "zz"])),
        fail(
            2,
            "error: unknown sender \"zz\": not a task of this session or \"orchestrator\"\n"
        )
    );
    assert_eq!(
        res(&worker(&session, "b", &["recv", "--from", "a"])),
        ok("from a\n")
    );
    // --timeout without --wait is misuse, caught by the parser.
    let o = worker(&session, "b", &["recv", "--timeout", "1s"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--wait"), "{}", stderr(&o));
    // A body over 1 MiB is refused before anything is written.
    let big = format!("\"{}\"", "x".repeat(1024 * 1024));
    assert_eq!(
        res(&worker_in(
            &session,
            "a",
            &["send", "--to", "b", "--json", "-"],
            big.as_bytes()
        )),
        fail(
            2,
            "error: message is 1048578 bytes; the limit is 1048576 bytes (1 MiB)\n"
        )
    );
    assert_eq!(
        res(&worker_in(
            &session,
            "a",
            &["send", "--to", "b", "--json", "-"],
            b"{nope"
        )),
        fail(
            2,
            "error: <stdin>: invalid JSON: key must be a string at line 1 column 2\n"
        )
    );
    assert_eq!(
        res(&worker(&session, "b", &["recv"])),
        fail(1, "no messages for b\n")
    );
    // `all` from a one-sender view: everyone but the sender.
    assert_eq!(
        res(&worker(&session, "a", &["send", "--to", "all", "bcast"])),
        ok("")
    );
    assert_eq!(res(&worker(&session, "b", &["recv"])), ok("bcast\n"));
    assert_eq!(
        res(&worker(&session, "a", &["recv"])),
        fail(1, "no messages for a\n")
    );
}

#[test]
fn shared_values_set_get_wait_and_refusals() {
    let sb = Sandbox::new();
    let session = finished_session(&sb);
    assert_eq!(
        res(&worker(&session, "a", &["set", "url", "http://x:8080"])),
        ok("")
    );
    assert_eq!(
        res(&worker(&session, "b", &["get", "url"])),
        ok("http://x:8080\n")
    );
    assert_eq!(
        fs::read_to_string(session.join("shared/url.json")).unwrap(),
        "\"http://x:8080\"\n"
    );
    let f = sb.write("v.json", "{\"ids\": [1, 2, 3], \"ok\": true}");
    assert_eq!(
        res(&worker(
            &session,
            "a",
            &["set", "cfg", "--json", f.to_str().unwrap()]
        )),
        ok("")
    );
    assert_eq!(
        res(&worker(&session, "b", &["get", "cfg"])),
        ok("{\"ids\":[1,2,3],\"ok\":true}\n")
    );
    assert_eq!(
        res(&worker_in(
            &session,
            "a",
            &["set", "n", "--json", "-"],
            b"7"
        )),
        ok("")
    );
    assert_eq!(res(&worker(&session, "b", &["get", "n"])), ok("7\n"));
    // Last writer wins.
    assert_eq!(res(&worker(&session, "a", &["set", "n", "8"])), ok(""));
    assert_eq!(res(&worker(&session, "b", &["get", "n"])), ok("8\n"));

    assert_eq!(
        res(&worker(&session, "b", &["get", "nope"])),
        fail(1, "no value for nope\n")
    );
    assert_eq!(
        res(&worker(
            &session,
            "b",
            &["get", "nope", "--wait", "--timeout", "250ms"]
        )),
        fail(
            1,
            "error: get nope: timed out after 250ms waiting for a value\n"
        )
    );
    // 1 MiB of x plus two quotes: one byte over.
    let big = sb.write("big.json", &format!("\"{}\"", "x".repeat(1024 * 1024 - 1)));
    assert_eq!(
        res(&worker(
            &session,
            "a",
            &["set", "big", "--json", big.to_str().unwrap()]
        )),
        fail(
            2,
            "error: value for \"big\" is 1048577 bytes; the limit is 1048576 bytes (1 MiB)\n"
        )
    );
    assert!(!session.join("shared/big.json").exists());
    assert_eq!(
        res(&worker(&session, "a", &["set", "../x", "v"])),
        fail(
            2,
            "error: invalid key \"../x\": must be 1-64 characters of [A-Za-z0-9._-] not starting with a dot\n"
        )
    );
    assert_eq!(
        res(&worker(&session, "a", &["set", "k", "--json", "/no/such"])),
        fail(2, "error: /no/such: no such file\n")
    );
}

#[test]
fn get_wait_blocks_until_another_task_sets_the_key() {
    let sb = Sandbox::new();
    let o = sb.run_plan(
        "share.toml",
        "name = \"share\"\nworkers = 2\n\
         [[task]]\nid = \"reader\"\nrun = 'touch \"$OUT/waiting\"; worker get port --wait --timeout 30s > \"$OUT/port\"; date +%s%N > \"$OUT/got-at\"'\n\
         [[task]]\nid = \"writer\"\nrun = 'while [ ! -e \"$OUT/waiting\" ]; do sleep 0.02; done; sleep 0.3; date +%s%N > \"$OUT/set-at\"; worker set port 5432'\n",
        &["-q"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(fs::read_to_string(sb.out().join("port")).unwrap(), "5432\n");
    let at = |f: &str| -> u128 {
        fs::read_to_string(sb.out().join(f))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    assert!(at("got-at") >= at("set-at"), "get returned before the set");
}

#[test]
fn progress_is_recorded_per_attempt_and_bad_pct_is_refused() {
    let sb = Sandbox::new();
    let o = sb.run_plan(
        "progress.toml",
        "name = \"prog\"\n\
         [[task]]\nid = \"p\"\nrun = 'worker progress 10 starting && worker progress 42.5 \"batch 17 of 40\" && { worker progress 150 2> \"$OUT/err\"; echo $? > \"$OUT/code\"; }'\n",
        &["-q"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let session = session_of(&o);
    let rec = read_json(&session.join("tasks/p/attempt-1/progress.json")).unwrap();
    assert_eq!(rec["pct"], 42.5);
    assert_eq!(rec["message"], "batch 17 of 40");
    assert!(rec["at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(fs::read_to_string(sb.out().join("code")).unwrap(), "2\n");
    assert_eq!(
        fs::read_to_string(sb.out().join("err")).unwrap(),
        "error: invalid progress \"150\": must be a number from 0 to 100\n"
    );
    // The library view the status display uses.
    let s = maestro::session::Session::open(&session).unwrap();
    let pr = maestro::shared::read_progress(&s, "p", 1).unwrap();
    assert_eq!(
        (pr.pct, pr.message.as_deref()),
        (42.5, Some("batch 17 of 40"))
    );
    assert_eq!(maestro::shared::read_progress(&s, "p", 2), None);

    // Misuse from outside a task.
    assert_eq!(
        res(&worker(
            &session,
            "p",
            &["progress", "-5", "--attempt", "1"]
        )),
        fail(
            2,
            "error: invalid progress \"-5\": must be a number from 0 to 100\n"
        )
    );
    assert_eq!(
        res(&worker(
            &session,
            "p",
            &["progress", "abc", "--attempt", "1"]
        )),
        fail(
            2,
            "error: invalid progress \"abc\": must be a number from 0 to 100\n"
        )
    );
    assert_eq!(
        res(&worker(&session, "p", &["progress", "50"])),
        fail(
            2,
            "error: no attempt: run this inside a maestro task or pass --attempt\n"
        )
    );
    assert_eq!(
        res(&worker(
            &session,
            "p",
            &["progress", "50", "--attempt", "9"]
        )),
        fail(2, "error: task p has no attempt 9\n")
    );
}

/// JSON from standard input has the cap files have; a saved state that would not be read
/// back (over 16 MiB) is refused, and the state saved before is kept.
#[test]
fn stdin_json_and_saved_state_are_capped() {
    let sb = Sandbox::new();
    let session = finished_session(&sb);
    let cap = 16 * 1024 * 1024;
    let over = format!("\"{}\"", "x".repeat(cap - 1));
    for verb in [
        &["save", "k", "--json", "-"][..],
        &["set", "k", "--json", "-"],
    ] {
        assert_eq!(
            res(&worker_in(&session, "a", verb, over.as_bytes())),
            fail(
                2,
                &format!("error: <stdin>: too large (over {cap} bytes)\n")
            ),
            "{verb:?}"
        );
    }
    let nine = format!("\"{}\"", "x".repeat(9 * 1024 * 1024));
    let save = |key: &str| {
        res(&worker_in(
            &session,
            "a",
            &["save", key, "--json", "-"],
            nine.as_bytes(),
        ))
    };
    assert_eq!(save("one"), ok(""));
    let state = session.join("tasks/a/state.json");
    let (code, out, err) = save("two");
    assert_eq!((code, out.as_str()), (Some(2), ""), "{err}");
    assert!(
        err.starts_with(&format!(
            "error: not saving two: {} would be ",
            state.display()
        )) && err.ends_with(&format!(" bytes; the limit is {cap}\n")),
        "{err}"
    );
    let (code, out, _) = res(&worker(&session, "a", &["load", "one"]));
    assert_eq!((code, out.len()), (Some(0), 9 * 1024 * 1024 + 1));
}
