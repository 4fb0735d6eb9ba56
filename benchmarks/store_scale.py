"""Graph-store scale: generate a synthetic world, ingest it, reopen it memory-mapped.

Prints the seconds and peak RSS of each step, the time to open the store and read one user's
row, and the ratio of open time to build time (opening must not grow with |E|).

    python benchmarks/store_scale.py --preset large          # ~10M interactions
    python benchmarks/store_scale.py --preset huge --keep    # ~100M interactions
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time

from reelgraph.data.split import SplitConfig
from reelgraph.data.store import GraphStore
from reelgraph.data.synthetic import PRESETS, generate_world


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="large")
    p.add_argument("--workdir", default=None, help="where the world and store go (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the files")
    a = p.parse_args(argv)
    work = a.workdir or tempfile.mkdtemp(prefix="rg-scale-")
    world, root = os.path.join(work, "world"), os.path.join(work, "store")
    try:
        t = time.perf_counter()
        if not os.path.exists(os.path.join(world, "interactions.parquet")):
            generate_world(world, PRESETS[a.preset])
        gen_s = time.perf_counter() - t
        print(f"generate {a.preset}: {gen_s:.1f} s, peak RSS {peak_rss_gib():.2f} GiB")
        t = time.perf_counter()
        store = GraphStore.build(world, root, SplitConfig(method="ratio"), overwrite=True)
        build_s = time.perf_counter() - t
        print(f"build store: {build_s:.1f} s, peak RSS {peak_rss_gib():.2f} GiB; {store}")
        t = time.perf_counter()
        reopened = GraphStore.open(root)
        g = reopened.graph("train")
        row = g.col[g.rowptr[12345]: g.rowptr[12346]].tolist()
        open_s = time.perf_counter() - t
        print(f"open (memory-mapped) + read one user's row: {open_s * 1e3:.1f} ms ({len(row)} items); "
              f"{g.num_edges:,} train edges; open/build ratio {open_s / build_s:.2e}")
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs)
        print(f"store on disk: {size / 2**30:.2f} GiB")
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
