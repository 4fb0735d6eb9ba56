"""Turn a ``--data`` string into an open :class:`GraphStore`, building and caching it once.

``data`` is one of:

- ``synthetic`` or ``synthetic:<preset>`` (``tiny``, ``default``, ``large``, ``huge``): the
  embedded micro-video world, generated on first use (no files needed);
- a graph-store folder (has ``meta.json``): opened as is;
- a dataset folder of Parquet tables (has ``interactions.parquet``);
- a folder of one of the real datasets in ``../shared/data`` (amazon-book-kgat, ml-100k, ml-1m,
  lastfm-kg): converted to Parquet first.

Built stores are cached under ``cache_dir`` keyed by the source and the split settings.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict

from reelgraph.data.schema import DataError
from reelgraph.data.split import SplitConfig
from reelgraph.data.store import GraphStore

log = logging.getLogger("reelgraph.data")
DEFAULT_CACHE = os.environ.get("REELGRAPH_CACHE", os.path.join("artifacts", "cache"))


def _key(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:10]


def dataset_folder(data: str, cache_dir: str = DEFAULT_CACHE, seed: int = 0) -> str:
    """A folder of Parquet tables for ``data``, generating or converting it if needed."""
    if data == "synthetic" or data.startswith("synthetic:"):
        from reelgraph.data.synthetic import PRESETS, generate_world
        preset = data.partition(":")[2] or "default"
        if preset not in PRESETS:
            raise DataError(f"unknown synthetic preset '{preset}' (choose from {sorted(PRESETS)})")
        config = PRESETS[preset]
        out = os.path.join(cache_dir, "worlds", f"{preset}-{_key(asdict(config))}")
        if not os.path.exists(os.path.join(out, "interactions.parquet")):
            log.info("generating the synthetic '%s' world in %s", preset, out)
            generate_world(out, config, progress=True)
        return out
    if not os.path.isdir(data):
        raise DataError(f"--data {data!r}: no such folder (or use 'synthetic[:preset]')")
    if os.path.exists(os.path.join(data, "interactions.parquet")):
        return data
    from reelgraph.data.readers import convert
    out = os.path.join(cache_dir, "parquet", f"{os.path.basename(os.path.normpath(data))}-"
                       f"{_key(os.path.abspath(data))}")
    if not os.path.exists(os.path.join(out, "interactions.parquet")):
        log.info("converting %s to Parquet in %s", data, out)
        convert(data, out, overwrite=True)
    return out


def open_store(data: str, split: SplitConfig | None = None, cache_dir: str = DEFAULT_CACHE,
               rebuild: bool = False) -> GraphStore:
    """The graph store of ``data`` under ``split``, built on first use and cached."""
    if os.path.exists(os.path.join(data, "meta.json")):
        return GraphStore.open(data)
    split = split or SplitConfig()
    folder = dataset_folder(data, cache_dir)
    root = os.path.join(cache_dir, "stores", f"{os.path.basename(os.path.normpath(folder))}-"
                        f"{_key(os.path.abspath(folder), asdict(split))}")
    if rebuild or not os.path.exists(os.path.join(root, "meta.json")):
        log.info("building the graph store of %s in %s", folder, root)
        return GraphStore.build(folder, root, split, overwrite=True)
    return GraphStore.open(root)
