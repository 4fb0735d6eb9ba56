"""A²BM²GL's anti-bottleneck aggregation (eq. 6) over a full-adjacent layer (eq. 5).

Each row ``v`` attends over its top-n random-surfing neighbours ``i`` (the plan's
:class:`~reelgraph.samplers.plans.a2bm2gl.Neighbourhood`):

    ``a_vi = softmax_i(LeakyReLU(w^T [h_v || h_i]) + log p_vi)``,   ``out_v = sum_i a_vi h_i``

- ``p_vi`` (``prior``): the surfing probabilities, the entries of ``M`` (eq. 5) kept for the row,
  normalised to sum 1. Adding their log is ``a_vi ∝ p_vi exp(logit_vi)``: eq. 6's attention
  re-weights the surfing distribution instead of replacing it. The paper takes ``M`` as "the
  unnormalized adjacency matrix" of the layer and says the surfing model weighs "the importance of
  contextual nodes based on their relative distance", then prints eq. 6 without it; we keep it as
  the prior (``prior=None``: eq. 6 alone, every kept neighbour equal before attention).
- ``unit_inputs``: the logit reads ``sqrt(d) h / |h|`` rather than ``h`` (the aggregated values
  stay ``h``). The rows here are embeddings of norm ~0.2-0.6 (``init_std`` 0.1, LightGCN's layer
  mean) while Xavier's init of ``w`` assumes coordinates of order 1, so on the raw rows ``w^T
  [h_v || h_i]`` differed by 0.024 within a row at initialisation and 0.11 after 15 epochs, and
  Adam barely grew ``w`` (norm 1.4 -> 2.2: the loss gains little from re-weighting): the softmax
  stayed uniform, entropy 2.760 of ln 16 = 2.773 on the tests' planted world
  (``benchmarks/a2bm2gl_attention.py``). Unit-scale inputs make the logits independent of the
  embeddings' norm: deviation 0.79 at initialisation, 0.36 after training, entropy 2.596.
- On a kNN layer the attention can stay uniform for a reason no scale fixes: there, the
  neighbours' semantic rows are near copies (mean cosine 0.998 between two neighbours of a row
  on the planted world, whose visual feature is 90% its topic, after eq. 4's smoothing), so any
  weighting gives the same row; with the prior, the weights are the prior's.

``h_v`` enters only through the LeakyReLU's kink (the softmax cancels ``w_v^T h_v``), so, as in
GAT, every row ranks its neighbours by the same ``w_i^T h_i``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from reelgraph.graph import gather_weighted_sum

ATTENTION_INPUTS = ("unit", "raw")


def _scores(h: Tensor, w: Tensor, unit_inputs: bool) -> Tensor:
    """``w^T h`` per row of ``h [..., d]`` (unit inputs: of ``sqrt(d) h / |h|``) ``[...]``."""
    if unit_inputs:
        h = F.normalize(h, dim=-1) * h.size(-1) ** 0.5
    return h @ w


def _softmax(logit: Tensor, mask: Tensor, prior: Tensor | None) -> Tensor:
    """Eq. 6's weights ``[R, n]`` from its logits ``[R, n]`` before the LeakyReLU."""
    logit = F.leaky_relu(logit, 0.2)
    if prior is not None:
        logit = logit + prior.clamp(min=1e-30).log()
    return torch.softmax(logit.masked_fill(~mask, -1e9), dim=1) * mask


def attention_weights(h: Tensor, h_nbr: Tensor, mask: Tensor, att: Tensor,
                      prior: Tensor | None = None, unit_inputs: bool = True) -> Tensor:
    """Eq. 6's weights ``[R, n]`` for rows' own ``h [R, d]`` and their full-adjacent neighbours'
    ``h_nbr [R, n, d]`` (``mask [R, n]``: the real ones; ``prior [R, n]``: their surfing
    probabilities, ``> 0`` where ``mask``); 0 on padding, rows without neighbours all 0."""
    d = h.size(1)
    own, nbr = _scores(h, att[:d], unit_inputs), _scores(h_nbr, att[d:], unit_inputs)
    return _softmax(own.unsqueeze(1) + nbr, mask, prior)


def attend(h: Tensor, x: Tensor, index: Tensor, mask: Tensor, att: Tensor,
           prior: Tensor | None = None, unit_inputs: bool = True) -> Tensor:
    """Eq. 6's combined rows ``sum_i a_vi x_i`` ``[R, d]`` for rows' own ``h [R, d]`` whose
    neighbours are the rows ``index [R, n]`` of ``x [T, d]`` (:func:`attention_weights` of ``h``
    and ``x[index]``). A neighbour's term ``w^T x_i`` is one number per row of ``x``, and the sum
    is a sparse product, so the ``[R, n, d]`` neighbour rows are never built."""
    d = h.size(1)
    nbr = _scores(x, att[d:], unit_inputs)[index]                            # [R, n]
    a = _softmax(_scores(h, att[:d], unit_inputs).unsqueeze(1) + nbr, mask, prior)
    return gather_weighted_sum(index, a, x)


def attention_entropy(a: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Per row, the entropy of weights ``a [R, n]`` and its maximum ``ln |mask|`` (uniform)."""
    ent = -(a * a.clamp(min=1e-30).log()).sum(1)
    return ent, mask.sum(1).clamp(min=1).float().log()
