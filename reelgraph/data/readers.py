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
                  from ``<name>.user`` (user attributes as triples, below)
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
- ``user_kg`` (MovieLens): per rated user four triples ``(user_id, relation, tail)`` with
  ``relation`` in ``age``, ``gender``, ``occupation``, ``zip3`` and ``tail`` the value prefixed by
  its relation (``"gender:F"``), so values of different attributes never merge. ``age`` is
  ML-1M's age group, named by its lowest age (1 = under 18, 18, 25, 35, 45, 50, 56 = 56+):
  ML-1M stores these codes, ML-100K's exact ages are mapped to them, so both mean the same.
  ``zip3`` is the zip code's first three characters (the US sectional centre): full zip codes
  are nearly unique per user (ML-100K: 795 for 943 users) and would link nobody.
  ``occupation`` is as stored: ML-100K's names, ML-1M's codes 0-20.
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
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from reelgraph.data.features import read_features, write_features
from reelgraph.data.schema import (WRITE_OPTIONS, INTERACTIONS, ITEM_CREATOR, KG, USER_CREATOR,
                                   USER_KG, DataError, read_table)

DIRECTED_BY = "film.film.directed_by"
# What a reader writes, by revision: a converted folder is cached under a key that holds its
# reader's revision once past 1 (reelgraph.data.sources), so a folder an older reader wrote is
# never reused. 2: MovieLens brings its features/. 3: MovieLens brings user_kg (user attributes).
REVISIONS = {"ml-100k": 3, "ml-1m": 3}
_SPECS = {s.name: s for s in (INTERACTIONS, ITEM_CREATOR, USER_CREATOR, KG, USER_KG)}


# ---------------------------------------------------------------- text parsing

def _read_lines(path: str) -> pa.Array:
    """Every line of a text file (gunzipped if named ``.gz``), CR stripped; row i = line i+1."""
    if not os.path.exists(path):
        raise DataError(f"{path}: file not found")
    try:
        table = pacsv.read_csv(
            pa.input_stream(path),  # compression detected from the extension
            read_options=pacsv.ReadOptions(column_names=["line"], block_size=1 << 24),
            parse_options=pacsv.ParseOptions(delimiter="\x1f", quote_char=False,
                                             escape_char=False, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(column_types={"line": pa.string()},
                                                 strings_can_be_null=False))
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"{path}: not readable as lines of text ({e})") from e
    return table["line"].combine_chunks()


