"""Uniform and weighted neighbour sampling (GraphSAGE) over CSR ``(rowptr, col)``.

Every function is a vectorised tensor program: loops run over hops and fan-out positions,
never over nodes or edges, and each hop touches only the frontier's rows, so the cost of a
batch grows with the batch, not with ``|E|``. Pass a ``torch.Generator`` on the tensors' device
for reproducible draws; CPU and CUDA share the same code.

Orientation: a CSR row is the node whose neighbourhood is sampled, its ``col`` entries are the
neighbours. In an output, ``node[row[e]]`` is that CSR row and ``node[col[e]]`` the sampled
neighbour, and ``edge[e]`` is the CSR slot (``col[edge[e]] == node[col[e]]``). For PyG's
message-passing direction (neighbour → seed) build the CSR over destinations; see ``pyg.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from reelgraph.graph import contains_edges, row_slots

EdgeType = tuple[str, str, str]


@dataclass(frozen=True)
class NeighborOutput:
    """A sampled homogeneous subgraph, nodes relabelled ``0..len(node)-1`` in hop order.

    Attributes:
        node (Tensor): ``[N]`` global ids; the seeds first, then each hop's new nodes.
        row (Tensor): ``[M]`` local index of the CSR row (the node expanded) of each edge.
        col (Tensor): ``[M]`` local index of the sampled neighbour of each edge.
        edge (Tensor): ``[M]`` CSR slot of each edge.
        num_sampled_nodes (list[int]): nodes added per hop, seeds first (``len = hops + 1``).
        num_sampled_edges (list[int]): edges added per hop (``len = hops``).
    """

    node: Tensor
    row: Tensor
    col: Tensor
    edge: Tensor
    num_sampled_nodes: list[int]
    num_sampled_edges: list[int]


@dataclass(frozen=True)
class HeteroNeighborOutput:
    """A sampled heterogeneous subgraph; the fields of :class:`NeighborOutput`, keyed by node
    type (``node``, ``num_sampled_nodes``) or by ``(row type, relation, col type)`` (the rest)."""

    node: dict[str, Tensor]
    row: dict[EdgeType, Tensor]
    col: dict[EdgeType, Tensor]
    edge: dict[EdgeType, Tensor]
    num_sampled_nodes: dict[str, list[int]]
    num_sampled_edges: dict[EdgeType, list[int]]


def _rand(shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None
          ) -> Tensor:
    return torch.rand(shape, device=device, dtype=torch.float64, generator=generator)


def _floyd_offsets(deg: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
    """``k`` distinct offsets in ``[0, deg)`` per row (all ``deg > k``), by Robert Floyd's
    algorithm vectorised over rows: ``O(rows * k^2)``, independent of the degrees."""
    out = torch.empty(deg.numel(), k, dtype=torch.long, device=deg.device)  # [S, k]
    for j in range(k):
        upper = deg - k + j  # [S] draw t in [0, upper]; if taken already, take upper itself
        t = (_rand((deg.numel(),), deg.device, generator) * (upper + 1)).long()
        t = torch.minimum(t, upper)
        taken = (out[:, :j] == t.unsqueeze(1)).any(1)
        out[:, j] = torch.where(taken, upper, t)
    return out


def sample_uniform(rowptr: Tensor, seeds: Tensor, k: int, *, replace: bool = False,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """One hop of uniform neighbour sampling.

    Args:
        rowptr (Tensor): ``[num_rows + 1]`` CSR row pointer.
        seeds (Tensor): ``[S]`` rows to expand.
        k (int): fan-out; ``-1`` takes every neighbour.
        replace (bool): draw ``k`` with replacement (rows with neighbours get exactly ``k``);
            otherwise ``min(deg, k)`` distinct neighbours (default ``False``).
        generator (torch.Generator, optional): on ``rowptr.device``.

    Returns:
        ``(pos [M], slot [M])``: the position in ``seeds`` and the CSR slot of each draw.
    """
    start, deg = rowptr[seeds], rowptr[seeds + 1] - rowptr[seeds]
    if k < 0:
        return row_slots(start, deg)
    if replace:
        pos = torch.nonzero(deg > 0).flatten()
        off = (_rand((pos.numel(), k), deg.device, generator) * deg[pos].unsqueeze(1)).long()
        off = torch.minimum(off, deg[pos].unsqueeze(1) - 1)
        return pos.repeat_interleave(k), (start[pos].unsqueeze(1) + off).flatten()
    small = torch.nonzero(deg <= k).flatten()
    big = torch.nonzero(deg > k).flatten()
    pos_s, slot_s = row_slots(start[small], deg[small])
    off = _floyd_offsets(deg[big], k, generator)  # [len(big), k]
    return (torch.cat([small[pos_s], big.repeat_interleave(k)]),
            torch.cat([slot_s, (start[big].unsqueeze(1) + off).flatten()]))


def sampled_mean(rowptr: Tensor, col: Tensor, rows: Tensor, k: int, *,
                 generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """A uniform sample of ``k`` (``-1``: all) entries of each of ``rows [R]``: ``(pos [M], col
    [M], weight [M])``, ``weight = 1 / min(k, deg)``: summing ``weight * x[col]`` per ``pos``
    (:func:`reelgraph.graph.weighted_sum`) is an unbiased estimate of the row's mean over ``x``
    (exact with ``-1``; empty rows give 0)."""
    pos, slot = sample_uniform(rowptr, rows, k, generator=generator)
    deg = rowptr[rows + 1] - rowptr[rows]
    n = deg if k < 0 else deg.clamp(max=k)
    return pos, col[slot].long(), 1.0 / n.clamp(min=1).float()[pos]


def cumulative_weights(weight: Tensor) -> Tensor:
    """Inclusive float64 prefix sums of CSR-ordered edge weights, ``[E]``; computed once per
    graph and passed to :func:`sample_weighted` / :func:`neighbor_sample`."""
    return torch.cumsum(weight.to(torch.float64), 0)


def sample_weighted(rowptr: Tensor, cum_weight: Tensor, seeds: Tensor, k: int, *,
                    generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """One hop of weighted sampling with replacement: ``k`` draws per row, each neighbour with
    probability ``weight / row total``, by inverse CDF (``searchsorted`` into ``cum_weight``).
    Rows whose weights sum to zero draw nothing. Returns ``(pos [M], slot [M])``."""
    start, end = rowptr[seeds], rowptr[seeds + 1]
    zero = torch.zeros(1, dtype=cum_weight.dtype, device=cum_weight.device)
    excl = torch.cat([zero, cum_weight])  # [E + 1] exclusive prefix sums
    base, total = excl[start], excl[end] - excl[start]
    pos = torch.nonzero(total > 0).flatten()
    u = base[pos].unsqueeze(1) + _rand((pos.numel(), k), seeds.device, generator) \
        * total[pos].unsqueeze(1)  # [S', k]
    slot = torch.searchsorted(cum_weight, u, right=True)
    slot = torch.maximum(torch.minimum(slot, end[pos].unsqueeze(1) - 1), start[pos].unsqueeze(1))
    return pos.repeat_interleave(k), slot.flatten()


def segment_topk(segment: Tensor, score: Tensor, k: int) -> Tensor:
    """Indices of the ``k`` highest ``score`` entries within each ``segment`` id (ties keep
    input order); ``O(n log n)`` in the entries given."""
    order = torch.argsort(score, descending=True, stable=True)
    order = order[torch.argsort(segment[order], stable=True)]
    seg = segment[order]
    rank = torch.arange(seg.numel(), device=seg.device) - torch.searchsorted(seg, seg)
    return order[rank < k]


def sample_weighted_without_replacement(rowptr: Tensor, weight: Tensor, seeds: Tensor, k: int,
                                        *, generator: torch.Generator | None = None
                                        ) -> tuple[Tensor, Tensor]:
    """``min(#positive-weight neighbours, k)`` distinct neighbours per row by
    Efraimidis–Spirakis keys ``log(u) / w`` and a segment top-k. Costs the sum of the seeds'
    degrees (not ``|E|``). Returns ``(pos [M], slot [M])``."""
    pos, slot = row_slots(rowptr[seeds], rowptr[seeds + 1] - rowptr[seeds])
    w = weight[slot].to(torch.float64)
    key = torch.log(_rand((slot.numel(),), seeds.device, generator)) / w  # -inf where w == 0
    keep = segment_topk(pos, key, k)
    keep = keep[torch.isfinite(key[keep])]
    return pos[keep], slot[keep]


class _NodeMap:
    """Global → local ids of one node type, as sorted arrays (no ``num_nodes``-sized table)."""

    def __init__(self, seeds: Tensor):
        self.ids, order = torch.sort(seeds)
        self.local = order
        self.count = seeds.numel()

    def add(self, cand: Tensor) -> tuple[Tensor, Tensor]:
        """Local ids of ``cand [M]``, adding unseen ones; returns ``(local [M], new ids)``."""
        pos = torch.searchsorted(self.ids, cand).clamp_(max=max(self.ids.numel() - 1, 0))
        found = self.ids[pos] == cand if self.ids.numel() else torch.zeros_like(cand, dtype=bool)
        new = torch.unique(cand[~found])  # sorted
        local = torch.empty_like(cand)
        local[found] = self.local[pos[found]]
        local[~found] = self.count + torch.searchsorted(new, cand[~found])
        ids = torch.cat([self.ids, new])
        loc = torch.cat([self.local, self.count + torch.arange(new.numel(), device=cand.device)])
        self.ids, order = torch.sort(ids)
        self.local, self.count = loc[order], self.count + new.numel()
        return local, new


def _one_hop(rowptr: Tensor, seeds: Tensor, k: int, replace: bool, cum_weight: Tensor | None,
             generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    if cum_weight is None:
        return sample_uniform(rowptr, seeds, k, replace=replace, generator=generator)
    return sample_weighted(rowptr, cum_weight, seeds, k, generator=generator)


def _drop_excluded(pos: Tensor, slot: Tensor, rows: Tensor, col: Tensor,
                   exclude: tuple[Tensor, int] | None) -> tuple[Tensor, Tensor]:
    """Drops draws whose ``(row, col)`` is among ``exclude = (sorted keys, num_cols)``."""
    if exclude is None:
        return pos, slot
    keep = ~contains_edges(exclude[0], rows[pos], col[slot], exclude[1])
    return pos[keep], slot[keep]


def neighbor_sample(rowptr: Tensor, col: Tensor, seeds: Tensor, *, fanouts: list[int],
                    replace: bool = False, cum_weight: Tensor | None = None,
                    exclude_keys: Tensor | None = None,
                    generator: torch.Generator | None = None) -> NeighborOutput:
    """Multi-hop neighbour sampling on one CSR, relabelled into a compact subgraph.

    Args:
        rowptr, col (Tensor): the CSR (rows and columns index the same node set).
        seeds (Tensor): ``[S]`` unique seed nodes.
        fanouts (list[int]): neighbours per node per hop; ``-1`` takes all.
        replace (bool): uniform sampling with replacement (default ``False``).
        cum_weight (Tensor, optional): :func:`cumulative_weights` of edge weights; switches
            to weighted sampling with replacement.
        exclude_keys (Tensor, optional): sorted ``row * num_nodes + col`` keys
            (:func:`reelgraph.graph.edge_keys`) of edges never to sample, e.g. the target
            edges of a link-prediction batch.
        generator (torch.Generator, optional): on ``rowptr.device``.
    """
    exclude = None if exclude_keys is None else (exclude_keys, rowptr.numel() - 1)
    nmap, frontier = _NodeMap(seeds), seeds
    frontier_local = torch.arange(seeds.numel(), device=seeds.device)
    nodes, rows, cols, edges = [seeds], [], [], []
    nsn, nse = [seeds.numel()], []
    for k in fanouts:
        pos, slot = _one_hop(rowptr, frontier, k, replace, cum_weight, generator)
        pos, slot = _drop_excluded(pos, slot, frontier, col, exclude)
        local, new = nmap.add(col[slot])
        rows.append(frontier_local[pos])
        cols.append(local)
        edges.append(slot)
        frontier_local = torch.arange(nmap.count - new.numel(), nmap.count, device=seeds.device)
        frontier = new
        nodes.append(new)
        nsn.append(new.numel())
        nse.append(slot.numel())
    return NeighborOutput(torch.cat(nodes), torch.cat(rows), torch.cat(cols), torch.cat(edges),
                          nsn, nse)


def hetero_neighbor_sample(csr: dict[EdgeType, tuple[Tensor, Tensor]],
                           seeds: dict[str, Tensor], *, fanouts: dict[EdgeType, list[int]],
                           replace: bool = False,
                           exclude: dict[EdgeType, tuple[Tensor, int]] | None = None,
                           generator: torch.Generator | None = None) -> HeteroNeighborOutput:
    """Multi-hop uniform sampling over per-relation CSRs, relabelled per node type.

    Args:
        csr: ``{(row type, relation, col type): (rowptr, col)}``; ``rowptr`` indexes the row
            type, ``col`` holds node ids of the col type.
        seeds: ``{node type: [S_t] unique seeds}``.
        fanouts: ``{edge type: per-hop fan-out}``, all the same length; ``-1`` takes all.
        replace (bool): sample with replacement (default ``False``).
        exclude: ``{edge type: (sorted row * num_cols + col keys, num_cols)}``, edges never
            to sample (``num_cols`` is the col type's node count).
        generator (torch.Generator, optional): on the CSR device.
    """
    num_hops = len(next(iter(fanouts.values())))
    if any(len(f) != num_hops for f in fanouts.values()):
        raise ValueError(f"hetero_neighbor_sample: fan-out lists differ in length: {fanouts}")
    csr = {et: v for et, v in csr.items() if et in fanouts}
    empty = next(iter(seeds.values()))[:0]
    seeds = {**{t: empty for et in csr for t in (et[0], et[2])}, **seeds}
    nmap = {t: _NodeMap(s) for t, s in seeds.items()}
    frontier = {t: (s, torch.arange(s.numel(), device=s.device)) for t, s in seeds.items()}
    nodes = {t: [s] for t, s in seeds.items()}
    nsn = {t: [s.numel()] for t, s in seeds.items()}
    rows, cols, edges = ({et: [] for et in csr} for _ in range(3))
    for hop in range(num_hops):
        added: dict[str, list[Tensor]] = {}
        for et, (rowptr, col) in csr.items():
            src, src_local = frontier[et[0]]
            pos, slot = sample_uniform(rowptr, src, fanouts[et][hop], replace=replace,
                                       generator=generator)
            pos, slot = _drop_excluded(pos, slot, src, col, (exclude or {}).get(et))
            local, new = nmap[et[2]].add(col[slot])
            rows[et].append(src_local[pos])
            cols[et].append(local)
            edges[et].append(slot)
            added.setdefault(et[2], []).append(new)
        frontier = _next_frontier(added, nmap, nodes, nsn)
    device = next(iter(csr.values()))[0].device
    return _hetero_output(nodes, rows, cols, edges, nsn, device)


def _next_frontier(added: dict[str, list[Tensor]], nmap: dict[str, _NodeMap],
                   nodes: dict[str, list[Tensor]], nsn: dict[str, list[int]]
                   ) -> dict[str, tuple[Tensor, Tensor]]:
    frontier = {}
    for t, m in nmap.items():
        new = torch.cat(added[t]) if t in added else m.ids[:0]
        nodes[t].append(new)
        nsn[t].append(new.numel())
        local = torch.arange(m.count - new.numel(), m.count, device=new.device)
        frontier[t] = (new, local)
    return frontier


def _hetero_output(nodes, rows, cols, edges, nsn, device: torch.device
                   ) -> HeteroNeighborOutput:
    def cat(parts: list[Tensor]) -> Tensor:
        return torch.cat(parts) if parts else torch.empty(0, dtype=torch.long, device=device)
    return HeteroNeighborOutput(
        node={t: torch.cat(v) for t, v in nodes.items()},
        row={et: cat(v) for et, v in rows.items()},
        col={et: cat(v) for et, v in cols.items()},
        edge={et: cat(v) for et, v in edges.items()},
        num_sampled_nodes=nsn,
        num_sampled_edges={et: [e.numel() for e in v] for et, v in edges.items()})
