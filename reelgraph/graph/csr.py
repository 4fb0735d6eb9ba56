"""CSR tensors: building, transposing, expanding rows, edge keys and membership tests.

Plain functions over ``(rowptr, col)``; they run unchanged on CPU and CUDA, and on memory-mapped
tensors (they index only the rows they are given, unless said otherwise).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from reelgraph.errors import ConfigError

CSR = tuple[Tensor, Tensor]


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
    """The row index of every CSR slot, ``[E]`` (``O(E)``)."""
    deg = rowptr[1:] - rowptr[:-1]
    return torch.repeat_interleave(torch.arange(deg.numel(), device=rowptr.device), deg)


def row_slots(start: Tensor, deg: Tensor) -> tuple[Tensor, Tensor]:
    """Every slot of rows given by ``(start [R], deg [R])``: ``(row position [M], slot [M])``."""
    pos = torch.repeat_interleave(torch.arange(deg.numel(), device=deg.device), deg)
    first = torch.cumsum(deg, 0) - deg  # [R] offset of each row's block in the output
    offset = torch.arange(pos.numel(), device=deg.device) - first[pos]
    return pos, start[pos] + offset


def expand_rows(rowptr: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
    """Every CSR slot of ``rows [R]``: ``(position in rows [M], slot [M])``."""
    start = rowptr[rows]
    return row_slots(start, rowptr[rows + 1] - start)


def transpose_csr(rowptr: Tensor, col: Tensor, num_cols: int) -> CSR:
    """The CSR of the reversed edges; rows of a row-sorted CSR come out sorted (``O(E)``)."""
    rev_rowptr, rev_col, _ = to_csr(col, csr_rows(rowptr), num_cols)
    return rev_rowptr, rev_col


def symmetric_csr(row: Tensor, col: Tensor, num_nodes: int) -> tuple[Tensor, Tensor, Tensor]:
    """The undirected graph of edges ``(row, col)`` over one node set, each edge once per
    direction, rows sorted: ``rowptr [N + 1]``, ``col [2M']`` and degrees ``[N]``."""
    keys = torch.unique(torch.cat([edge_keys(row, col, num_nodes), edge_keys(col, row, num_nodes)]))
    rowptr, c, _ = to_csr(keys // num_nodes, keys % num_nodes, num_nodes)
    return rowptr, c, rowptr[1:] - rowptr[:-1]


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


def csr_contains(rowptr: Tensor, col: Tensor, row: Tensor, target: Tensor) -> Tensor:
    """Whether ``target`` is among the columns of ``row`` (any matching shapes), by a binary
    search inside each row: columns must be sorted within rows. Reads ``O(log deg)`` slots per
    query and never the whole CSR, so it suits memory-mapped graphs of any size."""
    lo, end = rowptr[row], rowptr[row + 1]
    hi, target = end.clone(), target.to(col.dtype)
    last = max(col.numel() - 1, 0)
    steps = int((hi - lo).max()).bit_length() if lo.numel() else 0
    for _ in range(steps):  # lower bound: first slot whose column is >= target
        mid = (lo + hi) // 2
        go = (mid < hi) & (col[mid.clamp(max=last)] < target)
        lo, hi = torch.where(go, mid + 1, lo), torch.where(go, hi, mid)
    if col.numel() == 0:
        return torch.zeros_like(row, dtype=torch.bool)
    return (lo < end) & (col[lo.clamp(max=last)] == target)


def check_fanouts(fanouts, num_layers: int, owner: str) -> None:
    """Raises ``ValueError`` unless ``fanouts`` is ``None`` or one fan-out (``>= 1`` or ``-1``)
    per layer."""
    if fanouts is None:
        return
    if len(fanouts) != num_layers:
        raise ConfigError(f"{owner}: {len(fanouts)} fanouts {list(fanouts)} for num_layers="
                         f"{num_layers}; give one per layer (seeds' hop first, -1 = all "
                         "neighbours) or fanouts=None for full-graph training")
    if any(k == 0 or k < -1 for k in fanouts):
        raise ConfigError(f"{owner}: fanouts {list(fanouts)} must be >= 1 or -1")


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

    def edge_users(self, slots: Tensor) -> Tensor:
        """User of each CSR slot in ``slots`` (``O(log U)`` each, no ``[E]`` array)."""
        return torch.searchsorted(self.rowptr, slots, right=True) - 1

    def keys(self) -> Tensor:
        """Sorted ``user * num_items + item`` keys of all edges, ``[E]``."""
        return edge_keys(self.users(), self.col, self.num_items)

    def symmetric(self) -> tuple[Tensor, Tensor, Tensor]:
        """The symmetric ``(U + I)``-node CSR (users ``0..U-1``, items ``U..U+I-1``), rows sorted:
        ``rowptr [U + I + 1]``, ``col [2E]`` and degrees ``[U + I]``."""
        U = self.num_users
        t_rowptr, t_col = transpose_csr(self.rowptr, self.col, self.num_items)  # item rows
        rowptr = torch.cat([self.rowptr, self.rowptr[-1] + t_rowptr[1:]])
        col = torch.cat([self.col.long() + U, t_col.long()])
        return rowptr, col, rowptr[1:] - rowptr[:-1]

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
