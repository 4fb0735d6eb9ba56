"""VA-GNN: the gate and pooling by hand, the two views' graphs, the plan's vlogger triples,
gradients, ablations, a fit; the sampled plan (exact with fan-outs -1 and full pooling, unbiased
otherwise, deterministic under its generator)."""
import math
from dataclasses import fields, is_dataclass, replace

import pytest
import torch

from reelgraph.data.store import InMemoryStore
from reelgraph.data.synthetic import WorldConfig
from reelgraph.graph import BipartiteGraph, sym_norm_rows
from reelgraph.models import LightGCNConfig, MFConfig
from reelgraph.models.vagnn import VAGNN, VAGNNConfig
from reelgraph.samplers.batch import BPRBatch
from reelgraph.samplers.loader import plan_batch
from reelgraph.samplers.plans.vagnn import VAGNNPlan, derived_follows

U, I, P = 6, 8, 3
TRAIN = BipartiteGraph.from_edges(torch.tensor([0, 0, 1, 2, 3, 4, 5, 5, 1, 0]),
                                  torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 7, 6]), U, I)
MADE = BipartiteGraph.from_edges(torch.arange(I), torch.tensor([0, 0, 1, 1, 2, 2, 0, 1]), I, P)
FOLLOWS = BipartiteGraph.from_edges(torch.arange(U), torch.tensor([0, 1, 1, 2, 0, 2]), U, P)
BATCH = BPRBatch(torch.tensor([0, 1, 2, 5]), torch.tensor([0, 2, 3, 7]),
                 torch.tensor([[4], [5], [6], [0]]))
CPU = torch.device("cpu")


def _store(follows: BipartiteGraph | None = FOLLOWS) -> InMemoryStore:
    relations = {"item_creator": (MADE.rowptr, MADE.col)}
    if follows is not None:
        relations["user_creator"] = (follows.rowptr, follows.col)
    return InMemoryStore(TRAIN, relations=relations, num_creators=P)


def _config(**kw) -> VAGNNConfig:
    return VAGNNConfig(embedding_dim=4, num_layers=2, **kw)


def _model(store: InMemoryStore, config: VAGNNConfig) -> VAGNN:
    torch.manual_seed(0)  # the weights; every draw of a batch comes from its own generator
    return config.build(store)


def _dense(config: VAGNNConfig, store: InMemoryStore) -> tuple[torch.Tensor, torch.Tensor]:
    s = config.plan().static(store, CPU)
    return s.video_graph.adj.to_dense(), s.vlogger_graph.adj.to_dense()


def test_gate_and_gated_score_by_hand():
    store, cfg = _store(), _config()
    model = _model(store, cfg)
    with torch.no_grad():
        model.Q.copy_(torch.diag(torch.arange(1.0, 9.0)))
    v, p = torch.ones(1, 8) * 0.5, torch.arange(8.0).unsqueeze(0) / 10
    expected = 1 / (1 + math.exp(-sum(0.5 * (k + 1) * k / 10 for k in range(8)) / math.sqrt(8)))
    assert model.gate(v, p).item() == pytest.approx(expected, rel=1e-6)
    # embed's item vector reproduces y_uv = w e_u.e_v + (1 - w) e_u.e_p(v) (eq 16)
    static = cfg.plan().static(store, CPU)
    us, vs, ps = model.views(static)
    eu, ev, ep = torch.cat(us, -1), torch.cat(vs, -1), torch.cat(ps, -1)
    user_emb, item_emb = model.embed(static)
    u, i = 2, 5  # video 5 is vlogger 2's
    w = model.gate(ev[i:i + 1], ep[2:3])[0]
    score = w * eu[u] @ ev[i] + (1 - w) * eu[u] @ ep[2]
    assert torch.allclose(user_emb[u] @ item_emb[i], score, atol=1e-6)


def test_mean_pooling_and_walk_free_graphs():
    store, cfg = _store(), _config(q1=0.0, q2=0.0, follow_min_views=0)
    video, vlogger = _dense(cfg, store)
    # without meta-path endpoints the views are LightGCN's graphs of train and of follows
    assert torch.allclose(video, sym_norm_rows(*TRAIN.symmetric()).to_dense())
    assert torch.allclose(vlogger, sym_norm_rows(*FOLLOWS.symmetric()).to_dense())
    us, vs, ps = _model(store, cfg).views(cfg.plan().static(store, CPU))
    assert torch.allclose(ps[0][2], (vs[0][4] + vs[0][5]) / 2)  # vlogger 2 made videos 4, 5 (eq 4)
    assert torch.allclose(vs[1][7], (us[1][1] + us[1][5]) / 2)  # video 7 seen by users 1, 5 (eq 9)


def test_meta_path_edges_follow_the_paths():
    a, _ = _dense(_config(q1=1.0, q2=0.5, num_walks=8), _store())
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


