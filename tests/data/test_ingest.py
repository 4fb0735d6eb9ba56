"""The streaming ingest writes the same store as the whole-table ingest it replaced.

``_old_*`` below is a frozen copy of that implementation (``reelgraph/data/ingest.py``,
``split.py`` and the ``IdMap`` methods it used, as of commit f47e25e), kept only here as the
reference: every test builds a store both ways and compares every file byte for byte.
"""
import filecmp
import json
import logging
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch

from reelgraph.data import idmap, ingest, schema, split
from reelgraph.data.idmap import IdCollector, IdMap
from reelgraph.data.schema import WRITE_OPTIONS
from reelgraph.data.split import SplitConfig
from reelgraph.data.store import FORMAT_VERSION, GraphStore
from reelgraph.data.synthetic import PRESETS, WorldConfig


# ---------------------------------------------------------------- the reference (frozen copy)

def _old_idmap(*columns) -> pa.Array:
    chunks = [c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c for c in columns]
    if len({str(c.type) for c in chunks}) > 1:
        chunks = [c.cast(pa.string()) for c in chunks]
    uniq = pc.unique(pa.concat_arrays([c.cast(chunks[0].type) for c in chunks]))
    return uniq.take(pc.sort_indices(uniq))


def _old_lookup(ids: pa.Array, raw) -> np.ndarray:
    if isinstance(raw, pa.ChunkedArray):
        raw = raw.combine_chunks()
    if raw.type != ids.type:
        raw = raw.cast(pa.string()) if pa.types.is_string(ids.type) else raw.cast(ids.type)
    return pc.fill_null(pc.index_in(raw, value_set=ids), -1).to_numpy(zero_copy_only=False).astype(np.int64)


def _old_save_ids(ids: pa.Array, path: str) -> None:
    # the one change since f47e25e: every Parquet file written carries page checksums (issue 13)
    pq.write_table(pa.table({"raw_id": ids}), path, **WRITE_OPTIONS)


def _old_to_csr(row, col, num_rows):
    perm = torch.argsort(row, stable=True)
    counts = torch.bincount(row, minlength=num_rows)
    rowptr = torch.zeros(num_rows + 1, dtype=torch.long)
    torch.cumsum(counts, 0, out=rowptr[1:])
    return rowptr, col[perm], perm


def _old_rank_within_user(users, key):
    order = np.lexsort((key, users))
    counts = np.bincount(users)
    start = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size) - start[users[order]]
    n = counts[users]
    return n - 1 - rank, n, counts


def _old_assign(rev, n_test, n_valid):
    code = np.full(rev.size, 0, dtype=np.int8)
    code[rev < n_test + n_valid] = 1
    code[rev < n_test] = 2
    return code


def old_ratio_split(users, ratios=(0.8, 0.1, 0.1), seed=0):
    r_train, r_valid, r_test = (float(r) for r in ratios)
    if min(ratios) < 0 or abs(r_train + r_valid + r_test - 1.0) > 1e-6 or r_train <= 0:
        raise ValueError(f"split ratios must be non-negative, sum to 1 and keep some train: {ratios}")
    rng = np.random.default_rng(seed)
    rev, n, counts = _old_rank_within_user(users, rng.random(users.size))
    want_test = np.maximum(np.rint(counts * r_test), 1 if r_test > 0 else 0).astype(np.int64)
    want_valid = np.maximum(np.rint(counts * r_valid), 1 if r_valid > 0 else 0).astype(np.int64)
    small = counts < want_test + want_valid + 1
    want_test[small], want_valid[small] = 0, 0
    code = _old_assign(rev, want_test[users], want_valid[users])
    return code, {"kept_in_train_users": int((small & (counts > 0)).sum())}


def old_temporal_split(users, timestamps, num_valid=1, num_test=1):
    order_key = np.lexsort((np.arange(users.size), timestamps))
    key = np.empty(users.size, dtype=np.int64)
    key[order_key] = np.arange(users.size)
    rev, n, counts = _old_rank_within_user(users, key)
    ok = n >= num_valid + num_test + 1
    code = _old_assign(rev, np.where(ok, num_test, 0), np.where(ok, num_valid, 0))
    small = (counts > 0) & (counts < num_valid + num_test + 1)
    return code, {"kept_in_train_users": int(small.sum())}


