//! The one file helper: every file maestro publishes in a session goes through here.
//!
//! docs/PROTOCOL.md rule 2: a reader never sees half a file. A file with a new name is
//! written unnamed (`O_TMPFILE`) and then linked to its name, which never replaces: that is
//! how "written once" files (outcomes, ready markers) are created without a
//! check-then-create race (invariant 1), and it costs one directory entry and one inotify
//! event. A file that is replaced goes to a unique temp file in the same
//! directory (`.tmp-*`, created O_EXCL so a planted symlink is never followed) and is
//! renamed over the target; so do new names where the file system lacks `O_TMPFILE`. A
//! write error publishes nothing (the unnamed or temp file goes with its descriptor).
//!
//! fsync is off by default: a process crash loses nothing once link or rename returned.
//! `--durable` turns on fsync of the file and its directory for power-loss safety.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result, io_err};

/// Prefix of temp files; names in a session never start with a dot, so these never clash
/// with real files and scanners skip them.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Default cap on JSON files read from a session (invariant 6).
pub const JSON_CAP: u64 = 16 * 1024 * 1024;

/// How a process's writes reach the disk: with `durable` (`--durable`), each file and
/// its directory are fsync'd before the write counts as done (power-loss safety); without,
/// a write is safe against process crashes only. A value the CLI decides once and hands
/// to the orchestrator and the worker; the free functions below are the fast writes task
/// verbs make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fs {
    pub durable: bool,
}

impl Fs {
    /// No fsync.
    pub const FAST: Fs = Fs { durable: false };

    pub fn new(durable: bool) -> Fs {
        Fs { durable }
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn temp_in(path: &Path, bytes: &[u8], durable: bool) -> Result<tempfile::NamedTempFile> {
    temp_in_dir(parent(path), bytes, durable)
}

fn temp_in_dir(dir: &Path, bytes: &[u8], durable: bool) -> Result<tempfile::NamedTempFile> {
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)
        .map_err(io_err(dir, "create a temp file in"))?;
    tmp.write_all(bytes).map_err(io_err(tmp.path(), "write"))?;
    if durable {
        tmp.as_file()
            .sync_all()
            .map_err(io_err(tmp.path(), "fsync"))?;
    }
    Ok(tmp)
}

fn sync_dir(path: &Path, durable: bool) -> Result<()> {
    if durable {
        let dir = parent(path);
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir, "fsync"))?;
    }
    Ok(())
}

/// Publish `bytes` under `path`, which must not exist, in one step: an unnamed file
/// (`O_TMPFILE`) in `dir`, written, then linked to `path` (a hard link never replaces:
/// `EEXIST` when someone else won). One directory entry instead of a temp name and a
/// rename, and one inotify event instead of six (up to four such files a task).
/// `Ok(None)` where the file system has no `O_TMPFILE` or `/proc` is missing: callers
/// then take the temp + rename path. A write error publishes nothing: the unnamed file
/// goes with its descriptor.
fn link_new(dir: &Path, path: &Path, bytes: &[u8], durable: bool) -> Result<Option<bool>> {
    use nix::errno::Errno;
    use nix::fcntl::{AT_FDCWD, AtFlags, OFlag};
    use std::os::fd::AsRawFd;
    let fd = match nix::fcntl::open(
        dir,
        OFlag::O_TMPFILE | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    ) {
        Ok(fd) => fd,
        Err(Errno::EOPNOTSUPP | Errno::EISDIR | Errno::EINVAL) => return Ok(None),
        Err(e) => return Err(Error::io(dir, "create a temp file in", e.into())),
    };
    let mut file = File::from(fd);
    file.write_all(bytes).map_err(io_err(path, "write"))?;
    if durable {
        file.sync_all().map_err(io_err(path, "fsync"))?;
    }
    let unnamed = format!("/proc/self/fd/{}", file.as_raw_fd());
    match nix::unistd::linkat(
        AT_FDCWD,
        unnamed.as_str(),
        AT_FDCWD,
        path,
        AtFlags::AT_SYMLINK_FOLLOW,
    ) {
        Ok(()) => {
            sync_dir(path, durable)?;
            Ok(Some(true))
        }
        Err(Errno::EEXIST) => Ok(Some(false)),
        Err(Errno::ENOENT) if !Path::new("/proc/self/fd").is_dir() => Ok(None),
        Err(e) => Err(Error::io(path, "create", e.into())),
    }
}

