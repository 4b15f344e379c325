//! Task templates: the placeholder rule, what a matrix expands to, and the exact message of
//! each refusal, pointing at the template's lines.

use std::path::Path;

use super::super::test_util::{err, json_err, parse};
use super::super::{Plan, TaskCommand};
use super::{MAX_MATRIX_TASKS, fill};

/// `fill` with the parameters `table = users` and `shard = 1`.
fn filled(text: &str) -> Result<String, String> {
    let value = |n: &str| match n {
        "table" => Some("users"),
        "shard" => Some("1"),
        _ => None,
    };
    fill(text, value)
        .map(|s| s.into_owned())
        .map_err(str::to_string)
}

#[test]
fn placeholders_are_bare_names_in_one_pair_of_braces() {
    let ok = |text: &str, want: &str| assert_eq!(filled(text), Ok(want.to_string()), "{text}");
    ok("migrate {table} --shard {shard}", "migrate users --shard 1");
    ok("{table}{shard}{table}", "users1users");
    ok("no placeholder", "no placeholder");
    ok("", "");
    // Escapes: two pairs or more lose one, and nothing is substituted.
    ok("{{table}}", "{table}");
    ok("{{print}}", "{print}");
    ok("{{{end}}}", "{{end}}");
    // Braces pair from the inside out: the inner pair is the placeholder.
    ok(r#"'{"shard":{shard}}'"#, r#"'{"shard":1}'"#);
    ok("{{table}", "{users");
    ok("{table}}}", "users}}");
    ok("{{{table}}", "{{table}");
    // The shell's, and every brace that does not enclose a bare name, stay as written.
    for same in [
        "${HOME}",
        "${table}",
        "$${table}",
        "${{table}}",
        "awk '{print $1}'",
        "{ a; b; }",
        "{a,b}",
        "{1..3}",
        "find . -exec rm {} \\;",
        "docker ps --format '{{.Names}}'",
        "{ table }",
        "{table-x}",
        "{9x}",
        "{",
        "}",
        "{{",
        "}}",
        "{table",
        "ça {é} ü",
    ] {
        ok(same, same);
    }
    ok("${X:-{table}}", "${X:-users}");
    ok("é{table}ü", "éusersü");
    // A placeholder naming no parameter, with a name, is refused.
    assert_eq!(filled("awk '{print}'"), Err("print".to_string()));
    assert_eq!(filled("{_x1}"), Err("_x1".to_string()));
}

/// The task template of the README, and a task before it.
const MIGRATE: &str = r#"name = "p"
[[task]]
id = "prepare-users"
run = "true"
[[task]]
id = "prepare-orders"
run = "true"
[[task]]
id = "migrate-{table}-{shard}"
run = "psql -c 'migrate {table}' --shard {shard}"
after = ["prepare-{table}"]
env = { TABLE = "{table}" }
matrix = { table = ["users", "orders"], shard = [1, 2] }
"#;

#[test]
fn a_matrix_makes_a_task_per_combination_first_key_outermost() {
    let p = parse(MIGRATE).unwrap();
    let ids: Vec<&str> = p.tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "prepare-users",
            "prepare-orders",
            "migrate-users-1",
            "migrate-users-2",
            "migrate-orders-1",
            "migrate-orders-2"
        ]
    );
    let t = &p.tasks[4];
    assert_eq!(
        t.command,
        TaskCommand::Shell("psql -c 'migrate orders' --shard 1".into())
    );
    assert_eq!(t.after, ["prepare-orders"]);
    assert_eq!(t.env["TABLE"], "orders");
}

