//! The process's stderr while a live view owns the terminal: diverted, so that nothing
//! written there lands on the view's screen, and given back, with all it received, when
//! the view closes.
//!
//! Diverting is done at the descriptor: fd 2 becomes the write end of a pipe, read by a
//! thread of its own ([`divert`]). Every way anything in the process writes to stderr
//! (`eprintln!`, `writeln!(stderr())`, the tracing subscriber, a library, a panic's
//! message) and every child that inherits it (a task's `notify` command) goes there
//! without knowing a view is up, so no writer, present or future, can forget to go
//! through a sink. The view shows the newest lines ([`recent`]); [`restore`] puts the
//! terminal back on fd 2 and prints everything that came, in order, before anything
//! written after it. Workers do not inherit stderr (every launcher gives them their
//! `console.log` or a window of their own), so only the orchestrator's process tree
//! matters here.
//!
//! Only a stderr that is a terminal is diverted: a file or a pipe (`2>log`) is not the
//! view's screen, and keeps getting what is written, as it comes.
//!
//! The terminal's bell ([`ring_bell`], for a person being asked for something) is the one
//! write that must reach the terminal while the view is up: it goes to the saved
//! descriptor, and a bell does not disturb the screen.

use std::collections::VecDeque;
use std::io::{IsTerminal as _, Write as _};
use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::error::{Error, Result};

/// At most this many bytes are kept for the replay: diagnostics are a few lines, and a
/// flood (say `MAESTRO_LOG=trace`) must not grow the orchestrator without bound. What is
/// cut is said, with its size, at the end of the replay.
const KEEP: usize = 4 << 20;
/// The newest lines kept for the view (it shows a few of them).
const RECENT: usize = 32;
/// A line longer than this (no newline yet) is shown in pieces: the view must not hold
/// an unbounded line.
const LINE_MAX: usize = 4096;

/// What came on the diverted stderr: every byte in order (up to [`KEEP`]), for the
/// replay, and the newest lines, for the view. Pure: [`push`](Lines::push) takes bytes as
/// they were read, cut anywhere.
#[derive(Debug, Default)]
pub struct Lines {
    kept: Vec<u8>,
    /// Bytes not kept (past [`KEEP`]).
    cut: u64,
    recent: VecDeque<String>,
    /// The line being written (no newline yet).
    partial: Vec<u8>,
    /// Lines ended so far.
    ended: u64,
}

impl Lines {
    pub fn push(&mut self, bytes: &[u8]) {
        let room = KEEP - self.kept.len();
        let keep = bytes.len().min(room);
        self.kept.extend_from_slice(&bytes[..keep]);
        self.cut += (bytes.len() - keep) as u64;
        for piece in bytes.split_inclusive(|&b| b == b'\n') {
            match piece.strip_suffix(b"\n") {
                Some(body) => {
                    self.extend(body);
                    self.end_line();
                }
                None => self.extend(piece),
            }
        }
    }

    /// Add to the line being written, ending it each time it would pass [`LINE_MAX`].
    fn extend(&mut self, mut bytes: &[u8]) {
        loop {
            let room = LINE_MAX - self.partial.len();
            if bytes.len() <= room {
                self.partial.extend_from_slice(bytes);
                return;
            }
            self.partial.extend_from_slice(&bytes[..room]);
            self.end_line();
            bytes = &bytes[room..];
        }
    }

    fn end_line(&mut self) {
        let mut body = std::mem::take(&mut self.partial);
        if body.last() == Some(&b'\r') {
            body.pop();
        }
        self.recent
            .push_back(String::from_utf8_lossy(&body).into_owned());
        if self.recent.len() > RECENT {
            self.recent.pop_front();
        }
        self.ended += 1;
    }

    /// How many lines came (one still being written counts).
    pub fn count(&self) -> u64 {
        self.ended + u64::from(!self.partial.is_empty())
    }

    /// The newest `n` lines, oldest first, with the one still being written, as written
    /// (the view cleans them of control characters).
    pub fn newest(&self, n: usize) -> Vec<String> {
        let partial =
            (n > 0 && !self.partial.is_empty()).then(|| String::from_utf8_lossy(&self.partial));
        let from_recent = n.saturating_sub(usize::from(partial.is_some()));
        let skip = self.recent.len().saturating_sub(from_recent);
        let mut out: Vec<String> = self.recent.iter().skip(skip).cloned().collect();
        out.extend(partial.map(|p| p.into_owned()));
        out
    }

