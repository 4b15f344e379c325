//! Pure scheduling decisions: which task runs next, what a failure skips, when the session
//! is done. No I/O and no clocks, so the rules are unit- and property-tested fast; the
//! orchestrator feeds it facts read from the session directory and acts on its answers.
//!
//! Ready tasks are taken highest "height" first (the longest chain of dependents still to
//! come), then in plan order: starting the critical path early shortens the whole run.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A task's scheduling state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Some dependency has not succeeded yet.
    Waiting,
    /// All dependencies succeeded; queued for a worker.
    Ready,
    /// Handed to a worker.
    Running,
    Succeeded,
    Failed,
    /// Never ran because a dependency failed.
    Skipped,
    /// Lost a race: stopped or outscored, not a failure of the session.
    Lost,
}

impl State {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            State::Succeeded | State::Failed | State::Skipped | State::Lost
        )
    }
}

/// The scheduler for one plan's DAG.
#[derive(Debug, Clone)]
pub struct Scheduler {
    dependents: Vec<Vec<usize>>,
    deps: Vec<Vec<usize>>,
    unmet: Vec<usize>,
    height: Vec<usize>,
    state: Vec<State>,
    ready: BinaryHeap<(usize, Reverse<usize>)>,
    /// Nodes the orchestrator resolves itself (races, signals): never queued to run.
    external: Vec<bool>,
    terminal: usize,
    not_started: usize,
}

impl Scheduler {
    /// `deps[i]` lists the tasks task `i` runs after. The graph must be acyclic (the plan
    /// module guarantees it).
    pub fn new(deps: Vec<Vec<usize>>) -> Scheduler {
        let n = deps.len();
        Scheduler::with_external(deps, vec![false; n])
    }

    /// Like [`Scheduler::new`], with some nodes external: they are never handed out; the
    /// caller resolves them with `succeed`/`fail` (a race decided, a signal raised).
    pub fn with_external(deps: Vec<Vec<usize>>, external: Vec<bool>) -> Scheduler {
        let n = deps.len();
        let runnable = external.iter().filter(|&&e| !e).count();
        let mut dependents = vec![Vec::new(); n];
        for (i, ds) in deps.iter().enumerate() {
            for &d in ds {
                dependents[d].push(i);
            }
        }
        let height = heights(&deps, &dependents);
        let mut s = Scheduler {
            unmet: deps.iter().map(Vec::len).collect(),
            dependents,
            deps,
            height,
            state: vec![State::Waiting; n],
            ready: BinaryHeap::new(),
            external,
            terminal: 0,
            not_started: runnable,
        };
        for i in 0..n {
            if s.unmet[i] == 0 {
                s.make_ready(i);
            }
        }
        s
    }

    fn make_ready(&mut self, t: usize) {
        if self.external[t] {
            return;
        }
        self.state[t] = State::Ready;
        self.ready.push((self.height[t], Reverse(t)));
    }

    pub fn len(&self) -> usize {
        self.state.len()
    }

    pub fn is_empty(&self) -> bool {
        self.state.is_empty()
    }

    pub fn state(&self, t: usize) -> State {
        self.state[t]
    }

    /// Take the next ready task and mark it running.
    pub fn pop_ready(&mut self) -> Option<usize> {
        while let Some((_, Reverse(t))) = self.ready.pop() {
            // Entries can be stale when a task left Ready another way (cancel, resume).
            if self.state[t] == State::Ready {
                self.state[t] = State::Running;
                self.not_started -= 1;
                return Some(t);
            }
        }
        None
    }

    /// Take the next ready task that `ok` accepts and mark it running; the ones it
    /// passes over stay ready, in their places (a task whose resources are taken waits
    /// while a lower one that claims nothing starts).
    pub fn pop_ready_where(&mut self, mut ok: impl FnMut(usize) -> bool) -> Option<usize> {
        let mut passed = Vec::new();
        let mut found = None;
        while let Some(entry @ (_, Reverse(t))) = self.ready.pop() {
            if self.state[t] != State::Ready {
                continue;
            }
            if ok(t) {
                found = Some(t);
                break;
            }
            passed.push(entry);
        }
        self.ready.extend(passed);
        let t = found?;
        self.state[t] = State::Running;
        self.not_started -= 1;
        Some(t)
    }

    /// Whether every dependency of node `t` succeeded while it still waits (an
    /// external node, which is never made ready, is then the caller's to resolve).
    pub fn deps_met(&self, t: usize) -> bool {
        self.unmet[t] == 0 && self.state[t] == State::Waiting
    }

