//! Plans: parse and validate TOML/JSON plans into a normalised [`Plan`], the task DAG,
//! waves (dependency depth) and the critical path. Owned here so that every other module
//! sees only validated plans (issue 2: a bad plan is refused, with file, line, column and
//! reason, before any directory is made).
//!
//! Parsing is done twice for TOML: once into format-agnostic raw structs (shared with
//! JSON, `deny_unknown_fields`), and once into a tiny "locations" view made of
//! `toml::Spanned` values, used only to point semantic errors (duplicate id, unknown
//! dependency, cycle) at a line and column. JSON plans get serde_json's positions for
//! syntax and schema errors, and name the task for semantic ones.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::names;
use crate::scheduler::Backoff;

/// How a task is started: a shell string run by `sh -c`, or an argv without a shell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskCommand {
    Shell(String),
    Argv(Vec<String>),
}

/// One validated task. Defaults from `[defaults]` are already applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub command: TaskCommand,
    /// Ids of the tasks (or races) this one runs after (all must succeed).
    pub after: Vec<String>,
    /// Signals (`after = ["signal:NAME"]`) that must be raised before it starts (issue 4).
    #[serde(default)]
    pub after_signals: Vec<String>,
    /// Deadlock victims are chosen lowest priority first (issue 4).
    #[serde(default)]
    pub priority: i64,
    /// Completion markers written into `markers/` when the task succeeds (issue 4).
    #[serde(default)]
    pub marks: Vec<String>,
    /// Absolute working directory.
    pub cwd: PathBuf,
    pub env: BTreeMap<String, String>,
    pub timeout_ms: Option<u64>,
    pub retries: u32,
    /// Wait between retries (issue 3).
    pub backoff: Backoff,
    /// How many lost workers this task may outlive before it fails (issue 3).
    pub max_reassign: u32,
    /// SIGTERM → SIGKILL delay when the task is stopped (timeout, cancel, reassign).
    pub kill_grace_ms: u64,
}

/// A validated, normalised plan: what `plan.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub name: String,
    pub workers: usize,
    /// Keep every tmux window open after its worker exits (plan key `keep_windows`).
    pub keep_windows: bool,
    /// A worker whose heartbeat has not moved for this long is lost (issue 3).
    pub lease_ms: u64,
    pub tasks: Vec<Task>,
    /// Barriers with a fixed set of participants (`[[checkpoint]]`).
    #[serde(default)]
    pub checkpoints: Vec<Checkpoint>,
    /// Lock hierarchy, highest first (`[locks] order = [...]`).
    #[serde(default)]
    pub lock_order: Vec<String>,
    /// Competitive groups (`[[race]]`).
    #[serde(default)]
    pub races: Vec<Race>,
}

/// A barrier: `worker checkpoint NAME` in each of `tasks` blocks until all arrived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub name: String,
    pub tasks: Vec<String>,
}

/// How a race picks its winner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pick {
    /// The first member to succeed wins; the others are stopped.
    First,
    /// Once all finished, the highest `score` (a JSON pointer into the result) wins.
    Best,
}

/// A race: several tasks attempt the same goal; one wins (issue 4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Race {
    pub id: String,
    pub tasks: Vec<String>,
    pub pick: Pick,
    pub score: Option<String>,
}

/// The scheduler's view of a plan: tasks first (indices as in `plan.tasks`), then one node
/// per race, then one per signal. Race and signal nodes are "external": the orchestrator
/// resolves them, they never run.
#[derive(Debug, Clone)]
pub struct Graph {
    pub deps: Vec<Vec<usize>>,
    pub external: Vec<bool>,
    /// Node index of each race (by position in `plan.races`).
    pub race_nodes: Vec<usize>,
    /// Signal names and their node indices.
    pub signals: Vec<(String, usize)>,
}

/// A plan error, already formatted with file, line and column where known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(pub String);

