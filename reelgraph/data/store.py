"""``GraphStore``: a dataset folder of Parquet tables, ingested once into memory-mapped CSR.

On disk (``root/``)::

    meta.json                      counts, splits, modalities and every correction made on ingest
    ids/{user,item,creator,entity,relation}.parquet   raw ids in index order
    ids/{user_entity,user_relation}.parquet           user-KG values (entity U + j is value j)
                                                      and attributes
    csr/{train,valid,test}/{rowptr,col}.npy           user→item CSR per split
    csr/train/weight.npy                              edge weights aligned with the train CSR
    csr/{item_creator,user_creator}/{rowptr,col}.npy  item→creator, user→creator (follows)
    kg/{head,relation,tail}.npy                       triples; entities 0..num_items-1 are the items
    user_kg/{head,relation,tail}.npy                  user attributes as triples; entities
                                                      0..num_users-1 are the users
    features/<modality>.npy                           float32 [num_items, dim]
    derived/<name>-<hash>/*.npy                       arrays computed from the store (below)

Opening memory-maps every array (``np.load(mmap_mode="c")``), so a 100M-edge store opens in
milliseconds and only the pages a sampler touches are read. :meth:`GraphStore.derived` keeps
arrays computed from the store (a symmetric CSR, a model's kNN or walk tables) beside it, built
once and memory-mapped by every process that asks, loader workers included: no graph is ever
pickled to a worker. :class:`InMemoryStore` is the same interface over tensors in memory, for
tests and small graphs.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from reelgraph.data.idmap import IdMap
from reelgraph.data.schema import WRITE_OPTIONS
from reelgraph.data.split import SplitConfig
from reelgraph.graph import BipartiteGraph, csr_rows

FORMAT_VERSION = 1


class GraphStore:
    """Memory-mapped graph of one dataset. Build with :meth:`build`, reopen with :meth:`open`."""

    def __init__(self, root: str):
        meta_path = os.path.join(root, "meta.json")
        if not os.path.exists(meta_path):
            raise FileNotFoundError(f"{root}: no graph store here (meta.json missing); build one "
                                    "with GraphStore.build(dataset_dir, root)")
        with open(meta_path) as f:
            self.meta = json.load(f)
        self.root = root
        self.num_nodes: dict[str, int] = self.meta["num_nodes"]

    @classmethod
    def open(cls, root: str) -> "GraphStore":
        return cls(root)

    @property
    def num_users(self) -> int:
        return self.num_nodes["user"]

    @property
    def num_items(self) -> int:
        return self.num_nodes["item"]

    @property
    def modalities(self) -> dict[str, int]:
        """``{modality: feature dim}``."""
        return self.meta["features"]

    def _array(self, *parts: str) -> Tensor:
        return torch.from_numpy(np.load(os.path.join(self.root, *parts), mmap_mode="c"))

    def has(self, relation: str) -> bool:
        return os.path.exists(os.path.join(self.root, "csr", relation, "rowptr.npy"))

    def csr(self, relation: str) -> tuple[Tensor, Tensor]:
        """``(rowptr, col)`` of ``train``/``valid``/``test``/``item_creator``/``user_creator``."""
        if not self.has(relation):
            raise KeyError(f"{self.root}: no relation '{relation}' in this store")
        return self._array("csr", relation, "rowptr.npy"), self._array("csr", relation, "col.npy")

    def graph(self, split: str = "train") -> BipartiteGraph:
        """The user→item interactions of one split."""
        rowptr, col = self.csr(split)
        return BipartiteGraph(self.num_users, self.num_items, rowptr, col)

    def edge_weight(self) -> Tensor | None:
        path = os.path.join(self.root, "csr", "train", "weight.npy")
        return self._array("csr", "train", "weight.npy") if os.path.exists(path) else None

    def feature(self, modality: str) -> Tensor:
        """``[num_items, dim]`` float32 features of one modality."""
        if modality not in self.modalities:
            raise KeyError(f"{self.root}: no '{modality}' features (has {list(self.modalities)})")
        return self._array("features", f"{modality}.npy")

    def kg(self) -> tuple[Tensor, Tensor, Tensor] | None:
        """``(head, relation, tail)`` index tensors, or ``None`` without a knowledge graph."""
        if not self.meta.get("kg_triples"):
            return None
        return tuple(self._array("kg", f"{n}.npy") for n in ("head", "relation", "tail"))

    def user_kg(self) -> tuple[Tensor, Tensor, Tensor] | None:
        """``(head, relation, tail)`` of the user-side KG (a user's attributes: ``(user,
        attribute, value)``; entities ``0..num_users-1`` are the users, ``num_nodes["user_entity"]``
        entities and ``num_nodes["user_relation"]`` relations in all), or ``None`` without one."""
        if not self.meta.get("user_kg_triples"):
            return None
        return tuple(self._array("user_kg", f"{n}.npy") for n in ("head", "relation", "tail"))

    def derived(self, name: str, params: dict, build: Callable[[], dict[str, Tensor]]
                ) -> dict[str, Tensor]:
        """Arrays computed from this store, memory-mapped: ``build()`` runs once per ``(name,
        params)`` (under a file lock, so concurrent ranks build once) and its tensors are kept
        as ``derived/<name>-<hash(params)>/<key>.npy``; later calls, in any process, map them."""
        key = hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()
        folder = os.path.join(self.root, "derived", f"{name}-{key[:12]}")
        if not os.path.exists(os.path.join(folder, "params.json")):
            os.makedirs(os.path.dirname(folder), exist_ok=True)
            with open(folder + ".lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if not os.path.exists(os.path.join(folder, "params.json")):
                    _save_arrays(folder, build(), params)
        names = sorted(f[:-4] for f in os.listdir(folder) if f.endswith(".npy"))
        return {n: self._array("derived", os.path.basename(folder), f"{n}.npy") for n in names}

    def ids(self, node_type: str) -> IdMap:
        return IdMap.load(os.path.join(self.root, "ids", f"{node_type}.parquet"))

    def to_hetero_data(self, split: str = "train"):
        """A PyG ``HeteroData`` view (edges of ``split``, creators, follows, features) for small graphs."""
        from torch_geometric.data import HeteroData
        data = HeteroData()
        for t, n in self.num_nodes.items():
            if not t.endswith("relation"):  # relation, user_relation: counts, not node types
                data[t].num_nodes = n
        g = self.graph(split)
        data["user", "interacts", "item"].edge_index = torch.stack([g.users(), g.col])
        data["item", "rev_interacts", "user"].edge_index = torch.stack([g.col, g.users()])
        for rel, (src, dst) in {"item_creator": ("item", "creator"),
                                "user_creator": ("user", "creator")}.items():
            if self.has(rel):
                rowptr, col = self.csr(rel)
                data[src, rel, dst].edge_index = torch.stack([csr_rows(rowptr), col])
        for m in self.modalities:
            data["item"][m] = self.feature(m)
        return data

    def __repr__(self) -> str:
        s = self.meta["splits"]
        return (f"GraphStore({self.root!r}, users={self.num_users}, items={self.num_items}, "
                f"train={s['train']}, valid={s['valid']}, test={s['test']}, "
                f"features={self.modalities})")

    @classmethod
    def build(cls, dataset: str, root: str, split: SplitConfig | None = None,
              overwrite: bool = False, source: dict | None = None) -> "GraphStore":
        """Ingests the Parquet tables of folder ``dataset`` (see :mod:`reelgraph.data.schema`);
        ``source`` (the inputs' fingerprint, :func:`reelgraph.data.sources.fingerprint`) is kept
        in ``meta["source"]``. A failed ingest leaves nothing behind."""
        from reelgraph.data.ingest import ingest  # the build steps live in their own module
        if os.path.exists(os.path.join(root, "meta.json")):
            if not overwrite:
                raise FileExistsError(f"{root}: a graph store exists; pass overwrite=True to rebuild")
            shutil.rmtree(root)
        tmp = root.rstrip("/") + ".partial"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            meta = ingest(dataset, tmp, split or SplitConfig())
            meta["version"] = FORMAT_VERSION
            if source is not None:
                meta["source"] = source
            with open(os.path.join(tmp, "meta.json"), "w") as f:
                json.dump(meta, f, indent=1)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # no half-built `.partial` store is left
            raise
        os.replace(tmp, root)  # a crash mid-build never leaves a half store behind
        return cls(root)


def _save_arrays(folder: str, arrays: dict[str, Tensor], params: dict) -> None:
    """Writes ``arrays`` as ``.npy`` files into ``folder`` atomically (a ``.partial`` sibling,
    then one rename)."""
    tmp = f"{folder}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for name, t in arrays.items():
        np.save(os.path.join(tmp, f"{name}.npy"), t.detach().cpu().contiguous().numpy())
    with open(os.path.join(tmp, "params.json"), "w") as f:
        json.dump(params, f, indent=1, sort_keys=True, default=str)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


class InMemoryStore(GraphStore):
    """A :class:`GraphStore` over tensors in memory: for tests, notebooks and small graphs.

    Loader workers receive it pickled (it holds its tensors), not memory-mapped; ``derived``
    arrays are computed once per process and kept in memory.

    Args:
        train, valid, test: user→item splits over the same node sets (empty if not given).
        relations: ``{"item_creator" | "user_creator": (rowptr, col)}``.
        num_creators: creators (vloggers) the relations index.
        features: ``{modality: [num_items, dim]}``.
        kg: item KG ``(head, relation, tail)`` (entities ``0..num_items-1`` are the items).
        user_kg: user KG ``(head, relation, tail)`` (entities ``0..num_users-1`` are the users).
    """

    def __init__(self, train: BipartiteGraph, valid: BipartiteGraph | None = None,
                 test: BipartiteGraph | None = None,
                 relations: dict[str, tuple[Tensor, Tensor]] | None = None,
                 num_creators: int = 0, features: dict[str, Tensor] | None = None,
                 kg: tuple[Tensor, Tensor, Tensor] | None = None,
                 user_kg: tuple[Tensor, Tensor, Tensor] | None = None):
        empty = BipartiteGraph(train.num_users, train.num_items,
                               torch.zeros(train.num_users + 1, dtype=torch.long), train.col[:0])
        self.splits = {"train": train, "valid": valid or empty, "test": test or empty}
        self.relations = {k: (v[0].long(), v[1].long()) for k, v in (relations or {}).items()}
        self.features = {m: x.float() for m, x in (features or {}).items()}
        self.num_nodes = {"user": train.num_users, "item": train.num_items}
        if self.relations or num_creators:
            self.num_nodes["creator"] = num_creators
        self._kgs = {}
        for prefix, triples, home in (("", kg, train.num_items),
                                      ("user_", user_kg, train.num_users)):
            if triples is not None:
                self._kgs[prefix] = tuple(t.long() for t in triples)
                ends = torch.cat([self._kgs[prefix][0], self._kgs[prefix][2]])
                self.num_nodes[f"{prefix}entity"] = max(home, int(ends.max()) + 1)
                self.num_nodes[f"{prefix}relation"] = int(self._kgs[prefix][1].max()) + 1
        self.root = None
        self.meta = {"splits": {k: g.num_edges for k, g in self.splits.items()},
                     "features": {m: x.size(1) for m, x in self.features.items()}}
        self._derived: dict = {}

    def has(self, relation: str) -> bool:
        return relation in self.splits or relation in self.relations

    def csr(self, relation: str) -> tuple[Tensor, Tensor]:
        if relation in self.splits:
            return self.splits[relation].rowptr, self.splits[relation].col
        if relation not in self.relations:
            raise KeyError(f"InMemoryStore: no relation '{relation}'")
        return self.relations[relation]

    def feature(self, modality: str) -> Tensor:
        return self.features[modality]

    def edge_weight(self) -> Tensor | None:
        return None

    def kg(self):
        return self._kgs.get("")

    def user_kg(self):
        return self._kgs.get("user_")

    def derived(self, name: str, params: dict, build: Callable[[], dict[str, Tensor]]
                ) -> dict[str, Tensor]:
        key = (name, json.dumps(params, sort_keys=True, default=str))
        if key not in self._derived:
            self._derived[key] = build()
        return self._derived[key]

    def __repr__(self) -> str:
        return (f"InMemoryStore(users={self.num_users}, items={self.num_items}, "
                f"splits={self.meta['splits']})")


def write_embeddings(store: GraphStore, user_emb: Tensor, item_emb: Tensor, out_dir: str) -> dict[str, str]:
    """Writes ``users.parquet`` (``user_id``, ``embedding``) and ``items.parquet`` with raw ids."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    for kind, emb in (("user", user_emb), ("item", item_emb)):
        values = emb.detach().float().cpu().numpy()
        column = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])
        paths[kind] = os.path.join(out_dir, f"{kind}s.parquet")
        pq.write_table(pa.table({f"{kind}_id": store.ids(kind).ids, "embedding": column}), paths[kind],
                       **WRITE_OPTIONS)
    return paths
