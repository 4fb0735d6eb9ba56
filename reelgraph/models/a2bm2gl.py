"""A²BM²GL (Cai et al., ACM MM 2022): adaptive anti-bottleneck multi-modal graph learning.

Three representation modules, summed (paper §3.6.1), scored by inner product:

- collaborative: LightGCN propagation over the bipartite graph with (d+1) self-loops,
  ``D~^-1/2 (A + I) D~^-1/2`` with ``D~ = D + I`` (eq. 1), mean of layers ``0..L``;
- semantic (items only, one per modality): a kNN item graph whose edge weights are a multi-head
  learnable weighted cosine (eq. 3), encoded by one GCN layer with a learnable self-loop weight,
  ``ReLU(D^-1/2 (A + wI) D^-1/2 X W)`` (eq. 4);
- anti-bottleneck: random surfing with restart (eq. 5) gives each node a "full-adjacent"
  neighbourhood of short- and long-range nodes, aggregated by GAT-style attention (eq. 6), once
  over the user–item graph (on the collaborative output) and once per modality kNN graph.

Loss (eq. 10): the adaptive loss (eq. 8, per-user MLP boundaries of eq. 9) + δ·margin + β·L_str
(UltraGCN constraint on the collaborative output, eq. 2) + γ·L_sem (the same on each kNN graph)
+ λ·L2 on the batch's ego embeddings. Ablations by flags: ``anti_bottleneck=False`` (model-an),
``adaptive_loss=False`` (model-al: BPR), ``str_loss=False`` (model-str), ``semantic=False``.

Where the paper is vague (each choice is ours):

- Eq. 8 is non-sampling: ``rec_negatives="all"`` computes it exactly (every non-interacted item,
  eq. 7's uniform weight ``c0``; :func:`full_adaptive_loss`, whole graph only). The default
  ``"sampled"`` is the scalable estimate: the batch's positives and sampled negatives, each part
  a mean. Triples are uniform train edges with uniform non-positive negatives, so its expectation
  is ``sum_u [sum_{N(u)+} (B_up - s)^2 + deg(u)/|N(u)-| sum_{N(u)-} (s - B_low)^2] / |E|``: the
  exact loss with a per-user ``c0 = deg(u) / |N(u)-|``, i.e. biased against eq. 8's uniform
  weight unless every user has the same degree (weighting each triple's negative mean by
  ``|N(u)-| / deg(u)`` removes the bias). Eq. 9's sums over N(u)+ / N(u)- are means (sums scale
  with degree and catalogue size).
- The margin term is written ``-max{m - (B_up - B_low), 0}``; minimising that would widen the
  violation, so we minimise the hinge ``max{m - (B_up - B_low), 0}`` (its stated intent).
- L_str / L_sem: eq. 2 has positives only, which inflating every score minimises; as in UltraGCN
  we add the sampled negatives' ``-log σ(-s)``. Positive weights β are eq. 2's, rescaled to mean 1
  over the graph's edges so the paper's β=0.6, γ=0.1 are not swamped by ~1/degree weights.
- kNN edges are chosen once (by the plan, from the store's features) by plain cosine (the heads'
  initial value) and symmetrised; their weights (ReLU of the multi-head weighted cosine) are
  recomputed every step, so the metric is learned through them (as LATTICE / IDGL do) without an
  ``I x I`` matrix.
- RWR uses the row-stochastic walk ``D^-1 A`` (binary kNN graphs for modalities), ``M = sum_k A_k``
  for ``k = 1..K``; each node keeps its top-n other nodes (self excluded: it is already in the
  sum). ``M`` only selects neighbours; attention weighs them (eq. 6).
- Users have collaborative and anti-bottleneck parts only; items add every semantic part.
- Defaults: the paper's delta=0.5 and a 1e-4 L2 let the squared loss shrink the boundary gap
  and overfit under our per-batch means; on a planted world delta=2, lambda=1e-2 trained
  the adaptive loss to BPR's level (Recall@20 0.274 vs 0.268), delta=0.5, lambda=1e-4 to 0.197.
- Features enter the model L2-normalised per row (eq. 3's cosine and the kNN choice are
  unchanged by it). Raw unit-variance features through a Xavier encoder made each semantic part
  ~12-25x the collaborative one (item norm 20 vs 0.22 on the synthetic world, anti-bottleneck
  attending over them a second time); Adam's first step (every weight moves by ~lr) then shifted
  scores and eq. 9's boundaries by ~5, the squared loss of eq. 8 jumped from 0.85 to 128, and the
  semantic parts were crushed (ReLU outputs shrank 5.5 -> 0.2 in one epoch): Recall@20 0.07 vs
  BPR's 0.22. Unit rows put ``X W`` on the ego embeddings' scale (std ~0.1 per coordinate).
- Features are non-persistent buffers: data, re-read from the store when a model is built, so
  checkpoints stay small.

One loss path: the batch (:class:`~reelgraph.samplers.plans.a2bm2gl.A2BM2GLBatch`) says which
rows to compute, every row over the whole graph (``fanouts=None``) or exactly the rows the loss
reads over a sampled collaborative neighbourhood (``fanouts``; see
:mod:`reelgraph.samplers.plans.a2bm2gl` for what is sampled, how, and why it is unbiased). The
static kNN graphs, full-adjacent lists and constraint weights are the plan's. ``embed`` is the
full-graph fused embeddings either way (sampled: without gradients, eq. 1's operator built
``chunk_size`` rows at a time; the attention still reads ``[N, n, d]``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reelgraph.graph import FullGraph, Subgraph, expand_rows, local_index, node_rows, propagate
from reelgraph.graph import weighted_sum
from reelgraph.models.a2bm2gl_losses import (adaptive_loss, constraint_loss,  # noqa: F401
                                             full_adaptive_loss, margin_loss)
from reelgraph.models.base import GraphConfig, Recommender, bpr_loss, l2_loss, make_plan
from reelgraph.samplers.plans.a2bm2gl import (A2BM2GLBatch, A2BM2GLPlan, A2BM2GLStatic,
                                              ModalityGraph)


REC_NEGATIVES = ("sampled", "all")


@dataclass(frozen=True)
class A2BM2GLConfig(GraphConfig):
    """A²BM²GL: the :class:`GraphConfig` fields (``fanouts``: the collaborative propagation's;
    ``None`` trains on the whole graph) and its own below."""

    reg_weight: float = 1e-2            # lambda: L2 on the batch's ego embeddings (see module doc)
    knn_k: int = 10                     # neighbours per item in each modality's kNN graph
    num_heads: int = 4                  # perspectives of the weighted cosine (eq. 3)
    rwr_alpha: float = 0.85             # alpha: P(continue the walk); 1 - alpha restarts
    rwr_steps: int = 5                  # K transition steps summed into M (eq. 5)
    rwr_top_n: int = 16                 # full-adjacent neighbours kept per node
    rwr_chunk_elements: int = 1 << 23   # bound on a [nodes, seeds] RWR chunk (floats)
    margin: float = 1.0                 # m: least gap between upper and lower boundary
    margin_weight: float = 2.0          # delta (the paper's 0.5 under-constrains; see module doc)
    str_weight: float = 0.6             # beta: L_str
    sem_weight: float = 0.1             # gamma: L_sem
    anti_bottleneck: bool = True        # False: model-an
    adaptive_loss: bool = True          # False: model-al (BPR on the fused embeddings)
    str_loss: bool = True               # False: model-str (no L_str)
    semantic: bool = True               # False: no semantic module (and no L_sem)
    modalities: list[str] | None = None  # store modalities used; None: all
    boundary_fanout: int = 16           # sampled: train items per batch user for eq. 9's N(u)+
    boundary_items: int = 256           # sampled: uniform items estimating eq. 9's all-item sum
    rec_negatives: str = "sampled"      # eq. 8's N(u)-: "sampled" (the batch's negatives, the
    #                                     scalable estimate) or "all" (exact non-sampling loss,
    #                                     every non-interacted item; whole graph only)
    rec_neg_weight: float = 1.0         # "all": c0, eq. 7's uniform weight of each missing entry

    def __post_init__(self):
        super().__post_init__()
        if self.rec_negatives not in REC_NEGATIVES:
            raise ValueError(f"A2BM2GLConfig: rec_negatives={self.rec_negatives!r}; choose from "
                             f"{REC_NEGATIVES}")
        if self.rec_negatives == "all" and (self.fanouts is not None or not self.adaptive_loss):
            raise ValueError("A2BM2GLConfig: rec_negatives='all' reads every item's fused row and "
                             "is eq. 8's: it needs fanouts=None and adaptive_loss=True")
        if not self.rec_neg_weight >= 0:
            raise ValueError(f"A2BM2GLConfig: rec_neg_weight={self.rec_neg_weight} must be >= 0")
        for name in ("boundary_fanout", "boundary_items"):
            if getattr(self, name) == 0 or getattr(self, name) < -1:
                raise ValueError(f"A2BM2GLConfig: {name}={getattr(self, name)} must be >= 1 or -1")
        for name in ("knn_k", "num_heads", "rwr_steps", "rwr_top_n", "rwr_chunk_elements"):
            if not getattr(self, name) >= 1:
                raise ValueError(f"A2BM2GLConfig: {name}={getattr(self, name)} must be >= 1")
        if not 0 < self.rwr_alpha <= 1:
            raise ValueError(f"A2BM2GLConfig: rwr_alpha={self.rwr_alpha} must be in (0, 1]")

    def modality_names(self, store) -> list[str]:
        if not self.semantic:
            return []
        return list(store.modalities) if self.modalities is None else list(self.modalities)

    def build(self, store) -> "A2BM2GL":
        features = {m: store.feature(m).float() for m in self.modality_names(store)}
        return A2BM2GL(store.num_users, store.num_items, features, self)

    def plan(self) -> A2BM2GLPlan:
        modalities = () if not self.semantic else (
            None if self.modalities is None else tuple(self.modalities))
        return make_plan(self, A2BM2GLPlan, boundaries=self.adaptive_loss, modalities=modalities)


# -- pure pieces of the forward pass and the losses ------------------------------------------
def weighted_cosine(x: Tensor, heads: Tensor, row: Tensor, col: Tensor) -> Tensor:
    """Eq. 3 on edges: ``mean_p cos(w_p * x_row, w_p * x_col)``; ``heads [m, f]`` → ``[E]``."""
    z = F.normalize(x.unsqueeze(1) * heads, dim=2).flatten(1)               # [I, m * f]
    return (z[row] * z[col]).sum(-1) / heads.size(0)                         # [E]


def gcn_self_loop(h: Tensor, row: Tensor, col: Tensor, weight: Tensor, loop: Tensor) -> Tensor:
    """``D^-1/2 (A + loop I) D^-1/2 h`` with edge values ``weight [E]`` (eq. 4 before ReLU)."""
    deg = torch.zeros(h.size(0), device=h.device).index_add(0, row, weight) + loop  # [I]
    norm = deg.clamp(min=1e-12).rsqrt()
    msg = (norm[row] * weight * norm[col]).unsqueeze(1) * h[col]            # [E, d]
    return torch.zeros_like(h).index_add(0, row, msg) + (loop / deg.clamp(min=1e-12)).unsqueeze(1) * h


def attend_rows(h: Tensor, h_nbr: Tensor, mask: Tensor, att: Tensor) -> Tensor:
    """Eq. 6: ``sum_i softmax_i(LeakyReLU(a^T [h_v || h_i])) h_i`` for rows' own ``h [R, d]`` and
    their full-adjacent neighbours' ``h_nbr [R, n, d]`` (``mask [R, n]``: the real ones)."""
    d = h.size(1)
    logit = F.leaky_relu((h @ att[:d]).unsqueeze(1) + h_nbr @ att[d:], 0.2)  # [R, n]
    a = torch.softmax(logit.masked_fill(~mask, -1e9), dim=1) * mask          # no neighbour: 0
    return (a.unsqueeze(-1) * h_nbr).sum(1)


