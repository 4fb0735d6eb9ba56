"""Recommender models: one file each, an ``nn.Module`` with its config dataclass and its loss."""
from reelgraph.models.base import ModelConfig, Recommender, bpr_loss, l2_loss
from reelgraph.models.lightgcn import LightGCN, LightGCNConfig
from reelgraph.models.mf import MF, MFConfig

__all__ = ["ModelConfig", "Recommender", "bpr_loss", "l2_loss", "LightGCN", "LightGCNConfig",
           "MF", "MFConfig"]
