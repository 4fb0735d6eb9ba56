"""A²BM²GL's semantic module (eq. 3-4, :mod:`reelgraph.models.a2bm2gl`): one GCN layer with a
learnable self-loop weight over a modality's kNN item graph whose edge weights are the multi-head
weighted cosine of the item features, ``ReLU(D^-1/2 (A + wI) D^-1/2 X W)``, for every item or
exactly for a set of rows."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reelgraph.graph import expand_rows, segment_sum


def weighted_cosine(x: Tensor, heads: Tensor, row: Tensor, col: Tensor) -> Tensor:
    """Eq. 3 on edges: ``mean_p cos(w_p * x_row, w_p * x_col)``; ``heads [m, f]`` → ``[E]``."""
    z = F.normalize(x.unsqueeze(1) * heads, dim=2).flatten(1)               # [I, m * f]
    return (z[row] * z[col]).sum(-1) / heads.size(0)                         # [E]


def gcn_self_loop(h: Tensor, row: Tensor, col: Tensor, weight: Tensor, loop: Tensor) -> Tensor:
    """``D^-1/2 (A + loop I) D^-1/2 h`` with edge values ``weight [E]`` (eq. 4 before ReLU)."""
    deg = segment_sum(weight, row, h.size(0)) + loop                         # [I]
    norm = deg.clamp(min=1e-12).rsqrt()
    msg = (norm[row] * weight * norm[col]).unsqueeze(1) * h[col]            # [E, d]
    own = (loop / deg.clamp(min=1e-12)).unsqueeze(1) * h
    return segment_sum(msg, row, h.size(0)) + own


def semantic_rows(x: Tensor, heads: Tensor, encoder: nn.Module, loop: Tensor, row: Tensor,
                  col: Tensor, rowptr: Tensor, rows: Tensor | None) -> Tensor:
    """Eq. 3-4 for features ``x [I, f]``, ``heads [m, f]``, ``encoder`` (``W``), self-loop weight
    ``loop`` and the symmetric kNN graph ``(row, col)`` (CSR ``rowptr``): rows ``[R, d]`` of the
    sorted unique items ``rows [R]`` (``None``: all ``[I, d]``), exactly: they read their kNN
    neighbours' ``X W`` and, for the degrees, those neighbours' edges."""
    if rows is None:
        weight = F.relu(weighted_cosine(x, heads, row, col))                # [E]
        return F.relu(gcn_self_loop(encoder(x), row, col, weight, loop))
    e1 = expand_rows(rowptr, rows)[1]                                       # rows' edges
    nodes = torch.unique(torch.cat([rows, col[e1]]))                        # rows + neighbours
    e2 = expand_rows(rowptr, nodes)[1]                                      # their edges
    ends = torch.unique(torch.cat([nodes, col[e2]]))
    z = F.normalize(x[ends].unsqueeze(1) * heads, dim=2).flatten(1)         # eq. 3's unit rows
    at_end = lambda i: torch.searchsorted(ends, i)  # noqa: E731 (sorted ids)
    at_node = lambda i: torch.searchsorted(nodes, i)  # noqa: E731
    cos = lambda e: (z[at_end(row[e])] * z[at_end(col[e])]).sum(-1) / heads.size(0)  # noqa: E731
    deg = segment_sum(F.relu(cos(e2)), at_node(row[e2]), nodes.numel()) + loop  # [n]
    norm = deg.clamp(min=1e-12).rsqrt()
    h = encoder(x[nodes])                                                   # [n, d]
    r, c = at_node(row[e1]), at_node(col[e1])
    msg = (norm[r] * F.relu(cos(e1)) * norm[c]).unsqueeze(1) * h[c]
    own = at_node(rows)
    out = segment_sum(msg, torch.searchsorted(rows, row[e1]), rows.numel())  # [R, d]
    return F.relu(out + (loop / deg[own].clamp(min=1e-12)).unsqueeze(1) * h[own])
