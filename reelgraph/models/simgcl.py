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

``ego_layer=True`` (ours, off by default) averages layers ``0..L`` as LightGCN does. On dense
graphs the propagated layers start with tiny norms (random neighbours average out), and the
cosine InfoNCE gradient grows as ``1 / (tau * norm)`` while BPR's shrinks with the norm: measured
on ml-100k at init, the InfoNCE gradient on the table was ~2,600x BPR's, so under Adam BPR never
left ``ln 2`` at ``tau = 0.2`` (Recall@20 near random). Keeping ``e^(0)`` and a softer ``tau``
(0.5) restores the balance; see ``benchmarks/RESULTS.md``.

``SimGCLConfig.fanouts`` selects sampled mini-batch training as for
:class:`~reelgraph.models.lightgcn.LightGCN`: the clean view and the two noisy views are each
propagated over the SAME sampled subgraph of the batch (noise added per layer as above); BPR is on
the clean view, InfoNCE over the batch's unique users and positive items (all seeds of the
subgraph). ``embed`` stays the full-graph clean view (chunked, evaluation only).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from reelgraph.models.lightgcn import (LightGCN, SampledGCNConfig, SampledState, batch_seeds,
                                       chunked_propagate, sym_spmm)
from reelgraph.models.subgraph import Subgraph, hop_propagate
from reelgraph.samplers.batch import BPRBatch


@dataclass
class SimGCLConfig(SampledGCNConfig):
    embedding_dim: int = 64   # d
    num_layers: int = 3       # L propagation steps
    cl_weight: float = 0.5    # lambda, weight of the InfoNCE term
    eps: float = 0.1          # length of the noise added at every layer
    tau: float = 0.2          # InfoNCE temperature
    reg_weight: float = 1e-4  # L2 on the batch's layer-0 embeddings
    init_std: float = 0.1     # normal init of the layer-0 table (SELFRec uses Xavier)
    ego_layer: bool = False   # average layers 0..L (LightGCN) instead of the paper's 1..L

    def build(self, store) -> "SimGCL":
        return SimGCL(store.num_users, store.num_items, self)


def info_nce(view1: Tensor, view2: Tensor, tau: float) -> Tensor:
    """Mean InfoNCE of row ``i`` of ``view1 [N, d]`` against all rows of ``view2 [N, d]``.

    ``-log( exp(cos(a_i, b_i) / tau) / sum_j exp(cos(a_i, b_j) / tau) )``, averaged over ``i``.
    """
    a, b = F.normalize(view1, dim=-1), F.normalize(view2, dim=-1)
    logits = a @ b.t() / tau  # [N, N]
    return F.cross_entropy(logits, torch.arange(a.shape[0], device=a.device))


def perturb(h: Tensor, eps: float) -> Tensor:
    """``h + eps * sign(h) * normalize(U(0, 1))`` per row of ``h [N, d]``; ``h`` at ``eps = 0``."""
    if eps <= 0:
        return h
    noise = F.normalize(torch.rand_like(h), dim=-1)  # [N, d], unit rows in the + orthant
    return h + eps * torch.sign(h) * noise


def perturbed_propagate(adj: Tensor, x: Tensor, num_layers: int, eps: float,
                        ego_layer: bool = False) -> Tensor:
    """Mean of layers ``1..L`` (``0..L`` with ``ego_layer``) of
    ``h <- adj h + eps * sign(h') * normalize(U(0,1))``; ``[N, d]``.

    ``eps = 0`` gives the clean LightGCN layers.
    """
    h, out = x, (x if ego_layer else torch.zeros_like(x))
    for _ in range(num_layers):
        h = perturb(sym_spmm(adj, h), eps)
        out = out + h
    return out / (num_layers + ego_layer)


class SimGCL(LightGCN):
    """LightGCN encoder trained with BPR plus cross-view InfoNCE of two noisy views."""

    def __init__(self, num_users: int, num_items: int, config: SimGCLConfig = SimGCLConfig()):
        if config.num_layers < 1:
            raise ValueError(f"SimGCL needs num_layers >= 1 (got {config.num_layers})")
        super().__init__(num_users, num_items, config)

    def embed(self, state: Tensor | SampledState, eps: float = 0.0) -> tuple[Tensor, Tensor]:
        """The clean view (``eps = 0``) or one perturbed view, ``(user [U, d], item [I, d])``, of
        the full graph. Sampled mode (evaluation only): the clean view, chunked, no gradients."""
        c = self.config
        if self.sampled:
            if eps > 0:
                raise ValueError("sampled SimGCL: embed() is the clean full-graph view; the noisy "
                                 "views are forward(sub, eps) over a sampled subgraph")
            out = chunked_propagate(state, self.embedding.weight, c.num_layers, c.chunk_size,
                                    c.ego_layer)
        else:
            out = perturbed_propagate(state, self.embedding.weight, c.num_layers, eps, c.ego_layer)
        return out[: self.num_users], out[self.num_users:]

    def forward(self, sub: Subgraph, eps: float = 0.0) -> tuple[Tensor, Tensor]:
        """The seeds' view ``[S, d]`` over the sampled ``sub`` (clean at ``eps = 0``, else noise
        of length ``eps`` after every layer) and their layer-0 rows ``[S, d]``."""
        c = self.config
        layers = hop_propagate(sub, self.embedding(sub.node), c.num_layers,
                               lambda l, adj, h: perturb(torch.sparse.mm(adj, h), eps))
        return torch.stack(layers[0 if c.ego_layer else 1:]).mean(0), layers[0]

    def loss(self, batch: BPRBatch, state: Tensor | SampledState) -> dict[str, Tensor]:
        c = self.config
        if self.sampled:  # all three views over the batch's one subgraph; rows are its seeds
            seeds, inv = batch_seeds(batch, self.num_users)
            sub = self.sample(state, seeds, batch.users, batch.pos)
            out = self.seed_bpr(batch, inv, *self(sub))  # BPR on the clean view + L2
            (v1, _), (v2, _) = self(sub, c.eps), self(sub, c.eps)  # [S, d] each
            B = len(batch)
            users, items = torch.unique(inv[:B]), torch.unique(inv[B:].view(B, -1)[:, 0])
            u1, u2, i1, i2 = v1[users], v2[users], v1[items], v2[items]
        else:
            out = super().loss(batch, state)  # BPR on the clean view + L2 on layer-0 rows
            (eu1, ei1), (eu2, ei2) = self.embed(state, c.eps), self.embed(state, c.eps)
            users, items = torch.unique(batch.users), torch.unique(batch.pos)
            u1, u2, i1, i2 = eu1[users], eu2[users], ei1[items], ei2[items]
        out["cl"] = info_nce(u1, u2, c.tau) + info_nce(i1, i2, c.tau)
        out["loss"] = out["loss"] + c.cl_weight * out["cl"]
        return out

    def extra_repr(self) -> str:
        c = self.config
        return (f"users={self.num_users}, items={self.num_items}, layers={c.num_layers}, "
                f"eps={c.eps}, tau={c.tau}, cl_weight={c.cl_weight}")
