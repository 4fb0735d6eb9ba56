"""The planted cold-item KG world: what it plants (cold items' train views only, a KG that ties
every item to its genre, a user KG), determinism, and an ingest that keeps its fixed split and
both KGs."""
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
