"""``RecModule(sampled_candidates=N)``: the sampled-candidate protocol of
:mod:`reelgraph.sampled_metrics` logged by ``trainer.test`` beside the full ranking, equal to a
direct :func:`evaluate_sampled` on the same seeded candidates; off by default at no cost; and set
from the CLI."""
import pytest
import torch
import yaml

from reelgraph import sampled_metrics
from reelgraph.errors import ConfigError
from reelgraph.lightning_modules._pl import pl
from reelgraph.lightning_modules.cli import main
from reelgraph.lightning_modules.datamodule import RecDataModule
from reelgraph.lightning_modules.module import RecModule
from reelgraph.metrics import inner_product
from reelgraph.models import MFConfig
from reelgraph.sampled_metrics import evaluate_sampled, sample_candidates

SAMPLED_KEYS = ["test/sampled_auc", "test/sampled_ndcg@1", "test/sampled_ndcg@2",
                "test/sampled_num_users"]


def _fit_and_test(world, tmp_path, seed=0, **module_kw):
    pl.seed_everything(seed, verbose=False)
    dm = RecDataModule(data=world, cache_dir=str(tmp_path / "cache"), batch_size=512,
                       num_negatives=4, eval_batch_size=128, seed=seed)
    module = RecModule(MFConfig(embedding_dim=16), lr=1e-2, ks=(20,), auc=False, **module_kw)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False,
                         limit_val_batches=0, num_sanity_val_steps=0,
                         default_root_dir=str(tmp_path))
    trainer.fit(module, datamodule=dm)
    return dm, module, trainer.test(module, datamodule=dm, verbose=False)[0]


def test_logged_sampled_metrics_equal_a_direct_evaluation(world, tmp_path):
    dm, module, test = _fit_and_test(world, tmp_path, sampled_candidates=20, sampled_seed=7)
    store = dm.store
    candidates = sample_candidates(store.graph("test"),
                                   [store.graph(s) for s in ("train", "valid", "test")], 20,
                                   torch.Generator().manual_seed(7))
    with torch.no_grad():
        score = inner_product(*module.model.embed(module.static()))
    direct = evaluate_sampled(score, *candidates, ks=(1, 2), user_batch_size=dm.eval_batch_size)
    for name in ("auc", "ndcg@1", "ndcg@2"):   # exact, up to Lightning's float32 logging
        assert test[f"test/sampled_{name}"] == float(torch.tensor(direct[name], dtype=torch.float32))
    assert test["test/sampled_num_users"] == candidates[0].numel() == test["test/num_users"]
    assert 0.5 < test["test/sampled_auc"] < 1.0   # one epoch of MF ranks above chance
    # another training seed, another model: the candidates stay those of sampled_seed
    dm2, module2, _ = _fit_and_test(world, tmp_path / "other", seed=1, sampled_candidates=20,
                                    sampled_seed=7)
    again = sampled_metrics.store_candidates(dm2.store, 20, 7)
    assert all(torch.equal(x, y) for x, y in zip(again, candidates))


def test_off_by_default_logs_nothing_and_draws_nothing(world, tmp_path, monkeypatch):
    def no_draw(*args, **kwargs):
        raise AssertionError("candidates drawn with sampled_candidates=0")

    monkeypatch.setattr("reelgraph.lightning_modules.module.store_candidates", no_draw)
    _, module, test = _fit_and_test(world, tmp_path)
    assert module.hparams.sampled_candidates == 0
    assert not [k for k in test if "sampled" in k], sorted(test)
    assert "test/recall@20" in test


@pytest.mark.parametrize("kw", [dict(sampled_candidates=-1), dict(sampled_seed=-1),
                                dict(sampled_candidates=5, sampled_ks=[]),
                                dict(sampled_candidates=5, sampled_ks=[0])])
def test_bad_settings_are_config_errors(kw):
    with pytest.raises(ConfigError, match="model.sampled_"):
        RecModule(MFConfig(), **kw)


def test_cli_prints_and_saves_the_sampled_metrics(world, tmp_path, capsys):
    main(["fit", "--data.data", world, "--data.cache_dir", str(tmp_path / "cache"),
          "--data.batch_size", "512", "--trainer.max_epochs", "1", "--trainer.accelerator", "cpu",
          "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path),
          "--model.model", "MFConfig", "--model.model.init_args.embedding_dim", "8",
          "--model.ks", "[20]", "--model.auc", "false", "--model.sampled_candidates", "20",
          "--model.sampled_seed", "3", "--export_dir", str(tmp_path / "emb")])
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "recall@20" in line)
    assert header.split() == ["recall@20", "ndcg@20", "sampled_auc", "sampled_ndcg@1",
                              "sampled_ndcg@2"], out
    rows = {line.split()[0]: [float(v) for v in line.split()[1:]] for line in out.splitlines()
            if line.startswith(("MF", "MostPopular"))}
    assert len(rows) == 2 and all(len(r) == 5 for r in rows.values()), out
    assert all(0.0 < v <= 1.0 for r in rows.values() for v in r[2:]), out   # no nan columns
    assert "among up to 20 items it has in no split (candidate seed 3)" in out
    saved = yaml.safe_load((tmp_path / "lightning_logs" / "version_0" / "config.yaml").read_text())
    assert saved["model"]["sampled_candidates"] == 20 and saved["model"]["sampled_seed"] == 3
    assert saved["model"]["sampled_ks"] == [1, 2]


def test_sums_over_rank_shards_add_up_to_the_whole(world, tmp_path):
    # what RecModule all-reduces: each rank's [rank::world] share of the same candidates
    dm, module, _ = _fit_and_test(world, tmp_path)
    candidates = sampled_metrics.store_candidates(dm.store, 20, 0)
    with torch.no_grad():
        score = inner_product(*module.model.embed(module.static()))
    whole, n = sampled_metrics.sampled_sums(score, *candidates, ks=(1, 2))
    shards = [sampled_metrics.sampled_sums(score, *(c[r::3] for c in candidates), ks=(1, 2))
              for r in range(3)]
    assert sum(s[1] for s in shards) == n == candidates[0].numel()
    for name, v in whole.items():
        assert sum(s[0][name] for s in shards) == pytest.approx(v, rel=1e-12)
