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

``NGCFConfig.fanouts`` selects sampled mini-batch training as for
:class:`~reelgraph.models.lightgcn.LightGCN` (same sampler and Horvitz–Thompson rescaled
``L`` weights, see its module doc): each layer is computed over the batch's sampled subgraph with
``(L + I) h`` as ``side + h`` for the nodes still needed; ``embed`` stays full-graph (chunked).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reelgraph.models.lightgcn import (SampledGCN, SampledGCNConfig, SampledState,
                                       chunked_spmm, sym_spmm)
from reelgraph.models.subgraph import Subgraph, hop_propagate


@dataclass
class NGCFConfig(SampledGCNConfig):
    embedding_dim: int = 64        # d of the layer-0 tables and of every layer
    num_layers: int = 3            # L propagation steps
    message_dropout: float = 0.1   # dropout on each layer's output while training
    negative_slope: float = 0.2    # LeakyReLU slope
    normalize_layers: bool = True  # L2-normalise layers 1..L before concatenating (reference code)
    reg_weight: float = 1e-4       # L2 on the batch's layer-0 embeddings
    init_std: float = 0.1          # normal init of the layer-0 table

    def build(self, store) -> "NGCF":
        return NGCF(store.num_users, store.num_items, self)


def ngcf_update(side: Tensor, h: Tensor, w1: nn.Linear, w2: nn.Linear,
                negative_slope: float) -> Tensor:
    """``LeakyReLU(W1 (side + h) + W2 (side * h))`` for rows' own ``h [t, d]`` and their
    aggregated neighbours ``side = (L h) [t, d]`` → ``[t, d']``."""
    return F.leaky_relu(w1(side + h) + w2(side * h), negative_slope)


def ngcf_layer(adj: Tensor, h: Tensor, w1: nn.Linear, w2: nn.Linear, negative_slope: float) -> Tensor:
    """One NGCF step: ``LeakyReLU(W1 ((L + I) h) + W2 ((L h) * h))``; ``h [N, d]`` → ``[N, d']``."""
    return ngcf_update(sym_spmm(adj, h), h, w1, w2, negative_slope)


class NGCF(SampledGCN):
    """Users are nodes ``0..U-1`` and items ``U..U+I-1`` of one layer-0 table; full-graph or
    sampled training by ``config.fanouts`` (:class:`~reelgraph.models.lightgcn.SampledGCN`)."""

    def __init__(self, num_users: int, num_items: int, config: NGCFConfig = NGCFConfig()):
        super().__init__(num_users, num_items, config)
        d = config.embedding_dim
        self.w1 = nn.ModuleList(nn.Linear(d, d) for _ in range(config.num_layers))  # sum messages
        self.w2 = nn.ModuleList(nn.Linear(d, d) for _ in range(config.num_layers))  # product messages
        self.dropout = nn.Dropout(config.message_dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.embedding.weight, std=self.config.init_std)
        for lin in (*self.w1, *self.w2):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def _step(self, l: int, side: Tensor, h: Tensor) -> Tensor:
        """Layer ``l + 1`` (message dropout included) from ``side = L h`` and ``h``, ``[t, d]``."""
        slope = self.config.negative_slope
        return self.dropout(ngcf_update(side, h, self.w1[l], self.w2[l], slope))

    def _readout(self, layers: list[Tensor]) -> Tensor:
        """``[E^(0) || E^(1) || ... || E^(L)]``, ``[n, d (L + 1)]``, layers ``1..L`` normalised."""
        if self.config.normalize_layers:
            layers = [layers[0]] + [F.normalize(h, dim=-1) for h in layers[1:]]
        return torch.cat(layers, dim=-1)

    def embed(self, state: Tensor | SampledState) -> tuple[Tensor, Tensor]:
        """``(user [U, d (L + 1)], item [I, d (L + 1)])`` of the FULL graph in both modes. Sampled
        mode (evaluation only): no gradients, ``L h`` by :func:`chunked_spmm`."""
        c = self.config
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.sampled):
            h = self.embedding.weight
            layers = [h]
            for l in range(c.num_layers):
                side = chunked_spmm(state, h, c.chunk_size) if self.sampled else sym_spmm(state, h)
                h = self._step(l, side, h)  # [N, d]
                layers.append(h)
            out = self._readout(layers)  # [N, d (L + 1)]
        return out[: self.num_users], out[self.num_users:]

    def forward(self, sub: Subgraph) -> tuple[Tensor, Tensor]:
        """The seeds' concatenated layers ``[S, d (L + 1)]`` over the sampled ``sub`` and their
        layer-0 rows ``[S, d]``."""
        layers = hop_propagate(sub, self.embedding(sub.node), self.config.num_layers,
                               lambda l, adj, h: self._step(l, torch.sparse.mm(adj, h),
                                                            h[: adj.size(0)]))
        return self._readout(layers), layers[0]

    def extra_repr(self) -> str:
        c = self.config
        return (f"users={self.num_users}, items={self.num_items}, layers={c.num_layers}, "
                f"message_dropout={c.message_dropout}")
