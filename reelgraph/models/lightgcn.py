"""LightGCN (He et al., SIGIR 2020): linear propagation over the user–item graph, no weights.

``E^(l+1) = D^-1/2 A D^-1/2 E^(l)`` over the ``(U + I) x (U + I)`` bipartite adjacency ``A``;
the final embedding is the mean of layers ``0..L``, scored by inner product and trained with BPR
plus L2 on the batch's layer-0 embeddings (the reference recipe).

Two training modes, chosen by ``LightGCNConfig.fanouts``:

* ``None`` (full graph): ``prepare`` builds the normalised adjacency as a sparse CSR and every
  step propagates all ``U + I`` rows.
* a list of ``L`` fan-outs (sampled mini-batches, for graphs whose full propagation does not fit
  one device): ``prepare`` keeps only the symmetric CSR and the node degrees; each step samples
  the ``L``-hop neighbourhood of the batch's unique users, positives and negatives with
  :func:`reelgraph.samplers.neighbor.neighbor_sample` and propagates over that subgraph only, as
  :class:`reelgraph.models.sage.SAGE` does. A node ``v`` expanded with fan-out ``k`` keeps
  ``min(k, d_v)`` of its ``d_v`` neighbours, each included with probability ``min(k, d_v) / d_v``;
  the edge weight is ``1 / sqrt(d_v d_u)`` with the FULL-graph degrees times ``d_v / min(k, d_v)``
  (Horvitz–Thompson), so every sampled layer is an unbiased estimate of the full-graph layer
  (each hop's draw is independent of the next, so products of layers stay unbiased). With all
  fan-outs ``-1`` the seeds' embeddings are exactly the full-graph ones. The loss is not unbiased
  (BPR is non-linear in the embeddings), as for any sampled GNN.

  Target edges: by default the batch's positive edges stay in the sampled neighbourhoods, unlike
  SAGE. Full-graph LightGCN (the reference recipe, and ``fanouts=None`` here) propagates over
  every training edge, positives included, and :meth:`LightGCN.embed` scores with that same
  graph, so keeping them makes the sampled mode an unbiased estimate of the model being
  evaluated. SAGE removes them because its learnt aggregators could learn to read a positive
  off its own pair's neighbourhood; LightGCN has no aggregator weights. ``exclude_targets=True``
  removes them anyway (both directions; degrees stay the full-graph ones).

The sampled machinery (``prepare``, ``sample``, the sampled BPR loss) lives in
:class:`SampledGCN`, shared with :class:`~reelgraph.models.ngcf.NGCF` and
:class:`~reelgraph.models.simgcl.SimGCL`; each model only supplies its layer step over the sampled
subgraph (:func:`reelgraph.models.subgraph.hop_propagate`) and its full-graph ``embed``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from reelgraph.graph import BipartiteGraph, csr_rows, to_csr, undirected_edge_keys
from reelgraph.models.base import ModelConfig, Recommender, bpr_loss, l2_loss
from reelgraph.models.subgraph import Subgraph, hop_propagate
from reelgraph.samplers.batch import BPRBatch
from reelgraph.samplers.neighbor import neighbor_sample


@dataclass
class SampledGCNConfig(ModelConfig):
    """Training-mode fields of the :class:`SampledGCN` models' configs (their own fields follow)."""

    fanouts: list[int] | None = None  # None: full graph; else sampled, one per layer, seeds'
    #                                   hop first, -1 = all neighbours
    exclude_targets: bool = False     # sampled: drop the batch's positive edges (module doc)
    chunk_size: int = 65536           # sampled: embed() rows per chunk of the adjacency

    def __post_init__(self):
        fanouts, name = self.fanouts, type(self).__name__
        if fanouts is None:
            return
        if len(fanouts) != self.num_layers:
            raise ValueError(f"{name}: {len(fanouts)} fanouts {list(fanouts)} for num_layers="
                             f"{self.num_layers}; give one per layer (seeds' hop first, -1 = all "
                             "neighbours) or fanouts=None for full-graph training")
        if any(k == 0 or k < -1 for k in fanouts):
            raise ValueError(f"{name}: fanouts {list(fanouts)} must be >= 1 or -1")


