"""nnunetv2-dbce: dilated balanced cross entropy (DBCE) and pixel-wise modulated Dice (PM Dice) for nnU-Net v2.

The losses, weight maps and transforms import no nnU-Net code; the trainers (``nnunetv2_dbce.trainers``)
are found by ``nnUNetv2_train -tr <name>``. Importing the package imports the losses (torch only); the weight
maps (OpenCV, edt, scipy), the transforms (batchgeneratorsv2) and ``nnUNetTrainerVoxelMap`` (the per-voxel map
extension point, nnU-Net) are importable from here too, each loaded at its first use.
"""
from importlib import import_module

from nnunetv2_dbce.losses import (
    BorderWeightedCELoss,
    BoundaryLoss,
    ClDiceLoss,
    DBCELoss,
    DiceAndDBCELoss,
    FocalLoss,
    FocalTverskyLoss,
    PMDiceCELoss,
    PMDiceLoss,
    RegionAndBoundaryLoss,
    RegionDBCELoss,
    SkeletonRecallLoss,
)

_LAZY = {"DilatedBalancedWeightsTransform": "nnunetv2_dbce.voxel_maps.transform",
         "VoxelMapTransform": "nnunetv2_dbce.voxel_maps.transform",
         "dilated_balanced_weights": "nnunetv2_dbce.voxel_maps.dbce",
         "region_weights": "nnunetv2_dbce.voxel_maps.dbce",
         "nnUNetTrainerVoxelMap": "nnunetv2_dbce.trainers.voxel_map"}

__all__ = ["BorderWeightedCELoss", "BoundaryLoss", "ClDiceLoss", "DBCELoss", "DiceAndDBCELoss",
           "DilatedBalancedWeightsTransform", "FocalLoss", "FocalTverskyLoss", "PMDiceCELoss", "PMDiceLoss",
           "RegionAndBoundaryLoss", "RegionDBCELoss", "SkeletonRecallLoss", "VoxelMapTransform",
           "dilated_balanced_weights", "nnUNetTrainerVoxelMap", "region_weights"]


def __getattr__(name: str) -> object:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nnunetv2_dbce' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
