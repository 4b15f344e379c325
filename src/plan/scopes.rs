//! Write scopes: the `owns` patterns a task declares (paths it will write, relative to the
//! plan's directory), their syntax, and the exact test of whether two of them can match
//! the same path; and which tasks may run at the same time (neither reachable from the
//! other along ordering edges). Validation uses it to refuse a plan in which two tasks
//! that may run at the same time own overlapping scopes.
//!
//! The pattern language is kept small so that overlap can be decided exactly, not
//! approximated:
//!
//! - a literal relative path (`db/schema.rb`, `app`) matches that path only: a literal
//!   directory does not cover what is below it;
//! - `dir/**` matches `dir` itself and every path below it; a bare `**` matches every
//!   path. `**` may only be the whole last component;
//! - `*` inside a component (`app/*.rb`, `logs/*/out`, `a*b*c`) matches any run of
//!   characters without `/`, dot files included. A component is never empty, so a
//!   component `*` matches any one name.
//!
//! Anything else is refused: absolute paths, `.` and `..` components, empty components,
//! a trailing `/`, `**` anywhere but as the whole last component, `?`, `[`, `]`, `{`, `}`,
//! `\`, components over [`NAME_MAX`] bytes, and the empty string. What is accepted is
//! already in normal form, so a pattern is stored as written.

use std::collections::VecDeque;
use std::fmt;

/// The longest file name Linux allows: a component longer than this can name no file, and
/// the bound keeps the component intersection (quadratic in the lengths) small.
pub const NAME_MAX: usize = 255;

/// A checked `owns` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The components before any `**`, each a literal name or a glob with `*`.
    prefix: Vec<String>,
    /// Ends in `**`: matches the prefix and everything below it.
    subtree: bool,
}

/// Why a pattern was refused (the message follows `invalid owns pattern "...": `).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("empty")]
    Empty,
    #[error("absolute (owns are relative to the plan's directory)")]
    Absolute,
    #[error("a \".\" or \"..\" component")]
    DotComponent,
    #[error("an empty component")]
    EmptyComponent,
    #[error("ends with \"/\" (name the path, or add \"**\" for everything below it)")]
    TrailingSlash,
    #[error("\"**\" only as the whole last component")]
    MisplacedDoubleStar,
    #[error("{0:?} is not supported (only \"*\" within a component, and \"**\" as the last)")]
    Unsupported(char),
    #[error("a component longer than {NAME_MAX} bytes")]
    LongComponent,
}

