"""Issue 15: a measured diagnosis of each model of the model table against a reference
(LightGCN), from the artefacts ``benchmarks/model_table.py`` saved: no training, inference only.

Per model, from ``<out>/fit/<model>/lightning_logs/version_0/`` (``config.yaml``, the best
checkpoint, the TensorBoard events; a training-free model, GF-CF, is rebuilt from its config):

0. check: the model rebuilt through the product (``RecModule.from_checkpoint``, the data
   module's static state, ``model.score_fn`` or the inner products of ``model.embed``, test
   ranking over train+valid masked by :mod:`reelgraph.metrics`) gives the JSONL's test
   Recall@20 within 1e-3: the diagnosis scores the model the table tested; beside it, how far
   the exported ``embeddings/*.parquet`` lie from ``embed()`` of the best checkpoint in eval
   mode (0: they are that model's);
1. training curve: validation Recall@20 per epoch from the event files: epochs run against
   ``trainer.max_epochs``, the best epoch, whether it is the last allowed one, the gain of the
   last 3 epochs (last value minus the value 3 epochs earlier);
2. test Recall@20 by the user's train-degree quartile and by the held-out item's popularity
   (head: the 20 % items of largest train degree), and each as a ratio to the reference;
3. popularity of the top-20 lists: mean train degree of the recommended items, against the
   reference's and the held-out items' (and the head items' share of the lists);
4. embedding geometry (inner-product models): mean cosine of random item pairs (collapse or
   over-smoothing), item/user norm spread (std / mean), correlation of item norm and
   ``log(1 + train degree)``;
5. what a popularity prior closes: every model (the reference too) rescored as
   ``s'(u, i) = z(u, i) + beta * log(1 + train degree of i)``, ``z`` the model's score
   standardised per user over all items (scale-free, so one beta grid serves every model),
   beta picked on validation Recall@20 (train masked), then test Recall@20 (train+valid masked)
   against the reference as tested and with its own prior.

    OMP_NUM_THREADS=1 python benchmarks/table_diagnosis.py --out runs/table/synthetic \\
        --models mf,ngcf,sage,gfcf --reference lightgcn [--cache-dir DIR]

``--cache-dir``: where the configs' store is cached if not at their ``data.cache_dir`` (a path
relative to the directory the table ran in). About 40 s on one thread for the synthetic
table's seven models, three quarters of it section 5 (len(BETAS) + 1 more rankings per model).
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import sys
from dataclasses import dataclass
from typing import Sequence

import torch
import yaml
from torch import Tensor

from reelgraph.graph import BipartiteGraph
from reelgraph.lightning_modules.datamodule import RecDataModule
from reelgraph.lightning_modules.module import RecModule, as_config
from reelgraph.metrics import (ScoreFn, batch_edges, inner_product, per_user_metrics,
                               ranking_hits, topk_items)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # _diagnosis_measures, also by path
from _diagnosis_measures import (Curve, curve_from_events, degree_quartiles,  # noqa: E402
                                 geometry, group_recall, head_items, mean_rec_degree,
                                 summarize_curve)

K = 20
RUN = os.path.join("lightning_logs", "version_0")


# -- the product: a model of the table, rebuilt and ranked ---------------------------------------
@dataclass(frozen=True)
class Ranked:
    """A model's test top-K and its hits over the evaluated users; its embeddings if any."""

    top: Tensor                      # [n, K] item ids, -1 empty
    hits: Tensor                     # [n, K] bool
    emb: tuple[Tensor, Tensor] | None


