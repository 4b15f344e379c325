#!/usr/bin/env bash
# maestro's benchmark suite. Benchmarks, not tests: it prints one table with the
# median, min and max of each case over REPS repetitions, checks the targets (PASS/MISS) and
# writes bench/results.json. See docs/PERFORMANCE.md.
#
#   scripts/bench.sh [--quick] [--reps N] [--only LIST] [--tmp DIR] [--no-build] [--no-pueue]
#                    [--out FILE]
#     --quick      1 repetition and smaller sizes (a smoke run, well under a minute)
#     --reps N     repetitions per case (default 3)
#     --only LIST  comma-separated workloads: dispatch,dag,recovery,barrier,idle,scale,dashboard
#     --tmp DIR    where the temp dir (plans, session directories) goes (default: $TMPDIR,
#                  else /tmp); e.g. /dev/shm to take the disk out of the measurement
#     --no-build   use target/release as it is
#     --no-pueue   skip pueue even if installed (one 2000-task pueue run takes ~6 minutes)
#     --no-settle  do not wait for a journal-less ext4 to settle (see settle_fs below)
#     --out FILE   where to write the JSON results (default bench/results.json)
#
# Peers (GNU parallel, make, xargs, pueue) are used when installed and skipped, with a note,
# when not; this script never installs anything. Exits 1 if a case could not run (its row
# says ERROR); a missed target is a result, not a failure.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
quick=0 reps= only= build=1 no_pueue=0 settle=1 out="$here/bench/results.json"
while (($#)); do
  case $1 in
    --quick) quick=1; shift ;;
    --reps) reps=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --tmp) export TMPDIR=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --no-pueue) no_pueue=1; shift ;;
    --no-settle) settle=0; shift ;;
    --out) out=$2; shift 2 ;;
    -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

if ((quick)); then
  reps=${reps:-1}
  dispatch_n=500 dag_waves=10 dag_width=10 kills=5 barrier_rounds=5 idle_s=3
  scale_roots=20 plan_roots=200
else
  reps=${reps:-3}
  dispatch_n=2000 dag_waves=50 dag_width=10 kills=20 barrier_rounds=20 idle_s=10
  scale_roots=100 plan_roots=1000
fi
scale_n=$((scale_roots * 100)) plan_n=$((plan_roots * 100))

gen="$here/scripts/bench/gen.py"
bin="${CARGO_TARGET_DIR:-$here/target}/release"
work=$(mktemp -d -t maestro-bench.XXXXXX)
raw="$work/raw.tsv"
: >"$raw"

