//! What the report makes of tasks' results. A result (the JSON object a task writes to
//! `$MAESTRO_RESULT`) may follow three conventions:
//!
//! - `metrics`: an object of numbers. Summed per key over the accepted results of the
//!   tasks that succeeded (`metrics`, what the session delivered) and over every result
//!   any attempt left (`metrics_spent`: failed attempts that were retried, attempts taken
//!   away, race losers: what was really spent).
//! - `insights`: an array of strings, merged without duplicates in the order first
//!   reported, each with the tasks that reported it.
//! - `decisions`: an object; a key that tasks reported with different values is flagged.
//!
//! Only the accepted results of tasks that succeeded give insights and decisions: a
//! failed attempt's choices were not kept. Whatever does not follow a convention (a
//! metric that is not a number, an insight that is not a string) is listed as ignored,
//! never an error. Every collection is bounded (see the constants), so a result with a
//! million keys, or a hundred thousand tasks with distinct insights, cannot make the
//! report unreadable: what is left out is counted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};

use serde_json::{Map, Value};

use super::decimal::Sum;
use super::model::{DecisionConflict, Ignored, Insight, TaskValue};
use crate::summary::cut_text;

/// The most metric keys summed (each sum: metrics and spent).
pub const METRIC_KEYS_MAX: usize = 1000;
/// The longest metric or decision key taken, in bytes.
pub const KEY_MAX: usize = 256;
/// The most distinct insights listed.
pub const INSIGHTS_MAX: usize = 500;
/// An insight longer than this (bytes) is cut.
pub const INSIGHT_MAX: usize = 1024;
/// The most tasks named beside an insight.
pub const TASKS_LISTED: usize = 10;
/// The most decision keys kept, and distinct values kept per key.
pub const DECISION_KEYS_MAX: usize = 200;
pub const DECISION_VALUES_MAX: usize = 20;
/// The most tasks named for each value of a conflicting decision, and the most (task,
/// value) pairs listed for one key.
pub const CONFLICT_TASKS_LISTED: usize = 3;
pub const CONFLICT_LISTED: usize = 10;
/// A decision value larger than this as compact JSON is shown cut, as a string.
pub const VALUE_SHOWN_MAX: usize = 1024;
/// The most ignored entries listed, and the length of the value shown for each.
pub const IGNORED_MAX: usize = 100;
pub const IGNORED_VALUE_MAX: usize = 200;

/// Sums by key, at most [`METRIC_KEYS_MAX`] keys.
#[derive(Debug, Default)]
struct Sums(BTreeMap<String, Sum>);

impl Sums {
    /// False when the key is new and there are already as many keys as are kept.
    fn add(&mut self, key: &str, n: &serde_json::Number) -> bool {
        if let Some(s) = self.0.get_mut(key) {
            s.add(n);
            return true;
        }
        if self.0.len() >= METRIC_KEYS_MAX {
            return false;
        }
        self.0.entry(key.to_string()).or_default().add(n);
        true
    }

    fn values(&self) -> BTreeMap<String, Value> {
        self.0.iter().map(|(k, s)| (k.clone(), s.value())).collect()
    }
}

/// One value reported for a decision key.
#[derive(Debug)]
struct Choice {
    /// Of the value's compact JSON: values are told apart by it without keeping large
    /// ones whole.
    hash: u64,
    value: Value,
    tasks: Vec<String>,
    count: usize,
}

/// The entries skipped, at most [`IGNORED_MAX`] listed.
#[derive(Debug, Default)]
struct IgnoredList {
    list: Vec<Ignored>,
    omitted: usize,
}

impl IgnoredList {
    fn push(&mut self, task: &str, attempt: u32, what: String, v: &Value, why: &str) {
        if self.list.len() >= IGNORED_MAX {
            self.omitted += 1;
            return;
        }
        self.list.push(Ignored {
            task: task.to_string(),
            attempt,
            what,
            value: cut_text(compact(v), IGNORED_VALUE_MAX),
            why: why.to_string(),
        });
    }
}

/// Distinct insights in the order first reported, at most [`INSIGHTS_MAX`].
#[derive(Debug, Default)]
struct Insights {
    list: Vec<Insight>,
    index: HashMap<String, usize>,
    omitted: usize,
}

/// Each decision key's distinct values.
#[derive(Debug, Default)]
struct Decisions {
    keys: BTreeMap<String, Vec<Choice>>,
    omitted: usize,
}

