"""The spectral warm start (``LightGCNConfig(init="spectral")``) against numpy's exact SVD of the
normalised interaction matrix, its scale, its propagation as a per-column filter, and where it
is refused."""
import numpy as np
import pytest
import torch

from reelgraph.data.store import InMemoryStore
from reelgraph.graph import BipartiteGraph
from reelgraph.models import LightGCNConfig, MFConfig
from reelgraph.models.spectral_init import spectral_tables

def dense(g: BipartiteGraph) -> np.ndarray:
    r = np.zeros((g.num_users, g.num_items))
    r[g.users().numpy(), g.col.numpy()] = 1
    return r


def graph_of(r: np.ndarray) -> BipartiteGraph:
    u, i = np.nonzero(r)
    return BipartiteGraph.from_edges(torch.from_numpy(u), torch.from_numpy(i), *r.shape)


def normalized(r: np.ndarray) -> np.ndarray:
    d_u, d_i = r.sum(1), r.sum(0)
    inv = lambda d: np.where(d > 0, 1 / np.sqrt(np.maximum(d, 1)), 0)  # noqa: E731
    return inv(d_u)[:, None] * r * inv(d_i)[None, :]


@pytest.mark.parametrize("dim", [2, 5])
def test_first_scores_are_the_best_rank_k_approximation(small_graph, dim):
    """``user @ item.T = c^2 P_k S_k Q_k^T`` (numpy's exact SVD; 30 users x 40 items), and the
    tables' RMS is ``init_std``."""
    R = dense(small_graph)
    user, item = spectral_tables(small_graph, dim, std=0.1, seed=0, niter=8)
    p, s, qt = np.linalg.svd(normalized(R))
    low_rank = (p[:, :dim] * s[:dim]) @ qt[:dim]                       # [U, I]
    got = (user.double() @ item.double().T).numpy()
    c2 = got.ravel() @ low_rank.ravel() / (low_rank.ravel() @ low_rank.ravel())
    np.testing.assert_allclose(got, c2 * low_rank, atol=1e-5)
    rms = torch.cat([user, item]).pow(2).mean().sqrt()
    assert float(rms) == pytest.approx(0.1, rel=1e-4)


def test_columns_beyond_the_rank_are_random_not_zero():
    """Rank 1 (a single user): one spectral column, the others N(0, std), so every column can
    learn."""
    r = np.array([[1, 1, 0, 1]], dtype=np.float64)
    user, item = spectral_tables(graph_of(r), 3, std=0.1, seed=0)
    assert torch.linalg.matrix_rank(torch.cat([user, item])) == 3
    np.testing.assert_allclose((user[:, :1] @ item[:, :1].T).numpy().ravel() > 0.0,
                               r.ravel() > 0)                           # the one direction


def test_propagation_rescales_each_spectral_column(small_graph):
    """``[p_j; q_j]`` is an eigenvector of ``[[0, R~], [R~^T, 0]]`` with eigenvalue ``s_j``, so
    LightGCN's mean of layers 0..L multiplies column ``j`` by ``(1 + s_j + ... + s_j^L) / (L + 1)``.
    Checked through the model itself, built from a store."""
    R, store = dense(small_graph), InMemoryStore(small_graph)
    config = LightGCNConfig(embedding_dim=2, num_layers=3, init="spectral")
    model = config.build(store)
    ego = model.embedding.weight.detach().clone()
    user, item = model.embed(config.plan().static(store, torch.device("cpu")))
    s = np.linalg.svd(normalized(R), compute_uv=False)[:2]
    factor = torch.tensor(sum(s ** k for k in range(4)) / 4, dtype=torch.float32)
    torch.testing.assert_close(torch.cat([user, item]), ego * factor, atol=1e-5, rtol=1e-4)


def test_seeded_and_refused_where_it_does_not_apply(small_graph):
    g = small_graph
    a, b = spectral_tables(g, 3, 0.1, seed=1), spectral_tables(g, 3, 0.1, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    with pytest.raises(ValueError, match="spectral"):
        MFConfig(init="spectral")
    with pytest.raises(Exception, match="init_seed"):
        LightGCNConfig(init="spectral", init_seed=-1)
