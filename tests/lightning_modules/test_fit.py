"""The Lightning path end to end on a small planted world: learning, checkpoints, export, CLI."""
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from reelgraph.lightning_modules._pl import pl
from reelgraph.lightning_modules.callbacks import Checkpoint
from reelgraph.lightning_modules.cli import main, popularity_baseline
from reelgraph.lightning_modules.datamodule import RecDataModule
from reelgraph.lightning_modules.module import NonFiniteLossError, RecModule
from reelgraph.metrics import evaluate, popularity_scores
from reelgraph.models import LightGCNConfig, MFConfig, NGCFConfig, SimGCLConfig


def _dm(world, tmp_path, **kw):
    return RecDataModule(data=world, cache_dir=str(tmp_path / "cache"), batch_size=512,
                         num_negatives=4, **kw)


def _trainer(tmp_path, epochs, **kw):
    return pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=str(tmp_path), **kw)


@pytest.mark.parametrize("config", [LightGCNConfig(embedding_dim=32), MFConfig(embedding_dim=32)])
def test_training_beats_most_popular(world, tmp_path, config, fit_seed, above):
    # seeds 0-5 (benchmarks/quality_bounds.py): LightGCN / most-popular 2.835-2.962, BPR-MF /
    # most-popular 1.722-2.041
    pl.seed_everything(fit_seed)
    dm = _dm(world, tmp_path, seed=fit_seed)
    module = RecModule(config, lr=1e-2, ks=(20,))
    trainer = _trainer(tmp_path, 15, enable_checkpointing=False)
    trainer.fit(module, datamodule=dm)
    test = trainer.test(module, datamodule=dm, verbose=False)[0]
    pop = popularity_baseline(dm, (20,))
    above(f"{type(config).__name__}/most-popular", test["test/recall@20"] / pop["test/recall@20"],
          1.5)
    # the logged metric equals a direct evaluation of the same embeddings
    with torch.no_grad():
        u, i = module.model.embed(dm.static("cpu"))
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


def test_cli_export_is_the_eval_mode_model(world, tmp_path):
    # NGCF's message dropout must be off in the exported embeddings (Trainer.test leaves the
    # module in train mode; the export once carried a dropout draw, up to 0.72 off)
    args = ["fit", "--data.data", world, "--data.cache_dir", str(tmp_path / "cache"),
            "--data.batch_size", "512", "--trainer.max_epochs", "1", "--trainer.accelerator", "cpu",
            "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path),
            "--model.model", "NGCFConfig", "--model.model.init_args.embedding_dim", "16",
            "--model.model.init_args.message_dropout", "0.5", "--export_dir", str(tmp_path / "emb")]
    main(args)
    dm = _dm(world, tmp_path, plan=NGCFConfig().plan())
    dm.setup("fit")
    ckpt = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    module = RecModule.from_checkpoint(str(ckpt), dm.store).eval()
    with torch.no_grad():
        _, items = module.model.embed(dm.static("cpu"))
    got = torch.tensor(pq.read_table(tmp_path / "emb" / "items.parquet")["embedding"].to_pylist())
    torch.testing.assert_close(got, items, rtol=1e-5, atol=1e-6)   # rows in index order


