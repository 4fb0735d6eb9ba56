"""A synthetic micro-video world with planted structure, written as a ReelGraph dataset folder.

``num_communities`` latent topics. Every vlogger (creator) belongs to one topic, and so do its
videos. Every user mixes a few topics (a sparse Dirichlet) and drifts toward a second mixture
over time. An interaction picks a topic from the user's current mixture, then a video of that
topic with probability ∝ its Pareto popularity; a share ``follow_rate`` instead picks a video
of a vlogger the user follows, and a share ``noise`` picks a uniformly random video. Follows
come mostly from the user's own topics. Each modality's feature is its topic's centroid plus
item noise (``*_signal`` sets how much is topic). The KG links a video to its topic and to tags
from that topic's tag pool. So popularity is a weak baseline, and vloggers, features and the KG
carry signal a model can learn.

Users are generated ``chunk_users`` at a time, and each chunk is written as one Parquet row
group, so the interactions are never all in memory. The per-item tables are written in blocks.
The same config (``chunk_users`` included) and seed give byte-identical Parquet files.

The KG and item features are written by :mod:`~reelgraph.data.synthetic_side`; the config
and the helpers both modules share live in :mod:`~reelgraph.data.synthetic_base`.

    python -m reelgraph.data.synthetic OUT_DIR --preset default   # --help lists every option
"""
from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import re
import time
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from reelgraph.data.schema import WRITE_OPTIONS
from reelgraph.data.synthetic_base import (MODALITIES, _ITEM_BLOCK, _USERS, _WORLD, WorldConfig,
                                           _Catalogue, _Grouped, _ids, _rng)
from reelgraph.data.synthetic_side import _write_features, _write_kg

EPOCH = 1_600_000_000        # the earliest timestamp, unix seconds
_DAY = 86_400
_REDRAW_ROUNDS = 4           # repeated (user, item) pairs are redrawn this often, then uniformly
_TOPIC, _FOLLOW, _NOISE = 0, 1, 2            # why an interaction happened


PRESETS: dict[str, WorldConfig] = {
    "tiny": WorldConfig(num_users=100, num_items=300, num_creators=30, num_communities=5,
                        avg_interactions=10, max_interactions=40, rewatch=0.03, chunk_users=40),
    "default": WorldConfig(chunk_users=2_000),
    "large": WorldConfig(num_users=200_000, num_items=100_000, num_creators=5_000,
                         num_communities=100, avg_interactions=50, max_interactions=2_000),
    "huge": WorldConfig(num_users=2_000_000, num_items=1_000_000, num_creators=50_000,
                        num_communities=200, avg_interactions=50, max_interactions=5_000),
}


def _catalogue(cfg: WorldConfig, rng: np.random.Generator) -> _Catalogue:
    nc, C = cfg.num_creators, cfg.num_communities
    creator_community = rng.permutation(np.arange(nc) % C)                  # no topic is empty
    productivity = rng.pareto(1.5, nc) + 1.0                                # a few post a lot
    extra = rng.choice(nc, cfg.num_items - nc, p=productivity / productivity.sum())
    item_creator = rng.permutation(np.concatenate([np.arange(nc), extra]))  # no vlogger is empty
    item_community = creator_community[item_creator]
    popularity = rng.pareto(cfg.popularity_exponent, cfg.num_items) + 1.0   # [num_items]
    creator_popularity = np.bincount(item_creator, popularity, minlength=nc)
    return _Catalogue(item_creator, item_community,
                      _Grouped.build(item_community, popularity, C),
                      _Grouped.build(item_creator, popularity, nc),
                      _Grouped.build(creator_community, creator_popularity, C))


def _lomax_scale(mean: float, low: int, high: int, shape: float) -> float:
    """Scale ``s`` so that ``min(low + floor(L), high)``, ``L ~ Lomax(shape, s)``, has this mean."""
    def capped_mean(s: float) -> float:  # low + ∫_0^(high-low) (1 + x/s)^-shape dx - 0.5 (floor)
        tail = (1.0 + (high - low) / s) ** (1.0 - shape)
        span = s * np.log1p((high - low) / s) if shape == 1.0 else s * (1.0 - tail) / (shape - 1.0)
        return low + span - 0.5
    lo, hi = 1e-6, 1e12
    for _ in range(200):  # capped_mean increases with s
        mid = np.sqrt(lo * hi)
        lo, hi = (mid, hi) if capped_mean(mid) < mean else (lo, mid)
    return lo


