//! The barrier rule, pure and shared: the orchestrator's verdict (in `prims.rs`) and a
//! waiting participant's own view (`worker checkpoint`) use this one function, so a
//! barrier releases the same way whether the orchestrator is up or not.

use crate::proto::Arrival;

/// Whether everyone is at the barrier: every plan participant (`tasks`), or, for a
/// `--parties` checkpoint, as many arrivals as the largest `--parties` any of them gave.
/// The orchestrator's verdict and a waiter's own view use this one rule.
pub fn all_arrived(tasks: Option<&[String]>, arrived: &[Arrival]) -> bool {
    match tasks {
        Some(tasks) => tasks.iter().all(|t| arrived.iter().any(|a| &a.task == t)),
        None => arrived
            .iter()
            .filter_map(|a| a.parties)
            .max()
            .is_some_and(|n| arrived.len() >= n),
    }
}
