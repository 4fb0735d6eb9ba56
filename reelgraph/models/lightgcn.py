"""LightGCN (He et al., SIGIR 2020): linear propagation over the user–item graph, no weights.

``E^(l+1) = D^-1/2 A D^-1/2 E^(l)`` over the ``(U + I) x (U + I)`` bipartite adjacency ``A``;
the final embedding is the mean of layers ``0..L``, scored by inner product and trained with BPR
plus L2 on the batch's layer-0 embeddings (the reference recipe).

One loss path for both training modes: the batch carries the graph its rows are computed over
(:class:`~reelgraph.samplers.batch.GraphBatch`), the whole graph (``fanouts=None``: every step
propagates all ``U + I`` rows with the normalised operator) or the batch's sampled ``L``-hop
neighbourhood with Horvitz–Thompson rescaled weights, for graphs whose full propagation does not
fit one device (``fanouts``: the loader samples it, see :mod:`reelgraph.samplers.plans.gcn`;
with all fan-outs ``-1`` the seeds' rows are exactly the full-graph ones). The loss is not
unbiased in sampled mode (BPR is non-linear in the embeddings), as for any sampled GNN.

Target edges stay in the sampled neighbourhoods by default, unlike SAGE: full-graph LightGCN
(the reference recipe) propagates over every training edge, positives included, and
:meth:`LightGCN.embed` scores with that same graph, so keeping them makes the sampled mode an
unbiased estimate of the model being evaluated (LightGCN has no aggregator weights that could
learn to read a positive off its own pair's neighbourhood). ``exclude_targets=True`` removes them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from reelgraph.graph import FullGraph, Subgraph, node_rows, propagate_mean
from reelgraph.models.base import (INITS, GraphConfig, Recommender, check_values, graph_bpr,
                                   init_tables_, int_at_least)
from reelgraph.models.spectral_init import spectral_tables
from reelgraph.samplers.batch import GraphBatch
from reelgraph.samplers.plans.gcn import GCNStatic


@dataclass(frozen=True)
class LightGCNConfig(GraphConfig):
    """LightGCN: the :class:`GraphConfig` fields (``embedding_dim``, ``num_layers``,
    ``reg_weight``, ``init_std``, ``init``, ``fanouts``, ``exclude_targets``, ``chunk_size``).
    ``init="spectral"`` starts layer 0 at GF-CF's low-pass subspace of the train graph
    (:mod:`reelgraph.models.spectral_init`; built once per ``build``, seeded by ``init_seed``)."""

    init_seed: int = 0                 # init="spectral": the randomised SVD's seed

    inits: ClassVar[tuple[str, ...]] = INITS + ("spectral",)

    def __post_init__(self):
        super().__post_init__()
        check_values(type(self).__name__,
                     init_seed=(self.init_seed, int_at_least(0), "an int >= 0"))

    def build(self, store) -> "LightGCN":
        model = LightGCN(store.num_users, store.num_items, self)
        if self.init == "spectral":
            user, item = spectral_tables(store.graph("train"), self.embedding_dim,
                                         self.init_std, self.init_seed)
            with torch.no_grad():
                model.embedding.weight.copy_(torch.cat([user, item]))
        return model


class LightGCN(Recommender):
    """LightGCN over one ``[U + I, d]`` layer-0 table (users first)."""

    def __init__(self, num_users: int, num_items: int, config: LightGCNConfig | None = None):
        super().__init__()
        self.config = config = config or LightGCNConfig()
        self.num_users, self.num_items = num_users, num_items
        self.embedding = nn.Embedding(num_users + num_items, config.embedding_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        w = self.embedding.weight
        init_tables_(self.config, w[: self.num_users], w[self.num_users:])

    def forward(self, graph: Subgraph | FullGraph) -> tuple[Tensor, Tensor]:
        """Mean of layers ``0..L`` of the graph's seeds ``[S, d]`` and their layer-0 rows."""
        x0 = node_rows(graph.node, self.embedding.weight, sparse=self.embedding.sparse)
        return propagate_mean(graph, x0,
                              self.config.num_layers)

    def embed(self, static: GCNStatic) -> tuple[Tensor, Tensor]:
        """``(user [U, d], item [I, d])`` of the whole graph (sampled mode: the operator built
        chunk by chunk, without gradients)."""
        out, _ = self(static.graph)
        return out[: self.num_users], out[self.num_users:]

    def loss(self, batch: GraphBatch) -> dict[str, Tensor]:
        """BPR + L2 on the batch's layer-0 rows, over the batch's graph."""
        return graph_bpr(batch, *self(batch.graph), self.config.reg_weight)