def load_model(run_dir: str, cache_dir: str | None) -> tuple[RecModule, RecDataModule]:
    """The run's data module (its config's data section) and its module, from the best
    checkpoint, or built from the config when training-free (GF-CF); in eval mode."""
    with open(os.path.join(run_dir, "config.yaml")) as f:
        cfg = yaml.safe_load(f)
    model_cfg = as_config(cfg["model"]["model"])
    data = {**cfg["data"], **({"cache_dir": cache_dir} if cache_dir else {})}
    data["plan"] = model_cfg.plan()   # the config's is null: the module's, without a Trainer
    dm = RecDataModule(**data)
    dm.setup("test")
    best = glob.glob(os.path.join(run_dir, "checkpoints", "best-*.ckpt"))
    if best:
        module = RecModule.from_checkpoint(best[0], dm.store)
    elif model_cfg.training_free:
        module = RecModule(**cfg["model"])
        module.model = model_cfg.build(dm.store)   # nothing trained: the config is the model
    else:
        raise FileNotFoundError(f"{run_dir}: no best-*.ckpt")
    return module.eval(), dm


def scorer(module: RecModule, dm: RecDataModule) -> tuple[ScoreFn, tuple[Tensor, Tensor] | None]:
    """As ``RecModule``'s test: its ``score_fn`` or its embeddings' inner products (and those)."""
    static = dm.static("cpu")
    score, emb = module.model.score_fn(static), None
    if score is None:
        emb = tuple(e.detach() for e in module.model.embed(static))
        score = inner_product(*emb, reuse_output=True)
    return score, emb


@torch.no_grad()
def top_hits(score: ScoreFn, users: Tensor, masked: BipartiteGraph, held_out: BipartiteGraph,
             batch: int, chunk: int) -> tuple[Tensor, Tensor]:
    """Top-K ``[n, K]`` of ``users`` with their ``masked`` items masked, and its hits on
    ``held_out`` ``bool [n, K]``, user batch by user batch."""
    tops, hits = [], []
    for b in users.split(batch):
        tops.append(topk_items(score, b, masked, K, chunk))
        hits.append(ranking_hits(tops[-1], b, held_out))
    return torch.cat(tops), torch.cat(hits)


def rank(module: RecModule, dm: RecDataModule, users: Tensor) -> Ranked:
    """As ``RecModule``'s test: train+valid masked, the top-K of every user."""
    score, emb = scorer(module, dm)
    return Ranked(*top_hits(score, users, dm.history, dm.test_graph, dm.eval_batch_size,
                            module.hparams.item_chunk_size), emb)


def exported_gap(run_dir: str, emb: tuple[Tensor, Tensor] | None) -> float:
    """Max ``|Δ|`` between ``embeddings/{users,items}.parquet`` (rows in the store's index order)
    and ``emb``: ``nan`` without either (the export is the best checkpoint's when ~0)."""
    import pyarrow.parquet as pq

    paths = [os.path.join(run_dir, "embeddings", f"{k}s.parquet") for k in ("user", "item")]
    if emb is None or not all(map(os.path.isfile, paths)):
        return math.nan
    gaps = []
    for path, e in zip(paths, emb):
        col = pq.read_table(path).column("embedding").combine_chunks()
        saved = torch.from_numpy(col.flatten().to_numpy().reshape(len(col), -1).copy())
        gaps.append(float((saved - e.float()).abs().max()))
    return max(gaps)


# -- 5. what a popularity prior closes --------------------------------------------------------
BETAS = (0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6)   # prior weights tried on validation


@torch.no_grad()
def user_moments(score: ScoreFn, num_users: int, num_items: int, batch: int, chunk: int
                 ) -> tuple[Tensor, Tensor]:
    """Mean and std ``[U]`` (float32) of each user's scores over all items, from float64 sums
    of chunks: memory ``O(batch × chunk)``."""
    sums = torch.zeros(2, num_users, dtype=torch.float64)                 # [2, U] Σs, Σs²
    for b in torch.arange(num_users).split(batch):
        for items in torch.arange(num_items).split(chunk):
            s = score(b, items).double()                                  # [B, C]
            sums[:, b] += torch.stack([s.sum(1), s.square().sum(1)])
    mean = sums[0] / num_items
    std = (sums[1] / num_items - mean.square()).clamp(min=0).sqrt()
    if not (mean.isfinite().all() and std.isfinite().all()):
        raise ValueError("a user's scores are not finite: cannot standardise them")
    return mean.float(), std.float()


