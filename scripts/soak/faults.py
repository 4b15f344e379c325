#!/usr/bin/env python3
"""The fault soak (scripts/soak.sh faults): run a plan of short tasks while SIGKILLing
random workers, SIGSTOPping others past their lease (SIGCONT later), and SIGKILLing the
orchestrator and resuming it; then judge the session from its files (check.py) and make
sure no process of it is left. Prints one summary line; exits 1 on any violation.

Every process of the session is found by its work directory: workers carry `--session
DIR` on their command line, tasks `MAESTRO_SESSION=DIR` in their environment. This
driver is a child subreaper, so workers orphaned by a killed orchestrator are reaped
here instead of piling up as zombies. A worker stopped when its orchestrator is killed
is sent SIGHUP by the kernel (its process group is orphaned with a stopped member) and
dies: a stop then ends as a kill, as it would anywhere.
"""

import argparse
import ctypes
import os
import random
import shutil
import signal
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the checkout
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check  # noqa: E402

PR_SET_CHILD_SUBREAPER = 36


def span(text):
    """'A-B' (or 'A') as two numbers."""
    lo, _, hi = text.partition("-")
    return float(lo), float(hi or lo)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=1000)
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--lease", default="2s", help="the plan's lease (default 2s)")
    p.add_argument("--task-ms", type=int, default=50, help="each task sleeps this long")
    p.add_argument("--fail-pct", type=int, default=0, help="%% of attempts that exit 1 (retried)")
    p.add_argument("--hit-ms", default="80-250", help="a worker is hit every A-B ms")
    p.add_argument("--stop-share", type=float, default=1 / 3, help="share of hits that SIGSTOP")
    p.add_argument("--stop-ms", default="2300-3500", help="SIGCONT after A-B ms")
    p.add_argument("--orch-kills", type=int, default=30, help="orchestrator SIGKILLs at most")
    p.add_argument("--orch-gap", type=float, default=1.5, help="mean seconds between them")
    p.add_argument("--down-ms", default="0-300", help="a killed orchestrator stays dead A-B ms")
    p.add_argument("--seed", type=int, default=None, help="replay the same choices")
    p.add_argument("--bin", default="target/release", help="where orchestrator and worker are")
    p.add_argument("--root", default=None, help="work directory parent (default /dev/shm)")
    p.add_argument("--timeout", type=float, default=1800, help="give up after this many seconds")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    return p.parse_args()


