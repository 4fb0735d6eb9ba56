"""SHL's local encoder hop: gated attention over a node's graph neighbours (eqs. 1–4), and the
edge lists it runs over (a sampled :class:`Subgraph`'s, or the whole graph's).

For a centre node ``h`` and its neighbours ``t`` (one modality ``m``, rows ``e_h``, ``e_t``)::

    f_g(h, t) = sigmoid(e_h . e_t / sqrt(d_t))                        (eq. 2, the gate)
    f_a(h, t) = softmax_t((W_h e_h)^T tanh(W_t e_t))                  (eqs. 3–4, the attention)
    e_N(h)    = LeakyReLU(sum_t f_a(h, t) f_g(h, t) W^N e_t)          (eq. 1)

``d_t`` is, as the paper defines it, the (train-graph) degree of the neighbour ``t`` (the caller
passes ``sqrt(d_t)`` per edge; ``gate_scale="dim"`` of the config passes ``sqrt(d)`` instead,
the scaled dot product's usual choice). The softmax is over the neighbours present: every
neighbour on the whole graph, the sampled ones on a sampled subgraph (as sampled GATs do). The
per-edge products and the sum are :func:`~reelgraph.graph.edge_dot` and
:func:`~reelgraph.graph.edge_weighted_sum`: no ``[M, d]`` rows are kept for the backward pass.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from reelgraph.graph import (FullGraph, Subgraph, csr_rows, edge_dot, edge_weighted_sum,
                             segment_softmax)


def gate_scores(h_dst: Tensor, h_src: Tensor, row: Tensor, col: Tensor, scale: Tensor) -> Tensor:
    """Eq. 2 per edge ``(row -> col)``: ``sigmoid(h_dst[row] . h_src[col] / scale)``, ``[M]``."""
    return torch.sigmoid(edge_dot(h_dst, h_src, row, col) / scale)


def attention_scores(query: Tensor, key: Tensor, row: Tensor, col: Tensor) -> Tensor:
    """Eqs. 3–4 per edge: ``softmax`` over each row's edges of ``query[row] . tanh(key)[col]``,
    from ``query = W_h e [T, d]`` and ``key = W_t e [N, d]``; ``[M]``."""
    logit = edge_dot(query, torch.tanh(key), row, col)               # [M]
    return segment_softmax(row, logit, query.size(0))


class GatedAttention(nn.Module):
    """One hop of the local encoder for one modality (eqs. 1–4): ``query`` is ``W_h``, ``key``
    ``W_t``, ``message`` ``W^N`` (``d x d``, no bias)."""

    def __init__(self, dim: int, negative_slope: float = 0.2):
        super().__init__()
        self.negative_slope = negative_slope
        self.query = nn.Linear(dim, dim, bias=False)
        self.key = nn.Linear(dim, dim, bias=False)
        self.message = nn.Linear(dim, dim, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for lin in (self.query, self.key, self.message):
            nn.init.xavier_uniform_(lin.weight)

    def weights(self, h_dst: Tensor, h_src: Tensor, row: Tensor, col: Tensor, scale: Tensor
                ) -> tuple[Tensor, Tensor]:
        """``(f_g [M], f_a [M])`` of the edges ``row -> col`` (local ids of ``h_dst [T, d]`` and
        ``h_src [N, d]``; ``scale [M]`` is ``sqrt(d_t)``)."""
        return (gate_scores(h_dst, h_src, row, col, scale),
                attention_scores(self.query(h_dst), self.key(h_src), row, col))

    def forward(self, h_dst: Tensor, h_src: Tensor, row: Tensor, col: Tensor, scale: Tensor
                ) -> Tensor:
        """Eq. 1: ``e_N [T, d]`` of the centre rows ``h_dst [T, d]`` (rows without neighbours
        get ``LeakyReLU(0) = 0``)."""
        gate, attn = self.weights(h_dst, h_src, row, col, scale)
        msg = edge_weighted_sum(row, col, attn * gate, self.message(h_src), h_dst.size(0))
        return F.leaky_relu(msg, self.negative_slope)                 # [T, d]


def full_csr(graph: FullGraph) -> tuple[Tensor, Tensor]:
    """``(rowptr [N + 1], col [2E])`` of the whole graph (its operator's, or its CSR's)."""
    if graph.adj is not None:
        return graph.adj.crow_indices().long(), graph.adj.col_indices().long()
    return graph.csr[0].long(), graph.csr[1].long()


def hop_edges(graph: Subgraph | FullGraph, l: int, num_layers: int
              ) -> tuple[Tensor, Tensor, int]:
    """``(row [M], col [M], t)``: the edges hop ``l + 1`` aggregates over and the number ``t`` of
    centre rows it computes (local ids; :meth:`Subgraph.hop`), every edge of the whole graph."""
    if isinstance(graph, Subgraph):
        t, m = graph.hop(l, num_layers)
        return graph.row[:m], graph.col[:m], t
    rowptr, col = full_csr(graph)
    return csr_rows(rowptr), col, graph.num_nodes


@torch.no_grad()
def chunked_hop(hop: GatedAttention, h: Tensor, rowptr: Tensor, col: Tensor, scale: Tensor,
                chunk_size: int) -> Tensor:
    """``hop`` over the whole graph ``chunk_size`` centre rows at a time, without gradients:
    ``h [N, d]`` -> ``[N, d]``, holding one chunk's ``[m, d]`` messages, not ``[2E, d]``
    (``scale``: ``[2E]`` per edge, or a scalar)."""
    N = h.size(0)
    out = h.new_empty(N, h.size(1))
    for s in range(0, N, chunk_size):
        e = min(s + chunk_size, N)
        a, b = int(rowptr[s]), int(rowptr[e])
        row = csr_rows(rowptr[s: e + 1] - a)                          # [m] local to the chunk
        out[s:e] = hop(h[s:e], h, row, col[a:b], scale if scale.dim() == 0 else scale[a:b])
    return out
