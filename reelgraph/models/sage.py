"""GraphSAGE (Hamilton et al., 2017) and PinSage (Ying et al., KDD 2018) for link prediction,
trained on sampled mini-batches.

The graph is the homogeneous bipartite one (users ``0..U-1``, items ``U..U+I-1``). Each training
batch takes its seeds (the batch's users, positives and negatives), samples their ``L``-hop
neighbourhoods with the pure samplers of :mod:`reelgraph.samplers` (target edges removed, so a
positive never leaks into its own pair's neighbourhood) and computes the seeds' embeddings layer
by layer over that subgraph. Sampler and model meet only in :meth:`SAGE.loss`, as in DGL's
PinSAGE example: the sampler never touches parameters, the model keeps no graph state beyond
what :meth:`SAGE.prepare` returns.

One layer: ``h_v' = W [h_v || AGG(h_u : u in N(v))]``, then ReLU and L2-normalisation on hidden
layers (the last layer is linear; ``normalize_output`` normalises it too). ``AGG``:

* ``"mean"``: uniform sampled neighbours (``fanouts``), mean;
* ``"maxpool"``: the same neighbours, ``max_u ReLU(P h_u + b)`` element-wise;
* ``"importance"``: PinSage: a node's neighbours are the ``num_neighbors`` same-type nodes most
  visited by random walks with restart (item → user → item, or user → item → user), averaged
  with their normalised visit counts as weights.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reelgraph.graph import (BipartiteGraph, contains_edges, csr_rows, edge_keys, to_csr,
                             undirected_edge_keys)
from reelgraph.models.base import ModelConfig, Recommender, bpr_loss, l2_loss
from reelgraph.models.subgraph import Subgraph, weighted_sum
from reelgraph.samplers.batch import BPRBatch
from reelgraph.samplers.negative import hard_negatives_from_embeddings
from reelgraph.samplers.neighbor import neighbor_sample, sample_uniform
from reelgraph.samplers.pinsage import pinsage_neighbors, transpose_csr

CSR = tuple[Tensor, Tensor]
AGGREGATORS, INPUTS, LOSSES = ("mean", "maxpool", "importance"), ("id", "features", "both"), \
    ("bpr", "margin")


@dataclass
class SAGEConfig(ModelConfig):
    embedding_dim: int = 64           # d of the ID tables, the feature projection and every layer
    num_layers: int = 2               # L (hops)
    fanouts: list[int] = field(default_factory=lambda: [10, 5])  # per hop, seeds' hop first; -1 all
    aggregator: str = "mean"          # "mean" | "maxpool" | "importance" (PinSage)
    num_neighbors: int = 10           # importance: neighbours kept per node, every hop
    num_walks: int = 20               # importance: random walks per node
    walk_length: int = 2              # importance: two-step (x → y → x) moves per walk
    restart_prob: float = 0.5         # importance: P(back to the start node) after a move
    input: str = "id"                 # items: "id" | "features" (projected) | "both" (summed)
    loss: str = "bpr"                 # "bpr" | "margin": mean max(0, s_neg - s_pos + margin)
    margin: float = 0.1               # of the margin loss
    normalize_output: bool = False    # L2-normalise the last layer too (PinSage; pair with margin)
    hard_negatives: int = 0           # extra negatives per positive from the last embed() (run
    #                                   once at the first step if none yet); 0: off
    hard_rank_range: tuple[int, int] = (50, 500)  # ranks [lo, hi) hard negatives are drawn from
    inference_fanout: int = -1        # embed(): neighbours per node and layer; -1 all (maxpool:
    #                                   set it to the training fan-out, a max over more is biased)
    chunk_size: int = 4096            # embed(): nodes per chunk
    reg_weight: float = 1e-4          # L2 on the batch's layer-0 rows
    init_std: float = 0.1             # normal init of the ID tables
    seed: int = 0                     # training sampler seed (embed() uses seed + 1)

    def __post_init__(self):
        for name, value, allowed in (("aggregator", self.aggregator, AGGREGATORS),
                                     ("input", self.input, INPUTS), ("loss", self.loss, LOSSES)):
            if value not in allowed:
                raise ValueError(f"SAGEConfig.{name}={value!r}; choose from {allowed}")
        if self.aggregator != "importance" and len(self.fanouts) != self.num_layers:
            raise ValueError(f"SAGEConfig: {len(self.fanouts)} fanouts for "
                             f"{self.num_layers} layers")

    def build(self, store) -> "SAGE":
        features = None
        if self.input != "id":
            if not store.modalities:
                raise ValueError(f"SAGEConfig.input={self.input!r} but the store has no features")
            features = torch.cat([store.feature(m).float() for m in sorted(store.modalities)], 1)
        return SAGE(store.num_users, store.num_items, self, features)


@dataclass(frozen=True)
class SAGEState:
    """What :meth:`SAGE.prepare` builds once per training graph.

    Attributes:
        rowptr, col: ``[U + I + 1]``, ``[2E]`` CSR of the symmetric bipartite graph.
        user_item, item_user: ``(rowptr, col)`` CSRs of the two directions (random walks).
        train_keys: sorted ``user * I + item`` keys of the train edges (hard negatives skip them).
        cache: ``{"emb": (user [U, d], item [I, d])}`` from the last :meth:`SAGE.embed`.
    """

    rowptr: Tensor
    col: Tensor
    user_item: CSR
    item_user: CSR
    train_keys: Tensor
    cache: dict = field(default_factory=dict)


def mean_weights(row: Tensor, num_rows: int) -> Tensor:
    """``1 / deg(row)`` per edge, ``[M]``: a weighted sum with them is the neighbour mean."""
    return 1.0 / torch.bincount(row, minlength=num_rows).clamp(min=1).float()[row]


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


def drop_edges(rowptr: Tensor, col: Tensor, keys: Tensor, num_cols: int) -> CSR:
    """The CSR without the edges whose sorted ``row * num_cols + col`` keys are ``keys``;
    ``O(E)``."""
    rows = csr_rows(rowptr)
    num_rows = rowptr.numel() - 1
    keep = ~contains_edges(keys, rows, col, num_cols)
    counts = torch.bincount(rows[keep], minlength=num_rows)
    return torch.cat([rowptr.new_zeros(1), torch.cumsum(counts, 0)]), col[keep]


class SAGE(Recommender):
    """GraphSAGE / PinSage over the bipartite graph; see the module docstring.

    Args:
        num_users, num_items: node counts.
        config: hyper-parameters.
        item_features: ``[I, F]`` item features (modalities concatenated), needed unless
            ``config.input == "id"``; kept as a non-persistent buffer (not checkpointed).
    """

    def __init__(self, num_users: int, num_items: int, config: SAGEConfig = SAGEConfig(),
                 item_features: Tensor | None = None):
        super().__init__()
        self.num_users, self.num_items, self.config = num_users, num_items, config
        self.reg_weight, d = config.reg_weight, config.embedding_dim
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
        self._generator: torch.Generator | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.user.weight, std=self.config.init_std)
        if self.item is not None:
            nn.init.normal_(self.item.weight, std=self.config.init_std)
        for m in [self.proj, *self.layers]:
            if m is not None:
                m.apply(lambda x: x.reset_parameters() if isinstance(x, nn.Linear) else None)

    def generator(self, device: torch.device) -> torch.Generator:
        """The training sampler's generator (seeded once from ``config.seed``, per device)."""
        if self._generator is None or self._generator.device != torch.device(device):
            self._generator = torch.Generator(device).manual_seed(self.config.seed)
        return self._generator

    # -- graph state -----------------------------------------------------------------------
    def prepare(self, graph: BipartiteGraph) -> SAGEState:
        U, N = graph.num_users, graph.num_users + graph.num_items
        users, items = graph.users(), graph.col + U
        rowptr, col, _ = to_csr(torch.cat([users, items]), torch.cat([items, users]), N)
        return SAGEState(rowptr, col, (graph.rowptr, graph.col),
                         transpose_csr(graph.rowptr, graph.col, graph.num_items), graph.keys())

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

    def ego_embeddings(self) -> tuple[Tensor, Tensor]:
        return self.user.weight, self._item_input(torch.arange(self.num_items,
                                                               device=self.user.weight.device))

    def _post(self, h: Tensor, last: bool) -> Tensor:
        if not last:
            return F.normalize(F.relu(h), dim=-1)
        return F.normalize(h, dim=-1) if self.config.normalize_output else h

    # -- sampling --------------------------------------------------------------------------
    def _importance_hop(self, user_item: CSR, item_user: CSR, frontier: Tensor,
                        generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """PinSage neighbours of global ``frontier [S]``: ``(position [M], global id, weight)``."""
        c, U, parts = self.config, self.num_users, []
        for is_user, (a, b), offset in ((True, (user_item, item_user), 0),
                                        (False, (item_user, user_item), U)):
            pos = torch.nonzero((frontier < U) == is_user).flatten()
            out = pinsage_neighbors(a, b, frontier[pos] - offset, num_neighbors=c.num_neighbors,
                                    num_walks=c.num_walks, walk_length=c.walk_length,
                                    restart_prob=c.restart_prob, generator=generator)
            parts.append((pos[out.seed_index], out.neighbor + offset, out.weight))
        return tuple(torch.cat(t) for t in zip(*parts))

    def _importance_subgraph(self, state: SAGEState, seeds: Tensor, users: Tensor, pos: Tensor,
                             generator: torch.Generator) -> Subgraph:
        """``L`` hops of PinSage neighbourhoods, walking a graph without the target edges."""
        I, U = self.num_items, self.num_users
        ui = drop_edges(*state.user_item, torch.sort(edge_keys(users, pos, I)).values, I)
        iu = drop_edges(*state.item_user, torch.sort(edge_keys(pos, users, U)).values, U)
        node, frontier = seeds, seeds
        frontier_local = torch.arange(seeds.numel(), device=seeds.device)
        rows, cols, weights, nsn, nse = [], [], [], [seeds.numel()], []
        for _ in range(self.config.num_layers):
            at, nbr, w = self._importance_hop(ui, iu, frontier, generator)
            new = torch.unique(nbr[~torch.isin(nbr, node)])
            node = torch.cat([node, new])
            ids, order = torch.sort(node)
            rows.append(frontier_local[at])
            cols.append(order[torch.searchsorted(ids, nbr)])
            weights.append(w)
            frontier_local = torch.arange(node.numel() - new.numel(), node.numel(),
                                          device=node.device)
            frontier = new
            nsn.append(new.numel())
            nse.append(nbr.numel())
        return Subgraph(node, torch.cat(rows), torch.cat(cols), torch.cat(weights), nsn, nse)

    def sample(self, state: SAGEState, seeds: Tensor, users: Tensor, pos: Tensor) -> Subgraph:
        """The ``L``-hop neighbourhood of unique global ``seeds``, never using a target edge
        ``(users[b], pos[b])`` (either direction)."""
        gen = self.generator(seeds.device)
        if self.config.aggregator == "importance":
            return self._importance_subgraph(state, seeds, users, pos, gen)
        U, N = self.num_users, state.rowptr.numel() - 1
        keys = undirected_edge_keys(users, pos + U, N)
        out = neighbor_sample(state.rowptr, state.col, seeds, fanouts=list(self.config.fanouts),
                              exclude_keys=keys, generator=gen)
        return Subgraph(out.node, out.row, out.col, mean_weights(out.row, out.node.numel()),
                        out.num_sampled_nodes, out.num_sampled_edges)

    # -- forward ---------------------------------------------------------------------------
    def forward(self, sub: Subgraph) -> tuple[Tensor, Tensor]:
        """Output rows of the seeds ``[S, d]`` and the layer-0 rows of the seeds ``[S, d]``."""
        h = self._input(sub.node)  # [N, d]
        h0 = h[: sub.num_sampled_nodes[0]]
        L = len(self.layers)
        for l, layer in enumerate(self.layers):
            t = sum(sub.num_sampled_nodes[: L - l])  # nodes of hops 0..L-l-1 get layer l + 1
            m = sum(sub.num_sampled_edges[: L - l])
            h = self._post(layer(h[:t], h, sub.row[:m], sub.col[:m], sub.weight[:m]), l == L - 1)
        return h, h0

    def loss(self, batch: BPRBatch, state: SAGEState) -> dict[str, Tensor]:
        B, U, neg = len(batch), self.num_users, batch.neg
        if self.config.hard_negatives > 0:
            if "emb" not in state.cache:  # refreshed by every later embed() (validation)
                self.embed(state)
            hard = hard_negatives_from_embeddings(
                *state.cache["emb"], batch.users, state.train_keys, self.config.hard_negatives,
                rank_range=tuple(self.config.hard_rank_range), generator=self.generator(neg.device))
            neg = torch.cat([neg, hard], 1)
        items = torch.cat([batch.pos.unsqueeze(1), neg], 1)  # [B, 1 + k]
        seeds, inv = torch.unique(torch.cat([batch.users, items.flatten() + U]),
                                  return_inverse=True)  # [S], [B * (2 + k)]
        out, h0 = self(self.sample(state, seeds, batch.users, batch.pos))
        u, it = out[inv[:B]], out[inv[B:]].view(B, items.size(1), -1)  # [B, d], [B, 1 + k, d]
        score = torch.einsum("bd,bkd->bk", u, it)
        if self.config.loss == "bpr":
            rank = bpr_loss(score[:, 0], score[:, 1:])
        else:
            rank = F.relu(score[:, 1:] - score[:, :1] + self.config.margin).mean()
        reg = l2_loss(h0[inv]) / B
        return {"loss": rank + self.reg_weight * reg, self.config.loss: rank, "l2": reg}

    # -- inference -------------------------------------------------------------------------
    def _full_hop(self, state: SAGEState, chunk: Tensor, generator: torch.Generator
                  ) -> tuple[Tensor, Tensor, Tensor]:
        """One-hop neighbourhood of global ``chunk``: ``(position, global neighbour, weight)``."""
        if self.config.aggregator == "importance":
            return self._importance_hop(state.user_item, state.item_user, chunk, generator)
        pos, slot = sample_uniform(state.rowptr, chunk, self.config.inference_fanout,
                                   generator=generator)
        return pos, state.col[slot], mean_weights(pos, chunk.numel())

    @torch.no_grad()
    def embed(self, state: SAGEState) -> tuple[Tensor, Tensor]:
        """Every node's output, layer by layer over all nodes in chunks of ``chunk_size`` (memory:
        the ``[U + I, d]`` tables plus one chunk's neighbourhood); deterministic. Also cached in
        ``state.cache["emb"]`` for hard negatives."""
        device = self.user.weight.device
        gen = torch.Generator(device).manual_seed(self.config.seed + 1)
        chunks = torch.arange(self.num_users + self.num_items, device=device).split(
            self.config.chunk_size)
        h = torch.cat([self._input(c) for c in chunks])  # [N, d]
        for l, layer in enumerate(self.layers):
            out = []
            for c in chunks:
                pos, nbr, w = self._full_hop(state, c, gen)
                out.append(self._post(layer(h[c], h, pos, nbr, w), l == len(self.layers) - 1))
            h = torch.cat(out)
        emb = h[: self.num_users], h[self.num_users:]
        state.cache["emb"] = emb
        return emb
