"""A small planted world where only the knowledge graph says which cold items a user will like
(the CKG model's test world, issue 17).

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
``(user, likes, likes/k)``, one of their genres with probability ``user_signal`` (else a random
one), and a random distractor ``(user, region, region/j)``.

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
    ``test_short_fit_kg_beats_no_kg_and_bpr_mf``."""

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
    user_signal: float = 0.7          # P(a user's likes tail is one of their genres)
    num_regions: int = 10             # distractor tails of the user KG's region
    seed: int = 0


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


def _split(cfg: PlantedKGConfig, rng: np.random.Generator, user: np.ndarray, item: np.ndarray):
    """``(user, item, split, cold)``: a cold item's taste-driven interactions all in test, and
    ``cold_views`` train ones by uniformly random users (pairs kept distinct); ``cold [C]``."""
    cold = np.flatnonzero(rng.random(cfg.num_items) < cfg.cold_share)       # [C]
    test = np.isin(item, cold) | (rng.random(item.size) < cfg.test_ratio)   # [E]
    view_item = np.repeat(cold, cfg.cold_views)                             # [C v]
    view_user = rng.integers(cfg.num_users, size=view_item.size)
    key = np.concatenate([user, view_user]) * cfg.num_items + np.concatenate([item, view_item])
    _, first = np.unique(key, return_index=True)                            # distinct pairs
    first = np.sort(first)
    split = np.concatenate([np.where(test, "test", "train"), np.full(view_item.size, "train")])
    return key[first] // cfg.num_items, key[first] % cfg.num_items, split[first], cold


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


def write_planted_kg_world(out_dir: str, config: PlantedKGConfig | None = None) -> dict:
    """Writes the world into ``out_dir`` (module doc); returns its counts."""
    cfg = config or PlantedKGConfig()
    rng = np.random.default_rng(cfg.seed)
    os.makedirs(out_dir, exist_ok=True)
    genre = rng.permutation(np.arange(cfg.num_items) % cfg.num_genres)     # [I] balanced
    user, item, prefs = _interactions(cfg, rng, genre)
    user, item, split, cold = _split(cfg, rng, user, item)
    item_ids = _ids("i", np.arange(cfg.num_items))
    pq.write_table(pa.table({"user_id": pa.array(user, pa.int64()),
                             "item_id": item_ids.take(pa.array(item)),
                             "split": pa.array(split, pa.string())}),
                   os.path.join(out_dir, "interactions.parquet"), **WRITE_OPTIONS)
    pq.write_table(_item_kg(cfg, rng, genre, item_ids), os.path.join(out_dir, "kg.parquet"),
                   **WRITE_OPTIONS)
    U = cfg.num_users
    own = prefs[np.arange(U), rng.integers(cfg.genres_per_user, size=U)]    # [U] one of theirs
    likes = np.where(rng.random(U) < cfg.user_signal, own, rng.integers(cfg.num_genres, size=U))
    pq.write_table(pa.table({
        "user_id": pa.array(np.concatenate([np.arange(U)] * 2), pa.int64()),
        "relation": pa.array(["likes"] * U + ["region"] * U),
        "tail": pa.concat_arrays([_ids("likes/", likes),
                                  _ids("region/", rng.integers(cfg.num_regions, size=U))])}),
        os.path.join(out_dir, "user_kg.parquet"), **WRITE_OPTIONS)
    test = split == "test"
    return {"train": int((~test).sum()), "test": int(test.sum()),
            "cold_items": int(cold.size), "cold_test": int(np.isin(item[test], cold).sum())}
