"""Cost growth with the graph: sampled training steps and a full-ranking evaluation of a user
sample, through the product path, on the synthetic worlds tiny / default / large / huge.

Each (world, model, num_workers) runs in its own process (so its peak RSS is its own): the
store is opened (built on first use and cached, like ``reelgraph fit``), the plan's derived
arrays and per-device state are built (timed as ``prepare``), then ``Trainer.fit`` runs
``--steps`` training steps (``max_steps``; small worlds run several epochs) with the :class:`LoaderWait` profiler and
``Trainer.validate`` ranks every item for ``--eval-users`` validation users. Printed per run:
seconds per step, the share of the loop spent waiting for batches (with ``--workers 0`` that is
the sampling itself), seconds per 1,000 positives, the evaluation's seconds, peak RSS (with the
store's mapped pages) and peak anonymous RSS of training and of evaluation; then each
world's step time over the first world's (same model and batch).

    python benchmarks/scale.py --worlds tiny default large huge --models lightgcn pinsage
    python benchmarks/scale.py --worlds large --models lightgcn --workers 0 2
    python benchmarks/scale.py --worlds large huge --models lightgcn pinsage --optimizer lazy_adam
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import threading
import time

import torch

MODELS = {
    "lightgcn": "LightGCNConfig(embedding_dim=64, num_layers=3, fanouts=[10, 5, 5])",
    "pinsage": "SAGEConfig(embedding_dim=64, aggregator='importance', fanouts=[10, 10])",
    # PinSage's steady state: the curriculum's cap (3 PPR hard negatives per positive) from the
    # first step; "pinsage" runs epoch 0 of the curriculum, which has none
    "pinsage-hard": "SAGEConfig(embedding_dim=64, aggregator='importance', fanouts=[10, 10], "
                    "hard_curriculum=False)",
}


def peak_gib() -> float:
    """Peak RSS of this process: anonymous memory plus the store's memory-mapped pages it touched
    (page cache, shared by every process that maps the store, dropped under memory pressure)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class PeakAnon:
    """Peak anonymous RSS (``RssAnon``: what cannot be reclaimed, the figure ``capped`` quotes),
    sampled every 50 ms by a daemon thread; ``peak`` in GiB so far, ``reset()`` starts a phase."""

    def __init__(self, every: float = 0.05):
        self.peak = 0.0
        threading.Thread(target=self._run, args=(every,), daemon=True).start()

    @staticmethod
    def now() -> float:
        with open("/proc/self/status") as f:
            kib = next(int(x.split()[1]) for x in f if x.startswith("RssAnon:"))
        return kib / 2**20

    def _run(self, every: float) -> None:
        while True:
            self.peak = max(self.peak, self.now())
            time.sleep(every)

    def reset(self) -> float:
        """The peak so far; the next phase's peak starts from the current RSS."""
        peak, self.peak = max(self.peak, self.now()), self.now()
        return peak


def subgraph_sizes():
    """A callback that keeps each training batch's sampled sub-graph size (nodes, edges)."""
    from reelgraph.lightning_modules._pl import pl

    class SubgraphSizes(pl.Callback):
        def __init__(self):
            self.nodes, self.edges = [], []

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            sub = getattr(batch, "sub", None)
            if sub is not None:
                self.nodes.append(sub.node.numel())
                self.edges.append(sub.row.numel())

    return SubgraphSizes()


