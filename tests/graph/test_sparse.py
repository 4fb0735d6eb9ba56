"""The segment reductions of :mod:`reelgraph.graph.sparse` against hand-computed answers, and
against PyG's ``scatter`` / ``softmax`` where their semantics are the same."""
import pytest
import torch
from torch_geometric.utils import scatter, softmax

from reelgraph.graph import (edge_dot, edge_weighted_sum, gather_weighted_sum, mean_pool_matrix,
                             pool, segment_max, segment_mean_weight, segment_softmax, segment_sum,
                             weighted_sum)
from reelgraph.graph import sparse

# three segments: 0 holds entries 0 and 2, 1 is empty, 2 holds entries 1 and 3
INDEX = torch.tensor([0, 2, 0, 2])
X = torch.tensor([[1.0, -2.0], [3.0, 4.0], [5.0, -6.0], [3.0, -1.0]])


def test_segment_sum_by_hand():
    assert segment_sum(X, INDEX, 3).tolist() == [[6.0, -8.0], [0.0, 0.0], [6.0, 3.0]]
    assert segment_sum(X[:, 0], INDEX, 4).tolist() == [6.0, 0.0, 6.0, 0.0]  # [M] → [N]


def test_segment_max_by_hand_empty_is_zero_not_minus_inf():
    # column 1 of segment 0 is all negative: the max (-2), not the empty fill (0)
    assert segment_max(X, INDEX, 3).tolist() == [[5.0, -2.0], [0.0, 0.0], [3.0, 4.0]]
    assert segment_max(-X[:, 0], INDEX, 3).tolist() == [-1.0, 0.0, -3.0]


def test_segment_max_shares_the_gradient_at_a_tie():
    x = X.clone().requires_grad_()
    segment_max(x, INDEX, 3).sum().backward()
    # segment 2, column 0: entries 1 and 3 tie at 3.0 and split the gradient
    assert x.grad.tolist() == [[0.0, 1.0], [0.5, 1.0], [1.0, 0.0], [0.5, 0.0]]


def test_segment_max_splits_negative_gradients_and_ties_at_zero():
    # torch 2.13 gets both wrong: segment_reduce's backward gives each tie the whole gradient
    # when it is negative (-0.2 each, not -0.1); scatter_reduce's amax (and so PyG's scatter
    # max) counts the zero it starts from as one more tie at 0 (1/3 each, not 1/2; a lone max
    # of 0 gets 1/2)
    x = torch.tensor([[1.0], [1.0], [0.0], [0.0], [-1.0]], requires_grad=True)
    index = torch.tensor([0, 0, 1, 1, 2])
    (segment_max(x, index, 3) * torch.tensor([[-0.2], [1.0], [2.0]])).sum().backward()
    assert x.grad.view(-1).tolist() == pytest.approx([-0.1, -0.1, 0.5, 0.5, 2.0])


def test_segment_max_in_any_index_order():
    gen = torch.Generator().manual_seed(3)
    index = torch.randint(0, 6, (30,), generator=gen)                   # unsorted, 6 segments
    x = torch.randint(-2, 3, (30, 2), generator=gen).double().requires_grad_()
    up = torch.randn(6, 2, generator=gen, dtype=torch.float64)
    (segment_max(x, index, 6) * up).sum().backward()
    seg = torch.nn.functional.one_hot(index, 6).double()                # [M, S], dense reference
    vals = torch.where(seg.bool().unsqueeze(-1), x.detach().unsqueeze(1), -torch.inf)  # [M, S, 2]
    top = vals.max(0).values                                            # [S, 2]
    tie = (vals == top) & seg.bool().unsqueeze(-1)
    want = (tie * (up / tie.sum(0).clamp(min=1))).sum(1)               # [M, 2]
    assert torch.allclose(x.grad, want)
    assert torch.equal(segment_max(x, index, 6), torch.where(top.isinf(), 0.0, top))


