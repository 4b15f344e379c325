#!/usr/bin/env python3
"""Judge a finished maestro session from its files alone (scripts/soak.sh faults uses it).

    python3 scripts/soak/check.py SESSION_DIR      prints each violation, then one line

Written apart from the code it judges, from docs/PROTOCOL.md ("The fence"):

- The fence is folded from `events.jsonl`: `task_assigned` sets it (and must find it
  free: a release is journalled before the next assignment); `task_adopted` must name
  the holder; `task_withdrawn` and a superseding `attempt_ended` (worker_lost,
  reassigned, cancelled, lost, interrupted) of the holder release it, as do
  `retry_scheduled` and a decision.
- An accepted exit (`attempt_ended` exited, failed or timed_out) comes from the fence
  holder, which is the task's latest attempt (the highest assigned and not withdrawn):
  none from a superseded attempt. Nor from a worker given up on (lost, or gone) and not
  adopted since.
- An attempt whose exit was accepted is never journalled stale afterwards, and neither
  is the fence holder's (either would call the attempt that decides the task superseded).
- A `retry_scheduled` or a decision that names an exit follows that exit's acceptance;
  a decision with no accepted exit pending names no exit code.
- Every plan task has exactly one decision (`task_finished`, `task_skipped`,
  `task_cancelled`) and an `outcome.json` that says the same state, attempt and worker;
  an outcome from an exit matches that attempt's `exit.json` (worker, end time), and no
  later attempt of the task started.
- Every (task, attempt) has at most one `started` line across the workers' journals.
- `summary.json` exists (the session finished).
"""

import json
import os
import sys

SUPERSEDE = {"worker_lost", "reassigned", "cancelled", "lost", "interrupted"}
ACCEPT = {"exited", "failed", "timed_out"}
DECIDE = {"task_finished": None, "task_skipped": "skipped", "task_cancelled": "cancelled"}


def read_lines(path):
    """The JSON lines of a journal; a partial last line (a crash mid-write) is skipped."""
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    except FileNotFoundError:
        pass
    return out


def read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


class Task:
    def __init__(self):
        self.fence = None  # (attempt, worker)
        self.live = set()  # attempt numbers assigned and not withdrawn
        self.pending = None  # (attempt, worker): accepted, its decision not journalled yet
        self.accepted = set()  # every (attempt, worker) whose exit was accepted
        self.decisions = []  # (attempt, worker, state)


