"""Time and memory of ISGNN's neighbour graph (``co_interaction_graph``, built once per store)
on an ml-1m-sized power-law graph; run it under ``capped`` for the peak.

    ../shared/tools/capped --mem 3G --time 8m -- python3 benchmarks/tightness_memory.py
    ../shared/tools/capped --mem 8G --time 4m -- python3 benchmarks/tightness_memory.py --at 2082857

``--at REV`` loads ``samplers/tightness.py`` as it was at a git revision (the previous code).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time

import torch

from reelgraph.graph import BipartiteGraph
from reelgraph.graph.csr import transpose_csr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(rev: str | None):
    if rev is None:
        from reelgraph.samplers import tightness
        return tightness
    src = subprocess.run(["git", "-C", ROOT, "show", f"{rev}:samplers/tightness.py"],
                         check=True, capture_output=True, text=True).stdout
    path = os.path.join(tempfile.mkdtemp(), "tightness_at_rev.py")
    with open(path, "w") as f:
        f.write(src)
    spec = importlib.util.spec_from_file_location("tightness_at_rev", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=6040)
    p.add_argument("--items", type=int, default=3706)
    p.add_argument("--edges", type=int, default=1_000_000, help="draws before de-duplication")
    p.add_argument("--exponent", type=float, default=0.8, help="item weight 1 / rank^exponent")
    p.add_argument("--walks", type=int, default=50)
    p.add_argument("--at", default=None, help="git revision of samplers/tightness.py to time")
    a = p.parse_args(argv)
    tightness = load(a.at)
    torch.manual_seed(0)
    weight = 1.0 / torch.arange(1, a.items + 1).float() ** a.exponent
    i = torch.multinomial(weight, a.edges, replacement=True)
    u = torch.randint(a.users, (a.edges,))
    keys = torch.unique(u * a.items + i)
    g = BipartiteGraph.from_edges(keys // a.items, keys % a.items, a.users, a.items)
    t = transpose_csr(g.rowptr, g.col, a.items)
    print(f"{a.users} users, {a.items} items, {keys.numel()} edges; code at {a.at or 'this tree'}")
    for side, fwd, bwd in (("users", (g.rowptr, g.col), t), ("items", t, (g.rowptr, g.col))):
        start = time.perf_counter()
        _, col, shared = tightness.co_interaction_graph(
            fwd, bwd, num_walks=a.walks, generator=torch.Generator().manual_seed(0))
        print(f"{side}: {col.numel()} pairs, mean tightness {float(shared.mean()):.3f}, "
              f"{time.perf_counter() - start:.1f} s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
