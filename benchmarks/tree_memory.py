"""Peak memory of a whole process tree (a Ray cluster and its workers), shared pages counted once.

Runs ``CMD`` and, every ``--every`` seconds, reads ``/proc/<pid>/smaps_rollup`` of it and of
every process descending from it (Ray's raylet, GCS and workers included, as long as they were
started below ``CMD``). Printed at the end, each the peak of its sum over the tree:

- ``rss``: plain RSS summed: a page mapped by two workers (the memory-mapped store) counts twice;
- ``pss``: proportional set size: a page shared by ``n`` processes counts ``1 / n`` in each, so
  the sum is the memory the tree really holds;
- ``anon``: anonymous memory (``Pss_Anon``: model tables, optimiser state, activations),
  what cannot be reclaimed;
- ``file``: the proportional share of mapped files (``Pss_File``: the store's pages, libraries),
  page cache the kernel may drop;
- per process at the tree's ``pss`` peak: ``pid``, name, ``rss``, ``pss``, ``anon``.

    python benchmarks/tree_memory.py -- python -m reelgraph.distributed.train --config cfg.yaml --num-workers 2

Run it under ``../shared/tools/capped`` for the cap; this only measures.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

FIELDS = {"Rss": "rss", "Pss": "pss", "Pss_Anon": "anon", "Pss_File": "file"}


def children() -> dict[int, list[int]]:
    """``ppid -> [pid]`` of every process now."""
    tree: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            tree.setdefault(ppid, []).append(int(d))
    return tree


def descendants(root: int) -> list[int]:
    tree, out, todo = children(), [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(tree.get(pid, []))
    return out


def rollup(pid: int) -> dict[str, float] | None:
    """GiB per field of ``FIELDS`` for one process, or None if it has gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            lines = f.read().splitlines()
        with open(f"/proc/{pid}/comm") as f:
            name = f.read().strip()
    except OSError:
        return None
    out = {"name": name}
    for line in lines:
        key, _, rest = line.partition(":")
        if key in FIELDS:
            out[FIELDS[key]] = int(rest.split()[0]) / 2**20
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--every", type=float, default=1.0, help="seconds between samples")
    p.add_argument("--json", default=None, help="also write the peaks here")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARG...]")
    a = p.parse_args(argv)
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if not cmd:
        p.error("give the command after --")
    proc = subprocess.Popen(cmd)
    peak = {k: 0.0 for k in FIELDS.values()}
    at_peak: list[dict] = []
    start = time.perf_counter()
    while proc.poll() is None:
        procs = [(pid, r) for pid in descendants(proc.pid) if (r := rollup(pid)) is not None]
        total = {k: sum(r.get(k, 0.0) for _, r in procs) for k in FIELDS.values()}
        if total["pss"] > peak["pss"]:
            at_peak = [{"pid": pid, **r} for pid, r in procs]
        peak = {k: max(peak[k], total[k]) for k in peak}
        time.sleep(a.every)
    wall = time.perf_counter() - start
    print(f"tree_memory: rc={proc.returncode} wall={wall:.0f} s peak GiB: "
          + " ".join(f"{k}={v:.2f}" for k, v in peak.items()), flush=True)
    for r in sorted(at_peak, key=lambda r: -r.get("pss", 0))[:12]:
        print(f"  at the pss peak: {r['pid']:>7} {r['name']:<20} rss {r.get('rss', 0):6.2f}  "
              f"pss {r.get('pss', 0):6.2f}  anon {r.get('anon', 0):6.2f}  file {r.get('file', 0):6.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"rc": proc.returncode, "wall_s": wall, "peak": peak, "at_peak": at_peak}, f)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
