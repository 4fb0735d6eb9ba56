import math
from dataclasses import replace

import pytest
import torch

from reelgraph.data.store import InMemoryStore
from reelgraph.graph import (BipartiteGraph, FullGraph, layer_mean, propagate, propagate_mean,
                             sym_norm_rows)
from reelgraph.models import MF, LightGCN, LightGCNConfig, MFConfig
from reelgraph.samplers.batch import BPRBatch
from reelgraph.samplers.loader import plan_batch
from reelgraph.samplers.plans.gcn import sample_subgraph, symmetric_graph

# 2 users, 2 items: u0-i0, u0-i1, u1-i1. Degrees u0=2, u1=1, i0=1, i1=2.
GRAPH = BipartiteGraph.from_edges(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]), 2, 2)


def adjacency(graph: BipartiteGraph) -> torch.Tensor:
    """``D^-1/2 A D^-1/2`` of ``graph`` as a sparse CSR ``[U + I, U + I]``."""
    return sym_norm_rows(*graph.symmetric())


def full_mean(graph, x, num_layers):
    adj = adjacency(graph)
    return torch.stack(propagate(FullGraph(adj.size(0), adj=adj), x, num_layers)).mean(0)


def test_propagate_mean_is_the_mean_of_the_layers_with_and_without_gradients():
    # by hand on GRAPH (layer 1 as in the test below), through the operator and the chunked CSR
    x = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    r2 = 1 / math.sqrt(2)
    layer1 = torch.tensor([[3 * r2 + 4 * 0.5], [4 * r2], [1 * r2], [1 * 0.5 + 2 * r2]])
    layer2 = adjacency(GRAPH).to_dense() @ layer1
    adj = adjacency(GRAPH)
    rowptr, col = adj.crow_indices(), adj.col_indices()
    deg = (rowptr[1:] - rowptr[:-1]).float()
    for graph in (FullGraph(4, adj=adj), FullGraph(4, csr=(rowptr, col, deg), chunk_size=3)):
        with torch.no_grad():
            mean, first = propagate_mean(graph, x.clone(), 2)
        assert torch.allclose(mean, (x + layer1 + layer2) / 3) and torch.equal(first, x)
    w = x.clone().requires_grad_()
    mean, _ = propagate_mean(FullGraph(4, adj=adj), w, 2)
    want = layer_mean(propagate(FullGraph(4, adj=adj), w, 2))
    assert torch.equal(mean, want)                      # the same sums in the same order
    mean.sum().backward()
    assert torch.equal(w, x) and w.grad is not None     # x never changed in place


def test_sym_norm_adjacency_by_hand():
    a = adjacency(GRAPH).to_dense()
    r2 = 1 / math.sqrt(2)
    expected = torch.tensor([[0, 0, r2, 0.5],     # u0: i0 (1/sqrt(2*1)), i1 (1/sqrt(2*2))
                             [0, 0, 0, r2],       # u1: i1 (1/sqrt(1*2))
                             [r2, 0, 0, 0],
                             [0.5, r2, 0, 0]])
    assert torch.allclose(a, expected)


def test_one_layer_propagation_by_hand():
    x = torch.tensor([[1.0], [2.0], [3.0], [4.0]])  # u0, u1, i0, i1
    r2 = 1 / math.sqrt(2)
    layer1 = torch.tensor([[3 * r2 + 4 * 0.5], [4 * r2], [1 * r2], [1 * 0.5 + 2 * r2]])
    assert torch.allclose(full_mean(GRAPH, x, 1), (x + layer1) / 2)
    layer2 = adjacency(GRAPH).to_dense() @ layer1
    assert torch.allclose(full_mean(GRAPH, x, 2), (x + layer1 + layer2) / 3)


def test_symmetric_spmm_gradient():
    adj = adjacency(GRAPH)
    adj = torch.sparse_csr_tensor(adj.crow_indices(), adj.col_indices(), adj.values().double(), adj.shape)
    x = torch.randn(4, 3, dtype=torch.double, requires_grad=True)
    g = FullGraph(4, adj=adj)
    assert torch.autograd.gradcheck(lambda t: torch.stack(propagate(g, t, 3)).mean(0), (x,))


