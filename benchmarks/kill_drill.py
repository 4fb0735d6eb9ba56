"""The SIGKILL drill, repeated: a Ray Train worker kills itself (a real crash, no exception) at
different moments, before, during and after an epoch's report; each run must resume from the
newest complete checkpoint and end with the uninterrupted run's metrics.

2 CPU workers on loopback, the small planted world of ``tests/distributed/test_ray_train.py``,
LightGCN d 32, 4 epochs. A kill at batch 0 of epoch ``e`` comes just after epoch ``e - 1``'s report,
one at the last batch just before epoch ``e``'s, one mid-epoch between the two. Prints one row per
drill (where it was killed, the restarted group's start epoch and why, whether the final metrics
equal the uninterrupted run's) and the count that resumed from the newest complete checkpoint.

    python benchmarks/kill_drill.py --drills 20
"""
from __future__ import annotations

import argparse
import itertools
import os
import tempfile
import time

import ray

from reelgraph.data.synthetic import WorldConfig, generate_world
from reelgraph.distributed.train import build_trainer

WORLD = WorldConfig(num_users=400, num_items=600, num_creators=60, num_communities=8,
                    popularity_exponent=2.0, avg_interactions=20, max_interactions=80, noise=0.05,
                    kg=False, visual_dim=0, acoustic_dim=0, textual_dim=0, chunk_users=400)
EPOCHS, BATCH = 4, 512


def config(root: str) -> list[str]:
    return ["--config", f"""
seed_everything: 0
trainer: {{max_epochs: {EPOCHS}, logger: false, enable_progress_bar: false,
           enable_model_summary: false, default_root_dir: {root}/runs}}
model:
  model: {{class_path: reelgraph.models.LightGCNConfig, init_args: {{embedding_dim: 32}}}}
  lr: 0.01
  ks: [20]
data: {{data: {root}/world, cache_dir: {root}/cache, batch_size: {BATCH}, num_negatives: 4}}
"""]


def fit(root: str, name: str, fault: dict | None):
    trainer = build_trainer(config(root), num_workers=2, storage_path=os.path.join(root, "ray"),
                            name=name, num_to_keep=None, max_failures=1, fault=fault)
    return trainer.fit()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--drills", type=int, default=20)
    a = p.parse_args()
    root = tempfile.mkdtemp(prefix="kill-drill-")
    generate_world(os.path.join(root, "world"), WORLD)
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 << 20,
             log_to_driver=False)
    base = fit(root, "uninterrupted", None)
    want = base.metrics["val/recall@20"]
    batches = -(-int(base.metrics["step"]) // EPOCHS)  # optimiser steps per epoch (per rank)
    moments = [("after report", 0), ("mid-epoch", batches // 2), ("before report", batches - 1)]
    plan = list(itertools.product(range(1, EPOCHS), moments, (0, 1)))  # epoch, moment, rank
    print(f"uninterrupted: val/recall@20 {want:.6f}, {batches} batches per epoch per rank")
    ok = 0
    for i in range(a.drills):
        epoch, (moment, batch), rank = plan[i % len(plan)]
        start = time.perf_counter()
        result = fit(root, f"drill-{i}", {"epoch": epoch, "rank": rank, "batch": batch,
                                          "kill": True})
        back = result.return_value or {}
        got = result.metrics.get("val/recall@20") if result.error is None else None
        same = got is not None and abs(got - want) <= 1e-6 * want
        good = same and back.get("start_epoch") == epoch  # the last reported epoch + 1
        ok += good
        print(f"drill {i:2d}: kill rank {rank} epoch {epoch} {moment:13s} (batch {batch:2d}) -> "
              f"start epoch {back.get('start_epoch')} ({back.get('resumed_from')}); "
              f"final metrics equal: {same}; {time.perf_counter() - start:.0f} s", flush=True)
    print(f"{ok} of {a.drills} resumed from the newest complete checkpoint with the "
          "uninterrupted run's final metrics")


if __name__ == "__main__":
    main()