def with_prior(score: ScoreFn, mean: Tensor, std: Tensor, log_deg: Tensor, beta: float
               ) -> ScoreFn:
    """``s'(u, i) = (s(u, i) - mean[u]) / std[u] + beta * log_deg[i]``: the score standardised
    per user (``mean``, ``std`` ``[U]``; a constant user's std taken as 1) plus a prior."""
    scale = 1.0 / torch.where(std > 0, std, torch.ones(()))                # [U]
    return lambda users, items: ((score(users, items) - mean[users, None]) * scale[users, None]
                                 + beta * log_deg[items])                 # [B, C]


@dataclass(frozen=True)
class Prior:
    """A model rescored with the prior at its best beta."""

    beta: float               # the first beta of the best validation Recall@20
    val: tuple[float, ...]    # validation Recall@20 per beta of BETAS
    test: float               # test Recall@20 at beta
    head_share: float         # the head items' share of those test top-20 lists


@torch.no_grad()
def fit_prior(score: ScoreFn, dm: RecDataModule, split: TestSplit, chunk: int) -> Prior:
    """Validation ranks ``dm.valid_graph`` with train masked, the test train+valid (the product's
    masks); the prior is ``log(1 + train degree)`` in both."""
    mean, std = user_moments(score, dm.num_users, dm.num_items, dm.eval_batch_size, chunk)
    log_deg = torch.log1p(split.item_deg.float())                         # [I]

    def recall(beta: float, users: Tensor, masked, held_out) -> tuple[Tensor, float]:
        top, hits = top_hits(with_prior(score, mean, std, log_deg, beta), users, masked,
                             held_out, dm.eval_batch_size, chunk)
        r = per_user_metrics(hits, held_out.degree()[0][users], (K,))[f"recall@{K}"]
        return top, float(r.mean())

    users = dm.eval_user_ids(dm.valid_graph)
    val = [recall(b, users, dm.train_graph, dm.valid_graph)[1] for b in BETAS]
    beta = BETAS[max(range(len(BETAS)), key=lambda j: (val[j], -j))]
    top, test = recall(beta, split.users, dm.history, dm.test_graph)
    return Prior(beta, tuple(val), test, float(split.head[top[top >= 0]].double().mean()))


# -- the report ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TestSplit:
    """The test users and what they are grouped by (the same for every model)."""

    users: Tensor       # [n] evaluated users (a held-out item each)
    user_deg: Tensor    # [n] their train degrees
    item_deg: Tensor    # [I] train degree of every item
    test_row: Tensor    # [E] held-out edges: index into users
    test_item: Tensor   # [E]
    num_test: Tensor    # [n]
    head: Tensor        # [I] bool, the 20 % most popular items

    @classmethod
    def of(cls, train: BipartiteGraph, test: BipartiteGraph, users: Tensor) -> "TestSplit":
        row, item = batch_edges(test, users)
        user_deg, item_deg = train.degree()
        return cls(users, user_deg[users], item_deg, row, item,
                   torch.bincount(row, minlength=users.numel()), head_items(item_deg))


def table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def cell(value: float, ref: float) -> str:
    return f"{value:.4f} ({value / ref:.2f}x)" if ref > 0 else f"{value:.4f}"


def report_check(jsonl: dict[str, dict], recall: dict[str, float], gaps: dict[str, float]) -> str:
    rows = [[m, f"{jsonl[m]['test_recall@20']:.4f}", f"{r:.4f}",
             f"{abs(jsonl[m]['test_recall@20'] - r):.1e}",
             "yes" if abs(jsonl[m]["test_recall@20"] - r) <= 1e-3 else "NO",
             "–" if math.isnan(gaps[m]) else f"{gaps[m]:.1e}"] for m, r in recall.items()]
    return table(["model", "results.jsonl", "recomputed", "|diff|", "within 1e-3",
                  "max |Δ| embed() vs exported parquet"], rows)


