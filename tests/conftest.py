"""Fixtures shared across the test packages: planted synthetic worlds and a short fit."""
import pytest
import torch

from reelgraph.data.synthetic import WorldConfig, generate_world
from reelgraph.lightning_modules._pl import pl
from reelgraph.lightning_modules.datamodule import RecDataModule
from reelgraph.lightning_modules.module import RecModule
from reelgraph.models import ModelConfig


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


@pytest.fixture
def fit_recall(tmp_path):
    """``fit_recall(world, config, epochs=15) -> test Recall@20`` from seed 0, one loop for all."""

    def fit(world: str, config: ModelConfig, epochs: int = 15) -> float:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # small sparse products: extra threads only contend
        try:
            pl.seed_everything(0, verbose=False)
            dm = RecDataModule(data=world, cache_dir=str(tmp_path / "cache"), batch_size=512,
                               num_negatives=4)
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