#[test]
fn every_string_value_of_a_template_is_filled() {
    let text = r#"name = "p"
[defaults]
env = { KEEP = "{kept}" }
[[task]]
id = "t-{n}-{on}"
cmd = ["echo", "{n}", "{{n}}"]
cwd = "w/{n}"
env = { N = "{n}", LIT = "${HOME}" }
env_from_parent = ["SECRET_{n}"]
timeout = "{n}s"
kill_grace = "{n}s"
backoff = { initial = "{n}s", max = "1{n}s", factor = 2 }
marks = ["done-{n}"]
owns = ["out/{n}/**"]
memory = "{n}MiB"
on_failure = "continue"
cleanup = "rm -rf /tmp/{n}"
cleanup_delay = "{n}s"
cleanup_timeout = "1{n}s"
rollback = "undo {n}"
emergency = "abort {n}"
agent = "generic"
notify = "echo {n} waits"
stdin = "in/{n}.txt"
retries = 2
priority = 7
worktree = false
interactive = false
matrix = { n = [3, 4], on = [true] }
"#;
    let p = parse(text).unwrap();
    assert_eq!(p.tasks.len(), 2);
    let t = &p.tasks[1];
    assert_eq!(t.id, "t-4-true");
    assert_eq!(
        t.command,
        TaskCommand::Argv(vec!["echo".into(), "4".into(), "{n}".into()])
    );
    assert_eq!(t.cwd, Path::new("/base/w/4"));
    // `[defaults]` is not a template: its braces stay.
    assert_eq!(t.env["KEEP"], "{kept}");
    assert_eq!(
        (t.env["N"].as_str(), t.env["LIT"].as_str()),
        ("4", "${HOME}")
    );
    assert_eq!(t.env_from_parent, ["SECRET_4"]);
    assert_eq!((t.timeout_ms, t.kill_grace_ms), (Some(4000), 4000));
    assert_eq!((t.backoff.initial_ms, t.backoff.max_ms), (4000, 14000));
    assert_eq!(t.marks, ["done-4"]);
    assert_eq!(t.owns, ["out/4/**"]);
    assert_eq!(t.memory, Some(4 << 20));
    assert_eq!(t.cleanup.as_deref(), Some("rm -rf /tmp/4"));
    assert_eq!((t.cleanup_delay_ms, t.cleanup_timeout_ms), (4000, 14000));
    assert_eq!(t.rollback.as_deref(), Some("undo 4"));
    assert_eq!(t.emergency.as_deref(), Some("abort 4"));
    assert_eq!(t.notify.as_deref(), Some("echo 4 waits"));
    assert_eq!(t.stdin.as_deref(), Some(Path::new("/base/in/4.txt")));
    assert_eq!((t.retries, t.priority, t.interactive), (2, 7, false));
}

/// A task without a matrix is never read for placeholders: shell braces of every kind stay.
#[test]
fn a_task_without_a_matrix_is_untouched() {
    let text = "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"echo ${HOME} {x} {{y}}; awk '{print}'\"\n\
                [[task]]\nid = \"b-{n}\"\nrun = \"echo {n}\"\nmatrix = { n = [1] }\n";
    let p = parse(text).unwrap();
    assert_eq!(
        p.tasks[0].command,
        TaskCommand::Shell("echo ${HOME} {x} {{y}}; awk '{print}'".into())
    );
    assert_eq!(p.tasks[1].id, "b-1");
}

#[test]
fn a_templates_id_as_written_stands_for_all_its_tasks() {
    let text = format!(
        "{MIGRATE}[[task]]\nid = \"report\"\nrun = \"true\"\n\
         after = [\"migrate-users-2\", \"migrate-{{table}}-{{shard}}\", \"signal:go\"]\n\
         [[task]]\nid = \"late-{{x}}\"\nrun = \"true\"\nafter = [\"migrate-{{{{table}}}}-{{{{shard}}}}\"]\n\
         matrix = {{ x = [\"a\"] }}\n\
         [[gate]]\nid = \"g\"\napprove = true\nafter = [\"migrate-{{table}}-{{shard}}\"]\n\
         [[race]]\nid = \"r\"\ntasks = [\"migrate-{{table}}-{{shard}}\"]\n\
         [[checkpoint]]\nname = \"cp\"\ntasks = [\"migrate-{{table}}-{{shard}}\"]\n"
    );
    let p = parse(&text).unwrap();
    let all = [
        "migrate-users-1",
        "migrate-users-2",
        "migrate-orders-1",
        "migrate-orders-2",
    ];
    let report = p.tasks.iter().find(|t| t.id == "report").unwrap();
    // Already named: not twice; in the template's place otherwise.
    assert_eq!(
        report.after,
        [
            "migrate-users-2",
            "migrate-users-1",
            "migrate-orders-1",
            "migrate-orders-2"
        ]
    );
    assert_eq!(report.after_signals, ["go"]);
    // In a template, `{{table}}` keeps the braces: the template's id as written.
    let late = p.tasks.iter().find(|t| t.id == "late-a").unwrap();
    assert_eq!(late.after, all);
    assert_eq!(p.gates[0].after, all);
    assert_eq!(p.races[0].tasks, all);
    assert_eq!(p.checkpoints[0].tasks, all);
}

