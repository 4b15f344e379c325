//! Helpers shared by the plan module's tests: parse a plan from text, get the exact message
//! of a refused one, write `[[task]]` blocks.

use std::path::Path;

use super::{Plan, PlanError};

/// What every invalid-name message ends with.
pub(super) const SUFFIX: &str = "must be 1-64 characters of [A-Za-z0-9._-] not starting with a dot";

/// A TOML plan named `p.toml`, relative paths against `/base`.
pub(super) fn parse(text: &str) -> Result<Plan, PlanError> {
    Plan::parse("p.toml", text, Path::new("/base"))
}

/// The message refusing a TOML plan.
pub(super) fn err(text: &str) -> String {
    match parse(text) {
        Ok(p) => panic!("accepted: {p:?}"),
        Err(e) => e.to_string(),
    }
}

/// The message refusing a JSON plan.
pub(super) fn json_err(text: &str) -> String {
    match Plan::parse("p.json", text, Path::new("/base")) {
        Ok(p) => panic!("accepted: {p:?}"),
        Err(e) => e.to_string(),
    }
}

/// A plan named `p` of `[[task]]` blocks: (id, after).
pub(super) fn tasks(list: &[(&str, &[&str])]) -> String {
    let mut s = String::from("name = \"p\"\n");
    for (id, after) in list {
        s.push_str(&format!("[[task]]\nid = \"{id}\"\nrun = \"true\"\n"));
        if !after.is_empty() {
            let quoted: Vec<String> = after.iter().map(|a| format!("\"{a}\"")).collect();
            s.push_str(&format!("after = [{}]\n", quoted.join(", ")));
        }
    }
    s
}
