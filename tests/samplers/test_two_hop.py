"""Uniform draws over the exact two-hop neighbourhood: frequencies against the dense
``A @ A.T > 0`` set on a graph with one very tight neighbour, the whole neighbourhood with
``-1``, determinism, seeds without neighbours, seeds left short, and the ISGNN plan's
``"uniform"`` neighbours."""
import math

import pytest
import torch

from reelgraph.data.store import InMemoryStore
from reelgraph.graph import BipartiteGraph, transpose_csr
from reelgraph.models.isgnn import ISGNNConfig
from reelgraph.samplers.batch import BPRBatch
from reelgraph.samplers.loader import plan_batch
from reelgraph.samplers.two_hop import uniform_two_hop

GRAPH_SEEDS = [0, 1, 2, 3]


def _tight_graph(loose: int = 40) -> BipartiteGraph:
    """User 0 (``v``) and user 1 (``t``) share all four items 0-3; each item also has ``loose``
    users of its own (2, 3, ...); user ``U - 1`` has item 4 alone (no two-hop neighbour)."""
    u, i = [0] * 4 + [1] * 4, list(range(4)) * 2
    for x in range(4):
        u += range(2 + x * loose, 2 + (x + 1) * loose)
        i += [x] * loose
    U = 2 + 4 * loose + 1
    u.append(U - 1), i.append(4)
    return BipartiteGraph.from_edges(torch.tensor(u), torch.tensor(i), U, 5)


