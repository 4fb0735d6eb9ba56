from __future__ import annotations

import pytest
import torch
import torch_geometric.transforms as T
from torch_geometric.data import Data, HeteroData
from torch_geometric.loader import LinkLoader

from reelgraph.samplers.pyg import (CSRNeighborSampler, LinkBatch, NegativeSampling,
                                    link_loader, node_loader)

RATES = ("user", "rates", "item")


def _homo(seed: int) -> Data:
    g = torch.Generator().manual_seed(seed)
    n = 60
    ei = torch.unique(torch.randint(n, (2, 400), generator=g), dim=1)
    ei = ei[:, torch.randperm(ei.size(1), generator=g)]  # unsorted, so edge ids need perm
    return Data(edge_index=ei, num_nodes=n, edge_attr=torch.arange(ei.size(1)))


def _hetero(seed: int) -> HeteroData:
    g = torch.Generator().manual_seed(seed)
    h = HeteroData()
    h["user"].num_nodes, h["item"].num_nodes, h["creator"].num_nodes = 30, 40, 6
    ei = torch.unique(torch.stack([torch.randint(30, (250,), generator=g),
                                   torch.randint(40, (250,), generator=g)]), dim=1)
    h[RATES].edge_index = ei[:, torch.randperm(ei.size(1), generator=g)]
    h["item", "by", "creator"].edge_index = torch.stack([torch.arange(40),
                                                          torch.randint(6, (40,), generator=g)])
    return T.ToUndirected()(h)


def _pairs(ei: torch.Tensor) -> set[tuple[int, int]]:
    return set(zip(*ei.tolist()))


@pytest.mark.parametrize("seed", [0, 1])
def test_node_loader_homogeneous(seed):
    data = _homo(seed)
    real = _pairs(data.edge_index)
    batches = list(node_loader(data, [4, 3], batch_size=16, seed=seed))
    assert len(batches) == 4
    for i, b in enumerate(batches):
        assert torch.equal(b.n_id[:b.batch_size], torch.arange(16 * i, 16 * i + b.batch_size))
        glob = b.n_id[b.edge_index]
        assert _pairs(glob) <= real
        assert torch.equal(data.edge_index[:, b.e_id], glob)  # edge ids survive the CSR sort
        assert torch.equal(b.edge_attr, b.e_id)
        hop1 = b.edge_index[1, :b.num_sampled_edges[0]]
        assert bool((hop1 < b.batch_size).all())  # first hop ends at the seeds


def test_node_loader_heterogeneous():
    data = _hetero(0)
    b = next(iter(node_loader(data, [3, 2], input_nodes="user", batch_size=8)))
    assert torch.equal(b["user"].n_id[:8], torch.arange(8))
    for et in data.edge_types:
        glob = torch.stack([b[et[0]].n_id[b[et].edge_index[0]],
                            b[et[2]].n_id[b[et].edge_index[1]]])
        assert torch.equal(data[et].edge_index[:, b[et].e_id], glob)
    assert b["item", "rev_rates", "user"].num_edges > 0


@pytest.mark.parametrize("seed", [0, 1])
def test_link_loader_homogeneous_batches_and_no_leak(seed):
    data = _homo(seed)
    real = _pairs(data.edge_index)
    loader = link_loader(data, [5, 5], batch_size=32, num_negatives=3, shuffle=False, seed=seed)
    batches = list(loader)
    assert len(batches) == (data.edge_index.size(1) + 31) // 32
    for i, b in enumerate(batches):
        assert isinstance(b, LinkBatch) and b.neg.shape == (b.users.numel(), 3)
        sl = slice(32 * i, 32 * i + b.users.numel())
        assert torch.equal(b.users, data.edge_index[0, sl])
        assert torch.equal(b.pos, data.edge_index[1, sl])
        negs = set(zip(b.users.repeat_interleave(3).tolist(), b.neg.flatten().tolist()))
        assert not negs & real
        sampled = _pairs(b.graph.n_id[b.graph.edge_index])
        targets = set(zip(b.users.tolist(), b.pos.tolist()))
        assert sampled <= real
        assert not sampled & (targets | {(d, s) for s, d in targets})
    again = list(link_loader(data, [5, 5], batch_size=32, num_negatives=3, shuffle=False,
                             seed=seed))
    assert all(torch.equal(a.neg, c.neg) and torch.equal(a.graph.n_id, c.graph.n_id)
               for a, c in zip(batches, again))


def test_link_loader_heterogeneous_no_leak_either_direction():
    data = _hetero(1)
    real = _pairs(data[RATES].edge_index)
    loader = link_loader(data, [-1, 4], edge_label_index=RATES, batch_size=16,
                         num_negatives=2, shuffle=True,
                         generator=torch.Generator().manual_seed(0))
    n = 0
    for b in loader:
        g = b.graph
        targets = set(zip(b.users.tolist(), b.pos.tolist()))
        negs = set(zip(b.users.repeat_interleave(2).tolist(), b.neg.flatten().tolist()))
        assert not negs & real
        fwd = _pairs(torch.stack([g["user"].n_id[g[RATES].edge_index[0]],
                                  g["item"].n_id[g[RATES].edge_index[1]]]))
        rev_ei = g["item", "rev_rates", "user"].edge_index
        rev = _pairs(torch.stack([g["user"].n_id[rev_ei[1]], g["item"].n_id[rev_ei[0]]]))
        assert fwd <= real and rev <= real
        assert not (fwd | rev) & targets
        n += 1
    assert n == (len(real) + 15) // 16


def test_link_loader_binary_mode_labels():
    data = _homo(2)
    sampler = CSRNeighborSampler(data, [3])
    loader = LinkLoader(data, sampler, neg_sampling=NegativeSampling("binary", 2), batch_size=8)
    b = next(iter(loader))
    assert b.edge_label_index.shape == (2, 24)
    assert torch.equal(b.edge_label, torch.cat([torch.ones(8), torch.zeros(16)]))
    glob = b.n_id[b.edge_label_index]
    assert not _pairs(glob[:, 8:]) & _pairs(data.edge_index)
    assert _pairs(glob[:, :8]) <= _pairs(data.edge_index)
