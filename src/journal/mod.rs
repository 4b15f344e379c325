//! The session's history on disk: the one writer of a journal ([`Journal`]), the one
//! incremental reader ([`Reader`], over [`Tail`]) and what reads whole journals. The
//! events themselves are in [`event`], their fold in [`history`].
//!
//! The journal is the record the orchestrator rebuilds itself from on `resume`, so every
//! fact that decides who may report (the fence: an assignment, its withdrawal, the end
//! of an attempt) is a line here before the file that acts on it is published. Status,
//! logs and the tests read the same events through the same fold, so no reader parses
//! lines its own way (`parse.rs` reads the lines every attempt writes without serde's
//! detour for tagged enums, and any other line with it). A worker's own journal
//! (`workers/<id>/events.jsonl`) has its own, smaller vocabulary: [`WorkerEvent`].

pub mod event;
pub mod history;
mod parse;

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use event::{ControlAction, DeathCause, EndReason, Event, WorkerEvent};
pub use history::{AttemptHistory, History, TaskHistory};

use crate::error::{Error, Result, io_err};
use crate::fsio;
use crate::proto::{self, Started};
use crate::session::Session;

/// Serialize one journal line: `{"ts":..., "event":..., fields...}` and a newline.
fn line<T: Serialize>(ev: &T) -> Result<String> {
    line_at(ev, &proto::now_rfc3339())
}

/// [`line`], stamped `ts` (tests write journals with fixed times through it).
pub(crate) fn line_at<T: Serialize>(ev: &T, ts: &str) -> Result<String> {
    let body = serde_json::to_string(ev)
        .map_err(|e| Error::Session(format!("cannot encode a journal line: {e}")))?;
    // `ts` first, so a person reading the file sees when before what.
    let rest = body.strip_prefix('{').unwrap_or(&body);
    let sep = if rest == "}" { "" } else { "," };
    Ok(format!("{{\"ts\":\"{ts}\"{sep}{rest}"))
}

/// An append-only journal: the session's `events.jsonl` (only the orchestrator writes
/// it) or a worker's `workers/<id>/events.jsonl` (only that worker writes it). One
/// `write(2)` per line, so a reader never sees a torn line except a crash's last one.
pub struct Journal {
    path: PathBuf,
    file: File,
    fs: fsio::Fs,
}

impl Journal {
    /// The session's journal; `fs` says whether each line is fsync'd.
    pub fn open(session: &Session, fs: fsio::Fs) -> Result<Journal> {
        Journal::open_at(session.events(), fs)
    }

    pub fn open_worker(session: &Session, worker: &str, fs: fsio::Fs) -> Result<Journal> {
        Journal::open_at(session.worker_events(worker), fs)
    }

    fn open_at(path: PathBuf, fs: fsio::Fs) -> Result<Journal> {
        let file = fsio::open_append(&path)?;
        cut_torn_tail(&path, &file)?;
        Ok(Journal { path, file, fs })
    }

    /// Whether this journal's lines are fsync'd (and so the writes of its owner).
    pub fn fs(&self) -> fsio::Fs {
        self.fs
    }

    /// Append one session event (fsync'd under `--durable`).
    pub fn append(&mut self, ev: &Event) -> Result<()> {
        let l = line(ev)?;
        self.fs.append_line(&mut self.file, &self.path, &l)
    }

    /// Append one worker event.
    pub fn append_worker(&mut self, ev: &WorkerEvent) -> Result<()> {
        let l = line(ev)?;
        self.fs.append_line(&mut self.file, &self.path, &l)
    }
}

