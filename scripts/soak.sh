#!/usr/bin/env bash
# Long soaks, kept out of the test suite.
#
#   scripts/soak.sh [faults] [TASKS] [OPTIONS...]    the fault soak (the default)
#   scripts/soak.sh model [CASES] [MOVES]            the engine's property test
#
# faults: builds the release binaries, then runs a plan of TASKS tasks (default 1000) of
# `sleep 0.05` on 3 workers with a 2 s lease, with its session on /dev/shm when there is
# one, while it SIGKILLs a random worker every 80-250 ms (a third of those hits
# SIGSTOP the worker for 2.3-3.5 s instead, past its lease, then SIGCONT it) and
# SIGKILLs the orchestrator and resumes it (`orchestrator resume SESSION`, 30 times at
# most, about every 1.5 s): about 220 worker kills, 120 stops and 30 restarts in two
# minutes here. Then it judges the session from its files alone
# (scripts/soak/check.py): every task has exactly one decision and one outcome.json
# that agree; every accepted exit comes from the fence holder (docs/PROTOCOL.md, "The
# fence") that is the task's latest attempt, and is never called stale afterwards; no
# attempt starts twice; the session finished. And no process of the session (a worker,
# a task) is left. It prints one line:
#
#   soak faults: tasks=1000 succeeded=1000 worker_kills=... worker_stops=...
#     orchestrator_restarts=... stale=... violations=0 seconds=... seed=...
#
# and exits 1 on any violation (the session directory is then kept, and named).
# OPTIONS go to scripts/soak/faults.py (`--help` lists them: --seed N replays the same
# choices, --orch-kills, --hit-ms, --stop-ms, --down-ms, --fail-pct, --keep, ...).
# The mix that found a resume journalling an exit it had accepted as stale (one run in
# ten or so before the fix): `scripts/soak.sh faults 300 --orch-kills 12 --hit-ms 150-400`.
#
# model: MODEL_CASES cases (default 20000) of up to MODEL_MOVES world moves (default
# 300) of the engine's model (src/engine/model/); MODEL_SEED=N replays a run.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=faults
case ${1:-} in
  model | faults) mode=$1; shift ;;
  -h | --help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac

if [[ $mode == model ]]; then
  MODEL_CASES=${1:-20000} MODEL_MOVES=${2:-300} \
    cargo test --release --lib engine::model -- --nocapture
  exit
fi

tasks=1000
if [[ ${1:-} =~ ^[0-9]+$ ]]; then
  tasks=$1
  shift
fi
cargo build --release --quiet --bins
target=${CARGO_TARGET_DIR:-target}
exec python3 scripts/soak/faults.py --bin "$target/release" --tasks "$tasks" "$@"
