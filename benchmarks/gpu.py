"""Every GPU figure of the GPU issue section, one run of a few minutes; each part is guarded
(one failure still prints the others) and the run ends with one ``FIGURE name value unit goal
met|not met|n/a`` line per figure.

1. Time to test Recall@20 0.14 on amazon-book (KGAT split, no validation file): full-graph
   ``reelgraph.models.LightGCN`` (its plan's whole-graph CSR operator and ``GraphBatch``, BPR
   loss, uniform negatives of ``samplers/negative.py``), Adam, per ``--recipe``; test Recall@20
   by ``reelgraph.metrics.evaluate`` every epoch, off the training clock; a wall-clock cap.
2. ``evaluate`` of all test users at K 10/20/50, train items masked: warm-up, median of 3.
3. ``samplers.neighbor.neighbor_sample`` (without / with replacement) against a bare gather
   loop on a random 10M-node / 195M-edge CSR built on the device; fan-outs [15, 10, 5].
4. ``python -m reelgraph.distributed.train --gpu``, 1 worker, tiny synthetic world.

On the GPU machine, from the repository root::

    python benchmarks/gpu.py --data .devdata/amazon-book-kgat
    python benchmarks/gpu.py --smoke      # tiny sizes, on the CPU without CUDA (~1 min)
"""
from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from typing import Callable

import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
DEV_DATA = os.path.join(ROOT, ".devdata", "amazon-book-kgat")  # where the GPU machine has it
DATA = DEV_DATA if os.path.isdir(DEV_DATA) else os.path.join(ROOT, "..", "shared", "data",
                                                             "amazon-book-kgat")
SUBPACKAGES = ("samplers", "lightning_modules", "distributed", "tune")
DEADLINE_S = 330.0  # the Ray part gets what is left of this (the whole run must stay < 6 min)


def importable_checkout() -> str | None:
    """Makes ``reelgraph.samplers`` & co. importable from a checkout that was never
    ``pip install``-ed (pyproject maps the root folders into the package): a symlinked package
    tree in a temporary folder, put first on ``sys.path``. Returns that folder, or ``None``."""
    try:
        import reelgraph.samplers  # noqa: F401
        return None
    except ImportError:
        pass
    tmp = tempfile.mkdtemp(prefix="reelgraph-pkg-")
    pkg = os.path.join(tmp, "reelgraph")
    os.mkdir(pkg)
    for name in os.listdir(os.path.join(ROOT, "reelgraph")):
        os.symlink(os.path.join(ROOT, "reelgraph", name), os.path.join(pkg, name))
    for sub in SUBPACKAGES:
        os.symlink(os.path.join(ROOT, sub), os.path.join(pkg, sub))
    sys.path.insert(0, tmp)
    for name in [m for m in sys.modules if m.split(".")[0] == "reelgraph"]:
        del sys.modules[name]
    return tmp


# name -> (unit, goal); goal "-" when the issue gives only references. GraphLearn-for-PyTorch
# reports 32M edges/s per A100 (the sampling goal used); a bare gather loop did 1.46G on an H100.
FIGURES = {"amazon_book_time_to_recall20_0.14": ("s", "<=8"),
           "evaluation_full_ranking": ("s", "<=0.05"),
           "sampling_ours_edges_per_s": ("edges/s", ">=32e6"),
           "sampling_ours_replace_edges_per_s": ("edges/s", ">=32e6"),
           "sampling_bare_gather_edges_per_s": ("edges/s", "-"),
           "sampling_ratio_ours_over_bare": ("x", "-"),
           "ray_train_wall": ("s", "succeeds")}


def figure_line(name: str, got: tuple[float | None, bool | None] | None) -> str:
    """``FIGURE name value unit goal met|not met|n/a``; ``got`` None: the part failed."""
    unit, goal = FIGURES[name]
    if got is None:
        return f"FIGURE {name} n/a {unit} goal {goal} not measured"
    value, met = got
    ok = "n/a" if met is None else ("met" if met else "not met")
    return f"FIGURE {name} {'n/a' if value is None else f'{value:.4g}'} {unit} goal {goal} {ok}"


