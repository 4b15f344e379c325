//! A doorbell for a loop that waits on two things at once: file events (rung from the
//! watcher's thread) and a task's process ending (its pidfd). One `poll(2)` covers both, so
//! the worker needs no thread to wait for its child and no channel between the two: that
//! hand-off cost two thread switches per task, a fifth of all switches in a 2000-task
//! dispatch.
//!
//! A ring is only a hint, like every file event (invariant 7): the waiter re-reads the
//! files after any wake-up, and also wakes on its timeout.

use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::error::{Error, Result};

/// An eventfd: rung by anyone holding a reference, waited on by one loop.
pub struct Bell {
    fd: EventFd,
}

impl Bell {
    pub fn new() -> Result<Bell> {
        let fd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map_err(|e| Error::Session(format!("cannot create an eventfd: {e}")))?;
        Ok(Bell { fd })
    }

    /// Wake the waiter (now, or at once when it next waits).
    pub fn ring(&self) {
        // Only fails if the counter would overflow (2^64 - 2 rings unheard): it is rung.
        let _ = self.fd.write(1);
    }

    /// The eventfd itself, for a forked child that rings it without exec'ing (the job
    /// control parent of a task on a pty, `jobctl.rs`): writing an 8-byte 1 rings it.
    pub fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd as _;
        self.fd.as_fd().as_raw_fd()
    }

    /// Wait until the bell rings, `also` becomes readable, or `timeout` passes; the rings
    /// heard are cleared. Returns whether `also` is readable.
    pub fn wait(&self, also: Option<BorrowedFd<'_>>, timeout: Duration) -> Result<bool> {
        // Past ~65 s PollTimeout wants a larger type; nothing here waits that long between
        // rescans, and a shorter wait is always allowed.
        let ms = timeout.as_millis().min(u128::from(u16::MAX)) as u16;
        let mut fds = vec![PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        if let Some(fd) = also {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                return Err(Error::Session(format!(
                    "cannot wait for file events or the task (poll): {e}"
                )));
            }
        }
        let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
        let rung = ready(&fds[0]);
        let also_ready = fds.get(1).is_some_and(ready);
        if rung {
            // Non-blocking: EAGAIN if another read emptied it first, which is fine.
            let _ = self.fd.read();
        }
        Ok(also_ready)
    }
}

/// A pidfd for `pid` (readable once the process has exited), or `None` on a kernel without
/// `pidfd_open` (before 5.3), where the caller polls with a short timeout instead.
pub fn pidfd(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; it touches no
    // memory of ours.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid as nix::libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the fd was just returned to us by the kernel and is owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_ring_before_the_wait_is_heard_and_then_cleared() {
        let b = Bell::new().unwrap();
        b.ring();
        b.ring();
        let t0 = Instant::now();
        assert!(!b.wait(None, Duration::from_secs(5)).unwrap());
        assert!(
            t0.elapsed() < Duration::from_secs(4),
            "the ring was not heard"
        );
        // Both rings were cleared by the one wait: the next one times out.
        let t0 = Instant::now();
        b.wait(None, Duration::from_millis(50)).unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(40));
    }

    #[test]
    fn a_ring_from_another_thread_wakes_the_waiter() {
        let b = std::sync::Arc::new(Bell::new().unwrap());
        let b2 = b.clone();
        let t = std::thread::spawn(move || b2.ring());
        let t0 = Instant::now();
        b.wait(None, Duration::from_secs(5)).unwrap();
        assert!(t0.elapsed() < Duration::from_secs(4));
        t.join().unwrap();
    }

    #[test]
    fn a_pidfd_becomes_readable_when_the_process_exits() {
        let b = Bell::new().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("0.05")
            .spawn()
            .unwrap();
        let fd = pidfd(child.id()).expect("pidfd_open (Linux >= 5.3)");
        let t0 = Instant::now();
        let mut exited = false;
        while !exited && t0.elapsed() < Duration::from_secs(5) {
            exited = b.wait(Some(fd.as_fd()), Duration::from_secs(5)).unwrap();
        }
        assert!(exited, "no readiness within 5 s");
        assert!(child.try_wait().unwrap().is_some(), "readable means exited");
    }
}