@dataclass
class LightGCNConfig(SampledGCNConfig):
    embedding_dim: int = 64   # d
    num_layers: int = 3       # L propagation steps
    reg_weight: float = 1e-4  # L2 on the batch's layer-0 embeddings
    init_std: float = 0.1     # normal init of the layer-0 tables

    def build(self, store) -> "LightGCN":
        return LightGCN(store.num_users, store.num_items, self)


@dataclass(frozen=True)
class SampledState:
    """What :meth:`LightGCN.prepare` keeps in sampled mode (no adjacency values, nothing dense).

    Attributes:
        rowptr, col: ``[U + I + 1]``, ``[2E]`` CSR of the symmetric bipartite graph.
        deg: ``[U + I]`` full-graph node degrees.
    """

    rowptr: Tensor
    col: Tensor
    deg: Tensor


def bipartite_csr(graph: BipartiteGraph) -> tuple[Tensor, Tensor, Tensor]:
    """The symmetric ``(U + I)``-node CSR (users ``0..U-1``, items ``U..U+I-1``):
    ``rowptr [U + I + 1]``, ``col [2E]`` and degrees ``[U + I]``."""
    U, N = graph.num_users, graph.num_users + graph.num_items
    users, items = graph.users(), graph.col + U
    rowptr, col, _ = to_csr(torch.cat([users, items]), torch.cat([items, users]), N)
    return rowptr, col, rowptr[1:] - rowptr[:-1]


def _csr_tensor(rowptr: Tensor, col: Tensor, values: Tensor, shape: tuple[int, int],
                index_dtype: torch.dtype) -> Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(rowptr.to(index_dtype), col.to(index_dtype), values, shape)


def sym_norm_rows(rowptr: Tensor, col: Tensor, deg: Tensor, start: int = 0, stop: int | None = None,
                  index_dtype: torch.dtype = torch.int32) -> Tensor:
    """Rows ``start..stop-1`` of ``D^-1/2 A D^-1/2`` as a sparse CSR ``[stop - start, N]``, from
    the symmetric CSR ``(rowptr [N + 1], col)`` and degrees ``deg [N]``."""
    N = rowptr.numel() - 1
    stop = N if stop is None else stop
    ptr = rowptr[start: stop + 1] - rowptr[start]
    c = col[rowptr[start]: rowptr[stop]]
    w = (deg[csr_rows(ptr) + start].float() * deg[c].float()).rsqrt()  # [nnz]
    return _csr_tensor(ptr, c, w, (stop - start, N), index_dtype)


def sym_norm_adjacency(graph: BipartiteGraph, index_dtype: torch.dtype = torch.int32) -> Tensor:
    """``D^-1/2 A D^-1/2`` of the bipartite graph as a sparse CSR ``[U + I, U + I]``.

    Users are nodes ``0..U-1``, items ``U..U+I-1``; isolated nodes get zero rows. int32 indices
    take the fast MKL kernel on CPU.
    """
    return sym_norm_rows(*bipartite_csr(graph), index_dtype=index_dtype)


class _SymmetricSpMM(torch.autograd.Function):
    """``adj @ x`` whose backward reuses ``adj`` (it is symmetric), never transposing a CSR."""

    @staticmethod
    def forward(ctx, adj: Tensor, x: Tensor) -> Tensor:
        ctx.adj = adj
        return adj @ x

    @staticmethod
    def backward(ctx, grad: Tensor):
        return None, ctx.adj @ grad


def sym_spmm(adj: Tensor, x: Tensor) -> Tensor:
    """``adj @ x`` for a symmetric sparse ``adj``, differentiable in ``x``."""
    return _SymmetricSpMM.apply(adj, x)


def propagate(adj: Tensor, x: Tensor, num_layers: int) -> Tensor:
    """Mean of ``x, adj x, ..., adj^L x`` for a symmetric ``adj``; ``x [N, d]`` → ``[N, d]``."""
    out, h = x, x
    for _ in range(num_layers):
        h = sym_spmm(adj, h)
        out = out + h
    return out / (num_layers + 1)


