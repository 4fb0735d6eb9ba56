"""Full-ranking evaluation at amazon-book scale: ours vs simpler evaluators, same process.

Random ``dim``-d float32 embeddings. ``--shape uniform`` (default): 70,000 users × 25,000 items,
~9 train and ~3 test items per user, uniform items. ``--shape amazon-book``: amazon-book's
sizes (70,679 users of whom 70,591 have a test item, 24,915 items, 652,514 train and 193,920
test edges) with power-law users and items; no data is read.

Times ``reelgraph.metrics.evaluate`` (K 10/20/50, Recall/Precision/NDCG/HitRate; exact AUC with
``--auc``) end to end, then per user batch, interleaved so that both sides share the machine's
load: ours (``rank_users``), the previous evaluator (fresh score block, ``index_put`` mask, one
full ``topk``, sorted keys) and a dense reference (Recall@20 only); checks that every metric
agrees, and prints seconds, the ratios, peak RSS and ours per phase (``--phases``: on the
evaluator's CPU blocks of users, ``_CPU_SCORES // items`` at a time, hit lookup and sums too,
which the evaluator does once per batch).

    python benchmarks/evaluation.py                                   # uniform, batch 2048
    python benchmarks/evaluation.py --shape amazon-book --user-batch-size 4096 --phases
    python benchmarks/evaluation.py --auc
"""
from __future__ import annotations

import argparse
import resource
import time
from collections import defaultdict

import torch

from reelgraph.graph import BipartiteGraph, contains_edges, edge_keys
from reelgraph.metrics import (_CPU_SCORES, _mask_, batch_edges, evaluate, inner_product, metric_sums,
                               per_user_metrics, rank_users_fn, ranking_hits, topk_pruned)

