"""Search spaces without Ray running: parsing, every validation error names its key, the keys
checked against the fit config's own parser, ``apply`` and the ``best.yaml`` round trip."""
import glob
import os
import re
import sys

import pytest
from ray import tune

from reelgraph.lightning_modules.cli import ReelGraphCLI, TRAINER_DEFAULTS
from reelgraph.lightning_modules.datamodule import RecDataModule
from reelgraph.lightning_modules.module import RecModule
from reelgraph.tune.export import best_yaml, last_attempt, results_table
from reelgraph.tune.search import check_search, parse_args
from reelgraph.tune.space import apply, check_keys, format_value, param_space, parse_space
from reelgraph.tune.trial import TrialCLI, metric_names

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIT = """
seed_everything: 0
trainer: {max_epochs: 3, accelerator: cpu}
model:
  model: {class_path: reelgraph.models.LightGCNConfig, init_args: {embedding_dim: 8}}
  lr: 0.01
  ks: [20]
data: {data: synthetic:tiny, batch_size: 512}
"""
ARGS = ["--config", FIT]


@pytest.fixture(scope="module")
def parser():
    return TrialCLI(ARGS, instantiate=False).parser


def test_parse_builds_ray_domains():
    space = parse_space("""
model.lr: {loguniform: [1e-3, 3e-2]}             # YAML 1.1 would read 1e-3 as a string
model.model.init_args.embedding_dim: {choice: [32, 64]}
data.num_negatives: {randint: [1, 8]}
model.model.init_args.reg_weight: {quniform: [0, 1.0e-3, 1.0e-4]}
model.weight_decay: {uniform: [0, 0.1]}
model.ks: {grid: [[10, 20], [20]]}
model.model: reelgraph.models.LightGCNConfig
""")
    assert list(space) == ["model.lr", "model.model.init_args.embedding_dim", "data.num_negatives",
                           "model.model.init_args.reg_weight", "model.weight_decay", "model.ks",
                           "model.model"]
    assert space["model.lr"].args == (1e-3, 3e-2) and space["model.lr"].log
    assert space["model.weight_decay"].args == (0.0, 0.1)           # ints made floats
    assert not space["model.model"].searched
    ps = param_space(space)
    assert isinstance(ps["model.lr"], tune.search.sample.Float)
    assert isinstance(ps["data.num_negatives"], tune.search.sample.Integer)
    assert isinstance(ps["model.model.init_args.embedding_dim"], tune.search.sample.Categorical)
    assert ps["model.ks"] == {"grid_search": [[10, 20], [20]]}
    assert ps["model.model"] == "reelgraph.models.LightGCNConfig"
    assert space["data.num_negatives"].probes() == [1, 7]           # Ray's upper bound: exclusive


@pytest.mark.parametrize("text, message", [
    ("model.lr: {logunifrom: [1e-3, 1e-2]}", "model.lr: unknown distribution 'logunifrom'"),
    ("model.lr: {uniform: [0.1, 0.1]}", "model.lr: empty range"),
    ("model.lr: {loguniform: [0.1, 0.01]}", "model.lr: empty range"),
    ("model.lr: {loguniform: [0, 0.01]}", "model.lr: loguniform needs low > 0"),
    ("model.lr: {uniform: [0.1]}", "model.lr: uniform takes [low, high]"),
    ("model.lr: {quniform: [0, 1, 0]}", "model.lr: quniform needs q > 0"),
    ("data.num_negatives: {randint: [4, 4]}", "data.num_negatives: empty range"),
    ("data.num_negatives: {randint: [1.5, 4]}", "data.num_negatives: randint bounds must be integers"),
    ("model.model.init_args.tau: {choice: []}", "model.model.init_args.tau: empty choice"),
    ("model.lr: {grid: []}", "model.lr: empty grid"),
    ("model.lr: {uniform: [0, 1], choice: [1]}", "model.lr: one distribution per key"),
    ("'model/lr': {uniform: [0, 1]}", "'model/lr': not a dotted key"),
    ("config: {choice: [a]}", "config: a command-line action"),
    ("model.lr: 0.01", "space: no key is searched"),
    ("[1, 2]", "space: a non-empty mapping"),
])
def test_shape_errors_name_the_key(text, message):
    with pytest.raises(ValueError, match=re.escape(message)) as e:
        parse_space(text)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("text, message", [
    ("model.lrx: {uniform: [0.001, 0.01]}", "model.lrx: not a key of the fit config"),
    ("data.nope.deeper: {choice: [1]}", "data.nope.deeper: not a key of the fit config"),
    ("model.model.init_args.tau: {choice: [0.1, 0.2]}",          # LightGCN has no tau
     "model.model.init_args.tau: not a key of the fit config"),
    ("model.model.init_args.embedding_dim: {uniform: [16, 64]}",  # a float range on an int field
     "model.model.init_args.embedding_dim: uniform value 16.0 rejected by the fit config"),
    ("data.num_negatives: {choice: [1, two]}", "data.num_negatives: choice value two rejected"),
    ("data.negatives: {choice: [uniform, sideways]}", "data.negatives: choice value sideways"),
])
def test_keys_checked_against_the_fit_parser(parser, text, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)) as e:
        check_keys(parse_space(text), parser, ARGS)
    assert "\n" not in str(e.value)
    if "int field" in text:
        assert "randint" in str(e.value)