def one(a: argparse.Namespace) -> dict:
    """One run in this process; returns its figures."""
    from reelgraph.lightning_modules._pl import pl
    from reelgraph.lightning_modules.callbacks import LoaderWait
    from reelgraph.lightning_modules.datamodule import RecDataModule
    from reelgraph.lightning_modules.module import RecModule
    from reelgraph.models import LightGCNConfig, SAGEConfig  # noqa: F401 (MODELS' names)

    pl.seed_everything(0, verbose=False)
    anon = PeakAnon()
    t = time.perf_counter()
    dm = RecDataModule(data=f"synthetic:{a.world}", batch_size=a.batch_size,
                       num_negatives=a.negatives, num_workers=a.workers, eval_users=a.eval_users,
                       eval_batch_size=a.eval_batch_size, cache_dir=a.cache_dir)
    dm.prepare_data()
    dm.setup()
    open_s = time.perf_counter() - t
    module = RecModule(eval(MODELS[a.model]), lr=1e-3, ks=(20,), auc=False, optimizer=a.optimizer)
    dm._plan = module.sampling_plan
    t = time.perf_counter()
    dm.context()
    dm.static(torch.device("cpu"))
    prepare_s = time.perf_counter() - t
    wait = LoaderWait(warmup=2)
    quiet = dict(num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                 enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                 default_root_dir=a.cache_dir)
    sizes = subgraph_sizes()
    trainer = pl.Trainer(max_steps=a.steps + 2, limit_val_batches=0, callbacks=[wait, sizes],
                         **quiet)
    trainer.fit(module, datamodule=dm)
    train_peak, train_anon = peak_gib(), anon.reset()
    t = time.perf_counter()
    val = pl.Trainer(**quiet).validate(module, datamodule=dm, verbose=False)[0]
    eval_s = time.perf_counter() - t
    eval_anon = anon.reset()
    w = wait.summary()
    return {"world": a.world, "model": a.model, "workers": a.workers, "users": dm.num_users,
            "items": dm.num_items, "train_edges": dm.train_graph.num_edges,
            "open_s": open_s, "prepare_s": prepare_s, "step_s": 1 / w["steps_per_s"],
            "wait_share": w["data_wait_share"], "s_per_1k_pos": 1000 / w["positives_per_s"],
            "steps": w["steps"], "train_peak_gib": train_peak, "eval_s": eval_s,
            "eval_users": int(val["val/num_users"]), "recall@20": val["val/recall@20"],
            "peak_gib": peak_gib(), "train_anon_gib": train_anon,
            "eval_anon_gib": eval_anon, "threads": torch.get_num_threads(), "optimizer": a.optimizer,
            "sub_nodes": sum(sizes.nodes) / max(len(sizes.nodes), 1),
            "sub_edges": sum(sizes.edges) / max(len(sizes.edges), 1)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worlds", nargs="+", default=["tiny", "default", "large", "huge"])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--workers", nargs="+", type=int, default=[0])
    p.add_argument("--steps", type=int, default=30, help="timed training steps (+2 warm-up)")
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--negatives", type=int, default=1)
    p.add_argument("--eval-users", type=int, default=2000)
    p.add_argument("--eval-batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--cache-dir", default="artifacts/cache")
    p.add_argument("--optimizer", default="adam",
                   help="RecModule's optimizer: adam (dense) or lazy_adam (sparse rows)")
    p.add_argument("--one", nargs=3, metavar=("WORLD", "MODEL", "WORKERS"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.one:
        a.world, a.model, a.workers = a.one[0], a.one[1], int(a.one[2])
        print("RESULT " + json.dumps(one(a)), flush=True)
        return
    rows = []
    for model in a.models:
        for world in a.worlds:
            for workers in a.workers:
                cmd = [sys.executable, __file__, "--one", world, model, str(workers),
                       "--steps", str(a.steps), "--batch-size", str(a.batch_size),
                       "--negatives", str(a.negatives), "--eval-users", str(a.eval_users),
                       "--eval-batch-size", str(a.eval_batch_size), "--threads", str(a.threads),
                       "--cache-dir", a.cache_dir, "--optimizer", a.optimizer]
                out = subprocess.run(cmd, capture_output=True, text=True)
                line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
                if out.returncode or not line:
                    print(f"{world} {model} workers={workers}: failed\n{out.stderr[-3000:]}")
                    continue
                rows.append(json.loads(line[0][7:]))
                r = rows[-1]
                print(f"{r['world']:8s} {r['model']:9s} {a.optimizer} w={r['workers']} edges {r['train_edges']:>11,}  "
                      f"step {r['step_s'] * 1e3:8.1f} ms  wait {r['wait_share']:5.1%}  "
                      f"{r['s_per_1k_pos'] * 1e3:7.1f} ms/1k pos  prepare {r['prepare_s']:7.1f} s  "
                      f"eval {r['eval_s']:6.1f} s ({r['eval_users']} users)  "
                      f"peak RSS {r['peak_gib']:5.2f} GiB (train {r['train_peak_gib']:5.2f}; anonymous: "
                      f"train {r['train_anon_gib']:5.2f}, eval {r['eval_anon_gib']:5.2f})  "
                      f"sub-graph {r['sub_nodes']:,.0f} nodes {r['sub_edges']:,.0f} edges "
                      f"({r['step_s'] * 1e6 / max(r['sub_nodes'], 1):.2f} ms/1k nodes)", flush=True)
    for model in a.models:
        base = next((r for r in rows if r["model"] == model), None)
        for r in rows:
            if r["model"] == model and base is not None:
                per_node = (r["step_s"] / max(r["sub_nodes"], 1)) / (
                    base["step_s"] / max(base["sub_nodes"], 1))
                print(f"{model} {r['world']} w={r['workers']}: step time {r['step_s'] / base['step_s']:.2f}x "
                      f"of {base['world']} w={base['workers']}; sub-graph nodes "
                      f"{r['sub_nodes'] / max(base['sub_nodes'], 1):.2f}x; time per sub-graph node "
                      f"{per_node:.2f}x")
    print("JSON " + json.dumps(rows))


if __name__ == "__main__":
    main()
