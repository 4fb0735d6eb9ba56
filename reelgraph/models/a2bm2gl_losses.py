"""A²BM²GL's losses (:mod:`reelgraph.models.a2bm2gl`): eq. 8's adaptive loss, sampled
(:func:`adaptive_loss`) and exact without sampling (:func:`full_adaptive_loss`), the boundary
margin hinge and the UltraGCN-style constraint loss of L_str / L_sem."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def adaptive_loss(pos_score: Tensor, neg_score: Tensor, upper: Tensor, lower: Tensor,
                  margin: float) -> tuple[Tensor, Tensor]:
    """Eq. 8 on a batch and the margin hinge: ``pos [B]``, ``neg [B, k]``, ``upper/lower [B]``.

    Returns ``mean (B_up - s+)^2 + mean (s- - B_low)^2`` and ``mean max(m - (B_up - B_low), 0)``.
    """
    rec = (upper - pos_score).pow(2).mean() + (neg_score - lower.unsqueeze(1)).pow(2).mean()
    return rec, margin_loss(upper, lower, margin)


def margin_loss(upper: Tensor, lower: Tensor, margin: float) -> Tensor:
    """``mean max(m - (B_up - B_low), 0)``: the hinge the printed ``-max{...}`` means."""
    return F.relu(margin - (upper - lower)).mean()


def full_adaptive_loss(user: Tensor, item: Tensor, index: Tensor, pos: Tensor, upper: Tensor,
                       lower: Tensor, *, pos_weight: float = 1.0,
                       neg_weight: float | Tensor = 1.0, chunk_size: int = 65536) -> Tensor:
    """Eq. 8 without sampling, per user, with eq. 7's entry weights ``c_uv``:

    ``l(u) = c+ sum_{v in N(u)+} (B_up - s_uv)^2 + c0 sum_{v in N(u)-} (s_uv - B_low)^2``,
    ``s_uv = E_u . E_v``, for ``user [B, d]``, every item ``item [I, d]``, the users' interacted
    items as pairs ``(index [M] row in user, pos [M] item)`` (no duplicates) and ``upper``,
    ``lower [B]``. Returns ``l [B]``.

    Weights: eq. 7 names ``c_uv`` and says missing entries are weighted uniformly; eq. 8 prints
    none. We read ``c+ = pos_weight`` on every interacted entry and ``c0 = neg_weight`` on every
    missing one (both 1: eq. 8 as printed; ``neg_weight [B]``: one per user).

    Uniform ``c0`` makes the N(u)- part a quadratic form (the non-sampling trick of this line of
    work, e.g. Chen et al.'s ENMF): with the item mean ``mu`` and scatter ``C = sum_v (E_v -
    mu)(E_v - mu)^T`` over all ``I`` items, ``sum_v (s_uv - b)^2 = E_u^T C E_u + I (E_u . mu -
    b)^2`` (two non-negative terms: no cancellation), minus the same over N(u)+. ``mu`` and ``C``
    are summed over ``chunk_size`` items at a time: nothing larger than ``[chunk, d]``, ``[B, d]``
    or ``[M, d]`` is formed (never ``[B, I]``; autograd keeps the ``[I, d]`` chunks), at
    ``O((I + B) d^2 + M d)``.
    """
    n, chunks = item.size(0), range(0, item.size(0), chunk_size)
    mu = sum(item[i:i + chunk_size].sum(0) for i in chunks) / n                     # [d]
    scatter = user.new_zeros(user.size(1), user.size(1))                            # [d, d]
    for i in chunks:
        centred = item[i:i + chunk_size] - mu                                       # [c, d]
        scatter = scatter + centred.T @ centred
    every = ((user @ scatter) * user).sum(1) + n * (user @ mu - lower).pow(2)       # [B]
    s = (user[index] * item[pos]).sum(1)                                            # [M]
    b = user.size(0)
    zero = user.new_zeros(b)
    up = zero.index_add(0, index, (upper[index] - s).pow(2))                        # [B]
    seen = zero.index_add(0, index, (s - lower[index]).pow(2))                      # [B]
    return pos_weight * up + neg_weight * (every - seen)


def constraint_loss(pos_score: Tensor, neg_score: Tensor, beta: Tensor) -> Tensor:
    """UltraGCN-style: ``mean beta * -log σ(s+)`` + ``mean -log σ(-s-)``; ``beta`` like ``pos``."""
    return (beta * F.softplus(-pos_score)).mean() + F.softplus(neg_score).mean()
