//! Fault injection behind the one write helper, for tests only: with the cargo feature
//! `fault-injection`, `MAESTRO_FAULT=ROLE:N:ERRNO` makes the Nth write operation of each
//! process of that role (`orchestrator` or `worker`, told by the binary's name) fail
//! with `ERRNO` (`ENOSPC`, `EIO` or `EACCES`); a journal append then fails after writing
//! half its line, so the cut-back is exercised too. Write operations are the bytes of a
//! published file, a journal append, a directory made, a rename and a link: every way
//! maestro changes a session. With `MAESTRO_FAULT_LOG=FILE` the fault strikes once in
//! all the processes together: only the one that creates FILE (create-exclusive, outside
//! the session) fails, and FILE says which write it was. Without the feature this is an
//! empty inline function.

use std::io;

/// `Some(error)` when this write operation is the one to fail.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(super) fn hit() -> Option<io::Error> {
    None
}

#[cfg(feature = "fault-injection")]
pub(super) fn hit() -> Option<io::Error> {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PLAN: OnceLock<Option<(u64, i32)>> = OnceLock::new();
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let (n, errno) = (*PLAN.get_or_init(plan))?;
    if COUNT.fetch_add(1, Ordering::Relaxed) + 1 != n {
        return None;
    }
    if let Some(log) = std::env::var_os("MAESTRO_FAULT_LOG") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(log)
            .ok()?;
        let _ = writeln!(f, "{} write {n}: errno {errno}", std::process::id());
    }
    Some(io::Error::from_raw_os_error(errno))
}

/// The fault this process was asked for, if it is of the role named.
#[cfg(feature = "fault-injection")]
fn plan() -> Option<(u64, i32)> {
    let spec = std::env::var("MAESTRO_FAULT").ok()?;
    let mut parts = spec.split(':');
    let (role, n, errno) = (parts.next()?, parts.next()?, parts.next()?);
    let me = std::env::args_os().next()?;
    let me = std::path::Path::new(&me).file_name()?.to_str()?.to_string();
    if me != role {
        return None;
    }
    let errno = match errno {
        "ENOSPC" => nix::libc::ENOSPC,
        "EIO" => nix::libc::EIO,
        "EACCES" => nix::libc::EACCES,
        _ => return None,
    };
    Some((n.parse().ok()?, errno))
}
