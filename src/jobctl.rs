//! Job control for a task on a pseudo-terminal: Ctrl-Z stops it, as in a plain terminal,
//! and the worker notices and says so.
//!
//! The kernel discards the terminal's stop signals (SIGTSTP, SIGTTIN, SIGTTOU) for an
//! *orphaned* process group: one no member of which has a parent in the same session but
//! another group. A task that led its own session would be just that. So the worker's
//! child is a small job-control parent, P, in the manner of a shell: P makes the session
//! (setsid) and takes the pty as its controlling terminal (TIOCSCTTY), then forks the task,
//! T, into a process group of its own, which it makes the terminal's foreground group. T's
//! parent is in T's session and not in T's group, so T's group is not orphaned and Ctrl-Z
//! stops it. P then only waits for T:
//!
//! - T stopped: P rings the worker's bell and stops itself (SIGSTOP). The worker sees its
//!   child stopped (`waitid`), pauses the timeout and says so in its window; Enter there,
//!   or a SIGCONT to T or P from anywhere, lets P go on, and P continues T's group in the
//!   foreground.
//! - T exited with code N: P exits with N. T killed by a signal: P dies of the same
//!   signal (reset to its default action, no core dump of its own), so the worker records
//!   exactly what a task without P would have.
//! - P reports T's pid on a pipe made before the fork; the worker records T (its pid, its
//!   group) as the attempt's process, so recovery and every stop reach the task itself,
//!   and a `kill -CONT` to the pid a person is shown continues it. P ignores the signals
//!   that end a process politely (SIGTERM, SIGINT, SIGHUP, SIGQUIT), so a stop keeps its
//!   grace: P ends when T ends.
//!
//! The worker is multi-threaded: between the fork and the exec only async-signal-safe
//! calls run (raw system calls through libc; no allocation, no lock). Everything the exec
//! needs is prepared by `std::process::Command` before it forks; the closure installed
//! here runs in its child, forks T (which returns into `Command`'s exec) and never returns
//! in P.

use std::io::Read;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use nix::libc;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::bell::Bell;
use crate::error::{Error, Result};

/// What the worker's loop and its terminal relay share about the job: whether the task is
/// stopped (then what is typed is for the worker: Enter continues the task), and whether
/// someone asked for that.
pub struct Hold {
    stopped: AtomicBool,
    go_on: AtomicBool,
    /// T's pid once P reported it (0 before).
    task: AtomicU32,
    bell: Arc<Bell>,
}

impl Hold {
    /// The relay's question for what was just typed: true when the task is stopped and
    /// the keys are for the worker (Enter asks for the task to go on; the rest is dropped,
    /// as a stopped task cannot read it).
    pub fn takes_keys(&self, keys: &[u8]) -> bool {
        if !self.stopped.load(Ordering::SeqCst) {
            return false;
        }
        let task = self.task.load(Ordering::SeqCst);
        if task == 0 || !process_stopped(task) {
            // Continued from outside (`kill -CONT`) before the worker looked again: the
            // keys are the task's, and the worker should look now.
            self.bell.ring();
            return false;
        }
        if keys.iter().any(|&b| b == b'\r' || b == b'\n') {
            self.go_on.store(true, Ordering::SeqCst);
            self.bell.ring();
        }
        true
    }
}

/// The pipe P reports T's pid on, and the state shared with the relay, from before the
/// spawn until [`Link::started`].
pub struct Link {
    read: std::io::PipeReader,
    write: Option<std::io::PipeWriter>,
    hold: Arc<Hold>,
}

/// Make `cmd` (its stdin, stdout and stderr already the pty's slave side) run under a
/// job-control parent (see the module doc). `bell` is rung when the task stops.
pub fn install(cmd: &mut Command, bell: Arc<Bell>) -> Result<Link> {
    let (read, write) = std::io::pipe()
        .map_err(|e| Error::Session(format!("cannot make a pipe for the task's pid: {e}")))?;
    let report = write.as_raw_fd();
    let ring = bell.as_raw_fd();
    // SAFETY: the closure runs in the forked child and makes only async-signal-safe calls
    // (see `job_session`); the fds it names stay open in the parent until the spawn
    // returned (`Link` owns them).
    unsafe {
        cmd.pre_exec(move || job_session(report, ring));
    }
    Ok(Link {
        read,
        write: Some(write),
        hold: Arc::new(Hold {
            stopped: AtomicBool::new(false),
            go_on: AtomicBool::new(false),
            task: AtomicU32::new(0),
            bell,
        }),
    })
}