const DEFAULT_WORKERS: i64 = 4;
const DEFAULT_LEASE: Duration = Duration::from_secs(10);
const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(5);
const DEFAULT_MAX_REASSIGN: u32 = 3;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    name: String,
    workers: Option<i64>,
    keep_windows: Option<bool>,
    lease: Option<String>,
    defaults: Option<RawDefaults>,
    #[serde(default)]
    task: Vec<RawTask>,
    #[serde(default)]
    checkpoint: Vec<Checkpoint>,
    locks: Option<RawLocks>,
    #[serde(default)]
    race: Vec<RawRace>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocks {
    #[serde(default)]
    order: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRace {
    id: String,
    tasks: Vec<String>,
    pick: Option<String>,
    score: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    timeout: Option<String>,
    retries: Option<u32>,
    cwd: Option<PathBuf>,
    env: Option<BTreeMap<String, String>>,
    backoff: Option<RawBackoff>,
    max_reassign: Option<u32>,
    kill_grace: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackoff {
    initial: Option<String>,
    max: Option<String>,
    factor: Option<f64>,
    jitter: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    id: String,
    run: Option<String>,
    cmd: Option<Vec<String>>,
    after: Option<Vec<String>>,
    cwd: Option<PathBuf>,
    env: Option<BTreeMap<String, String>>,
    timeout: Option<String>,
    retries: Option<u32>,
    backoff: Option<RawBackoff>,
    max_reassign: Option<u32>,
    kill_grace: Option<String>,
    priority: Option<i64>,
    marks: Option<Vec<String>>,
}

/// Where things are in a TOML plan (byte offsets), for error messages.
#[derive(Debug, Default, Deserialize)]
struct Locs {
    workers: Option<toml::Spanned<toml::Value>>,
    lease: Option<toml::Spanned<toml::Value>>,
    #[serde(default)]
    task: Vec<TaskLoc>,
}

#[derive(Debug, Default, Deserialize)]
struct TaskLoc {
    id: Option<toml::Spanned<toml::Value>>,
    after: Option<Vec<toml::Spanned<toml::Value>>>,
    timeout: Option<toml::Spanned<toml::Value>>,
    kill_grace: Option<toml::Spanned<toml::Value>>,
}

/// Turns positions into `file:line:col: ` prefixes.
struct Source<'a> {
    file: String,
    text: &'a str,
    /// Parsed only when an error needs a position (a second parse of a 100 000-task plan
    /// would double validation time); `None` for JSON.
    locs: std::cell::OnceCell<Option<Locs>>,
    is_toml: bool,
}

impl Source<'_> {
    fn locs(&self) -> Option<&Locs> {
        self.locs
            .get_or_init(|| {
                self.is_toml
                    .then(|| toml::from_str::<Locs>(self.text).unwrap_or_default())
            })
            .as_ref()
    }

    fn at(&self, offset: Option<usize>, msg: impl std::fmt::Display) -> PlanError {
        match offset {
            Some(o) => {
                let (line, col) = line_col(self.text, o);
                PlanError(format!("{}:{line}:{col}: {msg}", self.file))
            }
            None => PlanError(format!("{}: {msg}", self.file)),
        }
    }

    fn task_loc(&self, i: usize) -> Option<&TaskLoc> {
        self.locs().and_then(|l| l.task.get(i))
    }

    fn id_pos(&self, i: usize) -> Option<usize> {
        self.task_loc(i)
            .and_then(|t| t.id.as_ref())
            .map(|s| s.span().start)
    }

    fn after_pos(&self, i: usize, j: usize) -> Option<usize> {
        self.task_loc(i)
            .and_then(|t| t.after.as_ref())
            .and_then(|a| a.get(j))
            .map(|s| s.span().start)
    }

    /// For JSON plans (no positions) semantic errors name the task instead.
    fn task_ctx(&self, i: usize, id: &str) -> String {
        if self.is_toml {
            String::new()
        } else {
            format!("task #{} ({id:?}): ", i + 1)
        }
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let col = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, col)
}

fn parse_duration(
    src: &Source,
    what: &str,
    v: &str,
    pos: impl FnOnce() -> Option<usize>,
) -> Result<u64, PlanError> {
    humantime::parse_duration(v)
        .map(|d| d.as_millis() as u64)
        .map_err(|e| src.at(pos(), format!("{what}invalid duration {v:?}: {e}")))
}

