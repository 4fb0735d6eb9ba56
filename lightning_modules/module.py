"""``RecModule``: the one LightningModule that trains and evaluates any :class:`Recommender`.

The model owns its maths and its loss; this module owns the loop: the optimiser, logging of every
loss term, a clear error on a non-finite loss, and full-ranking evaluation whose per-rank sums are
all-reduced, so metrics over many workers equal the single-process metrics exactly; optionally
also the sampled-candidate protocol of :mod:`reelgraph.sampled_metrics` when testing.
"""
from __future__ import annotations

import dataclasses
import importlib
import math
from typing import Any, Sequence

import torch
from torch import Tensor

from reelgraph.data.store import GraphStore
from reelgraph.errors import ConfigError, positive_int, require
from reelgraph.graph import BipartiteGraph
from reelgraph.lightning_modules._pl import pl
from reelgraph.lightning_modules.optim import build_optimizer, check_optimizer, sparse_embeddings
from reelgraph.metrics import RankingResult, ScoreFn, inner_product, rank_users_fn
from reelgraph.models import LightGCNConfig, ModelConfig, Recommender
from reelgraph.sampled_metrics import sampled_sums, store_candidates
from reelgraph.samplers.batch import BPRBatch
from reelgraph.samplers.plans.base import Plan


def as_config(model: ModelConfig | dict) -> ModelConfig:
    """The config object; LightningCLI hands ``{"class_path": ..., "init_args": {...}}`` dicts."""
    if isinstance(model, ModelConfig):
        return model
    module, _, name = model["class_path"].rpartition(".")
    return getattr(importlib.import_module(module), name)(**model.get("init_args", {}))