def old_carve_valid(users, code, valid_ratio, seed=0):
    code = code.copy()
    train = np.flatnonzero(code == 0)
    sub, stats = old_ratio_split(users[train], (1.0 - valid_ratio, valid_ratio, 0.0), seed)
    code[train[sub == 1]] = 1
    return code, stats


def _old_correct(corrections, what, count, message):
    if count:
        corrections[what] = corrections.get(what, 0) + int(count)


def _old_save_csr(folder, row, col, num_rows, **extra):
    os.makedirs(folder, exist_ok=True)
    order = np.lexsort((col, row))
    rowptr, c, _ = _old_to_csr(torch.from_numpy(row[order]), torch.from_numpy(col[order]), num_rows)
    np.save(os.path.join(folder, "rowptr.npy"), rowptr.numpy())
    np.save(os.path.join(folder, "col.npy"), c.numpy())
    for name, values in extra.items():
        np.save(os.path.join(folder, f"{name}.npy"), values[order])


def _old_numbers(table, col):
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


def _old_dedupe(u, i, code, num_items, corrections):
    key = u * num_items + i
    order = np.lexsort((-np.arange(u.size), code, key))
    first = np.ones(order.size, dtype=bool)
    first[1:] = key[order][1:] != key[order][:-1]
    keep = np.sort(order[first])
    dup = u.size - keep.size
    if dup and code.any():
        in_train = np.unique(key[code == 0])
        leaked = np.isin(key[order][~first], in_train) & (code[order][~first] != 0)
        _old_correct(corrections, "eval_pairs_also_in_train", leaked.sum(), "")
        dup -= int(leaked.sum())
    _old_correct(corrections, "duplicate_interactions", dup, "")
    return keep


def _old_fixed_codes(table, method, num_rows):
    if method == "fixed":
        if "split" not in table.column_names:
            raise schema.DataError("interactions.parquet: split method 'fixed' needs a 'split' column")
        names = table["split"].combine_chunks()
        code = np.full(len(names), 0, dtype=np.int8)
        code[pc.equal(names, "valid").to_numpy(zero_copy_only=False)] = 1
        code[pc.equal(names, "test").to_numpy(zero_copy_only=False)] = 2
        return code
    return np.zeros(num_rows, dtype=np.int8)


