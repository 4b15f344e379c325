//! The session report: what a session did, for the person who ran it. Written when the
//! session ends, just before `summary.json` (so a run stopped by an error while writing
//! it is finished again by `resume`, which rewrites it), as three files:
//!
//! - `report-tasks.jsonl`: a row per task in plan order ([`TaskRow`]), written a line at
//!   a time;
//! - `report.json` ([`Report`]): totals, waves, the critical path as it ran, the pools'
//!   peaks, the results' metrics, insights and decisions, and the tasks that did not
//!   succeed; bounded whatever the number of tasks;
//! - `report.md`: the same for people, with a table of every task for sessions of at most
//!   [`TABLE_MAX`] tasks.
//!
//! `orchestrator report` prints the files of a session that ended, and computes the
//! report from the files as they are for one that did not (or one that ended before
//! reports existed), saying so in it, without writing anything. The end of `run` prints
//! a short version ([`brief`]).
//!
//! The work is split: [`source`] is what a report reads (the session directory, or a
//! test's own), [`timeline`] the journal's fold with times and pool use, [`build`] the
//! pass that makes the rows, [`path`] waves and the critical path, [`aggregate`] (with
//! [`decimal`]) the results, [`markdown`] and [`brief`] the text.

pub mod aggregate;
mod brief;
mod build;
pub mod decimal;
pub mod markdown;
pub mod model;
pub mod path;
pub mod source;
pub mod timeline;

#[cfg(test)]
mod tests;

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use brief::brief;
pub use build::{Built, Ending, NoRows, RowSink, TABLE_MAX, build, states_line};
pub use model::{Report, TaskRow};

use crate::error::{Error, Result};
use crate::fsio::{self, Fs};
use crate::plan::Plan;
use crate::proto::SessionState;
use crate::session::Session;
use source::Disk;

/// A time in Unix milliseconds as the session's records write times (RFC 3339, UTC, ms).
pub fn time_text(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// A record's time (RFC 3339) in Unix milliseconds.
pub fn parse_time(text: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339_weak(text).ok()?;
    t.duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_millis() as u64)
}

/// Write the report of a session its orchestrator is ending now, in `state`, at
/// `ended_ms`: the rows, then `report.json`, then `report.md`.
pub fn write(
    fs: Fs,
    session: &Session,
    plan: &Plan,
    state: SessionState,
    ended_ms: u64,
) -> Result<Report> {
    let rows_path = session.report_rows();
    let mut rows = fs.atomic_writer(&rows_path)?;
    let name = session
        .relative(&rows_path)
        .map(|p| p.to_string_lossy().into_owned());
    let ending = Ending::Final { state, ended_ms };
    let built = build(plan, session.id(), &Disk(session), ending, &mut rows, name)?;
    rows.commit()?;
    fs.write_json(&session.report_json(), &built.report)?;
    fs.write_atomic(&session.report_md(), markdown::render(&built).as_bytes())?;
    Ok(built.report)
}

/// The session's `report.json`, if it was written.
pub fn read(session: &Session) -> Result<Option<Report>> {
    fsio::read_json(&session.report_json())
}

/// What `orchestrator report --format` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Md,
    Json,
}

/// `orchestrator report`: the report files of a session that ended, as they are; for
/// one that has not (or ended before reports were written), the report computed from
/// its files now. Nothing is written into the session.
pub fn print(session: &Session, format: Format, out: &mut dyn Write) -> Result<()> {
    // A summary that cannot be read: the journal says how the session stands.
    let summary = crate::summary::read(session).ok().flatten();
    let alive = crate::orchestrator::orchestrator_alive(session);
    // A live orchestrator on a session with a summary is rolling it back or retrying
    // it: the files describe the run before.
    if summary.is_some() && !alive {
        let path = match format {
            Format::Md => session.report_md(),
            Format::Json => session.report_json(),
        };
        if let Some(mut f) = fsio::open_read(&path)? {
            std::io::copy(&mut f, out).map_err(|e| Error::io(&path, "print", e))?;
            return Ok(());
        }
    }
    let plan_path = session.plan_json();
    let plan = Plan::read(&plan_path)?
        .ok_or_else(|| Error::Session(format!("{}: missing", plan_path.display())))?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let ending = Ending::Observed {
        orchestrator_alive: alive,
        summary,
        now_ms,
    };
    let built = build(
        &plan,
        session.id(),
        &Disk(session),
        ending,
        &mut NoRows,
        None,
    )?;
    let text = match format {
        Format::Md => markdown::render(&built).into_bytes(),
        Format::Json => {
            let mut v = serde_json::to_vec_pretty(&built.report)
                .map_err(|e| Error::Session(format!("cannot encode the report: {e}")))?;
            v.push(b'\n');
            v
        }
    };
    let _ = out.write_all(&text);
    Ok(())
}
