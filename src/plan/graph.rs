//! A plan's dependency graph, on typed node ids: which node runs after which, the
//! topological order, cycles, waves (dependency depth) and the critical path.
//!
//! A plan has two graphs. The scheduler's ([`Plan::graph`]) has a node per task, then one
//! per race, then one per signal; race and signal nodes are *external*: the orchestrator
//! resolves them (a race decided, a signal raised), they never run. The task graph
//! ([`Plan::dep_indices`]) has tasks only, a dependency on a race standing for one on each
//! of its members: a task after a race cannot start before every member has finished or
//! been stopped, so that is the order that waves, the critical path and the cycle check
//! must see.

use std::collections::{HashMap, VecDeque};

use super::Plan;

/// A node of a [`Graph`]. Tasks come first, numbered as in `plan.tasks`, so comparing ids
/// of tasks compares their order in the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(usize);

impl NodeId {
    /// The node's position: what index-based code (the scheduler) calls it.
    pub fn index(self) -> usize {
        self.0
    }
}

/// What a node stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// The task at this index of `plan.tasks`.
    Task(usize),
    /// The race at this index of `plan.races`.
    Race(usize),
    /// A signal (`after = ["signal:NAME"]`), by name.
    Signal(String),
    /// The gate at this index of `plan.gates` (`after = ["gate:ID"]`).
    Gate(usize),
}

/// Nodes and their dependency edges, both ways.
#[derive(Debug, Clone)]
pub struct Graph {
    kinds: Vec<NodeKind>,
    deps: Vec<Vec<NodeId>>,
    dependents: Vec<Vec<NodeId>>,
    race_nodes: Vec<NodeId>,
    signals: Vec<(String, NodeId)>,
    gate_nodes: Vec<NodeId>,
}

impl Graph {
    /// `deps[i]` lists what node `i` runs after; every id in it must be below
    /// `kinds.len()`. Race nodes must come in race order.
    fn new(kinds: Vec<NodeKind>, deps: Vec<Vec<NodeId>>) -> Graph {
        let mut dependents = vec![Vec::new(); kinds.len()];
        for (i, ds) in deps.iter().enumerate() {
            for d in ds {
                dependents[d.0].push(NodeId(i));
            }
        }
        let mut race_nodes = Vec::new();
        let mut signals = Vec::new();
        let mut gate_nodes = Vec::new();
        for (i, kind) in kinds.iter().enumerate() {
            match kind {
                NodeKind::Task(_) => {}
                NodeKind::Race(_) => race_nodes.push(NodeId(i)),
                NodeKind::Signal(name) => signals.push((name.clone(), NodeId(i))),
                NodeKind::Gate(_) => gate_nodes.push(NodeId(i)),
            }
        }
        Graph {
            kinds,
            deps,
            dependents,
            race_nodes,
            signals,
            gate_nodes,
        }
    }

    /// The node index of each gate, by its index in `plan.gates` (for the scheduler).
    pub fn gate_node_ix(&self, g: usize) -> usize {
        self.gate_nodes[g].0
    }

    /// A graph of tasks only: `deps[i]` are the indices of the tasks task `i` runs after.
    pub(super) fn of_tasks(deps: Vec<Vec<usize>>) -> Graph {
        let kinds = (0..deps.len()).map(NodeKind::Task).collect();
        let deps = deps
            .into_iter()
            .map(|ds| ds.into_iter().map(NodeId).collect())
            .collect();
        Graph::new(kinds, deps)
    }

