"""Lightning callbacks the Ray Train entry adds to the CLI's own: history, timing, fault injection.

They import Lightning only through ``reelgraph.lightning_modules._pl`` and never import Ray, so
they work (and are tested) in a plain Trainer too.
"""
from __future__ import annotations

import os
import signal
import time

from reelgraph.lightning_modules._pl import pl


class InjectedFault(RuntimeError):
    """The one exception ``--fail-at-epoch`` raises, so logs show it was planned."""


class FailOnce(pl.Callback):
    """Raises :class:`InjectedFault` in one worker, mid-epoch, the first time only; with
    ``kill``, the worker process SIGKILLs itself instead (a real crash: no exception, no
    cleanup, nothing reported).

    Args:
        marker: a file on storage every attempt sees (the run's storage folder, or a search's);
            the fault fires only while it does not exist, and creates it before raising, so the
            restarted attempt (and every other trial of a search) trains through.
        epoch: the epoch in which to fail.
        rank: the global rank that fails (the others then fail in their next collective).
        batch: the batch index within ``epoch`` at which to fail (default 1: mid-epoch).
        kill: ``os.kill(os.getpid(), SIGKILL)`` instead of raising.
    """

    def __init__(self, marker: str, epoch: int, rank: int = 0, batch: int = 1,
                 kill: bool = False):
        self.marker, self.epoch, self.rank, self.batch = marker, epoch, rank, batch
        self.kill = kill

    def on_train_batch_start(self, trainer, module, batch, batch_idx: int) -> None:
        if (trainer.current_epoch, trainer.global_rank) != (self.epoch, self.rank):
            return
        if batch_idx != min(self.batch, trainer.num_training_batches - 1) or os.path.exists(self.marker):
            return
        os.makedirs(os.path.dirname(self.marker) or ".", exist_ok=True)
        try:  # created atomically: of concurrent processes (Tune trials) exactly one fails
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        with os.fdopen(fd, "w") as f:
            f.write(f"epoch {self.epoch} batch {batch_idx} rank {self.rank} at {time.time():.0f}\n")
        if self.kill:
            os.kill(os.getpid(), signal.SIGKILL)
        raise InjectedFault(f"injected fault: rank {self.rank}, epoch {self.epoch}, batch "
                            f"{batch_idx} (--fail-at-epoch); marker {self.marker}")


class EpochHistory(pl.Callback):
    """Keeps every epoch's metrics (floats) and the epoch this attempt started at.

    Put it before Ray's report callback: both read ``trainer.callback_metrics`` at the end of the
    training epoch, after that epoch's validation.
    """

    def __init__(self):
        self.rows: list[dict[str, float]] = []
        self.start_epoch: int | None = None

    def on_train_epoch_start(self, trainer, module) -> None:
        if self.start_epoch is None:
            self.start_epoch = trainer.current_epoch

    def on_train_epoch_end(self, trainer, module) -> None:
        row = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        self.rows.append({**row, "epoch": trainer.current_epoch})


class TrainThroughput(pl.Callback):
    """Positives per second of the training part of each epoch (all workers together).

    Times ``on_train_epoch_start`` → the last training batch's end, so validation and checkpoint
    writing are excluded; ``positives`` is the epoch's training edges summed over the workers.
    """

    def __init__(self):
        self.epochs: list[dict[str, float]] = []

    def on_train_epoch_start(self, trainer, module) -> None:
        self._start, self._count = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx: int) -> None:
        self._count += len(batch)
        if batch_idx == trainer.num_training_batches - 1:
            seconds = time.perf_counter() - self._start
            positives = self._count * trainer.world_size  # shards differ by at most one batch row
            self.epochs.append({"epoch": trainer.current_epoch, "seconds": seconds,
                                "positives": positives, "positives_per_s": positives / seconds})
