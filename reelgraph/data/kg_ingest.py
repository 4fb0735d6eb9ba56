"""Build steps of a store's knowledge graphs: ``kg.parquet`` and ``user_kg.parquet`` → triples.

Both tables hold ``(head, relation, tail)`` rows (:mod:`reelgraph.data.schema`); each is written
as three int64 arrays ``[T]`` of distinct index triples, sorted by (head, relation, tail):

==========================================  ================================================
written                                     holds
==========================================  ================================================
``kg/{head,relation,tail}.npy``             item KG (:func:`ingest_kg`): entities ``0..I-1``
                                            are the items (a ``head``/``tail`` equal to an
                                            ``item_id`` as text is that item), then the other
                                            entities
``ids/entity.parquet``                      raw id of each entity (items first, as strings)
``ids/relation.parquet``                    raw id of each KG relation
``user_kg/{head,relation,tail}.npy``        user KG (:func:`ingest_user_kg`): ``head`` a user
                                            ``0..U-1``, ``tail`` an attribute value ``U + j``
``ids/user_entity.parquet``                 raw id of value ``j`` (entity ``U + j``)
``ids/user_relation.parquet``               raw id of each user attribute (relation)
==========================================  ================================================

Repeated triples are merged and counted (``kg_duplicates``, ``user_kg_duplicates``); user-KG
rows of users no interaction mentions are dropped and counted (``user_kg_unknown_ids``), and a
user KG none of whose users is known is a :class:`~reelgraph.data.schema.DataError`.
"""
from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reelgraph.data import schema
from reelgraph.data.idmap import IdMap
from reelgraph.data.ingest_common import correct, sorted_unique


def unique_triples(head: np.ndarray, rel: np.ndarray, tail: np.ndarray, num_entities: int,
                   num_relations: int) -> np.ndarray:
    """``[3, T']`` distinct ``(head, relation, tail)`` index triples, sorted, as
    ``np.unique(np.stack([head, rel, tail]), axis=1)`` (by one combined int64 key where it fits)."""
    if num_entities * num_relations * num_entities >= 2**63 or min(head.min(), rel.min(), tail.min()) < 0:
        return np.unique(np.stack([head, rel, tail]), axis=1)
    key = sorted_unique((head * num_relations + rel) * num_entities + tail)   # [T']
    return np.stack([key // (num_relations * num_entities),
                     key // num_entities % num_relations, key % num_entities])


def ingest_kg(root, out, items: IdMap, corrections) -> tuple[int, int, int]:
    """``kg/`` and its id maps (module doc); returns ``(triples, entities, relations)``, all 0
    without a ``kg`` table."""
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
    triples = unique_triples(entities.lookup(head), relations.lookup(t["relation"]),
                             entities.lookup(tail), len(entities), len(relations))
    correct(corrections, "kg_duplicates", t.num_rows - triples.shape[1], f"{path}: repeated triples")
    os.makedirs(os.path.join(out, "kg"))
    for name, row in zip(("head", "relation", "tail"), triples):
        np.save(os.path.join(out, "kg", f"{name}.npy"), row)
    entities.save(os.path.join(out, "ids", "entity.parquet"))
    relations.save(os.path.join(out, "ids", "relation.parquet"))
    return triples.shape[1], len(entities), len(relations)


def ingest_user_kg(root, out, users: IdMap, corrections) -> tuple[int, int, int]:
    """``user_kg/``: ``(user, attribute, value)`` index triples, users ``0..U-1`` then the values
    (``ids/user_entity.parquet`` holds the values: entity ``U + j`` is value ``j``); returns
    ``(triples, entities, relations)``, all 0 without a ``user_kg`` table."""
    path = schema.USER_KG.filename(root)
    if not os.path.exists(path):
        return 0, 0, 0
    t = schema.read_table(path, schema.USER_KG)
    head = users.lookup(t["user_id"])
    ok = head >= 0
    if not ok.any():
        raise schema.DataError(f"{path}: none of its {len(ok)} rows has a user_id the "
                               "interactions mention: the whole table would be dropped")
    correct(corrections, "user_kg_unknown_ids", (~ok).sum(),
            f"{path}: rows whose user no interaction mentions")
    t = t.filter(pa.array(ok))
    values, relations = IdMap.from_columns(t["tail"]), IdMap.from_columns(t["relation"])
    num_entities = len(users) + len(values)
    triples = unique_triples(head[ok], relations.lookup(t["relation"]),
                             values.lookup(t["tail"]) + len(users), num_entities, len(relations))
    correct(corrections, "user_kg_duplicates", t.num_rows - triples.shape[1],
            f"{path}: repeated triples")
    os.makedirs(os.path.join(out, "user_kg"))
    for name, row in zip(("head", "relation", "tail"), triples):
        np.save(os.path.join(out, "user_kg", f"{name}.npy"), row)
    values.save(os.path.join(out, "ids", "user_entity.parquet"))
    relations.save(os.path.join(out, "ids", "user_relation.parquet"))
    return triples.shape[1], num_entities, len(relations)