    pub fn len(&self) -> usize {
        self.kinds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// Every node, in id order.
    pub fn nodes(&self) -> impl Iterator<Item = NodeId> + use<> {
        (0..self.len()).map(NodeId)
    }

    pub fn kind(&self, node: NodeId) -> &NodeKind {
        &self.kinds[node.0]
    }

    /// The task a node stands for, if it is a task's.
    pub fn task_of(&self, node: NodeId) -> Option<usize> {
        match self.kinds[node.0] {
            NodeKind::Task(i) => Some(i),
            _ => None,
        }
    }

    /// What `node` runs after, in the order the plan lists it.
    pub fn deps(&self, node: NodeId) -> &[NodeId] {
        &self.deps[node.0]
    }

    /// What runs after `node`.
    pub fn dependents(&self, node: NodeId) -> &[NodeId] {
        &self.dependents[node.0]
    }

    /// Races and signals: resolved by the orchestrator, never run.
    pub fn is_external(&self, node: NodeId) -> bool {
        !matches!(self.kinds[node.0], NodeKind::Task(_))
    }

    /// The node of each race, by its index in `plan.races`.
    pub fn race_nodes(&self) -> &[NodeId] {
        &self.race_nodes
    }

    /// Each signal some task waits for, with its node, in order of first mention.
    pub fn signals(&self) -> &[(String, NodeId)] {
        &self.signals
    }

    /// The node of the signal called `name`, if some task waits for it.
    pub fn signal(&self, name: &str) -> Option<NodeId> {
        let found = self.signals.iter().find(|(s, _)| s == name);
        found.map(|&(_, node)| node)
    }

    /// Every node's dependencies as indices, for the scheduler (which numbers nodes as
    /// this graph does).
    pub fn dep_lists(&self) -> Vec<Vec<usize>> {
        let index = |ds: &Vec<NodeId>| ds.iter().map(|d| d.0).collect();
        self.deps.iter().map(index).collect()
    }

    /// [`Graph::is_external`] of every node, by index, for the scheduler.
    pub fn external_flags(&self) -> Vec<bool> {
        self.nodes().map(|n| self.is_external(n)).collect()
    }

    /// Kahn's algorithm: a topological order (dependencies first), or `None` when some
    /// nodes sit on or behind a cycle. Iterative, so 100 000-task chains are fine.
    pub fn topo_order(&self) -> Option<Vec<NodeId>> {
        let mut unmet: Vec<usize> = self.deps.iter().map(Vec::len).collect();
        let mut queue: VecDeque<NodeId> = self.nodes().filter(|n| unmet[n.0] == 0).collect();
        let mut order = Vec::with_capacity(self.len());
        while let Some(u) = queue.pop_front() {
            order.push(u);
            for &d in &self.dependents[u.0] {
                unmet[d.0] -= 1;
                if unmet[d.0] == 0 {
                    queue.push_back(d);
                }
            }
        }
        (order.len() == self.len()).then_some(order)
    }

    /// A topological order, or for a cyclic graph (which only a hand-edited `plan.json`
    /// can give) id order, so that what is drawn from it stays defined.
    fn order_or_ids(&self) -> Vec<NodeId> {
        self.topo_order().unwrap_or_else(|| self.nodes().collect())
    }

    /// Strongly connected components (Tarjan, with an explicit stack instead of recursion
    /// so a 100 000-task chain cannot overflow the thread's stack): each node's component.
    fn components(&self) -> Vec<usize> {
        let mut t = Tarjan::new(self.len());
        for root in 0..self.len() {
            if t.index[root] != Tarjan::UNSEEN {
                continue;
            }
            t.enter(root);
            while let Some(&(v, e)) = t.call.last() {
                if let Some(&NodeId(w)) = self.deps[v].get(e) {
                    if let Some(top) = t.call.last_mut() {
                        top.1 += 1;
                    }
                    if t.index[w] == Tarjan::UNSEEN {
                        t.enter(w);
                    } else if t.on_stack[w] {
                        t.low[v] = t.low[v].min(t.index[w]);
                    }
                    continue;
                }
                t.call.pop();
                if let Some(&(u, _)) = t.call.last() {
                    t.low[u] = t.low[u].min(t.low[v]);
                }
                if t.low[v] == t.index[v] {
                    t.close(v);
                }
            }
        }
        t.comp
    }

    /// A dependency cycle, for the error message: the shortest one through the node with
    /// the lowest id that lies on any cycle, as `[a, b, ..]` where `a` depends on `b` (the
    /// closing `a` is not repeated). Empty when there is no cycle. Linear time.
    pub fn find_cycle(&self) -> Vec<NodeId> {
        let comp = self.components();
        let mut size = vec![0usize; self.len()];
        for &c in &comp {
            size[c] += 1;
        }
        // A node is on a cycle iff its component has two or more nodes, or it depends on
        // itself.
        let on_cycle = |n: &NodeId| size[comp[n.0]] > 1 || self.deps[n.0].contains(n);
        let Some(s) = self.nodes().find(on_cycle) else {
            return Vec::new();
        };
        // Breadth-first from `s` inside its component until an edge leads back to `s`;
        // edges are taken in `after` order, so the answer is deterministic.
        let mut parent: HashMap<NodeId, NodeId> = HashMap::new();
        let mut queue = VecDeque::from([s]);
        while let Some(u) = queue.pop_front() {
            for &d in &self.deps[u.0] {
                if d == s {
                    // Walk back to `s`, which has no parent (it is the root).
                    let mut cycle = vec![u];
                    while let Some(&p) = parent.get(cycle.last().unwrap_or(&s)) {
                        cycle.push(p);
                    }
                    cycle.reverse();
                    return cycle;
                }
                if comp[d.0] == comp[s.0] && !parent.contains_key(&d) {
                    parent.insert(d, u);
                    queue.push_back(d);
                }
            }
        }
        vec![s]
    }

    /// Nodes grouped by dependency depth (wave 0 has no dependencies), id order inside.
    pub fn waves(&self) -> Vec<Vec<NodeId>> {
        let mut depth = vec![0usize; self.len()];
        for u in self.order_or_ids() {
            depth[u.0] = self.deps[u.0]
                .iter()
                .map(|d| depth[d.0] + 1)
                .max()
                .unwrap_or(0);
        }
        let mut waves: Vec<Vec<NodeId>> = Vec::new();
        for (u, &d) in self.nodes().zip(&depth) {
            if waves.len() <= d {
                waves.resize(d + 1, Vec::new());
            }
            waves[d].push(u);
        }
        waves
    }

    /// The longest dependency chain (by number of nodes), first to last. Ties: the chain
    /// ending at the lowest id, and at each step the dependency with the lowest id.
    pub fn critical_path(&self) -> Vec<NodeId> {
        if self.is_empty() {
            return Vec::new();
        }
        let mut len = vec![1usize; self.len()];
        let mut prev: Vec<Option<NodeId>> = vec![None; self.len()];
        for u in self.order_or_ids() {
            for &d in &self.deps[u.0] {
                let cand = len[d.0] + 1;
                let (i, p) = (u.0, prev[u.0]);
                if cand > len[i] || (cand == len[i] && p.is_some_and(|p| d < p)) {
                    len[i] = cand;
                    prev[i] = Some(d);
                }
            }
        }
        let mut end = NodeId(0);
        for u in self.nodes() {
            if len[u.0] > len[end.0] {
                end = u;
            }
        }
        let mut path = vec![end];
        let mut cur = end;
        // Only a cyclic graph could loop here; a chain is never longer than the graph, so
        // the bound costs nothing and rules out a hang.
        while let Some(p) = prev[cur.0] {
            if path.len() >= self.len() {
                break;
            }
            path.push(p);
            cur = p;
        }
        path.reverse();
        path
    }
}

/// The bookkeeping of Tarjan's algorithm for [`Graph::components`], by node index.
struct Tarjan {
    /// Visit order, or `UNSEEN`.
    index: Vec<usize>,
    /// Lowest visit order reachable through the node's subtree.
    low: Vec<usize>,
    comp: Vec<usize>,
    on_stack: Vec<bool>,
    stack: Vec<usize>,
    /// (node, how many of its edges are explored): the recursion, made explicit.
    call: Vec<(usize, usize)>,
    next_index: usize,
    next_comp: usize,
}

impl Tarjan {
    const UNSEEN: usize = usize::MAX;

