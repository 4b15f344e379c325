//! Micro-benchmarks of maestro's pure hot paths: plan parsing and validation,
//! draining the scheduler, reading + rendering a large session for `status`, and the
//! live dashboard's frames on it (the first, one with nothing new, one after 100 new
//! journal lines), drawn off screen.
//! Run with `cargo bench --bench hot_paths`; the end-to-end suite is `scripts/bench.sh`.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

use maestro::fsio;
use maestro::plan::Plan;
use maestro::proto::{Outcome, SessionInfo, TaskState, now_rfc3339};
use maestro::scheduler::Scheduler;
use maestro::session::Session;
use maestro::status;

/// A wide DAG as TOML: `roots` root tasks, each with `fanout` dependents
/// (`roots * (fanout + 1)` tasks in all), every task `cmd = ["true"]`.
fn wide_dag_toml(roots: usize, fanout: usize) -> String {
    let mut s = String::with_capacity(roots * (fanout + 1) * 48);
    s.push_str("name = \"bench\"\nworkers = 2\n");
    for r in 0..roots {
        s.push_str(&format!("[[task]]\nid = \"r{r}\"\ncmd = [\"true\"]\n"));
        for c in 0..fanout {
            s.push_str(&format!(
                "[[task]]\nid = \"r{r}-{c}\"\ncmd = [\"true\"]\nafter = [\"r{r}\"]\n"
            ));
        }
    }
    s
}

/// 50 waves of 10 tasks, every task of wave k after all of wave k-1 (dense edges).
fn waves_toml(waves: usize, width: usize) -> String {
    let mut s = String::from("name = \"waves\"\nworkers = 2\n");
    for w in 0..waves {
        for i in 0..width {
            s.push_str(&format!("[[task]]\nid = \"w{w}-{i}\"\ncmd = [\"true\"]\n"));
            if w > 0 {
                let deps: Vec<String> = (0..width).map(|j| format!("\"w{}-{j}\"", w - 1)).collect();
                s.push_str(&format!("after = [{}]\n", deps.join(", ")));
            }
        }
    }
    s
}

fn parse(text: &str) -> Plan {
    Plan::parse("bench.toml", text, Path::new("/tmp")).expect("generated plan is valid")
}

/// Run every task of the graph to success, two at a time (like two workers).
fn drain(deps: Vec<Vec<usize>>) -> usize {
    let mut s = Scheduler::new(deps);
    let mut running = Vec::with_capacity(2);
    let mut done = 0;
    while !s.finished() {
        while running.len() < 2 {
            match s.pop_ready() {
                Some(t) => running.push(t),
                None => break,
            }
        }
        let t = running.remove(0);
        done += s.succeed(t).len() + 1;
    }
    done
}

fn bench_plan(c: &mut Criterion) {
    let text_10k = wide_dag_toml(100, 99);
    let text_waves = waves_toml(50, 10);
    let mut g = c.benchmark_group("plan_parse");
    g.bench_function("10k_tasks", |b| b.iter(|| parse(black_box(&text_10k))));
    g.bench_function("waves_50x10", |b| b.iter(|| parse(black_box(&text_waves))));
    g.finish();

    let text_100k = wide_dag_toml(1000, 99);
    let mut g = c.benchmark_group("plan_parse_large");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("100k_tasks", |b| b.iter(|| parse(black_box(&text_100k))));
    g.finish();
}

fn bench_scheduler(c: &mut Criterion) {
    let plan = parse(&wide_dag_toml(100, 99));
    let deps = plan.dep_indices();
    let waves = parse(&waves_toml(50, 10)).dep_indices();
    let mut g = c.benchmark_group("scheduler");
    g.bench_function("dep_indices_10k", |b| {
        b.iter(|| black_box(&plan).dep_indices())
    });
    g.bench_function("drain_10k_wide", |b| {
        b.iter_batched(|| deps.clone(), drain, BatchSize::LargeInput)
    });
    g.bench_function("drain_waves_50x10", |b| {
        b.iter_batched(|| waves.clone(), drain, BatchSize::SmallInput)
    });
    g.finish();
}

