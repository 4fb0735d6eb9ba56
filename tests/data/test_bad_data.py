"""Malformed data: a one-line DataError naming the file and column, or a counted correction with
nothing lost; never a silent change (issue 13, the data battery, part 1)."""
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reelgraph.data.schema import DataError
from reelgraph.data.store import GraphStore

USERS = [u for u in range(12) for _ in range(5)]
ITEMS = [(u * 3 + k) % 20 for u in range(12) for k in range(5)]


def _dataset(tmp_path, interactions=None, tables=None, **write_kw):
    root = tmp_path / "ds"
    (root / "features").mkdir(parents=True, exist_ok=True)
    inter = interactions if interactions is not None else {"user_id": USERS, "item_id": ITEMS}
    inter = inter if isinstance(inter, pa.Table) else pa.table(inter)
    pq.write_table(inter, root / "interactions.parquet", **write_kw)
    for name, cols in (tables or {}).items():
        pq.write_table(pa.table(cols), root / f"{name}.parquet")
    return root


def _build(root, tmp_path):
    return GraphStore.build(str(root), str(tmp_path / "store"))


CASES = {  # name: (interactions, side tables, the error's words)
    "empty-string user id": (
        {"user_id": [str(u) for u in USERS[:-1]] + [""], "item_id": ITEMS}, None,
        "interactions.parquet: column 'user_id' has 1 empty-string ids"),
    "inf weight": ({"user_id": USERS, "item_id": ITEMS,
                    "weight": [1.0] * (len(USERS) - 2) + [np.inf, -np.inf]}, None,
                   "column 'weight' has 2 ±inf values"),
    "negative weight": ({"user_id": USERS, "item_id": ITEMS,
                         "weight": [1.0] * (len(USERS) - 1) + [-0.5]}, None,
                        "column 'weight' has 1 negative values"),
    "inf timestamp": ({"user_id": USERS, "item_id": ITEMS,
                       "timestamp": [1.0] * (len(USERS) - 1) + [np.inf]}, None,
                      "column 'timestamp' has 1 ±inf values"),
    "empty feature vectors": (None, {"features/visual": {"item_id": list(range(20)),
                                                         "feature": pa.array([[]] * 20, pa.list_(pa.float32()))}},
                              "column 'feature' holds empty vectors"),
    "feature nulls only": (None, {"features/visual": {"item_id": list(range(20)),
                                                      "feature": [[]] * 20}},
                           "must be a list of floats, not a list of null"),
    "feature strings": (None, {"features/visual": {"item_id": list(range(20)),
                                                   "feature": [["a", "b"]] * 20}},
                        "column 'feature' must be a list of floats, not a list of string"),
    "creator ids of the wrong type": (
        None, {"item_creator": {"item_id": [f"v{i}" for i in range(20)],
                                "creator_id": [i % 4 for i in range(20)]}},
        "item_creator.parquet: none of its 20 rows has a item_id the interactions mention"),
    "follows of the wrong type": (
        None, {"user_creator": {"user_id": [f"u{u}" for u in range(12)],
                                "creator_id": [u % 3 for u in range(12)]}},
        "the whole table would be dropped"),
    # part 2: columns, ids, values and splits
    "no item_id column": ({"user_id": USERS}, None,
                          "interactions.parquet: missing column 'item_id' (has ['user_id'])"),
    "null user ids": ({"user_id": pa.array(USERS[:-2] + [None, None]), "item_id": ITEMS}, None,
                      "column 'user_id' has 2 null ids"),
    "null item id": ({"user_id": USERS, "item_id": pa.array(ITEMS[:-1] + [None])}, None,
                     "column 'item_id' has 1 null ids"),
    "float ids": ({"user_id": [u + 0.5 for u in USERS], "item_id": ITEMS}, None,
                  "column 'user_id' must hold ints or strings, not double"),
    "list ids": ({"user_id": [[u] for u in USERS], "item_id": ITEMS}, None,
                 "column 'user_id' must hold ints or strings, not list<element: int64>"),
    "NaN weight": ({"user_id": USERS, "item_id": ITEMS,
                    "weight": [1.0] * (len(USERS) - 1) + [float("nan")]}, None,
                   "interactions.parquet: column 'weight' has 1 null/NaN values"),
    "null weight": ({"user_id": USERS, "item_id": ITEMS,
                     "weight": pa.array([1.0] * (len(USERS) - 1) + [None])}, None,
                    "column 'weight' has 1 null/NaN values"),
    "string weights": ({"user_id": USERS, "item_id": ITEMS, "weight": ["1"] * len(USERS)}, None,
                       "column 'weight' must be numeric, not string"),
    "NaN timestamp": ({"user_id": USERS, "item_id": ITEMS,
                       "timestamp": [1.0] * (len(USERS) - 1) + [float("nan")]}, None,
                      "column 'timestamp' has 1 null/NaN values"),
    "misspelt split value": ({"user_id": USERS, "item_id": ITEMS,
                              "split": ["train"] * (len(USERS) - 1) + ["tset"]}, None,
                             "column 'split' has 1 values outside ('train', 'valid', 'test')"),
    "fixed split without test": ({"user_id": USERS, "item_id": ITEMS,
                                  "split": ["train"] * len(USERS)}, None,
                                 "the fixed split leaves an empty split: {'train': 60, 'valid': 0, "
                                 "'test': 0}"),
    "no rows": (pa.table({"user_id": pa.array([], pa.int64()),
                          "item_id": pa.array([], pa.int64())}), None,
                "the 'interactions' table is empty"),
    "users of one interaction each": ({"user_id": list(range(10)), "item_id": [0] * 10}, None,
                                      "the ratio split leaves an empty split"),
    "kg without relation": (None, {"kg": {"head": [1], "tail": [2]}},
                            "kg.parquet: missing column 'relation' (has ['head', 'tail'])"),
    "kg null tail": (None, {"kg": {"head": [1, 2], "relation": ["r", "r"],
                                   "tail": pa.array([3, None])}},
                     "kg.parquet: column 'tail' has 1 null ids"),
    "null creator": (None, {"item_creator": {"item_id": list(range(20)),
                                             "creator_id": pa.array([None] + [1] * 19)}},
                     "item_creator.parquet: column 'creator_id' has 1 null ids"),
    "NaN feature": (None, {"features/visual": {"item_id": list(range(20)),
                                               "feature": [[float("nan"), 1.0]] + [[1.0, 1.0]] * 19}},
                    "column 'feature' has NaN/inf in 1 rows (first item_id 0)"),
    "ragged features": (None, {"features/visual": {"item_id": list(range(20)),
                                                   "feature": [[1.0]] + [[1.0, 1.0]] * 19}},
                        "column 'feature' has rows of different lengths ([1, 2])"),
    "null feature vector": (None, {"features/visual": {
        "item_id": list(range(20)),
        "feature": pa.array([None] + [[1.0, 1.0]] * 19, pa.list_(pa.float32()))}},
        "column 'feature' has 1 null vectors"),
}