/// The refusals of a matrix's shape name the task, the key, and its line and column.
#[test]
fn a_matrix_of_the_wrong_shape_is_refused_at_its_key() {
    let with = |matrix: &str| {
        err(&format!(
            "name = \"p\"\n[[task]]\nid = \"t-{{n}}\"\nrun = \"echo {{n}}\"\nmatrix = {matrix}\n"
        ))
    };
    assert_eq!(
        with("[1, 2]"),
        "p.toml:5:10: task \"t-{n}\": matrix: must be a table of arrays of values \
         (matrix = { shard = [1, 2] }), not an array"
    );
    assert_eq!(
        with("\"x\""),
        "p.toml:5:10: task \"t-{n}\": matrix: must be a table of arrays of values \
         (matrix = { shard = [1, 2] }), not a string"
    );
    assert_eq!(
        with("1979-05-27"),
        "p.toml:5:10: task \"t-{n}\": matrix: must be a table of arrays of values \
         (matrix = { shard = [1, 2] }), not a date-time"
    );
    assert_eq!(
        with("{}"),
        "p.toml:5:10: task \"t-{n}\": matrix: is empty: give it a parameter and its values \
         (matrix = { shard = [1, 2] })"
    );
    assert_eq!(
        with("{ n = [] }"),
        "p.toml:5:16: task \"t-{n}\": matrix.n: is empty: a parameter needs at least one value"
    );
    assert_eq!(
        with("{ n = 3 }"),
        "p.toml:5:16: task \"t-{n}\": matrix.n: must be an array of values, not an integer"
    );
    assert_eq!(
        with("{ n = { a = 1 } }"),
        "p.toml:5:16: task \"t-{n}\": matrix.n: must be an array of values, not a table"
    );
    assert_eq!(
        with("{ n = [1, [2, 3]] }"),
        "p.toml:5:20: task \"t-{n}\": matrix.n: a value is an array: values are strings, \
         integers or booleans"
    );
    assert_eq!(
        with("{ n = [1, { a = 2 }] }"),
        "p.toml:5:20: task \"t-{n}\": matrix.n: a value is a table: values are strings, \
         integers or booleans"
    );
    assert_eq!(
        with("{ n = [1.5] }"),
        "p.toml:5:17: task \"t-{n}\": matrix.n: a value is a float: values are strings, \
         integers or booleans"
    );
    assert_eq!(
        with("{ n = [1], \"db-host\" = [\"a\"] }"),
        "p.toml:5:33: task \"t-{n}\": matrix.db-host: a parameter's name is letters, digits \
         and _, not starting with a digit"
    );
    // A `[task.matrix]` table: its lines.
    assert_eq!(
        err(
            "name = \"p\"\n[[task]]\nid = \"t-{n}\"\nrun = \"echo {n}\"\n[task.matrix]\nn = [1]\nm = []\n"
        ),
        "p.toml:7:5: task \"t-{n}\": matrix.m: is empty: a parameter needs at least one value"
    );
}

