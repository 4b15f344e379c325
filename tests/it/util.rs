//! Test helpers: a sandbox directory per test, commands for the real binaries with the
//! sandbox's environment, polling with deadlines (never fixed sleeps), and a guard that
//! kills everything a test started, even when it panics, wherever its sessions are.

#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const ORCH: &str = env!("CARGO_BIN_EXE_orchestrator");
pub const WORKER: &str = env!("CARGO_BIN_EXE_worker");

/// A temporary directory with a `sessions/` root; kills what it started on drop, then
/// unmounts what it mounted, then the directory goes.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    children: Vec<Child>,
    tmux_sockets: Vec<String>,
    mounts: Vec<PathBuf>,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().expect("tempdir"),
            children: Vec::new(),
            tmux_sockets: Vec::new(),
            mounts: Vec::new(),
        }
    }

    /// A tmpfs of `size` (mount's `size=`, e.g. `200k`) mounted at `name` in the sandbox,
    /// or `None` where the host refuses (mounting needs root; CI runs as root). Unmounted
    /// when the sandbox drops, once everything running there is killed.
    pub fn tmpfs(&mut self, name: &str, size: &str) -> Option<PathBuf> {
        let mnt = self.path().join(name);
        fs::create_dir_all(&mnt).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mnt)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return None;
        }
        self.mounts.push(mnt.clone());
        Some(mnt)
    }

    /// Unmount `mnt`, a [`Sandbox::tmpfs`], lazily (`umount -l`): what still runs there
    /// keeps it, unreachable by any path.
    pub fn unmount(&mut self, mnt: &Path) {
        let st = Command::new("umount").arg("-l").arg(mnt).status().unwrap();
        assert!(st.success(), "umount -l {}", mnt.display());
        self.mounts.retain(|m| m != mnt);
    }

    /// `worker ARGS` run by hand (as a person starts one), with the sandbox's environment.
    pub fn worker(&self) -> Command {
        let mut c = Command::new(WORKER);
        c.current_dir(self.path())
            .env("OUT", self.out())
            .env_remove("TMUX")
            .env_remove("MAESTRO_SESSION")
            .stdin(Stdio::null());
        if std::env::var_os("MAESTRO_CGROUP").is_none() {
            c.env("MAESTRO_CGROUP", "off");
        }
        c
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn sessions(&self) -> PathBuf {
        self.path().join("sessions")
    }

    /// A directory tasks can write their records into.
    pub fn out(&self) -> PathBuf {
        let p = self.path().join("out");
        fs::create_dir_all(&p).unwrap();
        p
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        fs::write(&p, text).unwrap();
        p
    }

    /// `orchestrator ARGS` run in the sandbox with its environment.
    pub fn orch(&self) -> Command {
        let mut c = Command::new(ORCH);
        c.current_dir(self.path())
            .env("MAESTRO_SESSIONS", self.sessions())
            .env("OUT", self.out())
            .env_remove("TMUX")
            .env_remove("MAESTRO_SESSION")
            .stdin(Stdio::null());
        // Per-attempt cgroups only where the run asks for them (`MAESTRO_CGROUP=DIR cargo
        // test`) or a test sets them (tests/it/cgroup.rs): a test that kills a worker
        // would leave that worker's cgroup directory behind on hosts where they are used.
        if std::env::var_os("MAESTRO_CGROUP").is_none() {
            c.env("MAESTRO_CGROUP", "off");
        }
        c
    }

    /// Run `orchestrator ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut c = self.orch();
        c.args(args);
        run_with_deadline(c, Duration::from_secs(120))
    }

    /// `orchestrator resume SESSION -q --launcher background`, to completion.
    pub fn resume(&self, session: &Path) -> Output {
        self.run(&[
            "resume",
            session.to_str().unwrap(),
            "-q",
            "--launcher",
            "background",
        ])
    }

    /// Write `text` as plan `file` and run it to completion with background workers and
    /// the `extra` flags of `orchestrator run`.
    pub fn run_plan(&self, file: &str, text: &str, extra: &[&str]) -> Output {
        let p = self.write(file, text);
        let mut args = vec!["run", p.to_str().unwrap(), "--launcher", "background"];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// Write `text` as plan `file`, run it to completion with background workers, check
    /// that it succeeded, and return its session directory.
    pub fn run_ok(&self, file: &str, text: &str) -> PathBuf {
        let o = self.run_plan(file, text, &["-q"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        session_of(&o)
    }

    /// Write `text` as plan `file` and start it in the background (see [`Sandbox::start`])
    /// with background workers and the `extra` flags of `orchestrator run`.
    pub fn start_plan(&mut self, file: &str, text: &str, extra: &[&str]) -> PathBuf {
        let p = self.write(file, text);
        let mut args = vec!["run", p.to_str().unwrap(), "--launcher", "background"];
        args.extend_from_slice(extra);
        self.start(&args)
    }

    /// Start `orchestrator run ...` in the background; returns its session directory (the
    /// first line of its stdout).
    pub fn start(&mut self, args: &[&str]) -> PathBuf {
        self.start_with(args, &[])
    }

    /// [`Sandbox::start`] with extra environment variables.
    pub fn start_with(&mut self, args: &[&str], envs: &[(&str, &str)]) -> PathBuf {
        let mut c = self.orch();
        c.args(args)
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(self.path().join("orchestrator.stderr")).unwrap());
        let mut child = c.spawn().expect("spawn orchestrator");
        let stdout = child.stdout.take().unwrap();
        self.children.push(child);
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "orchestrator printed no session path");
        PathBuf::from(line.trim_end())
    }

    /// Wait for the last started orchestrator to exit; returns its exit code.
    pub fn wait_last(&mut self, limit: Duration) -> i32 {
        let child = self.children.last_mut().expect("a started child");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "orchestrator did not finish in {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL the session's running orchestrator (the last one this sandbox started) and
    /// reap it.
    pub fn kill_orchestrator(&mut self, session: &Path) {
        signal(orchestrator_pid(session), "-KILL");
        let _ = self.wait_last(Duration::from_secs(30));
    }

    pub fn tmux_socket(&mut self) -> String {
        // Unique across concurrently running tests: a shared server would be killed by
        // whichever test finishes first.
        let dir = self
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let name = format!("maestro-test-{dir}-{}", self.tmux_sockets.len());
        self.tmux_sockets.push(name.clone());
        name
    }

    /// The only session under the sandbox's root.
    pub fn only_session(&self) -> PathBuf {
        let entries: Vec<_> = fs::read_dir(self.sessions())
            .expect("sessions dir")
            .filter_map(|e| e.ok())
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert_eq!(entries.len(), 1, "expected exactly one session");
        entries[0].path()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Workers run in their own process groups: kill every one a session recorded.
        // An orchestrator started in a tmux pane is no child of ours, and takes the
        // SIGHUP of its pane's end as it takes a closed terminal: kill it too (if the
        // recorded pid is still one of this sandbox's orchestrators).
        if let Ok(sessions) = fs::read_dir(self.sessions()) {
            for s in sessions.flatten() {
                kill_orchestrator_of(&s.path(), self.path());
                kill_workers(&s.path());
            }
        }
        for sock in &self.tmux_sockets {
            let _ = Command::new("tmux")
                .args(["-L", sock, "kill-server"])
                .stderr(Stdio::null())
                .status();
            // A killed server leaves its socket file behind: remove it too.
            let dir = std::env::var_os("TMUX_TMPDIR")
                .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from)
                .join(format!("tmux-{}", nix::unistd::getuid()));
            let _ = fs::remove_file(dir.join(sock));
        }
        // What the session files could not name: a worker whose `worker.json` a full disk
        // refused, sessions outside `sessions/` (a `--sessions-dir`, a project's own), a
        // session whose file system is unmounted.
        kill_everything_of(self.path());
        for mnt in &self.mounts {
            let _ = Command::new("umount").arg("-l").arg(mnt).status();
        }
    }
}

