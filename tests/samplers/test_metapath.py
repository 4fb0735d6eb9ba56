from __future__ import annotations

import pytest
import torch

from reelgraph.graph import BipartiteGraph, transpose_csr
from reelgraph.samplers.metapath import metapath_walks

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _world(seed: int, num_users=12, num_creators=4, num_items=15):
    g = torch.Generator().manual_seed(seed)
    follows = BipartiteGraph.from_edges(  # every user follows >= 1 creator
        torch.cat([torch.arange(num_users), torch.randint(num_users, (10,), generator=g)]),
        torch.cat([torch.randint(num_creators, (num_users,), generator=g),
                   torch.randint(num_creators, (10,), generator=g)]), num_users, num_creators)
    keys = torch.unique(follows.keys())
    follows = BipartiteGraph.from_edges(keys // num_creators, keys % num_creators,
                                        num_users, num_creators)
    made = BipartiteGraph.from_edges(  # every item has one creator, every creator >= 1 item
        torch.cat([torch.arange(num_creators),
                   torch.randint(num_creators, (num_items - num_creators,), generator=g)]),
        torch.arange(num_items), num_creators, num_items)
    return follows, made


def _dense(bg: BipartiteGraph) -> torch.Tensor:
    a = torch.zeros(bg.num_users, bg.num_items)
    a[bg.users(), bg.col] = 1.0
    return a


def _walk(follows, made, users, device="cpu", seed=0, **kw):
    f, m = follows.to(device), made.to(device)
    return metapath_walks((f.rowptr, f.col), transpose_csr(f.rowptr, f.col, f.num_items),
                          (m.rowptr, m.col), users.to(device),
                          generator=torch.Generator(device).manual_seed(seed), **kw)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("gseed", [0, 1, 2])
def test_one_step_endpoints_are_meta_paths(gseed, device):
    follows, made = _world(gseed)
    out = _walk(follows, made, torch.arange(12), device, num_walks=50, walk_length=1)
    f, c = _dense(follows), _dense(made)
    uu, ui = (f @ f.t()) > 0, (f @ c) > 0  # share a creator / item of a followed creator
    assert bool(uu[out.user_user[0].cpu(), out.user_user[1].cpu()].all())
    assert bool(ui[out.user_item[0].cpu(), out.user_item[1].cpu()].all())
    assert not bool((out.user_user[0] == out.user_user[1]).any())


def test_multi_step_endpoints_reachable_and_rates():
    follows, made = _world(4)
    walks = 4000
    q1, q2 = 0.8, 0.6
    out = _walk(follows, made, torch.tensor([0]), num_walks=walks, walk_length=3, q1=q1, q2=q2,
                exclude_self=False)
    f, c = _dense(follows), _dense(made)
    uu = f @ f.t()
    reach = (uu + uu @ uu + uu @ uu @ uu)[0] > 0
    assert bool(reach[out.user_user[1]].all())
    assert bool(((f @ c)[reach | (torch.arange(12) == 0)].sum(0) > 0)[out.user_item[1]].all())
    # every user follows a creator and every creator has followers and videos, so step t emits
    # a user-user pair with (q1 q2)^t and a user-item pair with (q1 q2)^(t-1) q1 (1 - q2)
    go = q1 * q2
    assert abs(out.user_user.size(1) / walks - (go + go ** 2 + go ** 3)) < 0.05
    assert abs(out.user_item.size(1) / walks - q1 * (1 - q2) * (1 + go + go ** 2)) < 0.04


def test_one_meta_path_endpoint_distribution_by_hand():
    """The paper's walk from user 0: vlogger with q1 (uniform over its 2 follows), then another
    follower with q2 or one of the vlogger's videos with 1 - q2, never both."""
    # user 0 follows vloggers 0 and 1; vlogger 0: followers {0, 1}, video {0};
    # vlogger 1: followers {0, 2, 3}, videos {1, 2}
    follows = BipartiteGraph.from_edges(torch.tensor([0, 0, 1, 2, 3]),
                                        torch.tensor([0, 1, 0, 1, 1]), 4, 2)
    made = BipartiteGraph.from_edges(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 2]), 2, 3)
    q1, q2, n = 0.7, 0.4, 40000
    out = _walk(follows, made, torch.tensor([0]), num_walks=n, walk_length=1, q1=q1, q2=q2,
                exclude_self=False, seed=7)
    uu = torch.bincount(out.user_user[1], minlength=4).double() / n
    ui = torch.bincount(out.user_item[1], minlength=3).double() / n
    a, b = q1 * q2, q1 * (1 - q2)
    want_uu = torch.tensor([a * (1 / 4 + 1 / 6), a / 4, a / 6, a / 6], dtype=torch.float64)
    want_ui = torch.tensor([b / 2, b / 4, b / 4], dtype=torch.float64)
    torch.testing.assert_close(uu, want_uu, atol=0.01, rtol=0)
    torch.testing.assert_close(ui, want_ui, atol=0.01, rtol=0)
    # exclusive: the endpoints of all walks add up to the q1 walks that reached a vlogger
    assert abs((out.user_user.size(1) + out.user_item.size(1)) / n - q1) < 0.01


def test_metapath_deterministic_under_seed():
    follows, made = _world(5)
    a = _walk(follows, made, torch.arange(12), seed=3)
    b = _walk(follows, made, torch.arange(12), seed=3)
    assert torch.equal(a.user_user, b.user_user) and torch.equal(a.user_item, b.user_item)
