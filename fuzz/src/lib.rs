//! What the fuzz targets check, one public function a target: each takes the fuzzer's
//! bytes, feeds them to the library function that reads that kind of input (the plan
//! parser, `fsio::parse_json` behind every record read, the journal reader and the fold
//! of a journal into a `History`, and the engine rebuilt from it), and asserts what must
//! hold for any input: no panic, and where maestro writes what it reads, that what it
//! writes reads back the same.
//!
//! This file is also compiled into the main crate's tests (tests/it/fuzz_corpus.rs),
//! which run every file of `corpus/` through these functions on a stable toolchain: the
//! seeds and every crash found stay checked by `cargo test` without cargo-fuzz.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use maestro::engine::{Command, Config, Engine, Exit, Fact, Found, FoundWorker};
use maestro::fsio;
use maestro::journal::{DeathCause, History, Reader, Tail, WorkerEvent};
use maestro::message::{self, Envelope};
use maestro::plan::Plan;
use maestro::primitives;
use maestro::proto;
use maestro::shared::Progress;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// What a fuzz target runs on each input.
pub type Check = fn(&[u8]);

/// The fuzz targets, by name, with their check: what the corpus replay iterates over.
pub const TARGETS: &[(&str, Check)] = &[
    ("plan_toml", plan_toml),
    ("plan_toml_large", plan_toml_large),
    ("plan_json", plan_json),
    ("records", records),
    ("journal", journal),
    ("worker_journal", worker_journal),
];

/// A TOML plan: `Plan::parse` gives a plan or an error, and a plan's `plan.json` reads
/// back as the same plan.
pub fn plan_toml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        plan_text("plan.toml", text);
    }
}

/// A large TOML plan, parsed a slice of tasks at a time (see [`big_plan`]): a target of
/// its own, as each input costs a thousand small ones. Only the parse and `plan.json`:
/// the rest would cost the plan's size again, for nothing [`plan_toml`] does not reach.
pub fn plan_toml_large(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Plan::parse("plan.toml", &big_plan(text), Path::new("/base")) {
        Ok(plan) => assert_eq!(round_trip(Path::new("plan.json"), &plan), plan),
        Err(e) => drop(e.to_string()),
    }
}

/// `body` with everything from its first `[[task]]` on repeated, `{n}` replaced by the
/// repeat's number, until it is past the size where a TOML plan is parsed a slice of
/// tasks at a time (`CHUNKED_ABOVE`, 128 KiB, in src/plan/raw.rs).
pub fn big_plan(body: &str) -> String {
    let Some(i) = body.find("[[task]]") else {
        return body.to_string();
    };
    let (head, rep) = body.split_at(i);
    let mut big = head.to_string();
    let mut n = 0;
    while big.len() <= 129 * 1024 {
        big.push_str(&rep.replace("{n}", &n.to_string()));
        n += 1;
    }
    big
}

/// A JSON plan: as [`plan_toml`].
pub fn plan_json(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        plan_text("plan.json", text);
    }
}

fn plan_text(file: &str, text: &str) {
    match Plan::parse(file, text, Path::new("/base")) {
        Err(e) => {
            let _ = e.to_string();
        }
        Ok(plan) => {
            let back = round_trip(Path::new("plan.json"), &plan);
            assert_eq!(back, plan, "plan.json reads back as the plan");
            use_plan(plan);
        }
    }
}

/// What the CLI and the engine do with a plan: describe it, and run a session of it.
fn use_plan(plan: Plan) {
    let _ = (plan.waves(), plan.critical_path(), plan.to_dot());
    let _ = (plan.describe(), plan.describe_json());
    let cfg = Config::new(plan.workers, Duration::from_millis(plan.lease_ms));
    let now = Instant::now();
    run(
        Engine::new(plan, cfg, 1, now),
        VecDeque::from([Fact::Start]),
        now,
    );
}

