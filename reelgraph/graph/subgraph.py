"""The graph a batch's rows are computed over: a sampled hop-ordered :class:`Subgraph`, or the
:class:`FullGraph` (every node a seed), and :func:`propagate`, the layer loop over either.

A model written against :func:`propagate` has one code path: the loader's plan decides whether
its batch carries a sampled neighbourhood or the whole graph.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from reelgraph.graph.sparse import chunked_spmm, sym_spmm

Layer = Callable[[int, Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class Subgraph:
    """Sampled ``L``-hop neighbourhood of seeds, nodes relabelled in hop order (seeds first).

    Attributes:
        node: ``[N]`` global ids of the local nodes.
        row, col: ``[M]`` local index of the aggregating node and of its neighbour.
        weight: ``[M]`` aggregation weight (e.g. the normalised edge weight times the inverse
            chance of sampling the edge, or ``1 / #sampled neighbours`` for a mean).
        num_sampled_nodes, num_sampled_edges: per hop (nodes: seeds first, ``L + 1`` entries).
    """

    node: Tensor
    row: Tensor
    col: Tensor
    weight: Tensor
    num_sampled_nodes: list[int]
    num_sampled_edges: list[int]

    @property
    def num_seeds(self) -> int:
        return self.num_sampled_nodes[0]

    def hop(self, l: int, num_layers: int) -> tuple[int, int]:
        """``(t, m)``: layer ``l + 1`` is needed for the first ``t`` nodes (hops
        ``0..L-l-1``), whose sampled edges are the first ``m``."""
        return (sum(self.num_sampled_nodes[: num_layers - l]),
                sum(self.num_sampled_edges[: num_layers - l]))

    def aggregate(self, l: int, num_layers: int, h: Tensor) -> Tensor:
        """``sum_u weight(v, u) h[u]`` for the ``t`` nodes layer ``l + 1`` needs: ``[t, d]``; one
        sparse COO product, no ``[M, d]`` messages."""
        t, m = self.hop(l, num_layers)
        adj = torch.sparse_coo_tensor(torch.stack([self.row[:m], self.col[:m]]), self.weight[:m],
                                      (t, h.size(0)), check_invariants=False)  # in range
        return torch.sparse.mm(adj, h)


@dataclass(frozen=True)
class FullGraph:
    """The whole graph as a batch's graph: node ``v`` is local row ``v`` and every node a seed.

    Attributes:
        num_nodes: ``N``.
        adj: the normalised symmetric operator ``[N, N]`` (sparse CSR), for training; or
        csr: ``(rowptr [N + 1], col, deg [N])`` from which :func:`chunked_spmm` builds
            ``chunk_size`` rows of ``D^-1/2 A D^-1/2`` at a time, without gradients (full-graph
            embeddings of a graph trained on sampled neighbourhoods).
    """

    num_nodes: int
    adj: Tensor | None = None
    csr: tuple[Tensor, Tensor, Tensor] | None = None
    chunk_size: int = 65536

    node = None  # local ids are the global ones

    @property
    def num_seeds(self) -> int:
        return self.num_nodes

    def aggregate(self, l: int, num_layers: int, h: Tensor) -> Tensor:
        """``A_hat h`` for every node, ``[N, d]``."""
        if self.adj is not None:
            return sym_spmm(self.adj, h)
        if torch.is_grad_enabled() and h.requires_grad:
            raise RuntimeError("FullGraph: the chunked operator has no gradients; train with the "
                               "operator (adj) or on sampled subgraphs")
        return chunked_spmm(*self.csr, h, self.chunk_size)


def propagate(graph: Subgraph | FullGraph, x: Tensor, num_layers: int,
              layer: Layer | None = None) -> list[Tensor]:
    """The seeds' layers ``0..L`` over ``graph``: ``L + 1`` tensors ``[S, .]``.

    ``x [N, d]`` is layer 0 of the graph's local nodes. Layer ``l + 1`` is
    ``layer(l, side, h) -> [t, d']`` from ``side = A_hat h`` (:meth:`Subgraph.aggregate` /
    :meth:`FullGraph.aggregate`) and the ``t`` nodes' own layer-``l`` rows ``h``; without
    ``layer`` it is ``side`` (LightGCN). Only the nodes later layers need are computed.
    """
    S, h = graph.num_seeds, x
    layers = [_rows(x, S)]
    for l in range(num_layers):
        side = graph.aggregate(l, num_layers, h)  # [t, d]
        h = side if layer is None else layer(l, side, _rows(h, side.size(0)))
        layers.append(_rows(h, S))
    return layers


def propagate_mean(graph: Subgraph | FullGraph, x: Tensor, num_layers: int) -> tuple[Tensor, Tensor]:
    """``(mean of the seeds' layers 0..L [S, d], layer 0 [S, d])`` of parameter-free (LightGCN)
    propagation: :func:`propagate` then :func:`layer_mean`, the same sums in the same order, but
    each layer is added as it is made, and without gradients divided in place, so two layers
    and the sum live at a time, not ``L + 1`` (a whole-graph evaluation of 3M nodes at d = 64:
    768 MB a layer)."""
    S, h = graph.num_seeds, x
    total = _rows(x, S)
    for l in range(num_layers):
        h = graph.aggregate(l, num_layers, h)
        fresh = l == 0 or torch.is_grad_enabled()   # never in place on x, nor under autograd
        total = total + _rows(h, S) if fresh else total.add_(_rows(h, S))
    if num_layers and not torch.is_grad_enabled():  # total is our own sum, not x
        return total.div_(num_layers + 1), _rows(x, S)
    return total / (num_layers + 1), _rows(x, S)


def _rows(h: Tensor, n: int) -> Tensor:
    """``h[:n]``; ``h`` itself when that is all of it (a slice's backward copies the whole
    gradient: measured ~5% of a full-graph LightGCN step)."""
    return h if h.size(0) == n else h[:n]


def layer_mean(layers: list[Tensor]) -> Tensor:
    """The mean of same-shape layers by a running sum (``torch.stack(...).mean(0)`` copies them
    all into one tensor first: measured 1.3x slower per full-graph LightGCN step)."""
    out = layers[0]
    for h in layers[1:]:
        out = out + h
    return out / len(layers)


def node_rows(node: Tensor | None, *tables: Tensor, sparse: bool = False) -> Tensor:
    """Layer-0 rows of local nodes whose global ids ``node [N]`` index the tables stacked
    (``tables[0]`` first, then ``tables[1]`` offset by its length, ...); ``None``: every row,
    in order. Only the rows asked for are gathered; ``sparse``: their gradient is a sparse
    tensor of those rows (``nn.Embedding(sparse=True)``'s), not a dense table of zeros."""
    if node is None:
        return tables[0] if len(tables) == 1 else torch.cat(tables)
    gather = (lambda i, t: F.embedding(i, t, sparse=True)) if sparse else (lambda i, t: t[i])
    if len(tables) == 1:
        return gather(node, tables[0])
    out = tables[0].new_empty(node.numel(), tables[0].size(1))
    start = 0
    for t in tables:
        at = torch.nonzero((node >= start) & (node < start + t.size(0))).flatten()
        out = out.index_put((at,), gather(node[at] - start, t))
        start += t.size(0)
    return out


def local_index(node: Tensor | None, ids: Tensor) -> Tensor:
    """Local rows of global ``ids`` among sorted unique ``node`` (identity for ``None``)."""
    return ids if node is None else torch.searchsorted(node, ids)
