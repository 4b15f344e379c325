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
//! Under a session root nothing is followed: directories are resolved from the root's
//! descriptor without links ([`at`]), and files are opened `O_NOFOLLOW` relative to their
//! directory, so a link or FIFO planted by hand is refused by name, never used.
//!
//! fsync is off by default: a process crash loses nothing once link or rename returned.
//! `--durable` turns on fsync of the file and its directory for power-loss safety.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{AT_FDCWD, AtFlags, OFlag};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result, io_err};

mod at;
mod fault;

use at::Dir;
pub use at::{anchor, root_still_there, uncached_thread};

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

/// A temp file being written in a directory, renamed onto its target at the end; removed
/// if it never was (an error, a panic).
struct Temp<'d> {
    dir: &'d Dir,
    name: String,
    file: File,
    shown: PathBuf,
    kept: bool,
}

impl<'d> Temp<'d> {
    /// A new `.tmp-*` file in `dir` holding `bytes` (created `O_EXCL`, so a planted name is
    /// never opened).
    fn new(dir: &'d Dir, shown_dir: &Path, bytes: &[u8], durable: bool) -> Result<Temp<'d>> {
        let (name, file) = create_temp(dir, shown_dir)?;
        let shown = shown_dir.join(&name);
        let mut t = Temp {
            dir,
            name,
            file,
            shown,
            kept: false,
        };
        write_bytes(&mut t.file, &t.shown, bytes)?;
        if durable {
            t.file.sync_all().map_err(io_err(&t.shown, "fsync"))?;
        }
        Ok(t)
    }

    /// Rename onto `name` in `to` (replacing it).
    fn persist(mut self, to: &Dir, name: &OsStr, path: &Path) -> Result<()> {
        injected(path, "rename a temp file onto")?;
        nix::fcntl::renameat(self.dir, self.name.as_str(), to, name)
            .map_err(|e| Error::io(path, "rename a temp file onto", e.into()))?;
        self.kept = true;
        Ok(())
    }

    /// Rename onto `name` in `to` unless it exists: false when it did.
    fn persist_new(mut self, to: &Dir, name: &OsStr, path: &Path) -> Result<bool> {
        use nix::fcntl::{RenameFlags, renameat2};
        injected(path, "create")?;
        match renameat2(
            self.dir,
            self.name.as_str(),
            to,
            name,
            RenameFlags::RENAME_NOREPLACE,
        ) {
            Ok(()) => {
                self.kept = true;
                Ok(true)
            }
            Err(nix::errno::Errno::EEXIST) => Ok(false),
            // A file system without RENAME_NOREPLACE: a hard link never replaces either.
            Err(nix::errno::Errno::EINVAL) => {
                match nix::unistd::linkat(self.dir, self.name.as_str(), to, name, AtFlags::empty())
                {
                    Ok(()) => Ok(true),
                    Err(nix::errno::Errno::EEXIST) => Ok(false),
                    Err(e) => Err(Error::io(path, "create", e.into())),
                }
            }
            Err(e) => Err(Error::io(path, "create", e.into())),
        }
    }
}

impl Drop for Temp<'_> {
    fn drop(&mut self) {
        if !self.kept {
            let _ = nix::unistd::unlinkat(
                self.dir,
                self.name.as_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
        }
    }
}

/// A new `.tmp-*` file in `dir` (created `O_EXCL|O_NOFOLLOW`, so a planted name is never
/// opened): its name and the open file.
fn create_temp(dir: &Dir, shown_dir: &Path) -> Result<(String, File)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW;
    loop {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "{TEMP_PREFIX}{}-{}-{nanos:x}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        match nix::fcntl::openat(
            dir,
            name.as_str(),
            flags | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        ) {
            Ok(fd) => return Ok((name, File::from(fd))),
            Err(nix::errno::Errno::EEXIST) => continue,
            Err(e) => return Err(Error::io(shown_dir, "create a temp file in", e.into())),
        }
    }
}

