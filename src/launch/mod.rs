//! Launchers start worker processes somewhere a person can watch them: headless in the
//! background, one tmux window each, or one terminal-emulator window each (`terminal.rs`).
//! One trait, several implementations (later: ssh, Slurm). The orchestrator never cares
//! where a worker runs: it learns that a worker lives from its `alive` flock, not from the
//! launcher.

mod terminal;

pub use terminal::{Emulator, Terminal};

use std::io::IsTerminal;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;

use crate::error::{Error, Result, io_err};
use crate::session::Session;
use crate::watch::WatchMode;

/// Which launcher the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LauncherKind {
    Auto,
    Background,
    Tmux,
    /// A window of a terminal emulator per worker (`terminal`: the first installed one).
    Terminal(Emulator),
}

impl FromStr for LauncherKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<LauncherKind> {
        match s {
            "auto" => Ok(LauncherKind::Auto),
            "background" => Ok(LauncherKind::Background),
            "tmux" => Ok(LauncherKind::Tmux),
            "terminal" => Ok(LauncherKind::Terminal(Emulator::Auto)),
            other => match other.strip_prefix("terminal:") {
                Some(name) => Ok(LauncherKind::Terminal(name.parse()?)),
                None => Err(Error::Usage(format!(
                    "invalid launcher {other:?}: expected auto, background, tmux, terminal or \
                     terminal:NAME"
                ))),
            },
        }
    }
}

/// What the launchers take from the environment, read once by the CLI and passed down
/// (nothing below the CLI reads the environment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaunchEnv {
    /// `$MAESTRO_WORKER_BIN`: the worker binary, instead of the one beside ours.
    pub worker_bin: Option<PathBuf>,
    /// `$MAESTRO_TMUX_SOCKET`: a private tmux server (`tmux -L`), which tests use.
    pub tmux_socket: Option<String>,
    /// `$TMUX` is set: we run inside tmux.
    pub inside_tmux: bool,
    /// `$TERMINAL`: the user's terminal emulator, tried first by `--launcher terminal`.
    pub terminal: Option<String>,
    /// `$DISPLAY` or `$WAYLAND_DISPLAY` is set: windows can be opened.
    pub display: bool,
}

impl LaunchEnv {
    pub fn from_env() -> LaunchEnv {
        LaunchEnv {
            worker_bin: std::env::var_os("MAESTRO_WORKER_BIN")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
            tmux_socket: std::env::var("MAESTRO_TMUX_SOCKET")
                .ok()
                .filter(|s| !s.is_empty()),
            inside_tmux: std::env::var_os("TMUX").is_some_and(|v| !v.is_empty()),
            terminal: std::env::var("TERMINAL").ok().filter(|s| !s.is_empty()),
            display: ["DISPLAY", "WAYLAND_DISPLAY"]
                .iter()
                .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty())),
        }
    }
}

impl LauncherKind {
    /// Resolve `auto`: tmux when we are inside tmux, or when tmux is installed and a person
    /// is at a terminal; otherwise headless (scripts, CI, machines without tmux).
    pub fn resolve(self, env: &LaunchEnv) -> LauncherKind {
        self.resolve_with(env, tmux_installed)
    }

    /// [`LauncherKind::resolve`], asking `has_tmux` whether tmux is there (a dry run, which
    /// starts no process, looks on PATH instead of running `tmux -V`).
    pub fn resolve_with(self, env: &LaunchEnv, has_tmux: impl FnOnce() -> bool) -> LauncherKind {
        match self {
            LauncherKind::Auto => {
                let inside = env.inside_tmux;
                let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
                if inside || (interactive && has_tmux()) {
                    LauncherKind::Tmux
                } else {
                    LauncherKind::Background
                }
            }
            LauncherKind::Terminal(Emulator::Auto) => {
                LauncherKind::Terminal(Emulator::first_installed(env).unwrap_or(Emulator::Auto))
            }
            k => k,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LauncherKind::Auto => "auto",
            LauncherKind::Background => "background",
            LauncherKind::Tmux => "tmux",
            LauncherKind::Terminal(e) => e.launcher_name(),
        }
    }

    /// Whether the launcher can start workers here, or the usage error saying why not
    /// (tmux missing, no display, no terminal emulator).
    pub fn check(self, env: &LaunchEnv, has_tmux: impl FnOnce() -> bool) -> Result<()> {
        match self {
            LauncherKind::Tmux if !has_tmux() => Err(Error::Usage(
                "--launcher tmux: tmux is not installed (use --launcher background)".into(),
            )),
            LauncherKind::Terminal(e) => e.check(env),
            _ => Ok(()),
        }
    }
}

