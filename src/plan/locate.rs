//! Where things are in a plan's text: the line and column of a key's value, for error
//! messages, and the byte offsets of a TOML plan's top-level table headers, for cutting a
//! large plan into pieces.
//!
//! Validation works on the format-agnostic raw structs, which have no positions. When it
//! refuses a plan it asks [`Source`] where the offending value is; Source then reads the
//! text a second time into [`Positions`]: a TOML plan through `toml::Spanned` values, a
//! JSON plan through a small scanner of its own (`locate_json`: serde_json keeps no
//! positions). That second read happens only once an error needs it: doing it up front
//! would double the time taken to validate a 100 000-task plan.
//!
//! Once matrices were expanded (`matrix`), the tasks validation sees are no longer the
//! tasks as written: [`Origins`] maps each back to its template, so that an expanded
//! task's errors point at the template's lines.

use std::cell::OnceCell;
use std::collections::HashMap;

use serde::Deserialize;

use super::error::{DurationKey, Location, PlanError, PlanErrorKind};

/// The plan being validated: its name for messages, its text, and (once asked for) where
/// its values are.
pub(super) struct Source<'a> {
    pub(super) file: &'a str,
    pub(super) text: &'a str,
    is_toml: bool,
    positions: OnceCell<Positions>,
    /// Set once matrices are expanded, when the plan has any.
    origins: Option<Origins>,
}

/// Where the tasks validation sees come from in the text, once matrices expanded their
/// templates (`matrix`): the written task of each, and, for an `after` list in which a
/// template's id stood for all its expansions, the written entry of each entry.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Origins {
    /// By task index: the index of the `[[task]]` it was written as (or made from).
    pub(super) task: Vec<usize>,
    /// By task index, for the tasks whose `after` changed: entry -> written entry.
    pub(super) after: HashMap<usize, Vec<usize>>,
    /// The same for the `after` lists of gates.
    pub(super) gate_after: HashMap<usize, Vec<usize>>,
}

/// One step of the way to a value: a key of a table, or an index of an array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seg<'k> {
    Key(&'k str),
    Index(usize),
}

/// A part of a plan that holds values: the root, `[defaults]`, or the task at an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Table {
    Root,
    Defaults,
    Task(usize),
}

/// Where the values validation may refuse start (byte offsets), in either format.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Positions {
    pub(super) name: Option<usize>,
    pub(super) workers: Option<usize>,
    pub(super) lease: Option<usize>,
    pub(super) defaults: TablePositions,
    pub(super) task: Vec<TablePositions>,
    /// Each pool's value in `[resources]`, by name.
    pub(super) resources: Vec<(String, usize)>,
    pub(super) on_failure: Option<usize>,
    /// `[limits] memory` and `min_free_memory`.
    pub(super) limits_memory: Option<usize>,
    pub(super) min_free_memory: Option<usize>,
    pub(super) cleanup_workers: Option<usize>,
    pub(super) gate: Vec<GatePositions>,
}

/// One `[[gate]]`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct GatePositions {
    pub(super) id: Option<usize>,
    pub(super) after: Vec<usize>,
    pub(super) run: Option<usize>,
    pub(super) timeout: Option<usize>,
}

/// `[defaults]` or one task (`[defaults]` has no `id` or `after`).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct TablePositions {
    pub(super) id: Option<usize>,
    pub(super) after: Vec<usize>,
    pub(super) owns: Vec<usize>,
    pub(super) timeout: Option<usize>,
    pub(super) kill_grace: Option<usize>,
    pub(super) cwd: Option<usize>,
    pub(super) backoff: BackoffPositions,
    pub(super) resources: Option<usize>,
    pub(super) on_failure: Option<usize>,
    pub(super) memory: Option<usize>,
    pub(super) cleanup: Option<usize>,
    pub(super) cleanup_delay: Option<usize>,
    pub(super) cleanup_timeout: Option<usize>,
    pub(super) rollback: Option<usize>,
    pub(super) emergency: Option<usize>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct BackoffPositions {
    pub(super) initial: Option<usize>,
    pub(super) max: Option<usize>,
    pub(super) factor: Option<usize>,
    pub(super) jitter: Option<usize>,
}

