//! File watching, watchexec-style: the notify callback only forwards a hint into a channel;
//! the receiver then reconciles by reading the files. Events are never trusted to be
//! complete (inotify drops events on overflow, misses new subdirectories for a moment, and
//! sees nothing from other hosts), so every waiter also rescans on a timer: slow with the
//! native watcher, fast when watching is off (DESIGN.md invariant 7).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::mpsc::Sender;
use std::time::Duration;

use notify::{Config, PollWatcher, RecommendedWatcher, RecursiveMode, Watcher};

use crate::error::{Error, Result};

/// How a process learns that files changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchMode {
    /// inotify (the default): wake-ups within a millisecond, rescan every second.
    Native,
    /// notify's poll watcher, for network filesystems.
    Poll,
    /// No watcher; rescan on a short timer only. The test suite passes in this mode too.
    Off,
}

impl FromStr for WatchMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<WatchMode> {
        match s {
            "native" => Ok(WatchMode::Native),
            "poll" => Ok(WatchMode::Poll),
            "off" => Ok(WatchMode::Off),
            other => Err(Error::Usage(format!(
                "invalid watch mode {other:?}: expected native, poll or off"
            ))),
        }
    }
}

impl WatchMode {
    pub fn as_str(self) -> &'static str {
        match self {
            WatchMode::Native => "native",
            WatchMode::Poll => "poll",
            WatchMode::Off => "off",
        }
    }

    /// The mode from `$MAESTRO_WATCH`, else native. Workers inherit it from the orchestrator.
    pub fn from_env() -> Result<WatchMode> {
        match std::env::var("MAESTRO_WATCH") {
            Ok(v) if !v.is_empty() => v
                .parse()
                .map_err(|e: Error| Error::Usage(format!("MAESTRO_WATCH: {e}"))),
            _ => Ok(WatchMode::Native),
        }
    }

    /// How often a waiter rescans even without events.
    pub fn rescan_interval(self) -> Duration {
        match self {
            WatchMode::Native => Duration::from_millis(1000),
            WatchMode::Poll => Duration::from_millis(500),
            WatchMode::Off => Duration::from_millis(100),
        }
    }
}

/// A running watcher; dropping it stops watching.
pub struct Watch {
    _inner: Option<Box<dyn Watcher + Send>>,
    mode: WatchMode,
}

impl Watch {
    /// The mode in effect: `Off` when the requested watcher could not be started (e.g. the
    /// per-user inotify instance limit is reached), so callers rescan at the fast rate.
    pub fn mode(&self) -> WatchMode {
        self.mode
    }
}

/// Watch `dirs` recursively. For each event, `map` decides what (if anything) to send; an
/// error from notify (e.g. queue overflow) is passed to `map` too so the receiver rescans.
pub fn start<T, F>(dirs: &[PathBuf], mode: WatchMode, tx: Sender<T>, map: F) -> Result<Watch>
where
    T: Send + 'static,
    F: Fn(notify::Result<notify::Event>) -> Option<T> + Send + 'static,
{
    let handler = move |ev: notify::Result<notify::Event>| {
        // Reads are not changes; and reacting to them would loop: our own reading of a
        // watched file or directory produces an access event.
        if matches!(&ev, Ok(e) if matches!(e.kind, notify::EventKind::Access(_))) {
            return;
        }
        if let Some(msg) = map(ev) {
            // The receiver may be gone during shutdown; nothing to do then.
            let _ = tx.send(msg);
        }
    };
    match start_inner(dirs, mode, handler) {
        Ok(w) => Ok(Watch { _inner: w, mode }),
        Err(e) => {
            // Events are only hints: without a watcher we lose latency, not correctness.
            tracing::warn!("{e}; falling back to polling");
            Ok(Watch {
                _inner: None,
                mode: WatchMode::Off,
            })
        }
    }
}

fn start_inner<H: notify::EventHandler>(
    dirs: &[PathBuf],
    mode: WatchMode,
    handler: H,
) -> Result<Option<Box<dyn Watcher + Send>>> {
    let first = dirs.first().map(PathBuf::as_path).unwrap_or(Path::new("."));
    let mut watcher: Box<dyn Watcher + Send> = match mode {
        WatchMode::Off => return Ok(None),
        WatchMode::Native => Box::new(
            RecommendedWatcher::new(handler, Config::default()).map_err(|e| watch_err(first, e))?,
        ),
        WatchMode::Poll => Box::new(
            PollWatcher::new(
                handler,
                Config::default().with_poll_interval(Duration::from_millis(200)),
            )
            .map_err(|e| watch_err(first, e))?,
        ),
    };
    for dir in dirs {
        watcher
            .watch(dir, RecursiveMode::Recursive)
            .map_err(|e| watch_err(dir, e))?;
    }
    Ok(Some(watcher))
}

fn watch_err(dir: &Path, e: notify::Error) -> Error {
    Error::Session(format!("{}: cannot watch: {e}", dir.display()))
}

/// Whether any path of an event has a file name for which `pred` holds. A notify error
/// (overflow, lost watch) counts as "yes": the receiver must rescan.
pub fn event_touches(ev: &notify::Result<notify::Event>, pred: impl Fn(&Path) -> bool) -> bool {
    match ev {
        Err(_) => true,
        Ok(ev) => ev.need_rescan() || ev.paths.iter().any(|p| pred(p)),
    }
}

/// Block until `check` returns `Some`, re-checking whenever something changes under `dirs`
/// (and on the rescan timer), or until `timeout` passes (then `Ok(None)`). Used by the
/// blocking verbs (`worker checkpoint`, `wait-signal`, `recv --wait`, ...).
pub fn wait_for<T>(
    dirs: &[PathBuf],
    timeout: Option<Duration>,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<Option<T>> {
    // Often the answer is there already (the last party at a barrier, a signal raised
    // earlier): then no watcher is started. Starting one costs a thread and two round trips
    // with it, ~6 ms on this project's VMs, which was most of a barrier's latency (issue 5).
    if let Some(v) = check()? {
        return Ok(Some(v));
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let w = start(dirs, WatchMode::from_env()?, tx, |_| Some(()))?;
    let mode = w.mode();
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    loop {
        if let Some(v) = check()? {
            return Ok(Some(v));
        }
        let mut wait = mode.rescan_interval();
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            wait = wait.min(left);
        }
        let _ = rx.recv_timeout(wait);
        while rx.try_recv().is_ok() {}
    }
}
