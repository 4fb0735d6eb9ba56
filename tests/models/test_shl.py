import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from reelgraph.data.store import InMemoryStore
from reelgraph.errors import ConfigError
from reelgraph.graph import BipartiteGraph
from reelgraph.models import MFConfig
from reelgraph.models.shl import SHL, SHLConfig
from reelgraph.models.shl_hypergraph import LowRankHypergraph
from reelgraph.models.shl_local import GatedAttention
from reelgraph.samplers.batch import BPRBatch
from reelgraph.samplers.loader import plan_batch

CPU = torch.device("cpu")


# -- the equations by hand ---------------------------------------------------------------------
def _three_nodes() -> tuple[GatedAttention, tuple]:
    """Centre node 0 with neighbours 1 and 2 (degrees 1 and 4); W_h = 2I, W_t = W^N = I."""
    layer = GatedAttention(2, negative_slope=0.2)
    with torch.no_grad():
        layer.query.weight.copy_(2 * torch.eye(2))
        layer.key.weight.copy_(torch.eye(2))
        layer.message.weight.copy_(torch.eye(2))
    e = torch.tensor([[1.0, 0.0], [1.0, -1.0], [0.0, -2.0]])
    row, col = torch.tensor([0, 0]), torch.tensor([1, 2])
    scale = torch.tensor([1.0, 4.0]).sqrt()  # sqrt(d_t)
    return layer, (e[:1], e, row, col, scale)


def test_gate_and_attention_by_hand():
    layer, args = _three_nodes()
    gate, attn = layer.weights(*args)
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    # eq. 2: e_0.e_1 = 1 over sqrt(1); e_0.e_2 = 0 over sqrt(4)
    assert torch.allclose(gate, torch.tensor([sig(1.0), 0.5]))
    # eq. 3: (2 e_0)^T tanh(e_1) = 2 tanh(1); (2 e_0)^T tanh(e_2) = 0; eq. 4 normalises them
    a1 = math.exp(2 * math.tanh(1)) / (math.exp(2 * math.tanh(1)) + 1)
    assert torch.allclose(attn, torch.tensor([a1, 1 - a1]))
    # eq. 1: LeakyReLU(sum_t f_a f_g e_t), slope 0.2 on the negative coordinate
    s = a1 * sig(1.0) * torch.tensor([1.0, -1.0]) + (1 - a1) * 0.5 * torch.tensor([0.0, -2.0])
    want = torch.where(s > 0, s, 0.2 * s)
    assert s[1] < 0  # the leaky side is really exercised
    assert torch.allclose(layer(*args), want.unsqueeze(0))


def test_isolated_centre_gets_zero():
    layer, (h_dst, h_src, row, col, scale) = _three_nodes()
    out = layer(torch.cat([h_dst, h_dst]), h_src, row, col, scale)  # row 1 has no edges
    assert torch.equal(out[1], torch.zeros(2))


def test_low_rank_hypergraph_by_hand():
    hyper = LowRankHypergraph(2, 1, negative_slope=0.5)
    with torch.no_grad():
        hyper.weight.copy_(torch.tensor([[1.0], [0.0]]))  # H = X W: the first coordinate
    x = torch.tensor([[1.0, 2.0], [-1.0, 4.0], [2.0, -2.0]])
    h = torch.tensor([[1.0], [-1.0], [2.0]])
    lam = (h.t() @ x) / 3                                  # [[6, -6]] / 3 = [[2, -2]]
    lam = torch.where(lam > 0, lam, 0.5 * lam)             # [[2, -1]]
    want = h @ lam
    want = torch.where(want > 0, want, 0.5 * want)
    assert torch.allclose(hyper(x), want)
    assert torch.allclose(hyper(x, torch.tensor([2, 0])), want[[2, 0]])


# -- the model on a tiny store -----------------------------------------------------------------
def _tiny_store(features: bool = True) -> InMemoryStore:
    gen = torch.Generator().manual_seed(0)
    users = torch.arange(6).repeat_interleave(3)
    items = torch.tensor([0, 1, 2, 1, 2, 3, 3, 4, 5, 4, 5, 6, 6, 7, 0, 7, 0, 1])
    feats = {"visual": torch.randn(8, 5, generator=gen),
             "textual": torch.randn(8, 3, generator=gen)} if features else None
    return InMemoryStore(BipartiteGraph.from_edges(users, items, 6, 8), features=feats)


