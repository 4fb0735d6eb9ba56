"""NGCF (Wang et al., SIGIR 2019): embedding propagation with feature transforms and interactions.

Layer ``l`` of the paper's matrix form (eq. 7), with ``L = D^-1/2 A D^-1/2`` over the bipartite
user–item graph::

    E^(l) = LeakyReLU( (L + I) E^(l-1) W1 + b1  +  ((L E^(l-1)) * E^(l-1)) W2 + b2 )

``*`` is the element-wise product (the "affinity" message ``e_i * e_u``). Message dropout acts on
each layer's output while training. The final embedding concatenates every layer,
``[E^(0) || E^(1) || ... || E^(L)]`` (``d (L + 1)`` wide), scored by inner product and trained
with BPR plus L2 on the batch's layer-0 rows.

Choices where the paper leaves room, as in its reference code (``NGCF-PyTorch``): biases ``b1``,
``b2``; LeakyReLU slope 0.2; Xavier-uniform ``W``; each propagated layer L2-normalised before the
concatenation (``normalize_layers``); node dropout is left out (the reference default is 0).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reelgraph.graph import BipartiteGraph
from reelgraph.models.base import ModelConfig, Recommender
from reelgraph.models.lightgcn import sym_norm_adjacency, sym_spmm


@dataclass
class NGCFConfig(ModelConfig):
    embedding_dim: int = 64        # d of the layer-0 tables and of every layer
    num_layers: int = 3            # L propagation steps
    message_dropout: float = 0.1   # dropout on each layer's output while training
    negative_slope: float = 0.2    # LeakyReLU slope
    normalize_layers: bool = True  # L2-normalise layers 1..L before concatenating (reference code)
    reg_weight: float = 1e-4       # L2 on the batch's layer-0 embeddings
    init_std: float = 0.1          # normal init of the layer-0 table

    def build(self, store) -> "NGCF":
        return NGCF(store.num_users, store.num_items, self)


def ngcf_layer(adj: Tensor, h: Tensor, w1: nn.Linear, w2: nn.Linear, negative_slope: float) -> Tensor:
    """One NGCF step: ``LeakyReLU(W1 ((L + I) h) + W2 ((L h) * h))``; ``h [N, d]`` → ``[N, d']``."""
    side = sym_spmm(adj, h)  # [N, d] = L h
    return F.leaky_relu(w1(side + h) + w2(side * h), negative_slope)


class NGCF(Recommender):
    """Users are nodes ``0..U-1`` and items ``U..U+I-1`` of one layer-0 table."""

    def __init__(self, num_users: int, num_items: int, config: NGCFConfig = NGCFConfig()):
        super().__init__()
        self.num_users, self.num_items, self.config = num_users, num_items, config
        self.reg_weight = config.reg_weight
        d = config.embedding_dim
        self.embedding = nn.Embedding(num_users + num_items, d)
        self.w1 = nn.ModuleList(nn.Linear(d, d) for _ in range(config.num_layers))  # sum messages
        self.w2 = nn.ModuleList(nn.Linear(d, d) for _ in range(config.num_layers))  # product messages
        self.dropout = nn.Dropout(config.message_dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.embedding.weight, std=self.config.init_std)
        for lin in (*self.w1, *self.w2):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def prepare(self, graph: BipartiteGraph) -> Tensor:
        return sym_norm_adjacency(graph)

    def ego_embeddings(self) -> tuple[Tensor, Tensor]:
        return self.embedding.weight[: self.num_users], self.embedding.weight[self.num_users:]

    def embed(self, adj: Tensor) -> tuple[Tensor, Tensor]:
        c = self.config
        h = self.embedding.weight
        layers = [h]
        for w1, w2 in zip(self.w1, self.w2):
            h = self.dropout(ngcf_layer(adj, h, w1, w2, c.negative_slope))  # [N, d]
            layers.append(F.normalize(h, dim=-1) if c.normalize_layers else h)
        out = torch.cat(layers, dim=-1)  # [N, d (L + 1)]
        return out[: self.num_users], out[self.num_users:]

    def extra_repr(self) -> str:
        c = self.config
        return (f"users={self.num_users}, items={self.num_items}, layers={c.num_layers}, "
                f"message_dropout={c.message_dropout}")