KS = (10, 20, 50)


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def uniform_problem(users: int, items: int, dim: int, g: torch.Generator):
    """~12 distinct random items per user, 3 in 4 train."""
    user_emb, item_emb = torch.randn(users, dim, generator=g), torch.randn(items, dim, generator=g)
    keys = torch.unique(torch.arange(users).repeat_interleave(12) * items
                        + torch.randint(0, items, (users * 12,), generator=g))
    is_train = torch.rand(keys.numel(), generator=g) < 0.75
    train, test = (BipartiteGraph.from_edges(k // items, k % items, users, items)
                   for k in (keys[is_train], keys[~is_train]))
    return user_emb, item_emb, train, test


def _draw_keys(n: int, user_w, item_w, g: torch.Generator, exclude=None) -> torch.Tensor:
    """``n`` distinct ``user * I + item`` keys, users and items drawn by weight, none in
    ``exclude``."""
    num_items, keys = item_w.numel(), torch.empty(0, dtype=torch.long)
    while keys.numel() < n:
        m = int((n - keys.numel()) * 1.3) + 1000
        new = (torch.multinomial(user_w, m, True, generator=g) * num_items
               + torch.multinomial(item_w, m, True, generator=g))
        keys = torch.unique(torch.cat([keys, new]))
        if exclude is not None:
            keys = keys[~torch.isin(keys, exclude)]
    return keys[torch.randperm(keys.numel(), generator=g)[:n]]


def amazon_book_problem(dim: int, g: torch.Generator, users=70_679, items=24_915,
                        n_train=652_514, n_test=193_920, test_users=70_591):
    """amazon-book's sizes: item popularity ~ rank^-0.7, user activity ~ rank^-0.5; each of
    ``test_users`` users has at least one test item, no test edge is a train edge."""
    item_w = 1.0 / torch.arange(1, items + 1, dtype=torch.float64) ** 0.7
    item_w = item_w[torch.randperm(items, generator=g)]
    user_w = 1.0 / torch.arange(1, users + 1, dtype=torch.float64) ** 0.5
    train = _draw_keys(n_train, user_w, item_w, g)
    tu = torch.randperm(users, generator=g)[:test_users]
    first = tu * items + torch.multinomial(item_w, test_users, True, generator=g)
    while (bad := torch.isin(first, train)).any():               # one test item per test user
        first[bad] = tu[bad] * items + torch.multinomial(item_w, int(bad.sum()), True, generator=g)
    rest_w = torch.zeros(users, dtype=torch.float64)
    rest_w[tu] = user_w[tu]
    rest = _draw_keys(n_test - test_users, rest_w, item_w, g, torch.cat([train, first]))
    test = torch.cat([first, rest])
    user_emb, item_emb = torch.randn(users, dim, generator=g), torch.randn(items, dim, generator=g)
    train, test = (BipartiteGraph.from_edges(k // items, k % items, users, items)
                   for k in (train, test))
    return user_emb, item_emb, train, test


def previous_rank(user_emb, item_emb, users, train: BipartiteGraph, test: BipartiteGraph):
    """The evaluator before issue 18 (top-K path, all items in one chunk): metric sums."""
    users = users[(test.rowptr[users + 1] - test.rowptr[users]) > 0]
    scores = user_emb[users] @ item_emb.T                                       # [B, I] fresh
    row, item = batch_edges(train, users)
    scores[row, item] = float("-inf")
    vals, idx = scores.topk(max(KS), dim=1)
    idx = idx.masked_fill(vals == float("-inf"), -1)
    keys = torch.sort(edge_keys(*batch_edges(test, users), test.num_items)).values
    rows = torch.arange(users.numel()).unsqueeze(1).expand_as(idx)
    hits = contains_edges(keys, rows, idx.clamp(min=0), test.num_items) & (idx >= 0)
    per_user = per_user_metrics(hits, test.rowptr[users + 1] - test.rowptr[users], KS)
    return {k: v.sum() for k, v in per_user.items()}


def reference_recall(user_emb, item_emb, users, train: BipartiteGraph, test: BipartiteGraph,
                     k: int = 20) -> float:
    """Recall@k summed over ``users`` with test items: dense scores, mask, ``topk``, ``isin``."""
    scores = user_emb[users] @ item_emb.T                                       # [B, I]
    deg = train.rowptr[users + 1] - train.rowptr[users]
    rows = torch.repeat_interleave(torch.arange(users.numel()), deg)
    scores[rows, train.col[train.rowptr[users[0]]:train.rowptr[users[-1] + 1]]] = float("-inf")
    top = scores.topk(k, dim=1).indices                                         # [B, k]
    hits = torch.isin(users.unsqueeze(1) * train.num_items + top, test.keys()).sum(1)
    n_test = test.rowptr[users + 1] - test.rowptr[users]
    return float((hits[n_test > 0] / n_test[n_test > 0]).sum())


def phases(user_emb, item_emb, users, train: BipartiteGraph, test: BipartiteGraph, out: dict,
           score_fn) -> None:
    """Ours on one batch (one item chunk), each phase timed into ``out``."""
    def tick(name, t0):
        out[name] += time.perf_counter() - t0
        return time.perf_counter()
    t = time.perf_counter()
    users = users[(test.rowptr[users + 1] - test.rowptr[users]) > 0]
    scores = score_fn(users, torch.arange(train.num_items))
    t = tick("score matmul", t)
    _mask_(scores, *batch_edges(train, users), 0, train.num_items)
    t = tick("mask train items", t)
    vals, idx = topk_pruned(scores, max(KS))
    idx = idx.masked_fill(vals == float("-inf"), -1)
    t = tick("top-k", t)
    hits = ranking_hits(idx, users, test)
    t = tick("hit lookup", t)
    metric_sums(hits, test.rowptr[users + 1] - test.rowptr[users], KS)
    tick("metric sums", t)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=("uniform", "amazon-book"), default="uniform")
    p.add_argument("--users", type=int, default=70_000, help="uniform shape only")
    p.add_argument("--items", type=int, default=25_000, help="uniform shape only")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--user-batch-size", type=int, default=2048)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--auc", action="store_true", help="also compute exact AUC (ours only)")
    p.add_argument("--phases", action="store_true", help="time ours per phase")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    user_emb, item_emb, train, test = (amazon_book_problem(a.dim, g) if a.shape == "amazon-book"
                                       else uniform_problem(a.users, a.items, a.dim, g))
    U, I = train.num_users, train.num_items
    print(f"{a.shape}: {U:,} users x {I:,} items, {train.num_edges:,} train / {test.num_edges:,} "
          f"test edges, batch {a.user_batch_size}, {torch.get_num_threads()} threads")
    t = time.perf_counter()
    ours = evaluate(user_emb, item_emb, train, test, ks=KS, user_batch_size=a.user_batch_size,
                    auc=a.auc)
    print(f"ours, end to end: {time.perf_counter() - t:.2f} s (K 10/20/50{', auc' if a.auc else ''})"
          f", peak RSS {peak_rss_gib():.2f} GiB")
    secs, cpu, prev, ref, parts = (defaultdict(float), defaultdict(float), defaultdict(float), 0.0,
                                   defaultdict(float))
    score_fn = inner_product(user_emb, item_emb, reuse_output=True)  # as evaluate and RecModule
    for batch in torch.arange(U).split(a.user_batch_size):                      # interleaved
        t, c = time.perf_counter(), time.process_time()
        rank_users_fn(score_fn, batch, train, test, KS, auc=False)
        secs["ours"], cpu["ours"] = (secs["ours"] + time.perf_counter() - t,
                                     cpu["ours"] + time.process_time() - c)
        t, c = time.perf_counter(), time.process_time()
        for key, total in previous_rank(user_emb, item_emb, batch, train, test).items():
            prev[key] += float(total)
        secs["previous"], cpu["previous"] = (secs["previous"] + time.perf_counter() - t,
                                             cpu["previous"] + time.process_time() - c)
        t = time.perf_counter()
        ref += reference_recall(user_emb, item_emb, batch, train, test)
        secs["reference"] += time.perf_counter() - t
    rows = max(1, _CPU_SCORES // I)                  # the evaluator's CPU blocks of users
    for batch in torch.arange(U).split(a.user_batch_size) if a.phases else ():
        for part in batch.split(rows):
            phases(user_emb, item_emb, part, train, test, parts, score_fn)
    for key, total in prev.items():
        assert abs(total / ours.num_users - ours.means()[key]) < 1e-9, key
    assert abs(ref / ours.num_users - ours.means()["recall@20"]) < 1e-9
    print(f"interleaved per batch: ours {secs['ours']:.2f} s, previous {secs['previous']:.2f} s "
          f"(previous/ours {secs['previous'] / secs['ours']:.2f}x), dense reference Recall@20 only "
          f"{secs['reference']:.2f} s ({secs['reference'] / secs['ours']:.2f}x); all 12 metrics "
          f"agree, recall@20 {ours.means()['recall@20']:.5f}")
    print(f"CPU seconds (all threads; less sensitive to other jobs): ours {cpu['ours']:.2f} s, "
          f"previous {cpu['previous']:.2f} s (previous/ours {cpu['previous'] / cpu['ours']:.2f}x)")
    if parts:
        print("ours per phase: " + ", ".join(f"{k} {v:.2f} s" for k, v in parts.items()))


if __name__ == "__main__":
    main()
