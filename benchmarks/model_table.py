"""Issue 15's one table: every model, the same trial budget tuned on validation, then the best
retrained and tested: test Recall/NDCG@20, time to train, ratios to GF-CF and to LightGCN.

One dataset per invocation (``--config``: a base ``reelgraph fit`` YAML, e.g.
``configs/table_synthetic.yaml``, giving data, split, epochs, early stopping and evaluation). Per
model, built from the product:

1. search: ``reelgraph-tune`` (:func:`reelgraph.tune.search.run`, in this process, on one Ray
   started here) with the model's ``configs/spaces/<space>.yaml`` (an ablation: the A2BM2GL space
   plus its fixed flag, written to ``<out>/spaces/``), ``--num-samples --trials``, Optuna's TPE,
   ASHA on validation Recall@20. It writes ``<out>/tune/<model>/best.yaml`` and ``results.csv``.
   GF-CF is training-free (``Trainer.fit`` refuses it, so a Tune trial cannot run it): the same
   number of points drawn from ``configs/spaces/gfcf.yaml`` with Ray Tune's own samplers
   (seeded), each built and validated by the fit parser and Trainer (``TrialCLI``), written by
   the same :mod:`reelgraph.tune.export` functions (``results.csv``, ``best.yaml``).
   ``simgcl-published`` is not searched: ``configs/simgcl_amazon_book.yaml``'s model, optimiser
   and batch settings applied to the dataset become its ``best.yaml``.
2. retrain and test: ``reelgraph fit --config best.yaml`` (the CLI itself, in this process):
   early stopping on validation, the best checkpoint tested. "train s" is the wall time of that
   fit, its epochs and their validations (GF-CF: the filter's build and one validation), not
   the test; the search's own time is kept beside it (``search_seconds``).

A model finished is one line of ``<out>/results.jsonl``, appended at once; a rerun skips the
models there, continues an interrupted search (``reelgraph-tune --resume``) and redoes an
interrupted retrain. ``--report`` prints the Markdown table of an existing JSONL.

    python benchmarks/model_table.py --config configs/table_synthetic.yaml --trials 8
    python benchmarks/model_table.py --config configs/table_synthetic.yaml --models mf,gfcf \\
        --data synthetic:tiny --trials 2 --epochs 1 --out runs/table/tiny
    python benchmarks/model_table.py --report --out runs/table/tiny

Issue 16's multimodal table is the same driver on the same configs (they evaluate P/R/NDCG at 10
and 20 and test AUC; every test metric is kept in the JSONL row): ``--models
lightgcn,mmgcn,mmgcn-nofeat,shl,shl-nofeat,a2bm2gl,model-str --columns
precision@10,recall@10,ndcg@10,precision@20,auc``; the ``-nofeat`` rows and model-str are the
features-off ablations.
"""
from __future__ import annotations

import argparse
import datetime
import logging
import os
import shutil
import sys
import time
from typing import Any, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # _table_search, also by path
from _table_search import (ROOT, Row, draw_search, recipe_search, recipe_values,  # noqa: E402
                           search_outcome, tune_search)
from _table_search import draw_points, space_file  # noqa: E402,F401 (the tests reach them here)
from _jsonl import append_row, load_rows  # noqa: E402

RECIPE = os.path.join(ROOT, "configs", "simgcl_amazon_book.yaml")
RESULTS = "results.jsonl"
log = logging.getLogger("reelgraph")


