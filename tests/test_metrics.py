import math

import numpy as np
import pytest
import torch

from reelgraph.graph import BipartiteGraph
from reelgraph.metrics import (RankingResult, evaluate, evaluate_fn, evaluate_popularity,
                               inner_product, metric_sums, per_user_metrics, popularity_scores,
                               rank_users, topk_items, topk_pruned)

L2 = 1 / math.log2(3)          # discount of rank 2; rank 1 has 1, rank 3 has 1/2


def _graph(sets, num_items):
    users = torch.tensor([u for u, s in enumerate(sets) for _ in s], dtype=torch.long)
    items = torch.tensor([i for s in sets for i in s], dtype=torch.long)
    return BipartiteGraph.from_edges(users, items, len(sets), num_items)


# 4 users x 6 items; user 3 has no test item. Scores are exact in float32.
SCORES = torch.tensor([[.9, .8, .7, .6, .5, .4],     # u0: ranking 1 2 3 4 5   (0 masked)
                       [.6, .9, .2, .8, .2, .7],     # u1: ranking 5 0 {2 4}   (1, 3 masked)
                       [.2, .9, .8, .7, .2, 1.],     # u2: ranking 1 2 3 {0 4} (5 masked)
                       [.1, .2, .3, .4, .5, .6]])
TRAIN = [{0}, {1, 3}, {5}, {2}]
TEST = [{2, 5}, {0}, {1, 4}, set()]
# Per user at K = 1, 2, 3 (hits at ranks):
#   u0 hits at rank 2:  recall 0, 1/2, 1/2  precision 0, 1/2, 1/3
#                       ndcg 0, L2 / (1 + L2), L2 / (1 + L2)   (IDCG over min(|T|=2, K))
#   u1 hit at rank 2:   recall 0, 1, 1      precision 0, 1/2, 1/3   ndcg 0, L2, L2 (IDCG 1)
#   u2 hit at rank 1:   recall 1/2 each     precision 1, 1/2, 1/3   ndcg 1, 1/(1+L2), 1/(1+L2)
# AUC (P = T \ R, N = items \ (R ∪ T)):
#   u0 P {2:.7, 5:.4} N {1:.8, 3:.6, 4:.5}: .7 beats 3, 4; .4 beats none        -> 2/6
#   u1 P {0:.6}       N {2:.2, 4:.2, 5:.7}: beats 2, 4                          -> 2/3
#   u2 P {1:.9, 4:.2} N {0:.2, 2:.8, 3:.7}: .9 beats 3; .2 ties 0 (0.5)        -> 3.5/6
EXPECTED = {
    "recall@1": (0 + 0 + .5) / 3, "precision@1": 1 / 3, "ndcg@1": 1 / 3, "hitrate@1": 1 / 3,
    "recall@2": (.5 + 1 + .5) / 3, "precision@2": .5, "hitrate@2": 1.,
    "ndcg@2": (L2 / (1 + L2) + L2 + 1 / (1 + L2)) / 3,
    "recall@3": (.5 + 1 + .5) / 3, "precision@3": 1 / 3, "hitrate@3": 1.,
    "ndcg@3": (L2 / (1 + L2) + L2 + 1 / (1 + L2)) / 3,
    "auc": (2 / 6 + 2 / 3 + 3.5 / 6) / 3,   # = 19/36
}


def _assert_close(got: dict, want: dict, tol=1e-12):
    assert set(got) == set(want)
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=tol, abs=tol), key


@pytest.mark.parametrize("user_batch_size,item_chunk_size",
                         [(1024, 1 << 16), (1, 1), (2, 4), (3, 5)])
def test_hand_computed(user_batch_size, item_chunk_size):
    # identity item embeddings: user_emb @ item_emb.T is SCORES exactly
    res = evaluate(SCORES, torch.eye(6), _graph(TRAIN, 6), _graph(TEST, 6), ks=(1, 2, 3),
                   user_batch_size=user_batch_size, item_chunk_size=item_chunk_size)
    assert (res.num_users, res.num_skipped) == (3, 1)
    assert float(res.sums["auc_users"]) == 3
    _assert_close(res.means(), EXPECTED)
    assert res.means()["auc"] == pytest.approx(19 / 36, abs=1e-15)