/// SIGKILL every process that names `dir` (or a path under it) in its command line or
/// its environment, or runs in it, until none is left (10 s at most): every orchestrator,
/// worker and task a test started there, whatever its session's files say (each gets
/// `OUT=<sandbox>/out`, a worker `--session <dir>`, a task `MAESTRO_SESSION`). Several
/// rounds: an orchestrator killed in the first may have started a worker meanwhile.
fn kill_everything_of(dir: &Path) {
    let mut names = vec![dir.to_string_lossy().into_owned()];
    if let Ok(real) = dir.canonicalize()
        && real != dir
    {
        names.push(real.to_string_lossy().into_owned());
    }
    // The directory itself or a path under it, in `\0`-separated text (`/tmp/.tmpAB` must
    // not match `/tmp/.tmpABC`). std's string search, not a byte-window scan: this reads
    // every process's environment, and the test binary is unoptimized where std is not.
    let names_it = |text: &[u8]| {
        let text = String::from_utf8_lossy(text);
        names.iter().any(|n| {
            text.match_indices(n.as_str())
                .any(|(i, _)| matches!(text.as_bytes().get(i + n.len()), None | Some(b'/' | 0)))
        })
    };
    let me = std::process::id();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut found = 0;
        for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if pid == me {
                continue;
            }
            let read = |f: &str| fs::read(e.path().join(f)).unwrap_or_default();
            let cwd = fs::read_link(e.path().join("cwd")).unwrap_or_default();
            let ours = names_it(&read("cmdline"))
                || names_it(&read("environ"))
                || names_it(cwd.as_os_str().as_encoded_bytes());
            // A zombie has no command line, environment or directory left: never ours.
            if ours {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                found += 1;
            }
        }
        if found == 0 || Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGKILL the orchestrator a session recorded, if that pid still runs our orchestrator
