"""Per-edge model steps, forward + backward, each in two forms timed in one process: the
``[M, d]`` gathered form the models used before, and the form built on the graph's edge
products (:func:`~reelgraph.graph.edge_dot`, :func:`~reelgraph.graph.edge_weighted_sum`,
:func:`~reelgraph.graph.gather_weighted_sum`), which keep no ``[M, d]`` rows for the backward.

- ``a2bm2gl-eq6``: A2BM2GL's eq. 6 attention over top-n full-adjacent lists. Gathered: the
  neighbours' rows as ``[R, n, d]``, eq. 6's logits on them
  (:func:`~reelgraph.models.a2bm2gl_attention.attention_weights`) and the weighted sum. Edge
  form: :func:`~reelgraph.models.a2bm2gl_attention.attend`. Default shape: the model table's
  synthetic world at d = 320 (10,000 nodes, top 16); ``--rows 4000 --table 4000`` is one
  modality's kNN layer.
- ``shl-hop``: one hop of SHL's local encoder (eqs. 1-4) over every edge of a random graph.
  Gathered: the gate and attention dot products and the messages on ``x[row]``, ``x[col]``
  (``[M, d]`` each) and a segment sum. Edge form:
  :class:`~reelgraph.models.shl_local.GatedAttention`. Default shape: the synthetic world's
  bipartite graph at d = 128 (10,000 nodes, 273,096 directed edges).
- ``mmgcn-max``: MMGCN's max aggregation (:func:`~reelgraph.graph.segment_max` of ``x[col]``
  over CSR-ordered rows), before and after: ``torch.scatter_reduce``'s ``amax`` (``scatter``)
  and torch's segment reduction with our tie-splitting backward (``segment``). Same shape as
  ``shl-hop``.

The two forms run in turns; the figures are per-step medians, their ratio, and the largest
difference of the outputs.

    python3 benchmarks/edge_ops.py --op a2bm2gl-eq6 --threads 2
    python3 benchmarks/edge_ops.py --op shl-hop --threads 2
    python3 benchmarks/edge_ops.py --op mmgcn-max --threads 2
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from reelgraph.graph import segment_max, segment_softmax, weighted_sum
from reelgraph.models.a2bm2gl_attention import attend, attention_weights
from reelgraph.models.shl_local import GatedAttention


def eq6_inputs(a, gen: torch.Generator) -> tuple[list[torch.Tensor], tuple]:
    h = 0.1 * torch.randn(a.rows, a.dim, generator=gen)
    x = 0.1 * torch.randn(a.table, a.dim, generator=gen)
    att = torch.randn(2 * a.dim, generator=gen)
    index = torch.randint(0, a.table, (a.rows, a.top_n), generator=gen)
    mask = torch.rand(a.rows, a.top_n, generator=gen) < 0.95
    prior = torch.rand(a.rows, a.top_n, generator=gen) * mask
    prior = prior / prior.sum(1, keepdim=True).clamp(min=1e-30)
    return [h, x, att], (index, mask, prior)


def eq6_gathered(params, h, x, att, index, mask, prior):
    nbr = x[index]                                                            # [R, n, d]
    return (attention_weights(h, nbr, mask, att, prior).unsqueeze(-1) * nbr).sum(1)


def eq6_edges(params, h, x, att, index, mask, prior):
    return attend(h, x, index, mask, att, prior)


def hop_inputs(a, gen: torch.Generator) -> tuple[list[torch.Tensor], tuple]:
    x = 0.1 * torch.randn(a.table, a.dim, generator=gen)
    row = torch.randint(0, a.table, (a.edges,), generator=gen).sort().values  # CSR order
    col = torch.randint(0, a.table, (a.edges,), generator=gen)
    scale = torch.bincount(col, minlength=a.table)[col].float().clamp(min=1).sqrt()
    return [x], (row, col, scale)


def hop_gathered(hop: GatedAttention, x, row, col, scale):
    n = x.size(0)
    gate = torch.sigmoid((x[row] * x[col]).sum(-1) / scale)                  # eq. 2
    logit = (hop.query(x)[row] * torch.tanh(hop.key(x))[col]).sum(-1)       # eqs. 3-4
    attn = segment_softmax(row, logit, n)
    msg = weighted_sum(row, attn * gate, hop.message(x)[col], n)             # eq. 1
    return F.leaky_relu(msg, hop.negative_slope)


def hop_edges(hop: GatedAttention, x, row, col, scale):
    return hop(x, x, row, col, scale)


def max_scatter(params, x, row, col, scale):
    src = x[col]                                                             # [M, d]
    out = src.new_zeros(x.size(0), src.size(1))
    return out.scatter_reduce(0, row.unsqueeze(1).expand_as(src), src, "amax", include_self=False)


def max_segment(params, x, row, col, scale):
    return segment_max(x[col], row, x.size(0))


# op: (inputs, the form before, the form after, their names)
OPS = {"a2bm2gl-eq6": (eq6_inputs, eq6_gathered, eq6_edges, ("gathered", "edges")),
       "shl-hop": (hop_inputs, hop_gathered, hop_edges, ("gathered", "edges")),
       "mmgcn-max": (hop_inputs, max_scatter, max_segment, ("scatter", "segment"))}


def step(form, params, tensors, fixed) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    out = form(params, *tensors, *fixed)
    out.square().sum().backward()
    took = time.perf_counter() - start
    for t in [*tensors, *(params.parameters() if params is not None else ())]:
        t.grad = None
    return took, out.detach()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--op", choices=sorted(OPS), default="a2bm2gl-eq6")
    p.add_argument("--rows", type=int, default=10_000, help="a2bm2gl-eq6: rows attending (R)")
    p.add_argument("--table", type=int, default=10_000, help="rows of the table (nodes)")
    p.add_argument("--top-n", type=int, default=16, help="a2bm2gl-eq6: neighbours per row")
    p.add_argument("--edges", type=int, default=273_096, help="shl-hop: directed edges (M)")
    p.add_argument("--dim", type=int, default=None, help="width d (320 for eq. 6, 128 a hop)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    a.dim = a.dim or (320 if a.op == "a2bm2gl-eq6" else 128)
    torch.set_num_threads(a.threads)
    gen = torch.Generator().manual_seed(0)
    make, before, after, names = OPS[a.op]
    tensors, fixed = make(a, gen)
    tensors = [t.requires_grad_() for t in tensors]
    params = GatedAttention(a.dim) if a.op == "shl-hop" else None
    times, outs = {name: [] for name in names}, {}
    for r in range(a.repeats + 1):  # the first round warms up
        for name, form in zip(names, (before, after)):
            took, outs[name] = step(form, params, tensors, fixed)
            if r:
                times[name].append(took)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{a.op}: {vars(a)}; forward + backward, median of {a.repeats}:")
    for k, v in times.items():
        print(f"  {k:9s} {med[k] * 1e3:8.1f} ms  (min {min(v) * 1e3:.1f}, max {max(v) * 1e3:.1f})")
    b, f = names
    print(f"  {b} / {f}: {med[b] / med[f]:.2f}x; "
          f"max |difference| of the outputs {(outs[b] - outs[f]).abs().max():.2e}")


if __name__ == "__main__":
    main()
