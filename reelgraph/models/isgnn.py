"""The importance-sampling attention model for micro-video recommendation (issue 17; the paper
"importance-sampling GNN for micro-video recommendation", ``../shared/papers/``; its closest
published relative is GraphRec, Fan et al., WWW 2019), trained on sampled mini-batches.

Two towers, users and items, each over a node's own row, its interaction history and its
same-type neighbours (the batch is drawn by :mod:`reelgraph.samplers.plans.isgnn`):

* embeddings (eq. 1): ID tables for users and items, an opinion table ``e_r`` of
  ``num_opinions`` rating levels (one level for implicit data); an item's row is its ID row plus
  its projected features (the "micro-video side information") when the store has features and
  ``features`` is on;
* neighbours (eqs. 2-4): the plan draws each node's same-type neighbours (users sharing items,
  items sharing users) by the softmax of their relationship tightness (eq. 3; shared
  neighbours), and :class:`~reelgraph.models.isgnn_layers.NeighbourPool` pools them (the paper's
  pooling aggregator: a fully connected layer, element-wise max) and combines the pool with the
  node (eq. 4);
* interactions (eqs. 6-10): :class:`~reelgraph.models.isgnn_layers.InteractionAttention`;
* propagation and combination (eqs. 11-12): :class:`~reelgraph.models.isgnn_layers.Tower`;
* prediction: an MLP over ``[z_u ⊕ z_i]`` (GraphRec's: ``2d → d → d/2 → 1``, ReLU), a logit.

Loss (eq. 13): binary cross-entropy of each triple's positive (label 1) and its ``k`` sampled
negatives (label 0; their mean, so a positive and its negatives weigh alike whatever ``k``),
plus ``reg_weight`` times the L2 of the batch's ID rows per triple (``||U||^2 + ||V||^2``, as
every model here) plus ``weight_reg`` times ``||W||^2 / 2`` of every weight matrix (eq. 13's
``||W||^2``; once per step, not per triple).

The GraphRec-style ablation is two switches: ``neighbor_sampling="uniform"`` and
``aggregator="mean"``: neighbours drawn with replacement uniformly over the exact co-interaction
neighbourhood (every user sharing an item, however few; not the walk-found candidates, which
favour tight pairs), mean pooling, so the pool estimates GraphRec's mean over all neighbours.

Where the paper is vague, our choices: eq. 2's ``N(u)`` is the same-type co-interaction
neighbourhood and ``r_un`` the number of shared interactions (GraphRec's social neighbours are
not in our data; "relationship tightness" read as shared neighbours); the neighbours' rows are
their layer-0 rows (one hop; GraphRec uses their item-space ``h^I``); eq. 9's ``θ`` and ``σ`` are
ReLU, ``g`` (eq. 6) two ReLU layers; eq. 11's ``m_{u←u}`` is the linear map of the neighbour
aggregate and ``sum m_{u←i}`` that of the attended interactions, then a linear layer (the
"two-layer neural network"); one propagation layer (the paper gives one); eq. 13's prediction
is the MLP's logit (the paper writes ``u^T i`` but predicts with an MLP). Weights are
Xavier-uniform (the paper), biases zero, ID and opinion tables by ``init``.

Evaluation: :meth:`ISGNN.score_fn` scores pairs with the MLP over the full-graph towers
(:meth:`ISGNN.embed`), over the inference draws of the plan's ``static``; the generic module
ranks all items with it, and :func:`reelgraph.sampled_metrics.evaluate_sampled` gives the
paper's AUC / NDCG@1 / NDCG@2 over sampled candidates (not wired into the LightningModule).

Data: ratings are read from the store's train edge weights (``GraphStore.edge_weight()``, e.g.
ml-100k's 1-5 stars) as opinion levels (:mod:`reelgraph.samplers.plans.isgnn`); a store without
weights (clicks) has one opinion level, and the model is the same.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reelgraph.errors import ConfigError
from reelgraph.models.base import (EmbeddingConfig, Recommender, check_values, init_tables_,
                                   int_at_least, l2_loss, make_plan)
from reelgraph.models.isgnn_layers import Tower
from reelgraph.samplers.plans.isgnn import (NEIGHBOR_SAMPLING, ISGNNBatch, ISGNNPlan,
                                            ISGNNStatic, TowerInputs)

AGGREGATORS = ("maxpool", "mean")


@dataclass(frozen=True)
class ISGNNConfig(EmbeddingConfig):
    """The :class:`EmbeddingConfig` fields and the model's own below."""

    history: int = 20                  # interactions attended per node (-1: all)
    neighbors: int = 10                # same-type neighbours per node (-1: all, eq. 2 exact)
    neighbor_sampling: str = "tightness"  # "tightness" (eq. 3) | "uniform" (GraphRec ablation)
    aggregator: str = "maxpool"        # "maxpool" (the paper) | "mean" (GraphRec ablation)
    attention: bool = True             # eqs. 9-10; False: eq. 7's mean
    temperature: float = 1.0           # T of eq. 3's softmax (the paper: 1; on raw counts it is
    #                                    peaked: ml-100k, 2.2 distinct of 10 draws at T = 1)
    num_walks: int = 50                # two-step walks per node finding tightness candidates
    #                                    (tightness only; uniform draws over exact N2(v))
    num_opinions: int = 5              # rating levels (1-5 stars); 1 or no weights: implicit
    features: bool = True              # add projected item features when the store has them
    negative_slope: float = 0.2        # LeakyReLU of eqs. 11-12 (NGCF's slope)
    weight_reg: float = 1e-5           # eq. 13's ||W||^2 (per step)
    exclude_targets: bool = True       # drop the batch's target edges from the histories
    chunk_size: int = 4096             # embed(): nodes per chunk; score_fn: pairs bound
    seed: int = 0                      # of the co-interaction walks (seed), inference (+ 1)

    def __post_init__(self):
        super().__post_init__()
        for name, value, allowed in (("neighbor_sampling", self.neighbor_sampling,
                                      NEIGHBOR_SAMPLING), ("aggregator", self.aggregator,
                                                           AGGREGATORS)):
            if value not in allowed:
                raise ConfigError(f"ISGNNConfig: {name}={value!r}; choose from {allowed}")
        fan = (lambda v: (v >= 1 or v == -1) and v == int(v), "an int >= 1, or -1 (all)")
        check_values("ISGNNConfig", history=(self.history, *fan),
                     neighbors=(self.neighbors, *fan),
                     temperature=(self.temperature, lambda v: v > 0, "a finite number > 0"),
                     num_walks=(self.num_walks, int_at_least(1), "an int >= 1"),
                     num_opinions=(self.num_opinions, int_at_least(1), "an int >= 1"),
                     negative_slope=(self.negative_slope, lambda v: v >= 0, "a number >= 0"),
                     weight_reg=(self.weight_reg, lambda v: v >= 0, "a finite number >= 0"),
                     chunk_size=(self.chunk_size, int_at_least(1), "an int >= 1"))

    def build(self, store) -> "ISGNN":
        features = None
        if self.features and store.modalities:
            features = torch.cat([store.feature(m).float() for m in sorted(store.modalities)], 1)
        opinions = self.num_opinions if store.edge_weight() is not None else 1
        return ISGNN(store.num_users, store.num_items, self, features, opinions)

    def plan(self) -> ISGNNPlan:
        return make_plan(self, ISGNNPlan)


