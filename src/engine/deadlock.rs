//! The lock deadlock rule, pure: from holders and waiters of the named locks (as the
//! shell read them), find a cycle in the wait-for graph and choose whose wait fails. The
//! engine confirms a cycle before acting on it; `orchestrator locks` shows the same view.

use std::collections::BTreeMap;

/// A live holder or waiter of a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    pub task: String,
    pub shared: bool,
    pub since_unix_ms: u64,
}

/// Holders and waiters of one lock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockView {
    pub holders: Vec<Party>,
    pub waiters: Vec<Party>,
}

/// A deadlock to break: who gives up which wait, and the cycle in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadlock {
    pub victim: String,
    pub lock: String,
    pub cycle: String,
    /// The exact records (start times) behind the cycle: two sightings are the same
    /// deadlock only if the same waits and holds are involved.
    pub key: Vec<u64>,
}

/// Find a cycle in the wait-for graph (task A waits for a lock task B holds, in a mode that
/// conflicts) and choose whose wait fails: the lowest `priority`, ties going to the task
/// that started waiting last. Pure: the orchestrator feeds it [`crate::locks::scan`]'s view.
pub fn find_deadlock(
    locks: &BTreeMap<String, LockView>,
    priority: &dyn Fn(&str) -> i64,
) -> Option<Deadlock> {
    // Edges: waiter -> (holder, lock waited for).
    let mut edges: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for (name, v) in locks {
        for w in &v.waiters {
            for h in &v.holders {
                if !(w.shared && h.shared) {
                    edges.entry(&w.task).or_default().push((&h.task, name));
                }
            }
        }
    }
    // Iterative DFS from each node in order; the first back edge closes a cycle. `done`
    // holds nodes fully explored without finding one, so each is explored once.
    let mut done: std::collections::BTreeSet<&str> = Default::default();
    for &start in edges.keys() {
        if done.contains(start) {
            continue;
        }
        let mut stack: Vec<(&str, usize)> = vec![(start, 0)];
        let mut via: Vec<&str> = vec![""];
        while let Some(&(node, idx)) = stack.last() {
            let out = edges.get(node).map(Vec::as_slice).unwrap_or(&[]);
            if idx >= out.len() {
                done.insert(node);
                stack.pop();
                via.pop();
                continue;
            }
            let depth = stack.len() - 1;
            stack[depth].1 += 1;
            let (to, lock) = out[idx];
            via[depth] = lock;
            if let Some(pos) = stack.iter().position(|(n, _)| *n == to) {
                let cycle: Vec<(&str, &str)> =
                    (pos..stack.len()).map(|i| (stack[i].0, via[i])).collect();
                return Some(describe(locks, &cycle, priority));
            }
            if !done.contains(to) {
                stack.push((to, 0));
                via.push("");
            }
        }
    }
    None
}

/// Choose the victim of a cycle of (task, lock it waits for) and say it in words.
fn describe(
    locks: &BTreeMap<String, LockView>,
    cycle: &[(&str, &str)],
    priority: &dyn Fn(&str) -> i64,
) -> Deadlock {
    let waited = |t: &str, l: &str| {
        locks
            .get(l)
            .and_then(|v| v.waiters.iter().find(|w| w.task == t))
            .map_or(0, |w| w.since_unix_ms)
    };
    let (victim, lock) = cycle
        .iter()
        .copied()
        .min_by(|a, b| {
            priority(a.0)
                .cmp(&priority(b.0))
                .then_with(|| waited(b.0, b.1).cmp(&waited(a.0, a.1)))
        })
        .unwrap_or(cycle[0]);
    let words: Vec<String> = cycle
        .iter()
        .map(|(t, l)| format!("{t} waits for {l}"))
        .collect();
    let held_by: Vec<String> = cycle
        .iter()
        .enumerate()
        .map(|(i, (_, l))| format!("{l} held by {}", cycle[(i + 1) % cycle.len()].0))
        .collect();
    let held = |t: &str, l: &str| {
        locks
            .get(l)
            .and_then(|v| v.holders.iter().find(|h| h.task == t))
            .map_or(0, |h| h.since_unix_ms)
    };
    let key = cycle
        .iter()
        .enumerate()
        .flat_map(|(i, (t, l))| [waited(t, l), held(cycle[(i + 1) % cycle.len()].0, l)])
        .collect();
    Deadlock {
        victim: victim.to_string(),
        lock: lock.to_string(),
        cycle: format!("{} ({})", words.join(", "), held_by.join(", ")),
        key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn party(task: &str, since: u64) -> Party {
        Party {
            task: task.into(),
            shared: false,
            since_unix_ms: since,
        }
    }

    #[test]
    fn two_task_deadlock_picks_lowest_priority_then_latest_waiter() {
        let mut locks = BTreeMap::new();
        locks.insert(
            "x".to_string(),
            LockView {
                holders: vec![party("a", 1)],
                waiters: vec![party("b", 20)],
            },
        );
        locks.insert(
            "y".to_string(),
            LockView {
                holders: vec![party("b", 2)],
                waiters: vec![party("a", 10)],
            },
        );
        let d = find_deadlock(&locks, &|_| 0).unwrap();
        assert_eq!(d.victim, "b", "equal priority: the latest to wait gives up");
        assert_eq!(d.lock, "x");
        assert_eq!(
            d.cycle,
            "a waits for y, b waits for x (y held by b, x held by a)"
        );
        let d = find_deadlock(&locks, &|t| if t == "a" { -1 } else { 0 }).unwrap();
        assert_eq!(d.victim, "a", "lowest priority gives up");
    }

    #[test]
    fn shared_holders_do_not_block_shared_waiters() {
        let mut locks = BTreeMap::new();
        let sh = |t: &str| Party {
            shared: true,
            ..party(t, 1)
        };
        locks.insert(
            "x".to_string(),
            LockView {
                holders: vec![sh("a")],
                waiters: vec![sh("b")],
            },
        );
        locks.insert(
            "y".to_string(),
            LockView {
                holders: vec![sh("b")],
                waiters: vec![sh("a")],
            },
        );
        assert_eq!(find_deadlock(&locks, &|_| 0), None);
    }

    #[test]
    fn no_cycle_no_deadlock() {
        let mut locks = BTreeMap::new();
        locks.insert(
            "x".to_string(),
            LockView {
                holders: vec![party("a", 1)],
                waiters: vec![party("b", 2)],
            },
        );
        assert_eq!(find_deadlock(&locks, &|_| 0), None);
    }
}
