"""A2BM2GL's anti-bottleneck attention (eq. 6): how far from uniform it is, and how much the rows
it produces differ, before and after the eq. 5 / eq. 6 changes.

Each variant trains through the product path (RecDataModule + RecModule, the tests' short fit:
batch 512 x 4 negatives, Adam lr 1e-2) on the tests' planted ``feature_world`` (400 users, 600
videos, 8 communities, a 32-d visual feature that is 90% its video's topic), then reads, per
full-adjacent layer (the user–item one and the visual kNN one):

- entropy: mean over rows of the attention's entropy, beside ``ln n`` (uniform) and the surfing
  prior's own entropy;
- dev: mean absolute deviation of the LeakyReLU logits within a row (how far from flat);
- nbr cos: mean cosine between two neighbours of one row (beside two random rows): how alike
  the rows the attention chooses between are;
- out cos: mean cosine of each output row with the mean output row (1: one shared vector);
  spread: mean ``|o_v - mean o| / mean |o_v|``;
- distinct: how many different nodes the lists hold;
- Recall@20 on the test split.

    python3 benchmarks/a2bm2gl_attention.py                     # every variant, seed 0
    python3 benchmarks/a2bm2gl_attention.py --variants before,after --seeds 0,1,2
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from dataclasses import replace

import torch
import torch.nn.functional as F

from reelgraph.data.synthetic import WorldConfig, generate_world
from reelgraph.lightning_modules._pl import pl
from reelgraph.lightning_modules.datamodule import RecDataModule
from reelgraph.lightning_modules.module import RecModule
from reelgraph.models.a2bm2gl import A2BM2GLConfig
from reelgraph.models.a2bm2gl_attention import attention_entropy, attention_weights

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # _fit, also when loaded by path
from _fit import fit_and_test  # noqa: E402

WORLD = WorldConfig(num_users=400, num_items=600, num_creators=60, num_communities=8,
                    popularity_exponent=2.0, avg_interactions=20, max_interactions=80, noise=0.05,
                    kg=False, visual_dim=32, visual_signal=0.9, acoustic_dim=0, textual_dim=0,
                    chunk_users=400)
BEFORE = dict(rwr_transition="random_walk", rwr_steps=5, attention_prior=False,
              attention_inputs="raw", margin_weight=2.0)  # the defaults before this change
VARIANTS = {
    "before": BEFORE,
    "before+unit": {**BEFORE, "attention_inputs": "unit"},
    "before+prior": {**BEFORE, "attention_prior": True},
    "random-walk": dict(rwr_transition="random_walk"),  # today's defaults, D^-1 A
    "after": {},                                        # today's defaults
}


def layer_stats(h, h_nbr, mask, prior, att, config) -> dict[str, float]:
    """The measures of one full-adjacent layer (module doc) for rows ``h [R, d]``."""
    a = attention_weights(h, h_nbr, mask, att, prior if config.attention_prior else None,
                          config.attention_inputs == "unit")
    ent, most = attention_entropy(a, mask)
    prior_ent, _ = attention_entropy(prior, mask)
    d = h.size(1)
    q, k = h, h_nbr
    if config.attention_inputs == "unit":
        q, k = F.normalize(h, dim=-1) * d ** 0.5, F.normalize(h_nbr, dim=-1) * d ** 0.5
    logit = F.leaky_relu((q @ att[:d]).unsqueeze(1) + k @ att[d:], 0.2)
    n = mask.sum(1, keepdim=True).clamp(min=1)
    dev = ((logit - (logit * mask).sum(1, keepdim=True) / n).abs() * mask).sum(1) / n.squeeze(1)
    z = F.normalize(h_nbr, dim=-1)
    pair = ((z @ z.transpose(1, 2)).sum((1, 2)) - n.squeeze(1)) / (n * (n - 1)).squeeze(1).clamp(min=1)
    r = F.normalize(h, dim=-1)
    any_two = (r.sum(0).pow(2).sum() - h.size(0)) / (h.size(0) * (h.size(0) - 1))
    o = (a.unsqueeze(-1) * h_nbr).sum(1)
    return {"entropy": ent.mean().item(), "ln n": most.mean().item(),
            "prior entropy": prior_ent.mean().item(), "dev": dev.mean().item(),
            "nbr cos": pair.mean().item(), "any cos": any_two.item(),
            "out cos": F.cosine_similarity(o, o.mean(0, keepdim=True)).mean().item(),
            "spread": ((o - o.mean(0)).norm(dim=1).mean() / o.norm(dim=1).mean()).item()}


@torch.no_grad()
def measure(model, static) -> dict[str, dict[str, float]]:
    out = model(static, static.graph, None, None, None, [None] * len(static.modalities))
    layers = {"user-item": (out.cf, static.rwr, model.attention[0])}
    for j, (g, h) in enumerate(zip(static.modalities, out.sem)):
        layers[f"modality {j}"] = (h, g.rwr, model.attention[j + 1])
    stats = {}
    for name, (h, r, att) in layers.items():
        stats[name] = layer_stats(h, h[r.index], r.mask, r.prior, att, model.config)
        stats[name]["distinct"] = torch.unique(r.index[r.mask]).numel()
    return stats


def run(world: str, cache: str, flags: dict, seed: int, epochs: int, dim: int):
    pl.seed_everything(seed, verbose=False)
    config = replace(A2BM2GLConfig(embedding_dim=dim), **flags)
    dm = RecDataModule(data=world, cache_dir=cache, batch_size=512, num_negatives=4, seed=seed)
    module = RecModule(config, lr=1e-2, ks=(20,), auc=False)
    dm.setup()
    module.model = config.build(dm.store)
    static = config.plan().static(dm.store, torch.device("cpu"))
    init = measure(module.model, static)
    recall = fit_and_test(module, dm, epochs=epochs, root=cache)[0]["test/recall@20"]
    return init, measure(module.model, static), recall


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"subset of {list(VARIANTS)}")
    p.add_argument("--seeds", default="0", help="comma-separated fit seeds")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--dim", type=int, default=32, help="embedding_dim")
    p.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "a2bm2gl-attention"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    for name in ("pytorch_lightning", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    world = os.path.join(args.cache_dir, "world")
    if not os.path.exists(os.path.join(world, "done")):
        generate_world(world, WORLD)
        open(os.path.join(world, "done"), "w").close()
    cols = ("entropy", "ln n", "prior entropy", "dev", "nbr cos", "any cos", "out cos", "spread",
            "distinct")
    print(f"{'variant':<13}{'seed':>5} {'when':<6}{'layer':<11}" + "".join(f"{c:>14}" for c in cols))
    for name in args.variants.split(","):
        for seed in map(int, args.seeds.split(",")):
            init, after, recall = run(world, args.cache_dir, VARIANTS[name], seed, args.epochs,
                                      args.dim)
            for when, stats in (("init", init), ("fit", after)):
                for layer, s in stats.items():
                    print(f"{name:<13}{seed:>5} {when:<6}{layer:<11}"
                          + "".join(f"{s[c]:>14.4f}" for c in cols[:-1]) + f"{s['distinct']:>14}")
            print(f"{name:<13}{seed:>5} recall@20 {recall:.4f}", flush=True)


if __name__ == "__main__":
    main()