def gather(x: Tensor, rows: Tensor | None, ids: Tensor | None) -> Tensor:
    """The rows of global ``ids`` (any shape) in ``x``, whose rows are the sorted ids ``rows``
    (``None``: every id, in order); ``ids=None``: all of ``x``."""
    return x if ids is None else x[local_index(rows, ids)]


def _boundary_mlp(d: int) -> nn.Sequential:
    """Eq. 9's MLP: ``[E_u || mean E_v] [2d] -> d -> 1``."""
    return nn.Sequential(nn.Linear(2 * d, d), nn.LeakyReLU(0.2), nn.Linear(d, 1))


@dataclass(frozen=True)
class Rows:
    """A forward pass over some rows: ``cf [R, d]`` collaborative rows (of the batch's
    ``cf_rows``), fused ``user [b, d]``, ``item [n, d]`` (``fused_users``/``fused_items``) and
    per modality the semantic rows ``sem[j] [R_j, d]`` of the sorted ids ``sem_rows[j]``
    (``None`` everywhere: every row)."""
    cf: Tensor
    user: Tensor
    item: Tensor
    sem: list[Tensor]
    sem_rows: list[Tensor | None]


class A2BM2GL(Recommender):
    """A²BM²GL over ``num_users`` x ``num_items`` with item ``features {modality: [I, f]}``.

    Features are stored with unit rows (``feature(j) [I, f]``): their scale does not matter.

    Runs without features (collaborative + anti-bottleneck + adaptive loss only). ``embed``
    returns the fused ``(E_u [U, d], E_v [I, d])`` the loss scores by inner product.
    """

    def __init__(self, num_users: int, num_items: int, features: dict[str, Tensor] | None = None,
                 config: A2BM2GLConfig | None = None):
        super().__init__()
        self.config = config = config or A2BM2GLConfig()
        self.num_users, self.num_items, d = num_users, num_items, config.embedding_dim
        features = features or {}
        self.modality_names = list(features)
        for j, (m, x) in enumerate(features.items()):
            if x.dim() != 2 or x.size(0) != num_items:
                raise ValueError(f"feature '{m}' has shape {tuple(x.shape)}; need [{num_items}, f]")
            x = F.normalize(x.float(), dim=1)                                # unit rows (see above)
            self.register_buffer(f"feature_{j}", x, persistent=False)      # data, not state
        self.embedding = nn.Embedding(num_users + num_items, d)               # users first
        self.heads = nn.ParameterList(
            [nn.Parameter(torch.empty(config.num_heads, x.size(1))) for x in features.values()])
        self.encoders = nn.ModuleList([nn.Linear(x.size(1), d, bias=False) for x in features.values()])
        self.loop_weight = nn.Parameter(torch.empty(len(features)))            # softplus -> w
        num_att = (1 + len(features)) if config.anti_bottleneck else 0
        self.attention = nn.Parameter(torch.empty(num_att, 2 * d))             # a of eq. 6
        self.upper = _boundary_mlp(d) if config.adaptive_loss else None
        self.lower = _boundary_mlp(d) if config.adaptive_loss else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.embedding.weight, std=self.config.init_std)
        for w in self.heads:
            nn.init.ones_(w)  # plain cosine at start: the metric the kNN edges were chosen by
        for enc in self.encoders:
            nn.init.xavier_uniform_(enc.weight)
        nn.init.constant_(self.loop_weight, 0.5413)  # softplus(0.5413) = 1: a plain self-loop
        if self.attention.numel():
            nn.init.xavier_uniform_(self.attention, gain=1.414)
        for mlp in (self.upper, self.lower):
            for layer in mlp or ():
                if isinstance(layer, nn.Linear):
                    layer.reset_parameters()

    def extra_repr(self) -> str:
        c = self.config
        return (f"users={self.num_users}, items={self.num_items}, d={c.embedding_dim}, "
                f"modalities={self.modality_names}, anti_bottleneck={c.anti_bottleneck}, "
                f"adaptive_loss={c.adaptive_loss}, str_loss={c.str_loss}")

    def feature(self, j: int) -> Tensor:
        return getattr(self, f"feature_{j}")

    # -- the three modules -----------------------------------------------------------------
    def collaborative(self, graph: Subgraph | FullGraph, deg: Tensor) -> Tensor:
        """Eq. 1's mean of layers ``0..L`` for the seeds of ``graph`` ``[S, d]``: its edges carry
        ``1 / sqrt((d_v + 1)(d_u + 1))`` (sampled: times the inverse chance of keeping them) and
        each layer adds the exact self-loop term ``h_v / (d_v + 1)`` (``deg [U + I]``)."""
        loop = (node_rows(graph.node, deg.unsqueeze(1)).float() + 1).reciprocal()  # [N, 1]

        def layer(_: int, side: Tensor, h: Tensor) -> Tensor:
            return side + loop[: side.size(0)] * h

        x0 = node_rows(graph.node, self.embedding.weight, sparse=self.embedding.sparse)
        layers = propagate(graph, x0,
                           self.config.num_layers, layer)
        return torch.stack(layers).mean(0)

    def _semantic(self, j: int, g: ModalityGraph) -> Tensor:
        """Eq. 3-4: ``ReLU(GCN(X W))`` over the learned-weight kNN graph, ``[I, d]``."""
        x = self.feature(j)
        weight = F.relu(weighted_cosine(x, self.heads[j], g.row, g.col))      # [E]
        loop = F.softplus(self.loop_weight[j])
        return F.relu(gcn_self_loop(self.encoders[j](x), g.row, g.col, weight, loop))

    def semantic_rows(self, j: int, g: ModalityGraph, rows: Tensor | None) -> Tensor:
        """Rows ``[R, d]`` of :meth:`_semantic` for sorted unique items ``rows [R]`` (``None``:
        all), exactly: they read their kNN neighbours' ``X W`` and, for the degrees, those
        neighbours' edges."""
        if rows is None:
            return self._semantic(j, g)
        x, heads = self.feature(j), self.heads[j]
        e1 = expand_rows(g.rowptr, rows)[1]                                  # rows' edges
        nodes = torch.unique(torch.cat([rows, g.col[e1]]))                   # rows + neighbours
        e2 = expand_rows(g.rowptr, nodes)[1]                                 # their edges
        ends = torch.unique(torch.cat([nodes, g.col[e2]]))
        z = F.normalize(x[ends].unsqueeze(1) * heads, dim=2).flatten(1)      # eq. 3's unit rows
        at_end = lambda i: torch.searchsorted(ends, i)  # noqa: E731 (sorted ids)
        at_node = lambda i: torch.searchsorted(nodes, i)  # noqa: E731
        cos = lambda e: (z[at_end(g.row[e])] * z[at_end(g.col[e])]).sum(-1) / heads.size(0)  # noqa
        loop = F.softplus(self.loop_weight[j])
        deg = torch.zeros(nodes.numel(), device=x.device).index_add(
            0, at_node(g.row[e2]), F.relu(cos(e2))) + loop                   # [n]
        norm = deg.clamp(min=1e-12).rsqrt()
        h = self.encoders[j](x[nodes])                                       # [n, d]
        r, c = at_node(g.row[e1]), at_node(g.col[e1])
        msg = (norm[r] * F.relu(cos(e1)) * norm[c]).unsqueeze(1) * h[c]
        own = at_node(rows)
        out = torch.zeros(rows.numel(), h.size(1), device=x.device).index_add(
            0, torch.searchsorted(rows, g.row[e1]), msg)
        return F.relu(out + (loop / deg[own].clamp(min=1e-12)).unsqueeze(1) * h[own])

    def _modalities(self, static: A2BM2GLStatic) -> tuple[ModalityGraph, ...]:
        if tuple(static.modality_names) != tuple(self.modality_names):
            raise ValueError(f"A2BM2GL: the plan's kNN graphs are of {static.modality_names}, "
                             f"the model's features of {self.modality_names}")
        return static.modalities

    def forward(self, static: A2BM2GLStatic, graph: Subgraph | FullGraph, cf_rows: Tensor | None,
                users: Tensor | None, items: Tensor | None, sem_rows: list[Tensor | None]) -> Rows:
        """Collaborative rows of ``cf_rows`` over ``graph`` (its seeds), fused rows of sorted
        ``users``/``items`` and semantic rows of ``sem_rows`` per modality (``None``: all)."""
        cf = self.collaborative(graph, static.deg)                            # [R, d]
        fused = None if items is None else torch.cat([users, items + self.num_users])
        emb = gather(cf, cf_rows, fused)                                      # [F, d]
        if self.config.anti_bottleneck:
            emb = emb + attend_rows(emb, gather(cf, cf_rows, node_rows(fused, static.rwr.index)),
                                    node_rows(fused, static.rwr.mask), self.attention[0])
        n_user = self.num_users if users is None else users.numel()
        user, item = emb[:n_user], emb[n_user:]
        sem, own = [], []
        for j, (g, rows) in enumerate(zip(self._modalities(static), sem_rows)):
            sem.append(self.semantic_rows(j, g, rows))                       # [R_j, d]
            own.append(gather(sem[-1], rows, items))                         # [n, d]
            if self.config.anti_bottleneck:
                nbr = gather(sem[-1], rows, node_rows(items, g.rwr.index))   # [n, top_n, d]
                item = item + attend_rows(own[-1], nbr, node_rows(items, g.rwr.mask),
                                          self.attention[j + 1])
        for h in own:
            item = item + h
        return Rows(cf, user, item, sem, list(sem_rows))

    def embed(self, static: A2BM2GLStatic) -> tuple[Tensor, Tensor]:
        """Fused ``(user [U, d], item [I, d])`` of the whole graph (the sampled plan's static:
        evaluation only, no gradients)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and static.graph.adj is not None):
            out = self(static, static.graph, None, None, None, [None] * len(static.modalities))
        return out.user, out.item

    # -- loss ------------------------------------------------------------------------------
    def _sem_rows_needed(self, g: ModalityGraph, batch: A2BM2GLBatch) -> Tensor | None:
        """Semantic rows a batch reads: its fused items, their full-adjacent neighbours and the
        positives' kNN lists (L_sem); ``None`` (every item) when every item is fused."""
        if batch.fused_items is None:
            return None
        parts = [batch.fused_items, g.knn[batch.pos].flatten()]
        if self.config.anti_bottleneck:
            parts.append(g.rwr.index[batch.fused_items].flatten())
        return torch.unique(torch.cat(parts))

    def boundaries(self, batch: A2BM2GLBatch, out: Rows) -> tuple[Tensor, Tensor]:
        """Eq. 9 per triple: ``B_up``, ``B_low [B]`` (:meth:`user_boundaries` of its user)."""
        upper, lower = self.user_boundaries(batch, out)
        inv = torch.searchsorted(batch.bounds.users, batch.users)
        return upper[inv], lower[inv]

    def user_boundaries(self, batch: A2BM2GLBatch, out: Rows) -> tuple[Tensor, Tensor]:
        """Eq. 9 per unique batch user (``batch.bounds.users``): ``B_up``, ``B_low [b]`` from
        ``E_u`` and the mean ``E_v`` over N(u)+ and N(u)-, from the batch's draws
        (:class:`BoundaryDraws`)."""
        d, I = batch.bounds, self.num_items
        item = lambda ids: gather(out.item, batch.fused_items, ids)  # noqa: E731
        pos_mean = weighted_sum(d.index, d.weight, item(d.item), d.users.numel())  # [b, d]
        count = batch.static.deg[d.users].float().unsqueeze(1)                      # |N(u)+|
        scale = 1.0 if d.items is None else I / d.items.numel()
        neg_mean = (item(d.items).sum(0) * scale - pos_mean * count) / (I - count).clamp(min=1)
        e_u = gather(out.user, batch.fused_users, d.users)
        upper = self.upper(torch.cat([e_u, pos_mean], 1)).squeeze(1)
        lower = self.lower(torch.cat([e_u, neg_mean], 1)).squeeze(1)
        return upper, lower

    def full_rec_loss(self, batch: A2BM2GLBatch, out: Rows, upper: Tensor, lower: Tensor
                      ) -> Tensor:
        """Eq. 8 exact (:func:`full_adaptive_loss`) for the batch's users, ``upper``/``lower
        [b]`` per unique user: ``mean_t l(u_t) / deg(u_t)`` over the triples. Triples are train
        edges drawn uniformly, so user ``u`` appears ``deg(u)`` times per epoch and this is an
        unbiased estimate of ``sum_u l(u) / |E|`` (eq. 8's sum over users, scaled by 1 / |E|).
        Needs the whole graph: every fused item and, in ``batch.bounds``, every train item of
        each user (eq. 9's exact draws)."""
        d = batch.bounds
        if batch.fused_items is not None or d.items is not None:
            raise ValueError("A2BM2GL: rec_negatives='all' needs the whole-graph plan "
                             "(fanouts=None)")
        e_u = gather(out.user, batch.fused_users, d.users)                   # [b, d]
        loss = full_adaptive_loss(e_u, out.item, d.index, d.item, upper, lower,
                                  neg_weight=self.config.rec_neg_weight,
                                  chunk_size=self.config.chunk_size)         # [b]
        per_edge = loss / batch.static.deg[d.users].float().clamp(min=1)
        return per_edge[torch.searchsorted(d.users, batch.users)].mean()

    def _str_loss(self, batch: A2BM2GLBatch, out: Rows) -> Tensor:
        """L_str on the collaborative rows of the batch's triples."""
        U = self.num_users
        u = gather(out.cf, batch.cf_rows, batch.users)                        # [B, d]
        pos = (u * gather(out.cf, batch.cf_rows, U + batch.pos)).sum(-1)
        neg = torch.einsum("bd,bkd->bk", u, gather(out.cf, batch.cf_rows, U + batch.neg))
        return constraint_loss(pos, neg, batch.str_beta)

    def _sem_loss(self, batch: A2BM2GLBatch, out: Rows) -> Tensor:
        """L_sem summed over modalities: each positive against its kNN list and the negatives."""
        total = torch.zeros((), device=batch.device)
        for g, h, rows in zip(batch.static.modalities, out.sem, out.sem_rows):
            anchor = gather(h, rows, batch.pos)                               # [B, d]
            pos = torch.einsum("bd,bkd->bk", anchor, gather(h, rows, g.knn[batch.pos]))
            neg = torch.einsum("bd,bkd->bk", anchor, gather(h, rows, batch.neg))
            total = total + constraint_loss(pos, neg, g.beta[batch.pos])
        return total

    def loss(self, batch: A2BM2GLBatch) -> dict[str, Tensor]:
        """Eq. 10 on the batch's rows: ``loss`` and each term (``rec``, ``margin`` or ``bpr``;
        ``str``, ``sem`` when on; ``l2``)."""
        c, static = self.config, batch.static
        sem_rows = [self._sem_rows_needed(g, batch) for g in self._modalities(static)]
        out = self(static, batch.graph, batch.cf_rows, batch.fused_users, batch.fused_items,
                   sem_rows)
        u = gather(out.user, batch.fused_users, batch.users)                  # [B, d]
        pos = (u * gather(out.item, batch.fused_items, batch.pos)).sum(-1)    # [B]
        neg = torch.einsum("bd,bkd->bk", u, gather(out.item, batch.fused_items, batch.neg))
        terms: dict[str, Tensor] = {}
        if c.adaptive_loss and c.rec_negatives == "all":
            upper, lower = self.user_boundaries(batch, out)                   # [b]
            terms["rec"] = self.full_rec_loss(batch, out, upper, lower)
            inv = torch.searchsorted(batch.bounds.users, batch.users)
            terms["margin"] = margin_loss(upper[inv], lower[inv], c.margin)
            total = terms["rec"] + c.margin_weight * terms["margin"]
        elif c.adaptive_loss:
            terms["rec"], terms["margin"] = adaptive_loss(pos, neg, *self.boundaries(batch, out),
                                                          c.margin)
            total = terms["rec"] + c.margin_weight * terms["margin"]
        else:
            total = terms["bpr"] = bpr_loss(pos, neg)
        if c.str_loss:
            terms["str"] = self._str_loss(batch, out)
            total = total + c.str_weight * terms["str"]
        if out.sem:
            terms["sem"] = self._sem_loss(batch, out)
            total = total + c.sem_weight * terms["sem"]
        w, U = self.embedding.weight, self.num_users
        terms["l2"] = l2_loss(w[batch.users], w[U + batch.pos], w[U + batch.neg]) / len(batch)
        return {"loss": total + c.reg_weight * terms["l2"], **terms}
