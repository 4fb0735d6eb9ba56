"""Build steps of a :class:`~reelgraph.data.store.GraphStore`: Parquet tables → id maps, splits, CSR.

Every correction (duplicate interactions, ids unknown to the interactions, test pairs already in
train, users too small to split) is logged as a warning and counted in ``meta["corrections"]``.
"""
from __future__ import annotations

import logging
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from reelgraph.data import schema
from reelgraph.data.idmap import IdMap
from reelgraph.data.split import TRAIN, VALID, TEST, SplitConfig, carve_valid, ratio_split, temporal_split
from reelgraph.graph import to_csr

log = logging.getLogger("reelgraph.data")
SPLIT_NAMES = ("train", "valid", "test")


def _correct(corrections: dict, what: str, count: int, message: str) -> None:
    if count:
        corrections[what] = corrections.get(what, 0) + int(count)
        log.warning("%s: %d (%s)", what, count, message)


def _save_csr(folder: str, row: np.ndarray, col: np.ndarray, num_rows: int, **extra: np.ndarray) -> None:
    """Saves rows sorted by (row, col), so each row's columns are ascending."""
    os.makedirs(folder, exist_ok=True)
    order = np.lexsort((col, row))
    rowptr, c, _ = to_csr(torch.from_numpy(row[order]), torch.from_numpy(col[order]), num_rows)
    np.save(os.path.join(folder, "rowptr.npy"), rowptr.numpy())
    np.save(os.path.join(folder, "col.npy"), c.numpy())
    for name, values in extra.items():
        np.save(os.path.join(folder, f"{name}.npy"), values[order])


def _numbers(table: pa.Table, col: str) -> np.ndarray | None:
    if col not in table.column_names:
        return None
    c = table[col].combine_chunks()
    if pa.types.is_timestamp(c.type):
        c = c.cast(pa.int64())
    values = c.to_numpy(zero_copy_only=False).astype(np.float64)
    if np.isnan(values).any():
        raise schema.DataError(f"interactions.parquet: column '{col}' has {int(np.isnan(values).sum())} "
                               "null/NaN values")
    return values


def _dedupe(u, i, code, num_items, corrections) -> np.ndarray:
    """Row positions kept: one per (user, item); train wins over test, then the latest row."""
    key = u * num_items + i
    order = np.lexsort((-np.arange(u.size), code, key))
    first = np.ones(order.size, dtype=bool)
    first[1:] = key[order][1:] != key[order][:-1]
    keep = np.sort(order[first])
    dup = u.size - keep.size
    if dup and code.any():
        in_train = np.unique(key[code == TRAIN])
        leaked = np.isin(key[order][~first], in_train) & (code[order][~first] != TRAIN)
        _correct(corrections, "eval_pairs_also_in_train", leaked.sum(),
                 "valid/test pairs already in train, dropped from evaluation")
        dup -= int(leaked.sum())
    _correct(corrections, "duplicate_interactions", dup, "repeated (user, item) rows merged, latest kept")
    return keep


def _fixed_codes(table, method: str, num_rows: int) -> np.ndarray:
    """The ``split`` column's codes for the "fixed" method; all train otherwise (ratio and
    temporal splits run after deduplication)."""
    if method == "fixed":
        if "split" not in table.column_names:
            raise schema.DataError("interactions.parquet: split method 'fixed' needs a 'split' column")
        names = table["split"].combine_chunks()
        code = np.full(len(names), TRAIN, dtype=np.int8)
        code[pc.equal(names, "valid").to_numpy(zero_copy_only=False)] = VALID
        code[pc.equal(names, "test").to_numpy(zero_copy_only=False)] = TEST
        return code
    return np.zeros(num_rows, dtype=np.int8)


def _relation(root, out, spec, src_ids: IdMap, dst_col: str, dst_ids: IdMap, name, corrections):
    path = spec.filename(root)
    if not os.path.exists(path):
        return 0
    t = schema.read_table(path, spec)
    src, dst = src_ids.lookup(t[spec.ids[0]]), dst_ids.lookup(t[dst_col])
    ok = (src >= 0) & (dst >= 0)
    _correct(corrections, f"{name}_unknown_ids", (~ok).sum(), f"{path}: rows whose ids no interaction mentions")
    key = np.unique(src[ok] * len(dst_ids) + dst[ok])
    _correct(corrections, f"{name}_duplicates", ok.sum() - key.size, f"{path}: repeated rows")
    _save_csr(os.path.join(out, "csr", name), key // len(dst_ids), key % len(dst_ids), len(src_ids))
    return int(key.size)


def _kg(root, out, items: IdMap, corrections) -> tuple[int, int, int]:
    path = schema.KG.filename(root)
    if not os.path.exists(path):
        return 0, 0, 0
    t = schema.read_table(path, schema.KG)
    head, tail = (t[c].combine_chunks().cast(pa.string()) for c in ("head", "tail"))
    item_str = IdMap(items.ids.cast(pa.string()))
    others = IdMap.from_columns(pc.filter(head, pc.invert(pc.is_in(head, item_str.ids))),
                                pc.filter(tail, pc.invert(pc.is_in(tail, item_str.ids))))
    entities = IdMap(pa.concat_arrays([item_str.ids, others.ids.cast(pa.string())]))
    relations = IdMap.from_columns(t["relation"])
    triples = np.stack([entities.lookup(head), relations.lookup(t["relation"]), entities.lookup(tail)])
    triples = np.unique(triples, axis=1)
    _correct(corrections, "kg_duplicates", t.num_rows - triples.shape[1], f"{path}: repeated triples")
    os.makedirs(os.path.join(out, "kg"))
    for name, row in zip(("head", "relation", "tail"), triples):
        np.save(os.path.join(out, "kg", f"{name}.npy"), row)
    entities.save(os.path.join(out, "ids", "entity.parquet"))
    relations.save(os.path.join(out, "ids", "relation.parquet"))
    return triples.shape[1], len(entities), len(relations)


def _features(path: str, modality: str, items: IdMap, out: str, corrections) -> int:
    t = schema.read_table(path, schema.FEATURES, columns=None)
    if "feature" not in t.column_names:
        raise schema.DataError(f"{path}: missing column 'feature' (a list of floats per item)")
    col = t["feature"].combine_chunks()
    if not (pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type)
            or pa.types.is_large_list(col.type)):
        raise schema.DataError(f"{path}: column 'feature' must be a list of floats, not {col.type}")
    lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
    if lengths.size and (lengths != lengths[0]).any():
        raise schema.DataError(f"{path}: column 'feature' has rows of different lengths "
                               f"({sorted(set(lengths.tolist()))[:5]})")
    dim = int(lengths[0])
    values = pc.list_flatten(col).to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)
    bad = ~np.isfinite(values).all(1)
    if bad.any():
        raise schema.DataError(f"{path}: column 'feature' has NaN/inf in {int(bad.sum())} rows "
                               f"(first item_id {t['item_id'][int(np.flatnonzero(bad)[0])]})")
    idx = items.lookup(t["item_id"])
    ok = idx >= 0
    _correct(corrections, f"features_{modality}_unknown_items", (~ok).sum(),
             f"{path}: feature rows of items no interaction mentions, dropped")
    matrix = np.zeros((len(items), dim), dtype=np.float32)
    matrix[idx[ok]] = values[ok]
    missing = len(items) - np.unique(idx[ok]).size
    _correct(corrections, f"features_{modality}_missing_items", missing,
             f"{path}: items without a feature row get zeros")
    np.save(os.path.join(out, "features", f"{modality}.npy"), matrix)
    return dim


