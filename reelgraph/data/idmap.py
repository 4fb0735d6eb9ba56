"""Raw ids (any int or string) to contiguous indices ``0..n-1``, and back."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from reelgraph.data.schema import WRITE_OPTIONS
MERGE_WORDS = 1 << 22  # IdCollector: pending distinct ids that trigger a merge


class IdMap:
    """Sorted unique raw ids of one node type; index ``i`` is ``ids[i]``.

    Args:
        ids (pa.Array): unique raw ids, in index order.
    """

    def __init__(self, ids: pa.Array):
        self.ids = ids

    @classmethod
    def from_columns(cls, *columns: pa.ChunkedArray | pa.Array) -> "IdMap":
        """The union of the raw ids in ``columns``, sorted (so indices are reproducible)."""
        chunks = [c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c for c in columns]
        types = {str(c.type) for c in chunks}
        if len(types) > 1:  # e.g. int item ids in one table, strings in another
            chunks = [c.cast(pa.string()) for c in chunks]
        uniq = pc.unique(pa.concat_arrays([c.cast(chunks[0].type) for c in chunks]))
        return cls(uniq.take(pc.sort_indices(uniq)))

    def __len__(self) -> int:
        return len(self.ids)

    def lookup(self, raw: pa.ChunkedArray | pa.Array) -> np.ndarray:
        """Indices of ``raw`` as int64, ``-1`` where a raw id is unknown."""
        if isinstance(raw, pa.ChunkedArray):
            raw = raw.combine_chunks()
        ids = self.ids
        if raw.type != ids.type:
            try:
                raw = raw.cast(pa.string()) if pa.types.is_string(ids.type) else raw.cast(ids.type)
            except pa.ArrowInvalid:  # strings that are no numbers, against int ids: compare text
                raw, ids = raw.cast(pa.string()), ids.cast(pa.string())
        idx = pc.index_in(raw, value_set=ids)
        return pc.fill_null(idx, -1).to_numpy(zero_copy_only=False).astype(np.int64)

    def raw(self, index: np.ndarray) -> pa.Array:
        """Raw ids of the given indices."""
        return self.ids.take(pa.array(np.asarray(index, dtype=np.int64)))

    def save(self, path: str) -> None:
        pq.write_table(pa.table({"raw_id": self.ids}), path, **WRITE_OPTIONS)

    @classmethod
    def load(cls, path: str) -> "IdMap":
        return cls(pq.read_table(path)["raw_id"].combine_chunks())


class IdCollector:
    """Builds the :class:`IdMap` of one id column read chunk by chunk, each raw id read once.

    :meth:`add` numbers a chunk's ids provisionally (by the position of each distinct id among
    all the chunks' distinct ids). Once the pending distinct ids reach ``merge_words`` and the
    count seen so far, they are matched against the seen ids in one hashing pass, so the cost
    stays linear in the rows. :meth:`finish` sorts the ids exactly as :meth:`IdMap.from_columns`
    would over the whole column, and returns ``remap``: provisional indices → map indices.

    Args:
        dtype: integer dtype of the indices (int32 unless the column has 2**31 rows or more).
        merge_words: pending distinct ids that trigger a merge. (default: :data:`MERGE_WORDS`)
    """

    def __init__(self, dtype: type = np.int32, merge_words: int | None = None):
        self.dtype, self.merge_words = dtype, merge_words or MERGE_WORDS
        self.seen: pa.Array | None = None   # [S] distinct ids merged so far, first-seen order
        self.pending: list[pa.Array] = []   # distinct ids of each chunk added since
        self.num_pending = 0
        self.num_words = 0                  # distinct ids of all chunks added (W)
        self.word_to_seen: list[np.ndarray] = []  # concatenated: [W] each one's index in seen

    def add(self, chunk: pa.Array) -> np.ndarray:
        """``[len(chunk)]`` provisional indices of a chunk without nulls."""
        enc = pc.dictionary_encode(chunk)        # indices into the chunk's own distinct ids
        local = enc.indices.to_numpy().astype(self.dtype) + self.dtype(self.num_words)
        self.num_words += len(enc.dictionary)
        self.pending.append(enc.dictionary)
        self.num_pending += len(enc.dictionary)
        if self.num_pending >= max(self.merge_words, 0 if self.seen is None else len(self.seen)):
            self._merge()
        return local

    def _merge(self) -> None:
        words = pa.concat_arrays(self.pending)   # [P]
        self.pending, self.num_pending = [], 0
        seen = words.slice(0, 0) if self.seen is None else self.seen
        found = pc.index_in(words, value_set=seen)                          # [P], null if new
        new = found.is_null().to_numpy(zero_copy_only=False)
        fresh_words = words.filter(pa.array(new))
        fresh = pc.unique(fresh_words)
        to_seen = found.fill_null(0).to_numpy().astype(self.dtype)           # [P]
        to_seen[new] = len(seen) + pc.index_in(fresh_words, value_set=fresh).to_numpy()
        self.seen = pa.concat_arrays([seen, fresh])
        self.word_to_seen.append(to_seen)

    def finish(self) -> tuple[IdMap, np.ndarray]:
        """The sorted map and ``remap [W]``: the map index of each provisional index."""
        if self.pending:
            self._merge()
        if self.seen is None:
            raise ValueError("IdCollector.finish: no ids were added")
        order = pc.sort_indices(self.seen).to_numpy().astype(np.int64)   # [S]
        rank = np.empty(order.size, dtype=self.dtype)
        rank[order] = np.arange(order.size, dtype=self.dtype)
        return IdMap(self.seen.take(pa.array(order))), rank[np.concatenate(self.word_to_seen)]
