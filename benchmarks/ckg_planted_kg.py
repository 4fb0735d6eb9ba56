"""CKG and its ablations on the planted cold-item KG world (:mod:`reelgraph.data.planted`), or
on its mirror where only the user KG places the cold users, per seed: what the KG, the user
side and the attention each add (issue 17).

The fit is the quality tests' (``tests/conftest.py``'s ``fit_recall``: RecDataModule + RecModule,
batch 512, 4 negatives, Adam lr 1e-2, one thread, no validation, the last epoch tested on the
world's fixed test split, Recall@20 over all items), the model the one of
``tests/models/test_ckg.py::test_short_fit_kg_beats_no_kg_and_bpr_mf`` (d = 32, 2 layers,
``kg_batch_size`` 512). Prints one JSON line per seed: each variant's Recall@20, seconds, and
``ckg/<variant>``.

Variants (``--variants``): ``ckg`` (always fitted: the numerator), ``no-kg`` (``use_kg=False``),
``no-user-side`` (``user_side=False``: G_u alone, KGAT), ``no-attention`` (``attention=False``),
``mf`` (BPR-MF, d = 32).

Worlds (``--world``): ``cold-items`` (``PlantedKGConfig()``, the default), ``cold-users``
(``COLD_USER_WORLD``, the world of ``tests/models/test_ckg.py::
test_short_fit_user_kg_beats_no_user_side_and_bpr_mf``; about 70 s a seed for all variants).

    OMP_NUM_THREADS=1 python benchmarks/ckg_planted_kg.py --seeds 0 1 2 3 4 5
    OMP_NUM_THREADS=1 python benchmarks/ckg_planted_kg.py --world cold-users
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from dataclasses import replace

import torch

from reelgraph.data.planted import COLD_USER_WORLD, PlantedKGConfig, write_planted_kg_world
from reelgraph.lightning_modules._pl import pl
from reelgraph.lightning_modules.datamodule import RecDataModule
from reelgraph.lightning_modules.module import RecModule
from reelgraph.models import CKGConfig, MFConfig, ModelConfig

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # _fit, also when loaded by path
from _fit import fit_and_test  # noqa: E402

CKG = CKGConfig(embedding_dim=32, num_layers=2, kg_batch_size=512)
VARIANTS: dict[str, ModelConfig] = {
    "ckg": CKG, "no-kg": replace(CKG, use_kg=False), "no-user-side": replace(CKG, user_side=False),
    "no-attention": replace(CKG, attention=False), "mf": MFConfig(embedding_dim=32)}
WORLDS = {"cold-items": PlantedKGConfig(), "cold-users": COLD_USER_WORLD}


def fit_recall(world: str, config: ModelConfig, seed: int, epochs: int) -> float:
    """Test Recall@20 after ``epochs``: the loop of ``tests/conftest.py``'s ``fit_recall``."""
    with tempfile.TemporaryDirectory() as tmp:
        pl.seed_everything(seed, verbose=False)
        dm = RecDataModule(data=world, cache_dir=f"{tmp}/cache", batch_size=512, num_negatives=4,
                           seed=seed)
        module = RecModule(config, lr=1e-2, ks=(20,), auc=False)
        return fit_and_test(module, dm, epochs=epochs, root=tmp)[0]["test/recall@20"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    p.add_argument("--variants", nargs="+", choices=sorted(VARIANTS),
                   default=["no-kg", "no-user-side", "no-attention", "mf"])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--world", choices=sorted(WORLDS), default="cold-items")
    args = p.parse_args()
    torch.set_num_threads(1)
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as world:
        print(json.dumps({"world": write_planted_kg_world(world, WORLDS[args.world])}), flush=True)
        for seed in args.seeds:
            row: dict = {"seed": seed}
            recall = {}
            for name in ["ckg", *(v for v in args.variants if v != "ckg")]:
                start = time.perf_counter()
                recall[name] = fit_recall(world, VARIANTS[name], seed, args.epochs)
                row[name] = round(recall[name], 4)
                row[f"{name}_s"] = round(time.perf_counter() - start, 1)
                if name != "ckg":
                    row[f"ckg/{name}"] = round(recall["ckg"] / recall[name], 3)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
