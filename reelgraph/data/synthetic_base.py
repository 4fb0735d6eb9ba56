"""What the parts of the synthetic world share (:mod:`~reelgraph.data.synthetic`, the generator,
and :mod:`~reelgraph.data.synthetic_side`, its KG and features): the config ``WorldConfig``,
the seeded random stream of each part, string id columns, and the per-item catalogue.

Both modules import from here and never the reverse, so the imports stay acyclic.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MODALITIES = ("visual", "acoustic", "textual")
_ITEM_BLOCK = 65_536         # items per row group of the per-item tables
_WORLD, _USERS, _FEATURES, _KG = range(4)    # SeedSequence spawn keys, one stream per part


@dataclass
class WorldConfig:
    num_users: int = 6_000                 # users; raw ids are user_id_offset + i (int64)
    num_items: int = 4_000                 # videos; ids "v000123"
    num_creators: int = 400                # vloggers; ids "c0042"; each posts >= 1 video
    num_communities: int = 20              # latent topics; a creator and its videos share one
    community_concentration: float = 1.0   # Dirichlet mass of a user's topics (~1 + this many)
    drift: float = 0.3                     # P(a second topic mixture) at the end of the timespan
    avg_interactions: float = 30.0         # mean interactions per user (power-law degrees)
    min_interactions: int = 5              # every user has at least this many distinct videos
    max_interactions: int = 500            # degree cap (at most num_items // 2)
    activity_exponent: float = 2.0         # Pareto tail of user degrees (smaller: heavier users)
    popularity_exponent: float = 1.2       # Pareto shape of video popularity (smaller: more skewed)
    noise: float = 0.1                     # share of interactions with a uniformly random video
    follows_per_user: float = 3.0          # mean vloggers a user follows (Poisson)
    follow_affinity: float = 0.9           # share of follows drawn from the user's own topics
    follow_rate: float = 0.2               # share of a follower's views of followed vloggers
    rewatch: float = 0.01                  # share of views repeating an earlier video (duplicates)
    visual_dim: int = 128                  # feature dims; 0 drops a modality
    acoustic_dim: int = 32                 # (audio)
    textual_dim: int = 64                  # (title and description)
    visual_signal: float = 0.8             # share of a feature's variance set by the video's topic
    acoustic_signal: float = 0.1           # weak
    textual_signal: float = 0.4            # medium
    kg: bool = True                        # write kg.parquet (video->topic/tag, tag->topic, ...)
    tags_per_community: int = 20           # size of each topic's tag pool
    tags_per_item: float = 2.0             # mean tags per video (Poisson)
    tag_noise: float = 0.1                 # share of tags drawn from a random topic's pool
    timespan_days: float = 90.0            # timestamps lie in [EPOCH, EPOCH + timespan]
    user_id_offset: int = 10_000_000       # raw user ids are non-contiguous with item indices
    seed: int = 0                          # same config + seed: byte-identical files
    chunk_users: int = 20_000              # users generated, and written as a row group, at a time

    def __post_init__(self) -> None:
        shares = (self.noise, self.follow_rate, self.follow_affinity, self.drift, self.rewatch,
                  self.tag_noise, self.visual_signal, self.acoustic_signal, self.textual_signal)
        checks = {
            "1 <= num_communities <= num_creators <= num_items":
                1 <= self.num_communities <= self.num_creators <= self.num_items,
            "1 <= min_interactions <= avg_interactions <= max_interactions <= num_items // 2":
                1 <= self.min_interactions <= self.avg_interactions <= self.max_interactions
                <= self.num_items // 2,
            "shares, signals and drift in [0, 1]": all(0.0 <= s <= 1.0 for s in shares),
            "num_users, chunk_users, tags_per_community >= 1":
                min(self.num_users, self.chunk_users, self.tags_per_community) >= 1,
            "dims, follows_per_user, tags_per_item, user_id_offset >= 0": min(
                self.visual_dim, self.acoustic_dim, self.textual_dim, self.follows_per_user,
                self.tags_per_item, self.user_id_offset) >= 0,
            "popularity_exponent, activity_exponent, community_concentration, timespan_days > 0":
                min(self.popularity_exponent, self.activity_exponent, self.community_concentration,
                    self.timespan_days) > 0,
        }
        bad = [rule for rule, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"WorldConfig needs {'; '.join(bad)} (got {self})")


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _ids(prefix: str, ints: np.ndarray, width: int = 0) -> pa.Array:
    """``prefix`` + zero-padded ints, e.g. ``_ids("v", [3], 6) == ["v000003"]``."""
    text = pc.cast(pa.array(np.asarray(ints, dtype=np.int64)), pa.string())
    if width:
        text = pc.utf8_lpad(text, width=width, padding="0")
    return pc.binary_join_element_wise(prefix, text, "")


@dataclass(frozen=True)
class _Grouped:
    """Draws a member of a given group with probability ∝ its weight (inverse CDF, one array)."""
    order: np.ndarray  # [n] member ids sorted by group
    cum: np.ndarray    # [n] running weight along `order`
    start: np.ndarray  # [G] first position of each group in `order` (no group is empty)
    end: np.ndarray    # [G] one past its last position

    @classmethod
    def build(cls, group: np.ndarray, weight: np.ndarray, num_groups: int) -> _Grouped:
        order = np.argsort(group, kind="stable")
        size = np.bincount(group, minlength=num_groups)
        end = np.cumsum(size)
        return cls(order, np.cumsum(weight[order]), end - size, end)

    def sample(self, rng: np.random.Generator, group: np.ndarray) -> np.ndarray:
        start, end = self.start[group], self.end[group]
        lo = np.where(start > 0, self.cum[start - 1], 0.0)
        t = lo + rng.random(group.size) * (self.cum[end - 1] - lo)
        pos = np.searchsorted(self.cum, t, side="right")
        return self.order[np.clip(pos, start, end - 1)]


@dataclass(frozen=True)
class _Catalogue:
    """The per-item world: each video's vlogger, topic and popularity, and samplers over them."""
    item_creator: np.ndarray          # [num_items] creator index
    item_community: np.ndarray        # [num_items] topic index
    items_by_community: _Grouped      # a topic's videos ∝ popularity
    items_by_creator: _Grouped        # a vlogger's videos ∝ popularity
    creators_by_community: _Grouped   # a topic's vloggers ∝ their videos' total popularity