# -- determinism: workers, resume; metric averaging ------------------------------------------
@pytest.fixture
def one_thread():
    """Bit-for-bit runs need one intra-op thread: CPU sparse kernels on several threads sum in a
    thread-dependent order (two num_workers=0 runs on 2 threads differed by ~1e-6 after 2
    epochs; the batches themselves are identical, tests/samplers/test_loader.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


SAMPLED = LightGCNConfig(embedding_dim=16, num_layers=2, fanouts=[5, 3])
# the model's own randomness too: SimGCL's noise and NGCF's dropout come from the batch's seed
NOISY = [SAMPLED, SimGCLConfig(embedding_dim=16, num_layers=2, fanouts=[5, 3]),
         NGCFConfig(embedding_dim=16, num_layers=2, fanouts=[5, 3])]


def _fit(world, tmp_path, epochs, ckpt_path=None, config=SAMPLED, **dm_kw):
    pl.seed_everything(0, verbose=False)
    dm = _dm(world, tmp_path, **dm_kw)
    module = RecModule(config, lr=1e-2, ks=(20,))
    ckpt = Checkpoint(dirpath=str(tmp_path / "ckpt"), save_last=True, save_on_train_epoch_end=True)
    trainer = _trainer(tmp_path, epochs, callbacks=[ckpt], num_sanity_val_steps=0)
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    return module, trainer.test(module, datamodule=dm, verbose=False)[0]


@pytest.mark.parametrize("config", NOISY, ids=lambda c: type(c).__name__)
def test_fit_is_identical_for_any_num_workers(world, tmp_path, one_thread, config):
    a, metrics_a = _fit(world, tmp_path / "a", 2, config=config, num_workers=0)
    b, metrics_b = _fit(world, tmp_path / "b", 2, config=config, num_workers=2)
    assert torch.equal(a.model.embedding.weight, b.model.embedding.weight)
    assert metrics_a == metrics_b


@pytest.mark.parametrize("config", NOISY, ids=lambda c: type(c).__name__)
def test_a_resumed_run_trains_exactly_as_an_uninterrupted_one(world, tmp_path, one_thread, config):
    straight, _ = _fit(world, tmp_path / "a", 3, config=config)
    _fit(world, tmp_path / "b", 1, config=config)
    # _fit reseeds the global RNG, so at epoch 1 the resumed run's global RNG is not the
    # uninterrupted run's: a model drawing from it would diverge here
    resumed, _ = _fit(world, tmp_path / "b", 3, config=config,
                      ckpt_path=str(tmp_path / "b" / "ckpt" / "last.ckpt"))
    assert torch.equal(straight.model.embedding.weight, resumed.model.embedding.weight)


def test_auc_is_averaged_over_the_users_it_is_defined_for(tmp_path):
    """User 0 has seen every item (5 in train, 1 in test): no negative item, so no AUC pair.
    The test AUC must average over the 3 other users (as ``RankingResult.means`` does)."""
    root = tmp_path / "ds"
    root.mkdir()
    rows = [(0, i, "train") for i in range(5)] + [(0, 5, "test"), (1, 0, "train"),
            (1, 1, "train"), (1, 2, "test"), (2, 3, "train"), (2, 4, "test"), (2, 5, "test"),
            (3, 1, "train"), (3, 2, "train"), (3, 0, "test")]
    u, i, s = zip(*rows)
    pq.write_table(pa.table({"user_id": list(u), "item_id": list(i), "split": list(s)}),
                   root / "interactions.parquet")
    pl.seed_everything(0, verbose=False)
    dm = RecDataModule(data=str(root), cache_dir=str(tmp_path / "cache"), batch_size=4)
    module = RecModule(MFConfig(embedding_dim=4), ks=(2,))
    trainer = _trainer(tmp_path, 1, enable_checkpointing=False)
    trainer.fit(module, datamodule=dm)
    got = trainer.test(module, datamodule=dm, verbose=False)[0]
    with torch.no_grad():
        want = evaluate(*module.model.embed(None), dm.history, dm.test_graph, ks=(2,))
    assert got["test/num_users"] == 4 and got["test/auc_users"] == 0.75  # 3 of 4
    assert float(want.sums["auc"]) > 0
    assert got["test/auc"] == pytest.approx(want.means()["auc"], rel=1e-6)


def test_most_popular_is_scored_on_the_test_users_sample(world, tmp_path):
    # with --data.eval_users the baseline ranks the same sampled users as the model's test, not
    # every user (a 2M-user world made the baseline a full pass over every user)
    dm = _dm(world, tmp_path, eval_users=50)
    dm.prepare_data()
    dm.setup()
    sample = dm.eval_user_ids(dm.test_graph)
    assert sample.numel() == 50 and torch.equal(sample, dm.eval_user_ids(dm.test_graph))
    pop = popularity_scores(dm.train_graph).float().unsqueeze(1)
    want = evaluate(torch.ones(dm.num_users, 1), pop, dm.history, dm.test_graph, ks=(20,),
                    users=sample).means()
    everyone = evaluate(torch.ones(dm.num_users, 1), pop, dm.history, dm.test_graph,
                        ks=(20,)).means()
    assert want["recall@20"] != everyone["recall@20"]     # the sample is not everyone
    got = popularity_baseline(dm, (20,))
    assert got["test/recall@20"] == pytest.approx(want["recall@20"], rel=1e-9)
