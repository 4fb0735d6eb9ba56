"""MovieLens user attributes (``<name>.user``) → the ``user_kg`` table of a dataset folder.

Reads a RecBole atomic ``.user`` file: a header naming the columns ``user_id``, ``age``,
``gender``, ``occupation``, ``zip_code`` (each with its ``:type`` suffix), then one
tab-separated row per user. Writes nothing itself: :func:`ml_user_kg` returns the table that
:mod:`reelgraph.data.readers` publishes as ``user_kg.parquet``
(:data:`~reelgraph.data.schema.USER_KG`):

================  ============================================================================
column            holds
================  ============================================================================
``user_id``       int64, the MovieLens user id; only users that occur in the interactions
``relation``      string, one of ``age``, ``gender``, ``occupation``, ``zip3``
``tail``          string, the value prefixed by its relation (``"gender:F"``), so values of
                  different attributes never merge
================  ============================================================================

Four rows per rated user of the file, sorted by (``user_id``, ``relation``). ``age`` is
ML-1M's age group, named by its lowest age (1 = under 18, 18, 25, 35, 45, 50, 56 = 56+,
:data:`AGE_GROUPS`): ML-1M stores these codes, ML-100K's exact ages are mapped to them, so
both mean the same. ``zip3`` is the zip code's first three characters (the US sectional
centre): full zip codes are nearly unique per user (ML-100K: 795 for 943 users) and would link
nobody. ``occupation`` is as stored: ML-100K's names, ML-1M's codes 0-20.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reelgraph.data.schema import DataError
from reelgraph.data.text_files import cast_numbers, tab_fields

AGE_GROUPS = (1, 18, 25, 35, 45, 50, 56)   # ML-1M's age codes: each group's lowest age
USER_COLUMNS = ["user_id", "age", "gender", "occupation", "zip_code"]


def ml_user_kg(path: str, inter: pa.Table) -> pa.Table:
    """``user_kg`` (module doc) of the users of ``inter`` from a MovieLens ``.user`` file."""
    names, cols = tab_fields(path, len(USER_COLUMNS), header=True)
    if [n.split(":")[0] for n in names] != USER_COLUMNS:
        raise DataError(f"{path}, line 1: expected the columns {USER_COLUMNS}, found {names}")
    c = dict(zip(USER_COLUMNS, cols))
    user = cast_numbers(c["user_id"], pa.int64(), path, "'user_id'", lambda i: i + 2)
    age = cast_numbers(c["age"], pa.float64(), path, "'age'", lambda i: i + 2).to_numpy()
    group = np.asarray(AGE_GROUPS)[np.searchsorted(AGE_GROUPS[1:], age, side="right")]
    values = {"age": pa.array(group.astype(str)), "gender": c["gender"],
              "occupation": c["occupation"],
              "zip3": pc.utf8_slice_codeunits(c["zip_code"], 0, 3)}
    rated = pc.is_in(user, value_set=pc.unique(inter["user_id"]))
    parts = [pa.table({"user_id": user, "relation": pa.array([rel] * len(user)),
                       "tail": pc.binary_join_element_wise(f"{rel}:", v, "")}).filter(rated)
             for rel, v in values.items()]
    return pa.concat_tables(parts).sort_by([("user_id", "ascending"), ("relation", "ascending")])