@dataclass(frozen=True)
class Recipe:
    batch_size: int   # positives per step
    negatives: int    # uniform negatives per positive
    lr: float         # Adam
    reg: float        # L2 on the batch's layer-0 rows
    decay: int = 0    # lr falls linearly to 0 over this many steps (0: constant)

    @classmethod
    def parse(cls, text: str) -> "Recipe":
        b, k, lr, reg, *decay = text.split(":")
        return cls(int(b), int(k), float(lr), float(reg), int(decay[0]) if decay else 0)

    def __str__(self) -> str:
        return (f"batch {self.batch_size} x {self.negatives} neg, lr {self.lr:g}, reg {self.reg:g}"
                + (f", linear decay over {self.decay} steps" if self.decay else ""))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(fn: Callable[[], object], device: torch.device) -> float:
    """Wall seconds of ``fn()``, the device synchronised before and after."""
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


# -- 1. amazon-book time to Recall@20 0.14 ---------------------------------------------------

def recall20(model, static, train, test, users, eval_batch: int) -> float:
    from reelgraph.metrics import evaluate
    with torch.no_grad():
        u, i = model.embed(static)
        return evaluate(u, i, train, test, ks=(20,), user_batch_size=eval_batch, auc=False,
                        users=users).means()["recall@20"]


