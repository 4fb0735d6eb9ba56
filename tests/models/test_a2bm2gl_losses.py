"""A²BM²GL's recommendation losses (the paper's Table 4: WR, BPR, InfoBPR, the adaptive loss) and
the margin hinge, on hand-computed examples and against dense ``[users, items]`` references."""
import math
from dataclasses import replace

import pytest
import torch

from reelgraph.data.store import InMemoryStore
from reelgraph.models.a2bm2gl import A2BM2GLConfig
from reelgraph.models.a2bm2gl_losses import (adaptive_loss, full_adaptive_loss, full_wr_loss,
                                             info_bpr_loss, margin_loss, wr_loss)
from reelgraph.models.base import bpr_loss
from reelgraph.samplers.loader import plan_batch

LN3 = math.log(3.0)


def test_adaptive_and_margin_loss_by_hand():
    pos, neg = torch.tensor([2.0, 0.0]), torch.tensor([[1.0, 3.0], [0.0, 0.0]])
    upper, lower = torch.tensor([3.0, 1.0]), torch.tensor([0.0, 0.5])
    rec, margin = adaptive_loss(pos, neg, upper, lower, margin=1.0)
    # positives: (3-2)^2, (1-0)^2 -> 1; negatives: 1, 9, 0.25, 0.25 -> 2.625
    assert math.isclose(rec.item(), 1.0 + 2.625, rel_tol=1e-6)
    assert math.isclose(margin.item(), (0.0 + 0.5) / 2, rel_tol=1e-6)  # gaps 3 and 0.5


# -- eq. 8 without sampling ---------------------------------------------------------------------
# 4 users x 7 items, d = 3. u0 saw items 0, 2; u1 item 5; u2 nothing; u3 every item.
SEEN = torch.tensor([[1, 0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1, 0], [0] * 7, [1] * 7]).bool()
USER = torch.tensor([[1.0, 0.0, 0.5], [0.0, 2.0, -1.0], [0.5, 0.5, 0.5], [-1.0, 1.0, 0.0]])
ITEM = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [2.0, 0.0, 0.0],
                     [0.0, -1.0, 0.5], [0.5, 0.5, 0.5], [-1.0, 0.0, 2.0]])
UPPER, LOWER = torch.tensor([2.0, 1.5, 1.0, 0.5]), torch.tensor([0.0, -0.5, 0.25, -1.0])


def _dense_full_loss(user, item, seen, upper, lower, pos_weight=1.0, neg_weight=1.0):
    """Eq. 8 with eq. 7's weights on the dense ``[B, I]`` score matrix (``pos_weight``: a
    number or ``[B, I]``; ``neg_weight``: a number or ``[B]``)."""
    s = user @ item.T
    up = seen * (upper.unsqueeze(1) - s) ** 2                                # [B, I]
    up = (pos_weight * up).sum(1) if torch.is_tensor(pos_weight) else pos_weight * up.sum(1)
    return up + neg_weight * (~seen * (s - lower.unsqueeze(1)) ** 2).sum(1)


def _dense_wr_loss(user, item, seen, pos_weight=1.0, neg_weight=1.0):
    """Eq. 7 on the dense ``[B, I]`` matrix of ``y = σ(s)`` (weights as above)."""
    y = torch.sigmoid(user @ item.T)
    return (pos_weight * seen * (1 - y) ** 2).sum(1) + neg_weight * (~seen * y ** 2).sum(1)


def _full_inputs(requires_grad=False):
    ts = [t.double().clone().requires_grad_(requires_grad) for t in (USER, ITEM, UPPER, LOWER)]
    index, pos = SEEN.nonzero(as_tuple=True)
    return ts, index, pos


def test_full_adaptive_loss_by_hand():
    """u0: scores 1, 0.5, 1.5, 2, 0.25, 0.75, 0 with B_up 2, B_low 0; positives items 0, 2."""
    (user, item, upper, lower), index, pos = _full_inputs()
    got = full_adaptive_loss(user, item, index, pos, upper, lower)
    assert math.isclose(got[0].item(), (1 + 0.25) + (0.25 + 4 + 0.0625 + 0.5625 + 0), rel_tol=1e-9)


