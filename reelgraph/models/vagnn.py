"""VA-GNN (Lai et al., 2023): vlogger-augmented GNN over the user–video–vlogger graph.

In the store's vocabulary a vlogger is a ``creator`` and a video an ``item``. Two LightGCN-style
views share the layer-0 tables ``e_u``, ``e_v``, ``e_p``:

* video view (eqs 1–5): propagation over users + videos whose edges are the training
  interactions plus the endpoints of user–vlogger–user and user–vlogger–video meta-path walks
  (``samplers.metapath``); a vlogger's embedding is the mean of its videos' (eq 4).
* vlogger view (eqs 6–10): propagation over users + vloggers whose edges are the follows plus
  the endpoints ``(u', p)`` of vlogger–user–video–user walks ``p - u - v - u'``; a video's
  embedding is the mean over ``U_v`` (eq 9): its training users and the start users of the
  user–vlogger–video meta-paths that reached it.

Final embeddings concatenate the views (``2d``). A video ``v`` with vlogger embedding ``e_p(v)``
is scored ``y_uv = w_v e_u.e_v + (1 - w_v) e_u.e_p(v)``, ``w_v = sigmoid(e_v^T Q e_p(v))`` (eqs 16–17;
scaled, see below).
``w_v`` depends on the video alone, so :meth:`VAGNN.embed` returns ``e_u`` and the item vector
``w_v e_v + (1 - w_v) e_p(v)``, whose inner product is exactly ``y_uv``. The loss is
``L_video + lambda1 L_vlogger + lambda2 L_cl + lambda3 L2`` (eq 20) with BPR for both
recommendation tasks and cross-view InfoNCE (cosine, ``tau``) over users, videos and vloggers.

Choices where the paper is vague:

* Eq 3 writes ``e_v,1^(0) = e_p``; read as the typo it is: a video starts from ``e_v``.
* Meta-path endpoints become extra (deduplicated, unweighted) edges of the view's graph, as eqs 1, 2
  and 7 define the neighbour sets; user–user endpoints are user–user edges of the video view. The
  walks are drawn once by the plan from ``walk_seed`` (the reference code also draws them
  once; :mod:`reelgraph.samplers.plans.vagnn`). ``q1``/``q2`` are the paper's (§4.2): the
  user → vlogger step happens with probability ``q1``, then the meta-path ends at another
  follower (``q2``) or at one of the vlogger's videos (``1 − q2``), one endpoint per walk. The
  paper reports no values for them: 0.5 each is our default (untuned), so half the walks reach a
  vlogger and those split evenly between the two meta-paths. ``num_walks`` walks per user;
  ``walk_length`` chains meta-paths (1, the default, is the paper's).
* Sums over layers ``0..L`` are means over ``L + 1`` layers (LightGCN's propagation).
* The gate's bilinear form is scaled by ``1 / sqrt(kd)`` (as scaled dot-product attention). The
  paper has no scale; without it vlogger embeddings grow under ``lambda1 = 5`` and the gate
  saturated within one epoch on the synthetic world (median ``w`` 0.05, then 0.000: every video
  of a vlogger scored alike), and validation Recall@20 fell from 0.100 to 0.086 over 4 epochs;
  scaled, ``w`` stays spread (median 0.69 at epoch 4) and it rose to 0.200.
* Several vloggers per video (real data): ``e_p(v)`` is their mean; a video without a vlogger is
  scored ``e_u.e_v`` alone (``w_v = 1``).
* Follows (``user_creator``) are unioned with pairs where the user has at least
  ``follow_min_views`` training interactions with the vlogger's videos (the paper's "interacts with
  more than two micro-videos published by the vlogger"); without follows in the store these
  derived pairs are the whole user–vlogger graph.
* The loader's triples are user–video only, so the plan also draws, for each batch row whose user
  follows any vlogger, one followed vlogger and a uniform non-followed negative (from the
  batch's generator, like every other draw).
* InfoNCE runs over the batch's unique users, positive videos and vloggers (positive vloggers and
  the positive videos' vloggers) with in-batch negatives, not over all nodes (eqs 11–13), as the
  reference code does; its projection heads are left out (the paper has none). L2 is on the
  batch's layer-0 rows; ``Q`` is not regularised (reference code).

One loss path for both training modes: the batch (:class:`~reelgraph.samplers.plans.vagnn.VAGNNBatch`)
carries the rows the loss reads (the batch's unique users and videos, the vloggers it needs),
each view's graph (the whole one, ``fanouts=None``, or a sampled ``L``-hop neighbourhood,
``fanouts``; see :mod:`reelgraph.samplers.plans.vagnn`, also for ``pool_fanout`` and
``exclude_targets``) and the entries of the eq-4 / eq-9 means and of ``e_p(v)``; the loss
propagates each view over its graph and computes the terms on those rows. With all fan-outs ``-1``
and ``pool_fanout = -1`` the loss equals the full mode's (up to float summation order).
:meth:`VAGNN.embed` is the full-graph embeddings (a model trained on samples: chunked
propagation, no gradients; evaluation only).

Ablations (paper's Table 3): A ``contrastive=False``; B ``vlogger_loss=False``; C
``video_view=False``; D ``vlogger_view=False``; E ``vlogger_score=False`` (``y_uv = e_u.e_v``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from reelgraph.graph import FullGraph, Subgraph, node_rows, pool, propagate, weighted_sum
from reelgraph.models.base import (GraphConfig, Recommender, bpr_loss, check_values, init_tables_,
                                   int_at_least, l2_loss, make_plan)
from reelgraph.models.simgcl import info_nce
from reelgraph.samplers.plans.vagnn import VAGNNBatch, VAGNNPlan, VAGNNStatic, ViewRows

Tables = tuple[list[Tensor], list[Tensor], list[Tensor]]  # per view: users, videos, vloggers


@dataclass(frozen=True)
class VAGNNConfig(GraphConfig):
    """VA-GNN: the :class:`GraphConfig` fields (``embedding_dim``: d of each view, final
    embeddings are ``2d`` wide; ``num_layers``: L steps in each view; ``reg_weight``: lambda3, L2
    on the batch's layer-0 rows; ``init_std``: normal init of the tables and of ``Q``; ``fanouts``,
    ``exclude_targets``, ``chunk_size``: sampled training, see the plan) and its own below."""

    vlogger_weight: float = 5.0   # lambda1, user–vlogger BPR (paper's best on both datasets)
    cl_weight: float = 0.05       # lambda2, cross-view InfoNCE (paper: 0.0005 WeChat, 0.05 TakaTak)
    tau: float = 0.5              # InfoNCE temperature (paper: 0.5 WeChat, 0.05 TakaTak)
    num_walks: int = 1            # meta-path walks per user, each view
    walk_length: int = 1          # meta-paths chained per walk (1: the paper's length-3 ones)
    q1: float = 0.5               # P(user -> vlogger step); the paper gives no value
    q2: float = 0.5               # at the vlogger: P(-> user), 1 - q2: P(-> video); exclusive
    walk_seed: int = 0            # seed of the walks the plan draws once
    follow_min_views: int = 3     # derived follow: >= this many train views of its videos; 0: off
    contrastive: bool = True      # False: variant A (no cross-view InfoNCE)
    vlogger_loss: bool = True     # False: variant B (no user–vlogger BPR)
    video_view: bool = True       # False: variant C (no video-view propagation)
    vlogger_view: bool = True     # False: variant D (no vlogger-view propagation)
    vlogger_score: bool = True    # False: variant E (score e_u.e_v, no gate)
    pool_fanout: int = -1         # sampled: videos per vlogger (eq 4) / users per video (eq 9)
    #                               averaged, a uniform sample; -1 = all

    def __post_init__(self):
        super().__post_init__()
        name = type(self).__name__
        if self.pool_fanout == 0 or self.pool_fanout < -1:
            raise ValueError(f"{name}: pool_fanout={self.pool_fanout} must be >= 1 or -1")
        if not (self.video_view or self.vlogger_view):
            raise ValueError(f"{name}: video_view={self.video_view}, vlogger_view="
                             f"{self.vlogger_view}; VA-GNN needs at least one of the views")
        check_values(name, vlogger_weight=(self.vlogger_weight, lambda v: v >= 0, "a number >= 0"),
               cl_weight=(self.cl_weight, lambda v: v >= 0, "a number >= 0"),
               tau=(self.tau, lambda v: v > 0, "a number > 0"),
               q1=(self.q1, lambda v: 0 <= v <= 1, "a probability in [0, 1]"),
               q2=(self.q2, lambda v: 0 <= v <= 1, "a probability in [0, 1]"),
               num_walks=(self.num_walks, int_at_least(0), "an int >= 0"),
               walk_length=(self.walk_length, int_at_least(0), "an int >= 0"),
               walk_seed=(self.walk_seed, int_at_least(0), "an int >= 0"),
               follow_min_views=(self.follow_min_views, int_at_least(0), "an int >= 0"))

    def build(self, store) -> "VAGNN":
        if "creator" not in store.num_nodes:
            raise ValueError("VAGNNConfig: VA-GNN needs vloggers (the store's item_creator)")
        return VAGNN(store.num_users, store.num_items, store.num_nodes["creator"], self)

    def plan(self) -> VAGNNPlan:
        return make_plan(self, VAGNNPlan)


class VAGNN(Recommender):
    """Two-view GNN over users, videos and vloggers with a gated video/vlogger score."""

    def __init__(self, num_users: int, num_items: int, num_creators: int,
                 config: VAGNNConfig | None = None):
        super().__init__()
        self.config = config = config or VAGNNConfig()
        self.num_users, self.num_items, self.num_creators = num_users, num_items, num_creators
        d, k = config.embedding_dim, config.video_view + config.vlogger_view
        self.user = nn.Embedding(num_users, d)
        self.item = nn.Embedding(num_items, d)
        self.creator = nn.Embedding(num_creators, d)
        self.Q = nn.Parameter(torch.empty(k * d, k * d))  # gate, [kd, kd]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_tables_(self.config, self.user.weight, self.item.weight, self.creator.weight)
        nn.init.normal_(self.Q, std=self.config.init_std)  # the gate: always N(0, init_std)

    # -- propagation and the gate --------------------------------------------------------------
    def propagate_view(self, graph: Subgraph | FullGraph, second: Tensor) -> Tensor:
        """The mean of layers ``0..L`` ``[S, d]`` of ``graph``'s seeds; its nodes are users
        (``< U``, rows of ``e_u``) and rows of ``second`` (``e_v`` or ``e_p``) offset by ``U``."""
        x = node_rows(graph.node, self.user.weight, second, sparse=self.user.sparse)  # [N, d]
        return torch.stack(propagate(graph, x, self.config.num_layers)).mean(0)

    def gate(self, video: Tensor, vlogger: Tensor) -> Tensor:
        """``w = sigmoid(e_v^T Q e_p(v) / sqrt(kd))`` per row of ``video``, ``vlogger [N, kd]`` →
        ``[N]``."""
        return torch.sigmoid(((video @ self.Q) * vlogger).sum(-1) / video.size(-1) ** 0.5)

    def _mix(self, video: Tensor, pv: Tensor, has_creator: Tensor) -> Tensor:
        """``w e_v + (1 - w) e_p(v)`` per row, ``w = 1`` where ``has_creator`` is False."""
        w = torch.where(has_creator, self.gate(video, pv), torch.ones_like(pv[:, 0]))  # [N]
        return w[:, None] * video + (1 - w[:, None]) * pv

    # -- full-graph embeddings -------------------------------------------------------------
    def views(self, static: VAGNNStatic) -> Tables:
        """Per-view ``(users [U, d], videos [I, d], vloggers [P, d])`` lists, video view first,
        over the whole graphs (a sampled plan's static: no gradients)."""
        c, U = self.config, self.num_users
        us, vs, ps = [], [], []
        if c.video_view:  # eqs 1–5
            out = self.propagate_view(static.video_graph, self.item.weight)
            us.append(out[:U]), vs.append(out[U:]), ps.append(pool(static.creator_pool, out[U:]))
        if c.vlogger_view:  # eqs 6–10
            out = self.propagate_view(static.vlogger_graph, self.creator.weight)
            us.append(out[:U]), ps.append(out[U:]), vs.append(pool(static.item_user_pool, out[:U]))
        return us, vs, ps

    def embed(self, static: VAGNNStatic) -> tuple[Tensor, Tensor]:
        """``(e_u [U, kd], w_v e_v + (1 - w_v) e_p(v) [I, kd])``; the item rows are ``e_v``
        without ``vlogger_score``."""
        us, vs, ps = self.views(static)
        video = torch.cat(vs, -1)
        if not self.config.vlogger_score:
            return torch.cat(us, -1), video
        pv = pool(static.item_creator_pool, torch.cat(ps, -1))  # [I, kd], mean of its vloggers
        return torch.cat(us, -1), self._mix(video, pv, static.has_creator)

    # -- loss ---------------------------------------------------------------------------------
    def batch_views(self, batch: VAGNNBatch) -> Tables:
        """Per-view rows of the batch's ``user_ids [Ru]``, ``item_ids [Ri]`` and ``vlogger_ids
        [Rp]``, each view propagated over its graph in the batch (the whole or a sampled one)."""
        c, s, U = self.config, batch.static, self.num_users
        us, vs, ps = [], [], []
        if c.video_view:  # eqs 1–5; eq 4: vloggers from their videos' rows
            v = batch.video_view
            out = self.propagate_view(v.graph(s.video_graph), self.item.weight)
            us.append(out[v.users]), vs.append(out[v.own])
            ps.append(_pooled(v, out, batch.vlogger_ids, lambda: s.creator_pool, slice(U, None)))
        if c.vlogger_view:  # eqs 6–10; eq 9: videos from their users' rows
            v = batch.vlogger_view
            out = self.propagate_view(v.graph(s.vlogger_graph), self.creator.weight)
            us.append(out[v.users]), ps.append(out[v.own])
            vs.append(_pooled(v, out, batch.item_ids, lambda: s.item_user_pool, slice(None, U)))
        return us, vs, ps

    def loss(self, batch: VAGNNBatch) -> dict[str, Tensor]:
        """``L_video + lambda1 L_vlogger + lambda2 L_cl + lambda3 L2`` (eq 20) and each term."""
        us, vs, ps = views = self.batch_views(batch)
        user_emb, video, creator_emb = torch.cat(us, -1), torch.cat(vs, -1), torch.cat(ps, -1)
        item_emb = video  # [Ri, kd]
        if self.config.vlogger_score:
            pv = weighted_sum(batch.creator_index, batch.creator_weight,
                              creator_emb[batch.creator_rows], video.size(0))  # e_p(v), [Ri, kd]
            item_emb = self._mix(video, pv, batch.has_creator)
        return self._terms(batch, views, (user_emb, item_emb, creator_emb))

    def _terms(self, batch: VAGNNBatch, views: Tables, emb: tuple[Tensor, Tensor, Tensor]
               ) -> dict[str, Tensor]:
        """The loss terms from per-view rows ``views`` and final rows ``emb`` (users, videos,
        vloggers) of the batch's row sets."""
        c, t = self.config, batch.vlogger
        us, vs, ps = views
        user_emb, item_emb, creator_emb = emb
        u, p = user_emb[batch.user_rows], item_emb[batch.item_rows[:, 0]]  # [B, kd] each
        n = item_emb[batch.item_rows[:, 1:]]  # [B, k, kd]
        video = bpr_loss((u * p).sum(-1), torch.einsum("bd,bkd->bk", u, n))
        zero = user_emb.sum() * 0
        vlogger = zero
        if c.vlogger_loss and t.users.numel():
            eu = user_emb[t.user_rows]
            vlogger = bpr_loss((eu * creator_emb[t.pos_rows]).sum(-1),
                               (eu * creator_emb[t.neg_rows]).sum(-1, keepdim=True))
        cl = zero
        if c.contrastive and len(us) == 2:  # eq 14; every user row is a unique batch user
            rows = (slice(None), batch.cl_items, batch.cl_vloggers)
            cl = sum(info_nce(a[i], b[i], c.tau) for (a, b), i in zip((us, vs, ps), rows)) / 3
        vloggers = [self.creator(t.pos), self.creator(t.neg)] if c.vlogger_loss else []
        reg = l2_loss(self.user(batch.users), self.item(batch.pos), self.item(batch.neg),
                      *vloggers) / len(batch)
        total = video + c.vlogger_weight * vlogger + c.cl_weight * cl + c.reg_weight * reg
        return {"loss": total, "video": video, "vlogger": vlogger, "cl": cl, "l2": reg}

    def extra_repr(self) -> str:
        c = self.config
        flags = [f for f in ("contrastive", "vlogger_loss", "video_view", "vlogger_view",
                             "vlogger_score") if not getattr(c, f)]
        return (f"users={self.num_users}, videos={self.num_items}, vloggers={self.num_creators}, "
                f"d={c.embedding_dim}, layers={c.num_layers}, off={flags or 'none'}")


def _pooled(view: ViewRows, out: Tensor, ids: Tensor, whole_pool, pooled_type: slice) -> Tensor:
    """The view's mean pool (eq 4 or eq 9) for the pooled nodes ``ids [R]`` → ``[R, d]``, from
    its seeds' rows ``out``. Over a sampled graph: the batch's pool rows (``weighted_sum``). Over
    the whole graph: the same means, as one product with the static mean-pool matrix
    ``whole_pool()`` over ``out[pooled_type]`` and rows ``ids`` picked, about 10x cheaper than
    gathering every pooled row per batch (``benchmarks/RESULTS.md``)."""
    if view.sub is None:
        return pool(whole_pool(), out[pooled_type])[ids]
    return weighted_sum(view.pool_index, view.pool_weight, out[view.pool_rows], ids.numel())