/// The one place maestro's file contents are written: every published file, temp or
/// unnamed, gets its bytes here.
fn write_bytes(file: &mut File, path: &Path, bytes: &[u8]) -> Result<()> {
    injected(path, "write")?;
    file.write_all(bytes).map_err(io_err(path, "write"))
}

/// The injected failure of this write operation, if one is due (see `fault.rs`).
fn injected(path: &Path, op: &'static str) -> Result<()> {
    match fault::hit() {
        Some(e) => Err(Error::io(path, op, e)),
        None => Ok(()),
    }
}

fn sync_dir(dir: &Dir, shown: &Path, durable: bool) -> Result<()> {
    if durable {
        let d = nix::fcntl::openat(
            dir,
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| Error::io(shown, "open for fsync", e.into()))?;
        File::from(d).sync_all().map_err(io_err(shown, "fsync"))?;
    }
    Ok(())
}

fn dir_of(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new(""))
}

/// Publish `bytes` as `name` in `to`, which must not exist, in one step: an unnamed file
/// (`O_TMPFILE`) in `staging`, written, then linked to its name (a hard link never
/// replaces: `EEXIST` when someone else won). One directory entry instead of a temp name
/// and a rename, and one inotify event instead of six (up to four such files a task).
/// `Ok(None)` where the file system has no `O_TMPFILE` or `/proc` is missing: callers
/// then take the temp + rename path. A write error publishes nothing: the unnamed file
/// goes with its descriptor.
fn link_new(
    staging: &Dir,
    to: &Dir,
    name: &OsStr,
    path: &Path,
    bytes: &[u8],
    durable: bool,
) -> Result<Option<bool>> {
    use nix::errno::Errno;
    use std::os::fd::AsRawFd;
    let fd = match nix::fcntl::openat(
        staging,
        ".",
        OFlag::O_TMPFILE | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    ) {
        Ok(fd) => fd,
        Err(Errno::EOPNOTSUPP | Errno::EISDIR | Errno::EINVAL) => return Ok(None),
        Err(e) => return Err(Error::io(dir_of(path), "create a temp file in", e.into())),
    };
    let mut file = File::from(fd);
    write_bytes(&mut file, path, bytes)?;
    if durable {
        file.sync_all().map_err(io_err(path, "fsync"))?;
    }
    let unnamed = format!("/proc/self/fd/{}", file.as_raw_fd());
    injected(path, "create")?;
    match nix::unistd::linkat(
        AT_FDCWD,
        unnamed.as_str(),
        to,
        name,
        AtFlags::AT_SYMLINK_FOLLOW,
    ) {
        Ok(()) => {
            sync_dir(to, dir_of(path), durable)?;
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
        let (dir, name) = at::parent(path, "create a temp file in")?;
        self.publish_new(&dir, dir_of(path), &dir, name, path, &to_json(value))
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
        let stage = at::open_dir(staging, OFlag::O_PATH, "create a temp file in")?;
        let (dir, name) = at::parent(path, "create")?;
        self.publish_new(&stage, staging, &dir, name, path, &to_json(value))
    }

    fn publish_new(
        &self,
        stage: &Dir,
        staging: &Path,
        dir: &Dir,
        name: &OsStr,
        path: &Path,
        bytes: &[u8],
    ) -> Result<()> {
        match link_new(stage, dir, name, path, bytes, self.durable)? {
            Some(true) => Ok(()),
            _ => {
                Temp::new(stage, staging, bytes, self.durable)?.persist(dir, name, path)?;
                sync_dir(dir, dir_of(path), self.durable)
            }
        }
    }

    /// Atomically replace `path` with `bytes`.
    pub fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let (dir, name) = at::parent(path, "create a temp file in")?;
        Temp::new(&dir, dir_of(path), bytes, self.durable)?.persist(&dir, name, path)?;
        sync_dir(&dir, dir_of(path), self.durable)
    }

    /// Atomically replace `path` with `value` as pretty JSON (people read these by hand).
    pub fn write_json<T: Serialize + ?Sized>(&self, path: &Path, value: &T) -> Result<()> {
        self.write_atomic(path, &to_json(value))
    }

    /// Atomically create `path` with `bytes` unless it exists. Returns false when it
    /// existed (someone else won), true when we created it.
    pub fn create_once(&self, path: &Path, bytes: &[u8]) -> Result<bool> {
        let (dir, name) = at::parent(path, "create a temp file in")?;
        if let Some(created) = link_new(&dir, &dir, name, path, bytes, self.durable)? {
            return Ok(created);
        }
        let tmp = Temp::new(&dir, dir_of(path), bytes, self.durable)?;
        let created = tmp.persist_new(&dir, name, path)?;
        if created {
            sync_dir(&dir, dir_of(path), self.durable)?;
        }
        Ok(created)
    }

    /// [`Fs::create_once`] for a JSON value.
    pub fn create_json_once<T: Serialize + ?Sized>(&self, path: &Path, value: &T) -> Result<bool> {
        self.create_once(path, &to_json(value))
    }

    /// Move `from` to `to` by rename(2), as a claim: when several processes rename the
    /// same file, exactly one succeeds. `Ok(false)` when `from` is gone (someone else
    /// claimed it).
    pub fn claim(&self, from: &Path, to: &Path) -> Result<bool> {
        let (fdir, fname) = match at::parent(from, "claim (rename)") {
            Ok(p) => p,
            Err(e) if e.is_not_found() => return Ok(false),
            Err(e) => return Err(e),
        };
        let (tdir, tname) = at::parent(to, "claim (rename) to")?;
        injected(from, "claim (rename)")?;
        match nix::fcntl::renameat(&fdir, fname, &tdir, tname) {
            Ok(()) => {
                sync_dir(&tdir, dir_of(to), self.durable)?;
                Ok(true)
            }
            Err(nix::errno::Errno::ENOENT) if !at::is_real_dir(&tdir, OsStr::new(".")) => {
                Err(Error::io(
                    dir_of(to),
                    "claim (rename) to",
                    io::ErrorKind::NotFound.into(),
                ))
            }
            Err(nix::errno::Errno::ENOENT) => Ok(false),
            Err(e) => Err(Error::io(from, "claim (rename)", e.into())),
        }
    }

    /// Append one line with a single write(2), so concurrent readers see whole lines
    /// except, after a crash, possibly a partial last one (which readers skip). A write
    /// that fails part way (a full disk) is cut back: no partial line is ever left for
    /// the next line to be glued to.
    pub fn append_line(&self, file: &mut File, path: &Path, line: &str) -> Result<()> {
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        let mut done = 0;
        while done < buf.len() {
            let wrote = match fault::hit() {
                // An injected failure strikes half way, as a full disk does.
                Some(e) => match file.write(&buf[..buf.len() / 2]) {
                    Ok(n) => {
                        done += n;
                        Err(e)
                    }
                    Err(e) => Err(e),
                },
                None => file.write(&buf[done..]),
            };
            match wrote {
                Ok(0) => {
                    return Err(self.cut_back(file, path, done, io::ErrorKind::WriteZero.into()));
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.cut_back(file, path, done, e)),
            }
        }
        if self.durable {
            file.sync_data().map_err(io_err(path, "fsync"))?;
        }
        Ok(())
    }
}

