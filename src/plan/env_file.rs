//! Secrets a task's environment takes without the session ever holding them: names
//! passed through from the caller's environment (`env_from_parent`) and a file of
//! `KEY=VALUE` lines (`env_file`) that the worker reads when each attempt starts. Only the
//! names and the file's path are written to `plan.json` and assignments.

use std::io::Read;
use std::path::Path;

/// The most an env file may hold (it is read at every attempt's start).
const CAP: u64 = 1024 * 1024;

/// Whether `name` can be an environment variable's name (`[A-Za-z_][A-Za-z0-9_]*`).
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parse env-file text: `KEY=VALUE` per line, optionally after `export `; blank lines and
/// `#` comments are skipped; a value wholly in single or double quotes loses them (no
/// escapes are interpreted). An error is the line number (from 1) and what is wrong.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, (usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err((i + 1, "expected KEY=VALUE".into()));
        };
        let key = key.trim();
        if !valid_name(key) {
            return Err((i + 1, format!("{key:?} is not a variable name")));
        }
        let value = value.trim();
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .filter(|_| value.len() >= 2)
            .unwrap_or(value);
        out.push((key.to_string(), unquoted.to_string()));
    }
    Ok(out)
}

/// Read and parse the env file at `path`. The error names the file (and line); it never
/// quotes a value.
pub fn read(path: &Path) -> Result<Vec<(String, String)>, String> {
    let shown = path.display();
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(CAP + 1).read_to_string(&mut text))
        .map_err(|e| format!("{shown}: cannot read: {e}"))?;
    if text.len() as u64 > CAP {
        return Err(format!("{shown}: larger than the limit of {CAP} bytes"));
    }
    parse(&text).map_err(|(line, msg)| format!("{shown}:{line}: {msg}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys_values_quotes_comments_and_export() {
        let text = "# db\nexport PGPASSWORD='s3cr=t'\n\nTOKEN = \"abc\"\nEMPTY=\nRAW=a'b\n";
        assert_eq!(
            parse(text).unwrap(),
            [
                ("PGPASSWORD".into(), "s3cr=t".into()),
                ("TOKEN".into(), "abc".into()),
                ("EMPTY".into(), String::new()),
                ("RAW".into(), "a'b".into()),
            ]
        );
    }

    #[test]
    fn a_bad_line_is_named_by_number_without_its_value() {
        assert_eq!(
            parse("A=1\nhunter2\n"),
            Err((2, "expected KEY=VALUE".into()))
        );
        assert_eq!(
            parse("1A=x").unwrap_err(),
            (1, "\"1A\" is not a variable name".into())
        );
        assert!(valid_name("_A1") && !valid_name("") && !valid_name("A-B"));
    }
}
