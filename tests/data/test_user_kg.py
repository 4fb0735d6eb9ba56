"""User attributes as a user-side KG: the MovieLens reader's ``user_kg`` table, its ingest into
the store (``GraphStore.user_kg``) and the item-side collaborative KG built from it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reelgraph.data import readers
from reelgraph.data.schema import USER_KG, DataError, read_table
from reelgraph.data.store import GraphStore
from reelgraph.samplers.plans.ckg import ckg_graphs

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
USER_HEADER = "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"


def _ml_folder(folder: Path, users: str) -> Path:
    folder.mkdir(parents=True)
    rows = "".join(f"{u}\t{i}\t{1 + (u + i) % 5}\t{100 * i + u}\n"   # ratings 1..5
                   for u in (1, 2) for i in range(10, 20))
    (folder / "ml-100k.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + rows)
    (folder / "ml-100k.user").write_text(users)
    return folder


def test_movielens_user_attributes_become_triples(tmp_path):
    """Ages map to ML-1M's groups (17 -> 1, 24 -> 18, 60 -> 56), zips to their first three
    characters; user 3 rated nothing and is left out."""
    src = _ml_folder(tmp_path / "src", USER_HEADER + "1\t17\tM\twriter\t85711\n"
                     "2\t24\tF\tother\t94043\n3\t60\tM\tother\t10001\n")
    stats = readers.convert(str(src), str(tmp_path / "out"))
    assert stats["tables"]["user_kg"] == 8
    t = read_table(str(tmp_path / "out" / "user_kg.parquet"), USER_KG).to_pydict()
    assert t["user_id"] == [1] * 4 + [2] * 4
    assert t["tail"] == ["age:1", "gender:M", "occupation:writer", "zip3:857",
                         "age:18", "gender:F", "occupation:other", "zip3:940"]
    store = GraphStore.build(str(tmp_path / "out"), str(tmp_path / "store"))
    head, rel, tail = store.user_kg()
    U, values = store.num_users, store.ids("user_entity").ids.to_pylist()
    assert store.num_nodes["user_entity"] == U + 8 and store.num_nodes["user_relation"] == 4
    assert sorted(head.tolist()) == [0] * 4 + [1] * 4 and (tail >= U).all()
    user_ids = store.ids("user").ids.to_pylist()
    got = {(user_ids[h], values[t - U]) for h, t in zip(head.tolist(), tail.tolist())}
    assert got == set(zip(t["user_id"], t["tail"]))
    # the item-side CKG: items -> users at 5 rating levels, users -> 8 attribute values
    g_u, g_i = ckg_graphs(store, user_side=True, use_kg=True, rating_relations=True)
    assert g_i.num_nodes == U + store.num_items + 8 and g_u.num_nodes == U + store.num_items
    assert g_i.num_relations == 2 * (5 + 4) and g_u.num_relations == 2 * 5


def test_bad_user_file_is_refused(tmp_path):
    src = _ml_folder(tmp_path / "src", "user_id:token\tage:token\n1\t17\n")
    with pytest.raises(DataError, match=r"expected 5 tab-separated fields"):
        readers.convert(str(src), str(tmp_path / "out"))
    src = _ml_folder(tmp_path / "src2", USER_HEADER + "1\told\tM\twriter\t85711\n")
    with pytest.raises(DataError, match=r"ml-100k\.user, line 2: 'age' must be a finite number"):
        readers.convert(str(src), str(tmp_path / "out"))


def test_real_ml100k_user_kg(tmp_path):
    """943 users x 4 attributes: 7 age groups, 2 genders, 21 occupations, 382 zip prefixes."""
    if not (DATA / "ml-100k" / "ml-100k.user").exists():
        pytest.skip(f"real data folder {DATA / 'ml-100k'} is absent (../shared/data)")
    readers.convert(str(DATA / "ml-100k"), str(tmp_path / "out"))
    t = read_table(str(tmp_path / "out" / "user_kg.parquet"), USER_KG)
    assert t.num_rows == 943 * 4
    tails = np.array(t["tail"].to_pylist())
    counts = {r: len({x for x in tails if x.startswith(r + ":")})
              for r in ("age", "gender", "occupation", "zip3")}
    assert counts == {"age": 7, "gender": 2, "occupation": 21, "zip3": 382}
    assert readers.revision(str(DATA / "ml-100k")) == 3
