"""Same-type neighbours by relationship tightness over a bipartite CSR (the importance-sampling
GNN for micro-video recommendation, eqs. 2-3).

A user's neighbours are users who share items with it, an item's are items sharing users, and
the tightness of two nodes is the number of neighbours they share, ``r_vn = |N(v) ∩ N(n)|``.
Enumerating every two-hop pair costs ``sum_i deg_i^2``, which a popular item makes quadratic,
so :func:`co_interaction_graph` finds each row's candidates by ``num_walks`` two-step uniform
walks (``v → x → n``: a candidate is found with probability growing with ``r_vn``) and counts
``r_vn`` exactly for the candidates found. The result is a CSR over one node set with the counts
as edge weights, built once per store; :func:`~reelgraph.samplers.pinsage.tightness_neighbors`
then draws from it per batch by the softmax of the counts (eq. 3).
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from reelgraph.graph import contains_edges, csr_rows, edge_keys, row_slots, to_csr
from reelgraph.samplers.pinsage import walk_step

CSR = tuple[Tensor, Tensor]


def co_interaction_graph(forward: CSR, backward: CSR, *, num_walks: int,
                         generator: torch.Generator | None = None, chunk_size: int = 65536,
                         count_budget: int = 1 << 22) -> tuple[Tensor, Tensor, Tensor]:
    """Rows of ``forward`` linked to the rows reached by two-step walks, with tightness counts.

    Args:
        forward (tuple): ``(rowptr [R + 1], col)`` row → other side (e.g. user → item), columns
            sorted within rows.
        backward (tuple): its transpose (item → user).
        num_walks (int): two-step walks per row (``v → x → n``; ``n != v`` kept, once each).
        generator (torch.Generator, optional): on the CSR device.
        chunk_size (int): rows walked at once (memory ``O(chunk_size * num_walks)``).
        count_budget (int): neighbour-list entries scanned at once when counting: each pair is
            counted over the SHORTER of its two lists, looked up in the other's sorted keys, so
            a popular candidate costs its partner's degree, and memory stays
            ``O(count_budget + pairs)`` whatever the degrees.

    Returns:
        ``rowptr [R + 1]``, ``col [E']`` (same-type neighbours, sorted within rows) and
        ``shared [E']`` float32, ``|N(v) ∩ N(n)|`` counted exactly (``>= 1``).
    """
    rowptr, col = forward
    R, num_cols = rowptr.numel() - 1, backward[0].numel() - 1
    keys = torch.sort(edge_keys(csr_rows(rowptr), col, num_cols)).values  # [E]
    found = []
    for start in range(0, R, chunk_size):
        rows = torch.arange(start, min(start + chunk_size, R), device=rowptr.device)
        home = rows.repeat_interleave(num_walks)  # [C W]
        mid = walk_step(rowptr, col, home, generator)
        end = walk_step(*backward, mid, generator)
        keep = (end >= 0) & (end != home)
        found.append(torch.unique(edge_keys(home[keep], end[keep], R)))  # sorted pair keys
    pair = torch.cat(found) if found else rowptr.new_zeros(0)
    v, n = pair // R, pair % R  # [P] row, candidate
    shared = shared_counts(rowptr, col, keys, num_cols, v, n, count_budget)
    out_rowptr, out_col, perm = to_csr(v, n, R)
    return out_rowptr, out_col, shared[perm]


def shared_counts(rowptr: Tensor, col: Tensor, keys: Tensor, num_cols: int, v: Tensor,
                  n: Tensor, budget: int) -> Tensor:
    """``|N(v) ∩ N(n)|`` per pair ``(v [P], n [P])`` of rows of ``(rowptr, col)`` (float32;
    ``keys`` its sorted :func:`~reelgraph.graph.edge_keys`): the shorter list of each pair
    scanned and looked up in the keys of the other row, pairs taken in runs whose scanned
    entries stay within ``budget`` (a run holds one pair at least). Reads only the pairs' rows."""
    dv, dn = rowptr[v + 1] - rowptr[v], rowptr[n + 1] - rowptr[n]  # [P] degrees
    short = dv <= dn
    a, b = torch.where(short, v, n), torch.where(short, n, v)  # scan a's list, look up in b's
    da = torch.where(short, dv, dn)  # [P]
    shared = torch.zeros(v.numel(), dtype=torch.float32, device=v.device)
    for start, end in budget_runs(torch.cumsum(da, 0), budget):
        e, slot = row_slots(rowptr[a[start:end]], da[start:end])  # [M] pair, slot
        hit = contains_edges(keys, b[start:end][e], col[slot], num_cols)
        shared[start:end] = torch.bincount(e[hit], minlength=end - start).float()
    return shared


def budget_runs(cost: Tensor, budget: int) -> Iterator[tuple[int, int]]:
    """Consecutive ``[start, end)`` runs of entries whose inclusive cumulative ``cost [P]``
    grows by at most ``budget`` within a run (a run holds one entry at least)."""
    start, P = 0, cost.numel()
    while start < P:
        base = int(cost[start - 1]) if start else 0
        end = max(start + 1, int(torch.searchsorted(cost, base + budget, right=True)))
        yield start, end
        start = end