impl Fs {
    /// Write `value` as JSON to `path`, a name expected to be new (an attempt's records):
    /// linked in one step where the file system allows (`link_new`), else, or if the
    /// name exists after all, like [`Fs::write_json`].
    pub fn write_json_new<T: Serialize + ?Sized>(&self, path: &Path, value: &T) -> Result<()> {
        self.write_json_new_via(parent(path), path, value)
    }

    /// [`Fs::write_json_new`] with the unnamed (or temp) file made in `staging`, a
    /// directory on the same file system that nobody watches: watchers of `path`'s
    /// directory then see one event. The orchestrator writes every assignment this way.
    pub fn write_json_new_via<T: Serialize + ?Sized>(
        &self,
        staging: &Path,
        path: &Path,
        value: &T,
    ) -> Result<()> {
        let bytes = to_json(value);
        match link_new(staging, path, &bytes, self.durable)? {
            Some(true) => Ok(()),
            _ => {
                let tmp = temp_in_dir(staging, &bytes, self.durable)?;
                tmp.persist(path)
                    .map_err(|e| Error::io(path, "rename a temp file onto", e.error))?;
                sync_dir(path, self.durable)
            }
        }
    }

    /// Atomically replace `path` with `bytes`.
    pub fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let tmp = temp_in(path, bytes, self.durable)?;
        tmp.persist(path)
            .map_err(|e| Error::io(path, "rename a temp file onto", e.error))?;
        sync_dir(path, self.durable)
    }

    /// Atomically replace `path` with `value` as pretty JSON (people read these by hand).
    pub fn write_json<T: Serialize + ?Sized>(&self, path: &Path, value: &T) -> Result<()> {
        self.write_atomic(path, &to_json(value))
    }

    /// Atomically create `path` with `bytes` unless it exists. Returns false when it
    /// existed (someone else won), true when we created it.
    pub fn create_once(&self, path: &Path, bytes: &[u8]) -> Result<bool> {
        if let Some(created) = link_new(parent(path), path, bytes, self.durable)? {
            return Ok(created);
        }
        let tmp = temp_in(path, bytes, self.durable)?;
        match tmp.persist_noclobber(path) {
            Ok(_) => {
                sync_dir(path, self.durable)?;
                Ok(true)
            }
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(Error::io(path, "create", e.error)),
        }
    }

    /// [`Fs::create_once`] for a JSON value.
    pub fn create_json_once<T: Serialize + ?Sized>(&self, path: &Path, value: &T) -> Result<bool> {
        self.create_once(path, &to_json(value))
    }

    /// Move `from` to `to` by rename(2), as a claim: when several processes rename the
    /// same file, exactly one succeeds. `Ok(false)` when `from` is gone (someone else
    /// claimed it).
    pub fn claim(&self, from: &Path, to: &Path) -> Result<bool> {
        match fs::rename(from, to) {
            Ok(()) => {
                sync_dir(to, self.durable)?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(from, "claim (rename)", e)),
        }
    }

    /// Append one line with a single write(2), so concurrent readers see whole lines
    /// except, after a crash, possibly a partial last one (which readers skip).
    pub fn append_line(&self, file: &mut File, path: &Path, line: &str) -> Result<()> {
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        file.write_all(&buf).map_err(io_err(path, "append to"))?;
        if self.durable {
            file.sync_data().map_err(io_err(path, "fsync"))?;
        }
        Ok(())
    }
}

/// [`Fs::write_json_new`], without fsync.
pub fn write_json_new<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    Fs::FAST.write_json_new(path, value)
}

/// [`Fs::write_json_new_via`], without fsync.
pub fn write_json_new_via<T: Serialize + ?Sized>(
    staging: &Path,
    path: &Path,
    value: &T,
) -> Result<()> {
    Fs::FAST.write_json_new_via(staging, path, value)
}

/// [`Fs::write_atomic`], without fsync.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Fs::FAST.write_atomic(path, bytes)
}

/// [`Fs::write_json`], without fsync.
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    Fs::FAST.write_json(path, value)
}

/// [`Fs::create_once`], without fsync.
pub fn create_once(path: &Path, bytes: &[u8]) -> Result<bool> {
    Fs::FAST.create_once(path, bytes)
}

/// [`Fs::create_json_once`], without fsync.
pub fn create_json_once<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<bool> {
    Fs::FAST.create_json_once(path, value)
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // Serializing our own plain structs cannot fail (no maps with non-string keys).
    let mut v = serde_json::to_vec_pretty(value).unwrap_or_else(|_| b"null".to_vec());
    v.push(b'\n');
    v
}

