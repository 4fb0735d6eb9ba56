"""Throughput of the vectorised samplers on a synthetic power-law graph.

Prints sampled edges (or visits, pairs, negatives) per second for each sampler on each device,
the process's peak memory, how the per-batch time changes when the graph grows 10x with the
batch fixed, the speed-up over a naive per-node Python loop, and the current neighbour sampler
against the one before issue 18 (``neighbor_reference.py``) in this process, on this graph and
on a uniform random one of the same size.
pyg-lib cannot be installed here and torch-sparse is no dependency (a 20-40 minute source
build); with ``--torch-sparse SITE`` (a site-packages holding a built ``torch_sparse``, e.g. a
benchmark-only venv made with ``MAX_JOBS=1 pip install --no-build-isolation torch-sparse==0.6.18``)
PyG's C++ sampler (``torch.ops.torch_sparse.neighbor_sample``, what ``NeighborLoader`` runs without
pyg-lib) joins that side-by-side on the same graphs, seeds, fan-outs and thread count.

    python benchmarks/sampling.py --num-nodes 200000 --avg-degree 10
    python benchmarks/sampling.py --batch-size 4096 --repeats 10 --threads 1 --skip-scaling \
        --torch-sparse /work/ts-venv/lib/python3.11/site-packages
"""
from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import random
import resource
import time
import types

import torch

import neighbor_reference  # benchmarks/: the pre-issue-18 sampler, for the side-by-side
from reelgraph.graph import edge_keys, to_csr, transpose_csr
from reelgraph.samplers import (cumulative_weights, metapath_walks, neighbor_sample,
                                pinsage_neighbors, popularity_cdf, popularity_negatives)


def power_law_ends(n: int, m: int, exponent: float, g: torch.Generator) -> torch.Tensor:
    """``m`` node ids in ``[0, n)`` with ``P(i) ∝ (i + 1) ** -exponent``."""
    cdf = torch.cumsum(torch.arange(1, n + 1, dtype=torch.float64) ** -exponent, 0)
    return torch.searchsorted(cdf, torch.rand(m, dtype=torch.float64, generator=g) * cdf[-1]
                              ).clamp_(max=n - 1)


