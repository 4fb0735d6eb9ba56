"""The measurements of ``benchmarks/table_diagnosis.py``'s sections 1–4, pure functions of a
run's event files and of tensors (no model, no data module): the training curve, per-user recall
by group and the popularity of the ranked items, the embeddings' geometry.

A script run as ``python benchmarks/x.py`` has this folder first on ``sys.path``; a script
loaded by path (``importlib``) puts it there itself before importing from here."""
from __future__ import annotations

import glob
import math
import os
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor


# -- 1. the training curve -------------------------------------------------------------------
def curve_from_events(run_dir: str, tag: str = "val/recall@20") -> list[float]:
    """``tag`` per epoch (epoch 0 first) from the run's TensorBoard events: each value's epoch
    is the ``epoch`` scalar Lightning logged at the same step (a resumed epoch: the last)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    values: dict[int, float] = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))):
        ea = EventAccumulator(path, size_guidance={"scalars": 0})
        ea.Reload()
        tags = ea.Tags()["scalars"]
        if tag not in tags or "epoch" not in tags:
            continue
        epoch_at = {e.step: int(e.value) for e in ea.Scalars("epoch")}
        values.update({epoch_at[e.step]: e.value for e in ea.Scalars(tag) if e.step in epoch_at})
    return [values[e] for e in sorted(values)]


@dataclass(frozen=True)
class Curve:
    """What a validation curve says about the epoch budget.

    Attributes:
        epochs: epochs run. max_epochs: the cap. best_epoch: 0-based epoch of the best value.
        best: the best value. at_cap: the best is the last allowed epoch (``max_epochs - 1``).
        gain_last3: last value minus the value 3 epochs before it (``nan`` under 4 epochs).
        values: the curve.
    """

    epochs: int
    max_epochs: int
    best_epoch: int
    best: float
    at_cap: bool
    gain_last3: float
    values: tuple[float, ...]


def summarize_curve(values: Sequence[float], max_epochs: int) -> Curve:
    if not values:
        raise ValueError("no validation curve: the run's events hold no val/recall@20")
    best_epoch = max(range(len(values)), key=lambda e: (values[e], -e))  # first of the maxima
    gain = values[-1] - values[-4] if len(values) >= 4 else math.nan
    return Curve(len(values), max_epochs, best_epoch, values[best_epoch],
                 best_epoch == max_epochs - 1, gain, tuple(values))


# -- 2./3. where the model loses: per-user recall by group, popularity ----------------------------
def degree_quartiles(deg: Tensor) -> tuple[Tensor, Tensor]:
    """Quartile bucket ``0..3`` of each user degree ``[n]`` (``deg <= q1`` -> 0, ...), and the
    three edges ``[3]``; tied degrees share a bucket, so buckets need not be equal in size."""
    edges = torch.quantile(deg.double(), torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    return torch.searchsorted(edges, deg.double()), edges


def head_items(item_deg: Tensor, share: float = 0.2) -> Tensor:
    """``bool [I]``: the ``round(share * I)`` items of largest train degree (ties: lower id)."""
    order = torch.sort(item_deg, descending=True, stable=True).indices
    head = torch.zeros(item_deg.numel(), dtype=torch.bool)
    head[order[: round(share * item_deg.numel())]] = True
    return head


def group_recall(hits: Tensor, top: Tensor, test_row: Tensor, test_item: Tensor,
                 in_group: Tensor) -> tuple[Tensor, Tensor]:
    """Per-user Recall@K over the held-out items of a group: ``(recall [n], has [n])``.

    Args:
        hits: ``bool [n, K]`` whether each ranked item is held out. top: ``[n, K]`` ranked
            items (``-1``: empty). test_row, test_item: ``[E]`` held-out edges, ``test_row``
            indexing the ``n`` users. in_group: ``bool [I]``.
    Returns the hits of group items over the user's group items, and whether the user has any.
    """
    n = hits.size(0)
    group_hits = (hits & in_group[top.clamp(min=0)] & (top >= 0)).sum(1)      # [n]
    group_test = torch.bincount(test_row[in_group[test_item]], minlength=n)   # [n]
    has = group_test > 0
    return torch.where(has, group_hits / group_test.clamp(min=1), torch.zeros(())), has


def mean_rec_degree(top: Tensor, item_deg: Tensor) -> float:
    """Mean train degree of the ranked items ``top [n, K]`` (empty slots left out)."""
    return float(item_deg[top[top >= 0]].double().mean())


# -- 4. geometry -------------------------------------------------------------------------------
def geometry(user_emb: Tensor, item_emb: Tensor, item_deg: Tensor, pairs: int = 200_000,
             seed: int = 0) -> dict[str, float]:
    """Mean cosine of random distinct item pairs, norm std/mean of items and users, and the
    Pearson correlation of item norm with ``log(1 + train degree)``."""
    gen = torch.Generator().manual_seed(seed)
    i = torch.randint(item_emb.size(0), (pairs,), generator=gen)
    j = torch.randint(item_emb.size(0), (pairs,), generator=gen)
    keep = i != j
    cos = torch.nn.functional.cosine_similarity(item_emb[i[keep]], item_emb[j[keep]], dim=1)
    norm_i, norm_u = item_emb.norm(dim=1).double(), user_emb.norm(dim=1).double()
    corr = torch.corrcoef(torch.stack([norm_i, torch.log1p(item_deg.double())]))[0, 1]
    return {"cos": float(cos.mean()), "item_cv": float(norm_i.std() / norm_i.mean()),
            "user_cv": float(norm_u.std() / norm_u.mean()), "norm_deg_corr": float(corr)}