    fn new(n: usize) -> Tarjan {
        Tarjan {
            index: vec![Tarjan::UNSEEN; n],
            low: vec![0; n],
            comp: vec![Tarjan::UNSEEN; n],
            on_stack: vec![false; n],
            stack: Vec::new(),
            call: Vec::new(),
            next_index: 0,
            next_comp: 0,
        }
    }

    /// First visit of `v`: number it and descend into it.
    fn enter(&mut self, v: usize) {
        self.index[v] = self.next_index;
        self.low[v] = self.next_index;
        self.next_index += 1;
        self.stack.push(v);
        self.on_stack[v] = true;
        self.call.push((v, 0));
    }

    /// `v` roots a component: everything above it on the stack belongs to it.
    fn close(&mut self, v: usize) {
        while let Some(w) = self.stack.pop() {
            self.on_stack[w] = false;
            self.comp[w] = self.next_comp;
            if w == v {
                break;
            }
        }
        self.next_comp += 1;
    }
}

/// Each task's dependencies as task indices: `afters` yields each task's `after` names,
/// `tasks` maps ids to indices and `races` race ids to their members. A race stands for
/// each of its members; other names (signals) are not tasks and are left out.
pub(super) fn task_deps<'a, A>(
    afters: impl Iterator<Item = A>,
    tasks: &HashMap<&str, usize>,
    races: &HashMap<&str, &[String]>,
) -> Vec<Vec<usize>>
where
    A: IntoIterator<Item = &'a String>,
{
    afters
        .map(|after| {
            let mut v = Vec::new();
            for d in after {
                if let Some(&i) = tasks.get(d.as_str()) {
                    v.push(i);
                } else if let Some(members) = races.get(d.as_str()) {
                    v.extend(
                        members
                            .iter()
                            .filter_map(|m| tasks.get(m.as_str()).copied()),
                    );
                }
            }
            v
        })
        .collect()
}