impl Link {
    /// What the terminal relay needs.
    pub fn hold(&self) -> Arc<Hold> {
        self.hold.clone()
    }

    /// After the spawn of `parent` (P): the job, with T's pid as P reported it. None when
    /// P ended without reporting one (it then ends as T did, and is reaped as usual).
    pub fn started(mut self, parent: u32) -> Option<Job> {
        // Our copy of the write end goes first, so a P that died unheard reads as EOF. P
        // writes before it closes the spawn's own pipe, which the spawn waited for: the
        // pid is there now.
        drop(self.write.take());
        let mut b = [0u8; 4];
        self.read.read_exact(&mut b).ok()?;
        let task = u32::try_from(i32::from_ne_bytes(b))
            .ok()
            .filter(|&t| t > 1)?;
        self.hold.task.store(task, Ordering::SeqCst);
        Some(Job {
            parent,
            task,
            hold: self.hold,
        })
    }
}

/// A running task on a pty: P, the worker's child, and T, the task, which leads its own
/// process group.
pub struct Job {
    pub parent: u32,
    pub task: u32,
    hold: Arc<Hold>,
}

/// Where a look at the job finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Running,
    /// T and P are stopped: the task waits for a person (or a SIGCONT).
    Stopped,
    /// T stopped and P has not yet followed: look again in a moment.
    Stopping,
    /// P is stopped but T is not (continued, or gone): P was told to go on.
    Resuming,
}

impl Job {
    /// Look at P and T; tell P to go on when T went on without it, or when Enter was
    /// pressed while both were stopped.
    pub fn look(&self) -> JobState {
        let parent = stopped(self.parent);
        let task = process_stopped(self.task);
        let state = match (parent, task) {
            (false, false) => JobState::Running,
            (false, true) => JobState::Stopping,
            (true, false) => JobState::Resuming,
            (true, true) if self.hold.go_on.swap(false, Ordering::SeqCst) => JobState::Resuming,
            (true, true) => JobState::Stopped,
        };
        if state == JobState::Resuming {
            self.go_on();
        }
        state
    }

    /// Say whether the relay should take what is typed (the task is stopped).
    pub fn hold_keys(&self, on: bool) {
        self.hold.stopped.store(on, Ordering::SeqCst);
        if !on {
            self.hold.go_on.store(false, Ordering::SeqCst);
        }
    }

    /// Let P go on; it continues T's group in the foreground.
    fn go_on(&self) {
        // P is our child and not reaped yet (it is stopped, or was a moment ago): its
        // pid is still its own.
        let _ = kill(Pid::from_raw(self.parent as i32), Signal::SIGCONT);
    }

    /// What reaches P of a signal sent to T's group: SIGKILL (ends it at once), SIGCONT
    /// (a P stopped after T must go on with it). P ignores the polite ones and follows
    /// T's stops by itself.
    pub fn signal_parent(&self, sig: Signal) {
        if matches!(sig, Signal::SIGKILL | Signal::SIGCONT) {
            let _ = kill(Pid::from_raw(self.parent as i32), sig);
        }
    }

    /// Signal T's group.
    pub fn signal_task(&self, sig: Signal) {
        let _ = killpg(Pid::from_raw(self.task as i32), sig);
    }
}

/// Whether process `pid` (our child) is stopped now, without reaping it or consuming the
/// report.
pub fn stopped(pid: u32) -> bool {
    use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
    let flags = WaitPidFlag::WSTOPPED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    matches!(
        waitid(Id::Pid(Pid::from_raw(pid as i32)), flags),
        Ok(WaitStatus::Stopped(..))
    )
}

/// Whether process `pid` (anyone's) is stopped now, from `/proc/PID/stat`: false when it
/// is gone.
pub fn process_stopped(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
        .is_some_and(|s| s == 'T' || s == 't')
}