    /// Everything kept, as it came, ended by a newline (a last line without one would run
    /// into the next thing printed), and what was cut, if anything.
    pub fn replay(&self) -> Vec<u8> {
        let mut out = self.kept.clone();
        if out.last().is_some_and(|&b| b != b'\n') {
            out.push(b'\n');
        }
        if self.cut > 0 {
            out.extend_from_slice(
                format!(
                    "maestro: {} more bytes written on stderr while the live view was up were \
                     not kept\n",
                    self.cut
                )
                .as_bytes(),
            );
        }
        out
    }
}

/// A diverted stderr.
struct Diverted {
    /// The one it replaced (the terminal): put back by [`restore`], rung by [`ring_bell`].
    saved: OwnedFd,
    /// The pipe's read end (non-blocking), shared with the thread that reads it.
    read: Arc<OwnedFd>,
    lines: Lines,
    /// Called when lines come (the view's wake-up).
    wake: Option<Box<dyn Fn() + Send>>,
    /// Which diversion this is: a reader left from an earlier one only passes through.
    id: u64,
}

struct State {
    now: Option<Diverted>,
    next_id: u64,
}

static STATE: Mutex<State> = Mutex::new(State {
    now: None,
    next_id: 0,
});

/// The state, even if a thread panicked while holding it (what it holds stays usable:
/// bytes and descriptors).
fn lock() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The state, unless it cannot be had within `limit`: [`restore`] runs in the panic hook,
/// where waiting for ever on a lock the panicking thread may hold would hang the process.
fn lock_within(limit: Duration) -> Option<MutexGuard<'static, State>> {
    let deadline = Instant::now() + limit;
    loop {
        match STATE.try_lock() {
            Ok(g) => return Some(g),
            Err(TryLockError::Poisoned(e)) => return Some(e.into_inner()),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(TryLockError::WouldBlock) => return None,
        }
    }
}

fn sys_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Session(format!("cannot divert stderr: {what}: {e}"))
}

/// Divert stderr, if it is a terminal, until [`restore`]; whether it is diverted now.
/// Diverting twice is once.
pub fn divert() -> Result<bool> {
    let mut st = lock();
    if st.now.is_some() {
        return Ok(true);
    }
    if !std::io::stderr().is_terminal() {
        return Ok(false);
    }
    let saved = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| sys_err("dup", e))?;
    // Close-on-exec: a child gets the write end only as its fd 2, and never the read end
    // (which would keep the pipe open after the view closed).
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| sys_err("pipe", e))?;
    // The read end only: writers block on a full pipe, as on a slow terminal (a
    // non-blocking fd 2 would make `eprintln!` panic on EAGAIN).
    fcntl(&read, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(|e| sys_err("fcntl", e))?;
    let read = Arc::new(read);
    let id = st.next_id;
    st.next_id += 1;
    let reader = read.clone();
    std::thread::Builder::new()
        .name("stderr".into())
        .spawn(move || pump(&reader, id))
        .map_err(|e| sys_err("thread", e))?;
    // If this fails, `write` is dropped below and the reader sees the end of the pipe.
    nix::unistd::dup2_stderr(&write).map_err(|e| sys_err("dup2", e))?;
    drop(write);
    st.now = Some(Diverted {
        saved,
        read,
        lines: Lines::default(),
        wake: None,
        id,
    });
    Ok(true)
}

/// Call `wake` whenever lines come on the diverted stderr (on the reader's thread, the
/// state locked: it must only pass a hint on). Nothing when stderr is not diverted.
pub fn on_lines(wake: impl Fn() + Send + 'static) {
    if let Some(d) = lock().now.as_mut() {
        d.wake = Some(Box::new(wake));
    }
}

/// How many lines came on the diverted stderr and the newest `n`; `None` when it is not
/// diverted.
pub fn recent(n: usize) -> Option<(u64, Vec<String>)> {
    let st = lock();
    let d = st.now.as_ref()?;
    Some((d.lines.count(), d.lines.newest(n)))
}

/// Put the saved stderr back on fd 2 and print there everything the diverted one got, in
/// order; nothing if it is not diverted. Later writes by a child that still holds the
/// pipe are passed straight through.
pub fn restore() {
    let Some(mut st) = lock_within(Duration::from_secs(1)) else {
        return;
    };
    let Some(mut d) = st.now.take() else {
        return;
    };
    // Not to the pipe any more; then what is in it is all that came before this point.
    let _ = nix::unistd::dup2_stderr(&d.saved);
    let mut buf = [0u8; 8192];
    drain(d.read.as_fd(), &mut buf, |b| d.lines.push(b));
    // Still locked: the reader's pass-through of later writes waits for the replay.
    let _ = std::io::stderr().write_all(&d.lines.replay());
}

/// Ring the terminal's bell: on the terminal itself while stderr is diverted, else on
/// stderr if it is a terminal.
pub fn ring_bell() {
    let st = lock();
    if let Some(d) = &st.now {
        let _ = nix::unistd::write(&d.saved, b"\x07");
        return;
    }
    drop(st);
    let mut err = std::io::stderr();
    if err.is_terminal() {
        let _ = err.write_all(b"\x07");
    }
}

