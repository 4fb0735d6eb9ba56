"""Negative sampling for link prediction; CPU and CUDA alike.

The positives to avoid are given either as sorted ``user * num_items + item`` keys
(:func:`reelgraph.graph.edge_keys`) or as the user→item CSR ``(rowptr, col)`` itself (columns
sorted within rows): the CSR form reads ``O(log deg)`` slots per draw and needs no ``[E]`` key
array, so it suits memory-mapped graphs of any size.
"""
from __future__ import annotations

import torch
from torch import Tensor

from reelgraph.graph import contains_edges, csr_contains, expand_rows

Positives = Tensor | tuple[Tensor, Tensor]  # sorted keys, or a (rowptr, col) CSR


def is_positive(positives: Positives, users: Tensor, items: Tensor, num_items: int) -> Tensor:
    """Whether each ``(users, items)`` pair (same shapes) is a positive."""
    if isinstance(positives, tuple):
        return csr_contains(*positives, users.long(), items)
    return contains_edges(positives, users, items, num_items)


def user_positives(positives: Positives, users: Tensor, num_items: int) -> tuple[Tensor, Tensor]:
    """Every positive of ``users [B]``: ``(position in users [M], item [M])``."""
    if isinstance(positives, tuple):
        pos, slot = expand_rows(positives[0], users.long())
        return pos, positives[1][slot].long()
    lo = torch.searchsorted(positives, users.long() * num_items)
    count = torch.searchsorted(positives, (users.long() + 1) * num_items) - lo  # [B]
    row = torch.repeat_interleave(torch.arange(users.numel(), device=users.device), count)
    slot = lo[row] + torch.arange(row.numel(), device=row.device) - (torch.cumsum(count, 0) - count)[row]
    return row, positives[slot] % num_items


def uniform_negatives(users: Tensor, pos_keys: Positives, num_items: int, num_negatives: int = 1,
                      *, generator: torch.Generator | None = None, max_rounds: int = 20) -> Tensor:
    """Items drawn uniformly for each user, never one of the user's positives.

    Every draw is checked against ``pos_keys`` and redrawn where it hits a positive (rejection
    sampling); a user whose positives cover every item raises.

    Args:
        users (Tensor): ``[B]`` user indices.
        pos_keys: the positives to exclude (sorted keys or a CSR, module doc).
        num_items (int): size of the item set.
        num_negatives (int): negatives per user (default ``1``).
        generator (torch.Generator, optional): on ``users.device``, for reproducible draws.
        max_rounds (int): redraw rounds before giving up.

    Returns:
        ``[B, num_negatives]`` int64 item indices.
    """
    device = users.device
    u = users.long().unsqueeze(1).expand(-1, num_negatives)
    neg = torch.randint(num_items, u.shape, device=device, generator=generator)
    for _ in range(max_rounds):
        bad = is_positive(pos_keys, u, neg, num_items)
        if not bool(bad.any()):
            return neg
        neg[bad] = torch.randint(num_items, (int(bad.sum()),), device=device, generator=generator)
    raise RuntimeError(
        f"negative sampling: {int(bad.sum())} draws still hit positives after {max_rounds} rounds;"
        " some users have interacted with (almost) every item")


def _redraw_positives(users: Tensor, neg: Tensor, pos_keys: Positives, num_items: int,
                      draw, max_rounds: int) -> Tensor:
    """Redraws (``draw(n) -> [n] items``) every ``neg [B, K]`` entry that is a positive."""
    u = users.long().unsqueeze(1).expand_as(neg)
    for _ in range(max_rounds):
        bad = is_positive(pos_keys, u, neg, num_items)
        if not bool(bad.any()):
            return neg
        neg[bad] = draw(int(bad.sum()))
    raise RuntimeError(
        f"negative sampling: {int(bad.sum())} draws still hit positives after {max_rounds} rounds;"
        " some users have interacted with (almost) every likely item")


def popularity_cdf(item_count: Tensor, alpha: float = 0.75) -> Tensor:
    """Inclusive float64 prefix sums of ``item_count ** alpha``, ``[num_items]``; computed
    once per epoch and passed to :func:`popularity_negatives`. Items never interacted with
    get probability 0 (for ``alpha > 0``); ``alpha = 0`` is uniform."""
    weight = item_count.to(torch.float64).pow(alpha)
    if alpha > 0:
        weight = torch.where(item_count > 0, weight, torch.zeros_like(weight))
    return torch.cumsum(weight, 0)


def popularity_negatives(users: Tensor, pos_keys: Positives, cdf: Tensor, num_negatives: int = 1,
                         *, generator: torch.Generator | None = None, max_rounds: int = 20
                         ) -> Tensor:
    """Items drawn with probability ``∝ popularity ** alpha`` (inverse CDF over ``cdf`` from
    :func:`popularity_cdf`), never one of the user's positives (checked and redrawn).

    Args:
        users (Tensor): ``[B]`` user indices.
        pos_keys: the positives to exclude (sorted keys or a CSR, module doc).
        cdf (Tensor): ``[num_items]`` from :func:`popularity_cdf`.
        num_negatives (int): negatives per user (default ``1``).
        generator (torch.Generator, optional): on ``users.device``.
        max_rounds (int): redraw rounds before giving up.

    Returns:
        ``[B, num_negatives]`` int64 item indices.
    """
    num_items = cdf.numel()

    def draw(n: int) -> Tensor:
        u = torch.rand(n, dtype=torch.float64, device=cdf.device, generator=generator) * cdf[-1]
        return torch.searchsorted(cdf, u, right=True).clamp_(max=num_items - 1)

    neg = draw(users.numel() * num_negatives).view(-1, num_negatives)
    return _redraw_positives(users, neg, pos_keys, num_items, draw, max_rounds)


