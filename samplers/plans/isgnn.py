"""The plan of the importance-sampling attention model (:mod:`reelgraph.models.isgnn`): per
batch, each tower's seeds with their interaction history and their same-type neighbours.

A batch's seeds are its unique users (user tower) and its unique positives and negatives (item
tower). For each seed the loader draws

* its interaction history (eqs. 6-10): ``history`` uniform interactions of the train graph
  (``-1``: all), each with its opinion level (the rating, below); the batch's target edges
  ``(user, positive)`` are dropped from both towers' histories (``exclude_targets``), so a
  positive never reaches its own pair's attention; a draw that hit a target is lost, not redrawn;
* its same-type neighbours (eqs. 2-3): users sharing items with a user, items sharing users with
  an item. ``neighbor_sampling="tightness"``: from the co-interaction graph of
  :func:`~reelgraph.samplers.tightness.co_interaction_graph` (candidates from ``num_walks``
  two-step walks per node, tightness ``r = shared neighbours``, built once per store and
  memory-mapped), ``neighbors`` draws with replacement, neighbour ``n`` of ``v`` with
  probability ``g(r_vn) = softmax_n(r_vn / T)`` (eq. 3). ``"uniform"`` (GraphRec's ablation):
  ``neighbors`` draws with replacement, each uniform over the EXACT two-hop neighbourhood
  ``N2(v) = {n != v : |N(v) ∩ N(n)| >= 1}`` by :func:`~reelgraph.samplers.two_hop.
  uniform_two_hop` (rejection over uniform two-step paths, per batch; not over the walk-found
  candidates, which favour tight pairs; ``num_walks`` unused). Each neighbour carries the weight
  of a mean over the draws (``1 / #drawn``), so the model's mean pooling is an unbiased estimate
  of eq. 2's ``sum_n g(r_vn) e_n`` (tightness) or of the plain mean over ``N2(v)`` (uniform; a
  seed the rejection rounds left short keeps fewer draws, still ``1 / #drawn``). With
  ``neighbors=-1`` nothing is drawn: tightness gives every co-interaction neighbour once with
  weight ``g(r_vn)`` (eq. 2 exactly), uniform every ``n`` in ``N2(v)`` once with ``1 / |N2(v)|``
  (exact enumeration in bounded runs; time ``sum_x d_x`` per node, quadratic in popular
  degrees). Both neighbourhoods come from the whole train graph, target edges included: a
  target edge only raises a shared count or adds a path, it is never a message.

Opinion levels: ``num_opinions > 1`` and a store with train edge weights (ratings; ml-100k's
``weight`` is the 1-5 rating): level ``clamp(round(w), 1, R) - 1``; otherwise (implicit data:
clicks, or ``InMemoryStore``) every interaction has level 0.

Full-graph inference (``static``): every node's history and neighbours drawn once (seed
``seed + 1``, no targets), kept on the device, sorted by node.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from reelgraph.graph import contains_edges, csr_rows, edge_keys, to_csr
from reelgraph.samplers.batch import BPRBatch, move
from reelgraph.samplers.neighbor import sample_uniform
from reelgraph.samplers.pinsage import tightness_neighbors
from reelgraph.samplers.plans.base import Plan
from reelgraph.samplers.tightness import co_interaction_graph
from reelgraph.samplers.two_hop import uniform_two_hop

NEIGHBOR_SAMPLING = ("tightness", "uniform")


@dataclass(frozen=True)
class TowerInputs:
    """One tower's inputs, grouped by seed (entries of a seed need not be contiguous).

    Attributes:
        seeds: ``[S]`` global ids of the tower's type (users, or items).
        hist_pos, hist_node, hist_opinion: ``[M]`` the seed's position in ``seeds``, the other
            side's id (an item of a user's history, a user of an item's) and the opinion level.
        nbr_pos, nbr_node, nbr_weight: ``[N]`` position in ``seeds``, the same-type neighbour and
            its pooling weight (module doc).
    """

    seeds: Tensor
    hist_pos: Tensor
    hist_node: Tensor
    hist_opinion: Tensor
    nbr_pos: Tensor
    nbr_node: Tensor
    nbr_weight: Tensor

    def select(self, start: int, stop: int) -> "TowerInputs":
        """Seeds ``start:stop`` (entries sorted by position), positions made chunk-local."""
        def part(pos: Tensor) -> slice:
            lo, hi = torch.searchsorted(pos, torch.tensor([start, stop], device=pos.device))
            return slice(int(lo), int(hi))
        h, n = part(self.hist_pos), part(self.nbr_pos)
        return TowerInputs(self.seeds[start:stop], self.hist_pos[h] - start, self.hist_node[h],
                           self.hist_opinion[h], self.nbr_pos[n] - start, self.nbr_node[n],
                           self.nbr_weight[n])

    def sorted(self) -> "TowerInputs":
        h, n = torch.argsort(self.hist_pos, stable=True), torch.argsort(self.nbr_pos, stable=True)
        return TowerInputs(self.seeds, self.hist_pos[h], self.hist_node[h], self.hist_opinion[h],
                           self.nbr_pos[n], self.nbr_node[n], self.nbr_weight[n])


@dataclass(frozen=True)
class ISGNNBatch(BPRBatch):
    """BPR triples plus both towers' inputs: ``user_index [B]`` rows of ``user.seeds``,
    ``item_index [B, 1 + k]`` rows of ``item.seeds`` (positive first, then the negatives)."""

    user: TowerInputs
    item: TowerInputs
    user_index: Tensor
    item_index: Tensor


@dataclass(frozen=True)
class ISGNNStatic:
    """Every user's and item's inputs (:class:`TowerInputs` over all nodes, sorted)."""

    user: TowerInputs
    item: TowerInputs


@dataclass(frozen=True)
class Side:
    """One tower's graphs: ``rowptr, col`` its interactions (user → item, or item → user),
    ``weight`` their weights in that CSR's order (``None``: implicit); for ``"tightness"`` its
    co-interaction graph ``nbr_rowptr, nbr_col, nbr_shared``, for ``"uniform"`` the other
    side's interactions ``back_rowptr, back_col`` and the sorted edge keys ``keys`` of
    ``rowptr, col`` (the unused ones ``None``)."""

    rowptr: Tensor
    col: Tensor
    weight: Tensor | None
    nbr_rowptr: Tensor | None = None
    nbr_col: Tensor | None = None
    nbr_shared: Tensor | None = None
    back_rowptr: Tensor | None = None
    back_col: Tensor | None = None
    keys: Tensor | None = None


@dataclass(frozen=True)
class ISGNNPlan(Plan):
    """The fields (and their defaults) are :class:`~reelgraph.models.isgnn.ISGNNConfig`'s."""

    history: int                 # interactions per seed (-1: all)
    neighbors: int               # same-type neighbours per seed (-1: all)
    neighbor_sampling: str       # "tightness" (eq. 3) | "uniform" (GraphRec ablation)
    temperature: float           # T of the softmax
    num_walks: int               # two-step walks per node finding co-interaction candidates
    #                              (tightness only)
    num_opinions: int            # opinion levels (1: implicit)
    exclude_targets: bool
    seed: int                    # of the co-interaction walks (seed) and inference draws (+ 1)

    def context(self, store) -> tuple[Side, Side]:
        g, w = store.graph("train"), store.edge_weight() if self.num_opinions > 1 else None
        if self.neighbor_sampling == "uniform":
            a = store.derived("isgnn-two-hop", {}, lambda: _two_hop_arrays(g))
            u_nbr = dict(back_rowptr=a["t_rowptr"], back_col=a["t_col"], keys=a["u_keys"])
            i_nbr = dict(back_rowptr=g.rowptr, back_col=g.col, keys=a["i_keys"])
        else:
            a = store.derived("isgnn-graphs", {"num_walks": self.num_walks, "seed": self.seed},
                              lambda: _co_interaction_arrays(g, self.num_walks, self.seed))
            u_nbr, i_nbr = ({f"nbr_{k}": a[f"{s}_{k}"] for k in ("rowptr", "col", "shared")}
                            for s in ("uu", "ii"))
        users = Side(g.rowptr, g.col, w, **u_nbr)
        items = Side(a["t_rowptr"], a["t_col"], None if w is None else w[a["t_perm"]], **i_nbr)
        return users, items

    def tower(self, side: Side, seeds: Tensor, targets: Tensor | None, num_cols: int,
              is_user: bool, generator: torch.Generator) -> TowerInputs:
        """Inputs of ``seeds [S]``: history without the target edges (sorted user-item keys
        ``targets``, ``None``: none) and same-type neighbours."""
        pos, slot = sample_uniform(side.rowptr, seeds, self.history, generator=generator)
        other = side.col[slot].long()
        if targets is not None and targets.numel():
            u, i = (seeds[pos], other) if is_user else (other, seeds[pos])
            keep = ~contains_edges(targets, u, i, num_cols)
            pos, slot, other = pos[keep], slot[keep], other[keep]
        if side.weight is None:
            opinion = torch.zeros_like(other)
        else:
            w = side.weight[slot].float()
            opinion = (torch.round(w).clamp(1, self.num_opinions) - 1).long()
        npos, nbr, weight = self.neighbours(side, seeds, generator)
        return TowerInputs(seeds, pos, other, opinion, npos, nbr, weight)

    def neighbours(self, side: Side, seeds: Tensor, generator: torch.Generator
                   ) -> tuple[Tensor, Tensor, Tensor]:
        """``(position [N], neighbour [N], pooling weight [N])`` (module doc)."""
        if self.neighbor_sampling == "uniform":  # 1 / #drawn (1 / |N2(v)| with -1)
            out = uniform_two_hop((side.rowptr, side.col), (side.back_rowptr, side.back_col),
                                  seeds, self.neighbors, sorted_keys=side.keys,
                                  generator=generator)
            return out.seed_index, out.neighbor, out.weight
        out = tightness_neighbors(side.nbr_rowptr, side.nbr_col, seeds, self.neighbors,
                                  edge_weight=side.nbr_shared, normalize="softmax",
                                  temperature=self.temperature, generator=generator)
        pos, nbr, weight = out.seed_index, out.neighbor.long(), out.weight
        if self.neighbors < 0:
            return pos, nbr, weight  # every neighbour with g(r): eq. 2 exactly
        count = torch.bincount(pos, minlength=seeds.numel()).clamp(min=1).float()
        return pos, nbr, 1.0 / count[pos]

    def sample(self, ctx: tuple[Side, Side], triples: BPRBatch, generator: torch.Generator
               ) -> ISGNNBatch:
        users, user_index = torch.unique(triples.users, return_inverse=True)
        items = torch.cat([triples.pos.unsqueeze(1), triples.neg], 1)  # [B, 1 + k]
        item_seeds, item_index = torch.unique(items, return_inverse=True)
        I = ctx[1].rowptr.numel() - 1
        targets = (torch.sort(edge_keys(triples.users, triples.pos, I)).values
                   if self.exclude_targets else None)
        return ISGNNBatch(triples.users, triples.pos, triples.neg,
                          self.tower(ctx[0], users, targets, I, True, generator),
                          self.tower(ctx[1], item_seeds, targets, I, False, generator),
                          user_index, item_index, seed=triples.seed, epoch=triples.epoch)

    def static(self, store, device: torch.device) -> ISGNNStatic:
        users, items = self.context(store)
        gen = torch.Generator().manual_seed(self.seed + 1)
        U, I = store.num_users, store.num_items
        towers = [self.tower(side, torch.arange(n), None, I, is_user, gen).sorted()
                  for side, n, is_user in ((users, U, True), (items, I, False))]
        return ISGNNStatic(*(move(t, device) for t in towers))


