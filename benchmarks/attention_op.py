"""A2BM2GL's eq. 6 attention step, forward + backward, in two forms, timed in one process:

- ``gathered``: the neighbours' rows gathered as ``[R, n, d]``, eq. 6's logits on them
  (:func:`~reelgraph.models.a2bm2gl_attention.attention_weights`) and the weighted sum
  ``(a[..., None] * x[index]).sum(1)``: the model's form before this benchmark;
- ``table``: :func:`~reelgraph.models.a2bm2gl_attention.attend`, one logit term per row of the
  table and a sparse product (:func:`~reelgraph.graph.gather_weighted_sum`), no ``[R, n, d]``.

The shape defaults to the model table's synthetic world at d = 320 (10,000 nodes, top 16 of the
random surf); ``--rows 4000`` is one modality's item kNN layer. The two forms run in turns; the
figures are per-step medians and their ratio, and the largest difference of the outputs.

    python3 benchmarks/attention_op.py --threads 2
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from reelgraph.models.a2bm2gl_attention import attend, attention_weights


def inputs(rows: int, table: int, n: int, d: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    h = (0.1 * torch.randn(rows, d, generator=gen)).requires_grad_()
    x = (0.1 * torch.randn(table, d, generator=gen)).requires_grad_()
    att = torch.randn(2 * d, generator=gen).requires_grad_()
    index = torch.randint(0, table, (rows, n), generator=gen)
    mask = torch.rand(rows, n, generator=gen) < 0.95
    prior = torch.rand(rows, n, generator=gen) * mask
    prior = prior / prior.sum(1, keepdim=True).clamp(min=1e-30)
    return h, x, att, index, mask, prior


def gathered(h, x, att, index, mask, prior):
    nbr = x[index]                                                            # [R, n, d]
    return (attention_weights(h, nbr, mask, att, prior).unsqueeze(-1) * nbr).sum(1)


def table(h, x, att, index, mask, prior):
    return attend(h, x, index, mask, att, prior)


def step(form, args) -> tuple[float, torch.Tensor]:
    h, x, att = args[:3]
    start = time.perf_counter()
    out = form(*args)
    out.square().sum().backward()
    took = time.perf_counter() - start
    for t in (h, x, att):
        t.grad = None
    return took, out.detach()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=10_000, help="rows attending (R)")
    p.add_argument("--table", type=int, default=10_000, help="rows of the neighbours' table (T)")
    p.add_argument("--top-n", type=int, default=16, help="neighbours per row (n)")
    p.add_argument("--dim", type=int, default=320, help="embedding width (d)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    args = inputs(a.rows, a.table, a.top_n, a.dim)
    times = {"gathered": [], "table": []}
    outs = {}
    for r in range(a.repeats + 1):  # the first round warms up
        for name, form in (("gathered", gathered), ("table", table)):
            took, outs[name] = step(form, args)
            if r:
                times[name].append(took)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"R={a.rows} T={a.table} n={a.top_n} d={a.dim} threads={a.threads}, "
          f"forward + backward, median of {a.repeats}:")
    for k, v in times.items():
        print(f"  {k:9s} {med[k] * 1e3:8.1f} ms  (min {min(v) * 1e3:.1f}, max {max(v) * 1e3:.1f})")
    print(f"  gathered / table: {med['gathered'] / med['table']:.2f}x; "
          f"max |difference| of the outputs {(outs['gathered'] - outs['table']).abs().max():.2e}")


if __name__ == "__main__":
    main()
