"""Training batches through a ``torch.utils.data.DataLoader``, plain PyTorch.

- :class:`EdgeBatchSampler` (main process) shuffles the train edges once per epoch, gives rank
  ``r`` of ``W`` every ``W``-th one, and yields each batch's edge ids with the batch's seed, drawn
  from ``(seed, epoch, rank, batch index)``.
- :class:`TrainBatches` (the dataset, run in the loader's worker processes) opens the store
  memory-mapped in each process (a store is pickled as its path; no graph ever is), draws the
  batch's negatives and runs the model's :class:`~reelgraph.samplers.plans.base.Plan` with one
  ``torch.Generator`` seeded by the batch's seed.

So a batch depends only on ``(seed, epoch, rank, batch index)``: identical for any
``num_workers``, and for a run resumed at an epoch boundary.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from reelgraph.errors import ConfigError
from reelgraph.samplers.batch import BPRBatch, mixed_seed
from reelgraph.samplers.negative import (in_batch_sampled_negatives, popularity_cdf,
                                         popularity_negatives, uniform_negatives)
from reelgraph.samplers.plans.base import Plan


def batch_seed(seed: int, epoch: int, rank: int, batch: int) -> int:
    """The seed of one batch's generator."""
    return mixed_seed(seed, epoch, 1, rank, batch)


@dataclass(frozen=True)
class BatchIndex:
    """What a worker needs to make one batch: its train-edge ids (CSR slots, ``[B]``) and seed."""

    epoch: int
    batch: int
    seed: int
    edges: np.ndarray


