"""Item features of a real dataset folder, brought into its converted dataset folder.

MovieLens folders of ``../shared/data`` (ml-1m, ml-100k) carry ``features/<modality>.parquet``
(``item_id`` int64, the folder's own MovieLens id; ``feature`` list of float32; see
``../shared/data/README.md``: ``textual`` 384-d sentence embeddings, ``genre`` 19-d multi-hot +
year). :func:`read_features` reads them, checked, and keeps the rows of rated items only, in
the same ids as the interactions, so the ingest (:mod:`reelgraph.data.ingest`) puts each row on
its movie's item index through the item id map, like any dataset folder's features; items
without ratings would only be dropped there and counted as corrections.

Ids stay the source's: nothing is remapped here, the store's id map does it on ingest.
"""
from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from reelgraph.data.schema import FEATURES, DataError, feature_files, read_table


def _check(path: str, table: pa.Table) -> pa.Table:
    """``table`` (``item_id``, ``feature``) with float32 vectors of one length, all finite."""
    if "feature" not in table.column_names:
        raise DataError(f"{path}: missing column 'feature' (a list of floats per item)")
    col = table["feature"].combine_chunks()
    t = col.type
    if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)) \
            or not (pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type)):
        raise DataError(f"{path}: column 'feature' must be a list of floats, not {t}")
    if col.null_count:
        raise DataError(f"{path}: column 'feature' has {col.null_count} null vectors")
    lengths = np.unique(pc.list_value_length(col).to_numpy(zero_copy_only=False))
    if lengths.size != 1 or lengths[0] == 0:
        raise DataError(f"{path}: column 'feature' must hold non-empty vectors of one length "
                        f"(found lengths {lengths[:5].tolist()})")
    values = pc.list_flatten(col).to_numpy(zero_copy_only=False).astype(np.float32)
    if not np.isfinite(values).all():
        bad = int(np.flatnonzero(~np.isfinite(values.reshape(len(col), -1)).all(1))[0])
        raise DataError(f"{path}: column 'feature' has NaN/inf (first item_id "
                        f"{table['item_id'][bad].as_py()})")
    feature = pa.FixedSizeListArray.from_arrays(pa.array(values), int(lengths[0]))
    return pa.table({"item_id": table["item_id"], "feature": feature})


def read_features(src: str, items: pa.Array | pa.ChunkedArray) -> dict[str, pa.Table]:
    """``{modality: table}`` of every ``src/features/<modality>.parquet``, checked (one vector
    length per file, finite values, distinct ``item_id``s), restricted to the ids in ``items``
    (the rated items) and cast to their type; ``{}`` when ``src`` has no ``features/``."""
    out = {}
    for modality, path in feature_files(src).items():
        table = _check(path, read_table(path, FEATURES, columns=None))
        ids = table["item_id"]
        if len(pc.unique(ids)) != len(ids):
            raise DataError(f"{path}: an item_id has several feature rows")
        try:
            ids = pc.cast(ids, items.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise DataError(f"{path}: item_id is {ids.type}, the interactions' {items.type}") from e
        keep = pc.is_in(ids, value_set=pc.unique(items))
        if not pc.any(keep).as_py():
            raise DataError(f"{path}: no feature row matches an item of the interactions")
        out[modality] = pa.table({"item_id": ids, "feature": table["feature"]}).filter(keep)
    return out


def write_features(root: str, tables: dict[str, pa.Table], **write_options) -> None:
    """Writes ``tables`` as ``root/features/<modality>.parquet``."""
    if tables:
        os.makedirs(os.path.join(root, "features"), exist_ok=True)
    for modality, table in tables.items():
        pq.write_table(table, os.path.join(root, "features", f"{modality}.parquet"),
                       **write_options)
