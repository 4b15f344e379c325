//! The live dashboard: `orchestrator run` (and `resume`, `retry`) on a terminal, and
//! `orchestrator status --watch` of any session, live or dead, from any terminal.
//!
//! It draws the session model ([`crate::model::SessionModel`], the same one `status`
//! reads once) and refreshes it when the session directory changes: a notify watcher on
//! the session's root, where its journal is ([`crate::watch`]: events are hints; one
//! pending hint is enough, however many arrive), plus a timer for elapsed times, progress,
//! CPU and what a dead orchestrator no longer journals. Refreshes after file changes are
//! at most four a second, so a busy session costs the view a bounded amount (what changed,
//! read about once), never a busy loop.
//!
//! Keys (`input.rs` reads them, `app.rs` says what they do) select a task or a worker,
//! open a task's log (`logview.rs`), send the control requests `orchestrator
//! reassign|cancel|approve` send, and leave. Ctrl-C is read as a key (the terminal is in
//! raw mode) and means what SIGINT means where the view runs: in `run`, SIGINT is raised
//! on the process, which the orchestrator handles as always; in `status --watch`, the
//! view exits.
//!
//! In `run` the view has a thread of its own ([`Live`]) and the orchestrator's loop stays
//! on the main thread; the progress lines are off while the view is up and come back when
//! it leaves (`q`), and the session's end closes it. While it is up, the process's stderr
//! is diverted (`crate::stderr`): warnings, and what a `notify` command says, are shown in
//! a panel of their own instead of being drawn over the screen, and printed when the view
//! closes. The terminal, and stderr, are restored on every way out (`term.rs`).

mod app;
mod draw;
mod input;
mod logview;
mod procs;
mod term;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use ratatui::Terminal;
use ratatui::backend::Backend;
use ratatui::crossterm::event::{KeyCode, KeyEvent};

use crate::error::{Error, Result};
use crate::journal::ControlAction;
use crate::model::SessionModel;
use crate::session::Session;
use crate::watch::{self, WatchMode};

pub use term::usable;

use app::{Action, App, Screen};
use draw::{Stderr, Theme, View};

/// How often the view refreshes without a change on disk (elapsed times, progress, CPU).
const TICK: Duration = Duration::from_millis(500);
/// The least time between two refreshes caused by changes on disk: four a second are
/// enough to follow a busy session, and each costs what changed since the last (a task
/// that starts and ends between two is read once, not twice).
const GAP: Duration = Duration::from_millis(250);

/// What wakes the view's loop.
enum Wake {
    Key(KeyEvent),
    Resize,
    /// Something changed in the session directory.
    Files,
    /// The answer to a request the view sent.
    Reply(String),
    /// Lines came on the process's stderr (diverted while the view is up).
    Stderr,
    /// A signal to a `status --watch`: its exit code.
    Signal(i32),
    /// Leave (the session ended, in `run`; the input could not be read).
    Stop,
}

/// Where the view runs, which says what `q` and Ctrl-C mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Host {
    /// `orchestrator run`: the orchestrator runs on; Ctrl-C interrupts it.
    Run,
    /// `orchestrator status --watch`: the program exits.
    Watch,
}

/// How the view ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    Quit,
    /// Ctrl-C, or a signal (`status --watch`): the exit code.
    Interrupted(i32),
    Stopped,
}

/// The view's state: the model, the person's state, the processes' samples, and what is
/// watched.
struct Dash {
    model: SessionModel,
    app: App,
    procs: procs::Sampler,
    theme: Theme,
    /// Kept for its events (dropping it stops them).
    _watcher: Option<watch::Watch>,
    tx: Sender<Wake>,
}

impl Dash {
    fn new(session: Session, tx: Sender<Wake>) -> Dash {
        Dash {
            model: SessionModel::live(session),
            app: App::default(),
            procs: procs::Sampler::default(),
            theme: Theme {
                color: term::color(),
            },
            _watcher: None,
            tx,
        }
    }