TRIPLES = BPRBatch(torch.tensor([0, 3, 5]), torch.tensor([1, 4, 7]),
                   torch.tensor([[5, 6], [0, 1], [2, 3]]))


def _tiny(store=None, **kw) -> tuple[SHL, InMemoryStore]:
    store = store or _tiny_store()
    torch.manual_seed(0)
    return SHLConfig(embedding_dim=8, num_hyperedges=4, **kw).build(store), store


def _loss(model, store, config=None, triples=TRIPLES):
    return model.loss(plan_batch(store, (config or model.config).plan(), triples))


def test_eq5_to_7_and_fusion_by_hand():
    """The forward pass is eqs. 5–7 of the layer's e_N and the hypergraph, then the gate."""
    model, store = _tiny()
    static = model.config.plan().static(store, CPU)
    enc = model(static.graph, static.deg)
    R = lambda v: F.leaky_relu(v, 0.2)  # noqa: E731
    parts = []
    for j in range(2):
        x = model.modality_rows(j, None)
        e_n = model.local(j, static.graph, x, static.deg)
        anchor = R(model.anchor[j](x)) + model.embedding.weight                     # eq. 5
        local = R(model.local_out[j](e_n)) + anchor                                 # eq. 6
        glob = torch.cat([model.user_hyper[j](anchor[:6]), model.item_hyper[j](anchor[6:])])
        assert torch.allclose(enc.local[j], local) and torch.allclose(enc.glob[j], glob)
        parts.append(R(local + glob))                                               # eq. 7
    gate = torch.sigmoid(model.fusion(torch.cat(parts, 1)))
    assert torch.allclose(enc.out, torch.cat([gate[:, :1] * parts[0], gate[:, 1:] * parts[1]], 1))


def test_gate_divides_by_the_neighbours_train_degree():
    model, store = _tiny()
    static = model.config.plan().static(store, CPU)
    col = torch.tensor([6, 7, 0])  # items 0, 1 and user 0, each of train degree 3
    deg = static.deg.clone()
    deg[7] = 4                      # item 1's degree, as the caller passes it
    assert torch.equal(model.gate_scale(static.graph, col, deg), torch.tensor([3, 4, 3]).sqrt())
    batch = plan_batch(store, replace(model.config, fanouts=[2]).plan(), TRIPLES)
    sub = batch.sub  # local ids: the scale reads the global node's degree
    got = model.gate_scale(sub, sub.col, static.deg)
    assert torch.equal(got, static.deg[sub.node[sub.col]].float().sqrt())
    dim, _ = _tiny(gate_scale="dim")
    assert torch.equal(dim.gate_scale(static.graph, col, deg), torch.tensor(8.0).sqrt())


@pytest.mark.parametrize("kw", [{}, dict(num_layers=2), dict(gate_scale="dim"),
                                dict(fanouts=[2]), dict(num_layers=2, fanouts=[2, 1]),
                                dict(modalities=[])])
def test_every_parameter_gets_a_gradient_that_changes_the_loss(kw):
    model, store = _tiny(**kw)
    model.double()  # the loss differences below are finer than float32's resolution
    out = _loss(model, store)
    assert set(out) == {"loss", "bpr", "ssl", "l2"} and all(v > 0 for v in out.values())
    out["loss"].backward()
    for name, p in model.named_parameters():
        if p.numel() == 0:  # the features-off table of a model with features
            continue
        assert p.grad is not None and p.grad.abs().sum() > 0, name
        with torch.no_grad():  # a step against the gradient lowers the loss
            saved = p.clone()
            p.sub_(1e-4 * p.grad / p.grad.norm())
            lower = _loss(model, store)["loss"]
            p.copy_(saved)
        assert lower < out["loss"], name


def test_full_fanouts_give_the_full_graph_loss_and_embed():
    for kw in ({}, dict(num_layers=2), dict(modalities=["textual"])):
        model, store = _tiny(**kw)
        exact = replace(model.config, fanouts=[-1] * model.config.num_layers)
        got, want = _loss(model, store, exact), _loss(model, store)
        for k in want:
            assert torch.allclose(got[k], want[k], atol=1e-6), (kw, k)
        full = model.embed(model.config.plan().static(store, CPU))
        chunked = model.embed(replace(exact, chunk_size=5).plan().static(store, CPU))
        assert full[0].shape == (6, 8 * len(model.modality_names)) and full[1].shape[0] == 8
        with torch.no_grad():  # evaluation: the local hops go 5 centre rows at a time (CSR), or
            pieces = model.embed(replace(exact, chunk_size=5).plan().static(store, CPU))
            operator = model.embed(model.config.plan().static(store, CPU))  # one chunk (operator)
        for a, b, c, e in zip(full, chunked, pieces, operator):
            for other in (b, c, e):
                assert torch.allclose(a, other, atol=1e-6)


