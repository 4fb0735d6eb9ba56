"""Recommender models: one file each, an ``nn.Module`` with its config dataclass and its loss."""
from reelgraph.models.base import (EmbeddingConfig, GraphConfig, ModelConfig, Recommender,
                                   bpr_loss, l2_loss)
from reelgraph.models.ckg import CKG, CKGConfig
from reelgraph.models.gfcf import GFCF, GFCFConfig
from reelgraph.models.isgnn import ISGNN, ISGNNConfig
from reelgraph.models.lightgcn import LightGCN, LightGCNConfig
from reelgraph.models.mf import MF, MFConfig, SparseMF, SparseMFConfig
from reelgraph.models.mmgcn import MMGCN, MMGCNConfig
from reelgraph.models.ngcf import NGCF, NGCFConfig
from reelgraph.models.sage import SAGE, SAGEConfig
from reelgraph.models.simgcl import SimGCL, SimGCLConfig, info_nce
from reelgraph.models.shl import SHL, SHLConfig  # after simgcl: it uses info_nce

__all__ = ["CKG", "CKGConfig", "EmbeddingConfig", "GFCF", "GFCFConfig", "GraphConfig",
           "ISGNN", "ISGNNConfig", "LightGCN", "LightGCNConfig",
           "MF", "MFConfig", "MMGCN", "MMGCNConfig", "ModelConfig", "NGCF", "NGCFConfig",
           "Recommender", "SAGE", "SAGEConfig", "SHL", "SHLConfig", "SimGCL", "SimGCLConfig",
           "SparseMF", "SparseMFConfig", "bpr_loss", "info_nce", "l2_loss"]
