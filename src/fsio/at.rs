//! Paths under a session root, resolved without following links.
//!
//! People read and touch session folders by hand, so anything may be planted in one: a
//! symbolic link where `tasks/ID/` or `attempt-1/` belongs would send maestro's writes
//! outside the session. A process anchors each session root it uses ([`anchor`]): one
//! `O_PATH|O_DIRECTORY|O_NOFOLLOW` descriptor, opened once and kept. Every path under an
//! anchored root is resolved from that descriptor with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)`, or, on a kernel without openat2, one `openat(O_NOFOLLOW)` per
//! component, which cannot race either; the last component is then opened, created,
//! renamed or linked relative to its directory's descriptor. Paths elsewhere (a plan
//! file, the sessions root) resolve as usual: they are the user's to point anywhere.
//!
//! Directory descriptors resolved this way are kept for a moment ([`FRESH`]): one task's
//! dispatch touches `tasks/ID/attempt-N/` and the worker's directories a few times each,
//! and resolving them anew every time cost ~20 `openat2`+`close` pairs per task, about
//! 0.1 ms. Only the directory is kept, never the last component, which is looked up by
//! name each time; a directory removed meanwhile fails what is done in it (`ENOENT`), and
//! one renamed away keeps receiving maestro's files for at most [`FRESH`].

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag};

use crate::error::{Error, Result};

/// An anchored session root: its canonical path, a descriptor of the directory itself and
/// the directories lately resolved below it.
pub(super) struct Anchor {
    root: PathBuf,
    fd: OwnedFd,
    recent: Mutex<Vec<Recent>>,
}

/// How long a resolved directory's descriptor is used again without resolving its path.
pub(super) const FRESH: Duration = Duration::from_secs(1);

/// How many resolved directories an anchor keeps: a task's few and a few workers' few.
/// Not more: a worker's descriptors are copied at each task's spawn and closed at its exec.
const KEPT: usize = 24;

/// A directory resolved below an anchor (`O_PATH`), and when.
struct Recent {
    rel: PathBuf,
    fd: Arc<OwnedFd>,
    at: Instant,
}

