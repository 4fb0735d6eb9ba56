"""Ray Train entry: the ``reelgraph fit`` YAML on N workers, with the same Lightning modules.

Each Ray worker parses the config with the CLI's own parser (:class:`RayCLI`, a
``ReelGraphCLI`` with ``run=False``), so one YAML drives ``reelgraph fit`` and this entry, and
builds a plain ``pl.Trainer`` with Ray's DDP strategy, cluster environment and report callback.
There is no second training loop: ``RecDataModule`` shards the training edges and the evaluated
users by rank and ``RecModule`` all-reduces the metric sums, so the reported validation metrics
equal a single-process evaluation of the same weights.

Checkpoints: Ray's report callback saves one at the end of every epoch (after validation) into
``<storage-path>/<name>/checkpoint_*``, keeping the best ``--num-to-keep`` by val/recall@20 plus
the latest; a worker failure restarts the group (``--max-failures``) from the latest, and running
the same command again (same ``--name`` and ``--storage-path``) resumes it too.

Examples::

    python -m reelgraph.distributed.train --config configs/lightgcn_synthetic.yaml --num-workers 2
    python -m reelgraph.distributed.train --config configs/lightgcn_synthetic.yaml \\
        --num-workers 8 --gpu --storage-path s3://bucket/runs --max-failures 3
    python -m reelgraph.distributed.train --config cfg.yaml --num-workers 2 --max-failures 1 \\
        --fail-at-epoch 1 --fail-rank 1 --trainer.max_epochs 3   # fault drill
"""
from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import sys
from contextlib import nullcontext
from typing import Any, Sequence

import ray
import ray.train
import torch
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.lightning import (RayDDPStrategy, RayLightningEnvironment, RayTrainReportCallback,
                                 prepare_trainer)
from ray.train.torch import TorchTrainer

from reelgraph.distributed.callbacks import EpochHistory, FailOnce, TrainThroughput
from reelgraph.distributed.sparse import SparseRecModule
from reelgraph.errors import exit_on_user_error
from reelgraph.lightning_modules._pl import pl
from reelgraph.lightning_modules.cli import MONITOR, EmbeddedCLI
from reelgraph.lightning_modules.datamodule import RecDataModule
from reelgraph.lightning_modules.module import RecModule

log = logging.getLogger("reelgraph")
CHECKPOINT_FILE = RayTrainReportCallback.CHECKPOINT_NAME  # checkpoint_*/checkpoint.ckpt
FAULT_MARKER = "fault-injected"                            # in <storage-path>/<name>/
# what `reelgraph fit` (cli.main) passes; the CLI's own checkpoint callback is replaced by Ray's


class RayCLI(EmbeddedCLI):
    """The ``reelgraph fit`` parser in a Ray worker; its Trainer runs Ray's DDP strategy.

    Args (the rest as :class:`~reelgraph.lightning_modules.cli.EmbeddedCLI`):
        use_gpu: the workers hold one GPU each (accelerator ``gpu``), else ``cpu``.
        callbacks: added after the config's callbacks, before Ray's report callback.
        instantiate: False only parses and validates (the driver does this before starting Ray).
        sparse: use :class:`~reelgraph.distributed.sparse.SparseRecModule` (its ``model:`` keys
            add ``optimizer``; the model must produce sparse gradients, e.g. ``SparseMFConfig``).
    """

    def __init__(self, args: Sequence[str] | dict, use_gpu: bool = False,
                 callbacks: Sequence[pl.Callback] = (), instantiate: bool = True,
                 sparse: bool = False, logger: Any = None):
        super().__init__(args, SparseRecModule if sparse else RecModule, callbacks, use_gpu,
                         instantiate, logger, logger and logger.root_dir)

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        config = self.trainer_config("Ray Train", [RayTrainReportCallback()])
        config.update(strategy=RayDDPStrategy(), devices="auto",
                      plugins=[RayLightningEnvironment()], **kwargs)
        return prepare_trainer(pl.Trainer(**config))


