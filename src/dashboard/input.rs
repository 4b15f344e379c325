//! Reading keys from the terminal: `poll(2)` on stdin with a short timeout (so the
//! reader can be told to stop, and is joined when the view leaves), `read(2)` of what
//! came, and a small parser of what terminals send for the keys the view uses.
//!
//! Not crossterm's event reader: on a terminal that hung up (its window closed, its
//! tmux server killed) that reader loops on end-of-file without returning, and a view
//! that leaves could never join it; here a hang-up, an end-of-file or a read error ends
//! the reader, and the view with it. Window size changes come as SIGWINCH.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::Wake;

/// The keys in one read's worth of terminal input. An escape sequence arrives whole in
/// one read (terminals write it at once), so an `ESC` that ends the input is the Esc key;
/// a sequence the view has no use for is skipped.
pub fn parse_keys(bytes: &[u8]) -> Vec<KeyEvent> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let (key, used) = one_key(&bytes[i..]);
        out.extend(key);
        i += used.max(1);
    }
    out
}

/// The first key of `b` (none for a sequence to skip) and how many bytes it took.
fn one_key(b: &[u8]) -> (Option<KeyEvent>, usize) {
    let key = |c: KeyCode| Some(KeyEvent::from(c));
    match b[0] {
        0x1b => match b.get(1) {
            None => (key(KeyCode::Esc), 1),
            Some(b'[') => {
                // CSI: parameters, then a final byte in 0x40..=0x7e.
                let Some(end) = b[2..].iter().position(|c| (0x40..=0x7e).contains(c)) else {
                    return (None, b.len());
                };
                let (params, fin) = (&b[2..2 + end], b[2 + end]);
                let code = match (fin, params) {
                    (b'A', _) => Some(KeyCode::Up),
                    (b'B', _) => Some(KeyCode::Down),
                    (b'C', _) => Some(KeyCode::Right),
                    (b'D', _) => Some(KeyCode::Left),
                    (b'H', _) | (b'~', b"1" | b"7") => Some(KeyCode::Home),
                    (b'F', _) | (b'~', b"4" | b"8") => Some(KeyCode::End),
                    (b'~', b"5") => Some(KeyCode::PageUp),
                    (b'~', b"6") => Some(KeyCode::PageDown),
                    _ => None,
                };
                (code.and_then(key), 3 + end)
            }
            Some(b'O') => {
                let code = match b.get(2) {
                    Some(b'A') => Some(KeyCode::Up),
                    Some(b'B') => Some(KeyCode::Down),
                    Some(b'C') => Some(KeyCode::Right),
                    Some(b'D') => Some(KeyCode::Left),
                    Some(b'H') => Some(KeyCode::Home),
                    Some(b'F') => Some(KeyCode::End),
                    _ => None,
                };
                (code.and_then(key), 3.min(b.len()))
            }
            // Alt and a key, or Esc typed fast before a key: the Esc, then the key.
            Some(_) => (key(KeyCode::Esc), 1),
        },
        b'\r' | b'\n' => (key(KeyCode::Enter), 1),
        0x7f | 0x08 => (key(KeyCode::Backspace), 1),
        b'\t' => (key(KeyCode::Tab), 1),
        c @ 0x01..=0x1a => (
            Some(KeyEvent::new(
                KeyCode::Char((c + b'a' - 1) as char),
                KeyModifiers::CONTROL,
            )),
            1,
        ),
        c if c < 0x20 => (None, 1),
        c => {
            let len = match c {
                0xc0..=0xdf => 2,
                0xe0..=0xef => 3,
                0xf0..=0xf7 => 4,
                _ => 1,
            };
            match b.get(..len).and_then(|s| std::str::from_utf8(s).ok()) {
                Some(s) => (s.chars().next().map(KeyCode::Char).and_then(key), len),
                None => (None, 1),
            }
        }
    }
}

/// The thread that reads keys, until told to stop or the terminal goes away.
pub struct Input {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    resize: Option<signal_hook::SigId>,
}

impl Input {
    pub fn start(tx: Sender<Wake>) -> Input {
        let stop = Arc::new(AtomicBool::new(false));
        let resized = Arc::new(AtomicBool::new(false));
        let resize =
            signal_hook::flag::register(signal_hook::consts::SIGWINCH, resized.clone()).ok();
        let flag = stop.clone();
        // Named, so a profile or `top -H` tells the view's threads from the orchestrator's.
        let handle = std::thread::Builder::new()
            .name("dashboard-keys".into())
            .spawn(move || read_keys(&tx, &flag, &resized))
            .ok();
        Input {
            stop,
            handle,
            resize,
        }
    }
}

fn read_keys(tx: &Sender<Wake>, stop: &AtomicBool, resized: &AtomicBool) {
    let stdin = std::io::stdin();
    let mut buf = [0u8; 1024];
    while !stop.load(Ordering::Relaxed) {
        if resized.swap(false, Ordering::Relaxed) && tx.send(Wake::Resize).is_err() {
            return;
        }
        let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u8)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
        let revents = fds[0].revents().unwrap_or(PollFlags::POLLERR);
        if !revents.contains(PollFlags::POLLIN) {
            // Hung up, or an error: nothing more will come.
            break;
        }
        match nix::unistd::read(stdin.as_fd(), &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                for k in parse_keys(&buf[..n]) {
                    if tx.send(Wake::Key(k)).is_err() {
                        return;
                    }
                }
            }
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
            Err(_) => break,
        }
    }
    if !stop.load(Ordering::Relaxed) {
        // The terminal went away: the view cannot be driven any more.
        let _ = tx.send(Wake::Stop);
    }
}

impl Drop for Input {
    fn drop(&mut self) {
        // Joined (it looks at `stop` at least every 100 ms), so no key typed after the
        // view left is taken by it.
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        if let Some(id) = self.resize.take() {
            signal_hook::low_level::unregister(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(bytes: &[u8]) -> Vec<KeyCode> {
        parse_keys(bytes).into_iter().map(|k| k.code).collect()
    }

    #[test]
    fn keys_and_sequences_are_read_as_terminals_send_them() {
        assert_eq!(codes(b"\x1b"), [KeyCode::Esc], "a lone ESC is Esc");
        assert_eq!(
            codes(b"\x1b[A\x1b[B\x1bOA\x1b[5~\x1b[6~\x1b[H\x1b[4~"),
            [
                KeyCode::Up,
                KeyCode::Down,
                KeyCode::Up,
                KeyCode::PageUp,
                KeyCode::PageDown,
                KeyCode::Home,
                KeyCode::End
            ]
        );
        assert_eq!(
            codes(b"q\ry"),
            [KeyCode::Char('q'), KeyCode::Enter, KeyCode::Char('y')]
        );
        assert_eq!(codes(b"\x1b[1;5A"), [KeyCode::Up], "with modifiers");
        assert_eq!(codes(b"\x1b[200~"), [], "a sequence of no use is skipped");
        assert_eq!(codes(b"\x1bq"), [KeyCode::Esc, KeyCode::Char('q')]);
        assert_eq!(codes("é".as_bytes()), [KeyCode::Char('é')]);
        assert_eq!(codes(b"\x1b[12"), [], "a cut sequence is dropped");
        let ctrl_c = parse_keys(b"\x03");
        assert_eq!(ctrl_c[0].code, KeyCode::Char('c'));
        assert!(ctrl_c[0].modifiers.contains(KeyModifiers::CONTROL));
    }
}
