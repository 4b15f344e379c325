//! A task's log inside the dashboard: the end of its latest attempt's `stdout.log` (or
//! `stderr.log`), read with `orchestrator logs`' helpers (src/status/logs.rs), read again
//! when the file grows or a new attempt starts, scrollable, following the end while it is
//! at the bottom. Only the last [`WINDOW`] bytes are read: a log may be any size.

use ratatui::crossterm::event::{KeyCode, KeyEvent};

use crate::session::Session;
use crate::status;

/// How much of a log's end is read.
const WINDOW: u64 = 256 * 1024;

/// The log on the screen.
#[derive(Debug)]
pub struct LogView {
    pub task: String,
    pub attempt: Option<u32>,
    pub stderr: bool,
    pub lines: Vec<String>,
    /// How many lines up from the end the view is scrolled (0: following the end).
    pub scroll: usize,
    /// The log's size when it was read.
    len: u64,
    /// Why there is nothing to show (no attempt yet, a file that cannot be read).
    pub note: Option<String>,
}

impl LogView {
    pub fn open(s: &Session, task: &str) -> LogView {
        let mut v = LogView {
            task: task.to_string(),
            attempt: None,
            stderr: false,
            lines: Vec::new(),
            scroll: 0,
            len: u64::MAX,
            note: None,
        };
        v.reload(s);
        v
    }

    /// Read the log again if a newer attempt started or it grew.
    pub fn reload(&mut self, s: &Session) {
        let attempt = match status::latest_attempt(s, &self.task, None) {
            Ok(a) => a,
            Err(e) => {
                self.note = Some(e.to_string());
                return;
            }
        };
        let Some(n) = attempt else {
            self.note = Some(format!("{} has not started yet", self.task));
            self.lines.clear();
            return;
        };
        let path = status::log_path(s, &self.task, n, self.stderr);
        let len = std::fs::symlink_metadata(&path).map_or(0, |m| m.len());
        if Some(n) == self.attempt && len == self.len {
            return;
        }
        if Some(n) != self.attempt {
            self.scroll = 0;
        }
        self.attempt = Some(n);
        match status::read_tail(&path, WINDOW) {
            Ok((bytes, len)) => {
                self.len = len;
                let text = String::from_utf8_lossy(&bytes);
                self.lines = text.lines().map(super::draw::clean_log).collect();
                self.note = match (self.lines.is_empty(), self.stderr) {
                    (false, _) => None,
                    (true, true) if status::on_a_terminal(s, &self.task, n) => Some(format!(
                        "attempt {n} ran on a terminal: stdout and stderr are one stream (e shows it)"
                    )),
                    (true, _) => Some(format!("attempt {n}: nothing written yet")),
                };
            }
            Err(e) => {
                self.len = u64::MAX;
                self.lines.clear();
                self.note = Some(e.to_string());
            }
        }
    }

    /// Take a key; false when it leaves the log (Esc, q, Left).
    pub fn key(&mut self, k: KeyEvent) -> bool {
        let most = self.lines.len().saturating_sub(1);
        match k.code {
            KeyCode::Esc | KeyCode::Char('q') | KeyCode::Left | KeyCode::Backspace => {
                return false;
            }
            KeyCode::Up | KeyCode::Char('k') => self.scroll = (self.scroll + 1).min(most),
            KeyCode::Down | KeyCode::Char('j') => self.scroll = self.scroll.saturating_sub(1),
            KeyCode::PageUp => self.scroll = (self.scroll + 20).min(most),
            KeyCode::PageDown => self.scroll = self.scroll.saturating_sub(20),
            KeyCode::Home | KeyCode::Char('g') => self.scroll = most,
            KeyCode::End | KeyCode::Char('G') => self.scroll = 0,
            KeyCode::Char('e') => {
                self.stderr = !self.stderr;
                self.attempt = None;
                self.scroll = 0;
            }
            _ => {}
        }
        true
    }
}
