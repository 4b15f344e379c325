//! Name validation at the edge (docs/PROTOCOL.md rule 4): every task, worker, plan and key
//! name that may become part of a path is checked here first, so `../x`, absolute paths,
//! NUL bytes, hidden names and over-long names never reach the filesystem.

/// What a valid name looks like, as error messages say it.
pub const RULE: &str = "must be 1-64 characters of [A-Za-z0-9._-] not starting with a dot";

/// Whether `name` matches `[A-Za-z0-9._-]{1,64}` and does not start with a dot.
pub fn is_valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Check that `name` is valid (see [`is_valid`]). `kind` ("task id", "worker id", ...)
/// names the thing in the error message.
pub fn validate(kind: &str, name: &str) -> Result<(), String> {
    if is_valid(name) {
        Ok(())
    } else {
        Err(format!("invalid {kind} {name:?}: {RULE}"))
    }
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn accepts_plain_names() {
        for n in ["a", "build-a", "db.migrate_1", "A9", &"x".repeat(64)] {
            assert_eq!(validate("task id", n), Ok(()), "{n}");
        }
    }

    #[test]
    fn refuses_hostile_names() {
        for n in [
            "",
            "../x",
            "/abs",
            "a/b",
            "a\0b",
            ".hidden",
            "..",
            "é",
            "a b",
            "a\nb",
            &"x".repeat(65),
        ] {
            assert!(validate("task id", n).is_err(), "{n:?} accepted");
        }
        assert_eq!(
            validate("task id", "a\0b").unwrap_err(),
            "invalid task id \"a\\0b\": must be 1-64 characters of [A-Za-z0-9._-] not starting with a dot"
        );
    }
}