def write_plan(path, a):
    lines = [
        'name = "soak"',
        f"workers = {a.workers}",
        f'lease = "{a.lease}"',
        "[defaults]",
        # Kills and stops take attempts away; that is never the task's failure.
        "max_reassign = 1000",
        f"retries = {50 if a.fail_pct else 2}",
        'backoff = { initial = "100ms" }',
        'timeout = "1m"',
    ]
    run = f"sleep {a.task_ms / 1000}"
    if a.fail_pct:
        run += f"; test $(od -An -N1 -tu1 /dev/urandom) -ge {a.fail_pct * 256 // 100}"
    for i in range(a.tasks):
        lines += ["[[task]]", f'id = "t{i:05}"', f"run = '{run}'"]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def proc_state(pid):
    """The state letter of process `pid` (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        i = data.rindex(b")")
        return data[i + 2 : i + 3].decode()
    except (OSError, ValueError):
        return None


def mentions(pid, needle):
    """Whether process `pid` names `needle` on its command line or in its environment."""
    for name in ("cmdline", "environ"):
        try:
            with open(f"/proc/{pid}/{name}", "rb") as f:
                if needle in f.read():
                    return True
        except OSError:
            pass
    return False


def command_line(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def send(pid, sig):
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


class Soak:
    def __init__(self, a):
        self.a = a
        self.seed = a.seed if a.seed is not None else random.randrange(1 << 31)
        self.rng = random.Random(self.seed)
        root = a.root or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
        self.work = tempfile.mkdtemp(prefix="maestro-soak.", dir=root)
        self.orch_bin = os.path.join(os.path.abspath(a.bin), "orchestrator")
        self.out = os.path.join(self.work, "orchestrator.out")
        self.err = os.path.join(self.work, "orchestrator.err")
        self.status = {}  # pid -> exit code, of the orchestrators we started
        self.session = None
        self.kills = self.stops = self.restarts = 0
        self.conts = []  # (when, pid) of the workers we stopped
        self.problems = []
        self.t0 = time.monotonic()

    def spawn(self, *args):
        """Start `orchestrator ARGS`, output appended to the work directory's files."""
        argv = [self.orch_bin, "--sessions-dir", os.path.join(self.work, "s"), *args, "-q"]
        o_flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, self.out, o_flags, 0o600),
            (os.POSIX_SPAWN_OPEN, 2, self.err, o_flags, 0o600),
        ]
        # Nothing of an enclosing session leaks in (MAESTRO_WATCH, a setting, does).
        env = {
            k: v
            for k, v in os.environ.items()
            if (not k.startswith("MAESTRO_") or k == "MAESTRO_WATCH") and k != "TMUX"
        }
        pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
        self.status[pid] = None
        return pid

    def reap(self):
        """Reap every child that exited (ours, and workers orphaned to us)."""
        while True:
            try:
                pid, st = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.status:
                self.status[pid] = os.waitstatus_to_exitcode(st)

    def workers(self):
        """Live worker processes of the session that we have not stopped."""
        stopped = {pid for _, pid in self.conts}
        wdir = os.path.join(self.session, "workers")
        pids = []
        for wid in sorted(os.listdir(wdir)) if os.path.isdir(wdir) else []:
            info = check.read_json(os.path.join(wdir, wid, "worker.json"))
            pid = info.get("pid") if isinstance(info, dict) else None
            if pid and pid not in stopped and proc_state(pid) not in (None, "Z"):
                if mentions(pid, self.session.encode()):
                    pids.append(pid)
        return pids

    def processes(self):
        """Every live process of the session (not zombies), by its work directory."""
        me, found = os.getpid(), []
        for d in os.listdir("/proc"):
            if d.isdigit() and int(d) != me and proc_state(int(d)) not in (None, "Z"):
                if mentions(int(d), self.work.encode()):
                    found.append(int(d))
        return found

    def hit(self, now):
        pids = self.workers()
        if not pids:
            return
        pid = self.rng.choice(pids)
        if self.rng.random() < self.a.stop_share:
            if send(pid, signal.SIGSTOP):
                self.stops += 1
                self.conts.append((now + self.rng.uniform(*self.stop_s), pid))
        elif send(pid, signal.SIGKILL):
            self.kills += 1

    def next_orch_kill(self, now):
        # Sometimes within milliseconds of a resume, so its look at the directory and its
        # first decisions get cut too.
        if self.rng.random() < 0.2:
            return now + self.rng.uniform(0, 0.05)
        return now + self.rng.uniform(0.1, 2) * self.a.orch_gap

    def run(self):
        a = self.a
        self.stop_s = tuple(x / 1000 for x in span(a.stop_ms))
        hit_s = tuple(x / 1000 for x in span(a.hit_ms))
        down_s = tuple(x / 1000 for x in span(a.down_ms))
        plan = os.path.join(self.work, "plan.toml")
        write_plan(plan, a)
        t0 = self.t0
        deadline = t0 + a.timeout
        orch = self.spawn("run", plan, "--launcher", "background")
        while self.session is None:
            with open(self.out, encoding="utf-8") as f:
                first = f.readline()
            if first.endswith("\n"):
                self.session = first.strip()
                break
            self.reap()
            if self.status[orch] is not None or time.monotonic() > deadline:
                self.problems.append(f"the orchestrator did not start (see {self.err})")
                return
            time.sleep(0.01)
        killed = None  # the orchestrator we SIGKILLed, until it is reaped
        resume_at = None
        next_hit = t0 + self.rng.uniform(*hit_s)
        next_kill = self.next_orch_kill(t0)
        while True:
            now = time.monotonic()
            if now > deadline:
                self.problems.append(f"the session did not finish in {a.timeout:.0f} s")
                break
            self.reap()
            for when, pid in [c for c in self.conts if c[0] <= now]:
                send(pid, signal.SIGCONT)
                self.conts.remove((when, pid))
            if orch is not None and self.status[orch] is not None:
                if orch == killed:
                    orch = killed = None
                    resume_at = now + self.rng.uniform(*down_s)
                elif os.path.exists(os.path.join(self.session, "summary.json")):
                    break
                else:
                    code = self.status[orch]
                    self.problems.append(f"an orchestrator exited {code} (see {self.err})")
                    break
            if orch is None:
                if now >= resume_at:
                    orch = self.spawn("resume", self.session)
                    self.restarts += 1
                    next_kill = self.next_orch_kill(now)
            elif killed is None and self.restarts < a.orch_kills and now >= next_kill:
                if send(orch, signal.SIGKILL):
                    killed = orch
            if now >= next_hit:
                next_hit = now + self.rng.uniform(*hit_s)
                self.hit(now)
            time.sleep(0.01)
        self.settle()

    def settle(self):
        """Every stopped worker goes on when its time comes, then nothing may be left."""
        for when, pid in sorted(self.conts):
            time.sleep(max(0.0, when - time.monotonic()))
            send(pid, signal.SIGCONT)
        self.conts = []
        limit = time.monotonic() + 20
        left = self.processes()
        while left and time.monotonic() < limit:
            self.reap()
            time.sleep(0.05)
            left = self.processes()
        for pid in left:
            self.problems.append(f"process {pid} left behind: {command_line(pid)}")

    def cleanup(self):
        """Whatever is still running (after a violation, or when interrupted) goes."""
        for _, pid in self.conts:
            send(pid, signal.SIGCONT)
        for pid in self.processes():
            send(pid, signal.SIGCONT)
            send(pid, signal.SIGKILL)
        self.reap()


def main():
    a = parse_args()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    soak = Soak(a)
    try:
        soak.run()
    finally:
        soak.cleanup()
    violations, stats = ([], {}) if soak.session is None else check.check(soak.session)
    violations = soak.problems + violations
    for line in violations:
        print("violation:", line, file=sys.stderr)
    print(
        f"soak faults: tasks={stats.get('tasks', a.tasks)} succeeded={stats.get('succeeded', 0)} "
        f"worker_kills={soak.kills} worker_stops={soak.stops} "
        f"orchestrator_restarts={soak.restarts} stale={stats.get('stale', 0)} "
        f"violations={len(violations)} seconds={time.monotonic() - soak.t0:.0f} seed={soak.seed}"
    )
    if violations or a.keep:
        print(f"soak faults: kept {soak.work}", file=sys.stderr)
    else:
        shutil.rmtree(soak.work, ignore_errors=True)
    return 1 if violations else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
