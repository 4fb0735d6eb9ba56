"""Readers: tiny hand-made folders (exact outputs, strict errors) and the real data's statistics."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from reelgraph.data import readers
from reelgraph.data.schema import (INTERACTIONS, ITEM_CREATOR, KG, USER_CREATOR, DataError,
                                   read_table)

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"


def _write(folder: Path, files: dict[str, str | bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    return folder


def _ml_tiny(folder: Path, inter_rows: str = "1\t10\t4\t100\n2\t10\t5\t200\n2\t11\t3\t300\n",
             link: str = "ml-100k.corrected.link") -> Path:
    return _write(folder, {
        "ml-100k.inter": "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                         + inter_rows,
        "ml-100k.kg": "head_id:token\trelation_id:token\ttail_id:token\n"
                      "m.a\tfilm.film.directed_by\tm.d1\nm.a\tfilm.film.directed_by\tm.d2\n"
                      "m.b\tfilm.film.directed_by\tm.d1\nm.b\tfilm.film.directed_by\tm.d1\n"
                      "m.d1\tfilm.director.film\tm.b\nm.z\tfilm.film.genre\tm.g\n",
        link: "item_id:token\tentity_id:token\n10\tm.a\n11\tm.b\n99\tm.z\n"})


# ---------------------------------------------------------------- tiny inputs, exact outputs

def test_amazon_tiny_exact(tmp_path):
    src = _write(tmp_path / "src", {"train.txt": "0 1 2\r\n1 3\r\n", "test.txt": "0 4\n1 \n"})
    stats = readers.convert(str(src), str(tmp_path / "out"))
    t = read_table(str(tmp_path / "out" / "interactions.parquet"), INTERACTIONS).to_pydict()
    assert t == {"user_id": [0, 0, 1, 0], "item_id": [1, 2, 3, 4],
                 "split": ["train", "train", "train", "test"]}
    assert stats["splits"] == {"train": 3, "test": 1} and stats["users_without_test"] == 1


@pytest.mark.parametrize("train, line", [("0 1 2\n1 x 3\n", 2), ("0 1\n1 2 0x3\n", 2),
                                         ("0 1 -2\n", 1), ("0 1\n\n2 3\n", 2),
                                         ("0 1\n1 2\n0 3\n", 3)])
def test_amazon_malformed_names_file_and_line(tmp_path, train, line):
    src = _write(tmp_path / "src", {"train.txt": train, "test.txt": "0 5\n"})
    with pytest.raises(DataError, match=rf"train\.txt, line {line}:"):
        readers.convert(str(src), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_movielens_tiny_kg_and_directors(tmp_path):
    stats = readers.convert(str(_ml_tiny(tmp_path / "src")), str(tmp_path / "out"))
    out = tmp_path / "out"
    inter = read_table(str(out / "interactions.parquet"), INTERACTIONS)
    assert inter["weight"].to_pylist() == [4.0, 5.0, 3.0]
    assert inter["timestamp"].to_pylist() == [100, 200, 300]
    ic = read_table(str(out / "item_creator.parquet"), ITEM_CREATOR).to_pydict()
    assert ic == {"item_id": [10, 10, 11], "creator_id": ["m.d1", "m.d2", "m.d1"]}
    kg = read_table(str(out / "kg.parquet"), KG).to_pydict()
    # linked rated items become their item id; item 99 is linked but never rated: keeps its MID.
    # The KG keeps its rows as given (a repeated triple stays); item_creator holds distinct pairs.
    assert kg["head"] == ["10", "10", "11", "11", "m.d1", "m.z"]
    assert kg["tail"] == ["m.d1", "m.d2", "m.d1", "m.d1", "11", "m.g"]
    assert stats["items_with_creator"] == 2 and not (out / "user_creator.parquet").exists()


def test_derive_follows_is_opt_in(tmp_path):
    readers.convert(str(_ml_tiny(tmp_path / "src")), str(tmp_path / "out"), derive_follows=True)
    uc = read_table(str(tmp_path / "out" / "user_creator.parquet"), USER_CREATOR).to_pydict()
    assert uc == {"user_id": [1, 1, 2, 2], "creator_id": ["m.d1", "m.d2", "m.d1", "m.d2"]}
    src = _write(tmp_path / "amz", {"train.txt": "0 1\n", "test.txt": "0 2\n"})
    with pytest.raises(DataError, match="only MovieLens"):
        readers.convert(str(src), str(tmp_path / "out2"), derive_follows=True)


@pytest.mark.parametrize("rows, match", [
    ("1\t10\t4\n", r"ml-100k\.inter, line 2: expected 4 tab-separated fields, found 3"),
    ("1\t10\t4\t100\n1\tten\t4\t100\n", r"ml-100k\.inter, line 3: 'item_id:token' must be"),
    ("1\t10\tnan\t100\n", r"ml-100k\.inter, line 2: 'rating:float' must be a finite number"),
    ("1\t10\t4\t100\n1\t10\tfour\t100\n", r"ml-100k\.inter, line 3: 'rating:float' must be"),
    ("1\t10\t4\t100.5\n", r"ml-100k\.inter: 'timestamp:float' must hold whole seconds"),
])
def test_movielens_malformed(tmp_path, rows, match):
    with pytest.raises(DataError, match=match):
        readers.convert(str(_ml_tiny(tmp_path / "src", rows)), str(tmp_path / "out"))


def test_movielens_refuses_the_wrong_link(tmp_path):
    src = _ml_tiny(tmp_path / "src", link="ml-100k.link")
    with pytest.raises(DataError, match="corrected.link is missing"):
        readers.convert(str(src), str(tmp_path / "out"))


def test_unknown_folder_and_overwrite(tmp_path):
    with pytest.raises(DataError, match="no interactions.parquet .* nor a known real dataset"):
        readers.convert(str(_write(tmp_path / "x", {"notes.txt": "hi"})), str(tmp_path / "o"))
    with pytest.raises(DataError, match="not a directory"):
        readers.convert(str(tmp_path / "missing"), str(tmp_path / "o"))
    src = _write(tmp_path / "src", {"train.txt": "0 1\n", "test.txt": "0 2\n"})
    readers.convert(str(src), str(tmp_path / "out"))
    with pytest.raises(FileExistsError, match="overwrite"):
        readers.convert(str(src), str(tmp_path / "out"))
    readers.convert(str(src), str(tmp_path / "out"), overwrite=True)
    with pytest.raises(FileExistsError, match="refusing to delete"):
        readers.convert(str(src), str(tmp_path / "x"), overwrite=True)
    assert (tmp_path / "x" / "notes.txt").exists()


def test_cli(tmp_path):
    src = _write(tmp_path / "src", {"train.txt": "0 1 2\n", "test.txt": "0 3\n"})
    cmd = [sys.executable, "-m", "reelgraph.data.readers"]
    help_text = subprocess.run(cmd + ["--help"], capture_output=True, text=True, check=True)
    assert "--overwrite" in help_text.stdout and "--derive-follows" in help_text.stdout
    done = subprocess.run(cmd + [str(src), str(tmp_path / "out")], capture_output=True,
                          text=True, check=True)
    assert json.loads(done.stdout)["tables"] == {"interactions": 3}
    bad = subprocess.run(cmd + [str(tmp_path), str(tmp_path / "o2")], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "nor a known real dataset" in bad.stderr


# ---------------------------------------------------------------- the real data (data/README.md)

@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """``convert(name)`` → (stats, {table: pa.Table}), each real folder converted once."""
    cache = {}

    def get(name: str):
        if not (DATA / name).is_dir():
            pytest.skip(f"real data folder {DATA / name} is absent (../shared/data)")
        if name not in cache:
            out = tmp_path_factory.mktemp(name)
            stats = readers.convert(str(DATA / name), str(out), overwrite=True)
            specs = {"interactions": INTERACTIONS, "item_creator": ITEM_CREATOR, "kg": KG}
            cache[name] = stats, {t: read_table(os.path.join(out, f"{t}.parquet"), s)
                                  for t, s in specs.items() if t in stats["tables"]}
            print(f"\n{name}: converted in {stats['seconds']:.2f} s")
        return cache[name]
    return get


def _count(col) -> int:
    return len(pc.unique(col))


def _histogram(weight) -> dict[int, int]:
    values, counts = np.unique(weight.to_numpy(), return_counts=True)
    return dict(zip(values.astype(int).tolist(), counts.tolist()))


def _kg_shape(kg: pa.Table, items) -> tuple[int, int, int, int]:
    """(triples, relations, entities, entities that are items)."""
    ents = pc.unique(pa.concat_arrays([kg["head"].combine_chunks(), kg["tail"].combine_chunks()]))
    n_items = pc.sum(pc.is_in(ents, value_set=pc.cast(pc.unique(items), pa.string()))).as_py()
    return kg.num_rows, _count(kg["relation"]), len(ents), n_items


def test_real_amazon_book(converted):
    stats, t = converted("amazon-book-kgat")
    inter = t["interactions"]
    assert (_count(inter["user_id"]), _count(inter["item_id"])) == (70_679, 24_915)
    assert stats["splits"] == {"train": 652_514, "test": 193_920}
    assert stats["users_without_test"] == 88
    test_users = _count(inter.filter(pc.equal(inter["split"], "test"))["user_id"])
    assert test_users == 70_679 - 88
    first = inter.slice(0, 32)  # train.txt line 1: "0 0 1 ... 31"
    assert first["user_id"].to_pylist() == [0] * 32
    assert first["item_id"].to_pylist() == list(range(32))


@pytest.mark.parametrize("name, users, items, ratings, hist, dates", [
    ("ml-100k", 943, 1_682, 100_000, [6_110, 11_370, 27_145, 34_174, 21_201],
     ("1997-09-20", "1998-04-22")),
    ("ml-1m", 6_040, 3_706, 1_000_209, [56_174, 107_557, 261_197, 348_971, 226_310],
     ("2000-04-25", "2003-02-28")),
])
def test_real_movielens_interactions(converted, name, users, items, ratings, hist, dates):
    _, t = converted(name)
    inter = t["interactions"]
    assert inter.num_rows == ratings
    assert (_count(inter["user_id"]), _count(inter["item_id"])) == (users, items)
    assert _histogram(inter["weight"]) == dict(zip(range(1, 6), hist))
    day = lambda s: datetime.fromtimestamp(s, timezone.utc).strftime("%Y-%m-%d")
    ts = inter["timestamp"]
    assert (day(pc.min(ts).as_py()), day(pc.max(ts).as_py())) == dates


@pytest.mark.parametrize("name, creator_rows, creator_items, directors, linked_items", [
    ("ml-100k", 1_646, 1_516, 1_061, 1_519),
    ("ml-1m", 1_645, 1_514, 1_055, 1_519),
])
def test_real_movielens_kg(converted, name, creator_rows, creator_items, directors, linked_items):
    _, t = converted(name)
    ic, items = t["item_creator"], t["interactions"]["item_id"]
    assert (ic.num_rows, _count(ic["item_id"]), _count(ic["creator_id"])) == (
        creator_rows, creator_items, directors)
    assert _kg_shape(t["kg"], items) == (91_631, 24, 34_628, linked_items)
    rated = pc.is_in(ic["item_id"], value_set=pc.unique(items))
    assert pc.all(rated).as_py()
    if name == "ml-100k":
        ratings = pc.sum(pc.is_in(items, value_set=pc.unique(ic["item_id"]))).as_py()
        assert ratings == 95_567
        by_item = dict(zip(ic["item_id"].to_pylist(), ic["creator_id"].to_pylist()))
        assert 313 not in by_item  # Titanic (1997): the shipped link would give The Swan Princess
        assert by_item[50] == "m.0343h"  # Star Wars: George Lucas


def test_real_lastfm(converted):
    _, t = converted("lastfm-kg")
    inter = t["interactions"]
    assert inter.num_rows == 92_834
    assert (_count(inter["user_id"]), _count(inter["item_id"])) == (1_892, 17_632)
    assert (pc.min(inter["weight"]).as_py(), pc.max(inter["weight"]).as_py()) == (1, 352_698)
    assert _kg_shape(t["kg"], inter["item_id"]) == (15_518, 60, 9_366, 3_846)
    assert not pc.any(pc.match_substring(t["kg"]["tail"], "\r")).as_py()  # CRLF stripped
    kg = t["kg"]
    ents = pc.unique(pa.concat_arrays([kg["head"].combine_chunks(), kg["tail"].combine_chunks()]))
    artists = pc.cast(pc.filter(ents, pc.invert(pc.starts_with(ents, "e"))), pa.int64())
    linked = inter.filter(pc.is_in(inter["item_id"], value_set=artists))
    assert (linked.num_rows, _count(linked["user_id"])) == (21_173, 1_872)
