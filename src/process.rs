//! Process identity and signalling from outside a process's parent: a pid alone is
//! never trusted (pids are reused), so an attempt's process is recorded with its start
//! time from `/proc` and the host's boot id, and a group is signalled only when its
//! leader is the process that was recorded, or when the leader is gone (then the pid
//! cannot have been reused while members of its group live on, and the members are the
//! ones to reach).

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

/// Signal group `pgid` if [`group_is_ours`]; returns whether a signal was sent.
pub fn signal_group(pgid: u32, start: Option<u64>, boot: Option<&str>, sig: Signal) -> bool {
    group_is_ours(pgid, start, boot) && killpg(Pid::from_raw(pgid as i32), sig).is_ok()
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
}
