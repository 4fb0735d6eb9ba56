import json
import os
from dataclasses import replace

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from reelgraph.data import schema
from reelgraph.data.synthetic import PRESETS, WorldConfig, _degrees, generate_world, main

TINY = PRESETS["tiny"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("tiny"))
    return root, generate_world(root, TINY)


def _index(ids) -> np.ndarray:
    """"v000123" / "c0042" / "topic/3" -> 123 / 42 / 3."""
    return np.array([int(s.split("/")[-1].lstrip("vc")) for s in ids.to_pylist()])


def _item_topic(root: str) -> np.ndarray:
    kg = schema.read_table(os.path.join(root, "kg.parquet"), schema.KG)
    kg = kg.filter(pc.equal(kg["relation"], "has_topic"))
    topic = np.full(TINY.num_items, -1)
    topic[_index(kg["head"])] = _index(kg["tail"])
    return topic


def _interactions(root: str):
    t = schema.read_table(schema.INTERACTIONS.filename(root), schema.INTERACTIONS)
    return (t["user_id"].to_numpy() - TINY.user_id_offset, _index(t["item_id"]),
            t["timestamp"].to_numpy(), t["weight"].to_numpy())


def test_tables_pass_schema_checks(world):
    root, stats = world
    specs = (schema.INTERACTIONS, schema.ITEM_CREATOR, schema.USER_CREATOR, schema.KG)
    rows = {s.name: schema.read_table(s.filename(root), s).num_rows for s in specs}
    assert rows == {"interactions": stats["num_interactions"], "item_creator": TINY.num_items,
                    "user_creator": stats["num_follows"], "kg": stats["num_kg_triples"]}
    assert set(schema.feature_files(root)) == {"visual", "acoustic", "textual"}
    inter = pq.ParquetFile(schema.INTERACTIONS.filename(root))
    assert inter.metadata.num_row_groups == 3  # 100 users in chunks of 40: one row group each
    assert str(inter.schema_arrow) == str(pq.read_schema(schema.INTERACTIONS.filename(root)))
    assert json.load(open(os.path.join(root, "world.json")))["stats"] == stats
    assert 700 <= stats["num_interactions"] <= 1500


def test_same_seed_same_bytes(tmp_path):
    generate_world(str(tmp_path / "a"), TINY)
    generate_world(str(tmp_path / "b"), TINY)
    generate_world(str(tmp_path / "c"), replace(TINY, seed=1))
    for name in ("interactions", "item_creator", "user_creator", "kg", "features/visual"):
        a, b = (open(tmp_path / d / f"{name}.parquet", "rb").read() for d in "ab")
        assert a == b, name
    a, c = (pq.read_table(tmp_path / d / "interactions.parquet") for d in "ac")
    assert not a.equals(c)