/// Drive `engine` as the shell would, from `facts`, in a world where every worker
/// registers at once and every first attempt fails (so that retries, backoffs and
/// skips run), later ones succeed; time jumps to each deadline. Bounded: a plan's
/// signals and checkpoints are never raised here, so not every session ends.
fn run(mut engine: Engine, mut facts: VecDeque<Fact>, mut now: Instant) {
    let limit = 64 + 16 * engine.plan().tasks.len().min(64);
    for _ in 0..limit {
        let fact = match facts.pop_front() {
            Some(f) => f,
            None => {
                match engine.next_deadline() {
                    Some(d) => now = now.max(d),
                    None => return,
                }
                Fact::Tick
            }
        };
        for c in engine.on(fact, now) {
            match c {
                Command::SpawnWorker { worker } => facts.push_back(Fact::WorkerRegistered {
                    worker,
                    pid: 1,
                    host: "h".into(),
                    terminal: None,
                }),
                Command::Assign {
                    worker,
                    task,
                    attempt,
                    ..
                } => {
                    let task = engine.plan().tasks[task].id.clone();
                    facts.push_back(Fact::AttemptStarted(proto::Started {
                        task: task.clone(),
                        attempt,
                        worker: worker.clone(),
                        pid: 2,
                        pgid: 2,
                        started_at: "x".into(),
                        started_unix_ms: 1,
                        proc_start: None,
                        boot_id: None,
                    }));
                    let code = if attempt == 1 { 1 } else { 0 };
                    facts.push_back(exited(worker, task, attempt, Some(code), None));
                }
                Command::Withdraw {
                    worker,
                    task,
                    attempt,
                } => facts.push_back(Fact::Withdrawn {
                    worker,
                    task: engine.plan().tasks[task].id.clone(),
                    attempt,
                    ok: true,
                }),
                Command::Kill {
                    worker,
                    task,
                    attempt,
                    reason,
                } => {
                    let task = engine.plan().tasks[task].id.clone();
                    let why = Some(reason.as_str().to_string());
                    facts.push_back(exited(worker, task, attempt, None, why));
                }
                // An auxiliary command (cleanup, gate check, emergency, rollback): its
                // first run fails too.
                Command::AssignAux {
                    worker,
                    job,
                    attempt,
                    ..
                } => {
                    let name = engine.aux_name(job);
                    let code = if attempt == 1 { 1 } else { 0 };
                    facts.push_back(exited(worker, name, attempt, Some(code), None));
                }
                Command::KillAux {
                    worker,
                    job,
                    attempt,
                    reason,
                } => {
                    let name = engine.aux_name(job);
                    let why = Some(reason.as_str().to_string());
                    facts.push_back(exited(worker, name, attempt, None, why));
                }
                Command::StopWorker { worker, .. } => facts.push_back(Fact::WorkerDied {
                    worker,
                    how: DeathCause::Exited,
                    exits: Vec::new(),
                }),
                Command::Finish(_) => return,
                _ => {}
            }
        }
    }
}

/// An attempt's `exited` line as the shell feeds it.
fn exited(
    worker: String,
    task: String,
    attempt: u32,
    code: Option<i32>,
    killed_by: Option<String>,
) -> Fact {
    let record = proto::ExitRecord {
        task: task.clone(),
        attempt,
        worker: worker.clone(),
        exit_code: code,
        signal: code.is_none().then_some(15),
        started_at: "x".into(),
        ended_at: "y".into(),
        duration_ms: 1,
        timed_out: false,
        killed_by,
        ended_on: None,
        spawn_error: None,
        result_error: None,
        has_result: false,
    };
    Fact::AttemptExited {
        worker,
        task,
        attempt,
        exit: Exit::Record {
            record: Box::new(record),
            result: None,
        },
    }
}

/// Serialize `x` as maestro writes records (pretty JSON) and read it back through
/// [`fsio::parse_json`]: it must read, and mean the same (compared as what it
/// serializes to, so types without `PartialEq` are checked too).
fn round_trip<T: Serialize + DeserializeOwned>(path: &Path, x: &T) -> T {
    let bytes = serde_json::to_vec_pretty(x).expect("a record serializes");
    let back: T = fsio::parse_json(path, &bytes).unwrap_or_else(|e| {
        panic!(
            "what maestro writes does not read back: {e}\n{}",
            String::from_utf8_lossy(&bytes)
        )
    });
    let again = serde_json::to_vec_pretty(&back).expect("a record serializes");
    assert!(
        again == bytes,
        "a record changed on its way through a file:\n{}\nread back as\n{}",
        String::from_utf8_lossy(&bytes),
        String::from_utf8_lossy(&again)
    );
    back
}

/// Parse `bytes` as a `T` read from `name`; an error must print, a record must round-trip.
fn record<T: Serialize + DeserializeOwned>(name: &str, bytes: &[u8]) -> Option<T> {
    let path = Path::new(name);
    match fsio::parse_json::<T>(path, bytes) {
        Ok(x) => Some(round_trip(path, &x)),
        Err(e) => {
            let _ = e.to_string();
            None
        }
    }
}

/// [`record`], for a kind that is only read.
fn read<T: Serialize + DeserializeOwned>(name: &str, bytes: &[u8]) {
    let _ = record::<T>(name, bytes);
}

