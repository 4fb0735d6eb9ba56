"""Ray Tune searches on the small planted world, on a 2-CPU local Ray (about a minute here).

1. A 4-trial ASHA grid (one good learning rate, three that barely learn, 2 at a time) finishes,
   stops at least one trial early, and writes best.yaml, the table and the plots; ``reelgraph
   fit --config best.yaml`` trains from it. The search runs once (module fixture ``asha_search``);
   a TensorBoard server on its folder serves every trial with its values and ``hp_metric``
   through the HParams plugin's HTTP API.
2. A search whose first trial to reach epoch 1 fails (``--fail-at-epoch``) resumes: ``--resume``
   continues that trial from its epoch-0 checkpoint and every trial ends TERMINATED; with
   ``--max-failures 1`` the failed trial is retried from its checkpoint within the search.
"""
import glob
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pandas as pd
import pytest
import yaml

from reelgraph.lightning_modules.cli import main as fit_main
from reelgraph.tune.search import STATE_FILE, run
from reelgraph.tune.trial import FAULT_MARKER, LOG_SUBDIR

METRIC = "val/recall@20"


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


ASHA_DIR = "asha"   # the ASHA search's folder under pytest's base temp (tmp_path_factory)


@pytest.fixture(scope="module")
def asha_search(local_ray, world, tmp_path_factory):
    """The 4-trial ASHA search of the small world, run once for the module; its Summary."""
    # lr 0.02 learns in one epoch; 1e-6.. barely move: whichever order the two concurrent trials
    # reach a rung in, a later slow trial is below the median of the rung and ASHA stops it
    base = tmp_path_factory.mktemp(ASHA_DIR, numbered=False)
    space = _space(base, "model.lr: {grid: [0.02, 1.0e-6, 2.0e-6, 3.0e-6]}\n"
                         "data.num_negatives: {randint: [1, 5]}\n")
    return run(["--config", _fit_yaml(base, world, 5), "--space", space,
                "--num-samples", "1", "--max-concurrent-trials", "2", "--cpus-per-trial", "1",
                "--scheduler", "asha", "--grace-period", "1", "--reduction-factor", "2",
                "--name", "asha", "--storage-path", str(base / "tune"), "--seed", "0",
                "--trainer.max_epochs", "3"])              # pass-through: overrides the YAML's 5


def test_asha_search_stops_early_and_best_yaml_fits(asha_search, tmp_path_factory, capsys):
    summary = asha_search
    table = summary.table
    assert summary.num_errors == 0 and len(table) == 4, table
    assert set(table["status"]) == {"TERMINATED"}
    assert table["epochs"].max() == 3 and (table["epochs"] < 3).any(), table   # ASHA stopped one
    assert summary.best["model.lr"] == pytest.approx(0.02)
    assert table.iloc[0]["trial_id"] == summary.best["trial_id"]

    out = summary.experiment_dir
    assert out == str(tmp_path_factory.getbasetemp() / ASHA_DIR / "tune" / "asha")
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
    from reelgraph.distributed.train import RayCLI  # the Ray Train entry's parser takes it too
    RayCLI(["--config", os.path.join(out, "best.yaml")], instantiate=False)
    capsys.readouterr()
    fit_main(["fit", "--config", os.path.join(out, "best.yaml"), "--trainer.max_epochs", "1"])
    assert "MostPopular" in capsys.readouterr().out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def _post(url: str, body: dict):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.load(r)


