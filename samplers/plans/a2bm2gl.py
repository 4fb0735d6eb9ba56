"""The plan of A²BM²GL (:mod:`reelgraph.models.a2bm2gl`): its static graphs and each batch's rows.

Static graphs (built once per store with ``store.derived``, memory-mapped by every process):

- per modality, the kNN item graph: the top-``knn_k`` plain-cosine neighbours of each item's unit
  feature row (self excluded; the heads' initial metric), symmetrised (:func:`symmetric_csr`),
  and eq. 2's constraint weights ``beta [I, k]`` of its kNN lists, rescaled to mean 1 over the
  graph's edges;
- the full-adjacent layers (eq. 5): the top-``rwr_top_n`` nodes of random surfing with restart
  (:func:`rwr_top_n`, over the 0/1 adjacency or ``D^-1 A``: ``rwr_transition``) over the
  user–item graph and over each kNN graph, with their surfing probabilities (eq. 6's prior);
- the mean of eq. 2's raw weights over the train edges (rescales a batch's L_str weights).

A batch (:class:`A2BM2GLBatch`) carries, beside its triples, the eq. 2 weights of its L_str
positives, eq. 9's draws and the row sets the loss reads:

- whole graph (``fanouts=None``): every row (row sets ``None``, ``sub=None``: ``static.graph`` is
  eq. 1's operator ``D~^-1/2 A D~^-1/2``, ``D~ = D + I``, edges only; the model adds the
  self-loop term ``h_v / (d_v + 1)``) and EXACT eq. 9 means: all of each batch user's train
  items, all items;
- sampled (``fanouts``): exactly the rows the loss reads. Fused rows: the batch's unique users,
  its positives and negatives and, with the adaptive loss, eq. 9's items (below); each needs the
  collaborative rows of itself and of its user–item full-adjacent neighbours (``cf_rows``), whose
  ``L``-hop neighbourhood is drawn by :func:`~reelgraph.samplers.plans.gcn.sample_subgraph` with
  ``self_loops`` (``exclude_targets`` drops the batch's positive edges; degrees stay the
  full-graph ones). Eq. 1's row ``v`` is ``h_v / (d_v + 1) + sum_u h_u / sqrt((d_v + 1)(d_u +
  1))``: the model adds the self-loop term exactly and each sampled edge carries ``1 / sqrt((d_v
  + 1)(d_u + 1))`` times ``d_v / min(k, d_v)``, the inverse chance of keeping it
  (Horvitz–Thompson), so every layer is an unbiased estimate of the full-graph layer (hops are
  drawn independently, so their products stay unbiased). Only this propagation is sampled: the
  semantic rows are exact (the model expands the kNN CSR two hops: a row of eq. 4 reads its
  neighbours' ``X W`` and, for their degrees, the learned weights of their edges), and the
  full-adjacent layers are top-``rwr_top_n`` lists (bounded fan-in), so attention over them is
  exact given the rows above.
- eq. 9 needs, per batch user, the mean fused item over N(u)+ and over N(u)- (= all items minus
  N(u)+). Sampled, both are estimated without bias: the N(u)+ mean from a uniform sample of
  ``boundary_fanout`` of the user's train items, the all-item sum as ``I / S`` times the sum over
  ``S = boundary_items`` items drawn uniformly without replacement for the batch (the one piece
  that reads every item on the whole graph; computing it exactly would cost a full forward per
  step). ``-1`` takes all (exact, up to the sampled collaborative rows).

With all fan-outs, ``boundary_fanout`` and ``boundary_items`` ``-1`` the loss equals the whole
graph's (up to float summation order). The sampled loss is not unbiased (it is non-linear in the
embeddings), as for any sampled GNN. Every draw comes from the batch's generator.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from reelgraph.graph import (FullGraph, Subgraph, csr_rows, csr_tensor, sym_norm_rows,
                             symmetric_csr, undirected_edge_keys)
from reelgraph.samplers.batch import BPRBatch, move
from reelgraph.samplers.neighbor import sample_uniform, sampled_mean
from reelgraph.samplers.plans.base import Plan
from reelgraph.samplers.plans.gcn import SymmetricGraph, sample_subgraph, symmetric_graph


# -- static graph construction ---------------------------------------------------------------
def constraint_beta(deg_row: Tensor, deg_col: Tensor) -> Tensor:
    """Eq. 2's ``beta = (1/d_r) sqrt((d_r+1)/(d_c+1))`` from the two end degrees."""
    d_r = deg_row.float().clamp(min=1)
    return ((d_r + 1) / (deg_col.float() + 1)).sqrt() / d_r


