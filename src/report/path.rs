//! The shape of the run in time: each wave of the plan as it ran, and the critical path
//! as it ran. Pure functions of the tasks' spans (first start, decision; journal times in
//! Unix ms) and the plan's dependencies.
//!
//! The planned critical path (`orchestrator plan`) is the longest chain by number of
//! tasks; the one that ran is the chain that actually made the session as long as it
//! was: start from the task that ended last, step back to the dependency that ended last
//! before it started (the one it really waited for), and so on until a task whose start
//! no dependency held back. Each step's wait (the gap between the dependency's end and
//! its start) is what workers, tokens, gates and resumes added.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use super::model::{CriticalPath, Step, Wave};
use super::time_text;
use crate::proto::TaskState;

/// The critical path as it ran, first to last, as task indices: see the module's
/// documentation. `spans[i]` is task `i`'s (start, end) if it ran and was decided, `deps[i]`
/// its dependencies. Ties: the lowest index.
pub fn critical_path(spans: &[Option<(u64, u64)>], deps: &[Vec<usize>]) -> Vec<usize> {
    let ran = (0..spans.len()).filter_map(|i| spans[i].map(|(_, end)| (i, end)));
    let Some((mut cur, _)) = ran.max_by_key(|&(i, end)| (end, Reverse(i))) else {
        return Vec::new();
    };
    let mut path = vec![cur];
    // A chain visits each task at most once; the bound only guards against a cycle in
    // a hand-edited plan.
    while path.len() < spans.len() {
        let Some((start, _)) = spans[cur] else { break };
        let held_back = deps.get(cur).into_iter().flatten().filter_map(|&d| {
            let (_, end) = (*spans.get(d)?)?;
            (end <= start).then_some((d, end))
        });
        match held_back.max_by_key(|&(d, end)| (end, Reverse(d))) {
            Some((d, _)) => {
                path.push(d);
                cur = d;
            }
            None => break,
        }
    }
    path.reverse();
    path
}

/// The path's steps, with their durations and waits; at most `max` steps listed (the
/// longest, in path order), the rest counted. `session_start` is what the first step
/// waited from.
pub fn path_steps(
    path: &[usize],
    spans: &[Option<(u64, u64)>],
    ids: &[&str],
    session_start: Option<u64>,
    max: usize,
) -> CriticalPath {
    let mut steps: Vec<Step> = Vec::with_capacity(path.len());
    let mut prev_end = session_start;
    for &t in path {
        let Some((start, end)) = spans[t] else {
            continue;
        };
        steps.push(Step {
            task: ids[t].to_string(),
            started_at: Some(time_text(start)),
            ended_at: Some(time_text(end)),
            duration_ms: end - start,
            waited_ms: prev_end.map_or(0, |p| start.saturating_sub(p)),
        });
        prev_end = Some(end);
    }
    let duration_ms = match (path.first(), path.last()) {
        (Some(&f), Some(&l)) => spans[f].zip(spans[l]).map(|(f, l)| l.1.saturating_sub(f.0)),
        _ => None,
    };
    let length = steps.len();
    let omitted = length.saturating_sub(max);
    if omitted > 0 {
        // Keep the longest steps: they are what made the path long.
        let mut by_length: Vec<usize> = (0..length).collect();
        by_length.sort_by_key(|&i| (Reverse(steps[i].duration_ms), i));
        let mut keep = vec![false; length];
        for &i in &by_length[..max] {
            keep[i] = true;
        }
        let mut k = keep.into_iter();
        steps.retain(|_| k.next().unwrap_or(false));
    }
    CriticalPath {
        length,
        duration_ms,
        steps,
        omitted,
    }
}

