"""The large-table path: sparse row gradients, a row-wise optimiser, and a fit with them."""
import socket
import subprocess
import sys

import pytest
import torch

from reelgraph.distributed.sparse import SparseRecModule
from reelgraph.lightning_modules._pl import pl
from reelgraph.lightning_modules.datamodule import RecDataModule
from reelgraph.metrics import evaluate
from reelgraph.models import MF, MFConfig, SparseMF, SparseMFConfig
from reelgraph.samplers.batch import BPRBatch


def _batch(gen, num_users=30, num_items=40, size=8, k=3) -> BPRBatch:
    return BPRBatch(torch.randint(num_users, (size,), generator=gen),
                    torch.randint(num_items, (size,), generator=gen),
                    torch.randint(num_items, (size, k), generator=gen))


def test_sparse_mf_loss_and_gradient_equal_dense_mf():
    gen = torch.Generator().manual_seed(0)
    config = MFConfig(embedding_dim=6, reg_weight=0.1)
    dense, sparse = MF(30, 40, config), SparseMF(30, 40, SparseMFConfig(embedding_dim=6, reg_weight=0.1))
    sparse.load_state_dict(dense.state_dict())
    batch = _batch(gen)
    a, b = dense.loss(batch), sparse.loss(batch)
    for name in ("loss", "bpr", "l2"):
        assert b[name].item() == pytest.approx(a[name].item(), rel=1e-6)
    a["loss"].backward()
    b["loss"].backward()
    grad = sparse.item.weight.grad
    assert grad.is_sparse and sparse.user.weight.grad.is_sparse
    torch.testing.assert_close(grad.to_dense(), dense.item.weight.grad)
    torch.testing.assert_close(sparse.user.weight.grad.to_dense(), dense.user.weight.grad)
    touched = torch.cat([batch.pos, batch.neg.flatten()]).unique()
    assert set(grad.coalesce().indices()[0].tolist()) <= set(touched.tolist())


@pytest.mark.parametrize("optimizer,lr", [("rowwise_adagrad", 0.1), ("sparse_adam", 0.01)])
def test_sparse_module_fits_and_its_checkpoint_reloads(tmp_path, lookup_world, optimizer, lr):
    dm = RecDataModule(data=lookup_world, cache_dir=str(tmp_path / "cache"),
                       batch_size=256, num_negatives=4)
    module = SparseRecModule(SparseMFConfig(embedding_dim=16), lr=lr, ks=(20,), optimizer=optimizer)
    trainer = pl.Trainer(max_epochs=6, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=str(tmp_path),
                         num_sanity_val_steps=0)
    trainer.fit(module, datamodule=dm)
    assert trainer.callback_metrics["train/bpr_epoch"] < 0.6  # from log 2 = 0.693
    path = str(tmp_path / "sparse.ckpt")
    trainer.save_checkpoint(path)
    again = SparseRecModule.from_checkpoint(path, dm.store)
    assert again.hparams.optimizer == optimizer
    with torch.no_grad():
        u, i = again.model.embed(None)
    direct = evaluate(u, i, dm.train_graph, dm.valid_graph, ks=(20,), auc=False).means()
    assert direct["recall@20"] == pytest.approx(float(trainer.callback_metrics["val/recall@20"]),
                                                rel=1e-6)




# One gloo rank in its own interpreter (pytest's importlib mode leaves test functions unpicklable
# for multiprocessing): DDP backward of SparseMF on this rank's batch; rank 0 saves the grads.
_RANK = """
import os, sys, torch, torch.distributed as dist
from reelgraph.models import SparseMF, SparseMFConfig
rank, port, folder = int(sys.argv[1]), sys.argv[2], sys.argv[3]
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
dist.init_process_group("gloo", rank=rank, world_size=2)
model = SparseMF(30, 40, SparseMFConfig(embedding_dim=6, reg_weight=0.1))
model.load_state_dict(torch.load(f"{folder}/init.pt"))
class Step(torch.nn.Module):  # DDP hooks the backward of what its forward ran
    def __init__(self, m):
        super().__init__()
        self.m = m
    def forward(self, batch):
        return self.m.loss(batch)["loss"]
ddp = torch.nn.parallel.DistributedDataParallel(Step(model))
ddp(torch.load(f"{folder}/batch{rank}.pt", weights_only=False)).backward()
if rank == 0:
    torch.save({"user": model.user.weight.grad, "item": model.item.weight.grad}, f"{folder}/grads.pt")
dist.barrier()
os._exit(0)  # skip gloo's teardown: destroy_process_group / exit-time destructors hang or abort
"""


def test_ddp_averages_sparse_gradients_over_two_gloo_ranks(tmp_path):
    gen = torch.Generator().manual_seed(1)
    dense = MF(30, 40, MFConfig(embedding_dim=6, reg_weight=0.1))
    torch.save(dense.state_dict(), tmp_path / "init.pt")
    batches = [_batch(gen), _batch(gen)]
    for r, b in enumerate(batches):
        torch.save(b, tmp_path / f"batch{r}.pt")
    with socket.socket() as s:  # a free loopback port
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    ranks = [subprocess.Popen([sys.executable, "-c", _RANK, str(r), port, str(tmp_path)])
             for r in range(2)]
    assert [p.wait(timeout=120) for p in ranks] == [0, 0]
    grads = torch.load(tmp_path / "grads.pt")
    assert grads["item"].is_sparse and grads["user"].is_sparse  # exchanged as rows, not tables
    expected = {"user": 0, "item": 0}
    for b in batches:  # DDP's gradient is the mean of the ranks' gradients
        dense.zero_grad()
        dense.loss(b)["loss"].backward()
        expected = {"user": expected["user"] + dense.user.weight.grad / 2,
                    "item": expected["item"] + dense.item.weight.grad / 2}
    for name in ("user", "item"):
        torch.testing.assert_close(grads[name].to_dense(), expected[name])
