"""Seed sweep of the suite's quality tests: every ``above(name, ratio, bound)`` ratio, per seed.

Each quality test asserts a ratio from one short fit (``tests/conftest.py``: ``above``). This
reruns those tests with ``--fit-seed k`` for each seed, records every ratio (pass or fail), and
prints per ratio its bound, min / median / max over the seeds and the margin of the worst seed
over the bound (``min / bound - 1``). A bound is honest when that margin is at least the
``--min-margin`` (3% by default) on every machine it runs on.

    python benchmarks/quality_bounds.py --seeds 0 1 2 3 4 5
    ATEN_CPU_CAPABILITY=avx2 python benchmarks/quality_bounds.py --seeds 0   # another float path
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUALITY = "short_fit or short_sampled_fit or training_beats_most_popular"  # the tests that call `above`


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    p.add_argument("-k", default=QUALITY, help=f"pytest -k expression (default {QUALITY!r})")
    p.add_argument("--min-margin", type=float, default=0.03,
                   help="worst seed's margin over its bound below which a row is flagged")
    p.add_argument("--out", default=None, help="keep the JSON-lines record here")
    args = p.parse_args()

    record = args.out or tempfile.mktemp(suffix=".jsonl")
    for seed in args.seeds:
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", args.k,
               "tests", f"--fit-seed={seed}", f"--fit-record={record}"]
        rc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL).returncode
        print(f"seed {seed}: pytest rc {rc}", flush=True)

    rows: dict[tuple[str, str], dict] = defaultdict(lambda: dict(ratios={}, bound=None))
    with open(record) as f:
        for line in f:
            r = json.loads(line)
            row = rows[(r["test"], r["name"])]
            row["ratios"][r["seed"]] = r["ratio"]
            row["bound"] = r["bound"]

    print(f"\n{'test :: ratio':<88} {'bound':>6} {'min':>7} {'median':>7} {'max':>7} "
          f"{'margin':>7}  seeds")
    flagged = 0
    for (test, name), row in sorted(rows.items()):
        vals = [row["ratios"][s] for s in sorted(row["ratios"])]
        lo, margin = min(vals), min(vals) / row["bound"] - 1
        flag = "  <-- below --min-margin" if margin < args.min_margin else ""
        flagged += bool(flag)
        short = test.split("/")[-1]
        print(f"{short + ' :: ' + name:<88} {row['bound']:>6.2f} {lo:>7.3f} "
              f"{statistics.median(vals):>7.3f} {max(vals):>7.3f} {margin:>+7.1%}  "
              f"{len(vals)}{flag}")
    print(f"\n{len(rows)} ratios, {flagged} with the worst seed under {args.min_margin:.0%} "
          f"above its bound; record: {record}")
    return 1 if flagged else 0


if __name__ == "__main__":
    raise SystemExit(main())