    /// Whether a task is waiting in the ready queue.
    pub fn has_ready(&self) -> bool {
        self.ready
            .iter()
            .any(|&(_, Reverse(t))| self.state[t] == State::Ready)
    }

    /// Whether a node is still undecided (not terminal).
    pub fn is_open(&self, t: usize) -> bool {
        !self.state[t].is_terminal()
    }

    /// Put a running task back in the queue (its worker was lost, or it will be retried).
    pub fn requeue(&mut self, t: usize) {
        if self.state[t] == State::Running {
            self.not_started += 1;
            self.make_ready(t);
        }
    }

    /// Mark a running (or adopted) task succeeded; its dependents whose dependencies are
    /// now all met become ready. Returns them.
    pub fn succeed(&mut self, t: usize) -> Vec<usize> {
        if self.state[t].is_terminal() {
            return Vec::new();
        }
        if matches!(self.state[t], State::Waiting | State::Ready) && !self.external[t] {
            self.not_started -= 1;
        }
        self.state[t] = State::Succeeded;
        self.terminal += 1;
        let mut newly = Vec::new();
        for k in 0..self.dependents[t].len() {
            let d = self.dependents[t][k];
            self.unmet[d] -= 1;
            if self.unmet[d] == 0 && self.state[d] == State::Waiting {
                self.make_ready(d);
                newly.push(d);
            }
        }
        newly
    }

    /// Mark a task failed for good. Every transitive dependent that has not run is skipped;
    /// returns the skipped tasks (each with the failed task as the reason).
    pub fn fail(&mut self, t: usize) -> Vec<usize> {
        self.end(t, State::Failed)
    }

    /// Mark a task as having lost its race: terminal, its dependents skipped, but not a
    /// failure of the session.
    pub fn lose(&mut self, t: usize) -> Vec<usize> {
        self.end(t, State::Lost)
    }

    fn end(&mut self, t: usize, how: State) -> Vec<usize> {
        if self.state[t].is_terminal() {
            return Vec::new();
        }
        if matches!(self.state[t], State::Waiting | State::Ready) && !self.external[t] {
            self.not_started -= 1;
        }
        self.state[t] = how;
        self.terminal += 1;
        let mut skipped = Vec::new();
        let mut stack = vec![t];
        while let Some(u) = stack.pop() {
            for k in 0..self.dependents[u].len() {
                let d = self.dependents[u][k];
                if matches!(self.state[d], State::Waiting | State::Ready) {
                    self.state[d] = State::Skipped;
                    self.terminal += 1;
                    if !self.external[d] {
                        self.not_started -= 1;
                    }
                    skipped.push(d);
                    stack.push(d);
                }
            }
        }
        skipped
    }

    /// The scheduler of a larger graph (tasks added to a live session): node `o` of
    /// `self` is node `map[o]` of `deps` and keeps its state; every other node is new and
    /// waits, or is ready once every dependency succeeded. A new node with a dependency
    /// that can no longer succeed is left waiting and returned with that dependency, for
    /// the caller to decide (it is skipped or cancelled, with a reason only it can give).
    pub fn grown(
        &self,
        deps: Vec<Vec<usize>>,
        external: Vec<bool>,
        map: &[usize],
    ) -> (Scheduler, Vec<(usize, usize)>) {
        let n = deps.len();
        let mut dependents = vec![Vec::new(); n];
        for (i, ds) in deps.iter().enumerate() {
            for &d in ds {
                dependents[d].push(i);
            }
        }
        let height = heights(&deps, &dependents);
        let mut state = vec![State::Waiting; n];
        let mut old = vec![false; n];
        for (o, &m) in map.iter().enumerate() {
            state[m] = self.state[o];
            old[m] = true;
        }
        let unmet = deps
            .iter()
            .map(|ds| ds.iter().filter(|&&d| state[d] != State::Succeeded).count())
            .collect();
        let terminal = state.iter().filter(|s| s.is_terminal()).count();
        let not_started = (0..n)
            .filter(|&i| !external[i] && matches!(state[i], State::Waiting | State::Ready))
            .count();
        let mut s = Scheduler {
            dependents,
            deps,
            unmet,
            height,
            state,
            ready: BinaryHeap::new(),
            external,
            terminal,
            not_started,
        };
        let mut doomed = Vec::new();
        for (i, &was) in old.iter().enumerate() {
            if was {
                if s.state[i] == State::Ready {
                    s.ready.push((s.height[i], Reverse(i)));
                }
                continue;
            }
            let dead = s.deps[i]
                .iter()
                .copied()
                .find(|&d| matches!(s.state[d], State::Failed | State::Skipped | State::Lost));
            match dead {
                Some(d) => doomed.push((i, d)),
                None if s.unmet[i] == 0 => s.make_ready(i),
                None => {}
            }
        }
        (s, doomed)
    }

