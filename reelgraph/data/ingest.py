"""Build steps of a :class:`~reelgraph.data.store.GraphStore`: Parquet tables → id maps, splits, CSR.

The interactions are streamed: read batch by batch, each raw id read once and numbered against
id maps that grow as it goes (:class:`~reelgraph.data.idmap.IdCollector`), and kept as compact
arrays between steps (user and item int32 while there are fewer than 2**31 rows, weight
float32, split code int8: 13 bytes per interaction). Deduplication, the split and the CSRs use
one int64 key sort each instead of whole-table lexsorts (the huge world, 100M interactions,
peaks at ~5 GiB). Feature tables are streamed into their matrix too. The knowledge graphs'
steps are in :mod:`~reelgraph.data.kg_ingest`. The store written is the same, byte for byte,
as the whole-table ingest's (``tests/data/test_ingest.py``).

Every correction (duplicate interactions, ids unknown to the interactions, test pairs already in
train, users too small to split) is logged as a warning and counted in ``meta["corrections"]``;
what the split leaves that skews metrics without changing a row (valid/test items never in
train, a single user) is logged and counted in ``meta["warnings"]``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from reelgraph.data import schema
from reelgraph.data.idmap import IdCollector, IdMap
from reelgraph.data.ingest_common import correct, log, sorted_unique
# called by these names: benchmarks/ingest_phases.py times a phase by patching it on this module
from reelgraph.data.kg_ingest import ingest_kg as _kg, ingest_user_kg as _user_kg
from reelgraph.data.split import (TRAIN, VALID, TEST, SplitConfig, carve_valid, eval_warnings,
                                  ratio_split, temporal_split, tied_slots)

SPLIT_NAMES = ("train", "valid", "test")
_BATCH_ROWS = 1 << 20       # interaction rows read per batch
_FEATURE_BYTES = 1 << 25    # bytes of feature values read per batch
_WARNINGS = {"cold_eval_interactions": "valid/test interactions of items never in train",
             "cold_eval_items": "items only in valid/test: untrained, rankable only by features",
             "single_user": "one user: every metric describes one ranking",
             "single_item": "one item: every ranking is trivial"}


def _index_dtype(n: int) -> type:
    """The smallest index dtype for ``n`` entries."""
    return np.int32 if n < 2**31 else np.int64


def _save_sorted_csr(folder: str, row: np.ndarray, col: np.ndarray, num_rows: int,
                     **extra: np.ndarray) -> None:
    """Saves edges already sorted by ``(row, col)``: ``rowptr [num_rows + 1]`` and ``col [E]``
    as int64, and each ``extra`` array ``[E]`` as given."""
    os.makedirs(folder, exist_ok=True)
    rowptr = np.zeros(num_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(row, minlength=num_rows), out=rowptr[1:])
    np.save(os.path.join(folder, "rowptr.npy"), rowptr)
    np.save(os.path.join(folder, "col.npy"), col.astype(np.int64))
    for name, values in extra.items():
        np.save(os.path.join(folder, f"{name}.npy"), values)


def _bad_splits(col: pa.Array) -> int:
    bad = pc.invert(pc.is_in(col, pa.array(schema.SPLITS)))
    return pc.sum(pc.fill_null(bad, True)).as_py() or 0


def _schema_names(path: str, spec: schema.TableSpec) -> list[str]:
    """The table's column names, after the file, schema and empty-table checks of
    :func:`schema.read_table` (which reads no data for ``columns=[]``)."""
    schema.read_table(path, spec, columns=[])
    return pq.read_schema(path).names


def _batches(path: str, spec: schema.TableSpec, columns: list[str],
             batch_rows: int | None = None) -> Iterator[pa.RecordBatch]:
    """The record batches of ``columns``, in file order, under the data checks of
    :func:`schema.read_table` (run :func:`_schema_names` first). Its errors (null ids, bad
    ``split`` values) are raised after the last batch, with the whole table's counts; no batch
    from the first bad one on is yielded."""
    nulls = {c: 0 for c in spec.ids if c in columns}
    empty = dict.fromkeys(nulls, 0)
    bad_split, clean = 0, True
    try:
        file = pq.ParquetFile(path, page_checksum_verification=True)  # where the writer wrote them
        # the module's _BATCH_ROWS read at call time (a test may lower it), not at definition
        for batch in file.iter_batches(batch_size=batch_rows or _BATCH_ROWS, columns=columns):
            for c in nulls:
                nulls[c] += batch.column(c).null_count
                if pa.types.is_string(batch.column(c).type) or pa.types.is_large_string(
                        batch.column(c).type):
                    empty[c] += pc.sum(pc.equal(batch.column(c), "")).as_py() or 0
            if "split" in columns:
                bad_split += _bad_splits(batch.column("split"))
            clean = clean and not bad_split and not any(nulls.values()) and not any(empty.values())
            if clean:
                yield batch
    except (OSError, pa.ArrowException) as e:
        raise schema.DataError(f"{path}: could not read columns {columns} ({e})") from e
    _fail_on_counts(path, nulls, "null ids")
    _fail_on_counts(path, empty, "empty-string ids")
    if bad_split:
        raise schema.DataError(f"{path}: column 'split' has {bad_split} values outside {schema.SPLITS}")


def _fail_on_counts(path: str, counts: dict[str, int], what: str) -> None:
    """``DataError("<path>: column '<c>' has <n> <what>")`` for the first column counted."""
    for c, n in counts.items():
        if n:
            raise schema.DataError(f"{path}: column '{c}' has {n} {what}")


def _numbers(col: pa.Array) -> np.ndarray:
    """``[n]`` float64 values of a numeric column (timestamps as int64 first; nulls → NaN)."""
    if pa.types.is_timestamp(col.type):
        col = col.cast(pa.int64())
    return col.to_numpy(zero_copy_only=False).astype(np.float64)


@dataclass
class _Interactions:
    """The interactions table as compact arrays, one entry per row in file order."""
    users: IdMap
    items: IdMap
    u: np.ndarray                  # [N] int32 user index
    i: np.ndarray                  # [N] int32 item index
    code: np.ndarray | None        # [N] int8 codes of the "fixed" split (else None: all train)
    ts: np.ndarray | None          # [N] float64 timestamps, kept for the temporal split only
    weight: np.ndarray | None      # [N] float32 weights

    def take(self, rows: np.ndarray) -> None:
        """Keeps only ``rows`` (a bool mask or positions), in place."""
        for name in ("u", "i", "code", "ts", "weight"):
            if getattr(self, name) is not None:
                setattr(self, name, getattr(self, name)[rows])


def _fixed_codes(col: pa.Array) -> np.ndarray:
    """``[n]`` int8 codes of a ``split`` column."""
    code = np.full(len(col), TRAIN, dtype=np.int8)
    code[pc.equal(col, "valid").to_numpy(zero_copy_only=False)] = VALID
    code[pc.equal(col, "test").to_numpy(zero_copy_only=False)] = TEST
    return code


def _read_interactions(path: str, names: list[str], method: str) -> _Interactions:
    """Streams the interactions into index arrays; raises the DataErrors of a whole-table read."""
    numbers = [c for c in schema.INTERACTIONS.numbers if c in names]
    columns = ["user_id", "item_id", *numbers] + (["split"] if "split" in names else [])
    n = pq.ParquetFile(path).metadata.num_rows
    dtype = _index_dtype(n)
    u, i = np.empty(n, dtype=dtype), np.empty(n, dtype=dtype)
    kept = {c: np.empty(n, dtype=np.float64 if c == "timestamp" else np.float32) for c in numbers
            if c == "weight" or method == "temporal"}
    code = np.empty(n, dtype=np.int8) if method == "fixed" and "split" in names else None
    users, items, nan, lo = IdCollector(dtype), IdCollector(dtype), dict.fromkeys(numbers, 0), 0
    inf, negative = dict.fromkeys(numbers, 0), 0
    for batch in _batches(path, schema.INTERACTIONS, columns):
        hi = lo + batch.num_rows
        u[lo:hi], i[lo:hi] = users.add(batch.column("user_id")), items.add(batch.column("item_id"))
        for c in numbers:
            values = _numbers(batch.column(c))
            nan[c] += int(np.isnan(values).sum())
            inf[c] += int(np.isinf(values).sum())
            if c == "weight":
                negative += int((values < 0).sum())
            if c in kept:
                kept[c][lo:hi] = values
        if code is not None:
            code[lo:hi] = _fixed_codes(batch.column("split"))
        lo = hi
    _fail_on_counts("interactions.parquet", nan, "null/NaN values")
    _fail_on_counts("interactions.parquet", inf, "±inf values")
    if negative:
        raise schema.DataError(f"interactions.parquet: column 'weight' has {negative} negative "
                               "values (weights must be >= 0)")
    if method == "fixed" and code is None:
        raise schema.DataError("interactions.parquet: split method 'fixed' needs a 'split' column")
    (user_map, user_remap), (item_map, item_remap) = users.finish(), items.finish()
    for start in range(0, n, _BATCH_ROWS):      # provisional → map indices, block by block
        u[start:start + _BATCH_ROWS] = user_remap[u[start:start + _BATCH_ROWS]]
        i[start:start + _BATCH_ROWS] = item_remap[i[start:start + _BATCH_ROWS]]
    return _Interactions(user_map, item_map, u, i, code, kept.get("timestamp"), kept.get("weight"))


def _count_duplicates(key: np.ndarray, code: np.ndarray, first: np.ndarray, has_eval: bool,
                      corrections: dict) -> None:
    """Counts the dropped rows (``~first``) of rows sorted by key, train first, latest first."""
    dup = int((~first).sum())
    if dup and has_eval:
        in_train = sorted_unique(key[code == TRAIN])
        leaked = np.isin(key[~first], in_train) & (code[~first] != TRAIN)
        correct(corrections, "eval_pairs_also_in_train", leaked.sum(),
                 "valid/test pairs already in train, dropped from evaluation")
        dup -= int(leaked.sum())
    correct(corrections, "duplicate_interactions", dup, "repeated (user, item) rows merged, latest kept")


def _dedupe(inter: _Interactions, corrections: dict) -> np.ndarray:
    """Drops repeated (user, item) rows in place, keeping one per pair: train wins over valid and
    test, then the latest row. Returns ``order [K]``: the kept rows sorted by (user, item)."""
    key = inter.u.astype(np.int64) * len(inter.items) + inter.i      # [N]
    order = np.argsort(key)                                          # [N] equal keys side by side
    pos = order[tied_slots(key, order)]                              # [D] repeated, D << N
    key = key[pos]
    code = inter.code[pos] if inter.code is not None else np.zeros(pos.size, dtype=np.int8)
    sub = np.lexsort((-pos, code, key))                              # key, train first, latest
    key, code, pos = key[sub], code[sub], pos[sub]
    first = np.ones(pos.size, dtype=bool)                            # the row each key keeps
    first[1:] = key[1:] != key[:-1]
    _count_duplicates(key, code, first, inter.code is not None and bool(inter.code.any()),
                      corrections)
    keep = np.ones(order.size, dtype=bool)                           # [N]
    keep[pos[~first]] = False
    order = order[keep[order]]                                       # [K] row positions
    kept_index = np.cumsum(keep, dtype=_index_dtype(order.size)) - 1  # [N] row → kept row
    inter.take(keep)
    return kept_index[order]


def _split(inter: _Interactions, method: str, cfg: SplitConfig, path: str,
           corrections: dict) -> np.ndarray:
    """``[K]`` int8 codes of the deduplicated interactions, in their file order."""
    stats = {}
    code = inter.code if inter.code is not None else np.zeros(inter.u.size, dtype=np.int8)
    if method == "ratio":
        code, stats = ratio_split(inter.u, cfg.ratios, cfg.seed)
    elif method == "temporal":
        if inter.ts is None:
            raise schema.DataError(f"{path}: the temporal split needs a 'timestamp' column")
        code, stats = temporal_split(inter.u, inter.ts)
    elif cfg.valid_ratio > 0:
        code, stats = carve_valid(inter.u, code, cfg.valid_ratio, cfg.seed)
    correct(corrections, "users_kept_in_train", stats.get("kept_in_train_users", 0),
             "users with too few interactions to split: all in train, not evaluated")
    return code


def _save_splits(out: str, inter: _Interactions, code: np.ndarray, order: np.ndarray) -> None:
    """``csr/{train,valid,test}``: each split's user→item CSR (train with its weights)."""
    for c, name in enumerate(SPLIT_NAMES):
        rows = order[code[order] == c]          # [E_c] this split's interactions by (user, item)
        extra = {"weight": inter.weight[rows]} if c == TRAIN and inter.weight is not None else {}
        _save_sorted_csr(os.path.join(out, "csr", name), inter.u[rows], inter.i[rows],
                         len(inter.users), **extra)


