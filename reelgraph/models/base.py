"""What every recommender shares: its config base, its interface and the BPR loss."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reelgraph.graph import BipartiteGraph
from reelgraph.samplers.batch import BPRBatch

if TYPE_CHECKING:
    from reelgraph.data.store import GraphStore


class ModelConfig:
    """Base of the per-model ``@dataclass`` configs.

    A config is the one copy of a model's hyper-parameters: LightningCLI YAML (``model:
    class_path/init_args``), Ray Train and Ray Tune all read and write it. ``build`` makes the model
    from the store's sizes and whatever side data it needs (creators, features, KG), passed to the
    model's constructor as plain tensors.
    """

    def build(self, store: "GraphStore") -> "Recommender":
        raise NotImplementedError


class Recommender(nn.Module):
    """Interface the generic LightningModule and the evaluator rely on.

    ``state = model.prepare(graph)`` once per training graph and device (e.g. a normalised
    adjacency); ``model.embed(state)`` gives ``(user_emb [U, d], item_emb [I, d])`` scored by inner
    product; ``model.loss(batch, state)`` a dict holding ``"loss"`` (the total) and each term.
    """

    num_users: int
    num_items: int
    reg_weight: float

    def prepare(self, graph: BipartiteGraph) -> Any:
        return None

    def embed(self, state: Any) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def ego_embeddings(self) -> tuple[Tensor, Tensor]:
        """The parameters the L2 term regularises: ``(user [U, d], item [I, d])`` tables."""
        raise NotImplementedError

    def loss(self, batch: BPRBatch, state: Any) -> dict[str, Tensor]:
        """BPR over every (positive, negative) pair plus L2 on the batch's ego embeddings."""
        user_emb, item_emb = self.embed(state)
        u, p, n = user_emb[batch.users], item_emb[batch.pos], item_emb[batch.neg]  # [B,d] [B,d] [B,k,d]
        bpr = bpr_loss((u * p).sum(-1), torch.einsum("bd,bkd->bk", u, n))
        ego_u, ego_i = self.ego_embeddings()
        reg = l2_loss(ego_u[batch.users], ego_i[batch.pos], ego_i[batch.neg]) / len(batch)
        return {"loss": bpr + self.reg_weight * reg, "bpr": bpr, "l2": reg}


def bpr_loss(pos_score: Tensor, neg_score: Tensor) -> Tensor:
    """Mean of ``-log sigmoid(pos - neg)`` over ``pos_score [B]`` and ``neg_score [B, k]``."""
    return F.softplus(neg_score - pos_score.unsqueeze(-1)).mean()


def l2_loss(*tensors: Tensor) -> Tensor:
    """``sum ||t||^2 / 2`` over ``tensors``."""
    return sum(t.pow(2).sum() for t in tensors) / 2