ARG = "model.model.init_args."
MODELS: dict[str, Row] = {   # the table's order: the two references first
    "gfcf": Row("gfcf.yaml", how="draw"),
    "lightgcn": Row("lightgcn.yaml"),
    "mf": Row("mf.yaml"),
    "ngcf": Row("ngcf.yaml"),
    "simgcl": Row("simgcl.yaml"),
    "simgcl-published": Row(None, how="recipe"),
    "sage": Row("sage.yaml"),
    "pinsage": Row("pinsage.yaml"),
    "vagnn": Row("vagnn.yaml"),
    "a2bm2gl": Row("a2bm2gl.yaml"),
    "model-an": Row("a2bm2gl.yaml", {ARG + "anti_bottleneck": False}),   # the paper's ablations
    "model-al": Row("a2bm2gl.yaml", {ARG + "rec_loss": "bpr"}),
    "model-str": Row("a2bm2gl.yaml", {ARG + "semantic": False}),
    "mmgcn": Row("mmgcn.yaml"),
    "mmgcn-nofeat": Row("mmgcn.yaml", {ARG + "features": False}),   # features-off (issue 16)
    "shl": Row("shl.yaml"),
    "shl-nofeat": Row("shl.yaml", {ARG + "modalities": []}),
}   # A2BM2GL's features-off ablation is model-str (no semantic module: no features)


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], allow_abbrev=False,
        epilog="Further --trainer.*, --model.*, --data.* arguments override the base config for "
               "every model (searches, draws and retrains), as in reelgraph-tune.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", help="base `reelgraph fit` YAML of the dataset (required unless "
                                    "--report), e.g. configs/table_synthetic.yaml")
    p.add_argument("--data", default=None, help="override of data.data (a folder or synthetic:<preset>)")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated subset, in this order")
    p.add_argument("--trials", type=int, default=8, help="trials per model (GF-CF: points drawn)")
    p.add_argument("--epochs", type=int, default=None, help="override of trainer.max_epochs")
    p.add_argument("--max-concurrent-trials", type=int, default=1)
    p.add_argument("--cpus-per-trial", type=float, default=None,
                   help="CPUs (torch threads) per trial; default: the CPUs / concurrent trials")
    p.add_argument("--scheduler", choices=("asha", "fifo"), default="asha",
                   help="reelgraph-tune's --scheduler (asha stops weak trials between validations)")
    p.add_argument("--seed", type=int, default=0, help="seed of the samplers (TPE, GF-CF's draws)")
    p.add_argument("--recipe", default=RECIPE, help="simgcl-published's settings (model, lr, batch)")
    p.add_argument("--out", default=None, help="tune runs, retrains and results.jsonl; default "
                                               "runs/table/<config stem>")
    p.add_argument("--report", action="store_true", help="print the table of --out's JSONL only")
    p.add_argument("--columns", default="", help="comma-separated further test metrics for the "
                                                 "table, e.g. precision@10,recall@10,ndcg@10,auc")
    args, rest = p.parse_known_args(argv)
    if not args.report and not args.config:
        p.error("--config is required (or --report with --out)")
    if args.report and not args.out:
        p.error("--report needs --out")
    for flag in ("config", "recipe"):
        if not args.report and not os.path.isfile(getattr(args, flag)):
            p.error(f"--{flag} {getattr(args, flag)}: no such file")
    unknown = [m for m in args.models.split(",") if m not in MODELS]
    if unknown:
        p.error(f"--models: unknown {', '.join(unknown)}; known: {', '.join(MODELS)}")
    if args.trials < 1 or args.max_concurrent_trials < 1:
        p.error("--trials and --max-concurrent-trials must be >= 1")
    args.models = [m for m in MODELS if m in args.models.split(",")]
    args.columns = [c for c in args.columns.split(",") if c]
    if args.cpus_per_trial is None:
        args.cpus_per_trial = float(max(1, (os.cpu_count() or 1) // args.max_concurrent_trials))
    stem = os.path.splitext(os.path.basename(args.config or ""))[0]
    args.out = os.path.abspath(args.out or os.path.join("runs", "table", stem))
    return args, rest


def overrides(args: argparse.Namespace, rest: list[str]) -> list[str]:
    """The pass-through overrides every search, draw and retrain gets (they stay in best.yaml)."""
    extra = [f"--data.data={args.data}"] if args.data else []
    extra += [f"--trainer.max_epochs={args.epochs}"] if args.epochs else []
    return [*extra, *rest]


# -- retrain and test: `reelgraph fit --config best.yaml` ----------------------------------------
def retrain(best_yaml: str, root: str) -> dict[str, Any]:
    """``reelgraph fit --config best.yaml`` in this process (fit, then the best checkpoint
    tested, the CLI's table printed); its test metrics, the fit's wall seconds, epochs run and
    best validation metric."""
    import torch

    from reelgraph.lightning_modules.callbacks import EpochSummary
    from reelgraph.lightning_modules.cli import MONITOR, TRAINER_DEFAULTS, ReelGraphCLI
    from reelgraph.lightning_modules.datamodule import RecDataModule
    from reelgraph.lightning_modules.module import RecModule

    class TimedCLI(ReelGraphCLI):
        """``reelgraph fit`` that keeps the fit's wall time and validation metric."""

        def fit(self, model, datamodule, ckpt_path=None, **kwargs) -> None:
            start = time.perf_counter()
            super().fit(model, datamodule, ckpt_path, **kwargs)
            self.fit_seconds = time.perf_counter() - start
            best = self.trainer.checkpoint_callback.best_model_score   # None: training-free
            self.val = float(best if best is not None else self.trainer.callback_metrics[MONITOR])

    shutil.rmtree(root, ignore_errors=True)   # an interrupted retrain starts again
    cli = TimedCLI(RecModule, RecDataModule, seed_everything_default=0,
                   args=["fit", "--config", best_yaml, f"--trainer.default_root_dir={root}"],
                   trainer_defaults={**TRAINER_DEFAULTS, "callbacks": [EpochSummary()]},
                   save_config_kwargs={"overwrite": True}, parser_kwargs={"exit_on_error": False})
    m = cli.trainer.callback_metrics
    training_free = cli.model.config.training_free
    return {"test_recall@20": float(m["test/recall@20"]), "test_ndcg@20": float(m["test/ndcg@20"]),
            "test": {k.split("/", 1)[1]: float(v) for k, v in m.items() if k.startswith("test/")},
            "train_seconds": round(cli.fit_seconds, 1), "retrain_val_recall@20": cli.val,
            "epochs": 0 if training_free else int(cli.trainer.current_epoch),
            "threads": torch.get_num_threads()}


def table_row(name: str, args: argparse.Namespace, extra: list[str]) -> dict[str, Any]:
    """Search (unless its best.yaml exists), retrain, test: the model's JSONL row."""
    row, exp = MODELS[name], os.path.join(args.out, "tune", name)
    best_yaml = os.path.join(exp, "best.yaml")
    start = time.perf_counter()
    if not os.path.isfile(best_yaml):
        {"tune": tune_search, "draw": draw_search, "recipe": recipe_search}[row.how](
            name, row, args, extra)
    search_seconds = time.perf_counter() - start
    trials, val, values = search_outcome(exp)
    if row.how == "recipe":   # its settings, as the searched rows show their best values
        values = {k: v for k, v in recipe_values(args.recipe).items() if k != "model.model"}
    result = retrain(best_yaml, os.path.join(args.out, "fit", name))
    return {"model": name, "trials": trials,
            "val_recall@20": val if val is not None else result["retrain_val_recall@20"],
            **result, "search_seconds": round(search_seconds, 1), "params": values,
            "fixed": row.fixed, "best_yaml": os.path.relpath(best_yaml, args.out),
            "config": args.config, "overrides": extra,
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


# -- the table ---------------------------------------------------------------------------------
def fmt_params(row: dict[str, Any]) -> str:
    """``lr=0.00379, embedding_dim=32, ...``: the best (or fixed) values by their last key part."""
    values = {**row.get("params", {}), **row.get("fixed", {})}
    short = {k.rsplit(".", 1)[-1]: v for k, v in values.items() if k != "model.model"}
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in short.items())


def markdown(rows: dict[str, dict[str, Any]], columns: Sequence[str] = ()) -> str:
    """The Markdown table, models in :data:`MODELS` order; ``/ GF-CF`` and ``/ LightGCN``
    columns (test Recall@20 ratios) when those rows exist; ``columns``: further test metrics
    (``precision@10``, ``auc``, ...; "–" where a row lacks one)."""
    refs = [(label, rows[m]["test_recall@20"]) for label, m in (("GF-CF", "gfcf"),
                                                                  ("LightGCN", "lightgcn"))
            if m in rows and rows[m]["test_recall@20"] > 0]
    head = ["model", "trials", "val R@20", "test R@20", "test N@20", "train s", "epochs",
            *(f"R@20 / {label}" for label, _ in refs), *(f"test {c}" for c in columns),
            "best hyper-parameters"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = [m for m in MODELS if m in rows] + [m for m in rows if m not in MODELS]
    for m in order:
        r = rows[m]
        cells = [m, str(r["trials"]) if r["trials"] else "– (fixed)", f"{r['val_recall@20']:.4f}",
                 f"{r['test_recall@20']:.4f}", f"{r['test_ndcg@20']:.4f}",
                 f"{r['train_seconds']:.1f}", str(r["epochs"]) if r["epochs"] else "– (no epochs)",
                 *(f"{r['test_recall@20'] / ref:.3f}" for _, ref in refs),
                 *(f"{r['test'][c]:.4f}" if c in r.get("test", {}) else "–" for c in columns),
                 fmt_params(r)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def print_row(row: dict[str, Any]) -> None:
    print(f"\n[model_table] {row['model']}: trials {row['trials']}, val R@20 "
          f"{row['val_recall@20']:.4f}, test R@20 {row['test_recall@20']:.4f}, N@20 "
          f"{row['test_ndcg@20']:.4f}, train {row['train_seconds']:.1f}s ({row['epochs']} epochs), "
          f"search {row['search_seconds']:.1f}s; {fmt_params(row)}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args, rest = parse_args(argv)
    path = os.path.join(args.out, RESULTS)
    if args.report:
        print(markdown(load_rows(path), args.columns))
        return 0
    os.makedirs(args.out, exist_ok=True)
    extra, failed, ray_started = overrides(args, rest), [], False
    for name in args.models:
        done = load_rows(path).get(name)
        if done:
            print(f"[model_table] {name}: in {path} already, skipped", flush=True)
            if done["overrides"] != extra or done["config"] != args.config:
                log.warning("%s's row was made with --config %s %s, not this run's", name,
                            done["config"], " ".join(done["overrides"]))
            continue
        if MODELS[name].how == "tune" and not ray_started:
            from reelgraph.tune.search import start_ray

            ray_started = start_ray(None, None)
        try:
            row = table_row(name, args, extra)
        except (Exception, SystemExit) as e:   # one model's failure does not stop the table
            log.error("%s failed: %s: %s", name, type(e).__name__, e)
            failed.append(name)
            continue
        append_row(path, row)
        print_row(row)
    if ray_started:
        import ray

        ray.shutdown()
    print(f"\n{path}\n" + markdown(load_rows(path), args.columns))
    if failed:
        print(f"failed (not in the JSONL; a rerun retries them): {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
