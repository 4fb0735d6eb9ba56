"""The plan of GraphSAGE / PinSage (:mod:`reelgraph.models.sage`): each batch's sampled
neighbourhood, with its target edges never used, and the one hook that needs the model.

The graph is the homogeneous bipartite one (users ``0..U-1``, items ``U..U+I-1``). A batch's
seeds are its users, positives and negatives; per hop ``l`` each frontier node keeps
``fanouts[l]`` neighbours (``-1``: all):

* uniform aggregators: uniform neighbours of the symmetric CSR, weighted ``1 / #kept`` (a mean);
* importance (PinSage): the same-type nodes most visited by random walks with restart
  (user → item → user or item → user → item), weighted by normalised visit counts.

Target edges ``(user, positive)`` are removed (``exclude_targets``), so a positive never leaks
into its own pair's neighbourhood: the uniform sampler drops them, the walks never step on them.

Full-graph inference (``static``): every node's neighbourhood drawn once (seed ``seed + 1``;
``inference_fanout`` uniform neighbours or PinSage's walks), kept as a derived CSR.

Hard negatives, ``hard_count(epoch)`` per positive (PinSage's curriculum, §3.4: ``n - 1`` in
epoch ``n``, i.e. ``min(epoch, hard_negatives)`` with 0-based epochs; a constant
``hard_negatives`` with ``hard_curriculum`` off), each with its own sampled neighbourhood:

* ``hard_source="ppr"`` (PinSage, §3.3): drawn in :meth:`SAGEPlan.sample` by
  :func:`~reelgraph.samplers.pinsage.ppr_hard_negatives` from ranks ``ppr_rank_range`` (fractions
  of the item count) of the user's personalised-PageRank ranking; no parameters read;
* ``hard_source="embedding"`` (ours, kept as an option): ranks ``hard_rank_range`` of the last
  evaluation's scores, so they need the model: :meth:`SAGEPlan.mine`, the one hook run in the
  training process, with a generator derived from the batch's seed.

The epoch comes from the batch (``triples.epoch``, which the loader's ``TrainBatches`` sets from
its ``BatchIndex``). A batch made without one (``plan_batch`` outside a loader) gets a warning and
the cap: hard negatives from the first step, as without the curriculum.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from reelgraph.graph import (Subgraph, contains_edges, edge_keys, expand_rows, transpose_csr,
                             undirected_edge_keys)
from reelgraph.samplers.batch import BPRBatch, GraphBatch, mixed_seed, move
from reelgraph.samplers.negative import hard_negatives_from_embeddings
from reelgraph.samplers.neighbor import neighbor_sample, sample_uniform
from reelgraph.samplers.pinsage import pinsage_neighbors, ppr_hard_negatives
from reelgraph.samplers.plans.base import Plan
from reelgraph.samplers.plans.gcn import SymmetricGraph, symmetric_graph, triple_nodes

ALL = 1 << 30  # fan-out -1 of the importance aggregator: every visited node


@dataclass(frozen=True)
class SAGEBatch(GraphBatch):
    """A :class:`GraphBatch` plus, when the plan draws them, hard negatives ``hard [B, h]`` with
    their own sampled neighbourhood ``hard_sub`` (seeds: the unique ``U + item``) and rows
    ``hard_index [B, h]`` in it; ``hard_count``: the ``h`` this batch's epoch asks for."""

    hard_count: int = field(default=0, kw_only=True)
    hard: Tensor | None = field(default=None, kw_only=True)
    hard_sub: Subgraph | None = field(default=None, kw_only=True)
    hard_index: Tensor | None = field(default=None, kw_only=True)


@dataclass(frozen=True)
class SAGEContext:
    graph: SymmetricGraph  # symmetric CSR (uniform hops)
    user_item: tuple[Tensor, Tensor]
    item_user: tuple[Tensor, Tensor]