#[test]
fn an_unknown_placeholder_is_refused_where_it_is_written() {
    let text = "name = \"p\"\n[[task]]\nid = \"t-{n}\"\nrun = \"echo {n}\"\n\
                env = { A = \"1\", B = \"x{nn}\" }\nmatrix = { n = [1], m = [2] }\n";
    assert_eq!(
        err(text),
        "p.toml:5:22: task \"t-{n}\": {nn} is not a parameter of its matrix (n, m); \
         write {{nn}} to keep the braces"
    );
    let text = "name = \"p\"\n[[task]]\nid = \"t-{n}\"\nrun = \"awk '{print}' {n}\"\n\
                matrix = { n = [1] }\n";
    assert_eq!(
        err(text),
        "p.toml:4:7: task \"t-{n}\": {print} is not a parameter of its matrix (n); \
         write {{print}} to keep the braces"
    );
    let text = "name = \"p\"\n[[task]]\nid = \"t-{n}\"\nrun = \"true\"\n\
                after = [\"a\",\n  \"b-{x}\"]\nmatrix = { n = [1] }\n";
    assert_eq!(
        err(text),
        "p.toml:6:3: task \"t-{n}\": {x} is not a parameter of its matrix (n); \
         write {{x}} to keep the braces"
    );
}

#[test]
fn two_combinations_giving_one_id_are_refused_at_the_templates_id() {
    let text = "name = \"p\"\n[[task]]\nid = \"migrate-{table}\"\nrun = \"echo {shard}\"\n\
                matrix = { table = [\"users\"], shard = [1, 2] }\n";
    assert_eq!(
        err(text),
        "p.toml:3:6: task \"migrate-{table}\": its matrix gives the id \"migrate-users\" to two \
         tasks (table=users shard=1; table=users shard=2); the id must tell them apart"
    );
    // Values that run together collide too.
    let text = "name = \"p\"\n[[task]]\nid = \"t-{a}-{b}\"\nrun = \"true\"\n\
                matrix = { a = [\"x-y\", \"x\"], b = [\"z\", \"y-z\"] }\n";
    assert_eq!(
        err(text),
        "p.toml:3:6: task \"t-{a}-{b}\": its matrix gives the id \"t-x-y-z\" to two tasks \
         (a=x-y b=z; a=x b=y-z); the id must tell them apart"
    );
}

/// Expanded tasks go through every check of a plan, refused at the template's lines.
#[test]
fn expanded_tasks_are_checked_like_any_other() {
    // A duplicate of another task's id.
    let text = "name = \"p\"\n[[task]]\nid = \"t-2\"\nrun = \"true\"\n\
                [[task]]\nid = \"t-{n}\"\nrun = \"true\"\nmatrix = { n = [1, 2] }\n";
    assert_eq!(
        err(text),
        "p.toml:6:6: duplicate task id \"t-2\" (first defined at line 3)"
    );
    // An id that is not a name.
    let text =
        "name = \"p\"\n[[task]]\nid = \"t-{n}\"\nrun = \"true\"\nmatrix = { n = [\"a/b\"] }\n";
    assert_eq!(
        err(text),
        "p.toml:3:6: invalid task id \"t-a/b\": must be 1-64 characters of [A-Za-z0-9._-] \
         not starting with a dot"
    );
    // An unknown dependency, at the entry of the template's `after`.
    let text = "name = \"p\"\n[[task]]\nid = \"prepare-users\"\nrun = \"true\"\n\
                [[task]]\nid = \"m-{table}\"\nrun = \"true\"\nafter = [\"prepare-{table}\"]\n\
                matrix = { table = [\"users\", \"orders\"] }\n";
    assert_eq!(
        err(text),
        "p.toml:8:10: task \"m-orders\" depends on unknown task \"prepare-orders\""
    );
    // A bad duration made by a value.
    let text = "name = \"p\"\n[[task]]\nid = \"t-{n}\"\nrun = \"true\"\ntimeout = \"{n}\"\n\
                matrix = { n = [\"1s\", \"soon\"] }\n";
    assert_eq!(
        err(text),
        "p.toml:5:11: invalid duration \"soon\": expected number at 0"
    );
    // Expansions run at the same time: their `owns` must not overlap.
    let text = "name = \"p\"\n[[task]]\nid = \"t-{n}\"\nrun = \"true\"\nowns = [\"out/{n}/**\", \"log\"]\n\
                matrix = { n = [1, 2] }\n";
    assert_eq!(
        err(text),
        "p.toml:5:23: tasks \"t-1\" and \"t-2\" may run at the same time and both write \
         \"log\" (\"log\" in \"t-1\", \"log\" in \"t-2\"); order them with after, or narrow owns"
    );
    // A cycle through a template's id.
    let text = "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"true\"\nafter = [\"t-{n}\"]\n\
                [[task]]\nid = \"t-{n}\"\nrun = \"true\"\nafter = [\"a\"]\nmatrix = { n = [1] }\n";
    assert_eq!(err(text), "p.toml:3:6: dependency cycle: a -> t-1 -> a");
    // The entries around a template's id keep their positions.
    let text = "name = \"p\"\n[[task]]\nid = \"t-{n}\"\nrun = \"true\"\nmatrix = { n = [1, 2] }\n\
                [[task]]\nid = \"b\"\nrun = \"true\"\nafter = [\"t-{n}\", \"zz\"]\n\
                [[gate]]\nid = \"g\"\napprove = true\nafter = [\"t-{n}\", \"yy\"]\n";
    assert_eq!(
        err(text),
        "p.toml:13:19: gate \"g\": after names unknown task \"yy\""
    );
    let text = text.replace(", \"yy\"", "");
    assert_eq!(
        err(&text),
        "p.toml:9:19: task \"b\" depends on unknown task \"zz\""
    );
}

