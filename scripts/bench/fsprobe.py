#!/usr/bin/env python3
"""File-system metadata probes of scripts/bench.sh. Every file made is kept: deleting them
would slow what follows on ext4 without a journal (see settle_fs in bench.sh).

  fsprobe.py all DIR      mean time of mkdir, and of create+write+close, over 1000 of each:
                          "mkdir X us, create+write Y us"
  fsprobe.py tree DIR     mean time, in microseconds, of one creation in the pattern of a
                          maestro session: 400 directories, each with a subdirectory and
                          four empty files (2400 inodes): "Y"
"""

import os
import sys
import time


def main():
    mode, root = sys.argv[1], sys.argv[2]
    os.mkdir(root)
    if mode == "tree":
        # Many directories, like a session's task and attempt directories: a directory's
        # inode, and so its files', goes to a block group the allocator picks per
        # directory, and one directory alone may land in a group that is not slow.
        n = 400
        t0 = time.perf_counter()
        for i in range(n):
            d = f"{root}/{i}"
            os.mkdir(d)
            os.mkdir(f"{d}/a")
            for f in ("a/o", "a/e", "a/x", "r"):
                os.close(os.open(f"{d}/{f}", os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600))
        print(f"{(time.perf_counter() - t0) / (n * 6) * 1e6:.1f}")
        return
    t0 = time.perf_counter()
    for i in range(1000):
        os.mkdir(f"{root}/{i}")
    t1 = time.perf_counter()
    for i in range(1000):
        with open(f"{root}/{i}/f", "w") as f:
            f.write("x")
    t2 = time.perf_counter()
    print(f"mkdir {(t1 - t0) / 1000 * 1e6:.0f} us, create+write {(t2 - t1) / 1000 * 1e6:.0f} us")


if __name__ == "__main__":
    main()