impl Fs {
    /// After an append failed with `done` bytes of its line written: take them back, and
    /// say what failed.
    fn cut_back(&self, file: &File, path: &Path, done: usize, e: io::Error) -> Error {
        if done > 0
            && let Ok(m) = file.metadata()
        {
            let _ = file.set_len(m.len().saturating_sub(done as u64));
        }
        Error::io(path, "append to", e)
    }

    /// A file written a piece at a time and published whole, for records too large to
    /// build in memory first (the summary's rows): the pieces go to a temp file in
    /// `path`'s directory, which [`AtomicWriter::commit`] renames onto `path`. Dropped
    /// without a commit, it publishes nothing.
    pub fn atomic_writer(&self, path: &Path) -> Result<AtomicWriter> {
        let (dir, name) = at::parent(path, "create a temp file in")?;
        let name = name.to_os_string();
        let (tmp, file) = create_temp(&dir, dir_of(path))?;
        Ok(AtomicWriter {
            out: Some(io::BufWriter::new(file)),
            shown: dir_of(path).join(&tmp),
            dir,
            tmp,
            name,
            path: path.to_path_buf(),
            durable: self.durable,
        })
    }
}

/// See [`Fs::atomic_writer`].
pub struct AtomicWriter {
    /// `None` once committed.
    out: Option<io::BufWriter<File>>,
    dir: Dir,
    tmp: String,
    shown: PathBuf,
    name: std::ffi::OsString,
    path: PathBuf,
    durable: bool,
}

