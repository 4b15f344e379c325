//! Process identity and signalling from outside a process's parent: a pid alone is
//! never trusted (pids are reused), so an attempt's process is recorded with its start
//! time from `/proc` and the host's boot id, and a group is signalled only when its
//! leader is the process that was recorded (held by a pidfd while it is checked and
//! signalled), or when the leader is gone (then the pid cannot have been reused while
//! members of its group live on, and the members are the ones to reach).

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Start time of process `pid` in clock ticks since boot (`/proc/PID/stat` field 22).
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: fields are
    // counted from after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// This host's boot id (changes at every boot).
pub fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
}

/// Whether group `pgid` may be signalled as the group of the process recorded with
/// `start` on boot `boot`: the same boot, and the leader is either gone or the same
/// process (same start time).
pub fn group_is_ours(pgid: u32, start: Option<u64>, boot: Option<&str>) -> bool {
    if pgid <= 1 {
        return false;
    }
    if let (Some(b), Some(now)) = (boot, boot_id())
        && b != now
    {
        return false;
    }
    match (start, start_time(pgid)) {
        (_, None) => true,
        (Some(s), Some(now)) => s == now,
        (None, Some(_)) => true,
    }
}

/// Signal group `pgid` if [`group_is_ours`]; returns whether a signal was sent. Where the
/// leader lives, it is held by a pidfd from before the identity check to its signal, so
/// the process checked is the process signalled even if it exits and its pid is reused in
/// between; the rest of the group is reached through the group id, which the kernel does
/// not give out again while any member is alive.
pub fn signal_group(pgid: u32, start: Option<u64>, boot: Option<&str>, sig: Signal) -> bool {
    let leader = crate::bell::pidfd(pgid);
    if !group_is_ours(pgid, start, boot) {
        return false;
    }
    if let Some(fd) = &leader {
        use std::os::fd::AsRawFd;
        // SAFETY: pidfd_send_signal takes a pidfd we own, a signal number and no info
        // pointer; it touches no memory of ours.
        unsafe {
            nix::libc::syscall(
                nix::libc::SYS_pidfd_send_signal,
                fd.as_raw_fd(),
                sig as i32,
                std::ptr::null::<nix::libc::siginfo_t>(),
                0,
            );
        }
    }
    killpg(Pid::from_raw(pgid as i32), sig).is_ok() || leader.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_start_time_is_read_and_a_reused_pid_is_refused() {
        let me = std::process::id();
        let st = start_time(me).expect("our own /proc/self/stat");
        assert!(group_is_ours(me, Some(st), boot_id().as_deref()));
        assert!(!group_is_ours(me, Some(st + 1), None), "another start time");
        assert!(!group_is_ours(me, Some(st), Some("another-boot")));
        assert!(!group_is_ours(1, None, None), "never init's group");
    }

    #[test]
    fn a_group_is_signalled_only_when_its_leader_is_the_recorded_process() {
        use std::os::unix::process::CommandExt;
        struct Reap(std::process::Child);
        impl Drop for Reap {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let mut guard = Reap(
            std::process::Command::new("sleep")
                .arg("30")
                .process_group(0)
                .spawn()
                .unwrap(),
        );
        let child = &mut guard.0;
        let pid = child.id();
        let st = start_time(pid).unwrap();
        assert!(
            !signal_group(pid, Some(st + 1), None, Signal::SIGKILL),
            "another start time: left alone"
        );
        assert!(child.try_wait().unwrap().is_none(), "still running");
        assert!(signal_group(
            pid,
            Some(st),
            boot_id().as_deref(),
            Signal::SIGKILL
        ));
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9));
    }
}