def test_loss_terms_and_gradient_reach_batch_rows():
    torch.manual_seed(0)
    store = InMemoryStore(GRAPH)
    for cfg in (LightGCNConfig(embedding_dim=8), MFConfig(embedding_dim=8)):
        model = cfg.build(store)
        batch = plan_batch(store, cfg.plan(), BPRBatch(torch.tensor([1]), torch.tensor([1]),
                                                       torch.tensor([[0]])))
        out = model.loss(batch)
        assert set(out) == {"loss", "bpr", "l2"}
        w = torch.cat([p for p in model.parameters()])  # users first, then items
        expected_l2 = (w[1].pow(2).sum() + w[2 + 1].pow(2).sum() + w[2 + 0].pow(2).sum()) / 2
        assert torch.allclose(out["l2"], expected_l2)
        out["loss"].backward()
        grads = [p.grad for p in model.parameters()]
        assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_bpr_loss_value():
    from reelgraph.models import bpr_loss
    got = bpr_loss(torch.tensor([2.0, 0.0]), torch.tensor([[1.0, 3.0], [0.0, 0.0]]))
    sp = lambda z: math.log1p(math.exp(z))
    assert math.isclose(got.item(), (sp(-1) + sp(1) + sp(0) + sp(0)) / 4, rel_tol=1e-6)


# -- sampled mini-batch mode: the plan's batches ---------------------------------------------
def _model(graph, num_layers) -> LightGCN:
    torch.manual_seed(0)
    return LightGCN(graph.num_users, graph.num_items,
                    LightGCNConfig(embedding_dim=8, num_layers=num_layers))


SEEDS = torch.tensor([0, 3, 7, 29, 30, 41, 55, 69])  # users 0..29, items 30..69


@pytest.mark.parametrize("fanouts", [[-1], [-1, -1], [-1, -1, -1]])
def test_full_fanouts_give_the_full_graph_rows(fanouts, small_graph, small_store):
    model = _model(small_graph, len(fanouts))
    ctx = symmetric_graph(small_store)
    with torch.no_grad():
        out, h0 = model(sample_subgraph(ctx, SEEDS, tuple(fanouts)))
        full = full_mean(small_graph, model.embedding.weight, len(fanouts))
    assert torch.allclose(out, full[SEEDS], atol=1e-6)
    assert torch.equal(h0, model.embedding.weight[SEEDS])
    # the sampled plan's embed() is the full-graph propagation, chunked: same rows
    cfg = replace(model.config, fanouts=fanouts, chunk_size=7)
    with torch.no_grad():
        u, i = model.embed(cfg.plan().static(small_store, torch.device("cpu")))
    assert torch.allclose(torch.cat([u, i]), full, atol=1e-6)


def test_full_fanouts_give_the_full_graph_loss(small_graph, small_store, small_batch):
    """The same triples through the whole-graph plan and the all-neighbours sampled plan."""
    model = _model(small_graph, 2)
    full = plan_batch(small_store, model.config.plan(), small_batch)
    sampled = plan_batch(small_store, replace(model.config, fanouts=[-1, -1]).plan(), small_batch)
    assert full.sub is None and sampled.sub is not None
    got, want = model.loss(sampled), model.loss(full)
    for key in ("loss", "bpr", "l2"):
        assert torch.allclose(got[key], want[key], atol=1e-6), key


def test_excluded_targets_give_the_rows_of_the_graph_without_them(small_graph, small_store,
                                                                   small_batch):
    graph, batch = small_graph, small_batch
    model = _model(graph, 2)
    cfg = replace(model.config, fanouts=[-1, -1], exclude_targets=True)
    got = plan_batch(small_store, cfg.plan(), batch)
    keys = graph.keys()
    drop = torch.isin(keys, batch.users * graph.num_items + batch.pos)
    with torch.no_grad():
        out, _ = model(got.sub)
        # the graph without the targets, but normalised with the FULL-graph degrees
        g = symmetric_graph(small_store)
        rows = torch.repeat_interleave(torch.arange(g.num_nodes), g.deg)
        adj = torch.zeros(g.num_nodes, g.num_nodes)
        adj[rows, g.col] = (g.deg[rows] * g.deg[g.col]).float().rsqrt()
        u, i = keys[drop] // graph.num_items, keys[drop] % graph.num_items + graph.num_users
        adj[u, i] = adj[i, u] = 0
        x = model.embedding.weight
        ref = (x + adj @ x + adj @ (adj @ x)) / 3
    assert drop.sum() > 0
    assert torch.allclose(out, ref[got.sub.node[: got.sub.num_seeds]], atol=1e-6)


