"""Importance-based neighbourhoods (PinSage) over CSR ``(rowptr, col)``.

* :func:`pinsage_neighbors`: random walks with restart on a bipartite graph
  (item → user → item → ...); the ``num_neighbors`` most visited items are a seed item's
  neighbourhood, weighted by normalised visit counts.
* :func:`tightness_neighbors`: neighbours drawn by relationship tightness (the interaction
  strength, an edge weight, or the number of shared neighbours), normalised by a softmax (eq. 3
  of the importance-sampling GNN for micro-videos) or in proportion.
* :func:`ppr_hard_negatives`: PinSage's hard negatives (§3.3): items drawn from a rank window
  of a user's personalised-PageRank ranking, estimated by the visit counts of random walks with
  restart from the user (:func:`user_item_visits`), train positives never.

All vectorised over walks and edges; loops run over walk steps only. The roles of the two
node sets swap by swapping the two CSRs (user seeds: pass ``user_item`` as ``item_user``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import Tensor

from reelgraph.graph import contains_edges, row_slots
from reelgraph.graph import segment_softmax, segment_sum
from reelgraph.samplers.negative import Positives, is_positive, uniform_negatives
from reelgraph.samplers.neighbor import _rand, cumulative_weights, sample_weighted, segment_topk

CSR = tuple[Tensor, Tensor]
Avoid = Callable[[Tensor, Tensor], Tensor]  # (node, neighbour) -> bool: never step this edge


@dataclass(frozen=True)
class ImportanceOutput:
    """Weighted neighbourhoods of a batch of seeds, grouped by seed.

    Attributes:
        seed_index (Tensor): ``[M]`` position in ``seeds`` of each neighbour's seed.
        neighbor (Tensor): ``[M]`` global node id of each neighbour (same type as the seed).
        weight (Tensor): ``[M]`` float importance; sums to 1 over each seed's neighbours.
    """

    seed_index: Tensor
    neighbor: Tensor
    weight: Tensor


def _step(rowptr: Tensor, col: Tensor, pos: Tensor, generator: torch.Generator | None) -> Tensor:
    alive = pos >= 0
    p = pos.clamp(min=0)
    start, deg = rowptr[p], rowptr[p + 1] - rowptr[p]
    off = (_rand((pos.numel(),), pos.device, generator) * deg).long()
    off = torch.minimum(off, (deg - 1).clamp(min=0))
    nxt = col[(start + off).clamp(max=max(col.numel() - 1, 0))] if col.numel() else pos
    return torch.where(alive & (deg > 0), nxt, torch.full_like(pos, -1))


def walk_step(rowptr: Tensor, col: Tensor, pos: Tensor, generator: torch.Generator | None = None,
              avoid: Avoid | None = None, max_rounds: int = 8) -> Tensor:
    """One uniform random-walk step from each ``pos [W]``; ``-1`` (a stopped walk) and nodes
    without neighbours step to ``-1``.

    ``avoid(pos, nxt) -> bool`` marks edges never to traverse (e.g. a batch's target edges): a
    step onto one is redrawn, so the step is uniform over the other neighbours; a walk still on
    one after ``max_rounds`` redraws stops (``-1``), so an avoided edge is never taken.
    """
    nxt = _step(rowptr, col, pos, generator)
    if avoid is None:
        return nxt
    for _ in range(max_rounds + 1):
        bad = torch.nonzero((nxt >= 0) & avoid(pos, nxt.clamp(min=0))).flatten()
        if bad.numel() == 0:
            return nxt
        nxt[bad] = _step(rowptr, col, pos[bad], generator)
    return torch.where((nxt >= 0) & avoid(pos, nxt.clamp(min=0)), -1, nxt)


def random_walk_visits(item_user: CSR, user_item: CSR, seeds: Tensor, *, num_walks: int,
                       walk_length: int, restart_prob: float,
                       generator: torch.Generator | None = None,
                       avoid: Avoid | None = None) -> tuple[Tensor, Tensor]:
    """Items visited by ``num_walks`` walks with restart from each seed item.

    Each of ``walk_length`` steps goes item → user → item and records the item reached; after
    each step the walk jumps back to its seed with probability ``restart_prob``. ``avoid(item,
    user) -> bool`` marks edges the walks never traverse, in either direction (:func:`walk_step`).

    Returns:
        ``(seed_index [V], item [V])``, one row per visit.
    """
    seed_index = torch.arange(seeds.numel(), device=seeds.device).repeat_interleave(num_walks)
    home = seeds[seed_index]  # [S * T]
    pos, visits = home, []
    for _ in range(walk_length):
        user = walk_step(*item_user, pos, generator, avoid)
        pos = walk_step(*user_item, user, generator, None if avoid is None else
                        (lambda u, i: avoid(i, u)))
        visits.append(torch.stack([seed_index, pos]))
        restart = _rand((pos.numel(),), pos.device, generator) < restart_prob
        pos = torch.where(restart, home, pos)
    v = torch.cat(visits, 1)  # [2, S * T * L]
    v = v[:, v[1] >= 0]
    return v[0], v[1]


def pinsage_neighbors(item_user: CSR, user_item: CSR, seeds: Tensor, *, num_neighbors: int,
                      num_walks: int = 10, walk_length: int = 2, restart_prob: float = 0.5,
                      exclude_seed: bool = True, generator: torch.Generator | None = None,
                      avoid: Avoid | None = None) -> ImportanceOutput:
    """PinSage importance neighbourhoods: the ``num_neighbors`` items most visited by random
    walks with restart from each seed item, weighted by normalised visit counts.

    Args:
        item_user (tuple): ``(rowptr [num_items + 1], col)`` item → user CSR
            (:func:`reelgraph.graph.transpose_csr` of ``user_item``).
        user_item (tuple): ``(rowptr [num_users + 1], col)`` user → item CSR.
        seeds (Tensor): ``[S]`` seed items.
        num_neighbors (int): neighbours kept per seed (fewer if fewer items were visited).
        num_walks (int): walks per seed, T (default ``10``).
        walk_length (int): item → user → item steps per walk (default ``2``).
        restart_prob (float): chance of jumping back to the seed after a step (default ``0.5``).
        exclude_seed (bool): never keep the seed as its own neighbour (default ``True``).
        generator (torch.Generator, optional): on the CSR device.
        avoid: ``(item, user) -> bool``, edges the walks never traverse (a batch's targets).
    """
    num_items = item_user[0].numel() - 1
    seed_index, item = random_walk_visits(item_user, user_item, seeds, num_walks=num_walks,
                                          walk_length=walk_length, restart_prob=restart_prob,
                                          generator=generator, avoid=avoid)
    if exclude_seed:
        keep = item != seeds[seed_index]
        seed_index, item = seed_index[keep], item[keep]
    key, count = torch.unique(seed_index * num_items + item, return_counts=True)
    seed_index, item = key // num_items, key % num_items
    top = segment_topk(seed_index, count.to(torch.float64), num_neighbors)
    return _normalised(seeds.numel(), seed_index[top], item[top], count[top].to(torch.float))


def user_item_visits(user_item: CSR, item_user: CSR, users: Tensor, *, num_walks: int,
                     walk_length: int, restart_prob: float,
                     generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Items visited by ``num_walks`` walks with restart from each user: each of ``walk_length``
    steps goes user → item (recorded) → user, then jumps back to the walk's user with probability
    ``restart_prob``. Visit counts estimate the user's personalised PageRank over items.

    Returns:
        ``(seed_index [V], item [V])``, one row per visit (position in ``users``).
    """
    seed_index = torch.arange(users.numel(), device=users.device).repeat_interleave(num_walks)
    home = users[seed_index]  # [S * T]
    pos, visits = home, []
    for _ in range(walk_length):
        item = walk_step(*user_item, pos, generator)
        visits.append(torch.stack([seed_index, item]))
        user = walk_step(*item_user, item, generator)
        restart = _rand((pos.numel(),), pos.device, generator) < restart_prob
        pos = torch.where(restart | (user < 0), home, user)
    v = torch.cat(visits, 1)  # [2, S * T * L]
    v = v[:, v[1] >= 0]
    return v[0], v[1]


def ppr_hard_negatives(user_item: CSR, item_user: CSR, users: Tensor, positives: Positives,
                       num_negatives: int, *, rank_range: tuple[int, int], num_walks: int,
                       walk_length: int, restart_prob: float,
                       generator: torch.Generator | None = None) -> Tensor:
    """PinSage's hard negatives: per user, items drawn uniformly among ranks ``rank_range``
    (0-based, half-open) of its personalised-PageRank ranking, train positives removed before
    ranking (Ying et al. 2018, §3.3: ranks 2000-5000 on Pinterest's graph).

    The ranking is the visit counts of :func:`user_item_visits` (ties in random order); only
    visited items are ranked, so the window is clipped to each user's count ``n`` of visited
    non-positive items (``[min(lo, n - 1), min(hi, n))``), and a user whose walks reach no such
    item gets uniform non-positive items. Computed once per distinct user of ``users``.

    Args:
        user_item, item_user (tuple): the train CSRs ``(rowptr, col)`` and their transpose.
        users (Tensor): ``[B]`` user indices (repeats allowed).
        positives: the train positives to exclude (:mod:`reelgraph.samplers.negative`).
        num_negatives (int): hard negatives per row.
        rank_range (tuple): ranks ``[lo, hi)``, ``0 <= lo < hi``.
        num_walks, walk_length, restart_prob: the walks of :func:`user_item_visits`.
        generator (torch.Generator, optional): on the CSR device.

    Returns:
        ``[B, num_negatives]`` int64 items, never a train positive of the row's user.
    """
    num_items = item_user[0].numel() - 1
    uniq, inv = torch.unique(users.long(), return_inverse=True)  # [S], [B]
    seed_index, item = user_item_visits(user_item, item_user, uniq, num_walks=num_walks,
                                        walk_length=walk_length, restart_prob=restart_prob,
                                        generator=generator)
    ranked, per_user = _rank_visits(uniq, seed_index, item, positives, num_items, generator)
    n, start = per_user[inv], (torch.cumsum(per_user, 0) - per_user)[inv]  # [B] each
    hi = torch.clamp(n, max=rank_range[1])
    lo = torch.minimum(torch.full_like(hi, rank_range[0]), (hi - 1).clamp(min=0))
    r = _rand((users.numel(), num_negatives), users.device, generator)
    rank = lo.unsqueeze(1) + (r * (hi - lo).unsqueeze(1)).long()  # [B, k]
    rank = torch.minimum(rank, (hi - 1).clamp(min=0).unsqueeze(1))
    neg = ranked[(start.unsqueeze(1) + rank).clamp(max=max(ranked.numel() - 1, 0))] \
        if ranked.numel() else torch.zeros_like(rank)
    empty = torch.nonzero(n == 0).flatten()
    if empty.numel():  # nothing but positives visited: uniform non-positive items
        neg[empty] = uniform_negatives(users[empty], positives, num_items, num_negatives,
                                       generator=generator)
    return neg


def _rank_visits(users: Tensor, seed_index: Tensor, item: Tensor, positives: Positives,
                 num_items: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Visits ``(seed_index [V], item [V])`` of ``users [S]`` ranked: ``ranked [R]``, each user's
    visited non-positive items, users in order, most visited first (ties in random order), and
    ``per_user [S]``, how many each user has."""
    key, count = torch.unique(seed_index * num_items + item, return_counts=True)
    seed_index, item = key // num_items, key % num_items
    keep = ~is_positive(positives, users[seed_index], item, num_items)
    seed_index, item, count = seed_index[keep], item[keep], count[keep]
    score = count + _rand((count.numel(),), count.device, generator)  # random order in a tie
    order = torch.argsort(score, descending=True, stable=True)
    order = order[torch.argsort(seed_index[order], stable=True)]  # by user, then visits
    return item[order], torch.bincount(seed_index, minlength=users.numel())


def _normalised(num_seeds: int, seed_index: Tensor, neighbor: Tensor, weight: Tensor
                ) -> ImportanceOutput:
    total = segment_sum(weight, seed_index, num_seeds)  # [S]
    return ImportanceOutput(seed_index, neighbor, weight / total[seed_index])


def shared_neighbor_counts(rowptr: Tensor, col: Tensor, sorted_keys: Tensor, src: Tensor,
                           slot: Tensor) -> Tensor:
    """``|N(src) ∩ N(col[slot])|`` for each edge ``(src [M], CSR slot [M])`` of a graph whose
    rows and cols are one node set; ``sorted_keys`` are its sorted
    :func:`reelgraph.graph.edge_keys`. Costs the neighbours' degree sum, not ``|E|``."""
    dst = col[slot]
    e, two_hop = row_slots(rowptr[dst], rowptr[dst + 1] - rowptr[dst])  # [P] edge, 2-hop slot
    hit = contains_edges(sorted_keys, src[e], col[two_hop], rowptr.numel() - 1)
    return torch.bincount(e[hit], minlength=slot.numel())


def tightness_neighbors(rowptr: Tensor, col: Tensor, seeds: Tensor, num_neighbors: int, *,
                        importance: Literal["weight", "shared"] = "weight",
                        edge_weight: Tensor | None = None, sorted_keys: Tensor | None = None,
                        smoothing: float = 1.0,
                        normalize: Literal["softmax", "proportional"] = "softmax",
                        temperature: float = 1.0,
                        generator: torch.Generator | None = None) -> ImportanceOutput:
    """``num_neighbors`` draws (with replacement) per seed, each neighbour ``n`` of seed ``v``
    drawn with probability ``g(r_vn)``, a normalisation of its relationship tightness ``r_vn``.

    ``normalize="softmax"`` (the default) is eq. 3 of the importance-sampling GNN for
    micro-video recommendation: ``g(r_vn) = exp(r_vn / T) / sum_{m in N(v)} exp(r_vm / T)``
    (``temperature`` ``T``; the paper's is 1); ``"proportional"`` is ``r_vn / sum_m r_vm`` (the
    former behaviour; tightness must be ``>= 0``). With ``num_neighbors=-1`` nothing is drawn:
    every neighbour comes once with its weight ``g(r_vn)``, so summing ``weight * x_n`` per seed
    is eq. 2 exactly; the mean over ``k`` draws is an unbiased estimate of it.

    Args:
        rowptr, col (Tensor): the CSR.
        seeds (Tensor): ``[S]`` seed rows.
        num_neighbors (int): draws per seed with at least one neighbour (``-1``: every
            neighbour once, no draw).
        importance (str): ``"weight"``: the strength ``edge_weight`` (CSR order, e.g. a rating
            or a count of shared neighbours kept as an edge weight); ``"shared"``: ``shared
            neighbours + smoothing`` (rows and cols one node set, ``sorted_keys`` required).
        smoothing (float): added to shared counts so neighbours with none stay possible
            (``proportional`` only: a softmax is unchanged by a shift).
        normalize (str): ``"softmax"`` (eq. 3) or ``"proportional"``.
        temperature (float): ``T`` of the softmax, ``> 0``.
        generator (torch.Generator, optional): on the CSR device.

    Returns:
        The draws; ``weight`` is the drawn neighbour's ``g(r_vn)`` over the seed's whole
        neighbourhood (its sampling probability).
    """
    deg = rowptr[seeds + 1] - rowptr[seeds]
    pos, slot = row_slots(rowptr[seeds], deg)  # every edge of the batch's rows
    tight = _tightness(rowptr, col, seeds, pos, slot, importance, edge_weight, sorted_keys,
                       smoothing)
    if normalize == "softmax":
        if not temperature > 0:
            raise ValueError(f"tightness_neighbors: temperature={temperature!r}; must be > 0")
        prob = segment_softmax(pos, tight / temperature, seeds.numel())  # [M] eq. 3
    elif normalize == "proportional":
        total = segment_sum(tight, pos, seeds.numel())  # [S]
        prob = tight / total[pos].clamp(min=torch.finfo(tight.dtype).tiny)
    else:
        raise ValueError(f"tightness_neighbors: unknown normalize {normalize!r}")
    if num_neighbors < 0:
        return ImportanceOutput(pos, col[slot], prob.to(torch.float))
    local_ptr = torch.cat([deg.new_zeros(1), torch.cumsum(deg, 0)])  # batch-local CSR
    draw_pos, local = sample_weighted(local_ptr, cumulative_weights(prob), torch.arange(
        seeds.numel(), device=seeds.device), num_neighbors, generator=generator)
    return ImportanceOutput(draw_pos, col[slot[local]], prob[local].to(torch.float))


def _tightness(rowptr: Tensor, col: Tensor, seeds: Tensor, pos: Tensor, slot: Tensor,
               importance: str, edge_weight: Tensor | None, sorted_keys: Tensor | None,
               smoothing: float) -> Tensor:
    """``r_vn`` (float64 ``[M]``) of every edge ``(seeds[pos], col[slot])``."""
    if importance == "weight":
        if edge_weight is None:
            raise ValueError("tightness_neighbors: importance='weight' needs edge_weight")
        return edge_weight[slot].to(torch.float64)
    if importance == "shared":
        if sorted_keys is None:
            raise ValueError("tightness_neighbors: importance='shared' needs sorted_keys")
        shared = shared_neighbor_counts(rowptr, col, sorted_keys, seeds[pos], slot)
        return (shared + smoothing).to(torch.float64)
    raise ValueError(f"tightness_neighbors: unknown importance {importance!r}")
