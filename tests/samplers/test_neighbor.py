from __future__ import annotations

import itertools

import pytest
import torch

from reelgraph.graph import csr_rows, edge_keys
from reelgraph.samplers import relabel as rl
from reelgraph.samplers.neighbor import (cumulative_weights, hetero_neighbor_sample,
                                         neighbor_sample, sample_uniform, sample_weighted,
                                         sample_weighted_without_replacement)
from reelgraph.samplers.relabel import FREE, relabel

MODES = ["without", "with", "weighted"]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
GRAPH_SEEDS = [0, 1, 2, 3]


def _sample(rowptr, col, seeds, mode, fanouts, gen_seed=0, device="cpu", **kw):
    g = torch.Generator(device).manual_seed(gen_seed)
    cum = None
    if mode == "weighted":
        w = torch.rand(col.numel(), generator=torch.Generator().manual_seed(9)).to(device)
        cum = cumulative_weights(w)
    return neighbor_sample(rowptr, col, seeds, fanouts=fanouts, replace=mode == "with",
                           cum_weight=cum, generator=g, **kw)


def _seeds(n, device="cpu", k=5):
    return torch.randperm(n, generator=torch.Generator().manual_seed(n))[:k].to(device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("gseed", GRAPH_SEEDS)
def test_sampled_edges_exist_and_relabel_round_trips(gseed, mode, device, make_csr, real_edges):
    rowptr, col, n = make_csr(gseed, device)
    out = _sample(rowptr, col, _seeds(n, device), mode, [4, 3], device=device)
    real = real_edges(rowptr.cpu(), col.cpu())
    g_row, g_col = out.node[out.row], out.node[out.col]
    assert all(e in real for e in zip(g_row.tolist(), g_col.tolist()))
    assert torch.equal(col[out.edge], g_col)  # the edge id is the CSR slot of that edge
    assert bool(((rowptr[g_row] <= out.edge) & (out.edge < rowptr[g_row + 1])).all())
    assert out.node.unique().numel() == out.node.numel()
    assert sum(out.num_sampled_nodes) == out.node.numel()
    assert sum(out.num_sampled_edges) == out.edge.numel()


@pytest.mark.parametrize("mode", MODES)
def test_hops_are_ordered_for_trimming(graph, mode):
    rowptr, col, n = graph
    out = _sample(rowptr, col, _seeds(n), mode, [3, 2, 2])
    node_end = torch.tensor(out.num_sampled_nodes).cumsum(0)
    edge_end = torch.tensor([0] + out.num_sampled_edges).cumsum(0)
    for hop in range(3):  # hop-h edges expand exactly the nodes added at hop h - 1
        rows = out.row[edge_end[hop]:edge_end[hop + 1]]
        lo = 0 if hop == 0 else int(node_end[hop - 1])
        assert bool(((rows >= lo) & (rows < node_end[hop])).all())
        assert bool((out.col[edge_end[hop]:edge_end[hop + 1]] < node_end[hop + 1]).all())


@pytest.mark.parametrize("k", [1, 2, 5, -1])
def test_without_replacement_exact_fanout_no_duplicates(graph, k):
    rowptr, col, n = graph
    seeds = torch.arange(n)
    pos, slot = sample_uniform(rowptr, seeds, k, generator=torch.Generator().manual_seed(0))
    deg = rowptr[1:] - rowptr[:-1]
    want = deg if k < 0 else deg.clamp(max=k)
    assert torch.equal(torch.bincount(pos, minlength=n), want)
    assert slot.unique().numel() == slot.numel()
    assert bool(((rowptr[seeds[pos]] <= slot) & (slot < rowptr[seeds[pos] + 1])).all())
    out = neighbor_sample(rowptr, col, seeds[:7], fanouts=[k, k])  # no slot twice, any hop
    assert out.edge.unique().numel() == out.edge.numel()


def test_with_replacement_draws_exactly_k(graph):
    rowptr, col, n = graph
    pos, _ = sample_uniform(rowptr, torch.arange(n), 7, replace=True)
    deg = rowptr[1:] - rowptr[:-1]
    assert torch.equal(torch.bincount(pos, minlength=n), torch.where(deg > 0, 7, 0))


def test_without_replacement_is_uniform_over_subsets():
    rowptr = torch.tensor([0, 6])
    draws = 30_000
    pos, slot = sample_uniform(rowptr, torch.zeros(draws, dtype=torch.long), 2,
                               generator=torch.Generator().manual_seed(1))
    pairs = torch.sort(slot.view(draws, 2), 1).values
    count = torch.bincount(pairs[:, 0] * 6 + pairs[:, 1], minlength=36).float() / draws
    for a, b in itertools.combinations(range(6), 2):
        assert abs(count[a * 6 + b] - 1 / 15) < 0.01
    assert bool((pairs[:, 0] != pairs[:, 1]).all())


def test_weighted_frequencies_follow_weights():
    rowptr = torch.tensor([0, 4, 4, 7])
    w = torch.tensor([1.0, 2.0, 3.0, 0.0, 0.0, 5.0, 5.0])
    seeds = torch.tensor([0, 1, 2])
    pos, slot = sample_weighted(rowptr, cumulative_weights(w), seeds, 20_000,
                                generator=torch.Generator().manual_seed(0))
    assert not bool((pos == 1).any())  # empty row draws nothing
    freq = torch.bincount(slot, minlength=7).float() / 20_000
    assert torch.allclose(freq, torch.tensor([1 / 6, 2 / 6, 3 / 6, 0, 0, .5, .5]), atol=0.015)
    pos, slot = sample_weighted_without_replacement(rowptr, w, seeds, 3)
    assert torch.equal(torch.sort(slot).values, torch.tensor([0, 1, 2, 5, 6]))


def test_same_seed_same_batch_different_seed_differs(graph):
    rowptr, col, n = graph
    a = _sample(rowptr, col, _seeds(n), "without", [2, 2], gen_seed=3)
    b = _sample(rowptr, col, _seeds(n), "without", [2, 2], gen_seed=3)
    assert all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("node", "row", "col", "edge"))
    runs = {tuple(_sample(rowptr, col, _seeds(n), "with", [2, 2], gen_seed=s).edge.tolist())
            for s in range(5)}
    assert len(runs) > 1


