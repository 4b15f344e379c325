#!/usr/bin/env bash
# Run a plan with one tmux window per worker and attach to it, as a person would.
#   scripts/tmux-run.sh PLAN [orchestrator run flags...]
# The workers get a tmux session named after the maestro session, and you are attached to
# it (when this runs on a terminal). Detach with C-b d: the run goes on and this script
# waits for its end. When the run ends you are detached, even from windows a plan keeps
# open (`keep_windows`: the script says how to look at them), and the session's status and
# last line are printed. The orchestrator's output is kept in the session directory, as
# tmux-run.log. The exit code is the run's (0 succeeded, 1 failed, 2 bad plan...).
# $MAESTRO_TMUX_SOCKET names a private tmux server (tmux -L); $MAESTRO_BIN_DIR uses
# binaries already built instead of `cargo build --release`.
set -euo pipefail
plan=${1:?usage: scripts/tmux-run.sh PLAN [FLAGS...]}
shift
here=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${MAESTRO_BIN_DIR:-}" ]; then
  bin=$MAESTRO_BIN_DIR
else
  cargo build --release --quiet --manifest-path "$here/Cargo.toml"
  bin="$here/target/release"
fi
tmux_() {
  if [ -n "${MAESTRO_TMUX_SOCKET:-}" ]; then tmux -L "$MAESTRO_TMUX_SOCKET" "$@"; else tmux "$@"; fi
}

# The session path is the first line of the orchestrator's stdout; until it is known, its
# output goes through two FIFOs in a private temporary directory (removed on exit).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkfifo "$tmp/out" "$tmp/err"
"$bin/orchestrator" run "$plan" --launcher tmux "$@" >"$tmp/out" 2>"$tmp/err" &
orch=$!
exec 3<"$tmp/out" 4<"$tmp/err"
if ! read -r session <&3; then
  # It stopped before making a session (a bad plan, tmux missing): say why, exit as it did.
  cat <&4 >&2
  set +e
  wait "$orch"
  exit $?
fi
log="$session/tmux-run.log"
cat <&3 >>"$log" &
cat <&4 >>"$log" &
exec 3<&- 4<&-
id=$(basename "$session")
target=${id//./_}
echo "session: $session"
echo "orchestrator log: $log (pid $orch)"

if [ -t 0 ] && [ -t 1 ]; then
  for _ in $(seq 1 100); do
    tmux_ has-session -t "$target" 2>/dev/null && break
    kill -0 "$orch" 2>/dev/null || break
    sleep 0.1
  done
  # When the run ends, detach whoever is attached: windows kept open would otherwise
  # hold this script (and the person) there forever.
  (
    while kill -0 "$orch" 2>/dev/null; do sleep 0.2; done
    tmux_ detach-client -s "$target" 2>/dev/null || true
  ) &
  if tmux_ has-session -t "$target" 2>/dev/null; then
    if [ -n "${TMUX:-}" ] && [ -z "${MAESTRO_TMUX_SOCKET:-}" ]; then
      tmux switch-client -t "$target"
    else
      tmux_ attach -t "$target" || true
    fi
  fi
fi
set +e
wait "$orch"
code=$?
set -e
# The cat processes end with the orchestrator's output.
wait
"$bin/orchestrator" status "$session" || true
tail -n 1 "$log"
if tmux_ has-session -t "$target" 2>/dev/null; then
  sock=${MAESTRO_TMUX_SOCKET:+ -L $MAESTRO_TMUX_SOCKET}
  echo "windows kept open: tmux$sock attach -t $target (tmux$sock kill-session -t $target closes them)"
fi
exit "$code"
