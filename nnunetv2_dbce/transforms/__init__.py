"""batchgeneratorsv2 transforms."""
from nnunetv2_dbce.transforms.voxel_map import VoxelMapTransform
from nnunetv2_dbce.transforms.weight_maps import DilatedBalancedWeightsTransform

__all__ = ["DilatedBalancedWeightsTransform", "VoxelMapTransform"]