@torch.no_grad()
def chunked_spmm(state: SampledState, h: Tensor, chunk_size: int) -> Tensor:
    """``D^-1/2 A D^-1/2 h`` without gradients, building ``chunk_size`` rows of the normalised
    adjacency at a time; ``h [N, d]`` → ``[N, d]``."""
    N = h.size(0)
    return torch.cat([sym_norm_rows(state.rowptr, state.col, state.deg, s, min(s + chunk_size, N))
                      @ h for s in range(0, N, chunk_size)])


@torch.no_grad()
def chunked_propagate(state: SampledState, x: Tensor, num_layers: int, chunk_size: int,
                      ego_layer: bool = True) -> Tensor:
    """:func:`propagate` without gradients, by :func:`chunked_spmm`; the mean of layers ``0..L``
    (``1..L`` without ``ego_layer``); ``x [N, d]`` → ``[N, d]``. Memory: three ``[N, d]`` tables
    plus one chunk's edges."""
    out, h = (x.clone() if ego_layer else torch.zeros_like(x)), x
    for _ in range(num_layers):
        h = chunked_spmm(state, h, chunk_size)
        out += h
    return out / (num_layers + ego_layer)


def sample_subgraph(state: SampledState, seeds: Tensor, fanouts: list[int],
                    exclude_keys: Tensor | None = None) -> Subgraph:
    """The ``L``-hop neighbourhood of unique ``seeds [S]`` (``neighbor_sample``, without the edges
    whose sorted keys are ``exclude_keys``) weighted ``1 / sqrt(d_v d_u)`` with full-graph degrees
    times ``d_v / min(k, d_v)``, the inverse chance of keeping an edge (module doc)."""
    out = neighbor_sample(state.rowptr, state.col, seeds, fanouts=fanouts,
                          exclude_keys=exclude_keys)
    v, u = out.node[out.row], out.node[out.col]  # [M] global ids
    k = torch.repeat_interleave(torch.tensor(fanouts, device=seeds.device),
                                torch.tensor(out.num_sampled_edges, device=seeds.device))
    dv, du = state.deg[v].float(), state.deg[u].float()
    scale = torch.where((k < 0) | (state.deg[v] <= k), 1.0, dv / k.clamp(min=1))  # 1/P(kept)
    return Subgraph(out.node, out.row, out.col, scale * (dv * du).rsqrt(),
                    out.num_sampled_nodes, out.num_sampled_edges)


def batch_seeds(batch: BPRBatch, num_users: int) -> tuple[Tensor, Tensor]:
    """The batch's unique global nodes ``seeds [S]`` (users, then items ``U + i``) and ``inv
    [B (2 + k)]``, the seed index of ``batch.users`` followed by ``[pos, neg...]`` row by row."""
    items = torch.cat([batch.pos.unsqueeze(1), batch.neg], 1)  # [B, 1 + k]
    return torch.unique(torch.cat([batch.users, items.flatten() + num_users]), return_inverse=True)


