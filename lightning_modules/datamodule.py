"""``RecDataModule``: the graph store, its splits and the BPR / evaluation loaders."""
from __future__ import annotations

import logging
from typing import Callable, Iterator

import torch
from torch import Tensor

from reelgraph.data.sources import DEFAULT_CACHE, open_store
from reelgraph.data.split import SplitConfig
from reelgraph.data.store import GraphStore
from reelgraph.graph import BipartiteGraph, union
from reelgraph.lightning_modules._pl import pl
from reelgraph.samplers.batch import BPRBatch
from reelgraph.samplers.negative import uniform_negatives

log = logging.getLogger("reelgraph")


class BPRLoader:
    """Shuffled train edges in batches of (user, positive, negatives), one epoch per ``iter``.

    Edge order and negatives are drawn from ``seed + epoch``, so an epoch is reproducible and a
    resumed run sees the same batches. With ``world_size > 1`` rank ``r`` takes every
    ``world_size``-th edge of the permutation: no two workers train the same positives.
    """

    def __init__(self, graph: BipartiteGraph, batch_size: int, num_negatives: int, seed: int,
                 epoch: Callable[[], int], rank: int = 0, world_size: int = 1):
        self.graph, self.batch_size, self.num_negatives = graph, batch_size, num_negatives
        self.seed, self.epoch, self.rank, self.world_size = seed, epoch, rank, world_size
        self.users, self.keys = graph.users(), graph.keys()  # [E], sorted [E]

    def __len__(self) -> int:
        n = -(-self.graph.num_edges // self.world_size)
        return -(-n // self.batch_size)

    def __iter__(self) -> Iterator[BPRBatch]:
        gen = torch.Generator().manual_seed(self.seed + 7919 * self.epoch())
        perm = torch.randperm(self.graph.num_edges, generator=gen)[self.rank::self.world_size]
        for start in range(0, perm.numel(), self.batch_size):
            e = perm[start: start + self.batch_size]
            users = self.users[e]
            neg = uniform_negatives(users, self.keys, self.graph.num_items, self.num_negatives,
                                    generator=gen)
            yield BPRBatch(users, self.graph.col[e], neg)


class RecDataModule(pl.LightningDataModule):
    """Opens (building on first use) the graph store of ``data`` and serves its loaders.

    Args:
        data: ``synthetic[:preset]``, a Parquet dataset folder, a graph-store folder or a real
            dataset folder of ``../shared/data`` (see :mod:`reelgraph.data.sources`).
        split: how interactions are split (ignored when ``data`` is a built store).
        batch_size: positives per training batch.
        num_negatives: uniform negatives per positive (never a training positive).
        eval_batch_size: users per evaluation batch (bounds evaluation memory with the module's
            ``item_chunk_size``).
        cache_dir: where generated worlds, converted datasets and built stores are kept.
        rebuild: rebuild the store even if a cached one exists.
        seed: seed of the edge order and the negatives.
    """

    def __init__(self, data: str = "synthetic", split: SplitConfig = SplitConfig(),
                 batch_size: int = 2048, num_negatives: int = 1, eval_batch_size: int = 1024,
                 cache_dir: str = DEFAULT_CACHE, rebuild: bool = False, seed: int = 0):
        super().__init__()
        self.save_hyperparameters()
        self.data, self.cache_dir, self.rebuild, self.seed = data, cache_dir, rebuild, seed
        self.split = split if isinstance(split, SplitConfig) else SplitConfig(**split)  # CLI gives dicts
        self.batch_size, self.num_negatives, self.eval_batch_size = batch_size, num_negatives, eval_batch_size
        self.store: GraphStore | None = None

    def prepare_data(self) -> None:  # rank 0 only: generate, convert, build
        open_store(self.data, self.split, self.cache_dir, self.rebuild)

    def setup(self, stage: str | None = None) -> None:
        if self.store is not None:
            return
        self.store = open_store(self.data, self.split, self.cache_dir, rebuild=False)
        log.info("%s", self.store)
        self.train_graph = self.store.graph("train")
        self.valid_graph = self.store.graph("valid")
        self.test_graph = self.store.graph("test")
        if self.valid_graph.num_edges == 0:
            log.warning("no validation split: validating on test (as the LightGCN/KGAT reference "
                        "code does); set data.split.valid_ratio to carve one from train")
            self.valid_graph = self.test_graph
        self.history = union(self.train_graph, self.store.graph("valid"))  # masked when testing

    @property
    def num_users(self) -> int:
        return self.store.num_users

    @property
    def num_items(self) -> int:
        return self.store.num_items

    def _rank(self) -> tuple[int, int]:
        t = self.trainer
        return (t.global_rank, t.world_size) if t is not None else (0, 1)

    def train_dataloader(self) -> BPRLoader:
        rank, world = self._rank()
        epoch = (lambda: self.trainer.current_epoch) if self.trainer is not None else (lambda: 0)
        return BPRLoader(self.train_graph, self.batch_size, self.num_negatives, self.seed, epoch,
                         rank, world)

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch.to(device)  # a BPRBatch (frozen dataclass) or a tensor of users

    def _eval_users(self, graph: BipartiteGraph) -> "UserBatches":
        deg = graph.rowptr[1:] - graph.rowptr[:-1]
        rank, world = self._rank()
        users = torch.nonzero(deg > 0).flatten()[rank::world]  # each rank its own users
        return UserBatches(users, self.eval_batch_size)

    def val_dataloader(self) -> "UserBatches":
        return self._eval_users(self.valid_graph)

    def test_dataloader(self) -> "UserBatches":
        return self._eval_users(self.test_graph)


class UserBatches:
    """Batches of ``batch_size`` user indices (the users an evaluation ranks items for)."""

    def __init__(self, users: Tensor, batch_size: int):
        self.users, self.batch_size = users, batch_size

    def __len__(self) -> int:
        return -(-self.users.numel() // self.batch_size)

    def __iter__(self) -> Iterator[Tensor]:
        return iter(self.users.split(self.batch_size))
