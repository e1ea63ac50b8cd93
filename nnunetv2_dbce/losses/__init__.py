"""Loss modules: plain torch, no nnU-Net imports."""
from nnunetv2_dbce.losses.dbce import DBCELoss

__all__ = ["DBCELoss"]
