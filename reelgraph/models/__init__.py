"""Recommender models: one file each, an ``nn.Module`` with its config dataclass and its loss."""
from reelgraph.models.a2bm2gl import A2BM2GL, A2BM2GLConfig
from reelgraph.models.base import ModelConfig, Recommender, bpr_loss, l2_loss
from reelgraph.models.lightgcn import LightGCN, LightGCNConfig
from reelgraph.models.mf import MF, MFConfig
from reelgraph.models.ngcf import NGCF, NGCFConfig
from reelgraph.models.sage import SAGE, SAGEConfig
from reelgraph.models.simgcl import SimGCL, SimGCLConfig, info_nce
from reelgraph.models.vagnn import VAGNN, VAGNNConfig

__all__ = ["A2BM2GL", "A2BM2GLConfig", "ModelConfig", "Recommender", "bpr_loss", "l2_loss", "info_nce", "LightGCN",
           "LightGCNConfig", "MF", "MFConfig", "NGCF", "NGCFConfig", "SAGE", "SAGEConfig",
           "SimGCL", "SimGCLConfig",
           "VAGNN", "VAGNNConfig"]
