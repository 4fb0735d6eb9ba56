"""What a finished search leaves in ``<storage>/<name>/``: the results table, ``best.yaml`` and
the plots.

* ``results.parquet`` / ``results.csv``: one row per trial: ``trial_id``, each searched value,
  ``best_<metric>`` (over its validations), ``last_<metric>``, ``epochs`` run, ``status``
  (``TERMINATED``, including trials ASHA stopped, or ``ERROR``) and ``trial_dir``.
* ``best.yaml``: the fit YAML (and the search's pass-through overrides) with the best trial's
  values, parsed and dumped whole by the CLI's own parser, so ``reelgraph fit --config best.yaml``
  and ``python -m reelgraph.distributed.train --config best.yaml`` take it unchanged.
* ``metric_vs_<key>.png`` per searched key; ``curves.png``: the metric per epoch of every trial
  (trials ASHA stopped are the short curves).

Everything here reads plain tables (Tune's per-trial report history), not Ray objects, except
:func:`trial_histories`.
"""
from __future__ import annotations

import math
import os
from typing import Any, Mapping, Sequence

import pandas as pd

from reelgraph.tune.space import Param, apply, plain


def last_attempt(history: pd.DataFrame | None) -> pd.DataFrame:
    """A trial's history as its last attempt saw it, by ``epoch``: an attempt that continued from
    a checkpoint at epoch ``e`` (a retry or ``--resume``) keeps the earlier attempts' epochs
    before ``e``; one that started again at epoch 0 (no checkpoint) replaces them all."""
    if history is None or len(history) == 0 or "epoch" not in history:
        return pd.DataFrame()
    epoch = history["epoch"].to_numpy()
    starts = [j for j in range(1, len(epoch)) if epoch[j] <= epoch[j - 1]]
    if not starts:
        return history.reset_index(drop=True)
    last = starts[-1]
    before = history.iloc[:last]
    kept = before[before["epoch"] < epoch[last]]
    return pd.concat([kept, history.iloc[last:]]).reset_index(drop=True)


def trial_histories(grid: Any) -> list[dict[str, Any]]:
    """``[{trial_id, config, history, error, path}]`` of a Tune ``ResultGrid``."""
    trials = []
    for result in grid:
        metrics = result.metrics or {}
        folder = os.path.basename(result.path.rstrip("/"))  # trial_<id> (search.trial_dirname)
        trials.append({"trial_id": metrics.get("trial_id") or folder.removeprefix("trial_"),
                       "config": dict(result.config or {}), "error": result.error is not None,
                       "history": last_attempt(result.metrics_dataframe), "path": result.path})
    return trials


def _cell(value: Any) -> Any:
    value = plain(value)
    return str(value) if isinstance(value, (list, dict)) else value


def results_table(trials: Sequence[Mapping[str, Any]], space: Mapping[str, Param],
                  metric: str) -> pd.DataFrame:
    """One row per trial (see the module doc), best trial first."""
    searched = [k for k, p in space.items() if p.searched]
    columns = ["trial_id", *searched, f"best_{metric}", f"last_{metric}", "epochs", "status",
               "trial_dir"]
    rows = []
    for t in trials:
        h = t["history"]
        values = h[metric].dropna() if metric in h else pd.Series(dtype=float)
        rows.append([t["trial_id"], *(_cell(t["config"].get(k)) for k in searched),
                     float(values.max()) if len(values) else math.nan,
                     float(values.iloc[-1]) if len(values) else math.nan,
                     int(h["epoch"].max()) + 1 if "epoch" in h and len(h) else 0,
                     "ERROR" if t["error"] else "TERMINATED", t["path"]])
    table = pd.DataFrame(rows, columns=columns)
    return table.sort_values(f"best_{metric}", ascending=False, na_position="last",
                             kind="stable").reset_index(drop=True)


def write_table(table: pd.DataFrame, out_dir: str) -> list[str]:
    paths = [os.path.join(out_dir, "results.parquet"), os.path.join(out_dir, "results.csv")]
    table.to_parquet(paths[0], index=False)
    table.to_csv(paths[1], index=False)
    return paths


def best_yaml(cli_args: Sequence[str], values: Mapping[str, Any], path: str, header: str) -> str:
    """Writes the full config of ``cli_args`` + ``values`` (nulls kept: an explicit ``null`` in
    the fit YAML stays one) as ``reelgraph fit`` parses it; returns ``path``."""
    from reelgraph.tune.trial import TrialCLI  # the Lightning CLI, only when exporting

    cli = TrialCLI(apply(cli_args, values), instantiate=False)
    text = cli.parser.dump(cli.config, skip_none=False)
    lines = "".join(f"# {line}\n" for line in header.splitlines())
    with open(path, "w") as f:
        f.write(lines + text)
    return path


# -- plots -------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_params(table: pd.DataFrame, space: Mapping[str, Param], metric: str,
                max_epochs: int | None, out_dir: str) -> list[str]:
    """``metric_vs_<key>.png`` for every searched key: each trial's best metric against its
    value; hollow markers: trials that ran fewer than ``max_epochs`` epochs (stopped early)."""
    plt, paths = _pyplot(), []
    best = table[f"best_{metric}"]
    early = table["epochs"] < max_epochs if max_epochs else pd.Series(False, index=table.index)
    for key, p in space.items():
        if not p.searched:
            continue
        fig, ax = plt.subplots(figsize=(5, 3.5))
        if p.categorical:
            labels = [str(plain(o)) for o in p.args]
            x = table[key].map(lambda v: labels.index(str(v)) if str(v) in labels else -1)
            ax.set_xticks(range(len(labels)), labels)
        else:
            x = table[key].astype(float)
            if p.log:
                ax.set_xscale("log")
        ax.scatter(x[~early], best[~early], color="tab:blue", label="ran every epoch")
        if early.any():
            ax.scatter(x[early], best[early], facecolors="none", edgecolors="tab:blue",
                       label="stopped early")
            ax.legend(fontsize=8)
        ax.set_xlabel(key)
        ax.set_ylabel(f"best {metric}")
        fig.tight_layout()
        paths.append(os.path.join(out_dir, f"metric_vs_{key}.png"))
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def plot_curves(trials: Sequence[Mapping[str, Any]], metric: str, path: str,
                best_id: str | None = None) -> str:
    """``curves.png``: ``metric`` per epoch, one line per trial (the best one thicker)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for t in trials:
        h = t["history"]
        if metric not in h or "epoch" not in h:
            continue
        ax.plot(h["epoch"] + 1, h[metric], marker=".", lw=2.5 if t["trial_id"] == best_id else 1,
                label=str(t["trial_id"])[-5:] if len(trials) <= 12 else None)
    ax.set_xlabel("epoch")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs
    ax.set_ylabel(metric)
    ax.set_title("per trial; short curves: stopped early", fontsize=9)
    if len(trials) <= 12:
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
