"""NGCF (Wang et al., SIGIR 2019): embedding propagation with feature transforms and interactions.

Layer ``l`` of the paper's matrix form (eq. 7), with ``L = D^-1/2 A D^-1/2`` over the bipartite
user–item graph::

    E^(l) = LeakyReLU( (L + I) E^(l-1) W1 + b1  +  ((L E^(l-1)) * E^(l-1)) W2 + b2 )

``*`` is the element-wise product (the "affinity" message ``e_i * e_u``). Message dropout acts on
each layer's output while training, its mask drawn from the batch's generator (``batch.generator``),
never torch's global RNG. The final embedding concatenates every layer,
``[E^(0) || E^(1) || ... || E^(L)]`` (``d (L + 1)`` wide), scored by inner product and trained
with BPR plus L2 on the batch's layer-0 rows.

Choices where the paper leaves room, as in its reference code (``NGCF-PyTorch``): biases ``b1``,
``b2``; LeakyReLU slope 0.2; Xavier-uniform ``W``; each propagated layer L2-normalised before the
concatenation (``normalize_layers``); node dropout is left out (the reference default is 0).

Training over the whole graph or the batch's sampled neighbourhood is the plan's
(``fanouts``, as for :class:`~reelgraph.models.lightgcn.LightGCN`); one loss path: each layer is
computed for the nodes still needed with ``(L + I) h`` as ``side + h``, ``side = L h``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reelgraph.graph import FullGraph, Subgraph, node_rows, propagate
from reelgraph.models.base import GraphConfig, Recommender, graph_bpr, init_tables_
from reelgraph.samplers.batch import GraphBatch
from reelgraph.samplers.plans.gcn import GCNStatic


@dataclass(frozen=True)
class NGCFConfig(GraphConfig):
    """NGCF: the :class:`GraphConfig` fields and its own below."""

    message_dropout: float = 0.1   # dropout on each layer's output while training
    negative_slope: float = 0.2    # LeakyReLU slope
    normalize_layers: bool = True  # L2-normalise layers 1..L before concatenating (reference code)

    def build(self, store) -> "NGCF":
        return NGCF(store.num_users, store.num_items, self)


def ngcf_update(side: Tensor, h: Tensor, w1: nn.Linear, w2: nn.Linear,
                negative_slope: float) -> Tensor:
    """``LeakyReLU(W1 (side + h) + W2 (side * h))`` for rows' own ``h [t, d]`` and their
    aggregated neighbours ``side = (L h) [t, d]`` → ``[t, d']``."""
    return F.leaky_relu(w1(side + h) + w2(side * h), negative_slope)


class NGCF(Recommender):
    """Users are nodes ``0..U-1`` and items ``U..U+I-1`` of one layer-0 table."""

    def __init__(self, num_users: int, num_items: int, config: NGCFConfig | None = None):
        super().__init__()
        self.config = config = config or NGCFConfig()
        self.num_users, self.num_items = num_users, num_items
        d = config.embedding_dim
        self.embedding = nn.Embedding(num_users + num_items, d)
        self.w1 = nn.ModuleList(nn.Linear(d, d) for _ in range(config.num_layers))  # sum messages
        self.w2 = nn.ModuleList(nn.Linear(d, d) for _ in range(config.num_layers))  # product messages
        self.reset_parameters()

    def reset_parameters(self) -> None:
        w = self.embedding.weight
        init_tables_(self.config, w[: self.num_users], w[self.num_users:])
        for lin in (*self.w1, *self.w2):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def _step(self, l: int, side: Tensor, h: Tensor,
              generator: torch.Generator | None = None) -> Tensor:
        """Layer ``l + 1`` from ``side = L h`` and ``h``, ``[t, d]``; while training, message
        dropout with its mask drawn from ``generator``."""
        c = self.config
        out = ngcf_update(side, h, self.w1[l], self.w2[l], c.negative_slope)
        if self.training and c.message_dropout > 0:
            keep = torch.rand(out.shape, generator=generator, device=out.device) >= c.message_dropout
            out = out * keep / (1 - c.message_dropout)
        return out

    def forward(self, graph: Subgraph | FullGraph,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """The seeds' ``[E^(0) || E^(1) || ... || E^(L)]`` ``[S, d (L + 1)]`` (layers ``1..L``
        normalised with ``normalize_layers``) and their layer-0 rows ``[S, d]``; dropout masks
        from ``generator``."""
        x0 = node_rows(graph.node, self.embedding.weight, sparse=self.embedding.sparse)
        layers = propagate(graph, x0,
                           self.config.num_layers,
                           lambda l, side, h: self._step(l, side, h, generator))
        if self.config.normalize_layers:
            layers = [layers[0]] + [F.normalize(h, dim=-1) for h in layers[1:]]
        return torch.cat(layers, dim=-1), layers[0]

    def embed(self, static: GCNStatic) -> tuple[Tensor, Tensor]:
        """``(user [U, d (L + 1)], item [I, d (L + 1)])`` of the whole graph."""
        out, _ = self(static.graph)
        return out[: self.num_users], out[self.num_users:]

    def loss(self, batch: GraphBatch) -> dict[str, Tensor]:
        return graph_bpr(batch, *self(batch.graph, batch.generator(0)), self.config.reg_weight)

    def extra_repr(self) -> str:
        c = self.config
        return (f"users={self.num_users}, items={self.num_items}, layers={c.num_layers}, "
                f"message_dropout={c.message_dropout}")
