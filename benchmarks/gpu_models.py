"""Issues 16-17 on a GPU: every new model (MMGCN, SHL, A2BM2GL, CKG, ISGNN) trained the way
``reelgraph fit`` trains it, in full-graph and sampled mode, timed. One run of a few minutes.
Each part is guarded: if one fails, its traceback is printed and the run goes on.

Every part is one model in one mode on ``synthetic:default`` (its visual/acoustic/textual item
features and its item KG; the 8:1:1 split of ``configs/table_synthetic.yaml``). It trains
through RecDataModule + RecModule + a Lightning Trainer (``--accelerator``, 1 device,
validation off; Adam lr 5e-3, batch 4096 x 4 negatives, d 64, each config's own defaults
otherwise) for ``--steps`` steps, then runs one full-ranking test with train and validation
items masked. Modes: ``full`` is ``fanouts=None`` (the whole graph every step) and ``sampled``
is ``fanouts=[10] * num_layers``. ISGNN draws every batch, so its ``full`` is
``history=neighbors=-1`` (every interaction and every co-interaction neighbour, eq. 2 exact)
and its ``sampled`` is its default (20 / 10).

Per part: ``step_ms`` is the median over the steps after ``--warmup`` of
on_train_batch_start -> end (forward, backward, optimiser; CUDA synchronised). ``cycle_ms`` is
the median from one batch end to the next, so it also counts the loader's sampling. Also
reported: ``train_s`` (first batch start to last batch end), the first and last training
loss, peak GPU memory (reset per part, test included) and test Recall@20.

A part fails on an exception, a non-finite loss, fewer steps than asked, or parameters that
are not on the accelerator. A part still running when ``--deadline-s`` passes stops after its
current step and is reported ``cut``; parts not started by then are reported ``skipped``.

``--ckg-ml1m PATH`` adds a last part (off by default): one whole-graph CKG epoch on ml-1m
under ``benchmarks/kg_models.py``'s protocol (d 64, 3 layers, batch 4096 x 1, kg_batch_size
4096, lr 1e-3, reg 1e-4, 8:1:1 seed 0). On the CPU that epoch (196 steps) takes about
80 min; an epoch cut by the deadline still gives its ``step_ms``.
``--smoke`` uses tiny sizes on the CPU; there this part stops after ``--steps`` steps.

The first run generates and builds ``synthetic:default`` under ``--cache-dir`` (25 MB; a
built ``artifacts/cache`` can be carried to the GPU machine instead). The run ends with one
line per part,
``FIGURE <model>-<mode> steps N step_ms X cycle_ms X train_s X recall@20 X peak_gib X loss
A->B fell|rose ok|FAILED|cut|skipped``, then ``SUMMARY trained on <device>: k of n parts``.
The exit status is 1 if any part failed.

On the GPU machine, from the repository root (``.devdata/ml-1m``: a copy of
``../shared/data/ml-1m``, 16 MB)::

    python benchmarks/gpu_models.py                              # all 10 parts, ~3-5 min
    python benchmarks/gpu_models.py --ckg-ml1m .devdata/ml-1m    # and the ml-1m CKG epoch
    python benchmarks/gpu_models.py --models '' --ckg-ml1m .devdata/ml-1m   # that epoch alone
    python benchmarks/gpu_models.py --smoke                      # tiny sizes, on the CPU (~1 min)
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field, replace

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # gpu, kg_models: also by path
from gpu import guarded, importable_checkout, sync  # noqa: E402  (gpu imports torch only)

PKG_DIR = importable_checkout()  # before any reelgraph import: an un-installed checkout
import kg_models  # noqa: E402
from _fit import quiet_trainer  # noqa: E402
from reelgraph.data.split import SplitConfig  # noqa: E402
from reelgraph.lightning_modules._pl import pl  # noqa: E402
from reelgraph.lightning_modules.datamodule import RecDataModule  # noqa: E402
from reelgraph.lightning_modules.module import RecModule  # noqa: E402
from reelgraph.models import CKGConfig, ISGNNConfig, MMGCNConfig, ModelConfig, SHLConfig  # noqa
from reelgraph.models.a2bm2gl import A2BM2GLConfig  # noqa: E402

CONFIGS = {"mmgcn": MMGCNConfig, "shl": SHLConfig, "a2bm2gl": A2BM2GLConfig, "ckg": CKGConfig,
           "isgnn": ISGNNConfig}
MODES = ("full", "sampled")
SPLIT = SplitConfig(method="ratio", ratios=(0.8, 0.1, 0.1), seed=0)  # table_synthetic.yaml's


def config(name: str, mode: str, dim: int) -> ModelConfig:
    """``name``'s config, ``embedding_dim=dim``, in ``mode`` (module doc)."""
    if name == "isgnn":
        return ISGNNConfig(embedding_dim=dim, **({"history": -1, "neighbors": -1}
                                                 if mode == "full" else {}))
    c = CONFIGS[name](embedding_dim=dim)
    return c if mode == "full" else replace(c, fanouts=[10] * c.num_layers)


