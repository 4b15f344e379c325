//! What `orchestrator plan` shows of a plan without running it, and what `orchestrator run
//! --dry-run` shows of what it would run: one description, as text, JSON or Graphviz.
//!
//! Every kind of edge is shown: a task's dependencies on tasks, on races and on signals
//! (each as written in `after`), the members of each race, the participants of each
//! checkpoint (a barrier), and which tasks wait for each race and signal. Waves and the
//! critical path come from the task graph, where a dependency on a race stands for one on
//! each of its members (a task after a race cannot start before every member has ended).
//!
//! Signals add nothing to waves or the critical path. A signal has no duration, and the
//! plan does not say which task raises it (any task may, with `worker signal NAME`, at any
//! moment of its run, or none may): counting it as a wave of its own would invent a delay,
//! and ordering it after a guessed raiser would invent an edge. So a task waiting for a
//! signal sits in the wave its task and race dependencies give it, and the signal is shown
//! beside it, as a dependency and on a line of its own: at run time it may start later.
//!
//! Text (`orchestrator plan`), a line each, those of races, checkpoints and signals only
//! when the plan has some:
//!
//! ```text
//! plan NAME: N tasks, W workers, K waves
//! wave 1: a, c                               tasks by dependency depth, plan order
//!   b: after a, race r, signal:go            a task's dependencies, under its wave
//! race r (pick first): b, c; then d          members, then the tasks after it
//! checkpoint cp: a, c                        a barrier's participants
//! signal go: awaited by b (raised at run time by `worker signal go`; adds no wave)
//! critical path: a -> b -> d (3 tasks)
//! secrets of a: TOKEN=<from the caller>
//! ```
//!
//! A dry run puts a few lines about the run first (sessions directory, launcher, watch
//! mode), and a line for every task under its wave, with its command
//! (`  a: run "echo a"`, `  b: cmd ["echo", "b"]; after a`).
//!
//! JSON (`plan --json`): `name`, `workers`, `tasks` (the number of tasks), `waves` (ids,
//! wave by wave), `critical_path` (ids), then, added since, `edges` (one per `after`
//! entry: `{"from", "to", "kind"}`, `kind` being `task`, `race` or `signal`, and `from`
//! the task id, race id or `signal:NAME`), `races` (`{"id", "tasks", "pick", "score",
//! "awaited_by"}`), `checkpoints` (`{"name", "tasks"}`) and `signals` (`{"name",
//! "awaited_by"}`), empty arrays when there are none. Only for plans that have them, so
//! that older plans' output keeps its shape: `resources` (pools and their claims),
//! `on_failure` (the plan's policy, when some task's failure stops or freezes the
//! session or the plan's is not `continue`), `on_failure_tasks` (`{"ID": "POLICY"}`, the
//! tasks' own, with it), `gates` (as in
//! `plan.json`), `cleanup_workers` (when not 1), `auxiliary` (`{"id", "cleanup":
//! {"command", "delay_ms", "timeout_ms"} | null, "rollback", "emergency"}` for each task
//! that has any) and `worktree` (the ids of the tasks with `worktree = true`). A dry
//! run's JSON adds `dry_run` (true), `sessions_dir`, `launcher`, `watch`, `durable` and
//! `commands` (`{"id", "command"}`, the command as in `plan.json`: `{"shell": ...}` or
//! `{"argv": [...]}`).
//!
//! Graphviz (`plan --dot`): a node per task, a hexagon per race, a diamond per signal
//! (`"signal:NAME"`), an octagon per gate (`"gate:ID"`), a dashed box per checkpoint
//! (`"checkpoint:NAME"`); an edge from each dependency to its dependent, dashed edges from
//! race members to their race, dotted undirected edges from checkpoint participants to
//! their checkpoint. A task with auxiliary commands says which under its id (`cleanup,
//! rollback`), a gate that runs a check says `run` (and `approve`). Task, race, signal,
//! gate and checkpoint names cannot collide: ids have no colon.
//!
//! The text also has a line for each pool, each gate (what it does: `runs "make check",
//! at most 30s, then waits for approval`), the failure policy when it is not
//! `continue` everywhere (`on_failure: freeze (tasks' own: b stop)`), `cleanup_workers`
//! when not 1, and, per task, what it owns (its write scopes), which tasks run in a git
//! worktree of their own (`worktree: a, b (...)`), where its secrets come from and its
//! auxiliary commands (`cleanup of a: "rm -rf tmp" (after 5s, at most 30s)`, `rollback
//! of a: "..."`, `emergency of a: "..."`).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::graph::{Graph, NodeId, NodeKind};
use super::{Pick, Plan, Task, TaskCommand};