#[test]
fn too_many_tasks_from_matrices_are_refused_before_they_are_made() {
    let values: Vec<String> = (0..1000).map(|n| n.to_string()).collect();
    let axis = format!("[{}]", values.join(", "));
    let text = format!(
        "name = \"p\"\n[[task]]\nid = \"t-{{a}}-{{b}}\"\nrun = \"true\"\nmatrix = {{ a = {axis}, b = {axis} }}\n"
    );
    assert_eq!(
        err(&text),
        format!(
            "p.toml:5:10: task \"t-{{a}}-{{b}}\": matrix: makes 1000000 tasks; at most \
             {MAX_MATRIX_TASKS} may come from matrices"
        )
    );
    // Together: each template is under the limit, not all of them.
    let axis: Vec<String> = (0..60_000).map(|n| n.to_string()).collect();
    let axis = axis.join(",");
    let text = format!(
        "name = \"p\"\n[[task]]\nid = \"a-{{n}}\"\nrun = \"true\"\nmatrix = {{ n = [{axis}] }}\n\
         [[task]]\nid = \"b-{{n}}\"\nrun = \"true\"\nmatrix = {{ n = [{axis}] }}\n"
    );
    assert_eq!(
        err(&text),
        "p.toml:9:10: task \"b-{n}\": matrix: makes 60000 tasks, 120000 tasks with the matrices \
         before it; at most 100000 may come from matrices"
    );
    // Parameters enough to overflow a product are refused the same way.
    let keys: Vec<String> = (0..70).map(|k| format!("k{k} = [1, 2]")).collect();
    let text = format!(
        "name = \"p\"\n[[task]]\nid = \"t\"\nrun = \"true\"\nmatrix = {{ {} }}\n",
        keys.join(", ")
    );
    assert_eq!(
        err(&text),
        "p.toml:5:10: task \"t\": matrix: makes more tasks than can be counted; at most 100000 \
         may come from matrices"
    );
}

/// What a matrix makes is bounded by its text, not only by its count: a long command
/// times many combinations is refused before the memory is taken.
#[test]
fn the_text_matrices_make_is_bounded() {
    let long = "x".repeat(4 << 20);
    let axis: Vec<String> = (0..100).map(|n| n.to_string()).collect();
    let text = format!(
        "name = \"p\"\n[[task]]\nid = \"t-{{n}}\"\nrun = \"{long}\"\nmatrix = {{ n = [{}] }}\n",
        axis.join(",")
    );
    assert_eq!(
        err(&text),
        "p.toml:5:10: task \"t-{n}\": matrix: the tasks it makes hold more than 268435456 \
         bytes of text"
    );
}

