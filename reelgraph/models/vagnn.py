"""VA-GNN (Lai et al., 2023): vlogger-augmented GNN over the user–video–vlogger graph.

In the store's vocabulary a vlogger is a ``creator`` and a video an ``item``. Two LightGCN-style
views share the layer-0 tables ``e_u``, ``e_v``, ``e_p``:

* video view (eqs 1–5): propagation over users + videos whose edges are the training
  interactions plus the endpoints of user–vlogger–user and user–vlogger–video meta-path walks
  (``samplers.metapath``); a vlogger's embedding is the mean of its videos' (eq 4).
* vlogger view (eqs 6–10): propagation over users + vloggers whose edges are the follows plus
  the endpoints ``(u', p)`` of vlogger–user–video–user walks ``p - u - v - u'``; a video's
  embedding is the mean of its training users' (eq 9).

Final embeddings concatenate the views (``2d``). A video ``v`` with vlogger embedding ``e_p(v)``
is scored ``y_uv = w_v e_u.e_v + (1 - w_v) e_u.e_p(v)``, ``w_v = sigmoid(e_v^T Q e_p(v))`` (eqs 16–17;
scaled, see below).
``w_v`` depends on the video alone, so :meth:`embed` returns ``e_u`` and the item vector
``w_v e_v + (1 - w_v) e_p(v)``, whose inner product is exactly ``y_uv``. The loss is
``L_video + lambda1 L_vlogger + lambda2 L_cl + lambda3 L2`` (eq 20) with BPR for both
recommendation tasks and cross-view InfoNCE (cosine, ``tau``) over users, videos and vloggers.

Choices where the paper is vague:

* Eq 3 writes ``e_v,1^(0) = e_p``; read as the typo it is: a video starts from ``e_v``.
* Meta-path endpoints become extra (deduplicated, unweighted) edges of the view's graph, as eqs 1, 2
  and 7 define the neighbour sets; user–user endpoints are user–user edges of the video view. The
  walks are drawn once in :meth:`prepare` from ``walk_seed`` (the reference code also draws them
  once). ``q1``/``q2`` are the sampler's: chance of going on creator → user / of emitting a
  creator → item endpoint; ``num_walks`` walks of ``walk_length`` follow steps per user.
* Sums over layers ``0..L`` are means over ``L + 1`` layers (LightGCN's ``propagate``).
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
* The loader's batch holds user–video triples only, so ``loss`` draws one followed vlogger per
  batch user and a uniform non-followed negative (torch's global RNG, seeded by Lightning).
* InfoNCE runs over the batch's unique users, positive videos and vloggers (positive vloggers and
  the positive videos' vloggers) with in-batch negatives, not over all nodes (eqs 11–13), as the
  reference code does; its projection heads are left out (the paper has none). L2 is on the
  batch's layer-0 rows; ``Q`` is not regularised (reference code).

Sampled mini-batch training (``VAGNNConfig.fanouts``, the fields of
:class:`~reelgraph.models.lightgcn.SampledGCNConfig`; ``None`` keeps the full-graph mode above):
``prepare`` keeps each view's symmetric CSR and FULL-graph degrees
(:class:`~reelgraph.models.lightgcn.SampledState`) instead of its normalised adjacency, plus the
pooling matrices and the long-index CSRs of a vlogger's videos and a video's train users. Each
step:

* draws the vlogger triples first (global RNG, as the full mode, so seeded runs match it);
* the rows the loss reads are the batch's unique users, its unique positive and negative videos
  and the vloggers of those videos and of the triples;
* video view: seeds are those users, those videos, and, for each needed vlogger, a uniform sample
  of ``pool_fanout`` of its videos (all with ``-1``); the vlogger's row (eq 4) is their mean, an
  unbiased estimate of the mean over all its videos;
* vlogger view: seeds are those users, those vloggers and, for each needed video, a uniform
  sample of ``pool_fanout`` of its train users, whose mean is the video's row (eq 9);
* each view is propagated over its own sampled ``L``-hop subgraph exactly as LightGCN's sampled
  mode does (:func:`~reelgraph.models.lightgcn.sample_subgraph`:
  Horvitz–Thompson rescaled weights, :func:`~reelgraph.models.subgraph.hop_propagate`);
  ``exclude_targets`` drops the batch's positive edges from the video view only (the vlogger
  view has no user–video edges; eq-9 pooling and meta-path edges keep them, as in the full mode);
* ``e_p(v)`` (the mean over the video's vloggers) is exact, from the needed vloggers' rows, and
  the loss terms are the full mode's on those rows.

With all fan-outs ``-1`` and ``pool_fanout = -1`` the loss equals the full mode's (up to float
summation order). ``embed`` stays the full-graph embeddings (chunked propagation, no gradients;
evaluation only).

Ablations (paper's Table 3): A ``contrastive=False``; B ``vlogger_loss=False``; C
``video_view=False``; D ``vlogger_view=False``; E ``vlogger_score=False`` (``y_uv = e_u.e_v``).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from reelgraph.graph import BipartiteGraph, to_csr, undirected_edge_keys, union
from reelgraph.models.base import Recommender, bpr_loss, l2_loss
from reelgraph.models.lightgcn import (SampledGCNConfig, SampledState, bipartite_csr,
                                       chunked_propagate, propagate, sample_subgraph,
                                       sym_norm_adjacency)
from reelgraph.models.subgraph import Subgraph, hop_propagate, sampled_mean, weighted_sum
from reelgraph.models.simgcl import info_nce
from reelgraph.samplers.batch import BPRBatch
from reelgraph.samplers.metapath import metapath_walks
from reelgraph.samplers.negative import uniform_negatives
from reelgraph.samplers.pinsage import transpose_csr, walk_step

CSR = tuple[Tensor, Tensor]


@dataclass
class VAGNNConfig(SampledGCNConfig):
    embedding_dim: int = 64       # d of each view; final embeddings are 2d wide
    num_layers: int = 3           # L propagation steps in each view
    vlogger_weight: float = 5.0   # lambda1, user–vlogger BPR (paper's best on both datasets)
    cl_weight: float = 0.05       # lambda2, cross-view InfoNCE (paper: 0.0005 WeChat, 0.05 TakaTak)
    tau: float = 0.5              # InfoNCE temperature (paper: 0.5 WeChat, 0.05 TakaTak)
    reg_weight: float = 1e-4      # lambda3, L2 on the batch's layer-0 rows
    init_std: float = 0.1         # normal init of the tables and of Q
    num_walks: int = 1            # meta-path walks per user, each view
    walk_length: int = 1          # follow steps per walk (1: the paper's length-3 meta-paths)
    q1: float = 0.5               # P(walk goes on creator -> user: a user–user endpoint)
    q2: float = 0.5               # P(walk emits creator -> item: a user–video endpoint)
    walk_seed: int = 0            # seed of the walks drawn in prepare()
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
        if self.pool_fanout == 0 or self.pool_fanout < -1:
            raise ValueError(f"VAGNNConfig: pool_fanout={self.pool_fanout} must be >= 1 or -1")

    def build(self, store) -> "VAGNN":
        follows = store.csr("user_creator") if store.has("user_creator") else None
        return VAGNN(store.num_users, store.num_items, store.num_nodes["creator"],
                     store.csr("item_creator"), follows, self)


@dataclass(frozen=True)
class VAGNNState:
    """What :meth:`VAGNN.prepare` builds once per training graph.

    Attributes:
        video_adj: ``[U + I, U + I]`` normalised video-view adjacency (users first); sampled
            mode: its :class:`SampledState` (symmetric CSR and degrees).
        vlogger_adj: ``[U + P, U + P]`` normalised vlogger-view adjacency (users first), or its
            :class:`SampledState`.
        creator_pool, item_user_pool, item_creator_pool: ``(M, M^T)`` mean-pooling CSRs,
            ``[P, I]`` (a vlogger's videos), ``[I, U]`` (a video's train users), ``[I, P]`` (a
            video's vloggers).
        has_creator: ``[I]`` bool.
        follows: user → creator graph the vlogger view and the vlogger loss use.
        follow_keys: its sorted edge keys (negatives exclude them).
        creator_items, item_users: sampled mode: ``(rowptr, col)`` long CSRs ``[P, I]`` and
            ``[I, U]`` of the pooling (``None`` in full mode).
    """

    video_adj: Tensor | SampledState
    vlogger_adj: Tensor | SampledState
    creator_pool: tuple[Tensor, Tensor]
    item_user_pool: tuple[Tensor, Tensor]
    item_creator_pool: tuple[Tensor, Tensor]
    has_creator: Tensor
    follows: BipartiteGraph
    follow_keys: Tensor
    creator_items: CSR | None = None
    item_users: CSR | None = None


def _sparse_csr(row: Tensor, col: Tensor, w: Tensor, shape: tuple[int, int]) -> Tensor:
    rowptr, col, perm = to_csr(row, col, shape[0])
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(rowptr.to(torch.int32), col.to(torch.int32), w[perm], shape)


def mean_pool_matrix(row: Tensor, col: Tensor, num_rows: int, num_cols: int) -> tuple[Tensor, Tensor]:
    """``(M, M^T)`` with ``(M x)[r]`` the mean of ``x[c]`` over edges ``(r, c)``; empty rows give 0."""
    w = 1.0 / torch.bincount(row, minlength=num_rows).clamp(min=1).float()[row]  # [E]
    return (_sparse_csr(row, col, w, (num_rows, num_cols)),
            _sparse_csr(col, row, w, (num_cols, num_rows)))


class _PoolMM(torch.autograd.Function):
    """``M @ x`` whose backward is ``M^T @ grad`` with a prebuilt ``M^T`` (no CSR transpose)."""

    @staticmethod
    def forward(ctx, m: Tensor, m_t: Tensor, x: Tensor) -> Tensor:
        ctx.m_t = m_t
        return m @ x

    @staticmethod
    def backward(ctx, grad: Tensor):
        return None, None, ctx.m_t @ grad


def pool(mats: tuple[Tensor, Tensor], x: Tensor) -> Tensor:
    return _PoolMM.apply(mats[0], mats[1], x)


def sym_norm_edges(row: Tensor, col: Tensor, num_nodes: int) -> Tensor:
    """``D^-1/2 A D^-1/2`` ``[N, N]`` of the undirected graph with edges ``(row, col)`` (deduplicated).

    For the video view, whose user–user meta-path edges make it non-bipartite.
    """
    keys = torch.unique(torch.cat([row * num_nodes + col, col * num_nodes + row]))
    row, col = keys // num_nodes, keys % num_nodes
    deg = torch.bincount(row, minlength=num_nodes).float()
    return _sparse_csr(row, col, (deg[row] * deg[col]).rsqrt(), (num_nodes, num_nodes))


def sym_edges_state(row: Tensor, col: Tensor, num_nodes: int) -> SampledState:
    """The symmetric CSR and degrees of the graph :func:`sym_norm_edges` normalises (same
    deduplicated edges), for sampled mode."""
    keys = torch.unique(torch.cat([row * num_nodes + col, col * num_nodes + row]))
    rowptr, col, _ = to_csr(keys // num_nodes, keys % num_nodes, num_nodes)
    return SampledState(rowptr, col, rowptr[1:] - rowptr[:-1])


def _csr_long(m: Tensor) -> CSR:
    return m.crow_indices().long(), m.col_indices().long()


def derived_follows(graph: BipartiteGraph, item_creator: CSR, num_creators: int,
                    min_views: int) -> BipartiteGraph:
    """``(u, p)`` where ``u`` has at least ``min_views`` training interactions with ``p``'s videos."""
    rowptr, col = item_creator
    users, items = graph.users(), graph.col
    rep = (rowptr[1:] - rowptr[:-1])[items]  # creators of each interacted item, [E]
    first = torch.repeat_interleave(rowptr[items], rep)
    offset = torch.arange(int(rep.sum()), device=items.device) - torch.repeat_interleave(
        torch.cumsum(rep, 0) - rep, rep)
    creators = col[first + offset].long()
    keys, counts = torch.unique(torch.repeat_interleave(users, rep) * num_creators + creators,
                                return_counts=True)
    keys = keys[counts >= min_views] if min_views > 0 else keys[:0]
    return BipartiteGraph.from_edges(keys // num_creators, keys % num_creators,
                                     graph.num_users, num_creators)


class VAGNN(Recommender):
    """Two-view GNN over users, videos and vloggers with a gated video/vlogger score."""

    def __init__(self, num_users: int, num_items: int, num_creators: int, item_creator: CSR,
                 follows: CSR | None = None, config: VAGNNConfig = VAGNNConfig()):
        super().__init__()
        if not (config.video_view or config.vlogger_view):
            raise ValueError("VA-GNN needs at least one of video_view, vlogger_view")
        self.num_users, self.num_items, self.num_creators = num_users, num_items, num_creators
        self.config, self.reg_weight = config, config.reg_weight
        self.register_buffer("ic_rowptr", torch.as_tensor(item_creator[0]).long(), persistent=False)
        self.register_buffer("ic_col", torch.as_tensor(item_creator[1]).long(), persistent=False)
        empty = (torch.zeros(num_users + 1, dtype=torch.long), torch.zeros(0, dtype=torch.long))
        f_rowptr, f_col = follows if follows is not None else empty
        self.register_buffer("f_rowptr", torch.as_tensor(f_rowptr).long(), persistent=False)
        self.register_buffer("f_col", torch.as_tensor(f_col).long(), persistent=False)
        d, k = config.embedding_dim, config.video_view + config.vlogger_view
        self.user = nn.Embedding(num_users, d)
        self.item = nn.Embedding(num_items, d)
        self.creator = nn.Embedding(num_creators, d)
        self.Q = nn.Parameter(torch.empty(k * d, k * d))  # gate, [kd, kd]
        self.sampled = config.fanouts is not None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for w in (self.user.weight, self.item.weight, self.creator.weight, self.Q):
            nn.init.normal_(w, std=self.config.init_std)

    # -- graphs ------------------------------------------------------------------------------
    def prepare(self, graph: BipartiteGraph) -> VAGNNState:
        c, U, I, P = self.config, self.num_users, self.num_items, self.num_creators
        dev = graph.device
        ic = (self.ic_rowptr.to(dev), self.ic_col.to(dev))
        follows = union(BipartiteGraph(U, P, self.f_rowptr.to(dev), self.f_col.to(dev)),
                        derived_follows(graph, ic, P, c.follow_min_views))
        gen = torch.Generator(dev).manual_seed(c.walk_seed)
        users = torch.arange(U, device=dev)
        fcsr = (follows.rowptr, follows.col)
        # video view: user–vlogger–user and user–vlogger–video endpoints
        walks = metapath_walks(fcsr, transpose_csr(*fcsr, P), transpose_csr(*ic, P), users,
                               num_walks=c.num_walks, walk_length=c.walk_length, q1=c.q1, q2=c.q2,
                               generator=gen)
        ui_u = torch.cat([graph.users(), walks.user_item[0], walks.user_user[0]])
        ui_v = torch.cat([graph.col + U, walks.user_item[1] + U, walks.user_user[1]])
        # vlogger view: p - u - v - u' endpoints (u', p); the walk's "creator" is a video here
        no_items = (torch.zeros(I + 1, dtype=torch.long, device=dev), graph.col[:0])
        uvu = metapath_walks((graph.rowptr, graph.col), transpose_csr(graph.rowptr, graph.col, I),
                             no_items, users, num_walks=c.num_walks, walk_length=c.walk_length,
                             q1=c.q1, q2=0.0, generator=gen).user_user
        p = walk_step(*fcsr, uvu[0], gen)
        keys = torch.unique(torch.cat([follows.keys(), uvu[1][p >= 0] * P + p[p >= 0]]))
        up_graph = BipartiteGraph.from_edges(keys // P, keys % P, U, P)
        ic_rows = torch.repeat_interleave(torch.arange(I, device=dev), ic[0][1:] - ic[0][:-1])
        creator_pool = mean_pool_matrix(ic[1], ic_rows, P, I)
        item_user_pool = mean_pool_matrix(graph.col, graph.users(), I, U)
        if self.sampled:
            views = dict(video_adj=sym_edges_state(ui_u, ui_v, U + I),
                         vlogger_adj=SampledState(*bipartite_csr(up_graph)),
                         creator_items=_csr_long(creator_pool[0]),
                         item_users=_csr_long(item_user_pool[0]))
        else:
            views = dict(video_adj=sym_norm_edges(ui_u, ui_v, U + I),
                         vlogger_adj=sym_norm_adjacency(up_graph))
        return VAGNNState(
            **views, creator_pool=creator_pool, item_user_pool=item_user_pool,
            item_creator_pool=mean_pool_matrix(ic_rows, ic[1], I, P),
            has_creator=(ic[0][1:] > ic[0][:-1]),
            follows=follows, follow_keys=follows.keys())

    # -- embeddings --------------------------------------------------------------------------
    def ego_embeddings(self) -> tuple[Tensor, Tensor]:
        return self.user.weight, self.item.weight

    def _propagate(self, adj: Tensor | SampledState, x: Tensor) -> Tensor:
        c = self.config
        if isinstance(adj, SampledState):  # sampled mode's full-graph embed: chunked, no grad
            return chunked_propagate(adj, x, c.num_layers, c.chunk_size)
        return propagate(adj, x, c.num_layers)

    def views(self, s: VAGNNState) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Per-view ``(users [U, d], videos [I, d], vloggers [P, d])`` lists, video view first;
        full graph (sampled mode: no gradients)."""
        c, U = self.config, self.num_users
        us, vs, ps = [], [], []
        if c.video_view:  # eqs 1–5
            out = self._propagate(s.video_adj, torch.cat([self.user.weight, self.item.weight]))
            us.append(out[:U]), vs.append(out[U:]), ps.append(pool(s.creator_pool, out[U:]))
        if c.vlogger_view:  # eqs 6–10
            out = self._propagate(s.vlogger_adj, torch.cat([self.user.weight, self.creator.weight]))
            us.append(out[:U]), ps.append(out[U:]), vs.append(pool(s.item_user_pool, out[:U]))
        return us, vs, ps

    def gate(self, video: Tensor, vlogger: Tensor) -> Tensor:
        """``w = sigmoid(e_v^T Q e_p(v) / sqrt(kd))`` per row of ``video``, ``vlogger [N, kd]`` →
        ``[N]``."""
        return torch.sigmoid(((video @ self.Q) * vlogger).sum(-1) / video.size(-1) ** 0.5)

    def item_vectors(self, s: VAGNNState, video: Tensor, vlogger: Tensor) -> Tensor:
        """``w_v e_v + (1 - w_v) e_p(v)`` ``[I, kd]``; ``e_v`` without ``vlogger_score``."""
        if not self.config.vlogger_score:
            return video
        pv = pool(s.item_creator_pool, vlogger)  # [I, kd], mean over the video's vloggers
        return self._mix(video, pv, s.has_creator)

    def _mix(self, video: Tensor, pv: Tensor, has_creator: Tensor) -> Tensor:
        """``w e_v + (1 - w) e_p(v)`` per row, ``w = 1`` where ``has_creator`` is False."""
        w = torch.where(has_creator, self.gate(video, pv), torch.ones_like(pv[:, 0]))  # [N]
        return w[:, None] * video + (1 - w[:, None]) * pv

    def embed(self, s: VAGNNState) -> tuple[Tensor, Tensor]:
        us, vs, ps = self.views(s)
        return torch.cat(us, -1), self.item_vectors(s, torch.cat(vs, -1), torch.cat(ps, -1))

    # -- loss ---------------------------------------------------------------------------------
    def _vlogger_triples(self, s: VAGNNState, users: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One followed vlogger and one non-followed vlogger per batch user that follows any."""
        pos = walk_step(s.follows.rowptr, s.follows.col, users)
        users, pos = users[pos >= 0], pos[pos >= 0]
        neg = uniform_negatives(users, s.follow_keys, self.num_creators, 1)[:, 0]
        return users, pos, neg

    def loss(self, batch: BPRBatch, s: VAGNNState) -> dict[str, Tensor]:
        if self.sampled:
            return self._sampled_loss(batch, s)
        us, vs, ps = self.views(s)
        user_emb, creator_emb = torch.cat(us, -1), torch.cat(ps, -1)
        item_emb = self.item_vectors(s, torch.cat(vs, -1), creator_emb)
        ident = lambda x: x  # noqa: E731 (full tables: rows are global ids)
        return self._terms(batch, s, self._vlogger_triples(s, batch.users), (us, vs, ps),
                           (user_emb, item_emb, creator_emb), (ident, ident, ident))

    def _terms(self, batch: BPRBatch, s: VAGNNState, triples: tuple[Tensor, Tensor, Tensor],
               views: tuple[list[Tensor], list[Tensor], list[Tensor]],
               emb: tuple[Tensor, Tensor, Tensor], rows) -> dict[str, Tensor]:
        """The loss terms from per-view tables ``views`` and final tables ``emb`` (users, videos,
        vloggers), whose rows for global ids ``x`` are ``rows[t](x)`` (full: the ids)."""
        c = self.config
        us, vs, ps = views
        user_emb, item_emb, creator_emb = emb
        ur, ir, pr = rows
        u, p = user_emb[ur(batch.users)], item_emb[ir(batch.pos)]  # [B, kd] each
        n = item_emb[ir(batch.neg)]  # [B, k, kd]
        video = bpr_loss((u * p).sum(-1), torch.einsum("bd,bkd->bk", u, n))
        zero = user_emb.sum() * 0
        vu, vp, vn = triples
        vlogger = zero
        if c.vlogger_loss and vu.numel():
            eu = user_emb[ur(vu)]
            vlogger = bpr_loss((eu * creator_emb[pr(vp)]).sum(-1),
                               (eu * creator_emb[pr(vn)]).sum(-1, keepdim=True))
        cl = zero
        if c.contrastive and len(us) == 2:  # eq 14
            first = self.ic_col[self.ic_rowptr[batch.pos[s.has_creator[batch.pos]]]]
            nodes = (ur(torch.unique(batch.users)), ir(torch.unique(batch.pos)),
                     pr(torch.unique(torch.cat([vp, first]))))
            cl = sum(info_nce(a[i], b[i], c.tau) for (a, b), i in zip((us, vs, ps), nodes)) / 3
        rows = [self.creator.weight[vp], self.creator.weight[vn]] if c.vlogger_loss else []
        reg = l2_loss(self.user.weight[batch.users], self.item.weight[batch.pos],
                      self.item.weight[batch.neg], *rows) / len(batch)
        total = video + c.vlogger_weight * vlogger + c.cl_weight * cl + self.reg_weight * reg
        return {"loss": total, "video": video, "vlogger": vlogger, "cl": cl, "l2": reg}

    # -- sampled mode -------------------------------------------------------------------------
    def _sub_propagate(self, sub: Subgraph, second: nn.Embedding) -> Tensor:
        """The seeds' mean of layers ``0..L`` ``[S, d]`` over ``sub`` (users ``< U``, then rows of
        ``second`` offset by ``U``), LightGCN layers."""
        U, node = self.num_users, sub.node
        is_u = node < U
        x = self.user.weight.new_zeros(node.numel(), self.config.embedding_dim)  # [N, d] layer 0
        x = x.index_put((torch.nonzero(is_u)[:, 0],), self.user(node[is_u]))
        x = x.index_put((torch.nonzero(~is_u)[:, 0],), second(node[~is_u] - U))
        layers = hop_propagate(sub, x, self.config.num_layers,
                               lambda l, adj, h: torch.sparse.mm(adj, h))
        return torch.stack(layers).mean(0)

    def _sampled_loss(self, batch: BPRBatch, s: VAGNNState) -> dict[str, Tensor]:
        """The full mode's loss terms on sampled subgraphs of both views (module doc)."""
        c, U = self.config, self.num_users
        triples = self._vlogger_triples(s, batch.users)  # first: the full mode's RNG draws
        users = torch.unique(batch.users)  # triples' users are batch users
        items = torch.unique(torch.cat([batch.pos, batch.neg.flatten()]))
        ic_pos, ic_cr, ic_w = sampled_mean(self.ic_rowptr, self.ic_col, items, -1)
        vloggers = torch.unique(torch.cat([ic_cr, triples[1], triples[2]]))
        find = lambda ids: (lambda x: torch.searchsorted(ids, x))  # noqa: E731 (sorted ids)
        us, vs, ps = [], [], []
        if c.video_view:  # seeds: users, videos, a sample of each vlogger's videos (eq 4)
            pos, vid, w = sampled_mean(*s.creator_items, vloggers, c.pool_fanout)
            seeds = torch.unique(torch.cat([users, items + U, vid + U]))
            keys = (undirected_edge_keys(batch.users, batch.pos + U, U + self.num_items)
                    if c.exclude_targets else None)
            sub = sample_subgraph(s.video_adj, seeds, list(c.fanouts), keys)
            out, at = self._sub_propagate(sub, self.item), find(seeds)
            us.append(out[at(users)]), vs.append(out[at(items + U)])
            ps.append(weighted_sum(pos, w, out[at(vid + U)], vloggers.numel()))
        if c.vlogger_view:  # seeds: users, vloggers, a sample of each video's users (eq 9)
            pos, usr, w = sampled_mean(*s.item_users, items, c.pool_fanout)
            seeds = torch.unique(torch.cat([users, usr, vloggers + U]))
            sub = sample_subgraph(s.vlogger_adj, seeds, list(c.fanouts))  # no user–video edges
            out, at = self._sub_propagate(sub, self.creator), find(seeds)
            us.append(out[at(users)]), ps.append(out[at(vloggers + U)])
            vs.append(weighted_sum(pos, w, out[at(usr)], items.numel()))
        user_emb, video, creator_emb = torch.cat(us, -1), torch.cat(vs, -1), torch.cat(ps, -1)
        item_emb = video
        if c.vlogger_score:
            pv = weighted_sum(ic_pos, ic_w, creator_emb[find(vloggers)(ic_cr)], items.numel())
            item_emb = self._mix(video, pv, s.has_creator[items])
        return self._terms(batch, s, triples, (us, vs, ps), (user_emb, item_emb, creator_emb),
                           (find(users), find(items), find(vloggers)))

    def extra_repr(self) -> str:
        c = self.config
        flags = [f for f in ("contrastive", "vlogger_loss", "video_view", "vlogger_view",
                             "vlogger_score") if not getattr(c, f)]
        return (f"users={self.num_users}, videos={self.num_items}, vloggers={self.num_creators}, "
                f"d={c.embedding_dim}, layers={c.num_layers}, off={flags or 'none'}")