impl Anchor {
    fn new(root: &Path, fd: OwnedFd) -> Arc<Anchor> {
        Arc::new(Anchor {
            root: root.to_path_buf(),
            fd,
            recent: Mutex::new(Vec::new()),
        })
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, Vec<Recent>> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The directory `rel`, if it was resolved less than [`FRESH`] ago.
    fn lookup(&self, rel: &Path, now: Instant) -> Option<Arc<OwnedFd>> {
        if UNCACHED.get() {
            return None;
        }
        let recent = self.recent();
        let r = recent
            .iter()
            .find(|r| r.rel.as_os_str() == rel.as_os_str())?;
        (now.duration_since(r.at) < FRESH).then(|| Arc::clone(&r.fd))
    }

    /// Keep `fd` as the directory `rel`, in place of a stale entry or the oldest one.
    fn keep(&self, rel: &Path, fd: Arc<OwnedFd>, now: Instant) {
        if UNCACHED.get() {
            return;
        }
        let mut recent = self.recent();
        let fresh = Recent {
            rel: rel.to_path_buf(),
            fd,
            at: now,
        };
        if let Some(r) = recent
            .iter_mut()
            .find(|r| r.rel.as_os_str() == rel.as_os_str())
        {
            *r = fresh;
        } else if recent.len() < KEPT {
            recent.push(fresh);
        } else if let Some(r) = recent.iter_mut().min_by_key(|r| r.at) {
            *r = fresh;
        }
    }
}

thread_local! {
    /// This thread resolves every path anew ([`uncached_thread`]).
    static UNCACHED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Resolve every path on this thread anew, neither using nor keeping the directories
/// lately resolved. For a reader on a thread of its own in a process that dispatches (the
/// live dashboard of `run`): reading every task's directory, it would evict the few the
/// dispatch path uses again and again, and make it wait for their lock.
pub fn uncached_thread() {
    UNCACHED.set(true);
}

/// Whether `path` is an anchored root or a directory lately resolved below one (no
/// system call). A root is never made again by a path below it: one removed with its
/// session stays removed, and what is done in it fails.
pub(super) fn is_known_dir(path: &Path) -> bool {
    anchored(path).is_some_and(|(a, rel)| {
        rel.as_os_str().is_empty() || a.lookup(rel, Instant::now()).is_some()
    })
}

/// Keep the directory `name` in `dir`, just made at `path`: what is made is used next.
pub(super) fn remember(dir: &Dir, name: &OsStr, path: &Path) {
    let Some((a, rel)) = anchored(path) else {
        return;
    };
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    if let Ok(fd) = nix::fcntl::openat(dir, name, flags, Mode::empty()) {
        a.keep(rel, Arc::new(fd), Instant::now());
    }
}

/// Forget the directories resolved below `path`'s anchor: something done in one of them
/// failed as if it were gone, and the next try must resolve its path again.
pub(super) fn forget(path: &Path) {
    if let Some((a, _)) = anchored(path) {
        a.recent().clear();
    }
}

/// The roots this process anchored. A process uses one session, tests a few: a list.
static ANCHORS: RwLock<Vec<Arc<Anchor>>> = RwLock::new(Vec::new());

/// Set once openat2 turned out to be missing (ENOSYS, or refused by a seccomp filter).
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// Resolve every later path under `root` (canonical, as [`crate::session::Session`] keeps
/// it) without following links. Idempotent; a root deleted and made again at the same path
/// is anchored anew.
pub fn anchor(root: &Path) -> Result<()> {
    let fd = nix::fcntl::open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::ELOOP | Errno::ENOTDIR => refused_by_kind(root, None),
        e => Error::io(root, "open session", e.into()),
    })?;
    let ino = |fd: BorrowedFd| nix::sys::stat::fstat(fd).ok().map(|s| (s.st_dev, s.st_ino));
    let mut anchors = ANCHORS.write().unwrap_or_else(|e| e.into_inner());
    match anchors.iter().position(|a| a.root == root) {
        Some(i) if ino(anchors[i].fd.as_fd()) == ino(fd.as_fd()) => {}
        Some(i) => anchors[i] = Anchor::new(root, fd),
        None => anchors.push(Anchor::new(root, fd)),
    }
    Ok(())
}

/// Whether `root`, a session root, is still the directory its path names. An anchored
/// root's descriptor keeps its directory reachable after the path stopped leading there
/// (the session removed, moved away, or its file system unmounted, even lazily as `umount
/// -l` does, and its mount point removed), and every path resolved below it goes on
/// working: only a lookup by path, compared with the anchor, can tell. A worker that
/// looked below its anchor alone ran on for good in a session nobody could see.
pub fn root_still_there(root: &Path) -> bool {
    let Ok(st) = nix::sys::stat::lstat(root) else {
        return false;
    };
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR {
        return false;
    }
    match anchored(root) {
        Some((a, rel)) if rel.as_os_str().is_empty() => nix::sys::stat::fstat(&a.fd)
            .is_ok_and(|at| (at.st_dev, at.st_ino) == (st.st_dev, st.st_ino)),
        _ => true,
    }
}

/// The anchor `path` lies under, and the rest of the path below it.
fn anchored(path: &Path) -> Option<(Arc<Anchor>, &Path)> {
    if !path.is_absolute() {
        return None;
    }
    let anchors = ANCHORS.read().unwrap_or_else(|e| e.into_inner());
    anchors
        .iter()
        .find_map(|a| below(path, &a.root).map(|rel| (Arc::clone(a), rel)))
}