def test_per_user_metrics_on_hand_rankings():
    hits = torch.tensor([[False, True, False, True],
                         [True, True, True, False],
                         [False, False, False, False]])
    out = per_user_metrics(hits, torch.tensor([2, 5, 1]), ks=(1, 4))
    # u0: hits at ranks 2, 4, |T| 2: DCG 1/log2(3) + 1/log2(5), IDCG 1 + 1/log2(3)
    # u1: hits 1, 2, 3, |T| 5: DCG = IDCG@4 minus the rank-4 term; u2: nothing
    assert out["recall@1"].tolist() == [0, 1 / 5, 0]
    assert out["recall@4"].tolist() == [1, 3 / 5, 0]
    assert out["precision@4"].tolist() == [.5, .75, 0]
    assert out["hitrate@1"].tolist() == [0, 1, 0] and out["hitrate@4"].tolist() == [1, 1, 0]
    idcg4 = 1 + L2 + .5 + 1 / math.log2(5)
    want = [(L2 + 1 / math.log2(5)) / (1 + L2), (1 + L2 + .5) / idcg4, 0]
    assert out["ndcg@4"].tolist() == pytest.approx(want, abs=1e-15)
    assert out["ndcg@1"].tolist() == [0, 1, 0]


def test_masked_items_never_ranked():
    scores = torch.tensor([[9., 8., 7., 1., 2., 3.]])
    fn = lambda users, items: scores[users][:, items]
    train = _graph([{0, 1, 2}], 6)
    for chunk in (1, 2, 6):
        got = topk_items(fn, torch.tensor([0]), train, k=5, item_chunk_size=chunk)
        assert got.tolist() == [[5, 4, 3, -1, -1]]  # 3 candidates: the list is padded
    # a test item that is also a training item is masked: no hit, no AUC positive
    res = evaluate_fn(fn, train, _graph([{0, 5}], 6), ks=(1, 5), item_chunk_size=2)
    means = res.means()
    assert means["recall@1"] == .5 and means["recall@5"] == .5 and means["precision@5"] == .2
    assert means["auc"] == 1.0                           # P {5:3} beats N {3:1, 4:2}
    res = evaluate_fn(fn, train, _graph([{0}], 6), ks=(5,))
    assert res.means()["hitrate@5"] == 0 and float(res.sums["auc_users"]) == 0
    assert math.isnan(res.means()["auc"]) and res.num_users == 1


def test_empty_test_users_skipped_and_counted():
    train, test = _graph(TRAIN, 6), _graph(TEST, 6)
    res = evaluate(SCORES, torch.eye(6), train, test, ks=(2,), users=torch.tensor([3, 0, 3]))
    assert (res.num_users, res.num_skipped) == (1, 2)
    assert res.means()["recall@2"] == .5
    res = evaluate(SCORES, torch.eye(6), train, test, ks=(2,), users=torch.tensor([3]))
    assert (res.num_users, res.num_skipped) == (0, 1) and math.isnan(res.means()["recall@2"])


def _random_problem(seed, num_users=50, num_items=200, dim=8):
    g = torch.Generator().manual_seed(seed)
    user_emb = torch.randn(num_users, dim, generator=g)
    item_emb = torch.randn(num_items, dim, generator=g)
    perm = torch.rand(num_users, num_items, generator=g).argsort(1).tolist()
    n_train = torch.randint(0, 40, (num_users,), generator=g).tolist()
    n_test = torch.randint(0, 8, (num_users,), generator=g).tolist()
    train = [set(p[:a]) for p, a in zip(perm, n_train)]
    test = [set(p[a:a + b]) for p, a, b in zip(perm, n_train, n_test)]
    return user_emb, item_emb, train, test


def _dense_reference(user_emb, item_emb, train, test, ks):
    """Straight numpy: score everything, mask, argsort, loop over users and pairs."""
    scores = (user_emb @ item_emb.T).double().numpy()
    sums, n_users, n_skip = {}, 0, 0
    for u, (r, t) in enumerate(zip(train, test)):
        if not t:
            n_skip += 1
            continue
        n_users += 1
        s = scores[u].copy()
        s[list(r)] = -np.inf
        order = [i for i in np.argsort(-s, kind="stable") if i not in r]
        for k in ks:
            rel = [i in t for i in order[:k]]
            dcg = sum(1 / math.log2(j + 2) for j, h in enumerate(rel) if h)
            idcg = sum(1 / math.log2(j + 2) for j in range(min(len(t), k)))
            for name, v in (("recall", sum(rel) / len(t)), ("precision", sum(rel) / k),
                            ("ndcg", dcg / idcg), ("hitrate", float(any(rel)))):
                sums[f"{name}@{k}"] = sums.get(f"{name}@{k}", 0) + v
        pos = [scores[u, p] for p in t - r]
        neg = [scores[u, n] for n in range(len(s)) if n not in r and n not in t]
        wins = sum((p > n) + .5 * (p == n) for p in pos for n in neg)
        sums["auc"] = sums.get("auc", 0) + wins / (len(pos) * len(neg))
    return {k: v / n_users for k, v in sums.items()}, n_users, n_skip


