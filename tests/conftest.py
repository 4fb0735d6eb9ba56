"""Fixtures shared across the test packages: tiny graphs and stores, planted synthetic worlds, a
short fit and the quality-ratio check.

A quality test asserts a ratio from one short fit (``x / mf > bound``). Its bound is set below the
worst of several seeds, measured by ``benchmarks/quality_bounds.py``, which reruns these tests
with ``--fit-seed k --fit-record FILE`` and tabulates every ratio per seed."""
import json
from dataclasses import replace

import pytest
import torch

from reelgraph.data.store import InMemoryStore
from reelgraph.data.synthetic import WorldConfig, generate_world
from reelgraph.graph import BipartiteGraph
from reelgraph.lightning_modules._pl import pl
from reelgraph.lightning_modules.datamodule import RecDataModule
from reelgraph.lightning_modules.module import RecModule
from reelgraph.models import ModelConfig
from reelgraph.samplers.batch import BPRBatch


def pytest_addoption(parser):
    group = parser.getgroup("reelgraph quality tests")
    group.addoption("--fit-seed", type=int, default=0,
                    help="seed of the short fits in the quality tests (default 0)")
    group.addoption("--fit-record", default=None, metavar="FILE",
                    help="append every quality ratio, its bound and the seed to FILE as JSON lines")


@pytest.fixture
def fit_seed(request) -> int:
    """The seed of a quality test's fits: model init and batch order (``--fit-seed``)."""
    return request.config.getoption("--fit-seed")


@pytest.fixture
def above(request, fit_seed):
    """``above(name, ratio, bound)`` asserts ``ratio > bound``; with ``--fit-record FILE`` it first
    appends ``{test, name, ratio, bound, seed}`` to FILE, so a seed sweep sees every ratio."""
    record = request.config.getoption("--fit-record")

    def check(name: str, ratio: float, bound: float) -> None:
        if record:
            with open(record, "a") as f:
                f.write(json.dumps(dict(test=request.node.nodeid, name=name, ratio=ratio,
                                        bound=bound, seed=fit_seed)) + "\n")
        assert ratio > bound, f"{name} = {ratio:.4f}, needs > {bound} (seed {fit_seed})"

    return check


@pytest.fixture
def small_graph() -> BipartiteGraph:
    """30 users x 40 items, ~250 distinct random edges (seed 0)."""
    g = torch.Generator().manual_seed(0)
    u, i = torch.randint(30, (250,), generator=g), torch.randint(40, (250,), generator=g)
    keys = torch.unique(u * 40 + i)
    return BipartiteGraph.from_edges(keys // 40, keys % 40, 30, 40)


@pytest.fixture
def small_batch(small_graph) -> BPRBatch:
    """12 distinct edges of ``small_graph`` with 3 uniform negatives each (seed 1)."""
    g = torch.Generator().manual_seed(1)
    e = torch.randperm(small_graph.num_edges, generator=g)[:12]
    neg = torch.randint(small_graph.num_items, (12, 3), generator=g)
    return BPRBatch(small_graph.users()[e], small_graph.col[e], neg)


@pytest.fixture
def small_store(small_graph) -> InMemoryStore:
    """``small_graph`` as the train split of an in-memory store."""
    return InMemoryStore(small_graph)


@pytest.fixture(scope="session")
def make_world(tmp_path_factory):
    """``make_world(config) -> folder`` of a generated world, each config generated once."""
    worlds: dict[str, str] = {}

    def make(config: WorldConfig) -> str:
        if repr(config) not in worlds:
            worlds[repr(config)] = str(tmp_path_factory.mktemp("world"))
            generate_world(worlds[repr(config)], config)
        return worlds[repr(config)]

    return make


SMALL_WORLD = WorldConfig(num_users=400, num_items=600, num_creators=60, num_communities=8,
                          popularity_exponent=2.0, avg_interactions=20, max_interactions=80,
                          noise=0.05, kg=False, visual_dim=0, acoustic_dim=0, textual_dim=0,
                          chunk_users=400)


@pytest.fixture(scope="session")
def world(make_world):
    """A small planted world (400 users, 600 videos, 8 communities) with no side data."""
    return make_world(SMALL_WORLD)


@pytest.fixture(scope="session")
def lookup_world(make_world):
    """A smaller planted world (300 users, 400 videos, 6 communities), no side data: the
    row-optimiser fits."""
    return make_world(WorldConfig(num_users=300, num_items=400, num_creators=40,
                                  num_communities=6, popularity_exponent=2.0,
                                  avg_interactions=20, max_interactions=60, noise=0.05, kg=False,
                                  visual_dim=0, acoustic_dim=0, textual_dim=0, chunk_users=300))


@pytest.fixture(scope="session")
def feature_world(make_world):
    """The small world plus a 32-d visual feature that is 90% its video's topic."""
    return make_world(replace(SMALL_WORLD, visual_dim=32, visual_signal=0.9))


@pytest.fixture
def fit_recall(tmp_path, fit_seed):
    """``fit_recall(world, config, epochs=15) -> test Recall@20`` from ``--fit-seed`` (default 0),
    one loop for all. The world and its split stay fixed; the seed draws the model's initial
    weights and the batches."""

    def fit(world: str, config: ModelConfig, epochs: int = 15) -> float:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # small sparse products: extra threads only contend
        try:
            pl.seed_everything(fit_seed, verbose=False)
            dm = RecDataModule(data=world, cache_dir=str(tmp_path / "cache"), batch_size=512,
                               num_negatives=4, seed=fit_seed)
            module = RecModule(config, lr=1e-2, ks=(20,), auc=False)
            trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False,
                                 enable_progress_bar=False, enable_model_summary=False,
                                 enable_checkpointing=False, limit_val_batches=0,
                                 num_sanity_val_steps=0, default_root_dir=str(tmp_path))
            trainer.fit(module, datamodule=dm)
            return trainer.test(module, datamodule=dm, verbose=False)[0]["test/recall@20"]
        finally:
            torch.set_num_threads(threads)

    return fit
