"""Readers that turn the real datasets of ``../shared/data`` into dataset folders.

Each reader writes the Parquet tables of :mod:`reelgraph.data.schema` and returns counts::

    python -m reelgraph.data.readers ../shared/data/ml-100k /tmp/ml-100k

================  ===================================================================
source folder     tables written
================  ===================================================================
amazon-book-kgat  ``interactions`` (``split`` = the published ``train``/``test``; there
                  is no validation file: a ``valid`` split is carved from ``train`` by
                  :mod:`reelgraph.data.split` when asked, ``SplitConfig(valid_ratio=...)``)
ml-100k           ``interactions`` (``weight`` = rating), ``kg``, ``item_creator``
                  (``film.film.directed_by``, linked through ``ml-100k.corrected.link``;
                  the shipped ``ml-100k.link`` is keyed by ML-1M ids and never read)
ml-1m             the same from ``ml-1m.inter.gz``, ``ml-1m.link``, ``ml-1m.kg``
                  both MovieLens: ``features/<modality>`` from the folder's ``features/``
                  (:mod:`reelgraph.data.features`; rows of rated items only), ``user_kg``
                  from ``<name>.user`` (user attributes as triples)
lastfm-kg         ``interactions`` (``weight`` = play count), ``kg``
================  ===================================================================

Choices, so that every table means one thing:

- Ids are the source's own (remapped ids for amazon-book, MovieLens ids, Last.FM artist ids),
  stored as int64; ``weight`` is float32 (exact for ratings and for counts below 2**24);
  ``timestamp`` is int64 seconds.
- ``kg``: ``head``/``tail`` are strings. An entity linked to an item that occurs in the
  interactions is written as that item id in decimal (``"313"``), so "a head/tail equal to an
  ``item_id`` is that item" holds after casting ``item_id`` to string. Other entities keep their
  Freebase MID (``m.0dyb1``) or, for lastfm, become ``"e<entity id>"`` so that they can never
  collide with an artist id. All triples are kept, as in the files (none are duplicated).
- ``item_creator``: every ``(item, director)`` pair, so an item with several directors has
  several rows (ml-100k: 1,646 rows over 1,516 items); ``creator_id`` is the director's MID.
  Only items that occur in the interactions are listed.
- ``user_creator`` (follows) does not exist in the real data. ``derive_follows=True`` writes
  every distinct (user, director of a rated movie) pair; it is off by default because it is a
  stand-in, not an observed relation, and it is built from all ratings (test ones included).
- ``user_kg`` (MovieLens): four attribute triples per rated user, described in
  :mod:`reelgraph.data.user_attributes`.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from reelgraph.data.features import read_features, write_features
from reelgraph.data.schema import (WRITE_OPTIONS, INTERACTIONS, ITEM_CREATOR, KG, USER_CREATOR,
                                   USER_KG, DataError, read_table)
from reelgraph.data.text_files import read_atomic, read_user_lists
from reelgraph.data.user_attributes import ml_user_kg

DIRECTED_BY = "film.film.directed_by"
# What a reader writes, by revision: a converted folder is cached under a key that holds its
# reader's revision once past 1 (reelgraph.data.sources), so a folder an older reader wrote is
# never reused. 2: MovieLens brings its features/. 3: MovieLens brings user_kg (user attributes).
REVISIONS = {"ml-100k": 3, "ml-1m": 3}
_SPECS = {s.name: s for s in (INTERACTIONS, ITEM_CREATOR, USER_CREATOR, KG, USER_KG)}


# ---------------------------------------------------------------- writing

def _publish(out_dir: str, tables: dict[str, pa.Table], overwrite: bool,
             features: dict[str, pa.Table] | None = None) -> dict[str, int]:
    """Writes ``tables`` (and ``features/<modality>``) to ``out_dir`` atomically, each table
    checked by :func:`schema.read_table`."""
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        if not overwrite:
            raise FileExistsError(f"{out_dir}: not empty; pass overwrite=True to replace it")
        if not os.path.exists(os.path.join(out_dir, "interactions.parquet")):
            raise FileExistsError(f"{out_dir}: not a dataset folder (no interactions.parquet); "
                                  "refusing to delete it")
    tmp = os.path.abspath(out_dir) + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        for name, table in tables.items():
            pq.write_table(table, _SPECS[name].filename(tmp), **WRITE_OPTIONS)
            read_table(_SPECS[name].filename(tmp), _SPECS[name])  # the check consumers run
        write_features(tmp, features or {}, **WRITE_OPTIONS)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return {**{name: t.num_rows for name, t in tables.items()},
            **{f"features/{m}": t.num_rows for m, t in (features or {}).items()}}


def _interaction_stats(inter: pa.Table) -> dict:
    return {"users": len(pc.unique(inter["user_id"])), "items": len(pc.unique(inter["item_id"]))}


def _follows(inter: pa.Table, item_creator: pa.Table) -> pa.Table:
    """Distinct (user, creator of an item the user interacted with) pairs, sorted."""
    pairs = inter.select(["user_id", "item_id"]).join(item_creator, "item_id", join_type="inner")
    pairs = pairs.group_by(["user_id", "creator_id"]).aggregate([])
    return pairs.sort_by([("user_id", "ascending"), ("creator_id", "ascending")])


# ---------------------------------------------------------------- amazon-book

def read_amazon_book(src: str, out_dir: str, *, overwrite: bool = False) -> dict:
    """KGAT's Amazon-Book split (``train.txt``/``test.txt``) → ``interactions`` with ``split``."""
    parts, empty = [], {}
    for split in ("train", "test"):
        path = os.path.join(src, f"{split}.txt")
        users, counts, items = read_user_lists(path)
        parts.append((np.repeat(users, counts), items))
        empty[split] = int((counts == 0).sum())
    if empty["train"]:
        raise DataError(f"{os.path.join(src, 'train.txt')}: {empty['train']} users have no items")
    n_train, n_test = len(parts[0][1]), len(parts[1][1])
    split = pa.array(["train", "test"]).take(pa.array(np.repeat([0, 1], [n_train, n_test])))
    inter = pa.table({"user_id": np.concatenate([p[0] for p in parts]),
                      "item_id": np.concatenate([p[1] for p in parts]), "split": split})
    tables = _publish(out_dir, {"interactions": inter}, overwrite)
    return {"dataset": "amazon-book-kgat", "tables": tables, **_interaction_stats(inter),
            "splits": {"train": n_train, "test": n_test}, "users_without_test": empty["test"]}


