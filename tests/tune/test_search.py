"""Ray Tune searches on the small planted world, on a 2-CPU local Ray (about a minute here).

1. A 4-trial ASHA grid (one good learning rate, three that barely learn, 2 at a time) finishes,
   stops at least one trial early, and writes best.yaml, the table and the plots; ``reelgraph
   fit --config best.yaml`` trains from it.
2. A search whose first trial to reach epoch 1 fails (``--fail-at-epoch``) resumes: ``--resume``
   reruns that trial and every trial ends TERMINATED.
"""
import glob
import os

import pandas as pd
import pytest
import ray
import yaml

from reelgraph.lightning_modules.cli import main as fit_main
from reelgraph.tune.search import STATE_FILE, run
from reelgraph.tune.trial import FAULT_MARKER, LOG_SUBDIR

METRIC = "val/recall@20"


@pytest.fixture(scope="module")
def local_ray():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 << 20,
                 log_to_driver=False)
    yield
    if started:
        ray.shutdown()


def _fit_yaml(tmp_path, world: str, epochs: int) -> str:
    path = tmp_path / "fit.yaml"
    path.write_text(f"""
seed_everything: 0
trainer: {{max_epochs: {epochs}, accelerator: cpu, enable_progress_bar: false,
           enable_model_summary: false, default_root_dir: {tmp_path}/runs}}
model:
  model: {{class_path: reelgraph.models.LightGCNConfig, init_args: {{embedding_dim: 8}}}}
  lr: 0.01
  ks: [20]
  auc: false
data: {{data: {world}, cache_dir: {tmp_path}/cache, batch_size: 512, num_negatives: 4}}
""")
    return str(path)


def _space(tmp_path, text: str) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return str(path)


def test_asha_search_stops_early_and_best_yaml_fits(local_ray, world, tmp_path, capsys):
    # lr 0.02 learns in one epoch; 1e-6.. barely move: whichever order the two concurrent trials
    # reach a rung in, a later slow trial is below the median of the rung and ASHA stops it
    space = _space(tmp_path, "model.lr: {grid: [0.02, 1.0e-6, 2.0e-6, 3.0e-6]}\n"
                             "data.num_negatives: {randint: [1, 5]}\n")
    summary = run(["--config", _fit_yaml(tmp_path, world, 5), "--space", space,
                   "--num-samples", "1", "--max-concurrent-trials", "2", "--cpus-per-trial", "1",
                   "--scheduler", "asha", "--grace-period", "1", "--reduction-factor", "2",
                   "--name", "asha", "--storage-path", str(tmp_path / "tune"), "--seed", "0",
                   "--trainer.max_epochs", "3"])           # pass-through: overrides the YAML's 5
    table = summary.table
    assert summary.num_errors == 0 and len(table) == 4, table
    assert set(table["status"]) == {"TERMINATED"}
    assert table["epochs"].max() == 3 and (table["epochs"] < 3).any(), table   # ASHA stopped one
    assert summary.best["model.lr"] == pytest.approx(0.02)
    assert table.iloc[0]["trial_id"] == summary.best["trial_id"]

    out = summary.experiment_dir
    assert out == str(tmp_path / "tune" / "asha")
    for name in ("best.yaml", "results.parquet", "results.csv", "curves.png", STATE_FILE,
                 "metric_vs_model.lr.png", "metric_vs_data.num_negatives.png"):
        assert os.path.isfile(os.path.join(out, name)), name
    saved = pd.read_parquet(os.path.join(out, "results.parquet"))
    assert len(saved) == 4 and {f"best_{METRIC}", f"last_{METRIC}", "epochs", "status",
                                "model.lr", "data.num_negatives"} <= set(saved.columns)
    # every trial's TensorBoard run (HParams written at its first validation) sits in its folder
    events = glob.glob(os.path.join(out, "trial_*", LOG_SUBDIR, "events.out.tfevents.*"))
    assert len({os.path.dirname(e) for e in events}) == 4, events

    best = yaml.safe_load(open(os.path.join(out, "best.yaml")))
    assert best["model"]["lr"] == pytest.approx(0.02)
    assert best["data"]["num_negatives"] == summary.best["data.num_negatives"]
    assert best["trainer"]["max_epochs"] == 3                 # the search's pass-through stays
    assert best["model"]["model"]["init_args"]["embedding_dim"] == 8
    capsys.readouterr()
    fit_main(["fit", "--config", os.path.join(out, "best.yaml"), "--trainer.max_epochs", "1"])
    assert "MostPopular" in capsys.readouterr().out


def test_interrupted_search_resumes(local_ray, world, tmp_path):
    storage = str(tmp_path / "tune")
    first = run(["--config", _fit_yaml(tmp_path, world, 2),
                 "--space", _space(tmp_path, "model.lr: {loguniform: [5.0e-3, 5.0e-2]}\n"),
                 "--num-samples", "2", "--max-concurrent-trials", "2", "--scheduler", "fifo",
                 "--name", "resume", "--storage-path", storage, "--fail-at-epoch", "1"])
    assert first.num_errors == 1 and len(first.table) == 2, first.table
    assert os.path.exists(os.path.join(first.experiment_dir, FAULT_MARKER))
    failed = first.table.loc[first.table["status"] == "ERROR", "trial_id"].item()

    with pytest.raises(SystemExit, match="--resume continues it"):  # never a silent second search
        run(["--config", _fit_yaml(tmp_path, world, 2), "--space", str(tmp_path / "space.yaml"),
             "--name", "resume", "--storage-path", storage])

    second = run(["--resume", "--name", "resume", "--storage-path", storage])
    table = second.table
    assert second.num_errors == 0 and len(table) == 2, table
    assert set(table["status"]) == {"TERMINATED"} and set(table["epochs"]) == {2}
    assert set(table["trial_id"]) == set(first.table["trial_id"])
    assert failed in set(table["trial_id"])
    assert os.path.isfile(os.path.join(second.experiment_dir, "best.yaml"))
