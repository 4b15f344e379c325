//! Plans: parse and validate TOML/JSON plans into a normalised [`Plan`], the task DAG,
//! waves (dependency depth) and the critical path. Owned here so that every other module
//! sees only validated plans (issue 2: a bad plan is refused, with file, line, column and
//! reason, before any directory is made).
//!
//! Parsing is done twice for TOML: once into format-agnostic raw structs (shared with
//! JSON, `deny_unknown_fields`), and once into a tiny "locations" view made of
//! `toml::Spanned` values, used only to point semantic errors (duplicate id, unknown
//! dependency, cycle) at a line and column; it is parsed only when an error needs it. JSON
//! plans get serde_json's positions for syntax and schema errors; their semantic errors are
//! `file: message`, with `task "id": ` in front when the message would not name the task.

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

/// TOML plans larger than this are parsed a slice of tasks at a time (issue 5): the toml
/// crate holds every token and a spanned tree of the whole document at once, about 60
/// bytes of memory per byte of plan, which made the parse the orchestrator's peak RSS.
const CHUNKED_ABOVE: usize = 128 * 1024;
const TASKS_PER_CHUNK: usize = 500;

/// One slice of a large plan's `[[task]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskChunk {
    task: Vec<RawTask>,
}

/// What a top-level table header of a plan opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Header {
    /// `[[task]]`: the next task.
    Task,
    /// `[task.x]`: a subtable of the latest task.
    TaskSub,
    /// Any other table (`[defaults]`, `[[checkpoint]]`, ...).
    Other,
}

/// Parse a large TOML plan piecewise: the root keys with every non-task table as one small
/// document, and the `[[task]]` tables (with their `[task.x]` subtables) `TASKS_PER_CHUNK`
/// at a time. `None` for a small plan, for a shape this does not handle (a header that
/// names `task` any other way), and for any error: the caller then parses the whole text,
/// which gives errors their exact positions. TOML has no other way for a later table to
/// reach into an earlier one, so the pieces mean what the whole means.
fn parse_toml_chunked(text: &str) -> Option<RawPlan> {
    if text.len() <= CHUNKED_ABOVE {
        return None;
    }
    let headers = top_level_headers(text)?;
    let first = headers.first().map_or(text.len(), |h| h.0);
    let mut rest = String::from(&text[..first]);
    let mut tasks = Vec::new();
    let mut chunk = String::new();
    let mut in_chunk = 0;
    let mut seen_task = false;
    for (i, &(start, kind)) in headers.iter().enumerate() {
        let end = headers.get(i + 1).map_or(text.len(), |h| h.0);
        let seg = &text[start..end];
        match kind {
            Header::Other => {
                rest.push('\n');
                rest.push_str(seg);
                continue;
            }
            Header::TaskSub if !seen_task => return None,
            Header::TaskSub => {}
            Header::Task => {
                seen_task = true;
                if in_chunk == TASKS_PER_CHUNK {
                    tasks.extend(toml::from_str::<TaskChunk>(&chunk).ok()?.task);
                    chunk.clear();
                    in_chunk = 0;
                }
                in_chunk += 1;
            }
        }
        chunk.push('\n');
        chunk.push_str(seg);
    }
    if in_chunk > 0 {
        tasks.extend(toml::from_str::<TaskChunk>(&chunk).ok()?.task);
    }
    drop(chunk);
    let mut raw: RawPlan = toml::from_str(&rest).ok()?;
    if !raw.task.is_empty() {
        return None; // `task = [...]` among the root keys: let the whole parse judge it
    }
    raw.task = tasks;
    Some(raw)
}

/// Byte offsets and kinds of a TOML text's table headers: a `[` that is the first token of
/// a line outside any inline array or table. Strings and comments are single tokens of the
/// lexer (which streams: nothing is kept), so a `[` inside one is never taken for a header.
/// `None` when a header names `task` in any other way than `[[task]]` or `[task.x]`
/// (quoted, nested arrays): the caller then parses the whole text.
fn top_level_headers(text: &str) -> Option<Vec<(usize, Header)>> {
    use toml_parser::lexer::TokenKind as K;
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut line_start = true;
    let mut in_header = false;
    for tok in toml_parser::Source::new(text).lex() {
        match tok.kind() {
            K::Newline => {
                line_start = true;
                in_header = false;
                continue;
            }
            K::Whitespace => continue,
            K::LeftSquareBracket if line_start && depth == 0 => {
                let start = tok.span().start();
                let line = text[start..].split(['\n', '#']).next().unwrap_or("");
                let head: String = line.chars().filter(|c| !c.is_whitespace()).collect();
                let kind = if head.starts_with("[[task]]") {
                    Header::Task
                } else if head.starts_with("[task.") {
                    Header::TaskSub
                } else if head.contains("task") {
                    return None;
                } else {
                    Header::Other
                };
                out.push((start, kind));
                in_header = true;
            }
            K::LeftSquareBracket | K::LeftCurlyBracket if !in_header => depth += 1,
            K::RightSquareBracket | K::RightCurlyBracket if !in_header => {
                depth = depth.saturating_sub(1)
            }
            _ => {}
        }
        line_start = false;
    }
    Some(out)
}

/// A value's position in a TOML plan. Values are kept as `toml::Value` so that this view
/// never fails where the real schema succeeded (it only ever reads a valid plan).
type Loc = Option<toml::Spanned<toml::Value>>;