/// A finished-looking 10 000-task session (no summary, no live orchestrator): plan.json,
/// session.json and one outcome.json per task.
fn make_session(root: &Path, plan: &Plan) -> Session {
    let session = Session::create(root, &plan.name).expect("create session");
    fsio::write_json(&session.plan_json(), plan).expect("write plan.json");
    let info = SessionInfo {
        protocol: 1,
        id: session.id().to_string(),
        plan_file: "bench.toml".into(),
        created_at: now_rfc3339(),
        launcher: "background".into(),
        workers: 2,
        durable: false,
        worktrees: None,
    };
    fsio::write_json(&session.session_json(), &info).expect("write session.json");
    let ts = now_rfc3339();
    for t in &plan.tasks {
        fsio::create_dir_private(&session.task_dir(&t.id)).expect("task dir");
        let o = Outcome {
            task: t.id.clone(),
            state: TaskState::Succeeded,
            attempt: 1,
            worker: Some("w1".into()),
            exit_code: Some(0),
            signal: None,
            started_at: Some(ts.clone()),
            ended_at: Some(ts.clone()),
            duration_ms: Some(5),
            reason: None,
            result: None,
            decided_at: ts.clone(),
        };
        fsio::write_json(&session.outcome_json(&t.id), &o).expect("write outcome.json");
    }
    session
}

fn bench_status(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = parse(&wide_dag_toml(100, 99));
    let session = make_session(dir.path(), &plan);
    let snap = status::snapshot(&session);
    let mut g = c.benchmark_group("status_10k");
    g.sample_size(20);
    g.bench_function("snapshot", |b| {
        b.iter(|| status::snapshot(black_box(&session)))
    });
    g.bench_function("render", |b| b.iter(|| status::render(black_box(&snap))));
    g.bench_function("snapshot_and_render", |b| {
        b.iter(|| status::render(&status::snapshot(black_box(&session))))
    });
    g.finish();
}

/// The dashboard of the 10 000-task session, drawn to ratatui's `TestBackend`: its first
/// frame (everything read), a frame with nothing new (what a tick costs), and a frame
/// after 100 journal lines naming 100 tasks (what a busy moment costs: the model reads
/// again what the lines name, not the whole session).
fn bench_dashboard(c: &mut Criterion) {
    use maestro::dashboard::OffScreen;
    use maestro::journal::Event;
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = parse(&wide_dag_toml(100, 99));
    let session = make_session(dir.path(), &plan);
    let ids: Vec<String> = plan.tasks.iter().map(|t| t.id.clone()).collect();
    let mut g = c.benchmark_group("dashboard_10k");
    g.sample_size(20);
    g.bench_function("first_frame", |b| {
        b.iter(|| OffScreen::new(black_box(session.clone())).expect("frame"))
    });
    let mut view = OffScreen::new(session.clone()).expect("frame");
    g.bench_function("frame_nothing_new", |b| {
        b.iter(|| view.frame().expect("frame"))
    });
    let mut journal = fsio::open_append(&session.events()).expect("journal");
    let mut next = 0usize;
    g.bench_function("frame_after_100_lines", |b| {
        b.iter(|| {
            let mut lines = String::new();
            for _ in 0..100 {
                let ev = Event::AgentState {
                    task: ids[next % ids.len()].clone(),
                    attempt: 1,
                    state: maestro::agent::AgentState::Working,
                    message: None,
                    at: now_rfc3339(),
                };
                next += 1;
                let body = serde_json::to_string(&ev).expect("json");
                lines.push_str(&format!("{{\"ts\":\"{}\",{}\n", now_rfc3339(), &body[1..]));
            }
            std::io::Write::write_all(&mut journal, lines.as_bytes()).expect("append");
            view.frame().expect("frame")
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_plan,
    bench_scheduler,
    bench_status,
    bench_dashboard
);
criterion_main!(benches);
