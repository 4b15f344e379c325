//! How the orchestrator knows a worker is alive: behind one trait, because the answer
//! depends on where workers run. Locally the kernel answers: a worker holds an flock on
//! its `alive` file for its whole life and the kernel drops it when the process dies,
//! however it dies, so no pid is trusted. (Heartbeat leases, for workers on other hosts
//! of a shared file system, are judged by the engine from `heartbeat` counters.)

use fs2::FileExt;

use crate::fsio;
use crate::session::Session;

/// Probing and awaiting a worker's death.
pub trait Liveness: Send + Sync {
    /// Whether worker `id` is alive now (a non-blocking probe).
    fn alive(&self, session: &Session, id: &str) -> bool;
    /// Block until worker `id` is dead (run on a thread of its own).
    fn wait_dead(&self, session: &Session, id: &str);
}

/// The local answer: the worker's `alive` flock.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flock;

impl Liveness for Flock {
    fn alive(&self, session: &Session, id: &str) -> bool {
        fsio::lock_held(&session.worker_alive(id))
    }

    fn wait_dead(&self, session: &Session, id: &str) {
        // Blocks until the kernel releases the worker's flock, i.e. until it dies.
        if let Ok(Some(f)) = fsio::open_read(&session.worker_alive(id)) {
            let _ = f.lock_exclusive();
        }
    }
}
