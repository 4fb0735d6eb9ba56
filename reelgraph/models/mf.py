"""BPR-MF: matrix factorisation trained with BPR (Rendle et al., 2009)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from reelgraph.models.base import EmbeddingConfig, Recommender, bpr_terms, init_tables_
from reelgraph.samplers.batch import BPRBatch


@dataclass(frozen=True)
class MFConfig(EmbeddingConfig):
    """BPR-MF: ``embedding_dim``, ``reg_weight``, ``init_std`` (:class:`EmbeddingConfig`)."""

    def build(self, store) -> "MF":
        return MF(store.num_users, store.num_items, self)


class MF(Recommender):
    """``score(u, i) = e_u . e_i`` with free ``[U, d]`` and ``[I, d]`` tables; its batch is its
    triples (the base plan)."""

    def __init__(self, num_users: int, num_items: int, config: MFConfig | None = None):
        super().__init__()
        self.config = config = config or MFConfig()
        self.num_users, self.num_items = num_users, num_items
        self.user = nn.Embedding(num_users, config.embedding_dim)
        self.item = nn.Embedding(num_items, config.embedding_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_tables_(self.config, self.user.weight, self.item.weight)

    def embed(self, static=None) -> tuple[Tensor, Tensor]:
        return self.user.weight, self.item.weight

    def loss(self, batch: BPRBatch) -> dict[str, Tensor]:
        """BPR + L2 on the batch's rows (looked up through the modules, so sparse tables give
        sparse gradients)."""
        u = self.user(batch.users)                                             # [B, d]
        items = self.item(torch.cat([batch.pos.unsqueeze(1), batch.neg], 1))   # [B, 1 + k, d]
        return bpr_terms(u, items, torch.cat([u, items.flatten(0, 1)]), self.config.reg_weight)


@dataclass(frozen=True)
class SparseMFConfig(MFConfig):
    """:class:`MFConfig` whose model produces sparse row gradients (same maths, same init)."""

    def build(self, store) -> "SparseMF":
        return SparseMF(store.num_users, store.num_items, self)


class SparseMF(MF):
    """BPR-MF with sparse gradients: the loss is ``MF.loss``; only touched rows get gradient.

    The tables are ``nn.Embedding(sparse=True)`` modules and ``MF.loss`` calls them: DDP reads
    that flag to expect sparse gradients (a functional ``F.embedding(..., sparse=True)`` on a
    table flagged dense fails in DDP's backward with "Cannot access storage of SparseTensorImpl").
    """

    def __init__(self, num_users: int, num_items: int, config: MFConfig | None = None):
        super().__init__(num_users, num_items, config)
        self.user.sparse = self.item.sparse = True