@pytest.mark.parametrize("pos_weight, neg_weight", [(1.0, 1.0), (0.7, 0.3), (1.0, 0.0)])
@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, 100])
def test_full_adaptive_loss_matches_dense_reference(pos_weight, neg_weight, chunk_size):
    (user, item, upper, lower), index, pos = _full_inputs()
    got = full_adaptive_loss(user, item, index, pos, upper, lower, pos_weight=pos_weight,
                             neg_weight=neg_weight, chunk_size=chunk_size)
    want = _dense_full_loss(user, item, SEEN, upper, lower, pos_weight, neg_weight)
    assert torch.allclose(got, want, rtol=0, atol=1e-6), (got, want)
    assert (want[:2] > 0).all() and (want[2] > 0) == (neg_weight > 0)  # u2: negatives only
    assert want[3] == pos_weight * ((upper[3] - user[3] @ item.T) ** 2).sum()  # no N(u)-
    per_user = torch.tensor([0.5, 2.0, 1.0, 3.0], dtype=torch.float64)    # c0 per user
    c_uv = torch.linspace(0.5, 2.0, index.numel(), dtype=torch.float64)   # c+ per pair
    got = full_adaptive_loss(user, item, index, pos, upper, lower, pos_weight=c_uv,
                             neg_weight=per_user, chunk_size=chunk_size)
    dense_c = torch.zeros(4, 7, dtype=torch.float64).index_put_((index, pos), c_uv)
    assert torch.allclose(got, _dense_full_loss(user, item, SEEN, upper, lower, dense_c,
                                                per_user), rtol=0, atol=1e-6)


def test_full_adaptive_loss_gradients_match_dense_reference():
    """Gradients reach user and item embeddings and both boundaries, equal to the dense ones,
    whatever the chunk size."""
    grads = []
    for chunk_size in (None, 1, 3, 7):
        (user, item, upper, lower), index, pos = _full_inputs(requires_grad=True)
        if chunk_size is None:
            loss = _dense_full_loss(user, item, SEEN, upper, lower, 0.7, 0.3)
        else:
            loss = full_adaptive_loss(user, item, index, pos, upper, lower, pos_weight=0.7,
                                      neg_weight=0.3, chunk_size=chunk_size)
        (loss * torch.arange(1.0, 5.0, dtype=torch.float64)).sum().backward()
        grads.append([t.grad for t in (user, item, upper, lower)])
    for g in grads[0]:
        assert g.abs().sum() > 0
    for other in grads[1:]:
        for a, b in zip(grads[0], other):
            assert torch.allclose(a, b, rtol=0, atol=1e-9)


def test_adaptive_loss_entry_weights_by_hand():
    """c+ = 2 on both positives; c0 per triple 1 and 4: negatives 1, 9 and 4 x (0.25, 0.25)."""
    pos, neg = torch.tensor([2.0, 0.0]), torch.tensor([[1.0, 3.0], [0.0, 0.0]])
    upper, lower = torch.tensor([3.0, 1.0]), torch.tensor([0.0, 0.5])
    rec, _ = adaptive_loss(pos, neg, upper, lower, 1.0, pos_weight=2.0,
                           neg_weight=torch.tensor([1.0, 4.0]))
    assert math.isclose(rec.item(), 2.0 + (1 + 9 + 1 + 1) / 4, rel_tol=1e-6)


def test_margin_hinge_keeps_the_gap_at_least_m():
    """Zero once ``B_up - B_low >= m``; its gradient widens the gap otherwise (never narrows)."""
    upper = torch.tensor([2.0, 0.5, 0.0], requires_grad=True)
    lower = torch.tensor([0.0, 0.0, 0.5], requires_grad=True)
    loss = margin_loss(upper, lower, 1.0)                   # gaps 2, 0.5, -0.5 -> 0, 0.5, 1.5
    assert math.isclose(loss.item(), 2.0 / 3, rel_tol=1e-6)
    loss.backward()
    assert upper.grad.tolist() == pytest.approx([0.0, -1 / 3, -1 / 3])     # descent raises B_up
    assert lower.grad.tolist() == pytest.approx([0.0, 1 / 3, 1 / 3])       # ... and lowers B_low


