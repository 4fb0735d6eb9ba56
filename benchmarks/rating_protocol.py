"""The importance-sampling attention model (ISGNN, issue 17) beside BPR-MF and a GraphRec-style
ablation (neighbours drawn uniformly over each node's exact co-interaction neighbourhood, mean
pooling), on the paper's protocol and on ours.

Every model trains through the product path (RecDataModule + RecModule + a Lightning Trainer),
same data, split, batches, optimiser and epochs, then is scored twice on the test split:

- full ranking over all items (train and validation items masked): Recall@20, NDCG@20;
- the sampled-candidate protocol of :mod:`reelgraph.sampled_metrics` (NCF's leave-one-out: one
  held-out test item per user among ``--candidates`` uniform negatives it has in no split, the
  same seeded candidates for every model): AUC, NDCG@1, NDCG@2 — the paper's Table 1 metrics,
  logged by the same ``trainer.test`` (``RecModule(sampled_candidates=..., sampled_seed=...)``).

``--data planted`` (default) is a small synthetic world whose 32-d item features carry the
signal (``visual_signal`` 0.9); any other value is a ``reelgraph fit`` data source
(``../shared/data/ml-1m``: ratings 1-5 become ISGNN's opinion levels).

    python benchmarks/rating_protocol.py --seeds 0,1,2
    ../shared/tools/capped --mem 8G --time 60m -- python benchmarks/rating_protocol.py \\
        --data ../shared/data/ml-1m --epochs 10 --batch-size 4096 --seeds 0
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import warnings

import torch

from reelgraph.data.synthetic import WorldConfig, generate_world
from reelgraph.lightning_modules._pl import pl
from reelgraph.lightning_modules.datamodule import RecDataModule
from reelgraph.lightning_modules.module import RecModule
from reelgraph.models import ISGNNConfig, MFConfig

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # _fit, also when loaded by path
from _fit import fit_and_test  # noqa: E402

# the test suite's small world (tests/conftest.py SMALL_WORLD) with 32-d informative features
PLANTED = WorldConfig(num_users=400, num_items=600, num_creators=60, num_communities=8,
                      popularity_exponent=2.0, avg_interactions=20, max_interactions=80,
                      noise=0.05, kg=False, visual_dim=32, visual_signal=0.9, acoustic_dim=0,
                      textual_dim=0, chunk_users=400)
PAPER = {"BPR": (0.7345, 0.7536, 0.9213), "GraphRec": (0.7536, 0.7753, 0.9495),
         "the model": (0.7721, 0.7938, 0.9567)}   # its Table 1: AUC, NDCG@1, NDCG@2


def models(dim: int) -> dict:
    return {"BPR-MF": MFConfig(embedding_dim=dim),
            "GraphRec ablation": ISGNNConfig(embedding_dim=dim, neighbor_sampling="uniform",
                                             aggregator="mean"),
            "ISGNN": ISGNNConfig(embedding_dim=dim)}


def fit_and_score(config, data: str, cache: str, seed: int, a: argparse.Namespace) -> dict:
    pl.seed_everything(seed, verbose=False)
    dm = RecDataModule(data=data, cache_dir=cache, batch_size=a.batch_size,
                       num_negatives=a.negatives, seed=seed)
    module = RecModule(config, lr=a.lr, ks=(20,), auc=False, sampled_candidates=a.candidates,
                       sampled_ks=(1, 2), sampled_seed=a.candidate_seed)
    test, seconds = fit_and_test(module, dm, epochs=a.epochs, root=cache)
    return {"recall@20": test["test/recall@20"], "ndcg@20": test["test/ndcg@20"],
            "auc": test["test/sampled_auc"], "ndcg@1": test["test/sampled_ndcg@1"],
            "ndcg@2": test["test/sampled_ndcg@2"], "train_s": seconds}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default="planted", help="'planted' or a reelgraph data source")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--negatives", type=int, default=4, help="training negatives per positive")
    p.add_argument("--candidates", type=int, default=99, help="sampled negatives per test user")
    p.add_argument("--candidate-seed", type=int, default=123)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(a.threads)
    tmp = tempfile.mkdtemp(prefix="rating_protocol_")
    data = a.data
    if data == "planted":
        data = os.path.join(tmp, "world")
        generate_world(data, PLANTED)
    print(f"{'seed':>4} {'model':18s} {'R@20':>7} {'N@20':>7} {'AUC':>7} {'NDCG@1':>7} "
          f"{'NDCG@2':>7} {'train s':>8}", flush=True)
    for seed in (int(s) for s in a.seeds.split(",")):
        for name, config in models(a.dim).items():
            r = fit_and_score(config, data, os.path.join(tmp, "cache"), seed, a)
            print(f"{seed:>4} {name:18s} {r['recall@20']:7.4f} {r['ndcg@20']:7.4f} {r['auc']:7.4f} "
                  f"{r['ndcg@1']:7.4f} {r['ndcg@2']:7.4f} {r['train_s']:8.1f}", flush=True)
    print("paper (Table 1, no dataset named): " + "; ".join(
        f"{k} AUC {v[0]} NDCG@1 {v[1]} NDCG@2 {v[2]}" for k, v in PAPER.items()))


if __name__ == "__main__":
    main()