impl<'a> Source<'a> {
    /// JSON when the name ends in `.json`, TOML otherwise.
    pub(super) fn new(file: &'a str, text: &'a str) -> Self {
        Source {
            file,
            text,
            is_toml: !file.ends_with(".json"),
            positions: OnceCell::new(),
            origins: None,
        }
    }

    /// From now on, task indices are those of the expanded plan.
    pub(super) fn set_origins(&mut self, origins: Origins) {
        self.origins = Some(origins);
    }

    /// The index of the `[[task]]` task `i` was written as, or made from by a matrix.
    pub(super) fn written(&self, i: usize) -> Option<usize> {
        match &self.origins {
            None => Some(i),
            Some(o) => o.task.get(i).copied(),
        }
    }

    /// Where the value at `path` is in the `[[task]]` written at index `i`: any value,
    /// however deep (`["env", "TABLE"]`, `["matrix", "shard", 1]`). The text is read
    /// again for each question, which only an error asks.
    pub(super) fn written_task_value_pos(&self, i: usize, path: &[Seg]) -> Option<usize> {
        let mut full = vec![Seg::Key("task"), Seg::Index(i)];
        full.extend_from_slice(path);
        if self.is_toml {
            toml_value_pos(self.text, &full)
        } else {
            super::locate_json::value_pos(self.text, &full)
        }
    }

    /// Where the root key `key` is given, if anywhere.
    pub(super) fn root_value_pos(&self, key: &str) -> Option<usize> {
        let path = [Seg::Key(key)];
        if self.is_toml {
            toml_value_pos(self.text, &path)
        } else {
            super::locate_json::value_pos(self.text, &path)
        }
    }

    pub(super) fn is_toml(&self) -> bool {
        self.is_toml
    }

    /// An error at byte `offset` of the text, when known.
    pub(super) fn error(&self, offset: Option<usize>, kind: PlanErrorKind) -> PlanError {
        PlanError::new(self.file, offset.map(|o| self.location(o)), kind)
    }

    /// The line and column of a byte offset (clamped to the text).
    pub(super) fn location(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let before = &self.text.as_bytes()[..offset];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        let col = String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count()
            + 1;
        Location { line, col }
    }

    fn positions(&self) -> &Positions {
        self.positions.get_or_init(|| {
            if self.is_toml {
                toml::from_str::<Locs>(self.text)
                    .map(Positions::from)
                    .unwrap_or_default()
            } else {
                super::locate_json::positions(self.text).unwrap_or_default()
            }
        })
    }

    fn table(&self, table: Table) -> Option<&TablePositions> {
        let p = self.positions();
        match table {
            Table::Root => None,
            Table::Defaults => Some(&p.defaults),
            Table::Task(i) => p.task.get(self.written(i)?),
        }
    }

    /// The plan's `name`.
    pub(super) fn name_pos(&self) -> Option<usize> {
        self.positions().name
    }

    /// The plan's `workers`.
    pub(super) fn workers_pos(&self) -> Option<usize> {
        self.positions().workers
    }

    /// The plan's `cleanup_workers`.
    pub(super) fn cleanup_workers_pos(&self) -> Option<usize> {
        self.positions().cleanup_workers
    }

    /// An auxiliary command of the task at index `i`: `cleanup`, `rollback` or
    /// `emergency`.
    pub(super) fn command_pos(&self, i: usize, key: &str) -> Option<usize> {
        let t = self.table(Table::Task(i))?;
        match key {
            "cleanup" => t.cleanup,
            "rollback" => t.rollback,
            _ => t.emergency,
        }
    }

    /// The `[[gate]]` at index `k`.
    pub(super) fn gate_pos(&self, k: usize) -> Option<&GatePositions> {
        self.positions().gate.get(k)
    }

    /// Entry `j` of the `after` list of the `[[gate]]` at index `k`.
    pub(super) fn gate_after_pos(&self, k: usize, j: usize) -> Option<usize> {
        let j = entry(self.origins.as_ref().map(|o| &o.gate_after), k, j)?;
        self.gate_pos(k)?.after.get(j).copied()
    }

