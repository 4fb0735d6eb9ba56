"""The plan of VA-GNN (:mod:`reelgraph.models.vagnn`): its two view graphs, built once from the
store, and per batch the vlogger triples, the rows its loss reads and each view's graph.

In the store's vocabulary a vlogger is a ``creator`` and a video an ``item``; the video view's
nodes are users ``0..U-1`` and videos ``U..U+I-1``, the vlogger view's users ``0..U-1`` and
vloggers ``U..U+P-1``.

Built once per store (``store.derived``: memory-mapped by every process, loader workers included):

* follows: the store's ``user_creator`` unioned with the pairs where the user has at least
  ``follow_min_views`` training interactions with the vlogger's videos (the paper's "interacts
  with more than two micro-videos published by the vlogger"); without follows in the store these
  derived pairs are the whole user–vlogger graph.
* meta-path endpoints, drawn once from ``walk_seed`` (the reference code also draws them once)
  by :func:`~reelgraph.samplers.metapath.metapath_walks`: user–vlogger–user and
  user–vlogger–video endpoints for the video view, the endpoints ``(u', p)`` of
  vlogger–user–video–user walks ``p - u - v - u'`` for the vlogger view. ``q1``/``q2`` are the
  paper's: chance of the user → vlogger step, then at the vlogger a user (``q2``) or one of its
  videos (``1 − q2``), exclusive; ``num_walks`` walks of ``walk_length`` meta-paths per user
  (1: the paper's). Endpoints become extra
  (deduplicated, unweighted) edges of the view's graph, as eqs 1, 2 and 7 define the neighbour
  sets; user–user endpoints are user–user edges of the video view (so it is not bipartite).
* each view's symmetric CSR and degrees: the video view's edges are the training interactions
  and its endpoints, the vlogger view's the follows and its endpoints.
* the pooling CSRs: a vlogger's videos (eq 4) and a video's ``U_v`` (eq 9): its train users
  and the start users of the user–vlogger–video meta-paths that reached it.

Per batch (:meth:`VAGNNPlan.sample`, every draw from the batch's generator):

* the vlogger triples first: for each batch row whose user follows any vlogger, one followed
  vlogger and a uniform non-followed negative (the loader's triples are user–video only);
* the rows the loss reads: the batch's unique users, its unique positive and negative videos and
  the vloggers of those videos and of the triples; the entries of ``e_p(v)`` (the mean over a
  video's vloggers: exact, in both modes) and the InfoNCE rows (unique users, unique positive
  videos, the triples' positive vloggers and each positive video's first vlogger);
* whole graph (``fanouts=None``): each view's graph is the whole one (``static``; rows are global
  ids) and the eq-4 / eq-9 pools of the needed rows are exact;
* sampled (``fanouts``): video view: seeds are those users, those videos and, for each needed
  vlogger, a uniform sample of ``pool_fanout`` of its videos (all with ``-1``); the vlogger's row
  (eq 4) is their mean, an unbiased estimate of the mean over all its videos. Vlogger view: seeds
  are those users, those vloggers and, for each needed video, a uniform sample of
  ``pool_fanout`` of its users ``U_v`` (eq 9's pool), whose mean is the video's row (eq 9).
  Each view's ``L``-hop subgraph is sampled as LightGCN's (:func:`~reelgraph.samplers.plans.gcn.sample_subgraph`:
  Horvitz–Thompson rescaled weights, full-graph degrees); ``exclude_targets`` drops the batch's
  positive edges from the video view only (the vlogger view has no user–video edges; eq-9
  pooling and meta-path edges keep them, as in the full mode).

With all fan-outs ``-1`` and ``pool_fanout = -1`` a batch gives the full mode's loss (up to float
summation order). ``static`` (per device) holds each enabled view's whole graph (its normalised
operator for full-graph training, or its CSR for the chunked, gradient-free embeddings of a
model trained on samples) and the mean-pooling matrices of ``embed``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from reelgraph.graph import (CSR, BipartiteGraph, FullGraph, Subgraph, csr_rows, expand_rows,
                             mean_pool_matrix, sym_norm_rows, symmetric_csr, transpose_csr,
                             undirected_edge_keys, union)
from reelgraph.samplers.batch import BPRBatch
from reelgraph.samplers.metapath import metapath_walks
from reelgraph.samplers.negative import uniform_negatives
from reelgraph.samplers.neighbor import sampled_mean
from reelgraph.samplers.pinsage import walk_step
from reelgraph.samplers.plans.base import Plan
from reelgraph.samplers.plans.gcn import SymmetricGraph, sample_subgraph

Pool = tuple[Tensor, Tensor]  # (M, M^T) of mean_pool_matrix


# -- batch, context and static types ---------------------------------------------------------
@dataclass(frozen=True)
class ViewRows:
    """One view's graph for a batch and where the loss's rows lie among its seeds.

    Attributes:
        sub: the sampled neighbourhood of the view's seeds; ``None``: the view's whole graph
            (``static``), whose rows are the view's global node ids.
        users: ``[Ru]`` rows of the batch's unique users (:attr:`VAGNNBatch.user_ids`).
        own: ``[R]`` rows of the view's second node type: the videos ``item_ids`` (video view)
            or the vloggers ``vlogger_ids`` (vlogger view).
        pool_index, pool_rows, pool_weight: ``[M]`` the mean pool of the other type (video view:
            each needed vlogger from its videos, eq 4; vlogger view: each needed video from its
            users ``U_v``, eq 9): position in ``vlogger_ids`` / ``item_ids``, row of the pooled
            node among the seeds, weight ``1 / #pooled`` (:func:`reelgraph.graph.weighted_sum`).
    """

    sub: Subgraph | None
    users: Tensor
    own: Tensor
    pool_index: Tensor
    pool_rows: Tensor
    pool_weight: Tensor

    def graph(self, whole: FullGraph) -> Subgraph | FullGraph:
        """The graph the view's rows are computed over (``whole`` when none was sampled)."""
        return self.sub if self.sub is not None else whole