@pytest.fixture(scope="module")
def random_problem():
    user_emb, item_emb, train, test = _random_problem(0)
    ks = (1, 5, 20, 250)                                 # 250 > items: short lists
    want = _dense_reference(user_emb, item_emb, train, test, ks)
    return user_emb, item_emb, _graph(train, 200), _graph(test, 200), ks, want


@pytest.mark.parametrize("user_batch_size,item_chunk_size",
                         [(64, 1), (7, 2), (64, 4), (1, 33), (7, 200), (64, 200), (64, 1 << 16)])
def test_matches_dense_reference(random_problem, user_batch_size, item_chunk_size):
    user_emb, item_emb, train, test, ks, (want, n_users, n_skip) = random_problem
    res = evaluate(user_emb, item_emb, train, test, ks, user_batch_size=user_batch_size,
                   item_chunk_size=item_chunk_size)
    assert (res.num_users, res.num_skipped) == (n_users, n_skip) and n_skip > 0
    _assert_close(res.means(), want)


@pytest.mark.parametrize("block", [1, 200, 1000, 1 << 22])
def test_cpu_user_blocks_match_dense_reference(random_problem, monkeypatch, block):
    """Without AUC, CPU batches are scored and ranked ``_CPU_SCORES // items`` users at a time
    (1, 1, 5 and all of them here): the same metrics as the dense reference."""
    import reelgraph.metrics as metrics
    monkeypatch.setattr(metrics, "_CPU_SCORES", block)
    user_emb, item_emb, train, test, ks, (want, n_users, n_skip) = random_problem
    for chunk in (200, 7):
        res = evaluate(user_emb, item_emb, train, test, ks, user_batch_size=64,
                       item_chunk_size=chunk, auc=False)
        assert (res.num_users, res.num_skipped) == (n_users, n_skip)
        _assert_close(res.means(), {k: v for k, v in want.items() if k != "auc"})


def test_merge_of_halves_equals_whole(random_problem):
    user_emb, item_emb, train, test, ks, _ = random_problem
    whole = rank_users(user_emb, item_emb, torch.arange(50), train, test, ks)
    a = rank_users(user_emb, item_emb, torch.arange(25), train, test, ks, item_chunk_size=16)
    b = rank_users(user_emb, item_emb, torch.arange(25, 50), train, test, ks)
    merged = a.merge(b)
    assert isinstance(merged, RankingResult)
    assert (merged.num_users, merged.num_skipped) == (whole.num_users, whole.num_skipped)
    assert set(merged.sums) == set(whole.sums)
    for key, total in whole.sums.items():
        assert merged.sums[key].dtype == torch.float64
        assert float(merged.sums[key]) == pytest.approx(float(total), rel=1e-12), key
    no_auc = rank_users(user_emb, item_emb, torch.arange(50), train, test, ks, auc=False)
    assert "auc" not in no_auc.sums and "auc" not in no_auc.means()
    assert float(no_auc.sums["ndcg@20"]) == pytest.approx(float(whole.sums["ndcg@20"]), rel=1e-12)


@pytest.mark.parametrize("chunk", [1, 3, 100])
def test_auc_ties_count_half(chunk):
    scores = torch.tensor([[1., 2., 2., 2., 3., 2., 0.]])
    fn = lambda users, items: scores[users][:, items]
    train, test = _graph([{4}], 7), _graph([{1, 5}], 7)
    # P {1:2, 5:2}, N {0:1, 2:2, 3:2, 6:0}: each positive beats 0 and 6, ties 2 and 3 -> 3/4
    res = evaluate_fn(fn, train, test, ks=(1,), item_chunk_size=chunk)
    assert res.means()["auc"] == 0.75
    flat = evaluate_fn(lambda users, items: torch.zeros(len(users), len(items)), train, test,
                       ks=(1,), item_chunk_size=chunk)
    assert flat.means()["auc"] == 0.5


def test_score_fn_float64_and_popularity():
    train = _graph([{0, 1}, {0, 2}, {0, 1, 3}], 5)           # degrees 3 2 1 1 0
    test = _graph([{3, 4}, {1}, set()], 5)
    assert popularity_scores(train).tolist() == [3, 2, 1, 1, 0]
    res = evaluate_popularity(train, test, ks=(1, 2), user_batch_size=2, item_chunk_size=2)
    # u0 ranks {2, 3} (tied, degree 1) then 4: recall@2 = 1/2; u1 ranks 1 first: recall@1 = 1
    assert (res.num_users, res.num_skipped) == (2, 1)
    assert res.means()["recall@2"] == .75 and res.means()["precision@2"] == .5
    # AUC: u0 P {3:1, 4:0} N {2:1}: tie 0.5 + loss 0 -> 1/4; u1 P {1:2} N {3:1, 4:0} -> 1
    assert res.means()["auc"] == (.25 + 1) / 2
    pop = popularity_scores(train).double()
    res64 = evaluate_fn(lambda users, items: pop[items].repeat(len(users), 1), train, test, ks=(2,))
    assert res64.means()["auc"] == res.means()["auc"]


