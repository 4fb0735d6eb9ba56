"""What every recommender shares: its config bases, its interface and the ranking losses."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reelgraph.errors import ConfigError, valid_number
from reelgraph.graph import check_fanouts
from reelgraph.samplers.batch import BPRBatch, GraphBatch
from reelgraph.samplers.plans.base import Plan
from reelgraph.samplers.plans.gcn import NeighborPlan

if TYPE_CHECKING:
    from reelgraph.data.store import GraphStore


class ModelConfig:
    """Base of the per-model configs (frozen ``@dataclass``es).

    A config is the one copy of a model's hyper-parameters: LightningCLI YAML (``model:
    class_path/init_args``), Ray Train and Ray Tune all read and write it. ``build`` makes the model
    from the store's sizes and whatever side data it needs (creators, features), passed to the
    model's constructor as plain tensors; ``plan`` is the sampling plan its training batches need
    (what the loader draws for it). A ``training_free`` model (GF-CF) has nothing to fit: the CLI
    validates and tests it without epochs.
    """

    training_free: ClassVar[bool] = False

    def build(self, store: "GraphStore") -> "Recommender":
        raise NotImplementedError

    def plan(self) -> Plan:
        return Plan()


def make_plan(config: ModelConfig, plan_cls: type[Plan], **given: Any) -> Plan:
    """``plan_cls`` with every field read by name from ``config`` (lists become tuples), unless
    ``given``. Plan fields have no defaults: the config is the one home of each field, its default
    and its validation; a plan field the config lacks must be given."""
    values = {}
    for f in fields(plan_cls):
        if f.name in given:
            values[f.name] = given[f.name]
        elif hasattr(config, f.name):
            v = getattr(config, f.name)
            values[f.name] = tuple(v) if isinstance(v, list) else v
        else:
            raise TypeError(f"{plan_cls.__name__}.{f.name}: {type(config).__name__} has no such "
                            "field; pass it to make_plan")
    return plan_cls(**values)


def check_values(owner: str, **values: float) -> None:
    """Raises ``ConfigError("<owner>: <name>=<value>; must be <rule>")`` (a ``ValueError``) for
    the first ``name=(value, ok, rule)`` whose value is not a finite number passing ``ok``."""
    for name, (value, ok, rule) in values.items():
        if not valid_number(value, ok):
            raise ConfigError(f"{owner}: {name}={value!r}; must be {rule}")


def int_at_least(low: int):
    """A :func:`check_values` rule: a whole number ``>= low``."""
    return lambda v: v >= low and v == int(v)


INITS = ("normal", "xavier")


def init_tables_(config: "EmbeddingConfig", *tables: Tensor) -> None:
    """Initialise ID tables ``[rows, d]`` (or row slices of one) in place by ``config.init``
    (``"spectral"`` needs the graph: normal here, overwritten by the config's ``build``)."""
    with torch.no_grad():
        for t in tables:
            if config.init == "xavier":
                nn.init.xavier_uniform_(t)  # fan_in d, fan_out rows: b = sqrt(6 / (rows + d))
            else:
                nn.init.normal_(t, std=config.init_std)


@dataclass(frozen=True)
class EmbeddingConfig(ModelConfig):
    """The fields every model shares."""

    embedding_dim: int = 64   # d of the ID embedding tables
    reg_weight: float = 1e-4  # L2 on the batch's layer-0 (ego) rows
    init_std: float = 0.1     # init="normal": std of the ID tables' N(0, std)
    init: str = "normal"      # "normal", or "xavier": Xavier-uniform per table, U(-b, b) with
    #                           b = sqrt(6 / (rows + d)) (the init of SimGCL's and NGCF's code);
    #                           LightGCN also "spectral" (reelgraph/models/spectral_init.py)

    inits: ClassVar[tuple[str, ...]] = INITS  # the values of ``init`` this model accepts

    def __post_init__(self):
        if self.init not in self.inits:
            raise ValueError(f"{type(self).__name__}: init={self.init!r}; choose from "
                             f"{self.inits}")
        check_values(type(self).__name__,
               embedding_dim=(self.embedding_dim, lambda v: v >= 1 and v == int(v), "an int >= 1"),
               reg_weight=(self.reg_weight, lambda v: v >= 0, "a finite number >= 0"),
               init_std=(self.init_std, lambda v: v > 0, "a finite number > 0"))


@dataclass(frozen=True)
class GraphConfig(EmbeddingConfig):
    """The fields of every model that propagates over the user–item graph."""

    num_layers: int = 3                # L propagation steps
    fanouts: list[int] | None = None   # None: the whole graph every step; else sampled batches,
    #                                    one fan-out per layer (seeds' hop first), -1 = all
    exclude_targets: bool = False      # sampled: drop the batch's positive edges (plans/gcn.py)
    chunk_size: int = 65536            # sampled: rows per chunk of the full-graph embed()

    def __post_init__(self):
        super().__post_init__()
        check_values(type(self).__name__,
               num_layers=(self.num_layers, lambda v: v >= 0 and v == int(v), "an int >= 0"),
               chunk_size=(self.chunk_size, lambda v: v >= 1 and v == int(v), "an int >= 1"))
        check_fanouts(self.fanouts, self.num_layers, type(self).__name__)

    def plan(self) -> NeighborPlan:
        return make_plan(self, NeighborPlan, self_loops=False)


class Recommender(nn.Module):
    """Interface the generic LightningModule and the evaluator rely on.

    ``model.loss(batch)`` is a dict holding ``"loss"`` (the total) and each term, from the batch
    its config's plan made (bound to the plan's per-device static state); ``model.embed(static)``
    gives the full-graph ``(user_emb [U, d], item_emb [I, d])`` scored by inner product, unless
    ``model.score_fn(static)`` gives the evaluator its own ``score_fn(users [B], items [C]) ->
    [B, C]`` (a model whose scores are not inner products of embeddings, e.g. GF-CF).
    """

    num_users: int
    num_items: int

    def embed(self, static: Any) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def loss(self, batch: BPRBatch) -> dict[str, Tensor]:
        raise NotImplementedError

    def score_fn(self, static: Any) -> Callable[[Tensor, Tensor], Tensor] | None:
        """The evaluator's scores, if not the inner products of :meth:`embed` (``None``)."""
        return None


def bpr_loss(pos_score: Tensor, neg_score: Tensor) -> Tensor:
    """Mean of ``-log sigmoid(pos - neg)`` over ``pos_score [B]`` and ``neg_score [B, k]``."""
    return F.softplus(neg_score - pos_score.unsqueeze(-1)).mean()


def l2_loss(*tensors: Tensor) -> Tensor:
    """``sum ||t||^2 / 2`` over ``tensors``."""
    return sum(t.pow(2).sum() for t in tensors) / 2


def bpr_terms(u: Tensor, items: Tensor, ego: Tensor, reg_weight: float) -> dict[str, Tensor]:
    """BPR of users ``u [B, d]`` against items ``[B, 1 + k, d]`` (positive first, then the
    negatives) plus ``reg_weight`` times the L2 of the ego rows ``ego`` per triple."""
    score = torch.einsum("bd,bkd->bk", u, items)  # [B, 1 + k]
    bpr = bpr_loss(score[:, 0], score[:, 1:])
    reg = l2_loss(ego) / u.size(0)
    return {"loss": bpr + reg_weight * reg, "bpr": bpr, "l2": reg}


def graph_bpr(batch: GraphBatch, out: Tensor, h0: Tensor, reg_weight: float) -> dict[str, Tensor]:
    """:func:`bpr_terms` from the seeds' final rows ``out [S, d']`` and layer-0 rows ``h0 [S, d]``
    of ``batch.graph``."""
    users, items = batch.rows()
    return bpr_terms(out[users], out[items], h0[batch.index], reg_weight)