/// `errno`, read without allocating.
fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// In the spawn's child, before its exec: make the session and the job. Returns (Ok) only
/// in T, which `Command` then execs; P never returns. An error before the fork fails the
/// spawn with its errno, as a failed exec does.
///
/// SAFETY (for the caller): call only between fork and exec, with fd 0 on the pty's slave
/// side; `report` is the pipe P writes T's pid on and `ring` the worker's eventfd.
unsafe fn job_session(report: RawFd, ring: RawFd) -> std::io::Result<()> {
    // SAFETY: every call below is a plain system call on integers and pointers to locals.
    unsafe {
        if libc::setsid() < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::ioctl(0, libc::TIOCSCTTY as _, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // Ignored before the fork so that T, in the background for a moment, can take the
        // terminal without being stopped for it; T sets it back before its exec.
        libc::signal(libc::SIGTTOU, libc::SIG_IGN);
        let task = libc::fork();
        if task < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if task == 0 {
            // T: its own group, in the foreground. Both sides do both (whichever runs
            // first), as shells do.
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::tcsetpgrp(0, libc::getpid());
            libc::signal(libc::SIGTTOU, libc::SIG_DFL);
            return Ok(());
        }
        libc::setpgid(task, task);
        libc::tcsetpgrp(0, task);
        parent(task, report, ring)
    }
}

/// P, from the fork of T to its end: report T's pid, keep only the terminal (and the bell),
/// then wait for T and pass on its stops, its exit code or its signal.
unsafe fn parent(task: libc::pid_t, report: RawFd, ring: RawFd) -> ! {
    // SAFETY: plain system calls on integers and pointers to locals.
    unsafe {
        let pid = task.to_ne_bytes();
        while libc::write(report, pid.as_ptr().cast(), pid.len()) < 0 && errno() == libc::EINTR {}
        // Every fd but the terminal's and the bell's: among them the spawn's own pipe,
        // which `Command` waits on to see the exec done (T closes its copy by exec'ing),
        // and the worker's lock on `alive`, which must not outlive the worker in us.
        close_all_but(ring);
        for sig in [
            libc::SIGHUP,
            libc::SIGINT,
            libc::SIGQUIT,
            libc::SIGTERM,
            libc::SIGTSTP,
            libc::SIGTTIN,
        ] {
            libc::signal(sig, libc::SIG_IGN);
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        loop {
            let mut status = 0;
            if libc::waitpid(task, &mut status, libc::WUNTRACED) < 0 {
                if errno() == libc::EINTR {
                    continue;
                }
                // T is not our child any more: nothing can happen, but never spin.
                libc::_exit(126);
            }
            if libc::WIFSTOPPED(status) {
                let one: u64 = 1;
                libc::write(ring, (&raw const one).cast(), 8);
                libc::kill(libc::getpid(), libc::SIGSTOP);
                // Going on (Enter in the worker's window, or a SIGCONT): so does the task,
                // in the foreground.
                libc::tcsetpgrp(0, task);
                libc::kill(-task, libc::SIGCONT);
            } else if libc::WIFEXITED(status) {
                libc::_exit(libc::WEXITSTATUS(status));
            } else if libc::WIFSIGNALED(status) {
                die_of(libc::WTERMSIG(status));
            }
        }
    }
}

/// End P by signal `sig`, as T ended: its default action, unblocked, and no core dump of
/// P's own.
unsafe fn die_of(sig: libc::c_int) -> ! {
    // SAFETY: plain system calls on integers and pointers to locals.
    unsafe {
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        libc::signal(sig, libc::SIG_DFL);
        let mut only: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut only);
        libc::sigaddset(&mut only, sig);
        libc::sigprocmask(libc::SIG_UNBLOCK, &only, std::ptr::null_mut());
        libc::kill(libc::getpid(), sig);
        libc::_exit(128 + sig)
    }
}

/// Close every fd from 3 up but `keep`.
unsafe fn close_all_but(keep: RawFd) {
    let close_range = |first: u32, last: u32| -> bool {
        // SAFETY: close_range takes integers; fds past the table are ignored.
        first > last || unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) } == 0
    };
    let keep = u32::try_from(keep).unwrap_or(u32::MAX);
    let done = if keep >= 3 {
        close_range(3, keep - 1) && close_range(keep.saturating_add(1), u32::MAX)
    } else {
        close_range(3, u32::MAX)
    };
    if done {
        return;
    }
    // Before Linux 5.9: one close per possible fd.
    // SAFETY: getrlimit writes into a local; close takes an integer.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur.min(65_536) as i32
        } else {
            1024
        };
        for fd in 3..max {
            if fd as u32 != keep {
                libc::close(fd);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::os::unix::process::ExitStatusExt as _;
    use std::process::{Child, Stdio};
    use std::time::{Duration, Instant};

    /// A command on a fresh pty under a job-control parent, spawned: the master side
    /// (what a person types into), P and the job.
    struct Spawned {
        master: std::fs::File,
        child: Child,
        job: Job,
        hold: Arc<Hold>,
        bell: Arc<Bell>,
    }

    impl Drop for Spawned {
        fn drop(&mut self) {
            // A test that failed midway leaves nothing running.
            if self.child.try_wait().ok().flatten().is_none() {
                self.job.signal_task(Signal::SIGKILL);
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }

    fn spawn(script: &str) -> Spawned {
        let pty = nix::pty::openpty(None, None).unwrap();
        // As the worker's pty (`Pty::open`): the task must not hold the master, or
        // nothing hangs it up when we die.
        for fd in [&pty.master, &pty.slave] {
            use nix::fcntl::{FcntlArg, FdFlag, fcntl};
            fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).unwrap();
        }
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script);
        for (i, fd) in [&pty.slave, &pty.slave, &pty.slave].into_iter().enumerate() {
            let s = Stdio::from(fd.try_clone().unwrap());
            match i {
                0 => cmd.stdin(s),
                1 => cmd.stdout(s),
                _ => cmd.stderr(s),
            };
        }
        let bell = Arc::new(Bell::new().unwrap());
        let link = install(&mut cmd, bell.clone()).unwrap();
        let hold = link.hold();
        let child = cmd.spawn().unwrap();
        let job = link.started(child.id()).expect("P reports T's pid");
        Spawned {
            master: std::fs::File::from(pty.master),
            child,
            job,
            hold,
            bell,
        }
    }

    /// `/proc/PID/stat` fields after the command name: state, ppid, pgrp, session,
    /// tty_nr, tpgid (the terminal's foreground group).
    fn stat(pid: u32) -> Vec<String> {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let rest = &s[s.rfind(')').unwrap() + 1..];
        rest.split_whitespace()
            .take(6)
            .map(str::to_string)
            .collect()
    }

    fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn the_task_leads_a_foreground_group_under_its_parent_and_its_exit_code_passes_on() {
        let mut s = spawn("read line; exit 5");
        let (p, t) = (s.job.parent, s.job.task);
        assert_ne!(p, t);
        let ps = stat(p);
        let ts = stat(t);
        assert_eq!(ts[1], p.to_string(), "T's parent is P");
        assert_eq!(
            (ps[2].as_str(), ps[3].as_str()),
            (&*p.to_string(), &*p.to_string())
        );
        assert_eq!(ts[2], t.to_string(), "T leads its own group");
        assert_eq!(ts[3], p.to_string(), "in P's session");
        wait_for("T in the foreground", || stat(t)[5] == t.to_string());
        // P kept the terminal and the bell, nothing else (the spawn's pipe, our fds).
        let mut fds: Vec<i32> = std::fs::read_dir(format!("/proc/{p}/fd"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().parse().unwrap())
            .collect();
        fds.sort();
        assert_eq!(fds, [0, 1, 2, s.bell.as_raw_fd()]);
        s.master.write_all(b"go\n").unwrap();
        let st = s.child.wait().unwrap();
        assert_eq!(st.code(), Some(5));
        assert!(!std::path::Path::new(&format!("/proc/{t}")).exists());
    }

    #[test]
    fn a_task_killed_by_a_signal_kills_its_parent_with_the_same_signal() {
        let mut s = spawn("kill -USR1 $$");
        let st = s.child.wait().unwrap();
        assert_eq!(st.signal(), Some(libc::SIGUSR1));
    }

    /// Read the master side until `text` was printed.
    fn read_until(master: &mut std::fs::File, text: &str) {
        use std::io::Read as _;
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(&seen).contains(text) {
            let n = master.read(&mut buf).unwrap();
            assert!(n > 0, "the task ended before printing {text:?}");
            seen.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn a_polite_stop_is_the_tasks_to_answer_not_its_parents() {
        let mut s = spawn("trap 'exit 7' TERM; echo ready; while :; do sleep 0.05; done");
        read_until(&mut s.master, "ready");
        // What the worker does to stop an attempt: TERM to the task's group and to P.
        s.job.signal_task(Signal::SIGTERM);
        kill(Pid::from_raw(s.job.parent as i32), Signal::SIGTERM).unwrap();
        assert_eq!(
            s.child.wait().unwrap().code(),
            Some(7),
            "P waited for T's answer"
        );
    }

    #[test]
    fn ctrl_z_stops_the_task_and_its_parent_and_enter_or_a_sigcont_continues_them() {
        let mut s = spawn("read line; echo got-$line; read line; exit 3");
        let (p, t) = (s.job.parent, s.job.task);
        wait_for("T in the foreground", || stat(t)[5] == t.to_string());
        // Ctrl-Z, as the terminal's line discipline takes it.
        s.master.write_all(b"\x1a").unwrap();
        s.bell.wait(None, Duration::from_secs(10)).unwrap();
        wait_for("the job stopped", || s.job.look() == JobState::Stopped);
        assert!(stopped(p) && process_stopped(t));
        // Keys are the task's until the worker holds them; then Enter asks to go on.
        assert!(!s.hold.takes_keys(b"\r"));
        s.job.hold_keys(true);
        assert!(s.hold.takes_keys(b"abc"), "dropped while stopped");
        assert_eq!(s.job.look(), JobState::Stopped);
        assert!(s.hold.takes_keys(b"\r"));
        assert_eq!(s.job.look(), JobState::Resuming);
        wait_for("the job running", || s.job.look() == JobState::Running);
        s.job.hold_keys(false);
        s.master.write_all(b"one\n").unwrap();
        // Read before the next Ctrl-Z, which flushes what the task has not read yet.
        read_until(&mut s.master, "got-one");
        // Stopped again, and continued from outside with a SIGCONT to the task alone.
        s.master.write_all(b"\x1a").unwrap();
        wait_for("the job stopped", || s.job.look() == JobState::Stopped);
        kill(Pid::from_raw(t as i32), Signal::SIGCONT).unwrap();
        wait_for("the parent to follow", || s.job.look() == JobState::Running);
        s.master.write_all(b"two\n").unwrap();
        assert_eq!(s.child.wait().unwrap().code(), Some(3));
    }

    #[test]
    fn killing_the_tasks_group_ends_its_parent_even_while_both_are_stopped() {
        let mut s = spawn("read line");
        let t = s.job.task;
        wait_for("T in the foreground", || stat(t)[5] == t.to_string());
        s.master.write_all(b"\x1a").unwrap();
        wait_for("the job stopped", || s.job.look() == JobState::Stopped);
        s.job.signal_task(Signal::SIGKILL);
        wait_for("the parent told to go on", || {
            s.job.look() == JobState::Resuming || s.child.try_wait().unwrap().is_some()
        });
        let st = s.child.wait().unwrap();
        assert_eq!(st.signal(), Some(libc::SIGKILL));
    }

    #[test]
    fn a_program_that_cannot_run_fails_the_spawn_as_without_a_parent() {
        let pty = nix::pty::openpty(None, None).unwrap();
        let mut cmd = Command::new("/nonexistent/program");
        cmd.stdin(Stdio::from(pty.slave.try_clone().unwrap()))
            .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
            .stderr(Stdio::from(pty.slave));
        let _link = install(&mut cmd, Arc::new(Bell::new().unwrap())).unwrap();
        let e = cmd.spawn().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }
}