@dataclass(frozen=True)
class VloggerTriples:
    """User–vlogger BPR triples, ``[T]`` each: global ids and their rows in the batch's sets.

    Attributes:
        users, pos, neg: a batch user, a vlogger it follows, one it does not.
        user_rows: rows of ``users`` in ``user_ids``; pos_rows, neg_rows: in ``vlogger_ids``.
    """

    users: Tensor
    pos: Tensor
    neg: Tensor
    user_rows: Tensor
    pos_rows: Tensor
    neg_rows: Tensor


@dataclass(frozen=True)
class VAGNNBatch(BPRBatch):
    """BPR triples plus what VA-GNN's loss reads (module doc).

    Attributes:
        user_ids, item_ids, vlogger_ids: ``[Ru]``, ``[Ri]``, ``[Rp]`` sorted global ids of the
            rows the loss computes: unique users, unique positive and negative videos, needed
            vloggers.
        user_rows: ``[B]`` rows of ``users`` in ``user_ids``; item_rows: ``[B, 1 + k]`` of each
            triple's positive, then negatives, in ``item_ids``.
        vlogger: the :class:`VloggerTriples`.
        creator_index, creator_rows, creator_weight: ``[M]`` entries of ``e_p(v)``, the mean over
            a video's vloggers: position in ``item_ids``, row in ``vlogger_ids``, ``1 / #vloggers``.
        has_creator: ``[Ri]`` whether each video has a vlogger.
        cl_items: rows in ``item_ids`` of the unique positives; cl_vloggers: rows in
            ``vlogger_ids`` of the triples' positives and each positive's first vlogger (InfoNCE).
        video_view, vlogger_view: each view's :class:`ViewRows` (``None``: view switched off).
    """

    user_ids: Tensor
    item_ids: Tensor
    vlogger_ids: Tensor
    user_rows: Tensor
    item_rows: Tensor
    vlogger: VloggerTriples
    creator_index: Tensor
    creator_rows: Tensor
    creator_weight: Tensor
    has_creator: Tensor
    cl_items: Tensor
    cl_vloggers: Tensor
    video_view: ViewRows | None
    vlogger_view: ViewRows | None


@dataclass(frozen=True)
class VAGNNContext:
    """What sampling reads (memory-mapped): each view's symmetric CSR, the follows, the store's
    item → creator CSR and the pooling CSRs creator → item (eq 4) and item → U_v (eq 9)."""

    video: SymmetricGraph
    vlogger: SymmetricGraph
    follows: CSR
    item_creator: CSR
    creator_items: CSR
    item_users: CSR
    num_users: int
    num_items: int
    num_creators: int


