"""GraphSAGE (Hamilton et al., 2017) and PinSage (Ying et al., KDD 2018) for link prediction,
trained on sampled mini-batches.

The graph is the homogeneous bipartite one (users ``0..U-1``, items ``U..U+I-1``). The loader
samples each batch's ``L``-hop neighbourhood (:mod:`reelgraph.samplers.plans.sage`: target edges
removed, so a positive never leaks into its own pair's neighbourhood) and the model computes the
seeds' embeddings layer by layer over it: sampler and model meet only in the batch, as in DGL's
PinSAGE example.

Neighbourhoods and pooling (``aggregator``):

* ``"mean"``: uniform sampled neighbours (``fanouts``), mean;
* ``"maxpool"``: the same neighbours, ``max_u ReLU(P h_u + b)`` element-wise;
* ``"importance"``: PinSage's: a node's neighbours at hop ``l`` are the ``fanouts[l]`` same-type
  nodes most visited by random walks with restart (item → user → item, or user → item → user),
  pooled by a weighted mean with their L1-normalised visit counts ``α`` as weights.

The convolution (``conv``):

* ``"pinsage"`` (PinSage, Algorithm 1 CONVOLVE, and Algorithm 2's dense layers; the default with
  ``aggregator="importance"``): ``n_v = γ({ReLU(Q h_u + q)}, α)``, ``z_v = ReLU(W [h_v || n_v]
  + w)``, ``z_v / ||z_v||_2`` on every layer; then ``G2 ReLU(G1 z_v + g)``.
* ``"sage"`` (GraphSAGE's layer; the default otherwise): ``W [h_v || AGG(h_u)] + b``, ReLU and L2
  normalisation on hidden layers, the last layer linear. Kept because it is GraphSAGE's own
  layer (the baseline PinSage is compared against) and the one every earlier PinSage figure in
  ``benchmarks/RESULTS.md`` was measured with (importance pooling of raw ``h_u``).

PinSage's training (the defaults with ``importance``): the max-margin loss (§3.3, mean over
negatives of ``max(0, z_q·z_neg - z_q·z_pos + Δ)``, ``loss="margin"``) on the raw outputs of the
dense layers, as Algorithm 2 gives them (``normalize_output=False``; every convolution's output
is normalised, the final one is not), with ``Δ = 1`` (the paper gives no value; 1 is DGL's
PinSAGE example's, on raw dot products), and hard negatives from personalised-PageRank ranks
with the per-epoch curriculum (:mod:`reelgraph.samplers.plans.sage`). ``normalize_output=True``
(margin default 0.1, on cosines) is kept as an option: on ml-100k (``benchmarks/graph_models.py``
settings, 20 epochs, validation Recall@20) it gave 0.2943 against 0.3081 for the raw outputs.
The parts measured there (test Recall@20): GraphSAGE mean 0.3077; the SAGE-layer PinSage with
BPR 0.2632; this PinSage 0.3316 with the curriculum, 0.3207 with the cap from the first epoch,
0.2699 without hard negatives (the hard negatives carry most of the gain).

Initialisation: the ``"pinsage"`` layers' weights are Xavier-uniform with ReLU gain and their
biases zero (the paper gives none; DGL's PinSAGE example's). With PyTorch's default ``Linear``
init the biases (up to ``1/sqrt(d)``) outweigh ``Q h_u`` of 0.1-scale embeddings and every node
starts with nearly the same output (ml-100k at init: mean cosine of random node pairs 0.951,
against 0.730 with this init); the short fit on the planted feature world of the tests (BPR, no
hard negatives) fell from Recall@20 0.197 to 0.138.

:meth:`SAGE.embed` runs layer by layer over every node in chunks, over the inference
neighbourhoods the plan drew once for the whole graph.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reelgraph.errors import ConfigError, valid_number
from reelgraph.graph import Subgraph, edge_weighted_sum, segment_max
from reelgraph.models.base import (GraphConfig, Recommender, bpr_loss, check_values, init_tables_,
                                   int_at_least, l2_loss, make_plan)
from reelgraph.samplers.plans.sage import SAGEBatch, SAGEPlan, SAGEStatic

AGGREGATORS, INPUTS, LOSSES = ("mean", "maxpool", "importance"), ("id", "features", "both"), \
    ("bpr", "margin")
CONVS, HARD_SOURCES = ("pinsage", "sage"), ("ppr", "embedding")
PINSAGE_HARD_CAP = 3  # hard negatives per positive, at most (the paper sets no cap)


@dataclass(frozen=True)
class SAGEConfig(GraphConfig):
    """GraphSAGE / PinSage: the :class:`GraphConfig` fields (``fanouts``: neighbours per hop,
    seeds' hop first, ``-1`` all; for ``importance`` the most visited ones) and its own.

    ``conv``, ``loss``, ``normalize_output`` and ``hard_negatives`` left ``None`` take the
    aggregator's defaults when the config is made (PinSage's for ``importance``: ``"pinsage"``,
    ``"margin"``, ``False``, ``PINSAGE_HARD_CAP``; GraphSAGE's otherwise: ``"sage"``, ``"bpr"``,
    ``False``, ``0``), and ``margin`` left ``None`` is 0.1 on normalised outputs (cosines), 1.0
    on raw ones; ``dataclasses.replace`` of a made config keeps the values it resolved."""

    num_layers: int = 2               # L (hops)
    fanouts: list[int] = field(default_factory=lambda: [10, 5])
    exclude_targets: bool = True      # never sample a batch's target edges
    chunk_size: int = 4096            # embed(): nodes per chunk
    aggregator: str = "mean"          # "mean" | "maxpool" | "importance" (PinSage)
    conv: str | None = None           # "pinsage" (Algorithm 1 + dense layers) | "sage" (module doc)
    num_walks: int = 20               # importance: random walks per node
    walk_length: int = 2              # importance: two-step (x → y → x) moves per walk
    restart_prob: float = 0.5         # importance and ppr: P(back to the start node) after a move
    input: str = "id"                 # items: "id" | "features" (projected) | "both" (summed)
    loss: str | None = None           # "bpr" | "margin": mean max(0, s_neg - s_pos + margin)
    margin: float | None = None       # Δ of the margin loss (the paper gives none; see above)
    normalize_output: bool | None = None  # L2-normalise the final output
    hard_negatives: int | None = None  # hard negatives per positive, at most; 0: off
    hard_source: str = "ppr"          # "ppr": personalised-PageRank ranks (PinSage) |
    #                                   "embedding": ranks of the last evaluation's scores (ours)
    hard_curriculum: bool = True      # epoch e (0-based) gets min(e, hard_negatives) (§3.4)
    hard_rank_range: tuple[int, int] = (50, 500)  # embedding: ranks [lo, hi) drawn from
    ppr_rank_range: tuple[float, float] = (0.05, 0.15)  # ppr: ranks [lo I, hi I) of I items
    #                                   (the paper's 2000-5000 is for billions of pins; on
    #                                   ml-100k 5-15 % lies past the top 5 %, which holds 28 % of
    #                                   the validation items, and holds 23 %: 2.3x uniform)
    ppr_num_walks: int = 500          # ppr: walks per user (ml-100k: ~18 % of the items get a
    #                                   visit; with 200, 8.5 %, the window is clipped to the
    #                                   least visited and validation R@20 fell 0.3081 -> 0.2833)
    ppr_walk_length: int = 3          # ppr: user → item → user steps per walk
    inference_fanout: int = -1        # embed(): uniform neighbours per node; -1 all (maxpool: set
    #                                   it to the training fan-out, a max over more is biased)
    seed: int = 0                     # of the inference neighbourhoods (seed + 1)

    def __post_init__(self):
        for name, value, allowed in (("aggregator", self.aggregator, AGGREGATORS),
                                     ("input", self.input, INPUTS),
                                     ("hard_source", self.hard_source, HARD_SOURCES)):
            if value not in allowed:
                raise ValueError(f"SAGEConfig.{name}={value!r}; choose from {allowed}")
        pinsage = self.aggregator == "importance"
        for name, default in (("conv", "pinsage" if pinsage else "sage"),
                              ("loss", "margin" if pinsage else "bpr"),
                              ("normalize_output", False),
                              ("hard_negatives", PINSAGE_HARD_CAP if pinsage else 0)):
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)  # the aggregator's default
        if self.margin is None:
            object.__setattr__(self, "margin", 0.1 if self.normalize_output else 1.0)
        for name, value, allowed in (("conv", self.conv, CONVS), ("loss", self.loss, LOSSES)):
            if value not in allowed:
                raise ValueError(f"SAGEConfig.{name}={value!r}; choose from {allowed}")
        if self.fanouts is None:
            raise ValueError("SAGEConfig: SAGE trains on sampled neighbourhoods; give fanouts "
                             "(-1 = every neighbour)")
        check_values("SAGEConfig",
                     hard_negatives=(self.hard_negatives, int_at_least(0), "an int >= 0"),
                     margin=(self.margin, lambda v: v >= 0, "a finite number >= 0"),
                     ppr_num_walks=(self.ppr_num_walks, int_at_least(1), "an int >= 1"),
                     ppr_walk_length=(self.ppr_walk_length, int_at_least(2),
                                      "an int >= 2 (step 1 reaches only the user's positives)"))
        lo, hi = self.ppr_rank_range
        if not (valid_number(lo) and valid_number(hi) and 0 <= lo < hi <= 1):
            raise ConfigError(f"SAGEConfig: ppr_rank_range={tuple(self.ppr_rank_range)!r}; must be "
                              "fractions of the item count, 0 <= lo < hi <= 1")
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
                         hard_rank_range=tuple(self.hard_rank_range),
                         ppr_rank_range=tuple(self.ppr_rank_range))


def aggregate(h_src: Tensor, row: Tensor, col: Tensor, weight: Tensor, num_rows: int,
              max_pool: bool) -> Tensor:
    """``[num_rows, d]``: weighted sum of ``h_src[col]`` per ``row`` or, with ``max_pool``, their
    element-wise max (``h_src`` already pooled); rows without neighbours get zeros."""
    if max_pool:
        return segment_max(h_src[col], row, num_rows)                # [M, d] messages
    return edge_weighted_sum(row, col, weight, h_src, num_rows)       # a sparse product


class SAGELayer(nn.Module):
    """One convolution over ``h_src`` neighbours (the module doc):

    * ``conv="sage"``: ``W [h_v || AGG(h_u)] + b`` (activation left to the model); max-pool first
      maps neighbours by ``ReLU(P h_u + c)``;
    * ``conv="pinsage"`` (Algorithm 1): ``n_v = AGG(ReLU(Q h_u + q))``, then
      ``ReLU(W [h_v || n_v] + w)``, L2-normalised.

    ``pool`` is ``P`` / ``Q``, ``linear`` is ``W``.
    """

    def __init__(self, in_dim: int, out_dim: int, aggregator: str = "mean", conv: str = "sage"):
        super().__init__()
        self.conv, self.max_pool = conv, aggregator == "maxpool"
        self.pool = nn.Linear(in_dim, in_dim) if self.max_pool or conv == "pinsage" else None
        self.linear = nn.Linear(2 * in_dim, out_dim)

    def forward(self, h_dst: Tensor, h_src: Tensor, row: Tensor, col: Tensor,
                weight: Tensor) -> Tensor:
        """``h_dst [T, d]`` aggregates ``h_src [S, d]`` over edges ``row`` → T, ``col`` → S with
        weights ``weight`` (importance: the normalised visit counts ``α``)."""
        if self.pool is not None:
            h_src = F.relu(self.pool(h_src))  # [S, d] ReLU(Q h_u + q)
        agg = aggregate(h_src, row, col, weight, h_dst.size(0), self.max_pool)  # [T, d]
        z = self.linear(torch.cat([h_dst, agg], 1))  # [T, out]
        return F.normalize(F.relu(z), dim=-1) if self.conv == "pinsage" else z


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
        self.layers = nn.ModuleList(SAGELayer(d, d, config.aggregator, config.conv)
                                    for _ in range(config.num_layers))
        pinsage = config.conv == "pinsage"  # Algorithm 2's dense layers G2 ReLU(G1 z + g)
        self.g1 = nn.Linear(d, d) if pinsage else None
        self.g2 = nn.Linear(d, d, bias=False) if pinsage else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        items = [] if self.item is None else [self.item.weight]
        init_tables_(self.config, self.user.weight, *items)
        for m in [self.proj, *self.layers, self.g1, self.g2]:
            if m is not None:
                m.apply(lambda x: x.reset_parameters() if isinstance(x, nn.Linear) else None)
        if self.config.conv == "pinsage":  # Q, W, G1, G2 (module doc: "Initialisation")
            gain = nn.init.calculate_gain("relu")
            for lin in [m for layer in self.layers for m in (layer.pool, layer.linear)] + [
                    self.g1, self.g2]:
                nn.init.xavier_uniform_(lin.weight, gain=gain)
                if lin.bias is not None:
                    nn.init.zeros_(lin.bias)

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
        """A layer's output: the SAGE layer's ReLU and L2 on hidden layers (PinSage's layer
        does both itself), then, after the last, the dense layers and ``normalize_output``."""
        if self.config.conv == "sage" and not last:
            h = F.normalize(F.relu(h), dim=-1)
        if not last:
            return h
        if self.g1 is not None:
            h = self.g2(F.relu(self.g1(h)))  # [T, d] G2 ReLU(G1 z + g)
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
        score = torch.einsum("bd,bkd->bk", u, it)  # [B, 1 + k (+ h)], positive first
        if self.config.loss == "bpr":
            rank = bpr_loss(score[:, 0], score[:, 1:])
        else:
            # PinSage's max-margin loss (§3.3): mean over negatives of max(0, z_q·z_n - z_q·z_i + Δ)
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
            for c in chunks:  # the chunk's neighbours' rows only: a pooling layer (Q h + q)
                #               maps M rows, not all N, per chunk
                pos, nbr, w = static.neighbourhood(torch.arange(c.start, c.stop, device=w0.device))
                local = torch.arange(nbr.numel(), device=w0.device)
                out[c] = self._post(layer(h[c], h[nbr], pos, local, w), l == len(self.layers) - 1)
            h = out
        return h[: self.num_users], h[self.num_users:]