    /// The `id` of the task at index `i`.
    pub(super) fn id_pos(&self, i: usize) -> Option<usize> {
        self.table(Table::Task(i))?.id
    }

    /// Entry `j` of the `after` list of the task at index `i`.
    pub(super) fn after_pos(&self, i: usize, j: usize) -> Option<usize> {
        let j = entry(self.origins.as_ref().map(|o| &o.after), i, j)?;
        self.table(Table::Task(i))?.after.get(j).copied()
    }

    /// Entry `j` of the `owns` list of the task at index `i`.
    pub(super) fn owns_pos(&self, i: usize, j: usize) -> Option<usize> {
        self.table(Table::Task(i))?.owns.get(j).copied()
    }

    /// The `cwd` of `table` (`[defaults]` or a task).
    pub(super) fn cwd_pos(&self, table: Table) -> Option<usize> {
        self.table(table)?.cwd
    }

    /// A duration-valued key of `table` (`lease` is always the root's).
    pub(super) fn duration_pos(&self, table: Table, key: DurationKey) -> Option<usize> {
        match key {
            DurationKey::Lease => self.positions().lease,
            DurationKey::Timeout => self.table(table)?.timeout,
            DurationKey::KillGrace => self.table(table)?.kill_grace,
            DurationKey::BackoffInitial => self.table(table)?.backoff.initial,
            DurationKey::BackoffMax => self.table(table)?.backoff.max,
            DurationKey::CleanupDelay => self.table(table)?.cleanup_delay,
            DurationKey::CleanupTimeout => self.table(table)?.cleanup_timeout,
        }
    }

    /// The pool `name` of `[resources]`.
    pub(super) fn pool_pos(&self, name: &str) -> Option<usize> {
        let pools = &self.positions().resources;
        pools.iter().find(|(n, _)| n == name).map(|&(_, at)| at)
    }

    /// A size: `[limits] memory` or `min_free_memory` (`Table::Root`), or a task's
    /// `memory`.
    pub(super) fn size_pos(&self, table: Table, key: &str) -> Option<usize> {
        match (table, key) {
            (Table::Root, "memory") => self.positions().limits_memory,
            (Table::Root, _) => self.positions().min_free_memory,
            (t, _) => self.table(t)?.memory,
        }
    }

    /// `on_failure` of the plan or of a task.
    pub(super) fn on_failure_pos(&self, table: Table) -> Option<usize> {
        match table {
            Table::Root => self.positions().on_failure,
            t => self.table(t)?.on_failure,
        }
    }

    /// The `resources` of the task at index `i`.
    pub(super) fn claims_pos(&self, i: usize) -> Option<usize> {
        self.table(Table::Task(i))?.resources
    }

    /// `backoff.factor` of `table`.
    pub(super) fn factor_pos(&self, table: Table) -> Option<usize> {
        self.table(table)?.backoff.factor
    }

    /// `backoff.jitter` of `table`.
    pub(super) fn jitter_pos(&self, table: Table) -> Option<usize> {
        self.table(table)?.backoff.jitter
    }
}

/// The written entry of entry `j` of list `owner`, given how lists changed.
fn entry(changed: Option<&HashMap<usize, Vec<usize>>>, owner: usize, j: usize) -> Option<usize> {
    match changed.and_then(|c| c.get(&owner)) {
        None => Some(j),
        Some(map) => map.get(j).copied(),
    }
}

/// Where the value at `path` (from the root) starts in a TOML text.
fn toml_value_pos(text: &str, path: &[Seg]) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    fn get<'t, 'i>(t: &'t DeTable<'i>, key: &str) -> Option<&'t toml::Spanned<DeValue<'i>>> {
        t.iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map(|(_, v)| v)
    }
    let root = DeTable::parse(text).ok()?;
    let (Seg::Key(first), rest) = path.split_first()? else {
        return None;
    };
    let mut value = get(root.get_ref(), first)?;
    for seg in rest {
        value = match (seg, value.get_ref()) {
            (Seg::Key(k), DeValue::Table(t)) => get(t, k)?,
            (Seg::Index(j), DeValue::Array(a)) => a.get(*j)?,
            _ => return None,
        };
    }
    Some(value.span().start)
}

