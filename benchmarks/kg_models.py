"""The collaborative-knowledge-graph model (CKG, issue 17), its ablations, NGCF and LightGCN on
one real dataset with its KG, next to the paper's Table 2.

Every model trains through the product path (RecDataModule + RecModule + a Lightning Trainer)
on the same 8:1:1 per-user random split (seed 0, as ``configs/table_ml1m.yaml``'s
``data.split``), for the same epochs, batch size, negatives, learning rate (Adam), embedding
size, layers and ``reg_weight``; no early stopping (the last epoch is tested). Then the test
split is ranked against all items, train and validation items masked: P@10, R@10, NDCG@10,
R@20, NDCG@20 (binary relevance, log2 discount, ideal DCG over the user's test items), and the
training seconds (``trainer.fit`` wall time, validation off).

Models (``--models``):

- ``ckg``: the full model (user- and item-side CKGs, attention, TransR; ``CKGConfig``);
- ``ckg-no-kg``: ``use_kg=False`` (the CKGs are the interactions alone);
- ``kgat``: ``user_side=False``, the user-side CKG ``G_u`` alone (users, items, the item KG):
  the KGAT-like model;
- ``ckg-no-att``: ``attention=False`` (``pi = 1 / |N_h|``);
- ``ckg-sampled``: the full model on sampled KG neighbourhoods (``--fanouts``, default 10 per
  layer), not in the default list (the paper's comparison is whole-graph; add it to see what
  sampling costs in quality: on ml-1m a step is ~20x cheaper, see below);
- ``ngcf``, ``lightgcn``: the CF baselines, the same layers.

Data (``--data``): ``../shared/data/ml-100k`` (default; Freebase KG through the corrected link,
user attributes as the user KG), ``../shared/data/ml-1m`` (same KG and user attributes),
``../shared/data/lastfm-kg`` (KGCN's KG; no user attributes: the item-side CKG is the
interactions alone; play counts give one interaction relation). Ratings are implicit feedback
(every rating a positive); on MovieLens the rating level is the interaction relation.

The paper (its Table 2, MovieLens, 8:1:1) reports P@10 / R@10: the model 0.1307 / 0.4721, KGAT
0.1264 / 0.4678, NGCF 0.1238 / 0.4655 (no LightGCN). Its MovieLens version, KG and protocol
details are not given, so compare the RATIOS printed here (ours on our data vs the paper's),
not the raw figures.

Cost measured on the 2-core CPU box while another job held it (1 thread, d = 64, 3 layers,
batch 4,096 x 1, one step forward + backward): ml-100k whole graph 3.8-4.2 s (CKGs of 343k and
168k triples, 20 steps an epoch), sampled [10, 10, 10] 0.6 s; ml-1m whole graph 25-27 s (1.78M
and 1.65M triples, 196 steps an epoch: about 80 min an epoch, so ml-1m whole-graph wants a
GPU), sampled 1.0-1.4 s; ml-1m's whole-graph step peaks at 5.3 GiB. With 2 threads on the busy
box every figure was 2-3x worse (hence ``--threads 1``).

With ``--results FILE.jsonl`` each model's row is appended to FILE as soon as it is tested,
with the run's protocol (dataset, epochs, size, optimiser, batch, seed); a later run with the
same protocol takes the rows already there and trains only the missing models, so a long run
can be split over several sessions (or resumed after a kill) and still print one table.

    python benchmarks/kg_models.py --epochs 1 --dim 16          # smoke
    python benchmarks/kg_models.py --models ckg,kgat --results benchmarks/kg/ml-100k.jsonl
    python benchmarks/kg_models.py --data ../shared/data/ml-1m --epochs 50 --accelerator gpu
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import replace

import torch

from reelgraph.data.split import SplitConfig
from reelgraph.lightning_modules._pl import pl
from reelgraph.lightning_modules.datamodule import RecDataModule
from reelgraph.lightning_modules.module import RecModule
from reelgraph.models import CKGConfig, LightGCNConfig, ModelConfig
from reelgraph.models.ngcf import NGCFConfig

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # _fit, also when loaded by path
from _fit import fit_and_test  # noqa: E402
from _jsonl import append_row, load_rows  # noqa: E402

ML100K = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data",
                      "ml-100k")
KS = (10, 20)
METRICS = ("precision@10", "recall@10", "ndcg@10", "recall@20", "ndcg@20")
CKG_VARIANTS = {"ckg": {}, "ckg-no-kg": {"use_kg": False}, "kgat": {"user_side": False},
                "ckg-no-att": {"attention": False}, "ckg-sampled": None}  # None: --fanouts
MODELS = [*CKG_VARIANTS, "ngcf", "lightgcn"]
DEFAULT_MODELS = "ckg,ckg-no-kg,kgat,ckg-no-att,ngcf,lightgcn"
PAPER = {"ckg": (0.1307, 0.4721), "kgat": (0.1264, 0.4678), "ngcf": (0.1238, 0.4655)}  # P@10, R@10
RATIOS = ("kgat", "ngcf", "lightgcn")  # ckg / each
# the arguments a stored row must share with this run to stand in for training (not --threads)
PROTOCOL = ("data", "epochs", "dim", "layers", "reg", "lr", "batch_size", "num_negatives",
            "kg_batch_size", "fanouts", "seed")


def config(name: str, a: argparse.Namespace) -> ModelConfig:
    """Model ``name`` at the run's shared size, depth and regularisation."""
    common = dict(embedding_dim=a.dim, num_layers=a.layers, reg_weight=a.reg)
    if name in CKG_VARIANTS:
        flags = CKG_VARIANTS[name]
        flags = {"fanouts": a.fanouts} if flags is None else flags
        return replace(CKGConfig(**common, kg_batch_size=a.kg_batch_size), **flags)
    if name == "ngcf":
        return NGCFConfig(**common)
    if name == "lightgcn":
        return LightGCNConfig(**common)
    raise ValueError(f"unknown model {name!r}; choose from {MODELS}")


