"""Bad settings through ``reelgraph fit``: one line on stderr naming the flag and the value given,
exit status 2, nothing trained; ``--traceback`` shows the stack instead (issue 13, part 1)."""
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
