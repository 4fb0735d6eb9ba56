"""Meta-path random walks (VA-GNN) over per-relation CSRs.

In the graph store's vocabulary a vlogger is a ``creator`` and a video an ``item``. From each
start user a walk repeatedly steps user → creator (a followed vlogger); at each creator it

* with probability ``q2`` also steps creator → item, emitting a user–creator–item meta-path
  endpoint pair ``(start user, item)``;
* with probability ``q1`` continues creator → user (another follower), emitting a
  user–creator–user pair ``(start user, user)`` and walking on from that user; otherwise the
  walk stops.

So step ``t`` of a walk reaches users ``t`` user–creator–user hops away, and walks last a
geometric number of steps (mean ``1 / (1 - q1)``, capped at ``walk_length``). Vectorised over
walks; the only loop runs over steps.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from reelgraph.samplers.neighbor import _rand
from reelgraph.samplers.pinsage import walk_step

CSR = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class MetaPathOutput:
    """Meta-path endpoint edges, ``[2, M]`` each as ``(src, dst)`` rows.

    Attributes:
        user_user (Tensor): ``(start user, user reached)`` of user–creator–user paths.
        user_item (Tensor): ``(start user, item reached)`` of user–creator–item paths.
    """

    user_user: Tensor
    user_item: Tensor


def _stop_unless(mask: Tensor, pos: Tensor) -> Tensor:
    return torch.where(mask, pos, torch.full_like(pos, -1))


def metapath_walks(user_creator: CSR, creator_user: CSR, creator_item: CSR, users: Tensor, *,
                   num_walks: int = 1, walk_length: int = 3, q1: float = 0.5, q2: float = 0.5,
                   exclude_self: bool = True,
                   generator: torch.Generator | None = None) -> MetaPathOutput:
    """User–creator–user and user–creator–item walks from each start user.

    Args:
        user_creator (tuple): ``(rowptr [num_users + 1], col)`` follows CSR.
        creator_user (tuple): its transpose (:func:`reelgraph.graph.transpose_csr`).
        creator_item (tuple): ``(rowptr [num_creators + 1], col)`` creator → item CSR.
        users (Tensor): ``[B]`` start users.
        num_walks (int): walks per start user (default ``1``).
        walk_length (int): most user → creator steps per walk (default ``3``).
        q1 (float): chance of continuing creator → user at each step (default ``0.5``).
        q2 (float): chance of emitting a creator → item endpoint at each step (default ``0.5``).
        exclude_self (bool): drop ``(u, u)`` user–user pairs; the walk still goes on.
        generator (torch.Generator, optional): on the CSR device.
    """
    start = users.repeat_interleave(num_walks)  # [W]
    cur, uu, ui = start, [], []
    for _ in range(walk_length):
        creator = walk_step(*user_creator, cur, generator)
        emit = _rand((start.numel(),), start.device, generator) < q2
        item = walk_step(*creator_item, _stop_unless(emit, creator), generator)
        ui.append(torch.stack([start, item])[:, item >= 0])
        go_on = _rand((start.numel(),), start.device, generator) < q1
        cur = walk_step(*creator_user, _stop_unless(go_on, creator), generator)
        keep = (cur >= 0) & ~(exclude_self & (cur == start))
        uu.append(torch.stack([start, cur])[:, keep])
    return MetaPathOutput(torch.cat(uu, 1), torch.cat(ui, 1))