@dataclass(frozen=True)
class VAGNNStatic:
    """Per-device state: each enabled view's whole graph (``None`` if the view is off),
    ``(M, M^T)`` mean-pooling matrices ``[P, I]`` (a vlogger's videos), ``[I, U]`` (a video's
    users ``U_v``, eq 9) and ``[I, P]`` (a video's vloggers), and ``has_creator [I]``."""

    video_graph: FullGraph | None
    vlogger_graph: FullGraph | None
    creator_pool: Pool
    item_user_pool: Pool
    item_creator_pool: Pool
    has_creator: Tensor
    num_users: int
    num_items: int
    num_creators: int


# -- graphs built once per store -------------------------------------------------------------
def derived_follows(graph: BipartiteGraph, item_creator: CSR, num_creators: int,
                    min_views: int) -> BipartiteGraph:
    """``(u, p)`` where ``u`` has at least ``min_views`` training interactions with ``p``'s
    videos (none for ``min_views = 0``)."""
    edge, slot = expand_rows(item_creator[0], graph.col.long())  # every (edge, its vlogger)
    keys, counts = torch.unique(graph.users()[edge] * num_creators + item_creator[1][slot].long(),
                                return_counts=True)
    keys = keys[counts >= min_views] if min_views > 0 else keys[:0]
    return BipartiteGraph.from_edges(keys // num_creators, keys % num_creators,
                                     graph.num_users, num_creators)


def _store_follows(store, num_creators: int) -> BipartiteGraph:
    U = store.num_users
    if not store.has("user_creator"):
        empty = torch.zeros(0, dtype=torch.long)
        return BipartiteGraph.from_edges(empty, empty, U, num_creators)
    rowptr, col = store.csr("user_creator")
    return BipartiteGraph(U, num_creators, rowptr.long(), col.long())


def _item_creator(store) -> CSR:
    if not store.has("item_creator"):
        raise ValueError("VA-GNN needs the store's item_creator relation (each video's vloggers)")
    rowptr, col = store.csr("item_creator")
    return rowptr.long(), col.long()


