"""One Tune trial: the same Lightning fit as ``reelgraph fit``, in the trial's process, or on
several Ray Train workers (``--workers-per-trial``: :func:`_fit_workers`).

:func:`train_trial` is the function trainable. With one worker it parses the fit YAML plus the
trial's values (:func:`reelgraph.tune.space.apply`) with the CLI's own parser
(:class:`TrialCLI`, a ``ReelGraphCLI`` with ``run=False``), builds a single-process Trainer and
fits. After every validated epoch :class:`TuneReport` sends the Trainer's metrics to Tune (so
ASHA can stop the trial between epochs) with a Lightning checkpoint of that epoch's end, and
:class:`BestHParams` keeps TensorBoard's HParams table (the trial's values, ``hp_metric`` = best
metric so far) current, even for a trial ASHA stops. A trial that fails (and is retried,
``--max-failures``) or is continued by ``--resume`` starts from its latest checkpoint
(``ray.tune.get_checkpoint``), at the epoch after it, as ``reelgraph fit --ckpt_path`` would.

The Lightning callbacks here take the report function as an argument, so they run in a plain
Trainer too.
"""
from __future__ import annotations

import logging
import os
import shutil
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from ray.tune.integration.ray_train import TuneReportCallback

from reelgraph.distributed.callbacks import FailOnce
from reelgraph.distributed.train import CHECKPOINT_FILE, build_trainer
from reelgraph.lightning_modules._pl import pl
from reelgraph.lightning_modules.cli import EmbeddedCLI
from reelgraph.lightning_modules.module import RecModule
from reelgraph.tune.space import apply, plain

log = logging.getLogger("reelgraph")
RANKING_METRICS = ("recall", "ndcg", "precision", "hitrate")
LOG_SUBDIR = "lightning"           # <trial dir>/lightning: the Trainer's TensorBoard run
FAULT_MARKER = "fault-injected"    # in the experiment folder (--fail-at-epoch)
STAGING_DIR = "checkpoint-staging"   # <trial>/lightning/: written, then handed to Tune
TRAIN_SUBDIR = "train"               # <trial>/train: a multi-worker trial's Ray Train run
VALIDATIONS = "validations"          # reported: validations so far, over all attempts (ASHA's time)


def metric_names(ks: Sequence[int]) -> list[str]:
    """The validation metrics :class:`RecModule` logs for cut-offs ``ks`` (all to maximise)."""
    return [f"val/{m}@{k}" for k in ks for m in RANKING_METRICS]


class TrialCLI(EmbeddedCLI):
    """The ``reelgraph fit`` parser (no subcommand, ``run=False``); per trial, its Trainer.

    Args:
        args: ``["--config", yaml_text_or_path, "--key=value", ...]``.
        callbacks: added after the config's own (the checkpoint callback is dropped).
        logger: the trial's logger; ``root_dir`` its ``default_root_dir``.
        use_gpu: accelerator ``gpu`` (one device), else ``cpu``.
        instantiate: False only parses and validates (the driver, before any trial).

    The parser raises ``argparse.ArgumentError`` instead of exiting (``exit_on_error=False``), so
    the driver can name the key a search space gets wrong.
    """

    def __init__(self, args: Sequence[str], callbacks: Sequence[pl.Callback] = (),
                 logger: Any = None, root_dir: str | None = None, use_gpu: bool = False,
                 instantiate: bool = True):
        super().__init__(list(args), RecModule, callbacks, use_gpu, instantiate, logger, root_dir)

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        config = self.trainer_config("a single-process trial")
        config.update(enable_model_summary=False, devices=1, **kwargs)
        return self.trainer_class(**config)