/// Where things are in a TOML plan (byte offsets), for error messages. No
/// `deny_unknown_fields`: keys this view does not need are simply skipped.
#[derive(Debug, Default, Deserialize)]
struct Locs {
    name: Loc,
    workers: Loc,
    lease: Loc,
    #[serde(default)]
    defaults: DefaultsLoc,
    #[serde(default)]
    task: Vec<TaskLoc>,
}

#[derive(Debug, Default, Deserialize)]
struct DefaultsLoc {
    timeout: Loc,
    kill_grace: Loc,
    #[serde(default)]
    backoff: BackoffLoc,
}

#[derive(Debug, Default, Deserialize)]
struct BackoffLoc {
    initial: Loc,
    max: Loc,
    factor: Loc,
    jitter: Loc,
}

#[derive(Debug, Default, Deserialize)]
struct TaskLoc {
    id: Loc,
    after: Option<Vec<toml::Spanned<toml::Value>>>,
    timeout: Loc,
    kill_grace: Loc,
    #[serde(default)]
    backoff: BackoffLoc,
}

/// The start offset of a located value.
fn start(loc: &Loc) -> Option<usize> {
    loc.as_ref().map(|s| s.span().start)
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

    /// Position of something inside task `i`, picked by `f`.
    fn task_pos(&self, i: usize, f: impl FnOnce(&TaskLoc) -> &Loc) -> Option<usize> {
        self.task_loc(i).and_then(|t| start(f(t)))
    }

    /// Position of something in `[defaults]`, picked by `f`.
    fn defaults_pos(&self, f: impl FnOnce(&DefaultsLoc) -> &Loc) -> Option<usize> {
        self.locs().and_then(|l| start(f(&l.defaults)))
    }

    /// An error at `offset` when known; otherwise (JSON) `ctx` says where, e.g.
    /// `task "a": `, since the message alone would not.
    fn at_or(&self, offset: Option<usize>, ctx: &str, msg: impl std::fmt::Display) -> PlanError {
        match offset {
            Some(_) => self.at(offset, msg),
            None => self.at(None, format!("{ctx}{msg}")),
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

/// A humantime duration in milliseconds (saturating). `what` (e.g. `task "a": `) prefixes
/// the error only when `pos` cannot point at the value.
fn parse_duration(
    src: &Source,
    what: &str,
    v: &str,
    pos: impl FnOnce() -> Option<usize>,
) -> Result<u64, PlanError> {
    humantime::parse_duration(v)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .map_err(|e| src.at_or(pos(), what, format!("invalid duration {v:?}: {e}")))
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
            match parse_toml_chunked(text) {
                Some(raw) => raw,
                None => toml::from_str(text).map_err(|e: toml::de::Error| {
                    src.at(e.span().map(|s| s.start), e.message().trim())
                })?,
            }
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

    /// The longest dependency chain (by number of tasks), first to last. Ties: the chain
    /// ending at the task earliest in the plan, and at each step the dependency earliest in
    /// the plan.
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
        let mut cur = end;
        // Only a hand-made cyclic plan (never a loaded one) could loop here; a chain is
        // never longer than the plan, so the bound costs nothing and rules out a hang.
        while let Some(p) = prev[cur] {
            if path.len() >= deps.len() {
                break;
            }
            path.push(p);
            cur = p;
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

/// Kahn's algorithm: a topological order (dependencies first), or `Err` when some tasks
/// sit on or behind a cycle. Iterative, so 100 000-task chains are fine.
fn topo_order(deps: &[Vec<usize>]) -> Result<Vec<usize>, ()> {
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
    if order.len() == n { Ok(order) } else { Err(()) }
}

/// Strongly connected components (Tarjan, with an explicit stack instead of recursion so a
/// 100 000-task chain cannot overflow the thread's stack). Returns each node's component.
fn components(deps: &[Vec<usize>]) -> Vec<usize> {
    const UNSEEN: usize = usize::MAX;
    let n = deps.len();
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0usize; n];
    let mut comp = vec![UNSEEN; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut next_index = 0;
    let mut next_comp = 0;
    // (node, how many of its edges are explored): the recursion, made explicit.
    let mut call: Vec<(usize, usize)> = Vec::new();
    for root in 0..n {
        if index[root] != UNSEEN {
            continue;
        }
        index[root] = next_index;
        low[root] = next_index;
        next_index += 1;
        stack.push(root);
        on_stack[root] = true;
        call.push((root, 0));
        while let Some(&(v, e)) = call.last() {
            if let Some(&w) = deps[v].get(e) {
                if let Some(top) = call.last_mut() {
                    top.1 += 1;
                }
                if index[w] == UNSEEN {
                    index[w] = next_index;
                    low[w] = next_index;
                    next_index += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    call.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            call.pop();
            if let Some(&(u, _)) = call.last() {
                low[u] = low[u].min(low[v]);
            }
            if low[v] == index[v] {
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    comp[w] = next_comp;
                    if w == v {
                        break;
                    }
                }
                next_comp += 1;
            }
        }
    }
    comp
}

/// A dependency cycle, for the error message: the shortest one through the task earliest in
/// the plan that lies on any cycle, as `[a, b, ..]` where `a` depends on `b` (the closing
/// `a` is not repeated). Empty when there is no cycle. Linear time.
fn find_cycle(deps: &[Vec<usize>]) -> Vec<usize> {
    let comp = components(deps);
    let mut size = vec![0usize; deps.len()];
    for &c in &comp {
        size[c] += 1;
    }
    // A node is on a cycle iff its component has two or more nodes, or it depends on itself.
    let Some(s) = (0..deps.len()).find(|&i| size[comp[i]] > 1 || deps[i].contains(&i)) else {
        return Vec::new();
    };
    // Breadth-first from `s` inside its component until an edge leads back to `s`; edges are
    // taken in `after` order, so the answer is deterministic.
    let mut parent: HashMap<usize, usize> = HashMap::new();
    let mut queue = std::collections::VecDeque::from([s]);
    while let Some(u) = queue.pop_front() {
        for &d in &deps[u] {
            if d == s {
                // Walk back to `s`, which has no parent (it is the root).
                let mut cycle = vec![u];
                while let Some(&p) = parent.get(cycle.last().unwrap_or(&s)) {
                    cycle.push(p);
                }
                cycle.reverse();
                return cycle;
            }
            if comp[d] == comp[s] && !parent.contains_key(&d) {
                parent.insert(d, u);
                queue.push_back(d);
            }
        }
    }
    vec![s]
}

/// Applies a `backoff` table over `base`. `ctx` (e.g. `task "a": `) locates errors in JSON
/// plans; `loc` finds the values in TOML ones (called only when an error needs it).
fn merge_backoff<'s>(
    base: Backoff,
    raw: Option<&RawBackoff>,
    src: &'s Source,
    ctx: &str,
    loc: impl Fn() -> Option<&'s BackoffLoc>,
) -> Result<Backoff, PlanError> {
    let Some(r) = raw else {
        return Ok(base);
    };
    let pos = |f: fn(&BackoffLoc) -> &Loc| loc().and_then(|l| start(f(l)));
    let mut b = base;
    if let Some(v) = &r.initial {
        let what = format!("{ctx}backoff.initial: ");
        b.initial_ms = parse_duration(src, &what, v, || pos(|l| &l.initial))?;
    }
    if let Some(v) = &r.max {
        let what = format!("{ctx}backoff.max: ");
        b.max_ms = parse_duration(src, &what, v, || pos(|l| &l.max))?;
    }
    if let Some(f) = r.factor {
        if !(f.is_finite() && f >= 1.0) {
            return Err(src.at_or(
                pos(|l| &l.factor),
                ctx,
                format!("backoff.factor must be at least 1 (got {f})"),
            ));
        }
        b.factor = f;
    }
    if let Some(j) = r.jitter {
        if !(0.0..=1.0).contains(&j) {
            return Err(src.at_or(
                pos(|l| &l.jitter),
                ctx,
                format!("backoff.jitter must be between 0 and 1 (got {j})"),
            ));
        }
        b.jitter = j;
    }
    Ok(b)
}

/// Semantic checks and normalisation. Errors come in a fixed order (plan-level values,
/// then ids, duplicates, commands, races/checkpoints/locks, unknown dependencies, cycles,
/// then per-task values) so the first one reported does not depend on hash order.
fn validate(src: &Source, raw: RawPlan, base_cwd: &Path) -> Result<Plan, PlanError> {
    names::validate("plan name", &raw.name)
        .map_err(|m| src.at(src.locs().and_then(|l| start(&l.name)), m))?;
    let workers = raw.workers.unwrap_or(DEFAULT_WORKERS);
    if workers < 1 {
        let pos = src.locs().and_then(|l| start(&l.workers));
        return Err(src.at(pos, "workers must be at least 1"));
    }
    let workers = usize::try_from(workers).unwrap_or(usize::MAX);
    let lease_ms = match &raw.lease {
        Some(v) => parse_duration(src, "lease: ", v, || {
            src.locs().and_then(|l| start(&l.lease))
        })?,
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
        Some(v) => Some(parse_duration(src, "defaults.timeout: ", v, || {
            src.defaults_pos(|l| &l.timeout)
        })?),
        None => None,
    };
    let default_grace = match &d.kill_grace {
        Some(v) => parse_duration(src, "defaults.kill_grace: ", v, || {
            src.defaults_pos(|l| &l.kill_grace)
        })?,
        None => DEFAULT_KILL_GRACE.as_millis() as u64,
    };
    let default_backoff = merge_backoff(
        Backoff::default(),
        d.backoff.as_ref(),
        src,
        "defaults.",
        || src.locs().map(|l| &l.defaults.backoff),
    )?;

    // Ids: all valid first (a path-like id is the worse problem), then unique.
    for (i, t) in raw.task.iter().enumerate() {
        names::validate("task id", &t.id).map_err(|m| src.at(src.id_pos(i), m))?;
        if matches!(t.id.as_str(), "all" | "orchestrator") {
            return Err(src.at(
                src.id_pos(i),
                format!("task id {:?} is reserved (a message recipient)", t.id),
            ));
        }
    }
    let mut first: HashMap<&str, usize> = HashMap::with_capacity(raw.task.len());
    for (i, t) in raw.task.iter().enumerate() {
        if let Some(&j) = first.get(t.id.as_str()) {
            let msg = match src.id_pos(j).map(|p| line_col(src.text, p).0) {
                Some(l) => format!("duplicate task id {:?} (first defined at line {l})", t.id),
                None => format!(
                    "duplicate task id {:?} (first defined as task #{})",
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
        let msg = match (&t.run, &t.cmd) {
            (None, None) => format!("task {:?} has neither `run` nor `cmd`", t.id),
            (Some(_), Some(_)) => format!("task {:?} has both `run` and `cmd`", t.id),
            (None, Some(c)) if c.is_empty() => format!("task {:?} has an empty `cmd`", t.id),
            _ => continue,
        };
        return Err(src.at(src.id_pos(i), msg));
    }
    // Races: ids unique among tasks and races, members are tasks, each in one race.
    let mut races = Vec::new();
    let mut race_ids: HashMap<&str, usize> = HashMap::new();
    let mut race_of_task: HashMap<&str, &str> = HashMap::new();
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
            if let Some(other) = race_of_task.insert(m, &r.id) {
                return Err(src.at(
                    None,
                    format!("task {m:?} is in two races ({other:?} and {:?})", r.id),
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
    let mut checkpoint_names = std::collections::HashSet::new();
    for c in &raw.checkpoint {
        names::validate("checkpoint name", &c.name).map_err(|m| src.at(None, m))?;
        if !checkpoint_names.insert(c.name.as_str()) {
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
                let ctx = format!("task {:?}: ", t.id);
                names::validate("signal name", sig)
                    .map_err(|m| src.at_or(src.after_pos(i, j), &ctx, m))?;
                continue;
            }
            if !first.contains_key(dep.as_str()) && !race_ids.contains_key(dep.as_str()) {
                return Err(src.at(
                    src.after_pos(i, j),
                    format!("task {:?} depends on unknown task {dep:?}", t.id),
                ));
            }
        }
    }
    // No cycles. A dependency on a race is one on each of its members.
    let deps: Vec<Vec<usize>> = raw
        .task
        .iter()
        .map(|t| {
            let mut v = Vec::new();
            for d in t.after.iter().flatten() {
                if let Some(&i) = first.get(d.as_str()) {
                    v.push(i);
                } else if let Some(&k) = race_ids.get(d.as_str()) {
                    let members = raw.race[k].tasks.iter();
                    v.extend(members.filter_map(|m| first.get(m.as_str()).copied()));
                }
            }
            v
        })
        .collect();
    if topo_order(&deps).is_err() {
        let cycle = find_cycle(&deps);
        let mut ids: Vec<&str> = cycle.iter().map(|&i| raw.task[i].id.as_str()).collect();
        if let Some(&f) = ids.first() {
            ids.push(f);
        }
        let pos = cycle.first().and_then(|&i| src.id_pos(i));
        return Err(src.at(pos, format!("dependency cycle: {}", ids.join(" -> "))));
    }

    let mut tasks = Vec::with_capacity(raw.task.len());
    for (i, t) in raw.task.into_iter().enumerate() {
        let ctx = format!("task {:?}: ", t.id);
        let timeout_ms = match &t.timeout {
            Some(v) => Some(parse_duration(src, &ctx, v, || {
                src.task_pos(i, |l| &l.timeout)
            })?),
            None => default_timeout,
        };
        let kill_grace_ms = match &t.kill_grace {
            Some(v) => parse_duration(src, &ctx, v, || src.task_pos(i, |l| &l.kill_grace))?,
            None => default_grace,
        };
        let backoff = merge_backoff(default_backoff, t.backoff.as_ref(), src, &ctx, || {
            src.task_loc(i).map(|l| &l.backoff)
        })?;
        let marks = t.marks.unwrap_or_default();
        for m in &marks {
            names::validate("marker name", m).map_err(|e| src.at_or(src.id_pos(i), &ctx, e))?;
        }
        let mut env = d.env.clone().unwrap_or_default();
        env.extend(t.env.unwrap_or_default());
        let command = match (t.run, t.cmd) {
            (Some(r), None) => TaskCommand::Shell(r),
            (None, Some(c)) if !c.is_empty() => TaskCommand::Argv(c),
            // Refused above; kept as an error rather than a panic.
            _ => return Err(src.at(src.id_pos(i), format!("task {:?}: bad command", t.id))),
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
        workers,
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

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// Fuzzing light: any text, TOML or JSON, gives a plan or an error, never a panic.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
            let _ = Plan::parse("f.toml", &text, Path::new("/b"));
            let _ = Plan::parse("f.json", &text, Path::new("/b"));
        }

        /// Mutations of a valid plan (a byte replaced, the text cut) never panic either.
        #[test]
        fn mutated_plans_never_panic(pos in 0usize..400, byte in proptest::prelude::any::<u8>(), cut in 0usize..400) {
            let good = "name = \"p\"\nworkers = 2\n[defaults]\ntimeout = \"1s\"\n[[task]]\nid = \"a\"\nrun = \"true\"\n[[task]]\nid = \"b\"\ncmd = [\"x\"]\nafter = [\"a\", \"signal:s\"]\n[[race]]\nid = \"r\"\ntasks = [\"a\", \"b\"]\n";
            let mut bytes = good.as_bytes().to_vec();
            let i = pos % bytes.len();
            bytes[i] = byte;
            bytes.truncate(cut.max(1).min(bytes.len()));
            let text = String::from_utf8_lossy(&bytes);
            let _ = Plan::parse("f.toml", &text, Path::new("/b"));
        }
    }

    const SUFFIX: &str = "must be 1-64 characters of [A-Za-z0-9._-] not starting with a dot";

    fn parse(text: &str) -> Result<Plan, PlanError> {
        Plan::parse("p.toml", text, Path::new("/base"))
    }

    fn err(text: &str) -> String {
        match parse(text) {
            Ok(p) => panic!("accepted: {p:?}"),
            Err(e) => e.0,
        }
    }

    fn json_err(text: &str) -> String {
        match Plan::parse("p.json", text, Path::new("/base")) {
            Ok(p) => panic!("accepted: {p:?}"),
            Err(e) => e.0,
        }
    }

    /// `[[task]]` blocks: (id, after).
    fn tasks(list: &[(&str, &[&str])]) -> String {
        let mut s = String::from("name = \"p\"\n");
        for (id, after) in list {
            s.push_str(&format!("[[task]]\nid = \"{id}\"\nrun = \"true\"\n"));
            if !after.is_empty() {
                let quoted: Vec<String> = after.iter().map(|a| format!("\"{a}\"")).collect();
                s.push_str(&format!("after = [{}]\n", quoted.join(", ")));
            }
        }
        s
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
[[task]]
id = "c"
run = "true"
cwd = "sub/dir"
"#,
        )
        .unwrap();
        let a = &p.tasks[0];
        assert_eq!(a.command, TaskCommand::Shell("true".into()));
        assert_eq!(a.timeout_ms, Some(30 * 60 * 1000));
        assert_eq!(a.retries, 2);
        assert_eq!(a.cwd, PathBuf::from("/base/work"));
        assert_eq!(a.env["A"], "1");
        assert_eq!(a.env["B"], "3");
        assert_eq!(a.backoff.initial_ms, 2000);
        assert_eq!(a.max_reassign, 3);
        assert_eq!(a.kill_grace_ms, 5000);
        assert!(a.after.is_empty());
        let b = &p.tasks[1];
        assert_eq!(
            b.command,
            TaskCommand::Argv(vec!["echo".into(), "hi".into()])
        );
        assert_eq!(b.after, vec!["a".to_string()]);
        assert_eq!(b.cwd, PathBuf::from("/abs"));
        assert_eq!(b.timeout_ms, Some(5000));
        assert_eq!(b.retries, 0);
        assert_eq!(b.env.len(), 2);
        assert_eq!(b.backoff.initial_ms, 2000);
        assert_eq!(b.backoff.factor, 3.0);
        assert_eq!(b.backoff.jitter, 0.0);
        // A relative task cwd resolves against the base, not against defaults.cwd.
        assert_eq!(p.tasks[2].cwd, PathBuf::from("/base/sub/dir"));
        assert_eq!(p.workers, 2);
        assert!(!p.keep_windows);
        assert_eq!(p.lease_ms, 10_000);
    }

    #[test]
    fn bare_plan_gets_defaults() {
        let p = parse("name = \"p\"\nkeep_windows = true\n[[task]]\nid = \"a\"\nrun = \"true\"\n")
            .unwrap();
        assert_eq!(p.workers, 4);
        assert!(p.keep_windows);
        let a = &p.tasks[0];
        assert_eq!(a.cwd, PathBuf::from("/base"));
        assert_eq!(a.timeout_ms, None);
        assert_eq!(a.retries, 0);
        assert!(a.env.is_empty());
    }

    #[test]
    fn load_reads_toml_and_json_files() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base");
        let toml_file = dir.path().join("plan.toml");
        std::fs::write(
            &toml_file,
            "name = \"t\"\n[defaults]\ncwd = \"w\"\n[[task]]\nid = \"a\"\nrun = \"true\"\n",
        )
        .unwrap();
        let p = Plan::load(&toml_file, &base).unwrap();
        assert_eq!(p.name, "t");
        assert_eq!(p.tasks[0].cwd, base.join("w"));

        let json_file = dir.path().join("plan.json");
        std::fs::write(
            &json_file,
            r#"{"name": "j", "workers": 2, "defaults": {"timeout": "2s", "env": {"K": "v"}},
                "task": [{"id": "a", "run": "true"},
                         {"id": "b", "cmd": ["x", "y"], "after": ["a"], "cwd": "/abs"}]}"#,
        )
        .unwrap();
        let p = Plan::load(&json_file, &base).unwrap();
        assert_eq!((p.name.as_str(), p.workers, p.tasks.len()), ("j", 2, 2));
        assert_eq!(p.tasks[0].timeout_ms, Some(2000));
        assert_eq!(p.tasks[1].env["K"], "v");
        assert_eq!(p.tasks[1].cwd, PathBuf::from("/abs"));
        assert_eq!(p.tasks[0].cwd, base);

        // Errors name the file as given.
        std::fs::write(&toml_file, "name = \"t\"\n").unwrap();
        let e = Plan::load(&toml_file, &base).unwrap_err().0;
        assert_eq!(e, format!("{}: plan has no tasks", toml_file.display()));
        let missing = dir.path().join("nope.toml");
        assert_eq!(
            Plan::load(&missing, &base).unwrap_err().0,
            format!(
                "{}: cannot read plan: No such file or directory (os error 2)",
                missing.display()
            )
        );
    }

    #[test]
    fn every_toml_error_has_its_exact_message() {
        let cases: &[(&str, String)] = &[
            (
                "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"true\"\n[[task]]\nid = \"a\"\nrun = \"x\"\n",
                "p.toml:6:6: duplicate task id \"a\" (first defined at line 3)".into(),
            ),
            (
                "name = \"p\"\n[[task]]\nid = \"b\"\nrun = \"true\"\nafter = [\"zz\"]\n",
                "p.toml:5:10: task \"b\" depends on unknown task \"zz\"".into(),
            ),
            (
                "name = \"p\"\n[[task]]\nid = \"b\"\nrun = \"true\"\nafter = [ \"x\",\n  \"zz\" ]\n[[task]]\nid = \"x\"\nrun = \"t\"\n",
                "p.toml:6:3: task \"b\" depends on unknown task \"zz\"".into(),
            ),
            (
                "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\nafter = [\"a\"]\n",
                "p.toml:3:6: dependency cycle: a -> a".into(),
            ),
            (
                "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\nafter = [\"b\"]\n[[task]]\nid = \"b\"\nrun = \"t\"\nafter = [\"a\"]\n",
                "p.toml:3:6: dependency cycle: a -> b -> a".into(),
            ),
            (
                "name = \"p\"\n[[task]]\nid = \"../x\"\nrun = \"t\"\n",
                format!("p.toml:3:6: invalid task id \"../x\": {SUFFIX}"),
            ),
            (
                "name = \"p\"\n[[task]]\nid = \".x\"\nrun = \"t\"\n",
                format!("p.toml:3:6: invalid task id \".x\": {SUFFIX}"),
            ),
            (
                "name = \"p\"\n[[task]]\nid = \"a\\u0000b\"\nrun = \"t\"\n",
                format!("p.toml:3:6: invalid task id \"a\\0b\": {SUFFIX}"),
            ),
            (
                "name = \"../evil\"\n[[task]]\nid = \"a\"\nrun = \"t\"\n",
                format!("p.toml:1:8: invalid plan name \"../evil\": {SUFFIX}"),
            ),
            (
                "name = \"p\"\n[[task]]\nid = \"a\"\n",
                "p.toml:3:6: task \"a\" has neither `run` nor `cmd`".into(),
            ),
            (
                "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\ncmd = [\"t\"]\n",
                "p.toml:3:6: task \"a\" has both `run` and `cmd`".into(),
            ),
            (
                "name = \"p\"\n[[task]]\nid = \"a\"\ncmd = []\n",
                "p.toml:3:6: task \"a\" has an empty `cmd`".into(),
            ),
            (
                "name = \"p\"\nworkers = 0\n[[task]]\nid = \"a\"\nrun = \"t\"\n",
                "p.toml:2:11: workers must be at least 1".into(),
            ),
            (
                "name = \"p\"\nworkers = -3\n[[task]]\nid = \"a\"\nrun = \"t\"\n",
                "p.toml:2:11: workers must be at least 1".into(),
            ),
            ("name = \"p\"\n", "p.toml: plan has no tasks".into()),
            (
                "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\ntimeout = \"soon\"\n",
                "p.toml:5:11: invalid duration \"soon\": expected number at 0".into(),
            ),
            (
                "name = \"p\"\n[defaults]\ntimeout = \"xyz\"\n[[task]]\nid = \"a\"\nrun = \"t\"\n",
                "p.toml:3:11: invalid duration \"xyz\": expected number at 0".into(),
            ),
            (
                "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\nbackoff = { factor = 0.5 }\n",
                "p.toml:5:22: backoff.factor must be at least 1 (got 0.5)".into(),
            ),
            (
                "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\nrn = 1\n",
                "p.toml:5:1: unknown field `rn`, expected one of `id`, `run`, `cmd`, `after`, `cwd`, `env`, `timeout`, `retries`, `backoff`, `max_reassign`, `kill_grace`, `priority`, `marks`".into(),
            ),
            (
                "name = \"p\"\nworkers = \"many\"\n[[task]]\nid = \"a\"\nrun = \"t\"\n",
                "p.toml:2:11: invalid type: string \"many\", expected i64".into(),
            ),
            (
                "name = \"p\"\n[[task]]\nrun = \"t\"\n",
                "p.toml:2:1: missing field `id`".into(),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(&err(text), expected, "plan:\n{text}");
        }
        // Syntax errors: position and toml's one-line message.
        let e = err("name = \"p\n");
        assert!(e.starts_with("p.toml:1:") && !e.contains('\n'), "{e}");
    }

    #[test]
    fn first_error_follows_the_documented_order() {
        // A bad id (task 3) beats a duplicate (task 2).
        let e = err(&tasks(&[("a", &[]), ("a", &[]), ("../x", &[])]));
        assert!(e.starts_with("p.toml:9:6: invalid task id \"../x\""), "{e}");
        // A duplicate beats a missing command.
        let e = err("name = \"p\"\n[[task]]\nid = \"a\"\n[[task]]\nid = \"a\"\nrun = \"t\"\n");
        assert!(e.contains("duplicate task id"), "{e}");
        // A missing command beats an unknown dependency.
        let e = err(
            "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\nafter = [\"q\"]\n[[task]]\nid = \"b\"\n",
        );
        assert!(e.contains("has neither"), "{e}");
        // An unknown dependency beats a cycle.
        let e = err(&tasks(&[("a", &["b"]), ("b", &["a", "q"])]));
        assert!(e.contains("unknown task \"q\""), "{e}");
    }

    #[test]
    fn cycle_reported_from_earliest_member() {
        // x depends on the cycle b -> c -> b, but is not part of it.
        let e = err(&tasks(&[("x", &["c"]), ("b", &["c"]), ("c", &["b"])]));
        assert_eq!(e, "p.toml:7:6: dependency cycle: b -> c -> b");
        // x leads into the later cycle d <-> e; a <-> b appears earlier in the plan.
        let e = err(&tasks(&[
            ("x", &["d"]),
            ("a", &["b"]),
            ("b", &["a"]),
            ("d", &["e"]),
            ("e", &["d"]),
        ]));
        assert_eq!(e, "p.toml:7:6: dependency cycle: a -> b -> a");
        // The shortest cycle through the earliest member, edges in `after` order.
        let e = err(&tasks(&[("a", &["b", "c"]), ("b", &["c"]), ("c", &["a"])]));
        assert_eq!(e, "p.toml:3:6: dependency cycle: a -> c -> a");
        let e = err(&tasks(&[("a", &["c"]), ("b", &["a"]), ("c", &["b"])]));
        assert_eq!(e, "p.toml:3:6: dependency cycle: a -> c -> b -> a");
    }

    #[test]
    fn json_plans_work_and_errors_have_positions_or_names() {
        let p = Plan::parse(
            "p.json",
            r#"{"name": "j", "task": [{"id": "a", "run": "true"}, {"id": "b", "cmd": ["x"], "after": ["a"]}]}"#,
            Path::new("/b"),
        )
        .unwrap();
        assert_eq!(p.tasks.len(), 2);
        assert_eq!(p.workers, 4);
        assert_eq!(p.dep_indices(), vec![vec![], vec![0]]);
        let cases: &[(&str, String)] = &[
            (
                r#"{"name": "j", "task": [{"id": "a", "run": "t", "after": ["q"]}]}"#,
                "p.json: task \"a\" depends on unknown task \"q\"".into(),
            ),
            (
                r#"{"name": "j", "task": [{"id": "a", "run": "t"}, {"id": "a", "run": "t"}]}"#,
                "p.json: duplicate task id \"a\" (first defined as task #1)".into(),
            ),
            (
                r#"{"name": "j", "task": [{"id": "a", "run": "t", "after": ["b"]}, {"id": "b", "run": "t", "after": ["a"]}]}"#,
                "p.json: dependency cycle: a -> b -> a".into(),
            ),
            (
                r#"{"name": "j", "task": [{"id": "a/b", "run": "t"}]}"#,
                format!("p.json: invalid task id \"a/b\": {SUFFIX}"),
            ),
            (
                r#"{"name": "j", "task": [{"id": "a"}]}"#,
                "p.json: task \"a\" has neither `run` nor `cmd`".into(),
            ),
            (
                r#"{"name": "j", "task": [{"id": "a", "cmd": []}]}"#,
                "p.json: task \"a\" has an empty `cmd`".into(),
            ),
            (
                r#"{"name": "j", "workers": 0, "task": [{"id": "a", "run": "t"}]}"#,
                "p.json: workers must be at least 1".into(),
            ),
            (r#"{"name": "j"}"#, "p.json: plan has no tasks".into()),
            (
                r#"{"name": "j", "task": [{"id": "a", "run": "t", "timeout": "soon"}]}"#,
                "p.json: task \"a\": invalid duration \"soon\": expected number at 0".into(),
            ),
            (
                "{\"name\": \"j\",\n \"task\": [{\"id\": \"a\", \"rn\": \"t\"}]}",
                "p.json:2:26: unknown field `rn`, expected one of `id`, `run`, `cmd`, `after`, `cwd`, `env`, `timeout`, `retries`, `backoff`, `max_reassign`, `kill_grace`, `priority`, `marks`".into(),
            ),
            (
                "{\"name\": \"j\",\n \"workers\": \"x\", \"task\": []}",
                "p.json:2:15: invalid type: string \"x\", expected i64".into(),
            ),
            ("{", "p.json:1:1: EOF while parsing an object".into()),
        ];
        for (text, expected) in cases {
            assert_eq!(&json_err(text), expected, "plan:\n{text}");
        }
    }

    #[test]
    fn waves_and_critical_path_of_a_diamond() {
        let p = parse(&tasks(&[
            ("a", &[]),
            ("b", &["a"]),
            ("c", &["a"]),
            ("d", &["b", "c"]),
            ("e", &[]),
        ]))
        .unwrap();
        assert_eq!(p.waves(), vec![vec![0, 4], vec![1, 2], vec![3]]);
        assert_eq!(p.critical_path(), vec![0, 1, 3]);
        assert_eq!(
            p.describe(),
            "plan p: 5 tasks, 4 workers, 3 waves\nwave 1: a, e\nwave 2: b, c\nwave 3: d\ncritical path: a -> b -> d (3 tasks)\n"
        );
        assert_eq!(
            p.describe_json(),
            serde_json::json!({
                "name": "p",
                "workers": 4,
                "tasks": 5,
                "waves": [["a", "e"], ["b", "c"], ["d"]],
                "critical_path": ["a", "b", "d"],
            })
        );
        assert_eq!(
            p.to_dot(),
            "digraph \"p\" {\n  rankdir=LR;\n  \"a\";\n  \"b\";\n  \"c\";\n  \"d\";\n  \"e\";\n  \
             \"a\" -> \"b\";\n  \"a\" -> \"c\";\n  \"b\" -> \"d\";\n  \"c\" -> \"d\";\n}\n"
        );
    }

    #[test]
    fn critical_path_prefers_longest_then_earliest() {
        // x -> y is as long as a -> b, but b comes first in the plan.
        let p = parse(&tasks(&[
            ("x", &[]),
            ("a", &[]),
            ("b", &["a"]),
            ("y", &["x"]),
        ]))
        .unwrap();
        assert_eq!(p.critical_path(), vec![1, 2]);
        // A longer chain wins wherever it is.
        let p = parse(&tasks(&[
            ("a", &[]),
            ("b", &["a"]),
            ("c", &[]),
            ("d", &["c"]),
            ("e", &["d"]),
        ]))
        .unwrap();
        assert_eq!(p.critical_path(), vec![2, 3, 4]);
    }

    #[test]
    fn hand_made_cyclic_plan_does_not_hang() {
        // Plans from `load` never have cycles, but a `plan.json` edited by hand might.
        let mut p = parse(&tasks(&[("a", &[]), ("b", &["a"])])).unwrap();
        p.tasks[0].after = vec!["b".into()];
        assert!(p.critical_path().len() <= 2);
        assert_eq!(p.waves().iter().map(Vec::len).sum::<usize>(), 2);
        let _ = p.describe();
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
        // Closing the chain into one 100 000-task cycle is found without recursion too.
        text.push_str("[[task]]\nid = \"z\"\nrun = \"true\"\n");
        let text = text.replacen(
            "id = \"t0\"\nrun = \"true\"\n",
            "id = \"t0\"\nrun = \"true\"\nafter = [\"t99999\"]\n",
            1,
        );
        let e = err(&text);
        assert!(
            e.starts_with("p.toml:3:6: dependency cycle: t0 -> t99999 -> t99998 -> "),
            "{}",
            &e[..e.len().min(200)]
        );
        assert!(e.ends_with(" -> t1 -> t0"));
    }

    #[test]
    fn message_recipients_are_reserved_ids() {
        assert_eq!(
            err("name = \"p\"\n[[task]]\nid = \"all\"\nrun = \"t\"\n"),
            "p.toml:3:6: task id \"all\" is reserved (a message recipient)"
        );
    }

    /// A plan over `CHUNKED_ABOVE` bytes, with the shapes the piecewise parse must get
    /// right: subtables of tasks, a non-task table between tasks, header-like lines inside
    /// a multi-line string, nested brackets at the start of a line inside an inline array.
    fn large_plan(tasks: usize, tail: &str) -> String {
        let mut t = String::from("name = \"big\"\nworkers = 2\n");
        for i in 0..tasks {
            t.push_str(&format!("[[task]]\nid = \"t{i}\"\nrun = \"echo {i}\"\n"));
            if i == 300 {
                t.push_str("after = [\n  \"t1\",\n  \"t2\", # a comment [[task]]\n]\n");
            }
            if i % 7 == 3 {
                t.push_str(&format!("[task.env]\nN = \"{i}\"\n"));
            }
            if i == 200 {
                t.push_str("[defaults]\nretries = 2\n[task.backoff]\ninitial = \"2s\"\n");
            }
            if i == 400 {
                t.push_str("[[checkpoint]]\nname = \"cp\"\ntasks = [\"t1\", \"t2\"]\n");
            }
            if i == 501 {
                t.push_str("[task.env]\nX = '''\n[[task]]\nid = \"fake\"\n'''\n");
            }
        }
        t.push_str(tail);
        t
    }

    #[test]
    fn large_plans_parse_piecewise_to_the_same_plan() {
        let text = large_plan(4000, "[locks]\norder = [\"a\", \"b\"]\n");
        assert!(text.len() > CHUNKED_ABOVE);
        let whole: RawPlan = toml::from_str(&text).unwrap();
        let pieces = parse_toml_chunked(&text).expect("the piecewise parse applies");
        assert_eq!(format!("{pieces:?}"), format!("{whole:?}"));
        assert_eq!(pieces.task.len(), 4000);
        assert_eq!(
            pieces.task[501].env.as_ref().unwrap()["X"],
            "[[task]]\nid = \"fake\"\n"
        );
        let plan = parse(&text).unwrap();
        assert_eq!(plan.tasks.len(), 4000);
        assert_eq!(plan.tasks[300].after, ["t1", "t2"]);
        assert_eq!(plan.tasks[0].retries, 2);
    }

    #[test]
    fn large_plans_fall_back_to_the_whole_parse_for_errors_and_odd_shapes() {
        // An error anywhere: the whole parse reports it, with its line.
        let text = large_plan(4000, "[[task]]\nid = \"late\"\nrun = \n");
        let lines = text.lines().count();
        assert!(parse_toml_chunked(&text).is_none());
        let e = err(&text);
        assert!(e.starts_with(&format!("p.toml:{lines}:")), "{e}");
        // A quoted header naming task: not split, parsed whole (and valid).
        let text = large_plan(4000, "[[\"task\"]]\nid = \"quoted\"\nrun = \"true\"\n");
        assert!(parse_toml_chunked(&text).is_none());
        assert_eq!(parse(&text).unwrap().tasks.len(), 4001);
        // Tasks given as an inline array among the root keys: parsed whole.
        let pad = "#".repeat(CHUNKED_ABOVE);
        let text = format!("name = \"x\"\ntask = [{{ id = \"x\", run = \"true\" }}]\n{pad}\n");
        assert!(parse_toml_chunked(&text).is_none());
        assert_eq!(parse(&text).unwrap().tasks.len(), 1);
    }

    #[test]
    fn shipped_examples_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let demo = Plan::load(&dir.join("demo.toml"), Path::new("/")).unwrap();
        assert_eq!((demo.name.as_str(), demo.workers), ("demo", 3));
        assert_eq!(demo.waves().len(), 4);
        let diamond = Plan::load(&dir.join("diamond.toml"), Path::new("/")).unwrap();
        assert_eq!(diamond.waves(), vec![vec![0], vec![1, 2], vec![3]]);
    }
}
