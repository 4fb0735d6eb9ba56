"""The equations of the collaborative-knowledge-graph model (:mod:`reelgraph.models.ckg`) as pure
functions, and one CKG's tower of parameters.

Equation numbers are the paper's (``../shared/papers/collaborative-knowledge-graph-multimedia.txt``,
which follows KGAT, Wang et al., KDD 2019):

- eqs. 9-10, TransR: ``g(h, r, t) = ||W_r e_h + e_r - W_r e_t||^2`` (the plausibility score;
  our copy of the paper drops its display, eq. 9 by position) and
  ``L_KG = sum -ln sigmoid(g(h, r, t') - g(h, r, t))`` (here the mean over the drawn triples);
- eq. 12, attention logits: ``pi'(h, r, t) = (W_r e_t)^T tanh(W_r e_h + e_r)`` (the paper prints
  ``+ e_t`` inside the tanh; KGAT's ``+ e_r``, the translation its text after eq. 13 describes,
  is used, as issue 17 states);
- eq. 13: ``pi`` = softmax of ``pi'`` over the triples sharing a head ``h``;
- eq. 11: ``e_N(h) = sum_{(h, r, t)} pi(h, r, t) e_t``;
- eq. 14, bi-interaction: ``LeakyReLU(W_1 (e_h + e_N)) + LeakyReLU(W_2 (e_h * e_N))`` (the paper
  prints ``W_1`` twice; KGAT's two matrices are meant).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reelgraph.graph import edge_weighted_sum, segment_mean_weight, segment_softmax
from reelgraph.samplers.plans.ckg import CKGraph


def project_runs(x: Tensor, w: Tensor, counts: list[int]) -> Tensor:
    """``W_r e`` ``[T, k]`` of rows ``x [T, d]`` sorted by relation, ``counts[r]`` rows of each
    relation ``r`` of ``w [R, d, k]``: one product per relation, with one gather-free backward
    (``split``/``unbind``/``cat``, never a full-size zero gradient per relation)."""
    parts = [p @ w_r for p, w_r in zip(torch.split(x, counts), w.unbind(0))]  # [c_r, k] each
    return torch.cat(parts)


def relation_project(x: Tensor, w: Tensor, relation: Tensor) -> Tensor:
    """``W_r e`` ``[T, k]`` of rows ``x [T, d]`` with projections ``w [R, d, k]`` of their
    relations ``relation [T]`` (no ``[T, d, k]`` gather of the projections)."""
    order = torch.argsort(relation)
    counts = torch.bincount(relation, minlength=w.size(0)).tolist()
    out = project_runs(x[order], w, counts)                              # [T, k] by relation
    return out[torch.argsort(order)]


def transr_score(head: Tensor, tail: Tensor, rel: Tensor) -> Tensor:
    """Eq. 9's ``g = ||W_r e_h + e_r - W_r e_t||^2`` ``[T]`` of projected rows ``head = W_r e_h``,
    ``tail = W_r e_t`` and relation rows ``rel = e_r`` ``[T, k]``."""
    return (head + rel - tail).pow(2).sum(-1)


def transr_loss(pos: Tensor, neg: Tensor) -> Tensor:
    """Eq. 10, averaged: mean of ``-ln sigmoid(g(h, r, t') - g(h, r, t))`` over ``[T]`` scores
    of the true ``pos`` and corrupted ``neg`` triples."""
    return F.softplus(pos - neg).mean()


def attention_logits(x: Tensor, rel: Tensor, w: Tensor, g: CKGraph) -> Tensor:
    """Eq. 12's ``pi'(h, r, t)`` ``[E]`` of every triple of ``g`` (sorted by relation) from entity
    rows ``x [N, d]``, relation rows ``rel [2R, k]`` and projections ``w [2R, d, k]``. One
    product per relation, so memory is ``O(E (d + k))``, never ``O(E d k)``."""
    wh = project_pairs(x, w, g.relation, g.head)                          # [E, k]
    wt = project_pairs(x, w, g.relation, g.tail)                          # [E, k]
    return (wt * torch.tanh(wh + rel.index_select(0, g.relation))).sum(-1)


def project_pairs(x: Tensor, w: Tensor, relation: Tensor, node: Tensor) -> Tensor:
    """``W_r e_v`` ``[E, k]`` per ``(relation [E], node [E])`` pair from rows ``x [N, d]`` and
    projections ``w [R, d, k]``, each distinct pair projected once (a node has many triples of
    one relation: ml-100k's 343k user-side triples hold far fewer distinct pairs)."""
    pair, inverse = torch.unique(relation * x.size(0) + node, return_inverse=True)  # by relation
    counts = torch.bincount(pair // x.size(0), minlength=w.size(0)).tolist()
    return project_runs(x.index_select(0, pair % x.size(0)), w, counts).index_select(0, inverse)


def neighbourhood(x: Tensor, weight: Tensor, g: CKGraph) -> Tensor:
    """Eq. 11's ``e_N [N, d]``: per head the ``weight``-ed sum of its tails' rows ``x [N, d]``
    (a sparse product: no ``[E, d]`` messages are kept for the backward pass)."""
    return edge_weighted_sum(g.head, g.tail, weight, x, g.num_nodes)


def bi_interaction(h: Tensor, side: Tensor, w1: nn.Linear, w2: nn.Linear,
                   negative_slope: float) -> Tensor:
    """Eq. 14: ``LeakyReLU(W_1 (e_h + e_N)) + LeakyReLU(W_2 (e_h * e_N))`` of rows ``h`` and
    their neighbourhoods ``side`` ``[N, d]`` → ``[N, d']``."""
    return (F.leaky_relu(w1(h + side), negative_slope)
            + F.leaky_relu(w2(h * side), negative_slope))


class CKGTower(nn.Module):
    """The parameters of one CKG: entity rows ``[N, d]`` (users, items, other entities), relation
    rows ``[2R, k]``, TransR projections ``W_r [2R, d, k]``, and ``W_1``, ``W_2`` per layer."""

    def __init__(self, num_nodes: int, num_relations: int, embedding_dim: int,
                 relation_dim: int, num_layers: int):
        super().__init__()
        d, k = embedding_dim, relation_dim
        self.entity = nn.Parameter(torch.empty(num_nodes, d))
        self.relation = nn.Parameter(torch.empty(num_relations, k))
        self.projection = nn.Parameter(torch.empty(num_relations, d, k))
        self.w1 = nn.ModuleList(nn.Linear(d, d) for _ in range(num_layers))
        self.w2 = nn.ModuleList(nn.Linear(d, d) for _ in range(num_layers))

    def extra_repr(self) -> str:
        (n, d), (r, k) = self.entity.shape, self.relation.shape
        return f"nodes={n}, relations={r}, embedding_dim={d}, relation_dim={k}"

    def weights(self, g: CKGraph, attention: bool, detach: bool, x: Tensor | None = None
                ) -> Tensor:
        """Eq. 13's ``pi [E]`` from the current layer-0 rows ``x [N, d]`` of ``g``'s nodes
        (``None``: the whole table; uniform without ``attention``; computed without gradient
        with ``detach``)."""
        if not attention:
            return segment_mean_weight(g.head, g.num_nodes)  # "w/o Att": 1 / |N_h|
        x = self.entity if x is None else x
        with torch.set_grad_enabled(torch.is_grad_enabled() and not detach):
            logits = attention_logits(x, self.relation, self.projection, g)
            return segment_softmax(g.head, logits, g.num_nodes)  # eq. 13

    def forward(self, g: CKGraph, attention: bool = True, detach: bool = False,
                negative_slope: float = 0.2, normalize: bool = True,
                node: Tensor | None = None) -> Tensor:
        """``[e^(0) || e^(1) || ... || e^(L)]`` ``[N, d (L + 1)]`` of every node of ``g`` (eq.
        15's concatenation; layers ``1..L`` L2-normalised with ``normalize``, as KGAT's code).
        ``node [N]``: ``g`` is a sampled neighbourhood whose local node ``j`` is entity
        ``node[j]``; every layer is computed for every local node, but only the seeds' rows
        are exact (a node at hop ``j`` has its layers ``0..L-j`` right, all a seed reads)."""
        x = self.entity if node is None else self.entity[node]              # [N, d]
        pi = self.weights(g, attention, detach, x)                         # [E]
        layers, h = [x], x
        for w1, w2 in zip(self.w1, self.w2):
            h = bi_interaction(h, neighbourhood(h, pi, g), w1, w2, negative_slope)  # [N, d]
            layers.append(F.normalize(h, dim=1) if normalize else h)
        return torch.cat(layers, dim=1)

    def kg_terms(self, head: Tensor, relation: Tensor, tail: Tensor, neg_tail: Tensor
                 ) -> tuple[Tensor, Tensor]:
        """``(L_KG, l2)`` of eq. 10 on ``[T]`` triples; ``l2`` is ``sum ||.||^2 / 2`` of the
        projected rows and relation rows per triple (KGAT's TransR regulariser)."""
        e, w, rel = self.entity, self.projection, self.relation[relation]
        wh, wt, wn = (relation_project(e[n], w, relation) for n in (head, tail, neg_tail))  # [T, k]
        pos, neg = transr_score(wh, wt, rel), transr_score(wh, wn, rel)    # [T]
        l2 = (wh.pow(2).sum() + wt.pow(2).sum() + wn.pow(2).sum() + rel.pow(2).sum()) / 2
        return transr_loss(pos, neg), l2 / head.numel()
