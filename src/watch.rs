//! File watching, watchexec-style: the notify callback only forwards a hint into a channel;
//! the receiver then reconciles by reading the files. Events are never trusted to be
//! complete (inotify drops events on overflow, misses new subdirectories for a moment, and
//! sees nothing from other hosts), so every waiter also rescans on a timer: slow with the
//! native watcher, fast when watching is off (docs/PROTOCOL.md rule 6).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::mpsc::{Receiver, Sender};
use std::time::Duration;

use notify::{Config, EventKindMask, PollWatcher, RecommendedWatcher, RecursiveMode, Watcher};

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

/// Which changes a watcher reports. Never opens, closes or attribute changes: with those,
/// every read of a watched file woke every watcher of it, the orchestrator's own polling
/// included. The inotify backend filters in the kernel, so unwanted events cost
/// no wake-up at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kinds {
    /// Entries appearing: created, linked or renamed in. Enough for a worker, which waits
    /// only for assignments, `kill` and `shutdown`; its own journal appends, console lines
    /// and claim renames then wake nobody.
    Arrivals,
    /// Arrivals, removals and appends (journals, logs): everything else.
    Changes,
}

impl Kinds {
    fn mask(self) -> EventKindMask {
        match self {
            // notify reports a rename into a directory as a name change, not a creation.
            Kinds::Arrivals => EventKindMask::CREATE.union(EventKindMask::MODIFY_NAME),
            Kinds::Changes => EventKindMask::CREATE
                .union(EventKindMask::REMOVE)
                .union(EventKindMask::MODIFY_DATA)
                .union(EventKindMask::MODIFY_NAME),
        }
    }
}

/// What to watch: directories with their whole subtree, or just their own entries. A
/// per-task subdirectory nobody waits on (`claimed/`, `done/`) stays unwatched, which saves
/// an event per rename to every watcher of the tree.
#[derive(Debug, Clone)]
pub struct Spec {
    kinds: Kinds,
    dirs: Vec<(PathBuf, RecursiveMode)>,
}

impl Spec {
    pub fn new(kinds: Kinds) -> Spec {
        Spec {
            kinds,
            dirs: Vec::new(),
        }
    }

    /// Watch `dir` and everything below it.
    pub fn tree(mut self, dir: PathBuf) -> Spec {
        self.dirs.push((dir, RecursiveMode::Recursive));
        self
    }

    /// Watch `path` alone: a directory's own entries, or one file (e.g. a journal, whose
    /// appends are then the only events, not those of its neighbours).
    pub fn flat(mut self, path: PathBuf) -> Spec {
        self.dirs.push((path, RecursiveMode::NonRecursive));
        self
    }
}

/// A running watcher; dropping it stops watching.
pub struct Watch {
    inner: Option<Box<dyn Watcher + Send>>,
    mode: WatchMode,
}

impl Watch {
    /// The mode in effect: `Off` when the requested watcher could not be started (e.g. the
    /// per-user inotify instance limit is reached), so callers rescan at the fast rate.
    pub fn mode(&self) -> WatchMode {
        self.mode
    }

    /// Also watch `path` alone, as [`Spec::flat`] (e.g. the journal of a worker started
    /// after the watcher). If that fails (the inotify watch limit), the mode drops to `Off`
    /// so the caller rescans at the fast rate: events are hints, and losing them costs
    /// latency.
    pub fn add(&mut self, path: &Path) {
        if let Some(w) = self.inner.as_mut()
            && let Err(e) = w.watch(path, RecursiveMode::NonRecursive)
        {
            tracing::warn!("{}; falling back to polling", watch_err(path, e));
            self.inner = None;
            self.mode = WatchMode::Off;
        }
    }
}

/// Watch `dirs` recursively for [`Kinds::Changes`]; see [`start_spec`].
pub fn start<T, F>(dirs: &[PathBuf], mode: WatchMode, tx: Sender<T>, map: F) -> Result<Watch>
where
    T: Send + 'static,
    F: Fn(notify::Result<notify::Event>) -> Option<T> + Send + 'static,
{
    let spec = dirs
        .iter()
        .fold(Spec::new(Kinds::Changes), |s, d| s.tree(d.clone()));
    start_spec(&spec, mode, tx, map)
}

/// Start watching what `spec` names. For each event, `map` decides what (if anything) to
/// send; an error from notify (e.g. queue overflow) is passed to `map` too so the receiver
/// rescans.
pub fn start_spec<T, F>(spec: &Spec, mode: WatchMode, tx: Sender<T>, map: F) -> Result<Watch>
where
    T: Send + 'static,
    F: Fn(notify::Result<notify::Event>) -> Option<T> + Send + 'static,
{
    start_hook(spec, mode, move |ev| {
        if let Some(msg) = map(ev) {
            // The receiver may be gone during shutdown; nothing to do then.
            let _ = tx.send(msg);
        }
    })
}

