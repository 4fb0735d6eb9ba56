"""MMGCN (Wei et al., MM 2019): one user–item graph per modality, summed representations.

Per modality ``m`` (visual, acoustic, textual, ...; here: the store's item features) the nodes of
the user–item train graph start from content: an item from its projected feature
``W_m^0 f_i + b`` (``[latent_dim]``), a user from a learnt preference ``p_u^m`` of the same width,
the layer-0 rows L2-normalised (the reference code's ``F.normalize``). Each of ``L`` layers then
takes a node's own row ``x_v`` and its neighbours' ``x_j``:

- aggregation (eq. 1): ``h_v = LeakyReLU(agg_{j in N(v)} W_1 x_j)``, ``agg`` the mean or the
  element-wise max over the neighbours (``aggregation``); a node without neighbours gets 0;
- combination (eqs. 4-5): ``x^_v = LeakyReLU(W_2 x_v + b_2) + e_v`` with ``e_v`` the node's ID
  embedding (``has_id``, shared by every modality and layer), then ``concat``:
  ``x'_v = LeakyReLU(W_3 [h_v || x^_v] + b_3)``, or ``add``: ``LeakyReLU(W_3 h_v + b_3 + x^_v)``.

Layer 1 maps ``latent_dim`` to ``embedding_dim``; later layers keep ``embedding_dim``. The final
representation is the sum over modalities of each one's layer ``L`` (eq. 6 of the paper; the
reference code divides the sum by the number of modalities, a constant scale), scored by inner
product and trained with BPR plus ``reg_weight`` times the L2 of the batch's ID rows and its
users' preference rows (the reference's regulariser, over all modalities).

Choices, following the reference code (``weiyinwei/MMGCN``, ``Model_MMGCN.py``, ``main.py``)
where the paper leaves room: 3 layers by default (the reference stacks 3 whatever its
``num_layer``); mean aggregation and concatenation (its ``main.py`` passes ``'mean'`` and the
string ``'False'``, which is truthy, so it concatenates); ``W_1`` has no bias and keeps its
input width; LeakyReLU slope 0.01; every weight Xavier-normal, biases 0, ID and preference
tables by ``init``; ``add`` adds ``x^_v`` inside the activation (the reference's
``LeakyReLU(W_3 h + x^)``); the graph is the plain user–item train graph in both directions for
every modality (the reference's ``edge_index`` and its reverse), no self-loops, no degree
normalisation beyond the mean. One departure: the reference builds its ID table and user
preferences as plain tensors (``.cuda()`` copies of leaf tensors), which its optimiser never
updates; here they are parameters, as the paper trains them. ``features=False`` is the
features-off ablation: an item of each modality starts from a learnt ``[latent_dim]`` row
instead of its content (the same graph and layers, no content); a store without features then
runs one such branch.

Training over the whole graph (``fanouts=None``) or each batch's sampled neighbourhood
(``fanouts``; the loader samples it with :class:`~reelgraph.samplers.plans.gcn.NeighborPlan`)
is the plan's, one loss path: the aggregation reads only the graph's structure (its edges), not
its LightGCN weights, so with every fan-out ``-1`` a seed's rows are exactly the full-graph ones;
with fan-out ``k`` the mean runs over the ``min(k, d_v)`` sampled neighbours (an unbiased
estimate of the full mean; the sampled max is not an estimate of the full one). Memory: ``mean``
is one sparse product per layer; ``max`` holds the ``[edges, d]`` messages of a layer (the
reference's message passing does too), so ``max`` on a whole large graph wants sampled batches.
Target edges stay in sampled neighbourhoods unless ``exclude_targets`` (as LightGCN's: the
full-graph model being evaluated propagates over them).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reelgraph.errors import ConfigError
from reelgraph.graph import (FullGraph, Subgraph, csr_rows, node_rows, segment_max,
                             segment_mean_weight)
from reelgraph.models.base import (GraphConfig, Recommender, bpr_terms, check_values,
                                   init_tables_, int_at_least)
from reelgraph.samplers.batch import GraphBatch
from reelgraph.samplers.plans.gcn import GCNStatic

AGGREGATIONS = ("mean", "max")
COMBINATIONS = ("concat", "add")


@dataclass(frozen=True)
class MMGCNConfig(GraphConfig):
    """MMGCN: the :class:`GraphConfig` fields and its own below."""

    latent_dim: int | None = None          # width of layer 0 (projected features, preferences);
    #                                        None: embedding_dim (the reference: 256 for 2048-d)
    aggregation: Literal["mean", "max"] = "mean"       # agg of eq. 1
    combination: Literal["concat", "add"] = "concat"   # eq. 4's concatenation, or the sum
    has_id: bool = True                    # add the ID embedding in the combination (eq. 5)
    negative_slope: float = 0.01           # LeakyReLU slope (torch's default, as the reference)
    features: bool = True                  # False: the features-off ablation (module doc)
    modalities: list[str] | None = None    # store modalities used; None: all

    def __post_init__(self):
        super().__post_init__()
        for name, value, options in (("aggregation", self.aggregation, AGGREGATIONS),
                                     ("combination", self.combination, COMBINATIONS)):
            if value not in options:
                raise ConfigError(f"MMGCNConfig: {name}={value!r}; choose from {options}")
        check_values("MMGCNConfig", negative_slope=(self.negative_slope, lambda v: v >= 0,
                                                    "a finite number >= 0"))
        if self.latent_dim is not None:
            check_values("MMGCNConfig",
                         latent_dim=(self.latent_dim, int_at_least(1), "an int >= 1"))
        check_values("MMGCNConfig", num_layers=(self.num_layers, int_at_least(1),
                                                "an int >= 1 (MMGCN needs a layer)"))

    def modality_names(self, store) -> list[str]:
        names = list(store.modalities) if self.modalities is None else list(self.modalities)
        missing = [m for m in names if m not in store.modalities]
        if missing:
            raise ConfigError(f"MMGCNConfig: modalities {missing} are not in the store "
                              f"(it has {list(store.modalities)})")
        if not names and self.features:
            raise ConfigError("MMGCNConfig: the store has no item features (modalities); MMGCN "
                              "needs some, or features=False for the ID-only ablation")
        return names

    def build(self, store) -> "MMGCN":
        names = self.modality_names(store)
        if not self.features:  # one learnt item table per branch instead of the content
            return MMGCN(store.num_users, store.num_items,
                         {m: store.num_items for m in names or ["id"]}, self)
        return MMGCN(store.num_users, store.num_items,
                     {m: store.feature(m).float() for m in names}, self)


# -- the pure pieces of a layer ---------------------------------------------------------------
def aggregate(x: Tensor, row: Tensor, col: Tensor, num_rows: int, how: str) -> Tensor:
    """``[num_rows, d]``: per row ``v`` the mean (``how="mean"``) or element-wise max
    (``"max"``) of ``x[col]`` over its edges ``row == v``; 0 for a row without edges."""
    if how == "mean":
        adj = torch.sparse_coo_tensor(torch.stack([row, col]),
                                      segment_mean_weight(row, num_rows, x.dtype),
                                      (num_rows, x.size(0)), check_invariants=False)
        return torch.sparse.mm(adj, x)  # no [M, d] messages kept for the backward pass
    return segment_max(x[col], row, num_rows)


def mmgcn_layer(x: Tensor, ids: Tensor | None, row: Tensor, col: Tensor, t: int,
                w1: nn.Linear, w2: nn.Linear, w3: nn.Linear, aggregation: str, combination: str,
                negative_slope: float) -> Tensor:
    """Layer ``l + 1`` ``[t, d]`` of the first ``t`` rows of ``x [n, d_in]`` (layer ``l``):
    aggregation over the edges ``(row, col)`` (``row < t``, ``col < n``), combined with each
    row's own ``x`` and its ID row ``ids [t, d]`` (``None``: no ID embedding)."""
    if aggregation == "mean":  # W_1 is linear: the mean of W_1 x_j is W_1 of the mean
        h = w1(aggregate(x, row, col, t, "mean"))                        # [t, d_in]
    else:
        h = aggregate(w1(x), row, col, t, "max")                         # [t, d_in]
    h = F.leaky_relu(h, negative_slope)
    own = F.leaky_relu(w2(x[:t]), negative_slope)                        # [t, d]
    if ids is not None:
        own = own + ids
    if combination == "concat":
        return F.leaky_relu(w3(torch.cat([h, own], 1)), negative_slope)
    return F.leaky_relu(w3(h) + own, negative_slope)


