//! The terminal while the dashboard is up: raw mode, the alternate screen, a hidden
//! cursor and a diverted stderr (`crate::stderr`: what the process writes there is shown
//! in the view, not drawn over it), restored on every way out: the guard's drop (a normal
//! return, an error, the unwinding of a panic on any thread that owns it) and a panic hook
//! (so the panic's message is printed on the normal screen, in cooked mode, after the
//! lines stderr got meanwhile, where it can be read). Whether to use colour is decided
//! here too.

use std::io::{IsTerminal, Stdout, Write};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::{cursor, execute, terminal};

use crate::error::{Error, Result};

/// Whether the terminal is in the dashboard's state now (restored once, by whoever
/// comes first: the guard or the panic hook).
static ACTIVE: AtomicBool = AtomicBool::new(false);
static HOOK: Once = Once::new();

/// Whether a live view can be drawn here: stdin and stdout are terminals, the terminal is
/// not a dumb one, and we are its foreground job. A job started in the background (`run
/// plan &`) is stopped by the kernel (SIGTTOU, SIGTTIN) as soon as it sets raw mode or
/// reads a key: it prints lines instead.
pub fn usable() -> bool {
    let stdin = std::io::stdin();
    stdin.is_terminal()
        && std::io::stdout().is_terminal()
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
        && nix::unistd::tcgetpgrp(&stdin).is_ok_and(|fg| fg == nix::unistd::getpgrp())
}

/// Colour unless `NO_COLOR` is set to something (https://no-color.org).
pub fn color() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn term_err(what: &str, e: std::io::Error) -> Error {
    Error::Session(format!("the terminal: cannot {what}: {e}"))
}

/// The terminal, taken for the dashboard; dropping it gives it back.
pub struct Screen {
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    pub fn enter() -> Result<Screen> {
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore();
                previous(info);
            }));
        });
        // Before the screen is taken: from now on, what the process writes on stderr is
        // shown in the view and printed when it closes, not drawn over it. Without a
        // diversion the view still works, as it did before there was one.
        if let Err(e) = crate::stderr::divert() {
            eprintln!("warning: {e}; messages may be drawn over the live view (Ctrl-L redraws it)");
        }
        if let Err(e) = terminal::enable_raw_mode() {
            restore();
            return Err(term_err("enter raw mode", e));
        }
        ACTIVE.store(true, Ordering::SeqCst);
        let mut out = std::io::stdout();
        if let Err(e) = execute!(out, terminal::EnterAlternateScreen, cursor::Hide) {
            restore();
            return Err(term_err("switch to the alternate screen", e));
        }
        match Terminal::new(CrosstermBackend::new(out)) {
            Ok(terminal) => Ok(Screen { terminal }),
            Err(e) => {
                restore();
                Err(term_err("draw", e))
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Give the terminal back as it was (cooked mode, the normal screen, the cursor), once,
/// then stderr, with what was written there meanwhile (printed now, on the normal screen,
/// before a panic's message). Errors are ignored: this runs on the way out, where nothing
/// better can be done.
pub fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let mut out = std::io::stdout();
        let _ = execute!(out, terminal::LeaveAlternateScreen, cursor::Show);
        let _ = terminal::disable_raw_mode();
        let _ = out.flush();
    }
    crate::stderr::restore();
}