def test_segment_mean_weight_by_hand():
    assert segment_mean_weight(torch.tensor([0, 2, 2, 2]), 3).tolist() == pytest.approx(
        [1.0, 1 / 3, 1 / 3, 1 / 3])
    assert segment_mean_weight(INDEX, 3).dtype == torch.float32
    assert segment_mean_weight(INDEX, 3, torch.float64).dtype == torch.float64
    mean = weighted_sum(INDEX, segment_mean_weight(INDEX, 3), X, 3)
    assert mean.tolist() == [[3.0, -4.0], [0.0, 0.0], [3.0, 1.5]]  # empty segment: 0


def test_weighted_sum_by_hand():
    w = torch.tensor([2.0, 1.0, 0.5, -1.0])
    assert weighted_sum(INDEX, w, X, 3).tolist() == [[4.5, -7.0], [0.0, 0.0], [0.0, 5.0]]


def test_gather_weighted_sum_by_hand():
    """``out[r] = sum_j w[r, j] x[index[r, j]]``; a 0 weight (padding) reads nothing."""
    index, w = torch.tensor([[2, 0], [1, 1], [3, 0]]), torch.tensor([[2.0, 0.5], [1.0, -1.0],
                                                                     [1.0, 0.0]])
    assert gather_weighted_sum(index, w, X).tolist() == [[10.5, -13.0], [0.0, 0.0], [3.0, -1.0]]