def as_dict(config: ModelConfig) -> dict:
    """``{"class_path", "init_args"}`` of a config: what checkpoints keep (plain data, loadable
    with ``torch.load(weights_only=True)``), and what :func:`as_config` reads back."""
    cls = type(config)
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}",
            "init_args": {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}}


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN/inf; the last checkpoint (``last.ckpt``) is left intact."""


class RecModule(pl.LightningModule):
    """Trains ``model`` with its own loss; validates and tests by full ranking.

    Args:
        model: the model's config (``class_path``/``init_args`` in YAML); built once the data's
            sizes are known.
        lr: the optimiser's learning rate.
        weight_decay: Adam weight decay (the models' L2 on batch embeddings is separate); 0 for
            the row optimisers.
        ks: cut-offs of the ranking metrics; ``recall@20`` drives early stopping and checkpoints.
        item_chunk_size: items scored at once per user batch (bounds evaluation memory).
        auc: also compute exact AUC when testing (validation skips it: it scans every item per test pair).
        optimizer: ``adam`` (dense: every row of every table each step), ``lazy_adam`` (the
            model's embedding tables get sparse gradients and only the rows a batch touched are
            updated; other parameters plain Adam: the step no longer grows with the graph),
            ``rowwise_adagrad`` or ``sparse_adam`` (tables-only models such as BPR-MF); see
            :mod:`reelgraph.lightning_modules.optim`.
        sampled_candidates: when testing, also the sampled-candidate protocol of
            :mod:`reelgraph.sampled_metrics` (NCF's leave-one-out: one held-out test item per
            user among this many uniform negatives it has in no split; NCF and the ISGNN paper:
            99), logged as ``test/sampled_auc``, ``test/sampled_ndcg@K`` and
            ``test/sampled_num_users``, scored as the full ranking is. 0 (default): off, no cost.
        sampled_ks: the cut-offs of the sampled NDCG (the paper's Table 1: 1 and 2).
        sampled_seed: seeds the candidate draw alone (not the training seed): every model tested
            with the same ``sampled_seed`` on the same store is ranked among the same candidates.

    The model is built in ``configure_model`` from the data module's store, and trained on the
    batches its config's sampling plan (:attr:`sampling_plan`) makes in the data module's loader;
    to use a checkpoint outside a Trainer, see :meth:`from_checkpoint`.
    """

    def __init__(self, model: ModelConfig | None = None, lr: float = 1e-3,
                 weight_decay: float = 0.0, ks: Sequence[int] = (10, 20, 50),
                 item_chunk_size: int = 1 << 16, auc: bool = True, optimizer: str = "adam",
                 sampled_candidates: int = 0, sampled_ks: Sequence[int] = (1, 2),
                 sampled_seed: int = 0):
        super().__init__()
        check_optimizer(optimizer, weight_decay)
        require("model.lr", lr, lambda v: v > 0, "a number > 0")
        require("model.weight_decay", weight_decay, lambda v: v >= 0, "a number >= 0")
        positive_int("model.item_chunk_size", item_chunk_size)
        if not ks:
            raise ConfigError(f"model.ks={list(ks)!r}: give at least one cut-off")
        for k in ks:
            positive_int("model.ks", k)
        positive_int("model.sampled_candidates", sampled_candidates, 0)
        positive_int("model.sampled_seed", sampled_seed, 0)
        if sampled_candidates and not sampled_ks:
            raise ConfigError(f"model.sampled_ks={list(sampled_ks)!r}: give at least one cut-off")
        for k in sampled_ks:
            positive_int("model.sampled_ks", k)
        self.config = as_config(model) if model is not None else LightGCNConfig()
        self.save_hyperparameters({"model": as_dict(self.config), "lr": lr,
                                   "weight_decay": weight_decay, "ks": list(ks),
                                   "item_chunk_size": item_chunk_size, "auc": auc,
                                   "optimizer": optimizer,
                                   "sampled_candidates": sampled_candidates,
                                   "sampled_ks": list(sampled_ks), "sampled_seed": sampled_seed})
        self.model: Recommender | None = None
        self._graphs: dict[str, BipartiteGraph] = {}
        self._plan: Plan | None = None
        self._snapshot: tuple[Tensor, Tensor] | None = None
        self._result: RankingResult | None = None
        self._score: ScoreFn | None = None

    # -- setup -----------------------------------------------------------------------------
    def configure_model(self) -> None:
        if self.model is None:
            self.model = self._build(self.trainer.datamodule.store)

    def _build(self, store: GraphStore) -> Recommender:
        model = self.config.build(store)
        if self.hparams.get("optimizer", "adam") != "adam":
            sparse_embeddings(model)  # before DDP wraps it: only touched rows get gradients
        return model

    @classmethod
    def from_checkpoint(cls, path: str, store: GraphStore, map_location="cpu") -> "RecModule":
        """The module of a checkpoint, its model built for ``store`` (the store it was trained on)."""
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
        hparams = {k: v for k, v in ckpt["hyper_parameters"].items() if not k.startswith("_")}
        module = cls(**hparams)  # LightningCLI adds "_instantiator"
        module.model = module._build(store)
        module.load_state_dict(ckpt["state_dict"])
        return module

    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule
        self._cpu_graphs = {"train": dm.train_graph, "valid": dm.valid_graph,
                            "test": dm.test_graph, "history": dm.history}

    def graph(self, name: str) -> BipartiteGraph:
        """A graph of the data module, moved to this module's device once."""
        g = self._graphs.get(name)
        if g is None or g.device != self.device:
            g = self._graphs[name] = self._cpu_graphs[name].to(self.device)
        return g

    @property
    def sampling_plan(self) -> Plan:
        """What the model's training batches need (its config's plan), for the data module."""
        if self._plan is None:
            self._plan = self.config.plan()
        return self._plan

    def static(self) -> Any:
        """The plan's state on this device (whole-graph operators, ...), from the data module."""
        return self.trainer.datamodule.static(self.device)

    def configure_optimizers(self):
        if self.config.training_free:
            raise ConfigError(f"{type(self.config).__name__} is training-free: there is nothing to "
                              "fit; evaluate it with Trainer.validate/test (`reelgraph fit` does)")
        return build_optimizer(self.hparams.get("optimizer", "adam"), self.model,
                               self.hparams.lr, self.hparams.weight_decay)

    # -- training --------------------------------------------------------------------------
    def training_step(self, batch: BPRBatch, batch_idx: int) -> Tensor:
        if self.sampling_plan.mines_negatives:  # the one draw that needs the model's scores
            batch = self.sampling_plan.mine(self.trainer.datamodule.context(), batch,
                                            *self._embeddings_snapshot())
        terms = self.model.loss(batch)
        for name, value in terms.items():
            if not torch.isfinite(value):
                raise NonFiniteLossError(
                    f"loss term '{name}' is {value.item()} at epoch {self.current_epoch}, step "
                    f"{self.global_step}; lower the learning rate or check the input features. The "
                    "last checkpoint is intact: resume with --ckpt_path last")
        self.log_dict({f"train/{k}": v for k, v in terms.items()}, prog_bar=False,
                      on_step=True, on_epoch=True, sync_dist=True, batch_size=len(batch))
        self.log("loss", terms["loss"], prog_bar=True, logger=False, batch_size=len(batch))
        return terms["loss"]

    def _embeddings_snapshot(self) -> tuple[Tensor, Tensor]:
        """The embeddings of the last evaluation (computed now if there was none)."""
        if self._snapshot is None:
            with torch.no_grad():
                self._snapshot = self.model.embed(self.static())
        return self._snapshot

    # -- evaluation ------------------------------------------------------------------------
    def _eval_start(self) -> None:
        """The scores to rank by: the model's own ``score_fn`` (GF-CF), else the inner products
        of its full-graph embeddings."""
        with torch.no_grad():
            static = self.static()
            self._score = self.model.score_fn(static)
            if self._score is None:
                emb = self.model.embed(static)
                self._score = inner_product(*emb, reuse_output=True)  # one [B, C] buffer
                if self.sampling_plan.mines_negatives:
                    self._snapshot = tuple(e.detach() for e in emb)
        self._result = None

    def _eval_step(self, users: Tensor, mask: str, target: str, auc: bool = False) -> None:
        r = rank_users_fn(self._score, users, self.graph(mask), self.graph(target),
                          ks=self.hparams.ks, item_chunk_size=self.hparams.item_chunk_size, auc=auc)
        self._result = r if self._result is None else self._result.merge(r)

    def _eval_end(self, prefix: str, auc: bool = False) -> dict[str, float]:
        """All-reduces this rank's metric sums and user counts (every rank sends the same
        names, even without users), then averages with the evaluator's own
        :meth:`RankingResult.means`: exact over any number of workers."""
        r = self._result or RankingResult.empty(self.hparams.ks, auc, self.device)
        names = sorted(r.sums)
        local = torch.tensor([float(r.sums[n]) for n in names] + [r.num_users, r.num_skipped],
                             dtype=torch.float64, device=self.device)
        total = self.trainer.strategy.reduce(local, reduce_op="sum")  # exact: sums, then divide
        total = RankingResult({n: total[j] for j, n in enumerate(names)}, int(total[-2].item()),
                              int(total[-1].item()))
        metrics = {f"{prefix}/{k}": v for k, v in total.means().items()}
        metrics[f"{prefix}/num_users"] = float(total.num_users)
        if "auc_users" in total.sums:  # the share of users AUC is defined for (a negative exists)
            n = float(total.num_users)
            metrics[f"{prefix}/auc_users"] = float(total.sums["auc_users"]) / n if n else float("nan")
        self.log_dict(metrics, prog_bar=False, sync_dist=False)
        self._score = None
        return metrics

    def on_validation_epoch_start(self) -> None:
        self._eval_start()

    def validation_step(self, users: Tensor, batch_idx: int) -> None:
        self._eval_step(users, "train", "valid")

    def on_validation_epoch_end(self) -> None:
        metrics = self._eval_end("val")
        if "val/recall@20" in metrics:
            self.log("R@20", metrics["val/recall@20"], prog_bar=True, logger=False)

    def on_test_epoch_start(self) -> None:
        self._eval_start()

    def test_step(self, users: Tensor, batch_idx: int) -> None:
        self._eval_step(users, "history", "test", self.hparams.auc)  # train+valid items masked

    def on_test_epoch_end(self) -> None:
        if self.hparams.get("sampled_candidates", 0):  # before _eval_end drops the scorer
            self._sampled_end("test")
        self._eval_end("test", self.hparams.auc)

    def _sampled_end(self, prefix: str) -> dict[str, float]:
        """The sampled-candidate metrics of the test split. Every rank draws the same candidates
        (all test users, seeded by ``sampled_seed``; the data module's ``eval_users`` sample is
        not applied), scores its share ``[rank::world]`` with the full ranking's scorer, and the
        sums and user counts are all-reduced as in :meth:`_eval_end`: the same metrics over any
        number of workers. The draw is ``O(test users x items)`` per rank, once per test."""
        dm, trainer = self.trainer.datamodule, self.trainer
        users, pos, neg, valid = store_candidates(dm.store, self.hparams.sampled_candidates,
                                                  self.hparams.sampled_seed)
        share = slice(trainer.global_rank, None, trainer.world_size)
        sums, ranked = sampled_sums(self._score, users[share].to(self.device), pos[share],
                                    neg[share], valid[share], self.hparams.sampled_ks,
                                    dm.eval_batch_size)
        names = list(sums)  # the same names, in the same order, on every rank
        local = torch.tensor([sums[n] for n in names] + [ranked], dtype=torch.float64,
                             device=self.device)
        total = trainer.strategy.reduce(local, reduce_op="sum").tolist()
        n = total[-1]
        metrics = {f"{prefix}/sampled_{k}": total[j] / n if n else math.nan
                   for j, k in enumerate(names)}
        metrics[f"{prefix}/sampled_num_users"] = n   # users with a test item and a negative
        self.log_dict(metrics, prog_bar=False, sync_dist=False)
        return metrics
