"""Sampled-candidate evaluation: AUC and NDCG@K of each user's held-out item among sampled
negatives (the protocol of the importance-sampling GNN paper's Table 1), beside the full
ranking of :mod:`reelgraph.metrics`.

The paper reports AUC, NDCG@1 and NDCG@2 "as in NCF" without its candidate sets. Its figures
cannot come from one held-out positive per user among many negatives: with one relevant item
``NDCG@2 <= NDCG@1 + (1 - NDCG@1) / log2 3`` (0.924 for its 0.7938, it reports 0.9567), and
``NDCG@1 = P(the positive beats every negative) <= AUC`` unless there is a single negative (it
reports NDCG@1 above AUC). So the protocol is ours, NCF's leave-one-out (the convention it
cites, [37]): per user with a test item, **one held-out positive** (drawn uniformly among its
test items) and ``num_negatives`` (NCF: 99) **sampled negatives**, uniform without replacement
among the items it has in no split (train, valid, test); a user with fewer such items than
``num_negatives`` gets them all. For each user, with ``s_p`` the positive's score and ``s_n`` the
negatives'::

    AUC_u     = mean_n 1[s_p > s_n] + 0.5 * 1[s_p = s_n]
    rank_u    = 1 + #{n: s_n > s_p} + #{n: s_n = s_p}     (a tie never wins: a constant scorer
                                                           gets rank N + 1, not 1)
    NDCG@K_u  = 1 / log2(rank_u + 1) if rank_u <= K else 0 (one relevant item: IDCG = 1)

and every metric is the mean over users. Candidate sets are drawn once from a seeded generator,
so two models are compared on the same candidates. ``RecModule(sampled_candidates=99)`` (CLI
``--model.sampled_candidates 99``) logs ``test/sampled_auc``, ``test/sampled_ndcg@K`` beside the
full-ranking test metrics, from :func:`store_candidates`.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Sequence

import torch
from torch import Tensor

from reelgraph.graph import BipartiteGraph, contains_edges

if TYPE_CHECKING:
    from reelgraph.data.store import GraphStore

SPLITS = ("train", "valid", "test")  # no item of these is a user's negative
ScoreFn = Callable[[Tensor, Tensor], Tensor]  # (users [B], items [C]) -> [B, C]


def sample_candidates(test: BipartiteGraph, seen: Sequence[BipartiteGraph], num_negatives: int,
                      generator: torch.Generator | None = None, block: int = 1 << 24
                      ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The candidate sets of the module doc (on the CPU).

    Args:
        test: the held-out interactions (a user's positive is drawn from its row).
        seen: every split whose items are never negatives (train, valid, test).
        num_negatives: negatives per user, at most.
        generator: of every draw (CPU).
        block: users x items drawn at once (memory ``O(block)``, never ``O(users x items)``).

    Returns:
        ``users [n]`` (those with a test item), ``pos [n]``, ``neg [n, N]`` (padded with
        ``-1`` where a user has fewer than ``N = min(num_negatives, I)`` unseen items) and
        ``valid [n, N]`` (bool, the real negatives).
    """
    deg = test.rowptr[1:] - test.rowptr[:-1]
    users = torch.nonzero(deg > 0).flatten()
    pick = (torch.rand(users.numel(), generator=generator, dtype=torch.float64)
            * deg[users]).long()
    pos = test.col[test.rowptr[users] + pick]
    keys = torch.unique(torch.cat([g.keys() for g in seen]))
    I, k = test.num_items, min(num_negatives, test.num_items)
    negs, valids = [], []
    for s in range(0, users.numel(), max(1, block // max(I, 1))):
        u = users[s:s + max(1, block // max(I, 1))]
        # uniform without replacement: the k smallest uniform keys among the unseen items
        key = torch.rand(u.numel(), I, generator=generator)              # [b, I]
        items = torch.arange(I).expand(u.numel(), -1)
        key[contains_edges(keys, u.unsqueeze(1).expand(-1, I), items, I)] = math.inf
        val, neg = torch.topk(key, k, dim=1, largest=False)              # [b, k]
        valids.append(torch.isfinite(val))
        negs.append(torch.where(valids[-1], neg, -1))
    return users, pos, torch.cat(negs), torch.cat(valids)


def candidate_metrics(pos_score: Tensor, neg_score: Tensor, valid: Tensor | None = None,
                      ks: Sequence[int] = (1, 2)) -> dict[str, Tensor]:
    """Per-user AUC and NDCG@K (module doc) from ``pos_score [n]`` and ``neg_score [n, N]``
    (``valid [n, N]``: which negatives count; a user without one has nothing to rank against, so
    every metric of it is ``nan``, not a perfect score)."""
    if valid is None:
        valid = torch.ones_like(neg_score, dtype=torch.bool)
    p = pos_score.unsqueeze(1)
    above = ((neg_score > p) & valid).sum(1)                             # [n]
    tied = ((neg_score == p) & valid).sum(1)
    below = ((neg_score < p) & valid).sum(1)
    count = valid.sum(1)
    auc = (below + 0.5 * tied) / count.where(count > 0, torch.ones_like(count))
    out = {"auc": torch.where(count > 0, auc.double(), math.nan)}
    rank = (1 + above + tied).double()
    for k in ks:
        ndcg = torch.where(rank <= k, 1.0 / torch.log2(rank + 1), 0.0)
        out[f"ndcg@{k}"] = torch.where(count > 0, ndcg, math.nan)
    return out


def sampled_sums(score_fn: ScoreFn, users: Tensor, pos: Tensor, neg: Tensor, valid: Tensor,
                 ks: Sequence[int] = (1, 2), user_batch_size: int = 256
                 ) -> tuple[dict[str, float], int]:
    """The sums over users of :func:`candidate_metrics` (``auc``, ``ndcg@K``; over the users with
    a negative) and the number of those users, scoring each batch of users against its own
    candidates only: ``score_fn(users [B], items [C])`` over the batch's distinct candidates
    ``C <= B (1 + N)``, then gathered. Every name is present, even without users, so sums from
    several processes add up (``RecModule`` all-reduces them)."""
    sums = dict.fromkeys(["auc", *(f"ndcg@{k}" for k in ks)], 0.0)
    ranked = 0
    for s in range(0, users.numel(), user_batch_size):
        b = slice(s, s + user_batch_size)
        cand = torch.cat([pos[b].unsqueeze(1), neg[b].clamp(min=0)], 1)  # [B, 1 + N]
        uniq, inv = torch.unique(cand, return_inverse=True)
        scores = score_fn(users[b], uniq.to(users.device))                # [B, C]
        got = torch.gather(scores, 1, inv.to(scores.device)).cpu()        # [B, 1 + N]
        m = candidate_metrics(got[:, 0], got[:, 1:], valid[b], ks)
        has = ~torch.isnan(m["auc"])
        ranked += int(has.sum())
        for key, v in m.items():
            sums[key] += float(v[has].sum())
    return sums, ranked


def evaluate_sampled(score_fn: ScoreFn, users: Tensor, pos: Tensor, neg: Tensor, valid: Tensor,
                     ks: Sequence[int] = (1, 2), user_batch_size: int = 256) -> dict[str, float]:
    """Means over users of :func:`candidate_metrics` (over the users with a negative; ``nan``
    without one), from :func:`sampled_sums`."""
    sums, ranked = sampled_sums(score_fn, users, pos, neg, valid, ks, user_batch_size)
    return {k: v / ranked if ranked else math.nan for k, v in sums.items()}


def store_candidates(store: "GraphStore", num_negatives: int, seed: int
                     ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`sample_candidates` of a store's test split, no item of any split a negative, drawn
    from ``torch.Generator().manual_seed(seed)`` alone (not the global RNG, not the training
    seed): every model evaluated with the same ``seed`` gets the same candidates. Cost: one
    uniform key per (test user, item), ``O(users x items)`` time as the full ranking."""
    return sample_candidates(store.graph("test"), [store.graph(s) for s in SPLITS],
                             num_negatives, torch.Generator().manual_seed(seed))
