//! CPU % and resident memory of the running tasks' processes, sampled on the view's timer
//! (never on every redraw): each task's main process, from `/proc/PID/stat` and
//! `/proc/PID/statm` ([`crate::usage::process_sample`]). A pid whose start time is not
//! the one its worker journalled was reused: it shows nothing. Off Linux nothing is
//! sampled and the columns show `-`.

use std::collections::HashMap;
use std::time::Instant;

/// What a process used at the last sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Use {
    /// CPU since the previous sample, in % of one core (none at the first sample).
    pub cpu: Option<f64>,
    pub rss_bytes: u64,
}

/// The last sample of each process looked at.
#[derive(Debug, Default)]
pub struct Sampler {
    last: HashMap<u32, (Instant, u64, Use)>,
}

impl Sampler {
    /// Sample `procs` (pid, and the start time its worker recorded, if known) at `now`;
    /// processes not in the list are forgotten.
    pub fn sample(&mut self, procs: &[(u32, Option<u64>)], now: Instant) {
        let mut next = HashMap::with_capacity(procs.len());
        for &(pid, start) in procs {
            let Some(s) = crate::usage::process_sample(pid) else {
                continue;
            };
            if start.is_some_and(|st| st != s.start) {
                continue;
            }
            let cpu = self.last.get(&pid).and_then(|(at, ticks, _)| {
                let secs = now.saturating_duration_since(*at).as_secs_f64();
                let used = s.cpu_ticks.saturating_sub(*ticks) as f64
                    / crate::usage::ticks_per_second() as f64;
                (secs > 0.0).then(|| 100.0 * used / secs)
            });
            let u = Use {
                cpu,
                rss_bytes: s.rss_bytes,
            };
            next.insert(pid, (now, s.cpu_ticks, u));
        }
        self.last = next;
    }

    /// What process `pid` used at the last sample.
    pub fn get(&self, pid: u32) -> Option<Use> {
        self.last.get(&pid).map(|(_, _, u)| *u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_process_is_sampled_and_a_reused_pid_is_not() {
        let me = std::process::id();
        let mut s = Sampler::default();
        let t0 = Instant::now();
        s.sample(&[(me, None)], t0);
        let first = s.get(me).unwrap();
        assert!(first.cpu.is_none() && first.rss_bytes > 0, "{first:?}");
        s.sample(&[(me, None)], t0 + std::time::Duration::from_millis(500));
        assert!(s.get(me).unwrap().cpu.is_some());
        s.sample(&[(me, Some(u64::MAX))], Instant::now());
        assert_eq!(s.get(me), None, "another start time: another process");
    }
}