@pytest.mark.parametrize("chunk", [1, 3, 1 << 22])
def test_gather_weighted_sum_gradients_match_the_gathered_sum(monkeypatch, chunk):
    """Gradients to the weights (read a chunk of rows at a time) and to the table (the
    transposed product, repeated rows summed) equal those of the ``[R, n, d]`` form, float64."""
    monkeypatch.setattr(sparse, "_EDGE_CHUNK", chunk)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(7, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(9, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    index, seed = torch.randint(0, 7, (9, 4), generator=gen), torch.randn(9, 3, generator=gen,
                                                                         dtype=torch.float64)
    got = torch.autograd.grad((gather_weighted_sum(index, w, x) * seed).sum(), (w, x))
    want = torch.autograd.grad(((w.unsqueeze(-1) * x[index]).sum(1) * seed).sum(), (w, x))
    for g, e in zip(got, want):
        assert torch.allclose(g, e, atol=1e-12)


@pytest.mark.parametrize("chunk", [1, 5, 1 << 22])
def test_edge_products_match_their_gathered_forms(monkeypatch, chunk):
    """``edge_dot`` and ``edge_weighted_sum`` on unsorted edges with a repeated edge and a row
    without edges: values and gradients (both tables, the weights) as the ``[M, d]`` forms,
    float64, at any chunk size."""
    monkeypatch.setattr(sparse, "_EDGE_CHUNK", chunk)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.randn(8, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(12, generator=gen, dtype=torch.float64, requires_grad=True)
    row = torch.tensor([3, 0, 5, 0, 2, 3, 5, 5, 0, 2, 3, 0])             # row 1 and 4: no edge
    col = torch.tensor([7, 1, 0, 1, 4, 2, 6, 3, 0, 5, 2, 7])             # (0, 1), (3, 2) twice
    seed_d, seed_s = torch.randn(12, generator=gen, dtype=torch.float64), torch.randn(
        6, 3, generator=gen, dtype=torch.float64)
    for got, want, inputs in (
            (edge_dot(x, y, row, col), (x[row] * y[col]).sum(-1), (x, y)),
            (edge_weighted_sum(row, col, w, y, 6), weighted_sum(row, w, y[col], 6), (w, y))):
        assert torch.allclose(got, want, atol=1e-12)
        seed = seed_d if got.dim() == 1 else seed_s
        for g, e in zip(torch.autograd.grad((got * seed).sum(), inputs),
                        torch.autograd.grad((want * seed).sum(), inputs)):
            assert torch.allclose(g, e, atol=1e-12)
    assert edge_weighted_sum(row, col, w, y, 6)[[1, 4]].abs().sum() == 0


def test_edge_products_run_in_float32_under_bf16_autocast():
    """Under ``bf16-mixed`` autocast a Linear's output is bfloat16 and torch's CPU sparse CSR
    product has no bfloat16 kernel: the edge products take such rows in float32 (values equal
    to the float32 products of the same rows) and their gradients reach the bfloat16 inputs."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(6, 4, generator=gen).bfloat16().requires_grad_()
    w = torch.rand(9, generator=gen, requires_grad=True)
    row, col = torch.randint(0, 6, (9,), generator=gen), torch.randint(0, 6, (9,), generator=gen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        dot, total = edge_dot(x, x, row, col), edge_weighted_sum(row, col, w, x, 6)
    xf = x.detach().float()
    assert dot.dtype == total.dtype == torch.float32
    assert torch.allclose(dot, (xf[row] * xf[col]).sum(-1), atol=1e-5)
    assert torch.allclose(total, weighted_sum(row, w.detach(), xf[col], 6), atol=1e-5)
    (dot.sum() + total.sum()).backward()
    assert x.grad.dtype == torch.bfloat16 and x.grad.abs().sum() > 0 and w.grad.abs().sum() > 0


def test_segment_softmax_by_hand():
    score = torch.tensor([0.0, 1000.0, 0.0, 1000.0])  # large: the max shift avoids overflow
    assert segment_softmax(INDEX, score, 3).tolist() == [0.5, 0.5, 0.5, 0.5]
    e = torch.tensor([1.0, 2.0]).exp()
    p = segment_softmax(torch.tensor([1, 1, 0]), torch.tensor([1.0, 2.0, 7.0]), 3)
    assert p.tolist() == pytest.approx([*(e / e.sum()).tolist(), 1.0])


def test_mean_pool_matrix_by_hand():
    row, col = torch.tensor([0, 0, 2]), torch.tensor([1, 2, 0])
    x = torch.tensor([[1.0], [2.0], [4.0]])
    assert pool(mean_pool_matrix(row, col, 3, 3), x).tolist() == [[3.0], [0.0], [1.0]]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_same_as_pyg(seed, dtype):
    """Bit for bit on CPU: sum, max and softmax; the max's gradient wherever the max is not 0
    (there PyG's scatter_reduce counts its zero start as one more tie; see above)."""
    g = torch.Generator().manual_seed(seed)
    n = 7
    index = torch.randint(0, n - 2, (40,), generator=g)                 # rows n-2, n-1 empty
    x = torch.randint(-3, 4, (40, 3), generator=g).to(dtype)          # small ints: many ties
    assert torch.equal(segment_sum(x, index, n), scatter(x, index, 0, n, "sum"))
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = segment_max(a, index, n)
    ref = scatter(b, index, 0, n, "max")
    assert torch.equal(out, ref)
    out.sum().backward()
    ref.sum().backward()
    fine = out.detach()[index] != 0    # PyG's gradient is short wherever a max is 0
    assert torch.equal(a.grad[fine], b.grad[fine])
    score = torch.randn(40, generator=g, dtype=dtype)
    assert torch.equal(segment_softmax(index, score, n), softmax(score, index, num_nodes=n))


def test_sym_spmm_stays_float32_under_bf16_autocast():
    """torch's CPU sparse CSR product has no bfloat16 kernel: under ``bf16-mixed`` autocast the
    propagation runs (it raised NotImplementedError before) and equals float32, gradient too."""
    from reelgraph.graph.sparse import csr_tensor, sym_spmm
    rowptr, col = torch.tensor([0, 2, 3, 4]), torch.tensor([1, 2, 0, 0])
    adj = csr_tensor(rowptr, col, torch.tensor([0.5, 0.25, 0.5, 0.25]), (3, 3))
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    want = sym_spmm(adj, x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = sym_spmm(adj, x)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want)
    got.sum().backward()
    torch.testing.assert_close(x.grad, adj @ torch.ones(3, 4))
