//! `orchestrator logs`: a task's output, printed as it is on disk and, with `--follow`,
//! as it grows. Logs have no size limit (a task writes what it writes), so they are
//! copied through a fixed buffer, never read whole into memory.

use std::io::{Read, Write};
use std::path::Path;

use crate::error::{Error, Result};
use crate::fsio;
use crate::session::Session;

/// Copy what `from` holds from its position to its end into `out`: the bytes copied, or
/// `None` once `out` is closed.
fn copy(from: &mut impl Read, path: &Path, out: &mut impl Write) -> Result<Option<u64>> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        let got = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(got) => got,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(path, "read", e)),
        };
        if out.write_all(&buf[..got]).is_err() {
            return Ok(None);
        }
        n += got as u64;
    }
    Ok(out.flush().is_ok().then_some(n))
}

/// Print a task's log (stdout, or stderr), of the given attempt or the latest; with
/// `follow`, keep printing new output (moving on to newer attempts) until the task has an
/// outcome, like `tail -f`.
pub fn logs(
    s: &Session,
    task: &str,
    attempt: Option<u32>,
    stderr: bool,
    follow: Option<crate::watch::WatchMode>,
) -> Result<()> {
    // `follow`: keep printing, noticing changes in this mode.
    let watch_mode = follow;
    let follow = follow.is_some();
    use std::io::{Seek, SeekFrom, Write};
    crate::names::validate("task id", task).map_err(Error::Usage)?;
    let plan = super::required_plan(s)?;
    if !plan.tasks.iter().any(|t| t.id == task) {
        return Err(Error::Usage(format!(
            "session {} has no task {task:?}",
            s.id()
        )));
    }
    let path_of = |n: u32| log_path(s, task, n, stderr);
    let latest = || latest_attempt(s, task, attempt);
    let mut out = std::io::stdout().lock();
    let mut current = latest()?;
    if stderr
        && let Some(n) = current
        && on_a_terminal(s, task, n)
        && !follow
    {
        return Err(Error::Usage(format!(
            "attempt {n} of {task} ran on a terminal, where stderr and stdout are one stream: \
             `orchestrator logs {} {task}` shows both",
            s.id()
        )));
    }
    let mut offset = 0u64;
    let (tx, rx) = std::sync::mpsc::channel();
    let watch = if follow {
        Some(crate::watch::start(
            &[s.task_dir(task)],
            watch_mode.unwrap_or(crate::watch::WatchMode::Poll),
            tx,
            |_| Some(()),
        )?)
    } else {
        None
    };
    let rescan = watch
        .as_ref()
        .map_or(std::time::Duration::from_millis(500), |w| {
            w.mode().rescan_interval()
        });
    loop {
        // Seen before the read: an outcome is written after the task's last byte, so
        // the read that follows has that byte and the last line is never missed.
        let finished = follow && fsio::exists(&s.outcome_json(task));
        if let Some(n) = current {
            let path = path_of(n);
            if let Some(mut f) = fsio::open_read(&path)? {
                f.seek(SeekFrom::Start(offset))
                    .map_err(|e| Error::io(&path, "seek", e))?;
                match copy(&mut f, &path, &mut out)? {
                    Some(n) => offset += n,
                    // Nobody reads what we print any more (`logs | head`).
                    None => return Ok(()),
                }
            }
        }
        if !follow {
            return Ok(());
        }
        let newest = latest()?;
        if newest != current {
            // A marker between attempts; the first one printed needs none.
            if current.is_some()
                && let Some(n) = newest
            {
                let _ = writeln!(out, "--- attempt {n} ---");
            }
            current = newest;
            offset = 0;
            continue;
        }
        if finished {
            return Ok(());
        }
        crate::watch::recv_hint(&rx, rescan);
    }
}

/// The log of attempt `n` of `task`: its stdout's, or its stderr's.
pub(crate) fn log_path(s: &Session, task: &str, n: u32, stderr: bool) -> std::path::PathBuf {
    if stderr {
        s.stderr_log(task, n)
    } else {
        s.stdout_log(task, n)
    }
}

/// The attempt whose log to show: `attempt` when given, else the task's latest (none
/// before its first).
pub(crate) fn latest_attempt(s: &Session, task: &str, attempt: Option<u32>) -> Result<Option<u32>> {
    Ok(attempt.or(s.attempts(task)?.last().copied()))
}

/// Whether attempt `n` of `task` ran on a terminal (pty): it has one stream, logged as
/// stdout, and no stderr.log.
pub(crate) fn on_a_terminal(s: &Session, task: &str, n: u32) -> bool {
    !fsio::exists(&s.stderr_log(task, n))
        && fsio::exists(&s.stdout_log(task, n))
        && fsio::exists(&s.log_index(task, n))
}

/// The last `max` bytes of the log at `path` (a log may be any size: only its end is
/// read), cut to start at a line, and the file's size; empty while there is no file.
pub(crate) fn read_tail(path: &Path, max: u64) -> Result<(Vec<u8>, u64)> {
    use std::io::{Seek, SeekFrom};
    let Some(mut f) = fsio::open_read(path)? else {
        return Ok((Vec::new(), 0));
    };
    let len = f.metadata().map_err(|e| Error::io(path, "read", e))?.len();
    let from = len.saturating_sub(max);
    f.seek(SeekFrom::Start(from))
        .map_err(|e| Error::io(path, "seek", e))?;
    let mut buf = Vec::with_capacity((len - from) as usize);
    f.take(len - from)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io(path, "read", e))?;
    // A line cut by the start of the window is not shown half.
    if from > 0
        && let Some(nl) = buf.iter().position(|&b| b == b'\n')
    {
        buf.drain(..=nl);
    }
    Ok((buf, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_tail_reads_whole_lines_from_the_end() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("stdout.log");
        assert_eq!(read_tail(&p, 10).unwrap(), (Vec::new(), 0), "no file yet");
        std::fs::write(&p, "one\ntwo\nthree\n").unwrap();
        assert_eq!(
            read_tail(&p, 100).unwrap(),
            (b"one\ntwo\nthree\n".to_vec(), 14)
        );
        assert_eq!(read_tail(&p, 8).unwrap(), (b"three\n".to_vec(), 14));
    }

    #[test]
    fn copy_streams_to_the_end_and_stops_at_a_closed_output() {
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let mut out = Vec::new();
        let n = copy(&mut &data[..], Path::new("x"), &mut out).unwrap();
        assert_eq!((n, out == data), (Some(200_000), true));
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        assert_eq!(
            copy(&mut &data[..], Path::new("x"), &mut Closed).unwrap(),
            None
        );
    }
}
