from __future__ import annotations

import pytest
import torch

from reelgraph.graph import BipartiteGraph
from reelgraph.samplers.negative import (hard_negatives, hard_negatives_from_embeddings,
                                         in_batch_negatives, popularity_cdf,
                                         popularity_negatives, uniform_negatives)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _interactions(seed: int, num_users=20, num_items=30, num_edges=150) -> BipartiteGraph:
    g = torch.Generator().manual_seed(seed)
    u = torch.randint(num_users, (num_edges,), generator=g)
    i = (torch.rand(num_edges, generator=g) ** 2 * num_items).long()  # popular low ids
    keys = torch.unique(u * num_items + i)
    return BipartiteGraph.from_edges(keys // num_items, keys % num_items, num_users, num_items)


def _is_positive(bg: BipartiteGraph, users, items) -> torch.Tensor:
    a = torch.zeros(bg.num_users, bg.num_items, dtype=torch.bool)
    a[bg.users().cpu(), bg.col.cpu()] = True
    return a[users.cpu().unsqueeze(1).expand_as(items), items.cpu()]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("gseed", [0, 1, 2])
@pytest.mark.parametrize("alpha", [0.0, 0.75, 1.0])
def test_popularity_negatives_exclude_positives_and_repeat(gseed, alpha, device):
    bg = _interactions(gseed).to(device)
    _, item_deg = bg.degree()
    cdf = popularity_cdf(item_deg, alpha)
    users = torch.arange(bg.num_users, device=device).repeat(10)
    draw = lambda s: popularity_negatives(users, bg.keys(), cdf, 4,  # noqa: E731
                                          generator=torch.Generator(device).manual_seed(s))
    neg = draw(0)
    assert neg.shape == (users.numel(), 4)
    assert not bool(_is_positive(bg, users, neg).any())
    assert torch.equal(neg, draw(0)) and not torch.equal(neg, draw(1))
    if alpha > 0:
        assert not bool((item_deg[neg] == 0).any())


def test_popularity_frequencies_follow_count_power():
    counts = torch.tensor([1, 4, 9, 0, 16])
    cdf = popularity_cdf(counts, 0.5)
    empty = torch.empty(0, dtype=torch.long)  # no positives
    neg = popularity_negatives(torch.zeros(40_000, dtype=torch.long), empty, cdf, 1,
                               generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(neg.flatten(), minlength=5).double() / 40_000
    assert torch.allclose(freq, torch.tensor([1, 2, 3, 0, 4], dtype=torch.float64) / 10, atol=0.01)


def test_uniform_negatives_exclude_positives():
    bg = _interactions(3)
    users = torch.arange(bg.num_users).repeat(5)
    neg = uniform_negatives(users, bg.keys(), bg.num_items, 6,
                            generator=torch.Generator().manual_seed(0))
    assert not bool(_is_positive(bg, users, neg).any())


def test_in_batch_negatives_are_other_rows_masked_for_positives():
    bg = _interactions(4)
    users, items = bg.users()[:12], bg.col[:12]  # consecutive edges: repeated users
    neg, valid = in_batch_negatives(users, items, bg.keys(), bg.num_items)
    assert neg.shape == (12, 11)
    for b in range(12):
        assert neg[b].tolist() == items[torch.arange(12) != b].tolist()
    assert torch.equal(valid, ~_is_positive(bg, users, neg))
    assert not bool(valid.all())  # same-user rows must have been masked


@pytest.mark.parametrize("window", [(3, 8), (0, 1), (20, 40)])
def test_hard_negatives_come_from_rank_window(window):
    bg = _interactions(5)
    g = torch.Generator().manual_seed(0)
    user_emb, item_emb = torch.randn(bg.num_users, 4, generator=g), torch.randn(bg.num_items, 4,
                                                                                 generator=g)
    users = torch.arange(bg.num_users)
    neg = hard_negatives_from_embeddings(user_emb, item_emb, users, bg.keys(), 5,
                                         rank_range=window,
                                         generator=torch.Generator().manual_seed(1))
    assert not bool(_is_positive(bg, users, neg).any())
    scores = user_emb @ item_emb.t()
    pos = _is_positive(bg, users, torch.arange(bg.num_items).expand(bg.num_users, -1))
    for u in range(bg.num_users):
        ranked = [i for i in torch.argsort(scores[u], descending=True).tolist() if not pos[u, i]]
        hi = min(window[1], len(ranked))
        allowed = set(ranked[min(window[0], hi - 1):hi])
        assert set(neg[u].tolist()) <= allowed
    again = hard_negatives(scores, users, bg.keys(), 5, rank_range=window,
                           generator=torch.Generator().manual_seed(1))
    assert torch.equal(neg, again)
