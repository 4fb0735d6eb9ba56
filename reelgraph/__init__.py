"""ReelGraph: GNN recommenders for micro-videos, from Parquet logs to ranked embeddings."""
__version__ = "0.1.0"