/// Where and how `orchestrator run` would run a plan: what a dry run says besides the plan.
#[derive(Debug, Clone, Copy)]
pub struct RunSettings<'a> {
    pub sessions_dir: &'a Path,
    /// The launcher as resolved (`background` or `tmux`).
    pub launcher: &'a str,
    pub watch: &'a str,
    pub durable: bool,
    /// A partial run's selection (`--only`, `--skip`), by task index; empty: none.
    pub excluded: &'a [Option<super::Exclusion>],
}

impl Plan {
    /// Tasks (by index) grouped by dependency depth (wave 0 has no dependencies), plan
    /// order inside.
    pub fn waves(&self) -> Vec<Vec<usize>> {
        let g = self.task_graph();
        let tasks = |wave: Vec<_>| wave.into_iter().filter_map(|n| g.task_of(n)).collect();
        g.waves().into_iter().map(tasks).collect()
    }

    /// The longest dependency chain (by number of tasks, as indices), first to last. Ties:
    /// the chain ending at the task earliest in the plan, and at each step the dependency
    /// earliest in the plan. Signals are not on it (see the module's documentation).
    pub fn critical_path(&self) -> Vec<usize> {
        let g = self.task_graph();
        let path = g.critical_path().into_iter();
        path.filter_map(|n| g.task_of(n)).collect()
    }

    /// Graphviz: every task, race, signal and checkpoint, and every edge between them.
    pub fn to_dot(&self) -> String {
        let g = self.graph();
        let mut s = format!("digraph {:?} {{\n  rankdir=LR;\n", self.name);
        for n in g.nodes() {
            let name = self.node_name(&g, n);
            let attrs = match g.kind(n) {
                NodeKind::Task(i) => match aux_kinds(&self.tasks[*i]) {
                    kinds if kinds.is_empty() => String::new(),
                    kinds => {
                        let label = format!("{}\n{}", self.tasks[*i].id, kinds.join(", "));
                        format!(" [label={label:?}]")
                    }
                },
                NodeKind::Race(k) => {
                    let label =
                        format!("race {} ({})", self.races[*k].id, pick(self.races[*k].pick));
                    format!(" [shape=hexagon, label={label:?}]")
                }
                NodeKind::Signal(_) => " [shape=diamond]".to_string(),
                NodeKind::Gate(k) if self.gates[*k].run.is_some() => {
                    let g = &self.gates[*k];
                    let kinds = if g.approve { "run, approve" } else { "run" };
                    let label = format!("{}\n{kinds}", g.dep_name());
                    format!(" [shape=octagon, label={label:?}]")
                }
                NodeKind::Gate(_) => " [shape=octagon]".to_string(),
            };
            s.push_str(&format!("  {name:?}{attrs};\n"));
        }
        for c in &self.checkpoints {
            s.push_str(&format!(
                "  {:?} [shape=box, style=dashed];\n",
                format!("checkpoint:{}", c.name)
            ));
        }
        for n in g.nodes() {
            for &d in g.deps(n) {
                let (from, to) = (self.node_name(&g, d), self.node_name(&g, n));
                s.push_str(&format!("  {from:?} -> {to:?};\n"));
            }
        }
        for r in &self.races {
            for m in &r.tasks {
                s.push_str(&format!("  {m:?} -> {:?} [style=dashed];\n", r.id));
            }
        }
        for c in &self.checkpoints {
            let node = format!("checkpoint:{}", c.name);
            for t in &c.tasks {
                s.push_str(&format!("  {t:?} -> {node:?} [dir=none, style=dotted];\n"));
            }
        }
        s.push_str("}\n");
        s
    }

    /// What `orchestrator plan` prints.
    pub fn describe(&self) -> String {
        self.describe_text(false)
    }

    /// What `orchestrator run --dry-run` prints: the run's settings, then the plan with
    /// every task's command.
    pub fn describe_dry_run(&self, run: &RunSettings) -> String {
        let excluded: Vec<String> = self
            .excluded_of(run)
            .map(|(id, why)| format!("{id} ({})", why.label()))
            .collect();
        let excluded = if excluded.is_empty() {
            String::new()
        } else {
            format!("excluded: {}\n", excluded.join(", "))
        };
        format!(
            "dry run: nothing created, nothing started\nsessions dir: {}\n\
             launcher: {}, watch: {}, durable: {}\n{excluded}{}",
            run.sessions_dir.display(),
            run.launcher,
            run.watch,
            if run.durable { "yes" } else { "no" },
            self.describe_text(true)
        )
    }

