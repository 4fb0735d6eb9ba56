"""Why GF-CF ranks below LightGCN on the synthetic world: popularity, filter weight, rank.

GF-CF's linear filter ``r_u D_I^-1/2 R^T D_U^-1 R D_I^-1/2`` scores item ``i`` about
``co-occurrence(i) / sqrt(d_i)``, and co-occurrence grows ~ ``d_i``: the score of an item grows
as ``~ d_i^(1/2)``. The synthetic world draws an interaction's video, within a topic, with
probability proportional to its (Pareto) popularity, i.e. ``~ d_i^1``. This script measures how
much of the gap that explains: it ranks with GF-CF's scores times ``d_i^beta`` for several
``beta`` (``beta = 0`` is GF-CF), at several ``alpha`` (ideal low-pass weight) and ``k``
(singular vectors), and reports validation and test Recall@20 / NDCG@20 (full ranking, train
items masked; train + valid for test) and the mean ``log(1 + d_i)`` of each variant's top-20
items against that of the held-out items themselves.

    python benchmarks/gfcf_diagnosis.py --data synthetic:default
"""
from __future__ import annotations

import argparse
import sys
import time

import torch
from torch import Tensor

from reelgraph.data.split import SplitConfig
from reelgraph.lightning_modules.datamodule import RecDataModule
from reelgraph.metrics import evaluate_fn, topk_items
from reelgraph.models.gfcf import GFCF, GFCFConfig


def tilted(score_fn, weight: Tensor):
    """``score_fn``'s scores times ``weight[items]`` (a fresh tensor, as the evaluator needs)."""
    return lambda users, items: score_fn(users, items) * weight[items]


def rec_popularity(score_fn, history, users: Tensor, log_pop: Tensor) -> float:
    """Mean ``log(1 + d_i)`` of the top-20 items of ``users``."""
    top = topk_items(score_fn, users, history, 20)
    return float(log_pop[top.clamp(min=0)].mean())


def held_out_popularity(graph, log_pop: Tensor) -> float:
    return float(log_pop[graph.col].mean())


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="synthetic:default")
    p.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.3, 1.0])
    p.add_argument("--betas", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    p.add_argument("--ks", type=int, nargs="+", default=[256], help="singular vectors (alpha > 0)")
    p.add_argument("--pop-users", type=int, default=2000, help="users for the top-20 popularity")
    p.add_argument("--cache-dir", default="artifacts/cache")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    print(" ".join(sys.argv), flush=True)
    dm = RecDataModule(data=a.data, split=SplitConfig(method="ratio", ratios=(0.8, 0.1, 0.1)),
                       cache_dir=a.cache_dir)
    dm.prepare_data()
    dm.setup("fit")
    train, valid, test, history = dm.train_graph, dm.valid_graph, dm.test_graph, dm.history
    d_i = train.degree()[1].float()
    log_pop = torch.log1p(d_i)
    users = torch.arange(min(a.pop_users, dm.num_users))
    print(f"{dm.store}\nheld-out mean log(1+d_i): valid {held_out_popularity(valid, log_pop):.3f}"
          f", test {held_out_popularity(test, log_pop):.3f}; all train edges "
          f"{float(log_pop[train.col].mean()):.3f}", flush=True)
    print(f"{'alpha':>5s} {'k':>4s} {'beta':>5s}  val_R@20 val_N@20  test_R@20 test_N@20  "
          f"top20_logpop  s", flush=True)
    for alpha in a.alphas:
        for k in (a.ks if alpha > 0 else [0]):
            t = time.perf_counter()
            model = GFCF(train, GFCFConfig(alpha=alpha, num_singular=max(k, 1)))
            base = model.score_fn()
            for beta in a.betas:
                fn = tilted(base, d_i.pow(beta)) if beta else base
                v = evaluate_fn(fn, train, valid, ks=(20,), auc=False).means()
                s = evaluate_fn(fn, history, test, ks=(20,), auc=False).means()
                pop = rec_popularity(fn, history, users, log_pop)
                print(f"{alpha:5.2f} {k:4d} {beta:5.2f}  {v['recall@20']:8.4f} {v['ndcg@20']:8.4f}"
                      f"  {s['recall@20']:9.4f} {s['ndcg@20']:9.4f}  {pop:12.3f}  "
                      f"{time.perf_counter() - t:5.1f}", flush=True)


if __name__ == "__main__":
    main()
