"""A spectral warm start of ID tables: GF-CF's low-pass filter as a LightGCN's layer 0 (issue 18).

GF-CF (:mod:`reelgraph.models.gfcf`) reaches LightGCN's quality on amazon-book without training,
from the top singular vectors of the normalised interaction matrix
``R~ = D_U^-1/2 R D_I^-1/2 ≈ P Σ Q^T``. Starting LightGCN there instead of at ``N(0, std)``::

    user layer 0 = c · P_k Σ_k^1/2,   item layer 0 = c · Q_k Σ_k^1/2,   k = min(d, rank)

makes the first scores ``c² · P_k Σ_k Q_k^T``, the best rank-``k`` approximation of ``R~``.
Each column pair ``[p_j; q_j]`` is an eigenvector of LightGCN's propagation matrix
``[[0, R~], [R~^T, 0]]`` with eigenvalue ``σ_j``, so propagation only rescales column ``j`` by
``(1 + σ_j + ... + σ_j^L) / (L + 1)``: a low-pass filter of the same subspace. ``c`` gives the
tables the RMS of the normal init (``init_std``), so the optimiser sees the usual scale; columns
beyond the rank get ``N(0, init_std)`` (an all-zero column would never get a gradient).
"""
from __future__ import annotations

import torch
from torch import Tensor

from reelgraph.graph import BipartiteGraph, csr_tensor
from reelgraph.models.gfcf import normalized_values, top_singular


def spectral_tables(train: BipartiteGraph, dim: int, std: float, seed: int = 0,
                    oversample: int = 32, niter: int = 4) -> tuple[Tensor, Tensor]:
    """``(user [U, dim], item [I, dim])`` layer-0 tables from the top ``dim`` singular triplets
    of ``R~`` (:func:`~reelgraph.models.gfcf.top_singular`: ``q = min(dim + oversample, U, I)``
    columns, ``niter`` subspace iterations, seeded; the global RNG is left as it was), scaled to
    RMS ``std``; columns beyond the rank from ``N(0, std)`` drawn with ``seed``."""
    U, I = train.num_users, train.num_items
    adj = csr_tensor(train.rowptr, train.col, normalized_values(train), (U, I))
    p, s, v = top_singular(adj, dim, oversample, niter, seed)           # [U, q], [q], [I, q]
    k = min(dim, s.numel(), int((s > 1e-6 * s.max().clamp(min=1e-30)).sum()))
    g = torch.Generator().manual_seed(seed)
    user, item = torch.randn(U, dim, generator=g) * std, torch.randn(I, dim, generator=g) * std
    root = s[:k].sqrt()
    spec_u, spec_i = p[:, :k] * root, v[:, :k] * root                   # [U, k], [I, k]
    c = std / torch.cat([spec_u, spec_i]).pow(2).mean().sqrt().clamp(min=1e-30)
    user[:, :k], item[:, :k] = c * spec_u, c * spec_i
    return user, item
