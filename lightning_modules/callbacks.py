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
