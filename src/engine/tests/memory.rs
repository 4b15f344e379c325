//! Memory: a task's `memory` claims the plan's `[limits] memory` budget like a pool's
//! tokens; `min_free_memory` holds new starts while the machine's available memory is
//! lower, journalled when it starts and stops; a resumed engine stays held until the
//! shell's next look.

use super::*;

const GIB: u64 = 1 << 30;

fn plan_with(limits: &str, claims: [&str; 3]) -> String {
    let mut s = format!("name = \"p\"\n[limits]\n{limits}");
    for (id, m) in ["a", "b", "c"].into_iter().zip(claims) {
        let keys = if m.is_empty() {
            String::new()
        } else {
            format!("memory = \"{m}\"\n")
        };
        s += &task_toml(id, &[], &keys);
    }
    s
}

fn sim(text: &str, workers: usize) -> Sim {
    let mut s = Sim::with(text, Config::new(workers, LONG));
    s.start();
    s
}

fn held(c: &[Command]) -> Vec<String> {
    c.iter()
        .filter_map(|c| match c {
            Command::Journal(Event::StartsHeld { available, needed }) => {
                Some(format!("held {available} < {needed}"))
            }
            Command::Journal(Event::StartsResumed { available }) => {
                Some(format!("resumed {available}"))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn memory_claims_count_against_the_budget() {
    let mut s = sim(
        &plan_with("memory = \"3GiB\"\n", ["2GiB", "2GiB", "1GiB"]),
        3,
    );
    let mut a = Vec::new();
    for w in ["w1", "w2", "w3"] {
        a.extend(s.register(w).assigns());
    }
    assert_eq!(
        a,
        [assigned("w1", "a", 1), assigned("w2", "c", 1)],
        "b's 2GiB do not fit beside a's 2GiB in 3GiB; c's 1GiB does"
    );
    s.begin("w1", "a", 1);
    assert_eq!(
        s.exit("w1", "a", 1, 0).assigns().len(),
        1,
        "a's 2GiB are back"
    );
    assert_eq!(s.holder("b"), "w1");
}

#[test]
fn low_free_memory_holds_new_starts_until_there_is_enough() {
    let mut s = sim(&plan_with("min_free_memory = \"1GiB\"\n", ["", "", ""]), 1);
    let c = s.on(Fact::Memory { available: GIB / 2 });
    assert_eq!(held(&c), [format!("held {} < {GIB}", GIB / 2)]);
    let c = s.register("w1");
    assert!(c.assigns().is_empty(), "nothing starts while memory is low");
    let c = s.on(Fact::Memory { available: GIB / 4 });
    assert!(held(&c).is_empty(), "journalled once");
    let c = s.on(Fact::Memory { available: 2 * GIB });
    assert_eq!(held(&c), [format!("resumed {}", 2 * GIB)]);
    assert_eq!(c.assigns(), [assigned("w1", "a", 1)]);
}

#[test]
fn a_resumed_engine_stays_held_until_the_next_look() {
    let mut s = sim(&plan_with("min_free_memory = \"1GiB\"\n", ["", "", ""]), 1);
    s.on(Fact::Memory { available: 1 });
    s.register("w1");
    let (mut r, c) = s.resume(Found {
        workers: vec![found_worker("w1", true)],
        exits: Vec::new(),
        outcomes: Vec::new(),
    });
    assert!(c.assigns().is_empty());
    let c = r.on(Fact::Memory { available: 2 * GIB });
    assert_eq!(c.assigns(), [assigned("w1", "a", 1)]);
}
