//! Per-attempt cgroups (cgroup v2): where a worker may make them, one per attempt (with
//! the task's `memory` as `memory.max`), moving the task in, signalling and killing
//! everything in it at once (`cgroup.kill` reaches what left the attempt's process group,
//! e.g. through `setsid`), noticing the kernel's OOM kills, reading `memory.current`, and
//! removing the cgroups again. Where cgroup v2 cannot be used (v1-only hosts, nothing
//! delegated to us, Linux < 5.14 without `cgroup.kill`, `MAESTRO_CGROUP=off`) the worker
//! goes on with process groups and PSS (src/usage.rs), and says why once.
//!
//! Layout: `BASE/maestro-<session>-<worker>-<pid>/attempt-<n>-<task>`. BASE is
//! `$MAESTRO_CGROUP` or, detected, the worker's own cgroup (only when we may write it).
//! The per-worker directory is a child, not the worker's own cgroup, because of cgroup
//! v2's "no internal processes" rule: a cgroup that enables controllers for its children
//! (here `memory`, when BASE offers it) must hold no process itself, and the worker then
//! never has to move. Each attempt is a leaf below it.
//!
//! Writes here go straight to the cgroup files, not through `fsio`'s temp-and-rename
//! helper: cgroupfs takes a value only as a write to the file itself. Every path comes in
//! as a parameter (the contents of mountinfo and `/proc/self/cgroup`, the base) so that
//! tests run on fake trees in a temporary directory.

use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The variable that forces (`MAESTRO_CGROUP=/sys/fs/cgroup/some/delegated/dir`) or
/// disables (`MAESTRO_CGROUP=off`) per-attempt cgroups; unset or `auto` detects.
pub const ENV: &str = "MAESTRO_CGROUP";

/// How long removing a cgroup waits for its killed processes to be gone.
const REMOVE_WAIT: Duration = Duration::from_secs(2);

/// What `$MAESTRO_CGROUP` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    /// Use the worker's own cgroup where that is safe.
    Auto,
    Off,
    /// A delegated cgroup v2 directory to make the worker's cgroups in.
    Dir(PathBuf),
}

impl Setting {
    pub fn parse(value: Option<&str>) -> Result<Setting, String> {
        match value.map(str::trim) {
            None | Some("") | Some("auto") => Ok(Setting::Auto),
            Some("off") => Ok(Setting::Off),
            Some(p) if p.starts_with('/') => Ok(Setting::Dir(PathBuf::from(p))),
            Some(other) => Err(format!(
                "{ENV}={other:?}: expected off, auto or an absolute cgroup v2 directory"
            )),
        }
    }

    pub fn from_env() -> Result<Setting, String> {
        match std::env::var(ENV) {
            Ok(v) => Setting::parse(Some(&v)),
            Err(std::env::VarError::NotPresent) => Ok(Setting::Auto),
            Err(std::env::VarError::NotUnicode(_)) => Err(format!("{ENV} is not UTF-8")),
        }
    }
}

/// A cgroup2 mount: the cgroup path it shows (`root`, field 4 of mountinfo) and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub root: String,
    pub point: PathBuf,
}

