"""Uniform and weighted neighbour sampling (GraphSAGE) over CSR ``(rowptr, col)``.

Every function is a vectorised tensor program: loops run over hops and fan-out positions,
never over nodes or edges, and each hop touches only the frontier's rows, so the cost of a
batch grows with the batch, not with ``|E|``. Relabelling to local ids scatters into a
node → local-id table (:mod:`reelgraph.samplers.relabel`). Pass a ``torch.Generator`` on the
tensors' device for reproducible draws; CPU and CUDA share the same code.

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
from reelgraph.samplers.relabel import FREE, relabel, scratch_guard, scratch_table

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
    algorithm vectorised over rows: ``O(rows * k^2)``, independent of the degrees. All draws
    are made up front (the same stream as one ``[rows]`` draw per position)."""
    upper = deg.unsqueeze(0) - k + torch.arange(k, device=deg.device).unsqueeze(1)  # [k, S]
    t = (_rand(tuple(upper.shape), deg.device, generator) * (upper + 1)).long()
    t = torch.minimum(t, upper)  # [k, S] draw t in [0, upper]; if taken already, take upper
    out = t.clone()  # [k, S]; position j keeps its draw unless an earlier one took it
    for j in range(1, k):
        taken = (out[:j] == t[j]).amax(0)  # [S] (bool amax: ~2x faster than any(0) here)
        torch.where(taken, upper[j], t[j], out=out[j])
    return out.T  # [S, k]


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
        ``(pos [M], slot [M])``: the position in ``seeds`` and the CSR slot of each draw,
        grouped by seed in the order of ``seeds`` (``pos`` is non-decreasing).
    """
    start = rowptr.index_select(0, seeds)  # [S]
    deg = rowptr.index_select(0, seeds + 1) - start  # [S]
    if k < 0:
        return row_slots(start, deg)
    if replace:
        pos = torch.nonzero(deg > 0).flatten()
        off = (_rand((pos.numel(), k), deg.device, generator) * deg[pos].unsqueeze(1)).long()
        off = torch.minimum(off, deg[pos].unsqueeze(1) - 1)
        return pos.repeat_interleave(k), (start[pos].unsqueeze(1) + off).flatten()
    count = deg.clamp(max=k)  # [S] draws per row
    first = torch.cumsum(count, 0) - count  # [S] each row's first draw in the output
    pos = torch.repeat_interleave(count)  # [M]
    slot = (start - first).index_select(0, pos) \
        + torch.arange(pos.numel(), device=deg.device)  # [M] the first min(deg, k) slots
    big = torch.nonzero(deg > k).flatten()  # [B] rows with more than k: Floyd's k instead
    off = _floyd_offsets(deg[big], k, generator)  # [B, k]
    at = first[big].unsqueeze(1) + torch.arange(k, device=deg.device)  # [B, k] their draws
    slot.scatter_(0, at.flatten(), (start[big].unsqueeze(1) + off).flatten())
    return pos, slot


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
    if cum_weight.numel() == 0:  # no edges, nothing to draw
        return seeds[:0].long(), seeds[:0].long()
    start, end = rowptr.index_select(0, seeds), rowptr.index_select(0, seeds + 1)

    def before(slot: Tensor) -> Tensor:  # [S] the weight of all slots before ``slot``
        prev = cum_weight.index_select(0, (slot - 1).clamp(min=0))
        return torch.where(slot > 0, prev, torch.zeros_like(prev))

    base = before(start)
    total = before(end) - base  # [S]
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

    Each hop's new nodes come in order of first appearance among that hop's draws. Relabelling
    goes through a ``[num_nodes]`` int32 scratch table kept per thread
    (:func:`~reelgraph.samplers.relabel.relabel`), so a batch costs ``O(batch)`` after the first.

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
    with scratch_guard():
        table = scratch_table(col.device, None, rowptr.numel() - 1)
        out = _sample_hops(table, rowptr, col, seeds.long(), fanouts, replace, cum_weight,
                           exclude, generator)
        table.index_fill_(0, out.node, FREE)  # leave the scratch as found
    return out


def _sample_hops(table: Tensor, rowptr: Tensor, col: Tensor, seeds: Tensor, fanouts: list[int],
                 replace: bool, cum_weight: Tensor | None, exclude: tuple[Tensor, int] | None,
                 generator: torch.Generator | None) -> NeighborOutput:
    count, frontier = seeds.numel(), seeds
    table.scatter_(0, seeds, torch.arange(count, dtype=table.dtype, device=seeds.device))
    nodes, rows, cols, edges = [seeds], [], [], []
    for k in fanouts:
        pos, slot = _one_hop(rowptr, frontier, k, replace, cum_weight, generator)
        pos, slot = _drop_excluded(pos, slot, frontier, col, exclude)
        local, new = relabel(table, col.index_select(0, slot).long(), count)
        rows.append(pos + (count - frontier.numel()))  # the frontier is the last ids added
        cols.append(local)
        edges.append(slot)
        nodes.append(new)
        count, frontier = count + new.numel(), new
    return NeighborOutput(torch.cat(nodes), torch.cat(rows), torch.cat(cols), torch.cat(edges),
                          [n.numel() for n in nodes], [e.numel() for e in edges])


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
    empty = next(iter(seeds.values()))[:0].long()
    seeds = {**{t: empty for et in csr for t in (et[0], et[2])},
             **{t: s.long() for t, s in seeds.items()}}
    device = next(iter(csr.values()))[0].device
    with scratch_guard():
        nodes = {t: [s] for t, s in seeds.items()}
        for t, s in seeds.items():
            table = scratch_table(device, t, int(s.max()) + 1 if s.numel() else 0)
            table.scatter_(0, s, torch.arange(s.numel(), dtype=table.dtype, device=device))
        rows, cols, edges = ({et: [] for et in csr} for _ in range(3))
        for hop in range(num_hops):
            added = _hetero_hop(csr, nodes, hop, fanouts, replace, exclude or {}, generator,
                                rows, cols, edges)
            for t in nodes:
                nodes[t].append(torch.cat(added[t]) if t in added else empty)
        for t, parts in nodes.items():  # leave the scratch as found
            scratch_table(device, t, 0).index_fill_(0, torch.cat(parts), FREE)
    return _hetero_output(nodes, rows, cols, edges, device)


def _hetero_hop(csr: dict[EdgeType, tuple[Tensor, Tensor]], nodes: dict[str, list[Tensor]],
                hop: int, fanouts: dict[EdgeType, list[int]], replace: bool,
                exclude: dict[EdgeType, tuple[Tensor, int]], generator: torch.Generator | None,
                rows: dict, cols: dict, edges: dict) -> dict[str, list[Tensor]]:
    """Samples hop ``hop`` of every relation from the nodes added at the previous hop,
    appending to ``rows``, ``cols`` and ``edges``; returns the new nodes per type."""
    count = {t: sum(p.numel() for p in parts) for t, parts in nodes.items()}
    added: dict[str, list[Tensor]] = {}
    for et, (rowptr, col) in csr.items():
        src = nodes[et[0]][-1]  # the frontier: the last ids labelled before this hop
        pos, slot = sample_uniform(rowptr, src, fanouts[et][hop], replace=replace,
                                   generator=generator)
        pos, slot = _drop_excluded(pos, slot, src, col, exclude.get(et))
        ids = col.index_select(0, slot).long()
        table = scratch_table(rowptr.device, et[2], int(ids.max()) + 1 if ids.numel() else 0)
        local, new = relabel(table, ids, count[et[2]])
        count[et[2]] += new.numel()
        rows[et].append(pos + sum(p.numel() for p in nodes[et[0]][:-1]))
        cols[et].append(local)
        edges[et].append(slot)
        added.setdefault(et[2], []).append(new)
    return added


def _hetero_output(nodes: dict[str, list[Tensor]], rows: dict, cols: dict, edges: dict,
                   device: torch.device) -> HeteroNeighborOutput:
    def cat(parts: list[Tensor]) -> Tensor:
        return torch.cat(parts) if parts else torch.empty(0, dtype=torch.long, device=device)
    return HeteroNeighborOutput(
        node={t: torch.cat(v) for t, v in nodes.items()},
        row={et: cat(v) for et, v in rows.items()},
        col={et: cat(v) for et, v in cols.items()},
        edge={et: cat(v) for et, v in edges.items()},
        num_sampled_nodes={t: [p.numel() for p in v] for t, v in nodes.items()},
        num_sampled_edges={et: [e.numel() for e in v] for et, v in edges.items()})