    /// Watch the session's root for changes, flat: its journal (every change a live
    /// orchestrator sees is a line there, workers' starts and ends included), its summary.
    /// Without an orchestrator, workers' lines and progress reports come with the timer.
    /// The hook only marks a change pending and wakes the loop once. Returns the mode in
    /// effect (`Off` when no watcher could start: the timer refreshes).
    fn watch(&mut self, mode: WatchMode, pending: Arc<AtomicBool>) -> WatchMode {
        let s = self.model.session();
        let spec = watch::Spec::new(watch::Kinds::Changes).flat(s.root().to_path_buf());
        let tx = self.tx.clone();
        self._watcher = watch::start_hook(&spec, mode, move |_| {
            if !pending.swap(true, Ordering::AcqRel) {
                let _ = tx.send(Wake::Files);
            }
        })
        .ok();
        self._watcher
            .as_ref()
            .map_or(WatchMode::Off, watch::Watch::mode)
    }

    /// Refresh the model, and read an open log again.
    fn refresh(&mut self) {
        self.model.refresh();
        if let Screen::Log(log) = &mut self.app.screen {
            log.reload(self.model.session());
        }
    }

    /// Sample the running tasks' processes.
    fn sample(&mut self) {
        let m = &self.model;
        let procs: Vec<(u32, Option<u64>)> = m
            .workers()
            .iter()
            .filter_map(|w| m.task_index(w.task.as_deref()?))
            .filter_map(|i| m.started(i))
            .map(|st| (st.pid, st.proc_start))
            .collect();
        self.procs.sample(&procs, Instant::now());
    }

    /// Draw a frame: first the files of the tasks it shows that the model deferred (the
    /// decided ones, whose time and note come from their outcome), then the frame.
    fn draw<B: Backend>(&mut self, terminal: &mut Terminal<B>) -> Result<()> {
        let stderr = crate::stderr::recent(draw::STDERR_SHOWN)
            .map(|(count, newest)| Stderr { count, newest })
            .unwrap_or_default();
        let (model, app) = (&mut self.model, &mut self.app);
        let (procs, theme, now) = (&self.procs, self.theme, SystemTime::now());
        terminal
            .draw(|f| {
                let view = View {
                    model: &*model,
                    procs,
                    theme,
                    now,
                    stderr: &stderr,
                };
                let shown = draw::tasks_shown(f.area(), app, &view);
                model.read_rows(shown);
                let view = View {
                    model: &*model,
                    procs,
                    theme,
                    now,
                    stderr: &stderr,
                };
                draw::draw(f, app, &view);
            })
            .map(|_| ())
            .map_err(|e| Error::Session(format!("the terminal: cannot draw: {e}")))
    }

    /// Carry out what a key asked for; `Some` when the view must leave.
    fn act(&mut self, action: Action, host: Host) -> Option<Exit> {
        let session = self.model.session().clone();
        match action {
            // The loop repaints: it owns the terminal.
            Action::None | Action::Repaint => {}
            Action::Quit => return Some(Exit::Quit),
            Action::Interrupt if host == Host::Watch => return Some(Exit::Interrupted(130)),
            Action::Interrupt => {
                // What a Ctrl-C on the terminal does when the view is not up: SIGINT to
                // this process, which the orchestrator's handler takes (a second one
                // kills every task).
                let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::SIGINT);
                self.app.message = Some(
                    "interrupting: running tasks are being stopped (Ctrl-C again kills them)"
                        .into(),
                );
            }
            Action::OpenLog(task) => {
                self.app.screen = Screen::Log(Box::new(logview::LogView::open(&session, &task)));
            }
            Action::Control { action, task } => {
                self.app.message = Some(format!("asking to {} {task}...", action.as_str()));
                self.ask(move || {
                    let reply = crate::orchestrator::send_control(&session, action, Some(&task))?;
                    Ok(if reply.ok {
                        reply.message
                    } else {
                        format!("refused: {}", reply.message)
                    })
                });
            }
            Action::Approve(gate) => {
                self.app.message = Some(format!("approving gate {gate}..."));
                self.ask(move || approve(&session, &gate));
            }
        }
        None
    }

    /// Run a request on a thread of its own (an answer can take a while) and show what it
    /// says when it comes.
    fn ask(&self, request: impl FnOnce() -> Result<String> + Send + 'static) {
        let tx = self.tx.clone();
        std::thread::spawn(move || {
            let text = request().unwrap_or_else(|e| format!("error: {e}"));
            let _ = tx.send(Wake::Reply(text));
        });
    }
}