def test_fixed_class_is_applied_before_its_init_args(parser):
    space = parse_space("model.model: reelgraph.models.SimGCLConfig\n"
                        "model.model.init_args.tau: {loguniform: [0.05, 0.5]}\n")
    check_keys(space, parser, ARGS)  # tau is a SimGCL field: accepted once the class is fixed


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "configs", "spaces", "*.yaml"))),
                         ids=os.path.basename)
def test_default_spaces_fit_their_models(parser, path):
    with open(path) as f:
        text = f.read()
    assert text.startswith("#") and "Centre" in text       # each says where its centre comes from
    space = parse_space(text)
    check_keys(space, parser, ARGS)
    fixed = {k: p.args[0] for k, p in space.items() if not p.searched}
    cfg = parser.parse_args(apply(ARGS, fixed))
    parser.instantiate_classes(cfg)                       # the model config's own checks pass


def test_apply_formats_values_for_jsonargparse(parser):
    args = apply(ARGS, {"model.model.init_args.embedding_dim": 16, "model.lr": 1e-05,
                        "model.model": "reelgraph.models.MFConfig", "model.auc": False,
                        "data.eval_users": None, "model.ks": [10, 20]})
    assert args[:2] == ARGS
    assert args[2:] == ["--model.lr=1e-05", "--model.model=reelgraph.models.MFConfig",
                        "--model.auc=false", "--data.eval_users=null", "--model.ks=[10, 20]",
                        "--model.model.init_args.embedding_dim=16"]   # parents first
    cfg = parser.parse_args(args)
    assert cfg.model.lr == 1e-05 and cfg.model.model.class_path.endswith("MFConfig")
    assert cfg.model.model.init_args.embedding_dim == 16 and cfg.model.ks == [10, 20]
    assert cfg.data.eval_users is None and cfg.model.auc is False
    import numpy as np
    assert format_value(np.int64(3)) == "3" and format_value(np.float64(0.5)) == "0.5"


def test_metric_and_budget_checks(parser):
    cfg = parser.parse_args(ARGS)
    assert metric_names([20]) == ["val/recall@20", "val/ndcg@20", "val/precision@20",
                                  "val/hitrate@20"]
    space = parse_space("model.lr: {grid: [0.01, 0.02]}")
    ok = parse_args(["--config", __file__, "--space", __file__])[0]
    assert check_search(space, cfg, ok) == 3
    for flags, message in [(["--metric", "val/recall@50"], "--metric val/recall@50"),
                           (["--grace-period", "4"], "--grace-period 4"),
                           (["--search", "optuna"], "model.lr: grid cannot be searched by Optuna")]:
        args = parse_args(["--config", __file__, "--space", __file__, *flags])[0]
        with pytest.raises(ValueError, match="^" + re.escape(message)):
            check_search(space, cfg, args)


