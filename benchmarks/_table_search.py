"""Step 1 of ``benchmarks/model_table.py``, the search: how a model's ``best.yaml`` is made
(``reelgraph-tune``; GF-CF's seeded draws, validated; the published recipe, not searched) and
what its ``results.csv`` says.

A script run as ``python benchmarks/x.py`` has this folder first on ``sys.path``; a script
loaded by path (``importlib``) puts it there itself before importing from here."""
from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPACES = os.path.join(ROOT, "configs", "spaces")
METRIC = "val/recall@20"
log = logging.getLogger("reelgraph")


@dataclass(frozen=True)
class Row:
    """How a model's row is made.

    Attributes:
        space: file name in ``configs/spaces/``; ``None``: not searched (the published recipe).
        fixed: dotted key -> value every trial gets on top of the space (an ablation's flag).
        how: ``"tune"`` (reelgraph-tune), ``"draw"`` (training-free: seeded draws, validated),
            ``"recipe"`` (no search: ``--recipe``'s settings).
    """

    space: str | None
    fixed: dict[str, Any] = field(default_factory=dict)
    how: str = "tune"


def space_file(name: str, row: Row, out: str) -> str:
    """The model's space; with fixed flags, a copy of it plus them in ``<out>/spaces/``."""
    path = os.path.join(SPACES, row.space)
    if not row.fixed:
        return path
    from reelgraph.tune.space import format_value

    with open(path) as f:
        text = f.read()
    text += f"\n# {name} (benchmarks/model_table.py): {row.space} with\n"
    text += "".join(f"{k}: {format_value(v)}\n" for k, v in row.fixed.items())
    os.makedirs(os.path.join(out, "spaces"), exist_ok=True)
    path = os.path.join(out, "spaces", f"{name}.yaml")
    with open(path, "w") as f:
        f.write(text)
    return path


def tune_search(name: str, row: Row, args: argparse.Namespace, extra: list[str]) -> None:
    """``reelgraph-tune`` for ``name``, or ``--resume`` of its interrupted search."""
    from ray.tune import Tuner

    from reelgraph.tune.search import STATE_FILE, run

    storage = os.path.join(args.out, "tune")
    exp = os.path.join(storage, name)
    if Tuner.can_restore(exp) and os.path.isfile(os.path.join(exp, STATE_FILE)):
        log.info("%s: continuing the interrupted search %s", name, exp)
        summary = run(["--resume", "--name", name, "--storage-path", storage])
    else:
        summary = run(["--config", args.config, "--space", space_file(name, row, args.out),
                       "--num-samples", str(args.trials), "--search", "optuna",
                       "--seed", str(args.seed), "--scheduler", args.scheduler,
                       "--max-concurrent-trials", str(args.max_concurrent_trials),
                       "--cpus-per-trial", str(args.cpus_per_trial),
                       "--name", name, "--storage-path", storage, *extra])
    if summary.best is None:
        raise RuntimeError(f"no trial of {name} reported {METRIC} (see {exp})")


def draw_points(space: dict, trials: int, seed: int) -> list[dict[str, Any]]:
    """``trials`` distinct points of ``space`` (fewer only if it has fewer), each searched key
    drawn by its Ray Tune domain's own sampler from one seeded ``RandomState``: the same points
    on every run."""
    from reelgraph.tune.space import plain

    rng = np.random.RandomState(seed)
    fixed = {k: p.args[0] for k, p in space.items() if not p.searched}
    points: list[dict[str, Any]] = []
    for _ in range(100 * trials):
        point = {**fixed, **{k: plain(p.domain().sample(random_state=rng))
                             for k, p in space.items() if p.searched}}
        if point not in points:
            points.append(point)
        if len(points) == trials:
            break
    return points


