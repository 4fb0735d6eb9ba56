"""A2BM2GL: the gap between the sampled adaptive loss (``rec_negatives="sampled"``, the default)
and the exact non-sampling eq. 8 (``"all"``, c+ = c0 = 1), for the same parameters.

On two small worlds, at initialisation and after 50 Adam steps on the sampled loss: one batch of
every train edge (k = 1), the sampled ``rec`` averaged over many uniform negative draws, against
the exact one, and against the exact loss with the per-user ``c0 = deg(u) / |N(u)-|`` the sampled
one estimates without bias (module doc of ``reelgraph/models/a2bm2gl.py``).

    python3 benchmarks/a2bm2gl_loss_gap.py
"""
import torch
from dataclasses import replace
from reelgraph.data.store import InMemoryStore
from reelgraph.graph import BipartiteGraph
from reelgraph.models.a2bm2gl import A2BM2GLConfig, full_adaptive_loss
from reelgraph.samplers.batch import BPRBatch
from reelgraph.samplers.loader import plan_batch
from reelgraph.samplers.negative import uniform_negatives

def world(name):
    g = torch.Generator().manual_seed(0)
    if name == "small":  # tests' small_graph: 30 users x 40 items, degrees vary
        u, i = torch.randint(30, (250,), generator=g), torch.randint(40, (250,), generator=g)
        keys = torch.unique(u * 40 + i); U, I = 30, 40
        graph = BipartiteGraph.from_edges(keys // 40, keys % 40, U, I)
    else:  # tests' tiny store: 6 users x 8 items, every user degree 3
        graph = BipartiteGraph.from_edges(torch.arange(6).repeat_interleave(3), torch.tensor(
            [0, 1, 2, 1, 2, 3, 3, 4, 5, 4, 5, 6, 6, 7, 0, 7, 0, 1]), 6, 8); I = 8
    feats = {"visual": torch.randn(graph.num_items, 6, generator=g)}
    return InMemoryStore(graph, features=feats)

def measure(name, steps, k, draws=4000):
    store = world(name)
    torch.manual_seed(0)
    cfg = A2BM2GLConfig(embedding_dim=8, knn_k=3, rwr_top_n=5)
    model = cfg.build(store)
    rowptr, col = store.csr("train"); deg = rowptr.diff(); U, I = store.num_users, store.num_items
    users = torch.arange(U).repeat_interleave(deg); pos = col.long()       # every train edge once
    keys = users * I + pos
    gen = torch.Generator().manual_seed(1)
    negs = lambda: uniform_negatives(users, keys, I, k, generator=gen)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):  # train a little with the sampled loss so scores are not ~0
        opt.zero_grad(); model.loss(plan_batch(store, cfg.plan(), BPRBatch(users, pos, negs())))["loss"].backward(); opt.step()
    with torch.no_grad():
        t0 = BPRBatch(users, pos, negs())
        b = plan_batch(store, cfg.plan(), t0)
        out = model(b.static, b.static.graph, None, None, None, [None])
        up_u, lo_u = model.user_boundaries(b, out)                      # [U] (every user has edges?)
        assert torch.equal(b.bounds.users, torch.unique(users))
        inv = torch.searchsorted(b.bounds.users, users)
        up, lo = up_u[inv], lo_u[inv]
        S = out.user @ out.item.T                                           # [U, I] (small world)
        pos_term = (up - S[users, pos]).pow(2).mean()
        n_neg = (I - deg[users]).float(); w = n_neg / deg[users].float()   # |N-(u)| / deg(u)
        plain, rew = [], []
        for i in range(draws):
            neg = t0.neg if i == 0 else negs()
            e = (S[users.unsqueeze(1), neg] - lo.unsqueeze(1)).pow(2).mean(1)  # [E]
            plain.append(pos_term + e.mean()); rew.append(pos_term + (w * e).mean())
        plain, rew = torch.stack(plain), torch.stack(rew)
        real = model.loss(b)["rec"]                                          # the model's sampled rec
        exact = replace(cfg, rec_negatives="all"); model.config = exact
        exact_rec = model.loss(plan_batch(store, exact.plan(), t0))["rec"]
        model.config = cfg
        uu = b.bounds.users; d = b.bounds
        c0 = deg[uu].float() / (I - deg[uu]).float()
        per_edge = full_adaptive_loss(out.user[uu], out.item, d.index, d.item, up_u, lo_u,
                                      neg_weight=c0) / deg[uu].float()
        implicit = per_edge[inv].mean()
        se = lambda x: x.std() / len(x) ** 0.5
        print(f"{name} world ({U}x{I}, {len(users)} edges, deg {deg.min()}-{deg.max()}), "
              f"{steps} Adam steps, k={k}, {draws} negative draws:")
        print(f"  model.loss()['rec'] sampled, draw 0 = {real:.6f} (dense recompute {plain[0]:.6f})")
        print(f"  exact eq.8 (c0=1), rec_negatives='all' = {exact_rec:.6f}")
        print(f"  sampled mean  = {plain.mean():.6f} +- {se(plain):.6f}  ratio to exact {plain.mean()/exact_rec:.4f}")
        print(f"  exact with per-user c0 = deg/|N-| = {implicit:.6f}  (sampled mean - it = {(plain.mean()-implicit)/se(plain):+.2f} se)")
        print(f"  reweighted sampled (x |N-|/deg) = {rew.mean():.6f} +- {se(rew):.6f}  (- exact = {(rew.mean()-exact_rec)/se(rew):+.2f} se)")
        print(f"  positive part {pos_term:.6f}; negative part exact {exact_rec-pos_term:.6f} vs sampled {plain.mean()-pos_term:.6f}")

for name in ("small", "tiny"):
    for steps in (0, 50):
        measure(name, steps, k=1)