class StepClock(pl.Callback):
    """Per training step: ``step_ms`` (batch start -> end), ``cycle_ms`` (batch end -> end),
    the loss and the parameters' device; stops the fit after the step that ends past
    ``deadline`` (a ``time.perf_counter()`` value)."""

    def __init__(self, deadline: float):
        self.deadline, self.cut, self.device = deadline, False, None
        self.step_ms: list[float] = []
        self.cycle_ms: list[float] = []
        self.losses: list[float] = []
        self.first = self.last = self._start = 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        sync(module.device)
        self._start = time.perf_counter()
        self.first = self.first or self._start

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        sync(module.device)
        now = time.perf_counter()
        self.step_ms.append(1e3 * (now - self._start))
        if self.last:
            self.cycle_ms.append(1e3 * (now - self.last))
        self.last = now
        self.losses.append(float(outputs["loss"] if isinstance(outputs, dict) else outputs))
        self.device = next(module.model.parameters()).device
        if now > self.deadline:
            self.cut = trainer.should_stop = True


@dataclass
class Result:
    status: str = "skipped"          # ok | FAILED | cut (deadline mid-part) | skipped
    steps: int = 0
    step_ms: float = math.nan        # medians after the warm-up
    cycle_ms: float = math.nan
    train_s: float = math.nan
    recall: float = math.nan         # test Recall@20
    peak_gib: float = math.nan       # CUDA only
    losses: list[float] = field(default_factory=list)

    def describe(self) -> str:
        """``steps N step_ms X ... loss A->B fell|rose <status>`` (``n/a``: not measured)."""
        first, last = (self.losses or [math.nan])[0], (self.losses or [math.nan])[-1]
        trend = "fell" if last < first else "rose" if len(self.losses) > 1 else "n/a"
        loss = f"{first:.4g}->{last:.4g} {trend}" if self.losses else "n/a"
        num = lambda v, f: "n/a" if math.isnan(v) else format(v, f)  # noqa: E731
        return (f"steps {self.steps} step_ms {num(self.step_ms, '.4g')} cycle_ms "
                f"{num(self.cycle_ms, '.4g')} train_s {num(self.train_s, '.3g')} recall@20 "
                f"{num(self.recall, '.4f')} peak_gib {num(self.peak_gib, '.3g')} loss {loss} "
                f"{self.status}")


def fit(cfg: ModelConfig, dm: RecDataModule, a: argparse.Namespace, *, lr: float,
        max_steps: int, deadline: float) -> Result:
    """Trains ``cfg`` on ``dm`` for ``max_steps`` (-1: one epoch), tests Recall@20; raises
    ``RuntimeError`` on a non-finite loss, missing steps or parameters off the accelerator."""
    if a.cuda:
        torch.cuda.reset_peak_memory_stats()
    pl.seed_everything(0, verbose=False)
    module, clock = RecModule(cfg, lr=lr, ks=(20,), auc=False), StepClock(deadline)
    trainer = quiet_trainer(root=a.cache_dir, accelerator=a.accelerator, max_steps=max_steps,
                            max_epochs=1 if max_steps < 0 else -1, callbacks=[clock])
    trainer.fit(module, datamodule=dm)
    recall = float(trainer.test(module, datamodule=dm, verbose=False)[0]["test/recall@20"])
    w = min(a.warmup, len(clock.step_ms) - 1)
    median = lambda v: statistics.median(v) if v else math.nan  # noqa: E731
    r = Result("cut" if clock.cut else "ok", len(clock.losses),
               median(clock.step_ms[w:]), median(clock.cycle_ms[w:]),
               clock.last - clock.first, recall,
               torch.cuda.max_memory_allocated() / 2**30 if a.cuda else math.nan, clock.losses)
    print(f"  {r.describe()}; parameters on {clock.device}", flush=True)
    problems = [m for bad, m in (
        (not all(map(math.isfinite, r.losses)), "a non-finite loss"),
        (max_steps > 0 and r.steps != max_steps and not clock.cut,
         f"{r.steps} of {max_steps} steps"),
        (a.cuda and clock.device.type != "cuda", f"parameters on {clock.device}"),
        (not math.isfinite(recall), f"recall@20 {recall}")) if bad]
    if problems:
        raise RuntimeError("; ".join(problems))
    return r


def synthetic_part(name: str, mode: str, a: argparse.Namespace, deadline: float) -> Result:
    cfg = config(name, mode, a.dim)
    dm = RecDataModule(data=a.data, split=SPLIT, batch_size=a.batch_size, num_negatives=4,
                       cache_dir=a.cache_dir, seed=0)
    return fit(cfg, dm, a, lr=5e-3, max_steps=a.steps, deadline=deadline)


