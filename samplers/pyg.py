"""PyG adapters: a ``BaseSampler`` over our CSR samplers, and loaders built on it.

PyG's own ``NeighborSampler`` needs pyg-lib or torch-sparse, which we do not have;
``NodeLoader`` and ``LinkLoader`` themselves need neither (checked against torch-geometric
2.8: they only call ``sample_from_nodes`` / ``sample_from_edges`` and filter a ``Data`` /
``HeteroData`` by the returned ids), so they run unchanged with :class:`CSRNeighborSampler`.

Direction follows PyG: messages flow ``edge_index[0] → edge_index[1]``, so the sampler keeps a
CSR over destinations (``rowptr`` by dst, ``col`` = src) and a seed's sampled neighbours are
its in-neighbours; returned ``row`` / ``col`` are local (src, dst). The sampler holds the CSR,
all sampling is delegated to :mod:`reelgraph.samplers.neighbor` and ``negative``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.data import Data, HeteroData
from torch_geometric.loader import LinkLoader, NodeLoader
from torch_geometric.sampler import (BaseSampler, EdgeSamplerInput, HeteroSamplerOutput,
                                     NegativeSampling, NodeSamplerInput, SamplerOutput)

from reelgraph.graph import edge_keys, to_csr
from reelgraph.samplers.negative import uniform_negatives
from reelgraph.samplers.neighbor import (EdgeType, cumulative_weights, hetero_neighbor_sample,
                                         neighbor_sample)


def _csr_by_dst(edge_index: Tensor, num_dst: int, device) -> tuple[Tensor, Tensor, Tensor]:
    rowptr, col, perm = to_csr(edge_index[1], edge_index[0], num_dst)
    return rowptr.to(device), col.to(device), perm.to(device)


def _sorted_keys(row: Tensor, col: Tensor, num_cols: int) -> Tensor:
    return torch.unique(edge_keys(row, col, num_cols))


class CSRNeighborSampler(BaseSampler):
    """GraphSAGE neighbour sampling for PyG loaders, without pyg-lib.

    Args:
        data (Data | HeteroData): graph with ``edge_index`` per edge type.
        num_neighbors (list[int] | dict): per-hop fan-outs, or ``{edge type: fan-outs}``.
        replace (bool): sample with replacement (default ``False``).
        weight_attr (str, optional): homogeneous only: edge attribute of sampling weights
            (weighted sampling with replacement).
        exclude_targets (bool): in :meth:`sample_from_edges`, never sample the batch's target
            edges (nor their reverses: the ``rev_`` edge type PyG's ``ToUndirected`` adds, or
            ``(dst, src)`` in a homogeneous graph), so training pairs do not leak (default
            ``True``).
        seed (int): seeds the sampler's ``torch.Generator``; with ``num_workers > 0`` each worker
            copy starts from the same state, so keep loaders single-process for reproducibility.
        device: where the CSR lives and sampling runs (default CPU).
    """

    def __init__(self, data: Data | HeteroData, num_neighbors: list[int] | dict, *,
                 replace: bool = False, weight_attr: str | None = None,
                 exclude_targets: bool = True, seed: int = 0, device: str = "cpu"):
        self.device = torch.device(device)
        self.replace, self.exclude_targets = replace, exclude_targets
        self.generator = torch.Generator(self.device).manual_seed(seed)
        self.is_hetero = isinstance(data, HeteroData)
        self.cum_weight = None
        if self.is_hetero:
            self._init_hetero(data, num_neighbors)
            return
        self.num_nodes = data.num_nodes
        self.rowptr, self.col, self.perm = _csr_by_dst(data.edge_index, self.num_nodes, device)
        self.all_keys = _sorted_keys(data.edge_index[0], data.edge_index[1], self.num_nodes)
        self.fanouts = list(num_neighbors)
        if weight_attr is not None:
            self.cum_weight = cumulative_weights(data[weight_attr].to(self.device)[self.perm])

    def _init_hetero(self, data: HeteroData, num_neighbors: list[int] | dict) -> None:
        self.num_nodes = {t: data[t].num_nodes for t in data.node_types}
        self.csr, self.perm, self.all_keys, self.fanouts = {}, {}, {}, {}
        for et in data.edge_types:  # our key: (dst, rel, src), rows by dst
            s, r, d = et
            rowptr, col, perm = _csr_by_dst(data[et].edge_index, self.num_nodes[d], self.device)
            self.csr[(d, r, s)], self.perm[et] = (rowptr, col), perm
            self.all_keys[et] = _sorted_keys(*data[et].edge_index, self.num_nodes[d])
            fan = num_neighbors[et] if isinstance(num_neighbors, dict) else num_neighbors
            self.fanouts[(d, r, s)] = list(fan)

    @property
    def edge_permutation(self):
        return self.perm

    # ------------------------------------------------------------------ nodes
    def sample_from_nodes(self, index: NodeSamplerInput, **kwargs
                          ) -> SamplerOutput | HeteroSamplerOutput:
        seeds = index.node.to(self.device)
        if seeds.unique().numel() != seeds.numel():
            raise ValueError("CSRNeighborSampler: the seed nodes of a batch must be distinct")
        meta = (index.input_id, index.time)
        if self.is_hetero:
            return self._hetero(seeds={index.input_type: seeds}, exclude=None, metadata=meta)
        return self._homo(seeds, None, meta)

    def _homo(self, seeds: Tensor, exclude: Tensor | None, metadata) -> SamplerOutput:
        out = neighbor_sample(self.rowptr, self.col, seeds, fanouts=self.fanouts,
                              replace=self.replace, cum_weight=self.cum_weight,
                              exclude_keys=exclude, generator=self.generator)
        return SamplerOutput(node=out.node, row=out.col, col=out.row, edge=out.edge,
                             num_sampled_nodes=out.num_sampled_nodes,
                             num_sampled_edges=out.num_sampled_edges, metadata=metadata)

    def _hetero(self, seeds: dict[str, Tensor], exclude, metadata) -> HeteroSamplerOutput:
        out = hetero_neighbor_sample(self.csr, seeds, fanouts=self.fanouts,
                                     replace=self.replace, exclude=exclude,
                                     generator=self.generator)
        pyg = {(d, r, s): (s, r, d) for (d, r, s) in out.row}  # our key -> PyG edge type
        return HeteroSamplerOutput(
            node=out.node, row={pyg[k]: v for k, v in out.col.items()},
            col={pyg[k]: v for k, v in out.row.items()},
            edge={pyg[k]: v for k, v in out.edge.items()},
            num_sampled_nodes=out.num_sampled_nodes,
            num_sampled_edges={pyg[k]: v for k, v in out.num_sampled_edges.items()},
            metadata=metadata)

    # ------------------------------------------------------------------ edges
    def sample_from_edges(self, index: EdgeSamplerInput,
                          neg_sampling: NegativeSampling | None = None
                          ) -> SamplerOutput | HeteroSamplerOutput:
        """Triplet negatives are drawn uniformly and never hit an edge of the graph's
        ``edge_index`` for that type (checked); binary negatives are uniform pairs."""
        src, dst = index.row.to(self.device), index.col.to(self.device)
        et = index.input_type
        num_src, num_dst = self._num_endpoints(et)
        neg = self._negatives(src, et, num_src, num_dst, neg_sampling)
        if neg_sampling is not None and neg_sampling.is_binary():
            src, dst = torch.cat([src, neg[0]]), torch.cat([dst, neg[1]])
            neg = None
        same = et is None or et[0] == et[-1]
        parts = [src, dst] + ([neg.flatten()] if neg is not None else [])
        if same:
            nodes, inv = torch.unique(torch.cat(parts), return_inverse=True)
            inv_src, inv_dst = inv[:src.numel()], inv[src.numel():]
            seeds = nodes if et is None else {et[0]: nodes}
        else:
            src_nodes, inv_src = torch.unique(src, return_inverse=True)
            dst_nodes, inv_dst = torch.unique(torch.cat(parts[1:]), return_inverse=True)
            seeds = {et[0]: src_nodes, et[-1]: dst_nodes}
        meta = self._edge_metadata(index, inv_src, inv_dst, neg, neg_sampling)
        exclude = self._target_keys(index, et, num_src, num_dst) if self.exclude_targets else None
        if et is None:
            return self._homo(seeds, exclude, meta)
        return self._hetero(seeds, exclude, meta)

    def _num_endpoints(self, et: EdgeType | None) -> tuple[int, int]:
        if et is None:
            return self.num_nodes, self.num_nodes
        return self.num_nodes[et[0]], self.num_nodes[et[-1]]

    def _negatives(self, src: Tensor, et, num_src: int, num_dst: int,
                   neg_sampling: NegativeSampling | None) -> Tensor | None:
        if neg_sampling is None:
            return None
        keys = self.all_keys if et is None else self.all_keys[et]
        if neg_sampling.is_triplet():  # [B, K]
            return uniform_negatives(src, keys, num_dst, int(neg_sampling.amount),
                                     generator=self.generator)
        n = max(1, round(src.numel() * float(neg_sampling.amount)))
        neg_src = torch.randint(num_src, (n,), device=self.device, generator=self.generator)
        neg_dst = uniform_negatives(neg_src, keys, num_dst, 1, generator=self.generator)
        return torch.stack([neg_src, neg_dst.view(-1)])

    @staticmethod
    def _edge_metadata(index: EdgeSamplerInput, inv_src: Tensor, inv_dst: Tensor,
                       neg: Tensor | None, neg_sampling: NegativeSampling | None) -> tuple:
        num_pos = index.row.numel()
        if neg_sampling is not None and neg_sampling.is_triplet():
            dst_neg = inv_dst[num_pos:].view(num_pos, -1).squeeze(-1)
            return index.input_id, inv_src, inv_dst[:num_pos], dst_neg, None
        label = index.label if index.label is not None else torch.ones(num_pos)
        if neg_sampling is not None:  # binary: negatives appended with label 0
            label = torch.cat([label, torch.zeros(inv_src.numel() - num_pos, dtype=label.dtype)])
        return index.input_id, torch.stack([inv_src, inv_dst]).cpu(), label, index.time

    def _target_keys(self, index: EdgeSamplerInput, et, num_src: int, num_dst: int):
        src, dst = index.row.to(self.device), index.col.to(self.device)
        if et is None:  # both directions, keys of the (dst-row, src-col) CSR
            return _sorted_keys(torch.cat([dst, src]), torch.cat([src, dst]), self.num_nodes)
        s, r, d = et
        exclude = {(d, r, s): (_sorted_keys(dst, src, num_src), num_src)}
        if (s, f"rev_{r}", d) in self.csr:  # the reverse type (d, rev_r, s), rows by s
            exclude[(s, f"rev_{r}", d)] = (_sorted_keys(src, dst, num_dst), num_dst)
        return exclude


# ---------------------------------------------------------------------- loaders
@dataclass(frozen=True)
class LinkBatch:
    """One link-prediction mini-batch.

    Attributes:
        users (Tensor): ``[B]`` global source ids (users) of the positive edges.
        pos (Tensor): ``[B]`` global destination ids (positive items).
        neg (Tensor): ``[B, K]`` global negative items, never a positive of the user.
        graph (Data | HeteroData): the sampled subgraph with PyG's triplet fields
            (``src_index``, ``dst_pos_index``, ``dst_neg_index``: local ids) and ``n_id``.
    """

    users: Tensor
    pos: Tensor
    neg: Tensor
    graph: Data | HeteroData


def _to_link_batch(edge_type: EdgeType | None):
    def transform(data: Data | HeteroData) -> LinkBatch:
        if edge_type is None:
            n_id, src, dst = data.n_id, data, data
        else:
            n_id, src, dst = None, data[edge_type[0]], data[edge_type[-1]]
        neg = dst.dst_neg_index
        neg = neg.unsqueeze(1) if neg.dim() == 1 else neg
        src_ids = src.n_id if n_id is None else n_id
        dst_ids = dst.n_id if n_id is None else n_id
        return LinkBatch(src_ids[src.src_index], dst_ids[dst.dst_pos_index], dst_ids[neg], data)
    return transform


def link_loader(data: Data | HeteroData, num_neighbors: list[int] | dict, *,
                edge_label_index: Tensor | EdgeType | tuple | None = None,
                num_negatives: int = 1, batch_size: int = 1024, shuffle: bool = True,
                seed: int = 0, replace: bool = False, exclude_targets: bool = True,
                **kwargs) -> LinkLoader:
    """PyG ``LinkLoader`` over :class:`CSRNeighborSampler` yielding :class:`LinkBatch`es.

    Args:
        data (Data | HeteroData): the training graph; its edges are the positives that
            negatives avoid.
        num_neighbors: per-hop fan-outs (or ``{edge type: fan-outs}``).
        edge_label_index: the supervision edges, as PyG's ``LinkLoader`` takes them
            (heterogeneous: an edge type or ``(edge type, [2, B] tensor)``).
        num_negatives (int): negatives per positive (default ``1``).
        batch_size, shuffle: as for ``DataLoader`` (defaults ``1024``, ``True``).
        seed (int): seeds the sampler; pass ``generator=torch.Generator().manual_seed(s)``
            in ``kwargs`` to fix the shuffle order too.
        replace, exclude_targets: see :class:`CSRNeighborSampler`.
        **kwargs: passed to ``LinkLoader`` / ``DataLoader``.
    """
    sampler = CSRNeighborSampler(data, num_neighbors, replace=replace,
                                 exclude_targets=exclude_targets, seed=seed)
    edge_type = None
    if isinstance(data, HeteroData):
        edge_type = edge_label_index if isinstance(edge_label_index[0], str) \
            else edge_label_index[0]
    return LinkLoader(data, sampler, edge_label_index=edge_label_index,
                      neg_sampling=NegativeSampling("triplet", num_negatives),
                      transform=_to_link_batch(edge_type), batch_size=batch_size,
                      shuffle=shuffle, **kwargs)


def node_loader(data: Data | HeteroData, num_neighbors: list[int] | dict, *,
                input_nodes: Tensor | str | tuple | None = None, batch_size: int = 1024,
                seed: int = 0, replace: bool = False, **kwargs) -> NodeLoader:
    """PyG ``NodeLoader`` over :class:`CSRNeighborSampler` for layer-wise inference: each
    batch is a sampled subgraph whose first ``batch_size`` nodes (per ``n_id``) are the seeds.
    ``input_nodes`` as for PyG (heterogeneous: a node type or ``(type, ids)``)."""
    sampler = CSRNeighborSampler(data, num_neighbors, replace=replace, seed=seed)
    return NodeLoader(data, sampler, input_nodes=input_nodes, batch_size=batch_size, **kwargs)
