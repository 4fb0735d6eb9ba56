"""NGCF, SimGCL, VA-GNN (ablations A–E), GraphSAGE and PinSage against LightGCN, same loop.

``lightgcn-sampled`` / ``vagnn-sampled`` train on sampled neighbourhoods (``--fanouts``; VA-GNN
also averages 10 sampled videos per vlogger and users per video) and rank on the full graph;
``simgcl-ego`` is SimGCL averaging layers ``0..L``; ``sage-feat`` and ``pinsage-feat`` add item
features to the item ids (datasets with features).

Every model trains through the product path (RecDataModule + RecModule + a Lightning Trainer)
for the same number of epochs with the same optimiser, batch size and negatives; then the test
split is ranked against all items with train+valid items masked. Prints Recall@10/20/50 and
NDCG@10/20/50 (binary relevance, log2 discount) per model and dataset, and the ratio of each
model's Recall@20 to LightGCN's, and the validation Recall@20 (what settings are chosen on).

Datasets: any ``--data`` string RecDataModule takes; ml-100k's ``item_creator`` (movie directors)
stands in for vloggers and, having no follows, VA-GNN derives its user–vlogger edges from
training interactions; ``synthetic:default`` has planted vloggers and follows.

    python benchmarks/graph_models.py --epochs 30
    python benchmarks/graph_models.py --data synthetic:default --models lightgcn vagnn vagnn-E
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace

import torch

from reelgraph.lightning_modules._pl import pl
from reelgraph.lightning_modules.datamodule import RecDataModule
from reelgraph.lightning_modules.module import RecModule
from reelgraph.models import LightGCNConfig, MFConfig, ModelConfig
from reelgraph.models.ngcf import NGCFConfig
from reelgraph.models.sage import SAGEConfig
from reelgraph.models.simgcl import SimGCLConfig
from reelgraph.models.vagnn import VAGNNConfig

ML100K = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "ml-100k")
ABLATIONS = {"A": {"contrastive": False}, "B": {"vlogger_loss": False}, "C": {"video_view": False},
             "D": {"vlogger_view": False}, "E": {"vlogger_score": False}}
MODELS = (["mf", "lightgcn", "lightgcn-sampled", "ngcf", "simgcl", "simgcl-ego", "vagnn"]
          + [f"vagnn-{k}" for k in ABLATIONS] + ["vagnn-sampled", "sage", "pinsage", "sage-feat",
                                                  "pinsage-feat"])
KS = (10, 20, 50)


def config(name: str, a: argparse.Namespace) -> ModelConfig:
    """The config of model ``name`` at the run's shared size and regularisation."""
    common = {"embedding_dim": a.dim, "reg_weight": a.reg}
    if name == "mf":
        return MFConfig(**common)
    layers = {**common, "num_layers": a.layers}
    if name.startswith("lightgcn"):
        return LightGCNConfig(**layers, fanouts=a.fanouts if name.endswith("sampled") else None)
    if name == "ngcf":
        return NGCFConfig(**layers)
    if name.startswith(("sage", "pinsage")):  # sampled mini-batch mode; -feat: ids + features
        return SAGEConfig(**common, aggregator="mean" if name.startswith("sage") else "importance",
                          input="both" if name.endswith("-feat") else "id")
    if name.startswith("simgcl"):
        return SimGCLConfig(**layers, cl_weight=a.simgcl_lambda, tau=a.simgcl_tau,
                            ego_layer=name == "simgcl-ego")
    base = VAGNNConfig(**layers, vlogger_weight=a.vagnn_lambda1, cl_weight=a.vagnn_lambda2,
                       tau=a.vagnn_tau)
    if name == "vagnn-sampled":
        return replace(base, fanouts=a.fanouts, pool_fanout=10)
    return replace(base, **ABLATIONS[name.split("-")[1]]) if "-" in name else base


def datamodule(data: str, a: argparse.Namespace) -> RecDataModule:
    """A data module for one model: it keeps the plan (and its static state) of the first model
    it trains, so each model gets its own."""
    dm = RecDataModule(data=data, batch_size=a.batch_size, num_negatives=a.negatives,
                       cache_dir=a.cache_dir, seed=a.seed)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def run(dm: RecDataModule, name: str, a: argparse.Namespace) -> dict[str, float]:
    pl.seed_everything(a.seed, verbose=False)
    module = RecModule(config(name, a), lr=a.lr, ks=KS, auc=False)
    trainer = pl.Trainer(max_epochs=a.epochs, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0)
    t = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    train_s = time.perf_counter() - t
    trainer.limit_val_batches = 1.0  # validation recall: what hyper-parameters are picked on
    val = trainer.validate(module, datamodule=dm, verbose=False)[0]["val/recall@20"]
    out = trainer.test(module, datamodule=dm, verbose=False)[0]
    return {**{k.split("/")[1]: v for k, v in out.items()}, "val": val, "train_s": train_s}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+", default=[ML100K, "synthetic:default"])
    p.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--negatives", type=int, default=1)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--reg", type=float, default=1e-4, help="L2 weight of every model")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--fanouts", type=int, nargs="+", default=[10, 5, 5],
                   help="*-sampled: neighbours per hop, seeds' hop first (one per layer)")
    p.add_argument("--simgcl-lambda", type=float, default=SimGCLConfig.cl_weight)
    p.add_argument("--simgcl-tau", type=float, default=SimGCLConfig.tau)
    p.add_argument("--vagnn-lambda1", type=float, default=VAGNNConfig.vlogger_weight)
    p.add_argument("--vagnn-lambda2", type=float, default=VAGNNConfig.cl_weight)
    p.add_argument("--vagnn-tau", type=float, default=VAGNNConfig.tau)
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (0: torch's default; on a busy machine 1 is fastest)")
    p.add_argument("--cache-dir", default=os.path.join("artifacts", "cache"))
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    print(" ".join(sys.argv), flush=True)
    cols = [f"{m}@{k}" for m in ("recall", "ndcg") for k in KS]
    for data in a.data:
        dm = datamodule(data, a)
        print(f"\n{os.path.basename(os.path.normpath(data))}: {dm.store}", flush=True)
        print(f"{'model':16s} " + " ".join(f"{c:>9s}" for c in cols) +
              "   R@20/LGCN  val_R@20  train_s", flush=True)
        results = {}
        for name in a.models:
            r = results[name] = run(datamodule(data, a), name, a)
            ref = results.get("lightgcn", {}).get("recall@20")
            ratio = f"{r['recall@20'] / ref:9.3f}" if ref else f"{'-':>9s}"
            print(f"{name:16s} " + " ".join(f"{r[c]:9.4f}" for c in cols) +
                  f"   {ratio}  {r['val']:8.4f}  {r['train_s']:7.1f}", flush=True)


if __name__ == "__main__":
    main()
