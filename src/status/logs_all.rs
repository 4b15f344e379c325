//! `orchestrator logs SESSION --all [-f]`: every task's output in one stream, each line
//! prefixed by its task id (coloured on a terminal unless `NO_COLOR` is set).
//!
//! Without `-f`, the latest attempt of every task is merged by time: a log with an index
//! (`stdout.log.idx`, written for pipe and pty logs) gives each line the time its bytes
//! arrived; a log without one (a headless task writes its file itself) is placed whole at
//! the time the file was made. Only the logs whose lines overlap in time are open at
//! once, so a session of 100,000 tasks needs about as many open files as it had workers.
//!
//! With `-f`, lines are printed as they arrive, until every task has an outcome. Watch
//! events name the task they touch, and only that task's log is read again; the rescan
//! timer (and a watcher error) reads every task not yet done, because events are hints.

use std::collections::{BTreeMap, BinaryHeap};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::fsio;
use crate::session::Session;
use crate::watch::{self, WatchMode};

/// ANSI colours given to task ids in turn (no black or white: they vanish on one
/// background or the other).
const COLOURS: [u8; 6] = [31, 32, 33, 34, 35, 36];

/// How each line is prefixed.
struct Prefixer {
    width: usize,
    colour: bool,
    ids: BTreeMap<String, usize>,
}

impl Prefixer {
    fn new(ids: &[String], colour: bool) -> Prefixer {
        Prefixer {
            // Long ids would push every line right: the column is capped, longer ids
            // simply overflow it.
            width: ids.iter().map(String::len).max().unwrap_or(0).min(24),
            colour,
            ids: ids
                .iter()
                .enumerate()
                .map(|(i, t)| (t.clone(), i))
                .collect(),
        }
    }

    fn write(&self, out: &mut impl Write, task: &str, line: &[u8]) -> std::io::Result<()> {
        let pad = self.width.saturating_sub(task.len());
        if self.colour {
            let c = COLOURS[self.ids.get(task).copied().unwrap_or(0) % COLOURS.len()];
            write!(out, "\x1b[{c}m{task}{:pad$} |\x1b[0m ", "")?;
        } else {
            write!(out, "{task}{:pad$} | ", "")?;
        }
        out.write_all(line)?;
        if line.last() != Some(&b'\n') {
            out.write_all(b"\n")?;
        }
        Ok(())
    }
}

