//! The library's typed errors. Every I/O error carries the path and the operation that failed
//! (pueue's `IoPathError` style) so that a user reading a message knows which file to look at.
//! Binaries map these to exit codes with [`Error::exit_code`].

use std::io;
use std::path::PathBuf;

use crate::plan::PlanError;

/// Everything that can go wrong in maestro's library code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation on a named path failed.
    #[error("{}: cannot {op}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// Something planted in a session where one of maestro's files or directories
    /// belongs: a symbolic link, a file where a directory belongs, a FIFO. Never followed,
    /// never opened.
    #[error(
        "{}: {what}; maestro never follows links or opens special files inside a session \
         (move it away, then try again)",
        path.display()
    )]
    Refused { path: PathBuf, what: String },
    /// A JSON file in the session could not be parsed (e.g. truncated by hand).
    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A JSON file is larger than the cap we accept from a session directory.
    #[error("{}: file is too large ({size} bytes; the limit is {limit})", path.display())]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    /// The plan is invalid; the message names the file, line and column.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The command line or its arguments are wrong.
    #[error("{0}")]
    Usage(String),
    /// The session directory is not in a state that allows the operation.
    #[error("{0}")]
    Session(String),
    /// No such session, task or gate (exit code 2: nothing was done).
    #[error("{0}")]
    NotFound(String),
    /// The verb makes no sense in the session's state (`send` to a finished session,
    /// `resume` of a live one); the message says what to do instead (exit code 2).
    #[error("{0}")]
    WrongState(String),
    /// A coordination verb could not do what was asked: it timed out, its barrier broke,
    /// it was picked to break a deadlock, a lock order was violated (exit code 1).
    #[error("{0}")]
    Verb(String),
    /// A launcher (tmux, ...) failed to start a worker.
    #[error("{0}")]
    Launch(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wrap an `io::Error` with the path and the verb of the failed operation.
    pub fn io(path: impl Into<PathBuf>, op: &'static str, source: io::Error) -> Error {
        Error::Io {
            path: path.into(),
            op,
            source,
        }
    }

    /// Whether this is an I/O error saying a file or directory does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// The process exit code for this error: 2 for usage and plan errors, unknown
    /// sessions, tasks or gates, and verbs refused in the session's state (nothing was done),
    /// 1 for a coordination verb that gave up (timeout, deadlock, broken barrier), 3 for
    /// everything else (maestro itself could not go on). 1 also means "a task failed".
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Plan(_) | Error::Usage(_) | Error::NotFound(_) | Error::WrongState(_) => 2,
            Error::Verb(_) => 1,
            _ => 3,
        }
    }
}

/// `result.map_err(io_err(path, "read"))` shorthand.
pub fn io_err<'a>(
    path: &'a std::path::Path,
    op: &'static str,
) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::io(path, op, source)
}
