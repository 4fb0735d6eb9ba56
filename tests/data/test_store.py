import logging
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from reelgraph.data.schema import DataError
from reelgraph.data.split import SplitConfig
from reelgraph.data.store import GraphStore


def _write(root, name, **cols):
    os.makedirs(os.path.dirname(os.path.join(root, name)), exist_ok=True)
    pq.write_table(pa.table(cols), os.path.join(root, f"{name}.parquet"))


@pytest.fixture
def dataset(tmp_path):
    root = str(tmp_path / "ds")
    # string user ids, non-contiguous int item ids; indices follow sorted raw ids
    _write(root, "interactions",
           user_id=["a", "a", "a", "b", "b", "b", "c", "a"],
           item_id=[10, 20, 30, 20, 30, 40, 10, 10],   # last row duplicates (a, 10)
           timestamp=[1, 2, 3, 1, 2, 3, 1, 9],
           split=["train", "train", "test", "train", "test", "train", "train", "train"])
    _write(root, "item_creator", item_id=[10, 20, 30, 40, 99], creator_id=["x", "x", "y", "y", "z"])
    _write(root, "user_creator", user_id=["a", "c"], creator_id=["y", "x"])
    _write(root, "kg", head=["10", "20", "e1"], relation=["r", "r", "s"], tail=["e1", "e1", "40"])
    os.makedirs(os.path.join(root, "features"))
    pq.write_table(pa.table({"item_id": [10, 20, 30, 40, 77],
                             "feature": [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 2.0], [0.0, 0.0]]}),
                   os.path.join(root, "features", "visual.parquet"))
    return root


def test_build_fixed_split_maps_and_corrects(dataset, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="reelgraph.data"):
        store = GraphStore.build(dataset, str(tmp_path / "store"))
    assert store.num_nodes == {"user": 3, "item": 4, "creator": 3, "entity": 5, "relation": 2}
    assert store.meta["splits"] == {"train": 5, "valid": 0, "test": 2}
    c = store.meta["corrections"]
    assert c["duplicate_interactions"] == 1
    assert c["item_creator_unknown_ids"] == 1 and c["features_visual_unknown_items"] == 1
    assert "duplicate_interactions" in caplog.text
    train = store.graph("train")
    assert train.rowptr.tolist() == [0, 2, 4, 5]          # a: 10,20  b: 20,40  c: 10
    assert train.col.tolist() == [0, 1, 1, 3, 0]
    assert store.graph("test").col.tolist() == [2, 2]     # a: 30, b: 30
    assert store.ids("user").raw(np.array([1])).to_pylist() == ["b"]
    assert store.ids("item").raw(np.array([3])).to_pylist() == [40]
    rowptr, col = store.csr("item_creator")
    assert rowptr.tolist() == [0, 1, 2, 3, 4] and col.tolist() == [0, 0, 1, 1]
    head, rel, tail = store.kg()
    assert head.tolist() == [0, 1, 4] and tail.tolist() == [4, 4, 3]  # items keep ids 0..3
    assert torch.equal(store.feature("visual")[3], torch.tensor([2.0, 2.0]))
    again = GraphStore.open(str(tmp_path / "store"))
    assert torch.equal(again.graph("train").col, train.col)
    data = store.to_hetero_data()
    assert data["user", "interacts", "item"].edge_index.shape == (2, 5)


def test_ratio_split_and_rebuild(dataset, tmp_path):
    root = str(tmp_path / "s")
    store = GraphStore.build(dataset, root, SplitConfig(method="ratio", ratios=(0.4, 0.3, 0.3)))
    assert sum(store.meta["splits"].values()) == 7
    with pytest.raises(FileExistsError):
        GraphStore.build(dataset, root)
    GraphStore.build(dataset, root, SplitConfig(method="temporal"), overwrite=True)


@pytest.mark.parametrize("bad, match", [
    (dict(user_id=[1, 2], item=[1, 2]), "missing column 'item_id'"),
    (dict(user_id=[1.5, 2.0], item_id=[1, 2]), "'user_id' must hold ints or strings"),
    (dict(user_id=[1, None], item_id=[1, 2]), "null ids"),
    (dict(user_id=[1, 1], item_id=[1, 2], split=["train", "tset"]), "outside"),
    (dict(user_id=[1, 1], item_id=[1, 2], split=["train", "train"]), "empty split"),
    (dict(user_id=[1, 1], item_id=[1, 2], timestamp=[1.0, float("nan")]), "NaN"),
])
def test_bad_interactions_name_file_and_column(tmp_path, bad, match):
    _write(str(tmp_path), "interactions", **bad)
    with pytest.raises(DataError, match=match) as e:
        GraphStore.build(str(tmp_path), str(tmp_path / "store"))
    assert "interactions.parquet" in str(e.value)
    assert not os.path.exists(tmp_path / "store")


def test_corrupt_parquet_and_nan_features(dataset, tmp_path):
    with open(os.path.join(dataset, "features", "visual.parquet"), "wb") as f:
        f.write(b"not parquet")
    with pytest.raises(DataError, match="visual.parquet: not a readable Parquet"):
        GraphStore.build(dataset, str(tmp_path / "x"))
    pq.write_table(pa.table({"item_id": [10], "feature": [[float("nan"), 1.0]]}),
                   os.path.join(dataset, "features", "visual.parquet"))
    with pytest.raises(DataError, match="NaN"):
        GraphStore.build(dataset, str(tmp_path / "x"))
