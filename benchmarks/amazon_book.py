"""BPR-MF and LightGCN on the amazon-book KGAT split: quality, time per epoch, peak memory.

Trains through the product path (RecDataModule + RecModule + a Lightning Trainer), evaluates
full ranking over all 24,915 items with training items masked on the fixed test split, and prints
Recall@20 / NDCG@20 (binary-relevance NDCG, log2 discount) per evaluation. It also times one
propagation forward+backward of our CSR LightGCN against PyG's ``LGConv`` (edge_index message
passing) on the same graph in the same process, and prints the ratio.

    python benchmarks/amazon_book.py --model lightgcn --epochs 20 --eval-every 5
    python benchmarks/amazon_book.py --model mf --epochs 40 --eval-every 10 --batch-size 8192
"""
from __future__ import annotations

import argparse
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
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class EpochTimer(pl.Callback):
    """Times training and validation separately; reads metrics after the epoch's validation."""

    def __init__(self):
        self.train_s, self.eval_s, self.rows = [], [], []

    def on_train_epoch_start(self, trainer, module):
        self._t, self._v = time.perf_counter(), None

    def on_validation_epoch_start(self, trainer, module):
        self._v = time.perf_counter()
        self.train_s.append(self._v - self._t)

    def on_validation_epoch_end(self, trainer, module):
        self.eval_s.append(time.perf_counter() - self._v)

    def on_train_epoch_end(self, trainer, module):
        if self._v is None:  # no validation this epoch
            self.train_s.append(time.perf_counter() - self._t)
            return
        m = trainer.callback_metrics
        self.rows.append((trainer.current_epoch + 1, sum(self.train_s),
                          float(m["val/recall@20"]), float(m["val/ndcg@20"])))
        print(f"epoch {trainer.current_epoch + 1:4d}  train {sum(self.train_s):8.1f}s  "
              f"recall@20 {self.rows[-1][2]:.4f}  ndcg@20 {self.rows[-1][3]:.4f}  "
              f"eval {self.eval_s[-1]:.2f}s  peak RSS {peak_rss_gib():.2f} GiB", flush=True)


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


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["lightgcn", "mf"], default="lightgcn")
    p.add_argument("--data", default=DATA, help="the amazon-book-kgat folder")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=8192)
    p.add_argument("--negatives", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--reg", type=float, default=1e-4)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--max-minutes", type=float, default=None, help="stop training after this long")
    p.add_argument("--no-propagation-ratio", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    a = p.parse_args(argv)
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
    cfg = (LightGCNConfig(embedding_dim=a.dim, num_layers=a.layers, reg_weight=a.reg)
           if a.model == "lightgcn" else MFConfig(embedding_dim=a.dim, reg_weight=a.reg))
    module = RecModule(cfg, lr=a.lr, ks=(20,), auc=False)
    timer = EpochTimer()
    trainer = pl.Trainer(max_epochs=a.epochs, check_val_every_n_epoch=a.eval_every,
                         accelerator=a.accelerator, devices=1, logger=False,
                         enable_checkpointing=False, callbacks=[timer], num_sanity_val_steps=0,
                         enable_progress_bar=False,
                         max_time={"minutes": a.max_minutes} if a.max_minutes else None)
    trainer.fit(module, datamodule=dm)
    best = max(timer.rows, key=lambda r: r[2])
    epochs = len(timer.train_s)
    print(f"\n{type(module.model).__name__} on amazon-book (test split, {dm.num_items} items, "
          f"{int(trainer.callback_metrics['val/num_users'])} users): best Recall@20 {best[2]:.4f} "
          f"NDCG@20 {best[3]:.4f} at epoch {best[0]} ({best[1]:.0f} s of training); "
          f"{sum(timer.train_s) / epochs:.1f} s/epoch over {epochs} epochs; "
          f"eval {sum(timer.eval_s) / len(timer.eval_s):.2f} s; peak RSS {peak_rss_gib():.2f} GiB; "
          f"device {trainer.strategy.root_device}")
    for name, (r, n) in REFERENCE.items():
        print(f"  vs {name} {r:.4f}/{n:.4f}: recall ratio {best[2] / r:.3f}")


if __name__ == "__main__":
    main()
