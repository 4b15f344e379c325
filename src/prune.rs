//! `orchestrator prune`: removing finished sessions, and `orchestrator wait`: blocking
//! until a session ends.
//!
//! A session may go only when it ended (it has a `summary.json`) and nothing of it runs
//! (no orchestrator, no worker holds its lock). A frozen or interrupted session, or one
//! whose workers still run, is kept whatever its age: it can still be resumed, thawed or
//! rolled back. Which ended sessions go is decided by [`choose`], a pure function of
//! their end times, so the rule is tested without a clock or a directory.

use std::io::Write;
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};
use crate::fsio;
use crate::orchestrator::{orchestrator_alive, worker_alive};
use crate::proto::SessionState;
use crate::session::Session;
use crate::watch::{self, Wait, WatchMode};

/// What `prune` is asked to keep.
#[derive(Debug, Clone, Copy, Default)]
pub struct Keep {
    /// Only sessions that ended longer ago than this may go.
    pub older_than: Option<Duration>,
    /// The newest `keep` ended sessions stay whatever their age.
    pub newest: Option<usize>,
}

/// Of ended sessions given as `(index, ended)` oldest first, the indices that go.
pub fn choose(ended: &[(usize, SystemTime)], now: SystemTime, keep: Keep) -> Vec<usize> {
    let kept_newest = keep.newest.unwrap_or(0).min(ended.len());
    ended[..ended.len() - kept_newest]
        .iter()
        .filter(|(_, at)| match keep.older_than {
            // A session that ended in the future (a clock set back) is young.
            Some(age) => now.duration_since(*at).is_ok_and(|d| d > age),
            None => true,
        })
        .map(|(i, _)| *i)
        .collect()
}

/// Whether anything of the session runs: its orchestrator or any worker.
fn live(s: &Session) -> Result<bool> {
    Ok(orchestrator_alive(s) || s.worker_ids()?.iter().any(|w| worker_alive(s, w)))
}

/// Remove the ended sessions under `root` that `keep` lets go (their git worktrees
/// first); with `dry_run`, only say which. Prints one line per session; returns the
/// exit code (1 when one could not be removed).
pub fn prune(root: &std::path::Path, keep: Keep, dry_run: bool) -> Result<i32> {
    let listing = Session::list(root)?;
    let mut ended = Vec::new();
    let mut kept_live = 0;
    for (i, s) in listing.sessions.iter().enumerate() {
        if !fsio::exists(&s.summary_json()) {
            continue;
        }
        if live(s)? {
            kept_live += 1;
            continue;
        }
        let at = fsio::modified(&s.summary_json()).unwrap_or(SystemTime::UNIX_EPOCH);
        ended.push((i, at));
    }
    // `list` orders by creation; `--keep` counts by end.
    ended.sort_by_key(|&(i, at)| (at, i));
    let going = choose(&ended, SystemTime::now(), keep);
    let mut out = std::io::stdout().lock();
    let mut code = 0;
    for i in &going {
        let s = &listing.sessions[*i];
        if dry_run {
            let _ = writeln!(out, "would remove {}", s.id());
            continue;
        }
        // A worker may have been started since the scan (a `retry`): look again.
        if live(s)? {
            let _ = writeln!(out, "kept {} (it runs again)", s.id());
            continue;
        }
        let removed = remove_worktrees(s).and_then(|()| fsio::remove_tree(s.root()));
        match removed {
            Ok(()) => {
                let _ = writeln!(out, "removed {}", s.id());
            }
            Err(e) => {
                eprintln!("error: {}: {e}", s.id());
                code = 1;
            }
        }
    }
    let _ = writeln!(
        out,
        "{} {} of {} ended sessions{}",
        if dry_run { "would remove" } else { "removed" },
        if dry_run {
            going.len()
        } else {
            going.len() - code as usize
        },
        ended.len(),
        match kept_live {
            0 => String::new(),
            n => format!(" ({n} more still running, kept)"),
        }
    );
    Ok(code)
}

/// A session's worktrees are outside its directory: removed with git before the
/// directory goes, or git would keep listing them.
fn remove_worktrees(s: &Session) -> Result<()> {
    let Some(plan) = crate::plan::Plan::read(&s.plan_json())? else {
        return Ok(());
    };
    let any = plan
        .tasks
        .iter()
        .any(|t| t.worktree && fsio::exists(&s.worktree_dir(&t.id)));
    if !any {
        return Ok(());
    }
    match crate::worktree::clean(s)? {
        0 => Ok(()),
        _ => Err(Error::Session(format!(
            "session {}: a worktree could not be removed; the session is kept",
            s.id()
        ))),
    }
}

/// The exit code a session ended with, as `run` would have exited.
pub fn exit_code_of(state: SessionState) -> i32 {
    match state {
        SessionState::Succeeded | SessionState::RolledBack => 0,
        SessionState::Interrupted => 130,
        _ => 1,
    }
}

/// Block until the session ends; its exit code. A session whose orchestrator is gone
/// before it ended never ends on its own: said, with exit 130 as an interrupted run.
pub fn wait(s: &Session, mode: WatchMode) -> Result<i32> {
    let wait = Wait {
        mode,
        timeout: None,
    };
    /// How the wait ended.
    enum Seen {
        Ended(SessionState),
        Orphaned,
    }
    let seen = watch::wait_for(&[s.orchestrator_dir()], wait, || {
        // Looked at before the summary: an orchestrator that writes the summary and
        // exits between the two reads is then seen ended, never orphaned.
        let alive = orchestrator_alive(s);
        match crate::summary::read(s)? {
            // A finished session being rolled back ends when its orchestrator does.
            Some(summary) if !alive => Ok(Some(Seen::Ended(summary.state))),
            None if !alive => Ok(Some(Seen::Orphaned)),
            _ => Ok(None),
        }
    })?;
    match seen {
        Some(Seen::Ended(state)) => Ok(exit_code_of(state)),
        Some(Seen::Orphaned) | None => {
            eprintln!(
                "session {id} has no orchestrator and has not ended: `orchestrator resume {id}` \
                 finishes it",
                id = s.id()
            );
            Ok(130)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn choose_keeps_the_newest_and_the_young() {
        let ended: Vec<(usize, SystemTime)> = (0..5).map(|i| (i, at(100 * i as u64))).collect();
        let now = at(1000);
        assert_eq!(choose(&ended, now, Keep::default()), vec![0, 1, 2, 3, 4]);
        let newest = |n| Keep {
            newest: Some(n),
            ..Keep::default()
        };
        assert_eq!(choose(&ended, now, newest(2)), vec![0, 1, 2]);
        assert_eq!(choose(&ended, now, newest(9)), Vec::<usize>::new());
        let older = Keep {
            older_than: Some(Duration::from_secs(750)),
            ..Keep::default()
        };
        // Ended at 0, 100, 200 are more than 750 s before 1000.
        assert_eq!(choose(&ended, now, older), vec![0, 1, 2]);
        let both = Keep {
            older_than: Some(Duration::from_secs(750)),
            newest: Some(4),
        };
        assert_eq!(choose(&ended, now, both), vec![0]);
        // A session that ended after `now` (a clock set back) is not old.
        assert_eq!(choose(&[(0, at(2000))], now, older), Vec::<usize>::new());
    }
}