#[test]
fn json_plans_have_templates_too() {
    let text = r#"{"name": "p", "task": [
  {"id": "m-{table}-{shard}", "run": "echo {table} {shard}",
   "matrix": {"table": ["users", "orders"], "shard": [1, 2]}}]}"#;
    let p = Plan::parse("p.json", text, Path::new("/b")).unwrap();
    let ids: Vec<&str> = p.tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["m-users-1", "m-users-2", "m-orders-1", "m-orders-2"]);
    let bad = r#"{"name": "p", "task": [
  {"id": "m-{x}", "run": "echo {x}",
   "matrix": {"x": [1], "y": [null]}}]}"#;
    assert_eq!(
        json_err(bad),
        "p.json:3:31: task \"m-{x}\": matrix.y: a value is null: values are strings, \
         integers or booleans"
    );
    let bad = r#"{"name": "p", "task": [
  {"id": "m-{x}", "run": "echo {x}",
   "matrix": {"x": [1], "x": [2]}}]}"#;
    assert_eq!(
        json_err(bad),
        "p.json:3:30: task \"m-{x}\": matrix.x: is given twice"
    );
    let bad = r#"{"name": "p", "task": [
  {"id": "m-{x}", "env": {"A": "{y}"}, "run": "true", "matrix": {"x": [1]}}]}"#;
    assert_eq!(
        json_err(bad),
        "p.json:2:32: task \"m-{x}\": {y} is not a parameter of its matrix (x); \
         write {{y}} to keep the braces"
    );
}

/// Large plans are parsed a slice of tasks at a time: templates among them expand alike.
#[test]
fn templates_in_a_large_plan() {
    let mut text = String::from("name = \"big\"\n");
    for i in 0..5000 {
        text.push_str(&format!("[[task]]\nid = \"t{i}\"\nrun = \"echo {i}\"\n"));
    }
    text.push_str("[[task]]\nid = \"m-{n}\"\nrun = \"echo {n}\"\nafter = [\"t7\"]\n[task.matrix]\nn = [1, 2, 3]\n");
    assert!(text.len() > super::super::raw::CHUNKED_ABOVE);
    let p = parse(&text).unwrap();
    assert_eq!(p.tasks.len(), 5003);
    assert_eq!(p.tasks[5002].id, "m-3");
    assert_eq!(p.tasks[5002].command, TaskCommand::Shell("echo 3".into()));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// A matrix makes the product of its arrays' lengths in tasks, with unique ids when the
    /// id uses every parameter (values distinct within a parameter, and free of the
    /// separator), in order, first parameter outermost.
    #[test]
    fn count_is_the_product_and_ids_are_unique(lens in proptest::collection::vec(1usize..5, 1..5)) {
        let names: Vec<String> = (0..lens.len()).map(|k| format!("p{k}")).collect();
        let id: Vec<String> = names.iter().map(|n| format!("{{{n}}}")).collect();
        let axes: Vec<String> = names
            .iter()
            .zip(&lens)
            .map(|(n, &len)| {
                let vals: Vec<String> = (0..len).map(|v| format!("\"v{v}\"")).collect();
                format!("{n} = [{}]", vals.join(", "))
            })
            .collect();
        let text = format!(
            "name = \"p\"\n[[task]]\nid = \"t-{}\"\nrun = \"echo {}\"\nmatrix = {{ {} }}\n",
            id.join("-"),
            id.join(" "),
            axes.join(", ")
        );
        let p = parse(&text).unwrap();
        let product: usize = lens.iter().product();
        proptest::prop_assert_eq!(p.tasks.len(), product);
        let ids: std::collections::HashSet<&str> = p.tasks.iter().map(|t| t.id.as_str()).collect();
        proptest::prop_assert_eq!(ids.len(), product);
        // The last combination is every parameter's last value.
        let last: Vec<String> = lens.iter().map(|&l| format!("v{}", l - 1)).collect();
        let want = format!("t-{}", last.join("-"));
        proptest::prop_assert_eq!(p.tasks.last().map(|t| t.id.as_str()), Some(want.as_str()));
    }

    /// Any text through `fill` gives text or an unknown name, never a panic; text without a
    /// placeholder comes back the same.
    #[test]
    fn fill_never_panics(text in "[{}$a-z_é ]{0,40}") {
        let r = fill(&text, |n| (n == "a").then_some("VALUE"));
        if !text.contains('{') {
            proptest::prop_assert_eq!(r.map(|s| s.into_owned()), Ok(text.clone()));
        }
    }
}