def ingest(root: str, out: str, cfg: SplitConfig) -> dict:
    """Writes the store's arrays under ``out`` and returns its ``meta`` dict."""
    corrections: dict[str, int] = {}
    path = schema.INTERACTIONS.filename(root)
    table = schema.read_table(path, schema.INTERACTIONS)
    users, items = IdMap.from_columns(table["user_id"]), IdMap.from_columns(table["item_id"])
    u, i = users.lookup(table["user_id"]), items.lookup(table["item_id"])
    ts, weight = _numbers(table, "timestamp"), _numbers(table, "weight")
    method = cfg.method if cfg.method != "auto" else ("fixed" if "split" in table.column_names else "ratio")
    code = _fixed_codes(table, method, u.size)
    keep = _dedupe(u, i, code, len(items), corrections)
    u, i, code = u[keep], i[keep], code[keep]
    ts = ts[keep] if ts is not None else None
    weight = weight[keep] if weight is not None else None
    stats = {}
    if method == "ratio":
        code, stats = ratio_split(u, cfg.ratios, cfg.seed)
    elif method == "temporal":
        if ts is None:
            raise schema.DataError(f"{path}: the temporal split needs a 'timestamp' column")
        code, stats = temporal_split(u, ts)
    elif cfg.valid_ratio > 0:
        code, stats = carve_valid(u, code, cfg.valid_ratio, cfg.seed)
    _correct(corrections, "users_kept_in_train", stats.get("kept_in_train_users", 0),
             "users with too few interactions to split: all in train, not evaluated")
    counts = {name: int((code == c).sum()) for c, name in enumerate(SPLIT_NAMES)}
    if counts["train"] == 0 or counts["test"] == 0:
        raise schema.DataError(f"{path}: the {method} split leaves an empty split: {counts}")
    os.makedirs(os.path.join(out, "ids"))
    os.makedirs(os.path.join(out, "features"))
    users.save(os.path.join(out, "ids", "user.parquet"))
    items.save(os.path.join(out, "ids", "item.parquet"))
    for c, name in enumerate(SPLIT_NAMES):
        m = code == c
        extra = {"weight": weight[m].astype(np.float32)} if name == "train" and weight is not None else {}
        _save_csr(os.path.join(out, "csr", name), u[m], i[m], len(users), **extra)
    creator_cols = [schema.read_table(s.filename(root), s, columns=["creator_id"])["creator_id"]
                    for s in (schema.ITEM_CREATOR, schema.USER_CREATOR) if os.path.exists(s.filename(root))]
    num_nodes = {"user": len(users), "item": len(items)}
    relations = {}
    if creator_cols:
        creators = IdMap.from_columns(*creator_cols)
        creators.save(os.path.join(out, "ids", "creator.parquet"))
        num_nodes["creator"] = len(creators)
        relations["item_creator"] = _relation(root, out, schema.ITEM_CREATOR, items, "creator_id",
                                              creators, "item_creator", corrections)
        relations["user_creator"] = _relation(root, out, schema.USER_CREATOR, users, "creator_id",
                                              creators, "user_creator", corrections)
    num_triples, num_entities, num_relations = _kg(root, out, items, corrections)
    if num_triples:
        num_nodes["entity"], num_nodes["relation"] = num_entities, num_relations
    features = {m: _features(p, m, items, out, corrections)
                for m, p in schema.feature_files(root).items()}
    log.info("ingested %s: %s users, %s items, splits %s", root, len(users), len(items), counts)
    return {"source": os.path.abspath(root), "num_nodes": num_nodes, "splits": counts,
            "split": {"method": method, "ratios": list(cfg.ratios), "valid_ratio": cfg.valid_ratio,
                      "seed": cfg.seed},
            "relations": relations, "kg_triples": num_triples, "features": features,
            "corrections": corrections}
