"""Sampling plans: what each model's batch needs, made by the loader (see :mod:`.base`)."""
from reelgraph.samplers.plans.base import Plan
from reelgraph.samplers.plans.gcn import GCNStatic, NeighborPlan, sample_subgraph

__all__ = ["GCNStatic", "NeighborPlan", "Plan", "sample_subgraph"]
