"""Typed, frozen mini-batches the loaders hand to the models.

A batch is made by a loader worker from the memory-mapped store (its tensors are small: the
batch's triples and what its plan sampled), moved to the device, then bound to the plan's
``static`` state on that device (whole-graph operators, kNN graphs, ...: built once per device,
never copied through the workers). A model's ``loss(batch)`` reads the batch and nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from reelgraph.graph import FullGraph, Subgraph


def mixed_seed(*key: int) -> int:
    """A well-mixed 63-bit seed from non-negative ints (``numpy.random.SeedSequence``)."""
    return int(np.random.SeedSequence(list(key)).generate_state(1, np.uint64)[0] >> np.uint64(1))


def _apply(x: Any, fn) -> Any:
    """``fn`` on every tensor of ``x``: tensors, frozen dataclasses of them, lists and tuples of
    tensors, tuples of such dataclasses."""
    if isinstance(x, Tensor):
        return fn(x)
    if is_dataclass(x) and not isinstance(x, type):
        return replace(x, **{f.name: _apply(getattr(x, f.name), fn) for f in fields(x)
                             if f.name != "static" and f.init})
    if isinstance(x, (list, tuple)) and x and isinstance(x[0], Tensor):
        return type(x)(fn(t) for t in x)
    if isinstance(x, tuple) and x and is_dataclass(x[0]):  # e.g. one sampled graph per CKG
        return tuple(_apply(t, fn) for t in x)
    return x


def move(x: Any, device: torch.device | str, non_blocking: bool = False) -> Any:
    """``x`` (a batch, a subgraph, a tensor) on ``device``."""
    return _apply(x, lambda t: t.to(device, non_blocking=non_blocking))


@dataclass(frozen=True)
class BPRBatch:
    """Training triples for pairwise ranking losses.

    Attributes:
        users (Tensor): ``[B]`` user indices.
        pos (Tensor): ``[B]`` a positive item of each user.
        neg (Tensor): ``[B, num_negatives]`` items the user never interacted with in train.
        seed (int): seed of the generator the batch was drawn with (``(seed, epoch, rank,
            batch)``); a hook that draws more for this batch derives its generator from it.
        epoch (int, optional): the 0-based epoch the batch belongs to, for plans whose draws
            change with it (PinSage's hard-negative curriculum); ``None`` outside a loader.
        static: the plan's per-device state, bound after the batch reaches the device.
    """

    users: Tensor
    pos: Tensor
    neg: Tensor
    seed: int = field(default=0, kw_only=True)
    epoch: int | None = field(default=None, kw_only=True)
    static: Any = field(default=None, kw_only=True, repr=False)

    def to(self, device: torch.device | str, non_blocking: bool = False):
        return move(self, device, non_blocking)

    def pin_memory(self):
        return _apply(self, lambda t: t.pin_memory())

    def bind(self, static: Any):
        """This batch with the plan's static state of its device attached."""
        return replace(self, static=static)

    def __len__(self) -> int:
        return self.users.numel()

    def generator(self, stream: int) -> torch.Generator:
        """A generator on the batch's device for the model's own noise (SimGCL's views, ...),
        seeded by ``(batch seed, stream)``: never torch's global RNG, so resumed and
        uninterrupted runs draw alike. ``stream`` tells a model's independent draws apart."""
        return torch.Generator(self.device).manual_seed(mixed_seed(self.seed, stream))

    @property
    def device(self) -> torch.device:
        return self.users.device


@dataclass(frozen=True)
class GraphBatch(BPRBatch):
    """BPR triples and the graph their rows are computed over.

    Attributes:
        sub: the sampled hop-ordered neighbourhood of the batch's nodes (seeds: its unique users
            and items ``U + i``); ``None``: the whole graph (``static.graph``).
        index: ``[B (2 + k)]`` rows of the graph's seeds: the users, then each triple's positive
            and negatives (``[B, 1 + k]`` flattened); for the whole graph, global node ids.
    """

    sub: Subgraph | None
    index: Tensor

    @property
    def graph(self) -> Subgraph | FullGraph:
        return self.sub if self.sub is not None else self.static.graph

    def rows(self) -> tuple[Tensor, Tensor]:
        """``(user rows [B], item rows [B, 1 + k])`` of the batch in :attr:`graph`'s seeds."""
        B = len(self)
        return self.index[:B], self.index[B:].view(B, -1)
