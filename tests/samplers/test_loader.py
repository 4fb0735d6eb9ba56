"""The training DataLoader: batches depend only on (seed, epoch, rank, batch), never on the
number of worker processes; workers memory-map the store; negatives are never positives."""
import pickle
from dataclasses import fields, is_dataclass

import pytest
import torch

from reelgraph.data.split import SplitConfig
from reelgraph.data.store import GraphStore
from reelgraph.models import LightGCNConfig, SAGEConfig
from reelgraph.models.a2bm2gl import A2BM2GLConfig
from reelgraph.models.vagnn import VAGNNConfig
from reelgraph.samplers.batch import GraphBatch
from reelgraph.samplers.loader import EdgeBatchSampler, TrainBatches, train_loader
from reelgraph.samplers.plans.base import Plan


@pytest.fixture(scope="module")
def store(world, tmp_path_factory):
    return GraphStore.build(world, str(tmp_path_factory.mktemp("store")), SplitConfig("ratio"))


@pytest.fixture(scope="module")
def feature_store(feature_world, tmp_path_factory):
    return GraphStore.build(feature_world, str(tmp_path_factory.mktemp("store")),
                            SplitConfig("ratio"))


def _tensors(x) -> list[torch.Tensor]:
    """Every tensor of a batch, in field order (nested dataclasses, lists and tuples included)."""
    if isinstance(x, torch.Tensor):
        return [x]
    if is_dataclass(x) and not isinstance(x, type):
        return [t for f in fields(x) if f.name != "static" for t in _tensors(getattr(x, f.name))]
    if isinstance(x, (list, tuple)):
        return [t for v in x for t in _tensors(v)]
    return []


def _epochs(store, plan, num_workers: int, epochs=(0, 1)) -> list[list[torch.Tensor]]:
    loader = train_loader(store, plan, 256, 3, seed=5, num_workers=num_workers)
    out = []
    for epoch in epochs:
        loader.sampler.set_epoch(epoch)
        out += [_tensors(b) for b in loader]
    return out


@pytest.mark.parametrize("config", [
    LightGCNConfig(num_layers=2, fanouts=[5, 3], exclude_targets=True),
    SAGEConfig(aggregator="importance", num_walks=4),
    SAGEConfig(aggregator="mean", fanouts=[5, 3]),
    VAGNNConfig(num_layers=2, fanouts=[3, 3], pool_fanout=4),
    A2BM2GLConfig(embedding_dim=8, fanouts=[2, 2, 1], boundary_fanout=2, boundary_items=4),
    LightGCNConfig()], ids=lambda c: type(c).__name__)
def test_batches_are_identical_for_any_num_workers(request, config):
    store = request.getfixturevalue("feature_store" if isinstance(config, A2BM2GLConfig)
                                    else "store")
    plan = config.plan()
    inline, workers = _epochs(store, plan, 0), _epochs(store, plan, 2)
    assert len(inline) == len(workers) == 2 * -(-store.meta["splits"]["train"] // 256)
    for a, b in zip(inline, workers):
        assert len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(inline[0][0], inline[len(inline) // 2][0])  # epochs reshuffle


def test_negatives_avoid_train_positives_and_batches_cover_the_epoch(store):
    g = store.graph("train")
    batches = list(train_loader(store, Plan(), 300, 4, seed=1))
    users = torch.cat([b.users for b in batches])
    pos = torch.cat([b.pos for b in batches])
    neg = torch.cat([b.neg for b in batches])
    keys = g.keys()
    assert torch.equal(torch.sort(users * g.num_items + pos).values, keys)  # every edge once
    assert not torch.isin(users.unsqueeze(1) * g.num_items + neg, keys).any()


def test_a_store_travels_to_workers_as_its_path(store):
    dataset = TrainBatches(store, LightGCNConfig(num_layers=2, fanouts=[5, 3]).plan(), 2)
    dataset[next(iter(EdgeBatchSampler(store.meta["splits"]["train"], 64)))]  # opens the store
    assert dataset._open is not None
    blob = pickle.dumps(dataset)
    assert len(blob) < 4096  # no array of the graph is pickled
    again = pickle.loads(blob)
    assert again._open is None and again.store.root == store.root


def test_bad_loader_settings_fail_clearly(store):
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        train_loader(store, Plan(), 0, 1)
    with pytest.raises(ValueError, match="num_negatives must be >= 1"):
        train_loader(store, Plan(), 16, 0)


def test_full_graph_plan_batches_index_global_nodes(store):
    batch = next(iter(train_loader(store, LightGCNConfig().plan(), 32, 2)))
    assert isinstance(batch, GraphBatch) and batch.sub is None
    users, items = batch.rows()
    assert torch.equal(users, batch.users)
    assert torch.equal(items[:, 0], batch.pos + store.num_users)


def test_popularity_negatives_follow_the_train_counts(store):
    g = store.graph("train")
    count = torch.bincount(g.col.long(), minlength=g.num_items).double()
    loader = train_loader(store, Plan(), 512, 8, seed=3, negatives="popularity",
                          popularity_alpha=1.0)
    neg = torch.cat([b.neg for b in loader]).flatten()
    drawn = torch.bincount(neg, minlength=g.num_items).double()
    # the most popular decile of items is drawn far above its uniform share (0.1) and close to
    # its share of train counts (less what the positives' exclusion takes away)
    top = torch.argsort(count, descending=True)[: g.num_items // 10]
    share, want = drawn[top].sum() / drawn.sum(), count[top].sum() / count.sum()
    assert 0.8 * want < share <= want + 0.01 and share > 0.2, (share, want)
    uniform = torch.cat([b.neg for b in train_loader(store, Plan(), 512, 8, seed=3)]).flatten()
    assert torch.bincount(uniform, minlength=g.num_items)[top].sum() / uniform.numel() < 0.15
    users = torch.cat([b.users for b in loader]).unsqueeze(1).expand(-1, 8).flatten()
    assert not torch.isin(users * g.num_items + neg, g.keys()).any()


def test_bad_negative_settings_fail_with_their_name(store):
    for kw, match in ((dict(negatives="hard"), "negatives='hard'"),
                      (dict(popularity_alpha=-1.0), "popularity_alpha"),
                      (dict(num_negatives=0), "num_negatives")):
        args = dict(num_negatives=2) | kw
        with pytest.raises(ValueError, match=match):
            train_loader(store, Plan(), 64, args.pop("num_negatives"), **args)


def test_in_batch_negatives_are_other_rows_positives(store):
    g = store.graph("train")
    loader = train_loader(store, Plan(), 256, 4, seed=2, negatives="in_batch")
    redrawn = total = 0
    for b in loader:
        users = b.users.unsqueeze(1).expand_as(b.neg)
        assert not torch.isin(users * g.num_items + b.neg, g.keys()).any()  # never a positive
        in_batch = torch.isin(b.neg, b.pos)
        redrawn += int((~in_batch).sum())
        total += b.neg.numel()
    assert redrawn < 0.01 * total  # the uniform fallback is rare
    again = [b.neg for b in train_loader(store, Plan(), 256, 4, seed=2, negatives="in_batch",
                                         num_workers=2)]
    assert all(torch.equal(x, b.neg) for x, b in zip(again, loader))


def test_batches_carry_their_epoch(store):
    """Plans whose draws change with the epoch (PinSage's hard-negative curriculum) read it from
    the batch: the loader sets it from the sampler's epoch."""
    loader = train_loader(store, Plan(), 64, 1, seed=0)
    for epoch in (0, 3):
        loader.sampler.set_epoch(epoch)  # as Lightning does
        assert {next(iter(loader)).epoch} == {epoch}
