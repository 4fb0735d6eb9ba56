"""Tightness neighbours: eq. 3's softmax weights by hand, draws in those proportions, the
co-interaction graph's shared counts against a dense product."""
import math

import pytest
import torch

from reelgraph.graph import BipartiteGraph, transpose_csr
from reelgraph.samplers.pinsage import segment_softmax, tightness_neighbors
from reelgraph.samplers.tightness import co_interaction_graph

GRAPH_SEEDS = [0, 1, 2, 3]

# seed 0 has neighbours 4, 1, 2 with strengths 1, 3, 0; seed 1 none; seed 2 neighbours 0, 4
ROWPTR = torch.tensor([0, 3, 3, 5])
COL = torch.tensor([4, 1, 2, 0, 4])
W = torch.tensor([1.0, 3.0, 0.0, 2.0, 2.0])


def _softmax_by_hand(r: list[float], t: float = 1.0) -> list[float]:
    e = [math.exp(x / t) for x in r]
    return [x / sum(e) for x in e]


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_all_neighbours_carry_the_softmax_of_their_strength(temperature):
    out = tightness_neighbors(ROWPTR, COL, torch.tensor([0, 1, 2]), -1, edge_weight=W,
                              temperature=temperature)
    # g(r) = exp(r / T) / sum exp(r / T) (eq. 3); T = 1: e / (e + e^3 + 1) = 0.1142, ...
    want0 = _softmax_by_hand([1.0, 3.0, 0.0], temperature)
    assert out.seed_index.tolist() == [0, 0, 0, 2, 2] and out.neighbor.tolist() == COL.tolist()
    assert torch.allclose(out.weight, torch.tensor(want0 + [0.5, 0.5]), atol=1e-6)
    if temperature == 1.0:
        assert abs(want0[0] - 0.11419519) < 1e-7 and abs(want0[1] - 0.84379473) < 1e-7


def test_draws_follow_the_softmax():
    out = tightness_neighbors(ROWPTR, COL, torch.tensor([0, 1, 2]), 40_000, edge_weight=W,
                              generator=torch.Generator().manual_seed(0))
    first = out.neighbor[out.seed_index == 0]
    freq = torch.bincount(first, minlength=5).double() / first.numel()
    want = dict(zip([4, 1, 2], _softmax_by_hand([1.0, 3.0, 0.0])))
    for n, p in want.items():
        assert abs(float(freq[n]) - p) < 0.01
    assert not bool((out.seed_index == 1).any())  # no neighbour, no draw
    assert all(abs(w - want[n]) < 1e-6 for n, w in zip(first[:50].tolist(), out.weight[:50]))


def test_softmax_never_overflows_and_is_shift_invariant():
    seg = torch.tensor([0, 0, 1, 1, 1])
    r = torch.tensor([1000.0, 1001.0, -5.0, 0.0, 5.0], dtype=torch.float64)
    g = segment_softmax(seg, r, 2)
    assert torch.isfinite(g).all()
    assert torch.allclose(g, segment_softmax(seg, r - 7.0, 2))
    assert torch.allclose(g[:2], torch.tensor(_softmax_by_hand([0.0, 1.0]), dtype=torch.float64))


def test_softmax_and_proportional_differ():
    kw = dict(edge_weight=W)
    soft = tightness_neighbors(ROWPTR, COL, torch.tensor([0]), -1, **kw)
    prop = tightness_neighbors(ROWPTR, COL, torch.tensor([0]), -1, normalize="proportional", **kw)
    assert torch.allclose(prop.weight, torch.tensor([0.25, 0.75, 0.0]))
    assert soft.weight[2] > 0  # a strength of 0 stays possible under the softmax
    with pytest.raises(ValueError, match="normalize"):
        tightness_neighbors(ROWPTR, COL, torch.tensor([0]), 2, normalize="max", **kw)
    with pytest.raises(ValueError, match="temperature"):
        tightness_neighbors(ROWPTR, COL, torch.tensor([0]), 2, temperature=0.0, **kw)


@pytest.mark.parametrize("seed", GRAPH_SEEDS)
def test_co_interaction_counts_are_exact(seed):
    g = torch.Generator().manual_seed(seed)
    U, I = 12, 9
    u, i = torch.randint(U, (40,), generator=g), torch.randint(I, (40,), generator=g)
    keys = torch.unique(u * I + i)
    bg = BipartiteGraph.from_edges(keys // I, keys % I, U, I)
    a = torch.zeros(U, I)
    a[bg.users(), bg.col] = 1.0
    shared = a @ a.T  # [U, U] |N(u) ∩ N(v)|
    t = transpose_csr(bg.rowptr, bg.col, I)
    rowptr, col, count = co_interaction_graph((bg.rowptr, bg.col), t, num_walks=400,
                                              generator=torch.Generator().manual_seed(seed))
    # a tiny counting budget (runs of one or two pairs) counts the same
    _, _, small = co_interaction_graph((bg.rowptr, bg.col), t, num_walks=400, count_budget=3,
                                       generator=torch.Generator().manual_seed(seed))
    assert torch.equal(small, count)
    rows = torch.repeat_interleave(torch.arange(U), rowptr[1:] - rowptr[:-1])
    assert torch.equal(count, shared[rows, col])  # exact counts, all >= 1
    assert bool((rows != col).all())
    # 400 walks find every two-hop neighbour of these small rows
    want = {(int(x), int(y)) for x, y in (shared > 0).nonzero() if x != y}
    assert set(zip(rows.tolist(), col.tolist())) == want
    # same graph from the other side: items sharing users
    _, _, icount = co_interaction_graph(t, (bg.rowptr, bg.col), num_walks=400,
                                        generator=torch.Generator().manual_seed(seed))
    assert int(icount.sum()) == int(((a.T @ a).fill_diagonal_(0)).sum())
