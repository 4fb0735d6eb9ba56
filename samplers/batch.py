"""Typed mini-batches the loaders hand to the models."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class BPRBatch:
    """Training triples for pairwise ranking losses.

    Attributes:
        users (Tensor): ``[B]`` user indices.
        pos (Tensor): ``[B]`` a positive item of each user.
        neg (Tensor): ``[B, num_negatives]`` items the user never interacted with in train.
    """

    users: Tensor
    pos: Tensor
    neg: Tensor

    def to(self, device: torch.device | str) -> "BPRBatch":
        return BPRBatch(self.users.to(device), self.pos.to(device), self.neg.to(device))

    def __len__(self) -> int:
        return self.users.numel()
