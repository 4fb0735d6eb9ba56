"""A²BM²GL's losses (:mod:`reelgraph.models.a2bm2gl`): the recommendation losses of the paper's
Table 4 and the auxiliary terms of eq. 10.

- eq. 8's adaptive loss (the paper's "our loss"), sampled (:func:`adaptive_loss`) and exact
  without sampling (:func:`full_adaptive_loss`), with the boundary margin hinge
  (:func:`margin_loss`);
- eq. 7's weighted regression L_WR (Hu et al. 2008, the loss eq. 8 improves on), sampled
  (:func:`wr_loss`) and exact without sampling (:func:`full_wr_loss`);
- BPR (:func:`~reelgraph.models.base.bpr_loss`) and InfoBPR (:func:`info_bpr_loss`), sampling
  losses;
- the UltraGCN-style constraint loss of L_str / L_sem (:func:`constraint_loss`).

Entry weights (eq. 7's ``c_uv``): the paper names them and says only that missing entries are
weighted uniformly. Every regression loss here takes ``pos_weight`` (``c+`` on interacted
entries: a number, or one per entry) and ``neg_weight`` (``c0`` on missing entries: a number, or
one per user in the exact losses); both 1 is the loss as printed.

The sampled regression losses average over the batch's positives and its negatives. Triples are
uniform train edges with uniform non-positive negatives, so the expectation of eq. 8's estimate is
``sum_u [sum_{N(u)+} (B_up - s)^2 + deg(u)/|N(u)-| sum_{N(u)-} (s - B_low)^2] / |E|`` (eq. 7's
alike): the exact loss with a per-user ``c0 = deg(u) / |N(u)-|``, biased against the uniform
weight unless every user has the same degree (weighting each triple's negative mean by ``|N(u)-|
/ deg(u)`` removes the bias; ``benchmarks/a2bm2gl_loss_gap.py`` measures it).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from reelgraph.graph import segment_sum


def adaptive_loss(pos_score: Tensor, neg_score: Tensor, upper: Tensor, lower: Tensor,
                  margin: float, pos_weight: float | Tensor = 1.0,
                  neg_weight: float | Tensor = 1.0) -> tuple[Tensor, Tensor]:
    """Eq. 8 on a batch and the margin hinge: ``pos [B]``, ``neg [B, k]``, ``upper/lower [B]``.

    Returns ``mean c+ (B_up - s+)^2 + mean c0 (s- - B_low)^2`` and :func:`margin_loss`
    (``pos_weight`` / ``neg_weight``: a number or ``[B]``, one per triple).
    """
    neg_weight = torch.as_tensor(neg_weight, device=neg_score.device)
    neg_weight = neg_weight.unsqueeze(-1) if neg_weight.dim() else neg_weight
    rec = (pos_weight * (upper - pos_score).pow(2)).mean() + \
        (neg_weight * (neg_score - lower.unsqueeze(1)).pow(2)).mean()
    return rec, margin_loss(upper, lower, margin)


def margin_loss(upper: Tensor, lower: Tensor, margin: float) -> Tensor:
    """``mean max(m - (B_up - B_low), 0)``: the hinge that keeps ``B_up - B_low >= m``.

    The paper prints ``L_margin = -max{m - (B_up - B_low), 0}``; minimising that negative would
    widen the violation, against its stated intent ("to constrain B_up to be greater than B_low
    and have a certain size of margin m"), so we minimise the hinge itself."""
    return F.relu(margin - (upper - lower)).mean()


def full_adaptive_loss(user: Tensor, item: Tensor, index: Tensor, pos: Tensor, upper: Tensor,
                       lower: Tensor, *, pos_weight: float | Tensor = 1.0,
                       neg_weight: float | Tensor = 1.0, chunk_size: int = 65536) -> Tensor:
    """Eq. 8 without sampling, per user, with eq. 7's entry weights ``c_uv``:

    ``l(u) = sum_{v in N(u)+} c_uv (B_up - s_uv)^2 + c0 sum_{v in N(u)-} (s_uv - B_low)^2``,
    ``s_uv = E_u . E_v``, for ``user [B, d]``, every item ``item [I, d]``, the users' interacted
    items as pairs ``(index [M] row in user, pos [M] item)`` (no duplicates) and ``upper``,
    ``lower [B]``. ``pos_weight``: ``c_uv``, a number or ``[M]`` (one per pair); ``neg_weight``:
    ``c0``, a number or ``[B]`` (one per user). Returns ``l [B]``.

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
    up = segment_sum(pos_weight * (upper[index] - s).pow(2), index, b)              # [B]
    seen = segment_sum((s - lower[index]).pow(2), index, b)                         # [B]
    return up + neg_weight * (every - seen)


def wr_loss(pos_score: Tensor, neg_score: Tensor, pos_weight: float | Tensor = 1.0,
            neg_weight: float | Tensor = 1.0) -> Tensor:
    """Eq. 7 (L_WR) on a batch, ``y = σ(s)``: ``mean c+ (1 - y+)^2 + mean c0 (y-)^2`` for ``pos
    [B]`` and ``neg [B, k]`` (weights: a number or ``[B]``, one per triple). As for eq. 8, the
    sampled mean estimates the exact loss with a per-user ``c0 deg(u) / |N(u)-|``."""
    neg_weight = torch.as_tensor(neg_weight, device=neg_score.device)
    neg_weight = neg_weight.unsqueeze(-1) if neg_weight.dim() else neg_weight
    return (pos_weight * (1 - torch.sigmoid(pos_score)).pow(2)).mean() + \
        (neg_weight * torch.sigmoid(neg_score).pow(2)).mean()


def _sigmoid_sq_sum(user: Tensor, item: Tensor) -> Tensor:
    return torch.sigmoid(user @ item.T).pow(2).sum(1)                                # [B]


def full_wr_loss(user: Tensor, item: Tensor, index: Tensor, pos: Tensor, *,
                 pos_weight: float | Tensor = 1.0, neg_weight: float | Tensor = 1.0,
                 chunk_elements: int = 1 << 22) -> Tensor:
    """Eq. 7 (L_WR) without sampling, per user: ``l(u) = sum_{v in N(u)+} c_uv (1 - y_uv)^2 +
    c0 sum_{v in N(u)-} y_uv^2`` with ``y_uv = σ(E_u . E_v)`` (the paper's preference
    probability). Arguments as :func:`full_adaptive_loss`; returns ``l [B]``.

    The sigmoid rules out the quadratic-form trick, so the N(u)- part is ``sum over all items
    of y^2`` minus the same over N(u)+, the first summed over blocks of ``[B, c]`` scores (``c =
    chunk_elements // B`` items), each recomputed in the backward pass (activation
    checkpointing): memory ``O(B c + M)``, never ``[B, I]``, time ``O(B I d)`` per call.
    """
    b = user.size(0)
    chunk = max(1, chunk_elements // max(b, 1))
    every = user.new_zeros(b)
    for i in range(0, item.size(0), chunk):
        block = item[i:i + chunk]
        every = every + (checkpoint(_sigmoid_sq_sum, user, block, use_reentrant=False)
                         if torch.is_grad_enabled() else _sigmoid_sq_sum(user, block))
    y = torch.sigmoid((user[index] * item[pos]).sum(1))                              # [M]
    up = segment_sum(pos_weight * (1 - y).pow(2), index, b)                          # [B]
    seen = segment_sum(y.pow(2), index, b)                                           # [B]
    return up + neg_weight * (every - seen)


def info_bpr_loss(pos_score: Tensor, neg_score: Tensor) -> Tensor:
    """InfoBPR (Hu et al., MGDCF, the paper's ref. [18]): BPR with several negatives, a softmax
    over one positive and its ``k`` negatives, ``mean_t -log(exp(s+) / (exp(s+) + sum_j
    exp(s-_j)))`` for ``pos [B]`` and ``neg [B, k]``; equal to BPR when ``k = 1``.

    The A²BM²GL paper says only "the infoBPR [18] loss which is an improved BPR loss"; this is the
    definition of MGDCF's reference code (``compute_info_bpr_loss``: cross-entropy with the
    positive as class 0 over ``[s+, s-_1..k]``, negatives drawn uniformly per positive), with the
    batch's own negatives (the data module's ``num_negatives``; MGDCF draws 300)."""
    logits = torch.cat([pos_score.unsqueeze(1), neg_score], 1)                       # [B, 1 + k]
    return (torch.logsumexp(logits, 1) - pos_score).mean()


def constraint_loss(pos_score: Tensor, neg_score: Tensor, beta: Tensor) -> Tensor:
    """UltraGCN-style: ``mean beta * -log σ(s+)`` + ``mean -log σ(-s-)``; ``beta`` like ``pos``."""
    return (beta * F.softplus(-pos_score)).mean() + F.softplus(neg_score).mean()
