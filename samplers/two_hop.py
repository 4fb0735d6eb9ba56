"""Same-type neighbours drawn uniformly over the exact two-hop neighbourhood of a bipartite CSR
(the GraphRec-style ablation of the importance-sampling GNN, :mod:`reelgraph.samplers.plans.
isgnn`), without enumerating it.

A user's two-hop neighbourhood is ``N2(v) = {n != v : |N(v) ∩ N(n)| >= 1}``, the users sharing
an item with it. The walk-found candidates of :func:`~reelgraph.samplers.tightness.
co_interaction_graph` are not uniform over it (a two-step walk reaches ``n`` in proportion to
the paths ``m(v, n) = |N(v) ∩ N(n)|``, so tight pairs are found more often), and enumerating it
costs ``sum_x d_x`` per node, quadratic in popular degrees. :func:`uniform_two_hop` instead
draws uniform two-step paths and accepts each end with probability ``1 / m(v, n)`` (a
Karp–Luby estimator of a union's uniform distribution), counting ``m`` exactly by the sorted
edge-key lookups of :func:`~reelgraph.samplers.tightness.shared_counts`.
"""
from __future__ import annotations

import torch
from torch import Tensor

from reelgraph.graph import csr_rows, edge_keys, expand_rows, row_slots
from reelgraph.samplers.neighbor import _rand
from reelgraph.samplers.pinsage import ImportanceOutput
from reelgraph.samplers.tightness import budget_runs, shared_counts

CSR = tuple[Tensor, Tensor]


def uniform_two_hop(forward: CSR, backward: CSR, seeds: Tensor, num_draws: int, *,
                    sorted_keys: Tensor | None = None, generator: torch.Generator | None = None,
                    oversample: float = 2.0, max_rounds: int = 8, max_proposals: int = 1 << 20,
                    count_budget: int = 1 << 22) -> ImportanceOutput:
    """``num_draws`` draws with replacement per seed, each uniform over the seed's exact
    two-hop neighbourhood ``N2(v)`` (rows of ``forward``; module doc).

    A proposal is a uniform two-step path ``v → x → n`` (``x`` with probability ``d_x / sum_x
    d_x``, then ``n`` uniform in ``N(x)``: one uniform integer below ``sum_x d_x`` looked up in
    the prefix sums of the ``d_x``); it is rejected when ``n = v`` and otherwise accepted with
    probability ``1 / m(v, n)``, so each ``n`` in ``N2(v)`` is accepted with the same probability
    ``1 / sum_x d_x`` per proposal, however tight. Each round proposes, for every seed still
    short, ``oversample`` times its missing draws over its acceptance rate so far (at most
    ``max_proposals`` in all, one per short seed at least) and keeps its first acceptances.
    After ``max_rounds`` a seed still short (an acceptance rate ``|N2(v)| / sum_x d_x`` so small
    that the rounds did not reach it: a few nodes sharing many popular ones) keeps the draws it
    has. Seeds with no two-hop neighbour (every ``x`` theirs alone) get none, at no proposal.

    ``num_draws=-1``: no draw; every ``n`` in ``N2(v)`` once, by enumerating the ``sum_x d_x``
    paths in runs of ``count_budget`` (time quadratic in popular degrees, memory
    ``O(count_budget + output)``).

    Args:
        forward (tuple): ``(rowptr [R + 1], col)`` row → other side (e.g. user → item), a simple
            graph (no repeated edge), columns sorted within rows.
        backward (tuple): its transpose (item → user).
        seeds (Tensor): ``[S]`` rows of ``forward``.
        num_draws (int): draws per seed (``-1``: the whole neighbourhood, once each).
        sorted_keys (Tensor, optional): ``[E]`` the sorted ``edge_keys`` of ``forward``
            (``None``: computed here, ``O(E)``; pass them once per graph).
        generator (torch.Generator, optional): on the CSR device.
        oversample (float): proposals per missing draw, over the acceptance rate (``> 0``).
        max_rounds (int): proposal rounds at most.
        max_proposals (int): proposals per round at most: memory ``O(max_proposals +
            count_budget)`` beyond the seeds' lists.
        count_budget (int): list entries scanned at once (counting ``m``, or enumerating).

    Returns:
        ``seed_index [M]`` (non-decreasing), ``neighbor [M]`` and ``weight [M] = 1 / #drawn`` of
        its seed: summing ``weight * x_n`` per seed is an unbiased estimate of the mean of ``x``
        over ``N2(v)`` (exact with ``-1``), for a seed left short too.
    """
    rowptr, col = forward
    num_cols = backward[0].numel() - 1
    pos, slot = expand_rows(rowptr, seeds)  # [P] each seed's edges v → x
    mid = col[slot].long()  # [P] x
    d = backward[0][mid + 1] - backward[0][mid]  # [P] d_x
    if num_draws < 0:
        return _whole(backward, seeds, pos, mid, d, rowptr.numel() - 1, count_budget)
    if sorted_keys is None:
        sorted_keys = edge_keys(csr_rows(rowptr), col, num_cols)
    S = seeds.numel()
    paths = torch.zeros(S, dtype=torch.long, device=seeds.device).index_add_(0, pos, d)  # [S]
    has = paths > rowptr[seeds + 1] - rowptr[seeds]  # [S] some path ends off v
    cum = torch.cumsum(d, 0)  # [P] paths up to each edge v → x, inclusive
    first = torch.cumsum(paths, 0) - paths  # [S] each seed's first path index in ``cum``
    got, tried, hits = (torch.zeros_like(paths) for _ in range(3))  # [S] each
    draws = []
    for _ in range(max_rounds):
        need = torch.where(has, num_draws - got, 0)  # [S]
        if not bool((need > 0).any()):
            break
        count = _proposals(need, tried, hits, oversample, max_proposals)  # [S]
        who = torch.repeat_interleave(torch.arange(S, device=seeds.device), count)  # [Q]
        u = (_rand((who.numel(),), who.device, generator) * paths[who]).long()
        path = first[who] + torch.minimum(u, paths[who] - 1)  # [Q] uniform over v's paths
        j = torch.searchsorted(cum, path, right=True)  # [Q] its edge v → x
        step = path - (cum[j] - d[j])  # [Q] its offset in N(x)
        end = backward[1][backward[0][mid[j]] + step].long()  # [Q] n
        who, end = _accept(forward, sorted_keys, num_cols, seeds, who, end, generator,
                           count_budget)
        n_ok = torch.bincount(who, minlength=S)  # [S]
        rank = torch.arange(who.numel(), device=who.device) - (torch.cumsum(n_ok, 0) - n_ok)[who]
        take = rank < need[who]  # each seed's first ``need`` acceptances
        draws.append((who[take], end[take]))
        tried, hits, got = tried + count, hits + n_ok, got + torch.bincount(who[take], minlength=S)
    return _output(draws, S, got, seeds)