def run(name: str, a: argparse.Namespace) -> dict[str, float]:
    """Trains ``name`` for ``a.epochs`` and tests it: ``{metric: value, "train_s": seconds}``."""
    pl.seed_everything(a.seed, verbose=False)
    dm = RecDataModule(data=a.data, cache_dir=a.cache_dir, batch_size=a.batch_size,
                       num_negatives=a.num_negatives, seed=a.seed,
                       split=SplitConfig(method="ratio", ratios=(0.8, 0.1, 0.1), seed=0))
    module = RecModule(config(name, a), lr=a.lr, ks=KS, auc=False)
    out, train_s = fit_and_test(module, dm, epochs=a.epochs, root=a.cache_dir,
                                accelerator=a.accelerator)
    row = {m: float(out[f"test/{m}"]) for m in METRICS} | {"train_s": train_s}
    print(f"  {name}: train {train_s:.0f}s, P@10 {row['precision@10']:.4f}, "
          f"R@10 {row['recall@10']:.4f}", flush=True)
    return row


def protocol(a: argparse.Namespace) -> dict:
    """The run's :data:`PROTOCOL` values, the dataset as its folder name."""
    return {k: os.path.basename(os.path.normpath(a.data)) if k == "data" else getattr(a, k)
            for k in PROTOCOL}


def stored_rows(path: str, proto: dict) -> dict[str, dict[str, float]]:
    """``{model: row}`` of ``path``'s lines run under ``proto`` (the last line of a model wins;
    other protocols' lines are ignored, a torn line too)."""
    return {model: entry["row"] for model, entry in
            load_rows(path, lambda entry: entry.get("protocol") == proto).items()}


def results_table(rows: dict[str, dict[str, float]]) -> str:
    """Markdown: one row per model, the metrics and training seconds."""
    head = ["model", "P@10", "R@10", "NDCG@10", "R@20", "NDCG@20", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{r[m]:.4f}" for m in METRICS)
                     + f" | {r['train_s']:.0f} |")
    return "\n".join(lines)


