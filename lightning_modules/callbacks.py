"""Callbacks of the ReelGraph loop."""
from __future__ import annotations

import logging
import time

from reelgraph.lightning_modules._pl import pl

log = logging.getLogger("reelgraph")


class EpochSummary(pl.Callback):
    """Logs one line per epoch (seconds, loss, validation metrics): readable in non-TTY logs.

    Printed at ``on_train_epoch_end``, which Lightning calls after the epoch's validation (a
    callback's ``on_validation_epoch_end`` runs before the module has logged its metrics).
    """

    def __init__(self, keys: tuple[str, ...] = ("val/recall@20", "val/ndcg@20")):
        self.keys, self._start, self._validated = keys, None, False

    def on_train_epoch_start(self, trainer, module) -> None:
        if self._start is None:
            self._start = time.perf_counter()
        self._validated = False

    def on_validation_epoch_end(self, trainer, module) -> None:
        self._validated = not trainer.sanity_checking

    def on_train_epoch_end(self, trainer, module) -> None:
        if not trainer.is_global_zero:
            return
        m = trainer.callback_metrics
        parts = [f"{k.split('/')[-1]} {float(m[k]):.4f}" for k in self.keys
                 if k in m and self._validated]
        loss = m.get("train/loss_epoch", m.get("train/loss"))
        if loss is not None:
            parts.insert(0, f"loss {float(loss):.4f}")
        elapsed = time.perf_counter() - (self._start or time.perf_counter())
        log.info("epoch %d (%.0fs): %s", trainer.current_epoch, elapsed, "  ".join(parts))


class LoaderWait(pl.Callback):
    """Profiles the training loop: the share of its time spent waiting for batches (fetching
    from the loader, to the device, binding), steps/s and positives/s, logged each epoch as
    ``perf/data_wait_share``, ``perf/steps_per_s``, ``perf/positives_per_s``; :meth:`summary`
    gives the same over the whole fit. Tells whether ``data.num_workers`` helps: with 0 the wait
    is the sampling. The first ``warmup`` batches of the fit (worker start-up, optimiser state)
    are left out.
    """

    def __init__(self, warmup: int = 1):
        self.warmup = warmup
        self._fit = [0.0, 0.0, 0, 0]    # wait s, step s, steps, positives over the fit
        self._epoch = [0.0, 0.0, 0, 0]
        self._seen, self._last = 0, None

    def on_train_epoch_start(self, trainer, module) -> None:
        self._epoch = [0.0, 0.0, 0, 0]
        self._last = time.perf_counter()

    def on_train_batch_start(self, trainer, module, batch, batch_idx: int) -> None:
        self._wait_s, self._last = time.perf_counter() - self._last, time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx: int) -> None:
        now = time.perf_counter()
        self._seen += 1
        if self._seen > self.warmup:
            for totals in (self._fit, self._epoch):
                totals[0] += self._wait_s
                totals[1] += now - self._last
                totals[2] += 1
                totals[3] += len(batch)
        self._last = now

    @staticmethod
    def _row(wait: float, step: float, steps: int, positives: int) -> dict[str, float]:
        total = wait + step
        return {"data_wait_share": wait / total, "steps_per_s": steps / total,
                "positives_per_s": positives / total, "steps": steps} if steps else {}

    def summary(self) -> dict[str, float]:
        """The figures over every timed batch of the fit."""
        return self._row(*self._fit)

    def on_train_epoch_end(self, trainer, module) -> None:
        row = self._row(*self._epoch)
        if row:
            module.log_dict({f"perf/{k}": float(v) for k, v in row.items() if k != "steps"})


class Checkpoint(pl.callbacks.ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` is always the latest finished epoch.

    Lightning (2.5 and later) rewrites ``last.ckpt`` only when a top-k checkpoint is saved, so
    after an epoch that did not improve the monitored metric, ``--ckpt_path last`` would resume
    from an older epoch and train it again. Here ``last.ckpt`` is also saved at the end of every
    training epoch (after its validation), the point a resumed run continues from cleanly; set
    ``save_on_train_epoch_end=True`` so the best checkpoints are saved there too.
    """

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