# Stop whatever we started that is still alive: every maestro process of our sessions (pids
# from the session files, checked against their command line, which names our temp dir),
# the private pueue daemon and the private tmux server; then remove the temp dir.
cleanup() {
  reap_sessions
  pueue_stop
  tmux_stop
  rm -rf "$work"
  # Write the deletions out: while the freed inodes' table blocks are dirty, ext4 without a
  # journal treats them as recently deleted for 6 minutes instead of 1, and every file
  # created meanwhile (by the next run) scans past them (see reap_sessions).
  sync
}
reap_sessions() {
  local f pid
  for f in "$work"/sessions/*/workers/*/worker.json "$work"/sessions/*/orchestrator/info.json; do
    [[ -s $f ]] || continue
    [[ $(<"$f") =~ \"pid\":[[:space:]]*([0-9]+) ]] || continue
    pid=${BASH_REMATCH[1]}
    if [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$work"; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  # Set the case's sessions aside and delete them all at the end, not now: on ext4 without
  # a journal (this project's VMs), every inode deleted in the last ~30 s makes each new
  # file creation scan past it (the kernel's `recently_deleted`), so deleting the previous
  # case's ~14 000 files would bill their deletion to the next case (docs/PERFORMANCE.md).
  if [[ -d $work/sessions ]]; then
    mkdir -p "$work/done"
    mv "$work/sessions" "$work/done/$(ns)"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- records (read by scripts/bench/report.py) ---------------------------------------------
meta() { printf 'meta\t%s\t%s\n' "$1" "$2" >>"$raw"; }
val() { printf 'val\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$raw"; }
note() { printf 'note\t%s\t%s\t%s\n' "$1" "$2" "$3" >>"$raw"; echo "  $1/$2: $3" >&2; }
err() { printf 'err\t%s\t%s\t%s\n' "$1" "$2" "$3" >>"$raw"; echo "  $1/$2: ERROR: $3" >&2; }
progress() { echo "[$(date +%H:%M:%S)] $*" >&2; }
ns() { date +%s%N; }
secs() { awk -v d="$1" 'BEGIN { printf "%.6f", d / 1e9 }'; }

# --- timing ----------------------------------------------------------------------------------
# timed OUTFILE CMD...: run CMD with stdout to OUTFILE (stderr to OUTFILE.err); sets T_WALL
# (seconds) and T_RSS (peak RSS in MB, empty if unknown); returns CMD's status.
# Peak RSS comes from GNU time's %M (the largest of CMD and the children it reaped: for
# the orchestrator that is itself or a worker); without GNU time, from polling VmHWM.
gnu_time=
if /usr/bin/time -f %M -o /dev/null true 2>/dev/null; then gnu_time=/usr/bin/time; fi
timed() {
  local o=$1 rc=0 t0 t1 pid hwm= k v _
  shift
  # Start every case with nothing dirty in the page cache: otherwise the writeback of the
  # previous case's files (a --durable run's above all) runs during this one and bills it,
  # by up to 30 % for xargs right after a --durable run.
  sync
  t0=$(ns)
  if [[ -n $gnu_time ]]; then
    "$gnu_time" -f %M -o "$o.rss" "$@" >"$o" 2>"$o.err" || rc=$?
    t1=$(ns)
    hwm=$(tail -n 1 "$o.rss" 2>/dev/null || true)
    [[ $hwm =~ ^[0-9]+$ ]] || hwm=
  else
    "$@" >"$o" 2>"$o.err" &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
      while read -r k v _; do [[ $k == VmHWM: ]] && hwm=$v; done <"/proc/$pid/status" 2>/dev/null || true
      sleep 0.02
    done
    wait "$pid" || rc=$?
    t1=$(ns)
  fi
  T_WALL=$(secs $((t1 - t0)))
  T_RSS=
  [[ -n $hwm ]] && T_RSS=$(awk -v k="$hwm" 'BEGIN { printf "%.2f", k / 1024 }')
  return "$rc"
}

# maestro_run WORKLOAD CASE PLAN [ARGS...]: one `orchestrator run`, recording wall and RSS.
maestro_run() {
  local wl=$1 case=$2 plan=$3 rc=0
  shift 3
  timed "$work/run.out" "$bin/orchestrator" run "$plan" --launcher background -q \
    --sessions-dir "$work/sessions" "$@" || rc=$?
  if ((rc != 0)); then
    err "$wl" "$case" "orchestrator run exited $rc: $(tail -n 1 "$work/run.out.err")"
    reap_sessions
    return 1
  fi
  val "$wl" "$case" wall s "$T_WALL"
  [[ -n $T_RSS ]] && val "$wl" "$case" rss MB "$T_RSS"
  reap_sessions
}

# peer_run WORKLOAD CASE CMD...: a peer tool's run, recording its wall time.
peer_run() {
  local wl=$1 case=$2 rc=0
  shift 2
  timed "$work/peer.out" "$@" || rc=$?
  if ((rc != 0)); then
    err "$wl" "$case" "exited $rc: $(tail -n 1 "$work/peer.out.err")"
    return 1
  fi
  val "$wl" "$case" wall s "$T_WALL"
}

have() { command -v "$1" >/dev/null 2>&1; }

# Metadata latency of the filesystem the sessions live on (maestro is file-based, so this
# bounds it): mean time of mkdir, and of create+write+close, over 1000 of each.
fs_probe() { python3 "$here/scripts/bench/fsprobe.py" all "$1/fs-probe"; }

# create_probe DIR: mean time, in microseconds, of one creation (of 2400: directories and
# files, in the pattern of a session) under the new directory DIR.
create_probe() { python3 "$here/scripts/bench/fsprobe.py" tree "$1"; }

# Wait for the file system to settle before anything is timed. ext4 without a journal
# (these VMs) holds back the inodes freed in the last minute, six while their inode-table
# block is dirty: every new file's allocation skips them one by one (the kernel's
# `recently_deleted`). Right after a deletion of ~10^5 files (the previous suite's cleanup,
# a test run's temp dirs), a creation took 200 to 480 us here instead of 13 to 22 us, and
# maestro's dispatch, which creates 7 inodes per task where xargs creates none, took 1.7 s
# instead of 1.2 s (docs/PERFORMANCE.md, "Settling"). So on such a file system: probe
# creation in a session's pattern (every 20 s while it is slow) until two probes in a row
# cost at most 3x the same probe on tmpfs (/dev/shm; without one, 20 us), for at most
# 420 s (the kernel's window is 360 s). A probe of files in one directory was not enough:
# it read 18 us while a dispatch run still went from 1.52 s to 1.23 s over its repetitions.
settle_fs() {
  local src dev jt limit shm p waited=0 i=0 good=0
  src=$(findmnt -n -o SOURCE -T "$work" 2>/dev/null | head -n 1 || true)
  dev=${src##*/}
  jt=$(cat "/sys/fs/ext4/$dev/journal_task" 2>/dev/null || true)
  if [[ $jt != "<none>" ]]; then
    meta settle "not needed (${src:-unknown device}: not an ext4 without a journal)"
    return 0
  fi
  limit=20
  if [[ $(stat -f -c %T /dev/shm 2>/dev/null) == tmpfs ]]; then
    shm=$(mktemp -d /dev/shm/maestro-probe.XXXXXX)
    limit=$(awk -v t="$(create_probe "$shm/p")" 'BEGIN { printf "%.1f", 3 * t }')
    rm -rf "$shm"
  fi
  while :; do
    i=$((i + 1))
    p=$(create_probe "$work/settle-$i")
    if awk -v p="$p" -v l="$limit" 'BEGIN { exit !(p <= l) }'; then
      good=$((good + 1))
    else
      good=0
    fi
    if ((good >= 2)); then
      meta settle "settled after ${waited} s: create ${p} us (limit ${limit} us)"
      return 0
    fi
    if ((waited >= 420)); then
      echo "  note: file system still slow after ${waited} s: create ${p} us (limit ${limit} us); timing anyway" >&2
      meta settle "NOT settled after ${waited} s: create ${p} us (limit ${limit} us)"
      return 0
    fi
    if ((good == 1)); then
      progress "ext4 without a journal: a creation costs ${p} us (limit ${limit} us); checking again in 20 s (--no-settle skips)"
    else
      progress "ext4 without a journal: a creation costs ${p} us (limit ${limit} us) after recent deletions; waiting 20 s (--no-settle skips)"
    fi
    sleep 20
    waited=$((waited + 20))
  done
}

