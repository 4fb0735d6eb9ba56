"""Ray Train on 2 CPU workers over loopback, on a small planted world.

Four real runs (about a minute each here): a clean 2-epoch run, a rerun of it to 3 epochs that
must resume, a run whose rank 1 raises mid-epoch 1 and must recover through FailureConfig, and
one whose rank 1 is SIGKILLed mid-epoch 2 and must resume at epoch 2. The resume point itself
(the newest complete checkpoint, Ray's or on disk) is tested without Ray first.
"""
import os

import pytest
import ray
import torch

from reelgraph.data.synthetic import WorldConfig, generate_world
from reelgraph.distributed.train import (CHECKPOINT_FILE, FAULT_MARKER, build_trainer,
                                         resume_point)
from reelgraph.lightning_modules.datamodule import RecDataModule
from reelgraph.lightning_modules.module import RecModule
from reelgraph.metrics import evaluate

WORLD = WorldConfig(num_users=400, num_items=600, num_creators=60, num_communities=8,
                    popularity_exponent=2.0, avg_interactions=20, max_interactions=80, noise=0.05,
                    kg=False, visual_dim=0, acoustic_dim=0, textual_dim=0, chunk_users=400)
BATCH = 512


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    out = tmp_path_factory.mktemp("ray_train")
    generate_world(str(out / "world"), WORLD)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 << 20,
                 log_to_driver=False)
    yield out
    if started:
        ray.shutdown()


def _config(root, epochs: int) -> list[str]:
    """The same YAML `reelgraph fit --config` takes, as text (what the CLI entry ships to workers)."""
    yaml = f"""
seed_everything: 0
trainer: {{max_epochs: {epochs}, logger: false, enable_progress_bar: false,
           enable_model_summary: false, default_root_dir: {root}/runs}}
model:
  model: {{class_path: reelgraph.models.LightGCNConfig, init_args: {{embedding_dim: 32}}}}
  lr: 0.01
  ks: [20]
data: {{data: {root}/world, cache_dir: {root}/cache, batch_size: {BATCH}, num_negatives: 4}}
"""
    return ["--config", yaml]


def _fit(root, name: str, epochs: int, **kw):
    trainer = build_trainer(_config(root, epochs), num_workers=2, storage_path=str(root / "ray"),
                            name=name, num_to_keep=None, **kw)
    result = trainer.fit()
    assert result.error is None, result.error
    return result


def _epochs(result) -> list[int]:
    return sorted(m["epoch"] for _, m in result.best_checkpoints)


@pytest.fixture(scope="module")
def clean(root):
    return _fit(root, "clean", epochs=2)


@pytest.fixture(scope="module")
def resumed(root, clean):
    return _fit(root, "clean", epochs=3)  # same name and storage: resumes the clean run


def test_two_workers_learn_and_sharded_metrics_equal_single_process(root, clean):
    history = clean.return_value["history"]
    assert [h["epoch"] for h in history] == [0, 1] and _epochs(clean) == [0, 1]
    assert history[1]["train/loss_epoch"] < history[0]["train/loss_epoch"] - 0.005, history
    dm = RecDataModule(data=str(root / "world"), cache_dir=str(root / "cache"))
    dm.setup()
    valid_users = int((dm.valid_graph.degree()[0] > 0).sum())
    for checkpoint, metrics in clean.best_checkpoints:
        module = RecModule.from_checkpoint(os.path.join(checkpoint.path, CHECKPOINT_FILE), dm.store)
        with torch.no_grad():
            users, items = module.model.embed(module.sampling_plan.static(dm.store, torch.device("cpu")))
        direct = evaluate(users, items, dm.train_graph, dm.valid_graph, ks=(20,), auc=False).means()
        # each rank ranked half the users; the all-reduced sums give the whole-set metrics
        assert metrics["val/num_users"] == valid_users
        for name in ("recall@20", "ndcg@20", "precision@20"):
            assert metrics[f"val/{name}"] == pytest.approx(direct[name], rel=1e-6, abs=1e-7), name
    first, last = (m["val/recall@20"] for _, m in sorted(clean.best_checkpoints,
                                                          key=lambda cm: cm[1]["epoch"]))
    assert last > first  # the checkpoints differ, so the comparison above is not vacuous


