"""GF-CF (Shen et al., CIKM 2021, "How Powerful is Graph Convolution for Recommendation?"): the
training-free graph-filter recommender, the bar every trained model is held to.

With ``R`` the binary ``[U, I]`` train matrix, ``d_u``/``d_i`` its row/column sums and
``R~ = D_U^-1/2 R D_I^-1/2``, the score of user ``u`` with binary train row ``r_u [I]`` is::

    s_u = r_u R~^T R~  +  alpha * r_u D_I^-1/2 V_k V_k^T D_I^1/2

the normalised item-item linear filter ``P~ = R~^T R~`` plus the ideal low-pass filter made of
the top-``k`` right singular vectors ``V_k [I, k]`` of ``R~``. Followed exactly: the reference
code, github.com/yshenaw/GF_CF, ``Table3&4/model.py``, class ``GF_CF``: ``norm_adj = d_mat @ adj_mat
@ d_mat_i`` (inverse square-root row and column sums, ``inf -> 0``), ``vt`` from
``sparsesvd(norm_adj, 256)``, ``U_2 = batch @ norm_adj.T @ norm_adj``, ``U_1 = batch @ d_mat_i @
vt.T @ vt @ d_mat_i_inv`` and ``U_2 + 0.3 * U_1``; so ``k = 256``, ``alpha = 0.3``. The reference
returns ``U_2`` alone on amazon-book: ``alpha=0`` (which also skips the SVD) is that setting.
``k`` is a hyper-parameter beyond those datasets: on the synthetic world (20 planted topics;
``R~`` has 20 singular values in 0.52-0.58, then 0.36 and a flat tail) k = 256 lets 236 noise
directions into the filter and alpha 0.3 scores 0.84x LightGCN; k = 20 (chosen on validation)
1.03x (``benchmarks/gfcf_diagnosis.py``, RESULTS.md). One deviation: for an item without training interactions the reference's ``D_I^1/2`` is
``1 / 0 = inf`` (NaN scores); here both ``D_I^-1/2`` and ``D_I^1/2`` are 0 there, so it scores 0.

The SVD: :func:`torch.svd_lowrank` (Halko et al.'s randomised subspace iteration) on the sparse
CSR ``R~``, not the reference's SVDLIBC Lanczos (``sparsesvd``) or scipy's ``svds``: neither is a
dependency of ours, and this one runs on any device from our own sparse tensors. It draws its
start from the global RNG, so it runs inside a forked RNG seeded with ``seed``: the filter is the
same on every run and the caller's random state is untouched. The singular values of ``R~`` have a
flat tail (ml-100k: ``sigma_256 = 0.13727``, ``sigma_257 = 0.13717``), so ``q = k + 10`` columns
and 2 iterations (Halko's advice for low-rank matrices) give scores 14% off (relative Frobenius
error) those of the exact top-256 filter (a dense SVD), ``q = 2k`` with 4 iterations 0.23%, and
with 8 (the defaults) 4e-5, the exact filter's Recall@20 and NDCG@20 to 4 digits. Building the
filter on one CPU thread: 0.6 s on ml-100k, 31 s on a random graph of amazon-book's size (70,679
x 24,915, 652k edges; 18 s with 4 iterations). With another job on the second of two cores, two
threads took 4-5 s on ml-100k's SVD against 0.3 s for one: ``torch.set_num_threads(1)`` then.

Memory never holds an ``[I, I]`` matrix: the model keeps ``R~^T`` as an item-major CSR (``O(E)``)
and ``D_I^-1/2 V_k``, ``D_I^1/2 V_k`` (``O(I k)``); a batch of ``B`` users costs ``x = r_B R~^T``
``[B, U]`` (a sparse x sparse product, made dense) and ``y = r_B D_I^-1/2 V_k [B, k]``, then each
chunk of ``C`` items ``x R~[:, items] + alpha y (D_I^1/2 V_k)[items]^T``, ``[B, C]``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import torch
from torch import Tensor

from reelgraph.graph import BipartiteGraph, csr_tensor, select_rows, to_csr
from reelgraph.models.base import ModelConfig, Recommender, check_values, int_at_least


@dataclass(frozen=True)
class GFCFConfig(ModelConfig):
    """GF-CF: a closed-form filter of the train graph; nothing is learned, no epochs run."""

    alpha: float = 0.3          # weight of the ideal low-pass term (reference 0.3; amazon-book 0)
    num_singular: int = 256     # k: right singular vectors of R~ in the low-pass filter
    svd_oversample: int = 256   # extra columns of the randomised SVD: q = k + this (<= min(U, I))
    svd_niter: int = 8          # its subspace iterations
    seed: int = 0               # its random start

    training_free: ClassVar[bool] = True

    def __post_init__(self):
        check_values(type(self).__name__,
                     alpha=(self.alpha, lambda v: v >= 0, "a finite number >= 0"),
                     num_singular=(self.num_singular, int_at_least(1), "an int >= 1"),
                     svd_oversample=(self.svd_oversample, int_at_least(0), "an int >= 0"),
                     svd_niter=(self.svd_niter, int_at_least(0), "an int >= 0"),
                     seed=(self.seed, int_at_least(0), "an int >= 0"))

    def build(self, store) -> "GFCF":
        return GFCF(store.graph("train"), self)


def normalized_values(train: BipartiteGraph) -> Tensor:
    """The values ``[E]`` of ``R~ = D_U^-1/2 R D_I^-1/2`` on the train CSR's edges (both degrees
    are ``>= 1`` on an edge)."""
    d_u, d_i = (d.float() for d in train.degree())
    return (d_u[train.users()] * d_i[train.col]).rsqrt()


def top_singular(adj: Tensor, k: int, oversample: int, niter: int, seed: int
                 ) -> tuple[Tensor, Tensor, Tensor]:
    """``(P [U, q], S [q], V [I, q])``, the top singular triplets of the sparse ``adj [U, I]``
    (descending; the first ``min(k, q)`` are the ones asked for): :func:`torch.svd_lowrank` with
    ``q = min(k + oversample, U, I)`` columns, seeded, the global RNG left as it was."""
    q = min(k + oversample, *adj.shape)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.svd_lowrank(adj, q=q, niter=niter)


def top_right_singular(adj: Tensor, k: int, oversample: int, niter: int, seed: int) -> Tensor:
    """``V_k [I, k']``, the top right singular vectors of ``adj`` (:func:`top_singular`),
    ``k' = min(k, U, I)``."""
    v = top_singular(adj, k, oversample, niter, seed)[2]                # [I, q]
    return v[:, :min(k, v.size(1))]


class GFCF(Recommender):
    """GF-CF's scores (module doc) from its filter, built once from the train graph; no
    parameters. The filter is data rebuilt by ``build``, kept in non-persistent buffers: they
    follow the module's device and checkpoints stay empty.

    Buffers: the binary train CSR (``rowptr [U + 1]``, ``col [E]``), ``R~^T`` item-major
    (``rowptr_t [I + 1]``, ``col_t [E]`` users, ``value_t [E]``), ``v_in = D_I^-1/2 V_k`` and
    ``v_out = D_I^1/2 V_k`` (``[I, k]``; ``k = 0`` when ``alpha = 0``).
    """

    def __init__(self, train: BipartiteGraph, config: GFCFConfig | None = None):
        super().__init__()
        self.config = config = config or GFCFConfig()
        self.num_users, self.num_items = U, I = train.num_users, train.num_items
        value = normalized_values(train)                                     # [E] R~, user-major
        rowptr_t, col_t, perm = to_csr(train.col, train.users(), I)          # R~^T, item-major
        v = torch.zeros(I, 0)
        if config.alpha > 0:
            adj = csr_tensor(train.rowptr, train.col, value, (U, I))
            v = top_right_singular(adj, config.num_singular, config.svd_oversample,
                                   config.svd_niter, config.seed)            # [I, k]
        d_i = train.degree()[1].float()
        inv_sqrt = torch.where(d_i > 0, d_i.clamp(min=1).rsqrt(), 0.0)       # [I] D_I^-1/2, 0 -> 0
        for name, t in (("rowptr", train.rowptr), ("col", train.col), ("rowptr_t", rowptr_t),
                        ("col_t", col_t), ("value_t", value[perm]),
                        ("v_in", inv_sqrt[:, None] * v), ("v_out", d_i.sqrt()[:, None] * v)):
            self.register_buffer(name, t.contiguous(), persistent=False)

    def extra_repr(self) -> str:
        c = self.config
        return (f"users={self.num_users}, items={self.num_items}, alpha={c.alpha}, "
                f"k={self.v_in.size(1)}, training_free=True")

    def user_state(self, users: Tensor) -> tuple[Tensor, Tensor]:
        """What a batch of ``users [B]`` needs for any items: ``x^T = (r_B R~^T)^T [U, B]`` and
        ``y = r_B D_I^-1/2 V_k [B, k]``."""
        r = select_rows(self.rowptr, self.col, None, users, self.num_items)  # [B, I] binary rows
        adj_t = csr_tensor(self.rowptr_t, self.col_t, self.value_t,
                           (self.num_items, self.num_users))
        x = (r @ adj_t).to_dense()                                           # [B, U]
        y = r @ self.v_in if self.v_in.size(1) else x.new_zeros(users.numel(), 0)  # [B, k]
        return x.T.contiguous(), y

    def item_scores(self, state: tuple[Tensor, Tensor], items: Tensor) -> Tensor:
        """Scores ``[B, C]`` of the batch of ``state`` (:meth:`user_state`) for ``items [C]``:
        ``x R~[:, items] + alpha y (D_I^1/2 V_k)[items]^T``."""
        x_t, y = state
        rows = select_rows(self.rowptr_t, self.col_t, self.value_t, items, self.num_users)
        scores = (rows @ x_t).T                                              # [B, C]
        if self.v_out.size(1):
            scores = scores + self.config.alpha * (y @ self.v_out[items].T)
        return scores.contiguous()

    @torch.no_grad()
    def score(self, users: Tensor, items: Tensor | None = None) -> Tensor:
        """``[B, C]`` scores of ``users [B]`` for ``items [C]`` (default: every item)."""
        items = torch.arange(self.num_items, device=users.device) if items is None else items
        return self.item_scores(self.user_state(users), items)

    def score_fn(self, static=None) -> Callable[[Tensor, Tensor], Tensor]:
        """The evaluator's ``score_fn(users, items) -> [B, C]``: :meth:`score`, the user batch's
        state kept while the evaluator walks its item chunks (one batch's ``[U, B]`` at a time)."""
        cache: dict[str, tuple[Tensor, tuple[Tensor, Tensor]]] = {}

        @torch.no_grad()
        def score(users: Tensor, items: Tensor) -> Tensor:
            last = cache.get("batch")
            if last is None or last[0].shape != users.shape or not torch.equal(last[0], users):
                cache["batch"] = last = (users.clone(), self.user_state(users))
            return self.item_scores(last[1], items)

        return score

    def embed(self, static=None) -> tuple[Tensor, Tensor]:
        raise NotImplementedError("GF-CF scores through score_fn(); it has no embeddings")

    def loss(self, batch) -> dict[str, Tensor]:
        raise NotImplementedError("GF-CF is training-free: it has no loss")
