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


_EDGE_CHUNK = 1 << 22  # floats of gathered rows an edge product reads at once


def _csr_float(x: Tensor) -> Tensor:
    """``x`` in a dtype torch's sparse CSR product has a kernel for on every device (float32
    for the half types; under ``bf16-mixed`` autocast a Linear's output is bfloat16)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _edge_csr(row: Tensor, col: Tensor, value: Tensor, num_rows: int, num_cols: int) -> Tensor:
    """The sparse CSR ``[num_rows, num_cols]`` with ``value [M]`` at the edges ``(row, col)``
    (any order; repeated edges add up)."""
    if row.numel() and bool((row[1:] >= row[:-1]).all()):  # already grouped: no sort
        ptr = torch.zeros(num_rows + 1, dtype=torch.long, device=row.device)
        torch.cumsum(torch.bincount(row, minlength=num_rows), 0, out=ptr[1:])
        return csr_tensor(ptr, col, value, (num_rows, num_cols))
    ptr, c, perm = to_csr(row, col, num_rows)
    return csr_tensor(ptr, c, value[perm], (num_rows, num_cols))


def _edge_sum(row: Tensor, col: Tensor, w: Tensor, x: Tensor, num_rows: int) -> Tensor:
    """``sum_{m: row[m] = r} w[m] x[col[m]]`` ``[num_rows, d]`` as one CSR product (no
    gradient: the edge ops' forward and backward passes)."""
    return _edge_csr(row, col, w.to(x.dtype), num_rows, x.size(0)) @ x


def _rowwise_dot(x: Tensor, y: Tensor, row: Tensor, col: Tensor) -> Tensor:
    """``(x[row] * y[col]).sum(-1)`` ``[M]``, reading ``_EDGE_CHUNK`` floats of rows at a time."""
    out = x.new_empty(row.numel())
    step = max(1, _EDGE_CHUNK // max(1, x.size(1)))
    for s in range(0, row.numel(), step):
        e = min(s + step, row.numel())
        torch.sum(x[row[s:e]] * y[col[s:e]], -1, out=out[s:e])
    return out


class _EdgeDot(torch.autograd.Function):
    """``out[m] = x[row[m]] . y[col[m]]``: the backward passes are two sparse products."""

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, row: Tensor, col: Tensor) -> Tensor:
        ctx.save_for_backward(x, y, row, col)
        with torch.autocast(x.device.type, enabled=False):
            return _rowwise_dot(x, y, row, col)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, y, row, col = ctx.saved_tensors
        gx = gy = None
        with torch.autocast(x.device.type, enabled=False):
            if ctx.needs_input_grad[0]:
                gx = _edge_sum(row, col, grad, y, x.size(0))
            if ctx.needs_input_grad[1]:
                gy = _edge_sum(col, row, grad, x, y.size(0))
        return gx, gy, None, None


class _EdgeWeightedSum(torch.autograd.Function):
    """``out[r] = sum_{m: row[m] = r} w[m] x[col[m]]``: a sparse product each way; the weights'
    gradient is a chunked edge dot product."""

    @staticmethod
    def forward(ctx, row: Tensor, col: Tensor, w: Tensor, x: Tensor, num_rows: int) -> Tensor:
        ctx.save_for_backward(row, col, w, x)
        with torch.autocast(x.device.type, enabled=False):
            return _edge_sum(row, col, w, x, num_rows)

    @staticmethod
    def backward(ctx, grad: Tensor):
        row, col, w, x = ctx.saved_tensors
        gw = gx = None
        with torch.autocast(x.device.type, enabled=False):
            if ctx.needs_input_grad[2]:
                gw = _rowwise_dot(grad, x, row, col).to(w.dtype)
            if ctx.needs_input_grad[3]:
                gx = _edge_sum(col, row, w, grad, x.size(0))
        return None, None, gw, gx, None


def edge_dot(x: Tensor, y: Tensor, row: Tensor, col: Tensor) -> Tensor:
    """``x[row[m]] . y[col[m]]`` per edge ``[M]`` of rows ``x [T, d]``, ``y [N, d]``,
    differentiable in both; the same as ``(x[row] * y[col]).sum(-1)`` without keeping two
    ``[M, d]`` gathers for the backward pass. Half-precision rows are computed in float32."""
    return _EdgeDot.apply(_csr_float(x), _csr_float(y), row, col)


def edge_weighted_sum(row: Tensor, col: Tensor, weight: Tensor, x: Tensor, num_rows: int
                      ) -> Tensor:
    """``out[r] = sum_{m: row[m] = r} weight[m] x[col[m]]`` ``[num_rows, d]`` of ``x [N, d]``,
    differentiable in ``weight [M]`` and ``x``: :func:`weighted_sum` of ``x[col]`` without the
    ``[M, d]`` messages (a sparse product each way; half-precision rows in float32)."""
    return _EdgeWeightedSum.apply(row, col, weight, _csr_float(x), num_rows)


def gather_weighted_sum(index: Tensor, weight: Tensor, x: Tensor) -> Tensor:
    """``out[r] = sum_j weight[r, j] x[index[r, j]]``: padded neighbour lists ``index [R, n]``
    (any valid row where ``weight`` is 0) into ``x [T, d]`` → ``[R, d]``
    (:func:`edge_weighted_sum` of the lists' edges)."""
    R, n = index.shape
    row = torch.arange(R, device=index.device).repeat_interleave(n)
    return edge_weighted_sum(row, index.reshape(-1), weight.reshape(-1), x, R)


def segment_sum(src: Tensor, index: Tensor, num_segments: int) -> Tensor:
    """``out[r] = sum_{index[m] = r} src[m]``: ``src [M, *]``, ``index [M]`` in ``[0,
    num_segments)`` → ``[num_segments, *]``, ``src``'s dtype; empty segments are zeros."""
    return src.new_zeros(num_segments, *src.shape[1:]).index_add_(0, index, src)


class _SegmentMax(torch.autograd.Function):
    """``segment_max`` over ``src`` grouped by a sorted ``index``: torch's segment reduction
    forward, and a backward that splits each upstream gradient equally among the tied maxima
    (torch 2.13's ``segment_reduce`` backward gives every tie the whole gradient when it is
    negative; ``scatter_reduce``'s ``amax`` counts the zero it starts from as one more tie)."""

    @staticmethod
    def forward(ctx, src: Tensor, index: Tensor, num_segments: int) -> Tensor:
        lengths = torch.bincount(index, minlength=num_segments)                  # [S]
        out = torch.segment_reduce(src, "max", lengths=lengths, unsafe=True)     # [S, *]
        out = out.masked_fill((lengths == 0).view(-1, *([1] * (src.dim() - 1))), 0)
        ctx.save_for_backward(src, index, out)
        ctx.num_segments = num_segments
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        src, index, out = ctx.saved_tensors
        top = src == out[index]                                                  # [M, *]
        ties = segment_sum(top.to(grad.dtype), index, ctx.num_segments).clamp(min=1)
        return top * (grad / ties)[index], None, None


def segment_max(src: Tensor, index: Tensor, num_segments: int) -> Tensor:
    """Element-wise ``out[r] = max_{index[m] = r} src[m]``: ``src [M, *]``, ``index [M]`` →
    ``[num_segments, *]``; empty segments are zeros (never ``-inf``). At a tie the tied entries
    share the gradient equally (their gradients sum to the output's). ``index`` in any order
    (unsorted: grouped by a stable sort first)."""
    if index.numel() and not bool((index[1:] >= index[:-1]).all()):
        perm = torch.sort(index, stable=True).indices
        src, index = src[perm], index[perm]
    return _SegmentMax.apply(src, index, num_segments)


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
