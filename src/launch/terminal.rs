//! One terminal-emulator window per worker (`--launcher terminal[:NAME]`): the first
//! installed of `$TERMINAL`, x-terminal-emulator, gnome-terminal, konsole, kitty,
//! alacritty, wezterm and xterm, or the one named. The window runs the worker directly
//! (an argv, never a shell string). What happens in a window comes back through the
//! session's files, never through the emulator's exit status (xterm exits 0 whatever ran
//! in it); a window closed by a person hangs up its worker, which is then a dead worker
//! like any other (its `alive` flock drops) and its task is reassigned.

use std::process::{Command, Stdio};
use std::str::FromStr;

use super::{
    Capabilities, LaunchEnv, Launcher, LauncherKind, Spawned, WorkerCommand, on_path, shell_quote,
};
use crate::error::{Error, Result};
use crate::session::Session;

/// A terminal emulator maestro knows how to start a program in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emulator {
    /// Not chosen yet: the first installed (see [`Emulator::first_installed`]).
    Auto,
    /// `$TERMINAL`, started as `$TERMINAL -e PROGRAM ARGS...`.
    Env,
    XTerminalEmulator,
    GnomeTerminal,
    Konsole,
    Kitty,
    Alacritty,
    Wezterm,
    Xterm,
    /// macOS Terminal.app, through `osascript`.
    MacTerminal,
    /// macOS iTerm2, through `osascript`.
    ITerm,
}

/// The emulators by name, in the order `--launcher terminal` tries them (after
/// `$TERMINAL`).
const KNOWN: [(Emulator, &str); 7] = [
    (Emulator::XTerminalEmulator, "x-terminal-emulator"),
    (Emulator::GnomeTerminal, "gnome-terminal"),
    (Emulator::Konsole, "konsole"),
    (Emulator::Kitty, "kitty"),
    (Emulator::Alacritty, "alacritty"),
    (Emulator::Wezterm, "wezterm"),
    (Emulator::Xterm, "xterm"),
];

impl FromStr for Emulator {
    type Err = Error;
    fn from_str(s: &str) -> Result<Emulator> {
        match s {
            "env" => return Ok(Emulator::Env),
            "macos-terminal" => return Ok(Emulator::MacTerminal),
            "iterm" => return Ok(Emulator::ITerm),
            _ => {}
        }
        KNOWN
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(e, _)| *e)
            .ok_or_else(|| {
                let names: Vec<&str> = KNOWN.iter().map(|(_, n)| *n).collect();
                Error::Usage(format!(
                    "invalid launcher \"terminal:{s}\": the terminal is one of {} (or env: \
                     $TERMINAL; on macOS, macos-terminal or iterm)",
                    names.join(", ")
                ))
            })
    }
}

impl Emulator {
    /// The program this emulator is started as (`$TERMINAL`'s value for [`Emulator::Env`]).
    fn program(self, env: &LaunchEnv) -> Option<String> {
        match self {
            Emulator::Auto => None,
            Emulator::Env => env.terminal.clone(),
            Emulator::MacTerminal | Emulator::ITerm => Some("osascript".into()),
            e => KNOWN
                .iter()
                .find(|(k, _)| *k == e)
                .map(|(_, n)| n.to_string()),
        }
    }

