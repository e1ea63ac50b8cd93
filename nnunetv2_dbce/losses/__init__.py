"""Loss modules: plain torch, no nnU-Net imports."""
from nnunetv2_dbce.losses.boundary import BorderWeightedCELoss, BoundaryLoss, RegionAndBoundaryLoss
from nnunetv2_dbce.losses.compound import DiceAndDBCELoss
from nnunetv2_dbce.losses.dbce import DBCELoss, RegionDBCELoss
from nnunetv2_dbce.losses.focal import FocalLoss, FocalTverskyLoss
from nnunetv2_dbce.losses.pm_dice import PMDiceLoss

__all__ = ["BorderWeightedCELoss", "BoundaryLoss", "DBCELoss", "DiceAndDBCELoss", "FocalLoss", "FocalTverskyLoss",
           "PMDiceLoss", "RegionAndBoundaryLoss", "RegionDBCELoss"]