def test_sampled_layers_are_unbiased(small_graph, small_store):
    """Small fan-outs: over n draws the mean of the seeds' layer 1 (one layer) and of their final
    rows (two layers) must be within 5 standard errors (std / sqrt(n), measured per entry) of the
    full-graph rows. A z-score above 5 has probability ~6e-7 per entry, so the 2 x 64 entries fail
    by chance with probability ~1e-4, while the unscaled estimate (weights 1/sqrt(d_v d_u) without
    d_v / k) is off by many standard errors."""
    graph, n = small_graph, 500
    ctx = symmetric_graph(small_store)
    degs = ctx.deg[SEEDS]
    assert (degs > 2).sum() >= 4  # most seeds really are subsampled by fan-out 2
    gen = torch.Generator().manual_seed(0)
    for fanouts in ((2,), (2, 2)):
        model = _model(graph, len(fanouts))
        x = model.embedding.weight.detach()
        full = full_mean(graph, x, len(fanouts))[SEEDS]
        with torch.no_grad():
            draws = torch.stack([model(sample_subgraph(ctx, SEEDS, fanouts, generator=gen))[0]
                                 for _ in range(n)])  # [n, S, d]
        mean, se = draws.mean(0), draws.std(0) / n ** 0.5
        assert ((mean - full).abs() <= 5 * se + 1e-6).all(), ((mean - full).abs() / se).max()
        if fanouts == (2,):  # the check can fail: the unscaled estimate of layer 1 is biased
            layer1 = 2 * draws - x[SEEDS]  # out = (x + h1) / 2
            k = torch.where(degs > 2, 2.0 / degs, 1.0).unsqueeze(1)
            unscaled = (k * layer1).mean(0)
            assert ((unscaled - 2 * full + x[SEEDS]).abs() > 5 * se * 2).any()


def test_sampled_loss_gradient_reaches_the_table(small_graph, small_store, small_batch):
    graph, batch = small_graph, small_batch
    model = _model(graph, 2)
    out = model.loss(plan_batch(small_store, replace(model.config, fanouts=[3, 2]).plan(), batch))
    assert set(out) == {"loss", "bpr", "l2"} and torch.isfinite(out["loss"])
    w = model.embedding.weight
    seeds = torch.unique(torch.cat([batch.users, batch.pos + graph.num_users,
                                    batch.neg.flatten() + graph.num_users]))
    expected_l2 = (w[batch.users].pow(2).sum() + w[graph.num_users + batch.pos].pow(2).sum()
                   + w[graph.num_users + batch.neg].pow(2).sum()) / 2 / len(batch)
    assert torch.allclose(out["l2"], expected_l2)
    out["loss"].backward()
    touched = torch.nonzero(w.grad.abs().sum(1) > 0).flatten()
    assert torch.isin(seeds, touched).all()
    assert (~torch.isin(touched, seeds)).any()  # sampled neighbours get gradient too


def test_config_validation():
    with pytest.raises(ValueError, match="2 fanouts .* num_layers=3"):
        LightGCNConfig(num_layers=3, fanouts=[10, 5])
    with pytest.raises(ValueError, match="fanouts"):
        LightGCNConfig(num_layers=2, fanouts=[10, 0])
    for bad in (dict(embedding_dim=0), dict(reg_weight=-1.0), dict(reg_weight=float("nan")),
                dict(init_std=0.0), dict(num_layers=-1), dict(chunk_size=0), dict(init="he")):
        with pytest.raises(ValueError, match=f"LightGCNConfig: {next(iter(bad))}="):
            LightGCNConfig(**bad)


def test_xavier_init_is_per_table():
    # users and items share one [U + I, d] table; Xavier's bound is each table's own,
    # sqrt(6 / (rows + d)): 600 users -> 0.0958, 40 items -> 0.2402 at d = 64
    torch.manual_seed(0)
    w = LightGCN(600, 40, LightGCNConfig(init="xavier")).embedding.weight.detach()
    for rows, part in ((600, w[:600]), (40, w[600:])):
        bound = math.sqrt(6 / (rows + 64))
        assert part.abs().max() <= bound
        assert part.abs().max() > 0.95 * bound  # filled up to the bound (600 x 64 draws)
        assert abs(float(part.std()) - bound / math.sqrt(3)) < 0.1 * bound


def test_short_sampled_fit_beats_bpr_mf(world, fit_recall, above):
    # seeds 0-5 (benchmarks/quality_bounds.py): sampled [10, 5] / MF 1.335-1.593 (median 1.458),
    # sampled / full-graph 0.952-1.076 (median 0.977); exactness (fan-outs -1) is tested above
    sampled = fit_recall(world, LightGCNConfig(embedding_dim=32, num_layers=2, fanouts=[10, 5]))
    full = fit_recall(world, LightGCNConfig(embedding_dim=32, num_layers=2))
    mf = fit_recall(world, MFConfig(embedding_dim=32))
    above("sampled/mf", sampled / mf, 1.25)
    above("sampled/full", sampled / full, 0.9)