def test_users_have_min_distinct_items_in_time_order(world):
    user, item, ts, weight = _interactions(world[0])
    assert np.array_equal(np.unique(user), np.arange(TINY.num_users))
    distinct = np.bincount(np.unique(user * TINY.num_items + item) // TINY.num_items)
    assert distinct.min() >= TINY.min_interactions
    same_user = user[1:] == user[:-1]
    assert (user[1:] >= user[:-1]).all() and (ts[1:][same_user] > ts[:-1][same_user]).all()
    assert ((weight > 0) & (weight <= 1)).all()


def test_duplicates_are_rare_and_only_rewatches(world, tmp_path):
    stats = world[1]
    assert 0 < stats["num_repeated_pairs"] < 0.1 * stats["num_interactions"]
    assert generate_world(str(tmp_path), replace(TINY, rewatch=0.0))["num_repeated_pairs"] == 0


def test_every_item_has_one_creator(world):
    root = world[0]
    ic = schema.read_table(schema.ITEM_CREATOR.filename(root), schema.ITEM_CREATOR)
    items = _index(ic["item_id"])
    assert np.array_equal(np.sort(items), np.arange(TINY.num_items))  # exactly one row per item
    creators = _index(ic["creator_id"])
    assert np.array_equal(np.unique(creators), np.arange(TINY.num_creators))  # no empty vlogger
    assert np.isin(_interactions(root)[1], items).all()
    creator_topic = np.full(TINY.num_creators, -1)
    creator_topic[creators] = _item_topic(root)[items]
    assert (creator_topic[creators] == _item_topic(root)[items]).all()  # a vlogger has one topic


@pytest.mark.parametrize("name", ["visual", "acoustic", "textual"])
def test_features_cover_items(world, name):
    path = schema.feature_files(world[0])[name]
    table = schema.read_table(path, schema.FEATURES)
    dim = getattr(TINY, f"{name}_dim")
    x = table["feature"].combine_chunks().flatten().to_numpy().reshape(table.num_rows, -1)
    assert x.shape == (TINY.num_items, dim) and x.dtype == np.float32 and np.isfinite(x).all()
    assert np.array_equal(np.sort(_index(table["item_id"])), np.arange(TINY.num_items))


def _centroid_accuracy(root: str, name: str) -> float:
    """Nearest-centroid topic accuracy on odd items, centroids fitted on even items."""
    table = pq.read_table(schema.feature_files(root)[name])
    x = table["feature"].combine_chunks().flatten().to_numpy().reshape(table.num_rows, -1)
    topic = _item_topic(root)[_index(table["item_id"])]
    fit = np.arange(len(x)) % 2 == 0
    centroid = np.stack([x[fit & (topic == c)].mean(0) for c in range(TINY.num_communities)])
    guess = ((x[~fit, None, :] - centroid[None]) ** 2).sum(-1).argmin(1)
    return float((guess == topic[~fit]).mean())


def test_features_carry_topic_by_signal(world, tmp_path):
    chance = 1 / TINY.num_communities
    acc = {m: _centroid_accuracy(world[0], m) for m in ("visual", "acoustic", "textual")}
    assert acc["visual"] > 0.95 and acc["textual"] > 0.8 and acc["acoustic"] > chance + 0.15
    generate_world(str(tmp_path), replace(TINY, visual_signal=0.0))
    assert _centroid_accuracy(str(tmp_path), "visual") < chance + 0.15


def test_users_concentrate_in_their_topics(world):
    root = world[0]
    user, item, _, _ = _interactions(root)
    counts = np.zeros((TINY.num_users, TINY.num_communities))
    np.add.at(counts, (user, _item_topic(root)[item]), 1)
    top_share = counts.max(1) / counts.sum(1)
    assert top_share.mean() > 2.5 / TINY.num_communities
    follows = schema.read_table(schema.USER_CREATOR.filename(root), schema.USER_CREATOR)
    ic = pq.read_table(schema.ITEM_CREATOR.filename(root))
    creator_topic = dict(zip(_index(ic["creator_id"]), _item_topic(root)[_index(ic["item_id"])]))
    f_user = follows["user_id"].to_numpy() - TINY.user_id_offset
    f_topic = np.array([creator_topic[c] for c in _index(follows["creator_id"])])
    follow_share = counts[f_user, f_topic] / counts[f_user].sum(1)  # ~1/C if follows were random
    assert follow_share.mean() > 1.75 / TINY.num_communities


def test_popularity_is_skewed(world):
    counts = np.sort(np.bincount(_interactions(world[0])[1], minlength=TINY.num_items))[::-1]
    assert counts[: TINY.num_items // 10].sum() / counts.sum() > 0.3


@pytest.mark.parametrize("low,avg,high", [(5, 10, 40), (5, 30, 500), (5, 50, 2000), (3, 3, 3)])
def test_degrees_hit_the_mean(low, avg, high):
    cfg = WorldConfig(num_items=5000, min_interactions=low, avg_interactions=avg, max_interactions=high)
    deg = _degrees(np.random.default_rng(0), 200_000, cfg)
    assert deg.min() >= low and deg.max() <= high and abs(deg.mean() - avg) < 0.02 * avg


@pytest.mark.parametrize("bad", [{"num_creators": 2}, {"noise": 1.5}, {"min_interactions": 0},
                                 {"max_interactions": 200}, {"avg_interactions": 2.0}])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="WorldConfig needs"):
        replace(TINY, **bad)


def test_cli_overrides_preset_and_drops_stale_files(tmp_path, capsys):
    root = str(tmp_path)
    main([root, "--preset", "tiny", "--quiet"])
    stats = main([root, "--preset", "tiny", "--quiet", "--no-kg", "--acoustic-dim", "0", "--seed", "2"])
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == stats
    assert stats["num_kg_triples"] == 0 and stats["feature_dims"] == {"visual": 128, "textual": 64}
    assert not os.path.exists(os.path.join(root, "kg.parquet"))
    assert set(schema.feature_files(root)) == {"visual", "textual"}
    assert json.load(open(os.path.join(root, "world.json")))["config"]["seed"] == 2
