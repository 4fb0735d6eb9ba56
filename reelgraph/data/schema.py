"""The Parquet tables ReelGraph ingests, and their checks.

A dataset is a folder of Parquet files (every table but the interactions is optional):

================================  =====================================================
file                              columns
================================  =====================================================
``interactions.parquet``          ``user_id``, ``item_id`` (int or string), optional
                                  ``timestamp`` (number), ``weight`` (number, a rating or a
                                  count), ``split`` (``train``/``valid``/``test``: a fixed split)
``item_creator.parquet``          ``item_id``, ``creator_id`` (a video's vlogger)
``user_creator.parquet``          ``user_id``, ``creator_id`` (a user follows a vlogger)
``kg.parquet``                    ``head``, ``relation``, ``tail`` (knowledge-graph triples;
                                  a head/tail equal to an ``item_id`` is that item)
``user_kg.parquet``               ``user_id``, ``relation``, ``tail`` (a user's attributes as
                                  triples, e.g. ``(7, "gender", "gender:F")``; tails are
                                  attribute values, never users)
``features/<modality>.parquet``   ``item_id``, ``feature`` (fixed-size list of floats, any
                                  dimension; one file per modality: visual, acoustic, ...)
================================  =====================================================

Every check raises :class:`DataError` naming the file and the column, before any tensor is built.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from reelgraph.errors import DataError  # noqa: F401 (the data layer's error, re-exported)

SPLITS = ("train", "valid", "test")
# every Parquet file ReelGraph writes carries page CRCs, which the ingest verifies on read
WRITE_OPTIONS = {"write_page_checksum": True}


@dataclass(frozen=True)
class TableSpec:
    name: str                      # file stem, e.g. "interactions"
    ids: tuple[str, ...]           # id columns: int or string, never null
    numbers: tuple[str, ...] = ()  # optional numeric columns

    def filename(self, root: str) -> str:
        return os.path.join(root, f"{self.name}.parquet")


INTERACTIONS = TableSpec("interactions", ("user_id", "item_id"), ("timestamp", "weight"))
ITEM_CREATOR = TableSpec("item_creator", ("item_id", "creator_id"))
USER_CREATOR = TableSpec("user_creator", ("user_id", "creator_id"))
KG = TableSpec("kg", ("head", "relation", "tail"))
USER_KG = TableSpec("user_kg", ("user_id", "relation", "tail"))
FEATURES = TableSpec("features", ("item_id",))


def _is_id_type(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_string(t) or pa.types.is_large_string(t)


def read_table(path: str, spec: TableSpec, columns: list[str] | None = None) -> pa.Table:
    """Reads one table and checks its columns against ``spec``.

    Raises :class:`DataError` for a missing or unreadable file, a missing column, a column of the
    wrong type or a null id.
    """
    if not os.path.exists(path):
        raise DataError(f"{path}: file not found (expected the '{spec.name}' table)")
    try:
        schema = pq.read_schema(path)
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise DataError(f"{path}: not a readable Parquet file ({e})") from e
    names = set(schema.names)
    for col in spec.ids:
        if col not in names:
            raise DataError(f"{path}: missing column '{col}' (has {sorted(names)})")
        if not _is_id_type(schema.field(col).type):
            raise DataError(f"{path}: column '{col}' must hold ints or strings, "
                            f"not {schema.field(col).type}")
    for col in spec.numbers:
        if col in names and not (pa.types.is_integer(schema.field(col).type)
                                 or pa.types.is_floating(schema.field(col).type)
                                 or pa.types.is_timestamp(schema.field(col).type)):
            raise DataError(f"{path}: column '{col}' must be numeric, not {schema.field(col).type}")
    wanted = columns if columns is not None else [
        c for c in (*spec.ids, *spec.numbers, "split", "feature") if c in names]
    try:
        table = pq.read_table(path, columns=wanted)
    except Exception as e:
        raise DataError(f"{path}: could not read columns {wanted} ({e})") from e
    for col in spec.ids:
        if col in table.column_names and table[col].null_count:
            raise DataError(f"{path}: column '{col}' has {table[col].null_count} null ids")
    if "split" in table.column_names:
        bad = pc.invert(pc.is_in(table["split"], pa.array(SPLITS)))
        n_bad = pc.sum(pc.fill_null(bad, True)).as_py() or 0
        if n_bad:
            raise DataError(f"{path}: column 'split' has {n_bad} values outside {SPLITS}")
    if table.num_rows == 0:
        raise DataError(f"{path}: the '{spec.name}' table is empty")
    return table


def feature_files(root: str) -> dict[str, str]:
    """``{modality: path}`` for every ``features/<modality>.parquet`` under ``root``."""
    folder = os.path.join(root, "features")
    if not os.path.isdir(folder):
        return {}
    return {f[: -len(".parquet")]: os.path.join(folder, f)
            for f in sorted(os.listdir(folder)) if f.endswith(".parquet")}