def draw_search(name: str, row: Row, args: argparse.Namespace, extra: list[str]) -> None:
    """A training-free model (GF-CF): each drawn point built and validated by the fit parser's
    model, data and Trainer; ``results.csv`` and ``best.yaml`` as reelgraph-tune writes them."""
    from reelgraph.tune import export
    from reelgraph.tune.space import apply, load_space
    from reelgraph.tune.trial import TrialCLI

    exp = os.path.join(args.out, "tune", name)
    os.makedirs(exp, exist_ok=True)
    space = load_space(space_file(name, row, args.out))
    with open(args.config) as f:
        cli_args = ["--config", f.read(), *extra]
    trials = []
    points = draw_points(space, args.trials, args.seed)
    for i, values in enumerate(points):
        trial_dir = os.path.join(exp, f"trial_{i:03d}")
        cli = TrialCLI(apply(cli_args, values), logger=False, root_dir=trial_dir)
        start = time.perf_counter()
        (metrics,) = cli.trainer.validate(cli.model, datamodule=cli.datamodule, verbose=False)
        log.info("%s point %d/%d %s: %s %.4f (%.1fs)", name, i + 1, len(points), values, METRIC,
                 metrics[METRIC], time.perf_counter() - start)
        trials.append({"trial_id": f"{i:03d}", "config": values, "error": False, "path": trial_dir,
                       "history": pd.DataFrame({"epoch": [-1], METRIC: [metrics[METRIC]]})})
    table = export.results_table(trials, space, METRIC)   # epoch -1: "epochs" 0, no training
    export.write_table(table, exp)
    best = next(t for t in trials if t["trial_id"] == table.iloc[0]["trial_id"])
    export.best_yaml(cli_args, best["config"], os.path.join(exp, "best.yaml"),
                     f"{name}: best of {len(points)} drawn points on {METRIC}")


def recipe_values(path: str) -> dict[str, Any]:
    """Dotted overrides of a fit YAML's model, optimiser and batch settings (not its data,
    epochs or evaluation): ``model.model`` and its init_args, ``model.*`` but ``ks``/``auc``,
    ``data.batch_size``, ``data.num_negatives``."""
    import yaml

    with open(path) as f:
        cfg = yaml.safe_load(f)
    model, data = dict(cfg["model"]), cfg.get("data") or {}
    spec = model.pop("model")
    values = {"model.model": spec["class_path"]}
    values.update({f"model.model.init_args.{k}": v for k, v in (spec.get("init_args") or {}).items()})
    values.update({f"model.{k}": v for k, v in model.items() if k not in ("ks", "auc")})
    values.update({f"data.{k}": data[k] for k in ("batch_size", "num_negatives") if k in data})
    return values


def recipe_search(name: str, row: Row, args: argparse.Namespace, extra: list[str]) -> None:
    """No search: ``--recipe``'s settings on the dataset's config become ``best.yaml``."""
    from reelgraph.tune import export

    exp = os.path.join(args.out, "tune", name)
    os.makedirs(exp, exist_ok=True)
    with open(args.config) as f:
        cli_args = ["--config", f.read(), *extra]
    export.best_yaml(cli_args, recipe_values(args.recipe), os.path.join(exp, "best.yaml"),
                     f"{name}: {os.path.relpath(args.recipe, ROOT)}'s settings, not searched")


def search_outcome(exp: str) -> tuple[int, float | None, dict[str, Any]]:
    """``(trials, best validation metric, best values)`` from a search's ``results.csv``;
    ``(0, None, {})`` when there is none (the published recipe)."""
    path = os.path.join(exp, "results.csv")
    if not os.path.isfile(path):
        return 0, None, {}
    table = pd.read_csv(path)
    best = table.iloc[0]
    skip = {"trial_id", "epochs", "status", "trial_dir"}
    values = {k: (v.item() if hasattr(v, "item") else v) for k, v in best.items()
              if k not in skip and not k.startswith(("best_", "last_"))}
    return len(table), float(best[f"best_{METRIC}"]), values