def _degrees(rng: np.random.Generator, n: int, cfg: WorldConfig) -> np.ndarray:
    """``[n]`` power-law degrees: ``min_interactions`` + a Lomax tail, capped."""
    low, high, shape = cfg.min_interactions, cfg.max_interactions, cfg.activity_exponent
    scale = _lomax_scale(cfg.avg_interactions, low, high, shape)
    tail = scale * ((1.0 - rng.random(n)) ** (-1.0 / shape) - 1.0)       # [n] Lomax(shape, scale)
    return np.minimum(low + np.floor(tail), high).astype(np.int64)


def _mixtures(rng: np.random.Generator, n: int, cfg: WorldConfig) -> np.ndarray:
    """``[n, C]`` rows from a symmetric Dirichlet; log-space so tiny concentrations stay finite."""
    a = cfg.community_concentration / cfg.num_communities
    shape = (n, cfg.num_communities)
    log_g = np.log(rng.gamma(a + 1.0, size=shape)) + np.log(1.0 - rng.random(shape)) / a
    g = np.exp(log_g - log_g.max(axis=1, keepdims=True))     # Gamma(a) = Gamma(a+1)·U^(1/a)
    return g / g.sum(axis=1, keepdims=True)


def _pick_community(rng: np.random.Generator, mix: np.ndarray, user: np.ndarray) -> np.ndarray:
    """One topic per entry of ``user``, drawn from that user's row of ``mix``."""
    n, C = mix.shape
    cum = np.cumsum(mix, axis=1)
    cum[:, -1] = 1.0
    flat = (cum + np.arange(n)[:, None]).ravel()                       # [n * C] increasing
    pos = np.searchsorted(flat, user + rng.random(user.size), side="right")
    return np.clip(pos - user * C, 0, C - 1)


@dataclass(frozen=True)
class _Taste:
    """One chunk's users: why each interaction happens, and what it draws from."""
    user: np.ndarray            # [E] user index within the chunk, non-decreasing
    kind: np.ndarray            # [E] _TOPIC, _FOLLOW or _NOISE
    late: np.ndarray            # [E] bool: drawn from the later mixture
    early_mix: np.ndarray       # [n, C]
    late_mix: np.ndarray        # [n, C]
    follow_ptr: np.ndarray      # [n + 1] CSR over follow_creator
    follow_creator: np.ndarray  # [F] creator index, sorted per user


def _follows(rng: np.random.Generator, cfg: WorldConfig, cat: _Catalogue, mix: np.ndarray):
    n = mix.shape[0]
    count = np.minimum(rng.poisson(cfg.follows_per_user, n), cfg.num_creators)
    owner = np.repeat(np.arange(n), count)                                   # [F]
    community = _pick_community(rng, mix, owner)
    stray = rng.random(owner.size) >= cfg.follow_affinity
    community[stray] = rng.integers(cfg.num_communities, size=int(stray.sum()))
    key = np.unique(owner * cfg.num_creators + cat.creators_by_community.sample(rng, community))
    owner, creator = key // cfg.num_creators, key % cfg.num_creators         # one follow per pair
    ptr = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=n))])
    return ptr, creator


def _pick(rng: np.random.Generator, cfg: WorldConfig, cat: _Catalogue, taste: _Taste,
          idx: np.ndarray) -> np.ndarray:
    """Draws the video of each interaction ``idx`` according to its kind."""
    user, kind, late = taste.user[idx], taste.kind[idx], taste.late[idx]
    item = np.empty(idx.size, dtype=np.int64)
    topic = kind == _TOPIC
    for mix, m in ((taste.early_mix, topic & ~late), (taste.late_mix, topic & late)):
        item[m] = cat.items_by_community.sample(rng, _pick_community(rng, mix, user[m]))
    m = kind == _FOLLOW
    lo, hi = taste.follow_ptr[user[m]], taste.follow_ptr[user[m] + 1]
    slot = np.minimum(lo + (rng.random(lo.size) * (hi - lo)).astype(np.int64), hi - 1)
    item[m] = cat.items_by_creator.sample(rng, taste.follow_creator[slot])
    m = kind == _NOISE
    item[m] = rng.integers(cfg.num_items, size=int(m.sum()))
    return item


def _repeats(user: np.ndarray, item: np.ndarray, num_items: int) -> np.ndarray:
    """``[E]`` bool: this (user, item) pair occurred earlier in the chunk."""
    _, first = np.unique(user * num_items + item, return_index=True)
    repeat = np.ones(user.size, dtype=bool)
    repeat[first] = False
    return repeat