    /// How `--launcher` names it (and `session.json` records it).
    pub fn launcher_name(self) -> &'static str {
        match self {
            Emulator::Auto => "terminal",
            Emulator::Env => "terminal:env",
            Emulator::XTerminalEmulator => "terminal:x-terminal-emulator",
            Emulator::GnomeTerminal => "terminal:gnome-terminal",
            Emulator::Konsole => "terminal:konsole",
            Emulator::Kitty => "terminal:kitty",
            Emulator::Alacritty => "terminal:alacritty",
            Emulator::Wezterm => "terminal:wezterm",
            Emulator::Xterm => "terminal:xterm",
            Emulator::MacTerminal => "terminal:macos-terminal",
            Emulator::ITerm => "terminal:iterm",
        }
    }

    /// The first emulator installed: `$TERMINAL`, then the known ones in order.
    pub fn first_installed(env: &LaunchEnv) -> Option<Emulator> {
        if env.terminal.as_deref().is_some_and(on_path) {
            return Some(Emulator::Env);
        }
        KNOWN.iter().find(|(_, n)| on_path(n)).map(|(e, _)| *e)
    }

    /// Whether windows of this emulator can be opened here.
    pub fn check(self, env: &LaunchEnv) -> Result<()> {
        let mac = matches!(self, Emulator::MacTerminal | Emulator::ITerm);
        if !env.display && !mac {
            return Err(Error::Usage(
                "--launcher terminal opens windows, and there is no display ($DISPLAY and \
                 $WAYLAND_DISPLAY are not set); use --launcher tmux or background"
                    .into(),
            ));
        }
        match self.program(env) {
            Some(p) if on_path(&p) => Ok(()),
            Some(p) => Err(Error::Usage(format!(
                "--launcher {}: {p} is not installed",
                self.launcher_name()
            ))),
            None => Err(Error::Usage(format!(
                "--launcher terminal: no terminal emulator found ($TERMINAL, {}); use \
                 --launcher tmux or background",
                KNOWN.iter().map(|(_, n)| *n).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// The argv that opens a window titled `title` running `argv` (the emulator's process
    /// lives as long as the window, so it can be reaped).
    pub fn window_argv(
        self,
        program: &str,
        title: &str,
        hold: bool,
        argv: &[String],
    ) -> Vec<String> {
        let mut v = vec![program.to_string()];
        let rest = |v: &mut Vec<String>| v.extend(argv.iter().cloned());
        match self {
            Emulator::Xterm => {
                v.extend(["-T".into(), title.into()]);
                if hold {
                    v.push("-hold".into());
                }
                v.push("-e".into());
                rest(&mut v);
            }
            Emulator::GnomeTerminal => {
                v.extend(["--title".into(), title.into(), "--wait".into(), "--".into()]);
                rest(&mut v);
            }
            Emulator::Konsole => {
                v.extend(["--nofork".into(), "-p".into(), format!("tabtitle={title}")]);
                if hold {
                    v.push("--hold".into());
                }
                v.push("-e".into());
                rest(&mut v);
            }
            Emulator::Kitty => {
                v.extend(["--title".into(), title.into()]);
                if hold {
                    v.push("--hold".into());
                }
                rest(&mut v);
            }
            Emulator::Alacritty => {
                v.extend(["--title".into(), title.into()]);
                if hold {
                    v.push("--hold".into());
                }
                v.push("-e".into());
                rest(&mut v);
            }
            Emulator::Wezterm => {
                v.extend(["start".into(), "--always-new-process".into(), "--".into()]);
                rest(&mut v);
            }
            // AppleScript takes one command line: the argv quoted for the shell, then
            // quoted again as an AppleScript string.
            Emulator::MacTerminal | Emulator::ITerm => {
                let line: Vec<String> = argv.iter().map(|a| shell_quote(a)).collect();
                let line = applescript_string(&line.join(" "));
                let script = if self == Emulator::MacTerminal {
                    format!("tell application \"Terminal\" to do script {line}")
                } else {
                    format!(
                        "tell application \"iTerm\" to create window with default profile \
                         command {line}"
                    )
                };
                v.extend(["-e".into(), script]);
            }
            // x-terminal-emulator and $TERMINAL: the convention most emulators follow.
            Emulator::XTerminalEmulator | Emulator::Env | Emulator::Auto => {
                v.extend(["-T".into(), title.into(), "-e".into()]);
                rest(&mut v);
            }
        }
        v
    }
}

/// `s` as an AppleScript string literal.
fn applescript_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Workers in terminal-emulator windows.
pub struct Terminal {
    emulator: Emulator,
    program: String,
    cmd: WorkerCommand,
    session: String,
    keep_windows: bool,
}

impl Terminal {
    pub fn new(
        emulator: Emulator,
        cmd: WorkerCommand,
        session: &Session,
        keep_windows: bool,
        env: &LaunchEnv,
    ) -> Terminal {
        let emulator = match emulator {
            Emulator::Auto => Emulator::first_installed(env).unwrap_or(Emulator::Xterm),
            e => e,
        };
        Terminal {
            program: emulator.program(env).unwrap_or_else(|| "xterm".into()),
            emulator,
            cmd,
            session: session.id().to_string(),
            keep_windows,
        }
    }

    /// The title of worker `id`'s window (what `attach` and a person look for).
    pub fn title(session: &str, id: &str) -> String {
        format!("maestro {session} {id}")
    }
}

impl Launcher for Terminal {
    fn kind(&self) -> LauncherKind {
        LauncherKind::Terminal(self.emulator)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            terminal: true,
            // The emulator is our child, not the worker: its exit says nothing (some
            // emulators hand the window to a server and exit at once).
            children: false,
            local: true,
            keeps_windows: matches!(
                self.emulator,
                Emulator::Xterm | Emulator::Konsole | Emulator::Kitty | Emulator::Alacritty
            ),
        }
    }

    fn spawn(&mut self, session: &Session, id: &str) -> Result<Spawned> {
        let worker = self
            .cmd
            .argv_as(session, id, true, self.emulator.launcher_name());
        let title = Terminal::title(&self.session, id);
        let argv = self
            .emulator
            .window_argv(&self.program, &title, self.keep_windows, &worker);
        let log = crate::fsio::open_append(&session.worker_console(id))?;
        let log2 = log
            .try_clone()
            .map_err(crate::error::io_err(&session.worker_console(id), "open"))?;
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| Error::Launch(format!("{}: cannot open a window: {e}", argv[0])))?;
        // Reaped so it never lingers as a zombie; its exit is not the worker's death.
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        Ok(Spawned {
            child: None,
            terminal: Some(format!("{} window \"{title}\"", self.program)),
        })
    }

    fn hint(&self) -> Option<String> {
        Some(format!(
            "workers run in {} windows titled \"maestro {} wN\"",
            self.program, self.session
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_round_trip() {
        for (e, n) in KNOWN {
            assert_eq!(n.parse::<Emulator>().unwrap(), e);
            assert_eq!(
                format!("terminal:{n}").parse::<LauncherKind>().unwrap(),
                LauncherKind::Terminal(e)
            );
            assert_eq!(e.launcher_name(), format!("terminal:{n}"));
        }
        assert_eq!(
            "terminal".parse::<LauncherKind>().unwrap(),
            LauncherKind::Terminal(Emulator::Auto)
        );
        assert_eq!(
            "terminal:st"
                .parse::<LauncherKind>()
                .unwrap_err()
                .to_string(),
            "invalid launcher \"terminal:st\": the terminal is one of x-terminal-emulator, \
             gnome-terminal, konsole, kitty, alacritty, wezterm, xterm (or env: $TERMINAL; on \
             macOS, macos-terminal or iterm)"
        );
    }

    #[test]
    fn each_emulator_runs_the_worker_as_an_argv() {
        let w = vec!["/bin/worker".to_string(), "--id".into(), "w 1".into()];
        let x = Emulator::Xterm.window_argv("xterm", "t", true, &w);
        assert_eq!(
            x,
            [
                "xterm",
                "-T",
                "t",
                "-hold",
                "-e",
                "/bin/worker",
                "--id",
                "w 1"
            ]
        );
        let g = Emulator::GnomeTerminal.window_argv("gnome-terminal", "t", false, &w);
        assert_eq!(
            g,
            [
                "gnome-terminal",
                "--title",
                "t",
                "--wait",
                "--",
                "/bin/worker",
                "--id",
                "w 1"
            ]
        );
        let e = Emulator::Env.window_argv("foot", "t", false, &w);
        assert_eq!(e, ["foot", "-T", "t", "-e", "/bin/worker", "--id", "w 1"]);
        let m = Emulator::MacTerminal.window_argv("osascript", "t", false, &w);
        assert_eq!(
            m,
            [
                "osascript",
                "-e",
                r#"tell application "Terminal" to do script "/bin/worker --id 'w 1'""#
            ]
        );
        let tricky = vec!["/a b/w\"q'".to_string()];
        let i = Emulator::ITerm.window_argv("osascript", "t", false, &tricky);
        // Quoted for the shell ('\''), then as an AppleScript string (\" and \\).
        assert_eq!(
            i[2],
            r#"tell application "iTerm" to create window with default profile command "'/a b/w\"q'\\'''""#
        );
    }

    #[test]
    fn without_a_display_the_launcher_says_so() {
        let env = LaunchEnv::default();
        assert_eq!(
            Emulator::Xterm.check(&env).unwrap_err().to_string(),
            "--launcher terminal opens windows, and there is no display ($DISPLAY and \
             $WAYLAND_DISPLAY are not set); use --launcher tmux or background"
        );
        let env = LaunchEnv {
            display: true,
            terminal: Some("/no/such/term".into()),
            ..LaunchEnv::default()
        };
        assert_eq!(
            Emulator::Env.check(&env).unwrap_err().to_string(),
            "--launcher terminal:env: /no/such/term is not installed"
        );
    }
}