def _checkpoint_epoch(path: str) -> tuple[int, int] | None:
    """``(epoch, global_step)`` of a Lightning checkpoint file, or ``None`` when it does not load
    (half-written, truncated, missing)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        return int(ckpt["epoch"]), int(ckpt["global_step"])
    except Exception:  # noqa: BLE001 (any failure to load means: not a complete checkpoint)
        return None


def newest_checkpoint(run_dir: str) -> tuple[str, tuple[int, int]] | None:
    """The newest complete checkpoint under ``run_dir`` (``checkpoint_*/checkpoint.ckpt`` that
    loads), by ``(epoch, global_step)``: ``(path, (epoch, step))``, or ``None``."""
    found = []
    for path in glob.glob(os.path.join(run_dir, "checkpoint_*", CHECKPOINT_FILE)):
        at = _checkpoint_epoch(path)
        if at is not None:
            found.append((at, path))
    if not found:
        return None
    at, path = max(found)
    return path, at


def resume_point(handed: str | None, run_dir: str | None) -> tuple[str | None, str]:
    """Which checkpoint file to resume from, and why (for the log).

    Ray hands over only checkpoints it registered, and it registers one when every rank's report
    has been collected by a status poll (``ray/train/v2/_internal/execution/checkpoint/
    report_handler.py: after_worker_group_poll_status``): a worker killed between its rank-0
    peer's upload and that poll leaves a complete checkpoint on disk that Ray never hands over.
    So the newest complete checkpoint on disk wins when it is newer than Ray's."""
    disk = newest_checkpoint(run_dir) if run_dir and os.path.isdir(run_dir) else None
    ray_at = _checkpoint_epoch(handed) if handed else None
    if disk is None and ray_at is None:
        return None, "no complete checkpoint: training from the start"
    if disk is not None and (ray_at is None or disk[1] > ray_at):
        why = ("Ray handed over none" if handed is None else
               f"newer than the one Ray handed over (epoch {ray_at[0] if ray_at else '?'})")
        return disk[0], f"the newest complete checkpoint on disk (epoch {disk[1][0]}), {why}"
    return handed, f"the checkpoint Ray handed over (epoch {ray_at[0]}), the newest complete one"


def train_func(config: dict) -> dict:
    """One Ray worker: build model, data and Trainer from the CLI arguments; fit; resume if asked.

    ``config``: ``cli_args`` (list), ``use_gpu`` (bool), optional ``fault`` (:class:`FailOnce`
    kwargs), ``throughput`` and ``sparse`` (bool), ``callbacks`` (more Lightning callbacks) and
    ``logger`` (instead of the config's; a Tune trial's). Returns (rank 0's is the run's
    ``return_value``) the epoch this attempt started at, every epoch's metrics and, if asked,
    the training throughput.
    """
    history, timer = EpochHistory(), TrainThroughput()
    extra = [history, *config.get("callbacks", ())] + ([timer] if config.get("throughput") else [])
    if config.get("fault"):
        extra.append(FailOnce(**config["fault"]))
    cli = RayCLI(config["cli_args"], use_gpu=config.get("use_gpu", False), callbacks=extra,
                 sparse=config.get("sparse", False), logger=config.get("logger"))
    checkpoint = ray.train.get_checkpoint()  # the latest registered, after a failure or rerun
    with checkpoint.as_directory() if checkpoint else nullcontext() as folder:
        handed = os.path.join(folder, CHECKPOINT_FILE) if folder else None
        ckpt_path, why = resume_point(handed, config.get("run_dir"))
        log.info("resume: %s%s", why, f" ({ckpt_path})" if ckpt_path else "")
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path)
    return {"start_epoch": history.start_epoch, "history": history.rows,
            "throughput": timer.epochs, "resumed": ckpt_path is not None, "resumed_from": why,
            "torch_threads": torch.get_num_threads()}


