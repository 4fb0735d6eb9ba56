"""``open_store``: a cache keyed by content (an edited input rebuilds), stores told apart from
folders that merely hold a ``meta.json``, no ``.partial`` left by a failed build (issue 13)."""
import json
import logging
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reelgraph.data.schema import DataError
from reelgraph.data.sources import fingerprint, open_store


def _write(folder, users, items):
    os.makedirs(folder, exist_ok=True)
    pq.write_table(pa.table({"user_id": users, "item_id": items}),
                   os.path.join(folder, "interactions.parquet"))


def _dataset(folder, extra_users=0):
    users = [u for u in range(20 + extra_users) for _ in range(5)]
    items = [(u * 7 + k) % 30 for u in range(20 + extra_users) for k in range(5)]
    _write(folder, users, items)


def test_an_edited_input_rebuilds_the_store(tmp_path, caplog):
    data, cache = str(tmp_path / "ds"), str(tmp_path / "cache")
    _dataset(data)
    first = open_store(data, cache_dir=cache)
    assert first.num_users == 20
    again = open_store(data, cache_dir=cache)  # unchanged: the same store, not rebuilt
    assert again.root == first.root and again.meta == first.meta
    _dataset(data, extra_users=5)              # the user edits the input
    with caplog.at_level(logging.WARNING, logger="reelgraph.data"):
        edited = open_store(data, cache_dir=cache)
    assert edited.num_users == 25 and edited.root == first.root
    assert "changed since its store was built (interactions.parquet)" in caplog.text


def test_the_fingerprint_sees_an_edit_a_new_file_and_a_removed_one(tmp_path):
    _dataset(tmp_path)
    a = fingerprint(str(tmp_path))
    _dataset(tmp_path, extra_users=1)
    b = fingerprint(str(tmp_path))
    pq.write_table(pa.table({"item_id": [1], "creator_id": [2]}), tmp_path / "item_creator.parquet")
    c = fingerprint(str(tmp_path))
    os.remove(tmp_path / "item_creator.parquet")
    assert a != b and set(c) == {"interactions.parquet", "item_creator.parquet"}
    assert fingerprint(str(tmp_path)) == b


def test_a_folder_holding_an_unrelated_meta_json_is_read_as_data(tmp_path):
    data = tmp_path / "ds"
    _dataset(str(data))
    (data / "meta.json").write_text(json.dumps({"author": "someone", "version": 3}))
    store = open_store(str(data), cache_dir=str(tmp_path / "cache"))
    assert store.num_users == 20 and store.root != str(data)


def test_a_folder_without_interactions_names_the_missing_file(tmp_path):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "users.csv").write_text("id\n1\n")
    with pytest.raises(DataError, match="no interactions.parquet"):
        open_store(str(tmp_path / "ds"), cache_dir=str(tmp_path / "cache"))


def test_a_failed_build_leaves_no_partial_folder(tmp_path):
    data, cache = tmp_path / "ds", tmp_path / "cache"
    _write(str(data), [1, None, 3], [1, 2, 3])  # a null id: a DataError during ingest
    with pytest.raises(DataError, match="null"):
        open_store(str(data), cache_dir=str(cache))
    assert not list(cache.glob("**/*.partial*"))
    assert not (cache / "stores").exists() or not any((cache / "stores").iterdir())


def test_a_store_built_before_fingerprints_is_rebuilt(tmp_path, caplog):
    # stores of earlier versions kept meta["source"] as the input folder's path, not a fingerprint
    data, cache = str(tmp_path / "ds"), str(tmp_path / "cache")
    _dataset(data)
    first = open_store(data, cache_dir=cache)
    meta_path = os.path.join(first.root, "meta.json")
    meta = json.load(open(meta_path))
    meta["source"] = os.path.abspath(data)
    json.dump(meta, open(meta_path, "w"))
    with caplog.at_level(logging.WARNING, logger="reelgraph.data"):
        again = open_store(data, cache_dir=cache)
    assert "(no fingerprint kept): rebuilding" in caplog.text
    assert again.meta["source"] == fingerprint(data)


KILLED_BUILD = """
import os, signal, sys
from reelgraph.data import ingest
from reelgraph.data.sources import open_store
def killed(*args, **kwargs):  # after the id maps are written, before the CSRs: a real crash
    os.kill(os.getpid(), signal.SIGKILL)
ingest._save_splits = killed
open_store(sys.argv[1], cache_dir=sys.argv[2])
"""


def test_a_build_killed_midway_leaves_no_store_that_opens(tmp_path):
    import subprocess
    import sys

    from reelgraph.data.store import GraphStore

    data, cache = str(tmp_path / "ds"), str(tmp_path / "cache")
    _dataset(data)
    run = subprocess.run([sys.executable, "-c", KILLED_BUILD, data, cache], capture_output=True)
    assert run.returncode == -9, run.stderr.decode()[-2000:]
    stores = os.path.join(cache, "stores")
    partial = [n for n in os.listdir(stores) if n.endswith(".partial")]
    assert len(partial) == 1 and not os.path.exists(os.path.join(stores, partial[0], "meta.json"))
    root = os.path.join(stores, partial[0].removesuffix(".partial"))
    assert not os.path.exists(root)                     # nothing under the store's own name
    with pytest.raises(Exception):
        GraphStore.open(os.path.join(stores, partial[0]))   # the half-built folder does not open
    store = open_store(data, cache_dir=cache)             # the next run builds it whole
    assert store.root == root and store.num_users == 20
    assert os.listdir(stores) == [os.path.basename(root)]  # and the leftover is gone
