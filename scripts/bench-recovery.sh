#!/usr/bin/env bash
# Recovery latency benchmark: during a run of long-ish tasks, SIGKILL a
# worker that is running a task, KILLS times (waiting for the killed task's next attempt to
# start before the next kill), and report p50/p95 of
#   kill time (this script's clock, `date +%s%3N` just before `kill -9`)
#   -> `started_unix_ms` of the killed task's next attempt (the `started` line of some
#      worker's journal, workers/<w>/events.jsonl).
# Targets: p50 < 250 ms, p95 < 1 s.
#
#   scripts/bench-recovery.sh [--kills N] [--no-build] [--raw FILE]
#     --kills N    kills to measure (default 20)
#     --no-build   use target/release as it is (scripts/bench.sh builds once)
#     --raw FILE   also append the samples to FILE in scripts/bench/report.py's format
set -euo pipefail

kills=20
build=1
raw=
while (($#)); do
  case $1 in
    --kills) kills=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --raw) raw=$2; shift 2 ;;
    -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-recovery.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

here=$(cd "$(dirname "$0")/.." && pwd)
if ((build)); then
  cargo build --release --quiet --manifest-path "$here/Cargo.toml"
fi
bin="$here/target/release"
work=$(mktemp -d -t maestro-bench-recovery.XXXXXX)
orch=

# Stop what we started: the orchestrator (by the pid we got from `&`) and any worker of our
# session still alive (pids from worker.json, checked against their command line).
cleanup() {
  if [[ -n $orch ]] && kill -0 "$orch" 2>/dev/null; then
    kill -TERM "$orch" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$orch" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$orch" 2>/dev/null || true
  fi
  local f pid
  for f in "$work"/s/*/workers/*/worker.json; do
    [[ -s $f ]] || continue
    [[ $(<"$f") =~ \"pid\":[[:space:]]*([0-9]+) ]] || continue
    pid=${BASH_REMATCH[1]}
    if [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$work"; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$work"
}
trap cleanup EXIT

python3 "$here/scripts/bench/gen.py" sleep $((kills * 2)) 2 2 "$work/plan.toml" 1000

"$bin/orchestrator" run "$work/plan.toml" --launcher background -q --sessions-dir "$work/s" \
  >"$work/out" 2>"$work/err" &
orch=$!
for _ in $(seq 1 200); do [[ -s $work/out ]] && break; sleep 0.02; done
session=$(head -n 1 "$work/out")
[[ -d $session ]] || { echo "bench-recovery.sh: no session started: $(cat "$work/err")" >&2; exit 1; }

deadline=$(($(date +%s) + 60 + kills * 5))
lat=()
killed=" "
while ((${#lat[@]} < kills)); do
  if (($(date +%s) > deadline)); then
    echo "bench-recovery.sh: gave up after ${#lat[@]} of $kills kills (timeout)" >&2
    break
  fi
  if ! kill -0 "$orch" 2>/dev/null; then
    echo "bench-recovery.sh: the orchestrator ended after ${#lat[@]} of $kills kills: $(tail -n 1 "$work/err")" >&2
    break
  fi
  # A worker running a task whose process has started, not yet killed.
  pid= task= attempt=
  for wdir in "$session"/workers/*; do
    [[ -e $wdir/shutdown ]] && continue
    [[ -s $wdir/events.jsonl && -s $wdir/worker.json ]] || continue
    # The worker's journal: its last line says what it does now.
    st=$(tail -n 1 "$wdir/events.jsonl")
    [[ $st =~ \"event\":\"started\" ]] || continue
    [[ $st =~ \"task\":[[:space:]]*\"([^\"]+)\" ]] || continue
    t=${BASH_REMATCH[1]}
    [[ $st =~ \"attempt\":[[:space:]]*([0-9]+) ]] || continue
    a=${BASH_REMATCH[1]}
    info=$(<"$wdir/worker.json")
    [[ $info =~ \"pid\":[[:space:]]*([0-9]+) ]] || continue
    p=${BASH_REMATCH[1]}
    [[ $killed == *" $p "* ]] && continue
    pid=$p task=$t attempt=$a
    break
  done
  if [[ -z $pid ]]; then
    sleep 0.01
    continue
  fi
  t0=$(date +%s%3N)
  kill -9 "$pid" 2>/dev/null || continue
  killed+="$pid "
  # The next attempt's `started` line, in whichever worker's journal it appears. One grep
  # per look (a pipeline of several, every 5 ms, took enough of this 2-core machine to
  # slow the recovery it measures); it relies on the order in which maestro writes the
  # line's keys (event, then the record's task and attempt), which no reader may rely on.
  next="\"event\":\"started\",\"task\":\"$task\",\"attempt\":$((attempt + 1))[,}]"
  rec=
  while (($(date +%s) <= deadline)); do
    rec=$(grep -h -m 1 -E "$next" "$session"/workers/*/events.jsonl 2>/dev/null | head -n 1) || true
    [[ -n $rec ]] && break
    sleep 0.005
  done
  if [[ ${rec:-} =~ \"started_unix_ms\":[[:space:]]*([0-9]+) ]]; then
    lat+=($((BASH_REMATCH[1] - t0)))
  fi
done

# The measurement is over: cancel the rest of the session.
"$bin/orchestrator" cancel "$session" >/dev/null 2>&1 || true
for _ in $(seq 1 100); do kill -0 "$orch" 2>/dev/null || break; sleep 0.1; done

((${#lat[@]})) || { echo "bench-recovery.sh: no kill was measured" >&2; exit 1; }
samples=$(IFS=,; echo "${lat[*]}")
if [[ -n $raw ]]; then
  printf 'dist\trecovery\tkill -9 busy worker\tlatency\tms\t%s\n' "$samples" >>"$raw"
fi
python3 - "$samples" <<'PY'
import sys
lat = sorted(float(v) for v in sys.argv[1].split(","))
p = lambda q: lat[max(0, min(len(lat) - 1, int(round(q * (len(lat) - 1)))))]
print(f"recovery latency over {len(lat)} kills: p50 {p(0.5):.0f} ms, p95 {p(0.95):.0f} ms, "
      f"min {lat[0]:.0f} ms, max {lat[-1]:.0f} ms")
print(f"targets: p50 < 250 ms {'PASS' if p(0.5) < 250 else 'MISS'}, "
      f"p95 < 1000 ms {'PASS' if p(0.95) < 1000 else 'MISS'}")
PY
