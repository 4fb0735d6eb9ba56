"""A²BM²GL (Cai et al., ACM MM 2022): adaptive anti-bottleneck multi-modal graph learning.

Three representation modules, summed (paper §3.6.1), scored by inner product:

- collaborative: LightGCN propagation over the bipartite graph with (d+1) self-loops,
  ``D~^-1/2 (A + I) D~^-1/2`` with ``D~ = D + I`` (eq. 1), mean of layers ``0..L``;
- semantic (items only, one per modality): a kNN item graph whose edge weights are a multi-head
  learnable weighted cosine (eq. 3), encoded by one GCN layer with a learnable self-loop weight,
  ``ReLU(D^-1/2 (A + wI) D^-1/2 X W)`` (eq. 4);
- anti-bottleneck: random surfing with restart (eq. 5) gives each node a "full-adjacent"
  neighbourhood of short- and long-range nodes, aggregated by GAT-style attention (eq. 6,
  :mod:`reelgraph.models.a2bm2gl_attention`), once over the user–item graph (on the collaborative
  output) and once per modality kNN graph.

Loss (eq. 10): ``rec_loss`` + δ·margin (adaptive only) + β·L_str (UltraGCN constraint on the
collaborative output, eq. 2) + γ·L_sem (the same on each kNN graph) + λ·L2 on the batch's ego
embeddings. ``rec_loss`` (the paper's Table 4; :mod:`reelgraph.models.a2bm2gl_losses`):
``"adaptive"`` (eq. 8 with eq. 9's per-user MLP boundaries, "our loss"), ``"wr"`` (eq. 7's
weighted regression on ``σ(s)``), ``"bpr"``, ``"infobpr"`` (BPR over the batch's ``k`` negatives
as one softmax). δ, β, γ default to the paper's 0.5, 0.6, 0.1 (§4.3).

Ablations, named as the paper's §4.5.1 names them (``benchmarks/multimodal_models.py``):
model-an ``anti_bottleneck=False``; model-al ``rec_loss="bpr"``; model-str ``semantic=False`` (no
semantic module, hence no L_sem). Ours: no-lstr ``str_loss=False`` (drops the L_str term only).

Where the paper is vague (each choice is ours):

- Eq. 7 and 8 are non-sampling: ``rec_negatives="all"`` computes them exactly (every
  non-interacted item; :func:`full_adaptive_loss`, :func:`full_wr_loss`; whole graph only). The
  default ``"sampled"`` is the scalable estimate: the batch's positives and sampled negatives,
  each part a mean, unbiased for a per-user ``c0 = deg(u) / |N(u)-|`` rather than eq. 7's uniform
  one (:mod:`reelgraph.models.a2bm2gl_losses`). Eq. 9's sums over N(u)+ / N(u)- are means (sums
  scale with degree and catalogue size). Eq. 7's ``c_uv``: ``c+ = rec_pos_weight`` on every
  interacted entry, ``c0 = rec_neg_weight`` on every missing one (both 1: the paper gives none).
- The margin term is written ``-max{m - (B_up - B_low), 0}``; minimising that would widen the
  violation, so we minimise the hinge ``max{m - (B_up - B_low), 0}``, which keeps ``B_up - B_low
  >= m`` (its stated intent; :func:`margin_loss`).
- δ defaults to the paper's 0.5; ``margin_weight=2.0`` (this repo's earlier default) stays an
  option, as neither wins everywhere (λ 1e-2, 15 epochs, Recall@20): on the tests' planted
  world (d=32, seeds 0-2) δ=2 0.266 vs δ=0.5 0.239; on ml-100k (no features, d=64, seed 0)
  0.305 vs 0.334.
- L_str / L_sem: eq. 2 has positives only, which inflating every score minimises; as in UltraGCN
  we add the sampled negatives' ``-log σ(-s)``. Positive weights β are eq. 2's, rescaled to mean 1
  over the graph's edges so the paper's β=0.6, γ=0.1 are not swamped by ~1/degree weights.
- kNN edges are chosen once (by the plan, from the store's features) by plain cosine (the heads'
  initial value) and symmetrised; their weights (ReLU of the multi-head weighted cosine) are
  recomputed every step, so the metric is learned through them (as LATTICE / IDGL do) without an
  ``I x I`` matrix.
- Eq. 5: ``A_k = α A_{k-1} T + (1 - α) I``, ``M = sum_{k=1..K} A_k``. The paper calls ``T`` "a
  direct user-video transition matrix" and prints the 0/1 block adjacency: ``rwr_transition=
  "binary"`` (default) is that; ``"random_walk"`` is ``D^-1 A`` (DNGR's transition matrix, this
  repo's earlier choice). Binary walk counts favour hubs: on the planted world the user–item lists
  hold 50 distinct nodes for 1,000 rows (random walk: 961) and the attention's output rows have
  cosine 0.80 with their mean (random walk: 0.49), yet Recall@20 is higher (seeds 0-2: 0.239 vs
  0.203; ml-100k 0.334 vs 0.327). K defaults to 9 (Fig. 4: results rise from 3 to 9 "layers" of
  the anti-bottleneck input, then stay flat; we read that k as eq. 5's steps); α (no value in the
  paper) to 0.85. Each node keeps its top-n other nodes (self excluded: it is already in the sum)
  and their entries of ``M``, normalised, as the attention's prior (``attention_prior``).
- Eq. 6's logits read unit-scale rows (``attention_inputs="unit"``; ``"raw"``: the raw rows, as
  printed, whose softmax stayed uniform: :mod:`reelgraph.models.a2bm2gl_attention`).
- Users have collaborative and anti-bottleneck parts only; items add every semantic part.
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
``chunk_size`` rows at a time); eq. 6 never builds ``[N, n, d]`` (``a2bm2gl_attention.attend``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reelgraph.graph import FullGraph, Subgraph, local_index, node_rows, propagate, weighted_sum
from reelgraph.models.a2bm2gl_attention import ATTENTION_INPUTS, attend
from reelgraph.models.a2bm2gl_losses import (adaptive_loss, constraint_loss,  # noqa: F401
                                             full_adaptive_loss, full_wr_loss, info_bpr_loss,
                                             margin_loss, wr_loss)
from reelgraph.models.a2bm2gl_semantic import semantic_rows
from reelgraph.models.base import (GraphConfig, Recommender, bpr_loss, init_tables_, l2_loss,
                                   make_plan)
from reelgraph.samplers.plans.a2bm2gl import (RWR_TRANSITIONS, A2BM2GLBatch, A2BM2GLPlan,
                                              A2BM2GLStatic, ModalityGraph)


REC_LOSSES = ("adaptive", "wr", "bpr", "infobpr")
REC_NEGATIVES = ("sampled", "all")


@dataclass(frozen=True)
class A2BM2GLConfig(GraphConfig):
    """A²BM²GL: the :class:`GraphConfig` fields (``fanouts``: the collaborative propagation's;
    ``None`` trains on the whole graph) and its own below."""

    reg_weight: float = 1e-2            # lambda: L2 on the batch's ego embeddings (see module doc)
    knn_k: int = 10                     # neighbours per item in each modality's kNN graph
    num_heads: int = 4                  # perspectives of the weighted cosine (eq. 3)
    rwr_alpha: float = 0.85             # alpha: P(continue the walk); 1 - alpha restarts
    rwr_steps: int = 9                  # K transition steps summed into M (eq. 5; Fig. 4's best)
    rwr_top_n: int = 16                 # full-adjacent neighbours kept per node
    rwr_transition: Literal["binary", "random_walk"] = "binary"  # eq. 5's T: 0/1 adjacency as
    #                                     printed, or the row-stochastic D^-1 A
    rwr_chunk_elements: int = 1 << 23   # bound on a [nodes, seeds] RWR chunk (floats)
    attention_prior: bool = True        # eq. 6 logits + log of the kept surfing probabilities
    attention_inputs: Literal["unit", "raw"] = "unit"  # logits of unit-scale rows, or raw rows
    margin: float = 1.0                 # m: least gap between upper and lower boundary
    margin_weight: float = 0.5          # delta (the paper's; 2.0: see module doc)
    str_weight: float = 0.6             # beta: L_str
    sem_weight: float = 0.1             # gamma: L_sem
    anti_bottleneck: bool = True        # False: model-an
    rec_loss: Literal["adaptive", "wr", "bpr", "infobpr"] = "adaptive"  # Table 4; "bpr": model-al
    str_loss: bool = True               # False: no-lstr (no L_str; not a paper ablation)
    semantic: bool = True               # False: model-str (no semantic module, no L_sem)
    modalities: list[str] | None = None  # store modalities used; None: all
    boundary_fanout: int = 16           # sampled: train items per batch user for eq. 9's N(u)+
    boundary_items: int = 256           # sampled: uniform items estimating eq. 9's all-item sum
    rec_negatives: str = "sampled"      # N(u)- of eq. 7/8: "sampled" (the batch's negatives, the
    #                                     scalable estimate) or "all" (exact non-sampling loss,
    #                                     every non-interacted item; whole graph only)
    rec_pos_weight: float = 1.0         # c+: eq. 7's weight of each interacted entry (adaptive, wr)
    rec_neg_weight: float = 1.0         # c0: eq. 7's uniform weight of each missing entry

    def __post_init__(self):
        super().__post_init__()
        for name, value, options in (("rec_loss", self.rec_loss, REC_LOSSES),
                                     ("rec_negatives", self.rec_negatives, REC_NEGATIVES),
                                     ("rwr_transition", self.rwr_transition, RWR_TRANSITIONS),
                                     ("attention_inputs", self.attention_inputs, ATTENTION_INPUTS)):
            if value not in options:
                raise ValueError(f"A2BM2GLConfig: {name}={value!r}; choose from {options}")
        if self.rec_negatives == "all" and (self.fanouts is not None or
                                            self.rec_loss not in ("adaptive", "wr")):
            raise ValueError("A2BM2GLConfig: rec_negatives='all' reads every item's fused row and "
                             "is eq. 7/8's: it needs fanouts=None and rec_loss 'adaptive' or 'wr'")
        for name in ("rec_pos_weight", "rec_neg_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"A2BM2GLConfig: {name}={getattr(self, name)} must be >= 0")
        for name in ("boundary_fanout", "boundary_items"):
            if getattr(self, name) == 0 or getattr(self, name) < -1:
                raise ValueError(f"A2BM2GLConfig: {name}={getattr(self, name)} must be >= 1 or -1")
        for name in ("knn_k", "num_heads", "rwr_steps", "rwr_top_n", "rwr_chunk_elements"):
            if not getattr(self, name) >= 1:
                raise ValueError(f"A2BM2GLConfig: {name}={getattr(self, name)} must be >= 1")
        if not 0 < self.rwr_alpha <= 1:
            raise ValueError(f"A2BM2GLConfig: rwr_alpha={self.rwr_alpha} must be in (0, 1]")

    @property
    def adaptive(self) -> bool:
        """Eq. 8's loss, with eq. 9's boundary MLPs and draws."""
        return self.rec_loss == "adaptive"

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
        # eq. 9's draws hold each batch user's train items: the exact losses read them too
        boundaries = self.adaptive or self.rec_negatives == "all"
        return make_plan(self, A2BM2GLPlan, boundaries=boundaries, modalities=modalities)


# -- pure pieces of the forward pass and the losses ------------------------------------------
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
        self.encoders = nn.ModuleList([nn.Linear(x.size(1), d, bias=False)
                                       for x in features.values()])
        self.loop_weight = nn.Parameter(torch.empty(len(features)))            # softplus -> w
        num_att = (1 + len(features)) if config.anti_bottleneck else 0
        self.attention = nn.Parameter(torch.empty(num_att, 2 * d))             # a of eq. 6
        self.upper = _boundary_mlp(d) if config.adaptive else None
        self.lower = _boundary_mlp(d) if config.adaptive else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        w = self.embedding.weight
        init_tables_(self.config, w[: self.num_users], w[self.num_users:])
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
                f"rec_loss={c.rec_loss}, str_loss={c.str_loss}")

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

    def semantic_rows(self, j: int, g: ModalityGraph, rows: Tensor | None) -> Tensor:
        """Eq. 3-4 of modality ``j``: rows ``[R, d]`` of sorted unique items ``rows [R]``
        (``None``: all; :func:`~reelgraph.models.a2bm2gl_semantic.semantic_rows`)."""
        return semantic_rows(self.feature(j), self.heads[j], self.encoders[j],
                             F.softplus(self.loop_weight[j]), g.row, g.col, g.rowptr, rows)

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
            emb = emb + self._attend(0, emb, cf, cf_rows, static.rwr, fused)
        n_user = self.num_users if users is None else users.numel()
        user, item = emb[:n_user], emb[n_user:]
        sem, own = [], []
        for j, (g, rows) in enumerate(zip(self._modalities(static), sem_rows)):
            sem.append(self.semantic_rows(j, g, rows))                       # [R_j, d]
            own.append(gather(sem[-1], rows, items))                         # [n, d]
            if self.config.anti_bottleneck:
                item = item + self._attend(j + 1, own[-1], sem[-1], rows, g.rwr, items)
        for h in own:
            item = item + h
        return Rows(cf, user, item, sem, list(sem_rows))

    def _attend(self, j: int, h: Tensor, x: Tensor, x_rows: Tensor | None, layer,
                ids: Tensor | None) -> Tensor:
        """Eq. 6 with attention vector ``j`` over the full-adjacent ``layer`` (a
        :class:`Neighbourhood`) for the rows ``ids`` (``None``: all) of ``h [R, d]``, the
        neighbours read from ``x``, whose rows are the sorted ids ``x_rows`` (``None``: all)."""
        c = self.config
        prior = node_rows(ids, layer.prior) if c.attention_prior else None
        index = local_index(x_rows, node_rows(ids, layer.index))                 # [R, top_n]
        return attend(h, x, index, node_rows(ids, layer.mask), self.attention[j], prior,
                      unit_inputs=c.attention_inputs == "unit")

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

    def full_rec_loss(self, batch: A2BM2GLBatch, out: Rows, upper: Tensor | None = None,
                      lower: Tensor | None = None) -> Tensor:
        """Eq. 8 (``upper``/``lower [b]`` per unique user: :func:`full_adaptive_loss`) or, without
        them, eq. 7 (:func:`full_wr_loss`) exact for the batch's users: ``mean_t l(u_t) /
        deg(u_t)`` over the triples. Triples are train edges drawn uniformly, so user ``u``
        appears ``deg(u)`` times per epoch and this is an unbiased estimate of ``sum_u l(u) /
        |E|`` (the sum over users, scaled by 1 / |E|). Needs the whole graph: every fused item
        and, in ``batch.bounds``, every train item of each user (eq. 9's exact draws)."""
        c, d = self.config, batch.bounds
        if batch.fused_items is not None or d is None or d.items is not None:
            raise ValueError("A2BM2GL: rec_negatives='all' needs the whole-graph plan "
                             "(fanouts=None)")
        e_u = gather(out.user, batch.fused_users, d.users)                   # [b, d]
        weights = dict(pos_weight=c.rec_pos_weight, neg_weight=c.rec_neg_weight)
        if upper is None:
            loss = full_wr_loss(e_u, out.item, d.index, d.item, **weights)    # [b]
        else:
            loss = full_adaptive_loss(e_u, out.item, d.index, d.item, upper, lower, **weights,
                                      chunk_size=c.chunk_size)               # [b]
        per_edge = loss / batch.static.deg[d.users].float().clamp(min=1)
        return per_edge[torch.searchsorted(d.users, batch.users)].mean()

    def rec_terms(self, batch: A2BM2GLBatch, out: Rows, pos: Tensor, neg: Tensor
                  ) -> tuple[dict[str, Tensor], Tensor]:
        """The recommendation loss ``rec_loss`` on the triples' scores ``pos [B]``, ``neg [B,
        k]``: its terms (``rec`` and ``margin``, ``wr``, ``bpr`` or ``infobpr``) and their
        weighted sum."""
        c = self.config
        weights = (c.rec_pos_weight, c.rec_neg_weight)
        if c.rec_loss == "bpr":
            terms = {"bpr": bpr_loss(pos, neg)}
        elif c.rec_loss == "infobpr":
            terms = {"infobpr": info_bpr_loss(pos, neg)}
        elif c.rec_loss == "wr":
            terms = {"wr": self.full_rec_loss(batch, out) if c.rec_negatives == "all"
                     else wr_loss(pos, neg, *weights)}
        elif c.rec_negatives == "all":
            upper, lower = self.user_boundaries(batch, out)                   # [b]
            inv = torch.searchsorted(batch.bounds.users, batch.users)
            terms = {"rec": self.full_rec_loss(batch, out, upper, lower),
                     "margin": margin_loss(upper[inv], lower[inv], c.margin)}
        else:
            rec, margin = adaptive_loss(pos, neg, *self.boundaries(batch, out), c.margin, *weights)
            terms = {"rec": rec, "margin": margin}
        if "margin" in terms:
            return terms, terms["rec"] + c.margin_weight * terms["margin"]
        (total,) = terms.values()
        return terms, total

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
        """Eq. 10 on the batch's rows: ``loss`` and each term (:meth:`rec_terms`; ``str``,
        ``sem`` when on; ``l2``)."""
        c, static = self.config, batch.static
        sem_rows = [self._sem_rows_needed(g, batch) for g in self._modalities(static)]
        out = self(static, batch.graph, batch.cf_rows, batch.fused_users, batch.fused_items,
                   sem_rows)
        u = gather(out.user, batch.fused_users, batch.users)                  # [B, d]
        pos = (u * gather(out.item, batch.fused_items, batch.pos)).sum(-1)    # [B]
        neg = torch.einsum("bd,bkd->bk", u, gather(out.item, batch.fused_items, batch.neg))
        terms, total = self.rec_terms(batch, out, pos, neg)
        if c.str_loss:
            terms["str"] = self._str_loss(batch, out)
            total = total + c.str_weight * terms["str"]
        if out.sem:
            terms["sem"] = self._sem_loss(batch, out)
            total = total + c.sem_weight * terms["sem"]
        w, U = self.embedding.weight, self.num_users
        terms["l2"] = l2_loss(w[batch.users], w[U + batch.pos], w[U + batch.neg]) / len(batch)
        return {"loss": total + c.reg_weight * terms["l2"], **terms}
