"""What the sampled-mode models share (:mod:`~reelgraph.models.sage`,
:mod:`~reelgraph.models.lightgcn` and its subclasses, :mod:`~reelgraph.models.vagnn`,
:mod:`~reelgraph.models.a2bm2gl`): a sampled ``L``-hop neighbourhood, the layer-by-layer
propagation over it, and unbiased sampled row means."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from reelgraph.samplers.neighbor import sample_uniform


@dataclass(frozen=True)
class Subgraph:
    """Sampled ``L``-hop neighbourhood of seeds, nodes relabelled in hop order (seeds first).

    Attributes:
        node: ``[N]`` global ids (users ``< U``, items ``U + i``).
        row, col: ``[M]`` local index of the aggregating node and of its neighbour.
        weight: ``[M]`` aggregation weight (SAGE: a neighbour mean; LightGCN: normalised and
            rescaled by the sampling rate).
        num_sampled_nodes, num_sampled_edges: per hop (nodes: seeds first, ``L + 1`` entries).
    """

    node: Tensor
    row: Tensor
    col: Tensor
    weight: Tensor
    num_sampled_nodes: list[int]
    num_sampled_edges: list[int]


def hop_propagate(sub: Subgraph, x: Tensor, num_layers: int,
                  layer: Callable[[int, Tensor, Tensor], Tensor]) -> list[Tensor]:
    """The seeds' layers ``0..L`` over the hop-ordered ``sub``: ``L + 1`` tensors ``[S, .]``.

    ``x [N, d]`` is layer 0 of ``sub.node``. Layer ``l + 1`` is computed only for the ``t`` nodes
    of hops ``0..L-l-1`` (all it needs), as ``layer(l, adj, h) → [t, d']`` with ``adj`` the sparse
    COO ``[t, n]`` of their sampled edges (values ``sub.weight``) and ``h [n, d]`` layer ``l`` of
    the first ``n`` nodes; ``h[:t]`` are the ``t`` nodes' own rows.
    """
    S, L = sub.num_sampled_nodes[0], num_layers
    h, layers = x, [x[:S]]
    for l in range(L):
        t = sum(sub.num_sampled_nodes[: L - l])
        m = sum(sub.num_sampled_edges[: L - l])
        adj = torch.sparse_coo_tensor(torch.stack([sub.row[:m], sub.col[:m]]), sub.weight[:m],
                                      (t, h.size(0)), check_invariants=False)  # in range
        h = layer(l, adj, h)  # [t, d']
        layers.append(h[:S])
    return layers


def sampled_mean(rowptr: Tensor, col: Tensor, rows: Tensor, k: int
                 ) -> tuple[Tensor, Tensor, Tensor]:
    """A uniform sample of ``k`` (``-1``: all) entries of each of ``rows [R]``: ``(pos [M], col
    [M], weight [M])``, ``weight = 1 / min(k, deg)``: summing ``weight * x[col]`` per ``pos`` is
    an unbiased estimate of the row's mean over ``x`` (exact with ``-1``; empty rows give 0)."""
    pos, slot = sample_uniform(rowptr, rows, k)
    deg = rowptr[rows + 1] - rowptr[rows]
    n = deg if k < 0 else deg.clamp(max=k)
    return pos, col[slot], 1.0 / n.clamp(min=1).float()[pos]


def weighted_sum(index: Tensor, weight: Tensor, x: Tensor, num_rows: int) -> Tensor:
    """``out[r] = sum_{index[m] = r} weight[m] x[m]``; ``x [M, d]`` → ``[num_rows, d]`` (rows
    without entries are zeros). With :func:`sampled_mean`'s ``(pos, weight)``: the row means."""
    return x.new_zeros(num_rows, x.size(1)).index_add(0, index, weight.unsqueeze(1) * x)