/// Cut the journal at `path` back to its last complete line. A writer that died in the
/// middle of a line (or a full disk that took half of one) left a partial line no reader
/// ever counted; the next line appended must not be glued to it. Only its one writer
/// opens a journal for appending, so nobody is writing it now.
fn cut_torn_tail(path: &Path, file: &File) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file.metadata().map_err(io_err(path, "stat"))?.len();
    let Some(mut r) = fsio::open_read(path)? else {
        return Ok(());
    };
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(64 * 1024);
        let mut buf = vec![0u8; (end - start) as usize];
        r.seek(SeekFrom::Start(start))
            .and_then(|_| r.read_exact(&mut buf))
            .map_err(io_err(path, "read"))?;
        if let Some(i) = buf.iter().rposition(|&b| b == b'\n') {
            let keep = start + i as u64 + 1;
            if keep < len {
                file.set_len(keep)
                    .map_err(io_err(path, "cut a torn last line of"))?;
            }
            return Ok(());
        }
        end = start;
    }
    // No newline at all: the whole file is one torn line.
    if len > 0 {
        file.set_len(0)
            .map_err(io_err(path, "cut a torn last line of"))?;
    }
    Ok(())
}

/// The longest journal line read: a longer one is skipped, as a malformed one is, and is
/// never held whole. The longest line maestro writes is `tasks_added`, the plan's task
/// ids, which are part of `plan.json` and so under [`crate::plan::PLAN_CAP`].
pub const LINE_CAP: usize = crate::plan::PLAN_CAP as usize;

/// What [`Tail`] shows each complete line to.
type LineFn<'a> = dyn FnMut(&[u8]) + 'a;

/// Follows a journal as it grows: each call returns the complete lines appended since the
/// last one, one `read(2)` per call. The file stays open: a journal is only ever appended
/// to, never replaced.
pub struct Tail {
    path: PathBuf,
    file: Option<File>,
    /// What was read after the last complete line returned.
    partial: Vec<u8>,
    /// Where in `partial` the line whose newline has not been read yet starts.
    line_start: usize,
    /// The line being read is longer than `cap`: the rest of it is dropped as it comes.
    skipping: bool,
    cap: usize,
    /// Bytes read from the file so far (complete lines, a partial one, skipped ones).
    read: u64,
}

impl Tail {
    pub fn new(path: PathBuf) -> Tail {
        Tail {
            path,
            file: None,
            partial: Vec::new(),
            line_start: 0,
            skipping: false,
            cap: LINE_CAP,
            read: 0,
        }
    }

    /// How far into the file the lines returned so far go: where the next complete line
    /// starts (a partial last line is read but not counted).
    pub fn offset(&self) -> u64 {
        self.read - (self.partial.len() - self.line_start) as u64
    }

    /// Keep what was read, dropping a line that grows past the cap.
    fn take(&mut self, mut data: &[u8]) {
        if self.skipping {
            let Some(nl) = data.iter().position(|&b| b == b'\n') else {
                return;
            };
            data = &data[nl + 1..];
            self.skipping = false;
        }
        let old = self.partial.len();
        self.partial.extend_from_slice(data);
        if let Some(nl) = data.iter().rposition(|&b| b == b'\n') {
            self.line_start = old + nl + 1;
        }
        if self.partial.len() - self.line_start > self.cap {
            self.partial.truncate(self.line_start);
            self.skipping = true;
        }
    }

    /// The complete lines appended since the last call (none while the file is missing).
    /// A line longer than [`LINE_CAP`] is skipped.
    pub fn read_lines(&mut self) -> Result<Vec<Vec<u8>>> {
        self.read_appended(None)?;
        let mut out = Vec::new();
        self.take_lines(&mut |l| out.push(l.to_vec()));
        Ok(out)
    }

    /// [`Tail::read_lines`] shown to `f` one at a time, each as soon as the read that
    /// completed it, where it was read: the first read of a large journal (5 MB, 40 000
    /// lines for 10 000 tasks) neither copies every line nor holds the file whole. Should
    /// a read fail, the lines shown before it are taken (the next call goes on after
    /// them).
    pub fn for_each_line(&mut self, mut f: impl FnMut(&[u8])) -> Result<()> {
        self.read_appended(Some(&mut f))
    }