def build_trainer(cli_args: Sequence[str], num_workers: int, use_gpu: bool = False,
                  cpus_per_worker: float = 1.0, storage_path: str = "artifacts/ray_results",
                  name: str = "reelgraph", max_failures: int = 0, num_to_keep: int | None = 2,
                  fault: dict | None = None, throughput: bool = False,
                  sparse: bool = False, callbacks: Sequence[pl.Callback] = (),
                  logger: Any = None, run_callbacks: Sequence[Any] = ()) -> TorchTrainer:
    """A ``TorchTrainer`` running :func:`train_func` on ``num_workers`` workers.

    ``fault``: ``{"epoch": E, "rank": R, "batch": B}`` arms :class:`FailOnce` with a marker in
    the run folder (a local or shared ``storage_path``) unless it names its own ``marker``.
    ``callbacks`` and ``logger`` (picklable) go to every worker's Trainer; ``run_callbacks`` are
    Ray Train's (e.g. Tune's ``TuneReportCallback``, for a run inside a Tune trial).
    """
    local = "://" not in storage_path
    storage_path = os.path.abspath(storage_path) if local else storage_path
    if fault is not None:
        if not local:
            raise ValueError("--fail-at-epoch needs a local or shared (NFS) --storage-path")
        fault = {"marker": os.path.join(storage_path, name, FAULT_MARKER), **fault}
    resources = {"CPU": cpus_per_worker, **({"GPU": 1} if use_gpu else {})}
    return TorchTrainer(
        train_func,
        train_loop_config={"cli_args": list(cli_args), "use_gpu": use_gpu, "fault": fault,
                           "throughput": throughput, "sparse": sparse,
                           "callbacks": list(callbacks), "logger": logger,
                           "run_dir": os.path.join(storage_path, name) if local else None},
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu,
                                     resources_per_worker=resources),
        run_config=RunConfig(
            name=name, storage_path=storage_path, callbacks=list(run_callbacks),
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=num_to_keep,
                                               checkpoint_score_attribute=MONITOR,
                                               checkpoint_score_order="max")))


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(
        prog="python -m reelgraph.distributed.train",
        description="Train a ReelGraph model with Ray Train (DDP over N workers) from the same YAML "
                    "config `reelgraph fit` takes. Any further `--trainer.*`, `--model.*`, "
                    "`--data.*` arguments override the YAML exactly as in `reelgraph fit`.",
        epilog="Resume: rerun with the same --name and --storage-path. A failed worker restarts "
               "the group from the latest checkpoint up to --max-failures times. Paths inside the "
               "config (data, cache_dir) are opened on every worker.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", required=True, help="YAML config of `reelgraph fit`")
    p.add_argument("--num-workers", type=int, default=2, help="Ray Train workers (DDP ranks)")
    p.add_argument("--gpu", action="store_true", help="one GPU per worker (NCCL), else CPU (gloo)")
    p.add_argument("--cpus-per-worker", type=float, default=1.0,
                   help="CPUs reserved per worker (also its torch threads)")
    p.add_argument("--storage-path", default="artifacts/ray_results",
                   help="run folders and checkpoints; local, NFS or s3://... (shared by all nodes)")
    p.add_argument("--name", default=None, help="run name; reelgraph-<config stem> if not given")
    p.add_argument("--max-failures", type=int, default=0, help="worker-group restarts allowed")
    p.add_argument("--num-to-keep", type=int, default=2,
                   help="checkpoints kept, best by val/recall@20 (the latest is always kept)")
    p.add_argument("--sparse-embeddings", action="store_true",
                   help="SparseRecModule: sparse row gradients and a row-wise optimiser for large "
                        "tables (model SparseMFConfig; see distributed/README.md)")
    p.add_argument("--address", default=None,
                   help="Ray cluster address; RAY_ADDRESS if not given, else a local Ray")
    fault = p.add_argument_group("fault drill (first attempt only)")
    fault.add_argument("--fail-at-epoch", type=int, default=None,
                       help="raise in one worker during this epoch")
    fault.add_argument("--fail-rank", type=int, default=0, help="the worker (global rank) that raises")
    fault.add_argument("--fail-at-batch", type=int, default=1, help="the batch at which it raises")
    fault.add_argument("--fail-kill", action="store_true",
                       help="the worker SIGKILLs itself instead of raising (a real crash)")
    args, rest = p.parse_known_args(argv)
    if args.num_workers < 1:
        p.error("--num-workers must be >= 1")
    if args.fail_at_epoch is not None and not 0 <= args.fail_rank < args.num_workers:
        p.error(f"--fail-rank must be in [0, {args.num_workers - 1}]")
    if not os.path.isfile(args.config):
        p.error(f"--config {args.config}: no such file")
    return args, rest


def main(argv: Sequence[str] | None = None) -> dict:
    """The entry (``argv``: default ``sys.argv[1:]``); a data or config error found on the driver
    is one line on stderr and exit status 2 (``--traceback`` shows the stack)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return exit_on_user_error(_main, argv, "python -m reelgraph.distributed.train")


def _main(argv: list[str]) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args, rest = parse_args(argv)
    with open(args.config) as f:  # the YAML text travels to the workers, not the path
        cli_args = ["--config", f.read(), *rest]
    RayCLI(cli_args, instantiate=False, sparse=args.sparse_embeddings)  # fail here, with jsonargparse's message, on a bad config
    name = args.name or "reelgraph-" + os.path.splitext(os.path.basename(args.config))[0]
    fault = None if args.fail_at_epoch is None else {
        "epoch": args.fail_at_epoch, "rank": args.fail_rank, "batch": args.fail_at_batch,
        "kill": args.fail_kill}
    if args.address and not ray.is_initialized():
        ray.init(address=args.address)
    trainer = build_trainer(cli_args, args.num_workers, args.gpu, args.cpus_per_worker,
                            args.storage_path, name, args.max_failures, args.num_to_keep, fault,
                            sparse=args.sparse_embeddings)
    result = trainer.fit()
    back = {k: v for k, v in (result.return_value or {}).items() if k != "history"}
    summary = {"path": result.path, "checkpoint": result.checkpoint and result.checkpoint.path,
               "metrics": result.metrics, "return": back}
    print("FINAL " + json.dumps(summary, default=str, sort_keys=True))
    return summary


if __name__ == "__main__":
    main()
