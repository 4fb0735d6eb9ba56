"""CSR graph tensors shared by the data layer, the samplers and the models.

Plain functions over ``(rowptr, col)``; they run unchanged on CPU and CUDA.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def to_csr(row: Tensor, col: Tensor, num_rows: int) -> tuple[Tensor, Tensor, Tensor]:
    """Sorts COO edges by ``row`` (stable, so ``col`` order within a row is kept).

    Returns:
        ``rowptr [num_rows + 1]``, ``col [E]`` and ``perm [E]`` (the original edge id of each
        CSR slot).
    """
    perm = torch.argsort(row, stable=True)
    counts = torch.bincount(row, minlength=num_rows)
    rowptr = torch.zeros(num_rows + 1, dtype=torch.long, device=row.device)
    torch.cumsum(counts, 0, out=rowptr[1:])
    return rowptr, col[perm], perm


def csr_rows(rowptr: Tensor) -> Tensor:
    """The row index of every CSR slot, ``[E]``."""
    deg = rowptr[1:] - rowptr[:-1]
    return torch.repeat_interleave(torch.arange(deg.numel(), device=rowptr.device), deg)


def edge_keys(row: Tensor, col: Tensor, num_cols: int) -> Tensor:
    """One int64 key per edge, ``row * num_cols + col``; sorted CSR edges give sorted keys."""
    return row.long() * num_cols + col.long()


def undirected_edge_keys(row: Tensor, col: Tensor, num_nodes: int) -> Tensor:
    """Sorted keys of ``(row, col)`` and ``(col, row)`` over one node set, ``[2M]``: edges to
    exclude in both directions (``neighbor_sample(exclude_keys=...)``)."""
    return torch.sort(torch.cat([edge_keys(row, col, num_nodes),
                                 edge_keys(col, row, num_nodes)])).values


def contains_edges(sorted_keys: Tensor, row: Tensor, col: Tensor, num_cols: int) -> Tensor:
    """Whether each ``(row, col)`` is among the edges whose sorted keys are ``sorted_keys``."""
    keys = edge_keys(row, col, num_cols)
    if sorted_keys.numel() == 0:
        return torch.zeros_like(keys, dtype=torch.bool)
    pos = torch.searchsorted(sorted_keys, keys).clamp_(max=sorted_keys.numel() - 1)
    return sorted_keys[pos] == keys


@dataclass(frozen=True)
class BipartiteGraph:
    """User→item interactions as CSR.

    Attributes:
        num_users, num_items: node counts.
        rowptr (Tensor): ``[num_users + 1]`` int64.
        col (Tensor): ``[E]`` int64 item index of each edge, sorted within each user.
    """

    num_users: int
    num_items: int
    rowptr: Tensor
    col: Tensor

    @property
    def num_edges(self) -> int:
        return self.col.numel()

    @property
    def device(self) -> torch.device:
        return self.col.device

    def degree(self) -> tuple[Tensor, Tensor]:
        """User degrees ``[num_users]`` and item degrees ``[num_items]``."""
        return (self.rowptr[1:] - self.rowptr[:-1],
                torch.bincount(self.col, minlength=self.num_items))

    def users(self) -> Tensor:
        """User index of each edge, ``[E]``."""
        return csr_rows(self.rowptr)

    def keys(self) -> Tensor:
        """Sorted ``user * num_items + item`` keys of all edges, ``[E]``."""
        return edge_keys(self.users(), self.col, self.num_items)

    def to(self, device: torch.device | str) -> "BipartiteGraph":
        return BipartiteGraph(self.num_users, self.num_items,
                              self.rowptr.to(device), self.col.to(device))

    @classmethod
    def from_edges(cls, users: Tensor, items: Tensor, num_users: int, num_items: int
                   ) -> "BipartiteGraph":
        """From COO edges; duplicates are the caller's to remove."""
        return _from_sorted_keys(torch.sort(edge_keys(users, items, num_items)).values,
                                 num_users, num_items)


def _from_sorted_keys(keys: Tensor, num_users: int, num_items: int) -> BipartiteGraph:
    rowptr, _, _ = to_csr(keys // num_items, keys, num_users)
    return BipartiteGraph(num_users, num_items, rowptr, keys % num_items)


def union(a: BipartiteGraph, b: BipartiteGraph) -> BipartiteGraph:
    """The edges of both graphs (same node sets), each once."""
    return _from_sorted_keys(torch.unique(torch.cat([a.keys(), b.keys()])), a.num_users, a.num_items)