def report_curves(curves: dict[str, Curve | None]) -> str:
    rows = [[m, f"{c.epochs} / {c.max_epochs}", str(c.best_epoch), f"{c.best:.4f}",
             "yes" if c.at_cap else "no", f"{c.gain_last3:+.4f}",
             ", ".join(f"{v:.4f}" for v in c.values[-4:])]
            if c else [m, "– (training-free)", *["–"] * 5] for m, c in curves.items()]
    return table(["model", "epochs run / cap", "best epoch", "best val R@20", "best at the cap",
                  "last − 3 epochs before", "last 4 values"], rows)


def report_groups(split: TestSplit, res: dict[str, Ranked], recall: dict[str, Tensor],
                  ref: str) -> str:
    bucket, edges = degree_quartiles(split.user_deg)
    lo = [int(split.user_deg.min())] + [math.floor(e) + 1 for e in edges.tolist()]
    hi = [math.floor(e) for e in edges.tolist()] + [int(split.user_deg.max())]
    names = [f"Q{q + 1} deg {lo[q]}–{hi[q]} (n={int((bucket == q).sum())})" for q in range(4)]
    by_q = {m: [float(r[bucket == q].mean()) for q in range(4)] for m, r in recall.items()}
    out = table(["model", *names], [[m, *(cell(v, by_q[ref][q]) for q, v in enumerate(by_q[m]))]
                                    for m in res])
    grp = {}
    for m, r in res.items():
        pairs = [group_recall(r.hits, r.top, split.test_row, split.test_item, g)
                 for g in (split.head, ~split.head)]
        grp[m] = [float(rec[has].mean()) for rec, has in pairs]
    share = float(split.head[split.test_item].double().mean())
    out += (f"\n\nhead: the {int(split.head.sum())} items (20 %) of largest train degree, "
            f"{share:.1%} of the held-out edges; a user's recall over their held-out head "
            "(tail) items, mean over the users with one\n\n")
    return out + table(["model", "head R@20", "tail R@20"],
                       [[m, cell(g[0], grp[ref][0]), cell(g[1], grp[ref][1])]
                        for m, g in grp.items()])


def report_popularity(split: TestSplit, res: dict[str, Ranked], ref: str) -> str:
    test_deg = float(split.item_deg[split.test_item].double().mean())
    deg = {m: mean_rec_degree(r.top, split.item_deg) for m, r in res.items()}
    rows = []
    for m, r in res.items():
        ranked = r.top[r.top >= 0]
        rows.append([m, f"{deg[m]:.1f}", f"{float(split.item_deg[ranked].median()):.0f}",
                     f"{deg[m] / deg[ref]:.2f}", f"{deg[m] / test_deg:.2f}",
                     f"{float(split.head[ranked].double().mean()):.1%}"])
    return (table(["model", "mean deg of top-20", "median", f"mean / {ref}'s",
                   "mean / held-out items'", "head share of top-20"], rows)
            + f"\n\nheld-out items: mean train degree {test_deg:.1f}, median "
              f"{float(split.item_deg[split.test_item].median()):.0f}")


def report_geometry(split: TestSplit, res: dict[str, Ranked]) -> str:
    rows = []
    for m, r in res.items():
        if r.emb is None:
            rows.append([m, "– (own score_fn)", "–", "–", "–"])
            continue
        g = geometry(*r.emb, split.item_deg)
        rows.append([m, f"{g['cos']:.3f}", f"{g['item_cv']:.3f}", f"{g['user_cv']:.3f}",
                     f"{g['norm_deg_corr']:+.3f}"])
    return table(["model", "mean cos (random item pairs)", "item norm std/mean",
                  "user norm std/mean", "corr(item norm, log(1+deg))"], rows)


