//! The summary of a finished session: `summary.json` (the session's state, counts by
//! outcome and the tasks that did not succeed) and `summary-tasks.jsonl` (one row per
//! task), written when the session ends, and read back.
//!
//! Why two files: a summary that embedded every task's row and result grew with both (a
//! 100 000-task run of `true` wrote 19.5 MB of rows; twenty 1 MiB results made it larger
//! than the 16 MiB every session JSON file is read with), so the session then ended with
//! an error and `status` could no longer read it. Now `summary.json` is bounded by a
//! constant (at most [`NOT_SUCCEEDED_MAX`] rows, each bounded), results are named by path,
//! and the rows file, which grows with the plan, is written a line at a time and read as
//! a stream, each line under [`ROW_CAP`].

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fsio::{self, AtomicWriter, Fs};
pub use crate::proto::{NOT_SUCCEEDED_MAX, REASON_MAX};
use crate::proto::{NotSucceeded, Outcome, SessionState, Summary, SummaryRow, TaskState};
use crate::session::Session;

/// The longest line the rows reader accepts. A row is far smaller (two names of at most
/// 64 bytes, a reason of at most [`REASON_MAX`], a path made of them, numbers): the
/// `row_size_is_bounded` test pins the bound.
pub const ROW_CAP: usize = 64 * 1024;