/// `path` relative to `root`, if it lies under it. Bytes, not components: this runs for
/// every file operation and `Path::strip_prefix` parses both paths each time. A `..` left in
/// the result is refused when it is resolved (`RESOLVE_BENEATH`, or [`walk`]).
fn below<'p>(path: &'p Path, root: &Path) -> Option<&'p Path> {
    let r = root.as_os_str().as_bytes();
    let rest = path.as_os_str().as_bytes().strip_prefix(r)?;
    if !rest.is_empty() && rest[0] != b'/' && !r.ends_with(b"/") {
        return None;
    }
    let start = rest.iter().position(|&b| b != b'/').unwrap_or(rest.len());
    Some(Path::new(OsStr::from_bytes(&rest[start..])))
}

/// `path`'s directory and last name, split at its last `/` without parsing components;
/// `None` for what only [`Path::parent`] and [`Path::file_name`] know how to take apart
/// (a trailing `/`, `.`, `..`).
fn split_name(path: &Path) -> Option<(&Path, &OsStr)> {
    let b = path.as_os_str().as_bytes();
    let (dir, name) = match b.iter().rposition(|&c| c == b'/') {
        Some(0) => (&b[..1], &b[1..]),
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (&b[..0], b),
    };
    if name.is_empty() || name == b"." || name == b".." {
        return None;
    }
    Some((Path::new(OsStr::from_bytes(dir)), OsStr::from_bytes(name)))
}

/// An open directory to make `*at` calls relative to.
pub(super) enum Dir {
    /// The current directory (a relative path with no directory part).
    Cwd,
    Owned(OwnedFd),
    /// A directory lately resolved below an anchor.
    Recent(Arc<OwnedFd>),
    /// An anchored root itself.
    Root(Arc<Anchor>),
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Dir::Cwd => AT_FDCWD,
            Dir::Owned(fd) => fd.as_fd(),
            Dir::Recent(fd) => fd.as_fd(),
            Dir::Root(a) => a.fd.as_fd(),
        }
    }
}

/// Open the directory `dir` (`O_PATH` unless `flags` say otherwise). Under an anchored
/// root no link is followed and nothing outside the root is reached; a planted link or a
/// file where a directory belongs is an [`Error::Refused`] naming it.
pub(super) fn open_dir(dir: &Path, flags: OFlag, op: &'static str) -> Result<Dir> {
    let flags = flags | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let path_only = flags.contains(OFlag::O_PATH);
    if let Some((a, rel)) = anchored(dir) {
        if rel.as_os_str().is_empty() && path_only {
            return Ok(Dir::Root(a));
        }
        if path_only {
            let now = Instant::now();
            if let Some(fd) = a.lookup(rel, now) {
                return Ok(Dir::Recent(fd));
            }
            let fd = beneath(&a, rel, flags).map_err(|e| failed(&a, rel, dir, op, e))?;
            let fd = Arc::new(fd);
            a.keep(rel, Arc::clone(&fd), now);
            return Ok(Dir::Recent(fd));
        }
        return beneath(&a, rel, flags)
            .map(Dir::Owned)
            .map_err(|e| failed(&a, rel, dir, op, e));
    }
    if dir.as_os_str().is_empty() {
        if path_only {
            return Ok(Dir::Cwd);
        }
        return open_in(AT_FDCWD, Path::new("."), flags, dir, op);
    }
    open_in(AT_FDCWD, dir, flags, dir, op)
}

fn open_in(at: BorrowedFd, p: &Path, flags: OFlag, shown: &Path, op: &'static str) -> Result<Dir> {
    nix::fcntl::openat(at, p, flags, Mode::empty())
        .map(Dir::Owned)
        .map_err(|e| Error::io(shown, op, e.into()))
}

/// The directory holding `path`, opened as `O_PATH`, and `path`'s last component.
pub(super) fn parent<'p>(path: &'p Path, op: &'static str) -> Result<(Dir, &'p OsStr)> {
    if let Some((dir, name)) = split_name(path) {
        return Ok((open_dir(dir, OFlag::O_PATH, op)?, name));
    }
    let name = path.file_name().ok_or_else(|| {
        Error::io(
            path,
            op,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name"),
        )
    })?;
    let dir = path.parent().unwrap_or(Path::new(""));
    Ok((open_dir(dir, OFlag::O_PATH, op)?, name))
}

