"""Turn a ``--data`` string into an open :class:`GraphStore`, building and caching it once.

``data`` is one of:

- ``synthetic`` or ``synthetic:<preset>`` (``tiny``, ``default``, ``large``, ``huge``): the
  embedded micro-video world, generated on first use (no files needed);
- a graph-store folder (has ``meta.json``): opened as is;
- a dataset folder of Parquet tables (has ``interactions.parquet``);
- a folder of one of the real datasets in ``../shared/data`` (amazon-book-kgat, ml-100k, ml-1m,
  lastfm-kg): converted to Parquet first.

Built stores are cached under ``cache_dir`` keyed by the source and the split settings, and
remember a fingerprint of their input files (:func:`fingerprint`): when an input changed since,
the store is rebuilt (and logged), never silently reused stale. A converted real folder's key
holds its reader's revision (``readers.REVISIONS``), so a reader that writes more (MovieLens
features) converts again into a new folder, whose store is then a new one too.
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


_TAIL_BYTES = 1 << 16  # a Parquet file's footer (schema, row groups, statistics) lies in its tail


def _key(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:10]


def fingerprint(folder: str, suffix: str | None = ".parquet") -> dict[str, str]:
    """``{relative path: digest}`` of every file under ``folder`` ending in ``suffix`` (``None``:
    every file); a digest hashes the file's size, modification time and last 64 KiB (a Parquet
    file's footer), so an edited, replaced, added or removed file changes the fingerprint
    without reading whole tables."""
    out = {}
    for dirpath, _, files in os.walk(folder):
        for name in sorted(files):
            if suffix is not None and not name.endswith(suffix):
                continue
            path = os.path.join(dirpath, name)
            st = os.stat(path)
            h = hashlib.sha1(f"{st.st_size}:{st.st_mtime_ns}".encode())
            with open(path, "rb") as f:
                f.seek(max(0, st.st_size - _TAIL_BYTES))
                h.update(f.read())
            out[os.path.relpath(path, folder)] = h.hexdigest()[:16]
    return dict(sorted(out.items()))


def _is_store(folder: str) -> bool:
    """Whether ``folder`` is a built graph store (its ``meta.json`` is one), not merely a folder
    holding some ``meta.json``."""
    try:
        with open(os.path.join(folder, "meta.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and {"num_nodes", "splits", "version"} <= set(meta)


def _changed(old: dict, new: dict) -> str:
    """The files that differ between two fingerprints, for the log."""
    names = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


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
    from reelgraph.data.readers import convert, revision
    # the reader's revision joins the key once past 1 (a reader that now writes more, e.g.
    # MovieLens features): a folder an older reader converted is never reused, nor overwritten
    # under a process that may be reading it; revision-1 readers keep their first key
    rev = revision(data)
    out = os.path.join(cache_dir, "parquet", f"{os.path.basename(os.path.normpath(data))}-"
                       f"{_key(os.path.abspath(data), *([rev] if rev > 1 else []))}")
    raw, kept = fingerprint(data, None), os.path.join(out, "source.json")
    if os.path.exists(os.path.join(out, "interactions.parquet")):
        try:
            with open(kept) as f:
                if json.load(f) == raw:
                    return out
        except (OSError, ValueError):
            pass
        log.warning("the files of %s changed since they were converted (or no fingerprint was "
                    "kept): converting again into %s", data, out)
    log.info("converting %s to Parquet in %s", data, out)
    convert(data, out, overwrite=True)
    with open(kept + ".tmp", "w") as f:
        json.dump(raw, f)
    os.replace(kept + ".tmp", kept)
    return out


def open_store(data: str, split: SplitConfig | None = None, cache_dir: str = DEFAULT_CACHE,
               rebuild: bool = False) -> GraphStore:
    """The graph store of ``data`` under ``split``, built on first use and cached."""
    if _is_store(data):
        return GraphStore.open(data)
    split = split or SplitConfig()
    folder = dataset_folder(data, cache_dir)
    root = os.path.join(cache_dir, "stores", f"{os.path.basename(os.path.normpath(folder))}-"
                        f"{_key(os.path.abspath(folder), asdict(split))}")
    source = fingerprint(folder)
    if not rebuild and _is_store(root):
        store = GraphStore.open(root)
        old = store.meta.get("source")
        if old == source:
            noted = {**store.meta.get("corrections", {}), **store.meta.get("warnings", {})}
            if noted:  # said when it was built; say it again for the run that reuses it
                log.warning("cached store %s: its build corrected or flagged %s", root, noted)
            return store
        log.warning("the inputs of %s changed since its store was built (%s): rebuilding %s",
                    folder, _changed(old, source) if isinstance(old, dict)  # older stores: a path
                    else "no fingerprint kept", root)
    log.info("building the graph store of %s in %s", folder, root)
    return GraphStore.build(folder, root, split, overwrite=True, source=source)
