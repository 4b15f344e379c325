//! What the session model needs of `plan.json`, read without building the whole
//! [`crate::plan::Plan`]: each task's id, `after`, claims, secrets' names and `worktree`,
//! the races and gates (for waves, and the gates' ids), the pools. Everything else in
//! the file (commands, environments, retries, ...) is skipped as it is parsed, not
//! allocated: a 10 000-task `plan.json` is ~5 MB, and building every task of it took a
//! quarter of a dashboard's first frame. The waves and secrets come from the same
//! functions [`crate::plan::Plan`] uses, so both say the same.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::session::Session;

/// What the plan says that the model needs.
pub(super) struct PlanFacts {
    pub(super) ids: Vec<String>,
    pub(super) secrets: HashMap<String, String>,
    pub(super) pools: BTreeMap<String, crate::plan::Pool>,
    pub(super) gate_ids: Vec<String>,
    pub(super) claims: HashMap<String, BTreeMap<String, u64>>,
    pub(super) worktree: HashSet<String>,
    /// Each task's wave (only for a model that keeps waves).
    pub(super) wave_of: Vec<usize>,
    pub(super) waves: usize,
}

/// `plan.json` as far as the model reads it: the fields are those of
/// [`crate::plan::Plan`], with its defaults; serde skips the others.
#[derive(Deserialize)]
struct PlanFile {
    tasks: Vec<TaskFile>,
    #[serde(default)]
    races: Vec<RaceFile>,
    #[serde(default)]
    resources: BTreeMap<String, crate::plan::Pool>,
    #[serde(default)]
    gates: Vec<GateFile>,
}

/// A task of [`PlanFile`]: the fields of [`crate::plan::Task`] the model reads.
#[derive(Deserialize)]
struct TaskFile {
    id: String,
    after: Vec<String>,
    #[serde(default)]
    env_from_parent: Vec<String>,
    #[serde(default)]
    env_file: Option<PathBuf>,
    #[serde(default)]
    resources: BTreeMap<String, u64>,
    #[serde(default)]
    worktree: bool,
}

#[derive(Deserialize)]
struct RaceFile {
    id: String,
    tasks: Vec<String>,
}

#[derive(Deserialize)]
struct GateFile {
    id: String,
    after: Vec<String>,
}

impl PlanFacts {
    /// Read the session's `plan.json`; `waves`: compute each task's wave too.
    pub(super) fn read(s: &Session, waves: bool) -> Result<PlanFacts> {
        let path = s.plan_json();
        let plan: PlanFile = crate::fsio::read_json_capped(&path, crate::plan::PLAN_CAP)?
            .ok_or_else(|| Error::Session(format!("{}: missing", path.display())))?;
        Ok(PlanFacts::of(plan, waves))
    }

    fn of(plan: PlanFile, waves: bool) -> PlanFacts {
        let (wave_of, n) = if waves {
            let tasks: Vec<(&str, &[String])> = plan
                .tasks
                .iter()
                .map(|t| (t.id.as_str(), t.after.as_slice()))
                .collect();
            let races = plan
                .races
                .iter()
                .map(|r| (r.id.as_str(), r.tasks.as_slice()));
            let gates = plan
                .gates
                .iter()
                .map(|g| (g.id.as_str(), g.after.as_slice()));
            let ws = crate::plan::waves_of(&tasks, races, gates);
            let mut of = vec![0; plan.tasks.len()];
            for (w, tasks) in ws.iter().enumerate() {
                for &t in tasks {
                    of[t] = w;
                }
            }
            (of, ws.len())
        } else {
            (Vec::new(), 0)
        };
        let mut facts = PlanFacts {
            ids: Vec::with_capacity(plan.tasks.len()),
            secrets: HashMap::new(),
            pools: plan.resources,
            gate_ids: plan.gates.into_iter().map(|g| g.id).collect(),
            claims: HashMap::new(),
            worktree: HashSet::new(),
            wave_of,
            waves: n,
        };
        for t in plan.tasks {
            if t.worktree {
                facts.worktree.insert(t.id.clone());
            }
            if !t.resources.is_empty() {
                facts.claims.insert(t.id.clone(), t.resources);
            }
            if let Some(line) = crate::plan::secrets_of(&t.env_from_parent, t.env_file.as_deref()) {
                facts.secrets.insert(t.id.clone(), line);
            }
            facts.ids.push(t.id);
        }
        facts
    }
}

