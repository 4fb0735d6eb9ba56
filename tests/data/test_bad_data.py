"""Malformed data: a one-line DataError naming the file and column, or a counted correction with
nothing lost; never a silent change (issue 13, the data battery, part 1)."""
import json
import os

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
    inter = interactions or {"user_id": USERS, "item_id": ITEMS}
    pq.write_table(pa.table(inter), root / "interactions.parquet", **write_kw)
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