class SampledGCN(Recommender):
    """A GCN over one ``[U + I, d]`` layer-0 table and the symmetric-normalised bipartite graph,
    trained full-graph or on sampled subgraphs by ``config.fanouts`` (module doc).

    Subclasses set their weights and call ``reset_parameters``, and define ``embed(state)`` (the
    FULL-graph embeddings in both modes; sampled: evaluation only, chunked, no gradients) and
    ``forward(sub)`` → ``(out [S, d'], h0 [S, d])``: the seeds' final and layer-0 rows over a
    sampled subgraph, usually by :func:`~reelgraph.models.subgraph.hop_propagate`. The config
    needs ``num_layers``, ``reg_weight``, ``embedding_dim``, ``fanouts``, ``exclude_targets`` and
    ``chunk_size``.
    """

    def __init__(self, num_users: int, num_items: int, config):
        super().__init__()
        self.num_users, self.num_items, self.config = num_users, num_items, config
        self.reg_weight = config.reg_weight
        self.embedding = nn.Embedding(num_users + num_items, config.embedding_dim)  # users first
        self.sampled = config.fanouts is not None

    def prepare(self, graph: BipartiteGraph) -> Tensor | SampledState:
        """Full graph: the ``[U + I, U + I]`` sparse normalised adjacency. Sampled: a
        :class:`SampledState` (CSR and degrees only)."""
        if self.sampled:
            return SampledState(*bipartite_csr(graph))
        return sym_norm_adjacency(graph)

    def ego_embeddings(self) -> tuple[Tensor, Tensor]:
        return self.embedding.weight[: self.num_users], self.embedding.weight[self.num_users:]

    def sample(self, state: SampledState, seeds: Tensor, users: Tensor | None = None,
               pos: Tensor | None = None) -> Subgraph:
        """:func:`sample_subgraph` of unique global ``seeds [S]`` with ``config.fanouts``; target
        edges ``(users[b], U + pos[b])`` are left out (both directions) when
        ``config.exclude_targets``."""
        keys = None
        if self.config.exclude_targets and users is not None:
            keys = undirected_edge_keys(users, pos + self.num_users, state.rowptr.numel() - 1)
        return sample_subgraph(state, seeds, list(self.config.fanouts), keys)

    def seed_bpr(self, batch: BPRBatch, inv: Tensor, out: Tensor, h0: Tensor) -> dict[str, Tensor]:
        """BPR + L2 from the seeds' final rows ``out [S, d']`` and layer-0 rows ``h0 [S, d]``;
        ``inv`` from :func:`batch_seeds`."""
        B = len(batch)
        u, it = out[inv[:B]], out[inv[B:]].view(B, 1 + batch.neg.size(1), -1)
        score = torch.einsum("bd,bkd->bk", u, it)  # [B, 1 + k]: positive, then negatives
        bpr = bpr_loss(score[:, 0], score[:, 1:])
        reg = l2_loss(h0[inv]) / B
        return {"loss": bpr + self.reg_weight * reg, "bpr": bpr, "l2": reg}

    def loss(self, batch: BPRBatch, state: Tensor | SampledState) -> dict[str, Tensor]:
        """BPR + L2 on the batch's layer-0 rows; full graph: :meth:`Recommender.loss`."""
        if not self.sampled:
            return super().loss(batch, state)
        seeds, inv = batch_seeds(batch, self.num_users)
        return self.seed_bpr(batch, inv, *self(self.sample(state, seeds, batch.users, batch.pos)))


class LightGCN(SampledGCN):
    """LightGCN; full-graph or sampled training by ``config.fanouts`` (see the module doc)."""

    def __init__(self, num_users: int, num_items: int, config: LightGCNConfig = LightGCNConfig()):
        super().__init__(num_users, num_items, config)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.embedding.weight, std=self.config.init_std)

    def embed(self, state: Tensor | SampledState) -> tuple[Tensor, Tensor]:
        """``(user [U, d], item [I, d])`` of the FULL-graph propagation in both modes. Sampled
        mode (evaluation only): no gradients, the adjacency built ``chunk_size`` rows at a time
        from the kept CSR (:func:`chunked_propagate`)."""
        if self.sampled:
            out = chunked_propagate(state, self.embedding.weight, self.config.num_layers,
                                    self.config.chunk_size)
        else:
            out = propagate(state, self.embedding.weight, self.config.num_layers)  # [U + I, d]
        return out[: self.num_users], out[self.num_users:]

    def forward(self, sub: Subgraph) -> tuple[Tensor, Tensor]:
        """Mean of layers ``0..L`` of the seeds ``[S, d]`` and their layer-0 rows ``[S, d]``."""
        layers = hop_propagate(sub, self.embedding(sub.node), self.config.num_layers,
                               lambda l, adj, h: torch.sparse.mm(adj, h))  # no [M, d] messages
        return torch.stack(layers).mean(0), layers[0]
