//! The pattern language, the exact overlap test (checked against brute force over a small
//! alphabet), and the ordering of tasks.

use proptest::prelude::*;

use super::*;

fn pat(s: &str) -> Pattern {
    Pattern::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

fn overlap(a: &str, b: &str) -> Option<String> {
    pat(a).overlap(&pat(b))
}

/// A glob component matched the slow, obvious way: backtracking.
fn glob_matches(glob: &[char], name: &[char]) -> bool {
    match glob.split_first() {
        None => name.is_empty(),
        Some(('*', rest)) => (0..=name.len()).any(|k| glob_matches(rest, &name[k..])),
        Some((c, rest)) => name.first() == Some(c) && glob_matches(rest, &name[1..]),
    }
}

/// A path matched against a pattern's text, straight from the documented rules.
fn path_matches(pattern: &str, path: &str) -> bool {
    let mut globs: Vec<&str> = pattern.split('/').collect();
    let subtree = globs.last() == Some(&"**");
    if subtree {
        globs.pop();
    }
    let names: Vec<&str> = path.split('/').collect();
    let long_enough = if subtree {
        names.len() >= globs.len()
    } else {
        names.len() == globs.len()
    };
    long_enough
        && globs.iter().zip(&names).all(|(g, n)| {
            let g: Vec<char> = g.chars().collect();
            let n: Vec<char> = n.chars().collect();
            glob_matches(&g, &n)
        })
}

/// Every non-empty string over `ab` of at most `len` characters.
fn names(len: usize) -> Vec<String> {
    let mut all = vec![String::new()];
    let mut out = Vec::new();
    for _ in 0..len {
        all = all
            .iter()
            .flat_map(|s| [format!("{s}a"), format!("{s}b")])
            .collect();
        out.extend(all.iter().cloned());
    }
    out
}

/// Every path of 1 to `depth` components from `names`.
fn paths(names: &[String], depth: usize) -> Vec<String> {
    let mut level: Vec<String> = names.to_vec();
    let mut out = level.clone();
    for _ in 1..depth {
        level = level
            .iter()
            .flat_map(|p| names.iter().map(move |n| format!("{p}/{n}")))
            .collect();
        out.extend(level.iter().cloned());
    }
    out
}

#[test]
fn matching_takes_paths_literally() {
    assert!(pat("repo/a/**").matches("repo/a"));
    assert!(pat("repo/a/**").matches("repo/a/x/y.txt"));
    assert!(!pat("repo/a/**").matches("repo/ab"));
    assert!(pat("**").matches("x") && !pat("**").matches(""));
    assert!(pat("src/*.rs").matches("src/.x.rs") && !pat("src/*.rs").matches("src/a/b.rs"));
    assert!(pat("a*b*c").matches("abbbcbc") && !pat("a*b*c").matches("acb"));
    // A `*` in a path is a character like any other.
    assert!(pat("x/*").matches("x/*") && !pat("x/a").matches("x/*"));
    assert!(!pat("a").matches("a/") && !pat("a/**").matches("b"));
}

#[test]
fn accepted_patterns_keep_their_text() {
    for s in [
        "db/schema.rb",
        "app",
        "app/**",
        "**",
        "app/*.rb",
        "logs/*/out",
        "a*b*c",
        "*",
        ".hidden/x",
        "a.b/c..d",
    ] {
        assert_eq!(pat(s).to_string(), s);
    }
}

#[test]
fn refused_patterns_say_why() {
    let long = "x".repeat(NAME_MAX + 1);
    let cases: Vec<(&str, &str)> = vec![
        ("", "empty"),
        (
            "/etc/passwd",
            "absolute (owns are relative to the plan's directory)",
        ),
        ("a/../b", "a \".\" or \"..\" component"),
        ("./a", "a \".\" or \"..\" component"),
        ("..", "a \".\" or \"..\" component"),
        ("a//b", "an empty component"),
        (
            "app/",
            "ends with \"/\" (name the path, or add \"**\" for everything below it)",
        ),
        ("a/**/b", "\"**\" only as the whole last component"),
        ("a**", "\"**\" only as the whole last component"),
        ("a/b**", "\"**\" only as the whole last component"),
        ("**/**", "\"**\" only as the whole last component"),
        (
            "a?",
            "'?' is not supported (only \"*\" within a component, and \"**\" as the last)",
        ),
        (
            "a/[bc]",
            "'[' is not supported (only \"*\" within a component, and \"**\" as the last)",
        ),
        (
            "a]",
            "']' is not supported (only \"*\" within a component, and \"**\" as the last)",
        ),
        (
            "{a,b}",
            "'{' is not supported (only \"*\" within a component, and \"**\" as the last)",
        ),
        (
            "a\\*",
            "'\\\\' is not supported (only \"*\" within a component, and \"**\" as the last)",
        ),
        (&long, "a component longer than 255 bytes"),
    ];
    for (s, why) in cases {
        let e = Pattern::parse(s).expect_err(s);
        assert_eq!(e.to_string(), why, "{s:?}");
    }
    assert!(Pattern::parse(&"x".repeat(NAME_MAX)).is_ok());
}

#[test]
fn overlaps_with_an_example_path() {
    // A literal directory is that path only; `dir/**` is the directory and below.
    assert_eq!(overlap("app", "app/x"), None);
    assert_eq!(overlap("app/**", "app"), Some("app".into()));
    assert_eq!(overlap("app/**", "app/x"), Some("app/x".into()));
    assert_eq!(overlap("app/**", "apps/x"), None);
    assert_eq!(overlap("**", "db/schema.rb"), Some("db/schema.rb".into()));
    assert_eq!(overlap("**", "**"), Some("x".into()));
    assert_eq!(
        overlap("app/models/**", "app/*/user.rb"),
        Some("app/models/user.rb".into())
    );
    assert_eq!(overlap("app/*.rb", "app/*.py"), None);
    assert_eq!(overlap("app/a*", "app/*b"), Some("app/ab".into()));
    assert_eq!(overlap("*", "*"), Some("x".into()));
    assert_eq!(overlap("*", "x/y"), None);
    assert_eq!(overlap("a*b*c", "*bc*"), Some("abc".into()));
    assert_eq!(overlap("a*a", "b*"), None);
    assert_eq!(overlap("logs/*/out", "logs/**"), Some("logs/x/out".into()));
    assert_eq!(
        overlap("db/schema.rb", "db/schema.rb"),
        Some("db/schema.rb".into())
    );
}

/// Every path over `ab` of up to 2 components of up to 4 characters (more than a path
/// shared by two [`small_pattern`]s needs), and of 3 components of up to 2: computed once.
fn small_paths() -> &'static [String] {
    static PATHS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    PATHS.get_or_init(|| {
        let mut all = paths(&names(4), 2);
        all.extend(paths(&names(2), 3));
        all
    })
}