impl Pattern {
    /// Check `text` against the pattern language.
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        if text.is_empty() {
            return Err(PatternError::Empty);
        }
        if text.starts_with('/') {
            return Err(PatternError::Absolute);
        }
        if let Some(c) = text.chars().find(|c| "?[]{}\\".contains(*c)) {
            return Err(PatternError::Unsupported(c));
        }
        if text.ends_with('/') {
            return Err(PatternError::TrailingSlash);
        }
        let mut prefix: Vec<String> = text.split('/').map(str::to_string).collect();
        let subtree = prefix.last().is_some_and(|c| c == "**");
        if subtree {
            prefix.pop();
        }
        for c in &prefix {
            if c.is_empty() {
                return Err(PatternError::EmptyComponent);
            }
            if c == "." || c == ".." {
                return Err(PatternError::DotComponent);
            }
            if c.contains("**") {
                return Err(PatternError::MisplacedDoubleStar);
            }
            if c.len() > NAME_MAX {
                return Err(PatternError::LongComponent);
            }
        }
        Ok(Pattern { prefix, subtree })
    }

    /// A path that both patterns match, if there is one: the test is exact.
    ///
    /// The paths `p` matches have exactly `p.prefix.len()` components (or, with `**`,
    /// at least that many, and at least one), the first ones matching the prefix. So two
    /// patterns share a path iff their prefixes intersect component by component where
    /// both have one, and the shorter prefix either is as long as the other or ends in
    /// `**` (then the longer pattern's own paths are below it).
    pub fn overlap(&self, other: &Pattern) -> Option<String> {
        let (short, long) = self.aligned(other)?;
        let mut path: Vec<String> = short
            .prefix
            .iter()
            .zip(&long.prefix)
            .map(|(a, b)| common_name(a, b))
            .collect::<Option<_>>()?;
        path.extend(
            long.prefix[short.prefix.len()..]
                .iter()
                .map(|c| instance(c)),
        );
        if path.is_empty() {
            // Both are a bare `**`.
            path.push("x".to_string());
        }
        Some(path.join("/"))
    }

    /// Whether [`Pattern::overlap`] finds a path, without making one: the test run on
    /// every pair of patterns of tasks that may run together, so literal components are
    /// compared without any allocation.
    pub fn overlaps(&self, other: &Pattern) -> bool {
        let Some((short, long)) = self.aligned(other) else {
            return false;
        };
        short.prefix.iter().zip(&long.prefix).all(|(a, b)| {
            if a.contains('*') || b.contains('*') {
                common_name(a, b).is_some()
            } else {
                a == b
            }
        })
    }

    /// Whether `path` (relative, `/`-separated, as git names a file) is one the pattern
    /// matches: as many components as the prefix (at least as many, and at least one,
    /// with `**`), each matching its glob. Every character of `path` is literal. Used to
    /// tell which files a task changed outside its `owns` (`crate::worktree`).
    pub fn matches(&self, path: &str) -> bool {
        let names: Vec<&str> = path.split('/').collect();
        let fits = if self.subtree {
            names.len() >= self.prefix.len() && !path.is_empty()
        } else {
            names.len() == self.prefix.len()
        };
        fits && self
            .prefix
            .iter()
            .zip(&names)
            .all(|(glob, name)| glob_matches(glob, name))
    }

    /// The pattern with the shorter prefix, then the other, when their lengths allow a
    /// shared path: equal, or the shorter ending in `**`.
    fn aligned<'p>(&'p self, other: &'p Pattern) -> Option<(&'p Pattern, &'p Pattern)> {
        let (short, long) = if self.prefix.len() <= other.prefix.len() {
            (self, other)
        } else {
            (other, self)
        };
        let fits = short.prefix.len() == long.prefix.len() || short.subtree;
        fits.then_some((short, long))
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<&str> = self.prefix.iter().map(String::as_str).collect();
        if self.subtree {
            parts.push("**");
        }
        f.write_str(&parts.join("/"))
    }
}

/// Whether glob component `glob` (`*` any run of characters) matches `name`, every
/// character of which is literal. The classic greedy match: when a literal fails, only
/// the last `*` seen takes one more character (letting an earlier one take more can
/// never help what the later one could not), so it is O(len glob x len name), never
/// exponential.
fn glob_matches(glob: &str, name: &str) -> bool {
    let (g, n): (Vec<char>, Vec<char>) = (glob.chars().collect(), name.chars().collect());
    let (mut i, mut j) = (0, 0);
    // The position after the last `*`, and where in `name` that `*` stopped.
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < g.len() && g[i] == '*' {
            star = Some((i + 1, j));
            i += 1;
        } else if i < g.len() && g[i] == n[j] {
            i += 1;
            j += 1;
        } else if let Some((after, taken)) = star {
            // Let the last `*` take one more character and try again from there.
            star = Some((after, taken + 1));
            i = after;
            j = taken + 1;
        } else {
            return false;
        }
    }
    g[i..].iter().all(|&c| c == '*')
}

/// One name a glob component matches: its literal characters, or `x` for a bare `*`.
fn instance(glob: &str) -> String {
    let s: String = glob.chars().filter(|&c| c != '*').collect();
    if s.is_empty() { "x".to_string() } else { s }
}