    /// Mark a waiting node skipped, with every waiting or ready node after it (a node
    /// added after a dependency that failed); returns the nodes skipped after it.
    pub fn skip(&mut self, t: usize) -> Vec<usize> {
        self.end(t, State::Skipped)
    }

    /// Mark a not-yet-started task as running without taking it from the queue in order:
    /// used on resume to adopt a task that a live worker is still running.
    pub fn adopt_running(&mut self, t: usize) {
        if matches!(self.state[t], State::Waiting | State::Ready) && !self.external[t] {
            self.state[t] = State::Running;
            self.not_started -= 1;
        }
    }

    /// All tasks reached a final state.
    pub fn finished(&self) -> bool {
        self.terminal == self.state.len()
    }

    /// Tasks that have not started (waiting or ready): an upper bound on how many more
    /// workers the plan could still use.
    pub fn not_started(&self) -> usize {
        self.not_started
    }

    /// Whether any task failed or was skipped.
    pub fn any_failed(&self) -> bool {
        self.state
            .iter()
            .any(|s| matches!(s, State::Failed | State::Skipped))
    }

    /// The dependencies of task `t`.
    pub fn deps(&self, t: usize) -> &[usize] {
        &self.deps[t]
    }
}

/// How many idle workers can be released: those beyond the number of tasks not started yet,
/// which each need at most one worker. Never releases a worker the plan could still use.
pub fn excess_idle(idle: usize, not_started: usize) -> usize {
    idle.saturating_sub(not_started)
}

/// Exponential backoff between retries of a failed task.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Backoff {
    pub initial_ms: u64,
    pub max_ms: u64,
    pub factor: f64,
    /// Relative spread: 0.1 means ±10 %.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            initial_ms: 1000,
            max_ms: 60_000,
            factor: 2.0,
            jitter: 0.1,
        }
    }
}

impl Backoff {
    /// The wait before retry number `retry` (1 for the first retry). `unit` is a random
    /// number in [-1, 1] supplied by the caller, so this stays pure and testable.
    pub fn delay_ms(&self, retry: u32, unit: f64) -> u64 {
        let exp = retry.saturating_sub(1).min(64) as i32;
        let base = (self.initial_ms as f64 * self.factor.powi(exp)).min(self.max_ms as f64);
        let spread = base * self.jitter * unit.clamp(-1.0, 1.0);
        (base + spread).max(0.0).min(self.max_ms as f64) as u64
    }
}