/// A value's position in a TOML plan. Values are kept as `toml::Value` so that this view
/// never fails where the real schema succeeded (it only ever reads a valid plan).
type Loc = Option<toml::Spanned<toml::Value>>;

/// The start offset of a located value.
fn start(loc: &Loc) -> Option<usize> {
    loc.as_ref().map(|s| s.span().start)
}

/// The start offsets of a located list's entries.
fn starts(list: Option<Vec<toml::Spanned<toml::Value>>>) -> Vec<usize> {
    let list = list.unwrap_or_default();
    list.iter().map(|s| s.span().start).collect()
}

/// Where things are in a TOML plan (byte offsets). No `deny_unknown_fields`: keys this
/// view does not need are simply skipped.
#[derive(Debug, Default, Deserialize)]
struct Locs {
    name: Loc,
    workers: Loc,
    lease: Loc,
    #[serde(default)]
    defaults: TableLocs,
    #[serde(default)]
    task: Vec<TableLocs>,
    #[serde(default)]
    resources: std::collections::BTreeMap<String, Loc>,
    on_failure: Loc,
    #[serde(default)]
    limits: LimitsLocs,
    cleanup_workers: Loc,
    #[serde(default)]
    gate: Vec<GateLocs>,
}

#[derive(Debug, Default, Deserialize)]
struct GateLocs {
    id: Loc,
    after: Option<Vec<toml::Spanned<toml::Value>>>,
    run: Loc,
    timeout: Loc,
}

#[derive(Debug, Default, Deserialize)]
struct LimitsLocs {
    memory: Loc,
    min_free_memory: Loc,
}

/// `[defaults]` or one `[[task]]` (`[defaults]` has no `id` or `after`).
#[derive(Debug, Default, Deserialize)]
struct TableLocs {
    id: Loc,
    after: Option<Vec<toml::Spanned<toml::Value>>>,
    owns: Option<Vec<toml::Spanned<toml::Value>>>,
    timeout: Loc,
    kill_grace: Loc,
    cwd: Loc,
    #[serde(default)]
    backoff: BackoffLocs,
    resources: Loc,
    on_failure: Loc,
    memory: Loc,
    cleanup: Loc,
    cleanup_delay: Loc,
    cleanup_timeout: Loc,
    rollback: Loc,
    emergency: Loc,
}

#[derive(Debug, Default, Deserialize)]
struct BackoffLocs {
    initial: Loc,
    max: Loc,
    factor: Loc,
    jitter: Loc,
}

impl From<Locs> for Positions {
    fn from(l: Locs) -> Positions {
        Positions {
            name: start(&l.name),
            workers: start(&l.workers),
            lease: start(&l.lease),
            defaults: l.defaults.into(),
            task: l.task.into_iter().map(TablePositions::from).collect(),
            resources: l
                .resources
                .iter()
                .filter_map(|(n, loc)| Some((n.clone(), start(loc)?)))
                .collect(),
            on_failure: start(&l.on_failure),
            limits_memory: start(&l.limits.memory),
            min_free_memory: start(&l.limits.min_free_memory),
            cleanup_workers: start(&l.cleanup_workers),
            gate: l
                .gate
                .into_iter()
                .map(|g| GatePositions {
                    id: start(&g.id),
                    after: starts(g.after),
                    run: start(&g.run),
                    timeout: start(&g.timeout),
                })
                .collect(),
        }
    }
}

