"""SimGCL's reference recipe against ours, step by step, on the same split and the same triples.

The reference recipe is SELFRec's ``SimGCL`` (the paper authors' code; ``conf/SimGCL.yaml``),
restated here in our own words, not imported: two ID tables with Xavier-uniform init, ``L = 2``
layers of ``D^-1/2 A D^-1/2`` (``torch.sparse.mm``), the final view the mean of layers ``1..L``,
each view's noise ``eps * sign(e) * normalize(U(0,1))`` added after every layer; per batch of
2048 shuffled train edges with one uniform negative outside the user's train items: BPR (mean of
``-log(sigmoid(s+ - s-) + 1e-8)``) on the clean view, L2 ``reg * (||U_b||_F + ||P_b||_F)`` on the
clean view's batch user and positive rows (not squared), ``lambda * (InfoNCE_user +
InfoNCE_item)`` over the batch's unique users and positive items of two fresh noisy views
(cosine, ``tau`` 0.2); Adam, lr 1e-3, no weight decay; ``lambda`` 0.5, ``eps`` 0.1, ``reg`` 1e-4.

``--arm reference`` trains that loop. ``--arm ours`` trains reelgraph's
:class:`~reelgraph.models.simgcl.SimGCL` on the same triples through its own ``loss(batch)``
(batches built by its plan over the whole graph), from the same initial tables. The flags
``--init``, ``--layers``, ``--lr``, ``--batch-size``, ``--tau``, ``--lam`` change one factor at
a time for either arm (our product defaults differ from the recipe in init, layers and lr).

Every ``--log-every`` steps it prints, per arm: the BPR and InfoNCE terms, the mean row norm of
layer 0 and of the clean view (users, items), and the gradient ratio ``||grad(lambda * CL)|| /
||grad(BPR)||`` on the ID tables at that step. After every ``--eval-every`` epochs: test
Recall@20 / NDCG@20, full ranking with train (+ valid) items masked, and the mean
``log(1 + d_i)`` of the first 2,000 users' top-20 items (against the test items' own).

    python benchmarks/simgcl_reference.py --data ../shared/data/ml-100k --arm reference --epochs 20
    python benchmarks/simgcl_reference.py --data ../shared/data/amazon-book-kgat --arm ours --epochs 10
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch
import torch.nn.functional as F
from torch import Tensor

from reelgraph.graph import FullGraph
from reelgraph.lightning_modules.datamodule import RecDataModule
from reelgraph.metrics import evaluate, inner_product, topk_items
from reelgraph.models.simgcl import SimGCL, SimGCLConfig
from reelgraph.samplers.batch import BPRBatch


def init_tables(num_users: int, num_items: int, dim: int, init: str, std: float,
                gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Layer-0 tables ``[U, d]``, ``[I, d]``: Xavier-uniform per table (the recipe's) or N(0, std)."""
    def table(n: int) -> Tensor:
        if init == "xavier":
            bound = math.sqrt(6.0 / (n + dim))
            return (torch.rand(n, dim, generator=gen) * 2 - 1) * bound
        return torch.randn(n, dim, generator=gen) * std
    return table(num_users), table(num_items)


def uniform_negatives(users: Tensor, num_items: int, train_keys: Tensor, gen: torch.Generator
                      ) -> Tensor:
    """One uniform item per user outside its train items ``[B]`` (redrawn until none is)."""
    neg = torch.randint(num_items, users.shape, generator=gen)
    while True:
        keys = users * num_items + neg
        pos = torch.searchsorted(train_keys, keys).clamp(max=train_keys.numel() - 1)
        bad = train_keys[pos] == keys
        if not bad.any():
            return neg
        neg[bad] = torch.randint(num_items, (int(bad.sum()),), generator=gen)


def info_nce(a: Tensor, b: Tensor, tau: float) -> Tensor:
    """Mean over rows of ``-log softmax_j(cos(a_i, b_j) / tau)[i]``."""
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    return F.cross_entropy(a @ b.t() / tau, torch.arange(a.shape[0]))