def ckg_ml1m_part(path: str, a: argparse.Namespace, deadline: float) -> Result:
    """One whole-graph CKG epoch (smoke: ``--steps`` steps) under kg_models.py's protocol."""
    k = kg_models.parse(["--data", path, "--epochs", "1", "--cache-dir", a.cache_dir])
    dm = RecDataModule(data=k.data, split=SPLIT, batch_size=k.batch_size,
                       num_negatives=k.num_negatives, cache_dir=k.cache_dir, seed=k.seed)
    return fit(kg_models.config("ckg", k), dm, a, lr=k.lr,
               max_steps=a.steps if a.smoke else -1, deadline=deadline)


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line, its size defaults resolved (``--smoke``: tiny ones)."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--accelerator", choices=("gpu", "cuda", "cpu"),
                   help="Lightning accelerator (default gpu; smoke: cpu)")
    p.add_argument("--models", default=",".join(CONFIGS),
                   help="comma-separated subset ('': only --ckg-ml1m)")
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated subset")
    p.add_argument("--steps", type=int, help="training steps per part (30; smoke 4)")
    p.add_argument("--warmup", type=int, help="steps left out of the medians (5; smoke 1)")
    p.add_argument("--ckg-ml1m", metavar="PATH", help="also one whole-graph CKG epoch on ml-1m")
    p.add_argument("--deadline-s", type=float, default=420.0, help="whole-run wall seconds")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, to test the script on a CPU")
    p.add_argument("--cache-dir", default=os.path.join("artifacts", "cache"), help="built stores")
    a = p.parse_args(argv)
    smoke = a.smoke
    a.accelerator = a.accelerator or ("cpu" if smoke else "gpu")
    a.cuda = a.accelerator in ("gpu", "cuda")
    a.steps = a.steps if a.steps is not None else (4 if smoke else 30)
    a.warmup = a.warmup if a.warmup is not None else (1 if smoke else 5)
    a.data, a.dim = ("synthetic:tiny", 8) if smoke else ("synthetic:default", 64)
    a.batch_size = 256 if smoke else 4096
    if a.cuda and not torch.cuda.is_available():
        p.error(f"--accelerator {a.accelerator}: CUDA is not available here (use cpu)")
    a.models, a.modes = [m for m in a.models.split(",") if m], [m for m in a.modes.split(",") if m]
    for bad in sorted(set(a.models) - set(CONFIGS)) + sorted(set(a.modes) - set(MODES)):
        p.error(f"unknown model or mode {bad!r}: choose from {list(CONFIGS)}, {list(MODES)}")
    return a


def main(argv: list[str] | None = None) -> int:
    """Runs the parts (module doc); returns the exit status: 1 if a part failed, else 0."""
    a = parse(argv)
    smoke, cuda = a.smoke, a.cuda
    t0 = time.perf_counter()
    deadline = t0 + a.deadline_s
    parts = {f"{m}-{mode}": (lambda m=m, mode=mode: synthetic_part(m, mode, a, deadline))
             for m in a.models for mode in a.modes}
    if a.ckg_ml1m:
        parts["ckg-ml1m-full"] = lambda: ckg_ml1m_part(a.ckg_ml1m, a, deadline)
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning",
                 "reelgraph.data"):  # reelgraph.data: each part repeats the store's build notes
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)`")
    if cuda:
        torch.set_float32_matmul_precision("high")  # as `reelgraph fit`
    device = torch.cuda.get_device_name() if cuda else f"cpu ({torch.get_num_threads()} threads)"
    print(f"{' '.join(sys.argv)}\n{device}, torch {torch.__version__}, {a.data}, d {a.dim}, "
          f"{a.steps} steps{', smoke sizes' if smoke else ''}"
          + (f"; reelgraph imported through {PKG_DIR}" if PKG_DIR else ""), flush=True)
    results: dict[str, Result] = {}
    for name, part in parts.items():
        results[name] = Result()
        if time.perf_counter() > deadline:
            continue
        results[name].status = "FAILED"  # unless the part returns
        guarded(f"{name} ({time.perf_counter() - t0:.0f} s)",
                lambda: results.__setitem__(name, part()))  # noqa: B023 (called at once)
        if cuda:
            torch.cuda.empty_cache()
    print(f"\n== summary ({time.perf_counter() - t0:.0f} s in all)")
    for name, r in results.items():
        print(f"FIGURE {name} {r.describe()}")
    ok = sum(r.status == "ok" for r in results.values())
    print(f"SUMMARY trained on {device}: {ok} of {len(results)} parts", flush=True)
    return int(any(r.status == "FAILED" for r in results.values()))


if __name__ == "__main__":
    sys.exit(main())
