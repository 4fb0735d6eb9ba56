"""SHL (Guo & Kim, LatIA 2025): multimodal local–global graph learning for short-video
recommendation, with self-supervised contrast between the two.

Per modality ``m`` (users ``0..U-1`` and items ``U..U+I-1`` of the symmetric user–item graph):

- layer-0 rows ``e_m``: an item's feature row (L2-normalised, any dimension) projected to ``d``
  by a learnt ``W^f_m`` (no bias); a user's learnt per-modality preference row (see below);
- local encoder (:mod:`reelgraph.models.shl_local`): ``num_layers`` hops of gated attention over
  graph neighbours, eqs. 1–4, each hop's output the next hop's input; then the ID embedding
  (one table, shared by every modality) as cross-modal anchor
  ``e~_h = R(W^h e_h) + e_ID`` (eq. 5) and ``e_local = R(W^1 e_N) + e~_h`` (eq. 6);
- global encoder (:mod:`reelgraph.models.shl_hypergraph`): HCCF's learnable low-rank
  hypergraph, one per node type, over every node's anchor ``e~``: ``e_global``;
- ``e_m = R(e_local + e_global)`` (eq. 7).

Fusion: ``z = [e_1 || ... || e_M]`` and a learnt gate per node and modality,
``a = sigmoid(W_g z + b) [M]``; the representation is ``[a_1 e_1 || ... || a_M e_M]``
(``M d`` wide; the paper's "CONCAT, then weights by torch.mul"). Scores are inner products
(eq. 8). Loss (eq. 9): BPR + ``ssl_weight`` x L_ssl + ``reg_weight`` x L2, L_ssl the InfoNCE
(cosine, temperature ``tau``) of each node's local against its global row, over the batch's
unique users and, apart, its unique positive items, summed over the two, averaged over
modalities (HCCF's local-vs-global contrast).

Where the paper is vague (each choice is ours):

- R is LeakyReLU (the paper names it under eq. 1; ``negative_slope`` 0.2, GAT's) everywhere.
- Users have no features: each user has a learnt preference row per modality (MMGCN's choice),
  in the same ``d``-space as the projected item features, so eq. 2's gate and eqs. 3–4 compare
  a user with its items. (Averaging a user's items instead needs the user's whole item list in
  every sampled batch.) Items' rows are projected first because eq. 2's dot product needs both
  ends in one space.
- Eq. 2's ``d_t`` is the neighbour's train degree, as the paper defines it (``gate_scale=
  "degree"``); ``"dim"`` divides by ``sqrt(d)`` instead (the scaled dot product).
- The hypergraph's input is the anchor ``e~`` (ID + modality), so the global row lives where
  the local one does and the InfoNCE compares like with like; users and items have their own
  ``num_hyperedges`` hyperedges per modality (HCCF). Its messages are means, not sums.
- L2 (``lambda ||theta||^2``): on the batch's layer-0 rows (ID and every modality's), per triple,
  as the repo's other models; dense weights are left to the optimiser's (``model.weight_decay``).
- ``ssl_weight`` (eq. 9 prints none, i.e. 1) defaults to 1e-3. Measured on the tests' planted
  feature world (d=32, 15 epochs): at init the gradient of L_ssl is 80-400x BPR's per weight
  (the cosine InfoNCE's gradient grows as ``1 / (tau |e|)``, and the global rows start ~9x
  shorter than the local ones: mean norm 0.10 vs 0.87); Recall@20 (mean of seeds 1, 5) 0.159
  at weight 0.1, 0.183 at 0.01, 0.233 at 1e-3, 0.236 at 0 (BPR-MF 0.187); tau 0.5 softens it
  (0.212 at 0.1). ``configs/spaces/shl.yaml`` searches 1e-4..0.1.
- ``modalities=[]`` (or a store without features) is the features-off ablation: one modality
  whose item rows are a learnt table instead of projected features; the rest is unchanged.

Training over the whole graph or the batch's sampled ``L``-hop neighbourhood is the plan's
(:class:`~reelgraph.samplers.plans.gcn.NeighborPlan`, as for LightGCN): the local encoder reads
the batch's edge lists (the whole graph's: its messages are ``[2E, d]`` per modality and step,
so use ``fanouts`` on large graphs; :meth:`SHL.embed` without gradients goes ``chunk_size``
centre rows at a time), the global one every node's layer-0 rows (``O((U + I) d)``). On a
sampled neighbourhood the attention's softmax runs over the sampled neighbours (the plan's edge
weights are not used); with every fan-out ``-1`` the loss is the full-graph one exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reelgraph.errors import ConfigError
from reelgraph.graph import FullGraph, Subgraph, node_rows
from reelgraph.models.base import (GraphConfig, Recommender, bpr_terms, check_values,
                                   init_tables_, int_at_least)
from reelgraph.models.shl_hypergraph import LowRankHypergraph
from reelgraph.models.shl_local import GatedAttention, chunked_hop, full_csr, hop_edges
from reelgraph.models.simgcl import info_nce
from reelgraph.samplers.batch import GraphBatch
from reelgraph.samplers.plans.gcn import GCNStatic

GATE_SCALES = ("degree", "dim")
NO_FEATURES = "id"  # the one modality of the features-off ablation


@dataclass(frozen=True)
class SHLConfig(GraphConfig):
    """SHL: the :class:`GraphConfig` fields (``num_layers``: hops of the local encoder, 1 as in
    the paper; ``fanouts``: ``None`` trains on the whole graph) and its own below."""

    num_layers: int = 1                   # hops of the local gated-attention encoder
    ssl_weight: float = 1e-3              # weight of L_ssl (eq. 9 prints 1; see module doc)
    tau: float = 0.2                      # InfoNCE temperature
    num_hyperedges: int = 128             # K per node type and modality (HCCF's default)
    negative_slope: float = 0.2           # of R = LeakyReLU
    gate_scale: Literal["degree", "dim"] = "degree"  # eq. 2's sqrt(d_t): neighbour degree or dim
    modalities: list[str] | None = None   # store modalities used; None: all; []: features off

    def __post_init__(self):
        super().__post_init__()
        name = type(self).__name__
        if self.gate_scale not in GATE_SCALES:
            raise ConfigError(f"{name}: gate_scale={self.gate_scale!r}; choose from {GATE_SCALES}")
        check_values(name,
                     num_layers=(self.num_layers, int_at_least(1), "an int >= 1 (SHL needs a hop)"),
                     ssl_weight=(self.ssl_weight, lambda v: v >= 0, "a finite number >= 0"),
                     tau=(self.tau, lambda v: v > 0, "a finite number > 0"),
                     num_hyperedges=(self.num_hyperedges, int_at_least(1), "an int >= 1"),
                     negative_slope=(self.negative_slope, lambda v: 0 <= v < 1, "in [0, 1)"))
        if self.modalities is not None and len(set(self.modalities)) != len(self.modalities):
            raise ConfigError(f"{name}: modalities={list(self.modalities)} repeats a name")

    def build(self, store) -> "SHL":
        names = list(store.modalities) if self.modalities is None else list(self.modalities)
        missing = [m for m in names if m not in store.modalities]
        if missing:
            raise ConfigError(f"SHLConfig: modalities {missing} not in the store (has "
                              f"{list(store.modalities)})")
        features = {m: store.feature(m).float() for m in names}
        return SHL(store.num_users, store.num_items, features, self)


@dataclass(frozen=True)
class Encoded:
    """A forward pass over a graph's seeds ``S``: fused rows ``out [S, M d]``, per modality the
    local and global rows ``local[m], glob[m] [S, d]``, and the layer-0 rows ``ego [S, (1 + M) d]``
    (ID, then every modality's)."""
    out: Tensor
    local: list[Tensor]
    glob: list[Tensor]
    ego: Tensor


class SHL(Recommender):
    """SHL over ``num_users`` x ``num_items`` with item ``features {modality: [I, f_m]}`` (any
    ``f_m``; none: the features-off ablation). See the module doc."""

    def __init__(self, num_users: int, num_items: int, features: dict[str, Tensor] | None = None,
                 config: SHLConfig | None = None):
        super().__init__()
        self.config = c = config or SHLConfig()
        self.num_users, self.num_items, d = num_users, num_items, c.embedding_dim
        features = dict(features or {})
        for m, x in features.items():
            if x.dim() != 2 or x.size(0) != num_items:
                raise ValueError(f"SHL: feature '{m}' has shape {tuple(x.shape)}; need "
                                 f"[{num_items}, f]")
        self.modality_names = list(features) or [NO_FEATURES]
        M = len(self.modality_names)
        for j, x in enumerate(features.values()):                        # data, not state
            self.register_buffer(f"feature_{j}", F.normalize(x.float(), dim=1), persistent=False)
        self.embedding = nn.Embedding(num_users + num_items, d)           # e_ID, users first
        self.preference = nn.Parameter(torch.empty(M, num_users, d))      # users' e_m rows
        self.item_table = nn.Parameter(torch.empty(0 if features else num_items, d))
        self.project = nn.ModuleList([nn.Linear(x.size(1), d, bias=False)  # W^f_m
                                      for x in features.values()])
        self.hops = nn.ModuleList([nn.ModuleList([GatedAttention(d, c.negative_slope)
                                                  for _ in range(c.num_layers)])
                                   for _ in range(M)])
        self.anchor = nn.ModuleList([nn.Linear(d, d, bias=False) for _ in range(M)])  # W^h
        self.local_out = nn.ModuleList([nn.Linear(d, d, bias=False) for _ in range(M)])  # W^1
        self.user_hyper = nn.ModuleList([LowRankHypergraph(d, c.num_hyperedges, c.negative_slope)
                                         for _ in range(M)])
        self.item_hyper = nn.ModuleList([LowRankHypergraph(d, c.num_hyperedges, c.negative_slope)
                                         for _ in range(M)])
        self.fusion = nn.Linear(M * d, M)                                 # W_g, b of the gate
        self.reset_parameters()

    def reset_parameters(self) -> None:
        w = self.embedding.weight
        init_tables_(self.config, w[: self.num_users], w[self.num_users:], *self.preference,
                     *([self.item_table] if self.item_table.numel() else []))
        for lin in [*self.project, *self.anchor, *self.local_out]:
            nn.init.xavier_uniform_(lin.weight)
        for module in self.modules():
            if isinstance(module, (GatedAttention, LowRankHypergraph)):
                module.reset_parameters()
        nn.init.xavier_uniform_(self.fusion.weight)
        nn.init.zeros_(self.fusion.bias)                                  # gates start at 0.5

    def R(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, self.config.negative_slope)

    # -- layer-0 rows ------------------------------------------------------------------------
    def item_rows(self, j: int, items: Tensor | None) -> Tensor:
        """Modality ``j``'s layer-0 rows of ``items`` (``None``: all), ``[n, d]``."""
        if self.item_table.numel():
            return self.item_table if items is None else self.item_table[items]
        x = getattr(self, f"feature_{j}")
        return self.project[j](x if items is None else x[items])

    def modality_rows(self, j: int, node: Tensor | None) -> Tensor:
        """Modality ``j``'s layer-0 rows ``e_m`` of global node ids ``node [N]`` (``None``: every
        node): users' preference rows, items' projected features; ``[N, d]``."""
        if node is None:
            return torch.cat([self.preference[j], self.item_rows(j, None)])
        U = self.num_users
        users = torch.nonzero(node < U).flatten()
        items = torch.nonzero(node >= U).flatten()
        out = self.preference.new_empty(node.numel(), self.preference.size(-1))
        out = out.index_put((users,), self.preference[j][node[users]])
        return out.index_put((items,), self.item_rows(j, node[items] - U))

    # -- the encoders ------------------------------------------------------------------------
    def gate_scale(self, graph: Subgraph | FullGraph, col: Tensor, deg: Tensor) -> Tensor:
        """``sqrt(d_t)`` of each edge's neighbour ``col [M]`` (local ids), ``[M]`` or a scalar."""
        if self.config.gate_scale == "dim":
            return torch.tensor(float(self.config.embedding_dim), device=col.device).sqrt()
        t = col if graph.node is None else graph.node[col]
        return deg[t].float().clamp(min=1).sqrt()

    def local(self, j: int, graph: Subgraph | FullGraph, x: Tensor, deg: Tensor) -> Tensor:
        """``e_N [S, d]`` of the graph's seeds from modality ``j``'s layer-0 rows ``x [N, d]``:
        ``num_layers`` hops of eqs. 1–4 (the whole graph without gradients: ``chunk_size``
        centre rows at a time)."""
        h, L = x, self.config.num_layers
        chunked = isinstance(graph, FullGraph) and not torch.is_grad_enabled()
        for l, hop in enumerate(self.hops[j]):
            if chunked:  # evaluation: one chunk of centre rows' messages at a time
                rowptr, col = full_csr(graph)
                h = chunked_hop(hop, h, rowptr, col, self.gate_scale(graph, col, deg),
                                graph.chunk_size)
                continue
            row, col, t = hop_edges(graph, l, L)
            h = hop(h[:t], h, row, col, self.gate_scale(graph, col, deg))  # [t, d]
        return h[: graph.num_seeds]

    def glob(self, j: int, anchor: Tensor, node: Tensor | None) -> Tensor:
        """``e_global`` of seeds ``node [S]`` (``None``: every node) from every node's anchor
        ``anchor [U + I, d]``, through the users' and the items' hypergraphs; ``[S, d]``."""
        U = self.num_users
        if node is None:
            return torch.cat([self.user_hyper[j](anchor[:U]), self.item_hyper[j](anchor[U:])])
        users = torch.nonzero(node < U).flatten()
        items = torch.nonzero(node >= U).flatten()
        out = anchor.new_empty(node.numel(), anchor.size(1))
        out = out.index_put((users,), self.user_hyper[j](anchor[:U], node[users]))
        return out.index_put((items,), self.item_hyper[j](anchor[U:], node[items] - U))

    def forward(self, graph: Subgraph | FullGraph, deg: Tensor) -> Encoded:
        """Every row of the graph's seeds (module doc); ``deg [U + I]`` the train degrees."""
        S, node = graph.num_seeds, graph.node
        seeds = None if node is None else node[:S]
        id_all = self.embedding.weight                                    # [U + I, d]
        id_rows = node_rows(node, id_all)                                 # [N, d]
        parts, locals_, globs, ego = [], [], [], [id_rows[:S]]
        for j in range(len(self.modality_names)):
            x = self.modality_rows(j, node)                               # [N, d] e_m
            e_n = self.local(j, graph, x, deg)                            # [S, d] eq. 1
            x_all = x if node is None else self.modality_rows(j, None)    # [U + I, d]
            anchor_all = self.R(self.anchor[j](x_all)) + id_all           # [U + I, d] eq. 5
            anchor = anchor_all if node is None else anchor_all[seeds]    # [S, d]
            local = self.R(self.local_out[j](e_n)) + anchor               # eq. 6
            glob = self.glob(j, anchor_all, seeds)                        # [S, d]
            parts.append(self.R(local + glob))                            # eq. 7
            locals_.append(local)
            globs.append(glob)
            ego.append(x[:S])
        z = torch.stack(parts, 1)                                         # [S, M, d]
        gate = torch.sigmoid(self.fusion(z.flatten(1)))                   # [S, M]
        return Encoded((z * gate.unsqueeze(-1)).flatten(1), locals_, globs, torch.cat(ego, 1))

    # -- the Recommender contract ------------------------------------------------------------
    def embed(self, static: GCNStatic) -> tuple[Tensor, Tensor]:
        """``(user [U, M d], item [I, M d])`` over the whole graph."""
        out = self(static.graph, static.deg).out
        return out[: self.num_users], out[self.num_users:]

    def loss(self, batch: GraphBatch) -> dict[str, Tensor]:
        """BPR + ``ssl_weight`` x L_ssl + ``reg_weight`` x L2 (eq. 9; module doc)."""
        c = self.config
        enc = self(batch.graph, batch.static.deg)
        user_rows, item_rows = batch.rows()
        out = bpr_terms(enc.out[user_rows], enc.out[item_rows], enc.ego[batch.index],
                        c.reg_weight)
        users, items = torch.unique(user_rows), torch.unique(item_rows[:, 0])
        out["ssl"] = sum(info_nce(loc[users], glo[users], c.tau)
                         + info_nce(loc[items], glo[items], c.tau)
                         for loc, glo in zip(enc.local, enc.glob)) / len(enc.local)
        out["loss"] = out["loss"] + c.ssl_weight * out["ssl"]
        return out

    def extra_repr(self) -> str:
        c = self.config
        return (f"users={self.num_users}, items={self.num_items}, modalities="
                f"{self.modality_names}, layers={c.num_layers}, hyperedges={c.num_hyperedges}, "
                f"gate_scale={c.gate_scale!r}, ssl_weight={c.ssl_weight}, tau={c.tau}")
