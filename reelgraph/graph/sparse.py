"""Sparse operators over CSR graphs: normalised adjacencies, symmetric and pooling products,
and the segment (scatter-by-index) reductions every model shares: sum, max, the mean's
weights, softmax. CPU (MKL, int32 indices) and CUDA alike.

The segment reductions are written here rather than taken from
``torch_geometric.utils.scatter``: PyG's ``"max"`` switches to ``torch_scatter`` (gradient to
one arg-max at a tie, not shared) on CUDA when that package is installed, and its ``"mean"``
divides the sum (the models weight each entry by ``1 / count`` first, a different rounding)."""
from __future__ import annotations

import warnings

import torch
from torch import Tensor

from reelgraph.graph.csr import csr_rows, expand_rows, to_csr


def csr_tensor(rowptr: Tensor, col: Tensor, values: Tensor, shape: tuple[int, int],
               index_dtype: torch.dtype = torch.int32) -> Tensor:
    """A sparse CSR tensor; int32 indices take the fast MKL kernel on CPU."""
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(rowptr.to(index_dtype), col.to(index_dtype), values, shape)


def select_rows(rowptr: Tensor, col: Tensor, value: Tensor | None, rows: Tensor, num_cols: int
                ) -> Tensor:
    """Rows ``rows [R]`` of a CSR as a sparse CSR ``[R, num_cols]`` (``value=None``: ones)."""
    _, slot = expand_rows(rowptr, rows)                                  # [M] the rows' slots
    ptr = torch.zeros(rows.numel() + 1, dtype=torch.long, device=rows.device)
    torch.cumsum(rowptr[rows + 1] - rowptr[rows], 0, out=ptr[1:])
    v = torch.ones(slot.numel(), device=col.device) if value is None else value[slot]
    return csr_tensor(ptr, col[slot], v, (rows.numel(), num_cols))


def sym_norm_rows(rowptr: Tensor, col: Tensor, deg: Tensor, start: int = 0,
                  stop: int | None = None, index_dtype: torch.dtype = torch.int32) -> Tensor:
    """Rows ``start..stop-1`` of ``D^-1/2 A D^-1/2`` as a sparse CSR ``[stop - start, N]`` from a
    symmetric CSR ``(rowptr [N + 1], col)`` and the normalising degrees ``deg [N]`` (the node
    degrees; ``deg + 1`` gives the edges of ``D~^-1/2 (A + I) D~^-1/2``, the self-loop term left to
    the caller). Isolated nodes get zero rows."""
    N = rowptr.numel() - 1
    stop = N if stop is None else stop
    ptr = rowptr[start: stop + 1] - rowptr[start]
    c = col[rowptr[start]: rowptr[stop]].long()
    w = (deg[csr_rows(ptr) + start].float() * deg[c].float()).rsqrt()  # [nnz]
    return csr_tensor(ptr, c, w, (stop - start, N), index_dtype)


class _SymmetricSpMM(torch.autograd.Function):
    """``adj @ x`` whose backward reuses ``adj`` (it is symmetric), never transposing a CSR.
    Always float32 (or ``x``'s own dtype) under autocast: torch's CPU sparse CSR product has no
    bfloat16 kernel, so mixed precision leaves the propagation as it is."""

    @staticmethod
    def forward(ctx, adj: Tensor, x: Tensor) -> Tensor:
        ctx.adj = adj
        with torch.autocast(x.device.type, enabled=False):
            return adj @ x

    @staticmethod
    def backward(ctx, grad: Tensor):
        return None, ctx.adj @ grad


def sym_spmm(adj: Tensor, x: Tensor) -> Tensor:
    """``adj @ x`` for a symmetric sparse ``adj``, differentiable in ``x``."""
    return _SymmetricSpMM.apply(adj, x)


@torch.no_grad()
def chunked_spmm(rowptr: Tensor, col: Tensor, deg: Tensor, h: Tensor, chunk_size: int) -> Tensor:
    """``D^-1/2 A D^-1/2 h`` without gradients, building ``chunk_size`` rows of the normalised
    adjacency at a time (:func:`sym_norm_rows`); ``h [N, d]`` → ``[N, d]``, each chunk written
    into the output in place (no list of chunks to concatenate: one ``[N, d]`` less at peak)."""
    N = h.size(0)
    out = h.new_empty(N, h.size(1))
    for s in range(0, N, chunk_size):
        e = min(s + chunk_size, N)
        out[s:e] = sym_norm_rows(rowptr, col, deg, s, e) @ h
    return out


class _PoolMM(torch.autograd.Function):
    """``M @ x`` whose backward is ``M^T @ grad`` with a prebuilt ``M^T`` (no CSR transpose)."""

    @staticmethod
    def forward(ctx, m: Tensor, m_t: Tensor, x: Tensor) -> Tensor:
        ctx.m_t = m_t
        return m @ x

    @staticmethod
    def backward(ctx, grad: Tensor):
        return None, None, ctx.m_t @ grad


def mean_pool_matrix(row: Tensor, col: Tensor, num_rows: int, num_cols: int
                     ) -> tuple[Tensor, Tensor]:
    """``(M, M^T)`` sparse CSRs with ``(M x)[r]`` the mean of ``x[c]`` over edges ``(r, c)``
    (empty rows give 0), for :func:`pool`."""
    w = segment_mean_weight(row, num_rows)                                 # [E]
    rowptr, c, perm = to_csr(row, col, num_rows)
    rowptr_t, r, perm_t = to_csr(col, row, num_cols)
    return (csr_tensor(rowptr, c, w[perm], (num_rows, num_cols)),
            csr_tensor(rowptr_t, r, w[perm_t], (num_cols, num_rows)))