/// Open `rel` below an anchor: openat2 where the kernel has it, else a component walk.
fn beneath(a: &Anchor, rel: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    if rel.as_os_str().is_empty() {
        return nix::fcntl::openat(&a.fd, ".", flags, Mode::empty());
    }
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        use nix::fcntl::{OpenHow, ResolveFlag};
        let how = OpenHow::new()
            .flags(flags)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
        // EAGAIN: a rename elsewhere raced the lookup; the kernel asks for a retry.
        for _ in 0..3 {
            match nix::fcntl::openat2(&a.fd, rel, how) {
                Err(Errno::EAGAIN) => continue,
                Err(Errno::ENOSYS | Errno::EPERM) => {
                    NO_OPENAT2.store(true, Ordering::Relaxed);
                    break;
                }
                r => return r,
            }
        }
    }
    walk(a.fd.as_fd(), rel, flags)
}

/// Open `rel` below `root` one component at a time, each with `O_NOFOLLOW` (a link is
/// never followed: `O_DIRECTORY|O_NOFOLLOW` on one fails) and each relative to the
/// descriptor of the one before (a component swapped meanwhile cannot redirect us).
/// Only plain names: `..` or an absolute path is refused with `EXDEV`, as openat2 does.
pub(super) fn walk(root: BorrowedFd, rel: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    let mut names = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => names.push(n),
            Component::CurDir => {}
            _ => return Err(Errno::EXDEV),
        }
    }
    let Some((last, dirs)) = names.split_last() else {
        return nix::fcntl::openat(root, ".", flags, Mode::empty());
    };
    let step = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut cur: Option<OwnedFd> = None;
    for n in dirs {
        let at = cur.as_ref().map_or(root, |f| f.as_fd());
        cur = Some(nix::fcntl::openat(at, *n, step, Mode::empty())?);
    }
    let at = cur.as_ref().map_or(root, |f| f.as_fd());
    nix::fcntl::openat(at, *last, flags | OFlag::O_NOFOLLOW, Mode::empty())
}

/// The error for a failed resolution below an anchor: a planted link or a file of the
/// wrong type is named; anything else is an I/O error on the path asked for.
fn failed(a: &Anchor, rel: &Path, shown: &Path, op: &'static str, e: Errno) -> Error {
    match e {
        Errno::ELOOP | Errno::EXDEV | Errno::ENOTDIR => {
            diagnose(a, rel).unwrap_or_else(|| Error::io(shown, op, e.into()))
        }
        e => Error::io(shown, op, e.into()),
    }
}

/// Find the first component of `rel` that is not a real directory. Only after a failure:
/// the error must say which path to look at, not just that one of them is wrong.
fn diagnose(a: &Anchor, rel: &Path) -> Option<Error> {
    let mut sub = PathBuf::new();
    for c in rel.components() {
        let Component::Normal(n) = c else {
            return Some(Error::Refused {
                path: a.root.join(rel),
                what: "leads outside the session".into(),
            });
        };
        sub.push(n);
        let st = nix::sys::stat::fstatat(&a.fd, &sub, AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        if kind != SFlag::S_IFDIR {
            return Some(refused_by_kind(&a.root.join(&sub), Some(kind)));
        }
    }
    None
}

/// What to call a file of type `kind` in a message.
fn kind_name(kind: SFlag) -> &'static str {
    match kind {
        SFlag::S_IFLNK => "a symbolic link",
        SFlag::S_IFREG => "a regular file",
        SFlag::S_IFDIR => "a directory",
        SFlag::S_IFIFO => "a FIFO",
        SFlag::S_IFSOCK => "a socket",
        SFlag::S_IFCHR => "a character device",
        SFlag::S_IFBLK => "a block device",
        _ => "a special file",
    }
}

