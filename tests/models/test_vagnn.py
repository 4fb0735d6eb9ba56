"""VA-GNN: the gate and pooling by hand, the two views' graphs, gradients, ablations, a fit."""
import math

import pytest
import torch

from reelgraph.data.synthetic import WorldConfig
from reelgraph.graph import BipartiteGraph
from reelgraph.models import LightGCNConfig, MFConfig
from reelgraph.models.lightgcn import sym_norm_adjacency
from reelgraph.models.vagnn import VAGNN, VAGNNConfig, derived_follows
from reelgraph.samplers.batch import BPRBatch

U, I, P = 6, 8, 3
TRAIN = BipartiteGraph.from_edges(torch.tensor([0, 0, 1, 2, 3, 4, 5, 5, 1, 0]),
                                  torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 7, 6]), U, I)
MADE = BipartiteGraph.from_edges(torch.arange(I), torch.tensor([0, 0, 1, 1, 2, 2, 0, 1]), I, P)
FOLLOWS = BipartiteGraph.from_edges(torch.arange(U), torch.tensor([0, 1, 1, 2, 0, 2]), U, P)
BATCH = BPRBatch(torch.tensor([0, 1, 2, 5]), torch.tensor([0, 2, 3, 7]),
                 torch.tensor([[4], [5], [6], [0]]))


def _model(**kw) -> VAGNN:
    torch.manual_seed(0)
    return VAGNN(U, I, P, (MADE.rowptr, MADE.col), (FOLLOWS.rowptr, FOLLOWS.col),
                 VAGNNConfig(embedding_dim=4, num_layers=2, **kw))


def test_gate_and_gated_score_by_hand():
    model = _model()
    with torch.no_grad():
        model.Q.copy_(torch.diag(torch.arange(1.0, 9.0)))
    v, p = torch.ones(1, 8) * 0.5, torch.arange(8.0).unsqueeze(0) / 10
    expected = 1 / (1 + math.exp(-sum(0.5 * (k + 1) * k / 10 for k in range(8)) / math.sqrt(8)))
    assert model.gate(v, p).item() == pytest.approx(expected, rel=1e-6)
    # embed's item vector reproduces y_uv = w e_u.e_v + (1 - w) e_u.e_p(v) (eq 16)
    state = model.prepare(TRAIN)
    us, vs, ps = model.views(state)
    eu, ev, ep = torch.cat(us, -1), torch.cat(vs, -1), torch.cat(ps, -1)
    user_emb, item_emb = model.embed(state)
    u, i = 2, 5  # video 5 is vlogger 2's
    w = model.gate(ev[i:i + 1], ep[2:3])[0]
    score = w * eu[u] @ ev[i] + (1 - w) * eu[u] @ ep[2]
    assert torch.allclose(user_emb[u] @ item_emb[i], score, atol=1e-6)


def test_mean_pooling_and_walk_free_graphs():
    model = _model(q1=0.0, q2=0.0, follow_min_views=0)
    state = model.prepare(TRAIN)
    # without meta-path endpoints the views are LightGCN's graphs of train and of follows
    assert torch.allclose(state.video_adj.to_dense(), sym_norm_adjacency(TRAIN).to_dense())
    assert torch.allclose(state.vlogger_adj.to_dense(), sym_norm_adjacency(FOLLOWS).to_dense())
    us, vs, ps = model.views(state)
    assert torch.allclose(ps[0][2], (vs[0][4] + vs[0][5]) / 2)  # vlogger 2 made videos 4, 5 (eq 4)
    assert torch.allclose(vs[1][7], (us[1][1] + us[1][5]) / 2)  # video 7 seen by users 1, 5 (eq 9)


def test_meta_path_edges_follow_the_paths():
    state = _model(q1=1.0, q2=1.0, num_walks=4).prepare(TRAIN)
    a = state.video_adj.to_dense()
    made = torch.zeros(P, I)
    made[MADE.col, MADE.users()] = 1
    follow = torch.zeros(U, P)
    follow[FOLLOWS.users(), FOLLOWS.col] = 1
    train = torch.zeros(U, I)
    train[TRAIN.users(), TRAIN.col] = 1
    ui = (a[:U, U:] > 0).float()
    assert torch.all(ui <= ((train + follow @ made) > 0).float())  # interaction or u - p - v
    assert (ui > train).any()  # some u - p - v endpoints are new edges
    uu = (a[:U, :U] > 0).float()
    assert (uu > 0).any() and torch.all(uu <= ((follow @ follow.t()) > 0).float())


def test_derived_follows_count_views():
    # user 0 saw videos 0, 1 (vlogger 0) and 6 (vlogger 0): three views of vlogger 0
    got = derived_follows(TRAIN, (MADE.rowptr, MADE.col), P, min_views=3)
    assert got.keys().tolist() == [0 * P + 0]
    two = derived_follows(TRAIN, (MADE.rowptr, MADE.col), P, min_views=2)  # user 1: videos 2, 7
    assert two.keys().tolist() == [0 * P + 0, 1 * P + 1]
    assert derived_follows(TRAIN, (MADE.rowptr, MADE.col), P, min_views=1).num_edges == 7


def test_every_parameter_gets_gradient():
    model = _model()
    out = model.loss(BATCH, model.prepare(TRAIN))
    assert set(out) == {"loss", "video", "vlogger", "cl", "l2"}
    assert out["vlogger"] > 0 and out["cl"] > 0
    out["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("flag, width", [("contrastive", 8), ("vlogger_loss", 8),
                                         ("video_view", 4), ("vlogger_view", 4),
                                         ("vlogger_score", 8)])
def test_ablations(flag, width):
    model = _model(**{flag: False})
    state = model.prepare(TRAIN)
    out = model.loss(BATCH, state)
    assert torch.isfinite(out["loss"])
    if flag in ("contrastive", "video_view", "vlogger_view"):
        assert out["cl"] == 0
    if flag == "vlogger_loss":
        assert out["vlogger"] == 0
    u, i = model.embed(state)
    assert u.shape == (U, width) and i.shape == (I, width)
    if flag == "vlogger_score":
        assert torch.equal(i, torch.cat(model.views(state)[1], -1))


# as tests/lightning_modules/test_fit.py, with most views coming from followed vloggers
WORLD = WorldConfig(num_users=400, num_items=600, num_creators=60, num_communities=8,
                    popularity_exponent=2.0, avg_interactions=20, max_interactions=80, noise=0.05,
                    kg=False, visual_dim=0, acoustic_dim=0, textual_dim=0, chunk_users=400,
                    follow_rate=0.6)

# 2 users, 2 items: u0-i0, u0-i1, u1-i1 (as in test_lightgcn).
GRAPH = BipartiteGraph.from_edges(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]), 2, 2)


def test_short_fit_beats_bpr_mf_and_lightgcn(make_world, fit_recall):
    planted_world = make_world(WORLD)
    vagnn = fit_recall(planted_world, VAGNNConfig(embedding_dim=32, num_layers=2))
    mf = fit_recall(planted_world, MFConfig(embedding_dim=32))
    lightgcn = fit_recall(planted_world, LightGCNConfig(embedding_dim=32, num_layers=2))
    assert vagnn > 1.1 * mf and vagnn > lightgcn, (vagnn, mf, lightgcn)