class TuneReport(pl.Callback):
    """Reports the Trainer's scalar metrics (with ``epoch``, 0-based, and ``step``, as Ray
    Train's report callback does) at the end of each epoch that ran a validation, with a
    checkpoint of that epoch's end when ``staging`` is given.

    ``on_train_epoch_end`` runs after the epoch's validation (its ``val/*`` metrics are in
    ``callback_metrics``) and is where Ray Train's own report callback saves, so the checkpoint
    resumes at the next epoch. ``validations`` counts the reports over all attempts (ASHA's
    time: Tune's ``training_iteration`` starts again in a retried multi-worker trial).
    ``report(metrics, folder)`` gets the folder holding ``checkpoint.ckpt`` (``staging``; Tune
    copies it into the trial's ``checkpoint_*`` before the call returns, and it is removed
    then), or ``None``. The loggers are flushed first: a trial ASHA stops ends in this report.
    """

    def __init__(self, report: Callable[[dict, str | None], None], staging: str | None = None):
        self.report, self.staging, self._validated = report, staging, False
        self.validations = 0

    def state_dict(self) -> dict[str, Any]:  # a resumed trial goes on counting
        return {"validations": self.validations}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.validations = state["validations"]

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._validated = self._validated or not trainer.sanity_checking

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if not self._validated:
            return
        self._validated = False
        self.validations += 1
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        for logger in trainer.loggers:  # a trial stopped at this report keeps its logs
            flush = getattr(logger.experiment, "flush", None)
            if callable(flush):
                flush()
        folder = None
        if self.staging:
            shutil.rmtree(self.staging, ignore_errors=True)
            os.makedirs(self.staging)
            trainer.save_checkpoint(os.path.join(self.staging, CHECKPOINT_FILE))
            folder = self.staging
        self.report({**metrics, "epoch": trainer.current_epoch, "step": trainer.global_step,
                     VALIDATIONS: self.validations}, folder)
        if folder:
            shutil.rmtree(folder, ignore_errors=True)


class BestHParams(pl.Callback):
    """TensorBoard HParams: the trial's ``values`` with ``hp_metric`` = best ``metric`` so far.

    Written at the first validation (the logger needs ``default_hp_metric=False``, so Lightning's
    own start-of-fit call writes no empty session), then ``hp_metric`` is updated after each
    validation: the table is right whenever the trial stops. Put it before :class:`TuneReport`.
    """

    def __init__(self, metric: str, values: dict[str, Any]):
        self.metric, self.values, self.best = metric, values, None

    def state_dict(self) -> dict[str, Any]:  # in the trial's checkpoints: a resumed trial's
        return {"best": self.best}          # hp_metric stays the best over all its epochs

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.metric)
        if trainer.sanity_checking or value is None or trainer.logger is None:
            return
        first = self.best is None
        self.best = float(value) if first else max(self.best, float(value))
        if first:
            trainer.logger.log_hyperparams(self.values, {"hp_metric": self.best},
                                           step=trainer.global_step)
        else:
            trainer.logger.log_metrics({"hp_metric": self.best}, step=trainer.global_step)


@dataclass(frozen=True)
class TrialSetup:
    """What every trial of a search shares (JSON-able: saved in ``search.json`` for --resume).

    Attributes:
        cli_args: ``["--config", <fit YAML text>, *pass-through overrides]``.
        metric: the searched metric (``val/recall@20``).
        experiment_dir: ``<storage>/<name>``, local or shared; trials log under it.
        cpus, gpus: resources of one trial, or of each of its workers (torch threads
            ``int(cpus)``; a GPU each when ``gpus`` > 0).
        workers: Ray Train workers (DDP ranks) per trial; 1: the fit runs in the trial.
        cwd: the driver's working directory (relative paths of the fit YAML resolve from it).
        fail_at_epoch: fault drill: the first trial to reach batch 1 of this epoch fails once
            (:class:`~reelgraph.distributed.callbacks.FailOnce`, rank 0), ``None``: off.
        checkpoints: report a checkpoint with every validation (a retried or resumed trial
            continues from it), else none (it restarts from epoch 0).
    """

    cli_args: tuple[str, ...]
    metric: str
    experiment_dir: str
    cpus: float = 1.0
    gpus: float = 0.0
    cwd: str = "."
    workers: int = 1
    fail_at_epoch: int | None = None
    checkpoints: bool = True


def trial_log_dir(experiment_dir: str, tune_trial_dir: str) -> str:
    """``<experiment>/<trial dir name>/lightning``. Ray's ``get_trial_dir()`` is a staging
    folder under ``/tmp/ray`` on the driver; its last part is the trial folder's name in the
    experiment folder, where the Trainer's TensorBoard run is written directly."""
    return os.path.join(experiment_dir, os.path.basename(tune_trial_dir.rstrip("/")), LOG_SUBDIR)