def time_to_quality(store, train, test, recipe: Recipe, device: torch.device, target: float,
                    cap_s: float, users, eval_batch: int, eval_every: int | None):
    """Trains until test Recall@20 >= target (checked every ``eval_every`` steps, default one
    epoch) or ``cap_s`` wall seconds; returns ``(train seconds at target or None, best recall,
    train seconds at best, steps, model, static)``."""
    from reelgraph.models import LightGCNConfig
    from reelgraph.samplers.batch import BPRBatch
    from reelgraph.samplers.negative import uniform_negatives
    cfg = LightGCNConfig(embedding_dim=64, num_layers=3, reg_weight=recipe.reg)
    plan = cfg.plan()                                    # fanouts=None: the whole graph
    ctx, static = plan.context(store), plan.static(store, device)
    torch.manual_seed(0)
    model = cfg.build(store).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    decay = recipe.decay
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: max(0.0, 1 - t / decay) if decay else 1.0)
    edge_user, keys = train.users(), train.keys()        # [E] each; keys sorted
    E, I = train.num_edges, train.num_items
    eval_every = eval_every or -(-E // recipe.batch_size)

    def step(slots: torch.Tensor, update: bool = True) -> None:
        users_b = edge_user[slots]
        neg = uniform_negatives(users_b, keys, I, recipe.negatives)       # [B, k]
        batch = plan.sample(ctx, BPRBatch(users_b, train.col[slots], neg), None).bind(static)
        opt.zero_grad(set_to_none=True)
        model.loss(batch)["loss"].backward()
        if update:
            opt.step()
            sched.step()

    step(torch.arange(recipe.batch_size, device=device) % E, update=False)  # CUDA/cuSPARSE init
    recall20(model, static, train, test, users, eval_batch)                  # off the clock
    stream = (s for _ in itertools.count()
              for s in torch.randperm(E, device=device).split(recipe.batch_size))  # epochs
    clock, steps, best, wall0 = 0.0, 0, (0.0, 0.0), time.perf_counter()
    while time.perf_counter() - wall0 < cap_s:
        sync(device)
        t = time.perf_counter()
        for _ in range(eval_every):
            step(next(stream))
            steps += 1
            if time.perf_counter() - wall0 >= cap_s:
                break
        sync(device)
        clock += time.perf_counter() - t
        r = recall20(model, static, train, test, users, eval_batch)
        best = max(best, (r, clock))
        print(f"  {recipe}: step {steps:6d}  train {clock:7.2f} s ({1e3 * clock / steps:.2f} ms/"
              f"step)  R@20 {r:.4f}  wall {time.perf_counter() - wall0:.1f} s", flush=True)
        if r >= target:
            return clock, r, clock, steps, model, static
    return None, best[0], best[1], steps, model, static


# -- 2. evaluation -----------------------------------------------------------------------------

def time_evaluation(user_emb, item_emb, train, test, batch_sizes: list[int], users, device
                    ) -> dict[int, float]:
    """Median seconds of 3 full-ranking evaluations (after a warm-up) per user batch size."""
    from reelgraph.metrics import evaluate
    out = {}
    for b in batch_sizes:
        run = lambda: evaluate(user_emb, item_emb, train, test, ks=(10, 20, 50),  # noqa: E731
                               user_batch_size=b, auc=False, users=users)
        res = run().means()
        out[b] = statistics.median(seconds(run, device) for _ in range(3))
        print(f"  user batch {b}: {out[b]:.4f} s  (R@20 {res['recall@20']:.4f}, "
              f"N@20 {res['ndcg@20']:.4f}, R@50 {res['recall@50']:.4f})", flush=True)
    return out


# -- 3. neighbour sampling ---------------------------------------------------------------------

def random_csr(num_nodes: int, num_edges: int, device: torch.device) -> tuple:
    """``rowptr [N + 1]`` int64 from sorted random cut points, ``col [E]`` int64 uniform."""
    g = torch.Generator(device).manual_seed(0)
    cuts = torch.randint(0, num_edges + 1, (num_nodes - 1,), device=device, generator=g).sort()[0]
    ends = torch.tensor([0, num_edges], device=device)
    rowptr = torch.cat([ends[:1], cuts, ends[1:]])
    return rowptr, torch.randint(0, num_nodes, (num_edges,), device=device, generator=g)


def bare_gather(rowptr, col, seeds, fanouts: list[int]) -> int:
    """Uniform with replacement, every draw expanded next hop (no de-duplication, no host
    sync); a row without neighbours reads a neighbouring slot (~0 such rows here)."""
    frontier, edges = seeds, 0
    for k in fanouts:
        start = rowptr[frontier].unsqueeze(1)                               # [S, 1]
        deg = rowptr[frontier + 1].unsqueeze(1) - start
        off = (torch.rand(frontier.numel(), k, device=seeds.device) * deg).long()   # [S, k]
        frontier = col[(start + off).clamp_(max=col.numel() - 1).flatten()]  # [S * k]
        edges += frontier.numel()
    return edges


def sampler_rate(fn: Callable, seed_batches: list, warmup: int, device: torch.device) -> tuple:
    """``(edges/s, ms/batch)`` of ``fn(seeds) -> edges`` over the batches after ``warmup``."""
    for s in seed_batches[:warmup]:
        fn(s)
    edges = []
    dt = seconds(lambda: edges.extend(fn(s) for s in seed_batches[warmup:]), device)
    return sum(edges) / dt, 1e3 * dt / len(edges)


def sampling(num_nodes: int, num_edges: int, batch: int, fanouts: list[int], warmup: int,
             timed: int, device: torch.device) -> dict[str, float]:
    from reelgraph.samplers.neighbor import neighbor_sample
    rowptr, col = random_csr(num_nodes, num_edges, device)
    print(f"  graph: {num_nodes:,} nodes, {num_edges:,} edges on {device}", flush=True)
    g = torch.Generator(device).manual_seed(1)
    seed_batches = [torch.unique(torch.randint(0, num_nodes, (batch,), device=device, generator=g))
                    for _ in range(warmup + timed)]
    rates = {}
    ours = lambda replace: lambda s: sum(neighbor_sample(  # noqa: E731
        rowptr, col, s, fanouts=fanouts, replace=replace).num_sampled_edges)
    for name, fn in (("ours", ours(False)), ("ours_replace", ours(True)),
                     ("bare", lambda s: bare_gather(rowptr, col, s, fanouts))):
        rates[name], ms = sampler_rate(fn, seed_batches, warmup, device)
        print(f"  {name:13s} {rates[name] / 1e6:9.1f}M edges/s  {ms:7.2f} ms/batch", flush=True)
    return rates


# -- 4. Ray Train ------------------------------------------------------------------------------

RAY_YAML = """seed_everything: 0
trainer: {{max_epochs: 2, logger: false, enable_progress_bar: false,
           enable_model_summary: false, default_root_dir: {tmp}/runs}}
model:
  model: {{class_path: reelgraph.models.LightGCNConfig, init_args: {{embedding_dim: 32}}}}
  lr: 0.01
  ks: [20]
data: {{data: "synthetic:tiny", cache_dir: {tmp}/cache, batch_size: 256, num_negatives: 4}}
"""


def ray_train(gpu: bool, timeout: float, pkg_dir: str | None) -> tuple[bool, float, str]:
    """``(succeeded, wall seconds, last lines)`` of one tiny Ray Train run, 1 worker."""
    tmp = tempfile.mkdtemp(prefix="reelgraph-ray-")
    cfg = os.path.join(tmp, "ray.yaml")
    with open(cfg, "w") as f:
        f.write(RAY_YAML.format(tmp=tmp))
    cmd = [sys.executable, "-m", "reelgraph.distributed.train", "--config", cfg,
           "--num-workers", "1", "--storage-path", os.path.join(tmp, "ray"), "--name", "gpu-bench"]
    env = dict(os.environ)
    if pkg_dir:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [pkg_dir, env.get("PYTHONPATH")]))
    t = time.perf_counter()
    proc = subprocess.Popen(cmd + (["--gpu"] if gpu else []), cwd=tmp, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)                     # the run's own process group only
        out, _ = proc.communicate()
        out += f"\n[timed out after {timeout:.0f} s]"
    wall = time.perf_counter() - t
    shutil.rmtree(tmp, ignore_errors=True)
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", x)[:400] for x in out.splitlines()
             if "State API may be temporarily unavailable" not in x]
    return proc.returncode == 0 and "FINAL " in out, wall, "\n".join(lines[-8:])