@pytest.mark.parametrize("name", CASES)
def test_bad_data_is_one_error_naming_it(name, tmp_path):
    inter, tables, words = CASES[name]
    root = _dataset(tmp_path, inter, tables)
    with pytest.raises(DataError) as e:
        _build(root, tmp_path)
    assert words in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert not os.path.exists(tmp_path / "store") and not list(tmp_path.glob("*.partial"))


def test_repeated_feature_rows_are_counted_and_the_last_kept(tmp_path):
    ids = list(range(20)) + [3, 3, 7]                # item 3 twice more, item 7 once more
    feats = [[float(i), 0.0] for i in range(20)] + [[30.0, 1.0], [31.0, 1.0], [70.0, 1.0]]
    root = _dataset(tmp_path, tables={"features/visual": {"item_id": ids, "feature": feats}})
    store = _build(root, tmp_path)
    assert store.meta["corrections"]["features_visual_duplicate_items"] == 3
    x = store.feature("visual")
    item = {raw: k for k, raw in enumerate(store.ids("item").ids.to_pylist())}
    assert x[item[3]].tolist() == [31.0, 1.0] and x[item[7]].tolist() == [70.0, 1.0]
    assert x[item[5]].tolist() == [5.0, 0.0]         # 20 items + 3 repeats = 23 rows, all told


def test_a_corrupted_data_page_is_an_error_not_read_as_is(tmp_path):
    n = 4000
    inter = {"user_id": [u % 400 for u in range(n)], "item_id": [(u * 7) % 900 for u in range(n)]}
    root = _dataset(tmp_path, inter, write_page_checksum=True, compression="none",
                    use_dictionary=False)
    path = root / "interactions.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF                      # one flipped byte inside a data page
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="interactions.parquet: could not read"):
        _build(root, tmp_path)
    assert not os.path.exists(tmp_path / "store")


