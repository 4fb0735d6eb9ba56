"""MovieLens item features (issue 16): a tiny hand-made folder's feature rows land on their
movie's item index in the store; bad feature files fail naming the file; a folder converted
before the reader brought features is not reused; the real ml-1m features, when present."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reelgraph.data import readers
from reelgraph.data.idmap import IdMap
from reelgraph.data.schema import DataError
from reelgraph.data.sources import open_store

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
# users 1-4 rate items 10-14 (5 each, enough to split); item 99 is never rated
INTER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + "".join(
    f"{u}\t{i}\t4\t{100 * u + i}\n" for u in range(1, 5) for i in range(10, 15))
GENRE = {99: [9.0, 9.0, 9.0], 11: [0.0, 1.0, 0.5], 10: [1.0, 0.0, 0.25], 12: [1.0, 1.0, 0.75],
         14: [0.0, 0.0, 1.0], 13: [0.5, 0.5, 0.0]}


def _folder(root: Path, features: dict[str, pa.Table]) -> Path:
    """An ml-100k folder (interactions only, no KG) with ``features/<modality>.parquet``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "ml-100k.inter").write_text(INTER)
    if features:
        (root / "features").mkdir()
    for m, t in features.items():
        pq.write_table(t, root / "features" / f"{m}.parquet")
    return root


def _table(rows: dict[int, list[float]]) -> pa.Table:
    return pa.table({"item_id": pa.array(list(rows), pa.int64()),
                     "feature": pa.array(list(rows.values()), pa.list_(pa.float32()))})


def _item_index(store, raw_id: int) -> int:
    ids = IdMap.load(os.path.join(store.root, "ids", "item.parquet"))
    return int(ids.lookup(pa.array([raw_id], pa.int64()))[0])


def test_feature_rows_land_on_their_movies_index(tmp_path):
    src = _folder(tmp_path / "ml", {"genre": _table(GENRE)})
    store = open_store(str(src), cache_dir=str(tmp_path / "cache"))
    assert store.modalities == {"genre": 3} and store.num_items == 5
    x = store.feature("genre")  # the file lists items as 99, 11, 10, 12, 14, 13
    for raw in range(10, 15):
        assert x[_item_index(store, raw)].tolist() == GENRE[raw]
    # the unrated item 99 was dropped by the reader, not counted as a correction on ingest
    assert not any(k.startswith("features_") for k in store.meta["corrections"])


def test_convert_writes_rated_rows_and_reports_dims(tmp_path):
    src = _folder(tmp_path / "ml", {"genre": _table(GENRE), "textual": _table(
        {i: [0.6, 0.8] for i in range(10, 15)})})
    stats = readers.convert(str(src), str(tmp_path / "out"))
    assert stats["features"] == {"genre": 3, "textual": 2}
    assert stats["tables"]["features/genre"] == 5
    genre = pq.read_table(tmp_path / "out" / "features" / "genre.parquet")
    assert sorted(genre["item_id"].to_pylist()) == [10, 11, 12, 13, 14]


@pytest.mark.parametrize("rows, match", [
    ({10: [1.0, float("nan")], 11: [0.0, 1.0]}, "NaN/inf .*first item_id 10"),
    ({10: [1.0, 2.0], 11: [0.0]}, "vectors of one length"),
    ({10: [], 11: []}, "non-empty vectors"),
    ({50: [1.0], 60: [2.0]}, "no feature row matches"),
])
def test_bad_feature_files_name_the_file(tmp_path, rows, match):
    src = _folder(tmp_path / "ml", {"genre": _table(rows)})
    with pytest.raises(DataError, match=rf"genre\.parquet: .*{match}"):
        readers.convert(str(src), str(tmp_path / "out"))


def test_duplicate_feature_rows_are_refused(tmp_path):
    t = pa.concat_tables([_table({10: [1.0]}), _table({10: [2.0], 11: [3.0]})])
    with pytest.raises(DataError, match="several feature rows"):
        readers.convert(str(_folder(tmp_path / "ml", {"genre": t})), str(tmp_path / "out"))


def test_a_folder_converted_before_features_is_not_reused(tmp_path, monkeypatch):
    """The cache of a folder converted by the reader that ignored ``features/`` (revision 1:
    same input files, so the same fingerprint) is not reused: the new key converts again."""
    src, cache = _folder(tmp_path / "ml", {"genre": _table(GENRE)}), str(tmp_path / "cache")
    with monkeypatch.context() as m:  # the old reader
        m.setattr(readers, "REVISIONS", {})
        m.setattr(readers, "read_features", lambda src, items: {})
        old = open_store(str(src), cache_dir=cache)
    assert old.modalities == {}
    new = open_store(str(src), cache_dir=cache)
    assert new.modalities == {"genre": 3} and new.root != old.root
    assert open_store(str(src), cache_dir=cache).root == new.root  # and then cached


def test_real_ml1m_features(tmp_path):
    """The real features (../shared/data/ml-1m/features, when present): every rated movie has a
    row, Toy Story's (movieId 1) lands on its index in the store."""
    if not (DATA / "ml-1m" / "features").is_dir():
        pytest.skip(f"real data folder {DATA / 'ml-1m'} is absent (../shared/data)")
    store = open_store(str(DATA / "ml-1m"), cache_dir=str(tmp_path / "cache"))
    assert store.modalities == {"genre": 19, "textual": 384} and store.num_items == 3_706
    assert not any(k.startswith("features_") for k in store.meta["corrections"])
    raw = pq.read_table(DATA / "ml-1m" / "features" / "genre.parquet").to_pydict()
    toy_story = np.array(raw["feature"][raw["item_id"].index(1)], dtype=np.float32)
    assert toy_story[:18].nonzero()[0].tolist() == [2, 3, 4]  # Animation, Children's, Comedy
    assert np.array_equal(store.feature("genre")[_item_index(store, 1)].numpy(), toy_story)
