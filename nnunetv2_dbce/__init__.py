"""nnunetv2-dbce: dilated balanced cross entropy (DBCE) and pixel-wise modulated Dice (PM Dice) for nnU-Net v2.

The losses, weight maps and transforms import no nnU-Net code; the trainers (``nnunetv2_dbce.trainers``)
are found by ``nnUNetv2_train -tr <name>``. Importing the package imports the losses (torch only); the weight
maps (OpenCV, edt, scipy), the transforms (batchgeneratorsv2) and ``nnUNetTrainerVoxelMap`` (the per-voxel map
extension point, nnU-Net) are importable from here too, each loaded at its first use.
"""
import warnings
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

_LAZY = {"DBCEWeightMapTransform": "nnunetv2_dbce.voxel_maps.transform",
         "VoxelMapTransform": "nnunetv2_dbce.voxel_maps.transform",
         "dbce_weight_map": "nnunetv2_dbce.voxel_maps.dbce",
         "region_dbce_weight_maps": "nnunetv2_dbce.voxel_maps.dbce",
         "nnUNetTrainerVoxelMap": "nnunetv2_dbce.trainers.voxel_map"}

__all__ = ["BorderWeightedCELoss", "BoundaryLoss", "ClDiceLoss", "DBCELoss", "DBCEWeightMapTransform",
           "DiceAndDBCELoss", "FocalLoss", "FocalTverskyLoss", "PMDiceCELoss", "PMDiceLoss",
           "RegionAndBoundaryLoss", "RegionDBCELoss", "SkeletonRecallLoss", "VoxelMapTransform",
           "dbce_weight_map", "nnUNetTrainerVoxelMap", "region_dbce_weight_maps"]


# names up to nnunetv2-dbce 0.1.0, still served with a DeprecationWarning: the DBCE weight map now goes by one name
RENAMED = {"dilated_balanced_weights": "dbce_weight_map", "region_weights": "region_dbce_weight_maps",
           "DilatedBalancedWeightsTransform": "DBCEWeightMapTransform"}


def __getattr__(name: str) -> object:
    if name in RENAMED:
        warnings.warn(f"nnunetv2_dbce.{name} is now nnunetv2_dbce.{RENAMED[name]}", DeprecationWarning, stacklevel=2)
        return __getattr__(RENAMED[name])
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nnunetv2_dbce' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