def test_loss_scores_the_embeddings_embed_returns():
    model, store = _tiny(ssl_weight=0.0, reg_weight=0.0)
    u, i = model.embed(model.config.plan().static(store, CPU))
    items = torch.cat([TRIPLES.pos.unsqueeze(1), TRIPLES.neg], 1)
    score = torch.einsum("bd,bkd->bk", u[TRIPLES.users], i[items])
    want = F.softplus(score[:, 1:] - score[:, :1]).mean()
    assert torch.allclose(_loss(model, store)["loss"], want)


def test_features_are_data_of_any_dimension_and_scale():
    model, store = _tiny()
    assert model.feature_0.shape == (8, 5) and model.feature_1.shape == (8, 3)
    assert "feature_0" not in model.state_dict()  # re-read from the store when built
    scaled = InMemoryStore(store.graph("train"), features={
        m: 10 * store.feature(m) for m in store.modalities})
    other, _ = _tiny(scaled)
    assert torch.allclose(_loss(model, store)["loss"], _loss(other, scaled)["loss"])


def test_features_off():
    for store, kw in ((_tiny_store(features=False), {}), (_tiny_store(), dict(modalities=[]))):
        model, _ = _tiny(store, **kw)
        assert model.modality_names == ["id"] and model.item_table.shape == (8, 8)
        assert not list(model.project)
        assert torch.isfinite(_loss(model, store)["loss"])


def test_config_validation():
    for kw, match in ((dict(ssl_weight=-1), "SHLConfig: ssl_weight=-1; must be"),
                      (dict(tau=0), "SHLConfig: tau=0; must be"),
                      (dict(num_hyperedges=0), "SHLConfig: num_hyperedges=0; must be"),
                      (dict(num_hyperedges=2.5), "SHLConfig: num_hyperedges=2.5"),
                      (dict(negative_slope=1.0), "SHLConfig: negative_slope=1.0; must be in"),
                      (dict(num_layers=0), "SHLConfig: num_layers=0; must be an int >= 1"),
                      (dict(gate_scale="x"), "SHLConfig: gate_scale='x'; choose from"),
                      (dict(fanouts=[2, 2]), "SHLConfig: 2 fanouts .* num_layers=1"),
                      (dict(modalities=["a", "a"]), "repeats a name"),
                      (dict(embedding_dim=0), "SHLConfig: embedding_dim=0")):
        with pytest.raises(ConfigError, match=match):
            SHLConfig(**kw)
    with pytest.raises(ConfigError, match=r"modalities \['audio'\] not in the store"):
        SHLConfig(modalities=["audio"]).build(_tiny_store())
    plan = SHLConfig(fanouts=[3]).plan()
    assert plan.fanouts == (3,) and not plan.self_loops and not plan.exclude_targets


# -- quality -----------------------------------------------------------------------------------
def test_short_fit_beats_bpr_mf(feature_world, fit_recall, above):
    """The planted world whose visual feature is 90% its video's topic; both models trained the
    same way. Seeds 0-5 (``--fit-seed k --fit-record``, as benchmarks/quality_bounds.py):
    SHL / MF 1.171-1.331 (median 1.18) at ssl_weight 1e-3; at 0.1, 0.80-1.16 (module doc)."""
    shl = fit_recall(feature_world, SHLConfig(embedding_dim=32))
    mf = fit_recall(feature_world, MFConfig(embedding_dim=32))
    above("shl/mf", shl / mf, 1.1)


def test_short_sampled_fit_beats_bpr_mf(feature_world, fit_recall, above):
    # seeds 0-5 (benchmarks/quality_bounds.py): sampled (fanouts [10]) / MF 1.094-1.412
    # (median 1.18)
    sampled = fit_recall(feature_world, SHLConfig(embedding_dim=32, fanouts=[10]))
    mf = fit_recall(feature_world, MFConfig(embedding_dim=32))
    above("sampled/mf", sampled / mf, 1.05)