def _view_graphs(store, plan: "VAGNNPlan", follows: BipartiteGraph) -> dict[str, Tensor]:
    """Both views' symmetric CSRs with their meta-path edges (module doc), walks from one
    generator seeded ``walk_seed``: video view first, then the vlogger view."""
    train, ic, P = store.graph("train"), _item_creator(store), store.num_nodes["creator"]
    U, I = train.num_users, train.num_items
    t_rowptr, t_col = train.rowptr.long(), train.col.long()
    gen, users = torch.Generator().manual_seed(plan.walk_seed), torch.arange(U)
    fcsr = (follows.rowptr, follows.col)
    walk = dict(num_walks=plan.num_walks, walk_length=plan.walk_length, q1=plan.q1, generator=gen)
    # video view: user–vlogger–user and user–vlogger–video endpoints
    w = metapath_walks(fcsr, transpose_csr(*fcsr, P), transpose_csr(*ic, P), users, q2=plan.q2,
                       **walk)
    video = symmetric_csr(torch.cat([train.users(), w.user_item[0], w.user_user[0]]),
                          torch.cat([t_col + U, w.user_item[1] + U, w.user_user[1]]), U + I)
    # eq 9's U_v: a video's train users and the starts of user–vlogger–video meta-paths to it
    keys = torch.unique(torch.cat([train.col.long() * U + train.users(),
                                   w.user_item[1] * U + w.user_item[0]]))
    pool = BipartiteGraph.from_edges(keys // U, keys % U, I, U)          # item → users
    # vlogger view: p - u - v - u' endpoints (u', p); the walk's "creator" is a video here,
    # which has no videos of its own: every meta-path that reaches one goes on to a user
    no_items = (torch.zeros(I + 1, dtype=torch.long), t_col[:0])
    uvu = metapath_walks((t_rowptr, t_col), transpose_csr(t_rowptr, t_col, I), no_items, users,
                         q2=1.0, **walk).user_user
    p = walk_step(*fcsr, uvu[0], gen)
    keys = torch.unique(torch.cat([follows.keys(), uvu[1][p >= 0] * P + p[p >= 0]]))
    vlogger = BipartiteGraph.from_edges(keys // P, keys % P, U, P).symmetric()
    names = ("rowptr", "col", "deg")
    return {**{f"video_{n}": t for n, t in zip(names, video)},
            **{f"vlogger_{n}": t for n, t in zip(names, vlogger)},
            "pool_rowptr": pool.rowptr, "pool_col": pool.col}


def _pool_csrs(store) -> dict[str, Tensor]:
    """The creator → item CSR (eq 4); eq 9's item → user pool is drawn with the walks."""
    ci = transpose_csr(*_item_creator(store), store.num_nodes["creator"])
    return {"creator_rowptr": ci[0], "creator_col": ci[1]}


# -- the plan ------------------------------------------------------------------------------
@dataclass(frozen=True)
class VAGNNPlan(Plan):
    """VA-GNN's batches over the whole view graphs (``fanouts=None``) or sampled ones (module
    doc); the fields are :class:`~reelgraph.models.vagnn.VAGNNConfig`'s."""

    fanouts: tuple[int, ...] | None
    exclude_targets: bool
    chunk_size: int
    pool_fanout: int
    num_walks: int
    walk_length: int
    q1: float
    q2: float
    walk_seed: int
    follow_min_views: int
    video_view: bool
    vlogger_view: bool

    def follows(self, store) -> BipartiteGraph:
        """The user → vlogger graph of the views and the vlogger triples (derived, mapped)."""
        P = store.num_nodes["creator"]

        def build() -> dict[str, Tensor]:
            g = union(_store_follows(store, P), derived_follows(
                store.graph("train"), _item_creator(store), P, self.follow_min_views))
            return {"rowptr": g.rowptr, "col": g.col}
        a = store.derived("vagnn-follows", {"split": "train", "min_views": self.follow_min_views},
                          build)
        return BipartiteGraph(store.num_users, P, a["rowptr"], a["col"])

    def _view_arrays(self, store) -> dict[str, Tensor]:
        params = {"split": "train", "min_views": self.follow_min_views, "seed": self.walk_seed,
                  "walks": (self.num_walks, self.walk_length, self.q1, self.q2),
                  "metapath": "exclusive-q2", "pool": "eq9-endpoints"}
        return store.derived("vagnn-views", params,
                             lambda: _view_graphs(store, self, self.follows(store)))

    def views(self, store) -> tuple[SymmetricGraph, SymmetricGraph]:
        """The video view's and the vlogger view's symmetric CSRs (derived, mapped)."""
        a = self._view_arrays(store)
        return tuple(SymmetricGraph(store.num_users, *(a[f"{v}_{n}"] for n in ("rowptr", "col",
                                                                               "deg")))
                     for v in ("video", "vlogger"))

    def item_users(self, store) -> CSR:
        """Eq 9's pool, item → users: train users and user–vlogger–video meta-path starts."""
        a = self._view_arrays(store)
        return a["pool_rowptr"], a["pool_col"]

    def context(self, store) -> VAGNNContext:
        video, vlogger = self.views(store)
        f = self.follows(store)
        a = store.derived("vagnn-pools", {"split": "train"}, lambda: _pool_csrs(store))
        return VAGNNContext(video, vlogger, (f.rowptr, f.col), _item_creator(store),
                            (a["creator_rowptr"], a["creator_col"]),
                            self.item_users(store),
                            store.num_users, store.num_items, store.num_nodes["creator"])

    # -- per batch -------------------------------------------------------------------------
    def sample(self, ctx: VAGNNContext, triples: BPRBatch, generator: torch.Generator
               ) -> VAGNNBatch:
        U, I = ctx.num_users, ctx.num_items
        vu, vp, vn = vlogger_triples(ctx.follows, triples.users, ctx.num_creators, generator)
        users, user_rows = torch.unique(triples.users, return_inverse=True)
        items, item_rows = torch.unique(torch.cat([triples.pos.unsqueeze(1), triples.neg], 1),
                                        return_inverse=True)  # [Ri], [B, 1 + k]
        ic_index, ic_creator, ic_weight = sampled_mean(*ctx.item_creator, items, -1)  # e_p(v)
        vloggers = torch.unique(torch.cat([ic_creator, vp, vn]))
        at_p = lambda x: torch.searchsorted(vloggers, x)  # noqa: E731 (rows of sorted ids)
        rowptr = ctx.item_creator[0]
        pos = triples.pos[rowptr[triples.pos + 1] > rowptr[triples.pos]]  # positives with vloggers
        first = ctx.item_creator[1][rowptr[pos]].long()
        k = self.pool_fanout if self.fanouts is not None else -1
        video = vlogger = None
        if self.video_view:  # eq 4: needed vloggers from (a sample of) their videos
            index, vid, w = sampled_mean(*ctx.creator_items, vloggers, k, generator=generator)
            keys = None
            if self.exclude_targets and self.fanouts is not None:
                keys = undirected_edge_keys(triples.users, triples.pos + U, U + I)
            video = self._view(ctx.video, users, items + U, (index, vid + U, w), keys, generator)
        if self.vlogger_view:  # eq 9: needed videos from (a sample of) their train users
            index, usr, w = sampled_mean(*ctx.item_users, items, k, generator=generator)
            vlogger = self._view(ctx.vlogger, users, vloggers + U, (index, usr, w), None, generator)
        return VAGNNBatch(
            triples.users, triples.pos, triples.neg, users, items, vloggers, user_rows, item_rows,
            VloggerTriples(vu, vp, vn, torch.searchsorted(users, vu), at_p(vp), at_p(vn)),
            ic_index, at_p(ic_creator), ic_weight, rowptr[items + 1] > rowptr[items],
            torch.searchsorted(items, torch.unique(triples.pos)),
            at_p(torch.unique(torch.cat([vp, first]))), video, vlogger, seed=triples.seed)

    def _view(self, g: SymmetricGraph, users: Tensor, own: Tensor,
              pool: tuple[Tensor, Tensor, Tensor], exclude_keys: Tensor | None,
              generator: torch.Generator) -> ViewRows:
        """The view's rows for global node ids ``users``, ``own`` and the pooled nodes of
        ``pool = (index, node, weight)``: global ids over the whole graph, or rows among the
        sorted seeds of the sampled subgraph."""
        index, pooled, weight = pool
        if self.fanouts is None:
            return ViewRows(None, users, own, index, pooled, weight)
        seeds = torch.unique(torch.cat([users, own, pooled]))
        sub = sample_subgraph(g, seeds, self.fanouts, exclude_keys, generator)
        at = lambda x: torch.searchsorted(seeds, x)  # noqa: E731 (seeds come first, sorted)
        return ViewRows(sub, at(users), at(own), index, at(pooled), weight)

    # -- per device ------------------------------------------------------------------------
    def _whole(self, g: SymmetricGraph, device: torch.device) -> FullGraph:
        g = g.to(device)
        if self.fanouts is None:
            return FullGraph(g.num_nodes, adj=sym_norm_rows(g.rowptr, g.col, g.deg))
        return FullGraph(g.num_nodes, csr=(g.rowptr, g.col, g.deg), chunk_size=self.chunk_size)

    def static(self, store, device: torch.device) -> VAGNNStatic:
        video, vlogger = self.views(store)
        U, I, P = store.num_users, store.num_items, store.num_nodes["creator"]
        ic_rowptr, ic_col = (t.to(device) for t in _item_creator(store))
        ic_items = csr_rows(ic_rowptr)
        pool_rowptr, pool_col = (t.to(device).long() for t in self.item_users(store))
        return VAGNNStatic(
            self._whole(video, device) if self.video_view else None,
            self._whole(vlogger, device) if self.vlogger_view else None,
            mean_pool_matrix(ic_col, ic_items, P, I),
            mean_pool_matrix(csr_rows(pool_rowptr), pool_col, I, U),
            mean_pool_matrix(ic_items, ic_col, I, P), ic_rowptr[1:] > ic_rowptr[:-1], U, I, P)


def vlogger_triples(follows: CSR, users: Tensor, num_creators: int,
                    generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """One followed vlogger and one uniform non-followed vlogger per entry of ``users [B]`` that
    follows any (and not every one: it has no negative): ``(users, pos, neg)``, ``[T]`` each."""
    pos = walk_step(*follows, users, generator)
    keep = (pos >= 0) & (follows[0][users + 1] - follows[0][users] < num_creators)
    users, pos = users[keep], pos[keep].long()
    neg = uniform_negatives(users, follows, num_creators, 1, generator=generator)[:, 0]
    return users, pos, neg
