"""GraphSAGE (Hamilton et al., 2017) and PinSage (Ying et al., KDD 2018) for link prediction,
trained on sampled mini-batches.

The graph is the homogeneous bipartite one (users ``0..U-1``, items ``U..U+I-1``). The loader
samples each batch's ``L``-hop neighbourhood (:mod:`reelgraph.samplers.plans.sage`: target edges
removed, so a positive never leaks into its own pair's neighbourhood) and the model computes the
seeds' embeddings layer by layer over it: sampler and model meet only in the batch, as in DGL's
PinSAGE example.

One layer: ``h_v' = W [h_v || AGG(h_u : u in N(v))]``, then ReLU and L2-normalisation on hidden
layers (the last layer is linear; ``normalize_output`` normalises it too). ``AGG``:

* ``"mean"``: uniform sampled neighbours (``fanouts``), mean;
* ``"maxpool"``: the same neighbours, ``max_u ReLU(P h_u + b)`` element-wise;
* ``"importance"``: PinSage: a node's neighbours at hop ``l`` are the ``fanouts[l]`` same-type
  nodes most visited by random walks with restart (item → user → item, or user → item → user),
  averaged with their normalised visit counts as weights.

:meth:`SAGE.embed` runs layer by layer over every node in chunks, over the inference
neighbourhoods the plan drew once for the whole graph.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reelgraph.graph import Subgraph, weighted_sum
from reelgraph.models.base import GraphConfig, Recommender, bpr_loss, l2_loss, make_plan
from reelgraph.samplers.plans.sage import SAGEBatch, SAGEPlan, SAGEStatic

AGGREGATORS, INPUTS, LOSSES = ("mean", "maxpool", "importance"), ("id", "features", "both"), \
    ("bpr", "margin")


@dataclass(frozen=True)
class SAGEConfig(GraphConfig):
    """GraphSAGE / PinSage: the :class:`GraphConfig` fields (``fanouts``: neighbours per hop,
    seeds' hop first, ``-1`` all; for ``importance`` the most visited ones) and its own."""

    num_layers: int = 2               # L (hops)
    fanouts: list[int] = field(default_factory=lambda: [10, 5])
    exclude_targets: bool = True      # never sample a batch's target edges
    chunk_size: int = 4096            # embed(): nodes per chunk
    aggregator: str = "mean"          # "mean" | "maxpool" | "importance" (PinSage)
    num_walks: int = 20               # importance: random walks per node
    walk_length: int = 2              # importance: two-step (x → y → x) moves per walk
    restart_prob: float = 0.5         # importance: P(back to the start node) after a move
    input: str = "id"                 # items: "id" | "features" (projected) | "both" (summed)
    loss: str = "bpr"                 # "bpr" | "margin": mean max(0, s_neg - s_pos + margin)
    margin: float = 0.1               # of the margin loss
    normalize_output: bool = False    # L2-normalise the last layer too (PinSage; pair with margin)
    hard_negatives: int = 0           # extra negatives per positive from the last evaluation's
    #                                   embeddings (the first step embeds if there are none); 0: off
    hard_rank_range: tuple[int, int] = (50, 500)  # ranks [lo, hi) hard negatives are drawn from
    inference_fanout: int = -1        # embed(): uniform neighbours per node; -1 all (maxpool: set
    #                                   it to the training fan-out, a max over more is biased)
    seed: int = 0                     # of the inference neighbourhoods (seed + 1)

    def __post_init__(self):
        for name, value, allowed in (("aggregator", self.aggregator, AGGREGATORS),
                                     ("input", self.input, INPUTS), ("loss", self.loss, LOSSES)):
            if value not in allowed:
                raise ValueError(f"SAGEConfig.{name}={value!r}; choose from {allowed}")
        if self.fanouts is None:
            raise ValueError("SAGEConfig: SAGE trains on sampled neighbourhoods; give fanouts "
                             "(-1 = every neighbour)")
        super().__post_init__()

    def build(self, store) -> "SAGE":
        features = None
        if self.input != "id":
            if not store.modalities:
                raise ValueError(f"SAGEConfig.input={self.input!r} but the store has no features")
            features = torch.cat([store.feature(m).float() for m in sorted(store.modalities)], 1)
        return SAGE(store.num_users, store.num_items, self, features)

    def plan(self) -> SAGEPlan:
        return make_plan(self, SAGEPlan, importance=self.aggregator == "importance",
                         hard_rank_range=tuple(self.hard_rank_range))


def aggregate(h_src: Tensor, row: Tensor, col: Tensor, weight: Tensor, num_rows: int,
              max_pool: bool) -> Tensor:
    """``[num_rows, d]``: weighted sum of ``h_src[col]`` per ``row`` or, with ``max_pool``, their
    element-wise max (``h_src`` already pooled); rows without neighbours get zeros."""
    msg = h_src[col]  # [M, d]
    if max_pool:
        return h_src.new_zeros(num_rows, h_src.size(1)).scatter_reduce(
            0, row.unsqueeze(1).expand_as(msg), msg, "amax", include_self=False)
    return weighted_sum(row, weight, msg, num_rows)


class SAGELayer(nn.Module):
    """``W [h_v || AGG(h_N(v))] + b``; max-pool first maps neighbours by ``ReLU(P h + c)``."""

    def __init__(self, in_dim: int, out_dim: int, aggregator: str = "mean"):
        super().__init__()
        self.pool = nn.Linear(in_dim, in_dim) if aggregator == "maxpool" else None
        self.linear = nn.Linear(2 * in_dim, out_dim)

    def forward(self, h_dst: Tensor, h_src: Tensor, row: Tensor, col: Tensor,
                weight: Tensor) -> Tensor:
        """``h_dst [T, d]`` aggregates ``h_src [S, d]`` over edges ``row`` → T, ``col`` → S."""
        if self.pool is not None:
            h_src = F.relu(self.pool(h_src))
        agg = aggregate(h_src, row, col, weight, h_dst.size(0), self.pool is not None)
        return self.linear(torch.cat([h_dst, agg], 1))  # [T, out]


class SAGE(Recommender):
    """GraphSAGE / PinSage over the bipartite graph; see the module docstring.

    Args:
        num_users, num_items: node counts.
        config: hyper-parameters.
        item_features: ``[I, F]`` item features (modalities concatenated), needed unless
            ``config.input == "id"``; kept as a non-persistent buffer (not checkpointed).
    """

    def __init__(self, num_users: int, num_items: int, config: SAGEConfig | None = None,
                 item_features: Tensor | None = None):
        super().__init__()
        self.config = config = config or SAGEConfig()
        self.num_users, self.num_items, d = num_users, num_items, config.embedding_dim
        self.user = nn.Embedding(num_users, d)
        self.item = nn.Embedding(num_items, d) if config.input != "features" else None
        self.proj = None
        if config.input != "id":
            if item_features is None:
                raise ValueError(f"SAGE: input={config.input!r} needs item_features")
            self.register_buffer("item_features", item_features, persistent=False)
            self.proj = nn.Linear(item_features.size(1), d)
        self.layers = nn.ModuleList(SAGELayer(d, d, config.aggregator)
                                    for _ in range(config.num_layers))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.user.weight, std=self.config.init_std)
        if self.item is not None:
            nn.init.normal_(self.item.weight, std=self.config.init_std)
        for m in [self.proj, *self.layers]:
            if m is not None:
                m.apply(lambda x: x.reset_parameters() if isinstance(x, nn.Linear) else None)

    # -- inputs ----------------------------------------------------------------------------
    def _item_input(self, items: Tensor) -> Tensor:
        h = self.item(items) if self.item is not None else 0
        return h + self.proj(self.item_features[items]) if self.proj is not None else h

    def _input(self, node: Tensor) -> Tensor:
        """Layer-0 rows of global nodes, ``[N, d]``."""
        is_user = node < self.num_users
        h = self.user.weight.new_zeros(node.numel(), self.config.embedding_dim)
        h[is_user] = self.user(node[is_user])
        h[~is_user] = self._item_input(node[~is_user] - self.num_users)
        return h

    def _post(self, h: Tensor, last: bool) -> Tensor:
        if not last:
            return F.normalize(F.relu(h), dim=-1)
        return F.normalize(h, dim=-1) if self.config.normalize_output else h

    # -- forward ---------------------------------------------------------------------------
    def forward(self, sub: Subgraph) -> tuple[Tensor, Tensor]:
        """Output rows of the seeds ``[S, d]`` and the layer-0 rows of the seeds ``[S, d]``."""
        h = self._input(sub.node)  # [N, d]
        h0 = h[: sub.num_seeds]
        L = len(self.layers)
        for l, layer in enumerate(self.layers):
            t, m = sub.hop(l, L)  # nodes of hops 0..L-l-1 get layer l + 1
            h = self._post(layer(h[:t], h, sub.row[:m], sub.col[:m], sub.weight[:m]), l == L - 1)
        return h, h0

    def loss(self, batch: SAGEBatch) -> dict[str, Tensor]:
        B = len(batch)
        out, h0 = self(batch.sub)
        users, items = batch.rows()
        u, it, ego = out[users], out[items], [h0[batch.index]]  # [B, d], [B, 1 + k, d]
        if batch.hard is not None:
            hard_out, hard_h0 = self(batch.hard_sub)
            it = torch.cat([it, hard_out[batch.hard_index]], 1)
            ego.append(hard_h0[batch.hard_index.flatten()])
        score = torch.einsum("bd,bkd->bk", u, it)
        if self.config.loss == "bpr":
            rank = bpr_loss(score[:, 0], score[:, 1:])
        else:
            rank = F.relu(score[:, 1:] - score[:, :1] + self.config.margin).mean()
        reg = l2_loss(*ego) / B
        return {"loss": rank + self.config.reg_weight * reg, self.config.loss: rank, "l2": reg}

    # -- inference -------------------------------------------------------------------------
    def embed(self, static: SAGEStatic) -> tuple[Tensor, Tensor]:
        """Every node's output, layer by layer over all nodes in chunks of ``chunk_size``
        (memory: two ``[U + I, d]`` layers, each chunk written in place, plus one chunk's
        neighbourhood), over the plan's inference neighbourhoods; deterministic."""
        w0 = self.user.weight
        N, d = self.num_users + self.num_items, self.config.embedding_dim
        chunks = [slice(s, min(s + self.config.chunk_size, N))
                  for s in range(0, N, self.config.chunk_size)]
        h = w0.new_empty(N, d)
        for c in chunks:
            h[c] = self._input(torch.arange(c.start, c.stop, device=w0.device))
        for l, layer in enumerate(self.layers):
            out = w0.new_empty(N, layer.linear.out_features)
            for c in chunks:
                pos, nbr, w = static.neighbourhood(torch.arange(c.start, c.stop, device=w0.device))
                out[c] = self._post(layer(h[c], h, pos, nbr, w), l == len(self.layers) - 1)
            h = out
        return h[: self.num_users], h[self.num_users:]
