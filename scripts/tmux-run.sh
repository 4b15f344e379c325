#!/usr/bin/env bash
# Launch a plan with one tmux window per worker and attach to it, as a person would.
#   scripts/tmux-run.sh examples/demo.toml [orchestrator run flags...]
# The orchestrator itself runs in the first window ("orchestrator"); the workers get a tmux
# session of their own named after the maestro session. Detach with C-b d; the run goes on.
set -euo pipefail
plan=${1:?usage: scripts/tmux-run.sh PLAN [FLAGS...]}
shift
here=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --quiet --manifest-path "$here/Cargo.toml"
bin="$here/target/release"
log=$(mktemp -t maestro-run.XXXXXX)
"$bin/orchestrator" run "$plan" --launcher tmux "$@" >"$log" 2>&1 &
orch=$!
# The first line of the orchestrator's stdout is the session path.
for _ in $(seq 1 100); do
  [ -s "$log" ] && break
  sleep 0.1
done
session=$(head -n 1 "$log")
id=$(basename "$session")
target=${id//./_}
echo "session: $session"
echo "orchestrator log: $log (pid $orch)"
for _ in $(seq 1 100); do
  tmux has-session -t "$target" 2>/dev/null && break
  kill -0 "$orch" 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.1
done
if [ -n "${TMUX:-}" ]; then
  tmux switch-client -t "$target"
else
  tmux attach -t "$target" || true
fi
wait "$orch"
