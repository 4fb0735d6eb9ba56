"""Vectorised samplers over CSR ``(rowptr, col)`` tensors: pure functions taking an explicit
``torch.Generator``, identical on CPU and CUDA, plus thin PyG ``BaseSampler`` adapters.

``reelgraph.samplers.pyg`` (PyG loaders) is not imported here, so the pure samplers load
without touching PyG's loader stack.
"""
from reelgraph.samplers.metapath import MetaPathOutput, metapath_walks
from reelgraph.samplers.negative import (hard_negatives, hard_negatives_from_embeddings,
                                         in_batch_negatives, popularity_cdf,
                                         popularity_negatives, uniform_negatives)
from reelgraph.samplers.neighbor import (HeteroNeighborOutput, NeighborOutput,
                                         cumulative_weights, hetero_neighbor_sample,
                                         neighbor_sample, sample_uniform, sample_weighted,
                                         sampled_mean,
                                         sample_weighted_without_replacement, segment_topk)
from reelgraph.samplers.pinsage import (ImportanceOutput, pinsage_neighbors,
                                        random_walk_visits, shared_neighbor_counts,
                                        tightness_neighbors, walk_step)

__all__ = [
    "HeteroNeighborOutput", "ImportanceOutput", "MetaPathOutput", "NeighborOutput",
    "cumulative_weights", "hard_negatives", "hard_negatives_from_embeddings",
    "hetero_neighbor_sample", "in_batch_negatives", "metapath_walks", "neighbor_sample",
    "pinsage_neighbors", "popularity_cdf", "popularity_negatives", "random_walk_visits",
    "sample_uniform", "sample_weighted", "sampled_mean", "sample_weighted_without_replacement",
    "segment_topk", "shared_neighbor_counts", "tightness_neighbors",
    "uniform_negatives", "walk_step",
]