def _edges(graph: Subgraph | FullGraph) -> tuple[Tensor, Tensor]:
    """``(row, col)`` of every edge of ``graph`` (a subgraph's in hop order)."""
    if isinstance(graph, Subgraph):
        return graph.row.long(), graph.col.long()
    rowptr, col = ((graph.adj.crow_indices(), graph.adj.col_indices()) if graph.adj is not None
                   else graph.csr[:2])
    return csr_rows(rowptr.long()), col.long()


def _hop(graph: Subgraph | FullGraph, l: int, num_layers: int) -> tuple[int, int | None]:
    """``(t, m)``: layer ``l + 1`` is needed for the first ``t`` nodes, whose edges are the
    first ``m`` (``None``: all)."""
    if isinstance(graph, Subgraph):
        return graph.hop(l, num_layers)
    return graph.num_nodes, None


class MMGCN(Recommender):
    """MMGCN over ``num_users`` x ``num_items`` with one branch per item modality.

    ``inputs {name: features [I, f] | num_items}``: a branch's items start from their projected
    features, or (an int, the features-off ablation) from a learnt ``[I, latent_dim]`` table.
    Users ``0..U-1`` and items ``U..U+I-1`` are the nodes of every branch.
    """

    def __init__(self, num_users: int, num_items: int, inputs: dict[str, Tensor | int],
                 config: MMGCNConfig | None = None):
        super().__init__()
        self.config = config = config or MMGCNConfig()
        self.num_users, self.num_items = num_users, num_items
        if not inputs:
            raise ValueError("MMGCN needs at least one branch (a modality)")
        d = config.embedding_dim
        d0 = config.latent_dim or d
        self.modality_names = list(inputs)
        self.item_inputs = nn.ModuleList()   # per branch: Linear f -> d0, or Embedding I x d0
        for j, (m, x) in enumerate(inputs.items()):
            if isinstance(x, int):
                self.item_inputs.append(nn.Embedding(num_items, d0))
                continue
            if x.dim() != 2 or x.size(0) != num_items:
                raise ValueError(f"feature '{m}' has shape {tuple(x.shape)}; need [{num_items}, f]")
            self.register_buffer(f"feature_{j}", x.float(), persistent=False)  # data, not state
            self.item_inputs.append(nn.Linear(x.size(1), d0))
        self.preference = nn.ParameterList(nn.Parameter(torch.empty(num_users, d0))
                                           for _ in inputs)
        self.embedding = nn.Embedding(num_users + num_items, d) if config.has_id else None
        widths = [d0] + [d] * (config.num_layers - 1)                     # d_in per layer
        k = 2 if config.combination == "concat" else 1

        def per_layer(make) -> nn.ModuleList:  # [branch][layer]
            return nn.ModuleList(nn.ModuleList(make(w) for w in widths) for _ in inputs)
        self.w1 = per_layer(lambda w: nn.Linear(w, w, bias=False))       # aggregation
        self.w2 = per_layer(lambda w: nn.Linear(w, d))                    # own row
        self.w3 = per_layer(lambda w: nn.Linear(w + d if k == 2 else w, d))  # combination
        self.reset_parameters()

    def reset_parameters(self) -> None:
        c = self.config
        if self.embedding is not None:
            w = self.embedding.weight
            init_tables_(c, w[: self.num_users], w[self.num_users:])
        init_tables_(c, *self.preference)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_normal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding) and module is not self.embedding:
                init_tables_(c, module.weight)

    def extra_repr(self) -> str:
        c = self.config
        return (f"users={self.num_users}, items={self.num_items}, modalities="
                f"{self.modality_names}, layers={c.num_layers}, aggregation={c.aggregation}, "
                f"combination={c.combination}, has_id={c.has_id}, features={c.features}")

    def _layer0(self, j: int, node: Tensor | None) -> Tensor:
        """Branch ``j``'s normalised layer-0 rows ``[N, d0]`` of global nodes ``node``
        (``None``: every node, users first)."""
        U, source = self.num_users, self.item_inputs[j]
        pref = self.preference[j]

        def items(idx: Tensor | None) -> Tensor:
            if isinstance(source, nn.Embedding):
                return source.weight if idx is None else source.weight[idx]
            f = getattr(self, f"feature_{j}")
            return source(f if idx is None else f[idx])
        if node is None:
            return F.normalize(torch.cat([pref, items(None)]), dim=1)
        is_user = node < U
        at_u, at_i = is_user.nonzero().flatten(), (~is_user).nonzero().flatten()
        x = pref.new_zeros(node.numel(), pref.size(1))
        x = x.index_put((at_u,), pref[node[at_u]]).index_put((at_i,), items(node[at_i] - U))
        return F.normalize(x, dim=1)

    def forward(self, graph: Subgraph | FullGraph) -> tuple[Tensor, Tensor | None]:
        """The seeds' representation summed over branches ``[S, d]`` and their ID rows
        ``[S, d]`` (``None`` without ``has_id``)."""
        c, L, S = self.config, self.config.num_layers, graph.num_seeds
        row, col = _edges(graph)
        ids = (node_rows(graph.node, self.embedding.weight) if self.embedding is not None
               else None)                                                 # [N, d]
        out = 0
        for j in range(len(self.modality_names)):
            x = self._layer0(j, graph.node)                               # [N, d0]
            for l in range(L):
                t, m = _hop(graph, l, L)
                x = mmgcn_layer(x, None if ids is None else ids[:t], row[:m], col[:m], t,
                                self.w1[j][l], self.w2[j][l], self.w3[j][l], c.aggregation,
                                c.combination, c.negative_slope)          # [t, d]
            out = out + x[:S]
        return out, None if ids is None else ids[:S]

    def embed(self, static: GCNStatic) -> tuple[Tensor, Tensor]:
        """``(user [U, d], item [I, d])`` of the whole graph."""
        out, _ = self(static.graph)
        return out[: self.num_users], out[self.num_users:]

    def loss(self, batch: GraphBatch) -> dict[str, Tensor]:
        """BPR + ``reg_weight`` L2 of the batch's ID rows and its users' preference rows."""
        out, ids = self(batch.graph)
        users, items = batch.rows()
        ego = [p[batch.users].flatten() for p in self.preference]
        if ids is not None:
            ego.append(ids[batch.index].flatten())
        return bpr_terms(out[users], out[items], torch.cat(ego), self.config.reg_weight)