/// `orchestrator approve`: answered by the live orchestrator, or kept for the next
/// `resume` when none runs the session.
fn approve(s: &Session, gate: &str) -> Result<String> {
    if crate::orchestrator::orchestrator_alive(s) {
        let reply = crate::orchestrator::send_control(s, ControlAction::Approve, Some(gate))?;
        return Ok(if reply.ok {
            reply.message
        } else {
            format!("refused: {}", reply.message)
        });
    }
    crate::orchestrator::leave_control(s, ControlAction::Approve, Some(gate))?;
    Ok(format!(
        "no orchestrator runs the session: the approval of gate {gate} is kept for `orchestrator resume {}`",
        s.id()
    ))
}

/// The view's loop, on the terminal, until it leaves.
fn run_view(
    session: Session,
    host: Host,
    mode: WatchMode,
    tx: Sender<Wake>,
    rx: Receiver<Wake>,
) -> Result<Exit> {
    // In `run`, the orchestrator's dispatch path shares this process's cache of resolved
    // directories: the view's reads must not crowd it out.
    crate::fsio::uncached_thread();
    let mut screen = term::Screen::enter()?;
    let _input = input::Input::start(tx.clone());
    // Lines on stderr are drawn like file changes: at most four times a second, one
    // wake-up pending however many lines come.
    let stderr_pending = Arc::new(AtomicBool::new(false));
    let (stx, spending) = (tx.clone(), stderr_pending.clone());
    crate::stderr::on_lines(move || {
        if !spending.swap(true, Ordering::AcqRel) {
            let _ = stx.send(Wake::Stderr);
        }
    });
    let pending = Arc::new(AtomicBool::new(false));
    let mut d = Dash::new(session, tx);
    // Without a watcher, the timer is all there is: as often as a rescan.
    let tick = match d.watch(mode, pending.clone()) {
        WatchMode::Native | WatchMode::Poll => TICK,
        WatchMode::Off => TICK.min(WatchMode::Off.rescan_interval()),
    };
    d.refresh();
    d.sample();
    d.draw(&mut screen.terminal)?;
    let mut last_draw = Instant::now();
    let mut next_tick = last_draw + tick;
    let mut dirty = false;
    loop {
        let now = Instant::now();
        let wait = if dirty {
            (last_draw + GAP).saturating_duration_since(now)
        } else {
            next_tick.saturating_duration_since(now)
        };
        let mut redraw = false;
        match rx.recv_timeout(wait) {
            Ok(Wake::Key(k)) => {
                let action = d.app.key(k, &d.model);
                if action == Action::Repaint {
                    let _ = screen.terminal.clear();
                }
                if let Some(exit) = d.act(action, host) {
                    return Ok(exit);
                }
                if let Screen::Log(log) = &mut d.app.screen {
                    log.reload(d.model.session());
                }
                redraw = true;
            }
            Ok(Wake::Resize) => redraw = true,
            Ok(Wake::Files) => {
                pending.store(false, Ordering::Release);
                dirty = true;
            }
            Ok(Wake::Stderr) => {
                stderr_pending.store(false, Ordering::Release);
                dirty = true;
            }
            Ok(Wake::Reply(text)) => {
                d.app.message = Some(text);
                dirty = true;
            }
            Ok(Wake::Signal(code)) => return Ok(Exit::Interrupted(code)),
            Ok(Wake::Stop) | Err(RecvTimeoutError::Disconnected) => return Ok(Exit::Stopped),
            Err(RecvTimeoutError::Timeout) => {}
        }
        let now = Instant::now();
        if now >= next_tick {
            d.refresh();
            d.sample();
            next_tick = now + tick;
            dirty = false;
            redraw = true;
        } else if dirty && now >= last_draw + GAP {
            d.refresh();
            dirty = false;
            redraw = true;
        }
        if redraw {
            d.draw(&mut screen.terminal)?;
            last_draw = Instant::now();
        }
    }
}

