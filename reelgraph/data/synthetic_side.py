"""The synthetic world's side information: its knowledge graph (``kg.parquet``) and its item
features (``features/<modality>.parquet``).

:mod:`~reelgraph.data.synthetic` is the world generator; it builds the catalogue and the users
and calls ``_write_kg`` and ``_write_features`` here. Each writes the items in blocks of
``_ITEM_BLOCK``, each block from its own seeded stream, so the files are byte-identical for the
same config and seed.
"""
from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from reelgraph.data.schema import WRITE_OPTIONS
from reelgraph.data.synthetic_base import (MODALITIES, _FEATURES, _ITEM_BLOCK, _KG, WorldConfig,
                                           _Catalogue, _ids, _rng)

_TRIPLES = pa.schema([("head", pa.string()), ("relation", pa.string()), ("tail", pa.string())])


def _triples(head: list[pa.Array], relation: list[tuple[str, int]], tail: list[pa.Array]):
    rel = [pa.repeat(pa.scalar(name), size) for name, size in relation]
    return pa.Table.from_arrays([pa.concat_arrays(head), pa.concat_arrays(rel),
                                 pa.concat_arrays(tail)], schema=_TRIPLES)


def _item_triples(rng, cfg: WorldConfig, cat: _Catalogue, items: pa.Array, lo: int, hi: int):
    """``video has_topic topic/k`` and ``video has_tag tag/j`` for videos ``lo:hi``."""
    community = cat.item_community[lo:hi]                                   # [b]
    pool = cfg.num_communities * cfg.tags_per_community
    owner = np.repeat(np.arange(hi - lo), rng.poisson(cfg.tags_per_item, hi - lo))  # [T]
    tag_community = np.where(rng.random(owner.size) < cfg.tag_noise,
                             rng.integers(cfg.num_communities, size=owner.size), community[owner])
    within = (cfg.tags_per_community * rng.random(owner.size) ** 2).astype(np.int64)  # skewed
    key = np.unique(owner * pool + tag_community * cfg.tags_per_community + within)
    owner, tag = key // pool, key % pool
    return _triples([items.slice(lo, hi - lo), items.take(pa.array(lo + owner))],
                    [("has_topic", hi - lo), ("has_tag", owner.size)],
                    [_ids("topic/", community), _ids("tag/", tag)])


def _entity_triples(rng, cfg: WorldConfig) -> pa.Table:
    """``tag/j tag_of topic/k`` for every tag and one ``topic related_to topic`` per topic."""
    C, per = cfg.num_communities, cfg.tags_per_community
    tags = np.arange(C * per)
    topics = np.arange(C) if C > 1 else np.arange(0)
    related = (topics + 1 + rng.integers(max(C - 1, 1), size=topics.size)) % max(C, 1)
    return _triples([_ids("tag/", tags), _ids("topic/", topics)],
                    [("tag_of", tags.size), ("related_to", topics.size)],
                    [_ids("topic/", tags // per), _ids("topic/", related)])


def _write_kg(out_dir: str, cfg: WorldConfig, cat: _Catalogue, items: pa.Array) -> int:
    rows = 0
    with pq.ParquetWriter(os.path.join(out_dir, "kg.parquet"), _TRIPLES, **WRITE_OPTIONS) as writer:
        for b, lo in enumerate(range(0, cfg.num_items, _ITEM_BLOCK)):
            hi = min(lo + _ITEM_BLOCK, cfg.num_items)
            table = _item_triples(_rng(cfg.seed, _KG, b), cfg, cat, items, lo, hi)
            writer.write_table(table)
            rows += table.num_rows
        table = _entity_triples(_rng(cfg.seed, _KG), cfg)
        writer.write_table(table)
    return rows + table.num_rows


def _write_features(out_dir: str, cfg: WorldConfig, cat: _Catalogue, items: pa.Array):
    """``features/<modality>.parquet``: sqrt(s)·centroid[topic] + sqrt(1 - s)·noise per item."""
    dims = {}
    for m, name in enumerate(MODALITIES):
        dim, signal = getattr(cfg, f"{name}_dim"), getattr(cfg, f"{name}_signal")
        if dim == 0:
            continue
        centroid = _rng(cfg.seed, _FEATURES, m).standard_normal((cfg.num_communities, dim))
        centroid = (np.sqrt(signal) * centroid).astype(np.float32)              # [C, d]
        schema = pa.schema([("item_id", pa.string()), ("feature", pa.list_(pa.float32(), dim))])
        path = os.path.join(out_dir, "features", f"{name}.parquet")
        with pq.ParquetWriter(path, schema, **WRITE_OPTIONS) as writer:
            for b, lo in enumerate(range(0, cfg.num_items, _ITEM_BLOCK)):
                hi = min(lo + _ITEM_BLOCK, cfg.num_items)
                noise = _rng(cfg.seed, _FEATURES, m, b).standard_normal((hi - lo, dim), np.float32)
                x = centroid[cat.item_community[lo:hi]] + np.float32(np.sqrt(1.0 - signal)) * noise
                feature = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), dim)  # [b, d]
                table = pa.Table.from_arrays([items.slice(lo, hi - lo), feature], schema=schema)
                writer.write_table(table)
        dims[name] = dim
    return dims
