"""SHL's global encoder: a learnable low-rank hypergraph over one node type.

The SHL paper says only that its hyperedges are learnt "by matrix factorisation, which greatly
reduces the number of parameters". We take the learnable hypergraph of HCCF (Xia et al., SIGIR
2022, "Hypergraph Contrastive Collaborative Filtering"; reference code ``akaxlh/HCCF``):

- ``K`` hyperedges per node type (users and items each have their own, as in HCCF); the
  node–hyperedge dependency ``H [N, K]`` is never a free ``N x K`` table but the product of the
  nodes' embeddings and a learnt ``W [d, K]``: ``H = X W`` (``d K`` parameters, any ``N``);
- node -> hyperedge: ``Lambda = LeakyReLU(H^T X / N)`` ``[K, d]``;
- hyperedge -> node: ``LeakyReLU(H Lambda)`` ``[N, d]``.

Ours: ``H^T X`` is divided by ``N`` (a mean over the type's nodes; HCCF sums), so the messages'
scale does not grow with the catalogue; HCCF's dropout on ``H`` is left out. Every node of the
type enters ``Lambda``, in full-graph and sampled training alike: the cost is that of the
embedding table, ``O(N (d + K))``, never that of the edges.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def hyperedge_rows(x: Tensor, weight: Tensor, negative_slope: float) -> Tensor:
    """``Lambda = LeakyReLU((X W)^T X / N)``: the ``K`` hyperedges' rows ``[K, d]`` from every
    node's row ``x [N, d]`` and the factor ``weight [d, K]``."""
    h = x @ weight                                                    # [N, K] dependency H
    return F.leaky_relu(h.t() @ x / x.size(0), negative_slope)       # [K, d]


class LowRankHypergraph(nn.Module):
    """``K`` learnt hyperedges over ``N`` nodes of one type (module doc)."""

    def __init__(self, dim: int, num_hyperedges: int, negative_slope: float = 0.2):
        super().__init__()
        self.negative_slope = negative_slope
        self.weight = nn.Parameter(Tensor(dim, num_hyperedges))     # W: H = X W
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x: Tensor, rows: Tensor | None = None) -> Tensor:
        """``LeakyReLU(H Lambda)`` for ``x [N, d]`` (every node of the type): ``[N, d]``, or only
        the rows ``rows [R]`` (local ids), ``[R, d]``."""
        hyper = hyperedge_rows(x, self.weight, self.negative_slope)  # [K, d]
        x = x if rows is None else x[rows]
        return F.leaky_relu((x @ self.weight) @ hyper, self.negative_slope)

    def extra_repr(self) -> str:
        return f"dim={self.weight.size(0)}, hyperedges={self.weight.size(1)}"
