//! Interactive tasks: under a terminal launcher a task runs on a pseudo-terminal its
//! worker owns, so `[ -t 0 ]` holds inside it, what a person types in the worker's window
//! reaches it, window sizes pass through, and every byte it prints is still logged.
//!
//! The task runs in a session of its own whose controlling terminal is the pty, under a
//! small job-control parent (`jobctl.rs`), so `/dev/tty`, Ctrl-C and Ctrl-Z act on it as in
//! a plain terminal. While it is stopped, what is typed in the window is the worker's:
//! Enter continues it. The worker puts its own terminal in raw mode while it relays (the
//! task's terminal does the line editing) and restores it however the relay ends.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use nix::pty::{OpenptyResult, Winsize, openpty};
use nix::sys::termios::{self, SetArg, Termios};

use crate::bell::Bell;
use crate::error::{Error, Result};
use crate::jobctl::{self, Hold, Job, Link};

nix::ioctl_read_bad!(get_winsize, nix::libc::TIOCGWINSZ, Winsize);
nix::ioctl_write_ptr_bad!(set_winsize, nix::libc::TIOCSWINSZ, Winsize);

/// A pseudo-terminal for one attempt: the master side stays with the worker.
pub struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
}

/// The size of the terminal on our stdin, if it is one.
fn our_size() -> Option<Winsize> {
    let mut ws = Winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a winsize into `ws`, which lives for the call.
    unsafe { get_winsize(std::io::stdin().as_raw_fd(), &mut ws) }
        .ok()
        .filter(|_| ws.ws_row > 0 && ws.ws_col > 0)
        .map(|_| ws)
}

impl Pty {
    /// A new pty the size of our own terminal (80x24 without one).
    pub fn open() -> Result<Pty> {
        let size = our_size().unwrap_or(Winsize {
            ws_row: 24,
            ws_col: 80,
            ws_xpixel: 0,
            ws_ypixel: 0,
        });
        let OpenptyResult { master, slave } = openpty(Some(&size), None)
            .map_err(|e| Error::Session(format!("cannot open a pseudo-terminal: {e}")))?;
        // openpty(3) makes inheritable fds: a task would hold the master (so closing our
        // window would not hang it up) and a stray copy of the slave.
        for fd in [&master, &slave] {
            use nix::fcntl::{FcntlArg, FdFlag, fcntl};
            fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
                .map_err(|e| Error::Session(format!("cannot set up a pseudo-terminal: {e}")))?;
        }
        Ok(Pty { master, slave })
    }

    /// Make `cmd` run on the pty's slave side, in a session of its own whose controlling
    /// terminal it is, under a job-control parent (`jobctl::install`; `bell` is rung when
    /// the task stops).
    pub fn attach(&self, cmd: &mut Command, bell: Arc<Bell>) -> Result<Link> {
        let dup = |what: &str| {
            self.slave
                .try_clone()
                .map_err(|e| Error::Session(format!("cannot share the pty ({what}): {e}")))
        };
        cmd.stdin(Stdio::from(dup("stdin")?))
            .stdout(Stdio::from(dup("stdout")?))
            .stderr(Stdio::from(dup("stderr")?));
        jobctl::install(cmd, bell)
    }

    /// Relay between our terminal and the task until its side of the pty closes: what it
    /// prints goes to our stdout and into `log`; what a person types (our stdin, when it
    /// is a terminal, put in raw mode meanwhile) goes to it; our window's size follows.
    /// `done` is told when its output has all been read; `hold` says when what is typed is
    /// the worker's (the task is stopped).
    pub fn relay(
        self,
        mut log: File,
        index: Option<File>,
        hold: Arc<Hold>,
        done: std::sync::mpsc::Sender<()>,
    ) {
        let Pty { master, slave } = self;
        // Our copy of the slave must close, or the master never sees the task's end.
        drop(slave);
        let Ok(reader) = master.try_clone() else {
            let _ = done.send(());
            return;
        };
        let stop = Arc::new(AtomicBool::new(false));
        let input = stdin_relay(master, stop.clone(), hold);
        thread::spawn(move || {
            let mut from = File::from(reader);
            let mut index = index;
            let mut written = 0u64;
            let mut buf = [0u8; 8192];
            let mut lines = LineEnds::default();
            loop {
                match from.read(&mut buf) {
                    // EIO: every slave fd is closed (the task and what it left are gone).
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let text = lines.normalize(&buf[..n]);
                        let _ = log.write_all(&text);
                        if let Some(ix) = index.as_mut() {
                            let _ = writeln!(ix, "{written} {}", crate::proto::now_unix_ms());
                        }
                        written += text.len() as u64;
                        let mut out = std::io::stdout();
                        let _ = out.write_all(&buf[..n]);
                        let _ = out.flush();
                    }
                }
            }
            let _ = log.write_all(&lines.finish());
            stop.store(true, Ordering::SeqCst);
            if let Some(h) = input {
                let _ = h.join();
            }
            let _ = done.send(());
        });
    }
}