# -- eq. 7: weighted regression ---------------------------------------------------------------
def test_wr_loss_by_hand():
    """``y = σ(s)``: positives 0.5, 0.75 -> (1-y)^2 0.25, 0.0625; negatives 0.5, 0.25, 0.75, 0.5
    -> y^2 0.25, 0.0625, 0.5625, 0.25."""
    pos = torch.tensor([0.0, LN3])
    neg = torch.tensor([[0.0, -LN3], [LN3, 0.0]])
    assert math.isclose(wr_loss(pos, neg).item(), 0.15625 + 0.28125, rel_tol=1e-6)
    got = wr_loss(pos, neg, pos_weight=2.0, neg_weight=torch.tensor([1.0, 0.0]))
    assert math.isclose(got.item(), 0.3125 + (0.25 + 0.0625) / 4, rel_tol=1e-6)


def test_full_wr_loss_by_hand():
    """One user, score ln 3 with its positive item 0 (y 0.75) and -ln 3 with item 1 (y 0.25):
    ``c+ (1 - 0.75)^2 + c0 0.25^2``."""
    user, item = torch.tensor([[LN3]]), torch.tensor([[1.0], [-1.0]])
    index, pos = torch.tensor([0]), torch.tensor([0])
    assert math.isclose(full_wr_loss(user, item, index, pos).item(), 0.125, rel_tol=1e-6)
    got = full_wr_loss(user, item, index, pos, pos_weight=2.0, neg_weight=3.0)
    assert math.isclose(got.item(), 2 * 0.0625 + 3 * 0.0625, rel_tol=1e-6)


@pytest.mark.parametrize("chunk_elements", [1, 4, 7, 12, 1000])
def test_full_wr_loss_matches_dense_reference(chunk_elements):
    """Values and gradients (user and item rows) equal the dense eq. 7, with per-entry ``c_uv``
    and per-user ``c0``, whatever the block size (blocks are recomputed in backward)."""
    (user, item, _, _), index, pos = _full_inputs(requires_grad=True)
    c_uv = torch.linspace(0.5, 2.0, index.numel(), dtype=torch.float64)       # per pair
    c0 = torch.tensor([0.5, 2.0, 1.0, 3.0], dtype=torch.float64)               # per user
    got = full_wr_loss(user, item, index, pos, pos_weight=c_uv, neg_weight=c0,
                       chunk_elements=chunk_elements)
    dense_c = torch.zeros(4, 7, dtype=torch.float64).index_put_((index, pos), c_uv)
    want = _dense_wr_loss(user, item, SEEN, dense_c, c0)
    assert torch.allclose(got, want, rtol=0, atol=1e-9), (got, want)
    weights = torch.arange(1.0, 5.0, dtype=torch.float64)
    g_got = torch.autograd.grad((got * weights).sum(), (user, item))
    g_want = torch.autograd.grad((want * weights).sum(), (user, item))
    for a, b in zip(g_got, g_want):
        assert a.abs().sum() > 0 and torch.allclose(a, b, rtol=0, atol=1e-9)
    with torch.no_grad():                                                    # no checkpointing
        assert torch.allclose(full_wr_loss(user, item, index, pos, pos_weight=c_uv,
                                           neg_weight=c0, chunk_elements=chunk_elements), want)


