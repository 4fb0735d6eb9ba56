"""The benchmarks' short fit: train a RecModule on a RecDataModule, validation off, then test.

A script run as ``python benchmarks/x.py`` has this folder first on ``sys.path``; a script
loaded by path (``importlib``) puts it there itself before ``from _fit import fit_and_test``."""
from __future__ import annotations

import time

from reelgraph.lightning_modules._pl import pl
from reelgraph.lightning_modules.datamodule import RecDataModule
from reelgraph.lightning_modules.module import RecModule


def quiet_trainer(*, root: str, accelerator: str = "cpu", **kw) -> pl.Trainer:
    """A one-device Trainer with validation, logger, checkpoints, progress bar and summary off
    (Lightning's files under ``root``); ``kw``: further Trainer arguments (epochs, callbacks)."""
    return pl.Trainer(accelerator=accelerator, devices=1, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, enable_checkpointing=False,
                      limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=root, **kw)


def fit_and_test(module: RecModule, datamodule: RecDataModule, *, epochs: int, root: str,
                 accelerator: str = "cpu") -> tuple[dict[str, float], float]:
    """Trains ``module`` for ``epochs`` on one device (no validation, logger, checkpoints,
    progress bar or summary; Lightning's files under ``root``) and tests the last epoch.
    Returns ``trainer.test``'s metrics (``{"test/recall@20": ...}``) and ``trainer.fit``'s
    wall seconds."""
    trainer = quiet_trainer(root=root, accelerator=accelerator, max_epochs=epochs)
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    seconds = time.perf_counter() - start
    return trainer.test(module, datamodule=datamodule, verbose=False)[0], seconds
