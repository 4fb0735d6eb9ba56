"""A²BM²GL, its ablations and LightGCN on the synthetic world and on ml-100k.

Every model trains through the product path (RecDataModule + RecModule + a Lightning Trainer)
with the same data, batches, optimiser and epochs, and is tested by full ranking over all items
(train and validation items masked): Recall@10/20/50 and NDCG@10/20/50.

- ``synthetic:default`` has visual/acoustic/textual item features that are SYNTHETIC: a topic
  centroid plus noise (signal shares 0.8/0.1/0.4), planted by reelgraph.data.synthetic.
- ml-100k has no item features in our store, so A²BM²GL runs there without its semantic module
  (collaborative + anti-bottleneck + adaptive loss): model-str is then the full model.

Variant names: the paper's ablations (model-an, model-al, model-str: no semantic module), its
Table 4 losses (loss-*) and ours (no-lstr: L_str dropped; rwr-random-walk; delta-2); see
``VARIANTS`` and the module doc of ``reelgraph/models/a2bm2gl.py``.

    nice -n 10 python benchmarks/multimodal_models.py --epochs 10
    python benchmarks/multimodal_models.py --data ml-100k --models a2bm2gl,lightgcn --epochs 30
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import replace

import torch

from reelgraph.lightning_modules._pl import pl
from reelgraph.lightning_modules.datamodule import RecDataModule
from reelgraph.lightning_modules.module import RecModule
from reelgraph.models import LightGCNConfig
from reelgraph.models.a2bm2gl import A2BM2GLConfig

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # _fit, also when loaded by path
from _fit import fit_and_test  # noqa: E402

ML100K = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data",
                      "ml-100k")
KS = (10, 20, 50)
VARIANTS = {  # name -> flags of A2BM2GLConfig (None: LightGCN)
    "a2bm2gl": {},
    # the paper's ablations (§4.5.1, Table 3)
    "model-an": {"anti_bottleneck": False},   # no anti-bottleneck module
    "model-al": {"rec_loss": "bpr"},          # BPR instead of the adaptive loss
    "model-str": {"semantic": False},         # no semantic module (and so no L_sem)
    # the paper's loss comparison (§4.5.3, Table 4; "bpr" is model-al)
    "loss-wr": {"rec_loss": "wr"},            # eq. 7, sampled estimate
    "loss-wr-all": {"rec_loss": "wr", "rec_negatives": "all"},  # eq. 7 exact (non-sampling)
    "loss-infobpr": {"rec_loss": "infobpr"},  # softmax over the positive and its negatives
    "loss-adaptive-all": {"rec_negatives": "all"},  # eq. 8 exact (non-sampling)
    # ours, not the paper's
    "no-lstr": {"str_loss": False},           # the L_str term dropped, modules kept
    "rwr-random-walk": {"rwr_transition": "random_walk"},  # eq. 5 with D^-1 A, not 0/1
    "delta-2": {"margin_weight": 2.0},        # the earlier default delta (module doc)
    "a2bm2gl-sampled": {"fanouts": [10, 5, 5]},  # sampled mini-batches (collaborative part)
    "lightgcn": None,
}


def config(name: str, dim: int):
    flags = VARIANTS[name]
    return LightGCNConfig(embedding_dim=dim) if flags is None else replace(
        A2BM2GLConfig(embedding_dim=dim), **flags)


def run(data: str, name: str, args) -> dict[str, float]:
    pl.seed_everything(args.seed)
    dm = RecDataModule(data=data, cache_dir=args.cache_dir, batch_size=args.batch_size,
                       num_negatives=args.num_negatives, seed=args.seed)
    module = RecModule(config(name, args.dim), lr=args.lr, ks=KS, auc=False)
    out, fit_s = fit_and_test(module, dm, epochs=args.epochs, root=args.cache_dir)
    out["fit_s"] = fit_s
    print(f"  {name}: fit {fit_s:.0f}s, recall@20 {out['test/recall@20']:.4f}", flush=True)
    return out


def table(rows: dict[str, dict[str, float]]) -> str:
    keys = [f"{m}@{k}" for m in ("recall", "ndcg") for k in KS]
    lines = [f"{'model':<18}" + "".join(f"{k:>11}" for k in keys) + f"{'fit s':>8}"]
    for name, r in rows.items():
        lines.append(f"{name:<18}" + "".join(f"{r[f'test/{k}']:>11.4f}" for k in keys)
                     + f"{r['fit_s']:>8.0f}")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--data", default="synthetic:default,ml-100k",
                   help="comma-separated: synthetic[:preset], ml-100k or a dataset folder")
    p.add_argument("--models", default="a2bm2gl,model-an,model-al,model-str,lightgcn",
                   help=f"comma-separated subset of {list(VARIANTS)}")
    p.add_argument("--epochs", type=int, default=10, help="training epochs per model")
    p.add_argument("--dim", type=int, default=64, help="embedding_dim of every model")
    p.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate")
    p.add_argument("--batch-size", type=int, default=4096, help="positives per batch")
    p.add_argument("--num-negatives", type=int, default=4, help="uniform negatives per positive")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default=os.path.join("artifacts", "cache"),
                   help="generated worlds and built stores")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    for name in ("pytorch_lightning", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for data in args.data.split(","):
        path = ML100K if data == "ml-100k" else data
        rows = {name: run(path, name, args) for name in args.models.split(",")}
        note = ("item features are SYNTHETIC (planted topic signal)" if data.startswith("synthetic")
                else "no item features: A2BM2GL without its semantic module")
        print(f"\n{data}: {args.epochs} epochs, d={args.dim}, lr={args.lr}, batch "
              f"{args.batch_size} x {args.num_negatives} negatives; full ranking, train/valid "
              f"items masked; {note}")
        print(table(rows), flush=True)


if __name__ == "__main__":
    main()
