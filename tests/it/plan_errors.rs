//! Every plan error gives its exact message, exit code 2, and creates nothing.

use std::fs;

use crate::util::*;

/// Run `orchestrator run` on `text` and check the exact error and that nothing was made.
fn refused(text: &str, expected: &str) {
    let sb = Sandbox::new();
    let p = sb.write("plan.toml", text);
    let o = sb.run(&["run", "plan.toml", "--launcher", "background"]);
    assert_eq!(o.status.code(), Some(2), "stderr: {}", stderr(&o));
    assert_eq!(stderr(&o), format!("error: {expected}\n"));
    assert_eq!(stdout(&o), "");
    assert!(
        !sb.sessions().exists(),
        "no session directory may be created"
    );
    // `plan` reports the same error.
    let o = sb.run(&["plan", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn unknown_key() {
    let sb_text = "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"true\"\nrn = \"x\"\n";
    let sb = Sandbox::new();
    sb.write("plan.toml", sb_text);
    let o = sb.run(&["run", "plan.toml"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.starts_with("error: plan.toml:5:1: unknown field `rn`"),
        "{err}"
    );
    assert!(!sb.sessions().exists());
}

#[test]
fn duplicate_id() {
    refused(
        "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"true\"\n[[task]]\nid = \"a\"\nrun = \"true\"\n",
        "plan.toml:6:6: duplicate task id \"a\" (first defined at line 3)",
    );
}

#[test]
fn unknown_dependency() {
    refused(
        "name = \"p\"\n[[task]]\nid = \"b\"\nrun = \"true\"\nafter = [\"zz\"]\n",
        "plan.toml:5:10: task \"b\" depends on unknown task \"zz\"",
    );
}

#[test]
fn dependency_cycle() {
    refused(
        "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"true\"\nafter = [\"c\"]\n\
         [[task]]\nid = \"b\"\nrun = \"true\"\nafter = [\"a\"]\n\
         [[task]]\nid = \"c\"\nrun = \"true\"\nafter = [\"b\"]\n",
        "plan.toml:3:6: dependency cycle: a -> c -> b -> a",
    );
}

#[test]
fn bad_id() {
    refused(
        "name = \"p\"\n[[task]]\nid = \"../x\"\nrun = \"true\"\n",
        "plan.toml:3:6: invalid task id \"../x\": must be 1-64 characters of [A-Za-z0-9._-] not starting with a dot",
    );
}

#[test]
fn missing_run_and_cmd() {
    refused(
        "name = \"p\"\n[[task]]\nid = \"a\"\n",
        "plan.toml:3:6: task \"a\" has neither `run` nor `cmd`",
    );
}

#[test]
fn zero_workers() {
    refused(
        "name = \"p\"\nworkers = 0\n[[task]]\nid = \"a\"\nrun = \"true\"\n",
        "plan.toml:2:11: workers must be at least 1",
    );
}

#[test]
fn missing_plan_file() {
    let sb = Sandbox::new();
    let o = sb.run(&["run", "nope.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "error: nope.toml: cannot read plan: No such file or directory (os error 2)\n"
    );
    assert!(!sb.sessions().exists());
}

#[test]
fn plan_prints_waves_and_critical_path() {
    let sb = Sandbox::new();
    sb.write(
        "d.toml",
        "name = \"d\"\nworkers = 2\n[[task]]\nid = \"a\"\nrun = \"true\"\n\
         [[task]]\nid = \"b\"\nrun = \"true\"\nafter = [\"a\"]\n\
         [[task]]\nid = \"c\"\nrun = \"true\"\nafter = [\"a\"]\n\
         [[task]]\nid = \"d\"\nrun = \"true\"\nafter = [\"b\", \"c\"]\n",
    );
    let o = sb.run(&["plan", "d.toml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "plan d: 4 tasks, 2 workers, 3 waves\nwave 1: a\nwave 2: b, c\n  b: after a\n  c: after a\n\
         wave 3: d\n  d: after b, c\ncritical path: a -> b -> d (3 tasks)\n"
    );
    let o = sb.run(&["plan", "d.toml", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["waves"], serde_json::json!([["a"], ["b", "c"], ["d"]]));
    assert_eq!(v["critical_path"], serde_json::json!(["a", "b", "d"]));
    let o = sb.run(&["plan", "d.toml", "--dot"]);
    let dot = stdout(&o);
    assert!(dot.starts_with("digraph"), "{dot}");
    assert!(dot.contains("\"a\" -> \"b\""), "{dot}");
    assert!(!sb.sessions().exists());
}

#[test]
fn zero_timeout() {
    refused(
        "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"true\"\ntimeout = \"0s\"\n",
        "plan.toml:5:11: timeout must be at least 1ms (got \"0s\")",
    );
}

#[test]
fn negative_kill_grace() {
    refused(
        "name = \"p\"\n[defaults]\nkill_grace = \"-2s\"\n[[task]]\nid = \"a\"\nrun = \"true\"\n",
        "plan.toml:3:14: kill_grace must not be negative (got \"-2s\")",
    );
}

/// A `cwd` is checked when the plan is loaded (relative to the directory `run` is started
/// in), not when the task first runs.
#[test]
fn missing_cwd() {
    let sb = Sandbox::new();
    let p = sb.write(
        "plan.toml",
        "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"true\"\n\
         [[task]]\nid = \"b\"\nrun = \"true\"\ncwd = \"no/such/dir\"\n",
    );
    let expected = format!(
        "error: plan.toml:8:7: cwd {:?} does not exist\n",
        sb.path().join("no/such/dir").display().to_string()
    );
    for verb in ["run", "plan"] {
        let o = sb.run(&[verb, "plan.toml"]);
        assert_eq!(o.status.code(), Some(2), "{verb}: {}", stderr(&o));
        assert_eq!(stderr(&o), expected, "{verb}");
    }
    assert!(!sb.sessions().exists());
    fs::create_dir_all(sb.path().join("no/such/dir")).unwrap();
    let o = sb.run(&["plan", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// JSON plans' semantic errors carry a line and column, as TOML plans' do.
#[test]
fn json_plan_error_has_line_and_column() {
    let sb = Sandbox::new();
    sb.write(
        "plan.json",
        "{\"name\": \"p\",\n \"task\": [\n  {\"id\": \"a\", \"run\": \"true\", \"after\": [\"zz\"]}\n]}\n",
    );
    let o = sb.run(&["run", "plan.json", "--launcher", "background"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        "error: plan.json:3:40: task \"a\" depends on unknown task \"zz\"\n"
    );
    assert!(!sb.sessions().exists());
}

#[test]
fn a_claim_larger_than_its_pool_is_refused_at_plan_time() {
    refused(
        "name = \"p\"\n[resources]\ndb = { max = 4 }\n[[task]]\nid = \"a\"\nrun = \"true\"\nresources = { db = 5 }\n",
        "plan.toml:7:13: task \"a\": resources.db: claims 5, more than the pool's max of 4: it could never start",
    );
}

#[test]
fn a_claim_on_an_unknown_pool_is_refused() {
    refused(
        "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"true\"\nresources = { dbx = 1 }\n",
        "plan.toml:5:13: task \"a\": resources.dbx: no such pool in [resources]",
    );
}

#[test]
fn pool_thresholds_out_of_order_are_refused() {
    refused(
        "name = \"p\"\n[resources]\ndb = { max = 10, warn = 8, critical = 5 }\n[[task]]\nid = \"a\"\nrun = \"true\"\n",
        "plan.toml:3:6: resources.db: warn (8) is above critical (5)",
    );
    refused(
        "name = \"p\"\n[resources]\ndb = { max = 0 }\n[[task]]\nid = \"a\"\nrun = \"true\"\n",
        "plan.toml:3:6: resources.db: max must be at least 1 (got 0)",
    );
    refused(
        "name = \"p\"\n[resources]\ndb = { max = 3, critical = 4 }\n[[task]]\nid = \"a\"\nrun = \"true\"\n",
        "plan.toml:3:6: resources.db: critical (4) is above max (3)",
    );
}

#[test]
fn a_claim_larger_than_its_pool_is_refused_in_a_json_plan_too() {
    let sb = Sandbox::new();
    let text = "{\"name\": \"p\", \"resources\": {\"db\": {\"max\": 2}},\n \"task\": [{\"id\": \"a\", \"run\": \"true\", \"resources\": {\"db\": 3}}]}\n";
    let p = sb.write("plan.json", text);
    let o = sb.run(&["plan", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        format!(
            "error: {}:2:51: task \"a\": resources.db: claims 3, more than the pool's max of 2: it could never start\n",
            p.display()
        )
    );
}

#[test]
fn an_unknown_failure_policy_is_refused_where_it_is_written() {
    refused(
        "name = \"p\"\non_failure = \"freez\"\n[[task]]\nid = \"a\"\nrun = \"true\"\n",
        "plan.toml:2:14: on_failure: \"freez\" is not a failure policy (use \"continue\", \"stop\" or \"freeze\")",
    );
    refused(
        "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"true\"\non_failure = \"halt\"\n",
        "plan.toml:5:14: on_failure: \"halt\" is not a failure policy (use \"continue\", \"stop\" or \"freeze\")",
    );
}

/// Auxiliary commands, their timing and pool, and gates, refused at the value.
#[test]
fn bad_auxiliary_keys_are_refused_where_they_are_written() {
    let task = "[[task]]\nid = \"a\"\nrun = \"true\"\n";
    refused(
        &format!("name = \"p\"\n{task}cleanup = \" \"\n"),
        "plan.toml:5:11: cleanup: the command is empty",
    );
    refused(
        &format!("name = \"p\"\n[defaults]\ncleanup_timeout = \"0s\"\n{task}"),
        "plan.toml:3:19: cleanup_timeout must be at least 1ms (got \"0s\")",
    );
    refused(
        &format!("name = \"p\"\ncleanup_workers = 0\n{task}"),
        "plan.toml:2:19: cleanup_workers must be at least 1",
    );
    refused(
        &format!("name = \"p\"\n{task}[[gate]]\nid = \"g\"\nafter = [\"a\"]\n"),
        "plan.toml:6:6: gate \"g\": a gate needs run = \"...\" or approve = true",
    );
}

/// Two tasks that nothing orders own overlapping paths: refused at the later one's pattern.
#[test]
fn overlapping_owns_of_concurrent_tasks() {
    refused(
        "name = \"p\"\n[[task]]\nid = \"models\"\nrun = \"true\"\nowns = [\"app/models/**\"]\n\
         [[task]]\nid = \"users\"\nrun = \"true\"\nowns = [\"db/users.sql\", \"app/*/user.rb\"]\n",
        "plan.toml:9:25: tasks \"models\" and \"users\" may run at the same time and both write \
         \"app/models/user.rb\" (\"app/models/**\" in \"models\", \"app/*/user.rb\" in \"users\"); \
         order them with after, or narrow owns",
    );
}

/// The same scopes, ordered by `after`: accepted, and `plan` lists what each task owns.
#[test]
fn overlapping_owns_ordered_by_after() {
    let sb = Sandbox::new();
    sb.write(
        "o.toml",
        "name = \"o\"\n[[task]]\nid = \"models\"\nrun = \"true\"\nowns = [\"app/models/**\"]\n\
         [[task]]\nid = \"users\"\nrun = \"true\"\nafter = [\"models\"]\n\
         owns = [\"db/users.sql\", \"app/*/user.rb\"]\n",
    );
    let o = sb.run(&["plan", "o.toml"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "plan o: 2 tasks, 4 workers, 2 waves\nwave 1: models\nwave 2: users\n  users: after models\n\
         critical path: models -> users (2 tasks)\nowns of models: app/models/**\n\
         owns of users: db/users.sql, app/*/user.rb\n"
    );
    assert!(!sb.sessions().exists());
}

#[test]
fn bad_owns_pattern() {
    refused(
        "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"true\"\nowns = [\n  \"app/**/x.rb\",\n]\n",
        "plan.toml:6:3: invalid owns pattern \"app/**/x.rb\": \"**\" only as the whole last component",
    );
}

/// A JSON plan's overlapping owns are refused with a line and column too.
#[test]
fn json_plan_overlapping_owns() {
    let sb = Sandbox::new();
    sb.write(
        "plan.json",
        "{\"name\": \"p\",\n \"task\": [\n  {\"id\": \"a\", \"run\": \"true\", \"owns\": [\"**\"]},\n  \
         {\"id\": \"b\", \"run\": \"true\", \"after\": [\"signal:go\"], \"owns\": [\"README.md\"]}\n]}\n",
    );
    let o = sb.run(&["run", "plan.json", "--launcher", "background"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        "error: plan.json:4:63: tasks \"a\" and \"b\" may run at the same time and both write \
         \"README.md\" (\"**\" in \"a\", \"README.md\" in \"b\"); order them with after, or narrow owns\n"
    );
    assert!(!sb.sessions().exists());
}

#[test]
fn a_memory_claim_over_the_budget_or_a_bad_size_is_refused() {
    refused(
        "name = \"p\"\n[limits]\nmemory = \"2GiB\"\n[[task]]\nid = \"a\"\nrun = \"true\"\nmemory = \"3GiB\"\n",
        "plan.toml:7:10: memory: 3GiB is more than the [limits] memory budget of 2GiB: it could never start",
    );
    refused(
        "name = \"p\"\n[limits]\nmin_free_memory = \"lots\"\n[[task]]\nid = \"a\"\nrun = \"true\"\n",
        "plan.toml:3:19: min_free_memory: \"lots\" is not a size (a whole number and a unit: 512MiB, 8GiB, 2GB)",
    );
}

/// Task templates: a matrix of the wrong shape, a placeholder naming no parameter, and two
/// combinations with one id are refused at the template's lines, with the task and key.
#[test]
fn bad_task_templates() {
    let head = "name = \"p\"\n[[task]]\nid = \"migrate-{table}-{shard}\"\nrun = \"echo {table} {shard}\"\n";
    refused(
        &format!("{head}matrix = [\"users\"]\n"),
        "plan.toml:5:10: task \"migrate-{table}-{shard}\": matrix: must be a table of arrays of \
         values (matrix = { shard = [1, 2] }), not an array",
    );
    refused(
        &format!("{head}matrix = {{}}\n"),
        "plan.toml:5:10: task \"migrate-{table}-{shard}\": matrix: is empty: give it a parameter \
         and its values (matrix = { shard = [1, 2] })",
    );
    refused(
        &format!("{head}matrix = {{ table = [\"users\"], shard = [] }}\n"),
        "plan.toml:5:39: task \"migrate-{table}-{shard}\": matrix.shard: is empty: a parameter \
         needs at least one value",
    );
    refused(
        &format!("{head}[task.matrix]\ntable = [\"users\"]\nshard = [1, [2, 3]]\n"),
        "plan.toml:7:13: task \"migrate-{table}-{shard}\": matrix.shard: a value is an array: \
         values are strings, integers or booleans",
    );
    refused(
        &format!("{head}matrix = {{ table = [\"users\"], shard = {{ a = 1 }} }}\n"),
        "plan.toml:5:39: task \"migrate-{table}-{shard}\": matrix.shard: must be an array of \
         values, not a table",
    );
    refused(
        &format!(
            "{head}env = {{ T = \"{{tabel}}\" }}\nmatrix = {{ table = [\"users\"], shard = [1] }}\n"
        ),
        "plan.toml:5:13: task \"migrate-{table}-{shard}\": {tabel} is not a parameter of its \
         matrix (table, shard); write {{tabel}} to keep the braces",
    );
    refused(
        "name = \"p\"\n[[task]]\nid = \"migrate-{table}\"\nrun = \"true\"\n\
         matrix = { table = [\"users\"], shard = [1, 2] }\n",
        "plan.toml:3:6: task \"migrate-{table}\": its matrix gives the id \"migrate-users\" to \
         two tasks (table=users shard=1; table=users shard=2); the id must tell them apart",
    );
    // The usual checks, at the template: a duplicate id, an unknown dependency.
    refused(
        "name = \"p\"\n[[task]]\nid = \"m-2\"\nrun = \"true\"\n\
         [[task]]\nid = \"m-{n}\"\nrun = \"true\"\nmatrix = { n = [1, 2] }\n",
        "plan.toml:6:6: duplicate task id \"m-2\" (first defined at line 3)",
    );
    refused(
        "name = \"p\"\n[[task]]\nid = \"m-{n}\"\nrun = \"true\"\nafter = [\"prepare-{n}\"]\n\
         matrix = { n = [1, 2] }\n",
        "plan.toml:5:10: task \"m-1\" depends on unknown task \"prepare-1\"",
    );
    // Outside a template, braces are text: a template's id names its tasks, nothing else.
    refused(
        "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"echo {n} ${HOME}\"\nafter = [\"m-{x}\"]\n",
        "plan.toml:5:10: task \"a\" depends on unknown task \"m-{x}\"",
    );
}

/// `plan` shows the tasks a template stands for, in text and JSON; shell braces in a
/// template's command (`${HOME}`, awk's `{print $1}`) stay as written.
#[test]
fn plan_shows_the_tasks_of_a_template() {
    let sb = Sandbox::new();
    sb.write(
        "m.toml",
        "name = \"m\"\nworkers = 2\n[[task]]\nid = \"prepare-{table}\"\nrun = \"true\"\n\
         matrix = { table = [\"users\", \"orders\"] }\n\
         [[task]]\nid = \"migrate-{table}-{shard}\"\nrun = \"echo ${HOME} | awk '{print $1}' {shard}\"\n\
         after = [\"prepare-{table}\"]\nmatrix = { table = [\"users\", \"orders\"], shard = [1, 2] }\n\
         [[task]]\nid = \"report\"\nrun = \"true\"\nafter = [\"migrate-{table}-{shard}\"]\n",
    );
    let o = sb.run(&["plan", "m.toml"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "plan m: 7 tasks, 2 workers, 3 waves\nwave 1: prepare-users, prepare-orders\n\
         wave 2: migrate-users-1, migrate-users-2, migrate-orders-1, migrate-orders-2\n\
         \x20 migrate-users-1: after prepare-users\n  migrate-users-2: after prepare-users\n\
         \x20 migrate-orders-1: after prepare-orders\n  migrate-orders-2: after prepare-orders\n\
         wave 3: report\n\
         \x20 report: after migrate-users-1, migrate-users-2, migrate-orders-1, migrate-orders-2\n\
         critical path: prepare-users -> migrate-users-1 -> report (3 tasks)\n"
    );
    let o = sb.run(&["plan", "m.toml", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["tasks"], 7);
    assert_eq!(
        v["waves"][1],
        serde_json::json!([
            "migrate-users-1",
            "migrate-users-2",
            "migrate-orders-1",
            "migrate-orders-2"
        ])
    );
    let o = sb.run(&["run", "m.toml", "--dry-run", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let commands = v["commands"].as_array().unwrap();
    let last = commands.iter().find(|c| c["id"] == "migrate-orders-2");
    assert_eq!(
        last.map(|c| &c["command"]),
        Some(&serde_json::json!({"shell": "echo ${HOME} | awk '{print $1}' 2"})),
        "{v}"
    );
    assert!(!sb.sessions().exists());
}

#[test]
fn end_on_without_an_agent() {
    refused(
        "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"true\"\nend_on = \"idle\"\n",
        "plan.toml:3:6: task \"a\": end_on = \"idle\" needs agent = \"claude-code\" or \"generic\" \
         (only an agent reports idle)",
    );
}

#[test]
fn end_on_names_nothing_a_task_ends_on() {
    refused(
        "name = \"p\"\n[[task]]\nid = \"a\"\nrun = \"true\"\nagent = \"generic\"\nend_on = \"done\"\n",
        "plan.toml:3:6: task \"a\": end_on: \"done\" is not something a task ends on (use \"idle\")",
    );
}