def test_excluded_edges_never_sampled(graph):
    rowptr, col, n = graph
    seeds = _seeds(n)
    keys = torch.unique(edge_keys(csr_rows(rowptr), col, n))
    banned = keys[::2]  # every other distinct edge
    out = neighbor_sample(rowptr, col, seeds, fanouts=[-1, -1], exclude_keys=banned)
    got = edge_keys(out.node[out.row], out.node[out.col], n)
    assert not bool(torch.isin(got, banned).any())
    assert bool(torch.isin(keys[1::2][torch.isin(keys[1::2] // n, seeds)], got).all())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("gseed", GRAPH_SEEDS)
def test_hetero_edges_exist_relabel_and_fanout(gseed, device, make_csr, real_edges):
    uv_ptr, uv_col, nu = make_csr(gseed, device, num_cols=9)  # user -> creator
    vi_ptr, vi_col, _ = make_csr(gseed + 10, device, num_cols=30, num_rows=9)  # creator -> item
    csr = {("user", "follows", "creator"): (uv_ptr, uv_col),
           ("creator", "made", "item"): (vi_ptr, vi_col)}
    seeds = {"user": torch.arange(0, nu, 2, device=device)}
    fan = {et: [3, 2] for et in csr}
    out = hetero_neighbor_sample(csr, seeds, fanouts=fan, generator=torch.Generator(device))
    for et, (rowptr, col) in csr.items():
        src, dst = out.node[et[0]][out.row[et]], out.node[et[2]][out.col[et]]
        real = real_edges(rowptr.cpu(), col.cpu())
        assert all(e in real for e in zip(src.tolist(), dst.tolist()))
        assert len(out.num_sampled_edges[et]) == 2
    for t, nodes in out.node.items():
        assert nodes.unique().numel() == nodes.numel()
        assert sum(out.num_sampled_nodes[t]) == nodes.numel() and len(out.num_sampled_nodes[t]) == 3
    et = ("user", "follows", "creator")
    hop1 = out.row[et][:out.num_sampled_edges[et][0]]
    deg = (uv_ptr[1:] - uv_ptr[:-1])[seeds["user"]].clamp(max=3)
    assert torch.equal(torch.bincount(hop1, minlength=deg.numel()), deg)
    assert out.num_sampled_edges[("creator", "made", "item")][0] == 0  # no creator seeds
    for t in out.node:  # the per-type scratch tables are left free
        assert bool((rl._scratch.tables[(uv_ptr.device, t)] == FREE).all())


def _first_appearance(ids: torch.Tensor) -> torch.Tensor:
    """Distinct ``ids`` in order of first appearance, via ``torch.unique``."""
    uniq, inv = torch.unique(ids, return_inverse=True)
    first = torch.full((uniq.numel(),), ids.numel()).scatter_reduce(
        0, inv, torch.arange(ids.numel()), reduce="amin")
    return uniq[torch.argsort(first)]


@pytest.mark.parametrize("seed", range(6))
def test_relabel_matches_unique(seed):
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(1, 500, (1,), generator=g))
    known = torch.randperm(n, generator=g)[:int(torch.randint(0, n, (1,), generator=g))]
    table = torch.full((n + 7,), FREE, dtype=torch.int32)
    table[known] = torch.arange(known.numel(), dtype=torch.int32)
    for _ in range(3):  # later calls see the ids labelled by earlier ones
        ids = torch.randint(n, (int(torch.randint(0, 3 * n, (1,), generator=g)),), generator=g)
        count = known.numel()
        local, new = relabel(table, ids, count)
        assert torch.equal(new, _first_appearance(ids[~torch.isin(ids, known)]))
        known = torch.cat([known, new])
        assert local.dtype == torch.long and torch.equal(known[local], ids)
        assert torch.equal(table[known], torch.arange(known.numel(), dtype=torch.int32))
        free = torch.ones(n + 7, dtype=torch.bool)
        free[known] = False
        assert bool((table[free] == FREE).all())


@pytest.mark.parametrize("mode", MODES)
def test_hop_nodes_in_first_appearance_order_and_scratch_left_clean(graph, mode):
    rowptr, col, n = graph
    out = _sample(rowptr, col, _seeds(n), mode, [3, 2, 2])
    node_end = torch.tensor(out.num_sampled_nodes).cumsum(0).tolist()
    edge_end = torch.tensor([0] + out.num_sampled_edges).cumsum(0).tolist()
    for hop in range(3):
        cols = out.node[out.col[edge_end[hop]:edge_end[hop + 1]]]
        seen = out.node[:node_end[hop]]
        want = _first_appearance(cols[~torch.isin(cols, seen)])
        assert torch.equal(out.node[node_end[hop]:node_end[hop + 1]], want)
    assert bool((rl._scratch.tables[(rowptr.device, None)][:n] == FREE).all())


def test_scratch_table_is_dropped_when_sampling_fails(graph):
    rowptr, col, n = graph
    neighbor_sample(rowptr, col, _seeds(n), fanouts=[2])
    before = rl._scratch.tables[(rowptr.device, None)]
    with pytest.raises(TypeError):  # fails in hop 2, after hop 1 labelled nodes in the table
        neighbor_sample(rowptr, col, _seeds(n), fanouts=[2, None])
    assert rl._scratch.__dict__.get("tables") is None
    out = neighbor_sample(rowptr, col, _seeds(n), fanouts=[2, 2])
    assert rl._scratch.tables[(rowptr.device, None)] is not before
    assert out.node.unique().numel() == out.node.numel()
    assert bool((rl._scratch.tables[(rowptr.device, None)][:n] == FREE).all())


@pytest.mark.parametrize("replace", [False, True])
@pytest.mark.parametrize("k", [1, 3, -1])
def test_draws_are_grouped_by_seed_in_seed_order(graph, k, replace):
    rowptr, _, n = graph
    seeds = torch.randperm(n, generator=torch.Generator().manual_seed(2))
    pos, slot = sample_uniform(rowptr, seeds, k, replace=replace and k > 0,
                               generator=torch.Generator().manual_seed(0))
    assert bool((pos[1:] >= pos[:-1]).all())
    assert bool(((rowptr[seeds[pos]] <= slot) & (slot < rowptr[seeds[pos] + 1])).all())


def test_sampling_in_and_out_of_inference_mode(graph):
    rowptr, col, n = graph
    rl._scratch.__dict__.pop("tables", None)  # the table is made inside inference mode
    with torch.inference_mode():
        a = neighbor_sample(rowptr, col, _seeds(n), fanouts=[2, 2],
                            generator=torch.Generator().manual_seed(0))
    b = neighbor_sample(rowptr, col, _seeds(n), fanouts=[2, 2],
                        generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("node", "row", "col", "edge"))
