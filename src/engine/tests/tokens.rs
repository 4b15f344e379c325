//! The rules of `engine/tokens.rs`: a task starts only when its claims fit under each
//! pool's `max`, and not while a pool it claims from is at `critical`; tokens are held
//! by what workers run and are released with the attempt or its dead worker; a resumed
//! engine counts the tokens of the attempts it adopts; level changes are journalled.

use super::*;
use crate::plan::Level;

/// Tasks `a`, `b`, `c` (no dependencies), each with its `resources` line (or none), and
/// the pool `db` as given.
fn pooled(claims: [&str; 3], pool: &str) -> String {
    let mut s = String::from("name = \"p\"\n");
    for (id, claim) in ["a", "b", "c"].into_iter().zip(claims) {
        let keys = if claim.is_empty() {
            String::new()
        } else {
            format!("resources = {{ db = {claim} }}\n")
        };
        s += &task_toml(id, &[], &keys);
    }
    s + &format!("[resources]\ndb = {pool}\n")
}

fn sim(text: &str, workers: usize) -> Sim {
    let mut s = Sim::with(text, Config::new(workers, LONG));
    s.start();
    s
}

type Assigned = Vec<(String, String, u32)>;

/// Register each of `workers`: what was assigned, and the levels journalled, in order.
fn register(s: &mut Sim, workers: &[&str]) -> (Assigned, Vec<(Level, u64)>) {
    let (mut a, mut l) = (Vec::new(), Vec::new());
    for w in workers {
        let c = s.register(w);
        a.extend(c.assigns());
        l.extend(levels(&c));
    }
    (a, l)
}

impl Sim {
    /// The attempt of `task` that holds its fence, if one does.
    fn runs_task(&self, task: &str) -> Option<u32> {
        self.e.fence(self.ix(task)).map(|(a, _)| a)
    }
}

fn levels(cmds: &[Command]) -> Vec<(crate::plan::Level, u64)> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Journal(Event::ResourceLevel { level, used, .. }) => Some((*level, *used)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_task_whose_claim_does_not_fit_waits_while_a_smaller_one_starts() {
    let mut s = sim(&pooled(["2", "2", "1"], "{ max = 3 }"), 3);
    let (a, _) = register(&mut s, &["w1", "w2", "w3"]);
    assert_eq!(
        a,
        [assigned("w1", "a", 1), assigned("w2", "c", 1)],
        "b's 2 tokens do not fit beside a's 2 under 3; c's 1 does"
    );
    assert_eq!(s.e.tokens_out()["db"], 3);
    s.begin("w1", "a", 1);
    s.begin("w2", "c", 1);
    assert!(
        s.exit("w2", "c", 1, 0).assigns().is_empty(),
        "1 free token: b needs 2"
    );
    assert_eq!(s.exit("w1", "a", 1, 0).assigns().len(), 1, "a's 2 are back");
    assert_eq!(s.runs_task("b"), Some(1));
}

#[test]
fn at_critical_only_tasks_that_claim_nothing_from_the_pool_start() {
    let mut s = sim(&pooled(["2", "1", ""], "{ max = 10, critical = 2 }"), 3);
    let (a, l) = register(&mut s, &["w1", "w2", "w3"]);
    assert_eq!(
        a,
        [assigned("w1", "a", 1), assigned("w2", "c", 1)],
        "with a's 2 out the pool is at critical: b (1 of 10) waits, c claims nothing"
    );
    assert_eq!(l, [(Level::Critical, 2)]);
    s.begin("w1", "a", 1);
    let c = s.exit("w1", "a", 1, 0);
    assert_eq!(
        levels(&c),
        [(Level::Normal, 1)],
        "b took 1 of a's 2 at once"
    );
    assert_eq!(c.assigns().len(), 1);
    assert_eq!(s.runs_task("b"), Some(1));
}

#[test]
fn crossing_warn_is_journalled_up_and_down() {
    let mut s = sim(&pooled(["1", "1", ""], "{ max = 5, warn = 2 }"), 2);
    let c = s.register("w1");
    assert!(levels(&c).is_empty(), "1 of 5 is below warn");
    let c = s.register("w2");
    assert_eq!(levels(&c), [(Level::Warn, 2)]);
    s.begin("w1", "a", 1);
    let c = s.exit("w1", "a", 1, 0);
    // c (no claim) took w1's place: 1 token out, below warn again.
    assert_eq!(levels(&c), [(Level::Normal, 1)]);
}

#[test]
fn a_dead_workers_tokens_are_released_with_it() {
    let mut s = sim(&pooled(["3", "3", "3"], "{ max = 3 }"), 2);
    s.register("w1");
    s.register("w2");
    assert_eq!(s.runs_task("a"), Some(1));
    assert_eq!(s.runs("w2"), None, "a holds all 3 tokens");
    s.begin("w1", "a", 1);
    s.died("w1");
    assert_eq!(
        s.e.tokens_out()["db"],
        3,
        "a's second attempt holds them now"
    );
    assert_eq!(
        s.holder("a"),
        "w2",
        "the dead worker's 3 tokens went back to the pool"
    );
}

#[test]
fn a_resumed_engine_counts_the_tokens_of_the_attempts_it_adopts() {
    let mut s = sim(&pooled(["2", "2", ""], "{ max = 3, warn = 2 }"), 2);
    s.register("w1");
    s.begin("w1", "a", 1);
    let (mut r, c) = s.resume(Found {
        workers: vec![found_running_a("w1", 1, true)],
        exits: Vec::new(),
        outcomes: Vec::new(),
    });
    assert!(
        levels(&c).is_empty(),
        "warn was journalled before the crash"
    );
    assert_eq!(r.e.tokens_out()["db"], 2);
    let spawned = spawns(&c);
    let spawned: Vec<&str> = spawned.iter().map(String::as_str).collect();
    let (a, _) = register(&mut r, &spawned);
    assert!(
        a.iter().all(|(_, t, _)| t != "b"),
        "b's 2 do not fit beside the adopted a's 2: {a:?}"
    );
    assert_eq!(r.runs_task("b"), None);
}
