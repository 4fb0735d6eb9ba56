"""Full-ranking evaluation at amazon-book scale: ours vs a plain dense reference, same process.

Random ``dim``-d embeddings for ``users × items``, ~9 train and ~3 test items per user. Times
``reelgraph.metrics.evaluate`` (streaming top-K, item chunks, exact AUC optional) and a
straightforward reference (per user batch: dense scores, mask, ``topk``, ``isin``), checks both
give the same Recall@20, and prints seconds, peak RSS and the ratio.

    python benchmarks/evaluation.py                 # 70,000 users x 25,000 items
    python benchmarks/evaluation.py --auc
"""
from __future__ import annotations

import argparse
import resource
import time

import torch

from reelgraph.graph import BipartiteGraph
from reelgraph.metrics import evaluate


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def reference_recall(user_emb, item_emb, train: BipartiteGraph, test: BipartiteGraph, k: int,
                     batch: int) -> float:
    """Mean Recall@k over users with test items: dense scores per user batch."""
    total, n = 0.0, 0
    test_keys = test.keys()
    for start in range(0, train.num_users, batch):
        users = torch.arange(start, min(start + batch, train.num_users))
        scores = user_emb[users] @ item_emb.T                                   # [B, I]
        lo, hi = train.rowptr[users[0]], train.rowptr[users[-1] + 1]
        rows = torch.repeat_interleave(torch.arange(users.numel()), train.rowptr[users + 1] - train.rowptr[users])
        scores[rows, train.col[lo:hi]] = float("-inf")
        top = scores.topk(k, dim=1).indices                                     # [B, k]
        hits = torch.isin((users.unsqueeze(1) * train.num_items + top), test_keys).sum(1)
        n_test = test.rowptr[users + 1] - test.rowptr[users]
        ok = n_test > 0
        total += (hits[ok] / n_test[ok]).sum().item()
        n += int(ok.sum())
    return total / n


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=70_000)
    p.add_argument("--items", type=int, default=25_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--user-batch-size", type=int, default=2048)
    p.add_argument("--auc", action="store_true", help="also compute exact AUC (ours only)")
    a = p.parse_args(argv)
    U, I = a.users, a.items
    g = torch.Generator().manual_seed(0)
    user_emb, item_emb = torch.randn(U, a.dim, generator=g), torch.randn(I, a.dim, generator=g)
    keys = torch.unique(torch.arange(U).repeat_interleave(12) * I + torch.randint(0, I, (U * 12,), generator=g))
    is_train = torch.rand(keys.numel(), generator=g) < 0.75
    train, test = (BipartiteGraph.from_edges(k // I, k % I, U, I) for k in (keys[is_train], keys[~is_train]))
    t = time.perf_counter()
    ours = evaluate(user_emb, item_emb, train, test, ks=(10, 20, 50), user_batch_size=a.user_batch_size,
                    auc=a.auc).means()
    ours_s = time.perf_counter() - t
    print(f"ours: {ours_s:.2f} s (ks 10/20/50, recall/precision/ndcg/hitrate{', auc' if a.auc else ''}), "
          f"peak RSS {peak_rss_gib():.2f} GiB, recall@20 {ours['recall@20']:.5f}")
    t = time.perf_counter()
    ref = reference_recall(user_emb, item_emb, train, test, 20, a.user_batch_size)
    ref_s = time.perf_counter() - t
    print(f"dense reference (recall@20 only): {ref_s:.2f} s, recall@20 {ref:.5f}")
    assert abs(ref - ours["recall@20"]) < 1e-3, "the two evaluations disagree"
    print(f"ratio reference/ours: {ref_s / ours_s:.2f}x  ({U:,} users x {I:,} items, "
          f"{torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