/// `orchestrator status --watch`: the view of `session` until `q` (exit 0) or Ctrl-C
/// (130); SIGINT, SIGTERM and SIGHUP from outside end it too, the terminal restored.
pub fn watch(session: Session, mode: WatchMode) -> Result<i32> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let (tx, rx) = channel();
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| Error::Session(format!("cannot handle signals: {e}")))?;
    let handle = signals.handle();
    let stx = tx.clone();
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            let _ = stx.send(Wake::Signal(128 + sig));
        }
    });
    let exit = run_view(session, Host::Watch, mode, tx, rx);
    handle.close();
    Ok(match exit? {
        Exit::Quit | Exit::Stopped => 0,
        Exit::Interrupted(code) => code,
    })
}

/// The view of a session run in the foreground, on a thread of its own. Dropping it
/// closes the view (if it is still up) and gives the terminal back; the progress lines
/// are on again from then (and from `q`).
pub struct Live {
    tx: Sender<Wake>,
    handle: Option<JoinHandle<()>>,
}

impl Live {
    /// Start the view of `session`; `progress` switches the orchestrator's progress lines
    /// (off while the view is up).
    pub fn start(session: Session, mode: WatchMode, progress: Arc<AtomicBool>) -> Live {
        let (tx, rx) = channel();
        progress.store(false, Ordering::Relaxed);
        let view_tx = tx.clone();
        let switch = progress.clone();
        let handle = std::thread::Builder::new()
            .name("dashboard".into())
            .spawn(move || {
                let r = run_view(session, Host::Run, mode, view_tx, rx);
                progress.store(true, Ordering::Relaxed);
                if let Err(e) = r {
                    eprintln!("warning: the live view stopped ({e}); progress lines follow");
                }
            });
        if let Err(e) = &handle {
            switch.store(true, Ordering::Relaxed);
            eprintln!("warning: no live view ({e}); progress lines follow");
        }
        Live {
            tx,
            handle: handle.ok(),
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.tx.send(Wake::Stop);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The view drawn off screen (ratatui's `TestBackend`, 120x40), frame by frame as the
/// live view makes them: what `status --watch --bench-frames` and `cargo bench` time.
#[doc(hidden)]
pub struct OffScreen {
    d: Dash,
    terminal: Terminal<ratatui::backend::TestBackend>,
}

impl OffScreen {
    /// The first frame: the whole session read, and drawn.
    pub fn new(session: Session) -> Result<OffScreen> {
        let backend = ratatui::backend::TestBackend::new(120, 40);
        let terminal = Terminal::new(backend).expect("a test backend never fails");
        let (tx, _rx) = channel();
        let mut v = OffScreen {
            d: Dash::new(session, tx),
            terminal,
        };
        v.d.refresh();
        v.d.draw(&mut v.terminal)?;
        Ok(v)
    }

    /// One more frame: refresh what changed, sample the processes, move the selection a
    /// page down the tasks (so the frames scroll through them), draw.
    pub fn frame(&mut self) -> Result<()> {
        self.d.refresh();
        self.d.sample();
        let _ = self
            .d
            .app
            .key(KeyEvent::from(KeyCode::PageDown), &self.d.model);
        self.d.draw(&mut self.terminal)
    }

    pub fn tasks(&self) -> usize {
        self.d.model.tasks().len()
    }
}

/// What `status --watch --bench-frames N` measures (a hidden flag, for
/// `scripts/bench.sh`): the first frame of `session`, then `frames` more (see
/// [`OffScreen`]). One JSON line: the task count, the first frame's milliseconds, and the
/// median and largest of the others'.
pub fn bench(session: Session, frames: usize) -> Result<String> {
    let t0 = Instant::now();
    let mut v = OffScreen::new(session)?;
    let first = t0.elapsed();
    let mut times = Vec::with_capacity(frames);
    for _ in 0..frames {
        let t = Instant::now();
        v.frame()?;
        times.push(t.elapsed());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = times.get(times.len() / 2).copied().unwrap_or_default();
    let max = times.last().copied().unwrap_or_default();
    Ok(serde_json::json!({
        "tasks": v.tasks(),
        "first_ms": ms(first),
        "frames": frames,
        "frame_ms_median": ms(median),
        "frame_ms_max": ms(max),
    })
    .to_string())
}
