"""Row optimisers: Adam's step on dense gradients, only the named rows on sparse ones, and a
sampled LightGCN fit whose step touches only its sub-graph's rows."""
import pytest
import torch
from torch import nn

from reelgraph.errors import ConfigError
from reelgraph.lightning_modules._pl import pl
from reelgraph.lightning_modules.datamodule import RecDataModule
from reelgraph.lightning_modules.module import RecModule
from reelgraph.lightning_modules.optim import LazyAdam, RowWiseAdagrad, build_optimizer
from reelgraph.models import LightGCNConfig, NGCFConfig


def _sparse(rows: list[int], values: torch.Tensor, shape) -> torch.Tensor:
    return torch.sparse_coo_tensor(torch.tensor([rows]), values, shape)


def test_lazy_adam_on_dense_gradients_is_adam():
    gen = torch.Generator().manual_seed(0)
    w0 = torch.randn(20, 4, generator=gen)
    a, b = nn.Parameter(w0.clone()), nn.Parameter(w0.clone())
    adam, lazy = torch.optim.Adam([a], lr=0.01), LazyAdam([b], lr=0.01)
    for _ in range(5):
        a.grad = torch.randn(20, 4, generator=gen)
        b.grad = a.grad.clone()
        adam.step()
        lazy.step()
    torch.testing.assert_close(b.detach(), a.detach(), rtol=0, atol=1e-7)


def test_lazy_adam_moves_only_named_rows_as_sparse_adam_does():
    gen = torch.Generator().manual_seed(1)
    w0 = torch.randn(10, 3, generator=gen)
    a, b = nn.Parameter(w0.clone()), nn.Parameter(w0.clone())
    ref, lazy = torch.optim.SparseAdam([a], lr=0.05), LazyAdam([b], lr=0.05)
    for rows in ([1, 4, 4, 7], [4, 2], [7, 1]):                # row 4 twice: summed
        g = torch.randn(len(rows), 3, generator=gen)
        a.grad, b.grad = _sparse(rows, g, (10, 3)), _sparse(rows, g.clone(), (10, 3))
        ref.step()
        lazy.step()
    torch.testing.assert_close(b.detach(), a.detach(), rtol=0, atol=1e-6)
    untouched = [0, 3, 5, 6, 8, 9]
    assert torch.equal(b.detach()[untouched], w0[untouched])
    assert not lazy.state[b]["exp_avg"][untouched].any()
    assert not torch.equal(b.detach()[[1, 2, 4, 7]], w0[[1, 2, 4, 7]])


def test_lazy_adam_on_a_sparse_gradient_of_every_row_is_adam():
    gen = torch.Generator().manual_seed(2)
    w0 = torch.randn(6, 2, generator=gen)
    a, b = nn.Parameter(w0.clone()), nn.Parameter(w0.clone())
    adam, lazy = torch.optim.Adam([a], lr=0.1), LazyAdam([b], lr=0.1)
    for _ in range(3):
        a.grad = torch.randn(6, 2, generator=gen)
        b.grad = _sparse([5, 0, 3, 1, 4, 2], a.grad[[5, 0, 3, 1, 4, 2]], (6, 2))
        adam.step()
        lazy.step()
    torch.testing.assert_close(b.detach(), a.detach(), rtol=0, atol=1e-6)


def test_rowwise_adagrad_updates_only_touched_rows_by_the_formula():
    w = torch.nn.Parameter(torch.arange(12.0).view(4, 3))
    opt = RowWiseAdagrad([w], lr=0.5, eps=0.0)
    g = torch.tensor([[1.0, 2.0, 2.0], [0.0, 3.0, 0.0]])
    w.grad = _sparse([2, 0], g, (4, 3))
    before = w.detach().clone()
    opt.step()
    s = g.pow(2).mean(1)                                   # [3, 3] for rows 2 and 0
    expected = before.clone()
    expected[2] -= 0.5 * g[0] / s[0].sqrt()
    expected[0] -= 0.5 * g[1] / s[1].sqrt()
    torch.testing.assert_close(w.detach(), expected)
    assert torch.equal(w.detach()[[1, 3]], before[[1, 3]])  # untouched rows unchanged
    assert opt.state[w]["sum"].shape == (4,)                # one float of state per row


def test_optimizer_choices_fail_in_one_line():
    with pytest.raises(ConfigError, match="model.optimizer='sgd': choose one of adam, lazy_adam"):
        RecModule(LightGCNConfig(), optimizer="sgd")
    with pytest.raises(ConfigError, match="set model.weight_decay=0"):
        RecModule(LightGCNConfig(), optimizer="lazy_adam", weight_decay=1e-4)
    ngcf = NGCFConfig(embedding_dim=8, num_layers=1).build(type("S", (), {"num_users": 3,
                                                                          "num_items": 4}))
    with pytest.raises(ConfigError, match="embedding tables only.*use model.optimizer=lazy_adam"):
        build_optimizer("rowwise_adagrad", ngcf, lr=0.1)
    assert isinstance(build_optimizer("lazy_adam", ngcf, lr=0.1), LazyAdam)


class _Rows(pl.Callback):
    """Checks each step's table gradient is sparse; keeps the global nodes each batch gathered
    and the table before each step."""

    def __init__(self):
        self.nodes: list[torch.Tensor] = []
        self.before: torch.Tensor | None = None

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.nodes.append(batch.sub.node.clone())
        self.before = module.model.embedding.weight.detach().clone()

    def on_before_optimizer_step(self, trainer, module, optimizer):
        grad = module.model.embedding.weight.grad
        assert grad.is_sparse and grad.coalesce().indices().size(1) <= self.nodes[-1].numel()


def test_sampled_lightgcn_with_lazy_adam_learns_and_moves_only_sampled_rows(tmp_path, lookup_world):
    dm = RecDataModule(data=lookup_world, cache_dir=str(tmp_path / "cache"),
                       batch_size=64, num_negatives=1)
    config = LightGCNConfig(embedding_dim=16, num_layers=2, fanouts=[3, 2])
    module = RecModule(config, lr=0.01, ks=(20,), optimizer="lazy_adam")
    dm.prepare_data()
    dm.setup("fit")
    pl.seed_everything(0)
    module.model = module._build(dm.store)
    assert module.model.embedding.sparse and module.hparams.optimizer == "lazy_adam"
    w0 = module.model.embedding.weight.detach().clone()
    rows = _Rows()
    trainer = pl.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False,
                         limit_val_batches=0, callbacks=[rows], default_root_dir=str(tmp_path))
    trainer.fit(module, datamodule=dm)
    w = module.model.embedding.weight.detach()
    moved = (w != w0).any(1).nonzero().flatten()
    assert 0 < moved.numel() < w0.size(0)
    assert torch.isin(moved, torch.cat(rows.nodes)).all()
    last = (w != rows.before).any(1).nonzero().flatten()   # dense Adam moves earlier rows too
    assert 0 < last.numel() and torch.isin(last, rows.nodes[-1]).all()

    module2 = RecModule(config, lr=0.01, ks=(20,), optimizer="lazy_adam")
    trainer = pl.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False,
                         num_sanity_val_steps=0, default_root_dir=str(tmp_path))
    trainer.fit(module2, datamodule=dm)
    assert trainer.callback_metrics["train/bpr_epoch"] < 0.6  # from log 2 = 0.693