def _transpose(g) -> dict[str, Tensor]:
    t_rowptr, t_col, perm = to_csr(g.col, csr_rows(g.rowptr), g.num_items)  # users sorted
    return {"t_rowptr": t_rowptr, "t_col": t_col, "t_perm": perm}


def _co_interaction_arrays(g, num_walks: int, seed: int) -> dict[str, Tensor]:
    """The item → user CSR and both co-interaction graphs (``"tightness"``)."""
    t, gen = _transpose(g), torch.Generator().manual_seed(seed)
    uu = co_interaction_graph((g.rowptr, g.col), (t["t_rowptr"], t["t_col"]),
                              num_walks=num_walks, generator=gen)
    ii = co_interaction_graph((t["t_rowptr"], t["t_col"]), (g.rowptr, g.col),
                              num_walks=num_walks, generator=gen)
    names = ("rowptr", "col", "shared")
    return {**t, **{f"uu_{k}": v for k, v in zip(names, uu)},
            **{f"ii_{k}": v for k, v in zip(names, ii)}}


def _two_hop_arrays(g) -> dict[str, Tensor]:
    """The item → user CSR and the sorted edge keys of both CSRs (``"uniform"``)."""
    t = _transpose(g)
    return {**t, "u_keys": g.keys(),
            "i_keys": edge_keys(csr_rows(t["t_rowptr"]), t["t_col"], g.num_users)}