/// Patterns over the alphabet `ab*`, components of 1 to 2 characters, 1 to 2 of them,
/// maybe ending in `**`, or a bare `**`.
fn small_pattern() -> impl Strategy<Value = String> {
    let component = "[ab*]{1,2}".prop_filter("no **", |c| !c.contains("**"));
    let prefix = prop::collection::vec(component, 1..=2).prop_map(|cs| cs.join("/"));
    prop_oneof![
        prefix.clone(),
        prefix.prop_map(|p| format!("{p}/**")),
        Just("**".to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Two components of up to 4 characters share a name iff brute force over every name
    /// of up to 8 characters of `ab` finds one (a shortest shared name has at most as many
    /// characters as the two have literals), and the name given matches both.
    #[test]
    fn component_intersection_is_exact(a in "[ab*]{1,4}", b in "[ab*]{1,4}") {
        let (ga, gb): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
        let brute = names(8).into_iter().any(|n| {
            let n: Vec<char> = n.chars().collect();
            glob_matches(&ga, &n) && glob_matches(&gb, &n)
        });
        let found = common_name(&a, &b);
        prop_assert_eq!(found.is_some(), brute);
        if let Some(n) = found {
            let n: Vec<char> = n.chars().collect();
            prop_assert!(!n.is_empty() && glob_matches(&ga, &n) && glob_matches(&gb, &n));
        }
    }

    /// Two patterns overlap iff some small path matches both, and the example path
    /// matches both.
    #[test]
    fn pattern_overlap_is_exact(a in small_pattern(), b in small_pattern()) {
        let (pa, pb) = (pat(&a), pat(&b));
        let found = pa.overlap(&pb);
        prop_assert_eq!(found.is_some(), pb.overlap(&pa).is_some());
        prop_assert_eq!(found.is_some(), pa.overlaps(&pb));
        let brute = small_paths().iter().any(|p| path_matches(&a, p) && path_matches(&b, p));
        prop_assert_eq!(found.is_some(), brute);
        if let Some(p) = found {
            prop_assert!(path_matches(&a, &p) && path_matches(&b, &p), "{}", p);
        }
    }

    /// `Pattern::matches` says what the documented rules say, on every small path.
    #[test]
    fn matching_follows_the_rules(a in small_pattern()) {
        let p = pat(&a);
        for path in small_paths() {
            prop_assert_eq!(p.matches(path), path_matches(&a, path), "{} {}", a, path);
        }
    }

    /// Comparing only the tasks the prefix tree pairs finds what comparing every pair
    /// finds.
    #[test]
    fn the_prefix_tree_misses_no_pair(
        owns in prop::collection::vec(prop::collection::vec(small_pattern(), 0..3), 2..7),
    ) {
        let owns: Vec<Vec<Pattern>> =
            owns.iter().map(|ps| ps.iter().map(|p| pat(p)).collect()).collect();
        let n = owns.len();
        let every_pair = (0..n)
            .flat_map(|b| (0..b).map(move |a| (a, b)))
            .find_map(|(a, b)| pair_conflict(&owns[a], &owns[b], a, b));
        prop_assert_eq!(first_conflict(&owns, &vec![Vec::new(); n]), every_pair);
    }

    /// Any text is a pattern or a reason, never a panic; a pattern prints as written.
    #[test]
    fn parsing_never_panics(text in "[a-z*/.?\\[{\\\\]{0,12}") {
        if let Ok(p) = Pattern::parse(&text) {
            prop_assert_eq!(p.to_string(), text);
        }
    }
}

#[test]
fn ordering_follows_edges_both_ways_but_not_across_branches() {
    // 0 -> 1 -> 3, 0 -> 2, 4 alone.
    let order = vec![vec![], vec![0], vec![0], vec![1], vec![]];
    let o = Ordering::new(&order);
    let rel = o.related(&[1, 4]);
    // Bit 0: related to task 1; bit 1: related to task 4.
    assert_eq!(rel, vec![0b01, 0b01, 0b00, 0b01, 0b10]);
}

#[test]
fn the_first_conflict_is_by_the_later_task_then_the_earlier() {
    let owns = |list: &[&[&str]]| -> Vec<Vec<Pattern>> {
        list.iter()
            .map(|ps| ps.iter().map(|p| pat(p)).collect())
            .collect()
    };
    let o = owns(&[&["a/**"], &["b"], &["c", "b"], &["a/x"]]);
    // No edges: 2 conflicts with 1 (over "b"), 3 with 0; 2 is the earlier later task.
    let c = first_conflict(&o, &[vec![], vec![], vec![], vec![]]).unwrap();
    assert_eq!(
        c,
        Conflict {
            first: 1,
            first_pattern: 0,
            second: 2,
            second_pattern: 1,
            path: "b".into()
        }
    );
    // 2 after 1: only 0 and 3 remain.
    let c = first_conflict(&o, &[vec![], vec![], vec![1], vec![]]).unwrap();
    assert_eq!((c.first, c.second, c.path.as_str()), (0, 3, "a/x"));
    // Ordered through a task without owns: none.
    let o = owns(&[&["a/**"], &[], &["a/x"]]);
    assert_eq!(first_conflict(&o, &[vec![], vec![0], vec![1]]), None);
    assert!(first_conflict(&o, &[vec![], vec![0], vec![]]).is_some());
}

/// Ten thousand tasks that may all run together, each owning its own directory and file
/// (50 million pairs of patterns compared): none overlap.
#[test]
fn ten_thousand_disjoint_owners() {
    let n = 10_000;
    let order: Vec<Vec<usize>> = vec![Vec::new(); n];
    let owns: Vec<Vec<Pattern>> = (0..n)
        .map(|i| vec![pat(&format!("out/t{i}/**")), pat(&format!("logs/t{i}.log"))])
        .collect();
    assert_eq!(first_conflict(&owns, &order), None);
}

/// Many owners in a long chain (every pair ordered), and more than 64 of them, so the
/// work is split: no conflict, and an unordered pair at the end is still found.
#[test]
fn many_owners_in_a_chain() {
    let n = 3000;
    let mut order: Vec<Vec<usize>> = (0..n)
        .map(|i| if i == 0 { vec![] } else { vec![i - 1] })
        .collect();
    let owns: Vec<Vec<Pattern>> = (0..n).map(|_| vec![pat("db/schema.rb")]).collect();
    assert_eq!(first_conflict(&owns, &order), None);
    order[n - 1] = vec![];
    let c = first_conflict(&owns, &order).unwrap();
    assert_eq!((c.first, c.second), (0, n - 1));
}