class ValidationsReport(TuneReportCallback):
    """Ray's ``TuneReportCallback`` (rank 0's metrics of each Train report to Tune) plus
    ``validations``: Ray Train reports once per epoch and validation runs every epoch (the
    search checks ``check_val_every_n_epoch`` 1), so it is ``epoch + 1``."""

    def after_report(self, run_context, metrics, checkpoint):
        first = {**metrics[0], VALIDATIONS: int(metrics[0]["epoch"]) + 1}
        super().after_report(run_context, [first, *metrics[1:]], checkpoint)


def train_trial(config: dict[str, Any], setup: TrialSetup) -> None:
    """The function trainable: fit the fit YAML with this trial's ``config`` (dotted key ->
    value) applied; metrics go to Tune after every validation. One worker: the Lightning fit
    runs in this process; ``setup.workers`` > 1: :func:`_fit_workers`."""
    import ray.tune

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_float32_matmul_precision("high")
    torch.set_num_threads(max(1, int(setup.cpus)))
    if os.path.isdir(setup.cwd):
        os.chdir(setup.cwd)  # Ray starts a trial in a staging folder; the config's paths are ours
    values = {k: plain(v) for k, v in config.items()}
    log_dir = trial_log_dir(setup.experiment_dir, ray.tune.get_context().get_trial_dir())
    logger = pl.loggers.TensorBoardLogger(os.path.dirname(log_dir), name="", version=LOG_SUBDIR,
                                          default_hp_metric=False)
    marker = os.path.join(setup.experiment_dir, FAULT_MARKER)
    if setup.workers > 1:
        return _fit_workers(apply(setup.cli_args, values), values, setup, logger, marker)

    def report(metrics: dict, folder: str | None) -> None:
        ray.tune.report(metrics, checkpoint=folder and ray.tune.Checkpoint.from_directory(folder))

    staging = os.path.join(log_dir, STAGING_DIR) if setup.checkpoints else None
    callbacks: list[pl.Callback] = [BestHParams(setup.metric, values), TuneReport(report, staging)]
    if setup.fail_at_epoch is not None:
        callbacks.append(FailOnce(marker, setup.fail_at_epoch))
    cli = TrialCLI(apply(setup.cli_args, values), callbacks=callbacks, logger=logger,
                   root_dir=os.path.dirname(log_dir), use_gpu=setup.gpus > 0)
    checkpoint = ray.tune.get_checkpoint()  # the trial's latest, after a failure or --resume
    with checkpoint.as_directory() if checkpoint else nullcontext() as folder:
        ckpt_path = os.path.join(folder, CHECKPOINT_FILE) if folder else None
        log.info("trial %s: %s", os.path.basename(os.path.dirname(log_dir)),
                 f"resuming from its checkpoint {checkpoint.path}" if checkpoint
                 else "starting at epoch 0")
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path)


def _fit_workers(cli_args: list[str], values: dict[str, Any], setup: TrialSetup,
                 logger: Any, marker: str) -> None:
    """A trial on ``setup.workers`` Ray Train workers, as Ray documents Tune + Train V2: this
    trial function is the driver of a ``TorchTrainer`` (:func:`reelgraph.distributed.train.
    build_trainer`, the same workers as ``python -m reelgraph.distributed.train``), whose rank-0
    report of every epoch reaches Tune through Ray's ``TuneReportCallback``; rank 0 also writes the
    trial's TensorBoard run. The Train run is ``<trial>/train``: a retried or resumed trial fits
    it again under the same name, so Ray Train continues from its latest checkpoint (Ray Train
    always checkpoints at epoch ends, ``--no-checkpoints`` or not)."""
    fault = None if setup.fail_at_epoch is None else {
        "epoch": setup.fail_at_epoch, "rank": 0, "batch": 1, "marker": marker}
    trainer = build_trainer(cli_args, setup.workers, setup.gpus > 0, setup.cpus,
                            storage_path=os.path.dirname(logger.log_dir), name=TRAIN_SUBDIR,
                            num_to_keep=1, fault=fault, logger=logger,
                            callbacks=[BestHParams(setup.metric, values)],
                            run_callbacks=[ValidationsReport()])
    trainer.fit()