    /// Read what was appended into `partial`, showing the complete lines of each read to
    /// `each` (and forgetting them) if given, else keeping them all for the caller.
    fn read_appended(&mut self, mut each: Option<&mut LineFn>) -> Result<()> {
        use std::io::Read;
        if self.file.is_none() {
            self.file = fsio::open_read(&self.path)?;
        }
        let Some(mut file) = self.file.take() else {
            return Ok(());
        };
        // Plain reads, not `read_to_end`, which costs an fstat and an lseek per call
        // (this runs for every busy worker on every wake-up). A short read of a regular
        // file means we are at its end for now.
        let mut chunk = [0u8; 16 * 1024];
        let read = loop {
            match file.read(&mut chunk) {
                Ok(n) => {
                    self.read += n as u64;
                    self.take(&chunk[..n]);
                    if let Some(f) = each.as_mut() {
                        self.take_lines(f);
                    }
                    if n < chunk.len() {
                        break Ok(());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.file = Some(file);
        read.map_err(io_err(&self.path, "read"))
    }

    /// Show `f` the complete lines kept (but those over the cap), and forget them.
    fn take_lines(&mut self, f: &mut LineFn) {
        if self.line_start == 0 {
            return;
        }
        // memchr: a byte-by-byte split was an eighth of a large journal's first read.
        let lines = &self.partial[..self.line_start - 1];
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', lines).chain([lines.len()]) {
            let l = &lines[start..end];
            start = end + 1;
            if !l.is_empty() && l.len() <= self.cap {
                f(l);
            }
        }
        self.partial.drain(..self.line_start);
        self.line_start = 0;
    }

    /// The session events appended since the last call; a malformed line is skipped.
    pub fn read_events(&mut self) -> Result<Vec<Event>> {
        Ok(self
            .read_lines()?
            .iter()
            .filter_map(|l| parse::event(l))
            .collect())
    }

    /// The worker events appended since the last call; a malformed line is skipped.
    pub fn read_worker_events(&mut self) -> Result<Vec<WorkerEvent>> {
        Ok(self
            .read_lines()?
            .iter()
            .filter_map(|l| serde_json::from_slice(l).ok())
            .collect())
    }
}

/// The one reader of a session's journal: folds what was appended since the last
/// [`Reader::refresh`] into its [`History`], so a live view re-reads nothing.
pub struct Reader {
    tail: Tail,
    history: History,
    /// Complete lines that were not an event (torn by a crash and written after, or
    /// edited by hand): skipped, and counted so a view can say so.
    malformed: usize,
}

impl Reader {
    pub fn new(session: &Session) -> Reader {
        Reader::at(session.events())
    }

    pub fn at(path: PathBuf) -> Reader {
        Reader {
            tail: Tail::new(path),
            history: History::default(),
            malformed: 0,
        }
    }

    /// Read what was appended and fold it in; returns the new events.
    pub fn refresh(&mut self) -> Result<Vec<Event>> {
        // Lines kept until all are read (not `for_each_line`): on a failed read, none is
        // taken, as none is returned.
        let mut evs = Vec::new();
        for line in self.tail.read_lines()? {
            match parse::event(&line) {
                Some(e) => {
                    self.history.apply(&e);
                    evs.push(e);
                }
                None => self.malformed += 1,
            }
        }
        Ok(evs)
    }

    /// Read what was appended and fold it in, showing `seen` each new event with its line
    /// (a live view marks what the event touched, and keeps the last lines to show);
    /// returns how many events were read. Nothing is kept but the fold: lines are folded
    /// as they are read, so a first read of a large journal never holds it whole (should
    /// a read fail, what was folded before it stays folded, and was shown).
    pub fn refresh_with(&mut self, mut seen: impl FnMut(&Event, &[u8])) -> Result<usize> {
        let mut n = 0;
        let (history, malformed) = (&mut self.history, &mut self.malformed);
        self.tail.for_each_line(|line| match parse::event(line) {
            Some(e) => {
                history.apply(&e);
                seen(&e, line);
                n += 1;
            }
            None => *malformed += 1,
        })?;
        Ok(n)
    }

    /// Where in the journal the lines folded so far end.
    pub fn offset(&self) -> u64 {
        self.tail.offset()
    }

    /// Complete lines skipped because they were not events.
    pub fn malformed(&self) -> usize {
        self.malformed
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    pub fn into_history(self) -> History {
        self.history
    }
}

/// The `ts` of a journal line as written (RFC 3339), read without parsing the line: it
/// is always its first field ([`Journal`] puts it there).
pub fn line_ts(line: &[u8]) -> Option<&str> {
    let rest = line.strip_prefix(b"{\"ts\":\"")?;
    let end = rest.iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&rest[..end]).ok()
}

/// The whole journal of a session, folded (what `status` and `resume` start from).
pub fn read_history(session: &Session) -> Result<History> {
    let mut r = Reader::new(session);
    r.refresh_with(|_, _| {})?;
    Ok(r.into_history())
}

/// Every event of a session's journal, in order (tests and tools).
pub fn read_all(session: &Session) -> Result<Vec<Event>> {
    Tail::new(session.events()).read_events()
}

/// When a journal line was written, in Unix milliseconds: its `ts`. The writer puts it
/// first (see [`line`]), where it is found without parsing the line a second time; a
/// line written otherwise (by hand, by another tool) is parsed for it. `None` for a line
/// without one.
pub fn stamp_ms(line: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Stamp {
        ts: String,
    }
    let first = line.strip_prefix(b"{\"ts\":\"").and_then(|rest| {
        let end = rest.iter().position(|&b| b == b'"')?;
        std::str::from_utf8(&rest[..end]).ok().map(str::to_string)
    });
    let text = match first {
        Some(t) => t,
        None => serde_json::from_slice::<Stamp>(line).ok()?.ts,
    };
    let t = humantime::parse_rfc3339_weak(&text).ok()?;
    t.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_millis() as u64)
}

/// One journal line as [`for_each_stamped`] gives it: when it was written and what it
/// says. `None` for a malformed line, which every reader skips.
pub fn parse_stamped(line: &[u8]) -> Option<(Option<u64>, Event)> {
    let ev = parse::event(line)?;
    Some((stamp_ms(line), ev))
}

/// Every event of the journal at `path` with the time it was written, in order, read a
/// line at a time so that a large session's journal is never held whole (the report
/// reads a 100 000-task session's this way). Lines over [`LINE_CAP`] and malformed lines
/// are skipped, as the other readers do; a partial last line (a crash's) is not read.
pub fn for_each_stamped(path: &Path, mut f: impl FnMut(Option<u64>, Event)) -> Result<()> {
    use std::io::{BufRead, BufReader, Read};
    let Some(file) = fsio::open_read(path)? else {
        return Ok(());
    };
    let mut r = BufReader::with_capacity(256 * 1024, file);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = (&mut r)
            .take(LINE_CAP as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(io_err(path, "read"))?;
        if n == 0 {
            return Ok(());
        }
        if buf.last() != Some(&b'\n') {
            if buf.len() <= LINE_CAP {
                return Ok(());
            }
            // Too long to be one of ours: drop the rest of it, up to its newline.
            loop {
                let avail = r.fill_buf().map_err(io_err(path, "read"))?;
                if avail.is_empty() {
                    return Ok(());
                }
                match avail.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        r.consume(i + 1);
                        break;
                    }
                    None => {
                        let len = avail.len();
                        r.consume(len);
                    }
                }
            }
            continue;
        }
        if let Some((ts, ev)) = parse_stamped(&buf[..buf.len() - 1]) {
            f(ts, ev);
        }
    }
}