/// The cgroup2 mounts in `/proc/self/mountinfo`'s text.
pub fn cgroup2_mounts(mountinfo: &str) -> Vec<Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            // ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
            let f: Vec<&str> = line.split(' ').collect();
            let dash = f.iter().position(|x| *x == "-")?;
            (f.get(dash + 1) == Some(&"cgroup2") && dash >= 6).then(|| Mount {
                root: unescape(f[3]),
                point: PathBuf::from(unescape(f[4])),
            })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\NNN` (octal).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match oct {
            Some(d) if b[i] == b'\\' => {
                out.push(d.iter().fold(0u8, |n, c| n.wrapping_mul(8) + (c - b'0')));
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Our cgroup v2 path from `/proc/self/cgroup`'s text (the `0::/path` line).
pub fn own_cgroup(proc_cgroup: &str) -> Option<String> {
    let path = proc_cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    // A removed cgroup reads "/path (deleted)"; one outside our cgroup namespace, "/..".
    (path.starts_with('/') && !path.ends_with(" (deleted)")).then(|| path.to_string())
}

/// The directory of cgroup `own` under one of `mounts` (the one showing the most of it).
pub fn own_dir(mounts: &[Mount], own: &str) -> Option<PathBuf> {
    let rel = |m: &Mount| -> Option<String> {
        let root = m.root.trim_end_matches('/');
        let rest = own.strip_prefix(root)?;
        (rest.is_empty() || rest.starts_with('/')).then(|| rest.trim_matches('/').to_string())
    };
    let (m, rel) = mounts
        .iter()
        .filter_map(|m| Some((m, rel(m)?)))
        .max_by_key(|(m, _)| m.root.len())?;
    let rel = Path::new(&rel);
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    // Joining "" would add a trailing slash to what the worker's console shows.
    Some(if rel.as_os_str().is_empty() {
        m.point.clone()
    } else {
        m.point.join(rel)
    })
}

/// Where this worker may make its cgroups, or why nowhere. `mountinfo` and `proc_cgroup`
/// are the texts of `/proc/self/mountinfo` and `/proc/self/cgroup`.
pub fn base_dir(setting: &Setting, mountinfo: &str, proc_cgroup: &str) -> Result<PathBuf, String> {
    let dir = match setting {
        Setting::Off => return Err(format!("{ENV}=off")),
        Setting::Dir(d) => d.clone(),
        Setting::Auto => {
            let mounts = cgroup2_mounts(mountinfo);
            if mounts.is_empty() {
                return Err("no cgroup v2 hierarchy is mounted".into());
            }
            let own = own_cgroup(proc_cgroup)
                .ok_or("this process is in no cgroup v2 (no 0:: line in /proc/self/cgroup)")?;
            own_dir(&mounts, &own)
                .ok_or_else(|| format!("our cgroup {own} is not under a cgroup2 mount"))?
        }
    };
    if !dir.join("cgroup.controllers").is_file() {
        return Err(format!(
            "{}: not a cgroup v2 directory (no cgroup.controllers)",
            dir.display()
        ));
    }
    // Auto-detection stops here unless the cgroup is ours to write (delegated, or we are
    // root): then making a child of it is allowed and moves nobody else's processes.
    if nix::unistd::access(&dir, nix::unistd::AccessFlags::W_OK).is_err() {
        return Err(format!(
            "{}: not writable (this cgroup is not delegated to us)",
            dir.display()
        ));
    }
    Ok(dir)
}

/// The per-worker directory's name. Session and worker ids are names (`[A-Za-z0-9._-]`,
/// at most 64 bytes each), so it stays well under the 255 bytes a name may have.
pub fn tree_name(session: &str, worker: &str, pid: u32) -> String {
    format!("maestro-{session}-{worker}-{pid}")
}

/// A leaf's name: `attempt-<n>-<task>` (`task` may be an auxiliary command's
/// `OWNER+KIND`).
pub fn leaf_name(task: &str, attempt: u32) -> String {
    format!("attempt-{attempt}-{task}")
}

/// Whether a `cgroup.controllers` (or `cgroup.subtree_control`) text lists `name`.
pub fn lists(controllers: &str, name: &str) -> bool {
    controllers.split_whitespace().any(|c| c == name)
}

/// The `oom_kill` count of a `memory.events` text.
pub fn oom_kills_in(events: &str) -> u64 {
    events
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Write `value` to cgroup file `path`, which must exist (cgroupfs makes them; creating
/// one would only hide that this is no cgroup). Truncating, as `echo 1 > cgroup.kill`
/// does: cgroupfs ignores it, and a fake tree's files then read as the kernel's would.
fn put(path: &Path, value: &str) -> Result<(), String> {
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The processes in cgroup `dir` (its `cgroup.procs`).
pub fn procs(dir: &Path) -> Vec<u32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// `memory.current` of cgroup `dir`, where its memory controller is enabled.
pub fn memory_current(dir: &Path) -> Option<u64> {
    std::fs::read_to_string(dir.join("memory.current"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Kill everything in cgroup `dir` and below, then remove it with the cgroups below it
/// (an attempt may run a maestro of its own, whose workers make theirs in it), waiting a
/// little for the killed processes to be gone: rmdir fails with EBUSY while any is alive.
/// A cgroup already gone is fine.
fn kill_and_remove(dir: &Path) -> Result<(), String> {
    if !dir.exists() {
        return Ok(());
    }
    let _ = put(&dir.join("cgroup.kill"), "1");
    remove_below(dir, Instant::now() + REMOVE_WAIT)
}

fn remove_below(dir: &Path, deadline: Instant) -> Result<(), String> {
    let mut first_err = None;
    for child in children(dir) {
        if let Err(e) = remove_below(&child, deadline) {
            first_err.get_or_insert(e);
        }
    }
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e) if e.raw_os_error() == Some(EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => {
                first_err.get_or_insert(format!("cannot remove cgroup {}: {e}", dir.display()));
                break;
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}

const EBUSY: i32 = nix::errno::Errno::EBUSY as i32;

/// Subdirectories of `dir` (a cgroup's children).
fn children(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// The worker's own directory of cgroups, removed (with whatever leaf is left) on drop.
#[derive(Debug)]
pub struct Tree {
    dir: PathBuf,
    /// Its children have the memory controller: `memory.max` and `memory.current`.
    memory: bool,
    /// Every attempt gets a cgroup (`$MAESTRO_CGROUP` names a directory), not only those
    /// with a memory limit (found by `auto`): moving a process into a cgroup costs the
    /// kernel 0.3 ms median and up to 15 ms here, which a session of many short tasks
    /// would pay for a tree-wide kill it rarely needs.
    every_attempt: bool,
}

impl Tree {
    /// Make `name` under `base` (see [`base_dir`]) and check it, or say why not. Empty
    /// directories of earlier workers that died (the pid in their name is gone) are
    /// removed first, so killed workers do not leave them piling up.
    pub fn create(base: &Path, name: &str) -> Result<Tree, String> {
        sweep_stale(base);
        let dir = base.join(name);
        let mut made = std::fs::create_dir(&dir);
        if made
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::AlreadyExists)
        {
            // Our own name (pid included): left by an earlier worker that had our pid.
            let _ = kill_and_remove(&dir);
            made = std::fs::create_dir(&dir);
        }
        if let Err(e) = made {
            return Err(format!("cannot make cgroup {}: {e}", dir.display()));
        }
        Tree::open(dir.clone()).inspect_err(|_| {
            let _ = std::fs::remove_dir(&dir);
        })
    }

    /// Check a freshly made directory and enable `memory` for its children where its
    /// parent offers it (our directory holds no process, so it may).
    fn open(dir: PathBuf) -> Result<Tree, String> {
        if !dir.join("cgroup.kill").is_file() {
            return Err(format!(
                "{}: no cgroup.kill (Linux 5.14 or later is needed)",
                dir.display()
            ));
        }
        let offered = std::fs::read_to_string(dir.join("cgroup.controllers"))
            .map_err(|e| format!("{}: {e}", dir.join("cgroup.controllers").display()))?;
        let memory = lists(&offered, "memory")
            && put(&dir.join("cgroup.subtree_control"), "+memory").is_ok();
        Ok(Tree {
            dir,
            memory,
            every_attempt: false,
        })
    }

    /// Whether an attempt with this memory limit gets a cgroup of its own.
    pub fn wanted(&self, memory_limit: Option<u64>) -> bool {
        self.every_attempt || memory_limit.is_some()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether attempts get `memory.max` and `memory.current`.
    pub fn memory(&self) -> bool {
        self.memory
    }

    /// A line for the worker's console.
    pub fn describe(&self) -> String {
        format!(
            "{} run in cgroups under {} ({})",
            if self.every_attempt {
                "attempts"
            } else {
                "attempts of tasks with a memory limit"
            },
            self.dir.display(),
            if self.memory {
                "memory.max enforces tasks' memory"
            } else {
                "no memory controller delegated: memory is measured by PSS"
            }
        )
    }

    /// Make attempt `attempt` of `task`'s leaf, with `memory.max` when `memory_limit` is
    /// set and the controller is there. A leftover of the same name is emptied first.
    pub fn attempt(
        &self,
        task: &str,
        attempt: u32,
        memory_limit: Option<u64>,
    ) -> Result<Leaf, String> {
        let dir = self.dir.join(leaf_name(task, attempt));
        kill_and_remove(&dir)?;
        std::fs::create_dir(&dir)
            .map_err(|e| format!("cannot make cgroup {}: {e}", dir.display()))?;
        Leaf::prepare(dir.clone(), self.memory, memory_limit).inspect_err(|_| {
            let _ = kill_and_remove(&dir);
        })
    }

    /// Kill what is left in it and remove it with its leaves.
    pub fn remove(mut self) -> Result<(), String> {
        // Taken, so that drop has nothing left to do.
        kill_and_remove(&std::mem::take(&mut self.dir))
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        if !self.dir.as_os_str().is_empty() {
            let _ = kill_and_remove(&self.dir);
        }
    }
}

/// Remove the empty directories that workers which died left in `base`: named by
/// [`tree_name`], whose pid is no longer alive. Only empty cgroups can be removed, so a
/// leftover process keeps its cgroup (and nothing is killed here).
fn sweep_stale(base: &Path) {
    for dir in children(base) {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let Some(pid) = name
            .strip_prefix("maestro-")
            .and_then(|r| r.rsplit('-').next())
            .and_then(|p| p.parse::<i32>().ok())
            .filter(|&p| p > 0)
        else {
            continue;
        };
        if kill(Pid::from_raw(pid), None) != Err(nix::errno::Errno::ESRCH) {
            continue;
        }
        for leaf in children(&dir) {
            let _ = std::fs::remove_dir(leaf);
        }
        let _ = std::fs::remove_dir(&dir);
    }
}

/// One attempt's cgroup. Killed and removed on drop if [`Leaf::remove`] was not called.
#[derive(Debug)]
pub struct Leaf {
    dir: PathBuf,
    /// `memory.max` is set: the kernel enforces the task's memory.
    memory_max: bool,
}

impl Leaf {
    /// Set a new leaf's limits. `memory.swap.max = 0` keeps the limit from being dodged
    /// by swapping, and `memory.oom.group` makes the kernel's OOM kill take the whole
    /// attempt, as the worker's own stop would; both are optional (older kernels).
    fn prepare(dir: PathBuf, memory: bool, memory_limit: Option<u64>) -> Result<Leaf, String> {
        let mut leaf = Leaf {
            dir,
            memory_max: false,
        };
        if let (true, Some(limit)) = (memory, memory_limit) {
            put(&leaf.dir.join("memory.max"), &limit.to_string())?;
            let _ = put(&leaf.dir.join("memory.swap.max"), "0");
            let _ = put(&leaf.dir.join("memory.oom.group"), "1");
            leaf.memory_max = true;
        }
        Ok(leaf)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the kernel holds the attempt to its memory (so the worker need not).
    pub fn enforces_memory(&self) -> bool {
        self.memory_max
    }

    /// Move process `pid` (the task's main process, just spawned) in. What it forked
    /// before stays outside, but in its process group, which is signalled as well.
    pub fn adopt(&self, pid: u32) -> Result<(), String> {
        put(&self.dir.join("cgroup.procs"), &pid.to_string())
    }

    /// Send `sig` to every process in the cgroup that is not in process group `pgid`
    /// (those get it from `killpg`, and a second SIGTERM can mean "hurry" to a task).
    pub fn signal_others(&self, sig: Signal, pgid: Pid) {
        for pid in procs(&self.dir) {
            let pid = Pid::from_raw(pid as i32);
            if nix::unistd::getpgid(Some(pid)).is_ok_and(|g| g != pgid) {
                let _ = kill(pid, sig);
            }
        }
    }

    /// SIGKILL everything in it at once, wherever it went in the process tree.
    pub fn kill(&self) -> Result<(), String> {
        put(&self.dir.join("cgroup.kill"), "1")
    }

    /// How many processes the kernel's OOM killer took here (over `memory.max`; none
    /// without it, and then `memory.events` is not read on every exit).
    pub fn oom_kills(&self) -> u64 {
        if !self.memory_max {
            return 0;
        }
        std::fs::read_to_string(self.dir.join("memory.events"))
            .map(|t| oom_kills_in(&t))
            .unwrap_or(0)
    }

    /// Kill what is left and remove the directory.
    pub fn remove(mut self) -> Result<(), String> {
        kill_and_remove(&std::mem::take(&mut self.dir))
    }
}

impl Drop for Leaf {
    fn drop(&mut self) {
        if !self.dir.as_os_str().is_empty() {
            let _ = kill_and_remove(&self.dir);
        }
    }
}

/// The worker's cgroups as `$MAESTRO_CGROUP` and this host allow: a [`Tree`] named for
/// `session`, `worker` and our pid, or why there is none.
pub fn for_worker(session: &str, worker: &str) -> Result<Tree, String> {
    let setting = Setting::from_env()?;
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let base = base_dir(
        &setting,
        &read("/proc/self/mountinfo"),
        &read("/proc/self/cgroup"),
    )?;
    let mut tree = Tree::create(&base, &tree_name(session, worker, std::process::id()))?;
    tree.every_attempt = matches!(setting, Setting::Dir(_));
    Ok(tree)
}

#[cfg(test)]
mod tests;
