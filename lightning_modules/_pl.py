"""The one place Lightning is imported from.

Ray's Lightning integration uses ``lightning.pytorch`` when the ``lightning`` package is
installed and ``pytorch_lightning`` otherwise; a Trainer from one with a strategy from the other
fails. Import in the same order here and use ``pl`` everywhere.
"""
try:
    import lightning.pytorch as pl
except ImportError:  # this machine has only pytorch-lightning
    import pytorch_lightning as pl

__all__ = ["pl"]
