"""Large embedding tables: sparse gradients and an optimiser that touches only the batch's rows.

A dense ``nn.Embedding`` trained with Adam under DDP costs ``16 d`` bytes per row on every GPU
(weight, gradient, two moments) and all-reduces the whole table every step. Here:

- :class:`~reelgraph.models.mf.SparseMF` is BPR-MF whose tables are ``nn.Embedding(sparse=True)``:
  the gradient is a sparse COO tensor of the ``B (2 + k)`` rows a batch touched, no dense
  gradient buffer exists, and DDP exchanges only those rows (gloo; see ``distributed/README.md``).
- :class:`~reelgraph.lightning_modules.optim.RowWiseAdagrad` keeps one float of state per row
  (FBGEMM/TorchRec's default for big tables): ``4 d + 4`` bytes per row in all, 4x fewer than
  dense Adam. ``sparse_adam`` (torch's ``SparseAdam``) is the other choice: ``12 d`` bytes per
  row (its moments are dense tables), but Adam's updates.
- :class:`SparseRecModule` is ``RecModule`` with those defaults; everything else (loop, logging,
  sharded exact evaluation) is inherited. Any model gets sparse tables and a row optimiser with
  ``RecModule(optimizer="lazy_adam")`` (``reelgraph fit --model.optimizer lazy_adam``).

Whole-graph LightGCN propagates over every row, so every row gets a gradient every step; the
row optimisers pay off on sampled sub-graphs and lookup models.
"""
from __future__ import annotations

from typing import Sequence

from reelgraph.lightning_modules.module import RecModule
from reelgraph.lightning_modules.optim import ROW_OPTIMIZERS, RowWiseAdagrad  # noqa: F401 (re-export)
from reelgraph.models.mf import MFConfig, SparseMFConfig


class SparseRecModule(RecModule):
    """``RecModule`` for tables-only models with a row optimiser by default (BPR-MF's
    ``SparseMFConfig``, lr 0.05, ``rowwise_adagrad``).

    Args:
        optimizer: ``rowwise_adagrad`` (4 bytes of state per row) or ``sparse_adam`` (torch's
            ``SparseAdam``; dense moments, ``8 d`` bytes per row).
        the rest: as :class:`RecModule`; ``weight_decay`` must be 0 (decaying every row would
            touch every row: use the model's ``reg_weight``, an L2 on the batch's rows).
    """

    def __init__(self, model: MFConfig | None = None, lr: float = 0.05,
                 weight_decay: float = 0.0, ks: Sequence[int] = (10, 20, 50),
                 item_chunk_size: int = 1 << 16, auc: bool = True,
                 optimizer: str = "rowwise_adagrad", sampled_candidates: int = 0,
                 sampled_ks: Sequence[int] = (1, 2), sampled_seed: int = 0):
        if optimizer not in ROW_OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {ROW_OPTIMIZERS}, got {optimizer!r}")
        super().__init__(model or SparseMFConfig(), lr, weight_decay, ks, item_chunk_size, auc,
                         optimizer, sampled_candidates, sampled_ks, sampled_seed)
