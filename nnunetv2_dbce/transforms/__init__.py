"""batchgeneratorsv2 transforms."""
from nnunetv2_dbce.transforms.weight_maps import DilatedBalancedWeightsTransform

__all__ = ["DilatedBalancedWeightsTransform"]