/// Longest chain of dependents below each task (1 for a sink), iteratively (100 000-task
/// chains must not overflow the stack).
fn heights(deps: &[Vec<usize>], dependents: &[Vec<usize>]) -> Vec<usize> {
    let n = deps.len();
    // Reverse topological order via Kahn on the dependents graph from the sinks.
    let mut out_left: Vec<usize> = dependents.iter().map(Vec::len).collect();
    let mut stack: Vec<usize> = (0..n).filter(|&i| out_left[i] == 0).collect();
    let mut height = vec![1usize; n];
    while let Some(u) = stack.pop() {
        for &d in &deps[u] {
            height[d] = height[d].max(height[u] + 1);
            out_left[d] -= 1;
            if out_left[d] == 0 {
                stack.push(d);
            }
        }
    }
    height
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn diamond() -> Scheduler {
        // a; b after a; c after a; d after b, c
        Scheduler::new(vec![vec![], vec![0], vec![0], vec![1, 2]])
    }

    #[test]
    fn diamond_runs_in_dependency_order() {
        let mut s = diamond();
        assert_eq!(s.pop_ready(), Some(0));
        assert_eq!(s.pop_ready(), None);
        assert_eq!(s.succeed(0), vec![1, 2]);
        assert_eq!(s.pop_ready(), Some(1));
        assert_eq!(s.pop_ready(), Some(2));
        assert_eq!(s.succeed(1), Vec::<usize>::new());
        assert_eq!(s.succeed(2), vec![3]);
        assert_eq!(s.pop_ready(), Some(3));
        assert!(!s.finished());
        s.succeed(3);
        assert!(s.finished());
        assert!(!s.any_failed());
    }

    #[test]
    fn failure_skips_dependents_but_not_independent_branch() {
        // 0 -> 1 -> 2, and 3 independent
        let mut s = Scheduler::new(vec![vec![], vec![0], vec![1], vec![]]);
        let a = s.pop_ready().unwrap();
        let b = s.pop_ready().unwrap();
        assert_eq!((a, b), (0, 3)); // 0 has the taller chain
        assert_eq!(s.fail(0), vec![1, 2]);
        assert_eq!(s.state(1), State::Skipped);
        assert_eq!(s.state(3), State::Running);
        assert!(!s.finished());
        s.succeed(3);
        assert!(s.finished());
        assert!(s.any_failed());
    }

    #[test]
    fn critical_path_goes_first() {
        // 0 is a lone task; 1 -> 2 -> 3 is a chain: 1 should start before 0.
        let mut s = Scheduler::new(vec![vec![], vec![], vec![1], vec![2]]);
        assert_eq!(s.pop_ready(), Some(1));
        assert_eq!(s.pop_ready(), Some(0));
    }

    #[test]
    fn requeue_puts_task_back() {
        let mut s = diamond();
        let t = s.pop_ready().unwrap();
        assert_eq!(s.not_started(), 3);
        s.requeue(t);
        assert_eq!(s.not_started(), 4);
        assert_eq!(s.pop_ready(), Some(t));
    }

    #[test]
    fn backoff_grows_exponentially_to_the_cap() {
        let b = Backoff {
            initial_ms: 1000,
            max_ms: 5000,
            factor: 2.0,
            jitter: 0.0,
        };
        let d: Vec<u64> = (1..=5).map(|n| b.delay_ms(n, 0.7)).collect();
        assert_eq!(d, vec![1000, 2000, 4000, 5000, 5000]);
        let j = Backoff { jitter: 0.1, ..b };
        assert_eq!(j.delay_ms(1, 1.0), 1100);
        assert_eq!(j.delay_ms(1, -1.0), 900);
        assert_eq!(j.delay_ms(1, 5.0), 1100, "unit is clamped");
        assert_eq!(j.delay_ms(10, 1.0), 5000, "never above max");
    }

    #[test]
    fn external_nodes_gate_but_never_run() {
        // 0: a task; 1: a signal (external); 2 runs after both.
        let mut s =
            Scheduler::with_external(vec![vec![], vec![], vec![0, 1]], vec![false, true, false]);
        assert_eq!(s.not_started(), 2);
        assert_eq!(s.pop_ready(), Some(0));
        assert_eq!(s.pop_ready(), None, "the signal is never handed out");
        s.succeed(0);
        assert_eq!(s.pop_ready(), None, "2 still waits for the signal");
        assert_eq!(s.succeed(1), vec![2]);
        assert_eq!(s.pop_ready(), Some(2));
        s.succeed(2);
        assert!(s.finished());
    }

    #[test]
    fn lost_tasks_are_not_failures_but_skip_dependents() {
        let mut s = Scheduler::new(vec![vec![], vec![0]]);
        s.pop_ready();
        assert_eq!(s.lose(0), vec![1]);
        assert_eq!(s.state(0), State::Lost);
        assert!(s.finished());
        assert!(s.any_failed(), "the skipped dependent counts");
    }

    #[test]
    fn excess_idle_keeps_workers_the_plan_can_use() {
        assert_eq!(excess_idle(3, 5), 0);
        assert_eq!(excess_idle(3, 1), 2);
        assert_eq!(excess_idle(0, 0), 0);
    }

    #[test]
    fn long_chain_heights_do_not_overflow() {
        let n = 100_000;
        let deps: Vec<Vec<usize>> = (0..n)
            .map(|i| if i == 0 { vec![] } else { vec![i - 1] })
            .collect();
        let mut s = Scheduler::new(deps);
        assert_eq!(s.pop_ready(), Some(0));
        assert_eq!(s.height[0], n);
    }

    #[test]
    fn a_grown_graph_keeps_every_state_and_readies_the_new_nodes() {
        // 0 -> 1 -> 2, and a signal node 3; 0 succeeded, 1 running, 2 waits.
        let old = vec![vec![], vec![0], vec![1], vec![]];
        let mut g = Scheduler::with_external(old, vec![false, false, false, true]);
        g.pop_ready();
        g.succeed(0);
        assert_eq!(g.pop_ready(), Some(1));
        // The signal node moves from 3 to 5: new tasks 3 (after 0) and 4 (after 1 and
        // the signal).
        let deps = vec![vec![], vec![0], vec![1], vec![0], vec![1, 5], vec![]];
        let external = vec![false, false, false, false, false, true];
        let (mut g, doomed) = g.grown(deps, external, &[0, 1, 2, 5]);
        assert!(doomed.is_empty());
        assert_eq!(g.state(0), State::Succeeded);
        assert_eq!(g.state(1), State::Running);
        assert_eq!(g.state(3), State::Ready);
        assert_eq!(g.state(4), State::Waiting);
        assert_eq!(g.not_started(), 3, "2, 3 and 4");
        assert_eq!(g.pop_ready(), Some(3));
        assert_eq!(g.pop_ready(), None);
        assert_eq!(g.succeed(1), vec![2]);
        assert_eq!(g.succeed(5), vec![4]);
    }

    #[test]
    fn a_node_added_after_a_failure_is_returned_and_its_skip_reaches_new_dependents() {
        let mut s = Scheduler::new(vec![vec![]]);
        s.pop_ready();
        s.fail(0);
        assert!(s.finished());
        // 1 after 0 (failed), 2 after 1.
        let (mut g, doomed) = s.grown(vec![vec![], vec![0], vec![1]], vec![false; 3], &[0]);
        assert_eq!(doomed, vec![(1, 0)]);
        assert!(!g.finished());
        assert_eq!(g.skip(1), vec![2]);
        assert!(g.finished());
        assert_eq!(g.not_started(), 0);
    }

    proptest! {
        /// Growing a half-run graph: every node ends terminal, runs only after its
        /// dependencies succeeded, is skipped only behind a failure; the counts agree.
        #[test]
        fn random_grown_dags_respect_dependencies(
            edges in proptest::collection::vec((0usize..40, 0usize..40), 0..100),
            fails in proptest::collection::vec(any::<bool>(), 40),
            n in 1usize..20,
            m in 0usize..20,
            steps in 0usize..20,
        ) {
            let total = n + m;
            let mut deps = vec![Vec::new(); total];
            for (a, b) in edges {
                let (a, b) = (a % total, b % total);
                // Old nodes only after old ones; new ones after anything earlier.
                if a > b && (a >= n || b < n) && !deps[a].contains(&b) { deps[a].push(b); }
            }
            let mut s = Scheduler::new(deps[..n].to_vec());
            let mut running = Vec::new();
            let step = |s: &mut Scheduler, running: &mut Vec<usize>| -> Result<bool, TestCaseError> {
                while let Some(t) = s.pop_ready() {
                    for &d in &deps[t] { prop_assert_eq!(s.state(d), State::Succeeded); }
                    running.push(t);
                }
                let Some(t) = running.pop() else { return Ok(false) };
                if fails[t] { s.fail(t); } else { s.succeed(t); }
                Ok(true)
            };
            for _ in 0..steps {
                if !step(&mut s, &mut running)? { break; }
            }
            let map: Vec<usize> = (0..n).collect();
            let (mut g, doomed) = s.grown(deps.clone(), vec![false; total], &map);
            for (t, d) in doomed {
                prop_assert!(t >= n);
                prop_assert!(matches!(g.state(d), State::Failed | State::Skipped | State::Lost));
                g.skip(t);
            }
            while step(&mut g, &mut running)? {}
            prop_assert!(g.finished());
            prop_assert_eq!(g.not_started(), 0);
            for (t, ds) in deps.iter().enumerate() {
                if g.state(t) == State::Skipped {
                    prop_assert!(ds.iter().any(|&d| matches!(g.state(d), State::Failed | State::Skipped)));
                }
            }
        }

        /// Model check: on a random DAG with random failures, every task ends terminal,
        /// a task runs only after all its deps succeeded, and a skipped task has a
        /// failed or skipped dependency.
        #[test]
        fn random_dags_respect_dependencies(
            edges in proptest::collection::vec((0usize..30, 0usize..30), 0..80),
            fails in proptest::collection::vec(any::<bool>(), 30),
            n in 1usize..30,
        ) {
            let mut deps = vec![Vec::new(); n];
            for (a, b) in edges {
                let (a, b) = (a % n, b % n);
                if a > b && !deps[a].contains(&b) { deps[a].push(b); }
            }
            let mut s = Scheduler::new(deps.clone());
            let mut running = Vec::new();
            loop {
                while let Some(t) = s.pop_ready() {
                    for &d in &deps[t] { prop_assert_eq!(s.state(d), State::Succeeded); }
                    running.push(t);
                }
                let Some(t) = running.pop() else { break };
                if fails[t] { s.fail(t); } else { s.succeed(t); }
            }
            prop_assert!(s.finished());
            for (t, ds) in deps.iter().enumerate() {
                if s.state(t) == State::Skipped {
                    prop_assert!(ds.iter().any(|&d| matches!(s.state(d), State::Failed | State::Skipped)));
                }
            }
            prop_assert_eq!(s.not_started(), 0);
        }
    }
}