def test_rerun_resumes_from_the_latest_checkpoint(clean, resumed):
    steps = clean.metrics["step"] // 2  # optimiser steps per epoch
    assert resumed.return_value["resumed"] and resumed.return_value["start_epoch"] == 2
    assert [h["epoch"] for h in resumed.return_value["history"]] == [2]
    assert resumed.metrics["epoch"] == 2 and resumed.metrics["step"] == 3 * steps
    assert _epochs(resumed) == [0, 1, 2]


def test_worker_failure_recovers_and_finishes_every_epoch(root, resumed):
    result = _fit(root, "fault", epochs=3, max_failures=1,
                  fault={"epoch": 1, "rank": 1, "batch": 1})
    assert os.path.exists(root / "ray" / "fault" / FAULT_MARKER)  # the fault did fire
    back = result.return_value  # the second attempt's rank 0
    assert back["resumed"] and back["start_epoch"] == 1
    assert result.metrics["epoch"] == 2 and _epochs(result) == [0, 1, 2]
    # restarting from the epoch-0 checkpoint is exact: same weights as the uninterrupted epochs
    assert result.metrics["val/recall@20"] == pytest.approx(resumed.metrics["val/recall@20"],
                                                            rel=1e-6)
    assert result.metrics["step"] == resumed.metrics["step"]


def test_worker_killed_with_sigkill_resumes_at_the_next_epoch(root, resumed):
    """A real crash: rank 1 SIGKILLs itself mid-epoch 2, after the epochs 0 and 1 were reported.
    The restarted group must start at epoch 2, not 0 (equal final metrics alone would not tell:
    a deterministic rerun from scratch ends the same)."""
    result = _fit(root, "kill", epochs=3, max_failures=1,
                  fault={"epoch": 2, "rank": 1, "batch": 1, "kill": True})
    assert os.path.exists(root / "ray" / "kill" / FAULT_MARKER)
    back = result.return_value
    assert back["resumed"] and back["start_epoch"] == 2, back["resumed_from"]
    assert [h["epoch"] for h in back["history"]] == [2]
    assert result.metrics["val/recall@20"] == pytest.approx(resumed.metrics["val/recall@20"],
                                                            rel=1e-6)


# -- the resume point, without Ray ----------------------------------------------------------
def _ckpt(folder, epoch: int, step: int, truncate: bool = False) -> str:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, CHECKPOINT_FILE)
    torch.save({"epoch": epoch, "global_step": step, "state_dict": {"w": torch.ones(1000)}}, path)
    if truncate:  # half-written: the upload was cut
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
    return path


def test_resume_point_is_the_newest_complete_checkpoint(tmp_path):
    run = tmp_path / "run"
    assert resume_point(None, str(run)) == (None, "no complete checkpoint: training from the start")
    e0 = _ckpt(run / "checkpoint_2026-01-01_00-00-00.000000", 0, 10)
    e1 = _ckpt(run / "checkpoint_2026-01-01_00-01-00.000000", 1, 20)
    _ckpt(run / "checkpoint_2026-01-01_00-02-00.000000", 2, 30, truncate=True)  # never picked
    path, why = resume_point(None, str(run))  # Ray handed over nothing (the race)
    assert path == e1 and "on disk (epoch 1), Ray handed over none" in why
    handed = _ckpt(tmp_path / "ray-copy", 0, 10)  # Ray handed over an older one
    path, why = resume_point(handed, str(run))
    assert path == e1 and "newer than the one Ray handed over (epoch 0)" in why
    newest = _ckpt(tmp_path / "ray-newest", 1, 20)
    assert resume_point(newest, str(run))[0] == newest  # Ray's is the newest: it is used
    assert resume_point(e0, None)[0] == e0                # no run folder (remote storage)