    /// The tasks a partial run leaves out, in plan order, with why.
    fn excluded_of<'a>(
        &'a self,
        run: &'a RunSettings,
    ) -> impl Iterator<Item = (&'a str, super::Exclusion)> + 'a {
        self.tasks
            .iter()
            .zip(run.excluded)
            .filter_map(|(t, why)| why.map(|w| (t.id.as_str(), w)))
    }

    /// The plan as text; with `commands`, a line for every task with its command, else
    /// one only for the tasks that have dependencies.
    fn describe_text(&self, commands: bool) -> String {
        let waves = self.waves();
        let races = self.race_ids();
        let mut s = format!(
            "plan {}: {} tasks, {} workers, {} waves\n",
            self.name,
            self.tasks.len(),
            self.workers,
            waves.len()
        );
        for (k, w) in waves.iter().enumerate() {
            s.push_str(&format!("wave {}: {}\n", k + 1, self.ids(w).join(", ")));
            for &i in w {
                let t = &self.tasks[i];
                let mut deps = self.named_deps(t, &races).peekable();
                if !commands && deps.peek().is_none() {
                    continue;
                }
                s.push_str("  ");
                s.push_str(&t.id);
                s.push_str(": ");
                if commands {
                    s.push_str(&command_text(&t.command));
                    if deps.peek().is_some() {
                        s.push_str("; ");
                    }
                }
                for (k, (kind, name)) in deps.enumerate() {
                    s.push_str(if k == 0 { "after " } else { ", " });
                    if kind == "race" {
                        s.push_str("race ");
                    }
                    s.push_str(&name);
                }
                s.push('\n');
            }
        }
        let (race_waiters, signals) = self.waiters(&races);
        for (r, then) in self.races.iter().zip(&race_waiters) {
            s.push_str(&format!("race {} (pick {}", r.id, pick(r.pick)));
            if let Some(score) = &r.score {
                s.push_str(&format!(", highest {score}"));
            }
            s.push_str(&format!("): {}", r.tasks.join(", ")));
            if !then.is_empty() {
                s.push_str(&format!("; then {}", then.join(", ")));
            }
            s.push('\n');
        }
        for c in &self.checkpoints {
            s.push_str(&format!("checkpoint {}: {}\n", c.name, c.tasks.join(", ")));
        }
        for g in &self.gates {
            let name = g.dep_name();
            let then: Vec<&str> = self
                .tasks
                .iter()
                .filter(|t| t.after.contains(&name))
                .map(|t| t.id.as_str())
                .collect();
            let mut does = Vec::new();
            if let Some(run) = &g.run {
                does.push(format!("runs {run:?}"));
                if let Some(t) = g.timeout_ms {
                    does.push(format!("at most {}", show_ms(t)));
                }
            }
            if g.approve {
                let then = if g.run.is_some() { "then " } else { "" };
                does.push(format!("{then}waits for approval"));
            }
            s.push_str(&format!(
                "gate {} ({}): after {}",
                g.id,
                does.join(", "),
                g.after.join(", ")
            ));
            if !then.is_empty() {
                s.push_str(&format!("; then {}", then.join(", ")));
            }
            s.push('\n');
        }
        for (name, p) in &self.resources {
            s.push_str(&format!("pool {name}: max {}", p.max));
            if let Some(w) = p.warn {
                s.push_str(&format!(", warn {w}"));
            }
            if let Some(c) = p.critical {
                s.push_str(&format!(", critical {c}"));
            }
            let claims: Vec<String> = self
                .tasks
                .iter()
                .filter_map(|t| Some(format!("{} ({})", t.id, t.resources.get(name)?)))
                .collect();
            if !claims.is_empty() {
                s.push_str(&format!("; claimed by {}", claims.join(", ")));
            }
            s.push('\n');
        }
        if self.shows_policy() {
            s.push_str(&format!("on_failure: {}", self.on_failure.as_str()));
            let own: Vec<String> = self
                .tasks
                .iter()
                .filter_map(|t| Some(format!("{} {}", t.id, t.on_failure?.as_str())))
                .collect();
            if !own.is_empty() {
                s.push_str(&format!(" (tasks' own: {})", own.join(", ")));
            }
            s.push('\n');
        }
        if self.cleanup_workers != 1 {
            s.push_str(&format!(
                "cleanup_workers: {} (auxiliary commands at once, besides the workers)\n",
                self.cleanup_workers
            ));
        }
        for (name, waiters) in &signals {
            s.push_str(&format!(
                "signal {name}: awaited by {} (raised at run time by `worker signal {name}`; \
                 adds no wave)\n",
                waiters.join(", ")
            ));
        }
        let cp = self.ids(&self.critical_path());
        s.push_str(&format!(
            "critical path: {} ({} tasks)\n",
            cp.join(" -> "),
            cp.len()
        ));
        for t in &self.tasks {
            if !t.owns.is_empty() {
                s.push_str(&format!("owns of {}: {}\n", t.id, t.owns.join(", ")));
            }
        }
        let worktrees = self.worktree_ids();
        if !worktrees.is_empty() {
            s.push_str(&format!(
                "worktree: {} (each in a git worktree of its own, on branch \
                 maestro/<session>/<task> from the repository's HEAD at the session's start)\n",
                worktrees.join(", ")
            ));
        }
        for t in &self.tasks {
            if let Some(line) = t.secrets() {
                s.push_str(&format!("secrets of {}: {line}\n", t.id));
            }
        }
        for t in &self.tasks {
            if let Some(c) = &t.cleanup {
                s.push_str(&format!("cleanup of {}: {c:?} (", t.id));
                if t.cleanup_delay_ms > 0 {
                    s.push_str(&format!("after {}, ", show_ms(t.cleanup_delay_ms)));
                }
                s.push_str(&format!("at most {})\n", show_ms(t.cleanup_timeout_ms)));
            }
            if let Some(c) = &t.rollback {
                s.push_str(&format!("rollback of {}: {c:?}\n", t.id));
            }
            if let Some(c) = &t.emergency {
                s.push_str(&format!("emergency of {}: {c:?}\n", t.id));
            }
        }
        s
    }

    /// `orchestrator plan --json` (the shape is in the module's documentation).
    pub fn describe_json(&self) -> serde_json::Value {
        let waves: Vec<Vec<&str>> = self.waves().iter().map(|w| self.ids(w)).collect();
        let race_ids = self.race_ids();
        let mut edges = Vec::new();
        for t in &self.tasks {
            for (kind, from) in self.named_deps(t, &race_ids) {
                edges.push(serde_json::json!({ "from": from, "to": t.id, "kind": kind }));
            }
        }
        let (race_waiters, signals) = self.waiters(&race_ids);
        let races: Vec<_> = self
            .races
            .iter()
            .zip(race_waiters)
            .map(|(r, waiters)| {
                serde_json::json!({
                    "id": r.id,
                    "tasks": r.tasks,
                    "pick": pick(r.pick),
                    "score": r.score,
                    "awaited_by": waiters,
                })
            })
            .collect();
        let signals: Vec<_> = signals
            .into_iter()
            .map(|(name, waiters)| serde_json::json!({ "name": name, "awaited_by": waiters }))
            .collect();
        let mut v = serde_json::json!({
            "name": self.name,
            "workers": self.workers,
            "tasks": self.tasks.len(),
            "waves": waves,
            "critical_path": self.ids(&self.critical_path()),
            "edges": edges,
            "races": races,
            "checkpoints": self.checkpoints,
            "signals": signals,
        });
        // Only for plans that have them: the shape of older plans' output stays.
        if !self.resources.is_empty() {
            let pools: Vec<_> = self
                .resources
                .iter()
                .map(|(name, p)| {
                    let claims: serde_json::Map<String, serde_json::Value> = self
                        .tasks
                        .iter()
                        .filter_map(|t| Some((t.id.clone(), (*t.resources.get(name)?).into())))
                        .collect();
                    serde_json::json!({
                        "pool": name, "max": p.max, "warn": p.warn, "critical": p.critical,
                        "claims": claims,
                    })
                })
                .collect();
            v["resources"] = pools.into();
        }
        if self.shows_policy() {
            v["on_failure"] = self.on_failure.as_str().into();
            let own: serde_json::Map<String, serde_json::Value> = self
                .tasks
                .iter()
                .filter_map(|t| Some((t.id.clone(), t.on_failure?.as_str().into())))
                .collect();
            if !own.is_empty() {
                v["on_failure_tasks"] = own.into();
            }
        }
        if !self.gates.is_empty() {
            v["gates"] = serde_json::json!(self.gates);
        }
        if self.cleanup_workers != 1 {
            v["cleanup_workers"] = self.cleanup_workers.into();
        }
        let aux: Vec<_> = self
            .tasks
            .iter()
            .filter(|t| !aux_kinds(t).is_empty())
            .map(|t| {
                let cleanup = t.cleanup.as_ref().map(|c| {
                    serde_json::json!({
                        "command": c,
                        "delay_ms": t.cleanup_delay_ms,
                        "timeout_ms": t.cleanup_timeout_ms,
                    })
                });
                serde_json::json!({
                    "id": t.id, "cleanup": cleanup, "rollback": t.rollback,
                    "emergency": t.emergency,
                })
            })
            .collect();
        if !aux.is_empty() {
            v["auxiliary"] = aux.into();
        }
        let worktrees = self.worktree_ids();
        if !worktrees.is_empty() {
            v["worktree"] = worktrees.into();
        }
        v
    }

    /// The ids of the tasks that run in a git worktree of their own, in plan order.
    fn worktree_ids(&self) -> Vec<&str> {
        let wt = self.tasks.iter().filter(|t| t.worktree);
        wt.map(|t| t.id.as_str()).collect()
    }

    /// `orchestrator run --dry-run --json`: [`Plan::describe_json`] and the run's settings
    /// and commands.
    pub fn describe_dry_run_json(&self, run: &RunSettings) -> serde_json::Value {
        let mut v = self.describe_json();
        let commands: Vec<_> = self
            .tasks
            .iter()
            .map(|t| serde_json::json!({ "id": t.id, "command": t.command }))
            .collect();
        if let Some(o) = v.as_object_mut() {
            o.insert("dry_run".into(), true.into());
            let dir = run.sessions_dir.display().to_string();
            o.insert("sessions_dir".into(), dir.into());
            o.insert("launcher".into(), run.launcher.into());
            o.insert("watch".into(), run.watch.into());
            o.insert("durable".into(), run.durable.into());
            o.insert("commands".into(), commands.into());
            let excluded: Vec<_> = self
                .excluded_of(run)
                .map(|(id, why)| serde_json::json!({ "id": id, "reason": why.reason() }))
                .collect();
            o.insert("excluded".into(), excluded.into());
        }
        v
    }

    /// Whether the description says the failure policy: when some task's failure stops or
    /// freezes the session, or the plan's policy is not the default.
    fn shows_policy(&self) -> bool {
        self.may_stop() || self.on_failure != super::OnFailure::Continue
    }

    /// The ids of tasks given by index.
    fn ids(&self, tasks: &[usize]) -> Vec<&str> {
        tasks.iter().map(|&i| self.tasks[i].id.as_str()).collect()
    }

    /// A node of the scheduler's graph as the plan names it: a task or race by its id, a
    /// signal as `signal:NAME` (how `after` spells it).
    fn node_name(&self, g: &Graph, n: NodeId) -> String {
        match g.kind(n) {
            NodeKind::Task(i) => self.tasks[*i].id.clone(),
            NodeKind::Race(k) => self.races[*k].id.clone(),
            NodeKind::Signal(name) => format!("signal:{name}"),
            NodeKind::Gate(k) => self.gates[*k].dep_name(),
        }
    }

    /// The ids of the plan's races.
    fn race_ids(&self) -> HashSet<&str> {
        self.races.iter().map(|r| r.id.as_str()).collect()
    }

    /// A task's dependencies as the plan names them, `after` first, then its signals (the
    /// scheduler's graph's order), each with its kind: `task`, `race` or `signal` (named
    /// `signal:NAME`). Read from the task rather than from the scheduler's graph, which a
    /// 100 000-task plan would build for this alone.
    fn named_deps<'a>(
        &self,
        t: &'a Task,
        races: &'a HashSet<&str>,
    ) -> impl Iterator<Item = (&'static str, Cow<'a, str>)> + use<'a> {
        let after = t.after.iter().map(move |d| {
            let kind = if races.contains(d.as_str()) {
                "race"
            } else if d.starts_with("gate:") {
                "gate"
            } else {
                "task"
            };
            (kind, Cow::Borrowed(d.as_str()))
        });
        let signals = t.after_signals.iter();
        after.chain(signals.map(|s| ("signal", Cow::Owned(format!("signal:{s}")))))
    }

    /// The ids of the tasks waiting for each race (in race order) and for each signal (in
    /// order of first mention, with its name), plan order inside.
    #[allow(clippy::type_complexity)]
    fn waiters(&self, races: &HashSet<&str>) -> (Vec<Vec<&str>>, Vec<(&str, Vec<&str>)>) {
        let race_index: HashMap<&str, usize> = (self.races.iter().enumerate())
            .map(|(k, r)| (r.id.as_str(), k))
            .collect();
        let mut by_race = vec![Vec::new(); self.races.len()];
        let mut signals: Vec<(&str, Vec<&str>)> = Vec::new();
        let mut signal_index: HashMap<&str, usize> = HashMap::new();
        for t in &self.tasks {
            if !races.is_empty() {
                for d in &t.after {
                    if let Some(&k) = race_index.get(d.as_str()) {
                        by_race[k].push(t.id.as_str());
                    }
                }
            }
            for sig in &t.after_signals {
                let k = *signal_index.entry(sig).or_insert_with(|| {
                    signals.push((sig, Vec::new()));
                    signals.len() - 1
                });
                signals[k].1.push(t.id.as_str());
            }
        }
        (by_race, signals)
    }
}