def _numbers(values: pa.Array, dtype: pa.DataType, path: str, what: str,
             line_of: Callable[[int], int]) -> pa.Array:
    """``values`` cast to ``dtype``; a bad value raises DataError naming its file and line.

    Integers must be plain non-negative decimals (no sign, blanks or hex); floats must be finite.
    """
    if pa.types.is_integer(dtype):
        ok = pc.ascii_is_decimal(values)
    else:
        try:
            ok = pc.is_finite(pc.cast(values, pa.float64()))
        except pa.ArrowInvalid:  # some value is not a number at all: find it
            ok = pc.match_substring_regex(values, r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
    bad = np.flatnonzero(~ok.to_numpy(zero_copy_only=False))
    if bad.size:
        i = int(bad[0])
        kind = "a non-negative integer" if pa.types.is_integer(dtype) else "a finite number"
        raise DataError(f"{path}, line {line_of(i)}: {what} must be {kind}, "
                        f"got {values[i].as_py()!r}")
    try:
        return pc.cast(values, dtype)
    except pa.ArrowInvalid as e:
        raise DataError(f"{path}: {what} does not fit {dtype} ({e})") from e


def _fields(path: str, ncols: int, *, header: bool) -> tuple[list[str] | None, list[pa.Array]]:
    """Tab-separated file → (header names or None, one string array per column)."""
    lines = _read_lines(path)
    first = 1 if header else 0
    names = lines[0].as_py().split("\t") if header and len(lines) else None
    parts = pc.split_pattern(lines[first:], "\t")
    n = pc.list_value_length(parts).to_numpy()
    bad = np.flatnonzero(n != ncols)
    if bad.size:
        raise DataError(f"{path}, line {first + bad[0] + 1}: expected {ncols} tab-separated "
                        f"fields, found {n[bad[0]]}")
    if len(n) == 0:
        raise DataError(f"{path}: no data lines")
    flat = parts.flatten()
    return names, [flat.take(pa.array(np.arange(i, len(flat), ncols))) for i in range(ncols)]


def _atomic(path: str, names: list[str], *, header: bool = True,
            types: dict[str, pa.DataType] | None = None) -> dict[str, pa.Array]:
    """Columns ``names`` of a tab-separated file (RecBole atomic file when ``header``), typed."""
    head, cols = _fields(path, len(names), header=header)
    if head is not None and head != names:
        raise DataError(f"{path}, line 1: expected the header {names}, found {head}")
    first = 2 if header else 1  # line number of data row 0
    out = {}
    for name, col in zip(names, cols):
        dtype = (types or {}).get(name, pa.string())
        out[name] = col if dtype == pa.string() else _numbers(
            col, dtype, path, f"'{name}'", lambda i: first + i)
    return out


def _user_lists(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """KGAT file of lines ``user item item ...`` → (user per line, items per line, all items)."""
    tokens = pc.ascii_split_whitespace(pc.ascii_trim_whitespace(_read_lines(path)))
    counts = pc.list_value_length(tokens).to_numpy()  # a blank line counts 1 ("" → error below)
    if counts.size == 0:
        raise DataError(f"{path}: no data lines")
    offsets = np.concatenate([[0], np.cumsum(counts)])
    flat = _numbers(tokens.flatten(), pa.int64(), path, "every token", lambda i: int(
        np.searchsorted(offsets, i, side="right")))
    flat = flat.to_numpy()
    users = flat[offsets[:-1]]
    seen, first_line = np.unique(users, return_index=True)
    if seen.size < users.size:
        dup = np.setdiff1d(np.arange(users.size), first_line)[0]
        raise DataError(f"{path}, line {dup + 1}: user {users[dup]} already has a line")
    is_item = np.ones(flat.size, dtype=bool)
    is_item[offsets[:-1]] = False
    return users, counts - 1, flat[is_item]


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
        users, counts, items = _user_lists(path)
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
    c = _atomic(path, _INTER, types=dict(zip(_INTER, (pa.int64(), pa.int64(), pa.float32(),
                                                      pa.float64()))))
    try:
        ts = pc.cast(c["timestamp:float"], pa.int64())  # safe cast: fails on a fraction
    except pa.ArrowInvalid as e:
        raise DataError(f"{path}: 'timestamp:float' must hold whole seconds ({e})") from e
    return pa.table({"user_id": c["user_id:token"], "item_id": c["item_id:token"],
                     "weight": c["rating:float"], "timestamp": ts})


AGE_GROUPS = (1, 18, 25, 35, 45, 50, 56)   # ML-1M's age codes: each group's lowest age
_USER_COLUMNS = ["user_id", "age", "gender", "occupation", "zip_code"]


def _ml_user_kg(path: str, inter: pa.Table) -> pa.Table:
    """``user_kg`` (module doc) of the users of ``inter`` from a MovieLens ``.user`` file."""
    names, cols = _fields(path, len(_USER_COLUMNS), header=True)
    if [n.split(":")[0] for n in names] != _USER_COLUMNS:
        raise DataError(f"{path}, line 1: expected the columns {_USER_COLUMNS}, found {names}")
    c = dict(zip(_USER_COLUMNS, cols))
    user = _numbers(c["user_id"], pa.int64(), path, "'user_id'", lambda i: i + 2)
    age = _numbers(c["age"], pa.float64(), path, "'age'", lambda i: i + 2).to_numpy()
    group = np.asarray(AGE_GROUPS)[np.searchsorted(AGE_GROUPS[1:], age, side="right")]
    values = {"age": pa.array(group.astype(str)), "gender": c["gender"],
              "occupation": c["occupation"],
              "zip3": pc.utf8_slice_codeunits(c["zip_code"], 0, 3)}
    rated = pc.is_in(user, value_set=pc.unique(inter["user_id"]))
    parts = [pa.table({"user_id": user, "relation": pa.array([rel] * len(user)),
                       "tail": pc.binary_join_element_wise(f"{rel}:", v, "")}).filter(rated)
             for rel, v in values.items()]
    return pa.concat_tables(parts).sort_by([("user_id", "ascending"), ("relation", "ascending")])


def _read_movielens(src: str, out_dir: str, name: str, inter_file: str, link_file: str,
                    overwrite: bool, derive_follows: bool) -> dict:
    inter = _ml_interactions(os.path.join(src, inter_file))
    tables = {"interactions": inter}
    kg_path, link_path = os.path.join(src, f"{name}.kg"), os.path.join(src, link_file)
    if os.path.exists(kg_path) or os.path.exists(link_path):
        link = _atomic(link_path, ["item_id:token", "entity_id:token"],
                       types={"item_id:token": pa.int64()})
        _check_one_to_one(link_path, link["item_id:token"], link["entity_id:token"])
        kg = _atomic(kg_path, ["head_id:token", "relation_id:token", "tail_id:token"])
        kg = dict(zip(("head", "relation", "tail"), kg.values()))
        tables.update(_kg_tables(kg, link["item_id:token"], link["entity_id:token"], inter))
    user_path = os.path.join(src, f"{name}.user")
    if os.path.exists(user_path):
        tables["user_kg"] = _ml_user_kg(user_path, inter)
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
    c = _atomic(os.path.join(src, "user_artists.dat"), ["userID", "artistID", "weight"],
                types={"userID": pa.int64(), "artistID": pa.int64(), "weight": pa.int64()})
    inter = pa.table({"user_id": c["userID"], "item_id": c["artistID"],
                      "weight": pc.cast(c["weight"], pa.float32())})
    tables = {"interactions": inter}
    link_path, kg_path = (os.path.join(src, f) for f in ("item_index2entity_id.txt", "kg.txt"))
    if os.path.exists(kg_path) or os.path.exists(link_path):
        link = _atomic(link_path, ["item", "entity"], header=False,
                       types={"item": pa.int64(), "entity": pa.int64()})
        _check_one_to_one(link_path, link["item"], link["entity"])
        kg = _atomic(kg_path, ["head", "relation", "tail"], header=False,
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