/// Open a session file for reading, never through a symlink. `Ok(None)` when it does not
/// exist.
pub fn open_read(path: &Path) -> Result<Option<File>> {
    match OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, "open", e)),
    }
}

/// Read a file of at most `cap` bytes. `Ok(None)` when it does not exist.
pub fn read_capped(path: &Path, cap: u64) -> Result<Option<Vec<u8>>> {
    let Some(file) = open_read(path)? else {
        return Ok(None);
    };
    // Start big enough for a typical record: read_to_end would otherwise grow from 32
    // bytes, one read(2) per doubling.
    let mut buf = Vec::with_capacity(8192);
    file.take(cap + 1)
        .read_to_end(&mut buf)
        .map_err(io_err(path, "read"))?;
    if buf.len() as u64 > cap {
        let size = fs::metadata(path).map(|m| m.len()).unwrap_or(cap + 1);
        return Err(Error::TooLarge {
            path: path.to_path_buf(),
            size,
            limit: cap,
        });
    }
    Ok(Some(buf))
}

/// Read and parse a JSON file (size-capped). `Ok(None)` when it does not exist; a malformed
/// file is an error naming its path, never a panic.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match read_capped(path, JSON_CAP)? {
        None => Ok(None),
        Some(bytes) => parse_json(path, &bytes).map(Some),
    }
}

/// Parse the bytes of a JSON record read from `path` (named in the error): what
/// [`read_json`] does once the file is read, and what the fuzz targets feed.
pub fn parse_json<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// [`Fs::claim`], without fsync.
pub fn claim(from: &Path, to: &Path) -> Result<bool> {
    Fs::FAST.claim(from, to)
}

/// Create a directory (and parents) with mode 0700.
pub fn create_dir_private(path: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(io_err(path, "create directory"))
}

/// Create a directory that must not exist yet (create-exclusive). Returns false if it existed.
pub fn create_dir_new(path: &Path) -> Result<bool> {
    match fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::io(path, "create directory", e)),
    }
}

/// Open a log or journal for appending (created if missing, never through a symlink).
pub fn open_append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(io_err(path, "open for appending"))
}

/// [`Fs::append_line`], without fsync.
pub fn append_line(file: &mut File, path: &Path, line: &str) -> Result<()> {
    Fs::FAST.append_line(file, path, line)
}

/// Open (creating if needed) a file used only as an flock target: never truncated, never
/// through a symlink, close-on-exec (so no task inherits the lock).
pub fn open_lock_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(io_err(path, "open"))
}

/// Move `file` to a descriptor number above those a process opens in its normal course
/// (>= 256), for a liveness lock that must be released first when the process dies.
///
/// Why: the kernel releases a dying process's files in reverse descriptor order,
/// and releasing an inotify instance waits for an SRCU grace period (7 to 16 ms here) when
/// its watches were the only ones on their directories. A worker's `alive` lock opened
/// before its watcher (a lower number) was therefore released that much later, and the
/// orchestrator saw the death that much later. Falls back to the file as it is when no
/// such descriptor is available (a low `RLIMIT_NOFILE`).
pub fn raise_fd(file: File) -> File {
    use std::os::fd::{AsRawFd, FromRawFd};
    match nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(256)) {
        // SAFETY: the kernel just gave us this new descriptor; nothing else owns it. The
        // duplicate shares the open file description, and with it the flock.
        Ok(fd) if fd > file.as_raw_fd() => unsafe { File::from_raw_fd(fd) },
        Ok(fd) => {
            // SAFETY: as above; a duplicate we do not keep.
            drop(unsafe { File::from_raw_fd(fd) });
            file
        }
        Err(_) => file,
    }
}

/// Whether some process holds an flock on `path` (a non-blocking probe with a shared lock;
/// a missing file is "not held"). This is how liveness is read (invariant 4).
pub fn lock_held(path: &Path) -> bool {
    use fs2::FileExt;
    match File::open(path) {
        Ok(f) => match f.try_lock_shared() {
            Ok(()) => {
                let _ = FileExt::unlock(&f);
                false
            }
            Err(_) => true,
        },
        Err(_) => false,
    }
}