/// A race's `pick` as the plan spells it.
fn pick(p: Pick) -> &'static str {
    match p {
        Pick::First => "first",
        Pick::Best => "best",
    }
}

/// Which auxiliary commands a task has, as the plan names them.
fn aux_kinds(t: &Task) -> Vec<&'static str> {
    [
        ("cleanup", &t.cleanup),
        ("rollback", &t.rollback),
        ("emergency", &t.emergency),
    ]
    .into_iter()
    .filter_map(|(k, c)| c.as_ref().map(|_| k))
    .collect()
}

/// A duration as a plan spells it: `30s`, `1m 30s`, `500ms`.
fn show_ms(ms: u64) -> String {
    humantime::format_duration(std::time::Duration::from_millis(ms)).to_string()
}

/// A command as the plan spells it: `run "..."` or `cmd ["...", ...]`.
fn command_text(c: &TaskCommand) -> String {
    match c {
        TaskCommand::Shell(s) => format!("run {s:?}"),
        TaskCommand::Argv(v) => {
            let args: Vec<String> = v.iter().map(|a| format!("{a:?}")).collect();
            format!("cmd [{}]", args.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::test_util::{parse, tasks};
    use super::RunSettings;

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
            "plan p: 5 tasks, 4 workers, 3 waves\nwave 1: a, e\nwave 2: b, c\n  b: after a\n  c: after a\n\
             wave 3: d\n  d: after b, c\ncritical path: a -> b -> d (3 tasks)\n"
        );
        assert_eq!(
            p.describe_json(),
            serde_json::json!({
                "name": "p",
                "workers": 4,
                "tasks": 5,
                "waves": [["a", "e"], ["b", "c"], ["d"]],
                "critical_path": ["a", "b", "d"],
                "edges": [
                    {"from": "a", "to": "b", "kind": "task"},
                    {"from": "a", "to": "c", "kind": "task"},
                    {"from": "b", "to": "d", "kind": "task"},
                    {"from": "c", "to": "d", "kind": "task"},
                ],
                "races": [],
                "checkpoints": [],
                "signals": [],
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
    fn a_race_counts_as_its_members() {
        // d runs after race r, so after both b and c: three waves, not two.
        let p = parse(
            "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\n[[task]]\nid = \"b\"\nrun = \"t\"\n\
             after = [\"a\"]\n[[task]]\nid = \"c\"\nrun = \"t\"\n[[task]]\nid = \"d\"\nrun = \"t\"\n\
             after = [\"r\", \"signal:go\"]\n[[race]]\nid = \"r\"\ntasks = [\"b\", \"c\"]\n",
        )
        .unwrap();
        assert_eq!(p.waves(), vec![vec![0, 2], vec![1], vec![3]]);
        assert_eq!(p.critical_path(), vec![0, 1, 3]);
        // The drawing shows `after` as written: the race (its members beside it) and the
        // signal.
        assert!(p.to_dot().contains("  \"r\" -> \"d\";\n"));
        assert!(p.to_dot().contains("  \"signal:go\" -> \"d\";\n"));
    }

    /// A task after a signal, a race with a task after it, a checkpoint.
    const EVERY_EDGE: &str = include_str!("../../examples/edges.toml");

    #[test]
    fn text_shows_signals_races_and_checkpoints() {
        let p = parse(EVERY_EDGE).unwrap();
        // The signal adds no wave: b is in the wave that a gives it.
        assert_eq!(
            p.describe(),
            "plan edges: 4 tasks, 3 workers, 3 waves\n\
             wave 1: a, c\n\
             wave 2: b\n  b: after a, signal:go\n\
             wave 3: d\n  d: after race r\n\
             race r (pick first): b, c; then d\n\
             checkpoint cp: a, c\n\
             signal go: awaited by b (raised at run time by `worker signal go`; adds no wave)\n\
             critical path: a -> b -> d (3 tasks)\n"
        );
    }

    #[test]
    fn a_dry_run_adds_settings_and_every_command() {
        let p = parse(EVERY_EDGE).unwrap();
        let run = RunSettings {
            sessions_dir: Path::new("/s"),
            launcher: "tmux",
            watch: "poll",
            durable: true,
            excluded: &[],
        };
        assert_eq!(
            p.describe_dry_run(&run),
            "dry run: nothing created, nothing started\n\
             sessions dir: /s\n\
             launcher: tmux, watch: poll, durable: yes\n\
             plan edges: 4 tasks, 3 workers, 3 waves\n\
             wave 1: a, c\n  a: run \"worker checkpoint cp\"\n  c: run \"worker checkpoint cp && worker signal go\"\n\
             wave 2: b\n  b: cmd [\"echo\", \"b\"]; after a, signal:go\n\
             wave 3: d\n  d: run \"true\"; after race r\n\
             race r (pick first): b, c; then d\n\
             checkpoint cp: a, c\n\
             signal go: awaited by b (raised at run time by `worker signal go`; adds no wave)\n\
             critical path: a -> b -> d (3 tasks)\n"
        );
        let v = p.describe_dry_run_json(&run);
        assert_eq!(v["dry_run"], true);
        assert_eq!(v["sessions_dir"], "/s");
        assert_eq!(
            (&v["launcher"], &v["watch"]),
            (&"tmux".into(), &"poll".into())
        );
        assert_eq!(v["durable"], true);
        assert_eq!(
            v["commands"],
            serde_json::json!([
                {"id": "a", "command": {"shell": "worker checkpoint cp"}},
                {"id": "b", "command": {"argv": ["echo", "b"]}},
                {"id": "c", "command": {"shell": "worker checkpoint cp && worker signal go"}},
                {"id": "d", "command": {"shell": "true"}},
            ])
        );
        assert_eq!(v["waves"], p.describe_json()["waves"]);
    }

    #[test]
    fn json_and_dot_show_every_edge() {
        let p = parse(EVERY_EDGE).unwrap();
        assert_eq!(
            p.describe_json(),
            serde_json::json!({
                "name": "edges",
                "workers": 3,
                "tasks": 4,
                "waves": [["a", "c"], ["b"], ["d"]],
                "critical_path": ["a", "b", "d"],
                "edges": [
                    {"from": "a", "to": "b", "kind": "task"},
                    {"from": "signal:go", "to": "b", "kind": "signal"},
                    {"from": "r", "to": "d", "kind": "race"},
                ],
                "races": [{"id": "r", "tasks": ["b", "c"], "pick": "first", "score": null,
                           "awaited_by": ["d"]}],
                "checkpoints": [{"name": "cp", "tasks": ["a", "c"]}],
                "signals": [{"name": "go", "awaited_by": ["b"]}],
            })
        );
        assert_eq!(
            p.to_dot(),
            "digraph \"edges\" {\n  rankdir=LR;\n  \"a\";\n  \"b\";\n  \"c\";\n  \"d\";\n  \
             \"r\" [shape=hexagon, label=\"race r (first)\"];\n  \
             \"signal:go\" [shape=diamond];\n  \
             \"checkpoint:cp\" [shape=box, style=dashed];\n  \
             \"a\" -> \"b\";\n  \"signal:go\" -> \"b\";\n  \"r\" -> \"d\";\n  \
             \"b\" -> \"r\" [style=dashed];\n  \"c\" -> \"r\" [style=dashed];\n  \
             \"a\" -> \"checkpoint:cp\" [dir=none, style=dotted];\n  \
             \"c\" -> \"checkpoint:cp\" [dir=none, style=dotted];\n}\n"
        );
    }

    #[test]
    fn pools_claims_and_the_failure_policy_are_shown() {
        let p = parse(
            "name = \"p\"\non_failure = \"stop\"\n[resources]\ndb = { max = 5, critical = 4 }\n\
             [[task]]\nid = \"a\"\nrun = \"t\"\nresources = { db = 2 }\n\
             [[task]]\nid = \"b\"\nrun = \"t\"\non_failure = \"continue\"\n",
        )
        .unwrap();
        let text = p.describe();
        assert!(
            text.contains("\npool db: max 5, critical 4; claimed by a (2)\non_failure: stop (tasks' own: b continue)\n"),
            "{text}"
        );
        let j = p.describe_json();
        assert_eq!(
            j["resources"],
            serde_json::json!([{"pool": "db", "max": 5, "warn": null, "critical": 4, "claims": {"a": 2}}])
        );
        assert_eq!(j["on_failure"], "stop");
    }

    /// Auxiliary commands, gates that run a check, `cleanup_workers` and the freeze
    /// policy, in text, JSON and Graphviz.
    #[test]
    fn auxiliary_commands_checks_and_freeze_are_shown() {
        let p = parse(
            r#"name = "p"
on_failure = "freeze"
cleanup_workers = 2
[[task]]
id = "a"
run = "t"
cleanup = "rm -rf tmp"
cleanup_delay = "5s"
rollback = "git revert --no-edit HEAD"
[[task]]
id = "b"
run = "t"
after = ["gate:check"]
cleanup = "true"
emergency = "pg_ctl stop"
on_failure = "stop"
[[gate]]
id = "check"
after = ["a"]
run = "make check"
timeout = "1m 30s"
approve = true
[[gate]]
id = "ok"
after = ["a"]
run = "true"
"#,
        )
        .unwrap();
        assert_eq!(
            p.describe(),
            "plan p: 2 tasks, 4 workers, 2 waves
wave 1: a
wave 2: b
  b: after gate:check
\
             gate check (runs \"make check\", at most 1m 30s, then waits for approval): after a; then b\n\
             gate ok (runs \"true\"): after a\n\
             on_failure: freeze (tasks' own: b stop)\n\
             cleanup_workers: 2 (auxiliary commands at once, besides the workers)\n\
             critical path: a -> b (2 tasks)\n\
             cleanup of a: \"rm -rf tmp\" (after 5s, at most 30s)\n\
             rollback of a: \"git revert --no-edit HEAD\"\n\
             cleanup of b: \"true\" (at most 30s)\n\
             emergency of b: \"pg_ctl stop\"\n"
        );
        let j = p.describe_json();
        assert_eq!(j["on_failure"], "freeze");
        assert_eq!(j["on_failure_tasks"], serde_json::json!({"b": "stop"}));
        assert_eq!(j["cleanup_workers"], 2);
        assert_eq!(
            j["auxiliary"],
            serde_json::json!([
                {"id": "a",
                 "cleanup": {"command": "rm -rf tmp", "delay_ms": 5000, "timeout_ms": 30000},
                 "rollback": "git revert --no-edit HEAD", "emergency": null},
                {"id": "b", "cleanup": {"command": "true", "delay_ms": 0, "timeout_ms": 30000},
                 "rollback": null, "emergency": "pg_ctl stop"},
            ])
        );
        assert_eq!(
            j["gates"],
            serde_json::json!([
                {"id": "check", "after": ["a"], "approve": true, "run": "make check",
                 "timeout_ms": 90000, "cwd": "/base"},
                {"id": "ok", "after": ["a"], "approve": false, "run": "true", "cwd": "/base"},
            ])
        );
        let dot = p.to_dot();
        for line in [
            "  \"a\" [label=\"a\\ncleanup, rollback\"];",
            "  \"b\" [label=\"b\\ncleanup, emergency\"];",
            "  \"gate:check\" [shape=octagon, label=\"gate:check\\nrun, approve\"];",
            "  \"gate:ok\" [shape=octagon, label=\"gate:ok\\nrun\"];",
        ] {
            assert!(dot.lines().any(|l| l == line), "{line} not in\n{dot}");
        }
        // A plan without any keeps its description as it was.
        let p = parse(&tasks(&[("a", &[])])).unwrap();
        let j = p.describe_json();
        for key in [
            "on_failure_tasks",
            "cleanup_workers",
            "auxiliary",
            "gates",
            "worktree",
        ] {
            assert!(j.get(key).is_none(), "{key}");
        }
    }

    /// `worktree` from `[defaults]` and a task's own `false`, in text and JSON.
    #[test]
    fn worktree_tasks_are_named() {
        let text = "name = \"p\"\n[defaults]\nworktree = true\n[[task]]\nid = \"a\"\nrun = \"t\"\n\
                    [[task]]\nid = \"b\"\nrun = \"t\"\nworktree = false\n[[task]]\nid = \"c.1\"\n\
                    run = \"t\"\n";
        let p = parse(text).unwrap();
        assert!(p.describe().ends_with(
            "worktree: a, c.1 (each in a git worktree of its own, on branch \
             maestro/<session>/<task> from the repository's HEAD at the session's start)\n"
        ));
        assert_eq!(
            p.describe_json()["worktree"],
            serde_json::json!(["a", "c.1"])
        );
    }

    #[test]
    fn a_best_race_says_its_score() {
        let p = parse(
            "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\n[[task]]\nid = \"b\"\nrun = \"t\"\n\
             [[race]]\nid = \"r\"\ntasks = [\"a\", \"b\"]\npick = \"best\"\nscore = \"/score\"\n",
        )
        .unwrap();
        assert!(
            p.describe()
                .contains("\nrace r (pick best, highest /score): a, b\n"),
            "{}",
            p.describe()
        );
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
}