/// A path inside the session, as the summary names it (relative to the session directory).
fn relative(session: &Session, path: &Path) -> String {
    session
        .relative(path)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// `text` cut to at most `max` bytes (at least 3), on a character boundary, marked with
/// `…`.
pub fn cut_text(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max.saturating_sub('…'.len_utf8());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// `reason` cut to [`REASON_MAX`] bytes, on a character boundary, marked with `…`.
fn cut(reason: Option<String>) -> Option<String> {
    reason.map(|r| cut_text(r, REASON_MAX))
}

/// A decided task's row from its outcome; `attempts` is how many attempts it was given.
pub fn row_of(session: &Session, o: &Outcome, attempts: u32) -> SummaryRow {
    let result = o
        .result
        .as_ref()
        .map(|_| relative(session, &session.result_json(&o.task, o.attempt)));
    SummaryRow {
        id: o.task.clone(),
        state: o.state,
        attempt: o.attempt,
        attempts: attempts.max(o.attempt),
        worker: o.worker.clone(),
        exit_code: o.exit_code,
        signal: o.signal,
        duration_ms: o.duration_ms,
        reason: cut(o.reason.clone()),
        result,
    }
}

/// The row of a task the engine decided but whose outcome is not on disk.
pub fn bare_row(id: &str, state: TaskState, attempts: u32) -> SummaryRow {
    SummaryRow {
        id: id.to_string(),
        state,
        attempt: 0,
        attempts,
        worker: None,
        exit_code: None,
        signal: None,
        duration_ms: None,
        reason: None,
        result: None,
    }
}

/// Writes the rows file as rows come (plan order) and keeps what `summary.json` needs.
pub struct Writer {
    rows: AtomicWriter,
    rows_path: PathBuf,
    total: usize,
    counts: std::collections::BTreeMap<TaskState, usize>,
    not_succeeded: Vec<NotSucceeded>,
    omitted: usize,
}

/// What the summary says of the session as a whole.
pub struct Head {
    pub state: SessionState,
    pub started_at: String,
    pub ended_at: String,
    pub duration_ms: u64,
}

impl Writer {
    pub fn new(fs: Fs, session: &Session) -> Result<Writer> {
        let rows_path = session.summary_rows();
        Ok(Writer {
            rows: fs.atomic_writer(&rows_path)?,
            rows_path,
            total: 0,
            counts: Default::default(),
            not_succeeded: Vec::new(),
            omitted: 0,
        })
    }

    /// Add the next task's row.
    pub fn add(&mut self, session: &Session, row: SummaryRow) -> Result<()> {
        self.rows.write_json_line(&row)?;
        self.total += 1;
        *self.counts.entry(row.state).or_default() += 1;
        if row.state != TaskState::Succeeded {
            if self.not_succeeded.len() < NOT_SUCCEEDED_MAX {
                let ran = row.attempt > 0;
                let log = |p: PathBuf| ran.then(|| relative(session, &p));
                self.not_succeeded.push(NotSucceeded {
                    stdout: log(session.stdout_log(&row.id, row.attempt)),
                    stderr: log(session.stderr_log(&row.id, row.attempt)),
                    row,
                });
            } else {
                self.omitted += 1;
            }
        }
        Ok(())
    }

    /// Publish the rows, then `summary.json` (which names them): a reader that finds the
    /// summary finds its rows.
    pub fn finish(self, fs: Fs, session: &Session, head: Head) -> Result<Summary> {
        self.rows.commit()?;
        let summary = Summary {
            session: session.id().to_string(),
            state: head.state,
            started_at: head.started_at,
            ended_at: head.ended_at,
            duration_ms: head.duration_ms,
            total: self.total,
            counts: self.counts,
            not_succeeded: self.not_succeeded,
            not_succeeded_omitted: self.omitted,
            rows: Some(relative(session, &self.rows_path)),
        };
        fs.write_json(&session.summary_json(), &summary)?;
        Ok(summary)
    }
}

/// The session's `summary.json`, if it finished.
pub fn read(session: &Session) -> Result<Option<Summary>> {
    fsio::read_json(&session.summary_json())
}

/// The rows of `summary-tasks.jsonl` as a stream, one line read at a time (`None` when
/// the file is missing). A line over [`ROW_CAP`] or one that is not a row is an error
/// naming the file and line; the stream ends after it.
pub fn rows(session: &Session) -> Result<Option<Rows>> {
    rows_at(&session.summary_rows())
}

/// [`rows`] of the file at `path`.
pub fn rows_at(path: &Path) -> Result<Option<Rows>> {
    Ok(fsio::open_read(path)?.map(|f| Rows {
        path: path.to_path_buf(),
        reader: BufReader::new(f),
        line: 0,
        buf: Vec::new(),
        done: false,
    }))
}

/// See [`rows`].
pub struct Rows {
    path: PathBuf,
    reader: BufReader<std::fs::File>,
    line: usize,
    buf: Vec<u8>,
    done: bool,
}

impl Rows {
    fn next_row(&mut self) -> Result<Option<SummaryRow>> {
        self.buf.clear();
        let n = (&mut self.reader)
            .take(ROW_CAP as u64 + 1)
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| Error::io(&self.path, "read", e))?;
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        let at = format!("{}:{}", self.path.display(), self.line);
        if self.buf.last() != Some(&b'\n') {
            return Err(Error::Session(if self.buf.len() > ROW_CAP {
                format!("{at}: line is longer than {ROW_CAP} bytes")
            } else {
                format!("{at}: the last line is cut short")
            }));
        }
        serde_json::from_slice(&self.buf)
            .map(Some)
            .map_err(|e| Error::Session(format!("{at}: invalid row: {e}")))
    }
}

impl Iterator for Rows {
    type Item = Result<SummaryRow>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_row() {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> (tempfile::TempDir, Session) {
        let d = tempfile::tempdir().unwrap();
        let s = Session::create(d.path(), "p").unwrap();
        (d, s)
    }

    fn outcome(task: &str, state: TaskState, reason: Option<String>) -> Outcome {
        Outcome {
            task: task.into(),
            state,
            attempt: 2,
            worker: Some("w1".into()),
            exit_code: Some(1),
            signal: None,
            started_at: None,
            ended_at: None,
            duration_ms: Some(5),
            reason,
            result: Some(serde_json::json!({"big": "x".repeat(1000)})),
            decided_at: "t".into(),
        }
    }

    /// The largest row maestro can write: names at the limit of the name rule, the
    /// longest reason kept, the largest numbers, every optional field set.
    #[test]
    fn row_size_is_bounded() {
        let (_d, s) = session();
        let id = "t".repeat(64);
        let mut o = outcome(&id, TaskState::Failed, Some("é".repeat(5000)));
        o.worker = Some("w".repeat(64));
        o.attempt = u32::MAX;
        o.exit_code = Some(i32::MIN);
        o.signal = Some(i32::MIN);
        o.duration_ms = Some(u64::MAX);
        let row = row_of(&s, &o, u32::MAX);
        assert!(row.reason.as_ref().unwrap().len() <= REASON_MAX);
        assert!(row.reason.as_ref().unwrap().ends_with('…'));
        let line = serde_json::to_vec(&row).unwrap();
        assert!(line.len() < 2048, "{} bytes", line.len());
        assert!(line.len() < ROW_CAP);
        // Listed with its logs in summary.json, pretty-printed: still small.
        let listed = NotSucceeded {
            stdout: Some(relative(&s, &s.stdout_log(&id, u32::MAX))),
            stderr: Some(relative(&s, &s.stderr_log(&id, u32::MAX))),
            row,
        };
        let pretty = serde_json::to_vec_pretty(&listed).unwrap();
        assert!(pretty.len() < 2048, "{} bytes", pretty.len());
        // So the whole summary is bounded by a constant far under the read cap.
        assert!((NOT_SUCCEEDED_MAX * 2048) as u64 * 2 < fsio::JSON_CAP);
    }

    #[test]
    fn a_row_names_the_result_file_instead_of_holding_it() {
        let (_d, s) = session();
        let row = row_of(&s, &outcome("a", TaskState::Succeeded, None), 3);
        assert_eq!(row.result.as_deref(), Some("tasks/a/attempt-2/result.json"));
        assert_eq!((row.attempt, row.attempts), (2, 3));
        let mut none = outcome("b", TaskState::Failed, Some("exited with code 1".into()));
        none.result = None;
        assert_eq!(row_of(&s, &none, 1).result, None);
        assert_eq!(
            row_of(&s, &none, 1).attempts,
            2,
            "never fewer than the deciding attempt"
        );
    }

    #[test]
    fn the_summary_counts_lists_what_did_not_succeed_and_the_rows_read_back() {
        let (_d, s) = session();
        let n = NOT_SUCCEEDED_MAX + 5;
        let mut written = vec![bare_row("skip", TaskState::Skipped, 0)];
        for i in 0..n {
            let o = outcome(&format!("f{i}"), TaskState::Failed, None);
            written.push(row_of(&s, &o, 2));
        }
        for i in 0..10 {
            let o = outcome(&format!("s{i}"), TaskState::Succeeded, None);
            written.push(row_of(&s, &o, 2));
        }
        let mut w = Writer::new(Fs::FAST, &s).unwrap();
        for row in &written {
            w.add(&s, row.clone()).unwrap();
        }
        let head = Head {
            state: SessionState::Failed,
            started_at: "a".into(),
            ended_at: "b".into(),
            duration_ms: 7,
        };
        let sum = w.finish(Fs::FAST, &s, head).unwrap();
        let back = read(&s).unwrap().unwrap();
        assert_eq!(back.total, written.len());
        assert_eq!(back.count(TaskState::Failed), n);
        assert_eq!(back.count(TaskState::Skipped), 1);
        assert_eq!(back.count(TaskState::Succeeded), 10);
        assert_eq!(back.count(TaskState::Cancelled), 0);
        assert_eq!(back.not_succeeded.len(), NOT_SUCCEEDED_MAX);
        assert_eq!(back.not_succeeded_omitted, n + 1 - NOT_SUCCEEDED_MAX);
        assert_eq!(back.not_succeeded, sum.not_succeeded);
        assert_eq!(back.rows.as_deref(), Some("summary-tasks.jsonl"));
        let skip = &back.not_succeeded[0];
        assert_eq!(skip.row.id, "skip");
        assert_eq!(
            (skip.stdout.as_deref(), skip.stderr.as_deref()),
            (None, None)
        );
        let f0 = &back.not_succeeded[1];
        assert_eq!(f0.row.id, "f0");
        assert_eq!(f0.stderr.as_deref(), Some("tasks/f0/attempt-2/stderr.log"));
        let json = std::fs::read_to_string(s.summary_json()).unwrap();
        assert!(json.contains("\"failed\": 105"), "{json}");
        let rows: Vec<SummaryRow> = rows(&s).unwrap().unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(rows, written);
    }

    #[test]
    fn the_rows_reader_caps_lines_and_names_the_bad_one() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("rows.jsonl");
        let good = serde_json::to_string(&bare_row("a", TaskState::Skipped, 0)).unwrap();
        let long = format!("{}\n", "x".repeat(ROW_CAP + 10));
        std::fs::write(&p, format!("{good}\n{long}{good}\n")).unwrap();
        let got: Vec<_> = rows_at(&p).unwrap().unwrap().collect();
        assert_eq!(got.len(), 2, "the stream ends at the bad line");
        assert!(got[0].is_ok());
        assert_eq!(
            got[1].as_ref().unwrap_err().to_string(),
            format!("{}:2: line is longer than {ROW_CAP} bytes", p.display())
        );
        std::fs::write(&p, format!("{good}\n{{\"id\":1}}\n")).unwrap();
        let got: Vec<_> = rows_at(&p).unwrap().unwrap().collect();
        let e = got[1].as_ref().unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}:2: invalid row: ", p.display())),
            "{e}"
        );
        std::fs::write(&p, &good).unwrap();
        let got: Vec<_> = rows_at(&p).unwrap().unwrap().collect();
        assert_eq!(
            got[0].as_ref().unwrap_err().to_string(),
            format!("{}:1: the last line is cut short", p.display())
        );
        assert!(rows_at(&d.path().join("none")).unwrap().is_none());
    }

    /// A summary from before the rows file (every row embedded under `tasks`) still reads,
    /// for its state.
    #[test]
    fn an_old_summary_reads_for_its_state() {
        let old = r#"{"session": "s", "state": "failed", "started_at": "a", "ended_at": "b",
            "duration_ms": 3, "tasks": [{"id": "a", "state": "failed", "attempts": 1,
            "worker": "w1", "exit_code": 1, "duration_ms": 2, "reason": "x", "result": null}]}"#;
        let s: Summary = serde_json::from_str(old).unwrap();
        assert_eq!(s.state, SessionState::Failed);
        assert_eq!((s.total, s.rows), (0, None));
    }
}