def report_prior(prior: dict[str, Prior], before: dict[str, float], ref: str) -> str:
    r0, r1 = before[ref], prior[ref].test

    def closed(m: str, target: float) -> str:   # share of the gap to the reference closed
        gap = target - before[m]
        return f"{(prior[m].test - before[m]) / gap:.0%}" if m != ref and gap > 0 else "–"
    rows = [[m, f"{p.beta:g}" + (" (grid edge)" if p.beta == BETAS[-1] else ""),
             " ".join(f"{v:.4f}" for v in p.val), f"{before[m]:.4f}", f"{p.test:.4f}",
             f"{before[m] / r0:.2f}x → {p.test / r0:.2f}x", f"{p.test / r1:.2f}x",
             f"{closed(m, r0)} / {closed(m, r1)}", f"{p.head_share:.1%}"]
            for m, p in prior.items()]
    head = ["model", "best β", "val R@20 at β = " + ", ".join(f"{b:g}" for b in BETAS),
            "test R@20 before", "after", f"/ {ref} as tested: before → after",
            f"after / {ref} with its prior", f"gap to {ref} closed: as tested / with its prior",
            "head share of top-20 after"]
    return (table(head, rows) + f"\n\nbefore: as tested (β = 0); {ref} with its prior: test "
            f"R@20 {r1:.4f} at β = {prior[ref].beta:g}; gap closed: (after − before) / ({ref}'s "
            "− before), – where the model is not below it")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="the model table's --out (results.jsonl, fit/)")
    p.add_argument("--models", default="mf,ngcf,sage,gfcf", help="comma-separated")
    p.add_argument("--reference", default="lightgcn")
    p.add_argument("--cache-dir", default=None, help="override of the configs' data.cache_dir")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    with open(os.path.join(a.out, "results.jsonl")) as f:
        jsonl = {r["model"]: r for r in map(json.loads, filter(str.strip, f))}
    models = [a.reference] + [m for m in a.models.split(",") if m and m != a.reference]
    res, curves, gaps, prior = {}, {}, {}, {}
    for m in models:
        run_dir = os.path.join(a.out, "fit", m, RUN)
        module, dm = load_model(run_dir, a.cache_dir)
        split = TestSplit.of(dm.train_graph, dm.test_graph, dm.eval_user_ids(dm.test_graph))
        res[m] = rank(module, dm, split.users)
        prior[m] = fit_prior(scorer(module, dm)[0], dm, split, module.hparams.item_chunk_size)
        gaps[m] = exported_gap(run_dir, res[m].emb)
        with open(os.path.join(run_dir, "config.yaml")) as f:
            max_epochs = int(yaml.safe_load(f)["trainer"]["max_epochs"])
        curves[m] = (None if module.config.training_free   # one validation, no epochs
                     else summarize_curve(curve_from_events(run_dir), max_epochs))
    recall = {m: per_user_metrics(r.hits, split.num_test, (K,))[f"recall@{K}"]
              for m, r in res.items()}
    mean = {m: float(r.mean()) for m, r in recall.items()}
    print(f"# Table diagnosis of {a.out} against {a.reference}: {split.users.numel()} test users, "
          f"{split.item_deg.numel()} items, full ranking with train+valid masked\n")
    print("## 0. Check: test Recall@20 recomputed from the saved model\n\n"
          + report_check(jsonl, mean, gaps))
    print("\n## 1. Training curve: validation Recall@20 per epoch\n\n" + report_curves(curves))
    print("\n## 2. Where the model loses: test Recall@20 by user train degree (quartiles) and by "
          "held-out item popularity\n\n" + report_groups(split, res, recall, a.reference))
    print("\n## 3. Popularity of the top-20 lists (train degree of the items)\n\n"
          + report_popularity(split, res, a.reference))
    print("\n## 4. Embedding geometry (models scored by inner products of embed())\n\n"
          + report_geometry(split, res))
    print("\n## 5. What a popularity prior closes: z-scored per user + β log(1 + train degree), "
          "β picked on validation Recall@20\n\n" + report_prior(prior, mean, a.reference))
    return int(any(abs(jsonl[m]["test_recall@20"] - v) > 1e-3 for m, v in mean.items()))


if __name__ == "__main__":
    sys.exit(main())