/// The last complete line of a worker's journal (what it does now), reading only the
/// file's tail. `Ok(None)` when the file is missing or holds no complete line.
pub fn last_worker_event(path: &Path) -> Result<Option<WorkerEvent>> {
    use std::io::{Read, Seek, SeekFrom};
    const TAIL: u64 = 8192;
    let mut file = match fsio::open_read(path)? {
        Some(f) => f,
        None => return Ok(None),
    };
    let len = file.metadata().map_err(io_err(path, "read"))?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(TAIL)))
        .map_err(io_err(path, "read"))?;
    let mut buf = Vec::with_capacity(TAIL as usize);
    file.take(TAIL)
        .read_to_end(&mut buf)
        .map_err(io_err(path, "read"))?;
    // Only lines ended by a newline are complete (a crash may leave a partial last one).
    let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
        return Ok(None);
    };
    // An agent's relayed report says nothing of what the worker does.
    Ok(buf[..end]
        .split(|&b| b == b'\n')
        .rev()
        .filter_map(|l| serde_json::from_slice(l).ok())
        .find(|e| !matches!(e, WorkerEvent::Agent { .. })))
}

/// The `started` line of `task`'s attempt `attempt` in worker `worker`'s journal: the
/// attempt's process and group id and start time. The line is near the end while the
/// attempt runs, so the journal's tail is searched first, then the whole file.
pub fn started_record(
    session: &Session,
    worker: &str,
    task: &str,
    attempt: u32,
) -> Result<Option<Started>> {
    use std::io::{Read, Seek, SeekFrom};
    const TAIL: u64 = 64 * 1024;
    let path = session.worker_events(worker);
    let Some(mut file) = fsio::open_read(&path)? else {
        return Ok(None);
    };
    let len = file.metadata().map_err(io_err(&path, "read"))?.len();
    let find = |buf: &[u8]| {
        buf.split(|&b| b == b'\n').rev().find_map(
            |l| match serde_json::from_slice::<WorkerEvent>(l).ok()? {
                WorkerEvent::Started(st) if st.task == task && st.attempt == attempt => Some(st),
                _ => None,
            },
        )
    };
    let mut from = len.saturating_sub(TAIL);
    loop {
        file.seek(SeekFrom::Start(from))
            .map_err(io_err(&path, "read"))?;
        let mut buf = Vec::new();
        (&mut file)
            .take(len - from)
            .read_to_end(&mut buf)
            .map_err(io_err(&path, "read"))?;
        if let Some(st) = find(&buf) {
            return Ok(Some(st));
        }
        if from == 0 {
            return Ok(None);
        }
        from = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{ExitRecord, TaskState};

    fn roundtrip(ev: Event) -> Event {
        let l = line(&ev).unwrap();
        assert!(l.starts_with("{\"ts\":\""), "{l}");
        serde_json::from_str(&l).unwrap()
    }

    #[test]
    fn events_round_trip_with_the_tag_and_a_timestamp_first() {
        let ev = Event::TaskAssigned {
            task: "a".into(),
            attempt: 2,
            worker: "w1".into(),
            seq: 7,
        };
        assert_eq!(roundtrip(ev.clone()), ev);
        let l = line(&ev).unwrap();
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["event"], "task_assigned");
        assert_eq!(v["attempt"], 2);
        let ended = Event::AttemptEnded {
            task: "a".into(),
            attempt: 1,
            worker: None,
            reason: EndReason::WorkerLost,
        };
        let v: serde_json::Value = serde_json::from_str(&line(&ended).unwrap()).unwrap();
        assert_eq!(v["reason"], "worker_lost");
        assert_eq!(roundtrip(ended.clone()), ended);
    }

    #[test]
    fn an_unknown_event_kind_is_read_as_unknown_not_an_error() {
        let e: Event =
            serde_json::from_str(r#"{"ts":"x","event":"from_the_future","n":1}"#).unwrap();
        assert_eq!(e, Event::Unknown);
        let w: WorkerEvent = serde_json::from_str(r#"{"ts":"x","event":"stopped"}"#).unwrap();
        assert!(matches!(w, WorkerEvent::Stopped {}));
    }

    #[test]
    fn the_stamped_reader_gives_each_line_its_time_and_skips_what_it_cannot_read() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("events.jsonl");
        let ev = Event::TaskSkipped {
            task: "b".into(),
            reason: "x".into(),
        };
        let good = format!("{}\n", line(&ev).unwrap());
        let long = format!("{{\"ts\":\"x\",\"pad\":\"{}\"}}\n", "y".repeat(LINE_CAP));
        let old = "{\"event\":\"session_thawed\"}\n";
        std::fs::write(&p, format!("{good}not json\n{long}{old}{good}{{\"ts\":\"2")).unwrap();
        let mut seen = Vec::new();
        for_each_stamped(&p, |ts, ev| seen.push((ts, ev))).unwrap();
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert_eq!(seen[0].1, ev);
        assert!(seen[0].0.unwrap() > 1_700_000_000_000);
        assert_eq!(seen[1], (None, Event::SessionThawed), "a line without ts");
        assert_eq!(seen[2].1, ev);
        assert_eq!(
            stamp_ms(b"{\"ts\":\"1970-01-01T00:00:01.250Z\",\"event\":\"x\"}"),
            Some(1250)
        );
        let spaced = b"{ \"event\": \"x\", \"ts\": \"1970-01-01T00:00:02Z\" }";
        assert_eq!(
            stamp_ms(spaced),
            Some(2000),
            "a line not written by the journal"
        );
        for_each_stamped(&d.path().join("none"), |_, _| panic!("no file, no line")).unwrap();
    }

    #[test]
    fn the_reader_folds_only_what_was_appended() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("events.jsonl");
        let mut r = Reader::at(p.clone());
        assert!(r.refresh().unwrap().is_empty(), "no file yet");
        let mut j = Journal::open_at(p, fsio::Fs::FAST).unwrap();
        j.append(&Event::TasksAdded {
            tasks: vec!["a".into(), "b".into()],
        })
        .unwrap();
        assert_eq!(r.refresh().unwrap().len(), 1);
        assert!(r.refresh().unwrap().is_empty());
        j.append(&Event::TaskSkipped {
            task: "b".into(),
            reason: "x".into(),
        })
        .unwrap();
        assert_eq!(r.refresh().unwrap().len(), 1);
        assert_eq!(r.history().tasks["b"].decided, Some(TaskState::Skipped));
        assert_eq!(r.history().events, 2);
    }

    #[test]
    fn started_record_finds_the_line_of_that_attempt_beyond_the_tail() {
        let d = tempfile::tempdir().unwrap();
        let s = Session::create(d.path(), "t").unwrap();
        fsio::create_dir_private(&s.worker_dir("w1")).unwrap();
        let mut j = Journal::open_worker(&s, "w1", fsio::Fs::FAST).unwrap();
        let started = |task: &str, attempt: u32, pid: u32| {
            WorkerEvent::Started(Started {
                task: task.into(),
                attempt,
                worker: "w1".into(),
                pid,
                pgid: pid,
                started_at: "x".into(),
                started_unix_ms: 1,
                proc_start: None,
                boot_id: None,
            })
        };
        j.append_worker(&started("a", 1, 100)).unwrap();
        // Push a's line out of the 64 KiB tail that is searched first.
        for i in 0..2000 {
            j.append_worker(&started(&format!("filler{i}"), 1, 7))
                .unwrap();
        }
        j.append_worker(&started("a", 2, 200)).unwrap();
        let pid = |n| started_record(&s, "w1", "a", n).unwrap().map(|st| st.pgid);
        assert_eq!(pid(1), Some(100));
        assert_eq!(pid(2), Some(200));
        assert_eq!(pid(3), None);
        assert!(started_record(&s, "w9", "a", 1).unwrap().is_none());
    }

    #[test]
    fn worker_lines_keep_their_json_shape() {
        // docs/PROTOCOL.md and the tests read these lines: `ready` has `pid`, `started`
        // and `exited` carry their records' fields at the top level, `stopped` nothing.
        let v = |ev: &WorkerEvent| -> serde_json::Value {
            serde_json::from_str(&line(ev).unwrap()).unwrap()
        };
        let ready = v(&WorkerEvent::Ready {
            pid: 42,
            protocol: Some(proto::PROTOCOL_VERSION),
        });
        assert_eq!(
            (&ready["event"], &ready["pid"]),
            (&"ready".into(), &42.into())
        );
        let st = v(&WorkerEvent::Started(Started {
            task: "a".into(),
            attempt: 2,
            worker: "w1".into(),
            pid: 9,
            pgid: 9,
            started_at: "x".into(),
            started_unix_ms: 5,
            proc_start: None,
            boot_id: None,
        }));
        assert_eq!(st["event"], "started");
        assert_eq!((&st["task"], &st["attempt"]), (&"a".into(), &2.into()));
        assert_eq!(
            (&st["pgid"], &st["started_unix_ms"]),
            (&9.into(), &5.into())
        );
        let rec = ExitRecord {
            task: "a".into(),
            attempt: 2,
            worker: "w1".into(),
            exit_code: Some(3),
            signal: None,
            started_at: "x".into(),
            ended_at: "y".into(),
            duration_ms: 7,
            timed_out: false,
            killed_by: None,
            ended_on: None,
            spawn_error: None,
            result_error: None,
            has_result: false,
        };
        let ex = v(&WorkerEvent::Exited(rec.clone()));
        assert_eq!(ex["event"], "exited");
        let mut fields = ex.as_object().unwrap().clone();
        fields.remove("ts");
        fields.remove("event");
        assert_eq!(
            serde_json::Value::Object(fields),
            serde_json::to_value(&rec).unwrap(),
            "every field of exit.json, and nothing else"
        );
        let stopped = v(&WorkerEvent::Stopped {});
        assert_eq!(stopped.as_object().unwrap().len(), 2, "{stopped}");
        assert_eq!(stopped["event"], "stopped");
    }

    #[test]
    fn last_worker_event_skips_a_partial_last_line_and_reads_only_the_tail() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("events.jsonl");
        assert!(last_worker_event(&p).unwrap().is_none(), "no file");
        let started = r#"{"ts":"x","event":"started","task":"a","attempt":1,"worker":"w1","pid":5,"pgid":5,"started_at":"x","started_unix_ms":1}"#;
        std::fs::write(
            &p,
            format!("{{\"ts\":\"x\",\"event\":\"ready\",\"pid\":5}}\n{started}\n{{\"ts\":\"x\",\"event\":\"exi"),
        )
        .unwrap();
        assert!(matches!(
            last_worker_event(&p).unwrap(),
            Some(WorkerEvent::Started(st)) if st.task == "a"
        ));
        std::fs::write(&p, b"{\"ts\":\"x\",\"event\":\"rea").unwrap();
        assert!(last_worker_event(&p).unwrap().is_none(), "no complete line");
        // Only the tail is read: a long journal still gives its last line.
        let mut long = String::new();
        for i in 0..5000 {
            long.push_str(&format!(
                "{{\"ts\":\"x\",\"event\":\"ready\",\"pid\":{i}}}\n"
            ));
        }
        std::fs::write(&p, &long).unwrap();
        assert!(matches!(
            last_worker_event(&p).unwrap(),
            Some(WorkerEvent::Ready { pid: 4999, .. })
        ));
    }

    /// A line over the cap is dropped, whether it comes whole or over many reads, and
    /// never held whole while it comes; the lines around it are kept.
    #[test]
    fn tail_skips_a_line_longer_than_its_cap() {
        use std::io::Write;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("events.jsonl");
        let mut f = fsio::open_append(&p).unwrap();
        let mut tail = Tail::new(p.clone());
        tail.cap = 10;
        f.write_all(b"short\n0123456789ABC\nten-bytes!\n").unwrap();
        assert_eq!(
            tail.read_lines().unwrap(),
            [b"short".to_vec(), b"ten-bytes!".to_vec()]
        );
        f.write_all(&[b'x'; 40_000]).unwrap();
        assert!(tail.read_lines().unwrap().is_empty());
        assert!(
            tail.partial.len() <= 10,
            "{} bytes held",
            tail.partial.len()
        );
        f.write_all(&[b'x'; 5]).unwrap();
        assert!(tail.read_lines().unwrap().is_empty());
        f.write_all(b"xx\nok\npart").unwrap();
        assert_eq!(tail.read_lines().unwrap(), [b"ok".to_vec()]);
        f.write_all(b"ial\n").unwrap();
        assert_eq!(tail.read_lines().unwrap(), [b"partial".to_vec()]);
    }

    #[test]
    fn tail_returns_each_complete_line_once() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("events.jsonl");
        let mut tail = Tail::new(p.clone());
        let mut ns = || -> Vec<serde_json::Value> {
            let lines = tail.read_lines().unwrap();
            lines
                .iter()
                .filter_map(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
                .map(|v| v["n"].clone())
                .collect()
        };
        assert!(ns().is_empty(), "no file yet");
        let mut f = fsio::open_append(&p).unwrap();
        use std::io::Write;
        f.write_all(b"{\"n\":1}\n{\"n\":2}\n{\"n\":").unwrap();
        assert_eq!(ns(), vec![1, 2]);
        assert!(ns().is_empty(), "the partial line waits");
        f.write_all(b"3}\nnot json\n{\"n\":4}\n").unwrap();
        assert_eq!(ns(), vec![3, 4]);
        // More than one read's worth at once (the reader reads 16 KiB at a time), and
        // exactly one read's worth.
        let many: String = (5..3005).map(|n| format!("{{\"n\":{n}}}\n")).collect();
        f.write_all(many.as_bytes()).unwrap();
        assert_eq!(ns(), (5..3005).collect::<Vec<_>>());
        let pad = 16 * 1024 - "{\"n\":9,\"p\":\"\"}\n".len();
        let exact = format!("{{\"n\":9,\"p\":\"{}\"}}\n", "x".repeat(pad));
        assert_eq!(exact.len(), 16 * 1024);
        f.write_all(exact.as_bytes()).unwrap();
        assert_eq!(ns(), vec![9]);
        assert!(ns().is_empty());
    }

    // A journal torn by a dead writer got the next writer's first line glued to its
    // partial last one: one malformed line in the middle, and that event lost.
    #[test]
    fn reopening_a_torn_journal_cuts_the_partial_line_so_the_next_stays_whole() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("events.jsonl");
        let whole = "{\"ts\":\"x\",\"event\":\"session_resumed\",\"session\":\"s\",\"retry\":[]}\n";
        std::fs::write(&p, format!("{whole}{{\"ts\":\"x\",\"event\":\"tas")).unwrap();
        let mut j = Journal::open_at(p.clone(), fsio::Fs::FAST).unwrap();
        j.append(&Event::TasksAdded {
            tasks: vec!["a".into()],
        })
        .unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(format!("{}\n", lines[0]), whole);
        assert!(lines[1].contains("\"event\":\"tasks_added\""), "{text}");
        // A journal that is one torn line is emptied.
        std::fs::write(&p, "{\"ts\":").unwrap();
        Journal::open_at(p.clone(), fsio::Fs::FAST).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"");
    }
}
