"""Graph-store scale: ingest a synthetic world into a store, reopen it memory-mapped.

Generates the world (or takes an existing world folder with ``--world``), builds the store
through the product path (``GraphStore.build(world, root, SplitConfig(method="ratio"))``, what
``reelgraph fit --data.data synthetic:<preset>`` does) and prints the ingest seconds, the peak
RSS of this process, the store's size on disk, its train/valid/test edges, and the time to open
the store and read one user's row (opening must not grow with |E|).

    python benchmarks/store_scale.py --preset large          # ~10M interactions
    python benchmarks/store_scale.py --preset huge --keep    # ~100M interactions
    python benchmarks/store_scale.py --world artifacts/cache/worlds/huge-3bd536a448 \\
        --store artifacts/cache/stores/huge-store-check     # an existing world; keep the store
    python benchmarks/store_scale.py --world artifacts/cache/worlds/huge-3bd536a448 \
        --cache-dir artifacts/cache                         # the store `reelgraph fit` reuses
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time

from reelgraph.data.sources import open_store
from reelgraph.data.split import SplitConfig
from reelgraph.data.store import GraphStore
from reelgraph.data.synthetic import PRESETS, generate_world


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def folder_gib(root: str) -> float:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs) / 2**30


def measure(world: str, root: str | None, cache_dir: str | None = None) -> None:
    """Builds the store of ``world`` at ``root`` (or, with ``cache_dir``, where ``reelgraph fit
    --data.data <world> --data.cache_dir <cache_dir>`` looks for it, rebuilt) and prints the
    figures."""
    t = time.perf_counter()
    if cache_dir:
        store = open_store(world, SplitConfig(), cache_dir, rebuild=True)
        root = store.root
    else:
        store = GraphStore.build(world, root, SplitConfig(method="ratio"), overwrite=True)
    build_s = time.perf_counter() - t
    print(f"ingest: {build_s:.1f} s, peak RSS {peak_rss_gib():.2f} GiB; {store}")
    splits = store.meta["splits"]
    print(f"edges: train {splits['train']:,}, valid {splits['valid']:,}, test {splits['test']:,}; "
          f"corrections {store.meta['corrections']}")
    print(f"store on disk: {folder_gib(root):.2f} GiB at {os.path.abspath(root)}")
    t = time.perf_counter()
    g = GraphStore.open(root).graph("train")
    user = min(12345, g.num_users - 1)
    row = g.col[g.rowptr[user]: g.rowptr[user + 1]].tolist()
    open_s = time.perf_counter() - t
    print(f"open (memory-mapped) + read one user's row: {open_s * 1e3:.1f} ms ({len(row)} items); "
          f"open/ingest ratio {open_s / build_s:.2e}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="large")
    p.add_argument("--world", default=None, help="ingest this existing world folder (no generation)")
    p.add_argument("--store", default=None, help="write the store here and keep it (default: in workdir)")
    p.add_argument("--workdir", default=None, help="where the world and store go (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the workdir's files")
    p.add_argument("--cache-dir", default=None,
                   help="build (rebuild) the store `reelgraph fit --data.data <world> "
                        "--data.cache_dir <this>` reuses, instead of --store; needs --world")
    a = p.parse_args(argv)
    if a.cache_dir and not a.world:
        p.error("--cache-dir needs --world (a world folder kept outside the temp workdir)")
    work = a.workdir or tempfile.mkdtemp(prefix="rg-scale-")
    world = a.world or os.path.join(work, "world")
    root = a.store or os.path.join(work, "store")
    try:
        if not os.path.exists(os.path.join(world, "interactions.parquet")):
            t = time.perf_counter()
            generate_world(world, PRESETS[a.preset])
            print(f"generate {a.preset}: {time.perf_counter() - t:.1f} s, peak RSS {peak_rss_gib():.2f} GiB")
        measure(world, None if a.cache_dir else root, a.cache_dir)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)  # never a --world or --store outside it


if __name__ == "__main__":
    main()
