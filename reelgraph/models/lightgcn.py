"""LightGCN (He et al., SIGIR 2020): linear propagation over the user–item graph, no weights.

``E^(l+1) = D^-1/2 A D^-1/2 E^(l)`` over the ``(U + I) x (U + I)`` bipartite adjacency ``A``;
the final embedding is the mean of layers ``0..L``, scored by inner product and trained with BPR
plus L2 on the batch's layer-0 embeddings (the reference recipe).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from reelgraph.graph import BipartiteGraph, to_csr
from reelgraph.models.base import ModelConfig, Recommender


@dataclass
class LightGCNConfig(ModelConfig):
    embedding_dim: int = 64   # d
    num_layers: int = 3       # L propagation steps
    reg_weight: float = 1e-4  # L2 on the batch's layer-0 embeddings
    init_std: float = 0.1     # normal init of the layer-0 tables

    def build(self, store) -> "LightGCN":
        return LightGCN(store.num_users, store.num_items, self)


def sym_norm_adjacency(graph: BipartiteGraph, index_dtype: torch.dtype = torch.int32) -> Tensor:
    """``D^-1/2 A D^-1/2`` of the bipartite graph as a sparse CSR ``[U + I, U + I]``.

    Users are nodes ``0..U-1``, items ``U..U+I-1``; isolated nodes get zero rows. int32 indices
    take the fast MKL kernel on CPU.
    """
    U, N = graph.num_users, graph.num_users + graph.num_items
    users, items = graph.users(), graph.col + U
    deg_u, deg_i = graph.degree()
    w = (deg_u[users].float() * deg_i[graph.col].float()).rsqrt()  # [E]
    row, col = torch.cat([users, items]), torch.cat([items, users])
    rowptr, col, perm = to_csr(row, col, N)
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(rowptr.to(index_dtype), col.to(index_dtype),
                                       torch.cat([w, w])[perm], (N, N))


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


class LightGCN(Recommender):
    def __init__(self, num_users: int, num_items: int, config: LightGCNConfig = LightGCNConfig()):
        super().__init__()
        self.num_users, self.num_items, self.config = num_users, num_items, config
        self.reg_weight = config.reg_weight
        self.embedding = nn.Embedding(num_users + num_items, config.embedding_dim)  # users first
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.embedding.weight, std=self.config.init_std)

    def prepare(self, graph: BipartiteGraph) -> Tensor:
        return sym_norm_adjacency(graph)

    def ego_embeddings(self) -> tuple[Tensor, Tensor]:
        return self.embedding.weight[: self.num_users], self.embedding.weight[self.num_users:]

    def embed(self, adj: Tensor) -> tuple[Tensor, Tensor]:
        out = propagate(adj, self.embedding.weight, self.config.num_layers)  # [U + I, d]
        return out[: self.num_users], out[self.num_users:]
