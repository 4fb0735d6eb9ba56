"""The graph vocabulary shared by the data layer, the samplers and the models.

- :mod:`~reelgraph.graph.csr`: CSR tensors, edge keys, membership, :class:`BipartiteGraph`;
- :mod:`~reelgraph.graph.sparse`: normalised sparse operators and products,
  the segment reductions (sum, max, mean weights, softmax);
- :mod:`~reelgraph.graph.subgraph`: the graph a batch is computed over (sampled or whole) and
  the layer loop over it.
"""
from reelgraph.graph.csr import (CSR, BipartiteGraph, check_fanouts, contains_edges,
                                 csr_contains, csr_rows, edge_keys, expand_rows, row_slots,
                                 symmetric_csr, to_csr, transpose_csr, undirected_edge_keys, union)
from reelgraph.graph.sparse import (chunked_spmm, csr_tensor, edge_dot, edge_weighted_sum,
                                    gather_weighted_sum, mean_pool_matrix, pool, segment_max,
                                    segment_mean_weight, segment_softmax, segment_sum,
                                    select_rows, sym_norm_rows, sym_spmm, weighted_sum)
from reelgraph.graph.subgraph import (FullGraph, Subgraph, layer_mean, local_index, node_rows,
                                      propagate, propagate_mean)

__all__ = ["CSR", "BipartiteGraph", "FullGraph", "Subgraph", "check_fanouts", "chunked_spmm",
           "contains_edges", "csr_contains", "csr_rows", "csr_tensor", "edge_dot", "edge_keys",
           "edge_weighted_sum", "expand_rows",
           "gather_weighted_sum", "layer_mean", "local_index", "mean_pool_matrix", "node_rows",
           "pool", "propagate", "propagate_mean", "row_slots", "segment_max", "segment_mean_weight",
           "segment_softmax", "segment_sum", "select_rows", "sym_norm_rows", "sym_spmm",
           "symmetric_csr", "to_csr", "transpose_csr", "undirected_edge_keys", "union",
           "weighted_sum"]
