"""Raw ids (any int or string) to contiguous indices ``0..n-1``, and back."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


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
        if raw.type != self.ids.type:
            raw = raw.cast(pa.string()) if pa.types.is_string(self.ids.type) else raw.cast(self.ids.type)
        idx = pc.index_in(raw, value_set=self.ids)
        return pc.fill_null(idx, -1).to_numpy(zero_copy_only=False).astype(np.int64)

    def raw(self, index: np.ndarray) -> pa.Array:
        """Raw ids of the given indices."""
        return self.ids.take(pa.array(np.asarray(index, dtype=np.int64)))

    def save(self, path: str) -> None:
        pq.write_table(pa.table({"raw_id": self.ids}), path)

    @classmethod
    def load(cls, path: str) -> "IdMap":
        return cls(pq.read_table(path)["raw_id"].combine_chunks())
