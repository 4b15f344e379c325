//! What `orchestrator plan` shows of a plan without running it: its waves (tasks grouped by
//! dependency depth), its critical path, as text, JSON or Graphviz. All of it is drawn
//! from the task graph, where a race stands for its members. The text also lists what
//! each task owns (its write scopes) and where its secrets come from.

use super::Plan;

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
    /// earliest in the plan.
    pub fn critical_path(&self) -> Vec<usize> {
        let g = self.task_graph();
        let path = g.critical_path().into_iter();
        path.filter_map(|n| g.task_of(n)).collect()
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
            s.push_str(&format!("wave {}: {}\n", k + 1, self.ids(w).join(", ")));
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
        for t in &self.tasks {
            if let Some(line) = t.secrets() {
                s.push_str(&format!("secrets of {}: {line}\n", t.id));
            }
        }
        s
    }

    /// `orchestrator plan --json`.
    pub fn describe_json(&self) -> serde_json::Value {
        let waves: Vec<Vec<&str>> = self.waves().iter().map(|w| self.ids(w)).collect();
        serde_json::json!({
            "name": self.name,
            "workers": self.workers,
            "tasks": self.tasks.len(),
            "waves": waves,
            "critical_path": self.ids(&self.critical_path()),
        })
    }

    /// The ids of tasks given by index.
    fn ids(&self, tasks: &[usize]) -> Vec<&str> {
        tasks.iter().map(|&i| self.tasks[i].id.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{parse, tasks};

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
        // The drawing shows `after` as written: the race and no signal.
        assert!(p.to_dot().contains("  \"r\" -> \"d\";\n"));
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
