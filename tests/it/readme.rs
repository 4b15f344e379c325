//! The documentation is true: every plan shown in README.md (a ```toml block with a
//! `[[task]]`) and every plan in examples/ passes `orchestrator plan`.
//!
//! A block whose info string says `toml fragment` is skipped: a piece of a plan shown on
//! its own (a single key, a table without tasks) that cannot be a plan by itself. None is
//! needed today; the marker keeps a future fragment from being mistaken for a broken plan.

use std::path::Path;

use crate::util::*;

/// The plans among README.md's ```toml blocks: (line of the opening fence, text).
fn readme_plans() -> Vec<(usize, String)> {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let text = std::fs::read_to_string(&readme).unwrap();
    let mut plans = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for (n, line) in text.lines().enumerate() {
        let fence = line.trim_start();
        match &mut open {
            None if fence.starts_with("```") => {
                // Line 0: a block of another kind, read past to its end.
                let info: Vec<&str> = fence[3..].split_whitespace().collect();
                let plan = info.first() == Some(&"toml") && !info.contains(&"fragment");
                open = Some((if plan { n + 1 } else { 0 }, String::new()));
            }
            Some(_) if fence.starts_with("```") => {
                let (at, body) = open.take().unwrap();
                if at != 0 && body.lines().any(|l| l.trim() == "[[task]]") {
                    plans.push((at, body));
                }
            }
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
    assert!(open.is_none(), "README.md: a fenced block is not closed");
    plans
}

#[test]
fn every_plan_in_the_readme_passes_plan() {
    let plans = readme_plans();
    assert!(plans.len() >= 2, "README.md has its plans: {}", plans.len());
    let mut failed = Vec::new();
    for (line, text) in plans {
        let sb = Sandbox::new();
        sb.write("plan.toml", &text);
        let o = sb.run(&["plan", "plan.toml"]);
        if o.status.code() != Some(0) {
            failed.push(format!("README.md:{line}: {}", stderr(&o).trim_end()));
        }
        assert!(!sb.sessions().exists());
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// Run from the repository's root, as the examples' comments say.
#[test]
fn every_example_passes_plan() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut examples: Vec<_> = std::fs::read_dir(root.join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    examples.sort();
    assert!(examples.len() >= 5, "{examples:?}");
    let sb = Sandbox::new();
    for p in examples {
        let mut c = sb.orch();
        c.current_dir(root).arg("plan").arg(&p);
        let o = run_with_deadline(c, std::time::Duration::from_secs(60));
        assert_eq!(o.status.code(), Some(0), "{}: {}", p.display(), stderr(&o));
    }
    assert!(!sb.sessions().exists());
}

/// The commands the examples' comments suggest exist: each `orchestrator VERB` is a verb
/// of `orchestrator`, each `examples/NAME` a file, and none builds with `cargo run` (which
/// builds only the orchestrator, and it needs `worker` beside it). Running them against
/// real sessions is done by hand; their verbs and files are what can rot unnoticed.
#[test]
fn commands_in_the_examples_comments_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let help = Sandbox::new().run(&["--help"]);
    let help = stdout(&help);
    let verbs: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        verbs.contains(&"run") && verbs.contains(&"rollback"),
        "{verbs:?}"
    );
    let mut seen = 0;
    for entry in std::fs::read_dir(root.join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            let Some((_, comment)) = line.split_once('#') else {
                continue;
            };
            let at = format!("{}:{}", path.display(), n + 1);
            assert!(!comment.contains("cargo run"), "{at}: {comment}");
            // A command: `orchestrator` opening the comment, or in backticks, or a path's.
            for (i, _) in comment.match_indices("orchestrator ") {
                let before = comment[..i].chars().last();
                let first = comment[..i].trim().is_empty();
                if !(first || matches!(before, Some('`' | '/'))) {
                    continue; // prose
                }
                let verb = comment[i..].split_whitespace().nth(1).unwrap_or("");
                let verb = verb.trim_end_matches(['`', ')', ',']);
                assert!(verbs.contains(&verb), "{at}: no verb {verb:?}");
                seen += 1;
            }
            let words = comment.split(|c: char| c.is_whitespace() || "`()".contains(c));
            for w in words.filter(|w| w.starts_with("examples/")) {
                assert!(root.join(w).exists(), "{at}: no file {w}");
            }
        }
    }
    assert!(seen >= 8, "{seen} commands found");
}