def test_eq9_pools_a_video_over_its_users_and_meta_path_starts():
    """U_v of eq 9 holds the video's train users and the users whose user–vlogger–video
    meta-path ended at it: the video view's user–video block, transposed."""
    store, cfg = _store(), _config(q1=1.0, q2=0.0, num_walks=8)     # every walk ends at a video
    a, _ = _dense(cfg, store)
    in_view = (a[:U, U:] > 0).T                                          # [I, U]
    pool = cfg.plan().static(store, CPU).item_user_pool[0].to_dense()    # [I, U] mean pool
    assert torch.equal(pool > 0, in_view)
    train = torch.zeros(I, U, dtype=torch.bool)
    train[TRAIN.col, TRAIN.users()] = True
    assert (in_view & ~train).any()                                      # meta-path starts added
    rows = pool.sum(1)
    assert torch.allclose(rows[rows > 0], torch.ones(int((rows > 0).sum())))  # a mean
    none = _config(q1=0.0)                                               # no walks: train users
    assert torch.equal(none.plan().static(store, CPU).item_user_pool[0].to_dense() > 0, train)


def test_walks_are_drawn_once_from_walk_seed():
    store = _store()
    kw = dict(q1=1.0, q2=1.0, num_walks=2)
    same = _dense(_config(**kw), store)[0], _dense(_config(**kw), _store())[0]
    assert torch.equal(*same)  # rebuilt from a fresh store: the same walks
    other = [_dense(_config(walk_seed=s, **kw), store)[0] for s in range(1, 6)]
    assert any(not torch.equal(same[0], o) for o in other)


def test_derived_follows_count_views():
    # user 0 saw videos 0, 1 (vlogger 0) and 6 (vlogger 0): three views of vlogger 0
    ic = (MADE.rowptr, MADE.col)
    assert derived_follows(TRAIN, ic, P, min_views=3).keys().tolist() == [0 * P + 0]
    two = derived_follows(TRAIN, ic, P, min_views=2)  # user 1: videos 2, 7
    assert two.keys().tolist() == [0 * P + 0, 1 * P + 1]
    assert derived_follows(TRAIN, ic, P, min_views=1).num_edges == 7
    assert derived_follows(TRAIN, ic, P, min_views=0).num_edges == 0
    # without follows in the store the derived pairs are the whole user–vlogger graph
    f = VAGNNConfig(follow_min_views=2).plan().follows(_store(follows=None))
    assert f.keys().tolist() == two.keys().tolist()


def test_vlogger_triples_pair_a_follow_with_a_non_follow():
    store = _store()
    follows = VAGNNConfig().plan().follows(store)
    followed = torch.zeros(U, P, dtype=torch.bool)
    followed[follows.users(), follows.col] = True
    users = torch.arange(U).repeat(50)
    batch = plan_batch(store, VAGNNConfig().plan(), BPRBatch(users, torch.zeros_like(users),
                                                    torch.ones_like(users)[:, None]), seed=4)
    t = batch.vlogger
    assert torch.equal(t.users, users)  # every user here follows a vlogger: one triple per row
    assert followed[t.users, t.pos].all() and not followed[t.users, t.neg].any()
    for rows, ids, got in ((t.user_rows, batch.user_ids, t.users), (t.pos_rows, batch.vlogger_ids,
                                                                    t.pos),
                           (t.neg_rows, batch.vlogger_ids, t.neg)):
        assert torch.equal(ids[rows], got)
    assert len(set(t.neg[t.users == 0].tolist())) == 2  # user 0 follows 0 only: negatives 1, 2


@pytest.mark.parametrize("fanouts", [None, [2, 1]])
def test_every_parameter_gets_gradient(fanouts):
    store, cfg = _store(), _config(fanouts=fanouts, pool_fanout=1)
    model = _model(store, cfg)
    out = model.loss(plan_batch(store, cfg.plan(), BATCH))
    assert set(out) == {"loss", "video", "vlogger", "cl", "l2"}
    assert out["vlogger"] > 0 and out["cl"] > 0
    out["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("flag, width", [("contrastive", 8), ("vlogger_loss", 8),
                                         ("video_view", 4), ("vlogger_view", 4),
                                         ("vlogger_score", 8)])
def test_ablations(flag, width):
    store, cfg = _store(), _config(**{flag: False})
    model = _model(store, cfg)
    batch = plan_batch(store, cfg.plan(), BATCH)
    out = model.loss(batch)
    assert torch.isfinite(out["loss"])
    if flag in ("contrastive", "video_view", "vlogger_view"):
        assert out["cl"] == 0
    if flag == "vlogger_loss":
        assert out["vlogger"] == 0
    if flag in ("video_view", "vlogger_view"):  # the plan leaves the switched-off view out
        assert getattr(batch, flag) is None and getattr(batch.static, flag[:-5] + "_graph") is None
    u, i = model.embed(batch.static)
    assert u.shape == (U, width) and i.shape == (I, width)
    if flag == "vlogger_score":
        assert torch.equal(i, torch.cat(model.views(batch.static)[1], -1))


