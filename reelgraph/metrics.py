"""Streaming full-ranking top-K evaluation over all items, training items masked.

For a user ``u`` with training items ``R_u`` and a non-empty test set ``T_u``, every item is
scored, ``R_u`` is masked to ``-inf`` and the top ``K`` items form the ranking (binary relevance,
ranks ``r`` 1-based; the definitions of LightGCN and RecBole)::

    hits@K      = |top-K ∩ T_u|
    Recall@K    = hits@K / |T_u|
    Precision@K = hits@K / K
    HitRate@K   = 1[hits@K > 0]
    NDCG@K      = DCG@K / IDCG@K,  DCG@K = sum_{hit ranks r <= K} 1 / log2(r + 1),
                                   IDCG@K = sum_{r=1}^{min(|T_u|, K)} 1 / log2(r + 1)
    AUC         = mean over pairs (p, n), p in P_u = T_u \\ R_u, n in N_u = items \\ (R_u ∪ T_u),
                  of 1[s_p > s_n] + 0.5 * 1[s_p = s_n]

Users with an empty test set are skipped and counted (``num_skipped``); every mean is over the
evaluated users (AUC over those with non-empty ``P_u`` and ``N_u``, counted in ``auc_users``).
A masked item is never ranked: a user with fewer than ``K`` unmasked items gets a shorter list
(padded with ``-1``) and Precision@K still divides by ``K``; items a model scores ``-inf`` are left
out of the top-K too. Positive scores must be finite. Among tied scores the top-K order is
unspecified; AUC counts ties as 0.5. Graphs are assumed free of duplicate edges.

Memory is ``O(user_batch × (item_chunk + K))``: per user batch, items are scored chunk by chunk
and a running top-K is merged (:func:`topk_pruned` of the chunk, ``cat`` with the kept list,
``topk``); one top-K at ``max(ks)`` serves every cut-off. Per batch the work is a few large
tensor operations (a score product, a flat fill of ``-inf`` over the train items, a pruned top-K,
a sorted-key lookup of the hits, every metric's sum at once), so that on a loaded CPU few
thread hand-offs are paid; :func:`inner_product` can reuse one score buffer across batches. AUC
is exact and streaming too: each positive's score is computed first, then per chunk the sum of
``sign(s_j - s_p)`` over all items ``j`` (positives and train items masked to ``-inf`` give -1
each, added back) is ``#above - #below`` over ``N_u``, and ``#below + 0.5 #tied`` is
``(|N_u| - that) / 2``. That costs ``O(test edges × items)``: one pass over a chunk per test item
of the batch's users (plus scoring the batch's distinct test items once).
The same code runs on CPU and CUDA; tensors stay on the graphs' device.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from reelgraph.graph import BipartiteGraph, contains_edges, edge_keys

ScoreFn = Callable[[Tensor, Tensor], Tensor]
"""``score_fn(users [B], items [C]) -> scores [B, C]``; must return a tensor the evaluator may
overwrite (it is masked in place), not a view of model state. The evaluator is done with each
result before its next call, so a ``score_fn`` may reuse one buffer (see :func:`inner_product`)."""


@dataclass(frozen=True)
class RankingResult:
    """Per-metric sums, so distributed workers can all-reduce them exactly.

    Attributes:
        sums: ``"recall@20"`` (and ``precision``, ``ndcg``, ``hitrate`` per K, ``auc``,
            ``auc_users``) -> scalar float64 sum over the evaluated users.
        num_users: users evaluated.
        num_skipped: users skipped because their test set is empty.
    """

    sums: dict[str, Tensor]
    num_users: int
    num_skipped: int

    def merge(self, other: "RankingResult") -> "RankingResult":
        sums = dict(self.sums)
        for key, total in other.sums.items():
            sums[key] = sums[key] + total if key in sums else total
        return RankingResult(sums, self.num_users + other.num_users,
                             self.num_skipped + other.num_skipped)

    @classmethod
    def empty(cls, ks: Sequence[int], auc: bool, device: torch.device | str = "cpu"
              ) -> "RankingResult":
        """No users evaluated: every sum of :func:`metric_names` zero."""
        return cls(_zero_sums(ks, auc, torch.device(device)), 0, 0)

    def means(self) -> dict[str, float]:
        """Each metric averaged over its users (``nan`` when there are none)."""
        out = {}
        for key, total in self.sums.items():
            if key == "auc_users":
                continue
            count = float(self.sums["auc_users"]) if key == "auc" else float(self.num_users)
            out[key] = float(total) / count if count > 0 else float("nan")
        return out


def metric_names(ks: Sequence[int], auc: bool = True) -> list[str]:
    """The keys of :attr:`RankingResult.sums` for cut-offs ``ks``."""
    names = [f"{m}@{k}" for k in ks for m in ("recall", "precision", "ndcg", "hitrate")]
    return names + (["auc", "auc_users"] if auc else [])


def batch_edges(graph: BipartiteGraph, users: Tensor) -> tuple[Tensor, Tensor]:
    """The edges of ``users [B]`` as ``(row [E_b], item [E_b])``; ``row`` indexes ``users``."""
    start, deg = graph.rowptr[users], graph.rowptr[users + 1] - graph.rowptr[users]
    row = torch.repeat_interleave(torch.arange(users.numel(), device=users.device), deg)
    first = torch.cumsum(deg, 0) - deg                                  # [B] row's first slot
    slot = start[row] + torch.arange(row.numel(), device=users.device) - first[row]
    return row, graph.col[slot]


def ranking_hits(topk_items: Tensor, users: Tensor, test: BipartiteGraph) -> Tensor:
    """Whether each ranked item is a test item of its user: ``bool [B, K]``.

    ``topk_items [B, K]`` holds item ids, ``-1`` for an empty slot; row ``i`` is ``users[i]``.
    """
    keys = edge_keys(*batch_edges(test, users), test.num_items)         # sorted: CSR rows in order
    rows = torch.arange(users.numel(), device=users.device).unsqueeze(1).expand_as(topk_items)
    return contains_edges(keys, rows, topk_items.clamp(min=0), test.num_items) & (topk_items >= 0)


def per_user_metrics(hits: Tensor, num_test: Tensor, ks: Sequence[int]) -> dict[str, Tensor]:
    """Recall, Precision, NDCG and HitRate at each K, per user, from a ranking's hits.

    Args:
        hits: ``bool [B, K_max]``, ``hits[i, r]`` whether rank ``r + 1`` of user ``i`` is relevant;
            ``K_max >= max(ks)``.
        num_test: ``[B]`` test-set size of each user, ``>= 1``.
        ks: the cut-offs.

    Returns:
        ``"recall@K"``, ``"precision@K"``, ``"ndcg@K"``, ``"hitrate@K"`` -> float64 ``[B]``.
    """
    hits = hits.to(torch.float64)
    ranks = torch.arange(2, hits.size(1) + 2, dtype=torch.float64, device=hits.device)
    discount = 1.0 / torch.log2(ranks)                                  # [K_max] 1/log2(r+1)
    num_hits, dcg = hits.cumsum(1), (hits * discount).cumsum(1)         # [B, K_max] each
    idcg = discount.cumsum(0)                                           # [K_max]
    out = {}
    for k in ks:
        h = num_hits[:, k - 1]
        out[f"recall@{k}"] = h / num_test.to(torch.float64)
        out[f"precision@{k}"] = h / k
        out[f"ndcg@{k}"] = dcg[:, k - 1] / idcg[num_test.clamp(max=k) - 1]
        out[f"hitrate@{k}"] = (h > 0).to(torch.float64)
    return out


def topk_pruned(scores: Tensor, k: int, group: int = 16) -> tuple[Tensor, Tensor]:
    """``scores [B, C].topk(k, dim=1)`` (values best first, their columns) from ``k × group``
    candidates per row; the same values, and the same columns up to the order of ties.

    Columns ``j, j + n, ..., j + (group - 1) n`` (``n = C // group``) form group ``j``. The ``k``
    groups with the largest maxima hold a top-``k``: their maxima are ``k`` scores at least as
    large as any score outside them. Their members and the last ``C - n·group`` columns are the
    candidates. Recurses on the maxima ``[B, n]``; short rows use ``topk``. Scores must not be NaN.
    """
    rows, cols = scores.shape
    k = min(k, cols)
    if cols < 4 * k * group:
        return scores.topk(k, dim=1)
    n = cols // group
    best = scores[:, :n * group].unflatten(1, (group, n)).amax(1)        # [B, n] group maxima
    _, top = topk_pruned(best, k, group)                                 # [B, k] groups
    member = torch.arange(0, n * group, n, device=scores.device)         # [group] offsets
    cand = (top.unsqueeze(2) + member).flatten(1)                        # [B, k·group]
    if cols > n * group:
        tail = torch.arange(n * group, cols, device=scores.device).expand(rows, -1)
        cand = torch.cat([cand, tail], 1)
    vals, sel = scores.gather(1, cand).topk(k, dim=1)
    return vals, cand.gather(1, sel)


def metric_sums(hits: Tensor, num_test: Tensor, ks: Sequence[int]) -> dict[str, Tensor]:
    """:func:`per_user_metrics` summed over the users (float64 scalars), every K at once."""
    kk = torch.tensor(list(ks), device=hits.device)                     # [nK]
    discount = 1.0 / torch.log2(torch.arange(2, hits.size(1) + 2, dtype=torch.float64,
                                             device=hits.device))       # [K_max]
    h64 = hits.to(torch.float64)
    num_hits = h64.cumsum(1)[:, kk - 1]                                 # [B, nK]
    dcg = (h64 * discount).cumsum(1)[:, kk - 1]                         # [B, nK]
    idcg = discount.cumsum(0)[torch.minimum(num_test.unsqueeze(1), kk) - 1]  # [B, nK]
    n = num_test.to(torch.float64).unsqueeze(1)
    sums = torch.stack([(num_hits / n).sum(0), num_hits.sum(0) / kk, (dcg / idcg).sum(0),
                        (num_hits > 0).sum(0).to(torch.float64)])       # [4, nK]
    return {f"{m}@{k}": sums[i, j] for j, k in enumerate(ks)
            for i, m in enumerate(("recall", "precision", "ndcg", "hitrate"))}


def _merge_topk(vals: Tensor | None, idx: Tensor | None, scores: Tensor, start: int, k: int
                ) -> tuple[Tensor, Tensor]:
    """Running top-``k`` of ``[B, k']`` kept values/items with a chunk ``scores [B, C]``."""
    v, i = topk_pruned(scores, k)
    i += start
    if vals is None:
        return v, i
    v, i = torch.cat([vals, v], 1), torch.cat([idx, i], 1)              # [B, k' + min(k, C)]
    v, sel = v.topk(min(k, v.size(1)), dim=1)
    return v, i.gather(1, sel)


def _mask_(scores: Tensor, row: Tensor, item: Tensor, start: int, num_items: int = -1) -> None:
    """Sets ``scores[row, item - start] = -inf`` for the edges whose item lies in the chunk
    (every edge when the chunk is all ``num_items`` items)."""
    if start == 0 and scores.size(1) == num_items and scores.is_contiguous():
        scores.view(-1).index_fill_(0, row * num_items + item, float("-inf"))
        return
    sel = (item >= start) & (item < start + scores.size(1))
    scores[row[sel], item[sel] - start] = float("-inf")


def _finish_topk(vals: Tensor, idx: Tensor, k: int) -> Tensor:
    """Ranked items ``[B, k]``, ``-1`` where a slot is empty (a masked or ``-inf`` item)."""
    idx = idx.masked_fill(vals == float("-inf"), -1)
    return torch.nn.functional.pad(idx, (0, k - idx.size(1)), value=-1)


def _ranking(score_fn: ScoreFn, users: Tensor, train: BipartiteGraph, k: int,
             item_chunk_size: int, acc: "_AucAccumulator | None" = None) -> Tensor:
    """Ranked items ``[B, k]`` (see :func:`topk_items`), feeding every masked chunk to ``acc``."""
    t_row, t_item = batch_edges(train, users)
    vals = idx = None
    for start in range(0, train.num_items, item_chunk_size):
        items = torch.arange(start, min(start + item_chunk_size, train.num_items),
                             device=train.device)
        scores = score_fn(users, items)                                 # [B, C]
        _mask_(scores, t_row, t_item, start, train.num_items)
        vals, idx = _merge_topk(vals, idx, scores, start, k)
        if acc is not None:
            acc.update(scores, start)
    return _finish_topk(vals, idx, k)


@torch.no_grad()
def topk_items(score_fn: ScoreFn, users: Tensor, train: BipartiteGraph, k: int,
               item_chunk_size: int = 1 << 16) -> Tensor:
    """Top-``k`` items ``[B, k]`` of ``users [B]`` (best first), training items masked; ``-1``
    pads users with fewer than ``k`` unmasked items. Memory ``O(B × (item_chunk_size + k))``."""
    return _ranking(score_fn, users.to(train.device).long(), train, k, item_chunk_size)


_CPU_BLOCK = 1 << 21  # elements of one CPU block of AUC's comparisons (8 MiB of float32)
# Users scored and ranked at once on CPU: [rows, items] float32 blocks of at most 16 MiB, so the
# top-K reads the scores the product just wrote from cache (amazon-book: 168 users; 1.7x faster
# than one 4096-user block on 2 cores, benchmarks/RESULTS.md). The batch's other steps stay batched.
_CPU_SCORES = 1 << 22


class _AucAccumulator:
    """Streaming exact AUC for one user batch whose users are sorted by ``|P_u|``, descending."""

    def __init__(self, score_fn: ScoreFn, users: Tensor, row: Tensor, item: Tensor,
                 num_masked: Tensor, num_items: int, item_chunk_size: int):
        self.row, self.item, self.num_items = row, item, num_items      # positives [P]
        self.num_pos = torch.bincount(row, minlength=users.numel())     # [B] non-increasing
        self.counts = self.num_pos.tolist()
        width = self.counts[0] if self.counts else 0
        slot = torch.arange(row.numel(), device=row.device) - (torch.cumsum(self.num_pos, 0)
                                                                 - self.num_pos)[row]
        uniq, inv = torch.unique(item, return_inverse=True)
        pos_score = torch.empty(row.numel(), device=row.device)
        for c0 in range(0, uniq.numel(), item_chunk_size):              # bounded [B, chunk] blocks
            sel = (inv >= c0) & (inv < c0 + item_chunk_size)
            block = score_fn(users, uniq[c0:c0 + item_chunk_size])
            pos_score = pos_score.to(block.dtype)
            pos_score[sel] = block[row[sel], inv[sel] - c0]
        self.pos = torch.zeros(users.numel(), max(width, 1), dtype=pos_score.dtype,
                               device=row.device)
        self.pos[row, slot] = pos_score                                 # [B, width] positive scores
        self.masked = num_masked.to(torch.float64)                      # [B] |R_u ∪ P_u|
        self.sign_sum = torch.zeros_like(self.masked)

    def update(self, scores: Tensor, start: int) -> None:
        """Adds a chunk ``scores [B, C]`` (train items already ``-inf``; positives get masked)."""
        _mask_(scores, self.row, self.item, start)
        # Sums of ±1/0 over <= 2^24 items are exact in float32 (bool sums to int64 are slow).
        acc = torch.float64 if scores.dtype == torch.float64 else torch.float32
        # On CPU, blocks of rows small enough to stay in cache; on a GPU, the whole batch.
        rows = scores.size(0) if scores.is_cuda else max(1, _CPU_BLOCK // scores.size(1))
        buf = scores.new_empty(min(rows, scores.size(0)), scores.size(1))
        for r0 in range(0, scores.size(0), rows):
            block = self.counts[r0:r0 + rows]                           # non-increasing
            n = len(block)
            for j in range(block[0]):
                while block[n - 1] <= j:                                # rows with a j-th positive
                    n -= 1
                diff = torch.sub(scores[r0:r0 + n], self.pos[r0:r0 + n, j:j + 1], out=buf[:n])
                self.sign_sum[r0:r0 + n] += diff.sign_().sum(1, dtype=acc)

    def sums(self) -> tuple[Tensor, Tensor]:
        """AUC summed over the users with positives and negatives, and their count."""
        p = self.num_pos.to(torch.float64)
        n = self.num_items - self.masked                                # |N_u|
        pairs = p * n
        sign_neg = self.sign_sum + p * self.masked    # sum_p (#neg above - #below); masked gave -1
        ok = pairs > 0
        auc = (pairs - sign_neg)[ok] / (2 * pairs[ok])
        return auc.sum(), ok.sum().to(torch.float64)


def _zero_sums(ks: Sequence[int], auc: bool, device: torch.device) -> dict[str, Tensor]:
    return {k: torch.zeros((), dtype=torch.float64, device=device) for k in metric_names(ks, auc)}


def _check_ks(ks: Sequence[int]) -> int:
    if not ks or any(int(k) < 1 for k in ks):
        raise ValueError(f"ks must be positive cut-offs, got {tuple(ks)}")
    return max(int(k) for k in ks)


def _positives(users: Tensor, train: BipartiteGraph, test: BipartiteGraph
               ) -> tuple[Tensor, Tensor, Tensor]:
    """AUC positives ``P_u = T_u \\ R_u`` of ``users [B]`` as ``(row [P], item [P])``, and
    ``|R_u ∪ P_u|`` ``[B]`` (the items left out of ``N_u``); duplicate edges count once."""
    n = test.num_items
    train_keys = torch.unique(edge_keys(*batch_edges(train, users), n))  # sorted, distinct
    keys = torch.unique(edge_keys(*batch_edges(test, users), n))
    keys = keys[~contains_edges(train_keys, keys // n, keys % n, n)]
    num_masked = torch.bincount(torch.cat([train_keys, keys]) // n, minlength=users.numel())
    return keys // n, keys % n, num_masked


def _auc_setup(score_fn: ScoreFn, users: Tensor, train: BipartiteGraph, test: BipartiteGraph,
               item_chunk_size: int) -> tuple[Tensor, _AucAccumulator]:
    """Sorts ``users`` by their number of positives, descending, and builds the accumulator."""
    row, _, _ = _positives(users, train, test)
    users = users[torch.argsort(torch.bincount(row, minlength=users.numel()), descending=True,
                                stable=True)]
    row, item, num_masked = _positives(users, train, test)
    return users, _AucAccumulator(score_fn, users, row, item, num_masked, test.num_items,
                                  item_chunk_size)


@torch.no_grad()
def rank_users_fn(score_fn: ScoreFn, users: Tensor, train: BipartiteGraph, test: BipartiteGraph,
                  ks: Sequence[int] = (10, 20, 50), item_chunk_size: int = 1 << 16,
                  auc: bool = True) -> RankingResult:
    """Evaluates one batch of ``users [B]`` scored by ``score_fn(users, items) -> [B, C]``.

    Args:
        score_fn: scores of every user for a chunk of items; called with ``items`` an ``arange``
            chunk (and, for AUC, chunks of the batch's test items); a :data:`ScoreFn`: the
            evaluator may overwrite its result and is done with it before the next call.
        users: ``[B]`` user ids; the memory used is ``O(B × (item_chunk_size + max(ks)))``.
        train, test: masked and relevant items (same sizes, on the device of the scores).
        ks: cut-offs. item_chunk_size: items scored at once (default 65536). auc: also AUC.
    """
    kmax = _check_ks(ks)
    item_chunk_size = min(item_chunk_size, 1 << 24)                     # keeps AUC's sums exact
    users = users.to(train.device).long()
    num_test = test.rowptr[users + 1] - test.rowptr[users]
    num_skipped = int((num_test == 0).sum())
    users = users[num_test > 0]
    if users.numel() == 0:
        return RankingResult(_zero_sums(ks, auc, train.device), 0, num_skipped)
    acc = None
    if auc:
        users, acc = _auc_setup(score_fn, users, train, test, item_chunk_size)
    if acc is None and train.device.type == "cpu":                      # cache-sized blocks
        rows = max(1, _CPU_SCORES // min(item_chunk_size, train.num_items))
        idx = torch.cat([_ranking(score_fn, part, train, kmax, item_chunk_size)
                         for part in users.split(rows)])
    else:
        idx = _ranking(score_fn, users, train, kmax, item_chunk_size, acc)
    num_test = test.rowptr[users + 1] - test.rowptr[users]
    sums = metric_sums(ranking_hits(idx, users, test), num_test, ks)
    if acc is not None:
        sums["auc"], sums["auc_users"] = acc.sums()
    return RankingResult(sums, users.numel(), num_skipped)


def inner_product(user_emb: Tensor, item_emb: Tensor, reuse_output: bool = False) -> ScoreFn:
    """``score_fn`` of ``user_emb [U, d]``, ``item_emb [I, d]``: ``user_emb[u] @ item_emb[i].T``.

    Args:
        reuse_output: write every result into one buffer (grown to the largest ``[B, C]`` asked
            for) instead of a fresh tensor, so each call overwrites the last result; the
            evaluator allows it. On CPU a fresh block of a large batch costs a page fault per
            4 KiB, about a quarter of the product's time. Gradients are not supported then.
    """
    if not reuse_output:
        return lambda users, items: user_emb[users] @ item_emb[items].T
    buf = user_emb.new_empty(0)

    def score(users: Tensor, items: Tensor) -> Tensor:
        nonlocal buf
        size = users.numel() * items.numel()
        if buf.numel() < size:
            buf = None                                                  # free before growing
            buf = user_emb.new_empty(size)
        out = buf[:size].view(users.numel(), items.numel())            # [B, C]
        return torch.mm(user_emb[users], item_emb[items].T, out=out)
    return score


def rank_users(user_emb: Tensor, item_emb: Tensor, users: Tensor, train: BipartiteGraph,
               test: BipartiteGraph, ks: Sequence[int] = (10, 20, 50),
               item_chunk_size: int = 1 << 16, auc: bool = True) -> RankingResult:
    """One batch of ``users [B]`` scored by ``user_emb[users] @ item_emb.T``, chunk by chunk."""
    return rank_users_fn(inner_product(user_emb, item_emb, reuse_output=True), users, train,
                         test, ks, item_chunk_size, auc)


def evaluate_fn(score_fn: ScoreFn, train: BipartiteGraph, test: BipartiteGraph,
                ks: Sequence[int] = (10, 20, 50), user_batch_size: int = 1024,
                item_chunk_size: int = 1 << 16, auc: bool = True, users: Tensor | None = None,
                progress: bool = False) -> RankingResult:
    """All ``users`` (default: every user) in batches of ``user_batch_size``, results merged."""
    if (train.num_users, train.num_items) != (test.num_users, test.num_items):
        raise ValueError("train and test graphs must have the same numbers of users and items")
    if user_batch_size < 1 or item_chunk_size < 1:
        raise ValueError("user_batch_size and item_chunk_size must be positive")
    _check_ks(ks)
    if users is None:
        users = torch.arange(train.num_users, device=train.device)
    result = RankingResult(_zero_sums(ks, auc, train.device), 0, 0)
    for batch in tqdm(users.split(user_batch_size), desc="evaluate", disable=not progress):
        result = result.merge(rank_users_fn(score_fn, batch, train, test, ks, item_chunk_size, auc))
    return result


def evaluate(user_emb: Tensor, item_emb: Tensor, train: BipartiteGraph, test: BipartiteGraph,
             ks: Sequence[int] = (10, 20, 50), user_batch_size: int = 1024,
             item_chunk_size: int = 1 << 16, auc: bool = True, users: Tensor | None = None,
             progress: bool = False) -> RankingResult:
    """Full-ranking evaluation of ``user_emb [U, d]`` and ``item_emb [I, d]`` on their device.

    Args:
        train: items masked from each user's ranking. test: each user's relevant items.
        ks: cut-offs (default ``(10, 20, 50)``). user_batch_size: users per batch (1024).
        item_chunk_size: items scored at once (65536). auc: also AUC (True).
        users: ``[n]`` user ids to evaluate (default all). progress: a tqdm bar over batches.
    """
    if user_emb.size(0) != train.num_users or item_emb.size(0) != train.num_items:
        raise ValueError(f"embeddings {tuple(user_emb.shape)}, {tuple(item_emb.shape)} do not "
                         f"match {train.num_users} users and {train.num_items} items")
    device = user_emb.device
    return evaluate_fn(inner_product(user_emb, item_emb.to(device), reuse_output=True),
                       train.to(device), test.to(device), ks, user_batch_size, item_chunk_size,
                       auc, None if users is None else users.to(device), progress)


def popularity_scores(train: BipartiteGraph) -> Tensor:
    """Training degree of every item as float32 ``[num_items]``: the most-popular baseline."""
    return train.degree()[1].to(torch.float32)


def evaluate_popularity(train: BipartiteGraph, test: BipartiteGraph,
                        ks: Sequence[int] = (10, 20, 50), user_batch_size: int = 1024,
                        item_chunk_size: int = 1 << 16, auc: bool = True,
                        users: Tensor | None = None, progress: bool = False) -> RankingResult:
    """The most-popular baseline (one ranking for every user) through :func:`evaluate_fn`."""
    pop = popularity_scores(train)
    return evaluate_fn(lambda u, items: pop[items].repeat(u.numel(), 1), train, test, ks,
                       user_batch_size, item_chunk_size, auc, users, progress)