/// Whether an executable file named `tmux` is on PATH: [`tmux_installed`] without running
/// it, for a dry run.
pub fn tmux_on_path() -> bool {
    on_path("tmux")
}

/// `s` quoted for a POSIX shell: as is when it is made of safe characters only, else in
/// single quotes (a `'` inside written `'\''`).
pub fn shell_quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./=:+,@%".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Whether an executable file named `prog` is on PATH (or `prog` is such a path).
pub fn on_path(prog: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let exec = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if prog.contains('/') {
        return exec(std::path::Path::new(prog));
    }
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| exec(&dir.join(prog)))
}

/// Whether a working tmux binary is on PATH.
pub fn tmux_installed() -> bool {
    Command::new("tmux")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What every worker is started with.
#[derive(Debug, Clone)]
pub struct WorkerCommand {
    pub worker_bin: PathBuf,
    pub watch: WatchMode,
    pub durable: bool,
}

impl WorkerCommand {
    /// The worker binary beside the running executable (cargo puts both in one directory;
    /// so does `cargo install`), overridable with `$MAESTRO_WORKER_BIN`.
    pub fn locate(watch: WatchMode, durable: bool, env: &LaunchEnv) -> Result<WorkerCommand> {
        let worker_bin = match &env.worker_bin {
            Some(p) => p.clone(),
            None => {
                let exe = std::env::current_exe()
                    .map_err(|e| Error::Launch(format!("cannot find our own executable: {e}")))?;
                exe.with_file_name("worker")
            }
        };
        if !worker_bin.is_file() {
            return Err(Error::Launch(format!(
                "{}: worker binary not found (build it: `cargo build` builds both binaries, \
                 `cargo run --bin orchestrator` only this one; or set MAESTRO_WORKER_BIN)",
                worker_bin.display()
            )));
        }
        Ok(WorkerCommand {
            worker_bin,
            watch,
            durable,
        })
    }

    fn argv(&self, session: &Session, id: &str, hold_failed: bool) -> Vec<String> {
        self.argv_as(
            session,
            id,
            hold_failed,
            if hold_failed { "tmux" } else { "background" },
        )
    }

    /// The worker's argv, saying which launcher started it (recorded in `worker.json`).
    fn argv_as(
        &self,
        session: &Session,
        id: &str,
        hold_failed: bool,
        launcher: &str,
    ) -> Vec<String> {
        let mut v = vec![
            self.worker_bin.to_string_lossy().into_owned(),
            "--session".into(),
            session.root().to_string_lossy().into_owned(),
            "--id".into(),
            id.into(),
            "--watch".into(),
            self.watch.as_str().into(),
            "--launcher".into(),
            launcher.into(),
        ];
        if self.durable {
            v.push("--durable".into());
        }
        if hold_failed {
            v.push("--hold-failed".into());
        }
        v
    }
}

/// A started worker, as far as the launcher knows.
pub struct Spawned {
    /// The child process when the worker is our direct child (background launcher).
    pub child: Option<Child>,
    /// Where a person can find it (e.g. `tmux window maestro-x:w1`).
    pub terminal: Option<String>,
}

/// What a launcher's workers can do, declared so the orchestrator never guesses from the
/// launcher's name (terminal emulators, ssh and Slurm come with other answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Each worker has a terminal a person can look at (and later type into).
    pub terminal: bool,
    /// Workers are our child processes: their exit is seen by reaping them.
    pub children: bool,
    /// Workers run on this host, so their task's process groups can be signalled here.
    pub local: bool,
    /// A worker's window can stay open after it exits (`keep_windows`).
    pub keeps_windows: bool,
}

/// Starts workers.
pub trait Launcher: Send {
    fn kind(&self) -> LauncherKind;
    /// What its workers can do.
    fn capabilities(&self) -> Capabilities;
    /// Start worker `id` for `session`.
    fn spawn(&mut self, session: &Session, id: &str) -> Result<Spawned>;
    /// A line for the user saying where to watch, if there is anything to watch.
    fn hint(&self) -> Option<String> {
        None
    }
}

/// Make the launcher for `kind` (already resolved).
pub fn make(
    kind: LauncherKind,
    cmd: WorkerCommand,
    session: &Session,
    keep_windows: bool,
    env: &LaunchEnv,
) -> Box<dyn Launcher> {
    match kind {
        LauncherKind::Tmux => Box::new(Tmux::new(cmd, session, keep_windows, env)),
        LauncherKind::Terminal(e) => Box::new(Terminal::new(e, cmd, session, keep_windows, env)),
        _ => Box::new(Background { cmd }),
    }
}