/// The result aggregation, fed one attempt's result at a time.
#[derive(Debug, Default)]
pub struct Aggregate {
    metrics: Sums,
    spent: Sums,
    ignored: IgnoredList,
    insights: Insights,
    decisions: Decisions,
}

/// What [`Aggregate::finish`] gives the report.
#[derive(Debug, Default, PartialEq)]
pub struct Aggregated {
    pub metrics: BTreeMap<String, Value>,
    pub metrics_spent: BTreeMap<String, Value>,
    pub ignored: Vec<Ignored>,
    pub ignored_omitted: usize,
    pub insights: Vec<Insight>,
    pub insights_omitted: usize,
    pub decisions: BTreeMap<String, Value>,
    pub decision_conflicts: Vec<DecisionConflict>,
    pub decisions_omitted: usize,
}

fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn hash_of(text: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

impl Aggregate {
    /// Take the result `task`'s attempt `attempt` left. `accepted`: it is the accepted
    /// result of a task that succeeded (it counts in `metrics`, and its insights and
    /// decisions are taken); every result counts in `metrics_spent`.
    pub fn add(&mut self, task: &str, attempt: u32, result: &Value, accepted: bool) {
        let ignored = &mut self.ignored;
        let mut ignore =
            |what: String, v: &Value, why: &str| ignored.push(task, attempt, what, v, why);
        match result.get("metrics") {
            None => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    let what = || format!("metrics.{}", cut_text(k.clone(), KEY_MAX));
                    let Value::Number(n) = v else {
                        ignore(what(), v, "not a number");
                        continue;
                    };
                    if k.len() > KEY_MAX {
                        ignore(what(), v, "key too long");
                        continue;
                    }
                    let kept = self.spent.add(k, n) & (!accepted || self.metrics.add(k, n));
                    if !kept {
                        ignore(what(), v, "too many metric keys");
                    }
                }
            }
            Some(v) => ignore("metrics".into(), v, "not an object"),
        }
        if !accepted {
            return;
        }
        match result.get("insights") {
            None => {}
            Some(Value::Array(items)) => {
                let mut seen = HashSet::new();
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => {
                            let text = cut_text(s.clone(), INSIGHT_MAX);
                            if seen.insert(text.clone()) {
                                self.insights.add(text, task);
                            }
                        }
                        v => ignore(format!("insights[{i}]"), v, "not a string"),
                    }
                }
            }
            Some(v) => ignore("insights".into(), v, "not an array of strings"),
        }
        match result.get("decisions") {
            None => {}
            Some(Value::Object(m)) => self.decisions.add(task, m, &mut ignore),
            Some(v) => ignore("decisions".into(), v, "not an object"),
        }
    }

    pub fn finish(self) -> Aggregated {
        let decisions_omitted = self.decisions.omitted;
        let (decisions, decision_conflicts) = self.decisions.split();
        Aggregated {
            metrics: self.metrics.values(),
            metrics_spent: self.spent.values(),
            ignored: self.ignored.list,
            ignored_omitted: self.ignored.omitted,
            insights: self.insights.list,
            insights_omitted: self.insights.omitted,
            decisions,
            decision_conflicts,
            decisions_omitted,
        }
    }
}

impl Insights {
    fn add(&mut self, text: String, task: &str) {
        if let Some(&i) = self.index.get(&text) {
            let found = &mut self.list[i];
            found.reported_by += 1;
            if found.tasks.len() < TASKS_LISTED {
                found.tasks.push(task.to_string());
            }
            return;
        }
        if self.list.len() >= INSIGHTS_MAX {
            self.omitted += 1;
            return;
        }
        self.index.insert(text.clone(), self.list.len());
        self.list.push(Insight {
            insight: text,
            tasks: vec![task.to_string()],
            reported_by: 1,
        });
    }
}

impl Decisions {
    fn add(
        &mut self,
        task: &str,
        m: &Map<String, Value>,
        ignore: &mut impl FnMut(String, &Value, &str),
    ) {
        for (k, v) in m {
            if k.len() > KEY_MAX {
                ignore(
                    format!("decisions.{}", cut_text(k.clone(), KEY_MAX)),
                    v,
                    "key too long",
                );
                continue;
            }
            if !self.keys.contains_key(k) && self.keys.len() >= DECISION_KEYS_MAX {
                self.omitted += 1;
                continue;
            }
            let choices = self.keys.entry(k.clone()).or_default();
            let text = compact(v);
            let hash = hash_of(&text);
            if let Some(c) = choices.iter_mut().find(|c| c.hash == hash) {
                c.count += 1;
                if c.tasks.len() < CONFLICT_TASKS_LISTED {
                    c.tasks.push(task.to_string());
                }
                continue;
            }
            if choices.len() >= DECISION_VALUES_MAX {
                self.omitted += 1;
                continue;
            }
            let value = if text.len() > VALUE_SHOWN_MAX {
                Value::String(cut_text(text, VALUE_SHOWN_MAX))
            } else {
                v.clone()
            };
            choices.push(Choice {
                hash,
                value,
                tasks: vec![task.to_string()],
                count: 1,
            });
        }
    }