class ISGNN(Recommender):
    """The importance-sampling attention model; see the module docstring.

    Args:
        num_users, num_items: node counts.
        config: hyper-parameters.
        item_features: ``[I, F]`` item side information, or ``None``; a non-persistent buffer.
        num_opinions: rows of the opinion table (``config.num_opinions``, or 1 for a store
            without ratings).
    """

    def __init__(self, num_users: int, num_items: int, config: ISGNNConfig | None = None,
                 item_features: Tensor | None = None, num_opinions: int | None = None):
        super().__init__()
        self.config = c = config or ISGNNConfig()
        self.num_users, self.num_items, d = num_users, num_items, c.embedding_dim
        self.user = nn.Embedding(num_users, d)
        self.item = nn.Embedding(num_items, d)
        self.opinion = nn.Embedding(num_opinions or c.num_opinions, d)
        self.proj = None
        if item_features is not None:
            self.register_buffer("item_features", item_features.float(), persistent=False)
            self.proj = nn.Linear(item_features.size(1), d)
        self.user_tower = Tower(d, c.aggregator, c.attention, c.negative_slope)
        self.item_tower = Tower(d, c.aggregator, c.attention, c.negative_slope)
        h = max(d // 2, 1)
        self.mlp = nn.ModuleList([nn.Linear(2 * d, d), nn.Linear(d, h), nn.Linear(h, 1)])
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_tables_(self.config, self.user.weight, self.item.weight, self.opinion.weight)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def extra_repr(self) -> str:
        c = self.config
        return (f"users={self.num_users}, items={self.num_items}, opinions="
                f"{self.opinion.num_embeddings}, features={self.proj is not None}, neighbours="
                f"{c.neighbor_sampling}/{c.aggregator}, attention={c.attention}")

    # -- towers ------------------------------------------------------------------------------
    def item_rows(self, items: Tensor) -> Tensor:
        """Layer-0 item rows ``[n, d]``: ID row plus projected side information (projected
        once per distinct item: a batch's histories and neighbours repeat items)."""
        if self.proj is None:
            return self.item(items)
        uniq, inv = torch.unique(items, return_inverse=True)
        return (self.item(uniq) + self.proj(self.item_features[uniq]))[inv]

    def user_z(self, t: TowerInputs) -> Tensor:
        """User tower ``[S, d]`` of ``t.seeds`` (history: items; neighbours: users)."""
        return self.user_tower(self.user(t.seeds), self.item_rows(t.hist_node),
                               self.opinion(t.hist_opinion), t.hist_pos, self.user(t.nbr_node),
                               t.nbr_pos, t.nbr_weight)

    def item_z(self, t: TowerInputs) -> Tensor:
        """Item tower ``[S, d]`` of ``t.seeds`` (history: users; neighbours: items)."""
        return self.item_tower(self.item_rows(t.seeds), self.user(t.hist_node),
                               self.opinion(t.hist_opinion), t.hist_pos,
                               self.item_rows(t.nbr_node), t.nbr_pos, t.nbr_weight)

    def predict(self, zu: Tensor, zi: Tensor) -> Tensor:
        """Logits ``[...]`` of pairs ``zu, zi [..., d]`` (broadcast)."""
        w = self.mlp[0].weight                                           # [d, 2d]
        d = zu.size(-1)
        x = F.relu(zu @ w[:, :d].T + zi @ w[:, d:].T + self.mlp[0].bias)  # first layer, split
        return self.mlp[2](F.relu(self.mlp[1](x))).squeeze(-1)

    # -- training ----------------------------------------------------------------------------
    def loss(self, batch: ISGNNBatch) -> dict[str, Tensor]:
        B = len(batch)
        zu = self.user_z(batch.user)[batch.user_index]                   # [B, d]
        zi = self.item_z(batch.item)[batch.item_index]                   # [B, 1 + k, d]
        logit = self.predict(zu.unsqueeze(1), zi)                        # [B, 1 + k]
        bce = (F.softplus(-logit[:, 0]) + F.softplus(logit[:, 1:]).mean(1)).mean()  # eq. 13
        items = torch.cat([batch.pos.unsqueeze(1), batch.neg], 1)
        reg = l2_loss(self.user(batch.users), self.item(items)) / B
        weights = l2_loss(*(m.weight for m in self.modules() if isinstance(m, nn.Linear)))
        c = self.config
        return {"loss": bce + c.reg_weight * reg + c.weight_reg * weights, "bce": bce,
                "l2": reg, "l2_weights": weights}

    # -- inference ---------------------------------------------------------------------------
    def embed(self, static: ISGNNStatic) -> tuple[Tensor, Tensor]:
        """Every user's and item's tower, ``[U, d]`` and ``[I, d]``, chunk by chunk over the
        plan's inference draws; deterministic. Scores are :meth:`predict`'s, not their inner
        products (:meth:`score_fn`)."""
        n = self.config.chunk_size

        def run(t: TowerInputs, fn: Callable[[TowerInputs], Tensor]) -> Tensor:
            S = t.seeds.numel()
            return torch.cat([fn(t.select(s, min(s + n, S))) for s in range(0, S, n)])
        return run(static.user, self.user_z), run(static.item, self.item_z)

    def score_fn(self, static: ISGNNStatic) -> Callable[[Tensor, Tensor], Tensor]:
        """``score(users [B], items [C]) -> [B, C]`` logits, items in blocks of at most
        ``chunk_size * 64 / B`` so the MLP's hidden ``[B, c, d]`` stays bounded."""
        with torch.no_grad():
            zu, zi = self.embed(static)

        @torch.no_grad()
        def score(users: Tensor, items: Tensor) -> Tensor:
            block = max(1, self.config.chunk_size * 64 // max(users.numel(), 1))
            u = zu[users].unsqueeze(1)                                     # [B, 1, d]
            return torch.cat([self.predict(u, zi[items[s:s + block]].unsqueeze(0))
                              for s in range(0, items.numel(), block)], 1)
        return score
