"""The Lightning path end to end on a small planted world: learning, checkpoints, export, CLI."""
import pyarrow.parquet as pq
import pytest
import torch

from reelgraph.lightning_modules._pl import pl
from reelgraph.lightning_modules.cli import main, popularity_baseline
from reelgraph.lightning_modules.datamodule import RecDataModule
from reelgraph.lightning_modules.module import NonFiniteLossError, RecModule
from reelgraph.metrics import evaluate
from reelgraph.models import LightGCNConfig, MFConfig


def _dm(world, tmp_path, **kw):
    return RecDataModule(data=world, cache_dir=str(tmp_path / "cache"), batch_size=512,
                         num_negatives=4, **kw)


def _trainer(tmp_path, epochs, **kw):
    return pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=str(tmp_path), **kw)


@pytest.mark.parametrize("config", [LightGCNConfig(embedding_dim=32), MFConfig(embedding_dim=32)])
def test_training_beats_most_popular(world, tmp_path, config):
    pl.seed_everything(0)
    dm = _dm(world, tmp_path)
    module = RecModule(config, lr=1e-2, ks=(20,))
    trainer = _trainer(tmp_path, 15, enable_checkpointing=False)
    trainer.fit(module, datamodule=dm)
    test = trainer.test(module, datamodule=dm, verbose=False)[0]
    pop = popularity_baseline(dm, (20,))
    assert test["test/recall@20"] > 1.3 * pop["test/recall@20"], (test, pop)
    # the logged metric equals a direct evaluation of the same embeddings
    with torch.no_grad():
        u, i = module.model.embed(module.model.prepare(dm.train_graph))
    direct = evaluate(u, i, dm.history, dm.test_graph, ks=(20,)).means()
    assert test["test/recall@20"] == pytest.approx(direct["recall@20"], rel=1e-6)


def test_nan_loss_raises_clear_error(world, tmp_path):
    dm = _dm(world, tmp_path)
    module = RecModule(LightGCNConfig(embedding_dim=8), lr=1e-2)
    trainer = _trainer(tmp_path, 1, enable_checkpointing=False)
    trainer.fit(module, datamodule=dm)  # builds the model
    with torch.no_grad():
        module.model.embedding.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match="loss term 'loss' is nan"):
        _trainer(tmp_path, 2, enable_checkpointing=False).fit(module, datamodule=dm)


def test_cli_fit_exports_embeddings_and_resumes(world, tmp_path, capsys):
    args = ["fit", "--data.data", world, "--data.cache_dir", str(tmp_path / "cache"),
            "--data.batch_size", "512", "--trainer.max_epochs", "2", "--trainer.accelerator", "cpu",
            "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path),
            "--model.model", "MFConfig", "--model.model.init_args.embedding_dim", "16",
            "--export_dir", str(tmp_path / "emb")]
    main(args)
    out = capsys.readouterr().out
    assert "MostPopular" in out and "recall@20" in out
    users = pq.read_table(tmp_path / "emb" / "users.parquet")
    assert users.num_rows == 400 and users["user_id"][0].as_py() >= 10_000_000
    assert len(users["embedding"][0]) == 16
    ckpt_dir = tmp_path / "lightning_logs" / "version_0" / "checkpoints"
    assert (ckpt_dir / "last.ckpt").exists()
    # resume: the restored run continues from epoch 2 and stops at 3
    main(args[:-2] + ["--trainer.max_epochs", "3", "--ckpt_path", str(ckpt_dir / "last.ckpt")])
    last = torch.load(tmp_path / "lightning_logs" / "version_1" / "checkpoints" / "last.ckpt",
                      weights_only=False)
    assert last["epoch"] == 2