    /// The keys every reporter agrees on, with their value; the others, flagged.
    fn split(self) -> (BTreeMap<String, Value>, Vec<DecisionConflict>) {
        let mut decisions = BTreeMap::new();
        let mut decision_conflicts = Vec::new();
        for (key, mut choices) in self.keys {
            if choices.len() == 1 {
                decisions.insert(key, choices.remove(0).value);
                continue;
            }
            let mut values = Vec::new();
            let mut omitted = 0;
            for c in choices {
                let room = CONFLICT_LISTED - values.len();
                omitted += c.count - c.tasks.len().min(room);
                values.extend(c.tasks.into_iter().take(room).map(|task| TaskValue {
                    task,
                    value: c.value.clone(),
                }));
            }
            decision_conflicts.push(DecisionConflict {
                key,
                values,
                omitted,
            });
        }
        (decisions, decision_conflicts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn accepted_metrics_sum_once_and_every_attempt_counts_as_spent() {
        let mut a = Aggregate::default();
        let r = json!({"metrics": {"rows": 10, "cost_usd": 0.25}});
        for t in ["a", "b", "c"] {
            a.add(t, 1, &r, true);
        }
        // `b` failed a first attempt after reporting, and a race loser reported too.
        a.add("b", 1, &r, false);
        a.add("loser", 1, &r, false);
        let out = a.finish();
        assert_eq!(
            serde_json::to_string(&out.metrics).unwrap(),
            r#"{"cost_usd":0.75,"rows":30}"#
        );
        assert_eq!(
            serde_json::to_string(&out.metrics_spent).unwrap(),
            r#"{"cost_usd":1.25,"rows":50}"#
        );
        assert!(out.ignored.is_empty());
    }

    #[test]
    fn what_does_not_follow_the_conventions_is_listed_as_ignored() {
        let mut a = Aggregate::default();
        a.add(
            "a",
            2,
            &json!({"metrics": {"rows": "ten", "ok": 1, "n": null},
                    "insights": ["x", 3], "decisions": [1]}),
            true,
        );
        a.add("b", 1, &json!({"metrics": [1], "insights": "y"}), true);
        a.add(
            "c",
            1,
            &json!({"metrics": {"rows": true}, "insights": 5}),
            false,
        );
        let out = a.finish();
        let got: Vec<(&str, u32, &str, &str, &str)> = out
            .ignored
            .iter()
            .map(|i| (&*i.task, i.attempt, &*i.what, &*i.value, &*i.why))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", 2, "metrics.n", "null", "not a number"),
                ("a", 2, "metrics.rows", "\"ten\"", "not a number"),
                ("a", 2, "insights[1]", "3", "not a string"),
                ("a", 2, "decisions", "[1]", "not an object"),
                ("b", 1, "metrics", "[1]", "not an object"),
                ("b", 1, "insights", "\"y\"", "not an array of strings"),
                ("c", 1, "metrics.rows", "true", "not a number"),
            ]
        );
        assert_eq!(out.metrics, BTreeMap::from([("ok".into(), json!(1))]));
        assert_eq!(out.insights.len(), 1);
    }

    #[test]
    fn insights_merge_in_first_seen_order_with_their_tasks() {
        let mut a = Aggregate::default();
        a.add(
            "a",
            1,
            &json!({"insights": ["slow disk", "cache cold", "slow disk"]}),
            true,
        );
        a.add(
            "b",
            1,
            &json!({"insights": ["cache cold", "retry helps"]}),
            true,
        );
        a.add("c", 1, &json!({"insights": ["never kept"]}), false);
        let out = a.finish();
        let got: Vec<(&str, Vec<&str>, usize)> = out
            .insights
            .iter()
            .map(|i| {
                let tasks = i.tasks.iter().map(String::as_str).collect();
                (i.insight.as_str(), tasks, i.reported_by)
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("slow disk", vec!["a"], 1),
                ("cache cold", vec!["a", "b"], 2),
                ("retry helps", vec!["b"], 1),
            ]
        );
    }