def test_cli_flags_and_pass_through():
    args, rest = parse_args(["--config", __file__, "--space", __file__, "--trainer.max_epochs", "3",
                             "--data.batch_size=512", "--storage-path", "rel/dir"])
    assert rest == ["--trainer.max_epochs", "3", "--data.batch_size=512"]
    assert os.path.isabs(args.storage_path) and args.name == "test_space-test_space"
    for bad in (["--resume"], ["--config", __file__], ["--config", __file__, "--space", "nope.yaml"],
                ["--resume", "--name", "x", "--storage-path", "s3://bucket/tune"],
                ["--config", __file__, "--space", __file__, "--reduction-factor", "1"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


def test_best_yaml_is_taken_by_reelgraph_fit(tmp_path):
    path = best_yaml([*ARGS, "--trainer.max_epochs=2"],
                     {"model.lr": 0.003, "model.model.init_args.embedding_dim": 16},
                     str(tmp_path / "best.yaml"), "best trial x\ntrain it: reelgraph fit")
    text = open(path).read()
    assert text.startswith("# best trial x\n# train it")

    class ParseOnly(ReelGraphCLI):  # the `fit` subcommand's parser, nothing instantiated or run
        def instantiate_classes(self):
            pass

        def _run_subcommand(self, subcommand):
            pass

    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        cli = ParseOnly(RecModule, RecDataModule, seed_everything_default=0,
                        args=["fit", "--config", path, "--trainer.max_epochs", "1"],
                        trainer_defaults=TRAINER_DEFAULTS)
    finally:
        sys.argv = argv
    fit = cli.config.fit
    assert fit.model.lr == 0.003 and fit.model.model.init_args.embedding_dim == 16
    assert fit.trainer.max_epochs == 1 and fit.data.batch_size == 512 and fit.model.ks == [20]


def test_results_table_and_resumed_history():
    import pandas as pd

    first = pd.DataFrame({"training_iteration": [1, 2, 1, 2, 3], "epoch": [0, 1, 0, 1, 2],
                          "val/recall@20": [0.1, 0.2, 0.15, 0.25, 0.3]})
    assert last_attempt(first)["val/recall@20"].tolist() == [0.15, 0.25, 0.3]   # from scratch
    went_on = pd.DataFrame({"training_iteration": [1, 2, 1, 2], "epoch": [0, 1, 1, 2],
                            "val/recall@20": [0.1, 0.2, 0.22, 0.3]})        # from epoch 0's ckpt
    assert last_attempt(went_on)["epoch"].tolist() == [0, 1, 2]
    assert last_attempt(went_on)["val/recall@20"].tolist() == [0.1, 0.22, 0.3]
    space = parse_space("model.lr: {loguniform: [1.0e-3, 1.0e-1]}\nmodel.model: x")
    trials = [{"trial_id": "a", "config": {"model.lr": 0.01, "model.model": "x"}, "error": False,
               "history": last_attempt(first), "path": "/a"},
              {"trial_id": "b", "config": {"model.lr": 0.05, "model.model": "x"}, "error": True,
               "history": pd.DataFrame(), "path": "/b"}]
    table = results_table(trials, space, "val/recall@20")
    assert table.columns.tolist() == ["trial_id", "model.lr", "best_val/recall@20",
                                      "last_val/recall@20", "epochs", "status", "trial_dir"]
    assert table.iloc[0].to_dict() | {"trial_dir": None} == {
        "trial_id": "a", "model.lr": 0.01, "best_val/recall@20": 0.3, "last_val/recall@20": 0.3,
        "epochs": 3, "status": "TERMINATED", "trial_dir": None}
    assert table.iloc[1]["status"] == "ERROR" and table.iloc[1]["epochs"] == 0


def test_plots_are_written(tmp_path):
    import pandas as pd

    from reelgraph.tune.export import plot_curves, plot_params

    space = parse_space("model.lr: {loguniform: [1.0e-3, 1.0e-1]}\n"
                        "model.model.init_args.embedding_dim: {choice: [8, 16]}\n"
                        "model.model.init_args.fanouts: {choice: [[5, 5], [10, 5]]}\n")
    history = pd.DataFrame({"training_iteration": [1, 2], "epoch": [0, 1],
                            "val/recall@20": [0.1, 0.2]})
    trials = [{"trial_id": f"t{j}", "error": False, "path": f"/t{j}",
               "config": {"model.lr": 0.01 * (j + 1), "model.model.init_args.embedding_dim": 8,
                          "model.model.init_args.fanouts": [10, 5]},
               "history": history.iloc[: j + 1]} for j in range(2)]
    table = results_table(trials, space, "val/recall@20")
    paths = plot_params(table, space, "val/recall@20", 2, str(tmp_path))
    paths.append(plot_curves(trials, "val/recall@20", str(tmp_path / "curves.png"), "t1"))
    assert [os.path.basename(p) for p in paths] == [
        "metric_vs_model.lr.png", "metric_vs_model.model.init_args.embedding_dim.png",
        "metric_vs_model.model.init_args.fanouts.png", "curves.png"]
    assert all(os.path.getsize(p) > 1000 for p in paths)


@pytest.mark.parametrize("space, message", [
    ("model.model.init_args.tau: {choice: [0.1]}", "model.model.init_args.tau: not a key"),
    ("model.lr: {uniform: [0.1, 0.01]}", "model.lr: empty range"),
])
def test_a_bad_search_stops_before_ray_starts(tmp_path, space, message):
    import ray

    (tmp_path / "fit.yaml").write_text(FIT)
    (tmp_path / "space.yaml").write_text(space)
    from reelgraph.tune.search import run

    with pytest.raises(SystemExit, match=re.escape(message)):
        run(["--config", str(tmp_path / "fit.yaml"), "--space", str(tmp_path / "space.yaml"),
             "--storage-path", str(tmp_path / "tune")])
    assert not ray.is_initialized() and not (tmp_path / "tune").exists()