/// A name (non-empty, without `/`) that both glob components match, if there is one.
///
/// Each glob is an automaton whose state is a position in it: a literal character
/// moves on by that character, a `*` may be skipped, or may consume any character and
/// stay. The globs share a string iff the product automaton reaches both ends from both
/// starts; a breadth-first search over the (len a + 1) x (len b + 1) pairs of positions
/// finds that, and the moves it took spell the string. The only moves that consume
/// nothing are skips of a `*`, so an empty result means both are all stars: one
/// character is then matched as well.
fn common_name(a: &str, b: &str) -> Option<String> {
    if a == b {
        return Some(instance(a));
    }
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let id = |i: usize, j: usize| i * width + j;
    // How each state was first reached: from which state, consuming which character.
    let mut came: Vec<Option<(usize, Option<char>)>> = vec![None; (a.len() + 1) * width];
    let start = id(0, 0);
    came[start] = Some((start, None));
    let mut queue = VecDeque::from([(0, 0)]);
    let end = id(a.len(), b.len());
    while let Some((i, j)) = queue.pop_front() {
        if (i, j) == (a.len(), b.len()) {
            break;
        }
        let (ca, cb) = (a.get(i).copied(), b.get(j).copied());
        let mut next: Vec<(usize, usize, Option<char>)> = Vec::with_capacity(3);
        if ca == Some('*') {
            next.push((i + 1, j, None));
        }
        if cb == Some('*') {
            next.push((i, j + 1, None));
        }
        match (ca, cb) {
            (Some('*'), Some(c)) if c != '*' => next.push((i, j + 1, Some(c))),
            (Some(c), Some('*')) if c != '*' => next.push((i + 1, j, Some(c))),
            (Some(x), Some(y)) if x == y && x != '*' => next.push((i + 1, j + 1, Some(x))),
            _ => {}
        }
        for (ni, nj, c) in next {
            if came[id(ni, nj)].is_none() {
                came[id(ni, nj)] = Some((id(i, j), c));
                queue.push_back((ni, nj));
            }
        }
    }
    came[end]?;
    let mut chars = Vec::new();
    let mut at = end;
    while at != start {
        let (from, c) = came[at]?;
        chars.extend(c);
        at = from;
    }
    if chars.is_empty() {
        return Some("x".to_string());
    }
    Some(chars.into_iter().rev().collect())
}

/// Which tasks may not run at the same time: pairs where one is reachable from the other
/// along ordering edges. `order[i]` lists the tasks task `i` runs after; today those are
/// its `after` dependencies (a race standing for each member, see `Plan::dep_indices`),
/// while signals order nothing, since any task may raise one. Another kind of ordering
/// edge only has to be added to these lists.
///
/// Only the tasks of interest (those with `owns`) are sources: 64 at a time, one pass over
/// a topological order carries a bit per source down to every task after it, and one pass
/// back up to every task before it. That is O((V + E) * k / 64) time and O(V) memory for
/// k sources, where a search from each source would be O((V + E) * k).
pub struct Ordering<'a> {
    order: &'a [Vec<usize>],
    dependents: Vec<Vec<usize>>,
    topo: Vec<usize>,
}

impl<'a> Ordering<'a> {
    /// `order` must be acyclic (validation has refused cycles before this); a cycle only
    /// loses the tasks on or behind it from the order, never panics.
    pub fn new(order: &'a [Vec<usize>]) -> Self {
        let mut dependents = vec![Vec::new(); order.len()];
        for (i, ds) in order.iter().enumerate() {
            for &d in ds {
                if let Some(v) = dependents.get_mut(d) {
                    v.push(i);
                }
            }
        }
        let mut unmet: Vec<usize> = order.iter().map(Vec::len).collect();
        let mut topo: Vec<usize> = (0..order.len()).filter(|&i| unmet[i] == 0).collect();
        let mut k = 0;
        while let Some(&u) = topo.get(k) {
            k += 1;
            for &d in &dependents[u] {
                unmet[d] -= 1;
                if unmet[d] == 0 {
                    topo.push(d);
                }
            }
        }
        Ordering {
            order,
            dependents,
            topo,
        }
    }

    /// For each task of `sources` (at most 64), a word per task whose bit `s` says that
    /// task and `sources[s]` are ordered (one is reachable from the other).
    pub fn related(&self, sources: &[usize]) -> Vec<u64> {
        let n = self.order.len();
        let mut seed = vec![0u64; n];
        for (s, &t) in sources.iter().enumerate().take(64) {
            seed[t] |= 1 << s;
        }
        // Down: bits flow from each task to those after it.
        let mut down = seed.clone();
        for &u in &self.topo {
            let bits = down[u];
            for &d in &self.dependents[u] {
                down[d] |= bits;
            }
        }
        // Up: bits flow from each task to those before it.
        let mut up = seed;
        for &u in self.topo.iter().rev() {
            let bits = up[u];
            for &d in &self.order[u] {
                if let Some(w) = up.get_mut(d) {
                    *w |= bits;
                }
            }
        }
        down.iter().zip(&up).map(|(d, u)| d | u).collect()
    }
}

/// Two tasks that may run at the same time and own overlapping scopes: the tasks by
/// index (`first` earlier in the plan), the index of each one's pattern, and a path both
/// match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub first: usize,
    pub first_pattern: usize,
    pub second: usize,
    pub second_pattern: usize,
    pub path: String,
}