    #[test]
    fn decisions_that_agree_merge_and_a_collision_is_flagged_with_each_task() {
        let mut a = Aggregate::default();
        a.add(
            "a",
            1,
            &json!({"decisions": {"db": "postgres", "pool": 10}}),
            true,
        );
        a.add(
            "b",
            1,
            &json!({"decisions": {"db": "postgres", "pool": 20}}),
            true,
        );
        a.add(
            "c",
            1,
            &json!({"decisions": {"pool": 10, "cache": {"on": true}}}),
            true,
        );
        let out = a.finish();
        assert_eq!(
            out.decisions,
            BTreeMap::from([
                ("cache".into(), json!({"on": true})),
                ("db".into(), json!("postgres")),
            ])
        );
        assert_eq!(
            out.decision_conflicts,
            vec![DecisionConflict {
                key: "pool".into(),
                values: vec![
                    TaskValue {
                        task: "a".into(),
                        value: json!(10)
                    },
                    TaskValue {
                        task: "c".into(),
                        value: json!(10)
                    },
                    TaskValue {
                        task: "b".into(),
                        value: json!(20)
                    },
                ],
                omitted: 0,
            }]
        );
    }

    #[test]
    fn every_collection_is_bounded_and_counts_what_it_left_out() {
        let mut a = Aggregate::default();
        let mut metrics = Map::new();
        for k in 0..METRIC_KEYS_MAX + 3 {
            metrics.insert(format!("k{k:05}"), json!(1));
        }
        metrics.insert("x".repeat(KEY_MAX + 1), json!(1));
        a.add("a", 1, &json!({"metrics": metrics}), true);
        for t in 0..INSIGHTS_MAX + 2 {
            a.add(
                &format!("t{t}"),
                1,
                &json!({"insights": [format!("i{t}"), "common"]}),
                true,
            );
        }
        a.add(
            "big",
            1,
            &json!({"insights": ["é".repeat(INSIGHT_MAX)]}),
            true,
        );
        let out = a.finish();
        assert_eq!(out.metrics.len(), METRIC_KEYS_MAX);
        assert_eq!(out.ignored.len(), 4, "{:?}", out.ignored);
        assert_eq!(out.insights.len(), INSIGHTS_MAX);
        assert_eq!(out.insights_omitted, 3 + 1);
        let common = out.insights.iter().find(|i| i.insight == "common").unwrap();
        assert_eq!(common.reported_by, INSIGHTS_MAX + 2);
        assert_eq!(common.tasks.len(), TASKS_LISTED);
    }

    proptest! {
        /// For integer metrics, each sum is exactly the per-key sum of the inputs.
        #[test]
        fn integer_metrics_sum_exactly(
            results in proptest::collection::vec(
                proptest::collection::btree_map("[a-e]", -1_000_000_000_000i64..1_000_000_000_000, 0..5),
                0..40,
            )
        ) {
            let mut a = Aggregate::default();
            let mut want: BTreeMap<String, i64> = BTreeMap::new();
            for (i, m) in results.iter().enumerate() {
                a.add(&format!("t{i}"), 1, &json!({"metrics": m}), true);
                for (k, v) in m {
                    *want.entry(k.clone()).or_default() += v;
                }
            }
            let out = a.finish();
            let want: BTreeMap<String, Value> =
                want.into_iter().map(|(k, v)| (k, json!(v))).collect();
            prop_assert_eq!(&out.metrics, &want);
            prop_assert_eq!(&out.metrics_spent, &want);
        }

        /// Amounts in cents sum to the decimal a person would write.
        #[test]
        fn cent_amounts_sum_to_their_decimal(cents in proptest::collection::vec(0i64..100_000, 1..30)) {
            let mut a = Aggregate::default();
            for (i, c) in cents.iter().enumerate() {
                let text = format!("{{\"metrics\": {{\"usd\": {}.{:02}}}}}", c / 100, c % 100);
                a.add(&format!("t{i}"), 1, &serde_json::from_str(&text).unwrap(), true);
            }
            let total: i64 = cents.iter().sum();
            let want = match (total / 100, total % 100) {
                (units, 0) => units.to_string(),
                (units, c) if c % 10 == 0 => format!("{units}.{}", c / 10),
                (units, c) => format!("{units}.{c:02}"),
            };
            prop_assert_eq!(a.finish().metrics["usd"].to_string(), want);
        }
    }
}