# ---------------------------------------------------------------- knowledge graphs

def _rename(entities: pa.Array, linked: pa.Array, item_names: pa.Array) -> pa.Array:
    """``entities`` with every linked entity replaced by its item's name."""
    idx = pc.index_in(entities, value_set=linked)
    return pc.if_else(pc.is_valid(idx), pc.take(item_names, idx), entities)


def _check_one_to_one(path: str, items: pa.Array, entities: pa.Array) -> None:
    for what, col in (("item", items), ("entity", entities)):
        if len(pc.unique(col)) != len(col):
            raise DataError(f"{path}: an {what} is linked twice; the link must be one-to-one")


def _kg_tables(kg: dict[str, pa.Array], link_items: pa.Array, link_entities: pa.Array,
               inter: pa.Table) -> dict[str, pa.Table]:
    """``kg`` with linked entities of rated items written as item ids, and ``item_creator``."""
    rated = pc.is_in(link_items, value_set=pc.unique(inter["item_id"]))
    items, entities = link_items.filter(rated), link_entities.filter(rated)
    names = pc.cast(items, pa.string())
    head, rel, tail = kg["head"], kg["relation"], kg["tail"]
    out = {"kg": pa.table({"head": _rename(head, entities, names), "relation": rel,
                           "tail": _rename(tail, entities, names)})}
    idx = pc.index_in(head, value_set=entities)
    directed = pc.and_(pc.equal(rel, DIRECTED_BY), pc.is_valid(idx))
    if pc.any(directed).as_py():
        ic = pa.table({"item_id": pc.take(items, pc.filter(idx, directed)),
                       "creator_id": pc.filter(tail, directed)})
        ic = ic.group_by(["item_id", "creator_id"]).aggregate([])
        out["item_creator"] = ic.sort_by([("item_id", "ascending"), ("creator_id", "ascending")])
    return out


# ---------------------------------------------------------------- MovieLens

_INTER = ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]


