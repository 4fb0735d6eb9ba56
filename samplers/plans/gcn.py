"""The plan of the GCNs over the user–item graph (LightGCN, NGCF, SimGCL, A²BM²GL's
collaborative part): the whole graph, or each batch's sampled ``L``-hop neighbourhood.

The graph is the symmetric bipartite one (users ``0..U-1``, items ``U..U+I-1``), kept once per
store as a derived, memory-mapped CSR. Sampled mode (``fanouts``): a node ``v`` expanded with
fan-out ``k`` keeps ``min(k, d_v)`` of its ``d_v`` neighbours, each with probability
``min(k, d_v) / d_v``; its edge weight is the normalised ``1 / sqrt(d_v d_u)`` with FULL-graph
degrees times ``d_v / min(k, d_v)`` (Horvitz–Thompson), so every sampled layer is an unbiased
estimate of the full-graph layer (each hop's draw is independent of the next, so products of
layers stay unbiased); with every fan-out ``-1`` it is exact. ``self_loops`` normalises by
``d + 1`` instead (``D~^-1/2 A D~^-1/2``; the model adds the self-loop term ``h_v / (d_v + 1)``).

Target edges (``exclude_targets``): a batch's positive edges are left out of its sampled
neighbourhood, in both directions (degrees stay the full-graph ones).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from reelgraph.graph import FullGraph, Subgraph, sym_norm_rows, undirected_edge_keys
from reelgraph.samplers.batch import BPRBatch, GraphBatch
from reelgraph.samplers.neighbor import neighbor_sample
from reelgraph.samplers.plans.base import Plan


@dataclass(frozen=True)
class SymmetricGraph:
    """The symmetric bipartite train graph: ``rowptr [U + I + 1]``, ``col [2E]``, ``deg [U + I]``."""

    num_users: int
    rowptr: Tensor
    col: Tensor
    deg: Tensor

    @property
    def num_nodes(self) -> int:
        return self.rowptr.numel() - 1

    def to(self, device) -> "SymmetricGraph":
        return SymmetricGraph(self.num_users, *(t.to(device) for t in (self.rowptr, self.col,
                                                                        self.deg)))


def symmetric_graph(store) -> SymmetricGraph:
    """The store's symmetric bipartite train CSR, built once and memory-mapped."""
    def build() -> dict[str, Tensor]:
        return dict(zip(("rowptr", "col", "deg"), store.graph("train").symmetric()))
    a = store.derived("bipartite", {"split": "train"}, build)
    return SymmetricGraph(store.num_users, a["rowptr"], a["col"], a["deg"])


@dataclass(frozen=True)
class GCNStatic:
    """Per-device state of a GCN: ``graph`` (the whole graph: its normalised operator for
    full-graph training, or the CSR its embeddings are computed from chunk by chunk), and the
    node degrees ``deg [U + I]``."""

    graph: FullGraph
    deg: Tensor
    num_users: int
    num_items: int


def sample_subgraph(g: SymmetricGraph, seeds: Tensor, fanouts: tuple[int, ...],
                    exclude_keys: Tensor | None = None, generator: torch.Generator | None = None,
                    self_loops: bool = False) -> Subgraph:
    """The ``L``-hop neighbourhood of unique ``seeds [S]`` (without the edges whose sorted keys
    are ``exclude_keys``), edges weighted ``1 / sqrt(d_v d_u)`` (``d + 1`` with ``self_loops``)
    times ``d_v / min(k, d_v)``, the inverse chance of keeping them (module doc)."""
    out = neighbor_sample(g.rowptr, g.col, seeds, fanouts=list(fanouts), exclude_keys=exclude_keys,
                          generator=generator)
    v, u = out.node[out.row], out.node[out.col]  # [M] global ids
    k = torch.repeat_interleave(torch.tensor(fanouts, device=seeds.device),
                                torch.tensor(out.num_sampled_edges, device=seeds.device))
    dv, du = g.deg[v].float(), g.deg[u].float()
    scale = torch.where((k < 0) | (g.deg[v] <= k), 1.0, dv / k.clamp(min=1))  # 1 / P(kept)
    return Subgraph(out.node, out.row, out.col, scale * ((dv + self_loops) * (du + self_loops)).rsqrt(),
                    out.num_sampled_nodes, out.num_sampled_edges)


def triple_nodes(triples: BPRBatch, num_users: int) -> Tensor:
    """Global node ids ``[B (2 + k)]`` of the users, then each triple's positive and negatives."""
    items = torch.cat([triples.pos.unsqueeze(1), triples.neg], 1)  # [B, 1 + k]
    return torch.cat([triples.users, items.flatten() + num_users])


@dataclass(frozen=True)
class NeighborPlan(Plan):
    """Batches over the whole user–item graph (``fanouts=None``) or over each batch's sampled
    neighbourhood (one fan-out per layer, seeds' hop first; ``-1`` takes every neighbour)."""

    fanouts: tuple[int, ...] | None  # the fields (and their defaults) are the model config's
    exclude_targets: bool
    self_loops: bool
    chunk_size: int  # sampled: rows of the operator per chunk of the full-graph embed

    def context(self, store) -> SymmetricGraph:
        return symmetric_graph(store)

    def sample(self, ctx: SymmetricGraph, triples: BPRBatch, generator: torch.Generator
               ) -> GraphBatch:
        nodes = triple_nodes(triples, ctx.num_users)
        fields = dict(seed=triples.seed)
        if self.fanouts is None:
            return GraphBatch(triples.users, triples.pos, triples.neg, None, nodes, **fields)
        seeds, index = torch.unique(nodes, return_inverse=True)
        keys = None
        if self.exclude_targets:
            keys = undirected_edge_keys(triples.users, triples.pos + ctx.num_users, ctx.num_nodes)
        sub = sample_subgraph(ctx, seeds, self.fanouts, keys, generator, self.self_loops)
        return GraphBatch(triples.users, triples.pos, triples.neg, sub, index, **fields)

    def static(self, store, device: torch.device) -> GCNStatic:
        g = symmetric_graph(store).to(device)
        norm = g.deg + int(self.self_loops)
        if self.fanouts is None:
            graph = FullGraph(g.num_nodes, adj=sym_norm_rows(g.rowptr, g.col, norm))
        else:
            graph = FullGraph(g.num_nodes, csr=(g.rowptr, g.col, norm), chunk_size=self.chunk_size)
        return GCNStatic(graph, g.deg, store.num_users, store.num_items)