def _distinct(rng, cfg: WorldConfig, cat: _Catalogue, taste: _Taste, item: np.ndarray) -> None:
    """Redraws repeated pairs in place: a few rounds as before, then uniformly until none remain."""
    for round_ in range(_REDRAW_ROUNDS + 1000):
        dup = np.flatnonzero(_repeats(taste.user, item, cfg.num_items))
        if dup.size == 0:
            return
        item[dup] = (_pick(rng, cfg, cat, taste, dup) if round_ < _REDRAW_ROUNDS
                     else rng.integers(cfg.num_items, size=dup.size))
    raise RuntimeError("could not draw distinct videos; lower max_interactions")


def _timestamps(rng, cfg: WorldConfig, deg: np.ndarray, user: np.ndarray, ptr: np.ndarray):
    """``[E]`` int64 seconds, strictly increasing per user, each user active for ~half the span."""
    half = cfg.timespan_days * _DAY / 2
    start = EPOCH + (rng.random(deg.size) * half).astype(np.int64)         # [n]
    gap = 1 + rng.exponential(half / deg[user]).astype(np.int64)            # [E]
    total = np.cumsum(gap)
    before = (total - gap)[ptr[:-1]]                                        # [n] sum before a user
    return start[user] + total - before[user]


def _user_chunk(rng: np.random.Generator, cfg: WorldConfig, cat: _Catalogue, n: int):
    """Interactions ``(user, item, timestamp, weight)`` and follows ``(user, creator)``."""
    deg = _degrees(rng, n, cfg)
    ptr = np.concatenate([[0], np.cumsum(deg)])                              # [n + 1]
    user = np.repeat(np.arange(n), deg)                                      # [E]
    early_mix, late_mix = _mixtures(rng, n, cfg), _mixtures(rng, n, cfg)
    follow_ptr, follow_creator = _follows(rng, cfg, cat, early_mix)
    timestamp = _timestamps(rng, cfg, deg, user, ptr)
    progress = (timestamp - EPOCH) / (cfg.timespan_days * _DAY)              # [E] ~[0, 1]
    late = rng.random(user.size) < cfg.drift * progress
    kind = np.full(user.size, _TOPIC, dtype=np.int8)
    follower = follow_ptr[user + 1] > follow_ptr[user]
    kind[follower & (rng.random(user.size) < cfg.follow_rate)] = _FOLLOW
    kind[rng.random(user.size) < cfg.noise] = _NOISE
    taste = _Taste(user, kind, late, early_mix, late_mix, follow_ptr, follow_creator)
    item = _pick(rng, cfg, cat, taste, np.arange(user.size))
    _distinct(rng, cfg, cat, taste, item)
    rank = np.arange(user.size) - ptr[user]                                  # [E] position per user
    again = np.flatnonzero((rank >= cfg.min_interactions) & (rng.random(user.size) < cfg.rewatch))
    item[again] = item[ptr[user[again]] + (rng.random(again.size) * rank[again]).astype(np.int64)]
    liked = kind != _NOISE                                                   # completion is higher
    weight = np.clip(rng.beta(np.where(liked, 3.0, 1.2), np.where(liked, 1.5, 3.0)), 0.01, 1.0)
    follows = (np.repeat(np.arange(n), np.diff(follow_ptr)), follow_creator)
    return (user, item, timestamp, weight.astype(np.float32)), follows


_INTERACTIONS = pa.schema([("user_id", pa.int64()), ("item_id", pa.string()),
                           ("timestamp", pa.int64()), ("weight", pa.float32())])
_FOLLOWS = pa.schema([("user_id", pa.int64()), ("creator_id", pa.string())])


def _write_users(out_dir: str, cfg: WorldConfig, cat: _Catalogue, items: pa.Array,
                 creators: pa.Array, progress: bool) -> dict[str, int]:
    counts = {"num_interactions": 0, "num_repeated_pairs": 0, "num_follows": 0}
    with contextlib.ExitStack() as stack:
        writer = stack.enter_context(pq.ParquetWriter(
            os.path.join(out_dir, "interactions.parquet"), _INTERACTIONS, **WRITE_OPTIONS))
        follow_writer = None
        bar = stack.enter_context(tqdm(total=cfg.num_users, unit="user", disable=not progress))
        for c, first in enumerate(range(0, cfg.num_users, cfg.chunk_users)):
            n = min(cfg.chunk_users, cfg.num_users - first)
            rng = _rng(cfg.seed, _USERS, c)
            (user, item, ts, weight), (f_user, f_creator) = _user_chunk(rng, cfg, cat, n)
            uid = pa.array(cfg.user_id_offset + first + user, pa.int64())
            columns = [uid, items.take(pa.array(item)), pa.array(ts), pa.array(weight)]
            writer.write_table(pa.Table.from_arrays(columns, schema=_INTERACTIONS))
            if f_user.size:
                if follow_writer is None:  # opened lazily: no follows at all means no file
                    follow_writer = stack.enter_context(pq.ParquetWriter(
                        os.path.join(out_dir, "user_creator.parquet"), _FOLLOWS, **WRITE_OPTIONS))
                follow_writer.write_table(pa.Table.from_arrays(
                    [pa.array(cfg.user_id_offset + first + f_user, pa.int64()),
                     creators.take(pa.array(f_creator))], schema=_FOLLOWS))
            counts["num_interactions"] += int(user.size)
            counts["num_repeated_pairs"] += int(_repeats(user, item, cfg.num_items).sum())
            counts["num_follows"] += int(f_user.size)
            bar.update(n)
    return counts


