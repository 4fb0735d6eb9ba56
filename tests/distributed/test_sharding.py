"""Data-parallel sharding without Ray: no two ranks train the same positive in an epoch."""
import pytest
import torch

from reelgraph.data.store import InMemoryStore
from reelgraph.distributed.callbacks import FailOnce, InjectedFault
from reelgraph.graph import BipartiteGraph
from reelgraph.lightning_modules._pl import pl
from reelgraph.samplers.loader import train_loader
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
    assert len(flat) == len(set(flat)) == g.num_edges      # disjoint, nothing trained twice
    assert sorted(flat) == every                           # and every positive trained once
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    for loader in loaders:
        assert len(loader) == sum(1 for _ in loader)       # Lightning's batch count is right
    other = _pairs(_loader(store, epoch + 1, 0, world_size), g.num_items)
    assert other != shards[0]                              # a new epoch reshuffles the shards


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
