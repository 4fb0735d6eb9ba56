"""The part of a sampled training step that grows with |V|, not with the batch: a batch-sized
gather from a dense ``nn.Embedding(N, 64)``, its backward into a dense ``[N, 64]`` gradient, and
one Adam step over all ``N`` rows. Prints the medians of 5 steps (after one warm-up).

    python3 benchmarks/optimizer_step.py 300000     # the large world's users + items
    python3 benchmarks/optimizer_step.py 3000000    # the huge world's (peaks ~4.5 GiB)
"""
from __future__ import annotations

import sys
import time

import torch


def main(n: int, batch_rows: int = 200_000, steps: int = 6) -> None:
    emb = torch.nn.Embedding(n, 64)
    opt = torch.optim.Adam(emb.parameters(), lr=1e-3)
    rows = torch.randint(n, (batch_rows,))
    backward, step = [], []
    for _ in range(steps):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        emb(rows).sum().backward()
        t1 = time.perf_counter()
        opt.step()
        backward.append(t1 - t)
        step.append(time.perf_counter() - t1)
    median = lambda xs: sorted(xs[1:])[len(xs[1:]) // 2]  # noqa: E731 (first step: warm-up)
    print(f"N={n:,}: backward into a dense grad {median(backward) * 1e3:.0f} ms, "
          f"Adam step {median(step) * 1e3:.0f} ms (medians of {steps - 1})")


if __name__ == "__main__":
    main(int(sys.argv[1]))
