"""Tiny random CSR graphs shared by the sampler tests."""
from __future__ import annotations

import pytest
import torch

from reelgraph.graph import csr_rows, to_csr

GRAPH_SEEDS = [0, 1, 2, 3]  # keep in step with the test modules' GRAPH_SEEDS


def random_csr(seed: int, device: str = "cpu", num_cols: int | None = None,
               num_rows: int | None = None):
    """A random multigraph as CSR with some isolated rows: ``(rowptr, col, num_rows)``."""
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(6, 40, (1,), generator=g)) if num_rows is None else num_rows
    m = num_cols if num_cols is not None else n
    e = int(torch.randint(n, 6 * n, (1,), generator=g))
    row = torch.randint(n - 2, (e,), generator=g)  # the last two rows stay isolated
    col = torch.randint(m, (e,), generator=g)
    rowptr, col, _ = to_csr(row, col, n)
    return rowptr.to(device), col.to(device), n


def edge_set(rowptr, col) -> set[tuple[int, int]]:
    return set(zip(csr_rows(rowptr).tolist(), col.tolist()))


@pytest.fixture(params=GRAPH_SEEDS)
def graph(request):
    return random_csr(request.param)


@pytest.fixture
def make_csr():
    """``make_csr(seed, device="cpu", num_cols=None, num_rows=None) -> (rowptr, col, n)``."""
    return random_csr


@pytest.fixture
def real_edges():
    """``real_edges(rowptr, col) -> {(row, col)}``."""
    return edge_set