/// Each wave as it ran: its tasks counted by state, and the wall time from its first
/// start to its last end (none until every task of it is decided). `waves` lists task
/// indices; `states` and `times` are by task index, `times[i]` the task's first start and
/// its decision.
pub fn waves(
    waves: &[Vec<usize>],
    states: &[TaskState],
    times: &[(Option<u64>, Option<u64>)],
) -> Vec<Wave> {
    waves
        .iter()
        .enumerate()
        .map(|(k, tasks)| {
            let mut by_state = BTreeMap::new();
            let mut first: Option<u64> = None;
            let mut last: Option<u64> = None;
            let mut open = false;
            for &t in tasks {
                *by_state.entry(states[t]).or_insert(0) += 1;
                open |= !states[t].is_terminal();
                if let (Some(s), end) = times[t] {
                    first = Some(first.map_or(s, |f| f.min(s)));
                    if let Some(e) = end {
                        last = Some(last.map_or(e, |l| l.max(e)));
                    }
                }
            }
            let last = last.filter(|_| !open);
            Wave {
                wave: k + 1,
                tasks: tasks.len(),
                by_state,
                started_at: first.map(time_text),
                ended_at: last.map(time_text),
                wall_ms: first.zip(last).map(|(f, l)| l.saturating_sub(f)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_walks_back_through_the_dependency_that_ended_last_before_each_start() {
        // a(0-10) and b(0-30) -> c(31-40); d(0-45) alone; e after c and d (46-60).
        let spans = [
            Some((0, 10)),
            Some((0, 30)),
            Some((31, 40)),
            Some((0, 45)),
            Some((46, 60)),
        ];
        let deps = vec![vec![], vec![], vec![0, 1], vec![], vec![2, 3]];
        assert_eq!(
            critical_path(&spans, &deps),
            vec![3, 4],
            "d held e back, not c"
        );
        // With d shorter, c's chain decides: through b, which c waited for.
        let mut spans2 = spans;
        spans2[3] = Some((0, 5));
        assert_eq!(critical_path(&spans2, &deps), vec![1, 2, 4]);
    }

    #[test]
    fn tasks_that_did_not_run_are_not_on_the_path_and_ties_take_the_lowest() {
        let spans = [Some((0, 10)), Some((0, 10)), None, Some((12, 20))];
        // c (index 2) was skipped: d's dependency on it holds nothing back.
        let deps = vec![vec![], vec![], vec![], vec![0, 1, 2]];
        assert_eq!(critical_path(&spans, &deps), vec![0, 3]);
        assert_eq!(
            critical_path(&[None, None], &[vec![], vec![]]),
            Vec::<usize>::new()
        );
        // A dependency that ended after the start (a retried session) did not hold it.
        let deps = vec![vec![], vec![], vec![], vec![1]];
        assert_eq!(
            critical_path(&[None, Some((0, 50)), None, Some((12, 60))], &deps),
            vec![3]
        );
    }

    #[test]
    fn a_cycle_in_a_hand_edited_plan_cannot_loop() {
        let spans = [Some((5, 5)), Some((5, 5))];
        let path = critical_path(&spans, &[vec![1], vec![0]]);
        assert!(path.len() <= 2, "{path:?}");
    }

    #[test]
    fn steps_say_how_long_each_ran_and_waited_and_a_long_path_keeps_its_longest() {
        let spans = [Some((100, 110)), Some((115, 145)), Some((150, 152))];
        let ids = ["a", "b", "c"];
        let cp = path_steps(&[0, 1, 2], &spans, &ids, Some(90), 10);
        let got: Vec<(&str, u64, u64)> = cp
            .steps
            .iter()
            .map(|s| (s.task.as_str(), s.duration_ms, s.waited_ms))
            .collect();
        assert_eq!(got, vec![("a", 10, 10), ("b", 30, 5), ("c", 2, 5)]);
        assert_eq!((cp.length, cp.duration_ms, cp.omitted), (3, Some(52), 0));
        let cut = path_steps(&[0, 1, 2], &spans, &ids, None, 2);
        let kept: Vec<&str> = cut.steps.iter().map(|s| s.task.as_str()).collect();
        assert_eq!((kept, cut.length, cut.omitted), (vec!["a", "b"], 3, 1));
        assert_eq!(cut.steps[0].waited_ms, 0, "no session start known");
    }

    #[test]
    fn a_wave_counts_its_states_and_its_wall_time_once_every_task_is_decided() {
        use TaskState::*;
        let states = [Succeeded, Failed, Skipped, Running];
        let times = [
            (Some(10), Some(20)),
            (Some(12), Some(30)),
            (None, Some(31)),
            (Some(40), None),
        ];
        let w = waves(&[vec![0, 1, 2], vec![3]], &states, &times);
        assert_eq!(w[0].tasks, 3);
        assert_eq!(
            w[0].by_state,
            BTreeMap::from([(Succeeded, 1), (Failed, 1), (Skipped, 1)])
        );
        assert_eq!(w[0].wall_ms, Some(20), "the skipped task did not run");
        assert_eq!(
            (w[1].wave, w[1].wall_ms, w[1].ended_at.is_none()),
            (2, None, true)
        );
        assert!(w[1].started_at.is_some());
    }
}