# --- workloads -------------------------------------------------------------------------------
# 1 + 7. Dispatch throughput: N tasks of `true` on 2 workers, vs xargs/make/parallel/pueue;
# and the same with --durable.
w_dispatch() {
  local plan="$work/dispatch.toml" mk="$work/dispatch.mk" r
  meta dispatch_tasks "$dispatch_n"
  python3 "$gen" flat "$dispatch_n" "$plan" "$mk"
  have xargs || note dispatch "xargs -P2" "skipped: xargs not installed (findutils)"
  have make || note dispatch "make -j2" "skipped: make not installed"
  have parallel || note dispatch "parallel -j2" "skipped: GNU parallel not installed"
  for r in $(seq 1 "$reps"); do
    progress "dispatch: rep $r/$reps ($dispatch_n tasks)"
    maestro_run dispatch maestro "$plan" || true
    maestro_run dispatch "maestro --durable" "$plan" --durable || true
    if have xargs; then
      # shellcheck disable=SC2016
      peer_run dispatch "xargs -P2" sh -c 'seq "$1" | xargs -P2 -n1 true' sh "$dispatch_n" || true
    fi
    if have make; then peer_run dispatch "make -j2" make -s -j2 -f "$mk" || true; fi
    if have parallel; then
      # shellcheck disable=SC2016
      peer_run dispatch "parallel -j2" sh -c 'seq "$1" | parallel -j2 true' sh "$dispatch_n" || true
    fi
  done
}