# -- BPR and InfoBPR --------------------------------------------------------------------------
def test_info_bpr_by_hand():
    """Softmax over one positive and its k negatives: all scores equal -> ln(1 + k)."""
    assert math.isclose(info_bpr_loss(torch.zeros(1), torch.zeros(1, 2)).item(), LN3,
                        rel_tol=1e-6)
    # s+ = ln 2 against one negative at 0: -log(2 / 3) = ln 1.5, which is BPR's softplus(-ln 2)
    pos, neg = torch.tensor([math.log(2.0)]), torch.zeros(1, 1)
    assert math.isclose(info_bpr_loss(pos, neg).item(), math.log(1.5), rel_tol=1e-6)
    assert math.isclose(bpr_loss(pos, neg).item(), math.log(1.5), rel_tol=1e-6)
    big = info_bpr_loss(torch.tensor([100.0]), torch.tensor([[0.0, -100.0]]))
    assert torch.isfinite(big) and big.item() < 1e-30                         # no overflow


def test_info_bpr_is_bpr_with_one_negative_and_a_softmax_with_more():
    gen = torch.Generator().manual_seed(0)
    pos, neg = torch.randn(6, generator=gen), torch.randn(6, 4, generator=gen)
    assert torch.allclose(info_bpr_loss(pos, neg[:, :1]), bpr_loss(pos, neg[:, :1]))
    want = torch.nn.functional.cross_entropy(torch.cat([pos[:, None], neg], 1),
                                             torch.zeros(6, dtype=torch.long))
    assert torch.allclose(info_bpr_loss(pos, neg), want)


# -- through the model: rec_loss and rec_negatives --------------------------------------------
@pytest.fixture
def feature_store(small_graph) -> InMemoryStore:
    """``small_graph`` (30 users x 40 items) with two random modalities."""
    gen = torch.Generator().manual_seed(2)
    return InMemoryStore(small_graph, features={"visual": torch.randn(40, 6, generator=gen),
                                                "textual": torch.randn(40, 4, generator=gen)})


def test_rec_negatives_routes_the_loss(feature_store, small_batch):
    """"sampled": the rec and margin terms are exactly :func:`adaptive_loss` over the batch's
    negatives; "all": eq. 8 over every item (dense reference on the forward's rows), per triple
    ``l(u) / deg(u)`` (degrees differ here), the same margin, and a different rec value."""
    store, t = feature_store, small_batch
    torch.manual_seed(0)
    model = A2BM2GLConfig(embedding_dim=8, knn_k=3, rwr_top_n=5).build(store)
    batch = plan_batch(store, model.config.plan(), t)
    out = model(batch.static, batch.static.graph, None, None, None, [None, None])
    u = out.user[t.users]
    rec, margin = adaptive_loss((u * out.item[t.pos]).sum(-1),
                                torch.einsum("bd,bkd->bk", u, out.item[t.neg]),
                                *model.boundaries(batch, out), model.config.margin)
    sampled = model.loss(batch)
    assert torch.equal(sampled["rec"], rec) and torch.equal(sampled["margin"], margin)

    model.config = full = replace(model.config, rec_negatives="all")
    exact = model.loss(plan_batch(store, full.plan(), t))
    rowptr, col = store.csr("train")
    deg = rowptr.diff()
    seen = torch.zeros(30, 40, dtype=torch.bool)
    seen[torch.arange(30).repeat_interleave(deg), col.long()] = True
    users = batch.bounds.users
    dense = _dense_full_loss(out.user[users], out.item, seen[users],
                             *model.user_boundaries(batch, out))          # [b]
    want = (dense / deg[users])[torch.searchsorted(users, t.users)].mean()
    assert deg[t.users].unique().numel() > 1
    assert torch.allclose(exact["rec"], want, rtol=1e-5), (exact["rec"], want)
    assert torch.equal(exact["margin"], margin) and not torch.allclose(exact["rec"], rec)
    assert all(torch.equal(exact[k], sampled[k]) for k in ("str", "sem", "l2"))
    assert exact["loss"] != sampled["loss"]

