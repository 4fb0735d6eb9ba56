"""Train/validation/test splitters over (user, item) index arrays; numpy, vectorised.

Each splitter returns an ``int8`` array with one code per interaction (``0`` train, ``1`` valid,
``2`` test) and a dict of counts for the log. A user with too few interactions to be split is
kept whole in train and counted (``kept_in_train_users``), never dropped silently.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Literal

import numpy as np

TRAIN, VALID, TEST = 0, 1, 2


@dataclass
class SplitConfig:
    method: Literal["auto", "ratio", "temporal", "fixed"] = "auto"  # auto: "fixed" if the table has a `split` column, else "ratio"
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)    # train/valid/test shares for "ratio"
    valid_ratio: float = 0.0  # "fixed" only: carve this share of each user's train as validation
    seed: int = 0


_BLOCK = 1 << 22          # interactions per block of the vectorised loops (bounds temporaries)
RANDOM_KEY_BITS = 53      # top bits of a random key packed below the user (tests force ties)


def tied_slots(key: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``[N]`` bool: the slot of ``order`` (positions sorting ``key``) holds the same key as the
    slot before or after it."""
    same = np.zeros(key.size, dtype=bool)          # [N] slot holds the key of the slot before
    for lo in range(0, key.size, _BLOCK):
        k = key[order[max(lo - 1, 0):lo + _BLOCK]]
        same[max(lo, 1):lo + _BLOCK] = k[1:] == k[:-1]
    same[:-1] |= same[1:]                           # ... or the slot after holds its key
    return same


def uniforms(seed: int, lo: int, hi: int) -> np.ndarray:
    """``np.random.default_rng(seed).random(n)[lo:hi]`` without drawing the first ``lo``: the
    PCG64 stream is advanced past them (one 64-bit draw per double), so a split can draw its
    ``[n]`` keys block by block, or only the rows it needs, and never hold them all."""
    bits = np.random.PCG64(seed)
    bits.advance(lo)
    return np.random.Generator(bits).random(hi - lo)


def _order_by_user_then_random(users: np.ndarray, draw: Callable[[int, int], np.ndarray]
                               ) -> np.ndarray:
    """``np.lexsort((rand, users))`` for ``rand[lo:hi] = draw(lo, hi)`` in [0, 1) (a split's:
    :func:`uniforms`), by one argsort of an int64 key that packs the user above the top bits of
    ``rand``, drawn block by block; rows whose packed keys tie are then sorted exactly, by
    ``rand`` (drawn again for them alone) and position. ``[n]`` positions."""
    user_bits = int(users.max()).bit_length() if users.size else 0
    if user_bits > 63 - 16:                         # too many users to pack usefully
        return np.lexsort((draw(0, users.size), users))
    bits = min(RANDOM_KEY_BITS, 63 - user_bits)
    key = np.empty(users.size, dtype=np.int64)      # [n] user, then rand's top bits
    for lo in range(0, users.size, _BLOCK):
        hi = min(lo + _BLOCK, users.size)
        top = (draw(lo, hi) * 2.0**53).astype(np.int64) >> (53 - bits)
        key[lo:hi] = (users[lo:hi].astype(np.int64) << bits) | top
    order = np.argsort(key, kind="stable")
    slots = np.flatnonzero(tied_slots(key, order))  # [T] slots of tied keys, grouped by key
    rows = order[slots]
    order[slots] = rows[np.lexsort((rows, _draw_at(draw, rows, users.size), key[rows]))]
    return order


def _draw_at(draw: Callable[[int, int], np.ndarray], rows: np.ndarray, n: int) -> np.ndarray:
    """``rand[rows]`` of ``rand[lo:hi] = draw(lo, hi)`` (``[n]``), drawn block by block over the
    blocks that hold rows."""
    out = np.empty(rows.size, dtype=np.float64)
    if rows.size == 0:
        return out
    by_row = np.argsort(rows, kind="stable")
    sorted_rows = rows[by_row]
    for lo in range(0, int(sorted_rows[-1]) + 1, _BLOCK):
        a, b = np.searchsorted(sorted_rows, [lo, lo + _BLOCK])
        if a < b:
            out[by_row[a:b]] = draw(lo, min(lo + _BLOCK, n))[sorted_rows[a:b] - lo]
    return out