/// Every JSON record a session holds: the first byte picks the kind, the rest is the
/// file. Each kind is read the way its readers read it, then used as they use it.
pub fn records(data: &[u8]) {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    match kind % 26 {
        0 => read::<proto::SessionInfo>("session.json", bytes),
        1 => read::<proto::OrchestratorInfo>("info.json", bytes),
        2 => read::<proto::WorkerInfo>("worker.json", bytes),
        3 => read::<proto::Assignment>("t.1", bytes),
        4 => read::<proto::KillRequest>("kill", bytes),
        5 => read::<proto::Heartbeat>("heartbeat", bytes),
        6 => read::<proto::Shutdown>("shutdown", bytes),
        7 => read::<proto::Started>("started", bytes),
        8 => {
            if let Some(e) = record::<proto::ExitRecord>("exit.json", bytes) {
                let _ = (e.succeeded(), e.failure_reason());
            }
        }
        9 => read::<proto::Outcome>("outcome.json", bytes),
        10 => read::<proto::Summary>("summary.json", bytes),
        11 => read::<proto::RetryPlan>("retry.json", bytes),
        12 => read::<proto::ControlRequest>("request.json", bytes),
        13 => read::<proto::ControlReply>("reply.json", bytes),
        14 => read::<proto::Arrival>("t.ready", bytes),
        15 => read::<proto::BarrierVerdict>("broken", bytes),
        16 => read::<proto::SignalRecord>("signal", bytes),
        17 => read::<proto::LockRecord>("t.json", bytes),
        18 => read::<proto::LockAbort>("t.abort", bytes),
        19 => read::<proto::RaceOutcome>("outcome.json", bytes),
        20 => {
            if let Some(m) = record::<Envelope>("message.json", bytes) {
                let _ = message::display_body(&m.body);
            }
        }
        21 => {
            if let Some(state) = record::<BTreeMap<String, serde_json::Value>>("state.json", bytes)
            {
                for v in state.values() {
                    let _ = primitives::display_value(v);
                }
            }
        }
        22 => read::<serde_json::Value>("shared.json", bytes),
        23 => read::<Progress>("progress.json", bytes),
        // plan.json as resume and the worker verbs read it: as written, not validated again.
        24 => {
            if let Some(plan) = record::<Plan>("plan.json", bytes) {
                use_plan(plan);
            }
        }
        // A task's result.json: an object, or a reason it is not.
        _ => {
            let v = serde_json::from_slice::<serde_json::Value>(bytes);
            let err = proto::result_error(Path::new("result.json"), bytes);
            assert_eq!(err.is_none(), matches!(v, Ok(serde_json::Value::Object(_))));
        }
    }
}

/// A session journal (`events.jsonl`), read in two parts as the orchestrator's reader
/// follows a growing file: the first two bytes say where the file is cut (and what a
/// resume finds beside it). The lines read must be those of one read of the whole file,
/// each must round-trip, and their fold (`History`) must rebuild an engine that takes a
/// resume's facts, and runs on, without a panic.
pub fn journal(data: &[u8]) {
    let read = |r: &mut Reader| r.refresh().expect("read the scratch journal");
    let (reader, events, whole, _) = read_growing(data, Reader::at, read);
    assert_eq!(events, whole, "a journal read in parts reads as a whole");
    for ev in &events {
        let back = round_trip(Path::new("events.jsonl"), ev);
        assert_eq!(&back, ev, "a journal line reads back as written");
    }
    let mut folded = History::default();
    for ev in &events {
        folded.apply(ev);
    }
    let history = reader.into_history();
    assert_eq!(format!("{folded:?}"), format!("{history:?}"));
    let bits = data
        .iter()
        .take(2)
        .fold(0u32, |n, &b| n << 8 | u32::from(b));
    resume(&history, found(&history, bits));
}

/// What a resume's scan of the directory may find beside the journal in `history`: each
/// worker it names, alive or dead, registered or not, of our protocol or not, told to
/// stop or not (as `bits` say), with the attempts the journal fences on it claimed or
/// still queued (then taken back), the claimed ones started (its journal says they ran)
/// or not.
fn found(history: &History, bits: u32) -> Found {
    let workers = history.workers.keys().enumerate().map(|(i, w)| {
        let b = bits.rotate_left(5 * i as u32);
        let fenced = history.tasks.iter().filter_map(|(t, h)| match &h.fence {
            Some((n, fw)) if fw == w => Some((t.clone(), *n)),
            _ => None,
        });
        let fenced: Vec<(String, u32)> = fenced.collect();
        let (claimed, withdrawn) = if b & 16 != 0 {
            (fenced, Vec::new())
        } else {
            (Vec::new(), fenced)
        };
        let ran = if b & 32 != 0 {
            claimed.clone()
        } else {
            Vec::new()
        };
        FoundWorker {
            id: w.clone(),
            alive: b & 1 != 0,
            registered: b & 2 != 0,
            foreign: b & 4 != 0,
            stopped: b & 8 != 0,
            claimed,
            withdrawn,
            started: Vec::new(),
            ran,
            exited: Vec::new(),
        }
    });
    Found {
        workers: workers.collect(),
        ..Default::default()
    }
}

