"""Sampled-candidate AUC and NDCG@K by hand; candidate sets never hold a seen item."""
import math

import torch

from reelgraph.graph import BipartiteGraph
from reelgraph.sampled_metrics import candidate_metrics, evaluate_sampled, sample_candidates

L3 = 1 / math.log2(3)  # discount of rank 2


def test_candidate_metrics_by_hand():
    pos = torch.tensor([0.9, 0.5, 0.3, 0.4])
    neg = torch.tensor([[0.1, 0.2, 0.3],    # u0: beats all -> AUC 1, rank 1
                        [0.6, 0.1, 0.2],    # u1: beats 2 of 3 -> AUC 2/3, rank 2
                        [0.3, 0.8, 0.9],    # u2: ties one, beats none -> AUC .5/3, rank 4
                        [0.4, 0.4, 0.0]])   # u3: 2 ties, 1 below -> AUC 2/3; ties never win: rank 3
    m = candidate_metrics(pos, neg, ks=(1, 2))
    assert torch.allclose(m["auc"], torch.tensor([1.0, 2 / 3, 0.5 / 3, 2 / 3], dtype=torch.float64))
    assert torch.allclose(m["ndcg@1"], torch.tensor([1.0, 0, 0, 0], dtype=torch.float64))
    assert torch.allclose(m["ndcg@2"], torch.tensor([1.0, L3, 0, 0], dtype=torch.float64))
    # masked negatives do not count; a user without negatives has no metric at all
    valid = torch.tensor([[True, True, True], [False, True, True], [False] * 3, [True] * 3])
    m = candidate_metrics(pos, neg, valid, ks=(1,))
    assert float(m["auc"][1]) == 1.0 and float(m["ndcg@1"][1]) == 1.0
    assert math.isnan(float(m["auc"][2])) and math.isnan(float(m["ndcg@1"][2]))


def test_evaluate_sampled_scores_each_user_against_its_own_candidates():
    scores = torch.tensor([[0.9, 0.1, 0.2, 0.3], [0.1, 0.2, 0.9, 0.5]])  # [U, I]
    fn = lambda u, i: scores[u][:, i]  # noqa: E731
    users, pos = torch.tensor([0, 1]), torch.tensor([0, 3])
    neg = torch.tensor([[1, 2], [1, 2]])
    out = evaluate_sampled(fn, users, pos, neg, torch.ones(2, 2, dtype=torch.bool), ks=(1, 2),
                           user_batch_size=1)
    # u0: 0.9 beats 0.1, 0.2 -> AUC 1, rank 1; u1: 0.5 beats 0.2, loses to 0.9 -> AUC .5, rank 2
    assert abs(out["auc"] - 0.75) < 1e-9
    assert abs(out["ndcg@1"] - 0.5) < 1e-9 and abs(out["ndcg@2"] - (1 + L3) / 2) < 1e-9


def test_candidates_are_unseen_distinct_and_seeded():
    g = torch.Generator().manual_seed(0)
    U, I = 20, 15
    keys = torch.unique(torch.randint(U * I, (90,), generator=g))
    train = BipartiteGraph.from_edges(keys // I, keys % I, U, I)
    tk = torch.unique(torch.randint(U * I, (30,), generator=g))
    tk = tk[~torch.isin(tk, keys)]
    test = BipartiteGraph.from_edges(tk // I, tk % I, U, I)
    users, pos, neg, valid = sample_candidates(test, [train, test], 8,
                                               torch.Generator().manual_seed(1), block=40)
    assert torch.equal(users, torch.unique(tk // I))
    assert bool(torch.isin(users * I + pos, tk).all())  # the positive is a test item
    seen = set(keys.tolist()) | set(tk.tolist())
    for u, row, ok in zip(users.tolist(), neg.tolist(), valid.tolist()):
        real = [n for n, v in zip(row, ok) if v]
        assert len(set(real)) == len(real) and not {u * I + n for n in real} & seen
        assert len(real) == min(8, I - sum((u * I + j) in seen for j in range(I)))
    again = sample_candidates(test, [train, test], 8, torch.Generator().manual_seed(1), block=40)
    assert torch.equal(again[2], neg) and torch.equal(again[1], pos)
