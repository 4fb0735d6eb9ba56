"""CKG and ISGNN (issue 17) under ``reelgraph-tune`` with their search spaces
(``configs/spaces/ckg.yaml``, ``isgnn.yaml``) and under the Ray Train entry
(:func:`reelgraph.distributed.train.build_trainer`): one trial, one worker, one epoch each, on a
small planted world with an item KG (the generator of ``tests/models/test_ckg.py``'s
``KG_WORLD``, smaller), in one local Ray session shared by the four runs."""
import math
import os

import pytest
import torch
import yaml

from reelgraph.data.synthetic import WorldConfig
from reelgraph.distributed.train import CHECKPOINT_FILE, build_trainer
from reelgraph.tune.search import run

METRIC = "val/recall@20"
SPACES = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "spaces")
KG_WORLD = WorldConfig(num_users=200, num_items=300, num_creators=30, num_communities=6,
                       popularity_exponent=2.0, avg_interactions=8, min_interactions=3,
                       max_interactions=40, noise=0.05, kg=True, visual_dim=0, acoustic_dim=0,
                       textual_dim=0, chunk_users=200)
# small enough for one CPU epoch in seconds, whatever the space draws for the rest
MODELS = {"ckg": "reelgraph.models.CKGConfig", "isgnn": "reelgraph.models.ISGNNConfig"}


@pytest.fixture(scope="module")
def kg_world(make_world) -> str:
    return make_world(KG_WORLD)


def _fit_yaml(tmp_path, world: str, model: str) -> str:
    path = tmp_path / "fit.yaml"
    path.write_text(f"""
seed_everything: 0
trainer: {{max_epochs: 1, accelerator: cpu, enable_progress_bar: false,
           enable_model_summary: false, default_root_dir: {tmp_path}/runs}}
model:
  model: {{class_path: {model}, init_args: {{embedding_dim: 8}}}}
  lr: 0.01
  ks: [20]
  auc: false
data: {{data: {world}, cache_dir: {tmp_path}/cache, batch_size: 1024, num_negatives: 1}}
""")
    return str(path)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_tune_runs_the_models_search_space(local_ray, kg_world, tmp_path, name):
    summary = run(["--config", _fit_yaml(tmp_path, kg_world, MODELS[name]),
                   "--space", os.path.join(SPACES, f"{name}.yaml"), "--num-samples", "1",
                   "--scheduler", "fifo", "--cpus-per-trial", "1", "--name", name,
                   "--storage-path", str(tmp_path / "tune"), "--seed", "0",
                   "--trainer.max_epochs", "1"])
    table = summary.table
    assert summary.num_errors == 0 and table["status"].tolist() == ["TERMINATED"], table
    assert table["epochs"].item() == 1
    assert math.isfinite(summary.best[f"best_{METRIC}"]), summary.best
    best = yaml.safe_load(open(os.path.join(summary.experiment_dir, "best.yaml")))
    assert best["model"]["model"]["class_path"] == MODELS[name]
    assert best["model"]["model"]["init_args"]["embedding_dim"] in (32, 64, 128)  # the space's


@pytest.mark.parametrize("name", sorted(MODELS))
def test_ray_train_fits_the_model(local_ray, kg_world, tmp_path, name):
    trainer = build_trainer(["--config", _fit_yaml(tmp_path, kg_world, MODELS[name]),
                             "--trainer.logger", "false"], num_workers=1,
                            storage_path=str(tmp_path / "ray"), name=name, num_to_keep=None)
    result = trainer.fit()
    assert result.error is None, result.error
    assert [h["epoch"] for h in result.return_value["history"]] == [0]
    assert math.isfinite(result.metrics[METRIC]) and result.metrics["val/num_users"] > 0
    ckpt = torch.load(os.path.join(result.checkpoint.path, CHECKPOINT_FILE), weights_only=False)
    assert ckpt["hyper_parameters"]["model"]["class_path"].endswith(MODELS[name].split(".")[-1])