def _outputs(out_dir: str) -> list[str]:
    """Every file ``generate_world`` may write."""
    tables = ["interactions", "item_creator", "user_creator", "kg"]
    files = [f"{t}.parquet" for t in tables] + [f"features/{m}.parquet" for m in MODALITIES]
    return [os.path.join(out_dir, f) for f in files + ["world.json"]]


def generate_world(out_dir: str, config: WorldConfig | None = None, progress: bool = False
                   ) -> dict:
    """Writes a synthetic world into ``out_dir`` (see the module docstring) and returns its counts.

    Files this generator writes are replaced; any other file in ``out_dir`` is left alone.
    ``world.json`` holds the config and the returned stats.
    """
    cfg, start = config or WorldConfig(), time.perf_counter()
    os.makedirs(os.path.join(out_dir, "features"), exist_ok=True)
    for path in _outputs(out_dir):  # a stale kg/modality from an earlier config must not linger
        if os.path.exists(path):
            os.remove(path)
    cat = _catalogue(cfg, _rng(cfg.seed, _WORLD))
    items = _ids("v", np.arange(cfg.num_items), max(6, len(str(cfg.num_items - 1))))
    creators = _ids("c", np.arange(cfg.num_creators), max(4, len(str(cfg.num_creators - 1))))
    item_creator = pa.table({"item_id": items,
                             "creator_id": creators.take(pa.array(cat.item_creator))})
    pq.write_table(item_creator, os.path.join(out_dir, "item_creator.parquet"),
                   row_group_size=_ITEM_BLOCK, **WRITE_OPTIONS)
    stats = {"num_users": cfg.num_users, "num_items": cfg.num_items,
             "num_creators": cfg.num_creators, "num_communities": cfg.num_communities}
    stats.update(_write_users(out_dir, cfg, cat, items, creators, progress))
    stats["num_kg_triples"] = _write_kg(out_dir, cfg, cat, items) if cfg.kg else 0
    stats["feature_dims"] = _write_features(out_dir, cfg, cat, items)
    stats["seconds"] = round(time.perf_counter() - start, 3)
    with open(os.path.join(out_dir, "world.json"), "w") as f:
        json.dump({"config": asdict(cfg), "stats": stats}, f, indent=2)
    return stats


def _field_help() -> dict[str, str]:
    """The inline comment of each ``WorldConfig`` field, for ``--help``."""
    pattern = re.compile(r"^\s+(\w+): [\w\[\], ]+ = .*?#\s*(.+)$")
    lines = inspect.getsource(WorldConfig).splitlines()
    return {m.group(1): m.group(2) for m in map(pattern.match, lines) if m}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m reelgraph.data.synthetic", description=__doc__.split("\n\n")[0],
        epilog="Options override the preset's values; OUT_DIR/world.json records the config.")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="dataset folder to write")
    parser.add_argument("--preset", choices=list(PRESETS), default="default",
                        help="tiny ~1k edges, default ~170k (README demo), large ~10M, huge ~100M")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    helps, types = _field_help(), {"int": int, "float": float}
    for f in fields(WorldConfig):
        flag, text = "--" + f.name.replace("_", "-"), helps.get(f.name, "")
        if f.type == "bool":
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, help=text)
        else:
            parser.add_argument(flag, dest=f.name, type=types[f.type], metavar=f.type.upper(),
                                help=text)
    args = parser.parse_args(argv)
    overrides = {f.name: getattr(args, f.name) for f in fields(WorldConfig)
                 if getattr(args, f.name) is not None}
    config = replace(PRESETS[args.preset], **overrides)
    stats = generate_world(args.out_dir, config, progress=not args.quiet)
    print(json.dumps(stats))
    return stats


if __name__ == "__main__":
    main()
