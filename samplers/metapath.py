"""Meta-path random walks (VA-GNN) over per-relation CSRs.

In the graph store's vocabulary a vlogger is a ``creator`` and a video an ``item``. The paper
(VA-GNN §4.2) builds a length-3 meta-path "by starting from a user u and walking with
probability q1 to a vlogger p interacted by u. Then we walk with probability q2 to another user
u' interacted by p or 1 − q2 to a video v published by p". So from each start user a walk:

* steps user → creator (a followed vlogger, uniform) with probability ``q1``, else stops with
  no endpoint;
* at the creator, EITHER (probability ``q2``) steps creator → user (another follower, uniform),
  emitting a user–creator–user endpoint pair ``(start user, user)``, OR (``1 − q2``) steps
  creator → item (one of its videos, uniform), emitting a user–creator–item pair
  ``(start user, item)``: one endpoint per meta-path, never both.

``walk_length = 1`` is the paper's meta-path. A longer walk (our extension, off by default)
goes on from a user endpoint with the next user → creator step, so step ``t`` reaches users
``t`` user–creator–user hops away; it ends at its first video endpoint or failed step.
Vectorised over walks; the only loop runs over steps.
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
                   num_walks: int = 1, walk_length: int = 1, q1: float = 0.5, q2: float = 0.5,
                   exclude_self: bool = True,
                   generator: torch.Generator | None = None) -> MetaPathOutput:
    """User–creator–user and user–creator–item meta-path endpoints from each start user.

    Args:
        user_creator (tuple): ``(rowptr [num_users + 1], col)`` follows CSR.
        creator_user (tuple): its transpose (:func:`reelgraph.graph.transpose_csr`).
        creator_item (tuple): ``(rowptr [num_creators + 1], col)`` creator → item CSR.
        users (Tensor): ``[B]`` start users.
        num_walks (int): walks per start user (default ``1``).
        walk_length (int): most meta-paths chained per walk (default ``1``: the paper's).
        q1 (float): chance of the user → creator step (default ``0.5``).
        q2 (float): at the creator, chance of going on to a user; ``1 − q2``: to an item.
        exclude_self (bool): drop ``(u, u)`` user–user pairs; the walk still goes on.
        generator (torch.Generator, optional): on the CSR device.

    With every user following a creator and every creator having followers and items, a walk
    emits a user–user pair at step ``t`` with probability ``(q1 q2)^t`` and a user–item pair
    with ``(q1 q2)^(t-1) q1 (1 - q2)``.
    """
    start = users.repeat_interleave(num_walks)  # [W]
    cur, uu, ui = start, [], []
    for _ in range(walk_length):
        step = _rand((start.numel(),), start.device, generator) < q1
        creator = walk_step(*user_creator, _stop_unless(step, cur), generator)
        to_user = _rand((start.numel(),), start.device, generator) < q2
        item = walk_step(*creator_item, _stop_unless(~to_user, creator), generator)
        ui.append(torch.stack([start, item])[:, item >= 0])
        cur = walk_step(*creator_user, _stop_unless(to_user, creator), generator)
        keep = (cur >= 0) & ~(exclude_self & (cur == start))
        uu.append(torch.stack([start, cur])[:, keep])
    return MetaPathOutput(torch.cat(uu, 1), torch.cat(ui, 1))
