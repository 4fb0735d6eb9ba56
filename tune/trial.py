"""One Tune trial: the same Lightning fit as ``reelgraph fit``, in the trial's process.

:func:`train_trial` is the function trainable. It parses the fit YAML plus the trial's values
(:func:`reelgraph.tune.space.apply`) with the CLI's own parser (:class:`TrialCLI`, a
``ReelGraphCLI`` with ``run=False``), builds a single-process Trainer and fits. After every
validation :class:`TuneReport` sends the Trainer's metrics to Tune (so ASHA can stop the trial
between epochs) and :class:`BestHParams` keeps TensorBoard's HParams table (the trial's values,
``hp_metric`` = best metric so far) current, even for a trial ASHA stops. Trials write no model
checkpoints (this first step: a stopped or failed trial restarts from scratch on ``--resume``).

Only this module and :mod:`reelgraph.tune.search` import Ray; the callbacks take the report
function as an argument, so they run in a plain Trainer too.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from reelgraph.distributed.callbacks import InjectedFault
from reelgraph.lightning_modules._pl import pl
from reelgraph.lightning_modules.cli import EmbeddedCLI
from reelgraph.lightning_modules.module import RecModule
from reelgraph.tune.space import apply, plain

log = logging.getLogger("reelgraph")
RANKING_METRICS = ("recall", "ndcg", "precision", "hitrate")
LOG_SUBDIR = "lightning"           # <trial dir>/lightning: the Trainer's TensorBoard run
FAULT_MARKER = "fault-injected"    # in the experiment folder (--fail-at-epoch)


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
        self._logger, self._root = logger, root_dir
        super().__init__(list(args), RecModule, callbacks, use_gpu, instantiate)

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        config = self.trainer_config("a single-process trial")
        config.update(logger=self._logger, enable_progress_bar=False, enable_model_summary=False,
                      devices=1, **kwargs)
        if self._root:
            config["default_root_dir"] = self._root
        return self.trainer_class(**config)


class TuneReport(pl.Callback):
    """Reports the Trainer's scalar metrics (and ``epoch``, 0-based) after each validation.

    ``on_validation_end`` runs after the module has logged the epoch's ``val/*`` metrics (the
    point ModelCheckpoint reads them); each report is one Tune ``training_iteration``. The
    loggers are flushed first: a trial ASHA stops is ended inside this report.
    """

    def __init__(self, report: Callable[[dict], None]):
        self.report = report

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        for logger in trainer.loggers:  # a trial stopped at this report keeps its logs
            flush = getattr(logger.experiment, "flush", None)
            if callable(flush):
                flush()
        self.report({**metrics, "epoch": trainer.current_epoch})


class BestHParams(pl.Callback):
    """TensorBoard HParams: the trial's ``values`` with ``hp_metric`` = best ``metric`` so far.

    Written at the first validation (the logger needs ``default_hp_metric=False``, so Lightning's
    own start-of-fit call writes no empty session), then ``hp_metric`` is updated after each
    validation: the table is right whenever the trial stops. Put it before :class:`TuneReport`.
    """

    def __init__(self, metric: str, values: dict[str, Any]):
        self.metric, self.values, self.best = metric, values, None

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


class FailFirstTrial(pl.Callback):
    """Fault drill: the first trial of a search to reach batch 1 of ``epoch`` raises
    :class:`InjectedFault`, once. ``marker`` is created atomically (``O_EXCL``) by the one trial
    that fails, so concurrent trials and the rerun after ``--resume`` train through."""

    def __init__(self, marker: str, epoch: int):
        self.marker, self.epoch = marker, epoch

    def on_train_batch_start(self, trainer, module, batch, batch_idx: int) -> None:
        if trainer.current_epoch != self.epoch or batch_idx != min(1, trainer.num_training_batches - 1):
            return
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.close(fd)
        raise InjectedFault(f"injected fault at epoch {self.epoch}, batch {batch_idx} "
                            f"(--fail-at-epoch); marker {self.marker}")


@dataclass(frozen=True)
class TrialSetup:
    """What every trial of a search shares (JSON-able: saved in ``search.json`` for --resume).

    Attributes:
        cli_args: ``["--config", <fit YAML text>, *pass-through overrides]``.
        metric: the searched metric (``val/recall@20``).
        experiment_dir: ``<storage>/<name>``, local or shared; trials log under it.
        cpus, gpus: resources of one trial (torch threads = ``int(cpus)``).
        cwd: the driver's working directory (relative paths of the fit YAML resolve from it).
        fail_at_epoch: fault drill (:class:`FailFirstTrial`), ``None``: off.
    """

    cli_args: tuple[str, ...]
    metric: str
    experiment_dir: str
    cpus: float = 1.0
    gpus: float = 0.0
    cwd: str = "."
    fail_at_epoch: int | None = None


def trial_log_dir(experiment_dir: str, tune_trial_dir: str) -> str:
    """``<experiment>/<trial dir name>/lightning``. Ray's ``get_trial_dir()`` is a staging
    folder under ``/tmp/ray`` on the driver; its last part is the trial folder's name in the
    experiment folder, where the Trainer's TensorBoard run is written directly."""
    return os.path.join(experiment_dir, os.path.basename(tune_trial_dir.rstrip("/")), LOG_SUBDIR)


def train_trial(config: dict[str, Any], setup: TrialSetup) -> None:
    """The function trainable: fit the fit YAML with this trial's ``config`` (dotted key ->
    value) applied; metrics go to Tune after every validation."""
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
    callbacks: list[pl.Callback] = [BestHParams(setup.metric, values), TuneReport(ray.tune.report)]
    if setup.fail_at_epoch is not None:
        marker = os.path.join(setup.experiment_dir, FAULT_MARKER)
        callbacks.append(FailFirstTrial(marker, setup.fail_at_epoch))
    cli = TrialCLI(apply(setup.cli_args, values), callbacks=callbacks, logger=logger,
                   root_dir=os.path.dirname(log_dir), use_gpu=setup.gpus > 0)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