impl From<TableLocs> for TablePositions {
    fn from(t: TableLocs) -> TablePositions {
        TablePositions {
            id: start(&t.id),
            after: starts(t.after),
            owns: starts(t.owns),
            timeout: start(&t.timeout),
            kill_grace: start(&t.kill_grace),
            cwd: start(&t.cwd),
            backoff: BackoffPositions {
                initial: start(&t.backoff.initial),
                max: start(&t.backoff.max),
                factor: start(&t.backoff.factor),
                jitter: start(&t.backoff.jitter),
            },
            resources: start(&t.resources),
            on_failure: start(&t.on_failure),
            memory: start(&t.memory),
            cleanup: start(&t.cleanup),
            cleanup_delay: start(&t.cleanup_delay),
            cleanup_timeout: start(&t.cleanup_timeout),
            rollback: start(&t.rollback),
            emergency: start(&t.emergency),
        }
    }
}

/// What a top-level table header of a plan opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Header {
    /// `[[task]]`: the next task.
    Task,
    /// `[task.x]`: a subtable of the latest task.
    TaskSub,
    /// Any other table (`[defaults]`, `[[checkpoint]]`, ...).
    Other,
}

/// Byte offsets and kinds of a TOML text's table headers: a `[` that is the first token of
/// a line outside any inline array or table. Strings and comments are single tokens of the
/// lexer (which streams: nothing is kept), so a `[` inside one is never taken for a header.
/// `None` when a header names `task` in any other way than `[[task]]` or `[task.x]`
/// (quoted, nested arrays): the caller then parses the whole text.
pub(super) fn top_level_headers(text: &str) -> Option<Vec<(usize, Header)>> {
    use toml_parser::lexer::TokenKind as K;
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut line_start = true;
    let mut in_header = false;
    for tok in toml_parser::Source::new(text).lex() {
        match tok.kind() {
            K::Newline => {
                line_start = true;
                in_header = false;
                continue;
            }
            K::Whitespace => continue,
            K::LeftSquareBracket if line_start && depth == 0 => {
                let start = tok.span().start();
                let line = text[start..].split(['\n', '#']).next().unwrap_or("");
                let head: String = line.chars().filter(|c| !c.is_whitespace()).collect();
                let kind = if head.starts_with("[[task]]") {
                    Header::Task
                } else if head.starts_with("[task.") {
                    Header::TaskSub
                } else if head.contains("task") {
                    return None;
                } else {
                    Header::Other
                };
                out.push((start, kind));
                in_header = true;
            }
            K::LeftSquareBracket | K::LeftCurlyBracket if !in_header => depth += 1,
            K::RightSquareBracket | K::RightCurlyBracket if !in_header => {
                depth = depth.saturating_sub(1)
            }
            _ => {}
        }
        line_start = false;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_count_lines_and_characters_from_one() {
        let src = Source::new("p.toml", "ab\nçd = 1\n");
        assert_eq!(src.location(0), Location { line: 1, col: 1 });
        assert_eq!(src.location(3), Location { line: 2, col: 1 });
        // `ç` is two bytes but one column.
        assert_eq!(src.location(5), Location { line: 2, col: 2 });
        assert_eq!(src.location(999), Location { line: 3, col: 1 });
    }

    #[test]
    fn positions_of_keys_in_toml() {
        let text = "name = \"p\"\nworkers = 2\nlease = \"1s\"\n[defaults]\ntimeout = \"1s\"\n\
                    [[task]]\nid = \"a\"\nafter = [\"x\", \"y\"]\nbackoff = { max = \"1s\", jitter = 2 }\n";
        let src = Source::new("p.toml", text);
        let at = |o: Option<usize>| o.map(|o| src.location(o)).map(|l| (l.line, l.col));
        assert_eq!(at(src.name_pos()), Some((1, 8)));
        assert_eq!(at(src.workers_pos()), Some((2, 11)));
        assert_eq!(
            at(src.duration_pos(Table::Root, DurationKey::Lease)),
            Some((3, 9))
        );
        assert_eq!(
            at(src.duration_pos(Table::Defaults, DurationKey::Timeout)),
            Some((5, 11))
        );
        assert_eq!(at(src.id_pos(0)), Some((7, 6)));
        assert_eq!(at(src.after_pos(0, 1)), Some((8, 15)));
        assert_eq!(
            at(src.duration_pos(Table::Task(0), DurationKey::BackoffMax)),
            Some((9, 19))
        );
        assert_eq!(at(src.jitter_pos(Table::Task(0))), Some((9, 34)));
        assert_eq!(src.factor_pos(Table::Task(0)), None);
        // What is not there has no position.
        assert_eq!(src.id_pos(1), None);
        assert_eq!(src.duration_pos(Table::Task(0), DurationKey::Timeout), None);
    }

    /// Any value of a written task, however deep, in either format; nothing for a path
    /// that is not there.
    #[test]
    fn positions_of_any_value_of_a_task() {
        let text = "name = \"p\"\n[[task]]\nid = \"a\"\n[[task]]\nid = \"b\"\n\
                    matrix = { n = [1, [2]] }\n[task.env]\nX = \"x\"\n";
        let src = Source::new("p.toml", text);
        let at = |path: &[Seg]| {
            let o = src.written_task_value_pos(1, path)?;
            Some((src.location(o).line, src.location(o).col))
        };
        assert_eq!(at(&[Seg::Key("id")]), Some((5, 6)));
        assert_eq!(at(&[Seg::Key("env"), Seg::Key("X")]), Some((8, 5)));
        let n = [Seg::Key("matrix"), Seg::Key("n"), Seg::Index(1)];
        assert_eq!(at(&n), Some((6, 20)));
        assert_eq!(at(&[Seg::Key("run")]), None);
        assert_eq!(at(&[Seg::Key("id"), Seg::Index(0)]), None);
        assert_eq!(src.written_task_value_pos(2, &[Seg::Key("id")]), None);

        let text =
            "{\"task\": [{\"id\": \"a\"},\n {\"env\": {\"X\": 1, \"X\": \"x\"}, \"id\": \"b\"}]}";
        let src = Source::new("p.json", text);
        let at = |path: &[Seg]| {
            let o = src.written_task_value_pos(1, path)?;
            Some((src.location(o).line, src.location(o).col))
        };
        assert_eq!(at(&[Seg::Key("id")]), Some((2, 36)));
        // A key given twice: the last, which a map keeps.
        assert_eq!(at(&[Seg::Key("env"), Seg::Key("X")]), Some((2, 24)));
        assert_eq!(at(&[Seg::Key("cwd")]), None);
    }

    /// Once matrices are expanded, a task's positions are its template's, and a changed
    /// `after` list maps each entry to the one it came from.
    #[test]
    fn origins_map_expanded_tasks_to_their_templates() {
        let text = "name = \"p\"\n[[task]]\nid = \"a\"\nafter = [\"t-{n}\", \"x\"]\n\
                    [[task]]\nid = \"t-{n}\"\n";
        let mut src = Source::new("p.toml", text);
        let mut origins = Origins {
            task: vec![0, 1, 1],
            ..Origins::default()
        };
        origins.after.insert(0, vec![0, 0, 1]);
        src.set_origins(origins);
        let line = |o: Option<usize>| o.map(|o| src.location(o).line);
        assert_eq!(line(src.id_pos(2)), Some(6));
        assert_eq!(src.written(2), Some(1));
        assert_eq!(src.written(3), None);
        assert_eq!(src.id_pos(3), None);
        assert_eq!(
            src.after_pos(0, 2),
            src.table(Table::Task(0)).unwrap().after.get(1).copied()
        );
        assert_eq!(src.after_pos(0, 3), None);
    }

    #[test]
    fn headers_skip_strings_comments_and_inline_tables() {
        let text = "name = \"p\"\n[[task]]\nid = \"a\"\nx = [\n[1], {a = 1}]\n# [[task]]\n\
                    s = '''\n[[task]]\n'''\n[task.env]\n[defaults]\n";
        let headers = top_level_headers(text).unwrap();
        let kinds: Vec<Header> = headers.iter().map(|h| h.1).collect();
        assert_eq!(kinds, [Header::Task, Header::TaskSub, Header::Other]);
        assert_eq!(&text[headers[0].0..headers[0].0 + 8], "[[task]]");
        assert_eq!(top_level_headers("[[\"task\"]]\n"), None);
    }
}
