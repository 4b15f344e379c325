//! Task templates: a `[[task]]` with a `matrix` stands for one task per combination of its
//! parameters' values, the first parameter outermost (as declared), each made by putting
//! the combination's values into the placeholders of every string value of the template.
//!
//! Expansion runs between parsing (`raw`) and validation (`validate`), and makes plain raw
//! tasks: every check of a plan applies to them as to tasks written out by hand (ids,
//! duplicates, dependencies, cycles, `owns`, ...), and [`Origins`] tells the `Source` which
//! template each came from, so that their errors point at the template's lines. A task
//! without a matrix is not touched; an entry of a list of task ids (an `after`, a race's or
//! a checkpoint's `tasks`) that is a template's id as written stands for all its tasks.
//!
//! The placeholder rule, in every string value of a template (not in keys, nor in the
//! matrix): a *term* is a run of `{`, a name (`[A-Za-z_][A-Za-z0-9_]*`), then a run of `}`,
//! its braces pairing from the inside out. With one pair (`{table}`, or the inner pair of
//! `{"t":{table}}`) it is a placeholder: the value, or an error when the matrix has no such
//! parameter. With two pairs or more it is an escape: one pair is removed and nothing is
//! substituted (`{{table}}` gives `{table}`, `{{{end}}}` gives `{{end}}`). A run of `{`
//! right after a `$` is the shell's (`${HOME}`, `${table}`) and is left alone, as is every
//! brace that does not enclose a bare name (`{print $1}`, `{ a; }`, `{a,b}`, `{}`, JSON,
//! `{{.Names}}`). Values are put in as they are, never read again for placeholders.
//!
//! Its errors come before any of `validate`'s, template by template: the matrix's shape,
//! the count, an unknown placeholder, an id made twice.
//!
//! Bounds: at most [`MAX_MATRIX_TASKS`] tasks come from the matrices of one plan, and the
//! text of the tasks they make is at most `PLAN_CAP` bytes (a plan whose tasks hold more
//! could not be written as `plan.json` anyway); both are checked before the memory is used.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::PLAN_CAP;
use super::error::{PlanError, PlanErrorKind as K};
use super::locate::{Origins, Seg, Source};
use super::raw::{RawBackoff, RawPlan, RawTask};

/// The most tasks the matrices of one plan may make, all templates together.
pub const MAX_MATRIX_TASKS: usize = 100_000;

/// A `matrix` as written, kept loose (any shape parses) so that a wrong one is refused here
/// with its task, key and line, in a TOML plan as in a JSON one.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct RawMatrix(Loose);

/// A value of a matrix, as deep as a matrix may be: a table (the matrix) of arrays (the
/// parameters) of scalars (the values). Anything deeper is only said what it is.
#[derive(Debug, Clone, PartialEq)]
enum Loose {
    /// A string, integer or boolean, as text, and what it was.
    Scalar(String, &'static str),
    Array(Vec<Loose>),
    /// Entries in the file's order.
    Table(Vec<(String, Loose)>),
    /// Anything else (a float, a date, null), or an array or table deeper than a matrix
    /// goes: what it is, for the message.
    Other(&'static str),
}

impl Loose {
    fn what(&self) -> &'static str {
        match self {
            Loose::Scalar(_, what) | Loose::Other(what) => what,
            Loose::Array(_) => "an array",
            Loose::Table(_) => "a table",
        }
    }
}

impl<'de> serde::Deserialize<'de> for RawMatrix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Depth(0).deserialize(d).map(RawMatrix)
    }
}

/// How the toml crate hands a date-time to serde: a table with this one key.
const TOML_DATETIME: &str = "$__toml_private_datetime";

/// Reads a [`Loose`] at a depth: the matrix (0) is descended as a table, a parameter (1)
/// as an array; everything else is a scalar or is skipped.
#[derive(Clone, Copy)]
struct Depth(u8);

