//! The `orchestrator` command line as clap parses it: every verb, flag and help text.
//! Parsed once, then handed to [`super::orchestrator`] which dispatches it.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "orchestrator",
    version,
    about = "Run a plan's tasks in parallel terminals, coordinated through a session directory"
)]
pub struct OrchestratorArgs {
    /// Where sessions live (default: $MAESTRO_SESSIONS, else ./sessions).
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
    Plan {
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
    Run {
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
    Resume {
        session: String,
        /// Workers at once (default: the session's).
        #[arg(long)]
        workers: Option<usize>,
        /// Where new workers run (default: the session's launcher).
        #[arg(long)]
        launcher: Option<String>,
        #[arg(long)]
        watch: Option<String>,
        #[arg(long)]
        durable: bool,
        #[arg(long, short)]
        quiet: bool,
        /// Print progress lines instead of the live view (the default on a terminal).
        #[arg(long)]
        no_tui: bool,
    },
    /// Re-run a failed, skipped or cancelled task (and its skipped dependents) in a
    /// finished session.
    Retry {
        session: String,
        #[arg(required = true)]
        tasks: Vec<String>,
        #[arg(long)]
        workers: Option<usize>,
        #[arg(long)]
        launcher: Option<String>,
        #[arg(long)]
        watch: Option<String>,
        #[arg(long, short)]
        quiet: bool,
        /// Print progress lines instead of the live view (the default on a terminal).
        #[arg(long)]
        no_tui: bool,
    },
    /// Stop a running task's current attempt and give it to another worker.
    Reassign { session: String, task: String },
    /// Cancel one task and its dependents, or the whole session.
    Cancel {
        session: String,
        task: Option<String>,
    },
    /// Drain a session: no new starts; running attempts finish; then what did not start
    /// is cancelled and the session ends (failed if a task failed, else cancelled).
    Stop { session: String },
    /// Freeze a session: every running task's process group is stopped where it is
    /// (SIGSTOP) and nothing starts until `thaw`.
    Freeze { session: String },
    /// Thaw a frozen session: its stopped tasks go on and new ones start.
    Thaw { session: String },
    /// Undo a frozen or finished session: stop what still runs, then run each succeeded
    /// task's `rollback` command, last completed first, one at a time. Stops at the first
    /// that fails (run it again to retry that step and go on). Exits 0 once rolled back.
    Rollback {
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
    Approve { session: String, gate: String },
    /// Reject a gate that waits for a person: a failure for the tasks after it.
    Reject {
        session: String,
        gate: String,
        /// Why, for the journal and the skipped tasks' outcomes.
        #[arg(long)]
        reason: String,
    },
    /// Show who holds and who waits for each named lock.
    Locks { session: String },
    /// Remove what a session that is not running left outside its files: with
    /// --worktrees, its tasks' git worktrees (`git worktree remove --force`, then `git
    /// worktree prune`); their branches are kept.
    Clean {
        session: String,
        /// Remove the session's git worktrees (required: nothing else is cleaned yet).
        #[arg(long, required = true)]
        worktrees: bool,
    },
    /// Show a session's tasks and workers (default: the newest session).
    Status {
        session: Option<String>,
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
    /// List sessions (and entries of the sessions directory that are not, with why).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Go to the terminal of the worker running TASK: attach to (or, inside tmux, switch
    /// to) its tmux window, or raise its terminal-emulator window (with xdotool).
    Attach {
        session: String,
        task: String,
        /// Print the command instead of running it.
        #[arg(long)]
        print: bool,
    },
    /// Print (or follow) a task's log.
    Logs {
        session: String,
        task: String,
        /// Keep printing as the task writes, until it has an outcome.
        #[arg(long, short)]
        follow: bool,
        /// Show stderr instead of stdout.
        #[arg(long)]
        stderr: bool,
        /// Which attempt (default: the latest).
        #[arg(long)]
        attempt: Option<u32>,
    },
}
