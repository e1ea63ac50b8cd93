"""Loss modules: plain torch, no nnU-Net imports."""
from nnunetv2_dbce.losses.boundary import BorderWeightedCELoss, BoundaryLoss, RegionAndBoundaryLoss
from nnunetv2_dbce.losses.compound import DiceAndDBCELoss, WithAddedTerm
from nnunetv2_dbce.losses.dbce import DBCELoss, RegionDBCELoss
from nnunetv2_dbce.losses.focal import FocalLoss, FocalTverskyLoss
from nnunetv2_dbce.losses.pm_dice import PMDiceLoss
from nnunetv2_dbce.losses.pm_dice_ce import PMDiceCELoss
from nnunetv2_dbce.losses.topology import ClDiceLoss, SkeletonRecallLoss

__all__ = ["BorderWeightedCELoss", "BoundaryLoss", "ClDiceLoss", "DBCELoss", "DiceAndDBCELoss", "FocalLoss",
           "FocalTverskyLoss", "PMDiceCELoss", "PMDiceLoss", "RegionAndBoundaryLoss", "RegionDBCELoss",
           "SkeletonRecallLoss", "WithAddedTerm"]