/// A directory's place taken by something else (`None`: a link, as `O_NOFOLLOW` says).
fn refused_by_kind(path: &Path, kind: Option<SFlag>) -> Error {
    let what = match kind {
        None | Some(SFlag::S_IFLNK) => "is a symbolic link".to_string(),
        Some(k) => format!("is {} where a directory belongs", kind_name(k)),
    };
    Error::Refused {
        path: path.to_path_buf(),
        what,
    }
}

/// Open the file `name` in `dir` with `flags` (never through a link, never blocking on a
/// FIFO) and check that it is a regular file: a link, a directory or a FIFO planted where
/// one of maestro's files belongs is refused by name.
pub(super) fn open_file(
    dir: &Dir,
    name: &OsStr,
    path: &Path,
    flags: OFlag,
    op: &'static str,
) -> Result<std::fs::File> {
    let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
    let fd = match nix::fcntl::openat(dir, name, flags, Mode::from_bits_truncate(0o600)) {
        Ok(fd) => fd,
        Err(e @ (Errno::ELOOP | Errno::EISDIR | Errno::ENXIO | Errno::ENOTDIR)) => {
            return Err(
                wrong_file(dir, name, path).unwrap_or_else(|| Error::io(path, op, e.into()))
            );
        }
        Err(e) => return Err(Error::io(path, op, e.into())),
    };
    let file = std::fs::File::from(fd);
    let meta = file.metadata().map_err(|e| Error::io(path, op, e))?;
    if !meta.file_type().is_file() {
        let kind = SFlag::from_bits_truncate(meta.mode()) & SFlag::S_IFMT;
        return Err(not_a_file(path, kind));
    }
    Ok(file)
}

/// Why `name` in `dir` could not be opened as a regular file, if it is not one.
fn wrong_file(dir: &Dir, name: &OsStr, path: &Path) -> Option<Error> {
    let st = nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    (kind != SFlag::S_IFREG).then(|| not_a_file(path, kind))
}

fn not_a_file(path: &Path, kind: SFlag) -> Error {
    let what = match kind {
        SFlag::S_IFLNK => "is a symbolic link".to_string(),
        k => format!("is {} where a regular file belongs", kind_name(k)),
    };
    Error::Refused {
        path: path.to_path_buf(),
        what,
    }
}

/// Whether `name` in `dir` is a real directory (not a link to one).
pub(super) fn is_real_dir(dir: &Dir, name: &OsStr) -> bool {
    nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
        .unwrap_or(false)
}

