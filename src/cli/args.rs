//! The `orchestrator` command line as clap parses it: every verb, flag and help text,
//! with examples. Parsed once, then handed to [`super::orchestrator`] which dispatches it.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The exit-code table every verb follows; README has the same table.
pub const EXIT_CODES: &str = "\
Exit codes:
  0    success (query verbs: status, list, logs, report, locks, plan exit 0 once they answered)
  1    the session ended with failed or cancelled tasks, or the verb's subject failed
  2    nothing was done: usage error, bad plan, unknown session/task/gate, or a verb that
       makes no sense in the session's state (the message says what to do instead)
  3    maestro itself failed (the message names the file and the operation)
  130  interrupted by Ctrl-C (143: SIGTERM); `orchestrator resume SESSION` finishes it";

const TOP_EXAMPLES: &str = "\
Examples:
  orchestrator run examples/demo.toml           run a plan to its end
  orchestrator status                           the newest session
  orchestrator logs demo-2026 --all -f          every task's output, live
  orchestrator resume demo-20261201-101500-1    finish a session whose orchestrator died

SESSION is a session directory, its id, or a prefix of exactly one id. Sessions are found
in --sessions-dir, else $MAESTRO_SESSIONS, else the nearest sessions/ directory holding
sessions from here upward, else ./sessions.";

#[derive(Parser, Debug)]
#[command(
    name = "orchestrator",
    version,
    about = "Run a plan's tasks in parallel terminals, coordinated through a session directory",
    after_help = format!("{TOP_EXAMPLES}\n\n{EXIT_CODES}")
)]
pub struct OrchestratorArgs {
    /// Where sessions live (default: $MAESTRO_SESSIONS, else the nearest sessions/
    /// directory holding sessions from here upward, else ./sessions).
    #[arg(long, global = true, value_name = "DIR")]
    pub sessions_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: OrchestratorCommand,
}

