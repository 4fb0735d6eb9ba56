"""Data-parallel throughput of the Ray Train entry, and DDP's all-reduce volume at scale.

1. Trains the same config (default: LightGCN on the synthetic default world) with 1 worker and
   with N workers on the same CPUs, through ``reelgraph.distributed.train`` exactly as a user
   would, and prints training positives per second (validation and checkpointing excluded) and
   the ratio.
2. From the parameter bytes of the model's dense embedding tables (what DDP all-reduces every
   step as gradients), prints the ring all-reduce volume per step and GPU, ``2 (n - 1) / n x
   bytes``, for 8 and 64 GPUs, for this world and for the larger synthetic presets; and the
   volume of the sparse path (touched rows only, all-gathered) for comparison.

    python benchmarks/distributed_throughput.py                       # 1 vs 2 CPU workers
    python benchmarks/distributed_throughput.py --workers 2 --cpus 2 --epochs 3
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile

import ray

from reelgraph.data.sources import open_store
from reelgraph.data.split import SplitConfig
from reelgraph.data.synthetic import PRESETS
from reelgraph.distributed.train import RayCLI, build_trainer
from reelgraph.lightning_modules.module import as_config


def run(cli_args: list[str], workers: int, cpus: int, storage: str) -> dict:
    """Positives/s of the training part of each epoch after the first (warm-up) one."""
    trainer = build_trainer(cli_args, num_workers=workers, cpus_per_worker=cpus / workers,
                            storage_path=storage, name=f"throughput-{workers}w", num_to_keep=1,
                            throughput=True)
    result = trainer.fit()
    if result.error is not None:
        raise result.error
    epochs = result.return_value["throughput"][1:] or result.return_value["throughput"]
    return {"positives_per_s": statistics.median(e["positives_per_s"] for e in epochs),
            "seconds_per_epoch": statistics.median(e["seconds"] for e in epochs),
            "positives": epochs[0]["positives"],
            "torch_threads": result.return_value["torch_threads"]}


def table_bytes(num_rows: int, dim: int, bytes_per_value: int = 4) -> int:
    return num_rows * dim * bytes_per_value


def ring_allreduce(nbytes: float, n: int) -> float:
    """Bytes each GPU sends (and receives) per all-reduce of ``nbytes`` over ``n`` GPUs."""
    return 2 * (n - 1) / n * nbytes


def sparse_allgather(rows_per_rank: int, dim: int, n: int) -> float:
    """Bytes each GPU receives per step when the touched rows (values + int64 ids) are gathered."""
    return (n - 1) * rows_per_rank * (4 * dim + 8)


def communication(dense_bytes: dict[str, int], dim: int, batch: int, negatives: int) -> None:
    mb = 1 / 2 ** 20
    rows = batch * (2 + negatives)  # a user, a positive and k negatives per positive
    print(f"\nDDP gradient all-reduce per step and GPU (ring: 2(n-1)/n x table bytes; fp32, d={dim})")
    print(f"{'world':>12} {'tables MB':>11} {'8 GPUs MB':>11} {'64 GPUs MB':>11}"
          f" {'sparse 8 MB':>12} {'sparse 64 MB':>13}")
    for name, nbytes in dense_bytes.items():
        print(f"{name:>12} {nbytes * mb:11.1f} {ring_allreduce(nbytes, 8) * mb:11.1f}"
              f" {ring_allreduce(nbytes, 64) * mb:11.1f} {sparse_allgather(rows, dim, 8) * mb:12.1f}"
              f" {sparse_allgather(rows, dim, 64) * mb:13.1f}")
    print(f"(sparse: {rows} touched rows per rank and step at batch {batch}, {negatives} negatives;"
          " an upper bound, repeated rows coalesce)")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/lightgcn_synthetic.yaml")
    p.add_argument("--workers", type=int, default=2, help="compared with 1 worker")
    p.add_argument("--cpus", type=int, default=2, help="CPUs shared by the workers of a run")
    p.add_argument("--epochs", type=int, default=3, help="the first is warm-up")
    p.add_argument("--cache-dir", default=os.path.abspath("artifacts/cache"))
    args, rest = p.parse_known_args(argv)
    with open(args.config) as f:
        cli_args = ["--config", f.read(), "--trainer.max_epochs", str(args.epochs),
                    "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
                    "--data.cache_dir", args.cache_dir, *rest]
    cli = RayCLI(cli_args, instantiate=False)
    data, model = cli.config.data, cli.config.model.model
    storage = tempfile.mkdtemp(prefix="reelgraph-throughput-")
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    try:
        one = run(cli_args, 1, args.cpus, storage)
        many = run(cli_args, args.workers, args.cpus, storage)
    finally:
        ray.shutdown()
    print(f"\n{data.data} ({model.class_path.rsplit('.', 1)[-1]}, batch {data.batch_size}, "
          f"{data.num_negatives} negatives), {args.cpus} CPUs in all, median of epochs 2..{args.epochs}")
    for label, r in (("1 worker", one), (f"{args.workers} workers", many)):
        print(f"{label:>10}: {r['positives_per_s']:10.0f} positives/s  ({r['seconds_per_epoch']:.2f} s"
              f" per epoch of {r['positives']} positives, {r['torch_threads']} torch threads/worker)")
    print(f"{'ratio':>10}: {many['positives_per_s'] / one['positives_per_s']:.2f}x")

    store = open_store(data.data, SplitConfig(**data.split.as_dict()), args.cache_dir)
    built = as_config(model.as_dict()).build(store)
    dense = sum(t.numel() * t.element_size() for t in built.parameters())  # = gradient bytes
    per_row = dense / (store.num_users + store.num_items)
    sizes = {"this": dense}
    for name in ("large", "huge"):
        sizes[name] = int(per_row * (PRESETS[name].num_users + PRESETS[name].num_items))
    communication(sizes, model.init_args.embedding_dim, data.batch_size, data.num_negatives)


if __name__ == "__main__":
    main()
