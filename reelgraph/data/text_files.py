"""Parsing of the real datasets' text files into Arrow arrays, for :mod:`reelgraph.data.readers`.

Reads lines (gunzipped when named ``.gz``), tab-separated fields, RecBole atomic files (a
``name:type`` header line, then one tab-separated row per line) and KGAT user lists (lines
``user item item ...``). Nothing is written. Every malformed line or value raises
:class:`~reelgraph.data.schema.DataError` naming its file and line.
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from reelgraph.data.schema import DataError


def read_lines(path: str) -> pa.Array:
    """Every line of a text file (gunzipped if named ``.gz``), CR stripped; row i = line i+1."""
    if not os.path.exists(path):
        raise DataError(f"{path}: file not found")
    try:
        table = pacsv.read_csv(
            pa.input_stream(path),  # compression detected from the extension
            read_options=pacsv.ReadOptions(column_names=["line"], block_size=1 << 24),
            parse_options=pacsv.ParseOptions(delimiter="\x1f", quote_char=False,
                                             escape_char=False, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(column_types={"line": pa.string()},
                                                 strings_can_be_null=False))
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"{path}: not readable as lines of text ({e})") from e
    return table["line"].combine_chunks()


def cast_numbers(values: pa.Array, dtype: pa.DataType, path: str, what: str,
                 line_of: Callable[[int], int]) -> pa.Array:
    """``values`` cast to ``dtype``; a bad value raises DataError naming its file and line.

    Integers must be plain non-negative decimals (no sign, blanks or hex); floats must be finite.
    """
    if pa.types.is_integer(dtype):
        ok = pc.ascii_is_decimal(values)
    else:
        try:
            ok = pc.is_finite(pc.cast(values, pa.float64()))
        except pa.ArrowInvalid:  # some value is not a number at all: find it
            ok = pc.match_substring_regex(values, r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
    bad = np.flatnonzero(~ok.to_numpy(zero_copy_only=False))
    if bad.size:
        i = int(bad[0])
        kind = "a non-negative integer" if pa.types.is_integer(dtype) else "a finite number"
        raise DataError(f"{path}, line {line_of(i)}: {what} must be {kind}, "
                        f"got {values[i].as_py()!r}")
    try:
        return pc.cast(values, dtype)
    except pa.ArrowInvalid as e:
        raise DataError(f"{path}: {what} does not fit {dtype} ({e})") from e


def tab_fields(path: str, ncols: int, *, header: bool) -> tuple[list[str] | None, list[pa.Array]]:
    """Tab-separated file → (header names or None, one string array per column)."""
    lines = read_lines(path)
    first = 1 if header else 0
    names = lines[0].as_py().split("\t") if header and len(lines) else None
    parts = pc.split_pattern(lines[first:], "\t")
    n = pc.list_value_length(parts).to_numpy()
    bad = np.flatnonzero(n != ncols)
    if bad.size:
        raise DataError(f"{path}, line {first + bad[0] + 1}: expected {ncols} tab-separated "
                        f"fields, found {n[bad[0]]}")
    if len(n) == 0:
        raise DataError(f"{path}: no data lines")
    flat = parts.flatten()
    return names, [flat.take(pa.array(np.arange(i, len(flat), ncols))) for i in range(ncols)]


def read_atomic(path: str, names: list[str], *, header: bool = True,
                types: dict[str, pa.DataType] | None = None) -> dict[str, pa.Array]:
    """Columns ``names`` of a tab-separated file (RecBole atomic file when ``header``), typed."""
    head, cols = tab_fields(path, len(names), header=header)
    if head is not None and head != names:
        raise DataError(f"{path}, line 1: expected the header {names}, found {head}")
    first = 2 if header else 1  # line number of data row 0
    out = {}
    for name, col in zip(names, cols):
        dtype = (types or {}).get(name, pa.string())
        out[name] = col if dtype == pa.string() else cast_numbers(
            col, dtype, path, f"'{name}'", lambda i: first + i)
    return out


def read_user_lists(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """KGAT file of lines ``user item item ...`` → (user per line, items per line, all items)."""
    tokens = pc.ascii_split_whitespace(pc.ascii_trim_whitespace(read_lines(path)))
    counts = pc.list_value_length(tokens).to_numpy()  # a blank line counts 1 ("" → error below)
    if counts.size == 0:
        raise DataError(f"{path}: no data lines")
    offsets = np.concatenate([[0], np.cumsum(counts)])
    flat = cast_numbers(tokens.flatten(), pa.int64(), path, "every token", lambda i: int(
        np.searchsorted(offsets, i, side="right")))
    flat = flat.to_numpy()
    users = flat[offsets[:-1]]
    seen, first_line = np.unique(users, return_index=True)
    if seen.size < users.size:
        dup = np.setdiff1d(np.arange(users.size), first_line)[0]
        raise DataError(f"{path}, line {dup + 1}: user {users[dup]} already has a line")
    is_item = np.ones(flat.size, dtype=bool)
    is_item[offsets[:-1]] = False
    return users, counts - 1, flat[is_item]

