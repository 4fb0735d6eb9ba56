"""The contract between a model's config and the loader: a sampling plan.

A plan says what a model's training batch needs beyond its BPR triples and makes it, on the data
side: ``context(store)`` once per process (what sampling reads, memory-mapped), ``sample(ctx,
triples, generator)`` per batch in a loader worker, and ``static(store, device)`` once per device
(what the model reads beyond the batch, e.g. a whole-graph operator). A model never samples.
"""
from __future__ import annotations

from typing import Any

import torch

from reelgraph.samplers.batch import BPRBatch


class Plan:
    """The plan of a model whose batch is its triples (BPR-MF); base of the other plans."""

    def context(self, store) -> Any:
        """What :meth:`sample` reads, opened once per process (memory-mapped where possible)."""
        return None

    def sample(self, ctx: Any, triples: BPRBatch, generator: torch.Generator) -> BPRBatch:
        """The batch of ``triples``; every random draw from ``generator``."""
        return triples

    def static(self, store, device: torch.device) -> Any:
        """The model's per-device state beyond the batch (built once per device)."""
        return None

    @property
    def mines_negatives(self) -> bool:
        """Whether :meth:`mine` must run on every training batch."""
        return False

    def mine(self, ctx: Any, batch: BPRBatch, user_emb, item_emb) -> BPRBatch:
        """The one draw that needs the model: negatives mined from its current embeddings
        (``[U, d]``, ``[I, d]``), from a generator derived from the batch's seed; run in the
        training process on the batch's device."""
        return batch