def test_cold_eval_items_and_a_single_user_are_warned_and_recorded(tmp_path, caplog):
    # fixed split: items 18 and 19 occur only in test, never in train
    split = ["test" if i in (18, 19) else "train" for i in ITEMS]
    root = _dataset(tmp_path, {"user_id": USERS, "item_id": ITEMS, "split": split})
    with caplog.at_level("WARNING", logger="reelgraph.data"):
        store = _build(root, tmp_path)
    cold = sum(i in (18, 19) for i in ITEMS)
    assert store.meta["warnings"] == {"cold_eval_interactions": cold, "cold_eval_items": 2}
    assert store.meta["splits"]["test"] == cold and sum(store.meta["splits"].values()) == len(ITEMS)
    assert "cold_eval_items: 2" in caplog.text

    root = _dataset(tmp_path / "one", {"user_id": [7] * 10, "item_id": list(range(10))})
    store = GraphStore.build(str(root), str(tmp_path / "one" / "store"))
    assert store.meta["warnings"].get("single_user") == 1


def _flip_until_silently_wrong(path, rng) -> bool:
    """Flips single bytes of ``path`` (restoring each) until one still decodes WITHOUT page
    checksum verification but to other values (a silent corruption); leaves that flip in."""
    clean = path.read_bytes()
    want = pq.read_table(path)
    for at in rng.integers(4, len(clean) // 2, size=400):    # data pages sit before the footer
        data = bytearray(clean)
        data[at] ^= 0x01
        path.write_bytes(bytes(data))
        try:
            got = pq.read_table(path, page_checksum_verification=False)
        except Exception:  # noqa: BLE001 (that flip broke the encoding itself: try another)
            continue
        if not got.equals(want):
            return True
    path.write_bytes(clean)
    return False


@pytest.mark.parametrize("name", ["interactions.parquet", "features/visual.parquet"])
def test_our_writers_write_page_checksums(name, feature_world, tmp_path):
    # a flip that decodes to other values is caught only where the writer wrote page CRCs
    path = tmp_path / "copy.parquet"
    path.write_bytes((Path(feature_world) / name).read_bytes())
    assert _flip_until_silently_wrong(path, np.random.default_rng(0)), "no silent flip found"
    with pytest.raises(OSError, match="CRC"):
        pq.read_table(path, page_checksum_verification=True)


def test_a_file_that_is_not_parquet_is_one_error(tmp_path):
    root = _dataset(tmp_path)
    (root / "interactions.parquet").write_text("user_id,item_id\n1,2\n")   # a CSV, renamed
    with pytest.raises(DataError, match="interactions.parquet: not a readable Parquet file"):
        _build(root, tmp_path)
    assert not os.path.exists(tmp_path / "store") and not list(tmp_path.glob("*.partial"))


CORRECTIONS = {  # name: (interactions, side tables, meta["corrections"], rows in, rows kept)
    "repeated interactions": ({"user_id": USERS + USERS[:5], "item_id": ITEMS + ITEMS[:5]}, None,
                              {"duplicate_interactions": 5}, len(USERS) + 5, len(USERS)),
    "feature of an unknown item": (None, {"features/visual": {
        "item_id": list(range(20)) + [500], "feature": [[1.0, 2.0]] * 21}},
        {"features_visual_unknown_items": 1}, 21, 20),
    "items without features": (None, {"features/visual": {
        "item_id": list(range(10)), "feature": [[1.0, 2.0]] * 10}},
        {"features_visual_missing_items": 10}, 10, 10),
    "follows of an unknown user": (None, {"user_creator": {
        "user_id": list(range(12)) + [99], "creator_id": [1] * 13}},
        {"user_creator_unknown_ids": 1}, 13, 12),
}


@pytest.mark.parametrize("name", CORRECTIONS)
def test_a_correction_is_counted_and_loses_nothing_else(name, tmp_path):
    inter, tables, counted, rows_in, kept = CORRECTIONS[name]
    store = _build(_dataset(tmp_path, inter, tables), tmp_path)
    assert store.meta["corrections"] == counted
    # rows in = rows kept + rows counted as dropped (missing items are counted, not dropped)
    dropped = sum(v for k, v in counted.items() if not k.endswith("_missing_items"))
    assert rows_in - dropped == kept
    if inter is not None:
        assert sum(store.meta["splits"].values()) == kept
    elif "features" in str(tables):
        x = store.feature("visual")
        assert x.shape[0] == 20 and int((x != 0).any(axis=1).sum()) == kept
    else:
        assert store.meta["relations"]["user_creator"] == kept
