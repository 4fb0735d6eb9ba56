"""Bad settings through ``reelgraph fit``: one line on stderr naming the flag and the value given,
exit status 2, nothing trained; ``--traceback`` shows the stack instead (issue 13, part 1)."""
import json

import pytest

from reelgraph.errors import ConfigError, user_error
from reelgraph.lightning_modules.cli import main

LGCN = ["--model.model=LightGCNConfig"]
CASES = {  # flags -> what the one line must say
    "batch_size 0": (["--data.batch_size=0"], "data.batch_size=0: must be an int >= 1"),
    "batch_size -5": (["--data.batch_size=-5"], "data.batch_size=-5: must be an int >= 1"),
    "eval_batch_size 0": (["--data.eval_batch_size=0"], "data.eval_batch_size=0: must be"),
    "num_negatives 0": (["--data.num_negatives=0"], "data.num_negatives=0: must be"),
    "num_negatives -1": (["--data.num_negatives=-1"], "data.num_negatives=-1: must be"),
    "num_workers -1": (["--data.num_workers=-1"], "data.num_workers=-1: must be an int >= 0"),
    "prefetch 0": (["--data.prefetch_factor=0"], "data.prefetch_factor=0: must be"),
    "seed -1": (["--data.seed=-1"], "data.seed=-1: must be an int >= 0"),
    "eval_users 0": (["--data.eval_users=0"], "data.eval_users=0: must be"),
    "popularity_alpha -1": (["--data.popularity_alpha=-1"], "data.popularity_alpha=-1.0: must be"),
    "popularity_alpha nan": (["--data.popularity_alpha=nan"], 'key "data.popularity_alpha"'),
    "lr 0": (["--model.lr=0"], "model.lr=0.0: must be a number > 0"),
    "lr -1e-3": (["--model.lr=-1e-3"], "model.lr=-0.001: must be a number > 0"),
    "lr inf": (["--model.lr=inf"], 'Parser key "model.lr": Expected a <class \'float\'>'),
    "lr nan": (["--model.lr=nan"], 'Parser key "model.lr": Expected a <class \'float\'>'),
    "lr text": (["--model.lr=fast"], 'Parser key "model.lr"'),
    "negatives kind": (["--data.negatives=hard"], 'key "data.negatives"'),
    "unknown flag": (["--data.batchsize=64"], "unrecognized arguments: --data.batchsize=64"),
    "batch_size float": (["--data.batch_size=2.5"], 'key "data.batch_size"'),
    "weight_decay -1": (["--model.weight_decay=-1"], "model.weight_decay=-1.0: must be"),
    "item_chunk_size 0": (["--model.item_chunk_size=0"], "model.item_chunk_size=0: must be"),
    "ks empty": (["--model.ks=[]"], "model.ks=[]: give at least one cut-off"),
    "ks 0": (["--model.ks=[0, 20]"], "model.ks=0: must be an int >= 1"),
    "embedding_dim 0": (LGCN + ["--model.model.init_args.embedding_dim=0"],
                        "LightGCNConfig: embedding_dim=0; must be an int >= 1"),
    "embedding_dim -8": (LGCN + ["--model.model.init_args.embedding_dim=-8"],
                         "LightGCNConfig: embedding_dim=-8; must be an int >= 1"),
    "reg_weight -1": (LGCN + ["--model.model.init_args.reg_weight=-1"],
                      "LightGCNConfig: reg_weight=-1.0; must be a finite number >= 0"),
    "num_layers -1": (LGCN + ["--model.model.init_args.num_layers=-1"],
                      "LightGCNConfig: num_layers=-1; must be an int >= 0"),
    "fanouts length": (LGCN + ["--model.model.init_args.fanouts=[10, 5]"],
                       "LightGCNConfig: 2 fanouts [10, 5] for num_layers=3"),
    "data folder": (["--data.data=/nonexistent/reelgraph-data"],
                    "--data '/nonexistent/reelgraph-data': no such folder"),
    "synthetic preset": (["--data.data=synthetic:gigantic"], "unknown synthetic preset 'gigantic'"),
}


@pytest.mark.parametrize("name", CASES)
def test_a_bad_setting_is_one_line_naming_it(name, tmp_path, capsys):
    flags, want = CASES[name]
    args = ["fit", "--data.data=synthetic:tiny", f"--data.cache_dir={tmp_path}/cache",
            f"--trainer.default_root_dir={tmp_path}", "--trainer.max_epochs=1", *flags]
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("reelgraph: error: "), err
    assert want in err[0], err[0]
    assert not list(tmp_path.glob("**/*.ckpt"))  # nothing trained


def test_traceback_flag_shows_the_stack(tmp_path):
    args = ["fit", "--data.data=synthetic:tiny", f"--data.cache_dir={tmp_path}/cache",
            "--data.batch_size=0", "--traceback"]
    with pytest.raises(ConfigError, match="data.batch_size=0"):
        main(args)


def test_user_error_is_found_through_a_wrapping_error():
    try:
        try:
            raise ConfigError("x=1: must be 2")
        except ConfigError as e:
            raise ValueError("Does not validate against any of the Union subtypes") from e
    except ValueError as wrapped:
        assert str(user_error(wrapped)) == "x=1: must be 2"
    assert user_error(RuntimeError("a bug")) is None  # not a user error: the stack is shown


def _interactions(folder, num_users: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    users = [u for u in range(num_users) for _ in range(6)]
    items = [(u * 7 + k) % 40 for u in range(num_users) for k in range(6)]
    pq.write_table(pa.table({"user_id": users, "item_id": items}), folder / "interactions.parquet")


def test_an_input_edited_between_two_fits_rebuilds_the_store(tmp_path, caplog):
    data = tmp_path / "ds"
    args = ["fit", f"--data.data={data}", f"--data.cache_dir={tmp_path}/cache",
            f"--trainer.default_root_dir={tmp_path}", "--trainer.max_epochs=1",
            "--trainer.enable_progress_bar=false", "--data.batch_size=64"]
    _interactions(data, 30)
    main(args)
    stores = list((tmp_path / "cache" / "stores").iterdir())
    first = json.loads((stores[0] / "meta.json").read_text())
    assert len(stores) == 1 and first["num_nodes"]["user"] == 30
    _interactions(data, 45)                          # the user adds 15 users to the same file
    with caplog.at_level("WARNING", logger="reelgraph.data"):
        main(args)
    second = json.loads((stores[0] / "meta.json").read_text())
    assert second["num_nodes"]["user"] == 45, "the second fit trained on the stale store"
    assert "changed since its store was built (interactions.parquet): rebuilding" in caplog.text


def test_bad_data_through_fit_is_one_line(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = tmp_path / "ds"
    _interactions(data, 10)
    table = pq.read_table(data / "interactions.parquet")
    weight = pa.array([1.0] * (table.num_rows - 1) + [float("inf")])
    pq.write_table(table.append_column("weight", weight), data / "interactions.parquet")
    with pytest.raises(SystemExit) as exit_:
        main(["fit", f"--data.data={data}", f"--data.cache_dir={tmp_path}/cache",
              f"--trainer.default_root_dir={tmp_path}", "--trainer.max_epochs=1"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "interactions.parquet: column 'weight' has 1 ±inf values" in err[0], err
    assert not list((tmp_path / "cache").glob("**/*.partial"))