def _proposals(need: Tensor, tried: Tensor, hits: Tensor, oversample: float,
               max_proposals: int) -> Tensor:
    """Proposals per seed ``[S]``: ``oversample * need / rate`` (the rate so far, 1 before any
    try, ``1 / tried`` while none accepted), scaled to ``max_proposals`` in all, ``>= 1`` where
    ``need > 0``."""
    rate = torch.where(tried > 0, hits.clamp(min=1).double() / tried.clamp(min=1), 1.0)
    count = torch.ceil(oversample * need / rate)  # [S] float64
    total = float(count.sum())
    if total > max_proposals:
        count = torch.floor(count * (max_proposals / total))
    return torch.where(need > 0, count.long().clamp(min=1), 0)


def _accept(forward: CSR, sorted_keys: Tensor, num_cols: int, seeds: Tensor, who: Tensor,
            end: Tensor, generator: torch.Generator | None, budget: int
            ) -> tuple[Tensor, Tensor]:
    """The proposals ``(who [Q], end [Q])`` accepted: ``end != v``, then with probability
    ``1 / m(v, end)``; ``(who [A], end [A])``, still grouped by seed."""
    v = seeds[who]
    off = end != v
    who, v, end = who[off], v[off], end[off]
    m = shared_counts(*forward, sorted_keys, num_cols, v, end, budget)  # [Q'] >= 1
    ok = _rand((who.numel(),), who.device, generator) * m < 1.0
    return who[ok], end[ok]


def _output(draws: list[tuple[Tensor, Tensor]], S: int, got: Tensor, seeds: Tensor
            ) -> ImportanceOutput:
    if not draws:
        empty = seeds.new_zeros(0, dtype=torch.long)
        return ImportanceOutput(empty, empty, torch.zeros(0, device=seeds.device))
    pos, nbr = (torch.cat(t) for t in zip(*draws))
    order = torch.argsort(pos, stable=True)
    pos, nbr = pos[order], nbr[order]
    return ImportanceOutput(pos, nbr, 1.0 / got[pos].float())


def _whole(backward: CSR, seeds: Tensor, pos: Tensor, mid: Tensor, d: Tensor, R: int,
           budget: int) -> ImportanceOutput:
    """Every ``n`` in ``N2(v)`` once with weight ``1 / |N2(v)|``, the paths enumerated in runs
    of ``budget`` and merged into sorted ``(position, n)`` keys as they come."""
    found = seeds.new_zeros(0, dtype=torch.long)
    for start, end in budget_runs(torch.cumsum(d, 0), budget):
        e, slot = row_slots(backward[0][mid[start:end]], d[start:end])  # [M] edge, path end
        p, n = pos[start:end][e], backward[1][slot].long()
        off = n != seeds[p]
        found = torch.unique(torch.cat([found, edge_keys(p[off], n[off], R)]))
    p, n = found // R, found % R
    count = torch.bincount(p, minlength=seeds.numel())
    return ImportanceOutput(p, n, 1.0 / count[p].float())