/// The reader of diversion `id`'s pipe, until its end (every write end closed: this
/// process's after [`restore`], and any child's).
fn pump(read: &OwnedFd, id: u64) {
    let mut buf = [0u8; 8192];
    loop {
        let mut fds = [PollFd::new(read.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return,
        }
        // Read with the state locked, so that `restore`'s drain and replay never
        // interleave with this thread's reads: the bytes stay in order.
        let mut st = lock();
        let mut through = Vec::new();
        let open = drain(read.as_fd(), &mut buf, |b| match st.now.as_mut() {
            Some(d) if d.id == id => d.lines.push(b),
            // Restored: what a child writes late goes where stderr is now.
            _ => through.extend_from_slice(b),
        });
        if let Some(d) = st.now.as_ref().filter(|d| d.id == id)
            && let Some(wake) = &d.wake
        {
            wake();
        }
        drop(st);
        if !through.is_empty() {
            let _ = std::io::stderr().write_all(&through);
        }
        if !open {
            return;
        }
    }
}

/// Read what the non-blocking `fd` has now, handing it to `got`; whether the pipe is
/// still open (`false` at its end, or on an error).
fn drain(fd: BorrowedFd, buf: &mut [u8], mut got: impl FnMut(&[u8])) -> bool {
    loop {
        match nix::unistd::read(fd, buf) {
            Ok(0) => return false,
            Ok(n) => got(&buf[..n]),
            Err(Errno::EAGAIN) => return true,
            Err(Errno::EINTR) => {}
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_cut_anywhere_come_out_whole_and_in_order() {
        let mut l = Lines::default();
        for piece in [&b"warning: one"[..], b" two\nsecond", b"\r\n", b"\nthi"] {
            l.push(piece);
        }
        assert_eq!(l.count(), 4);
        assert_eq!(l.newest(10), ["warning: one two", "second", "", "thi"]);
        assert_eq!(l.newest(2), ["", "thi"]);
        assert_eq!(l.newest(0), Vec::<String>::new());
        // The replay is the bytes as written, a missing last newline added.
        assert_eq!(l.replay(), b"warning: one two\nsecond\r\n\nthi\n");
        l.push(b"rd\n");
        assert_eq!(l.count(), 4);
        assert_eq!(l.newest(1), ["third"]);
        assert_eq!(l.replay(), b"warning: one two\nsecond\r\n\nthird\n");
    }

    #[test]
    fn nothing_written_replays_nothing() {
        let l = Lines::default();
        assert_eq!(l.count(), 0);
        assert!(l.newest(3).is_empty());
        assert!(l.replay().is_empty());
    }

    #[test]
    fn only_the_newest_lines_are_kept_for_the_view_but_all_for_the_replay() {
        let mut l = Lines::default();
        let mut all = String::new();
        for i in 0..100 {
            let line = format!("line {i}\n");
            l.push(line.as_bytes());
            all.push_str(&line);
        }
        assert_eq!(l.count(), 100);
        assert_eq!(l.recent.len(), RECENT);
        assert_eq!(l.newest(3), ["line 97", "line 98", "line 99"]);
        assert_eq!(l.replay(), all.as_bytes());
    }

    #[test]
    fn a_long_line_is_shown_in_pieces_and_bad_utf8_is_replaced() {
        let mut l = Lines::default();
        l.push(&vec![b'x'; LINE_MAX * 2 + 5]);
        assert_eq!(l.count(), 3);
        let shown = l.newest(3);
        assert_eq!(
            shown.iter().map(String::len).collect::<Vec<_>>(),
            [LINE_MAX, LINE_MAX, 5]
        );
        let mut l = Lines::default();
        l.push(b"bad \xff byte\n");
        assert_eq!(l.newest(1), ["bad \u{fffd} byte"]);
        assert_eq!(l.replay(), b"bad \xff byte\n");
    }

    #[test]
    fn a_flood_is_cut_at_the_cap_and_the_replay_says_how_much() {
        let mut l = Lines::default();
        let chunk = vec![b'y'; 1 << 20];
        for _ in 0..5 {
            l.push(&chunk);
        }
        l.push(b"\nlast\n");
        assert_eq!(l.newest(1), ["last"], "the view still shows the newest");
        let replay = l.replay();
        let note = format!(
            "\nmaestro: {} more bytes written on stderr while the live view was up were not \
             kept\n",
            (1 << 20) + 6
        );
        assert_eq!(replay.len(), KEEP + note.len());
        assert!(replay.ends_with(note.as_bytes()));
    }
}
