"""The layers of the importance-sampling attention model (:mod:`reelgraph.models.isgnn`): the
interaction attention (eqs. 6-10), the neighbour pooling (eqs. 2-4) and one tower.

Equation numbers are those of "importance-sampling GNN for micro-video recommendation" (see the
model's module doc); ``σ`` is ReLU throughout (the paper's choice in eq. 4, GraphRec's in eqs.
6-9), the combination uses LeakyReLU (eq. 11).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reelgraph.graph import segment_max, segment_mean_weight, segment_softmax, weighted_sum


class InteractionAttention(nn.Module):
    """A node's interactions fused with their opinions and attended (eqs. 6-10).

    * eq. 6: ``x = g([e_n ⊕ e_r])``, ``g`` two layers ``ReLU(W_b ReLU(W_a [.] + a) + b)``
      (GraphRec's ``g_v``);
    * eq. 9: ``β* = w2^T ReLU(W1 [x ⊕ e_owner] + b1) + b2``; eq. 10: softmax over the owner's
      interactions (``attention=False``: eq. 7's mean, ``β = 1 / |C(a)|``). ``b2`` is left out:
      every ``β*`` of an owner shares it, so the softmax cancels it (a parameter that could never
      receive a gradient);
    * eq. 8: ``h = ReLU(W sum β x + b)``; an owner without interactions gets ``ReLU(b)``.
    """

    def __init__(self, dim: int, attention: bool = True):
        super().__init__()
        self.fuse_a, self.fuse_b = nn.Linear(2 * dim, dim), nn.Linear(dim, dim)   # g, eq. 6
        self.att1 = nn.Linear(2 * dim, dim) if attention else None                  # W1, b1
        self.att2 = nn.Linear(dim, 1, bias=False) if attention else None            # w2
        self.out = nn.Linear(dim, dim)                                              # W, b eq. 8

    def interaction(self, e_node: Tensor, e_opinion: Tensor) -> Tensor:
        """Eq. 6: ``x [M, d]`` from ``e_node [M, d]`` and ``e_opinion [M, d]``."""
        return F.relu(self.fuse_b(F.relu(self.fuse_a(torch.cat([e_node, e_opinion], 1)))))

    def weights(self, x: Tensor, e_owner: Tensor, pos: Tensor, num_rows: int) -> Tensor:
        """Eqs. 9-10: ``β [M]`` of ``x [M, d]`` for owners ``e_owner [M, d]`` (row ``pos``)."""
        if self.att1 is None:
            return segment_mean_weight(pos, num_rows, x.dtype)
        score = self.att2(F.relu(self.att1(torch.cat([x, e_owner], 1)))).squeeze(1)  # [M] β*
        return segment_softmax(pos, score, num_rows)

    def forward(self, e_node: Tensor, e_opinion: Tensor, e_owner: Tensor, pos: Tensor
                ) -> tuple[Tensor, Tensor]:
        """``h [S, d]`` (eq. 8) and ``β [M]`` for owners ``e_owner [S, d]`` and their
        interactions ``e_node, e_opinion [M, d]`` (owner row ``pos [M]``)."""
        x = self.interaction(e_node, e_opinion)                            # [M, d]
        beta = self.weights(x, e_owner[pos], pos, e_owner.size(0))         # [M]
        return F.relu(self.out(weighted_sum(pos, beta, x, e_owner.size(0)))), beta


class NeighbourPool(nn.Module):
    """Same-type neighbours pooled and combined with the node itself (eqs. 2-4).

    * ``"maxpool"`` (the paper's pooling aggregator): ``n_v = max_n ReLU(P e_n + p)``
      element-wise over the drawn neighbours;
    * ``"mean"``: ``n_v = sum_n w_n e_n`` with the plan's weights (eq. 2: exact over all
      neighbours with ``g(r)``, estimated by the mean of tightness draws; a plain mean of uniform
      draws, GraphRec's ablation).

    Eq. 4: ``agg_v = ReLU(W (e_v + n_v) + b)``; no neighbours: ``n_v = 0``.
    """

    def __init__(self, dim: int, aggregator: str = "maxpool"):
        super().__init__()
        self.pool = nn.Linear(dim, dim) if aggregator == "maxpool" else None  # P, p
        self.combine = nn.Linear(dim, dim)                                    # W, b of eq. 4

    def forward(self, e_self: Tensor, e_nbr: Tensor, pos: Tensor, weight: Tensor) -> Tensor:
        """``agg [S, d]`` of nodes ``e_self [S, d]`` and their neighbours ``e_nbr [N, d]`` (node
        row ``pos [N]``, weight ``weight [N]``)."""
        S = e_self.size(0)
        if self.pool is None:
            n = weighted_sum(pos, weight.to(e_nbr.dtype), e_nbr, S)         # [S, d] eq. 2
        else:
            n = segment_max(F.relu(self.pool(e_nbr)), pos, S)               # [S, d]
        return F.relu(self.combine(e_self + n))                             # [S, d] eq. 4


class Tower(nn.Module):
    """One side (users, or items): ``z = W_2 LeakyReLU(W_1 [agg ⊕ h] + b_1) + b_2``, the
    two-layer network over the node's neighbour aggregate (eqs. 2-4) and its attended
    interactions (eq. 8). The first layer is eq. 11 / 12's propagation, ``LeakyReLU(m_self +
    m_interactions)`` with ``m_self = W_1^a agg`` and ``m_interactions = W_1^h h``."""

    def __init__(self, dim: int, aggregator: str, attention: bool, negative_slope: float):
        super().__init__()
        self.attend = InteractionAttention(dim, attention)
        self.neighbours = NeighbourPool(dim, aggregator)
        self.prop, self.proj = nn.Linear(2 * dim, dim), nn.Linear(dim, dim)
        self.negative_slope = negative_slope

    def forward(self, e_self: Tensor, e_hist: Tensor, e_opinion: Tensor, hist_pos: Tensor,
                e_nbr: Tensor, nbr_pos: Tensor, nbr_weight: Tensor) -> Tensor:
        """``z [S, d]`` from the seeds' rows ``e_self [S, d]``, their interactions ``e_hist,
        e_opinion [M, d]`` (row ``hist_pos``) and neighbours ``e_nbr [N, d]`` (row
        ``nbr_pos``)."""
        h, _ = self.attend(e_hist, e_opinion, e_self, hist_pos)              # [S, d]
        agg = self.neighbours(e_self, e_nbr, nbr_pos, nbr_weight)            # [S, d]
        z = F.leaky_relu(self.prop(torch.cat([agg, h], 1)), self.negative_slope)
        return self.proj(z)