impl Plan {
    /// Read and validate a plan file (TOML, or JSON when the name ends in `.json`).
    /// Relative `cwd`s resolve against `base_cwd`.
    pub fn load(path: &Path, base_cwd: &Path) -> Result<Plan, PlanError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| PlanError(format!("{file}: cannot read plan: {e}")))?;
        Plan::parse(&file, &text, base_cwd)
    }

    /// Validate a plan given as text; `file` names it in errors.
    pub fn parse(file: &str, text: &str, base_cwd: &Path) -> Result<Plan, PlanError> {
        let is_json = file.ends_with(".json");
        let src = Source {
            file: file.to_string(),
            text,
            locs: std::cell::OnceCell::new(),
            is_toml: !is_json,
        };
        let raw: RawPlan = if is_json {
            serde_json::from_str(text).map_err(|e| {
                let full = e.to_string();
                let msg = match full.rfind(" at line ") {
                    Some(i) => full[..i].to_string(),
                    None => full,
                };
                if e.line() == 0 {
                    PlanError(format!("{file}: {msg}"))
                } else {
                    PlanError(format!("{file}:{}:{}: {msg}", e.line(), e.column()))
                }
            })?
        } else {
            toml::from_str(text).map_err(|e: toml::de::Error| {
                src.at(e.span().map(|s| s.start), e.message().trim())
            })?
        };
        validate(&src, raw, base_cwd)
    }

    /// For each task (by index), the indices of the tasks it depends on; a dependency on a
    /// race counts as one on each of its members (for waves, paths and cycle checks).
    pub fn dep_indices(&self) -> Vec<Vec<usize>> {
        let idx: HashMap<&str, usize> = self
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.as_str(), i))
            .collect();
        let races: HashMap<&str, &Race> = self.races.iter().map(|r| (r.id.as_str(), r)).collect();
        self.tasks
            .iter()
            .map(|t| {
                let mut v = Vec::new();
                for d in &t.after {
                    if let Some(&i) = idx.get(d.as_str()) {
                        v.push(i);
                    } else if let Some(r) = races.get(d.as_str()) {
                        v.extend(r.tasks.iter().filter_map(|m| idx.get(m.as_str()).copied()));
                    }
                }
                v
            })
            .collect()
    }

    /// The scheduler's graph: tasks, then race nodes, then signal nodes.
    pub fn graph(&self) -> Graph {
        let n = self.tasks.len();
        let mut idx: HashMap<&str, usize> = self
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.as_str(), i))
            .collect();
        let mut race_nodes = Vec::new();
        for (k, r) in self.races.iter().enumerate() {
            idx.insert(r.id.as_str(), n + k);
            race_nodes.push(n + k);
        }
        let mut signals: Vec<(String, usize)> = Vec::new();
        for t in &self.tasks {
            for sig in &t.after_signals {
                if !signals.iter().any(|(s, _)| s == sig) {
                    signals.push((sig.clone(), n + self.races.len() + signals.len()));
                }
            }
        }
        let total = n + self.races.len() + signals.len();
        let mut deps = vec![Vec::new(); total];
        for (i, t) in self.tasks.iter().enumerate() {
            deps[i] = t
                .after
                .iter()
                .filter_map(|d| idx.get(d.as_str()).copied())
                .collect();
            for sig in &t.after_signals {
                if let Some((_, node)) = signals.iter().find(|(s, _)| s == sig) {
                    deps[i].push(*node);
                }
            }
        }
        let mut external = vec![false; total];
        for e in external.iter_mut().skip(n) {
            *e = true;
        }
        Graph {
            deps,
            external,
            race_nodes,
            signals,
        }
    }

    /// The race a task belongs to, if any.
    pub fn race_of(&self, task: &str) -> Option<usize> {
        self.races
            .iter()
            .position(|r| r.tasks.iter().any(|t| t == task))
    }

    /// Tasks grouped by dependency depth (wave 0 has no dependencies), plan order inside.
    pub fn waves(&self) -> Vec<Vec<usize>> {
        let deps = self.dep_indices();
        let order = topo_order(&deps).unwrap_or_else(|_| (0..deps.len()).collect());
        let mut depth = vec![0usize; deps.len()];
        for &i in &order {
            depth[i] = deps[i].iter().map(|&d| depth[d] + 1).max().unwrap_or(0);
        }
        let mut waves: Vec<Vec<usize>> = Vec::new();
        for (i, &d) in depth.iter().enumerate() {
            if waves.len() <= d {
                waves.resize(d + 1, Vec::new());
            }
            waves[d].push(i);
        }
        waves
    }

    /// The longest dependency chain (by number of tasks), first to last; ties go to the
    /// task earliest in the plan.
    pub fn critical_path(&self) -> Vec<usize> {
        let deps = self.dep_indices();
        if deps.is_empty() {
            return Vec::new();
        }
        let order = topo_order(&deps).unwrap_or_else(|_| (0..deps.len()).collect());
        let mut len = vec![1usize; deps.len()];
        let mut prev: Vec<Option<usize>> = vec![None; deps.len()];
        for &i in &order {
            for &d in &deps[i] {
                let cand = len[d] + 1;
                if cand > len[i] || (cand == len[i] && prev[i].is_some_and(|p| d < p)) {
                    len[i] = cand;
                    prev[i] = Some(d);
                }
            }
        }
        let mut end = 0;
        for i in 0..len.len() {
            if len[i] > len[end] {
                end = i;
            }
        }
        let mut path = vec![end];
        while let Some(p) = prev[*path.last().unwrap_or(&end)] {
            path.push(p);
        }
        path.reverse();
        path
    }

    /// Graphviz: one node per task, an edge from each dependency to its dependent.
    pub fn to_dot(&self) -> String {
        let mut s = format!("digraph {:?} {{\n  rankdir=LR;\n", self.name);
        for t in &self.tasks {
            s.push_str(&format!("  {:?};\n", t.id));
        }
        for t in &self.tasks {
            for d in &t.after {
                s.push_str(&format!("  {:?} -> {:?};\n", d, t.id));
            }
        }
        s.push_str("}\n");
        s
    }

    /// What `orchestrator plan` prints.
    pub fn describe(&self) -> String {
        let waves = self.waves();
        let mut s = format!(
            "plan {}: {} tasks, {} workers, {} waves\n",
            self.name,
            self.tasks.len(),
            self.workers,
            waves.len()
        );
        for (k, w) in waves.iter().enumerate() {
            let ids: Vec<&str> = w.iter().map(|&i| self.tasks[i].id.as_str()).collect();
            s.push_str(&format!("wave {}: {}\n", k + 1, ids.join(", ")));
        }
        let cp: Vec<&str> = self
            .critical_path()
            .iter()
            .map(|&i| self.tasks[i].id.as_str())
            .collect();
        s.push_str(&format!(
            "critical path: {} ({} tasks)\n",
            cp.join(" -> "),
            cp.len()
        ));
        s
    }

    /// `orchestrator plan --json`.
    pub fn describe_json(&self) -> serde_json::Value {
        let name = |i: &usize| self.tasks[*i].id.clone();
        let waves: Vec<Vec<String>> = self
            .waves()
            .iter()
            .map(|w| w.iter().map(name).collect())
            .collect();
        let cp: Vec<String> = self.critical_path().iter().map(name).collect();
        serde_json::json!({
            "name": self.name,
            "workers": self.workers,
            "tasks": self.tasks.len(),
            "waves": waves,
            "critical_path": cp,
        })
    }
}

