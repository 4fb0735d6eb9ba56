"""Time to quality against RecBole (issue 18): RecBole 1.2.1's LightGCN and ours, same split,
same thread count, one after the other in one invocation.

1. RecBole trains ``--recbole-epochs`` epochs (default 10) through the peer harness
   ``../shared/peers/recbole/run.py``, in its own virtual environment under ``--peer-work``
   (made there on first use, as ``../shared/peers/recbole/README.md`` section 1 says), evaluating
   after every epoch. Its Recall@20 after the last epoch is the **target**.
2. Ours trains through ``benchmarks/amazon_book.py`` (the product path) once per ``--arms`` entry,
   evaluating every ``--eval-interval`` of an epoch, until Recall@20 reaches the target or
   ``--max-minutes`` runs out:
   - ``recipe``: our recipe (batch 8192, 8 uniform negatives, lr 5e-3);
   - ``recbole-settings``: RecBole's shipped settings mapped onto ours (batch 2048, 1 negative,
     lr 1e-3), so the two arms show what the recipe gives and what the engine gives.
   Both arms: L2 1e-4, dim 64, 3 layers, the same ``--threads``.

Each side runs as a child process. Printed per side: seconds per training epoch, seconds per full
evaluation, peak RSS of the child's process tree (``os.wait4``), Recall@20/NDCG@20 per
evaluation, and the training seconds to the target with the ratio RecBole / ours, twice:

- **at matched points** (the goal verdict): ours looked at only on RecBole's grid, whole epochs,
  so neither side gains from evaluating more often. An evaluation of ours counts when it ends an
  epoch: at a whole epoch, or, when the batches do not split into ``--eval-interval`` evenly, the
  epoch's last evaluation (Lightning evaluates every ``int(steps * interval)`` batches from each
  epoch's start: with 319 batches and 0.25, after 316); its seconds are then scaled up to the
  whole epoch (``train_s * k / epoch``), so ours is charged the batches it had not trained;
- **fine-grained** (extra): ours at every ``--eval-interval`` epoch, a finer grain than
  RecBole's.

Both sides count training seconds only: RecBole's are its ``_train_epoch`` times, ours stop at
each validation's start and resume at its end, so evaluation time (ours runs 1/interval times as
many) is excluded on both sides alike. An arm stops at its first epoch-ending evaluation at or
above the target (``amazon_book.py --target-recall --stop-at-epoch-end``), so both figures are
observed: the fine-grained one at the first evaluation at or above it, the matched one there. Then a Markdown table of the issue's goals (time to
target <= 1/30 of RecBole's, matched and fine-grained; evaluation <= 1/5; peak RSS no higher).

    python benchmarks/vs_recbole.py --peer-work /work/peer-work --threads 2 \\
        --recbole-epochs 10 --arms recipe,recbole-settings --max-minutes 30 --eval-interval 0.25

``--data`` takes any folder of LightGCN-format ``train.txt``/``test.txt`` (default: the
amazon-book KGAT split). ``--recbole-json`` reuses an earlier RecBole summary (the peer's
``--json``, kept in ``--peer-work``) instead of training RecBole again.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "..", "shared", "data", "amazon-book-kgat")
PEER = os.path.join(ROOT, "..", "shared", "peers", "recbole")
PEER_PINS = ["torch==2.13.0", "recbole==1.2.1", "numpy<2", "scipy<1.13", "pandas<3"]
ARMS = {"recipe": {"batch_size": 8192, "negatives": 8, "lr": 5e-3},
        "recbole-settings": {"batch_size": 2048, "negatives": 1, "lr": 1e-3}}
GOALS = {"time": 30.0, "eval": 5.0, "rss": 1.0}  # RecBole / ours must be at least this
EPS = 1e-9  # epochs: steps / steps per epoch is exact at whole epochs; this absorbs rounding


# ---------------------------------------------------------------- pure parts (tested)

def _fields(line: str) -> dict[str, str]:
    return dict(re.findall(r"(\S+?)=(\S+)", line))


def parse_peer_output(lines: list[str]) -> dict:
    """The peer's ``SUMMARY`` object, or one rebuilt from its ``EPOCH``/``EVAL`` lines when the
    run ended before printing it. Each eval gets ``train_s``: training seconds up to it."""
    for line in reversed(lines):
        if line.startswith("SUMMARY "):
            out = json.loads(line[len("SUMMARY "):])
            break
    else:
        epochs = [_fields(x) for x in lines if x.startswith("EPOCH ")]
        evals = [_fields(x) for x in lines if x.startswith("EVAL ")]
        out = {"epochs": [{"epoch": int(e["e"]), "train_s": float(e["train_s"])} for e in epochs],
               "evals": [{"epoch": int(e["e"]), "eval_s": float(e["eval_s"]),
                          "recall@20": float(e["recall@20"]), "ndcg@20": float(e["ndcg@20"])}
                         for e in evals], "peak_rss_mib": None}
    train = {e["epoch"]: e["train_s"] for e in out["epochs"]}
    for ev in out["evals"]:
        ev["train_s"] = sum(t for e, t in train.items() if e <= ev["epoch"])
    return out


def epoch_end_tail(steps_per_epoch: int | None, interval: float | None) -> float:
    """The fraction of an epoch after its last evaluation: Lightning's ``val_check_interval`` < 1
    evaluates every ``int(steps * interval)`` batches counted from each epoch's start (319 batches,
    0.25: after 79, 158, 237, 316; tail 3/319). 0 when evaluating at epoch ends."""
    if not steps_per_epoch or not interval or interval >= 1:
        return 0.0
    every = max(1, int(steps_per_epoch * interval))
    return (steps_per_epoch % every) / steps_per_epoch


def time_to_target_s(evals: list[dict], target: float, *, whole_epochs: bool = False,
                     tail: float = 0.0) -> float | None:
    """Training seconds to the first evaluation whose Recall@20 is at least ``target``
    (``None``: none is).

    Args:
        evals: ``{"epoch", "train_s", "recall@20", ...}`` in training order; ``epoch`` may be
            fractional, ``train_s`` is the training time up to it.
        whole_epochs: look only at evaluations that end an epoch (RecBole's grid): at a whole
            epoch ``k``, or at most ``tail`` epochs before it; the latter's seconds are scaled up
            to the whole epoch, ``train_s * k / epoch`` (default ``False``: every evaluation).
        tail: see ``epoch_end_tail`` (default 0).
    """
    for e in evals:
        if e["recall@20"] < target:
            continue
        if not whole_epochs:
            return e["train_s"]
        k = math.ceil(e["epoch"] - EPS)  # the epoch this evaluation falls in
        if k >= 1 and k - e["epoch"] <= tail + EPS:
            return e["train_s"] * k / e["epoch"]
    return None


def arm_tail(report: dict) -> float:
    """``epoch_end_tail`` of an ``amazon_book.py --json`` report."""
    return epoch_end_tail(report.get("steps_per_epoch"),
                          report.get("settings", {}).get("val_check_interval"))


def arm_times(report: dict, target: float) -> tuple[float | None, float | None]:
    """(matched, fine-grained) training seconds to ``target`` of one side's report."""
    return (time_to_target_s(report["evals"], target, whole_epochs=True, tail=arm_tail(report)),
            time_to_target_s(report["evals"], target))


def mean(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def time_row(goal: str, rb_s: float, reached: dict[str, float | None], unseen: str) -> tuple:
    """``(goal, RecBole, ours, ratio, met)`` for the fastest arm of ``reached`` (name: seconds)."""
    hits = {n: t for n, t in reached.items() if t is not None}
    if not hits:
        return goal, f"{rb_s:.1f} s", unseen, None, False
    best = min(hits, key=hits.get)
    ratio = rb_s / max(hits[best], 1e-9)
    return goal, f"{rb_s:.1f} s", f"{hits[best]:.1f} s ({best})", ratio, ratio >= GOALS["time"]


def goal_rows(recbole: dict, arms: dict[str, dict], target: float) -> list[tuple]:
    """``(goal, RecBole, ours, ratio, met)`` per issue goal; ours = the fastest arm to the target
    (matched whole-epoch points: the verdict; every evaluation: extra), the mean evaluation over
    all arms, the highest peak RSS over all arms."""
    rb_s = time_to_target_s(recbole["evals"], target, whole_epochs=True)
    times = {n: arm_times(r, target) for n, r in arms.items()}
    unseen = "not observed" if any(f is not None for _, f in times.values()) else "not reached"
    goal = f"reach RecBole's Recall@20 {target:.4f} in <= 1/{GOALS['time']:g} of its time"
    rows = [time_row(f"{goal}, matched: whole epochs both sides (the verdict)", rb_s,
                     {n: m for n, (m, _) in times.items()}, unseen),
            time_row(f"{goal}, fine: ours at every evaluation (extra, not the verdict)", rb_s,
                     {n: f for n, (_, f) in times.items()}, "not reached")]
    rb_eval = mean(e["eval_s"] for e in recbole["evals"])
    our_eval = mean(e["eval_s"] for r in arms.values() for e in r["evals"])
    goal = f"evaluation <= 1/{GOALS['eval']:g} of RecBole's"
    if our_eval is None:
        rows.append((goal, f"{rb_eval:.2f} s", "no evaluation ran", None, False))
    else:
        rows.append((goal, f"{rb_eval:.2f} s", f"{our_eval:.2f} s", rb_eval / our_eval,
                     rb_eval / our_eval >= GOALS["eval"]))
    rb_rss, our_rss = recbole["peak_rss_mib"], max(r["peak_rss_mib"] for r in arms.values())
    rows.append(("peak RSS no higher", f"{rb_rss:.0f} MiB", f"{our_rss:.0f} MiB",
                 rb_rss / our_rss, rb_rss / our_rss >= GOALS["rss"]))
    return rows


def goal_table(rows: list[tuple]) -> str:
    out = ["| goal | RecBole | ReelGraph | RecBole / ours | |", "|---|---|---|---|---|"]
    for goal, rb, ours, ratio, met in rows:
        r = "–" if ratio is None else f"{ratio:.2f}×"
        out.append(f"| {goal} | {rb} | {ours} | {r} | {'met' if met else 'not met'} |")
    return "\n".join(out)


# ---------------------------------------------------------------- child processes

def run_child(cmd: list[str], tag: str, cwd: str,
              threads: int) -> tuple[list[str], int, float, float]:
    """Runs ``cmd``, echoing its output prefixed by ``tag``; returns (lines, exit code, peak RSS
    of its process tree in MiB, wall seconds)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads)}
    print(f"[{tag}] $ {' '.join(cmd)}", flush=True)
    t0, lines = time.perf_counter(), []
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        print(f"[{tag}] {lines[-1]}", flush=True)
    _, status, usage = os.wait4(proc.pid, 0)  # rusage of the child and its reaped descendants
    proc.returncode = os.waitstatus_to_exitcode(status)
    return lines, proc.returncode, usage.ru_maxrss / 1024, time.perf_counter() - t0


def peer_python(work: str) -> str:
    """The peer venv's python, made as the peer README's section 1 says if missing."""
    py = os.path.join(work, "venv", "bin", "python")
    if not os.path.exists(py):
        subprocess.run(["python3", "-m", "venv", os.path.join(work, "venv")], check=True)
    if subprocess.run([py, "-c", "import recbole"], capture_output=True).returncode != 0:
        pip = os.path.join(work, "venv", "bin", "pip")
        subprocess.run([pip, "install", *PEER_PINS], check=True)
    return py


def peer_data(py: str, data: str, work: str) -> tuple[str, str]:
    """RecBole atomic files of ``data`` under ``work/data`` (converted when missing or older
    than the source); returns (data_path, dataset name)."""
    data = os.path.abspath(data)
    name = f"{os.path.basename(data)}-{hashlib.sha1(data.encode()).hexdigest()[:6]}"
    out = os.path.join(work, "data")
    done = os.path.join(out, name, f"{name}.test.inter")
    sources = [os.path.join(data, f) for f in ("train.txt", "test.txt")]
    if not os.path.exists(done) or os.path.getmtime(done) < max(map(os.path.getmtime, sources)):
        subprocess.run([py, os.path.join(PEER, "to_atomic.py"), "--train", sources[0],
                        "--test", sources[1], "--name", name, "--out", out], check=True)
    return out, name


def run_recbole(a: argparse.Namespace) -> dict:
    py = peer_python(a.peer_work)
    data_path, name = peer_data(py, a.data, a.peer_work)
    keep = os.path.join(a.peer_work, f"recbole-{name}-{a.recbole_epochs}ep-{a.threads}t.json")
    cmd = [py, os.path.join(PEER, "run.py"), "--data-path", data_path, "--dataset", name,
           "--workdir", os.path.join(a.peer_work, "work"), "--epochs", str(a.recbole_epochs),
           "--eval-step", "1", "--threads", str(a.threads), "--json", keep]
    lines, rc, rss, wall = run_child(cmd, "recbole", a.peer_work, a.threads)
    out = parse_peer_output(lines)
    if rc != 0 or not out["evals"]:
        sys.exit(f"RecBole's run failed (exit {rc}); its output is above")
    out["peak_rss_mib"], out["wall_s"] = rss, wall  # the process tree's, not only the peer's own
    print(f"RecBole summary kept in {keep} (reuse: --recbole-json {keep})")
    return out


def run_arm(a: argparse.Namespace, arm: str, target: float) -> dict:
    s = ARMS[arm]
    out = os.path.join(a.peer_work, f"reelgraph-{arm}.json")
    every = (["--val-check-interval", str(a.eval_interval)] if a.eval_interval < 1
             else ["--eval-every", str(int(a.eval_interval))])
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "amazon_book.py"), "--model",
           "lightgcn", "--data", os.path.abspath(a.data), "--epochs", "100000", *every,
           "--batch-size", str(s["batch_size"]), "--negatives", str(s["negatives"]),
           "--lr", repr(s["lr"]), "--threads", str(a.threads), "--max-minutes", str(a.max_minutes),
           "--target-recall", repr(target), "--stop-at-epoch-end", "--no-propagation-ratio",
           "--json", out]
    if os.path.exists(out):
        os.remove(out)
    lines, rc, rss, wall = run_child(cmd, arm, ROOT, a.threads)
    if rc != 0 or not os.path.exists(out):
        sys.exit(f"ReelGraph arm {arm!r} failed (exit {rc}); its output is above")
    with open(out) as f:
        report = json.load(f)
    report["peak_rss_mib"], report["wall_s"] = rss, wall
    return report


# ---------------------------------------------------------------- report

def print_curve(name: str, evals: list[dict]) -> None:
    print(f"\n{name}: per evaluation\n   epoch   train s  recall@20  ndcg@20   eval s")
    for e in evals:
        print(f"{e['epoch']:8.2f}  {e['train_s']:8.1f}  {e['recall@20']:9.4f}  "
              f"{e['ndcg@20']:7.4f}  {e['eval_s']:7.2f}")


def _to(seconds: float | None, rb_s: float, missing: str) -> str:
    """A ``to target`` cell and its ``RecBole/ours`` cell, 14 + 10 wide."""
    if seconds is None:
        return f"{missing:>14}{'–':>10}"
    return f"{seconds:13.1f}s{rb_s / max(seconds, 1e-9):10.2f}"


def print_report(recbole: dict, arms: dict[str, dict], target: float, threads: int) -> None:
    rb_s = mean(e["train_s"] for e in recbole["epochs"])
    rb_hit = time_to_target_s(recbole["evals"], target, whole_epochs=True)
    print_curve("RecBole 1.2.1 LightGCN", recbole["evals"])
    for name, r in arms.items():
        print_curve(f"ReelGraph LightGCN, arm {name} {ARMS[name]}", r["evals"])
    print(f"\nTarget: RecBole's Recall@20 after {recbole['evals'][-1]['epoch']} epochs = {target:.4f}; "
          f"{threads} threads each side; times are training seconds, evaluation excluded on both "
          f"sides;\nmatched = ours only at evaluations ending a whole epoch, as RecBole's (the goal "
          f"verdict); fine = ours at every evaluation (extra)\n")
    print(f"{'side':<28}{'s/epoch':>9}{'s/eval':>8}{'peak RSS MiB':>14}{'matched':>14}"
          f"{'RecBole/':>10}{'fine':>14}{'RecBole/':>10}{'wall s':>9}")
    print(f"{'':<59}{'to target':>14}{'ours':>10}{'to target':>14}{'ours':>10}")
    print(f"{'RecBole 1.2.1':<28}{rb_s:9.1f}{mean(e['eval_s'] for e in recbole['evals']):8.2f}"
          f"{recbole['peak_rss_mib']:14.0f}{_to(rb_hit, rb_hit, '')}{_to(rb_hit, rb_hit, '')}"
          f"{recbole.get('wall_s', recbole.get('total_s', float('nan'))):9.0f}")
    for name, r in arms.items():
        matched, fine = arm_times(r, target)
        print(f"{'ReelGraph ' + name:<28}{r['train_s_per_epoch'] or 0:9.1f}{r['eval_s_mean'] or 0:8.2f}"
              f"{r['peak_rss_mib']:14.0f}{_to(matched, rb_hit, 'not observed' if fine else 'not reached')}"
              f"{_to(fine, rb_hit, 'not reached')}{r['wall_s']:9.0f}")
    print("\n" + goal_table(goal_rows(recbole, arms, target)))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DATA, help="folder of LightGCN-format train.txt/test.txt "
                   "(default: ../shared/data/amazon-book-kgat)")
    p.add_argument("--peer-work", default=os.environ.get("PEER_WORK"),
                   help="scratch folder outside the repository for RecBole's venv, converted data "
                        "and logs, and the JSON summaries (default: $PEER_WORK)")
    p.add_argument("--recbole-epochs", type=int, default=10,
                   help="RecBole's epoch budget; its Recall@20 after it is the target (default 10)")
    p.add_argument("--recbole-json", default=None,
                   help="reuse this RecBole summary (run.py --json) instead of training RecBole")
    p.add_argument("--arms", default="recipe,recbole-settings",
                   help=f"comma-separated ReelGraph arms, from {list(ARMS)} (default: both)")
    p.add_argument("--threads", type=int, default=2, help="torch threads, both sides (default 2)")
    p.add_argument("--max-minutes", type=float, default=30.0,
                   help="training budget of each ReelGraph arm, evaluations included (default 30)")
    p.add_argument("--eval-interval", type=float, default=0.25,
                   help="ReelGraph evaluates every this many epochs (< 1: inside an epoch; "
                        "default 0.25)")
    a = p.parse_args(argv)
    if not a.peer_work:
        p.error("--peer-work (or $PEER_WORK) is required: a scratch folder outside the repository")
    a.peer_work, arms = os.path.abspath(a.peer_work), a.arms.split(",")
    if unknown := [x for x in arms if x not in ARMS]:
        p.error(f"--arms: unknown {unknown}; choose from {list(ARMS)}")
    a.arms = arms
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    os.makedirs(a.peer_work, exist_ok=True)
    if a.recbole_json:
        with open(a.recbole_json) as f:
            recbole = parse_peer_output(["SUMMARY " + json.dumps(json.load(f))])
    else:
        recbole = run_recbole(a)
    target = recbole["evals"][-1]["recall@20"]
    print(f"\nTarget Recall@20 = {target:.6f} (RecBole after {recbole['evals'][-1]['epoch']} epochs)",
          flush=True)
    arms = {arm: run_arm(a, arm, target) for arm in a.arms}
    print_report(recbole, arms, target, a.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
