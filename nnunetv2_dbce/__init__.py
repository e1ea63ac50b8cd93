"""nnunetv2-dbce: dilated balanced cross entropy (DBCE) and pixel-wise modulated Dice (PM Dice) for nnU-Net v2.

The losses, weight maps and transforms import no nnU-Net code; the trainers (``nnunetv2_dbce.trainers``)
are found by ``nnUNetv2_train -tr <name>``. ``nnUNetTrainerVoxelMap`` (the per-voxel map extension point)
is importable from here too, lazily, so that importing the losses never imports nnU-Net.
"""
from nnunetv2_dbce.losses import (BorderWeightedCELoss, BoundaryLoss, ClDiceLoss, DBCELoss, DiceAndDBCELoss,
                                  FocalLoss, FocalTverskyLoss, PMDiceCELoss, PMDiceLoss, RegionAndBoundaryLoss,
                                  RegionDBCELoss, SkeletonRecallLoss)
from nnunetv2_dbce.transforms import DilatedBalancedWeightsTransform, VoxelMapTransform
from nnunetv2_dbce.weight_maps import dilated_balanced_weights, region_weights

__all__ = ["BorderWeightedCELoss", "BoundaryLoss", "ClDiceLoss", "DBCELoss", "DiceAndDBCELoss",
           "DilatedBalancedWeightsTransform", "FocalLoss", "FocalTverskyLoss", "PMDiceCELoss", "PMDiceLoss",
           "RegionAndBoundaryLoss", "RegionDBCELoss", "SkeletonRecallLoss", "VoxelMapTransform", "dilated_balanced_weights",
           "nnUNetTrainerVoxelMap", "region_weights"]


def __getattr__(name):
    if name == "nnUNetTrainerVoxelMap":
        from nnunetv2_dbce.trainers.voxel_map import nnUNetTrainerVoxelMap
        return nnUNetTrainerVoxelMap
    raise AttributeError(f"module 'nnunetv2_dbce' has no attribute {name!r}")
