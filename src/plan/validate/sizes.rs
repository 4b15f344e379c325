//! Sizes in a plan (`memory`, `[limits]`): their parse, and how maestro writes sizes for
//! people (also in `status` and the worker's messages). Apart from `validate` proper
//! because sizes are a small language of their own, used beyond plans.

use super::super::error::{PlanError, PlanErrorKind as K, Scope};
use super::super::locate::{Source, Table};

/// A size in bytes: a whole number with an optional unit, `B`, `KiB`, `MiB`, `GiB`,
/// `TiB` (powers of 1024) or `KB`, `MB`, `GB`, `TB` (powers of 1000), as in `"512MiB"`
/// or `"2 GiB"`; at least 1 byte.
pub(super) fn size_of(
    src: &Source,
    table: Table,
    scope: Scope,
    key: &'static str,
    value: Option<&str>,
) -> Result<Option<u64>, PlanError> {
    let Some(v) = value else {
        return Ok(None);
    };
    parse_size(v).map(Some).map_err(|msg| {
        let kind = K::BadSize { scope, key, msg };
        src.error(src.size_pos(table, key), kind)
    })
}

fn parse_size(v: &str) -> Result<u64, String> {
    let t = v.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let bad = || format!("{v:?} is not a size (a whole number and a unit: 512MiB, 8GiB, 2GB)");
    if digits == 0 {
        return Err(bad());
    }
    let n: u64 = t[..digits].parse().map_err(|_| bad())?;
    let unit: u64 = match t[digits..].trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    let bytes = n
        .checked_mul(unit)
        .ok_or_else(|| format!("{v:?} is too large"))?;
    if bytes == 0 {
        return Err(format!("{v:?} must be at least 1 byte"));
    }
    Ok(bytes)
}

/// A measured size for people: one decimal in the largest binary unit it reaches.
pub fn show_size_rounded(b: u64) -> String {
    for (unit, name) in [
        (1u64 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ] {
        if b >= unit {
            return format!("{:.1}{name}", b as f64 / unit as f64);
        }
    }
    format!("{b}B")
}

/// A size for a message: the largest binary unit it is a whole number of.
pub fn show_size(b: u64) -> String {
    for (unit, name) in [
        (1u64 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ] {
        if b >= unit && b.is_multiple_of(unit) {
            return format!("{}{name}", b / unit);
        }
    }
    format!("{b}B")
}
