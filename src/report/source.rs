//! Where the report reads a session from: [`Source`], the few things it needs, and
//! [`Disk`], the session directory. Everything else in the report is computed from what
//! a source gives, so its tests (a 100 000-task session among them) feed a source of
//! their own without making a file per task.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde_json::Value;

use super::model::Excerpt;
use crate::error::{Result, io_err};
use crate::fsio;
use crate::journal::{self, Event};
use crate::proto::{Outcome, WorktreeRecord};
use crate::session::Session;

/// How many lines of a failed task's log the report keeps.
pub const EXCERPT_LINES: usize = 10;
/// A longer line is cut (bytes).
pub const EXCERPT_LINE_MAX: usize = 512;
/// How much of a log's end is read to find its last lines (a log has no size limit).
const TAIL_BYTES: u64 = 64 * 1024;

/// What the report reads of a session.
pub trait Source {
    /// The journal's events in order, each with when it was written (Unix ms).
    fn journal(&self, f: &mut dyn FnMut(Option<u64>, Event)) -> Result<()>;
    /// A task's accepted outcome, once decided.
    fn outcome(&self, task: &str) -> Result<Option<Outcome>>;
    /// An attempt's result: `Ok(None)` when it left none, `Err` saying why the file is
    /// not a result (it names the file).
    fn result(&self, task: &str, attempt: u32) -> std::result::Result<Option<Value>, String>;
    /// An attempt's result file, as the report names it.
    fn result_file(&self, task: &str, attempt: u32) -> String;
    /// The last lines of an attempt's output: its stderr, or its stdout when it has no
    /// stderr (a task on a terminal has one stream) or said nothing there.
    fn excerpt(&self, task: &str, attempt: u32) -> Result<Option<Excerpt>>;
    /// A task's worktree record (`worktree = true`).
    fn worktree(&self, task: &str) -> Result<Option<WorktreeRecord>>;
}

/// A session directory.
pub struct Disk<'a>(pub &'a Session);

impl Disk<'_> {
    fn relative(&self, path: &Path) -> String {
        self.0
            .relative(path)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }
}

impl Source for Disk<'_> {
    fn journal(&self, f: &mut dyn FnMut(Option<u64>, Event)) -> Result<()> {
        journal::for_each_stamped(&self.0.events(), f)
    }

    fn outcome(&self, task: &str) -> Result<Option<Outcome>> {
        fsio::read_json(&self.0.outcome_json(task))
    }

    fn result(&self, task: &str, attempt: u32) -> std::result::Result<Option<Value>, String> {
        crate::proto::read_result(&self.0.result_json(task, attempt))
    }

    fn result_file(&self, task: &str, attempt: u32) -> String {
        self.relative(&self.0.result_json(task, attempt))
    }

    fn excerpt(&self, task: &str, attempt: u32) -> Result<Option<Excerpt>> {
        for path in [
            self.0.stderr_log(task, attempt),
            self.0.stdout_log(task, attempt),
        ] {
            if let Some(lines) = last_lines(&path, EXCERPT_LINES)?
                && !lines.is_empty()
            {
                return Ok(Some(Excerpt {
                    file: self.relative(&path),
                    lines,
                }));
            }
        }
        Ok(None)
    }

    fn worktree(&self, task: &str) -> Result<Option<WorktreeRecord>> {
        fsio::read_json(&self.0.worktree_json(task))
    }
}

/// The last `n` lines of the log at `path` that say something, reading only its end;
/// `Ok(None)` when there is no such file.
pub fn last_lines(path: &Path, n: usize) -> Result<Option<Vec<String>>> {
    let Some(mut file) = fsio::open_read(path)? else {
        return Ok(None);
    };
    let len = file.metadata().map_err(io_err(path, "read"))?.len();
    let from = len.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(from))
        .map_err(io_err(path, "read"))?;
    let mut buf = Vec::new();
    file.take(TAIL_BYTES)
        .read_to_end(&mut buf)
        .map_err(io_err(path, "read"))?;
    Ok(Some(tail_of(&buf, from > 0, n)))
}

/// The last `n` lines of `buf` that are not blank, cleaned for a report: `partial` says
/// the first line may be the end of one cut off.
pub fn tail_of(buf: &[u8], partial: bool, n: usize) -> Vec<String> {
    let mut pieces: Vec<&[u8]> = buf.split(|&b| b == b'\n').collect();
    if partial && pieces.len() > 1 {
        pieces.remove(0);
    }
    let mut lines: Vec<String> = pieces
        .iter()
        .rev()
        .map(|l| clean(l))
        .filter(|l| !l.trim().is_empty())
        .take(n)
        .collect();
    lines.reverse();
    lines
}

/// One line of a log as a report shows it: valid UTF-8, no terminal escape sequences or
/// other control characters (a pty log holds a program's colours and cursor moves), cut
/// to [`EXCERPT_LINE_MAX`] bytes.
fn clean(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            crate::text::skip_escape(&mut chars);
        } else if c == '\t' || !c.is_control() {
            out.push(c);
        }
    }
    crate::summary::cut_text(out, EXCERPT_LINE_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_last_lines_that_say_something_cleaned() {
        let log = b"one\ntwo\n\n\x1b[31mred\x1b[0m error\r\n\x1b]0;title\x07bell\ttab\n\n";
        assert_eq!(
            tail_of(log, false, 3),
            vec!["two", "red error", "bell\ttab"]
        );
        assert_eq!(tail_of(b"cut off\nwhole\n", true, 5), vec!["whole"]);
        assert_eq!(tail_of(b"only a part", true, 5), vec!["only a part"]);
        assert!(tail_of(b"\n \n", false, 5).is_empty());
        let long = "é".repeat(EXCERPT_LINE_MAX);
        let got = &tail_of(long.as_bytes(), false, 1)[0];
        assert!(got.len() <= EXCERPT_LINE_MAX && got.ends_with('…'), "{got}");
        assert_eq!(
            tail_of(b"bad \xff byte", false, 1),
            vec!["bad \u{fffd} byte"]
        );
    }

    #[test]
    fn a_long_log_is_read_from_its_end_only() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("stderr.log");
        let mut text = String::new();
        for i in 0..20_000 {
            text.push_str(&format!("line {i}\n"));
        }
        std::fs::write(&p, &text).unwrap();
        let got = last_lines(&p, 3).unwrap().unwrap();
        assert_eq!(got, vec!["line 19997", "line 19998", "line 19999"]);
        assert_eq!(last_lines(&d.path().join("none"), 3).unwrap(), None);
    }
}