def test_inner_product_and_validation():
    user_emb, item_emb = torch.randn(3, 4), torch.randn(5, 4)
    fn = inner_product(user_emb, item_emb)
    assert torch.allclose(fn(torch.tensor([2, 0]), torch.tensor([4, 1])),
                          user_emb[[2, 0]] @ item_emb[[4, 1]].T)
    train, test = _graph([{0}, set(), {1}], 5), _graph([{1}, {2}, set()], 5)
    with pytest.raises(ValueError):
        evaluate(user_emb, item_emb, train, test, ks=(0,))
    with pytest.raises(ValueError):
        evaluate(user_emb, item_emb[:4], train, test)
    with pytest.raises(ValueError):
        evaluate(user_emb, item_emb, train, _graph([{1}, {2}, set()], 6))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_matches_cpu(random_problem):
    user_emb, item_emb, train, test, ks, _ = random_problem
    cpu = evaluate(user_emb, item_emb, train, test, ks, user_batch_size=16, item_chunk_size=64)
    gpu = evaluate(user_emb.cuda(), item_emb.cuda(), train, test, ks, user_batch_size=16,
                   item_chunk_size=64)
    assert gpu.sums["auc"].is_cuda
    assert (gpu.num_users, gpu.num_skipped) == (cpu.num_users, cpu.num_skipped)
    _assert_close(gpu.means(), cpu.means(), tol=1e-6)


@pytest.mark.parametrize("rows,cols,k,group", [(5, 3001, 7, 16), (3, 5000, 5, 4), (4, 100, 50, 16),
                                               (2, 640, 10, 16), (6, 333, 400, 2)])
def test_topk_pruned_matches_topk(rows, cols, k, group):
    g = torch.Generator().manual_seed(cols)
    scores = torch.randint(0, 50, (rows, cols), generator=g).float()    # many ties
    scores[0, : cols - 3] = float("-inf")                               # fewer than k finite
    scores[1] = torch.randn(cols, generator=g)
    vals, idx = topk_pruned(scores, k, group)
    want = scores.topk(min(k, cols), dim=1).values
    assert vals.shape == want.shape and torch.equal(vals, want)
    assert torch.equal(scores.gather(1, idx), vals)                     # columns hold the values
    assert all(len(set(r)) == len(r) for r in idx.tolist())             # distinct columns
    assert torch.equal(idx[1], scores[1].topk(min(k, cols)).indices)    # no ties: same columns


def test_metric_sums_equal_per_user_sums():
    g = torch.Generator().manual_seed(0)
    hits = torch.rand(40, 12, generator=g) < 0.3
    num_test = torch.randint(1, 15, (40,), generator=g)
    ks = (1, 5, 12)
    per_user = per_user_metrics(hits, num_test, ks)
    sums = metric_sums(hits, num_test, ks)
    assert list(sums) == list(per_user)
    for key, values in per_user.items():
        assert sums[key].dtype == torch.float64
        assert float(sums[key]) == pytest.approx(float(values.sum()), rel=1e-14), key


def test_inner_product_reuse_output():
    user_emb, item_emb = torch.randn(6, 4), torch.randn(9, 4)
    fresh, reused = inner_product(user_emb, item_emb), inner_product(user_emb, item_emb, True)
    for users, items in ([[0, 5], [1, 2, 3]], [[1, 2, 3, 4], range(9)], [[2], [8, 0]]):
        users, items = torch.tensor(users), torch.tensor(list(items))
        assert torch.equal(reused(users, items), fresh(users, items))
    a = reused(torch.tensor([0]), torch.tensor([1, 2]))
    b = reused(torch.tensor([1]), torch.tensor([3, 4]))
    assert a.data_ptr() == b.data_ptr()                                 # one buffer, overwritten


@pytest.mark.parametrize("item_chunk_size", [1 << 16, 1000, 2999])
def test_many_items_match_dense_reference(item_chunk_size):
    # 3000 items: the top-k is pruned by group maxima, and with one chunk the mask is a flat fill
    user_emb, item_emb, train, test = _random_problem(1, num_users=30, num_items=3000)
    ks = (1, 5, 20)
    want, n_users, n_skip = _dense_reference(user_emb, item_emb, train, test, ks)
    res = evaluate(user_emb, item_emb, _graph(train, 3000), _graph(test, 3000), ks,
                   user_batch_size=16, item_chunk_size=item_chunk_size)
    assert (res.num_users, res.num_skipped) == (n_users, n_skip)
    _assert_close(res.means(), want)
