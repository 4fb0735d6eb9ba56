"""Callbacks of the ReelGraph loop."""
from __future__ import annotations

import logging
import time

from reelgraph.lightning_modules._pl import pl

log = logging.getLogger("reelgraph")


class EpochSummary(pl.Callback):
    """Logs one line per validation (epoch, seconds, loss, metrics): readable in non-TTY logs."""

    def __init__(self, keys: tuple[str, ...] = ("val/recall@20", "val/ndcg@20")):
        self.keys, self._start = keys, None

    def on_train_epoch_start(self, trainer, module) -> None:
        if self._start is None:
            self._start = time.perf_counter()

    def on_validation_epoch_end(self, trainer, module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        m = trainer.callback_metrics
        parts = [f"{k.split('/')[-1]} {float(m[k]):.4f}" for k in self.keys if k in m]
        loss = m.get("train/loss_epoch", m.get("train/loss"))
        if loss is not None:
            parts.insert(0, f"loss {float(loss):.4f}")
        elapsed = time.perf_counter() - (self._start or time.perf_counter())
        log.info("epoch %d (%.0fs): %s", trainer.current_epoch, elapsed, "  ".join(parts))