/// Headless workers: our children, in their own process group (so a Ctrl-C aimed at the
/// orchestrator does not reach them: they outlive an orchestrator that dies, for `resume`
/// to take over, and an interrupted one stops them itself), output in the worker's
/// `console.log`.
pub struct Background {
    cmd: WorkerCommand,
}

impl Launcher for Background {
    fn kind(&self) -> LauncherKind {
        LauncherKind::Background
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            terminal: false,
            children: true,
            local: true,
            keeps_windows: false,
        }
    }

    fn spawn(&mut self, session: &Session, id: &str) -> Result<Spawned> {
        let argv = self.cmd.argv(session, id, false);
        let log_path = session.worker_console(id);
        let log = crate::fsio::open_append(&log_path)?;
        let log2 = log.try_clone().map_err(io_err(&log_path, "open"))?;
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .spawn()
            .map_err(|e| Error::Launch(format!("{}: cannot start worker: {e}", argv[0])))?;
        Ok(Spawned {
            child: Some(child),
            terminal: None,
        })
    }
}

/// One tmux window per worker, in a tmux session named after the maestro session (created
/// detached, so this works inside and outside tmux; the user attaches or switches to it).
/// `$MAESTRO_TMUX_SOCKET` selects a private tmux server (`tmux -L`), which tests use.
pub struct Tmux {
    cmd: WorkerCommand,
    target: String,
    socket: Option<String>,
    keep_windows: bool,
    created: bool,
}

/// tmux session names may not contain `.` or `:`.
pub fn tmux_session_name(session_id: &str) -> String {
    session_id.replace(['.', ':'], "_")
}

impl Tmux {
    pub fn new(cmd: WorkerCommand, session: &Session, keep_windows: bool, env: &LaunchEnv) -> Tmux {
        Tmux {
            cmd,
            target: tmux_session_name(session.id()),
            socket: env.tmux_socket.clone(),
            keep_windows,
            created: false,
        }
    }

    fn tmux(&self, args: &[String]) -> Result<()> {
        let mut c = Command::new("tmux");
        if let Some(s) = &self.socket {
            c.arg("-L").arg(s);
        }
        let out = c
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::Launch(format!("cannot run tmux: {e}")))?;
        if !out.status.success() {
            return Err(Error::Launch(format!(
                "tmux {} failed: {}",
                args.first().map(String::as_str).unwrap_or(""),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }
}

impl Launcher for Tmux {
    fn kind(&self) -> LauncherKind {
        LauncherKind::Tmux
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            terminal: true,
            children: false,
            local: true,
            keeps_windows: true,
        }
    }

    fn spawn(&mut self, session: &Session, id: &str) -> Result<Spawned> {
        let argv = self.cmd.argv(session, id, true);
        // After `resume`, the tmux session of the earlier orchestrator's workers may still
        // be there: add windows to it rather than fail to create it again.
        if !self.created
            && self
                .tmux(&[
                    "has-session".into(),
                    "-t".into(),
                    format!("={}", self.target),
                ])
                .is_ok()
        {
            self.created = true;
        }
        let mut args: Vec<String> = if self.created {
            vec![
                "new-window".into(),
                "-d".into(),
                "-t".into(),
                format!("{}:", self.target),
                "-n".into(),
                id.into(),
            ]
        } else {
            vec![
                "new-session".into(),
                "-d".into(),
                "-s".into(),
                self.target.clone(),
                "-n".into(),
                id.into(),
                "-x".into(),
                "200".into(),
                "-y".into(),
                "50".into(),
            ]
        };
        // Several arguments after `--`: tmux runs the worker directly, no shell, so no
        // path is ever interpolated into a shell string (invariant 6).
        args.push("--".into());
        args.extend(argv);
        self.tmux(&args)?;
        let window = format!("{}:{}", self.target, id);
        if self.keep_windows {
            self.tmux(&[
                "set-option".into(),
                "-w".into(),
                "-t".into(),
                window.clone(),
                "remain-on-exit".into(),
                "on".into(),
            ])?;
        }
        self.created = true;
        Ok(Spawned {
            child: None,
            terminal: Some(format!("tmux window {window}")),
        })
    }

    fn hint(&self) -> Option<String> {
        let sock = match &self.socket {
            Some(s) => format!(" -L {s}"),
            None => String::new(),
        };
        Some(format!(
            "workers run in tmux session {t}: tmux{sock} attach -t {t} (inside tmux: tmux{sock} switch-client -t {t})",
            t = self.target
        ))
    }
}