/// [`Plan::dep_indices`] from the parts of a plan it needs: each task's id and `after`,
/// each race's id and members, each gate's id and `after`.
fn deps_of<'a>(
    tasks: &[(&'a str, &'a [String])],
    races: impl Iterator<Item = (&'a str, &'a [String])>,
    gates: impl Iterator<Item = (&'a str, &'a [String])>,
) -> Vec<Vec<usize>> {
    let index: HashMap<&str, usize> = tasks.iter().enumerate().map(|(i, t)| (t.0, i)).collect();
    // A dependency on a gate is one on each task of its `after`, as on a race.
    let gates: Vec<(String, &[String])> = gates
        .map(|(id, after)| (super::gate_dep_name(id), after))
        .collect();
    let mut groups: HashMap<&str, &[String]> = races.collect();
    groups.extend(gates.iter().map(|(n, after)| (n.as_str(), *after)));
    task_deps(tasks.iter().map(|t| t.1), &index, &groups)
}

/// [`Plan::waves`] from the parts of a plan it needs (see [`deps_of`]): for a reader of
/// `plan.json` that keeps only these rather than a whole [`Plan`] (the session model).
pub fn waves_of<'a>(
    tasks: &[(&'a str, &'a [String])],
    races: impl Iterator<Item = (&'a str, &'a [String])>,
    gates: impl Iterator<Item = (&'a str, &'a [String])>,
) -> Vec<Vec<usize>> {
    let g = Graph::of_tasks(deps_of(tasks, races, gates));
    let tasks = |wave: Vec<_>| wave.into_iter().filter_map(|n| g.task_of(n)).collect();
    g.waves().into_iter().map(tasks).collect()
}

impl Plan {
    /// Task ids and their indices.
    pub(super) fn task_index(&self) -> HashMap<&str, usize> {
        let ids = self.tasks.iter().map(|t| t.id.as_str());
        ids.enumerate().map(|(i, id)| (id, i)).collect()
    }

    /// For each task (by index), the indices of the tasks it depends on; a dependency on a
    /// race counts as one on each of its members (for waves, paths and cycle checks).
    pub fn dep_indices(&self) -> Vec<Vec<usize>> {
        let tasks = self
            .tasks
            .iter()
            .map(|t| (t.id.as_str(), t.after.as_slice()));
        let races = self
            .races
            .iter()
            .map(|r| (r.id.as_str(), r.tasks.as_slice()));
        let gates = self
            .gates
            .iter()
            .map(|g| (g.id.as_str(), g.after.as_slice()));
        deps_of(&tasks.collect::<Vec<_>>(), races, gates)
    }

    /// The task graph: tasks only, races standing for their members.
    pub(super) fn task_graph(&self) -> Graph {
        Graph::of_tasks(self.dep_indices())
    }

    /// The scheduler's graph: tasks, then race nodes, then signal nodes, then gate nodes.
    pub fn graph(&self) -> Graph {
        let mut kinds: Vec<NodeKind> = (0..self.tasks.len()).map(NodeKind::Task).collect();
        let mut by_id: HashMap<&str, NodeId> = self
            .task_index()
            .into_iter()
            .map(|(id, i)| (id, NodeId(i)))
            .collect();
        for (k, r) in self.races.iter().enumerate() {
            by_id.insert(&r.id, NodeId(kinds.len()));
            kinds.push(NodeKind::Race(k));
        }
        let mut signals: HashMap<&str, NodeId> = HashMap::new();
        for sig in self.tasks.iter().flat_map(|t| &t.after_signals) {
            signals.entry(sig).or_insert_with(|| {
                kinds.push(NodeKind::Signal(sig.clone()));
                NodeId(kinds.len() - 1)
            });
        }
        let gate_names: Vec<String> = self.gates.iter().map(|g| g.dep_name()).collect();
        let first_gate = kinds.len();
        for (k, name) in gate_names.iter().enumerate() {
            by_id.insert(name, NodeId(kinds.len()));
            kinds.push(NodeKind::Gate(k));
        }
        let mut deps = vec![Vec::new(); kinds.len()];
        for (k, g) in self.gates.iter().enumerate() {
            deps[first_gate + k] = g
                .after
                .iter()
                .filter_map(|d| by_id.get(d.as_str()).copied())
                .collect();
        }
        for (ds, t) in deps.iter_mut().zip(&self.tasks) {
            let after = t.after.iter().filter_map(|d| by_id.get(d.as_str()));
            let waits = t
                .after_signals
                .iter()
                .filter_map(|s| signals.get(s.as_str()));
            *ds = after.chain(waits).copied().collect();
        }
        Graph::new(kinds, deps)
    }