def _ml_interactions(path: str) -> pa.Table:
    types = dict(zip(_INTER, (pa.int64(), pa.int64(), pa.float32(), pa.float64())))
    c = read_atomic(path, _INTER, types=types)
    try:
        ts = pc.cast(c["timestamp:float"], pa.int64())  # safe cast: fails on a fraction
    except pa.ArrowInvalid as e:
        raise DataError(f"{path}: 'timestamp:float' must hold whole seconds ({e})") from e
    return pa.table({"user_id": c["user_id:token"], "item_id": c["item_id:token"],
                     "weight": c["rating:float"], "timestamp": ts})


def _read_movielens(src: str, out_dir: str, name: str, inter_file: str, link_file: str,
                    overwrite: bool, derive_follows: bool) -> dict:
    inter = _ml_interactions(os.path.join(src, inter_file))
    tables = {"interactions": inter}
    kg_path, link_path = os.path.join(src, f"{name}.kg"), os.path.join(src, link_file)
    if os.path.exists(kg_path) or os.path.exists(link_path):
        link = read_atomic(link_path, ["item_id:token", "entity_id:token"],
                            types={"item_id:token": pa.int64()})
        _check_one_to_one(link_path, link["item_id:token"], link["entity_id:token"])
        kg = read_atomic(kg_path, ["head_id:token", "relation_id:token", "tail_id:token"])
        kg = dict(zip(("head", "relation", "tail"), kg.values()))
        tables.update(_kg_tables(kg, link["item_id:token"], link["entity_id:token"], inter))
    user_path = os.path.join(src, f"{name}.user")
    if os.path.exists(user_path):
        tables["user_kg"] = ml_user_kg(user_path, inter)
    if derive_follows:
        if "item_creator" not in tables:
            raise DataError(f"{src}: derive_follows needs the KG's directors (no {link_file})")
        tables["user_creator"] = _follows(inter, tables["item_creator"])
    features = read_features(src, inter["item_id"])
    stats = {"dataset": name, "tables": _publish(out_dir, tables, overwrite, features),
             **_interaction_stats(inter)}
    if features:
        stats["features"] = {m: t.schema.field("feature").type.list_size
                             for m, t in features.items()}
    if "item_creator" in tables:
        stats["items_with_creator"] = len(pc.unique(tables["item_creator"]["item_id"]))
    return stats


def read_movielens_100k(src: str, out_dir: str, *, overwrite: bool = False,
                        derive_follows: bool = False) -> dict:
    """ML-100K atomic files; the KG is linked through ``ml-100k.corrected.link`` only."""
    if (os.path.exists(os.path.join(src, "ml-100k.kg"))
            and not os.path.exists(os.path.join(src, "ml-100k.corrected.link"))):
        raise DataError(f"{src}: ml-100k.corrected.link is missing; the shipped ml-100k.link is "
                        "keyed by ML-1M movieIds and links the wrong films (see data/README.md)")
    return _read_movielens(src, out_dir, "ml-100k", "ml-100k.inter", "ml-100k.corrected.link",
                           overwrite, derive_follows)


def read_movielens_1m(src: str, out_dir: str, *, overwrite: bool = False,
                      derive_follows: bool = False) -> dict:
    """ML-1M (``ml-1m.inter.gz`` or ``ml-1m.inter``); ``ml-1m.link`` ids are ML-1M movieIds."""
    gz = os.path.exists(os.path.join(src, "ml-1m.inter.gz"))
    return _read_movielens(src, out_dir, "ml-1m", "ml-1m.inter" + (".gz" if gz else ""),
                           "ml-1m.link", overwrite, derive_follows)


# ---------------------------------------------------------------- Last.FM

def _entity_name(entity: pa.Array) -> pa.Array:
    """Integer KG entity ids as ``"e<id>"``, so they never collide with an artist id."""
    return pc.binary_join_element_wise("e", pc.cast(entity, pa.string()), "")


