"""Full-graph LightGCN training step: the product path against the pre-refactor step, in one run.

The product path is what ``RecModule.training_step`` runs: a batch from the loader (the
whole-graph plan's ``GraphBatch``, bound to its static normalised operator) and
``LightGCN.loss(batch)`` (the one loss path, :func:`reelgraph.graph.propagate`). The reference is
the step as it was before the loaders sampled (inlined here from the old ``LightGCN.loss``:
``propagate`` by symmetric sparse products with a running sum, rows indexed from the full
tables, BPR + L2). Both train the same initial weights on the same triples with Adam; steps
alternate (product, reference, product, ...) so machine load hits both alike. Prints the median
seconds per step of each, the ratio, and checks both losses agree at step 0.

    python benchmarks/full_graph_step.py --data ../shared/data/amazon-book-kgat --threads 1
"""
from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time

import torch

from reelgraph.data.sources import open_store
from reelgraph.graph import sym_spmm
from reelgraph.models import LightGCN, LightGCNConfig, bpr_loss, l2_loss
from reelgraph.samplers.loader import train_loader

AMAZON = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "amazon-book-kgat")


def reference_loss(weight, adj, batch, num_users: int, num_layers: int, reg: float):
    """The pre-refactor full-graph ``LightGCN.loss`` (``Recommender.loss`` over ``embed``)."""
    out, h = weight, weight
    for _ in range(num_layers):
        h = sym_spmm(adj, h)
        out = out + h
    out = out / (num_layers + 1)
    user_emb, item_emb = out[:num_users], out[num_users:]
    u, p, n = user_emb[batch.users], item_emb[batch.pos], item_emb[batch.neg]
    bpr = bpr_loss((u * p).sum(-1), torch.einsum("bd,bkd->bk", u, n))
    ego_u, ego_i = weight[:num_users], weight[num_users:]
    l2 = l2_loss(ego_u[batch.users], ego_i[batch.pos], ego_i[batch.neg]) / len(batch)
    return bpr + reg * l2


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=AMAZON, help="any --data string the CLI takes")
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--negatives", type=int, default=1)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--steps", type=int, default=10, help="timed steps of each (+1 warm-up)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--cache-dir", default=os.path.join("artifacts", "cache"))
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    store = open_store(a.data, cache_dir=a.cache_dir)
    cfg = LightGCNConfig(embedding_dim=a.dim, num_layers=a.layers)
    plan = cfg.plan()
    static = plan.static(store, torch.device("cpu"))
    loader = train_loader(store, plan, a.batch_size, a.negatives, seed=0)
    batches = [b.bind(static) for b in itertools.islice(itertools.cycle(loader), a.steps + 1)]
    torch.manual_seed(0)
    model = LightGCN(store.num_users, store.num_items, cfg)
    ref = torch.nn.Parameter(model.embedding.weight.detach().clone())
    opts = torch.optim.Adam(model.parameters(), lr=1e-3), torch.optim.Adam([ref], lr=1e-3)
    steps = (lambda b: model.loss(b)["loss"],
             lambda b: reference_loss(ref, static.graph.adj, b, store.num_users, a.layers,
                                      cfg.reg_weight))
    print(f"{store}\nbatch {a.batch_size} x {a.negatives} negatives, d={a.dim}, {a.layers} "
          f"layers, {torch.get_num_threads()} threads", flush=True)
    times: tuple[list, list] = ([], [])
    for i, batch in enumerate(batches):
        for j, (step, opt) in enumerate(zip(steps, opts)):
            start = time.perf_counter()
            loss = step(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i:
                times[j].append(time.perf_counter() - start)
            elif j == 0:
                first = loss.item()
            else:
                assert abs(first - loss.item()) < 1e-5 * abs(first), (first, loss.item())
    new, old = (statistics.median(t) for t in times)
    print(f"product path   {new * 1e3:8.1f} ms/step\nreference step {old * 1e3:8.1f} ms/step\n"
          f"product / reference: {new / old:.3f}x (losses agree at step 0: {first:.6f})")


if __name__ == "__main__":
    main()