# -- main --------------------------------------------------------------------------------------

def guarded(title: str, fn: Callable[[], None]) -> None:
    print(f"\n== {title}", flush=True)
    try:
        fn()
    except Exception:
        print("  FAILED:\n" + "".join(traceback.format_exc().splitlines(True)[-12:]), flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DATA, help="the amazon-book-kgat folder")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda if available")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, to test the script on a CPU")
    p.add_argument("--parts", default="1234", help="which parts to run (default 1234)")
    p.add_argument("--recipe", action="append", metavar="BATCH:NEG:LR:REG[:DECAY]", help="part 1, "
                   "repeatable (default 65536:8:0.04:1e-3 and 8192:8:5e-3:1e-4; smoke: the first)")
    p.add_argument("--cap", type=float, help="wall seconds per recipe (75; smoke 6)")
    p.add_argument("--eval-every", type=int, help="steps (default one epoch; smoke 3)")
    p.add_argument("--ray-timeout", type=float, default=120.0)
    a = p.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available here")
    pkg_dir = importable_checkout()
    if pkg_dir:
        print(f"reelgraph is not installed: imported from this checkout through {pkg_dir}")
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    smoke, gpu = a.smoke, device.type == "cuda"
    recipes = [Recipe.parse(r) for r in (a.recipe or ["65536:8:0.04:1e-3", "8192:8:5e-3:1e-4"])]
    recipes = recipes if a.recipe or not smoke else recipes[:1]
    cap, eval_every = a.cap or (6.0 if smoke else 75.0), a.eval_every or (3 if smoke else None)
    t0, figs, state = time.perf_counter(), {}, {}
    name = torch.cuda.get_device_name(device) if gpu else f"CPU, {torch.get_num_threads()} threads"
    print(f"{' '.join(sys.argv)}\ndevice {device} ({name}), torch {torch.__version__}"
          f"{', smoke sizes' if smoke else ''}", flush=True)

    def part1() -> None:
        from reelgraph.data.sources import open_store
        store = open_store(a.data)
        train, test = store.graph("train").to(device), store.graph("test").to(device)
        deg = test.rowptr[1:] - test.rowptr[:-1]
        users = torch.nonzero(deg > 0).flatten()[: 2048 if smoke else None]  # smoke: a subset
        state.update(train=train, test=test, users=users)
        print(f"  {store.num_users:,} users, {store.num_items:,} items, {train.num_edges:,} "
              f"train edges; evaluating {users.numel():,} test users", flush=True)
        done = []
        for r in recipes:
            reached, best, best_t, steps, model, static = time_to_quality(
                store, train, test, r, device, 0.14, cap, users, 1024 if smoke else 32768,
                eval_every)
            done += [] if reached is None else [reached]
            print(f"  {r}: " + (f"R@20 0.14 reached in {reached:.2f} s of training"
                                if reached is not None else f"not reached, best R@20 {best:.4f} "
                                f"at {best_t:.1f} s") + f" ({steps} steps)", flush=True)
            state["emb"] = [t.detach() for t in model.embed(static)]
        first = min(done, default=None)
        figs["amazon_book_time_to_recall20_0.14"] = (first, first is not None and first <= 8)

    def part2() -> None:
        train, test = state["train"], state["test"]     # KeyError: part 1 did not load the data
        emb = state.get("emb") or [torch.randn(n, 64, device=device)
                                   for n in (train.num_users, train.num_items)]
        sizes = [512, 2048] if smoke else [8192, 32768, train.num_users]
        times = time_evaluation(*emb, train, test, sizes, state["users"] if smoke else None, device)
        figs["evaluation_full_ranking"] = (min(times.values()), min(times.values()) <= 0.05)

    def part3() -> None:
        n, e, b = (100_000, 1_950_000, 256) if smoke else (10_000_000, 195_000_000, 4096)
        rates = sampling(n, e, b, [15, 10, 5], 1 if smoke else 3, 2 if smoke else 20, device)
        for key in ("ours", "ours_replace"):
            figs[f"sampling_{key}_edges_per_s"] = (rates[key], rates[key] >= 32e6)
        figs["sampling_bare_gather_edges_per_s"] = (rates["bare"], None)
        figs["sampling_ratio_ours_over_bare"] = (rates["ours"] / rates["bare"], None)
        if gpu:
            print(f"  peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")

    def part4() -> None:
        try:
            import ray  # noqa: F401
        except ImportError:
            print("  ray: not installed, skipped")
            figs["ray_train_wall"] = (None, None)
            return
        timeout = max(30.0, min(a.ray_timeout, DEADLINE_S - (time.perf_counter() - t0)))
        ok, wall, tail = ray_train(gpu, timeout, pkg_dir)
        print(f"  {'--gpu' if gpu else 'CPU (no CUDA: without --gpu)'}: "
              f"{'succeeded' if ok else 'FAILED'} in {wall:.1f} s; last lines:\n{tail}", flush=True)
        figs["ray_train_wall"] = (wall, ok)

    if "1" in a.parts or "2" in a.parts:  # part 2 ranks with part 1's embeddings
        guarded("1. amazon-book: time to test Recall@20 0.14 (full-graph LightGCN)", part1)
    if "2" in a.parts:
        guarded("2. evaluation: all test users, K 10/20/50, train items masked", part2)
    state.clear()
    for key, title, part in (("3", "3. neighbour sampling, fan-outs [15, 10, 5]", part3),
                             ("4", f"4. Ray Train{' --gpu' if gpu else ''} (1 worker, tiny world)",
                              part4)):
        if gpu:
            torch.cuda.empty_cache()
        if key in a.parts:
            guarded(title, part)
    print(f"\n== summary ({device}{', smoke' if smoke else ''}; "
          f"{time.perf_counter() - t0:.0f} s in all)")
    for name in FIGURES:
        part = {"amazon": "1", "evaluat": "2", "sampling": "3", "ray": "4"}[
            next(k for k in ("amazon", "evaluat", "sampling", "ray") if name.startswith(k))]
        if part in a.parts:
            print(figure_line(name, figs.get(name)))


if __name__ == "__main__":
    main()