/// Start watching what `spec` names, calling `hook` on notify's thread for each event (and
/// error). The hook must only pass a hint on (a channel, a [`crate::bell::Bell`]).
pub fn start_hook<F>(spec: &Spec, mode: WatchMode, hook: F) -> Result<Watch>
where
    F: Fn(notify::Result<notify::Event>) + Send + 'static,
{
    let handler = move |ev: notify::Result<notify::Event>| {
        // The mask already leaves out reads; this guards a backend that filters late.
        if matches!(&ev, Ok(e) if matches!(e.kind, notify::EventKind::Access(_))) {
            return;
        }
        hook(ev);
    };
    match start_inner(spec, mode, handler) {
        Ok(w) => Ok(Watch { inner: w, mode }),
        Err(e) => {
            // Events are only hints: without a watcher we lose latency, not correctness.
            tracing::warn!("{e}; falling back to polling");
            Ok(Watch {
                inner: None,
                mode: WatchMode::Off,
            })
        }
    }
}

fn start_inner<H: notify::EventHandler>(
    spec: &Spec,
    mode: WatchMode,
    handler: H,
) -> Result<Option<Box<dyn Watcher + Send>>> {
    let first = spec
        .dirs
        .first()
        .map(|(d, _)| d.as_path())
        .unwrap_or(Path::new("."));
    let config = Config::default().with_event_kinds(spec.kinds.mask());
    let mut watcher: Box<dyn Watcher + Send> = match mode {
        WatchMode::Off => return Ok(None),
        WatchMode::Native => {
            Box::new(RecommendedWatcher::new(handler, config).map_err(|e| watch_err(first, e))?)
        }
        WatchMode::Poll => Box::new(
            PollWatcher::new(
                handler,
                config.with_poll_interval(Duration::from_millis(200)),
            )
            .map_err(|e| watch_err(first, e))?,
        ),
    };
    for (dir, depth) in &spec.dirs {
        watcher.watch(dir, *depth).map_err(|e| watch_err(dir, e))?;
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

/// How a blocking verb waits: the watch mode (decided once, from the command line or the
/// environment, by the CLI) and how long before it gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    pub mode: WatchMode,
    pub timeout: Option<Duration>,
}

/// Block until `check` returns `Some`, re-checking whenever something changes under `dirs`
/// (and on the rescan timer), or until `timeout` passes (then `Ok(None)`). Used by the
/// blocking verbs (`worker checkpoint`, `wait-signal`, `recv --wait`, ...).
pub fn wait_for<T>(
    dirs: &[PathBuf],
    wait: Wait,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<Option<T>> {
    let timeout = wait.timeout;
    // Often the answer is there already (the last party at a barrier, a signal raised
    // earlier): then no watcher is started. Starting one costs a thread and two round trips
    // with it, ~6 ms on this project's VMs, which was most of a barrier's latency.
    if let Some(v) = check()? {
        return Ok(Some(v));
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let w = start(dirs, wait.mode, tx, |_| Some(()))?;
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
        recv_hint(&rx, wait);
    }
}

/// Wait up to `wait` for a hint on `rx`, then drain the others. With no watcher (mode
/// `off`, or one that could not start) every sender is gone and `recv_timeout` returns at
/// once: sleeping out the interval then is what keeps a waiter from spinning a core.
pub fn recv_hint<T>(rx: &Receiver<T>, wait: Duration) {
    match rx.recv_timeout(wait) {
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
        _ => while rx.try_recv().is_ok() {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Append a line to `path` (created if missing), as journals and logs are written.
    fn append(path: &Path) {
        let mut f = crate::fsio::open_append(path).unwrap();
        std::io::Write::write_all(&mut f, b"{}\n").unwrap();
    }

    /// Events for `dir` under `spec`, after `act`: collected until `want` has been seen
    /// or a deadline passes (events arrive asynchronously, from notify's thread).
    fn events_after(
        spec: Spec,
        act: impl FnOnce(),
        want: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        let (tx, rx) = mpsc::channel();
        let _w = start_spec(&spec, WatchMode::Native, tx, |ev| {
            ev.ok().map(|e| {
                e.paths
                    .iter()
                    .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
                    .collect::<Vec<_>>()
                    .join(",")
            })
        })
        .unwrap();
        act();
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        let mut seen = Vec::new();
        while !want(&seen) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(s) => seen.push(s),
                Err(_) => break,
            }
        }
        seen
    }

    // `notify` 8 watched opens, so every read of a watched file woke its watchers.
    // Reading and appending are silent for `Arrivals`; a rename into the directory (how
    // `shutdown` and `kill` arrive) and a link (how assignments arrive) are not.
    #[test]
    fn arrivals_ignore_reads_and_appends_but_see_renames_and_links() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().to_path_buf();
        std::fs::write(dir.join("journal"), "a\n").unwrap();
        let seen = events_after(
            Spec::new(Kinds::Arrivals).flat(dir.clone()),
            || {
                let _ = std::fs::read(dir.join("journal")).unwrap();
                append(&dir.join("journal"));
                std::fs::write(dir.join(".tmp"), "x").unwrap();
                std::fs::rename(dir.join(".tmp"), dir.join("shutdown")).unwrap();
                std::fs::hard_link(dir.join("shutdown"), dir.join("t1.1")).unwrap();
            },
            |s| s.iter().any(|e| e.contains("t1.1")),
        );
        assert!(seen.iter().any(|e| e.contains("shutdown")), "{seen:?}");
        assert!(seen.iter().any(|e| e.contains("t1.1")), "{seen:?}");
        assert!(!seen.iter().any(|e| e == "journal"), "{seen:?}");
    }

    // `Changes` sees appends (the orchestrator's doorbell is a worker journal line) but
    // not reads; a flat watch does not see inside subdirectories (`claimed/`, `done/`).
    #[test]
    fn changes_see_appends_not_reads_nor_subdirectories_of_a_flat_watch() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().to_path_buf();
        std::fs::create_dir(dir.join("done")).unwrap();
        std::fs::write(dir.join("events.jsonl"), "a\n").unwrap();
        let seen = events_after(
            Spec::new(Kinds::Changes).flat(dir.clone()),
            || {
                let _ = std::fs::read(dir.join("events.jsonl")).unwrap();
                std::fs::write(dir.join("done").join("t1.1"), "x").unwrap();
                append(&dir.join("events.jsonl"));
            },
            |s| !s.is_empty(),
        );
        assert_eq!(seen, vec!["events.jsonl".to_string()]);
    }

    // The orchestrator watches each worker's journal file alone: the worker's
    // console lines and heartbeats next to it must not wake it.
    #[test]
    fn a_flat_watch_of_a_file_sees_its_appends_and_not_its_neighbours() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().to_path_buf();
        let journal = dir.join("events.jsonl");
        crate::fsio::open_append(&journal).unwrap();
        let seen = events_after(
            Spec::new(Kinds::Changes).flat(journal.clone()),
            || {
                append(&dir.join("console.log"));
                std::fs::write(dir.join("heartbeat"), "1").unwrap();
                append(&journal);
            },
            |s| !s.is_empty(),
        );
        assert_eq!(seen, vec!["events.jsonl".to_string()]);
    }

    /// With no watcher the channel has no sender; a waiter used to loop on its
    /// `Disconnected` at full speed (`logs -f` of a task not started burned a core).
    #[test]
    fn wait_for_without_a_watcher_does_not_spin() {
        let d = tempfile::tempdir().unwrap();
        for (mode, dir) in [
            (WatchMode::Off, d.path().to_path_buf()),
            (WatchMode::Native, d.path().join("missing")),
        ] {
            let mut checks = 0u32;
            let wait = Wait {
                mode,
                timeout: Some(Duration::from_millis(300)),
            };
            let got = wait_for(&[dir], wait, || {
                checks += 1;
                Ok(None::<()>)
            })
            .unwrap();
            assert_eq!(got, None);
            // One check before the watcher, then one per 100 ms rescan: a handful, where
            // a spinning loop makes hundreds of thousands.
            assert!(checks <= 10, "{mode:?}: {checks} checks in 300 ms");
        }
    }

    #[test]
    fn add_watches_a_directory_made_later() {
        let d = tempfile::tempdir().unwrap();
        let later = d.path().join("w1");
        let (tx, rx) = mpsc::channel();
        let mut w = start_spec(
            &Spec::new(Kinds::Arrivals).flat(d.path().to_path_buf()),
            WatchMode::Native,
            tx,
            |ev| ev.ok().map(|e| e.paths),
        )
        .unwrap();
        std::fs::create_dir(&later).unwrap();
        w.add(&later);
        assert_eq!(w.mode(), WatchMode::Native);
        std::fs::write(later.join("worker.json"), "{}").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        let want = later.join("worker.json");
        let mut found = false;
        while let Ok(paths) =
            rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
        {
            if paths.contains(&want) {
                found = true;
                break;
            }
        }
        assert!(found, "no event for {}", want.display());
    }
}