def knn_graph(x: Tensor, k: int, chunk_size: int = 4096) -> Tensor:
    """Top-``k`` cosine neighbours of each row of ``x [n, f]`` (self excluded), ``[n, k]``."""
    z = F.normalize(x.float(), dim=1)
    k = min(k, z.size(0) - 1)
    out = []
    for start in range(0, z.size(0), chunk_size):
        sim = z[start:start + chunk_size] @ z.T                             # [c, n]
        sim[torch.arange(sim.size(0)), torch.arange(start, start + sim.size(0))] = -float("inf")
        out.append(sim.topk(k, dim=1).indices)
    return torch.cat(out)


RWR_TRANSITIONS = ("binary", "random_walk")


def rwr_top_n(rowptr: Tensor, col: Tensor, alpha: float, steps: int, top_n: int,
              chunk_elements: int = 1 << 23, transition: str = "binary") -> tuple[Tensor, Tensor]:
    """Top-``top_n`` other nodes of each row of ``M = sum_{k=1..K} A_k`` (eq. 5) and their
    surfing probabilities, never ``N x N``.

    ``A_k = alpha A_{k-1} T + (1 - alpha) I`` (``A_0 = I``) over the symmetric graph ``(rowptr,
    col)`` with the transition ``T``: ``"binary"`` its 0/1 adjacency, as eq. 5 prints it;
    ``"random_walk"`` the row-stochastic ``D^-1 A`` (DNGR's "transition matrix"). Row ``v`` of
    ``M`` is column ``v`` of ``M^T``: seeds are propagated in chunks as ``[N, c]`` columns (``T^T
    X``) and only each chunk's top-n is kept. Binary entries count walks and grow like ``(alpha
    lambda_max)^k``: after every step each seed's column (``x``, ``m`` and its restart mass) is
    divided by its largest entry, a positive factor per row of ``M`` that changes neither the
    ranking nor the row-normalised values returned, so nothing overflows.

    Returns:
        ``index [N, n]`` and ``prior [N, n]``: the kept ``M`` entries divided by their sum over
        the row (the surfing distribution over the kept neighbours; 0 where fewer nodes are
        reachable).
    """
    if transition not in RWR_TRANSITIONS:
        raise ValueError(f"rwr_top_n: transition={transition!r}; choose from {RWR_TRANSITIONS}")
    n_nodes = rowptr.numel() - 1
    deg = (rowptr[1:] - rowptr[:-1]).clamp(min=1).float()
    values = torch.ones(col.numel(), device=col.device) if transition == "binary" else \
        deg.reciprocal()[col]                                                # P^T = A D^-1
    t_t = csr_tensor(rowptr, col, values, (n_nodes, n_nodes))                # T^T (A symmetric)
    n = min(top_n, n_nodes - 1)
    index = torch.zeros(n_nodes, n, dtype=torch.long, device=col.device)
    prior = torch.zeros(n_nodes, n, device=col.device)
    chunk = max(1, chunk_elements // max(n_nodes, 1))
    for start in range(0, n_nodes, chunk):
        seeds = torch.arange(start, min(start + chunk, n_nodes), device=col.device)
        cols = torch.arange(seeds.numel(), device=col.device)
        x = torch.zeros(n_nodes, seeds.numel(), device=col.device)           # [N, c]
        x[seeds, cols] = 1.0                                                 # A_0 = I
        m, restart = torch.zeros_like(x), torch.full((seeds.numel(),), 1 - alpha,
                                                     device=col.device)
        for _ in range(steps):
            x = alpha * (t_t @ x)
            x[seeds, cols] += restart
            m += x
            scale = m.amax(0).clamp(min=1e-30)                               # [c], per row of M
            x, m, restart = x / scale, m / scale, restart / scale
        m[seeds, cols] = -1.0                                                # never itself
        val, idx = m.topk(n, dim=0)                                          # [n, c]
        val = val.clamp(min=0)
        index[seeds], prior[seeds] = idx.T, (val / val.sum(0).clamp(min=1e-30)).T
    return index, prior


def uniform_items(num_items: int, size: int, generator: torch.Generator | None = None) -> Tensor:
    """``size`` distinct items drawn uniformly (Floyd's algorithm: ``O(size^2)``, never an
    ``[I]`` array); ``size`` ``-1`` or ``>= num_items``: every item."""
    if size < 0 or size >= num_items:
        return torch.arange(num_items)
    rowptr = torch.tensor([0, num_items])
    return sample_uniform(rowptr, torch.zeros(1, dtype=torch.long), size, generator=generator)[1]


@dataclass(frozen=True)
class Neighbourhood:
    """Full-adjacent layer: ``index [N, n]`` neighbours, ``mask [N, n]`` the real ones and
    ``prior [N, n]`` their surfing probabilities (:func:`rwr_top_n`: sum 1 over a row's real ones,
    0 elsewhere), the prior of eq. 6's attention."""
    index: Tensor
    mask: Tensor
    prior: Tensor


@dataclass(frozen=True)
class ModalityGraph:
    """One modality's kNN graph: undirected edges ``row``/``col`` ``[E]`` (CSR order, ``rowptr
    [I + 1]``), ``knn [I, k]`` (L_sem positives), ``beta [I, k]`` their constraint weights, ``rwr``
    its full-adjacent layer (``None`` without the anti-bottleneck module)."""
    row: Tensor
    col: Tensor
    knn: Tensor
    beta: Tensor
    rwr: Neighbourhood | None
    rowptr: Tensor


@dataclass(frozen=True)
class A2BM2GLStatic:
    """Per-device state.

    Attributes:
        graph: eq. 1's edges ``D~^-1/2 A D~^-1/2`` as the whole graph (the operator for training
            on it, or the CSR with degrees ``+ 1`` for chunked no-grad embeddings).
        deg: ``[U + I]`` node degrees.
        rwr: user–item full-adjacent layer (``None`` without the anti-bottleneck module).
        modalities: one :class:`ModalityGraph` per modality, named by ``modality_names``.
    """
    graph: FullGraph
    deg: Tensor
    rwr: Neighbourhood | None
    modalities: tuple[ModalityGraph, ...]
    modality_names: tuple[str, ...]
    num_users: int
    num_items: int


# -- batches ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class BoundaryDraws:
    """Eq. 9's draws for the batch's sorted unique users ``users [b]``: ``(index [M] position in
    users, item [M], weight [M])`` whose weighted sums per user are its mean over N(u)+ (exact, or
    an unbiased estimate), and ``items [S]`` uniform items estimating the all-item sum (times ``I /
    S``; ``None``: every item, exact)."""
    users: Tensor
    index: Tensor
    item: Tensor
    weight: Tensor
    items: Tensor | None


@dataclass(frozen=True)
class A2BM2GLBatch(BPRBatch):
    """BPR triples and the rows A²BM²GL's loss reads (``None``: every row, the whole graph).

    Attributes:
        sub: the sampled neighbourhood of ``cf_rows`` (its seeds, in that order); ``None``: the
            whole graph (``static.graph``).
        cf_rows: sorted node ids ``[R]`` whose collaborative rows are computed.
        fused_users, fused_items: sorted ids ``[b]``, ``[n]`` whose fused rows are computed.
        str_beta: ``[B]`` eq. 2's weights of the triples' positives (L_str), mean-1 rescaled.
        bounds: eq. 9's draws (``None`` without the adaptive loss).
    """
    sub: Subgraph | None
    cf_rows: Tensor | None
    fused_users: Tensor | None
    fused_items: Tensor | None
    str_beta: Tensor
    bounds: BoundaryDraws | None

    @property
    def graph(self) -> Subgraph | FullGraph:
        return self.sub if self.sub is not None else self.static.graph


@dataclass(frozen=True)
class A2BM2GLContext:
    """What sampling reads (memory-mapped): the symmetric bipartite CSR with degrees, the train
    CSR (eq. 9's N(u)+), the user–item full-adjacent lists ``rwr [U + I, n]`` (``None`` without
    the anti-bottleneck module or on the whole graph) and the mean raw eq. 2 weight over train
    edges."""
    graph: SymmetricGraph
    train: tuple[Tensor, Tensor]
    rwr: Tensor | None
    beta_scale: Tensor
    num_items: int


# -- the plan --------------------------------------------------------------------------------
@dataclass(frozen=True)
class A2BM2GLPlan(Plan):
    """Whole-graph (``fanouts=None``) or sampled batches of A²BM²GL and its static graphs; the
    fields (and their defaults) are :class:`~reelgraph.models.a2bm2gl.A2BM2GLConfig`'s."""

    fanouts: tuple[int, ...] | None  # collaborative fan-outs (seeds' hop first, -1 all)
    exclude_targets: bool            # sampled: drop the batch's positive edges
    chunk_size: int                  # sampled: operator rows per chunk of embed()
    boundaries: bool                 # draw eq. 9's items (the adaptive loss; an exact loss reads
    #                                  each user's train items from them too)
    boundary_fanout: int             # sampled: train items per batch user (N(u)+)
    boundary_items: int              # sampled: uniform items for the all-item sum
    anti_bottleneck: bool            # build and read the full-adjacent (RWR) layers
    rwr_alpha: float
    rwr_steps: int
    rwr_top_n: int
    rwr_transition: str              # "binary" (eq. 5 as printed) or "random_walk" (D^-1 A)
    rwr_chunk_elements: int          # memory bound of the RWR build only
    knn_k: int
    modalities: tuple[str, ...] | None  # None: every modality of the store; (): none

    # -- derived arrays --------------------------------------------------------------------
    def modality_names(self, store) -> tuple[str, ...]:
        return tuple(store.modalities) if self.modalities is None else tuple(self.modalities)

    def _rwr(self, store, name: str, params: dict, csr) -> Neighbourhood:
        """The full-adjacent layer of the symmetric CSR ``csr()`` (memory-mapped)."""
        def build() -> dict[str, Tensor]:
            index, prior = rwr_top_n(*csr(), self.rwr_alpha, self.rwr_steps, self.rwr_top_n,
                                     self.rwr_chunk_elements, self.rwr_transition)
            return {"index": index, "mask": prior > 0, "prior": prior}
        r = store.derived("a2bm2gl-rwr", {"graph": name, **params, "alpha": self.rwr_alpha,
                                          "steps": self.rwr_steps, "top_n": self.rwr_top_n,
                                          "transition": self.rwr_transition}, build)
        return Neighbourhood(r["index"], r["mask"], r["prior"])

    def _user_item_rwr(self, store) -> Neighbourhood:
        g = symmetric_graph(store)
        return self._rwr(store, "bipartite", {"split": "train"}, lambda: (g.rowptr, g.col))

    def _knn(self, store, modality: str) -> dict[str, Tensor]:
        """The kNN graph of one modality: ``knn [I, k]``, its symmetric CSR ``rowptr``, ``col``
        and the lists' constraint weights ``beta [I, k]``."""
        def build() -> dict[str, Tensor]:
            x = F.normalize(store.feature(modality).float(), dim=1)  # the model's unit rows
            knn = knn_graph(x, self.knn_k)                           # [I, k]
            rowptr, col, deg = symmetric_csr(torch.arange(knn.size(0)).repeat_interleave(
                knn.size(1)), knn.flatten(), knn.size(0))
            row = csr_rows(rowptr)
            scale = constraint_beta(deg[row], deg[col]).mean()
            beta = constraint_beta(deg.unsqueeze(1).expand_as(knn), deg[knn]) / scale
            return {"knn": knn, "rowptr": rowptr, "col": col, "beta": beta}
        return store.derived("a2bm2gl-knn", {"modality": modality, "k": self.knn_k}, build)

    def _modality_graph(self, store, modality: str) -> ModalityGraph:
        a = self._knn(store, modality)
        rwr = None
        if self.anti_bottleneck:
            rwr = self._rwr(store, f"knn-{modality}", {"k": self.knn_k},
                            lambda: (a["rowptr"], a["col"]))
        return ModalityGraph(csr_rows(a["rowptr"]), a["col"], a["knn"], a["beta"], rwr,
                             a["rowptr"])

    @staticmethod
    def _beta_scale(store) -> Tensor:
        """Mean of eq. 2's raw weights over the train edges (a 0-d tensor)."""
        def build() -> dict[str, Tensor]:
            train = store.graph("train")
            deg_u, deg_i = train.degree()
            return {"scale": constraint_beta(deg_u[train.users()], deg_i[train.col]).mean()[None]}
        return store.derived("a2bm2gl-beta-scale", {"split": "train"}, build)["scale"][0]

    # -- per process / per device ----------------------------------------------------------
    def context(self, store) -> A2BM2GLContext:
        train = store.graph("train")
        rwr = None  # sampled: the fused rows' full-adjacent neighbours are collaborative rows too
        if self.anti_bottleneck and self.fanouts is not None:
            rwr = self._user_item_rwr(store).index
        return A2BM2GLContext(symmetric_graph(store), (train.rowptr, train.col), rwr,
                              self._beta_scale(store), store.num_items)

    def static(self, store, device: torch.device) -> A2BM2GLStatic:
        g = symmetric_graph(store).to(device)
        norm = g.deg + 1  # D~ = D + I; the self-loop term is the model's
        if self.fanouts is None:
            graph = FullGraph(g.num_nodes, adj=sym_norm_rows(g.rowptr, g.col, norm))
        else:
            graph = FullGraph(g.num_nodes, csr=(g.rowptr, g.col, norm), chunk_size=self.chunk_size)
        rwr = None
        if self.anti_bottleneck:
            rwr = move(self._user_item_rwr(store), device)
        names = self.modality_names(store)
        mods = tuple(move(self._modality_graph(store, m), device) for m in names)
        return A2BM2GLStatic(graph, g.deg, rwr, mods, names, store.num_users, store.num_items)

    # -- per batch -------------------------------------------------------------------------
    def _boundary_draws(self, ctx: A2BM2GLContext, users: Tensor,
                        generator: torch.Generator) -> BoundaryDraws:
        """Eq. 9's draws for sorted unique ``users``; exact on the whole graph."""
        sampled = self.fanouts is not None
        k = self.boundary_fanout if sampled else -1
        index, item, weight = sampled_mean(*ctx.train, users, k, generator=generator)
        items = uniform_items(ctx.num_items, self.boundary_items, generator) if sampled else None
        return BoundaryDraws(users, index, item, weight, items)

    def sample(self, ctx: A2BM2GLContext, triples: BPRBatch, generator: torch.Generator
               ) -> A2BM2GLBatch:
        U, deg = ctx.graph.num_users, ctx.graph.deg
        users = torch.unique(triples.users)
        beta = constraint_beta(deg[triples.users], deg[U + triples.pos]) / ctx.beta_scale  # [B]
        bounds = self._boundary_draws(ctx, users, generator) if self.boundaries else None
        rows = dict(sub=None, cf_rows=None, fused_users=None, fused_items=None)
        if self.fanouts is not None:
            rows = self._sampled_rows(ctx, triples, users, bounds, generator)
        return A2BM2GLBatch(triples.users, triples.pos, triples.neg, **rows, str_beta=beta,
                            bounds=bounds, seed=triples.seed)

    def _sampled_rows(self, ctx: A2BM2GLContext, triples: BPRBatch, users: Tensor,
                      bounds: BoundaryDraws | None, generator: torch.Generator) -> dict:
        """The fused rows, the collaborative rows they read and those rows' neighbourhood."""
        U = ctx.graph.num_users
        parts = [triples.pos, triples.neg.flatten()]
        if bounds is not None:
            parts += [bounds.item, bounds.items]
        items = torch.unique(torch.cat(parts))
        fused = torch.cat([users, items + U])                        # sorted
        need = fused
        if ctx.rwr is not None:
            need = torch.unique(torch.cat([fused, ctx.rwr[fused].flatten()]))
        keys = None
        if self.exclude_targets:
            keys = undirected_edge_keys(triples.users, triples.pos + U, ctx.graph.num_nodes)
        sub = sample_subgraph(ctx.graph, need, self.fanouts, keys, generator, self_loops=True)
        return dict(sub=sub, cf_rows=need, fused_users=users, fused_items=items)