/// The log's line ends: the terminal turns each `\n` the task prints into `\r\n` (as a
/// terminal must, for the screen); the log holds `\n`, as a pipe's would. A `\r` at the
/// end of a piece waits for the next one.
#[derive(Default)]
struct LineEnds {
    pending_cr: bool,
}

impl LineEnds {
    fn normalize(&mut self, piece: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(piece.len() + 1);
        for &b in piece {
            if std::mem::take(&mut self.pending_cr) && b != b'\n' {
                out.push(b'\r');
            }
            if b == b'\r' {
                self.pending_cr = true;
            } else {
                out.push(b);
            }
        }
        out
    }

    fn finish(&mut self) -> Vec<u8> {
        if std::mem::take(&mut self.pending_cr) {
            vec![b'\r']
        } else {
            Vec::new()
        }
    }
}

/// Our terminal in raw mode until dropped (restored on every way out of the relay).
struct Raw {
    saved: Termios,
}

impl Raw {
    fn enter() -> Option<Raw> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(Raw { saved })
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// Copy our stdin (a terminal) to the task, in raw mode, and our window size on each
/// SIGWINCH, until `stop`; while the task is stopped, what is typed goes to `hold`
/// instead. None when our stdin is not a terminal.
fn stdin_relay(
    master: OwnedFd,
    stop: Arc<AtomicBool>,
    hold: Arc<Hold>,
) -> Option<thread::JoinHandle<()>> {
    use std::io::IsTerminal as _;
    if !std::io::stdin().is_terminal() {
        return None;
    }
    // One flag for the worker's life: a handler registered per attempt would pile up.
    static RESIZED: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    let resized = RESIZED
        .get_or_init(|| {
            let flag = Arc::new(AtomicBool::new(true));
            let _ = signal_hook::flag::register(signal_hook::consts::SIGWINCH, flag.clone());
            flag
        })
        .clone();
    Some(thread::spawn(move || {
        let _raw = Raw::enter();
        let mut to = File::from(master);
        let stdin = std::io::stdin();
        let mut buf = [0u8; 1024];
        while !stop.load(Ordering::SeqCst) {
            if resized.swap(false, Ordering::SeqCst)
                && let Some(ws) = our_size()
            {
                // SAFETY: TIOCSWINSZ reads the winsize, which lives for the call.
                let _ = unsafe { set_winsize(to.as_raw_fd(), &ws) };
            }
            // Poll so that the end of the task is noticed even when nobody types.
            let mut fds = [nix::poll::PollFd::new(
                stdin.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16)) {
                Ok(n) if n > 0 => {}
                _ => continue,
            }
            match nix::unistd::read(stdin.as_fd(), &mut buf).map_err(std::io::Error::from) {
                Ok(0) | Err(_) => {
                    thread::sleep(Duration::from_millis(50));
                }
                Ok(n) if hold.takes_keys(&buf[..n]) => {}
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
    }))
}

/// Where an attempt's input comes from and its output goes: a pty (an interactive task
/// under a terminal launcher), pipes copied to our terminal and the logs (a worker with a
/// terminal), or the log files themselves (headless: no pipes, no threads).
pub enum TaskIo {
    Pty {
        pty: Pty,
        log: File,
        index: Option<File>,
        hold: Arc<Hold>,
        /// Until the spawn: where the job-control parent reports the task's pid.
        link: Option<Link>,
    },
    Pipes {
        out: File,
        err: File,
        index: Option<File>,
    },
    Files,
}

impl TaskIo {
    /// Set up `cmd`'s stdin, stdout, stderr and process group for assignment `a`.
    /// `terminal`: the worker has one to show output in; `bell` is the worker's, rung
    /// when a task on a pty stops.
    pub fn set_up(
        cmd: &mut Command,
        s: &crate::session::Session,
        a: &crate::proto::Assignment,
        terminal: bool,
        bell: &Arc<Bell>,
    ) -> Result<TaskIo> {
        let (task, attempt) = (a.task.as_str(), a.attempt);
        let out = crate::fsio::open_append(&s.stdout_log(task, attempt))?;
        let index = || crate::fsio::open_append(&s.log_index(task, attempt)).ok();
        if terminal && a.interactive && a.aux.is_none() {
            let pty = Pty::open()?;
            let link = pty.attach(cmd, bell.clone())?;
            return Ok(TaskIo::Pty {
                pty,
                log: out,
                index: index(),
                hold: link.hold(),
                link: Some(link),
            });
        }
        // Its own process group, so we can signal all of it and only it (invariant 5). A
        // group, not a session (setsid would need pre_exec, which forces fork instead of
        // posix_spawn: a millisecond per task); the group is what signals target.
        cmd.process_group(0);
        let input = match &a.stdin {
            Some(path) => Stdio::from(File::open(path).map_err(|e| {
                Error::Session(format!("stdin: cannot open {}: {e}", path.display()))
            })?),
            None => Stdio::null(),
        };
        cmd.stdin(input);
        let err = crate::fsio::open_append(&s.stderr_log(task, attempt))?;
        if terminal {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            Ok(TaskIo::Pipes {
                out,
                err,
                index: index(),
            })
        } else {
            // The files themselves, not duplicates: two fcntl and two close less per task.
            cmd.stdout(out).stderr(err);
            Ok(TaskIo::Files)
        }
    }

    /// Once `parent` (the spawned child) runs: the job on the pty, if this is one and its
    /// job-control parent reported the task.
    pub fn job(&mut self, parent: u32) -> Option<Job> {
        match self {
            TaskIo::Pty { link, .. } => link.take()?.started(parent),
            _ => None,
        }
    }

    /// Start copying the running task's output; how many copies will say `done`.
    pub fn relay(
        self,
        child: &mut std::process::Child,
        done: std::sync::mpsc::Sender<()>,
    ) -> usize {
        match self {
            TaskIo::Pty {
                pty,
                log,
                index,
                hold,
                ..
            } => {
                pty.relay(log, index, hold, done);
                1
            }
            TaskIo::Pipes { out, err, index } => {
                let index = index.map(|f| Arc::new(std::sync::Mutex::new((f, 0u64))));
                let mut n = 0;
                if let Some(o) = child.stdout.take() {
                    tee(o, out, false, index.clone(), done.clone());
                    n += 1;
                }
                if let Some(e) = child.stderr.take() {
                    tee(e, err, true, None, done.clone());
                    n += 1;
                }
                n
            }
            TaskIo::Files => 0,
        }
    }
}

/// Copy a task's output stream into its log file and to our terminal, noting in `index`
/// (stdout's) when each piece arrived.
fn tee(
    mut from: impl Read + Send + 'static,
    mut log: File,
    is_stderr: bool,
    index: Option<Arc<std::sync::Mutex<(File, u64)>>>,
    done: std::sync::mpsc::Sender<()>,
) {
    thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let _ = log.write_all(&buf[..n]);
                    if let Some(ix) = &index
                        && let Ok(mut ix) = ix.lock()
                    {
                        let at = ix.1;
                        let _ = writeln!(ix.0, "{at} {}", crate::proto::now_unix_ms());
                        ix.1 += n as u64;
                    }
                    if is_stderr {
                        let _ = std::io::stderr().write_all(&buf[..n]);
                    } else {
                        let _ = std::io::stdout().write_all(&buf[..n]);
                    }
                }
            }
        }
        let _ = done.send(());
    });
}

#[cfg(test)]
mod tests {
    use super::LineEnds;

    #[test]
    fn the_log_holds_newlines_where_the_terminal_shows_cr_lf() {
        let mut l = LineEnds::default();
        let mut out = l.normalize(b"a\r\nb\r");
        out.extend(l.normalize(b"\nprogress 10%\rprogress 20%\r"));
        out.extend(l.normalize(b"x"));
        out.extend(l.finish());
        assert_eq!(out, b"a\nb\nprogress 10%\rprogress 20%\rx");
        let mut l = LineEnds::default();
        let mut out = l.normalize(b"end\r");
        out.extend(l.finish());
        assert_eq!(out, b"end\r");
    }
}