# as tests/lightning_modules/test_fit.py, with most views coming from followed vloggers
WORLD = WorldConfig(num_users=400, num_items=600, num_creators=60, num_communities=8,
                    popularity_exponent=2.0, avg_interactions=20, max_interactions=80, noise=0.05,
                    kg=False, visual_dim=0, acoustic_dim=0, textual_dim=0, chunk_users=400,
                    follow_rate=0.6)


def test_short_fit_beats_bpr_mf_and_lightgcn(make_world, fit_recall, above):
    planted_world = make_world(WORLD)
    # seeds 0-5 (benchmarks/quality_bounds.py): VA-GNN / MF 2.026-2.428 (median 2.275), VA-GNN /
    # LightGCN 1.401-1.678 (median 1.464)
    vagnn = fit_recall(planted_world, VAGNNConfig(embedding_dim=32, num_layers=2))
    mf = fit_recall(planted_world, MFConfig(embedding_dim=32))
    lightgcn = fit_recall(planted_world, LightGCNConfig(embedding_dim=32, num_layers=2))
    above("vagnn/mf", vagnn / mf, 1.8)
    above("vagnn/lightgcn", vagnn / lightgcn, 1.25)


# -- the sampled plan ------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [{}, {"q1": 1.0, "q2": 1.0, "num_walks": 4}, {"contrastive": False},
                                {"video_view": False}, {"vlogger_view": False},
                                {"vlogger_score": False}])
def test_full_fanouts_and_pooling_give_the_full_graph_loss(kw):
    store, cfg = _store(), _config(**kw)
    model = _model(store, cfg)
    sampled_cfg = replace(cfg, fanouts=[-1, -1])
    full = plan_batch(store, cfg.plan(), BATCH, seed=7)  # the same seed: the same vlogger triples
    sampled = plan_batch(store, sampled_cfg.plan(), BATCH, seed=7)
    views = [v for v in (sampled.video_view, sampled.vlogger_view) if v is not None]
    assert all(v.sub is not None for v in views)
    got, want = model.loss(sampled), model.loss(full)
    assert set(got) == set(want)
    for k in want:
        assert torch.allclose(got[k], want[k], atol=1e-6), (k, got[k], want[k])
    if not kw:
        assert want["vlogger"] > 0 and want["cl"] > 0  # every term is really compared
    # embed of the sampled plan's static is the full-graph embeddings (chunked)
    with torch.no_grad():
        small_chunks = replace(sampled_cfg, chunk_size=5).plan().static(store, CPU)
        for a, b in zip(model.embed(small_chunks), model.embed(full.static)):
            assert torch.allclose(a, b, atol=1e-6)


def test_excluded_targets_leave_the_video_view_only():
    store, cfg = _store(), _config(fanouts=[-1, -1], exclude_targets=True)
    batch = plan_batch(store, cfg.plan(), BATCH)
    targets = set(zip(BATCH.users.tolist(), (BATCH.pos + U).tolist()))
    video, vlogger = batch.video_view.sub, batch.vlogger_view.sub
    edges = set(zip(video.node[video.row].tolist(), video.node[video.col].tolist()))
    assert not edges & (targets | {(i, u) for u, i in targets})  # in neither direction
    assert edges & {(0, U + 1)}  # a non-target train edge stays
    kept = plan_batch(store, replace(cfg, exclude_targets=False).plan(), BATCH).vlogger_view.sub
    assert torch.equal(vlogger.row, kept.row) and torch.equal(vlogger.col, kept.col)


def _draws(store, cfg, model, n):
    """``n`` batches' per-view rows of the batch's users, videos and vloggers, scattered to
    global ids: sums ``[n, U|I|P, d]`` per (view, type) and whether each id was computed."""
    out, plan = {}, cfg.plan()
    ctx, static = plan.context(store), plan.static(store, CPU)  # what plan_batch builds per call
    for seed in range(n):
        batch = plan.sample(ctx, BATCH, torch.Generator().manual_seed(seed)).bind(static)
        with torch.no_grad():
            tables = model.batch_views(batch)
        for t, (ids, size) in enumerate(((batch.user_ids, U), (batch.item_ids, I),
                                         (batch.vlogger_ids, P))):
            for v, rows in enumerate(tables[t]):
                x = torch.full((size, rows.size(1)), float("nan"))
                x[ids] = rows
                out.setdefault((t, v), []).append(x)
    return {k: torch.stack(x) for k, x in out.items()}