#[derive(Subcommand, Debug)]
pub enum OrchestratorCommand {
    #[command(flatten)]
    Data(super::data::OrchestratorDataCommand),
    /// Validate a plan and print its waves, every task's dependencies (tasks, races,
    /// signals), its races, checkpoints and signals, and its critical path.
    #[command(after_help = "Examples:
  orchestrator plan migrate.toml          check it; exit 2 with file:line:column if it is wrong
  orchestrator plan migrate.toml --json   the same, for a program
  orchestrator plan migrate.toml --dot | dot -Tsvg > plan.svg")]
    Plan {
        /// The plan file (TOML).
        plan: PathBuf,
        /// Print JSON instead of text.
        #[arg(long, conflicts_with = "dot")]
        json: bool,
        /// Print a Graphviz graph: tasks, races (hexagons), signals (diamonds),
        /// checkpoints (dashed boxes) and every edge between them.
        #[arg(long)]
        dot: bool,
    },
    /// Create a session and run the plan to its end.
    #[command(after_help = "Examples:
  orchestrator run migrate.toml                       workers in tmux windows when tmux is there
  orchestrator run migrate.toml --launcher background --workers 8
  orchestrator run migrate.toml --dry-run             what would run; nothing is created
  orchestrator run migrate.toml --only users-2        one task and what it depends on
  s=$(orchestrator run plan.toml -q | head -1)        the session path, for a script

The first line of stdout is the session's path. Exit: 0 all succeeded, 1 a task failed or
the session was cancelled, 2 bad plan or options (nothing created), 130 Ctrl-C.")]
    Run {
        /// The plan file (TOML).
        plan: PathBuf,
        /// Workers at once (overrides the plan's `workers`).
        #[arg(long)]
        workers: Option<usize>,
        /// Where workers run: auto, background, tmux, terminal (a window each, of the first
        /// installed terminal emulator) or terminal:NAME (xterm, gnome-terminal, konsole,
        /// kitty, alacritty, wezterm, x-terminal-emulator; env: $TERMINAL).
        #[arg(long, default_value = "auto")]
        launcher: String,
        /// How changes are noticed: native, poll or off (default: $MAESTRO_WATCH, else native).
        #[arg(long)]
        watch: Option<String>,
        /// fsync every file and directory written (power-loss safety; slower).
        #[arg(long)]
        durable: bool,
        /// Print only the session path and the final line.
        #[arg(long, short)]
        quiet: bool,
        /// Print progress lines instead of the live view (the default on a terminal).
        #[arg(long)]
        no_tui: bool,
        /// Check the plan and the options as a run would, then print what would run
        /// (settings, waves, each task's command and dependencies, races, checkpoints,
        /// signals, critical path) and exit: nothing is created, no process is started.
        #[arg(long)]
        dry_run: bool,
        /// With --dry-run: print JSON instead of text.
        #[arg(long, requires = "dry_run")]
        json: bool,
        /// Run only these tasks and what they depend on, transitively (the others are
        /// decided `excluded`). Ids follow the flag (`--only a b`) until the next flag;
        /// the flag may be repeated.
        #[arg(long, value_name = "ID", num_args = 1..)]
        only: Vec<String>,
        /// Treat these tasks as done without running them (decided `excluded`; what
        /// depends on them may run). Ids follow the flag (`--skip a b`); repeatable.
        #[arg(long, value_name = "ID", num_args = 1..)]
        skip: Vec<String>,
    },
    /// Take over a session whose orchestrator died, and finish it.
    #[command(after_help = "Examples:
  orchestrator resume demo-20261201-101500-1
  orchestrator resume demo-2026 --launcher background --workers 2

Refused (exit 2) when the session has a live orchestrator or has finished.")]
    Resume {
        /// The session (directory, id or unique id prefix).
        session: String,
        /// Workers at once (default: the session's).
        #[arg(long)]
        workers: Option<usize>,
        /// Where new workers run (default: the session's launcher).
        #[arg(long)]
        launcher: Option<String>,
        /// How changes are noticed: native, poll or off (default: $MAESTRO_WATCH, else native).
        #[arg(long)]
        watch: Option<String>,
        /// fsync every file and directory written (power-loss safety; slower).
        #[arg(long)]
        durable: bool,
        /// Print only the session path and the final line.
        #[arg(long, short)]
        quiet: bool,
        /// Print progress lines instead of the live view (the default on a terminal).
        #[arg(long)]
        no_tui: bool,
    },
    /// Re-run a failed, skipped or cancelled task (and its skipped dependents) in a
    /// finished session.
    #[command(after_help = "Examples:
  orchestrator retry demo-2026 migrate-users
  orchestrator retry demo-2026 a b --launcher background")]
    Retry {
        /// The finished session (directory, id or unique id prefix).
        session: String,
        /// The tasks to run again.
        #[arg(required = true)]
        tasks: Vec<String>,
        /// Workers at once (default: the session's).
        #[arg(long)]
        workers: Option<usize>,
        /// Where new workers run (default: the session's launcher).
        #[arg(long)]
        launcher: Option<String>,
        /// How changes are noticed: native, poll or off (default: $MAESTRO_WATCH, else native).
        #[arg(long)]
        watch: Option<String>,
        /// Print only the session path and the final line.
        #[arg(long, short)]
        quiet: bool,
        /// Print progress lines instead of the live view (the default on a terminal).
        #[arg(long)]
        no_tui: bool,
    },
    /// Stop a running task's current attempt and give it to another worker.
    #[command(after_help = "Examples:
  orchestrator reassign demo-2026 migrate-users

Refused (exit 2) in a finished session.")]
    Reassign {
        /// The running session (directory, id or unique id prefix).
        session: String,
        /// The task whose attempt is stopped and handed to another worker.
        task: String,
    },
    /// Cancel one task and its dependents, or the whole session.
    #[command(after_help = "Examples:
  orchestrator cancel demo-2026 migrate-users     that task and what depends on it
  orchestrator cancel demo-2026                   the whole session")]
    Cancel {
        /// The session (directory, id or unique id prefix).
        session: String,
        /// The task to cancel (default: the whole session).
        task: Option<String>,
    },
    /// Drain a session: no new starts; running attempts finish; then what did not start
    /// is cancelled and the session ends (failed if a task failed, else cancelled).
    #[command(after_help = "Examples:
  orchestrator stop demo-2026")]
    Stop {
        /// The session (directory, id or unique id prefix).
        session: String,
    },
    /// Freeze a session: every running task's process group is stopped where it is
    /// (SIGSTOP) and nothing starts until `thaw`.
    #[command(after_help = "Examples:
  orchestrator freeze demo-2026 && orchestrator thaw demo-2026")]
    Freeze {
        /// The running session (directory, id or unique id prefix).
        session: String,
    },
    /// Thaw a frozen session: its stopped tasks go on and new ones start.
    #[command(after_help = "Examples:
  orchestrator thaw demo-2026")]
    Thaw {
        /// The frozen session (directory, id or unique id prefix).
        session: String,
    },
    /// Undo a frozen or finished session: stop what still runs, then run each succeeded
    /// task's `rollback` command, last completed first, one at a time. Stops at the first
    /// that fails (run it again to retry that step and go on). Exits 0 once rolled back.
    #[command(after_help = "Examples:
  orchestrator rollback demo-2026
  orchestrator rollback demo-2026 --skip-unknown   a step checked by hand is done")]
    Rollback {
        /// The frozen or finished session (directory, id or unique id prefix).
        session: String,
        /// A step whose runner died without recording an exit may or may not have run:
        /// run it again.
        #[arg(long, conflicts_with = "skip_unknown")]
        rerun_unknown: bool,
        /// A step whose runner died without recording an exit was checked by hand and is
        /// done: go on with the next.
        #[arg(long)]
        skip_unknown: bool,
    },
    /// Approve a gate that waits for a person: the tasks after it may start.
    #[command(after_help = "Examples:
  orchestrator approve demo-2026 wave-2")]
    Approve {
        /// The session (directory, id or unique id prefix).
        session: String,
        /// The gate's name in the plan.
        gate: String,
    },
    /// Reject a gate that waits for a person: a failure for the tasks after it.
    #[command(after_help = "Examples:
  orchestrator reject demo-2026 wave-2 --reason \"row counts differ\"")]
    Reject {
        /// The session (directory, id or unique id prefix).
        session: String,
        /// The gate's name in the plan.
        gate: String,
        /// Why, for the journal and the skipped tasks' outcomes.
        #[arg(long)]
        reason: String,
    },
    /// Show who holds and who waits for each named lock.
    #[command(after_help = "Examples:
  orchestrator locks demo-2026")]
    Locks {
        /// The session (directory, id or unique id prefix).
        session: String,
    },
    /// Remove what a session that is not running left outside its files: with
    /// --worktrees, its tasks' git worktrees (`git worktree remove --force`, then `git
    /// worktree prune`); their branches are kept.
    #[command(after_help = "Examples:
  orchestrator clean demo-2026 --worktrees")]
    Clean {
        /// The session (directory, id or unique id prefix).
        session: String,
        /// Remove the session's git worktrees (required: nothing else is cleaned yet).
        #[arg(long, required = true)]
        worktrees: bool,
    },
    /// Show a session's tasks and workers (default: the newest session).
    #[command(after_help = "Examples:
  orchestrator status                      the newest session
  orchestrator status demo-2026 --json     for a program
  orchestrator status --waiting            only agents waiting for a person")]
    Status {
        /// The session (directory, id or unique id prefix; default: the newest).
        session: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Only the tasks whose agent waits for a person.
        #[arg(long)]
        waiting: bool,
        /// Show the live view of the session (of a finished or dead one too) until `q`.
        #[arg(long, conflicts_with_all = ["json", "waiting"])]
        watch: bool,
        /// Measure the live view instead of showing it: N refreshes and draws off screen,
        /// timed (one JSON line; for scripts/bench.sh).
        #[arg(long, hide = true, requires = "watch", value_name = "N")]
        bench_frames: Option<usize>,
    },
    /// Print a session's report (default: the newest session): what ran, how long, what
    /// failed and why, waves, the critical path as it ran, pools' peaks, and the sums of
    /// the results' metrics. A session that has not ended is reported from its files as
    /// they are, and the report says so.
    #[command(after_help = "Examples:
  orchestrator report                          the newest session's report.md
  orchestrator report demo-2026 --format json | jq .metrics")]
    Report {
        /// The session (directory, id or unique id prefix; default: the newest).
        session: Option<String>,
        /// md (report.md) or json (report.json).
        #[arg(long, default_value = "md", value_parser = ["md", "json"])]
        format: String,
    },
    /// List sessions (and entries of the sessions directory that are not, with why).
    #[command(after_help = "Examples:
  orchestrator list
  orchestrator list --json | jq -r '.[].session'")]
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Go to the terminal of the worker running TASK: attach to (or, inside tmux, switch
    /// to) its tmux window, or raise its terminal-emulator window (with xdotool).
    #[command(after_help = "Examples:
  orchestrator attach demo-2026 agent-1
  orchestrator attach demo-2026 agent-1 --print   tmux -S SOCKET attach -t SESSION:w1")]
    Attach {
        /// The running session (directory, id or unique id prefix).
        session: String,
        /// The task whose terminal to go to.
        task: String,
        /// Print the command instead of running it.
        #[arg(long)]
        print: bool,
    },
    /// Print (or follow) a task's log, or every task's output interleaved.
    #[command(after_help = "Examples:
  orchestrator logs demo-2026 migrate-users
  orchestrator logs demo-2026 migrate-users -f      waits for it to start, follows to its end
  orchestrator logs demo-2026 migrate-users --stderr --attempt 1
  orchestrator logs demo-2026 --all -f              every task, each line prefixed by its id")]
    Logs {
        /// The session (directory, id or unique id prefix).
        session: String,
        /// The task (omit with --all).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        task: Option<String>,
        /// Every task's output, interleaved by time, each line prefixed by its task id.
        #[arg(long, conflicts_with_all = ["stderr", "attempt"])]
        all: bool,
        /// Keep printing as tasks write, until they have outcomes (with --all: until the
        /// session ends).
        #[arg(long, short)]
        follow: bool,
        /// Show stderr instead of stdout.
        #[arg(long)]
        stderr: bool,
        /// Which attempt (default: the latest).
        #[arg(long)]
        attempt: Option<u32>,
    },
    /// Block until a session ends, then exit with its code (0 succeeded, 1 failed or
    /// cancelled, 130 interrupted).
    #[command(after_help = "Examples:
  orchestrator run plan.toml -q > /dev/null & sleep 1; orchestrator wait demo-2026
  orchestrator wait demo-2026 && echo all done")]
    Wait {
        /// The session (directory, id or unique id prefix).
        session: String,
    },
    /// Add tasks to a running session: a file of `[[task]]` tables (templates too, and
    /// `[defaults]` of its own), checked with every plan check on the merged plan. New
    /// tasks may run after the session's tasks, races, gates and signals.
    #[command(after_help = "Examples:
  orchestrator add demo-2026 more.toml
  orchestrator add demo-2026 more.toml --dry-run    check only: what would be added
  orchestrator add demo-2026 hotfix.json    a JSON file of tasks works the same way
  ./make-tasks.sh | orchestrator add demo-2026 -    tasks from stdin (TOML, or JSON)

Exit status: 0 added; 2 refused (a check failed, or the session is not running: the
message says which).")]
    Add {
        /// The running session (directory, id or unique id prefix).
        session: String,
        /// The file of tasks (TOML, or JSON when it ends in .json); `-` reads them from
        /// stdin (JSON when it starts with `{`).
        file: PathBuf,
        /// Check the file against the session's plan and say what would be added; add
        /// nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Change how many workers a live session runs at once.
    #[command(after_help = "Examples:
  orchestrator scale demo-2026 8     more at once (new workers start now)
  orchestrator scale demo-2026 1     fewer: running tasks finish, no new ones start beyond 1")]
    Scale {
        /// The running session (directory, id or unique id prefix).
        session: String,
        /// The new worker limit (at least 1).
        workers: usize,
    },
    /// Remove finished sessions (never one that is running or still has processes).
    #[command(after_help = "Examples:
  orchestrator prune --dry-run                 what would go
  orchestrator prune --older-than 7d
  orchestrator prune --keep 10                 keep the newest 10 finished sessions")]
    Prune {
        /// Only sessions that ended longer ago than this (e.g. 7d, 12h).
        #[arg(long, value_parser = super::data::parse_duration, value_name = "AGE")]
        older_than: Option<std::time::Duration>,
        /// Keep the newest N finished sessions whatever their age.
        #[arg(long, value_name = "N")]
        keep: Option<usize>,
        /// Print what would be removed; remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print a shell completion script.
    #[command(after_help = "Examples:
  orchestrator completions bash > ~/.local/share/bash-completion/completions/orchestrator
  orchestrator completions zsh > ~/.zfunc/_orchestrator
  orchestrator completions fish > ~/.config/fish/completions/orchestrator.fish")]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) of `orchestrator`.
    #[command(after_help = "Examples:
  orchestrator man > orchestrator.1 && man ./orchestrator.1")]
    Man,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::OrchestratorArgs;
    use crate::cli::worker::WorkerArgs;

    /// Every verb's `--help` shows examples, and every argument says what it is for, for
    /// both binaries.
    #[test]
    fn every_verb_has_examples_and_every_argument_a_help_text() {
        let mut missing = Vec::new();
        for cmd in [OrchestratorArgs::command(), WorkerArgs::command()] {
            missing.extend(undocumented(&cmd));
        }
        assert!(missing.is_empty(), "{}", missing.join("\n"));
    }

    fn undocumented(cmd: &clap::Command) -> Vec<String> {
        let mut missing = Vec::new();
        for sub in cmd.get_subcommands() {
            let name = sub.get_name();
            if name == "help" {
                continue;
            }
            let examples = sub
                .get_after_help()
                .map(|h| h.to_string().contains("Examples:"))
                .unwrap_or(false);
            if !examples {
                missing.push(format!("{name}: no examples"));
            }
            for arg in sub.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" || arg.is_global_set() {
                    continue;
                }
                if arg.get_help().is_none() {
                    missing.push(format!("{name} {id}: no help"));
                }
            }
        }
        missing
    }
}
