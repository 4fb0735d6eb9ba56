"""``RecDataModule``: the graph store, its splits, the training ``DataLoader`` that runs the
model's sampling plan, the plan's per-device static state, and the evaluation batches."""
from __future__ import annotations

import logging
from typing import Any, Literal

import torch

from reelgraph.data.sources import DEFAULT_CACHE, open_store
from reelgraph.data.split import SplitConfig
from reelgraph.data.store import GraphStore
from reelgraph.errors import ConfigError, positive_int, require
from reelgraph.graph import BipartiteGraph, union
from reelgraph.lightning_modules._pl import pl
from reelgraph.samplers.batch import BPRBatch
from reelgraph.samplers.loader import NEGATIVES, UserBatches, train_loader
from reelgraph.samplers.plans.base import Plan

log = logging.getLogger("reelgraph")


class RecDataModule(pl.LightningDataModule):
    """Opens (building on first use) the graph store of ``data`` and serves its loaders.

    Training batches come from a ``DataLoader`` whose workers memory-map the store and run the
    model's sampling plan (``RecModule.sampling_plan``, or ``plan``); every draw of a batch comes
    from ``(seed, epoch, rank, batch index)``, so batches do not depend on ``num_workers``.

    Args:
        data: ``synthetic[:preset]``, a Parquet dataset folder, a graph-store folder or a real
            dataset folder of ``../shared/data`` (see :mod:`reelgraph.data.sources`).
        split: how interactions are split (ignored when ``data`` is a built store).
        batch_size: positives per training batch.
        num_negatives: negatives per positive (never a training positive).
        negatives: how they are drawn: ``"uniform"`` over items, ``"popularity"``, with
            probability ``∝ train count ** popularity_alpha``, or ``"in_batch"``: other rows'
            positives of the same batch.
        popularity_alpha: the exponent of ``"popularity"`` negatives (0.75 as word2vec).
        eval_batch_size: users per evaluation batch (bounds evaluation memory with the module's
            ``item_chunk_size``).
        num_workers: loader worker processes sampling batches while the model trains (0: in the
            training process).
        persistent_workers: keep the workers (and their opened store) across epochs.
        pin_memory: pinned host memory for faster copies to a GPU (``None``: when training on
            a GPU).
        prefetch_factor: batches each worker prepares ahead.
        cache_dir: where generated worlds, converted datasets and built stores are kept.
        rebuild: rebuild the store even if a cached one exists.
        seed: seed of the edge order, the negatives and every sampled neighbourhood.
        eval_users: evaluate a uniform sample of this many users per split (seeded; ``None``:
            all users), for graphs whose full ranking of every user is too slow.
        plan: the sampling plan (default: the training module's).
    """

    def __init__(self, data: str = "synthetic", split: SplitConfig | None = None,
                 batch_size: int = 2048, num_negatives: int = 1, eval_batch_size: int = 1024,
                 num_workers: int = 0, persistent_workers: bool = True,
                 pin_memory: bool | None = None, prefetch_factor: int = 2,
                 cache_dir: str = DEFAULT_CACHE, rebuild: bool = False, seed: int = 0,
                 eval_users: int | None = None, plan: Plan | None = None,
                 negatives: Literal["uniform", "popularity", "in_batch"] = "uniform",
                 popularity_alpha: float = 0.75):
        super().__init__()
        for flag, value, low in (("batch_size", batch_size, 1), ("num_negatives", num_negatives, 1),
                                 ("eval_batch_size", eval_batch_size, 1),
                                 ("num_workers", num_workers, 0),
                                 ("prefetch_factor", prefetch_factor, 1), ("seed", seed, 0)):
            positive_int(f"data.{flag}", value, low)
        if eval_users is not None:
            positive_int("data.eval_users", eval_users)
        require("data.popularity_alpha", popularity_alpha, lambda v: v >= 0, "a number >= 0")
        if negatives not in NEGATIVES:
            raise ConfigError(f"data.negatives={negatives!r}: choose from {list(NEGATIVES)}")
        self.save_hyperparameters(ignore=["plan"])
        self.data, self.cache_dir, self.rebuild, self.seed = data, cache_dir, rebuild, seed
        split = split or SplitConfig()
        self.split = split if isinstance(split, SplitConfig) else SplitConfig(**split)  # CLI dicts
        self.batch_size, self.num_negatives, self.eval_batch_size = batch_size, num_negatives, eval_batch_size
        self.num_workers, self.persistent_workers = num_workers, persistent_workers
        self.pin_memory, self.prefetch_factor, self.eval_users = pin_memory, prefetch_factor, eval_users
        self._plan = plan
        self.negatives, self.popularity_alpha = negatives, popularity_alpha
        self.store: GraphStore | None = None
        self._static: dict[str, Any] = {}
        self._context = None

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

    @property
    def plan(self) -> Plan:
        if self._plan is None:
            if self.trainer is None:
                raise RuntimeError("RecDataModule: no plan; pass plan=... or attach to a Trainer "
                                   "fitting a RecModule")
            self._plan = self.trainer.lightning_module.sampling_plan
        return self._plan

    def static(self, device: torch.device | str) -> Any:
        """The plan's per-device state (built once per device)."""
        key = str(torch.device(device))
        if key not in self._static:
            self._static[key] = self.plan.static(self.store, torch.device(device))
        return self._static[key]

    def context(self) -> Any:
        """The plan's sampling context in this process (for hooks run while training)."""
        if self._context is None:
            self._context = self.plan.context(self.store)
        return self._context

    def _rank(self) -> tuple[int, int]:
        t = self.trainer
        return (t.global_rank, t.world_size) if t is not None else (0, 1)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        rank, world = self._rank()
        pin = self.pin_memory
        if pin is None:
            pin = self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        return train_loader(self.store, self.plan, self.batch_size, self.num_negatives,
                            seed=self.seed, rank=rank, world_size=world,
                            num_workers=self.num_workers, persistent_workers=self.persistent_workers,
                            pin_memory=pin, prefetch_factor=self.prefetch_factor,
                            negatives=self.negatives, popularity_alpha=self.popularity_alpha)

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch.to(device)  # a batch (frozen dataclass) or a tensor of users

    def on_after_batch_transfer(self, batch, dataloader_idx):
        if isinstance(batch, BPRBatch):  # training: attach the plan's state on this device
            return batch.bind(self.static(batch.device))
        return batch

    def eval_user_ids(self, graph: BipartiteGraph) -> torch.Tensor:
        """``[n]`` the users evaluated on ``graph`` (those with a positive there; with
        ``eval_users``, the seeded sample of them), sorted, over all ranks."""
        deg = graph.rowptr[1:] - graph.rowptr[:-1]
        users = torch.nonzero(deg > 0).flatten()
        if self.eval_users is not None and self.eval_users < users.numel():
            gen = torch.Generator().manual_seed(self.seed)
            users = torch.sort(users[torch.randperm(users.numel(), generator=gen)[: self.eval_users]]).values
        return users

    def _eval_users(self, graph: BipartiteGraph) -> UserBatches:
        users = self.eval_user_ids(graph)
        rank, world = self._rank()
        return UserBatches(users[rank::world], self.eval_batch_size)  # each rank its own users

    def val_dataloader(self) -> UserBatches:
        return self._eval_users(self.valid_graph)

    def test_dataloader(self) -> UserBatches:
        return self._eval_users(self.test_graph)
