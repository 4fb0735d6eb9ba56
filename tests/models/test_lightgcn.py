import math

import torch

from reelgraph.graph import BipartiteGraph
from reelgraph.models import MF, LightGCN, LightGCNConfig, MFConfig
from reelgraph.models.lightgcn import propagate, sym_norm_adjacency
from reelgraph.samplers.batch import BPRBatch

# 2 users, 2 items: u0-i0, u0-i1, u1-i1. Degrees u0=2, u1=1, i0=1, i1=2.
GRAPH = BipartiteGraph.from_edges(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]), 2, 2)


def test_sym_norm_adjacency_by_hand():
    a = sym_norm_adjacency(GRAPH).to_dense()
    r2 = 1 / math.sqrt(2)
    expected = torch.tensor([[0, 0, r2, 0.5],     # u0: i0 (1/sqrt(2*1)), i1 (1/sqrt(2*2))
                             [0, 0, 0, r2],       # u1: i1 (1/sqrt(1*2))
                             [r2, 0, 0, 0],
                             [0.5, r2, 0, 0]])
    assert torch.allclose(a, expected)


def test_one_layer_propagation_by_hand():
    x = torch.tensor([[1.0], [2.0], [3.0], [4.0]])  # u0, u1, i0, i1
    out = propagate(sym_norm_adjacency(GRAPH), x, num_layers=1)
    r2 = 1 / math.sqrt(2)
    layer1 = torch.tensor([[3 * r2 + 4 * 0.5], [4 * r2], [1 * r2], [1 * 0.5 + 2 * r2]])
    assert torch.allclose(out, (x + layer1) / 2)
    out2 = propagate(sym_norm_adjacency(GRAPH), x, num_layers=2)
    layer2 = sym_norm_adjacency(GRAPH).to_dense() @ layer1
    assert torch.allclose(out2, (x + layer1 + layer2) / 3)


def test_symmetric_spmm_gradient():
    adj = sym_norm_adjacency(GRAPH)
    adj = torch.sparse_csr_tensor(adj.crow_indices(), adj.col_indices(), adj.values().double(), adj.shape)
    x = torch.randn(4, 3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: propagate(adj, t, 3), (x,))


def test_loss_terms_and_gradient_reach_batch_rows():
    torch.manual_seed(0)
    for model in (LightGCN(2, 2, LightGCNConfig(embedding_dim=8)), MF(2, 2, MFConfig(embedding_dim=8))):
        batch = BPRBatch(torch.tensor([1]), torch.tensor([1]), torch.tensor([[0]]))
        out = model.loss(batch, model.prepare(GRAPH))
        assert set(out) == {"loss", "bpr", "l2"}
        u, i = model.ego_embeddings()
        expected_l2 = (u[1].pow(2).sum() + i[1].pow(2).sum() + i[0].pow(2).sum()) / 2
        assert torch.allclose(out["l2"], expected_l2)
        out["loss"].backward()
        grads = [p.grad for p in model.parameters()]
        assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_bpr_loss_value():
    from reelgraph.models import bpr_loss
    got = bpr_loss(torch.tensor([2.0, 0.0]), torch.tensor([[1.0, 3.0], [0.0, 0.0]]))
    sp = lambda z: math.log1p(math.exp(z))
    assert math.isclose(got.item(), (sp(-1) + sp(1) + sp(0) + sp(0)) / 4, rel_tol=1e-6)