def test_sampled_rows_and_pools_are_unbiased():
    """Fan-outs 1 and one pooled video per vlogger / user per video: over n batches the mean of
    every computed row (each view's users, videos and vloggers, pools of eq 4 and eq 9 included)
    must be within 5 standard errors of the full-graph row, as in test_lightgcn."""
    store, n = _store(), 300
    cfg = _config(fanouts=[1, 1], pool_fanout=1, q1=1.0, q2=1.0, num_walks=2)
    model = _model(store, cfg)
    with torch.no_grad():
        full = model.views(replace(cfg, fanouts=None).plan().static(store, CPU))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: extra threads only contend (as in fit_recall)
    try:
        draws = _draws(store, cfg, model, n)
    finally:
        torch.set_num_threads(threads)
    varied = 0
    for (t, v), x in draws.items():
        seen = ~torch.isnan(x[:, :, 0]).any(0)  # ids computed in every draw
        mean, se = x[:, seen].mean(0), x[:, seen].std(0) / n ** 0.5
        assert seen.sum() > 0
        assert ((mean - full[t][v][seen]).abs() <= 5 * se + 1e-5).all(), (t, v)
        varied += int((se > 1e-4).any())
    assert varied >= 4  # most tables really are estimates, not exact rows


def _tensors(x, prefix=""):
    """Every tensor of a (nested) batch dataclass, by field path."""
    if isinstance(x, torch.Tensor):
        return {prefix: x}
    if is_dataclass(x):
        return {k: t for f in fields(x) if f.name != "static"
                for k, t in _tensors(getattr(x, f.name), f"{prefix}.{f.name}").items()}
    return {}


def test_plan_sample_is_deterministic_and_uses_no_global_rng():
    store = _store()
    plan = _config(fanouts=[2, 1], pool_fanout=1, exclude_targets=True).plan()
    ctx = plan.context(store)

    def sample(seed: int, global_seed: int):
        torch.manual_seed(global_seed)
        return _tensors(plan.sample(ctx, BATCH, torch.Generator().manual_seed(seed)))

    a, b = sample(0, 1), sample(0, 2)
    assert a.keys() == b.keys() and ".video_view.sub.node" in a
    assert all(torch.equal(a[k], b[k]) for k in a)
    others = [sample(s, 1) for s in range(1, 6)]
    assert any(not torch.equal(a[k], o[k]) for o in others for k in a if a[k].shape == o[k].shape)


def test_config_validation_and_plan():
    with pytest.raises(ValueError, match="VAGNNConfig: 1 fanouts .* num_layers=2"):
        VAGNNConfig(num_layers=2, fanouts=[10])
    with pytest.raises(ValueError, match="pool_fanout=0"):
        VAGNNConfig(num_layers=2, fanouts=[10, 5], pool_fanout=0)
    with pytest.raises(ValueError, match="at least one of the views"):
        VAGNNConfig(video_view=False, vlogger_view=False)
    for bad in (dict(tau=0.0), dict(q1=1.5), dict(q2=-0.1), dict(num_walks=-1),
                dict(walk_length=1.5), dict(follow_min_views=-1), dict(vlogger_weight=-1.0),
                dict(cl_weight=float("nan")), dict(embedding_dim=0), dict(reg_weight=-1.0)):
        with pytest.raises(ValueError, match=f"VAGNNConfig: {next(iter(bad))}="):
            VAGNNConfig(**bad)
    cfg = VAGNNConfig(num_layers=2, fanouts=[3, 3], pool_fanout=4, walk_seed=9, video_view=False)
    with pytest.raises(AttributeError):
        cfg.tau = 1.0  # frozen
    assert cfg.plan() == VAGNNPlan(fanouts=(3, 3), exclude_targets=False, chunk_size=65536,
                                   pool_fanout=4, num_walks=1, walk_length=1, q1=0.5, q2=0.5,
                                   walk_seed=9, follow_min_views=3, video_view=False,
                                   vlogger_view=True)
    assert VAGNNConfig().plan().fanouts is None


def test_short_sampled_fit_beats_bpr_mf(make_world, fit_recall, above):
    # seeds 0-5 (benchmarks/quality_bounds.py): sampled (fanouts [10, 5], pool_fanout 10) / MF
    # 2.014-2.324 (median 2.283), sampled / full-graph 0.952-1.010 (median 0.999)
    planted_world = make_world(WORLD)
    cfg = VAGNNConfig(embedding_dim=32, num_layers=2)
    sampled = fit_recall(planted_world, replace(cfg, fanouts=[10, 5], pool_fanout=10))
    full = fit_recall(planted_world, cfg)
    mf = fit_recall(planted_world, MFConfig(embedding_dim=32))
    above("sampled/mf", sampled / mf, 1.8)
    above("sampled/full", sampled / full, 0.9)