/// Kahn's algorithm: a topological order (dependencies first), or the nodes left in a
/// cycle. Iterative, so 100 000-task chains are fine.
fn topo_order(deps: &[Vec<usize>]) -> Result<Vec<usize>, Vec<bool>> {
    let n = deps.len();
    let mut dependents = vec![Vec::new(); n];
    let mut unmet = vec![0usize; n];
    for (i, ds) in deps.iter().enumerate() {
        unmet[i] = ds.len();
        for &d in ds {
            dependents[d].push(i);
        }
    }
    let mut queue: std::collections::VecDeque<usize> = (0..n).filter(|&i| unmet[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(u) = queue.pop_front() {
        order.push(u);
        for &d in &dependents[u] {
            unmet[d] -= 1;
            if unmet[d] == 0 {
                queue.push_back(d);
            }
        }
    }
    if order.len() == n {
        Ok(order)
    } else {
        Err(unmet.iter().map(|&u| u > 0).collect())
    }
}

/// A cycle among the `left` nodes, rotated to start at its member earliest in the plan.
fn find_cycle(deps: &[Vec<usize>], left: &[bool]) -> Vec<usize> {
    let Some(start) = left.iter().position(|&l| l) else {
        return Vec::new();
    };
    let mut seen_at: HashMap<usize, usize> = HashMap::new();
    let mut path = Vec::new();
    let mut u = start;
    loop {
        if let Some(&k) = seen_at.get(&u) {
            let mut cycle = path[k..].to_vec();
            let min_pos = (0..cycle.len()).min_by_key(|&i| cycle[i]).unwrap_or(0);
            cycle.rotate_left(min_pos);
            return cycle;
        }
        seen_at.insert(u, path.len());
        path.push(u);
        // Every node left in a cycle has a dependency that is also left.
        match deps[u].iter().copied().find(|&d| left[d]) {
            Some(d) => u = d,
            None => return path,
        }
    }
}

fn merge_backoff(
    base: Backoff,
    raw: Option<&RawBackoff>,
    src: &Source,
    ctx: &str,
) -> Result<Backoff, PlanError> {
    let Some(r) = raw else {
        return Ok(base);
    };
    let mut b = base;
    if let Some(v) = &r.initial {
        b.initial_ms = parse_duration(src, &format!("{ctx}backoff.initial: "), v, || None)?;
    }
    if let Some(v) = &r.max {
        b.max_ms = parse_duration(src, &format!("{ctx}backoff.max: "), v, || None)?;
    }
    if let Some(f) = r.factor {
        if !(f.is_finite() && f >= 1.0) {
            return Err(src.at(
                None,
                format!("{ctx}backoff.factor must be at least 1 (got {f})"),
            ));
        }
        b.factor = f;
    }
    if let Some(j) = r.jitter {
        if !(0.0..=1.0).contains(&j) {
            return Err(src.at(
                None,
                format!("{ctx}backoff.jitter must be between 0 and 1 (got {j})"),
            ));
        }
        b.jitter = j;
    }
    Ok(b)
}

fn validate(src: &Source, raw: RawPlan, base_cwd: &Path) -> Result<Plan, PlanError> {
    names::validate("plan name", &raw.name).map_err(|m| src.at(None, m))?;
    let workers = raw.workers.unwrap_or(DEFAULT_WORKERS);
    if workers < 1 {
        let pos = src
            .locs()
            .and_then(|l| l.workers.as_ref())
            .map(|s| s.span().start);
        return Err(src.at(pos, "workers must be at least 1"));
    }
    let lease_ms = match &raw.lease {
        Some(v) => {
            let pos = || {
                src.locs()
                    .and_then(|l| l.lease.as_ref())
                    .map(|s| s.span().start)
            };
            parse_duration(src, "lease: ", v, pos)?
        }
        None => DEFAULT_LEASE.as_millis() as u64,
    };
    if raw.task.is_empty() {
        return Err(src.at(None, "plan has no tasks"));
    }
    let d = raw.defaults.unwrap_or_default();
    let resolve = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base_cwd.join(p)
        }
    };
    let default_cwd = d
        .cwd
        .as_deref()
        .map(resolve)
        .unwrap_or_else(|| base_cwd.to_path_buf());
    let default_timeout = match &d.timeout {
        Some(v) => Some(parse_duration(src, "defaults.timeout: ", v, || None)?),
        None => None,
    };
    let default_grace = match &d.kill_grace {
        Some(v) => parse_duration(src, "defaults.kill_grace: ", v, || None)?,
        None => DEFAULT_KILL_GRACE.as_millis() as u64,
    };
    let default_backoff = merge_backoff(Backoff::default(), d.backoff.as_ref(), src, "defaults.")?;

    // Ids: valid and unique.
    let mut first: HashMap<&str, usize> = HashMap::new();
    for (i, t) in raw.task.iter().enumerate() {
        let ctx = src.task_ctx(i, &t.id);
        names::validate("task id", &t.id)
            .map_err(|m| src.at(src.id_pos(i), format!("{ctx}{m}")))?;
        if matches!(t.id.as_str(), "all" | "orchestrator") {
            return Err(src.at(
                src.id_pos(i),
                format!("{ctx}task id {:?} is reserved (a message recipient)", t.id),
            ));
        }
        if let Some(&j) = first.get(t.id.as_str()) {
            let first_line = src.id_pos(j).map(|p| line_col(src.text, p).0);
            let msg = match first_line {
                Some(l) => format!("duplicate task id {:?} (first defined at line {l})", t.id),
                None => format!(
                    "{ctx}duplicate task id {:?} (first defined as task #{})",
                    t.id,
                    j + 1
                ),
            };
            return Err(src.at(src.id_pos(i), msg));
        }
        first.insert(&t.id, i);
    }
    // Commands.
    for (i, t) in raw.task.iter().enumerate() {
        let ctx = src.task_ctx(i, &t.id);
        let msg = match (&t.run, &t.cmd) {
            (None, None) => format!("task {:?} has neither `run` nor `cmd`", t.id),
            (Some(_), Some(_)) => format!("task {:?} has both `run` and `cmd`", t.id),
            (None, Some(c)) if c.is_empty() => format!("task {:?} has an empty `cmd`", t.id),
            _ => continue,
        };
        return Err(src.at(src.id_pos(i), format!("{ctx}{msg}")));
    }
    // Races: ids unique among tasks and races, members are tasks, each in one race.
    let mut races = Vec::new();
    let mut race_ids: HashMap<&str, usize> = HashMap::new();
    for (k, r) in raw.race.iter().enumerate() {
        names::validate("race id", &r.id).map_err(|m| src.at(None, m))?;
        if first.contains_key(r.id.as_str()) || race_ids.contains_key(r.id.as_str()) {
            return Err(src.at(
                None,
                format!("race id {:?} is already used by a task or race", r.id),
            ));
        }
        race_ids.insert(&r.id, k);
        if r.tasks.len() < 2 {
            return Err(src.at(None, format!("race {:?} needs at least two tasks", r.id)));
        }
        for m in &r.tasks {
            if !first.contains_key(m.as_str()) {
                return Err(src.at(None, format!("race {:?} names unknown task {m:?}", r.id)));
            }
            if let Some(other) = raw.race[..k].iter().find(|o| o.tasks.contains(m)) {
                return Err(src.at(
                    None,
                    format!("task {m:?} is in two races ({:?} and {:?})", other.id, r.id),
                ));
            }
        }
        let pick = match r.pick.as_deref().unwrap_or("first") {
            "first" => Pick::First,
            "best" => Pick::Best,
            other => {
                return Err(src.at(
                    None,
                    format!(
                        "race {:?}: pick must be \"first\" or \"best\", not {other:?}",
                        r.id
                    ),
                ));
            }
        };
        if pick == Pick::Best && !r.score.as_deref().is_some_and(|s| s.starts_with('/')) {
            return Err(src.at(
                None,
                format!(
                    "race {:?}: pick = \"best\" needs score = \"/json/pointer\" into each result",
                    r.id
                ),
            ));
        }
        races.push(Race {
            id: r.id.clone(),
            tasks: r.tasks.clone(),
            pick,
            score: r.score.clone(),
        });
    }
    // Checkpoints and lock order: valid names, known participants.
    for c in &raw.checkpoint {
        names::validate("checkpoint name", &c.name).map_err(|m| src.at(None, m))?;
        if raw.checkpoint.iter().filter(|o| o.name == c.name).count() > 1 {
            return Err(src.at(None, format!("checkpoint {:?} is defined twice", c.name)));
        }
        for t in &c.tasks {
            if !first.contains_key(t.as_str()) {
                return Err(src.at(
                    None,
                    format!("checkpoint {:?} names unknown task {t:?}", c.name),
                ));
            }
        }
    }
    let lock_order = raw.locks.map(|l| l.order).unwrap_or_default();
    for l in &lock_order {
        names::validate("lock name", l).map_err(|m| src.at(None, m))?;
    }
    // Dependencies exist (tasks, races, or signals).
    for (i, t) in raw.task.iter().enumerate() {
        for (j, dep) in t.after.iter().flatten().enumerate() {
            if let Some(sig) = dep.strip_prefix("signal:") {
                let ctx = src.task_ctx(i, &t.id);
                names::validate("signal name", sig)
                    .map_err(|m| src.at(src.after_pos(i, j), format!("{ctx}{m}")))?;
                continue;
            }
            if race_ids.contains_key(dep.as_str()) {
                continue;
            }
            if !first.contains_key(dep.as_str()) {
                let ctx = src.task_ctx(i, &t.id);
                return Err(src.at(
                    src.after_pos(i, j),
                    format!("{ctx}task {:?} depends on unknown task {dep:?}", t.id),
                ));
            }
        }
    }
    // No cycles.
    let deps: Vec<Vec<usize>> = raw
        .task
        .iter()
        .map(|t| {
            let mut v = Vec::new();
            for d in t.after.iter().flatten() {
                if let Some(&i) = first.get(d.as_str()) {
                    v.push(i);
                } else if let Some(&k) = race_ids.get(d.as_str()) {
                    v.extend(raw.race[k].tasks.iter().map(|m| first[m.as_str()]));
                }
            }
            v
        })
        .collect();
    if let Err(left) = topo_order(&deps) {
        let cycle = find_cycle(&deps, &left);
        let mut names: Vec<&str> = cycle.iter().map(|&i| raw.task[i].id.as_str()).collect();
        if let Some(&f) = names.first() {
            names.push(f);
        }
        let pos = cycle.first().and_then(|&i| src.id_pos(i));
        return Err(src.at(pos, format!("dependency cycle: {}", names.join(" -> "))));
    }

    let mut tasks = Vec::with_capacity(raw.task.len());
    for (i, t) in raw.task.into_iter().enumerate() {
        let ctx = src.task_ctx(i, &t.id);
        let timeout_ms = match &t.timeout {
            Some(v) => {
                let pos = || {
                    src.task_loc(i)
                        .and_then(|l| l.timeout.as_ref())
                        .map(|s| s.span().start)
                };
                Some(parse_duration(src, &ctx, v, pos)?)
            }
            None => default_timeout,
        };
        let kill_grace_ms = match &t.kill_grace {
            Some(v) => {
                let pos = || {
                    src.task_loc(i)
                        .and_then(|l| l.kill_grace.as_ref())
                        .map(|s| s.span().start)
                };
                parse_duration(src, &ctx, v, pos)?
            }
            None => default_grace,
        };
        let bctx = format!("task {:?}: ", t.id);
        let backoff = merge_backoff(default_backoff, t.backoff.as_ref(), src, &bctx)?;
        let marks = t.marks.clone().unwrap_or_default();
        for m in &marks {
            names::validate("marker name", m)
                .map_err(|e| src.at(src.id_pos(i), format!("{ctx}{e}")))?;
        }
        let mut env = d.env.clone().unwrap_or_default();
        env.extend(t.env.unwrap_or_default());
        let command = match (t.run, t.cmd) {
            (Some(r), None) => TaskCommand::Shell(r),
            (None, Some(c)) => TaskCommand::Argv(c),
            _ => unreachable!("checked above"),
        };
        let (signals, after): (Vec<String>, Vec<String>) = t
            .after
            .unwrap_or_default()
            .into_iter()
            .partition(|d| d.starts_with("signal:"));
        tasks.push(Task {
            id: t.id,
            command,
            after,
            after_signals: signals
                .into_iter()
                .map(|s| s.trim_start_matches("signal:").to_string())
                .collect(),
            priority: t.priority.unwrap_or(0),
            marks,
            cwd: t
                .cwd
                .as_deref()
                .map(resolve)
                .unwrap_or_else(|| default_cwd.clone()),
            env,
            timeout_ms,
            retries: t.retries.or(d.retries).unwrap_or(0),
            backoff,
            max_reassign: t
                .max_reassign
                .or(d.max_reassign)
                .unwrap_or(DEFAULT_MAX_REASSIGN),
            kill_grace_ms,
        });
    }
    Ok(Plan {
        name: raw.name,
        workers: workers as usize,
        keep_windows: raw.keep_windows.unwrap_or(false),
        lease_ms,
        tasks,
        checkpoints: raw.checkpoint,
        lock_order,
        races,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Plan, PlanError> {
        Plan::parse("p.toml", text, Path::new("/base"))
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().0
    }

    #[test]
    fn defaults_merge_into_tasks() {
        let p = parse(
            r#"
name = "x"
workers = 2
[defaults]
timeout = "30m"
retries = 2
cwd = "work"
env = { A = "1", B = "2" }
backoff = { initial = "2s" }
[[task]]
id = "a"
run = "true"
env = { B = "3" }
[[task]]
id = "b"
cmd = ["echo", "hi"]
after = ["a"]
cwd = "/abs"
timeout = "5s"
retries = 0
backoff = { factor = 3, jitter = 0 }
"#,
        )
        .unwrap();
        let a = &p.tasks[0];
        assert_eq!(a.timeout_ms, Some(30 * 60 * 1000));
        assert_eq!(a.retries, 2);
        assert_eq!(a.cwd, PathBuf::from("/base/work"));
        assert_eq!(a.env["A"], "1");
        assert_eq!(a.env["B"], "3");
        assert_eq!(a.backoff.initial_ms, 2000);
        assert_eq!(a.max_reassign, 3);
        assert_eq!(a.kill_grace_ms, 5000);
        let b = &p.tasks[1];
        assert_eq!(
            b.command,
            TaskCommand::Argv(vec!["echo".into(), "hi".into()])
        );
        assert_eq!(b.cwd, PathBuf::from("/abs"));
        assert_eq!(b.timeout_ms, Some(5000));
        assert_eq!(b.retries, 0);
        assert_eq!(b.backoff.initial_ms, 2000);
        assert_eq!(b.backoff.factor, 3.0);
        assert_eq!(b.backoff.jitter, 0.0);
        assert_eq!(p.workers, 2);
        assert_eq!(p.lease_ms, 10_000);
    }

    #[test]
    fn error_messages_name_line_and_column() {
        assert_eq!(
            err(
                "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"true\"\n[[task]]\nid = \"a\"\nrun = \"x\"\n"
            ),
            "p.toml:6:6: duplicate task id \"a\" (first defined at line 3)"
        );
        assert_eq!(
            err("name = \"p\"\n[[task]]\nid = \"b\"\nrun = \"true\"\nafter = [\"zz\"]\n"),
            "p.toml:5:10: task \"b\" depends on unknown task \"zz\""
        );
        assert_eq!(
            err("name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\nafter = [\"a\"]\n"),
            "p.toml:3:6: dependency cycle: a -> a"
        );
        assert_eq!(
            err(
                "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\nafter = [\"b\"]\n[[task]]\nid = \"b\"\nrun = \"t\"\nafter = [\"a\"]\n"
            ),
            "p.toml:3:6: dependency cycle: a -> b -> a"
        );
        assert_eq!(
            err("name = \"p\"\n[[task]]\nid = \".x\"\nrun = \"t\"\n"),
            "p.toml:3:6: invalid task id \".x\": must be 1-64 characters of [A-Za-z0-9._-] not starting with a dot"
        );
        assert_eq!(
            err("name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\ncmd = [\"t\"]\n"),
            "p.toml:3:6: task \"a\" has both `run` and `cmd`"
        );
        assert_eq!(
            err("name = \"p\"\n[[task]]\nid = \"a\"\ncmd = []\n"),
            "p.toml:3:6: task \"a\" has an empty `cmd`"
        );
        assert_eq!(
            err("name = \"p\"\nworkers = 0\n[[task]]\nid = \"a\"\nrun = \"t\"\n"),
            "p.toml:2:11: workers must be at least 1"
        );
        assert_eq!(err("name = \"p\"\n"), "p.toml: plan has no tasks");
        assert_eq!(
            err("name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\ntimeout = \"soon\"\n"),
            "p.toml:5:11: invalid duration \"soon\": expected number at 0"
        );
        assert!(
            err("name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\nrn = 1\n")
                .starts_with("p.toml:5:1: unknown field `rn`")
        );
        assert!(
            err("name = \"p\"\n[[task]]\nrun = \"t\"\n")
                .starts_with("p.toml:2:1: missing field `id`")
        );
        let e = err("name = \"p\n");
        assert!(e.starts_with("p.toml:1:"), "{e}");
    }

    #[test]
    fn json_plans_work_and_errors_name_the_task() {
        let j = |t: &str| Plan::parse("p.json", t, Path::new("/b"));
        let p = j(r#"{"name": "j", "task": [{"id": "a", "run": "true"}, {"id": "b", "cmd": ["x"], "after": ["a"]}]}"#).unwrap();
        assert_eq!(p.tasks.len(), 2);
        assert_eq!(p.workers, 4);
        assert_eq!(
            j(r#"{"name": "j", "task": [{"id": "a", "run": "t", "after": ["q"]}]}"#)
                .unwrap_err()
                .0,
            "p.json: task #1 (\"a\"): task \"a\" depends on unknown task \"q\""
        );
        assert_eq!(
            j("{\"name\": \"j\",\n \"task\": [{\"id\": \"a\", \"rn\": \"t\"}]}")
                .unwrap_err()
                .0,
            "p.json:2:26: unknown field `rn`, expected one of `id`, `run`, `cmd`, `after`, `cwd`, `env`, `timeout`, `retries`, `backoff`, `max_reassign`, `kill_grace`, `priority`, `marks`"
        );
        assert!(
            j("{")
                .unwrap_err()
                .0
                .starts_with("p.json:1:1: EOF while parsing")
        );
    }

    #[test]
    fn waves_and_critical_path_of_a_diamond() {
        let p = parse(
            "name = \"d\"\n[[task]]\nid = \"a\"\nrun = \"t\"\n[[task]]\nid = \"b\"\nrun = \"t\"\nafter = [\"a\"]\n\
             [[task]]\nid = \"c\"\nrun = \"t\"\nafter = [\"a\"]\n[[task]]\nid = \"d\"\nrun = \"t\"\nafter = [\"b\", \"c\"]\n\
             [[task]]\nid = \"e\"\nrun = \"t\"\n",
        )
        .unwrap();
        assert_eq!(p.waves(), vec![vec![0, 4], vec![1, 2], vec![3]]);
        assert_eq!(p.critical_path(), vec![0, 1, 3]);
        assert_eq!(
            p.describe(),
            "plan d: 5 tasks, 4 workers, 3 waves\nwave 1: a, e\nwave 2: b, c\nwave 3: d\ncritical path: a -> b -> d (3 tasks)\n"
        );
        let dot = p.to_dot();
        assert!(dot.contains("  \"a\" -> \"b\";\n"), "{dot}");
    }

    #[test]
    fn long_chain_validates_without_recursion() {
        let mut text = String::from("name = \"chain\"\n");
        let n = 100_000;
        for i in 0..n {
            text.push_str(&format!("[[task]]\nid = \"t{i}\"\nrun = \"true\"\n"));
            if i > 0 {
                text.push_str(&format!("after = [\"t{}\"]\n", i - 1));
            }
        }
        let p = parse(&text).unwrap();
        assert_eq!(p.waves().len(), n);
        assert_eq!(p.critical_path().len(), n);
    }

    #[test]
    fn message_recipients_are_reserved_ids() {
        assert_eq!(
            err("name = \"p\"\n[[task]]\nid = \"all\"\nrun = \"t\"\n"),
            "p.toml:3:6: task id \"all\" is reserved (a message recipient)"
        );
    }

    #[test]
    fn cycle_reported_from_earliest_member() {
        // x depends on the cycle b -> c -> b, but is not part of it.
        let e = err(
            "name = \"p\"\n[[task]]\nid = \"x\"\nrun = \"t\"\nafter = [\"c\"]\n[[task]]\nid = \"b\"\nrun = \"t\"\nafter = [\"c\"]\n[[task]]\nid = \"c\"\nrun = \"t\"\nafter = [\"b\"]\n",
        );
        assert_eq!(e, "p.toml:7:6: dependency cycle: b -> c -> b");
    }
}
