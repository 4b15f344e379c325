//! Name validation (stub; helper-1 replaces it).
pub fn validate(kind: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid {kind} {name:?}: must be 1-64 characters of [A-Za-z0-9._-] not starting with a dot"
        ))
    }
}