    /// The race a task belongs to, if any.
    pub fn race_of(&self, task: &str) -> Option<usize> {
        self.races
            .iter()
            .position(|r| r.tasks.iter().any(|t| t == task))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{parse, tasks};
    use super::*;

    fn ids(v: &[usize]) -> Vec<NodeId> {
        v.iter().copied().map(NodeId).collect()
    }

    #[test]
    fn the_schedulers_graph_puts_tasks_then_races_then_signals() {
        let p = parse(
            "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"t\"\nafter = [\"signal:go\"]\n\
             [[task]]\nid = \"b\"\nrun = \"t\"\n[[task]]\nid = \"c\"\nrun = \"t\"\n\
             after = [\"r\", \"signal:stop\", \"signal:go\"]\n\
             [[task]]\nid = \"d\"\nrun = \"t\"\nafter = [\"c\", \"signal:go\"]\n\
             [[race]]\nid = \"r\"\ntasks = [\"a\", \"b\"]\n",
        )
        .unwrap();
        let g = p.graph();
        assert_eq!(g.len(), 7);
        let kinds: Vec<&NodeKind> = g.nodes().map(|n| g.kind(n)).collect();
        assert_eq!(
            kinds,
            [
                &NodeKind::Task(0),
                &NodeKind::Task(1),
                &NodeKind::Task(2),
                &NodeKind::Task(3),
                &NodeKind::Race(0),
                &NodeKind::Signal("go".into()),
                &NodeKind::Signal("stop".into()),
            ]
        );
        assert_eq!(g.race_nodes(), ids(&[4]));
        assert_eq!(
            g.signals(),
            [
                ("go".to_string(), NodeId(5)),
                ("stop".to_string(), NodeId(6))
            ]
        );
        // `after` first, in plan order, then signals; a repeated signal is one node.
        assert_eq!(g.deps(NodeId(2)), ids(&[4, 6, 5]));
        assert_eq!(g.deps(NodeId(3)), ids(&[2, 5]));
        assert_eq!(g.dependents(NodeId(5)), ids(&[0, 2, 3]));
        assert!(
            g.deps(NodeId(4)).is_empty(),
            "races are resolved, not run after members"
        );
        assert_eq!(
            g.external_flags(),
            [false, false, false, false, true, true, true]
        );
        assert_eq!(g.signal("stop"), Some(NodeId(6)));
        assert_eq!(g.signal("nope"), None);
        assert_eq!(g.dep_lists()[2], [4, 6, 5]);
        assert_eq!(g.task_of(NodeId(3)), Some(3));
        assert_eq!(g.task_of(NodeId(4)), None);
        // The task graph has no race or signal nodes: the race stands for its members.
        assert_eq!(p.dep_indices(), [vec![], vec![], vec![0, 1], vec![2]]);
        assert_eq!(p.race_of("b"), Some(0));
        assert_eq!(p.race_of("c"), None);
    }

    #[test]
    fn topological_order_and_cycles_on_node_ids() {
        let g = Graph::of_tasks(vec![vec![1], vec![], vec![0, 1]]);
        assert_eq!(g.topo_order(), Some(ids(&[1, 0, 2])));
        assert!(g.find_cycle().is_empty());
        // 0 -> 1 -> 2 -> 1, 3 -> 3: the cycle through the lowest id on one.
        let g = Graph::of_tasks(vec![vec![1], vec![2], vec![1], vec![3]]);
        assert_eq!(g.topo_order(), None);
        assert_eq!(g.find_cycle(), ids(&[1, 2]));
        assert_eq!(g.components()[1], g.components()[2]);
        assert_ne!(g.components()[0], g.components()[1]);
        let g = Graph::of_tasks(vec![vec![], vec![1]]);
        assert_eq!(g.find_cycle(), ids(&[1]));
    }

    #[test]
    fn waves_and_critical_path_on_node_ids() {
        let p = parse(&tasks(&[
            ("a", &[]),
            ("b", &["a"]),
            ("c", &[]),
            ("d", &["b", "c"]),
        ]))
        .unwrap();
        let g = p.task_graph();
        assert_eq!(g.waves(), [ids(&[0, 2]), ids(&[1]), ids(&[3])]);
        assert_eq!(g.critical_path(), ids(&[0, 1, 3]));
        assert!(Graph::of_tasks(Vec::new()).critical_path().is_empty());
    }
}
