"""Small planted worlds where only a knowledge graph says what a cold item's or a cold user's
interactions will be (the CKG model's test worlds, issue 17).

``num_genres`` hidden genres; every item has one (balanced). Every user prefers
``genres_per_user`` of them and picks ``interactions_per_user`` distinct items, each from a
preferred genre (uniform over its items) or, with probability ``noise``, any item. A share
``cold_share`` of the items is cold: all of a cold item's taste-driven interactions are test
ones, and its train interactions are ``cold_views`` views by uniformly random users (new items
shown to random users first), so a cold item is about as popular in train as a warm one but
co-interaction says nothing about its genre. A warm item's interaction is a test one with
probability ``test_ratio``. The item KG ties every item to its genre: ``(item, has_genre,
genre/k)`` and ``tags_per_item`` draws of ``(item, has_tag, tag/j)`` from the genre's pool of
``tags_per_genre`` tags (each tail a random genre's with probability ``kg_noise``), plus a
distractor ``(item, has_studio, studio/j)`` with a random studio. The user KG gives each user
``likes_per_user`` draws of ``(user, likes, likes/j)``: its genres in turn from a random one,
each replaced by a random genre with probability ``1 - user_signal``, ``j`` a tail from that
genre's pool of ``likes_per_genre`` (a pool of one: ``likes/k`` names genre ``k``; repeated
triples kept once), and a random distractor ``(user, region, region/j)``.

The mirror world, where only the USER KG carries the signal (``cold_share=0``,
``cold_user_share > 0``): a share ``cold_user_share`` of the users is cold, drawn from a stream
of its own (the rest of the world stays as without them): all of a cold user's taste-driven
interactions are test ones, and its train interactions are ``cold_user_views`` distinct
uniformly random items (a new user's first clicks on whatever it was shown), each taking the
place of a taste-driven test pair it may coincide with. So a cold user is in train like a
sparse warm one, but nothing about its train items depends on its taste (no item is cold, so
the items and the item KG are plain, and ``test_ratio=0`` makes the cold users' interactions
the whole test split); only its user-KG ``likes`` triples place it, through the warm users
who like the same tails. Cold items' views may still land on a cold user.
:data:`COLD_USER_WORLD` is that world.

Written in the layout the readers ingest (:mod:`reelgraph.data.schema`), the split fixed by a
``split`` column: ``interactions.parquet``, ``kg.parquet``, ``user_kg.parquet``. Hundreds of users
and items, so a short fit takes seconds. Same config, same files.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from reelgraph.data.schema import WRITE_OPTIONS


@dataclass(frozen=True)
class PlantedKGConfig:
    """The world's knobs (module doc); the defaults are the world of ``tests/models/test_ckg.py``'s
    ``test_short_fit_kg_beats_no_kg_and_bpr_mf`` (:data:`COLD_USER_WORLD` its mirror's)."""

    num_users: int = 400
    num_items: int = 600
    num_genres: int = 20
    genres_per_user: int = 2          # preferred genres per user
    interactions_per_user: int = 12   # distinct items per user, train and test together
    noise: float = 0.05               # share of interactions with a uniformly random item
    cold_share: float = 0.4           # share of items whose taste-driven interactions are all test
    cold_views: int = 3               # train interactions of a cold item, by random users
    test_ratio: float = 0.2           # P(a warm item's interaction is a test one)
    kg_noise: float = 0.05            # P(a has_genre or has_tag tail ignores the item's genre)
    tags_per_item: int = 8            # has_tag draws per item from its genre's pool (distinct kept)
    tags_per_genre: int = 15          # size of a genre's tag pool
    num_studios: int = 30             # tails of the distractor relation has_studio (random)
    user_signal: float = 0.7          # P(a likes draw is from one of the user's genres)
    likes_per_user: int = 1           # likes draws per user (its genres in turn; distinct kept)
    likes_per_genre: int = 1          # size of a genre's pool of likes tails
    cold_user_share: float = 0.0      # share of users whose taste-driven interactions are all test
    cold_user_views: int = 3          # train interactions of a cold user: random distinct items
    num_regions: int = 10             # distractor tails of the user KG's region
    seed: int = 0


# the mirror world (module doc): 800 users, no cold items, a quarter of the users cold (their
# interactions are the whole test split, one random view each in train), each user liking 8
# draws from its genres' pools of 15 (95% signal)
COLD_USER_WORLD = PlantedKGConfig(num_users=800, cold_share=0.0, test_ratio=0.0,
                                  user_signal=0.95, likes_per_user=8, likes_per_genre=15,
                                  cold_user_share=0.25, cold_user_views=1)


def _ids(prefix: str, ints: np.ndarray) -> pa.Array:
    return pa.array([f"{prefix}{int(i)}" for i in ints], pa.string())


def _interactions(cfg: PlantedKGConfig, rng: np.random.Generator, genre: np.ndarray):
    """``(user [E], item [E], prefs [U, g])``: distinct items per user, mostly from the user's
    preferred genres ``prefs``."""
    U, I, n = cfg.num_users, cfg.num_items, cfg.interactions_per_user
    prefs = np.stack([rng.choice(cfg.num_genres, cfg.genres_per_user, replace=False)
                      for _ in range(U)])                                    # [U, g]
    users, items = [], []
    for u in range(U):
        liked = np.flatnonzero(np.isin(genre, prefs[u]))                    # the user's items
        weight = np.full(I, cfg.noise / I)
        weight[liked] += (1 - cfg.noise) / liked.size
        picked = rng.choice(I, n, replace=False, p=weight)                  # [n] distinct
        users.append(np.full(n, u))
        items.append(picked)
    return np.concatenate(users), np.concatenate(items), prefs


def _cold_users(cfg: PlantedKGConfig):
    """``(cold [C'], view_user [C' v], view_item [C' v])``: the cold users and their
    ``cold_user_views`` distinct uniformly random train items, from a stream of their own."""
    rng = np.random.default_rng([cfg.seed, 1])
    cold = np.flatnonzero(rng.random(cfg.num_users) < cfg.cold_user_share)  # [C']
    order = np.argsort(rng.random((cold.size, cfg.num_items)), axis=1)     # [C', I]
    view_item = order[:, :cfg.cold_user_views].ravel()                     # [C' v] distinct
    return cold, np.repeat(cold, cfg.cold_user_views), view_item


def _split(cfg: PlantedKGConfig, rng: np.random.Generator, user: np.ndarray, item: np.ndarray):
    """``(user, item, split, cold, cold_users)``: a cold item's taste-driven interactions all in
    test, and ``cold_views`` train ones by uniformly random users; a cold user's all in test, and
    its ``cold_user_views`` random train items first, so they win a coinciding pair (pairs kept
    distinct); ``cold [C]``, ``cold_users [C']``."""
    cold = np.flatnonzero(rng.random(cfg.num_items) < cfg.cold_share)       # [C]
    test = np.isin(item, cold) | (rng.random(item.size) < cfg.test_ratio)   # [E]
    view_item = np.repeat(cold, cfg.cold_views)                             # [C v]
    view_user = rng.integers(cfg.num_users, size=view_item.size)
    cold_users, cu_user, cu_item = _cold_users(cfg)
    test |= np.isin(user, cold_users)
    key = (np.concatenate([cu_user, user, view_user]) * cfg.num_items
           + np.concatenate([cu_item, item, view_item]))
    _, first = np.unique(key, return_index=True)                            # distinct pairs
    first = np.sort(first)
    split = np.concatenate([np.full(cu_item.size, "train"), np.where(test, "test", "train"),
                            np.full(view_item.size, "train")])
    return (key[first] // cfg.num_items, key[first] % cfg.num_items, split[first], cold,
            cold_users)


def _item_kg(cfg: PlantedKGConfig, rng: np.random.Generator, genre: np.ndarray,
             item_ids: pa.Array) -> pa.Table:
    """``has_genre`` (1 per item), ``has_tag`` (``tags_per_item`` draws, distinct) and
    ``has_studio`` (1, random) triples."""
    I, G, T, P = cfg.num_items, cfg.num_genres, cfg.tags_per_item, cfg.tags_per_genre
    noisy = lambda g: np.where(rng.random(g.size) < cfg.kg_noise, rng.integers(G, size=g.size), g)
    tag = noisy(np.repeat(genre, T)) * P + rng.integers(P, size=I * T)       # [I T]
    key = np.unique(np.repeat(np.arange(I), T) * G * P + tag)               # distinct (item, tag)
    owner, tag = key // (G * P), key % (G * P)
    return pa.table({
        "head": pa.concat_arrays([item_ids, item_ids.take(pa.array(owner)), item_ids]),
        "relation": pa.array(["has_genre"] * I + ["has_tag"] * owner.size + ["has_studio"] * I),
        "tail": pa.concat_arrays([_ids("genre/", noisy(genre)), _ids("tag/", tag),
                                  _ids("studio/", rng.integers(cfg.num_studios, size=I))])})


def _user_kg(cfg: PlantedKGConfig, rng: np.random.Generator, prefs: np.ndarray) -> pa.Table:
    """``likes`` (``likes_per_user`` draws per user, distinct) and ``region`` (1, random)
    triples."""
    U, G, n, P = cfg.num_users, cfg.num_genres, cfg.likes_per_user, cfg.likes_per_genre
    start = rng.integers(cfg.genres_per_user, size=U)                       # [U]
    turn = (start + np.arange(n)[:, None]) % cfg.genres_per_user           # [n, U]
    own = prefs[np.arange(U), turn]                                         # [n, U] theirs
    likes = np.where(rng.random((n, U)) < cfg.user_signal, own, rng.integers(G, size=(n, U)))
    if P > 1:
        likes = likes * P + rng.integers(P, size=(n, U))                    # from the pool
    key = np.unique(np.tile(np.arange(U), n) * G * P + likes.ravel())      # distinct, by user
    return pa.table({
        "user_id": pa.array(np.concatenate([key // (G * P), np.arange(U)]), pa.int64()),
        "relation": pa.array(["likes"] * key.size + ["region"] * U),
        "tail": pa.concat_arrays([_ids("likes/", key % (G * P)),
                                  _ids("region/", rng.integers(cfg.num_regions, size=U))])})


def write_planted_kg_world(out_dir: str, config: PlantedKGConfig | None = None) -> dict:
    """Writes the world into ``out_dir`` (module doc); returns its counts (the cold users' only
    when it has some)."""
    cfg = config or PlantedKGConfig()
    rng = np.random.default_rng(cfg.seed)
    os.makedirs(out_dir, exist_ok=True)
    genre = rng.permutation(np.arange(cfg.num_items) % cfg.num_genres)     # [I] balanced
    user, item, prefs = _interactions(cfg, rng, genre)
    user, item, split, cold, cold_users = _split(cfg, rng, user, item)
    item_ids = _ids("i", np.arange(cfg.num_items))
    pq.write_table(pa.table({"user_id": pa.array(user, pa.int64()),
                             "item_id": item_ids.take(pa.array(item)),
                             "split": pa.array(split, pa.string())}),
                   os.path.join(out_dir, "interactions.parquet"), **WRITE_OPTIONS)
    pq.write_table(_item_kg(cfg, rng, genre, item_ids), os.path.join(out_dir, "kg.parquet"),
                   **WRITE_OPTIONS)
    pq.write_table(_user_kg(cfg, rng, prefs), os.path.join(out_dir, "user_kg.parquet"),
                   **WRITE_OPTIONS)
    test = split == "test"
    stats = {"train": int((~test).sum()), "test": int(test.sum()),
             "cold_items": int(cold.size), "cold_test": int(np.isin(item[test], cold).sum())}
    if cold_users.size:
        stats.update(cold_users=int(cold_users.size),
                     cold_user_test=int(np.isin(user[test], cold_users).sum()))
    return stats
