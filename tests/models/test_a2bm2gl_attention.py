"""A²BM²GL's anti-bottleneck module: eq. 5's full-adjacent layers (random surfing with restart,
top-n with their surfing probabilities) and eq. 6's attention over them with the surfing prior."""
import math

import pytest
import torch

from reelgraph.data.store import InMemoryStore
from reelgraph.graph import BipartiteGraph, to_csr
from reelgraph.models.a2bm2gl import A2BM2GLConfig
from reelgraph.models.a2bm2gl_attention import attend, attention_entropy, attention_weights
from reelgraph.samplers.plans.a2bm2gl import rwr_top_n

CPU = torch.device("cpu")


# -- eq. 5 ------------------------------------------------------------------------------------
def _dense_rwr(adj: torch.Tensor, alpha: float, steps: int, transition: str) -> torch.Tensor:
    """Eq. 5 on the dense ``[N, N]`` float64 adjacency: ``M`` with its diagonal set to -1."""
    t = adj if transition == "binary" else adj / adj.sum(1, keepdim=True).clamp(min=1)
    eye = torch.eye(adj.size(0), dtype=torch.float64)
    a, m = eye, torch.zeros_like(eye)
    for _ in range(steps):
        a = alpha * a @ t + (1 - alpha) * eye
        m = m + a
    return m.fill_diagonal_(-1.0)


def _random_adj(seed: int, n: int = 11) -> torch.Tensor:
    """A symmetric 0/1 graph on nodes 0-9 (node 10 isolated: no neighbours to keep)."""
    gen = torch.Generator().manual_seed(seed)
    row, col = torch.randint(0, 10, (18,), generator=gen), torch.randint(0, 10, (18,), generator=gen)
    keep = row != col
    adj = torch.zeros(n, n, dtype=torch.float64)
    adj[row[keep], col[keep]] = adj[col[keep], row[keep]] = 1.0
    return adj


@pytest.mark.parametrize("transition", ["binary", "random_walk"])
@pytest.mark.parametrize("seed", [0, 1])
def test_rwr_top_n_matches_dense_reference(seed, transition):
    """Top-4 of each row of the dense eq. 5 ``M`` (self excluded) and their entries normalised
    to sum 1 (the attention prior), whatever the chunking."""
    adj = _random_adj(seed)
    n = adj.size(0)
    rowptr, col_csr, _ = to_csr(*adj.nonzero(as_tuple=True), n)
    index, prior = rwr_top_n(rowptr, col_csr, alpha=0.8, steps=4, top_n=4, chunk_elements=3 * n,
                             transition=transition)
    m = _dense_rwr(adj, 0.8, 4, transition)
    top = m.topk(4, dim=1).values.clamp(min=0)
    expected = top / top.sum(1, keepdim=True).clamp(min=1e-30)
    assert torch.allclose(prior.double(), expected, atol=1e-5)              # the top-4 values
    kept = m.gather(1, index).clamp(min=0)
    assert torch.allclose(kept / kept.sum(1, keepdim=True).clamp(min=1e-30), prior.double(),
                          atol=1e-5)
    assert not (index == torch.arange(n).unsqueeze(1)).any()                 # never the seed
    assert (prior[10] == 0).all() and torch.allclose(prior[:10].sum(1), torch.ones(10))


