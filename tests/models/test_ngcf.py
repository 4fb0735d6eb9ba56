"""NGCF: one propagation step by hand, gradients to every weight, a short fit beats BPR-MF; the
same for the sampled mini-batch mode (exact with fan-outs -1)."""
import math
from dataclasses import replace

import pytest
import torch

from reelgraph.data.store import InMemoryStore
from reelgraph.data.synthetic import WorldConfig
from reelgraph.graph import BipartiteGraph, FullGraph, sym_norm_rows, sym_spmm
from reelgraph.models import MFConfig
from reelgraph.models.ngcf import NGCF, NGCFConfig, ngcf_update
from reelgraph.samplers.batch import BPRBatch
from reelgraph.samplers.loader import plan_batch
from reelgraph.samplers.plans.gcn import sample_subgraph, symmetric_graph

# as tests/lightning_modules/test_fit.py, with 40 topics: local structure for propagation to find
WORLD = WorldConfig(num_users=400, num_items=600, num_creators=60, num_communities=40,
                    popularity_exponent=2.0, avg_interactions=20, max_interactions=80, noise=0.05,
                    kg=False, visual_dim=0, acoustic_dim=0, textual_dim=0, chunk_users=400)

# 2 users, 2 items: u0-i0, u0-i1, u1-i1 (as in test_lightgcn).
GRAPH = BipartiteGraph.from_edges(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]), 2, 2)


def test_one_layer_by_hand():
    x = torch.tensor([[1.0], [2.0], [3.0], [-4.0]])  # u0, u1, i0, i1
    w1, w2 = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    with torch.no_grad():
        w1.weight.fill_(0.5), w1.bias.fill_(0.1), w2.weight.fill_(2.0), w2.bias.fill_(-0.2)
    r2 = 1 / math.sqrt(2)
    side = torch.tensor([[3 * r2 - 4 * 0.5], [-4 * r2], [1 * r2], [1 * 0.5 + 2 * r2]])  # L x
    pre = 0.5 * (side + x) + 0.1 + 2.0 * (side * x) - 0.2
    expected = torch.where(pre > 0, pre, 0.2 * pre)
    got = ngcf_update(sym_spmm(sym_norm_rows(*GRAPH.symmetric()), x), x, w1, w2, 0.2)
    assert torch.allclose(got, expected)
    assert (expected < 0).any()  # the LeakyReLU's negative branch is exercised


def test_embed_concatenates_normalised_layers():
    torch.manual_seed(0)
    model = NGCF(2, 2, NGCFConfig(embedding_dim=4, num_layers=2)).eval()
    static = model.config.plan().static(InMemoryStore(GRAPH), torch.device("cpu"))
    with torch.no_grad():
        u, i = model.embed(static)
        assert u.shape == (2, 12) and i.shape == (2, 12)
        assert torch.equal(u[:, :4], model.embedding.weight[:2])
        assert torch.allclose(u[:, 4:8].norm(dim=-1), torch.ones(2))
        assert torch.equal(model.embed(static)[0], u)  # no dropout in eval


def test_every_parameter_gets_gradient():
    torch.manual_seed(0)
    model = NGCF(2, 2, NGCFConfig(embedding_dim=8, num_layers=2))
    batch = BPRBatch(torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([[1], [0]]))
    out = model.loss(plan_batch(InMemoryStore(GRAPH), model.config.plan(), batch))
    assert set(out) == {"loss", "bpr", "l2"}
    out["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_short_fit_beats_bpr_mf(make_world, fit_recall, above):
    planted_world = make_world(WORLD)
    # seeds 0-5 (benchmarks/quality_bounds.py): NGCF / MF 1.097-1.303 (median 1.257)
    ngcf = fit_recall(planted_world, NGCFConfig(embedding_dim=32, num_layers=2))
    mf = fit_recall(planted_world, MFConfig(embedding_dim=32))
    above("ngcf/mf", ngcf / mf, 1.05)


# -- sampled mini-batch mode (as in test_lightgcn) --------------------------------------------
SEEDS = torch.tensor([0, 3, 7, 29, 30, 41, 55, 69])  # small_graph: users 0..29, items 30..69


def _model(graph, num_layers, **kw) -> NGCF:
    torch.manual_seed(0)
    return NGCF(graph.num_users, graph.num_items,
                NGCFConfig(embedding_dim=8, num_layers=num_layers, **kw)).eval()  # no dropout


@pytest.mark.parametrize("normalize_layers", [True, False])
@pytest.mark.parametrize("fanouts", [[-1], [-1, -1], [-1, -1, -1]])
def test_full_fanouts_give_the_full_graph_rows(fanouts, normalize_layers, small_graph, small_store):
    model = _model(small_graph, len(fanouts), normalize_layers=normalize_layers)
    full = model.config.plan().static(small_store, torch.device("cpu"))
    with torch.no_grad():
        out, h0 = model(sample_subgraph(symmetric_graph(small_store), SEEDS, tuple(fanouts)))
        ref = torch.cat(model.embed(full))  # [U + I, d (L + 1)]
    assert out.shape == (len(SEEDS), 8 * (len(fanouts) + 1))
    assert torch.allclose(out, ref[SEEDS], atol=1e-5)
    assert torch.equal(h0, model.embedding.weight[SEEDS])
    chunked = replace(model.config, fanouts=fanouts, chunk_size=7).plan()  # embed: full, chunked
    with torch.no_grad():
        got = torch.cat(model.embed(chunked.static(small_store, torch.device("cpu"))))
    assert torch.allclose(got, ref, atol=1e-5)


def test_full_fanouts_give_the_full_graph_loss(small_graph, small_store, small_batch):
    model = _model(small_graph, 2)
    got = model.loss(plan_batch(small_store, replace(model.config, fanouts=[-1, -1]).plan(),
                                small_batch))
    ref = model.loss(plan_batch(small_store, model.config.plan(), small_batch))
    for key in ("loss", "bpr", "l2"):
        assert torch.allclose(got[key], ref[key], atol=1e-6), key


def test_sampled_gradient_reaches_every_parameter(small_graph, small_store, small_batch):
    model = _model(small_graph, 2, fanouts=[3, 2]).train()
    out = model.loss(plan_batch(small_store, model.config.plan(), small_batch))
    assert set(out) == {"loss", "bpr", "l2"} and torch.isfinite(out["loss"])
    out["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_sampled_config_validation():
    with pytest.raises(ValueError, match="NGCFConfig: 2 fanouts .* num_layers=3"):
        NGCFConfig(num_layers=3, fanouts=[10, 5])
    with pytest.raises(ValueError, match="fanouts"):
        NGCFConfig(num_layers=2, fanouts=[-2, 5])
    assert NGCFConfig(num_layers=2, fanouts=[10, -1]).plan().fanouts == (10, -1)


def test_short_sampled_fit_beats_bpr_mf(make_world, fit_recall, above):
    # seeds 0-5 (benchmarks/quality_bounds.py): sampled NGCF [10, 5] / MF 1.121-1.304 (median
    # 1.235), sampled / full-graph 0.920-1.054 (median 1.002)
    planted_world = make_world(WORLD)
    sampled = fit_recall(planted_world, NGCFConfig(embedding_dim=32, num_layers=2, fanouts=[10, 5]))
    full = fit_recall(planted_world, NGCFConfig(embedding_dim=32, num_layers=2))
    mf = fit_recall(planted_world, MFConfig(embedding_dim=32))
    above("sampled/mf", sampled / mf, 1.05)
    above("sampled/full", sampled / full, 0.85)
