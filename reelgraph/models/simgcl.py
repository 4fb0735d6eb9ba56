"""SimGCL (Yu et al., SIGIR 2022): LightGCN plus contrast between two noise-perturbed views.

Each view propagates the layer-0 table with LightGCN's normalised adjacency and, after every
layer, adds uniform noise of length ``eps`` pointing into the embedding's own orthant::

    e^(l) = A e^(l-1) + eps * sign(e^(l)) * normalize(u),   u ~ U(0, 1)^d

The InfoNCE loss (cosine, temperature ``tau``) pulls together a node's two views and pushes apart
different nodes, over the batch's unique users and unique positive items; the total is
``BPR + lambda * (InfoNCE_user + InfoNCE_item) + reg * L2``.

Choices where the paper leaves room, all as in its reference code (SELFRec ``SimGCL.py``):
the final representation of every view, the clean one included, is the mean of layers ``1..L``
(the paper skips ``e^(0)``: "slight performance improvement"); the two perturbed views are drawn
afresh for every batch; BPR is on the clean view; L2 is on the batch's layer-0 rows.

``ego_layer=True`` (ours, off by default) averages layers ``0..L`` as LightGCN does.

The published recipe (``init="xavier"``, ``num_layers=2``, lr 1e-3, batch 2048, one negative:
``configs/simgcl_amazon_book.yaml``) collapses on dense graphs, and it does so in a restatement
of the reference's own training loop as much as here: ``benchmarks/simgcl_reference.py`` trains
both from the same tables on the same triples, and on ml-100k they agree step by step (BPR
0.6916 after 800 steps in both, Recall@20 0.097 / 0.099). Measured mechanism (RESULTS.md,
"SimGCL at its published recipe"): a propagated row averages ~85 neighbours' layer-0 rows, and
the cosine InfoNCE, whose gradient grows as ``1 / (tau * norm)``, keeps that average short by
making the neighbours' rows diverse (``|e| / |e^(0)|`` 0.12 after 800 steps, 0.78 without
InfoNCE); so its gradient stays 50-2,400x BPR's, BPR stays near ``ln 2``, and the uniformity
term pushes the top-20 toward unpopular items (mean ``log(1 + d_i)`` 3.4 against the test items'
4.6): Recall@20 falls below MostPopular. Keeping ``e^(0)`` and a softer ``tau`` (0.5) restore the
balance on ml-100k (1.13x LightGCN).

Training over the whole graph or the batch's sampled neighbourhood is the plan's (``fanouts``,
as for :class:`~reelgraph.models.lightgcn.LightGCN`): the clean view and the two noisy views are
each propagated over the batch's graph (noise added per layer as above); BPR is on the clean
view, InfoNCE over the batch's unique users and positive items. The noise is drawn from a
generator seeded by the batch's own seed (``(seed, epoch, rank, batch index)``), never from
torch's global RNG, so a resumed run adds the same noise as an uninterrupted one.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from reelgraph.graph import FullGraph, Subgraph, layer_mean, node_rows, propagate
from reelgraph.models.base import GraphConfig, graph_bpr
from reelgraph.models.lightgcn import LightGCN
from reelgraph.samplers.batch import GraphBatch
from reelgraph.samplers.plans.gcn import GCNStatic


@dataclass(frozen=True)
class SimGCLConfig(GraphConfig):
    """SimGCL: the :class:`GraphConfig` fields and its own below."""

    cl_weight: float = 0.5    # lambda, weight of the InfoNCE term
    eps: float = 0.1          # length of the noise added at every layer
    tau: float = 0.2          # InfoNCE temperature
    ego_layer: bool = False   # average layers 0..L (LightGCN) instead of the paper's 1..L

    def __post_init__(self):
        super().__post_init__()
        if self.num_layers < 1:
            raise ValueError(f"SimGCLConfig: num_layers={self.num_layers}; SimGCL needs >= 1")

    def build(self, store) -> "SimGCL":
        return SimGCL(store.num_users, store.num_items, self)


def info_nce(view1: Tensor, view2: Tensor, tau: float) -> Tensor:
    """Mean InfoNCE of row ``i`` of ``view1 [N, d]`` against all rows of ``view2 [N, d]``.

    ``-log( exp(cos(a_i, b_i) / tau) / sum_j exp(cos(a_i, b_j) / tau) )``, averaged over ``i``.
    """
    a, b = F.normalize(view1, dim=-1), F.normalize(view2, dim=-1)
    logits = a @ b.t() / tau  # [N, N]
    return F.cross_entropy(logits, torch.arange(a.shape[0], device=a.device))


def perturb(h: Tensor, eps: float, generator: torch.Generator | None = None) -> Tensor:
    """``h + eps * sign(h) * normalize(U(0, 1))`` per row of ``h [N, d]``; ``h`` at ``eps = 0``.
    The uniform draws come from ``generator`` (on ``h``'s device)."""
    if eps <= 0:
        return h
    u = torch.rand(h.shape, generator=generator, device=h.device, dtype=h.dtype)
    noise = F.normalize(u, dim=-1)  # [N, d], unit rows in the + orthant
    return h + eps * torch.sign(h) * noise


class SimGCL(LightGCN):
    """LightGCN encoder trained with BPR plus cross-view InfoNCE of two noisy views."""

    def __init__(self, num_users: int, num_items: int, config: SimGCLConfig | None = None):
        super().__init__(num_users, num_items, config or SimGCLConfig())

    def forward(self, graph: Subgraph | FullGraph, eps: float = 0.0,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """The seeds' view ``[S, d]`` (clean at ``eps = 0``, else noise of length ``eps`` after
        every layer, drawn from ``generator``): the mean of layers ``1..L`` (``0..L`` with
        ``ego_layer``), and their layer-0 rows ``[S, d]``."""
        c = self.config
        x0 = node_rows(graph.node, self.embedding.weight, sparse=self.embedding.sparse)
        layers = propagate(graph, x0, c.num_layers,
                           lambda l, side, h: perturb(side, eps, generator))
        return layer_mean(layers[0 if c.ego_layer else 1:]), layers[0]

    def embed(self, static: GCNStatic) -> tuple[Tensor, Tensor]:
        """The clean view of the whole graph, ``(user [U, d], item [I, d])``."""
        out, _ = self(static.graph)
        return out[: self.num_users], out[self.num_users:]

    def loss(self, batch: GraphBatch) -> dict[str, Tensor]:
        c = self.config
        out = graph_bpr(batch, *self(batch.graph), c.reg_weight)  # BPR on the clean view + L2
        gen = batch.generator(0)
        (v1, _), (v2, _) = self(batch.graph, c.eps, gen), self(batch.graph, c.eps, gen)  # [S, d]
        user_rows, item_rows = batch.rows()
        users, items = torch.unique(user_rows), torch.unique(item_rows[:, 0])
        out["cl"] = (info_nce(v1[users], v2[users], c.tau)
                     + info_nce(v1[items], v2[items], c.tau))
        out["loss"] = out["loss"] + c.cl_weight * out["cl"]
        return out

    def extra_repr(self) -> str:
        c = self.config
        return (f"users={self.num_users}, items={self.num_items}, layers={c.num_layers}, "
                f"eps={c.eps}, tau={c.tau}, cl_weight={c.cl_weight}")
