"""Data-parallel sharding without Ray: no two ranks train the same positive in an epoch."""
import numpy as np
import pytest
import torch

from reelgraph.data.store import InMemoryStore
from reelgraph.distributed.callbacks import FailOnce, InjectedFault
from reelgraph.graph import BipartiteGraph
from reelgraph.lightning_modules._pl import pl
from reelgraph.samplers.loader import EdgeBatchSampler, train_loader
from reelgraph.samplers.plans.base import Plan


def _graph(num_users=50, num_items=80, num_edges=900, seed=0) -> BipartiteGraph:
    gen = torch.Generator().manual_seed(seed)
    keys = torch.randint(num_users * num_items, (num_edges,), generator=gen).unique()  # sorted
    row, col = keys // num_items, keys % num_items
    rowptr = torch.zeros(num_users + 1, dtype=torch.long)
    torch.cumsum(torch.bincount(row, minlength=num_users), 0, out=rowptr[1:])
    return BipartiteGraph(num_users, num_items, rowptr, col)


def _loader(store, epoch: int, rank: int, world_size: int):
    loader = train_loader(store, Plan(), 64, 2, seed=3, rank=rank, world_size=world_size)
    loader.sampler.set_epoch(epoch)  # as Lightning does
    return loader


def _pairs(loader, num_items: int) -> list[int]:
    return [int(k) for b in loader for k in b.users * num_items + b.pos]


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("epoch", [0, 1])
def test_ranks_split_the_positives_of_an_epoch(world_size, epoch):
    g = _graph()
    store = InMemoryStore(g)
    loaders = [_loader(store, epoch, r, world_size) for r in range(world_size)]
    shards = [_pairs(loader, g.num_items) for loader in loaders]
    every = torch.sort(g.users() * g.num_items + g.col).values.tolist()
    flat = [k for shard in shards for k in shard]
    assert sorted(set(flat)) == every                      # every positive trained
    assert len(flat) == len(set(flat)) + (-g.num_edges % world_size)  # only the pad twice
    assert all(len(s) == len(set(s)) == -(-g.num_edges // world_size) for s in shards)
    for loader in loaders:
        assert len(loader) == sum(1 for _ in loader)       # Lightning's batch count is right
    other = _pairs(_loader(store, epoch + 1, 0, world_size), g.num_items)
    assert other != shards[0]                              # a new epoch reshuffles the shards


@pytest.mark.parametrize("num_edges,world_size,batch_size", [(769, 2, 64), (7, 3, 2), (10, 4, 3)])
def test_every_rank_runs_the_same_number_of_steps(num_edges, world_size, batch_size):
    """DDP's all-reduce is a collective: a rank one batch short hangs or crashes the others
    (769 edges on 2 ranks at batch 64 were 7 batches and 6, before the padding)."""
    samplers = [EdgeBatchSampler(num_edges, batch_size, 0, r, world_size) for r in range(world_size)]
    counts = [[b.edges.size for b in s] for s in samplers]
    assert all(c == counts[0] for c in counts)             # same steps, same batch sizes
    assert len(counts[0]) == len(samplers[0])
    seen = np.concatenate([b.edges for s in samplers for b in s])
    assert np.array_equal(np.unique(seen), np.arange(num_edges))
    single = np.concatenate([b.edges for b in EdgeBatchSampler(num_edges, batch_size, 0)])
    assert single.size == num_edges                        # one process: no padding


class _Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        return (self.w - batch).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_fail_once_fires_in_the_given_epoch_then_never_again(tmp_path):
    marker = tmp_path / "run" / "marker"
    data = torch.utils.data.DataLoader(torch.ones(4, 1), batch_size=1)

    def fit():
        trainer = pl.Trainer(max_epochs=3, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False,
                             callbacks=[FailOnce(str(marker), epoch=1, rank=0, batch=2)])
        trainer.fit(_Tiny(), train_dataloaders=data)
        return trainer

    with pytest.raises(InjectedFault, match="epoch 1, batch 2"):
        fit()
    assert marker.exists()
    assert fit().current_epoch == 3  # the marker disarms it: the next attempt runs through