/// Whether a directory entry name is one of our temp files (or any dot file a person left).
pub fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn create_once_refuses_second_writer() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("outcome.json");
        assert!(create_once(&p, b"first").unwrap());
        assert!(!create_once(&p, b"second").unwrap());
        assert_eq!(fs::read(&p).unwrap(), b"first");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn write_json_new_links_a_new_name_and_replaces_an_old_one() {
        let d = tempfile::tempdir().unwrap();
        let staging = d.path().join("staging");
        fs::create_dir(&staging).unwrap();
        let p = d.path().join("exit.json");
        write_json_new(&p, &serde_json::json!({"n": 1})).unwrap();
        write_json_new_via(&staging, &d.path().join("a.1"), &1).unwrap();
        // A name that exists after all is replaced, as write_json would.
        write_json_new(&p, &serde_json::json!({"n": 2})).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "{\n  \"n\": 2\n}\n");
        assert_eq!(fs::read_to_string(d.path().join("a.1")).unwrap(), "1\n");
        // No temp names left in either directory.
        let mut names: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["a.1", "exit.json", "staging"]);
        assert_eq!(fs::read_dir(&staging).unwrap().count(), 0);
    }

    #[test]
    fn new_names_never_follow_a_planted_symlink() {
        let d = tempfile::tempdir().unwrap();
        let canary = d.path().join("canary");
        fs::write(&canary, b"keep").unwrap();
        for name in ["outcome.json", "exit.json"] {
            std::os::unix::fs::symlink(&canary, d.path().join(name)).unwrap();
        }
        assert!(!create_once(&d.path().join("outcome.json"), b"x").unwrap());
        write_json_new(&d.path().join("exit.json"), &1).unwrap();
        assert_eq!(fs::read(&canary).unwrap(), b"keep");
        let exit = d.path().join("exit.json");
        assert!(
            !fs::symlink_metadata(&exit)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn write_atomic_does_not_follow_planted_symlink() {
        let d = tempfile::tempdir().unwrap();
        let canary = d.path().join("canary");
        fs::write(&canary, b"keep").unwrap();
        let p = d.path().join("state.json");
        std::os::unix::fs::symlink(&canary, &p).unwrap();
        write_atomic(&p, b"new").unwrap();
        assert_eq!(fs::read(&canary).unwrap(), b"keep");
        assert!(!fs::symlink_metadata(&p).unwrap().file_type().is_symlink());
    }

    #[test]
    fn read_json_reports_truncated_file_by_path() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("exit.json");
        fs::write(&p, b"{\"exit_code\": 0,").unwrap();
        let err = read_json::<serde_json::Value>(&p).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}: invalid JSON: ", p.display())),
            "{err}"
        );
        assert_eq!(
            read_json::<serde_json::Value>(&d.path().join("none")).unwrap(),
            None
        );
    }

    /// serde_json's default number parser may miss the nearest double by one bit: a
    /// number a task wrote (a result, a shared value, a message) then changed each time
    /// maestro read back what it had written (found by the `records` fuzz target).
    #[test]
    fn numbers_read_back_exactly_as_written() {
        let p = Path::new("shared.json");
        let text = "2".repeat(98);
        let v: serde_json::Value = parse_json(p, text.as_bytes()).unwrap();
        assert_eq!(v.as_f64(), Some(text.parse::<f64>().unwrap()));
        let back: serde_json::Value = parse_json(p, &to_json(&v)).unwrap();
        assert_eq!(back, v);
    }

    // A killed worker's lock was released only after its inotify teardown.
    #[test]
    fn raise_fd_keeps_the_lock_on_a_high_descriptor() {
        use fs2::FileExt;
        use std::os::fd::AsRawFd;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("alive");
        let f = open_lock_file(&p).unwrap();
        f.try_lock_exclusive().unwrap();
        let f = raise_fd(f);
        assert!(f.as_raw_fd() >= 256, "fd {}", f.as_raw_fd());
        let other = open_lock_file(&p).unwrap();
        assert!(
            other.try_lock_exclusive().is_err(),
            "the lock moved with the fd"
        );
        drop(f);
        other.try_lock_exclusive().unwrap();
    }

    #[test]
    fn read_capped_refuses_oversized_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("big");
        fs::write(&p, vec![b'x'; 100]).unwrap();
        let err = read_capped(&p, 10).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}: file is too large (100 bytes; the limit is 10)",
                p.display()
            )
        );
    }

    #[test]
    fn write_into_missing_directory_names_the_directory() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("nope").join("x.json");
        let err = write_atomic(&p, b"x").unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "{}: cannot create a temp file in: ",
                d.path().join("nope").display()
            )),
            "{err}"
        );
    }
}