def in_batch_negatives(users: Tensor, items: Tensor, pos_keys: Positives, num_items: int
                       ) -> tuple[Tensor, Tensor]:
    """Every other row's positive item as a negative for each ``(user, item)`` row.

    Returns:
        ``neg [B, B - 1]`` items and ``valid [B, B - 1]``, ``False`` where the item is one of
        the row user's positives (a false negative to mask out of the loss).
    """
    b = users.numel()
    j = torch.arange(b - 1, device=users.device).unsqueeze(0).expand(b, -1)
    j = j + (j >= torch.arange(b, device=users.device).unsqueeze(1)).long()  # skip own row
    neg = items[j]
    valid = ~is_positive(pos_keys, users.long().unsqueeze(1).expand_as(neg), neg, num_items)
    return neg, valid


def in_batch_sampled_negatives(users: Tensor, items: Tensor, pos_keys: Positives, num_items: int,
                               num_negatives: int = 1, *, generator: torch.Generator | None = None,
                               max_rounds: int = 20) -> Tensor:
    """``[B, num_negatives]`` negatives drawn from the batch's own positives ``items [B]`` (so
    with probability ``∝`` popularity within the batch), each from a row other than its own; a
    draw that is one of the user's positives is redrawn, after ``max_rounds // 2`` rounds
    uniformly over all items (a batch whose positives are all the user's own)."""
    b = users.numel()
    if b < 2:
        return uniform_negatives(users, pos_keys, num_items, num_negatives, generator=generator,
                                 max_rounds=max_rounds)
    row = torch.randint(b - 1, (b, num_negatives), device=users.device, generator=generator)
    row = row + (row >= torch.arange(b, device=users.device).unsqueeze(1)).long()  # skip own
    neg = items[row].long()
    rounds = [0]

    def draw(n: int) -> Tensor:
        rounds[0] += 1
        if rounds[0] <= max_rounds // 2:
            return items[torch.randint(b, (n,), device=users.device, generator=generator)].long()
        return torch.randint(num_items, (n,), device=users.device, generator=generator)

    return _redraw_positives(users, neg, pos_keys, num_items, draw, max_rounds)


def hard_negatives(scores: Tensor, users: Tensor, pos_keys: Positives, num_negatives: int = 1, *,
                   rank_range: tuple[int, int] = (2000, 5000),
                   generator: torch.Generator | None = None) -> Tensor:
    """Negatives drawn uniformly among the items the current model ranks in ``rank_range``
    (0-based, half-open) for each user, positives excluded before ranking.

    Args:
        scores (Tensor): ``[B, num_items]`` finite model scores of ``users`` against all items.
        users (Tensor): ``[B]`` user indices.
        pos_keys: the positives to exclude (sorted keys or a CSR, module doc).
        num_negatives (int): negatives per user (default ``1``).
        rank_range (tuple): ranks ``[lo, hi)`` to draw from; clipped to each user's count of
            non-positive items (default ``(2000, 5000)``).
        generator (torch.Generator, optional): on ``scores.device``.

    Returns:
        ``[B, num_negatives]`` int64 item indices.
    """
    num_items = scores.size(1)
    users = users.long()
    row, item = user_positives(pos_keys, users, num_items)
    num_pos = torch.bincount(row, minlength=users.numel())  # [B]
    scores = scores.clone()
    scores[row, item] = float("-inf")
    num_valid = num_items - num_pos
    if bool((num_valid == 0).any()):
        raise RuntimeError("hard_negatives: a user's positives cover every item")
    top = torch.topk(scores, min(rank_range[1], num_items), dim=1).indices  # [B, H]
    hi = torch.clamp(num_valid, max=top.size(1))
    lo = torch.minimum(torch.full_like(hi, rank_range[0]), hi - 1)
    r = torch.rand(users.numel(), num_negatives, device=scores.device, generator=generator)
    rank = lo.unsqueeze(1) + (r * (hi - lo).unsqueeze(1)).long()
    neg = top.gather(1, torch.minimum(rank, hi.unsqueeze(1) - 1))
    if bool(is_positive(pos_keys, users.unsqueeze(1).expand_as(neg), neg, num_items).any()):
        raise RuntimeError("hard_negatives: a positive was drawn; are some scores -inf or nan?")
    return neg


def hard_negatives_from_embeddings(user_emb: Tensor, item_emb: Tensor, users: Tensor,
                                   pos_keys: Positives, num_negatives: int = 1, *,
                                   rank_range: tuple[int, int] = (2000, 5000),
                                   generator: torch.Generator | None = None) -> Tensor:
    """:func:`hard_negatives` with dot-product scores ``user_emb[users] @ item_emb.T``."""
    scores = user_emb[users] @ item_emb.t()  # [B, num_items]
    return hard_negatives(scores.detach(), users, pos_keys, num_negatives,
                          rank_range=rank_range, generator=generator)
