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
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from reelgraph.models.base import ModelConfig
from reelgraph.models.lightgcn import LightGCN, sym_spmm
from reelgraph.samplers.batch import BPRBatch


@dataclass
class SimGCLConfig(ModelConfig):
    embedding_dim: int = 64   # d
    num_layers: int = 3       # L propagation steps
    cl_weight: float = 0.5    # lambda, weight of the InfoNCE term
    eps: float = 0.1          # length of the noise added at every layer
    tau: float = 0.2          # InfoNCE temperature
    reg_weight: float = 1e-4  # L2 on the batch's layer-0 embeddings
    init_std: float = 0.1     # normal init of the layer-0 table (SELFRec uses Xavier)

    def build(self, store) -> "SimGCL":
        return SimGCL(store.num_users, store.num_items, self)


def info_nce(view1: Tensor, view2: Tensor, tau: float) -> Tensor:
    """Mean InfoNCE of row ``i`` of ``view1 [N, d]`` against all rows of ``view2 [N, d]``.

    ``-log( exp(cos(a_i, b_i) / tau) / sum_j exp(cos(a_i, b_j) / tau) )``, averaged over ``i``.
    """
    a, b = F.normalize(view1, dim=-1), F.normalize(view2, dim=-1)
    logits = a @ b.t() / tau  # [N, N]
    return F.cross_entropy(logits, torch.arange(a.shape[0], device=a.device))


def perturbed_propagate(adj: Tensor, x: Tensor, num_layers: int, eps: float) -> Tensor:
    """Mean of layers ``1..L`` of ``h <- adj h + eps * sign(h') * normalize(U(0,1))``; ``[N, d]``.

    ``eps = 0`` gives the clean LightGCN layers (without the layer-0 term).
    """
    h, out = x, torch.zeros_like(x)
    for _ in range(num_layers):
        h = sym_spmm(adj, h)
        if eps > 0:
            noise = F.normalize(torch.rand_like(h), dim=-1)  # [N, d], unit rows in the + orthant
            h = h + eps * torch.sign(h) * noise
        out = out + h
    return out / num_layers


class SimGCL(LightGCN):
    """LightGCN encoder trained with BPR plus cross-view InfoNCE of two noisy views."""

    def __init__(self, num_users: int, num_items: int, config: SimGCLConfig = SimGCLConfig()):
        if config.num_layers < 1:
            raise ValueError(f"SimGCL needs num_layers >= 1 (got {config.num_layers})")
        super().__init__(num_users, num_items, config)

    def embed(self, adj: Tensor, eps: float = 0.0) -> tuple[Tensor, Tensor]:
        """The clean view (``eps = 0``) or one perturbed view, ``(user [U, d], item [I, d])``."""
        out = perturbed_propagate(adj, self.embedding.weight, self.config.num_layers, eps)
        return out[: self.num_users], out[self.num_users:]

    def loss(self, batch: BPRBatch, adj: Tensor) -> dict[str, Tensor]:
        c = self.config
        out = super().loss(batch, adj)  # BPR on the clean view + L2 on layer-0 rows
        (u1, i1), (u2, i2) = self.embed(adj, c.eps), self.embed(adj, c.eps)
        users, items = torch.unique(batch.users), torch.unique(batch.pos)
        out["cl"] = info_nce(u1[users], u2[users], c.tau) + info_nce(i1[items], i2[items], c.tau)
        out["loss"] = out["loss"] + c.cl_weight * out["cl"]
        return out

    def extra_repr(self) -> str:
        c = self.config
        return (f"users={self.num_users}, items={self.num_items}, layers={c.num_layers}, "
                f"eps={c.eps}, tau={c.tau}, cl_weight={c.cl_weight}")
