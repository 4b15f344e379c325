//! Token pools with real processes: the tasks themselves count how many tokens are out
//! while they run (a shared counter under `flock`), so the cap is checked by what really
//! overlapped, not by the orchestrator's word; and the journal says when the pool crossed
//! its thresholds.

use std::fs;

use crate::util::*;

/// A task that adds `claim` to the counter in `$OUT/count` on start, logs the new total
/// to `$OUT/seen`, stays a moment (so that tasks overlap), then takes `claim` back.
fn counted(id: &str, claim: u64) -> String {
    format!(
        r#"[[task]]
id = "{id}"
resources = {{ db = {claim} }}
run = '''
flock "$OUT/lock" sh -c 'n=$(( $(cat "$OUT/count") + {claim} )); echo $n > "$OUT/count"; echo $n >> "$OUT/seen"'
sleep 0.4
flock "$OUT/lock" sh -c 'echo $(( $(cat "$OUT/count") - {claim} )) > "$OUT/count"'
'''
"#
    )
}

#[test]
fn tasks_never_hold_more_tokens_than_the_pool_has_while_they_really_overlap() {
    let sb = Sandbox::new();
    fs::write(sb.out().join("count"), "0\n").unwrap();
    let mut plan = String::from(
        "name = \"pool\"\nworkers = 4\n[resources]\ndb = { max = 3, warn = 2, critical = 3 }\n",
    );
    for (i, claim) in [1, 2, 1, 2, 1, 1, 2, 1].into_iter().enumerate() {
        plan += &counted(&format!("t{i}"), claim);
    }
    let session = sb.run_ok("pool.toml", &plan);
    let seen: Vec<u64> = fs::read_to_string(sb.out().join("seen"))
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(seen.len(), 8, "every task counted itself once: {seen:?}");
    let most = *seen.iter().max().unwrap();
    assert!(most <= 3, "more than 3 tokens out at once: {seen:?}");
    assert!(
        most >= 2,
        "tasks never overlapped, so this proved nothing: {seen:?}"
    );
    assert_eq!(fs::read_to_string(sb.out().join("count")).unwrap(), "0\n");
    // Each change of level is journalled, and the last one says the pool is empty.
    let levels: Vec<_> = events(&session)
        .into_iter()
        .filter(|e| e["event"] == "resource_level")
        .collect();
    assert!(
        levels
            .iter()
            .any(|l| l["level"] == "critical" && l["used"] == 3),
        "{levels:?}"
    );
    let last = levels.last().unwrap();
    assert_eq!(
        (
            last["pool"].as_str(),
            last["level"].as_str(),
            last["used"].as_u64(),
            last["max"].as_u64()
        ),
        (Some("db"), Some("normal"), Some(0), Some(3))
    );
    let st = status_json(&sb, &session);
    assert_eq!(
        st["resources"],
        serde_json::json!([{"pool": "db", "used": 0, "max": 3, "warn": 2, "critical": 3, "level": "normal"}])
    );
}