/// The first conflict, ordered by the later task, then the earlier task, then the later
/// task's pattern (so the answer never depends on how the work was split): `owns[i]` are
/// task `i`'s parsed patterns, `order` the ordering edges of [`Ordering`]. Only pairs of
/// tasks that [`Prefixes`] says may share a path are looked at.
pub fn first_conflict(owns: &[Vec<Pattern>], order: &[Vec<usize>]) -> Option<Conflict> {
    let owners: Vec<usize> = (0..owns.len()).filter(|&i| !owns[i].is_empty()).collect();
    if owners.len() < 2 {
        return None;
    }
    let prefixes = Prefixes::new(owns);
    let ordering = Ordering::new(order);
    let mut best: Option<Conflict> = None;
    let mut partners = Vec::new();
    for chunk in owners.chunks(64) {
        let related = ordering.related(chunk);
        for (s, &a) in chunk.iter().enumerate() {
            prefixes.partners(a, &mut partners);
            for &b in partners.iter().filter(|&&b| b > a) {
                if related[b] & (1 << s) != 0
                    || best.as_ref().is_some_and(|c| (c.second, c.first) <= (b, a))
                {
                    continue;
                }
                if let Some(c) = pair_conflict(&owns[a], &owns[b], a, b) {
                    best = Some(c);
                }
            }
        }
    }
    best
}

/// The patterns in a tree of their literal prefixes: the leading components without `*`
/// (`out/t1` of `out/t1/**`, `app` of `app/*/user.rb`, none of `**`). Two patterns can
/// share a path only if one's literal prefix starts the other's: where both have a
/// literal component, the two must be equal. So a pattern is compared with those on its
/// node, above it and below it only, and ten thousand tasks owning `out/<id>/**` each
/// make no pairs at all.
struct Prefixes<'p> {
    child: std::collections::HashMap<(usize, &'p str), usize>,
    parent: Vec<usize>,
    children: Vec<Vec<usize>>,
    /// The tasks with a pattern on each node.
    tasks: Vec<Vec<usize>>,
    /// The nodes of each task's patterns.
    nodes: Vec<Vec<usize>>,
}

impl<'p> Prefixes<'p> {
    const ROOT: usize = 0;

    fn new(owns: &'p [Vec<Pattern>]) -> Self {
        let mut t = Prefixes {
            child: std::collections::HashMap::new(),
            parent: vec![Self::ROOT],
            children: vec![Vec::new()],
            tasks: vec![Vec::new()],
            nodes: vec![Vec::new(); owns.len()],
        };
        for (task, patterns) in owns.iter().enumerate() {
            for p in patterns {
                let literal = p.prefix.iter().take_while(|c| !c.contains('*'));
                let node = literal.fold(Self::ROOT, |at, c| t.node(at, c));
                t.tasks[node].push(task);
                t.nodes[task].push(node);
            }
        }
        t
    }

    /// The child of `at` named `name`, made if need be.
    fn node(&mut self, at: usize, name: &'p str) -> usize {
        let next = self.parent.len();
        let n = *self.child.entry((at, name)).or_insert(next);
        if n == next {
            self.parent.push(at);
            self.children.push(Vec::new());
            self.tasks.push(Vec::new());
            self.children[at].push(n);
        }
        n
    }

    /// Into `out` (cleared first, sorted, without repeats): the tasks with a pattern
    /// whose literal prefix starts, or is started by, that of one of `task`'s.
    fn partners(&self, task: usize, out: &mut Vec<usize>) {
        out.clear();
        for &n in &self.nodes[task] {
            let mut up = n;
            while up != Self::ROOT {
                up = self.parent[up];
                out.extend(&self.tasks[up]);
            }
            let mut below = vec![n];
            while let Some(d) = below.pop() {
                out.extend(&self.tasks[d]);
                below.extend(&self.children[d]);
            }
        }
        out.sort_unstable();
        out.dedup();
    }
}

/// The first pattern of `b` (then of `a`) that overlaps one of the other task's.
fn pair_conflict(pa: &[Pattern], pb: &[Pattern], a: usize, b: usize) -> Option<Conflict> {
    pb.iter().enumerate().find_map(|(jb, q)| {
        pa.iter().enumerate().find_map(|(ja, p)| {
            let path = p.overlaps(q).then(|| p.overlap(q)).flatten();
            path.map(|path| Conflict {
                first: a,
                first_pattern: ja,
                second: b,
                second_pattern: jb,
                path,
            })
        })
    })
}

#[cfg(test)]
mod tests;