def _relation(root, out, spec, src_ids: IdMap, dst_col: str, dst_ids: IdMap, name, corrections):
    path = spec.filename(root)
    if not os.path.exists(path):
        return 0
    t = schema.read_table(path, spec)
    src, dst = src_ids.lookup(t[spec.ids[0]]), dst_ids.lookup(t[dst_col])
    ok = (src >= 0) & (dst >= 0)
    if not ok.any():
        raise schema.DataError(
            f"{path}: none of its {len(ok)} rows has a {spec.ids[0]} the interactions mention "
            f"(its ids are {t[spec.ids[0]].type}, the interactions' "
            f"{src_ids.ids.type}?): the whole table would be dropped")
    correct(corrections, f"{name}_unknown_ids", (~ok).sum(),
             f"{path}: rows whose ids no interaction mentions")
    key = sorted_unique(src[ok] * len(dst_ids) + dst[ok])
    correct(corrections, f"{name}_duplicates", ok.sum() - key.size, f"{path}: repeated rows")
    _save_sorted_csr(os.path.join(out, "csr", name), key // len(dst_ids), key % len(dst_ids),
                     len(src_ids))
    return int(key.size)


def _creators(root: str, out: str, users: IdMap, items: IdMap, corrections: dict
              ) -> tuple[int | None, dict[str, int]]:
    """``item_creator`` and ``user_creator`` CSRs: the creator count and the edges per relation."""
    creator_cols = [schema.read_table(s.filename(root), s, columns=["creator_id"])["creator_id"]
                    for s in (schema.ITEM_CREATOR, schema.USER_CREATOR) if os.path.exists(s.filename(root))]
    if not creator_cols:
        return None, {}
    creators = IdMap.from_columns(*creator_cols)
    del creator_cols
    creators.save(os.path.join(out, "ids", "creator.parquet"))
    relations = {"item_creator": _relation(root, out, schema.ITEM_CREATOR, items, "creator_id",
                                           creators, "item_creator", corrections),
                 "user_creator": _relation(root, out, schema.USER_CREATOR, users, "creator_id",
                                           creators, "user_creator", corrections)}
    return len(creators), relations


