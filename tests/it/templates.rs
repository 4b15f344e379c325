//! Task templates run end to end: every task a matrix stands for runs, with its values in
//! its command and environment, and a task after the template's id waits for all of them.

use std::fs;

use crate::util::*;

#[test]
fn every_task_of_a_matrix_runs_with_its_values() {
    let sb = Sandbox::new();
    let session = sb.run_ok(
        "m.toml",
        r#"
name = "m"
workers = 3

[[task]]
id = "prepare-{table}"
run = "echo {table} > \"$OUT/prepare-{table}\""
matrix = { table = ["users", "orders"] }

[[task]]
id = "migrate-{table}-{shard}"
run = '''
test -f "$OUT/prepare-{table}" || exit 9
printf '%s %s %s {{table}}\n' "$TABLE" "{shard}" "$MAESTRO_TASK" > "$OUT/{table}-{shard}"
'''
after = ["prepare-{table}"]
env = { TABLE = "{table}" }
matrix = { table = ["users", "orders"], shard = [1, 2] }

[[task]]
id = "report"
run = 'ls "$OUT" | grep -c -- - > "$OUT/report"'
after = ["migrate-{table}-{shard}"]
"#,
    );
    let out = sb.out();
    for table in ["users", "orders"] {
        for shard in [1, 2] {
            let got = fs::read_to_string(out.join(format!("{table}-{shard}"))).unwrap();
            assert_eq!(
                got,
                format!("{table} {shard} migrate-{table}-{shard} {{table}}\n")
            );
        }
    }
    // The report ran after all four (and the two prepares): six files with a dash.
    assert_eq!(fs::read_to_string(out.join("report")).unwrap(), "6\n");
    assert_status(
        &sb,
        &session,
        "succeeded",
        &[
            ("prepare-users", "succeeded"),
            ("prepare-orders", "succeeded"),
            ("migrate-users-1", "succeeded"),
            ("migrate-users-2", "succeeded"),
            ("migrate-orders-1", "succeeded"),
            ("migrate-orders-2", "succeeded"),
            ("report", "succeeded"),
        ],
    );
}