impl<'de> DeserializeSeed<'de> for Depth {
    type Value = Loose;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Loose, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Depth {
    type Value = Loose;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a matrix: a table of arrays of values")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Loose, E> {
        Ok(Loose::Scalar(v.to_string(), "a boolean"))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Loose, E> {
        Ok(Loose::Scalar(v.to_string(), "an integer"))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Loose, E> {
        Ok(Loose::Scalar(v.to_string(), "an integer"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Loose, E> {
        Ok(Loose::Other("a float"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Loose, E> {
        Ok(Loose::Scalar(v.to_string(), "a string"))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Loose, E> {
        Ok(Loose::Scalar(v, "a string"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Loose, E> {
        Ok(Loose::Other("null"))
    }

    fn visit_none<E: de::Error>(self) -> Result<Loose, E> {
        Ok(Loose::Other("null"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Loose, A::Error> {
        if self.0 != 1 {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(Loose::Other("an array"));
        }
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(Depth(2))? {
            items.push(v);
        }
        Ok(Loose::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Loose, A::Error> {
        let mut entries = Vec::new();
        let mut what = "a table";
        while let Some(key) = map.next_key::<String>()? {
            if key == TOML_DATETIME {
                what = "a date-time";
            }
            if self.0 == 0 && what == "a table" {
                entries.push((key, map.next_value_seed(Depth(1))?));
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        if self.0 == 0 && what == "a table" {
            Ok(Loose::Table(entries))
        } else {
            Ok(Loose::Other(what))
        }
    }
}

/// A checked matrix: each parameter's name and its values as text, in declared order.
struct Axes {
    names: Vec<String>,
    values: Vec<Vec<String>>,
}

impl Axes {
    /// How many tasks the matrix makes (saturating).
    fn count(&self) -> usize {
        let lens = self.values.iter().map(Vec::len);
        lens.fold(1usize, |n, len| n.saturating_mul(len))
    }

    /// A combination, for messages: `table=users shard=1`.
    fn show(&self, combo: &[usize]) -> String {
        let pairs = self.names.iter().zip(&self.values).zip(combo);
        let pairs = pairs.map(|((n, vs), &k)| format!("{n}={}", vs[k]));
        pairs.collect::<Vec<_>>().join(" ")
    }
}

/// Whether `name` can be a placeholder's: `[A-Za-z_][A-Za-z0-9_]*`.
fn is_param_name(name: &str) -> bool {
    let mut b = name.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// The matrix of the template written at index `i` (id as written: `id`), checked: a
/// table of non-empty arrays of strings, integers or booleans, keyed by parameter names.
fn axes(src: &Source, i: usize, id: &str, m: &RawMatrix) -> Result<Axes, PlanError> {
    let refuse = |path: &[Seg], key: Option<&str>, msg: String| {
        let kind = K::BadMatrix {
            task: id.to_string(),
            key: key.map(str::to_string),
            msg,
        };
        src.error(src.written_task_value_pos(i, path), kind)
    };
    let entries = match &m.0 {
        Loose::Table(entries) => entries,
        other => {
            let msg = format!(
                "must be a table of arrays of values (matrix = {{ shard = [1, 2] }}), not {}",
                other.what()
            );
            return Err(refuse(&[Seg::Key("matrix")], None, msg));
        }
    };
    if entries.is_empty() {
        let msg = "is empty: give it a parameter and its values (matrix = { shard = [1, 2] })";
        return Err(refuse(&[Seg::Key("matrix")], None, msg.to_string()));
    }
    let mut axes = Axes {
        names: Vec::with_capacity(entries.len()),
        values: Vec::with_capacity(entries.len()),
    };
    for (name, v) in entries {
        let at = [Seg::Key("matrix"), Seg::Key(name)];
        let refuse = |path: &[Seg], msg: &str| refuse(path, Some(name), msg.to_string());
        if !is_param_name(name) {
            let msg = "a parameter's name is letters, digits and _, not starting with a digit";
            return Err(refuse(&at, msg));
        }
        if axes.names.contains(name) {
            return Err(refuse(&at, "is given twice"));
        }
        let Loose::Array(items) = v else {
            let msg = format!("must be an array of values, not {}", v.what());
            return Err(refuse(&at, &msg));
        };
        if items.is_empty() {
            return Err(refuse(
                &at,
                "is empty: a parameter needs at least one value",
            ));
        }
        let mut values = Vec::with_capacity(items.len());
        for (j, item) in items.iter().enumerate() {
            match item {
                Loose::Scalar(text, _) => values.push(text.clone()),
                other => {
                    let msg = format!(
                        "a value is {}: values are strings, integers or booleans",
                        other.what()
                    );
                    let path = [Seg::Key("matrix"), Seg::Key(name), Seg::Index(j)];
                    return Err(refuse(&path, &msg));
                }
            }
        }
        axes.names.push(name.clone());
        axes.values.push(values);
    }
    Ok(axes)
}

/// `text` with its terms resolved by the rule of this module's doc: each placeholder
/// replaced by `value(name)`, each escape losing a pair of braces. `Err(name)` for the
/// first placeholder whose name `value` does not know. Unchanged text is borrowed.
pub(super) fn fill<'t, 'v>(
    text: &'t str,
    value: impl Fn(&str) -> Option<&'v str>,
) -> Result<Cow<'t, str>, &'t str> {
    fn push_n(out: &mut String, c: char, n: usize) {
        out.extend(std::iter::repeat_n(c, n));
    }
    let b = text.as_bytes();
    let mut out: Option<String> = None;
    let (mut copied, mut i) = (0, 0);
    // Every byte looked at is ASCII, so every index cut at is a char boundary.
    while i < b.len() {
        if b[i] != b'{' {
            i += 1;
            continue;
        }
        let open = i;
        while i < b.len() && b[i] == b'{' {
            i += 1;
        }
        if open > 0 && b[open - 1] == b'$' {
            continue; // the shell's `${...}`
        }
        let name_at = i;
        if i < b.len() && (b[i].is_ascii_alphabetic() || b[i] == b'_') {
            i += 1;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
        }
        let name_end = i;
        while name_end > name_at && i < b.len() && b[i] == b'}' {
            i += 1;
        }
        let (opened, closed) = (name_at - open, i - name_end);
        if name_end == name_at || closed == 0 {
            continue; // braces around something else than a bare name
        }
        let name = &text[name_at..name_end];
        let pairs = opened.min(closed);
        let o = out.get_or_insert_with(|| String::with_capacity(text.len()));
        o.push_str(&text[copied..open]);
        push_n(o, '{', opened - pairs);
        if pairs == 1 {
            o.push_str(value(name).ok_or(name)?);
        } else {
            push_n(o, '{', pairs - 1);
            o.push_str(name);
            push_n(o, '}', pairs - 1);
        }
        push_n(o, '}', closed - pairs);
        copied = i;
    }
    Ok(match out {
        None => Cow::Borrowed(text),
        Some(mut o) => {
            o.push_str(&text[copied..]);
            Cow::Owned(o)
        }
    })
}

/// Expand every template of `raw` (see the module's doc), in place: each template's tasks
/// where it was written, then each list of task ids with a template's id replaced by its
/// tasks. `src` learns where the tasks came from. A plan without a matrix is returned as
/// it was.
pub(super) fn expand(src: &mut Source, mut raw: RawPlan) -> Result<RawPlan, PlanError> {
    if raw.task.iter().all(|t| t.matrix.is_none()) {
        return Ok(raw);
    }
    let written = std::mem::take(&mut raw.task);
    let mut tasks = Vec::with_capacity(written.len());
    let mut origins = Origins::default();
    let mut templates: HashMap<String, Vec<String>> = HashMap::new();
    let mut made = 0usize;
    let mut bytes = 0u64;
    for (i, t) in written.into_iter().enumerate() {
        let Some(m) = &t.matrix else {
            tasks.push(t);
            origins.task.push(i);
            continue;
        };
        let axes = axes(src, i, &t.id, m)?;
        let count = axes.count();
        let before = made;
        made = made.saturating_add(count);
        if made > MAX_MATRIX_TASKS {
            // A product past usize is not a count worth printing.
            let show = |n: usize| match n {
                usize::MAX => "more tasks than can be counted".to_string(),
                n => format!("{n} tasks"),
            };
            let msg = if before == 0 {
                format!(
                    "makes {}; at most {MAX_MATRIX_TASKS} may come from matrices",
                    show(count)
                )
            } else {
                format!(
                    "makes {}, {} with the matrices before it; at most {MAX_MATRIX_TASKS} \
                     may come from matrices",
                    show(count),
                    show(made)
                )
            };
            let kind = K::BadMatrix {
                task: t.id.clone(),
                key: None,
                msg,
            };
            return Err(src.error(src.written_task_value_pos(i, &[Seg::Key("matrix")]), kind));
        }
        let ids = templates.entry(t.id.clone()).or_default();
        let mut first: HashMap<String, Vec<usize>> = HashMap::with_capacity(count);
        let mut combo = vec![0usize; axes.names.len()];
        loop {
            let task = one(src, i, &t, &axes, &combo, &mut bytes)?;
            if let Some(other) = first.get(&task.id) {
                let kind = K::MatrixIdTwice {
                    task: t.id.clone(),
                    id: task.id,
                    first: axes.show(other),
                    second: axes.show(&combo),
                };
                return Err(src.error(src.written_task_value_pos(i, &[Seg::Key("id")]), kind));
            }
            first.insert(task.id.clone(), combo.clone());
            ids.push(task.id.clone());
            tasks.push(task);
            origins.task.push(i);
            if !advance(&mut combo, &axes.values) {
                break;
            }
        }
    }
    for (i, t) in tasks.iter_mut().enumerate() {
        if let Some(map) = t
            .after
            .as_mut()
            .and_then(|a| replace_templates(a, &templates))
        {
            origins.after.insert(i, map);
        }
    }
    for (k, g) in raw.gate.iter_mut().enumerate() {
        if let Some(map) = replace_templates(&mut g.after, &templates) {
            origins.gate_after.insert(k, map);
        }
    }
    // Races and checkpoints have no positions: nothing to map.
    for r in &mut raw.race {
        replace_templates(&mut r.tasks, &templates);
    }
    for c in &mut raw.checkpoint {
        replace_templates(&mut c.tasks, &templates);
    }
    raw.task = tasks;
    src.set_origins(origins);
    Ok(raw)
}

/// Move `combo` to the next combination, the last parameter fastest; false once past the
/// last.
fn advance(combo: &mut [usize], values: &[Vec<String>]) -> bool {
    for k in (0..combo.len()).rev() {
        combo[k] += 1;
        if combo[k] < values[k].len() {
            return true;
        }
        combo[k] = 0;
    }
    false
}

/// The task the template `t` (written at index `i`) makes for `combo`; `bytes` counts the
/// text of every task made so far, against `PLAN_CAP`.
fn one(
    src: &Source,
    i: usize,
    t: &RawTask,
    axes: &Axes,
    combo: &[usize],
    bytes: &mut u64,
) -> Result<RawTask, PlanError> {
    let value = |name: &str| {
        let k = axes.names.iter().position(|n| n == name)?;
        Some(axes.values[k][combo[k]].as_str())
    };
    let task = map_strings(t, &mut |s: &str, path: &[Seg]| {
        let filled = fill(s, value).map_err(|name| {
            let kind = K::UnknownPlaceholder {
                task: t.id.clone(),
                name: name.to_string(),
                params: axes.names.clone(),
            };
            src.error(src.written_task_value_pos(i, path), kind)
        })?;
        *bytes += filled.len() as u64;
        Ok(filled.into_owned())
    })?;
    if *bytes > PLAN_CAP {
        let kind = K::BadMatrix {
            task: t.id.clone(),
            key: None,
            msg: format!("the tasks it makes hold more than {PLAN_CAP} bytes of text"),
        };
        return Err(src.error(src.written_task_value_pos(i, &[Seg::Key("matrix")]), kind));
    }
    Ok(task)
}

/// A copy of `t` with `f` applied to each of its string values (given with its path in the
/// task, for errors), and without its matrix. Every field is named, so that a key added
/// to [`RawTask`] must be decided on here.
fn map_strings<E>(
    t: &RawTask,
    f: &mut impl FnMut(&str, &[Seg]) -> Result<String, E>,
) -> Result<RawTask, E> {
    let RawTask {
        id,
        run,
        cmd,
        after,
        cwd,
        env,
        env_from_parent,
        env_file,
        timeout,
        retries,
        backoff,
        max_reassign,
        kill_grace,
        priority,
        marks,
        resources,
        on_failure,
        owns,
        memory,
        cleanup,
        cleanup_delay,
        cleanup_timeout,
        rollback,
        emergency,
        agent,
        notify,
        end_on,
        worktree,
        interactive,
        stdin,
        matrix: _,
    } = t;
    let mut one =
        |key: &str, v: &Option<String>| v.as_deref().map(|s| f(s, &[Seg::Key(key)])).transpose();
    let (run, timeout, kill_grace) = (
        one("run", run)?,
        one("timeout", timeout)?,
        one("kill_grace", kill_grace)?,
    );
    let (on_failure, memory) = (one("on_failure", on_failure)?, one("memory", memory)?);
    let (cleanup, cleanup_delay) = (
        one("cleanup", cleanup)?,
        one("cleanup_delay", cleanup_delay)?,
    );
    let cleanup_timeout = one("cleanup_timeout", cleanup_timeout)?;
    let (rollback, emergency) = (one("rollback", rollback)?, one("emergency", emergency)?);
    let (agent, notify, stdin) = (
        one("agent", agent)?,
        one("notify", notify)?,
        one("stdin", stdin)?,
    );
    let end_on = one("end_on", end_on)?;
    let id = f(id, &[Seg::Key("id")])?;
    let mut list = |key: &str, v: &Option<Vec<String>>| {
        v.as_ref()
            .map(|items| {
                let each = items.iter().enumerate();
                each.map(|(j, s)| f(s, &[Seg::Key(key), Seg::Index(j)]))
                    .collect::<Result<Vec<_>, E>>()
            })
            .transpose()
    };
    let (cmd, after, marks) = (
        list("cmd", cmd)?,
        list("after", after)?,
        list("marks", marks)?,
    );
    let (owns, env_from_parent) = (
        list("owns", owns)?,
        list("env_from_parent", env_from_parent)?,
    );
    // Paths from a TOML or JSON text are always UTF-8; another would be kept as it is.
    let mut path = |key: &str, v: &Option<PathBuf>| {
        v.as_ref()
            .map(|p| match p.to_str() {
                Some(s) => f(s, &[Seg::Key(key)]).map(PathBuf::from),
                None => Ok(p.clone()),
            })
            .transpose()
    };
    let (cwd, env_file) = (path("cwd", cwd)?, path("env_file", env_file)?);
    let env = env
        .as_ref()
        .map(|vars| {
            let each = vars.iter();
            each.map(|(k, v)| Ok((k.clone(), f(v, &[Seg::Key("env"), Seg::Key(k)])?)))
                .collect::<Result<_, E>>()
        })
        .transpose()?;
    let backoff = match backoff {
        None => None,
        Some(b) => {
            let mut part = |key: &str, v: &Option<String>| {
                let path = [Seg::Key("backoff"), Seg::Key(key)];
                v.as_deref().map(|s| f(s, &path)).transpose()
            };
            Some(RawBackoff {
                initial: part("initial", &b.initial)?,
                max: part("max", &b.max)?,
                factor: b.factor,
                jitter: b.jitter,
            })
        }
    };
    Ok(RawTask {
        id,
        run,
        cmd,
        after,
        cwd,
        env,
        env_from_parent,
        env_file,
        timeout,
        retries: *retries,
        backoff,
        max_reassign: *max_reassign,
        kill_grace,
        priority: *priority,
        marks,
        resources: resources.clone(),
        on_failure,
        owns,
        memory,
        cleanup,
        cleanup_delay,
        cleanup_timeout,
        rollback,
        emergency,
        agent,
        notify,
        end_on,
        worktree: *worktree,
        interactive: *interactive,
        stdin,
        matrix: None,
    })
}

/// `list` with each entry that is a template's id (as written) replaced by the template's
/// tasks, skipping those the list already names. `None` when no entry is a template's
/// id (the list is unchanged); else, for each entry of the new list, the entry it comes
/// from in the old one.
fn replace_templates(
    list: &mut Vec<String>,
    templates: &HashMap<String, Vec<String>>,
) -> Option<Vec<usize>> {
    if !list.iter().any(|e| templates.contains_key(e)) {
        return None;
    }
    let mut named: HashSet<String> = list
        .iter()
        .filter(|e| !templates.contains_key(*e))
        .cloned()
        .collect();
    let mut out = Vec::with_capacity(list.len());
    let mut from = Vec::with_capacity(list.len());
    for (j, e) in std::mem::take(list).into_iter().enumerate() {
        match templates.get(&e) {
            None => {
                out.push(e);
                from.push(j);
            }
            Some(ids) => {
                for id in ids {
                    if named.insert(id.clone()) {
                        out.push(id.clone());
                        from.push(j);
                    }
                }
            }
        }
    }
    *list = out;
    Some(from)
}

#[cfg(test)]
mod tests;
