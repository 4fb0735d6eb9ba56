"""The collaborative-knowledge-graph model (issue 17; paper:
``../shared/papers/collaborative-knowledge-graph-multimedia.txt``, an extension of KGAT, Wang et
al., KDD 2019, to a user side).

Two collaborative KGs (eqs. 3-8; built by :mod:`reelgraph.samplers.plans.ckg`): the user-side
``G_u`` (users → items with one relation per interaction type, e.g. rating level, → the item
KG's attributes) and the item-side ``G_i`` (items → users → the user KG's attributes: age,
gender, occupation, zip for MovieLens), each with every triple also reversed. Per CKG, with its
own parameters (:class:`~reelgraph.models.ckg_layers.CKGTower`):

- TransR (eqs. 9-10): ``g(h, r, t) = ||W_r e_h + e_r - W_r e_t||^2``, ``L_KG`` the mean of
  ``-ln sigmoid(g(h, r, t') - g(h, r, t))`` over the batch's triples with corrupted tails;
- knowledge-aware attention (eqs. 11-13): ``pi(h, r, t)``, the softmax over a head's triples of
  ``(W_r e_t)^T tanh(W_r e_h + e_r)``; ``e_N(h) = sum pi(h, r, t) e_t``;
- bi-interaction (eq. 14): ``e^(l) = LeakyReLU(W_1 (e + e_N)) + LeakyReLU(W_2 (e * e_N))``;
- eq. 15: the layers ``e^(0) .. e^(L)`` concatenated.

A user's (item's) representation concatenates its ``G_u`` and ``G_i`` rows, ``2 d (L + 1)``
wide; a pair is scored by inner product. The loss (eq. 17) is ``L_BPR + kg_weight (L_KGu +
L_KGi) + reg_weight (l2_cf + l2_kg)``: BPR (eq. 16, mean over the batch's triples), the L2 of
the batch's layer-0 user and item rows of both towers per BPR triple, and of the TransR terms
(projected rows and relation rows) per KG triple.

Choices where the paper is vague (following KGAT's code where it has one):

- Attention is recomputed from the CURRENT layer-0 entity and relation rows on EVERY forward
  pass (every training step and every evaluation), over the whole graph or the batch's sampled
  triples, and used by all layers (KGAT computes it from the layer-0 rows too, but refreshes
  it once per epoch, without gradient). Gradients flow through it (into ``e``, ``e_r`` and
  ``W_r``) unless ``detach_attention`` (KGAT's no-gradient attention, still refreshed every
  step).
- Each CKG has its own entity, relation, ``W_r``, ``W_1``, ``W_2`` parameters: nothing is shared
  between ``G_u`` and ``G_i`` (the paper concatenates "two pairs of user and item vectors",
  which would be partly identical if shared).
- Every triple is also added reversed with its own relation (KGAT), so users aggregate from
  items and items from users and attributes in both CKGs.
- Eqs. 16-17 sum the three losses and optimise them jointly every step (KGAT's code alternates
  a CF epoch and a KG epoch); ``kg_weight`` scales ``L_KGu + L_KGi`` (1 in the paper).
- ``kg_batch_size`` triples per CKG per step, uniform over all its triples (the plan's doc);
  corrupted tails uniform over the CKG's nodes, redrawn if they form a true triple.
- Layers keep width ``d`` (KGAT uses 64, 32, 16); ``W_1``, ``W_2`` have biases; LeakyReLU slope
  0.2 (KGAT's TensorFlow default); layers ``1..L`` L2-normalised before the concatenation
  (``normalize_layers``, KGAT's code); no message dropout; Xavier-uniform ``W_r``, ``e_r``,
  ``W_1``, ``W_2`` (KGAT's code), entity rows by ``init``.
- Rating levels become relations when the store's train weights take at most 10 values
  (``rating_relations``), else one ``interact`` relation.
- Without a user KG in the store, ``G_i`` is the interactions alone (still a second tower).

Ablations (config switches): ``use_kg=False`` (interactions only, no KG triples in either CKG),
``user_side=False`` (``G_u`` alone: KGAT), ``attention=False`` (``pi = 1 / |N_h|``).

Whole graph or sampled (:mod:`reelgraph.samplers.plans.ckg`, one loss path): with ``fanouts``
each batch carries, per CKG, the ``L``-hop KG neighbourhood of its users and items sampled by
the loader (uniform without replacement, ``min(k, d_h)`` triples per head and hop), and the
attention (eqs. 12-13) is recomputed every step from the current layer-0 rows over the SAMPLED
triples only (the softmax renormalised over them, no reweighting), as the bi-interaction
layers run over them; with every fan-out ``-1`` a seed's rows equal its full-graph rows.
Evaluation (``embed``) is always over the whole CKGs. The TransR triples are the same in both
modes (drawn from the whole CKGs). ``exclude_targets`` drops the batch's positive pairs from
its neighbourhoods; ``chunk_size`` is unused (the whole-graph embed is one pass).

Memory: whole graph, a step holds ``O(E k)`` attention terms and ``O(N d (L + 1))`` rows per CKG,
``E`` counting each interaction and KG triple twice; sampled, the same over the batch's sampled
triples and nodes (every layer is computed for every sampled node, the last hop included:
simpler than per-hop truncation, at most ``O(N' d^2)`` more per layer).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from reelgraph.models.base import (GraphConfig, Recommender, bpr_terms, check_values,
                                   init_tables_, int_at_least, make_plan)
from reelgraph.models.ckg_layers import CKGTower
from reelgraph.samplers.plans.ckg import CKGBatch, CKGPlan, CKGraph, CKGStatic, ckg_graphs


@dataclass(frozen=True)
class CKGConfig(GraphConfig):
    """The CKG model: the :class:`GraphConfig` fields (``fanouts``: sampled batches, module doc)
    and its own below."""

    relation_dim: int | None = None   # k of TransR's relation space (e_r, W_r: d -> k); None: d
    kg_weight: float = 1.0            # weight of L_KGu + L_KGi in eq. 17
    kg_batch_size: int = 1024         # TransR triples drawn per CKG per step (eq. 10)
    use_kg: bool = True               # False: ablation without the KG (interactions only)
    user_side: bool = True            # False: ablation without the item-side CKG G_i (KGAT)
    attention: bool = True            # False: ablation without attention, pi = 1 / |N_h|
    detach_attention: bool = False    # True: no gradient through pi (KGAT's code)
    rating_relations: bool = True     # one relation per rating level (<= 10 distinct weights)
    negative_slope: float = 0.2       # LeakyReLU slope of eq. 14
    normalize_layers: bool = True     # L2-normalise layers 1..L before eq. 15's concatenation

    def __post_init__(self):
        super().__post_init__()
        check_values("CKGConfig",
                     kg_weight=(self.kg_weight, lambda v: v >= 0, "a finite number >= 0"),
                     kg_batch_size=(self.kg_batch_size, int_at_least(1), "an int >= 1"),
                     negative_slope=(self.negative_slope, lambda v: v >= 0,
                                     "a finite number >= 0"))
        if self.relation_dim is not None:
            check_values("CKGConfig",
                         relation_dim=(self.relation_dim, int_at_least(1), "an int >= 1"))

    def plan(self) -> CKGPlan:
        return make_plan(self, CKGPlan)

    def build(self, store) -> "CKG":
        graphs = ckg_graphs(store, self.user_side, self.use_kg, self.rating_relations)
        return CKG(store.num_users, store.num_items,
                   [(g.num_nodes, g.num_relations) for g in graphs], self)


class CKG(Recommender):
    """One :class:`~reelgraph.models.ckg_layers.CKGTower` per CKG of ``sizes [(num_nodes,
    num_relations)]`` (``G_u``, then ``G_i``); in each, users are nodes ``0..U-1`` and items
    ``U..U+I-1``."""

    def __init__(self, num_users: int, num_items: int, sizes: list[tuple[int, int]],
                 config: CKGConfig | None = None):
        super().__init__()
        self.config = c = config or CKGConfig()
        self.num_users, self.num_items = num_users, num_items
        if not sizes:
            raise ValueError("CKG needs at least one collaborative KG")
        self.towers = nn.ModuleList(
            CKGTower(n, r, c.embedding_dim, c.relation_dim or c.embedding_dim, c.num_layers)
            for n, r in sizes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        U, I = self.num_users, self.num_items
        for t in self.towers:
            e = t.entity
            init_tables_(self.config, *(p for p in (e[:U], e[U:U + I], e[U + I:]) if p.numel()))
            for p in (t.relation, t.projection):
                nn.init.xavier_uniform_(p)
            for lin in (*t.w1, *t.w2):
                nn.init.xavier_uniform_(lin.weight)
                nn.init.zeros_(lin.bias)

    def extra_repr(self) -> str:
        c = self.config
        return (f"users={self.num_users}, items={self.num_items}, ckgs={len(self.towers)}, "
                f"layers={c.num_layers}, use_kg={c.use_kg}, attention={c.attention}")

    def forward(self, graphs: list[tuple[CKGraph, Tensor | None]]) -> list[Tensor]:
        """Eq. 15's rows ``[N_s, d (L + 1)]`` of every node of each CKG's graph (towers in
        order, ``G_u`` first); ``graphs``: ``(graph, node)``, ``node`` the global ids of a
        sampled graph's local nodes, ``None`` for a whole CKG. Columns ``:d`` are layer 0."""
        c = self.config
        if len(graphs) != len(self.towers):
            raise ValueError(f"{len(graphs)} CKGs for {len(self.towers)} towers: the batch or "
                             "static state is not of this model's plan")
        return [t(g, c.attention, c.detach_attention, c.negative_slope, c.normalize_layers,
                  node=node) for t, (g, node) in zip(self.towers, graphs)]

    def embed(self, static: CKGStatic) -> tuple[Tensor, Tensor]:
        """``(user [U, D], item [I, D])`` of the whole graph, ``D = S d (L + 1)`` over the ``S``
        CKGs (towers concatenated ``G_u`` first)."""
        U, I = self.num_users, self.num_items
        outs = self([(g, None) for g in static.graphs])                  # [N_s, d (L + 1)]
        return (torch.cat([o[:U] for o in outs], 1), torch.cat([o[U:U + I] for o in outs], 1))

    def loss(self, batch: CKGBatch) -> dict[str, Tensor]:
        """Eq. 17: ``loss`` = BPR + ``kg_weight`` sum of the towers' ``L_KG`` + ``reg_weight``
        (CF and TransR L2); each term under its own key (``kg_user``, ``kg_item``)."""
        c, B, d = self.config, len(batch), self.config.embedding_dim
        outs = self(batch.graphs())                                      # [N_s, d (L + 1)]
        rows = torch.cat([o[batch.index] for o in outs], 1)              # [B (2 + k), D]
        ego = torch.cat([o[batch.index, :d] for o in outs], 1)           # layer 0 [B (2 + k), S d]
        out = bpr_terms(rows[:B], rows[B:].view(B, -1, rows.size(1)), ego.flatten(), c.reg_weight)
        kg = batch.kg
        total_kg, total_l2 = 0, 0
        for s, (tower, name) in enumerate(zip(self.towers, ("kg_user", "kg_item"))):
            l_kg, l2 = tower.kg_terms(kg.head[s], kg.relation[s], kg.tail[s], kg.neg_tail[s])
            out[name] = l_kg
            total_kg, total_l2 = total_kg + l_kg, total_l2 + l2
        out["l2_kg"] = total_l2
        out["loss"] = out["loss"] + c.kg_weight * total_kg + c.reg_weight * total_l2
        return out