class Reference:
    """The reference recipe (module doc): tables as leaves, views by ``torch.sparse.mm``."""

    def __init__(self, adj: Tensor, user0: Tensor, item0: Tensor, a: argparse.Namespace):
        self.adj, self.a = adj, a
        self.U = user0.clone().requires_grad_(True)
        self.I = item0.clone().requires_grad_(True)
        self.params = [self.U, self.I]
        self.noise = torch.Generator().manual_seed(a.seed + 1)  # its own: triples stay the same

    def view(self, eps: float, gen: torch.Generator | None) -> tuple[Tensor, Tensor, list[Tensor]]:
        h = torch.cat([self.U, self.I])
        layers = []
        for _ in range(self.a.layers):
            h = torch.sparse.mm(self.adj, h)
            if eps > 0:
                h = h + torch.sign(h) * F.normalize(torch.rand(h.shape, generator=gen), dim=-1) * eps
            layers.append(h)
        out = torch.stack(layers).mean(0)
        return out[: self.U.shape[0]], out[self.U.shape[0]:], layers

    def terms(self, users: Tensor, pos: Tensor, neg: Tensor, gen: torch.Generator
              ) -> dict[str, Tensor]:
        a = self.a
        u, i, _ = self.view(0.0, None)
        ue, pe, ne = u[users], i[pos], i[neg]
        bpr = -torch.log(torch.sigmoid((ue * pe).sum(1) - (ue * ne).sum(1)) + 1e-8).mean()
        l2 = a.reg * (ue.norm() + pe.norm())
        (u1, i1, _), (u2, i2, _) = self.view(a.eps, self.noise), self.view(a.eps, self.noise)
        uu, ii = torch.unique(users), torch.unique(pos)
        cl = info_nce(u1[uu], u2[uu], a.tau) + info_nce(i1[ii], i2[ii], a.tau)
        return {"bpr": bpr, "l2": l2, "cl": cl, "loss": bpr + l2 + a.lam * cl}

    def embed(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        with torch.no_grad():
            u, i, _ = self.view(0.0, None)
        return u, i, self.U.detach(), self.I.detach()


class Ours:
    """reelgraph's SimGCL through its own plan and ``loss(batch)``, whole-graph batches."""

    def __init__(self, dm: RecDataModule, user0: Tensor, item0: Tensor, a: argparse.Namespace):
        cfg = SimGCLConfig(embedding_dim=a.dim, num_layers=a.layers, reg_weight=a.reg,
                           cl_weight=a.lam, eps=a.eps, tau=a.tau)
        self.model = SimGCL(dm.num_users, dm.num_items, cfg)
        with torch.no_grad():
            self.model.embedding.weight.copy_(torch.cat([user0, item0]))
        self.plan = cfg.plan()
        self.ctx, self.static = self.plan.context(dm.store), self.plan.static(dm.store, "cpu")
        self.params = list(self.model.parameters())
        self.U = dm.num_users
        self.step = 0

    def terms(self, users: Tensor, pos: Tensor, neg: Tensor, gen: torch.Generator
              ) -> dict[str, Tensor]:
        self.step += 1
        triples = BPRBatch(users, pos, neg.unsqueeze(1), seed=self.step)
        batch = self.plan.sample(self.ctx, triples, gen).bind(self.static)
        out = self.model.loss(batch)
        return {"bpr": out["bpr"], "l2": out["l2"], "cl": out["cl"], "loss": out["loss"]}

    def embed(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        with torch.no_grad():
            u, i = self.model.embed(self.static)
            w = self.model.embedding.weight
        return u, i, w[: self.U], w[self.U:]


def grad_ratio(arm, users: Tensor, pos: Tensor, neg: Tensor, gen: torch.Generator,
               lam: float) -> float:
    """``||grad(lambda * CL)|| / ||grad(BPR)||`` over all the arm's ID-table parameters (the
    arm's batch counter restored: measuring never shifts the training run's noise seeds)."""
    step = getattr(arm, "step", None)
    t = arm.terms(users, pos, neg, gen)
    if step is not None:
        arm.step = step
    g_bpr = torch.autograd.grad(t["bpr"], arm.params, retain_graph=True)
    g_cl = torch.autograd.grad(lam * t["cl"], arm.params)
    norm = lambda gs: math.sqrt(sum(float(g.pow(2).sum()) for g in gs))  # noqa: E731
    return norm(g_cl) / max(norm(g_bpr), 1e-30)


def mean_norms(arm) -> dict[str, float]:
    u, i, u0, i0 = arm.embed()
    u0, i0 = u0.detach(), i0.detach()
    return {"u0": float(u0.norm(dim=1).mean()), "i0": float(i0.norm(dim=1).mean()),
            "u": float(u.norm(dim=1).mean()), "i": float(i.norm(dim=1).mean())}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--arm", choices=["reference", "ours"], default="reference")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--reg", type=float, default=1e-4)
    p.add_argument("--lam", type=float, default=0.5, help="lambda, InfoNCE weight")
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--tau", type=float, default=0.2)
    p.add_argument("--init", choices=["xavier", "normal"], default="xavier")
    p.add_argument("--init-std", type=float, default=0.1, help="--init normal: its std")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--eval-every", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: none)")
    p.add_argument("--json", help="write the logged rows here")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--cache-dir", default="artifacts/cache")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    print(" ".join(sys.argv), flush=True)
    dm = RecDataModule(data=a.data, cache_dir=a.cache_dir, seed=a.seed)
    dm.prepare_data()
    dm.setup("fit")
    U, I = dm.num_users, dm.num_items
    train = dm.train_graph
    eu, ei = train.users(), train.col
    train_keys = torch.sort(eu * I + ei).values
    gen = torch.Generator().manual_seed(a.seed)
    user0, item0 = init_tables(U, I, a.dim, a.init, a.init_std, gen)
    if a.arm == "reference":
        adj = SimGCLConfig(num_layers=a.layers).plan().static(dm.store, "cpu").graph
        assert isinstance(adj, FullGraph)
        arm = Reference(adj.adj.to_sparse_coo().coalesce(), user0, item0, a)
    else:
        arm = Ours(dm, user0, item0, a)
    opt = torch.optim.Adam(arm.params, lr=a.lr)
    test, history = dm.test_graph, dm.history
    print(f"{dm.store}  arm={a.arm} init={a.init} layers={a.layers} lr={a.lr} "
          f"batch={a.batch_size} lambda={a.lam} eps={a.eps} tau={a.tau}", flush=True)
    log_pop = torch.log1p(train.degree()[1].float())  # popularity of what is recommended
    pop_users = torch.arange(min(2000, U))
    print(f"held-out test items' mean log(1 + d_i): {float(log_pop[test.col].mean()):.3f}",
          flush=True)
    rows, step, t0 = [], 0, time.perf_counter()

    def log(kind: str, **r) -> None:
        r = {"kind": kind, "step": step, "s": round(time.perf_counter() - t0, 1), **r}
        rows.append(r)
        print(json.dumps(r), flush=True)

    log("init", **mean_norms(arm), ratio=grad_ratio(arm, eu[:a.batch_size], ei[:a.batch_size],
                                                   uniform_negatives(eu[:a.batch_size], I, train_keys, gen),
                                                   gen, a.lam))
    done = False
    for epoch in range(a.epochs):
        order = torch.randperm(eu.numel(), generator=gen)
        sums = {"bpr": 0.0, "cl": 0.0, "n": 0}
        for b in order.split(a.batch_size):
            users, pos = eu[b], ei[b]
            neg = uniform_negatives(users, I, train_keys, gen)
            t = arm.terms(users, pos, neg, gen)
            opt.zero_grad()
            t["loss"].backward()
            opt.step()
            step += 1
            sums["bpr"] += t["bpr"].item()
            sums["cl"] += t["cl"].item()
            sums["n"] += 1
            if step % a.log_every == 0:
                log("step", epoch=epoch, bpr=t["bpr"].item(), cl=t["cl"].item(), **mean_norms(arm),
                    ratio=grad_ratio(arm, users, pos, neg, gen, a.lam))
            if a.max_steps and step >= a.max_steps:
                done = True
                break
        row = {"epoch": epoch, "bpr": sums["bpr"] / sums["n"], "cl": sums["cl"] / sums["n"]}
        if (epoch + 1) % a.eval_every == 0 or done or epoch + 1 == a.epochs:
            u, i, _, _ = arm.embed()
            r = evaluate(u, i, history, test, ks=(20,), user_batch_size=4096, auc=False).means()
            top = topk_items(inner_product(u, i), pop_users, history, 20)  # [n, 20]
            row.update({"recall@20": float(r["recall@20"]), "ndcg@20": float(r["ndcg@20"]),
                        "top20_logpop": float(log_pop[top.clamp(min=0)].mean())})
        log("epoch", **row)
        if done:
            break
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"args": vars(a), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