@pytest.mark.parametrize("rec_loss", ["adaptive", "wr", "bpr", "infobpr"])
def test_rec_loss_routes_to_its_loss(rec_loss, feature_store, small_batch):
    """Each Table 4 loss on the forward's rows, with c+ = 0.5, c0 = 2 where it has them, and the
    total: that term (adaptive: + delta * margin) + beta L_str + gamma L_sem + lambda L2."""
    store, t = feature_store, small_batch
    torch.manual_seed(0)
    cfg = A2BM2GLConfig(embedding_dim=8, knn_k=3, rwr_top_n=5, rec_loss=rec_loss,
                        margin_weight=0.7, rec_pos_weight=0.5, rec_neg_weight=2.0)
    model = cfg.build(store)
    batch = plan_batch(store, cfg.plan(), t)
    out = model(batch.static, batch.static.graph, None, None, None, [None, None])
    u = out.user[t.users]
    pos, neg = (u * out.item[t.pos]).sum(-1), torch.einsum("bd,bkd->bk", u, out.item[t.neg])
    got = model.loss(batch)
    if rec_loss == "adaptive":
        rec, margin = adaptive_loss(pos, neg, *model.boundaries(batch, out), 1.0, 0.5, 2.0)
        want, total = {"rec": rec, "margin": margin}, rec + 0.7 * margin
    else:
        fn = {"wr": lambda: wr_loss(pos, neg, 0.5, 2.0), "bpr": lambda: bpr_loss(pos, neg),
              "infobpr": lambda: info_bpr_loss(pos, neg)}[rec_loss]
        want = {rec_loss: fn()}
        total = want[rec_loss]
    assert set(got) == set(want) | {"loss", "str", "sem", "l2"}
    for k, v in want.items():
        assert torch.allclose(got[k], v, atol=1e-6), (k, got[k], v)
    total = total + 0.6 * got["str"] + 0.1 * got["sem"] + cfg.reg_weight * got["l2"]
    assert torch.allclose(got["loss"], total, atol=1e-6)
    assert (model.upper is not None) == (rec_loss == "adaptive")


def test_exact_wr_matches_dense_reference(feature_store, small_batch):
    """rec_loss='wr', rec_negatives='all': eq. 7 over every item (``y = σ(s)``, c+ 0.5 on the
    train items, c0 2 on the rest), per triple ``l(u) / deg(u)``; differs from the sampled one."""
    store, t = feature_store, small_batch
    torch.manual_seed(0)
    cfg = A2BM2GLConfig(embedding_dim=8, knn_k=3, rwr_top_n=5, rec_loss="wr",
                        rec_negatives="all", rec_pos_weight=0.5, rec_neg_weight=2.0)
    model = cfg.build(store)
    batch = plan_batch(store, cfg.plan(), t)
    got = model.loss(batch)
    out = model(batch.static, batch.static.graph, None, None, None, [None, None])
    rowptr, col = store.csr("train")
    deg = rowptr.diff()
    seen = torch.zeros(30, 40, dtype=torch.bool)
    seen[torch.arange(30).repeat_interleave(deg), col.long()] = True
    users = batch.bounds.users
    y = torch.sigmoid(out.user[users] @ out.item.T)
    dense = (0.5 * seen[users] * (1 - y) ** 2 + 2.0 * ~seen[users] * y ** 2).sum(1)
    want = (dense / deg[users])[torch.searchsorted(users, t.users)].mean()
    assert torch.allclose(got["wr"], want, rtol=1e-5), (got["wr"], want)
    got["loss"].backward()
    assert model.embedding.weight.grad.abs().sum() > 0
    model.config = replace(cfg, rec_negatives="sampled")
    sampled = model.loss(plan_batch(store, model.config.plan(), t))
    assert not torch.allclose(sampled["wr"], got["wr"])


def test_defaults_are_the_papers():
    """delta, beta, gamma = 0.5, 0.6, 0.1 (§4.3); eq. 5 on the 0/1 adjacency with 9 steps (Fig.
    4); the adaptive loss; the surfing prior in eq. 6."""
    c = A2BM2GLConfig()
    assert (c.margin_weight, c.str_weight, c.sem_weight) == (0.5, 0.6, 0.1)
    assert (c.rwr_transition, c.rwr_steps, c.rec_loss) == ("binary", 9, "adaptive")
    assert c.attention_prior and c.attention_inputs == "unit" and c.rec_negatives == "sampled"
