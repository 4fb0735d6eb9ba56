"""The neighbour sampler as it was before issue 18, kept only so that ``sampling.py --impl old``
can time it beside the current one in the same process. Not part of the package; do not use.

Relabelling here goes through sorted arrays (``searchsorted`` + ``unique`` per hop), Floyd's
algorithm draws one random vector per fan-out position, and weighted sampling copies the whole
``cum_weight`` once per hop; the current sampler (:mod:`reelgraph.samplers.neighbor`) relabels
through a node → local-id scatter table (:mod:`reelgraph.samplers.relabel`) instead.
"""
from __future__ import annotations

import torch
from torch import Tensor

from reelgraph.graph import row_slots
from reelgraph.samplers.neighbor import NeighborOutput


def _rand(shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None
          ) -> Tensor:
    return torch.rand(shape, device=device, dtype=torch.float64, generator=generator)


def _floyd_offsets(deg: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
    out = torch.empty(deg.numel(), k, dtype=torch.long, device=deg.device)  # [S, k]
    for j in range(k):
        upper = deg - k + j
        t = (_rand((deg.numel(),), deg.device, generator) * (upper + 1)).long()
        t = torch.minimum(t, upper)
        taken = (out[:, :j] == t.unsqueeze(1)).any(1)
        out[:, j] = torch.where(taken, upper, t)
    return out


def sample_uniform(rowptr: Tensor, seeds: Tensor, k: int, *, replace: bool = False,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
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
    off = _floyd_offsets(deg[big], k, generator)
    return (torch.cat([small[pos_s], big.repeat_interleave(k)]),
            torch.cat([slot_s, (start[big].unsqueeze(1) + off).flatten()]))


def sample_weighted(rowptr: Tensor, cum_weight: Tensor, seeds: Tensor, k: int, *,
                    generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    start, end = rowptr[seeds], rowptr[seeds + 1]
    zero = torch.zeros(1, dtype=cum_weight.dtype, device=cum_weight.device)
    excl = torch.cat([zero, cum_weight])  # [E + 1] exclusive prefix sums (an O(E) copy)
    base, total = excl[start], excl[end] - excl[start]
    pos = torch.nonzero(total > 0).flatten()
    u = base[pos].unsqueeze(1) + _rand((pos.numel(), k), seeds.device, generator) \
        * total[pos].unsqueeze(1)  # [S', k]
    slot = torch.searchsorted(cum_weight, u, right=True)
    slot = torch.maximum(torch.minimum(slot, end[pos].unsqueeze(1) - 1), start[pos].unsqueeze(1))
    return pos.repeat_interleave(k), slot.flatten()


class _NodeMap:
    def __init__(self, seeds: Tensor):
        self.ids, order = torch.sort(seeds)
        self.local = order
        self.count = seeds.numel()

    def add(self, cand: Tensor) -> tuple[Tensor, Tensor]:
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


def neighbor_sample(rowptr: Tensor, col: Tensor, seeds: Tensor, *, fanouts: list[int],
                    replace: bool = False, cum_weight: Tensor | None = None,
                    generator: torch.Generator | None = None) -> NeighborOutput:
    """The pre-issue-18 ``neighbor_sample`` (without ``exclude_keys``)."""
    nmap, frontier = _NodeMap(seeds), seeds
    frontier_local = torch.arange(seeds.numel(), device=seeds.device)
    nodes, rows, cols, edges = [seeds], [], [], []
    nsn, nse = [seeds.numel()], []
    for k in fanouts:
        if cum_weight is None:
            pos, slot = sample_uniform(rowptr, frontier, k, replace=replace, generator=generator)
        else:
            pos, slot = sample_weighted(rowptr, cum_weight, frontier, k, generator=generator)
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
