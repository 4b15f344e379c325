//! The plan as written: serde types that mirror a TOML or JSON plan file key for key, and
//! the parse of the text into them. Nothing here judges values; `validate` turns a
//! [`RawPlan`] into a `Plan` or refuses it.
//!
//! Both formats share these types, with `deny_unknown_fields`, so a misspelt key is a
//! syntax error with a position in either. Large TOML plans are parsed piecewise (see
//! [`parse_toml_chunked`]) to bound the parser's memory.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::Checkpoint;
use super::error::{Location, PlanError, PlanErrorKind};
use super::locate::{Header, Source, top_level_headers};
use super::matrix::RawMatrix;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlan {
    /// Required of a plan; a file of tasks added to a session may leave it out.
    pub(super) name: Option<String>,
    pub(super) workers: Option<i64>,
    pub(super) keep_windows: Option<bool>,
    pub(super) lease: Option<String>,
    pub(super) defaults: Option<RawDefaults>,
    #[serde(default)]
    pub(super) task: Vec<RawTask>,
    #[serde(default)]
    pub(super) checkpoint: Vec<Checkpoint>,
    pub(super) locks: Option<RawLocks>,
    #[serde(default)]
    pub(super) race: Vec<RawRace>,
    pub(super) resources: Option<BTreeMap<String, RawPool>>,
    pub(super) on_failure: Option<String>,
    #[serde(default)]
    pub(super) gate: Vec<RawGate>,
    pub(super) limits: Option<RawLimits>,
    pub(super) cleanup_workers: Option<i64>,
}

/// `[limits]`: sizes as written (`"8GiB"`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) memory: Option<String>,
    pub(super) min_free_memory: Option<String>,
}

/// `[[gate]]`: a point between tasks that runs a check (`run`), waits for a person
/// (`approve = true`), or both.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGate {
    pub(super) id: String,
    #[serde(default)]
    pub(super) after: Vec<String>,
    pub(super) run: Option<String>,
    pub(super) approve: Option<bool>,
    pub(super) timeout: Option<String>,
}