def test_rwr_binary_counts_walks_without_overflow():
    """Binary eq. 5 by hand on the path 0-1-2 (alpha 0.5, 2 steps): ``A_1 = 0.5 A + 0.5 I``,
    ``A_2 = 0.25 A^2 + 0.25 A + 0.5 I``; row 0 of ``M`` off the diagonal is ``(0.75, 0.25)``.
    50 steps on a 40-node star (walk counts ~ 39^25) stay finite and rank like float64."""
    rowptr, col, _ = to_csr(torch.tensor([0, 1, 1, 2]), torch.tensor([1, 0, 2, 1]), 3)
    index, prior = rwr_top_n(rowptr, col, alpha=0.5, steps=2, top_n=2)
    assert index[0].tolist() == [1, 2] and torch.allclose(prior[0], torch.tensor([0.75, 0.25]))
    adj = torch.zeros(40, 40, dtype=torch.float64)
    adj[0, 1:] = adj[1:, 0] = 1.0
    adj[1, 2] = adj[2, 1] = 1.0
    rowptr, col, _ = to_csr(*adj.nonzero(as_tuple=True), 40)
    index, prior = rwr_top_n(rowptr, col, alpha=0.85, steps=50, top_n=3, chunk_elements=400)
    assert torch.isfinite(prior).all() and torch.allclose(prior.sum(1), torch.ones(40))
    m = _dense_rwr(adj, 0.85, 50, "binary")
    top = m.topk(3, dim=1).values
    assert torch.allclose(prior.double(), top / top.sum(1, keepdim=True), atol=1e-5)
    assert (index[1:, 0] == 0).all()                                         # the hub first


# -- eq. 6 ------------------------------------------------------------------------------------
def test_attention_by_hand():
    """d = 2, ``w = (0, 0 | 1, 0)``: raw logits ``LeakyReLU(h_i[0]) = (1, 0)``; the prior
    ``(0.25, 0.75)`` multiplies ``exp(logit)`` before renormalising; unit inputs scale rows to
    norm sqrt(2); a padded slot gets 0."""
    h = torch.tensor([[1.0, 0.0]])
    nbr = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    mask = torch.tensor([[True, True, False]])
    att, e = torch.tensor([0.0, 0.0, 1.0, 0.0]), math.e
    raw = attention_weights(h, nbr, mask, att, unit_inputs=False)
    assert torch.allclose(raw, torch.tensor([[e / (e + 1), 1 / (e + 1), 0.0]]))
    prior = torch.tensor([[0.25, 0.75, 0.0]])
    got = attention_weights(h, nbr, mask, att, prior, unit_inputs=False)
    z = 0.25 * e + 0.75
    assert torch.allclose(got, torch.tensor([[0.25 * e / z, 0.75 / z, 0.0]]))
    r2 = math.exp(math.sqrt(2))
    unit = attention_weights(0.1 * h, 0.1 * nbr, mask, att, unit_inputs=True)
    assert torch.allclose(unit, torch.tensor([[r2 / (r2 + 1), 1 / (r2 + 1), 0.0]]))
    out = attend(h, nbr[0], torch.tensor([[0, 1, 2]]), mask, att, prior, unit_inputs=False)
    assert torch.allclose(out, (got.unsqueeze(-1) * nbr).sum(1))
    assert torch.equal(attention_weights(h, nbr, torch.zeros_like(mask), att), torch.zeros(1, 3))


def _rows(seed: int, scale: float = 1.0):
    gen = torch.Generator().manual_seed(seed)
    h, nbr = torch.randn(20, 8, generator=gen), torch.randn(20, 6, 8, generator=gen)
    mask = torch.rand(20, 6, generator=gen) < 0.8
    prior = torch.rand(20, 6, generator=gen) * mask
    prior = prior / prior.sum(1, keepdim=True).clamp(min=1e-30)
    att = torch.randn(16, generator=gen)
    return scale * h, scale * nbr, mask, att, prior


@pytest.mark.parametrize("unit_inputs", [True, False])
def test_attention_is_prior_times_exp_logit_renormalised(unit_inputs):
    h, nbr, mask, att, prior = _rows(0)
    a = attention_weights(h, nbr, mask, att, None, unit_inputs)
    want = prior * a / (prior * a).sum(1, keepdim=True).clamp(min=1e-30)
    got = attention_weights(h, nbr, mask, att, prior, unit_inputs)
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(got.sum(1), mask.any(1).float(), atol=1e-6) and (got[~mask] == 0).all()
    flat = attention_weights(h, nbr, mask, torch.zeros(16), prior, unit_inputs)
    assert torch.allclose(flat, prior, atol=1e-6)                   # flat logits: the prior


