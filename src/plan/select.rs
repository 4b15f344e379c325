//! Partial runs (`orchestrator run --only ID... --skip ID...`): which tasks of a plan
//! are left out, and why. `--only` keeps the named tasks and everything they depend on,
//! transitively (a race stands for its members, a gate for the tasks of its `after`, as
//! in [`Plan::dep_indices`]); `--skip` treats the named tasks as done without running
//! them. A task both kept by `--only` and named by `--skip` is skipped.

use super::Plan;

/// Why a task is left out of a partial run. Not a failure: an excluded task counts as
/// satisfied for what depends on it, and does not make the session fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exclusion {
    /// Named by `--skip`.
    Skipped,
    /// Not named by `--only`, nor a dependency of a task it names.
    NotSelected,
}

impl Exclusion {
    /// The reason written into the task's outcome and the journal.
    pub fn reason(self) -> &'static str {
        match self {
            Exclusion::Skipped => "skipped by request (--skip)",
            Exclusion::NotSelected => "not selected (--only)",
        }
    }

    /// A short form, for the dry run's `excluded:` line.
    pub fn label(self) -> &'static str {
        match self {
            Exclusion::Skipped => "skipped by request",
            Exclusion::NotSelected => "not selected",
        }
    }
}

impl Plan {
    /// For each task (by index), whether `--only ONLY` and `--skip SKIP` leave it out.
    /// Empty `only` selects every task. An id that names no task is refused, with the
    /// flag and the id, before anything is decided.
    pub fn exclusions(
        &self,
        only: &[String],
        skip: &[String],
    ) -> Result<Vec<Option<Exclusion>>, String> {
        let index = self.task_index();
        let find = |flag: &str, id: &String| {
            index
                .get(id.as_str())
                .copied()
                .ok_or_else(|| format!("{flag}: the plan has no task {id:?}"))
        };
        let only: Vec<usize> = only
            .iter()
            .map(|id| find("--only", id))
            .collect::<Result<_, _>>()?;
        let skip: Vec<usize> = skip
            .iter()
            .map(|id| find("--skip", id))
            .collect::<Result<_, _>>()?;
        let n = self.tasks.len();
        let mut out = vec![None; n];
        if !only.is_empty() {
            let deps = self.dep_indices();
            let mut kept = vec![false; n];
            let mut stack = only;
            while let Some(t) = stack.pop() {
                if !std::mem::replace(&mut kept[t], true) {
                    stack.extend(deps[t].iter().copied());
                }
            }
            for (t, k) in kept.into_iter().enumerate() {
                if !k {
                    out[t] = Some(Exclusion::NotSelected);
                }
            }
        }
        for t in skip {
            out[t] = Some(Exclusion::Skipped);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::Exclusion::{NotSelected, Skipped};
    use crate::plan::test_util::{parse, tasks};

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// a; b after a; c alone; d after b.
    fn chain() -> crate::plan::Plan {
        parse(&tasks(&[
            ("a", &[]),
            ("b", &["a"]),
            ("c", &[]),
            ("d", &["b"]),
        ]))
        .unwrap()
    }

    #[test]
    fn only_keeps_the_transitive_dependencies() {
        let p = chain();
        let ex = p.exclusions(&ids(&["b"]), &[]).unwrap();
        assert_eq!(ex, vec![None, None, Some(NotSelected), Some(NotSelected)]);
        assert_eq!(p.exclusions(&[], &[]).unwrap(), vec![None; 4]);
    }

    #[test]
    fn skip_wins_over_only() {
        let p = chain();
        let ex = p.exclusions(&ids(&["d"]), &ids(&["a"])).unwrap();
        assert_eq!(ex, vec![Some(Skipped), None, Some(NotSelected), None]);
    }

    #[test]
    fn unknown_ids_are_refused_by_flag() {
        let p = chain();
        assert_eq!(
            p.exclusions(&ids(&["x"]), &[]).unwrap_err(),
            "--only: the plan has no task \"x\""
        );
        assert_eq!(
            p.exclusions(&[], &ids(&["a", "y"])).unwrap_err(),
            "--skip: the plan has no task \"y\""
        );
    }

    #[test]
    fn a_race_and_a_gate_stand_for_their_tasks() {
        let mut text = tasks(&[
            ("a", &[]),
            ("r1", &["a"]),
            ("r2", &[]),
            ("g1", &[]),
            ("z", &["r", "gate:ok"]),
            ("other", &[]),
        ]);
        text.push_str(
            "[[race]]\nid = \"r\"\ntasks = [\"r1\", \"r2\"]\n\
             [[gate]]\nid = \"ok\"\nafter = [\"g1\"]\napprove = true\n",
        );
        let p = parse(&text).unwrap();
        let ex = p.exclusions(&ids(&["z"]), &[]).unwrap();
        assert_eq!(ex, vec![None, None, None, None, None, Some(NotSelected)]);
    }
}