impl AtomicWriter {
    /// Append `bytes` (buffered).
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let out = self.out.as_mut().expect("written before its commit");
        out.write_all(bytes).map_err(io_err(&self.shown, "write"))
    }

    /// Append `value` as one line of compact JSON.
    pub fn write_json_line<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let mut line = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
        line.push(b'\n');
        self.write(&line)
    }

    /// Publish what was written under the path, replacing what was there.
    pub fn commit(mut self) -> Result<()> {
        let out = self.out.take().expect("committed once");
        let file = out
            .into_inner()
            .map_err(|e| Error::io(&self.shown, "write", e.into_error()))?;
        if self.durable {
            file.sync_all().map_err(io_err(&self.shown, "fsync"))?;
        }
        injected(&self.path, "rename a temp file onto")?;
        nix::fcntl::renameat(
            &self.dir,
            self.tmp.as_str(),
            &self.dir,
            self.name.as_os_str(),
        )
        .map_err(|e| Error::io(&self.path, "rename a temp file onto", e.into()))?;
        self.tmp.clear();
        sync_dir(&self.dir, dir_of(&self.path), self.durable)
    }
}

impl Drop for AtomicWriter {
    fn drop(&mut self) {
        if !self.tmp.is_empty() {
            let _ = nix::unistd::unlinkat(
                &self.dir,
                self.tmp.as_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
        }
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

/// Open a session file for reading, never through a link and never blocking (a FIFO
/// planted in its place is refused). `Ok(None)` when it, or its directory, does not exist.
pub fn open_read(path: &Path) -> Result<Option<File>> {
    let opened = at::parent(path, "open")
        .and_then(|(dir, name)| at::open_file(&dir, name, path, OFlag::O_RDONLY, "open"));
    match opened {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
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
    (&file)
        .take(cap + 1)
        .read_to_end(&mut buf)
        .map_err(io_err(path, "read"))?;
    if buf.len() as u64 > cap {
        let size = file.metadata().map_or(cap + 1, |m| m.len());
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
    read_json_capped(path, JSON_CAP)
}

/// [`read_json`] with another cap than [`JSON_CAP`] (`plan.json` has the plan's).
pub fn read_json_capped<T: DeserializeOwned>(path: &Path, cap: u64) -> Result<Option<T>> {
    match read_capped(path, cap)? {
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

/// Create a directory (and its missing parents) with mode 0700. Under a session root no
/// link is followed: a link or a file where a directory belongs is refused by name.
pub fn create_dir_private(path: &Path) -> Result<()> {
    if at::is_known_dir(path) {
        return Ok(());
    }
    // Made first, its parents only when missing: the directories maestro makes are new
    // ones, under parents that exist, and one `mkdirat` says so.
    match create_dir_new(path) {
        Err(e) if e.is_not_found() => {
            if let Some(p) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                create_dir_private(p)?;
            }
            create_dir_new(path).map(|_| ())
        }
        r => r.map(|_| ()),
    }
}

/// Create a directory that must not exist yet (create-exclusive). Returns false if it
/// existed (a real directory; anything else in its place is refused).
pub fn create_dir_new(path: &Path) -> Result<bool> {
    let (mut dir, name) = at::parent(path, "create directory")?;
    injected(path, "create directory")?;
    let mode = nix::sys::stat::Mode::from_bits_truncate(0o700);
    let mut made = nix::sys::stat::mkdirat(&dir, name, mode);
    if made == Err(nix::errno::Errno::ENOENT) {
        // The parent may have been removed and made again since its path was resolved.
        at::forget(path);
        dir = at::parent(path, "create directory")?.0;
        made = nix::sys::stat::mkdirat(&dir, name, mode);
    }
    match made {
        Ok(()) => {
            at::remember(&dir, name, path);
            Ok(true)
        }
        Err(nix::errno::Errno::EEXIST) if at::is_real_dir(&dir, name) => Ok(false),
        Err(nix::errno::Errno::EEXIST) => Err(at::not_a_dir(&dir, name, path)),
        Err(e) => Err(Error::io(path, "create directory", e.into())),
    }
}

/// Open a log or journal for appending (created if missing, never through a link).
pub fn open_append(path: &Path) -> Result<File> {
    let (dir, name) = at::parent(path, "open for appending")?;
    let flags = OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT;
    at::open_file(&dir, name, path, flags, "open for appending")
}

/// [`Fs::append_line`], without fsync.
pub fn append_line(file: &mut File, path: &Path, line: &str) -> Result<()> {
    Fs::FAST.append_line(file, path, line)
}

/// Open (creating if needed) a file used only as an flock target: never truncated, never
/// through a link, close-on-exec (so no task inherits the lock).
pub fn open_lock_file(path: &Path) -> Result<File> {
    let (dir, name) = at::parent(path, "open")?;
    at::open_file(&dir, name, path, OFlag::O_WRONLY | OFlag::O_CREAT, "open")
}

/// The names in directory `dir`, sorted, without hidden ones (temp files, a person's
/// notes). `Ok(None)` when it does not exist; a link or a file in its place is refused.
pub fn read_names(dir: &Path) -> Result<Option<Vec<String>>> {
    let fd = match at::open_dir(dir, OFlag::O_RDONLY, "list") {
        Ok(Dir::Owned(fd)) => fd,
        Ok(_) => unreachable!("O_RDONLY always opens a new descriptor"),
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    // rustix reads the entries with getdents64 straight from our descriptor; fdopendir
    // would check and change its flags first, and rewind it, three calls per listing.
    let mut d = rustix::fs::Dir::new(fd).map_err(|e| Error::io(dir, "list", e.into()))?;
    let mut out = Vec::new();
    while let Some(entry) = d.read() {
        let entry = entry.map_err(|e| Error::io(dir, "list", e.into()))?;
        let name = entry.file_name().to_string_lossy();
        if !is_hidden(&name) {
            out.push(name.into_owned());
        }
    }
    out.sort();
    Ok(Some(out))
}

/// Rename `from` to `to`, keeping an old file for people to read (a superseded outcome).
pub fn move_aside(from: &Path, to: &Path) -> Result<()> {
    let (fdir, fname) = at::parent(from, "move aside")?;
    let (tdir, tname) = at::parent(to, "move aside to")?;
    injected(from, "move aside")?;
    nix::fcntl::renameat(&fdir, fname, &tdir, tname)
        .map_err(|e| Error::io(from, "move aside", e.into()))
}

/// Remove the directory tree at `path`, never following a link inside it (a session this
/// process made and could not set up whole).
pub fn remove_tree(path: &Path) -> Result<()> {
    std::fs::remove_dir_all(path).map_err(io_err(path, "remove"))
}

/// Remove the file `path`: false when it was not there.
pub fn remove_file(path: &Path) -> Result<bool> {
    let (dir, name) = match at::parent(path, "remove") {
        Ok(p) => p,
        Err(e) if e.is_not_found() => return Ok(false),
        Err(e) => return Err(e),
    };
    match nix::unistd::unlinkat(&dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir) {
        Ok(()) => Ok(true),
        Err(nix::errno::Errno::ENOENT) => Ok(false),
        Err(e) => Err(Error::io(path, "remove", e.into())),
    }
}

/// Whether something is at `path` (a link counts, unfollowed; under a session root its
/// directories must be real ones).
pub fn exists(path: &Path) -> bool {
    at::parent(path, "stat").is_ok_and(|(dir, name)| {
        nix::sys::stat::fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok()
    })
}

/// Whether `path` is a real directory (not a link to one).
pub fn is_dir(path: &Path) -> bool {
    at::parent(path, "stat").is_ok_and(|(dir, name)| at::is_real_dir(&dir, name))
}

/// When `path` itself (not a link's target) last changed; `None` if it cannot be told.
pub fn modified(path: &Path) -> Option<std::time::SystemTime> {
    let (dir, name) = at::parent(path, "stat").ok()?;
    let st = nix::sys::stat::fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
    let t = std::time::Duration::new(st.st_mtime as u64, st.st_mtime_nsec as u32);
    Some(std::time::UNIX_EPOCH + t)
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
/// Take `f`'s exclusive lock unless someone holds it for good. A liveness probe
/// ([`lock_held`], from `status`, a worker, the CLI) holds a shared lock for a few
/// microseconds: the lock is tried again for a while before it counts as held, or a
/// `resume` racing a probe would be refused as if an orchestrator lived.
pub fn lock_exclusive_patiently(f: &File) -> bool {
    for _ in 0..20 {
        if f.try_lock().is_ok() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    f.try_lock().is_ok()
}

pub fn lock_held(path: &Path) -> bool {
    match open_read(path) {
        Ok(Some(f)) => match f.try_lock_shared() {
            Ok(()) => {
                let _ = f.unlock();
                false
            }
            Err(_) => true,
        },
        _ => false,
    }
}

/// Whether a directory entry name is one of our temp files (or any dot file a person left).
pub fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `resume` was refused ("already has a live orchestrator") when a worker's or
    /// `status`'s liveness probe held its brief shared lock at that instant (seen in CI).
    #[test]
    fn a_liveness_probe_does_not_make_a_resume_refuse() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("lock");
        let mine = File::create(&path).unwrap();
        let probe = File::open(&path).unwrap();
        probe.try_lock_shared().unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            probe.unlock().unwrap();
        });
        assert!(lock_exclusive_patiently(&mine), "a probe's lock is let go");
        t.join().unwrap();
        // A lock held for good is held.
        let other = File::open(&path).unwrap();
        assert!(other.try_lock_shared().is_err(), "mine is exclusive now");
        mine.unlock().unwrap();
        let holder = File::open(&path).unwrap();
        holder.try_lock().unwrap();
        assert!(!lock_exclusive_patiently(&mine));
    }
    use std::fs;

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
    fn atomic_writer_publishes_whole_on_commit_and_nothing_when_dropped() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("rows.jsonl");
        let mut w = Fs::FAST.atomic_writer(&p).unwrap();
        w.write_json_line(&serde_json::json!({"n": 1})).unwrap();
        w.write(b"{\"n\":2}\n").unwrap();
        assert!(!p.exists(), "nothing under the name before the commit");
        w.commit().unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "{\"n\":1}\n{\"n\":2}\n");
        let mut w = Fs::FAST.atomic_writer(&p).unwrap();
        w.write(b"half").unwrap();
        drop(w);
        assert_eq!(fs::read_to_string(&p).unwrap(), "{\"n\":1}\n{\"n\":2}\n");
        assert_eq!(
            fs::read_dir(d.path()).unwrap().count(),
            1,
            "no temp file left"
        );
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