class _FeatureMatrix:
    """One modality's ``[num_items, dim]`` float32 matrix, filled batch by batch, and the checks
    of a whole-table read (equal lengths, finite values), reported by :meth:`finish`."""

    def __init__(self, items: IdMap):
        self.items = items
        self.matrix: np.ndarray | None = None   # [num_items, dim], from the first batch on
        self.first_length = None                # length of the table's first row
        self.uneven = False                     # some row's length differs from the first's
        self.bad_rows, self.first_bad = 0, None  # rows with NaN/inf, the first one's item_id
        self.seen = np.zeros(len(items), dtype=bool)  # [num_items] has a feature row
        self.unknown = 0                        # rows of items no interaction mentions
        self.duplicates = 0                     # rows of an item that already had one

    def add(self, batch: pa.RecordBatch) -> None:
        col = batch.column("feature")
        lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)    # [b]
        self.first_length = lengths[0] if self.first_length is None else self.first_length
        self.uneven = self.uneven or bool((lengths != self.first_length).any())
        if self.uneven:
            return
        dim = int(self.first_length)
        if dim == 0:
            self.uneven = True  # reported by check(): empty vectors
            return
        values = pc.list_flatten(col).to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)
        bad = ~np.isfinite(values).all(1)                                      # [b]
        if bad.any() and self.first_bad is None:
            self.first_bad = batch.column("item_id")[int(np.flatnonzero(bad)[0])]
        self.bad_rows += int(bad.sum())
        if self.bad_rows:
            return
        idx = self.items.lookup(batch.column("item_id"))                       # [b], -1 unknown
        ok = idx >= 0
        self.unknown += int((~ok).sum())
        if self.matrix is None:
            self.matrix = np.zeros((len(self.items), dim), dtype=np.float32)
        rows = idx[ok]
        self.duplicates += rows.size - np.unique(rows[~self.seen[rows]]).size  # repeats
        self.matrix[rows] = values[ok]  # a repeated item: its last row in the file wins
        self.seen[idx[ok]] = True

    def check(self, path: str) -> None:
        if self.uneven and self.first_length == 0:
            raise schema.DataError(f"{path}: column 'feature' holds empty vectors (length 0)")
        if self.uneven:  # the message lists the whole column's lengths: re-read it (error path)
            col = pq.read_table(path, columns=["feature"])["feature"].combine_chunks()
            if col.null_count:
                raise schema.DataError(f"{path}: column 'feature' has {col.null_count} null "
                                       "vectors (drop those rows, or give every item a vector)")
            lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
            raise schema.DataError(f"{path}: column 'feature' has rows of different lengths "
                                   f"({sorted(set(lengths.tolist()))[:5]})")
        if self.bad_rows:
            raise schema.DataError(f"{path}: column 'feature' has NaN/inf in {self.bad_rows} rows "
                                   f"(first item_id {self.first_bad})")


