"""Peak traced memory (numpy and Python allocations, ``tracemalloc``) of each ingest phase.

Builds the store of a world folder in a temporary directory (deleted afterwards) with the
product's split defaults and prints, per phase, its seconds, the memory held before it, its
peak and what it leaves held. Run it capped: on the huge world it peaks near 4 GiB.

    ../shared/tools/capped --mem 12G --time 8m -- python3 benchmarks/ingest_phases.py \\
        artifacts/cache/worlds/huge-3bd536a448
"""
from __future__ import annotations

import functools
import os
import shutil
import sys
import tempfile
import time
import tracemalloc

from reelgraph.data import ingest
from reelgraph.data.split import SplitConfig
from reelgraph.data.store import GraphStore

PHASES = ("_read_interactions", "_dedupe", "_split", "_save_splits", "_creators", "_kg",
          "_features")


def _timed(name: str):
    f = getattr(ingest, name)

    @functools.wraps(f)
    def phase(*args, **kwargs):
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        t = time.perf_counter()
        out = f(*args, **kwargs)
        now, peak = tracemalloc.get_traced_memory()
        print(f"{name:20s} {time.perf_counter() - t:6.1f} s  held before {before / 2**30:5.2f}  "
              f"peak {peak / 2**30:5.2f}  after {now / 2**30:5.2f} GiB", flush=True)
        return out

    return phase


def main(world: str) -> None:
    tracemalloc.start()
    for name in PHASES:
        setattr(ingest, name, _timed(name))
    out = os.path.join(tempfile.mkdtemp(prefix="rg-ingest-phases-"), "store")
    try:
        GraphStore.build(world, out, SplitConfig())
    finally:
        shutil.rmtree(os.path.dirname(out), ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1])
