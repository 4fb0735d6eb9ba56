"""Negative sampling for link prediction, over a user→item CSR; CPU and CUDA alike."""
from __future__ import annotations

import torch
from torch import Tensor

from reelgraph.graph import contains_edges


def uniform_negatives(users: Tensor, pos_keys: Tensor, num_items: int, num_negatives: int = 1,
                      *, generator: torch.Generator | None = None, max_rounds: int = 20) -> Tensor:
    """Items drawn uniformly for each user, never one of the user's positives.

    Every draw is checked against ``pos_keys`` and redrawn where it hits a positive (rejection
    sampling); a user whose positives cover every item raises.

    Args:
        users (Tensor): ``[B]`` user indices.
        pos_keys (Tensor): sorted ``user * num_items + item`` keys of the positives to exclude.
        num_items (int): size of the item set.
        num_negatives (int): negatives per user (default ``1``).
        generator (torch.Generator, optional): on ``users.device``, for reproducible draws.
        max_rounds (int): redraw rounds before giving up.

    Returns:
        ``[B, num_negatives]`` int64 item indices.
    """
    device = users.device
    u = users.long().unsqueeze(1).expand(-1, num_negatives)
    neg = torch.randint(num_items, u.shape, device=device, generator=generator)
    for _ in range(max_rounds):
        bad = contains_edges(pos_keys, u, neg, num_items)
        if not bool(bad.any()):
            return neg
        neg[bad] = torch.randint(num_items, (int(bad.sum()),), device=device, generator=generator)
    raise RuntimeError(
        f"negative sampling: {int(bad.sum())} draws still hit positives after {max_rounds} rounds;"
        " some users have interacted with (almost) every item")
