#!/usr/bin/env python3
"""Generate the benchmark inputs of scripts/bench.sh: maestro plans and equivalent Makefiles.

  gen.py flat    N PLAN MAKEFILE                    N independent tasks running `true`
  gen.py waves   WAVES WIDTH PLAN MAKEFILE          wave k after all of wave k-1, `sleep 0.01`
  gen.py wide    ROOTS FANOUT PLAN                  ROOTS roots, each with FANOUT dependents
  gen.py sleep   N SECONDS WORKERS PLAN [MAX_REASSIGN]   N tasks `sleep SECONDS`
  gen.py barrier PARTIES ROUNDS WORKER_BIN OUTDIR PLAN   PARTIES tasks meeting ROUNDS times

Makefile recipes are plain commands (no shell metacharacters), so make execs them directly,
like maestro's `cmd = [...]` (no shell either).
"""

import shlex
import sys


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def flat(n, plan, makefile, name="dispatch"):
    out = [f'name = "{name}"\nworkers = 2\n']
    for i in range(n):
        out.append(f'[[task]]\nid = "t{i}"\ncmd = ["true"]\n')
    write(plan, "".join(out))
    targets = " ".join(f"t{i}" for i in range(n))
    mk = [f".PHONY: all {targets}\nall: {targets}\n"]
    for i in range(n):
        mk.append(f"t{i}:\n\t@true\n")
    write(makefile, "".join(mk))


def waves(nwaves, width, plan, makefile):
    out = ['name = "waves"\nworkers = 2\n']
    mk = []
    names = [[f"w{w}-{i}" for i in range(width)] for w in range(nwaves)]
    every = " ".join(t for wave in names for t in wave)
    mk.append(f".PHONY: all {every}\nall: {' '.join(names[-1])}\n")
    for w in range(nwaves):
        for i in range(width):
            out.append(f'[[task]]\nid = "{names[w][i]}"\ncmd = ["sleep", "0.01"]\n')
            if w > 0:
                deps = ", ".join(f'"{d}"' for d in names[w - 1])
                out.append(f"after = [{deps}]\n")
            prev = " ".join(names[w - 1]) if w > 0 else ""
            mk.append(f"{names[w][i]}: {prev}\n\t@sleep 0.01\n")
    write(plan, "".join(out))
    write(makefile, "".join(mk))


def wide(roots, fanout, plan):
    out = ['name = "scale"\nworkers = 2\n']
    for r in range(roots):
        out.append(f'[[task]]\nid = "r{r}"\ncmd = ["true"]\n')
        for c in range(fanout):
            out.append(f'[[task]]\nid = "r{r}-{c}"\ncmd = ["true"]\nafter = ["r{r}"]\n')
    write(plan, "".join(out))


def sleep(n, seconds, workers, plan, max_reassign=None):
    out = [f'name = "sleep"\nworkers = {workers}\n']
    if max_reassign is not None:
        out.append(f"[defaults]\nmax_reassign = {max_reassign}\n")
    for i in range(n):
        out.append(f'[[task]]\nid = "t{i}"\ncmd = ["sleep", "{seconds}"]\n')
    write(plan, "".join(out))


def barrier(parties, rounds, worker_bin, outdir, plan):
    w = shlex.quote(worker_bin)
    d = shlex.quote(outdir)
    script = (
        f"for i in $(seq 1 {rounds}); do "
        f'date +%s%N >> {d}/"$MAESTRO_TASK".before; '
        f"{w} checkpoint b$i --parties {parties} --timeout 60s || exit 1; "
        f'date +%s%N >> {d}/"$MAESTRO_TASK".after; '
        "done"
    )
    out = [f'name = "barrier"\nworkers = {parties}\n']
    for i in range(parties):
        out.append(f'[[task]]\nid = "p{i}"\nrun = {toml_str(script)}\n')
    write(plan, "".join(out))


def toml_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def main(argv):
    kind, args = argv[1], argv[2:]
    if kind == "flat":
        flat(int(args[0]), args[1], args[2])
    elif kind == "waves":
        waves(int(args[0]), int(args[1]), args[2], args[3])
    elif kind == "wide":
        wide(int(args[0]), int(args[1]), args[2])
    elif kind == "sleep":
        sleep(int(args[0]), args[1], int(args[2]), args[3], *(int(a) for a in args[4:5]))
    elif kind == "barrier":
        barrier(int(args[0]), int(args[1]), args[2], args[3], args[4])
    else:
        sys.exit(f"gen.py: unknown kind {kind!r}")


if __name__ == "__main__":
    main(sys.argv)
