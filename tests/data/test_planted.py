"""The planted cold-item KG world: what it plants (cold items' train views only, a KG that ties
every item to its genre, a user KG), determinism, and an ingest that keeps its fixed split and
both KGs; its mirror, the cold-user world (cold users' random train views only, a user KG that
ties every user to its genres), and the default world unchanged by the mirror's knobs."""
from __future__ import annotations

import os
from collections import Counter

import pyarrow.compute as pc
import pyarrow.parquet as pq

from reelgraph.data.planted import PlantedKGConfig, write_planted_kg_world
from reelgraph.data.store import GraphStore

SMALL = PlantedKGConfig(num_users=60, num_items=80, num_genres=4, interactions_per_user=6,
                        cold_share=0.5, cold_views=2, kg_noise=0.0, tags_per_item=3,
                        tags_per_genre=4)
COLD_USERS = PlantedKGConfig(num_users=60, num_items=80, num_genres=4, noise=0.0,
                             cold_share=0.0, test_ratio=0.0, kg_noise=0.0, tags_per_item=3,
                             tags_per_genre=4, user_signal=1.0, likes_per_user=4,
                             likes_per_genre=3, cold_user_share=0.5, cold_user_views=2)
FILES = ("interactions", "kg", "user_kg")


def _tables(folder: str) -> dict:
    return {f: pq.read_table(os.path.join(folder, f"{f}.parquet")).to_pylist() for f in FILES}


def test_cold_items_are_in_train_only_through_their_views(tmp_path):
    stats = write_planted_kg_world(str(tmp_path), SMALL)
    rows = _tables(str(tmp_path))["interactions"]
    pairs = [(r["user_id"], r["item_id"]) for r in rows]
    assert len(set(pairs)) == len(pairs)                                 # distinct pairs
    train = [r["item_id"] for r in rows if r["split"] == "train"]
    assert (len(train), len(rows) - len(train)) == (stats["train"], stats["test"])
    per_item = Counter(train)
    few = sum(per_item[f"i{k}"] <= SMALL.cold_views for k in range(SMALL.num_items))
    assert few >= stats["cold_items"] > 0        # a cold item's train rows are its views only
    assert stats["cold_test"] > stats["test"] / 2                        # test is mostly cold


def test_the_kg_ties_every_item_to_its_genre(tmp_path):
    write_planted_kg_world(str(tmp_path), SMALL)
    kg = _tables(str(tmp_path))["kg"]
    genre = {r["head"]: int(r["tail"].split("/")[1]) for r in kg if r["relation"] == "has_genre"}
    assert len(genre) == SMALL.num_items
    assert sum(r["relation"] == "has_studio" for r in kg) == SMALL.num_items
    tags = [r for r in kg if r["relation"] == "has_tag"]
    assert len({(r["head"], r["tail"]) for r in tags}) == len(tags)       # no repeated triple
    assert all(int(r["tail"].split("/")[1]) // SMALL.tags_per_genre == genre[r["head"]]
               for r in tags)                                            # kg_noise = 0
    user_kg = _tables(str(tmp_path))["user_kg"]
    assert {r["relation"] for r in user_kg} == {"likes", "region"}
    assert len(user_kg) == 2 * SMALL.num_users


def test_same_config_same_files_and_the_ingest_keeps_split_and_kgs(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    stats = write_planted_kg_world(a, SMALL)
    write_planted_kg_world(b, SMALL)
    assert _tables(a) == _tables(b)
    store = GraphStore.build(a, str(tmp_path / "store"))
    assert store.meta["split"]["method"] == "fixed"
    assert (store.meta["splits"]["train"], store.meta["splits"]["test"]) == (stats["train"],
                                                                             stats["test"])
    assert store.kg() is not None and store.user_kg() is not None
    assert store.meta["corrections"] == {}
    items = pq.read_table(os.path.join(a, "interactions.parquet"))["item_id"]
    assert store.num_items == len(pc.unique(items))


def test_the_default_world_is_unchanged_by_the_cold_user_knobs(tmp_path):
    stats = write_planted_kg_world(str(tmp_path / "a"), PlantedKGConfig())
    assert stats == {"train": 2957, "test": 2613, "cold_items": 262, "cold_test": 2075}
    write_planted_kg_world(str(tmp_path / "b"), PlantedKGConfig(cold_user_views=5))
    assert _tables(str(tmp_path / "a")) == _tables(str(tmp_path / "b"))   # no cold user: moot
    user_kg = _tables(str(tmp_path / "a"))["user_kg"]
    assert sum(r["relation"] == "likes" for r in user_kg) == 400          # one likes per user


def test_cold_users_are_in_train_only_through_their_views(tmp_path):
    stats = write_planted_kg_world(str(tmp_path), COLD_USERS)
    rows = _tables(str(tmp_path))["interactions"]
    pairs = [(r["user_id"], r["item_id"]) for r in rows]
    assert len(set(pairs)) == len(pairs)                                 # distinct pairs
    train = Counter(r["user_id"] for r in rows if r["split"] == "train")
    test = Counter(r["user_id"] for r in rows if r["split"] == "test")
    assert sum(test.values()) == stats["test"] == stats["cold_user_test"]  # test_ratio = 0
    assert len(test) == stats["cold_users"] > 0
    assert all(train[u] == COLD_USERS.cold_user_views for u in test)     # a view wins a clash
    assert all(train[u] == COLD_USERS.interactions_per_user
               for u in range(COLD_USERS.num_users) if u not in test)   # warm: all train
    assert all(train[u] + test[u] >= COLD_USERS.interactions_per_user for u in test)
    assert stats["cold_items"] == 0


def test_the_user_kg_ties_every_user_to_its_genres(tmp_path):
    write_planted_kg_world(str(tmp_path), COLD_USERS)
    t = _tables(str(tmp_path))
    genre = {r["head"]: int(r["tail"].split("/")[1]) for r in t["kg"]
             if r["relation"] == "has_genre"}                            # kg_noise = 0
    cold = {r["user_id"] for r in t["interactions"] if r["split"] == "test"}
    taste = {}                                  # noise = 0: the genres of a user's own picks
    for r in t["interactions"]:
        if r["user_id"] not in cold or r["split"] == "test":             # not a random view
            taste.setdefault(r["user_id"], set()).add(genre[r["item_id"]])
    likes = {}
    for r in t["user_kg"]:
        if r["relation"] == "likes":
            likes.setdefault(r["user_id"], []).append(int(r["tail"].split("/")[1]))
    assert sorted(likes) == list(range(COLD_USERS.num_users))
    for u, tails in likes.items():
        assert len(set(tails)) == len(tails) <= COLD_USERS.likes_per_user    # distinct
        assert {j // COLD_USERS.likes_per_genre for j in tails} == taste[u]  # both genres
    assert sum(r["relation"] == "region" for r in t["user_kg"]) == COLD_USERS.num_users

