"""Global → local node ids for the samplers, without sorting: :func:`relabel` scatters into a
node → local-id table, and :func:`scratch_table` keeps such tables (int32, 4 bytes a node) per
thread, device and node type, made once and reset entry by entry after each batch, so a batch
costs ``O(batch)``, not ``O(num_nodes)``.

    with scratch_guard():
        table = scratch_table(device, None, num_nodes)
        local, new = relabel(table, ids, 0)
        ...
        table.index_fill_(0, all labelled ids, FREE)  # leave it as found
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

FREE = 2**31 - 1  # a scratch-table entry of a node without a local id
BID = 2**30  # local ids stay below; relabel's first-appearance bids are BID + position


def relabel(table: Tensor, ids: Tensor, count: int) -> tuple[Tensor, Tensor]:
    """Local ids of global ``ids [M]`` (int64) through ``table``, an int32 node → local-id map
    holding ``2**31 - 1`` for nodes not labelled yet: unseen ids get ``count, count + 1, ...`` in
    order of first appearance, written into ``table``. ``O(M)``: no sort, no boolean masks.

    Returns:
        ``(local [M] int64, new [U])``: ``new`` holds the newly labelled global ids in label
        order, so ``new[local - count] == ids`` wherever ``local >= count``.
    """
    m = ids.numel()
    if count + m >= BID:
        raise ValueError(f"relabel: {count + m} ids exceed the int32 table's {BID}")
    at = torch.arange(BID, BID + m, dtype=table.dtype, device=ids.device)  # [M]
    # each id bids BID + its position: a labelled id keeps its label (< BID), a free one
    # (FREE) takes the bid of its first appearance
    table.scatter_reduce_(0, ids, at, reduce="amin")
    is_first = table.index_select(0, ids) == at  # [M] first appearance of an unseen id
    rank = torch.cumsum(is_first, 0)  # [M] int64; at a first appearance, its label + 1 - count
    u = int(rank[-1]) if m else 0
    # compact without a mask: first appearances go to even slots 2 * (rank - 1), the rest to
    # odd slots 2 * rank + 1, then the even slots are read back
    dest = rank.mul_(2).add_(1).sub_(is_first.long(), alpha=3)  # [M], in place of rank
    new = ids.new_empty(2 * u + 2).scatter_(0, dest, ids)[0:2 * u:2]
    table.scatter_(0, new, torch.arange(count, count + u, dtype=table.dtype, device=ids.device))
    return table.index_select(0, ids).long(), new


_scratch = threading.local()  # .tables: {(device, node type or None): int32 table}


def scratch_table(device: torch.device, key: str | None, size: int) -> Tensor:
    """This thread's int32 node → local-id scratch table ``key`` on ``device``, ``[>= size]``:
    free (``FREE``) but for the entries the running sampler labelled; grown, keeping them,
    when ``size`` is larger. Reused across calls, so a batch costs ``O(batch)``, not
    ``O(num_nodes)``; per thread, so concurrent samplers never share one."""
    tables = _scratch.__dict__.setdefault("tables", {})
    table = tables.get((device, key))
    if table is None or table.numel() < size:
        with torch.inference_mode(False):  # a normal tensor, updatable in and out of that mode
            grown = torch.full((size,), FREE, dtype=torch.int32, device=device)
            if table is not None:
                grown[:table.numel()] = table
        table = tables[(device, key)] = grown
    return table


@contextmanager
def scratch_guard() -> Iterator[None]:
    """Drops this thread's scratch tables (rebuilt on next use) if the block fails midway and
    may have left labels in them; a block that completes frees the entries it labelled."""
    try:
        yield
    except BaseException:
        _scratch.__dict__.pop("tables", None)
        raise