def power_law_csr(num_rows: int, num_cols: int, avg_degree: float, seed: int,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    m = int(num_rows * avg_degree)
    row = power_law_ends(num_rows, m, 0.8, g)
    col = power_law_ends(num_cols, m, 0.8, g)
    col = torch.randperm(num_cols, generator=g)[col]  # hubs spread over the id range
    rowptr, col, _ = to_csr(row, col, num_rows)
    return rowptr.to(device), col.to(device)


def timed(fn, device: torch.device, repeats: int) -> tuple[float, object]:
    """Mean seconds per call after one warm-up call, and the last result."""
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats, out


def peak_memory(device: torch.device) -> str:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    text = f"peak RSS {rss:.0f} MiB"
    if device.type == "cuda":
        text += f", peak CUDA {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
    return text


def naive_neighbor_sample(rowptr, col, seeds, fanouts, rng: random.Random):
    """Reference: a per-node Python loop (``random.sample`` + dict relabelling)."""
    ptr, cl = rowptr.tolist(), col.tolist()
    local = {int(s): i for i, s in enumerate(seeds.tolist())}
    frontier, rows, cols = list(local), [], []
    for k in fanouts:
        nxt = []
        for v in frontier:
            nbrs = cl[ptr[v]:ptr[v + 1]]
            for u in (nbrs if len(nbrs) <= k else rng.sample(nbrs, k)):
                if u not in local:
                    local[u] = len(local)
                    nxt.append(u)
                rows.append(local[v])
                cols.append(local[u])
        frontier = nxt
    return rows, cols


def report(name: str, seconds: float, count: int, unit: str, device: torch.device) -> None:
    print(f"  {name:<34} {seconds * 1e3:9.2f} ms/batch  {count:>9} {unit:<9}"
          f" {count / seconds:>12,.0f} {unit}/s   {peak_memory(device)}")


def bench_device(args, device: torch.device) -> None:
    n, fanouts = args.num_nodes, [int(f) for f in args.fanouts.split(",")]
    rowptr, col = power_law_csr(n, n, args.avg_degree, args.seed, device)
    g = torch.Generator(device).manual_seed(args.seed)
    seeds = torch.randperm(n, device=device, generator=g)[:args.batch_size]
    deg = rowptr[1:] - rowptr[:-1]
    print(f"\n[{device}] graph: {n:,} nodes, {col.numel():,} edges, max degree "
          f"{int(deg.max()):,}; batch {args.batch_size}, fan-outs {fanouts}")
    cum = cumulative_weights(torch.rand(col.numel(), device=device, generator=g))
    for name, kw in [("neighbor (without replacement)", {}),
                     ("neighbor (with replacement)", {"replace": True}),
                     ("neighbor (weighted, inverse CDF)", {"cum_weight": cum})]:
        sec, out = timed(lambda: neighbor_sample(rowptr, col, seeds, fanouts=fanouts,
                                                 generator=g, **kw), device, args.repeats)
        report(name, sec, out.edge.numel(), "edges", device)

    items = n // 2  # bipartite view: rows are users, cols items
    ui = power_law_csr(n, items, args.avg_degree, args.seed + 1, device)
    iu = transpose_csr(*ui, items)
    item_seeds = seeds[seeds < items][:args.batch_size]
    sec, out = timed(lambda: pinsage_neighbors(iu, ui, item_seeds, num_neighbors=10,
                                               num_walks=20, walk_length=3, generator=g),
                     device, args.repeats)
    report("pinsage (20 walks x 3 steps)", sec, item_seeds.numel() * 20 * 3, "steps", device)

    creators = max(n // 50, 2)
    uc = power_law_csr(n, creators, 3.0, args.seed + 2, device)
    cu, ci = transpose_csr(*uc, creators), power_law_csr(creators, n, 20.0, args.seed + 3,
                                                         device)
    sec, out = timed(lambda: metapath_walks(uc, cu, ci, seeds, num_walks=10, walk_length=3,
                                            generator=g), device, args.repeats)
    report("metapath (10 walks, q1=q2=.5)", sec,
           out.user_user.size(1) + out.user_item.size(1), "pairs", device)

    pos_keys = torch.unique(edge_keys(torch.repeat_interleave(
        torch.arange(n, device=device), ui[0][1:] - ui[0][:-1]), ui[1], items))
    cdf = popularity_cdf(torch.bincount(ui[1], minlength=items))
    sec, out = timed(lambda: popularity_negatives(seeds, pos_keys, cdf, 16, generator=g),
                     device, args.repeats)
    report("popularity negatives (16/user)", sec, out.numel(), "negs", device)


def bench_scaling(args, device: torch.device) -> None:
    """Same seeds, same fan-outs, a graph 10x larger: per-batch time should barely move."""
    fanouts = [int(f) for f in args.fanouts.split(",")]
    times = []
    for n in (args.num_nodes, 10 * args.num_nodes):
        rowptr, col = power_law_csr(n, n, args.avg_degree, args.seed, device)
        seeds = torch.arange(args.batch_size, device=device) * (args.num_nodes // args.batch_size)
        g = torch.Generator(device).manual_seed(args.seed)
        sec, out = timed(lambda: neighbor_sample(rowptr, col, seeds, fanouts=fanouts,
                                                 generator=g), device, args.repeats)
        times.append((sec, sec / max(out.edge.numel(), 1)))
        print(f"  |V|={n:>11,} |E|={col.numel():>12,}: {sec * 1e3:8.2f} ms/batch, "
              f"{out.edge.numel():,} edges sampled, {times[-1][1] * 1e6:.3f} us/edge")
        del rowptr, col
    print(f"  ratio 10x graph / 1x graph: time per batch {times[1][0] / times[0][0]:.2f}, "
          f"time per sampled edge {times[1][1] / times[0][1]:.2f} (|E| ratio 10; the larger "
          "graph's frontiers overlap less, so the same batch samples more edges)")


def bench_naive(args) -> None:
    fanouts = [int(f) for f in args.fanouts.split(",")]
    rowptr, col = power_law_csr(args.num_nodes, args.num_nodes, args.avg_degree, args.seed,
                                torch.device("cpu"))
    seeds = torch.randperm(args.num_nodes, generator=torch.Generator().manual_seed(0)
                           )[:args.batch_size]
    g, rng = torch.Generator().manual_seed(0), random.Random(0)
    vec, out = timed(lambda: neighbor_sample(rowptr, col, seeds, fanouts=fanouts, generator=g),
                     torch.device("cpu"), args.repeats)
    start = time.perf_counter()
    rows, _ = naive_neighbor_sample(rowptr, col, seeds, fanouts, rng)
    naive = time.perf_counter() - start  # includes the one-off .tolist() of the CSR
    start = time.perf_counter()
    ptr_list = rowptr.tolist(), col.tolist()
    to_list = time.perf_counter() - start
    del ptr_list
    print(f"  vectorised: {vec * 1e3:.2f} ms/batch ({out.edge.numel():,} edges); naive loop: "
          f"{(naive - to_list) * 1e3:.2f} ms/batch ({len(rows):,} edges) + {to_list * 1e3:.0f} ms"
          f" one-off CSR .tolist()")
    print(f"  speed-up vectorised / naive (excluding .tolist()) = {(naive - to_list) / vec:.1f}x")


def uniform_csr(n: int, avg_degree: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A uniform random graph (both ends of each edge uniform over ``n`` nodes), the shape of
    PyG's published sampler figures."""
    g = torch.Generator().manual_seed(seed)
    m = int(n * avg_degree)
    rowptr, col, _ = to_csr(torch.randint(n, (m,), generator=g),
                            torch.randint(n, (m,), generator=g), n)
    return rowptr, col


def torch_sparse_sampler(site: str):
    """PyG's C++ neighbour sampler from a built torch-sparse under ``site`` (only its two
    libraries are loaded: the Python package also wants torch-scatter), with our signature."""
    for lib in ("_version_cpu", "_neighbor_sample_cpu"):
        matches = glob.glob(os.path.join(site, "torch_sparse", lib + "*.so"))
        if not matches:
            raise SystemExit(f"--torch-sparse {site}: no torch_sparse/{lib}*.so there")
        torch.ops.load_library(matches[0])
    op = torch.ops.torch_sparse.neighbor_sample

    def sample(rowptr, col, seeds, *, fanouts, generator=None, replace=False):
        # It samples the in-neighbours of a CSC (colptr, row): the same as ours on (rowptr,
        # col). directed=True: only the sampled edges, as NeighborLoader's default. Its random
        # stream is its own (``generator`` is ignored).
        node, row, col_, edge = op(rowptr, col, seeds, fanouts, replace, True)
        return types.SimpleNamespace(edge=edge, node=node)
    return sample


def bench_old_vs_new(args) -> None:
    """Pre-issue-18 vs current ``neighbor_sample`` (and, with ``--torch-sparse``, PyG's C++
    sampler, unweighted cases) on the same CPU graphs and seeds, in one process: blocks of
    ``--repeats`` calls per implementation in turn, twice (so load on the machine hits all
    alike), each block after one warm-up call; the median per-call rate of each."""
    fanouts = [int(f) for f in args.fanouts.split(",")]
    n = args.num_nodes
    g = torch.Generator().manual_seed(args.seed)
    seeds = torch.randperm(n, generator=g)[:args.batch_size]
    power = power_law_csr(n, n, args.avg_degree, args.seed, torch.device("cpu"))
    cum = cumulative_weights(torch.rand(power[1].numel(), generator=g))
    cases = [("power-law", power, "without replacement", {}),
             ("power-law", power, "with replacement", {"replace": True}),
             ("power-law", power, "weighted", {"cum_weight": cum}),
             ("uniform", uniform_csr(n, args.avg_degree, args.seed), "without replacement", {})]
    impls = {"old": neighbor_reference.neighbor_sample, "new": neighbor_sample}
    if args.torch_sparse:
        impls["pyg"] = torch_sparse_sampler(args.torch_sparse)
    for graph, (rowptr, col), name, kw in cases:
        rates: dict[str, list[float]] = {i: [] for i in impls}
        for _ in range(2):
            for impl, fn in impls.items():
                if impl == "pyg" and "cum_weight" in kw:
                    continue                                    # torch-sparse has no weights
                gen = torch.Generator().manual_seed(args.seed)
                for r in range(args.repeats + 1):
                    start = time.perf_counter()
                    out = fn(rowptr, col, seeds, fanouts=fanouts, generator=gen, **kw)
                    if r:  # the first call of a block warms up
                        rates[impl].append(out.edge.numel() / (time.perf_counter() - start))
        rate = {i: sorted(r)[len(r) // 2] for i, r in rates.items() if r}
        old, new = rate["old"], rate["new"]
        text = (f"  {graph:<9} {name:<20} {out.edge.numel():>8,} edges   old "
                f"{old / 1e6:6.2f}M edges/s   new {new / 1e6:6.2f}M edges/s   "
                f"new / old {new / old:5.2f}x")
        if "pyg" in rate:
            text += f"   PyG C++ {rate['pyg'] / 1e6:6.2f}M edges/s   new / PyG {new / rate['pyg']:5.2f}x"
        print(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num-nodes", type=int, default=200_000)
    p.add_argument("--avg-degree", type=float, default=10.0)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--fanouts", default="15,10", help="comma-separated per-hop fan-outs")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per figure")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0: torch's default); on a loaded shared machine 1 "
                        "avoids intra-op spin-waiting, which can slow indexing ops 100x")
    p.add_argument("--skip-scaling", action="store_true", help="skip the 10x-graph run")
    p.add_argument("--skip-old", action="store_true",
                   help="skip the side-by-side with the pre-issue-18 neighbour sampler")
    p.add_argument("--torch-sparse", metavar="SITE",
                   help="a site-packages holding a built torch_sparse: adds PyG's C++ sampler "
                        "to the side-by-side (a yardstick, never a dependency)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    missing = [m for m in ("pyg_lib", "torch_sparse") if importlib.util.find_spec(m) is None]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
          f"not installed: {', '.join(missing) or 'none'}; PyG's C++ neighbour sampler: "
          f"{'from ' + args.torch_sparse if args.torch_sparse else 'not compared (--torch-sparse)'}")
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available()
                                       else [])
    for device in devices:
        bench_device(args, device)
        if not args.skip_scaling:
            print(f"[{device}] per-batch cost vs graph size (batch fixed):")
            bench_scaling(args, device)
    print("[cpu] vectorised vs naive per-node loop (same graph, batch, fan-outs):")
    bench_naive(args)
    if not args.skip_old:
        print(f"[cpu] neighbour sampler before / after issue 18{' / PyG C++' if args.torch_sparse else ''}"
              f" ({torch.get_num_threads()} threads, median of 2 x --repeats calls each):")
        bench_old_vs_new(args)


if __name__ == "__main__":
    main()