@dataclass(frozen=True)
class SAGEStatic:
    """Per-device state: every node's inference neighbourhood as a CSR ``(rowptr [N + 1], col,
    weight)`` (global ids) and the train CSR (hard negatives skip its positives)."""

    rowptr: Tensor
    col: Tensor
    weight: Tensor
    train: tuple[Tensor, Tensor]
    num_users: int
    num_items: int

    def neighbourhood(self, nodes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The inference neighbourhood of ``nodes [C]``: ``(position in nodes [M], global
        neighbour [M], weight [M])``; a lookup in the CSR drawn once per device, no draw."""
        pos, slot = expand_rows(self.rowptr, nodes)
        return pos, self.col[slot], self.weight[slot]


@dataclass(frozen=True)
class SAGEPlan(Plan):
    """The fields (and their defaults) are :class:`~reelgraph.models.sage.SAGEConfig`'s."""

    fanouts: tuple[int, ...]
    importance: bool               # PinSage walks instead of uniform neighbours
    num_walks: int                 # importance: walks per node
    walk_length: int               # importance: two-step (x → y → x) moves per walk
    restart_prob: float            # importance: P(back to the start node) after a move
    exclude_targets: bool
    inference_fanout: int          # static: uniform neighbours per node (-1: all)
    hard_negatives: int            # per positive (the curriculum's cap); 0: off
    hard_source: str               # "ppr" (sample) | "embedding" (mine)
    hard_curriculum: bool          # min(epoch, hard_negatives) per positive; off: the cap
    hard_rank_range: tuple[int, int]        # embedding: ranks [lo, hi)
    ppr_rank_range: tuple[float, float]     # ppr: ranks [lo, hi) as fractions of the items
    ppr_num_walks: int             # ppr: walks per user
    ppr_walk_length: int           # ppr: user → item → user steps per walk
    seed: int                      # of the inference neighbourhoods (seed + 1)

    def context(self, store) -> SAGEContext:
        g = symmetric_graph(store)
        train = store.graph("train")
        t = store.derived("transpose", {"split": "train"}, lambda: dict(zip(
            ("rowptr", "col"), transpose_csr(train.rowptr, train.col, train.num_items))))
        return SAGEContext(g, (train.rowptr, train.col), (t["rowptr"], t["col"]))

    # -- sampling ----------------------------------------------------------------------------
    def subgraph(self, ctx: SAGEContext, seeds: Tensor, users: Tensor, pos: Tensor,
                 generator: torch.Generator) -> Subgraph:
        """The ``L``-hop neighbourhood of unique global ``seeds``, never using a target edge
        ``(users[b], pos[b])`` in either direction (unless ``exclude_targets`` is off)."""
        if not self.exclude_targets:
            users, pos = users[:0], pos[:0]
        if self.importance:
            return self._importance_subgraph(ctx, seeds, users, pos, generator)
        g = ctx.graph
        out = neighbor_sample(g.rowptr, g.col, seeds, fanouts=list(self.fanouts), generator=generator,
                              exclude_keys=undirected_edge_keys(users, pos + g.num_users, g.num_nodes))
        weight = 1.0 / torch.bincount(out.row, minlength=out.node.numel()).clamp(min=1).float()
        return Subgraph(out.node, out.row, out.col, weight[out.row], out.num_sampled_nodes,
                        out.num_sampled_edges)

    def _importance_hop(self, ctx: SAGEContext, frontier: Tensor, k: int, avoid,
                        generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """PinSage neighbours of global ``frontier [S]``: ``(position [M], global id, weight)``."""
        U, parts = ctx.graph.num_users, []
        for is_user, (a, b), offset in ((True, (ctx.user_item, ctx.item_user), 0),
                                        (False, (ctx.item_user, ctx.user_item), U)):
            at = torch.nonzero((frontier < U) == is_user).flatten()
            seed_avoid = avoid if is_user or avoid is None else (lambda i, u: avoid(u, i))
            out = pinsage_neighbors(a, b, frontier[at] - offset, num_neighbors=k if k > 0 else ALL,
                                    num_walks=self.num_walks, walk_length=self.walk_length,
                                    restart_prob=self.restart_prob, generator=generator,
                                    avoid=seed_avoid)
            parts.append((at[out.seed_index], out.neighbor + offset, out.weight))
        return tuple(torch.cat(t) for t in zip(*parts))

    def _importance_subgraph(self, ctx: SAGEContext, seeds: Tensor, users: Tensor, pos: Tensor,
                             generator: torch.Generator) -> Subgraph:
        I = ctx.item_user[0].numel() - 1
        keys = torch.sort(edge_keys(users, pos, I)).values
        avoid = lambda u, i: contains_edges(keys, u, i, I)  # noqa: E731 (user, item) targets
        node, frontier = seeds, seeds
        frontier_local = torch.arange(seeds.numel(), device=seeds.device)
        rows, cols, weights, nsn, nse = [], [], [], [seeds.numel()], []
        for k in self.fanouts:
            at, nbr, w = self._importance_hop(ctx, frontier, k, avoid, generator)
            new = torch.unique(nbr[~torch.isin(nbr, node)])
            node = torch.cat([node, new])
            ids, order = torch.sort(node)
            rows.append(frontier_local[at])
            cols.append(order[torch.searchsorted(ids, nbr)])
            weights.append(w)
            frontier_local = torch.arange(node.numel() - new.numel(), node.numel(),
                                          device=node.device)
            frontier = new
            nsn.append(new.numel())
            nse.append(nbr.numel())
        return Subgraph(node, torch.cat(rows), torch.cat(cols), torch.cat(weights), nsn, nse)

    def sample(self, ctx: SAGEContext, triples: BPRBatch, generator: torch.Generator
               ) -> SAGEBatch:
        seeds, index = torch.unique(triple_nodes(triples, ctx.graph.num_users), return_inverse=True)
        sub = self.subgraph(ctx, seeds, triples.users, triples.pos, generator)
        batch = SAGEBatch(triples.users, triples.pos, triples.neg, sub, index, seed=triples.seed,
                          hard_count=self.hard_count(getattr(triples, "epoch", None)))
        if self.hard_source != "ppr" or batch.hard_count == 0:
            return batch
        I = ctx.item_user[0].numel() - 1
        hard = ppr_hard_negatives(ctx.user_item, ctx.item_user, triples.users, ctx.user_item,
                                  batch.hard_count, rank_range=self.ppr_ranks(I),
                                  num_walks=self.ppr_num_walks, walk_length=self.ppr_walk_length,
                                  restart_prob=self.restart_prob, generator=generator)
        return self._with_hard(ctx, batch, hard, generator)

    def hard_count(self, epoch: int | None) -> int:
        """Hard negatives per positive in 0-based ``epoch``: PinSage's curriculum ``n - 1`` in
        epoch ``n`` (1-based), capped at ``hard_negatives``; the cap without the curriculum or
        when the loader gives no epoch (warned)."""
        if not self.hard_curriculum or self.hard_negatives == 0:
            return self.hard_negatives
        if epoch is None:
            warnings.warn("SAGEPlan: the batch carries no epoch, so the hard-negative curriculum "
                          f"cannot run; using the cap, {self.hard_negatives} per positive",
                          stacklevel=2)
            return self.hard_negatives
        return min(max(int(epoch), 0), self.hard_negatives)

    def ppr_ranks(self, num_items: int) -> tuple[int, int]:
        """``ppr_rank_range`` in ranks of ``num_items`` items: ``[floor(lo I), ceil(hi I))``,
        at least one rank wide."""
        lo = math.floor(self.ppr_rank_range[0] * num_items)
        return lo, max(lo + 1, math.ceil(self.ppr_rank_range[1] * num_items))

    def _with_hard(self, ctx: SAGEContext, batch: SAGEBatch, hard: Tensor,
                   generator: torch.Generator) -> SAGEBatch:
        """``batch`` with hard negatives ``hard [B, h]`` and their sampled neighbourhood (on the
        CPU, target edges excluded as for the batch's own)."""
        seeds, index = torch.unique(hard.cpu() + ctx.graph.num_users, return_inverse=True)
        sub = self.subgraph(ctx, seeds, batch.users.cpu(), batch.pos.cpu(), generator)
        dev = batch.device
        return replace(batch, hard=hard, hard_sub=move(sub, dev), hard_index=index.to(dev))

    # -- the hook that needs the model -------------------------------------------------------
    @property
    def mines_negatives(self) -> bool:
        return self.hard_negatives > 0 and self.hard_source == "embedding"

    def mine(self, ctx: SAGEContext, batch: SAGEBatch, user_emb: Tensor, item_emb: Tensor
             ) -> SAGEBatch:
        """``batch`` (bound, on its device) with ``batch.hard_count`` hard negatives per positive
        drawn from ranks ``hard_rank_range`` of ``user_emb @ item_emb.T`` (train positives
        skipped), and their own sampled neighbourhood (from ``ctx``, on the CPU); generators
        derived from the batch's seed."""
        if batch.hard_count == 0:
            return batch
        gen = torch.Generator(batch.device).manual_seed(mixed_seed(batch.seed, 2))
        hard = hard_negatives_from_embeddings(user_emb, item_emb, batch.users, batch.static.train,
                                              batch.hard_count, generator=gen,
                                              rank_range=tuple(self.hard_rank_range))
        return self._with_hard(ctx, batch, hard,
                               torch.Generator().manual_seed(mixed_seed(batch.seed, 3)))

    # -- inference -------------------------------------------------------------------------
    def static(self, store, device: torch.device) -> SAGEStatic:
        params = {"importance": self.importance, "walks": (self.num_walks, self.walk_length,
                  self.restart_prob), "fanout": self.inference_fanout, "seed": self.seed,
                  "k": self.fanouts[0] if self.importance else None}
        a = store.derived("sage-inference", params, lambda: self._inference(store))
        train = store.graph("train")
        return SAGEStatic(*(a[k].to(device) for k in ("rowptr", "col", "weight")),
                          (train.rowptr.to(device), train.col.to(device)),
                          store.num_users, store.num_items)

    def _inference(self, store, chunk: int = 65536) -> dict[str, Tensor]:
        """Every node's neighbourhood, chunk by chunk: CSR ``rowptr``, ``col``, ``weight``."""
        ctx, gen = self.context(store), torch.Generator().manual_seed(self.seed + 1)
        N, parts = ctx.graph.num_nodes, []
        for start in range(0, N, chunk):
            nodes = torch.arange(start, min(start + chunk, N))
            if self.importance:
                pos, nbr, w = self._importance_hop(ctx, nodes, self.fanouts[0], None, gen)
            else:
                pos, slot = sample_uniform(ctx.graph.rowptr, nodes, self.inference_fanout,
                                           generator=gen)
                nbr = ctx.graph.col[slot]
                w = 1.0 / torch.bincount(pos, minlength=nodes.numel()).clamp(min=1).float()[pos]
            order = torch.argsort(pos, stable=True)
            parts.append((pos[order] + start, nbr[order].long(), w[order].float()))
        pos, col, weight = (torch.cat(t) for t in zip(*parts))
        rowptr = torch.zeros(N + 1, dtype=torch.long)
        torch.cumsum(torch.bincount(pos, minlength=N), 0, out=rowptr[1:])
        return {"rowptr": rowptr, "col": col, "weight": weight}

