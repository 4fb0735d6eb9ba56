"""Train/validation/test splitters over (user, item) index arrays; numpy, vectorised.

Each splitter returns an ``int8`` array with one code per interaction (``0`` train, ``1`` valid,
``2`` test) and a dict of counts for the log. A user with too few interactions to be split is
kept whole in train and counted (``kept_in_train_users``), never dropped silently.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

TRAIN, VALID, TEST = 0, 1, 2


@dataclass
class SplitConfig:
    method: Literal["auto", "ratio", "temporal", "fixed"] = "auto"  # auto: "fixed" if the table has a `split` column, else "ratio"
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)    # train/valid/test shares for "ratio"
    valid_ratio: float = 0.0  # "fixed" only: carve this share of each user's train as validation
    seed: int = 0


def _rank_within_user(users: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per interaction: its rank from the user's end by ``key`` (0 = last) and the user's count."""
    order = np.lexsort((key, users))
    counts = np.bincount(users)
    start = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size) - start[users[order]]
    n = counts[users]
    return n - 1 - rank, n, counts


def _assign(rev: np.ndarray, n_test: np.ndarray, n_valid: np.ndarray) -> np.ndarray:
    code = np.full(rev.size, TRAIN, dtype=np.int8)
    code[rev < n_test + n_valid] = VALID
    code[rev < n_test] = TEST
    return code


def ratio_split(users: np.ndarray, ratios=(0.8, 0.1, 0.1), seed: int = 0) -> tuple[np.ndarray, dict]:
    """Random per-user split by ``ratios`` (e.g. 8:1:1 or 7:2:1).

    Each user gets ``round(n * r_test)`` test and ``round(n * r_valid)`` validation interactions,
    at least one of each share that is non-zero, and keeps at least one in train; a user with
    fewer interactions than that needs is kept whole in train and counted.
    """
    r_train, r_valid, r_test = (float(r) for r in ratios)
    if min(ratios) < 0 or abs(r_train + r_valid + r_test - 1.0) > 1e-6 or r_train <= 0:
        raise ValueError(f"split ratios must be non-negative, sum to 1 and keep some train: {ratios}")
    rng = np.random.default_rng(seed)
    rev, n, counts = _rank_within_user(users, rng.random(users.size))
    want_test = np.maximum(np.rint(counts * r_test), 1 if r_test > 0 else 0).astype(np.int64)
    want_valid = np.maximum(np.rint(counts * r_valid), 1 if r_valid > 0 else 0).astype(np.int64)
    small = counts < want_test + want_valid + 1
    want_test[small], want_valid[small] = 0, 0
    code = _assign(rev, want_test[users], want_valid[users])
    return code, {"kept_in_train_users": int((small & (counts > 0)).sum())}


def temporal_split(users: np.ndarray, timestamps: np.ndarray, num_valid: int = 1, num_test: int = 1
                   ) -> tuple[np.ndarray, dict]:
    """Leave-last-out: each user's latest interaction is test, the one before it validation.

    Ties in time keep the input order. Users with fewer than ``num_valid + num_test + 1``
    interactions stay whole in train and are counted.
    """
    order_key = np.lexsort((np.arange(users.size), timestamps))  # time, then input order
    key = np.empty(users.size, dtype=np.int64)
    key[order_key] = np.arange(users.size)
    rev, n, counts = _rank_within_user(users, key)
    ok = n >= num_valid + num_test + 1
    code = _assign(rev, np.where(ok, num_test, 0), np.where(ok, num_valid, 0))
    small = (counts > 0) & (counts < num_valid + num_test + 1)
    return code, {"kept_in_train_users": int(small.sum())}


def carve_valid(users: np.ndarray, code: np.ndarray, valid_ratio: float, seed: int = 0
                ) -> tuple[np.ndarray, dict]:
    """Moves a random ``valid_ratio`` share of each user's train interactions to validation."""
    code = code.copy()
    train = np.flatnonzero(code == TRAIN)
    sub, stats = ratio_split(users[train], (1.0 - valid_ratio, valid_ratio, 0.0), seed)
    code[train[sub == VALID]] = VALID
    return code, stats