/// The plan the fuzzed journals are resumed against: a few short task ids the fuzzer
/// finds quickly, a race, a signal and a checkpoint.
const RESUME_PLAN: &str = r#"name = "fz"
workers = 2
[defaults]
retries = 1
[[task]]
id = "a"
run = "true"
[[task]]
id = "b"
run = "true"
after = ["a", "signal:s"]
[[task]]
id = "c"
run = "true"
after = ["r"]
max_reassign = 1
[[task]]
id = "d"
run = "true"
[[task]]
id = "e"
run = "true"
[[race]]
id = "r"
tasks = ["d", "e"]
[[checkpoint]]
name = "k"
tasks = ["a", "d"]
"#;

/// `orchestrator resume` on a session whose journal folded into `history`, with `found`
/// on disk beside it, then the session run on from there.
fn resume(history: &History, found: Found) {
    static PLAN: std::sync::OnceLock<Plan> = std::sync::OnceLock::new();
    let plan = PLAN
        .get_or_init(|| Plan::parse("fz.toml", RESUME_PLAN, Path::new("/")).expect("the plan"))
        .clone();
    let cfg = Config::new(plan.workers, Duration::from_millis(plan.lease_ms));
    let now = Instant::now();
    let engine = Engine::restore(plan, cfg, history, 1, now, 1_000_000);
    let facts = VecDeque::from([Fact::Recovered(found), Fact::Start]);
    run(engine, facts, now);
}

/// A worker's journal (`workers/<id>/events.jsonl`), read in two parts like
/// [`journal`]; its last line as `status` reads it (the file's tail only) must be the
/// last line read whole.
pub fn worker_journal(data: &[u8]) {
    let read = |t: &mut Tail| t.read_worker_events().expect("read the scratch journal");
    let (_, events, whole, file) = read_growing(data, Tail::new, read);
    let values = |evs: &[WorkerEvent]| -> Vec<serde_json::Value> {
        evs.iter()
            .map(|ev| serde_json::to_value(ev).expect("an event serializes"))
            .collect()
    };
    assert_eq!(values(&events), values(&whole));
    for ev in &events {
        round_trip(Path::new("events.jsonl"), ev);
        if let WorkerEvent::Exited(e) = ev {
            let _ = (e.succeeded(), e.failure_reason());
        }
    }
    // `last_worker_event` reads the last 8 KiB: on a shorter file it sees every line.
    if data.len() <= 8192 {
        let last = maestro::journal::last_worker_event(file.path()).expect("read the journal");
        assert_eq!(
            values(last.as_slice()),
            values(&events[events.len().saturating_sub(1)..])
        );
    }
}

/// A journal that grows while it is read: `data` past its first two bytes is written to
/// a scratch file in two parts, cut where those two bytes say, and `read` by a reader
/// `open`ed on it after each part. Returns that reader, what it read, what a new reader
/// reads of the whole file, and the file.
fn read_growing<R, T>(
    data: &[u8],
    open: impl Fn(PathBuf) -> R,
    read: impl Fn(&mut R) -> Vec<T>,
) -> (R, Vec<T>, Vec<T>, tempfile::NamedTempFile) {
    let (head, text) = data.split_at(data.len().min(2));
    let cut = head.iter().fold(0usize, |n, &b| n << 8 | usize::from(b)) % (text.len() + 1);
    let file = scratch_file();
    let path = file.path().to_path_buf();
    std::fs::write(&path, &text[..cut]).expect("write the scratch journal");
    let mut reader = open(path.clone());
    let mut got = read(&mut reader);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open the scratch journal");
    f.write_all(&text[cut..])
        .expect("append to the scratch journal");
    got.extend(read(&mut reader));
    let whole = read(&mut open(path));
    (reader, got, whole, file)
}

/// A new file in memory where the system has a tmpfs (removed when dropped): the
/// journals are read through the real file readers.
fn scratch_file() -> tempfile::NamedTempFile {
    let shm = Path::new("/dev/shm");
    let b = tempfile::Builder::new().prefix("maestro-fuzz-").to_owned();
    if shm.is_dir() {
        b.tempfile_in(shm)
    } else {
        b.tempfile()
    }
    .expect("a scratch file")
}