def _random_graph(seed: int) -> BipartiteGraph:
    g = torch.Generator().manual_seed(seed)
    U, I = 14, 10
    u, i = torch.randint(U - 1, (30,), generator=g), torch.randint(I, (30,), generator=g)
    keys = torch.unique(u * I + i)  # the last user stays isolated
    return BipartiteGraph.from_edges(keys // I, keys % I, U, I)


def _exact(g: BipartiteGraph) -> torch.Tensor:
    """``[U, U]`` bool: ``n`` in ``N2(v)`` (shared item, ``n != v``), densely."""
    a = torch.zeros(g.num_users, g.num_items)
    a[g.users(), g.col] = 1.0
    return (a @ a.T > 0).fill_diagonal_(False)


def _csrs(g: BipartiteGraph):
    return (g.rowptr, g.col), transpose_csr(g.rowptr, g.col, g.num_items)


def test_draws_are_uniform_despite_a_tight_neighbour():
    g = _tight_graph()
    exact = _exact(g)
    seeds = torch.tensor([0, 1, 2, g.num_users - 1])  # v, its tight t, a loose user, alone
    draws = 20_000
    out = uniform_two_hop(*_csrs(g), seeds, draws, generator=torch.Generator().manual_seed(0))
    assert not bool((out.seed_index == 3).any())  # no two-hop neighbour, no draw
    for p in range(3):
        nbr = out.neighbor[out.seed_index == p]
        assert nbr.numel() == draws
        assert bool(exact[seeds[p], nbr].all())  # never v itself, never a non-neighbour
        n2 = exact[seeds[p]]
        k = int(n2.sum())  # v, t: 161 (t, or v, and 160 loose); a loose user: 41
        freq = torch.bincount(nbr, minlength=g.num_users)[n2].double() / draws
        # each frequency within 4.5 standard deviations of 1 / |N2|: 0.0062 ± 0.0025 for v
        sd = math.sqrt((1 / k) * (1 - 1 / k) / draws)
        assert float((freq - 1 / k).abs().max()) < 4.5 * sd
        # chi-square over the |N2| cells, df = k - 1: below df + 6 sqrt(2 df)
        chi2 = float(((freq * draws - draws / k) ** 2 / (draws / k)).sum())
        assert chi2 < (k - 1) + 6 * math.sqrt(2 * (k - 1))
    # the tight neighbour in particular: a two-step walk reaches it 4x as often as a loose one
    # and 50 walks per node found it with probability 0.70 but a loose one with 0.26, so the
    # former walk-candidate draws gave t ~3x its uniform share (0.0185 vs 0.0062)
    t = out.neighbor[out.seed_index == 0]
    assert abs(float((t == 1).double().mean()) * 161 - 1.0) < 0.4  # 4.5 sd; walks: 3.0
    assert torch.allclose(out.weight, torch.full_like(out.weight, 1 / draws))


@pytest.mark.parametrize("seed", GRAPH_SEEDS)
def test_whole_neighbourhood_is_the_dense_set(seed):
    g = _random_graph(seed)
    exact = _exact(g)
    seeds = torch.arange(g.num_users)
    for budget in (1 << 22, 3):  # runs of one or two edges' paths enumerate the same
        out = uniform_two_hop(*_csrs(g), seeds, -1, count_budget=budget)
        got = torch.zeros_like(exact)
        got[out.seed_index, out.neighbor] = True
        assert torch.equal(got, exact)
        assert out.neighbor.numel() == int(exact.sum())  # each once
        size = exact.sum(1).float()
        assert torch.allclose(out.weight, 1 / size[out.seed_index])
        assert bool((out.seed_index[1:] >= out.seed_index[:-1]).all())


@pytest.mark.parametrize("seed", GRAPH_SEEDS)
def test_draws_stay_in_the_set_and_are_deterministic(seed):
    g = _random_graph(seed)
    exact = _exact(g)
    seeds = torch.cat([torch.arange(g.num_users), torch.tensor([0, 0])])  # repeats allowed
    run = lambda s, **kw: uniform_two_hop(*_csrs(g), seeds, 7,  # noqa: E731
                                          generator=torch.Generator().manual_seed(s), **kw)
    a, b, c = run(seed), run(seed), run(seed + 100)
    for x, y in zip((a.seed_index, a.neighbor, a.weight), (b.seed_index, b.neighbor, b.weight)):
        assert torch.equal(x, y)
    assert not torch.equal(a.neighbor, c.neighbor)
    assert bool(exact[seeds[a.seed_index], a.neighbor].all())
    count = torch.bincount(a.seed_index, minlength=seeds.numel())
    assert torch.equal(count, torch.where(exact[seeds].any(1), 7, 0))  # none without any
    assert bool((a.seed_index[1:] >= a.seed_index[:-1]).all())
    # a small round budget (one proposal per short seed, scaled) still draws in the set
    small = run(seed, max_proposals=5)
    assert bool(exact[seeds[small.seed_index], small.neighbor].all())


def test_seeds_without_two_hop_neighbours():
    # user 0: item 0 alone; user 1: no item; users 2, 3 share item 1
    g = BipartiteGraph.from_edges(torch.tensor([0, 2, 3]), torch.tensor([0, 1, 1]), 4, 2)
    for k in (5, -1):
        out = uniform_two_hop(*_csrs(g), torch.tensor([0, 1, 2]), k,
                              generator=torch.Generator().manual_seed(0))
        assert out.seed_index.tolist() == [2] * max(k, 1)
        assert out.neighbor.tolist() == [3] * max(k, 1)
    empty = uniform_two_hop(*_csrs(g), torch.tensor([0, 1]), 5)
    assert empty.seed_index.numel() == empty.neighbor.numel() == empty.weight.numel() == 0


def test_a_seed_left_short_weighs_its_draws_by_their_number():
    g = _tight_graph(loose=3)
    out = uniform_two_hop(*_csrs(g), torch.tensor([0, 2]), 50, max_rounds=1, oversample=0.5,
                          generator=torch.Generator().manual_seed(0))
    count = torch.bincount(out.seed_index, minlength=2)
    assert bool((count < 50).all()) and bool((count > 0).all())  # one round: short
    assert torch.allclose(out.weight, 1 / count[out.seed_index].float())
    assert bool(_exact(g)[torch.tensor([0, 2])[out.seed_index], out.neighbor].all())


def test_plan_uniform_neighbours_are_in_the_exact_set():
    g = _random_graph(0)
    store = InMemoryStore(g)
    users = torch.tensor([0, 1, 2, 3, 4, 5])
    items = g.col[g.rowptr[users].clamp(max=g.num_edges - 1)]
    triples = BPRBatch(users, items, torch.randint(g.num_items, (6, 2),
                                                   generator=torch.Generator().manual_seed(0)))
    a = torch.zeros(g.num_users, g.num_items)
    a[g.users(), g.col] = 1.0
    exact = {"user": _exact(g), "item": (a.T @ a > 0).fill_diagonal_(False)}
    for k in (4, -1):
        cfg = ISGNNConfig(embedding_dim=4, neighbors=k, neighbor_sampling="uniform",
                          aggregator="mean")
        batch = plan_batch(store, cfg.plan(), triples)
        for name, t in (("user", batch.user), ("item", batch.item)):
            assert bool(exact[name][t.seeds[t.nbr_pos], t.nbr_node].all())
            count = torch.bincount(t.nbr_pos, minlength=t.seeds.numel())
            want = exact[name][t.seeds].sum(1) if k < 0 else exact[name][t.seeds].any(1) * k
            assert torch.equal(count, want)
            assert torch.allclose(t.nbr_weight, 1 / count[t.nbr_pos].float())
    static = cfg.plan().static(store, torch.device("cpu"))  # -1: every node's whole N2(v)
    assert int(static.user.nbr_pos.numel()) == int(exact["user"].sum())
    assert int(static.item.nbr_pos.numel()) == int(exact["item"].sum())