/// The error for a name that exists but is not the directory it should be.
pub(super) fn not_a_dir(dir: &Dir, name: &OsStr, path: &Path) -> Error {
    let kind = nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .ok()
        .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT);
    refused_by_kind(path, kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn root_fd(p: &Path) -> OwnedFd {
        nix::fcntl::open(p, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()).unwrap()
    }

    // The fallback for kernels without openat2 must refuse what openat2 refuses.
    #[test]
    fn walk_refuses_links_and_parents_and_opens_real_paths() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        symlink(outside.path(), d.path().join("a/link")).unwrap();
        std::fs::write(d.path().join("a/file"), b"x").unwrap();
        let root = root_fd(d.path());
        let dir = OFlag::O_PATH | OFlag::O_DIRECTORY;
        assert!(walk(root.as_fd(), Path::new("a/b"), dir).is_ok());
        assert!(walk(root.as_fd(), Path::new(""), dir).is_ok());
        assert!(walk(root.as_fd(), Path::new("a/link"), dir).is_err());
        assert!(walk(root.as_fd(), Path::new("a/link/x"), dir).is_err());
        assert_eq!(
            walk(root.as_fd(), Path::new("a/file"), dir).unwrap_err(),
            Errno::ENOTDIR
        );
        assert_eq!(
            walk(root.as_fd(), Path::new("a/../../x"), dir).unwrap_err(),
            Errno::EXDEV
        );
        assert_eq!(
            walk(root.as_fd(), Path::new("a/missing"), dir).unwrap_err(),
            Errno::ENOENT
        );
    }

    #[test]
    fn paths_are_split_as_path_would_split_them() {
        for p in ["/a/b", "/b", "b", "a/b/c", "a//b", "/a/b.json", "/"] {
            let p = Path::new(p);
            let expected = p
                .file_name()
                .map(|n| (p.parent().unwrap_or(Path::new("")), n));
            let got = split_name(p);
            assert_eq!(got.map(|g| g.1), expected.map(|e| e.1), "{}", p.display());
            if let (Some((d, _)), Some((e, _))) = (got, expected) {
                assert_eq!(
                    d.components().collect::<Vec<_>>(),
                    e.components().collect::<Vec<_>>()
                );
            }
        }
        for p in ["/a/b/", "/a/.", "a/..", "", "."] {
            assert_eq!(split_name(Path::new(p)), None, "{p}");
        }
    }

    #[test]
    fn below_takes_whole_components_only() {
        let root = Path::new("/s/one");
        assert_eq!(
            below(Path::new("/s/one/tasks/t1"), root),
            Some(Path::new("tasks/t1"))
        );
        assert_eq!(
            below(Path::new("/s/one//tasks"), root),
            Some(Path::new("tasks"))
        );
        assert_eq!(below(Path::new("/s/one"), root), Some(Path::new("")));
        assert_eq!(below(Path::new("/s/one2/tasks"), root), None);
        assert_eq!(below(Path::new("/s/on"), root), None);
        assert_eq!(below(Path::new("/x"), Path::new("/")), Some(Path::new("x")));
    }

    // A kept directory is used again only while fresh, and a directory removed and made
    // again at its path is found anew when something done in the old one fails.
    #[test]
    fn a_directory_made_again_is_found_anew() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        std::fs::create_dir_all(root.join("tasks/t1")).unwrap();
        anchor(&root).unwrap();
        crate::fsio::create_dir_private(&root.join("tasks/t1/attempt-1")).unwrap();
        std::fs::remove_dir_all(root.join("tasks")).unwrap();
        std::fs::create_dir_all(root.join("tasks/t1")).unwrap();
        crate::fsio::create_dir_private(&root.join("tasks/t1/attempt-2")).unwrap();
        assert!(root.join("tasks/t1/attempt-2").is_dir());
    }

    // Making a directory made its missing parents, and that went up to a removed
    // session's root and made it again, empty: the orchestrator then did not see its
    // session removed.
    #[test]
    fn a_removed_root_is_not_made_again_by_a_directory_below_it() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap().join("s");
        std::fs::create_dir(&root).unwrap();
        anchor(&root).unwrap();
        std::fs::remove_dir(&root).unwrap();
        let err = crate::fsio::create_dir_private(&root.join("workers/w2")).unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert!(!root.exists(), "the removed root was made again");
    }

    #[test]
    fn an_anchored_root_names_the_planted_component() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.join("tasks")).unwrap();
        symlink(outside.path(), root.join("tasks/t1")).unwrap();
        anchor(&root).unwrap();
        let target = root.join("tasks/t1/attempt-1");
        let err = open_dir(&target, OFlag::O_PATH, "open").err().unwrap();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: is a symbolic link; maestro never follows links or opens special files \
                 inside a session (move it away, then try again)",
                root.join("tasks/t1").display()
            )
        );
        std::fs::remove_file(root.join("tasks/t1")).unwrap();
        std::fs::write(root.join("tasks/t1"), b"").unwrap();
        let err = open_dir(&target, OFlag::O_PATH, "open").err().unwrap();
        assert!(
            err.to_string()
                .contains("tasks/t1: is a regular file where a directory belongs"),
            "{err}"
        );
    }
}