@pytest.mark.parametrize("unit_inputs", [True, False])
def test_attend_over_a_table_is_the_gathered_attention_and_its_gradient(unit_inputs):
    """``attend`` reads neighbours as rows of a table (per-row logit terms, a sparse sum): the
    same rows and gradients (own rows, table, attention vector) as eq. 6 on the gathered
    ``[R, n, d]`` neighbours, float64; padded slots point anywhere."""
    gen = torch.Generator().manual_seed(3)
    h = torch.randn(20, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    x = torch.randn(13, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    att = torch.randn(16, generator=gen, dtype=torch.float64, requires_grad=True)
    index = torch.randint(0, 13, (20, 6), generator=gen)
    mask = torch.rand(20, 6, generator=gen) < 0.8
    mask[4] = False                                                  # a row without neighbours
    prior = (torch.rand(20, 6, generator=gen, dtype=torch.float64) + 0.1) * mask
    prior = prior / prior.sum(1, keepdim=True).clamp(min=1e-30)
    seed = torch.randn(20, 8, generator=gen, dtype=torch.float64)
    got = attend(h, x, index, mask, att, prior, unit_inputs)
    grads = torch.autograd.grad((got * seed).sum(), (h, x, att))
    a = attention_weights(h, x[index], mask, att, prior, unit_inputs)
    want = (a.unsqueeze(-1) * x[index]).sum(1)
    assert torch.allclose(got, want, atol=1e-12) and (got[4] == 0).all()
    for g, w in zip(grads, torch.autograd.grad((want * seed).sum(), (h, x, att))):
        assert torch.allclose(g, w, atol=1e-12)


def test_unit_inputs_make_the_weights_independent_of_the_rows_scale():
    """The diagnosed cause of the uniform attention: raw logits scale with the rows' norm
    (embeddings of norm ~0.2 make them ~flat, entropy ~ ln n); unit-scale inputs do not."""
    weights = {s: [attention_weights(*_rows(1, s)[:4], unit_inputs=u) for u in (True, False)]
               for s in (0.01, 1.0, 100.0)}
    for s in (0.01, 100.0):
        assert torch.allclose(weights[s][0], weights[1.0][0], atol=1e-5)
    mask = _rows(1)[2]
    ent, most = attention_entropy(weights[0.01][1], mask)
    assert ((most - ent) < 2e-3).all()                              # raw, small rows: uniform
    ent, most = attention_entropy(weights[0.01][0], mask)
    assert (most - ent).mean() > 0.1                                # unit: not uniform


def test_model_attends_with_the_plans_surfing_prior():
    """With the attention vectors at 0 the user rows are ``cf + sum_i p_i cf_i`` (the plan's
    prior); ``attention_prior=False``: the plain mean over the kept neighbours."""
    graph = BipartiteGraph.from_edges(torch.arange(6).repeat_interleave(3), torch.tensor(
        [0, 1, 2, 1, 2, 3, 3, 4, 5, 4, 5, 6, 6, 7, 0, 7, 0, 1]), 6, 8)
    store = InMemoryStore(graph)
    for prior in (True, False):
        cfg = A2BM2GLConfig(embedding_dim=4, rwr_top_n=4, attention_prior=prior)
        model, static = cfg.build(store), cfg.plan().static(store, CPU)
        r = static.rwr
        assert torch.allclose(r.prior.sum(1), torch.ones(14)) and r.mask.all()
        assert (r.prior > 0).all() and r.prior.std() > 0            # not uniform
        with torch.no_grad():
            model.attention.zero_()
            out = model(static, static.graph, None, None, None, [])
        w = r.prior if prior else r.mask / r.mask.sum(1, keepdim=True)
        want = out.cf + (w.unsqueeze(-1) * out.cf[r.index]).sum(1)
        assert torch.allclose(torch.cat([out.user, out.item]), want, atol=1e-6)