class EdgeBatchSampler(DistributedSampler):
    """Shuffled train edges in batches, sharded by rank; one epoch per ``iter``.

    A ``DistributedSampler`` so that Lightning, which recognises one, leaves it in place and only
    calls :meth:`set_epoch`. The edge order of an epoch comes from ``(seed, epoch)`` alone, so
    every rank shares it and takes every ``world_size``-th edge: no two ranks train the same
    positives. Every rank must run the same number of steps (DDP's gradient all-reduce is a
    collective), so, as ``DistributedSampler`` does, the order is padded with its own first
    ``-E mod world_size`` edges: each rank trains exactly ``ceil(E / world_size)`` edges, and at
    most ``world_size - 1`` positives are trained twice in an epoch (never within one process).
    """

    def __init__(self, num_edges: int, batch_size: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1 (got {batch_size})")
        if seed < 0:
            raise ConfigError(f"seed must be >= 0 (got {seed})")
        self.num_edges, self.batch_size = num_edges, batch_size
        self.seed, self.rank, self.num_replicas, self.epoch = seed, rank, world_size, 0
        self.shuffle, self.drop_last = True, False

    def __len__(self) -> int:
        n = -(-self.num_edges // self.num_replicas)
        return -(-n // self.batch_size)

    def __iter__(self) -> Iterator[BatchIndex]:
        gen = torch.Generator().manual_seed(mixed_seed(self.seed, self.epoch, 0))
        perm = torch.randperm(self.num_edges, generator=gen)
        pad = -self.num_edges % self.num_replicas  # equal shards: equal step counts on all ranks
        perm = torch.cat([perm, perm[:pad]])[self.rank::self.num_replicas].numpy()
        for b, start in enumerate(range(0, perm.size, self.batch_size)):
            yield BatchIndex(self.epoch, b, batch_seed(self.seed, self.epoch, self.rank, b),
                             perm[start: start + self.batch_size])


NEGATIVES = ("uniform", "popularity", "in_batch")
_KEY_CHUNK = 1 << 24  # edges per chunk while building the key array


def train_keys(store) -> Tensor:
    """Sorted ``user * num_items + item`` keys of the train edges, ``[E]`` int64: derived once
    per store and memory-mapped by every process (the page cache shares it). A negative is
    checked against them by one ``searchsorted``, ~3x faster than a binary search inside each
    CSR row (``benchmarks/RESULTS.md``)."""
    def build() -> dict[str, Tensor]:
        g = store.graph("train")
        keys = torch.empty(g.num_edges, dtype=torch.int64)
        for start in range(0, g.num_edges, _KEY_CHUNK):
            slots = torch.arange(start, min(start + _KEY_CHUNK, g.num_edges))
            keys[slots] = g.edge_users(slots) * g.num_items + g.col[slots].long()
        return {"keys": keys}

    return store.derived("train_keys", {"split": "train"}, build)["keys"]


class TrainBatches(Dataset):
    """Makes the batch of a :class:`BatchIndex`: BPR triples of its edges (negatives never a
    train positive), then ``plan.sample``; one generator per batch.

    Args:
        store: a :class:`~reelgraph.data.store.GraphStore` (pickled to workers as its path; each
            process memory-maps it) or an in-memory store.
        plan: the model's sampling plan.
        num_negatives: negatives per positive.
        negatives: ``"uniform"`` over items, ``"popularity"``: ``∝ train count ** alpha``, or
            ``"in_batch"``: other rows' positives of the same batch (``∝`` their popularity).
        popularity_alpha: the exponent of ``"popularity"`` (0: uniform over seen items).
    """

    def __init__(self, store, plan: Plan, num_negatives: int, negatives: str = "uniform",
                 popularity_alpha: float = 0.75):
        if not (isinstance(num_negatives, int) and num_negatives >= 1):
            raise ConfigError(f"num_negatives must be >= 1, an int (got {num_negatives!r})")
        if negatives not in NEGATIVES:
            raise ConfigError(f"negatives={negatives!r}; choose from {NEGATIVES}")
        if not popularity_alpha >= 0:
            raise ConfigError(f"popularity_alpha must be >= 0 (got {popularity_alpha!r})")
        self.store, self.plan, self.num_negatives = store, plan, num_negatives
        self.negatives, self.popularity_alpha = negatives, popularity_alpha
        self._open = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_open": None}  # each process opens (memory-maps) its own

    def _opened(self):
        if self._open is None:
            graph = self.store.graph("train")
            cdf = None
            if self.negatives == "popularity":  # once per process, O(train edges)
                count = torch.bincount(graph.col.long(), minlength=graph.num_items)
                cdf = popularity_cdf(count, self.popularity_alpha)
            self._open = graph, train_keys(self.store), self.plan.context(self.store), cdf
        return self._open

    def __getitem__(self, index: BatchIndex) -> BPRBatch:
        graph, keys, ctx, cdf = self._opened()
        gen = torch.Generator().manual_seed(index.seed)
        edges = torch.from_numpy(index.edges)
        users, pos = graph.edge_users(edges), graph.col[edges].long()
        if self.negatives == "in_batch":
            neg = in_batch_sampled_negatives(users, pos, keys, graph.num_items,
                                             self.num_negatives, generator=gen)
        elif cdf is None:
            neg = uniform_negatives(users, keys, graph.num_items, self.num_negatives, generator=gen)
        else:
            neg = popularity_negatives(users, keys, cdf, self.num_negatives, generator=gen)
        return self.plan.sample(ctx, BPRBatch(users, pos, neg, seed=index.seed,
                                              epoch=index.epoch), gen)


def plan_batch(store, plan: Plan, triples: BPRBatch, seed: int = 0,
               device: torch.device | str = "cpu") -> BPRBatch:
    """The batch ``plan`` makes of given ``triples`` (its generator seeded by ``seed``), on
    ``device`` and bound to the plan's static state there: what a model's ``loss`` gets while
    training. For tests and debugging (training batches come from :func:`train_loader`)."""
    batch = plan.sample(plan.context(store), replace(triples, seed=seed),
                        torch.Generator().manual_seed(seed))
    return batch.to(device).bind(plan.static(store, torch.device(device)))


def _batch(batch):
    return batch  # batches are made whole by the dataset


def train_loader(store, plan: Plan, batch_size: int, num_negatives: int, *, seed: int = 0,
                 rank: int = 0, world_size: int = 1, num_workers: int = 0,
                 persistent_workers: bool = True, pin_memory: bool = False,
                 prefetch_factor: int | None = None, negatives: str = "uniform",
                 popularity_alpha: float = 0.75) -> DataLoader:
    """A ``DataLoader`` of training batches of ``plan`` (see the module doc and
    :class:`TrainBatches`). Call ``loader.sampler.set_epoch(e)`` before each epoch (Lightning
    does)."""
    sampler = EdgeBatchSampler(store.meta["splits"]["train"], batch_size, seed, rank, world_size)
    workers = dict(persistent_workers=persistent_workers, prefetch_factor=prefetch_factor or 2) \
        if num_workers > 0 else {}
    dataset = TrainBatches(store, plan, num_negatives, negatives, popularity_alpha)
    return DataLoader(dataset, sampler=sampler, batch_size=None,
                      collate_fn=_batch, num_workers=num_workers, pin_memory=pin_memory, **workers)


class UserBatches:
    """Batches of ``batch_size`` user indices (the users an evaluation ranks items for)."""

    def __init__(self, users: Tensor, batch_size: int):
        self.users, self.batch_size = users, batch_size

    def __len__(self) -> int:
        return -(-self.users.numel() // self.batch_size)

    def __iter__(self) -> Iterator[Tensor]:
        return iter(self.users.split(self.batch_size))
