//! What a running attempt uses: the CPU time and memory of every process in its process
//! group (and in its cgroup, when it has one: src/cgroup.rs), read from `/proc`, written
//! by its worker as `workers/<id>/usage.json` every few seconds, and checked against the
//! task's `memory`.
//!
//! Memory is the cgroup's `memory.current` where the attempt has a cgroup with the memory
//! controller; else the members' PSS (`/proc/PID/smaps_rollup`: each shared page counted
//! once, split among its users), so a forking task is not charged twice for what its
//! children share; where smaps_rollup cannot be read, RSS. `mode` says which, for
//! `status`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// `workers/<id>/usage.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub task: String,
    pub attempt: u32,
    /// Processes in the attempt's group at the sample.
    pub processes: usize,
    /// CPU use since the previous sample, in % of one core.
    pub cpu_percent: f64,
    /// Memory of the attempt: its cgroup's `memory.current`, else PSS where it can be
    /// read, else RSS.
    pub memory_bytes: u64,
    /// How `memory_bytes` was measured.
    pub mode: MemoryMode,
    /// The attempt's cgroup directory, when it runs in one (stopped with `cgroup.kill`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    pub sampled_at: String,
}

/// How a group's memory was measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryMode {
    /// The attempt's cgroup's `memory.current` (everything charged to it, page cache
    /// included), with `memory.max` enforcing the task's `memory`.
    Cgroup,
    /// Proportional set size of every member (smaps_rollup).
    #[default]
    Pss,
    /// Resident set size of at least one member whose PSS could not be read.
    Rss,
}

impl MemoryMode {
    pub fn as_str(self) -> &'static str {
        match self {
            MemoryMode::Cgroup => "cgroup",
            MemoryMode::Pss => "pss",
            MemoryMode::Rss => "rss",
        }
    }
}

/// One look at an attempt's processes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    pub processes: usize,
    /// utime + stime of every member, in clock ticks.
    pub cpu_ticks: u64,
    pub memory_bytes: u64,
    /// How `memory_bytes` was measured.
    pub mode: MemoryMode,
}

/// Sum the members of process group `pgid` and of cgroup `cgroup` (a process that left
/// the group, with `setsid`, is still the attempt's). Memory is the cgroup's
/// `memory.current` when it has one, else the members' PSS (RSS for those whose PSS
/// cannot be read).
pub fn sample(pgid: u32, cgroup: Option<&Path>) -> Sample {
    let current = cgroup.and_then(crate::cgroup::memory_current);
    let mut s = Sample {
        mode: if current.is_some() {
            MemoryMode::Cgroup
        } else {
            MemoryMode::Pss
        },
        memory_bytes: current.unwrap_or(0),
        ..Sample::default()
    };
    let in_cgroup: HashSet<u32> = cgroup
        .map(crate::cgroup::procs)
        .unwrap_or_default()
        .into_iter()
        .collect();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return s;
    };
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(f) = stat_fields(&stat) else {
            continue;
        };
        if f.pgrp != pgid && !in_cgroup.contains(&pid) {
            continue;
        }
        s.processes += 1;
        s.cpu_ticks = s.cpu_ticks.saturating_add(f.ticks);
        if s.mode == MemoryMode::Cgroup {
            continue;
        }
        match pss_of(pid) {
            Some(b) => s.memory_bytes = s.memory_bytes.saturating_add(b),
            None => {
                s.mode = MemoryMode::Rss;
                s.memory_bytes = s.memory_bytes.saturating_add(f.rss_pages * page_size());
            }
        }
    }
    s
}

/// The fields of `/proc/PID/stat` we need. The command name (field 2) may hold spaces
/// and parentheses: fields are counted from the last `)`.
struct StatFields {
    pgrp: u32,
    ticks: u64,
    rss_pages: u64,
    /// When it started, in clock ticks since boot (with the pid, its identity).
    start: u64,
}

fn stat_fields(stat: &str) -> Option<StatFields> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid(1) pgrp(2) ... utime(11) stime(12) ... starttime(19)
    // ... rss(21).
    Some(StatFields {
        pgrp: f.get(2)?.parse().ok()?,
        ticks: f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?,
        start: f.get(19)?.parse().ok()?,
        rss_pages: f.get(21)?.parse().ok()?,
    })
}

/// One look at a single process (a task's main process, for the dashboard): its CPU
/// time so far, its resident memory and its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessSample {
    /// utime + stime, in clock ticks ([`ticks_per_second`]).
    pub cpu_ticks: u64,
    /// Resident memory (`/proc/PID/statm`'s second field, in bytes).
    pub rss_bytes: u64,
    /// Start time in clock ticks since boot: a different one means the pid was reused.
    pub start: u64,
}