class Checker:
    def __init__(self, session):
        self.session = session
        self.v = []
        plan = read_json(os.path.join(session, "plan.json")) or {}
        self.ids = [t["id"] for t in plan.get("tasks", [])]
        self.tasks = {i: Task() for i in self.ids}
        self.gone = set()  # workers lost or gone, not adopted since
        self.stats = {"tasks": len(self.ids), "succeeded": 0, "accepted": 0, "stale": 0}

    def task(self, tid, where):
        if tid not in self.tasks:
            self.v.append(f"{tid}: {where}: a task not in the plan")
            self.tasks[tid] = Task()
        return self.tasks[tid]

    def fold(self):
        journal = os.path.join(self.session, "events.jsonl")
        for n, ev in enumerate(read_lines(journal), 1):
            kind, where = ev.get("event"), f"events.jsonl line {n}"
            if kind in ("worker_lost", "worker_exited"):
                self.gone.add(ev.get("worker"))
            elif kind in ("worker_adopted", "worker_registered"):
                self.gone.discard(ev.get("worker"))
            elif "task" in ev and kind != "control_request":
                self.event(self.task(ev["task"], where), kind, ev, f"{ev['task']}: {where}")

    def event(self, t, kind, ev, where):
        a, w = ev.get("attempt"), ev.get("worker")
        v = self.v
        if kind == "task_assigned":
            if t.fence is not None:
                v.append(f"{where}: attempt {a} assigned to {w} while {t.fence} holds the fence")
            if t.decisions:
                v.append(f"{where}: attempt {a} assigned once the task was decided")
            t.fence = (a, w)
            t.live.add(a)
        elif kind == "task_adopted":
            if t.fence != (a, w):
                v.append(f"{where}: attempt {a} on {w} adopted, but the fence is {t.fence}")
        elif kind == "task_withdrawn":
            if t.fence == (a, w):
                t.fence = None
            t.live.discard(a)
        elif kind == "attempt_ended":
            self.ended(t, a, w, ev.get("reason"), where)
        elif kind == "retry_scheduled":
            if t.pending is None or t.pending[0] != ev.get("failed_attempt"):
                v.append(f"{where}: retry of attempt {ev.get('failed_attempt')}, not an accepted exit")
            t.fence = t.pending = None
        elif kind in DECIDE:
            state = DECIDE[kind] or ev.get("state")
            # A decision found as `outcome.json` on resume names no worker.
            p = t.pending
            if p is not None and state != "lost" and (a != p[0] or w not in (None, p[1])):
                v.append(f"{where}: decided from attempt {a} on {w}, but {p} was accepted")
            if t.pending is None and ev.get("exit_code") is not None:
                v.append(f"{where}: decided from an exit of attempt {a} that was not accepted")
            t.decisions.append((a, w, state))
            t.fence = t.pending = None

    def ended(self, t, a, w, reason, where):
        v = self.v
        if reason in SUPERSEDE:
            if t.fence == (a, w):
                t.fence = None
        elif reason in ACCEPT:
            self.stats["accepted"] += 1
            latest = max(t.live) if t.live else None
            if t.fence != (a, w):
                v.append(f"{where}: exit of attempt {a} on {w} accepted, but the fence is {t.fence}")
            elif a != latest:
                v.append(f"{where}: exit of attempt {a} on {w} accepted after attempt {latest}")
            if w in self.gone:
                v.append(f"{where}: exit of attempt {a} accepted from {w}, which was given up on")
            t.pending = (a, w)
            t.accepted.add((a, w))
        elif reason == "stale":
            self.stats["stale"] += 1
            if (a, w) in t.accepted:
                v.append(f"{where}: attempt {a} on {w}, whose exit was accepted, journalled stale")
            elif t.fence == (a, w):
                v.append(f"{where}: the fence holder's exit (attempt {a} on {w}) journalled stale")

    def starts(self):
        """(task, attempt) -> worker of every `started` line; an attempt started twice is
        a violation."""
        seen = {}
        wdir = os.path.join(self.session, "workers")
        for wid in sorted(os.listdir(wdir)) if os.path.isdir(wdir) else []:
            for ev in read_lines(os.path.join(wdir, wid, "events.jsonl")):
                if ev.get("event") == "started":
                    key = (ev.get("task"), ev.get("attempt"))
                    if key in seen:
                        self.v.append(f"{key[0]}: attempt {key[1]} started on {seen[key]} and {wid}")
                    seen[key] = wid
        return seen

    def outcomes(self, starts):
        v = self.v
        for tid in self.ids:
            t = self.tasks[tid]
            tdir = os.path.join(self.session, "tasks", tid)
            if len(t.decisions) != 1:
                v.append(f"{tid}: {len(t.decisions)} decisions in the journal: {t.decisions}")
            o = read_json(os.path.join(tdir, "outcome.json"))
            if o is None:
                v.append(f"{tid}: no outcome.json")
                continue
            if o.get("state") == "succeeded":
                self.stats["succeeded"] += 1
            if any(n.startswith("outcome.superseded-") for n in os.listdir(tdir)):
                v.append(f"{tid}: an outcome was moved aside (no retry was asked for)")
            if t.decisions:
                a, w, state = t.decisions[0]
                if (o.get("state"), o.get("attempt")) != (state, a):
                    v.append(f"{tid}: outcome.json says {o.get('state')} attempt {o.get('attempt')}, the journal {state} attempt {a}")
                if w is not None and o.get("worker") not in (None, w):
                    v.append(f"{tid}: outcome.json names worker {o.get('worker')}, the journal {w}")
            if o.get("ended_at") is None:
                continue
            n = o.get("attempt")
            later = sorted(m for (task, m) in starts if task == tid and m > n)
            if later:
                v.append(f"{tid}: outcome from attempt {n}, but attempt(s) {later} started after it")
            e = read_json(os.path.join(tdir, f"attempt-{n}", "exit.json"))
            if e is None:
                v.append(f"{tid}: the outcome's attempt {n} has no exit.json")
            elif (e.get("worker"), e.get("ended_at")) != (o.get("worker"), o.get("ended_at")):
                v.append(f"{tid}: the outcome ({o.get('worker')}, ended {o.get('ended_at')}) is not attempt {n}'s exit.json ({e.get('worker')}, ended {e.get('ended_at')})")


def check(session):
    """Returns (violations, stats) for the session directory `session`."""
    c = Checker(session)
    c.fold()
    c.outcomes(c.starts())
    if read_json(os.path.join(session, "summary.json")) is None:
        c.v.append("no summary.json: the session did not finish")
    c.stats["resumes"] = sum(
        1
        for ev in read_lines(os.path.join(session, "events.jsonl"))
        if ev.get("event") == "session_resumed"
    )
    return c.v, c.stats


def main():
    if len(sys.argv) != 2:
        print("usage: check.py SESSION_DIR", file=sys.stderr)
        return 2
    violations, s = check(sys.argv[1])
    for line in violations:
        print("violation:", line)
    print(
        f"tasks={s['tasks']} succeeded={s['succeeded']} accepted={s['accepted']} "
        f"stale={s['stale']} resumes={s['resumes']} violations={len(violations)}"
    )
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