def _old_relation(root, out, spec, src_ids, dst_col, dst_ids, name, corrections):
    path = spec.filename(root)
    if not os.path.exists(path):
        return 0
    t = schema.read_table(path, spec)
    src, dst = _old_lookup(src_ids, t[spec.ids[0]]), _old_lookup(dst_ids, t[dst_col])
    ok = (src >= 0) & (dst >= 0)
    _old_correct(corrections, f"{name}_unknown_ids", (~ok).sum(), "")
    key = np.unique(src[ok] * len(dst_ids) + dst[ok])
    _old_correct(corrections, f"{name}_duplicates", ok.sum() - key.size, "")
    _old_save_csr(os.path.join(out, "csr", name), key // len(dst_ids), key % len(dst_ids), len(src_ids))
    return int(key.size)


def _old_kg(root, out, items, corrections):
    path = schema.KG.filename(root)
    if not os.path.exists(path):
        return 0, 0, 0
    t = schema.read_table(path, schema.KG)
    head, tail = (t[c].combine_chunks().cast(pa.string()) for c in ("head", "tail"))
    item_str = items.cast(pa.string())
    others = _old_idmap(pc.filter(head, pc.invert(pc.is_in(head, item_str))),
                        pc.filter(tail, pc.invert(pc.is_in(tail, item_str))))
    entities = pa.concat_arrays([item_str, others.cast(pa.string())])
    relations = _old_idmap(t["relation"])
    triples = np.stack([_old_lookup(entities, head), _old_lookup(relations, t["relation"]),
                        _old_lookup(entities, tail)])
    triples = np.unique(triples, axis=1)
    _old_correct(corrections, "kg_duplicates", t.num_rows - triples.shape[1], "")
    os.makedirs(os.path.join(out, "kg"))
    for name, row in zip(("head", "relation", "tail"), triples):
        np.save(os.path.join(out, "kg", f"{name}.npy"), row)
    _old_save_ids(entities, os.path.join(out, "ids", "entity.parquet"))
    _old_save_ids(relations, os.path.join(out, "ids", "relation.parquet"))
    return triples.shape[1], len(entities), len(relations)


def _old_features(path, modality, items, out, corrections):
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
    idx = _old_lookup(items, t["item_id"])
    ok = idx >= 0
    _old_correct(corrections, f"features_{modality}_unknown_items", (~ok).sum(), "")
    matrix = np.zeros((len(items), dim), dtype=np.float32)
    matrix[idx[ok]] = values[ok]
    # counted since (issue 13): repeated rows of one item, the last kept
    _old_correct(corrections, f"features_{modality}_duplicate_items", ok.sum() - np.unique(idx[ok]).size, "")
    _old_correct(corrections, f"features_{modality}_missing_items", len(items) - np.unique(idx[ok]).size, "")
    np.save(os.path.join(out, "features", f"{modality}.npy"), matrix)
    return dim


def _old_ingest(root, out, cfg):
    corrections = {}
    path = schema.INTERACTIONS.filename(root)
    table = schema.read_table(path, schema.INTERACTIONS)
    users, items = _old_idmap(table["user_id"]), _old_idmap(table["item_id"])
    u, i = _old_lookup(users, table["user_id"]), _old_lookup(items, table["item_id"])
    ts, weight = _old_numbers(table, "timestamp"), _old_numbers(table, "weight")
    method = cfg.method if cfg.method != "auto" else ("fixed" if "split" in table.column_names else "ratio")
    code = _old_fixed_codes(table, method, u.size)
    keep = _old_dedupe(u, i, code, len(items), corrections)
    u, i, code = u[keep], i[keep], code[keep]
    ts = ts[keep] if ts is not None else None
    weight = weight[keep] if weight is not None else None
    stats = {}
    if method == "ratio":
        code, stats = old_ratio_split(u, cfg.ratios, cfg.seed)
    elif method == "temporal":
        if ts is None:
            raise schema.DataError(f"{path}: the temporal split needs a 'timestamp' column")
        code, stats = old_temporal_split(u, ts)
    elif cfg.valid_ratio > 0:
        code, stats = old_carve_valid(u, code, cfg.valid_ratio, cfg.seed)
    _old_correct(corrections, "users_kept_in_train", stats.get("kept_in_train_users", 0), "")
    counts = {name: int((code == c).sum()) for c, name in enumerate(("train", "valid", "test"))}
    if counts["train"] == 0 or counts["test"] == 0:
        raise schema.DataError(f"{path}: the {method} split leaves an empty split: {counts}")
    os.makedirs(os.path.join(out, "ids"))
    os.makedirs(os.path.join(out, "features"))
    _old_save_ids(users, os.path.join(out, "ids", "user.parquet"))
    _old_save_ids(items, os.path.join(out, "ids", "item.parquet"))
    for c, name in enumerate(("train", "valid", "test")):
        m = code == c
        extra = {"weight": weight[m].astype(np.float32)} if name == "train" and weight is not None else {}
        _old_save_csr(os.path.join(out, "csr", name), u[m], i[m], len(users), **extra)
    creator_cols = [schema.read_table(s.filename(root), s, columns=["creator_id"])["creator_id"]
                    for s in (schema.ITEM_CREATOR, schema.USER_CREATOR) if os.path.exists(s.filename(root))]
    num_nodes = {"user": len(users), "item": len(items)}
    relations = {}
    if creator_cols:
        creators = _old_idmap(*creator_cols)
        _old_save_ids(creators, os.path.join(out, "ids", "creator.parquet"))
        num_nodes["creator"] = len(creators)
        relations["item_creator"] = _old_relation(root, out, schema.ITEM_CREATOR, items, "creator_id",
                                                  creators, "item_creator", corrections)
        relations["user_creator"] = _old_relation(root, out, schema.USER_CREATOR, users, "creator_id",
                                                  creators, "user_creator", corrections)
    num_triples, num_entities, num_relations = _old_kg(root, out, items, corrections)
    if num_triples:
        num_nodes["entity"], num_nodes["relation"] = num_entities, num_relations
    features = {m: _old_features(p, m, items, out, corrections)
                for m, p in schema.feature_files(root).items()}
    return {"source": os.path.abspath(root), "num_nodes": num_nodes, "splits": counts,
            "split": {"method": method, "ratios": list(cfg.ratios), "valid_ratio": cfg.valid_ratio,
                      "seed": cfg.seed},
            "relations": relations, "kg_triples": num_triples, "features": features,
            "corrections": corrections}


def old_build(dataset: str, root: str, cfg: SplitConfig) -> str:
    """``GraphStore.build`` as it ran the reference ingest."""
    os.makedirs(root)
    meta = _old_ingest(dataset, root, cfg)
    meta["version"] = FORMAT_VERSION
    with open(os.path.join(root, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return root


# ---------------------------------------------------------------- datasets and comparisons

def _write(root, name: str, row_group_size: int | None = None, **cols) -> None:
    path = os.path.join(root, f"{name}.parquet")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pq.write_table(pa.table(cols), path, row_group_size=row_group_size)


def _random_dataset(root, seed: int, user_ids: str = "str", item_ids: str = "int",
                    split: bool = True, weight: pa.DataType | None = pa.float32(),
                    timestamp: pa.DataType | None = pa.int64(), side: bool = True) -> str:
    """~600 interactions of 40 users x 30 items (many repeated pairs, tied timestamps), in row
    groups of 53, and optionally creators, follows, a KG and two feature modalities, each with
    unknown ids, repeated rows and missing items."""
    rng = np.random.default_rng(seed)
    n, nu, ni = 600, 40, 30
    users = ([f"u{k:03d}" for k in rng.permutation(nu)] if user_ids == "str"
             else (rng.permutation(nu) * 7 - 50).tolist())              # negative ints too
    items = ([f"v{k}" for k in rng.permutation(ni)] if item_ids == "str"
             else (1000 + 13 * rng.permutation(ni)).tolist())
    u, i = rng.integers(nu, size=n), rng.integers(ni, size=n)
    cols = {"user_id": pa.array([users[k] for k in u]), "item_id": pa.array([items[k] for k in i])}
    if timestamp is not None:
        cols["timestamp"] = pa.array(rng.integers(0, 15, n)).cast(timestamp)
    if weight is not None:
        cols["weight"] = pa.array(rng.integers(1, 6, n)).cast(weight)
    if split:
        cols["split"] = pa.array(rng.choice(["train", "valid", "test"], n, p=[0.6, 0.2, 0.2]))
    _write(root, "interactions", row_group_size=53, **cols)
    if side:
        _side_tables(root, rng, users, items)
    return root


def _side_tables(root, rng, users: list, items: list) -> None:
    unknown_item = "v999" if isinstance(items[0], str) else 99999
    unknown_user = "u999" if isinstance(users[0], str) else 99999
    ic_items = items[:25] + items[:3] + [unknown_item]                  # 5 items without a creator
    _write(root, "item_creator", row_group_size=7, item_id=ic_items,
           creator_id=[f"c{k}" for k in rng.integers(9, size=len(ic_items))])
    follows = [users[k] for k in rng.integers(len(users), size=60)] + [unknown_user]
    _write(root, "user_creator", row_group_size=11, user_id=follows,
           creator_id=[f"c{k}" for k in rng.integers(12, size=len(follows))])
    entities = [str(x) for x in items[:20]] + [f"e{k}" for k in range(15)]
    head, tail = ([entities[k] for k in rng.integers(len(entities), size=80)] for _ in range(2))
    relation = [f"r{k}" for k in rng.integers(4, size=80)]
    _write(root, "kg", row_group_size=13, head=head + head[:5], relation=relation + relation[:5],
           tail=tail + tail[:5])                                        # 5 repeated triples
    visual_ids = items[:28] + [items[27], items[0], unknown_item] + items[5:8]  # repeats: last wins
    fixed = pa.FixedSizeListArray.from_arrays(
        pa.array(rng.standard_normal(len(visual_ids) * 4).astype(np.float32)), 4)
    _write(root, "features/visual", row_group_size=6, item_id=visual_ids, feature=fixed)
    rows = [rng.standard_normal(3).tolist() for _ in range(20)]
    _write(root, "features/textual", row_group_size=6, item_id=items[10:30], feature=rows)


def _build_both(dataset: str, tmp_path, cfg: SplitConfig) -> tuple[str | None, str, str]:
    """Builds the store with the reference and the new ingest; both must fail alike or succeed.
    Returns ``(error, old_root, new_root)``."""
    old_root, new_root = str(tmp_path / "old"), str(tmp_path / "new")
    errors = []
    for build, root in ((old_build, old_root), (GraphStore.build, new_root)):
        try:
            build(dataset, root, cfg)
            errors.append(None)
        except (schema.DataError, ValueError) as e:
            errors.append(f"{type(e).__name__}: {e}")
    assert errors[1] == errors[0]
    if errors[0] is None:
        _assert_same_store(old_root, new_root)
    return errors[0], old_root, new_root


def _files(root: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def _assert_same_store(old_root: str, new_root: str) -> None:
    """Same files; every array the same dtype, shape and values; every file the same bytes."""
    assert _files(new_root) == _files(old_root)
    for f in _files(old_root):
        a, b = os.path.join(old_root, f), os.path.join(new_root, f)
        if f.endswith(".npy"):
            x, y = np.load(a), np.load(b)
            assert (x.dtype, x.shape) == (y.dtype, y.shape), f
            np.testing.assert_array_equal(y, x, err_msg=f)
        elif f == "meta.json":  # the reference predates meta["warnings"] (issue 13)
            new = json.load(open(b))
            new.pop("warnings")
            assert new == json.load(open(a))
            continue
        assert filecmp.cmp(a, b, shallow=False), f"{f} differs"


@pytest.fixture
def small_batches(monkeypatch):
    """Batches of a few rows, so every streamed step crosses many batch and block boundaries, and
    random split keys packed with 3 bits, so many tie."""
    monkeypatch.setattr(ingest, "_BATCH_ROWS", 16)
    monkeypatch.setattr(ingest, "_FEATURE_BYTES", 4 * 4 * 5)   # 5 rows of a 4-d feature
    monkeypatch.setattr(idmap, "MERGE_WORDS", 7)
    monkeypatch.setattr(split, "_BLOCK", 8)
    monkeypatch.setattr(split, "RANDOM_KEY_BITS", 3)


CONFIGS = {
    "auto": SplitConfig(),
    "fixed+carve": SplitConfig(method="fixed", valid_ratio=0.3, seed=2),
    "ratio": SplitConfig(method="ratio"),
    "ratio-622": SplitConfig(method="ratio", ratios=(0.6, 0.2, 0.2), seed=5),
    "ratio-no-valid": SplitConfig(method="ratio", ratios=(0.9, 0.0, 0.1)),
    "temporal": SplitConfig(method="temporal"),
}
DATASETS = {
    "str-users-int-items": dict(),
    "int-users-str-items-int-weights": dict(user_ids="int", item_ids="str", weight=pa.int64()),
    "no-split-f64-weights-ts-type": dict(split=False, weight=pa.float64(), timestamp=pa.timestamp("s")),
    "bare": dict(split=False, weight=None, timestamp=None, side=False),
}


# ---------------------------------------------------------------- tests

@pytest.mark.parametrize("cfg_name", CONFIGS.keys())
@pytest.mark.parametrize("kind", DATASETS.keys())
def test_random_datasets_match_reference(tmp_path, small_batches, kind, cfg_name):
    dataset = _random_dataset(str(tmp_path / "ds"), seed=len(kind), **DATASETS[kind])
    error, _, new_root = _build_both(dataset, tmp_path, CONFIGS[cfg_name])
    possible = {"fixed+carve": DATASETS[kind].get("split", True),            # needs a split column
                "temporal": DATASETS[kind].get("timestamp", True)}.get(cfg_name, True)
    assert (error is None) == bool(possible), error
    if error is None:
        meta = GraphStore.open(new_root).meta
        assert meta["corrections"]["duplicate_interactions"] > 0
        if kind != "bare":
            assert {"item_creator_unknown_ids", "kg_duplicates", "features_visual_unknown_items",
                    "features_textual_missing_items"} <= set(meta["corrections"])


@pytest.mark.parametrize("batches", ["default", "small"])
def test_dedupe_keeps_train_then_latest_by_hand(tmp_path, request, batches, caplog):
    if batches == "small":
        request.getfixturevalue("small_batches")
    root = str(tmp_path / "ds")
    _write(root, "interactions", row_group_size=3,
           user_id=["a", "a", "a", "a", "a", "a", "b", "b", "b"],
           item_id=["x", "x", "y", "y", "z", "z", "x", "x", "y"],
           split=["train", "test", "test", "test", "train", "train", "valid", "test", "train"],
           weight=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    with caplog.at_level(logging.WARNING, logger="reelgraph.data"):
        _, _, new_root = _build_both(root, tmp_path, SplitConfig())
    store = GraphStore.open(new_root)
    # (a,x): train beats test, a leaked eval pair; (a,y), (a,z): latest kept; (b,x): valid beats test
    assert store.meta["corrections"] == {"eval_pairs_also_in_train": 1, "duplicate_interactions": 3}
    assert "eval_pairs_also_in_train: 1" in caplog.text
    assert store.meta["splits"] == {"train": 3, "valid": 1, "test": 1}
    train = store.graph("train")
    assert train.rowptr.tolist() == [0, 2, 3] and train.col.tolist() == [0, 2, 1]
    assert np.allclose(store.edge_weight().numpy(), [0.1, 0.6, 0.9])
    assert store.graph("valid").col.tolist() == [0] and store.graph("valid").rowptr.tolist() == [0, 0, 1]
    assert store.graph("test").col.tolist() == [1] and store.graph("test").rowptr.tolist() == [0, 1, 1]


def _nan(values):
    return pa.array(values, pa.float64())


BAD = {  # name: (interactions columns, feature columns or None, config)
    "null-ids": (dict(user_id=[1, None, 2, 2], item_id=[1, 2, None, 3]), None, SplitConfig()),
    "null-item": (dict(user_id=[1, 1, 2, 2] * 9, item_id=[1, 2, 3, None] * 9), None, SplitConfig()),
    "bad-splits-late": (dict(user_id=[1, 2] * 20, item_id=list(range(40)),
                             split=["train", "test"] * 14 + ["tset", None, "x"] + ["test"] * 8 + ["Train"]),
                        None, SplitConfig(method="ratio")),
    "nan-ts-null-weight": (dict(user_id=[1, 2] * 20, item_id=list(range(40)),
                                timestamp=_nan([1.0] * 39 + [np.nan]),
                                weight=pa.array([None] + [1.0] * 39, pa.float32())), None, SplitConfig()),
    "null-weight": (dict(user_id=[1, 2] * 20, item_id=list(range(40)),
                         weight=pa.array([1.0] * 38 + [None, None], pa.float32())), None, SplitConfig()),
    "fixed-no-split": (dict(user_id=[1, 1], item_id=[1, 2]), None, SplitConfig(method="fixed")),
    "temporal-no-ts": (dict(user_id=[1, 1, 1], item_id=[1, 2, 3]), None, SplitConfig(method="temporal")),
    "empty-split": (dict(user_id=[1, 1], item_id=[1, 2], split=["train", "train"]), None, SplitConfig()),
    "empty-table": (dict(user_id=pa.array([], pa.int64()), item_id=pa.array([], pa.int64())), None,
                    SplitConfig()),
    "bad-ratios": (dict(user_id=[1, 1], item_id=[1, 2]), None, SplitConfig(method="ratio", ratios=(0.5, 0.1, 0.1))),
    "feature-nan-late": (None, dict(item_id=list(range(30)),
                                    feature=[[1.0, 2.0]] * 27 + [[np.nan, 1.0], [1.0, 1.0], [np.inf, 0.0]]),
                         SplitConfig()),
    "feature-uneven": (None, dict(item_id=list(range(30)), feature=[[1.0, 2.0]] * 29 + [[1.0]]), SplitConfig()),
    "feature-missing": (None, dict(item_id=list(range(30)), vector=[[1.0]] * 30), SplitConfig()),
    "feature-not-list": (None, dict(item_id=list(range(30)), feature=["x"] * 30), SplitConfig()),
    "feature-null-id-no-column": (None, dict(item_id=[1, None] * 15, vector=[1.0] * 30), SplitConfig()),
}


@pytest.mark.parametrize("name", BAD.keys())
def test_errors_match_reference(tmp_path, small_batches, name):
    inter, features, cfg = BAD[name]
    root = str(tmp_path / "ds")
    if inter is None:
        inter = dict(user_id=[1, 2, 3] * 20, item_id=list(range(30)) * 2)
    _write(root, "interactions", row_group_size=4, **inter)
    if features is not None:
        _write(root, "features/visual", row_group_size=4, **features)
    error, _, _ = _build_both(root, tmp_path, cfg)
    assert error is not None and ("parquet" in error or "ratios" in error)


@pytest.mark.parametrize("kind", ["int", "str"])
@pytest.mark.parametrize("merge_words", [1, 5, 1 << 22])
def test_id_collector_matches_whole_column_map(kind, merge_words):
    rng = np.random.default_rng(merge_words)
    values = rng.integers(-50, 200, 1000)
    column = pa.array(values if kind == "int" else [f"id{v}" for v in values])
    cuts = np.sort(rng.choice(np.arange(1, 1000), 30, replace=False))
    collector = IdCollector(merge_words=merge_words)
    provisional = np.concatenate([collector.add(column.slice(lo, hi - lo))
                                  for lo, hi in zip([0, *cuts], [*cuts, 1000])])
    ids, remap = collector.finish()
    expected = IdMap.from_columns(column)
    assert ids.ids.equals(expected.ids) and ids.ids.type == column.type
    np.testing.assert_array_equal(remap[provisional], expected.lookup(column))
    assert remap.dtype == np.int32


@pytest.mark.parametrize("key_bits", [53, 2])   # 2: most random keys tie and are re-sorted exactly
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_splits_match_reference(monkeypatch, seed, key_bits):
    monkeypatch.setattr(split, "_BLOCK", 7)
    monkeypatch.setattr(split, "RANDOM_KEY_BITS", key_bits)
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 25, 400).astype(np.int32 if seed else np.int64)
    ts = rng.integers(0, 6, 400).astype(np.float64)            # many ties: input order breaks them
    for ratios in ((0.8, 0.1, 0.1), (0.6, 0.3, 0.1), (0.9, 0.0, 0.1)):
        new, old = split.ratio_split(users, ratios, seed), old_ratio_split(users, ratios, seed)
        np.testing.assert_array_equal(new[0], old[0])
        assert new[1] == old[1] and new[0].dtype == np.int8
    new, old = split.temporal_split(users, ts), old_temporal_split(users, ts)
    np.testing.assert_array_equal(new[0], old[0])
    assert new[1] == old[1]
    code = rng.choice(np.array([0, 0, 0, 2], dtype=np.int8), 400)
    new, old = split.carve_valid(users, code, 0.25, seed), old_carve_valid(users, code, 0.25, seed)
    np.testing.assert_array_equal(new[0], old[0])
    assert new[1] == old[1]


WORLDS = {
    "tiny": PRESETS["tiny"],
    "rewatch-kg-features": WorldConfig(num_users=300, num_items=500, num_creators=40, num_communities=6,
                                       avg_interactions=15, max_interactions=60, rewatch=0.1,
                                       visual_dim=8, acoustic_dim=0, textual_dim=5, chunk_users=70),
}


@pytest.mark.parametrize("cfg", [CONFIGS["ratio"], CONFIGS["temporal"], CONFIGS["ratio-622"]],
                         ids=["ratio", "temporal", "ratio-622"])
@pytest.mark.parametrize("world_name", WORLDS.keys())
def test_synthetic_worlds_match_reference(tmp_path, make_world, small_batches, world_name, cfg):
    _build_both(make_world(WORLDS[world_name]), tmp_path, cfg)


def test_default_world_matches_reference_array_by_array(tmp_path, make_world):
    """The README demo world (6000 users, ~170k interactions, KG, three modalities), through the
    product path with the default batch sizes."""
    _, old_root, new_root = _build_both(make_world(PRESETS["default"]), tmp_path,
                                        SplitConfig(method="ratio"))
    store = GraphStore.open(new_root)
    assert store.num_users == 6000 and store.meta["kg_triples"] > 0
    assert set(store.modalities) == {"visual", "acoustic", "textual"}
    assert len(_files(new_root)) == 23   # meta, 5 id maps, 11 CSR arrays, 3 KG, 3 features


@pytest.mark.parametrize("key_bits", [53, 3, 1])
def test_packed_sort_key_orders_as_lexsort(monkeypatch, key_bits):
    """Users and random keys packed into one int64 sort as ``np.lexsort((rand, users))``, exact
    ties in ``rand`` included (broken by position)."""
    monkeypatch.setattr(split, "_BLOCK", 16)
    monkeypatch.setattr(split, "RANDOM_KEY_BITS", key_bits)
    rng = np.random.default_rng(key_bits)
    users = rng.integers(0, 30, 500).astype(np.int32)
    for rand in (rng.random(500), rng.integers(0, 8, 500) / 8.0, np.zeros(500)):  # exact ties
        order = split._order_by_user_then_random(users, lambda lo, hi: rand[lo:hi])
        np.testing.assert_array_equal(order, np.lexsort((rand, users)))
    want = np.random.default_rng(5).random(500)              # the split's draws, block by block
    assert np.array_equal(np.concatenate([split.uniforms(5, lo, min(lo + 16, 500))
                                          for lo in range(0, 500, 16)]), want)