/// A pool of tokens: `db = { max = 50, warn = 35, critical = 45 }`. Signed, so that a
/// negative count is refused by `validate` with its value, not by the parser.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPool {
    pub(super) max: i64,
    pub(super) warn: Option<i64>,
    pub(super) critical: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLocks {
    #[serde(default)]
    pub(super) order: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRace {
    pub(super) id: String,
    pub(super) tasks: Vec<String>,
    pub(super) pick: Option<String>,
    pub(super) score: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefaults {
    pub(super) timeout: Option<String>,
    pub(super) retries: Option<u32>,
    pub(super) cwd: Option<PathBuf>,
    pub(super) env: Option<BTreeMap<String, String>>,
    pub(super) env_from_parent: Option<Vec<String>>,
    pub(super) env_file: Option<PathBuf>,
    pub(super) backoff: Option<RawBackoff>,
    pub(super) max_reassign: Option<u32>,
    pub(super) kill_grace: Option<String>,
    pub(super) cleanup_delay: Option<String>,
    pub(super) cleanup_timeout: Option<String>,
    pub(super) worktree: Option<bool>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackoff {
    pub(super) initial: Option<String>,
    pub(super) max: Option<String>,
    pub(super) factor: Option<f64>,
    pub(super) jitter: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTask {
    pub(super) id: String,
    pub(super) run: Option<String>,
    pub(super) cmd: Option<Vec<String>>,
    pub(super) after: Option<Vec<String>>,
    pub(super) cwd: Option<PathBuf>,
    pub(super) env: Option<BTreeMap<String, String>>,
    pub(super) env_from_parent: Option<Vec<String>>,
    pub(super) env_file: Option<PathBuf>,
    pub(super) timeout: Option<String>,
    pub(super) retries: Option<u32>,
    pub(super) backoff: Option<RawBackoff>,
    pub(super) max_reassign: Option<u32>,
    pub(super) kill_grace: Option<String>,
    pub(super) priority: Option<i64>,
    pub(super) marks: Option<Vec<String>>,
    pub(super) resources: Option<BTreeMap<String, i64>>,
    pub(super) on_failure: Option<String>,
    pub(super) owns: Option<Vec<String>>,
    pub(super) memory: Option<String>,
    pub(super) cleanup: Option<String>,
    pub(super) cleanup_delay: Option<String>,
    pub(super) cleanup_timeout: Option<String>,
    pub(super) rollback: Option<String>,
    pub(super) emergency: Option<String>,
    pub(super) agent: Option<String>,
    pub(super) notify: Option<String>,
    pub(super) end_on: Option<String>,
    pub(super) worktree: Option<bool>,
    pub(super) interactive: Option<bool>,
    pub(super) stdin: Option<String>,
    /// A task template's parameters (`matrix`): expanded before validation.
    pub(super) matrix: Option<RawMatrix>,
}

/// Parse the text of `src` (JSON or TOML, by its name). Syntax and schema errors carry the
/// parser's position and its message on one line.
pub(super) fn parse(src: &Source) -> Result<RawPlan, PlanError> {
    if !src.is_toml() {
        return serde_json::from_str(src.text).map_err(|e| {
            // serde_json appends " at line L column C"; the position goes in front instead.
            let full = e.to_string();
            let msg = match full.rfind(" at line ") {
                Some(i) => full[..i].to_string(),
                None => full,
            };
            let location = (e.line() != 0).then(|| Location {
                line: e.line(),
                col: e.column(),
            });
            PlanError::new(src.file, location, PlanErrorKind::Syntax(msg))
        });
    }
    if let Some(raw) = parse_toml_chunked(src.text) {
        return Ok(raw);
    }
    toml::from_str(src.text).map_err(|e: toml::de::Error| {
        let kind = PlanErrorKind::Syntax(e.message().trim().to_string());
        src.error(e.span().map(|s| s.start), kind)
    })
}

/// TOML plans larger than this are parsed a slice of tasks at a time: the toml crate holds
/// every token and a spanned tree of the whole document at once, about 60 bytes of memory
/// per byte of plan, which made the parse the orchestrator's peak RSS.
pub(super) const CHUNKED_ABOVE: usize = 128 * 1024;
const TASKS_PER_CHUNK: usize = 500;

/// One slice of a large plan's `[[task]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskChunk {
    task: Vec<RawTask>,
}

/// Parse a large TOML plan piecewise: the root keys with every non-task table as one small
/// document, and the `[[task]]` tables (with their `[task.x]` subtables) `TASKS_PER_CHUNK`
/// at a time. `None` for a small plan, for a shape this does not handle (a header that
/// names `task` any other way), and for any error: the caller then parses the whole text,
/// which gives errors their exact positions. TOML has no other way for a later table to
/// reach into an earlier one, so the pieces mean what the whole means.
pub(super) fn parse_toml_chunked(text: &str) -> Option<RawPlan> {
    if text.len() <= CHUNKED_ABOVE {
        return None;
    }
    let headers = top_level_headers(text)?;
    let first = headers.first().map_or(text.len(), |h| h.0);
    let mut rest = String::from(&text[..first]);
    let mut tasks = Vec::new();
    let mut chunk = String::new();
    let mut in_chunk = 0;
    let mut seen_task = false;
    for (i, &(start, kind)) in headers.iter().enumerate() {
        let end = headers.get(i + 1).map_or(text.len(), |h| h.0);
        let seg = &text[start..end];
        match kind {
            Header::Other => {
                rest.push('\n');
                rest.push_str(seg);
                continue;
            }
            Header::TaskSub if !seen_task => return None,
            Header::TaskSub => {}
            Header::Task => {
                seen_task = true;
                if in_chunk == TASKS_PER_CHUNK {
                    tasks.extend(toml::from_str::<TaskChunk>(&chunk).ok()?.task);
                    chunk.clear();
                    in_chunk = 0;
                }
                in_chunk += 1;
            }
        }
        chunk.push('\n');
        chunk.push_str(seg);
    }
    if in_chunk > 0 {
        tasks.extend(toml::from_str::<TaskChunk>(&chunk).ok()?.task);
    }
    drop(chunk);
    let mut raw: RawPlan = toml::from_str(&rest).ok()?;
    if !raw.task.is_empty() {
        return None; // `task = [...]` among the root keys: let the whole parse judge it
    }
    raw.task = tasks;
    Some(raw)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{err, parse as parse_plan};
    use super::*;

    /// A plan over `CHUNKED_ABOVE` bytes, with the shapes the piecewise parse must get
    /// right: subtables of tasks, a non-task table between tasks, header-like lines inside
    /// a multi-line string, nested brackets at the start of a line inside an inline array.
    fn large_plan(tasks: usize, tail: &str) -> String {
        let mut t = String::from("name = \"big\"\nworkers = 2\n");
        for i in 0..tasks {
            t.push_str(&format!("[[task]]\nid = \"t{i}\"\nrun = \"echo {i}\"\n"));
            if i == 300 {
                t.push_str("after = [\n  \"t1\",\n  \"t2\", # a comment [[task]]\n]\n");
            }
            if i % 7 == 3 {
                t.push_str(&format!("[task.env]\nN = \"{i}\"\n"));
            }
            if i == 200 {
                t.push_str("[defaults]\nretries = 2\n[task.backoff]\ninitial = \"2s\"\n");
            }
            if i == 400 {
                t.push_str("[[checkpoint]]\nname = \"cp\"\ntasks = [\"t1\", \"t2\"]\n");
            }
            if i == 501 {
                t.push_str("[task.env]\nX = '''\n[[task]]\nid = \"fake\"\n'''\n");
            }
        }
        t.push_str(tail);
        t
    }

    #[test]
    fn large_plans_parse_piecewise_to_the_same_plan() {
        let text = large_plan(4000, "[locks]\norder = [\"a\", \"b\"]\n");
        assert!(text.len() > CHUNKED_ABOVE);
        let whole: RawPlan = toml::from_str(&text).unwrap();
        let pieces = parse_toml_chunked(&text).expect("the piecewise parse applies");
        assert_eq!(format!("{pieces:?}"), format!("{whole:?}"));
        assert_eq!(pieces.task.len(), 4000);
        assert_eq!(
            pieces.task[501].env.as_ref().unwrap()["X"],
            "[[task]]\nid = \"fake\"\n"
        );
        let plan = parse_plan(&text).unwrap();
        assert_eq!(plan.tasks.len(), 4000);
        assert_eq!(plan.tasks[300].after, ["t1", "t2"]);
        assert_eq!(plan.tasks[0].retries, 2);
    }

    #[test]
    fn large_plans_fall_back_to_the_whole_parse_for_errors_and_odd_shapes() {
        // An error anywhere: the whole parse reports it, with its line.
        let text = large_plan(4000, "[[task]]\nid = \"late\"\nrun = \n");
        let lines = text.lines().count();
        assert!(parse_toml_chunked(&text).is_none());
        let e = err(&text);
        assert!(e.starts_with(&format!("p.toml:{lines}:")), "{e}");
        // A quoted header naming task: not split, parsed whole (and valid).
        let text = large_plan(4000, "[[\"task\"]]\nid = \"quoted\"\nrun = \"true\"\n");
        assert!(parse_toml_chunked(&text).is_none());
        assert_eq!(parse_plan(&text).unwrap().tasks.len(), 4001);
        // Tasks given as an inline array among the root keys: parsed whole.
        let pad = "#".repeat(CHUNKED_ABOVE);
        let text = format!("name = \"x\"\ntask = [{{ id = \"x\", run = \"true\" }}]\n{pad}\n");
        assert!(parse_toml_chunked(&text).is_none());
        assert_eq!(parse_plan(&text).unwrap().tasks.len(), 1);
    }

    #[test]
    fn syntax_and_schema_errors_keep_the_parsers_message_and_position() {
        let src = Source::new(
            "p.json",
            "{\"name\": \"j\",\n \"workers\": \"x\", \"task\": []}",
        );
        let e = parse(&src).unwrap_err();
        assert_eq!(e.location(), Some(Location { line: 2, col: 15 }));
        assert!(
            matches!(e.kind(), PlanErrorKind::Syntax(m) if m == "invalid type: string \"x\", expected i64")
        );
        // serde_json has no line for an empty text's error: the column stays as it says.
        let e = parse(&Source::new("p.json", "")).unwrap_err();
        assert_eq!(e.to_string(), "p.json:1:0: EOF while parsing a value");
        let e = parse(&Source::new("p.json", "[1]")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "p.json:1:2: invalid type: integer `1`, expected a string"
        );
        let e = parse(&Source::new("p.toml", "= 3\n")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "p.toml:1:1: unquoted keys cannot be empty, expected letters, numbers, `-`, `_`"
        );
        let e = parse(&Source::new("p.toml", "name = \"p\"\nworkers = 1.5\n")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "p.toml:2:11: invalid type: floating point `1.5`, expected i64"
        );
    }
}