def read_lastfm(src: str, out_dir: str, *, overwrite: bool = False) -> dict:
    """KGCN's Last.FM: ``user_artists.dat`` → interactions, ``kg.txt`` → kg (items: artist ids)."""
    c = read_atomic(os.path.join(src, "user_artists.dat"), ["userID", "artistID", "weight"],
                     types={"userID": pa.int64(), "artistID": pa.int64(), "weight": pa.int64()})
    inter = pa.table({"user_id": c["userID"], "item_id": c["artistID"],
                      "weight": pc.cast(c["weight"], pa.float32())})
    tables = {"interactions": inter}
    link_path, kg_path = (os.path.join(src, f) for f in ("item_index2entity_id.txt", "kg.txt"))
    if os.path.exists(kg_path) or os.path.exists(link_path):
        link = read_atomic(link_path, ["item", "entity"], header=False,
                            types={"item": pa.int64(), "entity": pa.int64()})
        _check_one_to_one(link_path, link["item"], link["entity"])
        kg = read_atomic(kg_path, ["head", "relation", "tail"], header=False,
                          types={"head": pa.int64(), "tail": pa.int64()})
        kg = {k: _entity_name(v) if k != "relation" else v for k, v in kg.items()}
        tables.update(_kg_tables(kg, link["item"], _entity_name(link["entity"]), inter))
    return {"dataset": "lastfm-kg", "tables": _publish(out_dir, tables, overwrite),
            **_interaction_stats(inter)}


# ---------------------------------------------------------------- dispatch

_READERS: list[tuple[str, tuple[str, ...], Callable[..., dict]]] = [
    ("amazon-book-kgat", ("train.txt", "test.txt"), read_amazon_book),
    ("ml-100k", ("ml-100k.inter",), read_movielens_100k),
    ("ml-1m", ("ml-1m.inter.gz",), read_movielens_1m),
    ("ml-1m", ("ml-1m.inter",), read_movielens_1m),
    ("lastfm-kg", ("user_artists.dat",), read_lastfm),
]


def revision(src: str) -> int:
    """The revision of the reader of ``src`` (:data:`REVISIONS`; 1 unless listed)."""
    return REVISIONS.get(detect(src), 1)


def detect(src: str) -> str:
    """The kind of dataset folder ``src`` is, by the files it holds."""
    if not os.path.isdir(src):
        raise DataError(f"{src}: not a directory")
    for name, files, _ in _READERS:
        if all(os.path.exists(os.path.join(src, f)) for f in files):
            return name
    known = "; ".join(f"{n}: {' + '.join(f)}" for n, f, _ in _READERS)
    raise DataError(f"{src}: no interactions.parquet (a dataset folder's one required table; "
                    f"see reelgraph/data/schema.py), nor a known real dataset ({known})")


def convert(src: str, out_dir: str, *, overwrite: bool = False,
            derive_follows: bool = False) -> dict:
    """Detects the dataset in ``src``, writes its dataset folder to ``out_dir``, returns counts.

    Args:
        src (str): a folder of ``../shared/data`` (amazon-book-kgat, ml-100k, ml-1m, lastfm-kg).
        out_dir (str): the dataset folder to write (created; replaced only with ``overwrite``).
        overwrite (bool): replace an existing dataset folder. (default: ``False``)
        derive_follows (bool): MovieLens only: write ``user_creator`` from the directors of each
            user's rated movies. (default: ``False``)
    """
    name = detect(src)
    reader = next(r for n, _, r in _READERS if n == name)
    kwargs = {"overwrite": overwrite}
    if derive_follows:
        if name not in ("ml-100k", "ml-1m"):
            raise DataError(f"{src}: derive_follows needs directors, which only MovieLens has")
        kwargs["derive_follows"] = True
    start = time.perf_counter()
    stats = reader(src, out_dir, **kwargs)
    stats["seconds"] = round(time.perf_counter() - start, 3)
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reelgraph.data.readers",
        description="Convert a real dataset folder (amazon-book-kgat, ml-100k, ml-1m, lastfm-kg) "
                    "into ReelGraph's Parquet dataset folder; prints the counts as JSON.")
    parser.add_argument("src", help="source folder, e.g. ../shared/data/ml-100k")
    parser.add_argument("out_dir", help="dataset folder to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing out_dir")
    parser.add_argument("--derive-follows", action="store_true",
                        help="MovieLens: also write user_creator (user -> directors of the "
                             "movies the user rated)")
    args = parser.parse_args(argv)
    try:
        stats = convert(args.src, args.out_dir, overwrite=args.overwrite,
                        derive_follows=args.derive_follows)
    except (DataError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(stats, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
