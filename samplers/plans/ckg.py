"""The plan of the collaborative-knowledge-graph model (:mod:`reelgraph.models.ckg`): its two
collaborative KGs, and each batch's TransR triples with corrupted tails.

A collaborative KG (CKG, the paper's eqs. 3-8) joins the user–item train interactions with a KG
through the links of eqs. 6-7 (entities ``0..I-1`` of the store's item KG are its items,
entities ``0..U-1`` of its user KG are its users, so the links are the identity):

- the user-side CKG ``G_u`` (eq. 8): ``(u, interact_k, i)`` for every train interaction (the
  user is the head), plus the item KG's triples (items point to their attributes);
- the item-side CKG ``G_i``: ``(i, interact_k, u)`` (the item is the head), plus the user KG's
  triples (users point to their attributes: age, gender, occupation, zip for MovieLens).

Both CKGs number their nodes alike: users ``0..U-1``, items ``U..U+I-1``, then that side's other
KG entities; an item-KG entity ``e`` is node ``U + e``, a user-KG entity ``e >= U`` is node
``I + e``. ``interact_k`` is one relation per distinct train edge weight (rating level) when
``rating_relations`` and there are at most :data:`MAX_INTERACTION_RELATIONS` distinct values
(MovieLens ratings 1-5), else one ``interact`` relation (play counts, synthetic weights). As in
KGAT, every triple ``(h, r, t)`` also comes reversed as ``(t, r + R, h)`` (``R`` the forward
relations), so information flows both ways and every node has neighbours. ``use_kg=False``
keeps the interactions only; ``user_side=False`` builds ``G_u`` alone (KGAT's CKG).

A batch (:class:`CKGBatch`) carries, beside its BPR triples, ``kg_batch_size`` triples per CKG
drawn uniformly with replacement from all its triples (reversed and interaction triples
included, as KGAT's TransR trains on the whole CKG), each with a corrupted tail ``t'`` drawn
uniformly over the CKG's nodes and redrawn (up to 3 times) while ``(h, r, t')`` is a triple of
the graph (eq. 10: "other entities without r-connections"). Every draw comes from the batch's
generator.

Whole graph (``fanouts=None``): the static state holds both CKGs on the device and the batch's
rows are global node ids. Sampled (``fanouts``, one per layer, seeds' hop first, ``-1`` = all):
the batch's unique nodes (its users ``u`` and items ``U + i``, the same ids in both CKGs) are
the seeds of an ``L``-hop neighbourhood sampled on EACH CKG separately
(:func:`~reelgraph.samplers.neighbor.neighbor_sample` on the CKG's head-CSR, uniform without
replacement: ``min(k, d_h)`` of a head's ``d_h`` triples), relations carried along by CSR slot;
:class:`SampledCKG` is that neighbourhood as a :class:`CKGraph` over local ids (seeds first, in
the same order in every CKG, so one ``index`` row list serves both). The model runs attention
and bi-interaction over it exactly as over the whole graph, so with every fan-out ``-1`` the
seeds' rows ARE the full-graph ones (a node at hop ``j`` keeps all its triples for ``j < L``,
which is all a seed's layer ``L`` reads). No Horvitz–Thompson reweighting: the attention softmax
(eq. 13) and the ablation's ``1 / |N_h|`` are renormalised over the sampled triples (a
self-normalised estimate of the full weighted sum: consistent, biased for ``k < d_h``; KGAT
itself never samples, it attends over whole neighbourhoods). ``exclude_targets`` leaves
the batch's positive user–item pairs out of both neighbourhoods, both directions, any relation.
The head-CSRs are derived once per store and memory-mapped; the TransR triples are drawn from
the whole CKGs either way. Evaluation always runs over the whole graphs (``static``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from reelgraph.graph import undirected_edge_keys
from reelgraph.samplers.batch import BPRBatch
from reelgraph.samplers.neighbor import neighbor_sample
from reelgraph.samplers.plans.base import Plan
from reelgraph.samplers.plans.gcn import triple_nodes

MAX_INTERACTION_RELATIONS = 10   # more distinct train weights than this: one interact relation
NEGATIVE_REDRAWS = 3             # rounds of redrawing a corrupted tail that is a true triple
SIDES = ("user", "item")         # G_u, G_i


@dataclass(frozen=True)
class CKGraph:
    """One collaborative KG, its ``E`` triples sorted by ``(relation, head)``.

    Attributes:
        num_nodes: ``N`` = users + items + the side's other KG entities.
        num_relations: ``2 R`` (forward relations, then their reverses).
        head, relation, tail: ``[E]`` node and relation indices.
        rel_ptr: ``R' + 1`` offsets: relation ``r``'s triples are ``rel_ptr[r]:rel_ptr[r + 1]``.
        keys: ``[E]`` sorted ``(head * 2R + relation) * N + tail``, to test a triple's presence.
    """

    num_nodes: int
    num_relations: int
    head: Tensor
    relation: Tensor
    tail: Tensor
    rel_ptr: tuple[int, ...]
    keys: Tensor

    @classmethod
    def from_triples(cls, head: Tensor, relation: Tensor, tail: Tensor, num_nodes: int,
                     num_relations: int) -> "CKGraph":
        """The graph of ``[E]`` triples as given (no reverses added), sorted and indexed."""
        head, relation, tail = head.long(), relation.long(), tail.long()
        order = torch.argsort(relation * num_nodes + head, stable=True)
        head, relation, tail = head[order], relation[order], tail[order]
        rel_ptr = torch.searchsorted(relation, torch.arange(num_relations + 1))
        keys = torch.sort((head * num_relations + relation) * num_nodes + tail).values
        return cls(num_nodes, num_relations, head, relation, tail,
                   tuple(int(x) for x in rel_ptr), keys)

    @property
    def num_edges(self) -> int:
        return self.head.numel()

    def to(self, device) -> "CKGraph":
        return CKGraph(self.num_nodes, self.num_relations,
                       *(t.to(device) for t in (self.head, self.relation, self.tail)),
                       self.rel_ptr, self.keys.to(device))

    def contains(self, head: Tensor, relation: Tensor, tail: Tensor) -> Tensor:
        """``[T]`` bool: whether each ``(head, relation, tail)`` is a triple of this graph."""
        key = (head * self.num_relations + relation) * self.num_nodes + tail
        pos = torch.searchsorted(self.keys, key).clamp(max=self.keys.numel() - 1)
        return self.keys[pos] == key


@dataclass(frozen=True)
class KGTriples:
    """TransR triples of every CKG: ``head``, ``relation``, ``tail``, ``neg_tail`` ``[S, T]``
    (``S`` CKGs, ``T = kg_batch_size`` triples each)."""

    head: Tensor
    relation: Tensor
    tail: Tensor
    neg_tail: Tensor


@dataclass(frozen=True)
class SampledCKG:
    """One CKG's sampled neighbourhood of a batch's seeds (module doc). Within a relation the
    triples keep hop order, so they stay sorted by ``(relation, head)`` like a whole CKG's.

    Attributes:
        node: ``[N']`` global node ids of the local nodes, hop order (the seeds first).
        graph: the ``M`` sampled triples over local ids ``0..N'-1``, sorted by relation
            (``keys`` empty: never asked :meth:`CKGraph.contains`).
    """

    node: Tensor
    graph: CKGraph


@dataclass(frozen=True)
class CKGBatch(BPRBatch):
    """BPR triples, the TransR triples ``kg`` of eq. 10 and the graphs the rows come from.

    Attributes:
        index: ``[B (2 + k)]`` rows of the users, then of each triple's positive and negatives
            (``[B, 1 + k]`` flattened): global node ids (whole graph) or local seed rows, the same
            in every sampled CKG.
        subs: one :class:`SampledCKG` per CKG; ``None``: the whole CKGs of ``static``.
    """

    kg: KGTriples
    index: Tensor
    subs: tuple[SampledCKG, ...] | None

    def graphs(self) -> list[tuple[CKGraph, Tensor | None]]:
        """``(graph, global ids of its local nodes or None for the whole graph)`` per CKG."""
        if self.subs is None:
            return [(g, None) for g in self.static.graphs]
        return [(s.graph, s.node) for s in self.subs]


@dataclass(frozen=True)
class CKGStatic:
    """Per-device state: the CKGs (``G_u``, then ``G_i`` unless ``user_side=False``)."""

    graphs: tuple[CKGraph, ...]
    num_users: int
    num_items: int


def interaction_relations(weight: Tensor | None, rating_relations: bool
                          ) -> tuple[Tensor | None, int]:
    """``(relation index per train edge [E] or None (all 0), number of relations)``."""
    if weight is None or not rating_relations:
        return None, 1
    levels, index = torch.unique(weight, return_inverse=True)
    if levels.numel() > MAX_INTERACTION_RELATIONS:
        return None, 1
    return index, levels.numel()


def kg_of(store, side: str) -> tuple[tuple[Tensor, Tensor, Tensor] | None, int, int]:
    """``((head, relation, tail) | None, num_entities, num_relations)`` of the store's item KG
    (``side="user"``: ``G_u`` joins it) or user KG (``"item"``)."""
    if side == "user":
        kg, prefix, home = store.kg(), "", store.num_items
    else:
        kg, prefix, home = store.user_kg(), "user_", store.num_users
    if kg is None:
        return None, home, 0
    return kg, store.num_nodes[f"{prefix}entity"], store.num_nodes[f"{prefix}relation"]


def build_ckg(num_users: int, num_items: int, user: Tensor, item: Tensor, inter_rel: Tensor | None,
              num_inter_rel: int, kg: tuple[Tensor, Tensor, Tensor] | None, num_entities: int,
              num_kg_rel: int, side: str) -> CKGraph:
    """One CKG (module doc) from the train edges ``user``, ``item`` ``[E]``, their relations
    ``inter_rel`` (``None``: all 0) and a KG over ``num_entities`` entities."""
    U, I = num_users, num_items
    rel = inter_rel.long() if inter_rel is not None else torch.zeros_like(user)
    u, i = user.long(), item.long() + U
    h, t = (u, i) if side == "user" else (i, u)
    heads, rels, tails = [h], [rel], [t]
    if kg is not None:
        kh, kr, kt = (x.long() for x in kg)
        if side == "user":
            kh, kt = kh + U, kt + U
        else:
            kh, kt = torch.where(kh < U, kh, kh + I), torch.where(kt < U, kt, kt + I)
        heads, rels, tails = heads + [kh], rels + [kr + num_inter_rel], tails + [kt]
    R = num_inter_rel + num_kg_rel
    home = I if side == "user" else U
    N = U + I + max(num_entities - home, 0)
    head, relation, tail = (torch.cat(x) for x in (heads, rels, tails))
    return CKGraph.from_triples(torch.cat([head, tail]), torch.cat([relation, relation + R]),
                                torch.cat([tail, head]), N, 2 * R)


def ckg_graphs(store, user_side: bool, use_kg: bool, rating_relations: bool
               ) -> tuple[CKGraph, ...]:
    """The store's CKGs (``G_u``, then ``G_i`` with ``user_side``), built once per store and
    memory-mapped (:meth:`~reelgraph.data.store.GraphStore.derived`)."""
    out = []
    for side in SIDES[: 1 + int(user_side)]:
        def build(side=side) -> dict[str, Tensor]:
            g = store.graph("train")
            inter_rel, n_inter = interaction_relations(store.edge_weight(), rating_relations)
            kg, n_ent, n_rel = kg_of(store, side) if use_kg else (None, 0, 0)
            c = build_ckg(store.num_users, store.num_items, g.users(), g.col, inter_rel,
                          n_inter, kg, n_ent, n_rel, side)
            return dict(head=c.head, relation=c.relation, tail=c.tail, keys=c.keys,
                        rel_ptr=torch.tensor(c.rel_ptr), sizes=torch.tensor([c.num_nodes,
                                                                            c.num_relations]))
        params = dict(side=side, use_kg=use_kg, rating_relations=rating_relations, version=1)
        a = store.derived("ckg", params, build)
        N, R2 = (int(x) for x in a["sizes"])
        out.append(CKGraph(N, R2, a["head"], a["relation"], a["tail"],
                           tuple(int(x) for x in a["rel_ptr"]), a["keys"]))
    return tuple(out)


def draw_kg_triples(graphs: tuple[CKGraph, ...], size: int, generator: torch.Generator
                    ) -> KGTriples:
    """``size`` triples per graph, uniform with replacement, each with a corrupted tail
    (module doc)."""
    parts = []
    for g in graphs:
        idx = torch.randint(g.num_edges, (size,), generator=generator)
        h, r, t = g.head[idx].long(), g.relation[idx].long(), g.tail[idx].long()
        neg = torch.randint(g.num_nodes, (size,), generator=generator)
        for _ in range(NEGATIVE_REDRAWS):
            hit = g.contains(h, r, neg)
            if not hit.any():
                break
            neg = torch.where(hit, torch.randint(g.num_nodes, (size,), generator=generator), neg)
        parts.append((h, r, t, neg))
    return KGTriples(*(torch.stack(x) for x in zip(*parts)))


@dataclass(frozen=True)
class CKGAdjacency:
    """One CKG as a CSR over its heads, for sampling: ``rowptr [N + 1]``, ``col [E]`` (tails)
    and ``relation [E]`` per CSR slot (a head's triples ordered by relation)."""

    rowptr: Tensor
    col: Tensor
    relation: Tensor


def ckg_adjacency(store, graphs: tuple[CKGraph, ...], user_side: bool, use_kg: bool,
                  rating_relations: bool) -> tuple[CKGAdjacency, ...]:
    """The head-CSR of each of ``graphs`` (the store's, from :func:`ckg_graphs` with the same
    flags), built once per store and memory-mapped."""
    out = []
    for side, g in zip(SIDES, graphs):
        def build(g=g) -> dict[str, Tensor]:
            order = torch.argsort(g.head, stable=True)                    # by head, then relation
            rowptr = torch.zeros(g.num_nodes + 1, dtype=torch.long)
            rowptr[1:] = torch.cumsum(torch.bincount(g.head, minlength=g.num_nodes), 0)
            return dict(rowptr=rowptr, col=g.tail[order], relation=g.relation[order])
        params = dict(side=side, use_kg=use_kg, rating_relations=rating_relations, version=1)
        a = store.derived("ckg_csr", params, build)
        out.append(CKGAdjacency(a["rowptr"], a["col"], a["relation"]))
    return tuple(out)


def sample_ckg(g: CKGraph, adj: CKGAdjacency, seeds: Tensor, fanouts: tuple[int, ...],
               exclude_keys: Tensor | None = None, generator: torch.Generator | None = None
               ) -> SampledCKG:
    """The ``L``-hop neighbourhood of unique ``seeds [S]`` in ``g`` (head-CSR ``adj``), uniform
    without replacement per hop, minus the edges with sorted keys ``exclude_keys``."""
    out = neighbor_sample(adj.rowptr, adj.col, seeds, fanouts=list(fanouts),
                          exclude_keys=exclude_keys, generator=generator)
    rel = adj.relation[out.edge].long()                                  # [M]
    order = torch.argsort(rel, stable=True)
    relation = rel[order]
    rel_ptr = torch.searchsorted(relation, torch.arange(g.num_relations + 1, device=rel.device))
    head, tail = out.row[order].long(), out.col[order].long()
    local = CKGraph(out.node.numel(), g.num_relations, head, relation, tail,
                    tuple(int(x) for x in rel_ptr), head[:0])
    return SampledCKG(out.node, local)


@dataclass(frozen=True)
class CKGContext:
    """What sampling reads: the CKGs, their head-CSRs (sampled mode only) and ``U``."""

    graphs: tuple[CKGraph, ...]
    adjacency: tuple[CKGAdjacency, ...] | None
    num_users: int


@dataclass(frozen=True)
class CKGPlan(Plan):
    """Batches of the CKG model: BPR triples, TransR triples per CKG, and either the whole
    CKGs (``fanouts=None``) or each CKG's sampled neighbourhood of the batch (module doc)."""

    user_side: bool        # the fields (and their defaults) are the model config's
    use_kg: bool
    rating_relations: bool
    kg_batch_size: int
    fanouts: tuple[int, ...] | None
    exclude_targets: bool

    def context(self, store) -> CKGContext:
        flags = (self.user_side, self.use_kg, self.rating_relations)
        graphs = ckg_graphs(store, *flags)
        adj = None if self.fanouts is None else ckg_adjacency(store, graphs, *flags)
        return CKGContext(graphs, adj, store.num_users)

    def sample(self, ctx: CKGContext, triples: BPRBatch, generator: torch.Generator
               ) -> CKGBatch:
        kg = draw_kg_triples(ctx.graphs, self.kg_batch_size, generator)
        nodes = triple_nodes(triples, ctx.num_users)                     # [B (2 + k)]
        fields = dict(seed=triples.seed, epoch=triples.epoch)
        if self.fanouts is None:
            return CKGBatch(triples.users, triples.pos, triples.neg, kg, nodes, None, **fields)
        seeds, index = torch.unique(nodes, return_inverse=True)
        subs = []
        for g, adj in zip(ctx.graphs, ctx.adjacency):
            keys = (undirected_edge_keys(triples.users, triples.pos + ctx.num_users, g.num_nodes)
                    if self.exclude_targets else None)
            subs.append(sample_ckg(g, adj, seeds, self.fanouts, keys, generator))
        return CKGBatch(triples.users, triples.pos, triples.neg, kg, index, tuple(subs), **fields)

    def static(self, store, device: torch.device) -> CKGStatic:
        graphs = ckg_graphs(store, self.user_side, self.use_kg, self.rating_relations)
        return CKGStatic(tuple(g.to(device) for g in graphs), store.num_users, store.num_items)