# pueue (part of dispatch), once and after every other workload: its daemon starts queued
# tasks on a timer (~200 ms a task on 2 slots here), so one run of 2000 tasks takes
# minutes, and the files its state and logs churn through would slow what follows.
w_pueue() {
  if ((no_pueue)); then
    note dispatch pueue "skipped (--no-pueue)"
  elif ! have pueue || ! have pueued; then
    note dispatch pueue "skipped: pueue not installed (optional: cargo install pueue)"
  elif pueue_start; then
    progress "dispatch: pueue ($dispatch_n tasks, once)"
    # `timed` runs a program, so the batch runs in a bash that is given the function.
    peer_run dispatch pueue bash -c "$(declare -f pueue_batch); pueue_batch \"\$1\" \"\$2\"" \
      pueue_batch "$pueue_cfg" "$dispatch_n" || true
  fi
  pueue_stop
}

# A private pueue daemon (own config, socket and state in the temp dir).
pueue_start() {
  pueue_cfg="$work/pueue/pueue.yml"
  mkdir -p "$work/pueue/state"
  cat >"$pueue_cfg" <<EOF
shared:
  pueue_directory: $work/pueue/state
  runtime_directory: $work/pueue/state
  use_unix_socket: true
  unix_socket_path: $work/pueue/state/pueue.socket
EOF
  if ! pueued -c "$pueue_cfg" -d >/dev/null 2>&1 || ! pueue -c "$pueue_cfg" parallel 2 >/dev/null 2>&1; then
    err dispatch pueue "could not start a private pueued"
    pueue_cfg=
    return 1
  fi
}
pueue_stop() {
  if [[ -s $work/pueue/pueue.yml ]] && have pueue; then
    pueue -c "$work/pueue/pueue.yml" shutdown >/dev/null 2>&1 || true
  fi
  pueue_cfg=
}
# pueue_batch CONFIG N: add N tasks of `true` to the private daemon and wait for them.
pueue_batch() {
  local cfg=${1:-$pueue_cfg} n=${2:-$dispatch_n} i
  pueue -c "$cfg" clean >/dev/null
  for i in $(seq 1 "$n"); do pueue -c "$cfg" add -- true >/dev/null; done
  pueue -c "$cfg" wait >/dev/null
}

# 2. DAG waves: WAVES x WIDTH tasks of `sleep 0.01`, wave k after all of wave k-1.
w_dag() {
  local plan="$work/dag.toml" mk="$work/dag.mk" r
  python3 "$gen" waves "$dag_waves" "$dag_width" "$plan" "$mk"
  # Ideal on 2 workers: each wave takes ceil(WIDTH/2) rounds of 10 ms.
  meta dag_ideal_s "$(awk -v w="$dag_waves" -v n="$dag_width" 'BEGIN { printf "%.3f", w * int((n + 1) / 2) * 0.01 }')"
  have make || note dag "make -j2" "skipped: make not installed"
  for r in $(seq 1 "$reps"); do
    progress "dag: rep $r/$reps (${dag_waves}x$dag_width)"
    maestro_run dag maestro "$plan" || true
    if have make; then peer_run dag "make -j2" make -s -j2 -f "$mk" || true; fi
  done
}

# 3. Recovery latency: scripts/bench-recovery.sh.
w_recovery() {
  progress "recovery: $kills kills"
  local rc=0
  "$here/scripts/bench-recovery.sh" --no-build --kills "$kills" --raw "$raw" >"$work/rec.out" 2>"$work/rec.err" || rc=$?
  if ((rc != 0)); then
    err recovery "kill -9 busy worker" "bench-recovery.sh exited $rc: $(tail -n 1 "$work/rec.err")"
    return 0
  fi
  sed 's/^/  /' "$work/rec.out" >&2
}

