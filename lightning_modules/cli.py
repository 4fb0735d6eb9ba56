"""``reelgraph``: the LightningCLI over :class:`RecModule` and :class:`RecDataModule`.

``reelgraph fit`` trains (early stopping and best-checkpointing on validation Recall@20), then
tests the best checkpoint, prints a metrics table against a most-popular baseline and writes
user/item embeddings with the original ids. Every run's full config is saved beside its logs.

Examples::

    reelgraph fit                                     # LightGCN on the synthetic micro-video world
    reelgraph fit --config configs/lightgcn_amazon_book.yaml --trainer.accelerator=cpu
    reelgraph fit --model=MFConfig --model.init_args.embedding_dim=32 --data.data=synthetic:tiny
    reelgraph fit --config runs/.../config.yaml --ckpt_path last   # resume
    reelgraph fit --model.model=GFCFConfig            # GF-CF: training-free, validated and tested
"""
from __future__ import annotations

import importlib
import logging
import os
import sys
import time

import torch

from reelgraph.data.store import write_embeddings
from reelgraph.errors import exit_on_user_error
from reelgraph.lightning_modules._pl import pl
from reelgraph.lightning_modules.callbacks import Checkpoint, EpochSummary
from reelgraph.lightning_modules.datamodule import RecDataModule
from reelgraph.lightning_modules.module import RecModule
from reelgraph.metrics import RankingResult, popularity_scores, evaluate
from reelgraph.sampled_metrics import evaluate_sampled, store_candidates


LightningCLI = importlib.import_module(pl.__name__ + ".cli").LightningCLI  # the same package as `pl`

MONITOR = "val/recall@20"
TRAINER_DEFAULTS = {"default_root_dir": "runs", "max_epochs": 30, "num_sanity_val_steps": 0}
log = logging.getLogger("reelgraph")


def format_table(rows: dict[str, dict[str, float]], keys: list[str]) -> str:
    """A plain-text table: one row per method, one column per metric."""
    width = max(len(r) for r in rows) + 2
    cols = [max(len(k), 8) + 2 for k in keys]
    lines = ["".ljust(width) + "".join(k.rjust(c) for k, c in zip(keys, cols))]
    for name, m in rows.items():
        lines.append(name.ljust(width) + "".join(f"{m.get(k, float('nan')):{c}.4f}"
                                                 for k, c in zip(keys, cols)))
    return "\n".join(lines)


def popularity_baseline(dm: RecDataModule, ks, auc: bool = True,
                        sampled: dict | None = None) -> dict[str, float]:
    """Test metrics of ranking the test users' unseen items by training popularity: the same
    users as the model's test (``--data.eval_users``' sample, if set), with a progress bar;
    with ``sampled`` (``{"candidates", "ks", "seed"}``: the module's ``sampled_*`` settings),
    also the sampled-candidate metrics on the model's candidates."""
    pop = popularity_scores(dm.train_graph).float().unsqueeze(1)            # [I, 1]
    ones = torch.ones(dm.num_users, 1)
    r: RankingResult = evaluate(ones, pop, dm.history, dm.test_graph, ks=ks, auc=auc,
                                users=dm.eval_user_ids(dm.test_graph), progress=True)
    out = {f"test/{k}": v for k, v in r.means().items()}
    if sampled:
        score = lambda users, items: pop[items, 0].expand(users.numel(), -1)  # noqa: E731
        m = evaluate_sampled(score, *store_candidates(dm.store, sampled["candidates"],
                                                      sampled["seed"]), ks=sampled["ks"])
        out.update({f"test/sampled_{k}": v for k, v in m.items()})
    return out


class ReelGraphCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(pl.callbacks.EarlyStopping, "early_stopping")
        parser.set_defaults({"early_stopping.monitor": MONITOR, "early_stopping.mode": "max",
                             "early_stopping.patience": 5})
        parser.add_lightning_class_args(Checkpoint, "checkpoint")
        parser.set_defaults({"checkpoint.monitor": MONITOR, "checkpoint.mode": "max",
                             "checkpoint.save_top_k": 1, "checkpoint.save_last": True,
                             "checkpoint.save_on_train_epoch_end": True,
                             "checkpoint.filename": "best-{epoch:03d}"})
        parser.add_argument("--export_dir", type=str | None, default=None,
                            help="where fit writes users.parquet/items.parquet (default: the run's log dir)")

    def fit(self, model: RecModule, datamodule: RecDataModule, ckpt_path: str | None = None,
            **kwargs) -> None:
        """``Trainer.fit``, except for a training-free model (GF-CF): no optimiser and no epochs,
        only validation (then :meth:`after_fit` tests and prints the table as for any model)."""
        if not model.config.training_free:
            self.trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, **kwargs)
            return
        name = type(model.config).__name__
        log.info("%s is training-free: no epochs; validating, then testing", name)
        if ckpt_path:
            log.warning("%s has no trained state: ignoring ckpt_path=%s", name, ckpt_path)
        start = time.perf_counter()
        self.trainer.validate(model, datamodule=datamodule, verbose=False)
        m = self.trainer.callback_metrics
        log.info("%s: built and validated in %.1fs: recall@20 %.4f  ndcg@20 %.4f", name,
                 time.perf_counter() - start, float(m.get(MONITOR, float("nan"))),
                 float(m.get("val/ndcg@20", float("nan"))))

    def after_fit(self) -> None:
        trainer, dm = self.trainer, self.datamodule
        best = trainer.checkpoint_callback.best_model_path or None
        results = trainer.test(self.model, datamodule=dm, ckpt_path=best, verbose=False)
        if not trainer.is_global_zero:
            return
        module = self.model
        ks = list(module.hparams.ks)
        training_free = module.config.training_free
        model_name = type(module.model).__name__ + (" (training-free)" if training_free else "")
        hp = module.hparams
        sampled = ({"candidates": hp.sampled_candidates, "ks": hp.sampled_ks,
                    "seed": hp.sampled_seed} if hp.get("sampled_candidates", 0) else None)
        rows = {model_name: results[0], "MostPopular": popularity_baseline(dm, ks, hp.auc, sampled)}
        keys = [f"test/{m}@{k}" for m in ("recall", "ndcg") for k in ks] + ["test/auc"]
        keys += ["test/sampled_auc"] + [f"test/sampled_ndcg@{k}" for k in hp.get("sampled_ks", ())]
        keys = [k for k in keys if k in rows[model_name]]
        source = "no epochs: training-free" if training_free else f"best checkpoint: {best}"
        print(f"\nTest metrics ({source}); {int(results[0]['test/num_users'])} users, "
              f"full ranking over {dm.num_items} items, train/valid items masked")
        if sampled:
            print(f"sampled_*: {int(results[0]['test/sampled_num_users'])} users, each its held-out "
                  f"test item among up to {sampled['candidates']} items it has in no split "
                  f"(candidate seed {sampled['seed']})")
        print(format_table({n: {k[5:]: v for k, v in m.items()} for n, m in rows.items()},
                           [k[5:] for k in keys]))
        pop = rows["MostPopular"].get("test/recall@20", 0.0)
        if pop > 0 and "test/recall@20" in rows[model_name]:
            print(f"Recall@20 lift over most-popular: {rows[model_name]['test/recall@20'] / pop:.2f}x")
        if training_free:
            log.info("%s has no embeddings: nothing exported", model_name)
            return
        module.eval()   # Trainer.test leaves the module in train mode: no dropout in the export
        with torch.no_grad():
            user_emb, item_emb = module.model.embed(module.static())
        out = self.config[self.subcommand].get("export_dir") or os.path.join(trainer.log_dir or ".", "embeddings")
        paths = write_embeddings(dm.store, user_emb, item_emb, out)
        print(f"embeddings: {paths['user']}, {paths['item']}")


