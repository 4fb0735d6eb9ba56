"""Large embedding tables: sparse gradients and an optimiser that touches only the batch's rows.

A dense ``nn.Embedding`` trained with Adam under DDP costs ``16 d`` bytes per row on every GPU
(weight, gradient, two moments) and all-reduces the whole table every step. Here:

- :class:`~reelgraph.models.mf.SparseMF` is BPR-MF whose tables are ``nn.Embedding(sparse=True)``:
  the gradient is a sparse COO tensor of the ``B (2 + k)`` rows a batch touched, no dense
  gradient buffer exists, and DDP exchanges only those rows (gloo; see ``distributed/README.md``).
- :class:`RowWiseAdagrad` keeps one float of state per row (FBGEMM/TorchRec's default for big
  tables): ``4 d + 4`` bytes per row in all, 4x fewer than dense Adam. ``sparse_adam`` (torch's
  ``SparseAdam``) is the other choice: ``12 d`` bytes per row (its moments are dense tables), but
  Adam's updates.
- :class:`SparseRecModule` is ``RecModule`` with that optimiser choice; everything else (loop,
  logging, sharded exact evaluation) is inherited.

Only lookup models benefit: LightGCN propagates over the whole graph, so every row gets a
gradient every step. Train it with the dense path, or on sampled sub-graphs.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from reelgraph.lightning_modules.module import RecModule
from reelgraph.models.mf import MFConfig, SparseMFConfig


def _rows(grad: Tensor) -> tuple[Tensor, Tensor]:
    """``(rows [n], values [n, d])`` of a sparse (coalesced here) or dense row gradient."""
    if grad.is_sparse:
        grad = grad.coalesce()
        return grad.indices()[0], grad.values()
    return torch.arange(grad.size(0), device=grad.device), grad


class RowWiseAdagrad(torch.optim.Optimizer):
    """Adagrad with one accumulator per row, updating only rows with a gradient.

    For gradient rows ``g [n, d]`` at ``rows``: ``s[rows] += mean(g ** 2, dim=1)``;
    ``w[rows] -= lr * g / (sqrt(s[rows]) + eps)``. State: ``4`` bytes per row.

    Args:
        params: 2-D tables (sparse or dense gradients).
        lr: step size (default 0.05; Adagrad wants larger steps than Adam).
        eps: added to the root of the accumulator (default 1e-8).
    """

    def __init__(self, params, lr: float = 0.05, eps: float = 1e-8):
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        super().__init__(params, {"lr": lr, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.dim() != 2:
                    raise ValueError(f"RowWiseAdagrad takes 2-D tables, got shape {tuple(p.shape)}")
                state = self.state[p]
                if "sum" not in state:
                    state["sum"] = torch.zeros(p.size(0), dtype=torch.float32, device=p.device)
                rows, g = _rows(p.grad)                                  # [n], [n, d]
                state["sum"].index_add_(0, rows, g.float().pow(2).mean(1))
                scale = state["sum"][rows].sqrt().add_(group["eps"])     # [n]
                p.index_add_(0, rows, (g / scale.unsqueeze(1)).to(p.dtype), alpha=-group["lr"])
        return loss


OPTIMIZERS = ("rowwise_adagrad", "sparse_adam")


class SparseRecModule(RecModule):
    """``RecModule`` for sparse-gradient models: the optimiser updates only touched rows.

    Args:
        optimizer: ``rowwise_adagrad`` (4 bytes of state per row) or ``sparse_adam`` (torch's
            ``SparseAdam``; dense moments, ``8 d`` bytes per row).
        the rest: as :class:`RecModule`; ``weight_decay`` must be 0 (decaying every row would
            touch every row: use the model's ``reg_weight``, an L2 on the batch's rows).
    """

    def __init__(self, model: MFConfig | None = None, lr: float = 0.05,
                 weight_decay: float = 0.0, ks: Sequence[int] = (10, 20, 50),
                 item_chunk_size: int = 1 << 16, auc: bool = True,
                 optimizer: str = "rowwise_adagrad"):
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        if weight_decay:
            raise ValueError("SparseRecModule needs weight_decay=0; regularise with the model's "
                             "reg_weight (L2 on the rows of each batch)")
        super().__init__(model or SparseMFConfig(), lr, weight_decay, ks, item_chunk_size, auc)
        self.hparams["optimizer"] = optimizer

    def configure_optimizers(self):
        params = list(self.model.parameters())
        if self.hparams.optimizer == "sparse_adam":
            return torch.optim.SparseAdam(params, lr=self.hparams.lr)
        return RowWiseAdagrad(params, lr=self.hparams.lr)