/// Whether ids are coloured: on a terminal, unless `NO_COLOR` is set (to anything).
pub fn colour_wanted(stdout_is_terminal: bool) -> bool {
    stdout_is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Print every task's output, merged by time, or followed until every task is done.
pub fn logs_all(s: &Session, follow: Option<WatchMode>, colour: bool) -> Result<()> {
    let ids = s.plan_task_ids()?;
    let prefix = Prefixer::new(&ids, colour);
    let mut out = std::io::stdout().lock();
    match follow {
        None => merged(s, &ids, &prefix, &mut out),
        Some(mode) => followed(s, &ids, &prefix, mode, &mut out),
    }
}

/// `(offset, unix_ms)` pieces of a log's index; a line that is not two numbers (a torn
/// last line) ends it.
fn read_index(path: &Path) -> Result<Vec<(u64, u64)>> {
    let Some(f) = fsio::open_read(path)? else {
        return Ok(Vec::new());
    };
    let mut v = Vec::new();
    for line in BufReader::new(f).lines() {
        let line = line.map_err(|e| Error::io(path, "read", e))?;
        let mut it = line.split_ascii_whitespace().map(str::parse::<u64>);
        match (it.next(), it.next()) {
            (Some(Ok(o)), Some(Ok(t))) => v.push((o, t)),
            _ => break,
        }
    }
    Ok(v)
}

fn ms_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One task's log being merged: the line read ahead and its time.
struct Stream {
    task: String,
    path: PathBuf,
    reader: BufReader<std::fs::File>,
    index: Vec<(u64, u64)>,
    /// Time for lines no index covers.
    base_ms: u64,
    offset: u64,
    line: Vec<u8>,
    at_ms: u64,
}

impl Stream {
    /// Read the next line; false at the end.
    fn advance(&mut self) -> Result<bool> {
        self.line.clear();
        let n = self
            .reader
            .read_until(b'\n', &mut self.line)
            .map_err(|e| Error::io(&self.path, "read", e))?;
        if n == 0 {
            return Ok(false);
        }
        // The piece that holds the line's first byte: the last index entry at or
        // before its offset.
        let i = self.index.partition_point(|&(o, _)| o <= self.offset);
        self.at_ms = match i {
            0 => self.base_ms,
            i => self.index[i - 1].1,
        };
        self.offset += n as u64;
        Ok(true)
    }
}

/// A log waiting to be opened: its first line's time, and where it is.
struct Pending {
    first_ms: u64,
    task: String,
    attempt: u32,
}

fn merged(s: &Session, ids: &[String], prefix: &Prefixer, out: &mut impl Write) -> Result<()> {
    // Every latest attempt with a log, ordered by when its output began.
    let mut pending = Vec::new();
    for task in ids {
        let Some(&attempt) = s.attempts(task)?.last() else {
            continue;
        };
        let log = s.stdout_log(task, attempt);
        let Some(file) = fsio::open_read(&log)? else {
            continue;
        };
        let made = file
            .metadata()
            .and_then(|m| m.created().or_else(|_| m.modified()))
            .ok()
            .map(ms_of);
        let first = read_first_index(&s.log_index(task, attempt))?;
        pending.push(Pending {
            first_ms: first.or(made).unwrap_or(0),
            task: task.clone(),
            attempt,
        });
    }
    pending.sort_by_key(|p| p.first_ms);
    let mut pending = pending.into_iter().peekable();
    // Min-heap of open streams by (time of their next line, order opened).
    let mut open: Vec<Option<Stream>> = Vec::new();
    let mut heap: BinaryHeap<std::cmp::Reverse<(u64, usize)>> = BinaryHeap::new();
    loop {
        // Open every log whose output began before the earliest line now in hand.
        let next_at = heap.peek().map(|r| r.0.0);
        while let Some(p) = pending.next_if(|p| next_at.is_none_or(|t| p.first_ms <= t)) {
            let path = s.stdout_log(&p.task, p.attempt);
            let Some(f) = fsio::open_read(&path)? else {
                continue;
            };
            let mut st = Stream {
                index: read_index(&s.log_index(&p.task, p.attempt))?,
                task: p.task,
                path,
                reader: BufReader::new(f),
                base_ms: p.first_ms,
                offset: 0,
                line: Vec::new(),
                at_ms: 0,
            };
            if st.advance()? {
                heap.push(std::cmp::Reverse((st.at_ms, open.len())));
                open.push(Some(st));
            }
        }
        let Some(std::cmp::Reverse((_, i))) = heap.pop() else {
            return Ok(());
        };
        let st = open[i].as_mut().expect("a stream in the heap is open");
        if prefix.write(out, &st.task, &st.line).is_err() {
            // Nobody reads any more (`logs --all | head`).
            return Ok(());
        }
        if st.advance()? {
            heap.push(std::cmp::Reverse((st.at_ms, i)));
        } else {
            // Done: close its file now, not at the end.
            open[i] = None;
        }
    }
}

/// The time of an index's first piece, without reading the rest.
fn read_first_index(path: &Path) -> Result<Option<u64>> {
    let Some(f) = fsio::open_read(path)? else {
        return Ok(None);
    };
    let mut first = String::new();
    BufReader::new(f)
        .read_line(&mut first)
        .map_err(|e| Error::io(path, "read", e))?;
    let mut it = first.split_ascii_whitespace();
    Ok(it.nth(1).and_then(|t| t.parse().ok()))
}

/// A followed task: which attempt is printed, how far, and a line not yet ended.
#[derive(Default)]
struct Follow {
    attempt: Option<u32>,
    offset: u64,
    partial: Vec<u8>,
}

fn followed(
    s: &Session,
    ids: &[String],
    prefix: &Prefixer,
    mode: WatchMode,
    out: &mut impl Write,
) -> Result<()> {
    let tasks_dir = s.tasks_dir();
    let (tx, rx) = std::sync::mpsc::channel::<Option<String>>();
    let strip = tasks_dir.clone();
    // The hint is the task an event touched; `None` (an error, an overflow, a path we
    // cannot place) means "look at every task".
    let w = watch::start(std::slice::from_ref(&tasks_dir), mode, tx, move |ev| {
        let task = ev.ok().and_then(|e| {
            e.paths.iter().find_map(|p| {
                let rest = p.strip_prefix(&strip).ok()?;
                Some(rest.components().next()?.as_os_str().to_str()?.to_string())
            })
        });
        Some(task)
    });
    // A session whose tasks/ is not made yet: the watch falls back to polling.
    let w = w?;
    let rescan = w.mode().rescan_interval();
    let mut active: BTreeMap<String, Follow> =
        ids.iter().map(|t| (t.clone(), Follow::default())).collect();
    let mut todo: Vec<String> = ids.to_vec();
    loop {
        for task in todo.drain(..) {
            let Some(f) = active.get_mut(&task) else {
                continue;
            };
            // Seen before reading: an outcome written after the last byte means the
            // read that follows it has that byte; the last line is never missed.
            let done = fsio::exists(&s.outcome_json(&task));
            match pump(s, &task, f, prefix, out, done)? {
                Pumped::Closed => return Ok(()),
                Pumped::Open if done => {
                    active.remove(&task);
                }
                Pumped::Open => {}
            }
        }
        if active.is_empty() {
            return Ok(());
        }
        match rx.recv_timeout(rescan) {
            Ok(first) => {
                let mut all = first.is_none();
                let mut named: Vec<String> = first.into_iter().collect();
                while let Ok(hint) = rx.try_recv() {
                    match hint {
                        Some(t) => named.push(t),
                        None => all = true,
                    }
                }
                if all {
                    todo.extend(active.keys().cloned());
                } else {
                    named.sort();
                    named.dedup();
                    todo.extend(named);
                }
            }
            Err(e) => {
                if e == std::sync::mpsc::RecvTimeoutError::Disconnected {
                    std::thread::sleep(rescan);
                }
                todo.extend(active.keys().cloned());
            }
        }
    }
}

enum Pumped {
    Open,
    /// stdout was closed.
    Closed,
}

/// Print what a task's log gained since last time (moving to a newer attempt when one
/// appears); with `done`, also its last unended line.
fn pump(
    s: &Session,
    task: &str,
    f: &mut Follow,
    prefix: &Prefixer,
    out: &mut impl Write,
    done: bool,
) -> Result<Pumped> {
    loop {
        let newest = s.attempts(task)?.last().copied();
        if newest.is_none() {
            return Ok(Pumped::Open);
        }
        if newest != f.attempt {
            // What the older attempt left unended is printed before the newer one's.
            if !f.partial.is_empty() && prefix.write(out, task, &f.partial).is_err() {
                return Ok(Pumped::Closed);
            }
            *f = Follow {
                attempt: newest,
                ..Follow::default()
            };
            let n = newest.unwrap_or(0);
            if n > 1
                && prefix
                    .write(out, task, format!("--- attempt {n} ---").as_bytes())
                    .is_err()
            {
                return Ok(Pumped::Closed);
            }
        }
        let attempt = f.attempt.unwrap_or(0);
        let path = s.stdout_log(task, attempt);
        if let Some(mut file) = fsio::open_read(&path)? {
            file.seek(SeekFrom::Start(f.offset))
                .map_err(|e| Error::io(&path, "seek", e))?;
            let mut buf = Vec::new();
            file.read_to_end(&mut buf)
                .map_err(|e| Error::io(&path, "read", e))?;
            f.offset += buf.len() as u64;
            f.partial.extend_from_slice(&buf);
            let ended = f
                .partial
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            for line in f.partial[..ended].split_inclusive(|&b| b == b'\n') {
                if prefix.write(out, task, line).is_err() {
                    return Ok(Pumped::Closed);
                }
            }
            f.partial.drain(..ended);
        }
        // A newer attempt may have begun while this one was read.
        if s.attempts(task)?.last().copied() == f.attempt {
            break;
        }
    }
    if done && !f.partial.is_empty() {
        if prefix.write(out, task, &f.partial).is_err() {
            return Ok(Pumped::Closed);
        }
        f.partial.clear();
    }
    if out.flush().is_err() {
        return Ok(Pumped::Closed);
    }
    Ok(Pumped::Open)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_pad_ids_and_end_every_line() {
        let p = Prefixer::new(&["a".into(), "long-id".into()], false);
        let mut out = Vec::new();
        p.write(&mut out, "a", b"one\n").unwrap();
        p.write(&mut out, "long-id", b"two").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a       | one\nlong-id | two\n"
        );
        let p = Prefixer::new(&["a".into(), "b".into()], true);
        let mut out = Vec::new();
        p.write(&mut out, "b", b"x\n").unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "\x1b[32mb |\x1b[0m x\n");
    }
}