/// Process `pid` from `/proc/PID/stat` and `/proc/PID/statm`; `None` when it is gone
/// (or there is no `/proc`).
pub fn process_sample(pid: u32) -> Option<ProcessSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f = stat_fields(&stat)?;
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let resident: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(ProcessSample {
        cpu_ticks: f.ticks,
        rss_bytes: resident.saturating_mul(page_size()),
        start: f.start,
    })
}

fn pss_of(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Pss:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |p| p as u64)
}

/// The kernel's clock ticks per second (`CLK_TCK`), the unit of CPU times in `/proc`.
pub fn ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100, |t| t as u64)
}

/// Samples an attempt's group every [`Sampler::EVERY`], turning CPU ticks into a rate.
pub struct Sampler {
    pgid: u32,
    /// The attempt's cgroup, when it has one.
    cgroup: Option<PathBuf>,
    last: Option<(Instant, u64)>,
    next: Instant,
}

impl Sampler {
    /// How often an attempt is looked at.
    pub const EVERY: Duration = Duration::from_secs(2);

    pub fn new(pgid: u32, cgroup: Option<PathBuf>, now: Instant) -> Sampler {
        Sampler {
            pgid,
            cgroup,
            last: None,
            // The first look soon after the start: a task that blows its memory at once
            // is stopped at once.
            next: now + Duration::from_millis(200),
        }
    }

    /// When the next sample is due.
    pub fn next(&self) -> Instant {
        self.next
    }

    /// Sample if due: the sample and the CPU % since the previous one.
    pub fn tick(&mut self, now: Instant) -> Option<(Sample, f64)> {
        if now < self.next {
            return None;
        }
        self.next = now + Self::EVERY;
        let s = sample(self.pgid, self.cgroup.as_deref());
        let cpu = match self.last {
            Some((at, ticks)) => {
                let secs = now.saturating_duration_since(at).as_secs_f64();
                let used = s.cpu_ticks.saturating_sub(ticks) as f64 / ticks_per_second() as f64;
                if secs > 0.0 { 100.0 * used / secs } else { 0.0 }
            }
            None => 0.0,
        };
        self.last = Some((now, s.cpu_ticks));
        Some((s, cpu))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let stat = "42 (a (weird) name) S 1 42 42 0 -1 4194304 100 0 0 0 7 3 0 0 20 0 1 0 \
                    100 1000000 250 18446744073709551615";
        let f = stat_fields(stat).unwrap();
        assert_eq!((f.pgrp, f.ticks, f.rss_pages, f.start), (42, 10, 250, 100));
        assert!(stat_fields("garbage").is_none());
    }

    #[test]
    fn a_single_process_is_sampled_with_its_identity() {
        let me = process_sample(std::process::id()).unwrap();
        assert!(me.rss_bytes > 0, "{me:?}");
        assert_eq!(
            Some(me.start),
            crate::process::start_time(std::process::id())
        );
        assert!(process_sample(u32::MAX).is_none());
    }

    #[test]
    fn our_own_group_is_sampled() {
        let pgid = nix::unistd::getpgrp().as_raw() as u32;
        let s = sample(pgid, None);
        assert!(s.processes >= 1, "{s:?}");
        assert!(s.memory_bytes > 0, "{s:?}");
        assert_ne!(s.mode, MemoryMode::Cgroup);
    }

    /// A fake cgroup (a directory with the files the kernel would show): its
    /// `memory.current` is the memory, and its members count whatever their group.
    #[test]
    fn a_cgroup_gives_memory_current_and_its_members() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("memory.current"), "12345678\n").unwrap();
        std::fs::write(
            dir.path().join("cgroup.procs"),
            format!("{}\n", std::process::id()),
        )
        .unwrap();
        // No process is in group u32::MAX (kernel threads are in 0): only the cgroup's
        // member (us) is counted.
        let s = sample(u32::MAX, Some(dir.path()));
        assert_eq!(
            (s.processes, s.memory_bytes, s.mode),
            (1, 12345678, MemoryMode::Cgroup)
        );
        // Without memory.current (no memory controller), PSS of the members.
        std::fs::remove_file(dir.path().join("memory.current")).unwrap();
        let s = sample(u32::MAX, Some(dir.path()));
        assert_eq!(s.processes, 1);
        assert_ne!(s.mode, MemoryMode::Cgroup);
        assert!(s.memory_bytes > 0 && s.memory_bytes != 12345678, "{s:?}");
    }
}