/// `plan.json` being read ([`PlanFacts::read`]) on a thread of its own, or to be read
/// when it is wanted if no thread could start.
pub(super) enum Reading {
    Thread(std::thread::JoinHandle<Result<PlanFacts>>),
    Here(Session, bool),
}

impl Reading {
    pub(super) fn start(s: &Session, waves: bool) -> Reading {
        let session = s.clone();
        let thread = std::thread::Builder::new()
            .name("plan.json".into())
            .spawn(move || PlanFacts::read(&session, waves));
        match thread {
            Ok(h) => Reading::Thread(h),
            Err(_) => Reading::Here(s.clone(), waves),
        }
    }

    /// The facts, once read.
    pub(super) fn finish(self) -> Result<PlanFacts> {
        match self {
            Reading::Thread(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            Reading::Here(s, waves) => PlanFacts::read(&s, waves),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsio;

    /// Every field the model reads, in a plan that has races, gates, pools, claims,
    /// secrets and worktrees: read from `plan.json` alone, the facts are those of the
    /// whole [`crate::plan::Plan`].
    #[test]
    fn the_facts_are_those_of_the_whole_plan() {
        let d = tempfile::tempdir().unwrap();
        let env = d.path().join("secret.env");
        std::fs::write(&env, "TOKEN=x\n").unwrap();
        let toml = format!(
            r#"
name = "f"
[resources.db]
max = 4
warn = 2
[[task]]
id = "a"
run = "true"
resources = {{ db = 2 }}
env_from_parent = ["HOME"]
[[task]]
id = "b"
run = "true"
env_file = "{}"
[[task]]
id = "c"
run = "true"
after = ["a"]
[[task]]
id = "d"
run = "true"
after = ["a"]
[[race]]
id = "r"
tasks = ["c", "d"]
pick = "first"
[[task]]
id = "f"
run = "true"
after = ["r"]
[[gate]]
id = "g"
after = ["f"]
approve = true
[[task]]
id = "e"
run = "true"
after = ["gate:g", "b"]
worktree = true
"#,
            env.display()
        );
        let plan = crate::plan::Plan::parse("f.toml", &toml, d.path()).unwrap();
        let s = Session::create(d.path(), "f").unwrap();
        fsio::write_json(&s.plan_json(), &plan).unwrap();
        let f = PlanFacts::read(&s, true).unwrap();
        let ids: Vec<&str> = plan.tasks.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(f.ids, ids);
        let waves = plan.waves();
        assert!(waves.len() >= 4, "{waves:?}");
        assert_eq!(f.waves, waves.len());
        for (w, tasks) in waves.iter().enumerate() {
            for &t in tasks {
                assert_eq!(f.wave_of[t], w, "task {}", plan.tasks[t].id);
            }
        }
        for t in &plan.tasks {
            assert_eq!(f.secrets.get(&t.id).cloned(), t.secrets(), "{}", t.id);
            assert_eq!(f.worktree.contains(&t.id), t.worktree, "{}", t.id);
            let claims = f.claims.get(&t.id).cloned().unwrap_or_default();
            assert_eq!(claims, t.resources, "{}", t.id);
        }
        assert!(f.secrets["a"].contains("HOME=<from the caller>"));
        assert!(f.secrets["b"].contains("TOKEN=<from"));
        assert_eq!(f.pools, plan.resources);
        assert_eq!(f.gate_ids, ["g"]);
        assert!(PlanFacts::read(&s, false).unwrap().wave_of.is_empty());
    }

    /// A missing or torn `plan.json` is an error naming it.
    #[test]
    fn a_missing_or_torn_plan_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let s = Session::create(d.path(), "f").unwrap();
        let e = PlanFacts::read(&s, true).err().unwrap().to_string();
        assert!(e.contains("plan.json: missing"), "{e}");
        std::fs::write(s.plan_json(), "{\"tasks\": [").unwrap();
        let e = PlanFacts::read(&s, true).err().unwrap().to_string();
        assert!(e.contains("plan.json"), "{e}");
    }
}