def _feature_column_error(path: str) -> str | None:
    """Why ``path`` has no usable ``feature`` column, or None."""
    fields = pq.read_schema(path)
    if "feature" not in fields.names:
        return f"{path}: missing column 'feature' (a list of floats per item)"
    t = fields.field("feature").type
    if not (pa.types.is_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_large_list(t)):
        return f"{path}: column 'feature' must be a list of floats, not {t}"
    if not (pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type)):
        return f"{path}: column 'feature' must be a list of floats, not a list of {t.value_type}"
    return None


def _features(path: str, modality: str, items: IdMap, out: str, corrections) -> int:
    """Streams ``features/<modality>.parquet`` into ``features/<modality>.npy``; returns its dim."""
    names = _schema_names(path, schema.FEATURES)
    ids = [c for c in ("item_id", "split") if c in names]
    problem = _feature_column_error(path)
    if problem:
        for _ in _batches(path, schema.FEATURES, ids):  # null ids and bad splits are named first
            pass
        raise schema.DataError(problem)
    t = pq.read_schema(path).field("feature").type
    rows = max(1, _FEATURE_BYTES // (4 * t.list_size)) if pa.types.is_fixed_size_list(t) else 1 << 16
    acc = _FeatureMatrix(items)
    for batch in _batches(path, schema.FEATURES, [*ids, "feature"], batch_rows=rows):
        acc.add(batch)
    acc.check(path)
    correct(corrections, f"features_{modality}_unknown_items", acc.unknown,
             f"{path}: feature rows of items no interaction mentions, dropped")
    correct(corrections, f"features_{modality}_duplicate_items", acc.duplicates,
             f"{path}: repeated feature rows of one item (the last one in the file is kept)")
    correct(corrections, f"features_{modality}_missing_items", len(items) - int(acc.seen.sum()),
             f"{path}: items without a feature row get zeros")
    np.save(os.path.join(out, "features", f"{modality}.npy"), acc.matrix)
    return acc.matrix.shape[1]


def ingest(root: str, out: str, cfg: SplitConfig) -> dict:
    """Writes the store's arrays under ``out`` and returns its ``meta`` dict."""
    corrections: dict[str, int] = {}
    path = schema.INTERACTIONS.filename(root)
    names = _schema_names(path, schema.INTERACTIONS)
    method = cfg.method if cfg.method != "auto" else ("fixed" if "split" in names else "ratio")
    inter = _read_interactions(path, names, method)
    order = _dedupe(inter, corrections)
    code = _split(inter, method, cfg, path, corrections)
    counts = {name: int((code == c).sum()) for c, name in enumerate(SPLIT_NAMES)}
    if counts["train"] == 0 or counts["test"] == 0:
        raise schema.DataError(f"{path}: the {method} split leaves an empty split: {counts}")
    os.makedirs(os.path.join(out, "ids"))
    os.makedirs(os.path.join(out, "features"))
    users, items = inter.users, inter.items
    warnings = eval_warnings(inter.u, inter.i, code, len(users), len(items))
    for what, count in warnings.items():
        log.warning("%s: %d (%s)", what, count, _WARNINGS[what])
    users.save(os.path.join(out, "ids", "user.parquet"))
    items.save(os.path.join(out, "ids", "item.parquet"))
    _save_splits(out, inter, code, order)
    del inter, code, order                    # the interactions are done: free them for the rest
    num_nodes = {"user": len(users), "item": len(items)}
    num_creators, relations = _creators(root, out, users, items, corrections)
    if num_creators is not None:
        num_nodes["creator"] = num_creators
    num_triples, num_entities, num_relations = _kg(root, out, items, corrections)
    if num_triples:
        num_nodes["entity"], num_nodes["relation"] = num_entities, num_relations
    num_user_triples, num_user_entities, num_user_relations = _user_kg(root, out, users,
                                                                       corrections)
    if num_user_triples:
        num_nodes["user_entity"], num_nodes["user_relation"] = (num_user_entities,
                                                                num_user_relations)
    features = {m: _features(p, m, items, out, corrections)
                for m, p in schema.feature_files(root).items()}
    log.info("ingested %s: %s users, %s items, splits %s", root, len(users), len(items), counts)
    user_kg = {"user_kg_triples": num_user_triples} if num_user_triples else {}  # absent: none
    return {"source": os.path.abspath(root), "num_nodes": num_nodes, "splits": counts,
            "split": {"method": method, "ratios": list(cfg.ratios), "valid_ratio": cfg.valid_ratio,
                      "seed": cfg.seed},
            "relations": relations, "kg_triples": num_triples, **user_kg, "features": features,
            "corrections": corrections, "warnings": warnings}