# 4. Barrier latency: 8 tasks meet at a checkpoint ROUNDS times; per round, last arrival ->
# last release (each task records `date +%s%N` right before and right after).
w_barrier() {
  if ! "$bin/worker" checkpoint --help >/dev/null 2>&1; then
    note barrier "8 parties" "skipped (worker checkpoint not available)"
    return 0
  fi
  progress "barrier: $barrier_rounds rounds of 8 parties"
  local plan="$work/barrier.toml" d="$work/barrier"
  mkdir -p "$d"
  python3 "$gen" barrier 8 "$barrier_rounds" "$bin/worker" "$d" "$plan"
  if ! timed "$work/run.out" "$bin/orchestrator" run "$plan" --launcher background -q --sessions-dir "$work/sessions"; then
    err barrier "8 parties" "orchestrator run failed: $(tail -n 1 "$work/run.out.err")"
    reap_sessions
    return 0
  fi
  reap_sessions
  local samples
  samples=$(python3 - "$d" "$barrier_rounds" <<'PY'
import glob, os, sys
d, rounds = sys.argv[1], int(sys.argv[2])
def load(ext):
    return [[int(x) for x in open(f).read().split()] for f in sorted(glob.glob(os.path.join(d, "*." + ext)))]
before, after = load("before"), load("after")
assert len(before) == 8 and all(len(b) == rounds for b in before + after), "missing timestamps"
print(",".join(f"{(max(a[i] for a in after) - max(b[i] for b in before)) / 1e6:.3f}" for i in range(rounds)))
PY
) || { err barrier "8 parties" "could not read the timestamps"; return 0; }
  printf 'dist\tbarrier\t8 parties\tlatency\tms\t%s\n' "$samples" >>"$raw"
}

