"""Optimisers whose step costs the rows a batch touched, not the size of the tables.

Dense Adam updates every row of every table every step: on the huge world (3M rows, d 64) that
is 1.9 s of a 3 s sampled step, and it grows with |V| (``benchmarks/optimizer_step.py``). With
``nn.Embedding(sparse=True)`` a batch's gradient is a sparse COO tensor of the rows it gathered,
and these optimisers update only those rows:

- :class:`LazyAdam`: Adam on the rows a sparse gradient names (their moments advance, the other
  rows' moments and weights stay: TensorFlow Addons' ``LazyAdam``, torch's ``SparseAdam``), and
  plain Adam on dense gradients, so one optimiser takes a model with tables and dense layers.
- :class:`RowWiseAdagrad`: one accumulator per row (FBGEMM/TorchRec's default for big tables):
  ``4 d + 4`` bytes per row in all, 4x fewer than Adam.
- ``sparse_adam``: torch's ``SparseAdam`` (tables only).

:func:`build_optimizer` is what ``RecModule.configure_optimizers`` calls.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn

from reelgraph.errors import ConfigError

OPTIMIZERS = ("adam", "lazy_adam", "rowwise_adagrad", "sparse_adam")
ROW_OPTIMIZERS = ("rowwise_adagrad", "sparse_adam")  # every parameter must be a table


def _rows(grad: Tensor) -> tuple[Tensor, Tensor]:
    """``(rows [n], values [n, d])`` of a sparse (coalesced here) or dense row gradient."""
    if grad.is_sparse:
        grad = grad.coalesce()
        return grad.indices()[0], grad.values()
    return torch.arange(grad.size(0), device=grad.device), grad


class LazyAdam(torch.optim.Optimizer):
    """Adam that, for a sparse gradient, updates only the rows it names.

    Per parameter, with ``t`` its step count and ``bc_i = 1 - beta_i ** t``: on the gradient's rows
    ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``,
    ``w -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)`` — torch's ``Adam`` formula, so a dense
    gradient (or a sparse one naming every row) gives ``torch.optim.Adam``'s step. State: two
    tables the size of the parameter, as Adam.

    Args:
        params: parameters (sparse or dense gradients).
        lr: step size.
        betas: moment decay rates.
        eps: added to the bias-corrected root of ``v``.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                t = state["step"].item()
                bc1, bc2_sqrt = 1 - b1 ** t, (1 - b2 ** t) ** 0.5
                m, v = state["exp_avg"], state["exp_avg_sq"]
                if not p.grad.is_sparse:
                    g = p.grad
                    m.lerp_(g, 1 - b1)
                    v.mul_(b2).addcmul_(g, g, value=1 - b2)
                    denom = (v.sqrt() / bc2_sqrt).add_(group["eps"])
                    p.addcdiv_(m, denom, value=-group["lr"] / bc1)
                    continue
                rows, g = _rows(p.grad)                                   # [n], [n, d]
                m_rows = m.index_select(0, rows).lerp_(g, 1 - b1)
                v_rows = v.index_select(0, rows).mul_(b2).addcmul_(g, g, value=1 - b2)
                m.index_copy_(0, rows, m_rows)
                v.index_copy_(0, rows, v_rows)
                denom = v_rows.sqrt_().div_(bc2_sqrt).add_(group["eps"])   # v_rows is spent
                p.index_add_(0, rows, m_rows.div_(denom), alpha=-group["lr"] / bc1)
        return loss


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


def sparse_embeddings(model: nn.Module) -> int:
    """Make every ``nn.Embedding`` of ``model`` return sparse gradients; the number of tables."""
    tables = [m for m in model.modules() if isinstance(m, nn.Embedding)]
    for m in tables:
        m.sparse = True
    return len(tables)


def check_optimizer(name: str, weight_decay: float) -> None:
    """One-line :class:`ConfigError` for an unknown optimiser or one that cannot decay weights."""
    if name not in OPTIMIZERS:
        raise ConfigError(f"model.optimizer={name!r}: choose one of {', '.join(OPTIMIZERS)}")
    if name != "adam" and weight_decay:
        raise ConfigError(f"model.optimizer={name!r} updates only the rows a batch touched, so it "
                          f"cannot decay every weight: set model.weight_decay=0 (the models' "
                          f"reg_weight is an L2 on each batch's rows)")


def build_optimizer(name: str, model: nn.Module, lr: float,
                    weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """The optimiser ``name`` (one of :data:`OPTIMIZERS`) over ``model``'s parameters."""
    check_optimizer(name, weight_decay)
    params: Iterable[nn.Parameter] = list(model.parameters())
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "lazy_adam":
        return LazyAdam(params, lr=lr)
    tables = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    others = [n for n, p in model.named_parameters() if id(p) not in tables]
    if others:
        raise ConfigError(f"model.optimizer={name!r} takes embedding tables only; this model also "
                          f"has {others[0]!r}{' and more' if len(others) > 1 else ''}: use "
                          f"model.optimizer=lazy_adam")
    if name == "sparse_adam":
        return torch.optim.SparseAdam(params, lr=lr)
    return RowWiseAdagrad(params, lr=lr)
