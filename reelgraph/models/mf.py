"""BPR-MF: matrix factorisation trained with BPR (Rendle et al., 2009)."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from reelgraph.models.base import ModelConfig, Recommender


@dataclass
class MFConfig(ModelConfig):
    embedding_dim: int = 64   # d of the user and item tables
    reg_weight: float = 1e-4  # L2 on the batch's embeddings
    init_std: float = 0.1     # normal init of both tables

    def build(self, store) -> "MF":
        return MF(store.num_users, store.num_items, self)


class MF(Recommender):
    """``score(u, i) = e_u . e_i`` with free ``[U, d]`` and ``[I, d]`` tables."""

    def __init__(self, num_users: int, num_items: int, config: MFConfig = MFConfig()):
        super().__init__()
        self.num_users, self.num_items, self.config = num_users, num_items, config
        self.reg_weight = config.reg_weight
        self.user = nn.Embedding(num_users, config.embedding_dim)
        self.item = nn.Embedding(num_items, config.embedding_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.user.weight, std=self.config.init_std)
        nn.init.normal_(self.item.weight, std=self.config.init_std)

    def ego_embeddings(self) -> tuple[Tensor, Tensor]:
        return self.user.weight, self.item.weight

    def embed(self, state=None) -> tuple[Tensor, Tensor]:
        return self.user.weight, self.item.weight