def _codes_by_rank(users: np.ndarray, order: np.ndarray, counts: np.ndarray,
                   n_test: np.ndarray, n_valid: np.ndarray) -> np.ndarray:
    """Codes from each user's ordering: the user's last ``n_test`` are test, the ``n_valid``
    before them validation, the rest train.

    Args:
        users: ``[n]`` user index of each interaction.
        order: ``[n]`` interactions sorted by user, then by the split's key within a user.
        counts: ``[U]`` interactions per user (``np.bincount(users)``).
        n_test, n_valid: ``[U]`` per user.

    Returns:
        ``[n]`` int8 codes.
    """
    end = np.cumsum(counts)                            # [U] one past each user's last slot
    code = np.empty(users.size, dtype=np.int8)
    for lo in range(0, users.size, _BLOCK):
        slots = order[lo:lo + _BLOCK]                  # [b] interactions at sorted slots lo..
        g = users[slots]
        rev = end[g] - 1 - np.arange(lo, lo + slots.size)   # rank from the user's end, 0 = last
        t = n_test[g]
        code[slots] = np.where(rev < t, TEST, np.where(rev < t + n_valid[g], VALID, TRAIN))
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
    order = _order_by_user_then_random(users, partial(uniforms, seed))  # [n] by user, at random
    counts = np.bincount(users)
    want_test = np.maximum(np.rint(counts * r_test), 1 if r_test > 0 else 0).astype(np.int64)
    want_valid = np.maximum(np.rint(counts * r_valid), 1 if r_valid > 0 else 0).astype(np.int64)
    small = counts < want_test + want_valid + 1
    want_test[small], want_valid[small] = 0, 0
    code = _codes_by_rank(users, order, counts, want_test, want_valid)
    return code, {"kept_in_train_users": int((small & (counts > 0)).sum())}


def temporal_split(users: np.ndarray, timestamps: np.ndarray, num_valid: int = 1, num_test: int = 1
                   ) -> tuple[np.ndarray, dict]:
    """Leave-last-out: each user's latest interaction is test, the one before it validation.

    Ties in time keep the input order. Users with fewer than ``num_valid + num_test + 1``
    interactions stay whole in train and are counted.
    """
    order = np.argsort(timestamps, kind="stable")                 # [n] time, then input order
    order = order[np.argsort(users[order], kind="stable")]         # by user, then that order
    counts = np.bincount(users)
    ok = counts >= num_valid + num_test + 1                        # [U]
    code = _codes_by_rank(users, order, counts, np.where(ok, num_test, 0), np.where(ok, num_valid, 0))
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


def eval_warnings(users: np.ndarray, items: np.ndarray, code: np.ndarray, num_users: int,
                  num_items: int) -> dict[str, int]:
    """What a split leaves that is not an error but skews its metrics (the ingest logs each as a
    warning and records it in ``meta["warnings"]``; no row is changed).

    Args: ``users, items, code [N]`` (the interactions and their split codes), the node counts.
    Returns (non-zero entries only): ``cold_eval_interactions`` / ``cold_eval_items``: valid or
    test interactions whose item never occurs in train (its embedding never trains, so a
    collaborative model cannot rank it), and how many such items; ``single_user`` /
    ``single_item``: 1 when the dataset has one user (the metrics describe one ranking) or one
    item (every ranking is trivial).
    """
    trained = np.zeros(num_items, dtype=bool)
    trained[items[code == TRAIN]] = True
    cold = (code != TRAIN) & ~trained[items]
    found = {"cold_eval_interactions": int(cold.sum()),
             "cold_eval_items": int(np.unique(items[cold]).size),
             "single_user": int(num_users == 1), "single_item": int(num_items == 1)}
    return {k: v for k, v in found.items() if v}
