#!/usr/bin/env bash
# Recovery latency benchmark (issue 3): SIGKILL a busy worker N times during a run and
# report p50/p95 of "kill → the killed task's next attempt started" (the worker's own
# started_unix_ms in started.json). Targets: p50 < 250 ms, p95 < 1 s.
#   scripts/bench-recovery.sh [KILLS]      (default 20)
set -euo pipefail
kills=${1:-20}
here=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --quiet --manifest-path "$here/Cargo.toml"
bin="$here/target/release"
work=$(mktemp -d -t maestro-bench-recovery.XXXXXX)
trap 'pkill -KILL -f "worker --session $work" 2>/dev/null || true; kill "${orch:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT

{
  echo 'name = "recovery"'
  echo 'workers = 2'
  echo '[defaults]'
  echo 'max_reassign = 1000'
  for i in $(seq 1 $((kills + 10))); do
    printf '[[task]]\nid = "t%s"\ncmd = ["sleep", "3"]\n' "$i"
  done
} > "$work/plan.toml"

"$bin/orchestrator" run "$work/plan.toml" --launcher background -q --sessions-dir "$work/s" > "$work/out" 2>&1 &
orch=$!
for _ in $(seq 1 200); do [ -s "$work/out" ] && break; sleep 0.05; done
session=$(head -n 1 "$work/out")

python3 - "$session" "$kills" <<'PY'
import json, os, signal, sys, time, glob
session, kills = sys.argv[1], int(sys.argv[2])

def read(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

def running():
    """(worker pid, task, attempt) of workers running a task right now."""
    out = []
    for wdir in glob.glob(os.path.join(session, "workers", "*")):
        st, info = read(os.path.join(wdir, "status.json")), read(os.path.join(wdir, "worker.json"))
        if st and info and st.get("state") == "running" and not os.path.exists(os.path.join(wdir, "shutdown")):
            out.append((info["pid"], st["task"], st["attempt"]))
    return out

lat = []
killed = set()
deadline = time.time() + 300
while len(lat) < kills and time.time() < deadline:
    busy = [b for b in running() if b[0] not in killed]
    if not busy:
        time.sleep(0.02)
        continue
    pid, task, attempt = busy[0]
    t0 = time.time() * 1000
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        continue
    killed.add(pid)
    nxt = os.path.join(session, "tasks", task, f"attempt-{attempt + 1}", "started.json")
    while time.time() < deadline:
        rec = read(nxt)
        if rec:
            lat.append(rec["started_unix_ms"] - t0)
            break
        time.sleep(0.005)
lat.sort()
if not lat:
    sys.exit("no kill was measured")
p = lambda q: lat[min(len(lat) - 1, int(round(q * (len(lat) - 1))))]
print(f"recovery latency over {len(lat)} kills: p50 {p(0.5):.0f} ms, p95 {p(0.95):.0f} ms, max {lat[-1]:.0f} ms")
print(f"targets: p50 < 250 ms {'PASS' if p(0.5) < 250 else 'MISS'}, p95 < 1000 ms {'PASS' if p(0.95) < 1000 else 'MISS'}")
PY