def pool(mats: tuple[Tensor, Tensor], x: Tensor) -> Tensor:
    """``M @ x`` for ``mats = (M, M^T)`` of :func:`mean_pool_matrix`, differentiable in ``x``."""
    return _PoolMM.apply(mats[0], mats[1], x)


class _GatherWeightedSum(torch.autograd.Function):
    """``out[r] = sum_j w[r, j] x[index[r, j]]`` as a CSR product; never builds ``[R, n, d]``
    whole (the weights' gradient reads the neighbours' rows a chunk at a time)."""

    @staticmethod
    def forward(ctx, index: Tensor, w: Tensor, x: Tensor) -> Tensor:
        R, n = index.shape
        ptr = torch.arange(0, R * n + 1, n, device=index.device)
        ctx.save_for_backward(index, w, x)
        return csr_tensor(ptr, index.reshape(-1), w.reshape(-1).to(x.dtype), (R, x.size(0))) @ x

    @staticmethod
    def backward(ctx, grad: Tensor):
        index, w, x = ctx.saved_tensors
        R, n = index.shape
        gw = gx = None
        if ctx.needs_input_grad[1]:  # gw[r, j] = grad[r] . x[index[r, j]]
            gw = torch.empty(R, n, dtype=grad.dtype, device=grad.device)
            step = max(1, _GATHER_CHUNK // max(1, n * x.size(1)))
            for s in range(0, R, step):
                e = min(s + step, R)
                gw[s:e] = torch.bmm(x[index[s:e]], grad[s:e].unsqueeze(-1)).squeeze(-1)
            gw = gw.to(w.dtype)
        if ctx.needs_input_grad[2]:  # gx = A^T grad
            row = torch.arange(R, device=index.device).repeat_interleave(n)
            ptr, col, perm = to_csr(index.reshape(-1), row, x.size(0))
            gx = csr_tensor(ptr, col, w.reshape(-1)[perm].to(grad.dtype),
                            (x.size(0), R)) @ grad
        return None, gw, gx


_GATHER_CHUNK = 1 << 22  # floats of neighbour rows the weights' gradient gathers at once


def gather_weighted_sum(index: Tensor, weight: Tensor, x: Tensor) -> Tensor:
    """``out[r] = sum_j weight[r, j] x[index[r, j]]``: padded neighbour lists ``index [R, n]``
    (any valid row where ``weight`` is 0) into ``x [T, d]`` → ``[R, d]``, differentiable in
    ``weight`` and ``x``; the same as ``(weight[..., None] * x[index]).sum(1)`` without its
    ``[R, n, d]`` tensor and that tensor's backward."""
    return _GatherWeightedSum.apply(index, weight, x)


def segment_sum(src: Tensor, index: Tensor, num_segments: int) -> Tensor:
    """``out[r] = sum_{index[m] = r} src[m]``: ``src [M, *]``, ``index [M]`` in ``[0,
    num_segments)`` → ``[num_segments, *]``, ``src``'s dtype; empty segments are zeros."""
    return src.new_zeros(num_segments, *src.shape[1:]).index_add_(0, index, src)


def segment_max(src: Tensor, index: Tensor, num_segments: int) -> Tensor:
    """Element-wise ``out[r] = max_{index[m] = r} src[m]``: ``src [M, *]``, ``index [M]`` →
    ``[num_segments, *]``; empty segments are zeros (never ``-inf``). At a tie the gradient is
    shared equally by the tied entries (``torch.scatter_reduce``'s ``"amax"``)."""
    out = src.new_zeros(num_segments, *src.shape[1:])
    index = index.reshape(-1, *([1] * (src.dim() - 1))).expand_as(src)    # [M, *]
    return out.scatter_reduce(0, index, src, "amax", include_self=False)


def segment_mean_weight(index: Tensor, num_segments: int, dtype: torch.dtype = torch.float32
                        ) -> Tensor:
    """``1 / |segment of m|`` ``[M]`` in ``dtype`` for ``index [M]``: the weights that make a
    weighted sum a segment mean (``segment_sum(w[:, None] * x, ...)``, a sparse product, the
    no-attention ablation's ``pi``); an empty segment's mean is then 0."""
    count = torch.bincount(index, minlength=num_segments).clamp(min=1).to(dtype)  # [N]
    return 1.0 / count[index]


def weighted_sum(index: Tensor, weight: Tensor, x: Tensor, num_rows: int) -> Tensor:
    """``out[r] = sum_{index[m] = r} weight[m] x[m]``; ``x [M, d]`` → ``[num_rows, d]`` (rows
    without entries are zeros)."""
    return segment_sum(weight.unsqueeze(1) * x, index, num_rows)


def segment_softmax(segment: Tensor, score: Tensor, num_segments: int) -> Tensor:
    """Softmax of ``score [M]`` within each ``segment`` id (``[M]``, in ``[0, num_segments)``),
    shifted by each segment's max so large scores never overflow (the shift is a constant to
    autograd: the softmax does not change with it): ``[M]``."""
    top = segment_max(score.detach(), segment, num_segments)  # [num_segments]
    e = torch.exp(score - top[segment])  # [M] in (0, 1]
    return e / segment_sum(e, segment, num_segments)[segment]
