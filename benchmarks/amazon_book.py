"""BPR-MF and LightGCN on the amazon-book KGAT split: quality, time per epoch, peak memory.

Trains through the product path (RecDataModule + RecModule + a Lightning Trainer), evaluates
full ranking over all 24,915 items with training items masked on the fixed test split, and prints
Recall@20 / NDCG@20 (binary-relevance NDCG, log2 discount) per evaluation. It also times one
propagation forward+backward of our CSR LightGCN against PyG's ``LGConv`` (edge_index message
passing) on the same graph in the same process, and prints the ratio.

Training time excludes evaluation. ``--val-check-interval`` evaluates inside an epoch (epochs are
then printed as fractions), ``--target-recall`` stops at the first evaluation reaching it, and
``--json`` writes the settings, every evaluation, s/epoch, eval s and peak RSS
(``benchmarks/vs_recbole.py`` drives it so).

    python benchmarks/amazon_book.py --model lightgcn --epochs 20 --eval-every 5
    python benchmarks/amazon_book.py --model mf --epochs 40 --eval-every 10 --batch-size 8192
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import torch

from reelgraph.lightning_modules._pl import pl
from reelgraph.lightning_modules.datamodule import RecDataModule
from reelgraph.lightning_modules.module import RecModule
from reelgraph.models import LightGCNConfig, MFConfig

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "amazon-book-kgat")
REFERENCE = {"BPRMF (KGAT-pytorch)": (0.1336, 0.0694), "KGAT (KGAT-pytorch)": (0.1412, 0.0753)}


def peak_rss_gib() -> float:
    """Peak resident memory of this process or any child it waited for (loader workers)."""
    return max(resource.getrusage(w).ru_maxrss for w in (resource.RUSAGE_SELF,
                                                         resource.RUSAGE_CHILDREN)) / 2**20


def last_of_epoch(steps: int, steps_per_epoch: int, val_check_batch: int) -> bool:
    """Whether a validation after ``steps`` optimizer steps is the last of its epoch: fewer
    than ``val_check_batch`` steps of the epoch remain (Lightning validates every
    ``val_check_batch`` steps, counted from each epoch's start; 319 steps at a quarter: after
    79, 158, 237 and 316, and 316 is the last)."""
    done = steps - (max(steps - 1, 0) // steps_per_epoch) * steps_per_epoch  # 1..steps_per_epoch
    return steps_per_epoch - done < val_check_batch


class EpochTimer(pl.Callback):
    """Training time with evaluation excluded, and the metrics of every validation (also one
    inside an epoch, with ``val_check_interval`` < 1); stops training at the first validation
    whose Recall@20 reaches ``target`` (``epoch_end_only``: at the first such validation that is
    the last of its epoch, so a run compared with a per-epoch peer stops on the peer's grid; the
    validations before it are still recorded).

    ``rows`` holds ``(epochs trained, training seconds so far, recall@20, ndcg@20)``, the epochs
    as a fraction (optimizer steps / steps per epoch)."""

    def __init__(self, target: float | None = None, epoch_end_only: bool = False):
        self.target, self.epoch_end_only, self.train_s, self.steps = target, epoch_end_only, 0.0, 0
        self.eval_s, self.rows = [], []

    def _lap(self) -> None:
        now = time.perf_counter()
        self.train_s += now - self._t
        self._t = now

    def on_train_start(self, trainer, module):
        self._t = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.steps += 1

    def on_validation_start(self, trainer, module):
        self._lap()

    def on_validation_end(self, trainer, module):  # after the module logged its metrics
        self.eval_s.append(time.perf_counter() - self._t)
        m, epochs = trainer.callback_metrics, self.steps / trainer.num_training_batches
        self.rows.append((epochs, self.train_s, float(m["val/recall@20"]), float(m["val/ndcg@20"])))
        print(f"epoch {epochs:7.2f}  train {self.train_s:8.1f}s  recall@20 {self.rows[-1][2]:.4f}  "
              f"ndcg@20 {self.rows[-1][3]:.4f}  eval {self.eval_s[-1]:.2f}s  "
              f"peak RSS {peak_rss_gib():.2f} GiB", flush=True)
        ends_epoch = last_of_epoch(self.steps, trainer.num_training_batches,
                                   trainer.val_check_batch)
        if (self.target is not None and self.rows[-1][2] >= self.target
                and (ends_epoch or not self.epoch_end_only)):
            print(f"target Recall@20 {self.target:.4f} reached", flush=True)
            trainer.should_stop = True
        self._t = time.perf_counter()

    def on_train_end(self, trainer, module):
        self._lap()


def propagation_ratio(dm: RecDataModule, dim: int = 64, layers: int = 3, reps: int = 3) -> None:
    """Forward+backward of 3-layer propagation: ours (CSR, symmetric backward) vs PyG LGConv."""
    from torch_geometric.nn import LGConv
    from reelgraph.graph import layer_mean, propagate
    g = dm.train_graph
    x = torch.randn(g.num_users + g.num_items, dim, requires_grad=True)
    graph = LightGCNConfig(embedding_dim=dim, num_layers=layers).plan().static(
        dm.store, torch.device("cpu")).graph  # the whole-graph operator LightGCN trains over
    u, i = g.users(), g.col + g.num_users
    edge_index = torch.stack([torch.cat([u, i]), torch.cat([i, u])])
    conv = LGConv()

    def pyg():
        h, out = x, x
        for _ in range(layers):
            h = conv(h, edge_index)
            out = out + h
        return out / (layers + 1)

    times = {}
    for name, fn in (("ours (CSR)", lambda: layer_mean(propagate(graph, x, layers))), ("PyG LGConv", pyg)):
        fn().sum().backward()  # warm-up
        t = time.perf_counter()
        for _ in range(reps):
            fn().pow(2).sum().backward()
        times[name] = (time.perf_counter() - t) / reps
        print(f"propagation fwd+bwd, {name}: {times[name] * 1e3:.0f} ms")
    print(f"ratio PyG/ours: {times['PyG LGConv'] / times['ours (CSR)']:.1f}x")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["lightgcn", "mf"], default="lightgcn")
    p.add_argument("--data", default=DATA, help="the amazon-book-kgat folder (or any folder "
                   "holding a LightGCN-format train.txt/test.txt)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--val-check-interval", type=float, default=None,
                   help="evaluate every this fraction of an epoch (< 1; overrides --eval-every)")
    p.add_argument("--batch-size", type=int, default=8192)
    p.add_argument("--negatives", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--reg", type=float, default=1e-4)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--init", choices=["normal", "xavier", "spectral"], default="normal",
                   help="LightGCN's layer-0 init; spectral: GF-CF's low-pass subspace "
                        "(reelgraph/models/spectral_init.py), its SVD counted in training time")
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--precision", default="32-true",
                   help="Lightning's Trainer precision, e.g. bf16-mixed (autocast; the sparse "
                        "propagation stays float32: torch has no bfloat16 CSR product on CPU)")
    p.add_argument("--max-minutes", type=float, default=None, help="stop training after this long")
    p.add_argument("--target-recall", type=float, default=None,
                   help="stop at the first evaluation whose Recall@20 is at least this")
    p.add_argument("--stop-at-epoch-end", action="store_true",
                   help="with --target-recall: stop only at an evaluation that ends an epoch "
                        "(the last of it), to compare on a per-epoch peer's grid")
    p.add_argument("--no-propagation-ratio", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--json", default=None, help="also write a JSON summary (settings, every "
                   "evaluation, s/epoch, eval s, peak RSS) to this file")
    return p.parse_args(argv)


def summary(a: argparse.Namespace, timer: EpochTimer, trainer, dm: RecDataModule) -> dict:
    """What ``--json`` writes: settings, every evaluation, mean times and the peak RSS."""
    epochs = timer.steps / trainer.num_training_batches
    evals = [{"epoch": e, "train_s": t, "recall@20": r, "ndcg@20": n, "eval_s": s}
             for (e, t, r, n), s in zip(timer.rows, timer.eval_s)]
    return {"library": "reelgraph", "model": a.model, "threads": torch.get_num_threads(),
            "settings": {k: getattr(a, k) for k in (
                "batch_size", "negatives", "lr", "reg", "dim", "layers", "init", "precision",
                "val_check_interval",
                "eval_every", "max_minutes", "target_recall")},
            "items": dm.num_items, "test_users": int(trainer.callback_metrics.get("val/num_users", 0)),
            "steps_per_epoch": trainer.num_training_batches, "epochs_run": epochs,
            "train_s": timer.train_s, "train_s_per_epoch": timer.train_s / epochs if epochs else None,
            "eval_s_mean": sum(timer.eval_s) / len(timer.eval_s) if timer.eval_s else None,
            "reached": bool(evals) and a.target_recall is not None
            and max(e["recall@20"] for e in evals) >= a.target_recall,
            "peak_rss_mib": peak_rss_gib() * 1024, "evals": evals}


def main(argv=None) -> None:
    a = parse_args(argv)
    torch.manual_seed(0)
    if a.threads:
        torch.set_num_threads(a.threads)
    print(" ".join(sys.argv), f"({torch.get_num_threads()} threads)")
    dm = RecDataModule(data=a.data, batch_size=a.batch_size, num_negatives=a.negatives,
                       eval_batch_size=4096)
    dm.prepare_data()
    dm.setup("fit")
    if a.model == "lightgcn" and not a.no_propagation_ratio:
        propagation_ratio(dm, a.dim, a.layers)
    cfg = (LightGCNConfig(embedding_dim=a.dim, num_layers=a.layers, reg_weight=a.reg,
                          init=a.init)
           if a.model == "lightgcn" else MFConfig(embedding_dim=a.dim, reg_weight=a.reg,
                                                   init=a.init))
    module = RecModule(cfg, lr=a.lr, ks=(20,), auc=False)
    timer = EpochTimer(a.target_recall, a.stop_at_epoch_end)
    start = time.perf_counter()
    module.model = module._build(dm.store)      # here, not in fit: its init is training time
    timer.train_s = time.perf_counter() - start
    print(f"model built in {timer.train_s:.2f} s (init {a.init}; counted as training time)")
    every = ({"val_check_interval": a.val_check_interval, "check_val_every_n_epoch": 1}
             if a.val_check_interval else {"check_val_every_n_epoch": a.eval_every})
    trainer = pl.Trainer(max_epochs=a.epochs, **every, precision=a.precision,
                         accelerator=a.accelerator, devices=1, logger=False,
                         enable_checkpointing=False, callbacks=[timer], num_sanity_val_steps=0,
                         enable_progress_bar=False,
                         max_time={"minutes": a.max_minutes} if a.max_minutes else None)
    trainer.fit(module, datamodule=dm)
    report = summary(a, timer, trainer, dm)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)
    if not timer.rows:
        print("no evaluation ran (raise --max-minutes or --epochs)")
        return
    best = max(timer.rows, key=lambda r: r[2])
    print(f"\n{type(module.model).__name__} on {os.path.basename(os.path.normpath(a.data))} "
          f"(test split, {dm.num_items} items, {report['test_users']} users): best Recall@20 "
          f"{best[2]:.4f} NDCG@20 {best[3]:.4f} at epoch {round(best[0], 2):g} ({best[1]:.0f} s of training); "
          f"{report['train_s_per_epoch']:.1f} s/epoch over {round(report['epochs_run'], 2):g} epochs; "
          f"eval {report['eval_s_mean']:.2f} s; peak RSS {peak_rss_gib():.2f} GiB; "
          f"device {trainer.strategy.root_device}")
    for name, (r, n) in REFERENCE.items():
        print(f"  vs {name} {r:.4f}/{n:.4f}: recall ratio {best[2] / r:.3f}")


if __name__ == "__main__":
    main()