def test_tensorboard_serves_every_trial_with_its_hparams(asha_search, tmp_path):
    # `tensorboard --logdir <experiment>` (the search's docstring): each trial's Lightning run
    # <trial_id>/lightning is an HParams session with the trial's values and hp_metric (its best
    # val/recall@20, written at every validation, so also for the trials ASHA stopped)
    table = asha_search.table
    runs = {f"trial_{row['trial_id']}/{LOG_SUBDIR}": row for row in table.to_dict("records")}
    assert len(runs) == 4, table
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "tensorboard.log", "w+")
    tb = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir",
                           asha_search.experiment_dir, "--host", "127.0.0.1", "--port", str(port),
                           "--load_fast=false"], stdout=log, stderr=subprocess.STDOUT,
                          cwd=tmp_path)
    everything = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]
    groups_request = {"experimentName": "", "allowedStatuses": everything, "colParams": [],
                      "startIndex": 0, "sliceSize": 100, "includeMetrics": True}
    try:
        deadline, served = time.monotonic() + 60, set()
        while True:  # until it answers and has loaded every trial's run (loading is async)
            assert tb.poll() is None, f"tensorboard exited {tb.returncode}: " \
                                      f"{(tmp_path / 'tensorboard.log').read_text()}"
            try:
                groups = _post(f"{url}/data/plugin/hparams/session_groups", groups_request)
                served = {s["name"] for g in groups["sessionGroups"] for s in g["sessions"]}
                if set(runs) <= served:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.monotonic() < deadline, f"TensorBoard served {sorted(served)} after " \
                                                f"60 s, not {sorted(runs)}"
            time.sleep(0.5)

        assert set(runs) <= set(_get(f"{url}/data/runs"))
        tags = _get(f"{url}/data/plugin/scalars/tags")
        for name in runs:
            assert {METRIC, "hp_metric"} <= set(tags[name]), (name, sorted(tags[name]))
        experiment = _post(f"{url}/data/plugin/hparams/experiment",
                           {"experimentName": "", "includeMetrics": True})
        assert {"model.lr", "data.num_negatives"} <= {h["name"] for h in experiment["hparamInfos"]}

        sessions = {s["name"]: g for g in groups["sessionGroups"] for s in g["sessions"]}
        for name, row in runs.items():
            hparams = sessions[name]["hparams"]
            assert hparams["model.lr"] == pytest.approx(row["model.lr"]), (name, hparams)
            assert hparams["data.num_negatives"] == row["data.num_negatives"], (name, hparams)
            # the session's metric values list only the metrics of the one Experiment summary
            # TensorBoard picks (Ray's own TBX runs write one too): ask for hp_metric by name
            evals = _post(f"{url}/data/plugin/hparams/metric_evals",
                          {"experimentName": "", "sessionName": name,
                           "metricName": {"tag": "hp_metric", "group": ""}})
            assert evals, name                               # [[wall_time, step, value], ...]
            assert evals[-1][2] == pytest.approx(row[f"best_{METRIC}"], rel=1e-5), (name, evals)
            assert max(v for _, _, v in evals) == pytest.approx(evals[-1][2]), evals  # best so far
    finally:
        tb.terminate()
        try:
            tb.wait(timeout=15)
        except subprocess.TimeoutExpired:
            tb.kill()
            tb.wait()
        log.close()


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
    # the failed trial went on from its epoch-0 checkpoint: epoch 0 was trained once
    assert _reported_epochs(second, failed) == [0, 1]


def _reported_epochs(summary, trial_id: str) -> list[int]:
    """The ``epoch`` of every report in the trial's result.json (all its attempts)."""
    folder = summary.table.loc[summary.table["trial_id"] == trial_id, "trial_dir"].item()
    with open(os.path.join(folder, "result.json")) as f:
        return [json.loads(line)["epoch"] for line in f if line.strip()]


def test_failed_trial_is_retried_from_its_checkpoint(local_ray, world, tmp_path):
    summary = run(["--config", _fit_yaml(tmp_path, world, 3),
                   "--space", _space(tmp_path, "model.lr: {grid: [0.01]}\n"),
                   "--num-samples", "1", "--scheduler", "fifo", "--name", "retry",
                   "--storage-path", str(tmp_path / "tune"), "--fail-at-epoch", "1",
                   "--max-failures", "1"])
    assert summary.num_errors == 0 and summary.table["status"].tolist() == ["TERMINATED"]
    assert os.path.exists(os.path.join(summary.experiment_dir, FAULT_MARKER))  # it did fail
    assert _reported_epochs(summary, summary.table["trial_id"].item()) == [0, 1, 2]


def test_multi_worker_trials_report_retry_and_log(local_ray, world, asha_search, tmp_path):
    # --workers-per-trial 2: the trial drives a 2-worker TorchTrainer. Its one trial fails at
    # epoch 1 and is retried: Ray Train goes on from the epoch-0 checkpoint of <trial>/train
    summary = run(["--config", _fit_yaml(tmp_path, world, 3),
                   "--space", _space(tmp_path, "model.lr: {grid: [0.02]}\n"),
                   "--num-samples", "1", "--scheduler", "fifo", "--workers-per-trial", "2",
                   "--name", "workers", "--storage-path", str(tmp_path / "tune"),
                   "--fail-at-epoch", "1", "--max-failures", "1"])
    assert summary.num_errors == 0 and summary.table["status"].tolist() == ["TERMINATED"]
    assert os.path.exists(os.path.join(summary.experiment_dir, FAULT_MARKER))  # it did fail
    trial = summary.table["trial_id"].item()
    assert _reported_epochs(summary, trial) == [0, 1, 2]
    assert summary.table["epochs"].item() == 3
    assert summary.best[f"best_{METRIC}"] > 0
    folder = summary.table["trial_dir"].item()
    assert glob.glob(os.path.join(folder, "train", "checkpoint_*", "checkpoint.ckpt"))
    assert glob.glob(os.path.join(folder, LOG_SUBDIR, "events.out.tfevents.*"))
    # each rank trains on half the edges: an epoch is half the steps of a one-process trial
    with open(os.path.join(folder, "result.json")) as f:
        steps = [json.loads(line)["step"] for line in f if line.strip()]
    one = asha_search.table["trial_dir"].iloc[0]
    with open(os.path.join(one, "result.json")) as f:
        single = json.loads(f.readline())["step"]
    assert steps == [steps[0] * (e + 1) for e in range(3)], steps
    with open(os.path.join(folder, "result.json")) as f:   # ASHA's time goes on over the retry
        assert [json.loads(line)["validations"] for line in f if line.strip()] == [1, 2, 3]
    assert steps[0] in (single // 2, (single + 1) // 2), (steps, single)