def ratio_table(rows: dict[str, dict[str, float]]) -> str:
    """Markdown: CKG / each baseline on P@10 and R@10, ours next to the paper's (``–``: a model
    not run here, or not in the paper)."""
    lines = ["| ratio | P@10 ours | P@10 paper | R@10 ours | R@10 paper |", "|---|---|---|---|---|"]
    for other in RATIOS:
        cells = []
        for j, m in enumerate(("precision@10", "recall@10")):
            ours = (f"{rows['ckg'][m] / rows[other][m]:.3f}"
                    if "ckg" in rows and other in rows and rows[other][m] > 0 else "–")
            paper = f"{PAPER['ckg'][j] / PAPER[other][j]:.3f}" if other in PAPER else "–"
            cells += [ours, paper]
        name = "KGAT-like" if other == "kgat" else {"ngcf": "NGCF", "lightgcn": "LightGCN"}[other]
        lines.append(f"| CKG / {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--data", default=ML100K, help="a dataset folder (ml-100k, ml-1m, lastfm-kg)")
    p.add_argument("--models", default=DEFAULT_MODELS, help=f"comma-separated subset of {MODELS}")
    p.add_argument("--epochs", type=int, default=50, help="training epochs of every model")
    p.add_argument("--dim", type=int, default=64, help="embedding_dim of every model")
    p.add_argument("--layers", type=int, default=3, help="num_layers of every model")
    p.add_argument("--reg", type=float, default=1e-4, help="reg_weight of every model")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--batch-size", type=int, default=4096, help="positives per batch")
    p.add_argument("--num-negatives", type=int, default=1, help="uniform negatives per positive")
    p.add_argument("--kg-batch-size", type=int, default=4096,
                   help="TransR triples per CKG per step")
    p.add_argument("--fanouts", type=lambda s: [int(x) for x in s.split(",")], default=None,
                   help="ckg-sampled: fan-outs per layer, e.g. 10,10,10 (default: 10 per layer)")
    p.add_argument("--accelerator", default="auto", help="Lightning accelerator: auto, cpu, gpu")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (0: torch's default; more than the free cores slows it)")
    p.add_argument("--seed", type=int, default=0, help="weights and batches (the split: 0)")
    p.add_argument("--cache-dir", default=os.path.join("artifacts", "cache"),
                   help="built stores")
    p.add_argument("--json", default=None, help="also write {model: row} to this file")
    p.add_argument("--results", default=None, metavar="FILE.jsonl",
                   help="append each model's row to FILE as it finishes; models FILE already "
                        "holds under the same protocol are taken from it, not trained")
    a = p.parse_args(argv)
    a.fanouts = a.fanouts or [10] * a.layers
    return a


def main(argv=None) -> None:
    a = parse(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    for name in ("pytorch_lightning", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    names = a.models.split(",")
    for name in names:
        config(name, a)  # fail on a bad name or flag before any training
    proto = protocol(a)
    done = stored_rows(a.results, proto) if a.results else {}
    rows = {}
    for name in names:
        if name in done:
            rows[name] = done[name]
            print(f"  {name}: from {a.results}", flush=True)
            continue
        rows[name] = run(name, a)
        if a.results:
            append_row(a.results, dict(model=name, protocol=proto, row=rows[name],
                                       threads=a.threads))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(args=vars(a), rows=rows), f, indent=1)
    print(f"\n{os.path.basename(os.path.normpath(a.data))}: 8:1:1 per-user random split (seed 0); "
          f"{a.epochs} epochs, d={a.dim}, {a.layers} layers, lr={a.lr}, batch {a.batch_size} x "
          f"{a.num_negatives} negatives, reg {a.reg}; full ranking, train/valid items masked\n")
    print(results_table(rows) + "\n\n" + ratio_table(rows), flush=True)


if __name__ == "__main__":
    main()