/// binary with a command line naming `sandbox` (a pid may have been reused).
fn kill_orchestrator_of(session: &Path, sandbox: &Path) {
    let Some(pid) =
        read_json(&session.join("orchestrator/info.json")).and_then(|v| v["pid"].as_u64())
    else {
        return;
    };
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    if cmdline.starts_with(ORCH) && cmdline.contains(sandbox.to_str().unwrap_or("/nowhere")) {
        unsafe_kill(&pid.to_string());
    }
}

/// What a tmux pane (`target`, on the private server `sock`) shows now.
pub fn capture(sock: &str, target: &str) -> String {
    let o = Command::new("tmux")
        .args(["-L", sock, "capture-pane", "-p", "-t", target])
        .output()
        .expect("tmux");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A shell (`sh -i`, prompt `$ `) in the only pane of a private tmux server, in the
/// sandbox's directory with its environment: what a person at a terminal has.
pub struct Pane {
    pub sock: String,
    target: String,
}

impl Sandbox {
    /// A [`Pane`] of `width` x `height` cells; the sandbox kills its server when dropped.
    pub fn pane(&mut self, width: u16, height: u16) -> Pane {
        let sock = self.tmux_socket();
        let env = self.write(
            "pane-env.sh",
            &format!(
                "export MAESTRO_SESSIONS='{}' OUT='{}' PS1='$ '\n\
                 [ -n \"$MAESTRO_CGROUP\" ] || export MAESTRO_CGROUP=off\n\
                 unset TMUX TMUX_PANE MAESTRO_SESSION NO_COLOR\n\
                 cd '{}'\n",
                self.sessions().display(),
                self.out().display(),
                self.path().display()
            ),
        );
        let shell = format!(". '{}'; exec sh -i", env.display());
        let st = Command::new("tmux")
            .args([
                "-L",
                &sock,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                "t",
            ])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .args(["sh", "-c", &shell])
            .env_remove("TMUX")
            .status()
            .expect("tmux");
        assert!(st.success(), "tmux new-session");
        let pane = Pane {
            sock,
            target: "t".into(),
        };
        // (capture-pane drops trailing spaces: the prompt reads `$`.)
        pane.wait_until(Duration::from_secs(10), "the prompt", |s| {
            s.lines().any(|l| l == "$")
        });
        pane
    }
}

impl Pane {
    /// What the pane shows now.
    pub fn capture(&self) -> String {
        capture(&self.sock, &self.target)
    }

    /// What the pane shows now and its scrollback above, oldest first: what a person
    /// scrolling back sees (the alternate screen leaves nothing there).
    pub fn history(&self) -> String {
        let o = Command::new("tmux")
            .args(["-L", &self.sock, "capture-pane", "-p", "-S", "-", "-t"])
            .arg(&self.target)
            .output()
            .expect("tmux");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Press keys (tmux key names: `Enter`, `Down`, `C-c`, or plain letters).
    pub fn keys(&self, keys: &[&str]) {
        let st = Command::new("tmux")
            .args(["-L", &self.sock, "send-keys", "-t", &self.target])
            .args(keys)
            .status()
            .expect("tmux");
        assert!(st.success(), "tmux send-keys {keys:?}");
    }

    /// Type `line` and Enter.
    pub fn line(&self, line: &str) {
        let st = Command::new("tmux")
            .args([
                "-L",
                &self.sock,
                "send-keys",
                "-t",
                &self.target,
                "-l",
                line,
            ])
            .status()
            .expect("tmux");
        assert!(st.success(), "tmux send-keys -l");
        self.keys(&["Enter"]);
    }

    /// Wait until the pane shows `text`; returns what it shows then.
    pub fn wait_for(&self, text: &str, limit: Duration) -> String {
        self.wait_until(limit, text, |screen| screen.contains(text))
    }

    /// Wait until `cond` holds of what the pane shows; returns it. Panics with the
    /// screen, and `what`, when `limit` passes.
    pub fn wait_until(&self, limit: Duration, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.capture();
            if cond(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what:?}; the pane shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// SIGKILL every worker of a session (and its task's process group).
pub fn kill_workers(session: &Path) {
    let Ok(workers) = fs::read_dir(session.join("workers")) else {
        return;
    };
    for w in workers.flatten() {
        if let Some(pid) = read_json(&w.path().join("worker.json")).and_then(|v| v["pid"].as_i64())
        {
            unsafe_kill(&pid.to_string());
        }
    }
    // A task whose worker was killed keeps running in its own group (a failed test must
    // not leave it looping for ever): kill every group that recorded no exit.
    for st in journal_lines(session, "started") {
        let (Some(task), Some(n), Some(pgid)) = (
            st["task"].as_str(),
            st["attempt"].as_u64(),
            st["pgid"].as_i64(),
        ) else {
            continue;
        };
        let exit = session.join(format!("tasks/{task}/attempt-{n}/exit.json"));
        if pgid > 1 && !exit.exists() {
            unsafe_kill(&format!("-{pgid}"));
        }
    }
}

/// Every line of kind `event` in the workers' journals (`workers/*/events.jsonl`).
pub fn journal_lines(session: &Path, event: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for w in fs::read_dir(session.join("workers"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(text) = fs::read_to_string(w.path().join("events.jsonl")) else {
            continue;
        };
        out.extend(
            text.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|v| v["event"] == event),
        );
    }
    out
}

/// The `started` line of `attempt` of `task`, once a worker journalled it.
pub fn started_line(session: &Path, task: &str, attempt: u32) -> Option<Value> {
    journal_lines(session, "started")
        .into_iter()
        .find(|v| v["task"] == task && v["attempt"] == attempt)
}

/// The worker that started `attempt` of `task`, once it has.
pub fn started_by(session: &Path, task: &str, attempt: u32) -> Option<String> {
    started_line(session, task, attempt).map(|v| v["worker"].as_str().unwrap().to_string())
}

/// Wait (30 s at most) for `attempt` of `task` to start; returns the worker that started it.
pub fn wait_started(session: &Path, task: &str, attempt: u32) -> String {
    let mut w = None;
    wait_until(
        Duration::from_secs(30),
        &format!("{task} attempt {attempt} to start"),
        || {
            w = started_by(session, task, attempt);
            w.is_some()
        },
    );
    w.unwrap()
}

/// The process group of `attempt` of `task`, from its `started` line.
pub fn pgid_of(session: &Path, task: &str, attempt: u32) -> i64 {
    started_line(session, task, attempt).unwrap()["pgid"]
        .as_i64()
        .unwrap()
}

/// The orchestrator's journal (`events.jsonl`), parsed; empty while there is none.
pub fn events(session: &Path) -> Vec<Value> {
    fs::read_to_string(session.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Whether the orchestrator journalled event `kind` for `attempt` of `task`.
pub fn has_event(session: &Path, kind: &str, task: &str, attempt: u64) -> bool {
    events(session)
        .iter()
        .any(|e| e["event"] == kind && e["task"] == task && e["attempt"] == attempt)
}

/// `tasks/<task>/outcome.json`, which must be there and readable.
pub fn outcome(session: &Path, task: &str) -> Value {
    read_json(&session.join(format!("tasks/{task}/outcome.json")))
        .unwrap_or_else(|| panic!("no readable tasks/{task}/outcome.json"))
}

/// A session's id: the name of its directory.
pub fn session_id(session: &Path) -> String {
    session.file_name().unwrap().to_str().unwrap().to_string()
}

/// The pid in worker `wid`'s `worker.json`.
pub fn worker_pid(session: &Path, wid: &str) -> u64 {
    read_json(&session.join("workers").join(wid).join("worker.json")).unwrap()["pid"]
        .as_u64()
        .unwrap()
}

/// Every worker pid a session recorded, by worker id.
pub fn worker_pids(session: &Path) -> Vec<(String, u64)> {
    let mut v = Vec::new();
    for w in fs::read_dir(session.join("workers")).unwrap().flatten() {
        let id = w.file_name().to_string_lossy().into_owned();
        if let Some(pid) = read_json(&w.path().join("worker.json")).and_then(|j| j["pid"].as_u64())
        {
            v.push((id, pid));
        }
    }
    v.sort();
    v
}

/// The pid in `orchestrator/info.json`: the session's last orchestrator.
pub fn orchestrator_pid(session: &Path) -> u64 {
    read_json(&session.join("orchestrator/info.json")).unwrap()["pid"]
        .as_u64()
        .unwrap()
}

/// A shell snippet that blocks until `$OUT/<file>` exists.
pub fn wait_for_file(file: &str) -> String {
    format!("while [ ! -e \"$OUT/{file}\" ]; do sleep 0.05; done")
}

/// A task body that records each run in `$OUT/runs-<task>` and blocks until `$OUT/<file>`
/// exists.
pub fn gated(file: &str) -> String {
    format!(
        "echo \"$MAESTRO_ATTEMPT\" >> \"$OUT/runs-$MAESTRO_TASK\"; {}",
        wait_for_file(file)
    )
}

/// A task body whose first attempt blocks until `$OUT/<file>` exists (after `setup`, shell
/// commands ending in `;` or empty); later attempts succeed at once.
pub fn first_attempt_waits_for(file: &str, setup: &str) -> String {
    format!(
        "if [ \"$MAESTRO_ATTEMPT\" = 1 ]; then {setup}{}; fi",
        wait_for_file(file)
    )
}

fn unsafe_kill(target: &str) {
    let _ = Command::new("kill")
        .args(["-9", "--", target])
        .stderr(Stdio::null())
        .status();
}

/// Run a command, killing it if it outlives `limit`. Its output is read while it runs
/// (a pipe left unread blocks a command whose output outgrows it).
pub fn run_with_deadline(mut c: Command, limit: Duration) -> Output {
    use std::io::Read;
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    match status {
        Some(status) => Output {
            status,
            stdout,
            stderr,
        },
        None => panic!(
            "command did not finish in {limit:?}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        ),
    }
}

/// Poll `cond` until it holds or `limit` passes (then panic with `what`).
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The names in a directory, sorted.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

pub fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The session path a `run` printed on its first stdout line.
pub fn session_of(o: &Output) -> PathBuf {
    PathBuf::from(stdout(o).lines().next().expect("session path line"))
}

/// Records written by tasks: `<name> <start_ns> <end_ns>` lines in files under `out`.
pub fn spans(out: &Path) -> Vec<(String, u128, u128)> {
    let mut v = Vec::new();
    for e in fs::read_dir(out).unwrap().flatten() {
        let text = fs::read_to_string(e.path()).unwrap();
        for line in text.lines() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            if parts.len() == 3 {
                v.push((
                    parts[0].to_string(),
                    parts[1].parse().unwrap(),
                    parts[2].parse().unwrap(),
                ));
            }
        }
    }
    v
}

/// A shell snippet that sleeps `secs` and records the task's span in `$OUT/$MAESTRO_TASK`.
pub fn recorded(secs: &str) -> String {
    format!(
        "s=$(date +%s%N); sleep {secs}; e=$(date +%s%N); echo \"$MAESTRO_TASK $s $e\" >> \"$OUT/$MAESTRO_TASK\""
    )
}

/// `status --json` of a session, parsed.
pub fn status_json(sb: &Sandbox, session: &Path) -> Value {
    let o = sb.run(&["status", session.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "status failed: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("status --json is JSON")
}

/// The state of task `id` in a `status --json` value.
pub fn task_state(status: &Value, id: &str) -> String {
    status["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("no task {id}"))["state"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Assert a session's state in `status --json`, and that of each task in `tasks`
/// (`(task, state)` pairs).
pub fn assert_status(sb: &Sandbox, session: &Path, state: &str, tasks: &[(&str, &str)]) {
    let st = status_json(sb, session);
    assert_eq!(st["state"], state);
    assert_states(&st, tasks);
}

/// Assert the state of each task in a `status --json` value: `(task, state)` pairs.
pub fn assert_states(status: &Value, expected: &[(&str, &str)]) {
    for (task, state) in expected {
        assert_eq!(task_state(status, task), *state, "state of task {task}");
    }
}

/// Whether process `pid` is gone (or a zombie waiting to be reaped).
pub fn process_gone(pid: &str) -> bool {
    let proc = PathBuf::from(format!("/proc/{}", pid.trim()));
    !proc.exists() || fs::read_to_string(proc.join("stat")).is_ok_and(|s| s.contains(") Z"))
}

/// Send `sig` (`-KILL`, `-STOP`, `-CONT`, ...) to process `pid`, which must exist.
pub fn signal(pid: u64, sig: &str) {
    let st = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill {sig} {pid}");
}

/// The pid a task wrote in `path` (`echo $! > "$OUT/bg"`), waited for: the shell creates
/// the file before it writes the number, so a reader can see it empty for a moment.
pub fn pid_in(path: &Path) -> u64 {
    let mut pid = None;
    wait_until(
        Duration::from_secs(30),
        &format!("a pid in {}", path.display()),
        || {
            pid = fs::read_to_string(path)
                .ok()
                .filter(|t| t.ends_with('\n'))
                .and_then(|t| t.trim().parse().ok());
            pid.is_some()
        },
    );
    pid.unwrap_or_default()
}

/// Wait (20 s at most) for process `pid` to be gone; `what` says what it is.
pub fn wait_gone(pid: u64, what: &str) {
    let pid = pid.to_string();
    wait_until(Duration::from_secs(20), what, || process_gone(&pid));
}

/// The live (not zombie) processes of process group `pgid`.
pub fn group_members(pgid: i64) -> Vec<u64> {
    let mut v = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u64>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its ')'.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() > 2 && f[0] != "Z" && f[2].parse::<i64>() == Ok(pgid) {
            v.push(pid);
        }
    }
    v
}

/// What is still alive among `workers` (pids) and `groups` (process group ids), as text.
pub fn survivors(workers: &[(String, u64)], groups: &[(String, i64)]) -> Vec<String> {
    let mut left = Vec::new();
    for (id, pid) in workers {
        if !process_gone(&pid.to_string()) {
            left.push(format!("worker {id} (pid {pid})"));
        }
    }
    for (what, pgid) in groups {
        let m = group_members(*pgid);
        if !m.is_empty() {
            left.push(format!("{what} (group {pgid}: pids {m:?})"));
        }
    }
    left
}

/// Wait until every worker and group in the lists is gone; panic naming what is left.
pub fn wait_all_gone(
    limit: Duration,
    when: &str,
    workers: &[(String, u64)],
    groups: &[(String, i64)],
) {
    let deadline = Instant::now() + limit;
    loop {
        let left = survivors(workers, groups);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{when}, still running after {limit:?}: {}",
            left.join(", ")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every file under `dir` (not following links), depth first.
pub fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Create the empty file `name` in the sandbox's `out/` (what a task waits for).
pub fn touch(sb: &Sandbox, name: &str) {
    fs::write(sb.out().join(name), "").unwrap();
}

/// Whether process group `pgid` has live members, every one of them stopped by a
/// SIGSTOP: stopped (`T`), or with the SIGSTOP pending. A shell that started a command
/// with vfork (dash does) waits in `D` for its child to exec, and cannot stop before: when
/// the group's SIGSTOP stops that child first, the shell stays in `D` with the SIGSTOP
/// pending for as long as the group is stopped (its SIGCONT drops the pending stop and
/// both go on). Checking the leader for `T` alone failed a freeze test 1 run in 6 under
/// load.
pub fn group_stopped(pgid: i64) -> bool {
    let members = group_members(pgid);
    !members.is_empty()
        && members.iter().all(|&pid| {
            proc_state(pid as i64) == Some('T') || sigstop_pending(pid).unwrap_or(false)
        })
}

/// Whether SIGSTOP is pending for process `pid` (its own or its thread group's), from
/// `/proc/PID/status`.
fn sigstop_pending(pid: u64) -> Option<bool> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let bit = 1u64 << (nix::libc::SIGSTOP - 1);
    let mut pending = false;
    for l in status.lines() {
        if let Some(mask) = l
            .strip_prefix("SigPnd:")
            .or_else(|| l.strip_prefix("ShdPnd:"))
        {
            pending |= u64::from_str_radix(mask.trim(), 16).ok()? & bit != 0;
        }
    }
    Some(pending)
}

/// The state letter of process `pid` (`T` when stopped), from `/proc/PID/stat`.
pub fn proc_state(pid: i64) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}