class EmbeddedCLI(ReelGraphCLI):
    """The ``reelgraph fit`` parser inside another program (a Ray Train worker, a Tune trial):
    it parses ``args`` only, never the host's ``sys.argv``, raises ``argparse.ArgumentError``
    instead of exiting (``exit_on_error=False``), and with ``instantiate=False`` only parses and
    validates. A subclass builds the Trainer from :meth:`trainer_config`.

    Args:
        args: ``["--config", yaml_text_or_path, "--key=value", ...]`` (or a config dict).
        module: the LightningModule class (``RecModule``).
        callbacks: added after the config's callbacks (its checkpoint callback is dropped).
        use_gpu: accelerator ``gpu``, else ``cpu``.
        instantiate: False only parses and validates.
        logger, root_dir: the host's logger and ``default_root_dir`` (a Tune trial's), instead
            of the config's.
    """

    def __init__(self, args, module: type = RecModule, callbacks=(), use_gpu: bool = False,
                 instantiate: bool = True, logger=None, root_dir: str | None = None):
        self._extra, self._use_gpu, self._instantiate = list(callbacks), use_gpu, instantiate
        self._logger, self._root = logger, root_dir
        argv, sys.argv = sys.argv, sys.argv[:1]  # the host's argv is not ours
        try:
            super().__init__(module, RecDataModule, seed_everything_default=0, args=args,
                             run=False, trainer_defaults=TRAINER_DEFAULTS,
                             save_config_kwargs={"overwrite": True},
                             parser_kwargs={"exit_on_error": False})
        finally:
            sys.argv = argv

    def instantiate_classes(self) -> None:
        if self._instantiate:
            super().instantiate_classes()

    def trainer_config(self, owner: str, callbacks=()) -> dict:
        """The config's ``trainer`` keys with the host's: the config's callbacks minus its
        checkpoint callback, then :class:`EpochSummary`, the extra ``callbacks`` and
        ``callbacks`` given here, the config saver; no strategy, plugins or nodes of the
        config's (``owner`` owns them; a warning says so), one node, the accelerator."""
        config = dict(self.config_init.get("trainer") or {})
        clash = {k: config[k] for k in ("strategy", "plugins", "num_nodes") if config.get(k) not in
                 (None, "auto", 1, [])}
        if clash:
            log.warning("ignoring trainer settings %s owns: %s", owner, clash)
        cli_callbacks = [self.config_init[k] for k in self.parser.callback_keys]
        kept = [c for c in [*cli_callbacks, *(config.get("callbacks") or [])]
                if not isinstance(c, pl.callbacks.ModelCheckpoint)]
        config.update(callbacks=[*kept, EpochSummary(), *self._extra, *callbacks,
                                 self.save_config_callback(self.parser, self.config,
                                                           **self.save_config_kwargs)],
                      enable_checkpointing=False, num_nodes=1, plugins=None, strategy="auto",
                      accelerator="gpu" if self._use_gpu else "cpu")
        if self._logger is not None:
            config.update(logger=self._logger, enable_progress_bar=False)
        if self._root:
            config["default_root_dir"] = self._root
        return config


def main(args=None) -> None:
    """``reelgraph ...`` (``args``: the arguments, default ``sys.argv[1:]``). A data or config
    error is one line on stderr and exit status 2; ``--traceback`` shows the stack."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_float32_matmul_precision("high")

    def run(argv: list[str]) -> None:
        if args is None:  # from the console: LightningCLI reads sys.argv itself
            sys.argv[1:], argv = argv, None
        ReelGraphCLI(RecModule, RecDataModule, seed_everything_default=0, args=argv,
                     trainer_defaults={**TRAINER_DEFAULTS, "callbacks": [EpochSummary()]},
                     save_config_kwargs={"overwrite": True},
                     parser_kwargs={"exit_on_error": False})  # errors: one line (main)

    exit_on_user_error(run, list(sys.argv[1:] if args is None else args), "reelgraph")


if __name__ == "__main__":
    main()
