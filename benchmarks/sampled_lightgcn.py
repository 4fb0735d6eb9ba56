"""LightGCN training step, full graph vs sampled neighbourhoods, on the same batches.

For each mode: median seconds per step (forward + backward + Adam) after one warm-up step, the
step's peak resident memory above what was resident before it (the layer outputs, gradients and
messages one step holds: it grows with the whole graph in full mode and with the sampled subgraph
in sampled mode; Linux ``VmHWM``, reset per mode), and the nodes and edges one step propagates
over. Ratios are full / sampled. Sampled mode is the one for graphs whose full propagation does not fit one
device; evaluation stays full-graph (``LightGCN.embed``) in both modes. Batches come from the
product's loader (``train_loader`` of each mode's plan, made before timing); a step is
``model.loss(batch)`` + backward + Adam, as in ``RecModule.training_step``.

    python benchmarks/sampled_lightgcn.py --data ../shared/data/amazon-book-kgat --fanouts 10 5 5
"""
from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time

import torch

from reelgraph.data.sources import open_store
from reelgraph.models import LightGCN, LightGCNConfig
from reelgraph.samplers.loader import train_loader

AMAZON = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "amazon-book-kgat")


def memory_mib(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak since the last :func:`reset_peak`) in MiB (Linux)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024


def reset_peak() -> None:
    """Restart the process's resident-memory peak (``VmHWM``) at the current resident size."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def run(model: LightGCN, batches: list, lr: float) -> dict[str, float]:
    """Median seconds per step after a warm-up step, and the step's peak memory above the
    resident size before the first step (model, optimiser state and graph already resident)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    times = []
    for i, batch in enumerate(batches):
        if i == 1:  # Adam's moments now exist
            base = memory_mib("VmRSS")
            reset_peak()
        start = time.perf_counter()
        out = model.loss(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - start)
    return {"s": statistics.median(times), "peak": memory_mib("VmHWM") - base}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=AMAZON, help="any --data string the CLI takes")
    p.add_argument("--fanouts", type=int, nargs="+", default=[10, 5, 5])
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--negatives", type=int, default=1)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--steps", type=int, default=6, help="timed steps (+1 warm-up)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--cache-dir", default=os.path.join("artifacts", "cache"))
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    store = open_store(a.data, cache_dir=a.cache_dir)
    graph = store.graph("train")
    print(f"{store}\nbatch {a.batch_size} x {a.negatives} negatives, d={a.dim}, "
          f"{len(a.fanouts)} layers, fanouts {a.fanouts}, {torch.get_num_threads()} threads",
          flush=True)
    results = {}
    # sampled first: heap it leaves behind can only hide some of full mode's peak (conservative)
    for mode, fanouts in (("sampled", a.fanouts), ("full", None)):
        torch.manual_seed(0)
        cfg = LightGCNConfig(embedding_dim=a.dim, num_layers=len(a.fanouts), fanouts=fanouts)
        plan = cfg.plan()
        static = plan.static(store, torch.device("cpu"))
        loader = train_loader(store, plan, a.batch_size, a.negatives, seed=0)
        batches = [b.bind(static) for b in itertools.islice(itertools.cycle(loader), a.steps + 1)]
        model = LightGCN(graph.num_users, graph.num_items, cfg)
        r = results[mode] = run(model, batches, lr=1e-3)
        if batches[0].sub is not None:
            r["nodes"], r["edges"] = batches[0].sub.node.numel(), batches[0].sub.row.numel()
        else:
            r["nodes"], r["edges"] = static.graph.num_nodes, static.graph.adj._nnz()
        print(f"{mode:8s} {r['s'] * 1e3:9.1f} ms/step  step peak {r['peak']:8.1f} MiB  nodes {r['nodes']:>9,}  edges {r['edges']:>11,}",
              flush=True)
    f, s = results["full"], results["sampled"]
    print(f"full / sampled: time {f['s'] / s['s']:.2f}x, step peak {f['peak'] / max(s['peak'], 1e-9):.2f}x, "
          f"nodes {f['nodes'] / s['nodes']:.2f}x, edges {f['edges'] / s['edges']:.2f}x")


if __name__ == "__main__":
    main()
