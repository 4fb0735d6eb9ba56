"""The benchmarks' JSON-lines results files (one row per line, appended as each row finishes):
read back with a torn last line skipped, appended on a line of its own after one.

A script run as ``python benchmarks/x.py`` has this folder first on ``sys.path``; a script
loaded by path (``importlib``) puts it there itself before importing from here."""
from __future__ import annotations

import json
import os
from typing import Any, Callable


def load_rows(path: str, keep: Callable[[dict[str, Any]], bool] = lambda row: True
              ) -> dict[str, dict[str, Any]]:
    """model -> its row, of the lines ``keep`` accepts (the last such line of a model wins); a
    torn line is ignored."""
    rows: dict[str, dict[str, Any]] = {}
    if os.path.isfile(path):
        with open(path) as f:
            for line in f:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if keep(row):
                    rows[row["model"]] = row
    return rows


def append_row(path: str, row: dict[str, Any]) -> None:
    """Appends ``row`` as one line, on a line of its own after a torn last line."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torn = False
    if os.path.isfile(path) and os.path.getsize(path):
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            torn = f.read(1) != b"\n"
    with open(path, "a") as f:
        f.write(("\n" if torn else "") + json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())