# 5. Idle cost: one task sleeping; CPU of the orchestrator and the worker over IDLE_S seconds.
w_idle() {
  local plan="$work/idle.toml" r
  python3 "$gen" sleep 1 $((idle_s + 2)) 1 "$plan"
  for r in $(seq 1 "$reps"); do
    progress "idle: rep $r/$reps (${idle_s} s)"
    idle_once || true
    reap_sessions
  done
}
# CPU time of a process, all threads, in nanoseconds: the sum of the first field of
# /proc/PID/task/*/schedstat (ns on a CPU); without schedstat, utime+stime from
# /proc/PID/stat (clock ticks, 10 ms resolution).
cpu_ns() {
  local f total=0 x stat
  for f in /proc/"$1"/task/*/schedstat; do
    [[ -r $f ]] || continue
    read -r x _ <"$f" || continue
    total=$((total + x))
  done
  if ((total == 0)); then
    stat=$(<"/proc/$1/stat")
    stat=${stat##*) } # the fields after "(comm) "
    read -r -a x <<<"$stat"
    total=$(((x[11] + x[12]) * 1000000000 / $(getconf CLK_TCK)))
  fi
  echo "$total"
}
idle_once() {
  "$bin/orchestrator" run "$work/idle.toml" --launcher background -q --sessions-dir "$work/sessions" \
    >"$work/idle.out" 2>"$work/idle.err" &
  local orch=$! s wpid= i o0 o1 w0 w1 t0 t1
  for i in $(seq 1 200); do [[ -s $work/idle.out ]] && break; sleep 0.02; done
  s=$(head -n 1 "$work/idle.out")
  for i in $(seq 1 200); do grep -qs '"event":"started"' "$s/workers/w1/events.jsonl" && break; sleep 0.02; done
  if ! grep -qs '"event":"started"' "$s/workers/w1/events.jsonl" || [[ ! -s $s/workers/w1/worker.json ]]; then
    err idle orchestrator "the task did not start"
    return 1
  fi
  [[ $(<"$s/workers/w1/worker.json") =~ \"pid\":[[:space:]]*([0-9]+) ]] && wpid=${BASH_REMATCH[1]}
  sleep 0.5
  t0=$(ns) o0=$(cpu_ns "$orch") w0=$(cpu_ns "$wpid")
  sleep "$idle_s"
  t1=$(ns) o1=$(cpu_ns "$orch") w1=$(cpu_ns "$wpid")
  val idle orchestrator cpu % "$(awk -v c=$((o1 - o0)) -v d=$((t1 - t0)) 'BEGIN { printf "%.4f", 100 * c / d }')"
  val idle worker cpu % "$(awk -v c=$((w1 - w0)) -v d=$((t1 - t0)) 'BEGIN { printf "%.4f", 100 * c / d }')"
  wait "$orch" || err idle orchestrator "orchestrator run failed: $(tail -n 1 "$work/idle.err")"
}

# 6. Scale: a SCALE_N-task wide DAG (roots with 99 dependents each) run on 2 workers, and
# `orchestrator plan` on a PLAN_N-task plan.
w_scale() {
  local plan="$work/scale.toml" big="$work/big.toml" r
  python3 "$gen" wide "$scale_roots" 99 "$plan"
  python3 "$gen" wide "$plan_roots" 99 "$big"
  for r in $(seq 1 "$reps"); do
    progress "scale: rep $r/$reps (plan of $plan_n tasks, run of $scale_n tasks)"
    if timed "$work/plan.out" "$bin/orchestrator" plan "$big"; then
      val scale "plan $plan_n tasks" wall s "$T_WALL"
      [[ -n $T_RSS ]] && val scale "plan $plan_n tasks" rss MB "$T_RSS"
    else
      err scale "plan $plan_n tasks" "orchestrator plan failed: $(tail -n 1 "$work/plan.out.err")"
    fi
    maestro_run scale "run $scale_n tasks" "$plan" || true
  done
}

# 8. The live dashboard. (a) `status --watch` of a SCALE_N-task session, each frame (refresh
# of what changed + draw of a 120x40 screen, off screen: the hidden `--bench-frames`) timed,
# while the session runs (each frame reads what the run appended since the last) and once
# it finished; the first frame reads it all. (b) Dispatch (DISPATCH_N x `true`) run in a
# tmux pane of a private server, with the live view on and with --no-tui (its progress
# lines go to the pane): the view must cost the run nothing measurable.
w_dashboard() {
  local plan="$work/dash-scale.toml" flat="$work/dash-flat.toml" s orch r rc
  python3 "$gen" wide "$scale_roots" 99 "$plan"
  python3 "$gen" flat "$dispatch_n" "$flat" "$work/dash-flat.mk"
  have tmux || note dashboard "dispatch in tmux" "skipped: tmux not installed"
  for r in $(seq 1 "$reps"); do
    progress "dashboard: rep $r/$reps (status --watch frames of $scale_n tasks; dispatch of $dispatch_n in tmux)"
    "$bin/orchestrator" run "$plan" --launcher background -q --sessions-dir "$work/sessions" \
      >"$work/dash.out" 2>"$work/dash.err" &
    orch=$!
    for _ in $(seq 1 500); do [[ -s $work/dash.out ]] && break; sleep 0.02; done
    s=$(head -n 1 "$work/dash.out")
    dash_frames "$scale_n tasks, while it runs" "$s" 100 || true
    rc=0
    wait "$orch" || rc=$?
    if ((rc != 0)); then
      err dashboard "$scale_n tasks" "orchestrator run exited $rc: $(tail -n 1 "$work/dash.err")"
    else
      dash_frames "$scale_n tasks, finished" "$s" 50 || true
    fi
    reap_sessions
    if have tmux; then
      tmux_run dashboard "dispatch, live view (tmux)" "$flat" || true
      tmux_run dashboard "dispatch, --no-tui (tmux)" "$flat" --no-tui || true
    fi
  done
}

# dash_frames CASE SESSION FRAMES: `status --watch --bench-frames` of SESSION; records the
# first frame and the median and largest of the others, in ms.
dash_frames() {
  local case=$1 out
  if ! out=$("$bin/orchestrator" status "$2" --watch --bench-frames "$3" 2>"$work/frames.err"); then
    err dashboard "$case" "status --watch --bench-frames failed: $(tail -n 1 "$work/frames.err")"
    return 1
  fi
  # shellcheck disable=SC2046
  set -- $(python3 -c 'import json, sys; j = json.loads(sys.argv[1]); print(j["first_ms"], j["frame_ms_median"], j["frame_ms_max"])' "$out")
  val dashboard "$case" "first frame" ms "$1"
  val dashboard "$case" frame ms "$2"
  val dashboard "$case" "frame max" ms "$3"
}

# tmux_run WORKLOAD CASE PLAN [ARGS...]: `orchestrator run` in a 120x40 pane of a private tmux
# server (stdin and stdout a terminal, as a person's), timed inside the pane; records wall.
tmux_sock="maestro-bench-$$"
tmux_run() {
  local wl=$1 case=$2 plan=$3 result="$work/tmux.result" res
  shift 3
  rm -f "$result"
  cat >"$work/tmux-run.sh" <<EOF
t0=\$(date +%s%N)
"$bin/orchestrator" run "$plan" --launcher background --sessions-dir "$work/sessions" $*
rc=\$?
t1=\$(date +%s%N)
echo "\$rc \$((t1 - t0))" >"$result.tmp" && mv "$result.tmp" "$result"
EOF
  sync
  env -u TMUX tmux -L "$tmux_sock" -f /dev/null new-session -d -x 120 -y 40 "sh $work/tmux-run.sh"
  for _ in $(seq 1 6000); do [[ -s $result ]] && break; sleep 0.05; done
  tmux_stop
  if [[ ! -s $result ]]; then
    err "$wl" "$case" "no result from the tmux pane"
    reap_sessions
    return 1
  fi
  read -r -a res <"$result"
  reap_sessions
  if ((res[0] != 0)); then
    err "$wl" "$case" "orchestrator run exited ${res[0]}"
    return 1
  fi
  val "$wl" "$case" wall s "$(secs "${res[1]}")"
}
tmux_stop() {
  if have tmux; then tmux -L "$tmux_sock" kill-server 2>/dev/null || true; fi
  # A killed server leaves its socket file behind.
  rm -f "${TMUX_TMPDIR:-/tmp}/tmux-$(id -u)/$tmux_sock"
}

# --- main ------------------------------------------------------------------------------------
started=$(ns)
if ((build)); then
  progress "building release binaries"
  cargo build --release --quiet --manifest-path "$here/Cargo.toml"
fi
[[ -x $bin/orchestrator && -x $bin/worker ]] || { echo "bench.sh: no release binaries in $bin" >&2; exit 1; }

meta date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
meta quick "$quick"
meta reps "$reps"
meta nproc "$(nproc)"
meta cpu "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
meta kernel "$(uname -r)"
meta scale_tasks "$scale_n"
meta plan_tasks "$plan_n"
meta commit "$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)"
fstype=$(findmnt -n -o FSTYPE,SOURCE -T "$work" 2>/dev/null | head -n 1 || true)
[[ -n $fstype ]] || fstype=$(stat -f -c %T "$work")
meta sessions_fs "$(echo $fstype) (temp dir under ${TMPDIR:-/tmp})"
if ((settle)); then settle_fs; else meta settle "skipped (--no-settle)"; fi
meta fs_probe "$(fs_probe "$work")"
meta rss_source "$([[ -n $gnu_time ]] && echo 'GNU time %M' || echo 'VmHWM polling')"
[[ -n $gnu_time ]] || echo "  note: GNU time not found; peak RSS comes from polling VmHWM every 20 ms" >&2

missing=()
for tool in xargs make parallel pueue; do have "$tool" || missing+=("$tool"); done
((${#missing[@]})) && echo "  missing peer tools (skipped): ${missing[*]} (see docs/PERFORMANCE.md to install them)" >&2

for w in dispatch dag recovery barrier idle scale dashboard pueue; do
  [[ -z $only || ,$only, == *,${w/pueue/dispatch},* ]] || continue
  # Each workload runs in a subshell with -e in force: a failure there becomes an error
  # row and the suite goes on.
  set +e
  (set -e; "w_$w")
  rc=$?
  set -e
  ((rc == 0)) || err "$w" "(workload)" "failed with status $rc"
  reap_sessions
done

meta duration_s "$(secs $(($(ns) - started)))"
mkdir -p "$(dirname "$out")"
echo
python3 "$here/scripts/bench/report.py" "$raw" "$out"
echo
echo "suite took $(secs $(($(ns) - started))) s; results in $out" >&2
# Exit 1 when a case failed to run (a MISS is a result, not a failure).
! grep -q '^err' "$raw"
