"""NGCF: one propagation step by hand, gradients to every weight, a short fit beats BPR-MF."""
import math

import pytest
import torch
import torch.nn.functional as F

from reelgraph.data.synthetic import WorldConfig, generate_world
from reelgraph.graph import BipartiteGraph
from reelgraph.lightning_modules._pl import pl
from reelgraph.lightning_modules.datamodule import RecDataModule
from reelgraph.lightning_modules.module import RecModule
from reelgraph.models import MFConfig
from reelgraph.models.lightgcn import sym_norm_adjacency
from reelgraph.models.ngcf import NGCF, NGCFConfig, ngcf_layer
from reelgraph.samplers.batch import BPRBatch

# as tests/lightning_modules/test_fit.py, with 40 topics: local structure for propagation to find
WORLD = WorldConfig(num_users=400, num_items=600, num_creators=60, num_communities=40,
                    popularity_exponent=2.0, avg_interactions=20, max_interactions=80, noise=0.05,
                    kg=False, visual_dim=0, acoustic_dim=0, textual_dim=0, chunk_users=400)

# 2 users, 2 items: u0-i0, u0-i1, u1-i1 (as in test_lightgcn).
GRAPH = BipartiteGraph.from_edges(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]), 2, 2)


def test_one_layer_by_hand():
    x = torch.tensor([[1.0], [2.0], [3.0], [-4.0]])  # u0, u1, i0, i1
    w1, w2 = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    with torch.no_grad():
        w1.weight.fill_(0.5), w1.bias.fill_(0.1), w2.weight.fill_(2.0), w2.bias.fill_(-0.2)
    r2 = 1 / math.sqrt(2)
    side = torch.tensor([[3 * r2 - 4 * 0.5], [-4 * r2], [1 * r2], [1 * 0.5 + 2 * r2]])  # L x
    pre = 0.5 * (side + x) + 0.1 + 2.0 * (side * x) - 0.2
    expected = torch.where(pre > 0, pre, 0.2 * pre)
    got = ngcf_layer(sym_norm_adjacency(GRAPH), x, w1, w2, 0.2)
    assert torch.allclose(got, expected)
    assert (expected < 0).any()  # the LeakyReLU's negative branch is exercised


def test_embed_concatenates_normalised_layers():
    torch.manual_seed(0)
    model = NGCF(2, 2, NGCFConfig(embedding_dim=4, num_layers=2)).eval()
    u, i = model.embed(model.prepare(GRAPH))
    assert u.shape == (2, 12) and i.shape == (2, 12)
    assert torch.equal(u[:, :4], model.embedding.weight[:2])
    assert torch.allclose(u[:, 4:8].norm(dim=-1), torch.ones(2))
    assert torch.equal(model.embed(model.prepare(GRAPH))[0], u)  # no dropout in eval


def test_every_parameter_gets_gradient():
    torch.manual_seed(0)
    model = NGCF(2, 2, NGCFConfig(embedding_dim=8, num_layers=2))
    batch = BPRBatch(torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([[1], [0]]))
    out = model.loss(batch, model.prepare(GRAPH))
    assert set(out) == {"loss", "bpr", "l2"}
    out["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.fixture(scope="module")
def planted_world(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("world"))
    generate_world(out, WORLD)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small sparse products: extra threads only contend on a busy machine
    yield out
    torch.set_num_threads(threads)


def fit_recall(world: str, tmp_path, config, epochs: int = 15) -> float:
    """Test Recall@20 after ``epochs`` epochs from seed 0, the same loop for every model."""
    pl.seed_everything(0, verbose=False)
    dm = RecDataModule(data=world, cache_dir=str(tmp_path / "cache"), batch_size=512,
                       num_negatives=4)
    module = RecModule(config, lr=1e-2, ks=(20,), auc=False)
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, limit_val_batches=0, num_sanity_val_steps=0,
                         default_root_dir=str(tmp_path))
    trainer.fit(module, datamodule=dm)
    return trainer.test(module, datamodule=dm, verbose=False)[0]["test/recall@20"]


def test_short_fit_beats_bpr_mf(planted_world, tmp_path):
    ngcf = fit_recall(planted_world, tmp_path, NGCFConfig(embedding_dim=32, num_layers=2))
    mf = fit_recall(planted_world, tmp_path, MFConfig(embedding_dim=32))
    assert ngcf > 1.1 * mf, (ngcf, mf)
